//! Slowing down password guessing on agent digest.
//!
//! Each failed digest check counts against the source address and against the username. After
//! `failures_before_backoff` failures in a row, that source (or username) is ignored for a back-off
//! that doubles with every further failure up to `max_backoff`; after `lockout_after` failures it is
//! ignored for `lockout`. Ignored means silence: no challenge, no 403, nothing to time. A success
//! clears the source's count and the username's.
//!
//! A username lock-out would let a guesser lock a real agent out from anywhere; so a username keeps
//! the few addresses it last authenticated from, and those are judged by their own count only.
//!
//! Both tables are bounded; failures are forgotten after `forget_after` of quiet.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// `[outbound] agent_digest_*` settings for throttling.
#[derive(Debug, Clone)]
pub struct GuardConfig {
    pub failures_before_backoff: u32,
    pub max_backoff: Duration,
    pub lockout_after: u32,
    pub lockout: Duration,
    /// Failures with no new one for this long are forgotten.
    pub forget_after: Duration,
    /// Sources and usernames tracked at most (each).
    pub tracked: usize,
}

impl Default for GuardConfig {
    fn default() -> Self {
        GuardConfig {
            failures_before_backoff: 3,
            max_backoff: Duration::from_secs(60),
            lockout_after: 20,
            lockout: Duration::from_secs(900),
            forget_after: Duration::from_secs(900),
            tracked: 65_536,
        }
    }
}

/// Counters for /metrics.
#[derive(Debug, Default)]
pub struct GuardStats {
    /// Digest attempts ignored because their source or username is backing off or locked out.
    pub throttled: AtomicU64,
    /// Times a source or username entered a lock-out.
    pub lockouts: AtomicU64,
    pub locked_sources: AtomicU64,
    pub locked_usernames: AtomicU64,
}

#[derive(Debug, Clone)]
struct Failures {
    count: u32,
    last: Instant,
    blocked_until: Option<Instant>,
    locked: bool,
}

#[derive(Debug, Default)]
struct UserEntry {
    failures: Option<Failures>,
    /// Addresses this username authenticated from lately (at most [`TRUSTED_PER_USER`]).
    trusted: Vec<IpAddr>,
}

const TRUSTED_PER_USER: usize = 4;

/// Why an attempt is ignored.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Blocked {
    Source,
    Username,
}

/// The failure counts and blocks of sources and usernames.
pub struct DigestGuard {
    cfg: GuardConfig,
    sources: HashMap<IpAddr, Failures>,
    users: HashMap<Box<str>, UserEntry>,
    pub stats: Arc<GuardStats>,
}

/// What [`DigestGuard::failed`] changed, so the caller can log the rare transitions only.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Escalation {
    None,
    BackingOff,
    LockedOut,
}

impl DigestGuard {
    pub fn new(cfg: GuardConfig) -> Self {
        DigestGuard {
            cfg,
            sources: HashMap::new(),
            users: HashMap::new(),
            stats: Arc::new(GuardStats::default()),
        }
    }

    /// May an attempt from `ip` (for `username`, when it named one) be checked at `now`?
    pub fn check(&mut self, now: Instant, ip: IpAddr, username: Option<&str>) -> Result<(), Blocked> {
        if blocked(self.sources.get(&ip), now) {
            self.stats.throttled.fetch_add(1, Ordering::Relaxed);
            return Err(Blocked::Source);
        }
        if let Some(u) = username.and_then(|u| self.users.get(u)) {
            if !u.trusted.contains(&ip) && blocked(u.failures.as_ref(), now) {
                self.stats.throttled.fetch_add(1, Ordering::Relaxed);
                return Err(Blocked::Username);
            }
        }
        Ok(())
    }

    /// A failed check from `ip` for `username`.
    pub fn failed(&mut self, now: Instant, ip: IpAddr, username: Option<&str>) -> Escalation {
        let cfg = self.cfg.clone();
        if self.sources.len() >= cfg.tracked && !self.sources.contains_key(&ip) {
            self.sources.retain(|_, f| !forgotten(f, now, &cfg));
        }
        let mut worst = Escalation::None;
        if self.sources.len() < cfg.tracked || self.sources.contains_key(&ip) {
            let f = self.sources.entry(ip).or_insert_with(|| fresh(now));
            worst = bump(f, now, &cfg);
        }
        if let Some(name) = username.filter(|n| !n.is_empty() && n.len() <= 256) {
            if self.users.len() >= cfg.tracked && !self.users.contains_key(name) {
                self.users.retain(|_, u| {
                    !u.trusted.is_empty() || u.failures.as_ref().is_some_and(|f| !forgotten(f, now, &cfg))
                });
            }
            if self.users.len() < cfg.tracked || self.users.contains_key(name) {
                let u = self.users.entry(name.into()).or_default();
                let f = u.failures.get_or_insert_with(|| fresh(now));
                let e = bump(f, now, &cfg);
                if e != Escalation::None {
                    worst = e;
                }
            }
        }
        if worst == Escalation::LockedOut {
            self.stats.lockouts.fetch_add(1, Ordering::Relaxed);
        }
        self.publish(now);
        worst
    }

    /// A successful check: the source and the username start afresh; the source becomes one of the
    /// username's trusted addresses.
    pub fn succeeded(&mut self, now: Instant, ip: IpAddr, username: &str) {
        self.sources.remove(&ip);
        if let Some(u) = self.users.get_mut(username) {
            u.failures = None;
            if !u.trusted.contains(&ip) {
                if u.trusted.len() >= TRUSTED_PER_USER {
                    u.trusted.remove(0);
                }
                u.trusted.push(ip);
            }
        } else if self.users.len() < self.cfg.tracked {
            self.users.insert(
                username.into(),
                UserEntry {
                    failures: None,
                    trusted: vec![ip],
                },
            );
        }
        self.publish(now);
    }

    fn publish(&self, now: Instant) {
        let locked_sources = self
            .sources
            .values()
            .filter(|f| blocked(Some(f), now) && f.locked)
            .count();
        let locked_users = self
            .users
            .values()
            .filter(|u| u.failures.as_ref().is_some_and(|f| blocked(Some(f), now) && f.locked))
            .count();
        self.stats
            .locked_sources
            .store(locked_sources as u64, Ordering::Relaxed);
        self.stats
            .locked_usernames
            .store(locked_users as u64, Ordering::Relaxed);
    }
}

fn fresh(now: Instant) -> Failures {
    Failures {
        count: 0,
        last: now,
        blocked_until: None,
        locked: false,
    }
}

fn forgotten(f: &Failures, now: Instant, cfg: &GuardConfig) -> bool {
    !blocked(Some(f), now) && now.saturating_duration_since(f.last) >= cfg.forget_after
}

fn blocked(f: Option<&Failures>, now: Instant) -> bool {
    f.and_then(|f| f.blocked_until).is_some_and(|t| t > now)
}

fn bump(f: &mut Failures, now: Instant, cfg: &GuardConfig) -> Escalation {
    if forgotten(f, now, cfg) {
        *f = fresh(now);
    }
    f.count = f.count.saturating_add(1);
    f.last = now;
    if f.count >= cfg.lockout_after {
        let was = f.locked && blocked(Some(f), now);
        f.blocked_until = Some(now + cfg.lockout);
        f.locked = true;
        return if was { Escalation::None } else { Escalation::LockedOut };
    }
    if f.count >= cfg.failures_before_backoff {
        let exp = (f.count - cfg.failures_before_backoff).min(16);
        let backoff = Duration::from_secs(1u64 << exp).min(cfg.max_backoff);
        f.blocked_until = Some(now + backoff);
        return Escalation::BackingOff;
    }
    Escalation::None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    fn guard() -> DigestGuard {
        DigestGuard::new(GuardConfig {
            failures_before_backoff: 3,
            max_backoff: Duration::from_secs(8),
            lockout_after: 6,
            lockout: Duration::from_secs(600),
            forget_after: Duration::from_secs(900),
            tracked: 100,
        })
    }

    #[test]
    fn back_off_grows_then_locks_out() {
        let mut g = guard();
        let (t0, a) = (Instant::now(), ip("192.0.2.1"));
        let mut t = t0;
        for _ in 0..2 {
            assert!(g.check(t, a, Some("u")).is_ok());
            assert_eq!(g.failed(t, a, Some("u")), Escalation::None);
        }
        assert_eq!(g.failed(t, a, Some("u")), Escalation::BackingOff);
        assert_eq!(g.check(t, a, Some("u")), Err(Blocked::Source));
        // 1 s later it may try again; the next failure blocks for 2 s, then 4 s.
        t += Duration::from_secs(1);
        assert!(g.check(t, a, None).is_ok());
        g.failed(t, a, Some("u"));
        assert!(g.check(t + Duration::from_millis(1_900), a, None).is_err());
        assert!(g.check(t + Duration::from_secs(2), a, None).is_ok());
        t += Duration::from_secs(2);
        g.failed(t, a, Some("u"));
        t += Duration::from_secs(4);
        assert_eq!(g.failed(t, a, Some("u")), Escalation::LockedOut);
        assert!(g.check(t + Duration::from_secs(599), a, None).is_err());
        assert_eq!(g.stats.lockouts.load(Ordering::Relaxed), 1);
        assert_eq!(g.stats.locked_sources.load(Ordering::Relaxed), 1);
    }

    #[test]
    fn a_username_under_attack_does_not_lock_out_its_own_agent() {
        let mut g = guard();
        let t = Instant::now();
        let home = ip("198.51.100.7");
        g.succeeded(t, home, "agent7");
        // A distributed guesser: one failure each from many addresses.
        for i in 0..10u8 {
            g.failed(t, ip(&format!("203.0.113.{i}")), Some("agent7"));
        }
        assert_eq!(g.check(t, ip("203.0.113.200"), Some("agent7")), Err(Blocked::Username));
        assert!(
            g.check(t, home, Some("agent7")).is_ok(),
            "its own address still gets in"
        );
        // Success clears the username's count.
        g.succeeded(t, home, "agent7");
        assert!(g.check(t, ip("203.0.113.200"), Some("agent7")).is_ok());
    }

    #[test]
    fn tables_are_bounded() {
        let mut g = guard();
        let t = Instant::now();
        for i in 0..1000u32 {
            let a = IpAddr::from(std::net::Ipv4Addr::from(0x0a00_0000 + i));
            g.failed(t, a, Some(&format!("user{i}")));
        }
        assert!(g.sources.len() <= 100 && g.users.len() <= 100);
    }
}
