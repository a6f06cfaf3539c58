//! Sockets. The SIP core is sans-IO; these drivers move bytes between the network and the engine task and
//! back, and know nothing of SIP beyond TCP framing.
//!
//! The engine reads the UDP socket itself ([`udp`]); TCP frames reach it as [`Inbound`] over a bounded
//! channel. Outbound bytes go through [`Outbound`], which sends on the UDP socket or on the TCP
//! connection a request arrived on (RFC 3261 18.2.2).

pub mod tcp;
pub mod udp;

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use bytes::Bytes;
use dashmap::DashMap;
use tokio::sync::mpsc;

/// Which socket a message came in on (and so which one its answer leaves by).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Link {
    Udp,
    /// A TCP connection, by the id the TCP driver gave it.
    Tcp(u64),
    /// TCP to the destination address: the open connection to it, else a new one (trunks over TCP).
    Connect,
}

/// One message (or keep-alive-stripped frame) from the network.
#[derive(Debug)]
pub struct Inbound {
    pub source: SocketAddr,
    pub link: Link,
    pub data: Bytes,
}

/// Counters an operator reads on /metrics.
#[derive(Debug, Default)]
pub struct TransportStats {
    pub udp_datagrams_in: AtomicU64,
    /// The SIP UDP socket's inode (0: none), to find its kernel counters.
    pub udp_socket_inode: AtomicU64,
    pub tcp_connections_accepted: AtomicU64,
    pub tcp_connections_refused: AtomicU64,
    /// Connections the edge opened itself (trunks over TCP).
    pub tcp_connections_opened: AtomicU64,
    pub tcp_frames_in: AtomicU64,
    pub tcp_framing_errors: AtomicU64,
    pub tcp_idle_closed: AtomicU64,
    pub send_errors: AtomicU64,
}

/// The sending side shared by every task: the UDP socket and the writers of open TCP connections.
#[derive(Clone)]
pub struct Outbound {
    udp: Option<Arc<udp::SipUdp>>,
    tcp_conns: Arc<DashMap<u64, mpsc::Sender<Bytes>>>,
    /// Opens TCP connections on demand ([`Link::Connect`]); unset until the engine's queue exists.
    connector: Arc<std::sync::OnceLock<tcp::Connector>>,
    pub stats: Arc<TransportStats>,
}

impl Outbound {
    pub fn new(udp: Option<Arc<udp::SipUdp>>, stats: Arc<TransportStats>) -> Self {
        Outbound {
            udp,
            tcp_conns: Arc::new(DashMap::new()),
            connector: Arc::new(std::sync::OnceLock::new()),
            stats,
        }
    }

    /// Lets [`Link::Connect`] open connections whose messages go to `engine`.
    pub fn enable_connect(&self, engine: mpsc::Sender<Inbound>, limits: tcp::TcpLimits) {
        let _ = self.connector.set(tcp::Connector::new(engine, limits));
    }

    /// Registry of TCP connection writers, filled by the TCP driver.
    pub fn tcp_conns(&self) -> &Arc<DashMap<u64, mpsc::Sender<Bytes>>> {
        &self.tcp_conns
    }

    /// Sends without waiting: UDP is fire-and-forget, and a TCP writer whose queue is full is a peer that
    /// stopped reading; blocking the engine on it would stall every other call.
    pub fn send(&self, link: Link, to: SocketAddr, bytes: Bytes) {
        let ok = match link {
            Link::Udp => match &self.udp {
                Some(sock) => sock.send_to(&bytes, to),
                None => false,
            },
            Link::Tcp(id) => match self.tcp_conns.get(&id) {
                Some(w) => w.try_send(bytes).is_ok(),
                None => false,
            },
            Link::Connect => match self.connector.get() {
                Some(c) => c.send(self, to, bytes),
                None => false,
            },
        };
        if !ok {
            self.stats.send_errors.fetch_add(1, Ordering::Relaxed);
        }
    }
}
