//! KIP-848 consumer groups: the broker computes the assignment ("uniform" or
//! "range") and members converge on it through ConsumerGroupHeartbeat. Pure
//! state, like `state`: callers pass the time and the topics that exist.
//!
//! The group has an epoch, bumped by every membership or subscription change;
//! a new epoch gets a new target assignment. Each member moves toward its
//! target on its own: first it gives up (revokes) partitions it should no
//! longer own, then it takes the new ones, but only once no other member still
//! owns them. A member's epoch reaches the target epoch when it has nothing
//! left to revoke. No partition is ever owned by two members at once.

use std::collections::{BTreeMap, BTreeSet};

use crate::model::ErrorCode;

/// Topic name → partitions.
pub type Assignment = BTreeMap<String, BTreeSet<i32>>;

pub const ASSIGNORS: &[&str] = &["uniform", "range"];
/// Epoch -1 in a request: the member leaves. -2: a static member leaves for now.
const LEAVE_EPOCH: i32 = -1;
const STATIC_LEAVE_EPOCH: i32 = -2;

#[derive(Debug, Clone)]
pub struct HeartbeatRequest {
    pub member_id: String,
    pub member_epoch: i32,
    pub instance_id: Option<String>,
    pub rack_id: Option<String>,
    pub client_id: String,
    pub client_host: String,
    pub rebalance_timeout_ms: i32,
    pub subscribed_topics: Option<Vec<String>>,
    pub server_assignor: Option<String>,
    /// What the member says it owns now (`None`: unchanged since the last heartbeat).
    pub owned: Option<Assignment>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HeartbeatResponse {
    pub member_id: String,
    pub member_epoch: i32,
    /// The member's assignment, when it differs from what it was last sent.
    pub assignment: Option<Assignment>,
}

#[derive(Debug, Clone)]
pub struct Member {
    pub id: String,
    pub instance_id: Option<String>,
    pub rack_id: Option<String>,
    pub client_id: String,
    pub client_host: String,
    pub epoch: i32,
    previous_epoch: i32,
    pub subscribed: Vec<String>,
    rebalance_timeout_ms: i32,
    /// Partitions the member owns (or is being given).
    pub assigned: Assignment,
    /// Partitions taken away that the member has not yet confirmed releasing.
    pending_revocation: Assignment,
    revocation_deadline_ms: Option<i64>,
    session_deadline_ms: i64,
    last_sent: Option<Assignment>,
}

pub struct ConsumerGroup {
    pub epoch: i32,
    pub assignment_epoch: i32,
    pub assignor: String,
    pub members: BTreeMap<String, Member>,
    pub target: BTreeMap<String, Assignment>,
    /// Partition counts of the subscribed topics the target was computed for.
    topics_seen: BTreeMap<String, i32>,
    session_timeout_ms: i64,
    max_size: usize,
}

fn count(a: &Assignment) -> usize {
    a.values().map(BTreeSet::len).sum()
}

fn minus(a: &Assignment, b: &Assignment) -> Assignment {
    a.iter()
        .map(|(t, ps)| {
            let other = b.get(t);
            let left: BTreeSet<i32> = ps
                .iter()
                .filter(|p| !other.is_some_and(|o| o.contains(p)))
                .copied()
                .collect();
            (t.clone(), left)
        })
        .filter(|(_, ps)| !ps.is_empty())
        .collect()
}

fn union(a: &mut Assignment, b: &Assignment) {
    for (t, ps) in b {
        a.entry(t.clone()).or_default().extend(ps);
    }
}

fn owns(a: &Assignment, topic: &str, partition: i32) -> bool {
    a.get(topic).is_some_and(|ps| ps.contains(&partition))
}

impl ConsumerGroup {
    pub fn new(session_timeout_ms: i64, max_size: usize) -> Self {
        Self {
            epoch: 0,
            assignment_epoch: 0,
            assignor: ASSIGNORS[0].to_string(),
            members: BTreeMap::new(),
            target: BTreeMap::new(),
            topics_seen: BTreeMap::new(),
            session_timeout_ms,
            max_size,
        }
    }

    /// Kafka's consumer group states.
    pub fn state_name(&self) -> &'static str {
        if self.members.is_empty() {
            "Empty"
        } else if self.assignment_epoch < self.epoch {
            "Assigning"
        } else if self.members.values().any(|m| m.epoch != self.assignment_epoch) {
            "Reconciling"
        } else {
            "Stable"
        }
    }

    /// One ConsumerGroupHeartbeat. `partitions_of` gives a topic's partition count, if it exists.
    pub fn heartbeat(
        &mut self,
        request: HeartbeatRequest,
        partitions_of: &dyn Fn(&str) -> Option<i32>,
        now_ms: i64,
    ) -> Result<HeartbeatResponse, (ErrorCode, String)> {
        if let Some(assignor) = &request.server_assignor
            && !ASSIGNORS.contains(&assignor.as_str())
        {
            return Err((
                ErrorCode::UnsupportedAssignor,
                format!("assignor '{assignor}' is not supported"),
            ));
        }
        match request.member_epoch {
            0 => self.join(&request, now_ms)?,
            LEAVE_EPOCH | STATIC_LEAVE_EPOCH => return Ok(self.leave(&request)),
            epoch => self.check_epoch(&request.member_id, epoch, request.owned.as_ref())?,
        }
        let id = request.member_id.clone();
        let member = self.members.get_mut(&id).expect("joined or checked");
        member.session_deadline_ms = now_ms + self.session_timeout_ms;
        if request.rebalance_timeout_ms > 0 {
            member.rebalance_timeout_ms = request.rebalance_timeout_ms;
        }
        if let Some(assignor) = request.server_assignor {
            self.assignor = assignor;
        }
        let member = self.members.get_mut(&id).expect("member exists");
        if let Some(subscribed) = request.subscribed_topics {
            let mut subscribed = subscribed;
            subscribed.sort();
            subscribed.dedup();
            if subscribed != member.subscribed {
                member.subscribed = subscribed;
                self.epoch += 1;
            }
        }
        if let Some(owned) = &request.owned {
            let member = self.members.get_mut(&id).expect("member exists");
            member.pending_revocation = member
                .pending_revocation
                .iter()
                .map(|(t, ps)| (t.clone(), ps.iter().filter(|p| owns(owned, t, **p)).copied().collect()))
                .filter(|(_, ps): &(String, BTreeSet<i32>)| !ps.is_empty())
                .collect();
        }
        self.refresh_target(partitions_of);
        self.reconcile(&id, now_ms);
        let member = self.members.get_mut(&id).expect("member exists");
        let assignment = (member.last_sent.as_ref() != Some(&member.assigned) || request.member_epoch == 0)
            .then(|| member.assigned.clone());
        if assignment.is_some() {
            member.last_sent = Some(member.assigned.clone());
        }
        Ok(HeartbeatResponse {
            member_id: id,
            member_epoch: member.epoch,
            assignment,
        })
    }

    fn join(&mut self, request: &HeartbeatRequest, now_ms: i64) -> Result<(), (ErrorCode, String)> {
        if request.member_id.is_empty() {
            return Err((
                ErrorCode::InvalidRequest,
                "a joining member must send its member id".into(),
            ));
        }
        let Some(subscribed) = &request.subscribed_topics else {
            return Err((
                ErrorCode::InvalidRequest,
                "a joining member must send its subscription".into(),
            ));
        };
        let mut previous = self.members.remove(&request.member_id);
        if let Some(instance) = &request.instance_id
            && let Some(old_id) = self
                .members
                .values()
                .find(|m| m.instance_id.as_ref() == Some(instance))
                .map(|m| m.id.clone())
        {
            if self.members[&old_id].epoch != STATIC_LEAVE_EPOCH {
                return Err((
                    ErrorCode::UnreleasedInstanceId,
                    format!("instance '{instance}' is still in use"),
                ));
            }
            previous = self.members.remove(&old_id);
        }
        if previous.is_none() && self.members.len() >= self.max_size {
            return Err((ErrorCode::GroupMaxSizeReached, "the group is full".into()));
        }
        let mut subscribed = subscribed.clone();
        subscribed.sort();
        subscribed.dedup();
        // A static member coming back keeps what it had; anyone else starts from nothing.
        let keep = previous.filter(|p| p.instance_id.is_some() && p.instance_id == request.instance_id);
        let (epoch, assigned) = match &keep {
            Some(p) => (p.previous_epoch.max(0), p.assigned.clone()),
            None => (0, Assignment::new()),
        };
        if let Some(old) = keep.as_ref().filter(|p| p.id != request.member_id)
            && let Some(target) = self.target.remove(&old.id)
        {
            self.target.insert(request.member_id.clone(), target);
        }
        self.members.insert(
            request.member_id.clone(),
            Member {
                id: request.member_id.clone(),
                instance_id: request.instance_id.clone(),
                rack_id: request.rack_id.clone(),
                client_id: request.client_id.clone(),
                client_host: request.client_host.clone(),
                epoch,
                previous_epoch: epoch,
                subscribed,
                rebalance_timeout_ms: request.rebalance_timeout_ms.max(0),
                assigned,
                pending_revocation: Assignment::new(),
                revocation_deadline_ms: None,
                session_deadline_ms: now_ms + self.session_timeout_ms,
                last_sent: None,
            },
        );
        if keep.is_none() {
            self.epoch += 1;
        }
        Ok(())
    }

    fn leave(&mut self, request: &HeartbeatRequest) -> HeartbeatResponse {
        if request.member_epoch == STATIC_LEAVE_EPOCH {
            if let Some(m) = self.members.get_mut(&request.member_id) {
                m.previous_epoch = m.epoch;
                m.epoch = STATIC_LEAVE_EPOCH;
            }
        } else {
            self.remove(&request.member_id);
        }
        HeartbeatResponse {
            member_id: request.member_id.clone(),
            member_epoch: request.member_epoch,
            assignment: None,
        }
    }

    /// A member in the request must exist and send its current epoch (or the
    /// previous one, when it owns nothing it should not: a lost response).
    fn check_epoch(&self, member_id: &str, epoch: i32, owned: Option<&Assignment>) -> Result<(), (ErrorCode, String)> {
        let member = self.members.get(member_id).ok_or_else(|| {
            (
                ErrorCode::UnknownMemberId,
                format!("member '{member_id}' is not in the group"),
            )
        })?;
        let lost_response =
            epoch == member.previous_epoch && owned.is_some_and(|o| minus(o, &member.assigned).is_empty());
        if epoch != member.epoch && !lost_response {
            return Err((
                ErrorCode::FencedMemberEpoch,
                format!("epoch {epoch} is not the member's epoch {}", member.epoch),
            ));
        }
        Ok(())
    }

    /// OffsetCommit's rule for consumer groups: the member's current epoch.
    pub fn check_commit(&self, member_id: &str, epoch: i32) -> Result<(), ErrorCode> {
        let member = self.members.get(member_id).ok_or(ErrorCode::UnknownMemberId)?;
        match epoch.cmp(&member.epoch) {
            std::cmp::Ordering::Equal => Ok(()),
            std::cmp::Ordering::Less => Err(ErrorCode::StaleMemberEpoch),
            std::cmp::Ordering::Greater => Err(ErrorCode::FencedMemberEpoch),
        }
    }

    pub fn remove(&mut self, member_id: &str) {
        if self.members.remove(member_id).is_some() {
            self.target.remove(member_id);
            self.epoch += 1;
        }
    }

    /// Session and revocation timeouts: an expired member is removed, one that
    /// did not revoke in time is fenced (removed, and must rejoin).
    pub fn tick(&mut self, now_ms: i64) -> Vec<String> {
        let expired: Vec<String> = self
            .members
            .values()
            .filter(|m| now_ms > m.session_deadline_ms || m.revocation_deadline_ms.is_some_and(|d| now_ms > d))
            .map(|m| m.id.clone())
            .collect();
        for id in &expired {
            self.remove(id);
        }
        expired
    }

    /// Recomputes the target assignment when the group epoch moved on or a
    /// subscribed topic changed its partition count.
    fn refresh_target(&mut self, partitions_of: &dyn Fn(&str) -> Option<i32>) {
        let subscribed: BTreeSet<&String> = self.members.values().flat_map(|m| &m.subscribed).collect();
        let seen: BTreeMap<String, i32> = subscribed
            .into_iter()
            .filter_map(|t| partitions_of(t).map(|n| (t.clone(), n)))
            .collect();
        if seen != self.topics_seen {
            self.topics_seen = seen;
            self.epoch += 1;
        }
        if self.assignment_epoch == self.epoch {
            return;
        }
        self.target = if self.assignor == "range" {
            self.assign_range()
        } else {
            self.assign_uniform()
        };
        self.assignment_epoch = self.epoch;
    }

    fn eligible(&self, topic: &str) -> Vec<&String> {
        self.members
            .values()
            .filter(|m| m.subscribed.iter().any(|t| t == topic))
            .map(|m| &m.id)
            .collect()
    }

    /// Kafka's server-side range: per topic, contiguous ranges over the sorted members.
    fn assign_range(&self) -> BTreeMap<String, Assignment> {
        let mut target: BTreeMap<String, Assignment> =
            self.members.keys().map(|id| (id.clone(), Assignment::new())).collect();
        for (topic, partitions) in &self.topics_seen {
            let members = self.eligible(topic);
            if members.is_empty() {
                continue;
            }
            let (each, extra) = (
                *partitions as usize / members.len(),
                *partitions as usize % members.len(),
            );
            let mut next = 0;
            for (i, m) in members.iter().enumerate() {
                let n = each + usize::from(i < extra);
                let range: BTreeSet<i32> = (next..next + n as i32).collect();
                next += n as i32;
                if !range.is_empty() {
                    target.get_mut(*m).expect("member").insert(topic.clone(), range);
                }
            }
        }
        target
    }

    /// Balanced and sticky: previous targets are kept up to each member's fair
    /// share, the rest go to the least loaded eligible member.
    fn assign_uniform(&self) -> BTreeMap<String, Assignment> {
        let mut target: BTreeMap<String, Assignment> =
            self.members.keys().map(|id| (id.clone(), Assignment::new())).collect();
        let total: usize = self
            .topics_seen
            .iter()
            .filter(|(t, _)| !self.eligible(t).is_empty())
            .map(|(_, n)| *n as usize)
            .sum();
        let share = total.div_ceil(self.members.len().max(1));
        let mut unassigned = Vec::new();
        for (topic, partitions) in &self.topics_seen {
            for p in 0..*partitions {
                let previous = self
                    .target
                    .iter()
                    .find(|(_, a)| owns(a, topic, p))
                    .map(|(id, _)| id.clone())
                    .filter(|id| self.members.get(id).is_some_and(|m| m.subscribed.contains(topic)));
                match previous {
                    Some(id) if count(&target[&id]) < share => {
                        target
                            .get_mut(&id)
                            .expect("member")
                            .entry(topic.clone())
                            .or_default()
                            .insert(p);
                    }
                    _ => unassigned.push((topic.clone(), p)),
                }
            }
        }
        for (topic, p) in unassigned {
            let least = self
                .eligible(&topic)
                .into_iter()
                .min_by_key(|id| (count(&target[*id]), (*id).clone()))
                .cloned();
            if let Some(id) = least {
                target.get_mut(&id).expect("member").entry(topic).or_default().insert(p);
            }
        }
        target
    }

    /// Moves one member toward its target: revoke first, then take only what
    /// no other member still owns.
    fn reconcile(&mut self, member_id: &str, now_ms: i64) {
        let target = self.target.get(member_id).cloned().unwrap_or_default();
        let owned_by_others: Assignment = {
            let mut all = Assignment::new();
            for m in self.members.values().filter(|m| m.id != member_id) {
                union(&mut all, &m.assigned);
                union(&mut all, &m.pending_revocation);
            }
            all
        };
        let assignment_epoch = self.assignment_epoch;
        let member = self.members.get_mut(member_id).expect("member exists");
        if member.epoch == STATIC_LEAVE_EPOCH || !member.pending_revocation.is_empty() {
            return;
        }
        member.revocation_deadline_ms = None;
        let to_revoke = minus(&member.assigned, &target);
        if !to_revoke.is_empty() {
            member.assigned = minus(&member.assigned, &to_revoke);
            member.pending_revocation = to_revoke;
            member.revocation_deadline_ms = Some(now_ms + member.rebalance_timeout_ms as i64);
            return;
        }
        let free = minus(&minus(&target, &member.assigned), &owned_by_others);
        union(&mut member.assigned, &free);
        if member.epoch != assignment_epoch {
            member.previous_epoch = member.epoch;
            member.epoch = assignment_epoch;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lookup(topics: &BTreeMap<String, i32>) -> impl Fn(&str) -> Option<i32> + '_ {
        |t| topics.get(t).copied()
    }

    fn join(g: &mut ConsumerGroup, id: &str, topics: &BTreeMap<String, i32>, now: i64) -> HeartbeatResponse {
        g.heartbeat(request(id, 0, None), &lookup(topics), now).expect("joined")
    }

    fn request(id: &str, epoch: i32, owned: Option<Assignment>) -> HeartbeatRequest {
        HeartbeatRequest {
            member_id: id.to_string(),
            member_epoch: epoch,
            instance_id: None,
            rack_id: None,
            client_id: "c".into(),
            client_host: "/127.0.0.1".into(),
            rebalance_timeout_ms: 1000,
            subscribed_topics: (epoch == 0).then(|| vec!["t".to_string()]),
            server_assignor: None,
            owned,
        }
    }

    fn partitions(a: &Assignment) -> Vec<i32> {
        a.values().flatten().copied().collect()
    }

    #[test]
    fn members_converge_without_ever_sharing_a_partition() {
        let topics = BTreeMap::from([("t".to_string(), 6)]);
        let mut g = ConsumerGroup::new(10_000, 10);
        let a = join(&mut g, "a", &topics, 0);
        assert_eq!(partitions(a.assignment.as_ref().unwrap()), vec![0, 1, 2, 3, 4, 5]);
        assert_eq!(a.member_epoch, 2, "join and the topic's appearance each bump the epoch");
        let b = join(&mut g, "b", &topics, 0);
        assert_eq!(
            partitions(b.assignment.as_ref().unwrap()),
            Vec::<i32>::new(),
            "a still owns everything"
        );
        // a's next heartbeat revokes half of its partitions; it keeps its epoch until it confirms.
        let a2 = g
            .heartbeat(request("a", a.member_epoch, None), &lookup(&topics), 10)
            .unwrap();
        let kept = a2.assignment.clone().unwrap();
        assert_eq!(count(&kept), 3);
        assert_eq!(a2.member_epoch, a.member_epoch);
        assert_eq!(g.state_name(), "Reconciling");
        // b gets nothing until a confirms.
        let b2 = g
            .heartbeat(request("b", b.member_epoch, None), &lookup(&topics), 10)
            .unwrap();
        assert!(b2.assignment.is_none());
        let a3 = g
            .heartbeat(request("a", a2.member_epoch, Some(kept.clone())), &lookup(&topics), 20)
            .unwrap();
        assert_eq!(a3.member_epoch, g.assignment_epoch);
        let b3 = g
            .heartbeat(request("b", b2.member_epoch, None), &lookup(&topics), 20)
            .unwrap();
        let given = b3.assignment.unwrap();
        assert_eq!(count(&given), 3);
        assert!(minus(&given, &kept) == given, "disjoint");
        assert_eq!(g.state_name(), "Stable");
        // Fencing: an old epoch is refused; a leave hands the partitions back.
        let fenced = g
            .heartbeat(request("b", b3.member_epoch + 5, None), &lookup(&topics), 30)
            .unwrap_err();
        assert_eq!(fenced.0, ErrorCode::FencedMemberEpoch);
        g.heartbeat(request("b", LEAVE_EPOCH, None), &lookup(&topics), 30)
            .unwrap();
        let a4 = g
            .heartbeat(request("a", a3.member_epoch, None), &lookup(&topics), 40)
            .unwrap();
        assert_eq!(partitions(a4.assignment.as_ref().unwrap()), vec![0, 1, 2, 3, 4, 5]);
    }

    #[test]
    fn silent_members_expire_and_range_assigns_contiguous_ranges() {
        let topics = BTreeMap::from([("t".to_string(), 5)]);
        let mut g = ConsumerGroup::new(1000, 10);
        let mut r = request("a", 0, None);
        r.server_assignor = Some("range".into());
        g.heartbeat(r, &lookup(&topics), 0).unwrap();
        join(&mut g, "b", &topics, 500);
        g.refresh_target(&lookup(&topics));
        assert_eq!(partitions(&g.target["a"]), vec![0, 1, 2]);
        assert_eq!(partitions(&g.target["b"]), vec![3, 4]);
        assert_eq!(g.tick(1200), vec!["a".to_string()]);
        assert_eq!(g.members.len(), 1);
        let mut bad = request("c", 0, None);
        bad.server_assignor = Some("sticky".into());
        assert_eq!(
            g.heartbeat(bad, &lookup(&topics), 1200).unwrap_err().0,
            ErrorCode::UnsupportedAssignor
        );
    }
}
