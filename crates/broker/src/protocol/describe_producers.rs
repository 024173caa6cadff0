//! DescribeProducers: the producers a partition's leader tracks, with
//! their last sequence and open transaction (what `kafka-transactions
//! describe-producers` and find-hanging show).

use bytes::Bytes;
use kafka_protocol::messages::describe_producers_response::{PartitionResponse, ProducerState, TopicResponse};
use kafka_protocol::messages::{DescribeProducersRequest, DescribeProducersResponse};

use super::{Malformed, RequestHeader, Response, check_names, decode, encode_response};
use crate::cluster::shard::{self, local};
use crate::model::{ErrorCode, TopicPartition};
use crate::storage::producer::ActiveProducer;

/// Partitions one request may ask about.
const PARTITIONS_PER_REQUEST_MAX: usize = 100_000;

pub async fn handle(header: &RequestHeader, body: Bytes) -> Result<Response, Malformed> {
    let request: DescribeProducersRequest = decode(body, header.api_version)?;
    check_names(request.topics.iter().map(|t| &*t.name.0))?;
    let asked: usize = request.topics.iter().map(|t| t.partition_indexes.len()).sum();
    if asked > PARTITIONS_PER_REQUEST_MAX {
        return Err(Malformed("too many partitions in DescribeProducers"));
    }
    let metadata = local().metadata();
    let mut answered: Vec<Option<Result<Vec<ActiveProducer>, ErrorCode>>> = Vec::new();
    let mut lookups = Vec::new();
    for topic in &request.topics {
        let known = metadata.topics.get(&*topic.name.0).map(|t| t.partitions);
        for p in &topic.partition_indexes {
            if known.is_some_and(|n| (0..n).contains(p)) {
                lookups.push(shard::LookupSpec {
                    tp: TopicPartition::new(topic.name.0.to_string(), *p),
                    current_leader_epoch: shard::NO_LEADER_EPOCH,
                    arg: 0,
                });
                answered.push(None);
            } else {
                answered.push(Some(Err(ErrorCode::UnknownTopicOrPartition)));
            }
        }
    }
    let mut looked_up = shard::producers_for(lookups).await.into_iter();
    let mut results = answered
        .into_iter()
        .map(|a| a.unwrap_or_else(|| looked_up.next().expect("one answer per lookup")));
    let topics = request
        .topics
        .iter()
        .map(|topic| {
            let partitions = topic
                .partition_indexes
                .iter()
                .map(|p| {
                    let partition = PartitionResponse::default().with_partition_index(*p);
                    match results.next().expect("one result per partition") {
                        Ok(producers) => partition.with_active_producers(producers.iter().map(state_of).collect()),
                        Err(code) => partition.with_error_code(code.code()),
                    }
                })
                .collect();
            TopicResponse::default()
                .with_name(topic.name.clone())
                .with_partitions(partitions)
        })
        .collect();
    encode_response(header, &DescribeProducersResponse::default().with_topics(topics))
}

fn state_of(p: &ActiveProducer) -> ProducerState {
    ProducerState::default()
        .with_producer_id(p.producer_id.into())
        .with_producer_epoch(i32::from(p.epoch))
        .with_last_sequence(p.last_sequence)
        .with_last_timestamp(p.last_timestamp_ms)
        .with_coordinator_epoch(p.coordinator_epoch)
        .with_current_txn_start_offset(p.txn_first_offset.unwrap_or(-1))
}
