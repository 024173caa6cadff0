//! The cluster metadata the quorum replicates: records, and the image every
//! node builds by applying them in log order. Applying is deterministic, so
//! every node decides a record's outcome (accepted or refused, and why) the
//! same way, and the proposing node reports it to its caller.

use std::collections::BTreeMap;
use std::sync::Arc;

use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::cluster::metadata::{Features, PartitionAssignment, TopicMeta};
use crate::model::ErrorCode;

/// One change to the cluster metadata.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type")]
pub enum Record {
    /// A broker started (or restarted: a new incarnation) and listens here.
    RegisterBroker {
        broker_id: i32,
        host: String,
        port: u16,
        incarnation: Uuid,
    },
    /// Creates a topic (`expect_id` None: it must not exist) or replaces one
    /// (`expect_id` Some: it must still be that topic).
    PutTopic {
        topic: TopicMeta,
        expect_id: Option<Uuid>,
    },
    DeleteTopic {
        name: String,
        id: Uuid,
    },
    /// A broker stopped answering the quorum: it leads nothing and leaves
    /// every ISR. Its partitions get a new leader from the rest of the ISR,
    /// or go offline; with `unclean_default` (the cluster's
    /// `unclean.leader.election.enable`, which a topic may override) an
    /// out-of-sync live replica is elected instead, losing what it lacked.
    FenceBroker {
        broker_id: i32,
        unclean_default: bool,
    },
    /// A fenced broker is back: offline partitions it was last in sync for
    /// get it as leader (with unclean election allowed, any offline partition
    /// it holds a replica of).
    UnfenceBroker {
        broker_id: i32,
        unclean_default: bool,
    },
    /// Leadership goes back to the preferred (first) replica, which must be
    /// in the ISR and unfenced; applied only at `leader_epoch`.
    ElectPreferred {
        topic: String,
        id: Uuid,
        partition: i32,
        leader_epoch: i32,
    },
    /// An operator's unclean election (ElectLeaders, type UNCLEAN) for an
    /// offline partition: an in-sync live replica if any is left, otherwise
    /// any live replica, losing what it lacked. Applied only at `leader_epoch`.
    ElectUnclean {
        topic: String,
        id: Uuid,
        partition: i32,
        leader_epoch: i32,
    },
    /// Moves a partition to `target` replicas (AlterPartitionReassignments):
    /// the new ones join as followers and, once every target replica is in
    /// the ISR, the partition keeps only the target (leadership moves if its
    /// leader is leaving). `None` cancels an ongoing reassignment.
    Reassign {
        topic: String,
        id: Uuid,
        partition: i32,
        target: Option<Vec<i32>>,
    },
    /// A broker leaves the cluster for good (UnregisterBroker): it must hold
    /// no replica any more.
    UnregisterBroker {
        broker_id: i32,
    },
    /// A partition leader changes its ISR (Kafka's AlterPartition): applied
    /// only if `leader_epoch` is still the partition's epoch.
    AlterPartition {
        topic: String,
        id: Uuid,
        partition: i32,
        leader_epoch: i32,
        isr: Vec<i32>,
    },
    /// A feature's finalized level for the whole cluster (UpdateFeatures, as
    /// `kafka-features` sends it), set at `epoch_ms`; the controller checked
    /// the level against what every broker supports.
    SetFeatureLevel {
        feature: String,
        level: i16,
        epoch_ms: i64,
    },
}

/// Why a record was refused, with the Kafka error its proposer reports.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecordError {
    pub code: ErrorCode,
    pub message: String,
}

fn refuse(code: ErrorCode, message: String) -> Result<(), RecordError> {
    Err(RecordError { code, message })
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BrokerRegistration {
    pub broker_id: i32,
    pub host: String,
    pub port: u16,
    pub incarnation: Uuid,
}

#[derive(Debug, Clone, Default)]
pub struct ClusterImage {
    pub brokers: BTreeMap<i32, BrokerRegistration>,
    /// Brokers the quorum leader found unresponsive.
    pub fenced: std::collections::BTreeSet<i32>,
    pub topics: BTreeMap<String, Arc<TopicMeta>>,
    /// Finalized feature levels set by UpdateFeatures, and when last set.
    pub features: Features,
    /// The last log index applied.
    pub applied_index: u64,
}

impl ClusterImage {
    /// Partitions whose preferred replica is in sync, unfenced and not leading.
    pub fn preferred_elections(&self) -> Vec<Record> {
        let mut records = Vec::new();
        for topic in self.topics.values() {
            for (p, placement) in topic.assignment.iter().enumerate() {
                let preferred = placement.replicas[0];
                if placement.leader != preferred
                    && placement.isr.contains(&preferred)
                    && !self.fenced.contains(&preferred)
                {
                    records.push(Record::ElectPreferred {
                        topic: topic.name.clone(),
                        id: topic.id,
                        partition: p as i32,
                        leader_epoch: placement.leader_epoch,
                    });
                }
            }
        }
        records
    }

    /// Applies `change` to every partition; one that changed leader gets a
    /// new leader epoch. `change` sees the fenced brokers and whether unclean
    /// election is allowed for the partition's topic.
    fn reelect(
        &mut self,
        change: impl Fn(&mut crate::cluster::metadata::PartitionAssignment, &std::collections::BTreeSet<i32>, bool) -> bool,
        unclean_default: bool,
    ) {
        let fenced = self.fenced.clone();
        for topic in self.topics.values_mut() {
            let unclean = topic
                .configs
                .get("unclean.leader.election.enable")
                .map_or(unclean_default, |v| v.trim() == "true");
            let mut next = (**topic).clone();
            let mut changed = false;
            for placement in &mut next.assignment {
                let isr_before = placement.isr.clone();
                if change(placement, &fenced, unclean) {
                    placement.leader_epoch += 1;
                    changed = true;
                } else if placement.isr != isr_before {
                    changed = true;
                }
            }
            if changed {
                *topic = Arc::new(next);
            }
        }
    }

    /// Replaces `topic`'s metadata with a copy in which `change` has been
    /// applied to partition `partition`. The caller has checked both exist
    /// (`partition`) and that the record applies.
    fn replace_partition(&mut self, topic: String, partition: i32, change: impl FnOnce(&mut PartitionAssignment)) {
        let mut next = (*self.topics[&topic]).clone();
        change(&mut next.assignment[partition as usize]);
        self.topics.insert(topic, Arc::new(next));
    }

    /// A reassignment target: replicas listed once, on registered brokers.
    fn check_target(&self, target: &[i32]) -> Result<(), RecordError> {
        let unique: std::collections::BTreeSet<i32> = target.iter().copied().collect();
        if target.is_empty() || unique.len() != target.len() {
            return refuse(
                ErrorCode::InvalidReplicaAssignment,
                format!("replicas {target:?} must be non-empty and list each broker once"),
            );
        }
        if let Some(unknown) = target.iter().find(|b| !self.brokers.contains_key(b)) {
            return refuse(
                ErrorCode::InvalidReplicaAssignment,
                format!("broker {unknown} is not registered"),
            );
        }
        Ok(())
    }

    /// A partition of the topic that still has id `id`.
    fn partition(&self, topic: &str, id: Uuid, partition: i32) -> Result<&PartitionAssignment, RecordError> {
        let Some(current) = self.topics.get(topic).filter(|t| t.id == id) else {
            return Err(RecordError {
                code: ErrorCode::UnknownTopicOrPartition,
                message: format!("topic '{topic}' does not exist"),
            });
        };
        match usize::try_from(partition).ok().and_then(|p| current.assignment.get(p)) {
            Some(placement) => Ok(placement),
            None => Err(RecordError {
                code: ErrorCode::UnknownTopicOrPartition,
                message: format!("{topic}-{partition} does not exist"),
            }),
        }
    }

    /// Applies one committed record; an error says why it was refused.
    pub fn apply(&mut self, record: Record) -> Result<(), RecordError> {
        match record {
            Record::SetFeatureLevel {
                feature,
                level,
                epoch_ms,
            } => {
                self.features.levels.insert(feature, level);
                self.features.epoch_ms = self.features.epoch_ms.max(epoch_ms);
                Ok(())
            }
            Record::RegisterBroker {
                broker_id,
                host,
                port,
                incarnation,
            } => {
                if broker_id < 0 {
                    return refuse(ErrorCode::InvalidRequest, format!("broker id {broker_id} is negative"));
                }
                self.brokers.insert(
                    broker_id,
                    BrokerRegistration {
                        broker_id,
                        host,
                        port,
                        incarnation,
                    },
                );
                Ok(())
            }
            Record::PutTopic { topic, expect_id } => {
                let existing = self.topics.get(&topic.name).map(|t| t.id);
                match (expect_id, existing) {
                    (None, Some(_)) => {
                        return refuse(
                            ErrorCode::TopicAlreadyExists,
                            format!("topic '{}' already exists", topic.name),
                        );
                    }
                    (Some(id), found) if found != Some(id) => {
                        return refuse(
                            ErrorCode::UnknownTopicOrPartition,
                            format!("topic '{}' was deleted or replaced meanwhile", topic.name),
                        );
                    }
                    _ => {}
                }
                assert!(
                    topic.assignment.is_empty() || topic.assignment.len() == topic.partitions as usize,
                    "a cluster topic places every partition"
                );
                self.topics.insert(topic.name.clone(), Arc::new(topic));
                Ok(())
            }
            Record::FenceBroker {
                broker_id,
                unclean_default,
            } => {
                self.fenced.insert(broker_id);
                self.reelect(
                    |placement, fenced, unclean| {
                        placement.isr.retain(|b| *b != broker_id);
                        if placement.leader != broker_id {
                            return false;
                        }
                        let in_sync = placement
                            .replicas
                            .iter()
                            .find(|b| placement.isr.contains(b) && !fenced.contains(b));
                        let any_live = placement.replicas.iter().find(|b| !fenced.contains(b));
                        placement.leader = match (in_sync, any_live) {
                            (Some(b), _) => *b,
                            (None, Some(b)) if unclean => {
                                tracing::warn!(
                                    leader = b,
                                    "unclean leader election: records only the old ISR had are lost"
                                );
                                placement.isr = vec![*b];
                                *b
                            }
                            _ => -1,
                        };
                        if placement.leader < 0 {
                            // Offline: remember who was last in sync.
                            placement.isr = vec![broker_id];
                        }
                        true
                    },
                    unclean_default,
                );
                Ok(())
            }
            Record::UnfenceBroker {
                broker_id,
                unclean_default,
            } => {
                self.fenced.remove(&broker_id);
                self.reelect(
                    |placement, _, unclean| {
                        let in_sync = placement.isr.contains(&broker_id);
                        let back =
                            placement.leader < 0 && (in_sync || (unclean && placement.replicas.contains(&broker_id)));
                        if back {
                            if !in_sync {
                                tracing::warn!(
                                    leader = broker_id,
                                    "unclean leader election: records only the old ISR had are lost"
                                );
                                placement.isr = vec![broker_id];
                            }
                            placement.leader = broker_id;
                        }
                        back
                    },
                    unclean_default,
                );
                Ok(())
            }
            Record::ElectPreferred {
                topic,
                id,
                partition,
                leader_epoch,
            } => {
                let placement = self.partition(&topic, id, partition)?;
                let preferred = placement.replicas[0];
                if placement.leader_epoch != leader_epoch
                    || placement.leader == preferred
                    || !placement.isr.contains(&preferred)
                    || self.fenced.contains(&preferred)
                {
                    return refuse(
                        ErrorCode::PreferredLeaderNotAvailable,
                        format!("{topic}-{partition} cannot move to its preferred leader now"),
                    );
                }
                self.replace_partition(topic, partition, |moved| {
                    moved.leader = preferred;
                    moved.leader_epoch += 1;
                });
                Ok(())
            }
            Record::ElectUnclean {
                topic,
                id,
                partition,
                leader_epoch,
            } => {
                let placement = self.partition(&topic, id, partition)?;
                if placement.leader >= 0 || placement.leader_epoch != leader_epoch {
                    return refuse(
                        ErrorCode::ElectionNotNeeded,
                        format!("{topic}-{partition} has a leader"),
                    );
                }
                let live = |b: &&i32| !self.fenced.contains(b) && self.brokers.contains_key(b);
                let in_sync = placement
                    .replicas
                    .iter()
                    .filter(live)
                    .find(|b| placement.isr.contains(b));
                let Some(&leader) = in_sync.or_else(|| placement.replicas.iter().find(live)) else {
                    return refuse(
                        ErrorCode::EligibleLeadersNotAvailable,
                        format!("no replica of {topic}-{partition} is alive"),
                    );
                };
                if !placement.isr.contains(&leader) {
                    tracing::warn!(
                        partition = %format!("{topic}-{partition}"),
                        leader,
                        "unclean leader election by the operator: records only the old ISR had are lost"
                    );
                }
                self.replace_partition(topic, partition, |moved| {
                    if !moved.isr.contains(&leader) {
                        moved.isr = vec![leader];
                    }
                    moved.leader = leader;
                    moved.leader_epoch += 1;
                });
                Ok(())
            }
            Record::AlterPartition {
                topic,
                id,
                partition,
                leader_epoch,
                isr,
            } => {
                let placement = self.partition(&topic, id, partition)?;
                if placement.leader_epoch != leader_epoch {
                    return refuse(
                        ErrorCode::NotLeaderOrFollower,
                        format!(
                            "{topic}-{partition} is at leader epoch {}, not {leader_epoch}",
                            placement.leader_epoch
                        ),
                    );
                }
                if !isr.contains(&placement.leader) || isr.iter().any(|b| !placement.replicas.contains(b)) {
                    return refuse(
                        ErrorCode::InvalidRequest,
                        format!("ISR {isr:?} of {topic}-{partition} is not valid"),
                    );
                }
                self.replace_partition(topic, partition, |changed| {
                    changed.isr = isr;
                    complete_reassignment(changed);
                });
                Ok(())
            }
            Record::Reassign {
                topic,
                id,
                partition,
                target,
            } => {
                let placement = self.partition(&topic, id, partition)?;
                match &target {
                    Some(target) => self.check_target(target)?,
                    None if !placement.is_reassigning() => {
                        return refuse(
                            ErrorCode::NoReassignmentInProgress,
                            format!("{topic}-{partition} is not being reassigned"),
                        );
                    }
                    None => {}
                }
                self.replace_partition(topic, partition, |moving| match target {
                    Some(target) => {
                        start_reassignment(moving, target);
                        complete_reassignment(moving);
                    }
                    None => cancel_reassignment(moving),
                });
                Ok(())
            }
            Record::UnregisterBroker { broker_id } => {
                if !self.brokers.contains_key(&broker_id) {
                    return refuse(
                        ErrorCode::BrokerIdNotRegistered,
                        format!("broker {broker_id} is not registered"),
                    );
                }
                let hosted = self
                    .topics
                    .values()
                    .flat_map(|t| t.assignment.iter())
                    .filter(|p| p.replicas.contains(&broker_id))
                    .count();
                if hosted > 0 {
                    return refuse(
                        ErrorCode::InvalidRequest,
                        format!("broker {broker_id} still holds {hosted} replica(s); reassign them first"),
                    );
                }
                self.brokers.remove(&broker_id);
                self.fenced.remove(&broker_id);
                Ok(())
            }
            Record::DeleteTopic { name, id } => {
                if self.topics.get(&name).map(|t| t.id) != Some(id) {
                    return refuse(
                        ErrorCode::UnknownTopicOrPartition,
                        format!("topic '{name}' does not exist"),
                    );
                }
                self.topics.remove(&name);
                Ok(())
            }
        }
    }
}

/// Begins moving `p` to `target`, from its replicas before any reassignment
/// in progress: `target` first (its first replica becomes the preferred
/// leader), then the replicas that will leave.
fn start_reassignment(p: &mut PartitionAssignment, target: Vec<i32>) {
    let original: Vec<i32> = p.replicas.iter().copied().filter(|b| !p.adding.contains(b)).collect();
    p.adding = target.iter().copied().filter(|b| !original.contains(b)).collect();
    p.removing = original.iter().copied().filter(|b| !target.contains(b)).collect();
    p.replicas = target;
    p.replicas.extend(p.removing.iter().copied());
    let replicas = &p.replicas;
    p.isr.retain(|b| replicas.contains(b));
}

/// Completes `p`'s reassignment once every target replica is in the ISR:
/// the leaving replicas go, and if the leader was one of them the first
/// in-sync target replica leads, in a new epoch.
fn complete_reassignment(p: &mut PartitionAssignment) {
    let target = p.target_replicas();
    if !p.is_reassigning() || !target.iter().all(|b| p.isr.contains(b)) {
        return;
    }
    p.isr.retain(|b| target.contains(b));
    p.adding.clear();
    p.removing.clear();
    if !target.contains(&p.leader) && p.leader >= 0 {
        p.leader = target[0];
        p.leader_epoch += 1;
    }
    p.replicas = target;
}

/// Returns `p` to the replicas it had before the reassignment began.
fn cancel_reassignment(p: &mut PartitionAssignment) {
    let adding = std::mem::take(&mut p.adding);
    p.removing.clear();
    p.replicas.retain(|b| !adding.contains(b));
    p.isr.retain(|b| !adding.contains(b));
    if adding.contains(&p.leader) {
        p.leader = p.isr.first().copied().unwrap_or(-1);
        p.leader_epoch += 1;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_broker_registers_and_reregisters_with_a_new_address() {
        let mut image = ClusterImage::default();
        let register = |port| Record::RegisterBroker {
            broker_id: 2,
            host: "127.0.0.1".into(),
            port,
            incarnation: Uuid::new_v4(),
        };
        image.apply(register(9000)).unwrap();
        image.apply(register(9001)).unwrap();
        assert_eq!(image.brokers.len(), 1);
        assert_eq!(image.brokers[&2].port, 9001);
        let bad = Record::RegisterBroker {
            broker_id: -1,
            host: "h".into(),
            port: 1,
            incarnation: Uuid::nil(),
        };
        assert!(image.apply(bad).is_err());
        let json = serde_json::to_string(&register(1)).unwrap();
        assert!(json.contains("\"type\":\"RegisterBroker\""), "{json}");
    }

    #[test]
    fn topics_are_created_once_replaced_only_as_expected_and_deleted_by_id() {
        let mut image = ClusterImage::default();
        let topic = TopicMeta {
            name: "t".into(),
            id: Uuid::new_v4(),
            partitions: 1,
            ..TopicMeta::default()
        };
        let id = topic.id;
        image
            .apply(Record::PutTopic {
                topic: topic.clone(),
                expect_id: None,
            })
            .unwrap();
        let again = image.apply(Record::PutTopic {
            topic: topic.clone(),
            expect_id: None,
        });
        assert_eq!(again.unwrap_err().code, ErrorCode::TopicAlreadyExists);
        let grown = TopicMeta {
            partitions: 2,
            ..topic.clone()
        };
        image
            .apply(Record::PutTopic {
                topic: grown,
                expect_id: Some(id),
            })
            .unwrap();
        assert_eq!(image.topics["t"].partitions, 2);
        let stale = image.apply(Record::PutTopic {
            topic: topic.clone(),
            expect_id: Some(Uuid::new_v4()),
        });
        assert_eq!(stale.unwrap_err().code, ErrorCode::UnknownTopicOrPartition);
        assert!(
            image
                .apply(Record::DeleteTopic {
                    name: "t".into(),
                    id: Uuid::new_v4()
                })
                .is_err()
        );
        image.apply(Record::DeleteTopic { name: "t".into(), id }).unwrap();
        assert!(image.topics.is_empty());
    }

    #[test]
    fn a_reassignment_adds_then_completes_once_the_target_is_in_sync() {
        let mut p = PartitionAssignment {
            replicas: vec![1, 2],
            isr: vec![1, 2],
            leader: 1,
            leader_epoch: 4,
            adding: vec![],
            removing: vec![],
        };
        start_reassignment(&mut p, vec![3, 2]);
        assert_eq!(
            (p.replicas.clone(), p.adding.clone(), p.removing.clone()),
            (vec![3, 2, 1], vec![3], vec![1])
        );
        complete_reassignment(&mut p);
        assert!(p.is_reassigning(), "broker 3 has not caught up yet");
        p.isr = vec![1, 2, 3];
        complete_reassignment(&mut p);
        assert!(!p.is_reassigning());
        assert_eq!((p.replicas.clone(), p.isr.clone()), (vec![3, 2], vec![2, 3]));
        assert_eq!(
            (p.leader, p.leader_epoch),
            (3, 5),
            "the leaving leader hands over in a new epoch"
        );

        start_reassignment(&mut p, vec![3, 2, 1]);
        cancel_reassignment(&mut p);
        assert_eq!(
            (p.replicas.clone(), p.isr.clone(), p.leader),
            (vec![3, 2], vec![2, 3], 3)
        );
        assert!(!p.is_reassigning());
    }
}
