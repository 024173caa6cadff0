//! ConsumerGroupHeartbeat (KIP-848): joins, heartbeats, leaves, and carries
//! the broker-computed assignment, by topic id.

use bytes::Bytes;
use kafka_protocol::messages::consumer_group_heartbeat_response::{Assignment, TopicPartitions};
use kafka_protocol::messages::{ConsumerGroupHeartbeatRequest, ConsumerGroupHeartbeatResponse};

use super::{Malformed, RequestHeader, Response, check_names, decode, encode_response, str_bytes};
use crate::cluster::shard::local;
use crate::group::{self, consumer};
use crate::model::ErrorCode;

pub async fn handle(header: &RequestHeader, body: Bytes) -> Result<Response, Malformed> {
    let request: ConsumerGroupHeartbeatRequest = decode(body, header.api_version)?;
    check_names(
        [&*request.group_id.0, &*request.member_id]
            .into_iter()
            .chain(request.instance_id.as_deref())
            .chain(request.rack_id.as_deref())
            .chain(request.server_assignor.as_deref())
            .chain(request.subscribed_topic_names.iter().flatten().map(|t| &*t.0)),
    )?;
    let shard = local();
    let metadata = shard.metadata();
    let heartbeat_interval_ms = shard.config.group.consumer_heartbeat_interval_ms;
    let mut response = ConsumerGroupHeartbeatResponse::default().with_heartbeat_interval_ms(heartbeat_interval_ms);
    if request.subscribed_topic_regex.as_ref().is_some_and(|r| !r.is_empty()) {
        response.error_code = ErrorCode::InvalidRequest.code();
        response.error_message = Some(str_bytes(
            "regular-expression subscriptions are not supported by Sluice",
        ));
        return encode_response(header, &response);
    }
    let owned = request.topic_partitions.as_ref().map(|topics| {
        topics
            .iter()
            .filter_map(|t| {
                let topic = metadata.topics.values().find(|m| m.id == t.topic_id)?;
                Some((topic.name.clone(), t.partitions.iter().copied().collect()))
            })
            .collect()
    });
    // v0 lets the broker name a joining member; v1 members name themselves.
    let member_id = match request.member_id.as_str() {
        "" if request.member_epoch == 0 => uuid::Uuid::new_v4().to_string(),
        id => id.to_string(),
    };
    let heartbeat = consumer::HeartbeatRequest {
        member_id,
        member_epoch: request.member_epoch,
        instance_id: request.instance_id.as_ref().map(|s| s.to_string()),
        rack_id: request.rack_id.as_ref().map(|s| s.to_string()),
        client_id: header.client_id.clone().unwrap_or_default(),
        client_host: header.client_host.to_string(),
        rebalance_timeout_ms: request.rebalance_timeout_ms,
        subscribed_topics: request
            .subscribed_topic_names
            .as_ref()
            .map(|names| names.iter().map(|n| n.0.to_string()).collect()),
        server_assignor: request.server_assignor.as_ref().map(|s| s.to_string()),
        owned,
    };
    match group::consumer_heartbeat(request.group_id.0.to_string(), heartbeat).await {
        Ok(result) => {
            response.member_id = Some(str_bytes(result.member_id));
            response.member_epoch = result.member_epoch;
            response.assignment = result.assignment.map(|assignment| {
                Assignment::default().with_topic_partitions(
                    assignment
                        .into_iter()
                        .filter_map(|(topic, partitions)| {
                            let id = metadata.topics.get(&topic)?.id;
                            Some(
                                TopicPartitions::default()
                                    .with_topic_id(id)
                                    .with_partitions(partitions.into_iter().collect()),
                            )
                        })
                        .collect(),
                )
            });
        }
        Err((code, message)) => {
            response.error_code = code.code();
            response.error_message = (!message.is_empty()).then(|| str_bytes(message));
        }
    }
    encode_response(header, &response)
}
