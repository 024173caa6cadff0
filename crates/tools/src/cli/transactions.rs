//! `sluice transactions`: list, describe, describe the producers of a
//! partition, and abort a hanging transaction, over the Kafka protocol,
//! after `kafka-transactions.sh`.

use anyhow::{Context, bail};
use kafka_protocol::messages::describe_producers_request::TopicRequest;
use kafka_protocol::messages::describe_producers_response::ProducerState;
use kafka_protocol::messages::write_txn_markers_request::{WritableTxnMarker, WritableTxnMarkerTopic};
use kafka_protocol::messages::*;

use super::{TIMEOUT, s};
use crate::client::Client;
use crate::client::admin::metadata;

#[derive(clap::Args)]
pub struct TransactionsArgs {
    #[command(flatten)]
    connect: super::Connect,
    #[command(subcommand)]
    command: TransactionsCommand,
}

#[derive(clap::Subcommand)]
enum TransactionsCommand {
    /// Every transactional id of every broker, with its state.
    List(ListArgs),
    /// One transactional id at its coordinator: producer, state, timeout, partitions.
    Describe { transactional_id: String },
    /// The producers a partition's leader tracks, with their open transactions.
    DescribeProducers(PartitionArgs),
    /// Abort a hanging transaction on one partition: an ABORT marker written
    /// straight to it. Name the transaction by where it starts (--start-offset),
    /// or by --producer-id, --producer-epoch and --coordinator-epoch.
    Abort(AbortArgs),
}

#[derive(clap::Args)]
struct ListArgs {
    /// Only transactions in this state (Ongoing, PrepareCommit, CompleteAbort, ...). Repeatable.
    #[arg(long)]
    state: Vec<String>,
    /// Only this producer id's. Repeatable.
    #[arg(long)]
    producer_id: Vec<i64>,
    /// Only transactions running longer than this many milliseconds.
    #[arg(long, default_value_t = -1)]
    duration_filter: i64,
    /// Only transactional ids this regular expression matches whole.
    #[arg(long)]
    transactional_id_pattern: Option<String>,
}

#[derive(clap::Args)]
struct PartitionArgs {
    #[arg(long)]
    topic: String,
    #[arg(long)]
    partition: i32,
}

#[derive(clap::Args)]
#[command(group(clap::ArgGroup::new("which").required(true).args(["start_offset", "producer_id"])))]
struct AbortArgs {
    #[command(flatten)]
    partition: PartitionArgs,
    /// The first offset of the transaction to abort (as describe-producers shows it).
    #[arg(long)]
    start_offset: Option<i64>,
    #[arg(long, requires_all = ["producer_epoch", "coordinator_epoch"])]
    producer_id: Option<i64>,
    #[arg(long)]
    producer_epoch: Option<i16>,
    #[arg(long)]
    coordinator_epoch: Option<i32>,
}

pub fn run(args: TransactionsArgs) -> anyhow::Result<()> {
    let connect = &args.connect;
    match args.command {
        TransactionsCommand::List(filters) => list(connect, &filters),
        TransactionsCommand::Describe { transactional_id } => describe(connect, &transactional_id),
        TransactionsCommand::DescribeProducers(at) => describe_producers(connect, &at),
        TransactionsCommand::Abort(abort_args) => abort(connect, &abort_args),
    }
}

/// ListTransactions on every broker (each coordinates its own share of ids).
fn list(connect: &super::Connect, filters: &ListArgs) -> anyhow::Result<()> {
    let mut client = connect.client()?;
    // Only the broker list matters.
    let brokers = metadata(&mut client, Some(crate::model::INTERNAL_TOPICS[1]))?.brokers;
    let request = ListTransactionsRequest::default()
        .with_state_filters(filters.state.iter().map(|state| s(state)).collect())
        .with_producer_id_filters(filters.producer_id.iter().map(|id| ProducerId(*id)).collect())
        .with_duration_filter(filters.duration_filter)
        .with_transactional_id_pattern(filters.transactional_id_pattern.as_deref().map(s));
    let mut rows = Vec::new();
    for broker in &brokers {
        let address = format!("{}:{}", broker.host.as_str(), broker.port);
        let response = Client::connect(&address, TIMEOUT)
            .and_then(|mut on_broker| on_broker.send(&request, 2))
            .with_context(|| format!("ListTransactions on broker {}", broker.node_id.0))?;
        super::check(
            response.error_code,
            None,
            &format!("ListTransactions on broker {}", broker.node_id.0),
        )?;
        for unknown in &response.unknown_state_filters {
            eprintln!("warning: no transaction state is called '{unknown}'");
        }
        for t in response.transaction_states {
            rows.push((
                t.transactional_id.to_string(),
                broker.node_id.0,
                t.producer_id.0,
                t.transaction_state.to_string(),
            ));
        }
    }
    rows.sort();
    println!(
        "{:<40} {:<12} {:<12} STATE",
        "TRANSACTIONAL-ID", "COORDINATOR", "PRODUCER-ID"
    );
    for (id, coordinator, producer_id, state) in rows {
        println!("{id:<40} {coordinator:<12} {producer_id:<12} {state}");
    }
    Ok(())
}

/// DescribeTransactions at the id's coordinator (FindCoordinator, key type 1).
fn describe(connect: &super::Connect, transactional_id: &str) -> anyhow::Result<()> {
    let mut client = connect.client()?;
    let found = client.send(
        &FindCoordinatorRequest::default()
            .with_key(s(transactional_id))
            .with_key_type(1),
        3,
    )?;
    super::check(
        found.error_code,
        found.error_message.as_deref(),
        &format!("finding the coordinator of '{transactional_id}'"),
    )?;
    let mut coordinator = Client::connect(&format!("{}:{}", found.host.as_str(), found.port), TIMEOUT)?;
    let request = DescribeTransactionsRequest::default().with_transactional_ids(vec![s(transactional_id).into()]);
    let response = coordinator.send(&request, 0)?;
    let state = response
        .transaction_states
        .first()
        .context("DescribeTransactions returned nothing")?;
    super::check(state.error_code, None, &format!("describing '{transactional_id}'"))?;
    let partitions: Vec<String> = state
        .topics
        .iter()
        .flat_map(|t| t.partitions.iter().map(move |p| format!("{}-{p}", t.topic.0)))
        .collect();
    println!("transactional id:  {transactional_id}");
    println!("coordinator:       {}", found.node_id.0);
    println!("producer id:       {}", state.producer_id.0);
    println!("producer epoch:    {}", state.producer_epoch);
    println!("state:             {}", state.transaction_state);
    println!("timeout ms:        {}", state.transaction_timeout_ms);
    println!("started (ms):      {}", state.transaction_start_time_ms);
    println!("partitions:        {}", partitions.join(","));
    Ok(())
}

/// A connection to the leader of `topic`'s partition `partition`.
fn leader_of(connect: &super::Connect, topic: &str, partition: i32) -> anyhow::Result<Client> {
    let mut client = connect.client()?;
    let metadata = metadata(&mut client, Some(topic))?;
    let t = metadata.topics.first().context("Metadata returned no topic")?;
    super::check(t.error_code, None, &format!("topic '{topic}'"))?;
    let leader = t
        .partitions
        .iter()
        .find(|p| p.partition_index == partition)
        .with_context(|| format!("{topic} has no partition {partition}"))?
        .leader_id
        .0;
    let broker = metadata
        .brokers
        .iter()
        .find(|b| b.node_id.0 == leader)
        .with_context(|| format!("{topic}-{partition} has no live leader"))?;
    Client::connect(&format!("{}:{}", broker.host.as_str(), broker.port), TIMEOUT)
}

fn producers(connect: &super::Connect, at: &PartitionArgs) -> anyhow::Result<(Client, Vec<ProducerState>)> {
    let mut leader = leader_of(connect, &at.topic, at.partition)?;
    let request = DescribeProducersRequest::default().with_topics(vec![
        TopicRequest::default()
            .with_name(TopicName(s(&at.topic)))
            .with_partition_indexes(vec![at.partition]),
    ]);
    let response = leader.send(&request, 0)?;
    let partition = response
        .topics
        .first()
        .and_then(|t| t.partitions.first())
        .context("DescribeProducers returned nothing")?;
    super::check(
        partition.error_code,
        partition.error_message.as_deref(),
        &format!("describing the producers of {}-{}", at.topic, at.partition),
    )?;
    let active = partition.active_producers.clone();
    Ok((leader, active))
}

fn describe_producers(connect: &super::Connect, at: &PartitionArgs) -> anyhow::Result<()> {
    let (_, active) = producers(connect, at)?;
    println!(
        "{:<12} {:<8} {:<12} {:<14} {:<16} TXN-START-OFFSET",
        "PRODUCER-ID", "EPOCH", "COORD-EPOCH", "LAST-SEQUENCE", "LAST-TIMESTAMP"
    );
    for p in active {
        let start = match p.current_txn_start_offset {
            offset if offset >= 0 => offset.to_string(),
            _ => "-".to_string(),
        };
        println!(
            "{:<12} {:<8} {:<12} {:<14} {:<16} {start}",
            p.producer_id.0, p.producer_epoch, p.coordinator_epoch, p.last_sequence, p.last_timestamp
        );
    }
    Ok(())
}

/// WriteTxnMarkers with one ABORT marker, to the partition's leader.
fn abort(connect: &super::Connect, args: &AbortArgs) -> anyhow::Result<()> {
    let at = &args.partition;
    let (mut leader, active) = producers(connect, at)?;
    let (producer_id, producer_epoch, coordinator_epoch) = match args.start_offset {
        Some(offset) => {
            let p = active
                .iter()
                .find(|p| p.current_txn_start_offset == offset)
                .with_context(|| {
                    format!(
                        "no open transaction starts at offset {offset} of {}-{}",
                        at.topic, at.partition
                    )
                })?;
            let epoch = i16::try_from(p.producer_epoch).context("producer epoch out of range")?;
            // A producer that never had a marker here has no coordinator epoch yet.
            (p.producer_id.0, epoch, p.coordinator_epoch.max(0))
        }
        None => match (args.producer_id, args.producer_epoch, args.coordinator_epoch) {
            (Some(id), Some(epoch), Some(coordinator_epoch)) => (id, epoch, coordinator_epoch),
            _ => bail!("--producer-id needs --producer-epoch and --coordinator-epoch"),
        },
    };
    let marker = WritableTxnMarker::default()
        .with_producer_id(ProducerId(producer_id))
        .with_producer_epoch(producer_epoch)
        .with_transaction_result(false)
        .with_coordinator_epoch(coordinator_epoch)
        .with_topics(vec![
            WritableTxnMarkerTopic::default()
                .with_name(TopicName(s(&at.topic)))
                .with_partition_indexes(vec![at.partition]),
        ]);
    let response = leader.send(&WriteTxnMarkersRequest::default().with_markers(vec![marker]), 1)?;
    let code = response
        .markers
        .first()
        .and_then(|m| m.topics.first())
        .and_then(|t| t.partitions.first())
        .context("WriteTxnMarkers returned nothing")?
        .error_code;
    super::check(
        code,
        None,
        &format!(
            "aborting producer {producer_id}'s transaction on {}-{}",
            at.topic, at.partition
        ),
    )?;
    println!(
        "aborted producer {producer_id}'s transaction on {}-{}",
        at.topic, at.partition
    );
    Ok(())
}
