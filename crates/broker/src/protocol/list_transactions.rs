//! ListTransactions: the transactional ids this broker coordinates, with
//! Kafka's filters: states, producer ids, running longer than a duration
//! (v1), and an id pattern (v2, KIP-1152). The admin client asks every broker.

use bytes::Bytes;
use kafka_protocol::messages::list_transactions_response::TransactionState;
use kafka_protocol::messages::{ListTransactionsRequest, ListTransactionsResponse};

use super::{Malformed, RequestHeader, Response, check_names, decode, encode_response, str_bytes};
use crate::model::ErrorCode;
use crate::txn::{self, ListFilter, TxnStatus};

/// Filters one request may carry, of each kind.
const FILTERS_MAX: usize = 10_000;
/// The compiled size a pattern may reach: a client's regex is bounded like any other input.
const PATTERN_BYTES_MAX: usize = 1 << 20;

pub async fn handle(header: &RequestHeader, body: Bytes) -> Result<Response, Malformed> {
    let request: ListTransactionsRequest = decode(body, header.api_version)?;
    if request.state_filters.len() > FILTERS_MAX || request.producer_id_filters.len() > FILTERS_MAX {
        return Err(Malformed("too many filters in ListTransactions"));
    }
    check_names(
        request
            .state_filters
            .iter()
            .map(|s| &**s)
            .chain(request.transactional_id_pattern.as_deref()),
    )?;
    let mut response = ListTransactionsResponse::default();
    let mut states = Vec::new();
    for name in &request.state_filters {
        match TxnStatus::from_name(name) {
            Some(state) => states.push(state),
            None => response.unknown_state_filters.push(name.clone()),
        }
    }
    // An unknown state matches nothing: with only unknown ones, nothing is listed.
    let nothing_matches = states.is_empty() && !request.state_filters.is_empty();
    let pattern = match request.transactional_id_pattern.as_deref().filter(|p| !p.is_empty()) {
        None => None,
        Some(p) => match regex::RegexBuilder::new(&format!("^(?:{p})$"))
            .size_limit(PATTERN_BYTES_MAX)
            .build()
        {
            Ok(regex) => Some(regex),
            Err(_) => {
                let response = response.with_error_code(ErrorCode::InvalidRegularExpression.code());
                return encode_response(header, &response);
            }
        },
    };
    let filter = ListFilter {
        states,
        producer_ids: request.producer_id_filters.iter().map(|id| id.0).collect(),
        duration_ms: request.duration_filter,
        pattern,
    };
    let listed = if nothing_matches {
        Vec::new()
    } else {
        txn::list(filter).await
    };
    response.transaction_states = listed
        .into_iter()
        .map(|m| {
            TransactionState::default()
                .with_transactional_id(str_bytes(m.transactional_id).into())
                .with_producer_id(m.producer_id.into())
                .with_transaction_state(str_bytes(m.status.name()))
        })
        .collect();
    encode_response(header, &response)
}
