//! AlterConfigs (replace all dynamic settings of a resource) and
//! IncrementalAlterConfigs (SET, DELETE, APPEND, SUBTRACT), for topics and the broker.

use bytes::Bytes;
use kafka_protocol::messages::{
    AlterConfigsRequest, AlterConfigsResponse, IncrementalAlterConfigsRequest, IncrementalAlterConfigsResponse,
    alter_configs_response, incremental_alter_configs_response,
};

use super::describe_configs::{RESOURCE_BROKER, RESOURCE_TOPIC};
use super::{Malformed, RequestHeader, Response, decode, encode_response, str_bytes};
use crate::cluster::controller::{self, ApiError, ConfigOp};
use crate::cluster::shard::local;
use crate::model::ErrorCode;

type Ops = Vec<(String, ConfigOp, Option<String>)>;

async fn alter(
    resource_type: i8,
    name: &str,
    ops: Ops,
    replace_all: bool,
    validate_only: bool,
) -> Result<(), ApiError> {
    match resource_type {
        RESOURCE_TOPIC => controller::alter_topic_configs(name.to_string(), ops, replace_all, validate_only).await,
        RESOURCE_BROKER => {
            let broker_id = local().config.broker_id.to_string();
            if !name.is_empty() && name != broker_id {
                return Err(ApiError::new(
                    ErrorCode::InvalidRequest,
                    format!("this is broker {broker_id}, not '{name}'"),
                ));
            }
            controller::alter_broker_configs(ops, replace_all, validate_only).await
        }
        _ => Err(ApiError::new(
            ErrorCode::InvalidRequest,
            "only TOPIC and BROKER resources are supported",
        )),
    }
}

fn error_fields(result: Result<(), ApiError>) -> (i16, Option<kafka_protocol::protocol::StrBytes>) {
    match result {
        Ok(()) => (0, None),
        Err(e) => (e.code.code(), Some(str_bytes(e.message))),
    }
}

pub async fn handle_alter(header: &RequestHeader, body: Bytes) -> Result<Response, Malformed> {
    let request: AlterConfigsRequest = decode(body, header.api_version)?;
    let mut responses = Vec::with_capacity(request.resources.len());
    for resource in request.resources {
        let ops = resource
            .configs
            .iter()
            .map(|c| {
                (
                    c.name.to_string(),
                    ConfigOp::Set,
                    c.value.as_ref().map(|v| v.to_string()),
                )
            })
            .collect();
        let result = alter(
            resource.resource_type,
            &resource.resource_name,
            ops,
            true,
            request.validate_only,
        )
        .await;
        let (code, message) = error_fields(result);
        responses.push(
            alter_configs_response::AlterConfigsResourceResponse::default()
                .with_error_code(code)
                .with_error_message(message)
                .with_resource_type(resource.resource_type)
                .with_resource_name(resource.resource_name),
        );
    }
    encode_response(header, &AlterConfigsResponse::default().with_responses(responses))
}

pub async fn handle_incremental(header: &RequestHeader, body: Bytes) -> Result<Response, Malformed> {
    let request: IncrementalAlterConfigsRequest = decode(body, header.api_version)?;
    let mut responses = Vec::with_capacity(request.resources.len());
    for resource in request.resources {
        let ops: Result<Ops, ApiError> = resource
            .configs
            .iter()
            .map(|c| {
                let op = match c.config_operation {
                    0 => ConfigOp::Set,
                    1 => ConfigOp::Delete,
                    2 => ConfigOp::Append,
                    3 => ConfigOp::Subtract,
                    other => {
                        return Err(ApiError::new(
                            ErrorCode::InvalidRequest,
                            format!("unknown config operation {other}"),
                        ));
                    }
                };
                Ok((c.name.to_string(), op, c.value.as_ref().map(|v| v.to_string())))
            })
            .collect();
        let result = match ops {
            Ok(ops) => {
                alter(
                    resource.resource_type,
                    &resource.resource_name,
                    ops,
                    false,
                    request.validate_only,
                )
                .await
            }
            Err(e) => Err(e),
        };
        let (code, message) = error_fields(result);
        responses.push(
            incremental_alter_configs_response::AlterConfigsResourceResponse::default()
                .with_error_code(code)
                .with_error_message(message)
                .with_resource_type(resource.resource_type)
                .with_resource_name(resource.resource_name),
        );
    }
    encode_response(
        header,
        &IncrementalAlterConfigsResponse::default().with_responses(responses),
    )
}
