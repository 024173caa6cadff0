//! One shard's group coordinator: the groups whose `__consumer_offsets`
//! partition this shard owns, their committed offsets, and the writer that
//! stores both in that partition.
//!
//! Each owned offsets partition has exactly one writer task. Every record for
//! the partition (commits, group records, tombstones, compaction snapshots)
//! goes through it, and the writer applies a record to memory as soon as its
//! append completes. So memory always equals a replay of the log, and a
//! snapshot taken by the writer can replace everything before it.
//!
//! Offsets committed in a transaction are a transactional batch of the
//! producer's; they stay pending until the transaction coordinator's marker
//! reaches the partition, through the same writer, and commits or discards
//! them. A partition is not compacted while a transaction is open on it: the
//! pending offsets exist only in its log.

use std::cell::{OnceCell, RefCell};
use std::collections::{BTreeSet, HashMap};
use std::io;
use std::rc::Rc;
use std::time::{Duration, Instant};

use futures_channel::oneshot;
use tracing::{info, warn};

use super::classic::{ClassicGroup, GroupLimits};
use super::kind::Group;
use super::records::{self, GroupValue, Key, OffsetValue};
use super::{OFFSETS_TOPIC, partition_for};
use crate::cluster::shard::{self, owner_of};
use crate::config::GroupConfig;
use crate::model::{ErrorCode, TopicPartition, now_ms, steady_ms};
use crate::record::builder::{Producer, Record, build_batch, build_txn_batch};
use crate::record::control::Marker;
use crate::runtime;
use crate::storage::PartitionLog;
use crate::storage::Replayed;

/// How often sessions, rebalance deadlines and pending group records are checked.
const TICK_MS: u64 = 100;
/// Write requests waiting for one partition's writer.
const WRITE_QUEUE_MAX: usize = 1024;
/// Bytes of records the writer gathers into one batch from queued requests.
const WRITE_BATCH_BYTES_MAX: usize = 1 << 20;
/// Bytes read per step when loading a partition at start-up.
const LOAD_READ_BYTES: u64 = 1 << 20;

/// A record's value: an offset commit, a group's membership, or a tombstone (`None`).
#[derive(Debug, Clone)]
pub enum Value {
    Offset(OffsetValue),
    Group(GroupValue),
}

#[derive(Debug, Clone)]
pub struct Entry {
    pub key: Key,
    pub value: Option<Value>,
}

impl Entry {
    fn encode(&self) -> (Vec<u8>, Option<Vec<u8>>) {
        let value = self.value.as_ref().map(|v| match v {
            Value::Offset(o) => records::encode_offset(o),
            Value::Group(g) => records::encode_group(g),
        });
        (records::encode_key(&self.key), value)
    }
}

/// A write that belongs to a producer's transaction.
#[derive(Debug, Clone, Copy)]
pub enum TxnWrite {
    /// Offsets committed in the open transaction of (producer id, epoch):
    /// a transactional batch, pending until the transaction's marker.
    Offsets { producer: (i64, i16) },
    /// The marker that ends that transaction here, from the transaction
    /// coordinator in `coordinator_epoch`.
    Marker {
        producer: (i64, i16),
        marker: Marker,
        coordinator_epoch: i32,
    },
}

struct WriteRequest {
    entries: Vec<Entry>,
    /// None: plain records, which share a batch with other plain requests.
    txn: Option<TxnWrite>,
    reply: Option<oneshot::Sender<Result<(), ErrorCode>>>,
}

pub struct Coordinator {
    config: GroupConfig,
    groups: RefCell<HashMap<String, Group>>,
    writers: RefCell<HashMap<i32, async_channel::Sender<WriteRequest>>>,
    /// The leader epoch each loaded offsets partition was loaded in: a
    /// partition led again in a later epoch may have changed meanwhile.
    loaded_epochs: RefCell<HashMap<i32, i32>>,
    /// (offsets partition, producer id) → the groups holding offsets its
    /// open transaction commits.
    open_txns: RefCell<HashMap<(i32, i64), BTreeSet<String>>>,
}

thread_local! {
    static LOCAL: OnceCell<Rc<Coordinator>> = const { OnceCell::new() };
}

/// This shard's coordinator. Panics off a shard thread.
pub fn local() -> Rc<Coordinator> {
    LOCAL.with(|l| Rc::clone(l.get().expect("coordinator not installed")))
}

impl Coordinator {
    pub fn install(config: GroupConfig) -> Rc<Coordinator> {
        let coordinator = Rc::new(Coordinator {
            config,
            groups: RefCell::new(HashMap::new()),
            writers: RefCell::new(HashMap::new()),
            loaded_epochs: RefCell::new(HashMap::new()),
            open_txns: RefCell::new(HashMap::new()),
        });
        LOCAL.with(|l| assert!(l.set(Rc::clone(&coordinator)).is_ok(), "coordinator installed twice"));
        coordinator
    }

    pub fn config(&self) -> &GroupConfig {
        &self.config
    }

    pub fn limits(&self) -> GroupLimits {
        GroupLimits {
            initial_rebalance_delay_ms: self.config.initial_rebalance_delay_ms,
            min_session_timeout_ms: self.config.min_session_timeout_ms,
            max_session_timeout_ms: self.config.max_session_timeout_ms,
            max_size: self.config.max_size,
        }
    }

    /// Runs `f` on the group, if it exists.
    pub fn with_group<R>(&self, group_id: &str, f: impl FnOnce(&mut Group) -> R) -> Option<R> {
        self.groups.borrow_mut().get_mut(group_id).map(f)
    }

    /// Runs `f` on the group, creating it empty first if needed.
    pub fn with_group_or_new<R>(&self, group_id: &str, f: impl FnOnce(&mut Group) -> R) -> R {
        let mut groups = self.groups.borrow_mut();
        let group = groups
            .entry(group_id.to_string())
            .or_insert_with(|| Group::new(group_id.to_string(), self.limits(), steady_ms()));
        f(group)
    }

    /// Every committed offset this shard coordinates: (group, topic, partition, offset).
    pub fn committed_offsets(&self) -> Vec<(String, String, i32, i64)> {
        self.map_groups(|g| {
            g.offsets
                .iter()
                .map(|((topic, p), c)| (g.id.clone(), topic.clone(), *p, c.value.offset))
                .collect::<Vec<_>>()
        })
        .concat()
    }

    /// `f` applied to every group this shard coordinates.
    pub fn map_groups<R>(&self, f: impl Fn(&Group) -> R) -> Vec<R> {
        self.groups.borrow().values().map(f).collect()
    }

    /// Makes sure the offsets partition `partition` is loaded and has its writer.
    /// Fails while this shard does not (yet) hold the partition's log.
    pub fn ensure_partition(self: &Rc<Self>, partition: i32) -> Result<(), ErrorCode> {
        let tp = TopicPartition::new(OFFSETS_TOPIC.to_string(), partition);
        let epoch = shard::leader_epoch_here(&tp).map_err(|_| ErrorCode::NotCoordinator)?;
        if self.writers.borrow().contains_key(&partition) {
            if self.loaded_epochs.borrow().get(&partition) == Some(&epoch) {
                return Ok(());
            }
            let partitions = offsets_partitions().ok_or(ErrorCode::CoordinatorNotAvailable)?;
            self.unload(partition, partitions);
        }
        let log = shard::local().log(&tp).ok_or(ErrorCode::CoordinatorNotAvailable)?;
        let started = Instant::now();
        let records = self.load(partition, &log).map_err(|e| {
            warn!(partition = %tp, "loading group state failed: {e}");
            ErrorCode::CoordinatorNotAvailable
        })?;
        info!(partition = %tp, records, elapsed_ms = started.elapsed().as_millis() as u64, "loaded group state");
        let (tx, rx) = async_channel::bounded(WRITE_QUEUE_MAX);
        let tx_of_writer = tx.downgrade();
        self.writers.borrow_mut().insert(partition, tx);
        self.loaded_epochs.borrow_mut().insert(partition, epoch);
        let writer = compio::runtime::spawn(Rc::clone(self).run_writer(partition, log, rx));
        compio::runtime::spawn(Rc::clone(self).supervise_writer(partition, writer, tx_of_writer)).detach();
        Ok(())
    }

    /// A writer that panicked leaves memory that may no longer be a replay of
    /// the log. Its partition is unloaded, so the next request for any of its
    /// groups reloads it from the log with a new writer; the requests that were
    /// queued are answered COORDINATOR_NOT_AVAILABLE and retried by clients.
    async fn supervise_writer(
        self: Rc<Self>,
        partition: i32,
        writer: compio::runtime::JoinHandle<()>,
        queue: async_channel::WeakSender<WriteRequest>,
    ) {
        if writer.await.is_ok() {
            return;
        }
        crate::metrics::record_task_panic(crate::metrics::TaskKind::GroupWriter);
        tracing::error!(
            partition,
            "the writer of {OFFSETS_TOPIC}-{partition} panicked; reloading the partition"
        );
        // Weak: the writer's queue must close when the partition is unloaded.
        let current = queue.upgrade().is_some_and(|q| {
            self.writers
                .borrow()
                .get(&partition)
                .is_some_and(|w| w.same_channel(&q))
        });
        if current && let Some(partitions) = offsets_partitions() {
            self.unload(partition, partitions);
        }
    }

    /// Replays a partition of `__consumer_offsets` into memory; returns the records read.
    fn load(&self, partition: i32, log: &PartitionLog) -> io::Result<u64> {
        log.replay_records(LOAD_READ_BYTES, |replayed| match replayed {
            Replayed::Record { record, txn_producer } => {
                let Some(entry) = decode_entry(record.key, record.value) else {
                    warn!(
                        offset = record.offset,
                        "record with an unreadable key in {OFFSETS_TOPIC}; skipped"
                    );
                    return;
                };
                match txn_producer {
                    Some(producer_id) => self.stage(partition, &entry, record.offset, producer_id),
                    None => self.apply(&entry, record.offset, true),
                }
            }
            Replayed::Marker { producer_id, marker } => self.end_txn(partition, producer_id, marker),
        })
    }

    /// Keeps an offset committed in producer `producer_id`'s transaction,
    /// stored at `offset`, until the transaction's marker.
    fn stage(&self, partition: i32, entry: &Entry, offset: i64, producer_id: i64) {
        let (
            Key::Offset {
                group,
                topic,
                partition: p,
            },
            Some(Value::Offset(value)),
        ) = (&entry.key, &entry.value)
        else {
            warn!(
                offset,
                "a transactional record in {OFFSETS_TOPIC} is not an offset commit; skipped"
            );
            return;
        };
        self.with_group_or_new(group, |g| {
            g.offsets.stage(producer_id, topic.clone(), *p, value.clone(), offset)
        });
        self.open_txns
            .borrow_mut()
            .entry((partition, producer_id))
            .or_default()
            .insert(group.clone());
    }

    /// The marker of producer `producer_id`'s transaction reached offsets
    /// partition `partition`: its pending offsets there commit or go.
    fn end_txn(&self, partition: i32, producer_id: i64, marker: Marker) {
        let Some(groups) = self.open_txns.borrow_mut().remove(&(partition, producer_id)) else {
            return;
        };
        for group in groups {
            self.with_group(&group, |g| g.offsets.end_txn(producer_id, marker == Marker::Commit));
            self.forget_if_unused(&group);
        }
    }

    fn has_open_txns(&self, partition: i32) -> bool {
        self.open_txns.borrow().keys().any(|(p, _)| *p == partition)
    }

    /// Applies one stored record to memory: read back at start-up (`replaying`)
    /// or just written, in which case memory already holds the group's state.
    fn apply(&self, entry: &Entry, offset: i64, replaying: bool) {
        let group_id = entry.key.group();
        match (&entry.key, &entry.value) {
            (Key::Offset { topic, partition, .. }, value) => {
                let value = match value {
                    Some(Value::Offset(v)) => Some(v.clone()),
                    _ => None,
                };
                if value.is_none() && !self.groups.borrow().contains_key(group_id) {
                    return;
                }
                self.with_group_or_new(group_id, |g| g.offsets.apply(topic.clone(), *partition, value, offset));
            }
            (Key::Group { .. }, Some(Value::Group(value))) => {
                let value = value.clone();
                self.with_group_or_new(group_id, |g| {
                    if replaying {
                        g.restore_classic(value, offset, steady_ms());
                    } else if let Some(classic) = g.classic_mut() {
                        classic.record_offset = classic.record_offset.max(offset);
                    }
                });
            }
            (Key::Group { .. }, _) => {
                self.with_group(group_id, |g| g.forget_classic_record(steady_ms()));
            }
        }
        self.forget_if_unused(group_id);
    }

    /// A group with no members, no offsets and no stored record leaves no trace.
    fn forget_if_unused(&self, group_id: &str) {
        let mut groups = self.groups.borrow_mut();
        if groups.get(group_id).is_some_and(Group::leaves_no_trace) {
            groups.remove(group_id);
        }
    }

    /// Stores `entries` in the group's offsets partition; resolves once they are
    /// in the log and applied to memory.
    pub async fn write(&self, group_id: &str, entries: Vec<Entry>) -> Result<(), ErrorCode> {
        self.write_to(self.partition_of(group_id)?, entries, None).await
    }

    /// Stores offsets that producer `producer` commits in its open
    /// transaction; they apply once its COMMIT marker is stored.
    pub async fn write_txn_offsets(
        &self,
        group_id: &str,
        entries: Vec<Entry>,
        producer: (i64, i16),
    ) -> Result<(), ErrorCode> {
        let txn = TxnWrite::Offsets { producer };
        self.write_to(self.partition_of(group_id)?, entries, Some(txn)).await
    }

    /// Stores the marker that ends a transaction on offsets partition
    /// `partition`, and applies it.
    pub async fn write_marker(&self, partition: i32, marker: TxnWrite) -> Result<(), ErrorCode> {
        assert!(
            matches!(marker, TxnWrite::Marker { .. }),
            "a marker write carries a marker"
        );
        self.write_to(partition, Vec::new(), Some(marker)).await
    }

    async fn write_to(&self, partition: i32, entries: Vec<Entry>, txn: Option<TxnWrite>) -> Result<(), ErrorCode> {
        let (tx, rx) = oneshot::channel();
        let writer = self.writer_of(partition)?;
        let request = WriteRequest {
            entries,
            txn,
            reply: Some(tx),
        };
        writer
            .send(request)
            .await
            .map_err(|_| ErrorCode::CoordinatorNotAvailable)?;
        rx.await.unwrap_or(Err(ErrorCode::CoordinatorNotAvailable))
    }

    /// Queues `entries` without waiting; false if the queue is full.
    pub(super) fn write_later(&self, group_id: &str, entries: Vec<Entry>) -> bool {
        let request = WriteRequest {
            entries,
            txn: None,
            reply: None,
        };
        self.partition_of(group_id)
            .and_then(|p| self.writer_of(p))
            .is_ok_and(|w| w.try_send(request).is_ok())
    }

    fn partition_of(&self, group_id: &str) -> Result<i32, ErrorCode> {
        let partitions = offsets_partitions().ok_or(ErrorCode::CoordinatorNotAvailable)?;
        Ok(partition_for(group_id, partitions))
    }

    fn writer_of(&self, partition: i32) -> Result<async_channel::Sender<WriteRequest>, ErrorCode> {
        self.writers
            .borrow()
            .get(&partition)
            .cloned()
            .ok_or(ErrorCode::CoordinatorNotAvailable)
    }

    /// The one writer of an offsets partition: gathers queued requests into one
    /// batch, appends it, applies it, answers, and compacts when the log has grown.
    async fn run_writer(
        self: Rc<Self>,
        partition: i32,
        log: Rc<PartitionLog>,
        queue: async_channel::Receiver<WriteRequest>,
    ) {
        let mut snapshot_bytes: u64 = 0;
        while let Ok(first) = queue.recv().await {
            let mut requests = vec![first];
            let mut bytes = 0;
            // Bounded by the queue's capacity and by WRITE_BATCH_BYTES_MAX.
            while bytes < WRITE_BATCH_BYTES_MAX
                && let Ok(next) = queue.try_recv()
            {
                bytes += next.entries.len() * 64;
                requests.push(next);
            }
            self.write_requests(&log, requests).await;
            let compact_at = self.config.offsets_topic_segment_bytes.max(2 * snapshot_bytes);
            if log.size_bytes() > compact_at && !self.has_open_txns(partition) {
                match self.compact(partition, &log).await {
                    Ok(bytes) => snapshot_bytes = bytes,
                    Err(e) => warn!(partition, "compacting {OFFSETS_TOPIC} failed: {e}"),
                }
            }
        }
    }

    /// Appends queued requests in order and answers each: plain requests
    /// share one batch; a transaction's write is a batch of its own.
    async fn write_requests(&self, log: &PartitionLog, requests: Vec<WriteRequest>) {
        let mut plain: Vec<WriteRequest> = Vec::new();
        for request in requests {
            if request.txn.is_none() {
                plain.push(request);
                continue;
            }
            self.write_plain(log, std::mem::take(&mut plain)).await;
            let result = self.append(log, &request.entries, request.txn).await;
            if let Some(reply) = request.reply {
                let _ = reply.send(result);
            }
        }
        self.write_plain(log, plain).await;
    }

    async fn write_plain(&self, log: &PartitionLog, mut requests: Vec<WriteRequest>) {
        if requests.is_empty() {
            return;
        }
        let entries: Vec<Entry> = requests
            .iter_mut()
            .flat_map(|r| std::mem::take(&mut r.entries))
            .collect();
        let result = self.append(log, &entries, None).await;
        for request in requests {
            if let Some(reply) = request.reply {
                let _ = reply.send(result);
            }
        }
    }

    async fn append(&self, log: &PartitionLog, entries: &[Entry], txn: Option<TxnWrite>) -> Result<(), ErrorCode> {
        let is_marker = matches!(txn, Some(TxnWrite::Marker { .. }));
        assert!(!is_marker || entries.is_empty(), "a marker is a batch of its own");
        if entries.is_empty() && !is_marker {
            return Ok(());
        }
        let tp = log.topic_partition();
        // A coordinator that lost the partition's leadership must not write:
        // its copy now follows the new leader's log.
        let epoch = shard::leader_epoch_here(tp).map_err(|_| ErrorCode::NotCoordinator)?;
        let replicated = shard::led_by_quorum(tp).map_err(|_| ErrorCode::NotCoordinator)?;
        let appended = match txn {
            Some(TxnWrite::Marker {
                producer,
                marker,
                coordinator_epoch,
            }) => {
                log.append_marker(marker, producer, coordinator_epoch, now_ms(), epoch)
                    .await
            }
            Some(TxnWrite::Offsets { producer }) => {
                let batch = encode_entries(entries, Some(producer));
                log.append_for_producer(batch, now_ms(), epoch).await
            }
            None => log.append(encode_entries(entries, None), now_ms(), epoch).await,
        };
        let info = appended.map_err(|e| {
            warn!(partition = %tp, "group record write failed: {}", e.message);
            match e.code {
                ErrorCode::InvalidProducerEpoch | ErrorCode::TransactionCoordinatorFenced => e.code,
                _ => ErrorCode::CoordinatorNotAvailable,
            }
        })?;
        let partition = tp.partition;
        match txn {
            Some(TxnWrite::Marker { producer, marker, .. }) => self.end_txn(partition, producer.0, marker),
            Some(TxnWrite::Offsets { producer }) => {
                for (i, entry) in entries.iter().enumerate() {
                    self.stage(partition, entry, info.base_offset + i as i64, producer.0);
                }
            }
            None => {
                for (i, entry) in entries.iter().enumerate() {
                    self.apply(entry, info.base_offset + i as i64, false);
                }
            }
        }
        // In cluster mode a commit counts once every in-sync replica has it.
        if replicated {
            let end = info.last_offset + 1;
            let timeout = Duration::from_millis(self.config.offsets_commit_timeout_ms);
            shard::wait_until_committed(tp, log, end, epoch, timeout)
                .await
                .map_err(|(code, message)| {
                    warn!(partition = %tp, "group records not replicated: {message}");
                    match code {
                        ErrorCode::NotLeaderOrFollower => ErrorCode::NotCoordinator,
                        other => other,
                    }
                })?;
        }
        Ok(())
    }

    /// Rewrites the partition's live state after everything else and deletes
    /// the segments before it, so the topic stays about twice its live size.
    /// Runs on the writer, so no other record can land in between.
    async fn compact(&self, partition: i32, log: &PartitionLog) -> io::Result<u64> {
        log.roll_now(now_ms()).await?;
        let start = log.log_end_offset();
        let entries = self.snapshot(partition);
        let mut written = 0u64;
        for chunk in entries.chunks(1024) {
            self.append(log, chunk, None)
                .await
                .map_err(|code| io::Error::other(format!("snapshot append: {code:?}")))?;
            written += chunk.iter().map(|e| e.encode().0.len() as u64 + 64).sum::<u64>();
        }
        let deleted = log.delete_segments_below(start)?;
        info!(
            partition,
            entries = entries.len(),
            deleted_segments = deleted,
            "compacted {OFFSETS_TOPIC}"
        );
        Ok(written)
    }

    /// Every live record of one offsets partition.
    fn snapshot(&self, partition: i32) -> Vec<Entry> {
        let partitions = offsets_partitions().unwrap_or(1);
        let groups = self.groups.borrow();
        let mut entries = Vec::new();
        for group in groups
            .values()
            .filter(|g| partition_for(&g.id, partitions) == partition)
        {
            if let Some(record) = group.stored_record() {
                entries.push(Entry {
                    key: Key::Group {
                        group: group.id.clone(),
                    },
                    value: Some(Value::Group(record)),
                });
            }
            for ((topic, p), committed) in group.offsets.iter() {
                entries.push(Entry {
                    key: Key::Offset {
                        group: group.id.clone(),
                        topic: topic.clone(),
                        partition: *p,
                    },
                    value: Some(Value::Offset(committed.value.clone())),
                });
            }
        }
        entries
    }

    /// The coordinator's clock: timeouts, pending group records, offset expiry.
    pub async fn tick_loop(self: Rc<Self>) {
        let mut tick = compio::time::interval(Duration::from_millis(TICK_MS));
        let retention_every = Duration::from_millis(self.config.offsets_retention_check_interval_ms);
        let mut last_retention = Instant::now();
        let state = shard::local();
        while !state.is_stopping() {
            tick.tick().await;
            self.load_owned_partitions();
            let now = steady_ms();
            self.tick_groups(now);
            if last_retention.elapsed() >= retention_every {
                last_retention = Instant::now();
                self.expire_offsets(now);
            }
        }
    }

    /// Loads every offsets partition this shard owns and this broker leads,
    /// so restored members time out too; forgets those it no longer leads.
    fn load_owned_partitions(self: &Rc<Self>) {
        let Some(partitions) = offsets_partitions() else { return };
        let shards = runtime::shard_count();
        let me = runtime::shard_id();
        for p in (0..partitions).filter(|p| owner_of(OFFSETS_TOPIC, *p, shards) == me) {
            if super::coordinates(p) {
                let _ = self.ensure_partition(p);
            } else if self.writers.borrow().contains_key(&p) {
                self.unload(p, partitions);
            }
        }
    }

    /// Another broker now coordinates partition `p`'s groups: stop its writer
    /// (the queue closes once drained) and drop its groups from memory, so a
    /// later leadership reloads them from the log. Members waiting on a
    /// dropped group are answered NOT_COORDINATOR and find the new one.
    fn unload(&self, p: i32, partitions: i32) {
        self.writers.borrow_mut().remove(&p);
        self.loaded_epochs.borrow_mut().remove(&p);
        self.open_txns.borrow_mut().retain(|(partition, _), _| *partition != p);
        let mut groups = self.groups.borrow_mut();
        let before = groups.len();
        groups.retain(|id, _| partition_for(id, partitions) != p);
        info!(
            partition = p,
            groups = before - groups.len(),
            "no longer coordinating; groups unloaded"
        );
    }

    fn tick_groups(&self, now: i64) {
        let mut records = Vec::new();
        for group in self.groups.borrow_mut().values_mut() {
            group.tick(now);
            if let Some(record) = group.take_changed_record() {
                records.push((group.id.clone(), record));
            }
        }
        // Groups that were only ever probed (a JoinGroup never completed, a
        // KIP-848 member that left) do not stay in memory.
        self.groups.borrow_mut().retain(|_, g| !g.leaves_no_trace());
        for (group_id, value) in records {
            let entry = Entry {
                key: Key::Group {
                    group: group_id.clone(),
                },
                value: Some(Value::Group(value)),
            };
            if !self.write_later(&group_id, vec![entry]) {
                // Queue full: try again on the next tick.
                self.with_group(&group_id, |g| g.classic_mut().map(ClassicGroup::mark_dirty));
            }
        }
    }

    /// `offsets.retention.minutes`: a group's offsets expire once it has been
    /// empty that long; offsets committed outside any membership expire one by
    /// one that long after their commit. A group left with nothing is deleted.
    fn expire_offsets(&self, now: i64) {
        let retention = self.config.offsets_retention_ms;
        let mut work = Vec::new();
        for group in self.groups.borrow().values() {
            if !group.is_empty() {
                continue;
            }
            let empty_since_ms = group.empty_since_ms();
            let group_expired = empty_since_ms.is_some_and(|since| now - since >= retention);
            let expired: Vec<Entry> = group
                .offsets
                .iter()
                .filter(|(_, c)| group_expired || now - c.value.commit_timestamp_ms >= retention)
                // An offset an open transaction commits again stays, as in Kafka.
                .filter(|((topic, partition), _)| !group.offsets.is_pending(topic, *partition))
                .map(|((topic, partition), _)| Entry {
                    key: Key::Offset {
                        group: group.id.clone(),
                        topic: topic.clone(),
                        partition: *partition,
                    },
                    value: None,
                })
                .collect();
            let mut entries = expired;
            let nothing_left = entries.len() == group.offsets.len() && !group.offsets.has_pending();
            if nothing_left && (group_expired || empty_since_ms.is_none()) && group.has_stored_record() {
                entries.push(Entry {
                    key: Key::Group {
                        group: group.id.clone(),
                    },
                    value: None,
                });
            }
            if !entries.is_empty() {
                work.push((group.id.clone(), entries));
            }
        }
        for (group_id, entries) in work {
            info!(group = %group_id, records = entries.len(), "offsets expired");
            self.write_later(&group_id, entries);
        }
    }
}

fn decode_entry(key: Option<&[u8]>, value: Option<&[u8]>) -> Option<Entry> {
    let key = records::decode_key(key?).ok()?;
    let value = match (&key, value) {
        (_, None) => None,
        (Key::Offset { .. }, Some(v)) => records::decode_offset(v).ok().map(Value::Offset),
        (Key::Group { .. }, Some(v)) => records::decode_group(v).ok().map(Value::Group),
    };
    Some(Entry { key, value })
}

/// One batch of `entries`: a transactional batch of `producer`'s, or plain.
fn encode_entries(entries: &[Entry], producer: Option<(i64, i16)>) -> bytes::BytesMut {
    let encoded: Vec<_> = entries.iter().map(Entry::encode).collect();
    let records: Vec<Record> = encoded
        .iter()
        .map(|(k, v)| Record {
            key: Some(k),
            value: v.as_deref(),
        })
        .collect();
    match producer {
        // Sequence 0 always: the log does not check a coordinator's sequence.
        Some((id, epoch)) => {
            let producer = Producer {
                id,
                epoch,
                base_sequence: 0,
            };
            build_txn_batch(&records, now_ms(), producer)
        }
        None => build_batch(&records, now_ms(), -1, -1),
    }
}

/// The partition count of `__consumer_offsets`, if it exists yet.
pub fn offsets_partitions() -> Option<i32> {
    shard::local()
        .metadata()
        .topics
        .get(OFFSETS_TOPIC)
        .map(|t| t.partitions)
}
