//! The checkers: what a history says about safety (nothing acknowledged
//! lost, moved, duplicated or reordered; no offset holes; no read that later
//! vanished; no offset a live consumer skipped) and liveness (sends that
//! failed; how long each fault kept some partition from accepting writes).

use std::collections::HashMap;

use serde::Serialize;

use super::history::{Fault, FaultKind, History, Outcome, parse_value};

/// Anomalies listed by example, at most this many.
const EXAMPLES_MAX: usize = 20;

#[derive(Debug, Default, Serialize)]
pub struct Verdict {
    pub sends: u64,
    pub acknowledged: u64,
    /// Sends the client gave up on (after its own retries): a liveness failure.
    pub failed_sends: u64,
    pub lost: u64,
    /// Acknowledged at one offset, stored at another.
    pub moved: u64,
    pub duplicated: u64,
    pub reordered: u64,
    pub holes: u64,
    /// Read by the live consumer, then gone (or changed) in the final log.
    pub vanished_reads: u64,
    /// Offsets the live consumer stepped over that the final log holds.
    pub skipped_reads: u64,
    pub recovery: Vec<Recovery>,
    pub recovery_bound_ms: u64,
    /// How long the workload ran: acknowledged / duration is the throughput.
    pub duration_ms: u64,
    pub group: super::group::GroupVerdict,
    pub txn: super::txn::TxnVerdict,
    pub examples: Vec<String>,
}

/// The longest time any partition accepted no write around one fault.
#[derive(Debug, Clone, Serialize)]
pub struct Recovery {
    pub kind: FaultKind,
    pub node: i32,
    pub start_ms: u64,
    pub recovery_ms: u64,
    pub partition: i32,
}

impl Verdict {
    pub fn safe(&self) -> bool {
        self.lost
            + self.moved
            + self.duplicated
            + self.reordered
            + self.holes
            + self.vanished_reads
            + self.skipped_reads
            == 0
            && self.group.safe()
            && self.txn.safe()
    }

    pub fn live(&self) -> bool {
        self.failed_sends == 0
            && self.recovery.iter().all(|r| r.recovery_ms <= self.recovery_bound_ms)
            && self.txn.live()
    }

    fn example(&mut self, text: String) {
        if self.examples.len() < EXAMPLES_MAX {
            self.examples.push(text);
        }
    }
}

pub fn check(history: &History, recovery_bound_ms: u64) -> Verdict {
    let mut verdict = Verdict {
        recovery_bound_ms,
        duration_ms: history.duration_ms,
        ..Verdict::default()
    };
    let stored = stored_at(history);
    check_sends(history, &stored, &mut verdict);
    check_logs(history, &stored, &mut verdict);
    check_reads(history, &mut verdict);
    verdict.recovery = recoveries(history);
    let mut examples = Vec::new();
    verdict.group = super::group::check_group(&history.group, &history.logs, &mut examples);
    verdict.txn = super::txn::check_txns(&history.txn, &history.faults, history.duration_ms, &mut examples);
    for example in examples {
        verdict.example(example);
    }
    verdict
}

/// Where each of the campaign's values is in the final logs.
fn stored_at(history: &History) -> HashMap<(u32, u64), Vec<(i32, i64)>> {
    let mut stored: HashMap<(u32, u64), Vec<(i32, i64)>> = HashMap::new();
    for (partition, log) in history.logs.iter().enumerate() {
        for (offset, value) in log {
            if let Some(id) = parse_value(value) {
                stored.entry(id).or_default().push((partition as i32, *offset));
            }
        }
    }
    stored
}

fn check_sends(history: &History, stored: &HashMap<(u32, u64), Vec<(i32, i64)>>, verdict: &mut Verdict) {
    for send in &history.sends {
        verdict.sends += 1;
        match &send.outcome {
            Outcome::Failed { error, at_ms } => {
                verdict.failed_sends += 1;
                verdict.example(format!(
                    "send {}:{} to partition {} at {} ms failed at {at_ms} ms: {error}",
                    send.producer, send.seq, send.partition, send.sent_ms
                ));
            }
            Outcome::Acked { offset, .. } => {
                verdict.acknowledged += 1;
                match stored.get(&(send.producer, send.seq)) {
                    None => {
                        verdict.lost += 1;
                        verdict.example(format!(
                            "lost: {}:{} acknowledged at partition {} offset {offset}",
                            send.producer, send.seq, send.partition
                        ));
                    }
                    Some(places) if !places.contains(&(send.partition, *offset)) => {
                        verdict.moved += 1;
                        verdict.example(format!(
                            "moved: {}:{} acknowledged at {}/{offset}, stored at {places:?}",
                            send.producer, send.seq, send.partition
                        ));
                    }
                    Some(_) => {}
                }
            }
        }
    }
}

/// Duplicates, per-producer order within each partition, and offset holes.
fn check_logs(history: &History, stored: &HashMap<(u32, u64), Vec<(i32, i64)>>, verdict: &mut Verdict) {
    let mut duplicated: Vec<_> = stored.iter().filter(|(_, places)| places.len() > 1).collect();
    duplicated.sort();
    for ((producer, seq), places) in duplicated {
        verdict.duplicated += places.len() as u64 - 1;
        verdict.example(format!("duplicated: {producer}:{seq} stored at {places:?}"));
    }
    for (partition, log) in history.logs.iter().enumerate() {
        let mut last_seq: HashMap<u32, u64> = HashMap::new();
        let mut expected_offset = 0;
        for (offset, value) in log {
            if *offset > expected_offset {
                verdict.holes += (*offset - expected_offset) as u64;
                verdict.example(format!(
                    "hole: partition {partition} offsets {expected_offset}..{offset} missing"
                ));
            }
            expected_offset = offset + 1;
            let Some((producer, seq)) = parse_value(value) else {
                continue;
            };
            if let Some(&before) = last_seq.get(&producer)
                && seq < before
            {
                verdict.reordered += 1;
                verdict.example(format!(
                    "reordered: partition {partition} offset {offset} holds {producer}:{seq} after {producer}:{before}"
                ));
            }
            last_seq.insert(producer, seq);
        }
    }
}

/// Reads that vanished, and offsets the live consumer skipped.
fn check_reads(history: &History, verdict: &mut Verdict) {
    let finals: Vec<HashMap<i64, &[u8]>> = history
        .logs
        .iter()
        .map(|log| log.iter().map(|(o, v)| (*o, v.as_slice())).collect())
        .collect();
    let mut next_offset: HashMap<i32, i64> = HashMap::new();
    for read in &history.reads {
        let Some(log) = finals.get(read.partition as usize) else {
            continue;
        };
        if log.get(&read.offset) != Some(&read.value.as_bytes()) {
            verdict.vanished_reads += 1;
            verdict.example(format!(
                "vanished: {} read at partition {} offset {} ({} ms), final log holds {:?}",
                read.value,
                read.partition,
                read.offset,
                read.at_ms,
                log.get(&read.offset).map(|v| String::from_utf8_lossy(v))
            ));
        }
        let expected = next_offset.get(&read.partition).copied().unwrap_or(0);
        if read.offset > expected {
            let skipped = (expected..read.offset).filter(|o| log.contains_key(o)).count() as u64;
            if skipped > 0 {
                verdict.skipped_reads += skipped;
                verdict.example(format!(
                    "skipped: the live consumer went from partition {} offset {expected} to {}",
                    read.partition, read.offset
                ));
            }
        }
        next_offset.insert(read.partition, read.offset + 1);
    }
}

/// For each fault: how long some partition went without an acknowledged
/// write because of it, over every partition (`outage`).
fn recoveries(history: &History) -> Vec<Recovery> {
    let partitions = history.logs.len();
    let mut acks: Vec<Vec<u64>> = vec![Vec::new(); partitions];
    for send in &history.sends {
        if let (Outcome::Acked { at_ms, .. }, Some(times)) = (&send.outcome, acks.get_mut(send.partition as usize)) {
            times.push(*at_ms);
        }
    }
    for times in &mut acks {
        times.sort_unstable();
    }
    fault_windows(&history.faults, history.duration_ms)
        .into_iter()
        .map(|(fault, window_end_ms)| {
            let (partition, recovery_ms) = acks
                .iter()
                .enumerate()
                .map(|(p, times)| {
                    (
                        p as i32,
                        outage(times, fault.kind.recovery_from_ms(fault), window_end_ms),
                    )
                })
                .max_by_key(|(_, gap)| *gap)
                .unwrap_or((-1, 0));
            Recovery {
                kind: fault.kind,
                node: fault.node,
                start_ms: fault.start_ms,
                recovery_ms,
                partition,
            }
        })
        .collect()
}

/// Each fault in start order, with where its window ends: the next fault's
/// start, or the end of the run.
pub(super) fn fault_windows(faults: &[Fault], duration_ms: u64) -> Vec<(&Fault, u64)> {
    let mut faults: Vec<&Fault> = faults.iter().collect();
    faults.sort_by_key(|f| f.start_ms);
    let ends: Vec<u64> = faults
        .iter()
        .skip(1)
        .map(|f| f.start_ms)
        .chain(std::iter::once(duration_ms))
        .collect();
    faults.into_iter().zip(ends).collect()
}

/// One partition's outage in a fault's window `[from_ms, to_ms)` (`times`
/// sorted): from the fault to the first acknowledgement after it, or the
/// longest gap between acknowledgements that begins in the window (a leader
/// moving when the faulty node comes back), whichever is longer. A gap
/// counts until `to_ms` at most.
pub(super) fn outage(times: &[u64], from_ms: u64, to_ms: u64) -> u64 {
    let after = &times[times.partition_point(|&t| t <= from_ms)..];
    let Some(&first) = after.first() else {
        return to_ms.saturating_sub(from_ms);
    };
    let mut longest = first.min(to_ms) - from_ms;
    let mut last = first;
    for &t in &after[1..] {
        if last >= to_ms {
            break;
        }
        // A gap running into the next fault's window is that fault's from its start.
        longest = longest.max(t.min(to_ms) - last);
        last = t;
    }
    if last < to_ms {
        longest = longest.max(to_ms - last);
    }
    longest
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::chaos::history::{Read, Send, value};

    fn acked(producer: u32, seq: u64, partition: i32, offset: i64, at_ms: u64) -> Send {
        Send {
            producer,
            seq,
            partition,
            sent_ms: at_ms,
            outcome: Outcome::Acked { offset, at_ms },
        }
    }

    fn log(values: &[(i64, &str)]) -> Vec<(i64, Vec<u8>)> {
        values.iter().map(|(o, v)| (*o, v.as_bytes().to_vec())).collect()
    }

    fn history(sends: Vec<Send>, reads: Vec<Read>, logs: Vec<Vec<(i64, Vec<u8>)>>) -> History {
        History {
            sends,
            reads,
            group: Default::default(),
            txn: Default::default(),
            faults: Vec::new(),
            logs,
            duration_ms: 100,
        }
    }

    #[test]
    fn a_clean_history_passes() {
        let h = history(
            vec![acked(0, 0, 0, 0, 1), acked(0, 1, 0, 1, 2)],
            vec![Read {
                partition: 0,
                offset: 0,
                value: value(0, 0),
                at_ms: 3,
            }],
            vec![log(&[(0, "0:0"), (1, "0:1")])],
        );
        let v = check(&h, 1000);
        assert!(v.safe() && v.live(), "{v:?}");
        assert_eq!((v.sends, v.acknowledged), (2, 2));
    }

    #[test]
    fn every_anomaly_is_counted() {
        let h = history(
            vec![
                acked(0, 0, 0, 0, 1),
                acked(0, 1, 0, 1, 2), // lost
                acked(0, 2, 0, 5, 3), // moved: stored at 3
                acked(1, 0, 0, 2, 4),
                Send {
                    producer: 1,
                    seq: 1,
                    partition: 0,
                    sent_ms: 5,
                    outcome: Outcome::Failed {
                        error: "timed out".into(),
                        at_ms: 50,
                    },
                },
            ],
            vec![
                Read {
                    partition: 0,
                    offset: 0,
                    value: value(0, 0),
                    at_ms: 3,
                },
                // Skips offset 2, which the final log holds; offset 4 then changed.
                Read {
                    partition: 0,
                    offset: 3,
                    value: value(0, 2),
                    at_ms: 4,
                },
                Read {
                    partition: 0,
                    offset: 4,
                    value: value(0, 9),
                    at_ms: 5,
                },
            ],
            // A hole at offset 1; 1:0 twice; 0:0 after 0:2 is reordered.
            vec![log(&[(0, "0:0"), (2, "1:0"), (3, "0:2"), (4, "1:0"), (5, "0:0")])],
        );
        let v = check(&h, 1000);
        assert_eq!(v.lost, 1, "{v:?}");
        assert_eq!(v.moved, 1);
        assert_eq!(v.failed_sends, 1);
        assert_eq!(v.holes, 1);
        assert_eq!(v.duplicated, 2, "1:0 and 0:0 each stored twice");
        assert_eq!(v.reordered, 1);
        assert_eq!(v.skipped_reads, 1, "offset 1 is a hole, offset 2 was skipped");
        assert_eq!(v.vanished_reads, 1);
        assert!(!v.safe() && !v.live());
    }

    #[test]
    fn recovery_is_each_faults_longest_outage() {
        let mut h = history(
            vec![
                acked(0, 0, 0, 0, 10),
                acked(0, 1, 0, 1, 20),
                acked(0, 2, 0, 2, 70),
                acked(0, 3, 1, 0, 15),
                acked(0, 4, 1, 1, 90),
            ],
            Vec::new(),
            vec![
                log(&[(0, "0:0"), (1, "0:1"), (2, "0:2")]),
                log(&[(0, "0:3"), (1, "0:4")]),
            ],
        );
        h.faults = vec![
            Fault {
                kind: FaultKind::Pause,
                node: 2,
                start_ms: 25,
                end_ms: 30,
            },
            Fault {
                kind: FaultKind::Kill,
                node: 1,
                start_ms: 95,
                end_ms: 96,
            },
        ];
        let v = check(&h, 60);
        assert_eq!(
            v.recovery[0].recovery_ms, 65,
            "partition 1: the fault at 25 → its next ack at 90"
        );
        assert_eq!(v.recovery[0].partition, 1);
        assert_eq!(
            v.recovery[1].recovery_ms, 5,
            "no ack after 95: open until the end at 100"
        );
        assert!(!v.live(), "65 ms is over the 60 ms bound");
        assert_eq!(outage(&[], 0, 100), 100);
        assert_eq!(outage(&[5, 10], 20, 30), 10, "still open at 30");
        assert_eq!(
            outage(&[0, 21, 22, 40, 41, 49, 51], 20, 50),
            18,
            "the gap 22 → 40 begins in the window"
        );
    }

    #[test]
    fn a_full_disks_recovery_counts_from_when_space_is_back() {
        let mut h = history(
            vec![acked(0, 0, 0, 0, 10), acked(0, 1, 0, 1, 58), acked(0, 2, 0, 2, 95)],
            Vec::new(),
            vec![log(&[(0, "0:0"), (1, "0:1"), (2, "0:2")])],
        );
        h.faults = vec![Fault {
            kind: FaultKind::FullDisk,
            node: 1,
            start_ms: 20,
            end_ms: 50,
        }];
        let v = check(&h, 60);
        assert_eq!(
            v.recovery[0].recovery_ms, 37,
            "freed at 50; the longest gap after, 58 → 95"
        );
        h.faults[0].kind = FaultKind::Kill;
        assert_eq!(
            check(&h, 60).recovery[0].recovery_ms,
            38,
            "a kill counts from its start at 20"
        );
    }
}
