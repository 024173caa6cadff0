//! Metrics: counters and histograms kept per shard, in thread-locals, and
//! read only when scraped (`server::metrics_endpoint`, which gathers them
//! with the shards' partition and group state). Recording never takes a lock and never
//! writes memory another shard writes: the only shared state is the
//! `ENABLED` flag, set once at start and read-only afterwards.

use std::cell::RefCell;
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use hdrhistogram::Histogram;

static ENABLED: AtomicBool = AtomicBool::new(false);

/// Latencies are kept in microseconds, from 1 µs to 10 minutes, 2 significant digits.
const LATENCY_MAX_US: u64 = 600_000_000;
const LATENCY_SIGNIFICANT_DIGITS: u8 = 2;

/// Turns recording on (the broker does, unless `metrics.enabled = false`).
pub fn enable() {
    ENABLED.store(true, Ordering::Relaxed);
}

fn enabled() -> bool {
    ENABLED.load(Ordering::Relaxed)
}

/// One API's numbers on one shard.
#[derive(Clone)]
pub struct ApiMetrics {
    pub requests: u64,
    pub latency_us: Histogram<u64>,
    /// Error code → how many times it was returned (per partition, member or resource).
    pub errors: HashMap<i16, u64>,
}

impl ApiMetrics {
    fn new() -> Self {
        Self {
            requests: 0,
            latency_us: Histogram::new_with_max(LATENCY_MAX_US, LATENCY_SIGNIFICANT_DIGITS)
                .expect("valid histogram bounds"),
            errors: HashMap::new(),
        }
    }
}

/// Everything one shard counted; cloned whole when scraped.
#[derive(Clone, Default)]
pub struct ShardMetrics {
    pub apis: HashMap<i16, ApiMetrics>,
    /// Topic → (record bytes produced, record bytes fetched).
    pub topic_bytes: HashMap<String, (u64, u64)>,
    pub connections_open: i64,
    pub connections_accepted: u64,
    /// Cluster mode: ISR changes this shard's led partitions proposed.
    pub isr_shrinks: u64,
    pub isr_expands: u64,
    /// Shared tasks that panicked and were restarted, by kind.
    pub task_panics: HashMap<&'static str, u64>,
    /// Connections closed at accept by `max.connections` / `max.connections.per.ip`.
    pub connections_refused: u64,
    pub fetch_sessions: FetchSessionMetrics,
}

/// One shard's fetch session cache (KIP-227).
#[derive(Clone, Copy, Default)]
pub struct FetchSessionMetrics {
    /// Sessions cached now, and the partitions they hold.
    pub sessions: usize,
    pub partitions: usize,
    /// Since start: sessions opened, evicted to make room, and incremental fetches served.
    pub opened: u64,
    pub evicted: u64,
    pub incremental_fetches: u64,
}

/// Long-lived tasks that serve many clients; a panic in one is counted and
/// the task restarted (or its partition reloaded).
#[derive(Debug, Clone, Copy)]
pub enum TaskKind {
    GroupWriter,
    RemoteTask,
    Maintenance,
    GroupTicks,
    TxnTicks,
    Follower,
}

impl TaskKind {
    pub const ALL: [TaskKind; 6] = [
        TaskKind::GroupWriter,
        TaskKind::RemoteTask,
        TaskKind::Maintenance,
        TaskKind::GroupTicks,
        TaskKind::TxnTicks,
        TaskKind::Follower,
    ];

    pub fn name(self) -> &'static str {
        match self {
            TaskKind::GroupWriter => "group_writer",
            TaskKind::RemoteTask => "remote_task",
            TaskKind::Maintenance => "maintenance",
            TaskKind::GroupTicks => "group_ticks",
            TaskKind::TxnTicks => "txn_ticks",
            TaskKind::Follower => "follower",
        }
    }
}

pub fn record_task_panic(kind: TaskKind) {
    with_local(|m| *m.task_panics.entry(kind.name()).or_default() += 1);
}

pub fn record_connection_refused() {
    with_local(|m| m.connections_refused += 1);
}

/// The shard's fetch session cache as it is now.
pub fn record_fetch_sessions(now: FetchSessionMetrics) {
    with_local(|m| m.fetch_sessions = now);
}

thread_local! {
    static LOCAL: RefCell<ShardMetrics> = RefCell::new(ShardMetrics::default());
}

fn with_local(f: impl FnOnce(&mut ShardMetrics)) {
    if enabled() {
        LOCAL.with(|m| f(&mut m.borrow_mut()));
    }
}

/// A led partition's ISR change was proposed (ISR churn).
pub fn record_isr_change(expand: bool) {
    with_local(|m| {
        if expand {
            m.isr_expands += 1;
        } else {
            m.isr_shrinks += 1;
        }
    });
}

/// One request handled, and how long it took (long polls included, as Kafka's TotalTimeMs).
pub fn record_request(api_key: i16, elapsed: Duration) {
    with_local(|m| {
        let api = m.apis.entry(api_key).or_insert_with(ApiMetrics::new);
        api.requests += 1;
        let us = (elapsed.as_micros() as u64).clamp(1, LATENCY_MAX_US);
        api.latency_us.saturating_record(us);
    });
}

/// An error code returned by `api_key`; NONE is not counted.
pub fn record_error(api_key: i16, code: i16) {
    if code == 0 {
        return;
    }
    with_local(|m| {
        let api = m.apis.entry(api_key).or_insert_with(ApiMetrics::new);
        *api.errors.entry(code).or_default() += 1;
    });
}

pub fn record_bytes_in(topic: &str, bytes: u64) {
    with_local(|m| topic_entry(m, topic).0 += bytes);
}

pub fn record_bytes_out(topic: &str, bytes: u64) {
    with_local(|m| topic_entry(m, topic).1 += bytes);
}

fn topic_entry<'a>(m: &'a mut ShardMetrics, topic: &str) -> &'a mut (u64, u64) {
    // Allocates a key once per topic, not per request.
    if !m.topic_bytes.contains_key(topic) {
        m.topic_bytes.insert(topic.to_string(), (0, 0));
    }
    m.topic_bytes.get_mut(topic).expect("inserted above")
}

pub fn connection_opened() {
    with_local(|m| {
        m.connections_open += 1;
        m.connections_accepted += 1;
    });
}

pub fn connection_closed() {
    with_local(|m| m.connections_open -= 1);
}

/// This shard's numbers so far.
pub fn snapshot() -> ShardMetrics {
    LOCAL.with(|m| m.borrow().clone())
}

/// The calling thread's CPU time (utime + stime), from /proc/thread-self/stat.
pub fn thread_cpu_seconds() -> f64 {
    cpu_seconds_from_stat("/proc/thread-self/stat")
}

/// utime + stime, in seconds, from a /proc `stat` file (a process's or a thread's).
pub fn cpu_seconds_from_stat(path: &str) -> f64 {
    let Ok(stat) = std::fs::read_to_string(path) else {
        return 0.0;
    };
    // Fields after the parenthesised name; utime and stime are the 14th and 15th.
    let Some((_, rest)) = stat.rsplit_once(')') else {
        return 0.0;
    };
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let ticks: f64 = [11, 12]
        .iter()
        .filter_map(|i| fields.get(*i).and_then(|f| f.parse::<f64>().ok()))
        .sum();
    // SAFETY: sysconf has no preconditions.
    let per_second = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as f64;
    ticks / per_second
}
