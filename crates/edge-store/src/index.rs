//! In-memory routing index read by the SIP side on every call, with no database round trip.
//!
//! The store is its only writer: every write commits to the database first and then
//! replaces the affected entries here (under the store's write lock), so the very next
//! lookup after an API response sees the change.

use crate::model::{AgentRecord, NumberSource, Provider};
use crate::secret::Secret;
use dashmap::DashMap;
use std::collections::{HashMap, HashSet};
use std::sync::Arc;

/// Where inbound calls to a number go, already resolved: `agent_id` is the routing
/// override or, without one, the number's own agent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InboundRoute {
    pub agent_id: String,
    pub fallback_agent_id: Option<String>,
    /// Overrides the agent's default voicemail message when set.
    pub voicemail_message: Option<String>,
    /// Who carries out an agent's transfer to a telephone number.
    pub transfer: TransferMode,
}

/// Who carries out an agent's blind transfer to a telephone number (`inbound_routing.transfer`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Hash)]
pub enum TransferMode {
    /// The edge dials the number through the number's trunk and bridges the caller to it.
    #[default]
    Edge,
    /// The REFER goes on to the carrier (Twilio, Telnyx), and the call leaves the edge.
    Carrier,
}

impl TransferMode {
    pub fn as_str(self) -> &'static str {
        match self {
            TransferMode::Edge => "edge",
            TransferMode::Carrier => "carrier",
        }
    }

    /// Inverse of [`Self::as_str`].
    pub fn parse(s: &str) -> Option<Self> {
        [TransferMode::Edge, TransferMode::Carrier]
            .into_iter()
            .find(|m| m.as_str() == s)
    }
}

/// Outbound trunk for a BYO number; the password and token are decrypted but redacted in `Debug`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct OutboundTrunk {
    /// `host` or `host:port`, no scheme.
    pub trunk_address: String,
    pub auth_username: Option<String>,
    pub auth_password: Option<Secret>,
    /// Digits put before the dialled number (without its `+`): a Telnyx IP connection's tech prefix.
    pub tech_prefix: Option<String>,
    /// Sent as `X-Telnyx-Token` (a Telnyx IP connection's token).
    pub ip_auth_token: Option<Secret>,
    /// Send `P-Charge-Info: <sip:+DID@trunk host>` (a Telnyx IP connection identifying calls by number).
    pub p_charge_info: bool,
    /// The client certificate shown to the trunk over TLS (mutual TLS).
    pub tls_client: Option<std::sync::Arc<TrunkClientCert>>,
    /// SRTP toward the trunk's leg (`provider_config.media_encryption`).
    pub media_encryption: crate::model::MediaEncryption,
}

/// A customer trunk's client certificate: PEM text as the API took it, the key decrypted (redacted in
/// `Debug`), and a fingerprint naming the pair, so TLS connections are shared only by calls that show the
/// same certificate (a new pair after a PATCH opens new connections).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TrunkClientCert {
    /// PEM: the certificate, then any intermediates.
    pub certificate: String,
    /// PEM private key.
    pub key: Secret,
    /// Hex SHA-256 over the certificate and key PEM (collision-resistant: a customer cannot craft a pair
    /// that rides another customer's authenticated connection).
    pub fingerprint: String,
}

impl TrunkClientCert {
    pub fn new(certificate: String, key: Secret) -> Self {
        use sha2::{Digest, Sha256};
        let mut h = Sha256::new();
        h.update(certificate.as_bytes());
        h.update([0u8]);
        h.update(key.expose().as_bytes());
        let fingerprint = h.finalize().iter().map(|b| format!("{b:02x}")).collect();
        Self {
            certificate,
            key,
            fingerprint,
        }
    }
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
    /// Purchased numbers go out through the edge's own carrier, BYO ones through the
    /// customer's trunk.
    pub source: NumberSource,
    pub provider_config: Option<OutboundTrunk>,
}

#[derive(Debug, Default)]
pub struct RoutingIndex {
    numbers: DashMap<String, Arc<NumberRoute>>,
    agents: DashMap<String, Arc<AgentRecord>>,
    /// `sip_username` -> the same record as in `agents`.
    agents_by_sip_username: DashMap<String, Arc<AgentRecord>>,
    /// `(account_id, provider)` -> `metadata.sip_trunk` of the newest integration that has one.
    integration_trunks: DashMap<(String, Provider), String>,
}

impl RoutingIndex {
    pub fn new() -> Self {
        Self::default()
    }

    /// An index holding exactly these agents and numbers, with no store behind it: lets the fuzz targets
    /// (`fuzz/`) drive the SIP side's call routing without a database. The store builds its index itself.
    #[doc(hidden)]
    pub fn from_entries(agents: Vec<AgentRecord>, routes: Vec<NumberRoute>) -> Self {
        let index = Self::new();
        index.replace_all(agents, routes, HashMap::new());
        index
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

    /// The agent whose SIP credentials carry this digest username (exact, case-sensitive
    /// match), any account. Disabled agents are returned too; callers check `status`.
    pub fn agent_by_sip_username(&self, username: &str) -> Option<Arc<AgentRecord>> {
        self.agents_by_sip_username.get(username).map(|r| Arc::clone(r.value()))
    }

    /// The agent of `account_id` whose `sip_uri` is `uri` (compared without the `<>` and case-blind in
    /// scheme and host, as SIP compares them loosely enough for a REFER's target). A scan of every agent:
    /// for transfers, which are rare next to calls.
    pub fn agent_by_sip_uri(&self, account_id: &str, uri: &str) -> Option<Arc<AgentRecord>> {
        let want = uri.trim().trim_start_matches('<').trim_end_matches('>');
        self.agents
            .iter()
            .find(|a| a.account_id == account_id && a.sip_uri.trim().eq_ignore_ascii_case(want))
            .map(|r| Arc::clone(r.value()))
    }

    /// The customer's SIP trunk at `provider` (`metadata.sip_trunk` of that account's
    /// integration; the newest integration that sets one wins).
    pub fn integration_trunk(&self, account_id: &str, provider: Provider) -> Option<String> {
        self.integration_trunks
            .get(&(account_id.to_owned(), provider))
            .map(|r| r.value().clone())
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
    pub(crate) fn replace_all(
        &self,
        agents: Vec<AgentRecord>,
        routes: Vec<NumberRoute>,
        trunks: HashMap<(String, Provider), String>,
    ) {
        let agent_ids: HashSet<String> = agents.iter().map(|a| a.id.clone()).collect();
        let usernames: HashMap<String, String> = agents
            .iter()
            .filter_map(|a| a.sip_username.clone().map(|u| (u, a.id.clone())))
            .collect();
        let numbers: HashSet<String> = routes.iter().map(|r| r.phone_number.clone()).collect();
        for a in agents {
            self.put_agent(a);
        }
        for r in routes {
            self.put_number(r);
        }
        for (k, v) in &trunks {
            self.integration_trunks.insert(k.clone(), v.clone());
        }
        self.agents.retain(|k, _| agent_ids.contains(k));
        self.agents_by_sip_username
            .retain(|u, a| usernames.get(u).is_some_and(|id| *id == a.id));
        self.numbers.retain(|k, _| numbers.contains(k));
        self.integration_trunks.retain(|k, _| trunks.contains_key(k));
    }

    pub(crate) fn put_number(&self, route: NumberRoute) {
        self.numbers.insert(route.phone_number.clone(), Arc::new(route));
    }

    pub(crate) fn remove_number(&self, phone_number: &str) {
        self.numbers.remove(phone_number);
    }

    /// Removes `phone_number` only while it still routes to `number_id`: a change heard from another node
    /// (a deleted `failed` row) must not remove the number's newer row with the same phone number.
    pub(crate) fn remove_number_if(&self, phone_number: &str, number_id: &str) {
        self.numbers.remove_if(phone_number, |_, r| r.number_id == number_id);
    }

    pub(crate) fn put_agent(&self, agent: AgentRecord) {
        let agent = Arc::new(agent);
        if let Some(old) = self.agents.insert(agent.id.clone(), Arc::clone(&agent)) {
            if let Some(u) = old
                .sip_username
                .as_deref()
                .filter(|u| Some(*u) != agent.sip_username.as_deref())
            {
                // Only if still ours: another agent may have taken the name since.
                self.agents_by_sip_username.remove_if(u, |_, a| a.id == agent.id);
            }
        }
        if let Some(u) = &agent.sip_username {
            self.agents_by_sip_username.insert(u.clone(), agent);
        }
    }

    pub(crate) fn remove_agent(&self, agent_id: &str) {
        if let Some((_, old)) = self.agents.remove(agent_id) {
            if let Some(u) = &old.sip_username {
                self.agents_by_sip_username.remove_if(u, |_, a| a.id == agent_id);
            }
        }
    }

    /// Sets or (with `None`) clears the trunk of one `(account, provider)`.
    pub(crate) fn set_integration_trunk(&self, account_id: &str, provider: Provider, trunk: Option<String>) {
        let key = (account_id.to_owned(), provider);
        match trunk {
            Some(t) => {
                self.integration_trunks.insert(key, t);
            }
            None => {
                self.integration_trunks.remove(&key);
            }
        }
    }
}
