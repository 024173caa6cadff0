//! AlterPartitionReassignments (KIP-455): move partitions to other brokers,
//! or cancel a move (null replicas). Each partition becomes a quorum
//! `Reassign` record; the new replicas catch up as followers and the move
//! completes once all of them are in the ISR (watch it with
//! ListPartitionReassignments).

use bytes::Bytes;
use kafka_protocol::messages::alter_partition_reassignments_response::{
    ReassignablePartitionResponse, ReassignableTopicResponse,
};
use kafka_protocol::messages::{AlterPartitionReassignmentsRequest, AlterPartitionReassignmentsResponse};

use super::{Malformed, RequestHeader, Response, decode, encode_response, str_bytes};
use crate::cluster::controller::{self, ApiError};
use crate::cluster::metadata::Metadata;
use crate::cluster::quorum::Record;
use crate::cluster::shard::local;
use crate::model::ErrorCode;

/// Partitions one request may name; more is a malformed request.
const PARTITIONS_MAX: usize = 100_000;

pub async fn handle(header: &RequestHeader, body: Bytes) -> Result<Response, Malformed> {
    let request: AlterPartitionReassignmentsRequest = decode(body, header.api_version)?;
    let allow_rf_change = header.api_version < 1 || request.allow_replication_factor_change;
    let metadata = local().metadata();
    let requested: usize = request.topics.iter().map(|t| t.partitions.len()).sum();
    if requested > PARTITIONS_MAX {
        return Err(Malformed("too many partitions in one AlterPartitionReassignments"));
    }
    let me = local().config.broker_id;
    let prepared: Vec<Result<Option<Record>, ApiError>> = request
        .topics
        .iter()
        .flat_map(|topic| {
            topic.partitions.iter().map(|p| {
                let target = p.replicas.as_ref().map(|r| r.iter().map(|b| b.0).collect());
                reassignment(&metadata, me, &topic.name.0, p.partition_index, target, allow_rf_change)
            })
        })
        .collect();
    // Only the partitions that move become records; the rest already have their answer.
    let needed: Vec<Result<Record, ApiError>> = prepared.iter().filter_map(|p| p.clone().transpose()).collect();
    let mut proposed = controller::propose_prepared(needed).await.into_iter();
    let mut outcomes = prepared.into_iter().map(|p| match p {
        Ok(None) => Ok(()),
        Ok(Some(_)) | Err(_) => proposed.next().expect("one outcome per proposed partition"),
    });
    let responses = request
        .topics
        .into_iter()
        .map(|topic| {
            let partitions = topic
                .partitions
                .iter()
                .map(|p| {
                    let response = ReassignablePartitionResponse::default().with_partition_index(p.partition_index);
                    match outcomes.next().expect("one outcome per partition") {
                        Ok(()) => response,
                        Err(e) => response
                            .with_error_code(e.code.code())
                            .with_error_message(Some(str_bytes(e.message))),
                    }
                })
                .collect();
            ReassignableTopicResponse::default()
                .with_name(topic.name)
                .with_partitions(partitions)
        })
        .collect();
    let response = AlterPartitionReassignmentsResponse::default()
        .with_allow_replication_factor_change(allow_rf_change)
        .with_responses(responses);
    encode_response(header, &response)
}

/// The record that moves `topic`-`partition` to `target` (or cancels its move);
/// `None` when there is nothing to move: a single node's partition asked to
/// stay on that node, which Kafka also accepts.
fn reassignment(
    metadata: &Metadata,
    me: i32,
    topic: &str,
    partition: i32,
    target: Option<Vec<i32>>,
    allow_rf_change: bool,
) -> Result<Option<Record>, ApiError> {
    let Some(t) = metadata.topic_with_partition(topic, partition) else {
        return Err(ApiError::new(
            ErrorCode::UnknownTopicOrPartition,
            format!("{topic}-{partition} does not exist"),
        ));
    };
    let Some(placement) = t.assignment.get(partition as usize) else {
        return match target {
            Some(target) if target == [me] => Ok(None),
            Some(_) => Err(ApiError::new(
                ErrorCode::InvalidReplicaAssignment,
                "this broker is not in cluster mode: its partitions cannot move",
            )),
            None => Err(ApiError::new(
                ErrorCode::NoReassignmentInProgress,
                format!("{topic}-{partition} is not being reassigned"),
            )),
        };
    };
    if let Some(target) = &target
        && !allow_rf_change
        && target.len() != placement.target_replicas().len()
    {
        return Err(ApiError::new(
            ErrorCode::InvalidReplicationFactor,
            format!(
                "{topic}-{partition} has {} replicas; the request may not change that",
                placement.target_replicas().len()
            ),
        ));
    }
    Ok(Some(Record::Reassign {
        topic: topic.to_string(),
        id: t.id,
        partition,
        target,
    }))
}
