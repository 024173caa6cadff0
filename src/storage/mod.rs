//! Kafka's on-disk layout: `<topic>-<partition>/` directories of segments.
//! This layer knows files and io_uring writes; it knows nothing of sockets or the protocol.

pub mod epoch;
pub mod index;
pub mod log;
pub mod log_config;
pub mod producer;
pub mod segment;

pub use log::{AppendInfo, FileSlice, PartitionLog, ReadResult, Reader};
pub use log_config::{LogConfig, TimestampType};
