//! Sluice's core: what a partition is and how it is stored. `model`, `wire`
//! → `record` → `storage`. No sockets, no shard runtime, no Kafka request
//! types: the compiler keeps it so, as this crate depends on none of them.

pub mod model;
pub mod record;
pub mod storage;
pub mod wire;
