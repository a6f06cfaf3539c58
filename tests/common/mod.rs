//! In-process SIP peers for the edge's integration tests: a carrier UAC and scripted agent UASes, on real
//! UDP sockets on loopback, plus a running edge with a fresh store.
#![allow(dead_code)]

pub mod dns;
pub mod trunk;

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use edge_store::{AgentStatus, InboundRouting, NewAgent, NewNumber, NumberSource, Provider};
use oneinbox_edge::config::Config;
use oneinbox_edge::server::{self, Edge};
use sip_core::message::{HeaderName, Message, Method};
use tokio::net::UdpSocket;
use tokio::sync::{mpsc, Mutex};

pub const SDP: &str = "v=0\r\no=peer 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\nm=audio 40000 RTP/AVP 0 101\r\na=rtpmap:0 PCMU/8000\r\na=rtpmap:101 telephone-event/8000\r\n";

pub struct TestEdge {
    pub edge: Edge,
    pub account: String,
    pub api_key: String,
    _dir: tempfile::TempDir,
}

/// A running edge on loopback with short agent timeouts (setup 300 ms, ring 1 s) unless `tweak` changes them.
/// `EDGE_TEST_ENGINE_SHARDS=N` runs it with N engine shards (`runtime.engine_shards`), so that any test
/// binary can be run against a sharded engine: `EDGE_TEST_ENGINE_SHARDS=2 cargo test --test inbound_calls`.
pub async fn start_edge(tweak: impl FnOnce(&mut Config)) -> TestEdge {
    start_edge_at(tempfile::tempdir().unwrap(), tweak).await
}

/// [`start_edge`] on the store and keys under `dir` (a node restarting on its data directory).
pub async fn start_edge_at(dir: tempfile::TempDir, tweak: impl FnOnce(&mut Config)) -> TestEdge {
    let mut cfg = Config::for_tests(dir.path());
    cfg.agent_setup_timeout = Duration::from_millis(300);
    cfg.agent_ring_timeout = Duration::from_secs(1);
    // Each edge of a test binary gets its own RTP ports, below the kernel's ephemeral range.
    static EDGE_N: AtomicU32 = AtomicU32::new(0);
    let base = 20_000 + (EDGE_N.fetch_add(1, Ordering::Relaxed) % 60) as u16 * 200;
    cfg.media.rtp_ports = (base, base + 199);
    cfg.media.port_quarantine = Duration::from_millis(200);
    if let Ok(n) = std::env::var("EDGE_TEST_ENGINE_SHARDS") {
        cfg.engine_shards = n.parse().expect("EDGE_TEST_ENGINE_SHARDS: a number of shards");
    }
    tweak(&mut cfg);
    let edge = server::start(cfg).await.unwrap();
    let (account, api_key) = edge.store.create_api_key(None, "tests").await.unwrap();
    TestEdge {
        edge,
        account,
        api_key,
        _dir: dir,
    }
}

impl TestEdge {
    /// Stops the edge as a killed process stops (`Edge::abort`: no call ended); its data directory, for
    /// [`start_edge_at`].
    pub async fn kill(self) -> tempfile::TempDir {
        self.edge.abort().await;
        self._dir
    }

    /// The running edge, its account and its data directory (kept alive by the caller), for tests that
    /// end the edge themselves (`Edge::drain` takes it).
    pub fn split(self) -> (Edge, String, tempfile::TempDir) {
        (self.edge, self.account, self._dir)
    }

    /// A carrier whose Call-ID the edge's engine shard `shard` owns.
    pub async fn carrier_on_shard(&self, did: &str, shard: usize) -> Carrier {
        let mut c = Carrier::new(self.sip(), did).await;
        let base = c.call_id.clone();
        for i in 0..10_000 {
            if self.edge.shard_of(&c.call_id) == shard {
                return c;
            }
            c.call_id = format!("{i}-{base}");
        }
        panic!("no Call-ID for shard {shard} of {}", self.edge.shards());
    }

    pub fn sip(&self) -> SocketAddr {
        self.edge.sip_udp.unwrap()
    }

    pub async fn add_agent(&self, name: &str, agent: &Agent, max: u32, status: AgentStatus) -> String {
        let a = self
            .edge
            .store
            .create_agent(
                &self.account,
                NewAgent {
                    name: name.into(),
                    sip_uri: format!("sip:{name}@{}", agent.addr),
                    max_concurrent_calls: max,
                    voicemail_message: None,
                    status,
                    sip_username: None,
                    sip_password: None,
                    media_encryption: Default::default(),
                },
            )
            .await
            .unwrap();
        a.id
    }

    /// A number routed to `primary`, then `fallback`.
    pub async fn add_number(&self, did: &str, primary: &str, fallback: Option<&str>) -> String {
        self.add_number_routing(
            did,
            primary,
            Some(InboundRouting {
                agent_id: Some(primary.into()),
                fallback_agent_id: fallback.map(Into::into),
                voicemail_message: None,
                transfer: Default::default(),
            }),
        )
        .await
    }

    pub async fn add_number_routing(&self, did: &str, agent: &str, routing: Option<InboundRouting>) -> String {
        let n = self
            .edge
            .store
            .create_number(
                &self.account,
                NewNumber {
                    phone_number: did.into(),
                    friendly_name: None,
                    agent_id: agent.into(),
                    provider: Provider::Local,
                    source: NumberSource::Purchased,
                    provider_ref: None,
                    inbound_routing: routing,
                    provider_config: None,
                },
            )
            .await
            .unwrap();
        n.id
    }

    /// A bring-your-own number on `provider` whose calls go out through `trunk_address` with these credentials.
    pub async fn add_byo_number(
        &self,
        did: &str,
        agent: &str,
        provider: Provider,
        trunk_address: &str,
        creds: Option<(&str, &str)>,
    ) -> String {
        let n = self
            .edge
            .store
            .create_number(
                &self.account,
                NewNumber {
                    phone_number: did.into(),
                    friendly_name: None,
                    agent_id: agent.into(),
                    provider,
                    source: NumberSource::Byo,
                    provider_ref: None,
                    inbound_routing: None,
                    provider_config: Some(edge_store::NewProviderConfig {
                        trunk_address: trunk_address.into(),
                        auth_username: creds.map(|c| c.0.to_owned()),
                        auth_password: creds.map(|c| edge_store::Secret::new(c.1)),
                        ..Default::default()
                    }),
                },
            )
            .await
            .unwrap();
        n.id
    }

    /// Polls `GET /v1/calls/{id}` until its status is final; returns the JSON.
    pub async fn final_call(&self, id: &str, wait: Duration) -> serde_json::Value {
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            let (code, body) = self.http("GET", &format!("/v1/calls/{id}"), None).await;
            if code == 200 {
                let v: serde_json::Value = serde_json::from_str(&body).unwrap();
                let s = v["status"].as_str().unwrap_or("").to_owned();
                if ["completed", "busy", "failed", "no-answer", "canceled"].contains(&s.as_str()) {
                    return v;
                }
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "call {id} not final in time: {body}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Polls `GET /v1/calls/{id}` until it shows `status`.
    pub async fn wait_status(&self, id: &str, status: &str, wait: Duration) -> serde_json::Value {
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            let (code, body) = self.http("GET", &format!("/v1/calls/{id}"), None).await;
            if code == 200 {
                let v: serde_json::Value = serde_json::from_str(&body).unwrap();
                if v["status"] == status {
                    return v;
                }
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "call {id} never {status}: {body}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// A raw HTTP/1.1 request to the API; returns (status, body).
    pub async fn http(&self, method: &str, path: &str, body: Option<&str>) -> (u16, String) {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let mut s = tokio::net::TcpStream::connect(self.edge.api.unwrap()).await.unwrap();
        let body = body.unwrap_or("");
        // /metrics is the operator's, behind its own token; everything else takes the account's key.
        let bearer = if path == "/metrics" {
            Config::METRICS_TOKEN_FOR_TESTS
        } else {
            self.api_key.as_str()
        };
        let req = format!(
            "{method} {path} HTTP/1.1\r\nHost: edge\r\nAuthorization: Bearer {bearer}\r\nContent-Type: application/json\r\n\
             Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len()
        );
        s.write_all(req.as_bytes()).await.unwrap();
        let mut out = Vec::new();
        s.read_to_end(&mut out).await.unwrap();
        let text = String::from_utf8_lossy(&out).into_owned();
        let status = text.get(9..12).and_then(|c| c.parse().ok()).unwrap_or(0);
        let body = text
            .split_once("\r\n\r\n")
            .map(|(_, b)| b.to_owned())
            .unwrap_or_default();
        (status, body)
    }
}

/// The `m=audio` port and `c=` address of an SDP body.
pub fn media_of(body: &[u8]) -> (String, u16) {
    let text = std::str::from_utf8(body).unwrap();
    let c = text
        .lines()
        .find_map(|l| l.strip_prefix("c=IN IP4 "))
        .unwrap()
        .trim()
        .to_owned();
    let port = text
        .lines()
        .find_map(|l| l.strip_prefix("m=audio "))
        .and_then(|l| l.split(' ').next())
        .unwrap()
        .parse()
        .unwrap();
    (c, port)
}

pub fn parse(b: &[u8]) -> Message {
    Message::parse(Bytes::copy_from_slice(b)).unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(b)))
}

static SEQ: AtomicU32 = AtomicU32::new(1);

fn uniq() -> u32 {
    SEQ.fetch_add(1, Ordering::Relaxed)
}

/// The carrier: sends INVITEs for a DID and plays the caller's side of the dialog.
pub struct Carrier {
    pub sock: UdpSocket,
    pub edge: SocketAddr,
    pub call_id: String,
    pub branch: String,
    pub from_tag: String,
    pub did: String,
    /// To of the 2xx (with the edge's tag) once answered.
    pub remote_to: Option<String>,
    pub cseq: u32,
}

impl Carrier {
    pub async fn new(edge: SocketAddr, did: &str) -> Carrier {
        let n = uniq();
        Carrier {
            sock: UdpSocket::bind("127.0.0.1:0").await.unwrap(),
            edge,
            call_id: format!("carrier-{n}@127.0.0.1"),
            branch: format!("z9hG4bKcarrier{n}"),
            from_tag: format!("ct{n}"),
            did: did.into(),
            remote_to: None,
            cseq: 1,
        }
    }

    pub fn addr(&self) -> SocketAddr {
        self.sock.local_addr().unwrap()
    }

    pub fn invite_bytes(&self) -> String {
        let me = self.addr();
        format!(
            "INVITE sip:{did}@{edge} SIP/2.0\r\nVia: SIP/2.0/UDP {me};branch={b};rport\r\nMax-Forwards: 70\r\n\
             From: \"Alice Caller\" <sip:+12125550000@{me}>;tag={t}\r\nTo: <sip:{did}@{edge}>\r\nCall-ID: {c}\r\n\
             CSeq: 1 INVITE\r\nContact: <sip:+12125550000@{me}>\r\nX-Twilio-CallSid: CA0123456789abcdef\r\n\
             Content-Type: application/sdp\r\nContent-Length: {l}\r\n\r\n{SDP}",
            did = self.did,
            edge = self.edge,
            b = self.branch,
            t = self.from_tag,
            c = self.call_id,
            l = SDP.len()
        )
    }

    pub async fn send(&self, raw: &str) {
        self.sock.send_to(raw.as_bytes(), self.edge).await.unwrap();
    }

    pub async fn invite(&self) {
        self.send(&self.invite_bytes()).await;
    }

    pub async fn recv(&self, wait: Duration) -> Option<Message> {
        let mut buf = vec![0u8; 65536];
        match tokio::time::timeout(wait, self.sock.recv(&mut buf)).await {
            Ok(Ok(n)) => Some(parse(&buf[..n])),
            _ => None,
        }
    }

    /// The next final response to our INVITE (provisionals collected).
    pub async fn final_response(&mut self, wait: Duration) -> (Vec<u16>, Message) {
        let deadline = tokio::time::Instant::now() + wait;
        let mut prov = Vec::new();
        loop {
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            let m = self.recv(left).await.expect("no final response in time");
            if !m.is_request() {
                let code = m.status().unwrap();
                if code < 200 {
                    prov.push(code);
                    continue;
                }
                if m.cseq().unwrap().method == Method::Invite {
                    if code < 300 {
                        self.remote_to = m.header(&HeaderName::To).map(str::to_owned);
                    }
                    return (prov, m);
                }
            }
        }
    }

    pub async fn ack(&self, resp: &Message) {
        let me = self.addr();
        let code = resp.status().unwrap();
        // Non-2xx: same branch (part of the INVITE transaction); 2xx: a new one.
        let branch = if code >= 300 {
            self.branch.clone()
        } else {
            format!("z9hG4bKack{}", uniq())
        };
        let to = resp.header(&HeaderName::To).unwrap();
        let raw = format!(
            "ACK sip:{did}@{edge} SIP/2.0\r\nVia: SIP/2.0/UDP {me};branch={branch};rport\r\nMax-Forwards: 70\r\n\
             From: \"Alice Caller\" <sip:+12125550000@{me}>;tag={t}\r\nTo: {to}\r\nCall-ID: {c}\r\nCSeq: 1 ACK\r\n\
             Content-Length: 0\r\n\r\n",
            did = self.did,
            edge = self.edge,
            t = self.from_tag,
            c = self.call_id,
        );
        self.send(&raw).await;
    }

    pub async fn cancel(&self) {
        let me = self.addr();
        let raw = format!(
            "CANCEL sip:{did}@{edge} SIP/2.0\r\nVia: SIP/2.0/UDP {me};branch={b};rport\r\nMax-Forwards: 70\r\n\
             From: \"Alice Caller\" <sip:+12125550000@{me}>;tag={t}\r\nTo: <sip:{did}@{edge}>\r\nCall-ID: {c}\r\n\
             CSeq: 1 CANCEL\r\nContent-Length: 0\r\n\r\n",
            did = self.did,
            edge = self.edge,
            b = self.branch,
            t = self.from_tag,
            c = self.call_id,
        );
        self.send(&raw).await;
    }

    /// An in-dialog request (BYE, re-INVITE with SDP, INFO) from the caller.
    pub async fn in_dialog(&mut self, method: &str, with_sdp: bool) {
        self.cseq += 1;
        let me = self.addr();
        let to = self.remote_to.clone().expect("answered");
        let (ct, body) = if with_sdp {
            ("Content-Type: application/sdp\r\n", SDP)
        } else {
            ("", "")
        };
        let raw = format!(
            "{method} sip:edge@{edge} SIP/2.0\r\nVia: SIP/2.0/UDP {me};branch=z9hG4bKcd{u};rport\r\nMax-Forwards: 70\r\n\
             From: \"Alice Caller\" <sip:+12125550000@{me}>;tag={t}\r\nTo: {to}\r\nCall-ID: {c}\r\nCSeq: {n} {method}\r\n\
             Contact: <sip:+12125550000@{me}>\r\n{ct}Content-Length: {l}\r\n\r\n{body}",
            edge = self.edge,
            u = uniq(),
            t = self.from_tag,
            c = self.call_id,
            n = self.cseq,
            l = body.len()
        );
        self.send(&raw).await;
    }

    /// Waits for a request from the edge (e.g. its BYE), answering nothing.
    pub async fn expect_request(&self, method: Method, wait: Duration) -> Message {
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            let m = self
                .recv(left)
                .await
                .unwrap_or_else(|| panic!("no {method:?} from the edge"));
            if m.method() == Some(&method) {
                return m;
            }
        }
    }

    /// Answers an edge request 200 OK.
    pub async fn ok(&self, req: &Message, body: Option<&str>) {
        let b = sip_core::build::ResponseBuilder::for_request(req, 200, "OK");
        let b = match body {
            Some(sdp) => b.body("application/sdp", Bytes::copy_from_slice(sdp.as_bytes())),
            None => b,
        };
        let me = self.addr();
        let contact = format!("<sip:+12125550000@{me}>");
        self.sock
            .send_to(&b.header("Contact", &contact).build(), self.edge)
            .await
            .unwrap();
    }
}

/// How a scripted agent answers INVITEs.
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

/// A scripted agent UAS on a loopback UDP socket. Every message it receives is reported on `rx`.
pub struct Agent {
    pub addr: SocketAddr,
    pub rx: Mutex<mpsc::UnboundedReceiver<Message>>,
    sock: Arc<UdpSocket>,
    tag: String,
    /// The INVITE of the current dialog and where the edge is, for agent-side BYE / re-INVITE.
    last_invite: Arc<Mutex<Option<(Message, SocketAddr)>>>,
}

impl Agent {
    pub async fn spawn(mode: Mode) -> Agent {
        Agent::spawn_on("127.0.0.1", mode).await
    }

    /// An agent listening on `ip` (a loopback address of the test's choosing).
    pub async fn spawn_on(ip: &str, mode: Mode) -> Agent {
        let sock = Arc::new(UdpSocket::bind(format!("{ip}:0")).await.unwrap());
        let addr = sock.local_addr().unwrap();
        let (tx, rx) = mpsc::unbounded_channel();
        let last_invite = Arc::new(Mutex::new(None));
        let (s, li) = (sock.clone(), last_invite.clone());
        let tag = format!("ag{}", uniq());
        let my_tag = tag.clone();
        tokio::spawn(async move {
            let mut buf = vec![0u8; 65536];
            loop {
                let Ok((n, from)) = s.recv_from(&mut buf).await else {
                    return;
                };
                let Ok(m) = Message::parse(Bytes::copy_from_slice(&buf[..n])) else {
                    continue;
                };
                let _ = tx.send(m.clone());
                if !m.is_request() {
                    continue;
                }
                let reply = |code: u16, reason: &str, sdp: bool| {
                    let b = sip_core::build::ResponseBuilder::for_request(&m, code, reason);
                    let b = if code > 100 { b.to_tag(&tag) } else { b };
                    let contact = format!("<sip:agent@{addr}>");
                    let b = b.header("Contact", &contact);
                    let b = if sdp {
                        b.body("application/sdp", Bytes::from_static(SDP.as_bytes()))
                    } else {
                        b
                    };
                    b.build()
                };
                match m.method() {
                    Some(Method::Invite) if m.to().unwrap().tag().is_some() => {
                        let _ = s.send_to(&reply(200, "OK", true), from).await;
                    }
                    Some(Method::Invite) => match mode {
                        Mode::Silent => {}
                        Mode::Answer => {
                            *li.lock().await = Some((m.clone(), from));
                            let _ = s.send_to(&reply(100, "Trying", false), from).await;
                            let _ = s.send_to(&reply(180, "Ringing", false), from).await;
                            let _ = s.send_to(&reply(200, "OK", true), from).await;
                        }
                        Mode::Reject(code) => {
                            let _ = s.send_to(&reply(100, "Trying", false), from).await;
                            let _ = s.send_to(&reply(code, "Rejected", false), from).await;
                        }
                        Mode::RingForever => {
                            *li.lock().await = Some((m.clone(), from));
                            let _ = s.send_to(&reply(100, "Trying", false), from).await;
                            let _ = s.send_to(&reply(180, "Ringing", false), from).await;
                        }
                    },
                    Some(Method::Cancel) => {
                        let _ = s.send_to(&reply(200, "OK", false), from).await;
                        if let Some((inv, _)) = li.lock().await.as_ref() {
                            let r = sip_core::build::ResponseBuilder::for_request(inv, 487, "Request Terminated")
                                .to_tag(&tag)
                                .build();
                            let _ = s.send_to(&r, from).await;
                        }
                    }
                    Some(Method::Ack) | None => {}
                    Some(_) => {
                        let _ = s.send_to(&reply(200, "OK", false), from).await;
                    }
                }
            }
        });
        Agent {
            addr,
            rx: Mutex::new(rx),
            sock,
            tag: my_tag,
            last_invite,
        }
    }

    /// The next message of `method` (requests) the agent received.
    pub async fn expect(&self, method: Method, wait: Duration) -> Message {
        let mut rx = self.rx.lock().await;
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            match tokio::time::timeout(left, rx.recv()).await {
                Ok(Some(m)) if m.method() == Some(&method) => return m,
                Ok(Some(_)) => continue,
                _ => panic!("agent {} got no {method:?}", self.addr),
            }
        }
    }

    /// True if a request of `method` arrives within `wait`.
    pub async fn got(&self, method: Method, wait: Duration) -> bool {
        let mut rx = self.rx.lock().await;
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            match tokio::time::timeout(left, rx.recv()).await {
                Ok(Some(m)) if m.method() == Some(&method) => return true,
                Ok(Some(_)) => continue,
                _ => return false,
            }
        }
    }

    /// The agent hangs up (BYE) or re-INVITEs on its dialog with the edge.
    pub async fn send_in_dialog(&self, method: &str, with_sdp: bool) {
        let guard = self.last_invite.lock().await;
        let (inv, edge) = guard.as_ref().expect("agent has a dialog");
        let contact = inv.contacts().unwrap()[0].uri_raw.to_owned();
        // Our identity in the dialog: the INVITE's To with the tag we put on our responses.
        let ack_to = format!("{};tag={}", inv.header(&HeaderName::To).unwrap().trim(), self.tag);
        let to = inv.header(&HeaderName::From).unwrap();
        let call_id = inv.call_id().unwrap();
        let (ct, body) = if with_sdp {
            ("Content-Type: application/sdp\r\n", SDP)
        } else {
            ("", "")
        };
        let raw = format!(
            "{method} {contact} SIP/2.0\r\nVia: SIP/2.0/UDP {me};branch=z9hG4bKag{u};rport\r\nMax-Forwards: 70\r\n\
             From: {ack_to}\r\nTo: {to}\r\nCall-ID: {call_id}\r\nCSeq: 100 {method}\r\nContact: <sip:agent@{me}>\r\n\
             {ct}Content-Length: {l}\r\n\r\n{body}",
            me = self.addr,
            u = uniq(),
            l = body.len()
        );
        self.sock.send_to(raw.as_bytes(), *edge).await.unwrap();
    }
}
