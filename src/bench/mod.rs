//! `sluice bench`: LinkedIn's 2014 "2 million writes per second" runs
//! (`linkedin`), against a temporary local Sluice or any Kafka-compatible
//! broker (`--bootstrap`). `load` generates the traffic with librdkafka,
//! `local` runs the temporary broker, `worker` is the child process used for
//! the rows that LinkedIn ran from separate machines.

pub mod linkedin;
pub mod load;
pub mod local;

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
    /// Two runs' results.json side by side, with B/A ratios.
    Compare { a: PathBuf, b: PathBuf },
    /// One load job as a separate process (used by the multi-producer and multi-consumer rows).
    #[command(hide = true)]
    Worker {
        #[arg(long)]
        bootstrap: String,
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
    /// The load generator: `rdkafka` (librdkafka, the reference).
    #[arg(long, default_value = "rdkafka")]
    pub client: String,
    /// Where results.json and results.csv go (default ./bench-results/<timestamp>).
    #[arg(long)]
    pub out: Option<PathBuf>,
}

pub fn run(args: BenchArgs) -> anyhow::Result<()> {
    match args.command {
        BenchCommand::Linkedin(args) => linkedin::run(args),
        BenchCommand::Compare { a, b } => linkedin::compare(&a, &b),
        BenchCommand::Worker { bootstrap, job } => linkedin::worker(&bootstrap, &job),
    }
}
