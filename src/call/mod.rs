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
pub mod leg;

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap, VecDeque};
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
use crate::transport::Link;
pub use edge_store::{now_ms, CallRecord, CallStatus, HangupBy, Hop, Route};
use leg::{DialogSide, Local};

/// Call-control settings (`[routing]` in the config).
#[derive(Debug, Clone)]
pub struct CallConfig {
    pub agent_setup_timeout: Duration,
    pub agent_ring_timeout: Duration,
    pub default_country_code: Option<String>,
    pub local: Local,
    /// The T1 used for our own 2xx retransmissions toward the carrier (RFC 3261 13.3.1.4).
    pub t1: Duration,
    pub t2: Duration,
    /// Host named in Warning headers.
    pub warn_agent: String,
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
            link: link_of(peer),
            to: peer.addr,
            bytes,
        });
    }
}

pub(crate) fn link_of(peer: &Peer) -> Link {
    match peer.conn {
        Some(id) => Link::Tcp(id),
        None => Link::Udp,
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
        request: Message,
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

struct ALeg {
    invite: Message,
    key: TxKey,
    peer: Peer,
    tag: String,
    dialog: DialogSide,
}

struct BLeg {
    agent: Arc<AgentRecord>,
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
    number: Arc<NumberRoute>,
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
}

/// The inbound call controller.
pub struct CallController {
    cfg: CallConfig,
    index: Arc<RoutingIndex>,
    calls: HashMap<CallId, Call>,
    by_server_invite: HashMap<TxKey, CallId>,
    by_client: HashMap<TxKey, ClientRef>,
    by_dialog: HashMap<String, (CallId, Side)>,
    timers: BinaryHeap<Reverse<(Instant, CallId, TimerKind, u32)>>,
    agent_load: HashMap<String, u32>,
    next_id: CallId,
    records: Option<tokio::sync::mpsc::Sender<CallRecord>>,
    pub stats: Arc<CallStats>,
    /// Live load per agent, shared with /metrics.
    pub agent_gauge: Arc<dashmap::DashMap<String, u32>>,
}

impl CallController {
    pub fn new(
        cfg: CallConfig,
        index: Arc<RoutingIndex>,
        records: Option<tokio::sync::mpsc::Sender<CallRecord>>,
    ) -> Self {
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
            stats: Arc::new(CallStats::default()),
            agent_gauge: Arc::new(dashmap::DashMap::new()),
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
        format!("399 {} \"{}\"", self.cfg.warn_agent, text.replace(['"', '\\'], "'"))
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
        let id = self.next_id;
        self.next_id += 1;
        let tag = leg::token();
        let from = invite.from().ok();
        let caller = from
            .as_ref()
            .and_then(|f| f.uri.user().map(|u| u.into_owned()))
            .unwrap_or_else(|| "anonymous".into());
        let caller_name = from
            .as_ref()
            .and_then(|f| f.display_name.as_ref().map(|d| d.to_string()));
        let a_call_id = invite.call_id().unwrap_or("").to_owned();
        let a_dialog = DialogSide {
            call_id: a_call_id.clone(),
            local: format!("{};tag={tag}", invite.header(&HeaderName::To).unwrap_or("").trim()),
            remote: invite.header(&HeaderName::From).unwrap_or("").trim().to_owned(),
            remote_target: leg::contact_uri(&invite).unwrap_or_else(|| format!("sip:{}", peer.addr)),
            route_set: leg::uas_route_set(&invite),
            local_cseq: 0,
        };
        let mut plan = VecDeque::new();
        plan.push_back((inbound.agent_id.clone(), Route::Primary));
        if let Some(f) = &inbound.fallback_agent_id {
            plan.push_back((f.clone(), Route::Fallback));
        }
        let record = CallRecord {
            id: format!("call_{}", leg::token()),
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
        tracing::info!(call = %record.id, sip_call_id = %a_call_id, carrier, to = %record.to, "inbound call");
        self.stats.calls_started.fetch_add(1, Ordering::Relaxed);
        self.stats.active_calls.fetch_add(1, Ordering::Relaxed);
        self.by_server_invite.insert(key.clone(), id);
        self.by_dialog.insert(a_call_id, (id, Side::A));
        self.calls.insert(
            id,
            Call {
                number,
                a: ALeg {
                    invite,
                    key,
                    peer,
                    tag,
                    dialog: a_dialog,
                },
                b: None,
                plan,
                state: State::Routing,
                generation: 0,
                record,
                retransmit_interval: self.cfg.t1,
                answered_at: None,
                answer: None,
                created: ctx.now,
            },
        );
        self.persist(id);
        self.next_hop(ctx, id);
        Ok(())
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
            let agent = match agent.and_then(|a| agent_peer(&a.sip_uri).map(|p| (a, p))) {
                Ok(x) => x,
                Err(outcome) => {
                    let call = self.calls.get_mut(&id).expect("checked above");
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
            if self.start_agent_leg(ctx, id, agent.0, agent.1, route) {
                return;
            }
        }
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
        let from_user = call.record.from.clone();
        let display = call
            .record
            .caller_name
            .as_ref()
            .map(|d| format!("\"{}\" ", d.replace(['"', '\\'], "")))
            .unwrap_or_default();
        let host = local.sent_by.clone();
        let from = format!("{display}<sip:{from_user}@{host}>;tag={from_tag}");
        let to = format!("<sip:{}@{}>", call.record.to, uri_hostport(&agent.sip_uri));
        let via = format!("SIP/2.0/UDP {};branch={};rport", local.sent_by, new_branch());
        let mf = a
            .max_forwards()
            .ok()
            .flatten()
            .unwrap_or(70)
            .saturating_sub(1)
            .clamp(1, 70)
            .to_string();
        let x = [
            ("X-OneInbox-Call-Id", call.record.id.clone()),
            ("X-OneInbox-Phone-Number", call.record.to.clone()),
            ("X-OneInbox-Phone-Number-Id", call.number.number_id.clone()),
            ("X-OneInbox-Agent-Id", agent.id.clone()),
            ("X-OneInbox-Route", route.as_str().to_owned()),
            ("X-OneInbox-Carrier", call.record.carrier.clone()),
        ];
        let passthrough = leg::passthrough_headers(a);
        let relayed: Vec<(String, String)> = a
            .header_entries()
            .filter(|(n, _, _)| {
                matches!(
                    n,
                    HeaderName::SessionExpires | HeaderName::MinSE | HeaderName::Supported
                )
            })
            .map(|(_, r, v)| (r.to_owned(), v.to_owned()))
            .collect();
        let mut b = sip_core::build::RequestBuilder::new(Method::Invite, &agent.sip_uri)
            .header("Via", &via)
            .header("Max-Forwards", &mf)
            .header("From", &from)
            .header("To", &to)
            .header("Call-ID", &b_call_id)
            .header("CSeq", "1 INVITE")
            .header("Contact", &local.contact)
            .header("Allow", crate::sip::endpoint::ALLOW)
            .header("User-Agent", &local.server_name);
        for (n, v) in &relayed {
            b = b.header(n, v);
        }
        for (n, v) in &x {
            b = b.header(n, v);
        }
        for (n, v) in &passthrough {
            b = b.header(n, v);
        }
        if !a.body().is_empty() {
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
        *self.agent_load.entry(agent.id.clone()).or_insert(0) += 1;
        self.agent_gauge.insert(agent.id.clone(), self.agent_load[&agent.id]);
        self.by_client.insert(key.clone(), ClientRef::Invite(id));
        self.by_dialog.insert(b_call_id, (id, Side::B));
        call.b = Some(BLeg {
            agent,
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
            .header("Server", &self.cfg.local.server_name);
        for (n, v) in extra {
            b = b.header(n, v);
        }
        let bytes = b.build();
        call.record.sip_status = Some(code);
        count_invite_answer(&call.record.carrier, code);
        if let Err(e) = ctx.tx.respond(ctx.now, &call.a.key, bytes) {
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
                }) = self.by_client.remove(key)
                else {
                    return;
                };
                let Some(c) = self.calls.get_mut(&call) else { return };
                let tag = c.a.tag.clone();
                let bytes = leg::relay_response(&request, &resp, &tag, &self.cfg.local);
                let _ = ctx.tx.respond(ctx.now, &server_key, bytes);
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

    fn on_agent_response(&mut self, ctx: &mut Ctx<'_>, id: CallId, key: &TxKey, resp: Message, status: u16) {
        let local = self.cfg.local.clone();
        let Some(call) = self.calls.get_mut(&id) else { return };
        let Some(b) = call.b.as_mut().filter(|b| &b.key == key) else {
            return;
        };
        match status {
            100..=199 => {
                b.provisional = true;
                if status > 100 && call.state == State::Routing {
                    let bytes = leg::relay_response(&call.a.invite, &resp, &call.a.tag, &local);
                    let _ = ctx.tx.respond(ctx.now, &call.a.key, bytes);
                    if call.record.status == CallStatus::Queued {
                        call.record.status = CallStatus::Ringing;
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
                let agent_id = b.agent.id.clone();
                let hop = b.hop;
                if let Some(h) = call.record.hops.get_mut(hop) {
                    h.sip_status = Some(status);
                    h.outcome = "answered".into();
                    h.ended_at_ms = Some(now_ms());
                }
                call.generation += 1; // cancels the setup and ring timers
                call.state = State::Answered;
                call.answered_at = Some(ctx.now);
                call.record.status = CallStatus::InProgress;
                call.record.answered_by = Some(route);
                call.record.agent_id = Some(agent_id);
                call.record.answered_at_ms = Some(now_ms());
                match route {
                    Route::Primary => self.stats.answered_primary.fetch_add(1, Ordering::Relaxed),
                    _ => self.stats.answered_fallback.fetch_add(1, Ordering::Relaxed),
                };
                let bytes = leg::relay_response(&call.a.invite, &resp, &call.a.tag, &local);
                let _ = ctx.tx.respond(ctx.now, &call.a.key, bytes.clone());
                call.answer = Some(bytes);
                count_invite_answer(&call.record.carrier, status);
                metrics::histogram!("edge_call_setup_seconds")
                    .record(ctx.now.duration_since(call.created).as_secs_f64());
                if call.a.peer.transport == Transport::Udp {
                    let gen = call.generation;
                    self.timers
                        .push(Reverse((ctx.now + self.cfg.t1, id, TimerKind::Retransmit2xx, gen)));
                }
                self.persist(id);
            }
            _ => {
                // The transaction layer has ACKed it; this hop is over.
                let agent_id = b.agent.id.clone();
                let hop = b.hop;
                let reason = resp.reason().unwrap_or("").to_owned();
                if let Some(h) = call.record.hops.get_mut(hop) {
                    h.sip_status = Some(status);
                    h.outcome = format!("rejected: {status} {reason}");
                    h.ended_at_ms = Some(now_ms());
                }
                call.b = None;
                self.release_agent(&agent_id);
                self.next_hop(ctx, id);
            }
        }
    }

    /// The carrier's ACK for our 2xx (or an ACK in an agent dialog).
    pub fn on_ack(&mut self, msg: &Message) {
        let Some((id, side)) = msg.call_id().ok().and_then(|c| self.by_dialog.get(c)).copied() else {
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

    /// A request inside a dialog we hold; false when no dialog matches (the endpoint answers 481).
    pub fn on_in_dialog(&mut self, ctx: &mut Ctx<'_>, key: TxKey, req: Message) -> bool {
        let Some((id, side)) = req.call_id().ok().and_then(|c| self.by_dialog.get(c)).copied() else {
            return false;
        };
        let method = req.method().cloned().unwrap_or(Method::Options);
        let local = self.cfg.local.clone();
        let Some(call) = self.calls.get_mut(&id) else {
            return false;
        };
        // The other side's dialog must exist: on B only once the agent answered.
        let b_ready = call.b.as_ref().is_some_and(|b| b.dialog.is_some());
        if !b_ready {
            return false;
        }
        if method == Method::Bye {
            let ok = ResponseBuilder::for_request(&req, 200, "OK")
                .header("Server", &local.server_name)
                .build();
            let _ = ctx.tx.respond(ctx.now, &key, ok);
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
            Side::A => {
                let b = call.b.as_mut().expect("b_ready");
                (b.dialog.as_mut().expect("b_ready"), b.peer)
            }
            Side::B => (&mut call.a.dialog, call.a.peer),
        };
        let bytes = leg::in_dialog_request(dialog, &local, &method, Some(&req), &[]);
        let Ok(msg) = Message::parse(bytes) else { return false };
        match ctx.tx.send_request(ctx.now, peer, msg) {
            Ok(k) => {
                self.by_client.insert(
                    k,
                    ClientRef::Relay {
                        call: id,
                        server_key: key,
                        request: req,
                    },
                );
            }
            Err(_) => {
                let r = ResponseBuilder::for_request(&req, 503, "Service Unavailable")
                    .header("Retry-After", "5")
                    .build();
                let _ = ctx.tx.respond(ctx.now, &key, r);
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
        let bytes = leg::in_dialog_request(d, &self.cfg.local, &Method::Bye, None, &extra);
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
                if call.state != State::Routing {
                    return;
                }
                let agent_id = b.agent.id.clone();
                let hop = b.hop;
                if let Some(h) = call.record.hops.get_mut(hop) {
                    h.sip_status = Some(408);
                    h.outcome = "timeout: no final answer".into();
                    h.ended_at_ms = Some(now_ms());
                }
                call.b = None;
                self.release_agent(&agent_id);
                self.next_hop(ctx, id);
            }
            Some(ClientRef::Relay {
                call,
                server_key,
                request,
            }) if self.calls.contains_key(&call) => {
                let r = ResponseBuilder::for_request(&request, 408, "Request Timeout").build();
                let _ = ctx.tx.respond(ctx.now, &server_key, r);
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
        self.release_agent(&b.agent.id);
        if b.provisional {
            // RFC 3261 9.1: CANCEL only once a provisional answer came.
            if let Ok(m) = Message::parse(cancel_for(&b.invite)) {
                if let Ok(k) = ctx.tx.send_request(ctx.now, b.peer, m) {
                    self.by_client.insert(k, ClientRef::Fire);
                }
            }
        }
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
        self.timers.peek().map(|Reverse((t, ..))| *t)
    }

    pub fn handle_timeout(&mut self, ctx: &mut Ctx<'_>) {
        while let Some(Reverse((at, id, kind, gen))) = self.timers.peek().copied() {
            if at > ctx.now {
                break;
            }
            self.timers.pop();
            let Some(call) = self.calls.get_mut(&id) else { continue };
            if call.generation != gen {
                continue;
            }
            match kind {
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
        if let Some(bytes) = &call.answer {
            let _ = ctx.tx.respond(ctx.now, &call.a.key, bytes.clone());
        }
    }

    /// One fewer call on the agent.
    fn release_agent(&mut self, agent_id: &str) {
        if let Some(n) = self.agent_load.get_mut(agent_id) {
            *n = n.saturating_sub(1);
            self.agent_gauge.insert(agent_id.to_owned(), *n);
            if *n == 0 {
                self.agent_load.remove(agent_id);
            }
        }
    }

    /// Ends a call: final status, agent released, indexes cleared, record written.
    fn finish(&mut self, id: CallId, status: CallStatus, reason: &str, hangup: Option<HangupBy>) {
        let Some(mut call) = self.calls.remove(&id) else { return };
        if let Some(b) = call.b.take() {
            if let Some(c) = b.invite_call_id() {
                self.by_dialog.remove(&c);
            }
            if b.dialog.is_some() {
                self.release_agent(&b.agent.id);
            } else {
                // Still ringing: its client transaction may yet answer; treat it as abandoned.
                self.release_agent(&b.agent.id);
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
        }
        self.by_dialog.remove(&call.a.dialog.call_id);
        self.by_server_invite.remove(&call.a.key);
        let now = now_ms();
        for h in call.record.hops.iter_mut().filter(|h| h.ended_at_ms.is_none()) {
            h.ended_at_ms = Some(now);
        }
        call.record.status = status;
        call.record.end_reason = Some(reason.to_owned());
        call.record.hangup_by = hangup;
        call.record.ended_at_ms = Some(now);
        if call.record.answered_by.is_none() && status != CallStatus::Canceled && status != CallStatus::Completed {
            self.stats.rejected.fetch_add(0, Ordering::Relaxed);
        }
        self.stats.active_calls.fetch_sub(1, Ordering::Relaxed);
        tracing::info!(call = %call.record.id, status = status.as_str(), reason, "call ended");
        self.write_record(call.record);
    }

    fn persist(&mut self, id: CallId) {
        if let Some(r) = self.calls.get(&id).map(|c| c.record.clone()) {
            self.write_record(r);
        }
    }

    fn write_record(&self, r: CallRecord) {
        if let Some(tx) = &self.records {
            if tx.try_send(r).is_err() {
                self.stats.records_dropped.fetch_add(1, Ordering::Relaxed);
            }
        }
    }

    /// Edge shutdown: every call ended cleanly (BYE for answered ones, 503 for ringing ones) so that agent
    /// counts and records are right and carriers retry elsewhere.
    pub fn shutdown_all(&mut self, ctx: &mut Ctx<'_>) {
        let ids: Vec<CallId> = self.calls.keys().copied().collect();
        for id in ids {
            let state = self.calls.get(&id).map(|c| c.state);
            match state {
                Some(State::Routing) => {
                    self.abandon_agent_leg(ctx, id, "edge shutting down");
                    self.fail_a(ctx, id, 503, "Service Unavailable", &[("Retry-After", "5")]);
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
}

impl BLeg {
    fn invite_call_id(&self) -> Option<String> {
        self.invite.call_id().ok().map(str::to_owned)
    }
}

/// INVITEs by carrier and the final code the carrier got: what a carrier's engineer compares with their CDRs.
pub fn count_invite_answer(carrier: &str, code: u16) {
    metrics::counter!("edge_sip_invites_total", "carrier" => carrier.to_owned(), "code" => code.to_string())
        .increment(1);
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
        call_id: call_id.to_owned(),
        local: local_from.trim().to_owned(),
        remote: resp.header(&HeaderName::To).unwrap_or("").trim().to_owned(),
        remote_target: leg::contact_uri(resp).unwrap_or_else(|| format!("sip:{}", peer.addr)),
        route_set: leg::uac_route_set(resp),
        local_cseq: 1,
    }
}

/// Where an agent's `sip_uri` points: an IP literal host (names need the resolver, not wired here yet).
fn agent_peer(sip_uri: &str) -> Result<Peer, String> {
    let uri = Uri::parse(sip_uri).map_err(|_| format!("unavailable: sip_uri {sip_uri} does not parse"))?;
    let Uri::Sip(u) = uri else {
        return Err(format!("unavailable: sip_uri {sip_uri} is not a sip: URI"));
    };
    let host = u.host.trim_start_matches('[').trim_end_matches(']');
    let ip: IpAddr = match host {
        "localhost" => IpAddr::from([127, 0, 0, 1]),
        h => h
            .parse()
            .map_err(|_| format!("unavailable: sip_uri host {h} is a name; only IP addresses are supported so far"))?,
    };
    let transport = match u.param("transport") {
        None => Transport::Udp,
        Some(t) if t.eq_ignore_ascii_case("udp") => Transport::Udp,
        Some(t) => return Err(format!("unavailable: transport={t} toward agents is not supported yet")),
    };
    Ok(Peer {
        addr: SocketAddr::new(ip, u.port.unwrap_or(5060)),
        transport,
        conn: None,
    })
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
