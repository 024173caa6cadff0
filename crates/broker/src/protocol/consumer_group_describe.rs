//! ConsumerGroupDescribe (KIP-848): epochs, assignor, and each member's
//! current and target assignment.

use bytes::Bytes;
use kafka_protocol::messages::consumer_group_describe_response::{Assignment, DescribedGroup, Member, TopicPartitions};
use kafka_protocol::messages::{ConsumerGroupDescribeRequest, ConsumerGroupDescribeResponse, TopicName};

use super::{
    Malformed, RequestHeader, Response, authorized_operations, check_names, decode, encode_response, str_bytes,
};
use crate::cluster::metadata::Metadata;
use crate::cluster::shard::local;
use crate::group::{self, consumer};

/// KIP-1099: 1 for a member using the consumer protocol.
const MEMBER_TYPE_CONSUMER: i8 = 1;

fn assignment(metadata: &Metadata, a: &consumer::Assignment) -> Assignment {
    Assignment::default().with_topic_partitions(
        a.iter()
            .filter_map(|(topic, partitions)| {
                let id = metadata.topics.get(topic)?.id;
                Some(
                    TopicPartitions::default()
                        .with_topic_id(id)
                        .with_topic_name(TopicName(str_bytes(topic.clone())))
                        .with_partitions(partitions.iter().copied().collect()),
                )
            })
            .collect(),
    )
}

pub async fn handle(header: &RequestHeader, body: Bytes) -> Result<Response, Malformed> {
    let request: ConsumerGroupDescribeRequest = decode(body, header.api_version)?;
    check_names(request.group_ids.iter().map(|g| &*g.0))?;
    let metadata = local().metadata();
    let mut groups = Vec::new();
    for group_id in request.group_ids {
        let mut described = DescribedGroup::default()
            .with_group_id(group_id.clone())
            .with_authorized_operations(authorized_operations::group(request.include_authorized_operations));
        match group::consumer_describe(group_id.0.to_string()).await {
            Ok(d) => {
                described.group_state = str_bytes(d.state);
                described.group_epoch = d.epoch;
                described.assignment_epoch = d.assignment_epoch;
                described.assignor_name = str_bytes(d.assignor);
                described.members = d
                    .members
                    .iter()
                    .map(|m| {
                        let mut member = Member::default()
                            .with_member_id(str_bytes(m.member.id.clone()))
                            .with_instance_id(m.member.instance_id.clone().map(str_bytes))
                            .with_rack_id(m.member.rack_id.clone().map(str_bytes))
                            .with_member_epoch(m.member.epoch)
                            .with_client_id(str_bytes(m.member.client_id.clone()))
                            .with_client_host(str_bytes(m.member.client_host.clone()))
                            .with_subscribed_topic_names(
                                m.member
                                    .subscribed
                                    .iter()
                                    .map(|t| TopicName(str_bytes(t.clone())))
                                    .collect(),
                            )
                            .with_assignment(assignment(&metadata, &m.member.assigned))
                            .with_target_assignment(assignment(&metadata, &m.target));
                        if header.api_version >= 1 {
                            member.member_type = MEMBER_TYPE_CONSUMER;
                        }
                        member
                    })
                    .collect();
            }
            Err(code) => {
                described.error_code = code.code();
                described.error_message = Some(str_bytes(format!("group '{}' is not a consumer group", group_id.0)));
            }
        }
        groups.push(described);
    }
    encode_response(header, &ConsumerGroupDescribeResponse::default().with_groups(groups))
}
