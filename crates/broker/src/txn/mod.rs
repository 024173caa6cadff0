//! Transactions: the transaction coordinator and the state it keeps in the
//! internal topic `__transaction_state`.
//!
//! A transactional id's coordinator is the shard that owns the id's
//! partition of `__transaction_state` (Kafka's `abs(hashCode(id)) %
//! partitions`, as for groups). The functions here run on whichever shard
//! received the request and hand the work to that shard. `state` is one
//! id's state machine, `records` the stored format, `coordinator` the
//! per-shard owner of the ids, which stores each state before it becomes
//! current and writes the COMMIT and ABORT markers.
//!
//! In cluster mode `__transaction_state` is replicated like any topic, and
//! `remote` carries what crosses brokers: the coordinator's markers to
//! partitions led elsewhere (WriteTxnMarkers), and a leader's KIP-890 check
//! with a coordinator elsewhere (AddPartitionsToTxn v4, verify only).

pub mod coordinator;
pub mod records;
pub mod remote;
pub mod state;

use std::collections::BTreeMap;
use std::future::Future;
use std::rc::Rc;

use crate::cluster::controller;
use crate::cluster::shard::{self, owner_of};
use crate::group::{self, partition_for};
use crate::model::{ErrorCode, NAME_BYTES_MAX, TopicPartition};
use crate::runtime::{self, submit_to};
use coordinator::TxnCoordinator;
pub use remote::write_markers;
pub use state::{Expected, TxnMetadata, TxnStatus};

pub const TXN_TOPIC: &str = crate::model::INTERNAL_TOPICS[1];
// The highest transaction version the coordinator knows is the highest the feature supports.
const _: () = assert!(state::TV_EPOCH_BUMP == crate::config::TRANSACTION_VERSION_MAX);

/// The `transaction.version` feature's level: finalized for the cluster
/// with UpdateFeatures, else the broker setting's.
pub fn finalized_version() -> i16 {
    let shard = shard::local();
    let level = shard
        .metadata()
        .feature_level(crate::config::TRANSACTION_VERSION_FEATURE, shard.config.txn.version);
    assert!(
        level <= crate::config::TRANSACTION_VERSION_MAX,
        "the controller checks levels"
    );
    level
}

/// The transaction version a request at `api_version` gets: 2 from
/// `since_version` on, if the `transaction.version` feature is 2; else 1.
pub fn client_version(api_version: i16, since_version: i16) -> i16 {
    match api_version >= since_version && finalized_version() >= state::TV_EPOCH_BUMP {
        true => state::TV_EPOCH_BUMP,
        false => state::TV_KEEP_EPOCH,
    }
}

/// Creates `__transaction_state` on first use, as Kafka does on the first
/// FindCoordinator for a transactional id.
pub async fn ensure_txn_topic() -> Result<(), ErrorCode> {
    let config = &shard::local().config.txn;
    let configs = || {
        BTreeMap::from([
            ("segment.bytes".to_string(), config.log_segment_bytes.to_string()),
            ("min.insync.replicas".to_string(), config.log_min_isr.to_string()),
        ])
    };
    let (partitions, replication_factor) = (config.log_partitions, config.log_replication_factor);
    match controller::ensure_internal_topic(TXN_TOPIC, partitions, replication_factor, configs).await {
        true => Ok(()),
        false => Err(ErrorCode::CoordinatorNotAvailable),
    }
}

/// The partition count of `__transaction_state`, if it exists yet.
pub fn txn_partitions() -> Option<i32> {
    shard::local().metadata().topics.get(TXN_TOPIC).map(|t| t.partitions)
}

/// The broker that coordinates `transactional_id`, the leader of its
/// partition of `__transaction_state`: (node id, host, port).
pub fn coordinator_of(transactional_id: &str) -> Result<(i32, String, u16), ErrorCode> {
    let partitions = txn_partitions().ok_or(ErrorCode::CoordinatorNotAvailable)?;
    shard::coordinator_endpoint(TXN_TOPIC, partition_for(transactional_id, partitions))
}

fn coordinates(partition: i32) -> bool {
    shard::check_coordinating(&TopicPartition::new(TXN_TOPIC.to_string(), partition)).is_ok()
}

/// Runs `f` with the id's coordinator, on the shard that owns the id's partition.
async fn on_coordinator<R, F, Fut>(transactional_id: &str, f: F) -> Result<R, ErrorCode>
where
    F: FnOnce(Rc<TxnCoordinator>, i32) -> Fut + Send + 'static,
    Fut: Future<Output = Result<R, ErrorCode>> + 'static,
    R: Send + 'static,
{
    if transactional_id.is_empty() || transactional_id.len() > NAME_BYTES_MAX {
        return Err(ErrorCode::InvalidRequest);
    }
    let partitions = txn_partitions().ok_or(ErrorCode::CoordinatorNotAvailable)?;
    let partition = partition_for(transactional_id, partitions);
    if !coordinates(partition) {
        return Err(ErrorCode::NotCoordinator);
    }
    let owner = owner_of(TXN_TOPIC, partition, runtime::shard_count());
    submit_to(owner, move || async move {
        let coordinator = coordinator::local();
        coordinator.ensure_partition(partition)?;
        f(coordinator, partition).await
    })
    .await
    .unwrap_or(Err(ErrorCode::CoordinatorNotAvailable))
}

/// InitProducerId with a transactional id: (producer id, epoch).
pub async fn init_producer_id(
    transactional_id: String,
    timeout_ms: i32,
    expected: Option<Expected>,
) -> Result<(i64, i16), ErrorCode> {
    let id = transactional_id.clone();
    on_coordinator(&id, move |c, partition| async move {
        c.init_producer_id(partition, transactional_id, timeout_ms, expected)
            .await
    })
    .await
}

/// AddPartitionsToTxn: one error for the whole request (clients' versions
/// 0 to 3 carry one transaction). `client_version` is the transaction
/// version the client uses: 2 when a partition leader adds for it.
pub async fn add_partitions(
    transactional_id: String,
    producer: (i64, i16),
    partitions: Vec<TopicPartition>,
    client_version: i16,
) -> Result<(), ErrorCode> {
    let id = transactional_id.clone();
    on_coordinator(&id, move |c, partition| async move {
        c.add_partitions(partition, &transactional_id, producer, partitions, client_version)
            .await
    })
    .await
}

/// AddOffsetsToTxn: the transaction will commit offsets of `group_id`, so
/// the group's partition of `__consumer_offsets` joins it (and gets its
/// marker at the end).
pub async fn add_offsets(transactional_id: String, producer: (i64, i16), group_id: String) -> Result<(), ErrorCode> {
    if group_id.is_empty() || group_id.len() > NAME_BYTES_MAX {
        return Err(ErrorCode::InvalidGroupId);
    }
    group::ensure_offsets_topic().await?;
    let tp = group::offsets_partition(&group_id).ok_or(ErrorCode::CoordinatorNotAvailable)?;
    add_partitions(transactional_id, producer, vec![tp], state::TV_KEEP_EPOCH).await
}

/// EndTxn: answered once the decision is stored; the markers follow. The
/// answer is the producer id and epoch to go on with (version 2 bumps it).
pub async fn end_txn(
    transactional_id: String,
    producer: (i64, i16),
    commit: bool,
    client_version: i16,
) -> Result<(i64, i16), ErrorCode> {
    let id = transactional_id.clone();
    on_coordinator(&id, move |c, partition| async move {
        c.end_txn(partition, &transactional_id, producer, commit, client_version)
            .await
    })
    .await
}

/// DescribeTransactions of one id, at its coordinator.
pub async fn describe(transactional_id: String) -> Result<TxnMetadata, ErrorCode> {
    let id = transactional_id.clone();
    on_coordinator(&id, move |c, _| async move { c.describe(&transactional_id) }).await
}

/// ListTransactions' filters; an empty list filters nothing.
#[derive(Debug, Clone)]
pub struct ListFilter {
    pub states: Vec<TxnStatus>,
    pub producer_ids: Vec<i64>,
    /// Only transactions running longer than this; negative for all.
    pub duration_ms: i64,
    /// Only ids this matches whole (v2, KIP-1152).
    pub pattern: Option<regex::Regex>,
}

impl ListFilter {
    /// As Kafka's coordinator filters, Dead ids never listed. Like
    /// Kafka's, the duration counts from a start of -1 for an id with no
    /// open transaction.
    fn keeps(&self, m: &TxnMetadata, now_ms: i64) -> bool {
        m.status != TxnStatus::Dead
            && (self.producer_ids.is_empty() || self.producer_ids.contains(&m.producer_id))
            && (self.states.is_empty() || self.states.contains(&m.status))
            && (self.duration_ms < 0 || now_ms - m.start_ms > self.duration_ms)
            && self.pattern.as_ref().is_none_or(|p| p.is_match(&m.transactional_id))
    }
}

/// ListTransactions: the ids every shard of this broker coordinates, by id.
pub async fn list(filter: ListFilter) -> Vec<TxnMetadata> {
    let per_shard = (0..runtime::shard_count()).map(|shard| {
        let filter = filter.clone();
        submit_to(shard, move || async move {
            let now = crate::model::now_ms();
            coordinator::local().list(|m| filter.keeps(m, now))
        })
    });
    let mut listed: Vec<TxnMetadata> = futures_util::future::join_all(per_shard)
        .await
        .into_iter()
        .flat_map(Result::unwrap_or_default)
        .collect();
    listed.sort_by(|a, b| a.transactional_id.cmp(&b.transactional_id));
    listed
}

/// What a partition leader asks a producer's coordinator before it appends
/// a transactional batch that no transaction open on the partition vouches
/// for (the first of each transaction there).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TxnCheck {
    /// KIP-890 part 1: each partition must be in the open transaction.
    Verify,
    /// Part 2 (`transaction.version` 2): each partition joins it.
    Add,
}

impl TxnCheck {
    /// The check a request at `api_version` gets: `Add` from
    /// `implicit_add_version` on, if its client has version 2.
    pub fn for_request(api_version: i16, implicit_add_version: i16) -> TxnCheck {
        match client_version(api_version, implicit_add_version) {
            state::TV_EPOCH_BUMP => TxnCheck::Add,
            _ => TxnCheck::Verify,
        }
    }
}

/// Kafka's leaders retry CONCURRENT_TRANSACTIONS this long before answering
/// the producer (`add.partitions.to.txn.retry.backoff.max.ms`).
const CONCURRENT_RETRY_MS_MAX: u64 = 100;

/// `check` at the producer's coordinator for `partitions`: one code per
/// partition, already as a producer expects it (Kafka's translation of
/// coordinator errors for Produce). CONCURRENT_TRANSACTIONS, the previous
/// transaction's markers still being written (a version 2 producer does
/// not wait for them), is retried here first.
pub async fn check_in_txn(
    transactional_id: String,
    producer: (i64, i16),
    partitions: Vec<TopicPartition>,
    check: TxnCheck,
) -> Vec<ErrorCode> {
    let count = partitions.len();
    let started = std::time::Instant::now();
    let mut backoff = std::time::Duration::from_millis(1);
    // Bounded by CONCURRENT_RETRY_MS_MAX.
    let checked = loop {
        let checked = match remote_coordinator(&transactional_id) {
            Some(broker) => remote::check(broker, &transactional_id, producer, &partitions, check).await,
            None => check_here(transactional_id.clone(), producer, partitions.clone(), check).await,
        };
        let concurrent = match &checked {
            Ok(codes) => codes.contains(&ErrorCode::ConcurrentTransactions),
            Err(code) => *code == ErrorCode::ConcurrentTransactions,
        };
        if !concurrent || started.elapsed() + backoff > std::time::Duration::from_millis(CONCURRENT_RETRY_MS_MAX) {
            break checked;
        }
        compio::time::sleep(backoff).await;
        backoff *= 2;
    };
    match checked {
        Ok(codes) => codes.into_iter().map(for_produce).collect(),
        Err(code) => vec![for_produce(code); count],
    }
}

/// `check_in_txn` at this broker, the id's coordinator: the coordinator's
/// own codes (AddPartitionsToTxn v4 and v5 answer them to other leaders).
pub async fn check_here(
    transactional_id: String,
    producer: (i64, i16),
    partitions: Vec<TopicPartition>,
    check: TxnCheck,
) -> Result<Vec<ErrorCode>, ErrorCode> {
    let id = transactional_id.clone();
    on_coordinator(&id, move |c, partition| async move {
        match check {
            TxnCheck::Verify => c.verify(&transactional_id, producer, &partitions),
            TxnCheck::Add => {
                let count = partitions.len();
                c.add_partitions(partition, &transactional_id, producer, partitions, state::TV_EPOCH_BUMP)
                    .await
                    .map(|()| vec![ErrorCode::None; count])
            }
        }
    })
    .await
}

/// The broker coordinating `transactional_id` if it is another one.
fn remote_coordinator(transactional_id: &str) -> Option<i32> {
    let (broker, _, _) = coordinator_of(transactional_id).ok()?;
    (broker != shard::local().config.broker_id).then_some(broker)
}

fn for_produce(code: ErrorCode) -> ErrorCode {
    match code {
        ErrorCode::ProducerFenced => ErrorCode::InvalidProducerEpoch,
        // Retriable at the coordinator: a code older producers retry without
        // refreshing metadata.
        ErrorCode::ConcurrentTransactions
        | ErrorCode::CoordinatorLoadInProgress
        | ErrorCode::CoordinatorNotAvailable
        | ErrorCode::NotCoordinator => ErrorCode::NotEnoughReplicas,
        other => other,
    }
}
