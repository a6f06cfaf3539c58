//! Calls placed through the API (`POST /v1/calls`): the trunk is dialled first; once the called party
//! answers, its dialog becomes leg A and the agent is rung as leg B. `DELETE /v1/calls/{id}` hangs up.

use edge_contract::{AgentRefusal, NumberField, OriginateRefusal, OriginateRequest};
use edge_store::{CallRecord, CallStatus, Route};
use sip_core::message::{HeaderName, Message, Transport};
use sip_core::transaction::Peer;
use std::net::{IpAddr, SocketAddr};

use crate::call::context::{Ctx, MetricUpdate};
use crate::call::leg::DialogSide;
use crate::call::media::Side;
use crate::call::outbound::dial::build_trunk_invite;
use crate::call::outbound::{error, outbound_record, plan};
use crate::call::outcome::{Abandon, Ending, HopOutcome};
use crate::call::phase::Phase;
use crate::call::registry::CallController;
use crate::call::state::{try_anchor, ALeg, BLeg, Call, CallId, CallKind};
use crate::call::trunk;

/// The `Reason` of the BYEs of `DELETE /v1/calls/{id}`.
const BY_API: &str = "SIP;cause=200;text=\"hung up through the API\"";

impl CallController {
    /// `POST /v1/calls`: the trunk is dialled first; the agent is rung once the called party answers.
    pub fn originate(&mut self, ctx: &mut Ctx<'_>, req: OriginateRequest) -> Result<CallRecord, OriginateRefusal> {
        let agent = self
            .index
            .agent(&req.agent_id)
            .filter(|a| a.account_id == req.account_id)
            .ok_or_else(|| OriginateRefusal::AgentNotFound {
                agent_id: req.agent_id.clone(),
            })?;
        let not_a_number = |field, input: &str, reason| OriginateRefusal::NotANumber {
            field,
            input: input.to_owned(),
            reason,
        };
        let caller_id =
            sip_core::e164::normalize(&req.from, None).map_err(|e| not_a_number(NumberField::From, &req.from, e))?;
        let dest = sip_core::e164::normalize(&req.to, None).map_err(|e| not_a_number(NumberField::To, &req.to, e))?;
        let number = self
            .index
            .lookup_number(&caller_id)
            .filter(|n| n.account_id == req.account_id)
            .ok_or_else(|| OriginateRefusal::NotAccountNumber {
                number: caller_id.clone(),
            })?;
        if number.agent_id != agent.id {
            return Err(OriginateRefusal::AnotherAgentsNumber {
                number: caller_id,
                assigned_to: number.agent_id.clone(),
                agent_id: agent.id.clone(),
            });
        }
        self.agent_may_call(&agent)?;
        let trunk = trunk::choose(&number, &self.index, &self.cfg.outbound)?;
        let fault = |reason: String| OriginateRefusal::EngineFault { reason };
        // A line too long is refused now, not after a 201: the client can retry later.
        // Under `[cluster]` the line is the cluster's: asked once the call exists (a refusal then fails it).
        let slot = match self.cluster_limits {
            true => None,
            false => Some(self.take_slot(ctx.now, &trunk)?),
        };
        let record_id = self.new_record_id(ctx.wall_ms);
        let leg_call_id = self.new_leg_call_id();
        let Some(media) = &self.media else {
            return Err(OriginateRefusal::MediaDisabled);
        };
        let mut record = outbound_record(&self.cfg.node, ctx.wall_ms, &number, &agent, &trunk, &dest, "");
        record.id = record_id;
        let relay = media
            .allocate_relay(&record.id)
            .map_err(|e| OriginateRefusal::NoMediaPorts { reason: e.to_string() })?;
        // SRTP toward the trunk as its `provider_config.media_encryption` says.
        relay.set_encryption(
            Side::A,
            crate::call::media::encryption_of(trunk.media_encryption),
            false,
        );
        let offer = relay.offer_sdp(Side::A);
        let plan = plan(trunk, dest, agent.clone(), leg_call_id, self.rng.token());
        record.sip_call_id = plan.call_id.clone();
        let invite = build_trunk_invite(
            &self.cfg.local,
            &record,
            &plan,
            Some(&offer),
            &self.cfg.warn_agent,
            Transport::Udp,
            &self.rng.branch(),
        )
        .map_err(|e| fault(format!("could not build the INVITE: {e}")))?;
        let a_dialog = DialogSide {
            transport: "UDP",
            call_id: plan.call_id.clone(),
            local: invite.header(&HeaderName::From).unwrap_or("").to_owned(),
            remote: invite.header(&HeaderName::To).unwrap_or("").to_owned(),
            remote_target: invite.request_uri_raw().unwrap_or("").to_owned(),
            route_set: Vec::new(),
            local_cseq: 1,
        };
        // Checked and counted at once (`agent_may_call` above only looked): another shard may have taken
        // the agent's last slot meanwhile.
        // Under `[cluster]` the cluster is asked instead, once the call exists (`ask_outbound` below).
        let counted = !self.cluster_limits;
        if counted && !self.agent_slots.try_take(&agent.id, agent.max_concurrent_calls) {
            return Err(OriginateRefusal::Agent(AgentRefusal::AtCapacity {
                agent_id: agent.id.clone(),
                max_concurrent_calls: agent.max_concurrent_calls,
            }));
        }
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
        ));
        let Some(call) = self.calls.get_mut(&id) else {
            if counted {
                self.agent_slots.release(&agent.id);
            }
            return Err(fault("call vanished".into()));
        };
        call.relay = Some(relay);
        call.b_offer = Some(offer);
        call.out = Some(Box::new(plan));
        let record = call.record.clone();
        // The agent is kept for this call from now: a call that the dialled party answers must find it free.
        self.persist(ctx.now, id);
        if self.ask_outbound(id, agent.clone()) {
            // Under `[cluster]` the answer holds the agent and asks for the pacing slot.
            return Ok(record);
        }
        self.hold_agent(id, &agent.id);
        match slot {
            Some(slot) => self.schedule(ctx, id, slot),
            None => self.start_pacing(ctx, id),
        }
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
        let abandon = Abandon::HungUpThroughApi;
        let status = match &call.phase {
            Phase::Hunting(_) => {
                self.abandon_agent_leg(ctx, id, HopOutcome::Abandoned(abandon));
                self.fail_a(ctx, id, 487, "Request Terminated", &[]);
                CallStatus::Canceled
            }
            Phase::Connecting(_) => {
                self.abandon_agent_leg(ctx, id, HopOutcome::Abandoned(abandon));
                self.send_bye_a(ctx, id, Some(BY_API));
                CallStatus::Completed
            }
            Phase::Transferring { .. } | Phase::AwaitingAck { .. } | Phase::Confirmed { .. } => {
                if call.phase.is_transferring() {
                    self.abandon_agent_leg(ctx, id, HopOutcome::Abandoned(abandon));
                }
                self.hang_up_other(ctx, id, Side::A, Some(BY_API));
                self.send_bye_a(ctx, id, Some(BY_API));
                CallStatus::Completed
            }
        };
        self.finish_keeping(ctx, id, status, Ending::HungUpThroughApi, true)
    }

    /// An API call's dialled party answered: its dialog becomes leg A and the agent is rung with its SDP.
    pub(in crate::call) fn api_trunk_answered(
        &mut self,
        ctx: &mut Ctx<'_>,
        id: CallId,
        b: BLeg,
        dialog: DialogSide,
        resp: &Message,
    ) {
        let Some(call) = self.calls.get_mut(&id) else { return };
        call.phase.connecting();
        // The trunk's answer is side A's media; rewritten, it is the offer the agent gets (SRTP or plain as
        // the agent's `media_encryption` says).
        if let (Some(relay), Some(plan)) = (call.relay.as_deref(), call.out.as_ref()) {
            relay.set_encryption(
                Side::B,
                crate::call::media::encryption_of(plan.agent.media_encryption),
                true,
            );
        }
        let offer = try_anchor(call.relay.as_deref(), Side::A, resp);
        self.by_dialog.insert(dialog.call_id.clone(), (id, Side::A));
        call.a.dialog = dialog;
        call.a.peer = b.peer;
        call.a.invite = b.invite;
        call.b_offer = match offer {
            Ok(sdp) => sdp,
            Err(e) => {
                // A plain answer from a `srtp_required` trunk (or one with nothing usable): no agent gets a
                // call without media; the dialled party is hung up on and the call fails saying why.
                let why = format!("the trunk's SDP answer was refused: {}", e.detail);
                call.record.error = Some(error("trunk_media", why.clone()));
                self.metric(MetricUpdate::OutboundFailed {
                    code: "trunk_media".into(),
                });
                self.send_bye_a(ctx, id, Some("SIP;cause=488;text=\"media refused\""));
                return self.finish(ctx, id, CallStatus::Failed, Ending::OutboundFailed(why));
            }
        };
        call.record.status = CallStatus::InProgress;
        call.record.answered_by = Some(Route::Trunk);
        call.record.answered_at_ms = Some(ctx.wall_ms);
        if let Some(plan) = &call.out {
            call.plan.push_back((plan.agent.id.clone(), Route::Primary));
        }
        let answered = ctx.now.duration_since(call.created).as_secs_f64();
        // The agent leg counts the agent from here on (and checks its limit without this call's hold).
        if let Some(held) = call.held_agent.take() {
            self.release_agent(&held);
        }
        self.metric(MetricUpdate::OutboundAnswerSeconds(answered));
        self.persist(ctx.now, id);
        self.next_hop(ctx, id);
    }

    /// An API call's agent could not take the answered call: the dialled party is hung up on.
    pub(in crate::call) fn api_agent_unavailable(&mut self, ctx: &mut Ctx<'_>, id: CallId) {
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
        self.send_bye_a(ctx, id, Some("SIP;cause=480;text=\"agent unavailable\""));
        self.finish(ctx, id, CallStatus::Failed, Ending::AgentUnavailable);
    }
}
