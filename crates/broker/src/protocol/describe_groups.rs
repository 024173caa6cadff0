//! DescribeGroups: state, protocol and members with their metadata and assignment.

use bytes::Bytes;
use kafka_protocol::messages::describe_groups_response::{DescribedGroup, DescribedGroupMember};
use kafka_protocol::messages::{DescribeGroupsRequest, DescribeGroupsResponse};

use super::{
    Malformed, RequestHeader, Response, authorized_operations, check_names, decode, encode_response, str_bytes,
};
use crate::group;

pub async fn handle(header: &RequestHeader, body: Bytes) -> Result<Response, Malformed> {
    let request: DescribeGroupsRequest = decode(body, header.api_version)?;
    check_names(request.groups.iter().map(|g| &*g.0))?;
    let version = header.api_version;
    let mut groups = Vec::new();
    for group_id in request.groups {
        let mut described = DescribedGroup::default().with_group_id(group_id.clone());
        if version >= 3 {
            described.authorized_operations = authorized_operations::group(request.include_authorized_operations);
        }
        match group::describe(group_id.0.to_string()).await {
            Ok(d) => {
                described.group_state = str_bytes(d.state);
                described.protocol_type = str_bytes(d.protocol_type);
                described.protocol_data = str_bytes(d.protocol);
                described.members = d
                    .members
                    .into_iter()
                    .map(|m| {
                        let mut member = DescribedGroupMember::default()
                            .with_member_id(str_bytes(m.member_id))
                            .with_client_id(str_bytes(m.client_id))
                            .with_client_host(str_bytes(m.client_host))
                            .with_member_metadata(m.metadata)
                            .with_member_assignment(m.assignment);
                        if version >= 4 {
                            member.group_instance_id = m.group_instance_id.map(str_bytes);
                        }
                        member
                    })
                    .collect();
            }
            Err(code) => described.error_code = code.code(),
        }
        groups.push(described);
    }
    encode_response(header, &DescribeGroupsResponse::default().with_groups(groups))
}
