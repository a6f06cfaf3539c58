//! Outbound calls, read top to bottom: an agent's INVITE (or `POST /v1/calls`) -> who the agent is (trusted
//! network or digest) -> the From number must be one assigned to that agent -> trunk choice -> pacing slot ->
//! RFC 3263 resolution (done by the driver: DNS is IO) -> INVITE to the first target -> digest answer on
//! 401/407, next target on 503 or silence -> bridged like any other call, or failed with an error the user
//! can act on.
//!
//! An agent's call has the agent as leg A (our server transaction) and the trunk as leg B. An API call has
//! no caller: the trunk is dialled first as leg B; once it answers it becomes leg A and the agent is rung
//! as leg B with the dialled party's SDP, so both legs meet on the relay with the codec the trunk chose.

use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::Ordering;
use std::sync::Arc;

use bytes::Bytes;
use edge_api::{OriginateError, OriginateRequest};
use edge_store::{AgentRecord, AgentStatus, CallError, CallRecord, CallStatus, HangupBy, Hop, NumberRoute, Route};
use sip_core::build::{new_branch, RequestBuilder};
use sip_core::digest::{AuthSession, AuthStep, DigestCredentials};
use sip_core::message::{HeaderName, Message, Method, Transport};
use sip_core::transaction::{Peer, TxKey};

use super::leg::{self, DialogSide};
use super::pacing::Slot;
use super::trunk::{self, TrunkChoice, TrunkTransport};
use super::{
    anchor, now_ms, ALeg, BLeg, Call, CallController, CallId, CallKind, ClientRef, Ctx, LegTarget, Reject, Side, State,
    TimerKind,
};
use edge_media::Side as MediaSide;

/// How an agent's INVITE reached us.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AgentOrigin {
    /// From an `[[agent_networks]]` address: trusted; the agent is the From number's agent.
    Network(String),
    /// Proved who it is with digest credentials (checked by the endpoint before any state existed).
    Digest(Arc<AgentRecord>),
}

/// A trunk host the driver must resolve (RFC 3263) for a call; the answer goes to
/// [`CallController::on_resolved`] with the same `call` and `generation`.
#[derive(Debug, Clone)]
pub struct ResolveJob {
    pub call: u64,
    pub generation: u32,
    pub host: String,
    pub port: Option<u16>,
    /// The address's `transport=`, if it names one; else NAPTR/SRV decide.
    pub transport: Option<Transport>,
    pub secure: bool,
    /// Set when the host is an agent's `sip_uri` host (inbound and API calls) rather than a trunk's.
    pub agent: Option<(Arc<AgentRecord>, Route)>,
}

/// One place to send the trunk INVITE.
pub type TrunkTarget = (SocketAddr, Transport);

/// An outbound call's trunk side: where it goes, what was tried, and the digest state.
pub(super) struct OutboundPlan {
    trunk: TrunkChoice,
    /// The dialled number, E.164.
    dest: String,
    /// The agent placing the call (an API call rings it once the trunk answers).
    agent: Arc<AgentRecord>,
    /// Resolved targets in RFC 3263 order; `next_target` indexes the one being tried.
    targets: Vec<TrunkTarget>,
    next_target: usize,
    /// Call-ID of every INVITE toward the trunk (resends and failover keep it).
    pub(super) call_id: String,
    from_tag: String,
    cseq: u32,
    auth: Option<AuthSession>,
    /// Credentials to carry on the next INVITE (after a 401/407).
    auth_headers: Vec<(&'static str, String)>,
    /// The last failure from a target, reported when every target failed.
    last_failure: Option<(u16, Option<Message>)>,
}

impl OutboundPlan {
    /// Is `ip` one of the addresses the trunk host resolved to? (Its in-dialog requests come from there.)
    pub(super) fn has_target(&self, ip: IpAddr) -> bool {
        self.targets.iter().any(|(a, _)| a.ip() == ip)
    }
}

fn error(code: &str, message: impl Into<String>) -> CallError {
    CallError {
        code: code.into(),
        message: message.into(),
    }
}

/// A refusal to an agent: `code` with a Warning saying why.
fn refuse(ctl: &CallController, code: u16, reason: &'static str, why: &str) -> Reject {
    ctl.stats.rejected.fetch_add(1, Ordering::Relaxed);
    Reject {
        code,
        reason,
        headers: vec![("Warning", ctl.warning(why))],
    }
}

/// The SIP answer an agent gets when its outbound call fails with `status` from the trunk.
fn agent_code(status: u16) -> (u16, &'static str) {
    match status {
        // The agent cannot answer the trunk's challenge: for it the call is forbidden.
        401 | 407 | 403 => (403, "Forbidden"),
        404 | 484 | 485 | 604 => (404, "Not Found"),
        486 => (486, "Busy Here"),
        600 => (600, "Busy Everywhere"),
        603 => (603, "Decline"),
        408 => (408, "Request Timeout"),
        480 => (480, "Temporarily Unavailable"),
        487 => (487, "Request Terminated"),
        _ => (503, "Service Unavailable"),
    }
}

impl CallController {
    /// An agent's new INVITE: authenticate it, check its caller ID, pick the trunk and start dialling.
    /// `Err` is the answer to send (407 challenge, 403 with the reason, ...).
    pub fn on_agent_invite(
        &mut self,
        ctx: &mut Ctx<'_>,
        key: TxKey,
        invite: Message,
        peer: Peer,
        origin: AgentOrigin,
    ) -> Result<(), Reject> {
        // 1. Who is calling: a trusted network's agent is the one its From number belongs to; anyone else
        //    proves it with the digest credentials set on the agent through /v1/agents.
        let authenticated = match origin {
            AgentOrigin::Network(_) => None,
            AgentOrigin::Digest(agent) => Some(agent),
        };
        // 2. The caller ID must be a number of ours assigned to that agent.
        let from_user = invite
            .from()
            .ok()
            .and_then(|f| f.uri.user().map(|u| u.into_owned()))
            .unwrap_or_default();
        let caller_id =
            sip_core::e164::normalize(&from_user, self.cfg.default_country_code.as_deref()).map_err(|e| {
                refuse(
                    self,
                    403,
                    "Forbidden",
                    &format!("From `{from_user}` is not a phone number: {e}"),
                )
            })?;
        let number = self.index.lookup_number(&caller_id);
        let agent = match (&authenticated, &number) {
            (Some(a), _) => a.clone(),
            (None, Some(n)) => self.index.agent(&n.agent_id).ok_or_else(|| {
                refuse(
                    self,
                    403,
                    "Forbidden",
                    &format!("{caller_id} has no agent on this edge"),
                )
            })?,
            (None, None) => {
                return Err(refuse(
                    self,
                    403,
                    "Forbidden",
                    &format!("From {caller_id} is not a number served here"),
                ))
            }
        };
        let number = match number {
            Some(n) if n.account_id == agent.account_id && n.agent_id == agent.id => n,
            Some(n) if n.account_id == agent.account_id => {
                return Err(refuse(
                    self,
                    403,
                    "Forbidden",
                    &format!(
                        "From {caller_id} is assigned to agent {}, not to {}",
                        n.agent_id, agent.id
                    ),
                ))
            }
            _ => {
                return Err(refuse(
                    self,
                    403,
                    "Forbidden",
                    &format!("From {caller_id} is not a number assigned to agent {}", agent.id),
                ))
            }
        };
        self.agent_may_call(&agent)
            .map_err(|(code, reason, why)| refuse(self, code, reason, &why))?;
        // 3. Where to.
        let dest = super::dialed::dialed_number(&invite, self.cfg.default_country_code.as_deref())
            .map_err(|e| refuse(self, 484, "Address Incomplete", &e.to_string()))?;
        // 4. Which trunk.
        let trunk = trunk::choose(&number, &self.index, &self.cfg.outbound)
            .map_err(|e| refuse(self, 503, "Service Unavailable", &e.message))?;
        let record = outbound_record(&number, &agent, &trunk, &dest, invite.call_id().unwrap_or(""));
        let (relay, b_offer) = self.anchor_offer(&record.id, &invite)?;
        tracing::debug!(call = %record.id, agent = %agent.id, to = %dest, trunk = %trunk.address.host, "outbound call from an agent");
        let a_call_id = invite.call_id().unwrap_or("").to_owned();
        let id = self.new_call(Call::new(
            CallKind::AgentOutbound,
            number,
            ALeg::server(invite, key.clone(), peer),
            record,
            ctx.now,
            self.cfg.t1,
        ));
        self.by_server_invite.insert(key, id);
        self.by_dialog.insert(a_call_id, (id, Side::A));
        if let Some(call) = self.calls.get_mut(&id) {
            call.relay = relay;
            call.b_offer = b_offer;
            call.out = Some(Box::new(plan(trunk, dest, agent.clone())));
        }
        self.hold_agent(id, &agent.id);
        self.persist(ctx.now, id);
        self.start_pacing(ctx, id);
        Ok(())
    }

    /// `POST /v1/calls`: the trunk is dialled first; the agent is rung once the called party answers.
    pub fn originate(&mut self, ctx: &mut Ctx<'_>, req: OriginateRequest) -> Result<CallRecord, OriginateError> {
        let bad = |field: &str, message: String| OriginateError {
            http_status: 400,
            code: "invalid_request".into(),
            field: Some(field.into()),
            message,
        };
        let agent = self
            .index
            .agent(&req.agent_id)
            .filter(|a| a.account_id == req.account_id)
            .ok_or_else(|| bad("agent_id", format!("agent {} does not exist", req.agent_id)))?;
        let caller_id = sip_core::e164::normalize(&req.from, None)
            .map_err(|e| bad("from", format!("`{}` is not an E.164 number: {e}", req.from)))?;
        let dest = sip_core::e164::normalize(&req.to, None)
            .map_err(|e| bad("to", format!("`{}` is not an E.164 number: {e}", req.to)))?;
        let number = self
            .index
            .lookup_number(&caller_id)
            .filter(|n| n.account_id == req.account_id)
            .ok_or_else(|| bad("from", format!("{caller_id} is not a number of this account")))?;
        if number.agent_id != agent.id {
            return Err(bad(
                "from",
                format!(
                    "{caller_id} is assigned to agent {}, not to {}",
                    number.agent_id, agent.id
                ),
            ));
        }
        self.agent_may_call(&agent).map_err(|(_, _, why)| OriginateError {
            http_status: 409,
            code: "agent_unavailable".into(),
            field: Some("agent_id".into()),
            message: why,
        })?;
        let trunk = trunk::choose(&number, &self.index, &self.cfg.outbound).map_err(|e| OriginateError {
            http_status: 400,
            code: e.code,
            field: Some("from".into()),
            message: e.message,
        })?;
        let unavailable = |message: String| OriginateError {
            http_status: 503,
            code: "unavailable".into(),
            field: None,
            message,
        };
        // A line too long is refused now, not after a 201: the client can retry later.
        let slot = self.take_slot(ctx.now, &trunk).map_err(|e| OriginateError {
            http_status: 503,
            code: e.code,
            field: None,
            message: e.message,
        })?;
        let Some(media) = &self.media else {
            return Err(unavailable(
                "calls placed through the API need the media engine ([media] enabled = true)".into(),
            ));
        };
        let mut record = outbound_record(&number, &agent, &trunk, &dest, "");
        let relay = media
            .engine
            .allocate_relay(&record.id)
            .map_err(|e| unavailable(format!("no media ports: {e}")))?;
        let offer = relay.offer_sdp(MediaSide::A, media.codecs.as_deref());
        let plan = plan(trunk, dest, agent.clone());
        record.sip_call_id = plan.call_id.clone();
        let invite = build_trunk_invite(
            &self.cfg.local,
            &record,
            &plan,
            Some(&offer),
            &self.cfg.warn_agent,
            Transport::Udp,
        );
        let invite = Message::parse(invite).map_err(|e| unavailable(format!("could not build the INVITE: {e}")))?;
        let a_dialog = DialogSide {
            transport: "UDP",
            call_id: plan.call_id.clone(),
            local: invite.header(&HeaderName::From).unwrap_or("").to_owned(),
            remote: invite.header(&HeaderName::To).unwrap_or("").to_owned(),
            remote_target: invite.request_uri_raw().unwrap_or("").to_owned(),
            route_set: Vec::new(),
            local_cseq: 1,
        };
        tracing::debug!(call = %record.id, agent = %agent.id, to = %plan.dest, "outbound call through the API");
        let placeholder = Peer {
            addr: SocketAddr::new(IpAddr::from([0, 0, 0, 0]), 0),
            transport: Transport::Udp,
            conn: None,
        };
        let tag = plan.from_tag.clone();
        let id = self.new_call(Call::new(
            CallKind::ApiOutbound,
            number,
            ALeg {
                invite,
                key: None,
                peer: placeholder,
                tag,
                dialog: a_dialog,
            },
            record,
            ctx.now,
            self.cfg.t1,
        ));
        let Some(call) = self.calls.get_mut(&id) else {
            return Err(unavailable("call vanished".into()));
        };
        call.relay = Some(relay);
        call.b_offer = Some(offer);
        call.out = Some(Box::new(plan));
        let record = call.record.clone();
        // The agent is kept for this call from now: a call that the dialled party answers must find it free.
        self.hold_agent(id, &agent.id);
        self.persist(ctx.now, id);
        self.schedule(ctx, id, slot);
        Ok(record)
    }

    /// `DELETE /v1/calls/{id}`: ends a live call of `account_id` wherever it is (ringing legs cancelled,
    /// answered ones sent BYE). `None`: no live call by that id in that account.
    pub fn hang_up(&mut self, ctx: &mut Ctx<'_>, account_id: &str, public_id: &str) -> Option<CallRecord> {
        let id = *self.by_public.get(public_id)?;
        let call = self.calls.get(&id)?;
        if call.record.account_id != account_id {
            return None;
        }
        let (state, a_up) = (call.state, call.a_up);
        let reason = "hung up through the API";
        let status = match state {
            State::Routing => {
                self.abandon_agent_leg(ctx, id, reason);
                if a_up {
                    self.send_bye_a(ctx, id);
                    CallStatus::Completed
                } else {
                    self.fail_a(ctx, id, 487, "Request Terminated", &[]);
                    CallStatus::Canceled
                }
            }
            State::Answered | State::Confirmed => {
                self.hang_up_other(ctx, id, Side::A, Some("SIP;cause=200;text=\"hung up through the API\""));
                self.send_bye_a(ctx, id);
                CallStatus::Completed
            }
        };
        self.finish_keeping(id, status, reason, Some(HangupBy::Edge), true)
    }

    /// The next trunk host to resolve, for the driver.
    pub fn poll_resolve(&mut self) -> Option<ResolveJob> {
        self.resolve_jobs.pop_front()
    }

    /// The driver resolved a trunk host: dial the first target, or fail the call.
    pub fn on_resolved(&mut self, ctx: &mut Ctx<'_>, job: &ResolveJob, result: Result<Vec<TrunkTarget>, String>) {
        let Some(call) = self.calls.get_mut(&job.call) else {
            return;
        };
        if call.generation != job.generation {
            return;
        }
        // After DNS: drop addresses the policy refuses, so a name re-pointed at an internal
        // address after it was accepted still reaches nothing internal.
        let result = result.and_then(|targets| {
            let total = targets.len();
            let mut refused = None;
            let allowed: Vec<TrunkTarget> = targets
                .into_iter()
                .filter(|(addr, _)| match self.cfg.targets.refusal(addr.ip()) {
                    None => true,
                    Some(kind) => {
                        refused = Some(kind);
                        false
                    }
                })
                .collect();
            match refused {
                Some(kind) if allowed.is_empty() && total > 0 => Err(format!(
                    "{} resolves only to {kind} addresses (not in [security] internal_targets)",
                    job.host
                )),
                _ => Ok(allowed),
            }
        });
        if let Some((agent, route)) = &job.agent {
            return self.agent_resolved(ctx, job.call, agent.clone(), *route, result);
        }
        let Some(plan) = call.out.as_mut() else { return };
        match result {
            Ok(targets) if !targets.is_empty() => {
                plan.targets = targets;
                plan.next_target = 0;
                self.send_trunk_invite(ctx, job.call);
            }
            Ok(_) => {
                let e = error("trunk_unresolvable", format!("trunk host {} has no address", job.host));
                self.fail_outbound(ctx, job.call, CallStatus::Failed, e, 503);
            }
            Err(why) => {
                let e = error(
                    "trunk_unresolvable",
                    format!("could not resolve trunk host {}: {why}", job.host),
                );
                self.fail_outbound(ctx, job.call, CallStatus::Failed, e, 503);
            }
        }
    }

    /// The agent counts this call against its `max_concurrent_calls` until the call ends.
    fn hold_agent(&mut self, id: CallId, agent_id: &str) {
        self.add_agent_load(agent_id);
        if let Some(call) = self.calls.get_mut(&id) {
            call.held_agent = Some(agent_id.to_owned());
        }
    }

    /// Active and below its limit, or why not (SIP code, reason, words).
    fn agent_may_call(&self, agent: &AgentRecord) -> Result<(), (u16, &'static str, String)> {
        if agent.status != AgentStatus::Active {
            return Err((403, "Forbidden", format!("agent {} is disabled", agent.id)));
        }
        let load = self.agent_load(&agent.id);
        if load >= agent.max_concurrent_calls {
            return Err((
                486,
                "Busy Here",
                format!(
                    "agent {} is at max_concurrent_calls ({})",
                    agent.id, agent.max_concurrent_calls
                ),
            ));
        }
        Ok(())
    }

    /// Takes a slot on the trunk's pacing line, or fails the call when the line is too long.
    fn start_pacing(&mut self, ctx: &mut Ctx<'_>, id: CallId) {
        let Some(trunk) = self
            .calls
            .get(&id)
            .and_then(|c| c.out.as_ref())
            .map(|p| p.trunk.clone())
        else {
            return;
        };
        match self.take_slot(ctx.now, &trunk) {
            Ok(slot) => self.schedule(ctx, id, slot),
            Err(e) => self.fail_outbound(ctx, id, CallStatus::Failed, e, 503),
        }
    }

    /// A slot on the trunk's pacing line (now or later), or the error that refuses the call.
    fn take_slot(&mut self, now: std::time::Instant, trunk: &TrunkChoice) -> Result<Slot, CallError> {
        let key = trunk.pacing_key();
        let cps = trunk.cps;
        match self.pacer.admit(now, &key, cps) {
            Slot::Refused { wait } => {
                let max = self.cfg.outbound.max_pacing_wait.as_millis();
                metrics::counter!("edge_outbound_paced_out_total").increment(1);
                Err(error(
                    "trunk_pacing",
                    format!(
                        "trunk {key} takes {cps} calls per second and its line is {} ms long (outbound.max_pacing_wait_ms \
                         is {max}): try again later",
                        wait.as_millis()
                    ),
                ))
            }
            slot => Ok(slot),
        }
    }

    /// Dials at once, or arms the timer of the call's slot.
    fn schedule(&mut self, ctx: &mut Ctx<'_>, id: CallId, slot: Slot) {
        match slot {
            Slot::At(at) => {
                let gen = self.calls.get(&id).map(|c| c.generation).unwrap_or(0);
                self.timers.push(std::cmp::Reverse((at, id, TimerKind::Pace, gen)));
            }
            _ => self.pacing_slot(ctx, id),
        }
    }

    /// The pacing slot came: resolve the trunk host (IP literals need no DNS).
    pub(super) fn pacing_slot(&mut self, ctx: &mut Ctx<'_>, id: CallId) {
        let Some(call) = self.calls.get(&id) else { return };
        let Some(plan) = &call.out else { return };
        let addr = plan.trunk.address.clone();
        if addr.secure {
            let e = error(
                "trunk_transport",
                format!(
                    "trunk {} asks for TLS (sips:): this edge reaches trunks over UDP and TCP only so far",
                    addr.host
                ),
            );
            return self.fail_outbound(ctx, id, CallStatus::Failed, e, 503);
        }
        let transport = addr.transport.map(|t| match t {
            TrunkTransport::Udp => Transport::Udp,
            TrunkTransport::Tcp => Transport::Tcp,
        });
        let job = ResolveJob {
            call: id,
            generation: call.generation,
            host: addr.host.clone(),
            port: addr.port,
            transport,
            secure: false,
            agent: None,
        };
        match addr
            .host
            .trim_start_matches('[')
            .trim_end_matches(']')
            .parse::<IpAddr>()
        {
            Ok(ip) => {
                let target = (
                    SocketAddr::new(ip, addr.port.unwrap_or(5060)),
                    transport.unwrap_or(Transport::Udp),
                );
                self.on_resolved(ctx, &job, Ok(vec![target]));
            }
            Err(_) => self.resolve_jobs.push_back(job),
        }
    }

    /// Sends the INVITE to the current target (first try, digest resend, or failover).
    fn send_trunk_invite(&mut self, ctx: &mut Ctx<'_>, id: CallId) {
        let local = self.cfg.local.clone();
        let warn_agent = self.cfg.warn_agent.clone();
        let Some(call) = self.calls.get_mut(&id) else { return };
        call.generation += 1;
        let gen = call.generation;
        let Some(plan) = call.out.as_mut() else { return };
        let Some((target, transport)) = plan.targets.get(plan.next_target).copied() else {
            return self.all_targets_failed(ctx, id);
        };
        // Signalling only (no media engine): the agent's own offer goes to the trunk untouched.
        let offer = call.b_offer.clone().or_else(|| {
            (call.kind == CallKind::AgentOutbound && !call.a.invite.body().is_empty())
                .then(|| call.a.invite.body_bytes())
        });
        let bytes = build_trunk_invite(&local, &call.record, plan, offer.as_ref(), &warn_agent, transport);
        let peer = Peer {
            addr: target,
            transport,
            conn: None,
        };
        let started = now_ms();
        let sent = Message::parse(bytes).map_err(|e| e.to_string()).and_then(|m| {
            ctx.tx
                .send_request(ctx.now, peer, m.clone())
                .map(|k| (k, m))
                .map_err(|e| e.to_string())
        });
        let (key, msg) = match sent {
            Ok(x) => x,
            Err(e) => {
                let e = error("trunk_error", format!("could not send the INVITE to {target}: {e}"));
                return self.fail_outbound(ctx, id, CallStatus::Failed, e, 503);
            }
        };
        tracing::debug!(call = %call.record.id, %target, cseq = plan.cseq, "trunk INVITE");
        let hop_index = call.record.hops.len();
        call.record.hops.push(Hop {
            route: Route::Trunk,
            agent_id: None,
            sip_status: None,
            outcome: format!("trying {} {target}", leg::via_transport(transport).to_ascii_lowercase()),
            started_at_ms: started,
            ended_at_ms: None,
        });
        self.by_client.insert(key.clone(), ClientRef::Invite(id));
        self.by_dialog.insert(plan.call_id.clone(), (id, Side::B));
        call.b = Some(BLeg {
            target: LegTarget::Trunk,
            route: Route::Trunk,
            invite: msg,
            key,
            peer,
            provisional: false,
            dialog: None,
            hop: hop_index,
        });
        let setup = self.cfg.outbound.trunk_setup_timeout;
        let ring = self.cfg.outbound.trunk_ring_timeout;
        self.timers
            .push(std::cmp::Reverse((ctx.now + setup, id, TimerKind::Setup, gen)));
        self.timers
            .push(std::cmp::Reverse((ctx.now + ring, id, TimerKind::Ring, gen)));
    }

    /// A final non-2xx from the trunk (or 408 for no answer at all): answer a challenge, fail over, or fail.
    pub(super) fn on_trunk_failure(&mut self, ctx: &mut Ctx<'_>, id: CallId, status: u16, resp: Option<&Message>) {
        let Some(call) = self.calls.get_mut(&id) else { return };
        let Some(b) = call.b.take() else { return };
        let reason = resp.and_then(|r| r.reason()).unwrap_or("").to_owned();
        if let Some(h) = call.record.hops.get_mut(b.hop) {
            h.sip_status = Some(status);
            h.outcome = format!("rejected: {status} {reason}").trim_end().to_owned();
            h.ended_at_ms = Some(now_ms());
        }
        let Some(plan) = call.out.as_mut() else { return };
        match (status, resp) {
            (401 | 407, Some(resp)) => {
                let (Some(user), Some(pass)) = (plan.trunk.username.clone(), plan.trunk.password.clone()) else {
                    let (s, e) = trunk::classify(status, Some(resp), &plan.trunk, &plan.dest);
                    return self.fail_outbound(ctx, id, s, e, status);
                };
                let session = plan
                    .auth
                    .get_or_insert_with(|| AuthSession::new(DigestCredentials::new(user, pass)));
                let uri = b.invite.request_uri_raw().unwrap_or("").to_owned();
                match session.on_challenge(resp, "INVITE", &uri, b.invite.body()) {
                    AuthStep::Retry {
                        header_name,
                        header_value,
                        previous,
                    } => {
                        plan.auth_headers = previous;
                        plan.auth_headers.push((header_name, header_value));
                        plan.cseq += 1;
                        self.send_trunk_invite(ctx, id);
                    }
                    AuthStep::Rejected => {
                        let (s, e) = trunk::classify(status, Some(resp), &plan.trunk, &plan.dest);
                        self.fail_outbound(ctx, id, s, e, status);
                    }
                    AuthStep::Unsupported(why) => {
                        let e = error(
                            "trunk_auth_unsupported",
                            format!("trunk's challenge cannot be answered: {why}"),
                        );
                        self.fail_outbound(ctx, id, CallStatus::Failed, e, status);
                    }
                }
            }
            // RFC 3263 4.3: a 503 or no answer at all moves on to the next target.
            (503 | 408, _) => {
                plan.last_failure = Some((status, resp.cloned()));
                plan.next_target += 1;
                plan.cseq += 1;
                self.send_trunk_invite(ctx, id);
            }
            _ => {
                let (s, e) = trunk::classify(status, resp, &plan.trunk, &plan.dest);
                self.fail_outbound(ctx, id, s, e, status);
            }
        }
    }

    /// The trunk target sent nothing at all in time: give it up and try the next one.
    pub(super) fn trunk_target_dead(&mut self, ctx: &mut Ctx<'_>, id: CallId, why: &str) {
        let ms = self.cfg.outbound.trunk_setup_timeout.as_millis();
        self.abandon_agent_leg(ctx, id, &format!("timeout: {why} within {ms} ms"));
        let Some(plan) = self.calls.get_mut(&id).and_then(|c| c.out.as_mut()) else {
            return;
        };
        plan.last_failure = Some((408, None));
        plan.next_target += 1;
        plan.cseq += 1;
        self.send_trunk_invite(ctx, id);
    }

    /// The trunk rang for `trunk_ring_timeout_s` without an answer.
    pub(super) fn trunk_no_answer(&mut self, ctx: &mut Ctx<'_>, id: CallId) {
        let secs = self.cfg.outbound.trunk_ring_timeout.as_secs();
        self.abandon_agent_leg(ctx, id, &format!("timeout: no answer within {secs} s"));
        let Some(plan) = self.calls.get(&id).and_then(|c| c.out.as_ref()) else {
            return;
        };
        let e = error(
            "no_answer",
            format!(
                "{} did not answer within {secs} s (outbound.trunk_ring_timeout_s)",
                plan.dest
            ),
        );
        self.fail_outbound(ctx, id, CallStatus::NoAnswer, e, 480);
    }

    fn all_targets_failed(&mut self, ctx: &mut Ctx<'_>, id: CallId) {
        let Some(plan) = self.calls.get(&id).and_then(|c| c.out.as_ref()) else {
            return;
        };
        let n = plan.targets.len();
        let (status, resp) = plan.last_failure.clone().unwrap_or((503, None));
        let (mut s, mut e) = trunk::classify(status, resp.as_ref(), &plan.trunk, &plan.dest);
        if status == 408 {
            // Silence from every target is the trunk's failure, not the called party's.
            s = CallStatus::Failed;
            e = error(
                "trunk_unavailable",
                format!(
                    "trunk {} did not respond ({n} target(s) tried)",
                    plan.trunk.address.host
                ),
            );
        } else if n > 1 {
            e.message = format!("{} ({n} targets tried)", e.message);
        }
        self.fail_outbound(ctx, id, s, e, 503);
    }

    /// Ends an outbound call that never connected: the agent (if it called) gets a SIP answer with the
    /// reason, the record keeps the error.
    fn fail_outbound(&mut self, ctx: &mut Ctx<'_>, id: CallId, status: CallStatus, e: CallError, sip: u16) {
        let Some(call) = self.calls.get_mut(&id) else { return };
        tracing::info!(call = %call.record.id, code = %e.code, message = %e.message, "outbound call failed");
        metrics::counter!("edge_outbound_failed_total", "code" => e.code.clone()).increment(1);
        call.record.error = Some(e.clone());
        if call.a.key.is_some() {
            let (code, reason) = agent_code(sip);
            let warning = self.warning(&e.message);
            self.fail_a(ctx, id, code, reason, &[("Warning", &warning)]);
        }
        if let Some(call) = self.calls.get_mut(&id) {
            call.record.sip_status = Some(sip);
        }
        self.finish(id, status, &e.message, None);
    }

    /// An API call's dialled party answered: its dialog becomes leg A and the agent is rung with its SDP.
    pub(super) fn api_trunk_answered(&mut self, ctx: &mut Ctx<'_>, id: CallId, resp: &Message) {
        let Some(call) = self.calls.get_mut(&id) else { return };
        let Some(b) = call.b.take() else { return };
        let Some(dialog) = b.dialog else { return };
        // The trunk's answer is side A's media; rewritten, it is the offer the agent gets.
        call.b_offer = anchor(call.relay.as_ref(), Side::A, resp, self.media.as_ref());
        self.by_dialog.insert(dialog.call_id.clone(), (id, Side::A));
        call.a.dialog = dialog;
        call.a.peer = b.peer;
        call.a.invite = b.invite;
        call.a_up = true;
        call.answered_at = Some(ctx.now);
        call.record.status = CallStatus::InProgress;
        call.record.answered_by = Some(Route::Trunk);
        call.record.answered_at_ms = Some(now_ms());
        if let Some(plan) = &call.out {
            call.plan.push_back((plan.agent.id.clone(), Route::Primary));
        }
        metrics::histogram!("edge_outbound_answer_seconds").record(ctx.now.duration_since(call.created).as_secs_f64());
        // The agent leg counts the agent from here on (and checks its limit without this call's hold).
        if let Some(held) = call.held_agent.take() {
            self.release_agent(&held);
        }
        self.persist(ctx.now, id);
        self.next_hop(ctx, id);
    }

    /// An API call's agent could not take the answered call: the dialled party is hung up on.
    pub(super) fn api_agent_unavailable(&mut self, ctx: &mut Ctx<'_>, id: CallId) {
        let Some(call) = self.calls.get_mut(&id) else { return };
        let why = call
            .record
            .hops
            .iter()
            .rev()
            .find(|h| h.route != Route::Trunk)
            .map(|h| h.outcome.clone())
            .unwrap_or_else(|| "unavailable".into());
        let agent = call.out.as_ref().map(|p| p.agent.id.clone()).unwrap_or_default();
        call.record.error = Some(error(
            "agent_unavailable",
            format!("agent {agent} could not take the answered call ({why})"),
        ));
        self.send_bye_a(ctx, id);
        self.finish(id, CallStatus::Failed, "agent unavailable", Some(HangupBy::Edge));
    }
}

fn plan(trunk: TrunkChoice, dest: String, agent: Arc<AgentRecord>) -> OutboundPlan {
    OutboundPlan {
        trunk,
        dest,
        agent,
        targets: Vec::new(),
        next_target: 0,
        call_id: format!("{}@oneinbox-edge", leg::token()),
        from_tag: leg::token(),
        cseq: 1,
        auth: None,
        auth_headers: Vec::new(),
        last_failure: None,
    }
}

fn outbound_record(
    number: &NumberRoute,
    agent: &AgentRecord,
    trunk: &TrunkChoice,
    dest: &str,
    sip_call_id: &str,
) -> CallRecord {
    CallRecord {
        id: leg::call_record_id(now_ms()),
        account_id: number.account_id.clone(),
        direction: "outbound".into(),
        // The provider, not the host: a bounded label for metrics; the host is in each hop's outcome.
        carrier: trunk.provider.as_str().into(),
        from: number.phone_number.clone(),
        caller_name: None,
        to: dest.to_owned(),
        phone_number_id: Some(number.number_id.clone()),
        status: CallStatus::Queued,
        answered_by: None,
        agent_id: Some(agent.id.clone()),
        hops: Vec::new(),
        end_reason: None,
        hangup_by: None,
        sip_status: None,
        sip_call_id: sip_call_id.to_owned(),
        created_at_ms: now_ms(),
        answered_at_ms: None,
        ended_at_ms: None,
        error: None,
    }
}

/// The INVITE toward the trunk: Request-URI `sip:+E164@<trunk host>` (Twilio accepts only its own host
/// there), the DID as caller ID in From, our Contact, credentials after a challenge.
fn build_trunk_invite(
    local: &leg::Local,
    record: &CallRecord,
    plan: &OutboundPlan,
    sdp: Option<&Bytes>,
    our_host: &str,
    transport: Transport,
) -> Bytes {
    let hostport = plan.trunk.address.hostport();
    let tcp = transport == Transport::Tcp;
    // Over TCP the Request-URI says so, for the proxies in front of the trunk (RFC 3263 4.1).
    let ruri = if tcp && plan.trunk.address.transport.is_some() {
        format!("sip:{}@{hostport};transport=tcp", plan.dest)
    } else {
        format!("sip:{}@{hostport}", plan.dest)
    };
    let via = format!(
        "SIP/2.0/{} {};branch={};rport",
        leg::via_transport(transport),
        local.sent_by,
        new_branch()
    );
    let contact = if tcp {
        local.contact.replace('>', ";transport=tcp>")
    } else {
        local.contact.clone()
    };
    let from = format!("<sip:{}@{our_host}>;tag={}", record.from, plan.from_tag);
    let to = format!("<sip:{}@{hostport}>", plan.dest);
    let cseq = format!("{} INVITE", plan.cseq);
    let mut b = RequestBuilder::new(Method::Invite, &ruri)
        .header("Via", &via)
        .header("Max-Forwards", "70")
        .header("From", &from)
        .header("To", &to)
        .header("Call-ID", &plan.call_id)
        .header("CSeq", &cseq)
        .header("Contact", &contact)
        .header("Allow", crate::sip::endpoint::ALLOW)
        .header_unless_empty("User-Agent", &local.server_name)
        .header("X-OneInbox-Call-Id", &record.id);
    for (n, v) in &plan.auth_headers {
        b = b.header(n, v);
    }
    if let Some(sdp) = sdp {
        b = b.body("application/sdp", sdp.clone());
    }
    b.build()
}
