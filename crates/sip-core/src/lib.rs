//! sip-core
pub mod build;
pub mod digest;
pub mod e164;
pub mod framing;
pub mod headers;
pub mod message;
pub mod scan;
pub mod transaction;
pub mod uri;

pub use message::{Message, Method, ParseError};
