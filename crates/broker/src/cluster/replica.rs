//! Followers: while this broker holds a replica of a partition that another
//! broker leads, the partition's owner shard runs a fetcher that reads the
//! leader's log with the Kafka Fetch API (`replica_id` = this broker), so a
//! follower is a consumer of the leader's zero-copy fetch path, and appends
//! each batch exactly as stored there (`PartitionLog::append_replicated`).
//!
//! The leader learns each follower's log end offset from the offset it
//! fetches at (`leader`). Before following a (new) leader a replica asks it
//! where the replica's latest leader epoch ends in the leader's log
//! (OffsetForLeaderEpoch, KIP-101/279) and cuts its own log there, so it
//! keeps the tail it shares with the leader and drops only divergent history.

use std::cell::Cell;
use std::rc::Rc;
use std::time::Duration;

use bytes::{Buf, Bytes, BytesMut};
use compio::net::TcpStream;
use kafka_protocol::messages::fetch_request::{FetchPartition, FetchTopic};
use kafka_protocol::messages::list_offsets_request::{ListOffsetsPartition, ListOffsetsTopic};
use kafka_protocol::messages::offset_for_leader_epoch_request::{OffsetForLeaderPartition, OffsetForLeaderTopic};
use kafka_protocol::messages::{
    BrokerId, FetchRequest, FetchResponse, ListOffsetsRequest, ListOffsetsResponse, OffsetForLeaderEpochRequest,
    OffsetForLeaderEpochResponse, TopicName,
};
use kafka_protocol::protocol::{Decodable, Request, StrBytes};
use tracing::{debug, info, warn};

use super::shard::local;
use crate::model::{ErrorCode, TopicPartition};
use crate::record::BatchHeader;
use crate::storage::epoch::UNDEFINED_EPOCH;
use crate::storage::log::INFLIGHT_APPENDS_MAX;

/// Flexible, topics by name (v13 switched to ids).
const FETCH_VERSION: i16 = 12;
/// Has `replica_id` and `current_leader_epoch`.
const OFFSET_FOR_LEADER_EPOCH_VERSION: i16 = 3;
const LIST_OFFSETS_VERSION: i16 = 4;
const FETCH_WAIT_MS: i32 = 500;
const FETCH_PARTITION_BYTES: i32 = 8 << 20;
/// A response larger than this is refused (it holds one partition's slice).
const RESPONSE_BYTES_MAX: usize = 64 << 20;
/// After a failed connect or a fetch error, the fetcher waits this long.
const RETRY_BACKOFF: Duration = Duration::from_millis(200);

/// Cancels a running fetcher when the partition's leader or role changes.
#[derive(Clone, Default)]
pub struct Cancel(Rc<Cell<bool>>);

impl Cancel {
    pub fn cancel(&self) {
        self.0.set(true);
    }
    fn is_cancelled(&self) -> bool {
        self.0.get() || local().is_stopping()
    }
}

/// Replicates `tp` from `leader` (which leads in `leader_epoch`) until
/// cancelled. Runs on `tp`'s owner shard. Reconciles the log with the
/// leader's before the first fetch: a record beyond the point where the two
/// histories part may never have reached the new leader, whose log wins.
pub async fn follow(tp: TopicPartition, leader: (String, u16), leader_epoch: i32, cancel: Cancel) {
    info!(partition = %tp, leader = %format!("{}:{}", leader.0, leader.1), leader_epoch, "following");
    let mut reconciled = false;
    // Set when the leader said our log end is not in its log.
    let mut out_of_range = false;
    // Bounded by the cancel flag: every round either fetches or backs off.
    while !cancel.is_cancelled() {
        // A host name is resolved on compio's blocking pool, off the event loop.
        let connect = TcpStream::connect((leader.0.as_str(), leader.1));
        let connected = compio::time::timeout(CONNECT_TIMEOUT, connect)
            .await
            .unwrap_or_else(|_| Err(std::io::Error::from(std::io::ErrorKind::TimedOut)));
        let mut stream = match connected {
            Ok(s) => s,
            Err(e) => {
                debug!(partition = %tp, "cannot reach the leader: {e}");
                compio::time::sleep(RETRY_BACKOFF).await;
                continue;
            }
        };
        if !reconciled {
            if let Err(e) = truncate_to_leader(&tp, &mut stream, leader_epoch, out_of_range).await {
                debug!(partition = %tp, "cannot reconcile with the leader yet: {e}");
                compio::time::sleep(RETRY_BACKOFF).await;
                continue;
            }
            reconciled = true;
        }
        match fetch_loop(&tp, stream, leader_epoch, &cancel).await {
            Err(FetchStop::OutOfRange) => {
                reconciled = false;
                out_of_range = true;
            }
            Err(FetchStop::Failed(e)) => debug!(partition = %tp, "replica fetch stopped: {e}"),
            Ok(()) => continue,
        }
        compio::time::sleep(RETRY_BACKOFF).await;
    }
    info!(partition = %tp, "no longer following");
}

enum FetchStop {
    /// The leader has no such offset: reconcile the log again.
    OutOfRange,
    Failed(anyhow::Error),
}

impl From<anyhow::Error> for FetchStop {
    fn from(e: anyhow::Error) -> Self {
        FetchStop::Failed(e)
    }
}

impl From<std::io::Error> for FetchStop {
    fn from(e: std::io::Error) -> Self {
        FetchStop::Failed(e.into())
    }
}

/// Cuts the local log to where it stops agreeing with the leader's
/// (KIP-279): ask where our latest epoch ends there; if the leader answers
/// with an older epoch, our history parts from its where that epoch ends in
/// either log. Without any epoch to compare (an empty history), falls back to
/// the last high watermark this replica knew. After the leader refused
/// our log end (`out_of_range`), also cuts to the leader's high watermark,
/// which is in its log whatever the epochs say. A log ending below the
/// leader's log start restarts there.
async fn truncate_to_leader(
    tp: &TopicPartition,
    stream: &mut TcpStream,
    leader_epoch: i32,
    out_of_range: bool,
) -> anyhow::Result<()> {
    let log = local()
        .log(tp)
        .ok_or_else(|| anyhow::anyhow!("the partition is not open here"))?;
    let local_end = log.log_end_offset();
    let target = match log.latest_epoch() {
        Some(latest) => {
            let (epoch, leader_end) = ask_epoch_end(tp, stream, leader_epoch, latest).await?;
            if epoch == UNDEFINED_EPOCH {
                log.known_high_watermark().unwrap_or(local_end)
            } else if epoch == latest {
                leader_end
            } else {
                leader_end.min(log.end_offset_for_epoch(epoch).1)
            }
        }
        None => log.known_high_watermark().unwrap_or(local_end),
    };
    let target = if out_of_range {
        target.min(ask_offset(tp, stream, leader_epoch, LATEST).await?)
    } else {
        target
    };
    if target < local_end {
        info!(partition = %tp, from = local_end, to = target, "truncating divergent history");
    }
    log.truncate_to(target).await?;
    let leader_start = ask_offset(tp, stream, leader_epoch, EARLIEST).await?;
    if log.log_end_offset() < leader_start {
        log.restart_at(leader_start, crate::model::now_ms()).await?;
    }
    Ok(())
}

/// OffsetForLeaderEpoch to the leader for our `latest` epoch.
async fn ask_epoch_end(
    tp: &TopicPartition,
    stream: &mut TcpStream,
    leader_epoch: i32,
    latest: i32,
) -> anyhow::Result<(i32, i64)> {
    let request = OffsetForLeaderEpochRequest::default()
        .with_replica_id(BrokerId(local().config.broker_id))
        .with_topics(vec![
            OffsetForLeaderTopic::default()
                .with_topic(topic_name(tp))
                .with_partitions(vec![
                    OffsetForLeaderPartition::default()
                        .with_partition(tp.partition)
                        .with_current_leader_epoch(leader_epoch)
                        .with_leader_epoch(latest),
                ]),
        ]);
    let response: OffsetForLeaderEpochResponse = call(stream, &request, OFFSET_FOR_LEADER_EPOCH_VERSION).await?;
    let found = response.topics.first().and_then(|t| t.partitions.first());
    let answer = accepted(found, found.map(|p| p.error_code), "OffsetForLeaderEpoch")?;
    Ok((answer.leader_epoch, answer.end_offset))
}

const EARLIEST: i64 = -2;
const LATEST: i64 = -1;

/// The leader's log start (EARLIEST) or high watermark (LATEST), by ListOffsets.
async fn ask_offset(tp: &TopicPartition, stream: &mut TcpStream, leader_epoch: i32, which: i64) -> anyhow::Result<i64> {
    let request = ListOffsetsRequest::default()
        .with_replica_id(BrokerId(local().config.broker_id))
        .with_topics(vec![
            ListOffsetsTopic::default()
                .with_name(topic_name(tp))
                .with_partitions(vec![
                    ListOffsetsPartition::default()
                        .with_partition_index(tp.partition)
                        .with_current_leader_epoch(leader_epoch)
                        .with_timestamp(which),
                ]),
        ]);
    let response: ListOffsetsResponse = call(stream, &request, LIST_OFFSETS_VERSION).await?;
    let found = response.topics.first().and_then(|t| t.partitions.first());
    let answer = accepted(found, found.map(|p| p.error_code), "ListOffsets")?;
    Ok(answer.offset)
}

/// The one partition answer of a single-partition request, if the leader
/// returned it without an error.
fn accepted<'a, P>(answer: Option<&'a P>, error_code: Option<i16>, api: &str) -> anyhow::Result<&'a P> {
    let answer = answer.ok_or_else(|| anyhow::anyhow!("the leader returned no partition"))?;
    let code = error_code.unwrap_or(0);
    anyhow::ensure!(code == 0, "the leader answered {api} with error {code}");
    Ok(answer)
}

/// The client id a follower's requests carry (Kafka's replica fetchers send their own too).
const FOLLOWER_CLIENT_ID: &str = "sluice-follower";

/// A follower's request unanswered this long (beyond the fetch's own wait)
/// means a dead or partitioned connection: TCP alone would keep retrying it
/// for minutes after the network heals. Kafka's `replica.socket.timeout.ms`
/// plays this part.
const REQUEST_TIMEOUT: Duration = Duration::from_millis(FETCH_WAIT_MS as u64 + 5_000);
/// As REQUEST_TIMEOUT, for a connect whose SYNs go unanswered.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(3);

/// Sends one request and reads its response on the follower's connection.
async fn call<Q: Request, S: Decodable>(stream: &mut TcpStream, request: &Q, version: i16) -> anyhow::Result<S> {
    let call = super::request::call(stream, request, version, FOLLOWER_CLIENT_ID, RESPONSE_BYTES_MAX);
    compio::time::timeout(REQUEST_TIMEOUT, call)
        .await
        .map_err(|_| anyhow::anyhow!("the leader did not answer in {REQUEST_TIMEOUT:?}"))?
}

fn topic_name(tp: &TopicPartition) -> TopicName {
    TopicName(StrBytes::from_string(tp.topic.clone()))
}

async fn fetch_loop(
    tp: &TopicPartition,
    mut stream: TcpStream,
    leader_epoch: i32,
    cancel: &Cancel,
) -> Result<(), FetchStop> {
    // Bounded by the cancel flag and the connection.
    while !cancel.is_cancelled() {
        let Some(log) = local().log(tp) else {
            return Err(anyhow::anyhow!("the partition is not open here").into());
        };
        let fetch_offset = log.log_end_offset();
        let request = fetch_request(tp, local().config.broker_id, leader_epoch, fetch_offset);
        let response: FetchResponse = call(&mut stream, &request, FETCH_VERSION).await?;
        let partition = response
            .responses
            .first()
            .and_then(|t| t.partitions.first())
            .ok_or_else(|| anyhow::anyhow!("the leader returned no partition"))?;
        if partition.error_code == ErrorCode::OffsetOutOfRange.code() {
            return Err(FetchStop::OutOfRange);
        }
        if partition.error_code != 0 {
            // NOT_LEADER_OR_FOLLOWER or a leader-epoch mismatch while metadata catches up, usually.
            debug!(partition = %tp, code = partition.error_code, "the leader refused the fetch");
            compio::time::sleep(RETRY_BACKOFF).await;
            continue;
        }
        if let Some(records) = &partition.records {
            append_batches(tp, records.clone()).await?;
        }
        if let Some(log) = local().log(tp) {
            // The leader's high watermark, as far as this copy reaches.
            log.set_replicated_high_watermark(Some(partition.high_watermark.min(log.log_end_offset())));
            // Segments the leader has let go (its log start moved: retention,
            // compaction of `__consumer_offsets`) go here too.
            if partition.log_start_offset > log.log_start_offset()
                && let Err(e) = log.delete_segments_below(partition.log_start_offset.min(log.log_end_offset()))
            {
                warn!(partition = %tp, "cannot follow the leader's log start: {e}");
            }
        }
    }
    Ok(())
}

fn fetch_request(tp: &TopicPartition, broker_id: i32, leader_epoch: i32, fetch_offset: i64) -> FetchRequest {
    FetchRequest::default()
        .with_replica_id(BrokerId(broker_id))
        .with_max_wait_ms(FETCH_WAIT_MS)
        .with_min_bytes(1)
        .with_max_bytes(FETCH_PARTITION_BYTES)
        .with_session_epoch(-1)
        .with_topics(vec![FetchTopic::default().with_topic(topic_name(tp)).with_partitions(
            vec![
                    FetchPartition::default()
                        .with_partition(tp.partition)
                        .with_current_leader_epoch(leader_epoch)
                        .with_fetch_offset(fetch_offset)
                        .with_partition_max_bytes(FETCH_PARTITION_BYTES),
                ],
        )])
}

/// Appends every whole batch in `records` (a fetch may end inside one),
/// in runs of at most INFLIGHT_APPENDS_MAX batches: one copy out of the
/// response and one write per run.
async fn append_batches(tp: &TopicPartition, mut records: Bytes) -> Result<(), FetchStop> {
    // Bounded: each round appends at least one whole batch or stops.
    loop {
        let mut whole = 0;
        let mut count = 0;
        while count < INFLIGHT_APPENDS_MAX
            && let Some(header) = BatchHeader::parse(&records[whole..])
            && header.batch_length > 0
            && whole + header.total_bytes() <= records.len()
        {
            whole += header.total_bytes();
            count += 1;
        }
        if whole == 0 {
            return Ok(());
        }
        let run = BytesMut::from(&records[..whole]);
        records.advance(whole);
        let Some(log) = local().log(tp) else {
            return Err(anyhow::anyhow!("the partition closed").into());
        };
        if let Err(e) = log.append_replicated(run, crate::model::now_ms()).await {
            if e.code == ErrorCode::OffsetOutOfRange {
                warn!(partition = %tp, "the leader's batch does not continue this log: {}", e.message);
                return Err(FetchStop::OutOfRange);
            }
            return Err(anyhow::anyhow!("replica append failed: {}", e.message).into());
        }
    }
}
