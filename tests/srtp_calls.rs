//! SRTP calls end to end (issue 20 item 3): a carrier and agents on loopback, the SRTP side played with
//! `edge-srtp` and keys of its own. The edge must terminate SRTP per leg: decrypt what a leg sends, encrypt
//! what it relays with a key of its own per leg, never pass a peer's key on, and drop replays.

mod common;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use common::{start_edge, Carrier, TestEdge, SDP};
use edge_srtp::{CryptoAttribute, SrtpContext, SrtpSuite};
use sip_core::message::{HeaderName, Message, Method};
use tokio::net::UdpSocket;

const S: Duration = Duration::from_secs(5);

/// SDP for a peer whose media socket is `rtp`, `proto` with these `a=crypto` lines.
fn sdp(rtp: &UdpSocket, proto: &str, crypto: &[&CryptoAttribute]) -> String {
    let mut s = format!(
        "v=0\r\no=peer 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n\
         m=audio {} {proto} 0 101\r\na=rtpmap:0 PCMU/8000\r\na=rtpmap:101 telephone-event/8000\r\n",
        rtp.local_addr().unwrap().port()
    );
    for c in crypto {
        s.push_str(&format!("a=crypto:{}\r\n", c.to_sdp_value()));
    }
    s
}

fn crypto_lines(body: &[u8]) -> Vec<CryptoAttribute> {
    String::from_utf8_lossy(body)
        .lines()
        .filter_map(|l| l.strip_prefix("a=crypto:"))
        .map(|v| CryptoAttribute::parse(v).unwrap())
        .collect()
}

/// The `m=audio` line and the edge's media address in it.
fn media(body: &[u8]) -> (String, SocketAddr) {
    let (_, port) = common::media_of(body);
    let text = String::from_utf8_lossy(body);
    let m = text.lines().find(|l| l.starts_with("m=audio")).unwrap().to_owned();
    (m, SocketAddr::from(([127, 0, 0, 1], port)))
}

fn rtp(seq: u16, ssrc: u32, fill: u8) -> Vec<u8> {
    let mut p = vec![0x80, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0];
    p[2..4].copy_from_slice(&seq.to_be_bytes());
    p[4..8].copy_from_slice(&(u32::from(seq) * 160).to_be_bytes());
    p[8..12].copy_from_slice(&ssrc.to_be_bytes());
    p.extend(std::iter::repeat_n(fill, 160));
    p
}

async fn recv(sock: &UdpSocket, wait: Duration) -> Option<Vec<u8>> {
    let mut buf = vec![0u8; 2048];
    match tokio::time::timeout(wait, sock.recv(&mut buf)).await {
        Ok(Ok(n)) => {
            buf.truncate(n);
            Some(buf)
        }
        _ => None,
    }
}

/// The carrier's INVITE with `body` as its SDP.
async fn invite_with(c: &Carrier, body: &str) {
    let raw = c
        .invite_bytes()
        .replace(
            &format!("Content-Length: {}", SDP.len()),
            &format!("Content-Length: {}", body.len()),
        )
        .replace(SDP, body);
    c.send(&raw).await;
}

/// An agent UAS that answers its first INVITE with `answer(offer)` and 200s everything else; the INVITE
/// it got comes back on the channel.
async fn agent(
    answer: impl Fn(&Message) -> String + Send + 'static,
) -> (SocketAddr, tokio::sync::mpsc::Receiver<Message>) {
    let sock = Arc::new(UdpSocket::bind("127.0.0.1:0").await.unwrap());
    let addr = sock.local_addr().unwrap();
    let (tx, rx) = tokio::sync::mpsc::channel(8);
    tokio::spawn(async move {
        let mut buf = vec![0u8; 65536];
        loop {
            let Ok((n, from)) = sock.recv_from(&mut buf).await else {
                return;
            };
            let Ok(m) = Message::parse(Bytes::copy_from_slice(&buf[..n])) else {
                continue;
            };
            if !m.is_request() {
                continue;
            }
            let reply = |code: u16, body: Option<String>| {
                let b = sip_core::build::ResponseBuilder::for_request(&m, code, "OK").to_tag("agt1");
                let contact = format!("<sip:agent@{addr}>");
                let b = b.header("Contact", &contact);
                match body {
                    Some(body) => b.body("application/sdp", Bytes::from(body)).build(),
                    None => b.build(),
                }
            };
            match m.method() {
                Some(Method::Invite) => {
                    let body = answer(&m);
                    let _ = tx.send(m.clone()).await;
                    let _ = sock.send_to(&reply(200, Some(body)), from).await;
                }
                Some(Method::Ack) | None => {}
                Some(_) => {
                    let _ = sock.send_to(&reply(200, None), from).await;
                }
            }
        }
    });
    (addr, rx)
}

async fn agent_via_api(t: &TestEdge, addr: SocketAddr, encryption: &str) -> String {
    let body = format!(r#"{{"name":"srtp-agent","sip_uri":"sip:agent@{addr}","media_encryption":"{encryption}"}}"#);
    let (status, text) = t.http("POST", "/v1/agents", Some(&body)).await;
    assert_eq!(status, 201, "{text}");
    let v: serde_json::Value = serde_json::from_str(&text).unwrap();
    assert_eq!(v["media_encryption"], encryption);
    v["id"].as_str().unwrap().to_owned()
}

async fn metric(t: &TestEdge, needle: &str) -> u64 {
    let (_, text) = t.http("GET", "/metrics", None).await;
    text.lines()
        .find(|l| l.starts_with(needle))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse::<f64>().ok())
        .map_or(0, |v| v as u64)
}

#[tokio::test]
async fn srtp_carrier_to_plain_agent_audio_both_ways_and_replay_dropped() {
    let t = start_edge(|_| {}).await;
    let agent_media = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let agent_sdp = sdp(&agent_media, "RTP/AVP", &[]);
    let (agent_addr, mut invites) = agent(move |_| agent_sdp.clone()).await;
    let agent_id = agent_via_api(&t, agent_addr, "none").await;
    t.add_number("+14155550140", &agent_id, None).await;

    let carrier_media = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let carrier_key = CryptoAttribute::generate(1, SrtpSuite::AesCm128HmacSha1_80).unwrap();
    let mut c = Carrier::new(t.sip(), "+14155550140").await;
    invite_with(&c, &sdp(&carrier_media, "RTP/SAVP", &[&carrier_key])).await;

    let offer = tokio::time::timeout(S, invites.recv()).await.unwrap().unwrap();
    let (m, to_edge_b) = media(offer.body());
    assert!(m.contains(" RTP/AVP "), "plain toward the plain agent: {m}");
    assert!(crypto_lines(offer.body()).is_empty(), "no key reaches the agent");
    let (_, ok) = c.final_response(S).await;
    assert_eq!(ok.status(), Some(200));
    c.ack(&ok).await;
    let (m, to_edge_a) = media(ok.body());
    assert!(m.contains(" RTP/SAVP "), "SRTP answered to the carrier: {m}");
    let keys = crypto_lines(ok.body());
    assert_eq!(keys.len(), 1);
    assert_eq!((keys[0].tag, keys[0].suite()), (1, SrtpSuite::AesCm128HmacSha1_80));
    assert_ne!(keys[0].key, carrier_key.key, "the edge's own key, not the carrier's");

    let mut carrier_tx = SrtpContext::from_crypto(&carrier_key);
    let mut carrier_rx = SrtpContext::from_crypto(&keys[0]);
    let mut sent = Vec::new();
    for seq in 1..=20u16 {
        let mut p = rtp(seq, 0xCA11, seq as u8);
        carrier_tx.protect_rtp(&mut p).unwrap();
        carrier_media.send_to(&p, to_edge_a).await.unwrap();
        sent.push(p);
        let got = recv(&agent_media, S).await.expect("caller's audio at the agent");
        assert_eq!(got, rtp(seq, 0xCA11, seq as u8), "decrypted, payload intact");
        agent_media.send_to(&rtp(seq, 0xA6E7, 0x5A), to_edge_b).await.unwrap();
        let mut back = recv(&carrier_media, S).await.expect("agent's audio at the carrier");
        carrier_rx
            .unprotect_rtp(&mut back)
            .expect("encrypted with the edge's key");
        assert_eq!(back, rtp(seq, 0xA6E7, 0x5A));
    }
    carrier_media.send_to(&sent[10], to_edge_a).await.unwrap();
    assert!(
        recv(&agent_media, Duration::from_millis(300)).await.is_none(),
        "a replayed SRTP packet was relayed"
    );
    assert!(metric(&t, "edge_srtp_dropped_total{reason=\"replayed\"}").await >= 1);
    let (_, text) = t.http("GET", "/metrics", None).await;
    for k in [&carrier_key, &keys[0]] {
        let b64 = k.to_sdp_value();
        let inline = b64.split("inline:").nth(1).unwrap();
        assert!(!text.contains(inline), "a key on /metrics");
    }
    let call = t.http("GET", "/v1/calls?limit=5", None).await.1;
    assert!(!call.contains("inline:"), "a key in a call record: {call}");

    // The call's SIP trace keeps the a=crypto lines but none of the keys (src/trace/redact.rs).
    c.in_dialog("BYE", false).await;
    let id = offer
        .header(&HeaderName::Other("X-OneInbox-Call-Id".into()))
        .unwrap()
        .to_owned();
    let mut trace = None;
    for _ in 0..200 {
        let (code, body) = t.http("GET", &format!("/v1/calls/{id}/trace"), None).await;
        if code == 200 {
            trace = Some(body);
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let trace = trace.expect("trace stored");
    assert!(trace.contains("a=crypto:1 AES_CM_128_HMAC_SHA1_80 inline:"), "{trace}");
    for k in [&carrier_key, &keys[0]] {
        let value = k.to_sdp_value();
        let inline = value.split("inline:").nth(1).unwrap();
        assert!(!trace.contains(inline), "a key in the trace");
    }
}

#[tokio::test]
async fn plain_carrier_to_srtp_agent() {
    let t = start_edge(|_| {}).await;
    let agent_media = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let (agent_addr, mut invites, agent_key) = srtp_agent(agent_media.local_addr().unwrap()).await;
    let agent_id = agent_via_api(&t, agent_addr, "srtp").await;
    t.add_number("+14155550141", &agent_id, None).await;

    let carrier_media = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let mut c = Carrier::new(t.sip(), "+14155550141").await;
    invite_with(&c, &sdp(&carrier_media, "RTP/AVP", &[])).await;
    let offer = tokio::time::timeout(S, invites.recv()).await.unwrap().unwrap();
    let (m, to_edge_b) = media(offer.body());
    assert!(m.contains(" RTP/SAVP "), "SRTP offered to the srtp agent: {m}");
    let (_, ok) = c.final_response(S).await;
    assert_eq!(ok.status(), Some(200));
    c.ack(&ok).await;
    let (m, to_edge_a) = media(ok.body());
    assert!(m.contains(" RTP/AVP "), "plain toward the plain carrier: {m}");
    assert!(
        crypto_lines(ok.body()).is_empty(),
        "the agent's key stays with the edge"
    );

    let (edge_key, mine) = agent_key.lock().unwrap().clone().unwrap();
    let (mut agent_rx, mut agent_tx) = (SrtpContext::from_crypto(&edge_key), SrtpContext::from_crypto(&mine));
    for seq in 1..=10u16 {
        carrier_media.send_to(&rtp(seq, 0xC, 0x11), to_edge_a).await.unwrap();
        let mut got = recv(&agent_media, S).await.expect("caller's audio at the agent");
        agent_rx
            .unprotect_rtp(&mut got)
            .expect("encrypted with the edge's key for the agent");
        assert_eq!(got, rtp(seq, 0xC, 0x11));
        let mut p = rtp(seq, 0xD, 0x22);
        agent_tx.protect_rtp(&mut p).unwrap();
        agent_media.send_to(&p, to_edge_b).await.unwrap();
        assert_eq!(
            recv(&carrier_media, S).await.expect("agent's audio at the carrier"),
            rtp(seq, 0xD, 0x22)
        );
    }
}

#[tokio::test]
async fn srtp_required_carrier_with_a_plain_offer_gets_488() {
    let t = start_edge(|c| {
        for carrier in &mut c.carriers {
            carrier.media_encryption = edge_media::MediaEncryption::SrtpRequired;
        }
    })
    .await;
    let agent_media = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let agent_sdp = sdp(&agent_media, "RTP/AVP", &[]);
    let (agent_addr, mut invites) = agent(move |_| agent_sdp.clone()).await;
    let agent_id = agent_via_api(&t, agent_addr, "none").await;
    t.add_number("+14155550142", &agent_id, None).await;
    let carrier_media = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let mut c = Carrier::new(t.sip(), "+14155550142").await;
    invite_with(&c, &sdp(&carrier_media, "RTP/AVP", &[])).await;
    let (_, resp) = c.final_response(S).await;
    assert_eq!(resp.status(), Some(488));
    let warning = resp.header(&HeaderName::Warning).unwrap_or_default();
    assert!(warning.contains("SRTP required"), "{warning}");
    c.ack(&resp).await;
    assert!(
        tokio::time::timeout(Duration::from_millis(300), invites.recv())
            .await
            .is_err(),
        "no agent rung"
    );
    // An SRTP offer from the same carrier goes through.
    let key = CryptoAttribute::generate(1, SrtpSuite::AesCm128HmacSha1_32).unwrap();
    let mut c = Carrier::new(t.sip(), "+14155550142").await;
    invite_with(&c, &sdp(&carrier_media, "RTP/SAVP", &[&key])).await;
    let (_, ok) = c.final_response(S).await;
    assert_eq!(ok.status(), Some(200));
    c.ack(&ok).await;
}

/// The keys an SRTP agent ended up with: the edge's line it took (the edge sends with it) and its own.
type AgentKeys = Arc<std::sync::Mutex<Option<(CryptoAttribute, CryptoAttribute)>>>;

/// An agent that answers the edge's `RTP/SAVP` offer on the AES_CM_128_HMAC_SHA1_80 line with a key of its
/// own, its media on `media`; the keys land in the returned holder.
async fn srtp_agent(media: SocketAddr) -> (SocketAddr, tokio::sync::mpsc::Receiver<Message>, AgentKeys) {
    let holder: AgentKeys = Arc::default();
    let keys = holder.clone();
    let (addr, invites) = agent(move |offer| {
        let line = crypto_lines(offer.body())
            .into_iter()
            .find(|c| c.suite() == SrtpSuite::AesCm128HmacSha1_80)
            .expect("AES_CM_128_HMAC_SHA1_80 offered");
        let mine = CryptoAttribute::generate(line.tag, line.suite()).unwrap();
        let body = format!(
            "v=0\r\no=agent 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n\
             m=audio {} RTP/SAVP 0\r\na=rtpmap:0 PCMU/8000\r\na=crypto:{}\r\n",
            media.port(),
            mine.to_sdp_value()
        );
        *keys.lock().unwrap() = Some((line, mine));
        body
    })
    .await;
    (addr, invites, holder)
}

/// A `srtp_required` agent that answers the edge's SRTP offer with plain RTP cannot carry the call: the
/// edge ends its leg (ACK + BYE) and the fallback takes the caller, who gets an answer with media (before,
/// the caller got a 200 without SDP: a call with no audio).
#[tokio::test]
async fn plain_answer_from_a_srtp_required_agent_fails_its_hop_and_the_fallback_answers() {
    let t = start_edge(|_| {}).await;
    let primary = common::Agent::spawn(common::Mode::Answer).await;
    let fallback = common::Agent::spawn(common::Mode::Answer).await;
    let p = agent_via_api(&t, primary.addr, "srtp_required").await;
    let f = agent_via_api(&t, fallback.addr, "none").await;
    t.add_number("+14155550143", &p, Some(&f)).await;

    let mut c = Carrier::new(t.sip(), "+14155550143").await;
    c.invite().await;
    let offer = primary.expect(Method::Invite, S).await;
    assert!(
        media(offer.body()).0.contains(" RTP/SAVP "),
        "SRTP offered to the primary"
    );
    assert!(!crypto_lines(offer.body()).is_empty());
    let call_id = offer
        .header(&HeaderName::Other("X-OneInbox-Call-Id".into()))
        .unwrap()
        .to_owned();
    primary.expect(Method::Ack, S).await;
    let bye = primary.expect(Method::Bye, S).await;
    assert_eq!(
        bye.call_id().unwrap(),
        offer.call_id().unwrap(),
        "the primary's own leg is ended"
    );
    let to_fallback = fallback.expect(Method::Invite, S).await;
    assert!(
        media(to_fallback.body()).0.contains(" RTP/AVP "),
        "plain toward the plain fallback"
    );
    let (_, ok) = c.final_response(S).await;
    assert_eq!(ok.status(), Some(200));
    let (m, _) = media(ok.body());
    assert!(
        m.contains(" RTP/AVP "),
        "the caller's 200 carries the fallback's session: {m}"
    );
    c.ack(&ok).await;
    c.in_dialog("BYE", false).await;
    let rec = t.final_call(&call_id, S).await;
    assert_eq!(rec["status"], "completed", "{rec}");
    assert_eq!(rec["answered_by"], "fallback", "{rec}");
    let hops = rec["hops"].as_array().unwrap();
    assert_eq!(hops.len(), 2, "{rec}");
    assert_eq!(hops[0]["route"], "primary");
    let outcome = hops[0]["outcome"].as_str().unwrap();
    assert!(outcome.starts_with("media refused: SRTP required"), "{outcome}");
    assert_eq!(hops[1]["outcome"], "answered");
}

/// A plain carrier's call answered by an SRTP agent (`media_encryption = "srtp"`), up and ready to be
/// transferred: what the transfer tests start from.
struct AnsweredBySrtpAgent {
    call_id: String,
    /// The INVITE the first agent got (the edge's offer, its keys).
    offer: Message,
    first_media: UdpSocket,
    first_keys: AgentKeys,
    carrier_media: UdpSocket,
    /// Where the carrier sends its RTP: the edge's port facing it.
    to_edge_a: SocketAddr,
    _carrier: Carrier,
}

async fn answered_by_srtp_agent(t: &TestEdge, did: &str) -> AnsweredBySrtpAgent {
    let first_media = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let (first_addr, mut first_invites, first_keys) = srtp_agent(first_media.local_addr().unwrap()).await;
    let first = agent_via_api(t, first_addr, "srtp").await;
    t.add_number(did, &first, None).await;
    let carrier_media = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let mut c = Carrier::new(t.sip(), did).await;
    invite_with(&c, &sdp(&carrier_media, "RTP/AVP", &[])).await;
    let offer = tokio::time::timeout(S, first_invites.recv()).await.unwrap().unwrap();
    let call_id = offer
        .header(&HeaderName::Other("X-OneInbox-Call-Id".into()))
        .unwrap()
        .to_owned();
    let (_, ok) = c.final_response(S).await;
    assert_eq!(ok.status(), Some(200));
    c.ack(&ok).await;
    let (_, to_edge_a) = media(ok.body());
    t.wait_status(&call_id, "in-progress", S).await;
    AnsweredBySrtpAgent {
        call_id,
        offer,
        first_media,
        first_keys,
        carrier_media,
        to_edge_a,
        _carrier: c,
    }
}

/// `POST /v1/calls/{id}/transfer` to `to`, accepted.
async fn transfer(t: &TestEdge, call_id: &str, to: &str) {
    let (code, body) = t
        .http(
            "POST",
            &format!("/v1/calls/{call_id}/transfer"),
            Some(&format!(r#"{{"to":"{to}"}}"#)),
        )
        .await;
    assert_eq!(code, 202, "{body}");
}

/// The caller's RTP until a packet reaches the first agent, which must open it with the key the edge gave
/// it: whether one came.
async fn first_agent_hears_the_caller(call: &AnsweredBySrtpAgent, fill: u8) -> bool {
    let (edge_key, _) = call.first_keys.lock().unwrap().clone().unwrap();
    let mut rx = SrtpContext::from_crypto(&edge_key);
    for seq in 1..=40u16 {
        call.carrier_media
            .send_to(&rtp(seq, 0xC, fill), call.to_edge_a)
            .await
            .unwrap();
        if let Some(mut got) = recv(&call.first_media, Duration::from_millis(100)).await {
            rx.unprotect_rtp(&mut got).expect("still under the first agent's keys");
            assert_eq!(got, rtp(seq, 0xC, fill));
            return true;
        }
    }
    false
}

/// A transfer's target gets an offer of its own policy with fresh keys of the edge's: the agent it
/// replaces never held a key the target uses, and the caller's audio reaches the target encrypted with the
/// target's key alone.
#[tokio::test]
async fn a_transfer_target_gets_its_own_srtp_keys() {
    let t = start_edge(|_| {}).await;
    let target_media = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let (target_addr, mut target_invites, target_keys) = srtp_agent(target_media.local_addr().unwrap()).await;
    let target = agent_via_api(&t, target_addr, "srtp_required").await;
    let call = answered_by_srtp_agent(&t, "+14155550144").await;
    let (carrier_media, to_edge_a, first_keys) = (&call.carrier_media, call.to_edge_a, &call.first_keys);
    let first_offered = crypto_lines(call.offer.body());

    transfer(&t, &call.call_id, &target).await;
    let target_offer = tokio::time::timeout(S, target_invites.recv()).await.unwrap().unwrap();
    let (m, _) = media(target_offer.body());
    assert!(
        m.contains(" RTP/SAVP "),
        "SRTP offered to the srtp_required target: {m}"
    );
    let target_offered = crypto_lines(target_offer.body());
    assert!(!target_offered.is_empty());
    for k in &target_offered {
        for old in &first_offered {
            assert_ne!(k.key, old.key, "a key the first agent was given reached the target");
        }
    }
    // The caller's audio reaches the target under the target's own key, not the first agent's.
    let (edge_key, _) = target_keys.lock().unwrap().clone().unwrap();
    let (first_edge_key, _) = first_keys.lock().unwrap().clone().unwrap();
    let mut target_rx = SrtpContext::from_crypto(&edge_key);
    let mut heard = 0;
    for seq in 1..=40u16 {
        carrier_media.send_to(&rtp(seq, 0xC, 0x33), to_edge_a).await.unwrap();
        if let Some(mut got) = recv(&target_media, Duration::from_millis(100)).await {
            let mut with_old = got.clone();
            assert!(
                SrtpContext::from_crypto(&first_edge_key)
                    .unprotect_rtp(&mut with_old)
                    .is_err(),
                "the first agent's key opens the target's audio"
            );
            target_rx
                .unprotect_rtp(&mut got)
                .expect("encrypted with the target's key");
            assert_eq!(got, rtp(seq, 0xC, 0x33));
            heard += 1;
            if heard == 5 {
                break;
            }
        }
    }
    assert_eq!(heard, 5, "the target never heard the caller");
}

/// An API call through a trunk whose `provider_config.media_encryption` is `srtp_required`: a plain answer
/// from it is not a call with no audio. The edge hangs up the dialled party, rings no agent, and the call
/// fails with `trunk_media`.
#[tokio::test]
async fn an_api_call_through_a_srtp_required_trunk_that_answers_plain_fails_with_trunk_media() {
    use common::trunk::{TestTrunk, TrunkMode};
    let t = start_edge(|_| {}).await;
    let trunk = TestTrunk::spawn(TrunkMode::Answer, None).await;
    let agent = common::Agent::spawn(common::Mode::Answer).await;
    let agent_id = agent_via_api(&t, agent.addr, "none").await;
    let did = "+14155550145";
    t.edge
        .store
        .create_number(
            &t.account,
            edge_store::NewNumber {
                phone_number: did.into(),
                friendly_name: None,
                agent_id: agent_id.clone(),
                provider: edge_store::Provider::Twilio,
                source: edge_store::NumberSource::Byo,
                provider_ref: None,
                inbound_routing: None,
                provider_config: Some(edge_store::NewProviderConfig {
                    trunk_address: trunk.addr.to_string(),
                    media_encryption: edge_store::MediaEncryption::SrtpRequired,
                    ..Default::default()
                }),
            },
        )
        .await
        .unwrap();
    let body = format!(r#"{{"from": "{did}", "to": "+14155550999", "agent_id": "{agent_id}"}}"#);
    let (code, text) = t.http("POST", "/v1/calls", Some(&body)).await;
    assert_eq!(code, 201, "{text}");
    let id = serde_json::from_str::<serde_json::Value>(&text).unwrap()["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let offer = trunk.expect(Method::Invite, S).await;
    assert!(
        media(offer.body()).0.contains(" RTP/SAVP "),
        "SRTP offered to the trunk"
    );
    // The test trunk answers with plain RTP/AVP: the edge ends its leg.
    trunk.expect(Method::Bye, S).await;
    let rec = t.final_call(&id, S).await;
    assert_eq!(rec["status"], "failed", "{rec}");
    assert_eq!(rec["error"]["code"], "trunk_media", "{rec}");
    let message = rec["error"]["message"].as_str().unwrap();
    assert!(message.contains("SRTP required"), "{message}");
    assert!(
        !agent.got(Method::Invite, Duration::from_millis(300)).await,
        "no agent rung without media"
    );
}

/// A transfer target that requires SRTP and answers plain cannot take the caller: the edge ends its leg
/// (ACK + BYE), the transfer fails with 488, and the caller stays with the first agent, whose keys the
/// target's offer never touched: its audio still arrives under them.
#[tokio::test]
async fn a_transfer_to_a_srtp_required_agent_that_answers_plain_fails_and_the_caller_stays() {
    let t = start_edge(|_| {}).await;
    let target = common::Agent::spawn(common::Mode::Answer).await;
    let target_id = agent_via_api(&t, target.addr, "srtp_required").await;
    let call = answered_by_srtp_agent(&t, "+14155550146").await;
    let call_id = &call.call_id;

    transfer(&t, call_id, &target_id).await;
    let to_target = target.expect(Method::Invite, S).await;
    assert!(media(to_target.body()).0.contains(" RTP/SAVP "));
    target.expect(Method::Ack, S).await;
    target.expect(Method::Bye, S).await;
    // The call goes on with the first agent, the transfer's hop saying why it failed.
    let deadline = tokio::time::Instant::now() + S;
    let rec = loop {
        let (_, text) = t.http("GET", &format!("/v1/calls/{call_id}"), None).await;
        let rec: serde_json::Value = serde_json::from_str(&text).unwrap();
        let done = rec["hops"]
            .as_array()
            .is_some_and(|h| h.iter().any(|h| h["route"] == "transfer" && h["outcome"] != "trying"));
        if done || tokio::time::Instant::now() > deadline {
            break rec;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_eq!(rec["status"], "in-progress", "{rec}");
    let hop = rec["hops"]
        .as_array()
        .unwrap()
        .iter()
        .find(|h| h["route"] == "transfer")
        .unwrap();
    assert!(
        hop["outcome"]
            .as_str()
            .unwrap()
            .starts_with("media refused: SRTP required"),
        "{hop}"
    );
    assert!(
        first_agent_hears_the_caller(&call, 0x44).await,
        "the first agent no longer hears the caller"
    );
}

/// A transfer target that sends SRTP early media (a carrier's ringback in a 183) and then is busy: the
/// first agent must get the caller back under its own keys. (The target's keys are not taken from a 183
/// on an SRTP side: taking them replaced the agent's, and a failed transfer left the agent unable to hear
/// or be heard.)
#[tokio::test]
async fn a_transfer_target_with_srtp_early_media_then_busy_leaves_the_agent_its_keys() {
    let t = start_edge(|_| {}).await;
    // The target: 183 with an SRTP answer of its own, then 486.
    let target_sock = Arc::new(UdpSocket::bind("127.0.0.1:0").await.unwrap());
    let target_media = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let target_addr = target_sock.local_addr().unwrap();
    let media_port = target_media.local_addr().unwrap().port();
    let (busy_tx, mut busy_rx) = tokio::sync::mpsc::channel::<()>(1);
    let sock = target_sock.clone();
    tokio::spawn(async move {
        let mut buf = vec![0u8; 65536];
        loop {
            let Ok((n, from)) = sock.recv_from(&mut buf).await else {
                return;
            };
            let Ok(m) = Message::parse(Bytes::copy_from_slice(&buf[..n])) else {
                continue;
            };
            if m.method() != Some(&Method::Invite) {
                continue;
            }
            let line = crypto_lines(m.body())
                .into_iter()
                .next()
                .expect("SRTP offered to the target");
            let mine = CryptoAttribute::generate(line.tag, line.suite()).unwrap();
            let body = format!(
                "v=0\r\no=t 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n\
                 m=audio {media_port} RTP/SAVP 0\r\na=rtpmap:0 PCMU/8000\r\na=crypto:{}\r\n",
                mine.to_sdp_value()
            );
            let early = sip_core::build::ResponseBuilder::for_request(&m, 183, "Session Progress")
                .to_tag("tgt")
                .body("application/sdp", Bytes::from(body))
                .build();
            let _ = sock.send_to(&early, from).await;
            tokio::time::sleep(Duration::from_millis(200)).await;
            let busy = sip_core::build::ResponseBuilder::for_request(&m, 486, "Busy Here")
                .to_tag("tgt")
                .build();
            let _ = sock.send_to(&busy, from).await;
            let _ = busy_tx.send(()).await;
        }
    });
    let target = agent_via_api(&t, target_addr, "srtp").await;
    let call = answered_by_srtp_agent(&t, "+14155550147").await;
    transfer(&t, &call.call_id, &target).await;
    tokio::time::timeout(S, busy_rx.recv()).await.unwrap();
    // The transfer failed on the 486; the first agent has the caller again, under its own keys.
    assert!(
        first_agent_hears_the_caller(&call, 0x55).await,
        "after the failed transfer the first agent no longer hears the caller under its keys"
    );
}
