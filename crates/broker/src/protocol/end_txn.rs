//! EndTxn: commit or abort the producer's open transaction. Answered once
//! the decision is stored at the coordinator; the markers follow (`txn`).

use bytes::Bytes;
use kafka_protocol::messages::{EndTxnRequest, EndTxnResponse};

use super::{Malformed, RequestHeader, Response, check_names, decode, encode_response};
use crate::txn;

pub async fn handle(header: &RequestHeader, body: Bytes) -> Result<Response, Malformed> {
    let request: EndTxnRequest = decode(body, header.api_version)?;
    check_names(std::iter::once(&**request.transactional_id))?;
    let producer = (request.producer_id.0, request.producer_epoch);
    let ended = txn::end_txn(request.transactional_id.to_string(), producer, request.committed).await;
    // Version 2 added PRODUCER_FENCED.
    let code = ended
        .err()
        .map_or(0, |code| super::fenced_for(code, header.api_version, 2).code());
    encode_response(header, &EndTxnResponse::default().with_error_code(code))
}
