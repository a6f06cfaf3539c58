//! What a node decides alone while Redis cannot answer: each limit divided by the number of live nodes
//! (from the store's `nodes` heartbeats), at least one call per agent per node, so that the cluster as a
//! whole stays near its limits and no node stops taking calls.

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::call::pacing::{Pacer, Slot};
use crate::call::{AgentSlots, LimitAnswer};

/// The per-node limits, shared by the limits driver and the engines (which use it when the driver's queue
/// is full).
#[derive(Debug)]
pub struct Fallback {
    slots: AgentSlots,
    pacer: Mutex<Pacer>,
    /// Nodes seen alive lately (this one included); refreshed from the store.
    live_nodes: Arc<AtomicU32>,
}

impl Fallback {
    pub fn new(slots: AgentSlots, max_pacing_wait: Duration, live_nodes: Arc<AtomicU32>) -> Self {
        Fallback {
            slots,
            pacer: Mutex::new(Pacer::new(max_pacing_wait)),
            live_nodes,
        }
    }

    fn nodes(&self) -> u32 {
        self.live_nodes.load(Ordering::Relaxed).max(1)
    }

    /// This node's share of an agent's limit.
    pub fn agent_share(&self, limit: u32) -> u32 {
        if limit == 0 {
            return 0;
        }
        (limit / self.nodes()).max(1)
    }

    /// One more call on the agent if this node is below its share; counted when granted.
    pub fn agent(&self, agent_id: &str, limit: u32) -> LimitAnswer {
        match self.slots.try_take(agent_id, self.agent_share(limit)) {
            true => LimitAnswer::Granted,
            false => LimitAnswer::AtLimit,
        }
    }

    /// A slot on this node's line for the trunk, at its share of the calls per second.
    pub fn pace(&self, now: Instant, trunk: &str, cps: f64) -> LimitAnswer {
        let share = cps / f64::from(self.nodes());
        let mut p = self.pacer.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        match p.admit(now, trunk, share) {
            Slot::Now => LimitAnswer::PaceIn(Duration::ZERO),
            Slot::At(t) => LimitAnswer::PaceIn(t.saturating_duration_since(now)),
            Slot::Refused { wait } => LimitAnswer::PaceRefused(wait),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn limits_are_divided_by_the_live_nodes_but_never_to_zero() {
        let live = Arc::new(AtomicU32::new(2));
        let f = Fallback::new(AgentSlots::default(), Duration::from_secs(5), live.clone());
        assert_eq!(f.agent_share(4), 2);
        assert_eq!(f.agent("ag", 4), LimitAnswer::Granted);
        assert_eq!(f.agent("ag", 4), LimitAnswer::Granted);
        assert_eq!(f.agent("ag", 4), LimitAnswer::AtLimit, "half of 4 on each of 2 nodes");
        live.store(3, Ordering::Relaxed);
        assert_eq!(f.agent_share(2), 1, "never below one call a node");
        assert_eq!(f.agent_share(0), 0);
        live.store(0, Ordering::Relaxed);
        assert_eq!(f.agent_share(4), 4, "no heartbeat read yet: this node alone");

        // 2 CPS over 2 nodes: 1 CPS here, so the second call waits a second.
        live.store(2, Ordering::Relaxed);
        let t0 = Instant::now();
        assert_eq!(f.pace(t0, "t", 2.0), LimitAnswer::PaceIn(Duration::ZERO));
        assert_eq!(f.pace(t0, "t", 2.0), LimitAnswer::PaceIn(Duration::from_secs(1)));
    }
}
