//! TxnOffsetCommit: offsets committed in the producer's transaction, sent
//! to the group's coordinator. Partitions are checked here as OffsetCommit
//! checks them; the transaction is verified at its coordinator (the group's
//! offsets partition must be in it, KIP-890; from version 5 with
//! `transaction.version` 2 it joins it here, for the producer sends no
//! AddOffsetsToTxn), and the group's coordinator
//! checks the member and generation (KIP-447) and keeps the offsets pending
//! until the transaction's marker.

use bytes::Bytes;
use kafka_protocol::messages::txn_offset_commit_response::{
    TxnOffsetCommitResponsePartition, TxnOffsetCommitResponseTopic,
};
use kafka_protocol::messages::{TxnOffsetCommitRequest, TxnOffsetCommitResponse};

use super::offset_commit::{AskedOffset, answered, check_offsets};
use super::{Malformed, RequestHeader, Response, check_names, decode, encode_response};
use crate::group::{self, CommitRequest};
use crate::model::ErrorCode;
use crate::txn;

/// The first version whose producer adds the offsets partition with this
/// request (KIP-890 part 2).
const IMPLICIT_ADD_VERSION: i16 = 5;

pub async fn handle(header: &RequestHeader, body: Bytes) -> Result<Response, Malformed> {
    let request: TxnOffsetCommitRequest = decode(body, header.api_version)?;
    check_names(
        [&*request.transactional_id, &*request.group_id.0, &*request.member_id]
            .into_iter()
            .chain(request.group_instance_id.as_deref()),
    )?;
    check_names(request.topics.iter().map(|t| &*t.name.0))?;
    let asked = request.topics.iter().map(|t| {
        let partitions = t.partitions.iter().map(|p| AskedOffset {
            partition: p.partition_index,
            offset: p.committed_offset,
            leader_epoch: p.committed_leader_epoch,
            metadata: p.committed_metadata.as_ref().map(|m| m.to_string()).unwrap_or_default(),
        });
        (t.name.0.to_string(), partitions.collect())
    });
    let (codes, offsets) = check_offsets(asked);
    let stored = if offsets.is_empty() {
        ErrorCode::None
    } else {
        let commit = CommitRequest {
            member_id: request.member_id.to_string(),
            group_instance_id: request.group_instance_id.as_ref().map(|s| s.to_string()),
            generation: request.generation_id,
            offsets,
        };
        let producer = (request.producer_id.0, request.producer_epoch);
        let group_id = request.group_id.0.to_string();
        let check = txn::TxnCheck::for_request(header.api_version, IMPLICIT_ADD_VERSION);
        match check_in_txn(request.transactional_id.to_string(), producer, &group_id, check).await {
            ErrorCode::None => group::commit_txn(group_id, producer, commit).await,
            // Version 4 added TRANSACTION_ABORTABLE.
            refused => super::abortable_for(refused, header.api_version, 4),
        }
    };
    let mut codes = codes.into_iter();
    let topics = request
        .topics
        .into_iter()
        .map(|topic| {
            let partitions = topic
                .partitions
                .iter()
                .map(|p| {
                    let checked = codes.next().expect("one code per partition");
                    TxnOffsetCommitResponsePartition::default()
                        .with_partition_index(p.partition_index)
                        .with_error_code(answered(header, checked, stored))
                })
                .collect();
            TxnOffsetCommitResponseTopic::default()
                .with_name(topic.name)
                .with_partitions(partitions)
        })
        .collect();
    encode_response(header, &TxnOffsetCommitResponse::default().with_topics(topics))
}

/// KIP-890's check that the group's offsets partition is in the producer's
/// open transaction, or its joining it. The codes are Produce's
/// (`txn::check_in_txn`); a retriable one becomes COORDINATOR_NOT_AVAILABLE,
/// as Kafka's group coordinator turns NOT_ENOUGH_REPLICAS into it.
async fn check_in_txn(
    transactional_id: String,
    producer: (i64, i16),
    group_id: &str,
    check: txn::TxnCheck,
) -> ErrorCode {
    let Some(tp) = group::offsets_partition(group_id) else {
        return ErrorCode::CoordinatorNotAvailable;
    };
    let verified = txn::check_in_txn(transactional_id, producer, vec![tp], check).await;
    match verified.first().copied().unwrap_or(ErrorCode::CoordinatorNotAvailable) {
        ErrorCode::NotEnoughReplicas => ErrorCode::CoordinatorNotAvailable,
        other => other,
    }
}
