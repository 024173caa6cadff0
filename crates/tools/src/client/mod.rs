//! A small blocking Kafka client for the `sluice` command-line tools: one
//! connection, one request at a time, encoded with the same codec the broker
//! uses. Requests are framed by `cluster::request`, which the broker's
//! followers use too.

pub mod admin;

use std::io::{Read, Write};
use std::net::{TcpStream, ToSocketAddrs};
use std::time::Duration;

use anyhow::{Context, bail};
use bytes::{Buf, Bytes, BytesMut};
use kafka_protocol::messages::ResponseHeader;
use kafka_protocol::protocol::{Decodable, HeaderVersion, Request};

/// Largest response the tools accept; Fetch is never sent.
const RESPONSE_BYTES_MAX: usize = 64 << 20;
const CLIENT_ID: &str = "sluice-cli";

pub struct Client {
    stream: TcpStream,
    correlation_id: i32,
}

pub use crate::cluster::request::CORRELATION_ID_AT;

/// `request` framed for the wire, as the tools' client id.
pub fn frame<R: Request>(request: &R, version: i16, correlation_id: i32) -> anyhow::Result<BytesMut> {
    crate::cluster::request::frame(request, version, correlation_id, CLIENT_ID)
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
