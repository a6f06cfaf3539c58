//! Sans-IO SIP transaction layer: RFC 3261 section 17 with RFC 6026 (Accepted states).
//!
//! Modelled on quinn-proto/str0m: no sockets, threads or clock reads. The caller passes
//! `now`, feeds parsed messages and timer expiries in, and drains transmits and events out.
//! All transactions share one map (keys hashed once, with a random key) and one lazily-pruned
//! deadline queue (per-duration FIFOs, O(1), plus a heap fallback), so there is no task or
//! allocation per timer and memory is bounded by the live-transaction cap.

mod client;
mod config;
mod error;
mod io;
mod key;
mod layer;
mod server;
mod state;
mod table;
mod timer;
mod tx;

pub use config::{AutoTrying, TimerConfig, TxConfig};
pub use error::TxError;
pub use io::{Incoming, Peer, Transmit, TxEvent};
pub use key::{Rfc2543Key, TxKey, TxKeyKind};
pub use layer::TransactionLayer;
pub use state::{InviteClientState, InviteServerState, NonInviteClientState, NonInviteServerState, TxState};
pub use timer::TimerKind;
