//! Every advertised API and version through the generated decoder, as the
//! broker decodes a request body. The input is a request frame's API key and
//! version (2 bytes each, as on the wire) followed by the body.
#![no_main]
use bytes::Bytes;
use libfuzzer_sys::fuzz_target;
use sluice::protocol::{SUPPORTED_APIS, decode_any};

fuzz_target!(|data: &[u8]| {
    let [k0, k1, v0, v1, body @ ..] = data else { return };
    let (key, version) = (i16::from_be_bytes([*k0, *k1]), i16::from_be_bytes([*v0, *v1]));
    let Some((api, _, _)) = SUPPORTED_APIS
        .iter()
        .find(|(api, min, max)| *api as i16 == key && (*min..=*max).contains(&version))
    else {
        return;
    };
    decode_any(*api, version, Bytes::copy_from_slice(body));
});
