//! The consumer-group workload: members of one group (librdkafka, the classic
//! protocol) subscribed to the campaign's topic, committing what they read
//! every `COMMIT_EVERY` and each leaving and rejoining now and then, so the
//! group rebalances under the faults as well as between them. Checked
//! against the final logs and the offsets committed (`check_group`).

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use anyhow::Context;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer};
use rdkafka::message::Message;
use rdkafka::{Offset, TopicPartitionList};
use serde::Serialize;

use super::history::Log;
use super::workload::{Quiet, Spec, ms_since};

pub const GROUP: &str = "sluice-chaos-group";
const COMMIT_EVERY: Duration = Duration::from_millis(500);
/// Each member leaves and rejoins after this long in the group (staggered
/// by member), so the group rebalances every few seconds.
const MEMBERSHIP_MS: u64 = 20_000;
const SESSION_TIMEOUT_MS: u64 = 10_000;

/// A record a member read.
#[derive(Debug, Clone, Serialize)]
pub struct GroupRead {
    pub member: u32,
    pub partition: i32,
    pub offset: i64,
    pub at_ms: u64,
}

/// An offset commit the coordinator acknowledged: `offset` is the next one
/// to read.
#[derive(Debug, Clone, Serialize)]
pub struct GroupCommit {
    pub member: u32,
    pub partition: i32,
    pub offset: i64,
    pub at_ms: u64,
}

#[derive(Debug, Default)]
pub struct GroupHistory {
    pub members: u32,
    pub reads: Vec<GroupRead>,
    pub commits: Vec<GroupCommit>,
    /// Each partition's committed offset as a fresh client fetched it at the end.
    pub final_committed: HashMap<i32, i64>,
}

fn member_client(spec: &Spec) -> anyhow::Result<BaseConsumer<Quiet>> {
    let client: BaseConsumer<Quiet> = ClientConfig::new()
        .set("bootstrap.servers", &spec.bootstrap)
        .set("group.id", GROUP)
        .set("enable.auto.commit", "false")
        .set("enable.partition.eof", "false")
        .set("auto.offset.reset", "earliest")
        .set("session.timeout.ms", SESSION_TIMEOUT_MS.to_string())
        .set("heartbeat.interval.ms", "1000")
        .create_with_context(Quiet)
        .context("cannot create a group member")?;
    client.subscribe(&[&spec.topic])?;
    Ok(client)
}

/// Commits the member's positions; records them once acknowledged.
fn commit(client: &BaseConsumer<Quiet>, member: u32, start: Instant, commits: &mut Vec<GroupCommit>) {
    let Ok(positions) = client.position() else { return };
    let mut to_commit = TopicPartitionList::new();
    for e in positions.elements() {
        if let Offset::Offset(offset) = e.offset() {
            let _ = to_commit.add_partition_offset(e.topic(), e.partition(), Offset::Offset(offset));
        }
    }
    if to_commit.count() == 0 {
        return;
    }
    // Refused commits (a rebalance, a coordinator moving) are the client's to retry.
    if client.commit(&to_commit, CommitMode::Sync).is_ok() {
        let at_ms = ms_since(start);
        for e in to_commit.elements() {
            if let Offset::Offset(offset) = e.offset() {
                commits.push(GroupCommit {
                    member,
                    partition: e.partition(),
                    offset,
                    at_ms,
                });
            }
        }
    }
}

/// One member until `stop`: reads, commits, and rejoins as a new member every MEMBERSHIP_MS.
fn run_member(spec: &Spec, member: u32, start: Instant, stop: &AtomicBool) -> anyhow::Result<GroupHistory> {
    let mut history = GroupHistory::default();
    let stagger_ms = MEMBERSHIP_MS * u64::from(member) / u64::from(spec.group_members.max(1));
    let mut leave_at_ms = ms_since(start) + MEMBERSHIP_MS / 2 + stagger_ms;
    let mut client = member_client(spec)?;
    let mut last_commit = Instant::now();
    // Bounded by `stop`.
    while !stop.load(Ordering::Relaxed) {
        if let Some(Ok(message)) = client.poll(Duration::from_millis(100)) {
            history.reads.push(GroupRead {
                member,
                partition: message.partition(),
                offset: message.offset(),
                at_ms: ms_since(start),
            });
        }
        if last_commit.elapsed() >= COMMIT_EVERY {
            commit(&client, member, start, &mut history.commits);
            last_commit = Instant::now();
        }
        if ms_since(start) >= leave_at_ms {
            commit(&client, member, start, &mut history.commits);
            leave(client);
            client = member_client(spec)?;
            leave_at_ms = ms_since(start) + MEMBERSHIP_MS;
        }
    }
    commit(&client, member, start, &mut history.commits);
    leave(client);
    Ok(history)
}

/// How long a member waits for its partitions to be revoked before it closes.
const LEAVE_TIMEOUT: Duration = Duration::from_secs(5);

/// Leaves the group, then closes the client. Closing a member that still
/// holds partitions runs the revoke inside the close, where librdkafka's
/// rebalance_protocol() can wait forever (confluentinc/librdkafka#4041;
/// a 30-minute campaign hung so at a rejoin): unsubscribing first has the
/// revoke served by poll, as any rebalance. What it polls meanwhile is not
/// recorded: the next member reads it again from the committed offsets.
fn leave(client: BaseConsumer<Quiet>) {
    client.unsubscribe();
    let deadline = Instant::now() + LEAVE_TIMEOUT;
    // Bounded by LEAVE_TIMEOUT.
    while Instant::now() < deadline && client.assignment().is_ok_and(|a| a.count() > 0) {
        let _ = client.poll(Duration::from_millis(100));
    }
    drop(client); // LeaveGroup on close, with nothing left to revoke
}

/// Runs the members on threads of their own until `stop`.
pub fn spawn(
    spec: &Arc<Spec>,
    start: Instant,
    stop: &Arc<AtomicBool>,
) -> Vec<std::thread::JoinHandle<anyhow::Result<GroupHistory>>> {
    (0..spec.group_members)
        .map(|member| {
            let (spec, stop) = (Arc::clone(spec), Arc::clone(stop));
            std::thread::spawn(move || run_member(&spec, member, start, &stop))
        })
        .collect()
}

/// Joins the members and fetches the group's committed offsets.
pub fn join(
    spec: &Spec,
    members: Vec<std::thread::JoinHandle<anyhow::Result<GroupHistory>>>,
) -> anyhow::Result<GroupHistory> {
    let mut history = GroupHistory {
        members: spec.group_members,
        ..GroupHistory::default()
    };
    for member in members {
        let h = member
            .join()
            .map_err(|_| anyhow::anyhow!("a group member panicked"))??;
        history.reads.extend(h.reads);
        history.commits.extend(h.commits);
    }
    if spec.group_members > 0 {
        history.final_committed = fetch_committed(spec)?;
    }
    Ok(history)
}

fn fetch_committed(spec: &Spec) -> anyhow::Result<HashMap<i32, i64>> {
    let client: BaseConsumer<Quiet> = ClientConfig::new()
        .set("bootstrap.servers", &spec.bootstrap)
        .set("group.id", GROUP)
        .create_with_context(Quiet)
        .context("cannot create a client")?;
    let mut wanted = TopicPartitionList::new();
    for p in 0..spec.partitions {
        wanted.add_partition(&spec.topic, p);
    }
    let committed = client.committed_offsets(wanted, Duration::from_secs(30))?;
    Ok(committed
        .elements()
        .into_iter()
        .filter_map(|e| match e.offset() {
            Offset::Offset(offset) => Some((e.partition(), offset)),
            _ => None,
        })
        .collect())
}

/// What the group checker found.
#[derive(Debug, Default, Serialize)]
pub struct GroupVerdict {
    pub members: u32,
    pub reads: u64,
    pub commits: u64,
    /// An acknowledged commit lower than one acknowledged before it.
    pub commits_backwards: u64,
    /// A partition whose committed offset at the end is not the last one acknowledged.
    pub final_mismatches: u64,
    /// Records below a partition's committed offset that no member ever read.
    pub skipped: u64,
}

impl GroupVerdict {
    pub fn safe(&self) -> bool {
        self.commits_backwards == 0 && self.final_mismatches == 0 && self.skipped == 0
    }
}

/// At-least-once under rebalances: commits only move forward, the final
/// committed offsets are the last acknowledged, and every record below them
/// was read by some member.
pub fn check_group(history: &GroupHistory, logs: &[Log], examples: &mut Vec<String>) -> GroupVerdict {
    let mut verdict = GroupVerdict {
        members: history.members,
        reads: history.reads.len() as u64,
        commits: history.commits.len() as u64,
        ..GroupVerdict::default()
    };
    let mut commits: Vec<&GroupCommit> = history.commits.iter().collect();
    commits.sort_by_key(|c| c.at_ms);
    let mut last: HashMap<i32, i64> = HashMap::new();
    for c in commits {
        let before = last.entry(c.partition).or_insert(c.offset);
        if c.offset < *before {
            verdict.commits_backwards += 1;
            examples.push(format!(
                "group: partition {} committed {} at {} ms after {}",
                c.partition, c.offset, c.at_ms, before
            ));
        }
        *before = (*before).max(c.offset);
    }
    for (partition, offset) in &last {
        if history.final_committed.get(partition) != Some(offset) {
            verdict.final_mismatches += 1;
            examples.push(format!(
                "group: partition {partition} ends committed at {:?}, the last commit acknowledged {offset}",
                history.final_committed.get(partition)
            ));
        }
    }
    let mut read: HashMap<i32, std::collections::HashSet<i64>> = HashMap::new();
    for r in &history.reads {
        read.entry(r.partition).or_default().insert(r.offset);
    }
    for (partition, committed) in &history.final_committed {
        let Some(log) = logs.get(*partition as usize) else {
            continue;
        };
        let seen = read.get(partition);
        for (offset, _) in log.iter().take_while(|(o, _)| o < committed) {
            if !seen.is_some_and(|s| s.contains(offset)) {
                verdict.skipped += 1;
                if verdict.skipped <= 3 {
                    examples.push(format!(
                        "group: offset {offset} of partition {partition} is below the commit {committed} but no member read it"
                    ));
                }
            }
        }
    }
    verdict
}
