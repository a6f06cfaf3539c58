//! Server transaction state machines (RFC 3261 17.2, RFC 6026 7.1).

use std::time::Duration;

use bytes::Bytes;

use super::timer::{Slot, TimerKind};
use super::tx::{Next, Out, Timers};
use super::{InviteServerState, NonInviteServerState, TxError, TxEvent};

/// What the layer should do with an ACK that matched an INVITE server transaction.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum AckOutcome {
    /// ACK for a non-2xx final (or its retransmission): absorbed.
    Absorb,
    /// ACK in Accepted: the 2xx ACK, for the TU.
    ToTu,
}

/// INVITE server transaction.
pub(crate) struct InviteServer {
    pub state: InviteServerState,
    /// Last response sent, re-sent on INVITE retransmission (Proceeding) and by Timer G.
    pub last: Option<Bytes>,
    /// A delayed automatic 100 Trying, sent by the Trying timer unless the TU answers first.
    pub pending_trying: Option<Bytes>,
    /// Current Timer G interval.
    pub interval: Duration,
    /// To tag of our final response: RFC 2543 ACKs are matched by it.
    pub response_to_tag: Option<Box<str>>,
    /// Remaining guard time after the first 64*T1 guard period. The guard is armed in two
    /// steps so answered transactions leave only short-lived stale entries in the timer heap.
    pub guard_rest: Option<Duration>,
}

impl InviteServer {
    pub fn new() -> Self {
        Self {
            state: InviteServerState::Proceeding,
            last: None,
            pending_trying: None,
            interval: Duration::ZERO,
            response_to_tag: None,
            guard_rest: None,
        }
    }

    /// A retransmitted INVITE: re-send the last response where the RFC says so.
    pub fn on_retransmission(&mut self, t: &mut Timers<'_>, out: &mut Out<'_>) {
        match self.state {
            InviteServerState::Proceeding | InviteServerState::Completed => {
                if let Some(last) = &self.last {
                    out.send(t.peer, last.clone(), t.key);
                }
            }
            InviteServerState::Confirmed | InviteServerState::Accepted | InviteServerState::Terminated => {}
        }
    }

    pub fn on_ack(&mut self, t: &mut Timers<'_>, out: &mut Out<'_>) -> (AckOutcome, Next) {
        match self.state {
            InviteServerState::Completed => {
                self.state = InviteServerState::Confirmed;
                let next = t.arm_wait(out, TimerKind::I, out.cfg.t4);
                if next == Next::Terminate {
                    self.state = InviteServerState::Terminated;
                }
                (AckOutcome::Absorb, next)
            }
            InviteServerState::Accepted => (AckOutcome::ToTu, Next::Stay),
            InviteServerState::Proceeding | InviteServerState::Confirmed | InviteServerState::Terminated => {
                (AckOutcome::Absorb, Next::Stay)
            }
        }
    }

    /// The TU sends a response. `to_tag` is only computed for RFC 2543 transactions.
    pub fn respond(
        &mut self,
        status: u16,
        response: Bytes,
        to_tag: Option<Box<str>>,
        t: &mut Timers<'_>,
        out: &mut Out<'_>,
    ) -> Result<Next, TxError> {
        match (self.state, status) {
            (InviteServerState::Proceeding, 100..=199) => {
                self.pending_trying = None;
                t.disarm(Slot::Trying);
                out.send(t.peer, response.clone(), t.key);
                self.last = Some(response);
                Ok(Next::Stay)
            }
            (InviteServerState::Proceeding, 200..=299) => {
                self.pending_trying = None;
                t.disarm(Slot::Trying);
                out.send(t.peer, response, t.key);
                self.last = None;
                self.response_to_tag = to_tag;
                self.state = InviteServerState::Accepted;
                t.arm(out, TimerKind::L, out.cfg.t1x64());
                Ok(Next::Stay)
            }
            (InviteServerState::Proceeding, _) => {
                self.pending_trying = None;
                t.disarm(Slot::Trying);
                out.send(t.peer, response.clone(), t.key);
                self.last = Some(response);
                self.response_to_tag = to_tag;
                self.state = InviteServerState::Completed;
                if !t.peer.is_reliable() {
                    self.interval = out.cfg.t1;
                    t.arm(out, TimerKind::G, self.interval);
                }
                t.arm(out, TimerKind::H, out.cfg.t1x64());
                Ok(Next::Stay)
            }
            // RFC 6026: the TU retransmits its 2xx (or sends 2xx from other forks) through here.
            (InviteServerState::Accepted, 200..=299) => {
                out.send(t.peer, response, t.key);
                Ok(Next::Stay)
            }
            (state, status) => Err(TxError::InvalidState {
                status,
                state: super::TxState::InviteServer(state).name(),
            }),
        }
    }

    pub fn on_timer(&mut self, kind: TimerKind, t: &mut Timers<'_>, out: &mut Out<'_>) -> Next {
        match (kind, self.state) {
            (TimerKind::Trying, InviteServerState::Proceeding) => {
                if let Some(trying) = self.pending_trying.take() {
                    out.send(t.peer, trying.clone(), t.key);
                    self.last = Some(trying);
                }
                Next::Stay
            }
            (TimerKind::G, InviteServerState::Completed) => {
                if let Some(last) = &self.last {
                    out.send(t.peer, last.clone(), t.key);
                }
                self.interval = self.interval.saturating_mul(2).min(out.cfg.t2);
                t.arm(out, TimerKind::G, self.interval);
                Next::Stay
            }
            (TimerKind::Guard, InviteServerState::Proceeding) if self.guard_rest.is_some() => {
                if let Some(rest) = self.guard_rest.take() {
                    t.arm(out, TimerKind::Guard, rest);
                }
                Next::Stay
            }
            (TimerKind::H, InviteServerState::Completed) | (TimerKind::Guard, InviteServerState::Proceeding) => {
                out.event(TxEvent::Timeout {
                    key: t.key.clone(),
                    timer: kind,
                });
                self.state = InviteServerState::Terminated;
                Next::Terminate
            }
            (TimerKind::I, InviteServerState::Confirmed) | (TimerKind::L, InviteServerState::Accepted) => {
                self.state = InviteServerState::Terminated;
                Next::Terminate
            }
            _ => Next::Stay,
        }
    }
}

/// Non-INVITE server transaction.
pub(crate) struct NonInviteServer {
    pub state: NonInviteServerState,
    pub last: Option<Bytes>,
}

impl NonInviteServer {
    pub fn new() -> Self {
        Self {
            state: NonInviteServerState::Trying,
            last: None,
        }
    }

    pub fn on_retransmission(&mut self, t: &mut Timers<'_>, out: &mut Out<'_>) {
        match self.state {
            NonInviteServerState::Proceeding | NonInviteServerState::Completed => {
                if let Some(last) = &self.last {
                    out.send(t.peer, last.clone(), t.key);
                }
            }
            NonInviteServerState::Trying | NonInviteServerState::Terminated => {}
        }
    }

    pub fn respond(
        &mut self,
        status: u16,
        response: Bytes,
        t: &mut Timers<'_>,
        out: &mut Out<'_>,
    ) -> Result<Next, TxError> {
        match self.state {
            NonInviteServerState::Trying | NonInviteServerState::Proceeding => {
                out.send(t.peer, response.clone(), t.key);
                self.last = Some(response);
                if status < 200 {
                    self.state = NonInviteServerState::Proceeding;
                    return Ok(Next::Stay);
                }
                self.state = NonInviteServerState::Completed;
                let next = t.arm_wait(out, TimerKind::J, out.cfg.t1x64());
                if next == Next::Terminate {
                    self.state = NonInviteServerState::Terminated;
                }
                Ok(next)
            }
            NonInviteServerState::Completed | NonInviteServerState::Terminated => Err(TxError::InvalidState {
                status,
                state: super::TxState::NonInviteServer(self.state).name(),
            }),
        }
    }

    pub fn on_timer(&mut self, kind: TimerKind, t: &mut Timers<'_>, out: &mut Out<'_>) -> Next {
        match (kind, self.state) {
            (TimerKind::Guard, NonInviteServerState::Trying | NonInviteServerState::Proceeding) => {
                out.event(TxEvent::Timeout {
                    key: t.key.clone(),
                    timer: TimerKind::Guard,
                });
                self.state = NonInviteServerState::Terminated;
                Next::Terminate
            }
            (TimerKind::J, NonInviteServerState::Completed) => {
                self.state = NonInviteServerState::Terminated;
                Next::Terminate
            }
            _ => Next::Stay,
        }
    }
}
