//! ListOffsets: earliest, latest (the high watermark, or the last stable
//! offset for read_committed), max timestamp, and by timestamp.

use bytes::Bytes;
use kafka_protocol::messages::list_offsets_response::{ListOffsetsPartitionResponse, ListOffsetsTopicResponse};
use kafka_protocol::messages::{ListOffsetsRequest, ListOffsetsResponse};

use super::{Malformed, RequestHeader, Response, decode, encode_response};
use crate::cluster::shard::{self, local};
use crate::model::{ErrorCode, TopicPartition};
use crate::storage::Reader;

/// (offset, timestamp, leader epoch) of one partition, or why not.
type OffsetAnswer = Result<(i64, i64, i32), ErrorCode>;

/// KIP-1005's latest-tiered-offset: with no tiered storage there is none.
const LATEST_TIERED_TIMESTAMP: i64 = -5;

pub async fn handle(header: &RequestHeader, body: Bytes) -> Result<Response, Malformed> {
    let request: ListOffsetsRequest = decode(body, header.api_version)?;
    let version = header.api_version;
    let metadata = local().metadata();
    // Partitions answered here keep their answer; the rest go to their owners together.
    let mut answered: Vec<Option<OffsetAnswer>> = Vec::new();
    let mut lookups = Vec::new();
    for topic in &request.topics {
        let name = topic.name.0.to_string();
        let known = metadata.topics.get(&name).map(|t| t.partitions);
        for p in &topic.partitions {
            let exists = known.is_some_and(|n| (0..n).contains(&p.partition_index));
            answered.push(if !exists {
                Some(Err(ErrorCode::UnknownTopicOrPartition))
            } else if p.timestamp == LATEST_TIERED_TIMESTAMP {
                Some(Ok((-1, -1, -1)))
            } else {
                lookups.push(shard::LookupSpec {
                    tp: TopicPartition::new(name.clone(), p.partition_index),
                    current_leader_epoch: if version >= 4 {
                        p.current_leader_epoch
                    } else {
                        shard::NO_LEADER_EPOCH
                    },
                    arg: p.timestamp,
                });
                None
            });
        }
    }
    // v2 added isolation_level; read_committed answers "latest" with the last stable offset.
    let reader = if version >= 2 && request.isolation_level == 1 {
        Reader::Committed
    } else {
        Reader::Consumer
    };
    let mut looked_up = shard::offsets_for(lookups, reader).await.into_iter();
    let mut results = answered
        .into_iter()
        .map(|a| a.unwrap_or_else(|| looked_up.next().expect("one answer per lookup")))
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
                    let mut r = ListOffsetsPartitionResponse::default().with_partition_index(p.partition_index);
                    match results.next().expect("one result per partition") {
                        Ok((offset, timestamp, epoch)) => {
                            r.offset = offset;
                            r.timestamp = timestamp;
                            if version >= 4 {
                                r.leader_epoch = epoch;
                            }
                        }
                        Err(code) => {
                            r.error_code = code.code();
                            r.offset = -1;
                            r.timestamp = -1;
                        }
                    }
                    r
                })
                .collect();
            ListOffsetsTopicResponse::default()
                .with_name(topic.name)
                .with_partitions(partitions)
        })
        .collect();
    encode_response(header, &ListOffsetsResponse::default().with_topics(topics))
}
