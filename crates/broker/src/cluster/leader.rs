//! The leader's side of replication, per partition this shard leads: each
//! follower's log end offset (from the offset it fetches at), when it last
//! caught up, the high watermark (the least log end offset in the ISR), and
//! ISR changes proposed to the quorum as `AlterPartition` records — a
//! follower joins once it has reached the high watermark, and leaves after
//! `replica.lag.time.max.ms` without catching up.

use std::collections::HashMap;

use tracing::info;

use super::metadata::{Metadata, PartitionAssignment};
use super::quorum::Record;
use super::shard::{ShardState, local};
use crate::model::{TopicPartition, steady_ms};
use crate::storage::PartitionLog;

#[derive(Debug, Clone, Copy)]
struct Progress {
    log_end_offset: i64,
    caught_up_ms: i64,
}

/// One led partition's followers; lives on the partition's owner shard.
#[derive(Debug)]
pub struct Leadership {
    followers: HashMap<i32, Progress>,
    /// An AlterPartition is on its way; no second one until it is answered.
    isr_change_pending: bool,
    /// When this broker took the lead (followers get until then + lag to show up).
    since_ms: i64,
}

impl Leadership {
    /// This broker takes the lead now.
    pub fn starting_now() -> Self {
        Self {
            followers: HashMap::new(),
            isr_change_pending: false,
            since_ms: steady_ms(),
        }
    }
}

fn placement(metadata: &Metadata, tp: &TopicPartition, me: i32) -> Option<(uuid::Uuid, PartitionAssignment)> {
    let topic = metadata.topics.get(&tp.topic)?;
    if topic.assignment.is_empty() {
        return None;
    }
    let p = topic.placement(tp.partition, me);
    (p.leader == me).then_some((topic.id, p))
}

/// A follower fetched `tp` at `fetch_offset`: that is its log end offset.
pub fn follower_fetched(tp: &TopicPartition, log: &PartitionLog, follower: i32, fetch_offset: i64) {
    let shard = local();
    let me = shard.config.broker_id;
    let Some((id, placement)) = placement(&shard.metadata(), tp, me) else {
        return;
    };
    if !placement.replicas.contains(&follower) {
        return;
    }
    let now = steady_ms();
    let expand = {
        let mut leaderships = shard.leaderships.borrow_mut();
        let state = leaderships.entry(tp.clone()).or_insert_with(Leadership::starting_now);
        let progress = state.followers.entry(follower).or_insert(Progress {
            log_end_offset: fetch_offset,
            caught_up_ms: 0,
        });
        progress.log_end_offset = fetch_offset;
        if fetch_offset >= log.log_end_offset() {
            progress.caught_up_ms = now;
        }
        let joins = !placement.isr.contains(&follower) && fetch_offset >= log.high_watermark();
        (joins && !state.isr_change_pending).then(|| {
            state.isr_change_pending = true;
            let mut isr = placement.isr.clone();
            isr.push(follower);
            isr.sort_unstable();
            isr
        })
    };
    update_high_watermark(tp, log);
    if let Some(isr) = expand {
        info!(partition = %tp, follower, "follower caught up; adding it to the ISR");
        crate::metrics::record_isr_change(true);
        propose_isr(tp, id, placement.leader_epoch, isr);
    }
}

/// Sets `log`'s high watermark from the ISR's progress; never moves it back.
/// (A replica's known high watermark is the leader's it last heard, so a
/// follower that becomes leader starts from there.)
pub fn update_high_watermark(tp: &TopicPartition, log: &PartitionLog) {
    let shard = local();
    let me = shard.config.broker_id;
    let Some((_, placement)) = placement(&shard.metadata(), tp, me) else {
        return;
    };
    // Set by an earlier round of this leadership, or heard as a follower;
    // `None` right after a restart, when the log alone sets it.
    let before = log.replicated_high_watermark();
    if placement.isr == [me] {
        log.set_replicated_high_watermark(None);
    } else {
        log.set_replicated_high_watermark(Some(isr_high_watermark(&shard, tp, log, &placement.isr)));
    }
    assert!(
        before.is_none_or(|before| log.high_watermark() >= before),
        "the high watermark of {tp} moved back while this broker leads it"
    );
}

/// The offset every ISR member has reached, at least the high watermark
/// this log already knew.
fn isr_high_watermark(shard: &ShardState, tp: &TopicPartition, log: &PartitionLog, isr: &[i32]) -> i64 {
    let me = shard.config.broker_id;
    let leaderships = shard.leaderships.borrow();
    let followers = leaderships.get(tp).map(|l| &l.followers);
    let least = isr
        .iter()
        .filter(|b| **b != me)
        .map(|b| followers.and_then(|f| f.get(b)).map_or(i64::MIN, |p| p.log_end_offset))
        .min()
        .unwrap_or(i64::MAX);
    // Never back, and after a restart from the checkpoint, not from the log
    // end: a tail past it may exist on this replica alone.
    let floor = log.known_high_watermark().unwrap_or(log.log_start_offset());
    least.min(log.log_end_offset()).max(floor)
}

/// The shard's maintenance tick: ISR members that have not caught up for
/// `replica.lag.time.max.ms` are proposed out of the ISR.
pub fn shrink_lagging(metadata: &Metadata) {
    let shard = local();
    let me = shard.config.broker_id;
    let lag_max_ms = shard.config.replica_lag_time_max_ms;
    let now = steady_ms();
    let mut proposals = Vec::new();
    for (tp, state) in shard.leaderships.borrow_mut().iter_mut() {
        let Some((id, placement)) = placement(metadata, tp, me) else {
            continue;
        };
        if state.isr_change_pending || placement.isr.len() <= 1 {
            continue;
        }
        let lagging = |b: &i32| {
            let caught_up = state
                .followers
                .get(b)
                .map_or(state.since_ms, |p| p.caught_up_ms.max(state.since_ms));
            *b != me && now - caught_up > lag_max_ms
        };
        if placement.isr.iter().any(lagging) {
            let isr: Vec<i32> = placement.isr.iter().copied().filter(|b| !lagging(b)).collect();
            info!(partition = %tp, ?isr, "followers fell behind; shrinking the ISR");
            crate::metrics::record_isr_change(false);
            state.isr_change_pending = true;
            proposals.push((tp.clone(), id, placement.leader_epoch, isr));
        }
    }
    for (tp, id, epoch, isr) in proposals {
        propose_isr(&tp, id, epoch, isr);
    }
}

/// Proposes the new ISR in the background; the change arrives with the metadata.
fn propose_isr(tp: &TopicPartition, id: uuid::Uuid, leader_epoch: i32, isr: Vec<i32>) {
    let Some(quorum) = super::quorum::get() else {
        return;
    };
    let record = Record::AlterPartition {
        topic: tp.topic.clone(),
        id,
        partition: tp.partition,
        leader_epoch,
        isr,
    };
    let tp = tp.clone();
    compio::runtime::spawn(async move {
        if let Err(e) = quorum.propose(record).await {
            info!(partition = %tp, "ISR change not made: {}", e.message);
        }
        if let Some(state) = local().leaderships.borrow_mut().get_mut(&tp) {
            state.isr_change_pending = false;
        }
    })
    .detach();
}
