//! OffsetCommit: partitions are checked here (unknown topic or partition,
//! metadata too large); the rest is stored by the group's coordinator as one batch.

use bytes::Bytes;
use kafka_protocol::messages::offset_commit_response::{OffsetCommitResponsePartition, OffsetCommitResponseTopic};
use kafka_protocol::messages::{OffsetCommitRequest, OffsetCommitResponse};

use super::{Malformed, RequestHeader, Response, check_names, decode, encode_response};
use crate::cluster::shard::local;
use crate::group::{self, CommitRequest, Offsets};
use crate::model::ErrorCode;

pub async fn handle(header: &RequestHeader, body: Bytes) -> Result<Response, Malformed> {
    let request: OffsetCommitRequest = decode(body, header.api_version)?;
    check_names(
        [&*request.group_id.0, &*request.member_id]
            .into_iter()
            .chain(request.group_instance_id.as_deref()),
    )?;
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
            generation: request.generation_id_or_member_epoch,
            offsets,
        };
        group::commit(request.group_id.0.to_string(), commit).await
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
                    OffsetCommitResponsePartition::default()
                        .with_partition_index(p.partition_index)
                        .with_error_code(answered(header, checked, stored))
                })
                .collect();
            OffsetCommitResponseTopic::default()
                .with_name(topic.name)
                .with_partitions(partitions)
        })
        .collect();
    encode_response(header, &OffsetCommitResponse::default().with_topics(topics))
}

/// One partition's offset as a commit request gives it.
pub(super) struct AskedOffset {
    pub partition: i32,
    pub offset: i64,
    pub leader_epoch: i32,
    pub metadata: String,
}

/// Checks each partition of an OffsetCommit or TxnOffsetCommit, as Kafka
/// does before storing anything: unknown topic or partition, metadata too
/// large. Returns one code per partition in request order, and the offsets
/// that passed.
pub(super) fn check_offsets(topics: impl Iterator<Item = (String, Vec<AskedOffset>)>) -> (Vec<ErrorCode>, Offsets) {
    let shard = local();
    let metadata = shard.metadata();
    let metadata_max_bytes = shard.config.group.offset_metadata_max_bytes;
    let mut codes = Vec::new();
    let mut offsets = Vec::new();
    for (name, asked) in topics {
        let partitions = metadata.topics.get(&name).map_or(0, |t| t.partitions);
        for p in asked {
            let code = if !(0..partitions).contains(&p.partition) {
                ErrorCode::UnknownTopicOrPartition
            } else if p.metadata.len() > metadata_max_bytes {
                ErrorCode::OffsetMetadataTooLarge
            } else {
                offsets.push((name.clone(), p.partition, p.offset, p.leader_epoch, p.metadata));
                ErrorCode::None
            };
            codes.push(code);
        }
    }
    (codes, offsets)
}

/// The code a partition of a commit is answered: its own check's, or, if it
/// passed, the store's. Counted in the error metrics.
pub(super) fn answered(header: &RequestHeader, checked: ErrorCode, stored: ErrorCode) -> i16 {
    let code = if checked == ErrorCode::None { stored } else { checked };
    crate::metrics::record_error(header.api_key as i16, code.code());
    code.code()
}
