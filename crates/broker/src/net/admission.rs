//! How many connections a client may hold: `max.connections`,
//! `max.connections.per.ip`, `max.connections.per.ip.overrides`, enforced at
//! accept (the request-byte budget is `runtime::request_bytes`).
//!
//! Connection counts are broker-wide, as in Kafka, so they are the one piece
//! of state the shards share: atomics and a map touched once per accept and
//! once per close, never per request.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

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
