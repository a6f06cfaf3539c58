//! UDP receive loop: one datagram is one SIP message (RFC 3261 18.3); Content-Length rules are the parser's.

use std::sync::atomic::Ordering;
use std::sync::Arc;

use bytes::BytesMut;
use tokio::net::UdpSocket;
use tokio::sync::mpsc;

use super::{Inbound, Link, TransportStats};

/// Receive buffer: datagrams are split off a large buffer so that each message is a zero-copy `Bytes`
/// and allocation is amortised over many datagrams.
const RECV_CHUNK: usize = 256 * 1024;
const MAX_DATAGRAM: usize = 65_535;

/// Reads datagrams until the engine goes away. A full engine queue drops the datagram (counted): UDP
/// senders retransmit, and queueing without bound would turn overload into memory growth.
pub async fn run(socket: Arc<UdpSocket>, engine: mpsc::Sender<Inbound>, stats: Arc<TransportStats>) {
    let mut buf = BytesMut::with_capacity(RECV_CHUNK);
    loop {
        if buf.capacity() - buf.len() < MAX_DATAGRAM {
            buf = BytesMut::with_capacity(RECV_CHUNK);
        }
        let (n, source) = match socket.recv_buf_from(&mut buf).await {
            Ok(r) => r,
            Err(e) => {
                // ICMP port-unreachable from an earlier send surfaces here on some systems: not fatal.
                tracing::debug!(error = %e, "udp recv error");
                continue;
            }
        };
        let data = buf.split_to(n).freeze();
        if n == 0 {
            continue;
        }
        stats.udp_datagrams_in.fetch_add(1, Ordering::Relaxed);
        match engine.try_send(Inbound {
            source,
            link: Link::Udp,
            data,
        }) {
            Ok(()) => {}
            Err(mpsc::error::TrySendError::Full(_)) => {
                stats.udp_dropped_overload.fetch_add(1, Ordering::Relaxed);
            }
            Err(mpsc::error::TrySendError::Closed(_)) => return,
        }
    }
}
