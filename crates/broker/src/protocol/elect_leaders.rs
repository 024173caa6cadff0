//! ElectLeaders (KIP-460): on-demand leader elections. PREFERRED moves each
//! partition's leadership back to its first replica when that replica is in
//! sync and alive; UNCLEAN gives an offline partition a leader, an
//! out-of-sync one if need be (the operator accepts the loss). Both are
//! quorum records; the answer comes once this node's metadata has them.

use bytes::Bytes;
use kafka_protocol::messages::elect_leaders_response::{PartitionResult, ReplicaElectionResult};
use kafka_protocol::messages::{ElectLeadersRequest, ElectLeadersResponse, TopicName};

use super::{Malformed, RequestHeader, Response, decode, encode_response, str_bytes};
use crate::cluster::controller::{self, ApiError};
use crate::cluster::metadata::Metadata;
use crate::cluster::quorum::Record;
use crate::cluster::shard::local;
use crate::model::ErrorCode;

const PREFERRED: i8 = 0;
const UNCLEAN: i8 = 1;
/// Partitions one request may name; more is a malformed request.
const PARTITIONS_MAX: usize = 100_000;

pub async fn handle(header: &RequestHeader, body: Bytes) -> Result<Response, Malformed> {
    let request: ElectLeadersRequest = decode(body, header.api_version)?;
    let election_type = if header.api_version >= 1 {
        request.election_type
    } else {
        PREFERRED
    };
    let metadata = local().metadata();
    let every_partition = request.topic_partitions.is_none();
    let wanted: Vec<(String, i32)> = match request.topic_partitions {
        Some(topics) => topics
            .into_iter()
            .flat_map(|t| {
                let name = t.topic.0.to_string();
                t.partitions.into_iter().map(move |p| (name.clone(), p))
            })
            .collect(),
        None => metadata
            .topics
            .values()
            .flat_map(|t| (0..t.partitions).map(move |p| (t.name.clone(), p)))
            .collect(),
    };
    if wanted.len() > PARTITIONS_MAX {
        return Err(Malformed("too many partitions in one ElectLeaders"));
    }
    let prepared = wanted
        .iter()
        .map(|(topic, partition)| election(&metadata, topic, *partition, election_type))
        .collect();
    let outcomes = controller::propose_prepared(prepared).await;
    let mut results: Vec<ReplicaElectionResult> = Vec::new();
    for ((topic, partition), outcome) in wanted.into_iter().zip(outcomes) {
        let mut result = PartitionResult::default().with_partition_id(partition);
        if let Err(e) = outcome {
            // Asked for everything, Kafka leaves out what needed no election.
            if every_partition && e.code == ErrorCode::ElectionNotNeeded {
                continue;
            }
            result = result
                .with_error_code(e.code.code())
                .with_error_message(Some(str_bytes(e.message)));
        }
        match results.iter_mut().find(|r| r.topic.0.as_str() == topic) {
            Some(r) => r.partition_result.push(result),
            None => results.push(
                ReplicaElectionResult::default()
                    .with_topic(TopicName(str_bytes(topic)))
                    .with_partition_result(vec![result]),
            ),
        }
    }
    encode_response(
        header,
        &ElectLeadersResponse::default().with_replica_election_results(results),
    )
}

/// The quorum record that would elect `topic`-`partition`'s leader, or why none is due.
fn election(metadata: &Metadata, topic: &str, partition: i32, election_type: i8) -> Result<Record, ApiError> {
    let Some(t) = metadata.topic_with_partition(topic, partition) else {
        return Err(ApiError::new(
            ErrorCode::UnknownTopicOrPartition,
            format!("{topic}-{partition} does not exist"),
        ));
    };
    let not_needed = || {
        ApiError::new(
            ErrorCode::ElectionNotNeeded,
            format!("{topic}-{partition} needs no election"),
        )
    };
    // A single node leads everything it has.
    let Some(placement) = t.assignment.get(partition as usize) else {
        return Err(not_needed());
    };
    let (name, id, leader_epoch) = (topic.to_string(), t.id, placement.leader_epoch);
    match election_type {
        PREFERRED if placement.leader == placement.replicas[0] => Err(not_needed()),
        PREFERRED => Ok(Record::ElectPreferred {
            topic: name,
            id,
            partition,
            leader_epoch,
        }),
        UNCLEAN if placement.leader >= 0 => Err(not_needed()),
        UNCLEAN => Ok(Record::ElectUnclean {
            topic: name,
            id,
            partition,
            leader_epoch,
        }),
        other => Err(ApiError::new(
            ErrorCode::InvalidRequest,
            format!("election type {other} is not PREFERRED (0) or UNCLEAN (1)"),
        )),
    }
}
