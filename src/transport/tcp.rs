//! TCP: accept with caps (total and per source address), frame by Content-Length with a size cap, answer
//! RFC 5626 double-CRLF keep-alives, close idle connections. Responses return on the same connection.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use sip_core::framing::{Frame, StreamFramer};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;

use super::{Inbound, Link, Outbound};

/// Limits that keep one peer from exhausting the edge.
#[derive(Debug, Clone)]
pub struct TcpLimits {
    pub max_message_size: usize,
    pub idle_timeout: Duration,
    pub max_connections: usize,
    pub max_per_ip: usize,
}

/// Outstanding writes per connection before the peer counts as not reading.
const WRITE_QUEUE: usize = 256;

static NEXT_CONN_ID: AtomicU64 = AtomicU64::new(1);

/// Connection counts, total and per source IP; a plain mutex since it is touched once per connect/close.
#[derive(Default)]
struct Counts {
    total: usize,
    per_ip: HashMap<IpAddr, usize>,
}

/// Accepts connections until the engine goes away.
pub async fn run(listener: TcpListener, engine: mpsc::Sender<Inbound>, out: Outbound, limits: TcpLimits) {
    let counts = Arc::new(Mutex::new(Counts::default()));
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
        let admitted = {
            let mut c = counts.lock().unwrap_or_else(|p| p.into_inner());
            let n = c.per_ip.get(&peer.ip()).copied().unwrap_or(0);
            if c.total >= limits.max_connections || n >= limits.max_per_ip {
                false
            } else {
                c.total += 1;
                *c.per_ip.entry(peer.ip()).or_insert(0) += 1;
                true
            }
        };
        if !admitted {
            out.stats.tcp_connections_refused.fetch_add(1, Ordering::Relaxed);
            tracing::debug!(%peer, "tcp connection refused: connection cap");
            drop(stream);
            continue;
        }
        out.stats.tcp_connections_accepted.fetch_add(1, Ordering::Relaxed);
        let (engine, out, limits, counts) = (engine.clone(), out.clone(), limits.clone(), counts.clone());
        tokio::spawn(async move {
            serve_connection(stream, peer, engine, &out, &limits).await;
            let mut c = counts.lock().unwrap_or_else(|p| p.into_inner());
            c.total = c.total.saturating_sub(1);
            if let Some(n) = c.per_ip.get_mut(&peer.ip()) {
                *n -= 1;
                if *n == 0 {
                    c.per_ip.remove(&peer.ip());
                }
            }
        });
    }
}

async fn serve_connection(
    stream: TcpStream,
    peer: SocketAddr,
    engine: mpsc::Sender<Inbound>,
    out: &Outbound,
    limits: &TcpLimits,
) {
    let id = NEXT_CONN_ID.fetch_add(1, Ordering::Relaxed);
    let (wtx, wrx) = mpsc::channel::<Bytes>(WRITE_QUEUE);
    out.tcp_conns().insert(id, wtx.clone());
    run_stream(stream, peer, id, (wtx, wrx), engine, out, limits).await;
}

/// Connections the edge opens itself (to trunks over TCP), one per destination, reused while open.
pub struct Connector {
    engine: mpsc::Sender<Inbound>,
    limits: TcpLimits,
    by_addr: Arc<dashmap::DashMap<SocketAddr, u64>>,
}

/// A connection attempt gives up after this (the transaction's own timers then fail the target over).
const CONNECT_TIMEOUT: Duration = Duration::from_secs(3);

impl Connector {
    pub fn new(engine: mpsc::Sender<Inbound>, limits: TcpLimits) -> Self {
        Connector {
            engine,
            limits,
            by_addr: Arc::new(dashmap::DashMap::new()),
        }
    }

    /// Queues `bytes` on the connection to `to`, opening one first if there is none. Never waits: the
    /// bytes wait in the new connection's queue while it connects.
    pub fn send(&self, out: &Outbound, to: SocketAddr, bytes: Bytes) -> bool {
        if let Some(id) = self.by_addr.get(&to).map(|e| *e) {
            if let Some(w) = out.tcp_conns().get(&id) {
                return w.try_send(bytes).is_ok();
            }
        }
        let id = NEXT_CONN_ID.fetch_add(1, Ordering::Relaxed);
        let (wtx, wrx) = mpsc::channel::<Bytes>(WRITE_QUEUE);
        if wtx.try_send(bytes).is_err() {
            return false;
        }
        out.tcp_conns().insert(id, wtx.clone());
        self.by_addr.insert(to, id);
        let (engine, limits, by_addr, out) = (
            self.engine.clone(),
            self.limits.clone(),
            self.by_addr.clone(),
            out.clone(),
        );
        tokio::spawn(async move {
            match tokio::time::timeout(CONNECT_TIMEOUT, TcpStream::connect(to)).await {
                Ok(Ok(stream)) => {
                    out.stats.tcp_connections_opened.fetch_add(1, Ordering::Relaxed);
                    run_stream(stream, to, id, (wtx, wrx), engine, &out, &limits).await;
                }
                Ok(Err(e)) => tracing::info!(%to, error = %e, "tcp connect failed"),
                Err(_) => tracing::info!(%to, "tcp connect timed out"),
            }
            out.tcp_conns().remove(&id);
            by_addr.remove_if(&to, |_, v| *v == id);
        });
        true
    }
}

/// Reads frames into the engine and writes queued bytes until either side ends; `id` is already registered.
async fn run_stream(
    stream: TcpStream,
    peer: SocketAddr,
    id: u64,
    (wtx, mut wrx): (mpsc::Sender<Bytes>, mpsc::Receiver<Bytes>),
    engine: mpsc::Sender<Inbound>,
    out: &Outbound,
    limits: &TcpLimits,
) {
    let _ = stream.set_nodelay(true);
    let (mut rd, mut wr) = stream.into_split();
    let writer = tokio::spawn(async move {
        while let Some(b) = wrx.recv().await {
            if wr.write_all(&b).await.is_err() {
                break;
            }
        }
        let _ = wr.shutdown().await;
    });

    let mut framer = StreamFramer::new(limits.max_message_size);
    let mut buf = vec![0u8; 16 * 1024];
    'conn: loop {
        // Never more than the framer can hold: bytes past its limit would be dropped and the connection closed,
        // although each of several pipelined messages in one read is within the limit. After the drain below
        // a framer that waits for more always has room (else it has failed), so this never reads zero bytes.
        let room = framer.remaining_capacity().min(buf.len());
        let n = match tokio::time::timeout(limits.idle_timeout, rd.read(&mut buf[..room])).await {
            Err(_) => {
                out.stats.tcp_idle_closed.fetch_add(1, Ordering::Relaxed);
                break;
            }
            Ok(Err(_)) | Ok(Ok(0)) => break,
            Ok(Ok(n)) => n,
        };
        framer.push(&buf[..n]);
        loop {
            match framer.next() {
                Ok(None) => break,
                Ok(Some(Frame::Message(data))) => {
                    out.stats.tcp_frames_in.fetch_add(1, Ordering::Relaxed);
                    // A stream is flow-controlled: waiting here pushes back on the peer instead of dropping.
                    if engine
                        .send(Inbound {
                            source: peer,
                            link: Link::Tcp(id),
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
                    let _ = wtx.try_send(Bytes::from_static(b"\r\n"));
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
