//! Per-call SIP traces and HEP export (issue 22 items 1 and 2).
//!
//! The engine only taps: each message it receives or sends is queued with its time, direction, peer and
//! transport (the message is `Bytes`, so the copy is a reference count), and the call controller's legs
//! (SIP Call-ID -> public call id) and call ends follow on the same queue, in the engine's order. A full
//! queue drops (counted on `/metrics` as `edge_trace_dropped_total`); the engine never waits. Everything
//! else happens on the trace writer's own thread ([`writer`]): parsing, attribution to a call, bounds,
//! redaction ([`redact`]), the stored trace (compact text, read as JSON by the API), retention, and HEPv3 ([`hep`]).

pub mod hep;
pub mod redact;
pub mod writer;

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use sip_core::message::Transport;
use sip_core::transaction::Transmit;
use tokio::sync::mpsc;

use crate::call::TraceLeg;
use crate::transport::Link;

/// Events waiting for the trace writer; past this the engine drops them (counted) rather than wait.
pub const TRACE_QUEUE: usize = 65_536;

/// Whether the edge received or sent a message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Direction {
    In,
    Out,
}

/// One message as the engine saw it.
#[derive(Debug, Clone)]
pub struct Captured {
    /// Microseconds since the Unix epoch.
    pub t_us: i64,
    pub direction: Direction,
    pub peer: SocketAddr,
    pub transport: Transport,
    pub data: Bytes,
}

/// What the engine tells the trace writer, in its own order.
#[derive(Debug)]
pub enum TraceEvent {
    Message(Captured),
    /// A leg was opened: its SIP Call-ID belongs to a call.
    Leg(TraceLeg),
    /// The call's record says it ended: its trace is stored once stragglers (the 200 to a BYE) are in.
    End {
        call_id: String,
    },
}

/// Counters for `/metrics`.
#[derive(Debug, Default)]
pub struct TraceStats {
    /// Events the engine dropped because the writer's queue was full.
    pub dropped: AtomicU64,
    /// Traces stored.
    pub stored: AtomicU64,
    /// HEP packets sent.
    pub hep_sent: AtomicU64,
}

/// The engine's end of the trace queue (one clone per shard).
#[derive(Debug, Clone)]
pub struct TraceTap {
    tx: mpsc::Sender<TraceEvent>,
    stats: Arc<TraceStats>,
}

impl TraceTap {
    pub fn new(tx: mpsc::Sender<TraceEvent>, stats: Arc<TraceStats>) -> Self {
        TraceTap { tx, stats }
    }

    fn send(&self, ev: TraceEvent) {
        if self.tx.try_send(ev).is_err() {
            self.stats.dropped.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// A message received from `source` on `link`.
    pub fn inbound(&self, source: SocketAddr, link: Link, data: &Bytes) {
        let transport = match link {
            Link::Tls(_) | Link::ConnectTls => Transport::Tls,
            Link::Tcp(_) | Link::Connect => Transport::Tcp,
            Link::Udp => Transport::Udp,
        };
        self.send(TraceEvent::Message(Captured {
            t_us: now_us(),
            direction: Direction::In,
            peer: source,
            transport,
            data: data.clone(),
        }));
    }

    /// A message about to be sent.
    pub fn outbound(&self, t: &Transmit) {
        self.send(TraceEvent::Message(Captured {
            t_us: now_us(),
            direction: Direction::Out,
            peer: t.to.addr,
            transport: t.to.transport,
            data: t.bytes.clone(),
        }));
    }

    pub fn leg(&self, leg: TraceLeg) {
        self.send(TraceEvent::Leg(leg));
    }

    pub fn end(&self, call_id: String) {
        self.send(TraceEvent::End { call_id });
    }
}

/// Wall-clock microseconds since the Unix epoch.
pub fn now_us() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_micros()).unwrap_or(i64::MAX))
}

/// The running trace writer: the engine's tap and the writer's end.
pub struct TraceRunning {
    pub tap: TraceTap,
    /// Fires when the writer has stored what it held and ended (after every tap is gone).
    pub done: tokio::sync::oneshot::Receiver<()>,
}

/// Starts the trace writer when `[observability]` asks for traces or HEP; `None` when neither. `locals`
/// are the edge's SIP addresses (UDP, TCP, TLS); one bound to every interface is written as `host` when
/// that is an IP address.
pub async fn start(
    cfg: &crate::config::Config,
    store: Arc<edge_store::Store>,
    stats: Arc<TraceStats>,
    locals: [Option<SocketAddr>; 3],
    host: &str,
) -> anyhow::Result<Option<TraceRunning>> {
    use anyhow::Context;
    let o = &cfg.observability;
    if !o.trace && o.hep.is_none() {
        return Ok(None);
    }
    let hep = match &o.hep {
        Some(target) => Some(
            tokio::net::lookup_host(target.as_str())
                .await
                .ok()
                .and_then(|mut a| a.next())
                .with_context(|| format!("observability.hep: cannot resolve {target}"))?,
        ),
        None => None,
    };
    let advertised: Option<std::net::IpAddr> = host.trim_matches(['[', ']']).parse().ok();
    let local = |a: Option<SocketAddr>| {
        a.map(|a| match advertised {
            Some(ip) if a.ip().is_unspecified() => SocketAddr::new(ip, a.port()),
            _ => a,
        })
    };
    let [udp, tcp, tls] = locals;
    let wcfg = writer::TraceConfig {
        store: o.trace,
        max_messages: o.trace_max_messages,
        max_bytes: o.trace_max_bytes,
        retention: std::time::Duration::from_secs(o.trace_retention_days.saturating_mul(86_400)),
        hep,
        hep_capture_id: o.hep_capture_id,
        local_udp: local(udp),
        local_tcp: local(tcp),
        local_tls: local(tls),
    };
    let (tx, rx) = mpsc::channel(TRACE_QUEUE);
    let done = writer::spawn_trace_writer(store, wcfg, stats.clone(), rx)?;
    tracing::info!(trace = o.trace, hep = ?hep, "SIP tracing on");
    Ok(Some(TraceRunning {
        tap: TraceTap::new(tx, stats),
        done,
    }))
}
