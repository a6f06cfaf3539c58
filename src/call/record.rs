//! What is remembered of each call: the record API users read at `/v1/calls`, in the status vocabulary of
//! Twilio's Call resource so that nobody has to learn a new one.

use serde::Serialize;

/// Twilio Call resource statuses.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum CallStatus {
    Queued,
    Ringing,
    InProgress,
    Completed,
    Busy,
    Failed,
    NoAnswer,
    Canceled,
}

impl CallStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            CallStatus::Queued => "queued",
            CallStatus::Ringing => "ringing",
            CallStatus::InProgress => "in-progress",
            CallStatus::Completed => "completed",
            CallStatus::Busy => "busy",
            CallStatus::Failed => "failed",
            CallStatus::NoAnswer => "no-answer",
            CallStatus::Canceled => "canceled",
        }
    }

    /// True once the call can change no more.
    pub fn is_final(self) -> bool {
        matches!(
            self,
            CallStatus::Completed | CallStatus::Busy | CallStatus::Failed | CallStatus::NoAnswer | CallStatus::Canceled
        )
    }
}

/// Which hop of the inbound chain a leg was.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Route {
    Primary,
    Fallback,
    Voicemail,
}

impl Route {
    pub fn as_str(self) -> &'static str {
        match self {
            Route::Primary => "primary",
            Route::Fallback => "fallback",
            Route::Voicemail => "voicemail",
        }
    }
}

/// One attempt to hand the call to an agent (or to voicemail).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Hop {
    pub route: Route,
    pub agent_id: Option<String>,
    /// The agent's final SIP status, when it gave one.
    pub sip_status: Option<u16>,
    /// Why the hop ended: `answered`, `rejected`, `unavailable: disabled`, `no provisional within 2000 ms`, ...
    pub outcome: String,
    pub started_at_ms: i64,
    pub ended_at_ms: Option<i64>,
}

/// Who ended an answered call.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum HangupBy {
    Caller,
    Agent,
    Edge,
}

/// A call as stored and served by the API.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct CallRecord {
    /// `call_…`
    pub id: String,
    pub account_id: String,
    pub direction: &'static str,
    pub carrier: String,
    /// Caller number (From user) and display name.
    pub from: String,
    pub caller_name: Option<String>,
    /// The dialed number, E.164.
    pub to: String,
    pub phone_number_id: Option<String>,
    pub status: CallStatus,
    /// Which hop took the call, when one did.
    pub answered_by: Option<Route>,
    pub agent_id: Option<String>,
    pub hops: Vec<Hop>,
    /// Why the call ended, in words (`caller hung up`, `agent hung up`, `no agent available`, ...).
    pub end_reason: Option<String>,
    pub hangup_by: Option<HangupBy>,
    /// SIP status the carrier got, for calls that were not answered.
    pub sip_status: Option<u16>,
    pub sip_call_id: String,
    pub created_at_ms: i64,
    pub answered_at_ms: Option<i64>,
    pub ended_at_ms: Option<i64>,
}

/// Wall-clock milliseconds since the epoch, for records (the call logic itself runs on `Instant`).
pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}
