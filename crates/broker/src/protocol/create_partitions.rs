//! CreatePartitions: grow a topic's partition count.

use bytes::Bytes;
use kafka_protocol::messages::create_partitions_response::CreatePartitionsTopicResult;
use kafka_protocol::messages::{CreatePartitionsRequest, CreatePartitionsResponse};

use super::{Malformed, RequestHeader, Response, decode, encode_response, str_bytes};
use crate::cluster::controller;

pub async fn handle(header: &RequestHeader, body: Bytes) -> Result<Response, Malformed> {
    let request: CreatePartitionsRequest = decode(body, header.api_version)?;
    let mut results = Vec::with_capacity(request.topics.len());
    for topic in request.topics {
        let mut result = CreatePartitionsTopicResult::default().with_name(topic.name.clone());
        if let Err(e) =
            controller::create_partitions(topic.name.0.to_string(), topic.count, request.validate_only).await
        {
            result.error_code = e.code.code();
            result.error_message = Some(str_bytes(e.message));
        }
        results.push(result);
    }
    encode_response(header, &CreatePartitionsResponse::default().with_results(results))
}
