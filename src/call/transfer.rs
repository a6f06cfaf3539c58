//! Blind transfer: the agent hands the caller to a phone number or to another agent (RFC 3515 REFER,
//! or `POST /v1/calls/{id}/transfer`).
//!
//! REFER in the agent's dialog -> `Refer-To` read (`tel:` or a SIP URI whose user is a number: a number;
//! an `agt_...` user or an agent's `sip_uri`: that agent) -> 202 and `NOTIFY` "100 Trying" -> the target's
//! leg placed like any other (a number through the trunk the call's number uses for outbound calls, with
//! its pacing and digest, `outbound/dial.rs`; an agent like a hop, `inbound.rs`) while the caller stays
//! with the agent (and hears the target's early media once it sends some) -> the target answers: the
//! caller's anchored media goes to the new leg, the agent is told `200 OK` and hung up; or the target
//! fails: the caller stays with the agent and the NOTIFY says why.
//!
//! The agent may hang up as soon as it has its 202 (a "blind" transferor does): the caller then waits for
//! the target alone, and is hung up on if the target fails.
//!
//! Not here: attended transfer (`Replaces`), a REFER from the caller's side, and a REFER from an agent's
//! own outbound call (its agent is leg A, which the edge cannot replace): each gets a clear refusal.

use bytes::Bytes;
use edge_contract::TransferRefusal;
use edge_store::{AgentStatus, CallRecord, CallStatus, Route, TransferMode};
use sip_core::build::ResponseBuilder;
use sip_core::headers::NameAddr;
use sip_core::message::{HeaderName, Message, Method, Uri};
use sip_core::transaction::{Peer, TxKey};

use crate::call::context::Ctx;
use crate::call::inbound::{agent_peer, AgentTarget};
use crate::call::leg::{self, DialogSide};
use crate::call::media::{encryption_of, MediaEncryption, Side};
use crate::call::outbound::{plan, ResolveJob};
use crate::call::outcome::{Ending, HopOutcome};
use crate::call::phase::{ReferSubscription, Transfer, TransferTarget};
use crate::call::registry::CallController;
use crate::call::state::{early_media, BLeg, CallId, CallKind, ClientRef};
use crate::call::trunk;

/// The SIP answer to a REFER refused for `why`.
fn refer_answer(why: &TransferRefusal) -> (u16, &'static str) {
    match why {
        TransferRefusal::BadReferTo => (400, "Bad Request"),
        TransferRefusal::Attended => (501, "Not Implemented"),
        TransferRefusal::UnknownTarget(_) | TransferRefusal::CallNotFound { .. } => (404, "Not Found"),
        TransferRefusal::NotConnected => (491, "Request Pending"),
        TransferRefusal::AgentDisabled(_)
        | TransferRefusal::NotTheAgent
        | TransferRefusal::MediaRequired
        | TransferRefusal::NoTrunk { .. } => (403, "Forbidden"),
        TransferRefusal::MediaNotOffered(_) => (488, "Not Acceptable Here"),
    }
}

impl CallController {
    /// A REFER inside one of our dialogs (`side` is where it came from). Always answered.
    pub(super) fn on_refer(&mut self, ctx: &mut Ctx<'_>, id: CallId, side: Side, key: TxKey, req: &Message) {
        let referred_by = req.header(&HeaderName::Other("Referred-By".into())).map(str::to_owned);
        let target = self.refer_target(id, side, req);
        if let Ok(TransferTarget::Number(n)) = &target {
            if self.carrier_transfers(id) {
                return self.refer_to_carrier(ctx, id, key, req, n.clone());
            }
        }
        let started = target.and_then(|t| self.start_transfer(ctx, id, t, true, referred_by));
        let server = self.cfg.local.server_name.clone();
        match started {
            Ok(()) => {
                let ok = ResponseBuilder::for_request(req, 202, "Accepted")
                    .header_unless_empty("Server", &server)
                    .build_message();
                ctx.respond(&key, ok, "202 to REFER");
                self.notify_referrer(ctx, id, 100, "Trying");
                self.dial_transfer(ctx, id);
            }
            Err(why) => {
                let (code, reason) = refer_answer(&why);
                let warning = self.warning(&why.to_string());
                let r = ResponseBuilder::for_request(req, code, reason)
                    .header_unless_empty("Server", &server)
                    .header("Warning", &warning)
                    .build_message();
                ctx.respond(&key, r, "REFER refused");
            }
        }
    }

    /// The target a REFER names, if the REFER may be taken at all.
    fn refer_target(&self, id: CallId, side: Side, req: &Message) -> Result<TransferTarget, TransferRefusal> {
        let call = self.calls.get(&id).ok_or(TransferRefusal::NotConnected)?;
        let agent_side = match call.kind {
            CallKind::Inbound | CallKind::ApiOutbound => Side::B,
            CallKind::AgentOutbound => return Err(TransferRefusal::NotTheAgent),
        };
        if side != agent_side {
            return Err(TransferRefusal::NotTheAgent);
        }
        let refer_to = req
            .header(&HeaderName::Other("Refer-To".into()))
            .or_else(|| req.header(&HeaderName::Other("r".into())))
            .ok_or(TransferRefusal::BadReferTo)?;
        let na = NameAddr::parse(refer_to).map_err(|_| TransferRefusal::BadReferTo)?;
        let uri_text = na.uri_raw.trim_start_matches('<').trim_end_matches('>');
        if uri_text.to_ascii_lowercase().contains("replaces=") {
            return Err(TransferRefusal::Attended);
        }
        self.target_of(call.record.account_id.as_str(), uri_text)
    }

    /// Does the call's number hand transfers to a number over to the carrier (`inbound_routing.transfer`)?
    fn carrier_transfers(&self, id: CallId) -> bool {
        self.calls.get(&id).is_some_and(|c| {
            c.kind == CallKind::Inbound
                && c.number
                    .inbound_routing
                    .as_ref()
                    .is_some_and(|r| r.transfer == TransferMode::Carrier)
        })
    }

    /// The number's transfers are the carrier's: the REFER goes on to the carrier leg (Refer-To the number
    /// as a `tel:` URI), its answer comes back to the agent, and the carrier's NOTIFYs are relayed to the
    /// agent like any in-dialog request. When the carrier has moved the caller it hangs up its leg, and
    /// the call ends "transferred by the carrier".
    fn refer_to_carrier(&mut self, ctx: &mut Ctx<'_>, id: CallId, key: TxKey, req: &Message, number: String) {
        let local = self.cfg.local.clone();
        let branch = self.rng.branch();
        let Some(call) = self.calls.get_mut(&id) else { return };
        let refer_to = format!("<tel:{number}>");
        let referred_by = format!("<sip:{}@{}>", call.record.to, local.sent_by);
        let extra = [("Refer-To", refer_to.as_str()), ("Referred-By", referred_by.as_str())];
        let peer = call.a.peer;
        let sent = leg::in_dialog_request_with(&mut call.a.dialog, &local, &Method::Refer, None, &extra, None, &branch)
            .map_err(|e| e.to_string())
            .and_then(|m| ctx.tx.send_request(ctx.now, peer, m).map_err(|e| e.to_string()));
        match sent {
            Ok(k) => {
                let now = ctx.wall_ms;
                let hop = call.push_hop(Route::Transfer, None, None, HopOutcome::PassedToCarrier, now, None);
                if let Some(h) = call.record.hops.get_mut(hop) {
                    h.target = Some(number.clone());
                }
                call.carrier_transfer = Some(hop);
                tracing::info!(call = %call.record.id, target = %number, "transfer passed to the carrier");
                self.by_client.insert(
                    k,
                    ClientRef::Relay {
                        call: id,
                        server_key: key,
                        request: Box::new(req.clone()),
                        to_side: Side::A,
                    },
                );
                self.persist(ctx.now, id);
            }
            Err(e) => {
                let r = ResponseBuilder::for_request(req, 503, "Service Unavailable")
                    .header("Retry-After", "5")
                    .build_message();
                tracing::debug!(error = %e, "REFER to the carrier not sent");
                ctx.respond(&key, r, "503 to REFER");
            }
        }
    }

    /// Reads a transfer target: an `agt_...` id or user, an agent's `sip_uri`, or a phone number
    /// (`tel:`, a SIP URI whose user is a number, or the bare number).
    pub(super) fn target_of(&self, account_id: &str, text: &str) -> Result<TransferTarget, TransferRefusal> {
        let agent = |id: &str| {
            self.index
                .agent(id)
                .filter(|a| a.account_id == account_id)
                .ok_or_else(|| TransferRefusal::UnknownTarget(text.to_owned()))
        };
        let number = |n: &str| sip_core::e164::normalize(n, self.cfg.default_country_code.as_deref()).ok();
        let parsed = Uri::parse(text);
        let (user, sip_uri) = match &parsed {
            Ok(Uri::Tel(t)) => (t.number.to_owned(), None),
            Ok(u @ Uri::Sip(_)) => (u.user().map(|c| c.into_owned()).unwrap_or_default(), Some(text)),
            _ => (text.to_owned(), None),
        };
        let user = user.split(';').next().unwrap_or("").to_owned();
        let found = if user.starts_with("agt_") {
            agent(&user)?
        } else if let Some(n) = number(&user) {
            return Ok(TransferTarget::Number(n));
        } else if let Some(a) = sip_uri.and_then(|u| self.index.agent_by_sip_uri(account_id, u)) {
            a
        } else {
            return Err(TransferRefusal::UnknownTarget(text.to_owned()));
        };
        if found.status != AgentStatus::Active {
            return Err(TransferRefusal::AgentDisabled(found.id.clone()));
        }
        Ok(TransferTarget::Agent(found))
    }

    /// Moves a confirmed call into `Transferring` toward `target`; for a number, the trunk is chosen now so
    /// that a number with no way out is refused at once.
    pub(super) fn start_transfer(
        &mut self,
        ctx: &mut Ctx<'_>,
        id: CallId,
        target: TransferTarget,
        by_refer: bool,
        referred_by: Option<String>,
    ) -> Result<(), TransferRefusal> {
        let leg_call_id = self.new_leg_call_id();
        let from_tag = self.rng.token();
        let Some(call) = self.calls.get_mut(&id) else {
            return Err(TransferRefusal::NotConnected);
        };
        if call.relay.is_none() {
            // Without the relay the caller's media goes straight to the agent: only a re-INVITE of the
            // caller could move it, which signalling-only mode does not do.
            return Err(TransferRefusal::MediaRequired);
        }
        let out = match &target {
            TransferTarget::Number(n) => {
                let choice = trunk::choose(&call.number, &self.index, &self.cfg.outbound).map_err(|e| {
                    TransferRefusal::NoTrunk {
                        number: n.clone(),
                        why: e.to_string(),
                    }
                })?;
                let agent = call
                    .record
                    .agent_id
                    .as_deref()
                    .and_then(|a| self.index.agent(a))
                    .ok_or(TransferRefusal::NotConnected)?;
                let mut p = plan(choice, n.clone(), agent, leg_call_id, from_tag);
                // The caller ID toward the trunk is the call's own number: a number the customer owns.
                p.caller_id = Some(call.number.phone_number.clone());
                p.referred_by = referred_by.clone();
                Some(Box::new(p))
            }
            TransferTarget::Agent(_) => None,
        };
        // The target gets its own media policy (the agent's `media_encryption`, the trunk's) and keys of
        // its own: the agent on the call never holds a key the target uses, and keeps its own if the
        // target never answers.
        let policy = match (&target, &out) {
            (TransferTarget::Agent(a), _) => encryption_of(a.media_encryption),
            (TransferTarget::Number(_), Some(p)) => encryption_of(p.trunk.media_encryption),
            (TransferTarget::Number(_), None) => MediaEncryption::None,
        };
        let transfer = Box::new(Transfer {
            target,
            refer: by_refer.then_some(ReferSubscription { last_reported: 0 }),
            referred_by,
            leg: None,
            has_hop: false,
        });
        // The phase first: a refused transfer (ringing, already transferring) must leave the relay's keys
        // and the offer it made as they are.
        call.phase
            .start_transfer(transfer)
            .map_err(|_| TransferRefusal::NotConnected)?;
        if let (Some(relay), Some(offer)) = (call.relay.as_deref(), call.b_offer.as_ref()) {
            match relay.offer_new_peer(Side::B, policy, offer) {
                Ok(sdp) => call.b_offer = Some(sdp),
                Err(e) => {
                    call.phase.end_transfer(None);
                    return Err(TransferRefusal::MediaNotOffered(e.detail));
                }
            }
        }
        call.generation += 1;
        // The caller hears ringback, not silence nor the agent, until the target answers or sends its own
        // early media.
        if let Some(relay) = &call.relay {
            relay.ringback(Side::A, true);
        }
        if out.is_some() {
            call.out = out;
        }
        tracing::info!(call = %call.record.id, target = %call.phase.transfer().map(|t| t.target.label()).unwrap_or_default(), "transfer");
        self.persist(ctx.now, id);
        Ok(())
    }

    /// `POST /v1/calls/{id}/transfer`: the same transfer as a REFER, asked by the API for a call of
    /// `account_id` (no NOTIFYs: the API user follows the call's record).
    pub fn transfer(
        &mut self,
        ctx: &mut Ctx<'_>,
        account_id: &str,
        public_id: &str,
        to: &str,
    ) -> Result<CallRecord, TransferRefusal> {
        let not_found = || TransferRefusal::CallNotFound {
            call_id: public_id.to_owned(),
        };
        let id = *self.by_public.get(public_id).ok_or_else(not_found)?;
        let call = self.calls.get(&id).ok_or_else(not_found)?;
        if call.record.account_id != account_id {
            return Err(not_found());
        }
        if call.kind == CallKind::AgentOutbound {
            return Err(TransferRefusal::NotTheAgent);
        }
        let target = self.target_of(account_id, to)?;
        self.start_transfer(ctx, id, target, false, None)?;
        self.dial_transfer(ctx, id);
        // The record as it is now: the transfer hop once its leg is out (or the call as it stands when
        // the transfer already failed).
        self.calls.get(&id).map(|c| c.record.clone()).ok_or_else(not_found)
    }

    /// Places the transfer's leg: a number through the trunk (pacing, resolution, digest as outbound
    /// calls), an agent like a hop.
    pub(super) fn dial_transfer(&mut self, ctx: &mut Ctx<'_>, id: CallId) {
        let Some(target) = self
            .calls
            .get(&id)
            .and_then(|c| c.phase.transfer())
            .map(|t| t.target.clone())
        else {
            return;
        };
        match target {
            TransferTarget::Number(_) => self.start_pacing(ctx, id),
            TransferTarget::Agent(agent) => {
                if self.agent_slots.load(&agent.id) >= agent.max_concurrent_calls {
                    let why = format!(
                        "agent {} is at its limit of {} calls",
                        agent.id, agent.max_concurrent_calls
                    );
                    return self.transfer_failed(ctx, id, 486, "Busy Here", &why);
                }
                match agent_peer(&agent.sip_uri, &self.cfg.targets) {
                    Ok(AgentTarget::Ready(peer)) => {
                        if !self.start_agent_leg(ctx, id, agent.clone(), peer, Route::Transfer) {
                            let why = format!("agent {} could not be rung", agent.id);
                            self.transfer_failed(ctx, id, 503, "Service Unavailable", &why);
                        }
                    }
                    Ok(AgentTarget::Resolve {
                        host,
                        port,
                        transport,
                        secure,
                    }) => {
                        let generation = self.calls.get(&id).map(|c| c.generation).unwrap_or(0);
                        self.resolve_jobs.push_back(ResolveJob {
                            call: id,
                            generation,
                            host,
                            port,
                            transport: Some(transport),
                            secure,
                            agent: Some((agent, Route::Transfer)),
                        });
                    }
                    Err(why) => self.transfer_failed(ctx, id, 503, "Service Unavailable", &why.to_string()),
                }
            }
        }
    }

    /// A provisional answer from the transfer's target: the agent is told it rings, and early media
    /// (an SDP in a 18x: the carrier's ringback, usually) reaches the caller.
    pub(super) fn transfer_progress(&mut self, ctx: &mut Ctx<'_>, id: CallId, resp: &Message) {
        let status = resp.status().unwrap_or(0);
        let Some(call) = self.calls.get_mut(&id) else { return };
        if !resp.body().is_empty() {
            // Early media from the target (a carrier's own ringback, an announcement): the caller hears it,
            // in the session the caller already has (the relay converts G.711 law if need be).
            match early_media(call.relay.as_deref(), Side::B, resp) {
                Ok(true) => {
                    if let Some(relay) = &call.relay {
                        relay.ringback(Side::A, false);
                    }
                }
                // SRTP on that side: the agent keeps its keys until the target answers; the caller keeps
                // hearing the edge's ringback meanwhile.
                Ok(false) => {}
                Err(e) => return self.b_media_refused(ctx, id, e, None),
            }
        }
        let report = match call.phase.transfer_mut().and_then(|t| t.refer.as_mut()) {
            Some(sub) if status > 100 && sub.last_reported != status => {
                sub.last_reported = status;
                true
            }
            _ => false,
        };
        if report {
            let reason = resp.reason().unwrap_or("").to_owned();
            self.notify_referrer(ctx, id, status, &reason);
        }
    }

    /// The target answered: the caller's media goes to it, the agent is told and hung up.
    pub(super) fn transfer_answered(&mut self, ctx: &mut Ctx<'_>, id: CallId, b: BLeg, d: DialogSide, resp: &Message) {
        let status = resp.status().unwrap_or(200);
        let reason = resp.reason().unwrap_or("OK").to_owned();
        let Some(call) = self.calls.get_mut(&id) else { return };
        // The relay took the target's SDP (`on_agent_response`): it now sends the caller's audio there, and
        // the caller keeps its session.
        if let Some(relay) = &call.relay {
            relay.ringback(Side::A, false);
        }
        if let Some(agent_id) = b.agent_id() {
            call.record.agent_id = Some(agent_id.to_owned());
        }
        let Some((agent, transfer)) = call.phase.end_transfer(Some((b, d))) else {
            return;
        };
        tracing::info!(call = %call.record.id, target = %transfer.target.label(), "transfer answered");
        if let Some((agent_leg, mut agent_dialog)) = agent {
            if transfer.refer.is_some() {
                self.notify(ctx, &mut agent_dialog, agent_leg.peer, status, &reason, true);
            }
            let why = "SIP;cause=200;text=\"transferred\"";
            self.send_bye(ctx, &mut agent_dialog, agent_leg.peer, Some(why));
            self.forget_leg(agent_leg.invite_call_id());
            if let Some(agent_id) = agent_leg.agent_id() {
                let agent_id = agent_id.to_owned();
                self.release_agent(&agent_id);
            }
        }
        self.persist(ctx.now, id);
    }

    /// The transfer could not reach its target: the agent (if still there) keeps the caller and is told
    /// why; with the agent gone, the caller is hung up on.
    pub(super) fn transfer_failed(&mut self, ctx: &mut Ctx<'_>, id: CallId, status: u16, reason: &str, why: &str) {
        let Some(call) = self.calls.get_mut(&id) else { return };
        // A leg still out (a failover target that never got to ring) is given up.
        if call.phase.transfer().is_some_and(|t| t.leg.is_some()) {
            self.abandon_agent_leg(ctx, id, HopOutcome::NotSent("transfer given up".into()));
        }
        let Some(call) = self.calls.get_mut(&id) else { return };
        let reported = call.phase.transfer().is_some_and(|t| t.refer.is_some());
        let Some((_, transfer)) = call.phase.end_transfer(None) else {
            return;
        };
        if let Some(relay) = &call.relay {
            relay.ringback(Side::A, false);
            relay.forget_new_peer(Side::B);
        }
        tracing::info!(call = %call.record.id, target = %transfer.target.label(), status, why, "transfer failed");
        call.generation += 1;
        // A leg that failed before its INVITE left (at its limit, unreachable) has a hop without target.
        let mut shown = transfer.has_hop;
        if let Some(h) = call
            .record
            .hops
            .last_mut()
            .filter(|h| h.route == Route::Transfer && h.target.is_none())
        {
            h.target = Some(transfer.target.label());
            shown = true;
        }
        if !shown {
            let (agent_id, target) = match &transfer.target {
                TransferTarget::Agent(a) => (Some(a.id.clone()), a.id.clone()),
                TransferTarget::Number(n) => (None, n.clone()),
            };
            let now = ctx.wall_ms;
            let outcome = HopOutcome::NotSent(why.to_owned());
            let hop = call.push_hop(Route::Transfer, agent_id, Some(status), outcome, now, Some(now));
            if let Some(h) = call.record.hops.get_mut(hop) {
                h.target = Some(target);
            }
        }
        if call.phase.answered_leg().is_some() {
            if reported {
                self.notify_referrer(ctx, id, status, reason);
            }
            self.persist(ctx.now, id);
            return;
        }
        // Nobody left for the caller.
        self.send_bye_a(ctx, id, Some("SIP;cause=480;text=\"transfer failed\""));
        self.finish(ctx, id, CallStatus::Completed, Ending::TransferFailed(why.to_owned()));
    }

    /// The agent hung up while its transfer rings: its leg is gone, the caller waits for the target.
    pub(super) fn agent_left_transfer(&mut self, id: CallId) {
        let Some(call) = self.calls.get_mut(&id) else { return };
        let Some(leg) = call.phase.agent_left() else { return };
        self.forget_leg(leg.invite_call_id());
        if let Some(agent_id) = leg.agent_id() {
            let agent_id = agent_id.to_owned();
            self.release_agent(&agent_id);
        }
    }

    /// NOTIFY the agent that sent the REFER with `status` (RFC 3515 2.4.5: a sipfrag of the status line);
    /// a final status ends the subscription.
    pub(super) fn notify_referrer(&mut self, ctx: &mut Ctx<'_>, id: CallId, status: u16, reason: &str) {
        let Some(call) = self.calls.get_mut(&id) else { return };
        let Some((b, d)) = call.phase.answered_leg_mut() else {
            return;
        };
        let peer = b.peer;
        let mut d = d.clone();
        self.notify(ctx, &mut d, peer, status, reason, status >= 200);
        // Keep the dialog's CSeq moving: the next request in it must use a higher one.
        if let Some((_, dialog)) = self.calls.get_mut(&id).and_then(|c| c.phase.answered_leg_mut()) {
            dialog.local_cseq = d.local_cseq;
        }
    }

    fn notify(&mut self, ctx: &mut Ctx<'_>, d: &mut DialogSide, peer: Peer, status: u16, reason: &str, last: bool) {
        let state = if last {
            "terminated;reason=noresource"
        } else {
            "active;expires=60"
        };
        let frag = Bytes::from(format!("SIP/2.0 {status} {reason}\r\n"));
        let extra = [("Event", "refer"), ("Subscription-State", state)];
        let branch = self.rng.branch();
        let built = leg::in_dialog_request_with(
            d,
            &self.cfg.local,
            &Method::Notify,
            None,
            &extra,
            Some(("message/sipfrag;version=2.0", frag)),
            &branch,
        );
        let sent = built
            .map_err(|e| e.to_string())
            .and_then(|m| ctx.tx.send_request(ctx.now, peer, m).map_err(|e| e.to_string()));
        match sent {
            Ok(k) => {
                self.by_client.insert(k, ClientRef::Fire);
            }
            Err(e) => tracing::debug!(error = %e, "NOTIFY not sent"),
        }
    }
}
