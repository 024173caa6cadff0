//! `sluice groups`: list, describe, reset the offsets of and delete consumer
//! groups over the Kafka protocol, after `kafka-consumer-groups.sh`.

use std::collections::{BTreeMap, BTreeSet};

use anyhow::{Context, bail};
use bytes::Bytes;
use kafka_protocol::messages::offset_commit_request::{OffsetCommitRequestPartition, OffsetCommitRequestTopic};
use kafka_protocol::messages::*;

use super::s;
use crate::client::Client;
use crate::wire::Reader;

#[derive(clap::Args)]
pub struct GroupsArgs {
    #[command(flatten)]
    connect: super::Connect,
    #[command(subcommand)]
    command: GroupsCommand,
}

#[derive(clap::Subcommand)]
enum GroupsCommand {
    /// List every group, with its state.
    List,
    /// Members, assignments, committed offsets, log end offsets and lag of a group.
    Describe { group: String },
    /// Move a group's committed offsets; the group must have no active members.
    /// Prints the plan; applies it only with --execute.
    ResetOffsets(ResetArgs),
    /// Delete a group without active members, with its committed offsets.
    Delete { group: String },
}

#[derive(clap::Args)]
#[command(group(clap::ArgGroup::new("target").required(true).args(["to_earliest", "to_latest", "to_offset", "to_datetime"])))]
#[command(group(clap::ArgGroup::new("scope").required(true).args(["topic", "all_topics"])))]
struct ResetArgs {
    group: String,
    /// A topic, or TOPIC:P1,P2 for some of its partitions. Repeatable.
    #[arg(long)]
    topic: Vec<String>,
    /// Every topic the group has committed offsets for.
    #[arg(long)]
    all_topics: bool,
    #[arg(long)]
    to_earliest: bool,
    #[arg(long)]
    to_latest: bool,
    /// An offset; clamped to the partition's earliest and latest, as Kafka does.
    #[arg(long)]
    to_offset: Option<i64>,
    /// YYYY-MM-DDTHH:MM:SS[.sss][Z|±HH:MM] (UTC without a zone), or epoch milliseconds.
    #[arg(long)]
    to_datetime: Option<String>,
    /// Apply the plan (without it, only print it).
    #[arg(long)]
    execute: bool,
}

use crate::client::admin::{EARLIEST, LATEST, list_offsets};

pub fn run(args: GroupsArgs) -> anyhow::Result<()> {
    let connect = &args.connect;
    match args.command {
        GroupsCommand::List => list(connect),
        GroupsCommand::Describe { group } => describe(&mut coordinator(connect, &group)?, &group),
        GroupsCommand::ResetOffsets(reset) => reset_offsets(&mut coordinator(connect, &reset.group)?, reset),
        GroupsCommand::Delete { group } => delete(&mut coordinator(connect, &group)?, &group),
    }
}

fn check(code: i16, what: &str) -> anyhow::Result<()> {
    super::check(code, None, &format!("{what} failed"))
}

/// A connection to `group`'s coordinator, found through the bootstrap
/// broker (in a cluster, groups are spread over the brokers).
fn coordinator(connect: &super::Connect, group: &str) -> anyhow::Result<Client> {
    let mut client = connect.client()?;
    let request = FindCoordinatorRequest::default().with_key(s(group)).with_key_type(0);
    let response = client.send(&request, 3)?;
    super::check(
        response.error_code,
        response.error_message.as_deref(),
        &format!("finding the coordinator of group '{group}'"),
    )?;
    Client::connect(&format!("{}:{}", response.host.as_str(), response.port), super::TIMEOUT)
}

/// Every group of every broker (each coordinates its own share).
fn list(connect: &super::Connect) -> anyhow::Result<()> {
    let mut client = connect.client()?;
    let metadata = super::topic::metadata(&mut client, Some(GROUPS_TOPIC))?;
    let mut groups: BTreeMap<String, (String, String)> = BTreeMap::new();
    for broker in &metadata.brokers {
        let address = format!("{}:{}", broker.host.as_str(), broker.port);
        // A broker that just died is listed until the cluster fences it.
        let response = match Client::connect(&address, super::TIMEOUT)
            .and_then(|mut on_broker| on_broker.send(&ListGroupsRequest::default(), 4))
        {
            Ok(response) => response,
            Err(e) => {
                eprintln!(
                    "warning: broker {} did not answer, its groups are missing: {e:#}",
                    broker.node_id.0
                );
                continue;
            }
        };
        check(
            response.error_code,
            &format!("ListGroups on broker {}", broker.node_id.0),
        )?;
        for g in response.groups {
            groups.insert(
                g.group_id.0.to_string(),
                (g.group_state.to_string(), g.protocol_type.to_string()),
            );
        }
    }
    println!("{:<40} {:<20} PROTOCOL-TYPE", "GROUP", "STATE");
    for (group, (state, protocol_type)) in groups {
        println!("{group:<40} {state:<20} {protocol_type}");
    }
    Ok(())
}

/// The topic whose metadata `list` asks for: only the broker list matters.
const GROUPS_TOPIC: &str = crate::group::OFFSETS_TOPIC;

/// The topic partitions of a consumer-protocol assignment (version, [topic, [partition]], user data).
fn assigned_partitions(assignment: &Bytes) -> Vec<(String, i32)> {
    let mut out = Vec::new();
    let mut r = Reader::new(assignment);
    if r.i16().is_err() {
        return out;
    }
    let Ok(topics) = r.array_len(false) else { return out };
    for _ in 0..topics {
        let (Ok(topic), Ok(count)) = (r.str(false), r.array_len(false)) else {
            break;
        };
        for _ in 0..count {
            match r.i32() {
                Ok(p) => out.push((topic.to_string(), p)),
                Err(_) => return out,
            }
        }
    }
    out
}

fn describe_group(client: &mut Client, group: &str) -> anyhow::Result<describe_groups_response::DescribedGroup> {
    let request = DescribeGroupsRequest::default().with_groups(vec![GroupId(s(group))]);
    let mut response = client.send(&request, 5)?;
    let described = response.groups.pop().context("DescribeGroups returned no group")?;
    check(described.error_code, "DescribeGroups")?;
    Ok(described)
}

/// Committed offsets of a group: (topic, partition) → offset.
fn committed(client: &mut Client, group: &str) -> anyhow::Result<BTreeMap<(String, i32), i64>> {
    let request = OffsetFetchRequest::default()
        .with_group_id(GroupId(s(group)))
        .with_topics(None);
    let response = client.send(&request, 7)?;
    check(response.error_code, "OffsetFetch")?;
    let mut out = BTreeMap::new();
    for t in response.topics {
        for p in t.partitions {
            check(p.error_code, "OffsetFetch")?;
            if p.committed_offset >= 0 {
                out.insert((t.name.0.to_string(), p.partition_index), p.committed_offset);
            }
        }
    }
    Ok(out)
}

/// A group's members as describe prints them: (member id, host, client id, partitions).
type Members = Vec<(String, String, String, Vec<(String, i32)>)>;

/// The members of a KIP-848 group, or `None` if the group is not one.
fn consumer_group_members(client: &mut Client, group: &str) -> anyhow::Result<Option<(String, Members)>> {
    let request = ConsumerGroupDescribeRequest::default().with_group_ids(vec![GroupId(s(group))]);
    let mut response = client.send(&request, 0)?;
    let Some(described) = response.groups.pop() else {
        return Ok(None);
    };
    if described.error_code != 0 {
        return Ok(None);
    }
    let members = described
        .members
        .iter()
        .map(|m| {
            let partitions = m
                .assignment
                .topic_partitions
                .iter()
                .flat_map(|t| t.partitions.iter().map(|p| (t.topic_name.0.to_string(), *p)))
                .collect();
            (
                m.member_id.to_string(),
                m.client_host.to_string(),
                m.client_id.to_string(),
                partitions,
            )
        })
        .collect();
    let summary = format!(
        "state {}, assignor {} (KIP-848), epoch {}",
        described.group_state, described.assignor_name, described.group_epoch
    );
    Ok(Some((summary, members)))
}

/// The members of a group of either protocol, with a one-line summary of its state.
fn group_members(client: &mut Client, group: &str) -> anyhow::Result<(String, Members)> {
    if let Some(found) = consumer_group_members(client, group)? {
        return Ok(found);
    }
    let described = describe_group(client, group)?;
    let members = described
        .members
        .iter()
        .map(|m| {
            (
                m.member_id.to_string(),
                m.client_host.to_string(),
                m.client_id.to_string(),
                assigned_partitions(&m.member_assignment),
            )
        })
        .collect();
    Ok((
        format!("state {}, protocol {}", described.group_state, described.protocol_data),
        members,
    ))
}

fn describe(client: &mut Client, group: &str) -> anyhow::Result<()> {
    let (summary, members) = group_members(client, group)?;
    let committed = committed(client, group)?;
    let mut owners: BTreeMap<(String, i32), (String, String, String)> = BTreeMap::new();
    for (member_id, host, client_id, partitions) in &members {
        for tp in partitions {
            owners.insert(tp.clone(), (member_id.clone(), host.clone(), client_id.clone()));
        }
    }
    let partitions: BTreeSet<(String, i32)> = committed.keys().chain(owners.keys()).cloned().collect();
    let ends = if partitions.is_empty() {
        BTreeMap::new()
    } else {
        list_offsets(client, &partitions, LATEST)?
    };
    if members.is_empty() {
        println!("Consumer group '{group}' has no active members ({summary}).");
    } else {
        println!("Consumer group '{group}': {summary}, {} members.", members.len());
    }
    println!(
        "\n{:<24} {:<24} {:>9} {:>15} {:>15} {:>8} {:<48} {:<16} CLIENT-ID",
        "GROUP", "TOPIC", "PARTITION", "CURRENT-OFFSET", "LOG-END-OFFSET", "LAG", "CONSUMER-ID", "HOST"
    );
    for tp in &partitions {
        let current = committed.get(tp);
        let end = ends.get(tp).copied().unwrap_or(-1);
        let lag = current.map_or("-".to_string(), |c| (end - c).max(0).to_string());
        let (member, host, client_id) = owners
            .get(tp)
            .cloned()
            .unwrap_or_else(|| ("-".into(), "-".into(), "-".into()));
        println!(
            "{:<24} {:<24} {:>9} {:>15} {:>15} {:>8} {:<48} {:<16} {}",
            group,
            tp.0,
            tp.1,
            current.map_or("-".to_string(), i64::to_string),
            end,
            lag,
            member,
            host,
            client_id
        );
    }
    for (member_id, host, client_id, _) in members.iter().filter(|m| m.3.is_empty()) {
        println!(
            "{:<24} {:<24} {:>9} {:>15} {:>15} {:>8} {:<48} {:<16} {}",
            group, "-", "-", "-", "-", "-", member_id, host, client_id
        );
    }
    Ok(())
}

/// The partitions named by `--topic` (all of a topic's, or TOPIC:P1,P2) or `--all-topics`.
fn reset_scope(client: &mut Client, args: &ResetArgs) -> anyhow::Result<BTreeSet<(String, i32)>> {
    if args.all_topics {
        return Ok(committed(client, &args.group)?.into_keys().collect());
    }
    let mut out = BTreeSet::new();
    for spec in &args.topic {
        match spec.split_once(':') {
            Some((topic, list)) => {
                for p in list.split(',') {
                    let p = p.trim().parse().with_context(|| format!("bad partition in '{spec}'"))?;
                    out.insert((topic.to_string(), p));
                }
            }
            None => {
                let response = super::topic::metadata(client, Some(spec))?;
                for t in response.topics {
                    check(t.error_code, &format!("Metadata for topic '{spec}'"))?;
                    out.extend(t.partitions.iter().map(|p| (spec.clone(), p.partition_index)));
                }
            }
        }
    }
    Ok(out)
}

fn reset_offsets(client: &mut Client, args: ResetArgs) -> anyhow::Result<()> {
    let described = describe_group(client, &args.group)?;
    let state = described.group_state.to_string();
    if state != "Empty" && state != "Dead" {
        bail!(
            "assignments can only be reset if the group '{}' is inactive, but the current state is {state}",
            args.group
        );
    }
    let partitions = reset_scope(client, &args)?;
    if partitions.is_empty() {
        bail!("no partitions to reset");
    }
    let targets = if args.to_earliest {
        list_offsets(client, &partitions, EARLIEST)?
    } else if args.to_latest {
        list_offsets(client, &partitions, LATEST)?
    } else if let Some(offset) = args.to_offset {
        let earliest = list_offsets(client, &partitions, EARLIEST)?;
        let latest = list_offsets(client, &partitions, LATEST)?;
        partitions
            .iter()
            .map(|tp| (tp.clone(), offset.clamp(earliest[tp], latest[tp])))
            .collect()
    } else {
        let text = args.to_datetime.as_deref().expect("clap requires one target");
        let at = parse_datetime_ms(text).with_context(|| format!("cannot read the date-time '{text}'"))?;
        let found = list_offsets(client, &partitions, at)?;
        let latest = list_offsets(client, &partitions, LATEST)?;
        // No record at or after the time: the end of the partition, as Kafka does.
        found
            .into_iter()
            .map(|(tp, offset)| {
                let offset = if offset < 0 { latest[&tp] } else { offset };
                (tp, offset)
            })
            .collect()
    };
    println!(
        "{:<24} {:<24} {:>9} {:>12}",
        "GROUP", "TOPIC", "PARTITION", "NEW-OFFSET"
    );
    for ((topic, p), offset) in &targets {
        println!("{:<24} {:<24} {:>9} {:>12}", args.group, topic, p, offset);
    }
    if !args.execute {
        println!("\nDry run: nothing changed. Add --execute to apply.");
        return Ok(());
    }
    commit_offsets(client, &args.group, &targets)
}

fn commit_offsets(client: &mut Client, group: &str, targets: &BTreeMap<(String, i32), i64>) -> anyhow::Result<()> {
    let mut by_topic: BTreeMap<&str, Vec<OffsetCommitRequestPartition>> = BTreeMap::new();
    for ((topic, p), offset) in targets {
        by_topic.entry(topic).or_default().push(
            OffsetCommitRequestPartition::default()
                .with_partition_index(*p)
                .with_committed_offset(*offset)
                .with_committed_leader_epoch(-1),
        );
    }
    let topics = by_topic
        .into_iter()
        .map(|(topic, partitions)| {
            OffsetCommitRequestTopic::default()
                .with_name(TopicName(s(topic)))
                .with_partitions(partitions)
        })
        .collect();
    let request = OffsetCommitRequest::default()
        .with_group_id(GroupId(s(group)))
        .with_generation_id_or_member_epoch(-1)
        .with_topics(topics);
    let response = client.send(&request, 8)?;
    for t in response.topics {
        for p in t.partitions {
            check(
                p.error_code,
                &format!("OffsetCommit for {}-{}", t.name.0, p.partition_index),
            )?;
        }
    }
    Ok(())
}

fn delete(client: &mut Client, group: &str) -> anyhow::Result<()> {
    let request = DeleteGroupsRequest::default().with_groups_names(vec![GroupId(s(group))]);
    let response = client.send(&request, 2)?;
    for r in response.results {
        match r.error_code {
            0 => println!("Deletion of requested consumer group '{group}' was successful."),
            68 => bail!("group '{group}' has active members (NON_EMPTY_GROUP)"),
            69 => bail!("group '{group}' does not exist (GROUP_ID_NOT_FOUND)"),
            code => check(code, "DeleteGroups")?,
        }
    }
    Ok(())
}

/// Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's algorithm).
fn days_from_civil(year: i64, month: i64, day: i64) -> i64 {
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (month + 9) % 12;
    let doy = (153 * mp + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// Kafka's reset format `YYYY-MM-DDTHH:mm:SS.sss`, optional zone `Z`/`±HH:MM`
/// (UTC when absent), or plain epoch milliseconds.
pub fn parse_datetime_ms(text: &str) -> Option<i64> {
    if let Ok(ms) = text.parse::<i64>() {
        return Some(ms);
    }
    let (date, time) = text.split_once('T')?;
    let mut d = date.split('-').map(|x| x.parse::<i64>().ok());
    let (year, month, day) = (d.next()??, d.next()??, d.next()??);
    let (clock, offset_min) = if let Some(rest) = time.strip_suffix('Z') {
        (rest, 0)
    } else if let Some(at) = time.rfind(['+', '-']) {
        let (clock, zone) = time.split_at(at);
        let sign = if zone.starts_with('-') { -1 } else { 1 };
        let (h, m) = zone[1..].split_once(':')?;
        (clock, sign * (h.parse::<i64>().ok()? * 60 + m.parse::<i64>().ok()?))
    } else {
        (time, 0)
    };
    let (hms, millis) = clock.split_once('.').unwrap_or((clock, "0"));
    let mut t = hms.split(':').map(|x| x.parse::<i64>().ok());
    let (h, m, sec) = (t.next()??, t.next()??, t.next().unwrap_or(Some(0))?);
    let millis: i64 = format!("{millis:0<3}").get(..3)?.parse().ok()?;
    if !(1..=12).contains(&month) || !(1..=31).contains(&day) || h > 23 || m > 59 || sec > 60 {
        return None;
    }
    let seconds = days_from_civil(year, month, day) * 86_400 + h * 3600 + m * 60 + sec - offset_min * 60;
    Some(seconds * 1000 + millis)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn datetimes_parse_like_kafka_consumer_groups() {
        assert_eq!(parse_datetime_ms("1970-01-01T00:00:00.000"), Some(0));
        assert_eq!(parse_datetime_ms("2024-02-29T12:34:56.789Z"), Some(1_709_210_096_789));
        assert_eq!(
            parse_datetime_ms("2024-02-29T14:34:56.789+02:00"),
            Some(1_709_210_096_789)
        );
        assert_eq!(parse_datetime_ms("2024-02-29T12:34:56"), Some(1_709_210_096_000));
        assert_eq!(parse_datetime_ms("1709210096789"), Some(1_709_210_096_789));
        assert_eq!(parse_datetime_ms("2024-13-01T00:00:00"), None);
        assert_eq!(parse_datetime_ms("yesterday"), None);
    }

    #[test]
    fn consumer_protocol_assignments_decode() {
        // version 1, one topic "t" with partitions 0 and 3, empty user data.
        let bytes = Bytes::from_static(&[
            0, 1, 0, 0, 0, 1, 0, 1, b't', 0, 0, 0, 2, 0, 0, 0, 0, 0, 0, 0, 3, 0, 0, 0, 0,
        ]);
        assert_eq!(
            assigned_partitions(&bytes),
            vec![("t".to_string(), 0), ("t".to_string(), 3)]
        );
        assert!(assigned_partitions(&Bytes::from_static(&[0])).is_empty());
    }
}
