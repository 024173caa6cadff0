//! Fetch: requests decode with the generated codec; responses are framed by
//! hand so that record bytes stay in the segment files and reach the socket
//! as `Part::File` (spliced by `net`), never through a user-space buffer.
//! Fetch sessions (KIP-227) are in `fetch_session`.

use std::cell::RefCell;
use std::rc::Rc;
use std::time::{Duration, Instant};

use bytes::{BufMut, Bytes, BytesMut};
use kafka_protocol::messages::FetchRequest;
use uuid::Uuid;

use super::fetch_session::{CachedPartition, INVALID_SESSION_ID, Observed, Plan, SessionCache, TopicRef};
use super::wire::{put_array_len, put_str, put_uvarint};
use super::{Malformed, Part, RequestHeader, Response, decode};
use crate::cluster::shard::{self, Fetcher, ReadSpec, local};
use crate::model::{ErrorCode, TopicPartition};
use crate::storage::{AbortedRange, FileSlice, Reader};

/// Fetch's `isolation_level` for read_committed (0 is read_uncommitted).
const ISOLATION_READ_COMMITTED: i8 = 1;

/// Kafka caps a consumer's wait at the request timeout; so do we, to bound waits.
const MAX_WAIT_MS_MAX: i32 = 60_000;
/// Kafka's broker-side `fetch.max.bytes` default: the most one response carries.
const FETCH_MAX_BYTES: u64 = 57_671_680;
/// Partitions one Fetch may name; more is a malformed request.
const PARTITIONS_PER_FETCH_MAX: usize = 100_000;

thread_local! {
    /// This shard's fetch sessions, made on its first Fetch.
    static SESSIONS: RefCell<Option<SessionCache>> = const { RefCell::new(None) };
}

/// Runs `f` on this shard's session cache. Never held across an await.
fn with_sessions<T>(f: impl FnOnce(&mut SessionCache) -> T) -> T {
    SESSIONS.with(|cell| {
        let mut cache = cell.borrow_mut();
        let cache = cache.get_or_insert_with(|| {
            let shard = local();
            let seed = crate::model::now_ms() as u64 ^ ((shard.id as u64) << 32);
            SessionCache::new(
                shard.id,
                shard.config.shards,
                shard.config.max_incremental_fetch_session_cache_slots,
                seed,
            )
        });
        let result = f(cache);
        let counts = cache.counts;
        crate::metrics::record_fetch_sessions(crate::metrics::FetchSessionMetrics {
            sessions: cache.len(),
            partitions: cache.cached_partitions(),
            opened: counts.opened,
            evicted: counts.evicted,
            incremental_fetches: counts.incremental,
        });
        result
    })
}

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

#[derive(Clone)]
struct TopicKey {
    name: String,
    id: Uuid,
}

struct PartitionOutcome {
    error: ErrorCode,
    /// KIP-951: the leader (id, epoch) to move to after NOT_LEADER_OR_FOLLOWER.
    current_leader: Option<(i32, i32)>,
    high_watermark: i64,
    last_stable_offset: i64,
    log_start_offset: i64,
    slice: Option<FileSlice>,
    /// read_committed: the aborted transactions whose records may be in `slice`.
    aborted: Option<Vec<AbortedRange>>,
}

impl PartitionOutcome {
    fn observed(&self) -> Observed {
        Observed {
            has_records: self.slice.as_ref().is_some_and(|s| s.bytes > 0),
            failed: self.error != ErrorCode::None,
            high_watermark: self.high_watermark,
            log_start_offset: self.log_start_offset,
        }
    }
}

pub async fn handle(header: &RequestHeader, body: Bytes) -> Result<Response, Malformed> {
    let request: FetchRequest = decode(body, header.api_version)?;
    let version = header.api_version;
    // A follower replica (Fetch v15 moved its id into replica_state).
    let replica_id = if version >= 15 {
        request.replica_state.replica_id.0
    } else {
        request.replica_id.0
    };
    let replica = (replica_id >= 0).then_some(replica_id);
    let fetcher = match replica {
        Some(id) => Fetcher::Replica(id),
        None if request.isolation_level == ISOLATION_READ_COMMITTED => Fetcher::Consumer(Reader::Committed),
        None => Fetcher::Consumer(Reader::Consumer),
    };
    let requested = requested_partitions(&request, version)?;
    let plan = if version >= 7 {
        let forgotten = forgotten_partitions(&request, version);
        with_sessions(|c| {
            let now_ms = crate::model::steady_ms();
            c.begin(
                request.session_id,
                request.session_epoch,
                version >= 13,
                &requested,
                &forgotten,
                now_ms,
            )
        })
    } else {
        Plan::Sessionless
    };
    let asked = match &plan {
        Plan::Refused(error) => return Ok(encode(header, *error, INVALID_SESSION_ID, &[], &[], &[], &[])),
        Plan::Incremental { partitions, .. } => partitions,
        Plan::Sessionless | Plan::Full => &requested,
    };
    let (topics, wanted) = resolve(asked, version);
    let outcomes = fetch(&request, &wanted, fetcher).await;
    // What the answer found, for the session only: a sessionless fetch skips it.
    let observed = || -> Vec<Observed> { outcomes.iter().map(PartitionOutcome::observed).collect() };
    let now_ms = crate::model::steady_ms();
    let (session_id, include) = match plan {
        Plan::Incremental { id, epoch, partitions } => {
            match with_sessions(|c| c.finish(id, epoch, &partitions, &observed())) {
                Ok(include) => (id, Some(include)),
                Err(error) => return Ok(encode(header, error, id, &[], &[], &[], &[])),
            }
        }
        Plan::Full => {
            let answered = answered(requested, &observed());
            (
                with_sessions(|c| c.open(replica.is_some(), version >= 13, answered, now_ms)),
                None,
            )
        }
        Plan::Sessionless | Plan::Refused(_) => (INVALID_SESSION_ID, None),
    };
    let (topics, wanted, mut outcomes) = match include {
        Some(include) => retain(topics, wanted, outcomes, &include),
        None => (topics, wanted, outcomes),
    };
    // Only a refused partition names a leader: no metadata lookup otherwise.
    let any_error = outcomes.iter().any(|o| o.error != ErrorCode::None);
    let endpoints = if version >= 16 && any_error {
        point_to_leaders(&topics, &wanted, &mut outcomes)
    } else {
        Vec::new()
    };
    Ok(encode(
        header,
        ErrorCode::None,
        session_id,
        &topics,
        &wanted,
        &outcomes,
        &endpoints,
    ))
}

/// Reads `wanted` until the request's `min_bytes` are there, a partition
/// fails, or `max_wait_ms` passes.
async fn fetch(request: &FetchRequest, wanted: &[WantedPartition], fetcher: Fetcher) -> Vec<PartitionOutcome> {
    let deadline = Instant::now() + Duration::from_millis(request.max_wait_ms.clamp(0, MAX_WAIT_MS_MAX) as u64);
    let response_max_bytes = if request.max_bytes <= 0 {
        FETCH_MAX_BYTES
    } else {
        (request.max_bytes as u64).min(FETCH_MAX_BYTES)
    };
    let min_bytes = request.min_bytes.max(0) as u64;
    // Bounded: each round either returns or waits until data arrives or the deadline passes.
    loop {
        let outcomes = read_all(wanted, response_max_bytes, fetcher).await;
        let bytes: u64 = outcomes.iter().filter_map(|o| o.slice.as_ref()).map(|s| s.bytes).sum();
        let any_error = outcomes.iter().any(|o| o.error != ErrorCode::None);
        if bytes >= min_bytes.max(1)
            || any_error
            || Instant::now() >= deadline
            || wanted.is_empty()
            || local().is_stopping()
        {
            return outcomes;
        }
        wait_any(wanted, deadline, fetcher.reader()).await;
    }
}

/// A full fetch's partitions with what its answer told the client: a new session's contents.
fn answered(mut requested: Vec<CachedPartition>, observed: &[Observed]) -> Vec<CachedPartition> {
    assert_eq!(requested.len(), observed.len(), "one outcome per requested partition");
    for (cached, seen) in requested.iter_mut().zip(observed) {
        cached.high_watermark = if seen.failed { -1 } else { seen.high_watermark };
        cached.log_start_offset = seen.log_start_offset;
    }
    requested
}

/// Keeps the partitions an incremental answer carries; a topic left with
/// none is left out too.
fn retain(
    topics: Vec<TopicKey>,
    wanted: Vec<WantedPartition>,
    outcomes: Vec<PartitionOutcome>,
    include: &[bool],
) -> (Vec<TopicKey>, Vec<WantedPartition>, Vec<PartitionOutcome>) {
    assert_eq!(wanted.len(), include.len(), "one decision per partition");
    let mut kept_topics: Vec<TopicKey> = Vec::new();
    let mut kept_wanted = Vec::new();
    let mut kept_outcomes = Vec::new();
    let mut last_topic = None;
    for ((mut w, o), keep) in wanted.into_iter().zip(outcomes).zip(include) {
        if !keep {
            continue;
        }
        if last_topic != Some(w.topic_index) {
            last_topic = Some(w.topic_index);
            kept_topics.push(topics[w.topic_index].clone());
        }
        w.topic_index = kept_topics.len() - 1;
        kept_wanted.push(w);
        kept_outcomes.push(o);
    }
    (kept_topics, kept_wanted, kept_outcomes)
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

/// The partitions a request names, in its order; a session caches them as they are.
fn requested_partitions(request: &FetchRequest, version: i16) -> Result<Vec<CachedPartition>, Malformed> {
    let mut requested = Vec::new();
    for topic in &request.topics {
        let topic_ref = topic_ref(version, &topic.topic.0, topic.topic_id);
        for p in &topic.partitions {
            if requested.len() >= PARTITIONS_PER_FETCH_MAX {
                return Err(Malformed("too many partitions in one fetch"));
            }
            requested.push(CachedPartition {
                topic: topic_ref.clone(),
                partition: p.partition,
                fetch_offset: p.fetch_offset,
                max_bytes: p.partition_max_bytes.max(0) as u64,
                current_leader_epoch: if version >= 9 {
                    p.current_leader_epoch
                } else {
                    shard::NO_LEADER_EPOCH
                },
                high_watermark: -1,
                log_start_offset: -1,
            });
        }
    }
    Ok(requested)
}

/// The partitions an incremental request drops from its session.
fn forgotten_partitions(request: &FetchRequest, version: i16) -> Vec<(TopicRef, i32)> {
    let mut forgotten = Vec::new();
    for topic in &request.forgotten_topics_data {
        let topic_ref = topic_ref(version, &topic.topic.0, topic.topic_id);
        let room = PARTITIONS_PER_FETCH_MAX.saturating_sub(forgotten.len());
        forgotten.extend(topic.partitions.iter().take(room).map(|&p| (topic_ref.clone(), p)));
    }
    forgotten
}

fn topic_ref(version: i16, name: &str, id: Uuid) -> TopicRef {
    if version >= 13 {
        TopicRef::Id(id)
    } else {
        TopicRef::Name(Rc::from(name))
    }
}

/// Looks the partitions up in the metadata. Consecutive partitions of one
/// topic share a topic entry, as in Kafka's responses (a session's order can
/// name a topic more than once).
fn resolve(asked: &[CachedPartition], version: i16) -> (Vec<TopicKey>, Vec<WantedPartition>) {
    let metadata = local().metadata();
    let mut topics: Vec<TopicKey> = Vec::new();
    let mut wanted = Vec::with_capacity(asked.len());
    let mut known = None;
    let mut last: Option<&TopicRef> = None;
    for p in asked {
        if last != Some(&p.topic) {
            last = Some(&p.topic);
            let (key, found) = match &p.topic {
                TopicRef::Id(id) => match metadata.topic_by_id(*id) {
                    Some(t) => (
                        TopicKey {
                            name: t.name.clone(),
                            id: *id,
                        },
                        Some(t),
                    ),
                    None => (
                        TopicKey {
                            name: String::new(),
                            id: *id,
                        },
                        None,
                    ),
                },
                TopicRef::Name(name) => (
                    TopicKey {
                        name: name.to_string(),
                        id: Uuid::nil(),
                    },
                    metadata.topics.get(&**name),
                ),
            };
            topics.push(key);
            known = found;
        }
        let unknown = if version >= 13 {
            ErrorCode::UnknownTopicId
        } else {
            ErrorCode::UnknownTopicOrPartition
        };
        let error = match known {
            None => Some(unknown),
            Some(t) if !(0..t.partitions).contains(&p.partition) => Some(ErrorCode::UnknownTopicOrPartition),
            Some(_) => None,
        };
        let topic_index = topics.len() - 1;
        wanted.push(WantedPartition {
            topic_index,
            tp: error
                .is_none()
                .then(|| TopicPartition::new(topics[topic_index].name.clone(), p.partition)),
            partition: p.partition,
            fetch_offset: p.fetch_offset,
            max_bytes: p.max_bytes,
            current_leader_epoch: p.current_leader_epoch,
            error,
        });
    }
    (topics, wanted)
}

/// Reads every partition at once (one task per owner shard), then trims to
/// the response's byte budget in request order. Trimming is free: a slice is
/// only a file range.
async fn read_all(wanted: &[WantedPartition], response_max_bytes: u64, fetcher: Fetcher) -> Vec<PartitionOutcome> {
    // Partitions refused before reading keep their error; the rest are read.
    let specs: Vec<ReadSpec> = wanted
        .iter()
        .filter(|w| w.error.is_none())
        .filter_map(|w| {
            Some(ReadSpec {
                tp: w.tp.clone()?,
                offset: w.fetch_offset,
                // No partition reads past the response's budget: the first with data
                // returns min(its limit, the budget), or its first batch whole if that
                // is larger (KIP-74); the rest are trimmed to what is left below.
                max_bytes: w.max_bytes.min(response_max_bytes),
                current_leader_epoch: w.current_leader_epoch,
            })
        })
        .collect();
    let mut reads = shard::read_many(specs, fetcher).await.into_iter();
    let committed = fetcher == Fetcher::Consumer(Reader::Committed);
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
                        last_stable_offset: read.last_stable_offset,
                        log_start_offset: read.log_start_offset,
                        slice,
                        aborted: committed.then_some(read.aborted),
                    }
                }
                Err(error) => PartitionOutcome {
                    error,
                    current_leader: None,
                    high_watermark: -1,
                    last_stable_offset: -1,
                    log_start_offset: -1,
                    slice: None,
                    aborted: None,
                },
            }
        })
        .collect();
    assert!(reads.next().is_none(), "every read result is used");
    outcomes
}

/// Waits until any requested partition has data past its fetch offset, or the deadline.
async fn wait_any(wanted: &[WantedPartition], deadline: Instant, reader: Reader) {
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
    session_id: i32,
    topics: &[TopicKey],
    wanted: &[WantedPartition],
    outcomes: &[PartitionOutcome],
    node_endpoints: &[(i32, String, u16)],
) -> Response {
    let version = header.api_version;
    let flexible = version >= 12;
    crate::metrics::record_error(header.api_key as i16, top_error.code());
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
        buf.put_i32(session_id);
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
            buf.put_i64(o.last_stable_offset);
            if version >= 5 {
                buf.put_i64(o.log_start_offset);
            }
            put_aborted(&mut buf, o.aborted.as_deref(), flexible);
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
            last_stable_offset: 1,
            log_start_offset: 0,
            slice: Some(slice.clone()),
            aborted: None,
        })
        .collect();
    encode(
        &header,
        ErrorCode::None,
        INVALID_SESSION_ID,
        &topics,
        &wanted,
        &outcomes,
        &[],
    )
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

/// `aborted_transactions`: null unless the fetch is read_committed.
fn put_aborted(buf: &mut BytesMut, aborted: Option<&[AbortedRange]>, flexible: bool) {
    let Some(aborted) = aborted else {
        put_array_len_nullable_null(buf, flexible);
        return;
    };
    put_array_len(buf, aborted.len(), flexible);
    for txn in aborted {
        buf.put_i64(txn.producer_id);
        buf.put_i64(txn.first_offset);
        if flexible {
            buf.put_u8(0); // no tagged fields
        }
    }
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
            last_stable_offset: -1,
            log_start_offset: -1,
            slice: None,
            aborted: None,
        }];
        let endpoints = [(2, "node-2".to_string(), 9093u16)];
        let response = encode(
            &header,
            ErrorCode::None,
            INVALID_SESSION_ID,
            &topics,
            &wanted,
            &outcomes,
            &endpoints,
        );
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
