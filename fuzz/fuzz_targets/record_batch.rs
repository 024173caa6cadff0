//! The RecordBatch v2 validator of the produce path. Half the inputs get a
//! correct CRC32C patched in, so the checks behind the CRC are reached too.
#![no_main]
use libfuzzer_sys::fuzz_target;
use sluice::record::{BATCH_HEADER_BYTES, validate_single_batch};

/// Where the CRC sits in a v2 batch header, and where the bytes it covers begin.
const CRC_AT: usize = 17;
const CRC_FROM: usize = 21;

fuzz_target!(|data: &[u8]| {
    let [patch, rest @ ..] = data else { return };
    let mut buf = rest.to_vec();
    if patch & 1 == 1 && buf.len() >= BATCH_HEADER_BYTES {
        let crc = crc32c::crc32c(&buf[CRC_FROM..]);
        buf[CRC_AT..CRC_FROM].copy_from_slice(&crc.to_be_bytes());
    }
    if let Ok(header) = validate_single_batch(&buf, 1 << 20) {
        assert_eq!(
            header.total_bytes(),
            buf.len(),
            "a valid batch is exactly the record set"
        );
    }
});
