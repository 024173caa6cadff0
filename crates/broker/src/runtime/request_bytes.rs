//! This shard's share of `queued.max.request.bytes`: request bytes read
//! but not yet handled. The broker-wide budget is split evenly between the
//! shards, so the per-request path touches only its own shard's counter.

use std::cell::Cell;

use event_listener::Event;

/// Request frames are charged when their size is read and released once
/// handled (answered, or for Produce once written: an acks=all wait holds no
/// bytes, as Kafka frees a request's buffer before its purgatory). A reader
/// that finds the budget spent stops reading until bytes come back, so TCP
/// pushes back on the client, as Kafka's memory pool mutes the socket.
struct RequestBytes {
    max: Cell<usize>,
    queued: Cell<usize>,
    released: Event,
}

thread_local! {
    static REQUEST_BYTES: RequestBytes = const { RequestBytes {
        max: Cell::new(usize::MAX),
        queued: Cell::new(0),
        released: Event::new(),
    } };
}

/// Sets this shard's budget (at shard start).
pub fn set_max(max: usize) {
    REQUEST_BYTES.with(|b| b.max.set(max));
}

/// (queued, max) request bytes on this shard, for metrics.
pub fn queued_and_max() -> (usize, usize) {
    REQUEST_BYTES.with(|b| (b.queued.get(), b.max.get()))
}

/// Waits until `bytes` fit this shard's budget and charges them. A frame
/// larger than the whole budget is admitted alone once nothing else is queued,
/// so it cannot wait forever (`socket.request.max.bytes` bounds it).
pub async fn charge(bytes: usize) -> Charged {
    // Bounded: each round ends in a charge or waits for a release.
    loop {
        let listener = REQUEST_BYTES.with(|b| {
            let queued = b.queued.get();
            if queued == 0 || queued.saturating_add(bytes) <= b.max.get() {
                b.queued.set(queued + bytes);
                None
            } else {
                Some(b.released.listen())
            }
        });
        match listener {
            None => return Charged { bytes },
            Some(listener) => listener.await,
        }
    }
}

/// Request bytes charged to this shard's budget; released on drop, on the
/// same shard (a connection and its handlers never leave their shard).
pub struct Charged {
    bytes: usize,
}

impl Drop for Charged {
    fn drop(&mut self) {
        REQUEST_BYTES.with(|b| {
            let queued = b.queued.get();
            assert!(queued >= self.bytes, "request bytes released twice");
            b.queued.set(queued - self.bytes);
            b.released.notify(usize::MAX);
        });
    }
}
