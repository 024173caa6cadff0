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
}

thread_local! {
    static LOCAL: OnceCell<Rc<ShardState>> = const { OnceCell::new() };
}

/// This shard's state. Panics if called off a shard thread.
pub fn local() -> Rc<ShardState> {
    LOCAL.with(|l| Rc::clone(l.get().expect("shard state not installed")))
}

impl ShardState {
    /// Creates the shard's state, opens (and recovers) the partitions it owns.
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
        });
        LOCAL.with(|l| {
            assert!(l.set(Rc::clone(&state)).is_ok(), "shard state installed twice");
        });
        state.apply_metadata(metadata);
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
    pub fn apply_metadata(&self, new: Arc<Metadata>) {
        if new.version < self.metadata.borrow().version {
            return;
        }
        *self.metadata.borrow_mut() = Arc::clone(&new);
        let shards = runtime::shard_count();
        let now = now_ms();
        let mut logs = self.logs.borrow_mut();
        let me = self.config.broker_id;
        logs.retain(|tp, owned| {
            // Gone with its topic, or reassigned away from this broker.
            let keep = new.topics.get(&tp.topic).is_some_and(|t| {
                t.id == owned.topic_id && tp.partition < t.partitions && t.is_replica(tp.partition, me)
            });
            if !keep {
                info!(partition = %tp, "deleting partition");
                if let Err(e) = owned.log.delete() {
                    warn!(partition = %tp, "delete failed: {e}");
                }
            }
            keep
        });
        for topic in new.topics.values() {
            let log_config = new.log_config(&self.config.log_defaults, topic);
            for partition in 0..topic.partitions {
                if owner_of(&topic.name, partition, shards) != self.id
                    || !topic.is_replica(partition, self.config.broker_id)
                {
                    continue;
                }
                let tp = TopicPartition::new(topic.name.clone(), partition);
                if let Some(owned) = logs.get(&tp) {
                    owned.log.set_config(log_config.clone());
                    continue;
                }
                match open_partition(&self.config, &tp, topic.id, log_config.clone(), now) {
                    Ok(log) => {
                        logs.insert(
                            tp,
                            OwnedLog {
                                topic_id: topic.id,
                                log: Rc::new(log),
                            },
                        );
                    }
                    Err(e) => error!(partition = %tp, "cannot open partition: {e}"),
                }
            }
        }
        drop(logs);
        self.reconcile_followers(&new);
        self.reconcile_leaderships(&new);
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
                if let Err(e) = log.become_leader(epoch) {
                    error!(partition = %tp, epoch, "cannot record the new leader epoch: {e}");
                }
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
            compio::runtime::spawn(super::replica::follow(tp.clone(), address, epoch, cancel.clone())).detach();
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
                if let Err(e) = log.checkpoint_committed() {
                    warn!(partition = %log.topic_partition(), "high watermark checkpoint failed: {e}");
                }
                if run_retention && let Err(e) = log.enforce_retention(now) {
                    warn!(partition = %log.topic_partition(), "retention failed: {e}");
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

fn stopped<T>(_: runtime::ShardStopped) -> Result<T, ErrorCode> {
    Err(ErrorCode::LeaderNotAvailable)
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

/// Appends a batch on the partition's owner shard. With acks=all on a
/// replicated partition it needs `min.insync.replicas` in the ISR first, and
/// answers once the high watermark has passed the batch (or at `timeout`).
pub async fn append(
    tp: TopicPartition,
    batch: BytesMut,
    now: i64,
    acks: i16,
    timeout: Duration,
) -> Result<AppendInfo, BatchError> {
    if let Err(code) = check_leader(&tp) {
        return Err(BatchError {
            code,
            message: format!("this broker does not lead {tp}"),
        });
    }
    let owner = owner_of(&tp.topic, tp.partition, runtime::shard_count());
    let result = submit_to(owner, move || async move {
        let shard = local();
        let Some(log) = shard.log(&tp) else {
            return Err(unknown_partition());
        };
        // Checked again on the owner, whose metadata decides the epoch the
        // log stamps: the receiving shard may have applied a change first.
        let epoch = leader_epoch_here(&tp).map_err(|code| BatchError {
            code,
            message: format!("this broker does not lead {tp}"),
        })?;
        let replicated = acks == -1 && shard.leaderships.borrow().contains_key(&tp);
        if replicated {
            let metadata = shard.metadata();
            let Some(topic) = metadata.topics.get(&tp.topic) else {
                return Err(unknown_partition());
            };
            let isr = topic.placement(tp.partition, shard.config.broker_id).isr.len() as i32;
            let min_isr = metadata
                .log_config(&shard.config.log_defaults, topic)
                .min_insync_replicas;
            if isr < min_isr {
                return Err(BatchError {
                    code: ErrorCode::NotEnoughReplicas,
                    message: format!("{tp} has {isr} in-sync replicas; min.insync.replicas is {min_isr}"),
                });
            }
        }
        let last_offset_delta = crate::record::BatchHeader::parse(&batch).map_or(0, |h| h.last_offset_delta);
        let info = log.append(batch, now).await?;
        // A duplicate (a retry of a batch already in the log) waits too: the
        // first attempt may have timed out before the ISR had it.
        if replicated {
            let end = info.base_offset + i64::from(last_offset_delta) + 1;
            wait_until_committed(&tp, &log, end, epoch, timeout)
                .await
                .map_err(|(code, message)| BatchError { code, message })?;
        }
        Ok(info)
    })
    .await;
    result.unwrap_or_else(|_| {
        Err(BatchError {
            code: ErrorCode::LeaderNotAvailable,
            message: "broker is shutting down".into(),
        })
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

/// Splits `items` by owner shard, keeping each item's index in `items`.
fn by_owner<T>(items: Vec<T>, tp: impl Fn(&T) -> &TopicPartition) -> Vec<Vec<(usize, T)>> {
    let shards = runtime::shard_count();
    let mut groups: Vec<Vec<(usize, T)>> = (0..shards).map(|_| Vec::new()).collect();
    for (i, item) in items.into_iter().enumerate() {
        let tp = tp(&item);
        groups[owner_of(&tp.topic, tp.partition, shards)].push((i, item));
    }
    groups
}

/// Reads many partitions with one task per owner shard (not one per
/// partition), so a request's cross-shard work is bounded by the shard count.
/// Results come back in the order of `specs`.
pub async fn read_many(specs: Vec<ReadSpec>, replica: Option<i32>) -> Vec<Result<ReadResult, ErrorCode>> {
    let count = specs.len();
    let mut results: Vec<Result<ReadResult, ErrorCode>> = (0..count).map(|_| Err(ErrorCode::None)).collect();
    let mut checked = Vec::with_capacity(count);
    for (i, spec) in specs.into_iter().enumerate() {
        match check_leader_epoch(&spec.tp, spec.current_leader_epoch) {
            Ok(_) => checked.push((i, spec)),
            Err(code) => results[i] = Err(code),
        }
    }
    let per_owner = by_owner(checked, |(_, spec)| &spec.tp)
        .into_iter()
        .enumerate()
        .filter(|(_, group)| !group.is_empty())
        .map(|(owner, group)| async move {
            let indices: Vec<usize> = group.iter().map(|(_, (i, _))| *i).collect();
            let specs: Vec<ReadSpec> = group.into_iter().map(|(_, (_, spec))| spec).collect();
            let read = submit_to(owner, move || async move {
                specs.iter().map(|s| read_here(s, replica)).collect()
            });
            let outcomes: Vec<Result<ReadResult, ErrorCode>> = match read.await {
                Ok(outcomes) => outcomes,
                Err(stopped_shard) => indices.iter().map(|_| stopped(stopped_shard)).collect(),
            };
            assert_eq!(outcomes.len(), indices.len(), "one read result per partition");
            indices.into_iter().zip(outcomes).collect::<Vec<_>>()
        });
    for (i, outcome) in futures_util::future::join_all(per_owner).await.into_iter().flatten() {
        results[i] = outcome;
    }
    results
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
    let per_owner = by_owner(wanted, |(tp, _)| tp)
        .into_iter()
        .enumerate()
        .filter(|(_, group)| !group.is_empty())
        .map(|(owner, group)| {
            submit_to(owner, move || async move {
                let shard = local();
                let mut listeners = Vec::with_capacity(group.len());
                for (_, (tp, offset)) in group {
                    let Some(log) = shard.log(&tp) else { continue };
                    match log.data_listener(offset, reader) {
                        Some(listener) => listeners.push(listener),
                        None => return None,
                    }
                }
                Some(listeners)
            })
        });
    let mut listeners = Vec::new();
    for answer in futures_util::future::join_all(per_owner).await {
        match answer {
            Ok(Some(more)) => listeners.extend(more),
            // Data is already there, or a shard is stopping: no wait.
            Ok(None) | Err(_) => return,
        }
    }
    if listeners.is_empty() {
        compio::time::sleep_until(deadline).await;
        return;
    }
    let _ = compio::time::timeout_at(deadline, futures_util::future::select_all(listeners)).await;
}

/// ListOffsets for one partition, on its owner shard.
/// Answers the offset, its timestamp and the leader epoch it was written in.
pub async fn offset_for(
    tp: TopicPartition,
    timestamp_ms: i64,
    current_leader_epoch: i32,
) -> Result<(i64, i64, i32), ErrorCode> {
    check_leader_epoch(&tp, current_leader_epoch)?;
    let owner = owner_of(&tp.topic, tp.partition, runtime::shard_count());
    submit_to(owner, move || async move {
        let Some(log) = local().log(&tp) else {
            return Err(ErrorCode::UnknownTopicOrPartition);
        };
        let (offset, timestamp) = log.offset_for(timestamp_ms)?;
        Ok((offset, timestamp, log.epoch_at(offset)))
    })
    .await
    .or_else(stopped)?
}

/// OffsetForLeaderEpoch for one partition, on its owner shard: the largest
/// epoch not above `leader_epoch` and where it ends in the leader's log.
pub async fn end_offset_for_epoch(
    tp: TopicPartition,
    current_leader_epoch: i32,
    leader_epoch: i32,
) -> Result<(i32, i64), ErrorCode> {
    check_leader_epoch(&tp, current_leader_epoch)?;
    let owner = owner_of(&tp.topic, tp.partition, runtime::shard_count());
    submit_to(owner, move || async move {
        match local().log(&tp) {
            Some(log) => Ok(log.end_offset_for_epoch(leader_epoch)),
            None => Err(ErrorCode::UnknownTopicOrPartition),
        }
    })
    .await
    .or_else(stopped)?
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
