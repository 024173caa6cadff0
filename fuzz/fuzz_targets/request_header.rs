//! The request header decoder: whatever the bytes, an answer or an error, never a panic,
//! and a body offset inside the frame.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|frame: &[u8]| {
    if let Ok((_header, body_start)) = sluice::protocol::parse_header(frame) {
        assert!(body_start <= frame.len(), "the body starts inside the frame");
    }
});
