//! DescribeQuorum (KIP-595, v2 KIP-853): the metadata quorum's leader, epoch,
//! high watermark and voters, as `kafka-metadata-quorum describe` shows them.
//! Only the quorum leader knows each voter's log end, so a broker that does
//! not lead forwards the request to the leader, as Kafka's brokers forward it
//! to the active controller. A leader that is a controller only has no broker
//! listener to ask; then, or if the leader does not answer, the broker answers
//! from its own view (log ends -1, unknown). A single node is a quorum of
//! one: it leads, and its log is its metadata's history.

use std::time::Duration;

use bytes::Bytes;
use kafka_protocol::messages::describe_quorum_response::{Listener, Node, PartitionData, ReplicaState, TopicData};
use kafka_protocol::messages::{BrokerId, DescribeQuorumRequest, DescribeQuorumResponse, TopicName};
use uuid::Uuid;

use super::{Malformed, RequestHeader, Response, decode, encode_response, str_bytes};
use crate::cluster::quorum::{self, QuorumStatus};
use crate::cluster::request;
use crate::cluster::shard::local;
use crate::model::{ErrorCode, now_ms};

/// Kafka's name of the metadata log's topic; it has one partition.
const METADATA_TOPIC: &str = "__cluster_metadata";
/// How long the answer waits for the quorum thread.
const STATUS_TIMEOUT: Duration = Duration::from_secs(5);
/// How long a forwarded request may take, connecting included.
const FORWARD_TIMEOUT: Duration = Duration::from_secs(5);
/// The client id of forwarded requests: a broker never forwards one again,
/// so two brokers that each think the other leads cannot bounce it.
const FORWARD_CLIENT_ID: &str = "sluice-describe-quorum-forward";
/// The largest answer accepted from the leader: voters are few.
const FORWARD_RESPONSE_BYTES_MAX: usize = 1 << 20;

/// The quorum as this node sees it: (leader, epoch, high watermark, voters
/// with their log end offsets).
struct View {
    leader_id: i32,
    leader_epoch: i32,
    high_watermark: i64,
    voters: Vec<(i32, i64)>,
}

/// A single node's view: a quorum of one, whose log is its metadata's history.
fn single_node_view() -> View {
    let shard = local();
    let version = i64::try_from(shard.metadata().version).unwrap_or(i64::MAX);
    View {
        leader_id: shard.config.broker_id,
        leader_epoch: 0,
        high_watermark: version,
        voters: vec![(shard.config.broker_id, version)],
    }
}

fn quorum_view(status: &QuorumStatus) -> View {
    let id = |raw: u64| i32::try_from(raw).unwrap_or(-1);
    let voters = status
        .voters
        .iter()
        .map(|voter| {
            let matched = status.matched.iter().find(|(v, _)| v == voter);
            (
                id(*voter),
                matched.map_or(-1, |(_, index)| i64::try_from(*index).unwrap_or(i64::MAX)),
            )
        })
        .collect();
    View {
        leader_id: if status.leader_id == 0 {
            -1
        } else {
            id(status.leader_id)
        },
        leader_epoch: i32::try_from(status.term).unwrap_or(i32::MAX),
        high_watermark: i64::try_from(status.commit_index).unwrap_or(i64::MAX),
        voters,
    }
}

/// The leader's own answer, when another node leads and has a broker listener.
async fn ask_leader(
    status: &QuorumStatus,
    request: &DescribeQuorumRequest,
    version: i16,
) -> Option<DescribeQuorumResponse> {
    if status.leader_id == 0 || status.leader_id == status.node_id {
        return None;
    }
    let leader = i32::try_from(status.leader_id).ok()?;
    let endpoint = local().metadata().brokers.get(&leader).cloned()?;
    let ask = async {
        let mut stream = compio::net::TcpStream::connect((endpoint.host.as_str(), endpoint.port)).await?;
        request::call(
            &mut stream,
            request,
            version,
            FORWARD_CLIENT_ID,
            FORWARD_RESPONSE_BYTES_MAX,
        )
        .await
    };
    match compio::time::timeout(FORWARD_TIMEOUT, ask).await {
        Ok(Ok(response)) => Some(response),
        Ok(Err(e)) => {
            tracing::debug!(leader, "DescribeQuorum not forwarded: {e}");
            None
        }
        Err(_) => {
            tracing::debug!(
                leader,
                "DescribeQuorum not forwarded: the leader did not answer in time"
            );
            None
        }
    }
}

/// The voters' endpoints: the controller listeners of `controller.quorum.voters`,
/// or a single node's own listener.
fn nodes() -> Vec<Node> {
    let config = &local().config;
    let node = |id: i32, name: &str, host: String, port: u16| {
        Node::default().with_node_id(BrokerId(id)).with_listeners(vec![
            Listener::default()
                .with_name(str_bytes(name))
                .with_host(str_bytes(host))
                .with_port(port),
        ])
    };
    if config.controller_voters.is_empty() {
        let (host, port) = config.advertised_endpoint();
        return vec![node(config.broker_id, "PLAINTEXT", host, port)];
    }
    config
        .controller_voters
        .iter()
        .map(|(id, address)| {
            let id = i32::try_from(*id).unwrap_or(-1);
            node(id, "CONTROLLER", address.ip().to_string(), address.port())
        })
        .collect()
}

fn partition(index: i32, view: &View, version: i16) -> PartitionData {
    let now = now_ms();
    let replicas = view
        .voters
        .iter()
        .map(|(id, log_end_offset)| {
            // The leader itself is caught up now; others' fetch times are not tracked.
            let at = if *id == view.leader_id { now } else { -1 };
            let mut state = ReplicaState::default()
                .with_replica_id(BrokerId(*id))
                .with_replica_directory_id(Uuid::nil())
                .with_log_end_offset(*log_end_offset);
            if version >= 1 {
                state = state.with_last_fetch_timestamp(at).with_last_caught_up_timestamp(at);
            }
            state
        })
        .collect();
    PartitionData::default()
        .with_partition_index(index)
        .with_leader_id(BrokerId(view.leader_id))
        .with_leader_epoch(view.leader_epoch)
        .with_high_watermark(view.high_watermark)
        .with_current_voters(replicas)
}

pub async fn handle(header: &RequestHeader, body: Bytes) -> Result<Response, Malformed> {
    let request: DescribeQuorumRequest = decode(body, header.api_version)?;
    let version = header.api_version;
    let view = match quorum::get() {
        None => Ok(single_node_view()),
        Some(quorum) => match quorum.status(STATUS_TIMEOUT).await {
            None => Err(ErrorCode::RequestTimedOut),
            Some(status) => {
                let forwarded = header.client_id.as_deref() == Some(FORWARD_CLIENT_ID);
                if !forwarded && let Some(answer) = ask_leader(&status, &request, version).await {
                    return encode_response(header, &answer);
                }
                Ok(quorum_view(&status))
            }
        },
    };
    let mut response = DescribeQuorumResponse::default();
    match view {
        Err(code) => response.error_code = code.code(),
        Ok(view) => {
            response.topics = request
                .topics
                .iter()
                .map(|topic| {
                    let known = &*topic.topic_name.0 == METADATA_TOPIC;
                    let partitions = topic
                        .partitions
                        .iter()
                        .map(|p| match (known, p.partition_index) {
                            (true, 0) => partition(0, &view, version),
                            _ => PartitionData::default()
                                .with_partition_index(p.partition_index)
                                .with_error_code(ErrorCode::UnknownTopicOrPartition.code()),
                        })
                        .collect();
                    TopicData::default()
                        .with_topic_name(TopicName(topic.topic_name.0.clone()))
                        .with_partitions(partitions)
                })
                .collect();
            if version >= 2 {
                response.nodes = nodes();
            }
        }
    }
    encode_response(header, &response)
}
