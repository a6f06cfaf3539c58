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

/// Messages are split off a large buffer so that each is a `Bytes` of its own and allocation is amortised
/// over many datagrams.
const RECV_CHUNK: usize = 256 * 1024;
const MAX_DATAGRAM: usize = 65_535;
/// Datagrams read per `recvmmsg` call, handled before their answers leave together ([`drain`]). Small:
/// the first message's answers wait for the others' handling (a few microseconds each).
pub const RECV_BATCH: usize = 8;
/// Receive queue asked of the kernel (SO_RCVBUF); it caps the request at `net.core.rmem_max`.
const RECV_BUFFER: usize = 8 * 1024 * 1024;
/// Datagrams per `sendmmsg` call, at most (the kernel's own cap is `UIO_MAXIOV`, 1024).
pub const SEND_BATCH: usize = 64;

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

    /// Sends every datagram of `batch` without waiting, as [`send_to`](Self::send_to) does each; returns
    /// how many left. On Linux they leave in `sendmmsg` calls of up to [`SEND_BATCH`]: the answers of
    /// one burst of messages (a forwarded INVITE and its 100 Trying, say) cost one syscall, not one each.
    pub fn send_batch(&self, batch: &[(SocketAddr, Bytes)]) -> usize {
        #[cfg(target_os = "linux")]
        {
            batch.chunks(SEND_BATCH).map(|chunk| self.sendmmsg(chunk)).sum()
        }
        #[cfg(not(target_os = "linux"))]
        {
            batch.iter().filter(|(to, bytes)| self.send_to(bytes, *to)).count()
        }
    }

    /// One `sendmmsg` for `chunk`, again past a datagram the kernel refused (it is dropped, like a failed
    /// `send_to`); returns how many left.
    #[cfg(target_os = "linux")]
    fn sendmmsg(&self, chunk: &[(SocketAddr, Bytes)]) -> usize {
        use rustix::net::addr::SocketAddrArg;
        use rustix::net::{sendmmsg, MMsgHdr, SendAncillaryBuffer, SendFlags};
        use std::io::IoSlice;
        let addrs: Vec<_> = chunk.iter().map(|(to, _)| to.as_any()).collect();
        let iovs: Vec<[IoSlice<'_>; 1]> = chunk.iter().map(|(_, b)| [IoSlice::new(b)]).collect();
        let mut controls: Vec<SendAncillaryBuffer<'_, '_, '_>> =
            chunk.iter().map(|_| SendAncillaryBuffer::default()).collect();
        let mut msgs: Vec<MMsgHdr<'_>> = addrs
            .iter()
            .zip(&iovs)
            .zip(controls.iter_mut())
            .map(|((addr, iov), control)| MMsgHdr::new_with_addr(addr, iov, control))
            .collect();
        let (mut at, mut sent) = (0, 0);
        while at < msgs.len() {
            match sendmmsg(self.socket.as_std(), &mut msgs[at..], SendFlags::DONTWAIT) {
                Ok(0) => break,
                Ok(n) => {
                    at += n;
                    sent += n;
                }
                // The datagram at `at` was refused (a full send buffer, an unreachable address).
                Err(e) => {
                    tracing::debug!(error = %e, to = %chunk.get(at).map_or(String::new(), |m| m.0.to_string()), "udp send error");
                    at += 1;
                }
            }
        }
        sent
    }

    /// Waits until a datagram may be waiting (cancel-safe: used in the engine's `select!`). Readiness is
    /// cleared by [`drain`] when a read came up short or would block, not here.
    pub async fn readable(&self) -> io::Result<Ready<'_>> {
        self.socket.readable().await
    }
}

/// The socket reported readable; [`drain`] reads it.
pub type Ready<'a> = ReadyGuard<'a>;

/// What [`drain`] reads into, kept by the engine across reads.
#[derive(Debug)]
pub struct RecvBuffer {
    /// Messages are copied here and split off as `Bytes`.
    chunk: BytesMut,
    /// `recvmmsg` writes datagram `i` at `i * MAX_DATAGRAM`; allocated once.
    slots: Vec<u8>,
    /// The datagrams of the last read: (length, source).
    got: Vec<(usize, SocketAddr)>,
}

/// A fresh receive buffer for [`drain`].
pub fn recv_buffer() -> RecvBuffer {
    RecvBuffer {
        chunk: BytesMut::with_capacity(RECV_CHUNK),
        slots: vec![0; RECV_BATCH * MAX_DATAGRAM],
        got: Vec::with_capacity(RECV_BATCH),
    }
}

/// Reads at most `max` datagrams that are waiting now and hands each to `handle`, with `true` for the last
/// of a batch (up to [`RECV_BATCH`] read at once, by one `recvmmsg` on Linux): the caller flushes the
/// answers of the batch then, in one `sendmmsg`. Returns how many datagrams were read. Readiness stays set
/// when it stopped at `max`, so the next [`SipUdp::readable`] returns at once.
pub fn drain(
    ready: &mut Ready<'_>,
    buf: &mut RecvBuffer,
    max: usize,
    stats: &TransportStats,
    mut handle: impl FnMut(Inbound, bool),
) -> usize {
    let mut read = 0;
    while read < max {
        let want = RECV_BATCH.min(max - read);
        buf.got.clear();
        let RecvBuffer { slots, got, .. } = &mut *buf;
        let drained = match ready.try_io(|s| recv_batch(s.get_ref(), slots, want, got)) {
            // Fewer than asked for: the queue is empty. Readiness is cleared now rather than by one more
            // read that would block (an event that came in meanwhile keeps it set: Tokio compares ticks).
            Ok(Ok(n)) if n < want => {
                ready.clear_ready();
                true
            }
            Ok(Ok(_)) => false,
            // ICMP port-unreachable from an earlier send surfaces here: not fatal, read on.
            Ok(Err(e)) => {
                tracing::debug!(error = %e, "udp recv error");
                read += 1;
                continue;
            }
            // Would block: readiness is cleared; the reactor says when there is more.
            Err(_) => break,
        };
        read += buf.got.len();
        let last = buf.got.iter().rposition(|&(n, _)| n > 0);
        for (i, &(n, source)) in buf.got.iter().enumerate() {
            if n == 0 {
                continue;
            }
            if buf.chunk.capacity() < n {
                buf.chunk = BytesMut::with_capacity(RECV_CHUNK.max(n));
            }
            let at = i * MAX_DATAGRAM;
            buf.chunk.extend_from_slice(&buf.slots[at..at + n]);
            let data: Bytes = buf.chunk.split().freeze();
            stats.udp_datagrams_in.fetch_add(1, Ordering::Relaxed);
            let inbound = Inbound {
                source,
                link: Link::Udp,
                data,
            };
            handle(inbound, Some(i) == last);
        }
        if drained {
            break;
        }
    }
    read
}

/// Reads up to `want` datagrams into `slots` (datagram `i` at `i * MAX_DATAGRAM`), their lengths and
/// sources into `got`; returns how many. One `recvmmsg` on Linux, one `recv_from` each elsewhere.
#[cfg(target_os = "linux")]
#[allow(unsafe_code)]
fn recv_batch(
    socket: &std::net::UdpSocket,
    slots: &mut [u8],
    want: usize,
    got: &mut Vec<(usize, SocketAddr)>,
) -> io::Result<usize> {
    use std::os::fd::AsRawFd;
    let want = want.min(RECV_BATCH).min(slots.len() / MAX_DATAGRAM);
    // SAFETY: all-zero is a valid value of these plain C structs (null pointers, zero lengths).
    let mut addrs: [libc::sockaddr_storage; RECV_BATCH] = unsafe { std::mem::zeroed() };
    let mut iovs: [libc::iovec; RECV_BATCH] = unsafe { std::mem::zeroed() };
    let mut msgs: [libc::mmsghdr; RECV_BATCH] = unsafe { std::mem::zeroed() };
    for (((slot, iov), addr), msg) in slots
        .chunks_exact_mut(MAX_DATAGRAM)
        .zip(iovs.iter_mut())
        .zip(addrs.iter_mut())
        .zip(msgs.iter_mut())
        .take(want)
    {
        iov.iov_base = slot.as_mut_ptr().cast();
        iov.iov_len = slot.len();
        msg.msg_hdr.msg_iov = iov;
        msg.msg_hdr.msg_iovlen = 1;
        msg.msg_hdr.msg_name = (addr as *mut libc::sockaddr_storage).cast();
        msg.msg_hdr.msg_namelen = std::mem::size_of::<libc::sockaddr_storage>() as libc::socklen_t;
    }
    // SAFETY: the first `want` headers point at live, exclusively borrowed buffers of the lengths given
    // (a slot of `slots`, an address of `addrs`), which outlive the call; the kernel writes within them.
    let n = unsafe {
        libc::recvmmsg(
            socket.as_raw_fd(),
            msgs.as_mut_ptr(),
            want as libc::c_uint,
            libc::MSG_DONTWAIT,
            std::ptr::null_mut(),
        )
    };
    let n = usize::try_from(n).map_err(|_| io::Error::last_os_error())?;
    for (msg, addr) in msgs.iter().zip(&addrs).take(n) {
        // A datagram from an address that is not IP cannot happen on this socket; it is skipped (length 0).
        let source = socket_addr(addr);
        let len = if source.is_some() { msg.msg_len as usize } else { 0 };
        got.push((
            len.min(MAX_DATAGRAM),
            source.unwrap_or(SocketAddr::from(([0, 0, 0, 0], 0))),
        ));
    }
    Ok(n)
}

/// The IP address and port of a `sockaddr_storage` the kernel filled in.
#[cfg(target_os = "linux")]
#[allow(unsafe_code)]
fn socket_addr(addr: &libc::sockaddr_storage) -> Option<SocketAddr> {
    use std::net::{Ipv4Addr, Ipv6Addr, SocketAddrV4, SocketAddrV6};
    match i32::from(addr.ss_family) {
        libc::AF_INET => {
            // SAFETY: the family says the storage holds a `sockaddr_in`, which it is large and aligned enough for.
            let a = unsafe { &*(addr as *const libc::sockaddr_storage).cast::<libc::sockaddr_in>() };
            let ip = Ipv4Addr::from(u32::from_be(a.sin_addr.s_addr));
            Some(SocketAddrV4::new(ip, u16::from_be(a.sin_port)).into())
        }
        libc::AF_INET6 => {
            // SAFETY: as above, for `sockaddr_in6`.
            let a = unsafe { &*(addr as *const libc::sockaddr_storage).cast::<libc::sockaddr_in6>() };
            let ip = Ipv6Addr::from(a.sin6_addr.s6_addr);
            let port = u16::from_be(a.sin6_port);
            Some(SocketAddrV6::new(ip, port, u32::from_be(a.sin6_flowinfo), a.sin6_scope_id).into())
        }
        _ => None,
    }
}

#[cfg(not(target_os = "linux"))]
fn recv_batch(
    socket: &std::net::UdpSocket,
    slots: &mut [u8],
    want: usize,
    got: &mut Vec<(usize, SocketAddr)>,
) -> io::Result<usize> {
    for slot in slots.chunks_exact_mut(MAX_DATAGRAM).take(want) {
        match socket.recv_from(slot) {
            Ok(r) => got.push(r),
            Err(e) if got.is_empty() => return Err(e),
            Err(_) => break,
        }
    }
    Ok(got.len())
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
        assert_eq!(drain(&mut ready, &mut buf, 64, &stats, |m, _| got += m.data.len()), 64);
        assert_eq!(got, 64 * 1400);
        assert_eq!(stats.udp_datagrams_in.load(Ordering::Relaxed), 64);
    }

    /// A batch sent in one go reaches every destination whole and in order, and the reader hands the
    /// datagrams over one by one with the end of each read batch marked (where the engine flushes).
    #[tokio::test]
    async fn a_sent_batch_arrives_whole_and_is_read_in_marked_batches() {
        let edge = SipUdp::bind("127.0.0.1:0".parse().unwrap()).unwrap();
        let peer = SipUdp::bind("127.0.0.1:0".parse().unwrap()).unwrap();
        let other = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        let (to_peer, to_other) = (peer.local_addr().unwrap(), other.local_addr().unwrap());
        let mut batch: Vec<(SocketAddr, Bytes)> = (0..RECV_BATCH + 3)
            .map(|i| (to_peer, Bytes::from(format!("message {i}"))))
            .collect();
        batch.push((to_other, Bytes::from_static(b"to the other one")));
        assert_eq!(edge.send_batch(&batch), RECV_BATCH + 4);
        let mut one = [0u8; 64];
        let (n, from) = other.recv_from(&mut one).unwrap();
        assert_eq!(
            (&one[..n], from),
            (&b"to the other one"[..], edge.local_addr().unwrap())
        );

        let mut ready = tokio::time::timeout(std::time::Duration::from_secs(1), peer.readable())
            .await
            .unwrap()
            .unwrap();
        let (stats, mut buf, mut got) = (TransportStats::default(), recv_buffer(), Vec::new());
        let read = drain(&mut ready, &mut buf, 64, &stats, |m, last| {
            assert_eq!((m.source, m.link), (edge.local_addr().unwrap(), Link::Udp));
            got.push((String::from_utf8(m.data.to_vec()).unwrap(), last));
        });
        assert_eq!(read, RECV_BATCH + 3);
        let want: Vec<(String, bool)> = (0..RECV_BATCH + 3)
            .map(|i| (format!("message {i}"), i == RECV_BATCH - 1 || i == RECV_BATCH + 2))
            .collect();
        assert_eq!(got, want);
    }
}
