//! Requests this broker sends as a client (a follower's Fetch, ListOffsets
//! and OffsetForLeaderEpoch to its leader), framed with the same codec the
//! broker decodes with. The tools' blocking client frames through here too.

use bytes::{BufMut, BytesMut};
use kafka_protocol::messages::RequestHeader;
use kafka_protocol::protocol::{Encodable, Request, StrBytes};

/// Where the correlation id sits in a framed request: after the size, the
/// API key and the version. Lets a caller resend one frame with a new id.
pub const CORRELATION_ID_AT: usize = 8;

/// `request` framed for the wire: size prefix, header, body.
pub fn frame<R: Request>(
    request: &R,
    version: i16,
    correlation_id: i32,
    client_id: &'static str,
) -> anyhow::Result<BytesMut> {
    let header = RequestHeader::default()
        .with_request_api_key(R::KEY)
        .with_request_api_version(version)
        .with_correlation_id(correlation_id)
        .with_client_id(Some(StrBytes::from_static_str(client_id)));
    let mut frame = BytesMut::new();
    frame.put_i32(0);
    header.encode(&mut frame, R::header_version(version))?;
    request.encode(&mut frame, version)?;
    let size = (frame.len() - 4) as i32;
    frame[..4].copy_from_slice(&size.to_be_bytes());
    debug_assert_eq!(
        frame[CORRELATION_ID_AT..CORRELATION_ID_AT + 4],
        correlation_id.to_be_bytes()
    );
    Ok(frame)
}
