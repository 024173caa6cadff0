//! ListGroups: every group on every shard, filtered by state (v4+) and type (v5+).

use bytes::Bytes;
use kafka_protocol::messages::list_groups_response::ListedGroup;
use kafka_protocol::messages::{GroupId, ListGroupsRequest, ListGroupsResponse};

use super::{Malformed, RequestHeader, Response, decode, encode_response, str_bytes};
use crate::group;

pub async fn handle(header: &RequestHeader, body: Bytes) -> Result<Response, Malformed> {
    let request: ListGroupsRequest = decode(body, header.api_version)?;
    let version = header.api_version;
    let wants = |filter: &[kafka_protocol::protocol::StrBytes], value: &str| {
        filter.is_empty() || filter.iter().any(|f| f.eq_ignore_ascii_case(value))
    };
    let groups = group::list_groups()
        .await
        .into_iter()
        .filter(|g| wants(&request.states_filter, g.state))
        .filter(|g| wants(&request.types_filter, g.group_type))
        .map(|g| {
            let mut listed = ListedGroup::default()
                .with_group_id(GroupId(str_bytes(g.group_id)))
                .with_protocol_type(str_bytes(g.protocol_type));
            if version >= 4 {
                listed.group_state = str_bytes(g.state);
            }
            if version >= 5 {
                listed.group_type = str_bytes(g.group_type);
            }
            listed
        })
        .collect();
    encode_response(header, &ListGroupsResponse::default().with_groups(groups))
}
