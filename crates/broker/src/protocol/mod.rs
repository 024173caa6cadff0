//! The Kafka wire protocol: request headers, dispatch, and one handler file
//! per API. Handlers reach partitions only through `cluster`; this layer
//! knows nothing about files beyond the `FileSlice`s it passes to `net`.

mod add_offsets_to_txn;
mod add_partitions_to_txn;
mod alter_configs;
mod alter_partition_reassignments;
mod api_versions;
mod authorized_operations;
mod consumer_group_describe;
mod consumer_group_heartbeat;
mod create_partitions;
mod create_topics;
mod delete_groups;
mod delete_topics;
mod describe_cluster;
mod describe_configs;
mod describe_groups;
mod describe_log_dirs;
mod describe_producers;
mod describe_quorum;
mod describe_transactions;
mod elect_leaders;
mod end_txn;
pub mod fetch;
mod fetch_session;
mod find_coordinator;
mod heartbeat;
mod init_producer_id;
mod join_group;
mod leave_group;
mod list_groups;
mod list_offsets;
mod list_partition_reassignments;
mod list_transactions;
mod metadata;
mod offset_commit;
mod offset_delete;
mod offset_fetch;
mod offset_for_leader_epoch;
pub mod produce;
mod produce_turns;
mod sync_group;
mod txn_offset_commit;
mod unregister_broker;
mod update_features;
mod write_txn_markers;

use bytes::{BufMut, Bytes, BytesMut};
use kafka_protocol::messages::ApiKey;
use kafka_protocol::protocol::{Decodable, Encodable};

use crate::runtime::request_bytes::Charged;
use crate::storage::FileSlice;
pub use crate::wire::{self, Malformed};

/// Every API the broker implements, with the versions it really handles.
/// ApiVersions advertises exactly this table.
pub const SUPPORTED_APIS: &[(ApiKey, i16, i16)] = &[
    (ApiKey::Produce, 3, 12),
    (ApiKey::Fetch, 4, 18),
    (ApiKey::ListOffsets, 1, 10),
    (ApiKey::Metadata, 0, 12),
    (ApiKey::ApiVersions, 0, 4),
    (ApiKey::CreateTopics, 2, 7),
    (ApiKey::DeleteTopics, 1, 6),
    (ApiKey::InitProducerId, 0, 5),
    (ApiKey::AddPartitionsToTxn, 0, 5),
    (ApiKey::AddOffsetsToTxn, 0, 4),
    (ApiKey::EndTxn, 0, 5),
    (ApiKey::TxnOffsetCommit, 0, 5),
    (ApiKey::DescribeConfigs, 1, 4),
    (ApiKey::AlterConfigs, 0, 2),
    (ApiKey::CreatePartitions, 0, 3),
    (ApiKey::IncrementalAlterConfigs, 0, 1),
    (ApiKey::DescribeCluster, 0, 2),
    (ApiKey::FindCoordinator, 0, 6),
    (ApiKey::JoinGroup, 0, 9),
    (ApiKey::SyncGroup, 0, 5),
    (ApiKey::Heartbeat, 0, 4),
    (ApiKey::LeaveGroup, 0, 5),
    (ApiKey::OffsetCommit, 2, 9),
    (ApiKey::OffsetFetch, 1, 9),
    (ApiKey::ListGroups, 0, 5),
    (ApiKey::DescribeGroups, 0, 5),
    (ApiKey::DeleteGroups, 0, 2),
    (ApiKey::OffsetDelete, 0, 0),
    (ApiKey::ConsumerGroupHeartbeat, 0, 1),
    (ApiKey::ConsumerGroupDescribe, 0, 1),
    (ApiKey::DescribeLogDirs, 1, 4),
    (ApiKey::OffsetForLeaderEpoch, 2, 4),
    (ApiKey::ElectLeaders, 0, 2),
    (ApiKey::AlterPartitionReassignments, 0, 1),
    (ApiKey::ListPartitionReassignments, 0, 0),
    (ApiKey::UnregisterBroker, 0, 0),
    (ApiKey::UpdateFeatures, 0, 2),
    (ApiKey::DescribeQuorum, 0, 2),
    (ApiKey::DescribeProducers, 0, 0),
    (ApiKey::DescribeTransactions, 0, 0),
    (ApiKey::ListTransactions, 0, 2),
    (ApiKey::WriteTxnMarkers, 1, 1),
];

pub fn supported_versions(key: ApiKey) -> Option<(i16, i16)> {
    SUPPORTED_APIS
        .iter()
        .find(|(k, _, _)| *k == key)
        .map(|(_, min, max)| (*min, *max))
}

/// One piece of a response on the wire: bytes built in user space, or a
/// range of a segment file that goes to the socket without being copied.
#[derive(Debug, Clone)]
pub enum Part {
    Bytes(Bytes),
    File(FileSlice),
}

/// A complete response frame, its 4-byte size prefix included.
#[derive(Debug, Clone)]
pub struct Response {
    pub parts: Vec<Part>,
}

impl Response {
    pub fn from_bytes(frame: BytesMut) -> Self {
        Self {
            parts: vec![Part::Bytes(frame.freeze())],
        }
    }
}

#[derive(Debug, Clone)]
pub struct RequestHeader {
    pub api_key: ApiKey,
    pub api_version: i16,
    pub correlation_id: i32,
    pub client_id: Option<String>,
    /// The peer's address as Kafka shows it ("/127.0.0.1"); set by `handle`.
    pub client_host: std::rc::Rc<str>,
}

/// Parses the request header; returns it with the offset where the body starts.
/// An unknown API key is an error: Kafka closes such connections.
pub fn parse_header(frame: &[u8]) -> Result<(RequestHeader, usize), Malformed> {
    let mut r = wire::Reader::new(frame);
    let api_key = r.i16()?;
    let api_version = r.i16()?;
    let correlation_id = r.i32()?;
    let api_key = ApiKey::try_from(api_key).map_err(|_| Malformed("unknown API key"))?;
    let client_id = r.nullable_str(false)?.map(str::to_string);
    let header = RequestHeader {
        api_key,
        api_version,
        correlation_id,
        client_id,
        client_host: std::rc::Rc::from(""),
    };
    // Header v2 (flexible versions) adds tagged fields; an unsupported
    // version of a known API still parses as far as ApiVersions needs.
    let supported = supported_versions(api_key).is_some_and(|(min, max)| (min..=max).contains(&api_version));
    if supported && api_key.request_header_version(api_version) >= 2 {
        r.skip_tagged_fields()?;
    }
    Ok((header, r.position()))
}

/// Frames a response body: size, correlation id, header tags, body.
pub fn encode_response<R: Encodable>(header: &RequestHeader, body: &R) -> Result<Response, Malformed> {
    encode_response_version(header, header.api_version, body)
}

fn encode_response_version<R: Encodable>(
    header: &RequestHeader,
    version: i16,
    body: &R,
) -> Result<Response, Malformed> {
    let mut out = BytesMut::with_capacity(64);
    out.put_i32(0);
    out.put_i32(header.correlation_id);
    if header.api_key.response_header_version(version) >= 1 {
        out.put_u8(0);
    }
    body.encode(&mut out, version)
        .map_err(|_| Malformed("response does not encode"))?;
    let size = (out.len() - 4) as i32;
    out[0..4].copy_from_slice(&size.to_be_bytes());
    Ok(Response::from_bytes(out))
}

pub fn decode<R: Decodable>(body: Bytes, version: i16) -> Result<R, Malformed> {
    let mut body = body;
    R::decode(&mut body, version).map_err(|_| Malformed("request body does not decode"))
}

/// Handles one request frame (without its size prefix). `Ok(None)` means no
/// response is due (acks=0 Produce). `Err` means the connection must close,
/// as Kafka does for requests it cannot parse.
/// `charged` is the frame's share of `queued.max.request.bytes`, released
/// once the request no longer needs its bytes (for Produce, once written).
pub async fn handle(
    frame: BytesMut,
    client_host: std::rc::Rc<str>,
    charged: Charged,
) -> Result<Option<Response>, Malformed> {
    let started = std::time::Instant::now();
    let (mut header, body_start) = parse_header(&frame)?;
    header.client_host = client_host;
    let api_key = header.api_key as i16;
    let result = dispatch(header, frame, body_start, charged).await;
    crate::metrics::record_request(api_key, started.elapsed());
    result
}

async fn dispatch(
    header: RequestHeader,
    frame: BytesMut,
    body_start: usize,
    charged: Charged,
) -> Result<Option<Response>, Malformed> {
    let Some((min, max)) = supported_versions(header.api_key) else {
        return Err(Malformed("API not supported"));
    };
    if !(min..=max).contains(&header.api_version) {
        if header.api_key == ApiKey::ApiVersions {
            return api_versions::unsupported_version(&header).map(Some);
        }
        return Err(Malformed("API version not supported"));
    }
    if header.api_key == ApiKey::Produce {
        return produce::handle(&header, frame, body_start, charged).await;
    }
    let body = frame.freeze().slice(body_start..);
    // Other requests keep their bytes until answered (they are small, or
    // parsed into owned values at once).
    let _charged = charged;
    let response = match header.api_key {
        ApiKey::ApiVersions => api_versions::handle(&header, body)?,
        ApiKey::Metadata => metadata::handle(&header, body).await?,
        ApiKey::Fetch => fetch::handle(&header, body).await?,
        ApiKey::ListOffsets => list_offsets::handle(&header, body).await?,
        ApiKey::CreateTopics => create_topics::handle(&header, body).await?,
        ApiKey::DeleteTopics => delete_topics::handle(&header, body).await?,
        ApiKey::CreatePartitions => create_partitions::handle(&header, body).await?,
        ApiKey::DescribeConfigs => describe_configs::handle(&header, body).await?,
        ApiKey::AlterConfigs => alter_configs::handle_alter(&header, body).await?,
        ApiKey::IncrementalAlterConfigs => alter_configs::handle_incremental(&header, body).await?,
        ApiKey::DescribeCluster => describe_cluster::handle(&header, body)?,
        ApiKey::InitProducerId => init_producer_id::handle(&header, body).await?,
        ApiKey::AddPartitionsToTxn => add_partitions_to_txn::handle(&header, body).await?,
        ApiKey::AddOffsetsToTxn => add_offsets_to_txn::handle(&header, body).await?,
        ApiKey::EndTxn => end_txn::handle(&header, body).await?,
        ApiKey::TxnOffsetCommit => txn_offset_commit::handle(&header, body).await?,
        ApiKey::FindCoordinator => find_coordinator::handle(&header, body).await?,
        ApiKey::JoinGroup => join_group::handle(&header, body).await?,
        ApiKey::SyncGroup => sync_group::handle(&header, body).await?,
        ApiKey::Heartbeat => heartbeat::handle(&header, body).await?,
        ApiKey::LeaveGroup => leave_group::handle(&header, body).await?,
        ApiKey::OffsetCommit => offset_commit::handle(&header, body).await?,
        ApiKey::OffsetFetch => offset_fetch::handle(&header, body).await?,
        ApiKey::ListGroups => list_groups::handle(&header, body).await?,
        ApiKey::DescribeGroups => describe_groups::handle(&header, body).await?,
        ApiKey::DeleteGroups => delete_groups::handle(&header, body).await?,
        ApiKey::OffsetDelete => offset_delete::handle(&header, body).await?,
        ApiKey::ConsumerGroupHeartbeat => consumer_group_heartbeat::handle(&header, body).await?,
        ApiKey::ConsumerGroupDescribe => consumer_group_describe::handle(&header, body).await?,
        ApiKey::DescribeLogDirs => describe_log_dirs::handle(&header, body).await?,
        ApiKey::OffsetForLeaderEpoch => offset_for_leader_epoch::handle(&header, body).await?,
        ApiKey::ElectLeaders => elect_leaders::handle(&header, body).await?,
        ApiKey::UpdateFeatures => update_features::handle(&header, body).await?,
        ApiKey::AlterPartitionReassignments => alter_partition_reassignments::handle(&header, body).await?,
        ApiKey::ListPartitionReassignments => list_partition_reassignments::handle(&header, body).await?,
        ApiKey::UnregisterBroker => unregister_broker::handle(&header, body).await?,
        ApiKey::DescribeQuorum => describe_quorum::handle(&header, body).await?,
        ApiKey::DescribeProducers => describe_producers::handle(&header, body).await?,
        ApiKey::DescribeTransactions => describe_transactions::handle(&header, body).await?,
        ApiKey::ListTransactions => list_transactions::handle(&header, body).await?,
        ApiKey::WriteTxnMarkers => write_txn_markers::handle(&header, body).await?,
        _ => return Err(Malformed("API not supported")),
    };
    Ok(Some(response))
}

/// Decodes `body` as the request type of `key`, as `handle` would, and drops
/// the result: for the decoder properties and the fuzz targets (`fuzz/`).
#[doc(hidden)]
pub fn decode_any(key: ApiKey, version: i16, body: Bytes) {
    use kafka_protocol::messages::*;
    match key {
        ApiKey::ApiVersions => drop(decode::<ApiVersionsRequest>(body, version)),
        ApiKey::Metadata => drop(decode::<MetadataRequest>(body, version)),
        ApiKey::Fetch => drop(decode::<FetchRequest>(body, version)),
        ApiKey::ListOffsets => drop(decode::<ListOffsetsRequest>(body, version)),
        ApiKey::CreateTopics => drop(decode::<CreateTopicsRequest>(body, version)),
        ApiKey::DeleteTopics => drop(decode::<DeleteTopicsRequest>(body, version)),
        ApiKey::CreatePartitions => drop(decode::<CreatePartitionsRequest>(body, version)),
        ApiKey::DescribeConfigs => drop(decode::<DescribeConfigsRequest>(body, version)),
        ApiKey::AlterConfigs => drop(decode::<AlterConfigsRequest>(body, version)),
        ApiKey::IncrementalAlterConfigs => drop(decode::<IncrementalAlterConfigsRequest>(body, version)),
        ApiKey::DescribeCluster => drop(decode::<DescribeClusterRequest>(body, version)),
        ApiKey::InitProducerId => drop(decode::<InitProducerIdRequest>(body, version)),
        ApiKey::AddPartitionsToTxn => drop(decode::<AddPartitionsToTxnRequest>(body, version)),
        ApiKey::AddOffsetsToTxn => drop(decode::<AddOffsetsToTxnRequest>(body, version)),
        ApiKey::EndTxn => drop(decode::<EndTxnRequest>(body, version)),
        ApiKey::TxnOffsetCommit => drop(decode::<TxnOffsetCommitRequest>(body, version)),
        ApiKey::FindCoordinator => drop(decode::<FindCoordinatorRequest>(body, version)),
        ApiKey::JoinGroup => drop(decode::<JoinGroupRequest>(body, version)),
        ApiKey::SyncGroup => drop(decode::<SyncGroupRequest>(body, version)),
        ApiKey::Heartbeat => drop(decode::<HeartbeatRequest>(body, version)),
        ApiKey::LeaveGroup => drop(decode::<LeaveGroupRequest>(body, version)),
        ApiKey::OffsetCommit => drop(decode::<OffsetCommitRequest>(body, version)),
        ApiKey::OffsetFetch => drop(decode::<OffsetFetchRequest>(body, version)),
        ApiKey::ListGroups => drop(decode::<ListGroupsRequest>(body, version)),
        ApiKey::DescribeGroups => drop(decode::<DescribeGroupsRequest>(body, version)),
        ApiKey::DeleteGroups => drop(decode::<DeleteGroupsRequest>(body, version)),
        ApiKey::OffsetDelete => drop(decode::<OffsetDeleteRequest>(body, version)),
        ApiKey::ConsumerGroupHeartbeat => drop(decode::<ConsumerGroupHeartbeatRequest>(body, version)),
        ApiKey::ConsumerGroupDescribe => drop(decode::<ConsumerGroupDescribeRequest>(body, version)),
        ApiKey::DescribeLogDirs => drop(decode::<DescribeLogDirsRequest>(body, version)),
        ApiKey::OffsetForLeaderEpoch => drop(decode::<OffsetForLeaderEpochRequest>(body, version)),
        ApiKey::ElectLeaders => drop(decode::<ElectLeadersRequest>(body, version)),
        ApiKey::AlterPartitionReassignments => drop(decode::<AlterPartitionReassignmentsRequest>(body, version)),
        ApiKey::ListPartitionReassignments => drop(decode::<ListPartitionReassignmentsRequest>(body, version)),
        ApiKey::UnregisterBroker => drop(decode::<UnregisterBrokerRequest>(body, version)),
        ApiKey::UpdateFeatures => drop(decode::<UpdateFeaturesRequest>(body, version)),
        ApiKey::DescribeQuorum => drop(decode::<DescribeQuorumRequest>(body, version)),
        ApiKey::DescribeProducers => drop(decode::<DescribeProducersRequest>(body, version)),
        ApiKey::DescribeTransactions => drop(decode::<DescribeTransactionsRequest>(body, version)),
        ApiKey::ListTransactions => drop(decode::<ListTransactionsRequest>(body, version)),
        ApiKey::WriteTxnMarkers => drop(decode::<WriteTxnMarkersRequest>(body, version)),
        ApiKey::Produce => drop(produce::parse(&body, version)),
        // Callers pick from SUPPORTED_APIS; the decoder property covers every entry.
        other => panic!("{other:?} is advertised but not decoded here"),
    }
}

/// Every advertised API at every advertised version, as the body of a
/// request with default fields (empty strings and arrays): `(api key,
/// version, body)`. The hostile-client tests mutate these at every byte
/// (`sluice debug sample-requests`, a hidden tool command).
#[doc(hidden)]
pub fn sample_requests() -> Vec<(i16, i16, Vec<u8>)> {
    use kafka_protocol::messages::*;
    fn encode_default<R: Encodable + Default>(version: i16) -> Option<Vec<u8>> {
        let mut out = BytesMut::new();
        R::default().encode(&mut out, version).ok()?;
        Some(out.to_vec())
    }
    let mut out = Vec::new();
    for (key, min, max) in SUPPORTED_APIS {
        for version in *min..=*max {
            let body = match key {
                ApiKey::ApiVersions => encode_default::<ApiVersionsRequest>(version),
                ApiKey::Metadata => encode_default::<MetadataRequest>(version),
                ApiKey::Fetch => encode_default::<FetchRequest>(version),
                ApiKey::ListOffsets => encode_default::<ListOffsetsRequest>(version),
                ApiKey::CreateTopics => encode_default::<CreateTopicsRequest>(version),
                ApiKey::DeleteTopics => encode_default::<DeleteTopicsRequest>(version),
                ApiKey::CreatePartitions => encode_default::<CreatePartitionsRequest>(version),
                ApiKey::DescribeConfigs => encode_default::<DescribeConfigsRequest>(version),
                ApiKey::AlterConfigs => encode_default::<AlterConfigsRequest>(version),
                ApiKey::IncrementalAlterConfigs => encode_default::<IncrementalAlterConfigsRequest>(version),
                ApiKey::DescribeCluster => encode_default::<DescribeClusterRequest>(version),
                ApiKey::InitProducerId => encode_default::<InitProducerIdRequest>(version),
                ApiKey::AddPartitionsToTxn => encode_default::<AddPartitionsToTxnRequest>(version),
                ApiKey::AddOffsetsToTxn => encode_default::<AddOffsetsToTxnRequest>(version),
                ApiKey::EndTxn => encode_default::<EndTxnRequest>(version),
                ApiKey::TxnOffsetCommit => encode_default::<TxnOffsetCommitRequest>(version),
                ApiKey::FindCoordinator => encode_default::<FindCoordinatorRequest>(version),
                ApiKey::JoinGroup => encode_default::<JoinGroupRequest>(version),
                ApiKey::SyncGroup => encode_default::<SyncGroupRequest>(version),
                ApiKey::Heartbeat => encode_default::<HeartbeatRequest>(version),
                ApiKey::LeaveGroup => encode_default::<LeaveGroupRequest>(version),
                ApiKey::OffsetCommit => encode_default::<OffsetCommitRequest>(version),
                ApiKey::OffsetFetch => encode_default::<OffsetFetchRequest>(version),
                ApiKey::ListGroups => encode_default::<ListGroupsRequest>(version),
                ApiKey::DescribeGroups => encode_default::<DescribeGroupsRequest>(version),
                ApiKey::DeleteGroups => encode_default::<DeleteGroupsRequest>(version),
                ApiKey::OffsetDelete => encode_default::<OffsetDeleteRequest>(version),
                ApiKey::ConsumerGroupHeartbeat => encode_default::<ConsumerGroupHeartbeatRequest>(version),
                ApiKey::ConsumerGroupDescribe => encode_default::<ConsumerGroupDescribeRequest>(version),
                ApiKey::DescribeLogDirs => encode_default::<DescribeLogDirsRequest>(version),
                ApiKey::OffsetForLeaderEpoch => encode_default::<OffsetForLeaderEpochRequest>(version),
                ApiKey::ElectLeaders => encode_default::<ElectLeadersRequest>(version),
                ApiKey::AlterPartitionReassignments => encode_default::<AlterPartitionReassignmentsRequest>(version),
                ApiKey::ListPartitionReassignments => encode_default::<ListPartitionReassignmentsRequest>(version),
                ApiKey::UnregisterBroker => encode_default::<UnregisterBrokerRequest>(version),
                ApiKey::UpdateFeatures => encode_default::<UpdateFeaturesRequest>(version),
                ApiKey::DescribeQuorum => encode_default::<DescribeQuorumRequest>(version),
                ApiKey::DescribeProducers => encode_default::<DescribeProducersRequest>(version),
                ApiKey::DescribeTransactions => encode_default::<DescribeTransactionsRequest>(version),
                ApiKey::ListTransactions => encode_default::<ListTransactionsRequest>(version),
                ApiKey::WriteTxnMarkers => encode_default::<WriteTxnMarkersRequest>(version),
                ApiKey::Produce => encode_default::<ProduceRequest>(version),
                _ => None,
            };
            if let Some(body) = body {
                out.push((*key as i16, version, body));
            }
        }
    }
    out
}

/// Kafka's message readers refuse every string longer than an int16 counts
/// (32,767 bytes), in flexible versions too, and close the connection; so
/// do these handlers for the names the broker keeps or routes by (group,
/// member and instance ids, protocol names), before anything is stored.
pub fn check_names<'a>(names: impl IntoIterator<Item = &'a str>) -> Result<(), Malformed> {
    if crate::model::names_fit(names) {
        Ok(())
    } else {
        Err(Malformed("a name is longer than 32,767 bytes"))
    }
}

/// PRODUCER_FENCED (KIP-588) as a request of `version` understands it: a
/// client older than `since` knows it as INVALID_PRODUCER_EPOCH.
pub fn fenced_for(code: crate::model::ErrorCode, version: i16, since: i16) -> crate::model::ErrorCode {
    use crate::model::ErrorCode;
    match code {
        ErrorCode::ProducerFenced if version < since => ErrorCode::InvalidProducerEpoch,
        other => other,
    }
}

/// TRANSACTION_ABORTABLE (KIP-890) for a request `version` from `since`
/// on; INVALID_TXN_STATE, what older clients know, before it.
pub fn abortable_for(code: crate::model::ErrorCode, version: i16, since: i16) -> crate::model::ErrorCode {
    use crate::model::ErrorCode;
    match code {
        ErrorCode::TransactionAbortable if version < since => ErrorCode::InvalidTxnState,
        other => other,
    }
}

/// A `StrBytes` from an owned string, for response fields.
pub fn str_bytes(s: impl Into<String>) -> kafka_protocol::protocol::StrBytes {
    kafka_protocol::protocol::StrBytes::from_string(s.into())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_parses_classic_and_flexible() {
        let mut frame = BytesMut::new();
        frame.put_i16(ApiKey::Metadata as i16);
        frame.put_i16(12);
        frame.put_i32(77);
        frame.put_i16(3);
        frame.put_slice(b"cli");
        frame.put_u8(0); // tagged fields of header v2
        frame.put_u8(0xAB);
        let (header, body_start) = parse_header(&frame).unwrap();
        assert_eq!(
            (header.api_key, header.api_version, header.correlation_id),
            (ApiKey::Metadata, 12, 77)
        );
        assert_eq!(header.client_id.as_deref(), Some("cli"));
        assert_eq!(frame[body_start], 0xAB);
        assert!(parse_header(&[0, 3, 0]).is_err());
        assert!(parse_header(&[0x7f, 0x7f, 0, 0, 0, 0, 0, 1, 0xff, 0xff]).is_err());
    }

    #[test]
    fn advertised_versions_are_within_the_codec() {
        for (key, min, max) in SUPPORTED_APIS {
            let codec = key.valid_versions();
            assert!(
                codec.min <= *min && *max <= codec.max,
                "{key:?} {min}..={max} vs codec {codec:?}"
            );
        }
    }

    proptest::proptest! {
        /// The request decoder never panics, whatever the bytes, for every advertised API and version.
        #[test]
        fn request_decoding_never_panics(
            api in 0..SUPPORTED_APIS.len(),
            version_pick in 0i16..20,
            body in proptest::collection::vec(proptest::num::u8::ANY, 0..256),
        ) {
            let (key, min, max) = SUPPORTED_APIS[api];
            let version = min + version_pick % (max - min + 1);
            decode_any(key, version, Bytes::from(body.clone()));
            let mut frame = BytesMut::new();
            frame.put_i16(key as i16);
            frame.put_i16(version);
            frame.put_slice(&body);
            let _ = parse_header(&frame);
        }
    }
}
