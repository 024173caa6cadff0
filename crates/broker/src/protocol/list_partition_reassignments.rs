//! ListPartitionReassignments (KIP-455): the partitions being moved, with
//! their full replica set and the replicas being added and removed.

use bytes::Bytes;
use kafka_protocol::messages::list_partition_reassignments_response::{
    OngoingPartitionReassignment, OngoingTopicReassignment,
};
use kafka_protocol::messages::{
    BrokerId, ListPartitionReassignmentsRequest, ListPartitionReassignmentsResponse, TopicName,
};

use super::{Malformed, RequestHeader, Response, decode, encode_response, str_bytes};
use crate::cluster::shard::local;

pub async fn handle(header: &RequestHeader, body: Bytes) -> Result<Response, Malformed> {
    let request: ListPartitionReassignmentsRequest = decode(body, header.api_version)?;
    let metadata = local().metadata();
    let wanted = |topic: &str, partition: i32| match &request.topics {
        None => true,
        Some(topics) => topics
            .iter()
            .any(|t| t.name.0.as_str() == topic && t.partition_indexes.contains(&partition)),
    };
    let ids = |brokers: &[i32]| brokers.iter().map(|b| BrokerId(*b)).collect::<Vec<_>>();
    let mut topics = Vec::new();
    for topic in metadata.topics.values() {
        let partitions: Vec<OngoingPartitionReassignment> = topic
            .assignment
            .iter()
            .enumerate()
            .filter(|(p, a)| a.is_reassigning() && wanted(&topic.name, *p as i32))
            .map(|(p, a)| {
                OngoingPartitionReassignment::default()
                    .with_partition_index(p as i32)
                    .with_replicas(ids(&a.replicas))
                    .with_adding_replicas(ids(&a.adding))
                    .with_removing_replicas(ids(&a.removing))
            })
            .collect();
        if !partitions.is_empty() {
            topics.push(
                OngoingTopicReassignment::default()
                    .with_name(TopicName(str_bytes(topic.name.clone())))
                    .with_partitions(partitions),
            );
        }
    }
    encode_response(
        header,
        &ListPartitionReassignmentsResponse::default().with_topics(topics),
    )
}
