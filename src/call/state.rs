//! One call's data: its legs (A answered by us or placed by us, B the agent or trunk we ring), what kind
//! of call it is, where it stands (its `Phase`, which holds the B leg), and the client transactions that
//! point back at it. The controller
//! (`registry.rs`) owns every `Call`; the direction modules (`inbound.rs`, `outbound/`, `voicemail.rs`)
//! move it from one state to the next.

use bytes::Bytes;
use edge_store::{AgentRecord, CallRecord, Hop, NumberRoute, Route};
use sip_core::message::{HeaderName, Message, Method};
use sip_core::transaction::{Peer, TxKey};
use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Instant;

use crate::call::leg::DialogSide;
use crate::call::media::{MediaRelay, SdpRefused, Side};
use crate::call::outcome::HopOutcome;
use crate::call::phase::Phase;
use crate::call::{leg, outbound};

pub(super) type CallId = u64;

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(super) enum TimerKind {
    /// No provisional answer from the agent in time.
    Setup,
    /// No final answer from the agent in time.
    Ring,
    /// Retransmit our 2xx to the carrier until its ACK.
    Retransmit2xx,
    /// 64*T1 after our 2xx: no ACK came, so the call is ended (RFC 3261 13.3.1.4). Its own timer, so the
    /// BYE leaves at 64*T1 and not at the next retransmission after it.
    AckTimeout,
    /// An outbound call's pacing slot on its trunk has come.
    Pace,
}

/// Why a client transaction exists.
#[derive(Debug)]
pub(super) enum ClientRef {
    /// The agent leg's INVITE of a live call.
    Invite(CallId),
    /// An agent INVITE we gave up on (timeout, caller cancel): a late 1xx gets a CANCEL, a late 2xx ACK + BYE.
    Orphan(Box<Orphan>),
    /// A request relayed from one side; its answer goes back on `server_key`.
    Relay {
        call: CallId,
        server_key: TxKey,
        request: Box<Message>,
        /// The side the request went to (and its answer comes from), for SDP anchoring.
        to_side: Side,
    },
    /// BYE or CANCEL we originated: nothing waits on the answer.
    Fire,
}

#[derive(Debug)]
pub(super) struct Orphan {
    pub(super) invite: Message,
    pub(super) peer: Peer,
    pub(super) provisional: bool,
    pub(super) local: String,
}

/// Who the call came from and so what its legs are.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum CallKind {
    /// A carrier's INVITE: A = carrier (server leg), B = agents in turn.
    Inbound,
    /// An agent's INVITE: A = agent (server leg), B = the trunk.
    AgentOutbound,
    /// `POST /v1/calls`: B = the trunk first; once it answers it becomes A and B = the agent.
    ApiOutbound,
}

/// Where a client leg goes.
pub(super) enum LegTarget {
    Agent(Arc<AgentRecord>),
    /// One attempt at one resolved trunk target.
    Trunk,
}

pub(super) struct ALeg {
    /// The INVITE that made this leg: the carrier's or agent's (server leg), or ours to the trunk (API calls).
    pub(super) invite: Message,
    /// Our server transaction for that INVITE; `None` when the edge placed the leg (API calls).
    pub(super) key: Option<TxKey>,
    pub(super) peer: Peer,
    pub(super) tag: String,
    pub(super) dialog: DialogSide,
}

pub(super) struct BLeg {
    pub(super) target: LegTarget,
    pub(super) route: Route,
    pub(super) invite: Message,
    pub(super) key: TxKey,
    pub(super) peer: Peer,
    pub(super) provisional: bool,
    pub(super) hop: usize,
}

pub(super) struct Call {
    pub(super) kind: CallKind,
    /// Where the call stands, with the B leg or voicemail of that stage (`phase.rs`).
    pub(super) phase: Phase,
    pub(super) number: Arc<NumberRoute>,
    /// Outbound calls: the trunk, its targets and the authentication state.
    pub(super) out: Option<Box<outbound::OutboundPlan>>,
    /// The agent an outbound call counts against (its `max_concurrent_calls`) for as long as it lasts.
    pub(super) held_agent: Option<String>,
    pub(super) a: ALeg,
    /// Remaining hops: agent ids with their route.
    pub(super) plan: VecDeque<(String, Route)>,
    /// Bumped on every hop so stale timers are ignored.
    pub(super) generation: u32,
    pub(super) record: CallRecord,
    /// How each of `record.hops` went, typed (the record holds the words): same length, same order.
    pub(super) hop_outcomes: Vec<HopOutcome>,
    /// When the carrier's INVITE was taken, for the setup-latency histogram.
    pub(super) created: Instant,
    /// The RTP relay anchoring this call's media (carrier side A, agent side B).
    pub(super) relay: Option<Box<dyn MediaRelay>>,
    /// The carrier's SDP offer rewritten to the relay's agent-side address.
    pub(super) b_offer: Option<Bytes>,
    /// The SDP answer leg A got in a response to its INVITE: the first is the answer (RFC 3261 13.2.1),
    /// so every later response repeats it, whichever agent sent it ([`answer_for_a`]).
    pub(super) a_answer: Option<Bytes>,
    /// The agent's transfer went on to the carrier (`inbound_routing.transfer = carrier`): the index of its
    /// hop. The carrier's BYE then ends the call as transferred.
    pub(super) carrier_transfer: Option<usize>,
    /// The record changed since it was last queued for the store (the id is in `CallController::dirty`).
    pub(super) dirty: bool,
}

impl Call {
    /// A call just taken, hunting for its B leg.
    pub(super) fn new(
        kind: CallKind,
        number: Arc<NumberRoute>,
        a: ALeg,
        record: CallRecord,
        now: std::time::Instant,
    ) -> Call {
        Call {
            kind,
            phase: Phase::Hunting(None),
            number,
            out: None,
            held_agent: None,
            a,
            plan: VecDeque::new(),
            generation: 0,
            record,
            hop_outcomes: Vec::new(),
            created: now,
            relay: None,
            b_offer: None,
            a_answer: None,
            carrier_transfer: None,
            dirty: false,
        }
    }
}

impl Call {
    /// Starts a hop: its row in the record and its typed outcome, side by side. Returns its index.
    pub(super) fn push_hop(
        &mut self,
        route: Route,
        agent_id: Option<String>,
        status: Option<u16>,
        outcome: HopOutcome,
        started_at_ms: i64,
        ended_at_ms: Option<i64>,
    ) -> usize {
        let index = self.record.hops.len();
        self.record.hops.push(Hop {
            route,
            agent_id,
            target: None,
            sip_status: status,
            outcome: outcome.to_string(),
            started_at_ms,
            ended_at_ms,
        });
        self.hop_outcomes.push(outcome);
        index
    }

    /// While a transfer is under way, hop `index` is its leg: the record shows the transfer's target on it.
    pub(super) fn mark_transfer_hop(&mut self, index: usize) {
        let Some(t) = self.phase.transfer_mut() else { return };
        t.has_hop = true;
        let target = t.target.label();
        if let Some(h) = self.record.hops.get_mut(index) {
            h.target = Some(target);
        }
    }

    /// Hop `index` is over: how, with the SIP status when one came (else the one it had is kept).
    pub(super) fn end_hop(&mut self, index: usize, status: Option<u16>, outcome: HopOutcome, wall_ms: i64) {
        if let Some(h) = self.record.hops.get_mut(index) {
            if status.is_some() {
                h.sip_status = status;
            }
            h.outcome = outcome.to_string();
            h.ended_at_ms = Some(wall_ms);
        }
        if let Some(o) = self.hop_outcomes.get_mut(index) {
            *o = outcome;
        }
    }
}

impl ALeg {
    /// The leg of a caller whose INVITE we answer (a carrier's, an agent's): our tag, its dialog as UAS.
    pub(super) fn server(invite: Message, key: TxKey, peer: Peer, tag: String) -> ALeg {
        let dialog = DialogSide {
            transport: leg::via_transport(peer.transport),
            call_id: invite.call_id().unwrap_or("").to_owned(),
            local: format!("{};tag={tag}", invite.header(&HeaderName::To).unwrap_or("").trim()),
            remote: invite.header(&HeaderName::From).unwrap_or("").trim().to_owned(),
            remote_target: leg::contact_uri(&invite).unwrap_or_else(|| format!("sip:{}", peer.addr)),
            route_set: leg::uas_route_set(&invite),
            local_cseq: 0,
        };
        ALeg {
            invite,
            key: Some(key),
            peer,
            tag,
            dialog,
        }
    }
}

impl BLeg {
    pub(super) fn invite_call_id(&self) -> Option<String> {
        self.invite.call_id().ok().map(str::to_owned)
    }

    /// The agent this leg rings, if it goes to an agent.
    pub(super) fn agent_id(&self) -> Option<&str> {
        match &self.target {
            LegTarget::Agent(a) => Some(&a.id),
            LegTarget::Trunk => None,
        }
    }
}

/// Our side of the agent's dialog from its 2xx: its To (with tag), Contact and Record-Route.
pub(super) fn dialog_from_answer(local_from: &str, call_id: &str, resp: &Message, peer: Peer) -> DialogSide {
    DialogSide {
        transport: leg::via_transport(peer.transport),
        call_id: call_id.to_owned(),
        local: local_from.trim().to_owned(),
        remote: resp.header(&HeaderName::To).unwrap_or("").trim().to_owned(),
        remote_target: leg::contact_uri(resp).unwrap_or_else(|| format!("sip:{}", peer.addr)),
        route_set: leg::uac_route_set(resp),
        local_cseq: 1,
    }
}

/// The SDP of `msg` (sent by `from`) rewritten by the call's relay; `None` passes the body through
/// (no relay, no body, or a body that is not SDP: a NOTIFY's sipfrag, an INFO's DTMF).
pub(super) fn anchor(relay: Option<&dyn MediaRelay>, from: Side, msg: &Message) -> Option<Bytes> {
    match try_anchor(relay, from, msg) {
        Ok(sdp) => sdp,
        Err(e) => {
            // Never leak the other leg's addresses: drop the body rather than pass it through.
            tracing::warn!(call_id = msg.call_id().unwrap_or("-"), error = %e, "SDP not anchored; body dropped");
            Some(Bytes::new())
        }
    }
}

/// [`anchor`], with the relay's refusal (a plain answer from a `srtp_required` leg, an answer with no
/// codec in common) given back, for a caller that fails the leg on it rather than relay an empty body.
pub(super) fn try_anchor(
    relay: Option<&dyn MediaRelay>,
    from: Side,
    msg: &Message,
) -> Result<Option<Bytes>, SdpRefused> {
    let Some((relay, sdp)) = sdp_for_relay(relay, msg) else {
        return Ok(None);
    };
    // A request's SDP is an offer (an ACK's, the answer to a 2xx's offer); a response's an answer.
    let offer = msg.is_request() && !matches!(msg.method(), Some(Method::Ack));
    relay.anchor_sdp(from, sdp, offer).map(Some)
}

/// The relay and `msg`'s SDP, when there is a relay and the body is SDP.
fn sdp_for_relay<'a>(relay: Option<&'a dyn MediaRelay>, msg: &'a Message) -> Option<(&'a dyn MediaRelay, &'a [u8])> {
    let relay = relay?;
    if msg.body().is_empty() {
        return None;
    }
    let sdp = msg.content_type().is_none_or(|t| {
        t.split(';')
            .next()
            .is_some_and(|m| m.trim().eq_ignore_ascii_case("application/sdp"))
    });
    sdp.then_some((relay, msg.body()))
}

/// The relay takes `msg`'s SDP (sent by `from`'s new peer) without a body for the other side, which keeps
/// the session it has ([`MediaRelay::keep_answer`]). `Ok(true)` when there was SDP and the relay took it;
/// `Err` when the relay refused it (the new peer's media cannot be used: its leg is a failed one).
pub(super) fn keep_answer(relay: Option<&dyn MediaRelay>, from: Side, msg: &Message) -> Result<bool, SdpRefused> {
    let Some((relay, sdp)) = sdp_for_relay(relay, msg) else {
        return Ok(false);
    };
    relay.keep_answer(from, sdp).map(|()| true)
}

/// Early media from `from`'s new peer (a transfer target's 18x), for the relay: `Ok(true)` when taken (the
/// caller hears it), `Ok(false)` when there was no SDP or the relay keeps the current peer's keys until
/// the new one answers ([`MediaRelay::early_media`]).
pub(super) fn early_media(relay: Option<&dyn MediaRelay>, from: Side, msg: &Message) -> Result<bool, SdpRefused> {
    let Some((relay, sdp)) = sdp_for_relay(relay, msg) else {
        return Ok(false);
    };
    relay.early_media(from, sdp)
}

/// The SDP for a response to leg A's INVITE that relays `msg` (from leg B): the first anchored answer is
/// the one A keeps; any later SDP (a fallback agent's after the first agent's 183) goes to the relay only
/// and A gets its answer again, with the relay converting G.711 law where the agents chose differently.
/// `Err`: the relay refused B's SDP, so B's leg cannot carry the call (A is told nothing of it).
pub(super) fn answer_for_a(call: &mut Call, msg: &Message) -> Result<Option<Bytes>, SdpRefused> {
    if let Some(kept) = &call.a_answer {
        return Ok(keep_answer(call.relay.as_deref(), Side::B, msg)?.then(|| kept.clone()));
    }
    let sdp = try_anchor(call.relay.as_deref(), Side::B, msg)?;
    call.a_answer = sdp.clone().filter(|s| !s.is_empty());
    Ok(sdp)
}
