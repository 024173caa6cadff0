//! FindCoordinator: a group's coordinator is the leader of its partition of
//! `__consumer_offsets`, a transactional id's the leader of its partition of
//! `__transaction_state` (on a single node, this broker). The first lookup
//! of each kind creates its topic.

use bytes::Bytes;
use kafka_protocol::messages::find_coordinator_response::Coordinator;
use kafka_protocol::messages::{BrokerId, FindCoordinatorRequest, FindCoordinatorResponse};

use super::{Malformed, RequestHeader, Response, check_names, decode, encode_response, str_bytes};
use crate::group;
use crate::model::ErrorCode;
use crate::txn;

const KEY_TYPE_GROUP: i8 = 0;
const KEY_TYPE_TRANSACTION: i8 = 1;

/// A key's coordinator (node id, host, port), or why there is none.
type Found = Result<(i32, String, u16), ErrorCode>;

pub async fn handle(header: &RequestHeader, body: Bytes) -> Result<Response, Malformed> {
    let request: FindCoordinatorRequest = decode(body, header.api_version)?;
    check_names(std::iter::once(&*request.key).chain(request.coordinator_keys.iter().map(|k| &**k)))?;
    let version = header.api_version;
    let keys: Vec<String> = if version >= 4 {
        request.coordinator_keys.iter().map(|k| k.to_string()).collect()
    } else {
        vec![request.key.to_string()]
    };
    let ready = match request.key_type {
        KEY_TYPE_GROUP => group::ensure_offsets_topic().await,
        KEY_TYPE_TRANSACTION => txn::ensure_txn_topic().await,
        _ => Err(ErrorCode::InvalidRequest),
    };
    let found: Vec<(String, Found)> = keys
        .into_iter()
        .map(|key| {
            let coordinator = ready.and_then(|()| match request.key_type {
                KEY_TYPE_GROUP => group::coordinator_of(&key),
                _ => txn::coordinator_of(&key),
            });
            (key, coordinator)
        })
        .collect();
    let mut response = FindCoordinatorResponse::default();
    if version >= 4 {
        response.coordinators = found
            .into_iter()
            .map(|(key, coordinator)| {
                let (node, host, port, code) = fields(coordinator);
                Coordinator::default()
                    .with_key(str_bytes(key))
                    .with_node_id(BrokerId(node))
                    .with_host(str_bytes(host))
                    .with_port(port)
                    .with_error_code(code.code())
                    .with_error_message(message(code))
            })
            .collect();
    } else {
        let (_, coordinator) = found.into_iter().next().expect("one key before v4");
        let (node, host, port, code) = fields(coordinator);
        response.error_code = code.code();
        response.node_id = BrokerId(node);
        response.host = str_bytes(host);
        response.port = port;
        if version >= 1 {
            response.error_message = message(code);
        }
    }
    encode_response(header, &response)
}

/// (node, host, port, error) as the response carries them.
fn fields(coordinator: Found) -> (i32, String, i32, ErrorCode) {
    match coordinator {
        Ok((node, host, port)) => (node, host, i32::from(port), ErrorCode::None),
        Err(code) => (-1, String::new(), -1, code),
    }
}

fn message(code: ErrorCode) -> Option<kafka_protocol::protocol::StrBytes> {
    (code != ErrorCode::None).then(|| str_bytes(format!("{code:?}")))
}
