//! A group's committed offsets, as replayed from and written to
//! `__consumer_offsets`. Kept apart from membership: every kind of group
//! (classic, consumer) commits the same way, and transactional offset
//! commits will land here too.

use std::collections::BTreeMap;

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
}

impl CommittedOffsets {
    /// Applies a committed offset (or, with `None`, its deletion) read from or
    /// written to the log at `log_offset`, unless a newer record is in.
    pub fn apply(&mut self, topic: String, partition: i32, value: Option<OffsetValue>, log_offset: i64) {
        let key = (topic, partition);
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

    pub fn iter(&self) -> impl Iterator<Item = (&(String, i32), &Committed)> {
        self.by_partition.iter()
    }

    pub fn partitions(&self) -> impl Iterator<Item = &(String, i32)> {
        self.by_partition.keys()
    }

    pub fn len(&self) -> usize {
        self.by_partition.len()
    }

    pub fn is_empty(&self) -> bool {
        self.by_partition.is_empty()
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
}
