//! Dialling a trunk: a pacing slot -> RFC 3263 resolution (by the driver: DNS is IO) -> INVITE to the
//! first target -> digest answer on 401/407, next target on 503 or silence -> failed with an error the
//! user can act on.

use bytes::Bytes;
use edge_contract::PacingRefusal;
use edge_store::{CallError, CallRecord, CallStatus, Route};
use sip_core::build::RequestBuilder;
use sip_core::digest::{AuthSession, AuthStep, DigestCredentials};
use sip_core::message::{Message, Method, Transport};
use sip_core::transaction::Peer;
use std::net::{IpAddr, SocketAddr};

use crate::call::context::{Ctx, MetricUpdate};
use crate::call::media::Side;
use crate::call::outbound::{agent_code, error, OutboundPlan, ResolveJob, TrunkTarget};
use crate::call::outcome::{Ending, HopOutcome};
use crate::call::pacing::Slot;
use crate::call::registry::{note_trace_leg, CallController};
use crate::call::state::{BLeg, CallId, CallKind, ClientRef, LegTarget, TimerKind};
use crate::call::trunk::{TrunkChoice, TrunkTransport};
use crate::call::{leg, trunk};

impl CallController {
    /// Takes a slot on the trunk's pacing line, or fails the call when the line is too long.
    pub(in crate::call) fn start_pacing(&mut self, ctx: &mut Ctx<'_>, id: CallId) {
        if self.ask_pace(id) {
            return;
        }
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
            Err(e) => {
                let e = error("trunk_pacing", e.to_string());
                self.fail_outbound(ctx, id, CallStatus::Failed, e, 503)
            }
        }
    }

    /// A slot on the trunk's pacing line (now or later), or the refusal when the line is too long.
    pub(in crate::call) fn take_slot(
        &mut self,
        now: std::time::Instant,
        trunk: &TrunkChoice,
    ) -> Result<Slot, PacingRefusal> {
        let key = trunk.pacing_key();
        let cps = trunk.cps;
        match self.pacer.admit(now, &key, cps) {
            Slot::Refused { wait } => {
                self.metric(MetricUpdate::OutboundPacedOut);
                Err(PacingRefusal {
                    trunk: key,
                    cps,
                    wait,
                    max_wait: self.cfg.outbound.max_pacing_wait,
                })
            }
            slot => Ok(slot),
        }
    }

    /// Dials at once, or arms the timer of the call's slot.
    pub(in crate::call) fn schedule(&mut self, ctx: &mut Ctx<'_>, id: CallId, slot: Slot) {
        match slot {
            Slot::At(at) => {
                let gen = self.calls.get(&id).map(|c| c.generation).unwrap_or(0);
                self.timers.push(std::cmp::Reverse((at, id, TimerKind::Pace, gen)));
            }
            _ => self.pacing_slot(ctx, id),
        }
    }

    /// The pacing slot came: resolve the trunk host (IP literals need no DNS).
    pub(in crate::call) fn pacing_slot(&mut self, ctx: &mut Ctx<'_>, id: CallId) {
        let Some(call) = self.calls.get(&id) else { return };
        let Some(plan) = &call.out else { return };
        let addr = plan.trunk.address.clone();
        // `sips:` and `transport=tls` go over TLS (a `sips:` address with another transport still does).
        let transport = if addr.tls() {
            Some(Transport::Tls)
        } else {
            addr.transport.map(|t| match t {
                TrunkTransport::Tcp => Transport::Tcp,
                _ => Transport::Udp,
            })
        };
        let job = ResolveJob {
            call: id,
            generation: call.generation,
            host: addr.host.clone(),
            port: addr.port,
            transport,
            secure: addr.secure,
            agent: None,
        };
        match addr
            .host
            .trim_start_matches('[')
            .trim_end_matches(']')
            .parse::<IpAddr>()
        {
            Ok(ip) => {
                let transport = transport.unwrap_or(Transport::Udp);
                let port = if transport == Transport::Tls { 5061 } else { 5060 };
                let target = (SocketAddr::new(ip, addr.port.unwrap_or(port)), transport);
                self.on_resolved(ctx, &job, Ok(vec![target]));
            }
            Err(_) => self.resolve_jobs.push_back(job),
        }
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

    /// Sends the INVITE to the current target (first try, digest resend, or failover).
    pub(in crate::call) fn send_trunk_invite(&mut self, ctx: &mut Ctx<'_>, id: CallId) {
        let local = self.cfg.local.clone();
        let warn_agent = self.cfg.warn_agent.clone();
        let tls = self.cfg.tls.clone();
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
        let branch = self.rng.branch();
        let route = if call.phase.is_transferring() {
            Route::Transfer
        } else {
            Route::Trunk
        };
        let built = build_trunk_invite(
            &local,
            &call.record,
            plan,
            offer.as_ref(),
            &warn_agent,
            transport,
            &branch,
        );
        // Over TLS: the connection to this address that checks the trunk's host name (and shows the trunk's
        // client certificate), reused by every call to the same trunk.
        let conn = (transport == Transport::Tls).then(|| {
            let dest = crate::transport::tls_client::TlsDest {
                name: plan.trunk.address.host.as_str().into(),
                identity: plan.trunk.tls_identity.as_deref().map(Into::into),
                pem: plan
                    .trunk
                    .tls_client
                    .clone()
                    .map(crate::transport::tls_client::PemIdentity),
            };
            tls.route(target, dest)
        });
        let peer = Peer {
            addr: target,
            transport,
            conn,
        };
        let started = ctx.wall_ms;
        let sent = built.map_err(|e| e.to_string()).and_then(|m| {
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
        let dialog_call_id = plan.call_id.clone();
        let hop_index = call.push_hop(
            route,
            None,
            None,
            HopOutcome::TryingTrunk { transport, target },
            started,
            None,
        );
        call.mark_transfer_hop(hop_index);
        self.by_client.insert(key.clone(), ClientRef::Invite(id));
        if self.trace_legs.is_some() {
            let leg = format!("trunk ({})", route.as_str());
            note_trace_leg(&mut self.trace_legs, &dialog_call_id, &call.record.id, leg);
        }
        self.by_dialog.insert(dialog_call_id, (id, Side::B));
        let leg = BLeg {
            target: LegTarget::Trunk,
            route,
            invite: msg,
            key,
            peer,
            provisional: false,
            hop: hop_index,
        };
        if call.phase.ring(leg).is_some() {
            tracing::error!(call = %call.record.id, "trunk INVITE sent while another leg rings");
        }
        let setup = self.cfg.outbound.trunk_setup_timeout;
        let ring = self.cfg.outbound.trunk_ring_timeout;
        self.timers
            .push(std::cmp::Reverse((ctx.now + setup, id, TimerKind::Setup, gen)));
        self.timers
            .push(std::cmp::Reverse((ctx.now + ring, id, TimerKind::Ring, gen)));
    }

    /// A final non-2xx from the trunk (or 408 for no answer at all): answer a challenge, fail over, or fail.
    pub(in crate::call) fn on_trunk_failure(
        &mut self,
        ctx: &mut Ctx<'_>,
        id: CallId,
        status: u16,
        resp: Option<&Message>,
    ) {
        let Some(call) = self.calls.get_mut(&id) else { return };
        let Some(b) = call.phase.take_ringing() else { return };
        let reason = resp.and_then(|r| r.reason()).unwrap_or("").to_owned();
        call.end_hop(
            b.hop,
            Some(status),
            HopOutcome::TrunkRejected { status, reason },
            ctx.wall_ms,
        );
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
    pub(in crate::call) fn trunk_target_dead(&mut self, ctx: &mut Ctx<'_>, id: CallId) {
        let within = self.cfg.outbound.trunk_setup_timeout;
        self.abandon_agent_leg(ctx, id, HopOutcome::TrunkSilent { within });
        let Some(plan) = self.calls.get_mut(&id).and_then(|c| c.out.as_mut()) else {
            return;
        };
        plan.last_failure = Some((408, None));
        plan.next_target += 1;
        plan.cseq += 1;
        self.send_trunk_invite(ctx, id);
    }

    /// The trunk rang for `trunk_ring_timeout_s` without an answer.
    pub(in crate::call) fn trunk_no_answer(&mut self, ctx: &mut Ctx<'_>, id: CallId) {
        let within = self.cfg.outbound.trunk_ring_timeout;
        let secs = within.as_secs();
        self.abandon_agent_leg(ctx, id, HopOutcome::NoAnswer { within });
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

    pub(in crate::call) fn all_targets_failed(&mut self, ctx: &mut Ctx<'_>, id: CallId) {
        let Some(plan) = self.calls.get(&id).and_then(|c| c.out.as_ref()) else {
            return;
        };
        let n = plan.targets.len();
        let (status, resp) = plan.last_failure.clone().unwrap_or((503, None));
        let (mut s, mut e) = trunk::classify(status, resp.as_ref(), &plan.trunk, &plan.dest);
        if let (408, Some(why)) = (status, &plan.tls_failure) {
            // No target answered, and TLS is why: the certificate (or ours) is what to fix.
            s = CallStatus::Failed;
            e = error("trunk_tls", why.clone());
            if n > 1 {
                e.message = format!("{} ({n} targets tried)", e.message);
            }
        } else if status == 408 {
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
    pub(in crate::call) fn fail_outbound(
        &mut self,
        ctx: &mut Ctx<'_>,
        id: CallId,
        status: CallStatus,
        e: CallError,
        sip: u16,
    ) {
        let Some(call) = self.calls.get_mut(&id) else { return };
        if call.phase.is_transferring() {
            // The transfer's dialling failed, not the call: the caller stays with the agent.
            let (code, reason) = agent_code(sip);
            return self.transfer_failed(ctx, id, code, reason, &e.message);
        }
        tracing::info!(call = %call.record.id, code = %e.code, message = %e.message, "outbound call failed");
        let code = e.code.clone();
        self.metric(MetricUpdate::OutboundFailed { code });
        let Some(call) = self.calls.get_mut(&id) else { return };
        call.record.error = Some(e.clone());
        if call.a.key.is_some() {
            let (code, reason) = agent_code(sip);
            let warning = self.warning(&e.message);
            self.fail_a(ctx, id, code, reason, &[("Warning", &warning)]);
        }
        if let Some(call) = self.calls.get_mut(&id) {
            call.record.sip_status = Some(sip);
        }
        self.finish(ctx, id, status, Ending::OutboundFailed(e.message));
    }
}

/// The INVITE toward the trunk: Request-URI `sip:+E164@<trunk host>` (Twilio accepts only its own host
/// there; a Telnyx tech prefix goes before the digits), the DID as caller ID in From, our Contact, the
/// carrier's identification headers, credentials after a challenge.
pub(in crate::call) fn build_trunk_invite(
    local: &leg::Local,
    record: &CallRecord,
    plan: &OutboundPlan,
    sdp: Option<&Bytes>,
    our_host: &str,
    transport: Transport,
    branch: &str,
) -> Result<Message, sip_core::ParseError> {
    let hostport = plan.trunk.address.hostport();
    // The number as the trunk wants it dialled (behind a Telnyx tech prefix, if any).
    let dial = plan.trunk.dial_string(&plan.dest);
    // A `sips:` trunk gets a `sips:` Request-URI; a transport the address names is named for the proxies
    // in front of the trunk (RFC 3263 4.1).
    let scheme = if plan.trunk.address.secure { "sips" } else { "sip" };
    let ruri = match (leg::uri_transport(transport), plan.trunk.address.transport) {
        (Some(t), Some(_)) if !plan.trunk.address.secure => format!("sip:{dial}@{hostport};transport={t}"),
        _ => format!("{scheme}:{dial}@{hostport}"),
    };
    let via = format!(
        "SIP/2.0/{} {};branch={branch};rport",
        leg::via_transport(transport),
        local.sent_by_for(transport)
    );
    let contact = local.contact_on(transport, &ruri);
    let caller = plan.caller_id.as_deref().unwrap_or(&record.from);
    let from = format!("<sip:{caller}@{our_host}>;tag={}", plan.from_tag);
    let to = format!("<{scheme}:{dial}@{hostport}>");
    let cseq = format!("{} INVITE", plan.cseq);
    // The carrier's own identification (Telnyx: X-Telnyx-Username/-Token, P-Charge-Info) on every INVITE.
    let carrier = plan.trunk.carrier_headers(caller);
    let mut b = RequestBuilder::new(Method::Invite, &ruri)
        .header("Via", &via)
        .header("Max-Forwards", "70")
        .header("From", &from)
        .header("To", &to)
        .header("Call-ID", &plan.call_id)
        .header("CSeq", &cseq)
        .header("Contact", &contact)
        .header("Allow", crate::sip::endpoint::ALLOW)
        .header_unless_empty("User-Agent", &local.server_name);
    for (n, v) in &carrier {
        b = b.header(n, v);
    }
    for (n, v) in &plan.auth_headers {
        b = b.header(n, v);
    }
    if let Some(rb) = &plan.referred_by {
        b = b.header("Referred-By", rb);
    }
    if let Some(sdp) = sdp {
        b = b.body("application/sdp", sdp.clone());
    }
    b.build_message()
}
