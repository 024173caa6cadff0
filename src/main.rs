//! The `sluice` binary: the broker and its tools.

use std::io::Write as _;
use std::net::SocketAddr;
use std::path::PathBuf;

use clap::{Parser, Subcommand};
use sluice::config::BrokerConfig;

#[derive(Parser)]
#[command(
    name = "sluice",
    version,
    about = "A Kafka-compatible message broker for Linux: thread-per-core io_uring shards, zero-copy fetch"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the broker. With no flags: listener 127.0.0.1:9092, data in ./data, one shard per core.
    Serve(ServeArgs),
    /// Topics: create, list, describe, delete, alter-config, add-partitions.
    Topic(sluice::cli::topic::TopicArgs),
    /// Console producer: one record per line of stdin.
    Produce(sluice::cli::console::ProduceArgs),
    /// Console consumer: records to stdout through a kcat-style --format template.
    Consume(sluice::cli::console::ConsumeArgs),
    /// Consumer groups: list, describe (members, offsets, lag), reset-offsets, delete.
    Groups(sluice::cli::groups::GroupsArgs),
    /// Transactions: list, describe, describe-producers, abort a hanging one.
    Transactions(sluice::cli::transactions::TransactionsArgs),
    /// The cluster: info (brokers, controller, id), broker config get/set.
    Cluster(sluice::cli::cluster::ClusterArgs),
    /// Config files: check one for unknown keys and bad values.
    Config(sluice::cli::config_check::ConfigArgs),
    /// Host tuning: `check` compares this machine with the recommended settings.
    Tune(sluice::cli::tune::TuneArgs),
    /// Benchmarks: `linkedin` reruns LinkedIn's 2014 producer and consumer tests.
    Bench(sluice::bench::BenchArgs),
    /// A fault campaign on a local cluster: kills and pauses under an idempotent
    /// workload, then a verdict on lost, duplicated or reordered records and recovery times.
    Chaos(sluice::chaos::ChaosArgs),
    /// For the test suite: `sample-requests` prints a default-field request
    /// body of every advertised API and version, one `key version hex` a line.
    #[command(hide = true)]
    Debug { what: String },
}

#[derive(clap::Args)]
struct ServeArgs {
    /// TOML file with Kafka's setting names (listeners, log.dirs, log.segment.bytes, ...). Flags override it.
    #[arg(long)]
    config: Option<PathBuf>,
    /// Address to listen on, HOST:PORT (Kafka's `listeners`).
    #[arg(long)]
    listen: Option<SocketAddr>,
    /// Address clients are told to use, HOST:PORT (Kafka's `advertised.listeners`).
    #[arg(long)]
    advertised_listener: Option<String>,
    /// Directory for the partition logs and metadata (Kafka's `log.dirs`).
    #[arg(long)]
    data_dir: Option<PathBuf>,
    /// Number of shards (threads pinned to cores); defaults to the number of cores.
    #[arg(long)]
    shards: Option<usize>,
    /// This broker's id (Kafka's `broker.id`).
    #[arg(long)]
    broker_id: Option<i32>,
    /// Cluster mode: this node's id, as a broker and as a controller voter (Kafka's `node.id`).
    #[arg(long, conflicts_with = "broker_id")]
    node_id: Option<i32>,
    /// Cluster mode: where this node's controller listens for the other voters, HOST:PORT.
    #[arg(long)]
    controller_listen: Option<String>,
    /// Cluster mode: the voters, `1@host:port,2@host:port,3@host:port` (Kafka's `controller.quorum.voters`).
    #[arg(long)]
    controller_quorum: Option<String>,
    /// Cluster mode: `broker`, `controller` or `broker,controller` (the default; Kafka's `process.roles`).
    /// A broker-only node is not a voter: it follows the metadata log of the `--controller-quorum` voters.
    #[arg(long)]
    process_roles: Option<String>,
    /// Where the Prometheus endpoint listens, HOST:PORT (`metrics.listener`, default 127.0.0.1:9644).
    #[arg(long)]
    metrics_listen: Option<SocketAddr>,
    /// Log lines as `text` (default) or `json` (`logging.format`).
    #[arg(long)]
    log_format: Option<String>,
}

fn serve(args: ServeArgs) -> anyhow::Result<()> {
    let mut config = BrokerConfig::default();
    if let Some(path) = &args.config {
        config.load_file(path).map_err(anyhow::Error::msg)?;
    }
    if let Some(listen) = args.listen {
        config
            .set("listeners", &listen.to_string())
            .map_err(anyhow::Error::msg)?;
    }
    if let Some(advertised) = &args.advertised_listener {
        config
            .set("advertised.listeners", advertised)
            .map_err(anyhow::Error::msg)?;
    }
    if let Some(dir) = args.data_dir {
        config.data_dir = dir;
    }
    if let Some(shards) = args.shards {
        config.shards = shards.max(1);
    }
    if let Some(id) = args.broker_id.or(args.node_id) {
        config.broker_id = id;
    }
    if let Some(listen) = &args.controller_listen {
        config.set("controller.listener", listen).map_err(anyhow::Error::msg)?;
    }
    if let Some(voters) = &args.controller_quorum {
        config
            .set("controller.quorum.voters", voters)
            .map_err(anyhow::Error::msg)?;
    }
    if let Some(roles) = &args.process_roles {
        config.set("process.roles", roles).map_err(anyhow::Error::msg)?;
    }
    config.quorum().map_err(anyhow::Error::msg)?;
    if let Some(addr) = args.metrics_listen {
        config.metrics_listen = addr;
    }
    if let Some(format) = &args.log_format {
        config.set("logging.format", format).map_err(anyhow::Error::msg)?;
    }
    init_logging(&config.logging_level, config.logging_json);
    tracing::info!(config = ?config, "effective configuration");
    sluice::server::run(config)
}

/// Logs go to stderr, one line per event; RUST_LOG, when set, wins over `level`.
fn init_logging(level: &str, json: bool) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .or_else(|_| tracing_subscriber::EnvFilter::try_new(level))
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    if json {
        builder.json().init();
    } else {
        builder
            .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
            .init();
    }
}

fn main() {
    let cli = Cli::parse();
    if !matches!(cli.command, Command::Serve(_)) {
        init_logging("warn", false);
        // The tools print to pipes (`| head`): a closed pipe ends them quietly, as
        // any Unix tool. The broker keeps Rust's default (ignored: EPIPE errors).
        // SAFETY: setting a signal disposition before any other thread exists.
        unsafe { libc::signal(libc::SIGPIPE, libc::SIG_DFL) };
    }
    let result = match cli.command {
        Command::Serve(args) => serve(args),
        Command::Topic(args) => sluice::cli::topic::run(args),
        Command::Produce(args) => sluice::cli::console::produce(args),
        Command::Consume(args) => sluice::cli::console::consume(args),
        Command::Groups(args) => sluice::cli::groups::run(args),
        Command::Transactions(args) => sluice::cli::transactions::run(args),
        Command::Cluster(args) => sluice::cli::cluster::run(args),
        Command::Config(args) => sluice::cli::config_check::run(args),
        Command::Bench(args) => sluice::bench::run(args),
        Command::Chaos(args) => sluice::chaos::run(args),
        Command::Tune(args) => sluice::cli::tune::run(args),
        Command::Debug { what } if what == "sample-requests" => {
            for (key, version, body) in sluice::protocol::sample_requests() {
                let hex: String = body.iter().map(|b| format!("{b:02x}")).collect();
                println!("{key} {version} {hex}");
            }
            Ok(())
        }
        Command::Debug { what } => Err(anyhow::anyhow!("unknown debug command '{what}'")),
    };
    if let Err(e) = result {
        // Not eprintln!: with stderr on a full disk it panics, and the exit code says 101, not 1.
        let _ = writeln!(std::io::stderr(), "sluice: {e:#}");
        std::process::exit(1);
    }
}
