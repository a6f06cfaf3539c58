//! Outbound calls, read top to bottom: an agent's INVITE (or `POST /v1/calls`) -> who the agent is (trusted
//! network or digest) -> the From number must be one assigned to that agent -> trunk choice -> pacing slot ->
//! RFC 3263 resolution (done by the driver: DNS is IO) -> INVITE to the first target -> digest answer on
//! 401/407, next target on 503 or silence -> bridged like any other call, or failed with an error the user
//! can act on.
//!
//! An agent's call has the agent as leg A (our server transaction) and the trunk as leg B. An API call has
//! no caller: the trunk is dialled first as leg B; once it answers it becomes leg A and the agent is rung
//! as leg B with the dialled party's SDP, so both legs meet on the relay with the codec the trunk chose.
//!
//! Files: `agent.rs` (an agent's INVITE), `api.rs` (API calls), `dial.rs` (pacing, resolution, the trunk
//! INVITE and its failures); this file holds the trunk plan and the records and refusals they share.

use edge_contract::AgentRefusal;
use edge_store::{AgentRecord, AgentStatus, CallError, CallRecord, CallStatus, NumberRoute, Route};
use sip_core::digest::AuthSession;
use sip_core::message::{Message, Transport};
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::Ordering;
use std::sync::Arc;

use crate::call::context::Reject;
use crate::call::outcome::Direction;
use crate::call::registry::CallController;
use crate::call::state::CallId;
use crate::call::trunk::TrunkChoice;

mod agent;
mod api;
mod dial;

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
pub(in crate::call) struct OutboundPlan {
    pub(in crate::call) trunk: TrunkChoice,
    /// The dialled number, E.164.
    pub(in crate::call) dest: String,
    /// The agent placing the call (an API call rings it once the trunk answers).
    pub(in crate::call) agent: Arc<AgentRecord>,
    /// Resolved targets in RFC 3263 order; `next_target` indexes the one being tried.
    pub(in crate::call) targets: Vec<TrunkTarget>,
    pub(in crate::call) next_target: usize,
    /// Call-ID of every INVITE toward the trunk (resends and failover keep it).
    pub(in crate::call) call_id: String,
    pub(in crate::call) from_tag: String,
    pub(in crate::call) cseq: u32,
    pub(in crate::call) auth: Option<AuthSession>,
    /// Credentials to carry on the next INVITE (after a 401/407).
    pub(in crate::call) auth_headers: Vec<(&'static str, String)>,
    /// The last failure from a target, reported when every target failed.
    pub(in crate::call) last_failure: Option<(u16, Option<Message>)>,
    /// Why the last TLS handshake with a target failed (a certificate refused, ...): when no target
    /// answered, the call fails with this (`trunk_tls`) rather than with silence.
    pub(in crate::call) tls_failure: Option<String>,
    /// The caller ID to send when it is not the record's `from` (a transferred inbound call shows the
    /// call's own number, which the customer owns, not the original caller's).
    pub(in crate::call) caller_id: Option<String>,
    /// `Referred-By` of the REFER that made this a transfer's plan (RFC 3892), passed on to the trunk.
    pub(in crate::call) referred_by: Option<String>,
}

impl OutboundPlan {
    /// Is `ip` one of the addresses the trunk host resolved to? (Its in-dialog requests come from there.)
    pub(in crate::call) fn has_target(&self, ip: IpAddr) -> bool {
        self.targets.iter().any(|(a, _)| a.ip() == ip)
    }
}

pub(in crate::call) fn error(code: &str, message: impl Into<String>) -> CallError {
    CallError {
        code: code.into(),
        message: message.into(),
    }
}

/// A refusal to an agent: `code` with a Warning saying why.
pub(in crate::call) fn refuse(ctl: &CallController, code: u16, reason: &'static str, why: &str) -> Reject {
    ctl.stats.rejected.fetch_add(1, Ordering::Relaxed);
    Reject {
        code,
        reason,
        headers: vec![("Warning", ctl.warning(why))],
        why: None,
    }
}

/// The SIP answer an agent gets when its outbound call fails with `status` from the trunk.
pub(in crate::call) fn agent_code(status: u16) -> (u16, &'static str) {
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
        // Its media could not be used (a plain answer where SRTP is required).
        488 => (488, "Not Acceptable Here"),
        _ => (503, "Service Unavailable"),
    }
}

impl CallController {
    /// The agent counts this call against its `max_concurrent_calls` until the call ends (its slot was
    /// taken by `try_take` just before the call was created).
    pub(in crate::call) fn hold_agent(&mut self, id: CallId, agent_id: &str) {
        match self.calls.get_mut(&id) {
            Some(call) => call.held_agent = Some(agent_id.to_owned()),
            None => self.release_agent(agent_id),
        }
    }

    /// Active and below its limit, or why not.
    pub(in crate::call) fn agent_may_call(&self, agent: &AgentRecord) -> Result<(), AgentRefusal> {
        if agent.status != AgentStatus::Active {
            return Err(AgentRefusal::Disabled {
                agent_id: agent.id.clone(),
            });
        }
        if self.agent_load(&agent.id) >= agent.max_concurrent_calls {
            return Err(AgentRefusal::AtCapacity {
                agent_id: agent.id.clone(),
                max_concurrent_calls: agent.max_concurrent_calls,
            });
        }
        Ok(())
    }
}

/// The SIP answer to an agent's INVITE when the agent may not call now.
pub(in crate::call) fn refuse_agent(ctl: &CallController, e: &AgentRefusal) -> Reject {
    let (code, reason) = match e {
        AgentRefusal::Disabled { .. } => (403, "Forbidden"),
        AgentRefusal::AtCapacity { .. } => (486, "Busy Here"),
    };
    refuse(ctl, code, reason, &e.to_string())
}

pub(in crate::call) fn plan(
    trunk: TrunkChoice,
    dest: String,
    agent: Arc<AgentRecord>,
    call_id: String,
    from_tag: String,
) -> OutboundPlan {
    OutboundPlan {
        trunk,
        dest,
        agent,
        targets: Vec::new(),
        next_target: 0,
        call_id,
        from_tag,
        cseq: 1,
        auth: None,
        auth_headers: Vec::new(),
        last_failure: None,
        tls_failure: None,
        caller_id: None,
        referred_by: None,
    }
}

pub(in crate::call) fn outbound_record(
    node: &str,
    wall_ms: i64,
    number: &NumberRoute,
    agent: &AgentRecord,
    trunk: &TrunkChoice,
    dest: &str,
    sip_call_id: &str,
) -> CallRecord {
    CallRecord {
        // Minted by the caller (`CallController::new_record_id`, so that it hashes to the caller's shard).
        id: String::new(),
        account_id: number.account_id.clone(),
        direction: Direction::Outbound.as_str().into(),
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
        created_at_ms: wall_ms,
        answered_at_ms: None,
        ended_at_ms: None,
        error: None,
        node: Some(node.to_owned()),
    }
}
