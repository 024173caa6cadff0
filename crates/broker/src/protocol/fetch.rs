//! Fetch: requests decode with the generated codec; responses are framed by
//! hand so that record bytes stay in the segment files and reach the socket
//! as `Part::File` (spliced by `net`), never through a user-space buffer.
//!
//! Fetch sessions (KIP-227) are declined: a request to open one gets session
//! id 0, which tells clients to keep sending full fetches.

use std::time::{Duration, Instant};

use bytes::{BufMut, Bytes, BytesMut};
use kafka_protocol::messages::FetchRequest;
use uuid::Uuid;

use super::wire::{put_array_len, put_str, put_uvarint};
use super::{Malformed, Part, RequestHeader, Response, decode};
use crate::cluster::shard::ReadSpec;
use crate::cluster::shard::{self, local};
use crate::model::{ErrorCode, TopicPartition};
use crate::storage::{FileSlice, Reader};

/// Kafka caps a consumer's wait at the request timeout; so do we, to bound waits.
const MAX_WAIT_MS_MAX: i32 = 60_000;
/// Kafka's broker-side `fetch.max.bytes` default: the most one response carries.
const FETCH_MAX_BYTES: u64 = 57_671_680;
/// Partitions one Fetch may name; more is a malformed request.
const PARTITIONS_PER_FETCH_MAX: usize = 100_000;

struct WantedPartition {
    topic_index: usize,
    tp: Option<TopicPartition>,
    partition: i32,
    fetch_offset: i64,
    max_bytes: u64,
    /// The leader epoch the client knows (KIP-320), -1 for none.
    current_leader_epoch: i32,
    /// An error known before reading (unknown topic id, ...).
    error: Option<ErrorCode>,
}

struct TopicKey {
    name: String,
    id: Uuid,
}

struct PartitionOutcome {
    error: ErrorCode,
    /// KIP-951: the leader (id, epoch) to move to after NOT_LEADER_OR_FOLLOWER.
    current_leader: Option<(i32, i32)>,
    high_watermark: i64,
    log_start_offset: i64,
    slice: Option<FileSlice>,
}

pub async fn handle(header: &RequestHeader, body: Bytes) -> Result<Response, Malformed> {
    let request: FetchRequest = decode(body, header.api_version)?;
    let version = header.api_version;
    if let Some(error) = session_error(&request) {
        return Ok(encode(header, error, &[], &[], &[], &[]));
    }
    let (topics, wanted) = resolve(&request, version)?;
    let deadline = Instant::now() + Duration::from_millis(request.max_wait_ms.clamp(0, MAX_WAIT_MS_MAX) as u64);
    let response_max_bytes = if request.max_bytes <= 0 {
        FETCH_MAX_BYTES
    } else {
        (request.max_bytes as u64).min(FETCH_MAX_BYTES)
    };
    let min_bytes = request.min_bytes.max(0) as u64;
    // A follower replica (Fetch v15 moved its id into replica_state).
    let replica_id = if version >= 15 {
        request.replica_state.replica_id.0
    } else {
        request.replica_id.0
    };
    let replica = (replica_id >= 0).then_some(replica_id);
    // Bounded: each round either returns or waits until data arrives or the deadline passes.
    loop {
        let mut outcomes = read_all(&wanted, response_max_bytes, replica).await;
        let bytes: u64 = outcomes.iter().filter_map(|o| o.slice.as_ref()).map(|s| s.bytes).sum();
        let any_error = outcomes.iter().any(|o| o.error != ErrorCode::None);
        if bytes >= min_bytes.max(1)
            || any_error
            || Instant::now() >= deadline
            || wanted.is_empty()
            || local().is_stopping()
        {
            // Only a refused partition names a leader: no metadata lookup otherwise.
            let endpoints = if version >= 16 && any_error {
                point_to_leaders(&topics, &wanted, &mut outcomes)
            } else {
                Vec::new()
            };
            return Ok(encode(header, ErrorCode::None, &topics, &wanted, &outcomes, &endpoints));
        }
        wait_any(&wanted, deadline, replica).await;
    }
}

/// KIP-951: partitions refused because this broker does not lead them (or the
/// client's leader epoch is stale) name the current leader; returns the
/// endpoints of those leaders for the response's `NodeEndpoints`.
fn point_to_leaders(
    topics: &[TopicKey],
    wanted: &[WantedPartition],
    outcomes: &mut [PartitionOutcome],
) -> Vec<(i32, String, u16)> {
    let metadata = local().metadata();
    let mut endpoints: Vec<(i32, String, u16)> = Vec::new();
    for (w, o) in wanted.iter().zip(outcomes.iter_mut()) {
        if !matches!(o.error, ErrorCode::NotLeaderOrFollower | ErrorCode::FencedLeaderEpoch) {
            continue;
        }
        let name = &topics[w.topic_index].name;
        if let Some((leader, epoch, endpoint)) = metadata.current_leader(name, w.partition) {
            o.current_leader = Some((leader, epoch));
            if !endpoints.iter().any(|(id, _, _)| *id == leader) {
                endpoints.push((leader, endpoint.host.clone(), endpoint.port));
            }
        }
    }
    endpoints
}

fn session_error(request: &FetchRequest) -> Option<ErrorCode> {
    match (request.session_id, request.session_epoch) {
        (_, -1) | (0, 0) => None,
        (0, _) => Some(ErrorCode::InvalidFetchSessionEpoch),
        _ => Some(ErrorCode::FetchSessionIdNotFound),
    }
}

fn resolve(request: &FetchRequest, version: i16) -> Result<(Vec<TopicKey>, Vec<WantedPartition>), Malformed> {
    let metadata = local().metadata();
    let mut topics = Vec::with_capacity(request.topics.len());
    let mut wanted = Vec::new();
    for (topic_index, topic) in request.topics.iter().enumerate() {
        let (name, known) = if version >= 13 {
            match metadata.topic_by_id(topic.topic_id) {
                Some(t) => (t.name.clone(), Some(t)),
                None => (String::new(), None),
            }
        } else {
            let name = topic.topic.0.to_string();
            let known = metadata.topics.get(&name);
            (name, known)
        };
        let unknown = if version >= 13 {
            ErrorCode::UnknownTopicId
        } else {
            ErrorCode::UnknownTopicOrPartition
        };
        for p in &topic.partitions {
            if wanted.len() >= PARTITIONS_PER_FETCH_MAX {
                return Err(Malformed("too many partitions in one fetch"));
            }
            let error = match known {
                None => Some(unknown),
                Some(t) if !(0..t.partitions).contains(&p.partition) => Some(ErrorCode::UnknownTopicOrPartition),
                Some(_) => None,
            };
            wanted.push(WantedPartition {
                topic_index,
                tp: error.is_none().then(|| TopicPartition::new(name.clone(), p.partition)),
                partition: p.partition,
                fetch_offset: p.fetch_offset,
                max_bytes: p.partition_max_bytes.max(0) as u64,
                current_leader_epoch: if version >= 9 {
                    p.current_leader_epoch
                } else {
                    shard::NO_LEADER_EPOCH
                },
                error,
            });
        }
        topics.push(TopicKey {
            name,
            id: topic.topic_id,
        });
    }
    Ok((topics, wanted))
}

/// Reads every partition at once (one task per owner shard), then trims to
/// the response's byte budget in request order. Trimming is free: a slice is
/// only a file range.
async fn read_all(wanted: &[WantedPartition], response_max_bytes: u64, replica: Option<i32>) -> Vec<PartitionOutcome> {
    // Partitions refused before reading keep their error; the rest are read.
    let specs: Vec<ReadSpec> = wanted
        .iter()
        .filter(|w| w.error.is_none())
        .filter_map(|w| {
            Some(ReadSpec {
                tp: w.tp.clone()?,
                offset: w.fetch_offset,
                max_bytes: w.max_bytes,
                current_leader_epoch: w.current_leader_epoch,
            })
        })
        .collect();
    let mut reads = shard::read_many(specs, replica).await.into_iter();
    let mut budget = response_max_bytes;
    let mut first_data = true;
    let outcomes: Vec<PartitionOutcome> = wanted
        .iter()
        .map(|w| {
            let result = match (w.error, &w.tp) {
                (None, Some(_)) => reads.next().expect("one read per readable partition"),
                (error, _) => Err(error.unwrap_or(ErrorCode::UnknownTopicOrPartition)),
            };
            match result {
                Ok(read) => {
                    let slice = read.slice.and_then(|mut s| {
                        if !first_data {
                            s.bytes = s.bytes.min(budget);
                        }
                        first_data = false;
                        budget = budget.saturating_sub(s.bytes);
                        (s.bytes > 0).then_some(s)
                    });
                    PartitionOutcome {
                        error: ErrorCode::None,
                        current_leader: None,
                        high_watermark: read.high_watermark,
                        log_start_offset: read.log_start_offset,
                        slice,
                    }
                }
                Err(error) => PartitionOutcome {
                    error,
                    current_leader: None,
                    high_watermark: -1,
                    log_start_offset: -1,
                    slice: None,
                },
            }
        })
        .collect();
    assert!(reads.next().is_none(), "every read result is used");
    outcomes
}

/// Waits until any requested partition has data past its fetch offset, or the deadline.
async fn wait_any(wanted: &[WantedPartition], deadline: Instant, replica: Option<i32>) {
    let reader = if replica.is_some() {
        Reader::Replica
    } else {
        Reader::Consumer
    };
    let parts: Vec<(TopicPartition, i64)> = wanted
        .iter()
        .filter_map(|w| Some((w.tp.clone()?, w.fetch_offset)))
        .collect();
    if parts.is_empty() {
        compio::time::sleep_until(deadline).await;
        return;
    }
    shard::wait_for_any(parts, deadline, reader).await;
}

/// Frames the response; records are file parts between user-space parts.
fn encode(
    header: &RequestHeader,
    top_error: ErrorCode,
    topics: &[TopicKey],
    wanted: &[WantedPartition],
    outcomes: &[PartitionOutcome],
    node_endpoints: &[(i32, String, u16)],
) -> Response {
    let version = header.api_version;
    let flexible = version >= 12;
    let mut pieces: Vec<PieceBuilder> = Vec::new();
    let mut buf = BytesMut::with_capacity(256);
    buf.put_i32(0); // size, patched below
    buf.put_i32(header.correlation_id);
    if flexible {
        buf.put_u8(0);
    }
    buf.put_i32(0); // throttle_time_ms
    if version >= 7 {
        buf.put_i16(top_error.code());
        buf.put_i32(0); // session_id: sessions are declined
    }
    put_array_len(&mut buf, topics.len(), flexible);
    // `resolve` pushes each topic's partitions together, in topic order, so
    // one pass over `wanted` frames every topic: linear in the request.
    let mut next = 0;
    for (topic_index, topic) in topics.iter().enumerate() {
        if version >= 13 {
            buf.put_slice(topic.id.as_bytes());
        } else {
            put_str(&mut buf, &topic.name, flexible);
        }
        let first = next;
        while next < wanted.len() && wanted[next].topic_index == topic_index {
            next += 1;
        }
        put_array_len(&mut buf, next - first, flexible);
        for i in first..next {
            let (w, o) = (&wanted[i], &outcomes[i]);
            crate::metrics::record_error(header.api_key as i16, o.error.code());
            if let Some(slice) = &o.slice {
                crate::metrics::record_bytes_out(&topic.name, slice.bytes);
            }
            buf.put_i32(w.partition);
            buf.put_i16(o.error.code());
            buf.put_i64(o.high_watermark);
            buf.put_i64(o.high_watermark); // last_stable_offset: no transactions yet
            if version >= 5 {
                buf.put_i64(o.log_start_offset);
            }
            put_array_len_nullable_null(&mut buf, flexible); // aborted_transactions
            if version >= 11 {
                buf.put_i32(-1); // preferred_read_replica
            }
            let record_bytes = o.slice.as_ref().map_or(0, |s| s.bytes);
            if flexible {
                put_uvarint(&mut buf, record_bytes as u32 + 1);
            } else {
                buf.put_i32(record_bytes as i32);
            }
            if let Some(slice) = &o.slice {
                pieces.push(PieceBuilder::Bytes(buf.split()));
                pieces.push(PieceBuilder::File(slice.clone()));
            }
            if flexible {
                put_current_leader(&mut buf, o.current_leader.filter(|_| version >= 16));
            }
        }
        if flexible {
            buf.put_u8(0);
        }
    }
    assert_eq!(next, wanted.len(), "every partition belongs to a topic, in order");
    if flexible {
        put_node_endpoints(&mut buf, if version >= 16 { node_endpoints } else { &[] });
    }
    pieces.push(PieceBuilder::Bytes(buf));
    finish(pieces)
}

/// Frames a response to one topic of `partitions` partitions, each carrying
/// `slice`: the framing alone, without reads or waits, for
/// `benches/hot_paths.rs`.
#[doc(hidden)]
pub fn frame_for_bench(version: i16, partitions: i32, slice: &FileSlice) -> Response {
    let header = RequestHeader {
        api_key: kafka_protocol::messages::ApiKey::Fetch,
        api_version: version,
        correlation_id: 1,
        client_id: None,
        client_host: std::rc::Rc::from("/127.0.0.1"),
    };
    let topics = [TopicKey {
        name: "bench".to_string(),
        id: Uuid::nil(),
    }];
    let wanted: Vec<WantedPartition> = (0..partitions)
        .map(|partition| WantedPartition {
            topic_index: 0,
            tp: None,
            partition,
            fetch_offset: 0,
            max_bytes: slice.bytes,
            current_leader_epoch: -1,
            error: None,
        })
        .collect();
    let outcomes: Vec<PartitionOutcome> = wanted
        .iter()
        .map(|_| PartitionOutcome {
            error: ErrorCode::None,
            current_leader: None,
            high_watermark: 1,
            log_start_offset: 0,
            slice: Some(slice.clone()),
        })
        .collect();
    encode(&header, ErrorCode::None, &topics, &wanted, &outcomes, &[])
}

/// A partition's tagged fields: tag 1 is CurrentLeader (KIP-951).
fn put_current_leader(buf: &mut BytesMut, current_leader: Option<(i32, i32)>) {
    const CURRENT_LEADER_TAG: u32 = 1;
    let Some((leader_id, leader_epoch)) = current_leader else {
        buf.put_u8(0);
        return;
    };
    put_uvarint(buf, 1);
    put_uvarint(buf, CURRENT_LEADER_TAG);
    put_uvarint(buf, 4 + 4 + 1);
    buf.put_i32(leader_id);
    buf.put_i32(leader_epoch);
    buf.put_u8(0);
}

/// The response's tagged fields: tag 0 is NodeEndpoints (KIP-951).
fn put_node_endpoints(buf: &mut BytesMut, endpoints: &[(i32, String, u16)]) {
    const NODE_ENDPOINTS_TAG: u32 = 0;
    if endpoints.is_empty() {
        buf.put_u8(0);
        return;
    }
    let mut field = BytesMut::new();
    put_array_len(&mut field, endpoints.len(), true);
    for (id, host, port) in endpoints {
        field.put_i32(*id);
        put_str(&mut field, host, true);
        field.put_i32(i32::from(*port));
        field.put_u8(0); // rack: null
        field.put_u8(0); // tagged fields
    }
    put_uvarint(buf, 1);
    put_uvarint(buf, NODE_ENDPOINTS_TAG);
    put_uvarint(buf, field.len() as u32);
    buf.put_slice(&field);
}

enum PieceBuilder {
    Bytes(BytesMut),
    File(FileSlice),
}

fn put_array_len_nullable_null(buf: &mut BytesMut, flexible: bool) {
    if flexible { buf.put_u8(0) } else { buf.put_i32(-1) }
}

fn finish(mut pieces: Vec<PieceBuilder>) -> Response {
    let total: u64 = pieces
        .iter()
        .map(|p| match p {
            PieceBuilder::Bytes(b) => b.len() as u64,
            PieceBuilder::File(f) => f.bytes,
        })
        .sum();
    if let Some(PieceBuilder::Bytes(first)) = pieces.first_mut() {
        first[0..4].copy_from_slice(&((total - 4) as i32).to_be_bytes());
    }
    let parts = pieces
        .into_iter()
        .filter_map(|p| match p {
            PieceBuilder::Bytes(b) if b.is_empty() => None,
            PieceBuilder::Bytes(b) => Some(Part::Bytes(b.freeze())),
            PieceBuilder::File(f) => Some(Part::File(f)),
        })
        .collect();
    Response { parts }
}

#[cfg(test)]
mod tests {
    use super::*;
    use kafka_protocol::messages::{FetchResponse, ResponseHeader};
    use kafka_protocol::protocol::{Decodable, HeaderVersion};

    /// A response that refuses one partition, framed by hand and decoded
    /// with the generated codec.
    fn refused(version: i16) -> FetchResponse {
        let header = RequestHeader {
            api_key: kafka_protocol::messages::ApiKey::Fetch,
            api_version: version,
            correlation_id: 9,
            client_id: None,
            client_host: std::rc::Rc::from("/127.0.0.1"),
        };
        let topics = [TopicKey {
            name: "t".to_string(),
            id: Uuid::from_u128(7),
        }];
        let wanted = [WantedPartition {
            topic_index: 0,
            tp: None,
            partition: 3,
            fetch_offset: 0,
            max_bytes: 100,
            current_leader_epoch: -1,
            error: None,
        }];
        let outcomes = [PartitionOutcome {
            error: ErrorCode::NotLeaderOrFollower,
            current_leader: Some((2, 5)),
            high_watermark: -1,
            log_start_offset: -1,
            slice: None,
        }];
        let endpoints = [(2, "node-2".to_string(), 9093u16)];
        let response = encode(&header, ErrorCode::None, &topics, &wanted, &outcomes, &endpoints);
        let mut bytes = BytesMut::new();
        for part in response.parts {
            match part {
                Part::Bytes(b) => bytes.extend_from_slice(&b),
                Part::File(_) => panic!("no records in this response"),
            }
        }
        let mut body = bytes.freeze().slice(4..);
        let header_version = FetchResponse::header_version(version);
        assert_eq!(
            ResponseHeader::decode(&mut body, header_version)
                .unwrap()
                .correlation_id,
            9
        );
        let decoded = FetchResponse::decode(&mut body, version).unwrap();
        assert!(body.is_empty(), "v{version}: {} bytes left over", body.len());
        decoded
    }

    #[test]
    fn refusals_name_the_current_leader_from_v16() {
        let decoded = refused(16);
        let p = &decoded.responses[0].partitions[0];
        assert_eq!(p.error_code, ErrorCode::NotLeaderOrFollower.code());
        assert_eq!((p.current_leader.leader_id.0, p.current_leader.leader_epoch), (2, 5));
        let e = &decoded.node_endpoints[0];
        assert_eq!((e.node_id.0, e.host.as_str(), e.port), (2, "node-2", 9093));
    }

    #[test]
    fn older_versions_carry_no_leader_fields() {
        for version in [4, 6, 7, 11, 12, 15] {
            let decoded = refused(version);
            let p = &decoded.responses[0].partitions[0];
            assert_eq!(p.error_code, ErrorCode::NotLeaderOrFollower.code());
            assert!(decoded.node_endpoints.is_empty());
        }
    }
}
