//! The produce path's fan-out: each batch appended on its partition's owner
//! shard, which decides leadership once, then the acks=all waits.

use std::time::Duration;

use bytes::BytesMut;

use super::leadership::{leading_here, wait_until_committed};
use super::{local, not_leader, on_owners, shutting_down, unknown_partition};
use crate::model::{ErrorCode, TopicPartition};
use crate::record::BatchError;
use crate::record::control::Marker;
use crate::storage::AppendInfo;

/// One partition's batch of a Produce request.
pub struct AppendSpec {
    pub tp: TopicPartition,
    pub batch: BytesMut,
    /// A transactional batch the transaction coordinator has not vouched
    /// for: appended only into its producer's transaction already open on
    /// the partition (`PartitionLog::append_in_open_txn`).
    pub unverified_txn: bool,
}

/// What became of one `AppendSpec`.
pub enum Appending {
    Done(Result<Appended, BatchError>),
    /// An `unverified_txn` batch whose producer has no transaction open
    /// there: to be verified at the coordinator, then appended again.
    NotInOpenTxn(AppendSpec),
}

impl Appending {
    /// The outcome of a spec that was not `unverified_txn`.
    pub fn done(self) -> Result<Appended, BatchError> {
        match self {
            Appending::Done(result) => result,
            Appending::NotInOpenTxn(_) => unreachable!("only an unverified batch comes back"),
        }
    }
}

/// Appends each batch on its partition's owner shard, with one task per
/// owner shard (the partitions of that shard append concurrently inside it).
/// With acks=all on a replicated partition it needs `min.insync.replicas` in
/// the ISR first, and the append answers with what `wait_committed_many` must
/// then wait for. Results come back in the order of `specs`. The request's
/// frame is no longer needed once this returns: its batches are written.
pub async fn append_many(specs: Vec<AppendSpec>, now: i64, acks: i16) -> Vec<Appending> {
    on_owners(
        specs,
        |spec| &spec.tp,
        move |spec| append_here(spec, now, acks),
        || Appending::Done(Err(shutting_down())),
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
/// watermark passes each batch, or `timeout`; results in the order of
/// `appended`, which holds no `NotInOpenTxn`.
pub async fn wait_committed_many(appended: Vec<Appending>, timeout: Duration) -> Vec<Result<AppendInfo, BatchError>> {
    // `None` marks a batch whose answer waits for its commit.
    let mut answers: Vec<Option<Result<AppendInfo, BatchError>>> = Vec::with_capacity(appended.len());
    let mut waits = Vec::new();
    let mut waiting_infos = Vec::new();
    for result in appended.into_iter().map(Appending::done) {
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

/// One partition's append, on its owner shard. Leadership is decided here,
/// once, by the owner's metadata: the receiving shard may have applied a
/// change first or not yet. The log stamps that epoch or refuses the batch.
async fn append_here(spec: AppendSpec, now: i64, acks: i16) -> Appending {
    let AppendSpec {
        tp,
        batch,
        unverified_txn,
    } = spec;
    let shard = local();
    let Some(log) = shard.log(&tp) else {
        return Appending::Done(Err(unknown_partition()));
    };
    let leading = match leading_here(&tp) {
        Ok(leading) => leading,
        Err(code) => return Appending::Done(Err(not_leader(code, &tp))),
    };
    let epoch = leading.epoch;
    let led_by_quorum = match led_by_quorum(&tp) {
        Ok(led) => led,
        Err(e) => return Appending::Done(Err(e)),
    };
    let replicated = acks == -1 && led_by_quorum;
    if replicated {
        let isr = leading.isr_size as i32;
        let min_isr = log.min_insync_replicas();
        if isr < min_isr {
            return Appending::Done(Err(BatchError {
                code: ErrorCode::NotEnoughReplicas,
                message: format!("{tp} has {isr} in-sync replicas; min.insync.replicas is {min_isr}"),
            }));
        }
    }
    let appended = match unverified_txn {
        false => log.append(batch, now, epoch).await.map(Ok),
        true => log.append_in_open_txn(batch, now, epoch).await,
    };
    let info = match appended {
        Ok(Ok(info)) => info,
        Ok(Err(batch)) => {
            let spec = AppendSpec {
                tp,
                batch,
                unverified_txn,
            };
            return Appending::NotInOpenTxn(spec);
        }
        Err(e) => return Appending::Done(Err(e)),
    };
    assert_eq!(
        info.leader_epoch, epoch,
        "{tp}: the log stamps the epoch the owner decided"
    );
    // A duplicate (a retry of a batch already in the log) waits too: the
    // first attempt may have timed out before the ISR had it.
    let commit = replicated.then(|| (tp, info.last_offset + 1, epoch));
    Appending::Done(Ok(Appended { info, commit }))
}

/// Whether appends to `tp`, which this broker leads, must wait for its
/// in-sync replicas: a partition the metadata quorum places (not a single
/// node's). Decided before the append, never after it: a leader demoted
/// while its append is in flight no longer tracks the partition, and
/// asking then would answer an uncommitted write as done, which its next
/// leader may never have (a commit marker lost that way tore a
/// transaction in a chaos campaign). A leader cut off from the quorum
/// refuses: it is fenced by now and its leadership has moved, so an
/// acks=all write could never commit here, and any other would be cut
/// when it rejoins.
pub fn led_by_quorum(tp: &TopicPartition) -> Result<bool, BatchError> {
    let shard = local();
    let led = shard.leaderships.borrow().contains_key(tp);
    if led && !crate::cluster::quorum::in_contact(shard.config.broker_session_timeout_ms) {
        return Err(BatchError {
            code: ErrorCode::NotLeaderOrFollower,
            message: format!("{tp}: this broker has been cut off from the metadata quorum; its leadership has moved"),
        });
    }
    Ok(led)
}

/// The markers that end producer `producer`'s transaction on each of
/// `partitions`, each appended on its owner shard as leader there by the
/// coordinator in `coordinator_epoch`, and on a replicated partition waited
/// for until the in-sync replicas have it (as Kafka's WriteTxnMarkers
/// appends with acks=all). Results in the order of `partitions`.
pub async fn append_markers(
    partitions: Vec<TopicPartition>,
    marker: Marker,
    producer: (i64, i16),
    coordinator_epoch: i32,
    timeout: Duration,
) -> Vec<Result<(), BatchError>> {
    on_owners(
        partitions,
        |tp| tp,
        move |tp| async move {
            let shard = local();
            let Some(log) = shard.log(&tp) else {
                return Err(unknown_partition());
            };
            let epoch = leading_here(&tp).map_err(|code| not_leader(code, &tp))?.epoch;
            let replicated = led_by_quorum(&tp)?;
            let now_ms = crate::model::now_ms();
            let info = log
                .append_marker(marker, producer, coordinator_epoch, now_ms, epoch)
                .await?;
            if replicated {
                wait_until_committed(&tp, &log, info.last_offset + 1, epoch, timeout)
                    .await
                    .map_err(|(code, message)| BatchError { code, message })?;
            }
            Ok(())
        },
        || Err(shutting_down()),
    )
    .await
}
