//! Cluster-wide limits, machine side (`[cluster] redis_url`): an agent's `max_concurrent_calls` and a
//! trunk's calls per second are counted across every node, in Redis. The call machine stays sans-IO, as
//! with DNS ([`crate::call::ResolveJob`]): it queues a [`LimitJob`], the driver runs the Redis script off
//! the engine (or answers from the per-node fallback when Redis is unreachable or slow) and hands the
//! [`LimitAnswer`] back to [`CallController::on_limit`]. Without `[cluster]` no job is ever queued and
//! every limit is decided in place, as on a single node.

use std::sync::Arc;
use std::time::Duration;

use edge_contract::{AgentRefusal, PacingRefusal};
use edge_store::{AgentRecord, CallStatus, Route};
use sip_core::transaction::Peer;

use crate::call::context::{Ctx, MetricUpdate};
use crate::call::outbound::error;
use crate::call::outcome::{HopOutcome, Unavailable};
use crate::call::pacing::Slot;
use crate::call::registry::CallController;
use crate::call::state::CallId;

/// A question for the cluster.
#[derive(Debug, Clone)]
pub enum LimitJob {
    /// May this agent take one more call across the cluster?
    Agent(AgentAsk),
    /// May this agent place one more call of its own (its INVITE, or `POST /v1/calls`) across the cluster?
    Outbound(OutboundAsk),
    /// A slot on the trunk's pacing line shared by every node.
    Pace(PaceAsk),
    /// This node's count of calls on the agent changed (a call ended, or was taken without asking):
    /// publish it. Not answered.
    Sync { agent_id: String },
}

/// A hop waiting for the cluster's word before its INVITE goes out.
#[derive(Debug, Clone)]
pub struct AgentAsk {
    call: CallId,
    generation: u32,
    pub agent: Arc<AgentRecord>,
    peer: Peer,
    route: Route,
}

/// An agent's own outbound call waiting for the cluster's word before it takes its pacing slot.
#[derive(Debug, Clone)]
pub struct OutboundAsk {
    call: CallId,
    generation: u32,
    pub agent: Arc<AgentRecord>,
}

/// An outbound call (or transfer to a number) waiting for its pacing slot.
#[derive(Debug, Clone)]
pub struct PaceAsk {
    call: CallId,
    generation: u32,
    /// The pacing line ([`crate::call::trunk::TrunkChoice::pacing_key`]).
    pub trunk: String,
    pub cps: f64,
}

/// The cluster's (or the fallback's) answer.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum LimitAnswer {
    /// The agent may ring; the driver has already counted the call on this node's [`crate::call::AgentSlots`].
    Granted,
    /// The agent is at its limit across the cluster.
    AtLimit,
    /// The INVITE may go after this wait.
    PaceIn(Duration),
    /// The shared line is longer than `max_pacing_wait`: refuse, naming the wait.
    PaceRefused(Duration),
}

impl CallController {
    /// Limits are counted across the cluster from now on: hops and pacing slots are asked for with
    /// [`LimitJob`]s ([`Self::poll_limit`]).
    pub fn use_cluster_limits(&mut self) {
        self.cluster_limits = true;
    }

    /// The next question for the cluster, for the driver.
    pub fn poll_limit(&mut self) -> Option<LimitJob> {
        self.limit_jobs.pop_front()
    }

    /// Asks the cluster before ringing `agent` (or rings at once without `[cluster]`). True when the hop is
    /// under way (or waiting for the answer); false when it could not start (the caller moves on).
    pub(super) fn start_agent_leg(
        &mut self,
        ctx: &mut Ctx<'_>,
        id: CallId,
        agent: Arc<AgentRecord>,
        peer: Peer,
        route: Route,
    ) -> bool {
        if !self.cluster_limits {
            return self.send_agent_leg(ctx, id, agent, peer, route);
        }
        let Some(call) = self.calls.get(&id) else { return false };
        self.limit_jobs.push_back(LimitJob::Agent(AgentAsk {
            call: id,
            generation: call.generation,
            agent,
            peer,
            route,
        }));
        true
    }

    /// Publishes this node's count for the agent (after a change made without asking the cluster).
    pub(super) fn sync_agent(&mut self, agent_id: &str) {
        if self.cluster_limits {
            self.limit_jobs.push_back(LimitJob::Sync {
                agent_id: agent_id.to_owned(),
            });
        }
    }

    /// Asks the cluster whether the agent may place this outbound call before it dials; false without
    /// `[cluster]` (the caller then counts the call on this node, as it already did).
    pub(super) fn ask_outbound(&mut self, id: CallId, agent: Arc<AgentRecord>) -> bool {
        if !self.cluster_limits {
            return false;
        }
        let Some(call) = self.calls.get(&id) else { return true };
        self.limit_jobs.push_back(LimitJob::Outbound(OutboundAsk {
            call: id,
            generation: call.generation,
            agent,
        }));
        true
    }

    /// Asks the cluster for a pacing slot on the call's trunk; false without `[cluster]` (the caller then
    /// takes a slot on this node's line).
    pub(super) fn ask_pace(&mut self, id: CallId) -> bool {
        if !self.cluster_limits {
            return false;
        }
        let Some(call) = self.calls.get(&id) else { return true };
        let Some(plan) = call.out.as_ref() else { return true };
        self.limit_jobs.push_back(LimitJob::Pace(PaceAsk {
            call: id,
            generation: call.generation,
            trunk: plan.trunk.pacing_key(),
            cps: plan.trunk.cps,
        }));
        true
    }

    /// The cluster's answer to a [`LimitJob`].
    pub fn on_limit(&mut self, ctx: &mut Ctx<'_>, job: LimitJob, answer: LimitAnswer) {
        match job {
            LimitJob::Agent(ask) => self.agent_answer(ctx, ask, answer),
            LimitJob::Outbound(ask) => self.outbound_answer(ctx, ask, answer),
            LimitJob::Pace(ask) => self.pace_answer(ctx, ask, answer),
            LimitJob::Sync { .. } => {}
        }
    }

    fn agent_answer(&mut self, ctx: &mut Ctx<'_>, ask: AgentAsk, answer: LimitAnswer) {
        let granted = answer == LimitAnswer::Granted;
        if granted {
            // The driver counted the call; `send_agent_leg` counts it again (its one place for that).
            self.agent_slots.release(&ask.agent.id);
        }
        let current = self
            .calls
            .get(&ask.call)
            .is_some_and(|c| c.generation == ask.generation);
        if !current {
            // The call ended (or moved on) while the cluster was asked: give the slot back.
            if granted {
                self.sync_agent(&ask.agent.id);
            }
            return;
        }
        if granted {
            let sent = self.send_agent_leg(ctx, ask.call, ask.agent.clone(), ask.peer, ask.route);
            // Either way the count moved under the driver's feet: publish where it is now.
            self.sync_agent(&ask.agent.id);
            if sent {
                return;
            }
        } else if let Some(call) = self.calls.get_mut(&ask.call) {
            let outcome = HopOutcome::Unavailable(Unavailable::AtLimit(ask.agent.max_concurrent_calls));
            let now = ctx.wall_ms;
            call.push_hop(ask.route, Some(ask.agent.id.clone()), None, outcome, now, Some(now));
        }
        self.next_hop(ctx, ask.call);
    }

    /// Granted: the call holds the slot the driver counted and goes on to its pacing slot. At the limit:
    /// the same refusal as on one node (`486 Busy Here` to a calling agent; the record's error for an API
    /// call, which was answered `201` already).
    fn outbound_answer(&mut self, ctx: &mut Ctx<'_>, ask: OutboundAsk, answer: LimitAnswer) {
        let granted = answer == LimitAnswer::Granted;
        if self.calls.get(&ask.call).is_none_or(|c| c.generation != ask.generation) {
            // The call ended while the cluster was asked: give the slot back.
            if granted {
                self.agent_slots.release(&ask.agent.id);
                self.sync_agent(&ask.agent.id);
            }
            return;
        }
        if granted {
            self.hold_agent(ask.call, &ask.agent.id);
            self.sync_agent(&ask.agent.id);
            self.start_pacing(ctx, ask.call);
            return;
        }
        let refusal = AgentRefusal::AtCapacity {
            agent_id: ask.agent.id.clone(),
            max_concurrent_calls: ask.agent.max_concurrent_calls,
        };
        let e = error("agent_at_capacity", refusal.to_string());
        self.fail_outbound(ctx, ask.call, CallStatus::Failed, e, 486)
    }

    fn pace_answer(&mut self, ctx: &mut Ctx<'_>, ask: PaceAsk, answer: LimitAnswer) {
        if self.calls.get(&ask.call).is_none_or(|c| c.generation != ask.generation) {
            return;
        }
        match answer {
            LimitAnswer::PaceRefused(wait) => {
                self.metric(MetricUpdate::OutboundPacedOut);
                let refusal = PacingRefusal {
                    trunk: ask.trunk,
                    cps: ask.cps,
                    wait,
                    max_wait: self.cfg.outbound.max_pacing_wait,
                };
                let e = error("trunk_pacing", refusal.to_string());
                self.fail_outbound(ctx, ask.call, CallStatus::Failed, e, 503)
            }
            LimitAnswer::PaceIn(wait) if !wait.is_zero() => self.schedule(ctx, ask.call, Slot::At(ctx.now + wait)),
            _ => self.schedule(ctx, ask.call, Slot::Now),
        }
    }
}
