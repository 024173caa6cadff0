//! EndTxn: commit or abort the producer's open transaction. Answered once
//! the decision is stored at the coordinator; the markers follow (`txn`).
//! From version 5, with `transaction.version` 2, the coordinator bumps the
//! epoch and the answer carries the producer id and epoch to go on with.

use bytes::Bytes;
use kafka_protocol::messages::{EndTxnRequest, EndTxnResponse, ProducerId};

use super::{Malformed, RequestHeader, Response, check_names, decode, encode_response};
use crate::txn;

/// The first version whose client bumps its epoch at every end (KIP-890 part 2).
const EPOCH_BUMP_VERSION: i16 = 5;

pub async fn handle(header: &RequestHeader, body: Bytes) -> Result<Response, Malformed> {
    let request: EndTxnRequest = decode(body, header.api_version)?;
    check_names(std::iter::once(&**request.transactional_id))?;
    let producer = (request.producer_id.0, request.producer_epoch);
    let client_version = txn::client_version(header.api_version, EPOCH_BUMP_VERSION);
    let ended = txn::end_txn(
        request.transactional_id.to_string(),
        producer,
        request.committed,
        client_version,
    )
    .await;
    let response = match ended {
        Ok((producer_id, epoch)) => EndTxnResponse::default()
            .with_producer_id(ProducerId(producer_id))
            .with_producer_epoch(epoch),
        // Version 2 added PRODUCER_FENCED.
        Err(code) => EndTxnResponse::default()
            .with_error_code(super::fenced_for(code, header.api_version, 2).code())
            .with_producer_id(ProducerId(-1))
            .with_producer_epoch(-1),
    };
    encode_response(header, &response)
}
