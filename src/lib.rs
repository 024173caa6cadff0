//! Sluice: a Kafka-compatible broker built on thread-per-core io_uring shards.
//!
//! The layers are crates (`crates/`): core ← broker ← tools ← this one, the
//! `sluice` binary, which re-exports them under their old paths. See
//! ARCHITECTURE.md for the map and the invariants.

pub use sluice_broker::{cluster, config, group, metrics, net, protocol, runtime, server};
pub use sluice_core::{model, record, storage, wire};
pub use sluice_tools::{bench, chaos, cli, client, local};
