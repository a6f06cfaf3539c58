//! oneinbox-edge: the SIP edge between carriers (Twilio, Telnyx) and AI voice agents.
//!
//! One call's path reads top to bottom: `transport` (sockets) -> `sip::endpoint` (parse, validate, core
//! answers, transactions from `sip_core`) -> `call` (the call controller: registry, inbound hop chain,
//! outbound dialling, voicemail) -> agent leg. `shard` routes each message to the engine shard owning its
//! Call-ID; `server` wires the pieces, runs the engine loops and owns the clock.
//!
//! `unsafe` is denied except where a syscall has no safe wrapper (`transport::udp::recv_batch`,
//! `recvmmsg`), each use scoped and explained.
#![deny(unsafe_code)]

pub mod call;
pub mod cluster;
pub mod config;
pub mod logging;
pub mod media_ctl;
pub mod ops;
pub mod server;
pub mod shard;
pub mod sip;
pub mod trace;
pub mod transport;
pub mod webhooks;
