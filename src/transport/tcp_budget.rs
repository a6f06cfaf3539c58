//! Who may hold the edge's accepted TCP connections (`sip.tcp_*` in the config).
//!
//! A connection is classed by its source address when it is accepted ([`PeerClass`]) and takes a slot
//! only if every budget of its class has room ([`TcpBudget`]):
//!
//! - every connection: at most `max_per_ip` from one address and `max_connections` in all;
//! - everyone but carriers: at most `max_connections - carrier_reserved` in all, so the reserved slots
//!   stay free for carriers whatever strangers and agents do;
//! - strangers (neither a carrier nor an agent network): at most `stranger_max` in all and
//!   `stranger_max_per_ip` per address (per /64 for IPv6, where one host holds a whole prefix).
//!
//! Pure bookkeeping, no IO: the accept loop asks [`TcpSlots::take`] and the connection's task holds the
//! returned [`Slot`] until it ends.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};

use super::TransportStats;

/// Where a connection comes from, as far as its budgets go.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum PeerClass {
    /// An address in a carrier's `allow` list.
    Carrier,
    /// An address in an `[[agent_networks]]` entry.
    Agent,
    /// Anyone else.
    Stranger,
}

impl PeerClass {
    /// The label on /metrics.
    pub fn as_str(self) -> &'static str {
        match self {
            PeerClass::Carrier => "carrier",
            PeerClass::Agent => "agent",
            PeerClass::Stranger => "stranger",
        }
    }
}

/// Tells a source address's class; given to the TCP driver so it stays free of config types.
pub type Classifier = Arc<dyn Fn(IpAddr) -> PeerClass + Send + Sync>;

/// The connection budgets, from `[sip]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TcpBudget {
    /// `tcp_max_connections`: accepted connections open at once, all classes.
    pub max_connections: usize,
    /// `tcp_max_connections_per_ip`: from one source address, any class.
    pub max_per_ip: usize,
    /// `tcp_carrier_reserved_connections`: slots of `max_connections` only carriers may take.
    pub carrier_reserved: usize,
    /// `tcp_stranger_max_connections`: strangers' connections open at once.
    pub stranger_max: usize,
    /// `tcp_stranger_max_connections_per_ip`: a stranger's connections from one address (IPv6: /64).
    pub stranger_max_per_ip: usize,
}

/// Why a connection was refused: the first budget found full, in the order listed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// A stranger's address (IPv6: its /64) already holds `stranger_max_per_ip`.
    StrangerPerIp,
    /// Strangers already hold `stranger_max`.
    StrangerTotal,
    /// The address already holds `max_per_ip`.
    PerIp,
    /// Every slot this class may take is in use (`max_connections`, less the reserve for non-carriers).
    Total,
}

impl Refusal {
    /// The `reason` label on /metrics.
    pub fn as_str(self) -> &'static str {
        match self {
            Refusal::StrangerPerIp => "stranger_per_ip_cap",
            Refusal::StrangerTotal => "stranger_cap",
            Refusal::PerIp => "per_ip_cap",
            Refusal::Total => "total_cap",
        }
    }
}

/// Open connections by class and by address.
#[derive(Debug, Default)]
struct Counts {
    total: usize,
    carriers: usize,
    strangers: usize,
    per_ip: HashMap<IpAddr, usize>,
    /// Strangers' connections by [`stranger_key`].
    stranger_per_net: HashMap<IpAddr, usize>,
}

impl Counts {
    fn admit(&mut self, b: &TcpBudget, ip: IpAddr, class: PeerClass) -> Result<(), Refusal> {
        let key = stranger_key(ip);
        if class == PeerClass::Stranger {
            if self.stranger_per_net.get(&key).copied().unwrap_or(0) >= b.stranger_max_per_ip {
                return Err(Refusal::StrangerPerIp);
            }
            if self.strangers >= b.stranger_max {
                return Err(Refusal::StrangerTotal);
            }
        }
        if self.per_ip.get(&ip).copied().unwrap_or(0) >= b.max_per_ip {
            return Err(Refusal::PerIp);
        }
        let others = self.total - self.carriers;
        let full = self.total >= b.max_connections
            || (class != PeerClass::Carrier && others >= b.max_connections.saturating_sub(b.carrier_reserved));
        if full {
            return Err(Refusal::Total);
        }
        self.total += 1;
        *self.per_ip.entry(ip).or_insert(0) += 1;
        match class {
            PeerClass::Carrier => self.carriers += 1,
            PeerClass::Stranger => {
                self.strangers += 1;
                *self.stranger_per_net.entry(key).or_insert(0) += 1;
            }
            PeerClass::Agent => {}
        }
        Ok(())
    }

    fn release(&mut self, ip: IpAddr, class: PeerClass) {
        self.total = self.total.saturating_sub(1);
        decrement(&mut self.per_ip, ip);
        match class {
            PeerClass::Carrier => self.carriers = self.carriers.saturating_sub(1),
            PeerClass::Stranger => {
                self.strangers = self.strangers.saturating_sub(1);
                decrement(&mut self.stranger_per_net, stranger_key(ip));
            }
            PeerClass::Agent => {}
        }
    }
}

fn decrement(map: &mut HashMap<IpAddr, usize>, key: IpAddr) {
    if let Some(n) = map.get_mut(&key) {
        *n = n.saturating_sub(1);
        if *n == 0 {
            map.remove(&key);
        }
    }
}

/// The unit a stranger's per-address cap counts: the IPv4 address, or the /64 of an IPv6 one (a host
/// is routinely given a whole /64, so counting single IPv6 addresses would cap nothing).
fn stranger_key(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V4(_) => ip,
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => IpAddr::V6((u128::from(v6) & !u128::from(u64::MAX)).into()),
        },
    }
}

/// The shared slot table of one listener.
#[derive(Clone)]
pub struct TcpSlots {
    budget: TcpBudget,
    counts: Arc<Mutex<Counts>>,
    stats: Arc<TransportStats>,
}

impl TcpSlots {
    pub fn new(budget: TcpBudget, stats: Arc<TransportStats>) -> Self {
        TcpSlots {
            budget,
            counts: Arc::new(Mutex::new(Counts::default())),
            stats,
        }
    }

    /// A slot for a new connection from `ip`, or why there is none (counted on the transport stats either
    /// way). The mutex is taken once per connect and once per close, never per message.
    pub fn take(&self, ip: IpAddr, class: PeerClass) -> Result<Slot, Refusal> {
        let admitted = self
            .counts
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .admit(&self.budget, ip, class);
        let s = &self.stats;
        match admitted {
            Ok(()) => {
                s.tcp_connections_accepted.fetch_add(1, Ordering::Relaxed);
                s.tcp_accepted(class).fetch_add(1, Ordering::Relaxed);
                s.tcp_open(class).fetch_add(1, Ordering::Relaxed);
                Ok(Slot {
                    slots: self.clone(),
                    ip,
                    class,
                })
            }
            Err(why) => {
                s.tcp_connections_refused.fetch_add(1, Ordering::Relaxed);
                s.tcp_refused(why).fetch_add(1, Ordering::Relaxed);
                Err(why)
            }
        }
    }
}

/// One taken slot; dropping it frees the slot (also if the connection's task panics).
pub struct Slot {
    slots: TcpSlots,
    ip: IpAddr,
    class: PeerClass,
}

impl Drop for Slot {
    fn drop(&mut self) {
        self.slots
            .counts
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .release(self.ip, self.class);
        let _ = self
            .slots
            .stats
            .tcp_open(self.class)
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| n.checked_sub(1));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn budget() -> TcpBudget {
        TcpBudget {
            max_connections: 10,
            max_per_ip: 5,
            carrier_reserved: 3,
            stranger_max: 4,
            stranger_max_per_ip: 2,
        }
    }

    fn slots() -> TcpSlots {
        TcpSlots::new(budget(), Arc::new(TransportStats::default()))
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn strangers_fill_their_own_caps_and_never_the_reserve() {
        let s = slots();
        let mut held = Vec::new();
        for n in 1..=2 {
            held.push(s.take(ip("192.0.2.1"), PeerClass::Stranger).unwrap());
            held.push(s.take(ip(&format!("192.0.2.{}", n + 1)), PeerClass::Stranger).unwrap());
        }
        assert_eq!(
            s.take(ip("192.0.2.1"), PeerClass::Stranger).err(),
            Some(Refusal::StrangerPerIp)
        );
        assert_eq!(
            s.take(ip("192.0.2.9"), PeerClass::Stranger).err(),
            Some(Refusal::StrangerTotal)
        );
        // Agents take what is left outside the reserve: 10 - 3 - 4 strangers = 3.
        for n in 0..3 {
            held.push(s.take(ip(&format!("198.51.100.{n}")), PeerClass::Agent).unwrap());
        }
        assert_eq!(s.take(ip("198.51.100.9"), PeerClass::Agent).err(), Some(Refusal::Total));
        // The reserve is the carriers', to the last slot of the total.
        for _ in 0..3 {
            held.push(s.take(ip("203.0.113.5"), PeerClass::Carrier).unwrap());
        }
        assert_eq!(
            s.take(ip("203.0.113.6"), PeerClass::Carrier).err(),
            Some(Refusal::Total)
        );
        let st = &s.stats;
        assert_eq!(st.tcp_connections_accepted.load(Ordering::Relaxed), 10);
        assert_eq!(st.tcp_connections_refused.load(Ordering::Relaxed), 4);
        assert_eq!(st.tcp_refused(Refusal::Total).load(Ordering::Relaxed), 2);
        assert_eq!(st.tcp_open(PeerClass::Stranger).load(Ordering::Relaxed), 4);
        // Closing frees the slot for the same class again.
        held.clear();
        assert_eq!(st.tcp_open(PeerClass::Stranger).load(Ordering::Relaxed), 0);
        let c = s.counts.lock().unwrap();
        assert_eq!((c.total, c.carriers, c.strangers), (0, 0, 0));
        assert!(c.per_ip.is_empty() && c.stranger_per_net.is_empty());
    }

    #[test]
    fn carriers_may_use_unreserved_slots_too() {
        let s = slots();
        let mut held = Vec::new();
        for n in 0..10 {
            held.push(s.take(ip(&format!("203.0.113.{n}")), PeerClass::Carrier).unwrap());
        }
        assert_eq!(s.take(ip("198.51.100.1"), PeerClass::Agent).err(), Some(Refusal::Total));
        held.pop();
        // A freed slot outside the reserve goes to whoever asks.
        held.push(s.take(ip("198.51.100.1"), PeerClass::Agent).unwrap());
    }

    #[test]
    fn per_ip_cap_holds_for_every_class() {
        let s = slots();
        let mut held = Vec::new();
        for _ in 0..5 {
            held.push(s.take(ip("203.0.113.1"), PeerClass::Carrier).unwrap());
        }
        assert_eq!(
            s.take(ip("203.0.113.1"), PeerClass::Carrier).err(),
            Some(Refusal::PerIp)
        );
        assert_eq!(s.stats.tcp_refused(Refusal::PerIp).load(Ordering::Relaxed), 1);
    }

    #[test]
    fn an_ipv6_stranger_is_counted_per_64() {
        let s = slots();
        let _a = s.take(ip("2001:db8:1:2::1"), PeerClass::Stranger).unwrap();
        let _b = s.take(ip("2001:db8:1:2::ffff:1"), PeerClass::Stranger).unwrap();
        assert_eq!(
            s.take(ip("2001:db8:1:2:abcd::9"), PeerClass::Stranger).err(),
            Some(Refusal::StrangerPerIp)
        );
        let _c = s.take(ip("2001:db8:1:3::1"), PeerClass::Stranger).unwrap();
        assert_eq!(stranger_key(ip("::ffff:192.0.2.1")), ip("192.0.2.1"));
    }

    #[test]
    fn no_strangers_when_their_cap_is_zero() {
        let s = TcpSlots::new(
            TcpBudget {
                stranger_max: 0,
                ..budget()
            },
            Arc::new(TransportStats::default()),
        );
        assert_eq!(
            s.take(ip("192.0.2.1"), PeerClass::Stranger).err(),
            Some(Refusal::StrangerTotal)
        );
        assert!(s.take(ip("192.0.2.1"), PeerClass::Agent).is_ok());
    }
}
