//! The `__consumer_offsets` decoders a coordinator runs when it loads a
//! partition: records out of a batch, then keys and values. Whatever decodes
//! must encode back without a panic.
#![no_main]
use libfuzzer_sys::fuzz_target;
use sluice::group::records::{decode_group, decode_key, decode_offset, encode_group, encode_key, encode_offset};
use sluice::record::builder::read_records;

fuzz_target!(|data: &[u8]| {
    let [which, rest @ ..] = data else { return };
    match which % 4 {
        0 => {
            if let Ok(key) = decode_key(rest) {
                let _ = encode_key(&key);
            }
        }
        1 => {
            if let Ok(value) = decode_offset(rest) {
                let _ = encode_offset(&value);
            }
        }
        2 => {
            if let Ok(value) = decode_group(rest) {
                let _ = encode_group(&value);
            }
        }
        _ => {
            if let Some(records) = read_records(rest) {
                for r in records {
                    if let Some(key) = r.key {
                        let _ = decode_key(key);
                    }
                    if let Some(value) = r.value {
                        let _ = decode_offset(value);
                        let _ = decode_group(value);
                    }
                }
            }
        }
    }
});
