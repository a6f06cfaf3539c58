//! Outbound calls end to end on loopback: agents' INVITEs (trusted network or digest) and `POST /v1/calls`
//! -> the edge -> a test trunk that challenges (401/407), answers, refuses or stays silent; RFC 3263 failover
//! through a local DNS server; each error class as the API shows it.

mod common;

use std::net::SocketAddr;
use std::time::Duration;

use bytes::Bytes;
use common::trunk::{TestTrunk, TrunkAuth, TrunkMode};
use common::{media_of, start_edge, Agent, Mode, TestEdge, SDP};
use edge_store::{AgentStatus, Provider};
use sip_core::digest::{Algorithm, AuthHeader, AuthSession, AuthStep, DigestCredentials};
use sip_core::message::{HeaderName, Message, Method};
use tokio::net::UdpSocket;

const S: Duration = Duration::from_secs(3);
const DID: &str = "+14155550100";
const DEST: &str = "+447700900123";

/// An edge whose carriers are 127.0.0.1 only and whose agent network is 127.0.0.2.
async fn edge() -> TestEdge {
    start_edge(|c| {
        c.carriers = vec![oneinbox_edge::config::Carrier {
            name: "loopback".into(),
            allow: vec!["127.0.0.1/32".parse().unwrap()],
            media_encryption: Default::default(),
        }];
        c.agent_networks = vec![oneinbox_edge::config::AgentNetwork {
            name: "agents".into(),
            allow: vec!["127.0.0.2/32".parse().unwrap()],
        }];
        c.outbound.trunk_setup_timeout = Duration::from_millis(400);
        c.outbound.trunk_ring_timeout = Duration::from_secs(2);
        c.outbound.twilio_cps = 100.0;
        c.outbound.telnyx_cps = 100.0;
        c.outbound.default_cps = 100.0;
    })
    .await
}

/// An agent's SIP user agent placing a call: a UDP socket on `ip`.
struct AgentUac {
    sock: UdpSocket,
    edge: SocketAddr,
    call_id: String,
    from_tag: String,
    cseq: u32,
}

impl AgentUac {
    async fn new(ip: &str, edge: SocketAddr) -> AgentUac {
        let sock = UdpSocket::bind(format!("{ip}:0")).await.unwrap();
        let n = sock.local_addr().unwrap().port();
        AgentUac {
            sock,
            edge,
            call_id: format!("agent-{n}@{ip}"),
            from_tag: format!("at{n}"),
            cseq: 1,
        }
    }

    fn invite(&self, from: &str, to: &str, extra: &str) -> String {
        let me = self.sock.local_addr().unwrap();
        format!(
            "INVITE sip:{to}@{edge} SIP/2.0\r\nVia: SIP/2.0/UDP {me};branch=z9hG4bKau{c}{s};rport\r\nMax-Forwards: 70\r\n\
             From: <sip:{from}@{me}>;tag={t}\r\nTo: <sip:{to}@{edge}>\r\nCall-ID: {cid}\r\nCSeq: {c} INVITE\r\n\
             Contact: <sip:agent@{me}>\r\n{extra}Content-Type: application/sdp\r\nContent-Length: {l}\r\n\r\n{SDP}",
            edge = self.edge,
            c = self.cseq,
            s = self.from_tag,
            t = self.from_tag,
            cid = self.call_id,
            l = SDP.len()
        )
    }

    async fn send(&self, raw: &str) {
        self.sock.send_to(raw.as_bytes(), self.edge).await.unwrap();
    }

    async fn final_response(&self, wait: Duration) -> (Vec<u16>, Message) {
        let deadline = tokio::time::Instant::now() + wait;
        let mut prov = Vec::new();
        let mut buf = vec![0u8; 65536];
        loop {
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            let n = tokio::time::timeout(left, self.sock.recv(&mut buf))
                .await
                .expect("no final response in time")
                .unwrap();
            let m = common::parse(&buf[..n]);
            if m.is_request() {
                continue;
            }
            let code = m.status().unwrap();
            if code < 200 {
                prov.push(code);
            } else {
                return (prov, m);
            }
        }
    }

    async fn ack(&self, resp: &Message) {
        let me = self.sock.local_addr().unwrap();
        let to = resp.header(&HeaderName::To).unwrap();
        let branch = if resp.status().unwrap() >= 300 {
            format!("z9hG4bKau{}{}", self.cseq, self.from_tag)
        } else {
            format!("z9hG4bKack{}", self.from_tag)
        };
        let raw = format!(
            "ACK sip:edge@{edge} SIP/2.0\r\nVia: SIP/2.0/UDP {me};branch={branch};rport\r\nMax-Forwards: 70\r\n\
             From: <sip:{DID}@{me}>;tag={t}\r\nTo: {to}\r\nCall-ID: {cid}\r\nCSeq: {c} ACK\r\nContent-Length: 0\r\n\r\n",
            edge = self.edge,
            t = self.from_tag,
            cid = self.call_id,
            c = self.cseq,
        );
        self.send(&raw).await;
    }

    async fn bye(&self, ok: &Message) {
        let me = self.sock.local_addr().unwrap();
        let to = ok.header(&HeaderName::To).unwrap();
        let raw = format!(
            "BYE sip:edge@{edge} SIP/2.0\r\nVia: SIP/2.0/UDP {me};branch=z9hG4bKbye{t};rport\r\nMax-Forwards: 70\r\n\
             From: <sip:{DID}@{me}>;tag={t}\r\nTo: {to}\r\nCall-ID: {cid}\r\nCSeq: {c} BYE\r\nContent-Length: 0\r\n\r\n",
            edge = self.edge,
            t = self.from_tag,
            cid = self.call_id,
            c = self.cseq + 1,
        );
        self.send(&raw).await;
    }
}

fn header(m: &Message, name: &str) -> Option<String> {
    m.header(&HeaderName::from(name)).map(str::to_owned)
}

/// The id of the newest call record, once the store has one.
async fn newest_call(t: &TestEdge) -> String {
    for _ in 0..100 {
        let (_, list) = json(t, "GET", "/v1/calls", None).await;
        if let Some(id) = list["data"][0]["id"].as_str() {
            return id.to_owned();
        }
        tokio::time::sleep(Duration::from_millis(30)).await;
    }
    panic!("no call record stored");
}

async fn json(t: &TestEdge, method: &str, path: &str, body: Option<&str>) -> (u16, serde_json::Value) {
    let (code, text) = t.http(method, path, body).await;
    (code, serde_json::from_str(&text).unwrap_or(serde_json::Value::Null))
}

#[tokio::test]
async fn agent_network_call_through_a_407_trunk_with_media_anchored() {
    let t = edge().await;
    let trunk = TestTrunk::spawn(
        TrunkMode::Answer,
        Some(TrunkAuth {
            username: "oneinbox".into(),
            password: "s3cret-pass".into(),
            header: AuthHeader::ProxyAuthorization,
            algorithm: Algorithm::Sha256,
        }),
    )
    .await;
    let agent = Agent::spawn(Mode::Answer).await;
    let agent_id = t.add_agent("sales", &agent, 5, AgentStatus::Active).await;
    t.add_byo_number(
        DID,
        &agent_id,
        Provider::Telnyx,
        &trunk.addr.to_string(),
        Some(("oneinbox", "s3cret-pass")),
    )
    .await;

    let uac = AgentUac::new("127.0.0.2", t.sip()).await;
    uac.send(&uac.invite(DID, DEST, "")).await;
    let (prov, ok) = uac.final_response(S).await;
    assert_eq!(ok.status(), Some(200), "{ok:?}");
    assert!(prov.contains(&100) && prov.contains(&180), "{prov:?}");
    // The agent is told to send media to the edge, not to the trunk's 41000.
    let (ip, port) = media_of(ok.body());
    assert_eq!(ip, "127.0.0.1");
    assert_ne!(port, 41000);
    uac.ack(&ok).await;

    // What the trunk saw: a challenge answered with Proxy-Authorization on the same Call-ID, CSeq + 1.
    let first = trunk.expect(Method::Invite, S).await;
    let second = trunk.expect(Method::Invite, S).await;
    assert_eq!(first.call_id().unwrap(), second.call_id().unwrap());
    assert_eq!(second.cseq().unwrap().seq, first.cseq().unwrap().seq + 1);
    assert!(header(&first, "Proxy-Authorization").is_none());
    let auth = header(&second, "Proxy-Authorization").unwrap();
    assert!(
        auth.contains("algorithm=SHA-256") && auth.contains("qop=auth") && auth.contains("nc=00000001"),
        "{auth}"
    );
    assert_eq!(second.request_uri_raw().unwrap(), format!("sip:{DEST}@{}", trunk.addr));
    assert_eq!(second.from().unwrap().uri.user().unwrap(), DID, "caller ID is the DID");
    let (ip, port) = media_of(second.body());
    assert_eq!(ip, "127.0.0.1");
    assert_ne!(port, 40000, "the trunk gets the edge's port, not the agent's");
    trunk.expect(Method::Ack, S).await;

    // The agent hangs up: the trunk gets BYE; the record says who.
    uac.bye(&ok).await;
    trunk.expect(Method::Bye, S).await;
    let id = newest_call(&t).await;
    let call = t.final_call(&id, S).await;
    assert_eq!(call["direction"], "outbound");
    assert_eq!(call["status"], "completed");
    assert_eq!(call["from"], DID);
    assert_eq!(call["to"], DEST);
    assert_eq!(call["agent_id"], agent_id.as_str());
    assert_eq!(call["answered_by"], "trunk");
    assert_eq!(call["hangup_by"], "caller");
    let hops = call["hops"].as_array().unwrap();
    assert_eq!(hops.len(), 2, "{hops:?}");
    assert_eq!(hops[0]["sip_status"], 407);
    assert_eq!(hops[1]["outcome"], "answered");
}

#[tokio::test]
async fn agents_elsewhere_answer_a_digest_challenge() {
    let t = edge().await;
    let trunk = TestTrunk::spawn(TrunkMode::Answer, None).await;
    let agent = Agent::spawn(Mode::Answer).await;
    let agent_id = t.add_agent("remote", &agent, 5, AgentStatus::Active).await;
    t.add_byo_number(DID, &agent_id, Provider::Twilio, &trunk.addr.to_string(), None)
        .await;
    let (code, body) = json(
        &t,
        "PATCH",
        &format!("/v1/agents/{agent_id}"),
        Some(r#"{"sip_username": "remote-agent", "sip_password": "correct horse"}"#),
    )
    .await;
    assert_eq!(code, 200, "{body}");
    assert!(body.get("sip_password").is_none());

    // 127.0.0.3 is neither a carrier nor an agent network: the edge challenges.
    let mut uac = AgentUac::new("127.0.0.3", t.sip()).await;
    uac.send(&uac.invite(DID, DEST, "")).await;
    let (_, challenge) = uac.final_response(S).await;
    assert_eq!(challenge.status(), Some(407));
    uac.ack(&challenge).await;

    // A wrong password is refused outright, not challenged forever.
    let uri = format!("sip:{DEST}@{}", t.sip());
    let mut wrong = AuthSession::new(DigestCredentials::new("remote-agent", "battery staple"));
    let AuthStep::Retry {
        header_name,
        header_value,
        ..
    } = wrong.on_challenge(&challenge, "INVITE", &uri, SDP.as_bytes())
    else {
        panic!("challenge not answerable");
    };
    uac.cseq += 1;
    uac.send(&uac.invite(DID, DEST, &format!("{header_name}: {header_value}\r\n")))
        .await;
    let (_, refused) = uac.final_response(S).await;
    assert_eq!(refused.status(), Some(403));
    uac.ack(&refused).await;

    let mut right = AuthSession::new(DigestCredentials::new("remote-agent", "correct horse"));
    let AuthStep::Retry {
        header_name,
        header_value,
        ..
    } = right.on_challenge(&challenge, "INVITE", &uri, SDP.as_bytes())
    else {
        panic!("challenge not answerable");
    };
    uac.cseq += 1;
    uac.send(&uac.invite(DID, DEST, &format!("{header_name}: {header_value}\r\n")))
        .await;
    let (_, ok) = uac.final_response(S).await;
    assert_eq!(ok.status(), Some(200), "{ok:?}");
    uac.ack(&ok).await;
    let inv = trunk.expect(Method::Invite, S).await;
    assert_eq!(inv.from().unwrap().uri.user().unwrap(), DID);
    uac.bye(&ok).await;
    trunk.expect(Method::Bye, S).await;
}

#[tokio::test]
async fn caller_id_must_be_a_number_of_that_agent() {
    let t = edge().await;
    let trunk = TestTrunk::spawn(TrunkMode::Answer, None).await;
    let a1 = Agent::spawn(Mode::Answer).await;
    let a2 = Agent::spawn(Mode::Answer).await;
    let id1 = t.add_agent("one", &a1, 5, AgentStatus::Active).await;
    let id2 = t.add_agent("two", &a2, 5, AgentStatus::Active).await;
    t.add_byo_number(DID, &id1, Provider::Twilio, &trunk.addr.to_string(), None)
        .await;
    t.edge
        .store
        .update_agent(
            &t.account,
            &id2,
            edge_store::AgentPatch {
                sip_username: Some(Some("two".into())),
                sip_password: Some(Some(edge_store::Secret::new("password-two"))),
                ..Default::default()
            },
        )
        .await
        .unwrap();

    // Agent two (authenticated) may not use agent one's number.
    let mut uac = AgentUac::new("127.0.0.3", t.sip()).await;
    uac.send(&uac.invite(DID, DEST, "")).await;
    let (_, challenge) = uac.final_response(S).await;
    uac.ack(&challenge).await;
    let uri = format!("sip:{DEST}@{}", t.sip());
    let mut s = AuthSession::new(DigestCredentials::new("two", "password-two"));
    let AuthStep::Retry {
        header_name,
        header_value,
        ..
    } = s.on_challenge(&challenge, "INVITE", &uri, SDP.as_bytes())
    else {
        panic!()
    };
    uac.cseq += 1;
    uac.send(&uac.invite(DID, DEST, &format!("{header_name}: {header_value}\r\n")))
        .await;
    let (_, r) = uac.final_response(S).await;
    assert_eq!(r.status(), Some(403));
    let w = header(&r, "Warning").unwrap();
    assert!(w.contains(&format!("assigned to agent {id1}, not to {id2}")), "{w}");

    // From a trusted network, a From that is not ours at all.
    let uac = AgentUac::new("127.0.0.2", t.sip()).await;
    uac.send(&uac.invite("+13125550199", DEST, "")).await;
    let (_, r) = uac.final_response(S).await;
    assert_eq!(r.status(), Some(403));
    assert!(header(&r, "Warning").unwrap().contains("not a number served here"));
    assert!(trunk
        .try_expect(Method::Invite, Duration::from_millis(300))
        .await
        .is_none());
}

#[tokio::test]
async fn api_call_dials_the_trunk_then_bridges_the_agent() {
    let t = edge().await;
    let trunk = TestTrunk::spawn(
        TrunkMode::Answer,
        Some(TrunkAuth {
            username: "AC-user".into(),
            password: "twilio-pass".into(),
            header: AuthHeader::Authorization,
            algorithm: Algorithm::Md5,
        }),
    )
    .await;
    let agent = Agent::spawn(Mode::Answer).await;
    let agent_id = t.add_agent("bot", &agent, 5, AgentStatus::Active).await;
    t.add_byo_number(
        DID,
        &agent_id,
        Provider::Twilio,
        &trunk.addr.to_string(),
        Some(("AC-user", "twilio-pass")),
    )
    .await;

    let body = format!(r#"{{"from": "{DID}", "to": "{DEST}", "agent_id": "{agent_id}"}}"#);
    let (code, call) = json(&t, "POST", "/v1/calls", Some(&body)).await;
    assert_eq!(code, 201, "{call}");
    assert_eq!(call["direction"], "outbound");
    let id = call["id"].as_str().unwrap().to_owned();

    // The trunk: 401 answered with Authorization, the edge's own offer.
    let first = trunk.expect(Method::Invite, S).await;
    let second = trunk.expect(Method::Invite, S).await;
    assert!(header(&first, "Authorization").is_none());
    assert!(header(&second, "Authorization")
        .unwrap()
        .contains("username=\"AC-user\""));
    let (ip, _) = media_of(second.body());
    assert_eq!(ip, "127.0.0.1");

    // Then the agent, offered the trunk's codec on the edge's address.
    let inv = agent.expect(Method::Invite, S).await;
    assert_eq!(header(&inv, "X-OneInbox-Direction").as_deref(), Some("outbound"));
    assert_eq!(header(&inv, "X-OneInbox-Call-Id").as_deref(), Some(id.as_str()));
    assert_eq!(inv.from().unwrap().uri.user().unwrap(), DEST);
    let sdp = std::str::from_utf8(inv.body()).unwrap();
    assert!(
        sdp.contains("m=audio") && sdp.contains(" 0 101") && !sdp.contains("41000"),
        "{sdp}"
    );
    agent.expect(Method::Ack, S).await;
    let live = t.wait_status(&id, "in-progress", S).await;
    assert_eq!(live["answered_by"], "trunk");
    assert_eq!(t.edge.agent_load(&agent_id), 1, "the agent counts this call once");

    // DELETE hangs up both legs.
    let (code, ended) = json(&t, "DELETE", &format!("/v1/calls/{id}"), None).await;
    assert_eq!(code, 200, "{ended}");
    assert_eq!(ended["status"], "completed");
    trunk.expect(Method::Bye, S).await;
    agent.expect(Method::Bye, S).await;
    // Deleting again (once the record is stored) is harmless and shows the same record.
    t.final_call(&id, S).await;
    assert_eq!(t.edge.agent_load(&agent_id), 0);
    let (code, again) = json(&t, "DELETE", &format!("/v1/calls/{id}"), None).await;
    assert_eq!(code, 200);
    assert_eq!(again["status"], "completed");
}

#[tokio::test]
async fn each_trunk_failure_reads_as_its_class() {
    let t = edge().await;
    let agent = Agent::spawn(Mode::Answer).await;
    let agent_id = t.add_agent("bot", &agent, 50, AgentStatus::Active).await;
    let cases: Vec<(TrunkMode, Option<TrunkAuth>, &str, &str, &str)> = vec![
        (
            TrunkMode::Answer,
            Some(TrunkAuth {
                username: "right".into(),
                password: "other-password".into(),
                header: AuthHeader::Authorization,
                algorithm: Algorithm::Md5,
            }),
            "failed",
            "trunk_auth_rejected",
            "trunk rejected the SIP credentials in provider_config",
        ),
        (
            TrunkMode::Reject(
                403,
                "Forbidden",
                Some("32205 Geo permission configuration is not permitting call"),
            ),
            None,
            "failed",
            "forbidden",
            "Voice > Settings > Geo Permissions",
        ),
        (
            TrunkMode::Reject(404, "Not Found", None),
            None,
            "failed",
            "invalid_destination",
            "not a valid destination",
        ),
        (
            TrunkMode::Reject(484, "Address Incomplete", None),
            None,
            "failed",
            "invalid_destination",
            "484 Address Incomplete",
        ),
        (
            TrunkMode::Reject(486, "Busy Here", None),
            None,
            "busy",
            "busy",
            "486 Busy Here",
        ),
        (
            TrunkMode::Reject(600, "Busy Everywhere", None),
            None,
            "busy",
            "busy",
            "600",
        ),
        (
            TrunkMode::Reject(480, "Temporarily Unavailable", None),
            None,
            "no-answer",
            "no_answer",
            "did not answer",
        ),
        (
            TrunkMode::Ring,
            None,
            "no-answer",
            "no_answer",
            "did not answer within 2 s",
        ),
        (
            TrunkMode::Reject(503, "Service Unavailable", None),
            None,
            "failed",
            "trunk_unavailable",
            "unavailable",
        ),
        (
            TrunkMode::Silent,
            None,
            "failed",
            "trunk_unavailable",
            "did not respond",
        ),
        (
            TrunkMode::Reject(403, "D35 Caller Origination Number is Invalid", None),
            None,
            "failed",
            "forbidden",
            "D35 Caller Origination Number is Invalid",
        ),
    ];
    for (i, (mode, auth, status, code, words)) in cases.into_iter().enumerate() {
        let trunk = TestTrunk::spawn(mode, auth).await;
        let did = format!("+1415555{:04}", 2000 + i);
        // The Telnyx case (last) keeps Telnyx's own reason phrase.
        let provider = if words.starts_with("D35") {
            Provider::Telnyx
        } else {
            Provider::Twilio
        };
        t.add_byo_number(
            &did,
            &agent_id,
            provider,
            &trunk.addr.to_string(),
            Some(("right", "wrong-password")),
        )
        .await;
        let body = format!(r#"{{"from": "{did}", "to": "{DEST}", "agent_id": "{agent_id}"}}"#);
        let (c, call) = json(&t, "POST", "/v1/calls", Some(&body)).await;
        assert_eq!(c, 201, "{call}");
        let done = t.final_call(call["id"].as_str().unwrap(), Duration::from_secs(6)).await;
        assert_eq!(done["status"], status, "case {i}: {done}");
        assert_eq!(done["error"]["code"], code, "case {i}: {done}");
        let msg = done["error"]["message"].as_str().unwrap();
        assert!(msg.contains(words), "case {i}: {msg}");
        if words.starts_with("Voice") {
            assert!(msg.contains("Twilio error 32205"), "{msg}");
        }
    }
    assert!(
        !agent.got(Method::Invite, Duration::from_millis(100)).await,
        "no failed call reached the agent"
    );
}

#[tokio::test]
async fn srv_failover_from_a_dead_target_to_the_next() {
    use common::dns;
    let dead = UdpSocket::bind("127.0.0.1:0").await.unwrap(); // never answers
    let busy = TestTrunk::spawn(TrunkMode::Reject(503, "Service Unavailable", None), None).await;
    let live = TestTrunk::spawn(TrunkMode::Answer, None).await;
    let ns = dns::serve(vec![
        dns::srv(
            "_sip._udp.trunk.test.",
            10,
            0,
            dead.local_addr().unwrap().port(),
            "a.trunk.test.",
        ),
        dns::srv("_sip._udp.trunk.test.", 20, 0, busy.addr.port(), "a.trunk.test."),
        dns::srv("_sip._udp.trunk.test.", 30, 0, live.addr.port(), "a.trunk.test."),
        dns::a("a.trunk.test.", [127, 0, 0, 1]),
        // The apex exists (no NAPTR there): RFC 3263 then takes the SRV records.
        dns::a("trunk.test.", [192, 0, 2, 1]),
    ])
    .await;
    let t = start_edge(|c| {
        c.outbound.nameservers = Some(vec![ns]);
        c.outbound.dns_timeout = Duration::from_millis(500);
        c.outbound.trunk_setup_timeout = Duration::from_millis(300);
    })
    .await;
    let agent = Agent::spawn(Mode::Answer).await;
    let agent_id = t.add_agent("bot", &agent, 5, AgentStatus::Active).await;
    t.add_byo_number(DID, &agent_id, Provider::Telnyx, "trunk.test", None)
        .await;
    let body = format!(r#"{{"from": "{DID}", "to": "{DEST}", "agent_id": "{agent_id}"}}"#);
    let (_, call) = json(&t, "POST", "/v1/calls", Some(&body)).await;
    let id = call["id"].as_str().unwrap().to_owned();

    let inv = live.expect(Method::Invite, S).await;
    // The Request-URI keeps the trunk's name, whatever address it resolved to.
    assert_eq!(inv.request_uri_raw().unwrap(), format!("sip:{DEST}@trunk.test"));
    busy.expect(Method::Invite, S).await;
    let mut buf = [0u8; 4096];
    let n = tokio::time::timeout(S, dead.recv(&mut buf)).await.unwrap().unwrap();
    assert!(std::str::from_utf8(&buf[..n]).unwrap().starts_with("INVITE "));
    agent.expect(Method::Invite, S).await;
    let v = t.wait_status(&id, "in-progress", S).await;
    let outcomes: Vec<String> = v["hops"]
        .as_array()
        .unwrap()
        .iter()
        .map(|h| h["outcome"].as_str().unwrap().to_owned())
        .collect();
    assert!(outcomes[0].starts_with("timeout"), "{outcomes:?}");
    assert!(outcomes[1].contains("503"), "{outcomes:?}");
    assert_eq!(outcomes[2], "answered", "{outcomes:?}");
    let (code, _) = json(&t, "DELETE", &format!("/v1/calls/{id}"), None).await;
    assert_eq!(code, 200);
}

#[tokio::test]
async fn pacing_spaces_calls_and_refuses_past_the_wait() {
    let t = start_edge(|c| {
        c.outbound.twilio_cps = 2.0;
        c.outbound.max_pacing_wait = Duration::from_millis(700);
    })
    .await;
    let trunk = TestTrunk::spawn(TrunkMode::Reject(486, "Busy Here", None), None).await;
    let agent = Agent::spawn(Mode::Answer).await;
    let agent_id = t.add_agent("bot", &agent, 50, AgentStatus::Active).await;
    t.add_byo_number(DID, &agent_id, Provider::Twilio, &trunk.addr.to_string(), None)
        .await;
    let body = format!(r#"{{"from": "{DID}", "to": "{DEST}", "agent_id": "{agent_id}"}}"#);
    for _ in 0..2 {
        let (c, _) = json(&t, "POST", "/v1/calls", Some(&body)).await;
        assert_eq!(c, 201);
    }
    // The third would wait past the limit: refused at once, in words.
    let (c, refused) = json(&t, "POST", "/v1/calls", Some(&body)).await;
    assert_eq!(c, 503, "{refused}");
    assert!(refused.to_string().contains("trunk_pacing"), "{refused}");
    assert!(refused.to_string().contains("calls per second"), "{refused}");
    // 2 calls/s: slots at 0 and 500 ms fit the 700 ms wait; the third (1 s) does not.
    let first = trunk.expect(Method::Invite, S).await;
    let t0 = tokio::time::Instant::now();
    let second = trunk.expect(Method::Invite, S).await;
    assert!(t0.elapsed() >= Duration::from_millis(350), "paced: {:?}", t0.elapsed());
    assert_ne!(first.call_id().unwrap(), second.call_id().unwrap());
    assert!(trunk
        .try_expect(Method::Invite, Duration::from_millis(700))
        .await
        .is_none());
}

#[tokio::test]
async fn api_refusals_name_the_field() {
    let t = edge().await;
    let agent = Agent::spawn(Mode::Answer).await;
    let agent_id = t.add_agent("bot", &agent, 5, AgentStatus::Active).await;
    let other = t.add_agent("other", &agent, 5, AgentStatus::Active).await;
    t.add_number(DID, &agent_id, None).await; // purchased, and no operator trunk configured
    let post = |b: String| {
        let t = &t;
        async move { json(t, "POST", "/v1/calls", Some(&b)).await }
    };
    let (c, e) = post(format!(r#"{{"from": "{DID}", "to": "12", "agent_id": "{agent_id}"}}"#)).await;
    assert_eq!(c, 400, "{e}");
    assert!(e.to_string().contains("to"), "{e}");
    let (c, e) = post(format!(r#"{{"from": "{DID}", "to": "{DEST}", "agent_id": "{other}"}}"#)).await;
    assert_eq!(c, 400, "{e}");
    assert!(e.to_string().contains(&format!("assigned to agent {agent_id}")), "{e}");
    let (c, e) = post(format!(
        r#"{{"from": "{DID}", "to": "{DEST}", "agent_id": "{agent_id}"}}"#
    ))
    .await;
    assert_eq!(c, 400, "{e}");
    assert!(e.to_string().contains("[[outbound.trunks]]"), "{e}");
    let _ = Bytes::new();
}

#[tokio::test]
async fn trunk_over_tcp_gets_one_connection_for_the_whole_call() {
    let t = edge().await;
    let trunk = TestTrunk::spawn_tcp(
        TrunkMode::Answer,
        Some(TrunkAuth {
            username: "tcp-user".into(),
            password: "tcp-pass".into(),
            header: AuthHeader::ProxyAuthorization,
            algorithm: Algorithm::Md5,
        }),
    )
    .await;
    let agent = Agent::spawn(Mode::Answer).await;
    let agent_id = t.add_agent("tcp", &agent, 5, AgentStatus::Active).await;
    t.add_byo_number(
        DID,
        &agent_id,
        Provider::Telnyx,
        &format!("{};transport=tcp", trunk.addr),
        Some(("tcp-user", "tcp-pass")),
    )
    .await;
    let uac = AgentUac::new("127.0.0.2", t.sip()).await;
    uac.send(&uac.invite(DID, DEST, "")).await;
    let (_, ok) = uac.final_response(S).await;
    assert_eq!(ok.status(), Some(200), "{ok:?}");
    uac.ack(&ok).await;
    let first = trunk.expect(Method::Invite, S).await;
    let second = trunk.expect(Method::Invite, S).await;
    for inv in [&first, &second] {
        assert!(header(inv, "Via").unwrap().starts_with("SIP/2.0/TCP "), "{inv:?}");
        assert!(inv.request_uri_raw().unwrap().ends_with(";transport=tcp"));
    }
    assert!(header(&second, "Proxy-Authorization").is_some());
    let ack = trunk.expect(Method::Ack, S).await;
    assert!(header(&ack, "Via").unwrap().starts_with("SIP/2.0/TCP "));
    uac.bye(&ok).await;
    trunk.expect(Method::Bye, S).await;
    let call = t.final_call(&newest_call(&t).await, S).await;
    assert_eq!(call["status"], "completed");
    // One connection carried every request of the call.
    let (_, metrics) = t.http("GET", "/metrics", None).await;
    assert!(metrics.contains("edge_tcp_connections_opened_total 1"), "{metrics}");
}
