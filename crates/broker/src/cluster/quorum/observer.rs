//! Broker-only nodes (`process.roles = broker`): not voters, but observers of
//! the metadata log, as KRaft brokers are when the controllers are dedicated.
//!
//! An observer's `observer` thread asks a voter for the committed entries
//! after the last one it applied, every tick, and applies them to its own
//! `ClusterImage` exactly as a voter does. It follows the voter's word on who
//! leads the quorum and talks to the leader, so its fetches double as the
//! heartbeats that keep it unfenced. Its proposals (registration, topic
//! changes, ISR changes) go to the leader as raw entries; the outcome is
//! known when the entry comes back in the log, as on a voter.
//!
//! Wire: the observer opens a connection to a voter's controller listener and
//! sends the size word `OBSERVER_MAGIC`; then each request and response is a
//! `[len u32][JSON]` frame.

use std::collections::HashMap;
use std::io::{BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::mpsc::{Receiver, RecvTimeoutError, SyncSender, sync_channel};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use tracing::{debug, info, warn};
use uuid::Uuid;

use super::image::ClusterImage;
use super::node::{Envelope, Input, OnChange, QuorumStatus, Reply, TICK, apply_entry, expire_pending, failed};
use crate::model::ErrorCode;

/// The size word that opens an observer's connection (no Raft frame is this long).
pub const OBSERVER_MAGIC: u32 = 0xFFFF_FFFE;
/// Entries one fetch answer carries at most.
pub const ENTRIES_PER_FETCH_MAX: u64 = 1000;
/// A request or response frame larger than this is an error.
const FRAME_BYTES_MAX: usize = 64 << 20;
const IO_TIMEOUT: Duration = Duration::from_secs(2);
/// Inputs waiting for the observer thread.
const INBOX_MAX: usize = 16_384;
/// Proposals waiting to come back in the log; more are refused.
const PENDING_PROPOSALS_MAX: usize = 10_000;
const PROPOSAL_TIMEOUT: Duration = Duration::from_secs(10);

#[derive(Debug, Serialize, Deserialize)]
pub enum ObserverRequest {
    /// Committed entries from `from_index` on; also the observer's heartbeat.
    Fetch { node_id: i32, from_index: u64 },
    /// An entry to propose (a JSON `Envelope`), if the voter leads.
    Propose { data: String },
}

#[derive(Debug, Serialize, Deserialize)]
pub enum ObserverResponse {
    /// Consecutive committed entries (index, data; empty data for entries
    /// that carry no record), and who leads (0: nobody known).
    Entries {
        leader_id: u64,
        entries: Vec<(u64, String)>,
    },
    Proposed {
        accepted: bool,
        leader_id: u64,
    },
}

pub fn write_frame(stream: &mut TcpStream, value: &impl Serialize) -> std::io::Result<()> {
    let body = serde_json::to_vec(value).map_err(std::io::Error::other)?;
    let mut frame = Vec::with_capacity(4 + body.len());
    frame.extend_from_slice(&(body.len() as u32).to_be_bytes());
    frame.extend_from_slice(&body);
    stream.write_all(&frame)
}

pub fn read_frame<T: for<'de> Deserialize<'de>>(reader: &mut impl Read) -> std::io::Result<T> {
    let mut size = [0u8; 4];
    reader.read_exact(&mut size)?;
    let len = u32::from_be_bytes(size) as usize;
    if len > FRAME_BYTES_MAX {
        return Err(std::io::Error::other(format!("an observer frame of {len} bytes")));
    }
    let mut body = vec![0u8; len];
    reader.read_exact(&mut body)?;
    serde_json::from_slice(&body).map_err(std::io::Error::other)
}

/// The voter's side of one observer connection: each request goes to the
/// controller thread, whose answer goes back. Ends when either side stops.
pub fn serve(stream: TcpStream, inbox: &SyncSender<Input>) {
    let Ok(mut writer) = stream.try_clone() else { return };
    let mut reader = BufReader::new(stream);
    // Bounded by the connection: each round answers one request or ends it.
    while let Ok(request) = read_frame::<ObserverRequest>(&mut reader) {
        let (tx, rx) = sync_channel(1);
        if inbox.try_send(Input::Observer(request, tx)).is_err() {
            return;
        }
        let Ok(response) = rx.recv_timeout(IO_TIMEOUT) else {
            return;
        };
        if write_frame(&mut writer, &response).is_err() {
            return;
        }
    }
}

/// Starts the observer thread; returns its inbox (the same inputs a voter takes).
pub fn start(node_id: i32, voters: &[(u64, SocketAddr)], on_change: OnChange) -> anyhow::Result<SyncSender<Input>> {
    super::note_leader_contact();
    let (inbox, inputs) = sync_channel(INBOX_MAX);
    let mut observer = Observer {
        node_id,
        voters: voters.to_vec(),
        connection: None,
        next_voter: 0,
        leader_id: 0,
        image: ClusterImage::default(),
        pending: HashMap::new(),
        unsent: Vec::new(),
        on_change,
    };
    info!(node_id, voters = ?voters.iter().map(|(id, _)| id).collect::<Vec<_>>(), "observing the metadata quorum");
    std::thread::Builder::new()
        .name("observer".into())
        .spawn(move || observer.run(inputs))?;
    Ok(inbox)
}

struct Connection {
    voter: u64,
    stream: TcpStream,
    reader: BufReader<TcpStream>,
}

struct Observer {
    node_id: i32,
    voters: Vec<(u64, SocketAddr)>,
    connection: Option<Connection>,
    /// The voter to try next when no leader is known (round robin).
    next_voter: usize,
    leader_id: u64,
    image: ClusterImage,
    pending: HashMap<Uuid, (Reply, Instant)>,
    /// Proposals not yet taken by a leader: (entry data, request id).
    unsent: Vec<(String, Uuid)>,
    on_change: OnChange,
}

impl Observer {
    fn run(&mut self, inputs: Receiver<Input>) {
        let mut next_tick = Instant::now();
        // Runs for the life of the process; every round is bounded by one tick.
        loop {
            match inputs.recv_timeout(next_tick.saturating_duration_since(Instant::now())) {
                Ok(input) => self.handle(input),
                Err(RecvTimeoutError::Timeout) => {}
                Err(RecvTimeoutError::Disconnected) => return,
            }
            if Instant::now() >= next_tick {
                next_tick = Instant::now() + TICK;
                if let Err(e) = self.exchange() {
                    debug!(
                        voter = self.connection.as_ref().map(|c| c.voter),
                        "observer exchange failed: {e}"
                    );
                    // The leader may be gone: ask the voters in turn who leads now.
                    self.connection = None;
                    self.leader_id = 0;
                }
                self.expire_proposals();
            }
        }
    }

    fn handle(&mut self, input: Input) {
        match input {
            Input::Propose(record, reply) => {
                if self.pending.len() >= PENDING_PROPOSALS_MAX {
                    reply.send(failed(ErrorCode::RequestTimedOut, "too many metadata changes waiting"));
                    return;
                }
                let request = Uuid::new_v4();
                let data = serde_json::to_string(&Envelope { request, record }).expect("records serialize");
                self.unsent.push((data, request));
                self.pending.insert(request, (reply, Instant::now() + PROPOSAL_TIMEOUT));
            }
            Input::Status(reply) => {
                let _ = reply.try_send(QuorumStatus {
                    node_id: self.node_id as u64,
                    leader_id: self.leader_id,
                    role: "Observer".into(),
                    commit_index: self.image.applied_index,
                    applied_index: self.image.applied_index,
                    voters: self.voters.iter().map(|(id, _)| *id).collect(),
                    ..Default::default()
                });
            }
            Input::Raft(_) | Input::Observer(..) => {}
        }
    }

    /// One round with the leader (or any voter while none is known): hand
    /// over waiting proposals, then fetch and apply what was committed.
    fn exchange(&mut self) -> std::io::Result<()> {
        self.connect()?;
        let unsent = std::mem::take(&mut self.unsent);
        for (i, (data, request)) in unsent.iter().enumerate() {
            match self.call(&ObserverRequest::Propose { data: data.clone() }) {
                Ok(ObserverResponse::Proposed { accepted: true, .. }) => {}
                Ok(_) => self.unsent.push((data.clone(), *request)),
                Err(e) => {
                    self.unsent.extend(unsent[i..].iter().cloned());
                    return Err(e);
                }
            }
        }
        let fetch = ObserverRequest::Fetch {
            node_id: self.node_id,
            from_index: self.image.applied_index + 1,
        };
        let ObserverResponse::Entries { leader_id, entries } = self.call(&fetch)? else {
            return Err(std::io::Error::other("a fetch was answered with something else"));
        };
        self.apply(entries);
        if leader_id != self.leader_id {
            info!(leader_id, "metadata quorum leader changed");
            self.leader_id = leader_id;
            (self.on_change)(&self.image, leader_id);
        }
        // Talk to the leader: there the fetches count as heartbeats.
        if leader_id != 0 && self.connection.as_ref().is_some_and(|c| c.voter != leader_id) {
            self.connection = None;
        } else if leader_id != 0 {
            super::note_leader_contact();
        }
        Ok(())
    }

    fn apply(&mut self, entries: Vec<(u64, String)>) {
        if entries.is_empty() {
            return;
        }
        for (index, data) in entries {
            if index != self.image.applied_index + 1 {
                warn!(
                    index,
                    applied = self.image.applied_index,
                    "a gap in the fetched metadata log; refetching"
                );
                break;
            }
            if let Some((request, outcome)) = apply_entry(&mut self.image, index, data.as_bytes())
                && let Some((reply, _)) = self.pending.remove(&request)
            {
                reply.send(outcome);
            }
        }
        (self.on_change)(&self.image, self.leader_id);
    }

    fn connect(&mut self) -> std::io::Result<()> {
        if self.connection.is_some() {
            return Ok(());
        }
        let target = self
            .voters
            .iter()
            .find(|(id, _)| *id == self.leader_id)
            .copied()
            .unwrap_or_else(|| {
                self.next_voter = (self.next_voter + 1) % self.voters.len();
                self.voters[self.next_voter]
            });
        let mut stream = TcpStream::connect_timeout(&target.1, IO_TIMEOUT)?;
        stream.set_nodelay(true)?;
        stream.set_read_timeout(Some(IO_TIMEOUT))?;
        stream.set_write_timeout(Some(IO_TIMEOUT))?;
        stream.write_all(&OBSERVER_MAGIC.to_be_bytes())?;
        let reader = BufReader::new(stream.try_clone()?);
        self.connection = Some(Connection {
            voter: target.0,
            stream,
            reader,
        });
        if target.0 != self.leader_id {
            // Whoever answers will name the leader; until then any voter serves.
            self.leader_id = 0;
        }
        Ok(())
    }

    fn call(&mut self, request: &ObserverRequest) -> std::io::Result<ObserverResponse> {
        let connection = self
            .connection
            .as_mut()
            .ok_or_else(|| std::io::Error::other("not connected"))?;
        write_frame(&mut connection.stream, request)?;
        read_frame(&mut connection.reader)
    }

    fn expire_proposals(&mut self) {
        let expired = expire_pending(&mut self.pending, Instant::now());
        self.unsent.retain(|(_, request)| !expired.contains(request));
    }
}
