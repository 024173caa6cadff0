//! Cluster state on one broker: metadata, the controller that changes it, and
//! each shard's share of the partitions. Multi-broker replication arrives later.

pub mod controller;
pub mod metadata;
pub mod shard;
