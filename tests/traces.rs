//! Per-call SIP traces and HEP export end to end on loopback (issue 22 items 1 and 2): a failover call's
//! trace as JSON and as a pcap tshark reads, HEPv3 to a small receiver, account rules, bounds, and secrets
//! kept out.

mod common;

use std::net::SocketAddr;
use std::time::Duration;

use common::trunk::{TestTrunk, TrunkAuth, TrunkMode};
use common::{start_edge, Agent, Carrier, Mode, TestEdge, SDP};
use edge_store::{AgentStatus, Provider};
use sip_core::digest::{Algorithm, AuthHeader};
use sip_core::message::{HeaderName, Method};

const S: Duration = Duration::from_secs(3);
const DID: &str = "+14155550100";

/// A raw HTTP/1.1 GET with the account's key; (status, body bytes).
async fn get_bytes(t: &TestEdge, path: &str, key: &str) -> (u16, Vec<u8>) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut s = tokio::net::TcpStream::connect(t.edge.api.unwrap()).await.unwrap();
    let req = format!("GET {path} HTTP/1.1\r\nHost: edge\r\nAuthorization: Bearer {key}\r\nConnection: close\r\n\r\n");
    s.write_all(req.as_bytes()).await.unwrap();
    let mut out = Vec::new();
    s.read_to_end(&mut out).await.unwrap();
    let status = std::str::from_utf8(&out[9..12]).unwrap().parse().unwrap();
    let at = out.windows(4).position(|w| w == b"\r\n\r\n").unwrap() + 4;
    (status, out[at..].to_vec())
}

/// Polls `GET /v1/calls/{id}/trace` until the trace is stored (it is, a little after the call ends).
async fn trace_of(t: &TestEdge, id: &str) -> serde_json::Value {
    for _ in 0..200 {
        let (code, body) = get_bytes(t, &format!("/v1/calls/{id}/trace"), &t.api_key).await;
        if code == 200 {
            return serde_json::from_slice(&body).unwrap();
        }
        assert_eq!(code, 404, "{}", String::from_utf8_lossy(&body));
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("no trace stored for {id}");
}

/// A failover call: the primary agent refuses (486), the fallback answers, the carrier hangs up. Returns
/// the call id.
async fn failover_call(t: &TestEdge) -> String {
    let busy = Agent::spawn(Mode::Reject(486)).await;
    let fb = Agent::spawn(Mode::Answer).await;
    let p = t.add_agent("busy", &busy, 5, AgentStatus::Active).await;
    let f = t.add_agent("fallback", &fb, 5, AgentStatus::Active).await;
    t.add_number(DID, &p, Some(&f)).await;
    let mut c = Carrier::new(t.sip(), DID).await;
    c.invite().await;
    let (_, ok) = c.final_response(S).await;
    assert_eq!(ok.status(), Some(200));
    let inv = fb.expect(Method::Invite, S).await;
    let id = inv
        .header(&HeaderName::Other("X-OneInbox-Call-Id".into()))
        .unwrap()
        .to_owned();
    c.ack(&ok).await;
    fb.expect(Method::Ack, S).await;
    c.in_dialog("BYE", false).await;
    assert_eq!(c.recv(S).await.expect("200 to BYE").status(), Some(200));
    fb.expect(Method::Bye, S).await;
    t.final_call(&id, S).await;
    id
}

fn start_line_of(m: &serde_json::Value) -> &str {
    m["start_line"].as_str().unwrap()
}

#[tokio::test]
async fn a_failover_calls_trace_lists_the_carrier_and_both_agent_legs_in_order() {
    let t = start_edge(|_| {}).await;
    let id = failover_call(&t).await;
    let trace = trace_of(&t, &id).await;
    assert_eq!(trace["call_id"], id.as_str());
    assert_eq!(trace["truncated"], false);
    let legs: Vec<&str> = trace["legs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| l["leg"].as_str().unwrap())
        .collect();
    assert_eq!(legs.len(), 3, "{legs:?}");
    assert_eq!(legs[0], "carrier");
    assert!(
        legs[1].starts_with("agent agt_") && legs[1].ends_with("(primary)"),
        "{legs:?}"
    );
    assert!(
        legs[2].starts_with("agent agt_") && legs[2].ends_with("(fallback)"),
        "{legs:?}"
    );

    let msgs = trace["messages"].as_array().unwrap();
    let first_of = |leg: &str| msgs.iter().position(|m| m["leg"] == leg).unwrap();
    let last_of = |leg: &str| msgs.iter().rposition(|m| m["leg"] == leg).unwrap();
    // In order: the carrier's INVITE, then the primary's leg (INVITE, 486, ACK), then the fallback's.
    assert_eq!(first_of("carrier"), 0);
    assert!(start_line_of(&msgs[0]).starts_with("INVITE sip:+14155550100@"));
    assert_eq!(msgs[0]["direction"], "in");
    assert_eq!(msgs[0]["transport"], "udp");
    assert!(first_of(legs[1]) < first_of(legs[2]));
    assert!(
        last_of(legs[1]) < first_of(legs[2]),
        "the primary's leg is over before the fallback's starts"
    );
    let primary: Vec<&str> = msgs.iter().filter(|m| m["leg"] == legs[1]).map(start_line_of).collect();
    assert!(primary[0].starts_with("INVITE "), "{primary:?}");
    assert!(primary.iter().any(|l| l.starts_with("SIP/2.0 486")), "{primary:?}");
    assert!(primary.iter().any(|l| l.starts_with("ACK ")), "{primary:?}");
    let fallback: Vec<&str> = msgs.iter().filter(|m| m["leg"] == legs[2]).map(start_line_of).collect();
    for want in ["INVITE ", "SIP/2.0 200", "ACK ", "BYE ", "SIP/2.0 200"] {
        assert!(fallback.iter().any(|l| l.starts_with(want)), "{want}: {fallback:?}");
    }
    let carrier: Vec<&str> = msgs
        .iter()
        .filter(|m| m["leg"] == "carrier")
        .map(start_line_of)
        .collect();
    for want in ["INVITE ", "SIP/2.0 100", "SIP/2.0 200", "ACK ", "BYE ", "SIP/2.0 200"] {
        assert!(carrier.iter().any(|l| l.starts_with(want)), "{want}: {carrier:?}");
    }
    // Times never go back, and every message has its headers and peer.
    let times: Vec<i64> = msgs.iter().map(|m| m["t_us"].as_i64().unwrap()).collect();
    assert!(times.windows(2).all(|w| w[0] <= w[1]));
    for m in msgs {
        assert!(m["peer"].as_str().unwrap().parse::<SocketAddr>().is_ok(), "{m}");
        assert!(
            m["headers"].as_array().unwrap().iter().any(|h| h["name"] == "Call-ID"),
            "{m}"
        );
    }

    // The same messages as a capture file tshark reads: one SIP message per trace message.
    let (code, pcap) = get_bytes(&t, &format!("/v1/calls/{id}/trace?format=pcap"), &t.api_key).await;
    assert_eq!(code, 200);
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("call.pcap");
    std::fs::write(&file, &pcap).unwrap();
    let out = std::process::Command::new("tshark")
        .args([
            "-r",
            file.to_str().unwrap(),
            "-Y",
            "sip",
            "-T",
            "fields",
            "-e",
            "sip.Call-ID",
        ])
        .output()
        .expect("tshark installed (apt-get install tshark)");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let lines: Vec<String> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(str::to_owned)
        .collect();
    assert_eq!(lines.len(), msgs.len(), "{lines:?}");
    let carrier_call_id = trace["legs"][0]["sip_call_id"].as_str().unwrap();
    assert_eq!(lines[0], carrier_call_id);

    // Another account's key sees no such call; junk formats are refused.
    let (_, other_key) = t.edge.store.create_api_key(None, "other").await.unwrap();
    let (code, _) = get_bytes(&t, &format!("/v1/calls/{id}/trace"), &other_key).await;
    assert_eq!(code, 404);
    let (code, _) = get_bytes(&t, &format!("/v1/calls/{id}/trace?format=pcap"), &other_key).await;
    assert_eq!(code, 404);
    let (code, _) = get_bytes(&t, &format!("/v1/calls/{id}/trace?format=xml"), &t.api_key).await;
    assert_eq!(code, 400);
}

#[tokio::test]
async fn a_trace_past_its_bounds_says_what_was_left_out() {
    let t = start_edge(|c| c.observability.trace_max_messages = 4).await;
    let id = failover_call(&t).await;
    let trace = trace_of(&t, &id).await;
    assert_eq!(trace["messages"].as_array().unwrap().len(), 4);
    assert_eq!(trace["truncated"], true);
    assert!(trace["omitted_messages"].as_u64().unwrap() >= 10, "{trace}");
    assert!(trace["omitted_bytes"].as_u64().unwrap() > 1000, "{trace}");
}

#[tokio::test]
async fn tracing_off_stores_no_trace() {
    let t = start_edge(|c| c.observability.trace = false).await;
    let id = failover_call(&t).await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    let (code, _) = get_bytes(&t, &format!("/v1/calls/{id}/trace"), &t.api_key).await;
    assert_eq!(code, 404);
}

/// One HEPv3 packet's chunks we look at.
#[derive(Debug, Default)]
struct Hep {
    family: u8,
    proto_type: u8,
    src_port: u16,
    dst_port: u16,
    secs: u32,
    correlation: Option<String>,
    payload: Vec<u8>,
}

fn parse_hep(p: &[u8]) -> Hep {
    assert_eq!(&p[..4], b"HEP3");
    assert_eq!(usize::from(u16::from_be_bytes([p[4], p[5]])), p.len());
    let mut h = Hep::default();
    let mut i = 6;
    while i < p.len() {
        let kind = u16::from_be_bytes([p[i + 2], p[i + 3]]);
        let len = usize::from(u16::from_be_bytes([p[i + 4], p[i + 5]]));
        let data = &p[i + 6..i + len];
        match kind {
            0x01 => h.family = data[0],
            0x07 => h.src_port = u16::from_be_bytes([data[0], data[1]]),
            0x08 => h.dst_port = u16::from_be_bytes([data[0], data[1]]),
            0x09 => h.secs = u32::from_be_bytes(data.try_into().unwrap()),
            0x0b => h.proto_type = data[0],
            0x0f => h.payload = data.to_vec(),
            0x11 => h.correlation = Some(String::from_utf8(data.to_vec()).unwrap()),
            _ => {}
        }
        i += len;
    }
    assert_eq!(i, p.len());
    h
}

#[tokio::test]
async fn hep_receiver_gets_every_message_with_the_call_id() {
    let receiver = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let at = receiver.local_addr().unwrap().to_string();
    let t = start_edge(|c| c.observability.hep = Some(at)).await;
    let id = failover_call(&t).await;
    let trace = trace_of(&t, &id).await;
    let msgs = trace["messages"].as_array().unwrap();

    let mut got = Vec::new();
    let mut buf = vec![0u8; 65_536];
    while let Ok(Ok(n)) = tokio::time::timeout(Duration::from_millis(500), receiver.recv(&mut buf)).await {
        got.push(parse_hep(&buf[..n]));
    }
    let of_call: Vec<&Hep> = got
        .iter()
        .filter(|h| h.correlation.as_deref() == Some(id.as_str()))
        .collect();
    assert_eq!(of_call.len(), msgs.len(), "every message of the call, with its call id");
    let sip = t.sip().port();
    for (h, m) in of_call.iter().zip(msgs) {
        assert_eq!(h.family, 2);
        assert_eq!(h.proto_type, 1, "SIP");
        assert_eq!(h.secs as i64, m["t_us"].as_i64().unwrap() / 1_000_000);
        let text = String::from_utf8_lossy(&h.payload);
        assert!(text.starts_with(start_line_of(m)), "{text}");
        let peer: SocketAddr = m["peer"].as_str().unwrap().parse().unwrap();
        if m["direction"] == "in" {
            assert_eq!((h.src_port, h.dst_port), (peer.port(), sip));
        } else {
            assert_eq!((h.src_port, h.dst_port), (sip, peer.port()));
        }
    }
}

#[tokio::test]
async fn no_credentials_or_keys_in_a_trace() {
    let t = start_edge(|c| {
        c.outbound.trunk_setup_timeout = Duration::from_millis(400);
        c.outbound.default_cps = 100.0;
        c.outbound.twilio_cps = 100.0;
    })
    .await;
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
    let body = format!(r#"{{"from": "{DID}", "to": "+447700900123", "agent_id": "{agent_id}"}}"#);
    let (code, call) = t.http("POST", "/v1/calls", Some(&body)).await;
    assert_eq!(code, 201, "{call}");
    let call: serde_json::Value = serde_json::from_str(&call).unwrap();
    let id = call["id"].as_str().unwrap().to_owned();
    trunk.expect(Method::Invite, S).await;
    let second = trunk.expect(Method::Invite, S).await;
    let sent = second.header(&HeaderName::Authorization).unwrap().to_owned();
    assert!(sent.contains("response="), "{sent}");
    agent.expect(Method::Ack, S).await;
    let (code, _) = t.http("DELETE", &format!("/v1/calls/{id}"), None).await;
    assert_eq!(code, 200);
    trunk.expect(Method::Bye, S).await;

    let trace = trace_of(&t, &id).await;
    let text = trace.to_string();
    let auth: Vec<&serde_json::Value> = trace["messages"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|m| m["headers"].as_array().unwrap())
        .filter(|h| h["name"] == "Authorization")
        .collect();
    assert_eq!(auth.len(), 1, "the answered challenge is in the trace");
    assert_eq!(auth[0]["value"], "Digest [redacted]");
    assert!(!text.contains("response="), "{text}");
    assert!(!text.contains("AC-user"), "{text}");
    assert!(
        trace["legs"][0]["leg"].as_str().unwrap().starts_with("trunk"),
        "{trace}"
    );

    // An SDES key a carrier offers is masked too (the body keeps its length).
    let bot = Agent::spawn(Mode::Answer).await;
    let bot_id = t.add_agent("bot2", &bot, 5, AgentStatus::Active).await;
    t.add_number("+14155550111", &bot_id, None).await;
    let mut c = Carrier::new(t.sip(), "+14155550111").await;
    let key = "WVNfX19zZW1jdGwgKCkgewkyMjA7fQp9CnVubGVz";
    let sdp = format!("{SDP}a=crypto:1 AES_CM_128_HMAC_SHA1_80 inline:{key}|2^20|1:32\r\n");
    let invite = c
        .invite_bytes()
        .replace(
            &format!("Content-Length: {}", SDP.len()),
            &format!("Content-Length: {}", sdp.len()),
        )
        .replace(SDP, &sdp);
    c.send(&invite).await;
    let (_, ok) = c.final_response(S).await;
    let inv = bot.expect(Method::Invite, S).await;
    let id = inv
        .header(&HeaderName::Other("X-OneInbox-Call-Id".into()))
        .unwrap()
        .to_owned();
    if ok.status() == Some(200) {
        c.ack(&ok).await;
        c.in_dialog("BYE", false).await;
    }
    t.final_call(&id, S).await;
    let trace = trace_of(&t, &id).await;
    let text = trace.to_string();
    assert!(
        text.contains("a=crypto:1 AES_CM_128_HMAC_SHA1_80 inline:XXXX"),
        "{text}"
    );
    assert!(!text.contains(key), "{text}");
}
