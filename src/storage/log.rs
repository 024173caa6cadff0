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

/// Who reads: a consumer sees data below the high watermark only; a
/// follower replica reads up to the log end offset.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reader {
    Consumer,
    Replica,
}

/// A replicated partition's last known high watermark, for truncation after a restart.
const CHECKPOINT_FILE: &str = "replication-offset";
/// Rolls `roll_ahead` claims (each lost to a truncation or an inline roll)
/// before it leaves the roll to `reserve`.
const ROLL_AHEAD_ROUNDS_MAX: usize = 4;

/// What makes `roll_ahead` start a new active segment.
#[derive(Clone, Copy)]
enum RollWhen {
    /// An append of this many bytes would not fit (or `segment.ms` passed).
    Append { bytes: u64 },
    /// Retention has expired the active segment itself.
    RetentionExpired,
    /// Any record at all: a snapshot then starts a segment of its own.
    NotEmpty,
}

enum RollClaim {
    NotDue,
    InFlight(event_listener::EventListener),
    /// This append makes the next segment, starting at this offset.
    Claimed(i64),
}

struct LogState {
    config: LogConfig,
    segments: Vec<Segment>,
    log_start_offset: i64,
    /// The next offset to assign: one past the last reserved batch, whose
    /// write may still be in flight.
    next_offset: i64,
    /// The log end offset: every write below it has completed. Followers
    /// replicate up to it; the high watermark never passes it.
    log_end_offset: i64,
    /// Replicated partitions: the high watermark the replication layer set,
    /// what every in-sync replica has. `None` means this log alone decides,
    /// as on a single node: the high watermark is then the log end offset.
    replicated_high_watermark: Option<i64>,
    /// The high watermark last written to the `replication-offset` file.
    high_watermark_checkpointed: Option<i64>,
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
    /// A leader-epoch checkpoint is being written on the blocking pool.
    epochs_saving: bool,
    /// The segment list is being changed off the event loop (a roll ahead
    /// creating the next segment's files, a truncation removing some):
    /// appends and other rolls wait, so the log end stays put meanwhile.
    reshaping: bool,
    /// Appends' tickets (`wait_for_turn`): the next one to hand out, and the
    /// one whose turn it is.
    next_ticket: u64,
    serving_ticket: u64,
}

pub struct PartitionLog {
    tp: TopicPartition,
    dir: PathBuf,
    #[cfg(debug_assertions)]
    owner: std::thread::ThreadId,
    state: RefCell<LogState>,
    /// Fires when the high watermark moves, waking long-poll fetches.
    appended: event_listener::Event,
    /// Fires when a leader-epoch checkpoint write ends (one at a time).
    epochs_saved: event_listener::Event,
    /// Fires when a reshape (`reshaping`) ends.
    reshaped: event_listener::Event,
    /// Fires when an append's turn passes (`wait_for_turn`).
    turn_passed: event_listener::Event,
}

/// An append's turn to reserve; the next ticket is served once it drops.
struct Turn<'a> {
    log: &'a PartitionLog,
    ticket: u64,
}

impl Drop for Turn<'_> {
    fn drop(&mut self) {
        let mut st = self.log.state.borrow_mut();
        assert_eq!(st.serving_ticket, self.ticket, "turns pass in ticket order");
        st.serving_ticket += 1;
        drop(st);
        self.log.turn_passed.notify(usize::MAX);
    }
}

fn storage_error(message: impl Into<String>) -> BatchError {
    BatchError {
        code: ErrorCode::KafkaStorageError,
        message: message.into(),
    }
}

impl LogState {
    /// Records that `epoch` starts at `offset` if it is new. In memory: the
    /// batch that opens it is written only once the history is on disk
    /// (`write_reserved_run` waits for `make_epochs_durable`).
    fn note_epoch(&mut self, epoch: i32, offset: i64) {
        self.epochs.assign(epoch, offset);
    }

    /// After whole segments were deleted from the front: the log starts at
    /// the first one left, and so does the epoch history (saved by the next
    /// write or maintenance tick).
    fn start_at_first_segment(&mut self) {
        self.log_start_offset = self.log_start_offset.max(self.segments[0].base_offset);
        self.epochs.truncate_from_start(self.log_start_offset);
    }

    fn high_watermark(&self) -> i64 {
        self.replicated_high_watermark.map_or(self.log_end_offset, |c| {
            c.clamp(self.log_start_offset, self.log_end_offset)
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
        let high_watermark_checkpointed = std::fs::read_to_string(dir.join(CHECKPOINT_FILE))
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
                log_end_offset: next_offset,
                replicated_high_watermark: None,
                high_watermark_checkpointed,
                leader_epoch,
                epochs,
                inflight: VecDeque::new(),
                next_seq: 0,
                producers,
                completed_messages: 0,
                flushed_messages: 0,
                first_unflushed_ms: None,
                failed: false,
                epochs_saving: false,
                reshaping: false,
                next_ticket: 0,
                serving_ticket: 0,
            }),
            appended: event_listener::Event::new(),
            epochs_saved: event_listener::Event::new(),
            reshaped: event_listener::Event::new(),
            turn_passed: event_listener::Event::new(),
        })
    }

    /// Makes the calling thread the log's owner: a log may be opened (and
    /// recovered) on a blocking-pool thread, then handed to its shard, which
    /// adopts it before anything else touches it.
    pub fn adopt(&mut self) {
        self.owner = std::thread::current().id();
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

    /// What consumers may read up to: the replicated high watermark of a
    /// replicated partition, otherwise the log end offset.
    pub fn high_watermark(&self) -> i64 {
        self.assert_owner();
        self.state.borrow().high_watermark()
    }

    /// The end of the completed local writes (the log end offset a follower reports).
    pub fn log_end_offset(&self) -> i64 {
        self.assert_owner();
        self.state.borrow().log_end_offset
    }

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
            let tmp = dir.join(format!("{CHECKPOINT_FILE}.tmp"));
            std::fs::write(&tmp, high_watermark.to_string())?;
            std::fs::rename(&tmp, dir.join(CHECKPOINT_FILE))
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
        self.begin_reshape().await;
        self.wait_for_inflight_below(1).await;
        let cut = self.cut_to(offset);
        // Their names may come back once the log grows again: removed before
        // the reshape ends, on the blocking pool.
        let removed = match &cut {
            Ok((_, dropped)) if !dropped.is_empty() => remove_segments_off_loop(dropped).await,
            _ => Ok(()),
        };
        self.end_reshape();
        let (end, _) = cut?;
        removed?;
        self.make_epochs_durable().await?;
        Ok(end)
    }

    /// `truncate_to` once no write is in flight: returns the new log end and
    /// the segments taken out, whose files the caller removes. The epoch
    /// history changes in memory only.
    fn cut_to(&self, offset: i64) -> io::Result<(i64, Vec<Segment>)> {
        let mut st = self.state.borrow_mut();
        // Epochs that start at the cut go even when no record does: an epoch
        // this replica led without appending is not the leader's history.
        st.epochs.truncate_from_end(offset);
        if offset >= st.next_offset {
            return Ok((st.next_offset, Vec::new()));
        }
        let offset = offset.max(st.log_start_offset);
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
        self.begin_reshape().await;
        self.wait_for_inflight_below(1).await;
        if offset <= self.state.borrow().next_offset {
            self.end_reshape();
            return Ok(()); // the log reached the leader's start meanwhile
        }
        // Every segment now starts below `offset`, so the new name is free.
        let dir = self.dir.clone();
        let created = compio::runtime::spawn_blocking(move || Segment::create(&dir, offset, now_ms))
            .await
            .unwrap_or_else(|_| Err(io::Error::other("creating a segment panicked")));
        let created = created.map(|segment| self.empty_from(offset, segment));
        self.end_reshape();
        for segment in created? {
            // Below the new log start: their names never come back.
            segment.delete_files_in_background();
        }
        self.make_epochs_durable().await
    }

    /// `restart_at` once no write is in flight and the new segment exists:
    /// returns the segments taken out.
    fn empty_from(&self, offset: i64, segment: Segment) -> Vec<Segment> {
        let mut st = self.state.borrow_mut();
        let dropped = std::mem::replace(&mut st.segments, vec![segment]);
        st.log_start_offset = offset;
        st.next_offset = offset;
        st.log_end_offset = offset;
        st.replicated_high_watermark = st.replicated_high_watermark.map(|c| c.max(offset));
        st.producers = ProducerStates::default();
        st.epochs.truncate_from_end(0);
        info!(partition = %self.tp, offset, "restarted the log at the leader's log start");
        dropped
    }

    /// Waits until no reshape is in flight, then starts one.
    async fn begin_reshape(&self) {
        // Bounded: each wake means a reshape ended; reshapes are one roll or
        // one truncation each.
        loop {
            let listener = {
                let mut st = self.state.borrow_mut();
                if !st.reshaping {
                    st.reshaping = true;
                    return;
                }
                self.reshaped.listen()
            };
            listener.await;
        }
    }

    fn end_reshape(&self) {
        let mut st = self.state.borrow_mut();
        assert!(st.reshaping, "a reshape ends only once it began");
        st.reshaping = false;
        self.reshaped.notify(usize::MAX);
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
        // Bounded: each round ends durable, or waits out the one write in
        // flight, or writes the newest history; it changes only on leader
        // changes, truncations and retention.
        loop {
            let next = {
                let mut st = self.state.borrow_mut();
                if st.epochs.is_durable() {
                    return Ok(());
                }
                if st.epochs_saving {
                    Err(self.epochs_saved.listen())
                } else {
                    st.epochs_saving = true;
                    Ok(st.epochs.checkpoint())
                }
            };
            let checkpoint = match next {
                Ok(checkpoint) => checkpoint,
                Err(listener) => {
                    listener.await;
                    continue;
                }
            };
            let written = compio::runtime::spawn_blocking(move || checkpoint.write().map(|()| checkpoint)).await;
            let mut st = self.state.borrow_mut();
            st.epochs_saving = false;
            self.epochs_saved.notify(usize::MAX);
            match written {
                Ok(Ok(checkpoint)) => st.epochs.mark_durable(&checkpoint),
                Ok(Err(e)) => return Err(e),
                Err(_) => return Err(io::Error::other("the leader-epoch checkpoint write panicked")),
            }
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
        let turn = self.wait_for_turn().await;
        self.wait_for_inflight_below(INFLIGHT_APPENDS_MAX).await;
        self.roll_ahead(
            RollWhen::Append {
                bytes: batch.len() as u64,
            },
            now_ms,
        )
        .await
        .map_err(|e| storage_error(format!("segment roll failed: {e}")))?;
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
            st.note_epoch(epoch, base_offset);
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
        drop(turn);
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
        let turn = self.wait_for_turn().await;
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
                let reserved = self.reserve(&mut st, &header, header.total_bytes() as u64, now_ms);
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
    /// A batch that opens a leader epoch waits here until the epoch's
    /// checkpoint is on disk; a failed checkpoint fails the write.
    async fn write_reserved_run(&self, write: ReservedWrite, now_ms: i64) -> Result<(), BatchError> {
        let written = match self.make_epochs_durable().await {
            Ok(()) => write_all_at(write.file, write.position, write.bytes).await,
            Err(e) => Err(io::Error::other(format!(
                "cannot save the leader-epoch checkpoint: {e}"
            ))),
        };
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

    /// Rolls before an append of `bytes` that would need it, creating the
    /// next segment's files on compio's blocking pool instead of inside
    /// `reserve` on the event loop. Any append arriving meanwhile waits. If
    /// the log moved while the files were made (a truncation, or a follower
    /// batch that rolled inline), they are removed and the check repeats.
    /// No await may come between this and the `reserve` it prepares.
    /// Returns whether no roll is due any more (false: it gave up after
    /// ROLL_AHEAD_ROUNDS_MAX rounds lost to races).
    async fn roll_ahead(&self, when: RollWhen, now_ms: i64) -> io::Result<bool> {
        let mut claims = 0;
        // Bounded: a wait ends with a reshape, and at most
        // ROLL_AHEAD_ROUNDS_MAX claims are made. A waiter never goes ahead
        // while a reshape is in flight: appends waiting here are woken in the
        // order they came, which keeps pipelined produce requests in order.
        loop {
            let base = match self.claim_roll(when, now_ms) {
                RollClaim::NotDue => return Ok(true),
                RollClaim::InFlight(listener) => {
                    listener.await;
                    continue;
                }
                RollClaim::Claimed(_) if claims == ROLL_AHEAD_ROUNDS_MAX => {
                    self.end_reshape();
                    return Ok(false);
                }
                RollClaim::Claimed(base) => base,
            };
            claims += 1;
            let dir = self.dir.clone();
            let created = compio::runtime::spawn_blocking(move || Segment::create(&dir, base, now_ms)).await;
            let segment = match created {
                Ok(Ok(segment)) => segment,
                Ok(Err(e)) => {
                    self.end_roll(None, base);
                    return Err(e);
                }
                Err(_) => {
                    self.end_roll(None, base);
                    return Err(io::Error::other("creating a segment panicked"));
                }
            };
            let Some(raced) = self.end_roll(Some(segment), base) else {
                continue; // installed; the next round finds no roll due
            };
            let removed = compio::runtime::spawn_blocking(move || raced.delete_files()).await;
            if !matches!(removed, Ok(Ok(()))) {
                return Err(io::Error::other("removing a segment made for a roll that raced failed"));
            }
        }
    }

    /// Whether an append of `bytes` needs a roll first; if so and none is in
    /// flight, marks one in flight at the log end.
    fn claim_roll(&self, when: RollWhen, now_ms: i64) -> RollClaim {
        let mut st = self.state.borrow_mut();
        if st.reshaping {
            return RollClaim::InFlight(self.reshaped.listen());
        }
        let config = &st.config;
        let active = st.segments.last().expect("a log always has an active segment");
        let due = match when {
            RollWhen::Append { bytes } => active.should_roll(bytes, config.segment_bytes, config.segment_ms, now_ms),
            RollWhen::RetentionExpired => !active.is_empty() && retention_expired(config, active, now_ms),
            RollWhen::NotEmpty => !active.is_empty(),
        };
        if !due {
            return RollClaim::NotDue;
        }
        st.reshaping = true;
        RollClaim::Claimed(st.next_offset)
    }

    /// Ends the roll claimed at `base`: installs `segment` as the active one
    /// if the log still ends at `base`, else hands it back to be removed.
    fn end_roll(&self, segment: Option<Segment>, base: i64) -> Option<Segment> {
        self.end_reshape();
        let segment = segment?;
        let mut st = self.state.borrow_mut();
        let log_end_offset = st.next_offset;
        let active = st.segments.last_mut().expect("a log always has an active segment");
        if log_end_offset != base || active.base_offset >= base || active.next_offset != base {
            return Some(segment);
        }
        if let Err(e) = active.flush_indexes() {
            // Removed again; `reserve`'s inline roll reports the error.
            warn!(partition = %self.tp, "index write before a roll failed: {e}");
            return Some(segment);
        }
        st.segments.push(segment);
        None
    }

    /// Gives a batch its place: rolls if needed (inline: `roll_ahead` has
    /// usually done it already), reserves its file position
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

    /// Takes the next ticket and waits until it is served: appends reserve
    /// their offsets strictly in the order they reached the log, whatever
    /// they wait for on the way (room in flight, a roll on the blocking
    /// pool). Pipelined produce requests keep their order so. The turn
    /// passes when the returned guard drops, once the append has reserved
    /// (or given up).
    async fn wait_for_turn(&self) -> Turn<'_> {
        let ticket = {
            let mut st = self.state.borrow_mut();
            st.next_ticket += 1;
            st.next_ticket - 1
        };
        // Bounded: each wake means an earlier ticket's turn passed.
        loop {
            if self.state.borrow().serving_ticket == ticket {
                return Turn { log: self, ticket };
            }
            let listener = self.turn_passed.listen();
            if self.state.borrow().serving_ticket == ticket {
                return Turn { log: self, ticket };
            }
            listener.await;
        }
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
        assert!(
            seq >= front_seq,
            "write {seq} completed twice (the oldest in flight is {front_seq})"
        );
        let slot = (seq - front_seq) as usize;
        assert!(slot < st.inflight.len(), "write {seq} completed but never reserved");
        let inflight = &mut st.inflight[slot];
        assert_eq!(inflight.seq, seq, "in-flight writes are queued by sequence");
        assert!(!inflight.done, "write {seq} completed twice");
        inflight.done = true;
        // Any pop frees an in-flight slot, so waiters are woken even when the log failed.
        let mut popped = false;
        while st.inflight.front().is_some_and(|f| f.done) {
            let f = st.inflight.pop_front().expect("front exists");
            popped = true;
            if !st.failed {
                st.log_end_offset = f.end_offset;
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
            let target = st.log_end_offset;
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
        assert!(target <= st.log_end_offset, "flushed past the completed writes");
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
            .map_or(st.log_end_offset, |s| s.flushed_offset)
    }

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
    fn end_for(&self, reader: Reader) -> i64 {
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
        let config = st.config.clone();
        let expired = |s: &Segment| retention_expired(&config, s, now_ms);
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
            st.start_at_first_segment();
            info!(partition = %self.tp, deleted, log_start_offset = st.log_start_offset, "retention deleted segments");
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

/// Removes the files of segments taken out of a log, on compio's blocking
/// pool, and waits for it.
async fn remove_segments_off_loop(segments: &[Segment]) -> io::Result<()> {
    let paths: Vec<[PathBuf; 3]> = segments.iter().map(Segment::file_paths).collect();
    compio::runtime::spawn_blocking(move || {
        for path in paths.iter().flatten() {
            std::fs::remove_file(path)?;
        }
        Ok(())
    })
    .await
    .unwrap_or_else(|_| Err(io::Error::other("removing segments panicked")))
}

/// Whether `segment`'s newest record (or its creation, if it has no
/// timestamps) is older than `retention.ms`.
fn retention_expired(config: &LogConfig, segment: &Segment, now_ms: i64) -> bool {
    let newest_ms = if segment.max_timestamp_ms >= 0 {
        segment.max_timestamp_ms
    } else {
        segment.created_ms
    };
    config.retention_ms >= 0 && now_ms.saturating_sub(newest_ms) > config.retention_ms
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
    fn concurrent_appends_keep_their_order_through_rolls_ahead() {
        const APPENDS: usize = 1000;
        let dir = tempfile::tempdir().unwrap();
        let config = LogConfig {
            segment_bytes: 200,
            ..LogConfig::default()
        };
        compio::runtime::Runtime::new().unwrap().block_on(async {
            let log = std::rc::Rc::new(PartitionLog::open(dir.path(), TopicPartition::new("r", 0), config, 0).unwrap());
            // Appends keep arriving while rolls wait on the blocking pool, as
            // pipelined produce requests do.
            let mut appends = Vec::new();
            for i in 0..APPENDS {
                let log = std::rc::Rc::clone(&log);
                let value = format!("v{i}");
                appends.push(compio::runtime::spawn(async move {
                    log.append(batch(&[value.as_bytes()], -1, -1), 0)
                        .await
                        .unwrap()
                        .base_offset
                }));
                // Varied gaps, so new appends land at every point of a roll.
                if i % 3 == 0 {
                    compio::time::sleep(std::time::Duration::from_micros((i % 7) as u64 * 20)).await;
                }
            }
            let mut bases = Vec::new();
            for append in appends {
                bases.push(append.await.unwrap());
            }
            assert_eq!(
                bases,
                (0..APPENDS as i64).collect::<Vec<_>>(),
                "offsets follow the order the appends came in, through every roll"
            );
            assert!(log.segment_count() > 20, "the appends rolled many segments");
            let logs = std::fs::read_dir(dir.path().join("r-0"))
                .unwrap()
                .filter(|e| e.as_ref().unwrap().file_name().to_string_lossy().ends_with(".log"))
                .count();
            assert_eq!(logs, log.segment_count(), "no stray file from a raced roll");
            drop(log);
            let reopened =
                PartitionLog::open(dir.path(), TopicPartition::new("r", 0), LogConfig::default(), 0).unwrap();
            assert_eq!(reopened.log_end_offset(), APPENDS as i64);
        });
    }

    #[test]
    fn a_new_leader_epoch_is_on_disk_before_its_first_batch() {
        let dir = tempfile::tempdir().unwrap();
        compio::runtime::Runtime::new().unwrap().block_on(async {
            let log = PartitionLog::open(dir.path(), TopicPartition::new("e", 0), LogConfig::default(), 0).unwrap();
            let checkpoint = dir.path().join("e-0").join(super::super::epoch::CHECKPOINT_FILE);
            log.become_leader(3);
            assert_eq!(log.latest_epoch(), Some(3), "the epoch is known at once");
            assert!(!checkpoint.exists(), "and written only off the event loop");
            log.append(batch(&[b"a"], -1, -1), 0).await.unwrap();
            assert_eq!(std::fs::read_to_string(&checkpoint).unwrap(), "0\n1\n3 0\n");
            log.become_leader(5);
            log.make_epochs_durable().await.unwrap();
            assert_eq!(std::fs::read_to_string(&checkpoint).unwrap(), "0\n2\n3 0\n5 1\n");
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
