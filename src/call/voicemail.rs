//! The end of an inbound call's chain: the edge answers with voicemail and records, and stores the
//! recording's row when the media engine reports it (the call may be gone by then).

use bytes::Bytes;
use edge_media::MediaEvent;
use edge_store::{CallStatus, Route, VoicemailRecord};
use sip_core::build::ResponseBuilder;
use sip_core::message::{Message, Method, Transport};
use sip_core::transaction::TxKey;
use std::sync::atomic::Ordering;

use crate::call::context::{Ctx, MetricUpdate, Persist};
use crate::call::media::Side;
use crate::call::outcome::{Ending, HopOutcome};
use crate::call::phase::{Answerer, SentAnswer};
use crate::call::registry::CallController;
use crate::call::state::CallId;
use crate::sip::endpoint::{ALLOW, SUPPORTED};

/// What a voicemail row needs once the recording ends (the call may be gone by then).
#[derive(Debug)]
pub(super) struct VoicemailMeta {
    pub(super) account_id: String,
    pub(super) call_id: String,
    pub(super) phone_number_id: String,
    pub(super) caller: String,
    pub(super) to: String,
}

impl CallController {
    /// Voicemail sessions whose recording has not been reported yet (the engine waits for them on shutdown).
    pub fn pending_voicemails(&self) -> usize {
        self.voicemail_meta.len()
    }

    /// The end of the chain: the edge answers and records. False when voicemail is impossible (no media
    /// engine, no offer, no ports), so the caller gets 503.
    pub(super) fn start_voicemail(&mut self, ctx: &mut Ctx<'_>, id: CallId) -> bool {
        let Some(m) = &self.media else { return false };
        let Some(call) = self.calls.get_mut(&id) else {
            return false;
        };
        if call.a.invite.body().is_empty() {
            return false;
        }
        // The number's message, else its agent's default, else the operator's.
        let agent_default = self
            .index
            .agent(&call.number.agent_id)
            .and_then(|a| a.voicemail_message.clone());
        let greeting = call
            .number
            .inbound_routing
            .as_ref()
            .and_then(|r| r.voicemail_message.clone())
            .or(agent_default);
        let started = ctx.wall_ms;
        let (answer, session) = match m.start_voicemail(&call.record.id, call.a.invite.body(), greeting) {
            Ok(x) => x,
            Err(e) => {
                tracing::warn!(call = %call.record.id, error = %e, "voicemail could not start");
                return false;
            }
        };
        // The relay is not needed: the edge itself is the media peer now.
        call.relay = None;
        call.b_offer = None;
        let answer_sdp: Bytes = answer;
        let contact = self.cfg.local.contact_answering(&call.a.invite);
        let supported = SUPPORTED.join(", ");
        let built = ResponseBuilder::for_request(&call.a.invite, 200, "OK")
            .to_tag(&call.a.tag)
            .header("Contact", &contact)
            .header("Allow", ALLOW)
            .header("Supported", &supported)
            .header_unless_empty("Server", &self.cfg.local.server_name)
            .body("application/sdp", answer_sdp.clone())
            .build_message();
        let answer = match built {
            Ok(m) => m,
            Err(e) => {
                tracing::error!(call = %call.record.id, error = %e, "voicemail 2xx could not be built");
                session.stop();
                return false;
            }
        };
        if let Some(a_key) = &call.a.key {
            ctx.respond(a_key, Ok(answer.clone()), "voicemail 2xx");
        }
        let answered = [
            MetricUpdate::InviteAnswered {
                carrier: call.record.carrier.clone(),
                code: 200,
            },
            MetricUpdate::SetupSeconds(ctx.now.duration_since(call.created).as_secs_f64()),
        ];
        call.phase.answered(
            Answerer::Voicemail {
                recording: session,
                sdp: answer_sdp,
            },
            SentAnswer {
                answer,
                interval: self.cfg.t1,
            },
        );
        call.generation += 1;
        call.push_hop(Route::Voicemail, None, Some(200), HopOutcome::Answered, started, None);
        call.record.status = CallStatus::InProgress;
        call.record.answered_by = Some(Route::Voicemail);
        call.record.sip_status = Some(200);
        call.record.answered_at_ms = Some(ctx.wall_ms);
        self.voicemail_meta.insert(
            call.record.id.clone(),
            VoicemailMeta {
                account_id: call.record.account_id.clone(),
                call_id: call.record.id.clone(),
                phone_number_id: call.number.number_id.clone(),
                caller: call.record.from.clone(),
                to: call.record.to.clone(),
            },
        );
        let gen = call.generation;
        let unreliable = call.a.peer.transport == Transport::Udp;
        self.arm_answer_timers(ctx.now, id, gen, unreliable);
        self.stats.voicemail.fetch_add(1, Ordering::Relaxed);
        for m in answered {
            self.metric(m);
        }
        self.persist(ctx.now, id);
        true
    }

    /// A request from the caller while voicemail answers: BYE ends the recording; anything else is
    /// accepted (a session refresh gets the same SDP answer).
    pub(super) fn in_voicemail(
        &mut self,
        ctx: &mut Ctx<'_>,
        id: CallId,
        key: TxKey,
        req: &Message,
        method: &Method,
    ) -> bool {
        let Some(call) = self.calls.get(&id) else { return false };
        let mut b =
            ResponseBuilder::for_request(req, 200, "OK").header_unless_empty("Server", &self.cfg.local.server_name);
        let sdp = call.phase.voicemail_sdp().cloned();
        let contact = self.cfg.local.contact_answering(req);
        if *method == Method::Invite {
            b = b.header("Contact", &contact);
            if let Some(sdp) = sdp {
                b = b.body("application/sdp", sdp);
            }
        }
        ctx.respond(&key, b.build_message(), "answer in voicemail");
        if *method == Method::Bye {
            self.finish(ctx, id, CallStatus::Completed, Ending::CallerHungUp);
        }
        true
    }

    /// An event from the media engine: a dead media path, or a finished voicemail recording.
    pub fn on_media_event(&mut self, ctx: &mut Ctx<'_>, ev: MediaEvent) {
        match ev {
            MediaEvent::Timeout { call_id } => {
                let Some(id) = self.by_public.get(&*call_id).copied() else {
                    return;
                };
                tracing::info!(call = %call_id, "media timeout: hanging up both legs");
                let reason = "SIP;cause=408;text=\"media timeout\"";
                self.hang_up_other(ctx, id, Side::A, Some(reason));
                self.send_bye_a(ctx, id, Some(reason));
                self.finish(ctx, id, CallStatus::Completed, Ending::MediaTimeout);
            }
            MediaEvent::VoicemailEnded { call_id, outcome } => {
                let meta = self.voicemail_meta.remove(&*call_id);
                match (&outcome, meta) {
                    (Ok(o), Some(meta)) => {
                        let path = match &self.media {
                            Some(m) => m.stored_path(&o.path),
                            None => o.path.to_string_lossy().into_owned(),
                        };
                        let id = format!("vm_{}", self.rng.token());
                        self.write(Persist::Voicemail(VoicemailRecord {
                            id,
                            account_id: meta.account_id,
                            call_id: meta.call_id,
                            phone_number_id: Some(meta.phone_number_id),
                            caller: meta.caller,
                            to: meta.to,
                            duration_ms: o.duration_ms as i64,
                            ended_by: ended_by_word(o.ended_by).into(),
                            recording_path: path,
                            created_at_ms: ctx.wall_ms,
                        }));
                    }
                    (Err(e), _) => tracing::error!(call = %call_id, error = %e, "voicemail recording failed"),
                    (Ok(_), None) => {}
                }
                // Ended by itself (silence, length, `#`): the edge hangs up.
                if let Some(id) = self.by_public.get(&*call_id).copied() {
                    self.send_bye_a(ctx, id, None);
                    self.finish(ctx, id, CallStatus::Completed, Ending::VoicemailRecorded);
                }
            }
        }
    }
}

pub(super) fn ended_by_word(e: edge_media::EndedBy) -> &'static str {
    match e {
        edge_media::EndedBy::Hangup => "hangup",
        edge_media::EndedBy::MaxLength => "max-length",
        edge_media::EndedBy::Silence => "silence",
        edge_media::EndedBy::DtmfHash => "dtmf-hash",
        edge_media::EndedBy::Shutdown => "shutdown",
    }
}
