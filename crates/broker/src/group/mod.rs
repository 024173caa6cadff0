//! Consumer groups: the classic group protocol and committed offsets, kept in
//! the internal topic `__consumer_offsets`.
//!
//! A group's coordinator is the shard that owns the group's partition of
//! `__consumer_offsets` (Kafka's `abs(hashCode(group)) % partitions`). The
//! functions here run on whichever shard received the request and hand the
//! work to that shard. A `Group` (kind.rs) holds its committed offsets
//! (offsets.rs) and its membership: a `ClassicGroup` (classic.rs, the
//! JoinGroup/SyncGroup state machine) or a KIP-848 `ConsumerGroup`
//! (consumer.rs). `coordinator` is the per-shard owner of groups and of the
//! offsets partitions' writers, `records` the stored format.

pub mod classic;
pub mod consumer;
pub mod coordinator;
pub mod kind;
pub mod offsets;
pub mod records;

use std::collections::BTreeMap;
use std::future::Future;
use std::rc::Rc;

use bytes::Bytes;

use crate::cluster::controller;
use crate::cluster::shard::{self, owner_of};
use crate::model::{ErrorCode, NAME_BYTES_MAX, TopicPartition, names_fit, steady_ms};
use crate::record::control::Marker;
use crate::runtime::{self, submit_to};
use classic::{JoinReply, SyncReply};
pub use classic::{JoinRequest, JoinResult, JoinedMember, SyncResult};
use coordinator::{Coordinator, Entry, TxnWrite, Value};
use kind::Group;
use offsets::CommittedOffsets;
use records::{Key, OffsetValue};

pub const OFFSETS_TOPIC: &str = crate::model::INTERNAL_TOPICS[0];

/// Kafka's placement of a group: `Utils.abs(groupId.hashCode()) % partitions`,
/// with Java's UTF-16 string hash, so groups land where Kafka would put them.
pub fn partition_for(group_id: &str, partitions: i32) -> i32 {
    let hash = group_id
        .encode_utf16()
        .fold(0i32, |h, unit| h.wrapping_mul(31).wrapping_add(unit as i32));
    (hash & 0x7fff_ffff) % partitions.max(1)
}

/// Creates `__consumer_offsets` on first use, as Kafka does on the first FindCoordinator.
pub async fn ensure_offsets_topic() -> Result<(), ErrorCode> {
    let config = &shard::local().config.group;
    // Compaction is the coordinator's (snapshots).
    let configs = || {
        BTreeMap::from([(
            "segment.bytes".to_string(),
            config.offsets_topic_segment_bytes.to_string(),
        )])
    };
    let partitions = config.offsets_topic_partitions;
    let replication_factor = config.offsets_topic_replication_factor;
    match controller::ensure_internal_topic(OFFSETS_TOPIC, partitions, replication_factor, configs).await {
        true => Ok(()),
        false => Err(ErrorCode::CoordinatorNotAvailable),
    }
}

/// The broker that coordinates `group_id`: this one on a single node; in
/// cluster mode the leader of the group's `__consumer_offsets` partition, as
/// in Kafka. Returns (node id, host, port).
pub fn coordinator_of(group_id: &str) -> Result<(i32, String, u16), ErrorCode> {
    let partitions = coordinator::offsets_partitions().ok_or(ErrorCode::CoordinatorNotAvailable)?;
    shard::coordinator_endpoint(OFFSETS_TOPIC, partition_for(group_id, partitions))
}

/// The partition of `__consumer_offsets` that holds `group_id`'s offsets,
/// if the topic exists: the partition a transaction committing the group's
/// offsets adds (AddOffsetsToTxn).
pub fn offsets_partition(group_id: &str) -> Option<TopicPartition> {
    let partitions = coordinator::offsets_partitions()?;
    Some(TopicPartition::new(
        OFFSETS_TOPIC.to_string(),
        partition_for(group_id, partitions),
    ))
}

/// Whether this broker coordinates the groups of offsets partition
/// `partition` (always, on a single node), by this shard's metadata.
pub fn coordinates(partition: i32) -> bool {
    let tp = crate::model::TopicPartition::new(OFFSETS_TOPIC.to_string(), partition);
    shard::check_coordinating(&tp).is_ok()
}

/// Runs `f` with the group's coordinator, on the shard that owns the group.
async fn on_coordinator<R, F, Fut>(group_id: &str, f: F) -> Result<R, ErrorCode>
where
    F: FnOnce(Rc<Coordinator>) -> Fut + Send + 'static,
    Fut: Future<Output = Result<R, ErrorCode>> + 'static,
    R: Send + 'static,
{
    if group_id.is_empty() || group_id.len() > NAME_BYTES_MAX {
        return Err(ErrorCode::InvalidGroupId);
    }
    let partitions = coordinator::offsets_partitions().ok_or(ErrorCode::CoordinatorNotAvailable)?;
    on_partition(partition_for(group_id, partitions), f).await
}

/// Runs `f` with the coordinator of offsets partition `partition`, loaded,
/// on the shard that owns it.
async fn on_partition<R, F, Fut>(partition: i32, f: F) -> Result<R, ErrorCode>
where
    F: FnOnce(Rc<Coordinator>) -> Fut + Send + 'static,
    Fut: Future<Output = Result<R, ErrorCode>> + 'static,
    R: Send + 'static,
{
    if !coordinates(partition) {
        return Err(ErrorCode::NotCoordinator);
    }
    let owner = owner_of(OFFSETS_TOPIC, partition, runtime::shard_count());
    submit_to(owner, move || async move {
        if !coordinates(partition) {
            return Err(ErrorCode::NotCoordinator);
        }
        let coordinator = coordinator::local();
        coordinator.ensure_partition(partition)?;
        f(coordinator).await
    })
    .await
    .unwrap_or(Err(ErrorCode::CoordinatorNotAvailable))
}

pub async fn join(group_id: String, request: JoinRequest) -> JoinResult {
    let member_id = request.member_id.clone();
    // Everything here may reach the group's record: bounded before anything is kept.
    let names = [
        &request.member_id,
        &request.client_id,
        &request.client_host,
        &request.protocol_type,
    ]
    .into_iter()
    .chain(request.group_instance_id.as_ref())
    .chain(request.protocols.iter().map(|(name, _)| name));
    if !names_fit(names.map(String::as_str)) {
        return JoinResult::error(ErrorCode::InvalidRequest, "");
    }
    let id = group_id.clone();
    let result = on_coordinator(&group_id, move |c| async move {
        let exists = c.with_group(&id, |_| ()).is_some();
        if !exists && !request.member_id.is_empty() {
            return Ok(JoinResult::error(ErrorCode::UnknownMemberId, &request.member_id));
        }
        let member = request.member_id.clone();
        let joined = c.with_group_or_new(&id, |g| match g.classic_for_join(steady_ms()) {
            Ok(classic) => classic.join(request, steady_ms()),
            Err(code) => JoinReply::Now(JoinResult::error(code, &request.member_id)),
        });
        match joined {
            JoinReply::Now(result) => Ok(result),
            JoinReply::Later(rx) => Ok(rx
                .await
                .unwrap_or_else(|_| JoinResult::error(ErrorCode::NotCoordinator, &member))),
        }
    })
    .await;
    result.unwrap_or_else(|code| JoinResult::error(code, &member_id))
}

pub struct SyncRequest {
    pub member_id: String,
    pub group_instance_id: Option<String>,
    pub generation: i32,
    pub protocol_type: Option<String>,
    pub protocol_name: Option<String>,
    pub assignments: Vec<(String, Bytes)>,
}

pub async fn sync(group_id: String, request: SyncRequest) -> SyncResult {
    let names = [&request.member_id]
        .into_iter()
        .chain(request.group_instance_id.as_ref())
        .chain(request.protocol_type.as_ref())
        .chain(request.protocol_name.as_ref())
        .chain(request.assignments.iter().map(|(member, _)| member));
    if !names_fit(names.map(String::as_str)) {
        return SyncResult::error(ErrorCode::InvalidRequest);
    }
    let id = group_id.clone();
    let result = on_coordinator(&group_id, move |c| async move {
        let reply = c.with_group(&id, |g| {
            let Some(g) = g.classic_mut() else {
                return SyncReply::Now(SyncResult::error(ErrorCode::UnknownMemberId));
            };
            let type_mismatch = request.protocol_type.is_some() && request.protocol_type != g.protocol_type;
            let name_mismatch = request.protocol_name.is_some() && request.protocol_name != g.protocol;
            if type_mismatch || name_mismatch {
                return SyncReply::Now(SyncResult::error(ErrorCode::InconsistentGroupProtocol));
            }
            g.sync(
                &request.member_id,
                request.group_instance_id.as_deref(),
                request.generation,
                request.assignments,
                steady_ms(),
            )
        });
        match reply {
            None => Ok(SyncResult::error(ErrorCode::UnknownMemberId)),
            Some(SyncReply::Now(result)) => Ok(result),
            Some(SyncReply::Later(rx)) => Ok(rx
                .await
                .unwrap_or_else(|_| SyncResult::error(ErrorCode::NotCoordinator))),
        }
    })
    .await;
    result.unwrap_or_else(SyncResult::error)
}

pub async fn heartbeat(group_id: String, member_id: String, instance_id: Option<String>, generation: i32) -> ErrorCode {
    let id = group_id.clone();
    on_coordinator(&group_id, move |c| async move {
        Ok(c.with_group(&id, |g| {
            g.classic_mut()
                .map(|g| g.heartbeat(&member_id, instance_id.as_deref(), generation, steady_ms()))
        })
        .flatten()
        .unwrap_or(ErrorCode::UnknownMemberId))
    })
    .await
    .unwrap_or_else(|code| code)
}

/// LeaveGroup: one result per member, in request order.
pub async fn leave(group_id: String, members: Vec<(String, Option<String>)>) -> Result<Vec<ErrorCode>, ErrorCode> {
    let id = group_id.clone();
    on_coordinator(&group_id, move |c| async move {
        let now = steady_ms();
        Ok(members
            .iter()
            .map(|(member, instance)| {
                c.with_group(&id, |g| {
                    g.classic_mut().map(|g| g.leave(member, instance.as_deref(), now))
                })
                .flatten()
                .unwrap_or(ErrorCode::UnknownMemberId)
            })
            .collect())
    })
    .await
}

/// Offsets to commit: (topic, partition, offset, leader epoch, metadata).
pub type Offsets = Vec<(String, i32, i64, i32, String)>;

pub struct CommitRequest {
    pub member_id: String,
    pub group_instance_id: Option<String>,
    pub generation: i32,
    /// Already checked by the handler.
    pub offsets: Offsets,
}

/// The records that store `offsets` of group `group_id`, committed at `now_ms`.
fn offset_entries(group_id: &str, offsets: Offsets, now_ms: i64) -> Vec<Entry> {
    offsets
        .into_iter()
        .map(|(topic, partition, offset, leader_epoch, metadata)| Entry {
            key: Key::Offset {
                group: group_id.to_string(),
                topic,
                partition,
            },
            value: Some(Value::Offset(OffsetValue {
                offset,
                leader_epoch,
                metadata,
                commit_timestamp_ms: now_ms,
            })),
        })
        .collect()
}

/// Runs a commit's member `check` on group `group_id`: a commit from outside
/// any membership (generation < 0) may create the group; a member's needs
/// the group to exist, else ILLEGAL_GENERATION.
fn check_committer(
    c: &Coordinator,
    group_id: &str,
    generation: i32,
    check: impl FnOnce(&mut Group) -> Result<(), ErrorCode>,
) -> Result<(), ErrorCode> {
    if generation < 0 {
        c.with_group_or_new(group_id, check)
    } else {
        c.with_group(group_id, check)
            .unwrap_or(Err(ErrorCode::IllegalGeneration))
    }
}

/// OffsetCommit of partitions the handler has already validated. The whole
/// request succeeds or fails together: it is one batch in the log.
pub async fn commit(group_id: String, request: CommitRequest) -> ErrorCode {
    let id = group_id.clone();
    on_coordinator(&group_id, move |c| async move {
        let now = steady_ms();
        let check = |g: &mut Group| {
            g.check_commit(
                &request.member_id,
                request.group_instance_id.as_deref(),
                request.generation,
                now,
            )
        };
        check_committer(&c, &id, request.generation, check)?;
        c.write(&id, offset_entries(&id, request.offsets, now)).await
    })
    .await
    .err()
    .unwrap_or(ErrorCode::None)
}

/// TxnOffsetCommit of partitions the handler has checked, for a
/// transaction it has verified: stored as a transactional batch of the
/// producer's, and committed only by the transaction's COMMIT marker.
pub async fn commit_txn(group_id: String, producer: (i64, i16), request: CommitRequest) -> ErrorCode {
    let id = group_id.clone();
    on_coordinator(&group_id, move |c| async move {
        let check = |g: &mut Group| {
            g.check_txn_commit(
                &request.member_id,
                request.group_instance_id.as_deref(),
                request.generation,
            )
        };
        check_committer(&c, &id, request.generation, check)?;
        let entries = offset_entries(&id, request.offsets, crate::model::now_ms());
        c.write_txn_offsets(&id, entries, producer).await
    })
    .await
    .err()
    .unwrap_or(ErrorCode::None)
}

/// Writes the marker that ends `producer`'s transaction on offsets
/// partition `partition` through that partition's writer, which commits or
/// discards the transaction's offsets with it.
pub async fn write_txn_marker(
    partition: i32,
    producer: (i64, i16),
    marker: Marker,
    coordinator_epoch: i32,
) -> Result<(), ErrorCode> {
    let write = TxnWrite::Marker {
        producer,
        marker,
        coordinator_epoch,
    };
    on_partition(
        partition,
        move |c| async move { c.write_marker(partition, write).await },
    )
    .await
}

/// A committed offset as OffsetFetch reports it.
#[derive(Debug, Clone)]
pub struct CommittedOffset {
    pub topic: String,
    pub partition: i32,
    pub offset: i64,
    pub leader_epoch: i32,
    pub metadata: String,
    /// UNSTABLE_OFFSET_COMMIT when a stable offset was required and an open
    /// transaction commits one for the partition (offset -1 then).
    pub error: ErrorCode,
}

/// OffsetFetch: the requested partitions (offset -1 where nothing is
/// committed), or with `None` every partition the group has committed.
/// With `require_stable` (KIP-447), a partition an open transaction
/// commits an offset for is UNSTABLE_OFFSET_COMMIT, and the client retries.
pub async fn fetch_offsets(
    group_id: String,
    wanted: Option<Vec<(String, Vec<i32>)>>,
    require_stable: bool,
) -> Result<Vec<CommittedOffset>, ErrorCode> {
    let id = group_id.clone();
    on_coordinator(&group_id, move |c| async move {
        let fetch = |offsets: &CommittedOffsets| {
            let found = |topic: &str, partition: i32| fetched(offsets, topic, partition, require_stable);
            match &wanted {
                Some(topics) => topics
                    .iter()
                    .flat_map(|(topic, partitions)| partitions.iter().map(|p| found(topic, *p)))
                    .collect(),
                None => offsets.iter().map(|((topic, p), _)| found(topic, *p)).collect(),
            }
        };
        Ok(c.with_group(&id, |g| fetch(&g.offsets))
            .unwrap_or_else(|| fetch(&CommittedOffsets::default())))
    })
    .await
}

/// One partition's offset as OffsetFetch reports it.
fn fetched(offsets: &CommittedOffsets, topic: &str, partition: i32, require_stable: bool) -> CommittedOffset {
    let unstable = require_stable && offsets.is_pending(topic, partition);
    let value = offsets.get(topic, partition).filter(|_| !unstable);
    CommittedOffset {
        topic: topic.to_string(),
        partition,
        offset: value.map_or(-1, |v| v.offset),
        leader_epoch: value.map_or(-1, |v| v.leader_epoch),
        metadata: value.map(|v| v.metadata.clone()).unwrap_or_default(),
        error: match unstable {
            true => ErrorCode::UnstableOffsetCommit,
            false => ErrorCode::None,
        },
    }
}

/// What ListGroups shows of a group.
#[derive(Debug, Clone)]
pub struct GroupListing {
    pub group_id: String,
    pub protocol_type: String,
    pub state: &'static str,
    /// "classic" or "consumer".
    pub group_type: &'static str,
}

/// Every group of every shard.
pub async fn list_groups() -> Vec<GroupListing> {
    if coordinator::offsets_partitions().is_none() {
        return Vec::new();
    }
    let per_shard = (0..runtime::shard_count()).map(|shard| {
        submit_to(shard, || async {
            coordinator::local().map_groups(|g| GroupListing {
                group_id: g.id.clone(),
                protocol_type: g.protocol_type(),
                state: g.state_name(),
                group_type: g.type_name(),
            })
        })
    });
    let mut groups: Vec<GroupListing> = futures_util::future::join_all(per_shard)
        .await
        .into_iter()
        .flat_map(Result::unwrap_or_default)
        .collect();
    groups.sort_by(|a, b| a.group_id.cmp(&b.group_id));
    groups
}

#[derive(Debug, Clone)]
pub struct MemberDescription {
    pub member_id: String,
    pub group_instance_id: Option<String>,
    pub client_id: String,
    pub client_host: String,
    pub metadata: Bytes,
    pub assignment: Bytes,
}

#[derive(Debug, Clone)]
pub struct GroupDescription {
    pub state: String,
    pub protocol_type: String,
    pub protocol: String,
    pub members: Vec<MemberDescription>,
}

/// DescribeGroups for one group; an unknown group is "Dead", as in Kafka.
pub async fn describe(group_id: String) -> Result<GroupDescription, ErrorCode> {
    let id = group_id.clone();
    on_coordinator(&group_id, move |c| async move {
        let described = c.with_group(&id, |g| match g.classic() {
            Some(classic) => GroupDescription {
                state: classic.state.name().to_string(),
                protocol_type: classic.protocol_type.clone().unwrap_or_default(),
                protocol: classic.protocol.clone().unwrap_or_default(),
                members: classic
                    .members
                    .values()
                    .map(|m| MemberDescription {
                        member_id: m.id.clone(),
                        group_instance_id: m.instance_id.clone(),
                        client_id: m.client_id.clone(),
                        client_host: m.client_host.clone(),
                        metadata: m.metadata_for(classic.protocol.as_deref()),
                        assignment: m.assignment.clone(),
                    })
                    .collect(),
            },
            // A consumer group shows its state and no classic members.
            None => GroupDescription {
                state: g.state_name().to_string(),
                protocol_type: String::new(),
                protocol: String::new(),
                members: Vec::new(),
            },
        });
        Ok(described.unwrap_or_else(|| GroupDescription {
            state: "Dead".to_string(),
            protocol_type: String::new(),
            protocol: String::new(),
            members: Vec::new(),
        }))
    })
    .await
}

/// DeleteGroups for one group: only a group without members can go.
pub async fn delete_group(group_id: String) -> ErrorCode {
    let id = group_id.clone();
    on_coordinator(&group_id, move |c| async move {
        let entries = c
            .with_group(&id, |g| {
                if !g.is_empty() {
                    return Err(ErrorCode::NonEmptyGroup);
                }
                let mut entries: Vec<Entry> = g
                    .offsets
                    .partitions()
                    .into_iter()
                    .map(|(topic, partition)| Entry {
                        key: Key::Offset {
                            group: id.clone(),
                            topic: topic.clone(),
                            partition: *partition,
                        },
                        value: None,
                    })
                    .collect();
                entries.push(Entry {
                    key: Key::Group { group: id.clone() },
                    value: None,
                });
                Ok(entries)
            })
            .ok_or(ErrorCode::GroupIdNotFound)??;
        c.write(&id, entries).await
    })
    .await
    .err()
    .unwrap_or(ErrorCode::None)
}

/// OffsetDelete: removes committed offsets of topics the group does not
/// subscribe to. Per partition: NONE or GROUP_SUBSCRIBED_TO_TOPIC.
pub async fn delete_offsets(group_id: String, partitions: Vec<(String, i32)>) -> Result<Vec<ErrorCode>, ErrorCode> {
    let id = group_id.clone();
    on_coordinator(&group_id, move |c| async move {
        let subscribed = c
            .with_group(&id, |g| g.subscribed_topics())
            .ok_or(ErrorCode::GroupIdNotFound)?;
        let codes: Vec<ErrorCode> = partitions
            .iter()
            .map(|(topic, _)| {
                if subscribed.contains(topic) {
                    ErrorCode::GroupSubscribedToTopic
                } else {
                    ErrorCode::None
                }
            })
            .collect();
        let entries: Vec<Entry> = partitions
            .iter()
            .zip(&codes)
            .filter(|(_, code)| **code == ErrorCode::None)
            .map(|((topic, partition), _)| Entry {
                key: Key::Offset {
                    group: id.clone(),
                    topic: topic.clone(),
                    partition: *partition,
                },
                value: None,
            })
            .collect();
        if !entries.is_empty() {
            c.write(&id, entries).await?;
        }
        Ok(codes)
    })
    .await
}

/// ConsumerGroupHeartbeat (KIP-848). A group without classic members becomes
/// (or stays) a consumer group; one with classic members refuses.
pub async fn consumer_heartbeat(
    group_id: String,
    request: consumer::HeartbeatRequest,
) -> Result<consumer::HeartbeatResponse, (ErrorCode, String)> {
    let names = [&request.member_id, &request.client_id, &request.client_host]
        .into_iter()
        .chain(request.instance_id.as_ref())
        .chain(request.rack_id.as_ref())
        .chain(request.server_assignor.as_ref())
        .chain(request.subscribed_topics.iter().flatten());
    if !names_fit(names.map(String::as_str)) {
        return Err((
            ErrorCode::InvalidRequest,
            format!("a name is longer than {NAME_BYTES_MAX} bytes"),
        ));
    }
    let id = group_id.clone();
    let result = on_coordinator(&group_id, move |c| async move {
        let metadata = shard::local().metadata();
        let partitions_of = |topic: &str| metadata.topics.get(topic).map(|t| t.partitions);
        let config = c.config().clone();
        let (response, classic_record_may_exist) = c.with_group_or_new(&id, |g| {
            let make = || consumer::ConsumerGroup::new(config.consumer_session_timeout_ms, config.max_size);
            match g.consumer_for_heartbeat(make) {
                Ok((consumer, converted)) => (
                    consumer.heartbeat(request, &partitions_of, steady_ms()),
                    converted.classic_record_may_exist,
                ),
                Err(code) => (Err((code, format!("group '{id}' is not a consumer group"))), false),
            }
        });
        if classic_record_may_exist {
            // The classic group's record goes, so a restart cannot bring its members back.
            let tombstone = Entry {
                key: Key::Group { group: id.clone() },
                value: None,
            };
            if !c.write_later(&id, vec![tombstone]) {
                tracing::warn!(group = %id, "cannot queue the deletion of the classic group's record");
            }
        }
        Ok(response)
    })
    .await;
    result.map_err(|code| (code, String::new()))?
}

/// What ConsumerGroupDescribe shows of one member.
#[derive(Debug, Clone)]
pub struct ConsumerMemberDescription {
    pub member: consumer::Member,
    pub target: consumer::Assignment,
}

#[derive(Debug, Clone)]
pub struct ConsumerGroupDescription {
    pub state: &'static str,
    pub epoch: i32,
    pub assignment_epoch: i32,
    pub assignor: String,
    pub members: Vec<ConsumerMemberDescription>,
}

/// ConsumerGroupDescribe for one group: GROUP_ID_NOT_FOUND unless it is a consumer group.
pub async fn consumer_describe(group_id: String) -> Result<ConsumerGroupDescription, ErrorCode> {
    let id = group_id.clone();
    on_coordinator(&group_id, move |c| async move {
        c.with_group(&id, |g| {
            let consumer = g.consumer()?;
            Some(ConsumerGroupDescription {
                state: consumer.state_name(),
                epoch: consumer.epoch,
                assignment_epoch: consumer.assignment_epoch,
                assignor: consumer.assignor.clone(),
                members: consumer
                    .members
                    .values()
                    .map(|m| ConsumerMemberDescription {
                        member: m.clone(),
                        target: consumer.target.get(&m.id).cloned().unwrap_or_default(),
                    })
                    .collect(),
            })
        })
        .flatten()
        .ok_or(ErrorCode::GroupIdNotFound)
    })
    .await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn groups_land_on_kafkas_partitions() {
        // Java: "my-group".hashCode() == -1906497762, and Utils.abs masks the sign bit.
        assert_eq!(partition_for("my-group", 50), 36);
        assert_eq!(partition_for("test-group", 50), 12);
        assert_eq!(partition_for("console-consumer-12345", 50), 6);
        assert_eq!(partition_for("", 50), 0);
    }
}
