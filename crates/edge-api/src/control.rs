//! The channel between the API and the call engine: `POST /v1/calls` and `DELETE /v1/calls/{id}`
//! become [`CallCommand`]s, because only the engine owns live calls.

use edge_store::CallRecord;
use tokio::sync::oneshot;

/// A validated outbound call: `from` is a number of `account_id` assigned to `agent_id`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OriginateRequest {
    pub account_id: String,
    /// E.164.
    pub from: String,
    /// E.164.
    pub to: String,
    pub agent_id: String,
}

/// Why the engine refused to start a call (the API maps it to this HTTP status and JSON error).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{code}: {message}")]
pub struct OriginateError {
    /// 4xx or 5xx; anything else is answered as 500.
    pub http_status: u16,
    pub code: String,
    pub field: Option<String>,
    pub message: String,
}

#[derive(Debug)]
pub enum CallCommand {
    /// Reply once the call is created (status `queued`), not when it is answered. A closed
    /// `reply` means the API stopped waiting (503 sent), so the call should not be placed.
    Originate {
        req: OriginateRequest,
        reply: oneshot::Sender<Result<CallRecord, OriginateError>>,
    },
    /// None: no live call with that id in that account.
    HangUp {
        account_id: String,
        call_id: String,
        reply: oneshot::Sender<Option<CallRecord>>,
    },
}
