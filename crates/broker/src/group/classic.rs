//! A classic group: the membership of a group that speaks the classic
//! rebalance protocol (JoinGroup, SyncGroup, Heartbeat, LeaveGroup), as
//! Kafka's `ClassicGroup` runs it. Committed offsets live beside it in
//! `Group` (kind.rs). Pure state: no I/O and no clock of its own. Callers pass `now_ms`, call `tick` for timeouts,
//! and persist the group when `take_dirty` says its stored form changed.
//!
//! Join and sync responses that must wait (for the other members, or for the
//! leader's assignment) are parked as oneshot senders on the member and sent
//! when the group moves on; every path that drops a member answers its waiters.

use std::collections::{BTreeMap, HashMap};

use bytes::Bytes;
use futures_channel::oneshot;

use super::records::{GroupValue, MemberValue};
use crate::model::ErrorCode;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GroupState {
    Empty,
    PreparingRebalance,
    CompletingRebalance,
    Stable,
}

impl GroupState {
    /// The names Kafka's DescribeGroups and ListGroups use.
    pub fn name(self) -> &'static str {
        match self {
            GroupState::Empty => "Empty",
            GroupState::PreparingRebalance => "PreparingRebalance",
            GroupState::CompletingRebalance => "CompletingRebalance",
            GroupState::Stable => "Stable",
        }
    }
}

/// The coordinator limits that shape a group's behaviour (Kafka's `group.*` settings).
#[derive(Debug, Clone, Copy)]
pub struct GroupLimits {
    pub initial_rebalance_delay_ms: i64,
    pub min_session_timeout_ms: i32,
    pub max_session_timeout_ms: i32,
    pub max_size: usize,
}

#[derive(Debug, Clone, Default)]
pub struct JoinedMember {
    pub member_id: String,
    pub group_instance_id: Option<String>,
    pub metadata: Bytes,
}

#[derive(Debug, Clone)]
pub struct JoinResult {
    pub error: ErrorCode,
    pub generation: i32,
    pub protocol_type: Option<String>,
    pub protocol_name: Option<String>,
    pub leader: String,
    pub member_id: String,
    /// Every member's metadata for the chosen protocol; only the leader gets it.
    pub members: Vec<JoinedMember>,
    /// KIP-814: a static leader rejoining a stable group need not reassign.
    pub skip_assignment: bool,
}

impl JoinResult {
    pub fn error(error: ErrorCode, member_id: &str) -> Self {
        Self {
            error,
            generation: -1,
            protocol_type: None,
            protocol_name: None,
            leader: String::new(),
            member_id: member_id.to_string(),
            members: Vec::new(),
            skip_assignment: false,
        }
    }
}

#[derive(Debug, Clone)]
pub struct SyncResult {
    pub error: ErrorCode,
    pub protocol_type: Option<String>,
    pub protocol_name: Option<String>,
    pub assignment: Bytes,
}

impl SyncResult {
    pub fn error(error: ErrorCode) -> Self {
        Self {
            error,
            protocol_type: None,
            protocol_name: None,
            assignment: Bytes::new(),
        }
    }
}

/// A JoinGroup as the state machine needs it.
#[derive(Debug, Clone)]
pub struct JoinRequest {
    pub member_id: String,
    pub group_instance_id: Option<String>,
    pub client_id: String,
    pub client_host: String,
    pub session_timeout_ms: i32,
    pub rebalance_timeout_ms: i32,
    pub protocol_type: String,
    pub protocols: Vec<(String, Bytes)>,
    /// JoinGroup v4+: a new dynamic member first gets MEMBER_ID_REQUIRED (KIP-394).
    pub require_known_member_id: bool,
}

/// What answers a JoinGroup: now, or later when the rebalance completes.
pub enum JoinReply {
    Now(JoinResult),
    Later(oneshot::Receiver<JoinResult>),
}

pub enum SyncReply {
    Now(SyncResult),
    Later(oneshot::Receiver<SyncResult>),
}

#[derive(Debug)]
pub struct Member {
    pub id: String,
    pub instance_id: Option<String>,
    pub client_id: String,
    pub client_host: String,
    pub session_timeout_ms: i32,
    pub rebalance_timeout_ms: i32,
    pub protocols: Vec<(String, Bytes)>,
    pub assignment: Bytes,
    session_deadline_ms: i64,
    join_waiter: Option<oneshot::Sender<JoinResult>>,
    sync_waiter: Option<oneshot::Sender<SyncResult>>,
}

impl Member {
    /// This member's metadata for `protocol` (empty if it does not support it).
    pub fn metadata_for(&self, protocol: Option<&str>) -> Bytes {
        self.protocols
            .iter()
            .find(|(name, _)| Some(name.as_str()) == protocol)
            .map(|(_, m)| m.clone())
            .unwrap_or_default()
    }

    fn has_same_protocols(&self, protocols: &[(String, Bytes)]) -> bool {
        self.protocols == protocols
    }
}

pub struct ClassicGroup {
    pub state: GroupState,
    pub state_since_ms: i64,
    pub generation: i32,
    pub protocol_type: Option<String>,
    pub protocol: Option<String>,
    pub leader: Option<String>,
    pub members: BTreeMap<String, Member>,
    /// group.instance.id → member id of the static members.
    static_members: HashMap<String, String>,
    /// Member ids handed out with MEMBER_ID_REQUIRED, with the time they expire.
    pending_members: HashMap<String, i64>,
    join_deadline_ms: i64,
    /// The first join phase of an empty group is held open for
    /// `group.initial.rebalance.delay.ms`, so members starting together land in
    /// one generation. Unlike Kafka, the delay is not extended when more members
    /// arrive during it: a simultaneous start takes one delay, not two.
    in_initial_delay: bool,
    /// Position of the newest group record in the log (-1: never written).
    pub record_offset: i64,
    dirty: bool,
    limits: GroupLimits,
}

/// A member id: the client id (or instance id) and a UUID, as Kafka makes
/// them. The prefix is cut to leave the whole id within `NAME_BYTES_MAX`, so
/// a member id always fits the group's record.
fn new_member_id(prefix: &str) -> String {
    const UUID_SUFFIX_BYTES: usize = 37;
    let mut cut = prefix.len().min(crate::model::NAME_BYTES_MAX - UUID_SUFFIX_BYTES);
    // Bounded: at most three steps back to a character boundary.
    while !prefix.is_char_boundary(cut) {
        cut -= 1;
    }
    let id = format!("{}-{}", &prefix[..cut], uuid::Uuid::new_v4());
    assert!(id.len() <= crate::model::NAME_BYTES_MAX, "member ids fit a record");
    id
}

impl ClassicGroup {
    pub fn new(limits: GroupLimits, now_ms: i64) -> Self {
        Self {
            limits,
            state: GroupState::Empty,
            state_since_ms: now_ms,
            generation: 0,
            protocol_type: None,
            protocol: None,
            leader: None,
            members: BTreeMap::new(),
            static_members: HashMap::new(),
            pending_members: HashMap::new(),
            join_deadline_ms: 0,
            in_initial_delay: false,
            record_offset: -1,
            dirty: false,
        }
    }

    /// Rebuilds a group from its stored record. Members come back as they were
    /// (Stable), with fresh sessions: those still alive keep heartbeating, the
    /// others expire, exactly as after a coordinator move in Kafka.
    pub fn restore(&mut self, value: GroupValue, record_offset: i64, now_ms: i64) {
        self.generation = value.generation;
        self.protocol_type = (!value.protocol_type.is_empty()).then_some(value.protocol_type);
        self.protocol = value.protocol;
        self.leader = value.leader;
        self.record_offset = record_offset;
        self.members.clear();
        self.static_members.clear();
        for m in value.members {
            if let Some(instance) = &m.group_instance_id {
                self.static_members.insert(instance.clone(), m.member_id.clone());
            }
            let protocols = match &self.protocol {
                Some(name) => vec![(name.clone(), m.subscription.clone())],
                None => Vec::new(),
            };
            self.members.insert(
                m.member_id.clone(),
                Member {
                    id: m.member_id,
                    instance_id: m.group_instance_id,
                    client_id: m.client_id,
                    client_host: m.client_host,
                    session_timeout_ms: m.session_timeout_ms,
                    rebalance_timeout_ms: m.rebalance_timeout_ms,
                    protocols,
                    assignment: m.assignment,
                    session_deadline_ms: now_ms + m.session_timeout_ms as i64,
                    join_waiter: None,
                    sync_waiter: None,
                },
            );
        }
        self.state = if self.members.is_empty() {
            GroupState::Empty
        } else {
            GroupState::Stable
        };
        self.state_since_ms = value.state_timestamp_ms;
    }

    /// The stored form of the group's membership.
    pub fn to_record(&self) -> GroupValue {
        GroupValue {
            protocol_type: self.protocol_type.clone().unwrap_or_default(),
            generation: self.generation,
            protocol: self.protocol.clone(),
            leader: self.leader.clone(),
            state_timestamp_ms: self.state_since_ms,
            members: self
                .members
                .values()
                .map(|m| MemberValue {
                    member_id: m.id.clone(),
                    group_instance_id: m.instance_id.clone(),
                    client_id: m.client_id.clone(),
                    client_host: m.client_host.clone(),
                    rebalance_timeout_ms: m.rebalance_timeout_ms,
                    session_timeout_ms: m.session_timeout_ms,
                    subscription: m.metadata_for(self.protocol.as_deref()),
                    assignment: m.assignment.clone(),
                })
                .collect(),
        }
    }

    /// Whether the stored group record is out of date; clears the flag.
    pub fn take_dirty(&mut self) -> bool {
        std::mem::take(&mut self.dirty)
    }

    pub fn mark_dirty(&mut self) {
        self.dirty = true;
    }

    pub fn is_empty(&self) -> bool {
        self.members.is_empty() && self.pending_members.is_empty()
    }

    /// No members, nothing stored and nothing to store.
    pub fn is_pristine(&self) -> bool {
        self.is_empty() && self.record_offset < 0 && self.generation == 0 && !self.dirty
    }

    fn set_state(&mut self, state: GroupState, now_ms: i64) {
        self.state = state;
        self.state_since_ms = now_ms;
    }

    /// FENCED_INSTANCE_ID when a static member id is used by an older incarnation.
    pub fn check_fenced(&self, member_id: &str, instance_id: Option<&str>) -> Result<(), ErrorCode> {
        match instance_id.and_then(|i| self.static_members.get(i)) {
            Some(current) if current != member_id => Err(ErrorCode::FencedInstanceId),
            _ => Ok(()),
        }
    }

    /// Validates a member and its generation for SyncGroup, Heartbeat and OffsetCommit.
    fn check_member(&self, member_id: &str, instance_id: Option<&str>, generation: i32) -> Result<(), ErrorCode> {
        self.check_fenced(member_id, instance_id)?;
        if !self.members.contains_key(member_id) {
            return Err(ErrorCode::UnknownMemberId);
        }
        if generation != self.generation {
            return Err(ErrorCode::IllegalGeneration);
        }
        Ok(())
    }

    fn renew_session(&mut self, member_id: &str, now_ms: i64) {
        if let Some(m) = self.members.get_mut(member_id) {
            m.session_deadline_ms = now_ms + m.session_timeout_ms as i64;
        }
    }

    pub fn join(&mut self, request: JoinRequest, now_ms: i64) -> JoinReply {
        let member_id = request.member_id.clone();
        if let Err(code) = self.validate_join(&request) {
            return JoinReply::Now(JoinResult::error(code, &member_id));
        }
        if member_id.is_empty() {
            return self.join_unknown_member(request, now_ms);
        }
        if let Err(code) = self.check_fenced(&member_id, request.group_instance_id.as_deref()) {
            return JoinReply::Now(JoinResult::error(code, &member_id));
        }
        if self.pending_members.remove(&member_id).is_some() {
            return self.add_member_and_rebalance(member_id, request, now_ms);
        }
        let Some(member) = self.members.get_mut(&member_id) else {
            return JoinReply::Now(JoinResult::error(ErrorCode::UnknownMemberId, &member_id));
        };
        let unchanged = member.has_same_protocols(&request.protocols);
        member.protocols = request.protocols;
        member.session_timeout_ms = request.session_timeout_ms;
        member.rebalance_timeout_ms = request.rebalance_timeout_ms;
        let is_leader = self.leader.as_deref() == Some(member_id.as_str());
        match self.state {
            GroupState::PreparingRebalance => self.park_join(&member_id, now_ms),
            GroupState::CompletingRebalance if unchanged => JoinReply::Now(self.current_join_result(&member_id)),
            GroupState::Stable if unchanged && !is_leader => JoinReply::Now(self.current_join_result(&member_id)),
            _ => {
                self.prepare_rebalance(now_ms);
                self.park_join(&member_id, now_ms)
            }
        }
    }

    fn validate_join(&self, request: &JoinRequest) -> Result<(), ErrorCode> {
        let limits = &self.limits;
        if !(limits.min_session_timeout_ms..=limits.max_session_timeout_ms).contains(&request.session_timeout_ms) {
            return Err(ErrorCode::InvalidSessionTimeout);
        }
        if request.protocol_type.is_empty() || request.protocols.is_empty() {
            return Err(ErrorCode::InconsistentGroupProtocol);
        }
        if !self.members.is_empty() {
            let same_type = self.protocol_type.as_deref() == Some(request.protocol_type.as_str());
            let shared = request.protocols.iter().any(|(name, _)| {
                self.members
                    .values()
                    .all(|m| m.protocols.iter().any(|(n, _)| n == name))
            });
            if !same_type || !shared {
                return Err(ErrorCode::InconsistentGroupProtocol);
            }
        }
        Ok(())
    }

    fn join_unknown_member(&mut self, request: JoinRequest, now_ms: i64) -> JoinReply {
        if let Some(instance) = request.group_instance_id.clone()
            && let Some(old_id) = self.static_members.get(&instance).cloned()
        {
            return self.rejoin_static_member(old_id, request, now_ms);
        }
        if self.members.len() + self.pending_members.len() >= self.limits.max_size {
            return JoinReply::Now(JoinResult::error(ErrorCode::GroupMaxSizeReached, ""));
        }
        let prefix = request
            .group_instance_id
            .clone()
            .unwrap_or_else(|| request.client_id.clone());
        let member_id = new_member_id(&prefix);
        if request.require_known_member_id && request.group_instance_id.is_none() {
            self.pending_members
                .insert(member_id.clone(), now_ms + request.session_timeout_ms as i64);
            return JoinReply::Now(JoinResult::error(ErrorCode::MemberIdRequired, &member_id));
        }
        self.add_member_and_rebalance(member_id, request, now_ms)
    }

    /// KIP-345: a static member restarting takes over its old identity; in a
    /// stable group with unchanged subscriptions that needs no rebalance.
    fn rejoin_static_member(&mut self, old_id: String, request: JoinRequest, now_ms: i64) -> JoinReply {
        let instance = request.group_instance_id.clone().expect("static member");
        let new_id = new_member_id(&instance);
        let mut member = self.members.remove(&old_id).expect("static map points at a member");
        if let Some(waiter) = member.join_waiter.take() {
            let _ = waiter.send(JoinResult::error(ErrorCode::FencedInstanceId, &old_id));
        }
        if let Some(waiter) = member.sync_waiter.take() {
            let _ = waiter.send(SyncResult::error(ErrorCode::FencedInstanceId));
        }
        let unchanged = member.has_same_protocols(&request.protocols);
        member.id = new_id.clone();
        member.protocols = request.protocols;
        member.client_id = request.client_id;
        member.client_host = request.client_host;
        member.session_timeout_ms = request.session_timeout_ms;
        member.rebalance_timeout_ms = request.rebalance_timeout_ms;
        self.members.insert(new_id.clone(), member);
        self.static_members.insert(instance, new_id.clone());
        if self.leader.as_deref() == Some(old_id.as_str()) {
            self.leader = Some(new_id.clone());
        }
        self.dirty = true;
        match self.state {
            GroupState::Stable if unchanged => {
                self.renew_session(&new_id, now_ms);
                let mut result = self.current_join_result(&new_id);
                result.skip_assignment = self.leader.as_deref() == Some(new_id.as_str());
                JoinReply::Now(result)
            }
            GroupState::PreparingRebalance => self.park_join(&new_id, now_ms),
            _ => {
                self.prepare_rebalance(now_ms);
                self.park_join(&new_id, now_ms)
            }
        }
    }

    fn add_member_and_rebalance(&mut self, member_id: String, request: JoinRequest, now_ms: i64) -> JoinReply {
        if self.members.is_empty() {
            self.protocol_type = Some(request.protocol_type.clone());
        }
        if let Some(instance) = &request.group_instance_id {
            self.static_members.insert(instance.clone(), member_id.clone());
        }
        self.members.insert(
            member_id.clone(),
            Member {
                id: member_id.clone(),
                instance_id: request.group_instance_id,
                client_id: request.client_id,
                client_host: request.client_host,
                session_timeout_ms: request.session_timeout_ms,
                rebalance_timeout_ms: request.rebalance_timeout_ms,
                protocols: request.protocols,
                assignment: Bytes::new(),
                session_deadline_ms: now_ms + request.session_timeout_ms as i64,
                join_waiter: None,
                sync_waiter: None,
            },
        );
        if self.leader.is_none() {
            self.leader = Some(member_id.clone());
        }
        if self.state != GroupState::PreparingRebalance {
            self.prepare_rebalance(now_ms);
        }
        self.park_join(&member_id, now_ms)
    }

    fn park_join(&mut self, member_id: &str, now_ms: i64) -> JoinReply {
        let (tx, rx) = oneshot::channel();
        let member = self.members.get_mut(member_id).expect("parked member exists");
        if let Some(old) = member.join_waiter.replace(tx) {
            // A client that re-sent JoinGroup gave up on the first one.
            let _ = old.send(JoinResult::error(ErrorCode::UnknownMemberId, member_id));
        }
        self.try_complete_join(now_ms);
        JoinReply::Later(rx)
    }

    /// The JoinGroup answer for the current generation.
    fn current_join_result(&self, member_id: &str) -> JoinResult {
        let leader = self.leader.clone().unwrap_or_default();
        let members = if leader == member_id {
            self.members
                .values()
                .map(|m| JoinedMember {
                    member_id: m.id.clone(),
                    group_instance_id: m.instance_id.clone(),
                    metadata: m.metadata_for(self.protocol.as_deref()),
                })
                .collect()
        } else {
            Vec::new()
        };
        JoinResult {
            error: ErrorCode::None,
            generation: self.generation,
            protocol_type: self.protocol_type.clone(),
            protocol_name: self.protocol.clone(),
            leader,
            member_id: member_id.to_string(),
            members,
            skip_assignment: false,
        }
    }

    /// Opens a join phase: every member must rejoin (or time out) before a new generation.
    fn prepare_rebalance(&mut self, now_ms: i64) {
        if self.state == GroupState::CompletingRebalance {
            for m in self.members.values_mut() {
                if let Some(waiter) = m.sync_waiter.take() {
                    let _ = waiter.send(SyncResult::error(ErrorCode::RebalanceInProgress));
                }
            }
        }
        let rebalance_timeout_ms = self
            .members
            .values()
            .map(|m| m.rebalance_timeout_ms as i64)
            .max()
            .unwrap_or(0);
        if self.state == GroupState::Empty {
            let delay = self.limits.initial_rebalance_delay_ms.min(rebalance_timeout_ms);
            self.in_initial_delay = true;
            self.join_deadline_ms = now_ms + delay;
        } else {
            self.in_initial_delay = false;
            self.join_deadline_ms = now_ms + rebalance_timeout_ms;
        }
        self.set_state(GroupState::PreparingRebalance, now_ms);
    }

    /// Completes the join phase once every member has rejoined, or at its deadline.
    fn try_complete_join(&mut self, now_ms: i64) {
        if self.state != GroupState::PreparingRebalance {
            return;
        }
        if self.in_initial_delay {
            if now_ms < self.join_deadline_ms {
                return;
            }
            self.in_initial_delay = false;
        }
        let all_joined = self.pending_members.is_empty() && self.members.values().all(|m| m.join_waiter.is_some());
        if all_joined || now_ms >= self.join_deadline_ms {
            self.complete_join(now_ms);
        }
    }

    /// Starts the next generation with the members that rejoined: picks the
    /// protocol and the leader, and answers every parked JoinGroup.
    fn complete_join(&mut self, now_ms: i64) {
        let late: Vec<String> = self
            .members
            .values()
            .filter(|m| m.join_waiter.is_none())
            .map(|m| m.id.clone())
            .collect();
        for id in late {
            self.drop_member(&id);
        }
        self.generation += 1;
        self.dirty = true;
        if self.members.is_empty() {
            self.protocol = None;
            self.leader = None;
            self.set_state(GroupState::Empty, now_ms);
            return;
        }
        self.protocol = self.select_protocol();
        if !self.leader.as_ref().is_some_and(|l| self.members.contains_key(l)) {
            self.leader = self.members.keys().next().cloned();
        }
        self.set_state(GroupState::CompletingRebalance, now_ms);
        let ids: Vec<String> = self.members.keys().cloned().collect();
        for id in ids {
            let result = self.current_join_result(&id);
            let member = self.members.get_mut(&id).expect("member exists");
            member.session_deadline_ms = now_ms + member.session_timeout_ms as i64;
            member.assignment = Bytes::new();
            if let Some(waiter) = member.join_waiter.take() {
                let _ = waiter.send(result);
            }
        }
    }

    /// The protocol every member supports that most members prefer (Kafka's vote).
    fn select_protocol(&self) -> Option<String> {
        let first = self.members.values().next()?;
        let candidates: Vec<&str> = first
            .protocols
            .iter()
            .map(|(name, _)| name.as_str())
            .filter(|name| {
                self.members
                    .values()
                    .all(|m| m.protocols.iter().any(|(n, _)| n == name))
            })
            .collect();
        let mut votes: Vec<(usize, &str)> = candidates.iter().map(|c| (0, *c)).collect();
        for member in self.members.values() {
            let choice = member
                .protocols
                .iter()
                .find(|(name, _)| candidates.contains(&name.as_str()));
            if let Some((name, _)) = choice
                && let Some(slot) = votes.iter_mut().find(|(_, c)| c == name)
            {
                slot.0 += 1;
            }
        }
        // Ties go to the first member's preference, as candidates keep its order.
        votes
            .iter()
            .rev()
            .max_by_key(|(count, _)| *count)
            .map(|(_, name)| name.to_string())
    }

    pub fn sync(
        &mut self,
        member_id: &str,
        instance_id: Option<&str>,
        generation: i32,
        assignments: Vec<(String, Bytes)>,
        now_ms: i64,
    ) -> SyncReply {
        if let Err(code) = self.check_member(member_id, instance_id, generation) {
            return SyncReply::Now(SyncResult::error(code));
        }
        self.renew_session(member_id, now_ms);
        match self.state {
            GroupState::Empty => SyncReply::Now(SyncResult::error(ErrorCode::UnknownMemberId)),
            GroupState::PreparingRebalance => SyncReply::Now(SyncResult::error(ErrorCode::RebalanceInProgress)),
            GroupState::Stable => SyncReply::Now(self.sync_result(member_id)),
            GroupState::CompletingRebalance => {
                let (tx, rx) = oneshot::channel();
                if let Some(old) = self
                    .members
                    .get_mut(member_id)
                    .expect("checked member")
                    .sync_waiter
                    .replace(tx)
                {
                    let _ = old.send(SyncResult::error(ErrorCode::UnknownMemberId));
                }
                if self.leader.as_deref() == Some(member_id) {
                    self.install_assignment(assignments, now_ms);
                }
                SyncReply::Later(rx)
            }
        }
    }

    fn sync_result(&self, member_id: &str) -> SyncResult {
        SyncResult {
            error: ErrorCode::None,
            protocol_type: self.protocol_type.clone(),
            protocol_name: self.protocol.clone(),
            assignment: self
                .members
                .get(member_id)
                .map(|m| m.assignment.clone())
                .unwrap_or_default(),
        }
    }

    /// The leader's assignment: stored, the group stable, every waiting member answered.
    fn install_assignment(&mut self, assignments: Vec<(String, Bytes)>, now_ms: i64) {
        let mut by_member: HashMap<String, Bytes> = assignments.into_iter().collect();
        for m in self.members.values_mut() {
            m.assignment = by_member.remove(&m.id).unwrap_or_default();
        }
        self.set_state(GroupState::Stable, now_ms);
        self.dirty = true;
        let ids: Vec<String> = self.members.keys().cloned().collect();
        for id in ids {
            let result = self.sync_result(&id);
            if let Some(waiter) = self.members.get_mut(&id).and_then(|m| m.sync_waiter.take()) {
                let _ = waiter.send(result);
            }
        }
    }

    pub fn heartbeat(&mut self, member_id: &str, instance_id: Option<&str>, generation: i32, now_ms: i64) -> ErrorCode {
        if let Err(code) = self.check_member(member_id, instance_id, generation) {
            return code;
        }
        self.renew_session(member_id, now_ms);
        match self.state {
            GroupState::PreparingRebalance => ErrorCode::RebalanceInProgress,
            GroupState::Empty => ErrorCode::UnknownMemberId,
            GroupState::CompletingRebalance | GroupState::Stable => ErrorCode::None,
        }
    }

    /// LeaveGroup for one member, by member id or (static members) instance id.
    pub fn leave(&mut self, member_id: &str, instance_id: Option<&str>, now_ms: i64) -> ErrorCode {
        let id = match instance_id {
            Some(instance) => match self.static_members.get(instance) {
                Some(current) if member_id.is_empty() || current == member_id => current.clone(),
                Some(_) => return ErrorCode::FencedInstanceId,
                None => return ErrorCode::UnknownMemberId,
            },
            None => member_id.to_string(),
        };
        if self.pending_members.remove(&id).is_some() {
            self.try_complete_join(now_ms);
            return ErrorCode::None;
        }
        if !self.members.contains_key(&id) {
            return ErrorCode::UnknownMemberId;
        }
        self.remove_member(&id, now_ms);
        ErrorCode::None
    }

    /// Removes a member and starts (or advances) a rebalance for the rest.
    fn remove_member(&mut self, member_id: &str, now_ms: i64) {
        self.drop_member(member_id);
        self.dirty = true;
        match self.state {
            GroupState::Stable | GroupState::CompletingRebalance => {
                self.prepare_rebalance(now_ms);
                self.try_complete_join(now_ms);
            }
            GroupState::PreparingRebalance => self.try_complete_join(now_ms),
            GroupState::Empty => {}
        }
    }

    /// Forgets a member, answering whatever it still waits on.
    fn drop_member(&mut self, member_id: &str) {
        let Some(mut member) = self.members.remove(member_id) else {
            return;
        };
        if let Some(instance) = &member.instance_id
            && self.static_members.get(instance).map(String::as_str) == Some(member_id)
        {
            self.static_members.remove(instance);
        }
        if let Some(waiter) = member.join_waiter.take() {
            let _ = waiter.send(JoinResult::error(ErrorCode::UnknownMemberId, member_id));
        }
        if let Some(waiter) = member.sync_waiter.take() {
            let _ = waiter.send(SyncResult::error(ErrorCode::UnknownMemberId));
        }
        if self.leader.as_deref() == Some(member_id) {
            self.leader = self.members.keys().next().cloned();
        }
    }

    /// Session and rebalance timeouts. Members parked in a JoinGroup or
    /// SyncGroup are not expired: they are waiting on the group, not silent.
    /// Returns the members whose session expired.
    pub fn tick(&mut self, now_ms: i64) -> Vec<String> {
        let expired: Vec<String> = self
            .members
            .values()
            .filter(|m| m.join_waiter.is_none() && m.sync_waiter.is_none() && now_ms > m.session_deadline_ms)
            .map(|m| m.id.clone())
            .collect();
        for id in &expired {
            self.remove_member(id, now_ms);
        }
        let before = self.pending_members.len();
        self.pending_members.retain(|_, deadline| now_ms <= *deadline);
        if self.pending_members.len() != before {
            self.try_complete_join(now_ms);
        }
        if self.state == GroupState::PreparingRebalance && now_ms >= self.join_deadline_ms {
            self.try_complete_join(now_ms);
        }
        expired
    }

    /// OffsetCommit's membership rule, as Kafka's `doCommitOffsets` has it:
    /// generation -1 commits are for groups that only store offsets here.
    pub fn check_commit(
        &mut self,
        member_id: &str,
        instance_id: Option<&str>,
        generation: i32,
        now_ms: i64,
    ) -> Result<(), ErrorCode> {
        self.check_fenced(member_id, instance_id)?;
        if generation < 0 && self.state == GroupState::Empty {
            return Ok(());
        }
        if self.state == GroupState::CompletingRebalance {
            return Err(ErrorCode::RebalanceInProgress);
        }
        if !self.members.contains_key(member_id) {
            return Err(ErrorCode::UnknownMemberId);
        }
        if generation != self.generation {
            return Err(ErrorCode::IllegalGeneration);
        }
        self.renew_session(member_id, now_ms);
        Ok(())
    }

    /// Validates a TxnOffsetCommit (KIP-447): as OffsetCommit, except that
    /// a request without member or generation (versions 0 to 2) passes, and
    /// a rebalance in progress does not refuse it, as in Kafka.
    pub fn check_txn_commit(
        &self,
        member_id: &str,
        instance_id: Option<&str>,
        generation: i32,
    ) -> Result<(), ErrorCode> {
        if generation < 0 && self.state == GroupState::Empty {
            return Ok(());
        }
        if generation >= 0 || !member_id.is_empty() || instance_id.is_some() {
            self.check_member(member_id, instance_id, generation)?;
        }
        Ok(())
    }

    /// The topics the members subscribe to, from the consumer protocol's
    /// subscription metadata (v0+: version, then an array of topic names).
    pub fn subscribed_topics(&self) -> Vec<String> {
        let mut topics: Vec<String> = Vec::new();
        if self.protocol_type.as_deref() != Some("consumer") {
            return topics;
        }
        for member in self.members.values() {
            let metadata = member.metadata_for(self.protocol.as_deref());
            let mut r = crate::wire::Reader::new(&metadata);
            let Ok(_version) = r.i16() else { continue };
            let Ok(count) = r.array_len(false) else { continue };
            for _ in 0..count {
                match r.str(false) {
                    Ok(topic) if !topics.iter().any(|t| t == topic) => topics.push(topic.to_string()),
                    Ok(_) => {}
                    Err(_) => break,
                }
            }
        }
        topics
    }
}

#[cfg(test)]
pub(super) mod tests {
    use super::*;

    pub(in crate::group) const LIMITS: GroupLimits = GroupLimits {
        initial_rebalance_delay_ms: 100,
        min_session_timeout_ms: 10,
        max_session_timeout_ms: 100_000,
        max_size: 3,
    };

    fn request(member_id: &str, instance: Option<&str>) -> JoinRequest {
        JoinRequest {
            member_id: member_id.to_string(),
            group_instance_id: instance.map(str::to_string),
            client_id: "client".to_string(),
            client_host: "/127.0.0.1".to_string(),
            session_timeout_ms: 1000,
            rebalance_timeout_ms: 5000,
            protocol_type: "consumer".to_string(),
            protocols: vec![("range".to_string(), Bytes::from_static(b"sub"))],
            require_known_member_id: true,
        }
    }

    fn now_result(reply: JoinReply) -> JoinResult {
        match reply {
            JoinReply::Now(r) => r,
            JoinReply::Later(_) => panic!("expected an immediate answer"),
        }
    }

    fn later(reply: JoinReply) -> oneshot::Receiver<JoinResult> {
        match reply {
            JoinReply::Later(rx) => rx,
            JoinReply::Now(r) => panic!("expected to wait, got {:?}", r.error),
        }
    }

    /// Joins a dynamic member the KIP-394 way; returns its id and pending answer.
    fn join_new(g: &mut ClassicGroup, now: i64) -> (String, oneshot::Receiver<JoinResult>) {
        let first = now_result(g.join(request("", None), now));
        assert_eq!(first.error, ErrorCode::MemberIdRequired);
        let rx = later(g.join(request(&first.member_id, None), now));
        (first.member_id, rx)
    }

    fn stable_group_of_three() -> (ClassicGroup, Vec<String>) {
        let mut g = ClassicGroup::new(LIMITS, 0);
        let joined: Vec<_> = (0..3).map(|_| join_new(&mut g, 0)).collect();
        assert_eq!(g.state, GroupState::PreparingRebalance);
        g.tick(50);
        assert_eq!(
            g.state,
            GroupState::PreparingRebalance,
            "the initial delay holds the join open"
        );
        g.tick(100);
        g.tick(200);
        assert_eq!(g.state, GroupState::CompletingRebalance);
        let mut ids = Vec::new();
        let mut leader_members = 0;
        for (id, mut rx) in joined {
            let result = rx.try_recv().unwrap().expect("answered");
            assert_eq!((result.error, result.generation), (ErrorCode::None, 1));
            leader_members += result.members.len();
            ids.push(id);
        }
        assert_eq!(leader_members, 3, "only the leader gets the member list");
        let leader = g.leader.clone().unwrap();
        let assignments = ids.iter().map(|id| (id.clone(), Bytes::from(id.clone()))).collect();
        match g.sync(&leader, None, 1, assignments, 200) {
            SyncReply::Later(mut rx) => assert_eq!(rx.try_recv().unwrap().unwrap().assignment, leader),
            SyncReply::Now(r) => panic!("leader answered early: {:?}", r.error),
        }
        assert_eq!(g.state, GroupState::Stable);
        assert!(g.take_dirty(), "a stable group is stored");
        (g, ids)
    }

    #[test]
    fn three_members_join_sync_and_get_their_assignment() {
        let (mut g, ids) = stable_group_of_three();
        for id in &ids {
            match g.sync(id, None, 1, Vec::new(), 300) {
                SyncReply::Now(r) => assert_eq!(r.assignment, Bytes::from(id.clone())),
                SyncReply::Later(_) => panic!("stable group answers at once"),
            }
        }
        let overflow = now_result(g.join(request("", None), 300));
        assert_eq!(overflow.error, ErrorCode::GroupMaxSizeReached);
    }

    #[test]
    fn a_silent_member_expires_and_the_rest_rebalance() {
        let (mut g, ids) = stable_group_of_three();
        for id in &ids[..2] {
            assert_eq!(g.heartbeat(id, None, 1, 900), ErrorCode::None);
        }
        g.tick(1300); // ids[2] last heard of at 200, session 1000 ms
        assert_eq!(g.state, GroupState::PreparingRebalance);
        assert!(!g.members.contains_key(&ids[2]));
        assert_eq!(g.heartbeat(&ids[0], None, 1, 1300), ErrorCode::RebalanceInProgress);
        assert_eq!(g.heartbeat(&ids[2], None, 1, 1300), ErrorCode::UnknownMemberId);
        let mut a = later(g.join(request(&ids[0], None), 1300));
        let mut b = later(g.join(request(&ids[1], None), 1300));
        assert_eq!(
            g.state,
            GroupState::CompletingRebalance,
            "all remaining members rejoined"
        );
        assert_eq!(a.try_recv().unwrap().unwrap().generation, 2);
        assert_eq!(b.try_recv().unwrap().unwrap().generation, 2);
        assert_eq!(g.heartbeat(&ids[0], None, 1, 1300), ErrorCode::IllegalGeneration);
    }

    #[test]
    fn a_member_that_does_not_rejoin_within_the_rebalance_timeout_is_dropped() {
        let (mut g, ids) = stable_group_of_three();
        let mut joined: Vec<_> = ids[..2]
            .iter()
            .map(|id| later(g.join(request(id, None), 300)))
            .collect();
        assert_eq!(
            g.state,
            GroupState::PreparingRebalance,
            "the leader rejoining starts a rebalance"
        );
        // ids[2] keeps heartbeating (so its session lives) but never rejoins.
        for now in [1000, 2000, 3000, 4000, 5000] {
            assert_eq!(g.heartbeat(&ids[2], None, 1, now), ErrorCode::RebalanceInProgress);
            g.tick(now);
        }
        assert_eq!(g.state, GroupState::PreparingRebalance);
        g.tick(5301); // rebalance timeout 5000 ms from 300
        assert_eq!(g.state, GroupState::CompletingRebalance);
        assert!(!g.members.contains_key(&ids[2]));
        for rx in &mut joined {
            assert_eq!(rx.try_recv().unwrap().unwrap().generation, 2);
        }
    }

    #[test]
    fn leaving_members_empty_the_group() {
        let (mut g, ids) = stable_group_of_three();
        for id in &ids {
            assert_eq!(g.leave(id, None, 300), ErrorCode::None);
        }
        assert_eq!(g.state, GroupState::Empty);
        assert_eq!(g.leave(&ids[0], None, 300), ErrorCode::UnknownMemberId);
        assert!(
            g.check_commit("", None, -1, 300).is_ok(),
            "an empty group takes admin commits"
        );
    }

    #[test]
    fn a_static_member_rejoining_a_stable_group_causes_no_rebalance() {
        let mut g = ClassicGroup::new(LIMITS, 0);
        let mut rx = later(g.join(request("", Some("instance-1")), 0));
        g.tick(200);
        let first = rx.try_recv().unwrap().unwrap();
        let old_id = first.member_id.clone();
        let _ = g.sync(
            &old_id,
            Some("instance-1"),
            1,
            vec![(old_id.clone(), Bytes::from_static(b"a"))],
            200,
        );
        assert_eq!(g.state, GroupState::Stable);
        let again = now_result(g.join(request("", Some("instance-1")), 300));
        assert_eq!((again.error, again.generation), (ErrorCode::None, 1));
        assert_ne!(again.member_id, old_id);
        assert_eq!(g.state, GroupState::Stable);
        assert_eq!(
            g.heartbeat(&old_id, Some("instance-1"), 1, 300),
            ErrorCode::FencedInstanceId
        );
        assert_eq!(
            g.heartbeat(&again.member_id, Some("instance-1"), 1, 300),
            ErrorCode::None
        );
    }

    #[test]
    fn the_protocol_all_members_support_wins_the_vote() {
        let mut g = ClassicGroup::new(LIMITS, 0);
        let mut a = request("", None);
        a.require_known_member_id = false;
        a.protocols = vec![("roundrobin".into(), Bytes::new()), ("range".into(), Bytes::new())];
        let mut b = a.clone();
        b.protocols = vec![("range".into(), Bytes::new()), ("sticky".into(), Bytes::new())];
        let _a = later(g.join(a, 0));
        let _b = later(g.join(b, 0));
        g.tick(500);
        assert_eq!(g.protocol.as_deref(), Some("range"));
        let mut c = request("", None);
        c.protocols = vec![("sticky".into(), Bytes::new())];
        assert_eq!(now_result(g.join(c, 500)).error, ErrorCode::InconsistentGroupProtocol);
    }
}
