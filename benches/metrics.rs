//! What recording metrics costs per request: the calls a Produce request makes
//! (one request with its latency, bytes in for one topic, no error), on one
//! shard's thread-local registry. `cargo bench --bench metrics`.

use std::time::Duration;

use criterion::{Criterion, black_box, criterion_group, criterion_main};

fn produce_request_metrics(c: &mut Criterion) {
    sluice::metrics::enable();
    c.bench_function("metrics per produce request", |b| {
        b.iter(|| {
            sluice::metrics::record_bytes_in(black_box("orders"), black_box(1_048_576));
            sluice::metrics::record_error(0, black_box(0));
            sluice::metrics::record_request(0, black_box(Duration::from_micros(350)));
        })
    });
}

criterion_group!(benches, produce_request_metrics);
criterion_main!(benches);
