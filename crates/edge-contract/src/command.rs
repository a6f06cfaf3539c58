//! The channel between the API and the call engine: `POST /v1/calls`, `DELETE /v1/calls/{id}` and
//! `POST /v1/calls/{id}/transfer` become [`CallCommand`]s, because only the engine owns live calls.

use std::time::Duration;

use edge_store::{CallRecord, Provider};
use sip_core::e164::E164Error;
use tokio::sync::oneshot;

use crate::trunk::TrunkAddressError;

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

#[derive(Debug)]
pub enum CallCommand {
    /// Reply once the call is created (status `queued`), not when it is answered. A closed
    /// `reply` means the API stopped waiting (503 sent), so the call should not be placed.
    Originate {
        req: OriginateRequest,
        reply: oneshot::Sender<Result<CallRecord, OriginateRefusal>>,
    },
    /// None: no live call with that id in that account.
    HangUp {
        account_id: String,
        call_id: String,
        reply: oneshot::Sender<Option<CallRecord>>,
    },
    /// Hand a live answered call to `to` (a number, `+E.164`, or an agent id `agt_...`); replied once the
    /// target's leg is being placed (the call's record then shows the transfer hop).
    Transfer {
        account_id: String,
        call_id: String,
        to: String,
        reply: oneshot::Sender<Result<CallRecord, TransferRefusal>>,
    },
}

/// Why a transfer (an agent's REFER, or the API's) is refused before anything is dialled. Call control
/// answers a REFER with its SIP status; the API maps it to HTTP.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TransferRefusal {
    #[error("no live call {call_id} in this account")]
    CallNotFound { call_id: String },
    #[error("Refer-To is missing or is not a SIP or tel URI")]
    BadReferTo,
    #[error("attended transfer (Replaces) is not supported; refer to a number or an agent")]
    Attended,
    #[error("{0} is neither a phone number nor an agent of this account")]
    UnknownTarget(String),
    #[error("agent {0} is disabled")]
    AgentDisabled(String),
    #[error("the call is not answered by an agent now (ringing, in voicemail, or already transferring)")]
    NotConnected,
    #[error("only the agent's side may transfer; an agent's own outbound call cannot be transferred yet")]
    NotTheAgent,
    #[error("transfers need the call's media anchored on the edge ([media] enabled = true)")]
    MediaRequired,
    #[error("no trunk to dial {number}: {why}")]
    NoTrunk { number: String, why: String },
    /// The target's media cannot be offered as its policy asks (SRTP where the call's relay runs in a
    /// media worker): the relay's words.
    #[error("the target's media cannot be offered: {0}")]
    MediaNotOffered(String),
}

/// Which number of an [`OriginateRequest`] a refusal is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NumberField {
    From,
    To,
}

impl NumberField {
    /// The request field's name.
    pub fn as_str(self) -> &'static str {
        match self {
            NumberField::From => "from",
            NumberField::To => "to",
        }
    }
}

/// Why the engine refused to start a call. The message (`Display`) is shown to the user as is; the API
/// chooses the HTTP status, error code and field.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum OriginateRefusal {
    #[error("agent {agent_id} does not exist")]
    AgentNotFound { agent_id: String },
    #[error("`{input}` is not an E.164 number: {reason}")]
    NotANumber {
        field: NumberField,
        input: String,
        reason: E164Error,
    },
    #[error("{number} is not a number of this account")]
    NotAccountNumber { number: String },
    #[error("{number} is assigned to agent {assigned_to}, not to {agent_id}")]
    AnotherAgentsNumber {
        number: String,
        assigned_to: String,
        agent_id: String,
    },
    #[error(transparent)]
    Agent(#[from] AgentRefusal),
    #[error(transparent)]
    Trunk(#[from] TrunkRefusal),
    #[error(transparent)]
    TrunkPaced(#[from] PacingRefusal),
    #[error("calls placed through the API need the media engine ([media] enabled = true)")]
    MediaDisabled,
    #[error("no media ports: {reason}")]
    NoMediaPorts { reason: String },
    /// The engine failed itself (an INVITE it could not build, a call gone while being set up).
    #[error("{reason}")]
    EngineFault { reason: String },
}

/// Why an agent cannot take part in one more call.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AgentRefusal {
    #[error("agent {agent_id} is disabled")]
    Disabled { agent_id: String },
    #[error("agent {agent_id} is at max_concurrent_calls ({max_concurrent_calls})")]
    AtCapacity {
        agent_id: String,
        max_concurrent_calls: u32,
    },
}

/// Why no trunk can carry a call from a number.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TrunkRefusal {
    #[error("provider_config.trunk_address: {0}")]
    InvalidProviderConfig(TrunkAddressError),
    #[error("the integration's metadata.sip_trunk: {0}")]
    InvalidIntegration(TrunkAddressError),
    /// Config validation refuses these at start-up; kept for a configuration built another way.
    #[error("{0}")]
    InvalidOperator(TrunkAddressError),
    #[error(
        "no outbound trunk for {number}: register it with provider_config.trunk_address, add a {} integration with \
         metadata.sip_trunk, or configure [[outbound.trunks]] provider = \"{}\"",
        provider.as_str(),
        provider.as_str()
    )]
    Missing { number: String, provider: Provider },
}

/// The trunk's pacing line is longer than the operator lets a call wait.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error(
    "trunk {trunk} takes {cps} calls per second and its line is {} ms long (outbound.max_pacing_wait_ms is {}): try \
     again later",
    wait.as_millis(),
    max_wait.as_millis()
)]
pub struct PacingRefusal {
    /// The pacing key: the trunk host, lower-cased.
    pub trunk: String,
    pub cps: f64,
    pub wait: Duration,
    pub max_wait: Duration,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_users_see() {
        let r = OriginateRefusal::Agent(AgentRefusal::AtCapacity {
            agent_id: "agt_1".into(),
            max_concurrent_calls: 2,
        });
        assert_eq!(r.to_string(), "agent agt_1 is at max_concurrent_calls (2)");
        let r = OriginateRefusal::NotANumber {
            field: NumberField::To,
            input: "+0".into(),
            reason: E164Error::LeadingZero,
        };
        assert_eq!(
            r.to_string(),
            "`+0` is not an E.164 number: E.164 numbers cannot start with 0"
        );
        let p = PacingRefusal {
            trunk: "t.example".into(),
            cps: 1.0,
            wait: Duration::from_millis(2500),
            max_wait: Duration::from_millis(2000),
        };
        assert_eq!(
            p.to_string(),
            "trunk t.example takes 1 calls per second and its line is 2500 ms long (outbound.max_pacing_wait_ms is \
             2000): try again later"
        );
        let t = TrunkRefusal::Missing {
            number: "+14155550100".into(),
            provider: Provider::Twilio,
        };
        assert_eq!(
            t.to_string(),
            "no outbound trunk for +14155550100: register it with provider_config.trunk_address, add a twilio \
             integration with metadata.sip_trunk, or configure [[outbound.trunks]] provider = \"twilio\""
        );
        assert_eq!(
            TrunkRefusal::InvalidIntegration(TrunkAddressError::Port).to_string(),
            "the integration's metadata.sip_trunk: port must be 1-65535"
        );
    }
}
