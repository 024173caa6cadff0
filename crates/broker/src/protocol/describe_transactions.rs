//! DescribeTransactions: each transactional id's state at its coordinator
//! (the admin client sends each id to the broker FindCoordinator named).

use bytes::Bytes;
use kafka_protocol::messages::describe_transactions_response::{TopicData, TransactionState};
use kafka_protocol::messages::{DescribeTransactionsRequest, DescribeTransactionsResponse, TopicName, TransactionalId};

use super::{Malformed, RequestHeader, Response, check_names, decode, encode_response, str_bytes};
use crate::txn::{self, TxnMetadata};

/// Ids one request may ask about.
const IDS_PER_REQUEST_MAX: usize = 10_000;

pub async fn handle(header: &RequestHeader, body: Bytes) -> Result<Response, Malformed> {
    let request: DescribeTransactionsRequest = decode(body, header.api_version)?;
    if request.transactional_ids.len() > IDS_PER_REQUEST_MAX {
        return Err(Malformed("too many transactional ids in DescribeTransactions"));
    }
    check_names(request.transactional_ids.iter().map(|id| &***id))?;
    let mut states = Vec::with_capacity(request.transactional_ids.len());
    for id in request.transactional_ids {
        let state = match txn::describe(id.to_string()).await {
            Ok(meta) => described(id, &meta),
            Err(code) => TransactionState::default()
                .with_transactional_id(id)
                .with_error_code(code.code()),
        };
        states.push(state);
    }
    encode_response(
        header,
        &DescribeTransactionsResponse::default().with_transaction_states(states),
    )
}

fn described(id: TransactionalId, meta: &TxnMetadata) -> TransactionState {
    let mut topics: Vec<TopicData> = Vec::new();
    // The partition set is ordered by topic, so one pass groups it.
    for tp in &meta.partitions {
        match topics.last_mut() {
            Some(t) if *t.topic.0 == tp.topic => t.partitions.push(tp.partition),
            _ => topics.push(
                TopicData::default()
                    .with_topic(TopicName(str_bytes(tp.topic.clone())))
                    .with_partitions(vec![tp.partition]),
            ),
        }
    }
    TransactionState::default()
        .with_transactional_id(id)
        .with_transaction_state(str_bytes(meta.status.name()))
        .with_transaction_timeout_ms(meta.timeout_ms)
        .with_transaction_start_time_ms(meta.start_ms)
        .with_producer_id(meta.producer_id.into())
        .with_producer_epoch(meta.producer_epoch)
        .with_topics(topics)
}
