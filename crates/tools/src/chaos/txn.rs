//! The transactional workload: writers (librdkafka transactional producers,
//! as a user runs them) each running transactions of `records_per_txn`
//! records spread over the partitions of a topic of their own, committing
//! most and aborting one in `ABORT_EVERY` on purpose; a live read_committed
//! reader; and a final read_committed read of every partition. `check_txns`
//! looks for aborted reads, torn transactions, lost commits, duplicates and
//! reordering, and for how long each fault kept transactions from committing.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use rdkafka::config::{ClientConfig, RDKafkaLogLevel};
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::KafkaError;
use rdkafka::message::Message;
use rdkafka::producer::{BaseRecord, DeliveryResult, Producer, ProducerContext, ThreadedProducer};
use rdkafka::types::RDKafkaErrorCode;
use rdkafka::{ClientContext, Offset, TopicPartitionList};
use serde::Serialize;

use super::history::Fault;
use super::workload::{Quiet, ms_since};

pub const TOPIC: &str = "chaos-txn";
/// Every ABORT_EVERY-th transaction of a writer is aborted on purpose.
const ABORT_EVERY: u64 = 4;
/// librdkafka's `transaction.timeout.ms`: a writer cut off this long has its
/// transaction aborted by the coordinator.
const TRANSACTION_TIMEOUT_MS: u64 = 60_000;
/// How long one transactional call (init, commit, abort) may take in all,
/// over librdkafka's own retries and ours: past it the writer starts over.
const CALL_TIMEOUT: Duration = Duration::from_secs(90);
/// How long the final read may take.
const FINAL_READ_TIMEOUT: Duration = Duration::from_secs(120);

pub struct TxnSpec {
    pub bootstrap: String,
    pub partitions: i32,
    pub writers: u32,
    pub records_per_txn: u32,
    /// Transactions per second, per writer.
    pub rate: u32,
    /// librdkafka's `debug` for the writers, whose logs then go to `log_dir`.
    pub client_debug: Option<String>,
    pub log_dir: std::path::PathBuf,
}

/// A record's value names its transaction and place in it: `t<writer>:<txn>:<index>`.
pub fn txn_value(writer: u32, txn: u64, index: u32) -> String {
    format!("t{writer}:{txn}:{index}")
}

/// The `(writer, txn, index)` a value names, if it is one of the workload's.
pub fn parse_txn_value(value: &[u8]) -> Option<(u32, u64, u32)> {
    let text = std::str::from_utf8(value).ok()?.strip_prefix('t')?;
    let mut parts = text.splitn(3, ':');
    let writer = parts.next()?.parse().ok()?;
    let txn = parts.next()?.parse().ok()?;
    let index = parts.next()?.parse().ok()?;
    Some((writer, txn, index))
}

/// How a transaction ended, as its writer was told.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "outcome", rename_all = "snake_case")]
pub enum TxnOutcome {
    /// `commit_transaction` returned success.
    Committed,
    /// Aborted on purpose, or after an error that required it; `error` says which.
    Aborted { error: Option<String> },
    /// The writer could not learn the outcome (a fatal error, or a call that
    /// timed out for good): all of it or none of it may be visible.
    Unknown { error: String },
}

#[derive(Debug, Clone, Serialize)]
pub struct Txn {
    pub writer: u32,
    pub txn: u64,
    /// The partition of each record, by index.
    pub partitions: Vec<i32>,
    /// The offset each record was acknowledged at (-1: no report).
    pub offsets: Vec<i64>,
    pub began_ms: u64,
    pub ended_ms: u64,
    pub outcome: TxnOutcome,
}

/// A record the live read_committed reader read.
#[derive(Debug, Clone, Serialize)]
pub struct TxnRead {
    pub partition: i32,
    pub offset: i64,
    pub value: String,
    pub at_ms: u64,
}

#[derive(Debug, Default)]
pub struct TxnHistory {
    pub writers: u32,
    pub txns: Vec<Txn>,
    pub reads: Vec<TxnRead>,
    /// The final read_committed read, indexed by partition: `(offset, value)`.
    pub logs: Vec<Vec<(i64, String)>>,
}

/// Delivery reports of the current transaction, by record index.
struct Reports {
    offsets: Mutex<Vec<i64>>,
    /// The client's log with `--txn-client-debug`, and the campaign's start.
    log: Option<(Mutex<std::io::BufWriter<std::fs::File>>, Instant)>,
}

impl ClientContext for Reports {
    fn log(&self, _: RDKafkaLogLevel, facility: &str, message: &str) {
        use std::io::Write;
        if let Some((file, start)) = &self.log {
            let mut file = file.lock().expect("not poisoned");
            // A lost log line is not worth failing the campaign over.
            let _ = writeln!(file, "{} {facility} {message}", ms_since(*start));
            let _ = file.flush();
        }
    }
    fn error(&self, _: KafkaError, _: &str) {}
}

impl ProducerContext for Reports {
    type DeliveryOpaque = Box<u32>;

    fn delivery(&self, result: &DeliveryResult<'_>, index: Self::DeliveryOpaque) {
        if let Ok(message) = result
            && let Some(slot) = self.offsets.lock().expect("not poisoned").get_mut(*index as usize)
        {
            *slot = message.offset();
        }
    }
}

type Writer = ThreadedProducer<Reports>;

fn transactional_id(writer: u32) -> String {
    format!("sluice-chaos-txn-{writer}")
}

/// A new producer for `writer`'s transactional id, initialized: this fences
/// any earlier one and settles the transaction it left.
fn writer_client(spec: &TxnSpec, writer: u32, start: Instant) -> anyhow::Result<Writer> {
    let mut config = ClientConfig::new();
    let log = match &spec.client_debug {
        Some(contexts) => {
            config.set("debug", contexts).set_log_level(RDKafkaLogLevel::Debug);
            let path = spec.log_dir.join(format!("txn-writer-{writer}.log"));
            let file = std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(&path)
                .with_context(|| format!("cannot open {}", path.display()))?;
            Some((Mutex::new(std::io::BufWriter::new(file)), start))
        }
        None => None,
    };
    let client: Writer = config
        .set("bootstrap.servers", &spec.bootstrap)
        .set("transactional.id", transactional_id(writer))
        .set("transaction.timeout.ms", TRANSACTION_TIMEOUT_MS.to_string())
        .set("message.timeout.ms", TRANSACTION_TIMEOUT_MS.to_string())
        .set("linger.ms", "5")
        .create_with_context(Reports {
            offsets: Mutex::new(Vec::new()),
            log,
        })
        .context("cannot create a transactional producer")?;
    retrying(|| client.init_transactions(Duration::from_secs(30)))
        .map_err(|e| anyhow::anyhow!("writer {writer}: init_transactions: {e}"))?;
    Ok(client)
}

/// Retries a transactional call while librdkafka says it may, up to
/// CALL_TIMEOUT: a retriable error, or a flush (commit_transaction's first
/// step) that timed out, which librdkafka lets the caller simply call again.
fn retrying(mut call: impl FnMut() -> Result<(), KafkaError>) -> Result<(), KafkaError> {
    let deadline = Instant::now() + CALL_TIMEOUT;
    // Bounded by the deadline.
    loop {
        let result = call();
        let may_retry = match &result {
            Err(KafkaError::Transaction(e)) => e.is_retriable(),
            Err(KafkaError::Flush(RDKafkaErrorCode::OperationTimedOut)) => true,
            _ => false,
        };
        if !may_retry || Instant::now() >= deadline {
            return result;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn requires_abort(e: &KafkaError) -> bool {
    matches!(e, KafkaError::Transaction(e) if e.txn_requires_abort())
}

/// Where a transaction's record goes: consecutive partitions, from one that
/// moves on with each transaction.
fn partition_of(spec: &TxnSpec, writer: u32, txn: u64, index: u32) -> i32 {
    let first = txn * u64::from(spec.records_per_txn) + u64::from(writer);
    ((first + u64::from(index)) % spec.partitions as u64) as i32
}

/// Sends one transaction's records and ends it as planned; the outcome is
/// what the writer learnt.
fn run_txn(spec: &TxnSpec, client: &Writer, writer: u32, txn: u64) -> TxnOutcome {
    let n = spec.records_per_txn;
    *client.context().offsets.lock().expect("not poisoned") = vec![-1; n as usize];
    if let Err(e) = client.begin_transaction() {
        return TxnOutcome::Unknown {
            error: format!("begin_transaction: {e}"),
        };
    }
    for index in 0..n {
        let partition = partition_of(spec, writer, txn, index);
        let value = txn_value(writer, txn, index);
        let record: BaseRecord<'_, (), str, _> = BaseRecord::with_opaque_to(TOPIC, Box::new(index))
            .payload(value.as_str())
            .partition(partition);
        if let Err(e) = crate::cli::console::send_retrying(client, record) {
            return abort(client, Some(format!("send: {e}")));
        }
    }
    if txn % ABORT_EVERY == ABORT_EVERY - 1 {
        // Its records are in the log first, so read_committed has something
        // to hide. (An abort while librdkafka still retries the partitions'
        // registration sends EndTxn for a transaction the coordinator never
        // opened, which it refuses with INVALID_TXN_STATE: librdkafka's open
        // issue #4849, reported against Kafka.)
        if let Err(e) = retrying(|| client.flush(Duration::from_secs(30))) {
            return abort(client, Some(format!("flush: {e}")));
        }
        return abort(client, None);
    }
    match retrying(|| client.commit_transaction(Duration::from_secs(30))) {
        Ok(()) => TxnOutcome::Committed,
        Err(e) if requires_abort(&e) => abort(client, Some(format!("commit_transaction: {e}"))),
        Err(e) => TxnOutcome::Unknown {
            error: format!("commit_transaction: {e}"),
        },
    }
}

fn abort(client: &Writer, error: Option<String>) -> TxnOutcome {
    match retrying(|| client.abort_transaction(Duration::from_secs(30))) {
        Ok(()) => TxnOutcome::Aborted { error },
        Err(e) => TxnOutcome::Unknown {
            error: format!("abort_transaction: {e} (after {error:?})"),
        },
    }
}

/// One writer until `stop`. After an outcome it could not learn, it starts
/// over with a new producer, whose initialization settles the transaction.
fn run_writer(spec: &TxnSpec, writer: u32, start: Instant, stop: &AtomicBool) -> anyhow::Result<Vec<Txn>> {
    let mut txns = Vec::new();
    let mut client = writer_client(spec, writer, start)?;
    let interval = Duration::from_secs_f64(1.0 / f64::from(spec.rate.max(1)));
    let mut next = Instant::now();
    // Bounded by `stop`.
    for txn in 0.. {
        if stop.load(Ordering::Relaxed) {
            break;
        }
        let began_ms = ms_since(start);
        let outcome = run_txn(spec, &client, writer, txn);
        let offsets = std::mem::take(&mut *client.context().offsets.lock().expect("not poisoned"));
        let unknown = matches!(outcome, TxnOutcome::Unknown { .. });
        txns.push(Txn {
            writer,
            txn,
            partitions: (0..spec.records_per_txn)
                .map(|index| partition_of(spec, writer, txn, index))
                .collect(),
            offsets,
            began_ms,
            ended_ms: ms_since(start),
            outcome,
        });
        if unknown {
            drop(client);
            client = writer_client(spec, writer, start)?;
        }
        next += interval;
        match next.checked_duration_since(Instant::now()) {
            Some(wait) => std::thread::sleep(wait),
            None => next = Instant::now(), // behind (a fault): no burst to catch up
        }
    }
    Ok(txns)
}

fn reader(spec: &TxnSpec, isolation_level: &str) -> anyhow::Result<BaseConsumer<Quiet>> {
    let client: BaseConsumer<Quiet> = ClientConfig::new()
        .set("bootstrap.servers", &spec.bootstrap)
        .set("group.id", "sluice-chaos-txn") // librdkafka wants one; nothing is committed
        .set("enable.auto.commit", "false")
        .set("enable.partition.eof", "true")
        .set("auto.offset.reset", "earliest")
        .set("isolation.level", isolation_level)
        .create_with_context(Quiet)
        .context("cannot create a consumer")?;
    let mut assignment = TopicPartitionList::new();
    for p in 0..spec.partitions {
        assignment.add_partition_offset(TOPIC, p, Offset::Beginning)?;
    }
    client.assign(&assignment)?;
    Ok(client)
}

/// What a live read_committed reader saw, until `stop`.
fn read_live(spec: &TxnSpec, start: Instant, stop: &AtomicBool) -> anyhow::Result<Vec<TxnRead>> {
    let client = reader(spec, "read_committed")?;
    let mut reads = Vec::new();
    // Bounded by `stop`.
    while !stop.load(Ordering::Relaxed) {
        // Errors (a broker down, a leader moving) are librdkafka's to retry.
        if let Some(Ok(message)) = client.poll(Duration::from_millis(100)) {
            reads.push(TxnRead {
                partition: message.partition(),
                offset: message.offset(),
                value: String::from_utf8_lossy(message.payload().unwrap_or_default()).into_owned(),
                at_ms: ms_since(start),
            });
        }
    }
    Ok(reads)
}

/// Every committed record of every partition. First waits until each
/// partition's last stable offset has reached its high watermark (every
/// writer has ended its last transaction, so only markers still being
/// written hold it back), then reads each to its end.
pub fn read_final(spec: &TxnSpec) -> anyhow::Result<Vec<Vec<(i64, String)>>> {
    let deadline = Instant::now() + FINAL_READ_TIMEOUT;
    let committed = reader(spec, "read_committed")?;
    let uncommitted = reader(spec, "read_uncommitted")?;
    for p in 0..spec.partitions {
        // Bounded by the deadline.
        loop {
            let stable = committed
                .fetch_watermarks(TOPIC, p, Duration::from_secs(5))
                .map(|w| w.1);
            let high = uncommitted
                .fetch_watermarks(TOPIC, p, Duration::from_secs(5))
                .map(|w| w.1);
            match (stable, high) {
                (Ok(stable), Ok(high)) if stable == high => break,
                _ if Instant::now() > deadline => {
                    bail!("partition {p} of {TOPIC}: the last stable offset did not reach the high watermark")
                }
                _ => std::thread::sleep(Duration::from_millis(200)),
            }
        }
    }
    drop(uncommitted);
    let mut logs = vec![Vec::new(); spec.partitions as usize];
    let mut at_end = vec![false; spec.partitions as usize];
    // Bounded by the deadline.
    while !at_end.iter().all(|e| *e) {
        if Instant::now() > deadline {
            bail!("the final read of {TOPIC} stalled: at the end of {at_end:?}");
        }
        // Only the assigned partitions can come back; anything else is ignored, not indexed.
        match committed.poll(Duration::from_millis(100)) {
            Some(Ok(message)) => {
                if let Some(log) = logs.get_mut(message.partition() as usize) {
                    let value = String::from_utf8_lossy(message.payload().unwrap_or_default()).into_owned();
                    log.push((message.offset(), value));
                }
            }
            Some(Err(KafkaError::PartitionEOF(p))) => {
                if let Some(end) = at_end.get_mut(p as usize) {
                    *end = true;
                }
            }
            _ => {}
        }
    }
    Ok(logs)
}

pub struct Running {
    writers: Vec<std::thread::JoinHandle<anyhow::Result<Vec<Txn>>>>,
    reader: Option<std::thread::JoinHandle<anyhow::Result<Vec<TxnRead>>>>,
}

/// Runs the writers and the live reader on threads of their own until `stop`.
pub fn spawn(spec: &Arc<TxnSpec>, start: Instant, stop: &Arc<AtomicBool>) -> Running {
    let writers = (0..spec.writers)
        .map(|writer| {
            let (spec, stop) = (Arc::clone(spec), Arc::clone(stop));
            std::thread::spawn(move || run_writer(&spec, writer, start, &stop))
        })
        .collect();
    let reader = (spec.writers > 0).then(|| {
        let (spec, stop) = (Arc::clone(spec), Arc::clone(stop));
        std::thread::spawn(move || read_live(&spec, start, &stop))
    });
    Running { writers, reader }
}

impl Running {
    /// Joins the writers and the reader, then reads the topic to its end.
    pub fn join(self, spec: &TxnSpec) -> anyhow::Result<TxnHistory> {
        let mut history = TxnHistory {
            writers: spec.writers,
            ..TxnHistory::default()
        };
        for writer in self.writers {
            history
                .txns
                .extend(writer.join().map_err(|_| anyhow::anyhow!("a writer panicked"))??);
        }
        if let Some(reader) = self.reader {
            history.reads = reader
                .join()
                .map_err(|_| anyhow::anyhow!("the txn reader panicked"))??;
            history.logs = read_final(spec)?;
        }
        Ok(history)
    }
}

/// Where each record of the final read is: `(writer, txn, index)` → `(partition, offset)`s.
type Stored = HashMap<(u32, u64, u32), Vec<(i32, i64)>>;

/// What the transaction checker found.
#[derive(Debug, Default, Serialize)]
pub struct TxnVerdict {
    pub writers: u32,
    pub transactions: u64,
    pub committed: u64,
    /// Aborted on purpose.
    pub aborted: u64,
    /// Aborted because an error required it: a liveness failure.
    pub failed: u64,
    /// Outcome unknown to the writer: a liveness failure, checked for all-or-nothing.
    pub unknown: u64,
    /// A committed transaction none of whose records is visible.
    pub lost_commits: u64,
    /// A transaction some but not all of whose records are visible.
    pub torn: u64,
    /// A record of an aborted transaction that read_committed returned.
    pub aborted_reads: u64,
    pub duplicated: u64,
    /// A committed record stored at another offset than the one acknowledged.
    pub moved: u64,
    /// A writer's records out of order within a partition.
    pub reordered: u64,
    /// Read by the live reader, then gone from the final read.
    pub vanished_reads: u64,
    /// For each fault, the longest time some writer committed nothing.
    pub recovery_ms: Vec<u64>,
}

impl TxnVerdict {
    pub fn safe(&self) -> bool {
        self.lost_commits
            + self.torn
            + self.aborted_reads
            + self.duplicated
            + self.moved
            + self.reordered
            + self.vanished_reads
            == 0
    }

    /// Every transaction ended as its writer meant it to. How long a writer
    /// went without a commit is reported, not bounded: a transaction needs
    /// its coordinator and every partition it writes, so it waits for the
    /// slowest of their moves, and the bound is the partitions'.
    pub fn live(&self) -> bool {
        self.failed + self.unknown == 0
    }
}

/// Checks the final read (and the live reader's) against what each writer was told.
pub fn check_txns(history: &TxnHistory, faults: &[Fault], duration_ms: u64, examples: &mut Vec<String>) -> TxnVerdict {
    let mut verdict = TxnVerdict {
        writers: history.writers,
        transactions: history.txns.len() as u64,
        ..TxnVerdict::default()
    };
    let mut stored: Stored = HashMap::new();
    for (partition, log) in history.logs.iter().enumerate() {
        let mut last: HashMap<u32, (u64, u32)> = HashMap::new();
        for (offset, value) in log {
            let Some((writer, txn, index)) = parse_txn_value(value.as_bytes()) else {
                continue;
            };
            stored
                .entry((writer, txn, index))
                .or_default()
                .push((partition as i32, *offset));
            if let Some(&before) = last.get(&writer)
                && (txn, index) < before
            {
                verdict.reordered += 1;
                examples.push(format!(
                    "txn: partition {partition} offset {offset} holds {value} after t{writer}:{}:{}",
                    before.0, before.1
                ));
            }
            last.insert(writer, (txn, index));
        }
    }
    for places in stored.values().filter(|p| p.len() > 1) {
        verdict.duplicated += places.len() as u64 - 1;
    }
    for txn in &history.txns {
        check_txn(txn, &stored, &mut verdict, examples);
    }
    check_live_reads(history, &stored, &mut verdict, examples);
    verdict.recovery_ms = recoveries(history, faults, duration_ms);
    verdict
}

fn check_txn(txn: &Txn, stored: &Stored, verdict: &mut TxnVerdict, examples: &mut Vec<String>) {
    let n = txn.partitions.len();
    let visible = (0..n as u32)
        .filter(|i| stored.contains_key(&(txn.writer, txn.txn, *i)))
        .count();
    let name = format!("t{}:{}", txn.writer, txn.txn);
    if visible > 0 && visible < n {
        verdict.torn += 1;
        examples.push(format!(
            "txn: {name} ({:?}) torn: {visible} of its {n} records visible",
            txn.outcome
        ));
    }
    match &txn.outcome {
        TxnOutcome::Committed => {
            verdict.committed += 1;
            if visible == 0 {
                verdict.lost_commits += 1;
                examples.push(format!(
                    "txn: {name} committed at {} ms, none of it visible",
                    txn.ended_ms
                ));
            }
            for (index, (partition, offset)) in txn.partitions.iter().zip(&txn.offsets).enumerate() {
                let at = stored.get(&(txn.writer, txn.txn, index as u32));
                if *offset >= 0 && at.is_some_and(|places| !places.contains(&(*partition, *offset))) {
                    verdict.moved += 1;
                    examples.push(format!(
                        "txn: {name}:{index} acknowledged at {partition}/{offset}, stored at {at:?}"
                    ));
                }
            }
        }
        TxnOutcome::Aborted { error } => {
            match error {
                None => verdict.aborted += 1,
                Some(error) => {
                    verdict.failed += 1;
                    examples.push(format!("txn: {name} aborted at {} ms after {error}", txn.ended_ms));
                }
            }
            if visible > 0 {
                verdict.aborted_reads += visible as u64;
                examples.push(format!(
                    "txn: {name} aborted, {visible} of its records visible to read_committed"
                ));
            }
        }
        TxnOutcome::Unknown { error } => {
            verdict.unknown += 1;
            examples.push(format!("txn: {name} ended unknown at {} ms: {error}", txn.ended_ms));
        }
    }
}

/// A live read_committed read must be in the final read too, at the same
/// offset, and never of an aborted transaction.
fn check_live_reads(history: &TxnHistory, stored: &Stored, verdict: &mut TxnVerdict, examples: &mut Vec<String>) {
    let aborted: std::collections::HashSet<(u32, u64)> = history
        .txns
        .iter()
        .filter(|t| matches!(t.outcome, TxnOutcome::Aborted { .. }))
        .map(|t| (t.writer, t.txn))
        .collect();
    for read in &history.reads {
        let Some((writer, txn, index)) = parse_txn_value(read.value.as_bytes()) else {
            continue;
        };
        if aborted.contains(&(writer, txn)) {
            verdict.aborted_reads += 1;
            examples.push(format!(
                "txn: the live reader read {} of an aborted transaction at {} ms",
                read.value, read.at_ms
            ));
        } else if !stored
            .get(&(writer, txn, index))
            .is_some_and(|places| places.contains(&(read.partition, read.offset)))
        {
            verdict.vanished_reads += 1;
            examples.push(format!(
                "txn: the live reader read {} at {}/{}, not in the final read there",
                read.value, read.partition, read.offset
            ));
        }
    }
}

/// For each fault, the longest stretch in its window in which some writer
/// committed nothing (each writer has a coordinator of its own).
fn recoveries(history: &TxnHistory, faults: &[Fault], duration_ms: u64) -> Vec<u64> {
    let commits: Vec<Vec<u64>> = (0..history.writers)
        .map(|writer| {
            let mut times: Vec<u64> = history
                .txns
                .iter()
                .filter(|t| t.writer == writer && t.outcome == TxnOutcome::Committed)
                .map(|t| t.ended_ms)
                .collect();
            times.sort_unstable();
            times
        })
        .collect();
    super::check::fault_windows(faults, duration_ms)
        .into_iter()
        .map(|(fault, window_end_ms)| {
            let from_ms = fault.kind.recovery_from_ms(fault);
            commits
                .iter()
                .map(|times| super::check::outage(times, from_ms, window_end_ms))
                .max()
                .unwrap_or(0)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn txn(writer: u32, txn: u64, partitions: &[i32], offsets: &[i64], outcome: TxnOutcome) -> Txn {
        Txn {
            writer,
            txn,
            partitions: partitions.to_vec(),
            offsets: offsets.to_vec(),
            began_ms: 0,
            ended_ms: 10 * txn,
            outcome,
        }
    }

    fn record(offset: i64, writer: u32, t: u64, index: u32) -> (i64, String) {
        (offset, txn_value(writer, t, index))
    }

    #[test]
    fn values_round_trip() {
        assert_eq!(parse_txn_value(txn_value(3, 17, 9).as_bytes()), Some((3, 17, 9)));
        assert_eq!(
            parse_txn_value(b"3:17"),
            None,
            "the queue workload's values are not ours"
        );
    }

    #[test]
    fn a_clean_history_passes_and_every_anomaly_is_counted() {
        let clean = TxnHistory {
            writers: 1,
            txns: vec![
                txn(0, 0, &[0, 1], &[0, 0], TxnOutcome::Committed),
                txn(0, 1, &[0, 1], &[2, 2], TxnOutcome::Aborted { error: None }),
                txn(0, 2, &[0, 1], &[5, 5], TxnOutcome::Committed),
            ],
            reads: vec![TxnRead {
                partition: 0,
                offset: 0,
                value: txn_value(0, 0, 0),
                at_ms: 5,
            }],
            // Offsets 1 (marker), 2 (aborted) and 3 (marker) and 4 are not returned.
            logs: vec![
                vec![record(0, 0, 0, 0), record(5, 0, 2, 0)],
                vec![record(0, 0, 0, 1), record(5, 0, 2, 1)],
            ],
        };
        let v = check_txns(&clean, &[], 100, &mut Vec::new());
        assert!(v.safe() && v.live(), "{v:?}");
        assert_eq!((v.committed, v.aborted), (2, 1));

        let mut bad = clean;
        bad.txns.push(txn(0, 3, &[0, 1], &[7, 7], TxnOutcome::Committed)); // lost
        bad.txns
            .push(txn(0, 4, &[0, 1], &[9, 9], TxnOutcome::Unknown { error: "x".into() })); // torn
        bad.logs[0].push(record(2, 0, 1, 0)); // aborted, visible; and out of order
        bad.logs[0].push(record(9, 0, 4, 0));
        bad.logs[1][1].0 = 6; // moved
        bad.reads.push(TxnRead {
            partition: 1,
            offset: 8,
            value: txn_value(0, 2, 1),
            at_ms: 50,
        }); // vanished: the final read holds it at 6
        let mut examples = Vec::new();
        let v = check_txns(&bad, &[], 100, &mut examples);
        assert_eq!(
            (
                v.lost_commits,
                v.torn,
                v.aborted_reads,
                v.moved,
                v.reordered,
                v.vanished_reads,
                v.unknown
            ),
            (1, 2, 1, 1, 1, 1, 1),
            "{v:?} {examples:?}"
        );
        assert!(!v.safe() && !v.live());
    }
}
