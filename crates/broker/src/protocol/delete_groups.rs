//! DeleteGroups: removes groups without members, with all their offsets.

use bytes::Bytes;
use kafka_protocol::messages::delete_groups_response::DeletableGroupResult;
use kafka_protocol::messages::{DeleteGroupsRequest, DeleteGroupsResponse};

use super::{Malformed, RequestHeader, Response, check_names, decode, encode_response};
use crate::group;

pub async fn handle(header: &RequestHeader, body: Bytes) -> Result<Response, Malformed> {
    let request: DeleteGroupsRequest = decode(body, header.api_version)?;
    check_names(request.groups_names.iter().map(|g| &*g.0))?;
    let mut results = Vec::new();
    for group_id in request.groups_names {
        let code = group::delete_group(group_id.0.to_string()).await;
        results.push(
            DeletableGroupResult::default()
                .with_group_id(group_id)
                .with_error_code(code.code()),
        );
    }
    encode_response(header, &DeleteGroupsResponse::default().with_results(results))
}
