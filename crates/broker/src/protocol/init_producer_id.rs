//! InitProducerId: producer ids for idempotent producers, and for
//! transactional ones the id and epoch their coordinator keeps (`txn`).

use bytes::Bytes;
use kafka_protocol::messages::{InitProducerIdRequest, InitProducerIdResponse, ProducerId};

use super::{Malformed, RequestHeader, Response, decode, encode_response};
use crate::cluster::controller;
use crate::model::ErrorCode;
use crate::txn;

pub async fn handle(header: &RequestHeader, body: Bytes) -> Result<Response, Malformed> {
    let request: InitProducerIdRequest = decode(body, header.api_version)?;
    let mut response = InitProducerIdResponse::default()
        .with_producer_id(ProducerId(-1))
        .with_producer_epoch(-1);
    let answer = match request.transactional_id {
        Some(id) if id.is_empty() => Err(ErrorCode::InvalidRequest),
        Some(id) => {
            super::check_names(std::iter::once(&**id))?;
            // KIP-360 (v3+): the id and epoch the producer has, if any.
            let expected = (request.producer_id.0 >= 0).then_some(txn::Expected {
                producer_id: request.producer_id.0,
                producer_epoch: request.producer_epoch,
            });
            txn::init_producer_id(id.to_string(), request.transaction_timeout_ms, expected).await
        }
        None => idempotent(request.producer_id.0, request.producer_epoch).await,
    };
    match answer {
        Ok((id, epoch)) => {
            response.producer_id = ProducerId(id);
            response.producer_epoch = epoch;
        }
        // Version 4 added PRODUCER_FENCED.
        Err(code) => response.error_code = super::fenced_for(code, header.api_version, 4).code(),
    }
    encode_response(header, &response)
}

/// An idempotent producer's id: a new one, or (KIP-360) its own with the epoch bumped.
async fn idempotent(producer_id: i64, producer_epoch: i16) -> Result<(i64, i16), ErrorCode> {
    if producer_id >= 0 && (0..i16::MAX - 1).contains(&producer_epoch) {
        return Ok((producer_id, producer_epoch + 1));
    }
    controller::allocate_producer_id()
        .await
        .map(|id| (id, 0))
        .map_err(|e| e.code)
}
