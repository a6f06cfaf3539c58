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
            _ => None,
        }
    }

    pub(super) fn ringing_mut(&mut self) -> Option<&mut BLeg> {
        match self {
            Phase::Hunting(b) | Phase::Connecting(b) => b.as_mut(),
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
            _ => Some(leg),
        }
    }

    /// The answered leg and our side of its dialog.
    pub(super) fn answered_leg(&self) -> Option<(&BLeg, &DialogSide)> {
        match self {
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

    /// Any B leg the call has, ringing or answered.
    pub(super) fn leg(&self) -> Option<&BLeg> {
        self.ringing().or_else(|| self.answered_leg().map(|(b, _)| b))
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
            Phase::AwaitingAck { party, .. } | Phase::Confirmed { party } => match party {
                Answerer::Leg { leg, .. } => left.answered = Some(leg),
                Answerer::Voicemail { recording, .. } => left.recording = Some(recording),
            },
        }
        left
    }
}
