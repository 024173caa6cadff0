//! Record bytes from a segment file to a socket without entering user space,
//! by one of two methods (`fetch.send.method`):
//! - `splice`: io_uring `splice` from the file into a per-connection pipe
//!   (made on the first fetch), then from the pipe into the socket;
//! - `sendfile`: `sendfile(2)` on the non-blocking socket, called inline on the
//!   shard; when the socket buffer is full, an io_uring poll waits for room.

use std::cell::Cell;
use std::fs::File;
use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};
use std::rc::Rc;
use std::sync::Arc;

use compio::BufResult;
use compio::driver::op::{Interest, PollOnce, Splice};

pub use crate::config::SendMethod;

/// The pipe size we ask for (the default `pipe-max-size`); the kernel may give less.
const PIPE_BYTES: usize = 1 << 20;
const SPLICE_F_MOVE: u32 = 1;
const SPLICE_F_MORE: u32 = 4;

thread_local! {
    static ZERO_COPY_BYTES: Cell<u64> = const { Cell::new(0) };
}

/// Record bytes this shard has sent by sendfile or splice. There is no copying
/// path at all, so this is every fetched record byte. Per shard, so counting
/// costs no shared cache line.
pub fn fetch_zero_copy_bytes() -> u64 {
    ZERO_COPY_BYTES.with(Cell::get)
}

/// A socket's fd, borrowed for the connection's lifetime (the writer owns the socket).
#[derive(Clone, Copy)]
pub struct SocketFd(pub RawFd);

impl AsFd for SocketFd {
    fn as_fd(&self) -> BorrowedFd<'_> {
        // SAFETY: the connection's writer holds the socket open while it splices.
        unsafe { BorrowedFd::borrow_raw(self.0) }
    }
}

pub struct Splicer {
    read_end: Rc<OwnedFd>,
    write_end: Rc<OwnedFd>,
    pipe_bytes: usize,
}

async fn splice(
    fd_in: impl AsFd + 'static,
    off_in: i64,
    fd_out: impl AsFd + 'static,
    len: usize,
    flags: u32,
) -> io::Result<usize> {
    let BufResult(result, _) = compio::runtime::submit(Splice::new(fd_in, off_in, fd_out, -1, len, flags)).await;
    result
}

impl Splicer {
    pub fn new() -> io::Result<Self> {
        let mut fds = [0 as RawFd; 2];
        // SAFETY: pipe2 fills both fds on success; we take ownership of them at once.
        if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) } != 0 {
            return Err(io::Error::last_os_error());
        }
        let (read_end, write_end) = unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) };
        // SAFETY: plain fcntl on an fd we own.
        let granted = unsafe { libc::fcntl(write_end.as_raw_fd(), libc::F_SETPIPE_SZ, PIPE_BYTES as libc::c_int) };
        let pipe_bytes = if granted > 0 {
            granted as usize
        } else {
            // SAFETY: as above.
            (unsafe { libc::fcntl(write_end.as_raw_fd(), libc::F_GETPIPE_SZ) }).max(4096) as usize
        };
        Ok(Self {
            read_end: Rc::new(read_end),
            write_end: Rc::new(write_end),
            pipe_bytes,
        })
    }

    /// Sends `bytes` bytes of `file` from `position` to the socket.
    pub async fn send(&self, file: &Arc<File>, mut position: u64, mut bytes: u64, socket: SocketFd) -> io::Result<()> {
        // Bounded: every round moves at least one byte or fails.
        while bytes > 0 {
            let chunk = bytes.min(self.pipe_bytes as u64) as usize;
            let filled = splice(
                Arc::clone(file),
                position as i64,
                Rc::clone(&self.write_end),
                chunk,
                SPLICE_F_MOVE,
            )
            .await?;
            if filled == 0 {
                return Err(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    "segment ended before the fetched range",
                ));
            }
            let mut in_pipe = filled;
            while in_pipe > 0 {
                let sent = splice(
                    Rc::clone(&self.read_end),
                    -1,
                    socket,
                    in_pipe,
                    SPLICE_F_MOVE | SPLICE_F_MORE,
                )
                .await?;
                if sent == 0 {
                    return Err(io::Error::new(io::ErrorKind::WriteZero, "socket closed during fetch"));
                }
                in_pipe -= sent;
            }
            count_sent(filled as u64);
            position += filled as u64;
            bytes -= filled as u64;
        }
        Ok(())
    }
}

fn count_sent(bytes: u64) {
    ZERO_COPY_BYTES.with(|c| c.set(c.get() + bytes));
}

/// Puts the socket in non-blocking mode, which `sendfile` needs to never stall the shard.
pub fn set_nonblocking(socket: SocketFd) -> io::Result<()> {
    // SAFETY: fcntl on an fd the connection owns.
    let flags = unsafe { libc::fcntl(socket.0, libc::F_GETFL) };
    if flags < 0 || unsafe { libc::fcntl(socket.0, libc::F_SETFL, flags | libc::O_NONBLOCK) } < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// Sends `bytes` bytes of `file` from `position` with `sendfile(2)` on a non-blocking socket.
pub async fn sendfile(file: &File, mut position: u64, mut bytes: u64, socket: SocketFd) -> io::Result<()> {
    // Bounded: every round moves at least one byte, waits for room, or fails.
    while bytes > 0 {
        let mut offset = position as libc::off_t;
        let chunk = bytes.min(isize::MAX as u64) as usize;
        // SAFETY: both fds are open for the duration of the call; `offset` is ours.
        let sent = unsafe { libc::sendfile(socket.0, file.as_raw_fd(), &mut offset, chunk) };
        if sent > 0 {
            count_sent(sent as u64);
            position += sent as u64;
            bytes -= sent as u64;
            continue;
        }
        if sent == 0 {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "segment ended before the fetched range",
            ));
        }
        let error = io::Error::last_os_error();
        match error.kind() {
            io::ErrorKind::WouldBlock => {
                let BufResult(ready, _) = compio::runtime::submit(PollOnce::new(socket, Interest::Writable)).await;
                ready?;
            }
            io::ErrorKind::Interrupted => {}
            _ => return Err(error),
        }
    }
    Ok(())
}
