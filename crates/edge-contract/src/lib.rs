//! The contract between the REST API (`edge-api`) and the call engine (`src/call`): the commands the
//! API sends, the typed refusals the engine answers with, and the rules both must apply the same way
//! (which trunk addresses are valid, which targets the edge may call).
//!
//! The engine speaks SIP and knows nothing of HTTP: `edge-api` maps each [`OriginateRefusal`] to its
//! status and JSON error code.

pub mod command;
pub mod targets;
pub mod trunk;

pub use command::{
    AgentRefusal, CallCommand, NumberField, OriginateRefusal, OriginateRequest, PacingRefusal, TransferRefusal,
    TrunkRefusal,
};
pub use targets::TargetPolicy;
pub use trunk::{TrunkAddress, TrunkAddressError, TrunkParams, TrunkTransport};
