//! Per-transaction record and the output sink the state machines write to.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use bytes::Bytes;

use super::client::{InviteClient, NonInviteClient};
use super::server::{InviteServer, NonInviteServer};
use super::timer::{Slot, TimerKind, TimerQueue};
use super::{Peer, TimerConfig, Transmit, TxEvent, TxKey, TxState};

/// Whether a transition leaves the transaction alive.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Next {
    Stay,
    Terminate,
}

/// Everything a state machine may touch besides its own fields.
pub(crate) struct Out<'a> {
    pub now: Instant,
    pub cfg: &'a TimerConfig,
    pub timers: &'a mut TimerQueue,
    pub transmits: &'a mut VecDeque<Transmit>,
    pub events: &'a mut VecDeque<TxEvent>,
}

impl Out<'_> {
    pub fn send(&mut self, to: Peer, bytes: Bytes, key: &TxKey) {
        self.transmits.push_back(Transmit {
            to,
            bytes,
            key: Some(key.clone()),
        });
    }

    pub fn event(&mut self, ev: TxEvent) {
        self.events.push_back(ev);
    }
}

/// Common transaction fields plus the kind-specific state machine.
pub(crate) struct Tx {
    pub peer: Peer,
    /// Sequence number of the armed timer per [`Slot`]; 0 = none.
    pub armed: [u64; 3],
    pub kind: TxKind,
}

pub(crate) enum TxKind {
    InviteClient(InviteClient),
    NonInviteClient(NonInviteClient),
    InviteServer(InviteServer),
    NonInviteServer(NonInviteServer),
}

/// Timer handles of one transaction, borrowed separately from its state machine.
pub(crate) struct Timers<'a> {
    pub key: &'a TxKey,
    pub peer: Peer,
    pub armed: &'a mut [u64; 3],
}

impl Timers<'_> {
    /// Arms `kind` after `d`, replacing whatever occupied its slot. A deadline past the
    /// representable range leaves the slot unarmed rather than panicking.
    pub fn arm(&mut self, out: &mut Out<'_>, kind: TimerKind, d: Duration) {
        let slot = kind.slot() as usize;
        self.armed[slot] = out.timers.push(out.now, d, self.key.clone(), kind).unwrap_or(0);
    }

    pub fn disarm(&mut self, slot: Slot) {
        self.armed[slot as usize] = 0;
    }

    /// Arms a "wait" timer, or reports that it is zero on a reliable transport
    /// (Timers D, I, J, K), in which case the transaction terminates now.
    pub fn arm_wait(&mut self, out: &mut Out<'_>, kind: TimerKind, unreliable: Duration) -> Next {
        self.disarm(Slot::Retransmit);
        if self.peer.is_reliable() {
            self.disarm(Slot::Lifetime);
            Next::Terminate
        } else {
            self.arm(out, kind, unreliable);
            Next::Stay
        }
    }
}

impl Tx {
    pub fn state(&self) -> TxState {
        match &self.kind {
            TxKind::InviteClient(c) => TxState::InviteClient(c.state),
            TxKind::NonInviteClient(c) => TxState::NonInviteClient(c.state),
            TxKind::InviteServer(s) => TxState::InviteServer(s.state),
            TxKind::NonInviteServer(s) => TxState::NonInviteServer(s.state),
        }
    }

    /// Splits into the timer handles and the state machine so both can be borrowed mutably.
    pub fn parts<'a>(&'a mut self, key: &'a TxKey) -> (Timers<'a>, &'a mut TxKind) {
        (
            Timers {
                key,
                peer: self.peer,
                armed: &mut self.armed,
            },
            &mut self.kind,
        )
    }
}
