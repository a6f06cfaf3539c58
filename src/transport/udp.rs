//! The SIP UDP socket: one datagram is one SIP message (RFC 3261 18.3); Content-Length rules are the parser's.
//!
//! The engine task reads this socket itself ([`SipUdp::drain`]) instead of a reader task handing datagrams
//! over a channel: measured under load, that hand-off cost a thread wake-up per burst. The socket is
//! registered with the reactor for readability only and sent on without waiting: a socket also registered
//! for writability gets an edge-triggered "writable" event after every datagram it sends, which wakes the
//! thread parked in `epoll_wait` for nothing (one wake-up per message sent, seen with `perf sched`).

use std::io;
use std::net::SocketAddr;
use std::sync::atomic::Ordering;

use bytes::{Bytes, BytesMut};
use edge_media::socket::{ReadableUdp, ReadyGuard};

use super::{Inbound, Link, TransportStats};

/// Receive buffer: datagrams are split off a large zeroed buffer so that each message is a zero-copy
/// `Bytes` and allocation is amortised over many datagrams.
const RECV_CHUNK: usize = 256 * 1024;
const MAX_DATAGRAM: usize = 65_535;
/// Receive queue asked of the kernel (SO_RCVBUF); it caps the request at `net.core.rmem_max`.
const RECV_BUFFER: usize = 8 * 1024 * 1024;

/// The bound SIP UDP socket.
#[derive(Debug)]
pub struct SipUdp {
    socket: ReadableUdp,
}

impl SipUdp {
    /// Binds `addr` (non-blocking) and registers it for readability. Must run inside a Tokio runtime.
    pub fn bind(addr: SocketAddr) -> io::Result<Self> {
        use socket2::{Domain, Protocol, Socket, Type};
        let socket = Socket::new(Domain::for_address(addr), Type::DGRAM, Some(Protocol::UDP))?;
        // The kernel's queue is the only buffer between the network and the engine: the default (~200 KB,
        // a hundred-odd datagrams on loopback) overflows within milliseconds at thousands of calls per
        // second whenever the engine is busy, and every datagram lost there is a retransmission later.
        if let Err(e) = socket.set_recv_buffer_size(RECV_BUFFER) {
            tracing::warn!(error = %e, "could not enlarge the SIP UDP receive buffer");
        }
        let got = socket.recv_buffer_size().unwrap_or(0);
        if got < RECV_BUFFER {
            tracing::info!(
                requested = RECV_BUFFER,
                got,
                "SIP UDP receive buffer capped by the kernel (sysctl net.core.rmem_max)"
            );
        }
        socket.bind(&addr.into())?;
        Ok(SipUdp {
            socket: ReadableUdp::new(socket.into())?,
        })
    }

    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        self.socket.local_addr()
    }

    /// The socket's inode, by which the kernel's per-socket counters are found ([`kernel_drops`]).
    pub fn inode(&self) -> Option<u64> {
        use std::os::unix::fs::MetadataExt;
        let fd = std::os::fd::AsRawFd::as_raw_fd(self.socket.as_std());
        std::fs::metadata(format!("/proc/self/fd/{fd}")).ok().map(|m| m.ino())
    }

    /// Sends without waiting: a full socket buffer drops the datagram (`WouldBlock`; UDP senders retransmit)
    /// rather than stall every other call behind it.
    pub fn send_to(&self, bytes: &[u8], to: SocketAddr) -> io::Result<()> {
        self.socket.send_to(bytes, to).map(|_| ())
    }

    /// Waits until a datagram may be waiting (cancel-safe: used in the engine's `select!`). Readiness is
    /// cleared by [`drain`] when the socket reports it would block, not here.
    pub async fn readable(&self) -> io::Result<Ready<'_>> {
        self.socket.readable().await
    }
}

/// The socket reported readable; [`drain`] reads it.
pub type Ready<'a> = ReadyGuard<'a>;

/// A fresh receive buffer for [`drain`].
pub fn recv_buffer() -> BytesMut {
    BytesMut::zeroed(RECV_CHUNK)
}

/// Reads at most `max` datagrams that are waiting now and hands each to `handle`; returns how many.
/// Readiness stays set when it stopped at `max`, so the next [`SipUdp::readable`] returns at once.
pub fn drain(
    ready: &mut Ready<'_>,
    buf: &mut BytesMut,
    max: usize,
    stats: &TransportStats,
    mut handle: impl FnMut(Inbound),
) -> usize {
    let mut read = 0;
    while read < max {
        // The buffer stays initialised (zeroed once per chunk): no unsafe to read into it.
        if buf.len() < MAX_DATAGRAM {
            *buf = recv_buffer();
        }
        let (n, source) = match ready.try_io(|s| s.get_ref().recv_from(&mut buf[..])) {
            Ok(Ok(r)) => r,
            // ICMP port-unreachable from an earlier send surfaces here: not fatal, read on.
            Ok(Err(e)) => {
                tracing::debug!(error = %e, "udp recv error");
                read += 1;
                continue;
            }
            // Would block: readiness is cleared; the reactor says when there is more.
            Err(_) => break,
        };
        read += 1;
        if n == 0 {
            continue;
        }
        let data: Bytes = buf.split_to(n).freeze();
        stats.udp_datagrams_in.fetch_add(1, Ordering::Relaxed);
        handle(Inbound {
            source,
            link: Link::Udp,
            data,
        });
    }
    read
}

/// Datagrams the kernel dropped because the socket's receive queue was full (the `drops` column of
/// `/proc/net/udp`): the engine fell behind. `None` off Linux or when the socket is not listed.
pub fn kernel_drops(inode: u64) -> Option<u64> {
    ["/proc/net/udp", "/proc/net/udp6"].iter().find_map(|path| {
        let table = std::fs::read_to_string(path).ok()?;
        table.lines().skip(1).find_map(|line| {
            let cols: Vec<&str> = line.split_whitespace().collect();
            (cols.get(9)?.parse::<u64>().ok()? == inode).then(|| cols.get(12)?.parse().ok())?
        })
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A flood nobody reads overflows the receive queue; the kernel's count of what it dropped is what
    /// `/metrics` reports as `edge_udp_dropped_overload_total`.
    #[tokio::test]
    async fn kernel_drops_counts_a_flood_nobody_reads() {
        let sip = SipUdp::bind("127.0.0.1:0".parse().unwrap()).unwrap();
        let inode = sip.inode().unwrap();
        assert_eq!(kernel_drops(inode), Some(0));
        let sender = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        let to = sip.local_addr().unwrap();
        let datagram = [b'x'; 1400];
        for _ in 0..30_000 {
            let _ = sender.send_to(&datagram, to);
        }
        assert!(kernel_drops(inode).unwrap() > 0);
        // The queue still holds what fitted: it is read in bursts of at most `max`.
        let ready = tokio::time::timeout(std::time::Duration::from_secs(1), sip.readable()).await;
        let mut ready = ready.unwrap().unwrap();
        let stats = TransportStats::default();
        let mut buf = recv_buffer();
        let mut got = 0;
        assert_eq!(drain(&mut ready, &mut buf, 64, &stats, |m| got += m.data.len()), 64);
        assert_eq!(got, 64 * 1400);
        assert_eq!(stats.udp_datagrams_in.load(Ordering::Relaxed), 64);
    }
}
