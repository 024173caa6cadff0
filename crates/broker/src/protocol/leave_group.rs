//! LeaveGroup: one member (v0–2) or a batch of members (v3+, KIP-345) leaves.

use bytes::Bytes;
use kafka_protocol::messages::leave_group_response::MemberResponse;
use kafka_protocol::messages::{LeaveGroupRequest, LeaveGroupResponse};

use super::{Malformed, RequestHeader, Response, check_names, decode, encode_response, str_bytes};
use crate::group;
use crate::model::ErrorCode;

pub async fn handle(header: &RequestHeader, body: Bytes) -> Result<Response, Malformed> {
    let request: LeaveGroupRequest = decode(body, header.api_version)?;
    check_names(
        [&*request.group_id.0, &*request.member_id].into_iter().chain(
            request
                .members
                .iter()
                .flat_map(|m| std::iter::once(&*m.member_id).chain(m.group_instance_id.as_deref())),
        ),
    )?;
    let version = header.api_version;
    let members: Vec<(String, Option<String>)> = if version >= 3 {
        request
            .members
            .iter()
            .map(|m| {
                (
                    m.member_id.to_string(),
                    m.group_instance_id.as_ref().map(|s| s.to_string()),
                )
            })
            .collect()
    } else {
        vec![(request.member_id.to_string(), None)]
    };
    let mut response = LeaveGroupResponse::default();
    match group::leave(request.group_id.0.to_string(), members.clone()).await {
        Err(code) => response.error_code = code.code(),
        Ok(codes) if version >= 3 => {
            response.members = members
                .into_iter()
                .zip(codes)
                .map(|((member_id, instance_id), code)| {
                    MemberResponse::default()
                        .with_member_id(str_bytes(member_id))
                        .with_group_instance_id(instance_id.map(str_bytes))
                        .with_error_code(code.code())
                })
                .collect();
        }
        Ok(codes) => response.error_code = codes.first().copied().unwrap_or(ErrorCode::None).code(),
    }
    encode_response(header, &response)
}
