//! SIP call control above the sans-IO core: the endpoint (core answers) and the salvage of bad requests.

pub mod endpoint;
pub mod salvage;
