//! The Sluice broker, on the core crate: `metrics`, `config` → `runtime` →
//! `cluster` → `group` → `txn` → `protocol` → `net` → `server`. See ARCHITECTURE.md.

/// mimalloc for every binary linking the broker: `sluice`, the tools, the
/// fuzz targets and the unit tests. Besides speed it matters for hostile input:
/// a control-plane request whose
/// array count lies (2^31 elements in a 100-byte frame) makes the generated
/// decoder reserve that capacity before it fails on the missing bytes;
/// mimalloc maps such a reservation MAP_NORESERVE, so it costs address space,
/// not memory, and is released at once (see the bad-input tests).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

// The core's modules under their own names, so `crate::storage` reads the same here.
pub use sluice_core::{model, record, storage, wire};

pub mod cluster;
pub mod config;
pub mod group;
pub mod metrics;
pub mod net;
pub mod protocol;
pub mod runtime;
pub mod server;
pub mod txn;
