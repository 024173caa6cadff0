//! Produce: the hot path. The request is parsed by hand over the borrowed
//! frame, and each partition's records are split off the frame as their own
//! `BytesMut` (no copy) and sent to the owning shard, which patches offsets in
//! place and writes them with io_uring.

use std::ops::Range;

use bytes::BytesMut;
use kafka_protocol::messages::produce_response::{
    LeaderIdAndEpoch, NodeEndpoint, PartitionProduceResponse, TopicProduceResponse,
};
use kafka_protocol::messages::{ApiKey, BrokerId, ProduceResponse, TopicName};

use super::wire::{Malformed, Reader};
use super::{RequestHeader, Response, encode_response, produce_turns, str_bytes};
use crate::cluster::metadata::Metadata;
use crate::cluster::shard::{self, local};
use crate::model::{ErrorCode, TopicPartition, now_ms};
use crate::record::{BatchError, BatchHeader};
use crate::runtime::request_bytes::Charged;
use crate::storage::AppendInfo;
use crate::txn;

/// The first version whose transactional producer adds its partitions to
/// its transaction with its batches (KIP-890 part 2).
const IMPLICIT_ADD_VERSION: i16 = 12;

/// acks=all waits for the ISR at most this long, whatever the request asks.
const ACKS_ALL_TIMEOUT_MS_MAX: i32 = 120_000;

#[derive(Debug, PartialEq, Eq)]
pub struct PartitionData {
    pub partition: i32,
    /// The records field as a range of the request body; `None` if null.
    pub records: Option<Range<usize>>,
}

#[derive(Debug, PartialEq, Eq)]
pub struct TopicData {
    pub name: String,
    pub partitions: Vec<PartitionData>,
}

#[derive(Debug, PartialEq, Eq)]
pub struct ProduceRequestView {
    pub transactional_id: Option<String>,
    pub acks: i16,
    pub timeout_ms: i32,
    pub topics: Vec<TopicData>,
}

/// Parses a Produce request body (v3 and later) without copying any records.
pub fn parse(body: &[u8], version: i16) -> Result<ProduceRequestView, Malformed> {
    let flexible = version >= 9;
    let mut r = Reader::new(body);
    let transactional_id = r.nullable_str(flexible)?.map(str::to_string);
    let acks = r.i16()?;
    let timeout_ms = r.i32()?;
    let topic_count = r.array_len(flexible)?;
    let mut topics = Vec::with_capacity(topic_count.min(64));
    for _ in 0..topic_count {
        let name = r.str(flexible)?.to_string();
        let partition_count = r.array_len(flexible)?;
        let mut partitions = Vec::with_capacity(partition_count.min(64));
        for _ in 0..partition_count {
            let partition = r.i32()?;
            let records = r.nullable_bytes_range(flexible)?;
            if flexible {
                r.skip_tagged_fields()?;
            }
            partitions.push(PartitionData { partition, records });
        }
        if flexible {
            r.skip_tagged_fields()?;
        }
        topics.push(TopicData { name, partitions });
    }
    if flexible {
        r.skip_tagged_fields()?;
    }
    Ok(ProduceRequestView {
        transactional_id,
        acks,
        timeout_ms,
        topics,
    })
}

fn partition_response(
    partition: i32,
    result: Result<AppendInfo, BatchError>,
    version: i16,
) -> PartitionProduceResponse {
    let response = match result {
        Ok(info) => PartitionProduceResponse::default()
            .with_index(partition)
            .with_base_offset(info.base_offset)
            .with_log_append_time_ms(info.log_append_time_ms)
            .with_log_start_offset(info.log_start_offset),
        Err(e) => PartitionProduceResponse::default()
            .with_index(partition)
            .with_error_code(e.code.code())
            .with_base_offset(-1)
            .with_log_append_time_ms(-1)
            .with_log_start_offset(-1)
            .with_error_message(Some(str_bytes(e.message))),
    };
    strip_for_version(response, version)
}

/// Fields newer than the request's version must stay at their defaults.
fn strip_for_version(mut r: PartitionProduceResponse, version: i16) -> PartitionProduceResponse {
    if version < 5 {
        r.log_start_offset = -1;
    }
    if version < 8 {
        r.error_message = None;
    }
    r
}

fn refuse(code: ErrorCode, message: &str) -> Result<AppendInfo, BatchError> {
    Err(BatchError {
        code,
        message: message.to_string(),
    })
}

pub async fn handle(
    header: &RequestHeader,
    mut frame: BytesMut,
    body_start: usize,
    charged: Charged,
) -> Result<Option<Response>, Malformed> {
    let request = parse(&frame[body_start..], header.api_version)?;
    let mut body = frame.split_off(body_start);
    let metadata = local().metadata();
    let now = now_ms();
    let acks_valid = matches!(request.acks, -1..=1);
    let acks = request.acks;
    let timeout = std::time::Duration::from_millis(request.timeout_ms.clamp(0, ACKS_ALL_TIMEOUT_MS_MAX) as u64);
    // Split each partition's records off the body, in order: disjoint, uniquely owned, uncopied.
    // Partitions refused here keep their error; the rest append together.
    let mut consumed = 0;
    let mut refused: Vec<Option<Result<AppendInfo, BatchError>>> = Vec::new();
    let mut specs = Vec::new();
    for topic in &request.topics {
        let topic_meta = metadata.topics.get(&topic.name);
        let internal = crate::model::is_internal_topic(&topic.name);
        for p in &topic.partitions {
            let records = p.records.as_ref().map(|range| {
                let _ = body.split_to(range.start - consumed);
                consumed = range.end;
                body.split_to(range.len())
            });
            let known = topic_meta.is_some_and(|t| (0..t.partitions).contains(&p.partition));
            let refusal = if !acks_valid {
                Some(refuse(ErrorCode::InvalidRequiredAcks, "acks must be -1, 0 or 1"))
            } else if internal {
                Some(refuse(
                    ErrorCode::InvalidTopicException,
                    "cannot append to an internal topic",
                ))
            } else if !known {
                Some(refuse(
                    ErrorCode::UnknownTopicOrPartition,
                    "this server does not host this topic-partition",
                ))
            } else if records.is_none() {
                Some(refuse(ErrorCode::CorruptMessage, "null record set"))
            } else {
                None
            };
            if refusal.is_none() {
                let batch = records.expect("checked above");
                let tp = TopicPartition::new(topic.name.clone(), p.partition);
                specs.push(shard::AppendSpec {
                    tp,
                    batch,
                    unverified_txn: false,
                });
            }
            refused.push(refusal);
        }
    }
    let (specs, txn) = gate_transactional(request.transactional_id.as_deref(), specs, &mut refused);
    // Taken before the first await, so in arrival order.
    let turn = txn
        .as_ref()
        .and_then(|(_, (producer_id, _))| produce_turns::take(*producer_id));
    if let Some(turn) = &turn {
        turn.wait().await;
    }
    let appended = shard::append_many(specs, now, acks).await;
    let appended = match txn {
        None => appended,
        Some(txn) => {
            let check = txn::TxnCheck::for_request(header.api_version, IMPLICIT_ADD_VERSION);
            append_first_batches(txn, check, header.api_version, appended, now, acks).await
        }
    };
    // The batches are written: the producer's next request may append, and
    // the frame no longer counts against queued.max.request.bytes while
    // acks=all waits for the ISR, as Kafka releases a request's buffer once
    // it is handled, before its purgatory.
    drop(turn);
    drop(charged);
    let mut appended = shard::wait_committed_many(appended, timeout).await.into_iter();
    let results: Vec<Result<AppendInfo, BatchError>> = refused
        .into_iter()
        .map(|r| r.unwrap_or_else(|| appended.next().expect("one result per append")))
        .collect();
    assert!(appended.next().is_none(), "every append result is used");
    record_metrics(&request, &results);
    if request.acks == 0 {
        // No response tells an acks=0 producer about a failure; Kafka closes the
        // connection instead, so the client notices and refreshes its metadata.
        if results.iter().any(Result::is_err) {
            return Err(Malformed("acks=0 produce failed; closing the connection as Kafka does"));
        }
        return Ok(None);
    }
    let mut results = results.into_iter();
    let mut leader_hints = LeaderHints::default();
    let responses = request
        .topics
        .into_iter()
        .map(|topic| {
            let partitions = topic
                .partitions
                .iter()
                .map(|p| {
                    let result = results.next().expect("one result per partition");
                    let moved = matches!(&result, Err(e) if e.code == ErrorCode::NotLeaderOrFollower);
                    let mut response = partition_response(p.partition, result, header.api_version);
                    if moved && header.api_version >= 10 {
                        leader_hints.point(&metadata, &mut response, &topic.name);
                    }
                    response
                })
                .collect();
            TopicProduceResponse::default()
                .with_name(TopicName(str_bytes(topic.name)))
                .with_partition_responses(partitions)
        })
        .collect();
    let response = ProduceResponse::default()
        .with_responses(responses)
        .with_node_endpoints(leader_hints.endpoints);
    encode_response(header, &response).map(Some)
}

/// A request's transactional id and producer (id, epoch).
type ProducerTxn = (String, (i64, i16));

/// Transactional batches (KIP-890): the request must name its transactional
/// id and carry one producer, or its transactional batches are refused
/// (their slots in `refused`, which holds `None` for each of `specs`, get
/// the error). The others are marked `unverified_txn`: each is appended
/// only into its producer's transaction already open on its partition, and
/// the first of a transaction there comes back for `append_first_batches`.
/// Returns the specs to append, and the transactional id and producer if
/// any is transactional.
fn gate_transactional(
    transactional_id: Option<&str>,
    specs: Vec<shard::AppendSpec>,
    refused: &mut [Option<Result<AppendInfo, BatchError>>],
) -> (Vec<shard::AppendSpec>, Option<ProducerTxn>) {
    let transactional = |s: &shard::AppendSpec| {
        BatchHeader::parse(&s.batch)
            .filter(|h| h.is_transactional() && !h.is_control() && h.producer_id >= 0)
            .map(|h| (h.producer_id, h.producer_epoch))
    };
    // The common case, no transaction: nothing allocated, one header read per batch.
    let Some(producer) = specs.iter().find_map(transactional) else {
        return (specs, None);
    };
    let producers: Vec<Option<(i64, i16)>> = specs.iter().map(transactional).collect();
    let refusal = match transactional_id {
        None => Some(ErrorCode::TransactionalIdAuthorizationFailed),
        Some(_) if producers.iter().flatten().any(|p| *p != producer) => Some(ErrorCode::InvalidProducerIdMapping),
        Some(_) => None,
    };
    let mut kept = Vec::with_capacity(specs.len());
    let slots = refused.iter_mut().filter(|r| r.is_none());
    for ((mut spec, producer), slot) in specs.into_iter().zip(producers).zip(slots) {
        match (producer, refusal) {
            (Some(_), Some(code)) => *slot = Some(refuse(code, verification_message(code))),
            (Some(_), None) => {
                spec.unverified_txn = true;
                kept.push(spec);
            }
            (None, _) => kept.push(spec),
        }
    }
    let txn = refusal
        .is_none()
        .then(|| (transactional_id.expect("checked").to_string(), producer));
    (kept, txn)
}

/// The batches that opened their producer's transaction on a partition:
/// `check`ed at the coordinator (only these, as Kafka's leaders check only
/// a transaction's first batch), then appended. Results in the order of
/// `appended`, every one `Done`.
async fn append_first_batches(
    txn: ProducerTxn,
    check: txn::TxnCheck,
    api_version: i16,
    appended: Vec<shard::Appending>,
    now: i64,
    acks: i16,
) -> Vec<shard::Appending> {
    let mut results: Vec<Option<Result<shard::Appended, BatchError>>> = Vec::with_capacity(appended.len());
    let mut first = Vec::new();
    let mut first_slots = Vec::new();
    for outcome in appended {
        match outcome {
            shard::Appending::Done(result) => results.push(Some(result)),
            shard::Appending::NotInOpenTxn(mut spec) => {
                spec.unverified_txn = false;
                first_slots.push(results.len());
                first.push(spec);
                results.push(None);
            }
        }
    }
    if !first.is_empty() {
        let (transactional_id, producer) = txn;
        let tps = first.iter().map(|s| s.tp.clone()).collect();
        let verdicts = txn::check_in_txn(transactional_id, producer, tps, check).await;
        assert_eq!(verdicts.len(), first.len(), "one verdict per partition");
        let mut to_append = Vec::with_capacity(first.len());
        let mut append_slots = Vec::with_capacity(first.len());
        for ((spec, verdict), slot) in first.into_iter().zip(verdicts).zip(first_slots) {
            match verdict {
                ErrorCode::None => {
                    to_append.push(spec);
                    append_slots.push(slot);
                }
                code => {
                    // Version 11 added TRANSACTION_ABORTABLE.
                    let code = super::abortable_for(code, api_version, 11);
                    let message = verification_message(code).to_string();
                    results[slot] = Some(Err(BatchError { code, message }));
                }
            }
        }
        let appended = shard::append_many(to_append, now, acks).await;
        for (slot, outcome) in append_slots.into_iter().zip(appended) {
            results[slot] = Some(outcome.done());
        }
    }
    results
        .into_iter()
        .map(|r| shard::Appending::Done(r.expect("every batch has a result")))
        .collect()
}

fn verification_message(code: ErrorCode) -> &'static str {
    match code {
        ErrorCode::TransactionalIdAuthorizationFailed => "transactional records need the request's transactional id",
        ErrorCode::InvalidProducerIdMapping => "the producer id is not this transactional id's",
        ErrorCode::InvalidTxnState | ErrorCode::TransactionAbortable => {
            "the partition was not added to the transaction"
        }
        ErrorCode::InvalidProducerEpoch => "the producer has been fenced by a newer epoch",
        _ => "the transaction coordinator could not verify the transaction; retry",
    }
}

/// KIP-951: a partition refused with NOT_LEADER_OR_FOLLOWER names its current
/// leader, and the response carries that leader's endpoint, so the producer
/// can move without a metadata round trip.
#[derive(Default)]
struct LeaderHints {
    endpoints: Vec<NodeEndpoint>,
}

impl LeaderHints {
    fn point(&mut self, metadata: &Metadata, response: &mut PartitionProduceResponse, topic: &str) {
        let Some((leader, epoch, endpoint)) = metadata.current_leader(topic, response.index) else {
            return;
        };
        response.current_leader = LeaderIdAndEpoch::default()
            .with_leader_id(BrokerId(leader))
            .with_leader_epoch(epoch);
        if !self.endpoints.iter().any(|e| e.node_id.0 == leader) {
            self.endpoints.push(
                NodeEndpoint::default()
                    .with_node_id(BrokerId(leader))
                    .with_host(str_bytes(endpoint.host.clone()))
                    .with_port(endpoint.port as i32),
            );
        }
    }
}

/// Bytes in per topic and error codes, once per partition of the request.
fn record_metrics(request: &ProduceRequestView, results: &[Result<AppendInfo, BatchError>]) {
    let mut outcomes = results.iter();
    for topic in &request.topics {
        for p in &topic.partitions {
            match outcomes.next() {
                Some(Ok(_)) => {
                    let bytes = p.records.as_ref().map_or(0, |r| r.len()) as u64;
                    crate::metrics::record_bytes_in(&topic.name, bytes);
                }
                Some(Err(e)) => crate::metrics::record_error(ApiKey::Produce as i16, e.code.code()),
                None => return,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::BufMut;
    use kafka_protocol::messages::ProduceRequest;
    use kafka_protocol::messages::produce_request::{PartitionProduceData, TopicProduceData};
    use kafka_protocol::protocol::Encodable;

    fn encoded(version: i16) -> BytesMut {
        let request = ProduceRequest::default()
            .with_acks(-1)
            .with_timeout_ms(1500)
            .with_topic_data(vec![
                TopicProduceData::default()
                    .with_name(TopicName(str_bytes("orders")))
                    .with_partition_data(vec![
                        PartitionProduceData::default()
                            .with_index(0)
                            .with_records(Some(bytes::Bytes::from_static(b"AAAA"))),
                        PartitionProduceData::default().with_index(3).with_records(None),
                    ]),
                TopicProduceData::default()
                    .with_name(TopicName(str_bytes("b")))
                    .with_partition_data(vec![
                        PartitionProduceData::default()
                            .with_index(1)
                            .with_records(Some(bytes::Bytes::from_static(b"ZZ"))),
                    ]),
            ]);
        let mut out = BytesMut::new();
        request.encode(&mut out, version).unwrap();
        out
    }

    #[test]
    fn hand_parser_agrees_with_the_generated_codec() {
        for version in 3..=11 {
            let body = encoded(version);
            let view = parse(&body, version).unwrap();
            assert_eq!(view.acks, -1);
            assert_eq!(view.timeout_ms, 1500);
            assert_eq!(view.topics.len(), 2);
            assert_eq!(view.topics[0].name, "orders");
            let r0 = view.topics[0].partitions[0].records.clone().unwrap();
            assert_eq!(&body[r0], b"AAAA", "v{version}");
            assert_eq!(view.topics[0].partitions[1].records, None);
            assert_eq!(view.topics[1].partitions[0].partition, 1);
            let r2 = view.topics[1].partitions[0].records.clone().unwrap();
            assert_eq!(&body[r2], b"ZZ");
        }
    }

    #[test]
    fn truncations_and_lies_are_malformed() {
        for version in [3i16, 9] {
            let body = encoded(version);
            for cut in 0..body.len() {
                assert!(parse(&body[..cut], version).is_err(), "v{version} cut at {cut}");
            }
        }
        let mut lie = BytesMut::new();
        lie.put_i16(-1);
        lie.put_i16(1);
        lie.put_i32(100);
        lie.put_i32(i32::MAX);
        assert!(parse(&lie, 3).is_err());
    }

    proptest::proptest! {
        #[test]
        fn parser_never_panics(bytes in proptest::collection::vec(proptest::num::u8::ANY, 0..200), version in 3i16..=11) {
            let _ = parse(&bytes, version);
        }
    }
}
