//! JoinGroup: the first phase of a classic rebalance, relayed to the group's coordinator.

use bytes::Bytes;
use kafka_protocol::messages::join_group_response::JoinGroupResponseMember;
use kafka_protocol::messages::{JoinGroupRequest, JoinGroupResponse};

use super::{Malformed, RequestHeader, Response, check_names, decode, encode_response, str_bytes};
use crate::group::{self, JoinRequest};

/// Kafka's default for JoinGroup v0, which has no rebalance timeout of its own.
const REBALANCE_TIMEOUT_V0_MS: i32 = -1;

pub async fn handle(header: &RequestHeader, body: Bytes) -> Result<Response, Malformed> {
    let request: JoinGroupRequest = decode(body, header.api_version)?;
    check_names(
        [&*request.group_id.0, &*request.member_id, &*request.protocol_type]
            .into_iter()
            .chain(request.group_instance_id.as_deref())
            .chain(request.protocols.iter().map(|p| &*p.name)),
    )?;
    let version = header.api_version;
    let rebalance_timeout_ms = if version == 0 || request.rebalance_timeout_ms == REBALANCE_TIMEOUT_V0_MS {
        request.session_timeout_ms
    } else {
        request.rebalance_timeout_ms
    };
    let join = JoinRequest {
        member_id: request.member_id.to_string(),
        group_instance_id: request.group_instance_id.as_ref().map(|s| s.to_string()),
        client_id: header.client_id.clone().unwrap_or_default(),
        client_host: header.client_host.to_string(),
        session_timeout_ms: request.session_timeout_ms,
        rebalance_timeout_ms,
        protocol_type: request.protocol_type.to_string(),
        protocols: request
            .protocols
            .iter()
            .map(|p| (p.name.to_string(), p.metadata.clone()))
            .collect(),
        require_known_member_id: version >= 4,
    };
    let result = group::join(request.group_id.0.to_string(), join).await;
    crate::metrics::record_error(header.api_key as i16, result.error.code());
    let members = result
        .members
        .into_iter()
        .map(|m| {
            let mut member = JoinGroupResponseMember::default()
                .with_member_id(str_bytes(m.member_id))
                .with_metadata(m.metadata);
            if version >= 5 {
                member.group_instance_id = m.group_instance_id.map(str_bytes);
            }
            member
        })
        .collect();
    let mut response = JoinGroupResponse::default()
        .with_error_code(result.error.code())
        .with_generation_id(result.generation)
        .with_leader(str_bytes(result.leader))
        .with_member_id(str_bytes(result.member_id))
        .with_members(members);
    if version >= 7 {
        response.protocol_type = result.protocol_type.map(str_bytes);
        response.protocol_name = result.protocol_name.map(str_bytes);
    } else {
        response.protocol_name = Some(str_bytes(result.protocol_name.unwrap_or_default()));
    }
    if version >= 9 {
        response.skip_assignment = result.skip_assignment;
    }
    encode_response(header, &response)
}
