//! Admission control: who may cost the edge work, and how much.
//!
//! Every datagram or TCP frame is classified by its source address before it is parsed:
//!
//! * **Carriers** (`[[carriers]] allow`) are never limited here: their calls are the product.
//! * **Agents**: `[[agent_networks]]`, and addresses the edge has recently vouched for (an agent
//!   that passed digest, a trunk or agent the edge sent a request to). Each address gets a token
//!   bucket of `admission.agent_requests_per_s` / `agent_burst`.
//! * **Strangers**: everyone else. Each address gets a smaller bucket
//!   (`stranger_requests_per_s` / `stranger_burst`), and all strangers together share one more
//!   (`strangers_total_requests_per_s`), like one of Kamailio's ratelimit pipes: a flood from
//!   spoofed random sources cannot buy more than that in total.
//!
//! Past a bucket the packet is dropped unread and counted: silence costs the edge a hash lookup and
//! tells a flooder nothing. This is Kamailio's `pike` (per-source density) and `ratelimit` (pipes)
//! in one place, sans-IO: the caller passes `now`.
//!
//! The tables are bounded (`tracked_sources`): when full, idle entries (refilled buckets, expired
//! vouchers) are swept; if the table is still full, unknown strangers share a single overflow
//! bucket rather than grow it. IPv6 sources are keyed by their /64, the unit one subscriber holds.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// `[admission]` settings.
#[derive(Debug, Clone)]
pub struct AdmissionConfig {
    pub stranger_rate: f64,
    pub stranger_burst: f64,
    pub strangers_total_rate: f64,
    pub agent_rate: f64,
    pub agent_burst: f64,
    /// Source addresses tracked at most (buckets and vouchers each).
    pub tracked_sources: usize,
    /// How long an address the edge vouched for keeps the agent rate after its last activity.
    pub voucher_ttl: Duration,
    /// Share of `sip.max_transactions` only carriers may use, in percent.
    pub carrier_reserved_percent: u8,
}

impl Default for AdmissionConfig {
    fn default() -> Self {
        AdmissionConfig {
            stranger_rate: 10.0,
            stranger_burst: 30.0,
            strangers_total_rate: 2_000.0,
            agent_rate: 200.0,
            agent_burst: 400.0,
            tracked_sources: 65_536,
            voucher_ttl: Duration::from_secs(2 * 3600),
            carrier_reserved_percent: 25,
        }
    }
}

/// Who a source address is, as far as its address tells.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SourceClass {
    /// In a `[[carriers]] allow` list: the carrier's name.
    Carrier(Arc<str>),
    /// In `[[agent_networks]]`: the network's name.
    AgentNetwork(Arc<str>),
    /// Anyone else (vouched-for addresses included: vouching changes the rate, not the trust).
    Outsider,
}

/// Which limit a dropped packet ran into.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// The source's own bucket (a stranger's).
    Stranger,
    /// The pipe all strangers share.
    StrangersTotal,
    /// An agent's bucket.
    Agent,
}

/// Counters for /metrics (atomics: the API task reads them while the engine writes).
#[derive(Debug, Default)]
pub struct AdmissionStats {
    pub dropped_stranger: AtomicU64,
    pub dropped_strangers_total: AtomicU64,
    pub dropped_agent: AtomicU64,
    /// Addresses with a bucket now.
    pub tracked: AtomicU64,
    /// Addresses vouched for now.
    pub vouched: AtomicU64,
}

/// A token bucket; `tokens` and `at` are the state after the last take.
#[derive(Debug, Clone, Copy)]
struct Bucket {
    tokens: f64,
    at: Instant,
}

impl Bucket {
    fn full(burst: f64, now: Instant) -> Bucket {
        Bucket { tokens: burst, at: now }
    }

    fn refill(&mut self, now: Instant, rate: f64, burst: f64) {
        let dt = now.saturating_duration_since(self.at).as_secs_f64();
        self.tokens = (self.tokens + dt * rate).min(burst);
        self.at = now;
    }

    fn take(&mut self, now: Instant, rate: f64, burst: f64) -> bool {
        self.refill(now, rate, burst);
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            true
        } else {
            false
        }
    }
}

/// The key an address is limited by: IPv4 as is, IPv6 by its /64.
fn source_key(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V4(_) => ip,
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => {
                let s = v6.segments();
                IpAddr::V6(std::net::Ipv6Addr::new(s[0], s[1], s[2], s[3], 0, 0, 0, 0))
            }
        },
    }
}

/// Per-source and shared buckets, and the addresses vouched for.
pub struct Admission {
    cfg: AdmissionConfig,
    buckets: HashMap<IpAddr, Bucket>,
    /// Addresses with the agent rate, until the instant stored.
    vouched: HashMap<IpAddr, Instant>,
    strangers_total: Bucket,
    /// Shared by strangers that found the table full.
    overflow: Bucket,
    pub stats: Arc<AdmissionStats>,
}

impl Admission {
    pub fn new(cfg: AdmissionConfig, now: Instant) -> Self {
        Admission {
            strangers_total: Bucket::full(cfg.strangers_total_rate, now),
            overflow: Bucket::full(cfg.stranger_burst, now),
            cfg,
            buckets: HashMap::new(),
            vouched: HashMap::new(),
            stats: Arc::new(AdmissionStats::default()),
        }
    }

    pub fn config(&self) -> &AdmissionConfig {
        &self.cfg
    }

    /// New limits (a config reload); the buckets and vouchers kept so far stay and take the new rates
    /// from their next refill.
    pub fn set_config(&mut self, cfg: AdmissionConfig) {
        self.cfg = cfg;
    }

    /// May a packet from `ip` (of `class`) be read at `now`? `Err` names the limit it ran into;
    /// the caller drops the packet.
    pub fn admit(&mut self, now: Instant, ip: IpAddr, class: &SourceClass) -> Result<(), Refusal> {
        let key = source_key(ip);
        let agent = match class {
            SourceClass::Carrier(_) => return Ok(()),
            SourceClass::AgentNetwork(_) => true,
            SourceClass::Outsider => self.vouched.get(&key).is_some_and(|until| *until > now),
        };
        let (rate, burst) = if agent {
            (self.cfg.agent_rate, self.cfg.agent_burst)
        } else {
            (self.cfg.stranger_rate, self.cfg.stranger_burst)
        };
        let own = match self.bucket(now, key, burst) {
            Some(b) => b.take(now, rate, burst),
            None => self.overflow.take(now, rate, burst),
        };
        if !own {
            let (counter, why) = if agent {
                (&self.stats.dropped_agent, Refusal::Agent)
            } else {
                (&self.stats.dropped_stranger, Refusal::Stranger)
            };
            counter.fetch_add(1, Ordering::Relaxed);
            return Err(why);
        }
        if !agent {
            let (r, b) = (self.cfg.strangers_total_rate, self.cfg.strangers_total_rate);
            if !self.strangers_total.take(now, r, b) {
                self.stats.dropped_strangers_total.fetch_add(1, Ordering::Relaxed);
                return Err(Refusal::StrangersTotal);
            }
        }
        Ok(())
    }

    /// Gives `ip` the agent rate for `voucher_ttl` from `now`: an agent that authenticated, or a
    /// peer the edge itself sent a request to (its in-dialog requests will follow).
    pub fn vouch(&mut self, now: Instant, ip: IpAddr) {
        let key = source_key(ip);
        let until = now + self.cfg.voucher_ttl;
        if let Some(u) = self.vouched.get_mut(&key) {
            *u = until;
            return;
        }
        if self.vouched.len() >= self.cfg.tracked_sources {
            self.vouched.retain(|_, u| *u > now);
            self.stats.vouched.store(self.vouched.len() as u64, Ordering::Relaxed);
            if self.vouched.len() >= self.cfg.tracked_sources {
                return;
            }
        }
        self.vouched.insert(key, until);
        self.stats.vouched.store(self.vouched.len() as u64, Ordering::Relaxed);
    }

    /// Is `ip` vouched for at `now`?
    pub fn is_vouched(&self, now: Instant, ip: IpAddr) -> bool {
        self.vouched.get(&source_key(ip)).is_some_and(|u| *u > now)
    }

    /// The bucket of `key`, created full; `None` when the table is full of busy entries.
    fn bucket(&mut self, now: Instant, key: IpAddr, burst: f64) -> Option<&mut Bucket> {
        if !self.buckets.contains_key(&key) {
            if self.buckets.len() >= self.cfg.tracked_sources {
                self.sweep(now);
                if self.buckets.len() >= self.cfg.tracked_sources {
                    return None;
                }
            }
            self.buckets.insert(key, Bucket::full(burst, now));
            self.stats.tracked.store(self.buckets.len() as u64, Ordering::Relaxed);
        }
        self.buckets.get_mut(&key)
    }

    /// Drops buckets that have refilled (indistinguishable from no entry).
    fn sweep(&mut self, now: Instant) {
        let (sr, sb, ar, ab) = (
            self.cfg.stranger_rate,
            self.cfg.stranger_burst,
            self.cfg.agent_rate,
            self.cfg.agent_burst,
        );
        self.buckets.retain(|_, b| {
            let mut s = *b;
            s.refill(now, sr, sb);
            let mut a = *b;
            a.refill(now, ar, ab);
            // Kept while it is below the burst of either class it may be charged at.
            s.tokens < sb && a.tokens < ab
        });
        self.stats.tracked.store(self.buckets.len() as u64, Ordering::Relaxed);
    }

    /// Live transactions past which only carriers may open new ones.
    pub fn shared_transaction_limit(&self, max_transactions: usize) -> usize {
        let reserved = max_transactions * usize::from(self.cfg.carrier_reserved_percent.min(100)) / 100;
        max_transactions - reserved
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    fn cfg() -> AdmissionConfig {
        AdmissionConfig {
            stranger_rate: 2.0,
            stranger_burst: 4.0,
            strangers_total_rate: 10.0,
            agent_rate: 20.0,
            agent_burst: 20.0,
            tracked_sources: 3,
            voucher_ttl: Duration::from_secs(60),
            carrier_reserved_percent: 25,
        }
    }

    #[test]
    fn a_stranger_gets_its_burst_then_its_rate() {
        let t0 = Instant::now();
        let mut a = Admission::new(cfg(), t0);
        let s = ip("192.0.2.1");
        let ok = (0..10)
            .filter(|_| a.admit(t0, s, &SourceClass::Outsider).is_ok())
            .count();
        assert_eq!(ok, 4);
        assert_eq!(a.admit(t0, s, &SourceClass::Outsider), Err(Refusal::Stranger));
        // Half a second later: one more token at 2/s.
        let t1 = t0 + Duration::from_millis(500);
        assert!(a.admit(t1, s, &SourceClass::Outsider).is_ok());
        assert!(a.admit(t1, s, &SourceClass::Outsider).is_err());
        assert_eq!(a.stats.dropped_stranger.load(Ordering::Relaxed), 8);
    }

    #[test]
    fn carriers_are_never_limited_and_agents_get_more() {
        let t0 = Instant::now();
        let mut a = Admission::new(cfg(), t0);
        let carrier = SourceClass::Carrier("twilio".into());
        assert!((0..10_000).all(|_| a.admit(t0, ip("192.0.2.9"), &carrier).is_ok()));
        let net = SourceClass::AgentNetwork("agents".into());
        assert_eq!(
            (0..100)
                .filter(|_| a.admit(t0, ip("198.51.100.1"), &net).is_ok())
                .count(),
            20
        );
        // A vouched-for outsider gets the agent rate too.
        a.vouch(t0, ip("203.0.113.5"));
        let n = (0..100)
            .filter(|_| a.admit(t0, ip("203.0.113.5"), &SourceClass::Outsider).is_ok())
            .count();
        assert_eq!(n, 20);
        assert!(!a.is_vouched(t0 + Duration::from_secs(61), ip("203.0.113.5")));
    }

    #[test]
    fn all_strangers_share_one_pipe_and_the_table_is_bounded() {
        let t0 = Instant::now();
        let mut a = Admission::new(cfg(), t0);
        // 50 spoofed sources, one packet each: the table holds 3, the rest share the overflow
        // bucket, and the shared pipe stops everything past 10.
        let ok = (0..50u8)
            .filter(|i| a.admit(t0, ip(&format!("10.0.0.{i}")), &SourceClass::Outsider).is_ok())
            .count();
        assert!(ok <= 10, "{ok}");
        assert_eq!(a.buckets.len(), 3);
        assert!(
            a.stats.dropped_strangers_total.load(Ordering::Relaxed) + a.stats.dropped_stranger.load(Ordering::Relaxed)
                >= 40
        );
    }

    #[test]
    fn ipv6_sources_share_their_64() {
        let t0 = Instant::now();
        let mut a = Admission::new(cfg(), t0);
        let ok = (0..10u16)
            .filter(|i| {
                a.admit(t0, ip(&format!("2001:db8:1:2::{i:x}")), &SourceClass::Outsider)
                    .is_ok()
            })
            .count();
        assert_eq!(ok, 4);
    }

    #[test]
    fn carriers_keep_a_share_of_the_transactions() {
        let a = Admission::new(cfg(), Instant::now());
        assert_eq!(a.shared_transaction_limit(200_000), 150_000);
    }
}
