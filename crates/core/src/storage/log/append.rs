//! The append pipeline: tickets that keep appends in arrival order, rolls
//! ahead on the blocking pool, reservation of offsets and file positions,
//! io_uring writes that complete out of order, the log end offset over the
//! completed prefix, and the flush policy.

use crate::record::control::Marker;
use crate::record::{self, BatchError, BatchHeader};
use crate::storage::log_config::TimestampType;
use crate::storage::producer::SequenceCheck;
use crate::storage::producer_snapshot;
use crate::storage::segment::Segment;
use bytes::BytesMut;
use compio::BufResult;
use compio::buf::IntoInner;
use compio::driver::op::{Sync as SyncOp, WriteAt};
use std::fs::File;
use std::io;
use std::path::Path;
use std::sync::Arc;
use tracing::warn;

use super::*;

/// Reserved batches that follow each other in one segment file: one write.
pub(super) struct ReservedWrite {
    pub(super) file: Arc<File>,
    pub(super) position: u64,
    /// The in-flight sequence numbers of its batches (consecutive).
    pub(super) seqs: std::ops::Range<u64>,
    pub(super) bytes: BytesMut,
}

pub(super) struct Inflight {
    pub(super) seq: u64,
    pub(super) segment_base: i64,
    pub(super) end_position: u64,
    pub(super) end_offset: i64,
    pub(super) messages: i64,
    pub(super) done: bool,
}

/// Rolls `roll_ahead` claims (each lost to a truncation or an inline roll)
/// before it leaves the roll to `reserve`.
pub(super) const ROLL_AHEAD_ROUNDS_MAX: usize = 4;

/// What makes `roll_ahead` start a new active segment.
#[derive(Clone, Copy)]
pub(super) enum RollWhen {
    /// An append of this many bytes would not fit (or `segment.ms` passed).
    Append { bytes: u64 },
    /// Retention has expired the active segment itself.
    RetentionExpired,
    /// Any record at all: a snapshot then starts a segment of its own.
    NotEmpty,
}

pub(super) enum RollClaim<'a> {
    NotDue,
    InFlight(event_listener::EventListener),
    /// This append makes the next segment, starting at this offset.
    Claimed(i64, Reshape<'a>),
}

/// A reshape in flight (`LogState::reshaping`); dropping it ends the reshape.
pub(super) struct Reshape<'a> {
    pub(super) log: &'a PartitionLog,
}

impl Drop for Reshape<'_> {
    fn drop(&mut self) {
        let mut st = self.log.state.borrow_mut();
        assert!(st.reshaping, "a reshape ends only once it began");
        st.reshaping = false;
        drop(st);
        self.log.reshaped.notify(usize::MAX);
    }
}

/// An append's turn to reserve; the next ticket is served once it drops.
pub(super) struct Turn<'a> {
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

/// One io_uring write, repeated until every byte is down (short writes are rare on files).
pub(super) async fn write_all_at(file: Arc<File>, mut position: u64, mut buf: BytesMut) -> io::Result<()> {
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

impl LogState {
    /// Records that `epoch` starts at `offset` if it is new. In memory: the
    /// batch that opens it is written only once the history is on disk
    /// (`write_reserved_run` waits for `make_epochs_durable`).
    pub(super) fn note_epoch(&mut self, epoch: i32, offset: i64) {
        self.epochs.assign(epoch, offset);
    }

    pub(super) fn roll_if_needed(&mut self, dir: &Path, bytes: u64, now_ms: i64) -> io::Result<()> {
        let active = self.segments.last().expect("active segment");
        if active.should_roll(bytes, self.config.segment_bytes, self.config.segment_ms, now_ms) {
            self.roll(dir, now_ms)?;
        }
        Ok(())
    }

    pub(super) fn roll(&mut self, dir: &Path, now_ms: i64) -> io::Result<()> {
        let active = self.segments.last_mut().expect("active segment");
        active.flush_indexes()?;
        let base = active.next_offset;
        assert_eq!(base, self.next_offset, "the new segment starts at the log end offset");
        self.segments.push(Segment::create(dir, base, now_ms)?);
        Ok(())
    }
}

/// Who wrote a batch, which decides how it is checked before the append.
pub(super) enum Origin {
    /// A client's batch: validated, its sequence checked.
    Client,
    /// A client's batch that, if transactional, is appended only into its
    /// producer's transaction already open here (`append_in_open_txn`).
    InOpenTxn,
    /// A coordinator's, for a producer's transaction (`append_for_producer`).
    Coordinator,
    /// A marker the log built (`append_marker`), from the transaction
    /// coordinator in the given epoch.
    Marker(Marker, i32),
}

impl PartitionLog {
    /// Waits until no reshape is in flight, then starts one; it ends when
    /// the guard drops, also if the future holding it is cancelled (a
    /// follower's fetcher stopped, a request whose connection closed).
    pub(super) async fn begin_reshape(&self) -> Reshape<'_> {
        // Bounded: each wake means a reshape ended; reshapes are one roll or
        // one truncation each.
        loop {
            let listener = {
                let mut st = self.state.borrow_mut();
                if !st.reshaping {
                    st.reshaping = true;
                    return Reshape { log: self };
                }
                self.reshaped.listen()
            };
            listener.await;
        }
    }

    /// Validates, assigns offsets to and appends one producer batch, as
    /// leader in `leader_epoch`: the epoch the caller decided it leads in.
    /// A log that leads in another epoch (leadership moved while the append
    /// waited for its turn) refuses the batch with NOT_LEADER_OR_FOLLOWER.
    /// Returns once the io_uring write has completed (the data is in the
    /// page cache); no fsync unless the flush policy asks for one.
    pub async fn append(&self, batch: BytesMut, now_ms: i64, leader_epoch: i32) -> Result<AppendInfo, BatchError> {
        self.append_kept(batch, now_ms, leader_epoch, Origin::Client).await
    }

    /// `append` of a client's batch that, if it is transactional, no
    /// transaction coordinator has vouched for: it is appended only into its
    /// producer's transaction already open on this partition at its epoch,
    /// which the coordinator confirmed when the first batch came (KIP-890
    /// verifies only that one). Otherwise the batch comes back untouched,
    /// to be verified and then appended with `append`. The check and the
    /// append are one step, so no marker can end the transaction between them.
    pub async fn append_in_open_txn(
        &self,
        batch: BytesMut,
        now_ms: i64,
        leader_epoch: i32,
    ) -> Result<Result<AppendInfo, BytesMut>, BatchError> {
        self.append_as(batch, now_ms, leader_epoch, Origin::InOpenTxn).await
    }

    /// `append` of a batch a coordinator writes to its own internal
    /// partition on behalf of a producer's transaction (transactional offset
    /// commits): validated and tracked as the producer's, without a sequence
    /// check, since the coordinator is the partition's only writer and
    /// numbers nothing. An older producer epoch is still refused.
    pub async fn append_for_producer(
        &self,
        batch: BytesMut,
        now_ms: i64,
        leader_epoch: i32,
    ) -> Result<AppendInfo, BatchError> {
        self.append_kept(batch, now_ms, leader_epoch, Origin::Coordinator).await
    }

    /// `append_as` from an origin that never hands the batch back.
    pub(super) async fn append_kept(
        &self,
        batch: BytesMut,
        now_ms: i64,
        leader_epoch: i32,
        origin: Origin,
    ) -> Result<AppendInfo, BatchError> {
        assert!(
            !matches!(origin, Origin::InOpenTxn),
            "InOpenTxn may hand the batch back"
        );
        let appended = self.append_as(batch, now_ms, leader_epoch, origin).await?;
        Ok(appended.expect("only InOpenTxn hands a batch back"))
    }

    /// `append` of a batch from `origin`; `Err` inside only for
    /// `Origin::InOpenTxn`, with the batch.
    pub(super) async fn append_as(
        &self,
        mut batch: BytesMut,
        now_ms: i64,
        leader_epoch: i32,
        origin: Origin,
    ) -> Result<Result<AppendInfo, BytesMut>, BatchError> {
        let marker = match origin {
            Origin::Marker(marker, coordinator_epoch) => Some((marker, coordinator_epoch)),
            Origin::Client | Origin::InOpenTxn | Origin::Coordinator => None,
        };
        self.assert_owner();
        let turn = self.wait_for_turn().await;
        self.ready_to_append().await?;
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
            if st.leader_epoch != leader_epoch {
                return Err(BatchError {
                    code: ErrorCode::NotLeaderOrFollower,
                    message: format!(
                        "{} leads in epoch {}, not {leader_epoch}: leadership moved",
                        self.tp, st.leader_epoch
                    ),
                });
            }
            let mut header = match marker {
                None => record::validate_single_batch(&batch, st.config.max_message_bytes)?,
                Some(_) => BatchHeader::parse(&batch).expect("the log builds whole markers"),
            };
            if let Some((_, coordinator_epoch)) = marker {
                st.producers
                    .check_marker(header.producer_id, header.producer_epoch, coordinator_epoch)?;
            } else if matches!(origin, Origin::Coordinator) {
                st.producers.check_epoch(&header)?;
            } else if matches!(origin, Origin::InOpenTxn)
                && header.is_transactional()
                && !st.producers.in_open_txn(header.producer_id, header.producer_epoch)
            {
                return Ok(Err(batch));
            } else if let SequenceCheck::Duplicate(base_offset) = st.producers.check(&header)? {
                return Ok(Ok(AppendInfo {
                    base_offset,
                    last_offset: base_offset + i64::from(header.last_offset_delta),
                    leader_epoch,
                    log_append_time_ms: -1,
                    log_start_offset: st.log_start_offset,
                    duplicate: true,
                }));
            }
            let base_offset = st.next_offset;
            st.note_epoch(leader_epoch, base_offset);
            header.assign_offset(&mut batch, base_offset, leader_epoch);
            let mut log_append_time_ms = -1;
            if st.config.timestamp_type == TimestampType::LogAppendTime {
                header.stamp_log_append_time(&mut batch, now_ms);
                log_append_time_ms = now_ms;
            }
            let (file, position, seq) = self.reserve(&mut st, &header, marker, batch.len() as u64, now_ms)?;
            let info = AppendInfo {
                base_offset,
                last_offset: header.last_offset(),
                leader_epoch,
                log_append_time_ms,
                log_start_offset: st.log_start_offset,
                duplicate: false,
            };
            (file, position, seq, info)
        };
        drop(turn);
        self.write_reserved(file, position, seq, batch, now_ms).await?;
        Ok(Ok(info))
    }

    /// Writes consecutive reserved batches in one go, completes each, and
    /// fsyncs if the flush policy asks.
    /// A batch that opens a leader epoch waits here until the epoch's
    /// checkpoint is on disk; a failed checkpoint fails the write.
    pub(super) async fn write_reserved_run(&self, write: ReservedWrite, now_ms: i64) -> Result<(), BatchError> {
        let written = match self.make_epochs_durable().await {
            Ok(()) => write_all_at(write.file, write.position, write.bytes).await,
            Err(e) => Err(io::Error::new(
                e.kind(),
                format!("cannot save the leader-epoch checkpoint: {e}"),
            )),
        };
        let mut flush_due = false;
        let seqs = write.seqs.clone();
        for seq in write.seqs {
            flush_due |= self.complete_append(seq, written.is_ok(), now_ms);
        }
        if let Err(e) = written {
            if !crate::storage::space::is_full(&e) {
                self.state.borrow_mut().offline = true;
            }
            return Err(storage_error(format!("write to {} failed: {e}", self.tp)));
        }
        self.until_completed_in_order(seqs.end).await;
        if self.state.borrow().lost_below_seq > seqs.start {
            return Err(storage_error(format!(
                "an earlier write to {} failed: this one is cut off with it",
                self.tp
            )));
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
    pub(super) async fn roll_ahead(&self, when: RollWhen, now_ms: i64) -> io::Result<bool> {
        let mut claims = 0;
        // Bounded: a wait ends with a reshape, and at most
        // ROLL_AHEAD_ROUNDS_MAX claims are made. A waiter never goes ahead
        // while a reshape is in flight: appends waiting here are woken in the
        // order they came, which keeps pipelined produce requests in order.
        loop {
            let (base, reshape) = match self.claim_roll(when, now_ms) {
                RollClaim::NotDue => return Ok(true),
                RollClaim::InFlight(listener) => {
                    listener.await;
                    continue;
                }
                RollClaim::Claimed(_, _reshape) if claims == ROLL_AHEAD_ROUNDS_MAX => return Ok(false),
                RollClaim::Claimed(base, reshape) => (base, reshape),
            };
            claims += 1;
            let dir = self.dir.clone();
            // Appends wait while the roll is claimed: the producer states are as of `base`.
            let snapshot = self.producer_snapshot_at(base);
            let tp = self.tp.clone();
            let created = compio::runtime::spawn_blocking(move || {
                let segment = Segment::create(&dir, base, now_ms)?;
                // Only costs a longer replay at the next start if it fails.
                if let Err(e) = producer_snapshot::write(&dir, base, &snapshot) {
                    warn!(partition = %tp, base, "writing a producer snapshot failed: {e}");
                }
                Ok(segment)
            })
            .await;
            let segment = match created {
                Ok(Ok(segment)) => segment,
                Ok(Err(e)) => return Err(e),
                Err(_) => return Err(io::Error::other("creating a segment panicked")),
            };
            let Some(raced) = self.end_roll(segment, base, reshape) else {
                continue; // installed; the next round finds no roll due
            };
            let dir = self.dir.clone();
            let removed = compio::runtime::spawn_blocking(move || {
                producer_snapshot::remove_after(&dir, base - 1)?;
                raced.delete_files()
            })
            .await;
            if !matches!(removed, Ok(Ok(()))) {
                return Err(io::Error::other("removing a segment made for a roll that raced failed"));
            }
        }
    }

    /// Whether an append of `bytes` needs a roll first; if so and none is in
    /// flight, marks one in flight at the log end.
    pub(super) fn claim_roll(&self, when: RollWhen, now_ms: i64) -> RollClaim<'_> {
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
        RollClaim::Claimed(st.next_offset, Reshape { log: self })
    }

    /// Ends the roll claimed at `base`: installs `segment` as the active one
    /// if the log still ends at `base`, else hands it back to be removed.
    pub(super) fn end_roll(&self, segment: Segment, base: i64, reshape: Reshape<'_>) -> Option<Segment> {
        drop(reshape);
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
    /// `marker`: what a control batch says (`control::read_marker`).
    pub(super) fn reserve(
        &self,
        st: &mut LogState,
        header: &BatchHeader,
        marker: Option<(Marker, i32)>,
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
        st.note_txn(header, marker, now_ms);
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
    pub(super) async fn write_reserved(
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
    pub(super) async fn wait_for_turn(&self) -> Turn<'_> {
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
    pub(super) async fn wait_for_inflight_below(&self, limit: usize) {
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

    /// Resolves once every write before sequence `end` has completed: a
    /// write that completes ahead of an earlier one counts only if that one
    /// succeeds too (`lost_below_seq`).
    async fn until_completed_in_order(&self, end: u64) {
        // Bounded: each wake means in-flight writes completed in order.
        loop {
            let listener = {
                let st = self.state.borrow();
                if st.inflight.front().is_none_or(|f| f.seq >= end) {
                    return;
                }
                self.appended.listen()
            };
            listener.await;
        }
    }

    /// Gives up on reserved writes never attempted, because an earlier one in
    /// the same run of batches failed: they complete as failed, so the
    /// writes in flight drain and the log can be repaired.
    pub(super) fn abandon(&self, write: ReservedWrite, now_ms: i64) {
        for seq in write.seqs {
            self.complete_append(seq, false, now_ms);
        }
    }

    /// Marks a write done and advances the high watermark over every write
    /// completed in order. Returns whether `flush.messages` now asks for an fsync.
    pub(super) fn complete_append(&self, seq: u64, ok: bool, now_ms: i64) -> bool {
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
            if st.failed {
                st.lost_below_seq = f.seq + 1;
            } else {
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
}
