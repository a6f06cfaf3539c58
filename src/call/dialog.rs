//! Requests inside a call's dialogs: the carrier's ACK and CANCEL, BYE from either side, everything else
//! (re-INVITE, UPDATE, INFO) relayed to the other side with its SDP anchored; BYEs we send.

use edge_store::CallStatus;
use sip_core::build::ResponseBuilder;
use sip_core::message::{Message, Method};
use sip_core::transaction::{Peer, TxKey};
use std::net::SocketAddr;

use crate::call::context::Ctx;
use crate::call::leg;
use crate::call::leg::DialogSide;
use crate::call::media::Side;
use crate::call::outcome::{Abandon, Ending, HopOutcome};
use crate::call::registry::CallController;
use crate::call::state::{anchor, CallId, ClientRef};

impl CallController {
    /// The carrier's ACK for our 2xx (or an ACK in an agent dialog): only from that dialog and its side.
    pub fn on_ack(&mut self, msg: &Message, source: SocketAddr, policy: &dyn crate::sip::endpoint::SourcePolicy) {
        let Some((id, side)) = self.dialog_of(msg, source, policy) else {
            return;
        };
        if side != Side::A {
            return;
        }
        if let Some(call) = self.calls.get_mut(&id) {
            if call.phase.acknowledged() {
                call.generation += 1; // stops 2xx retransmission and the ACK time-out
            }
        }
    }

    /// The carrier cancelled its INVITE (the CANCEL itself was answered 200 by the endpoint).
    pub fn on_cancel(&mut self, ctx: &mut Ctx<'_>, invite_key: &TxKey) {
        let Some(id) = self.by_server_invite.get(invite_key).copied() else {
            return;
        };
        let Some(call) = self.calls.get(&id) else { return };
        if !call.phase.is_hunting() {
            return; // already answered: the CANCEL has no effect (RFC 3261 9.2)
        }
        self.abandon_agent_leg(ctx, id, HopOutcome::Abandoned(Abandon::CallerCanceled));
        self.fail_a(ctx, id, 487, "Request Terminated", &[]);
        self.finish(ctx, id, CallStatus::Canceled, Ending::CallerCanceled);
    }

    /// A request inside a dialog we hold; false when no dialog matches it, by id and by source (the
    /// endpoint answers 481 and the other leg never sees it).
    pub fn on_in_dialog(
        &mut self,
        ctx: &mut Ctx<'_>,
        key: TxKey,
        req: Message,
        source: SocketAddr,
        policy: &dyn crate::sip::endpoint::SourcePolicy,
    ) -> bool {
        let Some((id, side)) = self.dialog_of(&req, source, policy) else {
            return false;
        };
        let method = req.method().cloned().unwrap_or(Method::Options);
        let local = self.cfg.local.clone();
        let Some(call) = self.calls.get_mut(&id) else {
            return false;
        };
        if method == Method::Refer {
            // Judged by `on_refer` in every phase: a caller's REFER, in voicemail too, is refused there.
            self.on_refer(ctx, id, side, key, &req);
            return true;
        }
        if side == Side::A && call.phase.voicemail_sdp().is_some() {
            return self.in_voicemail(ctx, id, key, &req, &method);
        }
        // The other side's dialog must exist: on B only once the agent answered.
        if call.phase.answered_leg().is_none() {
            // An API call's dialled party may hang up while its agent still rings.
            if side == Side::A && call.phase.is_connecting() && method == Method::Bye {
                let ok = ResponseBuilder::for_request(&req, 200, "OK")
                    .header_unless_empty("Server", &local.server_name)
                    .build_message();
                ctx.respond(&key, ok, "200 to BYE");
                self.abandon_agent_leg(ctx, id, HopOutcome::Abandoned(Abandon::CalledPartyHungUp));
                self.finish(ctx, id, CallStatus::Completed, Ending::CalledPartyHungUpEarly);
                return true;
            }
            return false;
        }
        if method == Method::Bye && side == Side::B && call.phase.is_transferring() {
            // A blind transferor hangs up once its transfer is under way: the caller waits for the target.
            let ok = ResponseBuilder::for_request(&req, 200, "OK")
                .header_unless_empty("Server", &local.server_name)
                .build_message();
            ctx.respond(&key, ok, "200 to BYE");
            self.agent_left_transfer(id);
            return true;
        }
        if method == Method::Bye {
            let ok = ResponseBuilder::for_request(&req, 200, "OK")
                .header_unless_empty("Server", &local.server_name)
                .build_message();
            ctx.respond(&key, ok, "200 to BYE");
            let ending = match side {
                Side::A if call.carrier_transfer.is_some() => Ending::TransferredByCarrier,
                Side::A => Ending::CallerHungUp,
                Side::B => Ending::AgentHungUp,
            };
            if self.calls.get(&id).is_some_and(|c| c.phase.is_transferring()) {
                // The caller left while the transfer's target rang: that leg is cancelled.
                self.abandon_agent_leg(ctx, id, HopOutcome::Abandoned(Abandon::CallerHungUp));
            }
            self.hang_up_other(ctx, id, side, None);
            self.finish(ctx, id, CallStatus::Completed, ending);
            return true;
        }
        // Relay re-INVITE, UPDATE, INFO, ... to the other side.
        let (dialog, peer) = match side {
            Side::A => match call.phase.answered_leg_mut() {
                Some((b, d)) => (d, b.peer),
                None => return false,
            },
            Side::B => (&mut call.a.dialog, call.a.peer),
        };
        let sdp = anchor(call.relay.as_deref(), side, &req);
        let msg = match leg::in_dialog_request(dialog, &local, &method, Some(&req), &[], sdp, &self.rng.branch()) {
            Ok(m) => m,
            Err(e) => {
                tracing::debug!(error = %e, "in-dialog request not relayed: it could not be built");
                return false;
            }
        };
        match ctx.tx.send_request(ctx.now, peer, msg) {
            Ok(k) => {
                self.by_client.insert(
                    k,
                    ClientRef::Relay {
                        call: id,
                        server_key: key,
                        request: Box::new(req),
                        to_side: match side {
                            Side::A => Side::B,
                            Side::B => Side::A,
                        },
                    },
                );
            }
            Err(_) => {
                let r = ResponseBuilder::for_request(&req, 503, "Service Unavailable")
                    .header("Retry-After", "5")
                    .build_message();
                ctx.respond(&key, r, "503 to relayed request");
            }
        }
        true
    }

    /// Sends BYE to the side opposite `from` (or both when `from` is None).
    pub(super) fn hang_up_other(&mut self, ctx: &mut Ctx<'_>, id: CallId, from: Side, reason: Option<&str>) {
        let Some(call) = self.calls.get_mut(&id) else { return };
        let mut targets: Vec<(DialogSide, Peer)> = Vec::new();
        if from != Side::B {
            if let Some((b, d)) = call.phase.answered_leg() {
                targets.push((d.clone(), b.peer));
            }
        }
        if from != Side::A {
            targets.push((call.a.dialog.clone(), call.a.peer));
        }
        for (mut d, peer) in targets {
            self.send_bye(ctx, &mut d, peer, reason);
        }
    }

    pub(super) fn send_bye(&mut self, ctx: &mut Ctx<'_>, d: &mut DialogSide, peer: Peer, reason: Option<&str>) {
        let extra: Vec<(&str, &str)> = reason.map(|r| vec![("Reason", r)]).unwrap_or_default();
        let sent = leg::in_dialog_request(d, &self.cfg.local, &Method::Bye, None, &extra, None, &self.rng.branch())
            .map_err(|e| e.to_string())
            .and_then(|m| ctx.tx.send_request(ctx.now, peer, m).map_err(|e| e.to_string()));
        match sent {
            Ok(k) => {
                self.by_client.insert(k, ClientRef::Fire);
            }
            Err(e) => tracing::debug!(error = %e, call_id = %d.call_id, "BYE not sent"),
        }
    }

    /// BYE to leg A, with a `Reason` (RFC 3326) when the edge, not a party, ends the call.
    pub(super) fn send_bye_a(&mut self, ctx: &mut Ctx<'_>, id: CallId, reason: Option<&str>) {
        let Some(call) = self.calls.get_mut(&id) else { return };
        let mut d = call.a.dialog.clone();
        let peer = call.a.peer;
        self.send_bye(ctx, &mut d, peer, reason);
    }
}
