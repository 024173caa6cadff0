//! Micro-benchmarks of the broker's hot paths, each reported in bytes/s:
//! batch validation (CRC32C over the batch), offset assignment, append to a
//! partition log (io_uring write into the page cache), offset lookup
//! (segment binary search, then the sparse index), and Fetch response framing
//! (the user-space bytes around the file ranges that sendfile sends).
//!
//!     cargo bench --bench hot_paths

use criterion::{BatchSize, Criterion, Throughput, black_box, criterion_group, criterion_main};
use sluice::model::TopicPartition;
use sluice::record::builder::{Record, build_batch};
use sluice::record::{assign_offset, validate_single_batch};
use sluice::storage::{FileSlice, LogConfig, PartitionLog};

/// A producer-like batch: `count` records of `size` bytes.
fn batch(count: usize, size: usize) -> bytes::BytesMut {
    let value = vec![b'x'; size];
    let records: Vec<Record> = (0..count)
        .map(|_| Record {
            key: None,
            value: Some(&value),
        })
        .collect();
    build_batch(&records, 1_700_000_000_000, -1, -1)
}

fn validation_and_offsets(c: &mut Criterion) {
    let mut group = c.benchmark_group("record");
    let b = batch(10_000, 100); // ~1 MB, librdkafka's batch.size=1000000
    group.throughput(Throughput::Bytes(b.len() as u64));
    group.bench_function("validate 1 MB batch (CRC32C)", |bench| {
        bench.iter(|| validate_single_batch(black_box(&b), 2 << 20).expect("valid"))
    });
    group.bench_function("assign offset", |bench| {
        bench.iter_batched_ref(
            || b.clone(),
            |b| assign_offset(b, black_box(42), 0),
            BatchSize::LargeInput,
        )
    });
    group.finish();
}

fn append_and_lookup(c: &mut Criterion) {
    let dir = tempfile::tempdir().expect("temp dir");
    let runtime = compio::runtime::Runtime::new().expect("io_uring runtime");
    let log =
        PartitionLog::open(dir.path(), TopicPartition::new("bench", 0), LogConfig::default(), 0).expect("open log");
    let b = batch(1000, 100); // ~100 KB
    let mut group = c.benchmark_group("storage");
    group.throughput(Throughput::Bytes(b.len() as u64));
    group.bench_function("append 100 KB batch", |bench| {
        bench.iter_batched(
            || b.clone(),
            |b| {
                runtime
                    .block_on(log.append(b, 1_700_000_000_000, sluice::storage::log::LEADER_EPOCH))
                    .expect("append")
            },
            BatchSize::LargeInput,
        )
    });
    let end = log.high_watermark();
    // Bytes/s here means bytes located: each lookup yields a file range of up to 1 MB.
    let located = log.read(0, 1 << 20, true).expect("read").slice.map_or(0, |s| s.bytes);
    group.throughput(Throughput::Bytes(located));
    let mut i = 0i64;
    group.bench_function("locate an offset", |bench| {
        bench.iter(|| {
            i = (i + 7919) % end;
            log.read(black_box(i), 1 << 20, true).expect("read")
        })
    });
    group.finish();
}

fn fetch_framing(c: &mut Criterion) {
    let dir = tempfile::tempdir().expect("temp dir");
    let file = std::fs::File::create(dir.path().join("segment")).expect("file");
    let slice = FileSlice {
        file: std::sync::Arc::new(file),
        position: 0,
        bytes: 1 << 20,
    };
    let mut group = c.benchmark_group("fetch");
    const PARTITIONS: i32 = 6; // LinkedIn's topic, one consumer reading all of it
    group.throughput(Throughput::Bytes(slice.bytes * PARTITIONS as u64));
    for version in [11i16, 16] {
        group.bench_function(format!("frame v{version} response, 6 x 1 MB partitions"), |bench| {
            bench.iter(|| sluice::protocol::fetch::frame_for_bench(black_box(version), PARTITIONS, &slice))
        });
    }
    group.finish();
}

criterion_group!(benches, validation_and_offsets, append_and_lookup, fetch_framing);
criterion_main!(benches);
