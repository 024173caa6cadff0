//! The `sluice` tools besides `serve`: each talks to a running broker over
//! the Kafka protocol through `crate::client`, as any Kafka client would.

pub mod cluster;
pub mod config_check;
pub mod console;
pub mod groups;
pub mod reassign;
pub mod topic;
pub mod transactions;
pub mod tune;

use std::time::Duration;

use anyhow::Context;
use kafka_protocol::messages::describe_configs_request::DescribeConfigsResource;
use kafka_protocol::messages::incremental_alter_configs_request::{AlterConfigsResource, AlterableConfig};
use kafka_protocol::messages::{DescribeConfigsRequest, IncrementalAlterConfigsRequest};

use crate::client::Client;

pub const TIMEOUT: Duration = Duration::from_secs(30);

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

pub use crate::client::admin::{check, s};

/// Kafka's config resource types.
pub const TOPIC_RESOURCE: i8 = 2;
pub const BROKER_RESOURCE: i8 = 4;

/// A config as DescribeConfigs reports it: name, value and Kafka's `ConfigSource`.
pub struct ConfigEntry {
    pub name: String,
    pub value: String,
    pub source: i8,
}

/// DescribeConfigs of one resource (all keys, or only `keys`), sorted by name.
pub fn describe_configs(
    client: &mut Client,
    resource_type: i8,
    resource_name: &str,
    keys: Option<&[&str]>,
    what: &str,
) -> anyhow::Result<Vec<ConfigEntry>> {
    let resource = DescribeConfigsResource::default()
        .with_resource_type(resource_type)
        .with_resource_name(s(resource_name))
        .with_configuration_keys(keys.map(|k| k.iter().map(|k| s(k)).collect()));
    let response = client.send(&DescribeConfigsRequest::default().with_resources(vec![resource]), 4)?;
    let result = response.results.first().context("DescribeConfigs returned nothing")?;
    check(result.error_code, result.error_message.as_deref(), what)?;
    let mut configs: Vec<ConfigEntry> = result
        .configs
        .iter()
        .map(|c| ConfigEntry {
            name: c.name.to_string(),
            value: c.value.as_ref().map(|v| v.to_string()).unwrap_or_default(),
            source: c.config_source,
        })
        .collect();
    configs.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(configs)
}

/// IncrementalAlterConfigs of one resource: sets `set`, removes `delete`.
pub fn alter_configs(
    client: &mut Client,
    resource_type: i8,
    resource_name: &str,
    set: &[(String, String)],
    delete: &[String],
    what: &str,
) -> anyhow::Result<()> {
    const SET: i8 = 0;
    const DELETE: i8 = 1;
    let configs = set
        .iter()
        .map(|(k, v)| {
            AlterableConfig::default()
                .with_name(s(k))
                .with_config_operation(SET)
                .with_value(Some(s(v)))
        })
        .chain(
            delete
                .iter()
                .map(|k| AlterableConfig::default().with_name(s(k)).with_config_operation(DELETE)),
        )
        .collect();
    let resource = AlterConfigsResource::default()
        .with_resource_type(resource_type)
        .with_resource_name(s(resource_name))
        .with_configs(configs);
    let response = client.send(
        &IncrementalAlterConfigsRequest::default().with_resources(vec![resource]),
        1,
    )?;
    let result = response
        .responses
        .first()
        .context("IncrementalAlterConfigs returned nothing")?;
    check(result.error_code, result.error_message.as_deref(), what)
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
