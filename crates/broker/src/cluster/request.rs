//! Requests this broker sends as a client (a follower's Fetch, ListOffsets
//! and OffsetForLeaderEpoch to its leader, a DescribeQuorum forwarded to the
//! quorum leader), framed with the same codec the broker decodes with. The
//! tools' blocking client frames through here too.

use bytes::{BufMut, Bytes, BytesMut};
use compio::BufResult;
use compio::io::{AsyncReadExt, AsyncWriteExt};
use compio::net::TcpStream;
use kafka_protocol::messages::{RequestHeader, ResponseHeader};
use kafka_protocol::protocol::{Decodable, Encodable, HeaderVersion, Request, StrBytes};

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

/// Sends one request on `stream` and reads its response, refusing one
/// larger than `response_bytes_max`. One request at a time: the
/// correlation id is always 0.
pub async fn call<Q: Request, S: Decodable>(
    stream: &mut TcpStream,
    request: &Q,
    version: i16,
    client_id: &'static str,
    response_bytes_max: usize,
) -> anyhow::Result<S> {
    const CORRELATION_ID: i32 = 0;
    let frame = frame(request, version, CORRELATION_ID, client_id)?;
    let BufResult(written, _) = stream.write_all(frame.to_vec()).await;
    written?;
    let mut body = read_response(stream, response_bytes_max).await?;
    let header = ResponseHeader::decode(&mut body, Q::Response::header_version(version))?;
    anyhow::ensure!(
        header.correlation_id == CORRELATION_ID,
        "a response arrived out of order"
    );
    S::decode(&mut body, version)
}

async fn read_response(stream: &mut TcpStream, response_bytes_max: usize) -> anyhow::Result<Bytes> {
    let BufResult(read, size) = stream.read_exact(vec![0u8; 4]).await;
    read?;
    let size = i32::from_be_bytes(size[..4].try_into().expect("4 bytes"));
    anyhow::ensure!(
        size >= 0 && (size as usize) <= response_bytes_max,
        "the peer sent a response of {size} bytes"
    );
    let BufResult(read, body) = stream.read_exact(vec![0u8; size as usize]).await;
    read?;
    Ok(Bytes::from(body))
}
