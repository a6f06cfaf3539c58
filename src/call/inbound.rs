//! Inbound calls: a carrier's INVITE -> dialed number (E.164) -> routing index -> hop chain
//! (`inbound_routing.agent_id`, then `fallback.agent_id`, then voicemail) -> the agent leg's INVITE.
//! An agent that cannot be rung (disabled, at its limit, unreachable) is a hop with that outcome, and the
//! next one is tried; the end of the chain is voicemail (`voicemail.rs`) or a 503.

use bytes::Bytes;
use edge_store::{AgentRecord, AgentStatus, CallRecord, CallStatus, Hop, Route};
use sip_core::message::{HeaderName, Message, Method, Transport, Uri};
use sip_core::transaction::{Peer, TxKey};
use std::cmp::Reverse;
use std::collections::VecDeque;
use std::fmt::Write as _;
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Instant;

use crate::call::context::{Ctx, Reject};
use crate::call::media::{encryption_of, MediaEncryption, MediaRelay, Side};
use crate::call::outbound::{ResolveJob, TrunkTarget};
use crate::call::outcome::{Direction, Ending, HopOutcome, Refusal, Unavailable};
use crate::call::registry::{note_trace_leg, CallController};
use crate::call::state::{ALeg, BLeg, Call, CallId, CallKind, ClientRef, LegTarget, TimerKind};
use crate::call::{dialed, leg};

/// A refusal for want of media ports is logged on the first one and then once per this many: under
/// overload every INVITE would log, and the log would compete with the calls (the count is on /metrics).
pub(super) const MEDIA_UNAVAILABLE_LOG_EVERY: u64 = 1000;

impl CallController {
    /// A new INVITE (outside any dialog) that passed the core checks. `Err` is the answer to send.
    pub fn on_invite(
        &mut self,
        ctx: &mut Ctx<'_>,
        key: TxKey,
        invite: Message,
        peer: Peer,
        carrier: &str,
    ) -> Result<(), Reject> {
        self.on_carrier_invite(ctx, key, invite, peer, carrier, MediaEncryption::None)
    }

    /// [`Self::on_invite`] from a carrier whose `media_encryption` is `encryption`.
    pub fn on_carrier_invite(
        &mut self,
        ctx: &mut Ctx<'_>,
        key: TxKey,
        invite: Message,
        peer: Peer,
        carrier: &str,
        encryption: MediaEncryption,
    ) -> Result<(), Reject> {
        let did = match dialed::dialed_number(&invite, self.cfg.default_country_code.as_deref()) {
            Ok(d) => d,
            Err(e) => {
                self.stats.rejected.fetch_add(1, Ordering::Relaxed);
                return Err(Reject {
                    code: 404,
                    reason: "Not Found",
                    headers: vec![("Warning", self.warning(&e.to_string()))],
                    why: None,
                });
            }
        };
        let Some(number) = self.index.lookup_number(&did) else {
            self.stats.rejected.fetch_add(1, Ordering::Relaxed);
            return Err(Reject {
                code: 404,
                reason: "Not Found",
                headers: vec![("Warning", self.warning(&format!("{did} is not a number served here")))],
                why: None,
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
                why: Some(Refusal::NoInboundRouting),
            });
        };
        let a_call_id = invite.call_id().unwrap_or("").to_owned();
        let mut plan = VecDeque::new();
        plan.push_back((inbound.agent_id.clone(), Route::Primary));
        if let Some(f) = &inbound.fallback_agent_id {
            plan.push_back((f.clone(), Route::Fallback));
        }
        let id = self.new_record_id(ctx.wall_ms);
        let record = self.carrier_record(id, &number, carrier, &invite, did, ctx.wall_ms);
        // The agent's policy is set when its leg starts (`start_agent_leg` rebuilds the offer for it).
        let (relay, b_offer) = self.anchor_offer(&record.id, &invite, [encryption, MediaEncryption::None])?;
        tracing::debug!(call = %record.id, sip_call_id = %a_call_id, carrier, to = %record.to, "inbound call");
        let mut call = Call::new(
            CallKind::Inbound,
            number,
            ALeg::server(invite, key.clone(), peer, self.rng.token()),
            record,
            ctx.now,
        );
        call.plan = plan;
        call.relay = relay;
        call.b_offer = b_offer;
        let id = self.new_call(call);
        self.by_server_invite.insert(key, id);
        if let Some(c) = self.calls.get(&id) {
            note_trace_leg(&mut self.trace_legs, &a_call_id, &c.record.id, "carrier".into());
        }
        self.by_dialog.insert(a_call_id, (id, Side::A));
        self.persist(ctx.now, id);
        self.next_hop(ctx, id);
        Ok(())
    }

    /// Anchors a caller's SDP offer on a new relay: the relay and the offer rewritten for the other leg.
    /// No ports is a clean 503 and an unusable offer a 488 (a plain offer from a leg whose `encryption`
    /// is `srtp_required` too), never a half-set-up call. `encryption`: the policies of legs A and B.
    #[allow(clippy::type_complexity)]
    pub(super) fn anchor_offer(
        &self,
        record_id: &str,
        invite: &Message,
        encryption: [MediaEncryption; 2],
    ) -> Result<(Option<Box<dyn MediaRelay>>, Option<Bytes>), Reject> {
        let Some(m) = self.media.as_ref().filter(|_| !invite.body().is_empty()) else {
            return Ok((None, None));
        };
        let relay = m.allocate_relay(record_id).map_err(|e| {
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
                    ("Warning", self.warning(e.warning)),
                ],
                why: Some(Refusal::NoMediaPorts(e.warning.to_string())),
            }
        })?;
        relay.set_encryption(Side::A, encryption[0], false);
        relay.set_encryption(Side::B, encryption[1], false);
        match relay.anchor_sdp(Side::A, invite.body(), true) {
            Ok(sdp) => Ok((Some(relay), Some(sdp))),
            Err(e) => {
                self.stats.rejected.fetch_add(1, Ordering::Relaxed);
                let code = e.status;
                Err(Reject {
                    code,
                    reason: if code == 488 {
                        "Not Acceptable Here"
                    } else {
                        "Bad Request"
                    },
                    headers: vec![("Warning", self.warning(&format!("SDP offer: {e}")))],
                    why: Some(if code == 488 {
                        Refusal::SdpNotAcceptable(e.to_string())
                    } else {
                        Refusal::SdpUnreadable(e.to_string())
                    }),
                })
            }
        }
    }

    /// Tries the next agent of the chain; with none left, the end of the chain.
    pub(super) fn next_hop(&mut self, ctx: &mut Ctx<'_>, id: CallId) {
        if let Some(call) = self.calls.get(&id).filter(|c| c.phase.is_transferring()) {
            // A transfer's agent could not take the call: one target, no chain; the caller stays.
            let (status, why) = call
                .hop_outcomes
                .last()
                .map(|o| (o.synthetic_status().unwrap_or(480), o.to_string()))
                .unwrap_or((480, "unavailable".into()));
            // An answer whose media was refused carries a 200 on its hop; the transfer failed with 488.
            let status = match call.hop_outcomes.last() {
                Some(HopOutcome::MediaRefused(_)) => 488,
                _ => call.record.hops.last().and_then(|h| h.sip_status).unwrap_or(status),
            };
            let (code, reason) = crate::call::outbound::agent_code(status);
            return self.transfer_failed(ctx, id, code, reason, &why);
        }
        loop {
            let Some(call) = self.calls.get_mut(&id) else { return };
            call.generation += 1;
            let Some((agent_id, route)) = call.plan.pop_front() else {
                return self.chain_exhausted(ctx, id);
            };
            if route == Route::Fallback {
                self.stats.failovers.fetch_add(1, Ordering::Relaxed);
            }
            let started = ctx.wall_ms;
            let agent = match self.index.agent(&agent_id) {
                None => Err(Unavailable::AgentNotFound),
                Some(a) if a.status != AgentStatus::Active => Err(Unavailable::AgentDisabled),
                Some(a) if self.agent_slots.load(&a.id) >= a.max_concurrent_calls => {
                    Err(Unavailable::AtLimit(a.max_concurrent_calls))
                }
                Some(a) => Ok(a),
            };
            let targets = &self.cfg.targets;
            let agent = match agent.and_then(|a| agent_peer(&a.sip_uri, targets).map(|p| (a, p))) {
                Ok(x) => x,
                Err(why) => {
                    let Some(call) = self.calls.get_mut(&id) else { return };
                    let outcome = HopOutcome::Unavailable(why);
                    call.push_hop(route, Some(agent_id), None, outcome, started, Some(started));
                    continue;
                }
            };
            let peer = match agent.1 {
                AgentTarget::Ready(peer) => peer,
                AgentTarget::Resolve {
                    host,
                    port,
                    transport,
                    secure,
                } => {
                    // A host name: the driver resolves it (RFC 3263) and `on_resolved` goes on from here.
                    let gen = self.calls.get(&id).map(|c| c.generation).unwrap_or(0);
                    self.resolve_jobs.push_back(ResolveJob {
                        call: id,
                        generation: gen,
                        host,
                        port,
                        transport: Some(transport),
                        secure,
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
    pub(super) fn agent_resolved(
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
                let now = ctx.wall_ms;
                let outcome = HopOutcome::Unavailable(Unavailable::DoesNotResolve(why));
                call.push_hop(route, Some(agent.id.clone()), None, outcome, now, Some(now));
            }
        }
        self.next_hop(ctx, id);
    }

    /// Sends the agent leg's INVITE; false when it could not even be sent (then the next hop is tried).
    /// Reached through [`Self::start_agent_leg`], which asks the cluster first under `[cluster]`.
    pub(super) fn send_agent_leg(
        &mut self,
        ctx: &mut Ctx<'_>,
        id: CallId,
        agent: Arc<AgentRecord>,
        peer: Peer,
        route: Route,
    ) -> bool {
        let local = self.cfg.local.clone();
        let b_call_id = self.new_leg_call_id();
        // Over TLS: the connection that checks the agent's host name (and shows the agents' client
        // certificate, if the config has one).
        let mut peer = peer;
        if peer.transport == Transport::Tls && peer.conn.is_none() {
            if let Some(host) = uri_host(&agent.sip_uri) {
                let dest = crate::transport::tls_client::TlsDest {
                    name: host.into(),
                    identity: self.cfg.outbound.agent_tls_identity().map(Into::into),
                    pem: None,
                };
                peer.conn = Some(self.cfg.tls.route(peer.addr, dest));
            }
        }
        let Some(call) = self.calls.get_mut(&id) else {
            return false;
        };
        let agent_hostport = match uri_hostport(&agent.sip_uri) {
            Ok(h) => h,
            Err(e) => {
                let outcome = HopOutcome::Unavailable(Unavailable::SipUri(e.to_string()));
                call.push_hop(
                    route,
                    Some(agent.id.clone()),
                    None,
                    outcome,
                    ctx.wall_ms,
                    Some(ctx.wall_ms),
                );
                return false;
            }
        };
        if call.kind == CallKind::Inbound && !call.phase.is_transferring() {
            // The carrier's offer, made again for this agent: SRTP or plain as its `media_encryption` says,
            // with keys of the edge's for this agent (the carrier's key and answer stay as they are).
            if let Some(relay) = call.relay.as_deref() {
                relay.set_encryption(Side::B, encryption_of(agent.media_encryption), true);
                match relay.anchor_sdp(Side::A, call.a.invite.body(), true) {
                    Ok(sdp) => call.b_offer = Some(sdp),
                    Err(e) => tracing::warn!(call = %call.record.id, error = %e, "offer not rebuilt for the agent"),
                }
            }
        }
        let a = &call.a.invite;
        let from_tag = self.rng.token();
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
        let to = format!("<sip:{to_user}@{agent_hostport}>");
        let direction = if call.kind == CallKind::Inbound {
            Direction::Inbound
        } else {
            Direction::Outbound
        }
        .as_str();
        let via = format!(
            "SIP/2.0/{} {};branch={};rport",
            leg::via_transport(peer.transport),
            local.sent_by_for(peer.transport),
            self.rng.branch()
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
        let contact = local.contact_on(peer.transport, &agent.sip_uri);
        let supported = leg::supported_across(a);
        let mut b = sip_core::build::RequestBuilder::new(Method::Invite, &agent.sip_uri)
            .header("Via", &via)
            .header("Max-Forwards", &mf)
            .header("From", &from)
            .header("To", &to)
            .header("Call-ID", &b_call_id)
            .header("CSeq", "1 INVITE")
            .header("Contact", &contact)
            .header("Allow", crate::sip::endpoint::ALLOW)
            .header("Supported", &supported)
            .header_unless_empty("User-Agent", &local.server_name);
        for (_, n, v) in a
            .fields()
            .filter(|(n, _, _)| matches!(n, Some(HeaderName::SessionExpires | HeaderName::MinSE)))
        {
            b = b.header(n, v);
        }
        for (n, v) in x {
            b = b.header(n, v);
        }
        for (n, v) in leg::passthrough_headers(a) {
            b = b.header(n, v);
        }
        if let Some(rb) = call.phase.transfer().and_then(|t| t.referred_by.as_deref()) {
            b = b.header("Referred-By", rb);
        }
        if let Some(sdp) = &call.b_offer {
            b = b.body("application/sdp", sdp.clone());
        } else if !a.body().is_empty() {
            b = b.body(a.content_type().unwrap_or("application/sdp"), a.body_bytes());
        }
        let started = ctx.wall_ms;
        let msg = match b.build_message() {
            Ok(m) => m,
            Err(e) => {
                let outcome = HopOutcome::NotSent(format!("could not build INVITE: {e}"));
                call.push_hop(route, Some(agent.id.clone()), None, outcome, started, Some(ctx.wall_ms));
                return false;
            }
        };
        // Checked and counted at once: another shard may have taken the agent's last slot since
        // `next_hop` looked.
        if !self.agent_slots.try_take(&agent.id, agent.max_concurrent_calls) {
            let outcome = HopOutcome::Unavailable(Unavailable::AtLimit(agent.max_concurrent_calls));
            call.push_hop(route, Some(agent.id.clone()), None, outcome, started, Some(started));
            return false;
        }
        let key = match ctx.tx.send_request(ctx.now, peer, msg.clone()) {
            Ok(k) => k,
            Err(e) => {
                self.agent_slots.release(&agent.id);
                if self.cluster_limits {
                    let agent_id = agent.id.clone();
                    self.limit_jobs
                        .push_back(crate::call::cluster_gate::LimitJob::Sync { agent_id });
                }
                let outcome = HopOutcome::NotSent(format!("could not send INVITE: {e}"));
                call.push_hop(route, Some(agent.id.clone()), None, outcome, started, Some(ctx.wall_ms));
                return false;
            }
        };
        tracing::debug!(call = %call.record.id, agent = %agent.id, route = route.as_str(), "agent leg INVITE");
        let hop_index = call.push_hop(route, Some(agent.id.clone()), None, HopOutcome::Trying, started, None);
        call.mark_transfer_hop(hop_index);
        let gen = call.generation;
        self.by_client.insert(key.clone(), ClientRef::Invite(id));
        if self.trace_legs.is_some() {
            let leg = format!("agent {} ({})", agent.id, route.as_str());
            note_trace_leg(&mut self.trace_legs, &b_call_id, &call.record.id, leg);
        }
        self.by_dialog.insert(b_call_id, (id, Side::B));
        let leg = BLeg {
            target: LegTarget::Agent(agent),
            route,
            invite: msg,
            key,
            peer,
            provisional: false,
            hop: hop_index,
        };
        if let Some(leg) = call.phase.ring(leg) {
            // Cannot happen (hops start only while hunting with no leg out); never leak the agent's slot.
            tracing::error!(call = %call.record.id, "agent leg started while another leg rings");
            if let Some(agent_id) = leg.agent_id().map(str::to_owned) {
                self.release_agent(&agent_id);
            }
            self.orphan(leg);
            return false;
        }
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
    pub(super) fn chain_exhausted(&mut self, ctx: &mut Ctx<'_>, id: CallId) {
        if self.calls.get(&id).is_some_and(|c| c.kind == CallKind::ApiOutbound) {
            return self.api_agent_unavailable(ctx, id);
        }
        if self.start_voicemail(ctx, id) {
            return;
        }
        let Some(call) = self.calls.get_mut(&id) else { return };
        let started = ctx.wall_ms;
        let outcome = HopOutcome::Unavailable(Unavailable::NoVoicemail);
        call.push_hop(Route::Voicemail, None, None, outcome, started, Some(started));
        // In the Call resource's words: busy when the agents said busy, no-answer when they never answered.
        let agent_hops: Vec<(&Hop, &HopOutcome)> = call
            .record
            .hops
            .iter()
            .zip(&call.hop_outcomes)
            .filter(|(h, _)| h.route != Route::Voicemail)
            .collect();
        let all =
            |f: &dyn Fn(&Hop, &HopOutcome) -> bool| !agent_hops.is_empty() && agent_hops.iter().all(|(h, o)| f(h, o));
        let status = if all(&|h, _| matches!(h.sip_status, Some(486 | 600 | 603))) {
            CallStatus::Busy
        } else if all(&|_, o| o.is_timeout()) {
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
        self.finish(ctx, id, status, Ending::NoAgentAvailable);
    }
}

/// Refused carriers' INVITEs a shard records per second at most, after a first burst of
/// [`REFUSAL_RECORDS_BURST`]: a carrier flooding a full edge makes that many rows, not one per INVITE
/// (the rest are counted in `edge_refusals_unrecorded_total`).
pub(super) const REFUSAL_RECORDS_PER_S: f64 = 200.0;
pub(super) const REFUSAL_RECORDS_BURST: f64 = 400.0;

/// The token bucket of [`REFUSAL_RECORDS_PER_S`].
#[derive(Debug)]
pub(super) struct RefusalBudget {
    tokens: f64,
    at: Option<Instant>,
}

impl Default for RefusalBudget {
    fn default() -> Self {
        RefusalBudget {
            tokens: REFUSAL_RECORDS_BURST,
            at: None,
        }
    }
}

impl RefusalBudget {
    /// True when one more record fits now.
    fn take(&mut self, now: Instant) -> bool {
        if let Some(at) = self.at {
            let refill = now.saturating_duration_since(at).as_secs_f64() * REFUSAL_RECORDS_PER_S;
            self.tokens = (self.tokens + refill).min(REFUSAL_RECORDS_BURST);
        }
        self.at = Some(now);
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            true
        } else {
            false
        }
    }
}

impl CallController {
    /// A carrier's INVITE the edge refused with `code` (call control, the transaction layer or the core
    /// checks did): when it dialled a number served here, a `failed` record of it (the code, why, the
    /// dialled number, the caller, the carrier), so that operators see refusals. Bounded: a number lookup,
    /// and records at most at [`REFUSAL_RECORDS_PER_S`]. A retransmission of the same INVITE (same Call-ID,
    /// From tag and CSeq) makes the same record id, so it rewrites its row rather than add one.
    pub fn record_refusal(
        &mut self,
        now: Instant,
        wall_ms: i64,
        invite: &Message,
        carrier: &str,
        code: u16,
        why: Refusal,
    ) {
        let Ok(did) = dialed::dialed_number(invite, self.cfg.default_country_code.as_deref()) else {
            return;
        };
        let Some(number) = self.index.lookup_number(&did) else {
            return;
        };
        if !self.refusal_budget.take(now) {
            self.stats.refusals_unrecorded.fetch_add(1, Ordering::Relaxed);
            return;
        }
        let from = invite.from().ok();
        let sip_call_id = invite.call_id().unwrap_or("");
        let from_tag = from.as_ref().and_then(|f| f.tag()).unwrap_or("");
        let cseq = invite.header(&HeaderName::CSeq).unwrap_or("");
        let id = self.refusal_record_id(sip_call_id, from_tag, cseq);
        tracing::debug!(call = %id, sip_call_id = %sip_call_id, carrier, to = %did, code, why = %why, "carrier INVITE refused");
        let mut record = self.carrier_record(id, &number, carrier, invite, did, wall_ms);
        record.status = CallStatus::Failed;
        record.end_reason = Some(why.to_string());
        record.sip_status = Some(code);
        record.ended_at_ms = Some(wall_ms);
        self.stats.refusals_recorded.fetch_add(1, Ordering::Relaxed);
        self.write_record(record);
    }

    /// `call_r` and 32 hex digits hashed from the INVITE's Call-ID, From tag and CSeq with a key drawn
    /// once from the controller's entropy (so outsiders cannot aim at another call's id).
    fn refusal_record_id(&mut self, call_id: &str, from_tag: &str, cseq: &str) -> String {
        use std::hash::{Hash, Hasher};
        let rng = &mut self.rng;
        let key = *self.refusal_key.get_or_insert_with(|| [rng.next_u64(), rng.next_u64()]);
        let half = |k: u64| {
            let mut h = std::collections::hash_map::DefaultHasher::new();
            (k, call_id, from_tag, cseq).hash(&mut h);
            h.finish()
        };
        format!("call_r{:016x}{:016x}", half(key[0]), half(key[1]))
    }
}

/// Where an agent's `sip_uri` points: an address now, or a host name to resolve first.
pub(super) enum AgentTarget {
    Ready(Peer),
    Resolve {
        host: String,
        port: Option<u16>,
        transport: Transport,
        /// `sips:`: only TLS targets.
        secure: bool,
    },
}

/// Reads an agent's `sip_uri`: host (IP or name), port, `transport=udp|tcp`. An address the
/// policy refuses (loopback, private...) makes the agent unavailable.
pub(super) fn agent_peer(sip_uri: &str, targets: &edge_contract::TargetPolicy) -> Result<AgentTarget, Unavailable> {
    let refuse = |words: String| Unavailable::SipUri(words);
    let uri = Uri::parse(sip_uri).map_err(|_| refuse(format!("sip_uri {sip_uri} does not parse")))?;
    let Uri::Sip(u) = uri else {
        return Err(refuse(format!("sip_uri {sip_uri} is not a sip: URI")));
    };
    let transport = match u.param("transport") {
        // `sips:` is TLS whatever else the URI says (RFC 3261 19.1.2).
        _ if u.secure => Transport::Tls,
        None => Transport::Udp,
        Some(t) if t.eq_ignore_ascii_case("udp") => Transport::Udp,
        Some(t) if t.eq_ignore_ascii_case("tcp") => Transport::Tcp,
        Some(t) if t.eq_ignore_ascii_case("tls") => Transport::Tls,
        Some(t) => {
            return Err(refuse(format!(
                "transport={t} toward agents is not supported (udp, tcp, tls)"
            )))
        }
    };
    let default_port = if transport == Transport::Tls { 5061 } else { 5060 };
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
                    secure: u.secure,
                })
            }
        },
    };
    if let Some(kind) = targets.refusal(ip) {
        return Err(refuse(format!(
            "sip_uri points at a {kind} address (not in [security] internal_targets)"
        )));
    }
    Ok(AgentTarget::Ready(Peer {
        addr: SocketAddr::new(ip, u.port.unwrap_or(default_port)),
        transport,
        conn: None,
    }))
}

/// An agent `sip_uri` that is not a usable `sip:` URI.
#[derive(Debug, thiserror::Error)]
#[error("sip_uri {0} is not a sip: URI")]
pub(super) struct NotSipUri(String);

/// The host of a SIP URI as written (an IPv6 in brackets), for the name an agent's TLS certificate must carry.
pub(super) fn uri_host(sip_uri: &str) -> Option<String> {
    match Uri::parse(sip_uri) {
        Ok(Uri::Sip(u)) => Some(u.host.to_owned()),
        _ => None,
    }
}

/// `host[:port]` of a SIP URI, for the To header toward the agent.
pub(super) fn uri_hostport(sip_uri: &str) -> Result<String, NotSipUri> {
    match Uri::parse(sip_uri) {
        Ok(Uri::Sip(u)) => Ok(match u.port {
            Some(p) => format!("{}:{p}", u.host),
            None => u.host.to_owned(),
        }),
        _ => Err(NotSipUri(sip_uri.to_owned())),
    }
}

impl CallController {
    /// The record of a carrier's INVITE to `number` (dialled as `did`), as it starts: queued, no hops.
    fn carrier_record(
        &self,
        id: String,
        number: &edge_store::NumberRoute,
        carrier: &str,
        invite: &Message,
        did: String,
        wall_ms: i64,
    ) -> CallRecord {
        let (caller, caller_name) = caller_of(invite.from().ok().as_ref());
        CallRecord {
            id,
            account_id: number.account_id.clone(),
            direction: Direction::Inbound.as_str().into(),
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
            sip_call_id: invite.call_id().unwrap_or("").to_owned(),
            created_at_ms: wall_ms,
            answered_at_ms: None,
            ended_at_ms: None,
            error: None,
            node: Some(self.cfg.node.to_string()),
        }
    }
}

/// The caller as a record shows it: the From user ("anonymous" when there is none) and display name.
fn caller_of(from: Option<&sip_core::message::NameAddr<'_>>) -> (String, Option<String>) {
    let caller = from
        .and_then(|f| f.uri.user().map(|u| u.into_owned()))
        .unwrap_or_else(|| "anonymous".into());
    let name = from.and_then(|f| f.display_name.as_ref().map(|d| d.to_string()));
    (caller, name)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A flood of refusals makes a bounded number of records: the burst, then the rate.
    #[test]
    fn refusal_records_are_bounded_by_a_rate() {
        let mut b = RefusalBudget::default();
        let t0 = Instant::now();
        let burst = (0..1_000).filter(|_| b.take(t0)).count();
        assert_eq!(burst as f64, REFUSAL_RECORDS_BURST);
        let later = t0 + std::time::Duration::from_millis(500);
        let refilled = (0..1_000).filter(|_| b.take(later)).count();
        assert_eq!(refilled as f64, REFUSAL_RECORDS_PER_S / 2.0);
    }

    #[test]
    fn agent_hostport_is_never_made_up() {
        assert_eq!(uri_hostport("sip:agent@192.0.2.4:5070").unwrap(), "192.0.2.4:5070");
        assert_eq!(uri_hostport("sip:agent.example.com").unwrap(), "agent.example.com");
        assert!(uri_hostport("tel:+14155550100").is_err());
        assert!(uri_hostport("not a uri").is_err());
    }
}
