//! OffsetFetch: one group (v0–7) or many (v8+); a null topic list means every
//! partition the group has committed. `require_stable` (v7+) makes a
//! partition with a transaction's pending offset UNSTABLE_OFFSET_COMMIT.

use bytes::Bytes;
use kafka_protocol::messages::offset_fetch_response::{
    OffsetFetchResponseGroup, OffsetFetchResponsePartition, OffsetFetchResponsePartitions, OffsetFetchResponseTopic,
    OffsetFetchResponseTopics,
};
use kafka_protocol::messages::{GroupId, OffsetFetchRequest, OffsetFetchResponse, TopicName};

use super::{Malformed, RequestHeader, Response, check_names, decode, encode_response, str_bytes};
use crate::group::{self, CommittedOffset};

type Wanted = Option<Vec<(String, Vec<i32>)>>;

/// The committed offsets grouped by topic, in first-seen order.
fn by_topic(offsets: Vec<CommittedOffset>) -> Vec<(String, Vec<CommittedOffset>)> {
    let mut topics: Vec<(String, Vec<CommittedOffset>)> = Vec::new();
    for o in offsets {
        match topics.iter_mut().find(|(t, _)| *t == o.topic) {
            Some((_, list)) => list.push(o),
            None => topics.push((o.topic.clone(), vec![o])),
        }
    }
    topics
}

fn metadata_of(o: &CommittedOffset) -> Option<kafka_protocol::protocol::StrBytes> {
    Some(str_bytes(o.metadata.clone()))
}

pub async fn handle(header: &RequestHeader, body: Bytes) -> Result<Response, Malformed> {
    let request: OffsetFetchRequest = decode(body, header.api_version)?;
    check_names(
        std::iter::once(&*request.group_id.0).chain(
            request
                .groups
                .iter()
                .flat_map(|g| std::iter::once(&*g.group_id.0).chain(g.member_id.as_deref())),
        ),
    )?;
    let version = header.api_version;
    let epoch = |o: &CommittedOffset| if version >= 5 { o.leader_epoch } else { -1 };
    if version >= 8 {
        let mut groups = Vec::new();
        for g in &request.groups {
            let wanted: Wanted = g.topics.as_ref().map(|topics| {
                topics
                    .iter()
                    .map(|t| (t.name.0.to_string(), t.partition_indexes.clone()))
                    .collect()
            });
            let mut group = OffsetFetchResponseGroup::default().with_group_id(g.group_id.clone());
            match group::fetch_offsets(g.group_id.0.to_string(), wanted, request.require_stable).await {
                Ok(offsets) => {
                    group.topics = by_topic(offsets)
                        .into_iter()
                        .map(|(topic, list)| {
                            let partitions = list
                                .iter()
                                .map(|o| {
                                    OffsetFetchResponsePartitions::default()
                                        .with_partition_index(o.partition)
                                        .with_committed_offset(o.offset)
                                        .with_committed_leader_epoch(epoch(o))
                                        .with_metadata(metadata_of(o))
                                        .with_error_code(o.error.code())
                                })
                                .collect();
                            OffsetFetchResponseTopics::default()
                                .with_name(TopicName(str_bytes(topic)))
                                .with_partitions(partitions)
                        })
                        .collect();
                }
                Err(code) => group.error_code = code.code(),
            }
            groups.push(group);
        }
        return encode_response(header, &OffsetFetchResponse::default().with_groups(groups));
    }
    let wanted: Wanted = request.topics.as_ref().map(|topics| {
        topics
            .iter()
            .map(|t| (t.name.0.to_string(), t.partition_indexes.clone()))
            .collect()
    });
    let group_id: GroupId = request.group_id.clone();
    let mut response = OffsetFetchResponse::default();
    match group::fetch_offsets(group_id.0.to_string(), wanted.clone(), request.require_stable).await {
        Ok(offsets) => {
            response.topics = by_topic(offsets)
                .into_iter()
                .map(|(topic, list)| {
                    let partitions = list
                        .iter()
                        .map(|o| {
                            OffsetFetchResponsePartition::default()
                                .with_partition_index(o.partition)
                                .with_committed_offset(o.offset)
                                .with_committed_leader_epoch(epoch(o))
                                .with_metadata(metadata_of(o))
                                .with_error_code(o.error.code())
                        })
                        .collect();
                    OffsetFetchResponseTopic::default()
                        .with_name(TopicName(str_bytes(topic)))
                        .with_partitions(partitions)
                })
                .collect();
        }
        Err(code) if version >= 2 => response.error_code = code.code(),
        Err(code) => {
            // v0–1 have no top-level error: it goes on every requested partition.
            response.topics = wanted
                .unwrap_or_default()
                .into_iter()
                .map(|(topic, partitions)| {
                    OffsetFetchResponseTopic::default()
                        .with_name(TopicName(str_bytes(topic)))
                        .with_partitions(
                            partitions
                                .into_iter()
                                .map(|p| {
                                    OffsetFetchResponsePartition::default()
                                        .with_partition_index(p)
                                        .with_committed_offset(-1)
                                        .with_metadata(Some(str_bytes("")))
                                        .with_error_code(code.code())
                                })
                                .collect(),
                        )
                })
                .collect();
        }
    }
    encode_response(header, &response)
}
