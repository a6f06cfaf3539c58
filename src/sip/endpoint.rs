//! The edge's SIP endpoint, sans-IO: bytes and the time go in, transmits and the next deadline come out.
//!
//! It reads one message top to bottom: who sent it, by address (carrier, agent network or outsider) ->
//! admission (per-source buckets; past them the bytes are dropped unread) -> parse -> validate (400 with a
//! Warning naming the fault) -> for outsiders, what they may do without costing state (their requests in
//! our dialogs, an agent's digest-checked INVITE; everything else one bounded stateless answer or nothing)
//! -> transaction layer (retransmissions absorbed; a share of it kept for carriers) -> the core answers of
//! RFC 3261 section 8.2 (483, 405/501, 416, 420, 415) -> the method: OPTIONS answered here, INVITE handed
//! to the call router. The tokio driver in `server` owns the sockets and the clock.

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Instant;

use bytes::Bytes;
use sip_core::build::{new_token, ResponseBuilder};
use sip_core::message::{validate_request, HeaderName, Message, Method, ParseError, Uri};
use sip_core::transaction::{Incoming, TransactionLayer, TxConfig, TxError, TxEvent, TxKey};

use super::admission::{AdmissionConfig, SourceClass};
use super::agent_auth::AuthOutcome;
use super::salvage;
use crate::call::outcome::Refusal;
use crate::call::{AgentOrigin, CallController, Ctx};
use crate::shard::limits::{SharedAdmission, SharedAgentAuth};
/// Bytes to put on the wire (the SIP core's type; re-exported here for call control).
pub use crate::transport::Transmit;
use crate::transport::{peer_of as peer, Link, SendFailure};

/// Methods this edge implements; the Allow header of every 405 and OPTIONS answer.
pub const ALLOW: &str = "INVITE, ACK, BYE, CANCEL, OPTIONS, INFO, UPDATE, PRACK, REFER, NOTIFY";
/// Option tags the edge itself implements, in its `Supported` and accepted in a `Require`: none. It sends
/// no reliable provisionals (`100rel`) and runs no session timer of its own: `Session-Expires` and the
/// refreshes are relayed end to end between the two legs, so `timer` is the far peer's word to pass on
/// (`call::leg::supported_across`), never the edge's to claim (an OPTIONS answer speaks for the edge).
pub const SUPPORTED: &[&str] = &[];
/// Bodies we accept in an INVITE.
pub const ACCEPT: &str = "application/sdp";

/// Who may send us requests, and what to do with everyone else.
pub trait SourcePolicy: Send {
    /// The carrier's name when `source` is allowed.
    fn carrier_for(&self, source: SocketAddr) -> Option<Arc<str>>;
    /// The `[[agent_networks]]` entry holding `source`, if any.
    fn agent_network_for(&self, source: SocketAddr) -> Option<Arc<str>>;
    /// True: answer strangers 403; false: drop silently.
    fn reject_unknown(&self) -> bool;
    /// May an outsider at `source` be offered digest (`outbound.agent_digest_from`)?
    fn digest_offered_to(&self, source: SocketAddr) -> bool;
    /// The carrier's `media_encryption` (SRTP toward its leg); `none` unless configured.
    fn carrier_media_encryption(&self, _carrier: &str) -> edge_media::MediaEncryption {
        edge_media::MediaEncryption::None
    }
}

/// Counters exported on /metrics; atomics so the API task reads them without locking the engine.
#[derive(Debug, Default)]
pub struct EndpointStats {
    pub requests: AtomicU64,
    pub responses_in: AtomicU64,
    pub malformed_answered: AtomicU64,
    pub malformed_dropped: AtomicU64,
    pub unknown_source: AtomicU64,
    pub retransmissions_absorbed: AtomicU64,
    pub stray_dropped: AtomicU64,
    pub overload_rejected: AtomicU64,
    /// Server transactions opened, by who asked: carriers, and everyone else (agents, dialog peers).
    pub transactions_carrier: AtomicU64,
    pub transactions_other: AtomicU64,
    /// Non-carrier requests refused because only the carriers' share of `sip.max_transactions` was left.
    pub reserved_for_carriers: AtomicU64,
    /// Stateless answers to outsiders (403, 481, 407, 400), and those not sent: silenced by
    /// `routing.unknown_source = "drop"`, or larger than twice the request.
    pub outsider_answered: AtomicU64,
    pub outsider_silenced: AtomicU64,
    pub outsider_too_large: AtomicU64,
    /// Bytes of outsiders' requests read, and of the answers sent to them (amplification).
    pub outsider_bytes_in: AtomicU64,
    pub outsider_bytes_out: AtomicU64,
    /// Live transactions, as of the engine's last turn.
    pub transactions_live: AtomicU64,
}

/// Who sent a request, which decides what an out-of-dialog INVITE means.
#[derive(Debug, Clone)]
enum Origin {
    /// A carrier's address: its INVITEs are inbound calls.
    Carrier(Arc<str>),
    /// An agent placing an outbound call (trusted network, or authenticated by digest).
    Agent(AgentOrigin),
    /// Anyone else, allowed only inside a dialog we hold (checked by the call controller).
    DialogPeer,
}

impl Origin {
    /// The label on INVITE counters.
    fn label(&self) -> &str {
        match self {
            Origin::Carrier(c) => c,
            Origin::Agent(_) => "agent",
            Origin::DialogPeer => "peer",
        }
    }
}

/// A final answer the endpoint gives itself: status, reason, extra headers.
type Answer = (u16, &'static str, Vec<(&'static str, String)>);

/// Static settings of the endpoint.
#[derive(Debug, Clone)]
pub struct EndpointConfig {
    /// Server/User-Agent value; empty: none sent. Outsiders never get one.
    pub server_name: String,
    /// Host named in our Warning headers.
    pub warn_agent: String,
    pub tx: TxConfig,
    pub admission: AdmissionConfig,
}

pub struct Endpoint {
    cfg: EndpointConfig,
    tx: TransactionLayer,
    policy: Box<dyn SourcePolicy>,
    /// Shared by every engine shard: one set of buckets for the edge.
    admission: SharedAdmission,
    /// Digest for agents outside `[[agent_networks]]`; `None`: `outbound.agent_digest = false`. Shared by
    /// every engine shard (a nonce is good for one call, whichever shard takes it).
    agent_auth: Option<SharedAgentAuth>,
    pub calls: CallController,
    /// Stateless answers (400s, 403s) that bypass the transaction layer.
    out: VecDeque<Transmit>,
    pub stats: Arc<EndpointStats>,
    /// Live transactions past which only carriers may open new ones.
    shared_limit: usize,
    /// The time of the latest input, for what happens between inputs (vouching on send).
    last_now: Instant,
    /// The failed send being reported (its transaction and the transport's words), read when its
    /// `TxEvent::TransportError` is drained so the hop records why.
    send_failure: Option<(TxKey, String)>,
    /// This endpoint's share of `stats.transactions_live` as last published (the engine shards add up
    /// their tables in that one gauge).
    published_live: std::cell::Cell<u64>,
    /// The wall clock in Unix milliseconds, read each time call control is handed an event (its records
    /// are stamped with it).
    wall: WallClock,
    /// SIGTERM's drain: new calls and OPTIONS get 503 so carriers move to other nodes; calls in progress
    /// go on.
    draining: bool,
}

/// `Retry-After` (seconds) of the 503s a draining edge answers new calls and OPTIONS with: by then the
/// node is usually back from its restart.
pub const DRAIN_RETRY_AFTER: &str = "30";

/// Reads the wall clock (Unix milliseconds); tests give a fake one.
pub type WallClock = Box<dyn Fn() -> i64 + Send>;

impl Endpoint {
    pub fn new(
        cfg: EndpointConfig,
        policy: Box<dyn SourcePolicy>,
        calls: CallController,
        admission: SharedAdmission,
        agent_auth: Option<SharedAgentAuth>,
        now: Instant,
    ) -> Self {
        let shared_limit = admission.shared_transaction_limit(cfg.tx.max_transactions);
        Endpoint {
            tx: TransactionLayer::new(cfg.tx),
            cfg,
            policy,
            admission,
            agent_auth,
            calls,
            out: VecDeque::new(),
            stats: Arc::new(EndpointStats::default()),
            shared_limit,
            last_now: now,
            send_failure: None,
            published_live: std::cell::Cell::new(0),
            wall: Box::new(edge_store::now_ms),
            draining: false,
        }
    }

    /// Starts (or stops) refusing new calls and OPTIONS with 503 + `Retry-After` (SIGTERM's drain).
    pub fn set_draining(&mut self, draining: bool) {
        self.draining = draining;
    }

    pub fn is_draining(&self) -> bool {
        self.draining
    }

    /// A reloaded configuration: who may send what (`[[carriers]]`, `[[agent_networks]]`,
    /// `routing.unknown_source`, `outbound.agent_digest_from`) and the share of the transaction table kept
    /// for carriers. Transactions and calls in progress are untouched.
    pub fn reload(&mut self, policy: Box<dyn SourcePolicy>, admission: AdmissionConfig) {
        self.policy = policy;
        self.cfg.admission = admission;
        self.shared_limit = self.admission.shared_transaction_limit(self.cfg.tx.max_transactions);
    }

    /// Ends every call still up (the end of a drain): BYE on both legs through client transactions, which
    /// go on retransmitting while the engine runs; records say "edge drained".
    pub fn end_drained(&mut self, now: Instant) {
        let mut ctx = Ctx {
            now,
            wall_ms: (self.wall)(),
            tx: &mut self.tx,
            out: &mut self.out,
        };
        self.calls.end_drained(&mut ctx);
        self.drain_tx_events(now);
    }

    /// True when a draining edge has nothing left to wait for: no call, and none of our BYEs or CANCELs
    /// still without a final answer.
    pub fn is_idle(&self) -> bool {
        self.calls.active() == 0 && self.calls.requests_in_flight(&self.tx) == 0
    }

    /// Replaces the wall clock the call records are stamped with (a fake clock in tests).
    pub fn set_wall_clock(&mut self, wall: WallClock) {
        self.wall = wall;
    }

    /// Replaces the source of the tags, Call-IDs and branches call control mints (a seeded one in tests).
    pub fn set_entropy(&mut self, rng: Box<dyn crate::call::Entropy>) {
        self.calls.set_entropy(rng);
    }

    /// The next call or voicemail record for the store, in the order produced.
    pub fn poll_record(&mut self) -> Option<crate::call::Persist> {
        self.calls.poll_record()
    }

    /// The next metric update call control produced, for the driver to apply.
    pub fn poll_metric(&mut self) -> Option<crate::call::MetricUpdate> {
        self.calls.poll_metric()
    }

    /// Admission counters, for /metrics.
    pub fn admission_stats(&self) -> Arc<super::admission::AdmissionStats> {
        self.admission.stats.clone()
    }

    /// Digest counters (checks, and the guard against guessing), for /metrics.
    pub fn agent_auth_stats(
        &self,
    ) -> Option<(
        Arc<super::agent_auth::AgentAuthStats>,
        Arc<super::digest_guard::GuardStats>,
    )> {
        self.agent_auth.as_ref().map(|a| (a.stats.clone(), a.guard_stats()))
    }

    /// Who `source` is by its address alone.
    fn classify(&self, source: SocketAddr) -> SourceClass {
        if let Some(c) = self.policy.carrier_for(source) {
            return SourceClass::Carrier(c);
        }
        if let Some(n) = self.policy.agent_network_for(source) {
            return SourceClass::AgentNetwork(n);
        }
        SourceClass::Outsider
    }

    /// One message from the network.
    pub fn handle(&mut self, now: Instant, source: SocketAddr, link: Link, data: Bytes) {
        self.handle_message(now, source, link, data);
        self.drain_tx_events(now);
    }

    fn handle_message(&mut self, now: Instant, source: SocketAddr, link: Link, data: Bytes) {
        self.last_now = now;
        let class = self.classify(source);
        // Before parsing: a flood past its bucket costs a table lookup, nothing more.
        if self.admission.admit(now, source.ip(), &class).is_err() {
            return;
        }
        let outsider = class == SourceClass::Outsider;
        if outsider {
            self.stats
                .outsider_bytes_in
                .fetch_add(data.len() as u64, Ordering::Relaxed);
        }
        let parsed = match link {
            Link::Udp => Message::parse(data.clone()),
            Link::Tcp(_) | Link::Tls(_) | Link::Connect | Link::ConnectTls => Message::parse_stream(data.clone()),
        };
        let msg = match parsed {
            Ok(m) => m,
            Err(e) => {
                let status = match e {
                    ParseError::UnsupportedVersion => "505 Version Not Supported",
                    _ => "400 Bad Request",
                };
                return self.malformed(source, link, &data, status, &e.to_string(), outsider);
            }
        };
        // At debug level every log line about this message carries its Call-ID. Not at info: the span's
        // fields are formatted on every message (26k of 387k instructions per call under callgrind, at
        // info); the few info and warn lines of the message path name their call themselves.
        let span = tracing::debug_span!("sip", call_id = msg.call_id().unwrap_or("-"));
        let _entered = span.enter();
        if !msg.is_request() {
            self.stats.responses_in.fetch_add(1, Ordering::Relaxed);
            let peer = peer(source, link);
            match self.tx.handle_incoming(now, peer, msg) {
                Incoming::Response { key, msg } => {
                    let mut ctx = Ctx {
                        now,
                        wall_ms: (self.wall)(),
                        tx: &mut self.tx,
                        out: &mut self.out,
                    };
                    self.calls.on_response(&mut ctx, &key, msg);
                }
                Incoming::Absorbed { .. } => {}
                Incoming::StrayResponse { msg } => {
                    let mut ctx = Ctx {
                        now,
                        wall_ms: (self.wall)(),
                        tx: &mut self.tx,
                        out: &mut self.out,
                    };
                    if !self.calls.on_stray_response(&mut ctx, &msg) {
                        self.stats.stray_dropped.fetch_add(1, Ordering::Relaxed);
                    }
                }
                _ => {
                    self.stats.stray_dropped.fetch_add(1, Ordering::Relaxed);
                }
            }
            return;
        }
        self.stats.requests.fetch_add(1, Ordering::Relaxed);
        if let Err(e) = validate_request(&msg) {
            return self.malformed(source, link, &data, "400 Bad Request", &e.to_string(), outsider);
        }
        let origin = match class {
            _ if self.agent_digest_invite(&msg, source, outsider) => {
                match self.agent_digest(now, source, link, &msg, data.len(), outsider) {
                    Some(agent) => Origin::Agent(AgentOrigin::Digest(agent)),
                    None => return,
                }
            }
            SourceClass::Carrier(c) => Origin::Carrier(c),
            SourceClass::AgentNetwork(n) => Origin::Agent(AgentOrigin::Network(n.to_string())),
            SourceClass::Outsider => {
                if !self.outsider_may_enter(now, source, &msg) {
                    self.stats.unknown_source.fetch_add(1, Ordering::Relaxed);
                    // Inside a dialog (or cancelling) what we hold nothing of: 481, as for any unknown dialog.
                    let (code, reason) = if in_dialog(&msg) || matches!(msg.method(), Some(Method::Cancel)) {
                        (481, "Call/Transaction Does Not Exist")
                    } else {
                        (403, "Forbidden")
                    };
                    return self.refuse_outsider(source, link, &msg, data.len(), code, reason);
                }
                Origin::DialogPeer
            }
        };
        // Carriers may use the whole transaction table; everyone else stops short of the carriers' share.
        let carrier = matches!(origin, Origin::Carrier(_));
        let is_ack = matches!(msg.method(), Some(Method::Ack));
        if !carrier && !is_ack && self.tx.len() >= self.shared_limit && !self.tx.is_retransmission(&msg) {
            self.stats.reserved_for_carriers.fetch_add(1, Ordering::Relaxed);
            if outsider {
                return;
            }
            let tag = new_token();
            let b = self
                .response(&msg, source, 503, "Service Unavailable", &tag)
                .header("Retry-After", "5")
                .build();
            self.send_stateless(source, link, b);
            return;
        }
        match self.tx.handle_incoming(now, peer(source, link), msg) {
            Incoming::NewRequest { key, msg } => {
                let counter = if carrier {
                    &self.stats.transactions_carrier
                } else {
                    &self.stats.transactions_other
                };
                counter.fetch_add(1, Ordering::Relaxed);
                self.on_new_request(now, source, link, &origin, key, msg)
            }
            Incoming::Ack { msg, .. } => self.calls.on_ack(&msg, source, &*self.policy),
            Incoming::Cancel {
                cancel_key,
                invite_key,
                msg,
            } => self.on_cancel(now, source, cancel_key, invite_key, msg),
            Incoming::Absorbed { .. } => {
                self.stats.retransmissions_absorbed.fetch_add(1, Ordering::Relaxed);
            }
            Incoming::Rejected { msg, error } => {
                let carrier = match &origin {
                    Origin::Carrier(c) => Some(c.clone()),
                    _ => None,
                };
                self.rejected(now, source, link, &msg, &error, carrier.as_deref())
            }
            Incoming::Response { .. } | Incoming::StrayResponse { .. } => {}
        }
    }

    /// RFC 3261 8.2 in its order, then the method.
    fn on_new_request(
        &mut self,
        now: Instant,
        source: SocketAddr,
        link: Link,
        origin: &Origin,
        key: TxKey,
        msg: Message,
    ) {
        let method = msg.method().cloned().unwrap_or(Method::Options);
        if method == Method::Ack {
            return;
        }
        // INVITEs already got 100 Trying from the transaction layer (AutoTrying::Immediate), which stops
        // the carrier's retransmissions (Timer A) while we decide.
        let mut why = None;
        let (code, reason, extra) = match self.core_answer(&method, &msg) {
            Some(answer) => answer,
            None => {
                let in_dialog = msg.to().ok().is_some_and(|t| t.tag().is_some());
                let mut ctx = Ctx {
                    now,
                    wall_ms: (self.wall)(),
                    tx: &mut self.tx,
                    out: &mut self.out,
                };
                if in_dialog {
                    if self
                        .calls
                        .on_in_dialog(&mut ctx, key.clone(), msg.clone(), source, &*self.policy)
                    {
                        return;
                    }
                    // RFC 3261 12.2.2: a request in a dialog we do not hold.
                    (481, "Call/Transaction Does Not Exist", vec![])
                } else if method == Method::Invite && self.draining && !matches!(origin, Origin::DialogPeer) {
                    why = Some(Refusal::Draining);
                    (
                        503,
                        "Service Unavailable",
                        vec![("Retry-After", DRAIN_RETRY_AFTER.to_owned())],
                    )
                } else if method == Method::Invite {
                    let taken = match origin {
                        Origin::Carrier(carrier) => {
                            let encryption = self.policy.carrier_media_encryption(carrier);
                            self.calls.on_carrier_invite(
                                &mut ctx,
                                key.clone(),
                                msg.clone(),
                                peer(source, link),
                                carrier,
                                encryption,
                            )
                        }
                        Origin::Agent(how) => self.calls.on_agent_invite(
                            &mut ctx,
                            key.clone(),
                            msg.clone(),
                            peer(source, link),
                            how.clone(),
                        ),
                        Origin::DialogPeer => Err(crate::call::Reject {
                            code: 403,
                            reason: "Forbidden",
                            headers: vec![],
                            why: None,
                        }),
                    };
                    match taken {
                        Ok(()) => return,
                        Err(r) => {
                            why = r.why;
                            (r.code, r.reason, r.headers)
                        }
                    }
                } else {
                    (481, "Call/Transaction Does Not Exist", vec![])
                }
            }
        };
        if method == Method::Invite {
            crate::call::count_invite_answer(origin.label(), code);
            if let (Origin::Carrier(carrier), false) = (origin, in_dialog(&msg)) {
                let why = why.unwrap_or_else(|| Refusal::Answered {
                    code,
                    reason: reason.to_owned(),
                });
                let wall = (self.wall)();
                self.calls.record_refusal(now, wall, &msg, carrier, code, why);
            }
        }
        let tag = new_token();
        let mut b = self.response(&msg, source, code, reason, &tag);
        for (n, v) in &extra {
            b = b.header(n, v);
        }
        self.respond(now, &key, b.build_message());
    }

    /// The answer the edge itself gives, or `None` when the request goes on to call control.
    fn core_answer(&self, method: &Method, msg: &Message) -> Option<Answer> {
        // 16.3 step 3: a request that ran out of hops is not ours to handle.
        if let Ok(Some(0)) = msg.max_forwards() {
            return Some((483, "Too Many Hops", vec![]));
        }
        // 8.2.1: methods we know but do not serve get 405 with Allow; ones we do not know, 501.
        match method {
            Method::Invite
            | Method::Options
            | Method::Bye
            | Method::Cancel
            | Method::Info
            | Method::Update
            | Method::Prack
            | Method::Refer
            | Method::Notify => {}
            Method::Extension(_) => return Some((501, "Not Implemented", vec![("Allow", ALLOW.into())])),
            _ => return Some((405, "Method Not Allowed", vec![("Allow", ALLOW.into())])),
        }
        // 8.2.2.1: a Request-URI scheme we cannot route.
        match msg.request_uri() {
            Ok(Uri::Sip(_)) | Ok(Uri::Tel(_)) => {}
            Ok(_) => return Some((416, "Unsupported URI Scheme", vec![])),
            Err(_) => {
                return Some((
                    400,
                    "Bad Request",
                    vec![("Warning", self.warning("unparseable Request-URI"))],
                ))
            }
        }
        // 8.2.2.3: every Require tag must be one we support.
        let unsupported: Vec<&str> = msg
            .require()
            .into_iter()
            .filter(|t| !SUPPORTED.iter().any(|s| s.eq_ignore_ascii_case(t)))
            .collect();
        if !unsupported.is_empty() {
            return Some((420, "Bad Extension", vec![("Unsupported", unsupported.join(", "))]));
        }
        // 8.2.3: a body we cannot read.
        if *method == Method::Invite && !msg.body().is_empty() {
            let ct = msg.content_type().unwrap_or("");
            let mime = ct.split(';').next().unwrap_or("").trim();
            if !mime.eq_ignore_ascii_case(ACCEPT) && !mime.eq_ignore_ascii_case("multipart/mixed") {
                return Some((415, "Unsupported Media Type", vec![("Accept", ACCEPT.into())]));
            }
            if let Some(enc) = msg.header(&HeaderName::ContentEncoding) {
                if !enc.trim().eq_ignore_ascii_case("identity") {
                    return Some((
                        415,
                        "Unsupported Media Type",
                        vec![("Accept-Encoding", "identity".into())],
                    ));
                }
            }
        }
        match method {
            // Carriers' health checks: a draining node takes no more calls.
            Method::Options if self.draining && msg.to().ok().is_none_or(|t| t.tag().is_none()) => Some((
                503,
                "Service Unavailable",
                vec![("Retry-After", DRAIN_RETRY_AFTER.into())],
            )),
            Method::Options if msg.to().ok().is_none_or(|t| t.tag().is_none()) => Some((
                200,
                "OK",
                vec![
                    ("Allow", ALLOW.into()),
                    ("Accept", ACCEPT.into()),
                    ("Accept-Encoding", "identity".into()),
                    ("Accept-Language", "en".into()),
                    ("Supported", SUPPORTED.join(", ")),
                ],
            )),
            _ => None,
        }
    }

    /// RFC 3261 9.2: 200 to the CANCEL, then 487 to the INVITE if it is still pending. A CANCEL from an
    /// address that is not the INVITE's side (another carrier, a stranger who learnt the branch) is a
    /// CANCEL for a transaction that does not exist, for that sender.
    fn on_cancel(
        &mut self,
        now: Instant,
        source: SocketAddr,
        cancel_key: TxKey,
        invite_key: Option<TxKey>,
        msg: Message,
    ) {
        let tag = new_token();
        let invite_key = invite_key.filter(|k| self.calls.cancel_allowed(k, source, &*self.policy));
        let Some(invite_key) = invite_key else {
            let b = self
                .response(&msg, source, 481, "Call/Transaction Does Not Exist", &tag)
                .build_message();
            self.respond(now, &cancel_key, b);
            return;
        };
        let b = self.response(&msg, source, 200, "OK", &tag).build_message();
        self.respond(now, &cancel_key, b);
        // The call controller answers 487 and cancels the agent leg if the INVITE is still pending; once it
        // is final the CANCEL has no effect (9.2).
        let mut ctx = Ctx {
            now,
            wall_ms: (self.wall)(),
            tx: &mut self.tx,
            out: &mut self.out,
        };
        self.calls.on_cancel(&mut ctx, &invite_key);
    }

    /// The transaction layer refused a request: 503 when it is full (carriers then try another edge), 400
    /// when a header it keys on is broken.
    /// A carrier's new INVITE refused for a full table is recorded (`CallController::record_refusal`).
    fn rejected(
        &mut self,
        now: Instant,
        source: SocketAddr,
        link: Link,
        msg: &Message,
        error: &TxError,
        carrier: Option<&str>,
    ) {
        if !msg.is_request() || matches!(msg.method(), Some(Method::Ack)) {
            return;
        }
        let tag = new_token();
        let bytes = match error {
            TxError::Overloaded => {
                self.stats.overload_rejected.fetch_add(1, Ordering::Relaxed);
                if let Some(carrier) =
                    carrier.filter(|_| matches!(msg.method(), Some(Method::Invite)) && !in_dialog(msg))
                {
                    let wall = (self.wall)();
                    self.calls
                        .record_refusal(now, wall, msg, carrier, 503, Refusal::TransactionTableFull);
                }
                self.response(msg, source, 503, "Service Unavailable", &tag)
                    .header("Retry-After", "5")
                    .build()
            }
            other => {
                let w = self.warning(&other.to_string());
                self.response(msg, source, 400, "Bad Request", &tag)
                    .header("Warning", &w)
                    .build()
            }
        };
        self.send_stateless(source, link, bytes);
    }

    /// An INVITE outside any dialog that goes through agent digest: from a carrier or an agent network,
    /// one carrying `Proxy-Authorization` (an agent proving who it is, whatever its address: carriers
    /// never send one to us); from an outsider, any, when digest is offered to its address
    /// (`outbound.agent_digest_from`).
    fn agent_digest_invite(&self, msg: &Message, source: SocketAddr, outsider: bool) -> bool {
        self.agent_auth.is_some()
            && matches!(msg.method(), Some(Method::Invite))
            && !in_dialog(msg)
            && if outsider {
                self.policy.digest_offered_to(source)
            } else {
                msg.header(&HeaderName::ProxyAuthorization).is_some()
            }
    }

    /// Runs agent digest on a new INVITE before any transaction exists: the agent when the credentials
    /// are good, else `None` after answering statelessly (challenge or 403) or not at all (guard).
    fn agent_digest(
        &mut self,
        now: Instant,
        source: SocketAddr,
        link: Link,
        msg: &Message,
        len: usize,
        outsider: bool,
    ) -> Option<Arc<edge_store::AgentRecord>> {
        // A retransmission of an INVITE that already passed is the transaction layer's to absorb.
        if self.tx.is_retransmission(msg) {
            self.absorb(now, source, link, msg.clone());
            return None;
        }
        let auth = self.agent_auth.as_ref()?;
        match auth.check(now, unix_now(), source, msg) {
            AuthOutcome::Authorized(agent) => {
                self.admission.vouch(now, source.ip());
                Some(agent)
            }
            AuthOutcome::Challenge(c) => {
                let status = c.status;
                let reason = challenge_reason(status);
                let mut headers: Vec<(&str, &str)> =
                    c.header_values.iter().map(|v| (c.header_name, v.as_str())).collect();
                // To an outsider the answer may not outgrow twice its request: a request too small for
                // every algorithm's challenge gets the preferred one alone (or, smaller still, nothing).
                while outsider && headers.len() > 1 && !self.fits(msg, len, status, reason, &headers) {
                    headers.pop();
                }
                self.stateless(source, link, msg, len, status, reason, &headers, outsider);
                None
            }
            AuthOutcome::Refused => {
                let w = self.warning("SIP credentials rejected");
                self.stateless(source, link, msg, len, 403, "Forbidden", &[("Warning", &w)], outsider);
                None
            }
            AuthOutcome::Ignored => None,
        }
    }

    /// Hands a retransmission to the transaction layer, which answers it from its state.
    fn absorb(&mut self, now: Instant, source: SocketAddr, link: Link, msg: Message) {
        if let Incoming::Absorbed { .. } = self.tx.handle_incoming(now, peer(source, link), msg) {
            self.stats.retransmissions_absorbed.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// May an outsider's request reach the transaction layer? Only what costs no new state or belongs
    /// to a dialog of ours, sent from that dialog's side: ACKs (they never open a transaction),
    /// retransmissions of transactions that exist, in-dialog requests whose whole dialog id (Call-ID,
    /// both tags) and source match one of our legs, and CANCELs for an INVITE that came from there.
    /// A new INVITE is let in only when digest is offered to it (it is then challenged statelessly).
    fn outsider_may_enter(&mut self, now: Instant, source: SocketAddr, msg: &Message) -> bool {
        let method = msg.method();
        if matches!(method, Some(Method::Ack)) || self.tx.is_retransmission(msg) {
            return true;
        }
        let policy = &*self.policy;
        let ok = if in_dialog(msg) {
            self.calls.speaks_for_a_call(msg, source, policy)
        } else if matches!(method, Some(Method::Cancel)) {
            self.calls.cancel_target(msg, source, policy).is_some()
        } else {
            false
        };
        if ok {
            // A peer of a live call: its further requests get an agent's rate.
            self.admission.vouch(now, source.ip());
        }
        ok
    }

    /// A stateless answer (no transaction, no retransmission): at most one datagram, and to an outsider
    /// never more than twice the bytes it sent, nor a Server header.
    #[allow(clippy::too_many_arguments)]
    fn stateless(
        &mut self,
        source: SocketAddr,
        link: Link,
        req: &Message,
        len: usize,
        code: u16,
        reason: &str,
        headers: &[(&str, &str)],
        outsider: bool,
    ) {
        let tag = new_token();
        let mut b = ResponseBuilder::for_request(req, code, reason)
            .received_from(source)
            .to_tag(&tag);
        if !outsider && !self.cfg.server_name.is_empty() {
            b = b.header("Server", &self.cfg.server_name);
        }
        for (n, v) in headers {
            b = b.header(n, v);
        }
        let bytes = b.build();
        if outsider {
            if bytes.len() > 2 * len {
                self.stats.outsider_too_large.fetch_add(1, Ordering::Relaxed);
                return;
            }
            self.stats.outsider_answered.fetch_add(1, Ordering::Relaxed);
            self.stats
                .outsider_bytes_out
                .fetch_add(bytes.len() as u64, Ordering::Relaxed);
        }
        self.send_stateless(source, link, bytes);
    }

    /// Would a stateless answer with these headers stay within twice the request's `len`? (Built to be
    /// measured: the same bytes `stateless` sends, but for the random tag's value, which has a fixed size.)
    fn fits(&self, req: &Message, len: usize, code: u16, reason: &str, headers: &[(&str, &str)]) -> bool {
        let mut b = ResponseBuilder::for_request(req, code, reason)
            .received_from(SocketAddr::from(([255, 255, 255, 255], 65535)))
            .to_tag("0123456789abcdef");
        for (n, v) in headers {
            b = b.header(n, v);
        }
        b.build().len() <= 2 * len
    }

    /// The answer for an outsider's request the edge will not serve: `code` statelessly when the policy
    /// is `reject`, nothing when it is `drop` (and nothing ever for an ACK).
    fn refuse_outsider(&mut self, source: SocketAddr, link: Link, msg: &Message, len: usize, code: u16, reason: &str) {
        if !self.policy.reject_unknown() || matches!(msg.method(), Some(Method::Ack)) {
            self.stats.outsider_silenced.fetch_add(1, Ordering::Relaxed);
            return;
        }
        self.stateless(source, link, msg, len, code, reason, &[], true);
    }

    /// Answers server transaction `key` with a response built once, as a value. A failure is logged, not
    /// dropped: a transaction that ended meanwhile (debug); a response our own parser would refuse, which
    /// only a request built to inflate it makes (e.g. thousands of Via entries past 64 KiB once echoed),
    /// is not sent and the transaction is left to its timers (debug: the sender controls how often);
    /// a response the transaction's state does not allow is a fault of ours (warn).
    fn respond(&mut self, now: Instant, key: &TxKey, response: Result<Message, ParseError>) {
        let result = match response {
            Ok(m) => self.tx.respond(now, key, m),
            Err(e) => {
                tracing::debug!(error = %e, "response not sent: it would not parse");
                return;
            }
        };
        match result {
            Ok(()) => {}
            Err(TxError::NoSuchTransaction) => tracing::debug!("response on a transaction that is gone"),
            Err(e) => tracing::warn!(error = %e, "response refused by the transaction layer"),
        }
    }

    /// A stateless answer (no transaction): straight to the transmit queue.
    fn send_stateless(&mut self, source: SocketAddr, link: Link, bytes: Bytes) {
        self.out.push_back(Transmit {
            to: peer(source, link),
            bytes,
            key: None,
        });
    }

    /// A response skeleton with our To tag and the RFC 3581 received/rport fill-in.
    fn response<'m>(
        &'m self,
        req: &'m Message,
        source: SocketAddr,
        code: u16,
        reason: &'m str,
        tag: &'m str,
    ) -> ResponseBuilder<'m> {
        let b = ResponseBuilder::for_request(req, code, reason)
            .received_from(source)
            .to_tag(tag);
        if self.cfg.server_name.is_empty() {
            b
        } else {
            b.header("Server", &self.cfg.server_name)
        }
    }

    fn warning(&self, text: &str) -> String {
        sip_core::build::warning(&self.cfg.warn_agent, text)
    }

    /// A request we cannot accept: 400 (505 for a foreign SIP version) with a Warning naming the fault if it
    /// carries a Via to answer along, else dropped. An outsider gets it only under `unknown_source =
    /// "reject"`, without a Server header and no larger than twice what it sent.
    fn malformed(&mut self, source: SocketAddr, link: Link, raw: &[u8], status: &str, fault: &str, outsider: bool) {
        if outsider && !self.policy.reject_unknown() {
            self.stats.malformed_dropped.fetch_add(1, Ordering::Relaxed);
            self.stats.outsider_silenced.fetch_add(1, Ordering::Relaxed);
            return;
        }
        let warning = self.warning(fault);
        let server = if outsider { "" } else { self.cfg.server_name.as_str() };
        match salvage::reject(raw, source, status, &warning, server) {
            Some(bytes) if outsider && bytes.len() > 2 * raw.len() => {
                self.stats.malformed_dropped.fetch_add(1, Ordering::Relaxed);
                self.stats.outsider_too_large.fetch_add(1, Ordering::Relaxed);
            }
            Some(bytes) => {
                self.stats.malformed_answered.fetch_add(1, Ordering::Relaxed);
                if outsider {
                    self.stats.outsider_answered.fetch_add(1, Ordering::Relaxed);
                    self.stats
                        .outsider_bytes_out
                        .fetch_add(bytes.len() as u64, Ordering::Relaxed);
                }
                self.send_stateless(source, link, bytes);
            }
            None => {
                self.stats.malformed_dropped.fetch_add(1, Ordering::Relaxed);
                tracing::debug!(%source, fault, "malformed message dropped: no usable Via");
            }
        }
    }

    pub fn handle_timeout(&mut self, now: Instant) {
        self.last_now = now;
        self.tx.handle_timeout(now);
        self.drain_tx_events(now);
        let mut ctx = Ctx {
            now,
            wall_ms: (self.wall)(),
            tx: &mut self.tx,
            out: &mut self.out,
        };
        self.calls.handle_timeout(&mut ctx);
        self.drain_tx_events(now);
    }

    /// Hands the transaction layer's events to call control. Run after every input, so a transaction that
    /// ended (a transport error, a timer, a final answer over TCP) is acted on in the same turn.
    fn drain_tx_events(&mut self, now: Instant) {
        while let Some(ev) = self.tx.poll_event() {
            let mut ctx = Ctx {
                now,
                wall_ms: (self.wall)(),
                tx: &mut self.tx,
                out: &mut self.out,
            };
            match ev {
                // RFC 3261 8.1.3.1: to the TU a client transport error is like a 503 (the next hop is tried now).
                TxEvent::Timeout { key, .. } if key.is_client() => self.calls.on_tx_timeout(&mut ctx, &key, None),
                TxEvent::TransportError { key } if key.is_client() => {
                    let why = match self.send_failure.take() {
                        Some((k, why)) if k == key => why,
                        _ => "send failed".to_owned(),
                    };
                    self.calls.on_tx_timeout(&mut ctx, &key, Some(why))
                }
                // A server transaction that timed out or could not send its response (logged where the failure
                // came in) is simply gone: nobody is waiting on it.
                TxEvent::Timeout { .. } | TxEvent::TransportError { .. } => {}
                TxEvent::Terminated { key } => self.calls.on_tx_terminated(&key),
            }
        }
    }

    /// The transport could not send a transmit (at once, or later: a TCP connect refused, a connection
    /// reset). Its transaction ends now (RFC 3261 17.1.4, 17.2.4) and call control moves on.
    pub fn on_send_failure(&mut self, now: Instant, failure: &SendFailure) {
        self.last_now = now;
        match &failure.key {
            // Our own request (to an agent, a trunk): worth an operator's attention.
            Some(key) if key.is_client() => {
                tracing::info!(to = %failure.to, error = %failure.error, method = %key.method(), "request could not be sent; transaction ended");
                self.send_failure = Some((key.clone(), failure.error.cause()));
                self.tx.transport_error(key);
            }
            // A response to a peer that went away (its TCP connection closed): any peer can cause this as
            // often as it likes, so not above debug.
            Some(key) => {
                tracing::debug!(to = %failure.to, error = %failure.error, method = %key.method(), "response could not be sent; server transaction ended");
                self.tx.transport_error(key);
            }
            None => tracing::debug!(to = %failure.to, error = %failure.error, "stateless send failed"),
        }
        self.drain_tx_events(now);
    }

    /// An event from the media engine (media timeout, voicemail finished).
    pub fn on_media_event(&mut self, now: Instant, ev: edge_media::MediaEvent) {
        let mut ctx = Ctx {
            now,
            wall_ms: (self.wall)(),
            tx: &mut self.tx,
            out: &mut self.out,
        };
        self.calls.on_media_event(&mut ctx, ev);
        self.drain_tx_events(now);
    }

    /// `POST /v1/calls`: starts an outbound call through the trunk.
    pub fn originate(
        &mut self,
        now: Instant,
        req: edge_contract::OriginateRequest,
    ) -> Result<edge_store::CallRecord, edge_contract::OriginateRefusal> {
        if self.draining {
            return Err(edge_contract::OriginateRefusal::EngineFault {
                reason: "this edge node is draining (shutting down): place the call again, through another node".into(),
            });
        }
        let mut ctx = Ctx {
            now,
            wall_ms: (self.wall)(),
            tx: &mut self.tx,
            out: &mut self.out,
        };
        let answer = self.calls.originate(&mut ctx, req);
        self.drain_tx_events(now);
        answer
    }

    /// `DELETE /v1/calls/{id}`: ends a live call.
    pub fn hang_up(&mut self, now: Instant, account_id: &str, call_id: &str) -> Option<edge_store::CallRecord> {
        let mut ctx = Ctx {
            now,
            wall_ms: (self.wall)(),
            tx: &mut self.tx,
            out: &mut self.out,
        };
        let ended = self.calls.hang_up(&mut ctx, account_id, call_id);
        self.drain_tx_events(now);
        ended
    }

    /// `POST /v1/calls/{id}/transfer`: hand a live call of `account_id` to `to`.
    pub fn transfer(
        &mut self,
        now: Instant,
        account_id: &str,
        call_id: &str,
        to: &str,
    ) -> Result<edge_store::CallRecord, edge_contract::TransferRefusal> {
        let mut ctx = Ctx {
            now,
            wall_ms: (self.wall)(),
            tx: &mut self.tx,
            out: &mut self.out,
        };
        let started = self.calls.transfer(&mut ctx, account_id, call_id, to);
        self.drain_tx_events(now);
        started
    }

    /// A trunk host resolved by the driver.
    pub fn on_resolved(
        &mut self,
        now: Instant,
        job: &crate::call::ResolveJob,
        result: Result<Vec<crate::call::TrunkTarget>, String>,
    ) {
        let mut ctx = Ctx {
            now,
            wall_ms: (self.wall)(),
            tx: &mut self.tx,
            out: &mut self.out,
        };
        self.calls.on_resolved(&mut ctx, job, result);
        self.drain_tx_events(now);
    }

    /// The cluster's answer to a limit the calls asked for (`[cluster]`).
    pub fn on_limit(&mut self, now: Instant, job: crate::call::LimitJob, answer: crate::call::LimitAnswer) {
        let mut ctx = Ctx {
            now,
            wall_ms: (self.wall)(),
            tx: &mut self.tx,
            out: &mut self.out,
        };
        self.calls.on_limit(&mut ctx, job, answer);
        self.drain_tx_events(now);
    }

    /// Edge shutdown: calls are ended cleanly before the sockets close.
    pub fn shutdown(&mut self, now: Instant) {
        let mut ctx = Ctx {
            now,
            wall_ms: (self.wall)(),
            tx: &mut self.tx,
            out: &mut self.out,
        };
        self.calls.shutdown_all(&mut ctx);
        self.drain_tx_events(now);
    }

    pub fn poll_timeout(&self) -> Option<Instant> {
        // Asked once per turn of the engine loop: the cheapest place to publish the table's size.
        let live = self.tx.len() as u64;
        let was = self.published_live.replace(live);
        if live >= was {
            self.stats.transactions_live.fetch_add(live - was, Ordering::Relaxed);
        } else {
            self.stats.transactions_live.fetch_sub(was - live, Ordering::Relaxed);
        }
        match (self.tx.poll_timeout(), self.calls.poll_timeout()) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    pub fn poll_transmit(&mut self) -> Option<Transmit> {
        // Events raised while handling a message (e.g. a transport error) are dispatched before sending.
        if let Some(t) = self.out.pop_front() {
            return Some(t);
        }
        let t = self.tx.poll_transmit()?;
        if t.key.as_ref().is_some_and(TxKey::is_client) {
            // A peer the edge sends requests to (an agent, a trunk) will answer and send in-dialog requests
            // from there: it gets an agent's admission rate, not a stranger's.
            self.admission.vouch(self.last_now, t.to.addr.ip());
        }
        Some(t)
    }

    /// Live transactions, for /metrics and tests.
    pub fn transactions(&self) -> usize {
        self.tx.len()
    }
}

/// True for a request inside a dialog (its To has a tag).
fn in_dialog(msg: &Message) -> bool {
    msg.to().ok().is_some_and(|t| t.tag().is_some())
}

fn challenge_reason(status: u16) -> &'static str {
    if status == 407 {
        "Proxy Authentication Required"
    } else {
        "Unauthorized"
    }
}

/// The wall clock in Unix seconds: digest nonces are minted on it so every node reads them alike.
fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}
