//! A group's committed offsets, as replayed from and written to
//! `__consumer_offsets`. Kept apart from membership: every kind of group
//! (classic, consumer) commits the same way. Offsets committed in a
//! transaction (TxnOffsetCommit) wait here, per producer, until the
//! transaction's marker commits or discards them.

use std::collections::{BTreeMap, BTreeSet};

use super::records::OffsetValue;

/// A committed offset, with the position of the record that stored it: commits
/// may complete out of order, and only a newer record may replace an older one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Committed {
    pub value: OffsetValue,
    pub log_offset: i64,
}

/// (topic, partition) → the offset committed for it.
#[derive(Debug, Default)]
pub struct CommittedOffsets {
    by_partition: BTreeMap<(String, i32), Committed>,
    /// Producer id → the offsets its open transaction commits.
    pending: BTreeMap<i64, BTreeMap<(String, i32), Committed>>,
}

impl CommittedOffsets {
    /// Applies a committed offset (or, with `None`, its deletion) read from or
    /// written to the log at `log_offset`, unless a newer record is in.
    pub fn apply(&mut self, topic: String, partition: i32, value: Option<OffsetValue>, log_offset: i64) {
        let key = (topic, partition);
        if value.is_none() {
            // A deleted offset takes the transactions' pending ones with it, as in Kafka.
            for offsets in self.pending.values_mut() {
                offsets.remove(&key);
            }
        }
        if self.by_partition.get(&key).is_some_and(|c| c.log_offset > log_offset) {
            return;
        }
        match value {
            Some(value) => {
                self.by_partition.insert(key, Committed { value, log_offset });
            }
            None => {
                self.by_partition.remove(&key);
            }
        }
    }

    /// The offset committed for the partition, if any.
    pub fn get(&self, topic: &str, partition: i32) -> Option<&OffsetValue> {
        let key = (topic.to_string(), partition);
        self.by_partition.get(&key).map(|c| &c.value)
    }

    /// Keeps an offset that producer `producer_id` committed in its open
    /// transaction, stored at `log_offset`, until the transaction ends.
    pub fn stage(&mut self, producer_id: i64, topic: String, partition: i32, value: OffsetValue, log_offset: i64) {
        self.pending
            .entry(producer_id)
            .or_default()
            .insert((topic, partition), Committed { value, log_offset });
    }

    /// Ends producer `producer_id`'s transaction here: its offsets become
    /// committed (where no newer commit is in) or are discarded.
    pub fn end_txn(&mut self, producer_id: i64, commit: bool) {
        let Some(staged) = self.pending.remove(&producer_id) else {
            return;
        };
        if commit {
            for ((topic, partition), c) in staged {
                self.apply(topic, partition, Some(c.value), c.log_offset);
            }
        }
    }

    /// Whether an open transaction commits an offset for the partition.
    pub fn is_pending(&self, topic: &str, partition: i32) -> bool {
        let key = (topic.to_string(), partition);
        self.pending.values().any(|offsets| offsets.contains_key(&key))
    }

    pub fn has_pending(&self) -> bool {
        !self.pending.is_empty()
    }

    pub fn iter(&self) -> impl Iterator<Item = (&(String, i32), &Committed)> {
        self.by_partition.iter()
    }

    /// Every partition with an offset, committed or pending.
    pub fn partitions(&self) -> BTreeSet<&(String, i32)> {
        let pending = self.pending.values().flat_map(BTreeMap::keys);
        self.by_partition.keys().chain(pending).collect()
    }

    /// Committed offsets (pending ones not counted).
    pub fn len(&self) -> usize {
        self.by_partition.len()
    }

    /// Nothing committed and nothing pending.
    pub fn is_empty(&self) -> bool {
        self.by_partition.is_empty() && self.pending.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn value(offset: i64) -> Option<OffsetValue> {
        Some(OffsetValue {
            offset,
            leader_epoch: -1,
            metadata: String::new(),
            commit_timestamp_ms: 0,
        })
    }

    #[test]
    fn only_a_newer_record_replaces_or_deletes_a_commit() {
        let mut offsets = CommittedOffsets::default();
        offsets.apply("t".into(), 0, value(5), 10);
        offsets.apply("t".into(), 0, value(3), 7);
        assert_eq!(
            offsets.iter().next().unwrap().1.value.offset,
            5,
            "an older record loses"
        );
        offsets.apply("t".into(), 0, None, 8);
        assert_eq!(offsets.len(), 1, "an older tombstone loses too");
        offsets.apply("t".into(), 0, value(9), 11);
        assert_eq!(offsets.iter().next().unwrap().1.value.offset, 9);
        offsets.apply("t".into(), 0, None, 12);
        assert!(offsets.is_empty());
    }

    fn offset_of(offsets: &CommittedOffsets, topic: &str) -> Option<i64> {
        offsets
            .iter()
            .find(|((t, _), _)| t == topic)
            .map(|(_, c)| c.value.offset)
    }

    #[test]
    fn a_transactions_offsets_wait_for_its_marker() {
        let mut offsets = CommittedOffsets::default();
        offsets.stage(7, "a".into(), 0, value(5).unwrap(), 10);
        offsets.stage(8, "b".into(), 0, value(6).unwrap(), 11);
        assert!(offsets.is_pending("a", 0) && !offsets.is_pending("a", 1));
        assert_eq!(offsets.len(), 0, "nothing is committed before the marker");
        assert!(!offsets.is_empty(), "but the group is not empty");
        offsets.end_txn(7, true);
        offsets.end_txn(8, false);
        assert_eq!(offset_of(&offsets, "a"), Some(5));
        assert_eq!(offset_of(&offsets, "b"), None, "an aborted transaction commits nothing");
        assert!(!offsets.has_pending());
    }

    #[test]
    fn a_newer_plain_commit_outlives_an_older_transactional_one() {
        let mut offsets = CommittedOffsets::default();
        offsets.stage(7, "a".into(), 0, value(5).unwrap(), 10);
        offsets.apply("a".into(), 0, value(9), 12);
        offsets.end_txn(7, true);
        assert_eq!(offset_of(&offsets, "a"), Some(9), "the record stored later wins");
        offsets.stage(7, "a".into(), 0, value(11).unwrap(), 13);
        offsets.apply("a".into(), 0, None, 14);
        assert!(!offsets.is_pending("a", 0), "a deletion drops pending offsets too");
    }
}
