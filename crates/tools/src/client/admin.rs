//! The admin requests the tools share (the CLI and the benchmarks): topics
//! created, described and deleted, Kafka error codes as sentences.

use anyhow::Context;
use kafka_protocol::ResponseError;
use kafka_protocol::messages::create_topics_request::{CreatableTopic, CreatableTopicConfig};
use kafka_protocol::messages::metadata_request::MetadataRequestTopic;
use kafka_protocol::messages::*;
use kafka_protocol::protocol::StrBytes;

use super::Client;

/// How long the broker may take over a topic change.
pub const REQUEST_TIMEOUT_MS: i32 = 30_000;

/// A Kafka error code as a sentence: the broker's own message when it sent
/// one, otherwise Kafka's description of the code, with what was being done.
pub fn check(code: i16, message: Option<&str>, what: &str) -> anyhow::Result<()> {
    if code == 0 {
        return Ok(());
    }
    let reason = match message.filter(|m| !m.is_empty()) {
        Some(m) => m.to_string(),
        None => match ResponseError::try_from_code(code) {
            Some(e) => format!("{e}"),
            None => format!("Kafka error code {code}"),
        },
    };
    anyhow::bail!("{what}: {reason}")
}

pub fn s(value: &str) -> StrBytes {
    StrBytes::from_string(value.to_string())
}

/// CreateTopics for one topic (-1: the broker's default). Returns the partition
/// count, or `None` when the topic already existed and `if_not_exists` allows it.
pub fn create_topic(
    client: &mut Client,
    name: &str,
    partitions: i32,
    replication_factor: i16,
    configs: &[(String, String)],
    if_not_exists: bool,
) -> anyhow::Result<Option<i32>> {
    const TOPIC_ALREADY_EXISTS: i16 = 36;
    let topic = CreatableTopic::default()
        .with_name(TopicName(s(name)))
        .with_num_partitions(partitions)
        .with_replication_factor(replication_factor)
        .with_configs(
            configs
                .iter()
                .map(|(k, v)| CreatableTopicConfig::default().with_name(s(k)).with_value(Some(s(v))))
                .collect(),
        );
    let request = CreateTopicsRequest::default()
        .with_topics(vec![topic])
        .with_timeout_ms(REQUEST_TIMEOUT_MS);
    let response = client.send(&request, 5)?;
    let result = response.topics.first().context("CreateTopics returned no topic")?;
    if if_not_exists && result.error_code == TOPIC_ALREADY_EXISTS {
        return Ok(None);
    }
    check(
        result.error_code,
        result.error_message.as_deref(),
        &format!("cannot create topic '{name}'"),
    )?;
    Ok(Some(result.num_partitions))
}

/// Metadata for one topic, or all of them; never creates a topic.
pub fn metadata(client: &mut Client, topic: Option<&str>) -> anyhow::Result<MetadataResponse> {
    let topics = topic.map(|t| vec![MetadataRequestTopic::default().with_name(Some(TopicName(s(t))))]);
    // A tool looking at a topic must never create it.
    let request = MetadataRequest::default()
        .with_topics(topics)
        .with_allow_auto_topic_creation(false);
    client.send(&request, 12)
}

/// DeleteTopics for one topic.
pub fn delete_topic(client: &mut Client, name: &str) -> anyhow::Result<()> {
    let request = DeleteTopicsRequest::default()
        .with_topic_names(vec![TopicName(s(name))])
        .with_timeout_ms(REQUEST_TIMEOUT_MS);
    let response = client.send(&request, 5)?;
    let result = response.responses.first().context("DeleteTopics returned nothing")?;
    check(
        result.error_code,
        result.error_message.as_deref(),
        &format!("cannot delete topic '{name}'"),
    )
}

/// The metadata quorum's leader, by DescribeQuorum on `__cluster_metadata`
/// (as `kafka-metadata-quorum describe --status` reads it). Metadata's
/// controller id is no substitute: Kafka answers a random live broker there.
pub fn quorum_leader(client: &mut Client) -> anyhow::Result<i32> {
    use kafka_protocol::messages::describe_quorum_request::{PartitionData, TopicData};
    let request = DescribeQuorumRequest::default().with_topics(vec![
        TopicData::default()
            .with_topic_name(TopicName(s("__cluster_metadata")))
            .with_partitions(vec![PartitionData::default().with_partition_index(0)]),
    ]);
    let response = client.send(&request, 1)?;
    check(response.error_code, None, "DescribeQuorum")?;
    let partition = response
        .topics
        .first()
        .and_then(|t| t.partitions.first())
        .context("DescribeQuorum returned no partition")?;
    check(partition.error_code, None, "DescribeQuorum")?;
    Ok(partition.leader_id.0)
}
