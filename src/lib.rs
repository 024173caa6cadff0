//! Sluice: a Kafka-compatible broker built on thread-per-core io_uring shards.
//!
//! Layering, from the bottom up (each layer knows only the ones below it):
//! `model` → `record` → `storage` → `runtime` → `cluster` → `protocol` → `net`.
//! See ARCHITECTURE.md for the map and the invariants.

pub mod cluster;
pub mod config;
pub mod model;
pub mod net;
pub mod protocol;
pub mod record;
pub mod runtime;
pub mod server;
pub mod storage;
