//! The faults, on a schedule drawn from `--seed`: a quiet spell, then one
//! fault on the leader of a random partition (SIGKILL and restart, SIGSTOP
//! and SIGCONT, cut off from the other nodes, its disk filled) or on the
//! quorum's leader (cut off), a bridge (the other two nodes cut from each
//! other), or a rolling restart of every node, healed before the next. One
//! fault at a time, so each recovery is measured on its own.

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use anyhow::Context;

use super::history::{Fault, FaultKind};
use super::workload::ms_since;
use crate::local::LocalCluster;

/// SplitMix64: small, seedable, and the same schedule for the same seed everywhere.
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Self {
        Self(seed)
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in `[low, high]`.
    pub fn range(&mut self, low: u64, high: u64) -> u64 {
        assert!(low <= high);
        low + self.next_u64() % (high - low + 1)
    }
}

/// How long each kind of fault lasts, and the quiet spell before each.
pub struct Timing {
    pub quiet_ms: (u64, u64),
    pub kill_down_ms: (u64, u64),
    pub pause_ms: (u64, u64),
    pub partition_ms: (u64, u64),
    pub full_disk_ms: (u64, u64),
    pub slow_disk_ms: (u64, u64),
    /// In a rolling restart, how long each node gets to rejoin before the next stops.
    pub restart_gap_ms: u64,
}

pub struct Nemesis<'a> {
    pub cluster: &'a mut LocalCluster,
    pub topic: &'a str,
    pub partitions: i32,
    pub kinds: &'a [FaultKind],
    pub timing: Timing,
    pub rng: Rng,
    /// Set by SIGINT or SIGTERM: the current fault is healed at once, and no
    /// other follows.
    pub interrupted: &'a AtomicBool,
}

impl Nemesis<'_> {
    /// Faults until `duration` has passed since `start`; every fault is
    /// healed before this returns.
    pub fn run(&mut self, start: Instant, duration: Duration) -> anyhow::Result<Vec<Fault>> {
        let mut faults = Vec::new();
        if self.kinds.is_empty() {
            return Ok(faults); // --faults none: a fault-free run
        }
        let end_ms = duration.as_millis() as u64;
        // Bounded by --duration: each round sleeps at least its quiet spell.
        loop {
            let quiet_ms = self.rng.range(self.timing.quiet_ms.0, self.timing.quiet_ms.1);
            let kind = self.kinds[self.rng.range(0, self.kinds.len() as u64 - 1) as usize];
            let hold_ms = match kind {
                FaultKind::Kill => self.rng.range(self.timing.kill_down_ms.0, self.timing.kill_down_ms.1),
                FaultKind::Pause => self.rng.range(self.timing.pause_ms.0, self.timing.pause_ms.1),
                FaultKind::Isolate | FaultKind::Bridge => {
                    self.rng.range(self.timing.partition_ms.0, self.timing.partition_ms.1)
                }
                FaultKind::FullDisk => self.rng.range(self.timing.full_disk_ms.0, self.timing.full_disk_ms.1),
                FaultKind::SlowDisk => self.rng.range(self.timing.slow_disk_ms.0, self.timing.slow_disk_ms.1),
                FaultKind::Restart => self.timing.restart_gap_ms * self.cluster.brokers.len() as u64,
            };
            let partition = self.rng.range(0, self.partitions as u64 - 1) as i32;
            // Every other isolation is of the quorum's leader rather than a partition's.
            let quorum_leader = kind == FaultKind::Isolate && self.rng.range(0, 1) == 1;
            // A last round must leave time to see its recovery.
            if ms_since(start) + quiet_ms + hold_ms + self.timing.quiet_ms.0 > end_ms {
                break;
            }
            if self.interrupted.load(Ordering::Relaxed) {
                break;
            }
            sleep_unless(self.interrupted, Duration::from_millis(quiet_ms));
            let Some((leader, controller)) = self.leaders(partition) else {
                eprintln!("chaos: no leader known for partition {partition}; skipping a round");
                continue;
            };
            let (node, whom) = match quorum_leader {
                true => (controller, "the quorum's leader".to_string()),
                false => (leader, format!("leader of partition {partition}")),
            };
            let fault = self.inflict(kind, node, hold_ms, start)?;
            eprintln!(
                "chaos: {} broker {} ({whom}) at {:.1} s for {:.1} s",
                kind.name(),
                fault.node,
                fault.start_ms as f64 / 1000.0,
                (fault.end_ms - fault.start_ms) as f64 / 1000.0
            );
            faults.push(fault);
        }
        Ok(faults)
    }

    fn inflict(&mut self, kind: FaultKind, node: i32, hold_ms: u64, start: Instant) -> anyhow::Result<Fault> {
        let id = node as usize;
        if kind == FaultKind::Restart {
            return self.roll(id, hold_ms, start);
        }
        let others: Vec<usize> = (1..=self.cluster.brokers.len()).filter(|&n| n != id).collect();
        let namespaces = self.cluster.namespaces.as_ref();
        let broker = &mut self.cluster.brokers[id - 1];
        let start_ms = ms_since(start);
        match kind {
            FaultKind::Isolate => {
                let namespaces = namespaces.context("isolating a node needs network namespaces")?;
                namespaces.cut(id, &others)?;
                sleep_unless(self.interrupted, Duration::from_millis(hold_ms));
                namespaces.heal(id)?;
            }
            FaultKind::Bridge => {
                let namespaces = namespaces.context("a bridge needs network namespaces")?;
                namespaces.cut(others[0], &others[1..])?;
                sleep_unless(self.interrupted, Duration::from_millis(hold_ms));
                namespaces.heal(others[0])?;
            }
            FaultKind::Kill => {
                broker.kill();
                sleep_unless(self.interrupted, Duration::from_millis(hold_ms));
                broker.restart()?;
            }
            FaultKind::Pause => {
                broker.signal(libc::SIGSTOP);
                sleep_unless(self.interrupted, Duration::from_millis(hold_ms));
                broker.signal(libc::SIGCONT);
            }
            FaultKind::FullDisk => {
                broker.fill_disk()?;
                sleep_unless(self.interrupted, Duration::from_millis(hold_ms));
                broker.free_disk()?;
            }
            FaultKind::SlowDisk => {
                broker.slow_disk(true)?;
                sleep_unless(self.interrupted, Duration::from_millis(hold_ms));
                broker.slow_disk(false)?;
            }
            FaultKind::Restart => unreachable!("a rolling restart is not one node's fault"),
        }
        Ok(Fault {
            kind,
            node,
            start_ms,
            end_ms: ms_since(start),
        })
    }

    /// A rolling restart from node `first` on: each node stopped cleanly,
    /// started again, and given its share of `hold_ms` to rejoin.
    fn roll(&mut self, first: usize, hold_ms: u64, start: Instant) -> anyhow::Result<Fault> {
        let start_ms = ms_since(start);
        let count = self.cluster.brokers.len();
        let gap = Duration::from_millis(hold_ms / count as u64);
        for k in 0..count {
            let broker = &mut self.cluster.brokers[(first - 1 + k) % count];
            broker.stop();
            broker.restart()?;
            sleep_unless(self.interrupted, gap);
        }
        Ok(Fault {
            kind: FaultKind::Restart,
            node: first as i32,
            start_ms,
            end_ms: ms_since(start),
        })
    }

    /// The partition's leader and the quorum's (broker ids), as the first broker that answers says.
    fn leaders(&self, partition: i32) -> Option<(i32, i32)> {
        let known = |id: i32| id >= 1 && id as usize <= self.cluster.brokers.len();
        self.cluster.brokers.iter().find_map(|broker| {
            let mut client = crate::client::Client::connect(&broker.bootstrap, Duration::from_secs(2)).ok()?;
            let metadata = crate::client::admin::metadata(&mut client, Some(self.topic)).ok()?;
            let topic = metadata.topics.first()?;
            let leader = topic
                .partitions
                .iter()
                .find(|p| p.partition_index == partition)?
                .leader_id
                .0;
            let controller = crate::client::admin::quorum_leader(&mut client).ok()?;
            (known(leader) && known(controller)).then_some((leader, controller))
        })
    }
}

/// Sleeps for `duration`, or until `interrupted`.
fn sleep_unless(interrupted: &AtomicBool, duration: Duration) {
    const SLICE: Duration = Duration::from_millis(100);
    let until = Instant::now() + duration;
    // Bounded by `duration`.
    while !interrupted.load(Ordering::Relaxed) {
        let left = until.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return;
        }
        std::thread::sleep(left.min(SLICE));
    }
}

#[cfg(test)]
mod tests {
    use super::Rng;

    #[test]
    fn a_seed_gives_the_same_schedule() {
        let draw = |seed| {
            let mut rng = Rng::new(seed);
            (0..8).map(|_| rng.range(3, 9)).collect::<Vec<_>>()
        };
        assert_eq!(draw(7), draw(7));
        assert_ne!(draw(7), draw(8));
        assert!(draw(7).iter().all(|v| (3..=9).contains(v)));
    }
}
