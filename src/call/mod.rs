//! Inbound call control: a B2BUA from the carrier leg (A) to the agent leg (B).
//!
//! One call's path: INVITE from a carrier -> dialed number (E.164) -> routing index -> hop chain
//! (`inbound_routing.agent_id`, then `fallback.agent_id`, then voicemail) -> agent leg INVITE -> 180/183/200
//! relayed -> ACKs -> in-dialog requests relayed both ways -> BYE from either side.
//!
//! Like the transaction layer below it, this is sans-IO: the engine task calls it with `now`, and it talks
//! to the network only through the transaction layer and the endpoint's send queue. All per-call state
//! lives in `calls`, keyed by call id, owned by the single engine task (so no locks); the other maps are
//! indexes into it.

pub mod dialed;
mod dialog_check;
pub mod leg;
mod outbound;
pub mod pacing;
pub mod trunk;

pub use outbound::{AgentOrigin, ResolveJob, TrunkTarget};

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap, VecDeque};
use std::fmt::Write as _;
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use edge_store::{AgentRecord, AgentStatus, NumberRoute, RoutingIndex};
use sip_core::build::{cancel_for, new_branch, ResponseBuilder};
use sip_core::message::{HeaderName, Message, Method, Transport, Uri};
use sip_core::transaction::{Peer, TransactionLayer, TxKey};

use crate::sip::endpoint::Transmit;
use edge_media::{MediaEngine, MediaEvent, RelayHandle, Side as MediaSide, VoicemailConfig, VoicemailSession};
use edge_store::VoicemailRecord;
pub use edge_store::{now_ms, CallRecord, CallStatus, HangupBy, Hop, Route};
use leg::{DialogSide, Local};

/// How long a live call's changed record waits before it is queued for the store (see
/// `CallController::persist`). `GET /v1/calls/{id}` sees a live call's progress this much (plus the
/// writer's own gathering) later; an ended call's record is queued at once.
const RECORD_FLUSH: Duration = Duration::from_millis(20);

/// Call-control settings (`[routing]` in the config).
#[derive(Debug, Clone)]
pub struct CallConfig {
    pub agent_setup_timeout: Duration,
    pub agent_ring_timeout: Duration,
    pub default_country_code: Option<String>,
    /// Shared: every leg message writes it, and cloning three strings per message showed in profiles.
    pub local: Arc<Local>,
    /// The T1 used for our own 2xx retransmissions toward the carrier (RFC 3261 13.3.1.4).
    pub t1: Duration,
    pub t2: Duration,
    /// Host named in Warning headers.
    pub warn_agent: String,
    /// Outbound calls: trunks, pacing, timeouts.
    pub outbound: crate::config::OutboundSettings,
    /// Internal ranges agents and trunks may resolve to (`[security] internal_targets`); every
    /// other internal address is refused after DNS, so a name cannot be re-pointed at one.
    pub targets: edge_api::TargetPolicy,
}

/// What the endpoint must answer for a new INVITE the controller did not take.
#[derive(Debug)]
pub struct Reject {
    pub code: u16,
    pub reason: &'static str,
    pub headers: Vec<(&'static str, String)>,
}

/// Counters for /metrics.
#[derive(Debug, Default)]
pub struct CallStats {
    pub calls_started: AtomicU64,
    pub active_calls: AtomicU64,
    pub answered_primary: AtomicU64,
    pub answered_fallback: AtomicU64,
    pub voicemail: AtomicU64,
    pub rejected: AtomicU64,
    pub failovers: AtomicU64,
    pub records_dropped: AtomicU64,
    /// New calls refused with 503 because no media port pair could be bound (range or open files used up).
    pub media_unavailable: AtomicU64,
}

/// A refusal for want of media ports is logged on the first one and then once per this many: under
/// overload every INVITE would log, and the log would compete with the calls (the count is on /metrics).
const MEDIA_UNAVAILABLE_LOG_EVERY: u64 = 1000;

/// Media anchoring and voicemail for calls (None: signalling only, SDP passed through untouched).
pub struct MediaCtl {
    pub engine: MediaEngine,
    /// Codec names allowed through; `None` passes every offered codec.
    pub codecs: Option<Vec<String>>,
    /// Voicemail settings; the greeting is filled in per call.
    pub voicemail: VoicemailConfig,
    pub default_greeting: String,
    /// Recording paths are stored relative to this.
    pub data_dir: std::path::PathBuf,
}

/// What the store must keep, in the order produced.
#[derive(Debug)]
pub enum Persist {
    Call(CallRecord),
    Voicemail(VoicemailRecord),
}

/// What a voicemail row needs once the recording ends (the call may be gone by then).
#[derive(Debug)]
struct VoicemailMeta {
    account_id: String,
    call_id: String,
    phone_number_id: String,
    caller: String,
    to: String,
}

/// The IO-free things the controller may touch while handling one event.
pub struct Ctx<'a> {
    pub now: Instant,
    pub tx: &'a mut TransactionLayer,
    pub out: &'a mut VecDeque<Transmit>,
}

impl Ctx<'_> {
    fn send_raw(&mut self, peer: &Peer, bytes: Bytes) {
        self.out.push_back(Transmit {
            to: *peer,
            bytes,
            key: None,
        });
    }
}

type CallId = u64;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Side {
    A,
    B,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum TimerKind {
    /// No provisional answer from the agent in time.
    Setup,
    /// No final answer from the agent in time.
    Ring,
    /// Retransmit our 2xx to the carrier until its ACK.
    Retransmit2xx,
    /// An outbound call's pacing slot on its trunk has come.
    Pace,
}

/// Why a client transaction exists.
#[derive(Debug)]
enum ClientRef {
    /// The agent leg's INVITE of a live call.
    Invite(CallId),
    /// An agent INVITE we gave up on (timeout, caller cancel): a late 1xx gets a CANCEL, a late 2xx ACK + BYE.
    Orphan(Box<Orphan>),
    /// A request relayed from one side; its answer goes back on `server_key`.
    Relay {
        call: CallId,
        server_key: TxKey,
        request: Box<Message>,
        /// The side the request went to (and its answer comes from), for SDP anchoring.
        to_side: Side,
    },
    /// BYE or CANCEL we originated: nothing waits on the answer.
    Fire,
}

#[derive(Debug)]
struct Orphan {
    invite: Message,
    peer: Peer,
    provisional: bool,
    local: String,
}

#[derive(Debug, PartialEq, Eq, Clone, Copy)]
enum State {
    /// Hunting for an agent.
    Routing,
    /// 2xx sent to the carrier; waiting for its ACK.
    Answered,
    Confirmed,
}

/// Who the call came from and so what its legs are.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum CallKind {
    /// A carrier's INVITE: A = carrier (server leg), B = agents in turn.
    Inbound,
    /// An agent's INVITE: A = agent (server leg), B = the trunk.
    AgentOutbound,
    /// `POST /v1/calls`: B = the trunk first; once it answers it becomes A and B = the agent.
    ApiOutbound,
}

/// Where a client leg goes.
enum LegTarget {
    Agent(Arc<AgentRecord>),
    /// One attempt at one resolved trunk target.
    Trunk,
}

struct ALeg {
    /// The INVITE that made this leg: the carrier's or agent's (server leg), or ours to the trunk (API calls).
    invite: Message,
    /// Our server transaction for that INVITE; `None` when the edge placed the leg (API calls).
    key: Option<TxKey>,
    peer: Peer,
    tag: String,
    dialog: DialogSide,
}

struct BLeg {
    target: LegTarget,
    route: Route,
    invite: Message,
    key: TxKey,
    peer: Peer,
    provisional: bool,
    /// Filled when the agent answers.
    dialog: Option<DialogSide>,
    hop: usize,
}

struct Call {
    kind: CallKind,
    /// API calls: the dialled party answered, so A is a confirmed dialog of ours (BYE ends it).
    a_up: bool,
    number: Arc<NumberRoute>,
    /// Outbound calls: the trunk, its targets and the authentication state.
    out: Option<Box<outbound::OutboundPlan>>,
    /// The agent an outbound call counts against (its `max_concurrent_calls`) for as long as it lasts.
    held_agent: Option<String>,
    a: ALeg,
    b: Option<BLeg>,
    /// Remaining hops: agent ids with their route.
    plan: VecDeque<(String, Route)>,
    state: State,
    /// Bumped on every hop so stale timers are ignored.
    generation: u32,
    record: CallRecord,
    retransmit_interval: Duration,
    answered_at: Option<Instant>,
    /// The 2xx we sent the carrier, re-sent until its ACK (RFC 6026 leaves that to us).
    answer: Option<Bytes>,
    /// When the carrier's INVITE was taken, for the setup-latency histogram.
    created: Instant,
    /// The RTP relay anchoring this call's media (carrier side A, agent side B).
    relay: Option<RelayHandle>,
    /// The carrier's SDP offer rewritten to the relay's agent-side address.
    b_offer: Option<Bytes>,
    /// The voicemail session answering this call, when it went to voicemail.
    voicemail: Option<VoicemailSession>,
    /// The record changed since it was last queued for the store (the id is in `CallController::dirty`).
    dirty: bool,
}

impl Call {
    /// A call just taken, hunting for its B leg.
    fn new(
        kind: CallKind,
        number: Arc<NumberRoute>,
        a: ALeg,
        record: CallRecord,
        now: std::time::Instant,
        t1: std::time::Duration,
    ) -> Call {
        Call {
            kind,
            a_up: false,
            number,
            out: None,
            held_agent: None,
            a,
            b: None,
            plan: VecDeque::new(),
            state: State::Routing,
            generation: 0,
            record,
            retransmit_interval: t1,
            answered_at: None,
            answer: None,
            created: now,
            relay: None,
            b_offer: None,
            voicemail: None,
            dirty: false,
        }
    }
}

/// The call controller: every call's state, keyed by id, and the indexes into it.
pub struct CallController {
    cfg: CallConfig,
    index: Arc<RoutingIndex>,
    /// Boxed: growing the map then moves pointers, not whole calls (a stall at 10,000 live calls).
    calls: HashMap<CallId, Box<Call>>,
    by_server_invite: HashMap<TxKey, CallId>,
    by_client: HashMap<TxKey, ClientRef>,
    by_dialog: HashMap<String, (CallId, Side)>,
    timers: BinaryHeap<Reverse<(Instant, CallId, TimerKind, u32)>>,
    agent_load: HashMap<String, u32>,
    next_id: CallId,
    records: Option<tokio::sync::mpsc::Sender<Persist>>,
    media: Option<MediaCtl>,
    by_public: HashMap<String, CallId>,
    voicemail_meta: HashMap<String, VoicemailMeta>,
    pub stats: Arc<CallStats>,
    /// Live load per agent, shared with /metrics.
    pub agent_gauge: Arc<dashmap::DashMap<String, u32>>,
    pacer: pacing::Pacer,
    /// Trunk hosts waiting to be resolved by the driver (DNS is IO).
    resolve_jobs: VecDeque<ResolveJob>,
    /// Live calls whose record changed and is not queued yet; queued at `flush_at`.
    dirty: Vec<CallId>,
    flush_at: Option<Instant>,
}

impl CallController {
    pub fn new(
        cfg: CallConfig,
        index: Arc<RoutingIndex>,
        records: Option<tokio::sync::mpsc::Sender<Persist>>,
        media: Option<MediaCtl>,
    ) -> Self {
        let cfg_pacing_wait = cfg.outbound.max_pacing_wait;
        CallController {
            cfg,
            index,
            calls: HashMap::new(),
            by_server_invite: HashMap::new(),
            by_client: HashMap::new(),
            by_dialog: HashMap::new(),
            timers: BinaryHeap::new(),
            agent_load: HashMap::new(),
            next_id: 1,
            records,
            media,
            by_public: HashMap::new(),
            voicemail_meta: HashMap::new(),
            stats: Arc::new(CallStats::default()),
            agent_gauge: Arc::new(dashmap::DashMap::new()),
            pacer: pacing::Pacer::new(cfg_pacing_wait),
            resolve_jobs: VecDeque::new(),
            dirty: Vec::new(),
            flush_at: None,
        }
    }

    /// Calls in progress.
    pub fn active(&self) -> usize {
        self.calls.len()
    }

    /// Calls the agent is on now.
    pub fn agent_load(&self, agent_id: &str) -> u32 {
        self.agent_load.get(agent_id).copied().unwrap_or(0)
    }

    fn warning(&self, text: &str) -> String {
        sip_core::build::warning(&self.cfg.warn_agent, text)
    }

    /// A new INVITE (outside any dialog) that passed the core checks. `Err` is the answer to send.
    pub fn on_invite(
        &mut self,
        ctx: &mut Ctx<'_>,
        key: TxKey,
        invite: Message,
        peer: Peer,
        carrier: &str,
    ) -> Result<(), Reject> {
        let did = match dialed::dialed_number(&invite, self.cfg.default_country_code.as_deref()) {
            Ok(d) => d,
            Err(e) => {
                self.stats.rejected.fetch_add(1, Ordering::Relaxed);
                return Err(Reject {
                    code: 404,
                    reason: "Not Found",
                    headers: vec![("Warning", self.warning(&e.to_string()))],
                });
            }
        };
        let Some(number) = self.index.lookup_number(&did) else {
            self.stats.rejected.fetch_add(1, Ordering::Relaxed);
            return Err(Reject {
                code: 404,
                reason: "Not Found",
                headers: vec![("Warning", self.warning(&format!("{did} is not a number served here")))],
            });
        };
        let Some(inbound) = number.inbound_routing.clone() else {
            self.stats.rejected.fetch_add(1, Ordering::Relaxed);
            return Err(Reject {
                code: 404,
                reason: "Not Found",
                headers: vec![(
                    "Warning",
                    self.warning(&format!("{did} is outbound-only: it has no inbound_routing")),
                )],
            });
        };
        let from = invite.from().ok();
        let caller = from
            .as_ref()
            .and_then(|f| f.uri.user().map(|u| u.into_owned()))
            .unwrap_or_else(|| "anonymous".into());
        let caller_name = from
            .as_ref()
            .and_then(|f| f.display_name.as_ref().map(|d| d.to_string()));
        let a_call_id = invite.call_id().unwrap_or("").to_owned();
        let mut plan = VecDeque::new();
        plan.push_back((inbound.agent_id.clone(), Route::Primary));
        if let Some(f) = &inbound.fallback_agent_id {
            plan.push_back((f.clone(), Route::Fallback));
        }
        let record = CallRecord {
            id: leg::call_record_id(now_ms()),
            account_id: number.account_id.clone(),
            direction: "inbound".into(),
            carrier: carrier.to_owned(),
            from: caller,
            caller_name,
            to: did,
            phone_number_id: Some(number.number_id.clone()),
            status: CallStatus::Queued,
            answered_by: None,
            agent_id: None,
            hops: Vec::new(),
            end_reason: None,
            hangup_by: None,
            sip_status: None,
            sip_call_id: a_call_id.clone(),
            created_at_ms: now_ms(),
            answered_at_ms: None,
            ended_at_ms: None,
            error: None,
        };
        let (relay, b_offer) = self.anchor_offer(&record.id, &invite)?;
        tracing::debug!(call = %record.id, sip_call_id = %a_call_id, carrier, to = %record.to, "inbound call");
        let mut call = Call::new(
            CallKind::Inbound,
            number,
            ALeg::server(invite, key.clone(), peer),
            record,
            ctx.now,
            self.cfg.t1,
        );
        call.plan = plan;
        call.relay = relay;
        call.b_offer = b_offer;
        let id = self.new_call(call);
        self.by_server_invite.insert(key, id);
        self.by_dialog.insert(a_call_id, (id, Side::A));
        self.persist(ctx.now, id);
        self.next_hop(ctx, id);
        Ok(())
    }

    /// Registers a new call under a fresh id.
    fn new_call(&mut self, call: Call) -> CallId {
        let id = self.next_id;
        self.next_id += 1;
        self.by_public.insert(call.record.id.clone(), id);
        self.stats.calls_started.fetch_add(1, Ordering::Relaxed);
        self.stats.active_calls.fetch_add(1, Ordering::Relaxed);
        self.calls.insert(id, Box::new(call));
        id
    }

    /// Anchors a caller's SDP offer on a new relay: the relay and the offer rewritten for the other leg.
    /// No ports is a clean 503 and an unusable offer a 488, never a half-set-up call.
    fn anchor_offer(&self, record_id: &str, invite: &Message) -> Result<(Option<RelayHandle>, Option<Bytes>), Reject> {
        let Some(m) = self.media.as_ref().filter(|_| !invite.body().is_empty()) else {
            return Ok((None, None));
        };
        let relay = m.engine.allocate_relay(record_id).map_err(|e| {
            self.stats.rejected.fetch_add(1, Ordering::Relaxed);
            let n = self.stats.media_unavailable.fetch_add(1, Ordering::Relaxed) + 1;
            if n % MEDIA_UNAVAILABLE_LOG_EVERY == 1 {
                tracing::warn!(call = %record_id, error = %e, refused_so_far = n, "no media ports for a new call: 503 (logged every {MEDIA_UNAVAILABLE_LOG_EVERY})");
            }
            Reject {
                code: 503,
                reason: "Service Unavailable",
                headers: vec![
                    ("Retry-After", "5".into()),
                    ("Warning", self.warning(e.sip_warning())),
                ],
            }
        })?;
        match relay.anchor_sdp(MediaSide::A, invite.body(), m.codecs.as_deref()) {
            Ok((sdp, _)) => Ok((Some(relay), Some(sdp))),
            Err(e) => {
                self.stats.rejected.fetch_add(1, Ordering::Relaxed);
                let code = e.sip_status();
                Err(Reject {
                    code,
                    reason: if code == 488 {
                        "Not Acceptable Here"
                    } else {
                        "Bad Request"
                    },
                    headers: vec![("Warning", self.warning(&format!("SDP offer: {e}")))],
                })
            }
        }
    }

    /// Tries the next agent of the chain; with none left, the end of the chain.
    fn next_hop(&mut self, ctx: &mut Ctx<'_>, id: CallId) {
        loop {
            let Some(call) = self.calls.get_mut(&id) else { return };
            call.generation += 1;
            let Some((agent_id, route)) = call.plan.pop_front() else {
                return self.chain_exhausted(ctx, id);
            };
            if route == Route::Fallback {
                self.stats.failovers.fetch_add(1, Ordering::Relaxed);
            }
            let started = now_ms();
            let agent = match self.index.agent(&agent_id) {
                None => Err("unavailable: agent not found".to_owned()),
                Some(a) if a.status != AgentStatus::Active => Err("unavailable: agent disabled".to_owned()),
                Some(a) if self.agent_load.get(&a.id).copied().unwrap_or(0) >= a.max_concurrent_calls => Err(format!(
                    "unavailable: at max_concurrent_calls ({})",
                    a.max_concurrent_calls
                )),
                Some(a) => Ok(a),
            };
            let targets = &self.cfg.targets;
            let agent = match agent.and_then(|a| agent_peer(&a.sip_uri, targets).map(|p| (a, p))) {
                Ok(x) => x,
                Err(outcome) => {
                    let Some(call) = self.calls.get_mut(&id) else { return };
                    call.record.hops.push(Hop {
                        route,
                        agent_id: Some(agent_id),
                        sip_status: None,
                        outcome,
                        started_at_ms: started,
                        ended_at_ms: Some(started),
                    });
                    continue;
                }
            };
            let peer = match agent.1 {
                AgentTarget::Ready(peer) => peer,
                AgentTarget::Resolve { host, port, transport } => {
                    // A host name: the driver resolves it (RFC 3263) and `on_resolved` goes on from here.
                    let gen = self.calls.get(&id).map(|c| c.generation).unwrap_or(0);
                    self.resolve_jobs.push_back(ResolveJob {
                        call: id,
                        generation: gen,
                        host,
                        port,
                        transport: Some(transport),
                        secure: false,
                        agent: Some((agent.0, route)),
                    });
                    return;
                }
            };
            if self.start_agent_leg(ctx, id, agent.0, peer, route) {
                return;
            }
        }
    }

    /// An agent's host name resolved: ring it at the first address, or move on to the next hop.
    fn agent_resolved(
        &mut self,
        ctx: &mut Ctx<'_>,
        id: CallId,
        agent: Arc<AgentRecord>,
        route: Route,
        result: Result<Vec<TrunkTarget>, String>,
    ) {
        match result.as_ref().map(|t| t.first()) {
            Ok(Some((addr, transport))) => {
                let peer = Peer {
                    addr: *addr,
                    transport: *transport,
                    conn: None,
                };
                if self.start_agent_leg(ctx, id, agent, peer, route) {
                    return;
                }
            }
            other => {
                let why = match other {
                    Err(e) => e.clone(),
                    _ => "no address".into(),
                };
                let Some(call) = self.calls.get_mut(&id) else { return };
                let now = now_ms();
                call.record.hops.push(Hop {
                    route,
                    agent_id: Some(agent.id.clone()),
                    sip_status: None,
                    outcome: format!("unavailable: sip_uri host does not resolve: {why}"),
                    started_at_ms: now,
                    ended_at_ms: Some(now),
                });
            }
        }
        self.next_hop(ctx, id);
    }

    /// Sends the agent leg's INVITE; false when it could not even be sent (then the next hop is tried).
    fn start_agent_leg(
        &mut self,
        ctx: &mut Ctx<'_>,
        id: CallId,
        agent: Arc<AgentRecord>,
        peer: Peer,
        route: Route,
    ) -> bool {
        let local = self.cfg.local.clone();
        let Some(call) = self.calls.get_mut(&id) else {
            return false;
        };
        let a = &call.a.invite;
        let b_call_id = format!("{}@oneinbox-edge", leg::token());
        let from_tag = leg::token();
        let host = &local.sent_by;
        // An API call's agent sees the party the edge dialled as the caller, and our number as the callee.
        let (from_user, display, to_user, did) = match call.kind {
            CallKind::ApiOutbound => (&call.record.to, None, &call.record.from, &call.record.from),
            CallKind::AgentOutbound => (
                &call.record.from,
                call.record.caller_name.as_deref(),
                &call.record.to,
                &call.record.from,
            ),
            CallKind::Inbound => (
                &call.record.from,
                call.record.caller_name.as_deref(),
                &call.record.to,
                &call.record.to,
            ),
        };
        let mut from = String::with_capacity(96);
        if let Some(d) = display {
            from.push('"');
            from.extend(d.chars().filter(|c| !matches!(c, '"' | '\\')));
            from.push_str("\" ");
        }
        let _ = write!(from, "<sip:{from_user}@{host}>;tag={from_tag}");
        let to = format!("<sip:{to_user}@{}>", uri_hostport(&agent.sip_uri));
        let direction = if call.kind == CallKind::Inbound {
            "inbound"
        } else {
            "outbound"
        };
        let via = format!(
            "SIP/2.0/{} {};branch={};rport",
            leg::via_transport(peer.transport),
            local.sent_by,
            new_branch()
        );
        let mf = a
            .max_forwards()
            .ok()
            .flatten()
            .unwrap_or(70)
            .saturating_sub(1)
            .clamp(1, 70)
            .to_string();
        let x = [
            ("X-OneInbox-Call-Id", call.record.id.as_str()),
            ("X-OneInbox-Direction", direction),
            ("X-OneInbox-Phone-Number", did.as_str()),
            ("X-OneInbox-Phone-Number-Id", call.number.number_id.as_str()),
            ("X-OneInbox-Agent-Id", agent.id.as_str()),
            ("X-OneInbox-Route", route.as_str()),
            ("X-OneInbox-Carrier", call.record.carrier.as_str()),
        ];
        let mut b = sip_core::build::RequestBuilder::new(Method::Invite, &agent.sip_uri)
            .header("Via", &via)
            .header("Max-Forwards", &mf)
            .header("From", &from)
            .header("To", &to)
            .header("Call-ID", &b_call_id)
            .header("CSeq", "1 INVITE")
            .header("Contact", &local.contact)
            .header("Allow", crate::sip::endpoint::ALLOW)
            .header_unless_empty("User-Agent", &local.server_name);
        for (_, n, v) in a.fields().filter(|(n, _, _)| {
            matches!(
                n,
                Some(HeaderName::SessionExpires | HeaderName::MinSE | HeaderName::Supported)
            )
        }) {
            b = b.header(n, v);
        }
        for (n, v) in x {
            b = b.header(n, v);
        }
        for (n, v) in leg::passthrough_headers(a) {
            b = b.header(n, v);
        }
        if let Some(sdp) = &call.b_offer {
            b = b.body("application/sdp", sdp.clone());
        } else if !a.body().is_empty() {
            b = b.body(a.content_type().unwrap_or("application/sdp"), a.body_bytes());
        }
        let bytes = b.build();
        let started = now_ms();
        let hop_index = call.record.hops.len();
        let msg = match Message::parse(bytes) {
            Ok(m) => m,
            Err(e) => {
                call.record.hops.push(hop(
                    route,
                    &agent.id,
                    None,
                    format!("could not build INVITE: {e}"),
                    started,
                ));
                return false;
            }
        };
        let key = match ctx.tx.send_request(ctx.now, peer, msg.clone()) {
            Ok(k) => k,
            Err(e) => {
                call.record.hops.push(hop(
                    route,
                    &agent.id,
                    None,
                    format!("could not send INVITE: {e}"),
                    started,
                ));
                return false;
            }
        };
        tracing::debug!(call = %call.record.id, agent = %agent.id, route = route.as_str(), "agent leg INVITE");
        call.record.hops.push(Hop {
            route,
            agent_id: Some(agent.id.clone()),
            sip_status: None,
            outcome: "trying".into(),
            started_at_ms: started,
            ended_at_ms: None,
        });
        let gen = call.generation;
        add_load(&mut self.agent_load, &self.agent_gauge, &agent.id);
        self.by_client.insert(key.clone(), ClientRef::Invite(id));
        self.by_dialog.insert(b_call_id, (id, Side::B));
        call.b = Some(BLeg {
            target: LegTarget::Agent(agent),
            route,
            invite: msg,
            key,
            peer,
            provisional: false,
            dialog: None,
            hop: hop_index,
        });
        self.timers.push(Reverse((
            ctx.now + self.cfg.agent_setup_timeout,
            id,
            TimerKind::Setup,
            gen,
        )));
        self.timers.push(Reverse((
            ctx.now + self.cfg.agent_ring_timeout,
            id,
            TimerKind::Ring,
            gen,
        )));
        true
    }

    /// Every agent was unavailable. Voicemail needs the media engine; without it the edge cannot take the
    /// call, so the carrier gets 503 + Retry-After and fails over to its next origination URI.
    fn chain_exhausted(&mut self, ctx: &mut Ctx<'_>, id: CallId) {
        if self.calls.get(&id).is_some_and(|c| c.kind == CallKind::ApiOutbound) {
            return self.api_agent_unavailable(ctx, id);
        }
        if self.start_voicemail(ctx, id) {
            return;
        }
        let Some(call) = self.calls.get_mut(&id) else { return };
        let started = now_ms();
        call.record.hops.push(Hop {
            route: Route::Voicemail,
            agent_id: None,
            sip_status: None,
            outcome: "unavailable: voicemail needs the media engine, which this edge does not run".into(),
            started_at_ms: started,
            ended_at_ms: Some(started),
        });
        // In the Call resource's words: busy when the agents said busy, no-answer when they never answered.
        let agent_hops: Vec<&Hop> = call
            .record
            .hops
            .iter()
            .filter(|h| h.route != Route::Voicemail)
            .collect();
        let all = |f: &dyn Fn(&Hop) -> bool| !agent_hops.is_empty() && agent_hops.iter().all(|h| f(h));
        let status = if all(&|h| matches!(h.sip_status, Some(486 | 600 | 603))) {
            CallStatus::Busy
        } else if all(&|h| h.outcome.starts_with("timeout")) {
            CallStatus::NoAnswer
        } else {
            CallStatus::Failed
        };
        let warning = self.warning("no agent available and voicemail unavailable");
        self.fail_a(
            ctx,
            id,
            503,
            "Service Unavailable",
            &[("Retry-After", "30"), ("Warning", &warning)],
        );
        self.finish(id, status, "no agent available", None);
    }

    /// A final non-2xx answer to the carrier's INVITE.
    fn fail_a(&mut self, ctx: &mut Ctx<'_>, id: CallId, code: u16, reason: &str, extra: &[(&str, &str)]) {
        let Some(call) = self.calls.get_mut(&id) else { return };
        let mut b = ResponseBuilder::for_request(&call.a.invite, code, reason)
            .to_tag(&call.a.tag)
            .header_unless_empty("Server", &self.cfg.local.server_name);
        for (n, v) in extra {
            b = b.header(n, v);
        }
        let bytes = b.build();
        call.record.sip_status = Some(code);
        count_invite_answer(&call.record.carrier, code);
        let Some(a_key) = &call.a.key else { return };
        if let Err(e) = ctx.tx.respond_bytes(ctx.now, a_key, bytes) {
            tracing::debug!(error = %e, "final answer to carrier not sent");
        }
    }

    /// A response on one of our client transactions.
    pub fn on_response(&mut self, ctx: &mut Ctx<'_>, key: &TxKey, resp: Message) {
        let status = resp.status().unwrap_or(0);
        match self.by_client.get_mut(key) {
            Some(ClientRef::Invite(id)) => {
                let id = *id;
                if status >= 200 {
                    // The client transaction stays until it terminates; a 2xx retransmission still maps here.
                    if status >= 300 {
                        self.by_client.remove(key);
                    }
                }
                self.on_agent_response(ctx, id, key, resp, status);
            }
            Some(ClientRef::Orphan(o)) => {
                if status < 200 && status > 100 && !o.provisional {
                    o.provisional = true;
                    let cancel = cancel_for(&o.invite);
                    if let Ok(m) = Message::parse(cancel) {
                        let peer = o.peer;
                        if let Ok(k) = ctx.tx.send_request(ctx.now, peer, m) {
                            self.by_client.insert(k, ClientRef::Fire);
                        }
                    }
                } else if (200..300).contains(&status) {
                    // The agent answered after we gave up: acknowledge and hang up at once.
                    let o = match self.by_client.remove(key) {
                        Some(ClientRef::Orphan(o)) => o,
                        _ => return,
                    };
                    let mut d = dialog_from_answer(&o.local, o.invite.call_id().unwrap_or(""), &resp, o.peer);
                    let cseq = o.invite.cseq().map(|c| c.seq).unwrap_or(1);
                    ctx.send_raw(&o.peer, leg::ack_2xx(&d, &self.cfg.local, cseq));
                    d.local_cseq = cseq;
                    self.send_bye(ctx, &mut d, o.peer, None);
                } else if status >= 300 {
                    self.by_client.remove(key);
                }
            }
            Some(ClientRef::Relay { .. }) => {
                if status < 200 {
                    // Provisional answers to relayed requests are hop-by-hop; the final one is relayed.
                    return;
                }
                let Some(ClientRef::Relay {
                    call,
                    server_key,
                    request,
                    to_side,
                }) = self.by_client.remove(key)
                else {
                    return;
                };
                let Some(c) = self.calls.get_mut(&call) else { return };
                let tag = c.a.tag.clone();
                let sdp = anchor(c.relay.as_ref(), to_side, &resp, self.media.as_ref());
                let bytes = leg::relay_response(&request, &resp, &tag, &self.cfg.local, sdp);
                let _ = ctx.tx.respond_bytes(ctx.now, &server_key, bytes);
                // A 2xx to a relayed re-INVITE needs our ACK on the side that answered.
                if (200..300).contains(&status) && resp.cseq().map(|c| c.method == Method::Invite).unwrap_or(false) {
                    let answered_by_b = c.b.as_ref().is_some_and(|b| {
                        b.dialog
                            .as_ref()
                            .is_some_and(|d| Some(d.call_id.as_str()) == resp.call_id().ok())
                    });
                    let seq = resp.cseq().map(|c| c.seq).unwrap_or(1);
                    if answered_by_b {
                        if let Some(b) = c.b.as_ref() {
                            if let Some(d) = &b.dialog {
                                let peer = b.peer;
                                ctx.send_raw(&peer, leg::ack_2xx(d, &self.cfg.local, seq));
                            }
                        }
                    } else {
                        let peer = c.a.peer;
                        ctx.send_raw(&peer, leg::ack_2xx(&c.a.dialog, &self.cfg.local, seq));
                    }
                }
            }
            Some(ClientRef::Fire) if status >= 200 => {
                self.by_client.remove(key);
            }
            Some(ClientRef::Fire) | None => {}
        }
    }

    /// A response on the current B leg's INVITE (an agent, or a trunk for outbound calls).
    fn on_agent_response(&mut self, ctx: &mut Ctx<'_>, id: CallId, key: &TxKey, resp: Message, status: u16) {
        let local = self.cfg.local.clone();
        let Some(call) = self.calls.get_mut(&id) else { return };
        let Some(b) = call.b.as_mut().filter(|b| &b.key == key) else {
            return;
        };
        let to_trunk = matches!(b.target, LegTarget::Trunk);
        match status {
            100..=199 => {
                b.provisional = true;
                if status > 100 && call.state == State::Routing {
                    if let Some(a_key) = &call.a.key {
                        let sdp = anchor(call.relay.as_ref(), Side::B, &resp, self.media.as_ref());
                        let bytes = leg::relay_response(&call.a.invite, &resp, &call.a.tag, &local, sdp);
                        let _ = ctx.tx.respond_bytes(ctx.now, a_key, bytes);
                    }
                    // Ringing is the called party's state: the carrier's caller hears the agent ring, an
                    // outbound call rings at the trunk (an API call's agent leg changes nothing).
                    if call.record.status == CallStatus::Queued && (to_trunk || call.kind == CallKind::Inbound) {
                        call.record.status = CallStatus::Ringing;
                        if call.kind != CallKind::Inbound {
                            self.persist(ctx.now, id);
                        }
                    }
                }
            }
            200..=299 => {
                if let Some(d) = &b.dialog {
                    // A retransmitted 2xx: our ACK was lost; send it again.
                    let peer = b.peer;
                    let seq = b.invite.cseq().map(|c| c.seq).unwrap_or(1);
                    ctx.send_raw(&peer, leg::ack_2xx(d, &local, seq));
                    return;
                }
                let mut d = dialog_from_answer(
                    b.invite.header(&HeaderName::From).unwrap_or(""),
                    b.invite.call_id().unwrap_or(""),
                    &resp,
                    b.peer,
                );
                d.local_cseq = b.invite.cseq().map(|c| c.seq).unwrap_or(1);
                ctx.send_raw(&b.peer, leg::ack_2xx(&d, &local, d.local_cseq));
                b.dialog = Some(d);
                let route = b.route;
                let agent_id = b.agent_id().map(str::to_owned);
                let hop = b.hop;
                if let Some(h) = call.record.hops.get_mut(hop) {
                    h.sip_status = Some(status);
                    h.outcome = "answered".into();
                    h.ended_at_ms = Some(now_ms());
                }
                call.generation += 1; // cancels the setup and ring timers
                match (call.kind, to_trunk) {
                    (CallKind::ApiOutbound, true) => return self.api_trunk_answered(ctx, id, &resp),
                    (CallKind::ApiOutbound, false) => {
                        // The agent took the dialled party: media flows both ways through the relay.
                        let _ = anchor(call.relay.as_ref(), Side::B, &resp, self.media.as_ref());
                        call.state = State::Confirmed;
                        self.persist(ctx.now, id);
                        return;
                    }
                    _ => {}
                }
                call.state = State::Answered;
                call.answered_at = Some(ctx.now);
                call.record.status = CallStatus::InProgress;
                call.record.answered_by = Some(route);
                if let Some(agent_id) = agent_id {
                    call.record.agent_id = Some(agent_id);
                }
                call.record.answered_at_ms = Some(now_ms());
                match route {
                    Route::Primary => self.stats.answered_primary.fetch_add(1, Ordering::Relaxed),
                    Route::Fallback => self.stats.answered_fallback.fetch_add(1, Ordering::Relaxed),
                    _ => 0,
                };
                let sdp = anchor(call.relay.as_ref(), Side::B, &resp, self.media.as_ref());
                let bytes = leg::relay_response(&call.a.invite, &resp, &call.a.tag, &local, sdp);
                if let Some(a_key) = &call.a.key {
                    let _ = ctx.tx.respond_bytes(ctx.now, a_key, bytes.clone());
                }
                call.answer = Some(bytes);
                count_invite_answer(&call.record.carrier, status);
                metrics::histogram!("edge_call_setup_seconds")
                    .record(ctx.now.duration_since(call.created).as_secs_f64());
                if call.a.peer.transport == Transport::Udp {
                    let gen = call.generation;
                    self.timers
                        .push(Reverse((ctx.now + self.cfg.t1, id, TimerKind::Retransmit2xx, gen)));
                }
                self.persist(ctx.now, id);
            }
            _ => {
                if to_trunk {
                    return self.on_trunk_failure(ctx, id, status, Some(&resp));
                }
                // The transaction layer has ACKed it; this hop is over.
                let agent_id = b.agent_id().map(str::to_owned);
                let leg_call_id = b.invite_call_id();
                let hop = b.hop;
                let reason = resp.reason().unwrap_or("").to_owned();
                if let Some(h) = call.record.hops.get_mut(hop) {
                    h.sip_status = Some(status);
                    h.outcome = format!("rejected: {status} {reason}");
                    h.ended_at_ms = Some(now_ms());
                }
                call.b = None;
                self.forget_leg(leg_call_id);
                if let Some(agent_id) = agent_id {
                    self.release_agent(&agent_id);
                }
                self.next_hop(ctx, id);
            }
        }
    }

    /// The carrier's ACK for our 2xx (or an ACK in an agent dialog): only from that dialog and its side.
    pub fn on_ack(&mut self, msg: &Message, source: SocketAddr, policy: &dyn crate::sip::endpoint::SourcePolicy) {
        let Some((id, side)) = self.dialog_of(msg, source, policy) else {
            return;
        };
        if side != Side::A {
            return;
        }
        if let Some(call) = self.calls.get_mut(&id) {
            if call.state == State::Answered {
                call.state = State::Confirmed;
                call.generation += 1; // stops 2xx retransmission
            }
        }
    }

    /// The carrier cancelled its INVITE (the CANCEL itself was answered 200 by the endpoint).
    pub fn on_cancel(&mut self, ctx: &mut Ctx<'_>, invite_key: &TxKey) {
        let Some(id) = self.by_server_invite.get(invite_key).copied() else {
            return;
        };
        let Some(call) = self.calls.get(&id) else { return };
        if call.state != State::Routing {
            return; // already answered: the CANCEL has no effect (RFC 3261 9.2)
        }
        self.abandon_agent_leg(ctx, id, "caller canceled");
        self.fail_a(ctx, id, 487, "Request Terminated", &[]);
        self.finish(
            id,
            CallStatus::Canceled,
            "caller canceled while ringing",
            Some(HangupBy::Caller),
        );
    }

    /// A request inside a dialog we hold; false when no dialog matches it, by id and by source (the
    /// endpoint answers 481 and the other leg never sees it).
    pub fn on_in_dialog(
        &mut self,
        ctx: &mut Ctx<'_>,
        key: TxKey,
        req: Message,
        source: SocketAddr,
        policy: &dyn crate::sip::endpoint::SourcePolicy,
    ) -> bool {
        let Some((id, side)) = self.dialog_of(&req, source, policy) else {
            return false;
        };
        let method = req.method().cloned().unwrap_or(Method::Options);
        let local = self.cfg.local.clone();
        let Some(call) = self.calls.get_mut(&id) else {
            return false;
        };
        if side == Side::A && call.voicemail.is_some() {
            return self.in_voicemail(ctx, id, key, &req, &method);
        }
        // The other side's dialog must exist: on B only once the agent answered.
        let b_ready = call.b.as_ref().is_some_and(|b| b.dialog.is_some());
        if !b_ready {
            // An API call's dialled party may hang up while its agent still rings.
            if side == Side::A && call.a_up && method == Method::Bye {
                let ok = ResponseBuilder::for_request(&req, 200, "OK")
                    .header_unless_empty("Server", &local.server_name)
                    .build();
                let _ = ctx.tx.respond_bytes(ctx.now, &key, ok);
                self.abandon_agent_leg(ctx, id, "called party hung up first");
                self.finish(
                    id,
                    CallStatus::Completed,
                    "called party hung up before the agent answered",
                    Some(HangupBy::Caller),
                );
                return true;
            }
            return false;
        }
        if method == Method::Bye {
            let ok = ResponseBuilder::for_request(&req, 200, "OK")
                .header_unless_empty("Server", &local.server_name)
                .build();
            let _ = ctx.tx.respond_bytes(ctx.now, &key, ok);
            let (hangup, reason) = match side {
                Side::A => (HangupBy::Caller, "caller hung up"),
                Side::B => (HangupBy::Agent, "agent hung up"),
            };
            self.hang_up_other(ctx, id, side, None);
            self.finish(id, CallStatus::Completed, reason, Some(hangup));
            return true;
        }
        // Relay re-INVITE, UPDATE, INFO, ... to the other side.
        let (dialog, peer) = match side {
            Side::A => match call.b.as_mut() {
                Some(BLeg {
                    dialog: Some(d), peer, ..
                }) => (d, *peer),
                _ => return false,
            },
            Side::B => (&mut call.a.dialog, call.a.peer),
        };
        let sdp = anchor(call.relay.as_ref(), side, &req, self.media.as_ref());
        let bytes = leg::in_dialog_request(dialog, &local, &method, Some(&req), &[], sdp);
        let Ok(msg) = Message::parse(bytes) else { return false };
        match ctx.tx.send_request(ctx.now, peer, msg) {
            Ok(k) => {
                self.by_client.insert(
                    k,
                    ClientRef::Relay {
                        call: id,
                        server_key: key,
                        request: Box::new(req),
                        to_side: match side {
                            Side::A => Side::B,
                            Side::B => Side::A,
                        },
                    },
                );
            }
            Err(_) => {
                let r = ResponseBuilder::for_request(&req, 503, "Service Unavailable")
                    .header("Retry-After", "5")
                    .build();
                let _ = ctx.tx.respond_bytes(ctx.now, &key, r);
            }
        }
        true
    }

    /// Sends BYE to the side opposite `from` (or both when `from` is None).
    fn hang_up_other(&mut self, ctx: &mut Ctx<'_>, id: CallId, from: Side, reason: Option<&str>) {
        let Some(call) = self.calls.get_mut(&id) else { return };
        let mut targets: Vec<(DialogSide, Peer)> = Vec::new();
        if from != Side::B {
            if let Some(b) = call.b.as_ref() {
                if let Some(d) = &b.dialog {
                    targets.push((d.clone(), b.peer));
                }
            }
        }
        if from != Side::A {
            targets.push((call.a.dialog.clone(), call.a.peer));
        }
        for (mut d, peer) in targets {
            self.send_bye(ctx, &mut d, peer, reason);
        }
    }

    fn send_bye(&mut self, ctx: &mut Ctx<'_>, d: &mut DialogSide, peer: Peer, reason: Option<&str>) {
        let extra: Vec<(&str, &str)> = reason.map(|r| vec![("Reason", r)]).unwrap_or_default();
        let bytes = leg::in_dialog_request(d, &self.cfg.local, &Method::Bye, None, &extra, None);
        if let Ok(m) = Message::parse(bytes) {
            if let Ok(k) = ctx.tx.send_request(ctx.now, peer, m) {
                self.by_client.insert(k, ClientRef::Fire);
            }
        }
    }

    /// A client transaction timed out (Timer B/F).
    pub fn on_tx_timeout(&mut self, ctx: &mut Ctx<'_>, key: &TxKey) {
        match self.by_client.remove(key) {
            Some(ClientRef::Invite(id)) => {
                let Some(call) = self.calls.get_mut(&id) else { return };
                let Some(b) = call.b.as_ref().filter(|b| &b.key == key) else {
                    return;
                };
                if call.state != State::Routing && call.kind != CallKind::ApiOutbound {
                    return;
                }
                if matches!(b.target, LegTarget::Trunk) {
                    return self.on_trunk_failure(ctx, id, 408, None);
                }
                let agent_id = b.agent_id().map(str::to_owned);
                let leg_call_id = b.invite_call_id();
                let hop = b.hop;
                if let Some(h) = call.record.hops.get_mut(hop) {
                    h.sip_status = Some(408);
                    h.outcome = "timeout: no final answer".into();
                    h.ended_at_ms = Some(now_ms());
                }
                call.b = None;
                self.forget_leg(leg_call_id);
                if let Some(agent_id) = agent_id {
                    self.release_agent(&agent_id);
                }
                self.next_hop(ctx, id);
            }
            Some(ClientRef::Relay {
                call,
                server_key,
                request,
                ..
            }) if self.calls.contains_key(&call) => {
                let r = ResponseBuilder::for_request(&request, 408, "Request Timeout").build();
                let _ = ctx.tx.respond_bytes(ctx.now, &server_key, r);
            }
            _ => {}
        }
    }

    /// A transaction ended; drop our index entry so maps do not grow.
    pub fn on_tx_terminated(&mut self, key: &TxKey) {
        if let Some(ClientRef::Invite(id)) = self.by_client.get(key) {
            let live = self
                .calls
                .get(id)
                .and_then(|c| c.b.as_ref())
                .is_some_and(|b| &b.key == key);
            if live {
                return;
            }
        }
        self.by_client.remove(key);
        self.by_server_invite.remove(key);
    }

    /// Gives up on the current agent leg without ending the call.
    fn abandon_agent_leg(&mut self, ctx: &mut Ctx<'_>, id: CallId, why: &str) {
        let Some(call) = self.calls.get_mut(&id) else { return };
        let Some(b) = call.b.take() else { return };
        if let Some(h) = call.record.hops.get_mut(b.hop) {
            h.outcome = why.to_owned();
            h.ended_at_ms = Some(now_ms());
        }
        self.forget_leg(b.invite_call_id());
        if let Some(agent_id) = b.agent_id() {
            let agent_id = agent_id.to_owned();
            self.release_agent(&agent_id);
        }
        if b.provisional {
            // RFC 3261 9.1: CANCEL only once a provisional answer came.
            if let Ok(m) = Message::parse(cancel_for(&b.invite)) {
                if let Ok(k) = ctx.tx.send_request(ctx.now, b.peer, m) {
                    self.by_client.insert(k, ClientRef::Fire);
                }
            }
        }
        self.orphan(b);
    }

    /// A leg that is over while its call goes on (the next hop rings): its Call-ID no longer reaches the call,
    /// else a late BYE on the dead leg would hang up the next agent, and each failover would leave an entry
    /// in the index for good. A late answer on it still finds its client transaction (see `orphan`).
    fn forget_leg(&mut self, leg_call_id: Option<String>) {
        if let Some(c) = leg_call_id {
            self.by_dialog.remove(&c);
        }
    }

    /// Keeps an agent leg we gave up on reachable by its client transaction: a late 1xx gets a CANCEL,
    /// a late 2xx an ACK and a BYE.
    fn orphan(&mut self, b: BLeg) {
        let local = b.invite.header(&HeaderName::From).unwrap_or("").to_owned();
        self.by_client.insert(
            b.key.clone(),
            ClientRef::Orphan(Box::new(Orphan {
                invite: b.invite,
                peer: b.peer,
                provisional: b.provisional,
                local,
            })),
        );
    }

    pub fn poll_timeout(&self) -> Option<Instant> {
        let timer = self.timers.peek().map(|Reverse((t, ..))| *t);
        match (timer, self.flush_at) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    pub fn handle_timeout(&mut self, ctx: &mut Ctx<'_>) {
        if self.flush_at.is_some_and(|t| t <= ctx.now) {
            self.flush_records();
        }
        while let Some(Reverse((at, id, kind, gen))) = self.timers.peek().copied() {
            if at > ctx.now {
                break;
            }
            self.timers.pop();
            let Some(call) = self.calls.get_mut(&id) else { continue };
            if call.generation != gen {
                continue;
            }
            let trunk_leg = call.b.as_ref().is_some_and(|b| matches!(b.target, LegTarget::Trunk));
            match kind {
                TimerKind::Pace => self.pacing_slot(ctx, id),
                TimerKind::Setup if trunk_leg => {
                    if call.b.as_ref().is_some_and(|b| !b.provisional) {
                        self.trunk_target_dead(ctx, id, "no answer at all");
                    }
                }
                TimerKind::Ring if trunk_leg => self.trunk_no_answer(ctx, id),
                TimerKind::Setup => {
                    if call.state == State::Routing && call.b.as_ref().is_some_and(|b| !b.provisional) {
                        let ms = self.cfg.agent_setup_timeout.as_millis();
                        self.abandon_agent_leg(ctx, id, &format!("timeout: no provisional answer within {ms} ms"));
                        self.next_hop(ctx, id);
                    }
                }
                TimerKind::Ring => {
                    if call.state == State::Routing && call.b.is_some() {
                        let s = self.cfg.agent_ring_timeout.as_secs();
                        self.abandon_agent_leg(ctx, id, &format!("timeout: no answer within {s} s"));
                        self.next_hop(ctx, id);
                    }
                }
                TimerKind::Retransmit2xx => {
                    if call.state != State::Answered {
                        continue;
                    }
                    let waited = call.answered_at.map(|t| ctx.now.duration_since(t)).unwrap_or_default();
                    if waited >= self.cfg.t1 * 64 {
                        // RFC 3261 13.3.1.4: no ACK: the dialog is confirmed and then ended with BYE.
                        self.hang_up_other(ctx, id, Side::A, Some("SIP;cause=408;text=\"no ACK\""));
                        self.send_bye_a(ctx, id);
                        self.finish(
                            id,
                            CallStatus::Failed,
                            "carrier never acknowledged the answer",
                            Some(HangupBy::Edge),
                        );
                        continue;
                    }
                    // Re-send the last 2xx through the transaction (it stays in Accepted).
                    call.retransmit_interval = (call.retransmit_interval * 2).min(self.cfg.t2);
                    let next = ctx.now + call.retransmit_interval;
                    self.timers.push(Reverse((next, id, TimerKind::Retransmit2xx, gen)));
                    self.retransmit_2xx(ctx, id);
                }
            }
        }
    }

    fn send_bye_a(&mut self, ctx: &mut Ctx<'_>, id: CallId) {
        let Some(call) = self.calls.get_mut(&id) else { return };
        let mut d = call.a.dialog.clone();
        let peer = call.a.peer;
        self.send_bye(ctx, &mut d, peer, None);
    }

    fn retransmit_2xx(&mut self, ctx: &mut Ctx<'_>, id: CallId) {
        let Some(call) = self.calls.get(&id) else { return };
        if let (Some(bytes), Some(a_key)) = (&call.answer, &call.a.key) {
            let _ = ctx.tx.respond_bytes(ctx.now, a_key, bytes.clone());
        }
    }

    /// One more call on the agent.
    fn add_agent_load(&mut self, agent_id: &str) {
        add_load(&mut self.agent_load, &self.agent_gauge, agent_id);
    }

    /// One fewer call on the agent.
    fn release_agent(&mut self, agent_id: &str) {
        if let Some(n) = self.agent_load.get_mut(agent_id) {
            *n = n.saturating_sub(1);
            set_gauge(&self.agent_gauge, agent_id, *n);
        }
    }

    /// Ends a call: final status, agent released, indexes cleared, record written.
    fn finish(&mut self, id: CallId, status: CallStatus, reason: &str, hangup: Option<HangupBy>) {
        self.finish_keeping(id, status, reason, hangup, false);
    }

    /// [`Self::finish`], also returning the final record when `keep` (an API caller waits for it).
    fn finish_keeping(
        &mut self,
        id: CallId,
        status: CallStatus,
        reason: &str,
        hangup: Option<HangupBy>,
        keep: bool,
    ) -> Option<CallRecord> {
        let mut call = self.calls.remove(&id)?;
        if let Some(b) = call.b.take() {
            if let Some(c) = b.invite_call_id() {
                self.by_dialog.remove(&c);
            }
            if let Some(agent_id) = b.agent_id() {
                let agent_id = agent_id.to_owned();
                self.release_agent(&agent_id);
            }
            if b.dialog.is_none() {
                // Still ringing: its client transaction may yet answer; treat it as abandoned.
                self.orphan(b);
            }
        }
        if let Some(agent_id) = call.held_agent.take() {
            self.release_agent(&agent_id);
        }
        self.by_dialog.remove(&call.a.dialog.call_id);
        if let Some(plan) = &call.out {
            self.by_dialog.remove(&plan.call_id);
        }
        if let Some(a_key) = &call.a.key {
            self.by_server_invite.remove(a_key);
        }
        self.by_public.remove(&call.record.id);
        // Dropping the relay returns its ports (after the quarantine); a voicemail session keeps recording
        // until told to stop, and reports its file by event.
        call.relay = None;
        if let Some(vm) = call.voicemail.take() {
            vm.stop();
        }
        let now = now_ms();
        for h in call.record.hops.iter_mut().filter(|h| h.ended_at_ms.is_none()) {
            h.ended_at_ms = Some(now);
        }
        call.record.status = status;
        call.record.end_reason = Some(reason.to_owned());
        call.record.hangup_by = hangup;
        call.record.ended_at_ms = Some(now);
        self.stats.active_calls.fetch_sub(1, Ordering::Relaxed);
        tracing::debug!(call = %call.record.id, status = status.as_str(), reason, "call ended");
        let kept = keep.then(|| call.record.clone());
        self.write_record(call.record);
        kept
    }

    /// Marks a live call's record as changed: it is queued for the store [`RECORD_FLUSH`] later, as it is
    /// then. A call's first moments (taken, ringing, answered, often ended) thus make one record, not one
    /// per step; an ended call's record is queued at once by [`Self::finish_keeping`].
    fn persist(&mut self, now: Instant, id: CallId) {
        let Some(call) = self.calls.get_mut(&id) else { return };
        if !call.dirty {
            call.dirty = true;
            self.dirty.push(id);
        }
        self.flush_at.get_or_insert(now + RECORD_FLUSH);
    }

    /// Queues the records of the live calls marked by [`Self::persist`].
    fn flush_records(&mut self) {
        self.flush_at = None;
        let mut dirty = std::mem::take(&mut self.dirty);
        for id in dirty.drain(..) {
            if let Some(call) = self.calls.get_mut(&id) {
                call.dirty = false;
                send_record(&self.records, &self.stats, Persist::Call(call.record.clone()));
            }
        }
        self.dirty = dirty;
    }

    fn write_record(&self, r: CallRecord) {
        self.write(Persist::Call(r));
    }

    fn write(&self, p: Persist) {
        send_record(&self.records, &self.stats, p);
    }

    /// Edge shutdown: every call ended cleanly (BYE for answered ones, 503 for ringing ones) so that agent
    /// counts and records are right and carriers retry elsewhere.
    pub fn shutdown_all(&mut self, ctx: &mut Ctx<'_>) {
        let ids: Vec<CallId> = self.calls.keys().copied().collect();
        for id in ids {
            let state = self.calls.get(&id).map(|c| (c.state, c.a_up));
            match state {
                Some((State::Routing, a_up)) => {
                    self.abandon_agent_leg(ctx, id, "edge shutting down");
                    if a_up {
                        self.send_bye_a(ctx, id);
                    } else {
                        self.fail_a(ctx, id, 503, "Service Unavailable", &[("Retry-After", "5")]);
                    }
                    self.finish(id, CallStatus::Failed, "edge shutting down", Some(HangupBy::Edge));
                }
                Some(_) => {
                    self.hang_up_other(ctx, id, Side::A, Some("SIP;cause=503;text=\"edge shutting down\""));
                    self.send_bye_a(ctx, id);
                    self.finish(id, CallStatus::Completed, "edge shutting down", Some(HangupBy::Edge));
                }
                None => {}
            }
        }
    }

    /// Voicemail sessions whose recording has not been reported yet (the engine waits for them on shutdown).
    pub fn pending_voicemails(&self) -> usize {
        self.voicemail_meta.len()
    }

    /// The end of the chain: the edge answers and records. False when voicemail is impossible (no media
    /// engine, no offer, no ports), so the caller gets 503.
    fn start_voicemail(&mut self, ctx: &mut Ctx<'_>, id: CallId) -> bool {
        let Some(m) = &self.media else { return false };
        let Some(call) = self.calls.get_mut(&id) else {
            return false;
        };
        if call.a.invite.body().is_empty() {
            return false;
        }
        // The number's message, else its agent's default, else the operator's.
        let agent_default = self
            .index
            .agent(&call.number.agent_id)
            .and_then(|a| a.voicemail_message.clone());
        let greeting = call
            .number
            .inbound_routing
            .as_ref()
            .and_then(|r| r.voicemail_message.clone())
            .or(agent_default)
            .unwrap_or_else(|| m.default_greeting.clone());
        let cfg = Arc::new(VoicemailConfig {
            greeting_text: greeting,
            ..m.voicemail.clone()
        });
        let started = now_ms();
        let (answer, session) = match m.engine.start_voicemail(&call.record.id, call.a.invite.body(), cfg) {
            Ok(x) => x,
            Err(e) => {
                tracing::warn!(call = %call.record.id, error = %e, "voicemail could not start");
                return false;
            }
        };
        // The relay is not needed: the edge itself is the media peer now.
        call.relay = None;
        call.b_offer = None;
        let bytes = ResponseBuilder::for_request(&call.a.invite, 200, "OK")
            .to_tag(&call.a.tag)
            .header("Contact", &self.cfg.local.contact)
            .header_unless_empty("Server", &self.cfg.local.server_name)
            .body("application/sdp", answer)
            .build();
        if let Some(a_key) = &call.a.key {
            let _ = ctx.tx.respond_bytes(ctx.now, a_key, bytes.clone());
        }
        count_invite_answer(&call.record.carrier, 200);
        metrics::histogram!("edge_call_setup_seconds").record(ctx.now.duration_since(call.created).as_secs_f64());
        call.answer = Some(bytes);
        call.voicemail = Some(session);
        call.generation += 1;
        call.state = State::Answered;
        call.answered_at = Some(ctx.now);
        call.record.hops.push(Hop {
            route: Route::Voicemail,
            agent_id: None,
            sip_status: Some(200),
            outcome: "answered".into(),
            started_at_ms: started,
            ended_at_ms: None,
        });
        call.record.status = CallStatus::InProgress;
        call.record.answered_by = Some(Route::Voicemail);
        call.record.answered_at_ms = Some(now_ms());
        self.voicemail_meta.insert(
            call.record.id.clone(),
            VoicemailMeta {
                account_id: call.record.account_id.clone(),
                call_id: call.record.id.clone(),
                phone_number_id: call.number.number_id.clone(),
                caller: call.record.from.clone(),
                to: call.record.to.clone(),
            },
        );
        if call.a.peer.transport == Transport::Udp {
            let gen = call.generation;
            self.timers
                .push(Reverse((ctx.now + self.cfg.t1, id, TimerKind::Retransmit2xx, gen)));
        }
        self.stats.voicemail.fetch_add(1, Ordering::Relaxed);
        self.persist(ctx.now, id);
        true
    }

    /// A request from the caller while voicemail answers: BYE ends the recording; anything else is
    /// accepted (a session refresh gets the same SDP answer).
    fn in_voicemail(&mut self, ctx: &mut Ctx<'_>, id: CallId, key: TxKey, req: &Message, method: &Method) -> bool {
        let Some(call) = self.calls.get(&id) else { return false };
        let mut b =
            ResponseBuilder::for_request(req, 200, "OK").header_unless_empty("Server", &self.cfg.local.server_name);
        let sdp = call
            .answer
            .as_ref()
            .and_then(|a| Message::parse(a.clone()).ok())
            .map(|m| m.body_bytes());
        if *method == Method::Invite {
            b = b.header("Contact", &self.cfg.local.contact);
            if let Some(sdp) = sdp {
                b = b.body("application/sdp", sdp);
            }
        }
        let _ = ctx.tx.respond_bytes(ctx.now, &key, b.build());
        if *method == Method::Bye {
            self.finish(id, CallStatus::Completed, "caller hung up", Some(HangupBy::Caller));
        }
        true
    }

    /// An event from the media engine: a dead media path, or a finished voicemail recording.
    pub fn on_media_event(&mut self, ctx: &mut Ctx<'_>, ev: MediaEvent) {
        match ev {
            MediaEvent::Timeout { call_id } => {
                let Some(id) = self.by_public.get(&*call_id).copied() else {
                    return;
                };
                tracing::info!(call = %call_id, "media timeout: hanging up both legs");
                let reason = "SIP;cause=408;text=\"media timeout\"";
                self.hang_up_other(ctx, id, Side::A, Some(reason));
                self.send_bye_a(ctx, id);
                self.finish(
                    id,
                    CallStatus::Completed,
                    "media timeout: no RTP or RTCP from either side",
                    Some(HangupBy::Edge),
                );
            }
            MediaEvent::VoicemailEnded { call_id, outcome } => {
                let meta = self.voicemail_meta.remove(&*call_id);
                match (&outcome, meta) {
                    (Ok(o), Some(meta)) => {
                        let path = o
                            .path
                            .strip_prefix(self.media.as_ref().map(|m| m.data_dir.clone()).unwrap_or_default())
                            .unwrap_or(&o.path)
                            .to_string_lossy()
                            .into_owned();
                        self.write(Persist::Voicemail(VoicemailRecord {
                            id: format!("vm_{}", leg::token()),
                            account_id: meta.account_id,
                            call_id: meta.call_id,
                            phone_number_id: Some(meta.phone_number_id),
                            caller: meta.caller,
                            to: meta.to,
                            duration_ms: o.duration_ms as i64,
                            ended_by: ended_by_word(o.ended_by).into(),
                            recording_path: path,
                            created_at_ms: now_ms(),
                        }));
                    }
                    (Err(e), _) => tracing::error!(call = %call_id, error = %e, "voicemail recording failed"),
                    (Ok(_), None) => {}
                }
                // Ended by itself (silence, length, `#`): the edge hangs up.
                if let Some(id) = self.by_public.get(&*call_id).copied() {
                    self.send_bye_a(ctx, id);
                    self.finish(id, CallStatus::Completed, "voicemail recorded", Some(HangupBy::Edge));
                }
            }
        }
    }
}

/// One more call on the agent. Agents keep their entry (at 0 when idle) in both maps, so a call costs no
/// key allocation and `/metrics` keeps a steady series per agent.
fn add_load(load: &mut HashMap<String, u32>, gauge: &dashmap::DashMap<String, u32>, agent_id: &str) {
    let n = match load.get_mut(agent_id) {
        Some(n) => {
            *n += 1;
            *n
        }
        None => {
            load.insert(agent_id.to_owned(), 1);
            1
        }
    };
    set_gauge(gauge, agent_id, n);
}

fn set_gauge(gauge: &dashmap::DashMap<String, u32>, agent_id: &str, n: u32) {
    match gauge.get_mut(agent_id) {
        Some(mut v) => *v = n,
        None => {
            gauge.insert(agent_id.to_owned(), n);
        }
    }
}

/// Queues `p` for the record writer; a full queue counts it as dropped rather than block the engine.
fn send_record(records: &Option<tokio::sync::mpsc::Sender<Persist>>, stats: &CallStats, p: Persist) {
    if let Some(tx) = records {
        if tx.try_send(p).is_err() {
            stats.records_dropped.fetch_add(1, Ordering::Relaxed);
        }
    }
}

fn ended_by_word(e: edge_media::EndedBy) -> &'static str {
    match e {
        edge_media::EndedBy::Hangup => "hangup",
        edge_media::EndedBy::MaxLength => "max-length",
        edge_media::EndedBy::Silence => "silence",
        edge_media::EndedBy::DtmfHash => "dtmf-hash",
        edge_media::EndedBy::Shutdown => "shutdown",
    }
}

/// The SDP of `msg` (sent by `from`) rewritten by the call's relay; `None` passes the body through.
fn anchor(relay: Option<&RelayHandle>, from: Side, msg: &Message, media: Option<&MediaCtl>) -> Option<Bytes> {
    let relay = relay?;
    if msg.body().is_empty() {
        return None;
    }
    let side = match from {
        Side::A => MediaSide::A,
        Side::B => MediaSide::B,
    };
    match relay.anchor_sdp(side, msg.body(), media.and_then(|m| m.codecs.as_deref())) {
        Ok((sdp, _)) => Some(sdp),
        Err(e) => {
            // Never leak the other leg's addresses: drop the body rather than pass it through.
            tracing::warn!(call_id = msg.call_id().unwrap_or("-"), error = %e, "SDP not anchored; body dropped");
            Some(Bytes::new())
        }
    }
}

impl ALeg {
    /// The leg of a caller whose INVITE we answer (a carrier's, an agent's): our tag, its dialog as UAS.
    fn server(invite: Message, key: TxKey, peer: Peer) -> ALeg {
        let tag = leg::token();
        let dialog = DialogSide {
            transport: leg::via_transport(peer.transport),
            call_id: invite.call_id().unwrap_or("").to_owned(),
            local: format!("{};tag={tag}", invite.header(&HeaderName::To).unwrap_or("").trim()),
            remote: invite.header(&HeaderName::From).unwrap_or("").trim().to_owned(),
            remote_target: leg::contact_uri(&invite).unwrap_or_else(|| format!("sip:{}", peer.addr)),
            route_set: leg::uas_route_set(&invite),
            local_cseq: 0,
        };
        ALeg {
            invite,
            key: Some(key),
            peer,
            tag,
            dialog,
        }
    }
}

impl BLeg {
    fn invite_call_id(&self) -> Option<String> {
        self.invite.call_id().ok().map(str::to_owned)
    }

    /// The agent this leg rings, if it goes to an agent.
    fn agent_id(&self) -> Option<&str> {
        match &self.target {
            LegTarget::Agent(a) => Some(&a.id),
            LegTarget::Trunk => None,
        }
    }
}

/// INVITEs by carrier and the final code the carrier got: what a carrier's engineer compares with their CDRs.
pub fn count_invite_answer(carrier: &str, code: u16) {
    // Counter handles by (code, carrier), kept per thread (the engine's): looking one up in the recorder
    // builds and hashes its label set, two strings and a vector per INVITE answered.
    thread_local! {
        static COUNTERS: std::cell::RefCell<HashMap<u16, HashMap<String, metrics::Counter>>> =
            std::cell::RefCell::new(HashMap::new());
    }
    COUNTERS.with_borrow_mut(|by_code| {
        let by_carrier = by_code.entry(code).or_default();
        if let Some(c) = by_carrier.get(carrier) {
            return c.increment(1);
        }
        let c =
            metrics::counter!("edge_sip_invites_total", "carrier" => carrier.to_owned(), "code" => code.to_string());
        c.increment(1);
        // Carriers are the configured ones and codes are bounded, so the cache stays small.
        by_carrier.insert(carrier.to_owned(), c);
    });
}

fn hop(route: Route, agent_id: &str, status: Option<u16>, outcome: String, started: i64) -> Hop {
    Hop {
        route,
        agent_id: Some(agent_id.to_owned()),
        sip_status: status,
        outcome,
        started_at_ms: started,
        ended_at_ms: Some(now_ms()),
    }
}

/// Our side of the agent's dialog from its 2xx: its To (with tag), Contact and Record-Route.
fn dialog_from_answer(local_from: &str, call_id: &str, resp: &Message, peer: Peer) -> DialogSide {
    DialogSide {
        transport: leg::via_transport(peer.transport),
        call_id: call_id.to_owned(),
        local: local_from.trim().to_owned(),
        remote: resp.header(&HeaderName::To).unwrap_or("").trim().to_owned(),
        remote_target: leg::contact_uri(resp).unwrap_or_else(|| format!("sip:{}", peer.addr)),
        route_set: leg::uac_route_set(resp),
        local_cseq: 1,
    }
}

/// Where an agent's `sip_uri` points: an address now, or a host name to resolve first.
enum AgentTarget {
    Ready(Peer),
    Resolve {
        host: String,
        port: Option<u16>,
        transport: Transport,
    },
}

/// Reads an agent's `sip_uri`: host (IP or name), port, `transport=udp|tcp`. An address the
/// policy refuses (loopback, private...) makes the agent unavailable.
fn agent_peer(sip_uri: &str, targets: &edge_api::TargetPolicy) -> Result<AgentTarget, String> {
    let uri = Uri::parse(sip_uri).map_err(|_| format!("unavailable: sip_uri {sip_uri} does not parse"))?;
    let Uri::Sip(u) = uri else {
        return Err(format!("unavailable: sip_uri {sip_uri} is not a sip: URI"));
    };
    let transport = match u.param("transport") {
        None => Transport::Udp,
        Some(t) if t.eq_ignore_ascii_case("udp") => Transport::Udp,
        Some(t) if t.eq_ignore_ascii_case("tcp") => Transport::Tcp,
        Some(t) => {
            return Err(format!(
                "unavailable: transport={t} toward agents is not supported (udp, tcp)"
            ))
        }
    };
    if u.secure {
        return Err(format!(
            "unavailable: sip_uri {sip_uri} asks for TLS, not supported yet"
        ));
    }
    let host = u.host.trim_start_matches('[').trim_end_matches(']');
    let ip: IpAddr = match host {
        "localhost" => IpAddr::from([127, 0, 0, 1]),
        h => match h.parse() {
            Ok(ip) => ip,
            Err(_) => {
                return Ok(AgentTarget::Resolve {
                    host: h.to_owned(),
                    port: u.port,
                    transport,
                })
            }
        },
    };
    if let Some(kind) = targets.refusal(ip) {
        return Err(format!(
            "unavailable: sip_uri points at a {kind} address (not in [security] internal_targets)"
        ));
    }
    Ok(AgentTarget::Ready(Peer {
        addr: SocketAddr::new(ip, u.port.unwrap_or(5060)),
        transport,
        conn: None,
    }))
}

/// `host[:port]` of a SIP URI, for the To header toward the agent.
fn uri_hostport(sip_uri: &str) -> String {
    match Uri::parse(sip_uri) {
        Ok(Uri::Sip(u)) => match u.port {
            Some(p) => format!("{}:{p}", u.host),
            None => u.host.to_owned(),
        },
        _ => "invalid".into(),
    }
}
