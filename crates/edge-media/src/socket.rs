//! A UDP socket registered with the Tokio reactor for readability only.
//!
//! `tokio::net::UdpSocket` registers every socket for reading *and* writing, edge-triggered. Two costs
//! follow, both seen as thread wake-ups in `perf` traces of the edge under SIPp load:
//! - registering a fresh socket (four per anchored call) finds it writable at once, and `epoll_ctl` wakes
//!   the thread parked in `epoll_wait` for an event nobody waits for;
//! - every datagram sent raises a new "writable" edge when its buffer is freed, waking that thread again.
//!
//! Sockets here are only ever read asynchronously; sends never wait (a full send buffer drops the
//! datagram, which is what a relay or a UDP SIP sender must do anyway), so writability is not needed.

use std::io;
use std::net::SocketAddr;
use std::task::{Context, Poll};

use tokio::io::unix::{AsyncFd, AsyncFdReadyGuard};
use tokio::io::Interest;

/// A non-blocking UDP socket the reactor watches for readability.
#[derive(Debug)]
pub struct ReadableUdp {
    fd: AsyncFd<std::net::UdpSocket>,
}

/// The socket reported readable; read it with [`ReadyGuard::try_io`].
pub type ReadyGuard<'a> = AsyncFdReadyGuard<'a, std::net::UdpSocket>;

impl ReadableUdp {
    /// Makes `socket` non-blocking and registers it. Must be called inside a Tokio runtime.
    pub fn new(socket: std::net::UdpSocket) -> io::Result<Self> {
        socket.set_nonblocking(true)?;
        Ok(ReadableUdp {
            fd: register_readable(socket)?,
        })
    }

    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        self.fd.get_ref().local_addr()
    }

    /// The socket itself (for options and descriptors; do not read it directly).
    pub fn as_std(&self) -> &std::net::UdpSocket {
        self.fd.get_ref()
    }

    /// Sends now or not at all (`WouldBlock` when the send buffer is full).
    pub fn send_to(&self, buf: &[u8], to: SocketAddr) -> io::Result<usize> {
        self.fd.get_ref().send_to(buf, to)
    }

    /// Waits until the socket may be readable (cancel-safe).
    pub async fn readable(&self) -> io::Result<ReadyGuard<'_>> {
        self.fd.readable().await
    }

    /// Receives a datagram if one is waiting; `WouldBlock` clears the readiness the reactor reported.
    pub fn try_recv_from(&self, buf: &mut [u8]) -> io::Result<(usize, SocketAddr)> {
        self.fd.try_io(Interest::READABLE, |s| s.recv_from(buf))
    }

    /// Receives a datagram, registering `cx` for a wake-up when none is waiting.
    pub fn poll_recv_from(&self, cx: &mut Context<'_>, buf: &mut [u8]) -> Poll<io::Result<(usize, SocketAddr)>> {
        loop {
            let mut guard = match self.fd.poll_read_ready(cx) {
                Poll::Ready(Ok(g)) => g,
                Poll::Ready(Err(e)) => return Poll::Ready(Err(e)),
                Poll::Pending => return Poll::Pending,
            };
            match guard.try_io(|s| s.get_ref().recv_from(buf)) {
                Ok(result) => return Poll::Ready(result),
                // Readiness was stale and is now cleared: poll again to register the waker.
                Err(_would_block) => continue,
            }
        }
    }
}

/// Registers a descriptor-owning value for `interest`. The one place this crate reaches past Tokio's
/// safe constructors (which all register for writability too, and are deprecated since 1.54).
#[allow(unsafe_code)]
pub(crate) fn register<T: std::os::fd::AsRawFd + Into<std::os::fd::OwnedFd>>(
    owner: T,
    interest: Interest,
) -> io::Result<AsyncFd<T>> {
    // SAFETY: `register_with_interest` requires that the descriptor stays open and the same for the
    // AsyncFd's whole life. The AsyncFd owns `owner`, which owns its descriptor (it converts into an
    // `OwnedFd`) and closes it only when dropped, after the AsyncFd deregisters it; `as_raw_fd` of an
    // owner of one descriptor never changes.
    unsafe { AsyncFd::register_with_interest(owner, interest) }.map_err(io::Error::from)
}

fn register_readable(socket: std::net::UdpSocket) -> io::Result<AsyncFd<std::net::UdpSocket>> {
    register(socket, Interest::READABLE)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn receives_what_is_sent_and_reports_would_block_when_empty() {
        let bind = || ReadableUdp::new(std::net::UdpSocket::bind("127.0.0.1:0").unwrap()).unwrap();
        let (a, b) = (bind(), bind());
        let mut buf = [0u8; 64];
        assert_eq!(a.try_recv_from(&mut buf).unwrap_err().kind(), io::ErrorKind::WouldBlock);
        b.send_to(b"hello", a.local_addr().unwrap()).unwrap();
        let (n, from) = std::future::poll_fn(|cx| a.poll_recv_from(cx, &mut buf)).await.unwrap();
        assert_eq!(&buf[..n], b"hello");
        assert_eq!(from, b.local_addr().unwrap());
        // Readable again only once something new arrives.
        b.send_to(b"again", a.local_addr().unwrap()).unwrap();
        let mut guard = a.readable().await.unwrap();
        let got = guard.try_io(|s| s.get_ref().recv_from(&mut buf)).unwrap().unwrap();
        assert_eq!(&buf[..got.0], b"again");
    }
}
