//! Broker configuration: embedded defaults, a TOML file with Kafka's setting
//! names, then command-line flags, each overriding the one before.

use std::collections::{BTreeMap, HashMap};
use std::net::IpAddr;
use std::net::{SocketAddr, ToSocketAddrs};
use std::path::{Path, PathBuf};

use crate::storage::LogConfig;
use crate::storage::log_config::broker_config_key;

mod coordinators;
pub use coordinators::{
    GroupConfig, TRANSACTION_VERSION_FEATURE, TRANSACTION_VERSION_MAX, TxnConfig, supported_feature,
};

/// How fetched record bytes reach the socket (`fetch.send.method`); both are zero-copy.
/// sendfile is the default: on loopback with 100-byte records it served 2.7M
/// records/s at 0.26 CPU s/GB against splice's 2.5M at 0.57 (perf/README.md).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SendMethod {
    Splice,
    Sendfile,
}

impl std::str::FromStr for SendMethod {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s.trim() {
            "splice" => Ok(Self::Splice),
            "sendfile" => Ok(Self::Sendfile),
            other => Err(format!("fetch.send.method '{other}': expected splice or sendfile")),
        }
    }
}

#[derive(Debug, Clone)]
pub struct BrokerConfig {
    pub listen: SocketAddr,
    /// Host and port clients are told to connect to (Metadata); `None` advertises the listener.
    pub advertised: Option<(String, u16)>,
    pub data_dir: PathBuf,
    pub shards: usize,
    pub broker_id: i32,
    /// Generated and stored in `meta.properties` on first start when unset.
    pub cluster_id: Option<String>,
    pub num_partitions: i32,
    pub default_replication_factor: i16,
    pub auto_create_topics: bool,
    pub socket_request_max_bytes: usize,
    /// `queued.max.request.bytes`: request bytes read but not yet handled,
    /// broker-wide (split evenly between the shards); -1 is unbounded.
    pub queued_max_request_bytes: i64,
    pub connection_limits: ConnectionLimits,
    pub connections_max_idle_ms: u64,
    /// `max.incremental.fetch.session.cache.slots`: fetch sessions kept,
    /// broker-wide (split between the shards); 0 keeps none.
    pub max_incremental_fetch_session_cache_slots: usize,
    pub retention_check_interval_ms: u64,
    /// How fetched record bytes reach the socket; both are zero-copy.
    pub fetch_send_method: SendMethod,
    /// Broker-wide defaults of the topic-level settings.
    pub log_defaults: LogConfig,
    pub group: GroupConfig,
    pub txn: TxnConfig,
    /// Where the Prometheus endpoint listens (`metrics.listener`); port 0 picks one.
    pub metrics_listen: SocketAddr,
    /// `metrics.enabled`: with false nothing is recorded and nothing listens.
    pub metrics_enabled: bool,
    /// `logging.level`: a tracing filter ("info", "sluice=debug"); RUST_LOG overrides it.
    pub logging_level: String,
    /// `logging.format`: one line of text per event, or one JSON object.
    pub logging_json: bool,
    /// Cluster mode: a follower that has not caught up for this long leaves the ISR.
    pub replica_lag_time_max_ms: i64,
    /// Cluster mode: a broker silent for this long is fenced and loses its leaderships.
    pub broker_session_timeout_ms: u64,
    /// Cluster mode: elect an out-of-sync replica rather than leave a partition offline.
    pub unclean_leader_election: bool,
    /// Cluster mode: move leadership back to preferred replicas, every so often.
    pub auto_leader_rebalance: bool,
    pub leader_imbalance_check_interval_s: u64,
    /// Cluster mode: where this node's controller listens (`controller.listener`).
    pub controller_listen: Option<SocketAddr>,
    /// Cluster mode: `controller.quorum.voters`, `1@host:port,2@host:port,...`.
    pub controller_voters: Vec<(u64, SocketAddr)>,
    /// Cluster mode: `process.roles` (broker, controller, or both: the default).
    pub process_roles: Option<ProcessRoles>,
}

/// Kafka leaves `queued.max.request.bytes` unbounded (-1); Sluice bounds it
/// by default, at five of the largest frames.
const QUEUED_MAX_REQUEST_BYTES_DEFAULT: i64 = 5 * 104_857_600;

impl BrokerConfig {
    /// One shard's share of `queued.max.request.bytes`.
    pub fn queued_request_bytes_per_shard(&self) -> usize {
        match self.queued_max_request_bytes {
            -1 => usize::MAX,
            bytes => (bytes as usize / self.shards.max(1)).max(1),
        }
    }
}

impl Default for BrokerConfig {
    fn default() -> Self {
        let listen: SocketAddr = "127.0.0.1:9092".parse().expect("valid default address");
        Self {
            listen,
            advertised: None,
            data_dir: PathBuf::from("./data"),
            shards: std::thread::available_parallelism().map_or(1, |n| n.get()),
            broker_id: 0,
            cluster_id: None,
            num_partitions: 1,
            default_replication_factor: 1,
            auto_create_topics: true,
            socket_request_max_bytes: 104_857_600,
            queued_max_request_bytes: QUEUED_MAX_REQUEST_BYTES_DEFAULT,
            connection_limits: ConnectionLimits::default(),
            connections_max_idle_ms: 600_000,
            max_incremental_fetch_session_cache_slots: 1000,
            retention_check_interval_ms: 300_000,
            fetch_send_method: SendMethod::Sendfile,
            log_defaults: LogConfig::default(),
            group: GroupConfig::default(),
            txn: TxnConfig::default(),
            metrics_listen: "127.0.0.1:9644".parse().expect("valid default address"),
            metrics_enabled: true,
            logging_level: "info".to_string(),
            logging_json: false,
            replica_lag_time_max_ms: 30_000,
            broker_session_timeout_ms: 9_000,
            unclean_leader_election: false,
            auto_leader_rebalance: true,
            leader_imbalance_check_interval_s: 300,
            controller_listen: None,
            controller_voters: Vec::new(),
            process_roles: None,
        }
    }
}

/// `max.connections`, `max.connections.per.ip` and its overrides, enforced at accept.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConnectionLimits {
    pub max_connections: usize,
    pub max_connections_per_ip: usize,
    /// Per-address exceptions to `max_connections_per_ip`.
    pub per_ip_overrides: HashMap<IpAddr, usize>,
}

impl Default for ConnectionLimits {
    fn default() -> Self {
        Self {
            max_connections: i32::MAX as usize,
            max_connections_per_ip: i32::MAX as usize,
            per_ip_overrides: HashMap::new(),
        }
    }
}

impl ConnectionLimits {
    pub fn per_ip(&self, ip: &IpAddr) -> usize {
        self.per_ip_overrides
            .get(ip)
            .copied()
            .unwrap_or(self.max_connections_per_ip)
    }
}

/// Parses `max.connections.per.ip.overrides`: `ip:count,ip:count` (IPv6
/// addresses as `[::1]:count`). Host names are refused: resolving them would
/// tie admission to DNS.
pub fn parse_overrides(value: &str) -> Result<HashMap<IpAddr, usize>, String> {
    let mut out = HashMap::new();
    for item in value.split(',').map(str::trim).filter(|s| !s.is_empty()) {
        let (ip, count) = item
            .rsplit_once(':')
            .ok_or_else(|| format!("max.connections.per.ip.overrides: '{item}' is not IP:COUNT"))?;
        let ip: IpAddr = ip
            .trim_start_matches('[')
            .trim_end_matches(']')
            .parse()
            .map_err(|_| format!("max.connections.per.ip.overrides: '{ip}' is not an IP address"))?;
        let count = count
            .parse()
            .map_err(|_| format!("max.connections.per.ip.overrides: bad count in '{item}'"))?;
        out.insert(ip, count);
    }
    Ok(out)
}

/// Strips Kafka's `PLAINTEXT://` style prefix: `listeners = "PLAINTEXT://127.0.0.1:9092"`.
fn strip_listener_scheme(value: &str) -> &str {
    let first = value.split(',').next().unwrap_or(value).trim();
    first.split_once("://").map_or(first, |(_, rest)| rest)
}

fn parse_host_port(value: &str) -> Result<(String, u16), String> {
    let hp = strip_listener_scheme(value);
    let (host, port) = hp
        .rsplit_once(':')
        .ok_or_else(|| format!("'{value}' is not HOST:PORT"))?;
    let port = port.parse().map_err(|_| format!("bad port in '{value}'"))?;
    let host = host.trim_start_matches('[').trim_end_matches(']');
    let host = if host.is_empty() { "0.0.0.0" } else { host };
    Ok((host.to_string(), port))
}

/// The machine's host name, advertised when listening on every address (as Kafka does).
fn local_hostname() -> String {
    let mut buf = [0u8; 256];
    // SAFETY: gethostname writes at most buf.len() bytes into our buffer.
    let ok = unsafe { libc::gethostname(buf.as_mut_ptr().cast(), buf.len()) } == 0;
    let end = buf.iter().position(|&b| b == 0).unwrap_or(0);
    match std::str::from_utf8(&buf[..end]) {
        Ok(name) if ok && !name.is_empty() => name.to_string(),
        _ => "localhost".to_string(),
    }
}

fn value_to_string(value: &toml::Value) -> String {
    match value {
        toml::Value::String(s) => s.clone(),
        toml::Value::Array(items) => items.iter().map(value_to_string).collect::<Vec<_>>().join(","),
        other => other.to_string(),
    }
}

/// Flattens nested tables, so `[log] dirs = ".."` and `"log.dirs" = ".."` mean the same.
fn flatten(prefix: &str, table: &toml::Table, out: &mut BTreeMap<String, String>) {
    for (key, value) in table {
        let name = if prefix.is_empty() {
            key.clone()
        } else {
            format!("{prefix}.{key}")
        };
        match value {
            toml::Value::Table(inner) => flatten(&name, inner, out),
            other => {
                out.insert(name, value_to_string(other));
            }
        }
    }
}

pub(super) fn parse_num<T: std::str::FromStr>(key: &str, value: &str) -> Result<T, String> {
    value
        .trim()
        .parse()
        .map_err(|_| format!("invalid value '{value}' for {key}"))
}

/// Every setting name `BrokerConfig::set` knows, besides the broker-level names of the
/// topic settings (`log.segment.bytes`, ...); for `sluice config check`'s suggestions.
/// A unit test keeps it in step with `set`.
pub const BROKER_SETTINGS: &[&str] = &[
    "listeners",
    "advertised.listeners",
    "log.dirs",
    "log.dir",
    "num.shards",
    "broker.id",
    "node.id",
    "controller.listener",
    "controller.quorum.voters",
    "process.roles",
    "replica.lag.time.max.ms",
    "broker.session.timeout.ms",
    "unclean.leader.election.enable",
    "auto.leader.rebalance.enable",
    "leader.imbalance.check.interval.seconds",
    "cluster.id",
    "num.partitions",
    "default.replication.factor",
    "auto.create.topics.enable",
    "socket.request.max.bytes",
    "connections.max.idle.ms",
    "log.retention.check.interval.ms",
    "log.retention.hours",
    "log.retention.minutes",
    "fetch.send.method",
    "metrics.listener",
    "metrics.enabled",
    "logging.level",
    "logging.format",
    "log.roll.hours",
    "offsets.topic.num.partitions",
    "offsets.topic.segment.bytes",
    "offsets.retention.minutes",
    "offsets.retention.check.interval.ms",
    "offset.metadata.max.bytes",
    "group.initial.rebalance.delay.ms",
    "group.min.session.timeout.ms",
    "group.max.session.timeout.ms",
    "group.max.size",
    "group.consumer.session.timeout.ms",
    "group.consumer.heartbeat.interval.ms",
    "transaction.state.log.num.partitions",
    "transaction.state.log.replication.factor",
    "transaction.state.log.min.isr",
    "transaction.state.log.segment.bytes",
    "transaction.max.timeout.ms",
    "transactional.id.expiration.ms",
    "transaction.abort.timed.out.transaction.cleanup.interval.ms",
    "transaction.remove.expired.transaction.cleanup.interval.ms",
    "transaction.version",
];

/// The known setting closest to `key` by edit distance, if it is plausibly a typo.
fn nearest_setting(key: &str) -> Option<&'static str> {
    fn distance(a: &str, b: &str) -> usize {
        let b: Vec<char> = b.chars().collect();
        let mut row: Vec<usize> = (0..=b.len()).collect();
        for (i, ca) in a.chars().enumerate() {
            let mut diagonal = row[0];
            row[0] = i + 1;
            for (j, cb) in b.iter().enumerate() {
                let substitution = diagonal + usize::from(ca != *cb);
                diagonal = row[j + 1];
                row[j + 1] = substitution.min(row[j] + 1).min(row[j + 1] + 1);
            }
        }
        row[b.len()]
    }
    known_settings()
        .into_iter()
        .map(|k| (distance(key, k), k))
        .min()
        .filter(|(d, _)| *d <= key.len().max(4) / 3)
        .map(|(_, k)| k)
}

/// Every setting name a config file may use.
pub fn known_settings() -> Vec<&'static str> {
    let topic_level = crate::storage::log_config::TOPIC_CONFIG_KEYS
        .iter()
        .map(|k| k.broker_name);
    BROKER_SETTINGS.iter().copied().chain(topic_level).collect()
}

impl BrokerConfig {
    /// The metadata quorum to join, when cluster mode is configured (both settings or neither).
    pub fn quorum(&self) -> Result<Option<QuorumConfig>, String> {
        let roles = self.process_roles.unwrap_or_default();
        match (self.controller_listen, self.controller_voters.is_empty()) {
            (None, true) if self.process_roles.is_none() => Ok(None),
            (_, true) => Err("cluster mode needs controller.quorum.voters".into()),
            (None, false) if roles.controller => {
                Err("a controller (process.roles) needs controller.listener as well as controller.quorum.voters".into())
            }
            (listen, false) => Ok(Some(QuorumConfig {
                listen: listen.filter(|_| roles.controller),
                voters: self.controller_voters.clone(),
                roles,
            })),
        }
    }

    /// The host and port clients are told to use.
    pub fn advertised_endpoint(&self) -> (String, u16) {
        match &self.advertised {
            Some((host, port)) => (host.clone(), *port),
            None if self.listen.ip().is_unspecified() => (local_hostname(), self.listen.port()),
            None => (self.listen.ip().to_string(), self.listen.port()),
        }
    }

    /// Applies one setting by its Kafka name.
    pub fn set(&mut self, key: &str, value: &str) -> Result<(), String> {
        match key {
            "listeners" => {
                let (host, port) = parse_host_port(value)?;
                self.listen = format!("{host}:{port}")
                    .parse()
                    .or_else(|_| {
                        std::net::ToSocketAddrs::to_socket_addrs(&(host.as_str(), port))
                            .ok()
                            .and_then(|mut a| a.next())
                            .ok_or(())
                    })
                    .map_err(|_| format!("cannot resolve listener '{value}'"))?;
            }
            "advertised.listeners" => self.advertised = Some(parse_host_port(value)?),
            "log.dirs" | "log.dir" => {
                let first = value.split(',').next().unwrap_or(value).trim();
                self.data_dir = PathBuf::from(first);
            }
            "num.shards" => self.shards = parse_num::<usize>(key, value)?.max(1),
            "broker.id" | "node.id" => self.broker_id = parse_num(key, value)?,
            "controller.listener" => {
                let (host, port) = parse_host_port(value)?;
                let address = std::net::ToSocketAddrs::to_socket_addrs(&(host.as_str(), port))
                    .ok()
                    .and_then(|mut a| a.next())
                    .ok_or_else(|| format!("cannot resolve controller listener '{value}'"))?;
                self.controller_listen = Some(address);
            }
            "broker.session.timeout.ms" => self.broker_session_timeout_ms = parse_num::<u64>(key, value)?.max(100),
            "unclean.leader.election.enable" => self.unclean_leader_election = parse_num(key, value)?,
            "auto.leader.rebalance.enable" => self.auto_leader_rebalance = parse_num(key, value)?,
            "leader.imbalance.check.interval.seconds" => {
                self.leader_imbalance_check_interval_s = parse_num::<u64>(key, value)?.max(1)
            }
            "replica.lag.time.max.ms" => self.replica_lag_time_max_ms = parse_num::<i64>(key, value)?.max(1),
            "controller.quorum.voters" => self.controller_voters = parse_voters(value)?,
            "process.roles" => self.process_roles = Some(ProcessRoles::parse(value)?),
            "cluster.id" => self.cluster_id = Some(value.trim().to_string()),
            "num.partitions" => self.num_partitions = parse_num::<i32>(key, value)?.max(1),
            "default.replication.factor" => self.default_replication_factor = parse_num(key, value)?,
            "auto.create.topics.enable" => self.auto_create_topics = parse_num(key, value)?,
            "socket.request.max.bytes" => self.socket_request_max_bytes = parse_num(key, value)?,
            "queued.max.request.bytes" => {
                let bytes: i64 = parse_num(key, value)?;
                if bytes == 0 || bytes < -1 {
                    return Err(format!(
                        "queued.max.request.bytes {bytes}: expected -1 or a positive size"
                    ));
                }
                self.queued_max_request_bytes = bytes;
            }
            "max.connections" => self.connection_limits.max_connections = parse_num(key, value)?,
            "max.connections.per.ip" => self.connection_limits.max_connections_per_ip = parse_num(key, value)?,
            "max.connections.per.ip.overrides" => self.connection_limits.per_ip_overrides = parse_overrides(value)?,
            "connections.max.idle.ms" => self.connections_max_idle_ms = parse_num(key, value)?,
            "max.incremental.fetch.session.cache.slots" => {
                self.max_incremental_fetch_session_cache_slots = parse_num(key, value)?
            }
            "log.retention.check.interval.ms" => {
                self.retention_check_interval_ms = parse_num::<u64>(key, value)?.max(1)
            }
            "log.retention.hours" => {
                let hours: i64 = parse_num(key, value)?;
                self.log_defaults.retention_ms = hours.saturating_mul(3_600_000);
            }
            "log.retention.minutes" => {
                let minutes: i64 = parse_num(key, value)?;
                self.log_defaults.retention_ms = minutes.saturating_mul(60_000);
            }
            "fetch.send.method" => self.fetch_send_method = value.parse()?,
            "metrics.listener" => {
                let (host, port) = parse_host_port(value)?;
                self.metrics_listen = format!("{host}:{port}")
                    .parse()
                    .map_err(|_| format!("metrics.listener '{value}' is not IP:PORT"))?;
            }
            "metrics.enabled" => self.metrics_enabled = parse_num(key, value)?,
            "logging.level" => self.logging_level = value.trim().to_string(),
            "logging.format" => {
                self.logging_json = match value.trim() {
                    "text" => false,
                    "json" => true,
                    other => return Err(format!("logging.format '{other}': expected text or json")),
                }
            }
            "log.roll.hours" => {
                let hours: i64 = parse_num(key, value)?;
                self.log_defaults.segment_ms = hours.saturating_mul(3_600_000);
            }
            other => {
                if let Some(result) = self.group.set(other, value) {
                    return result;
                }
                if let Some(result) = self.txn.set(other, value) {
                    return result;
                }
                match broker_config_key(other) {
                    Some(topic_key) => self.log_defaults.set(topic_key.name, value)?,
                    None => return Err(format!("unknown setting '{other}'")),
                }
            }
        }
        Ok(())
    }

    /// Applies every setting of a TOML file; unknown keys are errors.
    pub fn apply_toml(&mut self, text: &str) -> Result<(), String> {
        let table: toml::Table = text.parse().map_err(|e| format!("invalid TOML: {e}"))?;
        let mut flat = BTreeMap::new();
        flatten("", &table, &mut flat);
        // Hours before milliseconds, so that `log.retention.ms` wins as in Kafka.
        let (coarse, fine): (Vec<_>, Vec<_>) = flat
            .iter()
            .partition(|(k, _)| k.ends_with(".hours") || k.ends_with(".minutes"));
        for (key, value) in coarse.into_iter().chain(fine) {
            self.set(key, value)?;
        }
        Ok(())
    }

    /// Checks a config file without stopping at the first problem: returns the
    /// number of settings, or one sentence per unknown key (with the nearest
    /// known name) or bad value.
    pub fn check_toml(text: &str) -> Result<usize, Vec<String>> {
        let table: toml::Table = text.parse().map_err(|e| vec![format!("invalid TOML: {e}")])?;
        let mut flat = BTreeMap::new();
        flatten("", &table, &mut flat);
        let mut problems = Vec::new();
        for (key, value) in &flat {
            if let Err(e) = BrokerConfig::default().set(key, value) {
                match nearest_setting(key) {
                    Some(near) if e.starts_with("unknown setting") => {
                        problems.push(format!("{e}; did you mean '{near}'?"))
                    }
                    _ => problems.push(e),
                }
            }
        }
        if problems.is_empty() {
            Ok(flat.len())
        } else {
            Err(problems)
        }
    }

    pub fn load_file(&mut self, path: &Path) -> Result<(), String> {
        let text = std::fs::read_to_string(path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
        self.apply_toml(&text).map_err(|e| format!("{}: {e}", path.display()))
    }
}

// The metadata quorum's settings (cluster mode); `cluster::quorum` runs it.

/// Where this node's controller listens (voters only), who the voters are,
/// and which roles this node plays.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QuorumConfig {
    pub listen: Option<SocketAddr>,
    pub voters: Vec<(u64, SocketAddr)>,
    pub roles: ProcessRoles,
}

/// Kafka's `process.roles`: a broker, a controller (a voter of the metadata
/// quorum), or both.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ProcessRoles {
    pub broker: bool,
    pub controller: bool,
}

impl Default for ProcessRoles {
    fn default() -> Self {
        Self {
            broker: true,
            controller: true,
        }
    }
}

impl ProcessRoles {
    pub fn parse(value: &str) -> Result<Self, String> {
        let mut roles = Self {
            broker: false,
            controller: false,
        };
        for role in value.split(',').map(str::trim).filter(|r| !r.is_empty()) {
            match role {
                "broker" => roles.broker = true,
                "controller" => roles.controller = true,
                other => return Err(format!("process.roles: '{other}' is not broker or controller")),
            }
        }
        if !roles.broker && !roles.controller {
            return Err("process.roles names no role".into());
        }
        Ok(roles)
    }
}

/// Parses Kafka's `controller.quorum.voters` form: `1@host:port,2@host:port`.
pub fn parse_voters(value: &str) -> Result<Vec<(u64, SocketAddr)>, String> {
    let mut voters = Vec::new();
    for part in value.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        let (id, address) = part
            .split_once('@')
            .ok_or_else(|| format!("'{part}' is not ID@HOST:PORT"))?;
        let id: u64 = id.parse().map_err(|_| format!("'{id}' in '{part}' is not a node id"))?;
        if id == 0 {
            return Err("controller node ids start at 1 (Raft reserves 0)".into());
        }
        let address = address
            .to_socket_addrs()
            .ok()
            .and_then(|mut a| a.next())
            .ok_or_else(|| format!("cannot resolve '{address}'"))?;
        if voters.iter().any(|(v, _)| *v == id) {
            return Err(format!("node {id} is listed twice"));
        }
        voters.push((id, address));
    }
    if voters.is_empty() {
        return Err("the quorum needs at least one voter".into());
    }
    Ok(voters)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kafka_names_in_toml_both_flat_and_nested() {
        let mut c = BrokerConfig::default();
        c.apply_toml(
            r#"
            listeners = "PLAINTEXT://127.0.0.1:19092"
            "advertised.listeners" = "PLAINTEXT://broker.example:29092"
            "log.dirs" = "/tmp/x"
            num.partitions = 6
            "log.segment.bytes" = 1048576
            "log.retention.hours" = 1
            "log.retention.ms" = 5000
            "message.max.bytes" = 2000000
            "log.flush.interval.messages" = 10
            "broker.id" = 3
            "cluster.id" = "abc"
            "auto.create.topics.enable" = false
            "#,
        )
        .unwrap();
        assert_eq!(c.listen.port(), 19092);
        assert_eq!(c.advertised_endpoint(), ("broker.example".to_string(), 29092));
        assert_eq!(c.data_dir, PathBuf::from("/tmp/x"));
        assert_eq!(c.num_partitions, 6);
        assert_eq!(c.log_defaults.segment_bytes, 1 << 20);
        assert_eq!(c.log_defaults.retention_ms, 5000, "ms wins over hours");
        assert_eq!(c.log_defaults.max_message_bytes, 2_000_000);
        assert_eq!(c.log_defaults.flush_messages, 10);
        assert_eq!(c.broker_id, 3);
        assert_eq!(c.cluster_id.as_deref(), Some("abc"));
        assert!(!c.auto_create_topics);
    }

    #[test]
    fn check_names_every_problem_with_suggestions() {
        let problems = BrokerConfig::check_toml(
            "\"log.retention.msec\" = 1\n\"num.partitions\" = \"many\"\n\"lisenters\" = \"x:1\"\n\"zzz\" = 1\n",
        )
        .unwrap_err();
        assert_eq!(problems.len(), 4, "{problems:?}");
        assert!(
            problems.iter().any(|p| p.contains("did you mean 'log.retention.ms'")),
            "{problems:?}"
        );
        assert!(
            problems.iter().any(|p| p.contains("did you mean 'listeners'")),
            "{problems:?}"
        );
        assert!(
            problems
                .iter()
                .any(|p| p.contains("'zzz'") && !p.contains("did you mean")),
            "{problems:?}"
        );
        assert_eq!(BrokerConfig::check_toml("\"num.partitions\" = 3\n"), Ok(1));
    }

    #[test]
    fn the_sample_config_is_valid_and_names_every_setting() {
        let sample = include_str!("../../../../tuning/sluice.toml");
        assert!(
            BrokerConfig::check_toml(sample).is_ok(),
            "{:?}",
            BrokerConfig::check_toml(sample)
        );
        for key in known_settings() {
            assert!(
                sample.contains(&format!("\"{key}\"")),
                "tuning/sluice.toml does not mention {key}"
            );
        }
    }

    #[test]
    fn every_listed_setting_is_one_set_knows() {
        for key in known_settings() {
            let mut c = BrokerConfig::default();
            if let Err(e) = c.set(key, "not-a-valid-value-@@") {
                assert!(
                    !e.contains("unknown setting"),
                    "{key} is listed but unknown to set: {e}"
                );
            }
        }
    }

    #[test]
    fn unknown_keys_are_named() {
        let mut c = BrokerConfig::default();
        let e = c.apply_toml("\"log.retention.msec\" = 1").unwrap_err();
        assert!(e.contains("log.retention.msec"), "{e}");
    }
}
