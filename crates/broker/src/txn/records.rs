//! The records of `__transaction_state`, in Kafka's format (TransactionLogKey
//! v0 and TransactionLogValue v1, which reads v0 too): keyed by
//! transactional id, the value the id's whole state; a null value forgets
//! the id. Version 1 is flexible: the previous and next producer ids and
//! the client's transaction version are tagged fields, written when they
//! differ from their defaults.

use std::collections::BTreeSet;

use bytes::{BufMut, BytesMut};

use super::state::{TxnMetadata, TxnStatus};
use crate::model::TopicPartition;
use crate::wire::{Malformed, Reader, put_array_len, put_str, put_tagged_fields};

const KEY_VERSION: i16 = 0;
/// Version 1: flexible, with tagged fields.
const VALUE_VERSION: i16 = 1;
const TAG_PREVIOUS_PRODUCER_ID: u32 = 0;
const TAG_NEXT_PRODUCER_ID: u32 = 1;
const TAG_CLIENT_VERSION: u32 = 2;

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
    put_array_len(&mut out, topics.len(), true);
    for (topic, partitions) in topics {
        put_str(&mut out, topic, true);
        put_array_len(&mut out, partitions.len(), true);
        for p in partitions {
            out.put_i32(p);
        }
        put_tagged_fields(&mut out, &[]);
    }
    out.put_i64(m.last_update_ms);
    out.put_i64(m.start_ms);
    let (previous, next, version) = (
        m.previous_producer_id.to_be_bytes(),
        m.next_producer_id.to_be_bytes(),
        m.client_version.to_be_bytes(),
    );
    let tagged = [
        (TAG_PREVIOUS_PRODUCER_ID, &previous[..], m.previous_producer_id != -1),
        (TAG_NEXT_PRODUCER_ID, &next[..], m.next_producer_id != -1),
        (TAG_CLIENT_VERSION, &version[..], m.client_version != 0),
    ];
    let fields: Vec<(u32, &[u8])> = tagged
        .into_iter()
        .filter(|(_, _, set)| *set)
        .map(|(tag, bytes, _)| (tag, bytes))
        .collect();
    put_tagged_fields(&mut out, &fields);
    out.to_vec()
}

pub fn decode_value(transactional_id: String, bytes: &[u8]) -> Result<TxnMetadata, Malformed> {
    let mut r = Reader::new(bytes);
    let flexible = match r.i16()? {
        0 => false,
        1 => true,
        _ => return Err(Malformed("unknown transaction log value version")),
    };
    let producer_id = r.i64()?;
    let producer_epoch = r.i16()?;
    let timeout_ms = r.i32()?;
    let status = TxnStatus::from_code(r.i8()?).ok_or(Malformed("unknown transaction state"))?;
    let mut partitions = BTreeSet::new();
    // Bounded: `array_len` refuses counts past the bytes left.
    for _ in 0..r.array_len(flexible)? {
        let topic = r.str(flexible)?.to_string();
        for _ in 0..r.array_len(flexible)? {
            partitions.insert(TopicPartition::new(topic.clone(), r.i32()?));
        }
        if flexible {
            r.skip_tagged_fields()?;
        }
    }
    let last_update_ms = r.i64()?;
    let start_ms = r.i64()?;
    let mut m = TxnMetadata {
        transactional_id,
        producer_id,
        previous_producer_id: -1,
        producer_epoch,
        last_producer_epoch: -1,
        next_producer_id: -1,
        client_version: 0,
        timeout_ms,
        status,
        partitions,
        start_ms,
        last_update_ms,
    };
    if flexible {
        r.tagged_fields(|tag, bytes| {
            let wrong = Malformed("a tagged field of the wrong size");
            match tag {
                TAG_PREVIOUS_PRODUCER_ID => {
                    m.previous_producer_id = i64::from_be_bytes(bytes.try_into().map_err(|_| wrong)?)
                }
                TAG_NEXT_PRODUCER_ID => m.next_producer_id = i64::from_be_bytes(bytes.try_into().map_err(|_| wrong)?),
                TAG_CLIENT_VERSION => m.client_version = i16::from_be_bytes(bytes.try_into().map_err(|_| wrong)?),
                _ => {} // a later version's: ignored, as Kafka's readers do
            }
            Ok(())
        })?;
    }
    Ok(m)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_round_trip_and_truncations_are_malformed() {
        let mut m = TxnMetadata::new("tx-1".into(), 4242, 60_000, 17);
        m.producer_epoch = 3;
        m.previous_producer_id = 4000;
        m.client_version = 2;
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
        m.next_producer_id = 5000;
        assert_eq!(decode_value("tx-1".into(), &encode_value(&m)).unwrap(), m);
    }

    #[test]
    fn version_0_values_still_read() {
        // Kafka's TransactionLogValue v0 of an Ongoing id with one partition.
        let mut v0 = vec![0, 0];
        v0.extend_from_slice(&4242i64.to_be_bytes());
        v0.extend_from_slice(&3i16.to_be_bytes());
        v0.extend_from_slice(&60_000i32.to_be_bytes());
        v0.push(1);
        v0.extend_from_slice(&1i32.to_be_bytes());
        v0.extend_from_slice(&[0, 1, b'a']);
        v0.extend_from_slice(&1i32.to_be_bytes());
        v0.extend_from_slice(&2i32.to_be_bytes());
        v0.extend_from_slice(&17i64.to_be_bytes());
        v0.extend_from_slice(&15i64.to_be_bytes());
        let m = decode_value("tx-1".into(), &v0).unwrap();
        assert_eq!(
            (m.producer_id, m.producer_epoch, m.status),
            (4242, 3, TxnStatus::Ongoing)
        );
        assert_eq!(m.partitions.iter().collect::<Vec<_>>(), [&TopicPartition::new("a", 2)]);
        assert_eq!((m.client_version, m.next_producer_id), (0, -1));
    }
}
