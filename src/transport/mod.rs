//! Sockets. The SIP core is sans-IO; these drivers move bytes between the network and the engine task and
//! back, and know nothing of SIP beyond TCP framing.
//!
//! The engine reads the UDP socket itself ([`udp`]); TCP frames reach it as [`Input::Message`] over a bounded
//! channel. Outbound bytes go through [`Outbound`], which sends on the UDP socket or on the TCP
//! connection a request arrived on (RFC 3261 18.2.2). A send that fails comes back to the engine, at once
//! from [`Outbound::send`] or later as [`Input::SendFailed`] (a TCP connect refused, a connection reset), so
//! the transaction it belonged to ends now (RFC 3261 17.1.4) instead of at its timeout.
//!
//! This module is also the one place that maps the SIP core's [`Peer`] (address, transport, connection)
//! to the socket it leaves by ([`Link`]) and back: [`link_of`], [`peer_of`].

pub mod tcp;
pub mod tcp_budget;
pub mod tls;
pub mod tls_client;
pub mod udp;

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use bytes::Bytes;
use dashmap::DashMap;
use sip_core::message::Transport;
use sip_core::transaction::{Peer, TxKey};
use tokio::sync::mpsc;

/// Bytes to put on the wire: the SIP core's type, the only one from the transaction layer to the socket.
pub use sip_core::transaction::Transmit;

/// Which socket a message came in on (and so which one its answer leaves by).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Link {
    Udp,
    /// A TCP connection, by the id the TCP driver gave it.
    Tcp(u64),
    /// A TLS connection (accepted on `sip.tls`, or one the edge opens to a destination call control routed
    /// through [`tls_client::TlsRoutes`]), by its id; ids are shared with TCP's, and so is the table of
    /// connection writers.
    Tls(u64),
    /// TCP to the destination address: the open connection to it, else a new one (trunks over TCP).
    Connect,
    /// TLS to a peer without a connection id: nothing says which name its certificate must carry, so
    /// sends here fail at once ([`SendError::NoTlsConnector`]). Call control routes every TLS destination
    /// it dials ([`tls_client::TlsRoutes::route`]) and so never sends here.
    ConnectTls,
}

/// The socket a message to `peer` leaves by: its connection when it has one, a new or reused TCP
/// connection for TCP without one, else the UDP socket.
pub fn link_of(peer: &Peer) -> Link {
    match (peer.conn, peer.transport) {
        (Some(id), Transport::Tls) => Link::Tls(id),
        (Some(id), _) => Link::Tcp(id),
        (None, Transport::Tcp) => Link::Connect,
        (None, Transport::Tls) => Link::ConnectTls,
        (None, _) => Link::Udp,
    }
}

/// The SIP core's view of a peer that sent on `link` from `source` (the inverse of [`link_of`]).
pub fn peer_of(source: SocketAddr, link: Link) -> Peer {
    match link {
        Link::Udp => Peer {
            addr: source,
            transport: Transport::Udp,
            conn: None,
        },
        Link::Tcp(id) => Peer {
            addr: source,
            transport: Transport::Tcp,
            conn: Some(id),
        },
        Link::Tls(id) => Peer {
            addr: source,
            transport: Transport::Tls,
            conn: Some(id),
        },
        // Inbound messages always name their connection; this is the same peer before it has one.
        Link::Connect => Peer {
            addr: source,
            transport: Transport::Tcp,
            conn: None,
        },
        Link::ConnectTls => Peer {
            addr: source,
            transport: Transport::Tls,
            conn: None,
        },
    }
}

/// One message (or keep-alive-stripped frame) from the network.
#[derive(Debug)]
pub struct Inbound {
    pub source: SocketAddr,
    pub link: Link,
    pub data: Bytes,
}

/// What the transport tasks hand the engine over its channel.
#[derive(Debug)]
pub enum Input {
    /// A message from a TCP connection.
    Message(Inbound),
    /// Bytes queued on a TCP connection never left: the connect failed or the connection broke.
    SendFailed(SendFailure),
}

/// Why bytes did not leave.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SendError {
    #[error("no SIP UDP socket")]
    NoUdpSocket,
    #[error("udp send failed: {0}")]
    Udp(std::io::ErrorKind),
    #[error("tcp connection {0} is closed")]
    ConnectionClosed(u64),
    #[error("tcp peer is not reading (write queue full)")]
    WriteQueueFull,
    #[error("tcp to new destinations is not enabled")]
    NoConnector,
    #[error("tls to a peer without a connection and no name to check its certificate against")]
    NoTlsConnector,
    /// The TLS handshake failed: the words of [`tls_client::describe`].
    #[error("tls: {0}")]
    Tls(String),
    #[error("the edge has as many tcp connections of its own open as sip.tcp_max_connections")]
    ConnectionCap,
    #[error("tcp connect failed: {0}")]
    Connect(std::io::ErrorKind),
    #[error("tcp connect timed out")]
    ConnectTimeout,
    #[error("tcp write failed: {0}")]
    Write(std::io::ErrorKind),
}

impl SendError {
    /// The cause in a few words for a hop's outcome ("connection refused"), without the "tcp connect
    /// failed" framing.
    pub fn cause(&self) -> String {
        match self {
            SendError::Udp(k) | SendError::Connect(k) | SendError::Write(k) => k.to_string(),
            other => other.to_string(),
        }
    }
}

/// A send that failed, with the transaction it belonged to (if any) for
/// [`TransactionLayer::transport_error`](sip_core::transaction::TransactionLayer::transport_error).
#[derive(Debug, Clone)]
pub struct SendFailure {
    pub key: Option<TxKey>,
    pub to: SocketAddr,
    pub error: SendError,
}

/// Bytes waiting on a TCP connection's writer, with the transaction to report if they never leave.
#[derive(Debug)]
pub struct Queued {
    pub bytes: Bytes,
    pub key: Option<TxKey>,
}

impl Queued {
    /// Bytes that belong to no transaction (keep-alive pongs).
    pub fn bare(bytes: Bytes) -> Self {
        Queued { bytes, key: None }
    }
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
    /// TLS handshakes completed on `sip.tls` (the connections are counted with TCP's above).
    pub tls_handshakes: AtomicU64,
    /// TLS handshakes that failed (no common version or cipher, not TLS at all, ...). One that did not end
    /// before the first-message deadline counts in `tcp_first_message_timeouts`.
    pub tls_handshake_failures: AtomicU64,
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
    tcp_conns: Arc<DashMap<u64, mpsc::Sender<Queued>>>,
    /// Opens TCP connections on demand ([`Link::Connect`]); unset until the engine's queue exists.
    connector: Arc<std::sync::OnceLock<tcp::Connector>>,
    /// Where call control's TLS connection ids go.
    tls_routes: tls_client::TlsRoutes,
    /// Roots and client certificates for the TLS connections the edge opens; unset: none are opened.
    client_tls: Arc<std::sync::OnceLock<tls_client::ClientTls>>,
    pub stats: Arc<TransportStats>,
}

impl Outbound {
    pub fn new(udp: Option<Arc<udp::SipUdp>>, stats: Arc<TransportStats>) -> Self {
        Outbound {
            udp,
            tcp_conns: Arc::new(DashMap::new()),
            connector: Arc::new(std::sync::OnceLock::new()),
            tls_routes: tls_client::TlsRoutes::default(),
            client_tls: Arc::new(std::sync::OnceLock::new()),
            stats,
        }
    }

    /// Lets TLS connection ids routed by call control ([`tls_routes`](Self::tls_routes)) be opened, with
    /// `client`'s roots and certificates (needs [`enable_connect`](Self::enable_connect) too).
    pub fn enable_tls(&self, client: tls_client::ClientTls) {
        let _ = self.client_tls.set(client);
    }

    /// The TLS destinations table call control routes through.
    pub fn tls_routes(&self) -> &tls_client::TlsRoutes {
        &self.tls_routes
    }

    /// Lets [`Link::Connect`] open connections whose messages go to their engine shard.
    pub fn enable_connect(&self, engine: crate::shard::Dispatch, limits: tcp::TcpLimits) {
        let _ = self.connector.set(tcp::Connector::new(engine, limits));
    }

    /// Registry of TCP connection writers, filled by the TCP driver.
    pub fn tcp_conns(&self) -> &Arc<DashMap<u64, mpsc::Sender<Queued>>> {
        &self.tcp_conns
    }

    /// Sends every transmit of one flush, each as [`send`](Self::send) would: the UDP ones together in
    /// [`udp::SipUdp::send_batch`] (one syscall when the engine answered a message with several), the
    /// others to their connections' writers. Sends that fail at once are pushed to `failed`. Order is
    /// kept per link. A datagram of a batch that the kernel refuses is counted, not reported: UDP
    /// transactions retransmit.
    pub fn send_all(&self, transmits: impl IntoIterator<Item = Transmit>, failed: &mut Vec<SendFailure>) {
        // The common flush is one datagram: sent as before, with no batch to allocate.
        let mut first: Option<Transmit> = None;
        let mut more: Vec<(SocketAddr, Bytes)> = Vec::new();
        for t in transmits {
            let udp = self.udp.is_some() && link_of(&t.to) == Link::Udp;
            if !udp {
                failed.extend(self.send(t).err());
            } else if first.is_none() && more.is_empty() {
                first = Some(t);
            } else {
                if let Some(f) = first.take() {
                    more.push((f.to.addr, f.bytes));
                }
                more.push((t.to.addr, t.bytes));
            }
        }
        if let Some(t) = first {
            failed.extend(self.send(t).err());
        }
        if let Some(sock) = self.udp.as_ref().filter(|_| !more.is_empty()) {
            let failed = more.len() - sock.send_batch(&more);
            self.stats.send_errors.fetch_add(failed as u64, Ordering::Relaxed);
        }
    }

    /// Sends without waiting: UDP is fire-and-forget, and a TCP writer whose queue is full is a peer that
    /// stopped reading; blocking the engine on it would stall every other call. An error here means the
    /// bytes did not leave (report it to the transaction layer); a TCP send that fails later, once its
    /// connection is tried, comes back as [`Input::SendFailed`]. A UDP socket buffer that is full is not an
    /// error: the datagram is dropped and UDP transactions retransmit.
    pub fn send(&self, t: Transmit) -> Result<(), SendFailure> {
        let to = t.to.addr;
        let sent = match link_of(&t.to) {
            Link::Udp => match &self.udp {
                Some(sock) => match sock.send_to(&t.bytes, to) {
                    Ok(()) => Ok(()),
                    // A full socket buffer: the datagram is lost like any other, and retransmitted.
                    Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                        self.stats.send_errors.fetch_add(1, Ordering::Relaxed);
                        return Ok(());
                    }
                    Err(e) => Err(SendError::Udp(e.kind())),
                },
                None => Err(SendError::NoUdpSocket),
            },
            Link::Tcp(id) => match self.tcp_conns.get(&id) {
                Some(w) => queue(
                    &w,
                    Queued {
                        bytes: t.bytes,
                        key: t.key.clone(),
                    },
                    id,
                ),
                None => Err(SendError::ConnectionClosed(id)),
            },
            Link::Tls(id) => self.send_tls(
                id,
                Queued {
                    bytes: t.bytes,
                    key: t.key.clone(),
                },
            ),
            Link::Connect => match self.connector.get() {
                Some(c) => c.send(
                    self,
                    to,
                    Queued {
                        bytes: t.bytes,
                        key: t.key.clone(),
                    },
                ),
                None => Err(SendError::NoConnector),
            },
            Link::ConnectTls => Err(SendError::NoTlsConnector),
        };
        sent.map_err(|error| {
            self.stats.send_errors.fetch_add(1, Ordering::Relaxed);
            SendFailure { key: t.key, to, error }
        })
    }
}

impl Outbound {
    /// On TLS connection `id`: its writer when open; else, for a destination call control routed, a new
    /// connection (opened again after the last one closed).
    fn send_tls(&self, id: u64, q: Queued) -> Result<(), SendError> {
        // The map's guard is dropped before a new writer is inserted under the same id.
        if let Some(w) = self.tcp_conns.get(&id).map(|w| w.clone()) {
            return queue(&w, q, id);
        }
        let (Some((to, dest)), Some(connector), Some(client)) =
            (self.tls_routes.dest(id), self.connector.get(), self.client_tls.get())
        else {
            return Err(SendError::ConnectionClosed(id));
        };
        let config = client.config_for(&dest).map_err(SendError::Tls)?;
        connector.send_tls(self, id, to, &dest, config, q)
    }
}

/// Puts `q` on connection `id`'s write queue without waiting.
fn queue(w: &mpsc::Sender<Queued>, q: Queued, id: u64) -> Result<(), SendError> {
    w.try_send(q).map_err(|e| match e {
        mpsc::error::TrySendError::Full(_) => SendError::WriteQueueFull,
        mpsc::error::TrySendError::Closed(_) => SendError::ConnectionClosed(id),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tls_peers_map_to_their_connection_and_back() {
        let addr: SocketAddr = "192.0.2.9:40000".parse().unwrap();
        let peer = peer_of(addr, Link::Tls(7));
        assert_eq!((peer.transport, peer.conn), (Transport::Tls, Some(7)));
        assert_eq!(link_of(&peer), Link::Tls(7));
        assert_eq!(link_of(&peer_of(addr, Link::Tcp(8))), Link::Tcp(8));
        // Without a connection id there is no name to check a certificate against: refused, never plain TCP.
        let lost = Peer {
            addr,
            transport: Transport::Tls,
            conn: None,
        };
        assert_eq!(link_of(&lost), Link::ConnectTls);
        let out = Outbound::new(None, Arc::new(TransportStats::default()));
        let t = Transmit {
            to: lost,
            bytes: Bytes::from_static(b"BYE"),
            key: None,
        };
        assert_eq!(out.send(t).unwrap_err().error, SendError::NoTlsConnector);
        // An id nobody routed (an accepted connection that closed) is not opened again.
        let t = Transmit {
            to: peer_of(addr, Link::Tls(u64::MAX)),
            bytes: Bytes::from_static(b"BYE"),
            key: None,
        };
        assert_eq!(out.send(t).unwrap_err().error, SendError::ConnectionClosed(u64::MAX));
    }
}
