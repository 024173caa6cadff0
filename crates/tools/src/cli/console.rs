//! `sluice produce` and `sluice consume`: the console producer and consumer,
//! on librdkafka (the `rdkafka` crate). Lines in, records out; records in,
//! lines out through a kcat-style `--format` template.

use std::io::{BufRead, BufWriter, Write};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::{BorrowedMessage, Header, Headers, Message, OwnedHeaders};
use rdkafka::producer::{BaseRecord, DeliveryResult, Producer, ProducerContext, ThreadedProducer};
use rdkafka::{ClientContext, Offset, TopicPartitionList};

use super::Connect;

const POLL_INTERVAL: Duration = Duration::from_millis(100);
/// Messages taken from librdkafka per batch-consume call.
const CONSUME_BATCH: usize = 10_000;
const FLUSH_TIMEOUT: Duration = Duration::from_secs(30);
const METADATA_TIMEOUT: Duration = Duration::from_secs(10);

#[derive(clap::Args)]
pub struct ProduceArgs {
    #[command(flatten)]
    connect: Connect,
    topic: String,
    /// Split each line into key and value at the first SEP (lines without it have no key).
    #[arg(long)]
    key_separator: Option<String>,
    /// Each line starts with headers, as Kafka's console producer: `h1:v1,h2:v2<TAB>`.
    #[arg(long)]
    headers: bool,
    /// Send every record to this partition (default: by key, or spread).
    #[arg(long)]
    partition: Option<i32>,
    /// Acknowledgements: all, 1 or 0.
    #[arg(long, default_value = "all")]
    acks: String,
    /// none, gzip, snappy, lz4 or zstd.
    #[arg(long, default_value = "none")]
    compression: String,
}

#[derive(clap::Args)]
pub struct ConsumeArgs {
    #[command(flatten)]
    connect: Connect,
    topic: String,
    /// Start at the earliest offset (default: only new records).
    #[arg(long)]
    from_beginning: bool,
    /// Start at this offset (with --partition), or `earliest`/`latest`.
    #[arg(long)]
    offset: Option<String>,
    /// Read only this partition.
    #[arg(long)]
    partition: Option<i32>,
    /// Consume as a member of this group (committing offsets) instead of reading all partitions.
    #[arg(long)]
    group: Option<String>,
    /// Stop after this many records.
    #[arg(long)]
    max_messages: Option<u64>,
    /// Stop when no record arrives for this long.
    #[arg(long)]
    timeout_ms: Option<u64>,
    /// Output template, as kcat's -f: %k key, %s value, %p partition, %o offset,
    /// %T timestamp (ms), %h headers (k=v,...), %t topic, %K/%S key/value length, \n \t \\.
    #[arg(long, default_value = "%s\\n")]
    format: String,
}

/// Ctrl-C and SIGTERM set this; the loops check it between polls.
fn stop_flag() -> anyhow::Result<Arc<AtomicBool>> {
    let stop = Arc::new(AtomicBool::new(false));
    for signal in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
        signal_hook::flag::register(signal, Arc::clone(&stop))?;
    }
    Ok(stop)
}

/// Counts delivery failures and reports the first one.
struct DeliveryReport {
    failed: AtomicU64,
}

impl ClientContext for DeliveryReport {}

impl ProducerContext for DeliveryReport {
    type DeliveryOpaque = ();
    fn delivery(&self, result: &DeliveryResult<'_>, _: ()) {
        if let Err((e, _)) = result
            && self.failed.fetch_add(1, Ordering::Relaxed) == 0
        {
            eprintln!("sluice: delivery failed: {e}");
        }
    }
}

/// Splits Kafka's console-producer header prefix `h1:v1,h2:v2\t` off a line.
pub fn split_headers(line: &str) -> anyhow::Result<(Vec<(&str, &str)>, &str)> {
    let (prefix, rest) = line
        .split_once('\t')
        .with_context(|| format!("no headers before a TAB in '{line}'"))?;
    let mut headers = Vec::new();
    for pair in prefix.split(',').filter(|p| !p.is_empty()) {
        let (k, v) = pair
            .split_once(':')
            .with_context(|| format!("header '{pair}' is not KEY:VALUE"))?;
        headers.push((k, v));
    }
    Ok((headers, rest))
}

pub fn produce(args: ProduceArgs) -> anyhow::Result<()> {
    if !matches!(args.acks.as_str(), "all" | "-1" | "1" | "0") {
        bail!("--acks must be all, 1 or 0");
    }
    let producer: ThreadedProducer<DeliveryReport> = ClientConfig::new()
        .set("bootstrap.servers", &args.connect.bootstrap)
        .set("acks", &args.acks)
        .set("compression.type", &args.compression)
        .set("linger.ms", "5")
        .create_with_context(DeliveryReport {
            failed: AtomicU64::new(0),
        })
        .context("cannot create the producer")?;
    let stop = stop_flag()?;
    let mut sent: u64 = 0;
    for line in std::io::stdin().lock().lines() {
        if stop.load(Ordering::Relaxed) {
            break;
        }
        let line = line.context("reading stdin")?;
        let (headers, rest) = if args.headers {
            split_headers(&line)?
        } else {
            (Vec::new(), line.as_str())
        };
        let (key, value) = match args.key_separator.as_deref().and_then(|sep| rest.split_once(sep)) {
            Some((k, v)) => (Some(k), v),
            None => (None, rest),
        };
        let mut record: BaseRecord<'_, str, str> = BaseRecord::to(&args.topic).payload(value);
        if let Some(k) = key {
            record = record.key(k);
        }
        if let Some(p) = args.partition {
            record = record.partition(p);
        }
        if !headers.is_empty() {
            let mut owned = OwnedHeaders::new_with_capacity(headers.len());
            for (k, v) in &headers {
                owned = owned.insert(Header {
                    key: k,
                    value: Some(*v),
                });
            }
            record = record.headers(owned);
        }
        send_retrying(&producer, record)?;
        sent += 1;
    }
    producer.flush(FLUSH_TIMEOUT).context("flushing the producer")?;
    let failed = producer.context().failed.load(Ordering::Relaxed);
    eprintln!("Produced {} of {sent} records to '{}'.", sent - failed, args.topic);
    if failed > 0 {
        bail!("{failed} records were not delivered");
    }
    Ok(())
}

/// How long a producer waits before retrying a record librdkafka's full queue refused.
const QUEUE_FULL_BACKOFF: Duration = Duration::from_micros(200);

/// Queues a record, waiting while librdkafka's queue is full (at most `FLUSH_TIMEOUT`:
/// the queue drains as the broker acknowledges).
pub fn send_retrying<'a, K, P, C>(
    producer: &ThreadedProducer<C>,
    mut record: BaseRecord<'a, K, P, C::DeliveryOpaque>,
) -> anyhow::Result<()>
where
    K: rdkafka::message::ToBytes + ?Sized,
    P: rdkafka::message::ToBytes + ?Sized,
    C: ProducerContext + 'static,
{
    let deadline = Instant::now() + FLUSH_TIMEOUT;
    loop {
        match producer.send(record) {
            Ok(()) => return Ok(()),
            Err((rdkafka::error::KafkaError::MessageProduction(rdkafka::types::RDKafkaErrorCode::QueueFull), r))
                if Instant::now() < deadline =>
            {
                record = r;
                std::thread::sleep(QUEUE_FULL_BACKOFF);
            }
            Err((e, _)) => bail!("cannot produce: {e}"),
        }
    }
}

pub fn consume(args: ConsumeArgs) -> anyhow::Result<()> {
    // First: a Ctrl-C while the partitions are being looked up stops cleanly too.
    let stop = stop_flag()?;
    let mut config = ClientConfig::new();
    config
        .set("bootstrap.servers", &args.connect.bootstrap)
        .set("enable.partition.eof", "false")
        .set(
            "auto.offset.reset",
            if args.from_beginning { "earliest" } else { "latest" },
        );
    match &args.group {
        Some(group) => config.set("group.id", group),
        // A group id librdkafka needs but never uses: partitions are assigned, nothing committed.
        None => config
            .set("group.id", "sluice-console")
            .set("enable.auto.commit", "false"),
    };
    let consumer: BaseConsumer = config.create().context("cannot create the consumer")?;
    if args.group.is_some() {
        consumer.subscribe(&[&args.topic]).context("cannot subscribe")?;
    } else {
        consumer
            .assign(&assignment(&consumer, &args)?)
            .context("cannot assign partitions")?;
    }
    let template = Template::parse(&args.format);
    let mut out = BufWriter::with_capacity(1 << 16, std::io::stdout().lock());
    let mut line = Vec::with_capacity(256);
    let mut count: u64 = 0;
    let mut last_record = Instant::now();
    // Assigned partitions are read in batches; a group member polls one record
    // at a time, because the crate handles rebalances (as queue events) in `poll`.
    let mut queue = args.group.is_none().then(|| BatchQueue::new(&consumer));
    let with_headers = template.needs_headers();
    while !stop.load(Ordering::Relaxed) && args.max_messages.is_none_or(|max| count < max) {
        let room = args
            .max_messages
            .map_or(CONSUME_BATCH, |max| ((max - count) as usize).min(CONSUME_BATCH));
        let mut got = 0;
        let mut emit = |record: Result<RecordView<'_>, String>| match record {
            Ok(record) => {
                line.clear();
                template.render(&record, &mut line);
                got += 1;
                out.write_all(&line)
            }
            Err(e) => {
                eprintln!("sluice: {e}");
                Ok(())
            }
        };
        match queue.as_mut() {
            Some(queue) => queue.poll(POLL_INTERVAL, room, with_headers, &mut emit)?,
            None => match consumer.poll(POLL_INTERVAL) {
                Some(Ok(message)) => emit(Ok(borrowed_view(&message, with_headers)))?,
                Some(Err(e)) => emit(Err(e.to_string()))?,
                None => {}
            },
        }
        count += got;
        if got > 0 {
            last_record = Instant::now();
        } else {
            out.flush()?;
            if args
                .timeout_ms
                .is_some_and(|ms| last_record.elapsed() >= Duration::from_millis(ms))
            {
                break;
            }
        }
    }
    out.flush()?;
    drop(queue);
    eprintln!("Processed a total of {count} messages");
    Ok(())
}

/// One consumed record, borrowed from librdkafka's message.
pub struct RecordView<'a> {
    pub key: Option<&'a [u8]>,
    pub value: Option<&'a [u8]>,
    topic: &'a str,
    partition: i32,
    offset: i64,
    timestamp_ms: i64,
    headers: Vec<(&'a str, Option<&'a [u8]>)>,
}

fn borrowed_view<'a>(m: &'a BorrowedMessage<'_>, with_headers: bool) -> RecordView<'a> {
    let headers = match m.headers() {
        Some(headers) if with_headers => headers.iter().map(|h| (h.key, h.value)).collect(),
        _ => Vec::new(),
    };
    RecordView {
        key: m.key(),
        value: m.payload(),
        topic: m.topic(),
        partition: m.partition(),
        offset: m.offset(),
        timestamp_ms: m.timestamp().to_millis().unwrap_or(-1),
        headers,
    }
}

/// librdkafka's batch consume on the consumer queue (what rdkafka_performance
/// uses): one call hands over many messages, where the crate's `poll` costs a
/// queue operation per message. Only for assigned partitions: the
/// crate delivers a group's rebalances as events that only its own `poll` handles.
pub struct BatchQueue {
    queue: *mut rdkafka_sys::rd_kafka_queue_t,
    messages: Vec<*mut rdkafka_sys::rd_kafka_message_t>,
}

impl BatchQueue {
    pub fn new(consumer: &BaseConsumer) -> Self {
        // SAFETY: the handle is valid for the consumer's lifetime, which outlives this queue (dropped first).
        let queue = unsafe { rdkafka_sys::rd_kafka_queue_get_consumer(consumer.client().native_ptr()) };
        Self {
            queue,
            messages: vec![std::ptr::null_mut(); CONSUME_BATCH],
        }
    }

    /// Waits up to `timeout` for up to `max` messages and hands each to `each`.
    pub fn poll(
        &mut self,
        timeout: Duration,
        max: usize,
        with_headers: bool,
        mut each: impl FnMut(Result<RecordView<'_>, String>) -> std::io::Result<()>,
    ) -> std::io::Result<()> {
        let max = max.min(self.messages.len());
        // SAFETY: the array has room for `max` pointers; librdkafka fills the first n.
        let n = unsafe {
            rdkafka_sys::rd_kafka_consume_batch_queue(
                self.queue,
                timeout.as_millis() as i32,
                self.messages.as_mut_ptr(),
                max,
            )
        };
        let mut result = Ok(());
        for &message in &self.messages[..n.max(0) as usize] {
            if result.is_ok() {
                // SAFETY: each pointer is a live message until destroyed just below.
                result = each(unsafe { view(message, with_headers) });
            }
            // SAFETY: every message librdkafka handed over is destroyed exactly once.
            unsafe { rdkafka_sys::rd_kafka_message_destroy(message) };
        }
        result
    }
}

impl Drop for BatchQueue {
    fn drop(&mut self) {
        // SAFETY: the queue reference from rd_kafka_queue_get_consumer is released once.
        unsafe { rdkafka_sys::rd_kafka_queue_destroy(self.queue) };
    }
}

/// # Safety
/// `message` must be a live message from librdkafka; the view borrows it.
unsafe fn view<'a>(
    message: *mut rdkafka_sys::rd_kafka_message_t,
    with_headers: bool,
) -> Result<RecordView<'a>, String> {
    // SAFETY (whole body): the caller guarantees a live message; pointers with
    // lengths come from librdkafka and stay valid until the message is destroyed.
    unsafe {
        let m = &*message;
        if m.err != rdkafka_sys::rd_kafka_resp_err_t::RD_KAFKA_RESP_ERR_NO_ERROR {
            let text = std::ffi::CStr::from_ptr(rdkafka_sys::rd_kafka_message_errstr(message));
            return Err(text.to_string_lossy().into_owned());
        }
        let bytes = |ptr: *mut std::ffi::c_void, len: usize| {
            (!ptr.is_null()).then(|| std::slice::from_raw_parts(ptr as *const u8, len))
        };
        let topic = std::ffi::CStr::from_ptr(rdkafka_sys::rd_kafka_topic_name(m.rkt))
            .to_str()
            .unwrap_or("");
        let mut kind = rdkafka_sys::rd_kafka_timestamp_type_t::RD_KAFKA_TIMESTAMP_NOT_AVAILABLE;
        let timestamp_ms = rdkafka_sys::rd_kafka_message_timestamp(message, &mut kind);
        let mut headers = Vec::new();
        let mut list: *mut rdkafka_sys::rd_kafka_headers_t = std::ptr::null_mut();
        if with_headers
            && rdkafka_sys::rd_kafka_message_headers(message, &mut list)
                == rdkafka_sys::rd_kafka_resp_err_t::RD_KAFKA_RESP_ERR_NO_ERROR
        {
            let mut i = 0;
            loop {
                let (mut name, mut value, mut size) = (std::ptr::null(), std::ptr::null(), 0usize);
                let found = rdkafka_sys::rd_kafka_header_get_all(list, i, &mut name, &mut value, &mut size);
                if found != rdkafka_sys::rd_kafka_resp_err_t::RD_KAFKA_RESP_ERR_NO_ERROR {
                    break;
                }
                let name = std::ffi::CStr::from_ptr(name).to_str().unwrap_or("");
                headers.push((name, bytes(value as *mut _, size)));
                i += 1;
            }
        }
        Ok(RecordView {
            key: bytes(m.key, m.key_len),
            value: bytes(m.payload, m.len),
            topic,
            partition: m.partition,
            offset: m.offset,
            timestamp_ms,
            headers,
        })
    }
}

/// The partitions to read without a group, each at its start offset.
fn assignment(consumer: &BaseConsumer, args: &ConsumeArgs) -> anyhow::Result<TopicPartitionList> {
    let metadata = consumer
        .fetch_metadata(Some(&args.topic), METADATA_TIMEOUT)
        .context("cannot read metadata")?;
    let topic = metadata.topics().first().context("no metadata for the topic")?;
    if let Some(e) = topic.error() {
        bail!("topic '{}': {}", args.topic, rdkafka::types::RDKafkaErrorCode::from(e));
    }
    let start = match args.offset.as_deref() {
        Some("earliest") => Offset::Beginning,
        Some("latest") => Offset::End,
        Some(n) => Offset::Offset(n.parse().with_context(|| format!("--offset '{n}' is not a number"))?),
        None if args.from_beginning => Offset::Beginning,
        None => Offset::End,
    };
    let mut list = TopicPartitionList::new();
    for p in topic.partitions() {
        if args.partition.is_none_or(|wanted| wanted == p.id()) {
            list.add_partition_offset(&args.topic, p.id(), start)?;
        }
    }
    if list.count() == 0 {
        bail!("topic '{}' has no partition {:?}", args.topic, args.partition);
    }
    Ok(list)
}

#[derive(Debug, PartialEq, Eq)]
enum Piece {
    Text(Vec<u8>),
    Key,
    Value,
    Partition,
    Offset,
    Timestamp,
    Headers,
    Topic,
    KeyLength,
    ValueLength,
}

/// A parsed `--format` template.
#[derive(Debug)]
pub struct Template(Vec<Piece>);

impl Template {
    pub fn parse(text: &str) -> Self {
        let mut pieces = Vec::new();
        let mut literal = Vec::new();
        let mut chars = text.chars();
        // Bounded by the template's length.
        while let Some(c) = chars.next() {
            let piece = match (c, c == '%' || c == '\\') {
                (_, false) => None,
                ('%', true) => match chars.next() {
                    Some('k') => Some(Piece::Key),
                    Some('s') => Some(Piece::Value),
                    Some('p') => Some(Piece::Partition),
                    Some('o') => Some(Piece::Offset),
                    Some('T') => Some(Piece::Timestamp),
                    Some('h') => Some(Piece::Headers),
                    Some('t') => Some(Piece::Topic),
                    Some('K') => Some(Piece::KeyLength),
                    Some('S') => Some(Piece::ValueLength),
                    Some(other) => {
                        literal.push(b'%');
                        let mut buf = [0u8; 4];
                        literal.extend_from_slice(other.encode_utf8(&mut buf).as_bytes());
                        continue;
                    }
                    None => {
                        literal.push(b'%');
                        continue;
                    }
                },
                _ => {
                    let escaped = match chars.next() {
                        Some('n') => '\n',
                        Some('t') => '\t',
                        Some(other) => other,
                        None => '\\',
                    };
                    let mut buf = [0u8; 4];
                    literal.extend_from_slice(escaped.encode_utf8(&mut buf).as_bytes());
                    continue;
                }
            };
            match piece {
                Some(p) => {
                    if !literal.is_empty() {
                        pieces.push(Piece::Text(std::mem::take(&mut literal)));
                    }
                    pieces.push(p);
                }
                None => {
                    let mut buf = [0u8; 4];
                    literal.extend_from_slice(c.encode_utf8(&mut buf).as_bytes());
                }
            }
        }
        if !literal.is_empty() {
            pieces.push(Piece::Text(literal));
        }
        Template(pieces)
    }

    fn needs_headers(&self) -> bool {
        self.0.contains(&Piece::Headers)
    }

    fn render(&self, r: &RecordView<'_>, out: &mut Vec<u8>) {
        let number = |out: &mut Vec<u8>, n: i64| out.extend_from_slice(n.to_string().as_bytes());
        for piece in &self.0 {
            match piece {
                Piece::Text(t) => out.extend_from_slice(t),
                Piece::Key => out.extend_from_slice(r.key.unwrap_or_default()),
                Piece::Value => out.extend_from_slice(r.value.unwrap_or_default()),
                Piece::Partition => number(out, r.partition as i64),
                Piece::Offset => number(out, r.offset),
                Piece::Timestamp => number(out, r.timestamp_ms),
                Piece::Topic => out.extend_from_slice(r.topic.as_bytes()),
                Piece::KeyLength => number(out, r.key.map_or(-1, |k| k.len() as i64)),
                Piece::ValueLength => number(out, r.value.map_or(-1, |v| v.len() as i64)),
                Piece::Headers => {
                    for (i, (name, value)) in r.headers.iter().enumerate() {
                        if i > 0 {
                            out.push(b',');
                        }
                        out.extend_from_slice(name.as_bytes());
                        out.push(b'=');
                        out.extend_from_slice(value.unwrap_or_default());
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn templates_parse_like_kcat() {
        let t = Template::parse("%k=%s (%p/%o) %h\\n%%x\\\\");
        assert_eq!(
            t.0,
            vec![
                Piece::Key,
                Piece::Text(b"=".to_vec()),
                Piece::Value,
                Piece::Text(b" (".to_vec()),
                Piece::Partition,
                Piece::Text(b"/".to_vec()),
                Piece::Offset,
                Piece::Text(b") ".to_vec()),
                Piece::Headers,
                Piece::Text(b"\n%%x\\".to_vec()),
            ]
        );
    }

    #[test]
    fn console_header_prefixes() {
        assert_eq!(
            split_headers("a:1,b:2\tk:v").unwrap(),
            (vec![("a", "1"), ("b", "2")], "k:v")
        );
        assert_eq!(split_headers("\tvalue").unwrap(), (vec![], "value"));
        assert!(split_headers("no tab").is_err());
        assert!(split_headers("nocolon\tv").is_err());
    }
}
