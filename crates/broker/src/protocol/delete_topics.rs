//! DeleteTopics, by name (v1-v5) or by name or id (v6).

use bytes::Bytes;
use kafka_protocol::messages::delete_topics_response::DeletableTopicResult;
use kafka_protocol::messages::{DeleteTopicsRequest, DeleteTopicsResponse, TopicName};
use uuid::Uuid;

use super::{Malformed, RequestHeader, Response, decode, encode_response, str_bytes};
use crate::cluster::controller;
use crate::cluster::shard::local;
use crate::model::ErrorCode;

pub async fn handle(header: &RequestHeader, body: Bytes) -> Result<Response, Malformed> {
    let request: DeleteTopicsRequest = decode(body, header.api_version)?;
    let targets: Vec<(Option<String>, Uuid)> = if header.api_version >= 6 {
        request
            .topics
            .iter()
            .map(|t| (t.name.as_ref().map(|n| n.0.to_string()), t.topic_id))
            .collect()
    } else {
        request
            .topic_names
            .iter()
            .map(|n| (Some(n.0.to_string()), Uuid::nil()))
            .collect()
    };
    let mut results = Vec::with_capacity(targets.len());
    for (name, id) in targets {
        let metadata = local().metadata();
        let resolved = match &name {
            Some(n) => metadata.topics.get(n).map(|t| (t.name.clone(), t.id)),
            None => metadata.topic_by_id(id).map(|t| (t.name.clone(), t.id)),
        };
        let version = header.api_version;
        let mut result = DeletableTopicResult::default().with_name(name.clone().map(|n| TopicName(str_bytes(n))));
        match resolved {
            None => {
                let code = if name.is_none() {
                    ErrorCode::UnknownTopicId
                } else {
                    ErrorCode::UnknownTopicOrPartition
                };
                result.error_code = code.code();
                if version >= 5 {
                    result.error_message = Some(str_bytes("the topic does not exist"));
                }
                if version >= 6 {
                    result.topic_id = id;
                }
            }
            Some((topic, topic_id)) => {
                result.name = Some(TopicName(str_bytes(topic.clone())));
                if version >= 6 {
                    result.topic_id = topic_id;
                }
                if let Err(e) = controller::delete_topic(topic).await {
                    result.error_code = e.code.code();
                    if version >= 5 {
                        result.error_message = Some(str_bytes(e.message));
                    }
                }
            }
        }
        results.push(result);
    }
    encode_response(header, &DeleteTopicsResponse::default().with_responses(results))
}
