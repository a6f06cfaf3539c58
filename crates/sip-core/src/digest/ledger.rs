//! The nonces that authorized something, so that a captured credential cannot be replayed.
//!
//! A stateless nonce stays valid for its whole lifetime; anyone who captured one
//! `Proxy-Authorization` could place new calls with it until then. The ledger ties a nonce to
//! the first dialog attempt (Call-ID) it authorized and requires each later use in that attempt
//! to carry a higher nonce count (RFC 7616 3.4: the server "should" check nc). Only successful
//! verifications write here, so a stranger cannot fill it; it is bounded anyway.

use std::collections::{HashMap, VecDeque};

/// Verdict of [`NonceLedger::record`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NonceUse {
    /// The nonce's first use.
    First,
    /// Same dialog attempt, higher nonce count: a legitimate new request.
    Again,
    /// Another dialog attempt, or a nonce count not above the last one: a replay.
    Replay,
}

#[derive(Debug)]
struct Entry {
    call_id: Box<str>,
    last_nc: u32,
}

/// Bounded record of used nonces; entries leave when their nonce would be stale anyway.
#[derive(Debug)]
pub struct NonceLedger {
    ttl_secs: u64,
    cap: usize,
    entries: HashMap<Box<str>, Entry>,
    /// Insertion order with the time, for expiry and, when full, eviction of the oldest.
    order: VecDeque<(u64, Box<str>)>,
}

impl NonceLedger {
    /// `ttl_secs`: the nonces' lifetime (a nonce older than that is refused before the ledger
    /// is asked). `cap`: entries kept at most.
    pub fn new(ttl_secs: u64, cap: usize) -> Self {
        NonceLedger {
            ttl_secs,
            cap: cap.max(1),
            entries: HashMap::new(),
            order: VecDeque::new(),
        }
    }

    /// Nonces tracked now.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Records that `nonce` with count `nc` authorized a request of dialog attempt `call_id`
    /// at `now` (Unix seconds), unless that is a replay.
    pub fn record(&mut self, now: u64, nonce: &str, call_id: &str, nc: u32) -> NonceUse {
        self.expire(now);
        if let Some(e) = self.entries.get_mut(nonce) {
            if &*e.call_id != call_id || nc <= e.last_nc {
                return NonceUse::Replay;
            }
            e.last_nc = nc;
            return NonceUse::Again;
        }
        while self.entries.len() >= self.cap {
            // Full of live entries: the oldest goes (its nonce has the least time left).
            match self.order.pop_front() {
                Some((_, n)) => {
                    self.entries.remove(&n);
                }
                None => break,
            }
        }
        let key: Box<str> = nonce.into();
        self.entries.insert(
            key.clone(),
            Entry {
                call_id: call_id.into(),
                last_nc: nc,
            },
        );
        self.order.push_back((now, key));
        NonceUse::First
    }

    fn expire(&mut self, now: u64) {
        // Twice the lifetime: a nonce minted just before its first use is still checked for that
        // long (clock skew between nodes is tolerated up to the lifetime, see `NonceMinter`).
        let horizon = self.ttl_secs.saturating_mul(2);
        while let Some((t, _)) = self.order.front() {
            if now.saturating_sub(*t) <= horizon {
                break;
            }
            if let Some((_, n)) = self.order.pop_front() {
                self.entries.remove(&n);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_nonce_belongs_to_one_attempt_and_its_count_must_grow() {
        let mut l = NonceLedger::new(30, 100);
        assert_eq!(l.record(0, "n1", "call-a", 1), NonceUse::First);
        assert_eq!(l.record(1, "n1", "call-a", 1), NonceUse::Replay, "same nc");
        assert_eq!(l.record(1, "n1", "call-a", 2), NonceUse::Again);
        assert_eq!(l.record(2, "n1", "call-b", 3), NonceUse::Replay, "another call");
        // Long after, the entry is gone (the nonce itself is stale by then).
        assert_eq!(l.record(200, "n1", "call-b", 1), NonceUse::First);
    }

    #[test]
    fn bounded_by_evicting_the_oldest() {
        let mut l = NonceLedger::new(30, 2);
        l.record(0, "a", "c", 1);
        l.record(0, "b", "c", 1);
        l.record(0, "c", "c", 1);
        assert_eq!(l.len(), 2);
        assert_eq!(l.record(0, "a", "x", 1), NonceUse::First, "evicted");
    }
}
