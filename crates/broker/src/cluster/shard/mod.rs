//! What one shard owns: its copy of the metadata and the logs of the
//! partitions assigned to it. The routing helpers every handler uses to reach
//! a partition's owner, wherever the request arrived, are beside it:
//! `leadership`, `append` (produce) and `read` (fetch, lookups).

mod append;
mod leadership;
mod read;

pub use append::{AppendSpec, Appended, Appending, append_many, append_markers, led_by_quorum, wait_committed_many};
pub use leadership::{
    NO_LEADER_EPOCH, check_coordinating, check_leader, check_leader_epoch, coordinator_endpoint, leader_endpoint,
    leader_epoch_here, wait_until_committed,
};
pub use read::{
    Fetcher, LookupSpec, ReadSpec, end_offsets_for_epochs, offsets_for, producers_for, read_many, wait_for_any,
};

use std::cell::{Cell, OnceCell, RefCell};
use std::collections::HashMap;
use std::rc::Rc;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tracing::{error, info, warn};
use uuid::Uuid;

use super::metadata::Metadata;
use crate::config::BrokerConfig;
use crate::model::{ErrorCode, TopicPartition, now_ms};
use crate::record::BatchError;
use crate::runtime::{self, submit_to};
use crate::storage::PartitionLog;

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
    /// A partition of the current snapshot failed to open (a full disk):
    /// the maintenance tick applies the snapshot again, which retries it.
    open_failed: Cell<bool>,
    /// A maintenance pass is writing checkpoints; shutdown waits for it so
    /// the two never write one file at once.
    maintaining: Cell<bool>,
    maintained: event_listener::Event,
    shut_down: Cell<bool>,
    shut_down_event: event_listener::Event,
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
            open_failed: Cell::new(false),
            maintaining: Cell::new(false),
            maintained: event_listener::Event::new(),
            shut_down: Cell::new(false),
            shut_down_event: event_listener::Event::new(),
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
                Err(e) => {
                    error!(partition = %tp, "cannot open partition (retried every maintenance tick): {e}");
                    self.open_failed.set(true);
                }
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
            // A produce waiting for acks=all on a leader demoted here must be
            // answered now (NOT_LEADER_OR_FOLLOWER), not at its timeout: an
            // idempotent client holds the partition's later batches behind it.
            for (tp, log) in &logs {
                if leaderships.contains_key(tp) && !led(tp) {
                    log.wake_waiters();
                }
            }
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
                if log.latest_epoch().is_some_and(|latest| latest != epoch) {
                    log.wake_waiters(); // Waits of an earlier epoch here end too.
                }
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

    /// Background work of this shard: index write-behind, `flush.ms`,
    /// retention, and the space reserve after a full disk.
    pub async fn maintenance_loop(self: Rc<Self>) {
        let mut tick = compio::time::interval(Duration::from_millis(MAINTENANCE_TICK_MS));
        let retention_every = Duration::from_millis(self.config.retention_check_interval_ms);
        let mut last_retention = Instant::now();
        while !self.is_stopping() {
            tick.tick().await;
            if self.is_stopping() {
                break;
            }
            self.maintaining.set(true);
            let run_retention = last_retention.elapsed() >= retention_every;
            if run_retention {
                last_retention = Instant::now();
            }
            self.maintain(now_ms(), run_retention).await;
            self.maintaining.set(false);
            self.maintained.notify(usize::MAX);
        }
    }

    async fn maintain(&self, now: i64, run_retention: bool) {
        super::leader::shrink_lagging(&self.metadata());
        if crate::storage::space::is_released() {
            // Appends wait for the reserve; any shard may write it back.
            let _ = compio::runtime::spawn_blocking(crate::storage::space::replenish).await;
        }
        if self.open_failed.replace(false) {
            self.apply_metadata(self.metadata()).await;
        }
        if !super::quorum::in_contact(self.config.broker_session_timeout_ms) {
            // Answers the acks=all writes waiting here: they cannot commit.
            let led: Vec<TopicPartition> = self.leaderships.borrow().keys().cloned().collect();
            for tp in led {
                if let Some(log) = self.log(&tp) {
                    log.wake_waiters();
                }
            }
        }
        for log in self.owned_logs() {
            if let Err(e) = log.flush_if_due(now).await {
                warn!(partition = %log.topic_partition(), "flush failed: {e}");
            }
            write_checkpoints(&log).await;
            if run_retention && let Err(e) = log.enforce_retention(now).await {
                warn!(partition = %log.topic_partition(), "retention failed: {e}");
            }
        }
    }

    /// Clean shutdown of this shard: no new connections; indexes, high
    /// watermarks and leader epochs written out, so a restarted leader
    /// serves every committed record at once (as Kafka checkpoints its high
    /// watermarks at a clean shutdown) instead of waiting for its followers.
    pub async fn shutdown(&self) {
        self.stopping.set(true);
        self.stop.notify(usize::MAX);
        while self.maintaining.get() {
            let done = self.maintained.listen();
            if self.maintaining.get() {
                done.await;
            }
        }
        for log in self.owned_logs() {
            write_final_checkpoints(&log).await;
        }
        self.shut_down.set(true);
        self.shut_down_event.notify(usize::MAX);
    }

    /// Until `shutdown` has written everything out: the shard's main task
    /// waits here, as the runtime that drives those writes ends with it.
    pub async fn until_shut_down(&self) {
        while !self.shut_down.get() {
            let done = self.shut_down_event.listen();
            if !self.shut_down.get() {
                done.await;
            }
        }
    }
}

/// Index write-behind, the high watermark and the leader-epoch checkpoint of one log.
async fn write_checkpoints(log: &PartitionLog) {
    if let Err(e) = log.flush_indexes() {
        warn!(partition = %log.topic_partition(), "index write failed: {e}");
    }
    if let Err(e) = log.checkpoint_high_watermark().await {
        warn!(partition = %log.topic_partition(), "high watermark checkpoint failed: {e}");
    }
    if let Err(e) = log.make_epochs_durable().await {
        warn!(partition = %log.topic_partition(), "leader-epoch checkpoint failed: {e}");
    }
}

/// At a clean shutdown also the producer states (`write_checkpoints` runs
/// on every maintenance tick; the snapshot only here and at each roll).
async fn write_final_checkpoints(log: &PartitionLog) {
    write_checkpoints(log).await;
    if let Err(e) = log.write_producer_snapshot().await {
        warn!(partition = %log.topic_partition(), "producer snapshot failed: {e}");
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
