//! What is remembered of each call: the record API users read at `/v1/calls`, in the status
//! vocabulary of Twilio's Call resource so that nobody has to learn a new one.
//!
//! The SIP side builds and updates a [`CallRecord`] and hands it to
//! [`Store::upsert_call`](crate::Store::upsert_call) at start, answer and end.

use serde::{Deserialize, Serialize};

/// Twilio Call resource statuses.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
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
    /// Every status, for validation messages.
    pub const ALL: [CallStatus; 8] = [
        CallStatus::Queued,
        CallStatus::Ringing,
        CallStatus::InProgress,
        CallStatus::Completed,
        CallStatus::Busy,
        CallStatus::Failed,
        CallStatus::NoAnswer,
        CallStatus::Canceled,
    ];

    /// The stored and wire spelling.
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

    /// Inverse of [`Self::as_str`].
    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|v| v.as_str() == s)
    }

    /// True once the call can change no more.
    pub fn is_final(self) -> bool {
        matches!(
            self,
            CallStatus::Completed | CallStatus::Busy | CallStatus::Failed | CallStatus::NoAnswer | CallStatus::Canceled
        )
    }
}

/// Which hop a leg was: the inbound chain (primary, fallback, voicemail) or an outbound call's trunk.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Route {
    Primary,
    Fallback,
    Voicemail,
    /// An outbound call's leg toward the customer's (or the operator's) trunk.
    Trunk,
    /// A leg the edge placed because the agent (REFER) or the API transferred the call.
    Transfer,
}

impl Route {
    pub fn as_str(self) -> &'static str {
        match self {
            Route::Primary => "primary",
            Route::Fallback => "fallback",
            Route::Voicemail => "voicemail",
            Route::Trunk => "trunk",
            Route::Transfer => "transfer",
        }
    }

    /// Inverse of [`Self::as_str`].
    pub fn parse(s: &str) -> Option<Self> {
        [
            Route::Primary,
            Route::Fallback,
            Route::Voicemail,
            Route::Trunk,
            Route::Transfer,
        ]
        .into_iter()
        .find(|v| v.as_str() == s)
    }
}

/// One attempt to hand the call to an agent (or to voicemail).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Hop {
    pub route: Route,
    pub agent_id: Option<String>,
    /// Where a transfer hop went: the E.164 number dialled or the agent's id (absent on other hops, and in
    /// records stored before transfers existed).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target: Option<String>,
    /// The agent's final SIP status, when it gave one.
    pub sip_status: Option<u16>,
    /// Why the hop ended: `answered`, `rejected`, `unavailable: disabled`, `no provisional within 2000 ms`, ...
    pub outcome: String,
    pub started_at_ms: i64,
    pub ended_at_ms: Option<i64>,
}

/// Who ended an answered call.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum HangupBy {
    Caller,
    Agent,
    Edge,
}

impl HangupBy {
    pub fn as_str(self) -> &'static str {
        match self {
            HangupBy::Caller => "caller",
            HangupBy::Agent => "agent",
            HangupBy::Edge => "edge",
        }
    }

    /// Inverse of [`Self::as_str`].
    pub fn parse(s: &str) -> Option<Self> {
        [HangupBy::Caller, HangupBy::Agent, HangupBy::Edge]
            .into_iter()
            .find(|v| v.as_str() == s)
    }
}

/// Why a call could not be placed or failed, in machine and human terms (outbound calls).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CallError {
    pub code: String,
    pub message: String,
}

/// A call as stored and served by the API.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CallRecord {
    /// `call_…`
    pub id: String,
    pub account_id: String,
    /// `inbound` or `outbound`. Owned (not `&'static str`) so records can be deserialised.
    pub direction: String,
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
    /// Set when the call failed for a reason worth a code (outbound placement); `None` inbound.
    #[serde(default)]
    pub error: Option<CallError>,
    pub created_at_ms: i64,
    pub answered_at_ms: Option<i64>,
    pub ended_at_ms: Option<i64>,
    /// The edge node that handled the call (`[node] id`); `None` on records stored before nodes were named.
    #[serde(default)]
    pub node: Option<String>,
}

/// Filters of [`Store::list_calls`](crate::Store::list_calls); `None` = no constraint.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CallFilter {
    pub phone_number_id: Option<String>,
    /// The agent that took (inbound) or placed (outbound) the call.
    pub agent_id: Option<String>,
    /// `inbound` or `outbound`.
    pub direction: Option<String>,
    /// E.164; matches calls whose `to` or `from` is this number.
    pub phone_number: Option<String>,
    pub status: Option<CallStatus>,
    /// Inclusive lower bound on `created_at_ms`.
    pub created_after_ms: Option<i64>,
    /// Exclusive upper bound on `created_at_ms`.
    pub created_before_ms: Option<i64>,
}

/// Wall-clock milliseconds since the epoch, for records (the call logic itself runs on `Instant`).
pub fn now_ms() -> i64 {
    crate::time::now_millis()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spellings_round_trip_and_match_serde() {
        for s in CallStatus::ALL {
            assert_eq!(CallStatus::parse(s.as_str()), Some(s));
            assert_eq!(serde_json::to_value(s).unwrap(), s.as_str());
        }
        assert_eq!(CallStatus::parse("in_progress"), None);
        for r in [Route::Primary, Route::Fallback, Route::Voicemail, Route::Trunk] {
            assert_eq!(Route::parse(r.as_str()), Some(r));
            assert_eq!(serde_json::to_value(r).unwrap(), r.as_str());
        }
        for h in [HangupBy::Caller, HangupBy::Agent, HangupBy::Edge] {
            assert_eq!(HangupBy::parse(h.as_str()), Some(h));
            assert_eq!(serde_json::to_value(h).unwrap(), h.as_str());
        }
    }

    #[test]
    fn record_serde_shape_round_trips() {
        let rec = CallRecord {
            id: "call_1".into(),
            account_id: "acc_1".into(),
            direction: "inbound".into(),
            carrier: "twilio".into(),
            from: "+15005550006".into(),
            caller_name: None,
            to: "+14155551234".into(),
            phone_number_id: Some("phn_1".into()),
            status: CallStatus::NoAnswer,
            answered_by: Some(Route::Voicemail),
            agent_id: None,
            hops: vec![Hop {
                route: Route::Primary,
                agent_id: Some("agt_1".into()),
                target: None,
                sip_status: Some(486),
                outcome: "rejected".into(),
                started_at_ms: 5,
                ended_at_ms: Some(6),
            }],
            end_reason: Some("no agent available".into()),
            hangup_by: Some(HangupBy::Edge),
            sip_status: Some(480),
            sip_call_id: "x@y".into(),
            error: None,
            created_at_ms: 1,
            answered_at_ms: None,
            ended_at_ms: Some(7),
            node: Some("edge-1".into()),
        };
        let v = serde_json::to_value(&rec).unwrap();
        assert_eq!(v["status"], "no-answer");
        assert_eq!(v["answered_by"], "voicemail");
        assert_eq!(v["hangup_by"], "edge");
        assert_eq!(v["hops"][0]["route"], "primary");
        assert_eq!(v["hops"][0]["started_at_ms"], 5);
        assert_eq!(v["error"], serde_json::Value::Null);
        assert_eq!(serde_json::from_value::<CallRecord>(v.clone()).unwrap(), rec);
        // Records serialised before `error` existed still read back.
        let mut old = v;
        old.as_object_mut().unwrap().remove("error");
        old.as_object_mut().unwrap().remove("node");
        let mut rec = rec;
        rec.node = None;
        assert_eq!(serde_json::from_value::<CallRecord>(old).unwrap(), rec);
    }
}
