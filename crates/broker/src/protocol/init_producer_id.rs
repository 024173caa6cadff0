//! InitProducerId: producer ids for idempotent producers. Transactions are not implemented yet.

use bytes::Bytes;
use kafka_protocol::messages::{InitProducerIdRequest, InitProducerIdResponse, ProducerId};

use super::{Malformed, RequestHeader, Response, decode, encode_response};
use crate::cluster::controller;
use crate::model::ErrorCode;

pub async fn handle(header: &RequestHeader, body: Bytes) -> Result<Response, Malformed> {
    let request: InitProducerIdRequest = decode(body, header.api_version)?;
    let mut response = InitProducerIdResponse::default()
        .with_producer_id(ProducerId(-1))
        .with_producer_epoch(-1);
    if request.transactional_id.is_some() {
        // No transaction coordinator yet: say so the way Kafka does for a missing coordinator.
        response.error_code = ErrorCode::CoordinatorNotAvailable.code();
        return encode_response(header, &response);
    }
    if request.producer_id.0 >= 0 && request.producer_epoch >= 0 {
        // KIP-360: an idempotent producer bumping its own epoch keeps its id.
        if request.producer_epoch < i16::MAX - 1 {
            response.producer_id = request.producer_id;
            response.producer_epoch = request.producer_epoch + 1;
            return encode_response(header, &response);
        }
    }
    match controller::allocate_producer_id().await {
        Ok(id) => {
            response.producer_id = ProducerId(id);
            response.producer_epoch = 0;
        }
        Err(e) => response.error_code = e.code.code(),
    }
    encode_response(header, &response)
}
