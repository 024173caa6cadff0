//! UnregisterBroker (KIP-500's decommissioning step): removes a broker that
//! holds no replica any more from the cluster metadata, so clients and
//! placement stop seeing it. A node that starts again registers anew.

use bytes::Bytes;
use kafka_protocol::messages::{UnregisterBrokerRequest, UnregisterBrokerResponse};

use super::{Malformed, RequestHeader, Response, decode, encode_response, str_bytes};
use crate::cluster::controller;
use crate::cluster::quorum::Record;

pub async fn handle(header: &RequestHeader, body: Bytes) -> Result<Response, Malformed> {
    let request: UnregisterBrokerRequest = decode(body, header.api_version)?;
    let record = Record::UnregisterBroker {
        broker_id: request.broker_id.0,
    };
    let outcome = controller::propose_records(vec![record]).await;
    let mut response = UnregisterBrokerResponse::default();
    if let Some(Err(e)) = outcome.into_iter().next() {
        response.error_code = e.code.code();
        response.error_message = Some(str_bytes(e.message));
    }
    encode_response(header, &response)
}
