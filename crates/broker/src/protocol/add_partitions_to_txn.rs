//! AddPartitionsToTxn. Versions 0 to 3 are a client's, one transaction per
//! request: the partitions join the producer's open transaction at its
//! coordinator. Versions 4 and 5 are a partition leader's, batched over
//! transactions: with verify_only, KIP-890's check that the partitions are
//! in each transaction already; without, the partitions of a version 2
//! producer joining its transaction (`txn::remote::check` sends both).

use bytes::Bytes;
use kafka_protocol::messages::add_partitions_to_txn_response::{
    AddPartitionsToTxnPartitionResult, AddPartitionsToTxnResult, AddPartitionsToTxnTopicResult,
};
use kafka_protocol::messages::{AddPartitionsToTxnRequest, AddPartitionsToTxnResponse};

use super::{Malformed, RequestHeader, Response, check_names, decode, encode_response};
use crate::cluster::shard::local;
use crate::model::{ErrorCode, TopicPartition, is_internal_topic};
use crate::txn;

/// Partitions one request may add; Kafka has no such bound, but a
/// transaction over more is not a client's.
const PARTITIONS_PER_REQUEST_MAX: usize = 100_000;

/// Transactions one broker's request may carry.
const TRANSACTIONS_PER_REQUEST_MAX: usize = 10_000;

pub async fn handle(header: &RequestHeader, body: Bytes) -> Result<Response, Malformed> {
    let request: AddPartitionsToTxnRequest = decode(body, header.api_version)?;
    if header.api_version >= 4 {
        return handle_batched(header, request).await;
    }
    check_names(std::iter::once(&**request.v3_and_below_transactional_id))?;
    check_names(request.v3_and_below_topics.iter().map(|t| &*t.name.0))?;
    let asked: Vec<TopicPartition> = request
        .v3_and_below_topics
        .iter()
        .flat_map(|t| {
            t.partitions
                .iter()
                .map(|p| TopicPartition::new(t.name.0.to_string(), *p))
        })
        .collect();
    if asked.len() > PARTITIONS_PER_REQUEST_MAX {
        return Err(Malformed("too many partitions in AddPartitionsToTxn"));
    }
    // Kafka checks every partition first: an unknown one fails it, and the
    // rest are not attempted. Internal topics are refused as Produce refuses
    // them (their coordinators are their one writers; offsets join a
    // transaction through AddOffsetsToTxn).
    let metadata = local().metadata();
    let refusal = |tp: &TopicPartition| {
        if is_internal_topic(&tp.topic) {
            return Some(ErrorCode::InvalidTopicException);
        }
        let exists = metadata
            .topics
            .get(&tp.topic)
            .is_some_and(|t| (0..t.partitions).contains(&tp.partition));
        (!exists).then_some(ErrorCode::UnknownTopicOrPartition)
    };
    let errors: Vec<ErrorCode> = if asked.iter().any(|tp| refusal(tp).is_some()) {
        asked
            .iter()
            .map(|tp| refusal(tp).unwrap_or(ErrorCode::OperationNotAttempted))
            .collect()
    } else {
        let producer = (request.v3_and_below_producer_id.0, request.v3_and_below_producer_epoch);
        let id = request.v3_and_below_transactional_id.to_string();
        let code = match txn::add_partitions(id, producer, asked.clone(), txn::state::TV_KEEP_EPOCH).await {
            Ok(()) => ErrorCode::None,
            // Version 2 added PRODUCER_FENCED.
            Err(code) => super::fenced_for(code, header.api_version, 2),
        };
        vec![code; asked.len()]
    };
    let mut errors = errors.into_iter();
    let results = request
        .v3_and_below_topics
        .iter()
        .map(|t| {
            let partitions = t
                .partitions
                .iter()
                .map(|p| {
                    let code = errors.next().expect("one error per partition");
                    AddPartitionsToTxnPartitionResult::default()
                        .with_partition_index(*p)
                        .with_partition_error_code(code.code())
                })
                .collect();
            AddPartitionsToTxnTopicResult::default()
                .with_name(t.name.clone())
                .with_results_by_partition(partitions)
        })
        .collect();
    encode_response(
        header,
        &AddPartitionsToTxnResponse::default().with_results_by_topic_v3_and_below(results),
    )
}

/// Versions 4 and 5: each transaction verified (verify_only) or added at
/// this broker, its coordinator; the codes are the coordinator's own.
async fn handle_batched(header: &RequestHeader, request: AddPartitionsToTxnRequest) -> Result<Response, Malformed> {
    if request.transactions.len() > TRANSACTIONS_PER_REQUEST_MAX {
        return Err(Malformed("too many transactions in AddPartitionsToTxn"));
    }
    let asked: usize = request
        .transactions
        .iter()
        .flat_map(|t| &t.topics)
        .map(|t| t.partitions.len())
        .sum();
    if asked > PARTITIONS_PER_REQUEST_MAX {
        return Err(Malformed("too many partitions in AddPartitionsToTxn"));
    }
    check_names(request.transactions.iter().map(|t| &**t.transactional_id))?;
    check_names(request.transactions.iter().flat_map(|t| &t.topics).map(|t| &*t.name.0))?;
    let mut results = Vec::with_capacity(request.transactions.len());
    for t in &request.transactions {
        let partitions: Vec<TopicPartition> = t
            .topics
            .iter()
            .flat_map(|topic| {
                topic
                    .partitions
                    .iter()
                    .map(|p| TopicPartition::new(topic.name.0.to_string(), *p))
            })
            .collect();
        let producer = (t.producer_id.0, t.producer_epoch);
        let id = t.transactional_id.to_string();
        let check = match t.verify_only {
            true => txn::TxnCheck::Verify,
            false => txn::TxnCheck::Add,
        };
        let codes = txn::check_here(id, producer, partitions.clone(), check).await;
        let codes = codes.unwrap_or_else(|code| vec![code; partitions.len()]);
        let mut codes = codes.into_iter();
        let topic_results = t
            .topics
            .iter()
            .map(|topic| {
                let partitions = topic
                    .partitions
                    .iter()
                    .map(|p| {
                        let code = codes.next().expect("one code per partition");
                        AddPartitionsToTxnPartitionResult::default()
                            .with_partition_index(*p)
                            .with_partition_error_code(code.code())
                    })
                    .collect();
                AddPartitionsToTxnTopicResult::default()
                    .with_name(topic.name.clone())
                    .with_results_by_partition(partitions)
            })
            .collect();
        results.push(
            AddPartitionsToTxnResult::default()
                .with_transactional_id(t.transactional_id.clone())
                .with_topic_results(topic_results),
        );
    }
    encode_response(
        header,
        &AddPartitionsToTxnResponse::default().with_results_by_transaction(results),
    )
}
