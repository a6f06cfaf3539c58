//! Call control: a B2BUA between the caller's leg (A) and the leg the edge places (B).
//!
//! One inbound call, top to bottom, with the file that holds each step:
//! 0. `crate::transport` reads the datagram or TCP frame; `crate::shard` hands it to the engine shard that
//!    owns its Call-ID (`crate::server::engine` runs each shard's loop).
//! 1. `sip::endpoint` parses it, runs the transaction layer and hands over a carrier's INVITE that passed
//!    the core checks.
//! 2. `inbound.rs`: the dialed number (`dialed.rs`) is looked up in the routing index; the SDP offer is
//!    anchored on a media relay (`media.rs`: the `CallMedia` trait, implemented on the media engine by
//!    `crate::media_ctl` and by a fake in tests); the hop chain (primary agent, fallback agent) starts
//!    and the agent leg's INVITE is built (`leg.rs` builds every leg message).
//! 3. `answers.rs`: the agent's 1xx is relayed to the carrier, its 2xx ACKed and relayed; a refusal or a
//!    time-out moves to the next hop; with none left, `voicemail.rs` answers (or the carrier gets 503).
//! 4. `dialog.rs`: the carrier's ACK confirms the call; re-INVITEs and the like are relayed; a BYE from
//!    either side ends it. `dialog_check.rs` decides which requests speak for a call at all.
//! 5. `registry.rs`: the `CallController` that holds every call (`state.rs`), finds it from each message,
//!    runs its timers and ends it: agent released (`agents.rs`), indexes cleared, record queued.
//!
//! Where a call stands is one exhaustive enum, `phase.rs` (`Hunting` -> `AwaitingAck` -> `Confirmed`, or
//! `Connecting` for an API call whose dialled party answered), whose variants hold the B leg or the
//! voicemail recording of that stage: a call cannot be "answered" without the leg that answered it.
//!
//! How each hop went, which way a call goes and why it ended (`Ending`: the record's `end_reason` and
//! `hangup_by`) are typed in `outcome.rs`, which alone writes the words the store and the API show.
//!
//! Outbound calls (an agent's INVITE, or `POST /v1/calls`) are in `outbound/`, with trunk choice and
//! failure words in `trunk.rs` and calls-per-second pacing in `pacing.rs`.
//!
//! Sans-IO: every entry point takes a `Ctx` (`context.rs`) with the time, the wall clock, the transaction
//! layer and the send queue; tags, Call-IDs and branches come from the `Entropy` the controller is handed
//! (`entropy.rs`). Call control binds no socket, spawns no task and reads no clock or generator of its
//! own; call and voicemail records and trunk hosts to resolve are drained by the driver (`poll_record`,
//! `poll_resolve`), like transmits. Responses and requests are built as `Message`s and handed to the
//! transaction layer as such (never serialised and parsed back).

pub mod agents;
mod answers;
pub mod cluster_gate;
mod context;
pub mod dialed;
mod dialog;
mod dialog_check;
pub mod entropy;
mod inbound;
pub mod leg;
pub mod media;
mod outbound;
pub mod outcome;
pub mod pacing;
mod phase;
mod registry;
mod state;
#[cfg(test)]
mod tests;
pub mod transfer;
pub mod trunk;
mod voicemail;

pub use agents::AgentSlots;
pub use cluster_gate::{LimitAnswer, LimitJob};
pub use context::{count_invite_answer, CallConfig, CallStats, Ctx, MetricUpdate, Persist, Reject};
pub use edge_store::{CallRecord, CallStatus, HangupBy, Hop, Route};
pub use entropy::{Entropy, OsEntropy, SeededEntropy};
pub use media::CallMedia;
pub use outbound::{AgentOrigin, ResolveJob, TrunkTarget};
pub use pacing::TrunkPacer;
pub use registry::{CallController, TraceLeg};
