//! What call control is given and gives back at its edges: its settings, the IO-free context of one
//! event (`Ctx`: the time, the transaction layer, the send queue), refusals, records, counters.

use crate::sip::endpoint::Transmit;
use bytes::Bytes;
use edge_store::{CallRecord, VoicemailRecord};
use sip_core::message::{Message, ParseError};
use sip_core::transaction::{Peer, TransactionLayer, TxKey};
use std::collections::{HashMap, VecDeque};
use std::sync::atomic::AtomicU64;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::call::leg::Local;

/// Call-control settings (`[routing]` in the config).
#[derive(Debug, Clone)]
pub struct CallConfig {
    pub agent_setup_timeout: Duration,
    pub agent_ring_timeout: Duration,
    pub default_country_code: Option<String>,
    /// Shared: every leg message writes it, and cloning three strings per message showed in profiles.
    pub local: Arc<Local>,
    /// The T1 used for our own 2xx retransmissions toward the carrier (RFC 3261 13.3.1.4).
    pub t1: Duration,
    pub t2: Duration,
    /// Host named in Warning headers.
    pub warn_agent: String,
    /// Outbound calls: trunks, pacing, timeouts.
    pub outbound: crate::config::OutboundSettings,
    /// Internal ranges agents and trunks may resolve to (`[security] internal_targets`); every
    /// other internal address is refused after DNS, so a name cannot be re-pointed at one.
    pub targets: edge_contract::TargetPolicy,
    /// This edge node's id (`[node] id`), written on every call record it makes.
    pub node: Arc<str>,
    /// Connection ids of the TLS destinations the edge dials (trunks and agents over TLS), shared with the
    /// transport that opens them.
    pub tls: crate::transport::tls_client::TlsRoutes,
}

/// What the endpoint must answer for a new INVITE the controller did not take.
#[derive(Debug)]
pub struct Reject {
    pub code: u16,
    pub reason: &'static str,
    pub headers: Vec<(&'static str, String)>,
    /// Why, in the words a carrier's refused INVITE is recorded with; `None`: the code and reason phrase.
    pub why: Option<crate::call::outcome::Refusal>,
}

/// Counters for /metrics.
#[derive(Debug, Default)]
pub struct CallStats {
    pub calls_started: AtomicU64,
    pub active_calls: AtomicU64,
    pub answered_primary: AtomicU64,
    pub answered_fallback: AtomicU64,
    pub voicemail: AtomicU64,
    pub rejected: AtomicU64,
    pub failovers: AtomicU64,
    pub records_dropped: AtomicU64,
    /// New calls refused with 503 because no media port pair could be bound (range or open files used up).
    pub media_unavailable: AtomicU64,
    /// Carriers' INVITEs refused for a number served here and recorded as `failed` calls.
    pub refusals_recorded: AtomicU64,
    /// Such refusals not recorded: past the rate a shard records them at (a flood of refusals must not
    /// become a flood of rows).
    pub refusals_unrecorded: AtomicU64,
}

/// What the store must keep, in the order produced.
#[derive(Debug)]
pub enum Persist {
    Call(CallRecord),
    Voicemail(VoicemailRecord),
}

/// The IO-free things the controller may touch while handling one event.
pub struct Ctx<'a> {
    pub now: Instant,
    /// The wall clock at `now`, in Unix milliseconds, for the stored records.
    pub wall_ms: i64,
    pub tx: &'a mut TransactionLayer,
    pub out: &'a mut VecDeque<Transmit>,
}

impl Ctx<'_> {
    /// Answers a server transaction with a response built as a [`Message`] (never serialised and parsed
    /// back); a failure to build it or to send it (the transaction is gone, say) is logged, not dropped.
    pub(super) fn respond(&mut self, key: &TxKey, built: Result<Message, ParseError>, what: &str) {
        let sent = match built {
            Ok(m) => self.tx.respond(self.now, key, m).map_err(|e| e.to_string()),
            Err(e) => Err(format!("could not build it: {e}")),
        };
        if let Err(e) = sent {
            tracing::debug!(error = %e, what, "answer not sent");
        }
    }

    pub(super) fn send_raw(&mut self, peer: &Peer, bytes: Bytes) {
        self.out.push_back(Transmit {
            to: *peer,
            bytes,
            key: None,
        });
    }
}

/// A metric update call control produced. Call control writes to no recorder: the driver drains these
/// with [`CallController::poll_metric`](crate::call::CallController::poll_metric) after each event, as it
/// drains transmits and records, and applies them with [`MetricUpdate::apply`].
#[derive(Debug, Clone, PartialEq)]
pub enum MetricUpdate {
    /// The answer a carrier's (or calling agent's) INVITE got: `edge_sip_invites_total{carrier, code}`.
    InviteAnswered { carrier: String, code: u16 },
    /// INVITE taken to the caller's answer: `edge_call_setup_seconds`.
    SetupSeconds(f64),
    /// `POST /v1/calls` to the dialled party's answer: `edge_outbound_answer_seconds`.
    OutboundAnswerSeconds(f64),
    /// An outbound call refused because its trunk's pacing line was too long.
    OutboundPacedOut,
    /// An outbound call failed with this error code: `edge_outbound_failed_total{code}`.
    OutboundFailed { code: String },
}

impl MetricUpdate {
    /// Applies the update to the process's metrics recorder.
    pub fn apply(&self) {
        match self {
            MetricUpdate::InviteAnswered { carrier, code } => count_invite_answer(carrier, *code),
            MetricUpdate::SetupSeconds(s) => metrics::histogram!("edge_call_setup_seconds").record(*s),
            MetricUpdate::OutboundAnswerSeconds(s) => metrics::histogram!("edge_outbound_answer_seconds").record(*s),
            MetricUpdate::OutboundPacedOut => metrics::counter!("edge_outbound_paced_out_total").increment(1),
            MetricUpdate::OutboundFailed { code } => {
                metrics::counter!("edge_outbound_failed_total", "code" => code.clone()).increment(1)
            }
        }
    }
}

/// INVITEs by carrier and the final code the carrier got: what a carrier's engineer compares with their CDRs.
pub fn count_invite_answer(carrier: &str, code: u16) {
    // Counter handles by (code, carrier), kept per thread (the engine's): looking one up in the recorder
    // builds and hashes its label set, two strings and a vector per INVITE answered.
    thread_local! {
        static COUNTERS: std::cell::RefCell<HashMap<u16, HashMap<String, metrics::Counter>>> =
            std::cell::RefCell::new(HashMap::new());
    }
    COUNTERS.with_borrow_mut(|by_code| {
        let by_carrier = by_code.entry(code).or_default();
        if let Some(c) = by_carrier.get(carrier) {
            return c.increment(1);
        }
        let c =
            metrics::counter!("edge_sip_invites_total", "carrier" => carrier.to_owned(), "code" => code.to_string());
        c.increment(1);
        // Carriers are the configured ones and codes are bounded, so the cache stays small.
        by_carrier.insert(carrier.to_owned(), c);
    });
}
