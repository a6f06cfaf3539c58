//! One shared deadline queue for all transactions (per-duration FIFOs plus a min-heap), with
//! lazy deletion.
//!
//! Cancelling a timer only bumps the transaction's armed sequence number; stale heap entries
//! are skipped when popped and swept when they outnumber live ones, so the heap stays
//! proportional to the live transaction count.

use std::cmp::Ordering;
use std::collections::{BinaryHeap, VecDeque};
use std::time::{Duration, Instant};

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

/// Timers armed with one fixed duration, in deadline order (valid while `now` never goes
/// backwards, which `push` checks).
#[derive(Debug)]
struct Fifo {
    interval: Duration,
    q: VecDeque<TimerEntry>,
}

/// Most FIFOs kept; durations beyond these go to the heap (only a handful exist: T1, T2,
/// T4, 64*T1, Timer C, the doubled retransmission intervals).
const MAX_FIFOS: usize = 16;

/// The deadline queue. Most timers have one of a few fixed durations, so each duration gets
/// a FIFO with O(1) push/pop (deadlines arrive in order); the rest, and anything pushed out
/// of order, go to a binary heap. Pops take the earliest `(deadline, seq)` over all fronts.
#[derive(Debug, Default)]
pub(crate) struct TimerQueue {
    heap: BinaryHeap<TimerEntry>,
    fifos: Vec<Fifo>,
    next_seq: u64,
}

/// Where the earliest entry lives.
#[derive(Clone, Copy)]
enum Src {
    Heap,
    Fifo(usize),
}

impl TimerQueue {
    /// Schedules a timer `interval` after `now` and returns its sequence number (never 0;
    /// 0 means "not armed"), or `None` if the deadline is not representable.
    pub fn push(&mut self, now: Instant, interval: Duration, key: TxKey, kind: TimerKind) -> Option<u64> {
        let deadline = now.checked_add(interval)?;
        self.next_seq += 1;
        let seq = self.next_seq;
        let entry = TimerEntry {
            deadline,
            seq,
            key,
            kind,
        };
        match self.fifos.iter().position(|f| f.interval == interval) {
            Some(i) => {
                let q = &mut self.fifos[i].q;
                if q.back().is_none_or(|b| b.deadline <= deadline) {
                    q.push_back(entry);
                } else {
                    self.heap.push(entry);
                }
            }
            None if self.fifos.len() < MAX_FIFOS => {
                self.fifos.push(Fifo {
                    interval,
                    q: VecDeque::from([entry]),
                });
            }
            None => self.heap.push(entry),
        }
        Some(seq)
    }

    fn earliest(&self) -> Option<(Instant, Src)> {
        let mut best = self.heap.peek().map(|e| (e.deadline, e.seq, Src::Heap));
        for (i, f) in self.fifos.iter().enumerate() {
            if let Some(e) = f.q.front() {
                if best.is_none_or(|(d, s, _)| (e.deadline, e.seq) < (d, s)) {
                    best = Some((e.deadline, e.seq, Src::Fifo(i)));
                }
            }
        }
        best.map(|(d, _, src)| (d, src))
    }

    /// Earliest deadline (possibly of a stale entry: a harmless early wake-up).
    pub fn peek_deadline(&self) -> Option<Instant> {
        self.earliest().map(|(d, _)| d)
    }

    /// Pops the earliest entry if it is due.
    pub fn pop_due(&mut self, now: Instant) -> Option<TimerEntry> {
        let (deadline, src) = self.earliest()?;
        if deadline > now {
            return None;
        }
        match src {
            Src::Heap => self.heap.pop(),
            Src::Fifo(i) => self.fifos.get_mut(i).and_then(|f| f.q.pop_front()),
        }
    }

    pub fn len(&self) -> usize {
        self.heap.len() + self.fifos.iter().map(|f| f.q.len()).sum::<usize>()
    }

    /// Drops entries for which `live` is false (O(n); called when stale entries dominate).
    /// FIFO order is preserved, so FIFOs stay sorted.
    pub fn retain(&mut self, mut live: impl FnMut(&TimerEntry) -> bool) {
        self.heap.retain(|e| live(e));
        for f in &mut self.fifos {
            f.q.retain(|e| live(e));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::message::Method;
    use crate::transaction::TxKeyKind;

    fn key() -> TxKey {
        TxKey::new(TxKeyKind::Client {
            branch: "z9hG4bKq".into(),
            method: Method::Options,
        })
    }

    /// Entries from FIFOs, out-of-order pushes (heap fallback) and many distinct durations
    /// (beyond MAX_FIFOS) all pop in (deadline, seq) order.
    #[test]
    fn pops_in_deadline_order_across_fifos_and_heap() {
        let t0 = Instant::now();
        let mut q = TimerQueue::default();
        let mut expected = Vec::new();
        for i in 0..40u64 {
            // `now` goes backwards every 5th push to force the heap path.
            let now = t0 + Duration::from_millis(if i % 5 == 0 { 0 } else { i * 10 });
            let d = Duration::from_millis(100 * (i % 20 + 1));
            let seq = q.push(now, d, key(), TimerKind::E).unwrap();
            expected.push((now + d, seq));
        }
        expected.sort();
        assert_eq!(q.len(), 40);
        let far = t0 + Duration::from_secs(60);
        let got: Vec<_> = std::iter::from_fn(|| q.pop_due(far))
            .map(|e| (e.deadline, e.seq))
            .collect();
        assert_eq!(got, expected);
        assert_eq!(q.peek_deadline(), None);
    }

    #[test]
    fn nothing_pops_before_its_deadline() {
        let t0 = Instant::now();
        let mut q = TimerQueue::default();
        q.push(t0, Duration::from_secs(1), key(), TimerKind::K);
        assert!(q.pop_due(t0 + Duration::from_millis(999)).is_none());
        assert_eq!(q.peek_deadline(), Some(t0 + Duration::from_secs(1)));
        assert!(q.pop_due(t0 + Duration::from_secs(1)).is_some());
    }
}
