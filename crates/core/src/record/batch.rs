use crate::model::ErrorCode;

/// Size of the fixed RecordBatch v2 header, up to and including the record count.
pub const BATCH_HEADER_BYTES: usize = 61;
/// Bytes before `batchLength` is counted: baseOffset (8) + batchLength (4).
pub const LOG_OVERHEAD_BYTES: usize = 12;
/// The CRC32C covers everything from the attributes field to the end.
const CRC_START: usize = 21;
const MAGIC_OFFSET: usize = 16;
const ATTR_OFFSET: usize = 21;
const MAX_TS_OFFSET: usize = 35;

const COMPRESSION_MASK: i16 = 0x07;
const TIMESTAMP_TYPE_BIT: i16 = 0x08;
pub(crate) const TRANSACTIONAL_BIT: i16 = 0x10;
pub(crate) const CONTROL_BIT: i16 = 0x20;

/// The fixed fields of a RecordBatch v2 header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BatchHeader {
    pub base_offset: i64,
    pub batch_length: i32,
    pub leader_epoch: i32,
    pub magic: i8,
    pub crc: u32,
    pub attributes: i16,
    pub last_offset_delta: i32,
    pub base_timestamp: i64,
    pub max_timestamp: i64,
    pub producer_id: i64,
    pub producer_epoch: i16,
    pub base_sequence: i32,
    pub records_count: i32,
}

fn be_i64(b: &[u8], at: usize) -> i64 {
    i64::from_be_bytes(b[at..at + 8].try_into().expect("8 bytes"))
}
fn be_i32(b: &[u8], at: usize) -> i32 {
    i32::from_be_bytes(b[at..at + 4].try_into().expect("4 bytes"))
}
fn be_i16(b: &[u8], at: usize) -> i16 {
    i16::from_be_bytes(b[at..at + 2].try_into().expect("2 bytes"))
}

impl BatchHeader {
    /// Parses the header; `None` if fewer than [`BATCH_HEADER_BYTES`] are given.
    pub fn parse(b: &[u8]) -> Option<Self> {
        if b.len() < BATCH_HEADER_BYTES {
            return None;
        }
        Some(Self {
            base_offset: be_i64(b, 0),
            batch_length: be_i32(b, 8),
            leader_epoch: be_i32(b, 12),
            magic: b[MAGIC_OFFSET] as i8,
            crc: u32::from_be_bytes(b[17..21].try_into().expect("4 bytes")),
            attributes: be_i16(b, ATTR_OFFSET),
            last_offset_delta: be_i32(b, 23),
            base_timestamp: be_i64(b, 27),
            max_timestamp: be_i64(b, MAX_TS_OFFSET),
            producer_id: be_i64(b, 43),
            producer_epoch: be_i16(b, 51),
            base_sequence: be_i32(b, 53),
            records_count: be_i32(b, 57),
        })
    }

    /// Total bytes of the batch on disk, header included.
    pub fn total_bytes(&self) -> usize {
        LOG_OVERHEAD_BYTES + self.batch_length.max(0) as usize
    }

    pub fn last_offset(&self) -> i64 {
        self.base_offset + self.last_offset_delta as i64
    }

    pub fn next_offset(&self) -> i64 {
        self.last_offset() + 1
    }

    pub fn compression(&self) -> i16 {
        self.attributes & COMPRESSION_MASK
    }

    pub fn is_log_append_time(&self) -> bool {
        self.attributes & TIMESTAMP_TYPE_BIT != 0
    }

    pub fn is_transactional(&self) -> bool {
        self.attributes & TRANSACTIONAL_BIT != 0
    }

    pub fn is_control(&self) -> bool {
        self.attributes & CONTROL_BIT != 0
    }

    /// Assigns the batch in `buf` (which this header was parsed from) its
    /// base offset and leader epoch, in the bytes and in this header alike,
    /// so the append path parses a batch once.
    pub fn assign_offset(&mut self, buf: &mut [u8], base_offset: i64, leader_epoch: i32) {
        assign_offset(buf, base_offset, leader_epoch);
        self.base_offset = base_offset;
        self.leader_epoch = leader_epoch;
        debug_assert_eq!(BatchHeader::parse(buf), Some(*self), "header and bytes agree");
    }

    /// As [`stamp_log_append_time`], keeping this header equal to the bytes.
    pub fn stamp_log_append_time(&mut self, buf: &mut [u8], now_ms: i64) {
        stamp_log_append_time(buf, now_ms);
        self.attributes |= TIMESTAMP_TYPE_BIT;
        self.max_timestamp = now_ms;
        self.crc = u32::from_be_bytes(buf[17..21].try_into().expect("4 bytes"));
        debug_assert_eq!(BatchHeader::parse(buf), Some(*self), "header and bytes agree");
    }

    pub fn last_sequence(&self) -> i32 {
        if self.base_sequence < 0 {
            return self.base_sequence;
        }
        // Sequences wrap at i32::MAX, as in Kafka's DefaultRecordBatch.
        let last = self.base_sequence as i64 + self.last_offset_delta as i64;
        (last % (i32::MAX as i64 + 1)) as i32
    }
}

/// Why a batch was refused, with the Kafka error the producer gets.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BatchError {
    pub code: ErrorCode,
    pub message: String,
}

impl BatchError {
    fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        Self {
            code,
            message: message.into(),
        }
    }
}

/// Checks that `buf` holds exactly one well-formed RecordBatch v2 whose CRC32C
/// matches, and which fits in `max_message_bytes`. Produce v3+ requires exactly
/// one batch per partition, as Kafka does.
pub fn validate_single_batch(buf: &[u8], max_message_bytes: usize) -> Result<BatchHeader, BatchError> {
    // An incomplete batch is no batch at all: Kafka 4.4 answers INVALID_RECORD
    // ("exactly one record batch"), and CORRUPT_MESSAGE only for a whole one.
    let header = BatchHeader::parse(buf)
        .ok_or_else(|| BatchError::new(ErrorCode::InvalidRecord, "record set shorter than a batch header"))?;
    if header.magic != 2 {
        return Err(BatchError::new(
            ErrorCode::UnsupportedForMessageFormat,
            format!("record batch magic {} is not supported; only v2", header.magic),
        ));
    }
    if header.batch_length < (BATCH_HEADER_BYTES - LOG_OVERHEAD_BYTES) as i32 {
        return Err(BatchError::new(ErrorCode::CorruptMessage, "batch length is too small"));
    }
    let total = header.total_bytes();
    if total > buf.len() {
        return Err(BatchError::new(ErrorCode::InvalidRecord, "batch is truncated"));
    }
    if total < buf.len() {
        return Err(BatchError::new(
            ErrorCode::InvalidRecord,
            "produce requests of version 3 and above must contain exactly one record batch per partition",
        ));
    }
    if total > max_message_bytes {
        return Err(BatchError::new(
            ErrorCode::MessageTooLarge,
            format!("batch of {total} bytes exceeds max.message.bytes {max_message_bytes}"),
        ));
    }
    if crc32c::crc32c(&buf[CRC_START..total]) != header.crc {
        return Err(BatchError::new(
            ErrorCode::CorruptMessage,
            "record batch CRC32C mismatch",
        ));
    }
    if header.records_count <= 0 || header.last_offset_delta != header.records_count - 1 {
        return Err(BatchError::new(
            ErrorCode::InvalidRecord,
            "record count does not match the batch's last offset delta",
        ));
    }
    if header.compression() > 4 {
        return Err(BatchError::new(
            ErrorCode::UnsupportedCompressionType,
            "unknown compression codec",
        ));
    }
    if header.is_control() {
        return Err(BatchError::new(
            ErrorCode::InvalidRecord,
            "clients may not produce control batches",
        ));
    }
    Ok(header)
}

/// Checks a batch found on disk: header sane and CRC intact. Used by recovery.
pub fn verify_stored_batch(buf: &[u8]) -> Option<BatchHeader> {
    let header = BatchHeader::parse(buf)?;
    if header.magic != 2 || header.batch_length < (BATCH_HEADER_BYTES - LOG_OVERHEAD_BYTES) as i32 {
        return None;
    }
    let total = header.total_bytes();
    if total > buf.len() || header.last_offset_delta < 0 {
        return None;
    }
    (crc32c::crc32c(&buf[CRC_START..total]) == header.crc).then_some(header)
}

/// Writes the broker-assigned base offset and leader epoch into a batch.
/// Neither field is covered by the CRC, so the producer's CRC stays valid.
pub fn assign_offset(buf: &mut [u8], base_offset: i64, leader_epoch: i32) {
    assert!(buf.len() >= BATCH_HEADER_BYTES, "assign_offset on a validated batch");
    buf[0..8].copy_from_slice(&base_offset.to_be_bytes());
    buf[12..16].copy_from_slice(&leader_epoch.to_be_bytes());
}

/// Turns a batch into LogAppendTime with `now_ms` as its max timestamp, as
/// Kafka does for topics with `message.timestamp.type=LogAppendTime`. The
/// attributes are covered by the CRC, so it is recomputed.
pub fn stamp_log_append_time(buf: &mut [u8], now_ms: i64) {
    assert!(buf.len() >= BATCH_HEADER_BYTES, "stamp on a validated batch");
    let attributes = be_i16(buf, ATTR_OFFSET) | TIMESTAMP_TYPE_BIT;
    buf[ATTR_OFFSET..ATTR_OFFSET + 2].copy_from_slice(&attributes.to_be_bytes());
    buf[MAX_TS_OFFSET..MAX_TS_OFFSET + 8].copy_from_slice(&now_ms.to_be_bytes());
    let crc = crc32c::crc32c(&buf[CRC_START..]);
    buf[17..21].copy_from_slice(&crc.to_be_bytes());
}

/// Reads a zig-zag varint (Kafka's record fields); returns (value, bytes used).
pub fn read_varlong(b: &[u8]) -> Option<(i64, usize)> {
    let mut raw: u64 = 0;
    for (i, byte) in b.iter().take(10).enumerate() {
        raw |= ((byte & 0x7f) as u64) << (7 * i);
        if byte & 0x80 == 0 {
            let value = ((raw >> 1) as i64) ^ -((raw & 1) as i64);
            return Some((value, i + 1));
        }
    }
    None
}

/// For an uncompressed batch, the offset and timestamp of the first record
/// whose timestamp is at least `target_ms`. Compressed batches are never
/// decompressed: the caller falls back to the batch's base offset.
pub fn first_offset_at_or_after(batch: &[u8], target_ms: i64) -> Option<(i64, i64)> {
    let header = BatchHeader::parse(batch)?;
    if header.compression() != 0 || header.is_log_append_time() {
        return None;
    }
    let end = header.total_bytes().min(batch.len());
    let mut at = BATCH_HEADER_BYTES;
    for _ in 0..header.records_count.max(0) {
        let (length, n) = read_varlong(batch.get(at..end)?)?;
        let body = at + n;
        // Record: attributes (1 byte), timestampDelta varlong, offsetDelta varint, ...
        let (ts_delta, m) = read_varlong(batch.get(body + 1..end)?)?;
        let (offset_delta, _) = read_varlong(batch.get(body + 1 + m..end)?)?;
        if header.base_timestamp + ts_delta >= target_ms {
            return Some((header.base_offset + offset_delta, header.base_timestamp + ts_delta));
        }
        at = body.checked_add(usize::try_from(length).ok()?)?;
    }
    None
}

#[cfg(test)]
pub mod tests {
    use super::*;

    /// Builds an uncompressed batch of `values` (null keys) with 1 ms between timestamps.
    pub fn build_batch(values: &[&[u8]], base_ts: i64, producer_id: i64, base_seq: i32) -> Vec<u8> {
        let records: Vec<_> = values
            .iter()
            .map(|v| crate::record::builder::Record {
                key: None,
                value: Some(v),
            })
            .collect();
        crate::record::builder::build_batch_spaced(&records, base_ts, 1, producer_id, base_seq).to_vec()
    }

    #[test]
    fn valid_batch_passes_and_offsets_patch_without_breaking_crc() {
        let mut b = build_batch(&[b"a", b"bb", b"ccc"], 1000, -1, -1);
        let h = validate_single_batch(&b, 1 << 20).expect("valid");
        assert_eq!(h.records_count, 3);
        assert_eq!(h.last_offset_delta, 2);
        assign_offset(&mut b, 42, 7);
        let h = verify_stored_batch(&b).expect("still valid after patch");
        assert_eq!(h.base_offset, 42);
        assert_eq!(h.leader_epoch, 7);
        assert_eq!(h.next_offset(), 45);
    }

    #[test]
    fn flipped_bit_is_corrupt_message() {
        let mut b = build_batch(&[b"hello"], 1000, -1, -1);
        let last = b.len() - 2;
        b[last] ^= 0x01;
        let e = validate_single_batch(&b, 1 << 20).unwrap_err();
        assert_eq!(e.code, ErrorCode::CorruptMessage);
        assert!(verify_stored_batch(&b).is_none());
    }

    #[test]
    fn size_limits_and_shape_errors() {
        let b = build_batch(&[&[7u8; 500]], 1000, -1, -1);
        assert_eq!(
            validate_single_batch(&b, 100).unwrap_err().code,
            ErrorCode::MessageTooLarge
        );
        // Incomplete batches are no batch (INVALID_RECORD), as Kafka 4.4 answers.
        assert_eq!(
            validate_single_batch(&b[..30], 1 << 20).unwrap_err().code,
            ErrorCode::InvalidRecord
        );
        assert_eq!(
            validate_single_batch(&b[..b.len() - 1], 1 << 20).unwrap_err().code,
            ErrorCode::InvalidRecord
        );
        let mut two = b.clone();
        two.extend_from_slice(&b);
        assert_eq!(
            validate_single_batch(&two, 1 << 20).unwrap_err().code,
            ErrorCode::InvalidRecord
        );
        let mut old = b.clone();
        old[MAGIC_OFFSET] = 1;
        assert_eq!(
            validate_single_batch(&old, 1 << 20).unwrap_err().code,
            ErrorCode::UnsupportedForMessageFormat
        );
    }

    #[test]
    fn log_append_time_restamps_and_keeps_crc_valid() {
        let mut b = build_batch(&[b"x"], 1000, -1, -1);
        stamp_log_append_time(&mut b, 5555);
        let h = verify_stored_batch(&b).expect("crc recomputed");
        assert!(h.is_log_append_time());
        assert_eq!(h.max_timestamp, 5555);
    }

    #[test]
    fn finds_first_record_by_timestamp() {
        let mut b = build_batch(&[b"a", b"b", b"c", b"d"], 1000, -1, -1);
        assign_offset(&mut b, 100, 0);
        assert_eq!(first_offset_at_or_after(&b, 0), Some((100, 1000)));
        assert_eq!(first_offset_at_or_after(&b, 1002), Some((102, 1002)));
        assert_eq!(first_offset_at_or_after(&b, 1003), Some((103, 1003)));
        assert_eq!(first_offset_at_or_after(&b, 1004), None);
    }

    proptest::proptest! {
        #[test]
        fn validator_never_panics_on_arbitrary_bytes(bytes in proptest::collection::vec(proptest::num::u8::ANY, 0..300)) {
            let _ = validate_single_batch(&bytes, 1 << 20);
            let _ = verify_stored_batch(&bytes);
            let _ = first_offset_at_or_after(&bytes, 0);
        }

        #[test]
        fn any_single_byte_flip_is_detected(pos in 21usize..80, bit in 0u8..8) {
            let mut b = build_batch(&[b"0123456789", b"abcdefghij"], 1000, -1, -1);
            let pos = pos.min(b.len() - 1);
            b[pos] ^= 1 << bit;
            proptest::prop_assert!(validate_single_batch(&b, 1 << 20).is_err());
        }
    }
}
