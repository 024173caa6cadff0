//! The metadata quorum, embedded like KRaft: every node started with
//! `--controller-quorum` is a Raft voter on `--controller-listen`, and the
//! cluster metadata is the Raft log (raft-rs; why in ARCHITECTURE.md).
//!
//! `node` drives Raft on its own "controller" thread, `log_store` keeps the
//! log and hard state durable, `transport` carries Raft messages between
//! voters, and `image` is the state the log builds. A node learns about
//! changes through the `OnChange` callback, which hands them to the shards.

pub mod image;
mod log_store;
mod node;
mod transport;

use std::net::{SocketAddr, TcpListener, ToSocketAddrs};
use std::path::Path;
use std::sync::mpsc::{SyncSender, sync_channel};
use std::time::Duration;

use anyhow::Context;

pub use image::{BrokerRegistration, ClusterImage, Record, RecordError};
pub use log_store::DIR_NAME as LOG_DIR_NAME;
use node::{Input, Reply, offer};
pub use node::{Liveness, OnChange, Outcome, QuorumStatus};

/// Where this node's controller listens and who the voters are.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QuorumConfig {
    pub listen: SocketAddr,
    pub voters: Vec<(u64, SocketAddr)>,
}

/// Parses Kafka's `controller.quorum.voters` form: `1@host:port,2@host:port`.
pub fn parse_voters(value: &str) -> Result<Vec<(u64, SocketAddr)>, String> {
    let mut voters = Vec::new();
    for part in value.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        let (id, address) = part
            .split_once('@')
            .ok_or_else(|| format!("'{part}' is not ID@HOST:PORT"))?;
        let id: u64 = id.parse().map_err(|_| format!("'{id}' in '{part}' is not a node id"))?;
        if id == 0 {
            return Err("controller node ids start at 1 (Raft reserves 0)".into());
        }
        let address = address
            .to_socket_addrs()
            .ok()
            .and_then(|mut a| a.next())
            .ok_or_else(|| format!("cannot resolve '{address}'"))?;
        if voters.iter().any(|(v, _)| *v == id) {
            return Err(format!("node {id} is listed twice"));
        }
        voters.push((id, address));
    }
    if voters.is_empty() {
        return Err("the quorum needs at least one voter".into());
    }
    Ok(voters)
}

static QUORUM: std::sync::OnceLock<Quorum> = std::sync::OnceLock::new();

/// This node's quorum, in cluster mode; set once at start-up.
pub fn get() -> Option<&'static Quorum> {
    QUORUM.get()
}

/// This node's handle on the quorum; cheap to clone.
#[derive(Clone)]
pub struct Quorum {
    inbox: SyncSender<Input>,
}

impl Quorum {
    /// Binds the controller listener and starts the controller thread.
    pub fn start(
        node_id: i32,
        config: &QuorumConfig,
        data_dir: &Path,
        on_change: OnChange,
        liveness: Liveness,
    ) -> anyhow::Result<Self> {
        let id = u64::try_from(node_id).ok().filter(|id| *id > 0);
        let id = id.context("in cluster mode --node-id must be a positive number")?;
        anyhow::ensure!(
            config.voters.iter().any(|(v, _)| *v == id),
            "node {id} is not among the --controller-quorum voters"
        );
        let listener = TcpListener::bind(config.listen)
            .with_context(|| format!("cannot listen for controllers on {}", config.listen))?;
        let inbox = node::start(id, listener, &config.voters, data_dir, on_change, liveness)?;
        let quorum = Self { inbox };
        anyhow::ensure!(QUORUM.set(quorum.clone()).is_ok(), "the quorum is started once");
        Ok(quorum)
    }

    /// Proposes `record` and blocks until it is committed and applied here.
    /// Only for threads that are not shards.
    pub fn propose_blocking(&self, record: Record, timeout: Duration) -> Outcome {
        let (tx, rx) = sync_channel(1);
        offer(&self.inbox, Input::Propose(record, Reply::Blocking(tx)))?;
        rx.recv_timeout(timeout).map_err(|_| RecordError {
            code: crate::model::ErrorCode::RequestTimedOut,
            message: "the metadata change was not committed in time".into(),
        })?
    }

    /// Proposes `record`; resolves once it is committed and applied on this
    /// node's controller thread (the shards see it a moment later).
    pub async fn propose(&self, record: Record) -> Outcome {
        let (tx, rx) = futures_channel::oneshot::channel();
        offer(&self.inbox, Input::Propose(record, Reply::Async(tx)))?;
        rx.await.unwrap_or_else(|_| {
            Err(RecordError {
                code: crate::model::ErrorCode::RequestTimedOut,
                message: "the controller stopped before answering".into(),
            })
        })
    }

    /// The quorum as this node sees it. Only for threads that are not shards.
    pub fn status_blocking(&self, timeout: Duration) -> Option<QuorumStatus> {
        let (tx, rx) = sync_channel(1);
        offer(&self.inbox, Input::Status(tx)).ok()?;
        rx.recv_timeout(timeout).ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn voters_parse_in_kafkas_form() {
        let v = parse_voters("1@127.0.0.1:9093, 2@127.0.0.1:9094,3@localhost:9095").unwrap();
        assert_eq!(v.len(), 3);
        assert_eq!(v[1], (2, "127.0.0.1:9094".parse().unwrap()));
        assert!(parse_voters("").is_err());
        assert!(
            parse_voters("1@127.0.0.1:1,1@127.0.0.1:2")
                .unwrap_err()
                .contains("twice")
        );
        assert!(parse_voters("0@127.0.0.1:1").is_err());
        assert!(parse_voters("x@127.0.0.1:1").is_err());
        assert!(parse_voters("1-127.0.0.1:1").is_err());
    }
}
