//! Idempotent-producer state of one partition: the sequence numbers of the
//! last batches of every producer id, as Kafka's ProducerStateManager keeps.

use std::collections::{HashMap, VecDeque};

use crate::model::ErrorCode;
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

#[derive(Debug, Default)]
struct ProducerEntry {
    epoch: i16,
    batches: VecDeque<BatchSeq>,
    last_seen_ms: i64,
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
        if batch.producer_epoch < entry.epoch {
            return Err(BatchError {
                code: ErrorCode::InvalidProducerEpoch,
                message: format!(
                    "producer epoch {} is older than the current epoch {}",
                    batch.producer_epoch, entry.epoch
                ),
            });
        }
        if batch.producer_epoch > entry.epoch {
            if batch.base_sequence != 0 {
                return Err(out_of_order(format!(
                    "a new producer epoch must start at sequence 0, got {}",
                    batch.base_sequence
                )));
            }
            return Ok(SequenceCheck::Append);
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

    /// Remembers an appended batch (its base offset already assigned).
    pub fn record(&mut self, batch: &BatchHeader, now_ms: i64) {
        if batch.producer_id < 0 || batch.base_sequence < 0 {
            return;
        }
        if self.producers.len() >= PRODUCERS_MAX && !self.producers.contains_key(&batch.producer_id) {
            self.evict_oldest();
        }
        let entry = self.producers.entry(batch.producer_id).or_default();
        if batch.producer_epoch != entry.epoch {
            entry.epoch = batch.producer_epoch;
            entry.batches.clear();
        }
        if entry.batches.len() == BATCHES_PER_PRODUCER {
            entry.batches.pop_front();
        }
        entry.batches.push_back(BatchSeq {
            first_seq: batch.base_sequence,
            last_seq: batch.last_sequence(),
            base_offset: batch.base_offset,
        });
        entry.last_seen_ms = now_ms;
    }

    /// Forgets the batches at or past `offset` (cut from the log): a retry
    /// of one of them is appended again, not acknowledged at an offset that
    /// now holds something else. A producer left with no batch is forgotten
    /// and treated as new, as after a restart.
    pub fn truncate_from(&mut self, offset: i64) {
        self.producers.retain(|_, entry| {
            entry.batches.retain(|b| b.base_offset < offset);
            !entry.batches.is_empty()
        });
    }

    fn evict_oldest(&mut self) {
        if let Some((&pid, _)) = self.producers.iter().min_by_key(|(_, e)| e.last_seen_ms) {
            self.producers.remove(&pid);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
        s.record(&b0, 1);
        let b1 = header(7, 0, 3, 2, 3);
        assert_eq!(s.check(&b1).unwrap(), SequenceCheck::Append);
        s.record(&b1, 2);
        assert_eq!(s.check(&header(7, 0, 0, 3, -1)).unwrap(), SequenceCheck::Duplicate(0));
        assert_eq!(s.check(&header(7, 0, 3, 2, -1)).unwrap(), SequenceCheck::Duplicate(3));
        let gap = s.check(&header(7, 0, 9, 1, -1)).unwrap_err();
        assert_eq!(gap.code, ErrorCode::OutOfOrderSequenceNumber);
        assert_eq!(s.check(&header(7, 1, 0, 1, -1)).unwrap(), SequenceCheck::Append);
        assert_eq!(
            s.check(&header(7, 1, 4, 1, -1)).unwrap_err().code,
            ErrorCode::OutOfOrderSequenceNumber
        );
        s.record(&header(7, 1, 0, 1, 5), 3);
        assert_eq!(
            s.check(&header(7, 0, 5, 1, -1)).unwrap_err().code,
            ErrorCode::InvalidProducerEpoch
        );
        assert_eq!(s.check(&header(-1, -1, -1, 1, -1)).unwrap(), SequenceCheck::Append);
    }

    #[test]
    fn a_batch_cut_from_the_log_is_appended_again_not_acknowledged_as_a_duplicate() {
        let mut s = ProducerStates::default();
        s.record(&header(7, 0, 0, 3, 0), 1);
        s.record(&header(7, 0, 3, 2, 3), 2);
        s.record(&header(8, 0, 0, 1, 5), 3);
        s.truncate_from(3);
        assert_eq!(s.check(&header(7, 0, 3, 2, -1)).unwrap(), SequenceCheck::Append);
        assert_eq!(s.check(&header(7, 0, 0, 3, -1)).unwrap(), SequenceCheck::Duplicate(0));
        // Producer 8 had nothing left: it starts over as a new one.
        assert_eq!(s.check(&header(8, 0, 0, 1, -1)).unwrap(), SequenceCheck::Append);
    }
}
