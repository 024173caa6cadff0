//! What a client may hold of the broker: connections (`max.connections`,
//! `max.connections.per.ip`, `max.connections.per.ip.overrides`) and request
//! bytes read but not yet answered (`queued.max.request.bytes`).
//!
//! Connection counts are broker-wide, as in Kafka, so they are the one piece
//! of state the shards share: atomics and a map touched once per accept and
//! once per close, never per request. The request-byte budget is split evenly
//! between the shards, so the per-request path touches only its own shard.

use std::cell::Cell;
use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use event_listener::Event;

pub use crate::config::{ConnectionLimits, parse_overrides};

/// The broker's open connections, counted against its limits.
pub struct Admission {
    limits: ConnectionLimits,
    open: AtomicUsize,
    per_ip: Mutex<HashMap<IpAddr, usize>>,
}

/// Why a connection was closed at accept.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refused {
    MaxConnections,
    MaxConnectionsPerIp,
}

impl Admission {
    pub fn new(limits: ConnectionLimits) -> Self {
        Self {
            limits,
            open: AtomicUsize::new(0),
            per_ip: Mutex::new(HashMap::new()),
        }
    }

    pub fn limits(&self) -> &ConnectionLimits {
        &self.limits
    }

    pub fn open(&self) -> usize {
        self.open.load(Ordering::Relaxed)
    }

    /// Counts a new connection from `ip`, or refuses it. The slot is given
    /// back when the returned ticket drops.
    pub fn admit(self: &Arc<Self>, ip: IpAddr) -> Result<Ticket, Refused> {
        let mut per_ip = self.per_ip.lock().unwrap_or_else(|e| e.into_inner());
        let from_ip = per_ip.get(&ip).copied().unwrap_or(0);
        if from_ip >= self.limits.per_ip(&ip) {
            return Err(Refused::MaxConnectionsPerIp);
        }
        // Under the map's lock, so two shards cannot both take the last slot.
        if self.open.load(Ordering::Relaxed) >= self.limits.max_connections {
            return Err(Refused::MaxConnections);
        }
        self.open.fetch_add(1, Ordering::Relaxed);
        per_ip.insert(ip, from_ip + 1);
        Ok(Ticket {
            admission: Arc::clone(self),
            ip,
        })
    }

    fn release(&self, ip: IpAddr) {
        let mut per_ip = self.per_ip.lock().unwrap_or_else(|e| e.into_inner());
        let count = per_ip.get_mut(&ip).expect("a ticket's address is counted");
        assert!(*count > 0, "connection count of {ip} underflows");
        *count -= 1;
        if *count == 0 {
            per_ip.remove(&ip);
        }
        let before = self.open.fetch_sub(1, Ordering::Relaxed);
        assert!(before > 0, "open connection count underflows");
    }
}

/// One admitted connection; dropping it frees the slot.
pub struct Ticket {
    admission: Arc<Admission>,
    ip: IpAddr,
}

impl Drop for Ticket {
    fn drop(&mut self) {
        self.admission.release(self.ip);
    }
}

/// This shard's share of `queued.max.request.bytes`: request frames are
/// charged when their size is read and released once answered. A reader that
/// finds the budget spent stops reading until bytes come back, so TCP pushes
/// back on the client, as Kafka's memory pool mutes the socket.
pub struct RequestBytes {
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
pub fn set_request_bytes_max(max: usize) {
    REQUEST_BYTES.with(|b| b.max.set(max));
}

/// (queued, max) request bytes on this shard, for metrics.
pub fn request_bytes() -> (usize, usize) {
    REQUEST_BYTES.with(|b| (b.queued.get(), b.max.get()))
}

/// Waits until `bytes` fit this shard's budget and charges them. A frame
/// larger than the whole budget is admitted alone once nothing else is queued,
/// so it cannot wait forever (`socket.request.max.bytes` bounds it).
pub async fn charge_request_bytes(bytes: usize) -> Charged {
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn per_ip_limit_and_override_and_release() {
        let a: IpAddr = "10.0.0.1".parse().unwrap();
        let b: IpAddr = "10.0.0.2".parse().unwrap();
        let limits = ConnectionLimits {
            max_connections: 3,
            max_connections_per_ip: 1,
            per_ip_overrides: parse_overrides("10.0.0.2:2").unwrap(),
        };
        let admission = Arc::new(Admission::new(limits));
        let t1 = admission.admit(a).unwrap();
        assert_eq!(admission.admit(a).err(), Some(Refused::MaxConnectionsPerIp));
        let t2 = admission.admit(b).unwrap();
        let t3 = admission.admit(b).unwrap();
        assert_eq!(admission.open(), 3);
        drop(t1);
        let t4 = admission.admit(a).unwrap();
        let c: IpAddr = "10.0.0.3".parse().unwrap();
        assert_eq!(admission.admit(c).err(), Some(Refused::MaxConnections));
        drop((t2, t3, t4));
        assert_eq!(admission.open(), 0);
    }

    #[test]
    fn overrides_parse_ipv4_and_ipv6_and_refuse_host_names() {
        let o = parse_overrides("127.0.0.1:5, [::1]:7").unwrap();
        assert_eq!(o[&"127.0.0.1".parse::<IpAddr>().unwrap()], 5);
        assert_eq!(o[&"::1".parse::<IpAddr>().unwrap()], 7);
        assert!(parse_overrides("localhost:3").is_err());
        assert!(parse_overrides("127.0.0.1").is_err());
    }
}
