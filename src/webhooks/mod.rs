//! Webhook deliveries (issue 22 item 4): the worker that sends what the store's outbox holds, and the
//! signature receivers check. Events are queued by the store itself, in the transaction of the call or
//! voicemail record that caused them; nothing here runs on the SIP path.

pub mod signature;
mod target;
pub mod worker;

pub use signature::{sign, signature_header, verify, SIGNATURE_HEADER};
pub use worker::{spawn_worker, DELIVERY_HEADER, EVENT_HEADER};
