//! Metadata: brokers and topics from this shard's metadata copy; unknown
//! topics are created when `auto.create.topics.enable` allows, as in Kafka.

use std::collections::BTreeMap;
use std::sync::Arc;

use bytes::Bytes;
use kafka_protocol::messages::metadata_response::{
    MetadataResponseBroker, MetadataResponsePartition, MetadataResponseTopic,
};
use kafka_protocol::messages::{BrokerId, MetadataRequest, MetadataResponse, TopicName};
use uuid::Uuid;

use super::{Malformed, RequestHeader, Response, authorized_operations, decode, encode_response, str_bytes};
use crate::cluster::controller;
use crate::cluster::metadata::TopicMeta;
use crate::cluster::shard::local;
use crate::model::ErrorCode;

/// Topics one request may auto-create; the rest get an error to retry later.
const AUTO_CREATE_PER_REQUEST_MAX: usize = 100;

/// How to describe each topic: the request's version, and whether it asked
/// for the topic's authorized operations (v8+).
#[derive(Clone, Copy)]
struct Describe {
    broker_id: i32,
    version: i16,
    operations_asked: bool,
    /// This broker has not heard the metadata quorum for a session timeout
    /// (`quorum::in_contact`): it names no leader for the partitions it led,
    /// so clients look for the new leader elsewhere.
    cut_off: bool,
}

fn topic_entry(topic: &TopicMeta, how: Describe) -> MetadataResponseTopic {
    let Describe { broker_id, version, .. } = how;
    let ids = |v: &[i32]| v.iter().map(|b| BrokerId(*b)).collect::<Vec<_>>();
    let partitions = (0..topic.partitions)
        .map(|p| {
            let mut placement = topic.placement(p, broker_id);
            if how.cut_off && placement.leader == broker_id {
                placement.leader = -1;
            }
            MetadataResponsePartition::default()
                .with_error_code(if placement.leader < 0 {
                    ErrorCode::LeaderNotAvailable.code()
                } else {
                    0
                })
                .with_partition_index(p)
                .with_leader_id(BrokerId(placement.leader))
                .with_leader_epoch(if version >= 7 { placement.leader_epoch } else { -1 })
                .with_replica_nodes(ids(&placement.replicas))
                .with_isr_nodes(ids(&placement.isr))
        })
        .collect();
    MetadataResponseTopic::default()
        .with_name(Some(TopicName(str_bytes(topic.name.clone()))))
        .with_topic_id(if version >= 10 { topic.id } else { Uuid::nil() })
        .with_is_internal(version >= 1 && crate::model::is_internal_topic(&topic.name))
        .with_partitions(partitions)
        .with_topic_authorized_operations(authorized_operations::topic(how.operations_asked))
}

fn error_entry(name: Option<String>, id: Uuid, code: ErrorCode) -> MetadataResponseTopic {
    MetadataResponseTopic::default()
        .with_error_code(code.code())
        .with_name(name.map(|n| TopicName(str_bytes(n))))
        .with_topic_id(id)
        .with_topic_authorized_operations(authorized_operations::OMITTED)
}

pub async fn handle(header: &RequestHeader, body: Bytes) -> Result<Response, Malformed> {
    let request: MetadataRequest = decode(body, header.api_version)?;
    let version = header.api_version;
    let shard = local();
    let config = Arc::clone(&shard.config);
    // v0 has no flag and always auto-creates; v4+ lets the client choose.
    let allow_auto_create = config.auto_create_topics && (header.api_version < 4 || request.allow_auto_topic_creation);
    let how = Describe {
        broker_id: config.broker_id,
        version,
        operations_asked: version >= 8 && request.include_topic_authorized_operations,
        cut_off: !crate::cluster::quorum::in_contact(config.broker_session_timeout_ms),
    };
    // v0 has no null array: there an empty one asks for every topic.
    let wanted = match request.topics {
        Some(topics) if topics.is_empty() && version == 0 => None,
        topics => topics,
    };
    let mut topics = Vec::new();
    match wanted {
        None => {
            let metadata = shard.metadata();
            topics.extend(metadata.topics.values().map(|t| topic_entry(t, how)));
        }
        Some(requested) => {
            let mut auto_created = 0;
            for wanted in requested {
                let metadata = shard.metadata();
                let entry = match wanted.name {
                    Some(name) => {
                        let name = name.0.to_string();
                        match metadata.topics.get(&name) {
                            Some(t) => topic_entry(t, how),
                            None if allow_auto_create && auto_created < AUTO_CREATE_PER_REQUEST_MAX => {
                                auto_created += 1;
                                auto_create(name, how).await
                            }
                            None => error_entry(Some(name), Uuid::nil(), ErrorCode::UnknownTopicOrPartition),
                        }
                    }
                    None => match metadata.topic_by_id(wanted.topic_id) {
                        Some(t) => topic_entry(t, how),
                        None => error_entry(None, wanted.topic_id, ErrorCode::UnknownTopicId),
                    },
                };
                topics.push(entry);
            }
        }
    }
    let metadata = shard.metadata();
    let brokers = metadata
        .broker_endpoints(&config)
        .into_iter()
        .map(|(id, host, port)| {
            MetadataResponseBroker::default()
                .with_node_id(BrokerId(id))
                .with_host(str_bytes(host))
                .with_port(port as i32)
        })
        .collect();
    let response = MetadataResponse::default()
        .with_brokers(brokers)
        .with_cluster_id(Some(str_bytes(metadata.cluster_id.clone())))
        .with_controller_id(BrokerId(metadata.controller(&config)))
        .with_topics(topics)
        // Asked for in v8 to v10; v11 moved it to DescribeCluster.
        .with_cluster_authorized_operations(authorized_operations::cluster(
            (8..=10).contains(&version) && request.include_cluster_authorized_operations,
        ));
    encode_response(header, &response)
}

async fn auto_create(name: String, how: Describe) -> MetadataResponseTopic {
    match controller::create_topic(name.clone(), -1, -1, BTreeMap::new(), false).await {
        Ok(topic) => topic_entry(&topic, how),
        // Another request created it first: describe what exists now.
        Err(e) if e.code == ErrorCode::TopicAlreadyExists => match local().metadata().topics.get(&name) {
            Some(t) => topic_entry(t, how),
            None => error_entry(Some(name), Uuid::nil(), ErrorCode::LeaderNotAvailable),
        },
        Err(e) => error_entry(Some(name), Uuid::nil(), e.code),
    }
}
