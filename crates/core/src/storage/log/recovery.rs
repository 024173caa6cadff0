//! Opening a partition's log: every segment recovered, the producer states
//! and the leader-epoch history rebuilt from what the disk holds.

use crate::model::TopicPartition;
use crate::storage::epoch::LeaderEpochCache;
use crate::storage::log_config::LogConfig;
use crate::storage::producer::ProducerStates;
use crate::storage::producer_snapshot;
use crate::storage::segment::{RecoveryStats, Segment};
use crate::storage::txn_index::AbortedTxn;
use std::cell::RefCell;
use std::collections::VecDeque;
use std::io;
use std::path::Path;
use tracing::warn;

use super::*;

/// The leader-epoch history: the checkpoint cut to the log's offsets, or,
/// when there is none (a log written before epochs were kept), read from
/// every batch header once.
pub(super) fn load_epochs(
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
                segment.for_each_header(|h, _| {
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

/// Producers' recent sequences and open transactions: the newest snapshot
/// (`producer_snapshot`) with the batches after it replayed, or without one
/// the batches of the newest segments re-read, which forgets producers not
/// seen in them. An abort of those segments whose index entry the page
/// cache lost is indexed again from its marker either way.
pub(super) fn rebuild_producer_states(dir: &Path, segments: &mut [Segment], now_ms: i64) -> io::Result<ProducerStates> {
    pub(super) const SEGMENTS_SCANNED: usize = 2;
    let start = segments.first().map_or(0, |s| s.base_offset);
    let end = segments.last().map_or(0, |s| s.next_offset);
    let snapshot = producer_snapshot::load_newest(dir, start, end, now_ms)?;
    let from = snapshot.as_ref().map(|(offset, _)| *offset);
    let mut from_snapshot = snapshot.map(|(_, states)| states);
    let mut scanned = ProducerStates::default();
    let first_scanned = segments.len().saturating_sub(SEGMENTS_SCANNED);
    // One read of each segment serves both: the newest segments' aborts, and
    // the batches after the snapshot.
    for (i, segment) in segments.iter_mut().enumerate() {
        let rescans = i >= first_scanned;
        let replays = from.is_some_and(|from| segment.next_offset > from);
        if !rescans && !replays {
            continue;
        }
        let mut aborted = Vec::new();
        segment.for_each_header(|header, marker| {
            if rescans
                && let Some(txn) = scanned.record(header, marker, now_ms)
                && txn.aborted
            {
                aborted.push(txn);
            }
            if let (Some(from), Some(states)) = (from, from_snapshot.as_mut())
                && header.base_offset >= from
            {
                states.record(header, marker, now_ms);
            }
        })?;
        for txn in aborted {
            segment.txn_index.restore(AbortedTxn {
                producer_id: txn.producer_id,
                first_offset: txn.first_offset,
                last_offset: txn.last_offset,
                last_stable_offset: txn.first_offset,
            });
        }
    }
    Ok(from_snapshot.unwrap_or(scanned))
}

pub(super) fn report_recovery(tp: &TopicPartition, base: i64, stats: &RecoveryStats) {
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

pub(super) fn remove_segment_files(dir: &Path, base: i64) {
    for ext in ["log", "index", "timeindex", "txnindex"] {
        let _ = std::fs::remove_file(dir.join(crate::storage::segment::segment_file_name(base, ext)));
    }
}

pub(super) fn remove_segments_after(dir: &Path, base: i64) -> io::Result<()> {
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
        let producers = rebuild_producer_states(&dir, &mut segments, now_ms)?;
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
                undecided_txns: VecDeque::new(),
                completed_messages: 0,
                flushed_messages: 0,
                first_unflushed_ms: None,
                lost_below_seq: 0,
                failed: false,
                offline: false,
                reshaping: false,
                next_ticket: 0,
                serving_ticket: 0,
            }),
            appended: event_listener::Event::new(),
            epoch_writes: Arc::default(),
            reshaped: event_listener::Event::new(),
            turn_passed: event_listener::Event::new(),
        })
    }
}
