//! ApiVersions: the table of `SUPPORTED_APIS`, nothing more.

use bytes::Bytes;
use kafka_protocol::messages::ApiVersionsResponse;
use kafka_protocol::messages::api_versions_response::ApiVersion;

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

pub fn handle(header: &RequestHeader, _body: Bytes) -> Result<Response, Malformed> {
    // The body (client software name and version) is informational only.
    let response = ApiVersionsResponse::default().with_api_keys(api_table());
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
