//! Cluster state on one broker: metadata, the controller that changes it, and
//! each shard's share of the partitions; in cluster mode, the Raft metadata
//! quorum (`quorum`) that every broker registers with, and the followers'
//! fetchers (`replica`).

pub mod controller;
pub mod leader;
pub mod metadata;
pub mod peer;
pub mod quorum;
pub mod replica;
pub mod request;
pub mod shard;
