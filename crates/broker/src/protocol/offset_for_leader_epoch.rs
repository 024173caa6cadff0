//! OffsetForLeaderEpoch (KIP-101, KIP-279, KIP-320): where a leader epoch
//! ends in the leader's log. A returning replica asks with its latest epoch
//! and truncates to the answer; a consumer asks after a leader change to
//! check that its position was not truncated away.

use bytes::Bytes;
use kafka_protocol::messages::offset_for_leader_epoch_response::{EpochEndOffset, OffsetForLeaderTopicResult};
use kafka_protocol::messages::{OffsetForLeaderEpochRequest, OffsetForLeaderEpochResponse};

use super::{Malformed, RequestHeader, Response, decode, encode_response};
use crate::cluster::shard::{self, local};
use crate::model::{ErrorCode, TopicPartition};
use crate::storage::epoch::{UNDEFINED_EPOCH, UNDEFINED_OFFSET};

/// Partitions one request may name; more is a malformed request.
const PARTITIONS_MAX: usize = 100_000;

pub async fn handle(header: &RequestHeader, body: Bytes) -> Result<Response, Malformed> {
    let request: OffsetForLeaderEpochRequest = decode(body, header.api_version)?;
    let metadata = local().metadata();
    let requested: usize = request.topics.iter().map(|t| t.partitions.len()).sum();
    if requested > PARTITIONS_MAX {
        return Err(Malformed("too many partitions in one OffsetForLeaderEpoch"));
    }
    // Unknown partitions are answered here; the rest go to their owners together.
    let mut known_partitions = Vec::with_capacity(requested);
    let mut lookups = Vec::with_capacity(requested);
    for topic in &request.topics {
        let name = topic.topic.0.to_string();
        let count = metadata.topics.get(&name).map(|t| t.partitions);
        for p in &topic.partitions {
            let exists = count.is_some_and(|n| (0..n).contains(&p.partition));
            known_partitions.push(exists);
            if exists {
                lookups.push(shard::LookupSpec {
                    tp: TopicPartition::new(name.clone(), p.partition),
                    current_leader_epoch: p.current_leader_epoch,
                    arg: i64::from(p.leader_epoch),
                });
            }
        }
    }
    let mut looked_up = shard::end_offsets_for_epochs(lookups).await.into_iter();
    let mut results = known_partitions
        .into_iter()
        .map(|exists| match exists {
            true => looked_up.next().expect("one answer per lookup"),
            false => Err(ErrorCode::UnknownTopicOrPartition),
        })
        .collect::<Vec<_>>()
        .into_iter();
    let topics = request
        .topics
        .into_iter()
        .map(|topic| {
            let partitions = topic
                .partitions
                .iter()
                .map(|p| {
                    let answer = EpochEndOffset::default().with_partition(p.partition);
                    match results.next().expect("one result per partition") {
                        Ok((epoch, end_offset)) => answer.with_leader_epoch(epoch).with_end_offset(end_offset),
                        Err(code) => answer
                            .with_error_code(code.code())
                            .with_leader_epoch(UNDEFINED_EPOCH)
                            .with_end_offset(UNDEFINED_OFFSET),
                    }
                })
                .collect();
            OffsetForLeaderTopicResult::default()
                .with_topic(topic.topic)
                .with_partitions(partitions)
        })
        .collect();
    encode_response(header, &OffsetForLeaderEpochResponse::default().with_topics(topics))
}
