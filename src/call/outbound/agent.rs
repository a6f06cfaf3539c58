//! An agent's INVITE to a phone number: who the agent is (trusted network or digest) -> the From number must
//! be one assigned to that agent -> where to -> which trunk -> pacing (`dial.rs`).

use sip_core::message::Message;
use sip_core::transaction::{Peer, TxKey};

use crate::call::context::{Ctx, Reject};
use crate::call::media::Side;
use crate::call::outbound::{outbound_record, plan, refuse, refuse_agent, AgentOrigin};
use crate::call::registry::{note_trace_leg, CallController};
use crate::call::state::{ALeg, Call, CallKind};
use crate::call::trunk;

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
        self.agent_may_call(&agent).map_err(|e| refuse_agent(self, &e))?;
        // 3. Where to.
        let dest = crate::call::dialed::dialed_number(&invite, self.cfg.default_country_code.as_deref())
            .map_err(|e| refuse(self, 484, "Address Incomplete", &e.to_string()))?;
        // 4. Which trunk.
        let trunk = trunk::choose(&number, &self.index, &self.cfg.outbound)
            .map_err(|e| refuse(self, 503, "Service Unavailable", &e.to_string()))?;
        let mut record = outbound_record(
            &self.cfg.node,
            ctx.wall_ms,
            &number,
            &agent,
            &trunk,
            &dest,
            invite.call_id().unwrap_or(""),
        );
        record.id = self.new_record_id(ctx.wall_ms);
        // SRTP: the agent's policy on its own leg (a plain offer from a `srtp_required` agent is a 488), the
        // trunk's toward the trunk.
        let encryption = [
            crate::call::media::encryption_of(agent.media_encryption),
            crate::call::media::encryption_of(trunk.media_encryption),
        ];
        let (relay, b_offer) = self.anchor_offer(&record.id, &invite, encryption)?;
        // Checked and counted at once (`agent_may_call` above only looked): another shard may have taken
        // the agent's last slot meanwhile.
        // Under `[cluster]` the cluster is asked instead, once the call exists (`ask_outbound` below).
        if !self.cluster_limits && !self.agent_slots.try_take(&agent.id, agent.max_concurrent_calls) {
            let e = edge_contract::AgentRefusal::AtCapacity {
                agent_id: agent.id.clone(),
                max_concurrent_calls: agent.max_concurrent_calls,
            };
            return Err(refuse_agent(self, &e));
        }
        tracing::debug!(call = %record.id, agent = %agent.id, to = %dest, trunk = %trunk.address.host, "outbound call from an agent");
        let a_call_id = invite.call_id().unwrap_or("").to_owned();
        let tag = self.rng.token();
        let id = self.new_call(Call::new(
            CallKind::AgentOutbound,
            number,
            ALeg::server(invite, key.clone(), peer, tag),
            record,
            ctx.now,
        ));
        self.by_server_invite.insert(key, id);
        if let Some(c) = self.calls.get(&id) {
            note_trace_leg(&mut self.trace_legs, &a_call_id, &c.record.id, "agent".into());
        }
        self.by_dialog.insert(a_call_id, (id, Side::A));
        let leg_call_id = self.new_leg_call_id();
        if let Some(call) = self.calls.get_mut(&id) {
            call.relay = relay;
            call.b_offer = b_offer;
            call.out = Some(Box::new(plan(
                trunk,
                dest,
                agent.clone(),
                leg_call_id,
                self.rng.token(),
            )));
        }
        self.persist(ctx.now, id);
        if !self.ask_outbound(id, agent.clone()) {
            self.hold_agent(id, &agent.id);
            self.start_pacing(ctx, id);
        }
        Ok(())
    }
}
