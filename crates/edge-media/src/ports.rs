//! Pool of RTP/RTCP port pairs with a reuse quarantine.
//!
//! A released pair waits `quarantine` before reuse so late packets of an old
//! call can never leak into a new one.
//!
//! A relay's pairs come back *bound* (up to `cache_pairs` of them): their sockets stay open and
//! registered, wait out the quarantine like any pair, and serve the next relay. Binding and closing four
//! sockets per call (socket, bind, epoll_ctl add/delete, close) was 14% of the edge's CPU under SIPp load
//! in `perf`; a parked socket also swallows the late packets of its old call instead of answering them
//! with ICMP errors. They are drained before reuse.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use crate::socket::ReadableUdp;

/// An RTP port (even) and its RTCP neighbour, bound: `sockets[0]` RTP, `sockets[1]` RTCP.
#[derive(Debug)]
pub(crate) struct BoundPair {
    pub(crate) port: u16,
    pub(crate) sockets: [ReadableUdp; 2],
    /// Its two places in the socket budget, given back when the sockets close.
    pub(crate) _ticket: crate::budget::SocketTicket,
}

/// Stale datagrams read (and dropped) from a parked socket before it is reused; past that the socket is
/// flooded and is closed rather than handed to a new call.
const STALE_DRAIN_MAX: usize = 256;

impl BoundPair {
    /// Empties both sockets of what arrived while parked; false if either still floods.
    fn drain_stale(&self) -> bool {
        let mut buf = [0u8; 2048];
        self.sockets.iter().all(|s| {
            (0..STALE_DRAIN_MAX)
                .any(|_| matches!(s.try_recv_from(&mut buf), Err(e) if e.kind() == std::io::ErrorKind::WouldBlock))
        })
    }
}

/// Pool state; one mutex, touched only at call setup/teardown.
#[derive(Debug)]
pub(crate) struct PortPool {
    state: Mutex<PoolState>,
    quarantine: Duration,
    /// Bound pairs kept at most (parked + ready); each holds two file descriptors.
    cache_pairs: usize,
}

#[derive(Debug)]
struct PoolState {
    free: VecDeque<u16>,
    quarantined: VecDeque<(u16, Instant)>,
    /// Bound pairs in quarantine, oldest first.
    parked: VecDeque<(BoundPair, Instant)>,
    /// Bound pairs past quarantine, ready for a relay.
    ready: Vec<BoundPair>,
}

impl PortPool {
    /// Pairs `(even, even+1)` fully inside `lo..=hi`.
    /// Up to `cache_pairs` released pairs are kept bound for reuse.
    pub(crate) fn new(lo: u16, hi: u16, quarantine: Duration, cache_pairs: usize) -> Self {
        let first = lo.saturating_add(lo & 1);
        let free = (u32::from(first)..u32::from(hi))
            .step_by(2)
            .filter_map(|p| u16::try_from(p).ok())
            .filter(|&p| p.checked_add(1).is_some_and(|rtcp| rtcp <= hi))
            .collect();
        PortPool {
            state: Mutex::new(PoolState {
                free,
                quarantined: VecDeque::new(),
                parked: VecDeque::new(),
                ready: Vec::new(),
            }),
            quarantine,
            cache_pairs,
        }
    }

    fn lock(&self) -> MutexGuard<'_, PoolState> {
        // A poisoned pool is still consistent (no multi-step invariants), keep going.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn promote(state: &mut PoolState, now: Instant) {
        while let Some(&(port, until)) = state.quarantined.front() {
            if until > now {
                break;
            }
            state.quarantined.pop_front();
            state.free.push_back(port);
        }
        while state.parked.front().is_some_and(|(_, until)| *until <= now) {
            if let Some((pair, _)) = state.parked.pop_front() {
                state.ready.push(pair);
            }
        }
    }

    /// Up to `n` bound pairs past quarantine, emptied of stale packets; a flooded one is closed (the
    /// caller binds a fresh pair in its place).
    pub(crate) fn take_bound(&self, n: usize) -> Vec<BoundPair> {
        let taken: Vec<BoundPair> = {
            let mut state = self.lock();
            Self::promote(&mut state, Instant::now());
            let keep = state.ready.len().saturating_sub(n);
            state.ready.split_off(keep)
        };
        taken
            .into_iter()
            .filter_map(|pair| {
                if pair.drain_stale() {
                    return Some(pair);
                }
                tracing::warn!(port = pair.port, "parked media port flooded: closed, not reused");
                self.release(&[pair.port]);
                None
            })
            .collect()
    }

    /// Takes back the bound pairs of a finished relay: kept bound (in quarantine) while the cache has
    /// room, else closed and their ports quarantined.
    pub(crate) fn park(&self, pairs: impl IntoIterator<Item = BoundPair>) {
        let until = Instant::now() + self.quarantine;
        let mut closed = Vec::new();
        {
            let mut state = self.lock();
            for pair in pairs {
                if state.parked.len() + state.ready.len() < self.cache_pairs {
                    state.parked.push_back((pair, until));
                } else {
                    state.quarantined.push_back((pair.port, until));
                    closed.push(pair);
                }
            }
        }
        // Sockets close here, outside the lock.
        drop(closed);
    }

    /// Returns unused bound pairs (an allocation that failed half way) as ready.
    pub(crate) fn unpark(&self, pairs: Vec<BoundPair>) {
        self.lock().ready.extend(pairs);
    }

    /// Closes up to `n` cached pairs (ready ones first) to give their file descriptors back; how many.
    pub(crate) fn evict(&self, n: usize) -> usize {
        let mut closed = Vec::new();
        {
            let mut state = self.lock();
            while closed.len() < n {
                if let Some(pair) = state.ready.pop() {
                    state.free.push_back(pair.port);
                    closed.push(pair);
                } else if let Some((pair, until)) = state.parked.pop_front() {
                    state.quarantined.push_back((pair.port, until));
                    closed.push(pair);
                } else {
                    break;
                }
            }
        }
        closed.len()
    }

    /// Takes `n` pairs at once, or none.
    pub(crate) fn take(&self, n: usize) -> Option<Vec<u16>> {
        let mut state = self.lock();
        Self::promote(&mut state, Instant::now());
        if state.free.len() < n {
            return None;
        }
        Some(state.free.drain(..n).collect())
    }

    /// Returns pairs (closed) into quarantine.
    pub(crate) fn release(&self, ports: &[u16]) {
        let until = Instant::now() + self.quarantine;
        let mut state = self.lock();
        state.quarantined.extend(ports.iter().map(|&p| (p, until)));
    }

    /// (free now, in quarantine) pair counts.
    pub(crate) fn counts(&self) -> (usize, usize) {
        let mut state = self.lock();
        Self::promote(&mut state, Instant::now());
        (
            state.free.len() + state.ready.len(),
            state.quarantined.len() + state.parked.len(),
        )
    }
}

/// Ownership of some port pairs; returns them to quarantine on drop.
#[derive(Debug)]
pub(crate) struct PortLease {
    pool: Arc<PortPool>,
    ports: Vec<u16>,
}

impl PortLease {
    pub(crate) fn new(pool: Arc<PortPool>, ports: Vec<u16>) -> Self {
        PortLease { pool, ports }
    }
}

impl PortLease {
    /// Gives up ownership without returning the ports (a [`BoundPair`] owns them now).
    pub(crate) fn forget(mut self) {
        self.ports.clear();
    }
}

impl Drop for PortLease {
    fn drop(&mut self) {
        self.pool.release(&self.ports);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pairs_are_even_and_inside_range() {
        let pool = PortPool::new(10001, 10010, Duration::ZERO, 0);
        assert_eq!(pool.take(4), Some(vec![10002, 10004, 10006, 10008]));
        assert_eq!(pool.take(1), None, "10010 has no odd partner in range");
    }

    #[test]
    fn all_or_nothing_and_quarantine() {
        let pool = PortPool::new(10000, 10003, Duration::from_secs(60), 0);
        let got = pool.take(2).unwrap();
        assert_eq!(pool.take(1), None);
        pool.release(&got);
        assert_eq!(pool.counts(), (0, 2));
        assert_eq!(pool.take(1), None);
    }
}
