//! What happened to a hop and which way a call went, as types; the words the store and the API show are
//! written here and nowhere else (they are a contract: keep them byte-identical).

use std::fmt;
use std::net::SocketAddr;
use std::time::Duration;

use sip_core::message::Transport;

/// Which way a call goes: the record's `direction` and the agent leg's `X-OneInbox-Direction`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Direction {
    Inbound,
    Outbound,
}

impl Direction {
    pub fn as_str(self) -> &'static str {
        match self {
            Direction::Inbound => "inbound",
            Direction::Outbound => "outbound",
        }
    }
}

/// How one hop (an agent rung, a trunk target tried, voicemail) went: the hop's stored `outcome`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HopOutcome {
    /// The agent's INVITE is out.
    Trying,
    /// The trunk's INVITE is out to this target.
    TryingTrunk {
        transport: Transport,
        target: SocketAddr,
    },
    Answered,
    /// An agent's final refusal.
    Rejected {
        status: u16,
        reason: String,
    },
    /// A trunk target's final refusal (no trailing space when it gave no reason phrase).
    TrunkRejected {
        status: u16,
        reason: String,
    },
    /// The agent's INVITE transaction timed out (Timer B).
    NoFinalAnswer,
    /// The agent's INVITE could not be sent (a refused TCP connect, a closed connection): a dead agent,
    /// told apart from a silent one. `why` is the transport's words ("connection refused").
    Unreachable {
        why: String,
    },
    /// No provisional answer within the setup time-out.
    NoProvisional {
        within: Duration,
    },
    /// Rang for the ring time-out without an answer.
    NoAnswer {
        within: Duration,
    },
    /// A trunk target sent nothing at all within the setup time-out.
    TrunkSilent {
        within: Duration,
    },
    /// The agent could not be rung at all.
    Unavailable(Unavailable),
    /// The INVITE could not be built or handed to the transaction layer: the whole words.
    NotSent(String),
    /// The edge gave the hop up.
    Abandoned(Abandon),
    /// A transfer the REFER of which went on to the carrier (`inbound_routing.transfer = carrier`).
    PassedToCarrier,
    /// The leg's SDP answer could not be used (a plain answer from a `srtp_required` leg, no codec in
    /// common): the edge ended the leg rather than connect the caller to no audio. The relay's words.
    MediaRefused(String),
}

impl HopOutcome {
    /// The hop's stored `sip_status` when the agent never answered: RFC 3261 8.1.3.1 treats a transport
    /// error like a 503, a transaction time-out like a 408.
    pub fn synthetic_status(&self) -> Option<u16> {
        match self {
            HopOutcome::NoFinalAnswer => Some(408),
            HopOutcome::Unreachable { .. } => Some(503),
            HopOutcome::MediaRefused(_) => Some(488),
            _ => None,
        }
    }

    /// The agent never answered in time (as opposed to refusing): a chain of these is `no-answer`.
    pub fn is_timeout(&self) -> bool {
        matches!(
            self,
            HopOutcome::NoFinalAnswer
                | HopOutcome::NoProvisional { .. }
                | HopOutcome::NoAnswer { .. }
                | HopOutcome::TrunkSilent { .. }
        )
    }
}

/// Why an agent could not be rung.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Unavailable {
    AgentNotFound,
    AgentDisabled,
    AtLimit(u32),
    /// Its `sip_uri` cannot be used (the words say why).
    SipUri(String),
    DoesNotResolve(String),
    /// The end of the chain without a media engine to answer with voicemail.
    NoVoicemail,
}

/// Why the edge gave up a leg that was still ringing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Abandon {
    CallerCanceled,
    /// The caller hung up while a transfer's target rang.
    CallerHungUp,
    CalledPartyHungUp,
    HungUpThroughApi,
    EdgeShuttingDown,
    /// The edge's drain time-out passed (or a second SIGTERM came) with the call still up.
    EdgeDrained,
}

impl Abandon {
    pub fn as_str(self) -> &'static str {
        match self {
            Abandon::CallerCanceled => "caller canceled",
            Abandon::CallerHungUp => "caller hung up",
            Abandon::CalledPartyHungUp => "called party hung up first",
            Abandon::HungUpThroughApi => "hung up through the API",
            Abandon::EdgeShuttingDown => "edge shutting down",
            Abandon::EdgeDrained => "edge drained",
        }
    }
}

/// Why a call ended and who ended it: the record's `end_reason` and `hangup_by`, written here alone.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Ending {
    /// Leg A (carrier, calling agent, or an API call's dialled party) sent BYE.
    CallerHungUp,
    /// The agent (or trunk) on leg B sent BYE.
    AgentHungUp,
    /// An API call's dialled party hung up while its agent was still ringing.
    CalledPartyHungUpEarly,
    /// The carrier cancelled its INVITE while the agent rang.
    CallerCanceled,
    /// Leg A never acknowledged our 2xx (RFC 3261 13.3.1.4).
    NoAck,
    /// No RTP or RTCP from either side for the media time-out.
    MediaTimeout,
    /// The voicemail recording ended by itself (silence, length, `#`): the edge hung up.
    VoicemailRecorded,
    EdgeShuttingDown,
    /// Still up when the edge's drain ended (time-out or a second SIGTERM).
    EdgeDrained,
    HungUpThroughApi,
    /// The chain ran out: no agent took the call and voicemail could not answer.
    NoAgentAvailable,
    /// An API call's agent could not take the call its dialled party answered.
    AgentUnavailable,
    /// B's 2xx could not be turned into ours (a bug, never a peer's fault): the call is ended at once.
    AnswerNotBuilt,
    /// The agent hung up after asking for a transfer, and the transfer failed: nobody was left for the
    /// caller. The words say why the transfer failed.
    TransferFailed(String),
    /// The carrier hung up its leg after taking the agent's transfer (`inbound_routing.transfer = carrier`).
    TransferredByCarrier,
    /// An outbound call that never connected; the words are the error the user sees.
    OutboundFailed(String),
}

impl Ending {
    /// Who hung up, as the record says it; `None` where nobody did (the call never connected).
    pub fn hangup_by(&self) -> Option<edge_store::HangupBy> {
        use edge_store::HangupBy;
        match self {
            Ending::CallerHungUp
            | Ending::CalledPartyHungUpEarly
            | Ending::CallerCanceled
            | Ending::TransferredByCarrier => Some(HangupBy::Caller),
            Ending::AgentHungUp => Some(HangupBy::Agent),
            Ending::NoAck
            | Ending::MediaTimeout
            | Ending::VoicemailRecorded
            | Ending::EdgeShuttingDown
            | Ending::EdgeDrained
            | Ending::HungUpThroughApi
            | Ending::AgentUnavailable
            | Ending::AnswerNotBuilt
            | Ending::TransferFailed(_) => Some(HangupBy::Edge),
            Ending::NoAgentAvailable | Ending::OutboundFailed(_) => None,
        }
    }
}

impl fmt::Display for Ending {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Ending::CallerHungUp => "caller hung up",
            Ending::AgentHungUp => "agent hung up",
            Ending::CalledPartyHungUpEarly => "called party hung up before the agent answered",
            Ending::CallerCanceled => "caller canceled while ringing",
            Ending::NoAck => "carrier never acknowledged the answer",
            Ending::MediaTimeout => "media timeout: no RTP or RTCP from either side",
            Ending::VoicemailRecorded => "voicemail recorded",
            Ending::EdgeShuttingDown => Abandon::EdgeShuttingDown.as_str(),
            Ending::EdgeDrained => Abandon::EdgeDrained.as_str(),
            Ending::HungUpThroughApi => Abandon::HungUpThroughApi.as_str(),
            Ending::NoAgentAvailable => "no agent available",
            Ending::AgentUnavailable => "agent unavailable",
            Ending::TransferredByCarrier => "transferred by the carrier",
            Ending::AnswerNotBuilt => "the answer to the caller could not be built",
            Ending::OutboundFailed(words) => words,
            Ending::TransferFailed(why) => return write!(f, "transfer failed: {why}"),
        })
    }
}

/// Why the edge refused a carrier's INVITE for a number it serves: the `end_reason` of the `failed` record
/// such a refusal leaves (its `sip_status` is the code the carrier got).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refusal {
    /// The number is outbound-only.
    NoInboundRouting,
    /// No media port pair (or socket) for the call; the media engine's words.
    NoMediaPorts(String),
    /// The SDP offer has nothing the edge can relay (488), or cannot be read (400); the parser's words.
    SdpNotAcceptable(String),
    SdpUnreadable(String),
    /// The transaction table was full (`sip.max_transactions`).
    TransactionTableFull,
    /// The edge is draining (SIGTERM): the carrier is to use another node.
    Draining,
    /// Any other refusal: the code and reason phrase the carrier got.
    Answered {
        code: u16,
        reason: String,
    },
}

impl fmt::Display for Refusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Refusal::NoInboundRouting => f.write_str("number has no inbound routing"),
            Refusal::NoMediaPorts(why) => write!(f, "no media ports: {why}"),
            Refusal::SdpNotAcceptable(why) => write!(f, "SDP not acceptable: {why}"),
            Refusal::SdpUnreadable(why) => write!(f, "SDP offer unreadable: {why}"),
            Refusal::TransactionTableFull => f.write_str("transaction table full"),
            Refusal::Draining => f.write_str("edge draining"),
            Refusal::Answered { code, reason } => write!(f, "refused: {code} {reason}"),
        }
    }
}

impl fmt::Display for HopOutcome {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            HopOutcome::Trying => f.write_str("trying"),
            HopOutcome::TryingTrunk { transport, target } => {
                let t = if *transport == Transport::Tcp { "tcp" } else { "udp" };
                write!(f, "trying {t} {target}")
            }
            HopOutcome::Answered => f.write_str("answered"),
            HopOutcome::Rejected { status, reason } => write!(f, "rejected: {status} {reason}"),
            HopOutcome::TrunkRejected { status, reason } => {
                write!(f, "{}", format!("rejected: {status} {reason}").trim_end())
            }
            HopOutcome::NoFinalAnswer => f.write_str("timeout: no final answer"),
            HopOutcome::Unreachable { why } => write!(f, "unreachable: transport error ({why})"),
            HopOutcome::NoProvisional { within } => {
                write!(f, "timeout: no provisional answer within {} ms", within.as_millis())
            }
            HopOutcome::NoAnswer { within } => write!(f, "timeout: no answer within {} s", within.as_secs()),
            HopOutcome::TrunkSilent { within } => {
                write!(f, "timeout: no answer at all within {} ms", within.as_millis())
            }
            HopOutcome::Unavailable(u) => write!(f, "unavailable: {u}"),
            HopOutcome::NotSent(words) => f.write_str(words),
            HopOutcome::Abandoned(a) => f.write_str(a.as_str()),
            HopOutcome::PassedToCarrier => f.write_str("referred to the carrier"),
            HopOutcome::MediaRefused(why) => write!(f, "media refused: {why}"),
        }
    }
}

impl fmt::Display for Unavailable {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Unavailable::AgentNotFound => f.write_str("agent not found"),
            Unavailable::AgentDisabled => f.write_str("agent disabled"),
            Unavailable::AtLimit(n) => write!(f, "at max_concurrent_calls ({n})"),
            Unavailable::SipUri(words) => f.write_str(words),
            Unavailable::DoesNotResolve(why) => write!(f, "sip_uri host does not resolve: {why}"),
            Unavailable::NoVoicemail => f.write_str("voicemail needs the media engine, which this edge does not run"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `end_reason` and `hangup_by` as records have always shown them (they were string literals at
    /// each call site before `Ending`).
    #[test]
    fn endings_keep_their_words_and_who_hung_up() {
        use edge_store::HangupBy::{Agent, Caller, Edge};
        let cases = [
            (Ending::CallerHungUp, "caller hung up", Some(Caller)),
            (Ending::AgentHungUp, "agent hung up", Some(Agent)),
            (
                Ending::CalledPartyHungUpEarly,
                "called party hung up before the agent answered",
                Some(Caller),
            ),
            (Ending::CallerCanceled, "caller canceled while ringing", Some(Caller)),
            (Ending::NoAck, "carrier never acknowledged the answer", Some(Edge)),
            (
                Ending::MediaTimeout,
                "media timeout: no RTP or RTCP from either side",
                Some(Edge),
            ),
            (Ending::VoicemailRecorded, "voicemail recorded", Some(Edge)),
            (Ending::EdgeShuttingDown, "edge shutting down", Some(Edge)),
            (Ending::EdgeDrained, "edge drained", Some(Edge)),
            (Ending::HungUpThroughApi, "hung up through the API", Some(Edge)),
            (Ending::NoAgentAvailable, "no agent available", None),
            (Ending::AgentUnavailable, "agent unavailable", Some(Edge)),
            (Ending::OutboundFailed("trunk said no".into()), "trunk said no", None),
        ];
        for (ending, words, by) in cases {
            assert_eq!(ending.to_string(), words);
            assert_eq!(ending.hangup_by(), by, "{words}");
        }
    }

    #[test]
    fn refusals_say_why() {
        let cases = [
            (Refusal::NoInboundRouting, "number has no inbound routing"),
            (
                Refusal::NoMediaPorts("media ports exhausted".into()),
                "no media ports: media ports exhausted",
            ),
            (
                Refusal::SdpNotAcceptable("no audio stream".into()),
                "SDP not acceptable: no audio stream",
            ),
            (
                Refusal::SdpUnreadable("bad line".into()),
                "SDP offer unreadable: bad line",
            ),
            (Refusal::TransactionTableFull, "transaction table full"),
            (
                Refusal::Answered {
                    code: 415,
                    reason: "Unsupported Media Type".into(),
                },
                "refused: 415 Unsupported Media Type",
            ),
        ];
        for (r, words) in cases {
            assert_eq!(r.to_string(), words);
        }
    }

    /// The stored words, as the store and the API have always shown them.
    #[test]
    fn stored_words_are_unchanged() {
        let target: SocketAddr = "192.0.2.7:5060".parse().unwrap();
        let cases: Vec<(HopOutcome, &str)> = vec![
            (HopOutcome::Trying, "trying"),
            (
                HopOutcome::TryingTrunk {
                    transport: Transport::Tcp,
                    target,
                },
                "trying tcp 192.0.2.7:5060",
            ),
            (HopOutcome::Answered, "answered"),
            (
                HopOutcome::Rejected {
                    status: 486,
                    reason: "Busy Here".into(),
                },
                "rejected: 486 Busy Here",
            ),
            (
                HopOutcome::Rejected {
                    status: 486,
                    reason: String::new(),
                },
                "rejected: 486 ",
            ),
            (
                HopOutcome::TrunkRejected {
                    status: 503,
                    reason: String::new(),
                },
                "rejected: 503",
            ),
            (HopOutcome::NoFinalAnswer, "timeout: no final answer"),
            (
                HopOutcome::Unreachable {
                    why: "connection refused".into(),
                },
                "unreachable: transport error (connection refused)",
            ),
            (
                HopOutcome::NoProvisional {
                    within: Duration::from_millis(1500),
                },
                "timeout: no provisional answer within 1500 ms",
            ),
            (
                HopOutcome::NoAnswer {
                    within: Duration::from_secs(20),
                },
                "timeout: no answer within 20 s",
            ),
            (
                HopOutcome::TrunkSilent {
                    within: Duration::from_secs(4),
                },
                "timeout: no answer at all within 4000 ms",
            ),
            (
                HopOutcome::Unavailable(Unavailable::AtLimit(2)),
                "unavailable: at max_concurrent_calls (2)",
            ),
            (
                HopOutcome::Unavailable(Unavailable::NoVoicemail),
                "unavailable: voicemail needs the media engine, which this edge does not run",
            ),
            (HopOutcome::Abandoned(Abandon::CallerCanceled), "caller canceled"),
        ];
        for (outcome, words) in cases {
            assert_eq!(outcome.to_string(), words);
            assert_eq!(outcome.is_timeout(), words.starts_with("timeout"), "{words}");
        }
    }
}
