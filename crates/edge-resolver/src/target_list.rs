//! Failover over resolved targets (RFC 3263 4.3): try in order, skip recently dead ones.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use crate::target::Target;

/// How long a target that timed out or answered 503 is avoided.
pub const DEFAULT_DEAD_FOR: Duration = Duration::from_secs(30);

/// Bound on remembered dead addresses, so a flood of distinct failures cannot grow memory.
const MAX_DEAD: usize = 4096;

/// Addresses that failed recently, shared by all calls (cheap to clone via `Arc`).
#[derive(Debug)]
pub struct DeadTargets {
    dead_for: Duration,
    until: Mutex<HashMap<SocketAddr, Instant>>,
}

impl DeadTargets {
    pub fn new(dead_for: Duration) -> Arc<DeadTargets> {
        Arc::new(DeadTargets {
            dead_for,
            until: Mutex::new(HashMap::new()),
        })
    }

    fn map(&self) -> MutexGuard<'_, HashMap<SocketAddr, Instant>> {
        // A panic while holding the lock cannot leave the map inconsistent (single inserts).
        self.until.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Remember `addr` as dead from `now` for the configured period.
    pub fn mark_failed_at(&self, addr: SocketAddr, now: Instant) {
        let mut m = self.map();
        if m.len() >= MAX_DEAD {
            m.retain(|_, until| *until > now);
            if m.len() >= MAX_DEAD {
                // Still full of live entries: forget the one closest to expiry.
                if let Some(k) = m.iter().min_by_key(|(_, u)| **u).map(|(k, _)| *k) {
                    m.remove(&k);
                }
            }
        }
        m.insert(addr, now + self.dead_for);
    }

    pub fn mark_failed(&self, addr: SocketAddr) {
        self.mark_failed_at(addr, Instant::now());
    }

    pub fn is_dead_at(&self, addr: SocketAddr, now: Instant) -> bool {
        let mut m = self.map();
        match m.get(&addr) {
            Some(until) if *until > now => true,
            Some(_) => {
                m.remove(&addr);
                false
            }
            None => false,
        }
    }

    pub fn is_dead(&self, addr: SocketAddr) -> bool {
        self.is_dead_at(addr, Instant::now())
    }
}

/// One request's walk over its targets. Live targets come first in resolution order; when
/// they run out, the skipped dead ones are tried as a last resort (a call should not fail
/// only because every server had a bad moment within the last 30 s).
#[derive(Debug)]
pub struct TargetList {
    targets: Vec<Target>,
    next: usize,
    skipped: Vec<Target>,
    dead: Arc<DeadTargets>,
}

impl TargetList {
    pub fn new(targets: Vec<Target>, dead: Arc<DeadTargets>) -> TargetList {
        TargetList {
            targets,
            next: 0,
            skipped: Vec::new(),
            dead,
        }
    }

    pub fn next_target(&mut self) -> Option<Target> {
        self.next_target_at(Instant::now())
    }

    /// Next target to try at `now`, `None` when all were handed out.
    pub fn next_target_at(&mut self, now: Instant) -> Option<Target> {
        while let Some(t) = self.targets.get(self.next).copied() {
            self.next += 1;
            if self.dead.is_dead_at(t.addr, now) {
                self.skipped.push(t);
            } else {
                return Some(t);
            }
        }
        if self.skipped.is_empty() {
            None
        } else {
            Some(self.skipped.remove(0))
        }
    }

    /// The target timed out or answered 503: avoid it (for every call) for a while.
    pub fn mark_failed(&self, addr: SocketAddr) {
        self.dead.mark_failed(addr);
    }

    pub fn mark_failed_at(&self, addr: SocketAddr, now: Instant) {
        self.dead.mark_failed_at(addr, now);
    }

    /// All targets in resolution order (for logging).
    pub fn targets(&self) -> &[Target] {
        &self.targets
    }
}
