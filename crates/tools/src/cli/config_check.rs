//! `sluice config check FILE`: validates a broker config file and names every
//! unknown or misspelled key and every bad value, without starting anything.

use std::path::PathBuf;

use crate::config::BrokerConfig;

#[derive(clap::Args)]
pub struct ConfigArgs {
    #[command(subcommand)]
    command: ConfigCommand,
}

#[derive(clap::Subcommand)]
enum ConfigCommand {
    /// Validate a TOML config file (Kafka's setting names).
    Check { file: PathBuf },
}

pub fn run(args: ConfigArgs) -> anyhow::Result<()> {
    let ConfigCommand::Check { file } = args.command;
    let text = std::fs::read_to_string(&file).map_err(|e| anyhow::anyhow!("cannot read {}: {e}", file.display()))?;
    match BrokerConfig::check_toml(&text) {
        Ok(settings) => {
            println!("{}: OK, {settings} settings", file.display());
            Ok(())
        }
        Err(problems) => {
            for p in &problems {
                eprintln!("{}: {p}", file.display());
            }
            anyhow::bail!("{}: {} problem(s)", file.display(), problems.len())
        }
    }
}
