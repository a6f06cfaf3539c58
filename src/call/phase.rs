//! Where a call stands, as one exhaustive enum whose variants hold what only that stage has.
//!
//! ```text
//!                 B answers (inbound, agent's outbound call)
//!   Hunting ─────────────────────────────────────────────▶ AwaitingAck ──A's ACK──▶ Confirmed
//!     │  ▲ ring next hop       chain exhausted: voicemail ──▶    │                      ▲
//!     │  └── B refused, time-out                                  └── no ACK by 64*T1: ended
//!     │ API call: the dialled party answers (it becomes leg A)
//!     ▼
//!   Connecting ──the agent answers──────────────────────────────────────────────▶ Confirmed
//!
//!   Confirmed ──agent's REFER (or the API)──▶ Transferring ──target answers──▶ Confirmed (the target)
//!                                                   └──target fails──▶ Confirmed (the agent still)
//! ```
//!
//! A call that ends leaves the registry with whatever phase it had; [`Phase::into_parts`] says what must
//! be undone (a ringing leg to orphan, a leg's agent to release, a recording to stop).
//!
//! The transitions here are pure: they move data between variants and say whether the move was
//! allowed. What is sent because of them is decided by the direction modules.

use bytes::Bytes;
use sip_core::message::Message;
use sip_core::transaction::TxKey;
use std::time::Duration;

use crate::call::leg::DialogSide;
use crate::call::media::VoicemailRecording;
use crate::call::state::BLeg;

/// Where a call stands. Variants differ in size; a call lives boxed in the registry, so boxing the leg
/// inside would only add an allocation per call.
#[allow(clippy::large_enum_variant)]
pub(super) enum Phase {
    /// Looking for the party to connect leg A to. The leg being rung now, if any: `None` between hops,
    /// while a host is resolved, or while an outbound call waits for its pacing slot.
    Hunting(Option<BLeg>),
    /// An API call whose dialled party answered (leg A is now our confirmed dialog with the trunk): its
    /// agent is being rung.
    Connecting(Option<BLeg>),
    /// B answered and our 2xx went to A, whose ACK has not come: the 2xx is re-sent until it does
    /// (RFC 3261 13.3.1.4) and the call is ended if it never does.
    AwaitingAck { party: Answerer, answer: SentAnswer },
    /// Both sides are up.
    Confirmed { party: Answerer },
    /// The agent asked for the call to go elsewhere (`transfer.rs`): leg A stays up with the agent (who may
    /// already have hung up: `agent` is then `None`) while the transfer target's leg rings.
    Transferring {
        agent: Option<(BLeg, DialogSide)>,
        transfer: Box<Transfer>,
    },
}

/// A transfer in progress: where to, who asked, and the leg ringing there.
pub(super) struct Transfer {
    pub(super) target: TransferTarget,
    /// The agent's REFER, when it asked by REFER (the API asks without one): NOTIFYs report progress in
    /// the subscription it created (RFC 3515).
    pub(super) refer: Option<ReferSubscription>,
    /// `Referred-By` from the REFER, passed on to the target (RFC 3892).
    pub(super) referred_by: Option<String>,
    /// The target's leg, once its INVITE is out.
    pub(super) leg: Option<BLeg>,
    /// Whether a hop of the record stands for this transfer yet (one is added on failure otherwise, so
    /// the record always shows the transfer).
    pub(super) has_hop: bool,
}

/// Where a transfer goes.
#[derive(Debug, Clone)]
pub(super) enum TransferTarget {
    /// A telephone number (E.164), dialled through the trunk the call's number uses for outbound calls.
    Number(String),
    /// Another agent, rung like a hop.
    Agent(std::sync::Arc<edge_store::AgentRecord>),
}

impl TransferTarget {
    /// What the record's hop shows as the target.
    pub(super) fn label(&self) -> String {
        match self {
            TransferTarget::Number(n) => n.clone(),
            TransferTarget::Agent(a) => a.id.clone(),
        }
    }
}

/// The implicit subscription of a REFER: which status the agent was last told.
pub(super) struct ReferSubscription {
    /// The last status the agent was NOTIFYed of (0: only "100 Trying"), so a repeated 180 is not
    /// reported twice.
    pub(super) last_reported: u16,
}

/// Who answered leg A.
#[allow(clippy::large_enum_variant)]
pub(super) enum Answerer {
    /// The leg the edge placed (agent or trunk) and our side of its dialog.
    Leg { leg: BLeg, dialog: DialogSide },
    /// The edge itself, recording a voicemail; `sdp` is the answer it gave, repeated on a session refresh.
    Voicemail {
        recording: Box<dyn VoicemailRecording>,
        sdp: Bytes,
    },
}

/// Our 2xx to leg A, kept for retransmission until A's ACK.
pub(super) struct SentAnswer {
    pub(super) answer: Message,
    /// The wait before the next retransmission: T1, doubling up to T2.
    pub(super) interval: Duration,
}

/// What a call held when it ended, to be undone by the registry.
pub(super) struct Leftovers {
    /// A leg still ringing: its transaction may yet answer, so it is kept as an orphan.
    pub(super) ringing: Option<BLeg>,
    /// An answered leg (its BYE is sent by whoever ended the call).
    pub(super) answered: Option<BLeg>,
    pub(super) recording: Option<Box<dyn VoicemailRecording>>,
}

impl Phase {
    /// The leg being rung, if the call is hunting or connecting and one is out.
    pub(super) fn ringing(&self) -> Option<&BLeg> {
        match self {
            Phase::Hunting(b) | Phase::Connecting(b) => b.as_ref(),
            Phase::Transferring { transfer, .. } => transfer.leg.as_ref(),
            _ => None,
        }
    }

    pub(super) fn ringing_mut(&mut self) -> Option<&mut BLeg> {
        match self {
            Phase::Hunting(b) | Phase::Connecting(b) => b.as_mut(),
            Phase::Transferring { transfer, .. } => transfer.leg.as_mut(),
            _ => None,
        }
    }

    /// The ringing leg whose INVITE transaction is `key`.
    pub(super) fn ringing_on(&self, key: &TxKey) -> Option<&BLeg> {
        self.ringing().filter(|b| &b.key == key)
    }

    /// Takes the ringing leg out (it was refused, timed out or abandoned); the call keeps hunting.
    pub(super) fn take_ringing(&mut self) -> Option<BLeg> {
        match self {
            Phase::Hunting(b) | Phase::Connecting(b) => b.take(),
            Phase::Transferring { transfer, .. } => transfer.leg.take(),
            _ => None,
        }
    }

    /// A new leg rings. The leg comes back when the call is not hunting with no leg out, for the caller
    /// to undo (it never happens: hops start only then).
    pub(super) fn ring(&mut self, leg: BLeg) -> Option<BLeg> {
        match self {
            Phase::Hunting(b @ None) | Phase::Connecting(b @ None) => {
                *b = Some(leg);
                None
            }
            Phase::Transferring { transfer, .. } if transfer.leg.is_none() => {
                transfer.leg = Some(leg);
                None
            }
            _ => Some(leg),
        }
    }

    /// The answered leg and our side of its dialog (during a transfer: the agent's, while it stays).
    pub(super) fn answered_leg(&self) -> Option<(&BLeg, &DialogSide)> {
        match self {
            Phase::Transferring {
                agent: Some((leg, dialog)),
                ..
            } => Some((leg, dialog)),
            Phase::AwaitingAck {
                party: Answerer::Leg { leg, dialog },
                ..
            }
            | Phase::Confirmed {
                party: Answerer::Leg { leg, dialog },
            } => Some((leg, dialog)),
            _ => None,
        }
    }

    pub(super) fn answered_leg_mut(&mut self) -> Option<(&mut BLeg, &mut DialogSide)> {
        match self {
            Phase::Transferring {
                agent: Some((leg, dialog)),
                ..
            } => Some((leg, dialog)),
            Phase::AwaitingAck {
                party: Answerer::Leg { leg, dialog },
                ..
            }
            | Phase::Confirmed {
                party: Answerer::Leg { leg, dialog },
            } => Some((leg, dialog)),
            _ => None,
        }
    }

    /// The B leg that speaks for the call: the answered one, else the one ringing (during a transfer the
    /// agent, whose dialog is the one in-dialog requests match, not the target still ringing).
    pub(super) fn leg(&self) -> Option<&BLeg> {
        self.answered_leg().map(|(b, _)| b).or_else(|| self.ringing())
    }

    /// Is `key` the INVITE transaction of one of the call's B legs (ringing or answered)?
    pub(super) fn has_leg_key(&self, key: &TxKey) -> bool {
        self.ringing().is_some_and(|b| &b.key == key) || self.answered_leg().is_some_and(|(b, _)| &b.key == key)
    }

    /// The voicemail answering the call, with the SDP it answered.
    pub(super) fn voicemail_sdp(&self) -> Option<&Bytes> {
        match self {
            Phase::AwaitingAck {
                party: Answerer::Voicemail { sdp, .. },
                ..
            }
            | Phase::Confirmed {
                party: Answerer::Voicemail { sdp, .. },
            } => Some(sdp),
            _ => None,
        }
    }

    /// Still hunting for leg A's party (not answered, and not an API call whose dialled party answered).
    pub(super) fn is_hunting(&self) -> bool {
        matches!(self, Phase::Hunting(_))
    }

    /// An API call's dialled party answered and its agent is being rung.
    pub(super) fn is_connecting(&self) -> bool {
        matches!(self, Phase::Connecting(_))
    }

    pub(super) fn awaits_ack(&self) -> bool {
        matches!(self, Phase::AwaitingAck { .. })
    }

    pub(super) fn is_transferring(&self) -> bool {
        matches!(self, Phase::Transferring { .. })
    }

    pub(super) fn transfer(&self) -> Option<&Transfer> {
        match self {
            Phase::Transferring { transfer, .. } => Some(transfer),
            _ => None,
        }
    }

    pub(super) fn transfer_mut(&mut self) -> Option<&mut Transfer> {
        match self {
            Phase::Transferring { transfer, .. } => Some(transfer),
            _ => None,
        }
    }

    /// A confirmed call answered by a leg starts a transfer; the phase is handed back unchanged when the
    /// call is anywhere else (ringing, voicemail, already transferring).
    pub(super) fn start_transfer(&mut self, transfer: Box<Transfer>) -> Result<(), Box<Transfer>> {
        let old = std::mem::replace(self, Phase::Hunting(None));
        match old {
            Phase::Confirmed {
                party: Answerer::Leg { leg, dialog },
            } => {
                *self = Phase::Transferring {
                    agent: Some((leg, dialog)),
                    transfer,
                };
                Ok(())
            }
            other => {
                *self = other;
                Err(transfer)
            }
        }
    }

    /// The agent hung up while its transfer rings: its leg is handed back for the registry to forget.
    pub(super) fn agent_left(&mut self) -> Option<BLeg> {
        match self {
            Phase::Transferring { agent, .. } => agent.take().map(|(leg, _)| leg),
            _ => None,
        }
    }

    /// The transfer ended: the target answered (`to` is its leg) or it failed (`to` is `None`, and the
    /// agent, if still there, has the caller again). Returns the agent's leg and dialog when the target
    /// answered (to be told and hung up), and the transfer itself. A failed transfer whose agent already
    /// left leaves the phase `Hunting(None)`: the caller must then be hung up on.
    #[allow(clippy::type_complexity)]
    pub(super) fn end_transfer(
        &mut self,
        to: Option<(BLeg, DialogSide)>,
    ) -> Option<(Option<(BLeg, DialogSide)>, Box<Transfer>)> {
        let old = std::mem::replace(self, Phase::Hunting(None));
        match (old, to) {
            (Phase::Transferring { agent, transfer }, Some((leg, dialog))) => {
                *self = Phase::Confirmed {
                    party: Answerer::Leg { leg, dialog },
                };
                Some((agent, transfer))
            }
            (
                Phase::Transferring {
                    agent: Some((leg, dialog)),
                    transfer,
                },
                None,
            ) => {
                *self = Phase::Confirmed {
                    party: Answerer::Leg { leg, dialog },
                };
                Some((None, transfer))
            }
            (Phase::Transferring { agent: None, transfer }, None) => Some((None, transfer)),
            (other, _) => {
                *self = other;
                None
            }
        }
    }

    /// `party` answered and `answer` went to leg A: wait for its ACK.
    pub(super) fn answered(&mut self, party: Answerer, answer: SentAnswer) {
        *self = Phase::AwaitingAck { party, answer };
    }

    /// `party` answered a call whose leg A needs no ACK from us (an API call's agent).
    pub(super) fn confirmed(&mut self, party: Answerer) {
        *self = Phase::Confirmed { party };
    }

    /// An API call's dialled party answered: the agent is rung next.
    pub(super) fn connecting(&mut self) {
        *self = Phase::Connecting(None);
    }

    /// Leg A's ACK came. True when it confirmed the call (false: nothing was waiting for it).
    pub(super) fn acknowledged(&mut self) -> bool {
        let old = std::mem::replace(self, Phase::Hunting(None));
        match old {
            Phase::AwaitingAck { party, .. } => {
                *self = Phase::Confirmed { party };
                true
            }
            other => {
                *self = other;
                false
            }
        }
    }

    /// The 2xx to re-send now, with the interval doubled up to `t2`; `None` once A's ACK came.
    pub(super) fn retransmission(&mut self, t2: Duration) -> Option<(Message, Duration)> {
        match self {
            Phase::AwaitingAck { answer, .. } => {
                answer.interval = (answer.interval * 2).min(t2);
                Some((answer.answer.clone(), answer.interval))
            }
            _ => None,
        }
    }

    /// What the call held, for the registry to undo when it ends.
    pub(super) fn into_parts(self) -> Leftovers {
        let mut left = Leftovers {
            ringing: None,
            answered: None,
            recording: None,
        };
        match self {
            Phase::Hunting(b) | Phase::Connecting(b) => left.ringing = b,
            Phase::Transferring { agent, transfer } => {
                left.ringing = transfer.leg;
                left.answered = agent.map(|(leg, _)| leg);
            }
            Phase::AwaitingAck { party, .. } | Phase::Confirmed { party } => match party {
                Answerer::Leg { leg, .. } => left.answered = Some(leg),
                Answerer::Voicemail { recording, .. } => left.recording = Some(recording),
            },
        }
        left
    }
}
