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
    let prepared = request
        .topics
        .iter()
        .flat_map(|topic| {
            topic.partitions.iter().map(|p| {
                let target = p.replicas.as_ref().map(|r| r.iter().map(|b| b.0).collect());
                reassignment(&metadata, &topic.name.0, p.partition_index, target, allow_rf_change)
            })
        })
        .collect();
    let mut outcomes = controller::propose_prepared(prepared).await.into_iter();
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

/// The record that moves `topic`-`partition` to `target` (or cancels its move).
fn reassignment(
    metadata: &Metadata,
    topic: &str,
    partition: i32,
    target: Option<Vec<i32>>,
    allow_rf_change: bool,
) -> Result<Record, ApiError> {
    let Some(t) = metadata.topic_with_partition(topic, partition) else {
        return Err(ApiError::new(
            ErrorCode::UnknownTopicOrPartition,
            format!("{topic}-{partition} does not exist"),
        ));
    };
    let Some(placement) = t.assignment.get(partition as usize) else {
        return Err(ApiError::new(
            ErrorCode::InvalidReplicaAssignment,
            "this broker is not in cluster mode: its partitions cannot move",
        ));
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
    Ok(Record::Reassign {
        topic: topic.to_string(),
        id: t.id,
        partition,
        target,
    })
}
