//! The metadata quorum, embedded like KRaft: a node started with
//! `--controller-quorum` and the controller role (the default,
//! `process.roles = broker,controller`) is a Raft voter on
//! `--controller-listen`, and the cluster metadata is the Raft log. A
//! broker-only node (`process.roles = broker`) observes the log instead, so
//! the voters can be dedicated controllers.
//!
//! Why raft-rs (TiKV's, 0.7) and not openraft: raft-rs is a pure state
//! machine (`tick`, `step`, `propose`, and a `Ready` to persist and send)
//! with no runtime of its own, so it runs on one plain thread beside the
//! compio shards, with our own fsynced log file and a small TCP transport.
//! openraft's stable release is built on tokio (its runtime-agnostic version
//! is an alpha), which would put a second async runtime in the broker.
//! raft-rs's protobuf-2 messages come pre-generated: the build needs no `protoc`.
//!
//! `node` drives Raft on its own "controller" thread, `log_store` keeps the
//! log and hard state durable, `transport` carries Raft messages between
//! voters, `observer` is a broker-only node's follower of the log, and
//! `image` is the state the log builds. A node learns about changes through
//! the `OnChange` callback, which hands them to the shards.

pub mod image;
mod log_store;
mod node;
mod observer;
mod transport;

use std::net::TcpListener;
use std::path::Path;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::mpsc::{SyncSender, sync_channel};
use std::time::Duration;

use anyhow::Context;

pub use image::{BrokerRegistration, ClusterImage, Record, RecordError};
pub use log_store::DIR_NAME as LOG_DIR_NAME;
use node::{Input, Reply, offer};
pub use node::{Liveness, OnChange, Outcome, QuorumStatus};

pub use crate::config::{ProcessRoles, QuorumConfig, parse_voters};

static QUORUM: std::sync::OnceLock<Quorum> = std::sync::OnceLock::new();

/// When this node last heard the quorum's leader (or, leading, ticked: raft's
/// check_quorum steps a leader down once it no longer hears a majority), in
/// `model::steady_ms`; `NOT_IN_A_QUORUM` on a single node.
static LEADER_CONTACT_MS: AtomicI64 = AtomicI64::new(NOT_IN_A_QUORUM);
const NOT_IN_A_QUORUM: i64 = i64::MIN;

fn note_leader_contact() {
    LEADER_CONTACT_MS.store(crate::model::steady_ms(), Ordering::Relaxed);
}

/// Whether this node's view of the cluster may still be acted on: it heard
/// the quorum's leader within `session_timeout_ms`. A node cut off for longer
/// has been fenced by the quorum and its leaderships moved on; answering as
/// leader would only keep its clients sending to it, so it stops (Produce
/// answers NOT_LEADER_OR_FOLLOWER, Metadata names no leader for what it led)
/// until it hears the quorum again. Always true outside cluster mode.
pub fn in_contact(session_timeout_ms: u64) -> bool {
    let at = LEADER_CONTACT_MS.load(Ordering::Relaxed);
    at == NOT_IN_A_QUORUM || crate::model::steady_ms() - at <= session_timeout_ms as i64
}

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
    /// A voter binds the controller listener and starts the controller
    /// thread; a broker-only node starts observing the voters.
    pub fn start(
        node_id: i32,
        config: &QuorumConfig,
        data_dir: &Path,
        on_change: OnChange,
        liveness: Liveness,
    ) -> anyhow::Result<Self> {
        let id = u64::try_from(node_id).ok().filter(|id| *id > 0);
        let id = id.context("in cluster mode --node-id must be a positive number")?;
        let voter = config.voters.iter().any(|(v, _)| *v == id);
        let inbox = if config.roles.controller {
            anyhow::ensure!(voter, "node {id} is not among the --controller-quorum voters");
            let listen = config
                .listen
                .context("a controller needs --controller-listen (controller.listener)")?;
            let listener = TcpListener::bind(listen).with_context(|| {
                format!("cannot listen for controllers on {listen} (controller.listener, --controller-listen)")
            })?;
            node::start(id, listener, &config.voters, data_dir, on_change, liveness)?
        } else {
            anyhow::ensure!(
                !voter,
                "node {id} is a --controller-quorum voter, so its process.roles must include controller"
            );
            observer::start(node_id, &config.voters, on_change)?
        };
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

    /// As `status_blocking`, waiting on compio's blocking pool: for shards.
    pub async fn status(&self, timeout: Duration) -> Option<QuorumStatus> {
        let quorum = self.clone();
        compio::runtime::spawn_blocking(move || quorum.status_blocking(timeout))
            .await
            .ok()
            .flatten()
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
