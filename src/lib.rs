//! oneinbox-edge: the SIP edge between carriers (Twilio, Telnyx) and AI voice agents.
//!
//! One call's path reads top to bottom: `transport` (sockets) -> `sip::endpoint` (parse, validate, core
//! answers, transactions from `sip_core`) -> call routing. `server` wires the pieces and owns the clock.

pub mod call;
pub mod config;
pub mod logging;
pub mod media_ctl;
pub mod ops;
pub mod server;
pub mod shard;
pub mod sip;
pub mod transport;
