//! OffsetCommit: partitions are checked here (unknown topic or partition,
//! metadata too large); the rest is stored by the group's coordinator as one batch.

use bytes::Bytes;
use kafka_protocol::messages::offset_commit_response::{OffsetCommitResponsePartition, OffsetCommitResponseTopic};
use kafka_protocol::messages::{OffsetCommitRequest, OffsetCommitResponse};

use super::{Malformed, RequestHeader, Response, check_names, decode, encode_response};
use crate::cluster::shard::local;
use crate::group::{self, CommitRequest};
use crate::model::ErrorCode;

pub async fn handle(header: &RequestHeader, body: Bytes) -> Result<Response, Malformed> {
    let request: OffsetCommitRequest = decode(body, header.api_version)?;
    check_names(
        [&*request.group_id.0, &*request.member_id]
            .into_iter()
            .chain(request.group_instance_id.as_deref()),
    )?;
    let shard = local();
    let metadata = shard.metadata();
    let metadata_max_bytes = shard.config.group.offset_metadata_max_bytes;
    let mut codes = Vec::new();
    let mut offsets = Vec::new();
    for topic in &request.topics {
        let name = topic.name.0.to_string();
        let partitions = metadata.topics.get(&name).map_or(0, |t| t.partitions);
        for p in &topic.partitions {
            let metadata_text = p.committed_metadata.as_ref().map(|m| m.to_string()).unwrap_or_default();
            let code = if !(0..partitions).contains(&p.partition_index) {
                ErrorCode::UnknownTopicOrPartition
            } else if metadata_text.len() > metadata_max_bytes {
                ErrorCode::OffsetMetadataTooLarge
            } else {
                offsets.push((
                    name.clone(),
                    p.partition_index,
                    p.committed_offset,
                    p.committed_leader_epoch,
                    metadata_text,
                ));
                ErrorCode::None
            };
            codes.push(code);
        }
    }
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
                    let code = if checked == ErrorCode::None { stored } else { checked };
                    crate::metrics::record_error(header.api_key as i16, code.code());
                    OffsetCommitResponsePartition::default()
                        .with_partition_index(p.partition_index)
                        .with_error_code(code.code())
                })
                .collect();
            OffsetCommitResponseTopic::default()
                .with_name(topic.name)
                .with_partitions(partitions)
        })
        .collect();
    encode_response(header, &OffsetCommitResponse::default().with_topics(topics))
}
