//! A full disk: appends refused while the space reserve is out, and a log
//! whose writes failed for want of space made writable again once there is
//! room, without a restart.

use crate::record::BatchError;
use crate::storage::segment::Segment;
use crate::storage::space;
use tracing::info;

use super::replication::remove_segments_off_loop;
use super::*;

impl PartitionLog {
    /// Called by an append in its turn, before it reserves anything. Refuses
    /// while the space reserve is released (the blocks it freed are for the
    /// metadata write that frees space). A log whose writes failed because
    /// the disk was full is repaired first: what was reserved past the log
    /// end is cut off (it was never readable), and the producers' sequences
    /// forget it, so the clients' retries append it again. After any other
    /// write error the log stays offline.
    pub(super) async fn ready_to_append(&self) -> Result<(), BatchError> {
        if space::is_released() {
            return Err(storage_error(
                "the disk is full: appends wait until the broker's space reserve is back",
            ));
        }
        {
            let st = self.state.borrow();
            if !st.failed {
                return Ok(());
            }
            if st.offline {
                return Err(storage_error("the log had a write error and is offline"));
            }
        }
        let reshape = self.begin_reshape().await;
        self.wait_for_inflight_below(1).await;
        let cut = self.cut_unwritten();
        // Their names come back as the log grows again: removed before the
        // reshape ends.
        let removed = match &cut {
            Ok(dropped) if !dropped.is_empty() => remove_segments_off_loop(dropped).await,
            _ => Ok(()),
        };
        drop(reshape);
        cut.and(removed)
            .map(|_| ())
            .map_err(|e| storage_error(format!("cannot repair {} after a full disk: {e}", self.tp)))
    }

    /// `ready_to_append`'s repair once no write is in flight: returns the
    /// segments taken out, whose files the caller removes.
    fn cut_unwritten(&self) -> io::Result<Vec<Segment>> {
        let mut st = self.state.borrow_mut();
        assert!(st.inflight.is_empty(), "repair waits for every write in flight");
        if !st.failed {
            return Ok(Vec::new()); // another append repaired it meanwhile
        }
        let end = st.log_end_offset;
        let ended = st.txns_ended_past(end);
        // The segment holding the log end; the first segment always stays.
        let keep = st.segments.iter().rposition(|s| s.base_offset < end).unwrap_or(0);
        st.segments[keep].discard_unreadable(end)?;
        let dropped = st.segments.split_off(keep + 1);
        st.next_offset = end;
        st.producers
            .truncate_from(end, &super::transactions::reopened_by_cut(ended, end));
        // An epoch that starts at the end and has no record yet stays: its
        // leader registered it before appending.
        st.epochs.truncate_from_end(end + 1);
        st.failed = false;
        info!(partition = %self.tp, end, "cut off the writes that failed for want of space; appending again");
        Ok(dropped)
    }
}
