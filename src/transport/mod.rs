//! Sockets. The SIP core is sans-IO; these drivers move bytes between the network and the engine task and
//! back, and know nothing of SIP beyond TCP framing.
//!
//! The engine reads the UDP socket itself ([`udp`]); TCP frames reach it as [`Inbound`] over a bounded
//! channel. Outbound bytes go through [`Outbound`], which sends on the UDP socket or on the TCP
//! connection a request arrived on (RFC 3261 18.2.2).

pub mod tcp;
pub mod tcp_budget;
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
    /// Refused at accept, every reason (the sum of the `tcp_refused_*` below).
    pub tcp_connections_refused: AtomicU64,
    /// Refused because every slot the class may take was in use.
    pub tcp_refused_total_cap: AtomicU64,
    /// Refused because the source address holds `tcp_max_connections_per_ip`.
    pub tcp_refused_per_ip_cap: AtomicU64,
    /// A stranger refused because strangers hold `tcp_stranger_max_connections`.
    pub tcp_refused_stranger_cap: AtomicU64,
    /// A stranger refused because its address holds `tcp_stranger_max_connections_per_ip`.
    pub tcp_refused_stranger_per_ip_cap: AtomicU64,
    /// Accepted connections by class of source.
    pub tcp_accepted_carrier: AtomicU64,
    pub tcp_accepted_agent: AtomicU64,
    pub tcp_accepted_stranger: AtomicU64,
    /// Open connections by class (gauges); `tcp_open_outbound`: those the edge opened itself.
    pub tcp_open_carrier: AtomicU64,
    pub tcp_open_agent: AtomicU64,
    pub tcp_open_stranger: AtomicU64,
    pub tcp_open_outbound: AtomicU64,
    /// Connections the edge opened itself (trunks over TCP).
    pub tcp_connections_opened: AtomicU64,
    pub tcp_frames_in: AtomicU64,
    pub tcp_framing_errors: AtomicU64,
    pub tcp_idle_closed: AtomicU64,
    /// Closed because no SIP message arrived within `tcp_first_message_timeout_s`.
    pub tcp_first_message_timeouts: AtomicU64,
    pub send_errors: AtomicU64,
}

impl TransportStats {
    /// The refusal counter for `why`.
    pub fn tcp_refused(&self, why: tcp_budget::Refusal) -> &AtomicU64 {
        use tcp_budget::Refusal as R;
        match why {
            R::Total => &self.tcp_refused_total_cap,
            R::PerIp => &self.tcp_refused_per_ip_cap,
            R::StrangerTotal => &self.tcp_refused_stranger_cap,
            R::StrangerPerIp => &self.tcp_refused_stranger_per_ip_cap,
        }
    }

    /// The accepted-connections counter of `class`.
    pub fn tcp_accepted(&self, class: tcp_budget::PeerClass) -> &AtomicU64 {
        use tcp_budget::PeerClass as C;
        match class {
            C::Carrier => &self.tcp_accepted_carrier,
            C::Agent => &self.tcp_accepted_agent,
            C::Stranger => &self.tcp_accepted_stranger,
        }
    }

    /// The open-connections gauge of `class`.
    pub fn tcp_open(&self, class: tcp_budget::PeerClass) -> &AtomicU64 {
        use tcp_budget::PeerClass as C;
        match class {
            C::Carrier => &self.tcp_open_carrier,
            C::Agent => &self.tcp_open_agent,
            C::Stranger => &self.tcp_open_stranger,
        }
    }
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

    /// Sends every transmit of one flush, each as [`send`](Self::send) would: the UDP ones together in
    /// [`udp::SipUdp::send_batch`] (one syscall when the engine answered a message with several), the
    /// TCP ones to their connections' writers. Order is kept per link.
    pub fn send_all(&self, transmits: impl IntoIterator<Item = (Link, SocketAddr, Bytes)>) {
        // The common flush is one datagram: sent as before, with no batch to allocate.
        let mut first: Option<(SocketAddr, Bytes)> = None;
        let mut more: Vec<(SocketAddr, Bytes)> = Vec::new();
        for (link, to, bytes) in transmits {
            match (link, &self.udp) {
                (Link::Udp, Some(_)) if first.is_none() && more.is_empty() => first = Some((to, bytes)),
                (Link::Udp, Some(_)) => {
                    more.extend(first.take());
                    more.push((to, bytes));
                }
                _ => self.send(link, to, bytes),
            }
        }
        if let Some((to, bytes)) = first {
            self.send(Link::Udp, to, bytes);
        }
        if let Some(sock) = self.udp.as_ref().filter(|_| !more.is_empty()) {
            let failed = more.len() - sock.send_batch(&more);
            self.stats.send_errors.fetch_add(failed as u64, Ordering::Relaxed);
        }
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
