//! The admin requests the tools share (the CLI and the benchmarks): topics
//! created, described and deleted, Kafka error codes as sentences.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use anyhow::Context;
use kafka_protocol::ResponseError;
use kafka_protocol::messages::create_topics_request::{CreatableTopic, CreatableTopicConfig};
use kafka_protocol::messages::list_offsets_request::{ListOffsetsPartition, ListOffsetsTopic};
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

/// ListOffsets timestamps meaning the log start and the log end.
pub const EARLIEST: i64 = -2;
pub const LATEST: i64 = -1;
const LEADER_CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// Offsets of `partitions` at `timestamp` (EARLIEST, LATEST or a time), each
/// asked of its partition's leader (in a cluster, only the leader answers).
pub fn list_offsets(
    client: &mut Client,
    partitions: &BTreeSet<(String, i32)>,
    timestamp: i64,
) -> anyhow::Result<BTreeMap<(String, i32), i64>> {
    let metadata = metadata(client, None)?;
    if metadata.brokers.len() <= 1 {
        return list_offsets_on(client, partitions, timestamp);
    }
    let endpoints: BTreeMap<i32, String> = metadata
        .brokers
        .iter()
        .map(|b| (b.node_id.0, format!("{}:{}", b.host, b.port)))
        .collect();
    let mut by_leader: BTreeMap<i32, BTreeSet<(String, i32)>> = BTreeMap::new();
    for topic in &metadata.topics {
        let Some(name) = topic.name.as_ref().map(|n| n.0.to_string()) else {
            continue;
        };
        for p in &topic.partitions {
            let key = (name.clone(), p.partition_index);
            if partitions.contains(&key) {
                by_leader.entry(p.leader_id.0).or_default().insert(key);
            }
        }
    }
    let mut out = BTreeMap::new();
    for (leader, wanted) in by_leader {
        let endpoint = endpoints
            .get(&leader)
            .with_context(|| format!("partition {:?} has no live leader", wanted.first()))?;
        let mut leader_client = Client::connect(endpoint, LEADER_CONNECT_TIMEOUT)?;
        out.extend(list_offsets_on(&mut leader_client, &wanted, timestamp)?);
    }
    Ok(out)
}

fn list_offsets_on(
    client: &mut Client,
    partitions: &BTreeSet<(String, i32)>,
    timestamp: i64,
) -> anyhow::Result<BTreeMap<(String, i32), i64>> {
    let mut by_topic: BTreeMap<&str, Vec<i32>> = BTreeMap::new();
    for (topic, p) in partitions {
        by_topic.entry(topic).or_default().push(*p);
    }
    let topics = by_topic
        .iter()
        .map(|(topic, ps)| {
            ListOffsetsTopic::default()
                .with_name(TopicName(s(topic)))
                .with_partitions(
                    ps.iter()
                        .map(|p| {
                            ListOffsetsPartition::default()
                                .with_partition_index(*p)
                                .with_timestamp(timestamp)
                        })
                        .collect(),
                )
        })
        .collect();
    let request = ListOffsetsRequest::default()
        .with_replica_id(BrokerId(-1))
        .with_topics(topics);
    let response = client.send(&request, 7)?;
    let mut out = BTreeMap::new();
    for t in response.topics {
        for p in t.partitions {
            check(
                p.error_code,
                None,
                &format!("ListOffsets for {}-{} failed", t.name.0, p.partition_index),
            )?;
            out.insert((t.name.0.to_string(), p.partition_index), p.offset);
        }
    }
    Ok(out)
}
