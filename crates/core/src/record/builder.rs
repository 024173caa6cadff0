//! Building and reading uncompressed batches on the broker's own behalf: the
//! group coordinator writes `__consumer_offsets` records with these and reads
//! them back at start-up. Producer batches are never rebuilt.

use bytes::{BufMut, BytesMut};

use super::{BATCH_HEADER_BYTES, BatchHeader, read_varlong};

/// One record's key and value; `None` is Kafka's null (a value of null is a tombstone).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Record<'a> {
    pub key: Option<&'a [u8]>,
    pub value: Option<&'a [u8]>,
}

pub fn put_varint(out: &mut impl BufMut, v: i64) {
    let mut zigzag = ((v << 1) ^ (v >> 63)) as u64;
    while zigzag >= 0x80 {
        out.put_u8((zigzag as u8) | 0x80);
        zigzag >>= 7;
    }
    out.put_u8(zigzag as u8);
}

fn put_nullable(out: &mut Vec<u8>, bytes: Option<&[u8]>) {
    match bytes {
        Some(b) => {
            put_varint(out, b.len() as i64);
            out.extend_from_slice(b);
        }
        None => put_varint(out, -1),
    }
}

/// An uncompressed RecordBatch v2 holding `records`, all stamped `timestamp_ms`,
/// with base offset 0 (the log assigns the real one) and a valid CRC32C.
pub fn build_batch(records: &[Record], timestamp_ms: i64, producer_id: i64, base_sequence: i32) -> BytesMut {
    build_batch_spaced(records, timestamp_ms, 0, producer_id, base_sequence)
}

/// As [`build_batch`], with record `i` stamped `base_timestamp_ms + i * step_ms`.
pub fn build_batch_spaced(
    records: &[Record],
    base_timestamp_ms: i64,
    step_ms: i64,
    producer_id: i64,
    base_sequence: i32,
) -> BytesMut {
    let producer = Producer {
        id: producer_id,
        epoch: if producer_id >= 0 { 0 } else { -1 },
        base_sequence,
    };
    encode_batch(records, base_timestamp_ms, step_ms, producer, 0)
}

/// Who a batch is from, as its header says.
#[derive(Debug, Clone, Copy)]
pub struct Producer {
    pub id: i64,
    pub epoch: i16,
    pub base_sequence: i32,
}

/// As [`build_batch`], a transactional batch of `producer`'s: how a
/// coordinator stores what a producer writes in its transaction.
pub fn build_txn_batch(records: &[Record], timestamp_ms: i64, producer: Producer) -> BytesMut {
    encode_batch(records, timestamp_ms, 0, producer, super::batch::TRANSACTIONAL_BIT)
}

/// An uncompressed batch with the given header `attributes` (the codec bits must be 0).
pub(crate) fn encode_batch(
    records: &[Record],
    base_timestamp_ms: i64,
    step_ms: i64,
    producer: Producer,
    attributes: i16,
) -> BytesMut {
    assert!(!records.is_empty(), "a batch holds at least one record");
    assert_eq!(attributes & 0x07, 0, "the broker's own batches are uncompressed");
    let mut body = Vec::new();
    let mut record = Vec::new();
    for (i, r) in records.iter().enumerate() {
        record.clear();
        record.push(0); // attributes
        put_varint(&mut record, i as i64 * step_ms); // timestamp delta
        put_varint(&mut record, i as i64); // offset delta
        put_nullable(&mut record, r.key);
        put_nullable(&mut record, r.value);
        put_varint(&mut record, 0); // no headers
        put_varint(&mut body, record.len() as i64);
        body.extend_from_slice(&record);
    }
    let count = records.len() as i32;
    let mut b = BytesMut::with_capacity(BATCH_HEADER_BYTES + body.len());
    b.put_i64(0); // base offset
    b.put_i32((BATCH_HEADER_BYTES - super::LOG_OVERHEAD_BYTES + body.len()) as i32);
    b.put_i32(-1); // partition leader epoch
    b.put_u8(2); // magic
    b.put_u32(0); // crc, set below
    b.put_i16(attributes);
    b.put_i32(count - 1);
    b.put_i64(base_timestamp_ms);
    b.put_i64(base_timestamp_ms + (count as i64 - 1) * step_ms);
    b.put_i64(producer.id);
    b.put_i16(producer.epoch);
    b.put_i32(producer.base_sequence);
    b.put_i32(count);
    b.put_slice(&body);
    let crc = crc32c::crc32c(&b[21..]);
    b[17..21].copy_from_slice(&crc.to_be_bytes());
    b
}

/// A record read back from an uncompressed batch, with its absolute offset.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StoredRecord<'a> {
    pub offset: i64,
    pub key: Option<&'a [u8]>,
    pub value: Option<&'a [u8]>,
}

fn read_nullable<'a>(b: &'a [u8], at: &mut usize) -> Option<Option<&'a [u8]>> {
    let (len, n) = read_varlong(b.get(*at..)?)?;
    *at += n;
    if len < 0 {
        return Some(None);
    }
    let end = at.checked_add(usize::try_from(len).ok()?)?;
    let bytes = b.get(*at..end)?;
    *at = end;
    Some(Some(bytes))
}

/// The records of one stored, uncompressed batch. `None` when the batch is
/// compressed or malformed: the caller decides whether that is corruption.
pub fn read_records(batch: &[u8]) -> Option<Vec<StoredRecord<'_>>> {
    let header = BatchHeader::parse(batch)?;
    if header.compression() != 0 {
        return None;
    }
    let end = header.total_bytes();
    let batch = batch.get(..end)?;
    // Bounded by the record count, which the batch length bounds in turn.
    let count = usize::try_from(header.records_count).ok()?;
    if count > batch.len() {
        return None;
    }
    let mut records = Vec::with_capacity(count);
    let mut at = BATCH_HEADER_BYTES;
    for _ in 0..count {
        let (length, n) = read_varlong(batch.get(at..)?)?;
        let body_start = at + n;
        let next = body_start.checked_add(usize::try_from(length).ok()?)?;
        let body = batch.get(body_start..next)?;
        let mut p = 1; // attributes
        let (_, m) = read_varlong(body.get(p..)?)?; // timestamp delta
        p += m;
        let (offset_delta, m) = read_varlong(body.get(p..)?)?;
        p += m;
        let key = read_nullable(body, &mut p)?;
        let value = read_nullable(body, &mut p)?;
        records.push(StoredRecord {
            // A corrupt delta must not overflow: the batch is malformed.
            offset: header.base_offset.checked_add(offset_delta)?,
            key,
            value,
        });
        at = next;
    }
    Some(records)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::record::{assign_offset, validate_single_batch, verify_stored_batch};

    #[test]
    fn an_offset_delta_that_overflows_is_malformed() {
        let mut b = build_batch(&[Record { key: None, value: None }], 0, -1, -1);
        assign_offset(&mut b, i64::MAX - 1, 0);
        let mut longer = b.to_vec();
        // Offset delta of the only record: its third varint (after length,
        // attributes, timestamp delta); 0x7e is delta 63, past i64::MAX.
        longer[BATCH_HEADER_BYTES + 3] = 0x7e;
        assert!(read_records(&longer).is_none());
    }

    #[test]
    fn built_batches_validate_and_read_back() {
        let records = [
            Record {
                key: Some(b"k1"),
                value: Some(b"v1"),
            },
            Record {
                key: Some(b"k2"),
                value: None,
            },
            Record {
                key: None,
                value: Some(&[7u8; 300]),
            },
        ];
        let mut b = build_batch(&records, 1234, -1, -1);
        let header = validate_single_batch(&b, 1 << 20).expect("valid batch");
        assert_eq!(header.records_count, 3);
        assign_offset(&mut b, 100, 0);
        assert!(verify_stored_batch(&b).is_some());
        let read = read_records(&b).expect("readable");
        assert_eq!(read.len(), 3);
        assert_eq!(
            (read[0].offset, read[0].key, read[0].value),
            (100, Some(&b"k1"[..]), Some(&b"v1"[..]))
        );
        assert_eq!((read[1].offset, read[1].value), (101, None));
        assert_eq!((read[2].key, read[2].value.map(<[u8]>::len)), (None, Some(300)));
    }

    #[test]
    fn truncated_batches_read_as_none() {
        let b = build_batch(
            &[Record {
                key: Some(b"k"),
                value: Some(b"value"),
            }],
            1,
            -1,
            -1,
        );
        for cut in 0..b.len() {
            assert!(read_records(&b[..cut]).is_none(), "cut at {cut}");
        }
    }
}
