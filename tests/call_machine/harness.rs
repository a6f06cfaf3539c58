//! A deterministic, socket-free harness around the edge's sans-IO [`Endpoint`]: a fake clock (a base
//! `Instant` plus offsets the test advances; nothing sleeps), an in-memory routing index, and peers that are
//! only addresses. What the edge transmits is parsed and queued per destination, stamped with the fake
//! time it left; scripted agents and trunks may answer it at once, as the socket tests' peers do.
//!
//! This file is the one place that knows how an `Endpoint` is built and how its call records come out, so
//! that changes to those APIs are absorbed here and the scenarios above it stay as they are.
#![allow(dead_code)]

use std::collections::{HashMap, VecDeque};
use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use edge_store::{
    AgentRecord, AgentStatus, CallRecord, InboundRoute, NumberRoute, NumberSource, OutboundTrunk, Provider,
    RoutingIndex, Secret, VoicemailRecord,
};
use oneinbox_edge::call::leg::Local;
use oneinbox_edge::call::{CallConfig, CallController, CallMedia, Persist, TrunkTarget};
use oneinbox_edge::config::Config;
use oneinbox_edge::server::CarrierPolicy;
use oneinbox_edge::shard::limits::{SharedAdmission, SharedAgentAuth};
use oneinbox_edge::sip::admission::Admission;
use oneinbox_edge::sip::agent_auth::AgentAuth;
use oneinbox_edge::sip::endpoint::{Endpoint, EndpointConfig};
use oneinbox_edge::transport::{link_of, Link, SendError, SendFailure};
use sip_core::build::ResponseBuilder;
use sip_core::digest::{DigestVerifier, Secret as DigestSecret, Verdict};
use sip_core::message::{HeaderName, Message, Method};
use sip_core::transaction::{AutoTrying, TimerConfig, TxConfig};

use super::fake_media::FakeMedia;

/// The edge's own address as written in its Via and Contact (nothing is bound there).
pub const EDGE: &str = "198.18.0.1:5060";
/// A carrier (in `[[carriers]]`).
pub const CARRIER: &str = "192.0.2.10:5060";
/// A second carrier address of the same carrier, for a second concurrent caller.
pub const CARRIER2: &str = "192.0.2.11:5060";
/// Agents' SIP UASes (not in any agent network).
pub const AGENT1: &str = "198.51.100.21:5060";
pub const AGENT2: &str = "198.51.100.22:5060";
pub const AGENT3: &str = "198.51.100.23:5060";
/// An agent placing calls from a trusted `[[agent_networks]]` address.
pub const AGENT_NET: &str = "203.0.113.2:5060";
/// An agent outside every network (digest).
pub const OUTSIDER: &str = "203.0.113.66:5060";
/// A customer's trunk.
pub const TRUNK: &str = "198.51.100.130:5060";
/// The account every agent and number belongs to.
pub const ACCOUNT: &str = "acct_test";

pub const SDP: &str = "v=0\r\no=peer 1 1 IN IP4 192.0.2.10\r\ns=-\r\nc=IN IP4 192.0.2.10\r\nt=0 0\r\nm=audio 40000 RTP/AVP 0 101\r\na=rtpmap:0 PCMU/8000\r\na=rtpmap:101 telephone-event/8000\r\n";
pub const TRUNK_SDP: &str = "v=0\r\no=trunk 1 1 IN IP4 198.51.100.130\r\ns=-\r\nc=IN IP4 198.51.100.130\r\nt=0 0\r\nm=audio 41000 RTP/AVP 0 101\r\na=rtpmap:0 PCMU/8000\r\na=rtpmap:101 telephone-event/8000\r\n";

/// How long a `expect`-style helper lets fake time run before it gives up (the socket tests' `S`).
pub const S: Duration = Duration::from_secs(3);

pub fn addr(s: &str) -> SocketAddr {
    s.parse().expect("test address")
}

const CONFIG: &str = r#"
[sip]
udp = "198.18.0.1:5060"
[routing]
default_country_code = "1"
[media]
enabled = false
[outbound]
agent_digest = true
auth_realm = "edge.test"
trunk_setup_timeout_ms = 400
trunk_ring_timeout_s = 2
twilio_cps = 100.0
telnyx_cps = 100.0
default_cps = 100.0
[[agent_networks]]
name = "agents"
allow = ["203.0.113.0/28"]
[[carriers]]
name = "carrier"
allow = ["192.0.2.0/24"]
"#;

/// The configuration every harness starts from: media off, agent setup 300 ms and ring 1 s (as the socket
/// tests' `start_edge`), outbound trunk setup 400 ms and ring 2 s.
pub fn base_config() -> Config {
    let mut cfg = Config::parse(Path::new("<call_machine>"), CONFIG).unwrap_or_else(|e| panic!("config: {e}"));
    cfg.agent_setup_timeout = Duration::from_millis(300);
    cfg.agent_ring_timeout = Duration::from_secs(1);
    cfg
}

/// The agents and numbers of the in-memory routing index.
#[derive(Default)]
pub struct Routing {
    agents: Vec<AgentRecord>,
    numbers: Vec<NumberRoute>,
}

impl Routing {
    pub fn new() -> Self {
        Self::default()
    }

    /// An agent `id` whose `sip_uri` points at `at`.
    pub fn agent(self, id: &str, at: &str, max: u32, status: AgentStatus) -> Self {
        self.agent_uri(id, &format!("sip:{id}@{at}"), max, status)
    }

    pub fn agent_uri(mut self, id: &str, sip_uri: &str, max: u32, status: AgentStatus) -> Self {
        self.agents.push(AgentRecord {
            id: id.into(),
            account_id: ACCOUNT.into(),
            name: id.into(),
            sip_uri: sip_uri.into(),
            max_concurrent_calls: max,
            voicemail_message: None,
            status,
            sip_username: None,
            sip_password: None,
            media_encryption: Default::default(),
            created_at: 0,
            updated_at: 0,
        });
        self
    }

    /// Digest credentials on the agent added last.
    pub fn credentials(mut self, user: &str, password: &str) -> Self {
        let a = self.agents.last_mut().expect("an agent first");
        a.sip_username = Some(user.into());
        a.sip_password = Some(Secret::new(password));
        self
    }

    /// A purchased number routed to `primary`, then `fallback` (as `TestEdge::add_number`).
    pub fn number(self, did: &str, primary: &str, fallback: Option<&str>) -> Self {
        let inbound = InboundRoute {
            agent_id: primary.into(),
            fallback_agent_id: fallback.map(Into::into),
            voicemail_message: None,
            transfer: Default::default(),
        };
        self.number_route(
            did,
            primary,
            Some(inbound),
            NumberSource::Purchased,
            Provider::Local,
            None,
        )
    }

    /// A bring-your-own number of `agent` going out through `trunk_address` (as `TestEdge::add_byo_number`).
    pub fn byo_number(
        self,
        did: &str,
        agent: &str,
        provider: Provider,
        trunk_address: &str,
        creds: Option<(&str, &str)>,
    ) -> Self {
        let trunk = OutboundTrunk {
            trunk_address: trunk_address.into(),
            auth_username: creds.map(|c| c.0.to_owned()),
            auth_password: creds.map(|c| Secret::new(c.1)),
            ..Default::default()
        };
        self.byo_trunk(did, agent, provider, trunk)
    }

    /// A bring-your-own number of `agent` with the whole `provider_config` given (tech prefix, token...).
    pub fn byo_trunk(self, did: &str, agent: &str, provider: Provider, trunk: OutboundTrunk) -> Self {
        self.number_route(did, agent, None, NumberSource::Byo, provider, Some(trunk))
    }

    /// An inbound number (routed to `primary`) that also has a trunk for outbound calls and transfers.
    pub fn number_with_trunk(
        self,
        did: &str,
        primary: &str,
        provider: Provider,
        trunk_address: &str,
        creds: Option<(&str, &str)>,
    ) -> Self {
        let inbound = InboundRoute {
            agent_id: primary.into(),
            fallback_agent_id: None,
            voicemail_message: None,
            transfer: Default::default(),
        };
        let trunk = OutboundTrunk {
            trunk_address: trunk_address.into(),
            auth_username: creds.map(|c| c.0.to_owned()),
            auth_password: creds.map(|c| Secret::new(c.1)),
            ..Default::default()
        };
        self.number_route(did, primary, Some(inbound), NumberSource::Byo, provider, Some(trunk))
    }

    /// The number added last passes agents' transfers to numbers on to the carrier.
    pub fn carrier_transfers(mut self) -> Self {
        let n = self.numbers.last_mut().expect("a number first");
        n.inbound_routing.as_mut().expect("an inbound number").transfer = edge_store::TransferMode::Carrier;
        self
    }

    fn number_route(
        mut self,
        did: &str,
        agent: &str,
        inbound: Option<InboundRoute>,
        source: NumberSource,
        provider: Provider,
        trunk: Option<OutboundTrunk>,
    ) -> Self {
        let n = self.numbers.len();
        self.numbers.push(NumberRoute {
            number_id: format!("num_{n}"),
            account_id: ACCOUNT.into(),
            phone_number: did.into(),
            agent_id: agent.into(),
            inbound_routing: inbound,
            provider,
            source,
            provider_config: trunk,
        });
        self
    }

    /// The voicemail greeting (`inbound_routing.voicemail_message`) of the number added last.
    pub fn voicemail_message(mut self, text: &str) -> Self {
        let n = self.numbers.last_mut().expect("a number first");
        n.inbound_routing.as_mut().expect("an inbound number").voicemail_message = Some(text.into());
        self
    }

    /// The number id of `did` (`num_<n>` in the order added).
    pub fn number_id(&self, did: &str) -> String {
        self.numbers
            .iter()
            .find(|n| n.phone_number == did)
            .map(|n| n.number_id.clone())
            .expect("a number of this routing")
    }
}

/// How a scripted agent answers the INVITEs it gets (as `tests/common`'s `Mode`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// 100, 180, then 200 with SDP.
    Answer,
    /// 100, then this final status.
    Reject(u16),
    /// Says nothing at all.
    Silent,
    /// 100 and 180, never a final answer (until CANCEL: 200 + 487).
    RingForever,
}

/// What a scripted trunk does with an (authorised) INVITE (as `tests/common/trunk.rs`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TrunkMode {
    Answer,
    Reject(u16, &'static str, Option<&'static str>),
    Ring,
    Silent,
}

/// A scripted peer at one address.
enum Script {
    Agent {
        mode: Mode,
        tag: String,
    },
    Trunk {
        mode: TrunkMode,
        auth: Option<(DigestVerifier, String, String)>,
        gate: Option<Box<TrunkGate>>,
        n: u32,
    },
}

/// What a scripted trunk demands of a new INVITE besides digest, as carriers do on IP connections (Telnyx:
/// a tech prefix on the dialled number, an `X-Telnyx-Token`): an INVITE without it is refused with
/// `refuse`, no challenge.
#[derive(Debug, Clone)]
pub struct TrunkGate {
    /// This header with exactly this value.
    pub header: Option<(&'static str, String)>,
    /// A Request-URI user that starts with this.
    pub user_prefix: Option<String>,
    pub refuse: (u16, &'static str),
}

/// One message the edge sent, as its peer received it.
#[derive(Debug, Clone)]
pub struct Sent {
    /// Fake time since the harness started.
    pub at: Duration,
    pub to: SocketAddr,
    pub link: Link,
    pub msg: Message,
}

/// An engine refusal of `POST /v1/calls` as the API answers it (status, code, field, words).
#[derive(Debug)]
pub struct ApiRefusal {
    pub http_status: u16,
    pub code: String,
    pub field: Option<String>,
    pub message: String,
}

impl std::fmt::Display for ApiRefusal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} {}: {}", self.http_status, self.code, self.message)
    }
}

pub struct Harness {
    pub ep: Endpoint,
    pub start: Instant,
    pub now: Instant,
    /// Every call record the engine produced, in order.
    pub records: Vec<CallRecord>,
    /// Every voicemail row the engine produced, in order.
    pub voicemails: Vec<VoicemailRecord>,
    /// Every metric update call control produced, in order (it writes to no recorder itself).
    pub metrics: Vec<oneinbox_edge::call::MetricUpdate>,
    /// What each peer received and the test has not read yet.
    inbox: HashMap<SocketAddr, VecDeque<Sent>>,
    /// Everything the edge sent, in order (for invariants).
    pub log: Vec<Sent>,
    /// Everything peers sent to the edge: (time, from, message).
    pub fed: Vec<(Duration, SocketAddr, Message)>,
    scripts: HashMap<SocketAddr, Script>,
    /// Host names the fake resolver knows.
    hosts: HashMap<String, Vec<TrunkTarget>>,
    /// Keep every transmit in `log` (the property test reads it); scenario tests may too.
    pub keep_log: bool,
    /// Peers whose transmits fail as a refused TCP connect would (reported by `on_send_failure`).
    refused: Vec<SocketAddr>,
}

impl Harness {
    /// An endpoint over `routing`, on [`base_config`] changed by `tweak`.
    pub fn new(routing: Routing, tweak: impl FnOnce(&mut Config)) -> Harness {
        Self::build(routing, tweak, None)
    }

    /// As [`Harness::new`], with a [`FakeMedia`] plane (relays, voicemail) the test keeps a handle on.
    pub fn with_media(routing: Routing, tweak: impl FnOnce(&mut Config)) -> (Harness, FakeMedia) {
        let media = FakeMedia::default();
        let h = Self::build(routing, tweak, Some(Box::new(media.clone())));
        (h, media)
    }

    fn build(routing: Routing, tweak: impl FnOnce(&mut Config), media: Option<Box<dyn CallMedia>>) -> Harness {
        let mut cfg = base_config();
        tweak(&mut cfg);
        let cfg = Arc::new(cfg);
        let index = Arc::new(RoutingIndex::from_entries(routing.agents, routing.numbers));
        let start = Instant::now();
        let local = Arc::new(Local {
            contact: format!("<sip:edge@{EDGE}>"),
            sent_by: EDGE.into(),
            server_name: cfg.sip.server_name.clone(),
            tls_sent_by: None,
        });
        let calls = CallController::new(
            CallConfig {
                agent_setup_timeout: cfg.agent_setup_timeout,
                agent_ring_timeout: cfg.agent_ring_timeout,
                default_country_code: cfg.default_country_code.clone(),
                local,
                t1: cfg.sip.t1,
                t2: cfg.sip.t2,
                warn_agent: "198.18.0.1".into(),
                outbound: cfg.outbound.clone(),
                targets: edge_contract::TargetPolicy::new(cfg.security.internal_targets.clone()),
                node: std::sync::Arc::from(cfg.node_id.as_str()),
                tls: Default::default(),
            },
            index.clone(),
            media,
            oneinbox_edge::shard::CallShard::single(cfg.outbound.max_pacing_wait),
        );
        let agent_auth = cfg.outbound.agent_digest.then(|| {
            let verifier = DigestVerifier::new(
                cfg.outbound.auth_realm.clone().unwrap_or_else(|| "198.18.0.1".into()),
                b"call machine nonce secret",
                cfg.outbound.agent_digest_nonce_ttl.as_secs(),
                &[sip_core::digest::Algorithm::Sha256, sip_core::digest::Algorithm::Md5],
                Some(sip_core::digest::Qop::Auth),
                sip_core::digest::AuthHeader::ProxyAuthorization,
            );
            SharedAgentAuth::new(AgentAuth::new(
                verifier,
                cfg.outbound.agent_digest_guard.clone(),
                index.clone(),
            ))
        });
        let ep = Endpoint::new(
            EndpointConfig {
                server_name: cfg.sip.server_name.clone(),
                admission: cfg.admission.clone(),
                warn_agent: "198.18.0.1".into(),
                tx: TxConfig {
                    timers: TimerConfig {
                        t1: cfg.sip.t1,
                        t2: cfg.sip.t2,
                        t4: cfg.sip.t4,
                        ..TimerConfig::default()
                    },
                    max_transactions: cfg.sip.max_transactions,
                    auto_trying: AutoTrying::Immediate,
                },
            },
            Box::new(CarrierPolicy::new(cfg.clone())),
            calls,
            SharedAdmission::new(Admission::new(cfg.admission.clone(), start)),
            agent_auth,
            start,
        );
        Harness {
            ep,
            start,
            now: start,
            records: Vec::new(),
            voicemails: Vec::new(),
            metrics: Vec::new(),
            inbox: HashMap::new(),
            log: Vec::new(),
            fed: Vec::new(),
            scripts: HashMap::new(),
            hosts: HashMap::new(),
            keep_log: true,
            refused: Vec::new(),
        }
    }

    /// Fake time since the start.
    pub fn elapsed(&self) -> Duration {
        self.now - self.start
    }

    /// The agent at `at` answers every INVITE by `mode` (and CANCEL, BYE, re-INVITE as a UA does).
    pub fn agent(&mut self, at: &str, mode: Mode) {
        let tag = format!("ag{}", self.scripts.len() + 1);
        self.scripts.insert(addr(at), Script::Agent { mode, tag });
    }

    /// Every send to `at` fails from now on as a refused TCP connect.
    pub fn refuse(&mut self, at: &str) {
        self.refused.push(addr(at));
    }

    /// The trunk at `at` answers by `mode`, after a digest challenge when `auth` is given.
    pub fn trunk(&mut self, at: &str, mode: TrunkMode, auth: Option<TrunkAuth>) {
        let auth = auth.map(|a| {
            let v = DigestVerifier::new(
                "trunk.test",
                b"trunk-secret",
                60,
                &[a.algorithm],
                Some(sip_core::digest::Qop::Auth),
                a.header,
            );
            (v, a.username, a.password)
        });
        self.scripts.insert(
            addr(at),
            Script::Trunk {
                mode,
                auth,
                gate: None,
                n: 0,
            },
        );
    }

    /// The trunk at `at` (set up by [`Harness::trunk`]) also demands `gate` of every new INVITE.
    pub fn gate(&mut self, at: &str, gate: TrunkGate) {
        match self.scripts.get_mut(&addr(at)) {
            Some(Script::Trunk { gate: g, .. }) => *g = Some(Box::new(gate)),
            _ => panic!("no trunk at {at}"),
        }
    }

    /// The To tag the scripted agent at `at` puts on its answers.
    pub fn agent_tag(&self, at: &str) -> String {
        match self.scripts.get(&addr(at)) {
            Some(Script::Agent { tag, .. }) => tag.clone(),
            _ => panic!("no scripted agent at {at}"),
        }
    }

    /// The fake resolver's answer for `host`.
    pub fn host(&mut self, host: &str, targets: Vec<TrunkTarget>) {
        self.hosts.insert(host.into(), targets);
    }

    /// A peer at `from` sends `bytes` over UDP.
    pub fn send(&mut self, from: &str, bytes: impl Into<Bytes>) {
        self.send_from(addr(from), bytes.into());
    }

    pub fn send_from(&mut self, from: SocketAddr, bytes: Bytes) {
        self.send_on(from, Link::Udp, bytes);
    }

    /// A peer at `from` sends `bytes` on its TCP connection `conn` (the id a TCP driver gives it); the
    /// edge's answers go back on it.
    pub fn send_tcp(&mut self, from: &str, conn: u64, bytes: impl Into<Bytes>) {
        self.send_on(addr(from), Link::Tcp(conn), bytes.into());
    }

    fn send_on(&mut self, from: SocketAddr, link: Link, bytes: Bytes) {
        if let Ok(m) = Message::parse(bytes.clone()) {
            self.fed.push((self.elapsed(), from, m));
        }
        self.ep.handle(self.now, from, link, bytes);
        self.pump();
    }

    /// The media engine reports `ev` (a media time-out, a finished voicemail recording) now.
    pub fn media_event(&mut self, ev: edge_media::MediaEvent) {
        self.ep.on_media_event(self.now, ev);
        self.pump();
    }

    /// `POST /v1/calls`, as the API task hands it to the engine.
    pub fn originate(&mut self, from: &str, to: &str, agent_id: &str) -> Result<CallRecord, ApiRefusal> {
        let req = edge_api::OriginateRequest {
            account_id: ACCOUNT.into(),
            from: from.into(),
            to: to.into(),
            agent_id: agent_id.into(),
        };
        let r = self.ep.originate(self.now, req);
        self.pump();
        r.map_err(|e| {
            let (status, code, field) = edge_api::refusal_parts(&e);
            ApiRefusal {
                http_status: status.as_u16(),
                code: code.into(),
                field: field.map(Into::into),
                message: e.to_string(),
            }
        })
    }

    /// `DELETE /v1/calls/{id}`.
    pub fn hang_up(&mut self, id: &str) -> Option<CallRecord> {
        let r = self.ep.hang_up(self.now, ACCOUNT, id);
        self.pump();
        r
    }

    /// Moves the fake clock `d` on, firing every timer at its own instant on the way.
    pub fn advance(&mut self, d: Duration) {
        let until = self.now + d;
        self.run_until(until, |_| false);
    }

    /// Runs timers in order until `done` holds (checked after each) or the clock reaches `until`; true
    /// when `done` held.
    pub fn run_until(&mut self, until: Instant, mut done: impl FnMut(&mut Harness) -> bool) -> bool {
        if done(self) {
            return true;
        }
        let mut rounds = 0u32;
        loop {
            match self.ep.poll_timeout() {
                Some(at) if at <= until => {
                    rounds += 1;
                    assert!(rounds < 1_000_000, "timers never settle");
                    self.now = self.now.max(at);
                    self.ep.handle_timeout(self.now);
                    self.pump();
                    if done(self) {
                        return true;
                    }
                }
                _ => {
                    self.now = self.now.max(until);
                    return done(self);
                }
            }
        }
    }

    /// Takes what the edge sends (and the DNS jobs it asks for), lets scripted peers answer, until quiet.
    pub fn pump(&mut self) {
        for _ in 0..10_000 {
            let mut replies: Vec<(SocketAddr, Bytes)> = Vec::new();
            while let Some(job) = self.ep.calls.poll_resolve() {
                let result = self
                    .hosts
                    .get(&job.host)
                    .cloned()
                    .ok_or_else(|| format!("{}: no such host", job.host));
                self.ep.on_resolved(self.now, &job, result);
            }
            let mut failures = Vec::new();
            while let Some(t) = self.ep.poll_transmit() {
                let (to, link) = (t.to.addr, link_of(&t.to));
                if self.refused.contains(&to) {
                    failures.push(SendFailure {
                        key: t.key.clone(),
                        to,
                        error: SendError::Connect(std::io::ErrorKind::ConnectionRefused),
                    });
                    continue;
                }
                let msg = Message::parse(t.bytes.clone()).unwrap_or_else(|e| {
                    panic!(
                        "the edge sent unparseable SIP ({e}):\n{}",
                        String::from_utf8_lossy(&t.bytes)
                    )
                });
                let sent = Sent {
                    at: self.elapsed(),
                    to,
                    link,
                    msg,
                };
                if let Some(script) = self.scripts.get_mut(&to) {
                    for r in script.answer(&sent.msg, to) {
                        replies.push((to, r));
                    }
                }
                if self.keep_log {
                    self.log.push(sent.clone());
                }
                self.inbox.entry(to).or_default().push_back(sent);
            }
            let failed = !failures.is_empty();
            for f in failures {
                self.ep.on_send_failure(self.now, &f);
            }
            self.drain_records();
            if replies.is_empty() && !failed {
                return;
            }
            for (from, bytes) in replies {
                if let Ok(m) = Message::parse(bytes.clone()) {
                    self.fed.push((self.elapsed(), from, m));
                }
                self.ep.handle(self.now, from, Link::Udp, bytes);
            }
        }
        panic!("the edge and the scripted peers never go quiet");
    }

    fn drain_records(&mut self) {
        while let Some(p) = self.ep.poll_record() {
            match p {
                Persist::Call(r) => self.records.push(r),
                Persist::Voicemail(v) => self.voicemails.push(v),
            }
        }
        while let Some(m) = self.ep.poll_metric() {
            self.metrics.push(m);
        }
    }

    /// The next message `to` received, letting fake time run up to `wait` for one.
    pub fn recv(&mut self, to: &str, wait: Duration) -> Option<Sent> {
        let a = addr(to);
        let until = self.now + wait;
        self.run_until(until, |h| h.inbox.get(&a).is_some_and(|q| !q.is_empty()));
        self.inbox.get_mut(&a).and_then(|q| q.pop_front())
    }

    /// The next request of `method` `to` received (others before it are dropped), within `wait`.
    pub fn try_expect(&mut self, to: &str, method: Method, wait: Duration) -> Option<Sent> {
        let until = self.now + wait;
        loop {
            let left = until.saturating_duration_since(self.now);
            let m = self.recv(to, left)?;
            if m.msg.method() == Some(&method) {
                return Some(m);
            }
        }
    }

    /// As the socket tests' `expect`: the next `method` request `to` got within [`S`], or a panic.
    pub fn expect(&mut self, to: &str, method: Method) -> Sent {
        let m = method.clone();
        self.try_expect(to, method, S)
            .unwrap_or_else(|| panic!("{to} got no {m:?} within {S:?} (at {:?})", self.elapsed()))
    }

    /// As the socket tests' `got`.
    pub fn got(&mut self, to: &str, method: Method, wait: Duration) -> bool {
        self.try_expect(to, method, wait).is_some()
    }

    /// The next final response to an INVITE `to` received within `wait`, with the provisionals before it.
    pub fn final_response(&mut self, to: &str, wait: Duration) -> (Vec<u16>, Sent) {
        let until = self.now + wait;
        let mut prov = Vec::new();
        loop {
            let left = until.saturating_duration_since(self.now);
            let Some(s) = self.recv(to, left) else {
                panic!("{to}: no final response within {wait:?} (at {:?})", self.elapsed());
            };
            if s.msg.is_request() {
                continue;
            }
            let code = s.msg.status().unwrap_or(0);
            if code < 200 {
                prov.push(code);
                continue;
            }
            if s.msg.cseq().map(|c| c.method == Method::Invite).unwrap_or(false) {
                return (prov, s);
            }
        }
    }

    /// Everything `to` received and the test has not read, in order.
    pub fn take(&mut self, to: &str) -> Vec<Sent> {
        self.inbox.remove(&addr(to)).map(Vec::from).unwrap_or_default()
    }

    /// The latest record of the call whose SIP Call-ID (carrier or agent leg A) is `sip_call_id`.
    pub fn record_by_sip_call_id(&mut self, sip_call_id: &str) -> Option<CallRecord> {
        self.drain_records();
        self.records
            .iter()
            .rev()
            .find(|r| r.sip_call_id == sip_call_id)
            .cloned()
    }

    /// The latest record of call `id`.
    pub fn record(&mut self, id: &str) -> Option<CallRecord> {
        self.drain_records();
        self.records.iter().rev().find(|r| r.id == id).cloned()
    }

    /// The newest call's latest record.
    pub fn newest_record(&mut self) -> CallRecord {
        self.drain_records();
        let id = self.records.last().map(|r| r.id.clone()).expect("a call record");
        self.record(&id).expect("a call record")
    }

    /// Lets fake time run (up to `wait`) until call `id`'s record is final; returns it.
    pub fn final_record(&mut self, id: &str, wait: Duration) -> CallRecord {
        let until = self.now + wait;
        let id = id.to_owned();
        let ok = self.run_until(until, |h| h.record(&id).is_some_and(|r| r.ended_at_ms.is_some()));
        assert!(ok, "call {id} not final within {wait:?}: {:?}", self.record(&id));
        self.record(&id).expect("record")
    }

    /// Lets fake time run (up to `wait`) until call `id`'s record shows `status`.
    pub fn wait_status(&mut self, id: &str, status: edge_store::CallStatus, wait: Duration) -> CallRecord {
        let until = self.now + wait;
        let id = id.to_owned();
        let ok = self.run_until(until, |h| h.record(&id).is_some_and(|r| r.status == status));
        assert!(ok, "call {id} never {status:?}: {:?}", self.record(&id));
        self.record(&id).expect("record")
    }
}

/// Digest the scripted trunk demands.
#[derive(Debug, Clone)]
pub struct TrunkAuth {
    pub username: String,
    pub password: String,
    pub header: sip_core::digest::AuthHeader,
    pub algorithm: sip_core::digest::Algorithm,
}

impl Script {
    /// The scripted peer's answers to one message from the edge.
    fn answer(&mut self, m: &Message, me: SocketAddr) -> Vec<Bytes> {
        if !m.is_request() {
            return vec![];
        }
        match self {
            Script::Agent { mode, tag } => agent_answers(m, *mode, tag, me),
            Script::Trunk { mode, auth, gate, n } => {
                *n += 1;
                let tag = format!("tr{n}");
                trunk_answers(m, *mode, auth.as_ref(), gate.as_deref(), &tag, me)
            }
        }
    }
}

/// What `tests/common`'s scripted agent answers.
fn agent_answers(m: &Message, mode: Mode, tag: &str, me: SocketAddr) -> Vec<Bytes> {
    let contact = format!("<sip:agent@{me}>");
    let reply = |code: u16, reason: &str, sdp: bool| {
        let b = ResponseBuilder::for_request(m, code, reason);
        let b = if code > 100 { b.to_tag(tag) } else { b };
        let b = b.header("Contact", &contact);
        let b = if sdp {
            b.body("application/sdp", Bytes::from_static(SDP.as_bytes()))
        } else {
            b
        };
        b.build()
    };
    match m.method() {
        Some(Method::Invite) if m.to().ok().and_then(|t| t.tag()).is_some() => vec![reply(200, "OK", true)],
        Some(Method::Invite) => match mode {
            Mode::Silent => vec![],
            Mode::Answer => vec![
                reply(100, "Trying", false),
                reply(180, "Ringing", false),
                reply(200, "OK", true),
            ],
            Mode::Reject(code) => vec![reply(100, "Trying", false), reply(code, "Rejected", false)],
            Mode::RingForever => vec![reply(100, "Trying", false), reply(180, "Ringing", false)],
        },
        // The CANCEL's 200, then 487 to the INVITE it cancels (same branch, CSeq number).
        Some(Method::Cancel) => {
            let ok = reply(200, "OK", false);
            let inv = cancelled_invite(m);
            let r = ResponseBuilder::for_request(&inv, 487, "Request Terminated")
                .to_tag(tag)
                .build();
            vec![ok, r]
        }
        Some(Method::Ack) | None => vec![],
        Some(_) => vec![reply(200, "OK", false)],
    }
}

/// The INVITE a CANCEL cancels, as far as its response needs it (RFC 3261 9.1: same Via, From, To,
/// Call-ID and CSeq number).
fn cancelled_invite(cancel: &Message) -> Message {
    let text = String::from_utf8_lossy(cancel.bytes()).replacen("CANCEL ", "INVITE ", 1);
    let text = text.replace(" CANCEL\r\n", " INVITE\r\n");
    Message::parse(Bytes::from(text)).expect("INVITE from CANCEL")
}

/// What `tests/common/trunk.rs`'s trunk answers.
fn trunk_answers(
    m: &Message,
    mode: TrunkMode,
    auth: Option<&(DigestVerifier, String, String)>,
    gate: Option<&TrunkGate>,
    tag: &str,
    me: SocketAddr,
) -> Vec<Bytes> {
    let contact = format!("<sip:trunk@{me}>");
    let reply = |code: u16, reason: &'static str| {
        let b = ResponseBuilder::for_request(m, code, reason);
        if code > 100 {
            b.to_tag(tag)
        } else {
            b
        }
    };
    match m.method() {
        Some(Method::Invite) if m.to().ok().and_then(|t| t.tag()).is_none() => {
            if let Some(g) = gate {
                let header_ok = g
                    .header
                    .as_ref()
                    .is_none_or(|(n, v)| m.header(&HeaderName::from(*n)).map(str::trim) == Some(v.as_str()));
                let user = m
                    .request_uri_raw()
                    .and_then(|u| u.strip_prefix("sip:"))
                    .and_then(|u| u.split('@').next())
                    .unwrap_or("");
                let user_ok = g.user_prefix.as_ref().is_none_or(|p| user.starts_with(p.as_str()));
                if !(header_ok && user_ok) {
                    return vec![reply(g.refuse.0, g.refuse.1).build()];
                }
            }
            if let Some((v, user, pass)) = auth {
                let now = std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .map(|d| d.as_secs())
                    .unwrap_or(0);
                let bind = b"edge";
                let lookup = |u: &str| (u == user).then_some(DigestSecret::Password(pass));
                let challenge = match v.check(m, now, bind, lookup) {
                    Verdict::Authorized { .. } => None,
                    Verdict::Rejected { .. } => Some(v.challenge(now, bind, false)),
                    Verdict::Challenge(c) => Some(c),
                };
                if let Some(c) = challenge {
                    let mut b = reply(c.status, "Unauthorized");
                    for value in &c.header_values {
                        b = b.header(c.header_name, value);
                    }
                    return vec![b.build()];
                }
            }
            match mode {
                TrunkMode::Silent => vec![],
                TrunkMode::Answer => vec![
                    reply(100, "Trying").build(),
                    reply(180, "Ringing").build(),
                    reply(200, "OK")
                        .header("Contact", &contact)
                        .body("application/sdp", Bytes::from_static(TRUNK_SDP.as_bytes()))
                        .build(),
                ],
                TrunkMode::Reject(code, reason, twilio) => {
                    let mut b = reply(code, reason);
                    if let Some(t) = twilio {
                        b = b.header("X-Twilio-Error", t);
                    }
                    vec![reply(100, "Trying").build(), b.build()]
                }
                TrunkMode::Ring => vec![reply(100, "Trying").build(), reply(180, "Ringing").build()],
            }
        }
        Some(Method::Ack) | None => vec![],
        Some(_) => vec![reply(200, "OK").build()],
    }
}
