//! The LinkedIn rows (BRIEF, "The LinkedIn runs to reproduce"): each with its
//! original parameters, scaled by `--scale`, checked (every record produced is
//! counted back exactly once), and reported next to LinkedIn's 2014 figure.

use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::Duration;

use anyhow::{Context, bail};
use serde::{Deserialize, Serialize};
use serde_json::json;

use super::load::{ConsumeSpec, Measured, ProduceSpec};
use super::{Engine, LinkedinArgs};
use crate::client::{Client, admin};
use crate::local::{LocalCluster, Processes};

/// LinkedIn's run: 50 million 100-byte records into 6 partitions.
const RECORDS: f64 = 50_000_000.0;
const SIZE: usize = 100;
const PARTITIONS: i32 = 6;
const SWEEP_SIZES: &[usize] = &[10, 100, 1000, 10_000, 100_000];
/// The steady rate of the end-to-end latency run.
const E2E_RATE: u64 = 100_000;
const NEEDS_CLUSTER: &str = "needs a 3-broker cluster";
const NOT_SELECTED: &str = "not selected (--only)";
pub const STORED_ROW: &str = "Throughput vs stored data";
pub const END_TO_END_ROW: &str = "End-to-end latency (100k rec/s steady)";
pub const SWEEP_PREFIX: &str = "Message size ";

/// One row of the table, as results.json holds it.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Row {
    pub name: String,
    pub linkedin: String,
    pub status: String,
    /// Payload bytes per record.
    #[serde(default)]
    pub size_bytes: usize,
    pub records: u64,
    pub records_per_second: f64,
    pub mb_per_second: f64,
    pub latency_us: Option<[u64; 4]>,
    /// (quantile, microseconds): the latency percentile chart.
    #[serde(default)]
    pub latency_curve_us: Vec<(f64, u64)>,
    pub broker_cpu_s_per_gb: Option<f64>,
    /// Records done in each second of the run (the stored-data chart).
    pub per_second: Vec<u64>,
}

impl Row {
    fn skipped(name: &str, linkedin: &'static str, status: &str) -> Self {
        Row {
            name: name.to_string(),
            linkedin: linkedin.to_string(),
            status: status.to_string(),
            size_bytes: SIZE,
            records: 0,
            records_per_second: 0.0,
            mb_per_second: 0.0,
            latency_us: None,
            latency_curve_us: Vec::new(),
            broker_cpu_s_per_gb: None,
            per_second: Vec::new(),
        }
    }
}

struct Bench {
    bootstrap: String,
    engine: Engine,
    /// Lower-cased `--only` texts; empty runs every row.
    only: Vec<String>,
    /// The measured broker's processes, when the bench knows them (its own
    /// local brokers, or `--peer-pid`): CPU per GB and RSS come from /proc.
    processes: Option<Processes>,
    /// Brokers in the measured cluster: the replicated rows need three.
    brokers: usize,
    scale: f64,
    exe: PathBuf,
    rows: Vec<Row>,
}

fn scaled(scale: f64, records: f64) -> u64 {
    ((records * scale).round() as u64).max(1000)
}

pub fn run(args: LinkedinArgs) -> anyhow::Result<()> {
    if !(args.scale > 0.0 && args.scale <= 1.0) {
        bail!("--scale must be in (0, 1]");
    }
    if !args.peer_pid.is_empty() && args.bootstrap.is_none() {
        bail!("--peer-pid names the processes of the broker given with --bootstrap");
    }
    let local = match &args.bootstrap {
        Some(_) => None,
        None => Some(LocalCluster::start(args.brokers)?),
    };
    let processes = match &local {
        Some(local) => Some(local.processes()),
        None if !args.peer_pid.is_empty() => Some(Processes {
            pids: args.peer_pid.clone(),
        }),
        None => None,
    };
    // Before any row: the broker at rest, with its topics' logs open.
    let idle_rss_bytes = processes.as_ref().map(Processes::rss_bytes);
    let bootstrap = args
        .bootstrap
        .clone()
        .unwrap_or_else(|| local.as_ref().expect("started").bootstrap());
    let brokers = broker_count(&bootstrap)?;
    let mut bench = Bench {
        bootstrap,
        engine: args.client,
        only: args
            .only
            .iter()
            .flat_map(|o| o.split('|'))
            .map(|o| o.trim().to_lowercase())
            .filter(|o| !o.is_empty())
            .collect(),
        processes,
        brokers,
        scale: args.scale,
        exe: std::env::current_exe()?,
        rows: Vec::new(),
    };
    bench.all_rows()?;
    let out = args
        .out
        .clone()
        .unwrap_or_else(|| PathBuf::from("bench-results").join(crate::model::now_ms().to_string()));
    write_results(&out, &args, &bench, idle_rss_bytes)?;
    print_table(&bench.rows);
    println!("\nresults: {}", out.display());
    draw_charts(&out, &[("sluice", &bench.rows)]);
    if bench
        .rows
        .iter()
        .all(|r| r.status == NOT_SELECTED || r.status == NEEDS_CLUSTER)
    {
        bail!(
            "--only {:?} selects no row that can run here",
            args.only.as_deref().unwrap_or_default()
        );
    }
    let failed: Vec<&Row> = bench.rows.iter().filter(|r| r.status.starts_with("error")).collect();
    if !failed.is_empty() {
        bail!("{} row(s) failed their checks", failed.len());
    }
    Ok(())
}

impl Bench {
    fn all_rows(&mut self) -> anyhow::Result<()> {
        let records = scaled(self.scale, RECORDS);
        let produce = |topic: &str, records: u64, size: usize, acks: &str, batch_size: usize| ProduceSpec {
            topic: topic.to_string(),
            records,
            size,
            acks: acks.to_string(),
            batch_size,
            linger_ms: 5,
            rate: 0,
            first_seq: 0,
        };
        self.topic("linkedin-1p")?;
        let one = produce("linkedin-1p", records, SIZE, "1", 8196);
        self.measure(
            "1 producer, no replication",
            "821,557 rec/s (78.3 MB/s)",
            SIZE,
            records,
            |b| b.engine.produce(&b.bootstrap, &one),
        );
        self.replicated_rows(records)?;
        self.topic("linkedin-3p")?;
        self.measure(
            "3 producers, no replication (separate processes)",
            "2,024,032 rec/s with 3x",
            SIZE,
            records,
            |b| {
                let share = records / 3;
                let jobs: Vec<_> = (0..3)
                    .map(|w| {
                        // The last producer also sends the remainder.
                        let n = if w == 2 { records - 2 * share } else { share };
                        let mut spec = produce("linkedin-3p", n, SIZE, "1", 8196);
                        spec.first_seq = w * share;
                        serde_json::to_string(&spec).expect("serializable")
                    })
                    .collect();
                b.workers(&jobs)
            },
        );
        self.drop_topic("linkedin-3p");
        self.topic("linkedin-stored")?;
        let stored = produce("linkedin-stored", records * 2, SIZE, "1", 8196);
        self.measure(STORED_ROW, "flat up to ~1 TB", SIZE, records * 2, |b| {
            b.engine.produce(&b.bootstrap, &stored)
        });
        self.drop_topic("linkedin-stored");
        for size in SWEEP_SIZES {
            let topic = format!("linkedin-size-{size}");
            self.topic(&topic)?;
            let n = scaled(self.scale, RECORDS * (SIZE as f64 / *size as f64).min(1.0));
            let spec = produce(&topic, n, *size, "1", 128_000);
            self.measure(
                &format!("{SWEEP_PREFIX}{size} B"),
                "MB/s rises with size",
                *size,
                n,
                |b| b.engine.produce(&b.bootstrap, &spec),
            );
            self.drop_topic(&topic);
        }
        let all = |topic: &str, partitions: Vec<i32>, records: u64| ConsumeSpec {
            topic: topic.to_string(),
            partitions,
            records,
            timed: false,
            seq_limit: records.max(1),
            record_size: SIZE,
        };
        let one_consumer = all("linkedin-1p", (0..PARTITIONS).collect(), records);
        self.measure("1 consumer", "940,521 rec/s (89.7 MB/s)", SIZE, records, |b| {
            b.engine.consume(&b.bootstrap, &one_consumer)
        });
        self.measure(
            "3 consumers (separate processes)",
            "2,615,968 rec/s (249.5 MB/s)",
            SIZE,
            records,
            |b| b.three_consumers("linkedin-1p", records),
        );
        self.topic("linkedin-together")?;
        let together_produce = produce("linkedin-together", records, SIZE, "1", 8196);
        let together_consume = all("linkedin-together", (0..PARTITIONS).collect(), records);
        self.measure(
            "Producer and consumer together",
            "795,064 rec/s (75.8 MB/s)",
            SIZE,
            records,
            |b| {
                let (bootstrap, engine) = (b.bootstrap.clone(), b.engine);
                let consumer = std::thread::spawn(move || engine.consume(&bootstrap, &together_consume));
                b.engine.produce(&b.bootstrap, &together_produce)?;
                consumer
                    .join()
                    .map_err(|_| anyhow::anyhow!("consumer thread panicked"))?
            },
        );
        self.drop_topic("linkedin-together");
        self.drop_topic("linkedin-1p");
        self.topic_with_partitions("linkedin-e2e", 1)?;
        let e2e_records = scaled(self.scale, RECORDS / 10.0);
        self.measure(
            END_TO_END_ROW,
            "2 ms p50, 3 ms p99, 14 ms p99.9",
            SIZE,
            e2e_records,
            |b| {
                b.engine
                    .end_to_end(&b.bootstrap, "linkedin-e2e", e2e_records, SIZE, E2E_RATE)
            },
        );
        self.drop_topic("linkedin-e2e");
        Ok(())
    }

    /// Deletes a topic once its rows are done: a full-scale run stores ~55 GB
    /// in all, but never more than ~15 GB at once, and a rerun against the
    /// same broker starts from empty topics.
    fn drop_topic(&self, name: &str) {
        let dropped = Client::connect(&self.bootstrap, Duration::from_secs(30))
            .and_then(|mut client| crate::client::admin::delete_topic(&mut client, name));
        if let Err(e) = dropped {
            eprintln!("warning: {e:#}");
        }
    }

    /// LinkedIn's three replicated rows, on topics with three replicas: async
    /// is acks=1 (the leader answers), sync is acks=all (the ISR answers).
    fn replicated_rows(&mut self, records: u64) -> anyhow::Result<()> {
        const ROWS: [(&str, &str, &str, usize); 3] = [
            ("1 producer, 3x async replication", "786,980 rec/s (75.1 MB/s)", "1", 1),
            ("1 producer, 3x sync replication", "421,823 rec/s (40.2 MB/s)", "all", 1),
            (
                "3 producers, 3x async replication",
                "2,024,032 rec/s (193.0 MB/s)",
                "1",
                3,
            ),
        ];
        for (i, (name, figure, acks, producers)) in ROWS.into_iter().enumerate() {
            if self.brokers < 3 {
                self.rows.push(Row::skipped(name, figure, NEEDS_CLUSTER));
                continue;
            }
            let topic = format!("linkedin-r3-{i}");
            self.topic_replicated(&topic, PARTITIONS, 3)?;
            let spec = ProduceSpec {
                topic: topic.clone(),
                records,
                size: SIZE,
                acks: acks.to_string(),
                batch_size: 8196,
                linger_ms: 5,
                rate: 0,
                first_seq: 0,
            };
            self.measure(name, figure, SIZE, records, |b| {
                if producers == 1 {
                    return b.engine.produce(&b.bootstrap, &spec);
                }
                let share = records / producers as u64;
                let jobs: Vec<String> = (0..producers as u64)
                    .map(|w| {
                        let last = w + 1 == producers as u64;
                        let mut job = spec.clone();
                        job.records = if last { records - share * w } else { share };
                        job.first_seq = w * share;
                        serde_json::to_string(&job).expect("serializable")
                    })
                    .collect();
                b.workers(&jobs)
            });
            self.drop_topic(&topic);
        }
        Ok(())
    }

    fn topic(&self, name: &str) -> anyhow::Result<()> {
        self.topic_with_partitions(name, PARTITIONS)
    }

    fn topic_with_partitions(&self, name: &str, partitions: i32) -> anyhow::Result<()> {
        self.topic_replicated(name, partitions, 1)
    }

    fn topic_replicated(&self, name: &str, partitions: i32, replication_factor: i16) -> anyhow::Result<()> {
        let mut client = Client::connect(&self.bootstrap, Duration::from_secs(30))?;
        crate::client::admin::create_topic(&mut client, name, partitions, replication_factor, &[], true)?;
        Ok(())
    }

    /// Runs one row, checks that exactly `expected` records went through, and
    /// records it with the broker's CPU per GB when its processes are known.
    fn measure(
        &mut self,
        name: &str,
        linkedin: &'static str,
        size_bytes: usize,
        expected: u64,
        run: impl FnOnce(&Self) -> anyhow::Result<Measured>,
    ) {
        let lower = name.to_lowercase();
        if !self.only.is_empty() && !self.only.iter().any(|only| lower.contains(only.as_str())) {
            self.rows.push(Row::skipped(name, linkedin, NOT_SELECTED));
            return;
        }
        eprintln!("running: {name}");
        let cpu_before = self.processes.as_ref().map(Processes::cpu_seconds);
        let result = run(self);
        let cpu = self
            .processes
            .as_ref()
            .map(|p| p.cpu_seconds() - cpu_before.unwrap_or(0.0));
        let row = match result {
            Err(e) => Row {
                size_bytes,
                ..Row::skipped(name, linkedin, &format!("error: {e:#}"))
            },
            Ok(m) => {
                let status = if m.records != expected || m.failed > 0 {
                    format!(
                        "error: expected {expected} records once, got {} ({} lost or repeated)",
                        m.records, m.failed
                    )
                } else {
                    "ok".to_string()
                };
                Row {
                    name: name.to_string(),
                    linkedin: linkedin.to_string(),
                    status,
                    size_bytes,
                    records: m.records,
                    records_per_second: m.records_per_second(),
                    mb_per_second: m.mb_per_second(),
                    latency_us: m.latency_us,
                    latency_curve_us: m.latency_curve_us,
                    broker_cpu_s_per_gb: cpu.map(|c| c / (m.bytes.max(1) as f64 / 1e9)),
                    per_second: m.per_second,
                }
            }
        };
        self.rows.push(row);
    }

    /// Runs `jobs` as separate worker processes at once and sums what they measured.
    fn workers(&self, jobs: &[String]) -> anyhow::Result<Measured> {
        let children: Vec<_> = jobs
            .iter()
            .map(|job| {
                Command::new(&self.exe)
                    .args(["bench", "worker", "--bootstrap", &self.bootstrap])
                    .args(["--client", self.engine.name(), "--job", job])
                    .stdout(Stdio::piped())
                    .spawn()
            })
            .collect::<Result<_, _>>()
            .context("cannot start a worker")?;
        let mut total = Measured::default();
        for child in children {
            let output = child.wait_with_output()?;
            if !output.status.success() {
                bail!("a worker failed ({})", output.status);
            }
            let m: Measured = serde_json::from_slice(&output.stdout).context("worker output")?;
            total.records += m.records;
            total.bytes += m.bytes;
            total.failed += m.failed;
            // They ran at once: the row took as long as the slowest.
            total.seconds = total.seconds.max(m.seconds);
        }
        Ok(total)
    }

    /// Three consumer processes, two partitions each, as LinkedIn's three machines.
    fn three_consumers(&self, topic: &str, records: u64) -> anyhow::Result<Measured> {
        let ends = partition_ends(&self.bootstrap, topic)?;
        let jobs: Vec<String> = (0..3)
            .map(|w| {
                let partitions = vec![2 * w, 2 * w + 1];
                let expected = partitions.iter().map(|p| ends[*p as usize]).sum();
                serde_json::to_string(&ConsumeSpec {
                    topic: topic.to_string(),
                    partitions,
                    records: expected,
                    timed: false,
                    seq_limit: records,
                    record_size: SIZE,
                })
                .expect("serializable")
            })
            .collect();
        self.workers(&jobs)
    }
}

/// How many brokers the cluster behind `bootstrap` has.
fn broker_count(bootstrap: &str) -> anyhow::Result<usize> {
    let mut client = Client::connect(bootstrap, Duration::from_secs(30))?;
    Ok(crate::client::admin::metadata(&mut client, None)?.brokers.len())
}

/// The log end offset of each partition of `topic`.
fn partition_ends(bootstrap: &str, topic: &str) -> anyhow::Result<Vec<u64>> {
    let mut client = Client::connect(bootstrap, Duration::from_secs(30))?;
    let partitions = (0..PARTITIONS).map(|p| (topic.to_string(), p)).collect();
    let ends = admin::list_offsets(&mut client, &partitions, admin::LATEST)?;
    Ok((0..PARTITIONS)
        .map(|p| ends.get(&(topic.to_string(), p)).copied().unwrap_or(0).max(0) as u64)
        .collect())
}

/// `sluice bench worker`: runs one job and prints what it measured as JSON.
pub fn worker(engine: Engine, bootstrap: &str, job: &str) -> anyhow::Result<()> {
    let measured = if let Ok(spec) = serde_json::from_str::<ProduceSpec>(job) {
        engine.produce(bootstrap, &spec)?
    } else {
        let spec: ConsumeSpec = serde_json::from_str(job).context("--job is neither a produce nor a consume spec")?;
        engine.consume(bootstrap, &spec)?
    };
    println!("{}", serde_json::to_string(&measured)?);
    Ok(())
}

fn write_results(
    out: &std::path::Path,
    args: &LinkedinArgs,
    bench: &Bench,
    idle_rss_bytes: Option<u64>,
) -> anyhow::Result<()> {
    std::fs::create_dir_all(out).with_context(|| format!("cannot create {}", out.display()))?;
    let doc = json!({
        "benchmark": "linkedin-2014",
        "scale": args.scale,
        "client": args.client.name(),
        "broker": args.bootstrap.clone().unwrap_or_else(|| "local sluice".to_string()),
        "brokers": bench.brokers,
        "broker_idle_rss_bytes": idle_rss_bytes,
        "broker_peak_rss_bytes": bench.processes.as_ref().map(Processes::peak_rss_bytes),
        "rows": bench.rows,
    });
    std::fs::write(out.join("results.json"), serde_json::to_string_pretty(&doc)?)?;
    let mut csv = String::from(
        "row,status,records,records_per_second,mb_per_second,p50_us,p99_us,p999_us,max_us,broker_cpu_s_per_gb,linkedin\n",
    );
    for r in &bench.rows {
        let [p50, p99, p999, max] = r
            .latency_us
            .map_or([String::new(), String::new(), String::new(), String::new()], |l| {
                l.map(|v| v.to_string())
            });
        csv.push_str(&format!(
            "\"{}\",\"{}\",{},{:.0},{:.1},{p50},{p99},{p999},{max},{},\"{}\"\n",
            r.name,
            r.status.replace('"', "'"),
            r.records,
            r.records_per_second,
            r.mb_per_second,
            r.broker_cpu_s_per_gb.map_or(String::new(), |c| format!("{c:.3}")),
            r.linkedin
        ));
    }
    std::fs::write(out.join("results.csv"), csv)?;
    Ok(())
}

/// Draws the charts into `out`; a host without a font gets a warning, not a failure.
fn draw_charts(out: &std::path::Path, runs: &[(&str, &[Row])]) {
    match super::chart::write(out, &super::chart::charts(runs)) {
        Ok(files) => println!("charts: {} files in {}", files.len(), out.display()),
        Err(e) => eprintln!("warning: no charts: {e:#}"),
    }
}

/// What a results.json says: its rows, and the broker's RSS when measured.
#[derive(Deserialize)]
struct Results {
    rows: Vec<Row>,
    #[serde(default)]
    broker_idle_rss_bytes: Option<u64>,
    #[serde(default)]
    broker_peak_rss_bytes: Option<u64>,
}

fn load_results(path: &std::path::Path) -> anyhow::Result<Results> {
    let text = std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))?;
    serde_json::from_str(&text).with_context(|| format!("{} is not a results.json", path.display()))
}

/// `sluice bench compare A.json B.json`: rows matched by name, B/A ratios of
/// throughput and of broker CPU per GB, both brokers' RSS, and both runs
/// drawn on the same charts in `out`.
pub fn compare(a: &std::path::Path, b: &std::path::Path, out: Option<PathBuf>) -> anyhow::Result<()> {
    let (a_results, b_results) = (load_results(a)?, load_results(b)?);
    let (a_rows, b_rows) = (&a_results.rows, &b_results.rows);
    let ratio = |b: f64, a: f64| {
        if a > 0.0 && b > 0.0 {
            format!("{:.2}x", b / a)
        } else {
            "-".into()
        }
    };
    let mut table = Vec::new();
    for a_row in a_rows {
        let Some(b_row) = b_rows.iter().find(|r| r.name == a_row.name) else {
            continue;
        };
        let both_ok = a_row.status == "ok" && b_row.status == "ok";
        if a_row.status != "ok" && b_row.status != "ok" {
            continue; // run on neither side
        }
        let p99 = |r: &Row| {
            r.latency_us
                .map_or("-".into(), |l| format!("{:.2}", l[1] as f64 / 1000.0))
        };
        let cpu = |r: &Row| r.broker_cpu_s_per_gb.map_or("-".into(), |c| format!("{c:.2}"));
        let cpu_ratio = match (a_row.broker_cpu_s_per_gb, b_row.broker_cpu_s_per_gb) {
            (Some(a), Some(b)) if both_ok => ratio(b, a),
            _ => "-".into(),
        };
        table.push(vec![
            a_row.name.clone(),
            format!("{:.0}", a_row.records_per_second),
            format!("{:.0}", b_row.records_per_second),
            if both_ok {
                ratio(b_row.records_per_second, a_row.records_per_second)
            } else {
                "-".into()
            },
            p99(a_row),
            p99(b_row),
            cpu(a_row),
            cpu(b_row),
            cpu_ratio,
        ]);
    }
    if table.is_empty() {
        bail!("the two runs have no row in common");
    }
    let rss = |r: &Results| {
        let mib = |b: Option<u64>| b.map_or("-".into(), |b| format!("{:.0} MiB", b as f64 / (1 << 20) as f64));
        format!(
            "idle RSS {}, peak RSS {}",
            mib(r.broker_idle_rss_bytes),
            mib(r.broker_peak_rss_bytes)
        )
    };
    println!("A: {} ({})", a.display(), rss(&a_results));
    println!("B: {} ({})\n", b.display(), rss(&b_results));
    crate::cli::print_table(
        &[
            "ROW",
            "A REC/S",
            "B REC/S",
            "B/A",
            "A P99 MS",
            "B P99 MS",
            "A CPU S/GB",
            "B CPU S/GB",
            "B/A",
        ],
        &table,
    );
    let out = out.unwrap_or_else(|| PathBuf::from("bench-results").join(format!("compare-{}", crate::model::now_ms())));
    std::fs::create_dir_all(&out).with_context(|| format!("cannot create {}", out.display()))?;
    let label = |letter: &str, path: &std::path::Path| {
        let run = path
            .parent()
            .and_then(|d| d.file_name())
            .map(|n| n.to_string_lossy().into_owned());
        run.map_or(letter.to_string(), |run| format!("{letter}: {run}"))
    };
    draw_charts(&out, &[(&label("A", a), a_rows), (&label("B", b), b_rows)]);
    Ok(())
}

fn print_table(rows: &[Row]) {
    let table: Vec<Vec<String>> = rows
        .iter()
        .map(|r| {
            let ok = r.status == "ok";
            vec![
                r.name.clone(),
                if ok {
                    format!("{:.0}", r.records_per_second)
                } else {
                    "-".into()
                },
                if ok {
                    format!("{:.1}", r.mb_per_second)
                } else {
                    "-".into()
                },
                r.latency_us.filter(|_| ok).map_or("-".into(), |l| {
                    format!("{:.2}/{:.2}", l[0] as f64 / 1000.0, l[1] as f64 / 1000.0)
                }),
                r.broker_cpu_s_per_gb
                    .filter(|_| ok)
                    .map_or("-".into(), |c| format!("{c:.2}")),
                r.linkedin.to_string(),
                if ok { String::new() } else { r.status.clone() },
            ]
        })
        .collect();
    crate::cli::print_table(
        &[
            "ROW",
            "RECORDS/S",
            "MB/S",
            "P50/P99 MS",
            "BROKER S/GB",
            "LINKEDIN 2014",
            "NOTE",
        ],
        &table,
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scaling_keeps_a_floor_and_rounds() {
        assert_eq!(scaled(1.0, RECORDS), 50_000_000);
        assert_eq!(scaled(0.02, RECORDS), 1_000_000);
        assert_eq!(scaled(0.000_001, RECORDS), 1000, "never fewer than 1000 records");
    }
}
