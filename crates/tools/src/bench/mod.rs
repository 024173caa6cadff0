//! `sluice bench`: LinkedIn's 2014 "2 million writes per second" runs
//! (`linkedin`), against a temporary local Sluice or any Kafka-compatible
//! broker (`--bootstrap`). `load` generates the traffic with librdkafka,
//! `local` runs the temporary broker, `worker` is the child process used for
//! the rows that LinkedIn ran from separate machines. `native` is the lean
//! alternative to `load` (`--client native`); `java` runs Kafka's own
//! ProducerPerformance and ConsumerPerformance (`--client java`). `chart` draws the figures.

mod chart;
pub mod java;
pub mod linkedin;
pub mod load;
pub mod native;
mod progress;

use std::path::PathBuf;

#[derive(clap::Args)]
pub struct BenchArgs {
    #[command(subcommand)]
    command: BenchCommand,
}

#[derive(clap::Subcommand)]
enum BenchCommand {
    /// Every row of LinkedIn's 2014 benchmark, side by side with its figures.
    Linkedin(LinkedinArgs),
    /// Two runs' results.json side by side, with B/A ratios, and both on one set of charts.
    Compare {
        a: PathBuf,
        b: PathBuf,
        /// Where the charts go (default ./bench-results/compare-<timestamp>).
        #[arg(long)]
        out: Option<PathBuf>,
    },
    /// One load job as a separate process (used by the multi-producer and multi-consumer rows).
    #[command(hide = true)]
    Worker {
        #[arg(long)]
        bootstrap: String,
        #[arg(long, value_enum, default_value_t = Engine::Rdkafka)]
        client: Engine,
        /// A JSON `ProduceSpec` or `ConsumeSpec`.
        #[arg(long)]
        job: String,
    },
}

#[derive(clap::Args)]
pub struct LinkedinArgs {
    /// Shrinks every record count (1.0 = LinkedIn's 50 million).
    #[arg(long, default_value_t = 1.0)]
    pub scale: f64,
    /// Measure this broker instead of a temporary local Sluice.
    #[arg(long)]
    pub bootstrap: Option<String>,
    /// With --bootstrap: the broker's process ids (comma-separated, e.g. each
    /// JVM of a Kafka cluster). Its CPU per GB and its RSS are then measured
    /// from /proc, as for the temporary local Sluice.
    #[arg(long, value_delimiter = ',')]
    pub peer_pid: Vec<u32>,
    /// Brokers in the temporary local cluster; 3 runs the replicated rows.
    #[arg(long, default_value_t = 1)]
    pub brokers: usize,
    /// The load generator: `rdkafka` (librdkafka, the reference),
    /// `native` (Sluice's own pipelined client, to find the broker's ceiling), or
    /// `java` (Kafka's ProducerPerformance and ConsumerPerformance, as LinkedIn ran;
    /// needs SLUICE_KAFKA_CLASSPATH="$(perf/peer-kafka.sh classpath)").
    #[arg(long, value_enum, default_value_t = Engine::Rdkafka)]
    pub client: Engine,
    /// Run only the rows whose names contain one of these `|`-separated
    /// texts (case-insensitive), e.g. "latency". The consumer rows read what
    /// "1 producer, no replication" wrote: select both ("1 producer, no|1 consumer").
    #[arg(long)]
    pub only: Option<String>,
    /// Where results.json, results.csv and the charts go (default ./bench-results/<timestamp>).
    #[arg(long)]
    pub out: Option<PathBuf>,
}

pub fn run(args: BenchArgs) -> anyhow::Result<()> {
    match args.command {
        BenchCommand::Linkedin(args) => linkedin::run(args),
        BenchCommand::Compare { a, b, out } => linkedin::compare(&a, &b, out),
        BenchCommand::Worker { bootstrap, client, job } => linkedin::worker(client, &bootstrap, &job),
    }
}

/// The client that generates the load.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Engine {
    Rdkafka,
    Native,
    Java,
}

impl Engine {
    pub fn name(self) -> &'static str {
        match self {
            Engine::Rdkafka => "rdkafka",
            Engine::Native => "native",
            Engine::Java => "java",
        }
    }

    pub fn produce(self, bootstrap: &str, spec: &load::ProduceSpec) -> anyhow::Result<load::Measured> {
        match self {
            Engine::Rdkafka => load::produce(bootstrap, spec),
            Engine::Native => native::produce(bootstrap, spec),
            Engine::Java => java::produce(bootstrap, spec),
        }
    }

    pub fn consume(self, bootstrap: &str, spec: &load::ConsumeSpec) -> anyhow::Result<load::Measured> {
        match self {
            Engine::Rdkafka => load::consume(bootstrap, spec),
            Engine::Native => native::consume(bootstrap, spec),
            Engine::Java => java::consume(bootstrap, spec),
        }
    }

    pub fn end_to_end(
        self,
        bootstrap: &str,
        topic: &str,
        records: u64,
        size: usize,
        rate: u64,
    ) -> anyhow::Result<load::Measured> {
        match self {
            Engine::Rdkafka => load::end_to_end(bootstrap, topic, records, size, rate),
            Engine::Native => native::end_to_end(bootstrap, topic, records, size, rate),
            Engine::Java => {
                anyhow::bail!("Kafka's tools have no paced end-to-end run (EndToEndLatency sends one record at a time)")
            }
        }
    }
}
