//! Retention and compaction by snapshot: whole segments deleted from the front.

use crate::storage::log_config::LogConfig;
use crate::storage::segment::Segment;
use std::io;
use tracing::info;

use super::*;

/// Whether `segment`'s newest record (or its creation, if it has no
/// timestamps) is older than `retention.ms`.
pub(super) fn retention_expired(config: &LogConfig, segment: &Segment, now_ms: i64) -> bool {
    let newest_ms = if segment.max_timestamp_ms >= 0 {
        segment.max_timestamp_ms
    } else {
        segment.created_ms
    };
    config.retention_ms >= 0 && now_ms.saturating_sub(newest_ms) > config.retention_ms
}

impl LogState {
    /// After whole segments were deleted from the front: the log starts at
    /// the first one left, and so does the epoch history (saved by the next
    /// write or maintenance tick).
    pub(super) fn start_at_first_segment(&mut self) {
        self.log_start_offset = self.log_start_offset.max(self.segments[0].base_offset);
        self.epochs.truncate_from_start(self.log_start_offset);
    }
}

impl PartitionLog {
    /// Deletes whole segments past `retention.ms` or beyond `retention.bytes`.
    /// The active segment is rolled first (off the event loop) when it has
    /// itself expired.
    pub async fn enforce_retention(&self, now_ms: i64) -> io::Result<usize> {
        self.assert_owner();
        if self.state.borrow().failed {
            return Ok(0);
        }
        self.roll_ahead(RollWhen::RetentionExpired, now_ms).await?;
        let mut st = self.state.borrow_mut();
        let LogState { config, segments, .. } = &mut *st;
        let mut deleted = 0;
        let mut total: i64 = segments.iter().map(|s| s.size_bytes as i64).sum();
        let retention_bytes = config.retention_bytes;
        // Bounded by the number of segments; the active one always stays.
        while segments.len() > 1 {
            let oldest = &segments[0];
            if oldest.readable_bytes < oldest.size_bytes {
                break; // writes to it are still in flight
            }
            let over_size = retention_bytes >= 0 && total - oldest.size_bytes as i64 >= retention_bytes;
            if !(retention_expired(config, oldest, now_ms) || over_size) {
                break;
            }
            let oldest = segments.remove(0);
            total -= oldest.size_bytes as i64;
            oldest.delete_files_in_background();
            deleted += 1;
        }
        if deleted > 0 {
            st.start_at_first_segment();
            info!(partition = %self.tp, deleted, log_start_offset = st.log_start_offset, "retention deleted segments");
            drop(st);
            self.remove_producer_snapshots_below_start();
        }
        Ok(deleted)
    }

    /// Starts a new active segment now, unless the active one is still empty.
    /// A snapshot written after this lands wholly in segments of its own.
    pub async fn roll_now(&self, now_ms: i64) -> io::Result<()> {
        self.assert_owner();
        if self.roll_ahead(RollWhen::NotEmpty, now_ms).await? {
            return Ok(());
        }
        // Lost every round to races: roll here and now.
        let mut st = self.state.borrow_mut();
        if st.segments.last().expect("active segment").is_empty() {
            return Ok(());
        }
        st.roll(&self.dir, now_ms)
    }

    /// Deletes the whole segments that hold only offsets below `offset` and
    /// raises the log start offset past them: what compacting by snapshot uses
    /// once the snapshot at `offset` is written. The active segment always stays.
    pub fn delete_segments_below(&self, offset: i64) -> io::Result<usize> {
        self.assert_owner();
        let mut st = self.state.borrow_mut();
        assert!(offset <= st.log_end_offset, "cannot delete past the high watermark");
        let mut deleted = 0;
        // Bounded by the number of segments.
        while st.segments.len() > 1 && st.segments[1].base_offset <= offset {
            let oldest = &st.segments[0];
            if oldest.readable_bytes < oldest.size_bytes {
                break; // writes to it are still in flight
            }
            st.segments.remove(0).delete_files_in_background();
            deleted += 1;
        }
        if deleted > 0 {
            st.start_at_first_segment();
            drop(st);
            self.remove_producer_snapshots_below_start();
        }
        Ok(deleted)
    }
}
