//! The hand-written Produce parser (v3 to v11) over borrowed bytes. What it
//! accepts must describe record sets inside the body.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let [version, body @ ..] = data else { return };
    let version = 3 + (*version % 9) as i16;
    if let Ok(request) = sluice::protocol::produce::parse(body, version) {
        for topic in &request.topics {
            for partition in &topic.partitions {
                if let Some(records) = &partition.records {
                    assert!(records.end <= body.len(), "record set inside the body");
                    assert!(records.start <= records.end);
                }
            }
        }
    }
});
