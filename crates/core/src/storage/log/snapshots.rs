//! When a log writes and removes its producer state snapshots
//! (`storage::producer_snapshot`): one as of each rolled segment's end,
//! written with the new segment (`roll_ahead`), and one at a clean
//! shutdown. Every write is awaited, so none lands after a removal: those
//! past a truncation are removed before the log can grow past them again,
//! those below the log start when it moves.

use std::io;

use tracing::warn;

use super::*;
use crate::storage::producer_snapshot;

impl PartitionLog {
    /// The producer states as of the log end, written off the event loop;
    /// at a clean shutdown (no append in flight).
    pub async fn write_producer_snapshot(&self) -> io::Result<()> {
        self.assert_owner();
        let (offset, bytes) = self.producer_snapshot_now();
        let dir = self.dir.clone();
        compio::runtime::spawn_blocking(move || producer_snapshot::write(&dir, offset, &bytes))
            .await
            .unwrap_or_else(|_| Err(io::Error::other("writing a producer snapshot panicked")))
    }

    /// The snapshot bytes of the producer states, which must be as of
    /// `offset`, the log end (a roll: written with its new segment).
    pub(super) fn producer_snapshot_at(&self, offset: i64) -> Vec<u8> {
        let (end, bytes) = self.producer_snapshot_now();
        assert_eq!(end, offset, "a snapshot is taken at the log end");
        bytes
    }

    fn producer_snapshot_now(&self) -> (i64, Vec<u8>) {
        let st = self.state.borrow();
        (st.next_offset, producer_snapshot::encode(&st.producers))
    }

    /// Removes the snapshots past `end` (the log was cut there), off the
    /// event loop; the caller holds the reshape, so no append passes `end`
    /// before they are gone.
    pub(super) async fn remove_producer_snapshots_after(&self, end: i64) -> io::Result<()> {
        let dir = self.dir.clone();
        compio::runtime::spawn_blocking(move || producer_snapshot::remove_after(&dir, end))
            .await
            .unwrap_or_else(|_| Err(io::Error::other("removing producer snapshots panicked")))
    }

    /// Removes the snapshots below the log start, in the background.
    pub(super) fn remove_producer_snapshots_below_start(&self) {
        let start = self.state.borrow().log_start_offset;
        let dir = self.dir.clone();
        let tp = self.tp.clone();
        compio::runtime::spawn_blocking(move || {
            if let Err(e) = producer_snapshot::remove_below(&dir, start) {
                warn!(partition = %tp, "removing old producer snapshots failed: {e}");
            }
        })
        .detach();
    }
}
