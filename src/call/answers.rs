//! Answers on the legs we place: the B leg's 1xx/2xx/failure (relayed to A, ACKed, or the next hop),
//! answers to requests we relayed, late answers on legs we gave up on (CANCEL, or ACK + BYE), and
//! transaction time-outs.

use edge_store::{CallStatus, Route};
use sip_core::build::{cancel_message_for, ResponseBuilder};
use sip_core::message::{HeaderName, Message, Method, Transport};
use sip_core::transaction::TxKey;
use std::sync::atomic::Ordering;
use std::time::Instant;

use crate::call::context::{Ctx, MetricUpdate};
use crate::call::leg;
use crate::call::media::SdpRefused;
use crate::call::media::Side;
use crate::call::outbound::error;
use crate::call::outcome::{Ending, HopOutcome};
use crate::call::phase::{Answerer, SentAnswer};
use crate::call::registry::{queue_metric, CallController, LATE_ANSWER_WINDOW, LATE_LEGS_MAX};
use crate::call::state::{
    anchor, answer_for_a, dialog_from_answer, keep_answer, try_anchor, BLeg, CallId, CallKind, ClientRef, LegTarget,
    Orphan,
};

impl CallController {
    /// A final non-2xx answer to the carrier's INVITE.
    pub(super) fn fail_a(&mut self, ctx: &mut Ctx<'_>, id: CallId, code: u16, reason: &str, extra: &[(&str, &str)]) {
        let Some(call) = self.calls.get_mut(&id) else { return };
        let mut b = ResponseBuilder::for_request(&call.a.invite, code, reason)
            .to_tag(&call.a.tag)
            .header_unless_empty("Server", &self.cfg.local.server_name);
        for (n, v) in extra {
            b = b.header(n, v);
        }
        call.record.sip_status = Some(code);
        let carrier = call.record.carrier.clone();
        queue_metric(&mut self.metrics, MetricUpdate::InviteAnswered { carrier, code });
        let Some(a_key) = &call.a.key else { return };
        ctx.respond(a_key, b.build_message(), "final answer to leg A");
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
                    if let Ok(m) = cancel_message_for(&o.invite) {
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
                    self.ack_and_bye(ctx, &o, &resp);
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
                let sdp = anchor(c.relay.as_deref(), to_side, &resp);
                let answer = leg::relay_response(&request, &resp, &tag, &self.cfg.local, sdp);
                ctx.respond(&server_key, answer, "relayed answer");
                // A 2xx to a relayed re-INVITE needs our ACK on the side that answered.
                if (200..300).contains(&status) && resp.cseq().map(|c| c.method == Method::Invite).unwrap_or(false) {
                    let seq = resp.cseq().map(|c| c.seq).unwrap_or(1);
                    let on_b = c
                        .phase
                        .answered_leg()
                        .filter(|(_, d)| Some(d.call_id.as_str()) == resp.call_id().ok());
                    if let Some((b, d)) = on_b {
                        ctx.send_raw(&b.peer, leg::ack_2xx(d, &self.cfg.local, seq, &self.rng.branch()));
                    } else {
                        let peer = c.a.peer;
                        ctx.send_raw(
                            &peer,
                            leg::ack_2xx(&c.a.dialog, &self.cfg.local, seq, &self.rng.branch()),
                        );
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
    pub(super) fn on_agent_response(&mut self, ctx: &mut Ctx<'_>, id: CallId, key: &TxKey, resp: Message, status: u16) {
        let local = self.cfg.local.clone();
        let Some(call) = self.calls.get_mut(&id) else { return };
        if let Some((b, d)) = call.phase.answered_leg().filter(|(b, _)| &b.key == key) {
            if (200..300).contains(&status) {
                // A retransmitted 2xx: our ACK was lost; send it again.
                let seq = b.invite.cseq().map(|c| c.seq).unwrap_or(1);
                ctx.send_raw(&b.peer, leg::ack_2xx(d, &local, seq, &self.rng.branch()));
            }
            return;
        }
        let Some(b) = call.phase.ringing_mut().filter(|b| &b.key == key) else {
            return;
        };
        let to_trunk = matches!(b.target, LegTarget::Trunk);
        match status {
            100..=199 => {
                b.provisional = true;
                if call.phase.is_transferring() {
                    return self.transfer_progress(ctx, id, &resp);
                }
                if status > 100 && call.phase.is_hunting() {
                    if call.a.key.is_some() {
                        let sdp = match answer_for_a(call, &resp) {
                            Ok(sdp) => sdp,
                            Err(e) => return self.b_media_refused(ctx, id, e, None),
                        };
                        let answer = leg::relay_response(&call.a.invite, &resp, &call.a.tag, &local, sdp);
                        if let Some(a_key) = &call.a.key {
                            ctx.respond(a_key, answer, "provisional answer");
                        }
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
                let Some(b) = call.phase.take_ringing() else { return };
                // B's SDP first: an answer the relay refuses (a plain one from a `srtp_required` leg) ends
                // this leg like a refusal would, never connects the caller to no audio.
                let a_sdp = match (call.phase.is_transferring(), call.kind, to_trunk) {
                    // The transfer's target: the caller keeps its session, the relay sends to the target.
                    (true, ..) => keep_answer(call.relay.as_deref(), Side::B, &resp).map(|_| None),
                    // The trunk's answer becomes side A's media (`api_trunk_answered`).
                    (false, CallKind::ApiOutbound, true) => Ok(None),
                    // The agent took the dialled party: media flows both ways through the relay.
                    (false, CallKind::ApiOutbound, false) => {
                        try_anchor(call.relay.as_deref(), Side::B, &resp).map(|_| None)
                    }
                    _ => answer_for_a(call, &resp),
                };
                let a_sdp = match a_sdp {
                    Ok(sdp) => sdp,
                    Err(e) => return self.b_media_refused(ctx, id, e, Some((b, &resp))),
                };
                let mut d = dialog_from_answer(
                    b.invite.header(&HeaderName::From).unwrap_or(""),
                    b.invite.call_id().unwrap_or(""),
                    &resp,
                    b.peer,
                );
                d.local_cseq = b.invite.cseq().map(|c| c.seq).unwrap_or(1);
                ctx.send_raw(&b.peer, leg::ack_2xx(&d, &local, d.local_cseq, &self.rng.branch()));
                let route = b.route;
                let agent_id = b.agent_id().map(str::to_owned);
                call.end_hop(b.hop, Some(status), HopOutcome::Answered, ctx.wall_ms);
                call.record.sip_status = Some(status);
                call.generation += 1; // cancels the setup and ring timers
                if call.phase.is_transferring() {
                    return self.transfer_answered(ctx, id, b, d, &resp);
                }
                match (call.kind, to_trunk) {
                    (CallKind::ApiOutbound, true) => return self.api_trunk_answered(ctx, id, b, d, &resp),
                    (CallKind::ApiOutbound, false) => {
                        call.phase.confirmed(Answerer::Leg { leg: b, dialog: d });
                        self.persist(ctx.now, id);
                        return;
                    }
                    _ => {}
                }
                call.record.status = CallStatus::InProgress;
                call.record.answered_by = Some(route);
                if let Some(agent_id) = agent_id {
                    call.record.agent_id = Some(agent_id);
                }
                call.record.answered_at_ms = Some(ctx.wall_ms);
                match route {
                    Route::Primary => self.stats.answered_primary.fetch_add(1, Ordering::Relaxed),
                    Route::Fallback => self.stats.answered_fallback.fetch_add(1, Ordering::Relaxed),
                    _ => 0,
                };
                let answer = match leg::relay_response(&call.a.invite, &resp, &call.a.tag, &local, a_sdp) {
                    Ok(m) => m,
                    Err(e) => {
                        // Cannot happen for a 2xx we parsed; end the call rather than answer half of it.
                        tracing::error!(call = %call.record.id, error = %e, "2xx to leg A could not be built");
                        call.phase.confirmed(Answerer::Leg { leg: b, dialog: d });
                        self.hang_up_other(ctx, id, Side::A, Some("SIP;cause=500;text=\"answer not built\""));
                        self.fail_a(ctx, id, 500, "Server Internal Error", &[]);
                        return self.finish(ctx, id, CallStatus::Failed, Ending::AnswerNotBuilt);
                    }
                };
                if let Some(a_key) = &call.a.key {
                    ctx.respond(a_key, Ok(answer.clone()), "2xx answer");
                }
                call.phase.answered(
                    Answerer::Leg { leg: b, dialog: d },
                    SentAnswer {
                        answer,
                        interval: self.cfg.t1,
                    },
                );
                let carrier = call.record.carrier.clone();
                let setup = ctx.now.duration_since(call.created).as_secs_f64();
                let gen = call.generation;
                let unreliable = call.a.peer.transport == Transport::Udp;
                self.metric(MetricUpdate::InviteAnswered { carrier, code: status });
                self.metric(MetricUpdate::SetupSeconds(setup));
                self.arm_answer_timers(ctx.now, id, gen, unreliable);
                self.persist(ctx.now, id);
            }
            _ => {
                if to_trunk {
                    return self.on_trunk_failure(ctx, id, status, Some(&resp));
                }
                // The transaction layer has ACKed it; this hop is over.
                let Some(b) = call.phase.take_ringing() else { return };
                let reason = resp.reason().unwrap_or("").to_owned();
                call.end_hop(
                    b.hop,
                    Some(status),
                    HopOutcome::Rejected { status, reason },
                    ctx.wall_ms,
                );
                self.forget_leg(b.invite_call_id());
                if let Some(agent_id) = b.agent_id() {
                    let agent_id = agent_id.to_owned();
                    self.release_agent(&agent_id);
                }
                self.next_hop(ctx, id);
            }
        }
    }

    /// A client transaction ended without a final answer: timed out (Timer B/F, `transport_error` None)
    /// or could not send (`transport_error` says why, e.g. "connection refused").
    pub fn on_tx_timeout(&mut self, ctx: &mut Ctx<'_>, key: &TxKey, transport_error: Option<String>) {
        match self.by_client.remove(key) {
            Some(ClientRef::Invite(id)) => {
                let Some(call) = self.calls.get_mut(&id) else { return };
                // Only a leg still ringing can time out; an answered one's transaction merely ended.
                let Some(b) = call.phase.ringing_on(key) else {
                    return;
                };
                if matches!(b.target, LegTarget::Trunk) {
                    // A failed TLS handshake says what to fix (the certificate); kept for the call's error.
                    if let (Some(why), Some(plan)) = (
                        transport_error.as_deref().and_then(|w| w.strip_prefix("tls: ")),
                        call.out.as_mut(),
                    ) {
                        plan.tls_failure = Some(why.to_owned());
                    }
                    return self.on_trunk_failure(ctx, id, 408, None);
                }
                let outcome = match transport_error {
                    Some(why) => HopOutcome::Unreachable { why },
                    None => HopOutcome::NoFinalAnswer,
                };
                let Some(b) = call.phase.take_ringing() else { return };
                call.end_hop(b.hop, outcome.synthetic_status(), outcome, ctx.wall_ms);
                self.forget_leg(b.invite_call_id());
                if let Some(agent_id) = b.agent_id() {
                    let agent_id = agent_id.to_owned();
                    self.release_agent(&agent_id);
                }
                self.keep_for_late_answer(ctx.now, Self::orphan_of(b));
                self.next_hop(ctx, id);
            }
            Some(ClientRef::Relay {
                call,
                server_key,
                request,
                ..
            }) if self.calls.contains_key(&call) => {
                let r = ResponseBuilder::for_request(&request, 408, "Request Timeout").build_message();
                ctx.respond(&server_key, r, "408 to relayed request");
            }
            Some(ClientRef::Orphan(o)) => self.keep_for_late_answer(ctx.now, *o),
            _ => {}
        }
    }

    /// Remembers an agent leg whose INVITE transaction ended unanswered, for [`Self::on_stray_response`];
    /// entries past the window go first, and the map holds at most `LATE_LEGS_MAX`.
    fn keep_for_late_answer(&mut self, now: Instant, o: Orphan) {
        self.prune_late_legs(now);
        if self.late_order.len() >= LATE_LEGS_MAX {
            if let Some((_, oldest)) = self.late_order.pop_front() {
                self.late_legs.remove(&oldest);
            }
        }
        let Ok(call_id) = o.invite.call_id().map(str::to_owned) else {
            return;
        };
        let until = now + LATE_ANSWER_WINDOW;
        self.late_order.push_back((until, call_id.clone()));
        self.late_legs.insert(call_id, (until, o));
    }

    fn prune_late_legs(&mut self, now: Instant) {
        while let Some((until, _)) = self.late_order.front() {
            if *until > now {
                break;
            }
            if let Some((_, call_id)) = self.late_order.pop_front() {
                if self.late_legs.get(&call_id).is_some_and(|(u, _)| *u <= now) {
                    self.late_legs.remove(&call_id);
                }
            }
        }
    }

    /// A response no transaction matched. A 2xx to the INVITE of an agent leg whose transaction already
    /// ended (Timer B, transport error) opened a dialog: ACK it and BYE (RFC 3261 13.2.2.4). Returns whether
    /// it was such an answer; anything else is the caller's stray to drop.
    pub fn on_stray_response(&mut self, ctx: &mut Ctx<'_>, resp: &Message) -> bool {
        self.prune_late_legs(ctx.now);
        if !resp.status().is_some_and(|s| (200..300).contains(&s)) {
            return false;
        }
        let Ok(call_id) = resp.call_id() else { return false };
        let Some((_, o)) = self.late_legs.get(call_id) else {
            return false;
        };
        let same_invite = resp
            .cseq()
            .ok()
            .zip(o.invite.cseq().ok())
            .is_some_and(|(r, i)| r.method == Method::Invite && r.seq == i.seq);
        if !same_invite {
            return false;
        }
        let Some((_, o)) = self.late_legs.remove(call_id) else {
            return false;
        };
        self.ack_and_bye(ctx, &o, resp);
        true
    }

    /// ACK and BYE for a 2xx on an agent leg we no longer want.
    fn ack_and_bye(&mut self, ctx: &mut Ctx<'_>, o: &Orphan, resp: &Message) {
        let mut d = dialog_from_answer(&o.local, o.invite.call_id().unwrap_or(""), resp, o.peer);
        let cseq = o.invite.cseq().map(|c| c.seq).unwrap_or(1);
        ctx.send_raw(&o.peer, leg::ack_2xx(&d, &self.cfg.local, cseq, &self.rng.branch()));
        d.local_cseq = cseq;
        self.send_bye(ctx, &mut d, o.peer, None);
    }

    /// B's SDP (in a 1xx while the leg rings, or in its 2xx: `answered`) was refused by the relay: the
    /// leg is over (CANCEL, or ACK + BYE) with the relay's words on its hop, and the call goes on as after
    /// any failed hop: the next agent (or the end of the chain, or the transfer failing), or for a trunk
    /// the outbound call failing with `trunk_media`.
    pub(super) fn b_media_refused(
        &mut self,
        ctx: &mut Ctx<'_>,
        id: CallId,
        e: SdpRefused,
        answered: Option<(BLeg, &Message)>,
    ) {
        let outcome = HopOutcome::MediaRefused(e.detail.clone());
        let Some(call) = self.calls.get_mut(&id) else { return };
        tracing::info!(call = %call.record.id, error = %e, "the leg's SDP answer was refused: leg ended");
        let to_trunk = match answered {
            None => {
                let to_trunk = call
                    .phase
                    .ringing_mut()
                    .is_some_and(|b| matches!(b.target, LegTarget::Trunk));
                self.abandon_agent_leg(ctx, id, outcome);
                to_trunk
            }
            Some((b, resp)) => {
                call.end_hop(b.hop, resp.status(), outcome, ctx.wall_ms);
                let to_trunk = matches!(b.target, LegTarget::Trunk);
                self.forget_leg(b.invite_call_id());
                if let Some(agent_id) = b.agent_id() {
                    let agent_id = agent_id.to_owned();
                    self.release_agent(&agent_id);
                }
                self.ack_and_bye(ctx, &Self::orphan_of(b), resp);
                to_trunk
            }
        };
        if to_trunk {
            let why = format!("the trunk's SDP answer was refused: {}", e.detail);
            self.fail_outbound(ctx, id, CallStatus::Failed, error("trunk_media", why), e.status);
        } else {
            self.next_hop(ctx, id);
        }
    }

    /// Gives up on the current agent leg without ending the call.
    pub(super) fn abandon_agent_leg(&mut self, ctx: &mut Ctx<'_>, id: CallId, why: HopOutcome) {
        let Some(call) = self.calls.get_mut(&id) else { return };
        let Some(b) = call.phase.take_ringing() else { return };
        call.end_hop(b.hop, None, why, ctx.wall_ms);
        self.forget_leg(b.invite_call_id());
        if let Some(agent_id) = b.agent_id() {
            let agent_id = agent_id.to_owned();
            self.release_agent(&agent_id);
        }
        if b.provisional {
            // RFC 3261 9.1: CANCEL only once a provisional answer came.
            if let Ok(m) = cancel_message_for(&b.invite) {
                if let Ok(k) = ctx.tx.send_request(ctx.now, b.peer, m) {
                    self.by_client.insert(k, ClientRef::Fire);
                }
            }
        }
        self.orphan(b);
    }
}
