//! Heartbeat: keeps a member's session alive and tells it when to rejoin.

use bytes::Bytes;
use kafka_protocol::messages::{HeartbeatRequest, HeartbeatResponse};

use super::{Malformed, RequestHeader, Response, check_names, decode, encode_response};
use crate::group;

pub async fn handle(header: &RequestHeader, body: Bytes) -> Result<Response, Malformed> {
    let request: HeartbeatRequest = decode(body, header.api_version)?;
    check_names(
        [&*request.group_id.0, &*request.member_id]
            .into_iter()
            .chain(request.group_instance_id.as_deref()),
    )?;
    let code = group::heartbeat(
        request.group_id.0.to_string(),
        request.member_id.to_string(),
        request.group_instance_id.as_ref().map(|s| s.to_string()),
        request.generation_id,
    )
    .await;
    crate::metrics::record_error(header.api_key as i16, code.code());
    encode_response(header, &HeartbeatResponse::default().with_error_code(code.code()))
}
