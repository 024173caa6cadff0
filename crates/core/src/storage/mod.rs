//! Kafka's on-disk layout: `<topic>-<partition>/` directories of segments.
//! This layer knows files and io_uring writes; it knows nothing of sockets or the protocol.

pub mod epoch;
pub mod index;
pub mod log;
pub mod log_config;
pub mod producer;
pub mod producer_snapshot;
pub mod segment;
pub mod space;
pub mod txn_index;

pub use log::{AbortedRange, AppendInfo, FileSlice, PartitionLog, ReadResult, Reader, Replayed};
pub use log_config::{LogConfig, TimestampType};

thread_local! {
    /// fsyncs of partition logs done by this shard's flush policy.
    static FSYNCS: std::cell::Cell<u64> = const { std::cell::Cell::new(0) };
}

fn record_fsync() {
    FSYNCS.with(|n| n.set(n.get() + 1));
}

/// Partition-log fsyncs this thread has completed (for metrics).
pub fn fsyncs() -> u64 {
    FSYNCS.with(|n| n.get())
}
