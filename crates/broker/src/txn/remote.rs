//! What transactions send between brokers in cluster mode: the
//! coordinator's COMMIT and ABORT markers to partitions another broker
//! leads (WriteTxnMarkers), and a leader's KIP-890 check with a
//! coordinator on another broker (AddPartitionsToTxn v4 to verify, v5 to
//! add), as Kafka's brokers send them. On a single node everything is local.

use std::collections::BTreeMap;

use kafka_protocol::messages::add_partitions_to_txn_request::{AddPartitionsToTxnTopic, AddPartitionsToTxnTransaction};
use kafka_protocol::messages::write_txn_markers_request::{WritableTxnMarker, WritableTxnMarkerTopic};
use kafka_protocol::messages::{
    AddPartitionsToTxnRequest, AddPartitionsToTxnResponse, ProducerId, TopicName, TransactionalId,
    WriteTxnMarkersRequest, WriteTxnMarkersResponse,
};
use kafka_protocol::protocol::StrBytes;

use super::coordinator::MARKER_COMMIT_TIMEOUT;
use crate::cluster::{peer, shard};
use crate::group::{self, OFFSETS_TOPIC};
use crate::model::{ErrorCode, TopicPartition};
use crate::record::BatchError;
use crate::record::control::Marker;

/// Appends `marker` to each of `partitions`: one result per partition, in
/// order (the coordinator's, and WriteTxnMarkers'). Partitions this broker
/// leads get theirs here (`write_local_markers`); the others in one
/// WriteTxnMarkers per leader.
pub async fn write_markers(
    partitions: &[TopicPartition],
    marker: Marker,
    producer: (i64, i16),
    coordinator_epoch: i32,
) -> Vec<Result<(), BatchError>> {
    let me = shard::local().config.broker_id;
    // No known leader: tried here, which answers NOT_LEADER_OR_FOLLOWER, and retried.
    let leader_of = |tp: &TopicPartition| shard::leader_endpoint(&tp.topic, tp.partition).map_or(me, |(l, _, _)| l);
    let mut by_leader: BTreeMap<i32, Vec<usize>> = BTreeMap::new();
    for (i, tp) in partitions.iter().enumerate() {
        by_leader.entry(leader_of(tp)).or_default().push(i);
    }
    let sends = by_leader.iter().map(|(leader, indexes)| {
        let tps: Vec<TopicPartition> = indexes.iter().map(|i| partitions[*i].clone()).collect();
        async move {
            match *leader == me {
                true => write_local_markers(&tps, marker, producer, coordinator_epoch).await,
                false => send_markers(*leader, &tps, marker, producer, coordinator_epoch).await,
            }
        }
    });
    let answered = futures_util::future::join_all(sends).await;
    let mut results: Vec<Option<Result<(), BatchError>>> = (0..partitions.len()).map(|_| None).collect();
    for (indexes, answers) in by_leader.values().zip(answered) {
        assert_eq!(indexes.len(), answers.len(), "one answer per partition sent");
        for (i, answer) in indexes.iter().zip(answers) {
            results[*i] = Some(answer);
        }
    }
    results
        .into_iter()
        .map(|r| r.expect("every partition answered"))
        .collect()
}

/// The markers of partitions this broker leads. A `__consumer_offsets`
/// partition gets its marker through the group coordinator's writer, which
/// commits or discards the transaction's offsets with it; the others
/// straight from their owner shards.
async fn write_local_markers(
    partitions: &[TopicPartition],
    marker: Marker,
    producer: (i64, i16),
    coordinator_epoch: i32,
) -> Vec<Result<(), BatchError>> {
    let is_offsets = |tp: &TopicPartition| tp.topic == OFFSETS_TOPIC;
    let (offsets, data): (Vec<TopicPartition>, Vec<TopicPartition>) = partitions.iter().cloned().partition(is_offsets);
    let data = shard::append_markers(data, marker, producer, coordinator_epoch, MARKER_COMMIT_TIMEOUT);
    let offsets = futures_util::future::join_all(
        offsets
            .iter()
            .map(|tp| group::write_txn_marker(tp.partition, producer, marker, coordinator_epoch)),
    );
    let (data, offsets) = futures_util::join!(data, offsets);
    let (mut data, mut offsets) = (data.into_iter(), offsets.into_iter());
    partitions
        .iter()
        .map(|tp| match is_offsets(tp) {
            true => offsets
                .next()
                .expect("one result per offsets partition")
                .map_err(|code| BatchError {
                    code,
                    message: format!("{OFFSETS_TOPIC} marker: {code:?}"),
                }),
            false => data.next().expect("one result per partition"),
        })
        .collect()
}

/// One WriteTxnMarkers (v1) to `leader` for `partitions`.
async fn send_markers(
    leader: i32,
    partitions: &[TopicPartition],
    marker: Marker,
    producer: (i64, i16),
    coordinator_epoch: i32,
) -> Vec<Result<(), BatchError>> {
    let request = WriteTxnMarkersRequest::default().with_markers(vec![
        WritableTxnMarker::default()
            .with_producer_id(ProducerId(producer.0))
            .with_producer_epoch(producer.1)
            .with_transaction_result(marker == Marker::Commit)
            .with_coordinator_epoch(coordinator_epoch)
            .with_topics(
                by_topic(partitions)
                    .into_iter()
                    .map(|(topic, ps)| {
                        WritableTxnMarkerTopic::default()
                            .with_name(topic_name(topic))
                            .with_partition_indexes(ps)
                    })
                    .collect(),
            ),
    ]);
    let response: WriteTxnMarkersResponse = match peer::call(leader, &request, 1).await {
        Ok(response) => response,
        Err(e) => {
            let message = format!("WriteTxnMarkers to broker {leader}: {e:#}");
            let failed = BatchError {
                code: ErrorCode::NotLeaderOrFollower,
                message,
            };
            return vec![Err(failed); partitions.len()];
        }
    };
    let codes: BTreeMap<(String, i32), i16> = response
        .markers
        .iter()
        .flat_map(|m| &m.topics)
        .flat_map(|t| {
            t.partitions
                .iter()
                .map(|p| ((t.name.0.to_string(), p.partition_index), p.error_code))
        })
        .collect();
    partitions
        .iter()
        .map(|tp| match codes.get(&(tp.topic.clone(), tp.partition)) {
            Some(0) => Ok(()),
            Some(code) => Err(BatchError {
                code: ErrorCode::from_code(*code).unwrap_or(ErrorCode::UnknownServerError),
                message: format!("broker {leader} refused the marker of {tp}: error {code}"),
            }),
            None => Err(BatchError {
                code: ErrorCode::UnknownServerError,
                message: format!("broker {leader} did not answer for {tp}"),
            }),
        })
        .collect()
}

/// KIP-890's check at a coordinator on `broker`: AddPartitionsToTxn v4 with
/// verify_only, or v5 adding; one code per partition as that coordinator
/// answers them.
pub async fn check(
    broker: i32,
    transactional_id: &str,
    producer: (i64, i16),
    partitions: &[TopicPartition],
    check: super::TxnCheck,
) -> Result<Vec<ErrorCode>, ErrorCode> {
    let verify_only = check == super::TxnCheck::Verify;
    let transaction = AddPartitionsToTxnTransaction::default()
        .with_transactional_id(TransactionalId(StrBytes::from_string(transactional_id.to_string())))
        .with_producer_id(ProducerId(producer.0))
        .with_producer_epoch(producer.1)
        .with_verify_only(verify_only)
        .with_topics(
            by_topic(partitions)
                .into_iter()
                .map(|(topic, ps)| {
                    AddPartitionsToTxnTopic::default()
                        .with_name(topic_name(topic))
                        .with_partitions(ps)
                })
                .collect(),
        );
    let request = AddPartitionsToTxnRequest::default().with_transactions(vec![transaction]);
    let version = if verify_only { 4 } else { 5 };
    let response: AddPartitionsToTxnResponse = peer::call(broker, &request, version)
        .await
        .map_err(|_| ErrorCode::CoordinatorNotAvailable)?;
    if response.error_code != 0 {
        return Err(ErrorCode::from_code(response.error_code).unwrap_or(ErrorCode::UnknownServerError));
    }
    let codes: BTreeMap<(String, i32), i16> = response
        .results_by_transaction
        .iter()
        .flat_map(|t| &t.topic_results)
        .flat_map(|t| {
            t.results_by_partition
                .iter()
                .map(|p| ((t.name.0.to_string(), p.partition_index), p.partition_error_code))
        })
        .collect();
    Ok(partitions
        .iter()
        .map(|tp| match codes.get(&(tp.topic.clone(), tp.partition)) {
            Some(code) => ErrorCode::from_code(*code).unwrap_or(ErrorCode::UnknownServerError),
            None => ErrorCode::CoordinatorNotAvailable,
        })
        .collect())
}

/// The partitions grouped by topic, in first-seen order.
fn by_topic(partitions: &[TopicPartition]) -> Vec<(&str, Vec<i32>)> {
    let mut topics: Vec<(&str, Vec<i32>)> = Vec::new();
    for tp in partitions {
        match topics.iter_mut().find(|(t, _)| *t == tp.topic) {
            Some((_, ps)) => ps.push(tp.partition),
            None => topics.push((&tp.topic, vec![tp.partition])),
        }
    }
    topics
}

fn topic_name(topic: &str) -> TopicName {
    TopicName(StrBytes::from_string(topic.to_string()))
}
