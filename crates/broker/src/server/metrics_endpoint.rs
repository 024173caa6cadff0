//! The Prometheus endpoint: a small HTTP/1.1 server on its own thread (it is
//! not on the data path). Each scrape asks every shard for its numbers over
//! the mailboxes, then renders Prometheus text format 0.0.4.

use std::collections::{BTreeMap, HashMap};
use std::fmt::Write as _;
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::Arc;
use std::time::Duration;

use kafka_protocol::ResponseError;
use kafka_protocol::messages::ApiKey;
use tracing::{debug, info};

use crate::cluster::shard;
use crate::group::coordinator;
use crate::metrics::{FetchSessionMetrics, ShardMetrics, snapshot, thread_cpu_seconds};
use crate::net::admission::Admission;
use crate::runtime::ShardsHandle;

/// Bytes of an HTTP request head we read before answering.
const REQUEST_HEAD_MAX_BYTES: usize = 8192;
const CLIENT_TIMEOUT: Duration = Duration::from_secs(5);
/// Latency histogram buckets, in seconds.
const BUCKETS_S: &[f64] = &[
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

/// One partition's offsets and size at a scrape; ordered by topic, then partition.
#[derive(PartialEq, Eq, PartialOrd, Ord)]
struct PartitionReport {
    topic: String,
    partition: i32,
    log_end_offset: i64,
    high_watermark: i64,
    size_bytes: u64,
    flushed_offset: i64,
}

/// What one shard reports at a scrape.
struct ShardReport {
    metrics: ShardMetrics,
    cpu_seconds: f64,
    /// The partitions it owns.
    partitions: Vec<PartitionReport>,
    /// (group, topic, partition, committed offset) of the groups it coordinates.
    committed: Vec<(String, String, i32, i64)>,
    /// Cluster mode: partitions it leads whose ISR is smaller than their replicas.
    under_replicated: u64,
    /// (queued, max) request bytes: its share of `queued.max.request.bytes`.
    request_bytes: (usize, usize),
    /// Partition-log fsyncs of the flush policy.
    log_fsyncs: u64,
    /// When each open transaction it coordinates began (wall-clock ms).
    open_txn_starts_ms: Vec<i64>,
}

fn report() -> ShardReport {
    let partitions = shard::local()
        .owned_logs()
        .iter()
        .map(|log| {
            let tp = log.topic_partition();
            PartitionReport {
                topic: tp.topic.clone(),
                partition: tp.partition,
                log_end_offset: log.log_end_offset(),
                high_watermark: log.high_watermark(),
                size_bytes: log.size_bytes(),
                flushed_offset: log.flushed_offset(),
            }
        })
        .collect();
    let shard = shard::local();
    let metadata = shard.metadata();
    let me = shard.config.broker_id;
    let under_replicated = shard
        .leaderships
        .borrow()
        .keys()
        .filter(|tp| {
            metadata.topics.get(&tp.topic).is_some_and(|t| {
                let p = t.placement(tp.partition, me);
                p.isr.len() < p.replicas.len()
            })
        })
        .count() as u64;
    ShardReport {
        metrics: snapshot(),
        cpu_seconds: thread_cpu_seconds(),
        partitions,
        committed: coordinator::local().committed_offsets(),
        under_replicated,
        request_bytes: crate::runtime::request_bytes::queued_and_max(),
        log_fsyncs: crate::storage::fsyncs(),
        open_txn_starts_ms: crate::txn::coordinator::local().open_txn_starts_ms(),
    }
}

/// Serves `/metrics` on `listener` until the process exits.
pub fn spawn(listener: TcpListener, shards: ShardsHandle, admission: Arc<Admission>) -> std::io::Result<()> {
    info!(listen = %listener.local_addr()?, "metrics endpoint listening");
    std::thread::Builder::new().name("metrics".into()).spawn(move || {
        for stream in listener.incoming().flatten() {
            if let Err(e) = serve(stream, &shards, &admission) {
                debug!("metrics request failed: {e}");
            }
        }
    })?;
    Ok(())
}

fn serve(mut stream: TcpStream, shards: &ShardsHandle, admission: &Admission) -> std::io::Result<()> {
    stream.set_read_timeout(Some(CLIENT_TIMEOUT))?;
    stream.set_write_timeout(Some(CLIENT_TIMEOUT))?;
    let mut head = Vec::new();
    let mut buf = [0u8; 1024];
    // Bounded by REQUEST_HEAD_MAX_BYTES.
    while !head.windows(4).any(|w| w == b"\r\n\r\n") && head.len() < REQUEST_HEAD_MAX_BYTES {
        let n = stream.read(&mut buf)?;
        if n == 0 {
            break;
        }
        head.extend_from_slice(&buf[..n]);
    }
    let line = String::from_utf8_lossy(&head);
    let path = line.split_whitespace().nth(1).unwrap_or("");
    let (status, body) = if path == "/metrics" || path.starts_with("/metrics?") {
        ("200 OK", render(shards, admission))
    } else {
        ("404 Not Found", "metrics are at /metrics\n".to_string())
    };
    let response = format!(
        "HTTP/1.1 {status}\r\nContent-Type: text/plain; version=0.0.4; charset=utf-8\r\n\
         Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    stream.write_all(response.as_bytes())
}

fn escape(value: &str) -> String {
    value.replace('\\', "\\\\").replace('"', "\\\"").replace('\n', "\\n")
}

fn api_name(key: i16) -> String {
    ApiKey::try_from(key).map_or_else(|_| key.to_string(), |k| format!("{k:?}"))
}

fn error_name(code: i16) -> String {
    ResponseError::try_from_code(code).map_or_else(|| code.to_string(), |e| format!("{e:?}"))
}

fn header(out: &mut String, name: &str, kind: &str, help: &str) {
    let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
}

/// Gathers every shard's report and renders the whole exposition.
pub fn render(shards: &ShardsHandle, admission: &Admission) -> String {
    let reports = shards.collect_blocking(|| async { report() });
    let mut out = String::new();
    render_requests(&mut out, &reports);
    render_topics_and_partitions(&mut out, &reports);
    render_shards(&mut out, &reports, shards);
    render_group_lag(&mut out, &reports);
    render_transactions(&mut out, &reports);
    render_replication(&mut out, &reports);
    render_limits(&mut out, &reports, admission);
    out
}

/// How close the broker is to the limits a client could exhaust.
fn render_limits(out: &mut String, reports: &[ShardReport], admission: &Admission) {
    let limits = admission.limits();
    let gauges = [
        // Against the sum of sluice_connections over the shards.
        ("sluice_connections_max", "max.connections.", limits.max_connections),
        (
            "sluice_connections_per_ip_max",
            "max.connections.per.ip (without overrides).",
            limits.max_connections_per_ip,
        ),
    ];
    for (name, help, value) in gauges {
        header(out, name, "gauge", help);
        let _ = writeln!(out, "{name} {value}");
    }
    header(
        out,
        "sluice_connections_refused_total",
        "counter",
        "Connections closed at accept by max.connections or max.connections.per.ip.",
    );
    let refused: u64 = reports.iter().map(|r| r.metrics.connections_refused).sum();
    let _ = writeln!(out, "sluice_connections_refused_total {refused}");
    type Read = fn(&FetchSessionMetrics) -> u64;
    let sessions: [(&str, &str, &str, Read); 5] = [
        (
            "sluice_fetch_sessions",
            "gauge",
            "Incremental fetch sessions (KIP-227) cached.",
            |m| m.sessions as u64,
        ),
        (
            "sluice_fetch_session_partitions",
            "gauge",
            "Partitions the cached fetch sessions hold.",
            |m| m.partitions as u64,
        ),
        (
            "sluice_fetch_sessions_opened_total",
            "counter",
            "Fetch sessions opened.",
            |m| m.opened,
        ),
        (
            "sluice_fetch_session_evictions_total",
            "counter",
            "Fetch sessions evicted to make room for new ones.",
            |m| m.evicted,
        ),
        (
            "sluice_fetch_session_incremental_total",
            "counter",
            "Incremental fetches served from a session.",
            |m| m.incremental_fetches,
        ),
    ];
    for (name, kind, help, value) in sessions {
        header(out, name, kind, help);
        let total: u64 = reports.iter().map(|r| value(&r.metrics.fetch_sessions)).sum();
        let _ = writeln!(out, "{name} {total}");
    }
    let budgets = [
        (
            "sluice_queued_request_bytes",
            "Request bytes read but not yet handled, per shard.",
        ),
        (
            "sluice_queued_request_bytes_max",
            "Each shard's share of queued.max.request.bytes.",
        ),
    ];
    for (which, (name, help)) in budgets.into_iter().enumerate() {
        header(out, name, "gauge", help);
        for (i, r) in reports.iter().enumerate() {
            let value = if which == 0 {
                r.request_bytes.0
            } else {
                r.request_bytes.1
            };
            let _ = writeln!(out, "{name}{{shard=\"{i}\"}} {value}");
        }
    }
    header(
        out,
        "sluice_task_panics_total",
        "counter",
        "Shared tasks (offsets writers, cross-shard work) that panicked and were restarted.",
    );
    let mut panics: BTreeMap<&str, u64> = BTreeMap::new();
    for r in reports {
        for (kind, n) in &r.metrics.task_panics {
            *panics.entry(kind).or_default() += n;
        }
    }
    for kind in crate::metrics::TaskKind::ALL.map(crate::metrics::TaskKind::name) {
        let n = panics.get(kind).copied().unwrap_or(0);
        let _ = writeln!(out, "sluice_task_panics_total{{task=\"{kind}\"}} {n}");
    }
}

fn render_requests(out: &mut String, reports: &[ShardReport]) {
    let mut merged: BTreeMap<String, crate::metrics::ApiMetrics> = BTreeMap::new();
    for r in reports {
        for (key, api) in &r.metrics.apis {
            match merged.get_mut(&api_name(*key)) {
                Some(m) => {
                    m.requests += api.requests;
                    let _ = m.latency_us.add(&api.latency_us);
                    for (code, n) in &api.errors {
                        *m.errors.entry(*code).or_default() += n;
                    }
                }
                None => {
                    merged.insert(api_name(*key), api.clone());
                }
            }
        }
    }
    header(out, "sluice_requests_total", "counter", "Requests handled, per API.");
    for (api, m) in &merged {
        let _ = writeln!(out, "sluice_requests_total{{api=\"{api}\"}} {}", m.requests);
    }
    header(
        out,
        "sluice_request_errors_total",
        "counter",
        "Error codes returned, per API and error (per partition, member or resource).",
    );
    for (api, m) in &merged {
        let errors: BTreeMap<String, u64> = m.errors.iter().map(|(c, n)| (error_name(*c), *n)).collect();
        for (error, n) in errors {
            let _ = writeln!(
                out,
                "sluice_request_errors_total{{api=\"{api}\",error=\"{error}\"}} {n}"
            );
        }
    }
    header(
        out,
        "sluice_request_duration_seconds",
        "histogram",
        "Time from a request's arrival to its response, long polls included, per API.",
    );
    for (api, m) in &merged {
        let h = &m.latency_us;
        for le in BUCKETS_S {
            let count = h.count_between(0, (le * 1e6) as u64);
            let _ = writeln!(
                out,
                "sluice_request_duration_seconds_bucket{{api=\"{api}\",le=\"{le}\"}} {count}"
            );
        }
        let _ = writeln!(
            out,
            "sluice_request_duration_seconds_bucket{{api=\"{api}\",le=\"+Inf\"}} {}",
            h.len()
        );
        let sum_s = h.mean() * h.len() as f64 / 1e6;
        let _ = writeln!(out, "sluice_request_duration_seconds_sum{{api=\"{api}\"}} {sum_s}");
        let _ = writeln!(
            out,
            "sluice_request_duration_seconds_count{{api=\"{api}\"}} {}",
            h.len()
        );
    }
}

fn render_topics_and_partitions(out: &mut String, reports: &[ShardReport]) {
    let mut topics: BTreeMap<&str, (u64, u64)> = BTreeMap::new();
    for r in reports {
        for (topic, (bytes_in, bytes_out)) in &r.metrics.topic_bytes {
            let t = topics.entry(topic).or_default();
            t.0 += bytes_in;
            t.1 += bytes_out;
        }
    }
    header(
        out,
        "sluice_topic_bytes_in_total",
        "counter",
        "Record bytes produced, per topic.",
    );
    for (topic, (bytes_in, _)) in &topics {
        let _ = writeln!(out, "sluice_topic_bytes_in_total{{topic=\"{topic}\"}} {bytes_in}");
    }
    header(
        out,
        "sluice_topic_bytes_out_total",
        "counter",
        "Record bytes fetched, per topic.",
    );
    for (topic, (_, bytes_out)) in &topics {
        let _ = writeln!(out, "sluice_topic_bytes_out_total{{topic=\"{topic}\"}} {bytes_out}");
    }
    let mut partitions: Vec<&PartitionReport> = reports.iter().flat_map(|r| &r.partitions).collect();
    partitions.sort();
    // One gauge per field.
    type Column = fn(&PartitionReport) -> String;
    let gauges: [(&str, &str, Column); 4] = [
        (
            "sluice_partition_log_end_offset",
            "Log end offset (the end of the completed writes), per partition.",
            |p| p.log_end_offset.to_string(),
        ),
        (
            "sluice_partition_high_watermark",
            "High watermark (what consumers may read up to), per partition.",
            |p| p.high_watermark.to_string(),
        ),
        ("sluice_partition_size_bytes", "Bytes on disk, per partition.", |p| {
            p.size_bytes.to_string()
        }),
        (
            "sluice_partition_flushed_offset",
            "Everything below this offset is fsynced (flush.messages, flush.ms, rolled segments), per partition.",
            |p| p.flushed_offset.to_string(),
        ),
    ];
    for (name, help, column) in gauges {
        header(out, name, "gauge", help);
        for p in &partitions {
            let (topic, partition, value) = (&p.topic, p.partition, column(p));
            let _ = writeln!(out, "{name}{{topic=\"{topic}\",partition=\"{partition}\"}} {value}");
        }
    }
    header(
        out,
        "sluice_log_fsyncs_total",
        "counter",
        "Partition-log fsyncs done by the flush policy and after segment rolls.",
    );
    let fsyncs: u64 = reports.iter().map(|r| r.log_fsyncs).sum();
    let _ = writeln!(out, "sluice_log_fsyncs_total {fsyncs}");
}

fn render_replication(out: &mut String, reports: &[ShardReport]) {
    header(
        out,
        "sluice_under_replicated_partitions",
        "gauge",
        "Partitions this broker leads whose ISR is smaller than their replica set.",
    );
    let under: u64 = reports.iter().map(|r| r.under_replicated).sum();
    let _ = writeln!(out, "sluice_under_replicated_partitions {under}");
    header(
        out,
        "sluice_isr_shrinks_total",
        "counter",
        "ISR shrinks proposed by this broker's leaders.",
    );
    let shrinks: u64 = reports.iter().map(|r| r.metrics.isr_shrinks).sum();
    let _ = writeln!(out, "sluice_isr_shrinks_total {shrinks}");
    header(
        out,
        "sluice_isr_expands_total",
        "counter",
        "ISR expansions proposed by this broker's leaders.",
    );
    let expands: u64 = reports.iter().map(|r| r.metrics.isr_expands).sum();
    let _ = writeln!(out, "sluice_isr_expands_total {expands}");
}

fn render_shards(out: &mut String, reports: &[ShardReport], shards: &ShardsHandle) {
    header(
        out,
        "sluice_connections",
        "gauge",
        "Open client connections, per shard.",
    );
    for (i, r) in reports.iter().enumerate() {
        let _ = writeln!(
            out,
            "sluice_connections{{shard=\"{i}\"}} {}",
            r.metrics.connections_open
        );
    }
    header(
        out,
        "sluice_connections_accepted_total",
        "counter",
        "Client connections accepted, per shard.",
    );
    for (i, r) in reports.iter().enumerate() {
        let _ = writeln!(
            out,
            "sluice_connections_accepted_total{{shard=\"{i}\"}} {}",
            r.metrics.connections_accepted
        );
    }
    header(
        out,
        "sluice_shard_busy_seconds_total",
        "counter",
        "CPU time of each shard's thread (time not spent waiting for io_uring completions).",
    );
    for (i, r) in reports.iter().enumerate() {
        let _ = writeln!(
            out,
            "sluice_shard_busy_seconds_total{{shard=\"{i}\"}} {}",
            r.cpu_seconds
        );
    }
    header(
        out,
        "sluice_shard_mailbox_depth",
        "gauge",
        "Cross-shard tasks waiting in each shard's mailbox.",
    );
    for i in 0..shards.count() {
        let _ = writeln!(
            out,
            "sluice_shard_mailbox_depth{{shard=\"{i}\"}} {}",
            shards.mailbox_depth(i)
        );
    }
}

fn render_transactions(out: &mut String, reports: &[ShardReport]) {
    let starts: Vec<i64> = reports.iter().flat_map(|r| &r.open_txn_starts_ms).copied().collect();
    header(
        out,
        "sluice_transactions_open",
        "gauge",
        "Transactions this broker coordinates that are open or being completed.",
    );
    let _ = writeln!(out, "sluice_transactions_open {}", starts.len());
    header(
        out,
        "sluice_transaction_oldest_open_age_ms",
        "gauge",
        "How long the oldest open transaction has run (0 with none open).",
    );
    let age_ms = starts
        .iter()
        .min()
        .map_or(0, |start| (crate::model::now_ms() - start).max(0));
    let _ = writeln!(out, "sluice_transaction_oldest_open_age_ms {age_ms}");
}

fn render_group_lag(out: &mut String, reports: &[ShardReport]) {
    let ends: HashMap<(&str, i32), i64> = reports
        .iter()
        .flat_map(|r| &r.partitions)
        .map(|p| ((p.topic.as_str(), p.partition), p.high_watermark))
        .collect();
    let mut committed: Vec<&(String, String, i32, i64)> = reports.iter().flat_map(|r| &r.committed).collect();
    committed.sort();
    header(
        out,
        "sluice_consumer_group_lag",
        "gauge",
        "High watermark minus the committed offset, per group and partition (what Kafka's tools call lag).",
    );
    for (group, topic, p, offset) in committed {
        if let Some(end) = ends.get(&(topic.as_str(), *p)) {
            let lag = (end - offset).max(0);
            let group = escape(group);
            let _ = writeln!(
                out,
                "sluice_consumer_group_lag{{group=\"{group}\",topic=\"{topic}\",partition=\"{p}\"}} {lag}"
            );
        }
    }
}
