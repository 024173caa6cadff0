//! The cluster metadata the quorum replicates: records, and the image every
//! node builds by applying them in log order. Applying is deterministic, so
//! every node decides a record's outcome (accepted or refused, and why) the
//! same way, and the proposing node reports it to its caller.

use std::collections::BTreeMap;
use std::sync::Arc;

use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::cluster::metadata::TopicMeta;
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
    /// A partition leader changes its ISR (Kafka's AlterPartition): applied
    /// only if `leader_epoch` is still the partition's epoch.
    AlterPartition {
        topic: String,
        id: Uuid,
        partition: i32,
        leader_epoch: i32,
        isr: Vec<i32>,
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
    pub topics: BTreeMap<String, Arc<TopicMeta>>,
    /// The last log index applied.
    pub applied_index: u64,
}

impl ClusterImage {
    /// Applies one committed record; an error says why it was refused.
    pub fn apply(&mut self, record: Record) -> Result<(), RecordError> {
        match record {
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
            Record::AlterPartition {
                topic,
                id,
                partition,
                leader_epoch,
                isr,
            } => {
                let Some(current) = self.topics.get(&topic).filter(|t| t.id == id) else {
                    return refuse(
                        ErrorCode::UnknownTopicOrPartition,
                        format!("topic '{topic}' does not exist"),
                    );
                };
                let Some(placement) = usize::try_from(partition).ok().and_then(|p| current.assignment.get(p)) else {
                    return refuse(
                        ErrorCode::UnknownTopicOrPartition,
                        format!("{topic}-{partition} does not exist"),
                    );
                };
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
                let mut next = (**current).clone();
                next.assignment[partition as usize].isr = isr;
                self.topics.insert(topic, Arc::new(next));
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
}
