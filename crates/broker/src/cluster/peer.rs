//! Requests to another broker of the cluster on behalf of a client's
//! request (the transaction coordinator's WriteTxnMarkers to a partition's
//! leader, a leader's KIP-890 check with a transaction's coordinator), over
//! pooled connections: each shard keeps a few idle ones per broker, so a
//! Produce that asks a remote coordinator does not pay a TCP handshake.

use std::cell::RefCell;
use std::collections::HashMap;
use std::time::Duration;

use compio::net::TcpStream;
use kafka_protocol::protocol::{Decodable, Request};

use super::request;
use super::shard::local;

const CLIENT_ID: &str = "sluice-broker";
/// Idle connections kept per broker and shard.
const IDLE_PER_BROKER_MAX: usize = 4;
/// A request unanswered this long fails (the caller retries or answers a
/// retriable error), as does a connect.
const CALL_TIMEOUT: Duration = Duration::from_secs(10);
const CONNECT_TIMEOUT: Duration = Duration::from_secs(3);
/// The largest response read from a peer.
const RESPONSE_BYTES_MAX: usize = 16 << 20;

thread_local! {
    /// (broker id, host, port) → idle connections. Keyed by the endpoint too,
    /// so a broker that moved is reached where it is now.
    static IDLE: RefCell<HashMap<(i32, String, u16), Vec<TcpStream>>> = RefCell::new(HashMap::new());
}

/// Sends `request` to broker `broker` and reads its response. A pooled
/// connection the peer closed meanwhile is retried once on a new one; a
/// request that went unanswered is not, since the peer may still act on
/// it (the caller's own retry decides again where to send it).
pub async fn call<Q: Request, S: Decodable>(broker: i32, request: &Q, version: i16) -> anyhow::Result<S> {
    let endpoint = local()
        .metadata()
        .brokers
        .get(&broker)
        .cloned()
        .ok_or_else(|| anyhow::anyhow!("broker {broker} is not registered"))?;
    let key = (broker, endpoint.host.clone(), endpoint.port);
    if let Some(mut stream) = take_idle(&key) {
        match call_on(&mut stream, request, version).await {
            Ok(response) => {
                put_idle(key, stream);
                return Ok(response);
            }
            // Closed meanwhile: retried on a new connection below.
            Err(Unanswered::Failed(_)) => {}
            Err(unanswered) => return Err(unanswered.into_error(broker)),
        }
    }
    let connect = TcpStream::connect((endpoint.host.as_str(), endpoint.port));
    let mut stream = compio::time::timeout(CONNECT_TIMEOUT, connect)
        .await
        .map_err(|_| anyhow::anyhow!("connecting to broker {broker} timed out"))??;
    let response = call_on(&mut stream, request, version)
        .await
        .map_err(|unanswered| unanswered.into_error(broker))?;
    put_idle(key, stream);
    Ok(response)
}

enum Unanswered {
    /// No response in CALL_TIMEOUT: the peer may have the request.
    TimedOut,
    /// The connection failed (closed, reset) or the response was bad.
    Failed(anyhow::Error),
}

impl Unanswered {
    fn into_error(self, broker: i32) -> anyhow::Error {
        match self {
            Unanswered::TimedOut => anyhow::anyhow!("broker {broker}: no answer in {CALL_TIMEOUT:?}"),
            Unanswered::Failed(e) => e,
        }
    }
}

async fn call_on<Q: Request, S: Decodable>(stream: &mut TcpStream, request: &Q, version: i16) -> Result<S, Unanswered> {
    let call = request::call(stream, request, version, CLIENT_ID, RESPONSE_BYTES_MAX);
    match compio::time::timeout(CALL_TIMEOUT, call).await {
        Ok(answered) => answered.map_err(Unanswered::Failed),
        Err(_) => Err(Unanswered::TimedOut),
    }
}

fn take_idle(key: &(i32, String, u16)) -> Option<TcpStream> {
    IDLE.with(|idle| idle.borrow_mut().get_mut(key).and_then(Vec::pop))
}

fn put_idle(key: (i32, String, u16), stream: TcpStream) {
    IDLE.with(|idle| {
        let mut idle = idle.borrow_mut();
        let pool = idle.entry(key).or_default();
        if pool.len() < IDLE_PER_BROKER_MAX {
            pool.push(stream);
        }
    });
}
