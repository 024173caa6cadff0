//! The records of `__transaction_state`, in Kafka's format (TransactionLogKey
//! and TransactionLogValue v0): keyed by transactional id, the value the
//! id's whole state; a null value forgets the id.

use std::collections::BTreeSet;

use bytes::{BufMut, BytesMut};

use super::state::{TxnMetadata, TxnStatus};
use crate::model::TopicPartition;
use crate::wire::{Malformed, Reader, put_array_len, put_str};

const KEY_VERSION: i16 = 0;
const VALUE_VERSION: i16 = 0;

pub fn encode_key(transactional_id: &str) -> Vec<u8> {
    let mut out = BytesMut::with_capacity(4 + transactional_id.len());
    out.put_i16(KEY_VERSION);
    put_str(&mut out, transactional_id, false);
    out.to_vec()
}

pub fn decode_key(bytes: &[u8]) -> Result<String, Malformed> {
    let mut r = Reader::new(bytes);
    if r.i16()? != KEY_VERSION {
        return Err(Malformed("unknown transaction log key version"));
    }
    Ok(r.str(false)?.to_string())
}

pub fn encode_value(m: &TxnMetadata) -> Vec<u8> {
    let mut out = BytesMut::with_capacity(64);
    out.put_i16(VALUE_VERSION);
    out.put_i64(m.producer_id);
    out.put_i16(m.producer_epoch);
    out.put_i32(m.timeout_ms);
    out.put_i8(m.status as i8);
    // Grouped by topic; the set is ordered, so a topic's partitions are adjacent.
    let mut topics: Vec<(&str, Vec<i32>)> = Vec::new();
    for tp in &m.partitions {
        match topics.last_mut() {
            Some((topic, partitions)) if *topic == tp.topic => partitions.push(tp.partition),
            _ => topics.push((&tp.topic, vec![tp.partition])),
        }
    }
    put_array_len(&mut out, topics.len(), false);
    for (topic, partitions) in topics {
        put_str(&mut out, topic, false);
        put_array_len(&mut out, partitions.len(), false);
        for p in partitions {
            out.put_i32(p);
        }
    }
    out.put_i64(m.last_update_ms);
    out.put_i64(m.start_ms);
    out.to_vec()
}

pub fn decode_value(transactional_id: String, bytes: &[u8]) -> Result<TxnMetadata, Malformed> {
    let mut r = Reader::new(bytes);
    if r.i16()? != VALUE_VERSION {
        return Err(Malformed("unknown transaction log value version"));
    }
    let producer_id = r.i64()?;
    let producer_epoch = r.i16()?;
    let timeout_ms = r.i32()?;
    let status = TxnStatus::from_code(r.i8()?).ok_or(Malformed("unknown transaction state"))?;
    let mut partitions = BTreeSet::new();
    // Bounded: `array_len` refuses counts past the bytes left.
    for _ in 0..r.array_len(false)? {
        let topic = r.str(false)?.to_string();
        for _ in 0..r.array_len(false)? {
            partitions.insert(TopicPartition::new(topic.clone(), r.i32()?));
        }
    }
    let last_update_ms = r.i64()?;
    let start_ms = r.i64()?;
    Ok(TxnMetadata {
        transactional_id,
        producer_id,
        previous_producer_id: -1,
        producer_epoch,
        last_producer_epoch: -1,
        timeout_ms,
        status,
        partitions,
        start_ms,
        last_update_ms,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_round_trip_and_truncations_are_malformed() {
        let mut m = TxnMetadata::new("tx-1".into(), 4242, 60_000, 17);
        m.producer_epoch = 3;
        m.status = TxnStatus::Ongoing;
        m.start_ms = 15;
        for (topic, p) in [("a", 0), ("a", 2), ("b", 1)] {
            m.partitions.insert(TopicPartition::new(topic, p));
        }
        let bytes = encode_value(&m);
        assert_eq!(decode_value("tx-1".into(), &bytes).unwrap(), m);
        assert_eq!(decode_key(&encode_key("tx-1")).unwrap(), "tx-1");
        for cut in 0..bytes.len() {
            assert!(decode_value("tx-1".into(), &bytes[..cut]).is_err(), "cut at {cut}");
        }
    }
}
