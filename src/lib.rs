//! Sluice: a Kafka-compatible broker built on thread-per-core io_uring shards.
//!
//! Layering, from the bottom up (each layer knows only the ones below it):
//! `model`, `wire` → `record` → `storage` → `runtime` → `cluster` → `group` → `protocol` → `net`.
//! See ARCHITECTURE.md for the map and the invariants.

/// mimalloc for every binary linking the library, the broker and the tests alike.
/// Besides speed it matters for hostile input: a control-plane request whose
/// array count lies (2^31 elements in a 100-byte frame) makes the generated
/// decoder reserve that capacity before it fails on the missing bytes;
/// mimalloc maps such a reservation MAP_NORESERVE, so it costs address space,
/// not memory, and is released at once (see the bad-input tests).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

pub mod bench;
pub mod cli;
pub mod client;
pub mod cluster;
pub mod config;
pub mod group;
pub mod metrics;
pub mod model;
pub mod net;
pub mod protocol;
pub mod record;
pub mod runtime;
pub mod server;
pub mod storage;
pub mod wire;
