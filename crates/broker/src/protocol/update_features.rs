//! UpdateFeatures (`kafka-features upgrade|downgrade`): finalizes feature
//! levels for the whole cluster, through the controller (a quorum record in
//! cluster mode). Every update is checked before any is made; one refused
//! refuses the request, as Kafka's controller does.

use bytes::Bytes;
use kafka_protocol::messages::update_features_response::UpdatableFeatureResult;
use kafka_protocol::messages::{UpdateFeaturesRequest, UpdateFeaturesResponse};

use super::{Malformed, RequestHeader, Response, decode, encode_response, str_bytes};
use crate::cluster::controller::{self, FeatureUpdate, UpgradeKind};
use crate::model::{ErrorCode, NAME_BYTES_MAX};

/// Updates one request may carry; Kafka knows a handful of features.
const UPDATES_MAX: usize = 64;

pub async fn handle(header: &RequestHeader, body: Bytes) -> Result<Response, Malformed> {
    let version = header.api_version;
    let request: UpdateFeaturesRequest = decode(body, version)?;
    if request.feature_updates.len() > UPDATES_MAX {
        return Err(Malformed("too many feature updates in one UpdateFeatures"));
    }
    let mut updates = Vec::with_capacity(request.feature_updates.len());
    for update in &request.feature_updates {
        if update.feature.len() > NAME_BYTES_MAX {
            return Err(Malformed("a feature name is too long"));
        }
        let kind = match (version, update.upgrade_type) {
            (0, _) if update.allow_downgrade => UpgradeKind::SafeDowngrade,
            (0, _) | (_, 1) => UpgradeKind::Upgrade,
            (_, 2) => UpgradeKind::SafeDowngrade,
            (_, 3) => UpgradeKind::UnsafeDowngrade,
            _ => return Err(Malformed("an unknown upgrade type")),
        };
        updates.push(FeatureUpdate {
            feature: update.feature.to_string(),
            level: update.max_version_level,
            kind,
        });
    }
    let names: Vec<String> = updates.iter().map(|u| u.feature.clone()).collect();
    let (code, message) = match controller::update_features(updates, request.validate_only).await {
        Ok(()) => (ErrorCode::None, None),
        Err(e) => (e.code, Some(str_bytes(e.message))),
    };
    let mut response = UpdateFeaturesResponse::default()
        .with_error_code(code.code())
        .with_error_message(message.clone());
    // Up to v1 each feature has a result too: all share the request's fate.
    if version <= 1 {
        response.results = names
            .into_iter()
            .map(|name| {
                UpdatableFeatureResult::default()
                    .with_feature(str_bytes(name))
                    .with_error_code(code.code())
                    .with_error_message(message.clone())
            })
            .collect();
    }
    encode_response(header, &response)
}
