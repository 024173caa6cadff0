//! The controller thread: one raft-rs `RawNode` driven by ticks, peer messages
//! and local proposals, persisting through `LogStore` before it acknowledges
//! anything, and applying committed records to the `ClusterImage`.

use std::collections::HashMap;
use std::net::{SocketAddr, TcpListener};
use std::path::Path;
use std::sync::mpsc::{Receiver, RecvTimeoutError, SyncSender, TrySendError, sync_channel};
use std::time::{Duration, Instant};

use anyhow::Context;
use raft::prelude::{ConfState, Entry, EntryType, Message};
use raft::storage::MemStorage;
use raft::{Config, GetEntriesContext, RawNode, StateRole, Storage};
use tracing::{info, warn};
use uuid::Uuid;

use super::image::{ClusterImage, Record, RecordError};
use super::log_store::LogStore;
use super::observer::{ENTRIES_PER_FETCH_MAX, ObserverRequest, ObserverResponse};
use super::transport::Transport;
use crate::model::ErrorCode;

/// Raft's clock: elections after 10 ticks without a leader (1 s, randomised up
/// to 2 s by raft-rs), heartbeats every 2 ticks.
pub const TICK: Duration = Duration::from_millis(100);
const ELECTION_TICKS: usize = 10;
/// A tick this late means the thread did not run (the process was paused).
const STALL_TICKS: u32 = 5;
/// How long a write of Raft state waits for space on a full disk (the space
/// reserve spent too) before the node gives up: Raft cannot go on without
/// its log durable.
const DISK_FULL_WAIT_MAX: Duration = Duration::from_secs(600);
const DISK_FULL_RETRY: Duration = Duration::from_millis(100);
const HEARTBEAT_TICKS: usize = 2;
/// Inputs waiting for the controller thread; peers' messages beyond this are dropped.
const INBOX_MAX: usize = 16_384;
/// Proposals waiting to be committed; more are refused.
const PENDING_PROPOSALS_MAX: usize = 10_000;
/// A proposal not committed by then is answered with a timeout.
const PROPOSAL_TIMEOUT: Duration = Duration::from_secs(10);

pub enum Input {
    Raft(Message),
    Propose(Record, Reply),
    Status(SyncSender<QuorumStatus>),
    /// A broker-only node's request (voters serve these; see `observer`).
    Observer(ObserverRequest, SyncSender<ObserverResponse>),
}

/// A proposal's outcome: the log index it was applied at, or why it was not.
pub type Outcome = Result<u64, RecordError>;

/// Where a proposal's outcome goes: a blocked thread or an awaiting shard task.
pub enum Reply {
    Blocking(SyncSender<Outcome>),
    Async(futures_channel::oneshot::Sender<Outcome>),
    /// The controller's own proposals (fencing): the outcome shows in the image.
    Ignore,
}

impl Reply {
    pub fn send(self, outcome: Outcome) {
        match self {
            Reply::Blocking(tx) => {
                let _ = tx.try_send(outcome);
            }
            Reply::Async(tx) => {
                let _ = tx.send(outcome);
            }
            Reply::Ignore => {}
        }
    }
}

pub fn failed(code: ErrorCode, message: impl Into<String>) -> Outcome {
    Err(RecordError {
        code,
        message: message.into(),
    })
}

impl From<Message> for Input {
    fn from(m: Message) -> Self {
        Input::Raft(m)
    }
}

#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct QuorumStatus {
    pub node_id: u64,
    /// 0 while there is no leader.
    pub leader_id: u64,
    pub term: u64,
    pub role: String,
    pub commit_index: u64,
    pub applied_index: u64,
    pub voters: Vec<u64>,
    /// On the leader: each voter's last log index known to match the
    /// leader's (raft-rs's `matched`); empty elsewhere.
    pub matched: Vec<(u64, u64)>,
}

/// Called on the controller thread after every applied batch and leader change.
pub type OnChange = Box<dyn Fn(&ClusterImage, u64) + Send>;

/// One entry's payload: the record and the proposer's request id, by which
/// the proposing node finds its waiter when the entry is applied.
#[derive(serde::Serialize, serde::Deserialize)]
pub struct Envelope {
    pub request: Uuid,
    pub record: Record,
}

/// Applies one committed entry's payload to `image` (an empty payload — a
/// new leader's entry, a configuration change — only advances the index).
/// Returns the proposer's request id with the outcome. Voters and observers
/// apply entries through here alike.
pub fn apply_entry(image: &mut ClusterImage, index: u64, data: &[u8]) -> Option<(Uuid, Outcome)> {
    assert!(
        index == image.applied_index + 1,
        "committed entries arrive in order: {index} after {}",
        image.applied_index
    );
    image.applied_index = index;
    if data.is_empty() {
        return None;
    }
    let Ok(envelope) = serde_json::from_slice::<Envelope>(data) else {
        warn!(index, "skipping a metadata record this version cannot read");
        return None;
    };
    let result = image.apply(envelope.record).map(|()| index);
    Some((envelope.request, result))
}

pub struct Node {
    raft: RawNode<MemStorage>,
    store: LogStore,
    transport: Transport,
    image: ClusterImage,
    pending: HashMap<Uuid, (Reply, Instant)>,
    /// Proposals made while no leader was known (an election, a restart):
    /// proposed once one is, or answered with a timeout.
    unsent: std::collections::VecDeque<(Record, Reply, Instant)>,
    on_change: OnChange,
    leader_id: u64,
    liveness: Liveness,
}

/// The quorum leader's watch on the brokers: in combined mode every broker is
/// a voter, so a voter that has sent nothing for `session_timeout` is a
/// broker to fence, and one heard from again is unfenced.
pub struct Liveness {
    pub session_timeout: Duration,
    pub unclean_default: bool,
    /// `auto.leader.rebalance.enable`: how often the quorum leader moves
    /// leadership back to preferred replicas (`None`: never).
    pub rebalance_every: Option<Duration>,
    last_rebalance: Option<Instant>,
    last_heard: HashMap<u64, Instant>,
    leading_since: Option<Instant>,
    /// When a fence or unfence was last proposed per broker, so it is not repeated every tick.
    proposed_at: HashMap<i32, Instant>,
}

impl Liveness {
    pub fn new(session_timeout: Duration, unclean_default: bool, rebalance_every: Option<Duration>) -> Self {
        Self {
            session_timeout,
            unclean_default,
            rebalance_every,
            last_rebalance: None,
            last_heard: HashMap::new(),
            leading_since: None,
            proposed_at: HashMap::new(),
        }
    }
}

/// Starts the controller thread; returns its inbox.
pub fn start(
    node_id: u64,
    listener: TcpListener,
    voters: &[(u64, SocketAddr)],
    data_dir: &Path,
    on_change: OnChange,
    liveness: Liveness,
) -> anyhow::Result<SyncSender<Input>> {
    super::note_leader_contact();
    let (store, recovered) = LogStore::open(data_dir).context("opening the metadata log")?;
    let voter_ids: Vec<u64> = voters.iter().map(|(id, _)| *id).collect();
    let storage = MemStorage::new_with_conf_state(ConfState::from((voter_ids.clone(), vec![])));
    {
        let mut core = storage.wl();
        core.append(&recovered.entries).context("replaying the metadata log")?;
        core.set_hardstate(recovered.hard_state.clone());
    }
    let config = Config {
        id: node_id,
        election_tick: ELECTION_TICKS,
        heartbeat_tick: HEARTBEAT_TICKS,
        check_quorum: true,
        pre_vote: true,
        ..Default::default()
    };
    config.validate().context("Raft configuration")?;
    let logger = slog::Logger::root(slog::Discard, slog::o!());
    let raft = RawNode::new(&config, storage, &logger).context("starting Raft")?;
    let (inbox, inputs) = sync_channel(INBOX_MAX);
    let peers: Vec<(u64, SocketAddr)> = voters.iter().filter(|(id, _)| *id != node_id).copied().collect();
    let transport = Transport::start(listener, &peers, inbox.clone());
    info!(
        node_id,
        voters = ?voter_ids,
        replayed_entries = recovered.entries.len(),
        term = recovered.hard_state.term,
        "metadata quorum starting"
    );
    let mut node = Node {
        raft,
        store,
        transport,
        image: ClusterImage::default(),
        pending: HashMap::new(),
        unsent: std::collections::VecDeque::new(),
        on_change,
        leader_id: 0,
        liveness,
    };
    std::thread::Builder::new()
        .name("controller".into())
        .spawn(move || node.run(inputs))
        .context("starting the controller thread")?;
    Ok(inbox)
}

/// Runs a write of Raft state, retrying while the disk is full: the
/// controller thread stalls meanwhile, neither voting nor acknowledging,
/// which is safe (the stall detector resets liveness after), where failing
/// would take the whole broker down with its quorum seat.
fn persist(mut write: impl FnMut() -> std::io::Result<()>) -> std::io::Result<()> {
    let deadline = Instant::now() + DISK_FULL_WAIT_MAX;
    let mut warned = false;
    // Bounded by DISK_FULL_WAIT_MAX.
    loop {
        match write() {
            Err(e) if crate::storage::space::is_full(&e) && Instant::now() < deadline => {
                if !warned {
                    warn!("the disk is full: the metadata quorum's writes wait for space");
                    warned = true;
                }
                std::thread::sleep(DISK_FULL_RETRY);
            }
            written => return written,
        }
    }
}

impl Node {
    fn run(&mut self, inputs: Receiver<Input>) {
        let mut next_tick = Instant::now() + TICK;
        // Runs for the life of the process; every round is bounded by one tick.
        loop {
            match inputs.recv_timeout(next_tick.saturating_duration_since(Instant::now())) {
                Ok(input) => self.handle(input),
                Err(RecvTimeoutError::Timeout) => {}
                Err(RecvTimeoutError::Disconnected) => return,
            }
            let now = Instant::now();
            if now >= next_tick {
                if now.duration_since(next_tick) > TICK * STALL_TICKS {
                    // Paused (SIGSTOP) or starved: no burst of catch-up ticks
                    // (a leader would count its peers' silence it never
                    // waited for), and liveness starts over from now.
                    warn!(
                        stalled_ms = now.duration_since(next_tick).as_millis() as u64,
                        "the controller thread stalled; brokers get a new session timeout before any fencing"
                    );
                    self.liveness.leading_since = self.liveness.leading_since.map(|_| now);
                    next_tick = now;
                }
                self.raft.tick();
                if self.raft.raft.state == StateRole::Leader {
                    super::note_leader_contact();
                }
                next_tick += TICK;
                self.expire_proposals();
                self.watch_brokers();
            }
            if let Err(e) = self.on_ready() {
                // Raft's durability is gone: stop voting rather than lie.
                panic!("metadata log write failed: {e:#}");
            }
        }
    }

    fn handle(&mut self, input: Input) {
        match input {
            Input::Raft(message) => {
                let from = message.from;
                self.liveness.last_heard.insert(from, Instant::now());
                if let Err(e) = self.raft.step(message) {
                    warn!("dropping a Raft message: {e}");
                } else if from == self.raft.raft.leader_id {
                    super::note_leader_contact();
                }
            }
            Input::Propose(record, reply) => self.propose(record, reply),
            Input::Status(reply) => {
                let _ = reply.try_send(self.status());
            }
            Input::Observer(request, reply) => {
                let _ = reply.try_send(self.serve_observer(request));
            }
        }
    }

    /// A broker-only node's fetch (which is also its heartbeat) or proposal.
    fn serve_observer(&mut self, request: ObserverRequest) -> ObserverResponse {
        let leader_id = self.raft.raft.leader_id;
        match request {
            ObserverRequest::Fetch { node_id, from_index } => {
                if let Ok(id) = u64::try_from(node_id) {
                    self.liveness.last_heard.insert(id, Instant::now());
                }
                ObserverResponse::Entries {
                    leader_id,
                    entries: self.applied_entries(from_index),
                }
            }
            ObserverRequest::Propose { data } => {
                let accepted =
                    self.raft.raft.state == StateRole::Leader && self.raft.propose(vec![], data.into_bytes()).is_ok();
                ObserverResponse::Proposed { accepted, leader_id }
            }
        }
    }

    /// Applied entries from `from_index` on, at most ENTRIES_PER_FETCH_MAX.
    fn applied_entries(&self, from_index: u64) -> Vec<(u64, String)> {
        let applied = self.image.applied_index;
        let store = self.raft.store();
        let low = from_index.max(store.first_index().unwrap_or(1));
        if low > applied {
            return Vec::new();
        }
        let high = applied.min(low + ENTRIES_PER_FETCH_MAX - 1) + 1;
        match store.entries(low, high, None, GetEntriesContext::empty(false)) {
            Ok(entries) => entries
                .iter()
                .map(|e| (e.index, String::from_utf8_lossy(payload(e)).into_owned()))
                .collect(),
            Err(e) => {
                warn!("cannot read the metadata log for an observer: {e}");
                Vec::new()
            }
        }
    }

    fn propose(&mut self, record: Record, reply: Reply) {
        self.propose_until(record, reply, Instant::now() + PROPOSAL_TIMEOUT);
    }

    fn propose_until(&mut self, record: Record, reply: Reply, deadline: Instant) {
        if self.pending.len() + self.unsent.len() >= PENDING_PROPOSALS_MAX {
            reply.send(failed(ErrorCode::RequestTimedOut, "too many metadata changes waiting"));
            return;
        }
        if self.raft.raft.leader_id == 0 {
            self.unsent.push_back((record, reply, deadline));
            return;
        }
        let request = Uuid::new_v4();
        let data = serde_json::to_vec(&Envelope { request, record }).expect("records serialize");
        match self.raft.propose(vec![], data) {
            Ok(()) => {
                self.pending.insert(request, (reply, deadline));
            }
            Err(e) => reply.send(failed(
                ErrorCode::NotController,
                format!("the metadata quorum has no leader to take the change ({e})"),
            )),
        }
    }

    fn expire_proposals(&mut self) {
        let now = Instant::now();
        expire_pending(&mut self.pending, now);
        // Bounded by the queue's length, itself bounded by PENDING_PROPOSALS_MAX.
        while self.unsent.front().is_some_and(|(_, _, deadline)| *deadline <= now) {
            if let Some((_, reply, _)) = self.unsent.pop_front() {
                reply.send(failed(ErrorCode::NotController, "the metadata quorum has no leader"));
            }
        }
    }

    /// On the quorum leader: fences registered brokers gone silent for the
    /// session timeout, unfences fenced ones heard from again.
    fn watch_brokers(&mut self) {
        if self.raft.raft.state != StateRole::Leader {
            self.liveness.leading_since = None;
            return;
        }
        let now = Instant::now();
        let since = *self.liveness.leading_since.get_or_insert(now);
        let me = self.raft.raft.id;
        let mut proposals = Vec::new();
        for &broker in self.image.brokers.keys() {
            let Ok(voter) = u64::try_from(broker) else {
                continue;
            };
            // The leader hears itself: fenced while it was away, it unfences itself.
            let heard = self
                .liveness
                .last_heard
                .get(&voter)
                .copied()
                .unwrap_or(since)
                .max(since);
            let silent = voter != me && now.duration_since(heard) > self.liveness.session_timeout;
            let fenced = self.image.fenced.contains(&broker);
            let recently = self
                .liveness
                .proposed_at
                .get(&broker)
                .is_some_and(|t| now.duration_since(*t) < self.liveness.session_timeout);
            if silent != fenced && !recently {
                self.liveness.proposed_at.insert(broker, now);
                proposals.push(if silent {
                    warn!(broker, "broker stopped answering the quorum; fencing it");
                    Record::FenceBroker {
                        broker_id: broker,
                        unclean_default: self.liveness.unclean_default,
                    }
                } else {
                    info!(broker, "fenced broker is back; unfencing it");
                    Record::UnfenceBroker {
                        broker_id: broker,
                        unclean_default: self.liveness.unclean_default,
                    }
                });
            }
        }
        let rebalance_due = self
            .liveness
            .rebalance_every
            .is_some_and(|every| now.duration_since(*self.liveness.last_rebalance.get_or_insert(now)) >= every);
        if rebalance_due {
            self.liveness.last_rebalance = Some(now);
            let elections = self.image.preferred_elections();
            if !elections.is_empty() {
                info!(
                    partitions = elections.len(),
                    "moving leadership back to preferred replicas"
                );
            }
            proposals.extend(elections);
        }
        for record in proposals {
            self.propose(record, Reply::Ignore);
        }
    }

    fn status(&self) -> QuorumStatus {
        let raft = &self.raft.raft;
        QuorumStatus {
            node_id: raft.id,
            leader_id: raft.leader_id,
            term: raft.term,
            role: format!("{:?}", raft.state),
            commit_index: raft.raft_log.committed,
            applied_index: self.image.applied_index,
            voters: raft.prs().conf().voters().ids().iter().collect(),
            matched: if raft.state == StateRole::Leader {
                raft.prs()
                    .iter()
                    .map(|(id, progress)| (*id, progress.matched))
                    .collect()
            } else {
                Vec::new()
            },
        }
    }

    fn send(&self, messages: Vec<Message>) {
        for m in messages {
            self.transport.send(m);
        }
    }

    /// raft-rs's Ready protocol: send, apply, persist, send what needed
    /// persisting first, advance.
    fn on_ready(&mut self) -> anyhow::Result<()> {
        if !self.raft.has_ready() {
            return Ok(());
        }
        let mut ready = self.raft.ready();
        if let Some(soft) = ready.ss() {
            self.leader_changed(soft.leader_id, soft.raft_state);
        }
        self.send(ready.take_messages());
        self.apply(ready.take_committed_entries());
        if !ready.entries().is_empty() {
            persist(|| self.store.append(ready.entries()))?;
            self.raft.mut_store().wl().append(ready.entries())?;
        }
        if let Some(hard_state) = ready.hs() {
            persist(|| self.store.set_hard_state(hard_state))?;
            self.raft.mut_store().wl().set_hardstate(hard_state.clone());
        }
        self.send(ready.take_persisted_messages());
        let mut light = self.raft.advance(ready);
        if let Some(commit) = light.commit_index() {
            let mut hard_state = self.raft.store().rl().hard_state().clone();
            hard_state.commit = commit;
            persist(|| self.store.set_hard_state(&hard_state))?;
            self.raft.mut_store().wl().set_hardstate(hard_state);
        }
        self.send(light.take_messages());
        self.apply(light.take_committed_entries());
        self.raft.advance_apply();
        // Outside the Ready cycle: raft-rs forbids proposing inside it.
        if self.leader_id != 0 && !self.unsent.is_empty() {
            // Bounded by the queue, which cannot grow while a leader is known.
            for (record, reply, deadline) in std::mem::take(&mut self.unsent) {
                self.propose_until(record, reply, deadline);
            }
        }
        Ok(())
    }

    fn leader_changed(&mut self, leader_id: u64, role: StateRole) {
        if leader_id != self.leader_id {
            info!(
                leader_id,
                ?role,
                term = self.raft.raft.term,
                "metadata quorum leader changed"
            );
            self.leader_id = leader_id;
            (self.on_change)(&self.image, leader_id);
        }
    }

    fn apply(&mut self, entries: Vec<Entry>) {
        if entries.is_empty() {
            return;
        }
        for entry in entries {
            if let Some((request, outcome)) = apply_entry(&mut self.image, entry.index, payload(&entry))
                && let Some((reply, _)) = self.pending.remove(&request)
            {
                reply.send(outcome);
            }
        }
        (self.on_change)(&self.image, self.leader_id);
    }
}

/// Answers the proposals whose deadline has passed with a timeout; returns their ids.
pub fn expire_pending(pending: &mut HashMap<Uuid, (Reply, Instant)>, now: Instant) -> Vec<Uuid> {
    let expired: Vec<Uuid> = pending
        .iter()
        .filter(|(_, (_, deadline))| *deadline <= now)
        .map(|(id, _)| *id)
        .collect();
    for id in &expired {
        if let Some((reply, _)) = pending.remove(id) {
            reply.send(failed(
                ErrorCode::RequestTimedOut,
                "the metadata change was not committed in time",
            ));
        }
    }
    expired
}

/// A normal entry's record bytes; nothing for configuration changes.
fn payload(entry: &Entry) -> &[u8] {
    if entry.get_entry_type() == EntryType::EntryNormal {
        &entry.data
    } else {
        &[]
    }
}

/// Sends `input` to the controller thread without blocking; a full inbox is an error.
pub fn offer(inbox: &SyncSender<Input>, input: Input) -> Result<(), RecordError> {
    inbox.try_send(input).map_err(|e| RecordError {
        code: ErrorCode::RequestTimedOut,
        message: match e {
            TrySendError::Full(_) => "the controller is overloaded".to_string(),
            TrySendError::Disconnected(_) => "the controller has stopped".to_string(),
        },
    })
}
