//! Followers: while this broker holds a replica of a partition that another
//! broker leads, the partition's owner shard runs a fetcher that reads the
//! leader's log with the Kafka Fetch API (`replica_id` = this broker), so a
//! follower is a consumer of the leader's zero-copy fetch path, and appends
//! each batch exactly as stored there (`PartitionLog::append_replicated`).
//!
//! The leader learns each follower's log end offset from the offset it
//! fetches at (`leader`). Before following a (new) leader a replica cuts its
//! log back to the last committed offset it knew (Kafka's approach before
//! KIP-101; leader epochs would keep more of a tail that is in fact shared).

use std::cell::Cell;
use std::net::SocketAddr;
use std::rc::Rc;
use std::time::Duration;

use bytes::{Buf, Bytes, BytesMut};
use compio::BufResult;
use compio::io::{AsyncReadExt, AsyncWriteExt};
use compio::net::TcpStream;
use kafka_protocol::messages::fetch_request::{FetchPartition, FetchTopic};
use kafka_protocol::messages::{BrokerId, FetchRequest, FetchResponse, ResponseHeader, TopicName};
use kafka_protocol::protocol::{Decodable, HeaderVersion, StrBytes};
use tracing::{debug, info, warn};

use super::shard::local;
use crate::model::{ErrorCode, TopicPartition};
use crate::record::BatchHeader;

/// Flexible, topics by name (v13 switched to ids).
const FETCH_VERSION: i16 = 12;
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

/// Replicates `tp` from `leader` until cancelled. Runs on `tp`'s owner shard.
/// First drops any tail past the last committed offset this replica knew: a
/// record beyond it may never have reached the new leader, whose log wins.
pub async fn follow(tp: TopicPartition, leader: SocketAddr, cancel: Cancel) {
    info!(partition = %tp, %leader, "following");
    if let Some(log) = local().log(&tp)
        && let Some(committed) = log.known_committed()
        && committed < log.log_end_offset()
        && let Err(e) = log.truncate_to(committed).await
    {
        warn!(partition = %tp, "cannot truncate before following: {e}");
        return;
    }
    // Bounded by the cancel flag: every round either fetches or backs off.
    while !cancel.is_cancelled() {
        let stream = match TcpStream::connect(leader).await {
            Ok(s) => s,
            Err(e) => {
                debug!(partition = %tp, "cannot reach the leader: {e}");
                compio::time::sleep(RETRY_BACKOFF).await;
                continue;
            }
        };
        if let Err(e) = fetch_loop(&tp, stream, &cancel).await {
            debug!(partition = %tp, "replica fetch stopped: {e}");
            compio::time::sleep(RETRY_BACKOFF).await;
        }
    }
    info!(partition = %tp, "no longer following");
}

async fn fetch_loop(tp: &TopicPartition, mut stream: TcpStream, cancel: &Cancel) -> anyhow::Result<()> {
    let mut correlation_id = 0i32;
    // Bounded by the cancel flag and the connection.
    while !cancel.is_cancelled() {
        let Some(log) = local().log(tp) else {
            anyhow::bail!("the partition is not open here");
        };
        let fetch_offset = log.log_end_offset();
        correlation_id = correlation_id.wrapping_add(1);
        let request = fetch_request(tp, local().config.broker_id, fetch_offset);
        let frame = crate::client::frame(&request, FETCH_VERSION, correlation_id)?;
        let BufResult(written, _) = stream.write_all(frame.to_vec()).await;
        written?;
        let mut body = read_response(&mut stream).await?;
        let header = ResponseHeader::decode(&mut body, FetchResponse::header_version(FETCH_VERSION))?;
        anyhow::ensure!(
            header.correlation_id == correlation_id,
            "a fetch response arrived out of order"
        );
        let response = FetchResponse::decode(&mut body, FETCH_VERSION)?;
        let partition = response
            .responses
            .first()
            .and_then(|t| t.partitions.first())
            .ok_or_else(|| anyhow::anyhow!("the leader returned no partition"))?;
        if partition.error_code != 0 {
            // NOT_LEADER_OR_FOLLOWER while metadata catches up, usually.
            debug!(partition = %tp, code = partition.error_code, "the leader refused the fetch");
            compio::time::sleep(RETRY_BACKOFF).await;
            continue;
        }
        if let Some(records) = &partition.records {
            append_batches(tp, records.clone()).await?;
        }
        // What the leader says is committed, as far as this copy reaches.
        if let Some(log) = local().log(tp) {
            log.set_committed(Some(partition.high_watermark.min(log.log_end_offset())));
        }
    }
    Ok(())
}

fn fetch_request(tp: &TopicPartition, broker_id: i32, fetch_offset: i64) -> FetchRequest {
    FetchRequest::default()
        .with_replica_id(BrokerId(broker_id))
        .with_max_wait_ms(FETCH_WAIT_MS)
        .with_min_bytes(1)
        .with_max_bytes(FETCH_PARTITION_BYTES)
        .with_session_epoch(-1)
        .with_topics(vec![
            FetchTopic::default()
                .with_topic(TopicName(StrBytes::from_string(tp.topic.clone())))
                .with_partitions(vec![
                    FetchPartition::default()
                        .with_partition(tp.partition)
                        .with_fetch_offset(fetch_offset)
                        .with_partition_max_bytes(FETCH_PARTITION_BYTES),
                ]),
        ])
}

async fn read_response(stream: &mut TcpStream) -> anyhow::Result<Bytes> {
    let BufResult(read, size) = stream.read_exact(vec![0u8; 4]).await;
    read?;
    let size = i32::from_be_bytes(size[..4].try_into().expect("4 bytes"));
    anyhow::ensure!(
        size >= 0 && (size as usize) <= RESPONSE_BYTES_MAX,
        "the leader sent a response of {size} bytes"
    );
    let BufResult(read, body) = stream.read_exact(vec![0u8; size as usize]).await;
    read?;
    Ok(Bytes::from(body))
}

/// Appends every whole batch in `records` (a fetch may end inside one).
async fn append_batches(tp: &TopicPartition, mut records: Bytes) -> anyhow::Result<()> {
    // Bounded: each round consumes one whole batch or stops.
    while let Some(header) = BatchHeader::parse(&records) {
        let total = header.total_bytes();
        if header.batch_length <= 0 || total > records.len() {
            break;
        }
        let batch = BytesMut::from(&records[..total]);
        records.advance(total);
        let Some(log) = local().log(tp) else {
            anyhow::bail!("the partition closed");
        };
        if let Err(e) = log.append_replicated(batch, crate::model::now_ms()).await {
            if e.code == ErrorCode::OffsetOutOfRange {
                // Divergent history after a leader change: truncation is not built yet.
                warn!(partition = %tp, "cannot follow: {}", e.message);
            }
            anyhow::bail!("replica append failed: {}", e.message);
        }
    }
    Ok(())
}
