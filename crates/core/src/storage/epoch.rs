//! A partition's leader-epoch history (KIP-101): for each leader epoch, the
//! first offset written under it. A replica that returns after a leader change
//! asks the new leader where its own latest epoch ends there
//! (OffsetForLeaderEpoch) and cuts its log to that point, so it keeps a tail
//! the leader shares and drops only history the leader never had.
//!
//! Kept in `leader-epoch-checkpoint`, Kafka's format: a version line (0), a
//! count line, then one `epoch start_offset` line per entry.

use std::io;
use std::path::{Path, PathBuf};

pub const CHECKPOINT_FILE: &str = "leader-epoch-checkpoint";
/// What Kafka answers for an epoch it cannot place.
pub const UNDEFINED_EPOCH: i32 = -1;
pub const UNDEFINED_OFFSET: i64 = -1;
/// Entries a checkpoint may hold; each is one leader change within the
/// retained log, so a longer file is damaged, not history.
const ENTRIES_MAX: usize = 1 << 16;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EpochEntry {
    pub epoch: i32,
    pub start_offset: i64,
}

#[derive(Debug)]
pub struct LeaderEpochCache {
    path: PathBuf,
    /// Strictly increasing in epoch, non-decreasing in start offset.
    entries: Vec<EpochEntry>,
    /// Bumped by every change to `entries`; `durable_version` is the newest
    /// version known to be on disk. The history changes in memory and is
    /// written off the event loop (`Checkpoint::write`).
    version: u64,
    durable_version: u64,
}

/// The history as it was at one version, ready to be written on a
/// blocking-pool thread.
#[derive(Debug)]
pub struct Checkpoint {
    path: PathBuf,
    text: String,
    pub version: u64,
}

impl Checkpoint {
    /// Write, fsync, rename: a lost entry would make a replica cut too much.
    pub fn write(&self) -> io::Result<()> {
        crate::storage::space::replace_file(&self.path, self.text.as_bytes(), true)
    }
}

impl LeaderEpochCache {
    /// Reads the checkpoint in `dir`; `None` when there is none or it does not
    /// parse (the caller rebuilds the history from the batches).
    pub fn load(dir: &Path) -> Option<Self> {
        let path = dir.join(CHECKPOINT_FILE);
        let text = std::fs::read_to_string(&path).ok()?;
        let entries = parse(&text)?;
        Some(Self {
            path,
            entries,
            version: 0,
            durable_version: 0,
        })
    }

    pub fn empty(dir: &Path) -> Self {
        Self {
            path: dir.join(CHECKPOINT_FILE),
            entries: Vec::new(),
            version: 0,
            durable_version: 0,
        }
    }

    /// Whether every change so far is on disk.
    pub fn is_durable(&self) -> bool {
        assert!(self.durable_version <= self.version, "durable past the history");
        self.durable_version == self.version
    }

    /// The history as it is now, for `Checkpoint::write`.
    pub fn checkpoint(&self) -> Checkpoint {
        let mut text = format!("0\n{}\n", self.entries.len());
        for e in &self.entries {
            text.push_str(&format!("{} {}\n", e.epoch, e.start_offset));
        }
        Checkpoint {
            path: self.path.clone(),
            text,
            version: self.version,
        }
    }

    /// Records that the history as it was at `version` reached the disk.
    pub fn mark_durable_version(&mut self, version: u64) {
        assert!(version <= self.version, "a checkpoint from the future");
        self.durable_version = self.durable_version.max(version);
    }

    /// Writes the history out here and now: for code already off the event
    /// loop (opening a log) and tests.
    pub fn save(&mut self) -> io::Result<()> {
        let checkpoint = self.checkpoint();
        checkpoint.write()?;
        self.mark_durable_version(checkpoint.version);
        Ok(())
    }

    pub fn entries(&self) -> &[EpochEntry] {
        &self.entries
    }

    pub fn latest_epoch(&self) -> Option<i32> {
        self.entries.last().map(|e| e.epoch)
    }

    /// Records that `epoch` starts at `start_offset`, if it is newer than
    /// every epoch known. Returns whether the history changed (and needs
    /// saving). Older or equal epochs are already covered.
    pub fn assign(&mut self, epoch: i32, start_offset: i64) -> bool {
        if epoch < 0 || self.latest_epoch().is_some_and(|latest| epoch <= latest) {
            return false;
        }
        // A leader registers its epoch at its log end before any append, so a
        // later epoch never starts below an earlier one.
        if let Some(last) = self.entries.last() {
            assert!(
                start_offset >= last.start_offset,
                "epoch {epoch} at {start_offset} starts before epoch {} at {}",
                last.epoch,
                last.start_offset
            );
        }
        self.entries.push(EpochEntry { epoch, start_offset });
        self.version += 1;
        true
    }

    /// Kafka's `endOffsetFor`: the largest epoch not above `requested` and
    /// the offset where the next epoch starts (the log end for the latest).
    pub fn end_offset_for(&self, requested: i32, log_end_offset: i64) -> (i32, i64) {
        let undefined = (UNDEFINED_EPOCH, UNDEFINED_OFFSET);
        if requested < 0 {
            return undefined;
        }
        if self.latest_epoch() == Some(requested) {
            return (requested, log_end_offset);
        }
        let Some(higher) = self.entries.iter().find(|e| e.epoch > requested) else {
            return undefined;
        };
        match self.entries.iter().rev().find(|e| e.epoch <= requested) {
            Some(floor) => (floor.epoch, higher.start_offset),
            None => (requested, higher.start_offset),
        }
    }

    /// The epoch `offset` was written in (the latest for the log end);
    /// UNDEFINED_EPOCH before the first known epoch.
    pub fn epoch_at(&self, offset: i64) -> i32 {
        self.entries
            .iter()
            .rev()
            .find(|e| e.start_offset <= offset)
            .map_or(UNDEFINED_EPOCH, |e| e.epoch)
    }

    /// Forgets epochs that start at or past `end_offset` (the log was cut there).
    pub fn truncate_from_end(&mut self, end_offset: i64) -> bool {
        let before = self.entries.len();
        self.entries.retain(|e| e.start_offset < end_offset);
        let changed = self.entries.len() != before;
        self.version += changed as u64;
        changed
    }

    /// The log now starts at `start_offset`: epochs wholly before it go, and
    /// the one it falls in starts there.
    pub fn truncate_from_start(&mut self, start_offset: i64) -> bool {
        let Some(keep_from) = self.entries.iter().rposition(|e| e.start_offset <= start_offset) else {
            return false;
        };
        let changed = keep_from > 0 || self.entries[0].start_offset != start_offset;
        self.entries.drain(..keep_from);
        self.entries[0].start_offset = start_offset;
        self.version += changed as u64;
        changed
    }
}

fn parse(text: &str) -> Option<Vec<EpochEntry>> {
    let mut lines = text.lines();
    if lines.next()?.trim() != "0" {
        return None;
    }
    let count: usize = lines.next()?.trim().parse().ok()?;
    if count > ENTRIES_MAX {
        return None;
    }
    let mut entries: Vec<EpochEntry> = Vec::with_capacity(count);
    for _ in 0..count {
        let mut fields = lines.next()?.split_whitespace();
        let epoch: i32 = fields.next()?.parse().ok()?;
        let start_offset: i64 = fields.next()?.parse().ok()?;
        let ordered = entries
            .last()
            .is_none_or(|last| epoch > last.epoch && start_offset >= last.start_offset);
        if epoch < 0 || start_offset < 0 || !ordered {
            return None;
        }
        entries.push(EpochEntry { epoch, start_offset });
    }
    Some(entries)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cache(entries: &[(i32, i64)]) -> LeaderEpochCache {
        let mut c = LeaderEpochCache::empty(Path::new("/nonexistent"));
        for &(epoch, start) in entries {
            assert!(c.assign(epoch, start));
        }
        c
    }

    #[test]
    fn end_offsets_follow_kafka() {
        let c = cache(&[(0, 0), (2, 10), (5, 30)]);
        assert_eq!(c.end_offset_for(5, 42), (5, 42), "latest epoch ends at the log end");
        assert_eq!(c.end_offset_for(0, 42), (0, 10));
        assert_eq!(
            c.end_offset_for(1, 42),
            (0, 10),
            "an unknown epoch answers with the one below"
        );
        assert_eq!(c.end_offset_for(3, 42), (2, 30));
        assert_eq!(c.end_offset_for(6, 42), (UNDEFINED_EPOCH, UNDEFINED_OFFSET));
        assert_eq!(c.end_offset_for(-1, 42), (UNDEFINED_EPOCH, UNDEFINED_OFFSET));
        let later = cache(&[(3, 100)]);
        assert_eq!(later.end_offset_for(1, 150), (1, 100), "below the first epoch");
        assert_eq!(c.epoch_at(9), 0);
        assert_eq!(c.epoch_at(10), 2);
        assert_eq!(c.epoch_at(99), 5);
        assert_eq!(later.epoch_at(50), UNDEFINED_EPOCH);
    }

    #[test]
    fn only_newer_epochs_are_assigned() {
        let mut c = cache(&[(1, 0)]);
        assert!(!c.assign(1, 5));
        assert!(!c.assign(0, 5));
        assert!(c.assign(4, 5));
        assert_eq!(c.latest_epoch(), Some(4));
    }

    #[test]
    fn truncation_from_either_end() {
        let mut c = cache(&[(0, 0), (2, 10), (5, 30)]);
        assert!(c.truncate_from_end(30));
        assert_eq!(c.latest_epoch(), Some(2));
        assert!(!c.truncate_from_end(31));
        assert!(c.truncate_from_start(12));
        assert_eq!(
            c.entries(),
            &[EpochEntry {
                epoch: 2,
                start_offset: 12
            }]
        );
    }

    #[test]
    fn checkpoint_round_trips_and_rejects_damage() {
        let dir = tempfile::tempdir().unwrap();
        let mut c = LeaderEpochCache::empty(dir.path());
        c.assign(0, 0);
        c.assign(3, 17);
        c.save().unwrap();
        let back = LeaderEpochCache::load(dir.path()).unwrap();
        assert_eq!(back.entries(), c.entries());
        for bad in [
            "",
            "1\n0\n",
            "0\n2\n0 0\n",
            "0\n2\n3 5\n1 9\n",
            "0\n1\nx 1\n",
            "0\n99999999\n",
        ] {
            assert!(parse(bad).is_none(), "{bad:?} parsed");
        }
    }
}
