//! ApiVersions: the table of `SUPPORTED_APIS`, and the one feature clients
//! act on, `transaction.version` (the Java client uses KIP-890 part 2 when
//! it is finalized at 2).

use bytes::Bytes;
use kafka_protocol::messages::ApiVersionsResponse;
use kafka_protocol::messages::api_versions_response::{ApiVersion, FinalizedFeatureKey, SupportedFeatureKey};

use super::{Malformed, RequestHeader, Response, SUPPORTED_APIS, encode_response_version};
use crate::model::ErrorCode;

fn api_table() -> Vec<ApiVersion> {
    SUPPORTED_APIS
        .iter()
        .map(|(key, min, max)| {
            ApiVersion::default()
                .with_api_key(*key as i16)
                .with_min_version(*min)
                .with_max_version(*max)
        })
        .collect()
}

const TRANSACTION_VERSION: &str = crate::config::TRANSACTION_VERSION_FEATURE;

/// Clients take the features of the highest epoch they have seen: the time
/// this broker process first answered, so a restart with another level is
/// noticed by a client that outlives it, or the time an operator last
/// finalized a level (UpdateFeatures), whichever is later. A broker started
/// after a change has the change too.
fn features_epoch(changed_ms: i64) -> i64 {
    static STARTED_MS: std::sync::OnceLock<i64> = std::sync::OnceLock::new();
    (*STARTED_MS.get_or_init(crate::model::now_ms)).max(changed_ms)
}

pub fn handle(header: &RequestHeader, _body: Bytes) -> Result<Response, Malformed> {
    // The body (client software name and version) is informational only.
    let finalized = crate::txn::finalized_version();
    let changed_ms = crate::cluster::shard::local().metadata().features.epoch_ms;
    let supported = SupportedFeatureKey::default()
        .with_name(super::str_bytes(TRANSACTION_VERSION))
        .with_min_version(0)
        .with_max_version(crate::config::TRANSACTION_VERSION_MAX);
    // As Kafka, a feature at level 0 is not listed as finalized.
    let finalized_features = (finalized > 0)
        .then(|| {
            FinalizedFeatureKey::default()
                .with_name(super::str_bytes(TRANSACTION_VERSION))
                .with_min_version_level(finalized)
                .with_max_version_level(finalized)
        })
        .into_iter()
        .collect();
    let response = ApiVersionsResponse::default()
        .with_api_keys(api_table())
        .with_supported_features(vec![supported])
        .with_finalized_features_epoch(features_epoch(changed_ms))
        .with_finalized_features(finalized_features);
    super::encode_response(header, &response)
}

/// A version the broker does not know: answer in the v0 format, which every
/// client can read, with UNSUPPORTED_VERSION and, as Kafka does (KIP-511),
/// only ApiVersions' own range, so the client can retry at a version it has.
pub fn unsupported_version(header: &RequestHeader) -> Result<Response, Malformed> {
    let own = api_table()
        .into_iter()
        .filter(|api| api.api_key == kafka_protocol::messages::ApiKey::ApiVersions as i16)
        .collect();
    let response = ApiVersionsResponse::default()
        .with_error_code(ErrorCode::UnsupportedVersion.code())
        .with_api_keys(own);
    encode_response_version(header, 0, &response)
}
