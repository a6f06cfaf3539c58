//! The edge's sans-IO SIP endpoint as a whole: what a carrier, an agent and a stranger send, on a fake clock.
//!
//! Input: a script of records, each starting with `~` and an op letter on its own line (a file that does
//! not start with `~` is one UDP datagram from the carrier, so any SIP message is a seed):
//!
//! | record              | what happens                                                                  |
//! |---------------------|-------------------------------------------------------------------------------|
//! | `~c` / `~a` / `~s`  | the rest is a UDP datagram from the carrier / an agent network / a stranger   |
//! | `~C` / `~A` / `~S`  | the rest is bytes on that peer's TCP connection (cut by the framer; a frame   |
//! |                     | may span records, a framing error closes the connection)                      |
//! | `~w MS`             | the clock moves MS milliseconds; every timer due fires                        |
//! | `~r K CODE`         | the peer of the K-th latest request the edge sent answers it with CODE and a  |
//! |                     | fixed To tag; the rest of the record is extra header lines, then after a      |
//! |                     | blank line an SDP body                                                        |
//!
//! In c/a/s/C/A/S records `$xCALLID`, `$xFROMTAG`, `$xTOTAG`, `$xBRANCH` stand for those values of the
//! last message the edge sent to peer `x` (`c` carrier, `a` agent, `s` stranger, `t` trunk): how a peer
//! answers in a dialog, and how a stranger who saw the traffic tries to hijack it. `$PROXYAUTH` is the
//! answer (user `alice`, password `secret`) to the last digest challenge the edge sent to that peer, for the
//! request of that record: how an agent outside the agent networks places a call.
//!
//! `FUZZ_TRACE=1` prints what goes in and out (first lines) when replaying an input by hand.
//!
//! Must hold: no panic; every datagram the edge sends parses as SIP; one input never draws more than a
//! few messages and a bounded number of bytes; live transactions stay within `sip.max_transactions`; a
//! timer run leaves no timer due; and after shutdown and enough time, no call, dialog, transaction or agent
//! load is left.
#![no_main]

use std::collections::{HashMap, HashSet, VecDeque};
use std::net::SocketAddr;
use std::path::Path;
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use bytes::Bytes;
use libfuzzer_sys::fuzz_target;
use oneinbox_edge::call::leg::Local;
use oneinbox_edge::call::{CallConfig, CallController};
use oneinbox_edge::config::Config;
use oneinbox_edge::sip::agent_auth::AgentAuth;
use oneinbox_edge::sip::endpoint::{Endpoint, EndpointConfig, SourcePolicy};
use oneinbox_edge::transport::{link_of, Link};
use sip_core::build::ResponseBuilder;
use sip_core::digest::{authorize, DigestChallenge, DigestCredentials};
use sip_core::framing::{Frame, StreamFramer};
use sip_core::message::{Message, Transport};
use sip_core::transaction::{AutoTrying, TimerConfig, TxConfig};

const CARRIER: &str = "192.0.2.10:5060";
const AGENT: &str = "198.51.100.20:5060";
const STRANGER: &str = "203.0.113.66:5060";
const TRUNK: &str = "198.51.100.130:5060";
/// Live transactions allowed: small (below what the config accepts), so that the 503 path is reached.
const MAX_TRANSACTIONS: usize = 32;
/// Messages and bytes one input may draw at once, at most (before any timer runs).
const MAX_MESSAGES_PER_INPUT: usize = 8;

const CONFIG: &str = r#"
[sip]
udp = "203.0.113.1:5060"
tcp = "203.0.113.1:5060"
[routing]
default_country_code = "1"
[media]
enabled = false
[outbound]
agent_digest = true
auth_realm = "edge.example.com"
[[agent_networks]]
name = "agents"
allow = ["198.51.100.16/28"]
[[carriers]]
name = "carrier"
allow = ["192.0.2.0/24"]
"#;

/// The endpoint under test: media off, the routing index holding two numbers and two agents. The one place
/// that knows how an `Endpoint` is built, so that API changes are absorbed here.
fn build_endpoint(start: Instant) -> Endpoint {
    // Parsed once: every input gets a fresh endpoint, but the config and the routing index are read-only.
    static SHARED: OnceLock<(Arc<Config>, Arc<edge_store::RoutingIndex>)> = OnceLock::new();
    let (cfg, index) = SHARED.get_or_init(|| {
        let cfg = Config::parse(Path::new("<fuzz>"), CONFIG).unwrap_or_else(|e| panic!("fuzz config: {e}"));
        (Arc::new(cfg), Arc::new(routing_index()))
    });
    let cfg = cfg.clone();
    let sent_by = "203.0.113.1:5060".to_string();
    let calls = CallController::new(
        CallConfig {
            agent_setup_timeout: cfg.agent_setup_timeout,
            agent_ring_timeout: cfg.agent_ring_timeout,
            default_country_code: cfg.default_country_code.clone(),
            local: Arc::new(Local {
                contact: format!("<sip:edge@{sent_by}>"),
                sent_by,
                server_name: cfg.sip.server_name.clone(),
                tls_sent_by: None,
            }),
            t1: cfg.sip.t1,
            t2: cfg.sip.t2,
            warn_agent: "203.0.113.1".into(),
            outbound: cfg.outbound.clone(),
            targets: Default::default(),
            node: Arc::from(cfg.node_id.as_str()),
            tls: Default::default(),
        },
        index.clone(),
        None,
        oneinbox_edge::shard::CallShard::single(cfg.outbound.max_pacing_wait),
    );
    let verifier = sip_core::digest::DigestVerifier::new(
        "edge.example.com",
        b"fuzz nonce secret",
        300,
        &[sip_core::digest::Algorithm::Sha256, sip_core::digest::Algorithm::Md5],
        Some(sip_core::digest::Qop::Auth),
        sip_core::digest::AuthHeader::ProxyAuthorization,
    );
    let agent_auth = AgentAuth::new(verifier, cfg.outbound.agent_digest_guard.clone(), index.clone());
    Endpoint::new(
        EndpointConfig {
            server_name: cfg.sip.server_name.clone(),
            admission: cfg.admission.clone(),
            warn_agent: "203.0.113.1".into(),
            tx: TxConfig {
                timers: TimerConfig {
                    t1: cfg.sip.t1,
                    t2: cfg.sip.t2,
                    t4: cfg.sip.t4,
                    ..TimerConfig::default()
                },
                max_transactions: MAX_TRANSACTIONS,
                auto_trying: AutoTrying::Immediate,
            },
        },
        Box::new(Policy { cfg: cfg.clone() }),
        calls,
        oneinbox_edge::shard::limits::SharedAdmission::new(oneinbox_edge::sip::admission::Admission::new(
            cfg.admission.clone(),
            start,
        )),
        Some(oneinbox_edge::shard::limits::SharedAgentAuth::new(agent_auth)),
        start,
    )
}

/// The `[[carriers]]` / `[[agent_networks]]` check, as the server does it.
struct Policy {
    cfg: Arc<Config>,
}

impl SourcePolicy for Policy {
    fn carrier_for(&self, source: SocketAddr) -> Option<Arc<str>> {
        self.cfg.carrier_for(source.ip()).map(|c| Arc::from(c.name.as_str()))
    }
    fn agent_network_for(&self, source: SocketAddr) -> Option<Arc<str>> {
        self.cfg
            .agent_network_for(source.ip())
            .map(|n| Arc::from(n.name.as_str()))
    }
    fn reject_unknown(&self) -> bool {
        true
    }
    fn digest_offered_to(&self, _source: SocketAddr) -> bool {
        true
    }
}

/// +14155550100: primary agent on an address, fallback agent on a host name (resolved by the driver),
/// outbound through the customer's trunk with digest. +14155550101: the fallback agent's, inbound off.
fn routing_index() -> edge_store::RoutingIndex {
    use edge_store::{
        AgentRecord, AgentStatus, InboundRoute, NumberRoute, NumberSource, OutboundTrunk, Provider, Secret,
    };
    let agent = |id: &str, uri: &str, user: Option<&str>| AgentRecord {
        id: id.into(),
        account_id: "acct".into(),
        name: id.into(),
        sip_uri: uri.into(),
        max_concurrent_calls: 2,
        voicemail_message: None,
        status: AgentStatus::Active,
        sip_username: user.map(Into::into),
        sip_password: user.map(|_| Secret::new("secret")),
        media_encryption: Default::default(),
        created_at: 0,
        updated_at: 0,
    };
    let number = |id: &str, e164: &str, agent: &str, inbound: Option<InboundRoute>| NumberRoute {
        number_id: id.into(),
        account_id: "acct".into(),
        phone_number: e164.into(),
        agent_id: agent.into(),
        inbound_routing: inbound,
        provider: Provider::Twilio,
        source: NumberSource::Byo,
        provider_config: Some(OutboundTrunk {
            trunk_address: TRUNK.into(),
            auth_username: Some("trunkuser".into()),
            auth_password: Some(Secret::new("trunkpass")),
            ..Default::default()
        }),
    };
    edge_store::RoutingIndex::from_entries(
        vec![
            agent("ag_primary", "sip:agent@198.51.100.20:5060", Some("alice")),
            agent("ag_fallback", "sip:fallback@agents.example.com;transport=tcp", None),
        ],
        vec![
            number(
                "num_1",
                "+14155550100",
                "ag_primary",
                Some(InboundRoute {
                    agent_id: "ag_primary".into(),
                    fallback_agent_id: Some("ag_fallback".into()),
                    voicemail_message: None,
                    transfer: Default::default(),
                }),
            ),
            number("num_2", "+14155550101", "ag_fallback", None),
        ],
    )
}

fuzz_target!(|data: &[u8]| {
    let mut h = Harness::new();
    for rec in records(data) {
        h.step(rec);
    }
    h.finish();
});

/// `FUZZ_TRACE` set: replaying an input prints what goes in and out.
fn trace() -> bool {
    static ON: OnceLock<bool> = OnceLock::new();
    *ON.get_or_init(|| std::env::var_os("FUZZ_TRACE").is_some())
}

fn first_line(b: &[u8]) -> std::borrow::Cow<'_, str> {
    String::from_utf8_lossy(b.split(|&c| c == b'\n').next().unwrap_or(b"").trim_ascii_end())
}

/// Splits the script into records (see the module doc).
fn records(data: &[u8]) -> Vec<&[u8]> {
    let mut out = Vec::new();
    let mut start = 0;
    for i in 0..data.len() {
        if i > start && data[i] == b'~' && data[i - 1] == b'\n' {
            out.push(&data[start..i]);
            start = i;
        }
    }
    out.push(&data[start..]);
    out
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Who {
    Carrier,
    Agent,
    Stranger,
}

impl Who {
    fn addr(self) -> SocketAddr {
        let s = match self {
            Who::Carrier => CARRIER,
            Who::Agent => AGENT,
            Who::Stranger => STRANGER,
        };
        s.parse().unwrap_or(SocketAddr::from(([127, 0, 0, 1], 5060)))
    }
}

/// Values of the last message sent to one peer, for `$x...` substitution.
#[derive(Default, Clone)]
struct Seen {
    call_id: String,
    from_tag: String,
    to_tag: String,
    branch: String,
}

impl Who {
    /// The letter of `$x...` substitutions.
    fn letter(self) -> char {
        match self {
            Who::Carrier => 'c',
            Who::Agent => 'a',
            Who::Stranger => 's',
        }
    }
}

struct Harness {
    ep: Endpoint,
    start: Instant,
    now: Instant,
    /// Per-peer TCP connection: its id and the framer reading it.
    tcp: HashMap<Who, (u64, StreamFramer)>,
    next_conn: u64,
    /// Latest requests the edge sent, newest first, with where they went.
    sent_requests: VecDeque<(SocketAddr, Link, Message)>,
    seen: HashMap<char, Seen>,
    /// The last digest challenge sent to each peer.
    challenges: HashMap<char, DigestChallenge>,
    /// Every Call-ID the edge sent (both legs), to check that no dialog outlives shutdown.
    call_ids: HashSet<String>,
}

impl Harness {
    fn new() -> Self {
        let now = Instant::now();
        Harness {
            ep: build_endpoint(now),
            start: now,
            now,
            tcp: HashMap::new(),
            next_conn: 1,
            sent_requests: VecDeque::new(),
            seen: HashMap::new(),
            challenges: HashMap::new(),
            call_ids: HashSet::new(),
        }
    }

    fn step(&mut self, rec: &[u8]) {
        if trace() {
            eprintln!("[{:>7} ms] {}", (self.now - self.start).as_millis(), first_line(rec));
        }
        let Some(rest) = rec.strip_prefix(b"~") else {
            return self.datagram(Who::Carrier, rec);
        };
        let Some((&op, rest)) = rest.split_first() else { return };
        let (args, payload) = match rest.iter().position(|&b| b == b'\n') {
            Some(i) => (&rest[..i], &rest[i + 1..]),
            None => (rest, &[][..]),
        };
        let args = String::from_utf8_lossy(args);
        let mut nums = args.split_ascii_whitespace().map(|s| s.parse::<u64>().unwrap_or(0));
        match op {
            b'c' => self.datagram(Who::Carrier, payload),
            b'a' => self.datagram(Who::Agent, payload),
            b's' => self.datagram(Who::Stranger, payload),
            b'C' => self.stream(Who::Carrier, payload),
            b'A' => self.stream(Who::Agent, payload),
            b'S' => self.stream(Who::Stranger, payload),
            b'w' => self.wait(nums.next().unwrap_or(0).min(120_000)),
            b'r' => {
                let k = nums.next().unwrap_or(0) as usize;
                let code = nums.next().unwrap_or(200).clamp(100, 699) as u16;
                self.reply(k, code, payload);
            }
            _ => {}
        }
    }

    fn datagram(&mut self, who: Who, payload: &[u8]) {
        let data = self.substitute(who, payload);
        if trace() {
            eprintln!("    <- {who:?} UDP: {}", first_line(&data));
        }
        let len = data.len();
        self.ep.handle(self.now, who.addr(), Link::Udp, Bytes::from(data));
        self.after_input(len);
    }

    fn stream(&mut self, who: Who, payload: &[u8]) {
        let data = self.substitute(who, payload);
        let next_conn = &mut self.next_conn;
        let (conn, framer) = self.tcp.entry(who).or_insert_with(|| {
            *next_conn += 1;
            (*next_conn, StreamFramer::new(sip_core::message::MAX_MESSAGE_SIZE))
        });
        let conn = *conn;
        // As transport::tcp reads: never more than the framer has room for, then every complete frame.
        let mut frames = Vec::new();
        let mut pos = 0;
        let mut closed = false;
        while pos < data.len() && !closed {
            let n = framer.remaining_capacity().min(data.len() - pos);
            framer.push(&data[pos..pos + n]);
            pos += n;
            loop {
                match framer.next() {
                    Ok(Some(Frame::Message(m))) => frames.push(m),
                    Ok(Some(_)) => {}
                    Ok(None) => break,
                    Err(_) => {
                        closed = true;
                        break;
                    }
                }
            }
        }
        if closed {
            self.tcp.remove(&who);
        }
        for m in frames {
            if trace() {
                eprintln!("    <- {who:?} TCP {conn}: {}", first_line(&m));
            }
            let len = m.len();
            self.ep.handle(self.now, who.addr(), Link::Tcp(conn), m);
            self.after_input(len);
        }
    }

    fn wait(&mut self, ms: u64) {
        self.now += Duration::from_millis(ms);
        self.run_timers();
    }

    /// Fires every due timer, as the driver does when it wakes up.
    fn run_timers(&mut self) {
        let mut rounds = 0;
        while let Some(at) = self.ep.poll_timeout() {
            if at > self.now {
                break;
            }
            rounds += 1;
            assert!(
                rounds <= 16,
                "handle_timeout leaves a timer due at {:?}",
                at - self.start
            );
            self.ep.handle_timeout(self.now);
            self.resolve();
            self.drain();
        }
    }

    /// Answers the driver's DNS jobs: every host is the trunk's address (agents' host names included).
    fn resolve(&mut self) {
        while let Some(job) = self.ep.calls.poll_resolve() {
            let addr = TRUNK.parse().unwrap_or(SocketAddr::from(([127, 0, 0, 1], 5060)));
            let transport = job.transport.unwrap_or(Transport::Udp);
            self.ep.on_resolved(self.now, &job, Ok(vec![(addr, transport)]));
        }
    }

    fn after_input(&mut self, input_len: usize) {
        self.resolve();
        let (messages, bytes) = self.drain();
        assert!(
            messages <= MAX_MESSAGES_PER_INPUT,
            "one input of {input_len} bytes drew {messages} messages"
        );
        assert!(
            bytes <= 4 * input_len + 8192,
            "one input of {input_len} bytes drew {bytes} bytes"
        );
        assert!(
            self.ep.transactions() <= MAX_TRANSACTIONS,
            "transactions over the limit"
        );
    }

    /// Takes every transmit; each must be SIP we can read. Returns (messages, bytes).
    fn drain(&mut self) -> (usize, usize) {
        let (mut n, mut bytes) = (0, 0);
        while let Some(t) = self.ep.poll_transmit() {
            if trace() {
                eprintln!("    -> {} {:?}: {}", t.to.addr, link_of(&t.to), first_line(&t.bytes));
            }
            n += 1;
            bytes += t.bytes.len();
            let m = match Message::parse(t.bytes.clone()) {
                Ok(m) => m,
                Err(e) => panic!(
                    "the edge sent unparseable SIP ({e}):\n{}",
                    String::from_utf8_lossy(&t.bytes)
                ),
            };
            let peer = [Who::Carrier, Who::Agent, Who::Stranger]
                .into_iter()
                .find(|w| w.addr() == t.to.addr)
                .map_or('t', Who::letter);
            if let Ok(Some((ch, _))) = DigestChallenge::from_message(&m) {
                self.challenges.insert(peer, ch);
            }
            let seen = Seen {
                call_id: m.call_id().unwrap_or("").to_owned(),
                from_tag: m.from().ok().and_then(|f| f.tag()).unwrap_or("").to_owned(),
                to_tag: m.to().ok().and_then(|f| f.tag()).unwrap_or("").to_owned(),
                branch: m.top_via().ok().and_then(|v| v.branch()).unwrap_or("").to_owned(),
            };
            if self.call_ids.len() < 4096 {
                self.call_ids.insert(seen.call_id.clone());
            }
            self.seen.insert(peer, seen);
            if m.is_request() {
                self.sent_requests.push_front((t.to.addr, link_of(&t.to), m));
                self.sent_requests.truncate(16);
            }
        }
        (n, bytes)
    }

    /// The peer of a request we sent answers it.
    fn reply(&mut self, k: usize, code: u16, payload: &[u8]) {
        if self.sent_requests.is_empty() {
            return;
        }
        let (to, link, req) = self.sent_requests[k % self.sent_requests.len()].clone();
        let text = String::from_utf8_lossy(payload);
        let (head, body) = match text.find("\n\n") {
            Some(i) => (&text[..i], &text[i + 2..]),
            None => (&text[..], ""),
        };
        let headers: Vec<(&str, &str)> = head
            .lines()
            .filter_map(|l| l.split_once(':'))
            .map(|(n, v)| (n.trim(), v.trim()))
            .collect();
        let mut b = ResponseBuilder::for_request(&req, code, "Fuzz").to_tag("fz1");
        for (n, v) in headers {
            b = b.header(n, v);
        }
        if !body.is_empty() {
            b = b.body("application/sdp", Bytes::copy_from_slice(body.as_bytes()));
        }
        let bytes = b.build();
        if trace() {
            eprintln!("    <- {to}: {}", first_line(&bytes));
        }
        let len = bytes.len();
        let link = match link {
            Link::Udp => Link::Udp,
            // Our TCP requests come back on the connection they left by; any id will do here.
            _ => Link::Tcp(0),
        };
        self.ep.handle(self.now, to, link, bytes);
        self.after_input(len);
    }

    /// Replaces `$PROXYAUTH` (once) and every `$xNAME` (see the module doc).
    fn substitute(&self, who: Who, payload: &[u8]) -> Vec<u8> {
        if !payload.contains(&b'$') {
            return payload.to_vec();
        }
        const PROXYAUTH: &[u8] = b"$PROXYAUTH";
        match payload.windows(PROXYAUTH.len()).position(|w| w == PROXYAUTH) {
            Some(at) => {
                let answer = self.answer_challenge(who, payload).unwrap_or_default();
                let mut v = self.substitute_ids(&payload[..at]);
                v.extend_from_slice(answer.as_bytes());
                v.extend_from_slice(&self.substitute_ids(&payload[at + PROXYAUTH.len()..]));
                v
            }
            None => self.substitute_ids(payload),
        }
    }

    /// Replaces `$xNAME` by what the edge last sent to peer `x`.
    fn substitute_ids(&self, payload: &[u8]) -> Vec<u8> {
        let mut out = Vec::with_capacity(payload.len() + 64);
        let mut i = 0;
        'outer: while i < payload.len() {
            if payload[i] == b'$' && i + 1 < payload.len() {
                let peer = payload[i + 1] as char;
                if let Some(seen) = self.seen.get(&peer) {
                    let rest = &payload[i + 2..];
                    for (name, value) in [
                        (&b"CALLID"[..], &seen.call_id),
                        (b"FROMTAG", &seen.from_tag),
                        (b"TOTAG", &seen.to_tag),
                        (b"BRANCH", &seen.branch),
                    ] {
                        if rest.starts_with(name) {
                            out.extend_from_slice(value.as_bytes());
                            i += 2 + name.len();
                            continue 'outer;
                        }
                    }
                }
            }
            out.push(payload[i]);
            i += 1;
        }
        out
    }

    /// `Proxy-Authorization` for the request line of `payload`, answering the last challenge sent to `who`.
    fn answer_challenge(&self, who: Who, payload: &[u8]) -> Option<String> {
        let ch = self.challenges.get(&who.letter())?;
        let line = payload.split(|&b| b == b'\n').next()?;
        let line = std::str::from_utf8(line).ok()?;
        let mut parts = line.split_ascii_whitespace();
        let (method, uri) = (parts.next()?, parts.next()?);
        let creds = DigestCredentials::new("alice", "secret");
        authorize(ch, &creds, method, uri, 1, "fuzzcnonce", b"").ok()
    }

    /// Shutdown, then time enough for every transaction to end (the longest: an INVITE client transaction
    /// in Proceeding, Timer C = 180 s plus 64*T1 for the CANCEL exchange): nothing may be left.
    fn finish(&mut self) {
        self.ep.shutdown(self.now);
        self.drain();
        for _ in 0..30 {
            self.wait(1_000);
        }
        for _ in 0..60 {
            self.wait(10_000);
        }
        assert_eq!(self.ep.calls.active(), 0, "calls left after shutdown");
        assert_eq!(self.ep.transactions(), 0, "transactions left after shutdown");
        for id in &self.call_ids {
            assert!(!self.ep.calls.has_dialog(id), "dialog {id} left after shutdown");
        }
        // An agent counted busy forever would refuse every later call at max_concurrent_calls.
        for agent in ["ag_primary", "ag_fallback"] {
            assert_eq!(
                self.ep.calls.agent_load(agent),
                0,
                "{agent} still counted busy after shutdown"
            );
        }
    }
}
