//! Load generation with Kafka's own performance tools (`--client java`):
//! `ProducerPerformance` and `ConsumerPerformance` from kafka-tools 4.4, the
//! tools LinkedIn's 2014 runs used, with the same parameters, so a row
//! compares like with like. They run as `java -cp $SLUICE_KAFKA_CLASSPATH`
//! (`export SLUICE_KAFKA_CLASSPATH="$(perf/peer-kafka.sh classpath)"`).
//! Their output is parsed, not their records: the consumer counts what it
//! read but cannot check that each record arrived once.

use std::process::Command;

use anyhow::{Context, bail};

use super::load::{ConsumeSpec, Measured, ProduceSpec};

const CLASSPATH_ENV: &str = "SLUICE_KAFKA_CLASSPATH";
/// LinkedIn's producer setting (seed 003): 64 MB of buffered records.
const BUFFER_MEMORY_BYTES: u64 = 67_108_864;
/// ConsumerPerformance stops after this long without a record.
const CONSUME_TIMEOUT_MS: u64 = 30_000;

fn java(main_class: &str, args: &[String]) -> anyhow::Result<String> {
    let classpath = std::env::var(CLASSPATH_ENV).with_context(|| {
        format!("--client java needs {CLASSPATH_ENV}: export {CLASSPATH_ENV}=\"$(perf/peer-kafka.sh classpath)\"")
    })?;
    let output = Command::new("java")
        .args(["-Xmx1G", "-cp", &classpath, main_class])
        .args(args)
        .output()
        .context("cannot run java")?;
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    if !output.status.success() {
        bail!(
            "{main_class} failed: {}",
            String::from_utf8_lossy(&output.stderr).lines().last().unwrap_or("")
        );
    }
    Ok(stdout)
}

/// ProducerPerformance's summary, its last line: "N records sent, R records/sec
/// (M MB/sec), A ms avg latency, X ms max latency, P50 ms 50th, P95 ms 95th,
/// P99 ms 99th, P999 ms 99.9th."
fn parse_producer_summary(out: &str, size: usize) -> anyhow::Result<Measured> {
    let line = out
        .lines()
        .rev()
        .find(|l| l.contains("records sent"))
        .context("ProducerPerformance printed no summary")?;
    let numbers: Vec<f64> = line
        .split([',', '(', ' '])
        .filter_map(|word| word.parse::<f64>().ok())
        .collect();
    let [records, per_second, _mb, _avg, max_ms, p50_ms, _p95, p99_ms, p999_ms] = numbers[..] else {
        bail!("unexpected ProducerPerformance summary: {line}");
    };
    let us = |ms: f64| (ms * 1000.0) as u64;
    Ok(Measured {
        records: records as u64,
        bytes: records as u64 * size as u64,
        seconds: records / per_second.max(1e-9),
        latency_us: Some([us(p50_ms), us(p99_ms), us(p999_ms), us(max_ms)]),
        latency_curve_us: Vec::new(),
        per_second: Vec::new(),
        failed: 0,
    })
}

pub fn produce(bootstrap: &str, spec: &ProduceSpec) -> anyhow::Result<Measured> {
    let throughput = if spec.rate == 0 {
        "-1".to_string()
    } else {
        spec.rate.to_string()
    };
    let args: Vec<String> = [
        "--topic",
        &spec.topic,
        "--num-records",
        &spec.records.to_string(),
        "--record-size",
        &spec.size.to_string(),
        "--throughput",
        &throughput,
        "--producer-props",
        &format!("bootstrap.servers={bootstrap}"),
        &format!("acks={}", spec.acks),
        &format!("batch.size={}", spec.batch_size),
        &format!("linger.ms={}", spec.linger_ms),
        &format!("buffer.memory={BUFFER_MEMORY_BYTES}"),
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    parse_producer_summary(&java("org.apache.kafka.tools.ProducerPerformance", &args)?, spec.size)
}

/// ConsumerPerformance's CSV line: start, end, MB, MB/s, records, records/s,
/// rebalance ms, fetch ms, fetch MB/s, fetch records/s.
fn parse_consumer_summary(out: &str, size: usize) -> anyhow::Result<Measured> {
    let line = out
        .lines()
        .rev()
        .find(|l| l.split(',').count() >= 10 && !l.starts_with("start.time"))
        .context("ConsumerPerformance printed no summary")?;
    let fields: Vec<&str> = line.split(',').map(str::trim).collect();
    let records: u64 = fields[4].parse().context("records consumed")?;
    let fetch_ms: f64 = fields[7].parse().context("fetch time")?;
    Ok(Measured {
        records,
        bytes: records * size as u64,
        seconds: fetch_ms / 1000.0,
        latency_us: None,
        latency_curve_us: Vec::new(),
        per_second: Vec::new(),
        failed: 0,
    })
}

/// Reads the whole topic (ConsumerPerformance subscribes; it cannot read a
/// subset of partitions) until `spec.records` arrived.
pub fn consume(bootstrap: &str, spec: &ConsumeSpec) -> anyhow::Result<Measured> {
    // A fresh group each run: nothing committed by an earlier one.
    let started_ns = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    let group = format!("sluice-bench-java-{}-{started_ns}", std::process::id());
    let args: Vec<String> = [
        "--bootstrap-server",
        bootstrap,
        "--topic",
        &spec.topic,
        "--messages",
        &spec.records.to_string(),
        "--timeout",
        &CONSUME_TIMEOUT_MS.to_string(),
        "--group",
        &group,
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    let mut measured = parse_consumer_summary(
        &java("org.apache.kafka.tools.ConsumerPerformance", &args)?,
        spec.record_size,
    )?;
    // The tool stops after the poll that reaches --messages and counts that
    // whole poll: records past the row's count were read, not delivered twice.
    if measured.records > spec.records {
        measured.records = spec.records;
        measured.bytes = spec.records * spec.record_size as u64;
    }
    Ok(measured)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_tools_summaries_parse() {
        let produced = "1000000 records sent, 512820.5 records/sec (48.91 MB/sec), 30.12 ms avg latency, \
                        412.00 ms max latency, 25 ms 50th, 80 ms 95th, 120 ms 99th, 300 ms 99.9th.";
        let m = parse_producer_summary(produced, 100).unwrap();
        assert_eq!((m.records, m.bytes), (1_000_000, 100_000_000));
        assert!((m.records_per_second() - 512_820.5).abs() < 1.0);
        assert_eq!(m.latency_us, Some([25_000, 120_000, 300_000, 412_000]));
        let consumed = "start.time, end.time, data.consumed.in.MB, MB.sec, data.consumed.in.nMsg, nMsg.sec, \
                        rebalance.time.ms, fetch.time.ms, fetch.MB.sec, fetch.nMsg.sec\n\
                        2026-12-01 10:00:00:000, 2026-12-01 10:00:03:000, 95.3674, 31.7891, 1000000, 333333.3, \
                        500, 2500, 38.1470, 400000.0";
        let m = parse_consumer_summary(consumed, 100).unwrap();
        assert_eq!(m.records, 1_000_000);
        assert!((m.records_per_second() - 400_000.0).abs() < 1.0);
        assert!(parse_producer_summary("nothing here", 100).is_err());
    }
}
