//! `sluice chaos`: a Jepsen-style fault campaign against a local cluster of
//! this binary. `workload` drives idempotent producers and a live reader,
//! `group` a consumer group, `txn` transactional writers with a
//! read_committed reader, `nemesis` kills and pauses partition leaders on a seeded schedule,
//! `history` records what happened, and `check` says whether anything
//! acknowledged was lost, duplicated, reordered or un-read, and how long each
//! fault kept a partition from accepting writes.

pub mod check;
pub mod group;
pub mod history;
pub mod nemesis;
pub mod txn;
pub mod workload;

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};

use self::history::{FaultKind, History};
use self::nemesis::{Nemesis, Rng, Timing};
use crate::local::{LocalCluster, Sandbox};

const TOPIC: &str = "chaos";
/// Kafka's default `broker.session.timeout.ms`, which the brokers keep.
const BROKER_SESSION_TIMEOUT_MS: u64 = 9_000;
/// The brokers' `replica.lag.time.max.ms`, down from Kafka's 30 s to the
/// session timeout: a follower cut off from its leader alone (a bridge)
/// holds acks=all writes until it leaves the ISR, and the bound below is
/// the session timeout's.
const REPLICA_LAG_TIME_MAX_MS: u64 = BROKER_SESSION_TIMEOUT_MS;
/// "within broker.session.timeout.ms plus a few seconds" (bounded recovery).
const RECOVERY_SLACK_MS: u64 = 5_000;

#[derive(clap::Args)]
pub struct ChaosArgs {
    /// Nodes in the local cluster, each a broker and a quorum voter.
    #[arg(long, default_value_t = 3)]
    pub brokers: usize,
    /// How long the workload and the faults run, in seconds.
    #[arg(long, default_value_t = 60)]
    pub duration: u64,
    /// The faults to draw from, comma-separated: kill, pause, isolate, bridge,
    /// partition (isolate and bridge), restart (a rolling restart), disk (a
    /// full disk), slow (a disk throttled to a trickle), or none (a
    /// fault-free run to compare throughput with). A name given twice is
    /// drawn twice as often. isolate and bridge put each node in a network
    /// namespace of its own, disk and slow each data dir on a loop-mounted
    /// filesystem of its own (root only; slow needs cgroup v1's blkio).
    #[arg(long, value_delimiter = ',', default_value = "kill,pause")]
    pub faults: Vec<String>,
    /// With `disk`: the size of each node's own filesystem, in MiB.
    #[arg(long, default_value_t = 512)]
    pub disk_mb: u64,
    /// Seeds the schedule (which fault, on whom, for how long); random when absent.
    #[arg(long)]
    pub seed: Option<u64>,
    /// Where the history, the verdict and each node's data and log go
    /// (default ./chaos-<timestamp>).
    #[arg(long)]
    pub out: Option<PathBuf>,
    #[arg(long, default_value_t = 6)]
    pub partitions: i32,
    #[arg(long, default_value_t = 2)]
    pub producers: u32,
    /// Records per second, per producer.
    #[arg(long, default_value_t = 500)]
    pub rate: u32,
    /// The producers' `message.timeout.ms`: a send unanswered this long fails.
    #[arg(long, default_value_t = 60_000)]
    pub message_timeout_ms: u64,
    /// Members of a consumer group that reads the topic, commits, and
    /// rejoins now and then (0: no group).
    #[arg(long, default_value_t = 2)]
    pub group_members: u32,
    /// Transactional writers on a topic of their own, read by a read_committed
    /// reader (0: none).
    #[arg(long, default_value_t = 2)]
    pub txn_writers: u32,
    /// Records in each transaction, spread over the partitions.
    #[arg(long, default_value_t = 10)]
    pub txn_records: u32,
    /// Transactions per second, per writer.
    #[arg(long, default_value_t = 10)]
    pub txn_rate: u32,
    /// librdkafka's `debug` contexts for the transactional writers (eos,
    /// protocol, broker, ...): each writer's client log goes to
    /// `txn-writer-<n>.log` in --out, stamped with the campaign's clock.
    #[arg(long)]
    pub txn_client_debug: Option<String>,
    /// What the nodes run: sluice (this binary), or kafka (Apache Kafka 4.4
    /// from --kafka-jars, in KRaft combined mode, with the same settings),
    /// to see what Kafka does under the same faults.
    #[arg(long, default_value = "sluice", value_parser = ["sluice", "kafka"])]
    pub peer: String,
    /// With `--peer kafka`: Kafka's jars (`lib/`) and log4j2.properties, as
    /// `perf/peer-kafka.sh classpath` resolves them
    /// (default $SLUICE_KAFKA_CACHE, else ~/.cache/sluice/kafka-4.4.0).
    #[arg(long)]
    pub kafka_jars: Option<PathBuf>,
}

pub fn run(args: ChaosArgs) -> anyhow::Result<()> {
    let kinds = fault_kinds(&args.faults)?;
    if args.brokers < 3 {
        bail!("--brokers must be at least 3: the topic has three replicas and min.insync.replicas=2");
    }
    let seed = args.seed.unwrap_or_else(|| {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(1, |d| d.as_nanos() as u64)
    });
    let out = args.out.clone().unwrap_or_else(|| {
        let stamp = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        PathBuf::from(format!("chaos-{stamp}"))
    });
    std::fs::create_dir_all(&out).with_context(|| format!("cannot create {}", out.display()))?;
    eprintln!(
        "chaos: {} {} brokers, {} s of {}, seed {seed}, history in {}",
        args.brokers,
        args.peer,
        args.duration,
        args.faults.join(","),
        out.display()
    );
    let sandbox = Sandbox {
        namespaces: kinds.iter().any(|k| k.parts_the_network()),
        disk_mb: kinds.iter().any(|k| k.needs_own_disk()).then_some(args.disk_mb),
    };
    let mut cluster = start_cluster(&args, &out, sandbox)?;
    create_topic(&cluster, TOPIC, args.partitions)?;
    if args.txn_writers > 0 {
        create_topic(&cluster, txn::TOPIC, args.partitions)?;
    }
    let spec = Arc::new(workload::Spec {
        bootstrap: cluster.bootstrap(),
        topic: TOPIC.into(),
        partitions: args.partitions,
        producers: args.producers,
        rate: args.rate,
        message_timeout_ms: args.message_timeout_ms,
        group_members: args.group_members,
    });
    let txn_spec = Arc::new(txn::TxnSpec {
        bootstrap: cluster.bootstrap(),
        partitions: args.partitions,
        writers: args.txn_writers,
        records_per_txn: args.txn_records.max(1),
        rate: args.txn_rate,
        client_debug: args.txn_client_debug.clone(),
        log_dir: out.clone(),
    });
    // Ctrl-C (or SIGTERM) ends the campaign early but still heals, checks and cleans up.
    let interrupted = Arc::new(AtomicBool::new(false));
    for signal in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
        signal_hook::flag::register(signal, Arc::clone(&interrupted)).context("installing a signal handler")?;
    }
    let start = Instant::now();
    let stop = Arc::new(AtomicBool::new(false));
    let running = workload::spawn(Arc::clone(&spec), start, Arc::clone(&stop));
    let members = group::spawn(&spec, start, &stop);
    let txns = txn::spawn(&txn_spec, start, &stop);
    let mut nemesis = Nemesis {
        cluster: &mut cluster,
        topic: TOPIC,
        partitions: args.partitions,
        kinds: &kinds,
        timing: Timing {
            quiet_ms: (3_000, 6_000),
            kill_down_ms: (1_000, 5_000),
            pause_ms: (2_000, 12_000),
            partition_ms: (5_000, 15_000),
            full_disk_ms: (3_000, 10_000),
            slow_disk_ms: (5_000, 15_000),
            restart_gap_ms: 3_000,
        },
        rng: Rng::new(seed),
        interrupted: &interrupted,
    };
    let faults = nemesis.run(start, Duration::from_secs(args.duration));
    // Bounded by the schedule: it stops short of --duration.
    while ms_left(start, args.duration) > 0 && !interrupted.load(Ordering::Relaxed) {
        std::thread::sleep(Duration::from_millis(ms_left(start, args.duration).min(200)));
    }
    stop.store(true, Ordering::Relaxed);
    let duration_ms = workload::ms_since(start);
    let (sends, reads) = running.join()?;
    let group = group::join(&spec, members)?;
    let txn = txns.join(&txn_spec)?;
    let faults = faults?;
    let logs = workload::read_all(&spec)?;
    let history = History {
        sends,
        reads,
        group,
        txn,
        faults,
        logs,
        duration_ms,
    };
    history.save(&out.join("history.jsonl"))?;
    let verdict = check::check(&history, BROKER_SESSION_TIMEOUT_MS + RECOVERY_SLACK_MS);
    std::fs::write(out.join("verdict.json"), serde_json::to_string_pretty(&verdict)?)?;
    print_verdict(&verdict, seed);
    drop(cluster);
    match (verdict.safe(), verdict.live()) {
        (true, true) => Ok(()),
        (false, _) => bail!("unsafe: see {}", out.join("verdict.json").display()),
        (true, false) => bail!("not live: see {}", out.join("verdict.json").display()),
    }
}

/// The nodes, with the session and lag timeouts above; Kafka's internal
/// topics as replicated as Sluice's are by default.
fn start_cluster(args: &ChaosArgs, out: &std::path::Path, sandbox: Sandbox) -> anyhow::Result<LocalCluster> {
    if args.peer == "kafka" {
        let jars = args.kafka_jars.clone().unwrap_or_else(default_kafka_jars);
        let properties = format!(
            "broker.session.timeout.ms={BROKER_SESSION_TIMEOUT_MS}\n\
             replica.lag.time.max.ms={REPLICA_LAG_TIME_MAX_MS}\n\
             offsets.topic.replication.factor=3\n\
             transaction.state.log.replication.factor=3\n\
             transaction.state.log.min.isr=2\n"
        );
        return LocalCluster::start_kafka_in(args.brokers, Some(out), &jars, &properties, sandbox);
    }
    let config = out.join("broker.toml");
    std::fs::write(
        &config,
        format!(
            "\"broker.session.timeout.ms\" = {BROKER_SESSION_TIMEOUT_MS}\n\
             \"replica.lag.time.max.ms\" = {REPLICA_LAG_TIME_MAX_MS}\n"
        ),
    )?;
    let serve_args = ["--config".to_string(), config.display().to_string()];
    LocalCluster::start_in(args.brokers, Some(out), &serve_args, sandbox)
}

/// Where `perf/peer-kafka.sh` keeps Kafka 4.4's jars.
fn default_kafka_jars() -> PathBuf {
    match std::env::var_os("SLUICE_KAFKA_CACHE") {
        Some(dir) => PathBuf::from(dir),
        None => PathBuf::from(std::env::var_os("HOME").unwrap_or_default()).join(".cache/sluice/kafka-4.4.0"),
    }
}

fn ms_left(start: Instant, duration_s: u64) -> u64 {
    (duration_s * 1000).saturating_sub(workload::ms_since(start))
}

fn fault_kinds(names: &[String]) -> anyhow::Result<Vec<FaultKind>> {
    let mut kinds = Vec::new();
    if names == ["none"] {
        return Ok(kinds);
    }
    for name in names {
        match name.as_str() {
            "partition" => kinds.extend([FaultKind::Isolate, FaultKind::Bridge]),
            name => match FaultKind::ALL.iter().find(|k| k.name() == name) {
                Some(kind) => kinds.push(*kind),
                None => {
                    bail!("unknown fault '{name}' (kill, pause, isolate, bridge, partition, restart, disk, slow, none)")
                }
            },
        }
    }
    if kinds.is_empty() {
        bail!("--faults names no fault (none runs without any)");
    }
    Ok(kinds)
}

/// RF 3 with min.insync.replicas=2, then waits (bounded) until every node
/// knows a leader for every partition.
fn create_topic(cluster: &LocalCluster, topic: &str, partitions: i32) -> anyhow::Result<()> {
    let mut client = crate::client::Client::connect(&cluster.brokers[0].bootstrap, Duration::from_secs(10))?;
    let configs = [("min.insync.replicas".to_string(), "2".to_string())];
    crate::client::admin::create_topic(&mut client, topic, partitions, 3, &configs, false)?;
    let deadline = Instant::now() + Duration::from_secs(30);
    let led_everywhere = || {
        cluster.brokers.iter().all(|broker| {
            crate::client::Client::connect(&broker.bootstrap, Duration::from_secs(2))
                .and_then(|mut c| crate::client::admin::metadata(&mut c, Some(topic)))
                .is_ok_and(|m| {
                    m.topics.first().is_some_and(|t| {
                        t.partitions.len() == partitions as usize && t.partitions.iter().all(|p| p.leader_id.0 >= 0)
                    })
                })
        })
    };
    // Bounded by the deadline.
    while !led_everywhere() {
        if Instant::now() > deadline {
            bail!("the topic's partitions have no leaders after 30 s");
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    Ok(())
}

fn print_verdict(verdict: &check::Verdict, seed: u64) {
    println!(
        "sends {}, acknowledged {} ({:.0}/s), failed {}",
        verdict.sends,
        verdict.acknowledged,
        verdict.acknowledged as f64 * 1000.0 / verdict.duration_ms.max(1) as f64,
        verdict.failed_sends
    );
    println!(
        "lost {}, moved {}, duplicated {}, reordered {}, holes {}, vanished reads {}, skipped reads {}",
        verdict.lost,
        verdict.moved,
        verdict.duplicated,
        verdict.reordered,
        verdict.holes,
        verdict.vanished_reads,
        verdict.skipped_reads
    );
    for kind in FaultKind::ALL {
        let mut times: Vec<u64> = verdict
            .recovery
            .iter()
            .filter(|r| r.kind == kind)
            .map(|r| r.recovery_ms)
            .collect();
        if times.is_empty() {
            continue;
        }
        times.sort_unstable();
        println!(
            "recovery after {} ({} faults): p50 {} ms, max {} ms (bound {} ms)",
            kind.name(),
            times.len(),
            times[times.len() / 2],
            times[times.len() - 1],
            verdict.recovery_bound_ms
        );
    }
    if verdict.group.members > 0 {
        let g = &verdict.group;
        println!(
            "group of {}: {} reads, {} commits; commits backwards {}, final mismatches {}, skipped {}",
            g.members, g.reads, g.commits, g.commits_backwards, g.final_mismatches, g.skipped
        );
    }
    if verdict.txn.writers > 0 {
        let t = &verdict.txn;
        let mut times = t.recovery_ms.clone();
        times.sort_unstable();
        println!(
            "transactions by {} writers: {} committed, {} aborted, {} failed, {} unknown; lost commits {}, torn {}, aborted reads {}, duplicated {}, moved {}, reordered {}, vanished reads {}; longest a writer went without a commit after a fault: p50 {} ms, max {} ms",
            t.writers,
            t.committed,
            t.aborted,
            t.failed,
            t.unknown,
            t.lost_commits,
            t.torn,
            t.aborted_reads,
            t.duplicated,
            t.moved,
            t.reordered,
            t.vanished_reads,
            times.get(times.len() / 2).unwrap_or(&0),
            times.last().unwrap_or(&0),
        );
    }
    for example in &verdict.examples {
        println!("  {example}");
    }
    let word = match (verdict.safe(), verdict.live()) {
        (true, true) => "PASS",
        (false, _) => "FAIL (unsafe)",
        (true, false) => "FAIL (not live)",
    };
    println!("verdict: {word} (seed {seed})");
}
