//! What every engine shard counts together. Each limit below is a promise to an operator or a customer
//! for the whole edge; were each shard to keep its own, N shards would grant N times each of them.
//!
//! * Agent concurrency and trunk pacing: [`crate::call::AgentSlots`] and [`crate::call::TrunkPacer`], shared
//!   by cloning (one handle per shard).
//! * [`SharedAdmission`]: the per-source and all-strangers buckets, and the vouched-for addresses.
//! * [`SharedAgentAuth`]: the digest nonce ledger (a nonce is good for one call, on any shard) and the
//!   guard against password guessing.
//!
//! Locks are held for one table operation, never across IO or an await; a poisoned lock (a panic while
//! holding it) is taken over as it is rather than spreading the panic to every shard.

use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Instant;

use crate::sip::admission::{Admission, AdmissionStats, Refusal, SourceClass};
use crate::sip::agent_auth::{AgentAuth, AgentAuthStats, AuthOutcome};
use crate::sip::digest_guard::GuardStats;

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// [`Admission`], one for the edge.
#[derive(Clone)]
pub struct SharedAdmission {
    inner: Arc<Mutex<Admission>>,
    pub stats: Arc<AdmissionStats>,
}

impl SharedAdmission {
    pub fn new(admission: Admission) -> Self {
        SharedAdmission {
            stats: admission.stats.clone(),
            inner: Arc::new(Mutex::new(admission)),
        }
    }

    /// [`Admission::admit`]; carriers, never limited there, take no lock.
    pub fn admit(&self, now: Instant, ip: IpAddr, class: &SourceClass) -> Result<(), Refusal> {
        if matches!(class, SourceClass::Carrier(_)) {
            return Ok(());
        }
        lock(&self.inner).admit(now, ip, class)
    }

    /// [`Admission::vouch`].
    pub fn vouch(&self, now: Instant, ip: IpAddr) {
        lock(&self.inner).vouch(now, ip)
    }

    /// [`Admission::set_config`]: one call for every shard.
    pub fn set_config(&self, cfg: crate::sip::admission::AdmissionConfig) {
        lock(&self.inner).set_config(cfg)
    }

    /// [`Admission::shared_transaction_limit`].
    pub fn shared_transaction_limit(&self, max_transactions: usize) -> usize {
        lock(&self.inner).shared_transaction_limit(max_transactions)
    }
}

/// [`AgentAuth`] (nonce ledger and guard), one for the edge.
#[derive(Clone)]
pub struct SharedAgentAuth {
    inner: Arc<Mutex<AgentAuth>>,
    pub stats: Arc<AgentAuthStats>,
    guard_stats: Arc<GuardStats>,
}

impl SharedAgentAuth {
    pub fn new(auth: AgentAuth) -> Self {
        SharedAgentAuth {
            stats: auth.stats.clone(),
            guard_stats: auth.guard_stats(),
            inner: Arc::new(Mutex::new(auth)),
        }
    }

    pub fn guard_stats(&self) -> Arc<GuardStats> {
        self.guard_stats.clone()
    }

    /// [`AgentAuth::check`].
    pub fn check(&self, now: Instant, unix_now: u64, source: SocketAddr, req: &sip_core::Message) -> AuthOutcome {
        lock(&self.inner).check(now, unix_now, source, req)
    }
}

#[cfg(test)]
mod tests {
    use crate::call::pacing::{Slot, TrunkPacer};
    use crate::call::AgentSlots;
    use std::time::Instant;

    #[test]
    fn agent_slots_never_pass_the_limit_from_many_threads() {
        let load = AgentSlots::default();
        let taken: u32 = std::thread::scope(|s| {
            let hs: Vec<_> = (0..4)
                .map(|_| {
                    let load = load.clone();
                    s.spawn(move || (0..100).filter(|_| load.try_take("ag", 7)).count() as u32)
                })
                .collect();
            hs.into_iter().map(|h| h.join().unwrap()).sum()
        });
        assert_eq!(taken, 7);
        assert_eq!(load.load("ag"), 7);
        load.release("ag");
        assert!(load.try_take("ag", 7));
        assert!(!load.try_take("other", 0));
        load.add("other");
        assert_eq!(load.gauge().get("other").map(|v| *v), Some(1));
    }

    #[test]
    fn one_pacing_line_for_every_shard() {
        let p = TrunkPacer::new(std::time::Duration::from_secs(1));
        let (a, b) = (p.clone(), p);
        let now = Instant::now();
        assert_eq!(a.admit(now, "t", 1.0), Slot::Now);
        // The second shard's call waits behind the first's: one line, not one per shard.
        assert!(matches!(b.admit(now, "t", 1.0), Slot::At(_)));
    }
}
