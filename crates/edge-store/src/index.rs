//! In-memory routing index read by the SIP side on every call, with no database round trip.
//!
//! The store is its only writer: every write commits to the database first and then
//! replaces the affected entries here (under the store's write lock), so the very next
//! lookup after an API response sees the change.

use crate::model::{AgentRecord, Provider};
use crate::secret::Secret;
use dashmap::DashMap;
use std::collections::HashSet;
use std::sync::Arc;

/// Where inbound calls to a number go, already resolved: `agent_id` is the routing
/// override or, without one, the number's own agent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InboundRoute {
    pub agent_id: String,
    pub fallback_agent_id: Option<String>,
    /// Overrides the agent's default voicemail message when set.
    pub voicemail_message: Option<String>,
}

/// Outbound trunk for a BYO number; the password is decrypted but redacted in `Debug`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutboundTrunk {
    /// `host` or `host:port`, no scheme.
    pub trunk_address: String,
    pub auth_username: Option<String>,
    pub auth_password: Option<Secret>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NumberRoute {
    pub number_id: String,
    pub account_id: String,
    /// E.164, e.g. `+14155551234`.
    pub phone_number: String,
    /// Primary (outbound) agent.
    pub agent_id: String,
    /// `None`: outbound-only, inbound calls are not routed.
    pub inbound_routing: Option<InboundRoute>,
    pub provider: Provider,
    pub provider_config: Option<OutboundTrunk>,
}

#[derive(Debug, Default)]
pub struct RoutingIndex {
    numbers: DashMap<String, Arc<NumberRoute>>,
    agents: DashMap<String, Arc<AgentRecord>>,
}

impl RoutingIndex {
    pub fn new() -> Self {
        Self::default()
    }

    /// Route for a dialled number. Accepts E.164 with or without the leading `+`
    /// (carriers differ in what they put in the Request-URI user part).
    pub fn lookup_number(&self, number: &str) -> Option<Arc<NumberRoute>> {
        if let Some(r) = self.numbers.get(number) {
            return Some(Arc::clone(r.value()));
        }
        if !number.starts_with('+') && number.len() <= 16 {
            return self.numbers.get(&format!("+{number}")).map(|r| Arc::clone(r.value()));
        }
        None
    }

    pub fn agent(&self, agent_id: &str) -> Option<Arc<AgentRecord>> {
        self.agents.get(agent_id).map(|r| Arc::clone(r.value()))
    }

    pub fn number_count(&self) -> usize {
        self.numbers.len()
    }

    pub fn agent_count(&self) -> usize {
        self.agents.len()
    }

    /// Every registered number (any account); used to exclude owned numbers from searches.
    pub fn owned_numbers(&self) -> HashSet<String> {
        self.numbers.iter().map(|e| e.key().clone()).collect()
    }

    /// Makes the index equal to the given snapshot without a moment where an entry present
    /// in both old and new is missing: upsert everything, then drop what is gone.
    pub(crate) fn replace_all(&self, agents: Vec<AgentRecord>, routes: Vec<NumberRoute>) {
        let agent_ids: HashSet<String> = agents.iter().map(|a| a.id.clone()).collect();
        let numbers: HashSet<String> = routes.iter().map(|r| r.phone_number.clone()).collect();
        for a in agents {
            self.put_agent(a);
        }
        for r in routes {
            self.put_number(r);
        }
        self.agents.retain(|k, _| agent_ids.contains(k));
        self.numbers.retain(|k, _| numbers.contains(k));
    }

    pub(crate) fn put_number(&self, route: NumberRoute) {
        self.numbers.insert(route.phone_number.clone(), Arc::new(route));
    }

    pub(crate) fn remove_number(&self, phone_number: &str) {
        self.numbers.remove(phone_number);
    }

    pub(crate) fn put_agent(&self, agent: AgentRecord) {
        self.agents.insert(agent.id.clone(), Arc::new(agent));
    }

    pub(crate) fn remove_agent(&self, agent_id: &str) {
        self.agents.remove(agent_id);
    }
}
