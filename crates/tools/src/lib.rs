//! Sluice's tools, clients of the broker: `client` (blocking, on
//! kafka-protocol), `cli`, `bench`, `chaos` (fault campaigns), and `local`
//! (the temporary local nodes both start). The only crate that links
//! librdkafka and plotters.

pub use sluice_broker::{
    cluster, config, group, metrics, model, net, protocol, record, runtime, server, storage, wire,
};

pub mod bench;
pub mod chaos;
pub mod cli;
pub mod client;
pub mod local;
