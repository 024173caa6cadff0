//! The cluster metadata the quorum replicates: records, and the image every
//! node builds by applying them in log order. Applying is deterministic, so
//! every node decides a record's outcome (accepted or refused, and why) the
//! same way, and the proposing node reports it to its caller.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use uuid::Uuid;

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
    /// The last log index applied.
    pub applied_index: u64,
}

impl ClusterImage {
    /// Applies one committed record; an error says why it was refused.
    pub fn apply(&mut self, record: Record) -> Result<(), String> {
        match record {
            Record::RegisterBroker {
                broker_id,
                host,
                port,
                incarnation,
            } => {
                if broker_id < 0 {
                    return Err(format!("broker id {broker_id} is negative"));
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
}
