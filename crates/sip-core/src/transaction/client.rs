//! Client transaction state machines (RFC 3261 17.1, RFC 6026 7.2).

use std::time::Duration;

use bytes::Bytes;

use crate::build::ack_for_non2xx;
use crate::message::Message;

use super::timer::{Slot, TimerKind};
use super::tx::{Next, Out, Timers};
use super::{InviteClientState, NonInviteClientState, TxEvent};

/// What the layer should tell the TU about a response.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Deliver {
    ToTu,
    Absorb,
}

/// INVITE client transaction. Keeps the INVITE to retransmit it and to build the ACK
/// for a non-2xx final response.
pub(crate) struct InviteClient {
    pub state: InviteClientState,
    pub request: Message,
    pub ack: Option<Bytes>,
    /// Current Timer A interval.
    pub interval: Duration,
    /// Timer C already fired once (second firing terminates).
    pub c_fired: bool,
}

impl InviteClient {
    /// Sends the INVITE and arms A (unreliable only) and B.
    pub fn start(request: Message, t: &mut Timers<'_>, out: &mut Out<'_>) -> Self {
        out.send(t.peer, request.bytes().clone(), t.key);
        let t1 = out.cfg.t1;
        if !t.peer.is_reliable() {
            t.arm(out, TimerKind::A, t1);
        }
        t.arm(out, TimerKind::B, out.cfg.t1x64());
        Self {
            state: InviteClientState::Calling,
            request,
            ack: None,
            interval: t1,
            c_fired: false,
        }
    }

    pub fn on_response(
        &mut self,
        msg: &Message,
        status: u16,
        t: &mut Timers<'_>,
        out: &mut Out<'_>,
    ) -> (Deliver, Next) {
        match self.state {
            InviteClientState::Calling | InviteClientState::Proceeding => match status {
                100..=199 => {
                    t.disarm(Slot::Retransmit);
                    let entering = self.state == InviteClientState::Calling;
                    self.state = InviteClientState::Proceeding;
                    // B only guards Calling; C bounds Proceeding and restarts on 101-199.
                    if entering || status > 100 {
                        match out.cfg.timer_c {
                            Some(c) if !self.c_fired => t.arm(out, TimerKind::C, c),
                            Some(_) => {}
                            None => t.disarm(Slot::Lifetime),
                        }
                    }
                    (Deliver::ToTu, Next::Stay)
                }
                200..=299 => {
                    t.disarm(Slot::Retransmit);
                    self.state = InviteClientState::Accepted;
                    t.arm(out, TimerKind::M, out.cfg.t1x64());
                    (Deliver::ToTu, Next::Stay)
                }
                _ => {
                    let ack = ack_for_non2xx(&self.request, msg);
                    out.send(t.peer, ack.clone(), t.key);
                    self.ack = Some(ack);
                    self.state = InviteClientState::Completed;
                    let next = t.arm_wait(out, TimerKind::D, out.cfg.timer_d);
                    if next == Next::Terminate {
                        self.state = InviteClientState::Terminated;
                    }
                    (Deliver::ToTu, next)
                }
            },
            InviteClientState::Completed => {
                if status >= 300 {
                    if let Some(ack) = &self.ack {
                        out.send(t.peer, ack.clone(), t.key);
                    }
                }
                (Deliver::Absorb, Next::Stay)
            }
            InviteClientState::Accepted => match status {
                200..=299 => (Deliver::ToTu, Next::Stay),
                _ => (Deliver::Absorb, Next::Stay),
            },
            InviteClientState::Terminated => (Deliver::Absorb, Next::Stay),
        }
    }

    pub fn on_timer(&mut self, kind: TimerKind, t: &mut Timers<'_>, out: &mut Out<'_>) -> Next {
        match (kind, self.state) {
            (TimerKind::A, InviteClientState::Calling) => {
                out.send(t.peer, self.request.bytes().clone(), t.key);
                self.interval = self.interval.saturating_mul(2);
                t.arm(out, TimerKind::A, self.interval);
                Next::Stay
            }
            (TimerKind::B, InviteClientState::Calling) => {
                out.event(TxEvent::Timeout {
                    key: t.key.clone(),
                    timer: TimerKind::B,
                });
                self.state = InviteClientState::Terminated;
                Next::Terminate
            }
            (TimerKind::C, InviteClientState::Proceeding) => {
                if self.c_fired {
                    self.state = InviteClientState::Terminated;
                    return Next::Terminate;
                }
                self.c_fired = true;
                out.event(TxEvent::Timeout {
                    key: t.key.clone(),
                    timer: TimerKind::C,
                });
                // Grace period for the CANCEL/487 exchange, then give up.
                t.arm(out, TimerKind::C, out.cfg.t1x64());
                Next::Stay
            }
            (TimerKind::D, InviteClientState::Completed) | (TimerKind::M, InviteClientState::Accepted) => {
                self.state = InviteClientState::Terminated;
                Next::Terminate
            }
            _ => Next::Stay,
        }
    }
}

/// Non-INVITE client transaction.
pub(crate) struct NonInviteClient {
    pub state: NonInviteClientState,
    pub request: Bytes,
    /// Current Timer E interval.
    pub interval: Duration,
}

impl NonInviteClient {
    /// Sends the request and arms E (unreliable only) and F.
    pub fn start(request: Bytes, t: &mut Timers<'_>, out: &mut Out<'_>) -> Self {
        out.send(t.peer, request.clone(), t.key);
        let t1 = out.cfg.t1;
        if !t.peer.is_reliable() {
            t.arm(out, TimerKind::E, t1);
        }
        t.arm(out, TimerKind::F, out.cfg.t1x64());
        Self {
            state: NonInviteClientState::Trying,
            request,
            interval: t1,
        }
    }

    pub fn on_response(&mut self, status: u16, t: &mut Timers<'_>, out: &mut Out<'_>) -> (Deliver, Next) {
        match self.state {
            NonInviteClientState::Trying | NonInviteClientState::Proceeding => {
                if status < 200 {
                    self.state = NonInviteClientState::Proceeding;
                    return (Deliver::ToTu, Next::Stay);
                }
                self.state = NonInviteClientState::Completed;
                let next = t.arm_wait(out, TimerKind::K, out.cfg.t4);
                if next == Next::Terminate {
                    self.state = NonInviteClientState::Terminated;
                }
                (Deliver::ToTu, next)
            }
            NonInviteClientState::Completed | NonInviteClientState::Terminated => (Deliver::Absorb, Next::Stay),
        }
    }

    pub fn on_timer(&mut self, kind: TimerKind, t: &mut Timers<'_>, out: &mut Out<'_>) -> Next {
        match (kind, self.state) {
            (TimerKind::E, NonInviteClientState::Trying | NonInviteClientState::Proceeding) => {
                out.send(t.peer, self.request.clone(), t.key);
                self.interval = if self.state == NonInviteClientState::Proceeding {
                    out.cfg.t2
                } else {
                    self.interval.saturating_mul(2).min(out.cfg.t2)
                };
                t.arm(out, TimerKind::E, self.interval);
                Next::Stay
            }
            (TimerKind::F, NonInviteClientState::Trying | NonInviteClientState::Proceeding) => {
                out.event(TxEvent::Timeout {
                    key: t.key.clone(),
                    timer: TimerKind::F,
                });
                self.state = NonInviteClientState::Terminated;
                Next::Terminate
            }
            (TimerKind::K, NonInviteClientState::Completed) => {
                self.state = NonInviteClientState::Terminated;
                Next::Terminate
            }
            _ => Next::Stay,
        }
    }
}
