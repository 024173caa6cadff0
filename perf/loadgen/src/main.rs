//! Produces or consumes N records with librdkafka and prints the rate as one JSON line.

use std::time::{Duration, Instant};

use clap::Parser;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::producer::{BaseProducer, BaseRecord, DeliveryResult, Producer, ProducerContext};
use rdkafka::{ClientContext, Message, Offset, TopicPartitionList};

#[derive(Parser)]
struct Args {
    #[arg(long)]
    bootstrap: String,
    #[arg(long)]
    topic: String,
    /// "produce" or "consume".
    #[arg(long)]
    mode: String,
    #[arg(long, default_value_t = 10_000_000)]
    records: u64,
    #[arg(long, default_value_t = 100)]
    size: usize,
    #[arg(long, default_value_t = 6)]
    partitions: i32,
    #[arg(long, default_value = "1")]
    acks: String,
    #[arg(long, default_value_t = 5)]
    linger_ms: u64,
    #[arg(long, default_value_t = 1_000_000)]
    batch_size: u64,
    /// Extra librdkafka settings, KEY=VALUE, applied last.
    #[arg(long = "set")]
    settings: Vec<String>,
}

fn apply(config: &mut ClientConfig, settings: &[String]) {
    for kv in settings {
        let (k, v) = kv.split_once('=').expect("--set KEY=VALUE");
        config.set(k, v);
    }
}

struct Counter;
impl ClientContext for Counter {}
impl ProducerContext for Counter {
    type DeliveryOpaque = ();
    fn delivery(&self, result: &DeliveryResult<'_>, _: ()) {
        if let Err((e, _)) = result {
            eprintln!("delivery failed: {e}");
            std::process::exit(2);
        }
    }
}

fn produce(args: &Args) {
    let mut config = ClientConfig::new();
    config
        .set("bootstrap.servers", &args.bootstrap)
        .set("acks", &args.acks)
        .set("linger.ms", args.linger_ms.to_string())
        .set("batch.size", args.batch_size.to_string())
        .set("queue.buffering.max.kbytes", "1048576")
        .set("queue.buffering.max.messages", "2000000")
        .set("enable.idempotence", "false");
    apply(&mut config, &args.settings);
    let producer: BaseProducer<Counter> = config.create_with_context(Counter).expect("producer");
    let payload = vec![b'x'; args.size];
    let start = Instant::now();
    for i in 0..args.records {
        let partition = (i % args.partitions as u64) as i32;
        loop {
            match producer.send(BaseRecord::<(), [u8]>::to(&args.topic).payload(&payload[..]).partition(partition)) {
                Ok(()) => break,
                Err((_, _)) => {
                    producer.poll(Duration::from_millis(1));
                }
            }
        }
        if i % 4096 == 0 {
            producer.poll(Duration::ZERO);
        }
    }
    producer.flush(Duration::from_secs(120)).expect("flush");
    report(args, start.elapsed());
}

fn consume(args: &Args) {
    let mut config = ClientConfig::new();
    config
        .set("bootstrap.servers", &args.bootstrap)
        .set("group.id", "loadgen")
        .set("enable.auto.commit", "false")
        // Keep the fetcher busy: refill the local queue long before it runs dry.
        .set("queued.min.messages", "10000000")
        .set("queued.max.messages.kbytes", "2097151");
    apply(&mut config, &args.settings);
    let consumer: BaseConsumer = config.create().expect("consumer");
    let mut assignment = TopicPartitionList::new();
    for p in 0..args.partitions {
        assignment.add_partition_offset(&args.topic, p, Offset::Beginning).expect("assign");
    }
    consumer.assign(&assignment).expect("assign");
    let start = Instant::now();
    let mut seen = 0u64;
    while seen < args.records {
        match consumer.poll(Duration::from_secs(10)) {
            Some(Ok(m)) => {
                seen += 1;
                std::hint::black_box(m.payload_len());
            }
            Some(Err(e)) => panic!("consume error: {e}"),
            None => panic!("no data for 10 s after {seen} records"),
        }
    }
    report(args, start.elapsed());
}

fn report(args: &Args, elapsed: Duration) {
    let secs = elapsed.as_secs_f64();
    let records_per_s = args.records as f64 / secs;
    let mb_per_s = records_per_s * args.size as f64 / 1e6;
    println!(
        "{{\"mode\":\"{}\",\"records\":{},\"size\":{},\"seconds\":{secs:.3},\"records_per_s\":{records_per_s:.0},\"mb_per_s\":{mb_per_s:.1}}}",
        args.mode, args.records, args.size
    );
}

fn main() {
    let args = Args::parse();
    match args.mode.as_str() {
        "produce" => produce(&args),
        "consume" => consume(&args),
        other => panic!("unknown mode {other}"),
    }
}
