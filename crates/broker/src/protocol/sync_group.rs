//! SyncGroup: the leader hands in the assignment; every member gets its share.

use bytes::Bytes;
use kafka_protocol::messages::{SyncGroupRequest, SyncGroupResponse};

use super::{Malformed, RequestHeader, Response, check_names, decode, encode_response, str_bytes};
use crate::group::{self, SyncRequest};

pub async fn handle(header: &RequestHeader, body: Bytes) -> Result<Response, Malformed> {
    let request: SyncGroupRequest = decode(body, header.api_version)?;
    check_names(
        [&*request.group_id.0, &*request.member_id]
            .into_iter()
            .chain(request.group_instance_id.as_deref())
            .chain(request.protocol_type.as_deref())
            .chain(request.protocol_name.as_deref())
            .chain(request.assignments.iter().map(|a| &*a.member_id)),
    )?;
    let version = header.api_version;
    let sync = SyncRequest {
        member_id: request.member_id.to_string(),
        group_instance_id: request.group_instance_id.as_ref().map(|s| s.to_string()),
        generation: request.generation_id,
        protocol_type: request.protocol_type.as_ref().map(|s| s.to_string()),
        protocol_name: request.protocol_name.as_ref().map(|s| s.to_string()),
        assignments: request
            .assignments
            .iter()
            .map(|a| (a.member_id.to_string(), a.assignment.clone()))
            .collect(),
    };
    let result = group::sync(request.group_id.0.to_string(), sync).await;
    crate::metrics::record_error(header.api_key as i16, result.error.code());
    let mut response = SyncGroupResponse::default()
        .with_error_code(result.error.code())
        .with_assignment(result.assignment);
    if version >= 5 {
        response.protocol_type = result.protocol_type.map(str_bytes);
        response.protocol_name = result.protocol_name.map(str_bytes);
    }
    encode_response(header, &response)
}
