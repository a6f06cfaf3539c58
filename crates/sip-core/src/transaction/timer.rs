//! One shared deadline queue for all transactions: a min-heap with lazy deletion.
//!
//! Cancelling a timer only bumps the transaction's armed sequence number; stale heap entries
//! are skipped when popped and swept when they outnumber live ones, so the heap stays
//! proportional to the live transaction count.

use std::cmp::Ordering;
use std::collections::BinaryHeap;
use std::time::Instant;

use super::TxKey;

/// RFC 3261 17 timers (A-K), RFC 6026 L/M, and the delayed automatic 100 Trying.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum TimerKind {
    /// INVITE client request retransmission (unreliable only), doubling from T1.
    A,
    /// INVITE client transaction timeout in Calling, 64*T1.
    B,
    /// INVITE client bound in Proceeding (RFC 3261 16.6), restarted by provisionals.
    C,
    /// INVITE client wait in Completed for response retransmissions.
    D,
    /// Non-INVITE client request retransmission (unreliable only), doubling to T2.
    E,
    /// Non-INVITE client transaction timeout, 64*T1.
    F,
    /// INVITE server final-response retransmission (unreliable only), doubling to T2.
    G,
    /// INVITE server wait for ACK, 64*T1.
    H,
    /// INVITE server wait in Confirmed for ACK retransmissions, T4.
    I,
    /// Non-INVITE server wait in Completed for request retransmissions, 64*T1.
    J,
    /// Non-INVITE client wait in Completed for response retransmissions, T4.
    K,
    /// INVITE server Accepted state lifetime (RFC 6026), 64*T1.
    L,
    /// INVITE client Accepted state lifetime (RFC 6026), 64*T1.
    M,
    /// Delayed automatic 100 Trying (RFC 3261 17.2.1).
    Trying,
    /// Server transaction the TU never answered with a final response: non-INVITE after
    /// 64*T1 (the client gave up at Timer F), INVITE after Timer C + 64*T1. Not in the RFC;
    /// it keeps a silent TU from pinning state forever.
    Guard,
}

/// Which of a transaction's three timer slots a timer occupies: at most one timer per slot
/// is armed at a time, so re-arming a slot implicitly cancels its previous timer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Slot {
    Retransmit = 0,
    Lifetime = 1,
    Trying = 2,
}

impl TimerKind {
    pub(crate) fn slot(self) -> Slot {
        match self {
            TimerKind::A | TimerKind::E | TimerKind::G => Slot::Retransmit,
            TimerKind::Trying => Slot::Trying,
            TimerKind::B
            | TimerKind::C
            | TimerKind::D
            | TimerKind::F
            | TimerKind::H
            | TimerKind::I
            | TimerKind::J
            | TimerKind::K
            | TimerKind::L
            | TimerKind::M
            | TimerKind::Guard => Slot::Lifetime,
        }
    }
}

/// A scheduled timer. `seq` is globally unique, so an entry is live iff its transaction
/// still records `seq` in the entry's slot.
#[derive(Debug)]
pub(crate) struct TimerEntry {
    pub deadline: Instant,
    pub seq: u64,
    pub key: TxKey,
    pub kind: TimerKind,
}

impl PartialEq for TimerEntry {
    fn eq(&self, other: &Self) -> bool {
        self.seq == other.seq
    }
}
impl Eq for TimerEntry {}
impl PartialOrd for TimerEntry {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for TimerEntry {
    /// Reversed so `BinaryHeap` (a max-heap) pops the earliest deadline first.
    fn cmp(&self, other: &Self) -> Ordering {
        other
            .deadline
            .cmp(&self.deadline)
            .then_with(|| other.seq.cmp(&self.seq))
    }
}

/// The deadline heap.
#[derive(Debug, Default)]
pub(crate) struct TimerQueue {
    heap: BinaryHeap<TimerEntry>,
    next_seq: u64,
}

impl TimerQueue {
    /// Schedules a timer and returns its sequence number (never 0; 0 means "not armed").
    pub fn push(&mut self, deadline: Instant, key: TxKey, kind: TimerKind) -> u64 {
        self.next_seq += 1;
        let seq = self.next_seq;
        self.heap.push(TimerEntry {
            deadline,
            seq,
            key,
            kind,
        });
        seq
    }

    /// Earliest deadline (possibly of a stale entry: a harmless early wake-up).
    pub fn peek_deadline(&self) -> Option<Instant> {
        self.heap.peek().map(|e| e.deadline)
    }

    /// Pops the earliest entry if it is due.
    pub fn pop_due(&mut self, now: Instant) -> Option<TimerEntry> {
        if self.heap.peek()?.deadline <= now {
            self.heap.pop()
        } else {
            None
        }
    }

    pub fn len(&self) -> usize {
        self.heap.len()
    }

    /// Drops entries for which `live` is false (O(n); called when stale entries dominate).
    pub fn retain(&mut self, mut live: impl FnMut(&TimerEntry) -> bool) {
        self.heap.retain(|e| live(e));
    }
}
