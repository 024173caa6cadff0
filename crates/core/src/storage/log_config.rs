//! Per-topic log settings: Kafka's topic-level configs, resolved against the broker's defaults.

use std::collections::BTreeMap;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TimestampType {
    CreateTime,
    LogAppendTime,
}

/// Effective settings of one partition's log.
#[derive(Debug, Clone, PartialEq)]
pub struct LogConfig {
    pub segment_bytes: u64,
    pub segment_ms: i64,
    /// -1 keeps data forever.
    pub retention_ms: i64,
    /// -1 puts no bound on the size.
    pub retention_bytes: i64,
    pub max_message_bytes: usize,
    pub timestamp_type: TimestampType,
    /// fsync after this many messages; i64::MAX never does.
    pub flush_messages: i64,
    /// fsync when the oldest unflushed write is this old; i64::MAX never does.
    pub flush_ms: i64,
    pub index_interval_bytes: u64,
    pub cleanup_policy: String,
    /// Replicated topics: acks=all needs this many in-sync replicas
    /// (Kafka's `min.insync.replicas`); the log itself does not use it.
    pub min_insync_replicas: i32,
    /// Replicated topics: `unclean.leader.election.enable` (the quorum reads
    /// the topic override; kept here so it validates like every topic config).
    pub unclean_leader_election: bool,
}

impl Default for LogConfig {
    fn default() -> Self {
        Self {
            segment_bytes: 1 << 30,
            segment_ms: 7 * 24 * 3600 * 1000,
            retention_ms: 7 * 24 * 3600 * 1000,
            retention_bytes: -1,
            max_message_bytes: 1_048_588,
            timestamp_type: TimestampType::CreateTime,
            flush_messages: i64::MAX,
            flush_ms: i64::MAX,
            index_interval_bytes: 4096,
            cleanup_policy: "delete".into(),
            min_insync_replicas: 1,
            unclean_leader_election: false,
        }
    }
}

/// A topic-level config: its topic name, the broker setting that supplies the default, and its type.
pub struct TopicConfigKey {
    pub name: &'static str,
    pub broker_name: &'static str,
    /// Kafka's ConfigType enum value, for DescribeConfigs v3+.
    pub config_type: i8,
    pub doc: &'static str,
}

const TYPE_BOOLEAN: i8 = 1;
const TYPE_STRING: i8 = 2;
const TYPE_INT: i8 = 3;
const TYPE_LONG: i8 = 5;
const TYPE_LIST: i8 = 7;

pub const TOPIC_CONFIG_KEYS: &[TopicConfigKey] = &[
    TopicConfigKey {
        name: "cleanup.policy",
        broker_name: "log.cleanup.policy",
        config_type: TYPE_LIST,
        doc: "delete: old segments are removed by retention. compact is not supported yet.",
    },
    TopicConfigKey {
        name: "retention.ms",
        broker_name: "log.retention.ms",
        config_type: TYPE_LONG,
        doc: "How long to keep a segment after its newest record; -1 keeps data forever.",
    },
    TopicConfigKey {
        name: "retention.bytes",
        broker_name: "log.retention.bytes",
        config_type: TYPE_LONG,
        doc: "The size a partition may grow to before its oldest segments are deleted; -1 is unbounded.",
    },
    TopicConfigKey {
        name: "segment.bytes",
        broker_name: "log.segment.bytes",
        config_type: TYPE_INT,
        doc: "The size at which the active segment is rolled.",
    },
    TopicConfigKey {
        name: "segment.ms",
        broker_name: "log.roll.ms",
        config_type: TYPE_LONG,
        doc: "The age at which the active segment is rolled.",
    },
    TopicConfigKey {
        name: "max.message.bytes",
        broker_name: "message.max.bytes",
        config_type: TYPE_INT,
        doc: "The largest record batch the topic accepts.",
    },
    TopicConfigKey {
        name: "message.timestamp.type",
        broker_name: "log.message.timestamp.type",
        config_type: TYPE_STRING,
        doc: "CreateTime keeps the producer's timestamps; LogAppendTime stamps the broker's clock.",
    },
    TopicConfigKey {
        name: "flush.messages",
        broker_name: "log.flush.interval.messages",
        config_type: TYPE_LONG,
        doc: "fsync the log after this many messages.",
    },
    TopicConfigKey {
        name: "flush.ms",
        broker_name: "log.flush.interval.ms",
        config_type: TYPE_LONG,
        doc: "fsync the log when unflushed data is this old.",
    },
    TopicConfigKey {
        name: "index.interval.bytes",
        broker_name: "log.index.interval.bytes",
        config_type: TYPE_INT,
        doc: "Bytes between offset index entries.",
    },
    TopicConfigKey {
        name: "min.insync.replicas",
        broker_name: "min.insync.replicas",
        config_type: TYPE_INT,
        doc: "acks=all produce needs at least this many in-sync replicas, else NOT_ENOUGH_REPLICAS.",
    },
    TopicConfigKey {
        name: "unclean.leader.election.enable",
        broker_name: "unclean.leader.election.enable",
        config_type: TYPE_BOOLEAN,
        doc: "Elect an out-of-sync replica (losing what it lacks) rather than leave the partition offline.",
    },
];

pub fn topic_config_key(name: &str) -> Option<&'static TopicConfigKey> {
    TOPIC_CONFIG_KEYS.iter().find(|k| k.name == name)
}

pub fn broker_config_key(name: &str) -> Option<&'static TopicConfigKey> {
    TOPIC_CONFIG_KEYS.iter().find(|k| k.broker_name == name)
}

fn parse_i64(name: &str, value: &str) -> Result<i64, String> {
    value
        .trim()
        .parse::<i64>()
        .map_err(|_| format!("invalid value '{value}' for {name}: expected an integer"))
}

fn parse_at_least(name: &str, value: &str, min: i64) -> Result<i64, String> {
    let v = parse_i64(name, value)?;
    if v < min {
        return Err(format!("invalid value {v} for {name}: must be at least {min}"));
    }
    Ok(v)
}

impl LogConfig {
    /// Applies one setting, named by its topic-level name. Unknown names and
    /// bad values are errors, so a typo never passes silently.
    pub fn set(&mut self, name: &str, value: &str) -> Result<(), String> {
        match name {
            "cleanup.policy" => {
                if value.trim() != "delete" {
                    return Err(format!(
                        "cleanup.policy '{value}' is not supported: only 'delete' is implemented"
                    ));
                }
                self.cleanup_policy = "delete".into();
            }
            "retention.ms" => self.retention_ms = parse_at_least(name, value, -1)?,
            "retention.bytes" => self.retention_bytes = parse_at_least(name, value, -1)?,
            "segment.bytes" => self.segment_bytes = parse_at_least(name, value, 14)?.min(i32::MAX as i64) as u64,
            "segment.ms" => self.segment_ms = parse_at_least(name, value, 1)?,
            "max.message.bytes" => {
                self.max_message_bytes = parse_at_least(name, value, 0)?.min(i32::MAX as i64) as usize
            }
            "message.timestamp.type" => {
                self.timestamp_type = match value.trim() {
                    "CreateTime" => TimestampType::CreateTime,
                    "LogAppendTime" => TimestampType::LogAppendTime,
                    other => {
                        return Err(format!(
                            "invalid value '{other}' for message.timestamp.type: CreateTime or LogAppendTime"
                        ));
                    }
                }
            }
            "flush.messages" => self.flush_messages = parse_at_least(name, value, 1)?,
            "flush.ms" => self.flush_ms = parse_at_least(name, value, 0)?,
            "index.interval.bytes" => self.index_interval_bytes = parse_at_least(name, value, 0)? as u64,
            "unclean.leader.election.enable" => {
                self.unclean_leader_election = match value.trim() {
                    "true" => true,
                    "false" => false,
                    other => return Err(format!("invalid value '{other}' for {name}: true or false")),
                }
            }
            "min.insync.replicas" => {
                self.min_insync_replicas = parse_at_least(name, value, 1)?.min(i32::MAX as i64) as i32
            }
            _ => return Err(format!("unknown topic config '{name}'")),
        }
        Ok(())
    }

    /// The current value of a topic-level setting, as Kafka prints it.
    pub fn get(&self, name: &str) -> Option<String> {
        Some(match name {
            "cleanup.policy" => self.cleanup_policy.clone(),
            "retention.ms" => self.retention_ms.to_string(),
            "retention.bytes" => self.retention_bytes.to_string(),
            "segment.bytes" => self.segment_bytes.to_string(),
            "segment.ms" => self.segment_ms.to_string(),
            "max.message.bytes" => self.max_message_bytes.to_string(),
            "message.timestamp.type" => match self.timestamp_type {
                TimestampType::CreateTime => "CreateTime".into(),
                TimestampType::LogAppendTime => "LogAppendTime".into(),
            },
            "flush.messages" => self.flush_messages.to_string(),
            "flush.ms" => self.flush_ms.to_string(),
            "index.interval.bytes" => self.index_interval_bytes.to_string(),
            "min.insync.replicas" => self.min_insync_replicas.to_string(),
            "unclean.leader.election.enable" => self.unclean_leader_election.to_string(),
            _ => return None,
        })
    }

    /// These defaults with a topic's overrides applied.
    pub fn with_overrides(&self, overrides: &BTreeMap<String, String>) -> Result<LogConfig, String> {
        let mut config = self.clone();
        for (name, value) in overrides {
            config.set(name, value)?;
        }
        Ok(config)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn overrides_apply_and_typos_are_refused() {
        let base = LogConfig::default();
        let mut o = BTreeMap::new();
        o.insert("retention.ms".to_string(), "1000".to_string());
        o.insert("message.timestamp.type".to_string(), "LogAppendTime".to_string());
        let c = base.with_overrides(&o).unwrap();
        assert_eq!(c.retention_ms, 1000);
        assert_eq!(c.timestamp_type, TimestampType::LogAppendTime);
        assert_eq!(c.get("retention.ms").as_deref(), Some("1000"));
        o.insert("retention.msx".to_string(), "1".to_string());
        assert!(base.with_overrides(&o).is_err());
        let mut c = base.clone();
        assert!(c.set("segment.bytes", "abc").is_err());
        assert!(c.set("cleanup.policy", "compact").is_err());
        for key in TOPIC_CONFIG_KEYS {
            assert!(base.get(key.name).is_some(), "{} has a getter", key.name);
        }
    }
}
