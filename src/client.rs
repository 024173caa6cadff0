//! A small blocking Kafka client for the `sluice` command-line tools: one
//! connection, one request at a time, encoded with the same codec the broker
//! uses. The broker itself only borrows `frame`, to frame its followers'
//! Fetch requests.

use std::io::{Read, Write};
use std::net::{TcpStream, ToSocketAddrs};
use std::time::Duration;

use anyhow::{Context, bail};
use bytes::{Buf, BufMut, Bytes, BytesMut};
use kafka_protocol::messages::{RequestHeader, ResponseHeader};
use kafka_protocol::protocol::{Decodable, Encodable, HeaderVersion, Request, StrBytes};

/// Largest response the tools accept; Fetch is never sent.
const RESPONSE_BYTES_MAX: usize = 64 << 20;
const CLIENT_ID: &str = "sluice-cli";

pub struct Client {
    stream: TcpStream,
    correlation_id: i32,
}

/// Where the correlation id sits in a framed request: after the size, the
/// API key and the version. Lets a caller resend one frame with a new id.
pub const CORRELATION_ID_AT: usize = 8;

/// `request` framed for the wire: size prefix, header, body.
pub fn frame<R: Request>(request: &R, version: i16, correlation_id: i32) -> anyhow::Result<BytesMut> {
    let header = RequestHeader::default()
        .with_request_api_key(R::KEY)
        .with_request_api_version(version)
        .with_correlation_id(correlation_id)
        .with_client_id(Some(StrBytes::from_static_str(CLIENT_ID)));
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

/// A blocking connection to one `HOST:PORT`, with `timeout` on connect,
/// reads and writes, and Nagle off.
pub fn connect_stream(address: &str, timeout: Duration) -> anyhow::Result<TcpStream> {
    let addr = address
        .to_socket_addrs()
        .with_context(|| format!("cannot resolve {address}"))?
        .next()
        .with_context(|| format!("{address} resolves to no address"))?;
    let stream = TcpStream::connect_timeout(&addr, timeout).with_context(|| format!("cannot connect to {address}"))?;
    stream.set_read_timeout(Some(timeout))?;
    stream.set_write_timeout(Some(timeout))?;
    stream.set_nodelay(true)?;
    Ok(stream)
}

impl Client {
    /// Connects to the first reachable broker of a comma-separated `bootstrap` list.
    pub fn connect(bootstrap: &str, timeout: Duration) -> anyhow::Result<Self> {
        let mut last_error = None;
        for one in bootstrap.split(',').map(str::trim).filter(|b| !b.is_empty()) {
            match Self::connect_one(one, timeout) {
                Ok(client) => return Ok(client),
                Err(e) => last_error = Some(e),
            }
        }
        Err(last_error.unwrap_or_else(|| anyhow::anyhow!("no broker address in '{bootstrap}'")))
    }

    fn connect_one(bootstrap: &str, timeout: Duration) -> anyhow::Result<Self> {
        Ok(Self {
            stream: connect_stream(bootstrap, timeout)?,
            correlation_id: 0,
        })
    }

    /// Sends `request` at `version` and waits for its response.
    pub fn send<R: Request>(&mut self, request: &R, version: i16) -> anyhow::Result<R::Response> {
        self.correlation_id += 1;
        let frame = frame(request, version, self.correlation_id)?;
        self.stream.write_all(&frame).context("sending the request")?;

        let mut size = [0u8; 4];
        self.stream.read_exact(&mut size).context("reading the response")?;
        let size = i32::from_be_bytes(size);
        if size < 0 || size as usize > RESPONSE_BYTES_MAX {
            bail!("the broker sent a response of {size} bytes");
        }
        let mut body = vec![0u8; size as usize];
        self.stream.read_exact(&mut body).context("reading the response")?;
        let mut body = Bytes::from(body);
        let response_header = ResponseHeader::decode(&mut body, R::Response::header_version(version))?;
        if response_header.correlation_id != self.correlation_id {
            bail!(
                "response to request {} arrived for {}",
                response_header.correlation_id,
                self.correlation_id
            );
        }
        let response = R::Response::decode(&mut body, version)?;
        if body.has_remaining() {
            bail!("{} bytes left after the response", body.remaining());
        }
        Ok(response)
    }
}
