//! One group: its id, its committed offsets, and its membership, which is of
//! one of two kinds: a `ClassicGroup` (JoinGroup and SyncGroup) or a KIP-848
//! `ConsumerGroup` (ConsumerGroupHeartbeat). An empty group changes kind when
//! a member of the other protocol arrives, as Kafka converts empty groups; a
//! group with members refuses one.

use super::classic::{ClassicGroup, GroupLimits};
use super::consumer::ConsumerGroup;
use super::offsets::CommittedOffsets;
use super::records::GroupValue;
use crate::model::ErrorCode;

pub struct Group {
    pub id: String,
    pub offsets: CommittedOffsets,
    pub kind: GroupKind,
    limits: GroupLimits,
}

pub enum GroupKind {
    Classic(ClassicGroup),
    Consumer(ConsumerGroup),
}

/// What a classic group leaves behind when it turns into a consumer group: a
/// record in the log must be deleted, or a restart would bring the classic
/// group back.
#[must_use]
pub struct Converted {
    pub classic_record_may_exist: bool,
}

impl Group {
    /// A new group is an empty classic group until a member says otherwise.
    pub fn new(id: String, limits: GroupLimits, now_ms: i64) -> Self {
        Self {
            id,
            offsets: CommittedOffsets::default(),
            kind: GroupKind::Classic(ClassicGroup::new(limits, now_ms)),
            limits,
        }
    }

    pub fn classic(&self) -> Option<&ClassicGroup> {
        match &self.kind {
            GroupKind::Classic(classic) => Some(classic),
            GroupKind::Consumer(_) => None,
        }
    }

    pub fn classic_mut(&mut self) -> Option<&mut ClassicGroup> {
        match &mut self.kind {
            GroupKind::Classic(classic) => Some(classic),
            GroupKind::Consumer(_) => None,
        }
    }

    pub fn consumer(&self) -> Option<&ConsumerGroup> {
        match &self.kind {
            GroupKind::Consumer(consumer) => Some(consumer),
            GroupKind::Classic(_) => None,
        }
    }

    /// The classic group a JoinGroup joins: an empty consumer group becomes
    /// one; a consumer group with members refuses (INCONSISTENT_GROUP_PROTOCOL).
    pub fn classic_for_join(&mut self, now_ms: i64) -> Result<&mut ClassicGroup, ErrorCode> {
        if let GroupKind::Consumer(consumer) = &self.kind {
            if !consumer.members.is_empty() {
                return Err(ErrorCode::InconsistentGroupProtocol);
            }
            self.kind = GroupKind::Classic(ClassicGroup::new(self.limits, now_ms));
        }
        Ok(self.classic_mut().expect("a classic group now"))
    }

    /// The consumer group a ConsumerGroupHeartbeat reaches: a classic group
    /// without members becomes one (`make`); one with members refuses
    /// (GROUP_ID_NOT_FOUND, as Kafka answers).
    pub fn consumer_for_heartbeat(
        &mut self,
        make: impl FnOnce() -> ConsumerGroup,
    ) -> Result<(&mut ConsumerGroup, Converted), ErrorCode> {
        let mut converted = Converted {
            classic_record_may_exist: false,
        };
        if let GroupKind::Classic(classic) = &self.kind {
            if !classic.members.is_empty() {
                return Err(ErrorCode::GroupIdNotFound);
            }
            // A group that had a generation has a record in the log or on its way there.
            converted.classic_record_may_exist = classic.record_offset >= 0 || classic.generation > 0;
            self.kind = GroupKind::Consumer(make());
        }
        match &mut self.kind {
            GroupKind::Consumer(consumer) => Ok((consumer, converted)),
            GroupKind::Classic(_) => unreachable!("converted above"),
        }
    }

    /// Rebuilds the classic group from its stored record (replaying the log).
    pub fn restore_classic(&mut self, value: GroupValue, record_offset: i64, now_ms: i64) {
        if self.classic().is_none() {
            self.kind = GroupKind::Classic(ClassicGroup::new(self.limits, now_ms));
        }
        let classic = self.classic_mut().expect("a classic group now");
        classic.restore(value, record_offset, now_ms);
    }

    /// The classic group's record was deleted (DeleteGroups, expiry, a move
    /// to the consumer protocol): an empty classic group starts afresh, and
    /// the group is forgotten once nothing else is left of it. Committed
    /// offsets stay: they have records of their own.
    pub fn forget_classic_record(&mut self, now_ms: i64) {
        if self.classic().is_some_and(ClassicGroup::is_empty) {
            self.kind = GroupKind::Classic(ClassicGroup::new(self.limits, now_ms));
        }
    }

    /// Whether any member (classic, pending or consumer) is in the group.
    pub fn is_empty(&self) -> bool {
        match &self.kind {
            GroupKind::Classic(classic) => classic.is_empty(),
            GroupKind::Consumer(consumer) => consumer.members.is_empty(),
        }
    }

    /// No members, no offsets, nothing stored and nothing to store: forgetting
    /// the group changes nothing a client could observe.
    pub fn leaves_no_trace(&self) -> bool {
        let membership_gone = match &self.kind {
            GroupKind::Classic(classic) => classic.is_pristine(),
            GroupKind::Consumer(consumer) => consumer.members.is_empty(),
        };
        membership_gone && self.offsets.is_empty()
    }

    /// "classic" or "consumer" (KIP-848), as ListGroups reports it.
    pub fn type_name(&self) -> &'static str {
        match &self.kind {
            GroupKind::Classic(_) => "classic",
            GroupKind::Consumer(_) => "consumer",
        }
    }

    /// The protocol type ListGroups reports ("consumer" for a consumer group).
    pub fn protocol_type(&self) -> String {
        match &self.kind {
            GroupKind::Classic(classic) => classic.protocol_type.clone().unwrap_or_default(),
            GroupKind::Consumer(_) => "consumer".to_string(),
        }
    }

    pub fn state_name(&self) -> &'static str {
        match &self.kind {
            GroupKind::Classic(classic) => classic.state.name(),
            GroupKind::Consumer(consumer) => consumer.state_name(),
        }
    }

    /// Session, rebalance and revocation timeouts.
    pub fn tick(&mut self, now_ms: i64) {
        let (expired, what) = match &mut self.kind {
            GroupKind::Classic(classic) => (classic.tick(now_ms), "session timed out; member removed"),
            GroupKind::Consumer(consumer) => (consumer.tick(now_ms), "consumer group member timed out; removed"),
        };
        for member in expired {
            tracing::info!(group = %self.id, member = %member, "{what}");
        }
    }

    /// OffsetCommit's membership rule for either kind. Generation -1 commits
    /// are for groups that only store offsets here.
    pub fn check_commit(
        &mut self,
        member_id: &str,
        instance_id: Option<&str>,
        generation: i32,
        now_ms: i64,
    ) -> Result<(), ErrorCode> {
        match &mut self.kind {
            GroupKind::Classic(classic) => classic.check_commit(member_id, instance_id, generation, now_ms),
            GroupKind::Consumer(consumer) if !consumer.members.is_empty() => {
                consumer.check_commit(member_id, generation)
            }
            GroupKind::Consumer(_) if generation < 0 => Ok(()),
            GroupKind::Consumer(_) => Err(ErrorCode::UnknownMemberId),
        }
    }

    /// Validates a TxnOffsetCommit's member and generation (KIP-447 fences
    /// a zombie's): a stale member epoch is ILLEGAL_GENERATION here, as in Kafka.
    pub fn check_txn_commit(
        &self,
        member_id: &str,
        instance_id: Option<&str>,
        generation: i32,
    ) -> Result<(), ErrorCode> {
        match &self.kind {
            GroupKind::Classic(classic) => classic.check_txn_commit(member_id, instance_id, generation),
            GroupKind::Consumer(consumer) if generation < 0 && consumer.members.is_empty() => Ok(()),
            GroupKind::Consumer(consumer) => match consumer.check_commit(member_id, generation) {
                Err(ErrorCode::StaleMemberEpoch) => Err(ErrorCode::IllegalGeneration),
                other => other,
            },
        }
    }

    /// Whether the log holds a record of the classic group.
    pub fn has_stored_record(&self) -> bool {
        self.classic().is_some_and(|classic| classic.record_offset >= 0)
    }

    /// The classic group's record when the log holds one (a snapshot keeps it).
    pub fn stored_record(&self) -> Option<GroupValue> {
        self.has_stored_record()
            .then(|| self.classic().map(ClassicGroup::to_record))
            .flatten()
    }

    /// The classic group's record if it changed since it was last written;
    /// clears the flag.
    pub fn take_changed_record(&mut self) -> Option<GroupValue> {
        let classic = self.classic_mut()?;
        classic.take_dirty().then(|| classic.to_record())
    }

    /// Offsets expire once a group with a protocol has been empty this long:
    /// when it became empty, or `None` for a group that only stores offsets.
    pub fn empty_since_ms(&self) -> Option<i64> {
        let classic = self.classic()?;
        classic.protocol_type.is_some().then_some(classic.state_since_ms)
    }

    /// The topics the members subscribe to.
    pub fn subscribed_topics(&self) -> Vec<String> {
        match &self.kind {
            GroupKind::Classic(classic) => classic.subscribed_topics(),
            GroupKind::Consumer(consumer) => {
                let mut topics: Vec<String> = consumer
                    .members
                    .values()
                    .flat_map(|m| m.subscribed.iter().cloned())
                    .collect();
                topics.sort();
                topics.dedup();
                topics
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::group::classic::tests::LIMITS;

    #[test]
    fn an_empty_group_changes_kind_and_a_stored_classic_record_is_reported() {
        let mut g = Group::new("g".into(), LIMITS, 0);
        assert_eq!(g.type_name(), "classic");
        g.classic_mut().unwrap().record_offset = 4;
        let (_, converted) = g
            .consumer_for_heartbeat(|| ConsumerGroup::new(1000, 3))
            .unwrap_or_else(|_| panic!("an empty classic group converts"));
        assert!(converted.classic_record_may_exist, "its record must be deleted");
        assert_eq!((g.type_name(), g.state_name()), ("consumer", "Empty"));
        assert!(g.stored_record().is_none(), "a consumer group has no classic record");
        assert!(g.classic_for_join(1).is_ok(), "an empty consumer group turns classic");
        assert_eq!(g.type_name(), "classic");
        assert_eq!(g.check_commit("m", None, -1, 2), Ok(()), "offsets-only commits pass");
    }
}
