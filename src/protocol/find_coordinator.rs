//! FindCoordinator: this broker coordinates every group (and, later, every
//! transactional id). The first group lookup creates `__consumer_offsets`.

use bytes::Bytes;
use kafka_protocol::messages::find_coordinator_response::Coordinator;
use kafka_protocol::messages::{BrokerId, FindCoordinatorRequest, FindCoordinatorResponse};

use super::{Malformed, RequestHeader, Response, decode, encode_response, str_bytes};
use crate::cluster::shard::local;
use crate::group;
use crate::model::ErrorCode;

const KEY_TYPE_GROUP: i8 = 0;
const KEY_TYPE_TRANSACTION: i8 = 1;

pub async fn handle(header: &RequestHeader, body: Bytes) -> Result<Response, Malformed> {
    let request: FindCoordinatorRequest = decode(body, header.api_version)?;
    let version = header.api_version;
    let keys: Vec<String> = if version >= 4 {
        request.coordinator_keys.iter().map(|k| k.to_string()).collect()
    } else {
        vec![request.key.to_string()]
    };
    let code = match request.key_type {
        KEY_TYPE_GROUP => group::ensure_offsets_topic().await.err().unwrap_or(ErrorCode::None),
        KEY_TYPE_TRANSACTION => ErrorCode::None,
        _ => ErrorCode::InvalidRequest,
    };
    let (host, port) = local().config.advertised_endpoint();
    let broker_id = local().config.broker_id;
    let message = (code != ErrorCode::None).then(|| str_bytes(format!("{code:?}")));
    let (node, host, port) = if code == ErrorCode::None {
        (broker_id, host, port as i32)
    } else {
        (-1, String::new(), -1)
    };
    let mut response = FindCoordinatorResponse::default();
    if version >= 4 {
        response.coordinators = keys
            .into_iter()
            .map(|key| {
                Coordinator::default()
                    .with_key(str_bytes(key))
                    .with_node_id(BrokerId(node))
                    .with_host(str_bytes(host.clone()))
                    .with_port(port)
                    .with_error_code(code.code())
                    .with_error_message(message.clone())
            })
            .collect();
    } else {
        response.error_code = code.code();
        response.node_id = BrokerId(node);
        response.host = str_bytes(host);
        response.port = port;
        if version >= 1 {
            response.error_message = message;
        }
    }
    encode_response(header, &response)
}
