//! TCP: accept within budgets ([`tcp_budget`](super::tcp_budget): carriers' reserved slots, strangers' own
//! caps, per source address), frame by Content-Length with a size cap, answer RFC 5626 double-CRLF
//! keep-alives, close connections that say nothing in SIP in time or go idle. Responses return on the
//! same connection.
//!
//! TLS listeners ([`tls`](super::tls)) are run by the same code: the handshake is done in the connection's
//! task, within the first-message deadline, and the connection task is generic over the stream
//! ([`Stream`]), so TLS gets the same framing, limits, time-outs and budgets.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use sip_core::framing::{starts_with_sip_line, Frame, StreamFramer};
use tokio::io::{AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio::time::Instant;

use super::tcp_budget::{Classifier, TcpBudget, TcpSlots};
use super::tls::TlsCerts;
use super::{Inbound, Link, Outbound, Queued, SendError, SendFailure, TransportStats};

/// Limits that keep one peer from exhausting the edge.
#[derive(Debug, Clone)]
pub struct TcpLimits {
    pub max_message_size: usize,
    pub idle_timeout: Duration,
    /// An accepted connection that has not delivered a message with a SIP start line this long after it
    /// was accepted is closed, whatever else it sent (keep-alives, garbage): it only holds a slot.
    pub first_message_timeout: Duration,
    /// Who may hold accepted connections. `max_connections` also caps, separately, the connections the
    /// edge opens itself.
    pub budget: TcpBudget,
}

/// Outstanding writes per connection before the peer counts as not reading.
const WRITE_QUEUE: usize = 256;

/// Read buffer of a TCP connection, allocated when it has bytes to read and freed once they are in the
/// framer: an idle connection holds none (it is never zero-filled, so allocating it costs no memset).
const READ_BUFFER: usize = 16 * 1024;

/// Read buffer of a TLS connection: rustls already holds the decrypted record, so a smaller one only
/// means more copies out of it for a large message, and it is held while the connection idles (a TLS
/// read needs its buffer while it waits).
const TLS_READ_BUFFER: usize = 4 * 1024;

static NEXT_CONN_ID: AtomicU64 = AtomicU64::new(1);

/// A new connection id, unique in the process (TCP, TLS, accepted or opened).
pub(super) fn next_conn_id() -> u64 {
    NEXT_CONN_ID.fetch_add(1, Ordering::Relaxed)
}

/// Accepts connections until the engine goes away. `classify` tells each source's class for the budgets.
/// With `tls`, every connection is TLS (the `sip.tls` listener): its handshake must end, and its first
/// SIP message arrive, within `first_message_timeout` of the accept.
///
/// `slots` are the budgets the connections take; the TCP and TLS listeners share one (a source's
/// connections are counted together whichever listener they reach).
pub async fn run(
    listener: TcpListener,
    engine: crate::shard::Dispatch,
    out: Outbound,
    limits: TcpLimits,
    classify: Classifier,
    slots: TcpSlots,
    tls: Option<Arc<TlsCerts>>,
) {
    loop {
        let (stream, peer) = match listener.accept().await {
            Ok(s) => s,
            Err(e) => {
                // EMFILE and friends: back off briefly instead of spinning.
                tracing::warn!(error = %e, "tcp accept failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        if engine.is_closed() {
            return;
        }
        let class = classify(peer.ip());
        let slot = match slots.take(peer.ip(), class) {
            Ok(slot) => slot,
            Err(why) => {
                tracing::debug!(%peer, class = class.as_str(), reason = why.as_str(), "tcp connection refused");
                // Reset rather than close: a refused connection leaves no TIME_WAIT socket behind, so a
                // flood of connects does not fill the kernel's table.
                let _ = socket2::SockRef::from(&stream).set_linger(Some(Duration::ZERO));
                drop(stream);
                continue;
            }
        };
        let (engine, out, limits) = (engine.clone(), out.clone(), limits.clone());
        // Fixed at accept: the TLS handshake counts against it.
        let first = Instant::now() + limits.first_message_timeout;
        // Taken now: a handshake that starts after a reload uses the new certificate.
        let acceptor = tls.as_ref().map(|c| tokio_rustls::TlsAcceptor::from(c.current()));
        tokio::spawn(async move {
            let id = next_conn_id();
            match acceptor {
                None => serve_accepted(stream, peer, Link::Tcp(id), engine, &out, &limits, first).await,
                Some(acceptor) => {
                    let _ = stream.set_nodelay(true);
                    match tokio::time::timeout_at(first, acceptor.accept(stream)).await {
                        Ok(Ok(stream)) => {
                            out.stats.tls_handshakes.fetch_add(1, Ordering::Relaxed);
                            serve_accepted(stream, peer, Link::Tls(id), engine, &out, &limits, first).await
                        }
                        Ok(Err(e)) => {
                            out.stats.tls_handshake_failures.fetch_add(1, Ordering::Relaxed);
                            tracing::debug!(%peer, error = %e, "tls handshake failed");
                        }
                        Err(_) => {
                            out.stats.tcp_first_message_timeouts.fetch_add(1, Ordering::Relaxed);
                            tracing::debug!(%peer, "tls connection closed: no handshake before the first-message deadline");
                        }
                    }
                }
            }
            drop(slot);
        });
    }
}

/// Registers an accepted connection's writer and runs it until either side ends.
async fn serve_accepted<S: Stream>(
    stream: S,
    peer: SocketAddr,
    link: Link,
    engine: crate::shard::Dispatch,
    out: &Outbound,
    limits: &TcpLimits,
    first: Instant,
) {
    let (Link::Tcp(id) | Link::Tls(id)) = link else {
        return;
    };
    let (wtx, wrx) = mpsc::channel::<Queued>(WRITE_QUEUE);
    out.tcp_conns().insert(id, wtx.clone());
    run_stream(stream, peer, link, (wtx, wrx), engine, out, limits, Some(first), None).await;
}

/// Connections the edge opens itself (to trunks and agents over TCP), one per destination, reused while
/// open. They take no accept slot (the edge chose to open them, to addresses from its own routing data)
/// but are capped on their own at `budget.max_connections` open at once.
pub struct Connector {
    engine: crate::shard::Dispatch,
    limits: TcpLimits,
    by_addr: Arc<dashmap::DashMap<SocketAddr, u64>>,
}

/// A connection attempt gives up after this (the transaction's own timers then fail the target over).
const CONNECT_TIMEOUT: Duration = Duration::from_secs(3);

/// One open connection the edge made, on the `tcp_open_outbound` gauge until dropped.
struct OutboundSlot(Arc<TransportStats>);

impl OutboundSlot {
    fn take(stats: &Arc<TransportStats>, max: usize) -> Option<OutboundSlot> {
        let max = u64::try_from(max).unwrap_or(u64::MAX);
        stats
            .tcp_open_outbound
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| (n < max).then_some(n + 1))
            .ok()
            .map(|_| OutboundSlot(stats.clone()))
    }
}

impl Drop for OutboundSlot {
    fn drop(&mut self) {
        let _ = self
            .0
            .tcp_open_outbound
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| n.checked_sub(1));
    }
}

impl Connector {
    pub fn new(engine: crate::shard::Dispatch, limits: TcpLimits) -> Self {
        Connector {
            engine,
            limits,
            by_addr: Arc::new(dashmap::DashMap::new()),
        }
    }

    /// Queues `q` on the connection to `to`, opening one first if there is none. Never waits: the bytes
    /// wait in the new connection's queue while it connects; if the connect fails, every transaction with
    /// bytes in that queue is reported to the engine ([`Input::SendFailed`]).
    pub fn send(&self, out: &Outbound, to: SocketAddr, q: Queued) -> Result<(), SendError> {
        if let Some(id) = self.by_addr.get(&to).map(|e| *e) {
            if let Some(w) = out.tcp_conns().get(&id) {
                return super::queue(&w, q, id);
            }
        }
        let Some(slot) = OutboundSlot::take(&out.stats, self.limits.budget.max_connections) else {
            tracing::warn!(%to, max = self.limits.budget.max_connections, "tcp connect skipped: the edge has as many connections of its own open as sip.tcp_max_connections");
            return Err(SendError::ConnectionCap);
        };
        let id = next_conn_id();
        let (wtx, mut wrx) = mpsc::channel::<Queued>(WRITE_QUEUE);
        super::queue(&wtx, q, id)?;
        out.tcp_conns().insert(id, wtx.clone());
        self.by_addr.insert(to, id);
        let (engine, limits, by_addr, out) = (
            self.engine.clone(),
            self.limits.clone(),
            self.by_addr.clone(),
            out.clone(),
        );
        tokio::spawn(async move {
            let failed = match tokio::time::timeout(CONNECT_TIMEOUT, TcpStream::connect(to)).await {
                Ok(Ok(stream)) => {
                    out.stats.tcp_connections_opened.fetch_add(1, Ordering::Relaxed);
                    // We spoke first: the peer owes us nothing but answers, so no first-message deadline.
                    run_stream(stream, to, Link::Tcp(id), (wtx, wrx), engine, &out, &limits, None, None).await;
                    return finish(&out, &by_addr, to, id, slot);
                }
                Ok(Err(e)) => {
                    tracing::info!(%to, error = %e, "tcp connect failed");
                    SendError::Connect(e.kind())
                }
                Err(_) => {
                    tracing::info!(%to, "tcp connect timed out");
                    SendError::ConnectTimeout
                }
            };
            // Unregistered first, so that no new bytes join the queue once it is drained.
            finish(&out, &by_addr, to, id, slot);
            drop(wtx);
            report_unsent(&engine, &mut wrx, None, to, &failed, &out.stats).await;
        });
        Ok(())
    }
}

impl Connector {
    /// Queues `q` on TLS connection `id` toward `to`, opening it first (TCP connect, then a handshake
    /// checking the server's certificate against `dest`'s name, which goes as SNI). Never waits, like
    /// [`send`](Self::send); a failed handshake is reported for every queued transaction in the words of
    /// [`describe`](super::tls_client::describe).
    pub fn send_tls(
        &self,
        out: &Outbound,
        id: u64,
        to: SocketAddr,
        dest: &super::tls_client::TlsDest,
        config: Arc<rustls::ClientConfig>,
        q: Queued,
    ) -> Result<(), SendError> {
        let Some(server_name) = dest.server_name() else {
            return Err(SendError::Tls(format!(
                "{} is not a host name a certificate can carry",
                dest.name
            )));
        };
        let Some(slot) = OutboundSlot::take(&out.stats, self.limits.budget.max_connections) else {
            tracing::warn!(%to, max = self.limits.budget.max_connections, "tls connect skipped: the edge has as many connections of its own open as sip.tcp_max_connections");
            return Err(SendError::ConnectionCap);
        };
        let (wtx, mut wrx) = mpsc::channel::<Queued>(WRITE_QUEUE);
        super::queue(&wtx, q, id)?;
        out.tcp_conns().insert(id, wtx.clone());
        let (engine, limits, out) = (self.engine.clone(), self.limits.clone(), out.clone());
        let name = dest.name.clone();
        tokio::spawn(async move {
            let connector = tokio_rustls::TlsConnector::from(config);
            let failed = match tokio::time::timeout(CONNECT_TIMEOUT, TcpStream::connect(to)).await {
                Ok(Ok(stream)) => {
                    let _ = stream.set_nodelay(true);
                    match tokio::time::timeout(CONNECT_TIMEOUT, connector.connect(server_name, stream)).await {
                        Ok(Ok(stream)) => {
                            out.stats.tcp_connections_opened.fetch_add(1, Ordering::Relaxed);
                            out.stats.tls_handshakes.fetch_add(1, Ordering::Relaxed);
                            let link = Link::Tls(id);
                            let tls = Some(name);
                            run_stream(stream, to, link, (wtx, wrx), engine, &out, &limits, None, tls).await;
                            out.tcp_conns().remove(&id);
                            drop(slot);
                            return;
                        }
                        Ok(Err(e)) => {
                            out.stats.tls_handshake_failures.fetch_add(1, Ordering::Relaxed);
                            let why = super::tls_client::describe(&e, &name);
                            tracing::info!(%to, error = %why, "tls handshake failed");
                            SendError::Tls(why)
                        }
                        Err(_) => {
                            out.stats.tls_handshake_failures.fetch_add(1, Ordering::Relaxed);
                            tracing::info!(%to, "tls handshake timed out");
                            SendError::Tls(format!("tls handshake with {name} timed out"))
                        }
                    }
                }
                Ok(Err(e)) => {
                    tracing::info!(%to, error = %e, "tcp connect failed");
                    SendError::Connect(e.kind())
                }
                Err(_) => {
                    tracing::info!(%to, "tcp connect timed out");
                    SendError::ConnectTimeout
                }
            };
            out.tcp_conns().remove(&id);
            drop(slot);
            drop(wtx);
            report_unsent(&engine, &mut wrx, None, to, &failed, &out.stats).await;
        });
        Ok(())
    }
}

/// Unregisters a connection the edge opened and frees its slot.
fn finish(out: &Outbound, by_addr: &dashmap::DashMap<SocketAddr, u64>, to: SocketAddr, id: u64, slot: OutboundSlot) {
    out.tcp_conns().remove(&id);
    by_addr.remove_if(&to, |_, v| *v == id);
    drop(slot);
}

/// Tells the engine about every transaction whose bytes will never leave: `first` (the write that failed)
/// and whatever is left in the writer's queue. The engine gone means the edge is stopping: nobody to tell.
async fn report_unsent(
    engine: &crate::shard::Dispatch,
    queue: &mut mpsc::Receiver<Queued>,
    first: Option<Queued>,
    to: SocketAddr,
    error: &SendError,
    stats: &TransportStats,
) {
    queue.close();
    let mut next = first;
    while let Some(q) = next.take().or_else(|| queue.try_recv().ok()) {
        stats.send_errors.fetch_add(1, Ordering::Relaxed);
        if let Some(key) = q.key {
            let failure = SendFailure {
                key: Some(key),
                to,
                error: error.clone(),
            };
            if engine.send_failed(failure).await.is_err() {
                return;
            }
        }
    }
}

/// Why a connection's reader gave up waiting.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Deadline {
    /// `first_message_timeout` after accept, still without a SIP message.
    FirstMessage,
    /// `idle_timeout` without a byte.
    Idle,
}

/// A connected byte stream a connection's task runs on: plain TCP, or TLS over it.
pub trait Stream: Send + 'static {
    type Reader: ReadSome + Send + 'static;
    type Writer: AsyncWrite + Unpin + Send + 'static;
    /// The two halves, for the reader loop and the writer task.
    fn split(self) -> (Self::Reader, Self::Writer);
}

/// Reading what has arrived into a buffer allocated on first use.
pub trait ReadSome {
    /// Waits for bytes, then reads at most `room` of them into `buf`, which is cleared first and given
    /// capacity here when it has none; the bytes read are `buf[..n]`.
    fn read_some(
        &mut self,
        buf: &mut Vec<u8>,
        room: usize,
    ) -> impl std::future::Future<Output = std::io::Result<usize>> + Send;
}

impl Stream for TcpStream {
    type Reader = OwnedReadHalf;
    type Writer = OwnedWriteHalf;
    fn split(self) -> (OwnedReadHalf, OwnedWriteHalf) {
        let _ = self.set_nodelay(true);
        self.into_split()
    }
}

impl ReadSome for OwnedReadHalf {
    /// Waits until the socket is readable before allocating: a connection that never sends anything
    /// costs no buffer.
    async fn read_some(&mut self, buf: &mut Vec<u8>, room: usize) -> std::io::Result<usize> {
        use bytes::BufMut;
        loop {
            self.readable().await?;
            buf.clear();
            buf.reserve(READ_BUFFER);
            match self.try_read_buf(&mut (&mut *buf).limit(room.min(READ_BUFFER))) {
                Ok(n) => return Ok(n),
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => continue,
                Err(e) => return Err(e),
            }
        }
    }
}

/// An accepted TLS connection.
pub type TlsStream = tokio_rustls::server::TlsStream<TcpStream>;

/// A TLS connection the edge opened (to a trunk or an agent).
pub type ClientTlsStream = tokio_rustls::client::TlsStream<TcpStream>;

impl Stream for ClientTlsStream {
    type Reader = tokio::io::ReadHalf<ClientTlsStream>;
    type Writer = tokio::io::WriteHalf<ClientTlsStream>;
    fn split(self) -> (Self::Reader, Self::Writer) {
        tokio::io::split(self)
    }
}

impl ReadSome for tokio::io::ReadHalf<ClientTlsStream> {
    /// As an accepted TLS connection's.
    async fn read_some(&mut self, buf: &mut Vec<u8>, room: usize) -> std::io::Result<usize> {
        use bytes::BufMut;
        buf.clear();
        buf.reserve(TLS_READ_BUFFER);
        self.read_buf(&mut (&mut *buf).limit(room.min(TLS_READ_BUFFER))).await
    }
}

impl Stream for TlsStream {
    type Reader = tokio::io::ReadHalf<TlsStream>;
    type Writer = tokio::io::WriteHalf<TlsStream>;
    fn split(self) -> (Self::Reader, Self::Writer) {
        tokio::io::split(self)
    }
}

impl ReadSome for tokio::io::ReadHalf<TlsStream> {
    /// The buffer is given capacity before the wait (a TLS read needs it then); see [`TLS_READ_BUFFER`].
    async fn read_some(&mut self, buf: &mut Vec<u8>, room: usize) -> std::io::Result<usize> {
        use bytes::BufMut;
        buf.clear();
        buf.reserve(TLS_READ_BUFFER);
        self.read_buf(&mut (&mut *buf).limit(room.min(TLS_READ_BUFFER))).await
    }
}

/// Reads frames into the engine and writes queued bytes until either side ends; the connection (`link`,
/// [`Link::Tcp`] or [`Link::Tls`]) is already registered. `first_message`: by when the peer must deliver
/// a message with a SIP start line (`None`: no such deadline, for connections the edge opened).
/// `tls_name`: the server's name on a TLS connection the edge opened. Such a server may refuse us only
/// after the handshake (TLS 1.3 checks the client's certificate then): an alert before its first message
/// fails the transactions already written, in the words of [`describe`](super::tls_client::describe),
/// instead of leaving them to time out.
#[allow(clippy::too_many_arguments)]
async fn run_stream<S: Stream>(
    stream: S,
    peer: SocketAddr,
    link: Link,
    (wtx, mut wrx): (mpsc::Sender<Queued>, mpsc::Receiver<Queued>),
    engine: crate::shard::Dispatch,
    out: &Outbound,
    limits: &TcpLimits,
    first_message: Option<Instant>,
    tls_name: Option<Arc<str>>,
) {
    let (Link::Tcp(id) | Link::Tls(id)) = link else {
        return;
    };
    let (mut rd, mut wr) = stream.split();
    let (failures, stats) = (engine.clone(), out.stats.clone());
    // Transactions written before the peer's first message (a few at most), on connections the edge opened
    // over TLS; `None` once the peer has said something.
    let early = Arc::new(std::sync::Mutex::new(tls_name.is_some().then(Vec::new)));
    let written = early.clone();
    let writer = tokio::spawn(async move {
        while let Some(q) = wrx.recv().await {
            if let (Some(list), Some(key)) = (written.lock().unwrap_or_else(|e| e.into_inner()).as_mut(), &q.key) {
                if list.len() < 16 {
                    list.push(key.clone());
                }
            }
            // A TLS writer holds records until flushed; a TCP one has nothing to flush.
            let written = match wr.write_all(&q.bytes).await {
                Ok(()) => wr.flush().await,
                Err(e) => Err(e),
            };
            if let Err(e) = written {
                // The connection broke (reset, closed by the peer): this message and those queued behind it
                // never leave; their transactions end now instead of at their timeouts.
                tracing::debug!(%peer, error = %e, "tcp write failed");
                let error = SendError::Write(e.kind());
                report_unsent(&failures, &mut wrx, Some(q), peer, &error, &stats).await;
                return;
            }
        }
        let _ = wr.shutdown().await;
    });

    // Fixed at accept: keep-alives and garbage do not move it, only a SIP message lifts it.
    let mut first_deadline = first_message;
    let mut framer = StreamFramer::new(limits.max_message_size);
    let mut buf = Vec::new();
    'conn: loop {
        let idle = Instant::now() + limits.idle_timeout;
        let (deadline, why) = match first_deadline {
            Some(f) if f <= idle => (f, Deadline::FirstMessage),
            _ => (idle, Deadline::Idle),
        };
        // Never more than the framer can hold: bytes past its limit would be dropped and the connection closed,
        // although each of several pipelined messages in one read is within the limit. After the drain below
        // a framer that waits for more always has room (else it has failed), so this never reads zero bytes.
        let room = framer.remaining_capacity();
        let n = match tokio::time::timeout_at(deadline, rd.read_some(&mut buf, room)).await {
            Err(_) => {
                let counter = match why {
                    Deadline::FirstMessage => &out.stats.tcp_first_message_timeouts,
                    Deadline::Idle => &out.stats.tcp_idle_closed,
                };
                counter.fetch_add(1, Ordering::Relaxed);
                tracing::debug!(%peer, ?why, "tcp connection closed: deadline");
                break;
            }
            Ok(Err(e)) => {
                let unanswered = early.lock().unwrap_or_else(|e| e.into_inner()).take();
                if let (Some(keys), Some(name)) = (unanswered, &tls_name) {
                    let is_tls = e.get_ref().is_some_and(|i| i.is::<rustls::Error>());
                    if is_tls {
                        let error = SendError::Tls(super::tls_client::describe(&e, name));
                        tracing::info!(%peer, %error, "tls connection refused by the peer");
                        for key in keys {
                            out.stats.send_errors.fetch_add(1, Ordering::Relaxed);
                            let failure = SendFailure {
                                key: Some(key),
                                to: peer,
                                error: error.clone(),
                            };
                            if engine.send_failed(failure).await.is_err() {
                                break;
                            }
                        }
                    }
                }
                break;
            }
            Ok(Ok(0)) => break,
            Ok(Ok(n)) => n,
        };
        framer.push(&buf[..n]);
        // An idle TCP connection holds no read buffer (the next read allocates one).
        buf = Vec::new();
        loop {
            match framer.next() {
                Ok(None) => break,
                Ok(Some(Frame::Message(data))) => {
                    out.stats.tcp_frames_in.fetch_add(1, Ordering::Relaxed);
                    if tls_name.is_some() {
                        *early.lock().unwrap_or_else(|e| e.into_inner()) = None;
                    }
                    if first_deadline.is_some() && starts_with_sip_line(&data) {
                        first_deadline = None;
                    }
                    // A stream is flow-controlled: waiting here pushes back on the peer instead of dropping.
                    if engine
                        .send(Inbound {
                            source: peer,
                            link,
                            data,
                        })
                        .await
                        .is_err()
                    {
                        break 'conn;
                    }
                }
                Ok(Some(Frame::KeepAlivePing)) => {
                    // RFC 5626 3.5.1: a double CRLF ping is answered with a single CRLF pong.
                    let _ = wtx.try_send(Queued::bare(Bytes::from_static(b"\r\n")));
                }
                Ok(Some(Frame::KeepAlivePong)) => {}
                Err(e) => {
                    // No way to resynchronise a byte stream after a framing error: close it.
                    out.stats.tcp_framing_errors.fetch_add(1, Ordering::Relaxed);
                    tracing::debug!(%peer, error = %e, "tcp framing error; closing");
                    break 'conn;
                }
            }
        }
    }
    out.tcp_conns().remove(&id);
    drop(wtx);
    // Let queued answers drain, bounded so a dead peer cannot pin the task.
    let _ = tokio::time::timeout(Duration::from_secs(2), writer).await;
}
