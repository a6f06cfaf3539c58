//! Media plane of oneinbox-edge.
//!
//! * [`MediaEngine`]: port pool + per-call RTP/RTCP relays with symmetric
//!   latching ([`latch`]) and media-timeout events ([`MediaEvent`]).
//! * [`rewrite_sdp`] / [`build_voicemail_answer_sdp`]: SDP anchoring and the
//!   edge's own voicemail answer.
//! * [`g711`]: µ-law / A-law.
//! * [`VoicemailSession`]: greeting (espeak-ng via [`Tts`]), beep, recording to WAV.
//!
//! Typical bridged call (SIP side):
//! 1. `let relay = engine.allocate_relay(call_id)?` (503 on `PortsExhausted`);
//! 2. offer from leg A: `let (body, _) = relay.anchor_sdp(Side::A, offer, codecs)?` → send `body`
//!    to leg B (= `rewrite_sdp(offer, relay.public_ip(), relay.local_port(Side::B), codecs)` +
//!    `relay.set_remote(Side::A, &remote)`); on `Err(e)` answer `e.sip_status()`;
//! 3. answer from leg B: `relay.anchor_sdp(Side::B, answer, None)?` → send to leg A;
//! 4. on BYE: `relay.release().await` (or drop it); on `MediaEvent::Timeout` BYE both legs.
//!
//! While a transfer target rings, `relay.ringback(Side::A, true)` plays ringback to the caller instead
//! of side B's media; `relay.ringback(Side::A, false)` relays again (see `ringback.rs`).
//!
//! Voicemail (the edge answers itself):
//! 1. `let (answer, session) = engine.start_voicemail(call_id, offer, cfg)?` → 200 OK with `answer`
//!    (`VoicemailStartError::Sdp(e)` → `e.sip_status()`, `Media(_)` → 503);
//! 2. caller BYE → `session.stop()`; `MediaEvent::VoicemailEnded` reports every ending, and
//!    one with `ended_by` Silence / MaxLength / DtmfHash means the edge should BYE the caller;
//! 3. process shutdown → `engine.shutdown(grace).await` so every recording is written.

#![deny(unsafe_code)]

mod budget;
mod config;
pub mod dtmf;
mod engine;
mod error;
mod event;
#[doc(hidden)]
pub mod fuzzing;
pub mod g711;
pub mod latch;
mod origin;
mod ports;
mod recorder;
mod relay;
pub mod resample;
mod ringback;
mod sdp;
pub mod socket;
mod srtp;
mod transcode;
mod tts;
mod voicemail;
pub mod wav;
mod worker;

pub use config::MediaConfig;
pub use engine::{MediaEndpoint, MediaEngine, MediaEvents};
pub use error::MediaError;
pub use event::MediaEvent;
pub use g711::G711Law;
pub use latch::RelatchRule;
pub use relay::{RelayHandle, RelayStats, Side};
pub use sdp::{build_offer_sdp, build_voicemail_answer_sdp, rewrite_sdp, Codec, RemoteMedia, SdpError, VoicemailMedia};
pub use srtp::{srtp_dropped, MediaEncryption};
pub use tts::{Tts, TtsError};
pub use voicemail::{
    EndedBy, VoicemailConfig, VoicemailError, VoicemailOutcome, VoicemailSession, VoicemailStartError,
};
pub use worker::run_media_worker;
