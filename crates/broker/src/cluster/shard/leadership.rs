//! Who leads a partition here, by this shard's metadata, and the acks=all
//! wait that answers only while that leadership holds.

use std::time::{Duration, Instant};

use super::local;
use crate::model::{ErrorCode, TopicPartition};
use crate::storage::{PartitionLog, Reader};

/// Cluster mode: clients must produce to and fetch from the partition's
/// leader; another broker answers NOT_LEADER_OR_FOLLOWER so they refresh
/// their metadata. Unknown partitions are left to the log lookup.
pub fn check_leader(tp: &TopicPartition) -> Result<(), ErrorCode> {
    check_leader_epoch(tp, NO_LEADER_EPOCH).map(|_| ())
}

/// The broker that leads `topic`'s partition `partition`, with its
/// advertised endpoint: (node id, host, port). On a single node (no
/// assignment) this broker. How coordinators are found: a group's or a
/// transactional id's is the leader of its internal partition.
pub fn leader_endpoint(topic: &str, partition: i32) -> Result<(i32, String, u16), ErrorCode> {
    let shard = local();
    let metadata = shard.metadata();
    let t = metadata.topics.get(topic).ok_or(ErrorCode::CoordinatorNotAvailable)?;
    if t.assignment.is_empty() {
        let (host, port) = shard.config.advertised_endpoint();
        return Ok((shard.config.broker_id, host, port));
    }
    let (leader, _, endpoint) = metadata
        .current_leader(topic, partition)
        .filter(|(leader, _, _)| *leader >= 0)
        .ok_or(ErrorCode::CoordinatorNotAvailable)?;
    Ok((leader, endpoint.host.clone(), endpoint.port))
}

/// Whether this broker may act as the coordinator whose state is `tp`, a
/// partition of `__consumer_offsets` or `__transaction_state`: it leads the
/// partition and has heard the metadata quorum within a session timeout
/// (`quorum::in_contact`). A node cut off for longer has been fenced and the
/// partition is led elsewhere by now: its clients must look again
/// (NOT_COORDINATOR), as a cut-off leader's producers do.
pub fn check_coordinating(tp: &TopicPartition) -> Result<(), ErrorCode> {
    check_leader(tp).map_err(|_| ErrorCode::NotCoordinator)?;
    match crate::cluster::quorum::in_contact(local().config.broker_session_timeout_ms) {
        true => Ok(()),
        false => Err(ErrorCode::NotCoordinator),
    }
}

/// `leader_endpoint` for FindCoordinator: a cut-off node (`check_coordinating`)
/// does not name itself.
pub fn coordinator_endpoint(topic: &str, partition: i32) -> Result<(i32, String, u16), ErrorCode> {
    let found = leader_endpoint(topic, partition)?;
    let shard = local();
    if found.0 == shard.config.broker_id && !crate::cluster::quorum::in_contact(shard.config.broker_session_timeout_ms)
    {
        return Err(ErrorCode::CoordinatorNotAvailable);
    }
    Ok(found)
}

/// Waits (on `tp`'s owner shard) until the high watermark covers offsets
/// below `end`, which this broker appended as leader in `epoch`.
pub async fn wait_until_committed(
    tp: &TopicPartition,
    log: &PartitionLog,
    end: i64,
    epoch: i32,
    timeout: Duration,
) -> Result<(), (ErrorCode, String)> {
    let deadline = Instant::now() + timeout;
    let session_timeout_ms = local().config.broker_session_timeout_ms;
    // Bounded by the deadline: each round ends in the high watermark moving,
    // a leadership change or a lost quorum (`wake_waiters`), or the timeout.
    loop {
        // A leader demoted meanwhile may have cut the batch off and refilled
        // its offsets from the new leader: the high watermark then covers
        // other records, so only an unchanged epoch may answer.
        if leader_epoch_here(tp) != Ok(epoch) {
            return Err((
                ErrorCode::NotLeaderOrFollower,
                format!("leadership of {tp} moved before the batch was committed"),
            ));
        }
        // Cut off from the quorum: fenced by now, so the batch can only be
        // committed by a leader elsewhere; the client's retry finds it.
        if !crate::cluster::quorum::in_contact(session_timeout_ms) {
            return Err((
                ErrorCode::NotLeaderOrFollower,
                format!("this broker is cut off from the metadata quorum; leadership of {tp} has moved"),
            ));
        }
        let Some(listener) = log.data_listener(end - 1, Reader::Consumer) else {
            break;
        };
        if compio::time::timeout_at(deadline, listener).await.is_err() {
            break;
        }
    }
    if log.high_watermark() < end {
        return Err((
            ErrorCode::RequestTimedOut,
            format!("the in-sync replicas of {tp} did not confirm the batch in time"),
        ));
    }
    Ok(())
}

/// The leader epoch this broker leads `tp` in, by this shard's metadata
/// (`LEADER_EPOCH` for a partition no quorum places).
pub fn leader_epoch_here(tp: &TopicPartition) -> Result<i32, ErrorCode> {
    check_leader_epoch(tp, NO_LEADER_EPOCH)
}

/// A request's `current_leader_epoch` when the client sent none.
pub const NO_LEADER_EPOCH: i32 = -1;

/// As `check_leader`, and fences a client that knows a different leader
/// epoch (KIP-320): an older one gets FENCED_LEADER_EPOCH, a newer one (this
/// broker's metadata lags) UNKNOWN_LEADER_EPOCH; both refresh metadata.
/// Returns the epoch this broker leads in.
pub fn check_leader_epoch(tp: &TopicPartition, current_leader_epoch: i32) -> Result<i32, ErrorCode> {
    leading(tp, current_leader_epoch).map(|l| l.epoch)
}

/// What this broker's leadership of a partition is, by this shard's metadata.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Leading {
    pub epoch: i32,
    /// The in-sync replicas, this broker included (1 for a partition no quorum places).
    pub isr_size: usize,
}

/// `leader_epoch_here` with the ISR's size, from the same look at the
/// placement: the produce path's acks=all check needs both.
pub fn leading_here(tp: &TopicPartition) -> Result<Leading, ErrorCode> {
    leading(tp, NO_LEADER_EPOCH)
}

/// On the produce and fetch paths: borrows the placement, never copies it.
fn leading(tp: &TopicPartition, current_leader_epoch: i32) -> Result<Leading, ErrorCode> {
    let shard = local();
    let metadata = shard.metadata();
    let placed = metadata
        .topic_with_partition(&tp.topic, tp.partition)
        .and_then(|t| t.assignment.get(tp.partition as usize));
    let Some(placement) = placed else {
        // A single node leads all it has; unknown partitions are left to the log lookup.
        return Ok(Leading {
            epoch: crate::storage::log::LEADER_EPOCH,
            isr_size: 1,
        });
    };
    if placement.leader < 0 {
        Err(ErrorCode::LeaderNotAvailable)
    } else if placement.leader != shard.config.broker_id {
        Err(ErrorCode::NotLeaderOrFollower)
    } else if current_leader_epoch == NO_LEADER_EPOCH || current_leader_epoch == placement.leader_epoch {
        Ok(Leading {
            epoch: placement.leader_epoch,
            isr_size: placement.isr.len(),
        })
    } else if current_leader_epoch < placement.leader_epoch {
        Err(ErrorCode::FencedLeaderEpoch)
    } else {
        Err(ErrorCode::UnknownLeaderEpoch)
    }
}
