//! Segment recovery at start-up: a `.log` file of arbitrary bytes (a torn or
//! corrupt tail, garbage) must open, with everything kept being whole batches.
#![no_main]
use libfuzzer_sys::fuzz_target;
use sluice::storage::segment::{Segment, segment_file_name};

fuzz_target!(|data: &[u8]| {
    let dir = tempfile::tempdir().expect("temp dir");
    std::fs::write(dir.path().join(segment_file_name(0, "log")), data).expect("write segment");
    if let Ok((segment, _stats)) = Segment::open(dir.path(), 0, 0, 4096) {
        assert!(
            segment.readable_bytes <= data.len() as u64,
            "recovery keeps only bytes that exist"
        );
        assert!(segment.next_offset >= segment.base_offset);
    }
});
