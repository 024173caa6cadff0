//! One client connection: a reader that frames requests and starts a handler
//! task for each, and a writer that sends the responses strictly in request
//! order. At most `INFLIGHT_REQUESTS_MAX` requests are in flight; past that
//! the reader stops reading and TCP pushes back on the client.

use std::cell::Cell;
use std::io;
use std::os::fd::AsRawFd;
use std::rc::Rc;
use std::time::Duration;

use bytes::{Buf, BytesMut};
use compio::BufResult;
use compio::buf::{IntoInner, IoBufMut};
use compio::io::{AsyncRead, AsyncWrite, AsyncWriteExt};
use compio::net::TcpStream;
use compio::runtime::JoinHandle;
use futures_util::future::{Either, select};
use tracing::debug;

use super::zero_copy::{self, SendMethod, SocketFd, Splicer};
use crate::protocol::{self, Malformed, Part, Response};
use crate::runtime::request_bytes::{self, Charged};

/// Requests of one connection being handled or waiting to be written.
pub const INFLIGHT_REQUESTS_MAX: usize = 128;
const INITIAL_BUFFER_BYTES: usize = 4 * 1024;

type Pending = JoinHandle<Result<Option<Response>, Malformed>>;

/// Counts the connection in the shard's metrics for as long as it lives.
struct ConnectionCounted;

impl ConnectionCounted {
    fn new() -> Self {
        crate::metrics::connection_opened();
        Self
    }
}

impl Drop for ConnectionCounted {
    fn drop(&mut self) {
        crate::metrics::connection_closed();
    }
}

pub struct Limits {
    pub request_max_bytes: usize,
    pub idle_timeout: Duration,
    pub send_method: SendMethod,
}

/// Serves one connection; `client_host` is the peer as Kafka shows it ("/127.0.0.1").
pub async fn serve(stream: TcpStream, client_host: Rc<str>, limits: Limits) {
    let _counted = ConnectionCounted::new();
    let _ = stream.set_nodelay(true);
    let socket = SocketFd(stream.as_raw_fd());
    if limits.send_method == SendMethod::Sendfile
        && let Err(e) = zero_copy::set_nonblocking(socket)
    {
        debug!("cannot make the socket non-blocking: {e}");
        return;
    }
    let (mut reader, writer) = stream.into_split();
    let (tx, rx) = async_channel::bounded::<Pending>(INFLIGHT_REQUESTS_MAX);
    // Requests read but not yet answered: a connection waiting on its own long
    // poll is busy, not idle.
    let in_flight = Rc::new(Cell::new(0usize));
    let writer_task = compio::runtime::spawn(write_loop(
        rx,
        writer,
        socket,
        limits.send_method,
        Rc::clone(&in_flight),
    ));
    let mut buf = BytesMut::with_capacity(INITIAL_BUFFER_BYTES);
    loop {
        let (frame, charged) = match read_frame(&mut reader, &mut buf, &limits, &in_flight).await {
            Ok(Some(read)) => read,
            Ok(None) => break,
            Err(e) => {
                debug!("closing connection: {e}");
                break;
            }
        };
        let host = Rc::clone(&client_host);
        // The frame's bytes count against queued.max.request.bytes until the
        // handler is done with them.
        let pending = compio::runtime::spawn(protocol::handle(frame, host, charged));
        in_flight.set(in_flight.get() + 1);
        if tx.send(pending).await.is_err() {
            break;
        }
    }
    drop(tx);
    let _ = writer_task.await;
}

/// Reads one size-prefixed frame, charged to the shard's request-byte
/// budget from the moment its size is known; `None` at a clean end of stream.
async fn read_frame<R: AsyncRead>(
    reader: &mut R,
    buf: &mut BytesMut,
    limits: &Limits,
    in_flight: &Cell<usize>,
) -> io::Result<Option<(BytesMut, Charged)>> {
    let mut charged: Option<Charged> = None;
    // Bounded: each round consumes bytes from the socket or returns.
    loop {
        if buf.len() >= 4 {
            let size = i32::from_be_bytes(buf[..4].try_into().expect("4 bytes"));
            if size < 0 || size as usize > limits.request_max_bytes {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidData,
                    format!(
                        "request size {size} is outside 0..={} (socket.request.max.bytes)",
                        limits.request_max_bytes
                    ),
                ));
            }
            let needed = 4 + size as usize;
            if charged.is_none() {
                charged = Some(request_bytes::charge(needed).await);
            }
            if buf.len() >= needed {
                let mut frame = buf.split_to(needed);
                frame.advance(4);
                return Ok(Some((frame, charged.take().expect("charged above"))));
            }
            // The whole frame at once: growing it piecemeal reallocates and copies it
            // several times. Reserving is address space, not memory, until bytes arrive.
            buf.reserve(needed - buf.len());
        } else {
            buf.reserve(INITIAL_BUFFER_BYTES);
        }
        let owned = std::mem::take(buf);
        // `uninit()` appends after the bytes already buffered instead of overwriting them.
        let mut read = std::pin::pin!(reader.read(owned.uninit()));
        // Bounded: each round ends in data, or in a timeout with nothing in flight.
        let BufResult(result, back) = loop {
            let idle = std::pin::pin!(compio::time::sleep(limits.idle_timeout));
            match select(read.as_mut(), idle).await {
                Either::Left((done, _)) => break done,
                Either::Right(_) if in_flight.get() > 0 => continue,
                Either::Right(_) => {
                    return Err(io::Error::new(
                        io::ErrorKind::TimedOut,
                        "idle past connections.max.idle.ms",
                    ));
                }
            }
        };
        *buf = back.into_inner();
        if result? == 0 {
            return Ok(None);
        }
    }
}

async fn write_loop<W: AsyncWrite>(
    rx: async_channel::Receiver<Pending>,
    mut writer: W,
    socket: SocketFd,
    send_method: SendMethod,
    in_flight: Rc<Cell<usize>>,
) {
    let mut splicer: Option<Splicer> = None;
    while let Ok(pending) = rx.recv().await {
        let outcome = pending.await;
        in_flight.set(in_flight.get().saturating_sub(1));
        let response = match outcome {
            Ok(Ok(Some(response))) => response,
            Ok(Ok(None)) => continue,
            Ok(Err(Malformed(why))) => {
                debug!("closing connection after a malformed request: {why}");
                break;
            }
            Err(_) => {
                tracing::error!("request handler panicked; closing the connection");
                break;
            }
        };
        if let Err(e) = write_response(&mut writer, &mut splicer, socket, send_method, response).await {
            debug!("write failed: {e}");
            break;
        }
    }
    rx.close();
    // Wake the reader if it is blocked in a read: the connection is over.
    // SAFETY: shutdown on the fd the writer still holds open.
    unsafe { libc::shutdown(socket.0, libc::SHUT_RDWR) };
}

async fn write_response<W: AsyncWrite>(
    writer: &mut W,
    splicer: &mut Option<Splicer>,
    socket: SocketFd,
    send_method: SendMethod,
    response: Response,
) -> io::Result<()> {
    for part in response.parts {
        match part {
            Part::Bytes(bytes) => {
                let BufResult(result, _) = writer.write_all(bytes).await;
                result?;
            }
            Part::File(slice) if send_method == SendMethod::Sendfile => {
                zero_copy::sendfile(&slice.file, slice.position, slice.bytes, socket).await?;
            }
            Part::File(slice) => {
                if splicer.is_none() {
                    *splicer = Some(Splicer::new()?);
                }
                let splicer = splicer.as_ref().expect("made above");
                splicer.send(&slice.file, slice.position, slice.bytes, socket).await?;
            }
        }
    }
    Ok(())
}
