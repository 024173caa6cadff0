//! OffsetDelete: removes a group's committed offsets for topics it no longer subscribes to.

use bytes::Bytes;
use kafka_protocol::messages::offset_delete_response::{OffsetDeleteResponsePartition, OffsetDeleteResponseTopic};
use kafka_protocol::messages::{OffsetDeleteRequest, OffsetDeleteResponse};

use super::{Malformed, RequestHeader, Response, check_names, decode, encode_response};
use crate::cluster::shard::local;
use crate::group;
use crate::model::ErrorCode;

pub async fn handle(header: &RequestHeader, body: Bytes) -> Result<Response, Malformed> {
    let request: OffsetDeleteRequest = decode(body, header.api_version)?;
    check_names(std::iter::once(&*request.group_id.0))?;
    let metadata = local().metadata();
    let mut known = Vec::new();
    let mut checked = Vec::new();
    for topic in &request.topics {
        let name = topic.name.0.to_string();
        let partitions = metadata.topics.get(&name).map_or(0, |t| t.partitions);
        for p in &topic.partitions {
            let exists = (0..partitions).contains(&p.partition_index);
            if exists {
                known.push((name.clone(), p.partition_index));
            }
            checked.push(exists);
        }
    }
    let mut response = OffsetDeleteResponse::default();
    let codes = match group::delete_offsets(request.group_id.0.to_string(), known).await {
        Ok(codes) => codes,
        Err(code) => {
            response.error_code = code.code();
            return encode_response(header, &response);
        }
    };
    let mut codes = codes.into_iter();
    let mut checked = checked.into_iter();
    response.topics = request
        .topics
        .into_iter()
        .map(|topic| {
            let partitions = topic
                .partitions
                .iter()
                .map(|p| {
                    let code = if checked.next().expect("one check per partition") {
                        codes.next().expect("one code per known partition")
                    } else {
                        ErrorCode::UnknownTopicOrPartition
                    };
                    OffsetDeleteResponsePartition::default()
                        .with_partition_index(p.partition_index)
                        .with_error_code(code.code())
                })
                .collect();
            OffsetDeleteResponseTopic::default()
                .with_name(topic.name)
                .with_partitions(partitions)
        })
        .collect();
    encode_response(header, &response)
}
