//! Calls in progress per agent, counted against its `max_concurrent_calls`.
//!
//! One `AgentSlots` is shared (cloning shares it) by the controller and `/metrics`, and can be handed to
//! several controllers (engine shards) so that an agent's limit holds across all of them: counts are
//! kept per entry under the map's lock, and `try_take` checks and counts in one step.

use std::sync::Arc;

use dashmap::DashMap;

#[derive(Debug, Default, Clone)]
pub struct AgentSlots {
    /// Agents keep their entry (at 0 when idle): a call costs no key allocation, and `/metrics` keeps a
    /// steady series per agent.
    load: Arc<DashMap<String, u32>>,
}

impl AgentSlots {
    /// Calls the agent is on now.
    pub fn load(&self, agent_id: &str) -> u32 {
        self.load.get(agent_id).map_or(0, |n| *n)
    }

    /// One more call on the agent, whatever its limit (the limit was checked when the call was taken).
    pub fn add(&self, agent_id: &str) {
        match self.load.get_mut(agent_id) {
            Some(mut n) => *n += 1,
            None => *self.load.entry(agent_id.to_owned()).or_insert(0) += 1,
        }
    }

    /// One more call on the agent if it is below `limit`; false when it is at its limit.
    pub fn try_take(&self, agent_id: &str, limit: u32) -> bool {
        let mut n = match self.load.get_mut(agent_id) {
            Some(n) => n,
            None => self.load.entry(agent_id.to_owned()).or_insert(0),
        };
        if *n >= limit {
            return false;
        }
        *n += 1;
        true
    }

    /// One fewer call on the agent.
    pub fn release(&self, agent_id: &str) {
        if let Some(mut n) = self.load.get_mut(agent_id) {
            *n = n.saturating_sub(1);
        }
    }

    /// The counts, for `/metrics`.
    pub fn gauge(&self) -> Arc<DashMap<String, u32>> {
        self.load.clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_are_shared_and_limited() {
        let slots = AgentSlots::default();
        let shard2 = slots.clone();
        assert!(slots.try_take("ag", 2));
        assert!(shard2.try_take("ag", 2));
        assert!(!slots.try_take("ag", 2), "the limit holds across clones");
        shard2.release("ag");
        assert_eq!(slots.load("ag"), 1);
        slots.add("ag");
        assert_eq!(shard2.load("ag"), 2);
        slots.release("ag");
        slots.release("ag");
        slots.release("ag");
        assert_eq!(slots.load("ag"), 0, "never below zero");
        assert_eq!(
            slots.gauge().get("ag").map(|n| *n),
            Some(0),
            "idle agents keep their series"
        );
    }
}
