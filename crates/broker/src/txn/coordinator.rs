//! One shard's transaction coordinator: the transactional ids whose
//! `__transaction_state` partition this shard owns, and the markers that end
//! their transactions.
//!
//! Memory is a replay of the log: a new state is stored (appended to the
//! id's partition) before it becomes current, and while that write is in
//! flight the id is *pending*: any other request for it is answered
//! CONCURRENT_TRANSACTIONS, as in Kafka. EndTxn is answered once its
//! PrepareCommit or PrepareAbort is stored; a task then appends the marker
//! to every partition of the transaction and stores the Complete state. A
//! coordinator that loads a partition finishes what it finds prepared.
//!
//! A partition that outgrows `transaction.state.log.segment.bytes` and twice
//! its last snapshot is compacted as the group coordinator compacts its own:
//! rolled, every id's current state written after everything else, and the
//! older segments deleted. Meanwhile its ids answer CONCURRENT_TRANSACTIONS,
//! so no state is stored between the snapshot and what it replaces.

use std::cell::{OnceCell, RefCell};
use std::collections::{HashMap, HashSet};
use std::io;
use std::rc::Rc;
use std::time::Duration;

use tracing::{debug, info, warn};

use super::records::{decode_key, decode_value, encode_key, encode_value};
use super::state::{EndPlan, Expected, InitPlan, TxnMetadata, TxnStatus};
use super::{TXN_TOPIC, txn_partitions};
use crate::cluster::{controller, shard};
use crate::config::TxnConfig;
use crate::group::partition_for;
use crate::model::{ErrorCode, TopicPartition, now_ms, steady_ms};
use crate::record::builder::{Record, build_batch};
use crate::record::control::Marker;
use crate::runtime;
use crate::storage::{PartitionLog, Replayed};

/// Bytes read per step when loading a partition.
const LOAD_READ_BYTES: u64 = 1 << 20;
/// How long a marker append waits for the in-sync replicas.
pub(super) const MARKER_COMMIT_TIMEOUT: Duration = Duration::from_secs(30);
/// Retries of a failed marker or Complete write back off up to this.
const RETRY_BACKOFF_MAX: Duration = Duration::from_secs(1);
/// Ids per batch of a snapshot.
const SNAPSHOT_BATCH_RECORDS: usize = 256;
/// How often the coordinator looks for partitions to load.
const TICK_MS: u64 = 100;

struct Txn {
    meta: TxnMetadata,
    /// A new state is being stored.
    pending: bool,
    /// When an open transaction times out, on the monotonic clock.
    deadline_ms: Option<i64>,
    /// When the state last changed, on the monotonic clock (id expiration).
    updated_ms: i64,
}

pub struct TxnCoordinator {
    config: TxnConfig,
    txns: RefCell<HashMap<String, Txn>>,
    /// The leader epoch each loaded partition was loaded in: the coordinator
    /// epoch its markers carry.
    loaded: RefCell<HashMap<i32, i32>>,
    /// Partitions being compacted.
    compacting: RefCell<HashSet<i32>>,
    /// The bytes of each partition's last snapshot.
    snapshot_bytes: RefCell<HashMap<i32, u64>>,
}

thread_local! {
    static LOCAL: OnceCell<Rc<TxnCoordinator>> = const { OnceCell::new() };
}

/// This shard's coordinator. Panics off a shard thread.
pub fn local() -> Rc<TxnCoordinator> {
    LOCAL.with(|l| Rc::clone(l.get().expect("transaction coordinator not installed")))
}

/// Clears an id's pending flag when its store ends, also if the task
/// storing it is dropped halfway.
struct PendingGuard {
    coordinator: Rc<TxnCoordinator>,
    transactional_id: String,
}

impl Drop for PendingGuard {
    fn drop(&mut self) {
        if let Some(t) = self.coordinator.txns.borrow_mut().get_mut(&self.transactional_id) {
            t.pending = false;
        }
    }
}

fn txn_tp(partition: i32) -> TopicPartition {
    TopicPartition::new(TXN_TOPIC.to_string(), partition)
}

impl TxnCoordinator {
    pub fn install(config: TxnConfig) -> Rc<TxnCoordinator> {
        let coordinator = Rc::new(TxnCoordinator {
            config,
            txns: RefCell::new(HashMap::new()),
            loaded: RefCell::new(HashMap::new()),
            compacting: RefCell::new(HashSet::new()),
            snapshot_bytes: RefCell::new(HashMap::new()),
        });
        let installed = LOCAL.with(|l| l.set(Rc::clone(&coordinator)).is_ok());
        assert!(installed, "transaction coordinator installed twice");
        coordinator
    }

    /// Makes sure partition `partition` of `__transaction_state` is loaded in
    /// the epoch this broker leads it in now.
    pub fn ensure_partition(self: &Rc<Self>, partition: i32) -> Result<(), ErrorCode> {
        let tp = txn_tp(partition);
        let epoch = shard::leader_epoch_here(&tp).map_err(|_| ErrorCode::NotCoordinator)?;
        if self.loaded.borrow().get(&partition) == Some(&epoch) {
            return Ok(());
        }
        self.unload(partition);
        let log = shard::local().log(&tp).ok_or(ErrorCode::CoordinatorNotAvailable)?;
        let mut latest: HashMap<String, Option<TxnMetadata>> = HashMap::new();
        let loaded = log.replay_records(LOAD_READ_BYTES, |replayed| {
            let Replayed::Record { record: r, .. } = replayed else {
                return; // its own partitions hold no transactions
            };
            let Some(id) = r.key.and_then(|k| decode_key(k).ok()) else {
                warn!(
                    offset = r.offset,
                    "record with an unreadable key in {TXN_TOPIC}; skipped"
                );
                return;
            };
            let meta = r.value.and_then(|v| decode_value(id.clone(), v).ok());
            latest.insert(id, meta);
        });
        let records = loaded.map_err(|e| {
            warn!(partition = %tp, "loading transaction state failed: {e}");
            ErrorCode::CoordinatorNotAvailable
        })?;
        let now = steady_ms();
        let mut prepared = Vec::new();
        {
            let mut txns = self.txns.borrow_mut();
            for (id, meta) in latest {
                let Some(meta) = meta else { continue };
                if meta.is_prepared() {
                    prepared.push(id.clone());
                }
                // An open transaction's clock restarts: its start is wall time.
                let deadline_ms = (meta.status == TxnStatus::Ongoing).then(|| now + i64::from(meta.timeout_ms));
                let txn = Txn {
                    meta,
                    pending: false,
                    deadline_ms,
                    updated_ms: now,
                };
                txns.insert(id, txn);
            }
        }
        self.loaded.borrow_mut().insert(partition, epoch);
        info!(partition = %tp, records, prepared = prepared.len(), "loaded transaction state");
        for id in prepared {
            compio::runtime::spawn(Rc::clone(self).complete(partition, id)).detach();
        }
        Ok(())
    }

    /// Another broker coordinates the partition now (or it is reloaded):
    /// its ids leave memory; tasks writing their markers stop at their next step.
    fn unload(&self, partition: i32) {
        if self.loaded.borrow_mut().remove(&partition).is_none() {
            return;
        }
        let partitions = txn_partitions().unwrap_or(1);
        self.txns
            .borrow_mut()
            .retain(|id, _| partition_for(id, partitions) != partition);
    }

    /// Marks `id` pending if `plan` says what to store; returns the plan's
    /// outcome and the guard that clears the flag.
    fn begin<T>(
        self: &Rc<Self>,
        id: &str,
        plan: impl FnOnce(&TxnMetadata) -> Result<T, ErrorCode>,
    ) -> Result<(T, PendingGuard), ErrorCode> {
        let partitions = txn_partitions().unwrap_or(1);
        if self.compacting.borrow().contains(&partition_for(id, partitions)) {
            return Err(ErrorCode::ConcurrentTransactions);
        }
        let mut txns = self.txns.borrow_mut();
        let txn = txns.get_mut(id).ok_or(ErrorCode::InvalidProducerIdMapping)?;
        if txn.pending {
            return Err(ErrorCode::ConcurrentTransactions);
        }
        let planned = plan(&txn.meta)?;
        txn.pending = true;
        let guard = PendingGuard {
            coordinator: Rc::clone(self),
            transactional_id: id.to_string(),
        };
        Ok((planned, guard))
    }

    /// Stores `next` for the guarded id, then makes it current.
    async fn store(&self, partition: i32, guard: PendingGuard, next: TxnMetadata) -> Result<(), ErrorCode> {
        assert_eq!(
            guard.transactional_id, next.transactional_id,
            "a state is stored under its own id"
        );
        self.append(partition, &next.transactional_id, Some(&next)).await?;
        let mut txns = self.txns.borrow_mut();
        // Reloaded while the write was in flight (the partition changed
        // hands): memory is the log's again, and this answer is not ours.
        let txn = txns
            .get_mut(&next.transactional_id)
            .filter(|t| t.pending)
            .ok_or(ErrorCode::NotCoordinator)?;
        let now = steady_ms();
        txn.deadline_ms = match (next.status, txn.meta.status) {
            (TxnStatus::Ongoing, TxnStatus::Ongoing) => txn.deadline_ms,
            (TxnStatus::Ongoing, _) => Some(now + i64::from(next.timeout_ms)),
            _ => None,
        };
        txn.updated_ms = now;
        txn.meta = next;
        drop(txns);
        drop(guard);
        Ok(())
    }

    /// Appends one record for `id` (None: a tombstone) to its partition, as
    /// the leader it was loaded under.
    async fn append(&self, partition: i32, id: &str, meta: Option<&TxnMetadata>) -> Result<(), ErrorCode> {
        self.append_states(partition, &[(id, meta)]).await
    }

    /// Appends one batch with a record per (id, state), as `append`.
    async fn append_states(&self, partition: i32, states: &[(&str, Option<&TxnMetadata>)]) -> Result<(), ErrorCode> {
        let tp = txn_tp(partition);
        let epoch = shard::leader_epoch_here(&tp).map_err(|_| ErrorCode::NotCoordinator)?;
        if self.loaded.borrow().get(&partition) != Some(&epoch) {
            return Err(ErrorCode::NotCoordinator);
        }
        let log = shard::local().log(&tp).ok_or(ErrorCode::NotCoordinator)?;
        let replicated = shard::led_by_quorum(&tp).map_err(|_| ErrorCode::NotCoordinator)?;
        let encoded: Vec<(Vec<u8>, Option<Vec<u8>>)> = states
            .iter()
            .map(|(id, meta)| (encode_key(id), meta.map(encode_value)))
            .collect();
        let records: Vec<Record> = encoded
            .iter()
            .map(|(key, value)| Record {
                key: Some(key),
                value: value.as_deref(),
            })
            .collect();
        let batch = build_batch(&records, now_ms(), -1, -1);
        let info = log.append(batch, now_ms(), epoch).await.map_err(|e| {
            warn!(partition = %tp, "transaction state write failed: {}", e.message);
            ErrorCode::CoordinatorNotAvailable
        })?;
        if replicated {
            shard::wait_until_committed(&tp, &log, info.last_offset + 1, epoch, MARKER_COMMIT_TIMEOUT)
                .await
                .map_err(|_| ErrorCode::NotCoordinator)?;
        }
        Ok(())
    }

    pub async fn init_producer_id(
        self: Rc<Self>,
        partition: i32,
        id: String,
        timeout_ms: i32,
        expected: Option<Expected>,
    ) -> Result<(i64, i16), ErrorCode> {
        if timeout_ms <= 0 || timeout_ms > self.config.max_timeout_ms {
            return Err(ErrorCode::InvalidTransactionTimeout);
        }
        if !self.txns.borrow().contains_key(&id) {
            let producer_id = controller::allocate_producer_id().await.map_err(|e| e.code)?;
            let fresh = TxnMetadata::new(id.clone(), producer_id, timeout_ms, now_ms());
            self.txns.borrow_mut().entry(id.clone()).or_insert(Txn {
                meta: fresh,
                pending: false,
                deadline_ms: None,
                updated_ms: steady_ms(),
            });
        }
        let (plan, guard) = self.begin(&id, |m| m.plan_init(timeout_ms, expected, now_ms()))?;
        let next = match plan {
            InitPlan::Store(next) => next,
            InitPlan::FenceAndAbort(next) => {
                info!(transactional_id = %id, epoch = next.producer_epoch, "fencing the producer; aborting its transaction");
                self.store(partition, guard, next).await?;
                compio::runtime::spawn(Rc::clone(&self).complete(partition, id)).detach();
                return Err(ErrorCode::ConcurrentTransactions);
            }
            InitPlan::Rotate => {
                let producer_id = controller::allocate_producer_id().await.map_err(|e| e.code)?;
                let current = self.current(&id).ok_or(ErrorCode::NotCoordinator)?;
                current.rotate(producer_id, timeout_ms, now_ms())
            }
        };
        let answer = (next.producer_id, next.producer_epoch);
        self.store(partition, guard, next).await?;
        Ok(answer)
    }

    fn current(&self, id: &str) -> Option<TxnMetadata> {
        self.txns.borrow().get(id).map(|t| t.meta.clone())
    }

    pub async fn add_partitions(
        self: Rc<Self>,
        partition: i32,
        id: &str,
        producer: (i64, i16),
        partitions: Vec<TopicPartition>,
        client_version: i16,
    ) -> Result<(), ErrorCode> {
        let (next, guard) = self.begin(id, |m| m.plan_add(producer, &partitions, client_version, now_ms()))?;
        match next {
            Some(next) => self.store(partition, guard, next).await,
            None => Ok(()),
        }
    }

    /// EndTxn: stores the Prepare state, starts the markers, and answers
    /// with the producer id and epoch the producer goes on with.
    pub async fn end_txn(
        self: Rc<Self>,
        partition: i32,
        id: &str,
        producer: (i64, i16),
        commit: bool,
        client_version: i16,
    ) -> Result<(i64, i16), ErrorCode> {
        let (plan, guard) = self.begin(id, |m| m.plan_end(producer, commit, client_version, now_ms()))?;
        let next = match plan {
            EndPlan::Ended(producer_id, epoch) => return Ok((producer_id, epoch)), // a retry
            EndPlan::Prepare(next) => next,
            EndPlan::Rotate => {
                let producer_id = controller::allocate_producer_id().await.map_err(|e| e.code)?;
                let current = self.current(id).ok_or(ErrorCode::NotCoordinator)?;
                current.prepare_with_next_id(commit, producer_id, now_ms())
            }
        };
        let answer = next.answer();
        let began = std::time::Instant::now();
        self.store(partition, guard, next).await?;
        // Where a commit's time goes, for `RUST_LOG=sluice_broker::txn=debug`.
        debug!(transactional_id = %id, prepare_ms = began.elapsed().as_secs_f64() * 1e3, "transaction prepared");
        compio::runtime::spawn(Rc::clone(&self).complete(partition, id.to_string())).detach();
        Ok(answer)
    }

    /// DescribeTransactions of one id: its current state;
    /// TRANSACTIONAL_ID_NOT_FOUND for an id unknown here or being removed.
    pub fn describe(&self, id: &str) -> Result<TxnMetadata, ErrorCode> {
        self.current(id)
            .filter(|m| m.status != TxnStatus::Dead)
            .ok_or(ErrorCode::TransactionalIdNotFound)
    }

    /// When each open transaction (Ongoing, or prepared and having its
    /// markers written) began, for the metrics.
    pub fn open_txn_starts_ms(&self) -> Vec<i64> {
        let txns = self.txns.borrow();
        let open = txns
            .values()
            .filter(|t| t.meta.status == TxnStatus::Ongoing || t.meta.is_prepared());
        open.map(|t| t.meta.start_ms).collect()
    }

    /// The ids this shard coordinates that `keep` keeps (ListTransactions).
    pub fn list(&self, keep: impl Fn(&TxnMetadata) -> bool) -> Vec<TxnMetadata> {
        let txns = self.txns.borrow();
        txns.values().map(|t| &t.meta).filter(|m| keep(m)).cloned().collect()
    }

    /// Which of `partitions` are in `id`'s open transaction of `producer`:
    /// TRANSACTION_ABORTABLE for one that is not, as Kafka's coordinator
    /// answers (leaders turn it into INVALID_TXN_STATE for older clients).
    pub fn verify(
        &self,
        id: &str,
        producer: (i64, i16),
        partitions: &[TopicPartition],
    ) -> Result<Vec<ErrorCode>, ErrorCode> {
        let txns = self.txns.borrow();
        let meta = &txns.get(id).ok_or(ErrorCode::InvalidProducerIdMapping)?.meta;
        meta.check_producer(producer.0, producer.1)?;
        if meta.is_prepared() {
            return Err(ErrorCode::ConcurrentTransactions);
        }
        let open = meta.status == TxnStatus::Ongoing;
        Ok(partitions
            .iter()
            .map(|tp| match open && meta.partitions.contains(tp) {
                true => ErrorCode::None,
                false => ErrorCode::TransactionAbortable,
            })
            .collect())
    }

    /// Writes the markers of `id`'s prepared transaction to each of its
    /// partitions, then stores the Complete state. Retries until done, or
    /// until this shard no longer coordinates the partition (the next
    /// coordinator finishes it from the stored Prepare state).
    async fn complete(self: Rc<Self>, partition: i32, id: String) {
        let Some(coordinator_epoch) = self.loaded.borrow().get(&partition).copied() else {
            return;
        };
        let Some(prepared) = self.current(&id).filter(TxnMetadata::is_prepared) else {
            return;
        };
        let marker = match prepared.status {
            TxnStatus::PrepareCommit => Marker::Commit,
            _ => Marker::Abort,
        };
        let producer = (prepared.producer_id, prepared.producer_epoch);
        let mut remaining: Vec<TopicPartition> = prepared.partitions.iter().cloned().collect();
        let mut backoff = Duration::from_millis(20);
        let began = std::time::Instant::now();
        // Bounded by the coordinator's epoch: it ends when every marker is
        // written, or when another broker (or a reload) owns the partition.
        loop {
            if self.loaded.borrow().get(&partition) != Some(&coordinator_epoch) {
                return;
            }
            let results = super::write_markers(&remaining, marker, producer, coordinator_epoch).await;
            let metadata = shard::local().metadata();
            let failed: Vec<(TopicPartition, String)> = remaining
                .into_iter()
                .zip(results)
                .filter_map(|(tp, result)| match result {
                    Ok(()) => None,
                    // A deleted topic needs no marker.
                    Err(_) if !metadata.topics.contains_key(&tp.topic) => None,
                    Err(e) => Some((tp, e.message)),
                })
                .collect();
            if failed.is_empty() {
                break;
            }
            warn!(transactional_id = %id, partitions = failed.len(), first_error = %failed[0].1, "markers not written; retrying");
            remaining = failed.into_iter().map(|(tp, _)| tp).collect();
            compio::time::sleep(backoff).await;
            backoff = (backoff * 2).min(RETRY_BACKOFF_MAX);
        }
        let markers_ms = began.elapsed().as_secs_f64() * 1e3;
        let next = prepared.complete(now_ms());
        // Bounded as above: a write that fails for want of leadership ends it.
        loop {
            let begun = self.begin(&id, |m| {
                (m.status == prepared.status && m.producer_epoch == prepared.producer_epoch)
                    .then_some(())
                    .ok_or(ErrorCode::InvalidTxnState)
            });
            let stored = match begun {
                Ok(((), guard)) => self.store(partition, guard, next.clone()).await,
                Err(e) => Err(e),
            };
            match stored {
                Ok(()) => {
                    let complete_ms = began.elapsed().as_secs_f64() * 1e3 - markers_ms;
                    debug!(transactional_id = %id, markers_ms, complete_ms, "transaction completed");
                    return;
                }
                Err(ErrorCode::NotCoordinator) | Err(ErrorCode::InvalidTxnState) => return,
                Err(e) => {
                    warn!(transactional_id = %id, "storing the completed transaction failed: {e:?}; retrying");
                    compio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(RETRY_BACKOFF_MAX);
                }
            }
        }
    }

    /// The coordinator's clock: loads the partitions this shard leads,
    /// aborts transactions past their timeout, forgets idle ids.
    pub async fn tick_loop(self: Rc<Self>) {
        let mut tick = compio::time::interval(Duration::from_millis(TICK_MS));
        let mut last_abort_ms = steady_ms();
        let mut last_expire_ms = steady_ms();
        let state = shard::local();
        while !state.is_stopping() {
            tick.tick().await;
            self.load_owned_partitions();
            self.compact_grown_partitions().await;
            let now = steady_ms();
            if now - last_abort_ms >= self.config.abort_timed_out_interval_ms as i64 {
                last_abort_ms = now;
                self.abort_timed_out(now).await;
            }
            if now - last_expire_ms >= self.config.remove_expired_interval_ms as i64 {
                last_expire_ms = now;
                self.expire_ids(now).await;
            }
        }
    }

    /// Loads every partition of `__transaction_state` this shard owns and
    /// this broker leads, so timeouts and prepared transactions are handled
    /// after a restart without waiting for a client; forgets the others.
    fn load_owned_partitions(self: &Rc<Self>) {
        let Some(partitions) = txn_partitions() else { return };
        let shards = runtime::shard_count();
        let me = runtime::shard_id();
        for p in (0..partitions).filter(|p| shard::owner_of(TXN_TOPIC, *p, shards) == me) {
            if super::coordinates(p) {
                let _ = self.ensure_partition(p);
            } else {
                self.unload(p);
            }
        }
    }

    /// Compacts each loaded partition whose log outgrew the segment size and
    /// twice its last snapshot, once none of its ids is being stored.
    async fn compact_grown_partitions(self: &Rc<Self>) {
        let loaded: Vec<i32> = self.loaded.borrow().keys().copied().collect();
        let partitions = txn_partitions().unwrap_or(1);
        for partition in loaded {
            let Some(log) = shard::local().log(&txn_tp(partition)) else {
                continue;
            };
            let last = self.snapshot_bytes.borrow().get(&partition).copied().unwrap_or(0);
            if log.size_bytes() <= self.config.log_segment_bytes.max(2 * last) {
                continue;
            }
            let storing = self
                .txns
                .borrow()
                .iter()
                .any(|(id, t)| t.pending && partition_for(id, partitions) == partition);
            if storing {
                continue; // on a later tick
            }
            self.compacting.borrow_mut().insert(partition);
            let compacted = self.compact(partition, &log).await;
            self.compacting.borrow_mut().remove(&partition);
            match compacted {
                Ok(bytes) => {
                    self.snapshot_bytes.borrow_mut().insert(partition, bytes);
                }
                Err(e) => warn!(partition, "compacting {TXN_TOPIC} failed: {e}"),
            }
        }
    }

    /// Rolls the partition, writes every id's current state after
    /// everything else, and deletes the segments before it. Returns the
    /// snapshot's bytes.
    async fn compact(&self, partition: i32, log: &PartitionLog) -> io::Result<u64> {
        log.roll_now(now_ms()).await?;
        let start = log.log_end_offset();
        let partitions = txn_partitions().unwrap_or(1);
        let states: Vec<TxnMetadata> = self
            .txns
            .borrow()
            .iter()
            .filter(|(id, _)| partition_for(id, partitions) == partition)
            .map(|(_, t)| t.meta.clone())
            .collect();
        for chunk in states.chunks(SNAPSHOT_BATCH_RECORDS) {
            let records: Vec<(&str, Option<&TxnMetadata>)> =
                chunk.iter().map(|m| (m.transactional_id.as_str(), Some(m))).collect();
            self.append_states(partition, &records)
                .await
                .map_err(|code| io::Error::other(format!("snapshot append: {code:?}")))?;
        }
        let deleted = log.delete_segments_below(start)?;
        let bytes = log.size_bytes();
        info!(
            partition,
            ids = states.len(),
            deleted_segments = deleted,
            "compacted {TXN_TOPIC}"
        );
        Ok(bytes)
    }

    /// Aborts every open transaction past its timeout, bumping its epoch.
    async fn abort_timed_out(self: &Rc<Self>, now: i64) {
        let expired: Vec<String> = self
            .txns
            .borrow()
            .iter()
            .filter(|(_, t)| !t.pending && t.deadline_ms.is_some_and(|d| d <= now))
            .map(|(id, _)| id.clone())
            .collect();
        let partitions = txn_partitions().unwrap_or(1);
        for id in expired {
            let partition = partition_for(&id, partitions);
            let Ok((Some(next), guard)) = self.begin(&id, |m| Ok(m.plan_timeout_abort(now_ms()))) else {
                continue;
            };
            info!(transactional_id = %id, "transaction timed out; aborting it");
            match self.store(partition, guard, next).await {
                Ok(()) => {
                    compio::runtime::spawn(Rc::clone(self).complete(partition, id)).detach();
                }
                Err(e) => warn!(transactional_id = %id, "aborting a timed-out transaction failed: {e:?}"),
            }
        }
    }

    /// `transactional.id.expiration.ms`: ids idle that long are forgotten
    /// (a tombstone in the log).
    async fn expire_ids(self: &Rc<Self>, now: i64) {
        let expiration_ms = self.config.id_expiration_ms;
        let expired: Vec<String> = self
            .txns
            .borrow()
            .iter()
            .filter(|(_, t)| !t.pending && t.meta.is_idle() && now - t.updated_ms >= expiration_ms)
            .map(|(id, _)| id.clone())
            .collect();
        let partitions = txn_partitions().unwrap_or(1);
        for id in expired {
            let Ok(((), _guard)) = self.begin(&id, |_| Ok(())) else {
                continue;
            };
            if self.append(partition_for(&id, partitions), &id, None).await.is_ok() {
                info!(transactional_id = %id, "transactional id expired");
                self.txns.borrow_mut().remove(&id);
            }
        }
    }
}
