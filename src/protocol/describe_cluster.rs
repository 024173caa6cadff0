//! DescribeCluster: the registered brokers and the active controller (on a
//! single node: this broker, which is also the controller).

use bytes::Bytes;
use kafka_protocol::messages::describe_cluster_response::DescribeClusterBroker;
use kafka_protocol::messages::{BrokerId, DescribeClusterRequest, DescribeClusterResponse};

use super::{Malformed, RequestHeader, Response, decode, encode_response, str_bytes};
use crate::cluster::shard::local;

pub fn handle(header: &RequestHeader, body: Bytes) -> Result<Response, Malformed> {
    let request: DescribeClusterRequest = decode(body, header.api_version)?;
    let shard = local();
    let metadata = shard.metadata();
    let config = &shard.config;
    let brokers = metadata
        .broker_endpoints(config)
        .into_iter()
        .map(|(id, host, port)| {
            DescribeClusterBroker::default()
                .with_broker_id(BrokerId(id))
                .with_host(str_bytes(host))
                .with_port(port as i32)
        })
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
        .with_cluster_authorized_operations(i32::MIN);
    encode_response(header, &response)
}
