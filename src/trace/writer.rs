//! The trace writer, on a thread of its own: attributes the engine's captured messages to calls by their
//! SIP Call-ID (the legs the call controller named), keeps each call's within its bounds, stores a call's
//! trace as one JSON row a little after its end, purges old ones, and sends every message as HEPv3.

use std::collections::HashMap;
use std::net::{SocketAddr, UdpSocket};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use edge_api::traces::{CallTrace, TraceDirection, TraceHeader, TraceLeg, TraceMessage};
use edge_store::{Store, StoredTrace};
use sip_core::message::{Message, Transport};
use tokio::sync::mpsc;

use super::{hep, redact, Captured, Direction, TraceEvent, TraceStats};

/// What the writer keeps and where it sends.
#[derive(Debug, Clone)]
pub struct TraceConfig {
    /// Store traces (`[observability] trace`); off, the writer only feeds HEP.
    pub store: bool,
    pub max_messages: usize,
    pub max_bytes: usize,
    pub retention: Duration,
    /// HEP collector (`[observability] hep`), resolved.
    pub hep: Option<SocketAddr>,
    pub hep_capture_id: u32,
    /// The edge's own SIP addresses, written as the other end of each message.
    pub local_udp: Option<SocketAddr>,
    pub local_tcp: Option<SocketAddr>,
    pub local_tls: Option<SocketAddr>,
}

/// How long after a call's end its trace waits for stragglers (the 200 to a BYE, ACKs) before it is stored.
const LINGER: Duration = Duration::from_millis(1_500);
/// Messages not (yet) of a call (OPTIONS, strays, the INVITE before its leg is named) wait this long.
const PENDING_TTL: Duration = Duration::from_secs(2);
/// Bytes of such messages held at most; past it they only go to HEP.
const PENDING_MAX_BYTES: usize = 16 << 20;
/// Calls traced at once at most; the legs of calls past it are not traced.
const MAX_CALLS: usize = 200_000;
/// A call never seen ending (its end was dropped) is stored anyway after this long.
const MAX_CALL_AGE: Duration = Duration::from_secs(24 * 3600);
/// How often the writer takes what the engine queued and looks at its clocks (stores ended calls,
/// expires pending messages).
const TICK: Duration = Duration::from_millis(50);
/// How often traces past the retention are purged.
const PURGE_EVERY: Duration = Duration::from_secs(3600);

/// A message ready for a trace, with what HEP needs.
struct Held {
    msg: TraceMessage,
    src: SocketAddr,
    dst: SocketAddr,
    size: usize,
}

struct CallBuf {
    legs: Vec<TraceLeg>,
    messages: Vec<TraceMessage>,
    bytes: usize,
    omitted_messages: u64,
    omitted_bytes: u64,
    opened: Instant,
    ended: Option<Instant>,
}

struct Writer {
    cfg: TraceConfig,
    stats: Arc<TraceStats>,
    /// SIP Call-ID -> (public call id, leg).
    leg_of: HashMap<String, (String, String)>,
    calls: HashMap<String, CallBuf>,
    /// SIP Call-ID -> (first seen, messages).
    pending: HashMap<String, (Instant, Vec<Held>)>,
    pending_bytes: usize,
    hep: Option<UdpSocket>,
    /// Traces built, waiting to be stored.
    out: Vec<StoredTrace>,
}

/// Starts the writer on a thread of its own with a single-threaded runtime and a one-connection pool of
/// its own (as the call-record writer: it must not compete with the engine's workers). Ends when every
/// tap is gone, after storing what it holds.
pub fn spawn_trace_writer(
    store: Arc<Store>,
    cfg: TraceConfig,
    stats: Arc<TraceStats>,
    rx: mpsc::Receiver<TraceEvent>,
) -> anyhow::Result<tokio::sync::oneshot::Receiver<()>> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .thread_name("trace-writer")
        .build()
        .context("starting the trace writer's runtime")?;
    let hep = match cfg.hep {
        Some(to) => {
            let bind: SocketAddr = if to.is_ipv4() {
                ([0, 0, 0, 0], 0).into()
            } else {
                (std::net::Ipv6Addr::UNSPECIFIED, 0).into()
            };
            let s = UdpSocket::bind(bind).context("binding the HEP sender's socket")?;
            s.set_nonblocking(true).context("HEP socket")?;
            Some(s)
        }
        None => None,
    };
    let (done_tx, done_rx) = tokio::sync::oneshot::channel();
    std::thread::Builder::new()
        .name("trace-writer".into())
        .spawn(move || {
            runtime.block_on(async move {
                let own = match store.with_own_pool(1).await {
                    Ok(own) => Arc::new(own),
                    Err(e) => {
                        tracing::warn!(error = %e, "trace writer: no pool of its own, sharing the API's");
                        store
                    }
                };
                let w = Writer {
                    cfg,
                    stats,
                    leg_of: HashMap::new(),
                    calls: HashMap::new(),
                    pending: HashMap::new(),
                    pending_bytes: 0,
                    hep,
                    out: Vec::new(),
                };
                w.run(&own, rx).await;
            });
            let _ = done_tx.send(());
        })
        .context("starting the trace writer's thread")?;
    Ok(done_rx)
}

impl Writer {
    /// The writer wakes on its clock only, never per message: a wake-up per message (a futex wake and a
    /// context switch each) cost the edge more CPU than everything the writer does with them.
    async fn run(mut self, store: &Store, mut rx: mpsc::Receiver<TraceEvent>) {
        let mut tick = tokio::time::interval(TICK);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut last_purge: Option<Instant> = None;
        loop {
            tick.tick().await;
            let now = Instant::now();
            let mut closed = false;
            // At most a queue's worth per tick, so the clocks below are looked at even under a flood.
            for _ in 0..super::TRACE_QUEUE {
                match rx.try_recv() {
                    Ok(ev) => self.on_event(ev, now),
                    Err(mpsc::error::TryRecvError::Empty) => break,
                    Err(mpsc::error::TryRecvError::Disconnected) => {
                        closed = true;
                        break;
                    }
                }
            }
            if closed {
                // The engine is gone: store every call held, ended or not.
                let ids: Vec<String> = self.calls.keys().cloned().collect();
                for id in ids {
                    self.finish(&id);
                }
                self.store_out(store).await;
                return;
            }
            self.on_tick(now);
            self.store_out(store).await;
            if self.cfg.store && last_purge.is_none_or(|t| now.duration_since(t) >= PURGE_EVERY) {
                last_purge = Some(now);
                let keep = i64::try_from(self.cfg.retention.as_millis()).unwrap_or(i64::MAX);
                match store.purge_traces(edge_store::now_ms().saturating_sub(keep)).await {
                    Ok(0) => {}
                    Ok(n) => tracing::info!(purged = n, "SIP traces past trace_retention_days deleted"),
                    Err(e) => tracing::warn!(error = %e, "SIP traces not purged"),
                }
            }
        }
    }

    fn on_event(&mut self, ev: TraceEvent, now: Instant) {
        match ev {
            TraceEvent::Message(c) => self.on_message(c, now),
            TraceEvent::Leg(l) => {
                if !self.calls.contains_key(&l.call_id) && self.calls.len() >= MAX_CALLS {
                    return;
                }
                let buf = self.calls.entry(l.call_id.clone()).or_insert_with(|| CallBuf {
                    legs: Vec::new(),
                    messages: Vec::new(),
                    bytes: 0,
                    omitted_messages: 0,
                    omitted_bytes: 0,
                    opened: now,
                    ended: None,
                });
                if !buf.legs.iter().any(|x| x.sip_call_id == l.sip_call_id) {
                    buf.legs.push(TraceLeg {
                        leg: l.leg.clone(),
                        sip_call_id: l.sip_call_id.clone(),
                    });
                }
                self.leg_of
                    .insert(l.sip_call_id.clone(), (l.call_id.clone(), l.leg.clone()));
                if let Some((_, held)) = self.pending.remove(&l.sip_call_id) {
                    for h in held {
                        self.pending_bytes = self.pending_bytes.saturating_sub(h.size);
                        self.attach(&l.call_id, &l.leg, h);
                    }
                }
            }
            TraceEvent::End { call_id } => {
                if let Some(buf) = self.calls.get_mut(&call_id) {
                    buf.ended.get_or_insert(now);
                }
            }
        }
    }

    fn on_message(&mut self, c: Captured, now: Instant) {
        let size = c.data.len();
        let Ok(msg) = Message::parse(c.data.clone()) else {
            // Not SIP we can read: HEP still gets the bytes as they were (nothing to redact by structure).
            let (src, dst) = self.ends(&c);
            self.send_hep(src, dst, &c, None, &c.data);
            return;
        };
        let Ok(sip_call_id) = msg.call_id().map(str::to_owned) else {
            let (src, dst) = self.ends(&c);
            let held = self.held(&c, &msg, size);
            let wire = held.msg.to_wire();
            self.send_hep(src, dst, &c, None, &wire);
            return;
        };
        let held = self.held(&c, &msg, size);
        if let Some((call_id, leg)) = self.leg_of.get(&sip_call_id).cloned() {
            self.attach(&call_id, &leg, held);
            return;
        }
        if self.pending_bytes + size > PENDING_MAX_BYTES {
            let wire = held.msg.to_wire();
            self.send_hep(held.src, held.dst, &c, None, &wire);
            return;
        }
        self.pending_bytes += size;
        self.pending
            .entry(sip_call_id)
            .or_insert_with(|| (now, Vec::new()))
            .1
            .push(held);
    }

    /// Source and destination of a captured message.
    fn ends(&self, c: &Captured) -> (SocketAddr, SocketAddr) {
        let local = self.local(c.transport);
        match c.direction {
            Direction::In => (c.peer, local),
            Direction::Out => (local, c.peer),
        }
    }

    fn local(&self, t: Transport) -> SocketAddr {
        let l = match t {
            Transport::Tls => self.cfg.local_tls.or(self.cfg.local_tcp),
            Transport::Tcp => self.cfg.local_tcp,
            _ => self.cfg.local_udp,
        };
        l.or(self.cfg.local_udp)
            .or(self.cfg.local_tcp)
            .unwrap_or(SocketAddr::from(([0, 0, 0, 0], 5060)))
    }

    /// The message as a trace keeps it: start line, headers and body, secrets removed.
    fn held(&self, c: &Captured, msg: &Message, size: usize) -> Held {
        let raw = msg.bytes();
        let line_end = raw.iter().position(|&b| b == b'\r' || b == b'\n').unwrap_or(raw.len());
        let start_line = String::from_utf8_lossy(&raw[..line_end]).into_owned();
        let headers = msg
            .fields()
            .map(|(_, name, value)| TraceHeader {
                name: name.to_owned(),
                value: redact::header_value(name, value).into_owned(),
            })
            .collect();
        let body_text = String::from_utf8_lossy(msg.body());
        let body = redact::body(&body_text).into_owned();
        let (src, dst) = self.ends(c);
        let local = self.local(c.transport);
        Held {
            msg: TraceMessage {
                t_us: c.t_us,
                leg: String::new(),
                direction: match c.direction {
                    Direction::In => TraceDirection::In,
                    Direction::Out => TraceDirection::Out,
                },
                peer: c.peer.to_string(),
                local: local.to_string(),
                transport: match c.transport {
                    Transport::Tls => "tls",
                    Transport::Tcp => "tcp",
                    _ => "udp",
                }
                .to_owned(),
                start_line,
                headers,
                body,
            },
            src,
            dst,
            size,
        }
    }

    /// Adds a message to its call's trace (within the bounds) and sends it to HEP with the call id.
    fn attach(&mut self, call_id: &str, leg: &str, mut h: Held) {
        if self.hep.is_some() {
            let wire = h.msg.to_wire();
            let ip_proto = if h.msg.transport == "udp" { 17 } else { 6 };
            self.hep_packet(h.src, h.dst, ip_proto, h.msg.t_us, Some(call_id), &wire);
        }
        if !self.cfg.store {
            return;
        }
        let Some(buf) = self.calls.get_mut(call_id) else { return };
        if buf.messages.len() >= self.cfg.max_messages || buf.bytes + h.size > self.cfg.max_bytes {
            buf.omitted_messages += 1;
            buf.omitted_bytes += h.size as u64;
            return;
        }
        buf.bytes += h.size;
        h.msg.leg = leg.to_owned();
        buf.messages.push(h.msg);
    }

    fn send_hep(&self, src: SocketAddr, dst: SocketAddr, c: &Captured, corr: Option<&str>, payload: &[u8]) {
        let ip_proto = if c.transport == Transport::Udp { 17 } else { 6 };
        self.hep_packet(src, dst, ip_proto, c.t_us, corr, payload);
    }

    fn hep_packet(
        &self,
        src: SocketAddr,
        dst: SocketAddr,
        ip_proto: u8,
        t_us: i64,
        corr: Option<&str>,
        payload: &[u8],
    ) {
        let (Some(sock), Some(to)) = (&self.hep, self.cfg.hep) else {
            return;
        };
        let packet = hep::encode(&hep::HepMessage {
            src,
            dst,
            ip_proto,
            t_us,
            capture_id: self.cfg.hep_capture_id,
            correlation_id: corr,
            payload,
        });
        // Fire and forget: a collector that is away must not hold traces back.
        if let Some(p) = packet {
            if sock.send_to(&p, to).is_ok() {
                self.stats.hep_sent.fetch_add(1, Ordering::Relaxed);
            }
        }
    }

    fn on_tick(&mut self, now: Instant) {
        let due: Vec<String> = self
            .calls
            .iter()
            .filter(|(_, b)| {
                b.ended.is_some_and(|e| now.duration_since(e) >= LINGER) || now.duration_since(b.opened) >= MAX_CALL_AGE
            })
            .map(|(id, _)| id.clone())
            .collect();
        for id in due {
            self.finish(&id);
        }
        let expired: Vec<String> = self
            .pending
            .iter()
            .filter(|(_, (t, _))| now.duration_since(*t) >= PENDING_TTL)
            .map(|(k, _)| k.clone())
            .collect();
        for k in expired {
            if let Some((_, held)) = self.pending.remove(&k) {
                for h in held {
                    self.pending_bytes = self.pending_bytes.saturating_sub(h.size);
                    if self.hep.is_some() {
                        let wire = h.msg.to_wire();
                        let ip_proto = if h.msg.transport == "udp" { 17 } else { 6 };
                        self.hep_packet(h.src, h.dst, ip_proto, h.msg.t_us, None, &wire);
                    }
                }
            }
        }
    }

    /// Builds the call's trace document and queues it for the store; forgets the call.
    fn finish(&mut self, call_id: &str) {
        let Some(mut buf) = self.calls.remove(call_id) else {
            return;
        };
        for l in &buf.legs {
            self.leg_of.remove(&l.sip_call_id);
        }
        if !self.cfg.store {
            return;
        }
        // Stable: messages of one instant keep the engine's order.
        buf.messages.sort_by_key(|m| m.t_us);
        let trace = CallTrace {
            call_id: call_id.to_owned(),
            legs: buf.legs,
            truncated: buf.omitted_messages > 0,
            omitted_messages: buf.omitted_messages,
            omitted_bytes: buf.omitted_bytes,
            messages: buf.messages,
        };
        match serde_json::to_string(&trace) {
            Ok(body) => self.out.push(StoredTrace {
                call_id: trace.call_id,
                created_at_ms: edge_store::now_ms(),
                messages: i64::try_from(trace.messages.len()).unwrap_or(i64::MAX),
                body,
            }),
            Err(e) => tracing::error!(call = %call_id, error = %e, "SIP trace not serialised"),
        }
    }

    async fn store_out(&mut self, store: &Store) {
        if self.out.is_empty() {
            return;
        }
        let batch = std::mem::take(&mut self.out);
        match store.put_traces(&batch).await {
            Ok(()) => {
                self.stats.stored.fetch_add(batch.len() as u64, Ordering::Relaxed);
            }
            Err(e) => tracing::warn!(traces = batch.len(), error = %e, "SIP traces not stored"),
        }
    }
}
