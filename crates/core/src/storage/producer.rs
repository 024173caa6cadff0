//! Producer state of one partition, as Kafka's ProducerStateManager keeps
//! it: the sequence numbers of the last batches of every producer id, and
//! each producer's open transaction (where it began), which a COMMIT or
//! ABORT marker ends.

use std::collections::{BTreeMap, HashMap, VecDeque};

use crate::model::ErrorCode;
use crate::record::control::Marker;
use crate::record::{BatchError, BatchHeader};

/// Kafka keeps the last five batches per producer, matching `max.in.flight` of 5.
const BATCHES_PER_PRODUCER: usize = 5;
/// Producers tracked per partition; the least recently active is forgotten first.
const PRODUCERS_MAX: usize = 10_000;

#[derive(Debug, Clone, Copy)]
struct BatchSeq {
    first_seq: i32,
    last_seq: i32,
    base_offset: i64,
}

#[derive(Debug)]
struct ProducerEntry {
    epoch: i16,
    batches: VecDeque<BatchSeq>,
    last_seen_ms: i64,
    /// The max timestamp of its last batch.
    last_timestamp_ms: i64,
    /// The first offset of the producer's open transaction on this partition.
    txn_first_offset: Option<i64>,
    /// The epoch of the coordinator that wrote the producer's last marker:
    /// a marker from an older coordinator is a zombie's.
    coordinator_epoch: i32,
}

impl Default for ProducerEntry {
    fn default() -> Self {
        Self {
            epoch: 0,
            batches: VecDeque::new(),
            last_seen_ms: 0,
            last_timestamp_ms: -1,
            txn_first_offset: None,
            // No marker seen: any coordinator's is accepted.
            coordinator_epoch: -1,
        }
    }
}

/// A transaction that a marker ended on this partition: its data lies in
/// `first_offset..last_offset`, and `last_offset` is the marker's offset.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CompletedTxn {
    pub producer_id: i64,
    pub first_offset: i64,
    pub last_offset: i64,
    pub aborted: bool,
}

/// One producer this partition knows, as DescribeProducers reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ActiveProducer {
    pub producer_id: i64,
    pub epoch: i16,
    /// The last sequence number appended; -1 for none (only markers).
    pub last_sequence: i32,
    pub last_timestamp_ms: i64,
    /// The coordinator epoch of its last marker; -1 for none.
    pub coordinator_epoch: i32,
    /// Where its open transaction began here, if one is open.
    pub txn_first_offset: Option<i64>,
}

#[derive(Debug, PartialEq, Eq)]
pub enum SequenceCheck {
    /// Append it.
    Append,
    /// Already appended at this base offset: acknowledge without a second append.
    Duplicate(i64),
}

#[derive(Debug, Default)]
pub struct ProducerStates {
    producers: HashMap<i64, ProducerEntry>,
    /// Open transactions by first offset (offset -> producer id): the
    /// earliest bounds the last stable offset.
    open_txns: BTreeMap<i64, i64>,
}

fn out_of_order(message: String) -> BatchError {
    BatchError {
        code: ErrorCode::OutOfOrderSequenceNumber,
        message,
    }
}

fn next_seq(seq: i32) -> i32 {
    if seq == i32::MAX { 0 } else { seq + 1 }
}

impl ProducerStates {
    /// Checks an incoming batch's sequence against what this producer sent before.
    pub fn check(&self, batch: &BatchHeader) -> Result<SequenceCheck, BatchError> {
        if batch.producer_id < 0 || batch.base_sequence < 0 {
            return Ok(SequenceCheck::Append);
        }
        let Some(entry) = self.producers.get(&batch.producer_id) else {
            // Unknown producer (new, or its state predates a restart): accept and start tracking.
            return Ok(SequenceCheck::Append);
        };
        self.check_epoch(batch)?;
        if batch.producer_epoch > entry.epoch {
            if batch.base_sequence != 0 {
                return Err(out_of_order(format!(
                    "a new producer epoch must start at sequence 0, got {}",
                    batch.base_sequence
                )));
            }
            return Ok(SequenceCheck::Append);
        }
        if entry.txn_first_offset.is_some() && !batch.is_transactional() && batch.producer_epoch == entry.epoch {
            return Err(BatchError {
                code: ErrorCode::InvalidTxnState,
                message: format!(
                    "producer {} wrote a non-transactional batch while its transaction is open",
                    batch.producer_id
                ),
            });
        }
        if let Some(dup) = entry
            .batches
            .iter()
            .find(|b| b.first_seq == batch.base_sequence && b.last_seq == batch.last_sequence())
        {
            return Ok(SequenceCheck::Duplicate(dup.base_offset));
        }
        let last = entry.batches.back().map_or(-1, |b| b.last_seq);
        if batch.base_sequence != next_seq(last) {
            return Err(out_of_order(format!(
                "out of order sequence number for producer {}: expected {}, got {}",
                batch.producer_id,
                next_seq(last),
                batch.base_sequence
            )));
        }
        Ok(SequenceCheck::Append)
    }

    /// Refuses a batch from an older epoch of a producer this log knows.
    pub fn check_epoch(&self, batch: &BatchHeader) -> Result<(), BatchError> {
        match self.producers.get(&batch.producer_id) {
            Some(entry) if batch.producer_epoch < entry.epoch => Err(BatchError {
                code: ErrorCode::InvalidProducerEpoch,
                message: format!(
                    "producer epoch {} is older than the current epoch {}",
                    batch.producer_epoch, entry.epoch
                ),
            }),
            _ => Ok(()),
        }
    }

    /// Checks a marker the coordinator asks this leader to append: a zombie
    /// producer's (older epoch) or a zombie coordinator's is refused.
    pub fn check_marker(
        &self,
        producer_id: i64,
        producer_epoch: i16,
        coordinator_epoch: i32,
    ) -> Result<(), BatchError> {
        let Some(entry) = self.producers.get(&producer_id) else {
            return Ok(());
        };
        if producer_epoch < entry.epoch {
            return Err(BatchError {
                code: ErrorCode::InvalidProducerEpoch,
                message: format!(
                    "marker epoch {producer_epoch} of producer {producer_id} is older than its epoch {}",
                    entry.epoch
                ),
            });
        }
        if coordinator_epoch < entry.coordinator_epoch {
            return Err(BatchError {
                code: ErrorCode::TransactionCoordinatorFenced,
                message: format!(
                    "marker from coordinator epoch {coordinator_epoch}; producer {producer_id} had one from {}",
                    entry.coordinator_epoch
                ),
            });
        }
        Ok(())
    }

    /// Remembers an appended batch (its base offset already assigned):
    /// `marker` is what a control batch says (`read_marker`). Returns the
    /// transaction a marker ended, if it had any data here.
    pub fn record(&mut self, batch: &BatchHeader, marker: Option<(Marker, i32)>, now_ms: i64) -> Option<CompletedTxn> {
        if batch.producer_id < 0 || (batch.base_sequence < 0 && marker.is_none()) {
            return None;
        }
        if self.producers.len() >= PRODUCERS_MAX && !self.producers.contains_key(&batch.producer_id) {
            self.evict_oldest();
        }
        let entry = self.producers.entry(batch.producer_id).or_default();
        if batch.producer_epoch != entry.epoch {
            entry.epoch = batch.producer_epoch;
            entry.batches.clear();
        }
        entry.last_seen_ms = now_ms;
        entry.last_timestamp_ms = batch.max_timestamp;
        if let Some((marker, coordinator_epoch)) = marker {
            entry.coordinator_epoch = coordinator_epoch;
            let first_offset = entry.txn_first_offset.take()?;
            let removed = self.open_txns.remove(&first_offset);
            assert_eq!(
                removed,
                Some(batch.producer_id),
                "an open transaction is indexed by its first offset"
            );
            return Some(CompletedTxn {
                producer_id: batch.producer_id,
                first_offset,
                last_offset: batch.base_offset,
                aborted: marker == Marker::Abort,
            });
        }
        if entry.batches.len() == BATCHES_PER_PRODUCER {
            entry.batches.pop_front();
        }
        entry.batches.push_back(BatchSeq {
            first_seq: batch.base_sequence,
            last_seq: batch.last_sequence(),
            base_offset: batch.base_offset,
        });
        if batch.is_transactional() && entry.txn_first_offset.is_none() {
            entry.txn_first_offset = Some(batch.base_offset);
            self.open_txns.insert(batch.base_offset, batch.producer_id);
        }
        None
    }

    /// The state as bytes, for a snapshot file (`producer_snapshot`):
    /// per producer its id, epoch, coordinator epoch, last timestamp, open
    /// transaction and last batches.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(8 + self.producers.len() * 64);
        out.extend_from_slice(&(self.producers.len() as u32).to_be_bytes());
        for (id, e) in &self.producers {
            out.extend_from_slice(&id.to_be_bytes());
            out.extend_from_slice(&e.epoch.to_be_bytes());
            out.extend_from_slice(&e.coordinator_epoch.to_be_bytes());
            out.extend_from_slice(&e.last_timestamp_ms.to_be_bytes());
            out.extend_from_slice(&e.txn_first_offset.unwrap_or(-1).to_be_bytes());
            out.push(e.batches.len() as u8);
            for b in &e.batches {
                out.extend_from_slice(&b.first_seq.to_be_bytes());
                out.extend_from_slice(&b.last_seq.to_be_bytes());
                out.extend_from_slice(&b.base_offset.to_be_bytes());
            }
        }
        out
    }

    /// The state `encode` wrote, or `None` if the bytes are not one (a
    /// damaged file is not trusted in part). Producers count as seen at
    /// `now_ms`.
    pub fn decode(bytes: &[u8], now_ms: i64) -> Option<ProducerStates> {
        let mut r = crate::wire::Reader::new(bytes);
        let count = usize::try_from(r.i32().ok()?).ok()?;
        if count > PRODUCERS_MAX {
            return None;
        }
        let mut states = ProducerStates::default();
        for _ in 0..count {
            let id = r.i64().ok()?;
            let mut entry = ProducerEntry {
                epoch: r.i16().ok()?,
                coordinator_epoch: r.i32().ok()?,
                last_timestamp_ms: r.i64().ok()?,
                last_seen_ms: now_ms,
                ..ProducerEntry::default()
            };
            let txn_first_offset = r.i64().ok()?;
            let batches = usize::from(r.i8().ok()? as u8);
            if batches > BATCHES_PER_PRODUCER || id < 0 {
                return None;
            }
            for _ in 0..batches {
                entry.batches.push_back(BatchSeq {
                    first_seq: r.i32().ok()?,
                    last_seq: r.i32().ok()?,
                    base_offset: r.i64().ok()?,
                });
            }
            if txn_first_offset >= 0 {
                entry.txn_first_offset = Some(txn_first_offset);
                if states.open_txns.insert(txn_first_offset, id).is_some() {
                    return None; // two transactions cannot begin at one offset
                }
            }
            if states.producers.insert(id, entry).is_some() {
                return None;
            }
        }
        (r.remaining() == 0).then_some(states)
    }

    /// Every producer this partition tracks, by producer id.
    pub fn active(&self) -> Vec<ActiveProducer> {
        let mut active: Vec<ActiveProducer> = self
            .producers
            .iter()
            .map(|(id, e)| ActiveProducer {
                producer_id: *id,
                epoch: e.epoch,
                last_sequence: e.batches.back().map_or(-1, |b| b.last_seq),
                last_timestamp_ms: e.last_timestamp_ms,
                coordinator_epoch: e.coordinator_epoch,
                txn_first_offset: e.txn_first_offset,
            })
            .collect();
        active.sort_by_key(|p| p.producer_id);
        active
    }

    /// Whether `producer_id` has a transaction open on this partition, begun
    /// at `epoch`.
    pub fn in_open_txn(&self, producer_id: i64, epoch: i16) -> bool {
        self.producers
            .get(&producer_id)
            .is_some_and(|e| e.epoch == epoch && e.txn_first_offset.is_some())
    }

    /// The first offset of the earliest open transaction, if any.
    pub fn first_open_txn_offset(&self) -> Option<i64> {
        self.open_txns.keys().next().copied()
    }

    /// Open transactions: (producer id, first offset), earliest first.
    pub fn open_txns(&self) -> impl Iterator<Item = (i64, i64)> + '_ {
        self.open_txns.iter().map(|(&offset, &pid)| (pid, offset))
    }

    /// Forgets the batches at or past `offset` (cut from the log): a retry
    /// of one of them is appended again, not acknowledged at an offset that
    /// now holds something else. A producer left with no batch is forgotten
    /// and treated as new, as after a restart.
    /// An open transaction that began at or past the cut is forgotten with
    /// its batches; `reopened` are transactions whose marker was cut, open
    /// again (the caller knows them from its completed transactions).
    pub fn truncate_from(&mut self, offset: i64, reopened: &[CompletedTxn]) {
        self.open_txns.retain(|&first, _| first < offset);
        self.producers.retain(|_, entry| {
            entry.batches.retain(|b| b.base_offset < offset);
            if entry.txn_first_offset.is_some_and(|first| first >= offset) {
                entry.txn_first_offset = None;
            }
            !entry.batches.is_empty() || entry.txn_first_offset.is_some()
        });
        for txn in reopened {
            assert!(
                txn.last_offset >= offset && txn.first_offset < offset,
                "only a cut marker reopens"
            );
            if let Some(entry) = self.producers.get_mut(&txn.producer_id)
                && entry.txn_first_offset.is_none()
            {
                entry.txn_first_offset = Some(txn.first_offset);
                self.open_txns.insert(txn.first_offset, txn.producer_id);
            }
        }
    }

    /// Forgets the least recently active producer, never one with an open
    /// transaction (forgetting it would let the last stable offset pass its data).
    fn evict_oldest(&mut self) {
        let oldest = self
            .producers
            .iter()
            .filter(|(_, e)| e.txn_first_offset.is_none())
            .min_by_key(|(_, e)| e.last_seen_ms)
            .map(|(&pid, _)| pid);
        if let Some(pid) = oldest {
            self.producers.remove(&pid);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn txn_header(pid: i64, epoch: i16, seq: i32, count: i32, base_offset: i64) -> BatchHeader {
        BatchHeader {
            attributes: 0x10,
            ..header(pid, epoch, seq, count, base_offset)
        }
    }

    fn marker(pid: i64, epoch: i16, offset: i64) -> BatchHeader {
        BatchHeader {
            attributes: 0x30,
            ..header(pid, epoch, -1, 1, offset)
        }
    }

    #[test]
    fn a_transaction_opens_at_its_first_batch_and_a_marker_ends_it() {
        let mut s = ProducerStates::default();
        s.record(&header(5, 0, 0, 1, 0), None, 1); // plain idempotent writes open nothing
        assert_eq!(s.first_open_txn_offset(), None);
        s.record(&txn_header(7, 0, 0, 2, 1), None, 1);
        s.record(&txn_header(8, 0, 0, 1, 3), None, 1);
        s.record(&txn_header(7, 0, 2, 1, 4), None, 1);
        assert_eq!(s.first_open_txn_offset(), Some(1));
        assert_eq!(s.open_txns().collect::<Vec<_>>(), vec![(7, 1), (8, 3)]);
        assert!(s.in_open_txn(7, 0) && !s.in_open_txn(7, 1) && !s.in_open_txn(5, 0));
        // A non-transactional write while its transaction is open is refused.
        let plain = s.check(&header(7, 0, 3, 1, -1)).unwrap_err();
        assert_eq!(plain.code, ErrorCode::InvalidTxnState);
        let ended = s.record(&marker(7, 0, 5), Some((Marker::Abort, 2)), 2);
        assert_eq!(
            ended,
            Some(CompletedTxn {
                producer_id: 7,
                first_offset: 1,
                last_offset: 5,
                aborted: true
            })
        );
        assert_eq!(s.first_open_txn_offset(), Some(3));
        // A marker with no data here ends nothing.
        assert_eq!(s.record(&marker(7, 0, 6), Some((Marker::Commit, 2)), 2), None);
        assert!(!s.in_open_txn(7, 0), "the marker ended it");
        // Zombies: an older producer epoch, an older coordinator.
        assert_eq!(
            s.check_marker(7, 0, 1).unwrap_err().code,
            ErrorCode::TransactionCoordinatorFenced
        );
        s.record(&txn_header(7, 1, 0, 1, 7), None, 3);
        assert_eq!(
            s.check_marker(7, 0, 2).unwrap_err().code,
            ErrorCode::InvalidProducerEpoch
        );
        assert!(s.check_marker(7, 1, 2).is_ok());
    }

    #[test]
    fn a_cut_forgets_transactions_begun_past_it_and_reopens_those_whose_marker_it_took() {
        let mut s = ProducerStates::default();
        s.record(&txn_header(7, 0, 0, 1, 0), None, 1);
        let ended = s.record(&marker(7, 0, 1), Some((Marker::Commit, 0)), 1).unwrap();
        s.record(&txn_header(8, 0, 0, 1, 2), None, 1);
        s.truncate_from(1, &[ended]);
        assert_eq!(s.open_txns().collect::<Vec<_>>(), vec![(7, 0)]);
    }

    #[test]
    fn a_snapshot_decodes_to_the_same_state_and_a_damaged_one_to_none() {
        let mut states = ProducerStates::default();
        for seq in 0..7 {
            states.record(&header(1, 0, seq, 1, seq as i64), None, 5);
        }
        states.record(&txn_header(2, 3, 0, 2, 7), None, 5);
        states.record(&marker(3, 1, 9), Some((Marker::Commit, 4)), 5);
        let bytes = states.encode();
        let decoded = ProducerStates::decode(&bytes, 9).expect("its own encoding");
        assert_eq!(decoded.active(), states.active());
        assert_eq!(decoded.open_txns().collect::<Vec<_>>(), vec![(2, 7)]);
        assert_eq!(
            decoded.check(&header(1, 0, 6, 1, 0)).unwrap(),
            SequenceCheck::Duplicate(6)
        );
        for cut in 0..bytes.len() {
            assert!(
                ProducerStates::decode(&bytes[..cut], 9).is_none(),
                "a prefix of {cut} bytes"
            );
        }
        let mut longer = bytes.clone();
        longer.push(0);
        assert!(ProducerStates::decode(&longer, 9).is_none(), "trailing bytes");
    }

    #[test]
    fn producers_with_an_open_transaction_are_never_evicted() {
        let mut s = ProducerStates::default();
        s.record(&txn_header(0, 0, 0, 1, 0), None, 0);
        for pid in 1..=PRODUCERS_MAX as i64 {
            s.record(&header(pid, 0, 0, 1, pid), None, pid);
        }
        assert_eq!(s.first_open_txn_offset(), Some(0));
        assert!(s.producers.contains_key(&0));
    }

    fn header(pid: i64, epoch: i16, seq: i32, count: i32, base_offset: i64) -> BatchHeader {
        BatchHeader {
            base_offset,
            batch_length: 100,
            leader_epoch: 0,
            magic: 2,
            crc: 0,
            attributes: 0,
            last_offset_delta: count - 1,
            base_timestamp: 0,
            max_timestamp: 0,
            producer_id: pid,
            producer_epoch: epoch,
            base_sequence: seq,
            records_count: count,
        }
    }

    #[test]
    fn in_order_duplicate_and_gap() {
        let mut s = ProducerStates::default();
        let b0 = header(7, 0, 0, 3, 0);
        assert_eq!(s.check(&b0).unwrap(), SequenceCheck::Append);
        s.record(&b0, None, 1);
        let b1 = header(7, 0, 3, 2, 3);
        assert_eq!(s.check(&b1).unwrap(), SequenceCheck::Append);
        s.record(&b1, None, 2);
        assert_eq!(s.check(&header(7, 0, 0, 3, -1)).unwrap(), SequenceCheck::Duplicate(0));
        assert_eq!(s.check(&header(7, 0, 3, 2, -1)).unwrap(), SequenceCheck::Duplicate(3));
        let gap = s.check(&header(7, 0, 9, 1, -1)).unwrap_err();
        assert_eq!(gap.code, ErrorCode::OutOfOrderSequenceNumber);
        assert_eq!(s.check(&header(7, 1, 0, 1, -1)).unwrap(), SequenceCheck::Append);
        assert_eq!(
            s.check(&header(7, 1, 4, 1, -1)).unwrap_err().code,
            ErrorCode::OutOfOrderSequenceNumber
        );
        s.record(&header(7, 1, 0, 1, 5), None, 3);
        assert_eq!(
            s.check(&header(7, 0, 5, 1, -1)).unwrap_err().code,
            ErrorCode::InvalidProducerEpoch
        );
        assert_eq!(s.check(&header(-1, -1, -1, 1, -1)).unwrap(), SequenceCheck::Append);
    }

    #[test]
    fn a_batch_cut_from_the_log_is_appended_again_not_acknowledged_as_a_duplicate() {
        let mut s = ProducerStates::default();
        s.record(&header(7, 0, 0, 3, 0), None, 1);
        s.record(&header(7, 0, 3, 2, 3), None, 2);
        s.record(&header(8, 0, 0, 1, 5), None, 3);
        s.truncate_from(3, &[]);
        assert_eq!(s.check(&header(7, 0, 3, 2, -1)).unwrap(), SequenceCheck::Append);
        assert_eq!(s.check(&header(7, 0, 0, 3, -1)).unwrap(), SequenceCheck::Duplicate(0));
        // Producer 8 had nothing left: it starts over as a new one.
        assert_eq!(s.check(&header(8, 0, 0, 1, -1)).unwrap(), SequenceCheck::Append);
    }
}
