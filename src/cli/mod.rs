//! The `sluice` tools besides `serve`: each talks to a running broker over
//! the Kafka protocol through `crate::client`, as any Kafka client would.

pub mod cluster;
pub mod config_check;
pub mod console;
pub mod groups;
pub mod topic;

use std::time::Duration;

use kafka_protocol::ResponseError;

use crate::client::Client;

const TIMEOUT: Duration = Duration::from_secs(30);

/// Where the tools connect: `--bootstrap`, else `SLUICE_BOOTSTRAP`, else the local broker.
#[derive(clap::Args, Clone)]
pub struct Connect {
    /// The broker to talk to, HOST:PORT.
    #[arg(
        long,
        visible_alias = "bootstrap-server",
        env = "SLUICE_BOOTSTRAP",
        default_value = "127.0.0.1:9092",
        global = true
    )]
    pub bootstrap: String,
}

impl Connect {
    pub fn client(&self) -> anyhow::Result<Client> {
        Client::connect(&self.bootstrap, TIMEOUT)
    }
}

/// How a tool prints its results.
#[derive(clap::ValueEnum, Clone, Copy, PartialEq, Eq, Default)]
pub enum Format {
    /// Aligned columns for people.
    #[default]
    Table,
    /// One JSON document for scripts.
    Json,
}

/// A Kafka error code as a sentence: the broker's own message when it sent
/// one, otherwise Kafka's description of the code, with what was being done.
pub fn check(code: i16, message: Option<&str>, what: &str) -> anyhow::Result<()> {
    if code == 0 {
        return Ok(());
    }
    let reason = match message.filter(|m| !m.is_empty()) {
        Some(m) => m.to_string(),
        None => match ResponseError::try_from_code(code) {
            Some(e) => format!("{e}"),
            None => format!("Kafka error code {code}"),
        },
    };
    anyhow::bail!("{what}: {reason}")
}

/// Prints rows as aligned columns under `header`.
pub fn print_table(header: &[&str], rows: &[Vec<String>]) {
    let mut widths: Vec<usize> = header.iter().map(|h| h.len()).collect();
    for row in rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.len());
        }
    }
    let line = |cells: Vec<&str>| {
        let padded: Vec<String> = cells.iter().zip(&widths).map(|(c, w)| format!("{c:<w$}")).collect();
        println!("{}", padded.join("  ").trim_end());
    };
    line(header.to_vec());
    for row in rows {
        line(row.iter().map(String::as_str).collect());
    }
}
