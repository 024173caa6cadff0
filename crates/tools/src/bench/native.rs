//! `--client native`: Sluice's own lean load generator, there to find the
//! broker's ceiling when librdkafka is the bottleneck.
//!
//! Producing, each connection sends one pre-framed Produce request per batch
//! (built once per partition; only the correlation id changes) and keeps up to
//! `INFLIGHT_MAX` requests in flight, with a reader thread taking the
//! responses in order. Consuming, each connection fetches its partitions and
//! counts records from the batch headers without decoding a record, checking
//! that every batch starts where the previous one ended (no gap, no repeat).

use std::io::{Read, Write};
use std::net::TcpStream;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc::{Receiver, SyncSender, sync_channel};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use bytes::{Bytes, BytesMut};
use hdrhistogram::Histogram;
use kafka_protocol::messages::fetch_request::{FetchPartition, FetchTopic};
use kafka_protocol::messages::produce_request::{PartitionProduceData, TopicProduceData};
use kafka_protocol::messages::{FetchRequest, ProduceRequest, ProduceResponse, ResponseHeader, TopicName};
use kafka_protocol::protocol::Decodable;

use super::load::{self, ConsumeSpec, Measured, ProduceSpec, latency_curve, latency_histogram, percentiles};
use super::progress::Progress;
use crate::client::{CORRELATION_ID_AT, Client, admin, frame};
use crate::record::BatchHeader;
use crate::record::builder::{Record, build_batch, read_records};
use crate::wire::{Malformed, Reader};

/// Connections per run; each is served by whichever shard accepted it.
const CONNECTIONS: usize = 2;
/// Produce requests one connection keeps unanswered.
const INFLIGHT_MAX: usize = 64;
const PRODUCE_VERSION: i16 = 8;
/// The last non-flexible Fetch version: its response is parsed by hand.
const FETCH_VERSION: i16 = 11;
/// Long poll: the broker answers as soon as data arrives (that is what the
/// end-to-end run measures), or after this long.
const FETCH_WAIT_MS: i32 = 100;
const FETCH_PARTITION_BYTES: i32 = 8 << 20;
const FETCH_RESPONSE_BYTES: i32 = 32 << 20;
/// Bytes a record adds to its value in a batch (length, attributes, deltas, key, headers).
const RECORD_OVERHEAD_BYTES: usize = 8;
const RESPONSE_BYTES_MAX: usize = 64 << 20;
const SOCKET_TIMEOUT: Duration = Duration::from_secs(30);
/// A consumer that sees nothing for this long has lost records.
const CONSUME_STALL: Duration = Duration::from_secs(30);
const PROGRESS_EVERY: Duration = Duration::from_millis(100);

fn connect(bootstrap: &str) -> anyhow::Result<TcpStream> {
    crate::client::connect_stream(bootstrap, SOCKET_TIMEOUT)
}

/// Each partition's leader as `host:port`, in partition order: requests go
/// to the broker that leads their partitions, as any Kafka client's do. The
/// native engine does not retry, so it first waits (bounded) until every
/// leader knows it leads and serves the partition: a new topic reaches the
/// brokers one by one, and a broker names a leader in Metadata a moment
/// before the partition's shard has opened its log (until then it answers
/// UNKNOWN_TOPIC_OR_PARTITION, which real clients retry).
fn leaders(bootstrap: &str, topic: &str) -> anyhow::Result<Vec<String>> {
    let deadline = Instant::now() + LEADERS_READY_TIMEOUT;
    // Bounded by the deadline.
    loop {
        let leaders = leaders_seen_by(bootstrap, topic)?;
        let mut distinct = leaders.clone();
        distinct.sort();
        distinct.dedup();
        let agreed = distinct
            .iter()
            .all(|leader| leaders_seen_by(leader, topic).is_ok_and(|seen| seen == leaders));
        if (agreed && served(bootstrap, topic, leaders.len())) || Instant::now() >= deadline {
            return Ok(leaders);
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Whether every partition's leader answers ListOffsets for it without error.
fn served(bootstrap: &str, topic: &str, partitions: usize) -> bool {
    let all = (0..partitions as i32).map(|p| (topic.to_string(), p)).collect();
    Client::connect(bootstrap, SOCKET_TIMEOUT)
        .and_then(|mut client| admin::list_offsets(&mut client, &all, admin::LATEST))
        .is_ok()
}

/// How long `leaders` waits for the brokers to agree on a topic's leaders.
const LEADERS_READY_TIMEOUT: Duration = Duration::from_secs(10);

fn leaders_seen_by(bootstrap: &str, topic: &str) -> anyhow::Result<Vec<String>> {
    let mut client = Client::connect(bootstrap, SOCKET_TIMEOUT)?;
    let response = crate::client::admin::metadata(&mut client, Some(topic))?;
    let brokers: std::collections::HashMap<i32, String> = response
        .brokers
        .iter()
        .map(|b| (b.node_id.0, format!("{}:{}", b.host.as_str(), b.port)))
        .collect();
    let Some(described) = response.topics.first().filter(|t| !t.partitions.is_empty()) else {
        bail!("topic '{topic}' does not exist");
    };
    let mut partitions: Vec<_> = described.partitions.iter().collect();
    partitions.sort_by_key(|p| p.partition_index);
    partitions
        .iter()
        .map(|p| {
            brokers
                .get(&p.leader_id.0)
                .cloned()
                .with_context(|| format!("{topic}-{} has no leader", p.partition_index))
        })
        .collect()
}

/// Splits `partitions` over connections that each go to one leader and
/// carry only partitions it leads: about CONNECTIONS in all, at least one
/// per leader.
fn connection_groups(partitions: &[i32], leaders: &[String]) -> Vec<(String, Vec<i32>)> {
    let mut by_leader: std::collections::BTreeMap<&str, Vec<i32>> = std::collections::BTreeMap::new();
    for p in partitions {
        let leader = leaders.get(*p as usize).map_or("", String::as_str);
        by_leader.entry(leader).or_default().push(*p);
    }
    let total = partitions.len().max(1);
    let mut groups = Vec::new();
    for (leader, owned) in by_leader {
        let count = (CONNECTIONS * owned.len()).div_ceil(total).clamp(1, owned.len());
        for c in 0..count {
            groups.push((
                leader.to_string(),
                owned.iter().skip(c).step_by(count).copied().collect(),
            ));
        }
    }
    groups
}

/// Reads one response frame into `buf` (reused between responses).
fn read_frame(stream: &mut TcpStream, buf: &mut Vec<u8>) -> anyhow::Result<()> {
    let mut size = [0u8; 4];
    stream.read_exact(&mut size).context("reading a response")?;
    let size = i32::from_be_bytes(size);
    if size < 4 || size as usize > RESPONSE_BYTES_MAX {
        bail!("the broker sent a response of {size} bytes");
    }
    buf.resize(size as usize, 0);
    stream.read_exact(buf).context("reading a response")?;
    Ok(())
}

fn acks_of(spec: &ProduceSpec) -> anyhow::Result<i16> {
    match spec.acks.as_str() {
        "all" | "-1" => Ok(-1),
        "0" => Ok(0),
        "1" => Ok(1),
        other => bail!("acks={other}: expected 0, 1 or all"),
    }
}

/// One Produce request holding one batch of `records` copies of `value` for `partition`.
fn produce_frame(
    topic: &str,
    acks: i16,
    partition: i32,
    value: &[u8],
    records: usize,
    correlation_id: i32,
) -> anyhow::Result<BytesMut> {
    let values: Vec<Record> = (0..records)
        .map(|_| Record {
            key: None,
            value: Some(value),
        })
        .collect();
    let batch = build_batch(&values, crate::model::now_ms(), -1, -1).freeze();
    let request = ProduceRequest::default()
        .with_acks(acks)
        .with_timeout_ms(SOCKET_TIMEOUT.as_millis() as i32)
        .with_topic_data(vec![
            TopicProduceData::default()
                .with_name(TopicName(crate::client::admin::s(topic)))
                .with_partition_data(vec![
                    PartitionProduceData::default()
                        .with_index(partition)
                        .with_records(Some(batch)),
                ]),
        ]);
    frame(&request, PRODUCE_VERSION, correlation_id)
}

/// What one connection sends: `batches` full batches round-robin over its
/// partitions, then one batch of `remainder` records.
struct ConnectionPlan {
    /// The leader of every partition below.
    address: String,
    partitions: Vec<i32>,
    batches: u64,
    remainder: usize,
}

fn plan(records: u64, groups: Vec<(String, Vec<i32>)>, records_per_batch: usize) -> Vec<ConnectionPlan> {
    let total: u64 = groups.iter().map(|(_, p)| p.len() as u64).sum::<u64>().max(1);
    let connections = groups.len();
    let mut left = records;
    groups
        .into_iter()
        .enumerate()
        .map(|(c, (address, partitions))| {
            // Shares follow the partition counts; the last takes what rounding left.
            let share = if c == connections - 1 {
                left
            } else {
                records * partitions.len() as u64 / total
            };
            left -= share;
            ConnectionPlan {
                address,
                partitions,
                batches: share / records_per_batch as u64,
                remainder: (share % records_per_batch as u64) as usize,
            }
        })
        .collect()
}

/// A request on the wire: its id, when it left, how many records it carries.
struct Inflight {
    correlation_id: i32,
    sent: Instant,
    records: u64,
}

/// What one connection measured, producing or consuming.
#[derive(Default)]
struct Tally {
    /// Records acknowledged (producing) or received (consuming).
    records: u64,
    /// Their payload bytes.
    bytes: u64,
    /// Records refused (producing), or missing or repeated (consuming).
    failed: u64,
    /// The error code of the first refused produce request.
    refused_with: Option<i16>,
    latency: Option<Histogram<u64>>,
    /// When the last response arrived: the run's end (the progress watcher wakes later).
    finished: Option<Instant>,
}

/// Joins the connections' threads and adds up what they measured.
fn gather(
    workers: Vec<std::thread::JoinHandle<anyhow::Result<Tally>>>,
    started: Instant,
    per_second: Vec<u64>,
) -> anyhow::Result<Measured> {
    let mut total = Tally::default();
    let mut latency = latency_histogram();
    let mut finished = started;
    for worker in workers {
        let tally = worker
            .join()
            .map_err(|_| anyhow::anyhow!("a connection thread panicked"))??;
        total.records += tally.records;
        total.bytes += tally.bytes;
        total.failed += tally.failed;
        total.refused_with = total.refused_with.or(tally.refused_with);
        if let Some(h) = tally.latency {
            latency.add(h).context("merging latencies")?;
        }
        finished = finished.max(tally.finished.unwrap_or(started));
    }
    if let Some(code) = total.refused_with {
        admin::check(
            code,
            None,
            &format!("the broker refused {} records; the first", total.failed),
        )?;
    }
    Ok(Measured {
        records: total.records,
        bytes: total.bytes,
        seconds: (finished - started).as_secs_f64(),
        latency_us: percentiles(&latency),
        latency_curve_us: latency_curve(&latency),
        per_second,
        failed: total.failed,
    })
}

pub fn produce(bootstrap: &str, spec: &ProduceSpec) -> anyhow::Result<Measured> {
    let acks = acks_of(spec)?;
    let leaders = leaders(bootstrap, &spec.topic)?;
    let all: Vec<i32> = (0..leaders.len() as i32).collect();
    let records_per_batch = (spec.batch_size / (spec.size + RECORD_OVERHEAD_BYTES)).max(1);
    let acked = Arc::new(AtomicU64::new(0));
    let started = Instant::now();
    let connections: Vec<_> = plan(spec.records, connection_groups(&all, &leaders), records_per_batch)
        .into_iter()
        .map(|plan| {
            let (spec, acked) = (spec.clone(), acked.clone());
            std::thread::spawn(move || produce_connection(&spec, acks, records_per_batch, plan, acked, started))
        })
        .collect();
    let per_second = watch(&format!("produce {}", spec.topic), spec.records, &acked, || {
        connections.iter().all(|c| c.is_finished())
    });
    gather(connections, started, per_second)
}

/// Shows progress until `finished`, sampling `done` each tenth of a second.
fn watch(label: &str, total: u64, done: &AtomicU64, finished: impl Fn() -> bool) -> Vec<u64> {
    let mut progress = Progress::new(label, total);
    // Bounded by the workers, which end on completion, error or socket timeout.
    while !finished() {
        progress.set(done.load(Ordering::Relaxed));
        std::thread::sleep(PROGRESS_EVERY);
    }
    progress.set(done.load(Ordering::Relaxed));
    progress.finish()
}

fn produce_connection(
    spec: &ProduceSpec,
    acks: i16,
    records_per_batch: usize,
    plan: ConnectionPlan,
    acked: Arc<AtomicU64>,
    started: Instant,
) -> anyhow::Result<Tally> {
    let mut writer = connect(&plan.address)?;
    let reader = writer.try_clone()?;
    let value = vec![b'x'; spec.size];
    let mut frames: Vec<BytesMut> = plan
        .partitions
        .iter()
        .map(|p| produce_frame(&spec.topic, acks, *p, &value, records_per_batch, 0))
        .collect::<anyhow::Result<_>>()?;
    if plan.remainder > 0 {
        frames.push(produce_frame(
            &spec.topic,
            acks,
            plan.partitions[0],
            &value,
            plan.remainder,
            0,
        )?);
    }
    let requests = plan.batches + u64::from(plan.remainder > 0);
    let (window_tx, window_rx) = sync_channel::<Inflight>(INFLIGHT_MAX);
    let record_bytes = spec.size as u64;
    let responses = (acks != 0).then(|| {
        let acked = acked.clone();
        std::thread::spawn(move || read_produce_responses(reader, window_rx, &acked, record_bytes))
    });
    let mut sent_records = 0u64;
    for i in 0..requests {
        let (frame, records) = if i < plan.batches {
            (
                &mut frames[(i % plan.partitions.len() as u64) as usize],
                records_per_batch,
            )
        } else {
            let last = frames.len() - 1;
            (&mut frames[last], plan.remainder)
        };
        if spec.rate > 0 {
            load::pace(started, sent_records, spec.rate);
        }
        let correlation_id = i as i32;
        frame[CORRELATION_ID_AT..CORRELATION_ID_AT + 4].copy_from_slice(&correlation_id.to_be_bytes());
        if acks == 0 {
            writer.write_all(frame).context("sending a produce request")?;
            acked.fetch_add(records as u64, Ordering::Relaxed);
        } else {
            send_windowed(&mut writer, &window_tx, frame, correlation_id, records as u64)?;
        }
        sent_records += records as u64;
    }
    drop(window_tx);
    let Some(responses) = responses else {
        return Ok(Tally {
            records: sent_records,
            bytes: sent_records * record_bytes,
            finished: Some(Instant::now()),
            ..Tally::default()
        });
    };
    responses
        .join()
        .map_err(|_| anyhow::anyhow!("a response reader panicked"))?
}

/// Sends one request once fewer than `INFLIGHT_MAX` are unanswered.
fn send_windowed(
    writer: &mut TcpStream,
    window: &SyncSender<Inflight>,
    frame: &[u8],
    correlation_id: i32,
    records: u64,
) -> anyhow::Result<()> {
    // Blocks while the window is full; the reader frees a slot per response.
    window
        .send(Inflight {
            correlation_id,
            sent: Instant::now(),
            records,
        })
        .map_err(|_| anyhow::anyhow!("the response reader stopped"))?;
    writer.write_all(frame).context("sending a produce request")
}

/// Takes the responses in order until the writer is done and every request answered.
fn read_produce_responses(
    mut stream: TcpStream,
    window: Receiver<Inflight>,
    acked: &AtomicU64,
    record_bytes: u64,
) -> anyhow::Result<Tally> {
    let mut outcome = Tally {
        latency: Some(latency_histogram()),
        ..Tally::default()
    };
    let mut buf = Vec::new();
    // Bounded by the requests the writer sends; the channel closes after the last.
    while let Ok(inflight) = window.recv() {
        read_frame(&mut stream, &mut buf)?;
        let mut body = Bytes::copy_from_slice(&buf);
        let header = ResponseHeader::decode(&mut body, 0)?;
        if header.correlation_id != inflight.correlation_id {
            bail!(
                "response {} arrived for request {}",
                header.correlation_id,
                inflight.correlation_id
            );
        }
        let response = ProduceResponse::decode(&mut body, PRODUCE_VERSION)?;
        let error = response
            .responses
            .iter()
            .flat_map(|t| t.partition_responses.iter())
            .map(|p| p.error_code)
            .find(|e| *e != 0);
        match error {
            Some(code) => {
                outcome.failed += inflight.records;
                outcome.refused_with.get_or_insert(code);
            }
            None => {
                outcome.records += inflight.records;
                outcome.bytes += inflight.records * record_bytes;
                acked.fetch_add(inflight.records, Ordering::Relaxed);
                let us = inflight.sent.elapsed().as_micros() as u64;
                if let Some(h) = outcome.latency.as_mut() {
                    h.saturating_record(us.max(1));
                }
            }
        }
    }
    outcome.finished = Some(Instant::now());
    Ok(outcome)
}

/// Where one partition's consumer stands.
struct PartitionCursor {
    partition: i32,
    next_offset: i64,
}

/// Reads `spec.partitions` from offset 0 until `spec.records` arrived in all.
pub fn consume(bootstrap: &str, spec: &ConsumeSpec) -> anyhow::Result<Measured> {
    let consumed = Arc::new(AtomicU64::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let leaders = leaders(bootstrap, &spec.topic)?;
    let started = Instant::now();
    let workers: Vec<_> = connection_groups(&spec.partitions, &leaders)
        .into_iter()
        .map(|(leader, partitions)| {
            let (spec, consumed, stop) = (spec.clone(), consumed.clone(), stop.clone());
            std::thread::spawn(move || consume_connection(&leader, &spec, &partitions, &consumed, &stop))
        })
        .collect();
    let per_second = watch(&format!("consume {}", spec.topic), spec.records, &consumed, || {
        workers.iter().all(|w| w.is_finished())
    });
    gather(workers, started, per_second)
}

fn fetch_frame(
    topic: &str,
    cursors: &[PartitionCursor],
    max_wait_ms: i32,
    correlation_id: i32,
) -> anyhow::Result<BytesMut> {
    let partitions = cursors
        .iter()
        .map(|c| {
            FetchPartition::default()
                .with_partition(c.partition)
                .with_fetch_offset(c.next_offset)
                .with_partition_max_bytes(FETCH_PARTITION_BYTES)
        })
        .collect();
    let request = FetchRequest::default()
        .with_replica_id(kafka_protocol::messages::BrokerId(-1))
        .with_max_wait_ms(max_wait_ms)
        .with_min_bytes(1)
        .with_max_bytes(FETCH_RESPONSE_BYTES)
        .with_session_epoch(-1)
        .with_topics(vec![
            FetchTopic::default()
                .with_topic(TopicName(crate::client::admin::s(topic)))
                .with_partitions(partitions),
        ]);
    frame(&request, FETCH_VERSION, correlation_id)
}

fn consume_connection(
    bootstrap: &str,
    spec: &ConsumeSpec,
    partitions: &[i32],
    consumed: &AtomicU64,
    stop: &AtomicBool,
) -> anyhow::Result<Tally> {
    let mut stream = connect(bootstrap)?;
    let mut cursors: Vec<PartitionCursor> = partitions
        .iter()
        .map(|p| PartitionCursor {
            partition: *p,
            next_offset: 0,
        })
        .collect();
    let mut counted = Tally {
        latency: spec.timed.then(latency_histogram),
        ..Tally::default()
    };
    let mut buf = Vec::new();
    let mut last_data = Instant::now();
    let mut correlation_id = 0i32;
    // Bounded: every round takes records or brings the stall deadline closer.
    while consumed.load(Ordering::Relaxed) < spec.records && !stop.load(Ordering::Relaxed) {
        correlation_id = correlation_id.wrapping_add(1);
        stream.write_all(&fetch_frame(&spec.topic, &cursors, FETCH_WAIT_MS, correlation_id)?)?;
        read_frame(&mut stream, &mut buf)?;
        let before = counted.records;
        count_fetch_response(&buf, spec.record_size, correlation_id, &mut cursors, &mut counted)
            .map_err(|Malformed(what)| anyhow::anyhow!("malformed fetch response: {what}"))??;
        consumed.fetch_add(counted.records - before, Ordering::Relaxed);
        if counted.records > before {
            last_data = Instant::now();
            counted.finished = Some(last_data);
        } else if last_data.elapsed() > CONSUME_STALL {
            stop.store(true, Ordering::Relaxed);
            bail!(
                "only {} of {} records arrived",
                consumed.load(Ordering::Relaxed),
                spec.records
            );
        }
    }
    Ok(counted)
}

/// Parses a Fetch v11 response, counting each partition's records from the
/// batch headers. The outer error is a malformed response; the inner one a
/// partition error from the broker.
fn count_fetch_response(
    buf: &[u8],
    record_size: usize,
    correlation_id: i32,
    cursors: &mut [PartitionCursor],
    counted: &mut Tally,
) -> Result<anyhow::Result<()>, Malformed> {
    let mut r = Reader::new(buf);
    if r.i32()? != correlation_id {
        return Ok(Err(anyhow::anyhow!("a fetch response arrived out of order")));
    }
    r.i32()?; // throttle_time_ms
    let error = r.i16()?;
    if error != 0 {
        return Ok(Err(anyhow::anyhow!("fetch failed with error code {error}")));
    }
    r.i32()?; // session_id
    for _ in 0..r.array_len(false)? {
        r.str(false)?;
        for _ in 0..r.array_len(false)? {
            let partition = r.i32()?;
            let error = r.i16()?;
            r.i64()?; // high watermark
            r.i64()?; // last stable offset
            r.i64()?; // log start offset
            let aborted = r.i32()?;
            for _ in 0..aborted.max(0) {
                r.i64()?;
                r.i64()?;
            }
            r.i32()?; // preferred read replica
            let records = r.bytes()?;
            if error != 0 {
                return Ok(Err(anyhow::anyhow!("partition {partition}: fetch error code {error}")));
            }
            let Some(cursor) = cursors.iter_mut().find(|c| c.partition == partition) else {
                return Ok(Err(anyhow::anyhow!("partition {partition} was not asked for")));
            };
            count_batches(records, record_size, cursor, counted);
        }
    }
    Ok(Ok(()))
}

/// Counts the whole batches in `records` (a fetch may end inside one); payload
/// bytes are counted as `record_size` per record, as LinkedIn counted them.
fn count_batches(records: &[u8], record_size: usize, cursor: &mut PartitionCursor, counted: &mut Tally) {
    let mut at = 0;
    // Bounded: each step moves past one whole batch.
    while let Some(header) = BatchHeader::parse(&records[at..]) {
        let end = at + header.total_bytes();
        if header.batch_length <= 0 || end > records.len() {
            break;
        }
        let expected = cursor.next_offset;
        counted.failed += header.base_offset.abs_diff(expected);
        counted.records += header.records_count.max(0) as u64;
        counted.bytes += header.records_count.max(0) as u64 * record_size as u64;
        if let Some(latency) = counted.latency.as_mut() {
            let now_us = load::wall_clock_us();
            for record in read_records(&records[at..end]).unwrap_or_default() {
                if let Some(sent_us) = load::first_u64(record.value.unwrap_or_default()) {
                    latency.saturating_record(now_us.saturating_sub(sent_us).max(1));
                }
            }
        }
        cursor.next_offset = header.next_offset();
        at = end;
    }
}

/// End to end at a steady `rate`: each request carries the records due since
/// the last one, stamped with the wall clock; a consumer on its own
/// connection measures arrival minus stamp.
pub fn end_to_end(bootstrap: &str, topic: &str, records: u64, size: usize, rate: u64) -> anyhow::Result<Measured> {
    let consume_spec = ConsumeSpec::end_to_end(topic, records, size);
    let bootstrap_owned = bootstrap.to_string();
    let consumer = std::thread::spawn(move || consume(&bootstrap_owned, &consume_spec));
    // The stamped records all go to partition 0, so to its leader.
    let leader = leaders(bootstrap, topic)?.swap_remove(0);
    let mut writer = connect(&leader)?;
    let reader = writer.try_clone()?;
    let (window_tx, window_rx) = sync_channel::<Inflight>(INFLIGHT_MAX);
    let acked = Arc::new(AtomicU64::new(0));
    let responses = {
        let acked = acked.clone();
        std::thread::spawn(move || read_produce_responses(reader, window_rx, &acked, size as u64))
    };
    let spec = ProduceSpec {
        topic: topic.to_string(),
        records,
        size,
        acks: "1".to_string(),
        batch_size: 0,
        linger_ms: 0,
        rate,
        first_seq: 0,
    };
    let started = Instant::now();
    let mut sent = 0u64;
    let mut correlation_id = 0i32;
    // Bounded: every round sends at least one record.
    while sent < records {
        load::pace(started, sent, rate);
        let due = ((started.elapsed().as_secs_f64() * rate as f64) as u64 + 1).clamp(sent + 1, records);
        let count = (due - sent) as usize;
        let frame = stamped_frame(&spec, count, correlation_id)?;
        send_windowed(&mut writer, &window_tx, &frame, correlation_id, count as u64)?;
        correlation_id = correlation_id.wrapping_add(1);
        sent += count as u64;
    }
    drop(window_tx);
    let produced = responses
        .join()
        .map_err(|_| anyhow::anyhow!("the response reader panicked"))??;
    if produced.failed > 0 {
        bail!("{} records were not acknowledged", produced.failed);
    }
    consumer.join().map_err(|_| anyhow::anyhow!("the consumer panicked"))?
}

/// A Produce request for partition 0 whose `count` values start with the wall clock in µs.
fn stamped_frame(spec: &ProduceSpec, count: usize, correlation_id: i32) -> anyhow::Result<BytesMut> {
    let mut value = vec![b'x'; spec.size.max(8)];
    value[..8].copy_from_slice(&load::wall_clock_us().to_be_bytes());
    produce_frame(&spec.topic, 1, 0, &value, count, correlation_id)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::record::assign_offset;

    #[test]
    fn plans_send_every_record_once_over_all_partitions() {
        for (records, partitions, per_batch) in [(1000u64, 6, 70usize), (1001, 1, 70), (7, 6, 100), (50_000_000, 6, 81)]
        {
            let all: Vec<i32> = (0..partitions).collect();
            let one_broker = vec!["a:1".to_string(); partitions as usize];
            let plans = plan(records, connection_groups(&all, &one_broker), per_batch);
            assert_eq!(plans.len(), CONNECTIONS.min(partitions as usize));
            let sent: u64 = plans
                .iter()
                .map(|p| p.batches * per_batch as u64 + p.remainder as u64)
                .sum();
            assert_eq!(sent, records);
            let mut covered: Vec<i32> = plans.iter().flat_map(|p| p.partitions.clone()).collect();
            covered.sort();
            assert_eq!(covered, (0..partitions).collect::<Vec<_>>());
        }
    }

    #[test]
    fn connections_go_to_the_leaders_of_their_partitions() {
        let leaders: Vec<String> = ["a", "b", "c", "a", "b", "c"].iter().map(|s| s.to_string()).collect();
        let groups = connection_groups(&[0, 1, 2, 3, 4, 5], &leaders);
        assert_eq!(groups.len(), 3, "one connection per leader");
        for (leader, partitions) in &groups {
            assert!(partitions.iter().all(|p| &leaders[*p as usize] == leader));
        }
        let plans = plan(1000, groups, 7);
        assert_eq!(
            plans.iter().map(|p| p.batches * 7 + p.remainder as u64).sum::<u64>(),
            1000
        );
    }

    fn stored_batch(base_offset: i64, records: usize) -> Vec<u8> {
        let value = [b'x'; 10];
        let values = vec![
            Record {
                key: None,
                value: Some(&value),
            };
            records
        ];
        let mut batch = build_batch(&values, 1, -1, -1);
        assign_offset(&mut batch, base_offset, 0);
        batch.to_vec()
    }

    #[test]
    fn counting_finds_gaps_and_repeats_and_skips_a_partial_batch() {
        let mut cursor = PartitionCursor {
            partition: 0,
            next_offset: 0,
        };
        let mut counted = Tally::default();
        let mut log = [stored_batch(0, 3), stored_batch(3, 4)].concat();
        let partial = stored_batch(7, 2);
        log.extend_from_slice(&partial[..partial.len() - 1]);
        count_batches(&log, 10, &mut cursor, &mut counted);
        assert_eq!(
            (counted.records, counted.bytes, counted.failed, cursor.next_offset),
            (7, 70, 0, 7)
        );

        // A batch starting two past the cursor: two records lost.
        count_batches(&stored_batch(9, 1), 10, &mut cursor, &mut counted);
        assert_eq!((counted.failed, cursor.next_offset), (2, 10));
        // One starting three before it: three repeated.
        count_batches(&stored_batch(7, 3), 10, &mut cursor, &mut counted);
        assert_eq!(counted.failed, 5);
    }

    #[test]
    fn fetch_responses_parse_and_partition_errors_surface() {
        let records = stored_batch(0, 5);
        let response = |partition_error: i16| {
            let mut b = Vec::new();
            b.extend_from_slice(&7i32.to_be_bytes()); // correlation id
            b.extend_from_slice(&0i32.to_be_bytes()); // throttle
            b.extend_from_slice(&0i16.to_be_bytes()); // error
            b.extend_from_slice(&0i32.to_be_bytes()); // session
            b.extend_from_slice(&1i32.to_be_bytes()); // topics
            b.extend_from_slice(&1i16.to_be_bytes());
            b.push(b't');
            b.extend_from_slice(&1i32.to_be_bytes()); // partitions
            b.extend_from_slice(&2i32.to_be_bytes());
            b.extend_from_slice(&partition_error.to_be_bytes());
            b.extend_from_slice(&[0; 24]); // high watermark, last stable, log start
            b.extend_from_slice(&(-1i32).to_be_bytes()); // aborted: null
            b.extend_from_slice(&(-1i32).to_be_bytes()); // preferred read replica
            b.extend_from_slice(&(records.len() as i32).to_be_bytes());
            b.extend_from_slice(&records);
            b
        };
        let mut cursors = [PartitionCursor {
            partition: 2,
            next_offset: 0,
        }];
        let mut counted = Tally::default();
        count_fetch_response(&response(0), 100, 7, &mut cursors, &mut counted)
            .expect("well formed")
            .expect("no error");
        assert_eq!((counted.records, counted.bytes, cursors[0].next_offset), (5, 500, 5));
        let failed = count_fetch_response(&response(6), 100, 7, &mut cursors, &mut counted).expect("well formed");
        assert!(failed.unwrap_err().to_string().contains("error code 6"));
        let wrong_id = count_fetch_response(&response(0), 100, 8, &mut cursors, &mut counted).expect("well formed");
        assert!(wrong_id.is_err());
        assert!(count_fetch_response(&response(0)[..20], 100, 7, &mut cursors, &mut counted).is_err());
    }
}
