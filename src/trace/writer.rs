//! The trace writer, on a thread of its own: attributes the engine's captured messages to calls by their
//! SIP Call-ID (the legs the call controller named), keeps each call's within its bounds, stores a call's
//! trace as one row (compact text) a little after its end, purges old ones, and sends every message as HEPv3.

/// The writer's maps, keyed by peers' Call-IDs: foldhash with a per-process random seed (hashbrown's own
/// default) rather than SipHash, which took a tenth of the writer's time; an attacker who floods Call-IDs
/// can at worst slow the writer, whose full queue drops (counted), never the SIP path.
type HashMap<K, V> = std::collections::HashMap<K, V, foldhash::quality::RandomState>;
use std::net::{SocketAddr, UdpSocket};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use bytes::Bytes;
use edge_api::traces::{stored, TraceDirection};
use edge_store::{Store, StoredTrace};
use sip_core::message::{HeaderName, Message, Transport};
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

/// What [`redact::may_hold_secrets`] and the parse said of a captured message.
#[derive(Clone, Copy)]
enum Suspect<'a> {
    /// Neither `authorization` nor `a=crypto` anywhere in it: kept as it came.
    Clean,
    /// It may hold secrets and parsed: its headers and body say whether it does.
    Parsed(&'a Message),
    /// It may hold secrets and did not parse: redacted as text.
    Unparsed,
}

/// A message ready for a trace (secrets removed), with what HEP needs.
struct Held {
    t_us: i64,
    direction: Direction,
    transport: Transport,
    peer: SocketAddr,
    local: SocketAddr,
    /// The message as received or sent (a reference to the engine's bytes), or its redacted copy.
    text: Bytes,
    /// Index of its leg in the call's legs (set when attached).
    leg: usize,
}

impl Held {
    fn ends(&self) -> (SocketAddr, SocketAddr) {
        match self.direction {
            Direction::In => (self.peer, self.local),
            Direction::Out => (self.local, self.peer),
        }
    }
}

struct CallBuf {
    /// `(sip_call_id, leg)` in the order opened.
    legs: Vec<(String, String)>,
    messages: Vec<Held>,
    bytes: usize,
    omitted_messages: u64,
    omitted_bytes: u64,
    opened: Instant,
    ended: Option<Instant>,
}

struct Writer {
    cfg: TraceConfig,
    stats: Arc<TraceStats>,
    /// SIP Call-ID -> (public call id, index of the leg in its call's legs); shared, so a message's
    /// lookup costs a reference count, not a copy.
    leg_of: HashMap<String, (Arc<str>, usize)>,
    calls: HashMap<String, CallBuf>,
    /// SIP Call-ID -> (first seen, messages).
    pending: HashMap<String, (Instant, Vec<Held>)>,
    pending_bytes: usize,
    hep: Option<UdpSocket>,
    /// Traces built, waiting to be stored.
    out: Vec<StoredTrace>,
    /// Addresses as text: a call's messages go to a handful of addresses, and formatting a `SocketAddr`
    /// per message was a quarter of what building a trace cost. Cleared when it grows past
    /// [`ADDR_TEXT_MAX`].
    addr_text: HashMap<SocketAddr, Box<str>>,
}

/// Distinct addresses kept formatted at most.
const ADDR_TEXT_MAX: usize = 4_096;

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
                    leg_of: HashMap::default(),
                    calls: HashMap::default(),
                    pending: HashMap::default(),
                    pending_bytes: 0,
                    hep,
                    out: Vec::new(),
                    addr_text: HashMap::default(),
                };
                w.run(&own, rx).await;
            });
            let _ = done_tx.send(());
        })
        .context("starting the trace writer's thread")?;
    Ok(done_rx)
}

/// The message's Call-ID. Nearly every message spells it `Call-ID:` at the start of a line (the edge's own
/// always do): that is one vectorised search with a searcher built once, where the full header scan
/// ([`sip_core::scan::call_id`]) looked at every line. Anything else (the compact `i:`, another case, a
/// folded or empty value, `Call-ID:` only in the body) goes through the full scan. A message with two
/// Call-ID headers (malformed) may be attributed by its `Call-ID:` one.
fn call_id_of(data: &[u8]) -> Option<&[u8]> {
    use memchr::memmem::Finder;
    use std::sync::LazyLock;
    static NAME: LazyLock<Finder<'static>> = LazyLock::new(|| Finder::new(b"\nCall-ID:"));
    static BLANK_CRLF: LazyLock<Finder<'static>> = LazyLock::new(|| Finder::new(b"\n\r\n"));
    static BLANK_LF: LazyLock<Finder<'static>> = LazyLock::new(|| Finder::new(b"\n\n"));
    let fast = || {
        let at = NAME.find(data)?;
        // In the header block: no blank line before it (its `\n` may end the one before the headers end).
        let head = &data[..=at];
        if BLANK_CRLF.find(head).is_some() || BLANK_LF.find(head).is_some() {
            return None;
        }
        let from = at + b"\nCall-ID:".len();
        let rest = data.get(from..)?;
        let end = memchr::memchr2(b'\r', b'\n', rest)?;
        // A folded value continues on the next line (which starts with a blank): the full scan knows how.
        let next = end + if rest[end..].starts_with(b"\r\n") { 2 } else { 1 };
        if matches!(rest.get(next), Some(b' ' | b'\t')) {
            return None;
        }
        let value = rest[..end].trim_ascii();
        (!value.is_empty()).then_some(value)
    };
    fast().or_else(|| sip_core::scan::call_id(data))
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
                let leg = match buf.legs.iter().position(|(c, _)| *c == l.sip_call_id) {
                    Some(i) => i,
                    None => {
                        buf.legs.push((l.sip_call_id.clone(), l.leg));
                        buf.legs.len() - 1
                    }
                };
                self.leg_of
                    .insert(l.sip_call_id.clone(), (Arc::from(l.call_id.as_str()), leg));
                if let Some((_, held)) = self.pending.remove(&l.sip_call_id) {
                    for h in held {
                        self.pending_bytes = self.pending_bytes.saturating_sub(h.text.len());
                        self.attach(&l.call_id, leg, h);
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

    /// Finds the message's Call-ID with the dispatcher's header scan rather than a second full parse (the
    /// engine parses every message already; parsing it again here was most of what tracing cost). Only a
    /// message that may hold a secret is parsed, to redact it.
    fn on_message(&mut self, c: Captured, now: Instant) {
        let h = if redact::may_hold_secrets(&c.data) {
            let Ok(msg) = Message::parse(c.data.clone()) else {
                // Not SIP we can read: HEP gets the bytes as they were, less what looks like a secret.
                let h = self.held(c, Suspect::Unparsed);
                self.send_hep(&h, None);
                return;
            };
            self.held(c, Suspect::Parsed(&msg))
        } else {
            self.held(c, Suspect::Clean)
        };
        let Some(sip_call_id) = call_id_of(&h.text).and_then(|v| std::str::from_utf8(v).ok()) else {
            self.send_hep(&h, None);
            return;
        };
        if let Some((call_id, leg)) = self.leg_of.get(sip_call_id) {
            let (call_id, leg) = (call_id.clone(), *leg);
            self.attach(&call_id, leg, h);
            return;
        }
        let size = h.text.len();
        if self.pending_bytes + size > PENDING_MAX_BYTES {
            self.send_hep(&h, None);
            return;
        }
        self.pending_bytes += size;
        let sip_call_id = sip_call_id.to_owned();
        self.pending
            .entry(sip_call_id)
            .or_insert_with(|| (now, Vec::new()))
            .1
            .push(h);
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

    /// The message as a trace keeps it: the engine's bytes as they were, or, when they hold credentials
    /// or SDES keys, a copy with those removed.
    fn held(&self, c: Captured, suspect: Suspect<'_>) -> Held {
        let text = match suspect {
            Suspect::Clean => c.data,
            Suspect::Parsed(m)
                if m.header(&HeaderName::Authorization).is_some()
                    || m.header(&HeaderName::ProxyAuthorization).is_some()
                    || memchr::memmem::find(m.body(), b"a=crypto").is_some() =>
            {
                Bytes::from(redact::message(&String::from_utf8_lossy(m.bytes())).into_bytes())
            }
            Suspect::Parsed(m) => m.bytes().clone(),
            // Bytes that did not parse are kept as they came, less anything that looks like a secret.
            Suspect::Unparsed => Bytes::from(redact::message(&String::from_utf8_lossy(&c.data)).into_bytes()),
        };
        Held {
            t_us: c.t_us,
            direction: c.direction,
            transport: c.transport,
            peer: c.peer,
            local: self.local(c.transport),
            text,
            leg: 0,
        }
    }

    /// Adds a message to its call's trace (within the bounds) and sends it to HEP with the call id.
    fn attach(&mut self, call_id: &str, leg: usize, mut h: Held) {
        self.send_hep(&h, Some(call_id));
        if !self.cfg.store {
            return;
        }
        let Some(buf) = self.calls.get_mut(call_id) else { return };
        let size = h.text.len();
        if buf.messages.len() >= self.cfg.max_messages || buf.bytes + size > self.cfg.max_bytes {
            buf.omitted_messages += 1;
            buf.omitted_bytes += size as u64;
            return;
        }
        buf.bytes += size;
        h.leg = leg;
        buf.messages.push(h);
    }

    fn send_hep(&self, h: &Held, corr: Option<&str>) {
        let (Some(sock), Some(to)) = (&self.hep, self.cfg.hep) else {
            return;
        };
        let (src, dst) = h.ends();
        let packet = hep::encode(&hep::HepMessage {
            src,
            dst,
            ip_proto: if h.transport == Transport::Udp { 17 } else { 6 },
            t_us: h.t_us,
            capture_id: self.cfg.hep_capture_id,
            correlation_id: corr,
            payload: &h.text,
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
                    self.pending_bytes = self.pending_bytes.saturating_sub(h.text.len());
                    self.send_hep(&h, None);
                }
            }
        }
    }

    /// Builds the call's stored trace and queues it for the store; forgets the call.
    fn finish(&mut self, call_id: &str) {
        let Some(mut buf) = self.calls.remove(call_id) else {
            return;
        };
        for (sip_call_id, _) in &buf.legs {
            self.leg_of.remove(sip_call_id);
        }
        if !self.cfg.store {
            return;
        }
        // Stable: messages of one instant keep the engine's order.
        buf.messages.sort_by_key(|m| m.t_us);
        let mut body = stored::begin(
            &buf.legs,
            buf.omitted_messages,
            buf.omitted_bytes,
            buf.bytes + 96 * buf.messages.len(),
        );
        if self.addr_text.len() > ADDR_TEXT_MAX {
            self.addr_text.clear();
        }
        for m in &buf.messages {
            for a in [m.peer, m.local] {
                self.addr_text.entry(a).or_insert_with(|| a.to_string().into());
            }
            let addr = |a: &SocketAddr| self.addr_text.get(a).map_or("", |t| &**t);
            stored::push(
                &mut body,
                &stored::StoredMessage {
                    t_us: m.t_us,
                    direction: match m.direction {
                        Direction::In => TraceDirection::In,
                        Direction::Out => TraceDirection::Out,
                    },
                    transport: match m.transport {
                        Transport::Tls => "tls",
                        Transport::Tcp => "tcp",
                        _ => "udp",
                    },
                    peer: addr(&m.peer),
                    local: addr(&m.local),
                    leg: m.leg,
                    // The whole-slice check is vectorised; `from_utf8_lossy` goes byte by byte.
                    text: &match std::str::from_utf8(&m.text) {
                        Ok(t) => std::borrow::Cow::Borrowed(t),
                        Err(_) => String::from_utf8_lossy(&m.text),
                    },
                },
            );
        }
        self.out.push(StoredTrace {
            call_id: call_id.to_owned(),
            created_at_ms: edge_store::now_ms(),
            messages: i64::try_from(buf.messages.len()).unwrap_or(i64::MAX),
            body,
        });
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

#[cfg(test)]
mod tests {
    use super::call_id_of;

    /// The fast path finds what the full scan finds, on the torture messages of RFC 4475 and the carriers'
    /// messages of the fuzz corpus, and on the shapes it hands over to the scan.
    #[test]
    fn the_fast_call_id_is_the_scans() {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz/corpus/sip_message");
        let mut seen = 0;
        for entry in std::fs::read_dir(&dir).unwrap() {
            let data = std::fs::read(entry.unwrap().path()).unwrap();
            assert_eq!(
                call_id_of(&data),
                sip_core::scan::call_id(&data),
                "{}",
                String::from_utf8_lossy(&data)
            );
            seen += 1;
        }
        assert!(seen > 10, "{seen} corpus messages");
        for (msg, want) in [
            (
                &b"INVITE sip:a@b SIP/2.0\r\nCall-ID: abc@h \r\n\r\n"[..],
                Some(&b"abc@h"[..]),
            ),
            (b"INVITE sip:a@b SIP/2.0\nCall-ID:abc\n\n", Some(b"abc")),
            (b"INVITE sip:a@b SIP/2.0\r\ni: compact\r\n\r\n", Some(b"compact")),
            (
                b"INVITE sip:a@b SIP/2.0\r\nCall-ID: fold\r\n ed\r\n\r\n",
                sip_core::scan::call_id(b"INVITE sip:a@b SIP/2.0\r\nCall-ID: fold\r\n ed\r\n\r\n"),
            ),
            (b"INVITE sip:a@b SIP/2.0\r\nVia: x\r\n\r\nCall-ID: in-body\r\n", None),
            (b"INVITE sip:a@b SIP/2.0\nVia: x\n\nCall-ID: in-body\n", None),
            (b"INVITE sip:a@b SIP/2.0\r\nCall-ID:   \r\n\r\n", None),
            (b"INVITE sip:a@b SIP/2.0\r\nCall-ID: no-end", Some(b"no-end")),
        ] {
            assert_eq!(call_id_of(msg), want, "{}", String::from_utf8_lossy(msg));
            assert_eq!(
                call_id_of(msg),
                sip_core::scan::call_id(msg),
                "{}",
                String::from_utf8_lossy(msg)
            );
        }
    }
}
