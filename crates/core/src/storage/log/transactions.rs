//! Transactions in a partition's log: the COMMIT and ABORT markers the
//! coordinator appends, the last stable offset, and the aborted transactions
//! a read_committed fetch names.
//!
//! The *last stable offset* (LSO) is what read_committed consumers may read
//! up to: the first offset of the earliest transaction not yet decided here,
//! capped by the high watermark. A transaction counts as undecided until its
//! marker is below the high watermark: the marker could still be cut by a
//! follower's truncation until then.

use crate::record::control::{self, Marker};
use crate::record::{BatchError, BatchHeader};
use crate::storage::producer::{ActiveProducer, CompletedTxn};
use crate::storage::txn_index::AbortedTxn;

use super::*;

/// A transaction aborted on this partition, as a read_committed fetch names
/// it: the producer, and the first offset of its records to drop.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AbortedRange {
    pub producer_id: i64,
    pub first_offset: i64,
}

/// Aborted transactions one read_committed fetch names at most; a fetch
/// reads from one segment, and aborts are rare within one.
const ABORTED_PER_READ_MAX: usize = 10_000;

impl LogState {
    /// Tracks what a reserved batch does to its producer's transaction. A
    /// marker that ended one: an abort is indexed in the active segment (the
    /// one holding the marker), and the transaction holds the last stable
    /// offset back until the high watermark passes its marker.
    pub(super) fn note_txn(&mut self, header: &BatchHeader, marker: Option<(Marker, i32)>, now_ms: i64) {
        let completed = self.producers.record(header, marker, now_ms);
        self.forget_replicated_txns();
        let Some(txn) = completed else {
            return;
        };
        if txn.aborted {
            let entry = AbortedTxn {
                producer_id: txn.producer_id,
                first_offset: txn.first_offset,
                last_offset: txn.last_offset,
                last_stable_offset: self.last_stable_offset(),
            };
            let active = self.segments.last_mut().expect("a log always has an active segment");
            assert!(
                active.base_offset <= txn.last_offset,
                "the marker is in the active segment"
            );
            active.txn_index.push(entry);
        }
        self.undecided_txns.push_back(txn);
    }

    /// Drops the ended transactions whose marker the high watermark passed.
    pub(super) fn forget_replicated_txns(&mut self) {
        if self.undecided_txns.is_empty() {
            return; // every append without transactions comes here
        }
        let high_watermark = self.high_watermark();
        self.undecided_txns.retain(|t| t.last_offset >= high_watermark);
    }

    pub(super) fn last_stable_offset(&self) -> i64 {
        let high_watermark = self.high_watermark();
        let open = self.producers.first_open_txn_offset();
        let ending = self
            .undecided_txns
            .iter()
            .filter(|t| t.last_offset >= high_watermark)
            .map(|t| t.first_offset)
            .min();
        let lso = [open, ending].into_iter().flatten().fold(high_watermark, i64::min);
        // Retention may have deleted the start of a transaction still open.
        lso.max(self.log_start_offset)
    }

    /// The ended transactions whose marker is at or past `offset`, which a
    /// cut there takes: those whose first record stays are open again
    /// (`reopened_by_cut`). Call before the segments are cut; forgets the
    /// undecided ones.
    pub(super) fn txns_ended_past(&mut self, offset: i64) -> Vec<CompletedTxn> {
        let mut ended: Vec<CompletedTxn> = self
            .undecided_txns
            .iter()
            .filter(|t| t.last_offset >= offset)
            .copied()
            .collect();
        self.undecided_txns.retain(|t| t.last_offset < offset);
        for segment in self.segments.iter().rev().take_while(|s| s.next_offset > offset) {
            for entry in segment.txn_index.entries().iter().rev() {
                if entry.last_offset < offset {
                    break;
                }
                if !ended.iter().any(|t| t.last_offset == entry.last_offset) {
                    ended.push(CompletedTxn {
                        producer_id: entry.producer_id,
                        first_offset: entry.first_offset,
                        last_offset: entry.last_offset,
                        aborted: true,
                    });
                }
            }
        }
        ended
    }

    /// The aborted transactions overlapping `from..to`, earliest marker first.
    pub(super) fn aborted_between(&self, from: i64, to: i64) -> Vec<AbortedRange> {
        let first = self
            .segments
            .partition_point(|s| s.next_offset <= from)
            .min(self.segments.len());
        self.segments[first..]
            .iter()
            .flat_map(|s| s.txn_index.entries())
            .filter(|e| e.last_offset >= from && e.first_offset < to)
            .take(ABORTED_PER_READ_MAX)
            .map(|e| AbortedRange {
                producer_id: e.producer_id,
                first_offset: e.first_offset,
            })
            .collect()
    }
}

/// Of the transactions a cut took the markers of, those whose first record
/// is below the new log end `end`: open again.
pub(super) fn reopened_by_cut(ended: Vec<CompletedTxn>, end: i64) -> Vec<CompletedTxn> {
    ended.into_iter().filter(|t| t.first_offset < end).collect()
}

impl PartitionLog {
    /// What read_committed consumers may read up to.
    pub fn last_stable_offset(&self) -> i64 {
        self.assert_owner();
        self.state.borrow().last_stable_offset()
    }

    /// The aborted transactions a read_committed fetch from `from` must name:
    /// those whose records may lie in `from..to` (`to` the end of the data
    /// the fetch returns, at most the last stable offset).
    pub fn aborted_txns(&self, from: i64, to: i64) -> Vec<AbortedRange> {
        self.assert_owner();
        self.state.borrow().aborted_between(from, to)
    }

    /// Open transactions on this partition: (producer id, first offset),
    /// earliest first.
    pub fn open_txns(&self) -> Vec<(i64, i64)> {
        self.assert_owner();
        self.state.borrow().producers.open_txns().collect()
    }

    /// The producers this partition tracks (DescribeProducers).
    pub fn active_producers(&self) -> Vec<ActiveProducer> {
        self.assert_owner();
        self.state.borrow().producers.active()
    }

    /// Appends the marker that ends producer `producer_id`'s transaction
    /// here, as leader in `leader_epoch`, for the coordinator in
    /// `coordinator_epoch`. A marker from an older producer epoch or an
    /// older coordinator is refused (a zombie's). Returns once written, as
    /// `append` does.
    pub async fn append_marker(
        &self,
        marker: Marker,
        producer: (i64, i16),
        coordinator_epoch: i32,
        now_ms: i64,
        leader_epoch: i32,
    ) -> Result<AppendInfo, BatchError> {
        let (producer_id, producer_epoch) = producer;
        let batch = control::build_marker(marker, producer_id, producer_epoch, coordinator_epoch, now_ms);
        let origin = super::append::Origin::Marker(marker, coordinator_epoch);
        self.append_kept(batch, now_ms, leader_epoch, origin).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::ErrorCode;
    use crate::record::builder::{Producer, Record, encode_batch};
    use crate::storage::Replayed;
    use bytes::BytesMut;

    /// A batch of `count` records from producer `pid` (transactional if `txn`).
    fn batch(pid: i64, epoch: i16, seq: i32, count: usize, txn: bool) -> BytesMut {
        let records = vec![
            Record {
                key: None,
                value: Some(b"v")
            };
            count
        ];
        let producer = Producer {
            id: pid,
            epoch,
            base_sequence: seq,
        };
        encode_batch(&records, 1_000, 0, producer, if txn { 0x10 } else { 0 })
    }

    fn open(dir: &std::path::Path) -> PartitionLog {
        PartitionLog::open(dir, TopicPartition::new("t", 0), LogConfig::default(), 0).unwrap()
    }

    /// The offset past the data a read_committed fetch from `offset` returns.
    fn committed_end(log: &PartitionLog, offset: i64) -> i64 {
        let read = log.read_as(offset, u64::MAX, true, Reader::Committed).unwrap();
        let Some(slice) = read.slice else {
            return offset;
        };
        let mut buf = vec![0u8; slice.bytes as usize];
        std::os::unix::fs::FileExt::read_exact_at(&*slice.file, &mut buf, slice.position).unwrap();
        let mut at = 0;
        let mut end = offset;
        while at < buf.len() {
            let header = BatchHeader::parse(&buf[at..]).unwrap();
            end = header.next_offset();
            at += header.total_bytes();
        }
        end
    }

    #[test]
    fn only_a_transaction_open_here_takes_an_unverified_batch() {
        let dir = tempfile::tempdir().unwrap();
        compio::runtime::Runtime::new().unwrap().block_on(async {
            let log = open(dir.path());
            let first = batch(7, 0, 0, 2, true);
            let returned = log.append_in_open_txn(first.clone(), 1, LEADER_EPOCH).await.unwrap();
            assert_eq!(returned.unwrap_err(), first, "nothing open: the batch comes back");
            assert_eq!(log.log_end_offset(), 0);
            let plain = log.append_in_open_txn(batch(8, 0, 0, 1, false), 1, LEADER_EPOCH).await;
            assert!(plain.unwrap().is_ok(), "a non-transactional batch needs no transaction");
            log.append(first, 1, LEADER_EPOCH).await.unwrap(); // verified: 1..=2
            let second = log.append_in_open_txn(batch(7, 0, 2, 1, true), 1, LEADER_EPOCH).await;
            assert_eq!(second.unwrap().unwrap().base_offset, 3, "rides on the open transaction");
            let newer = batch(7, 1, 0, 1, true);
            let returned = log.append_in_open_txn(newer, 1, LEADER_EPOCH).await.unwrap();
            assert!(returned.is_err(), "another epoch's transaction is not the open one");
            log.append_marker(Marker::Commit, (7, 1), 0, 1, LEADER_EPOCH)
                .await
                .unwrap();
            let after = log.append_in_open_txn(batch(7, 1, 0, 1, true), 1, LEADER_EPOCH).await;
            assert!(after.unwrap().is_err(), "the marker ended it");
        });
    }

    #[test]
    fn the_last_stable_offset_holds_at_open_transactions_and_aborts_are_named() {
        let dir = tempfile::tempdir().unwrap();
        compio::runtime::Runtime::new().unwrap().block_on(async {
            let log = open(dir.path());
            log.append(batch(-1, -1, -1, 1, false), 1, LEADER_EPOCH).await.unwrap(); // 0
            log.append(batch(7, 0, 0, 2, true), 1, LEADER_EPOCH).await.unwrap(); // 1..=2
            log.append(batch(-1, -1, -1, 1, false), 1, LEADER_EPOCH).await.unwrap(); // 3
            assert_eq!((log.high_watermark(), log.last_stable_offset()), (4, 1));
            assert_eq!(
                committed_end(&log, 0),
                1,
                "read_committed stops at the open transaction"
            );
            let abort = log
                .append_marker(Marker::Abort, (7, 0), 0, 1, LEADER_EPOCH)
                .await
                .unwrap();
            assert_eq!(abort.base_offset, 4);
            assert_eq!(log.last_stable_offset(), 5);
            let aborted = log.read_as(0, u64::MAX, true, Reader::Committed).unwrap().aborted;
            assert_eq!(
                aborted,
                vec![AbortedRange {
                    producer_id: 7,
                    first_offset: 1
                }]
            );
            assert!(
                log.read_as(5, u64::MAX, true, Reader::Committed)
                    .unwrap()
                    .aborted
                    .is_empty()
            );
            assert!(
                log.read(0, u64::MAX, true).unwrap().aborted.is_empty(),
                "read_uncommitted names none"
            );
            log.append(batch(8, 0, 0, 1, true), 1, LEADER_EPOCH).await.unwrap(); // 5
            log.append_marker(Marker::Commit, (8, 0), 0, 1, LEADER_EPOCH)
                .await
                .unwrap(); // 6
            log.append(batch(9, 0, 0, 1, true), 1, LEADER_EPOCH).await.unwrap(); // 7
            assert_eq!((log.last_stable_offset(), committed_end(&log, 5)), (7, 7));
            // Zombies: an older producer epoch, an older coordinator.
            log.append(batch(8, 1, 0, 1, true), 1, LEADER_EPOCH).await.unwrap(); // 8
            let zombie = log.append_marker(Marker::Commit, (8, 0), 0, 1, LEADER_EPOCH).await;
            assert_eq!(zombie.unwrap_err().code, ErrorCode::InvalidProducerEpoch);
            let zombie = log.append_marker(Marker::Commit, (9, 0), -1, 1, LEADER_EPOCH).await;
            assert!(zombie.is_ok(), "no coordinator epoch is known for producer 9 yet");
            assert_eq!(log.open_txns(), vec![(8, 8)]);
        });
    }

    #[test]
    fn a_coordinators_batches_for_a_producer_skip_the_sequence_check_and_replay_with_their_marker() {
        let dir = tempfile::tempdir().unwrap();
        compio::runtime::Runtime::new().unwrap().block_on(async {
            let log = open(dir.path());
            // Every one at sequence 0: a client's second would be a duplicate.
            for _ in 0..2 {
                let info = log
                    .append_for_producer(batch(7, 1, 0, 1, true), 1, LEADER_EPOCH)
                    .await
                    .unwrap();
                assert!(!info.duplicate);
            }
            assert_eq!(log.open_txns(), vec![(7, 0)], "tracked as the producer's transaction");
            let zombie = log.append_for_producer(batch(7, 0, 0, 1, true), 1, LEADER_EPOCH).await;
            assert_eq!(zombie.unwrap_err().code, ErrorCode::InvalidProducerEpoch);
            log.append_marker(Marker::Commit, (7, 1), 0, 1, LEADER_EPOCH)
                .await
                .unwrap();
            let mut seen = Vec::new();
            log.replay_records(1 << 20, |r| match r {
                Replayed::Record { record, txn_producer } => seen.push((record.offset, txn_producer)),
                Replayed::Marker { producer_id, marker } => {
                    assert_eq!((producer_id, marker), (7, Marker::Commit));
                    seen.push((-1, None));
                }
            })
            .unwrap();
            assert_eq!(seen, vec![(0, Some(7)), (1, Some(7)), (-1, None)]);
        });
    }

    #[test]
    fn open_transactions_and_aborts_survive_a_restart_with_or_without_the_index_file() {
        for flushed in [true, false] {
            let dir = tempfile::tempdir().unwrap();
            compio::runtime::Runtime::new().unwrap().block_on(async {
                let log = open(dir.path());
                log.append(batch(7, 0, 0, 2, true), 1, LEADER_EPOCH).await.unwrap(); // 0..=1
                log.append_marker(Marker::Abort, (7, 0), 0, 1, LEADER_EPOCH)
                    .await
                    .unwrap(); // 2
                log.append(batch(8, 0, 0, 1, true), 1, LEADER_EPOCH).await.unwrap(); // 3
                if flushed {
                    log.flush_indexes().unwrap();
                }
            });
            compio::runtime::Runtime::new().unwrap().block_on(async {
                let log = open(dir.path());
                assert_eq!(log.last_stable_offset(), 3, "flushed: {flushed}");
                let read = log.read_as(0, u64::MAX, true, Reader::Committed).unwrap();
                assert_eq!(read.aborted.len(), 1, "flushed: {flushed}");
                assert_eq!(log.open_txns(), vec![(8, 3)]);
            });
        }
    }

    #[test]
    fn a_truncation_that_cuts_a_marker_reopens_its_transaction() {
        let dir = tempfile::tempdir().unwrap();
        compio::runtime::Runtime::new().unwrap().block_on(async {
            let log = open(dir.path());
            log.append(batch(7, 0, 0, 1, true), 1, LEADER_EPOCH).await.unwrap(); // 0
            log.append_marker(Marker::Abort, (7, 0), 0, 1, LEADER_EPOCH)
                .await
                .unwrap(); // 1
            log.append(batch(8, 0, 0, 1, true), 1, LEADER_EPOCH).await.unwrap(); // 2
            log.append_marker(Marker::Commit, (8, 0), 0, 1, LEADER_EPOCH)
                .await
                .unwrap(); // 3
            assert_eq!(log.last_stable_offset(), 4);
            assert_eq!(log.truncate_to(3).await.unwrap(), 3);
            assert_eq!(log.last_stable_offset(), 2, "producer 8's transaction is open again");
            assert_eq!(log.truncate_to(1).await.unwrap(), 1);
            assert_eq!(log.last_stable_offset(), 0);
            assert!(
                log.read_as(0, u64::MAX, true, Reader::Committed)
                    .unwrap()
                    .aborted
                    .is_empty()
            );
        });
    }
}
