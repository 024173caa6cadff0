//! A partition's log: an ordered list of segments, the last one active.
//!
//! A `PartitionLog` lives on the one shard that owns its partition and is
//! never shared: it uses `RefCell`, not a lock, and debug builds assert on
//! every entry point that the caller is the owning thread.
//!
//! One file per concern, each an `impl PartitionLog` over the state here:
//! `recovery` (open), `append` (the write pipeline and the flush policy),
//! `replication` (a follower's appends, truncation, leader epochs, the
//! replicated high watermark), `read` (fetches and lookups), `retention`,
//! `full_disk` (appends refused for want of space, and the repair after),
//! `transactions` (markers, the last stable offset, aborted transactions).
//! The compaction cleaner will get a file of its own here.

use crate::model::{ErrorCode, TopicPartition};
use crate::record::BatchError;
use crate::storage::epoch::LeaderEpochCache;
use crate::storage::log_config::LogConfig;
use crate::storage::producer::ProducerStates;
use crate::storage::segment::Segment;
use std::cell::RefCell;
use std::collections::VecDeque;
use std::fs::File;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;

mod append;
mod full_disk;
mod read;
mod recovery;
mod replication;
mod retention;
mod snapshots;
#[cfg(test)]
mod tests;
mod transactions;

pub use read::Replayed;
pub use transactions::AbortedRange;

use append::{Inflight, ReservedWrite, RollWhen};
use retention::retention_expired;

/// Appends whose writes may be in flight at once on one partition.
pub const INFLIGHT_APPENDS_MAX: usize = 256;

/// The leader-epoch checkpoint writes of one log: shared with the task that
/// writes (thread-safe, as a log may be opened on a pool thread).
#[derive(Default)]
pub(super) struct EpochWrites {
    in_flight: std::sync::atomic::AtomicBool,
    /// The newest history version on disk.
    durable_version: std::sync::atomic::AtomicU64,
    /// Why the last write failed, for the next caller to report.
    error: std::sync::Mutex<Option<io::Error>>,
    done: event_listener::Event,
}

/// A partition no quorum leads (single-node mode) stays in leader epoch 0.
pub const LEADER_EPOCH: i32 = 0;

/// Where a produce request's batch landed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AppendInfo {
    pub base_offset: i64,
    pub last_offset: i64,
    /// The epoch the batch carries: the one the caller decided it leads in.
    /// A duplicate reports the epoch the log leads in now.
    pub leader_epoch: i32,
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
    pub last_stable_offset: i64,
    pub log_start_offset: i64,
    pub slice: Option<FileSlice>,
    /// A read_committed read (`Reader::Committed`): the aborted transactions
    /// whose records may be in `slice`. Empty for other readers.
    pub aborted: Vec<AbortedRange>,
}

/// Who reads: a read_uncommitted consumer sees data below the high
/// watermark; a read_committed one below the last stable offset; a
/// follower replica up to the log end offset.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reader {
    Consumer,
    Committed,
    Replica,
}

/// A replicated partition's last known high watermark, for truncation after a restart.
const CHECKPOINT_FILE: &str = "replication-offset";

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
    /// One past the newest in-flight sequence that completed while the log
    /// had failed: those writes lie past the log end and are cut off by the
    /// repair, even if their own write succeeded.
    lost_below_seq: u64,
    producers: ProducerStates,
    /// Transactions a marker ended whose marker the high watermark has not
    /// passed yet: they still hold the last stable offset back.
    undecided_txns: VecDeque<crate::storage::producer::CompletedTxn>,
    /// Messages whose writes completed, and how many of them were fsynced,
    /// both counted since the log was opened: cumulative, so flushes that
    /// overlap each move the flushed count only forward.
    completed_messages: i64,
    flushed_messages: i64,
    first_unflushed_ms: Option<i64>,
    /// Set after a write error: the log has a hole and refuses further work
    /// until `repair_after_full_disk` cuts what follows the log end.
    failed: bool,
    /// Set after a write error other than a full disk: the log stays offline
    /// until a restart (Kafka takes the log dir offline).
    offline: bool,
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
    /// The leader-epoch checkpoint writes, one at a time (`make_epochs_durable`).
    epoch_writes: Arc<EpochWrites>,
    /// Fires when a reshape (`reshaping`) ends.
    reshaped: event_listener::Event,
    /// Fires when an append's turn passes (`wait_for_turn`).
    turn_passed: event_listener::Event,
}

fn storage_error(message: impl Into<String>) -> BatchError {
    BatchError {
        code: ErrorCode::KafkaStorageError,
        message: message.into(),
    }
}

impl LogState {
    fn high_watermark(&self) -> i64 {
        self.replicated_high_watermark.map_or(self.log_end_offset, |c| {
            c.clamp(self.log_start_offset, self.log_end_offset)
        })
    }
}

impl PartitionLog {
    /// Makes the calling thread the log's owner: a log may be opened (and
    /// recovered) on a blocking-pool thread, then handed to its shard, which
    /// adopts it before anything else touches it.
    pub fn adopt(&mut self) {
        #[cfg(debug_assertions)]
        {
            self.owner = std::thread::current().id();
        }
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

    /// The topic's `min.insync.replicas`, from the config the shard last pushed down.
    pub fn min_insync_replicas(&self) -> i32 {
        self.assert_owner();
        self.state.borrow().config.min_insync_replicas
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
