//! Raft messages between controller voters over TCP, on `--controller-listen`.
//! A frame is `[len u32][protobuf eraftpb.Message]`.
//!
//! Delivery is best effort by design: Raft retries what matters (heartbeats,
//! appends, votes), so a full queue or a down peer drops messages instead of
//! blocking the Raft thread. Each peer has one sender thread with a bounded
//! queue and its own connection; each accepted connection has a reader thread.

use std::collections::HashMap;
use std::io::{BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::mpsc::{Receiver, SyncSender, TrySendError, sync_channel};
use std::time::{Duration, Instant};

use protobuf::Message as _;
use raft::prelude::Message;

use super::node::Input;
use super::observer::{self, OBSERVER_MAGIC};
use tracing::{debug, warn};

/// Messages waiting for one peer; more are dropped (Raft resends).
const PEER_QUEUE_MAX: usize = 4096;
/// Raft messages carry metadata entries; a larger frame is an error.
const FRAME_BYTES_MAX: usize = 64 << 20;
const CONNECT_TIMEOUT: Duration = Duration::from_millis(500);
/// After a failed connect, messages to that peer are dropped this long.
const RECONNECT_BACKOFF: Duration = Duration::from_millis(200);
/// Data unacknowledged this long closes an outgoing connection (TCP_USER_TIMEOUT):
/// across a network partition TCP would back off for minutes, and the messages
/// queued behind would reach the peer long after it could hear a new one.
const UNACKNOWLEDGED_MAX: Duration = Duration::from_secs(2);
/// An inbound connection silent this long is closed: its sender reconnects
/// when it has something to say (the leader heartbeats several times a second).
/// Without it, a reader of a connection whose peer vanished behind a
/// partition would wait forever and hold one of INBOUND_CONNECTIONS_MAX.
const INBOUND_IDLE_MAX: Duration = Duration::from_secs(10);
/// Inbound connections served at once; more are refused.
const INBOUND_CONNECTIONS_MAX: usize = 64;

pub struct Transport {
    peers: HashMap<u64, SyncSender<Vec<u8>>>,
}

impl Transport {
    /// Starts accepting on `listener` (delivering into `inbox`) and a sender
    /// thread per peer.
    pub fn start(listener: TcpListener, peers: &[(u64, SocketAddr)], inbox: SyncSender<Input>) -> Self {
        std::thread::Builder::new()
            .name("quorum-accept".into())
            .spawn(move || accept_loop(listener, inbox))
            .expect("spawn the quorum listener");
        let peers = peers
            .iter()
            .map(|(id, addr)| {
                let (tx, rx) = sync_channel(PEER_QUEUE_MAX);
                let addr = *addr;
                std::thread::Builder::new()
                    .name(format!("quorum-peer-{id}"))
                    .spawn(move || send_loop(addr, rx))
                    .expect("spawn a quorum sender");
                (*id, tx)
            })
            .collect();
        Self { peers }
    }

    pub fn send(&self, message: Message) {
        let Some(peer) = self.peers.get(&message.to) else {
            warn!(to = message.to, "a Raft message for an unknown voter");
            return;
        };
        let Ok(bytes) = message.write_to_bytes() else {
            return;
        };
        match peer.try_send(bytes) {
            Ok(()) => {}
            Err(TrySendError::Full(_)) => debug!(to = message.to, "quorum queue full; message dropped"),
            Err(TrySendError::Disconnected(_)) => {}
        }
    }
}

fn send_loop(addr: SocketAddr, queue: Receiver<Vec<u8>>) {
    let mut stream: Option<TcpStream> = None;
    let mut retry_at = Instant::now();
    // Ends when the transport is dropped (the queue disconnects).
    while let Ok(bytes) = queue.recv() {
        if stream.is_none() && Instant::now() >= retry_at {
            match TcpStream::connect_timeout(&addr, CONNECT_TIMEOUT) {
                Ok(s) => {
                    let _ = s.set_nodelay(true);
                    let _ = s.set_write_timeout(Some(CONNECT_TIMEOUT));
                    let _ = socket2::SockRef::from(&s).set_tcp_user_timeout(Some(UNACKNOWLEDGED_MAX));
                    stream = Some(s);
                }
                Err(_) => retry_at = Instant::now() + RECONNECT_BACKOFF,
            }
        }
        let Some(s) = stream.as_mut() else {
            continue;
        };
        let mut frame = Vec::with_capacity(4 + bytes.len());
        frame.extend_from_slice(&(bytes.len() as u32).to_be_bytes());
        frame.extend_from_slice(&bytes);
        if s.write_all(&frame).is_err() {
            stream = None;
            retry_at = Instant::now() + RECONNECT_BACKOFF;
        }
    }
}

fn accept_loop(listener: TcpListener, inbox: SyncSender<Input>) {
    let active = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    for stream in listener.incoming() {
        let Ok(stream) = stream else {
            std::thread::sleep(Duration::from_millis(50));
            continue;
        };
        if active.load(std::sync::atomic::Ordering::Relaxed) >= INBOUND_CONNECTIONS_MAX {
            warn!("too many quorum connections; refusing one");
            continue;
        }
        active.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let (inbox, active) = (inbox.clone(), active.clone());
        let spawned = std::thread::Builder::new().name("quorum-recv".into()).spawn(move || {
            read_loop(stream, &inbox);
            active.fetch_sub(1, std::sync::atomic::Ordering::Relaxed);
        });
        if spawned.is_err() {
            warn!("cannot start a quorum reader thread");
        }
    }
}

/// Reads frames until the peer hangs up or sends something malformed. A
/// connection that opens with `OBSERVER_MAGIC` is a broker-only node's.
fn read_loop(stream: TcpStream, inbox: &SyncSender<Input>) {
    let peer = stream.peer_addr().ok();
    let _ = stream.set_read_timeout(Some(INBOUND_IDLE_MAX));
    let mut size = [0u8; 4];
    if (&stream).read_exact(&mut size).is_err() {
        return;
    }
    if u32::from_be_bytes(size) == OBSERVER_MAGIC {
        observer::serve(stream, inbox);
        return;
    }
    let mut reader = BufReader::new(stream);
    let mut buf = Vec::new();
    let mut first = true;
    // Bounded by the connection: each round reads one frame or ends it.
    while std::mem::take(&mut first) || reader.read_exact(&mut size).is_ok() {
        let len = u32::from_be_bytes(size) as usize;
        if len > FRAME_BYTES_MAX {
            warn!(?peer, len, "oversized quorum frame; closing");
            return;
        }
        buf.resize(len, 0);
        if reader.read_exact(&mut buf).is_err() {
            return;
        }
        let Ok(message) = Message::parse_from_bytes(&buf) else {
            warn!(?peer, "malformed quorum message; closing");
            return;
        };
        match inbox.try_send(Input::Raft(message)) {
            Ok(()) | Err(TrySendError::Full(_)) => {}
            Err(TrySendError::Disconnected(_)) => return,
        }
    }
}
