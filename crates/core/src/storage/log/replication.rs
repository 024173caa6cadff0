//! What replication needs of a log: a follower's appends of the leader's
//! batches as stored, truncation, the leader-epoch history and its
//! checkpoint, and the high watermark set by the replication layer.

use crate::model::ErrorCode;
use crate::record::{self, BatchError, BatchHeader};
use crate::storage::producer::ProducerStates;
use crate::storage::segment::Segment;
use bytes::BytesMut;
use std::io;
use std::path::PathBuf;
use std::sync::Arc;
use tracing::info;

use std::sync::atomic::Ordering;

use super::*;

/// Removes the files of segments taken out of a log, on compio's blocking
/// pool, and waits for it.
pub(super) async fn remove_segments_off_loop(segments: &[Segment]) -> io::Result<()> {
    let paths: Vec<[PathBuf; 4]> = segments.iter().map(Segment::file_paths).collect();
    compio::runtime::spawn_blocking(move || {
        for path in paths.iter().flatten() {
            crate::storage::segment::remove_if_present(path)?;
        }
        Ok(())
    })
    .await
    .unwrap_or_else(|_| Err(io::Error::other("removing segments panicked")))
}

impl PartitionLog {
    /// The high watermark the replication layer last set, if any.
    pub fn replicated_high_watermark(&self) -> Option<i64> {
        self.assert_owner();
        self.state.borrow().replicated_high_watermark
    }

    /// The high watermark this log last knew: set in this run, or read
    /// back from the `replication-offset` checkpoint at open.
    pub fn known_high_watermark(&self) -> Option<i64> {
        self.assert_owner();
        let st = self.state.borrow();
        st.replicated_high_watermark.or(st.high_watermark_checkpointed)
    }

    /// Writes the replicated high watermark to the `replication-offset`
    /// checkpoint if it moved. No fsync: a stale checkpoint is lower, and truncating to a
    /// lower offset only makes a follower fetch more again. Written on the
    /// blocking pool; only the maintenance tick calls it, one log at a time.
    pub async fn checkpoint_high_watermark(&self) -> io::Result<()> {
        self.assert_owner();
        let high_watermark = {
            let st = self.state.borrow();
            match st.replicated_high_watermark {
                Some(hw) if Some(hw) != st.high_watermark_checkpointed => hw,
                _ => return Ok(()),
            }
        };
        let dir = self.dir.clone();
        let written = compio::runtime::spawn_blocking(move || {
            let text = high_watermark.to_string();
            crate::storage::space::replace_file(&dir.join(CHECKPOINT_FILE), text.as_bytes(), false)
        })
        .await
        .unwrap_or_else(|_| Err(io::Error::other("the replication-offset write panicked")));
        written?;
        self.state.borrow_mut().high_watermark_checkpointed = Some(high_watermark);
        Ok(())
    }

    /// Cuts the log back to `offset` (a follower dropping a tail it cannot
    /// know to be committed before it follows a new leader). Waits for
    /// in-flight appends first. Returns the new log end offset.
    pub async fn truncate_to(&self, offset: i64) -> io::Result<i64> {
        self.assert_owner();
        let reshape = self.begin_reshape().await;
        self.wait_for_inflight_below(1).await;
        let cut = self.cut_to(offset);
        // Their names may come back once the log grows again: removed before
        // the reshape ends, on the blocking pool.
        let removed = match &cut {
            Ok((_, dropped)) if !dropped.is_empty() => remove_segments_off_loop(dropped).await,
            _ => Ok(()),
        };
        let snapshots_removed = match &cut {
            Ok((end, _)) => self.remove_producer_snapshots_after(*end).await,
            Err(_) => Ok(()),
        };
        drop(reshape);
        let (end, _) = cut?;
        removed?;
        snapshots_removed?;
        self.make_epochs_durable().await?;
        Ok(end)
    }

    /// `truncate_to` once no write is in flight: returns the new log end and
    /// the segments taken out, whose files the caller removes. The epoch
    /// history changes in memory only.
    pub(super) fn cut_to(&self, offset: i64) -> io::Result<(i64, Vec<Segment>)> {
        let mut st = self.state.borrow_mut();
        // Epochs that start at the cut go even when no record does: an epoch
        // this replica led without appending is not the leader's history.
        st.epochs.truncate_from_end(offset);
        if offset >= st.next_offset {
            return Ok((st.next_offset, Vec::new()));
        }
        let offset = offset.max(st.log_start_offset);
        // A marker is a batch of one record: one at or past `end` is at or past `offset`.
        let ended = st.txns_ended_past(offset);
        let mut dropped = Vec::new();
        // Segments wholly at or past the cut go; the first segment always stays.
        while st.segments.len() > 1 && st.segments.last().is_some_and(|s| s.base_offset >= offset) {
            dropped.push(st.segments.pop().expect("more than one segment"));
        }
        let end = st
            .segments
            .last_mut()
            .expect("a log always has a segment")
            .truncate_to(offset)?;
        assert!(end <= offset, "truncation never keeps records past the cut");
        st.next_offset = end;
        st.log_end_offset = end;
        st.producers
            .truncate_from(end, &super::transactions::reopened_by_cut(ended, end));
        st.replicated_high_watermark = st.replicated_high_watermark.map(|c| c.min(end));
        st.epochs.truncate_from_end(end);
        if st.leader_epoch > st.epochs.latest_epoch().unwrap_or(LEADER_EPOCH) {
            st.leader_epoch = st.epochs.latest_epoch().unwrap_or(LEADER_EPOCH);
        }
        info!(partition = %self.tp, end, "truncated the log");
        Ok((end, dropped))
    }

    /// Empties the log and restarts it at `offset`: a replica whose log ends
    /// below the leader's log start (it was away through retention, or it is
    /// new) has nothing the leader can extend.
    pub async fn restart_at(&self, offset: i64, now_ms: i64) -> io::Result<()> {
        self.assert_owner();
        let reshape = self.begin_reshape().await;
        self.wait_for_inflight_below(1).await;
        if offset <= self.state.borrow().next_offset {
            return Ok(()); // the log reached the leader's start meanwhile
        }
        // Every segment now starts below `offset`, so the new name is free.
        let dir = self.dir.clone();
        let created = compio::runtime::spawn_blocking(move || Segment::create(&dir, offset, now_ms))
            .await
            .unwrap_or_else(|_| Err(io::Error::other("creating a segment panicked")));
        let created = created.map(|segment| self.empty_from(offset, segment));
        drop(reshape);
        for segment in created? {
            // Below the new log start: their names never come back.
            segment.delete_files_in_background();
        }
        self.remove_producer_snapshots_below_start();
        self.make_epochs_durable().await
    }

    /// `restart_at` once no write is in flight and the new segment exists:
    /// returns the segments taken out.
    pub(super) fn empty_from(&self, offset: i64, segment: Segment) -> Vec<Segment> {
        let mut st = self.state.borrow_mut();
        let dropped = std::mem::replace(&mut st.segments, vec![segment]);
        st.log_start_offset = offset;
        st.next_offset = offset;
        st.log_end_offset = offset;
        st.replicated_high_watermark = st.replicated_high_watermark.map(|c| c.max(offset));
        st.producers = ProducerStates::default();
        st.undecided_txns.clear();
        st.epochs.truncate_from_end(0);
        info!(partition = %self.tp, offset, "restarted the log at the leader's log start");
        dropped
    }

    /// This broker leads the partition from now on in `epoch`: later appends
    /// carry it, and the history records that it starts at the log end. In
    /// memory; the caller makes it durable (`make_epochs_durable`), and no
    /// batch of the epoch is written before that.
    pub fn become_leader(&self, epoch: i32) {
        self.assert_owner();
        let mut st = self.state.borrow_mut();
        if epoch <= st.leader_epoch && st.epochs.latest_epoch().is_some_and(|e| e >= epoch) {
            return;
        }
        st.leader_epoch = st.leader_epoch.max(epoch);
        let start = st.next_offset;
        if st.epochs.assign(epoch, start) {
            info!(partition = %self.tp, epoch, start_offset = start, "leader epoch begins");
        }
    }

    /// Writes the leader-epoch history on compio's blocking pool if it
    /// changed since the last write (write, fsync, rename), one write at a
    /// time, and returns once every change made before the call is on disk.
    pub async fn make_epochs_durable(&self) -> io::Result<()> {
        self.assert_owner();
        // Bounded: each wake means a write ended, and a write starts only
        // when the history changed since the last one.
        loop {
            let listener = {
                let mut st = self.state.borrow_mut();
                let writes = &self.epoch_writes;
                st.epochs
                    .mark_durable_version(writes.durable_version.load(Ordering::Acquire));
                if st.epochs.is_durable() {
                    return Ok(());
                }
                if !writes.in_flight.load(Ordering::Acquire) {
                    if let Some(e) = writes.error.lock().expect("not poisoned").take() {
                        return Err(e);
                    }
                    writes.in_flight.store(true, Ordering::Release);
                    spawn_epoch_write(Arc::clone(writes), st.epochs.checkpoint());
                }
                writes.done.listen()
            };
            listener.await;
        }
    }

    /// The newest leader epoch in this log's history.
    pub fn latest_epoch(&self) -> Option<i32> {
        self.assert_owner();
        self.state.borrow().epochs.latest_epoch()
    }

    /// The leader epoch `offset` was written in (ListOffsets answers it).
    pub fn epoch_at(&self, offset: i64) -> i32 {
        self.assert_owner();
        self.state.borrow().epochs.epoch_at(offset)
    }

    /// OffsetForLeaderEpoch: the largest epoch not above `requested` and the
    /// offset where it ends in this log.
    pub fn end_offset_for_epoch(&self, requested: i32) -> (i32, i64) {
        self.assert_owner();
        let st = self.state.borrow();
        st.epochs.end_offset_for(requested, st.log_end_offset)
    }

    /// Sets the replicated high watermark; `None` returns to single-copy
    /// behaviour. Wakes readers waiting for it to move.
    pub fn set_replicated_high_watermark(&self, high_watermark: Option<i64>) {
        self.assert_owner();
        let moved = {
            let mut st = self.state.borrow_mut();
            let before = st.high_watermark();
            assert!(
                high_watermark.is_none_or(|hw| hw <= st.log_end_offset),
                "the high watermark of {} set past the log end offset",
                self.tp
            );
            st.replicated_high_watermark = high_watermark;
            st.high_watermark() != before
        };
        if moved {
            self.appended.notify(usize::MAX);
        }
    }

    /// Wakes every task waiting on this log's data or high watermark, to
    /// look again at what it waits for: the replication layer calls it when
    /// leadership of the partition changes, which no append signals.
    pub fn wake_waiters(&self) {
        self.assert_owner();
        self.appended.notify(usize::MAX);
    }

    /// A follower's append: whole batches exactly as the leader stored them
    /// (offsets and leader epochs already set), at most INFLIGHT_APPENDS_MAX
    /// of them. They must continue this log's offsets and pass their CRCs;
    /// the bytes land unchanged, so replicas stay byte-identical, and the
    /// batches that share a segment go in one write. On a refused batch, the
    /// ones before it are still appended. Returns the new log end offset.
    pub async fn append_replicated(&self, mut batches: BytesMut, now_ms: i64) -> Result<i64, BatchError> {
        self.assert_owner();
        let turn = self.wait_for_turn().await;
        self.ready_to_append().await?;
        self.wait_for_inflight_below(INFLIGHT_APPENDS_MAX).await;
        let first_bytes = BatchHeader::parse(&batches).map_or(0, |h| h.total_bytes().min(batches.len()));
        let when = RollWhen::Append {
            bytes: first_bytes as u64,
        };
        self.roll_ahead(when, now_ms)
            .await
            .map_err(|e| storage_error(format!("segment roll failed: {e}")))?;
        let mut writes: Vec<ReservedWrite> = Vec::new();
        let (refused, end) = {
            let mut st = self.state.borrow_mut();
            if st.failed {
                return Err(storage_error("the log had a write error and is offline"));
            }
            let mut refused = None;
            // Bounded by INFLIGHT_APPENDS_MAX batches.
            for _ in 0..INFLIGHT_APPENDS_MAX {
                if batches.is_empty() {
                    break;
                }
                let header = match self.check_replicated(&st, &batches) {
                    Ok(header) => header,
                    Err(e) => {
                        refused = Some(e);
                        break;
                    }
                };
                // A failure here must not return early: the batches already
                // reserved are in flight and still need their write.
                st.note_epoch(header.leader_epoch, header.base_offset);
                let marker = header
                    .is_control()
                    .then(|| record::control::read_marker(&batches[..header.total_bytes()]))
                    .flatten();
                let reserved = self.reserve(&mut st, &header, marker, header.total_bytes() as u64, now_ms);
                let (file, position, seq) = match reserved {
                    Ok(reserved) => reserved,
                    Err(e) => {
                        refused = Some(e);
                        break;
                    }
                };
                let bytes = batches.split_to(header.total_bytes());
                match writes.last_mut() {
                    Some(w) if Arc::ptr_eq(&w.file, &file) && w.position + w.bytes.len() as u64 == position => {
                        assert_eq!(w.seqs.end, seq, "batches reserved in a row have consecutive sequences");
                        w.bytes.unsplit(bytes);
                        w.seqs.end = seq + 1;
                    }
                    _ => writes.push(ReservedWrite {
                        file,
                        position,
                        seqs: seq..seq + 1,
                        bytes,
                    }),
                }
            }
            (refused, st.next_offset)
        };
        drop(turn);
        let mut failed = None;
        for write in writes {
            match failed {
                None => failed = self.write_reserved_run(write, now_ms).await.err(),
                Some(_) => self.abandon(write, now_ms),
            }
        }
        match failed.or(refused) {
            Some(e) => Err(e),
            None => Ok(end),
        }
    }

    /// The first batch of `batches`, if it is whole, passes its CRC and
    /// starts at this log's end.
    pub(super) fn check_replicated(&self, st: &LogState, batches: &[u8]) -> Result<BatchHeader, BatchError> {
        let header = BatchHeader::parse(batches)
            .filter(|h| h.batch_length > 0 && h.total_bytes() <= batches.len())
            .and_then(|h| record::verify_stored_batch(&batches[..h.total_bytes()]));
        let Some(header) = header else {
            return Err(BatchError {
                code: ErrorCode::CorruptMessage,
                message: format!("a replicated batch for {} failed its CRC or shape check", self.tp),
            });
        };
        if header.base_offset != st.next_offset {
            return Err(BatchError {
                code: ErrorCode::OffsetOutOfRange,
                message: format!(
                    "a replicated batch for {} starts at {}, the log ends at {}",
                    self.tp, header.base_offset, st.next_offset
                ),
            });
        }
        Ok(header)
    }
}

/// Writes `checkpoint` on the blocking pool from a task of its own, which no
/// caller can cancel halfway: a cancelled write would leave `in_flight` set,
/// or a second write racing the first over the same file.
fn spawn_epoch_write(writes: Arc<EpochWrites>, checkpoint: crate::storage::epoch::Checkpoint) {
    compio::runtime::spawn(async move {
        let version = checkpoint.version;
        let written = compio::runtime::spawn_blocking(move || checkpoint.write()).await;
        match written {
            Ok(Ok(())) => {
                writes.durable_version.fetch_max(version, Ordering::AcqRel);
            }
            Ok(Err(e)) => *writes.error.lock().expect("not poisoned") = Some(e),
            Err(_) => *writes.error.lock().expect("not poisoned") = Some(io::Error::other("the write panicked")),
        }
        writes.in_flight.store(false, Ordering::Release);
        writes.done.notify(usize::MAX);
    })
    .detach();
}
