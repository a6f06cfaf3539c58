//! Which requests speak for a call: RFC 3261 12.2.2 dialog matching plus a rule on where they come from.
//!
//! A request inside a dialog must carry that dialog's whole id (Call-ID, our tag as To tag, the peer's tag
//! as From tag) *and* come from that leg's side:
//! * the carrier leg of an inbound call: an address in that carrier's `allow` list, or the address its
//!   INVITE came from (still the call's peer after a reload removed the carrier);
//! * an agent leg (the agent we rang, or the agent that called out): the agent's address, or any
//!   address of the agent network that address belongs to;
//! * a trunk leg: one of the addresses the trunk host resolved to, or any carrier's address (carriers
//!   answer and hang up from across their signalling ranges).
//!
//! Anything else is not ours: the endpoint answers 481 (or nothing, to an outsider under
//! `unknown_source = "drop"`) and the other leg never sees it. Knowing a Call-ID is not enough to end or
//! redirect a call.

use std::net::{IpAddr, SocketAddr};

use sip_core::headers::NameAddr;
use sip_core::message::Message;
use sip_core::transaction::TxKey;

use super::media::Side;
use super::registry::CallController;
use super::state::{Call, CallId, CallKind, LegTarget};
use crate::sip::endpoint::SourcePolicy;

impl CallController {
    /// True when `call_id` still names one of our calls' dialogs (either leg): for invariant checks (the
    /// fuzz target asserts none is left after shutdown).
    #[doc(hidden)]
    pub fn has_dialog(&self, call_id: &str) -> bool {
        self.by_dialog.contains_key(call_id)
    }

    /// Does an in-dialog request belong to one of our calls, by dialog id and by source?
    pub fn speaks_for_a_call(&self, req: &Message, source: SocketAddr, policy: &dyn SourcePolicy) -> bool {
        self.dialog_of(req, source, policy).is_some()
    }

    /// The call and side an in-dialog request belongs to, if its dialog id and source match a leg.
    pub(super) fn dialog_of(
        &self,
        req: &Message,
        source: SocketAddr,
        policy: &dyn SourcePolicy,
    ) -> Option<(CallId, Side)> {
        let (id, side) = *self.by_dialog.get(req.call_id().ok()?)?;
        let call = self.calls.get(&id)?;
        let dialog = match side {
            Side::A => &call.a.dialog,
            Side::B => call.phase.answered_leg()?.1,
        };
        let to_tag = req.to().ok()?.tag()?;
        let from_tag = req.from().ok()?.tag()?;
        if tag_of(&dialog.local)? != to_tag || tag_of(&dialog.remote)? != from_tag {
            return None;
        }
        leg_source_ok(call, side, source.ip(), policy).then_some((id, side))
    }

    /// The call a CANCEL aims at, judged before any transaction exists: its Call-ID and From tag are
    /// those of a call's incoming INVITE and it comes from that INVITE's side. (RFC 3261 9.2 matching
    /// by branch is the transaction layer's, after this.)
    pub fn cancel_target(&self, req: &Message, source: SocketAddr, policy: &dyn SourcePolicy) -> Option<CallId> {
        let (id, side) = *self.by_dialog.get(req.call_id().ok()?)?;
        let call = self.calls.get(&id)?;
        if side != Side::A || call.a.key.is_none() {
            return None;
        }
        let from_tag = req.from().ok()?.tag()?;
        if tag_of(&call.a.dialog.remote)? != from_tag {
            return None;
        }
        leg_source_ok(call, Side::A, source.ip(), policy).then_some(id)
    }

    /// May `source` cancel the INVITE of server transaction `invite_key`? Only from the INVITE's side.
    /// An INVITE that is no call (already refused) has nothing to protect.
    pub fn cancel_allowed(&self, invite_key: &TxKey, source: SocketAddr, policy: &dyn SourcePolicy) -> bool {
        match self.by_server_invite.get(invite_key).and_then(|id| self.calls.get(id)) {
            Some(call) => leg_source_ok(call, Side::A, source.ip(), policy),
            None => true,
        }
    }
}

/// The `tag` of a From/To header value as we keep it in a dialog.
fn tag_of(header: &str) -> Option<&str> {
    NameAddr::parse(header).ok()?.tag()
}

/// Does a request from `ip` come from the side of `call`'s leg `side`?
fn leg_source_ok(call: &Call, side: Side, ip: IpAddr, policy: &dyn SourcePolicy) -> bool {
    let at = |ip: IpAddr| SocketAddr::new(ip, 0);
    let agent = |peer: IpAddr| {
        ip == peer
            || policy
                .agent_network_for(at(ip))
                .is_some_and(|n| policy.agent_network_for(at(peer)).is_some_and(|m| m == n))
    };
    let trunk = || call.out.as_ref().is_some_and(|p| p.has_target(ip)) || policy.carrier_for(at(ip)).is_some();
    match side {
        Side::A => match call.kind {
            // The INVITE's own source too: a reload that removes its carrier leaves the call up (issue 21).
            CallKind::Inbound => {
                ip == call.a.peer.addr.ip() || policy.carrier_for(at(ip)).is_some_and(|c| *c == *call.record.carrier)
            }
            CallKind::AgentOutbound => agent(call.a.peer.addr.ip()),
            CallKind::ApiOutbound => trunk(),
        },
        Side::B => match call.phase.leg() {
            Some(b) => match b.target {
                LegTarget::Agent(_) => agent(b.peer.addr.ip()),
                LegTarget::Trunk => trunk(),
            },
            None => false,
        },
    }
}
