//! The attacks a public port 5060 meets, played on loopback against a running edge, and what each gets.
//!
//! Addresses: the carrier is 127.0.0.1 (`twilio`), a second carrier 127.0.0.2 (`telnyx`), the agent network
//! 127.0.0.3; strangers send from 127.0.1.x. Agents listen on 127.0.0.1 like the carrier, which the source
//! rule must not confuse (an agent leg is judged by the agent's own address).

mod common;

use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::time::Duration;

use common::{start_edge, Agent, Carrier, Mode, TestEdge, SDP};
use edge_store::{AgentStatus, Provider};
use oneinbox_edge::config::{AgentNetwork, Carrier as CarrierCfg, UnknownSource};
use sip_core::digest::{AuthSession, AuthStep, DigestCredentials};
use sip_core::message::{HeaderName, Message, Method};
use tokio::net::UdpSocket;

const S: Duration = Duration::from_secs(3);
const DID: &str = "+14155550100";
const DEST: &str = "+447700900123";

fn carriers() -> Vec<CarrierCfg> {
    vec![
        CarrierCfg {
            name: "twilio".into(),
            allow: vec!["127.0.0.1/32".parse().unwrap()],
            media_encryption: Default::default(),
        },
        CarrierCfg {
            name: "telnyx".into(),
            allow: vec!["127.0.0.2/32".parse().unwrap()],
            media_encryption: Default::default(),
        },
    ]
}

async fn edge_with(tweak: impl FnOnce(&mut oneinbox_edge::config::Config)) -> TestEdge {
    start_edge(|c| {
        c.carriers = carriers();
        c.agent_networks = vec![AgentNetwork {
            name: "agents".into(),
            allow: vec!["127.0.0.3/32".parse().unwrap()],
        }];
        c.outbound.twilio_cps = 100.0;
        c.agent_ring_timeout = Duration::from_secs(5);
        tweak(c);
    })
    .await
}

/// A socket on `ip` that records every datagram the edge sends it.
struct Peer {
    sock: UdpSocket,
}

impl Peer {
    async fn on(ip: &str) -> Peer {
        Peer {
            sock: UdpSocket::bind(format!("{ip}:0")).await.unwrap(),
        }
    }

    fn addr(&self) -> SocketAddr {
        self.sock.local_addr().unwrap()
    }

    async fn send(&self, to: SocketAddr, raw: &[u8]) {
        self.sock.send_to(raw, to).await.unwrap();
    }

    /// Every datagram received within `wait`.
    async fn drain(&self, wait: Duration) -> Vec<Vec<u8>> {
        let mut out = Vec::new();
        let deadline = tokio::time::Instant::now() + wait;
        let mut buf = vec![0u8; 65536];
        while let Ok(Ok(n)) = tokio::time::timeout_at(deadline, self.sock.recv(&mut buf)).await {
            out.push(buf[..n].to_vec());
        }
        out
    }
}

fn parse(b: &[u8]) -> Message {
    common::parse(b)
}

/// An in-dialog request as the carrier would send it, from `me`, with the given tags and Call-ID.
fn in_dialog(
    method: &str,
    me: SocketAddr,
    edge: SocketAddr,
    call_id: &str,
    from_tag: &str,
    to: &str,
    body: &str,
) -> String {
    let ct = if body.is_empty() {
        ""
    } else {
        "Content-Type: application/sdp\r\n"
    };
    format!(
        "{method} sip:edge@{edge} SIP/2.0\r\nVia: SIP/2.0/UDP {me};branch=z9hG4bKx{n};rport\r\nMax-Forwards: 70\r\n\
         From: <sip:+12125550000@{me}>;tag={from_tag}\r\nTo: {to}\r\nCall-ID: {call_id}\r\nCSeq: 9 {method}\r\n\
         Contact: <sip:x@{me}>\r\n{ct}Content-Length: {l}\r\n\r\n{body}",
        n = me.port(),
        l = body.len()
    )
}

/// Answered inbound call: (carrier, agent, the edge's To with its tag, the call record id).
async fn answered_call(t: &TestEdge) -> (Carrier, Agent, String, String) {
    let agent = Agent::spawn(Mode::Answer).await;
    let agent_id = t.add_agent("primary", &agent, 5, AgentStatus::Active).await;
    let number_id = t.add_number(DID, &agent_id, None).await;
    let mut carrier = Carrier::new(t.sip(), DID).await;
    carrier.invite().await;
    let (_, ok) = carrier.final_response(S).await;
    assert_eq!(ok.status(), Some(200));
    carrier.ack(&ok).await;
    agent.expect(Method::Invite, S).await;
    let to = ok.header(&HeaderName::To).unwrap().to_owned();
    let call = live_call(t, &number_id).await;
    (carrier, agent, to, call)
}

async fn live_call(t: &TestEdge, number_id: &str) -> String {
    for _ in 0..100 {
        let (_, body) = t
            .http("GET", &format!("/v1/calls?phone_number_id={number_id}"), None)
            .await;
        let v: serde_json::Value = serde_json::from_str(&body).unwrap_or_default();
        if v["data"][0]["status"] == "in-progress" {
            return v["data"][0]["id"].as_str().unwrap().to_owned();
        }
        tokio::time::sleep(Duration::from_millis(30)).await;
    }
    panic!("no call in progress");
}

async fn status_of(t: &TestEdge, call: &str) -> serde_json::Value {
    let (_, body) = t.http("GET", &format!("/v1/calls/{call}"), None).await;
    serde_json::from_str(&body).unwrap()
}

/// Knowing a call's Call-ID, or even its tags, gives a stranger nothing: its BYE and re-INVITE are refused
/// statelessly, never reach the agent, and the call and its record carry on. A second carrier that learnt
/// the dialog id is refused the same way; the real carrier's BYE then ends the call.
#[tokio::test]
async fn strangers_cannot_end_or_redirect_a_call() {
    let t = edge_with(|_| {}).await;
    let (carrier, agent, edge_to, call) = answered_call(&t).await;
    let created_before = t.edge.endpoint_stats.transactions_other.load(Ordering::Relaxed);
    let stranger = Peer::on("127.0.1.9").await;
    let me = stranger.addr();
    let cid = carrier.call_id.clone();

    // Made-up tags, then the real ones, then a re-INVITE with the stranger's own SDP.
    let made_up = in_dialog("BYE", me, t.sip(), &cid, "guess", "<sip:x@y>;tag=guess", "");
    let real_tags = in_dialog("BYE", me, t.sip(), &cid, &carrier.from_tag, &edge_to, "");
    let reinvite = in_dialog("INVITE", me, t.sip(), &cid, &carrier.from_tag, &edge_to, SDP);
    for raw in [&made_up, &real_tags, &reinvite] {
        stranger.send(t.sip(), raw.as_bytes()).await;
        let got = stranger.drain(Duration::from_millis(300)).await;
        assert_eq!(got.len(), 1, "one stateless answer");
        let r = parse(&got[0]);
        assert_eq!(r.status(), Some(481), "{r:?}");
        assert!(
            r.header(&HeaderName::from("Server")).is_none(),
            "strangers see no Server header"
        );
        assert!(got[0].len() <= 2 * raw.len());
    }
    assert!(
        !agent.got(Method::Bye, Duration::from_millis(300)).await,
        "the agent saw a BYE"
    );
    assert!(
        !agent.got(Method::Invite, Duration::from_millis(100)).await,
        "the agent saw a re-INVITE"
    );
    assert_eq!(
        t.edge.endpoint_stats.transactions_other.load(Ordering::Relaxed),
        created_before,
        "a stranger opened a transaction"
    );

    // Another carrier with the right dialog id: it is a carrier, so the answer is stateful, but still 481.
    let telnyx = Peer::on("127.0.0.2").await;
    let bye = in_dialog("BYE", telnyx.addr(), t.sip(), &cid, &carrier.from_tag, &edge_to, "");
    telnyx.send(t.sip(), bye.as_bytes()).await;
    let got = telnyx.drain(Duration::from_millis(300)).await;
    assert_eq!(parse(&got[0]).status(), Some(481));
    assert!(!agent.got(Method::Bye, Duration::from_millis(200)).await);

    let v = status_of(&t, &call).await;
    assert_eq!(v["status"], "in-progress", "{v}");
    assert!(v["hangup_by"].is_null(), "{v}");

    // The carrier itself (its own address, the dialog's tags) ends it.
    let mut carrier = carrier;
    carrier.in_dialog("BYE", false).await;
    agent.expect(Method::Bye, S).await;
    let v = t.final_call(&call, S).await;
    assert_eq!(
        (v["status"].as_str(), v["hangup_by"].as_str()),
        (Some("completed"), Some("caller")),
        "{v}"
    );
}

/// A CANCEL copied from the carrier's INVITE (same branch, Call-ID and tags) but sent by a stranger does not
/// stop a ringing call; the carrier's own CANCEL does.
#[tokio::test]
async fn a_stranger_cannot_cancel_a_ringing_call() {
    let t = edge_with(|_| {}).await;
    let agent = Agent::spawn(Mode::RingForever).await;
    let agent_id = t.add_agent("primary", &agent, 5, AgentStatus::Active).await;
    t.add_number(DID, &agent_id, None).await;
    let carrier = Carrier::new(t.sip(), DID).await;
    carrier.invite().await;
    agent.expect(Method::Invite, S).await;
    // Wait for the 180 to reach the carrier.
    loop {
        let m = carrier.recv(S).await.expect("ringing");
        if m.status() == Some(180) {
            break;
        }
    }
    let stranger = Peer::on("127.0.1.10").await;
    let cancel = format!(
        "CANCEL sip:{DID}@{edge} SIP/2.0\r\nVia: SIP/2.0/UDP {c};branch={b};rport\r\nMax-Forwards: 70\r\n\
         From: \"Alice Caller\" <sip:+12125550000@{c}>;tag={t}\r\nTo: <sip:{DID}@{edge}>\r\nCall-ID: {cid}\r\n\
         CSeq: 1 CANCEL\r\nContent-Length: 0\r\n\r\n",
        edge = t.sip(),
        c = carrier.addr(),
        b = carrier.branch,
        t = carrier.from_tag,
        cid = carrier.call_id,
    );
    stranger.send(t.sip(), cancel.as_bytes()).await;
    let got = stranger.drain(Duration::from_millis(300)).await;
    assert!(
        got.len() <= 1 && got.iter().all(|d| parse(d).status() == Some(481)),
        "{got:?}"
    );
    assert!(
        !agent.got(Method::Cancel, Duration::from_millis(300)).await,
        "a stranger cancelled the call"
    );

    carrier.cancel().await;
    agent.expect(Method::Cancel, S).await;
}

/// The names an operator's dashboards read for admission and digest are on /metrics.
async fn assert_security_metrics_exported(t: &TestEdge) {
    let (_, text) = t.http("GET", "/metrics", None).await;
    for name in [
        "edge_sip_transactions ",
        "edge_sip_transactions_created_total{class=\"other\"}",
        "edge_sip_outsider_requests_total{outcome=\"answered\"}",
        "edge_sip_outsider_bytes_total{direction=\"out\"}",
        "edge_admission_dropped_total{limit=\"stranger\"}",
        "edge_digest_challenges_total",
        "edge_digest_failures_total{reason=\"wrong_password\"}",
        "edge_digest_throttled_total",
        "edge_digest_locked{what=\"source\"}",
    ] {
        assert!(text.contains(name), "{name} missing from /metrics");
    }
}

/// A stranger's INVITE costs no transaction and draws at most one datagram no larger than twice itself:
/// a 407 (computed from the request, never retransmitted) when agent digest is offered, a 403 when it is
/// not, and nothing under `unknown_source = "drop"`.
#[tokio::test]
async fn a_strangers_invite_costs_no_state_and_at_most_one_small_datagram() {
    let raw = |me: SocketAddr, edge: SocketAddr, n: u32| {
        format!(
            "INVITE sip:{DID}@{edge} SIP/2.0\r\nVia: SIP/2.0/UDP {me};branch=z9hG4bKfl{n}\r\nMax-Forwards: 70\r\n\
             From: <sip:a@{me}>;tag={n}\r\nTo: <sip:{DID}@{edge}>\r\nCall-ID: fl{n}\r\nCSeq: 1 INVITE\r\n\
             Content-Length: 0\r\n\r\n"
        )
    };
    // Digest offered (the default: reject policy, agent_digest on): one 407 per INVITE.
    let t = edge_with(|_| {}).await;
    let stranger = Peer::on("127.0.1.11").await;
    let inv = raw(stranger.addr(), t.sip(), 1);
    stranger.send(t.sip(), inv.as_bytes()).await;
    // Timer G would retransmit a stateful 407 after T1 (500 ms): wait past two of them.
    let got = stranger.drain(Duration::from_millis(1_800)).await;
    assert_eq!(got.len(), 1, "exactly one datagram: no 100 Trying, no retransmission");
    let r = parse(&got[0]);
    assert_eq!(r.status(), Some(407));
    assert!(got[0].len() <= 2 * inv.len(), "{} > 2 x {}", got[0].len(), inv.len());
    assert!(r.header(&HeaderName::from("Server")).is_none());
    // A request this small has room for the preferred challenge only; one with SDP, as agents send, gets
    // SHA-256 and MD5 (RFC 8760), still in one datagram within twice its size.
    let pa = HeaderName::from("Proxy-Authenticate");
    let challenges: Vec<&str> = r.headers(&pa).collect();
    assert_eq!(challenges.len(), 1, "{challenges:?}");
    assert!(challenges[0].contains("algorithm=SHA-256"));
    let with_sdp = raw(stranger.addr(), t.sip(), 4).replace(
        "Content-Length: 0\r\n\r\n",
        &format!(
            "Content-Type: application/sdp\r\nContent-Length: {}\r\n\r\n{SDP}",
            SDP.len()
        ),
    );
    stranger.send(t.sip(), with_sdp.as_bytes()).await;
    let got = stranger.drain(Duration::from_millis(1_200)).await;
    assert_eq!(got.len(), 1);
    assert!(got[0].len() <= 2 * with_sdp.len());
    let r = parse(&got[0]);
    let challenges: Vec<&str> = r.headers(&pa).collect();
    assert_eq!(challenges.len(), 2, "SHA-256 and MD5: {challenges:?}");
    assert!(challenges[0].contains("algorithm=SHA-256") && challenges[1].contains("algorithm=MD5"));
    // The nonce says nothing of the clock: 64 hex digits, no timestamp in them.
    let nonce = challenges[0]
        .split("nonce=\"")
        .nth(1)
        .unwrap()
        .split('"')
        .next()
        .unwrap();
    assert_eq!(nonce.len(), 64);
    let secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    assert!(!nonce.contains(&format!("{:x}", secs >> 8)), "{nonce}");
    let stats = &t.edge.endpoint_stats;
    assert_eq!(stats.transactions_other.load(Ordering::Relaxed), 0);
    assert_eq!(stats.transactions_carrier.load(Ordering::Relaxed), 0);
    assert_eq!(stats.transactions_live.load(Ordering::Relaxed), 0);
    assert_eq!(digest(&t).challenges.load(Ordering::Relaxed), 2);
    assert_security_metrics_exported(&t).await;

    // Digest not offered: a 403, also one datagram.
    let t = edge_with(|c| c.outbound.agent_digest = false).await;
    let inv = raw(stranger.addr(), t.sip(), 2);
    stranger.send(t.sip(), inv.as_bytes()).await;
    let got = stranger.drain(Duration::from_millis(1_200)).await;
    assert_eq!(got.len(), 1);
    assert_eq!(parse(&got[0]).status(), Some(403));
    assert!(got[0].len() <= 2 * inv.len());
    assert_eq!(t.edge.endpoint_stats.transactions_other.load(Ordering::Relaxed), 0);

    // Drop: nothing at all, INVITE included, and nothing for OPTIONS, BYE, garbage or a malformed request.
    let t = edge_with(|c| c.unknown_source = UnknownSource::Drop).await;
    let inv = raw(stranger.addr(), t.sip(), 3);
    stranger.send(t.sip(), inv.as_bytes()).await;
    let options = inv.replace("INVITE", "OPTIONS");
    stranger.send(t.sip(), options.as_bytes()).await;
    let bye = in_dialog("BYE", stranger.addr(), t.sip(), "nope", "a", "<sip:b@c>;tag=d", "");
    stranger.send(t.sip(), bye.as_bytes()).await;
    stranger.send(t.sip(), b"\x16\x03\x01garbage").await;
    stranger
        .send(
            t.sip(),
            inv.replace("Call-ID: fl3", "Call-ID: fl3\r\nSubject: a\0b").as_bytes(),
        )
        .await;
    assert!(stranger.drain(Duration::from_millis(1_200)).await.is_empty());
    assert_eq!(t.edge.endpoint_stats.transactions_other.load(Ordering::Relaxed), 0);
}

/// A NUL in a header, or a control byte in the request line, gets 400 with a Warning naming the fault.
#[tokio::test]
async fn control_bytes_get_400_with_a_warning() {
    let t = edge_with(|_| {}).await;
    let carrier = Carrier::new(t.sip(), DID).await;
    let nul = carrier
        .invite_bytes()
        .replace("Max-Forwards: 70\r\n", "Max-Forwards: 70\r\nSubject: abc\0def\r\n");
    carrier.send(&nul).await;
    let r = carrier.recv(S).await.expect("an answer");
    assert_eq!(r.status(), Some(400));
    let w = r.header(&HeaderName::from("Warning")).unwrap();
    assert!(w.contains("control character 0x00"), "{w}");
    let bel = carrier.invite_bytes().replacen("INVITE", "INV\x07ITE", 1);
    carrier.send(&bel).await;
    let r = carrier.recv(S).await.expect("an answer to a broken request line");
    assert_eq!(r.status(), Some(400));
    assert!(r.header(&HeaderName::from("Warning")).unwrap().contains("0x07"));
}

/// `sip.server_name = ""`: no Server header on the edge's answers, no User-Agent on its requests.
#[tokio::test]
async fn an_empty_server_name_sends_none() {
    let t = edge_with(|c| c.sip.server_name = String::new()).await;
    let (carrier, agent, _, _) = answered_call(&t).await;
    let options = carrier.invite_bytes().replace("INVITE", "OPTIONS").replace(
        &format!(
            "Content-Type: application/sdp\r\nContent-Length: {}\r\n\r\n{SDP}",
            SDP.len()
        ),
        "Content-Length: 0\r\n\r\n",
    );
    let probe = Peer::on("127.0.0.1").await;
    probe.send(t.sip(), options.as_bytes()).await;
    let got = probe.drain(Duration::from_millis(500)).await;
    let r = parse(&got[0]);
    assert_eq!(r.status(), Some(200));
    assert!(r.header(&HeaderName::from("Server")).is_none(), "{r:?}");
    let mut carrier = carrier;
    carrier.in_dialog("BYE", false).await;
    let bye = agent.expect(Method::Bye, S).await;
    assert!(bye.header(&HeaderName::from("User-Agent")).is_none());
}

/// Non-carrier traffic stops short of the carriers' share of `sip.max_transactions`: with 8 transactions
/// and half reserved, the agent network's fifth OPTIONS gets 503 while the carrier's still gets 200.
#[tokio::test]
async fn carriers_keep_their_share_of_the_transaction_table() {
    let t = edge_with(|c| {
        c.sip.max_transactions = 8;
        c.admission.carrier_reserved_percent = 50;
    })
    .await;
    let agents = Peer::on("127.0.0.3").await;
    let carrier = Peer::on("127.0.0.1").await;
    let options = |me: SocketAddr, n: u32| {
        format!(
            "OPTIONS sip:edge@{e} SIP/2.0\r\nVia: SIP/2.0/UDP {me};branch=z9hG4bKop{n}\r\nMax-Forwards: 70\r\n\
             From: <sip:a@{me}>;tag={n}\r\nTo: <sip:edge@{e}>\r\nCall-ID: op{n}\r\nCSeq: 1 OPTIONS\r\n\
             Content-Length: 0\r\n\r\n",
            e = t.sip()
        )
    };
    let mut codes = Vec::new();
    for n in 0..5 {
        agents.send(t.sip(), options(agents.addr(), n).as_bytes()).await;
        let got = agents.drain(Duration::from_millis(150)).await;
        codes.push(parse(&got[0]).status().unwrap());
    }
    assert_eq!(codes, [200, 200, 200, 200, 503]);
    carrier.send(t.sip(), options(carrier.addr(), 100).as_bytes()).await;
    assert_eq!(
        parse(&carrier.drain(Duration::from_millis(300)).await[0]).status(),
        Some(200)
    );
    assert_eq!(t.edge.endpoint_stats.reserved_for_carriers.load(Ordering::Relaxed), 1);
}

/// Agents dialing in with digest from outside the agent networks.
struct DigestAgent {
    peer: Peer,
    edge: SocketAddr,
    n: u32,
}

impl DigestAgent {
    fn invite(&self, call_id: &str, auth: Option<&str>) -> String {
        let me = self.peer.addr();
        let hdr = auth
            .map(|a| format!("Proxy-Authorization: {a}\r\n"))
            .unwrap_or_default();
        format!(
            "INVITE sip:{DEST}@{edge} SIP/2.0\r\nVia: SIP/2.0/UDP {me};branch=z9hG4bKda{call_id}{n};rport\r\n\
             Max-Forwards: 70\r\nFrom: <sip:{DID}@{me}>;tag=da{n}\r\nTo: <sip:{DEST}@{edge}>\r\nCall-ID: {call_id}\r\n\
             CSeq: {n} INVITE\r\nContact: <sip:agent@{me}>\r\n{hdr}Content-Type: application/sdp\r\n\
             Content-Length: {l}\r\n\r\n{SDP}",
            edge = self.edge,
            n = self.n,
            l = SDP.len()
        )
    }

    /// Sends an INVITE and returns the final answer (provisionals skipped), or `None` on silence.
    async fn call(&mut self, call_id: &str, auth: Option<&str>) -> Option<Message> {
        self.n += 1;
        self.peer.send(self.edge, self.invite(call_id, auth).as_bytes()).await;
        let deadline = tokio::time::Instant::now() + Duration::from_millis(1_500);
        let mut buf = vec![0u8; 65536];
        loop {
            let n = match tokio::time::timeout_at(deadline, self.peer.sock.recv(&mut buf)).await {
                Ok(Ok(n)) => n,
                _ => return None,
            };
            let m = parse(&buf[..n]);
            // Retransmitted answers of earlier calls (never ACKed here) are not this call's.
            if m.status().is_some_and(|s| s >= 200) && m.call_id().ok() == Some(call_id) {
                return Some(m);
            }
        }
    }

    /// The Proxy-Authorization answering `challenge` with these credentials.
    fn answer(&self, challenge: &Message, user: &str, password: &str) -> String {
        let uri = format!("sip:{DEST}@{}", self.edge);
        let mut s = AuthSession::new(DigestCredentials::new(user, password));
        match s.on_challenge(challenge, "INVITE", &uri, SDP.as_bytes()) {
            AuthStep::Retry { header_value, .. } => header_value,
            other => panic!("{other:?}"),
        }
    }
}

async fn digest_setup(t: &TestEdge) -> common::trunk::TestTrunk {
    let trunk = common::trunk::TestTrunk::spawn(common::trunk::TrunkMode::Answer, None).await;
    let agent = Agent::spawn(Mode::Answer).await;
    let agent_id = t.add_agent("remote", &agent, 5, AgentStatus::Active).await;
    t.add_byo_number(DID, &agent_id, Provider::Twilio, &trunk.addr.to_string(), None)
        .await;
    let (code, body) = t
        .http(
            "PATCH",
            &format!("/v1/agents/{agent_id}"),
            Some(r#"{"sip_username": "remote-agent", "sip_password": "correct horse"}"#),
        )
        .await;
    assert_eq!(code, 200, "{body}");
    trunk
}

/// A captured Proxy-Authorization places one call, its own: replayed on a new INVITE (another Call-ID), or
/// sent from another address, it is challenged again and the trunk sees nothing.
#[tokio::test]
async fn a_replayed_proxy_authorization_places_no_call() {
    let t = edge_with(|_| {}).await;
    let trunk = digest_setup(&t).await;
    let mut uac = DigestAgent {
        peer: Peer::on("127.0.1.20").await,
        edge: t.sip(),
        n: 0,
    };
    let challenge = uac.call("first", None).await.expect("a challenge");
    assert_eq!(challenge.status(), Some(407));
    let creds = uac.answer(&challenge, "remote-agent", "correct horse");
    let ok = uac.call("first", Some(&creds)).await.expect("an answer");
    assert_eq!(ok.status(), Some(200), "{ok:?}");
    trunk.expect(Method::Invite, S).await;

    // The same header on a new call attempt.
    let replay = uac.call("second", Some(&creds)).await.expect("an answer");
    assert_eq!(replay.status(), Some(407), "{replay:?}");
    // The same header from another address.
    let mut elsewhere = DigestAgent {
        peer: Peer::on("127.0.1.21").await,
        edge: t.sip(),
        n: 5,
    };
    let r = elsewhere.call("first", Some(&creds)).await.expect("an answer");
    assert_eq!(r.status(), Some(407));
    assert!(
        trunk
            .try_expect(Method::Invite, Duration::from_millis(500))
            .await
            .is_none(),
        "a replay placed a call"
    );
    assert!(digest(&t).replays.load(Ordering::Relaxed) >= 1);
}

/// Guessing: an unknown user and a wrong password get the very same answer, and after
/// `agent_digest_failures_before_backoff` failures the source gets silence.
#[tokio::test]
async fn password_guessing_learns_nothing_and_is_slowed_down() {
    let t = edge_with(|c| {
        c.outbound.agent_digest_guard.failures_before_backoff = 3;
        c.outbound.agent_digest_guard.max_backoff = Duration::from_secs(30);
    })
    .await;
    let trunk = digest_setup(&t).await;
    let mut uac = DigestAgent {
        peer: Peer::on("127.0.1.30").await,
        edge: t.sip(),
        n: 0,
    };
    let shape = |m: &Message| {
        (
            m.status(),
            m.reason().map(str::to_owned),
            m.header(&HeaderName::from("Warning")).map(str::to_owned),
            m.header_count(),
        )
    };
    let ch = uac.call("g1", None).await.unwrap();
    let wrong = uac.answer(&ch, "remote-agent", "battery staple");
    let a = uac.call("g1", Some(&wrong)).await.expect("an answer");
    let ch = uac.call("g2", None).await.unwrap();
    let unknown = uac.answer(&ch, "nobody", "battery staple");
    let b = uac.call("g2", Some(&unknown)).await.expect("an answer");
    assert_eq!(a.status(), Some(403));
    assert_eq!(shape(&a), shape(&b), "unknown user and wrong password must look alike");
    assert!(
        !format!("{a:?}").contains(&trunk.addr.to_string()),
        "no trunk named before authentication"
    );
    let ch = uac.call("g3", None).await.unwrap();
    let wrong = uac.answer(&ch, "remote-agent", "tr0ub4dor");
    assert_eq!(uac.call("g3", Some(&wrong)).await.map(|m| m.status()), Some(Some(403)));
    // Third failure reached: the source is now backing off and hears nothing, even with the right password.
    assert!(uac.call("g4", None).await.is_none(), "silence while backing off");
    let guard = &t.edge.security.digest.as_ref().unwrap().1;
    assert!(guard.throttled.load(Ordering::Relaxed) >= 1);
    assert_eq!(digest(&t).failed_wrong_password.load(Ordering::Relaxed), 2);
    assert_eq!(digest(&t).failed_unknown_user.load(Ordering::Relaxed), 1);
    // Another address is not slowed down by this one's failures.
    let mut other = DigestAgent {
        peer: Peer::on("127.0.1.31").await,
        edge: t.sip(),
        n: 0,
    };
    let ch = other.call("h1", None).await.expect("a challenge");
    let right = other.answer(&ch, "remote-agent", "correct horse");
    assert_eq!(other.call("h1", Some(&right)).await.and_then(|m| m.status()), Some(200));
}

fn digest(t: &TestEdge) -> &oneinbox_edge::sip::agent_auth::AgentAuthStats {
    &t.edge.security.digest.as_ref().expect("agent digest on").0
}

/// An agent on an address outside every carrier and agent network is a stranger to admission until the edge
/// sends it a request; from then on its answers and in-dialog requests get an agent's rate. With strangers
/// allowed one packet per 10 s, a whole call with that agent still goes through.
#[tokio::test]
async fn peers_the_edge_calls_are_not_limited_like_strangers() {
    let t = edge_with(|c| {
        c.admission.stranger_rate = 0.1;
        c.admission.stranger_burst = 1.0;
    })
    .await;
    let agent = Agent::spawn_on("127.0.1.40", Mode::Answer).await;
    let agent_id = t.add_agent("remote", &agent, 5, AgentStatus::Active).await;
    t.add_number(DID, &agent_id, None).await;
    let mut carrier = Carrier::new(t.sip(), DID).await;
    carrier.invite().await;
    // 100, 180 and 200 from the agent: three packets, past a stranger's burst of one.
    let (_, ok) = carrier.final_response(S).await;
    assert_eq!(ok.status(), Some(200));
    carrier.ack(&ok).await;
    agent.expect(Method::Ack, S).await;
    agent.send_in_dialog("BYE", false).await;
    carrier.expect_request(Method::Bye, S).await;
    assert_eq!(t.edge.security.admission.dropped_stranger.load(Ordering::Relaxed), 0);
}
