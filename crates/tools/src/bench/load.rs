//! Load generation on librdkafka (the `rdkafka` crate): the reference client,
//! so figures compare with any Kafka-compatible broker measured the same way.

use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use hdrhistogram::Histogram;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::producer::{BaseRecord, DeliveryResult, Producer, ProducerContext, ThreadedProducer};
use rdkafka::{ClientContext, Offset, TopicPartitionList};
use serde::{Deserialize, Serialize};

use super::progress::Progress;
use crate::cli::console::{BatchQueue, send_retrying};

/// Latencies are kept in microseconds up to a minute.
const LATENCY_MAX_US: u64 = 60_000_000;
const POLL: Duration = Duration::from_millis(100);
const FLUSH_TIMEOUT: Duration = Duration::from_secs(120);
/// A consumer that sees nothing for this long has lost records.
const CONSUME_STALL: Duration = Duration::from_secs(30);
/// Messages taken from librdkafka per batch-consume call.
const CONSUME_BATCH: usize = 10_000;
/// Records between progress updates.
const PROGRESS_EVERY_RECORDS: u64 = 4096;
/// How long a latency run's consumer gets to connect before the producer starts.
const CONSUMER_WARMUP: Duration = Duration::from_millis(500);

pub fn latency_histogram() -> Histogram<u64> {
    Histogram::new_with_max(LATENCY_MAX_US, 3).expect("valid histogram bounds")
}

/// What one load run measured.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Measured {
    pub records: u64,
    pub bytes: u64,
    pub seconds: f64,
    /// Produce acknowledgement or end-to-end latency, microseconds (p50, p99, p99.9, max).
    pub latency_us: Option<[u64; 4]>,
    /// (quantile, microseconds) at each of `CURVE_QUANTILES`: the percentile chart.
    #[serde(default)]
    pub latency_curve_us: Vec<(f64, u64)>,
    /// Records per second in each second of the run (throughput over stored data).
    pub per_second: Vec<u64>,
    /// Records not acknowledged (produce) or seen twice (consume).
    pub failed: u64,
}

impl Measured {
    pub fn records_per_second(&self) -> f64 {
        self.records as f64 / self.seconds.max(1e-9)
    }
    pub fn mb_per_second(&self) -> f64 {
        self.bytes as f64 / 1e6 / self.seconds.max(1e-9)
    }
}

pub fn percentiles(h: &Histogram<u64>) -> Option<[u64; 4]> {
    (!h.is_empty()).then(|| {
        [
            h.value_at_quantile(0.5),
            h.value_at_quantile(0.99),
            h.value_at_quantile(0.999),
            h.max(),
        ]
    })
}

/// The quantiles of the latency percentile curve.
pub const CURVE_QUANTILES: &[f64] = &[0.5, 0.75, 0.9, 0.95, 0.99, 0.995, 0.999, 0.9995, 0.9999, 1.0];

pub fn latency_curve(h: &Histogram<u64>) -> Vec<(f64, u64)> {
    if h.is_empty() {
        return Vec::new();
    }
    CURVE_QUANTILES.iter().map(|q| (*q, h.value_at_quantile(*q))).collect()
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ProduceSpec {
    pub topic: String,
    pub records: u64,
    pub size: usize,
    pub acks: String,
    pub batch_size: usize,
    pub linger_ms: u64,
    /// Records per second to pace at; 0 sends as fast as the client can.
    pub rate: u64,
    /// Record i carries sequence number `first_seq + i` in its first 8 bytes.
    pub first_seq: u64,
}

struct Acks {
    started: Instant,
    failed: AtomicU64,
    acked: AtomicU64,
    latency: Mutex<Histogram<u64>>,
}

impl ClientContext for Acks {}

impl ProducerContext for Acks {
    /// The microsecond (since `started`) the record was handed to librdkafka.
    type DeliveryOpaque = Box<u64>;
    fn delivery(&self, result: &DeliveryResult<'_>, sent_us: Box<u64>) {
        if result.is_err() {
            self.failed.fetch_add(1, Ordering::Relaxed);
            return;
        }
        self.acked.fetch_add(1, Ordering::Relaxed);
        let now_us = self.started.elapsed().as_micros() as u64;
        if let Ok(mut h) = self.latency.lock() {
            h.saturating_record(now_us.saturating_sub(*sent_us).max(1));
        }
    }
}

fn client(bootstrap: &str) -> ClientConfig {
    let mut c = ClientConfig::new();
    c.set("bootstrap.servers", bootstrap);
    c
}

/// Produces `spec.records` records of `spec.size` bytes into `spec.topic`
/// (spread over its partitions) and waits for every acknowledgement.
pub fn produce(bootstrap: &str, spec: &ProduceSpec) -> anyhow::Result<Measured> {
    let started = Instant::now();
    let producer: ThreadedProducer<Acks> = client(bootstrap)
        .set("acks", &spec.acks)
        .set("batch.size", spec.batch_size.to_string())
        .set("linger.ms", spec.linger_ms.to_string())
        .set("queue.buffering.max.messages", "2000000")
        .set("queue.buffering.max.kbytes", "1048576")
        .create_with_context(Acks {
            started,
            failed: AtomicU64::new(0),
            acked: AtomicU64::new(0),
            latency: Mutex::new(latency_histogram()),
        })
        .context("cannot create the producer")?;
    let mut payload = vec![b'x'; spec.size.max(8)];
    let mut progress = Progress::new(&format!("produce {}", spec.topic), spec.records);
    for i in 0..spec.records {
        if spec.rate > 0 {
            pace(started, i, spec.rate);
        }
        payload[..8].copy_from_slice(&(spec.first_seq + i).to_be_bytes());
        let sent_us = Box::new(started.elapsed().as_micros() as u64);
        let record: BaseRecord<'_, [u8], [u8], _> =
            BaseRecord::with_opaque_to(&spec.topic, sent_us).payload(&payload[..]);
        send_retrying(&producer, record)?;
        if i % PROGRESS_EVERY_RECORDS == 0 {
            progress.set(producer.context().acked.load(Ordering::Relaxed));
        }
    }
    producer.flush(FLUSH_TIMEOUT).context("flushing the producer")?;
    progress.set(producer.context().acked.load(Ordering::Relaxed));
    let per_second = progress.finish();
    let seconds = started.elapsed().as_secs_f64();
    let context = producer.context();
    let failed = context.failed.load(Ordering::Relaxed);
    let (latency, latency_curve_us) = context
        .latency
        .lock()
        .map(|h| (percentiles(&h), latency_curve(&h)))
        .unwrap_or_default();
    Ok(Measured {
        records: spec.records - failed,
        bytes: (spec.records - failed) * spec.size as u64,
        seconds,
        latency_us: latency,
        latency_curve_us,
        per_second,
        failed,
    })
}

/// Sleeps until record `i` is due at `rate` records per second.
pub(super) fn pace(started: Instant, i: u64, rate: u64) {
    let due = Duration::from_secs_f64(i as f64 / rate as f64);
    let elapsed = started.elapsed();
    if due > elapsed {
        std::thread::sleep(due - elapsed);
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ConsumeSpec {
    pub topic: String,
    pub partitions: Vec<i32>,
    /// Exactly this many records must arrive; fewer (after a stall) is an error.
    pub records: u64,
    /// Payloads carry their send time (end-to-end latency runs) instead of a sequence number.
    pub timed: bool,
    /// Sequence numbers run below this; each may arrive once (checked unless timed).
    pub seq_limit: u64,
    /// Payload bytes per record, for engines that count without reading payloads.
    pub record_size: usize,
}

impl ConsumeSpec {
    /// The end-to-end run's consumer: partition 0, payloads stamped with their send time.
    pub fn end_to_end(topic: &str, records: u64, size: usize) -> Self {
        Self {
            topic: topic.to_string(),
            partitions: vec![0],
            records,
            timed: true,
            seq_limit: 0,
            record_size: size,
        }
    }
}

/// Reads `spec.partitions` from the beginning until `spec.records` arrived.
pub fn consume(bootstrap: &str, spec: &ConsumeSpec) -> anyhow::Result<Measured> {
    consume_signalling(bootstrap, spec, None)
}

/// As `consume`; `ready` hears once the partitions are assigned and polled.
fn consume_signalling(
    bootstrap: &str,
    spec: &ConsumeSpec,
    ready: Option<std::sync::mpsc::Sender<()>>,
) -> anyhow::Result<Measured> {
    let consumer: BaseConsumer = client(bootstrap)
        .set("group.id", "sluice-bench")
        .set("enable.auto.commit", "false")
        .set("enable.partition.eof", "false")
        .set("fetch.wait.max.ms", if spec.timed { "1" } else { "100" })
        .create()
        .context("cannot create the consumer")?;
    let mut list = TopicPartitionList::new();
    for p in &spec.partitions {
        list.add_partition_offset(&spec.topic, *p, Offset::Beginning)?;
    }
    consumer.assign(&list)?;
    let mut queue = BatchQueue::new(&consumer);
    let mut latency = latency_histogram();
    let mut seen = vec![0u64; (spec.seq_limit as usize).div_ceil(64)];
    let mut duplicates = 0u64;
    let (mut records, mut bytes) = (0u64, 0u64);
    if let Some(ready) = ready {
        // librdkafka connects and starts fetching in the background; give it that long.
        std::thread::sleep(CONSUMER_WARMUP);
        let _ = ready.send(());
    }
    let mut progress = Progress::new(&format!("consume {}", spec.topic), spec.records);
    let started = Instant::now();
    let mut last = Instant::now();
    // Bounded: every round takes records or brings the stall deadline closer.
    while records < spec.records {
        let room = ((spec.records - records) as usize).min(CONSUME_BATCH);
        let before = records;
        let mut take = |payload: &[u8]| {
            records += 1;
            bytes += payload.len() as u64;
            match first_u64(payload) {
                Some(sent) if spec.timed => {
                    latency.saturating_record(wall_clock_us().saturating_sub(sent).max(1));
                }
                Some(seq) if seq < spec.seq_limit => {
                    let (word, bit) = ((seq / 64) as usize, 1u64 << (seq % 64));
                    duplicates += u64::from(seen[word] & bit != 0);
                    seen[word] |= bit;
                }
                _ => duplicates += 1, // not a record this run produced
            }
        };
        if spec.timed {
            // librdkafka's batch call waits out its timeout unless the batch fills:
            // latency runs take each record the moment it arrives.
            match consumer.poll(POLL) {
                Some(Ok(m)) => take(rdkafka::message::Message::payload(&m).unwrap_or_default()),
                Some(Err(e)) => bail!("consume failed: {e}"),
                None => {}
            }
        } else {
            queue
                .poll(POLL, room, false, |record| {
                    take(record.map_err(std::io::Error::other)?.value.unwrap_or_default());
                    Ok(())
                })
                .context("consume failed")?;
        }
        if records > before {
            progress.set(records);
            last = Instant::now();
        } else if last.elapsed() > CONSUME_STALL {
            bail!("only {records} of {} records arrived", spec.records);
        }
    }
    let seconds = started.elapsed().as_secs_f64();
    Ok(Measured {
        records,
        bytes,
        seconds,
        latency_us: percentiles(&latency),
        latency_curve_us: latency_curve(&latency),
        per_second: progress.finish(),
        failed: duplicates,
    })
}

/// Microseconds since the Unix epoch: the clock end-to-end latency compares
/// across threads (and processes) of one machine.
pub fn wall_clock_us() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_micros() as u64)
}

/// The sequence number or send time a payload starts with.
pub(super) fn first_u64(payload: &[u8]) -> Option<u64> {
    Some(u64::from_be_bytes(payload.get(..8)?.try_into().ok()?))
}

/// End to end: a producer at a steady `rate` whose payloads carry their send
/// time, and a consumer in the same process measuring arrival minus send.
pub fn end_to_end(bootstrap: &str, topic: &str, records: u64, size: usize, rate: u64) -> anyhow::Result<Measured> {
    let consume_spec = ConsumeSpec::end_to_end(topic, records, size);
    let bootstrap_owned = bootstrap.to_string();
    let (ready_tx, ready_rx) = std::sync::mpsc::channel();
    let consumer = std::thread::spawn(move || consume_signalling(&bootstrap_owned, &consume_spec, Some(ready_tx)));
    // Sending starts once the consumer is fetching, so its start-up is not counted as latency.
    let _ = ready_rx.recv_timeout(CONSUME_STALL);
    let producer: rdkafka::producer::BaseProducer = client(bootstrap)
        .set("acks", "1")
        .set("linger.ms", "0")
        .create()
        .context("cannot create the producer")?;
    let started = Instant::now();
    let mut payload = vec![b'x'; size.max(8)];
    for i in 0..records {
        pace(started, i, rate);
        payload[..8].copy_from_slice(&wall_clock_us().to_be_bytes());
        let record: BaseRecord<'_, [u8], [u8]> = BaseRecord::to(topic).payload(&payload[..]).partition(0);
        if let Err((e, _)) = producer.send(record) {
            bail!("produce failed: {e}");
        }
        producer.poll(Duration::ZERO);
    }
    producer.flush(FLUSH_TIMEOUT)?;
    consumer
        .join()
        .map_err(|_| anyhow::anyhow!("consumer thread panicked"))?
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rates_and_percentiles() {
        let m = Measured {
            records: 1_000_000,
            bytes: 100_000_000,
            seconds: 2.0,
            ..Measured::default()
        };
        assert_eq!(m.records_per_second(), 500_000.0);
        assert_eq!(m.mb_per_second(), 50.0);
        let mut h = latency_histogram();
        assert_eq!(percentiles(&h), None);
        for us in 1..=1000 {
            h.record(us).unwrap();
        }
        let [p50, p99, p999, max] = percentiles(&h).unwrap();
        assert!((499..=501).contains(&p50), "{p50}");
        assert!((989..=991).contains(&p99), "{p99}");
        assert!((998..=1000).contains(&p999), "{p999}");
        assert_eq!(max, 1000);
        let curve = latency_curve(&h);
        assert_eq!(curve.len(), CURVE_QUANTILES.len());
        assert!(
            curve.windows(2).all(|w| w[0].1 <= w[1].1),
            "a percentile curve never falls"
        );
        assert_eq!(curve.last(), Some(&(1.0, 1000)));
        assert!(latency_curve(&latency_histogram()).is_empty());
        assert_eq!(first_u64(&42u64.to_be_bytes()), Some(42));
        assert_eq!(first_u64(b"short"), None);
    }
}
