//! Reads: fetch slices (sendfile-ready), long-poll waits, and lookups by timestamp.

use crate::model::ErrorCode;
use std::io;
use std::sync::Arc;
use tracing::warn;

use super::*;

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
        let mut result = ReadResult {
            high_watermark: st.high_watermark(),
            log_start_offset: st.log_start_offset,
            slice: None,
        };
        let end = match reader {
            Reader::Consumer => st.high_watermark(),
            Reader::Replica => st.log_end_offset,
        };
        if offset < st.log_start_offset || offset > st.log_end_offset {
            return Err(ErrorCode::OffsetOutOfRange);
        }
        if offset >= end {
            return Ok(result);
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
                // A consumer below the high watermark gets only whole batches below it.
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
        let st = self.state.borrow();
        match reader {
            Reader::Consumer => st.high_watermark(),
            Reader::Replica => st.log_end_offset,
        }
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
    pub fn offset_for(&self, timestamp_ms: i64) -> Result<(i64, i64), ErrorCode> {
        self.assert_owner();
        let st = self.state.borrow();
        let io_err = |e: io::Error| {
            warn!("offset lookup failed: {e}");
            ErrorCode::KafkaStorageError
        };
        match timestamp_ms {
            -2 | -4 => Ok((st.log_start_offset, -1)),
            -1 => Ok((st.high_watermark(), -1)),
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
