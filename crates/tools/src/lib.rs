//! Sluice's tools, clients of the broker: `client` (blocking, on
//! kafka-protocol), `cli`, `bench`. The only crate that links librdkafka and
//! plotters.

pub use sluice_broker::{
    cluster, config, group, metrics, model, net, protocol, record, runtime, server, storage, wire,
};

pub mod bench;
pub mod cli;
pub mod client;
