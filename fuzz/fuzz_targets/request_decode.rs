//! Every advertised API and version through the generated decoder, as the
//! broker decodes a request body. The first three bytes pick the API and version.
#![no_main]
use bytes::Bytes;
use libfuzzer_sys::fuzz_target;
use sluice::protocol::{SUPPORTED_APIS, decode_any};

fuzz_target!(|data: &[u8]| {
    let [api, version, flexible_pick, body @ ..] = data else { return };
    let (key, min, max) = SUPPORTED_APIS[*api as usize % SUPPORTED_APIS.len()];
    let span = (max - min + 1) as u16;
    let version = min + ((u16::from(*version) + u16::from(*flexible_pick)) % span) as i16;
    decode_any(key, version, Bytes::copy_from_slice(body));
});
