//! A partition's log: an ordered list of segments, the last one active.
//!
//! A `PartitionLog` lives on the one shard that owns its partition and is
//! never shared: it uses `RefCell`, not a lock, and debug builds assert on
//! every entry point that the caller is the owning thread.

use std::cell::RefCell;
use std::collections::VecDeque;
use std::fs::File;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use bytes::BytesMut;
use compio::BufResult;
use compio::buf::IntoInner;
use compio::driver::op::{Sync as SyncOp, WriteAt};
use tracing::{info, warn};

use super::epoch::LeaderEpochCache;
use super::log_config::{LogConfig, TimestampType};
use super::producer::{ProducerStates, SequenceCheck};
use super::segment::{RecoveryStats, Segment};
use crate::model::{ErrorCode, TopicPartition};
use crate::record::{self, BatchError, BatchHeader};

/// Appends whose writes may be in flight at once on one partition.
pub const INFLIGHT_APPENDS_MAX: usize = 256;
/// A partition no quorum leads (single-node mode) stays in leader epoch 0.
pub const LEADER_EPOCH: i32 = 0;

/// Where a produce request's batch landed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AppendInfo {
    pub base_offset: i64,
    /// -1 unless the topic uses LogAppendTime.
    pub log_append_time_ms: i64,
    pub log_start_offset: i64,
    pub duplicate: bool,
}

/// Record bytes for a fetch: a range of a segment file, sent without a user-space copy.
#[derive(Debug, Clone)]
pub struct FileSlice {
    pub file: Arc<File>,
    pub position: u64,
    pub bytes: u64,
}

#[derive(Debug, Clone)]
pub struct ReadResult {
    pub high_watermark: i64,
    pub log_start_offset: i64,
    pub slice: Option<FileSlice>,
}

/// Reserved batches that follow each other in one segment file: one write.
struct ReservedWrite {
    file: Arc<File>,
    position: u64,
    /// The in-flight sequence numbers of its batches (consecutive).
    seqs: std::ops::Range<u64>,
    bytes: BytesMut,
}

struct Inflight {
    seq: u64,
    segment_base: i64,
    end_position: u64,
    end_offset: i64,
    messages: i64,
    done: bool,
}

/// Who reads: a consumer sees committed data only; a follower replica sees
/// the whole local log.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reader {
    Consumer,
    Replica,
}

/// A replicated partition's last known committed offset, for truncation after a restart.
const CHECKPOINT_FILE: &str = "replication-offset";

struct LogState {
    config: LogConfig,
    segments: Vec<Segment>,
    log_start_offset: i64,
    /// One past the last assigned offset (the log end offset).
    next_offset: i64,
    /// All writes below this offset have completed: the local log end as
    /// readers may see it. Followers replicate up to it.
    high_watermark: i64,
    /// Replicated partitions: what every in-sync replica has (set by the
    /// replication layer). Consumers never see past it; `None` means this log
    /// alone decides, as on a single node.
    committed: Option<i64>,
    /// The committed offset last written to the `replication-offset` file.
    checkpointed: Option<i64>,
    /// The epoch this broker stamps on the batches it appends as leader.
    leader_epoch: i32,
    /// Where each leader epoch starts in this log (KIP-101).
    epochs: LeaderEpochCache,
    inflight: VecDeque<Inflight>,
    next_seq: u64,
    producers: ProducerStates,
    /// Messages whose writes completed, and how many of them were fsynced,
    /// both counted since the log was opened: cumulative, so flushes that
    /// overlap each move the flushed count only forward.
    completed_messages: i64,
    flushed_messages: i64,
    first_unflushed_ms: Option<i64>,
    /// Set after a write error: the log has a hole and refuses further work.
    failed: bool,
}

pub struct PartitionLog {
    tp: TopicPartition,
    dir: PathBuf,
    #[cfg(debug_assertions)]
    owner: std::thread::ThreadId,
    state: RefCell<LogState>,
    /// Fires when the high watermark moves, waking long-poll fetches.
    appended: event_listener::Event,
}

fn storage_error(message: impl Into<String>) -> BatchError {
    BatchError {
        code: ErrorCode::KafkaStorageError,
        message: message.into(),
    }
}

impl LogState {
    /// Records that `epoch` starts at `offset` if it is new, saving the
    /// history before the batch that opens it is written.
    fn note_epoch(&mut self, epoch: i32, offset: i64) -> Result<(), BatchError> {
        if self.epochs.assign(epoch, offset) {
            self.epochs
                .save()
                .map_err(|e| storage_error(format!("cannot save the leader-epoch checkpoint: {e}")))?;
        }
        Ok(())
    }

    /// After whole segments were deleted from the front: the log starts at
    /// the first one left, and so does the epoch history.
    fn start_at_first_segment(&mut self) -> io::Result<()> {
        self.log_start_offset = self.log_start_offset.max(self.segments[0].base_offset);
        if self.epochs.truncate_from_start(self.log_start_offset) {
            self.epochs.save()?;
        }
        Ok(())
    }

    fn visible_end(&self) -> i64 {
        self.committed.map_or(self.high_watermark, |c| {
            c.clamp(self.log_start_offset, self.high_watermark)
        })
    }
}

impl PartitionLog {
    /// Opens the partition directory, creating it if needed, and recovers every segment.
    pub fn open(root: &Path, tp: TopicPartition, config: LogConfig, now_ms: i64) -> io::Result<Self> {
        let dir = root.join(tp.dir_name());
        std::fs::create_dir_all(&dir)?;
        let mut bases: Vec<i64> = std::fs::read_dir(&dir)?
            .filter_map(|e| e.ok())
            .filter_map(|e| {
                let name = e.file_name().into_string().ok()?;
                name.strip_suffix(".log")?.parse::<i64>().ok()
            })
            .collect();
        bases.sort_unstable();
        let mut segments: Vec<Segment> = Vec::with_capacity(bases.len().max(1));
        for base in bases {
            if let Some(prev) = segments.last()
                && prev.next_offset != base
                && !prev.is_empty()
                && prev.next_offset > base
            {
                warn!(partition = %tp, base, "segment overlaps its predecessor; removing it");
                remove_segment_files(&dir, base);
                continue;
            }
            let (segment, stats) = Segment::open(&dir, base, now_ms, config.index_interval_bytes)?;
            report_recovery(&tp, base, &stats);
            let truncated = stats.bytes_truncated > 0;
            segments.push(segment);
            if truncated {
                // Everything after a damaged segment follows a hole: drop it.
                remove_segments_after(&dir, base)?;
                break;
            }
        }
        if segments.is_empty() {
            segments.push(Segment::create(&dir, 0, now_ms)?);
        }
        let log_start_offset = segments[0].base_offset;
        let next_offset = segments.last().map_or(0, |s| s.next_offset);
        let producers = rebuild_producer_states(&segments, now_ms)?;
        let checkpointed = std::fs::read_to_string(dir.join(CHECKPOINT_FILE))
            .ok()
            .and_then(|t| t.trim().parse().ok());
        let epochs = load_epochs(&dir, &segments, log_start_offset, next_offset)?;
        let leader_epoch = epochs.latest_epoch().unwrap_or(LEADER_EPOCH);
        Ok(Self {
            tp,
            dir,
            #[cfg(debug_assertions)]
            owner: std::thread::current().id(),
            state: RefCell::new(LogState {
                config,
                segments,
                log_start_offset,
                next_offset,
                high_watermark: next_offset,
                committed: None,
                checkpointed,
                leader_epoch,
                epochs,
                inflight: VecDeque::new(),
                next_seq: 0,
                producers,
                completed_messages: 0,
                flushed_messages: 0,
                first_unflushed_ms: None,
                failed: false,
            }),
            appended: event_listener::Event::new(),
        })
    }

    /// Partition logs are touched only by their owning shard's thread.
    #[inline]
    fn assert_owner(&self) {
        #[cfg(debug_assertions)]
        assert_eq!(
            std::thread::current().id(),
            self.owner,
            "partition {} touched off its owner shard",
            self.tp
        );
    }

    pub fn topic_partition(&self) -> &TopicPartition {
        &self.tp
    }

    pub fn set_config(&self, config: LogConfig) {
        self.assert_owner();
        self.state.borrow_mut().config = config;
    }

    /// What consumers may read up to: the committed offset of a replicated
    /// partition, otherwise every completed write.
    pub fn high_watermark(&self) -> i64 {
        self.assert_owner();
        self.state.borrow().visible_end()
    }

    /// The end of the completed local writes (the log end offset a follower reports).
    pub fn log_end_offset(&self) -> i64 {
        self.assert_owner();
        self.state.borrow().high_watermark
    }

    /// The committed offset this log last knew: set in this run, or read
    /// back from the `replication-offset` checkpoint at open.
    pub fn known_committed(&self) -> Option<i64> {
        self.assert_owner();
        let st = self.state.borrow();
        st.committed.or(st.checkpointed)
    }

    /// Writes the committed offset to the `replication-offset` checkpoint if
    /// it moved. No fsync: a stale checkpoint is lower, and truncating to a
    /// lower offset only makes a follower fetch more again.
    pub fn checkpoint_committed(&self) -> io::Result<()> {
        self.assert_owner();
        let committed = {
            let st = self.state.borrow();
            match st.committed {
                Some(c) if Some(c) != st.checkpointed => c,
                _ => return Ok(()),
            }
        };
        let tmp = self.dir.join(format!("{CHECKPOINT_FILE}.tmp"));
        std::fs::write(&tmp, committed.to_string())?;
        std::fs::rename(&tmp, self.dir.join(CHECKPOINT_FILE))?;
        self.state.borrow_mut().checkpointed = Some(committed);
        Ok(())
    }

    /// Cuts the log back to `offset` (a follower dropping a tail it cannot
    /// know to be committed before it follows a new leader). Waits for
    /// in-flight appends first. Returns the new log end offset.
    pub async fn truncate_to(&self, offset: i64) -> io::Result<i64> {
        self.assert_owner();
        self.wait_for_inflight_below(1).await;
        let mut st = self.state.borrow_mut();
        // Epochs that start at the cut go even when no record does: an epoch
        // this replica led without appending is not the leader's history.
        if st.epochs.truncate_from_end(offset) {
            st.epochs.save()?;
        }
        if offset >= st.next_offset {
            return Ok(st.next_offset);
        }
        let offset = offset.max(st.log_start_offset);
        // Segments wholly at or past the cut go; the first segment always stays.
        while st.segments.len() > 1 && st.segments.last().is_some_and(|s| s.base_offset >= offset) {
            let segment = st.segments.pop().expect("more than one segment");
            segment.delete_files()?;
        }
        let end = st
            .segments
            .last_mut()
            .expect("a log always has a segment")
            .truncate_to(offset)?;
        assert!(end <= offset, "truncation never keeps records past the cut");
        st.next_offset = end;
        st.high_watermark = end;
        st.committed = st.committed.map(|c| c.min(end));
        if st.epochs.truncate_from_end(end) {
            st.epochs.save()?;
        }
        if st.leader_epoch > st.epochs.latest_epoch().unwrap_or(LEADER_EPOCH) {
            st.leader_epoch = st.epochs.latest_epoch().unwrap_or(LEADER_EPOCH);
        }
        info!(partition = %self.tp, end, "truncated the log");
        Ok(end)
    }

    /// Empties the log and restarts it at `offset`: a replica whose log ends
    /// below the leader's log start (it was away through retention, or it is
    /// new) has nothing the leader can extend.
    pub async fn restart_at(&self, offset: i64, now_ms: i64) -> io::Result<()> {
        self.assert_owner();
        self.wait_for_inflight_below(1).await;
        let mut st = self.state.borrow_mut();
        // Bounded by the number of segments.
        while let Some(segment) = st.segments.pop() {
            segment.delete_files()?;
        }
        st.segments.push(Segment::create(&self.dir, offset, now_ms)?);
        st.log_start_offset = offset;
        st.next_offset = offset;
        st.high_watermark = offset;
        st.committed = st.committed.map(|c| c.max(offset));
        st.producers = ProducerStates::default();
        st.epochs.truncate_from_end(0);
        st.epochs.save()?;
        info!(partition = %self.tp, offset, "restarted the log at the leader's log start");
        Ok(())
    }

    /// This broker leads the partition from now on in `epoch`: later appends
    /// carry it, and the history records that it starts at the log end.
    pub fn become_leader(&self, epoch: i32) -> io::Result<()> {
        self.assert_owner();
        let mut st = self.state.borrow_mut();
        if epoch <= st.leader_epoch && st.epochs.latest_epoch().is_some_and(|e| e >= epoch) {
            return Ok(());
        }
        st.leader_epoch = st.leader_epoch.max(epoch);
        let start = st.next_offset;
        if st.epochs.assign(epoch, start) {
            st.epochs.save()?;
            info!(partition = %self.tp, epoch, start_offset = start, "leader epoch begins");
        }
        Ok(())
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
        st.epochs.end_offset_for(requested, st.high_watermark)
    }

    /// Sets the replicated high watermark; `None` returns to single-copy
    /// behaviour. Wakes readers waiting for it to move.
    pub fn set_committed(&self, committed: Option<i64>) {
        self.assert_owner();
        let moved = {
            let mut st = self.state.borrow_mut();
            let before = st.visible_end();
            st.committed = committed;
            st.visible_end() != before
        };
        if moved {
            self.appended.notify(usize::MAX);
        }
    }

    pub fn log_start_offset(&self) -> i64 {
        self.assert_owner();
        self.state.borrow().log_start_offset
    }

    pub fn size_bytes(&self) -> u64 {
        self.assert_owner();
        self.state.borrow().segments.iter().map(|s| s.size_bytes).sum()
    }

    /// Messages appended since the last fsync (the flush policy's counter).
    pub fn unflushed_messages(&self) -> i64 {
        self.assert_owner();
        let st = self.state.borrow();
        st.completed_messages - st.flushed_messages
    }

    pub fn segment_count(&self) -> usize {
        self.assert_owner();
        self.state.borrow().segments.len()
    }

    /// Validates, assigns offsets to and appends one producer batch. Returns
    /// once the io_uring write has completed (the data is in the page cache);
    /// no fsync unless the flush policy asks for one.
    pub async fn append(&self, mut batch: BytesMut, now_ms: i64) -> Result<AppendInfo, BatchError> {
        self.assert_owner();
        self.wait_for_inflight_below(INFLIGHT_APPENDS_MAX).await;
        let (file, position, seq, info) = {
            let mut st = self.state.borrow_mut();
            if st.failed {
                return Err(storage_error("the log had a write error and is offline"));
            }
            let header = record::validate_single_batch(&batch, st.config.max_message_bytes)?;
            if let SequenceCheck::Duplicate(base_offset) = st.producers.check(&header)? {
                return Ok(AppendInfo {
                    base_offset,
                    log_append_time_ms: -1,
                    log_start_offset: st.log_start_offset,
                    duplicate: true,
                });
            }
            let base_offset = st.next_offset;
            let epoch = st.leader_epoch;
            st.note_epoch(epoch, base_offset)?;
            record::assign_offset(&mut batch, base_offset, epoch);
            let mut log_append_time_ms = -1;
            if st.config.timestamp_type == TimestampType::LogAppendTime {
                record::stamp_log_append_time(&mut batch, now_ms);
                log_append_time_ms = now_ms;
            }
            let header = BatchHeader::parse(&batch).expect("validated batch has a header");
            let (file, position, seq) = self.reserve(&mut st, &header, batch.len() as u64, now_ms)?;
            let info = AppendInfo {
                base_offset,
                log_append_time_ms,
                log_start_offset: st.log_start_offset,
                duplicate: false,
            };
            (file, position, seq, info)
        };
        self.write_reserved(file, position, seq, batch, now_ms).await?;
        Ok(info)
    }

    /// A follower's append: whole batches exactly as the leader stored them
    /// (offsets and leader epochs already set), at most INFLIGHT_APPENDS_MAX
    /// of them. They must continue this log's offsets and pass their CRCs;
    /// the bytes land unchanged, so replicas stay byte-identical, and the
    /// batches that share a segment go in one write. On a refused batch, the
    /// ones before it are still appended. Returns the new log end offset.
    pub async fn append_replicated(&self, mut batches: BytesMut, now_ms: i64) -> Result<i64, BatchError> {
        self.assert_owner();
        self.wait_for_inflight_below(INFLIGHT_APPENDS_MAX).await;
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
                let reserved = st
                    .note_epoch(header.leader_epoch, header.base_offset)
                    .and_then(|()| self.reserve(&mut st, &header, header.total_bytes() as u64, now_ms));
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
        for write in writes {
            self.write_reserved_run(write, now_ms).await?;
        }
        match refused {
            Some(e) => Err(e),
            None => Ok(end),
        }
    }

    /// The first batch of `batches`, if it is whole, passes its CRC and
    /// starts at this log's end.
    fn check_replicated(&self, st: &LogState, batches: &[u8]) -> Result<BatchHeader, BatchError> {
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

    /// Writes consecutive reserved batches in one go, completes each, and
    /// fsyncs if the flush policy asks.
    async fn write_reserved_run(&self, write: ReservedWrite, now_ms: i64) -> Result<(), BatchError> {
        let written = write_all_at(write.file, write.position, write.bytes).await;
        let mut flush_due = false;
        for seq in write.seqs {
            flush_due |= self.complete_append(seq, written.is_ok(), now_ms);
        }
        if let Err(e) = written {
            return Err(storage_error(format!("write to {} failed: {e}", self.tp)));
        }
        if flush_due {
            self.flush()
                .await
                .map_err(|e| storage_error(format!("fsync failed: {e}")))?;
        }
        Ok(())
    }

    /// Gives a batch its place: rolls if needed, reserves its file position
    /// and index entries, and queues it as in flight. Synchronous, so
    /// positions follow offsets.
    fn reserve(
        &self,
        st: &mut LogState,
        header: &BatchHeader,
        bytes: u64,
        now_ms: i64,
    ) -> Result<(Arc<File>, u64, u64), BatchError> {
        assert_eq!(
            header.base_offset, st.next_offset,
            "batches are reserved in offset order"
        );
        st.roll_if_needed(&self.dir, bytes, now_ms)
            .map_err(|e| storage_error(format!("segment roll failed: {e}")))?;
        let interval = st.config.index_interval_bytes;
        let segment = st.segments.last_mut().expect("a log always has an active segment");
        let position = segment.reserve(header, bytes, interval);
        let file = Arc::clone(&segment.file);
        let segment_base = segment.base_offset;
        st.next_offset = header.next_offset();
        st.producers.record(header, now_ms);
        let seq = st.next_seq;
        st.next_seq += 1;
        st.inflight.push_back(Inflight {
            seq,
            segment_base,
            end_position: position + bytes,
            end_offset: header.next_offset(),
            messages: header.records_count as i64,
            done: false,
        });
        Ok((file, position, seq))
    }

    /// Writes a reserved batch, completes it, and fsyncs if the flush policy asks.
    async fn write_reserved(
        &self,
        file: Arc<File>,
        position: u64,
        seq: u64,
        batch: BytesMut,
        now_ms: i64,
    ) -> Result<(), BatchError> {
        let write = ReservedWrite {
            file,
            position,
            seqs: seq..seq + 1,
            bytes: batch,
        };
        self.write_reserved_run(write, now_ms).await
    }

    /// Resolves once fewer than `limit` writes are in flight: room for one
    /// more append (INFLIGHT_APPENDS_MAX), or none left (1).
    async fn wait_for_inflight_below(&self, limit: usize) {
        // Bounded: each wake means an in-flight write completed.
        loop {
            if self.state.borrow().inflight.len() < limit {
                return;
            }
            let listener = self.appended.listen();
            if self.state.borrow().inflight.len() < limit {
                return;
            }
            listener.await;
        }
    }

    /// Marks a write done and advances the high watermark over every write
    /// completed in order. Returns whether `flush.messages` now asks for an fsync.
    fn complete_append(&self, seq: u64, ok: bool, now_ms: i64) -> bool {
        let mut st = self.state.borrow_mut();
        if !ok {
            st.failed = true;
        }
        let front_seq = st.inflight.front().map_or(seq, |f| f.seq);
        let slot = (seq - front_seq) as usize;
        st.inflight[slot].done = true;
        // Any pop frees an in-flight slot, so waiters are woken even when the log failed.
        let mut popped = false;
        while st.inflight.front().is_some_and(|f| f.done) {
            let f = st.inflight.pop_front().expect("front exists");
            popped = true;
            if !st.failed {
                st.high_watermark = f.end_offset;
                if let Some(segment) = st.segments.iter_mut().rev().find(|s| s.base_offset == f.segment_base) {
                    debug_assert!(f.end_position >= segment.readable_bytes);
                    segment.readable_bytes = f.end_position;
                }
                st.completed_messages += f.messages;
                st.first_unflushed_ms.get_or_insert(now_ms);
            }
        }
        drop(st);
        if popped {
            self.appended.notify(usize::MAX);
        }
        let st = self.state.borrow();
        st.completed_messages - st.flushed_messages >= st.config.flush_messages
    }

    /// Forces every completed write to disk (the operator's flush policy):
    /// each segment with unflushed writes is fsynced through io_uring, the
    /// active one and any rolled since the last flush. Counters and each
    /// segment's flushed offset move only once its fsync succeeded; writes
    /// that complete meanwhile stay counted for the next flush.
    pub async fn flush(&self) -> io::Result<()> {
        self.assert_owner();
        let (target, messages, pending) = {
            let mut st = self.state.borrow_mut();
            let target = st.high_watermark;
            let mut pending = Vec::new();
            for segment in st.segments.iter_mut() {
                let end = segment.next_offset.min(target);
                if segment.flushed_offset < end {
                    segment.flush_indexes()?;
                    pending.push((segment.base_offset, end, Arc::clone(&segment.file)));
                }
            }
            (target, st.completed_messages, pending)
        };
        for (base_offset, end, file) in pending {
            let BufResult(result, _) = compio::runtime::submit(SyncOp::new(file, true)).await;
            result?;
            crate::storage::record_fsync();
            let mut st = self.state.borrow_mut();
            if let Some(segment) = st.segments.iter_mut().find(|s| s.base_offset == base_offset) {
                assert!(end <= segment.next_offset, "flushed past the segment's writes");
                segment.flushed_offset = segment.flushed_offset.max(end);
            }
        }
        let mut st = self.state.borrow_mut();
        assert!(target <= st.high_watermark, "flushed past the completed writes");
        assert!(
            messages <= st.completed_messages,
            "flushed more messages than were written"
        );
        st.flushed_messages = st.flushed_messages.max(messages);
        if st.flushed_messages == st.completed_messages {
            st.first_unflushed_ms = None;
        }
        Ok(())
    }

    /// Flushes if `flush.ms` has passed since the oldest unflushed write, or
    /// a segment was rolled with writes not yet on disk (Kafka syncs a rolled
    /// segment in the background too).
    pub async fn flush_if_due(&self, now_ms: i64) -> io::Result<()> {
        self.assert_owner();
        let due = {
            let st = self.state.borrow();
            let by_age = st
                .first_unflushed_ms
                .is_some_and(|t| now_ms.saturating_sub(t) >= st.config.flush_ms);
            let active = st.segments.len() - 1;
            let rolled_unflushed = st.segments[..active].iter().any(|s| s.flushed_offset < s.next_offset);
            by_age || rolled_unflushed
        };
        if due { self.flush().await } else { Ok(()) }
    }

    /// Everything below this offset is on disk: the first unflushed offset
    /// of the oldest segment that has one, else the end of the completed writes.
    pub fn flushed_offset(&self) -> i64 {
        self.assert_owner();
        let st = self.state.borrow();
        st.segments
            .iter()
            .find(|s| s.flushed_offset < s.next_offset)
            .map_or(st.high_watermark, |s| s.flushed_offset)
    }

    /// Reads up to `max_bytes` starting at `offset`, never past the high
    /// watermark and never across a segment boundary. With `min_one_batch`
    /// the first batch is returned whole even if it is larger (KIP-74).
    pub fn read(&self, offset: i64, max_bytes: u64, min_one_batch: bool) -> Result<ReadResult, ErrorCode> {
        self.read_as(offset, max_bytes, min_one_batch, Reader::Consumer)
    }

    /// As `read`; a follower (`Reader::Replica`) reads up to the local log
    /// end, past the committed offset it is helping to advance.
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
            high_watermark: st.visible_end(),
            log_start_offset: st.log_start_offset,
            slice: None,
        };
        let end = match reader {
            Reader::Consumer => st.visible_end(),
            Reader::Replica => st.high_watermark,
        };
        if offset < st.log_start_offset || offset > st.high_watermark {
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
                // A consumer behind an uncommitted tail gets only whole batches below it.
                let available = if end < st.high_watermark {
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
    fn end_for(&self, reader: Reader) -> i64 {
        let st = self.state.borrow();
        match reader {
            Reader::Consumer => st.visible_end(),
            Reader::Replica => st.high_watermark,
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
            -1 => Ok((st.visible_end(), -1)),
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

    /// Deletes whole segments past `retention.ms` or beyond `retention.bytes`.
    /// The active segment is rolled first when it has itself expired.
    pub fn enforce_retention(&self, now_ms: i64) -> io::Result<usize> {
        self.assert_owner();
        let mut st = self.state.borrow_mut();
        if st.failed {
            return Ok(0);
        }
        let retention_ms = st.config.retention_ms;
        let expired = |s: &Segment| {
            let newest_ms = if s.max_timestamp_ms >= 0 {
                s.max_timestamp_ms
            } else {
                s.created_ms
            };
            retention_ms >= 0 && now_ms.saturating_sub(newest_ms) > retention_ms
        };
        let active = st.segments.last().expect("active segment");
        if !active.is_empty() && expired(active) {
            st.roll(&self.dir, now_ms)?;
        }
        let mut deleted = 0;
        let mut total: i64 = st.segments.iter().map(|s| s.size_bytes as i64).sum();
        let retention_bytes = st.config.retention_bytes;
        // Bounded by the number of segments; the active one always stays.
        while st.segments.len() > 1 {
            let oldest = &st.segments[0];
            if oldest.readable_bytes < oldest.size_bytes {
                break; // writes to it are still in flight
            }
            let over_size = retention_bytes >= 0 && total - oldest.size_bytes as i64 >= retention_bytes;
            if !(expired(oldest) || over_size) {
                break;
            }
            let oldest = st.segments.remove(0);
            total -= oldest.size_bytes as i64;
            oldest.delete_files_in_background();
            deleted += 1;
        }
        if deleted > 0 {
            st.start_at_first_segment()?;
            info!(partition = %self.tp, deleted, log_start_offset = st.log_start_offset, "retention deleted segments");
        }
        Ok(deleted)
    }

    /// Starts a new active segment now, unless the active one is still empty.
    /// A snapshot written after this lands wholly in segments of its own.
    pub fn roll_now(&self, now_ms: i64) -> io::Result<()> {
        self.assert_owner();
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
        assert!(offset <= st.high_watermark, "cannot delete past the high watermark");
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
            st.start_at_first_segment()?;
        }
        Ok(deleted)
    }

    /// Writes index entries behind; called by the shard's maintenance tick and at shutdown.
    pub fn flush_indexes(&self) -> io::Result<()> {
        self.assert_owner();
        let mut st = self.state.borrow_mut();
        for segment in st.segments.iter_mut() {
            segment.flush_indexes()?;
        }
        Ok(())
    }

    /// The partition's directory (DeleteTopics renames, then removes it off
    /// the shard; fetches in flight keep their files open).
    pub fn dir(&self) -> &Path {
        &self.dir
    }
}

impl LogState {
    fn roll_if_needed(&mut self, dir: &Path, bytes: u64, now_ms: i64) -> io::Result<()> {
        let active = self.segments.last().expect("active segment");
        if active.should_roll(bytes, self.config.segment_bytes, self.config.segment_ms, now_ms) {
            self.roll(dir, now_ms)?;
        }
        Ok(())
    }

    fn roll(&mut self, dir: &Path, now_ms: i64) -> io::Result<()> {
        let active = self.segments.last_mut().expect("active segment");
        active.flush_indexes()?;
        let base = active.next_offset;
        assert_eq!(base, self.next_offset, "the new segment starts at the log end offset");
        self.segments.push(Segment::create(dir, base, now_ms)?);
        Ok(())
    }
}

/// The leader-epoch history: the checkpoint cut to the log's offsets, or,
/// when there is none (a log written before epochs were kept), read from
/// every batch header once.
fn load_epochs(
    dir: &Path,
    segments: &[Segment],
    log_start_offset: i64,
    log_end_offset: i64,
) -> io::Result<LeaderEpochCache> {
    let (mut epochs, mut changed) = match LeaderEpochCache::load(dir) {
        Some(epochs) => (epochs, false),
        None => {
            let mut epochs = LeaderEpochCache::empty(dir);
            for segment in segments {
                segment.for_each_header(|h| {
                    epochs.assign(h.leader_epoch, h.base_offset);
                })?;
            }
            // An empty history needs no file (and no fsync per new partition):
            // the first append writes one.
            let rebuilt = !epochs.entries().is_empty();
            (epochs, rebuilt)
        }
    };
    changed |= epochs.truncate_from_end(log_end_offset);
    changed |= epochs.truncate_from_start(log_start_offset);
    if changed {
        epochs.save()?;
    }
    Ok(epochs)
}

/// Idempotent producers' recent sequences, re-read from the batch headers of
/// the newest segments (Kafka keeps snapshots; the headers hold the same facts).
/// Producers not seen in those segments are forgotten and treated as new.
fn rebuild_producer_states(segments: &[Segment], now_ms: i64) -> io::Result<ProducerStates> {
    const SEGMENTS_SCANNED: usize = 2;
    let mut producers = ProducerStates::default();
    for segment in &segments[segments.len().saturating_sub(SEGMENTS_SCANNED)..] {
        segment.for_each_header(|header| producers.record(header, now_ms))?;
    }
    Ok(producers)
}

fn report_recovery(tp: &TopicPartition, base: i64, stats: &RecoveryStats) {
    if stats.bytes_truncated > 0 || stats.index_rebuilt {
        warn!(
            partition = %tp,
            base_offset = base,
            truncated_bytes = stats.bytes_truncated,
            index_rebuilt = stats.index_rebuilt,
            "recovered segment"
        );
    }
}

fn remove_segment_files(dir: &Path, base: i64) {
    for ext in ["log", "index", "timeindex"] {
        let _ = std::fs::remove_file(dir.join(super::segment::segment_file_name(base, ext)));
    }
}

fn remove_segments_after(dir: &Path, base: i64) -> io::Result<()> {
    for entry in std::fs::read_dir(dir)? {
        let name = entry?.file_name();
        let Some(stem) = name.to_str().and_then(|n| n.strip_suffix(".log")) else {
            continue;
        };
        if let Ok(later) = stem.parse::<i64>()
            && later > base
        {
            warn!(base_offset = later, "removing segment that follows a truncated one");
            remove_segment_files(dir, later);
        }
    }
    Ok(())
}

/// One io_uring write, repeated until every byte is down (short writes are rare on files).
async fn write_all_at(file: Arc<File>, mut position: u64, mut buf: BytesMut) -> io::Result<()> {
    // Bounded: every round writes at least one byte or returns.
    while !buf.is_empty() {
        let BufResult(result, op) = compio::runtime::submit(WriteAt::new(Arc::clone(&file), position, buf)).await;
        let returned = op.into_inner();
        let written = result?;
        if written == 0 {
            return Err(io::Error::new(io::ErrorKind::WriteZero, "segment write wrote nothing"));
        }
        buf = returned;
        let _ = buf.split_to(written);
        position += written as u64;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::record::tests::build_batch;

    fn batch(values: &[&[u8]], producer_id: i64, base_seq: i32) -> BytesMut {
        BytesMut::from(&build_batch(values, 1_000, producer_id, base_seq)[..])
    }

    /// The stored bytes of `log` from `offset` on, read back through a fetch slice.
    fn stored_bytes(log: &PartitionLog, offset: i64) -> Vec<u8> {
        use std::os::unix::fs::FileExt;
        let slice = log.read(offset, u64::MAX, true).unwrap().slice.expect("data");
        let mut buf = vec![0u8; slice.bytes as usize];
        slice.file.read_exact_at(&mut buf, slice.position).unwrap();
        buf
    }

    #[test]
    fn a_replica_stores_the_leaders_batches_byte_for_byte() {
        let dirs = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
        let tp = TopicPartition::new("t", 0);
        compio::runtime::Runtime::new().unwrap().block_on(async {
            let leader = PartitionLog::open(dirs.0.path(), tp.clone(), LogConfig::default(), 0).unwrap();
            let follower = PartitionLog::open(dirs.1.path(), tp.clone(), LogConfig::default(), 0).unwrap();
            for seq in 0..3 {
                leader.append(batch(&[b"a", b"bb"], 7, seq * 2), 5).await.unwrap();
            }
            let bytes = stored_bytes(&leader, 0);
            let mut at = 0;
            while at < bytes.len() {
                let header = BatchHeader::parse(&bytes[at..]).unwrap();
                let end = at + header.total_bytes();
                let next = follower
                    .append_replicated(BytesMut::from(&bytes[at..end]), 5)
                    .await
                    .unwrap();
                assert_eq!(next, header.next_offset());
                at = end;
            }
            assert_eq!(follower.high_watermark(), 6);
            assert_eq!(stored_bytes(&follower, 0), bytes, "byte-identical replica");
            // A whole run of batches at once: one write, the same bytes.
            let dir = tempfile::tempdir().unwrap();
            let run = PartitionLog::open(dir.path(), tp.clone(), LogConfig::default(), 0).unwrap();
            assert_eq!(run.append_replicated(BytesMut::from(&bytes[..]), 5).await.unwrap(), 6);
            assert_eq!(stored_bytes(&run, 0), bytes, "byte-identical replica from one run");
            // A refused batch in a run keeps the ones before it.
            let dir = tempfile::tempdir().unwrap();
            let partial = PartitionLog::open(dir.path(), tp.clone(), LogConfig::default(), 0).unwrap();
            let mut damaged = BytesMut::from(&bytes[..]);
            let last = damaged.len() - 1;
            damaged[last] ^= 0xff;
            let refused = partial.append_replicated(damaged, 5).await.unwrap_err();
            assert_eq!(refused.code, ErrorCode::CorruptMessage);
            assert_eq!(
                partial.log_end_offset(),
                4,
                "the two whole batches before the damaged one landed"
            );
            // A batch that does not start at the log end is refused, as is a corrupt one.
            let first = BatchHeader::parse(&bytes).unwrap().total_bytes();
            let stale = follower.append_replicated(BytesMut::from(&bytes[..first]), 5).await;
            assert_eq!(stale.unwrap_err().code, ErrorCode::OffsetOutOfRange);
            let mut corrupt = BytesMut::from(&bytes[..first]);
            let last = corrupt.len() - 1;
            corrupt[last] ^= 0xff;
            assert_eq!(
                follower.append_replicated(corrupt, 5).await.unwrap_err().code,
                ErrorCode::CorruptMessage
            );
            assert_eq!(follower.high_watermark(), 6, "nothing was appended");
        });
    }

    #[test]
    fn appends_reads_duplicates_and_restart() {
        let dir = tempfile::tempdir().unwrap();
        let tp = TopicPartition::new("t", 0);
        let config = LogConfig {
            segment_bytes: 300,
            ..LogConfig::default()
        };
        compio::runtime::Runtime::new().unwrap().block_on(async {
            let log = PartitionLog::open(dir.path(), tp.clone(), config.clone(), 0).unwrap();
            for seq in 0..10 {
                let info = log
                    .append(batch(&[b"0123456789", b"abcdefghij"], 7, seq * 2), 5)
                    .await
                    .unwrap();
                assert_eq!(info.base_offset, seq as i64 * 2);
            }
            assert_eq!(log.high_watermark(), 20);
            assert!(log.segment_count() > 2, "segment.bytes=300 rolls");
            let dup = log
                .append(batch(&[b"0123456789", b"abcdefghij"], 7, 18), 5)
                .await
                .unwrap();
            assert!(dup.duplicate);
            assert_eq!(dup.base_offset, 18);
            let read = log.read(4, 1, true).unwrap();
            let slice = read.slice.expect("data at offset 4");
            assert!(slice.bytes > 1, "at least one whole batch (KIP-74)");
            assert_eq!(log.read(21, 100, true).unwrap_err(), ErrorCode::OffsetOutOfRange);
            assert!(log.read(20, 100, true).unwrap().slice.is_none());
            log.flush_indexes().unwrap();
        });
        compio::runtime::Runtime::new().unwrap().block_on(async {
            let log = PartitionLog::open(dir.path(), tp, config, 0).unwrap();
            assert_eq!(log.high_watermark(), 20);
            // The producer's sequences survive the restart: a retry is still a duplicate.
            let dup = log
                .append(batch(&[b"0123456789", b"abcdefghij"], 7, 18), 5)
                .await
                .unwrap();
            assert!(dup.duplicate && dup.base_offset == 18);
            let gap = log.append(batch(&[b"x"], 7, 30), 5).await.unwrap_err();
            assert_eq!(gap.code, ErrorCode::OutOfOrderSequenceNumber);
            assert_eq!(log.append(batch(&[b"x"], 7, 20), 5).await.unwrap().base_offset, 20);
        });
    }

    #[test]
    fn flush_policy_by_messages_and_by_age() {
        let dir = tempfile::tempdir().unwrap();
        let config = LogConfig {
            flush_messages: 3,
            ..LogConfig::default()
        };
        compio::runtime::Runtime::new().unwrap().block_on(async {
            let log = PartitionLog::open(dir.path(), TopicPartition::new("f", 0), config, 0).unwrap();
            log.append(batch(&[b"a", b"b"], -1, -1), 0).await.unwrap();
            assert_eq!(log.unflushed_messages(), 2);
            log.append(batch(&[b"c"], -1, -1), 0).await.unwrap();
            assert_eq!(log.unflushed_messages(), 0, "flush.messages=3 fsynced");
            log.set_config(LogConfig {
                flush_ms: 100,
                ..LogConfig::default()
            });
            log.append(batch(&[b"d"], -1, -1), 1_000).await.unwrap();
            log.flush_if_due(1_050).await.unwrap();
            assert_eq!(log.unflushed_messages(), 1, "younger than flush.ms");
            log.flush_if_due(1_100).await.unwrap();
            assert_eq!(log.unflushed_messages(), 0, "flush.ms=100 fsynced");
            assert_eq!(log.flushed_offset(), log.log_end_offset());
        });
    }

    #[test]
    fn rolled_segments_are_flushed_each_with_its_own_offset() {
        let dir = tempfile::tempdir().unwrap();
        let config = LogConfig {
            flush_messages: 3,
            segment_bytes: 1,
            ..LogConfig::default()
        };
        compio::runtime::Runtime::new().unwrap().block_on(async {
            let log = PartitionLog::open(dir.path(), TopicPartition::new("r", 0), config, 0).unwrap();
            let before = crate::storage::fsyncs();
            // Every append after the first rolls a segment (segment.bytes = 1).
            log.append(batch(&[b"a"], -1, -1), 0).await.unwrap();
            log.append(batch(&[b"b"], -1, -1), 0).await.unwrap();
            assert_eq!(
                log.flushed_offset(),
                0,
                "nothing fsynced before flush.messages is reached"
            );
            log.append(batch(&[b"c"], -1, -1), 0).await.unwrap();
            assert_eq!(
                log.flushed_offset(),
                3,
                "the rolled segments are fsynced with the active one"
            );
            assert_eq!(
                crate::storage::fsyncs() - before,
                3,
                "one fsync per segment with unflushed writes"
            );
            // With the default policy a roll alone makes the closed segment due.
            log.set_config(LogConfig {
                segment_bytes: 1,
                ..LogConfig::default()
            });
            log.append(batch(&[b"d"], -1, -1), 0).await.unwrap();
            log.append(batch(&[b"e"], -1, -1), 0).await.unwrap();
            assert_eq!(log.flushed_offset(), 3);
            log.flush_if_due(0).await.unwrap();
            assert_eq!(
                log.flushed_offset(),
                5,
                "a rolled segment is synced by the next maintenance tick"
            );
        });
    }
}
