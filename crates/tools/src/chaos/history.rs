//! What a campaign observed, in the order it happened: every send and how it
//! ended, every record the live consumer read, every fault. Times are
//! milliseconds since the campaign began. Saved as JSON lines (`history.jsonl`)
//! so that a verdict can be rechecked, or argued with, after the run.

use std::io::Write;
use std::path::Path;

use serde::Serialize;

/// A record's value names who sent it: `producer:seq`.
pub fn value(producer: u32, seq: u64) -> String {
    format!("{producer}:{seq}")
}

/// The `(producer, seq)` a value names, if it is one of the campaign's.
pub fn parse_value(value: &[u8]) -> Option<(u32, u64)> {
    let text = std::str::from_utf8(value).ok()?;
    let (producer, seq) = text.split_once(':')?;
    Some((producer.parse().ok()?, seq.parse().ok()?))
}

#[derive(Debug, Clone, Serialize)]
pub struct Send {
    pub producer: u32,
    pub seq: u64,
    pub partition: i32,
    pub sent_ms: u64,
    pub outcome: Outcome,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "outcome", rename_all = "snake_case")]
pub enum Outcome {
    Acked { offset: i64, at_ms: u64 },
    Failed { error: String, at_ms: u64 },
}

/// A record the live consumer read.
#[derive(Debug, Clone, Serialize)]
pub struct Read {
    pub partition: i32,
    pub offset: i64,
    pub value: String,
    pub at_ms: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum FaultKind {
    Kill,
    Pause,
    /// A node cut off from the other nodes (clients still reach it).
    Isolate,
    /// Two nodes cut off from each other; `node`, the third, sees both.
    Bridge,
    /// Every node in turn, from `node` on, stopped cleanly (SIGTERM) and started again.
    Restart,
    /// `node`'s disk filled up until no block is left, then freed.
    #[serde(rename = "disk")]
    FullDisk,
    /// `node`'s disk throttled to a trickle (blk-throttle: a few writes and
    /// a few KiB a second), then restored.
    #[serde(rename = "slow")]
    SlowDisk,
}

impl FaultKind {
    pub const ALL: [FaultKind; 7] = [
        FaultKind::Kill,
        FaultKind::Pause,
        FaultKind::Isolate,
        FaultKind::Bridge,
        FaultKind::Restart,
        FaultKind::FullDisk,
        FaultKind::SlowDisk,
    ];

    pub fn name(self) -> &'static str {
        match self {
            FaultKind::Kill => "kill",
            FaultKind::Pause => "pause",
            FaultKind::Isolate => "isolate",
            FaultKind::Bridge => "bridge",
            FaultKind::Restart => "restart",
            FaultKind::FullDisk => "disk",
            FaultKind::SlowDisk => "slow",
        }
    }

    /// Whether it needs each node in a network namespace of its own.
    pub fn parts_the_network(self) -> bool {
        matches!(self, FaultKind::Isolate | FaultKind::Bridge)
    }

    /// Whether it needs each node's data dir on a disk of its own.
    pub fn needs_own_disk(self) -> bool {
        matches!(self, FaultKind::FullDisk | FaultKind::SlowDisk)
    }

    /// When recovery is counted from: the fault's start, except for a full
    /// disk, whose partitions refuse writes (KAFKA_STORAGE_ERROR) for as long
    /// as it lasts, by design; its recovery counts from when space is back.
    pub fn recovery_from_ms(self, fault: &Fault) -> u64 {
        match self {
            FaultKind::FullDisk => fault.end_ms,
            _ => fault.start_ms,
        }
    }
}

/// One fault: `node` (a broker id) was hit at `start_ms` and healed
/// (restarted, resumed, reconnected) at `end_ms`.
#[derive(Debug, Clone, Serialize)]
pub struct Fault {
    pub kind: FaultKind,
    pub node: i32,
    pub start_ms: u64,
    pub end_ms: u64,
}

/// The final read of one partition: every record, by offset.
pub type Log = Vec<(i64, Vec<u8>)>;

pub struct History {
    pub sends: Vec<Send>,
    pub reads: Vec<Read>,
    pub group: super::group::GroupHistory,
    pub txn: super::txn::TxnHistory,
    pub faults: Vec<Fault>,
    /// Indexed by partition.
    pub logs: Vec<Log>,
    pub duration_ms: u64,
}

impl History {
    pub fn save(&self, path: &Path) -> anyhow::Result<()> {
        let mut out = std::io::BufWriter::new(std::fs::File::create(path)?);
        for fault in &self.faults {
            writeln!(out, "{}", serde_json::json!({"fault": fault}))?;
        }
        for send in &self.sends {
            writeln!(out, "{}", serde_json::json!({"send": send}))?;
        }
        for read in &self.reads {
            writeln!(out, "{}", serde_json::json!({"read": read}))?;
        }
        for read in &self.group.reads {
            writeln!(out, "{}", serde_json::json!({"group_read": read}))?;
        }
        for commit in &self.group.commits {
            writeln!(out, "{}", serde_json::json!({"group_commit": commit}))?;
        }
        for (partition, offset) in &self.group.final_committed {
            writeln!(
                out,
                "{}",
                serde_json::json!({"group_final": {"partition": partition, "offset": offset}})
            )?;
        }
        for txn in &self.txn.txns {
            writeln!(out, "{}", serde_json::json!({"txn": txn}))?;
        }
        for read in &self.txn.reads {
            writeln!(out, "{}", serde_json::json!({"txn_read": read}))?;
        }
        for (partition, log) in self.txn.logs.iter().enumerate() {
            for (offset, value) in log {
                writeln!(
                    out,
                    "{}",
                    serde_json::json!({"txn_final": {"partition": partition, "offset": offset, "value": value}})
                )?;
            }
        }
        for (partition, log) in self.logs.iter().enumerate() {
            for (offset, value) in log {
                let value = String::from_utf8_lossy(value);
                writeln!(
                    out,
                    "{}",
                    serde_json::json!({"final": {"partition": partition, "offset": offset, "value": value}})
                )?;
            }
        }
        out.flush()?;
        Ok(())
    }
}
