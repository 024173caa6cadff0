//! Control batches: the COMMIT and ABORT markers that end a transaction on
//! each of its partitions. A marker is a transactional, control batch of one
//! record from the transaction's producer id and epoch, with no sequence;
//! its key is (version 0, type) and its value (version 0, coordinator epoch),
//! as Kafka writes them. Clients skip control batches: only the broker
//! writes them, and it reads back just the type.

use bytes::BytesMut;

use super::builder::{Producer, Record, encode_batch, read_records};
use super::{BatchHeader, CONTROL_BIT, TRANSACTIONAL_BIT};

const VERSION: i16 = 0;
const TYPE_ABORT: i16 = 0;
const TYPE_COMMIT: i16 = 1;

/// How a transaction ended on a partition.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Marker {
    Commit,
    Abort,
}

/// A marker batch, base offset 0 (the log assigns it), stamped `timestamp_ms`.
pub fn build_marker(
    marker: Marker,
    producer_id: i64,
    producer_epoch: i16,
    coordinator_epoch: i32,
    timestamp_ms: i64,
) -> BytesMut {
    assert!(
        producer_id >= 0 && producer_epoch >= 0,
        "a marker ends some producer's transaction"
    );
    let kind = match marker {
        Marker::Commit => TYPE_COMMIT,
        Marker::Abort => TYPE_ABORT,
    };
    let mut key = [0u8; 4];
    key[..2].copy_from_slice(&VERSION.to_be_bytes());
    key[2..].copy_from_slice(&kind.to_be_bytes());
    let mut value = [0u8; 6];
    value[..2].copy_from_slice(&VERSION.to_be_bytes());
    value[2..].copy_from_slice(&coordinator_epoch.to_be_bytes());
    let record = Record {
        key: Some(&key),
        value: Some(&value),
    };
    let producer = Producer {
        id: producer_id,
        epoch: producer_epoch,
        base_sequence: -1,
    };
    encode_batch(&[record], timestamp_ms, 0, producer, TRANSACTIONAL_BIT | CONTROL_BIT)
}

/// What a stored control batch says, and the epoch of the coordinator that
/// wrote it: `None` for a batch that is not a transaction marker (not
/// control, a control type other than commit and abort, or malformed).
pub fn read_marker(batch: &[u8]) -> Option<(Marker, i32)> {
    let header = BatchHeader::parse(batch)?;
    if !header.is_control() || header.records_count != 1 {
        return None;
    }
    let records = read_records(batch)?;
    let record = records.first()?;
    let (key, value) = (record.key?, record.value?);
    if key.len() < 4 || value.len() < 6 {
        return None;
    }
    let marker = match i16::from_be_bytes([key[2], key[3]]) {
        TYPE_COMMIT => Marker::Commit,
        TYPE_ABORT => Marker::Abort,
        _ => return None,
    };
    Some((marker, i32::from_be_bytes([value[2], value[3], value[4], value[5]])))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::record::verify_stored_batch;

    #[test]
    fn markers_read_back_and_are_well_formed_control_batches() {
        for marker in [Marker::Commit, Marker::Abort] {
            let batch = build_marker(marker, 42, 3, 7, 1_000);
            let header = verify_stored_batch(&batch).expect("a valid batch");
            assert!(header.is_control() && header.is_transactional());
            assert_eq!(
                (header.producer_id, header.producer_epoch, header.base_sequence),
                (42, 3, -1)
            );
            assert_eq!(header.records_count, 1);
            assert_eq!(read_marker(&batch), Some((marker, 7)));
        }
        let data = super::super::builder::build_batch(&[Record { key: None, value: None }], 0, 1, 0);
        assert_eq!(read_marker(&data), None);
    }
}
