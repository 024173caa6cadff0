//! DescribeConfigs for topics and the broker, with sources and synonyms.

use bytes::Bytes;
use kafka_protocol::messages::describe_configs_response::{
    DescribeConfigsResourceResult, DescribeConfigsResult, DescribeConfigsSynonym,
};
use kafka_protocol::messages::{DescribeConfigsRequest, DescribeConfigsResponse};

use super::{Malformed, RequestHeader, Response, decode, encode_response, str_bytes};
use crate::cluster::metadata::Metadata;
use crate::cluster::shard::local;
use crate::config::BrokerConfig;
use crate::model::ErrorCode;
use crate::storage::log_config::TOPIC_CONFIG_KEYS;

pub const RESOURCE_TOPIC: i8 = 2;
pub const RESOURCE_BROKER: i8 = 4;
const SOURCE_TOPIC: i8 = 1;
const SOURCE_DYNAMIC_BROKER: i8 = 2;
const SOURCE_STATIC_BROKER: i8 = 4;
const SOURCE_DEFAULT: i8 = 5;
const TYPE_STRING: i8 = 2;

struct Entry {
    name: String,
    value: Option<String>,
    read_only: bool,
    source: i8,
    config_type: i8,
    doc: &'static str,
    synonyms: Vec<(String, Option<String>, i8)>,
}

pub async fn handle(header: &RequestHeader, body: Bytes) -> Result<Response, Malformed> {
    let request: DescribeConfigsRequest = decode(body, header.api_version)?;
    let shard = local();
    let metadata = shard.metadata();
    let results = request
        .resources
        .into_iter()
        .map(|resource| {
            let name = resource.resource_name.to_string();
            let entries = match resource.resource_type {
                RESOURCE_TOPIC => topic_entries(&metadata, &shard.config, &name),
                RESOURCE_BROKER => broker_entries(&metadata, &shard.config, &name),
                _ => Err((
                    ErrorCode::InvalidRequest,
                    "only TOPIC and BROKER resources are supported".to_string(),
                )),
            };
            let mut result = DescribeConfigsResult::default()
                .with_resource_type(resource.resource_type)
                .with_resource_name(resource.resource_name.clone());
            match entries {
                Ok(entries) => {
                    let keys = resource.configuration_keys.as_ref();
                    result.configs = entries
                        .into_iter()
                        .filter(|e| keys.is_none_or(|k| k.iter().any(|k| k.as_str() == e.name)))
                        .map(|e| {
                            to_result(
                                e,
                                request.include_synonyms,
                                request.include_documentation,
                                header.api_version,
                            )
                        })
                        .collect();
                }
                Err((code, message)) => {
                    result.error_code = code.code();
                    result.error_message = Some(str_bytes(message));
                }
            }
            result
        })
        .collect();
    encode_response(header, &DescribeConfigsResponse::default().with_results(results))
}

fn to_result(
    e: Entry,
    include_synonyms: bool,
    include_documentation: bool,
    version: i16,
) -> DescribeConfigsResourceResult {
    let synonyms = if include_synonyms {
        e.synonyms
            .into_iter()
            .map(|(name, value, source)| {
                DescribeConfigsSynonym::default()
                    .with_name(str_bytes(name))
                    .with_value(value.map(str_bytes))
                    .with_source(source)
            })
            .collect()
    } else {
        Vec::new()
    };
    DescribeConfigsResourceResult::default()
        .with_name(str_bytes(e.name))
        .with_value(e.value.map(str_bytes))
        .with_read_only(e.read_only)
        .with_config_source(e.source)
        .with_synonyms(synonyms)
        .with_config_type(if version >= 3 { e.config_type } else { 0 })
        .with_documentation(if version >= 3 {
            include_documentation.then(|| str_bytes(e.doc))
        } else {
            Some(str_bytes(""))
        })
}

fn topic_entries(metadata: &Metadata, config: &BrokerConfig, topic: &str) -> Result<Vec<Entry>, (ErrorCode, String)> {
    let Some(topic) = metadata.topics.get(topic) else {
        return Err((
            ErrorCode::UnknownTopicOrPartition,
            format!("topic '{topic}' does not exist"),
        ));
    };
    let broker_defaults = metadata.broker_log_defaults(&config.log_defaults);
    let effective = metadata.log_config(&config.log_defaults, topic);
    Ok(TOPIC_CONFIG_KEYS
        .iter()
        .map(|key| {
            let mut synonyms = Vec::new();
            let mut source = SOURCE_DEFAULT;
            if let Some(v) = topic.configs.get(key.name) {
                synonyms.push((key.name.to_string(), Some(v.clone()), SOURCE_TOPIC));
                source = SOURCE_TOPIC;
            }
            if let Some(v) = metadata.broker_configs.get(key.broker_name) {
                synonyms.push((key.broker_name.to_string(), Some(v.clone()), SOURCE_DYNAMIC_BROKER));
                if source == SOURCE_DEFAULT {
                    source = SOURCE_DYNAMIC_BROKER;
                }
            }
            synonyms.push((
                key.broker_name.to_string(),
                broker_defaults.get(key.name),
                SOURCE_DEFAULT,
            ));
            Entry {
                name: key.name.to_string(),
                value: effective.get(key.name),
                read_only: false,
                source,
                config_type: key.config_type,
                doc: key.doc,
                synonyms,
            }
        })
        .collect())
}

fn broker_entries(metadata: &Metadata, config: &BrokerConfig, name: &str) -> Result<Vec<Entry>, (ErrorCode, String)> {
    if !name.is_empty() && name != config.broker_id.to_string() {
        return Err((
            ErrorCode::InvalidRequest,
            format!("this is broker {}, not '{name}'", config.broker_id),
        ));
    }
    let effective = metadata.broker_log_defaults(&config.log_defaults);
    let mut entries: Vec<Entry> = TOPIC_CONFIG_KEYS
        .iter()
        .map(|key| {
            let dynamic = metadata.broker_configs.contains_key(key.broker_name);
            Entry {
                name: key.broker_name.to_string(),
                value: effective.get(key.name),
                read_only: false,
                source: if dynamic {
                    SOURCE_DYNAMIC_BROKER
                } else {
                    SOURCE_STATIC_BROKER
                },
                config_type: key.config_type,
                doc: key.doc,
                synonyms: Vec::new(),
            }
        })
        .collect();
    let static_entries = [
        ("broker.id", config.broker_id.to_string()),
        ("listeners", format!("PLAINTEXT://{}", config.listen)),
        ("advertised.listeners", {
            let (host, port) = config.advertised_endpoint();
            format!("PLAINTEXT://{host}:{port}")
        }),
        ("log.dirs", config.data_dir.display().to_string()),
        ("num.partitions", config.num_partitions.to_string()),
        (
            "default.replication.factor",
            config.default_replication_factor.to_string(),
        ),
        ("auto.create.topics.enable", config.auto_create_topics.to_string()),
        ("socket.request.max.bytes", config.socket_request_max_bytes.to_string()),
        ("connections.max.idle.ms", config.connections_max_idle_ms.to_string()),
        (
            "max.incremental.fetch.session.cache.slots",
            config.max_incremental_fetch_session_cache_slots.to_string(),
        ),
        (
            "log.retention.check.interval.ms",
            config.retention_check_interval_ms.to_string(),
        ),
        ("num.shards", config.shards.to_string()),
    ];
    entries.extend(static_entries.into_iter().map(|(name, value)| Entry {
        name: name.to_string(),
        value: Some(value),
        read_only: true,
        source: SOURCE_STATIC_BROKER,
        config_type: TYPE_STRING,
        doc: "",
        synonyms: Vec::new(),
    }));
    Ok(entries)
}
