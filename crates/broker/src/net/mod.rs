//! Sockets: one SO_REUSEPORT listener per shard, request framing, ordered
//! responses, and the zero-copy path for record bytes.

pub mod admission;
pub mod connection;
pub mod zero_copy;

use std::io;
use std::net::SocketAddr;

/// Binds a listening socket with SO_REUSEPORT, so every shard can hold one on
/// the same address and the kernel spreads connections across them.
pub fn bind_reuseport(addr: SocketAddr) -> io::Result<std::net::TcpListener> {
    let domain = socket2::Domain::for_address(addr);
    let socket = socket2::Socket::new(domain, socket2::Type::STREAM, Some(socket2::Protocol::TCP))?;
    socket.set_reuse_address(true)?;
    socket.set_reuse_port(true)?;
    socket.bind(&addr.into())?;
    socket.listen(1024)?;
    Ok(socket.into())
}
