//! The queue workload: idempotent acks=all producers (librdkafka, as a user
//! runs them) sending `producer:seq` values round-robin over the partitions at
//! a steady rate; a live consumer reading every partition from the start; and
//! the final read of every partition up to its high watermark.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use rdkafka::config::{ClientConfig, RDKafkaLogLevel};
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::Message;
use rdkafka::producer::{BaseRecord, DeliveryResult, Producer, ProducerContext, ThreadedProducer};
use rdkafka::{ClientContext, Offset, TopicPartitionList};

use super::history::{Log, Outcome, Read, Send, value};

/// Milliseconds since `start`.
pub fn ms_since(start: Instant) -> u64 {
    start.elapsed().as_millis() as u64
}

pub struct Spec {
    pub bootstrap: String,
    pub topic: String,
    pub partitions: i32,
    pub producers: u32,
    /// Records per second, per producer.
    pub rate: u32,
    /// librdkafka's `message.timeout.ms` (Kafka's `delivery.timeout.ms`).
    pub message_timeout_ms: u64,
    /// Members of the consumer group (`chaos::group`); 0 runs none.
    pub group_members: u32,
}

struct Recorder {
    start: Instant,
    producer: u32,
    sends: Mutex<Vec<Send>>,
}

/// Brokers going away is the point of the campaign: librdkafka's reports of
/// it would bury the verdict, so the clients keep them to themselves.
impl ClientContext for Recorder {
    fn log(&self, _: RDKafkaLogLevel, _: &str, _: &str) {}
    fn error(&self, _: rdkafka::error::KafkaError, _: &str) {}
}

/// A consumer's context, as quiet as `Recorder`: every consumer of the campaign's.
pub struct Quiet;

impl ClientContext for Quiet {
    fn log(&self, _: RDKafkaLogLevel, _: &str, _: &str) {}
    fn error(&self, _: rdkafka::error::KafkaError, _: &str) {}
}

impl rdkafka::consumer::ConsumerContext for Quiet {}

impl ProducerContext for Recorder {
    /// `(seq, partition, sent_ms)`.
    type DeliveryOpaque = Box<(u64, i32, u64)>;

    fn delivery(&self, result: &DeliveryResult<'_>, opaque: Self::DeliveryOpaque) {
        let (seq, partition, sent_ms) = *opaque;
        let at_ms = ms_since(self.start);
        let outcome = match result {
            Ok(message) => Outcome::Acked {
                offset: message.offset(),
                at_ms,
            },
            Err((e, _)) => Outcome::Failed {
                error: e.to_string(),
                at_ms,
            },
        };
        let send = Send {
            producer: self.producer,
            seq,
            partition,
            sent_ms,
            outcome,
        };
        self.sends.lock().expect("not poisoned").push(send);
    }
}

/// Runs one producer until `stop`, then waits (bounded by its message
/// timeout) for every send to be answered. Returns every send's outcome.
pub fn produce(spec: &Spec, producer: u32, start: Instant, stop: &AtomicBool) -> anyhow::Result<Vec<Send>> {
    let recorder = Recorder {
        start,
        producer,
        sends: Mutex::new(Vec::new()),
    };
    let client: ThreadedProducer<Recorder> = ClientConfig::new()
        .set("bootstrap.servers", &spec.bootstrap)
        .set("enable.idempotence", "true")
        .set("acks", "all")
        .set("linger.ms", "5")
        .set("message.timeout.ms", spec.message_timeout_ms.to_string())
        .create_with_context(recorder)
        .context("cannot create a producer")?;
    let interval = Duration::from_secs_f64(1.0 / f64::from(spec.rate.max(1)));
    let mut next = Instant::now();
    let mut seq: u64 = 0;
    // Bounded by `stop`, which the campaign sets after --duration.
    while !stop.load(Ordering::Relaxed) {
        let partition = ((seq + u64::from(producer)) % spec.partitions as u64) as i32;
        let payload = value(producer, seq);
        let opaque = Box::new((seq, partition, ms_since(start)));
        let record: BaseRecord<'_, (), str, _> = BaseRecord::with_opaque_to(&spec.topic, opaque)
            .payload(payload.as_str())
            .partition(partition);
        crate::cli::console::send_retrying(&client, record)?;
        seq += 1;
        next += interval;
        if let Some(wait) = next.checked_duration_since(Instant::now()) {
            std::thread::sleep(wait);
        } else if Instant::now() - next > Duration::from_secs(1) {
            next = Instant::now(); // Fell behind (a full queue): do not burst to catch up.
        }
    }
    let flushed = client.flush(Duration::from_millis(spec.message_timeout_ms + 5_000));
    let sends = std::mem::take(&mut *client.context().sends.lock().expect("not poisoned"));
    if flushed.is_err() {
        bail!("producer {producer}: sends were still unanswered after the message timeout");
    }
    assert_eq!(sends.len() as u64, seq, "every send is answered once");
    Ok(sends)
}

fn consumer(bootstrap: &str) -> anyhow::Result<BaseConsumer<Quiet>> {
    ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        // librdkafka wants a group id; nothing is committed.
        .set("group.id", "sluice-chaos")
        .set("enable.auto.commit", "false")
        .set("enable.partition.eof", "false")
        .set("auto.offset.reset", "earliest")
        .create_with_context(Quiet)
        .context("cannot create a consumer")
}

fn assign_from_start(consumer: &BaseConsumer<Quiet>, spec: &Spec) -> anyhow::Result<()> {
    let mut assignment = TopicPartitionList::new();
    for p in 0..spec.partitions {
        assignment.add_partition_offset(&spec.topic, p, Offset::Beginning)?;
    }
    consumer.assign(&assignment)?;
    Ok(())
}

/// Reads every partition from the start until `stop`: what a live reader saw.
pub fn read_live(spec: &Spec, start: Instant, stop: &AtomicBool) -> anyhow::Result<Vec<Read>> {
    let consumer = consumer(&spec.bootstrap)?;
    assign_from_start(&consumer, spec)?;
    let mut reads = Vec::new();
    // Bounded by `stop`.
    while !stop.load(Ordering::Relaxed) {
        let Some(polled) = consumer.poll(Duration::from_millis(100)) else {
            continue;
        };
        // Errors (a broker down, a leader moving) are librdkafka's to retry.
        let Ok(message) = polled else { continue };
        reads.push(Read {
            partition: message.partition(),
            offset: message.offset(),
            value: String::from_utf8_lossy(message.payload().unwrap_or_default()).into_owned(),
            at_ms: ms_since(start),
        });
    }
    Ok(reads)
}

/// How long the final read may take, from the first high watermark.
const FINAL_READ_TIMEOUT: Duration = Duration::from_secs(120);

/// Every record of every partition, up to the high watermarks read first.
pub fn read_all(spec: &Spec) -> anyhow::Result<Vec<Log>> {
    let consumer = consumer(&spec.bootstrap)?;
    let deadline = Instant::now() + FINAL_READ_TIMEOUT;
    let mut ends = Vec::new();
    for p in 0..spec.partitions {
        // Bounded by the deadline: a leader may still be moving.
        let high = loop {
            match consumer.fetch_watermarks(&spec.topic, p, Duration::from_secs(5)) {
                Ok((_, high)) => break high,
                Err(e) if Instant::now() > deadline => bail!("no high watermark for partition {p}: {e}"),
                Err(_) => std::thread::sleep(Duration::from_millis(200)),
            }
        };
        ends.push(high);
    }
    assign_from_start(&consumer, spec)?;
    let mut logs: Vec<Log> = vec![Vec::new(); spec.partitions as usize];
    let done = |logs: &[Log]| {
        logs.iter()
            .zip(&ends)
            .all(|(log, end)| log.last().map_or(*end == 0, |(o, _)| o + 1 >= *end))
    };
    // Bounded by the deadline.
    while !done(&logs) {
        if Instant::now() > deadline {
            let read: Vec<usize> = logs.iter().map(Vec::len).collect();
            bail!("the final read stalled: read {read:?} of the high watermarks {ends:?}");
        }
        let Some(Ok(message)) = consumer.poll(Duration::from_millis(100)) else {
            continue;
        };
        let (p, offset) = (message.partition() as usize, message.offset());
        if offset < ends[p] {
            logs[p].push((offset, message.payload().unwrap_or_default().to_vec()));
        }
    }
    Ok(logs)
}

/// Runs the producers and the live reader on threads of their own until
/// `stop`; returns their histories.
pub fn spawn(spec: Arc<Spec>, start: Instant, stop: Arc<AtomicBool>) -> Running {
    let producers = (0..spec.producers)
        .map(|id| {
            let (spec, stop) = (Arc::clone(&spec), Arc::clone(&stop));
            std::thread::spawn(move || produce(&spec, id, start, &stop))
        })
        .collect();
    let reader = {
        let (spec, stop) = (Arc::clone(&spec), Arc::clone(&stop));
        std::thread::spawn(move || read_live(&spec, start, &stop))
    };
    Running { producers, reader }
}

pub struct Running {
    producers: Vec<std::thread::JoinHandle<anyhow::Result<Vec<Send>>>>,
    reader: std::thread::JoinHandle<anyhow::Result<Vec<Read>>>,
}

impl Running {
    pub fn join(self) -> anyhow::Result<(Vec<Send>, Vec<Read>)> {
        let mut sends = Vec::new();
        for producer in self.producers {
            sends.extend(producer.join().map_err(|_| anyhow::anyhow!("a producer panicked"))??);
        }
        let reads = self
            .reader
            .join()
            .map_err(|_| anyhow::anyhow!("the reader panicked"))??;
        Ok((sends, reads))
    }
}
