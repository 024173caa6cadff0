//! WriteTxnMarkers (v1): COMMIT or ABORT markers written to this leader's
//! partitions. Kafka's transaction coordinators send it between brokers;
//! here the admin client does, to abort a hanging transaction
//! (`kafka-transactions abort`). A `__consumer_offsets` partition takes its
//! marker through the group coordinator's writer (`txn::write_markers`).

use bytes::Bytes;
use kafka_protocol::messages::write_txn_markers_response::{
    WritableTxnMarkerPartitionResult, WritableTxnMarkerResult, WritableTxnMarkerTopicResult,
};
use kafka_protocol::messages::{WriteTxnMarkersRequest, WriteTxnMarkersResponse};

use super::{Malformed, RequestHeader, Response, check_names, decode, encode_response};
use crate::cluster::shard::local;
use crate::model::{ErrorCode, TopicPartition};
use crate::record::control::Marker;
use crate::txn::{self, TXN_TOPIC};

/// Partitions one request may name, over all its markers.
const PARTITIONS_PER_REQUEST_MAX: usize = 100_000;

pub async fn handle(header: &RequestHeader, body: Bytes) -> Result<Response, Malformed> {
    let request: WriteTxnMarkersRequest = decode(body, header.api_version)?;
    let named: usize = request
        .markers
        .iter()
        .flat_map(|m| &m.topics)
        .map(|t| t.partition_indexes.len())
        .sum();
    if named > PARTITIONS_PER_REQUEST_MAX {
        return Err(Malformed("too many partitions in WriteTxnMarkers"));
    }
    check_names(request.markers.iter().flat_map(|m| &m.topics).map(|t| &*t.name.0))?;
    let metadata = local().metadata();
    let mut results = Vec::with_capacity(request.markers.len());
    for m in &request.markers {
        let asked: Vec<TopicPartition> = m
            .topics
            .iter()
            .flat_map(|t| {
                t.partition_indexes
                    .iter()
                    .map(|p| TopicPartition::new(t.name.0.to_string(), *p))
            })
            .collect();
        // Only the transaction coordinator writes its own partitions.
        let refusal = |tp: &TopicPartition| match metadata.topics.get(&tp.topic) {
            _ if tp.topic == TXN_TOPIC => Some(ErrorCode::InvalidTopicException),
            Some(t) if (0..t.partitions).contains(&tp.partition) => None,
            _ => Some(ErrorCode::UnknownTopicOrPartition),
        };
        let writable: Vec<TopicPartition> = asked.iter().filter(|tp| refusal(tp).is_none()).cloned().collect();
        let marker = if m.transaction_result {
            Marker::Commit
        } else {
            Marker::Abort
        };
        let producer = (m.producer_id.0, m.producer_epoch);
        let mut written = txn::write_markers(&writable, marker, producer, m.coordinator_epoch)
            .await
            .into_iter();
        let mut codes = asked.iter().map(|tp| {
            refusal(tp).unwrap_or_else(|| match written.next().expect("one result per writable partition") {
                Ok(()) => ErrorCode::None,
                Err(e) => e.code,
            })
        });
        let topics = m
            .topics
            .iter()
            .map(|t| {
                let partitions = t
                    .partition_indexes
                    .iter()
                    .map(|p| {
                        let code = codes.next().expect("one code per partition");
                        WritableTxnMarkerPartitionResult::default()
                            .with_partition_index(*p)
                            .with_error_code(code.code())
                    })
                    .collect();
                WritableTxnMarkerTopicResult::default()
                    .with_name(t.name.clone())
                    .with_partitions(partitions)
            })
            .collect();
        results.push(
            WritableTxnMarkerResult::default()
                .with_producer_id(m.producer_id)
                .with_topics(topics),
        );
    }
    encode_response(header, &WriteTxnMarkersResponse::default().with_markers(results))
}
