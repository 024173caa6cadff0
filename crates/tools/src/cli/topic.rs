//! `sluice topic`: create, list, describe, delete, alter the configs of and add
//! partitions to topics, after `kafka-topics.sh` and `kafka-configs.sh`.

use std::collections::{BTreeMap, BTreeSet};

use anyhow::{Context, bail};
use kafka_protocol::messages::create_partitions_request::CreatePartitionsTopic;
use kafka_protocol::messages::*;
use serde_json::json;

use super::{Connect, Format, TOPIC_RESOURCE, check, print_table, s};
pub use crate::client::admin::{REQUEST_TIMEOUT_MS, create_topic, delete_topic, metadata};
use crate::client::{Client, admin};

#[derive(clap::Args)]
pub struct TopicArgs {
    #[command(flatten)]
    connect: Connect,
    #[command(subcommand)]
    command: TopicCommand,
}

#[derive(clap::Subcommand)]
enum TopicCommand {
    /// Create a topic.
    Create {
        name: String,
        /// Partitions; the broker's num.partitions when omitted.
        #[arg(long)]
        partitions: Option<i32>,
        /// Replicas per partition; the broker's default when omitted.
        #[arg(long)]
        replication_factor: Option<i16>,
        /// A topic config, KEY=VALUE (repeatable), e.g. --config retention.ms=3600000.
        #[arg(long = "config", value_parser = parse_key_value)]
        configs: Vec<(String, String)>,
        /// Succeed quietly if the topic exists.
        #[arg(long)]
        if_not_exists: bool,
    },
    /// List topics with their partition counts.
    List {
        #[arg(long, value_enum, default_value_t)]
        format: Format,
    },
    /// Partitions (leader, replicas, ISR, offsets, size on disk) and effective configs.
    Describe {
        name: String,
        #[arg(long, value_enum, default_value_t)]
        format: Format,
    },
    /// Delete a topic and its data.
    Delete { name: String },
    /// Set (--set KEY=VALUE) or remove (--delete KEY) topic configs.
    AlterConfig {
        name: String,
        #[arg(long = "set", value_parser = parse_key_value)]
        set: Vec<(String, String)>,
        #[arg(long = "delete")]
        delete: Vec<String>,
    },
    /// Grow a topic to --total partitions.
    AddPartitions {
        name: String,
        #[arg(long)]
        total: i32,
    },
}

pub fn parse_key_value(text: &str) -> Result<(String, String), String> {
    match text.split_once('=') {
        Some((k, v)) if !k.trim().is_empty() => Ok((k.trim().to_string(), v.to_string())),
        _ => Err(format!("'{text}' is not KEY=VALUE")),
    }
}

pub fn run(args: TopicArgs) -> anyhow::Result<()> {
    let mut client = args.connect.client()?;
    match args.command {
        TopicCommand::Create {
            name,
            partitions,
            replication_factor,
            configs,
            if_not_exists,
        } => create(
            &mut client,
            &name,
            partitions,
            replication_factor,
            &configs,
            if_not_exists,
        ),
        TopicCommand::List { format } => list(&mut client, format),
        TopicCommand::Describe { name, format } => describe(&mut client, &name, format),
        TopicCommand::Delete { name } => delete(&mut client, &name),
        TopicCommand::AlterConfig { name, set, delete } => alter_config(&mut client, &name, &set, &delete),
        TopicCommand::AddPartitions { name, total } => add_partitions(&mut client, &name, total),
    }
}

fn create(
    client: &mut Client,
    name: &str,
    partitions: Option<i32>,
    replication_factor: Option<i16>,
    configs: &[(String, String)],
    if_not_exists: bool,
) -> anyhow::Result<()> {
    let partitions = partitions.unwrap_or(-1);
    let replication_factor = replication_factor.unwrap_or(-1);
    if let Some(count) = create_topic(client, name, partitions, replication_factor, configs, if_not_exists)? {
        println!("Created topic '{name}' with {count} partitions.");
    }
    Ok(())
}

fn list(client: &mut Client, format: Format) -> anyhow::Result<()> {
    let response = metadata(client, None)?;
    let mut topics: Vec<_> = response
        .topics
        .iter()
        .filter_map(|t| Some((t.name.as_ref()?.0.to_string(), t.partitions.len(), t.is_internal)))
        .collect();
    topics.sort();
    match format {
        Format::Json => {
            let list: Vec<_> = topics
                .iter()
                .map(|(name, partitions, internal)| json!({"name": name, "partitions": partitions, "internal": internal}))
                .collect();
            println!("{}", serde_json::to_string_pretty(&json!({ "topics": list }))?);
        }
        Format::Table => {
            let rows: Vec<Vec<String>> = topics
                .iter()
                .map(|(name, partitions, internal)| {
                    vec![
                        name.clone(),
                        partitions.to_string(),
                        if *internal { "yes" } else { "" }.to_string(),
                    ]
                })
                .collect();
            print_table(&["TOPIC", "PARTITIONS", "INTERNAL"], &rows);
        }
    }
    Ok(())
}

/// Kafka's config sources (DescribeConfigs v1+, `ConfigSource`), as words.
fn source_name(source: i8) -> &'static str {
    match source {
        1 => "topic",
        2 => "broker",
        3 => "broker (cluster default)",
        4 => "broker (static)",
        5 => "default",
        _ => "other",
    }
}

fn describe(client: &mut Client, name: &str, format: Format) -> anyhow::Result<()> {
    let meta = metadata(client, Some(name))?;
    let topic = meta.topics.first().context("Metadata returned no topic")?;
    check(topic.error_code, None, &format!("cannot describe topic '{name}'"))?;
    let partitions: BTreeSet<(String, i32)> = topic
        .partitions
        .iter()
        .map(|p| (name.to_string(), p.partition_index))
        .collect();
    let starts = admin::list_offsets(client, &partitions, admin::EARLIEST)?;
    let ends = admin::list_offsets(client, &partitions, admin::LATEST)?;
    let sizes = partition_sizes(client, name, &meta)?;
    let configs = topic_configs(client, name)?;
    let mut rows = Vec::new();
    for p in &topic.partitions {
        let key = (name.to_string(), p.partition_index);
        let ids = |nodes: &[BrokerId]| nodes.iter().map(|b| b.0.to_string()).collect::<Vec<_>>().join(",");
        rows.push((
            p.partition_index,
            p.leader_id.0,
            ids(&p.replica_nodes),
            ids(&p.isr_nodes),
            starts.get(&key).copied().unwrap_or(-1),
            ends.get(&key).copied().unwrap_or(-1),
            sizes.get(&p.partition_index).copied().unwrap_or(0),
        ));
    }
    rows.sort();
    match format {
        Format::Json => {
            let partitions: Vec<_> = rows
                .iter()
                .map(|(p, leader, replicas, isr, start, end, size)| {
                    json!({"partition": p, "leader": leader, "replicas": replicas, "isr": isr,
                           "log_start_offset": start, "log_end_offset": end, "size_bytes": size})
                })
                .collect();
            let configs: Vec<_> = configs
                .iter()
                .map(|(k, v, source)| json!({"name": k, "value": v, "source": source}))
                .collect();
            let doc = json!({"name": name, "topic_id": topic.topic_id.to_string(),
                             "partitions": partitions, "configs": configs});
            println!("{}", serde_json::to_string_pretty(&doc)?);
        }
        Format::Table => {
            println!("Topic '{name}' (id {}), {} partitions\n", topic.topic_id, rows.len());
            let table: Vec<Vec<String>> = rows
                .iter()
                .map(|(p, leader, replicas, isr, start, end, size)| {
                    vec![
                        p.to_string(),
                        leader.to_string(),
                        replicas.clone(),
                        isr.clone(),
                        start.to_string(),
                        end.to_string(),
                        size.to_string(),
                    ]
                })
                .collect();
            print_table(
                &[
                    "PARTITION",
                    "LEADER",
                    "REPLICAS",
                    "ISR",
                    "LOG-START",
                    "LOG-END",
                    "SIZE-BYTES",
                ],
                &table,
            );
            println!();
            let table: Vec<Vec<String>> = configs
                .iter()
                .map(|(k, v, source)| vec![k.clone(), v.clone(), source.to_string()])
                .collect();
            print_table(&["CONFIG", "VALUE", "SOURCE"], &table);
        }
    }
    Ok(())
}

/// Partition → bytes on disk (DescribeLogDirs).
/// Each partition's size on its leader (every broker is asked; a single
/// node answers for all).
fn partition_sizes(client: &mut Client, name: &str, meta: &MetadataResponse) -> anyhow::Result<BTreeMap<i32, i64>> {
    if meta.brokers.len() <= 1 {
        return sizes_on(client, name);
    }
    let leaders: BTreeMap<i32, i32> = meta
        .topics
        .iter()
        .flat_map(|t| t.partitions.iter().map(|p| (p.partition_index, p.leader_id.0)))
        .collect();
    let mut sizes = BTreeMap::new();
    for broker in &meta.brokers {
        let endpoint = format!("{}:{}", broker.host, broker.port);
        let Ok(mut broker_client) = Client::connect(&endpoint, std::time::Duration::from_secs(10)) else {
            continue; // a broker that is down reports nothing
        };
        for (partition, size) in sizes_on(&mut broker_client, name)? {
            if leaders.get(&partition) == Some(&broker.node_id.0) {
                sizes.insert(partition, size);
            }
        }
    }
    Ok(sizes)
}

fn sizes_on(client: &mut Client, name: &str) -> anyhow::Result<BTreeMap<i32, i64>> {
    let response = client.send(&DescribeLogDirsRequest::default().with_topics(None), 4)?;
    check(response.error_code, None, "cannot read log directories")?;
    let mut sizes = BTreeMap::new();
    for dir in &response.results {
        for t in dir.topics.iter().filter(|t| t.name.0.as_str() == name) {
            for p in &t.partitions {
                *sizes.entry(p.partition_index).or_default() += p.partition_size;
            }
        }
    }
    Ok(sizes)
}

/// The topic's effective configs: (name, value, source).
fn topic_configs(client: &mut Client, name: &str) -> anyhow::Result<Vec<(String, String, &'static str)>> {
    let what = format!("cannot read the configs of '{name}'");
    let configs = super::describe_configs(client, TOPIC_RESOURCE, name, None, &what)?;
    Ok(configs
        .into_iter()
        .map(|c| (c.name, c.value, source_name(c.source)))
        .collect())
}

fn delete(client: &mut Client, name: &str) -> anyhow::Result<()> {
    delete_topic(client, name)?;
    println!("Deleted topic '{name}'.");
    Ok(())
}

fn alter_config(client: &mut Client, name: &str, set: &[(String, String)], delete: &[String]) -> anyhow::Result<()> {
    if set.is_empty() && delete.is_empty() {
        bail!("nothing to change: give --set KEY=VALUE or --delete KEY");
    }
    let what = format!("cannot change the configs of '{name}'");
    super::alter_configs(client, TOPIC_RESOURCE, name, set, delete, &what)?;
    println!("Updated the configs of '{name}'.");
    Ok(())
}

fn add_partitions(client: &mut Client, name: &str, total: i32) -> anyhow::Result<()> {
    let topic = CreatePartitionsTopic::default()
        .with_name(TopicName(s(name)))
        .with_count(total)
        .with_assignments(None);
    let request = CreatePartitionsRequest::default()
        .with_topics(vec![topic])
        .with_timeout_ms(REQUEST_TIMEOUT_MS);
    let response = client.send(&request, 3)?;
    let result = response.results.first().context("CreatePartitions returned nothing")?;
    check(
        result.error_code,
        result.error_message.as_deref(),
        &format!("cannot add partitions to '{name}'"),
    )?;
    println!("Topic '{name}' now has {total} partitions.");
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_values_and_sources() {
        assert_eq!(
            parse_key_value("retention.ms=5"),
            Ok(("retention.ms".into(), "5".into()))
        );
        assert_eq!(parse_key_value("a=b=c"), Ok(("a".into(), "b=c".into())));
        assert!(parse_key_value("novalue").is_err());
        assert!(parse_key_value("=x").is_err());
        assert_eq!(source_name(1), "topic");
        assert_eq!(source_name(4), "broker (static)");
        assert_eq!(source_name(5), "default");
    }
}
