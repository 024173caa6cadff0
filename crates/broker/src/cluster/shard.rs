//! What one shard owns: its copy of the metadata and the logs of the
//! partitions assigned to it. Also the routing helpers every handler uses to
//! reach a partition's owner, wherever the request arrived.

use std::cell::{Cell, OnceCell, RefCell};
use std::collections::HashMap;
use std::rc::Rc;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::BytesMut;
use tracing::{error, info, warn};
use uuid::Uuid;

use super::metadata::Metadata;
use crate::config::BrokerConfig;
use crate::model::{ErrorCode, TopicPartition, now_ms};
use crate::record::BatchError;
use crate::runtime::{self, submit_to};
use crate::storage::{AppendInfo, PartitionLog, ReadResult, Reader};

/// How often a shard writes indexes behind and checks `flush.ms`.
const MAINTENANCE_TICK_MS: u64 = 1000;
const PARTITION_METADATA_FILE: &str = "partition.metadata";
/// A deleted partition's directory is renamed `<topic>-<partition>.<topic id><this>`
/// before it is removed (as Kafka's `-delete` directories); start-up removes leftovers.
pub const DELETED_SUFFIX: &str = "-delete";

/// Marks the shard's metadata apply finished, however it ends.
struct AppliedOnDrop<'a>(&'a ShardState);

impl Drop for AppliedOnDrop<'_> {
    fn drop(&mut self) {
        self.0.applying.set(false);
        self.0.applied.notify(usize::MAX);
    }
}

/// The shard that owns a partition: a stable hash of the topic plus the index,
/// so a topic's partitions spread over consecutive shards.
pub fn owner_of(topic: &str, partition: i32, shards: usize) -> usize {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for b in topic.bytes() {
        hash ^= b as u64;
        hash = hash.wrapping_mul(0x0100_0000_01b3);
    }
    (hash.wrapping_add(partition as u64) % shards as u64) as usize
}

struct OwnedLog {
    topic_id: Uuid,
    log: Rc<PartitionLog>,
}

pub struct ShardState {
    pub id: usize,
    pub config: Arc<BrokerConfig>,
    metadata: RefCell<Arc<Metadata>>,
    logs: RefCell<HashMap<TopicPartition, OwnedLog>>,
    /// Cluster mode: partitions of this shard that another broker leads,
    /// with that leader and epoch, and the handle that stops their fetcher.
    followers: RefCell<HashMap<TopicPartition, (i32, i32, super::replica::Cancel)>>,
    /// Cluster mode: replication state of the partitions this shard leads.
    pub leaderships: RefCell<HashMap<TopicPartition, super::leader::Leadership>>,
    pub controller: Option<super::controller::Controller>,
    stopping: Cell<bool>,
    pub stop: event_listener::Event,
    /// Metadata snapshots apply one at a time (opening partitions awaits the
    /// blocking pool); the next waits for this to clear.
    applying: Cell<bool>,
    applied: event_listener::Event,
}

thread_local! {
    static LOCAL: OnceCell<Rc<ShardState>> = const { OnceCell::new() };
}

/// This shard's state. Panics if called off a shard thread.
pub fn local() -> Rc<ShardState> {
    LOCAL.with(|l| Rc::clone(l.get().expect("shard state not installed")))
}

impl ShardState {
    /// Creates the shard's state; `apply_metadata` then opens (and recovers)
    /// the partitions it owns.
    pub fn install(id: usize, config: Arc<BrokerConfig>, metadata: Arc<Metadata>) -> Rc<ShardState> {
        let controller = (id == 0).then(|| super::controller::Controller::new(&config, &metadata));
        let state = Rc::new(ShardState {
            id,
            config,
            metadata: RefCell::new(Arc::new(Metadata::default())),
            logs: RefCell::new(HashMap::new()),
            followers: RefCell::new(HashMap::new()),
            leaderships: RefCell::new(HashMap::new()),
            controller,
            stopping: Cell::new(false),
            stop: event_listener::Event::new(),
            applying: Cell::new(false),
            applied: event_listener::Event::new(),
        });
        LOCAL.with(|l| {
            assert!(l.set(Rc::clone(&state)).is_ok(), "shard state installed twice");
        });
        state
    }

    pub fn metadata(&self) -> Arc<Metadata> {
        Arc::clone(&self.metadata.borrow())
    }

    pub fn log(&self, tp: &TopicPartition) -> Option<Rc<PartitionLog>> {
        self.logs.borrow().get(tp).map(|o| Rc::clone(&o.log))
    }

    pub fn owned_logs(&self) -> Vec<Rc<PartitionLog>> {
        self.logs.borrow().values().map(|o| Rc::clone(&o.log)).collect()
    }

    pub fn is_stopping(&self) -> bool {
        self.stopping.get()
    }

    /// Reconciles the owned logs with a metadata snapshot: opens new
    /// partitions, deletes removed ones, and pushes config changes down.
    /// A removed partition's directory is renamed through io_uring and
    /// removed on the blocking pool; new partitions are opened on the pool
    /// too, and the snapshot becomes visible on this shard only once they are
    /// open. The controller answers after every shard has applied it.
    pub async fn apply_metadata(&self, new: Arc<Metadata>) {
        // Bounded: each wake means the snapshot being applied is done.
        while self.applying.get() {
            let listener = self.applied.listen();
            if !self.applying.get() {
                break;
            }
            listener.await;
        }
        if new.version < self.metadata.borrow().version {
            return;
        }
        self.applying.set(true);
        let _done = AppliedOnDrop(self);
        self.drop_removed_logs(&new).await;
        let opened = self.open_new_logs(&new).await;
        *self.metadata.borrow_mut() = Arc::clone(&new);
        {
            let mut logs = self.logs.borrow_mut();
            logs.extend(opened);
            // One config per topic, pushed to each of its logs: linear in the logs.
            let mut configs = HashMap::new();
            for (tp, owned) in logs.iter() {
                let Some(topic) = new.topics.get(&tp.topic) else {
                    continue;
                };
                let config = configs
                    .entry(&tp.topic)
                    .or_insert_with(|| new.log_config(&self.config.log_defaults, topic));
                owned.log.set_config(config.clone());
            }
        }
        self.reconcile_followers(&new);
        self.reconcile_leaderships(&new);
    }

    /// Waits (at most `timeout`) until this shard's metadata has `topic`: a
    /// topic another request just created may still be on its way to the
    /// shards, which apply snapshots one at a time. False at the timeout.
    pub async fn wait_for_topic(&self, topic: &str, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        // Bounded by the deadline: each round ends in the topic, a wake, or the timeout.
        loop {
            if self.metadata.borrow().topics.contains_key(topic) {
                return true;
            }
            let listener = self.applied.listen();
            if self.metadata.borrow().topics.contains_key(topic) {
                return true;
            }
            if compio::time::timeout_at(deadline, listener).await.is_err() {
                return false;
            }
        }
    }

    /// Takes out the logs whose topic is gone (or that moved away from this
    /// broker) and deletes their directories off the event loop.
    async fn drop_removed_logs(&self, new: &Metadata) {
        let me = self.config.broker_id;
        let mut removed = Vec::new();
        self.logs.borrow_mut().retain(|tp, owned| {
            let keep = new.topics.get(&tp.topic).is_some_and(|t| {
                t.id == owned.topic_id && tp.partition < t.partitions && t.is_replica(tp.partition, me)
            });
            if !keep {
                removed.push((tp.clone(), owned.topic_id, owned.log.dir().to_path_buf()));
            }
            keep
        });
        for (tp, topic_id, dir) in removed {
            info!(partition = %tp, "deleting partition");
            // Renamed first, so a topic of the same name created next opens a fresh directory.
            let doomed = dir.with_file_name(format!("{}.{}{DELETED_SUFFIX}", tp.dir_name(), topic_id.simple()));
            if let Err(e) = compio::fs::rename(&dir, &doomed).await {
                warn!(partition = %tp, "delete failed: {e}");
                continue;
            }
            compio::runtime::spawn_blocking(move || {
                if let Err(e) = std::fs::remove_dir_all(&doomed) {
                    warn!(dir = %doomed.display(), "removing a deleted partition failed: {e}");
                }
            })
            .detach();
        }
    }

    /// Opens every partition of `new` this shard should own and does not yet.
    /// Inline, on the event loop: opening them on the blocking pool let a
    /// snapshot's topics reach the controller's answers before this shard had
    /// their logs, and group members that raced a new `__consumer_offsets`
    /// missed the first generation (tests/test_groups.py, 2 runs in 8).
    /// Opens (and recovers) the partitions of `new` this shard owns but has
    /// no log for, all in one job on compio's blocking pool: recovery reads
    /// whole segments, which must not stall the event loop.
    async fn open_new_logs(&self, new: &Metadata) -> Vec<(TopicPartition, OwnedLog)> {
        let shards = runtime::shard_count();
        let me = self.config.broker_id;
        let mut wanted = Vec::new();
        {
            let logs = self.logs.borrow();
            for topic in new.topics.values() {
                let log_config = new.log_config(&self.config.log_defaults, topic);
                for partition in 0..topic.partitions {
                    if owner_of(&topic.name, partition, shards) != self.id || !topic.is_replica(partition, me) {
                        continue;
                    }
                    let tp = TopicPartition::new(topic.name.clone(), partition);
                    if !logs.contains_key(&tp) {
                        wanted.push((tp, topic.id, log_config.clone()));
                    }
                }
            }
        }
        if wanted.is_empty() {
            return Vec::new();
        }
        let config = Arc::clone(&self.config);
        let opening = compio::runtime::spawn_blocking(move || {
            let now = now_ms();
            wanted
                .into_iter()
                .map(|(tp, topic_id, log_config)| {
                    let log = open_partition(&config, &tp, topic_id, log_config, now);
                    (tp, topic_id, log)
                })
                .collect::<Vec<_>>()
        });
        let results = match opening.await {
            Ok(results) => results,
            Err(_) => {
                error!("opening partitions panicked on the blocking pool");
                return Vec::new();
            }
        };
        let mut opened = Vec::with_capacity(results.len());
        for (tp, topic_id, log) in results {
            match log {
                Ok(mut log) => {
                    log.adopt();
                    opened.push((
                        tp,
                        OwnedLog {
                            topic_id,
                            log: Rc::new(log),
                        },
                    ));
                }
                Err(e) => error!(partition = %tp, "cannot open partition: {e}"),
            }
        }
        opened
    }

    /// Tracks the partitions this shard leads (forgetting the others) and
    /// recomputes their high watermarks, which an ISR change may move.
    fn reconcile_leaderships(&self, metadata: &Metadata) {
        let me = self.config.broker_id;
        let led = |tp: &TopicPartition| {
            metadata
                .topics
                .get(&tp.topic)
                .is_some_and(|t| !t.assignment.is_empty() && t.placement(tp.partition, me).leader == me)
        };
        let logs: Vec<(TopicPartition, Rc<PartitionLog>)> = self
            .logs
            .borrow()
            .iter()
            .map(|(tp, owned)| (tp.clone(), Rc::clone(&owned.log)))
            .collect();
        {
            let mut leaderships = self.leaderships.borrow_mut();
            leaderships.retain(|tp, _| led(tp));
            for (tp, _) in logs.iter().filter(|(tp, _)| led(tp)) {
                leaderships
                    .entry(tp.clone())
                    .or_insert_with(super::leader::Leadership::starting_now);
            }
        }
        for (tp, log) in &logs {
            if led(tp) {
                let epoch = metadata.topics[&tp.topic].placement(tp.partition, me).leader_epoch;
                log.become_leader(epoch);
                // On the blocking pool; the epoch's first batch waits for it.
                let (saved_tp, saved_log) = (tp.clone(), Rc::clone(log));
                compio::runtime::spawn(async move {
                    if let Err(e) = saved_log.make_epochs_durable().await {
                        error!(partition = %saved_tp, epoch, "cannot record the new leader epoch: {e}");
                    }
                })
                .detach();
                super::leader::update_high_watermark(tp, log);
            }
        }
    }

    /// Starts a fetcher for each partition of this shard that another broker
    /// leads, and stops those whose leader or epoch changed or that went away.
    fn reconcile_followers(&self, metadata: &Metadata) {
        let me = self.config.broker_id;
        let shards = runtime::shard_count();
        // The leader's advertised host and port: resolved by the fetcher itself,
        // on compio's blocking pool, never here on the event loop.
        let mut wanted: HashMap<TopicPartition, (i32, i32, (String, u16))> = HashMap::new();
        for topic in metadata.topics.values().filter(|t| !t.assignment.is_empty()) {
            for partition in 0..topic.partitions {
                if owner_of(&topic.name, partition, shards) != self.id {
                    continue;
                }
                let placement = topic.placement(partition, me);
                if placement.leader == me || placement.leader < 0 || !placement.replicas.contains(&me) {
                    continue;
                }
                let Some(endpoint) = metadata.brokers.get(&placement.leader) else {
                    continue;
                };
                let tp = TopicPartition::new(topic.name.clone(), partition);
                let address = (endpoint.host.clone(), endpoint.port);
                wanted.insert(tp, (placement.leader, placement.leader_epoch, address));
            }
        }
        let mut followers = self.followers.borrow_mut();
        followers.retain(|tp, (leader, epoch, cancel)| {
            let keep = wanted.get(tp).is_some_and(|(l, e, _)| l == leader && e == epoch);
            if !keep {
                cancel.cancel();
            }
            keep
        });
        for (tp, (leader, epoch, address)) in wanted {
            if followers.contains_key(&tp) {
                continue;
            }
            let cancel = super::replica::Cancel::default();
            let (follow_tp, follow_cancel) = (tp.clone(), cancel.clone());
            let follow =
                move || super::replica::follow(follow_tp.clone(), address.clone(), epoch, follow_cancel.clone());
            compio::runtime::spawn(runtime::supervised(crate::metrics::TaskKind::Follower, follow)).detach();
            followers.insert(tp, (leader, epoch, cancel));
        }
    }

    /// Background work of this shard: index write-behind, `flush.ms`, retention.
    pub async fn maintenance_loop(self: Rc<Self>) {
        let mut tick = compio::time::interval(Duration::from_millis(MAINTENANCE_TICK_MS));
        let retention_every = Duration::from_millis(self.config.retention_check_interval_ms);
        let mut last_retention = Instant::now();
        while !self.is_stopping() {
            tick.tick().await;
            let now = now_ms();
            let run_retention = last_retention.elapsed() >= retention_every;
            if run_retention {
                last_retention = Instant::now();
            }
            super::leader::shrink_lagging(&self.metadata());
            for log in self.owned_logs() {
                if let Err(e) = log.flush_if_due(now).await {
                    warn!(partition = %log.topic_partition(), "flush failed: {e}");
                }
                if let Err(e) = log.flush_indexes() {
                    warn!(partition = %log.topic_partition(), "index write failed: {e}");
                }
                if let Err(e) = log.checkpoint_high_watermark().await {
                    warn!(partition = %log.topic_partition(), "high watermark checkpoint failed: {e}");
                }
                if run_retention && let Err(e) = log.enforce_retention(now).await {
                    warn!(partition = %log.topic_partition(), "retention failed: {e}");
                }
                if let Err(e) = log.make_epochs_durable().await {
                    warn!(partition = %log.topic_partition(), "leader-epoch checkpoint failed: {e}");
                }
            }
        }
    }

    /// Clean shutdown of this shard: no new connections, indexes written out.
    pub fn shutdown(&self) {
        self.stopping.set(true);
        self.stop.notify(usize::MAX);
        for log in self.owned_logs() {
            if let Err(e) = log.flush_indexes() {
                warn!(partition = %log.topic_partition(), "index write at shutdown failed: {e}");
            }
        }
    }
}

fn open_partition(
    config: &BrokerConfig,
    tp: &TopicPartition,
    topic_id: Uuid,
    log_config: crate::storage::LogConfig,
    now: i64,
) -> std::io::Result<PartitionLog> {
    let dir = config.data_dir.join(tp.dir_name());
    let marker = dir.join(PARTITION_METADATA_FILE);
    let expected = format!("version: 0\ntopic_id: {topic_id}\n");
    match std::fs::read_to_string(&marker) {
        Ok(found) if found != expected => {
            // A directory left by an older topic of the same name.
            warn!(partition = %tp, "directory belongs to another topic id; wiping it");
            std::fs::remove_dir_all(&dir)?;
        }
        _ => {}
    }
    let log = PartitionLog::open(&config.data_dir, tp.clone(), log_config, now)?;
    if !marker.exists() {
        std::fs::write(&marker, expected)?;
    }
    Ok(log)
}

fn unknown_partition() -> BatchError {
    BatchError {
        code: ErrorCode::UnknownTopicOrPartition,
        message: "this server does not host this topic-partition".into(),
    }
}

/// Cluster mode: clients must produce to and fetch from the partition's
/// leader; another broker answers NOT_LEADER_OR_FOLLOWER so they refresh
/// their metadata. Unknown partitions are left to the log lookup.
pub fn check_leader(tp: &TopicPartition) -> Result<(), ErrorCode> {
    check_leader_epoch(tp, NO_LEADER_EPOCH).map(|_| ())
}

/// Waits (on `tp`'s owner shard) until the high watermark covers offsets
/// below `end`, which this broker appended as leader in `epoch`.
pub async fn wait_until_committed(
    tp: &TopicPartition,
    log: &PartitionLog,
    end: i64,
    epoch: i32,
    timeout: Duration,
) -> Result<(), (ErrorCode, String)> {
    log.wait_for_data(end - 1, Instant::now() + timeout, Reader::Consumer)
        .await;
    // A leader demoted meanwhile may have cut the batch off and refilled its
    // offsets from the new leader: the high watermark then covers other
    // records, so only an unchanged epoch may answer.
    if leader_epoch_here(tp) != Ok(epoch) {
        return Err((
            ErrorCode::NotLeaderOrFollower,
            format!("leadership of {tp} moved before the batch was committed"),
        ));
    }
    if log.high_watermark() < end {
        return Err((
            ErrorCode::RequestTimedOut,
            format!("the in-sync replicas of {tp} did not confirm the batch in time"),
        ));
    }
    Ok(())
}

/// The leader epoch this broker leads `tp` in, by this shard's metadata
/// (`LEADER_EPOCH` for a partition no quorum places).
pub fn leader_epoch_here(tp: &TopicPartition) -> Result<i32, ErrorCode> {
    check_leader_epoch(tp, NO_LEADER_EPOCH)
}

/// A request's `current_leader_epoch` when the client sent none.
pub const NO_LEADER_EPOCH: i32 = -1;

/// As `check_leader`, and fences a client that knows a different leader
/// epoch (KIP-320): an older one gets FENCED_LEADER_EPOCH, a newer one (this
/// broker's metadata lags) UNKNOWN_LEADER_EPOCH; both refresh metadata.
/// Returns the epoch this broker leads in. On the produce and fetch paths:
/// it borrows the placement, never copies it.
pub fn check_leader_epoch(tp: &TopicPartition, current_leader_epoch: i32) -> Result<i32, ErrorCode> {
    let shard = local();
    let metadata = shard.metadata();
    let placed = metadata
        .topic_with_partition(&tp.topic, tp.partition)
        .and_then(|t| t.assignment.get(tp.partition as usize));
    let Some(placement) = placed else {
        // A single node leads all it has; unknown partitions are left to the log lookup.
        return Ok(crate::storage::log::LEADER_EPOCH);
    };
    if placement.leader < 0 {
        Err(ErrorCode::LeaderNotAvailable)
    } else if placement.leader != shard.config.broker_id {
        Err(ErrorCode::NotLeaderOrFollower)
    } else if current_leader_epoch == NO_LEADER_EPOCH || current_leader_epoch == placement.leader_epoch {
        Ok(placement.leader_epoch)
    } else if current_leader_epoch < placement.leader_epoch {
        Err(ErrorCode::FencedLeaderEpoch)
    } else {
        Err(ErrorCode::UnknownLeaderEpoch)
    }
}

/// One partition's batch of a Produce request.
pub struct AppendSpec {
    pub tp: TopicPartition,
    pub batch: BytesMut,
}

/// Appends each batch on its partition's owner shard, with one task per
/// owner shard (the partitions of that shard append concurrently inside it).
/// With acks=all on a replicated partition it needs `min.insync.replicas` in
/// the ISR first, and the append answers with what `wait_committed_many` must
/// then wait for. Results come back in the order of `specs`. The request's
/// frame is no longer needed once this returns: its batches are written.
pub async fn append_many(specs: Vec<AppendSpec>, now: i64, acks: i16) -> Vec<Result<Appended, BatchError>> {
    on_owners(
        specs,
        |spec| &spec.tp,
        move |spec| append_here(spec, now, acks),
        || Err(shutting_down()),
    )
    .await
}

/// A written batch, and for acks=all on a replicated partition where the
/// high watermark must reach (end offset, and the leader epoch it was
/// appended in).
pub struct Appended {
    pub info: AppendInfo,
    pub commit: Option<(TopicPartition, i64, i32)>,
}

/// acks=all: waits on the owner shards (one task each) until the high
/// watermark passes each batch, or `timeout`; results in the order of `appended`.
pub async fn wait_committed_many(
    appended: Vec<Result<Appended, BatchError>>,
    timeout: Duration,
) -> Vec<Result<AppendInfo, BatchError>> {
    // `None` marks a batch whose answer waits for its commit.
    let mut answers: Vec<Option<Result<AppendInfo, BatchError>>> = Vec::with_capacity(appended.len());
    let mut waits = Vec::new();
    let mut waiting_infos = Vec::new();
    for result in appended {
        match result {
            Ok(Appended {
                info,
                commit: Some(commit),
            }) => {
                waits.push(commit);
                waiting_infos.push(info);
                answers.push(None);
            }
            Ok(Appended { info, commit: None }) => answers.push(Some(Ok(info))),
            Err(e) => answers.push(Some(Err(e))),
        }
    }
    let waited = on_owners(
        waits,
        |(tp, _, _)| tp,
        move |(tp, end, epoch)| async move {
            let Some(log) = local().log(&tp) else {
                return Err(unknown_partition());
            };
            wait_until_committed(&tp, &log, end, epoch, timeout)
                .await
                .map_err(|(code, message)| BatchError { code, message })
        },
        || Err(shutting_down()),
    )
    .await;
    let mut waited = waited.into_iter().zip(waiting_infos);
    let answers: Vec<_> = answers
        .into_iter()
        .map(|answer| {
            answer.unwrap_or_else(|| {
                let (committed, info) = waited.next().expect("one wait per batch that waits");
                committed.map(|()| info)
            })
        })
        .collect();
    assert!(waited.next().is_none(), "every wait is answered");
    answers
}

fn not_leader(code: ErrorCode, tp: &TopicPartition) -> BatchError {
    BatchError {
        code,
        message: format!("this broker does not lead {tp}"),
    }
}

fn shutting_down() -> BatchError {
    BatchError {
        code: ErrorCode::LeaderNotAvailable,
        message: "broker is shutting down".into(),
    }
}

/// One partition's append, on its owner shard. Leadership is decided here,
/// once, by the owner's metadata: the receiving shard may have applied a
/// change first or not yet. The log stamps that epoch or refuses the batch.
async fn append_here(spec: AppendSpec, now: i64, acks: i16) -> Result<Appended, BatchError> {
    let AppendSpec { tp, batch } = spec;
    let shard = local();
    let Some(log) = shard.log(&tp) else {
        return Err(unknown_partition());
    };
    let epoch = leader_epoch_here(&tp).map_err(|code| not_leader(code, &tp))?;
    let replicated = acks == -1 && shard.leaderships.borrow().contains_key(&tp);
    if replicated {
        let isr = in_sync_replica_count(&tp);
        let min_isr = log.min_insync_replicas();
        if isr < min_isr {
            return Err(BatchError {
                code: ErrorCode::NotEnoughReplicas,
                message: format!("{tp} has {isr} in-sync replicas; min.insync.replicas is {min_isr}"),
            });
        }
    }
    let info = log.append(batch, now, epoch).await?;
    assert_eq!(
        info.leader_epoch, epoch,
        "{tp}: the log stamps the epoch the owner decided"
    );
    // A duplicate (a retry of a batch already in the log) waits too: the
    // first attempt may have timed out before the ISR had it.
    let commit = replicated.then(|| (tp, info.last_offset + 1, epoch));
    Ok(Appended { info, commit })
}

/// The size of `tp`'s ISR by this shard's metadata (0 if it is not placed).
fn in_sync_replica_count(tp: &TopicPartition) -> i32 {
    let shard = local();
    let metadata = shard.metadata();
    metadata.topics.get(&tp.topic).map_or(0, |topic| {
        topic.placement(tp.partition, shard.config.broker_id).isr.len() as i32
    })
}

/// One partition of a multi-partition read (Fetch).
pub struct ReadSpec {
    pub tp: TopicPartition,
    pub offset: i64,
    pub max_bytes: u64,
    /// The leader epoch the client knows (KIP-320), `NO_LEADER_EPOCH` for none.
    pub current_leader_epoch: i32,
}

/// Runs `f` for every item on the owner shard of its partition, with one
/// task per owner shard (not one per partition; the items of one shard run
/// concurrently inside it), so a request's cross-shard work is bounded by the
/// shard count. Results come back in the order of `items`; a shard that has
/// stopped answers `stopped()` for its items.
async fn on_owners<T, R, F, Fut>(items: Vec<T>, tp: impl Fn(&T) -> &TopicPartition, f: F, stopped: fn() -> R) -> Vec<R>
where
    T: Send + 'static,
    R: Send + 'static,
    F: Fn(T) -> Fut + Clone + Send + 'static,
    Fut: Future<Output = R> + 'static,
{
    let shards = runtime::shard_count();
    let count = items.len();
    let mut groups: Vec<(Vec<usize>, Vec<T>)> = (0..shards).map(|_| (Vec::new(), Vec::new())).collect();
    for (i, item) in items.into_iter().enumerate() {
        let tp = tp(&item);
        let group = &mut groups[owner_of(&tp.topic, tp.partition, shards)];
        group.0.push(i);
        group.1.push(item);
    }
    let per_owner = groups
        .into_iter()
        .enumerate()
        .filter(|(_, (indices, _))| !indices.is_empty())
        .map(|(owner, (indices, items))| {
            let f = f.clone();
            async move {
                let ran = submit_to(owner, move || async move {
                    futures_util::future::join_all(items.into_iter().map(f)).await
                });
                let outcomes = ran
                    .await
                    .unwrap_or_else(|_| indices.iter().map(|_| stopped()).collect());
                assert_eq!(outcomes.len(), indices.len(), "one result per item");
                indices.into_iter().zip(outcomes)
            }
        });
    let mut results: Vec<Option<R>> = (0..count).map(|_| None).collect();
    for (i, outcome) in futures_util::future::join_all(per_owner).await.into_iter().flatten() {
        results[i] = Some(outcome);
    }
    results.into_iter().map(|r| r.expect("every item answered")).collect()
}

/// Reads many partitions, one task per owner shard (`on_owners`). Results
/// come back in the order of `specs`.
pub async fn read_many(specs: Vec<ReadSpec>, replica: Option<i32>) -> Vec<Result<ReadResult, ErrorCode>> {
    let checked: Vec<Result<ReadSpec, ErrorCode>> = specs
        .into_iter()
        .map(|spec| check_leader_epoch(&spec.tp, spec.current_leader_epoch).map(|_| spec))
        .collect();
    let (refused, led) = split_refused(checked);
    let reads = on_owners(
        led,
        |spec| &spec.tp,
        move |spec| async move { read_here(&spec, replica) },
        || Err(ErrorCode::LeaderNotAvailable),
    )
    .await;
    merge_refused(refused, reads)
}

/// Items refused before any cross-shard work keep their place: `(slots,
/// accepted)`, where a slot is `Some(error)` or `None` for the next accepted one.
fn split_refused<T, E>(items: Vec<Result<T, E>>) -> (Vec<Option<E>>, Vec<T>) {
    let mut slots = Vec::with_capacity(items.len());
    let mut accepted = Vec::new();
    for item in items {
        match item {
            Ok(t) => {
                accepted.push(t);
                slots.push(None);
            }
            Err(e) => slots.push(Some(e)),
        }
    }
    (slots, accepted)
}

/// The inverse of `split_refused`, with the accepted items' results.
fn merge_refused<R, E>(slots: Vec<Option<E>>, results: Vec<Result<R, E>>) -> Vec<Result<R, E>> {
    let mut results = results.into_iter();
    let merged = slots
        .into_iter()
        .map(|slot| match slot {
            Some(e) => Err(e),
            None => results.next().expect("one result per accepted item"),
        })
        .collect();
    assert!(results.next().is_none(), "every result is used");
    merged
}

/// One partition's read, on its owner shard.
fn read_here(spec: &ReadSpec, replica: Option<i32>) -> Result<ReadResult, ErrorCode> {
    let Some(log) = local().log(&spec.tp) else {
        return Err(ErrorCode::UnknownTopicOrPartition);
    };
    match replica {
        Some(follower) => {
            super::leader::follower_fetched(&spec.tp, &log, follower, spec.offset);
            log.read_as(spec.offset, spec.max_bytes, true, Reader::Replica)
        }
        None => log.read(spec.offset, spec.max_bytes, true),
    }
}

/// Resolves when any of `wanted` (partition, offset) has data past its
/// offset, or at `deadline`. Each owner shard is asked once for listeners on
/// its partitions; the wait itself runs here, so no shard holds a task for a
/// long poll, and returning drops (unregisters) every listener.
pub async fn wait_for_any(wanted: Vec<(TopicPartition, i64)>, deadline: Instant, reader: Reader) {
    // Per partition: Ok(None) no such log here, Ok(Some(l)) a listener, Err(()) data is there.
    let answers = on_owners(
        wanted,
        |(tp, _)| tp,
        move |(tp, offset)| async move {
            match local().log(&tp) {
                None => Ok(None),
                Some(log) => log.data_listener(offset, reader).map(Some).ok_or(()),
            }
        },
        // A shard that is stopping: no wait.
        || Err(()),
    )
    .await;
    let mut listeners = Vec::with_capacity(answers.len());
    for answer in answers {
        match answer {
            Ok(Some(listener)) => listeners.push(listener),
            Ok(None) => {}
            Err(()) => return,
        }
    }
    if listeners.is_empty() {
        compio::time::sleep_until(deadline).await;
        return;
    }
    let _ = compio::time::timeout_at(deadline, futures_util::future::select_all(listeners)).await;
}

/// One partition of a request that asks its owner shard a question
/// (ListOffsets, OffsetForLeaderEpoch): `arg` is the timestamp or the epoch.
pub struct LookupSpec {
    pub tp: TopicPartition,
    /// The leader epoch the client knows (KIP-320), `NO_LEADER_EPOCH` for none.
    pub current_leader_epoch: i32,
    pub arg: i64,
}

/// Checks each partition's leader epoch here, then answers `f` on the owner
/// shards, one task per shard (`on_owners`), in the order of `specs`.
async fn lookup_many<R, F>(specs: Vec<LookupSpec>, f: F) -> Vec<Result<R, ErrorCode>>
where
    R: Send + 'static,
    F: Fn(&PartitionLog, i64) -> Result<R, ErrorCode> + Clone + Send + 'static,
{
    let checked = specs
        .into_iter()
        .map(|spec| check_leader_epoch(&spec.tp, spec.current_leader_epoch).map(|_| spec))
        .collect();
    let (refused, led) = split_refused(checked);
    let answers = on_owners(
        led,
        |spec| &spec.tp,
        move |spec| {
            let f = f.clone();
            async move {
                match local().log(&spec.tp) {
                    Some(log) => f(&log, spec.arg),
                    None => Err(ErrorCode::UnknownTopicOrPartition),
                }
            }
        },
        || Err(ErrorCode::LeaderNotAvailable),
    )
    .await;
    merge_refused(refused, answers)
}

/// ListOffsets: for each partition (`arg` the timestamp) the offset, its
/// timestamp and the leader epoch it was written in.
pub async fn offsets_for(specs: Vec<LookupSpec>) -> Vec<Result<(i64, i64, i32), ErrorCode>> {
    lookup_many(specs, |log, timestamp_ms| {
        let (offset, timestamp) = log.offset_for(timestamp_ms)?;
        Ok((offset, timestamp, log.epoch_at(offset)))
    })
    .await
}

/// OffsetForLeaderEpoch: for each partition (`arg` the epoch asked about)
/// the largest epoch not above it and where it ends in this leader's log.
pub async fn end_offsets_for_epochs(specs: Vec<LookupSpec>) -> Vec<Result<(i32, i64), ErrorCode>> {
    lookup_many(specs, |log, leader_epoch| {
        let epoch = i32::try_from(leader_epoch).map_err(|_| ErrorCode::InvalidRequest)?;
        Ok(log.end_offset_for_epoch(epoch))
    })
    .await
}

/// The size on disk of every partition, gathered from every shard.
pub async fn partition_sizes() -> Vec<(TopicPartition, u64)> {
    let per_shard = (0..runtime::shard_count()).map(|shard| {
        submit_to(shard, || async {
            local()
                .owned_logs()
                .iter()
                .map(|log| (log.topic_partition().clone(), log.size_bytes()))
                .collect::<Vec<_>>()
        })
    });
    futures_util::future::join_all(per_shard)
        .await
        .into_iter()
        .flat_map(Result::unwrap_or_default)
        .collect()
}
