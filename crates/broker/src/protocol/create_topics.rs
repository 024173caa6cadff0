//! CreateTopics: partitions, replication factor 1, configs, validate_only.

use std::collections::BTreeMap;

use bytes::Bytes;
use kafka_protocol::messages::create_topics_response::{CreatableTopicConfigs, CreatableTopicResult};
use kafka_protocol::messages::{CreateTopicsRequest, CreateTopicsResponse};

use super::{Malformed, RequestHeader, Response, decode, encode_response, str_bytes};
use crate::cluster::controller::{self, ApiError};
use crate::cluster::shard::local;
use crate::model::ErrorCode;

/// DescribeConfigs' source for a topic override and for a default.
const SOURCE_TOPIC: i8 = 1;
const SOURCE_DEFAULT: i8 = 5;

pub async fn handle(header: &RequestHeader, body: Bytes) -> Result<Response, Malformed> {
    let request: CreateTopicsRequest = decode(body, header.api_version)?;
    let mut results = Vec::with_capacity(request.topics.len());
    for topic in request.topics {
        let name = topic.name.0.to_string();
        let mut result = CreatableTopicResult::default().with_name(topic.name.clone());
        let mut configs = BTreeMap::new();
        for c in &topic.configs {
            if let Some(value) = &c.value {
                configs.insert(c.name.to_string(), value.to_string());
            }
        }
        let outcome = if !topic.assignments.is_empty() {
            check_assignments(&topic.assignments, local().config.broker_id).map(|partitions| (partitions, 1))
        } else {
            Ok((topic.num_partitions, topic.replication_factor))
        };
        let outcome = match outcome {
            Ok((partitions, rf)) => {
                controller::create_topic(name, partitions, rf, configs, request.validate_only).await
            }
            Err(e) => Err(e),
        };
        let version = header.api_version;
        match outcome {
            Ok(created) if version >= 5 => {
                if version >= 7 {
                    result.topic_id = created.id;
                }
                result.num_partitions = created.partitions;
                result.replication_factor = 1;
                result.configs = Some(effective_configs(&created));
            }
            Ok(_) => {}
            Err(e) => {
                result.error_code = e.code.code();
                result.error_message = Some(str_bytes(e.message));
            }
        }
        results.push(result);
    }
    encode_response(header, &CreateTopicsResponse::default().with_topics(results))
}

/// Manual assignments must name every partition once, each on this broker alone.
fn check_assignments(
    assignments: &[kafka_protocol::messages::create_topics_request::CreatableReplicaAssignment],
    broker_id: i32,
) -> Result<i32, ApiError> {
    let mut seen = vec![false; assignments.len()];
    for a in assignments {
        let index = usize::try_from(a.partition_index).ok().filter(|&i| i < seen.len());
        let valid_brokers = a.broker_ids.len() == 1 && a.broker_ids[0].0 == broker_id;
        match index {
            Some(i) if !seen[i] && valid_brokers => seen[i] = true,
            _ => {
                return Err(ApiError::new(
                    ErrorCode::InvalidReplicaAssignment,
                    "replica assignments must cover partitions 0..n once each, on this broker only",
                ));
            }
        }
    }
    Ok(assignments.len() as i32)
}

fn effective_configs(topic: &crate::cluster::metadata::TopicMeta) -> Vec<CreatableTopicConfigs> {
    let shard = local();
    let config = shard.metadata().log_config(&shard.config.log_defaults, topic);
    crate::storage::log_config::TOPIC_CONFIG_KEYS
        .iter()
        .map(|key| {
            let source = if topic.configs.contains_key(key.name) {
                SOURCE_TOPIC
            } else {
                SOURCE_DEFAULT
            };
            CreatableTopicConfigs::default()
                .with_name(str_bytes(key.name))
                .with_value(config.get(key.name).map(str_bytes))
                .with_config_source(source)
        })
        .collect()
}
