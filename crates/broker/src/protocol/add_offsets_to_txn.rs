//! AddOffsetsToTxn: the producer's transaction will commit offsets of a
//! group (TxnOffsetCommit, sent to the group's coordinator next), so the
//! group's partition of `__consumer_offsets` joins the transaction.

use bytes::Bytes;
use kafka_protocol::messages::{AddOffsetsToTxnRequest, AddOffsetsToTxnResponse};

use super::{Malformed, RequestHeader, Response, check_names, decode, encode_response};
use crate::txn;

pub async fn handle(header: &RequestHeader, body: Bytes) -> Result<Response, Malformed> {
    let request: AddOffsetsToTxnRequest = decode(body, header.api_version)?;
    check_names([&*request.transactional_id, &*request.group_id.0])?;
    let producer = (request.producer_id.0, request.producer_epoch);
    let added = txn::add_offsets(
        request.transactional_id.to_string(),
        producer,
        request.group_id.to_string(),
    )
    .await;
    // Version 2 added PRODUCER_FENCED.
    let code = added
        .err()
        .map_or(0, |code| super::fenced_for(code, header.api_version, 2).code());
    encode_response(header, &AddOffsetsToTxnResponse::default().with_error_code(code))
}
