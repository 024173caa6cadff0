//! `sluice cluster`: brokers, controller and cluster id; partition health
//! (`status`); on-demand leader elections (`elect-leaders`, after
//! kafka-leader-election.sh); moving partitions and retiring brokers
//! (`reassign`, `reassignments`, `decommission`, in `reassign`); broker configs.

use anyhow::Context;
use kafka_protocol::ResponseError;
use kafka_protocol::messages::*;
use kafka_protocol::protocol::StrBytes;
use serde_json::json;

use super::topic::parse_key_value;
use std::time::Duration;

use super::{BROKER_RESOURCE, Connect, Format, check, print_table, reassign};
use crate::client::Client;

#[derive(clap::Args)]
pub struct ClusterArgs {
    #[command(flatten)]
    connect: Connect,
    #[command(subcommand)]
    command: ClusterCommand,
}

#[derive(clap::Subcommand)]
enum ClusterCommand {
    /// Cluster id, controller and brokers.
    Info {
        #[arg(long, value_enum, default_value_t)]
        format: Format,
    },
    /// Brokers and controller, then partition health: under-replicated
    /// (fewer in-sync replicas than replicas) and offline (no leader).
    Status {
        #[arg(long, value_enum, default_value_t)]
        format: Format,
    },
    /// Elect leaders now (ElectLeaders): `preferred` moves leadership back to
    /// each partition's first replica; `unclean` gives offline partitions an
    /// out-of-sync leader, losing what it lacked. Every partition unless
    /// `--topic` (and `--partition`) narrow it.
    ElectLeaders {
        #[arg(long = "type", value_enum)]
        election_type: ElectionType,
        #[arg(long)]
        topic: Option<String>,
        #[arg(long, requires = "topic")]
        partition: Vec<i32>,
    },
    /// Move one partition to other brokers (AlterPartitionReassignments):
    /// the new replicas catch up, then the old ones go. `--cancel` stops a move.
    Reassign {
        #[arg(long)]
        topic: String,
        #[arg(long)]
        partition: i32,
        /// The target replicas, preferred leader first: `2,3`.
        #[arg(long, value_delimiter = ',', required_unless_present = "cancel")]
        replicas: Vec<i32>,
        #[arg(long, conflicts_with = "replicas")]
        cancel: bool,
        /// Return once the move has completed.
        #[arg(long)]
        wait: bool,
        #[arg(long, default_value_t = 600)]
        timeout_s: u64,
    },
    /// The partitions being moved (ListPartitionReassignments).
    Reassignments {
        #[arg(long, value_enum, default_value_t)]
        format: Format,
    },
    /// Retire a broker: move every replica it holds to the others, wait,
    /// then unregister it (UnregisterBroker).
    Decommission {
        #[arg(long)]
        broker: i32,
        #[arg(long, default_value_t = 600)]
        timeout_s: u64,
    },
    /// Broker configs.
    Config {
        #[command(subcommand)]
        command: ConfigCommand,
    },
}

#[derive(Clone, Copy, clap::ValueEnum)]
enum ElectionType {
    Preferred,
    Unclean,
}

#[derive(clap::Subcommand)]
enum ConfigCommand {
    /// Every config of a broker (or only KEY), with its source.
    Get {
        key: Option<String>,
        #[arg(long, default_value_t = 0)]
        broker: i32,
        #[arg(long, value_enum, default_value_t)]
        format: Format,
    },
    /// Set KEY=VALUE on a broker at runtime (IncrementalAlterConfigs).
    Set {
        #[arg(value_parser = parse_key_value)]
        setting: (String, String),
        #[arg(long, default_value_t = 0)]
        broker: i32,
    },
}

pub fn run(args: ClusterArgs) -> anyhow::Result<()> {
    let mut client = args.connect.client()?;
    match args.command {
        ClusterCommand::Info { format } => info(&mut client, format),
        ClusterCommand::Status { format } => status(&mut client, format),
        ClusterCommand::ElectLeaders {
            election_type,
            topic,
            partition,
        } => elect_leaders(&mut client, election_type, topic, partition),
        ClusterCommand::Reassign {
            topic,
            partition,
            replicas,
            cancel,
            wait,
            timeout_s,
        } => {
            let target = (!cancel).then_some(replicas);
            reassign::submit(&mut client, &[(topic, partition, target)])?;
            if wait {
                reassign::wait_until_done(&mut client, Duration::from_secs(timeout_s))?;
            }
            println!(
                "{}",
                match (cancel, wait) {
                    (true, _) => "Cancelled.",
                    (false, true) => "Reassignment complete.",
                    (false, false) => "Reassignment started; `sluice cluster reassignments` shows its progress.",
                }
            );
            Ok(())
        }
        ClusterCommand::Reassignments { format } => reassign::print_ongoing(&mut client, format),
        ClusterCommand::Decommission { broker, timeout_s } => {
            reassign::decommission(&mut client, broker, Duration::from_secs(timeout_s))
        }
        ClusterCommand::Config {
            command: ConfigCommand::Get { key, broker, format },
        } => config_get(&mut client, key.as_deref(), broker, format),
        ClusterCommand::Config {
            command: ConfigCommand::Set { setting, broker },
        } => config_set(&mut client, &setting, broker),
    }
}

/// DescribeCluster v2 with the fenced brokers: an operator wants to see the dead one.
fn describe_cluster(client: &mut Client) -> anyhow::Result<DescribeClusterResponse> {
    let request = DescribeClusterRequest::default().with_include_fenced_brokers(true);
    let response = client.send(&request, 2)?;
    check(
        response.error_code,
        response.error_message.as_deref(),
        "cannot describe the cluster",
    )?;
    Ok(response)
}

fn info(client: &mut Client, format: Format) -> anyhow::Result<()> {
    let response = describe_cluster(client)?;
    let brokers: Vec<_> = response
        .brokers
        .iter()
        .map(|b| (b.broker_id.0, b.host.to_string(), b.port, b.is_fenced))
        .collect();
    match format {
        Format::Json => {
            let list: Vec<_> = brokers
                .iter()
                .map(|(id, host, port, fenced)| json!({"id": id, "host": host, "port": port, "fenced": fenced}))
                .collect();
            let doc = json!({"cluster_id": response.cluster_id.to_string(),
                             "controller": response.controller_id.0, "brokers": list});
            println!("{}", serde_json::to_string_pretty(&doc)?);
        }
        Format::Table => {
            println!("Cluster id: {}", response.cluster_id);
            println!("Controller: {}\n", response.controller_id.0);
            let rows: Vec<Vec<String>> = brokers
                .iter()
                .map(|(id, host, port, fenced)| {
                    let state = if *fenced { "fenced" } else { "up" };
                    vec![id.to_string(), host.clone(), port.to_string(), state.to_string()]
                })
                .collect();
            print_table(&["BROKER", "HOST", "PORT", "STATE"], &rows);
        }
    }
    Ok(())
}

fn elect_leaders(
    client: &mut Client,
    election_type: ElectionType,
    topic: Option<String>,
    partitions: Vec<i32>,
) -> anyhow::Result<()> {
    let topic_partitions = match topic {
        None => None,
        Some(name) => {
            let partitions = if partitions.is_empty() {
                let metadata = super::topic::metadata(client, Some(&name))?;
                let described = metadata.topics.first().context("the broker described no topic")?;
                check(described.error_code, None, &format!("topic '{name}'"))?;
                described.partitions.iter().map(|p| p.partition_index).collect()
            } else {
                partitions
            };
            Some(vec![
                elect_leaders_request::TopicPartitions::default()
                    .with_topic(TopicName(StrBytes::from_string(name)))
                    .with_partitions(partitions),
            ])
        }
    };
    let request = ElectLeadersRequest::default()
        .with_election_type(match election_type {
            ElectionType::Preferred => 0,
            ElectionType::Unclean => 1,
        })
        .with_topic_partitions(topic_partitions)
        .with_timeout_ms(30_000);
    let response = client.send(&request, 2)?;
    check(response.error_code, None, "leader election")?;
    let mut failed = 0;
    let mut elected = 0;
    for topic in &response.replica_election_results {
        for p in &topic.partition_result {
            let what = format!("{}-{}", topic.topic.0, p.partition_id);
            match check(p.error_code, p.error_message.as_deref(), &what) {
                Ok(()) => {
                    elected += 1;
                    println!("{what}: elected");
                }
                Err(e) if p.error_code == ResponseError::ElectionNotNeeded.code() => println!("{e}"),
                Err(e) => {
                    failed += 1;
                    println!("{e}");
                }
            }
        }
    }
    println!("{elected} partition(s) got a new leader");
    anyhow::ensure!(failed == 0, "{failed} partition(s) could not be elected");
    Ok(())
}

/// One partition that is not fully healthy.
struct Unhealthy {
    topic: String,
    partition: i32,
    leader: i32,
    replicas: Vec<i32>,
    isr: Vec<i32>,
}

fn status(client: &mut Client, format: Format) -> anyhow::Result<()> {
    let metadata = super::topic::metadata(client, None)?;
    let mut total = 0;
    let mut unhealthy = Vec::new();
    for topic in &metadata.topics {
        let name = topic.name.as_ref().map_or_else(String::new, |n| n.0.to_string());
        for p in &topic.partitions {
            total += 1;
            let replicas: Vec<i32> = p.replica_nodes.iter().map(|b| b.0).collect();
            let isr: Vec<i32> = p.isr_nodes.iter().map(|b| b.0).collect();
            if p.leader_id.0 < 0 || isr.len() < replicas.len() {
                unhealthy.push(Unhealthy {
                    topic: name.clone(),
                    partition: p.partition_index,
                    leader: p.leader_id.0,
                    replicas,
                    isr,
                });
            }
        }
    }
    let offline = unhealthy.iter().filter(|u| u.leader < 0).count();
    let under_replicated = unhealthy.len() - offline;
    let ids = |v: &[i32]| v.iter().map(i32::to_string).collect::<Vec<_>>().join(",");
    match format {
        Format::Json => {
            let list: Vec<_> = unhealthy
                .iter()
                .map(|u| {
                    json!({"topic": u.topic, "partition": u.partition, "leader": u.leader,
                           "replicas": u.replicas, "isr": u.isr, "offline": u.leader < 0})
                })
                .collect();
            let brokers: Vec<_> = metadata
                .brokers
                .iter()
                .map(|b| json!({"id": b.node_id.0, "host": b.host.to_string(), "port": b.port}))
                .collect();
            let fenced: Vec<i32> = describe_cluster(client)?
                .brokers
                .iter()
                .filter(|b| b.is_fenced)
                .map(|b| b.broker_id.0)
                .collect();
            let doc = json!({"cluster_id": metadata.cluster_id.as_ref().map(|c| c.to_string()),
                             "controller": metadata.controller_id.0, "brokers": brokers,
                             "fenced_brokers": fenced,
                             "partitions": total, "under_replicated": under_replicated,
                             "offline": offline, "unhealthy": list});
            println!("{}", serde_json::to_string_pretty(&doc)?);
        }
        Format::Table => {
            info(client, Format::Table)?;
            println!("\nPartitions: {total}, under-replicated: {under_replicated}, offline: {offline}");
            if !unhealthy.is_empty() {
                let rows: Vec<Vec<String>> = unhealthy
                    .iter()
                    .map(|u| {
                        vec![
                            u.topic.clone(),
                            u.partition.to_string(),
                            if u.leader < 0 {
                                "none".into()
                            } else {
                                u.leader.to_string()
                            },
                            ids(&u.replicas),
                            ids(&u.isr),
                        ]
                    })
                    .collect();
                println!();
                print_table(&["TOPIC", "PARTITION", "LEADER", "REPLICAS", "ISR"], &rows);
            }
        }
    }
    Ok(())
}

fn config_get(client: &mut Client, key: Option<&str>, broker: i32, format: Format) -> anyhow::Result<()> {
    let what = format!("cannot read the configs of broker {broker}");
    let keys = key.map(|k| vec![k]);
    let configs: Vec<(String, String)> =
        super::describe_configs(client, BROKER_RESOURCE, &broker.to_string(), keys.as_deref(), &what)?
            .into_iter()
            .map(|c| (c.name, c.value))
            .collect();
    if let Some(key) = key
        && configs.is_empty()
    {
        anyhow::bail!("broker {broker} has no config '{key}'");
    }
    match format {
        Format::Json => {
            let map: serde_json::Map<String, serde_json::Value> =
                configs.into_iter().map(|(k, v)| (k, json!(v))).collect();
            println!("{}", serde_json::to_string_pretty(&map)?);
        }
        Format::Table => {
            let rows: Vec<Vec<String>> = configs.into_iter().map(|(k, v)| vec![k, v]).collect();
            print_table(&["CONFIG", "VALUE"], &rows);
        }
    }
    Ok(())
}

fn config_set(client: &mut Client, (key, value): &(String, String), broker: i32) -> anyhow::Result<()> {
    let what = format!("cannot set '{key}' on broker {broker}");
    let set = [(key.clone(), value.clone())];
    super::alter_configs(client, BROKER_RESOURCE, &broker.to_string(), &set, &[], &what)?;
    println!("Set {key}={value} on broker {broker}.");
    Ok(())
}
