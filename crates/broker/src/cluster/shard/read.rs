//! The fetch and lookup fan-out: reads, long-poll waits, and offset lookups
//! on each partition's owner shard.

use std::time::Instant;

use super::leadership::check_leader_epoch;
use super::{local, on_owners};
use crate::cluster::leader;
use crate::model::{ErrorCode, TopicPartition};
use crate::storage::producer::ActiveProducer;
use crate::storage::{PartitionLog, ReadResult, Reader};

/// One partition of a multi-partition read (Fetch).
pub struct ReadSpec {
    pub tp: TopicPartition,
    pub offset: i64,
    pub max_bytes: u64,
    /// The leader epoch the client knows (KIP-320), `NO_LEADER_EPOCH` for none.
    pub current_leader_epoch: i32,
}

/// Who a Fetch is from: a follower replica (its broker id), or a consumer
/// reading uncommitted or committed data.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fetcher {
    Replica(i32),
    Consumer(Reader),
}

impl Fetcher {
    pub fn reader(self) -> Reader {
        match self {
            Fetcher::Replica(_) => Reader::Replica,
            Fetcher::Consumer(reader) => reader,
        }
    }
}

/// Reads many partitions, one task per owner shard (`on_owners`). Results
/// come back in the order of `specs`.
pub async fn read_many(specs: Vec<ReadSpec>, fetcher: Fetcher) -> Vec<Result<ReadResult, ErrorCode>> {
    on_owners(
        specs,
        |spec| &spec.tp,
        move |spec| async move { read_here(&spec, fetcher) },
        || Err(ErrorCode::LeaderNotAvailable),
    )
    .await
}

/// One partition's read, on its owner shard, whose metadata decides whether
/// this broker leads it in the epoch the client knows.
fn read_here(spec: &ReadSpec, fetcher: Fetcher) -> Result<ReadResult, ErrorCode> {
    check_leader_epoch(&spec.tp, spec.current_leader_epoch)?;
    let Some(log) = local().log(&spec.tp) else {
        return Err(ErrorCode::UnknownTopicOrPartition);
    };
    if let Fetcher::Replica(follower) = fetcher {
        leader::follower_fetched(&spec.tp, &log, follower, spec.offset);
    }
    log.read_as(spec.offset, spec.max_bytes, true, fetcher.reader())
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

/// Answers `f` on the owner shards, one task per shard (`on_owners`), in the
/// order of `specs`; each owner first checks the leader epoch the client knows.
async fn lookup_many<R, F>(specs: Vec<LookupSpec>, f: F) -> Vec<Result<R, ErrorCode>>
where
    R: Send + 'static,
    F: Fn(&PartitionLog, i64) -> Result<R, ErrorCode> + Clone + Send + 'static,
{
    on_owners(
        specs,
        |spec| &spec.tp,
        move |spec| {
            let f = f.clone();
            async move {
                check_leader_epoch(&spec.tp, spec.current_leader_epoch)?;
                match local().log(&spec.tp) {
                    Some(log) => f(&log, spec.arg),
                    None => Err(ErrorCode::UnknownTopicOrPartition),
                }
            }
        },
        || Err(ErrorCode::LeaderNotAvailable),
    )
    .await
}

/// ListOffsets: for each partition (`arg` the timestamp) the offset, its
/// timestamp and the leader epoch it was written in, as `reader` sees the log.
pub async fn offsets_for(specs: Vec<LookupSpec>, reader: Reader) -> Vec<Result<(i64, i64, i32), ErrorCode>> {
    lookup_many(specs, move |log, timestamp_ms| {
        let (offset, timestamp) = log.offset_for(timestamp_ms, reader)?;
        Ok((offset, timestamp, log.epoch_at(offset)))
    })
    .await
}

/// DescribeProducers: for each partition the producers its leader's log tracks.
pub async fn producers_for(specs: Vec<LookupSpec>) -> Vec<Result<Vec<ActiveProducer>, ErrorCode>> {
    lookup_many(specs, |log, _| Ok(log.active_producers())).await
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
