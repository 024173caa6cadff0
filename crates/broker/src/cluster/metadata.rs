//! Cluster metadata: topics, their ids, partition counts and config overrides.
//! Immutable snapshots (`Arc<Metadata>`) are handed to every shard; only the
//! controller builds new ones.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::storage::LogConfig;

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct TopicMeta {
    pub name: String,
    pub id: Uuid,
    pub partitions: i32,
    /// Topic-level overrides, by Kafka's topic config names.
    pub configs: BTreeMap<String, String>,
    /// Cluster mode: each partition's replicas, leader and ISR, by partition
    /// index. Empty on a single node, where this broker holds and leads all.
    #[serde(default)]
    pub assignment: Vec<PartitionAssignment>,
}

/// Where one partition lives in a cluster.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PartitionAssignment {
    /// Brokers holding a replica; the first is the preferred leader.
    pub replicas: Vec<i32>,
    pub isr: Vec<i32>,
    /// -1 when the partition is offline.
    pub leader: i32,
    pub leader_epoch: i32,
    /// An ongoing reassignment: replicas that must catch up before it
    /// completes, and replicas that go once they have (both also in `replicas`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub adding: Vec<i32>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub removing: Vec<i32>,
}

impl PartitionAssignment {
    pub fn is_reassigning(&self) -> bool {
        !self.adding.is_empty() || !self.removing.is_empty()
    }

    /// The replicas the partition keeps once its reassignment completes.
    pub fn target_replicas(&self) -> Vec<i32> {
        self.replicas
            .iter()
            .copied()
            .filter(|b| !self.removing.contains(b))
            .collect()
    }
}

impl TopicMeta {
    /// Partition `p`'s placement; on a single node, `local_broker` holds it alone.
    pub fn placement(&self, partition: i32, local_broker: i32) -> PartitionAssignment {
        usize::try_from(partition)
            .ok()
            .and_then(|p| self.assignment.get(p))
            .cloned()
            .unwrap_or_else(|| PartitionAssignment {
                replicas: vec![local_broker],
                isr: vec![local_broker],
                leader: local_broker,
                leader_epoch: crate::storage::log::LEADER_EPOCH,
                adding: Vec::new(),
                removing: Vec::new(),
            })
    }

    /// Whether `broker` keeps a replica of partition `p`.
    pub fn is_replica(&self, partition: i32, broker: i32) -> bool {
        self.assignment.is_empty() || self.placement(partition, broker).replicas.contains(&broker)
    }
}

/// Feature levels an operator finalized (UpdateFeatures); a feature absent
/// is at the level the broker's own setting gives it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Features {
    pub levels: BTreeMap<String, i16>,
    /// When a level was last set (0: never): ApiVersions' finalized-features
    /// epoch, which clients compare across brokers.
    pub epoch_ms: i64,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Metadata {
    /// Increases with every change; shards ignore a snapshot older than theirs.
    pub version: u64,
    pub cluster_id: String,
    pub broker_id: i32,
    pub topics: BTreeMap<String, Arc<TopicMeta>>,
    /// Dynamic broker-wide overrides (AlterConfigs on the broker resource).
    pub broker_configs: BTreeMap<String, String>,
    /// Producer ids below this may have been handed out already.
    pub producer_id_block_end: i64,
    /// Cluster mode: the brokers registered with the metadata quorum. Empty
    /// on a single node, which then describes only itself.
    #[serde(default)]
    pub brokers: BTreeMap<i32, BrokerEndpoint>,
    /// Cluster mode: the quorum's current leader (the active controller);
    /// `None` on a single node, -1 while the quorum has no leader.
    #[serde(default)]
    pub controller_id: Option<i32>,
    /// Cluster mode: the metadata-log index these topics and brokers were
    /// read at. After a restart the quorum's image is rebuilt from the log
    /// and passes through older states; a view behind this is not applied,
    /// so a partition is never deleted because a topic is not there *yet*.
    #[serde(default)]
    pub quorum_applied_index: u64,
    /// Finalized feature levels (UpdateFeatures): in cluster mode the quorum's.
    #[serde(default)]
    pub features: Features,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BrokerEndpoint {
    pub host: String,
    pub port: u16,
    /// The quorum found it unresponsive: clients are not told about it and
    /// new replicas do not go to it, as in Kafka.
    #[serde(default)]
    pub fenced: bool,
}

const METADATA_FILE: &str = "__sluice_metadata.json";

impl Metadata {
    /// A feature's finalized level: the one an operator set (UpdateFeatures),
    /// else `setting`, the broker's own.
    pub fn feature_level(&self, feature: &str, setting: i16) -> i16 {
        self.features.levels.get(feature).copied().unwrap_or(setting)
    }

    /// The brokers to describe to clients: the registered, unfenced ones, or this one alone.
    pub fn broker_endpoints(&self, config: &crate::config::BrokerConfig) -> Vec<(i32, String, u16)> {
        if self.brokers.is_empty() {
            let (host, port) = config.advertised_endpoint();
            return vec![(config.broker_id, host, port)];
        }
        self.brokers
            .iter()
            .filter(|(_, b)| !b.fenced)
            .map(|(id, b)| (*id, b.host.clone(), b.port))
            .collect()
    }

    /// Registered brokers the quorum has fenced: (id, host, port).
    pub fn fenced_brokers(&self) -> Vec<(i32, String, u16)> {
        self.brokers
            .iter()
            .filter(|(_, b)| b.fenced)
            .map(|(id, b)| (*id, b.host.clone(), b.port))
            .collect()
    }

    /// The controller to name to clients: the quorum leader, or this broker.
    /// A dedicated controller is not a broker clients can reach, so then (as
    /// KRaft does) a broker is named; any broker takes admin requests.
    pub fn controller(&self, config: &crate::config::BrokerConfig) -> i32 {
        match self.controller_id {
            None => config.broker_id,
            Some(id) if id < 0 || self.brokers.get(&id).is_some_and(|b| !b.fenced) => id,
            Some(_) if self.brokers.contains_key(&config.broker_id) => config.broker_id,
            Some(id) => self.brokers.keys().next().copied().unwrap_or(id),
        }
    }

    /// KIP-951: the leader a client should move to for `topic`/`partition`
    /// (its id, epoch and endpoint), when the cluster knows one.
    pub fn current_leader(&self, topic: &str, partition: i32) -> Option<(i32, i32, &BrokerEndpoint)> {
        let t = self.topics.get(topic).filter(|t| !t.assignment.is_empty())?;
        let p = t.assignment.get(usize::try_from(partition).ok()?)?;
        let endpoint = self.brokers.get(&p.leader)?;
        Some((p.leader, p.leader_epoch, endpoint))
    }

    /// `topic`, if it exists and has partition `partition`.
    pub fn topic_with_partition(&self, topic: &str, partition: i32) -> Option<&Arc<TopicMeta>> {
        self.topics
            .get(topic)
            .filter(|t| (0..t.partitions).contains(&partition))
    }

    pub fn topic_by_id(&self, id: Uuid) -> Option<&Arc<TopicMeta>> {
        self.topics.values().find(|t| t.id == id)
    }

    /// Broker defaults with the dynamic broker overrides applied.
    pub fn broker_log_defaults(&self, static_defaults: &LogConfig) -> LogConfig {
        let mut config = static_defaults.clone();
        for (key, value) in &self.broker_configs {
            if let Some(k) = crate::storage::log_config::broker_config_key(key) {
                // Values were validated when they were set.
                let _ = config.set(k.name, value);
            }
        }
        config
    }

    /// A topic's effective log settings.
    pub fn log_config(&self, static_defaults: &LogConfig, topic: &TopicMeta) -> LogConfig {
        let defaults = self.broker_log_defaults(static_defaults);
        defaults.with_overrides(&topic.configs).unwrap_or(defaults)
    }

    pub fn path(data_dir: &Path) -> PathBuf {
        data_dir.join(METADATA_FILE)
    }

    /// Loads the stored metadata, or returns `None` on a fresh data dir.
    pub fn load(data_dir: &Path) -> std::io::Result<Option<Metadata>> {
        let path = Self::path(data_dir);
        match std::fs::read(&path) {
            Ok(bytes) => serde_json::from_slice(&bytes)
                .map(Some)
                .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidData, format!("{}: {e}", path.display()))),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Stores the metadata durably (write a temporary file, fsync, rename,
    /// fsync the directory), with the space reserve when the disk is full.
    pub fn store(&self, data_dir: &Path) -> std::io::Result<()> {
        let bytes = serde_json::to_vec_pretty(self).map_err(std::io::Error::other)?;
        crate::storage::space::replace_file(&Self::path(data_dir), &bytes, true)
    }
}

/// Writes Kafka's `meta.properties` so operators find the ids where they expect them.
pub fn write_meta_properties(data_dir: &Path, cluster_id: &str, broker_id: i32) -> std::io::Result<()> {
    let text = format!("version=1\ncluster.id={cluster_id}\nnode.id={broker_id}\n");
    std::fs::write(data_dir.join("meta.properties"), text)
}

/// A Kafka-style cluster id: 16 random bytes, URL-safe base64 without padding.
pub fn new_cluster_id() -> String {
    base64_url(Uuid::new_v4().as_bytes())
}

/// Cluster mode without an explicit `cluster.id`: every node started with
/// the same voters derives the same id (a name-based UUID of the voter list),
/// where KRaft has the operator format each node with one id.
pub fn quorum_cluster_id(voters: &[(u64, std::net::SocketAddr)]) -> String {
    let mut sorted = voters.to_vec();
    sorted.sort();
    let name: Vec<String> = sorted.iter().map(|(id, addr)| format!("{id}@{addr}")).collect();
    let uuid = Uuid::new_v5(
        &Uuid::NAMESPACE_OID,
        format!("sluice-cluster:{}", name.join(",")).as_bytes(),
    );
    base64_url(uuid.as_bytes())
}

fn base64_url(bytes: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    let mut out = String::new();
    for chunk in bytes.chunks(3) {
        let n = chunk
            .iter()
            .enumerate()
            .fold(0u32, |acc, (i, b)| acc | (*b as u32) << (16 - 8 * i));
        for i in 0..=chunk.len() {
            out.push(ALPHABET[(n >> (18 - 6 * i) & 63) as usize] as char);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn store_and_load_round_trip() {
        let dir = tempfile::tempdir().unwrap();
        assert!(Metadata::load(dir.path()).unwrap().is_none());
        let mut m = Metadata {
            version: 3,
            cluster_id: new_cluster_id(),
            ..Default::default()
        };
        assert_eq!(m.cluster_id.len(), 22);
        m.topics.insert(
            "t".into(),
            Arc::new(TopicMeta {
                name: "t".into(),
                id: Uuid::new_v4(),
                partitions: 3,
                configs: BTreeMap::new(),
                assignment: Vec::new(),
            }),
        );
        m.store(dir.path()).unwrap();
        let back = Metadata::load(dir.path()).unwrap().unwrap();
        assert_eq!(back.version, 3);
        assert_eq!(back.topics["t"].partitions, 3);
        assert!(back.topic_by_id(m.topics["t"].id).is_some());
    }
}
