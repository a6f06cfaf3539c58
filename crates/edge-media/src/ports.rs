//! Pool of RTP/RTCP port pairs with a reuse quarantine.
//!
//! A released pair waits `quarantine` before reuse so late packets of an old
//! call can never leak into a new one.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

/// Pool state; one mutex, touched only at call setup/teardown.
#[derive(Debug)]
pub(crate) struct PortPool {
    state: Mutex<PoolState>,
    quarantine: Duration,
}

#[derive(Debug)]
struct PoolState {
    free: VecDeque<u16>,
    quarantined: VecDeque<(u16, Instant)>,
}

impl PortPool {
    /// Pairs `(even, even+1)` fully inside `lo..=hi`.
    pub(crate) fn new(lo: u16, hi: u16, quarantine: Duration) -> Self {
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
            }),
            quarantine,
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

    /// Returns pairs into quarantine.
    pub(crate) fn release(&self, ports: &[u16]) {
        let until = Instant::now() + self.quarantine;
        let mut state = self.lock();
        state.quarantined.extend(ports.iter().map(|&p| (p, until)));
    }

    /// (free now, in quarantine) pair counts.
    pub(crate) fn counts(&self) -> (usize, usize) {
        let mut state = self.lock();
        Self::promote(&mut state, Instant::now());
        (state.free.len(), state.quarantined.len())
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
        let pool = PortPool::new(10001, 10010, Duration::ZERO);
        assert_eq!(pool.take(4), Some(vec![10002, 10004, 10006, 10008]));
        assert_eq!(pool.take(1), None, "10010 has no odd partner in range");
    }

    #[test]
    fn all_or_nothing_and_quarantine() {
        let pool = PortPool::new(10000, 10003, Duration::from_secs(60));
        let got = pool.take(2).unwrap();
        assert_eq!(pool.take(1), None);
        pool.release(&got);
        assert_eq!(pool.counts(), (0, 2));
        assert_eq!(pool.take(1), None);
    }
}
