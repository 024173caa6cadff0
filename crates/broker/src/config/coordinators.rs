//! The coordinators' settings: consumer groups (`offsets.*`, `group.*`) and
//! transactions (`transaction*`), each applied by `BrokerConfig::set`.

use super::parse_num;

/// The group coordinator's settings, under Kafka's names and defaults.
#[derive(Debug, Clone)]
pub struct GroupConfig {
    /// `offsets.topic.num.partitions`: fixed once `__consumer_offsets` exists.
    pub offsets_topic_partitions: i32,
    /// `offsets.topic.segment.bytes`; also the least size at which the topic is compacted.
    pub offsets_topic_segment_bytes: u64,
    /// `offsets.topic.replication.factor` in cluster mode (capped at the
    /// brokers registered when the topic is created).
    pub offsets_topic_replication_factor: i16,
    /// `offsets.commit.timeout.ms`: how long a commit waits for the in-sync replicas.
    pub offsets_commit_timeout_ms: u64,
    /// `offsets.retention.minutes`, in ms.
    pub offsets_retention_ms: i64,
    /// `offsets.retention.check.interval.ms`.
    pub offsets_retention_check_interval_ms: u64,
    /// `offset.metadata.max.bytes`.
    pub offset_metadata_max_bytes: usize,
    /// `group.initial.rebalance.delay.ms`.
    pub initial_rebalance_delay_ms: i64,
    /// `group.min.session.timeout.ms` and `group.max.session.timeout.ms`.
    pub min_session_timeout_ms: i32,
    pub max_session_timeout_ms: i32,
    /// `group.max.size`.
    pub max_size: usize,
    /// KIP-848 groups: `group.consumer.session.timeout.ms` and `group.consumer.heartbeat.interval.ms`.
    pub consumer_session_timeout_ms: i64,
    pub consumer_heartbeat_interval_ms: i32,
}

impl Default for GroupConfig {
    fn default() -> Self {
        Self {
            offsets_topic_partitions: 50,
            offsets_topic_segment_bytes: 104_857_600,
            offsets_topic_replication_factor: 3,
            offsets_commit_timeout_ms: 5000,
            offsets_retention_ms: 10_080 * 60_000,
            offsets_retention_check_interval_ms: 600_000,
            offset_metadata_max_bytes: 4096,
            initial_rebalance_delay_ms: 3000,
            min_session_timeout_ms: 6000,
            max_session_timeout_ms: 1_800_000,
            max_size: i32::MAX as usize,
            consumer_session_timeout_ms: 45_000,
            consumer_heartbeat_interval_ms: 5000,
        }
    }
}

impl GroupConfig {
    /// Applies one `offsets.*`/`group.*` setting; `None` if the key is not one of them.
    pub(super) fn set(&mut self, key: &str, value: &str) -> Option<Result<(), String>> {
        let result = match key {
            "offsets.topic.num.partitions" => parse_num::<i32>(key, value).and_then(|n| {
                (1..=crate::model::PARTITIONS_PER_TOPIC_MAX)
                    .contains(&n)
                    .then(|| self.offsets_topic_partitions = n)
                    .ok_or_else(|| format!("{key} must be between 1 and 10000"))
            }),
            "offsets.topic.replication.factor" => parse_num::<i16>(key, value).and_then(|n| {
                (n >= 1)
                    .then(|| self.offsets_topic_replication_factor = n)
                    .ok_or_else(|| format!("{key} must be at least 1"))
            }),
            "offsets.commit.timeout.ms" => parse_num(key, value).map(|ms| self.offsets_commit_timeout_ms = ms),
            "offsets.topic.segment.bytes" => {
                parse_num::<u64>(key, value).map(|n| self.offsets_topic_segment_bytes = n.max(1024))
            }
            // Kafka takes whole minutes; fractions are accepted too (tests use seconds).
            "offsets.retention.minutes" => parse_num::<f64>(key, value).and_then(|m| {
                (m.is_finite() && m > 0.0)
                    .then(|| self.offsets_retention_ms = (m * 60_000.0) as i64)
                    .ok_or_else(|| format!("{key} must be positive"))
            }),
            "offsets.retention.check.interval.ms" => {
                parse_num::<u64>(key, value).map(|ms| self.offsets_retention_check_interval_ms = ms.max(1))
            }
            "offset.metadata.max.bytes" => parse_num(key, value).map(|n| self.offset_metadata_max_bytes = n),
            "group.initial.rebalance.delay.ms" => {
                parse_num::<i64>(key, value).map(|ms| self.initial_rebalance_delay_ms = ms.max(0))
            }
            "group.min.session.timeout.ms" => parse_num(key, value).map(|ms| self.min_session_timeout_ms = ms),
            "group.max.session.timeout.ms" => parse_num(key, value).map(|ms| self.max_session_timeout_ms = ms),
            "group.max.size" => parse_num::<usize>(key, value).map(|n| self.max_size = n.max(1)),
            "group.consumer.session.timeout.ms" => {
                parse_num::<i64>(key, value).map(|ms| self.consumer_session_timeout_ms = ms.max(1))
            }
            "group.consumer.heartbeat.interval.ms" => {
                parse_num::<i32>(key, value).map(|ms| self.consumer_heartbeat_interval_ms = ms.max(1))
            }
            _ => return None,
        };
        Some(result)
    }
}

/// The transaction coordinator's settings, under Kafka's names.
#[derive(Debug, Clone)]
pub struct TxnConfig {
    /// `transaction.state.log.num.partitions`: fixed once `__transaction_state` exists.
    pub log_partitions: i32,
    /// `transaction.state.log.replication.factor` in cluster mode (capped at the brokers registered).
    pub log_replication_factor: i16,
    /// `transaction.state.log.min.isr`.
    pub log_min_isr: i32,
    /// `transaction.state.log.segment.bytes`.
    pub log_segment_bytes: u64,
    /// `transaction.max.timeout.ms`: the longest `transaction.timeout.ms` a producer may ask for.
    pub max_timeout_ms: i32,
    /// `transactional.id.expiration.ms`: an id idle this long with no open transaction is forgotten.
    pub id_expiration_ms: i64,
    /// `transaction.abort.timed.out.transaction.cleanup.interval.ms`.
    pub abort_timed_out_interval_ms: u64,
    /// `transaction.remove.expired.transaction.cleanup.interval.ms`.
    pub remove_expired_interval_ms: u64,
    /// `transaction.version`, the feature level ApiVersions finalizes until
    /// an operator finalizes one for the cluster with `kafka-features`
    /// (UpdateFeatures, `Metadata::feature_level`): 2 bumps the producer
    /// epoch at every commit or abort and lets partition leaders add
    /// partitions to a transaction (KIP-890 part 2); 0 and 1 do neither.
    /// Until then every broker of a cluster should have the same.
    pub version: i16,
}

/// The feature that `transaction.version` sets (ApiVersions, UpdateFeatures).
pub const TRANSACTION_VERSION_FEATURE: &str = "transaction.version";
/// The highest `transaction.version` this broker supports.
pub const TRANSACTION_VERSION_MAX: i16 = 2;

/// The levels this broker supports of a feature it knows: (min, max).
pub fn supported_feature(feature: &str) -> Option<(i16, i16)> {
    (feature == TRANSACTION_VERSION_FEATURE).then_some((0, TRANSACTION_VERSION_MAX))
}

impl Default for TxnConfig {
    fn default() -> Self {
        Self {
            log_partitions: 50,
            log_replication_factor: 3,
            log_min_isr: 2,
            log_segment_bytes: 104_857_600,
            max_timeout_ms: 900_000,
            id_expiration_ms: 604_800_000,
            abort_timed_out_interval_ms: 10_000,
            remove_expired_interval_ms: 3_600_000,
            version: 2,
        }
    }
}

impl TxnConfig {
    /// Applies one `transaction*` setting; `None` if the key is not one of them.
    pub(super) fn set(&mut self, key: &str, value: &str) -> Option<Result<(), String>> {
        let positive = |n: i64| (n > 0).then_some(n).ok_or_else(|| format!("{key} must be positive"));
        let result = match key {
            "transaction.state.log.num.partitions" => parse_num::<i32>(key, value).and_then(|n| {
                (1..=crate::model::PARTITIONS_PER_TOPIC_MAX)
                    .contains(&n)
                    .then(|| self.log_partitions = n)
                    .ok_or_else(|| format!("{key} must be between 1 and 10000"))
            }),
            "transaction.state.log.replication.factor" => parse_num::<i16>(key, value).and_then(|n| {
                (n >= 1)
                    .then(|| self.log_replication_factor = n)
                    .ok_or_else(|| format!("{key} must be at least 1"))
            }),
            "transaction.state.log.min.isr" => parse_num::<i32>(key, value).and_then(|n| {
                (n >= 1)
                    .then(|| self.log_min_isr = n)
                    .ok_or_else(|| format!("{key} must be at least 1"))
            }),
            "transaction.state.log.segment.bytes" => {
                parse_num::<u64>(key, value).map(|n| self.log_segment_bytes = n.max(1024))
            }
            "transaction.max.timeout.ms" => parse_num::<i64>(key, value)
                .and_then(positive)
                .map(|n| self.max_timeout_ms = n.min(i64::from(i32::MAX)) as i32),
            "transactional.id.expiration.ms" => parse_num::<i64>(key, value)
                .and_then(positive)
                .map(|n| self.id_expiration_ms = n),
            "transaction.abort.timed.out.transaction.cleanup.interval.ms" => parse_num::<i64>(key, value)
                .and_then(positive)
                .map(|n| self.abort_timed_out_interval_ms = n as u64),
            "transaction.remove.expired.transaction.cleanup.interval.ms" => parse_num::<i64>(key, value)
                .and_then(positive)
                .map(|n| self.remove_expired_interval_ms = n as u64),
            "transaction.version" => parse_num::<i16>(key, value).and_then(|n| {
                (0..=TRANSACTION_VERSION_MAX)
                    .contains(&n)
                    .then(|| self.version = n)
                    .ok_or_else(|| format!("{key} must be 0, 1 or 2"))
            }),
            _ => return None,
        };
        Some(result)
    }
}
