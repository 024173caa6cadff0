//! DescribeCluster: the registered brokers and the active controller (on a
//! single node: this broker, which is also the controller). From v2 a client
//! may ask for the fenced brokers too (KIP-1073), marked as such.

use bytes::Bytes;
use kafka_protocol::messages::describe_cluster_response::DescribeClusterBroker;
use kafka_protocol::messages::{BrokerId, DescribeClusterRequest, DescribeClusterResponse};

use super::{Malformed, RequestHeader, Response, authorized_operations, decode, encode_response, str_bytes};
use crate::cluster::shard::local;

pub fn handle(header: &RequestHeader, body: Bytes) -> Result<Response, Malformed> {
    let request: DescribeClusterRequest = decode(body, header.api_version)?;
    let shard = local();
    let metadata = shard.metadata();
    let config = &shard.config;
    let fenced = if header.api_version >= 2 && request.include_fenced_brokers {
        metadata.fenced_brokers()
    } else {
        Vec::new()
    };
    let describe = |(id, host, port): (i32, String, u16), is_fenced: bool| {
        DescribeClusterBroker::default()
            .with_broker_id(BrokerId(id))
            .with_host(str_bytes(host))
            .with_port(i32::from(port))
            .with_is_fenced(is_fenced)
    };
    let brokers = metadata
        .broker_endpoints(config)
        .into_iter()
        .map(|b| describe(b, false))
        .chain(fenced.into_iter().map(|b| describe(b, true)))
        .collect();
    let response = DescribeClusterResponse::default()
        .with_endpoint_type(if header.api_version >= 1 {
            request.endpoint_type
        } else {
            1
        })
        .with_cluster_id(str_bytes(metadata.cluster_id.clone()))
        .with_controller_id(BrokerId(metadata.controller(config)))
        .with_brokers(brokers)
        .with_cluster_authorized_operations(authorized_operations::cluster(
            request.include_cluster_authorized_operations,
        ));
    encode_response(header, &response)
}
