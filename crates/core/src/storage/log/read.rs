//! Reads: fetch slices (sendfile-ready), long-poll waits, and lookups by timestamp.

use crate::model::ErrorCode;
use crate::record::builder::{StoredRecord, read_records};
use crate::record::control::{Marker, read_marker};
use crate::record::{BatchHeader, LOG_OVERHEAD_BYTES};
use std::io;
use std::sync::Arc;
use tracing::warn;

use super::*;

impl LogState {
    pub(super) fn end_for(&self, reader: Reader) -> i64 {
        match reader {
            Reader::Consumer => self.high_watermark(),
            Reader::Committed => self.last_stable_offset(),
            Reader::Replica => self.log_end_offset,
        }
    }
}

impl PartitionLog {
    /// Reads up to `max_bytes` starting at `offset`, never past the high
    /// watermark and never across a segment boundary. With `min_one_batch`
    /// the first batch is returned whole even if it is larger (KIP-74).
    pub fn read(&self, offset: i64, max_bytes: u64, min_one_batch: bool) -> Result<ReadResult, ErrorCode> {
        self.read_as(offset, max_bytes, min_one_batch, Reader::Consumer)
    }

    /// As `read`; a follower (`Reader::Replica`) reads up to the local log
    /// end, past the high watermark it is helping to advance.
    pub fn read_as(
        &self,
        offset: i64,
        max_bytes: u64,
        min_one_batch: bool,
        reader: Reader,
    ) -> Result<ReadResult, ErrorCode> {
        self.assert_owner();
        let st = self.state.borrow();
        let end = st.end_for(reader);
        let mut result = ReadResult {
            high_watermark: st.high_watermark(),
            last_stable_offset: st.last_stable_offset(),
            log_start_offset: st.log_start_offset,
            slice: None,
            aborted: Vec::new(),
        };
        if offset < st.log_start_offset || offset > st.log_end_offset {
            return Err(ErrorCode::OffsetOutOfRange);
        }
        if offset >= end {
            return Ok(result);
        }
        if reader == Reader::Committed {
            result.aborted = st.aborted_between(offset, end);
        }
        let first = st
            .segments
            .partition_point(|s| s.base_offset <= offset)
            .saturating_sub(1);
        for segment in &st.segments[first..] {
            let located = segment.locate(offset).map_err(|e| {
                warn!(partition = %self.tp, "read failed: {e}");
                ErrorCode::KafkaStorageError
            })?;
            if let Some((position, header)) = located {
                let wanted = if min_one_batch {
                    max_bytes.max(header.total_bytes() as u64)
                } else {
                    max_bytes
                };
                // A consumer below the log end gets only whole batches below its end.
                let available = if end < st.log_end_offset {
                    segment.bytes_below(end, position, wanted).map_err(|e| {
                        warn!(partition = %self.tp, "read failed: {e}");
                        ErrorCode::KafkaStorageError
                    })?
                } else {
                    segment.readable_bytes - position
                };
                let bytes = wanted.min(available);
                if bytes == 0 {
                    return Ok(result);
                }
                result.slice = Some(FileSlice {
                    file: Arc::clone(&segment.file),
                    position,
                    bytes,
                });
                return Ok(result);
            }
        }
        Ok(result)
    }

    /// The end of what `reader` may see.
    pub(super) fn end_for(&self, reader: Reader) -> i64 {
        self.state.borrow().end_for(reader)
    }

    /// Resolves once what `reader` may see passes `offset`, or at `deadline`.
    pub async fn wait_for_data(&self, offset: i64, deadline: std::time::Instant, reader: Reader) {
        // Bounded by the deadline: each round ends in data, a wake, or the timeout.
        while let Some(listener) = self.data_listener(offset, reader) {
            if compio::time::timeout_at(deadline, listener).await.is_err() {
                return;
            }
        }
    }

    /// `None` if what `reader` may see already passes `offset`; otherwise a
    /// listener woken by the next change of the log. The listener may be
    /// awaited on any thread, so a long poll parks on its own shard and holds
    /// no task on this one; dropping it unregisters it.
    pub fn data_listener(&self, offset: i64, reader: Reader) -> Option<event_listener::EventListener> {
        self.assert_owner();
        if self.end_for(reader) > offset {
            return None;
        }
        let listener = self.appended.listen();
        // Checked again after registering, so an append in between is not missed.
        (self.end_for(reader) <= offset).then_some(listener)
    }

    /// ListOffsets: -2 earliest (and -4 earliest local), -1 latest, -3 the
    /// record with the largest timestamp, otherwise the first record at or
    /// after the timestamp. Returns (offset, timestamp); (-1, -1) if none.
    /// "Latest" is the end of what `reader` may see (the high watermark, or
    /// the last stable offset for read_committed), and a search by timestamp
    /// finds nothing past it, as in Kafka.
    pub fn offset_for(&self, timestamp_ms: i64, reader: Reader) -> Result<(i64, i64), ErrorCode> {
        self.assert_owner();
        let visible_end = self.end_for(reader);
        let found = self.offset_for_any(timestamp_ms, visible_end)?;
        let searched = timestamp_ms >= 0 || timestamp_ms == -3;
        Ok(if searched && found.0 >= visible_end {
            (-1, -1)
        } else {
            found
        })
    }

    fn offset_for_any(&self, timestamp_ms: i64, visible_end: i64) -> Result<(i64, i64), ErrorCode> {
        let st = self.state.borrow();
        let io_err = |e: io::Error| {
            warn!("offset lookup failed: {e}");
            ErrorCode::KafkaStorageError
        };
        match timestamp_ms {
            -2 | -4 => Ok((st.log_start_offset, -1)),
            -1 => Ok((visible_end, -1)),
            -3 => {
                let Some(segment) = st.segments.iter().rev().max_by_key(|s| s.max_timestamp_ms) else {
                    return Ok((-1, -1));
                };
                if segment.max_timestamp_ms < 0 {
                    return Ok((-1, -1));
                }
                Ok(segment
                    .offset_for_timestamp(segment.max_timestamp_ms)
                    .map_err(io_err)?
                    .unwrap_or((-1, -1)))
            }
            ts if ts >= 0 => {
                for segment in &st.segments {
                    if let Some(found) = segment.offset_for_timestamp(ts).map_err(io_err)? {
                        return Ok(found);
                    }
                }
                Ok((-1, -1))
            }
            _ => Err(ErrorCode::InvalidRequest),
        }
    }
}

/// What `replay_records` hands its caller, in log order.
pub enum Replayed<'a> {
    /// A record; `txn_producer` is the producer id of the transaction it
    /// belongs to, if it is transactional.
    Record {
        record: StoredRecord<'a>,
        txn_producer: Option<i64>,
    },
    /// The marker that ended producer `producer_id`'s transaction.
    Marker { producer_id: i64, marker: Marker },
}

impl PartitionLog {
    /// Calls `f` with every record and marker of the whole local log, in
    /// order (past the high watermark too: a new leader's tail is what its
    /// followers will copy), reading `read_bytes` at a time: how a
    /// coordinator loads its internal partition. A batch that is compressed
    /// or unreadable is skipped with a warning. Returns the records read.
    pub fn replay_records(&self, read_bytes: u64, mut f: impl FnMut(Replayed<'_>)) -> io::Result<u64> {
        self.assert_owner();
        let mut offset = self.log_start_offset();
        let mut replayed = 0;
        // Bounded: every step moves `offset` forward by at least one batch,
        // up to the log end.
        while offset < self.log_end_offset() {
            let read = self
                .read_as(offset, read_bytes, true, Reader::Replica)
                .map_err(|code| io::Error::other(format!("read at {offset}: {code:?}")))?;
            let Some(slice) = read.slice else { break };
            let mut buf = vec![0u8; slice.bytes as usize];
            std::os::unix::fs::FileExt::read_exact_at(&*slice.file, &mut buf, slice.position)?;
            let mut at = 0;
            let before = offset;
            while let Some(header) = BatchHeader::parse(&buf[at..]) {
                let end = at + header.total_bytes();
                if end > buf.len() || header.total_bytes() < LOG_OVERHEAD_BYTES {
                    break;
                }
                let txn_producer = header.is_transactional().then_some(header.producer_id);
                match read_records(&buf[at..end]) {
                    _ if header.is_control() => {
                        if let Some((marker, _)) = read_marker(&buf[at..end]) {
                            let producer_id = header.producer_id;
                            f(Replayed::Marker { producer_id, marker });
                        }
                    }
                    Some(batch) => {
                        replayed += batch.len() as u64;
                        for record in batch {
                            f(Replayed::Record { record, txn_producer });
                        }
                    }
                    None => warn!(partition = %self.tp, offset = header.base_offset, "unreadable batch; skipped"),
                }
                offset = header.next_offset();
                at = end;
            }
            if offset == before {
                return Err(io::Error::other(format!("no progress reading at offset {offset}")));
            }
        }
        Ok(replayed)
    }
}
