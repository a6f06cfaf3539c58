//! SIP above the sans-IO core: the endpoint (who may send what, core answers), admission control, agent
//! digest and its guard against guessing, and the salvage of bad requests.

pub mod admission;
pub mod agent_auth;
pub mod digest_guard;
pub mod endpoint;
pub mod salvage;
