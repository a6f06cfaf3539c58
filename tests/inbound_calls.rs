//! Inbound calls end to end on loopback: a carrier UAC -> the edge -> scripted agent UASes, checking what a
//! carrier and an agent would see, the agent counts and the routing chain.

mod common;

use std::time::Duration;

use common::{start_edge, Agent, Carrier, Mode};
use edge_store::AgentStatus;
use sip_core::message::{HeaderName, Method};

const S: Duration = Duration::from_secs(3);
const DID: &str = "+14155550100";

/// Polls until the edge shows `n` active calls on the agent (counts move on the engine task).
async fn wait_load(t: &common::TestEdge, agent_id: &str, n: u32) {
    for _ in 0..100 {
        if t.edge.agent_load(agent_id) == n {
            return;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("agent {agent_id} load is {}, want {n}", t.edge.agent_load(agent_id));
}

#[tokio::test]
async fn primary_answers_then_caller_hangs_up() {
    let t = start_edge(|_| {}).await;
    let primary = Agent::spawn(Mode::Answer).await;
    let p = t.add_agent("primary", &primary, 5, AgentStatus::Active).await;
    let number_id = t.add_number(DID, &p, None).await;

    let mut c = Carrier::new(t.sip(), DID).await;
    c.invite().await;
    let (prov, ok) = c.final_response(S).await;
    assert_eq!(ok.status(), Some(200));
    assert!(prov.contains(&100) && prov.contains(&180), "provisionals {prov:?}");
    assert!(ok.to().unwrap().tag().is_some());
    assert!(ok.header(&HeaderName::Contact).is_some());
    assert!(!ok.body().is_empty(), "the agent's SDP answer is relayed");

    // What the agent saw: a new dialog with the caller's identity and our headers.
    let inv = primary.expect(Method::Invite, S).await;
    assert_ne!(inv.call_id().unwrap(), c.call_id);
    let from = inv.from().unwrap();
    assert_eq!(from.uri.user().unwrap(), "+12125550000");
    assert_eq!(from.display_name.as_deref(), Some("Alice Caller"));
    assert_eq!(inv.to().unwrap().uri.user().unwrap(), DID);
    let h = |n: &str| inv.header(&HeaderName::Other(n.into())).map(str::to_owned);
    assert!(h("X-OneInbox-Call-Id").unwrap().starts_with("call_"));
    assert_eq!(h("X-OneInbox-Phone-Number").as_deref(), Some(DID));
    assert_eq!(h("X-OneInbox-Phone-Number-Id"), Some(number_id));
    assert_eq!(h("X-OneInbox-Agent-Id"), Some(p.clone()));
    assert_eq!(h("X-OneInbox-Route").as_deref(), Some("primary"));
    assert_eq!(h("X-OneInbox-Carrier").as_deref(), Some("loopback"));
    assert_eq!(h("X-Twilio-CallSid").as_deref(), Some("CA0123456789abcdef"));
    primary.expect(Method::Ack, S).await;
    wait_load(&t, &p, 1).await;

    c.ack(&ok).await;
    c.in_dialog("BYE", false).await;
    let bye_ok = c.recv(S).await.expect("200 to BYE");
    assert_eq!(bye_ok.status(), Some(200));
    primary.expect(Method::Bye, S).await;
    wait_load(&t, &p, 0).await;
}

#[tokio::test]
async fn busy_primary_fails_over_to_fallback() {
    let t = start_edge(|_| {}).await;
    let busy = Agent::spawn(Mode::Reject(486)).await;
    let fb = Agent::spawn(Mode::Answer).await;
    let p = t.add_agent("busy", &busy, 5, AgentStatus::Active).await;
    let f = t.add_agent("fallback", &fb, 5, AgentStatus::Active).await;
    t.add_number(DID, &p, Some(&f)).await;

    let mut c = Carrier::new(t.sip(), DID).await;
    c.invite().await;
    let (_, ok) = c.final_response(S).await;
    assert_eq!(ok.status(), Some(200));
    // The edge's INVITE client transaction ACKed the 486.
    assert!(busy.got(Method::Ack, S).await);
    let inv = fb.expect(Method::Invite, S).await;
    assert_eq!(
        inv.header(&HeaderName::Other("X-OneInbox-Route".into())),
        Some("fallback")
    );
    wait_load(&t, &p, 0).await;
    wait_load(&t, &f, 1).await;
}

/// Found by the endpoint fuzz target (no dialog may outlive shutdown): the Call-ID of an agent leg that failed
/// (here a 486) stayed in the dialog index after the call moved on to the fallback agent, so a late BYE on that
/// dead leg hung up the fallback agent's call, and every failover leaked an index entry for good.
#[tokio::test]
async fn a_failed_agent_legs_call_id_no_longer_reaches_the_call() {
    let t = start_edge(|_| {}).await;
    let busy = Agent::spawn(Mode::Reject(486)).await;
    let fb = Agent::spawn(Mode::Answer).await;
    let p = t.add_agent("busy", &busy, 5, AgentStatus::Active).await;
    let f = t.add_agent("fallback", &fb, 5, AgentStatus::Active).await;
    t.add_number(DID, &p, Some(&f)).await;
    let mut c = Carrier::new(t.sip(), DID).await;
    c.invite().await;
    let (_, ok) = c.final_response(S).await;
    assert_eq!(ok.status(), Some(200));
    c.ack(&ok).await;
    fb.expect(Method::Ack, S).await;

    // A BYE on the busy agent's dead leg: its Call-ID, the edge's From tag as To.
    let dead = busy.expect(Method::Invite, S).await;
    let sock = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let me = sock.local_addr().unwrap();
    let bye = format!(
        "BYE sip:edge@{edge} SIP/2.0\r\nVia: SIP/2.0/UDP {me};branch=z9hG4bKdeadleg;rport\r\nMax-Forwards: 70\r\n\
         From: {to};tag=late\r\nTo: {from}\r\nCall-ID: {cid}\r\nCSeq: 100 BYE\r\nContent-Length: 0\r\n\r\n",
        edge = t.sip(),
        to = dead.header(&HeaderName::To).unwrap().trim(),
        from = dead.header(&HeaderName::From).unwrap().trim(),
        cid = dead.call_id().unwrap(),
    );
    sock.send_to(bye.as_bytes(), t.sip()).await.unwrap();
    let mut buf = vec![0u8; 4096];
    let n = tokio::time::timeout(S, sock.recv(&mut buf)).await.unwrap().unwrap();
    assert_eq!(common::parse(&buf[..n]).status(), Some(481), "no dialog on a dead leg");
    assert!(
        !fb.got(Method::Bye, Duration::from_millis(500)).await,
        "the live call was not hung up"
    );
    wait_load(&t, &f, 1).await;

    // The call itself still ends normally.
    c.in_dialog("BYE", false).await;
    assert_eq!(c.recv(S).await.expect("200 to BYE").status(), Some(200));
    fb.expect(Method::Bye, S).await;
    wait_load(&t, &f, 0).await;
}

#[tokio::test]
async fn unavailable_503_primary_fails_over() {
    let t = start_edge(|_| {}).await;
    let down = Agent::spawn(Mode::Reject(503)).await;
    let fb = Agent::spawn(Mode::Answer).await;
    let p = t.add_agent("down", &down, 5, AgentStatus::Active).await;
    let f = t.add_agent("fallback", &fb, 5, AgentStatus::Active).await;
    t.add_number(DID, &p, Some(&f)).await;
    let mut c = Carrier::new(t.sip(), DID).await;
    c.invite().await;
    assert_eq!(c.final_response(S).await.1.status(), Some(200));
    assert!(fb.got(Method::Invite, S).await);
}

#[tokio::test]
async fn silent_primary_times_out_at_setup_and_fails_over() {
    let t = start_edge(|_| {}).await;
    let silent = Agent::spawn(Mode::Silent).await;
    let fb = Agent::spawn(Mode::Answer).await;
    let p = t.add_agent("silent", &silent, 5, AgentStatus::Active).await;
    let f = t.add_agent("fallback", &fb, 5, AgentStatus::Active).await;
    t.add_number(DID, &p, Some(&f)).await;
    let mut c = Carrier::new(t.sip(), DID).await;
    let started = std::time::Instant::now();
    c.invite().await;
    let (_, ok) = c.final_response(S).await;
    assert_eq!(ok.status(), Some(200));
    let took = started.elapsed();
    assert!(
        took >= Duration::from_millis(300),
        "failover waited for the setup timeout, took {took:?}"
    );
    assert!(
        took < Duration::from_millis(1500),
        "failover at the setup timeout, not later: {took:?}"
    );
    wait_load(&t, &p, 0).await;
}

/// RFC 3261 17.1.4 / 8.1.3.1: an agent reached over TCP where nothing listens refuses the connect at once;
/// the edge ends that INVITE transaction on the transport error and tries the fallback then, not when an
/// agent timer fires (ring 1 s, setup 5 s here; before the transport error was reported: 1.0 s) or Timer B.
#[tokio::test]
async fn refused_tcp_connect_fails_over_at_once() {
    let t = start_edge(|cfg| cfg.agent_setup_timeout = Duration::from_secs(5)).await;
    // A loopback port with no listener: bound, then closed.
    let dead = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let fb = Agent::spawn(Mode::Answer).await;
    let store = &t.edge.store;
    let gone = store
        .create_agent(
            &t.account,
            edge_store::NewAgent {
                name: "tcp-dead".into(),
                sip_uri: format!("sip:bot@{dead};transport=tcp"),
                max_concurrent_calls: 5,
                voicemail_message: None,
                status: AgentStatus::Active,
                sip_username: None,
                sip_password: None,
                media_encryption: Default::default(),
            },
        )
        .await
        .unwrap();
    let f = t.add_agent("fallback", &fb, 5, AgentStatus::Active).await;
    let number_id = t.add_number(DID, &gone.id, Some(&f)).await;
    let mut c = Carrier::new(t.sip(), DID).await;
    let started = std::time::Instant::now();
    c.invite().await;
    let (_, ok) = c.final_response(S).await;
    let took = started.elapsed();
    assert_eq!(ok.status(), Some(200));
    assert!(fb.got(Method::Invite, S).await, "the fallback got the call");
    assert!(
        took < Duration::from_millis(1000),
        "failover on the refused connect, not at an agent timer: took {took:?}"
    );
    eprintln!("failover after a refused TCP connect took {took:?}");
    wait_load(&t, &gone.id, 0).await;
    // The hop says the agent was unreachable (dead), not that it timed out (silent).
    c.ack(&ok).await;
    c.in_dialog("BYE", false).await;
    let rec = final_record(&t, &number_id).await;
    let hops = rec["hops"].as_array().unwrap();
    assert_eq!(hops[0]["sip_status"], 503, "{rec}");
    assert_eq!(
        hops[0]["outcome"], "unreachable: transport error (connection refused)",
        "{rec}"
    );
}

#[tokio::test]
async fn slow_primary_rings_past_ring_timeout_is_cancelled() {
    let t = start_edge(|_| {}).await;
    let slow = Agent::spawn(Mode::RingForever).await;
    let fb = Agent::spawn(Mode::Answer).await;
    let p = t.add_agent("slow", &slow, 5, AgentStatus::Active).await;
    let f = t.add_agent("fallback", &fb, 5, AgentStatus::Active).await;
    t.add_number(DID, &p, Some(&f)).await;
    let mut c = Carrier::new(t.sip(), DID).await;
    c.invite().await;
    let (prov, ok) = c.final_response(S).await;
    assert_eq!(ok.status(), Some(200));
    assert!(prov.contains(&180), "the primary's ringing was relayed");
    assert!(slow.got(Method::Cancel, S).await, "the edge cancels the slow agent");
    assert!(fb.got(Method::Invite, S).await);
    wait_load(&t, &p, 0).await;
}

#[tokio::test]
async fn disabled_primary_is_skipped() {
    let t = start_edge(|_| {}).await;
    let off = Agent::spawn(Mode::Answer).await;
    let fb = Agent::spawn(Mode::Answer).await;
    let p = t.add_agent("off", &off, 5, AgentStatus::Disabled).await;
    let f = t.add_agent("fallback", &fb, 5, AgentStatus::Active).await;
    t.add_number(DID, &p, Some(&f)).await;
    let mut c = Carrier::new(t.sip(), DID).await;
    c.invite().await;
    assert_eq!(c.final_response(S).await.1.status(), Some(200));
    assert!(
        !off.got(Method::Invite, Duration::from_millis(200)).await,
        "a disabled agent gets nothing"
    );
    assert!(fb.got(Method::Invite, S).await);
}

#[tokio::test]
async fn agent_at_capacity_goes_to_fallback() {
    let t = start_edge(|_| {}).await;
    let one = Agent::spawn(Mode::Answer).await;
    let fb = Agent::spawn(Mode::Answer).await;
    let p = t.add_agent("one", &one, 1, AgentStatus::Active).await;
    let f = t.add_agent("fallback", &fb, 5, AgentStatus::Active).await;
    t.add_number(DID, &p, Some(&f)).await;
    let mut c1 = Carrier::new(t.sip(), DID).await;
    c1.invite().await;
    assert_eq!(c1.final_response(S).await.1.status(), Some(200));
    wait_load(&t, &p, 1).await;
    let mut c2 = Carrier::new(t.sip(), DID).await;
    c2.invite().await;
    let (_, ok2) = c2.final_response(S).await;
    assert_eq!(ok2.status(), Some(200));
    assert!(fb.got(Method::Invite, S).await, "second call goes to the fallback");
    wait_load(&t, &f, 1).await;
    wait_load(&t, &p, 1).await;
}

#[tokio::test]
async fn caller_cancels_while_ringing() {
    let t = start_edge(|c| c.agent_ring_timeout = Duration::from_secs(10)).await;
    let slow = Agent::spawn(Mode::RingForever).await;
    let p = t.add_agent("slow", &slow, 5, AgentStatus::Active).await;
    t.add_number(DID, &p, None).await;
    let mut c = Carrier::new(t.sip(), DID).await;
    c.invite().await;
    slow.expect(Method::Invite, S).await;
    wait_load(&t, &p, 1).await;
    // Let the 180 arrive, then cancel.
    tokio::time::sleep(Duration::from_millis(100)).await;
    c.cancel().await;
    let (_, fin) = c.final_response(S).await;
    assert_eq!(fin.status(), Some(487));
    assert!(slow.got(Method::Cancel, S).await);
    wait_load(&t, &p, 0).await;
}

#[tokio::test]
async fn agent_hangs_up() {
    let t = start_edge(|_| {}).await;
    let a = Agent::spawn(Mode::Answer).await;
    let p = t.add_agent("a", &a, 5, AgentStatus::Active).await;
    t.add_number(DID, &p, None).await;
    let mut c = Carrier::new(t.sip(), DID).await;
    c.invite().await;
    let (_, ok) = c.final_response(S).await;
    c.ack(&ok).await;
    a.expect(Method::Ack, S).await;
    a.send_in_dialog("BYE", false).await;
    let bye = c.expect_request(Method::Bye, S).await;
    assert_eq!(bye.call_id().unwrap(), c.call_id, "BYE on the carrier's dialog");
    assert_eq!(bye.to().unwrap().tag(), Some(c.from_tag.as_str()));
    c.ok(&bye, None).await;
    wait_load(&t, &p, 0).await;
}

#[tokio::test]
async fn reinvite_both_ways() {
    let t = start_edge(|_| {}).await;
    let a = Agent::spawn(Mode::Answer).await;
    let p = t.add_agent("a", &a, 5, AgentStatus::Active).await;
    t.add_number(DID, &p, None).await;
    let mut c = Carrier::new(t.sip(), DID).await;
    c.invite().await;
    let (_, ok) = c.final_response(S).await;
    c.ack(&ok).await;
    a.expect(Method::Ack, S).await;

    // Caller -> agent (e.g. a session refresh).
    c.in_dialog("INVITE", true).await;
    let reinv = a.expect(Method::Invite, S).await;
    assert!(reinv.to().unwrap().tag().is_some(), "relayed inside the agent's dialog");
    let resp = loop {
        let r = c.recv(S).await.expect("answer to the re-INVITE");
        if r.status().is_some_and(|s| s >= 200) {
            break r;
        }
    };
    assert_eq!(resp.status(), Some(200));
    assert_eq!(resp.cseq().unwrap().method, Method::Invite);
    assert!(a.got(Method::Ack, S).await, "the edge ACKs the agent's 2xx");

    // Agent -> caller (e.g. hold).
    a.send_in_dialog("INVITE", true).await;
    let to_caller = c.expect_request(Method::Invite, S).await;
    assert_eq!(to_caller.call_id().unwrap(), c.call_id);
    c.ok(&to_caller, Some(common::SDP)).await;
    assert!(c.expect_request(Method::Ack, S).await.is_request());
}

#[tokio::test]
async fn voicemail_impossible_is_503_with_retry_after() {
    // Without the media engine the edge cannot take the call itself: the carrier must try elsewhere.
    let t = start_edge(|c| c.media.enabled = false).await;
    let busy = Agent::spawn(Mode::Reject(486)).await;
    let p = t.add_agent("busy", &busy, 5, AgentStatus::Active).await;
    t.add_number(DID, &p, None).await;
    let mut c = Carrier::new(t.sip(), DID).await;
    c.invite().await;
    let (_, fin) = c.final_response(S).await;
    assert_eq!(fin.status(), Some(503));
    assert!(fin.header(&HeaderName::RetryAfter).is_some());
    wait_load(&t, &p, 0).await;
}

/// What [`second_call_refused_for_media`] leaves: the edge, the ringing agent and its id, and the first
/// carrier's call (still ringing, its media anchored).
struct MediaRefused {
    t: common::TestEdge,
    slow: Agent,
    p: String,
    first: Carrier,
}

/// With `limit` leaving media for exactly one anchored call, a first call rings at an agent that never
/// answers and a second INVITE is refused: 503 with Retry-After and a Warning containing `warning`.
async fn second_call_refused_for_media(
    limit: impl FnOnce(&mut oneinbox_edge::config::Config),
    warning: &str,
) -> MediaRefused {
    let t = start_edge(|c| {
        limit(c);
        c.agent_ring_timeout = Duration::from_secs(10);
    })
    .await;
    let slow = Agent::spawn(Mode::RingForever).await;
    let p = t.add_agent("slow", &slow, 5, AgentStatus::Active).await;
    t.add_number(DID, &p, None).await;
    let first = Carrier::new(t.sip(), DID).await;
    first.invite().await;
    slow.expect(Method::Invite, S).await;

    let mut second = Carrier::new(t.sip(), DID).await;
    second.invite().await;
    let (_, fin) = second.final_response(S).await;
    assert_eq!(fin.status(), Some(503));
    assert!(fin.header(&HeaderName::RetryAfter).is_some());
    let got = fin.header(&HeaderName::Warning).unwrap_or_default();
    assert!(got.contains(warning), "{got}");
    MediaRefused { t, slow, p, first }
}

/// With every media port pair in use, a new call is refused at once with 503 + Retry-After (the carrier
/// tries its next origination URI) and counted for the operator; the call in progress is untouched.
#[tokio::test]
async fn no_media_ports_is_503_and_counted() {
    let MediaRefused { t, p, mut first, .. } = second_call_refused_for_media(
        |c| {
            // Two port pairs: exactly one anchored call (a pair facing each leg).
            c.media.rtp_ports = (c.media.rtp_ports.0, c.media.rtp_ports.0 + 3);
        },
        "media ports exhausted",
    )
    .await;
    let refused = t
        .edge
        .call_stats
        .media_unavailable
        .load(std::sync::atomic::Ordering::Relaxed);
    assert_eq!(refused, 1);
    // The refusal is on record for the operator: a failed call with the code the carrier got.
    let rec = refused_record(&t).await;
    assert_eq!(rec["sip_status"], 503, "{rec}");
    assert_eq!(rec["end_reason"], "no media ports: media ports exhausted", "{rec}");
    wait_load(&t, &p, 1).await;

    first.cancel().await;
    assert_eq!(first.final_response(S).await.1.status(), Some(487));
    wait_load(&t, &p, 0).await;
}

/// `media.max_sockets` = 4: one anchored call (an RTP and an RTCP socket facing each leg) and no more;
/// the next INVITE gets 503 with a Warning naming the key, and once the first call ends its (cached)
/// sockets give way to the next call.
/// The media gauges on /metrics are process-wide (one recorder), and these tests' edges set them to
/// different values: run apart, each reads its own edge's figures.
static MEDIA_GAUGES: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

#[tokio::test]
async fn media_socket_ceiling_is_503_and_frees_with_the_call() {
    let _gauges = MEDIA_GAUGES.lock().await;
    let MediaRefused { t, p, mut first, slow } =
        second_call_refused_for_media(|c| c.media.max_sockets = 4, "media.max_sockets").await;
    let (_, text) = t.http("GET", "/metrics", None).await;
    for needle in [
        "edge_media_sockets_open 4",
        "edge_media_sockets_max 4",
        "edge_media_unavailable_total 1",
    ] {
        assert!(text.contains(needle), "missing {needle} in\n{text}");
    }

    first.cancel().await;
    assert_eq!(first.final_response(S).await.1.status(), Some(487));
    wait_load(&t, &p, 0).await;
    let mut third = Carrier::new(t.sip(), DID).await;
    third.invite().await;
    slow.expect(Method::Invite, S).await;
    wait_load(&t, &p, 1).await;
    third.cancel().await;
    assert_eq!(third.final_response(S).await.1.status(), Some(487));
}

#[tokio::test]
async fn unknown_and_outbound_only_numbers_are_404() {
    let t = start_edge(|_| {}).await;
    let a = Agent::spawn(Mode::Answer).await;
    let p = t.add_agent("a", &a, 5, AgentStatus::Active).await;
    t.add_number_routing("+14155550111", &p, None).await;

    let mut c = Carrier::new(t.sip(), "+14155550199").await;
    c.invite().await;
    assert_eq!(c.final_response(S).await.1.status(), Some(404));

    let mut c = Carrier::new(t.sip(), "+14155550111").await;
    c.invite().await;
    let (_, fin) = c.final_response(S).await;
    assert_eq!(fin.status(), Some(404));
    let w = fin.header(&HeaderName::Warning).unwrap_or("");
    assert!(w.contains("outbound-only"), "Warning says why: {w}");
    assert!(!a.got(Method::Invite, Duration::from_millis(200)).await);
}

#[tokio::test]
async fn api_patch_changes_where_the_next_invite_goes() {
    let t = start_edge(|_| {}).await;
    let one = Agent::spawn(Mode::Answer).await;
    let two = Agent::spawn(Mode::Answer).await;
    let a1 = t.add_agent("one", &one, 5, AgentStatus::Active).await;
    let a2 = t.add_agent("two", &two, 5, AgentStatus::Active).await;
    let id = t.add_number(DID, &a1, None).await;

    let body = format!("{{\"inbound_routing\": {{\"agent_id\": \"{a2}\"}}}}");
    let (status, resp) = t.http("PATCH", &format!("/v1/phone-numbers/{id}"), Some(&body)).await;
    assert_eq!(status, 200, "{resp}");

    let mut c = Carrier::new(t.sip(), DID).await;
    c.invite().await;
    assert_eq!(c.final_response(S).await.1.status(), Some(200));
    assert!(
        two.got(Method::Invite, S).await,
        "the very next call goes to the new agent"
    );
    assert!(!one.got(Method::Invite, Duration::from_millis(100)).await);
}

#[tokio::test]
async fn operator_sees_health_and_metrics() {
    let t = start_edge(|_| {}).await;
    let a = Agent::spawn(Mode::Answer).await;
    let p = t.add_agent("a", &a, 5, AgentStatus::Active).await;
    t.add_number(DID, &p, None).await;
    let mut c = Carrier::new(t.sip(), DID).await;
    c.invite().await;
    assert_eq!(c.final_response(S).await.1.status(), Some(200));
    let mut c404 = Carrier::new(t.sip(), "+14155550999").await;
    c404.invite().await;
    assert_eq!(c404.final_response(S).await.1.status(), Some(404));

    let (status, body) = t.http("GET", "/healthz", None).await;
    assert_eq!(status, 200);
    assert!(body.contains("\"status\":\"ok\""), "{body}");
    let (status, text) = t.http("GET", "/metrics", None).await;
    assert_eq!(status, 200);
    for needle in [
        "edge_sip_invites_total{carrier=\"loopback\",code=\"200\"}",
        "edge_sip_invites_total{carrier=\"loopback\",code=\"404\"}",
        "edge_calls_total{outcome=\"primary\"}",
        "edge_active_calls",
        &format!("edge_agent_active_calls{{agent_id=\"{p}\"}} 1"),
        "edge_call_setup_seconds_bucket",
    ] {
        assert!(text.contains(needle), "missing {needle} in\n{text}");
    }
}

#[tokio::test]
async fn edge_shutdown_hangs_up_and_releases_agents() {
    let t = start_edge(|_| {}).await;
    let a = Agent::spawn(Mode::Answer).await;
    let ringing = Agent::spawn(Mode::RingForever).await;
    let p = t.add_agent("a", &a, 5, AgentStatus::Active).await;
    let r = t.add_agent("r", &ringing, 5, AgentStatus::Active).await;
    t.add_number(DID, &p, None).await;
    t.add_number("+14155550101", &r, None).await;
    let mut c = Carrier::new(t.sip(), DID).await;
    c.invite().await;
    let (_, ok) = c.final_response(S).await;
    c.ack(&ok).await;
    let mut c2 = Carrier::new(t.sip(), "+14155550101").await;
    c2.invite().await;
    ringing.expect(Method::Invite, S).await;
    wait_load(&t, &p, 1).await;
    wait_load(&t, &r, 1).await;

    let gauge = t.edge.agent_gauge.clone();
    let store = t.edge.store.clone();
    let common::TestEdge { edge, account, .. } = t;
    edge.shutdown().await;
    // Both calls' final records were stored before shutdown returned (the writer drains its queue).
    let page = store
        .list_calls(&account, edge_store::CallFilter::default(), 10, None)
        .await
        .unwrap();
    let mut ended: Vec<_> = page
        .items
        .iter()
        .map(|c| (c.status.as_str(), c.hangup_by, c.ended_at_ms.is_some()))
        .collect();
    ended.sort_by_key(|e| e.0);
    assert_eq!(
        ended,
        [
            ("completed", Some(edge_store::HangupBy::Edge), true),
            ("failed", Some(edge_store::HangupBy::Edge), true)
        ]
    );
    assert!(a.got(Method::Bye, S).await, "the answered agent is hung up");
    c.expect_request(Method::Bye, S).await;
    let (_, fin) = c2.final_response(S).await;
    assert_eq!(
        fin.status(),
        Some(503),
        "a ringing call is refused so the carrier retries elsewhere"
    );
    assert!(fin.header(&HeaderName::RetryAfter).is_some());
    assert_eq!(gauge.get(&p).map(|v| *v), Some(0));
    assert_eq!(gauge.get(&r).map(|v| *v), Some(0));
}

/// Polls `GET /v1/calls?phone_number_id=` until the newest record has a final status.
async fn final_record(t: &common::TestEdge, number_id: &str) -> serde_json::Value {
    for _ in 0..100 {
        let (status, body) = t
            .http("GET", &format!("/v1/calls?phone_number_id={number_id}"), None)
            .await;
        assert_eq!(status, 200, "{body}");
        let v: serde_json::Value = serde_json::from_str(&body).unwrap();
        if let Some(c) = v["data"].as_array().and_then(|d| d.first()) {
            if c["ended_at"].is_string() {
                return c.clone();
            }
        }
        tokio::time::sleep(Duration::from_millis(30)).await;
    }
    panic!("no final call record for {number_id}");
}

#[tokio::test]
async fn call_records_tell_what_happened() {
    let t = start_edge(|_| {}).await;
    let busy = Agent::spawn(Mode::Reject(486)).await;
    let fb = Agent::spawn(Mode::Answer).await;
    let p = t.add_agent("busy", &busy, 5, AgentStatus::Active).await;
    let f = t.add_agent("fallback", &fb, 5, AgentStatus::Active).await;
    let number_id = t.add_number(DID, &p, Some(&f)).await;
    let mut c = Carrier::new(t.sip(), DID).await;
    c.invite().await;
    let (_, ok) = c.final_response(S).await;
    c.ack(&ok).await;
    c.in_dialog("BYE", false).await;
    let rec = final_record(&t, &number_id).await;
    assert!(rec["id"].as_str().unwrap().starts_with("call_"));
    assert_eq!(rec["direction"], "inbound");
    assert_eq!(rec["status"], "completed");
    assert_eq!(rec["carrier"], "loopback");
    assert_eq!(rec["from"], "+12125550000");
    assert_eq!(rec["caller_name"], "Alice Caller");
    assert_eq!(rec["to"], DID);
    assert_eq!(rec["answered_by"], "fallback");
    assert_eq!(rec["agent_id"], f.as_str());
    assert_eq!(rec["hangup_by"], "caller");
    let hops = rec["hops"].as_array().unwrap();
    assert_eq!(hops.len(), 2, "{rec}");
    assert_eq!(hops[0]["route"], "primary");
    assert_eq!(hops[0]["sip_status"], 486);
    assert_eq!(hops[1]["route"], "fallback");
    assert_eq!(hops[1]["sip_status"], 200);
    assert!(rec["answered_at"].is_string());
    let (status, one) = t
        .http("GET", &format!("/v1/calls/{}", rec["id"].as_str().unwrap()), None)
        .await;
    assert_eq!(status, 200);
    assert_eq!(
        serde_json::from_str::<serde_json::Value>(&one).unwrap()["status"],
        "completed"
    );
}

/// Polls `GET /v1/calls?phone_number_id=` until the newest record has `status`; returns it.
async fn record_with_status(t: &common::TestEdge, number_id: &str, status: &str) -> serde_json::Value {
    let mut last = String::new();
    for _ in 0..100 {
        let (code, body) = t
            .http("GET", &format!("/v1/calls?phone_number_id={number_id}"), None)
            .await;
        assert_eq!(code, 200, "{body}");
        let v: serde_json::Value = serde_json::from_str(&body).unwrap();
        if let Some(c) = v["data"].as_array().and_then(|d| d.first()) {
            if c["status"] == status {
                return c.clone();
            }
        }
        last = body;
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("no {status} record for {number_id}: {last}");
}

/// The engine queues a live call's record a moment after it changes (so a call's first steps make one
/// row): the API still shows a ringing call as ringing, and the same row then as answered and ended.
#[tokio::test]
async fn live_calls_show_their_progress_in_the_api() {
    let t = start_edge(|c| c.agent_ring_timeout = Duration::from_secs(10)).await;
    let slow = Agent::spawn(Mode::RingForever).await;
    let p = t.add_agent("slow", &slow, 5, AgentStatus::Active).await;
    let number_id = t.add_number(DID, &p, None).await;
    let mut c = Carrier::new(t.sip(), DID).await;
    c.invite().await;
    slow.expect(Method::Invite, S).await;
    let ringing = record_with_status(&t, &number_id, "ringing").await;
    assert!(ringing["ended_at"].is_null(), "{ringing}");
    assert!(ringing["answered_at"].is_null(), "{ringing}");
    c.cancel().await;
    assert_eq!(c.final_response(S).await.1.status(), Some(487));
    let ended = final_record(&t, &number_id).await;
    assert_eq!(ended["id"], ringing["id"], "one row per call");
    assert_eq!(ended["status"], "canceled");
}

#[tokio::test]
async fn cancelled_and_failed_calls_are_recorded() {
    let t = start_edge(|c| {
        c.agent_ring_timeout = Duration::from_secs(10);
        c.media.enabled = false;
    })
    .await;
    let slow = Agent::spawn(Mode::RingForever).await;
    let busy = Agent::spawn(Mode::Reject(486)).await;
    let s = t.add_agent("slow", &slow, 5, AgentStatus::Active).await;
    let b = t.add_agent("busy", &busy, 5, AgentStatus::Active).await;
    let n1 = t.add_number(DID, &s, None).await;
    let n2 = t.add_number("+14155550102", &b, None).await;

    let mut c = Carrier::new(t.sip(), DID).await;
    c.invite().await;
    slow.expect(Method::Invite, S).await;
    tokio::time::sleep(Duration::from_millis(100)).await;
    c.cancel().await;
    assert_eq!(c.final_response(S).await.1.status(), Some(487));
    let rec = final_record(&t, &n1).await;
    assert_eq!(rec["status"], "canceled");
    assert_eq!(rec["hangup_by"], "caller");

    let mut c = Carrier::new(t.sip(), "+14155550102").await;
    c.invite().await;
    assert_eq!(c.final_response(S).await.1.status(), Some(503));
    let rec = final_record(&t, &n2).await;
    assert_eq!(rec["status"], "busy", "the only agent said busy");
    assert_eq!(rec["sip_status"], 503);
    assert_eq!(rec["hops"][0]["sip_status"], 486);
}

#[tokio::test]
async fn no_agent_available_goes_to_voicemail() {
    let t = start_edge(|_| {}).await;
    let busy = Agent::spawn(Mode::Reject(486)).await;
    let p = t.add_agent("busy", &busy, 5, AgentStatus::Active).await;
    let number_id = t
        .add_number_routing(
            DID,
            &p,
            Some(edge_store::InboundRouting {
                agent_id: Some(p.clone()),
                fallback_agent_id: None,
                voicemail_message: Some("Leave a message.".into()),
                transfer: Default::default(),
            }),
        )
        .await;
    // The caller's media socket: the voicemail greeting must arrive here.
    let rtp = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let sdp = common::SDP.replace("40000", &rtp.local_addr().unwrap().port().to_string());
    let mut c = Carrier::new(t.sip(), DID).await;
    c.send(&c.invite_bytes().replace(common::SDP, &sdp)).await;
    let (_, ok) = c.final_response(S).await;
    assert_eq!(ok.status(), Some(200), "the edge answers for voicemail");
    let answer = String::from_utf8_lossy(ok.body()).into_owned();
    assert!(
        answer.contains("c=IN IP4 127.0.0.1") && answer.contains("PCMU"),
        "{answer}"
    );
    c.ack(&ok).await;
    let mut buf = [0u8; 2048];
    let mut packets = 0;
    while packets < 25 {
        let n = tokio::time::timeout(S, rtp.recv(&mut buf))
            .await
            .expect("greeting RTP")
            .unwrap();
        assert!(n >= 12 + 160, "20 ms G.711 packets");
        assert_eq!(buf[0] >> 6, 2, "RTP version 2");
        packets += 1;
    }
    c.in_dialog("BYE", false).await;
    assert_eq!(c.recv(S).await.unwrap().status(), Some(200));

    // The recording is stored and served.
    let mut vm = None;
    for _ in 0..100 {
        let (_, body) = t
            .http("GET", &format!("/v1/voicemails?phone_number_id={number_id}"), None)
            .await;
        let v: serde_json::Value = serde_json::from_str(&body).unwrap();
        if let Some(first) = v["data"].as_array().and_then(|d| d.first()) {
            vm = Some(first.clone());
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let vm = vm.expect("a voicemail row");
    assert!(vm["id"].as_str().unwrap().starts_with("vm_"));
    assert_eq!(vm["caller"], "+12125550000");
    assert_eq!(vm["ended_by"], "hangup");
    let rec = final_record(&t, &number_id).await;
    assert_eq!(rec["answered_by"], "voicemail");
    assert_eq!(rec["status"], "completed");
    let (status, wav) = t.http("GET", vm["recording_url"].as_str().unwrap(), None).await;
    assert_eq!(status, 200);
    assert!(wav.starts_with("RIFF"), "a WAV file");
}

#[tokio::test]
async fn agent_host_names_are_resolved_and_a_dead_name_fails_over() {
    let ns = common::dns::serve(vec![common::dns::a("agent.test.", [127, 0, 0, 1])]).await;
    let t = start_edge(|c| {
        c.outbound.nameservers = Some(vec![ns]);
        c.outbound.dns_timeout = Duration::from_millis(500);
    })
    .await;
    let agent = Agent::spawn(Mode::Answer).await;
    let new = |name: &str, uri: String| edge_store::NewAgent {
        name: name.into(),
        sip_uri: uri,
        max_concurrent_calls: 5,
        voicemail_message: None,
        status: AgentStatus::Active,
        sip_username: None,
        sip_password: None,
        media_encryption: Default::default(),
    };
    let store = &t.edge.store;
    let gone = store
        .create_agent(&t.account, new("gone", "sip:bot@nowhere.test:5060".into()))
        .await
        .unwrap();
    let named = store
        .create_agent(
            &t.account,
            new("named", format!("sip:bot@agent.test:{}", agent.addr.port())),
        )
        .await
        .unwrap();
    t.add_number(DID, &gone.id, Some(&named.id)).await;

    let mut c = Carrier::new(t.sip(), DID).await;
    c.invite().await;
    let (_, ok) = c.final_response(S).await;
    assert_eq!(ok.status(), Some(200));
    let inv = agent.expect(Method::Invite, S).await;
    assert_eq!(
        inv.request_uri_raw().unwrap(),
        format!("sip:bot@agent.test:{}", agent.addr.port())
    );
    c.ack(&ok).await;
    c.in_dialog("BYE", false).await;
    agent.expect(Method::Bye, S).await;
    // The record (written by the engine's writer task) shows the unresolvable hop, then the fallback.
    let mut body = String::new();
    for _ in 0..100 {
        body = t.http("GET", "/v1/calls", None).await.1;
        if body.contains("\"status\":\"completed\"") {
            break;
        }
        tokio::time::sleep(Duration::from_millis(30)).await;
    }
    assert!(body.contains("unavailable: sip_uri host does not resolve"), "{body}");
    assert!(body.contains("\"answered_by\":\"fallback\""), "{body}");
}

/// Sends one RTP packet (PCMU, `seq`) from `from` to `to`.
async fn send_rtp(from: &tokio::net::UdpSocket, to: std::net::SocketAddr, seq: u16) {
    let mut p = vec![0x80, 0x00];
    p.extend_from_slice(&seq.to_be_bytes());
    p.extend_from_slice(&[0, 0, 0, 160, 0xde, 0xad, 0xbe, 0xef]);
    p.extend_from_slice(&[0xff; 160]);
    from.send_to(&p, to).await.unwrap();
}

/// RTP through the edge both ways: each side sends a packet every 20 ms, as a stream would, until each
/// has heard the other (the first packets may go to the SDP's addresses before both sources latch).
/// Carrier packets carry sequence numbers from 1,000, the agent's below.
async fn rtp_flows_both_ways(
    carrier: &tokio::net::UdpSocket,
    edge_for_carrier: std::net::SocketAddr,
    agent: &tokio::net::UdpSocket,
    edge_for_agent: std::net::SocketAddr,
) {
    let heard = |sock: &tokio::net::UdpSocket, from_carrier: bool| {
        let mut buf = [0u8; 2048];
        let mut got = false;
        while let Ok(n) = sock.try_recv(&mut buf) {
            assert!(n >= 12 && buf[0] >> 6 == 2, "an RTP packet");
            let seq = u16::from_be_bytes([buf[2], buf[3]]);
            assert_eq!(seq >= 1000, from_carrier, "packet {seq} came from the other side");
            got = true;
        }
        got
    };
    let (mut agent_heard, mut carrier_heard) = (false, false);
    for seq in 0..100u16 {
        send_rtp(carrier, edge_for_carrier, 1000 + seq).await;
        send_rtp(agent, edge_for_agent, seq).await;
        tokio::time::sleep(Duration::from_millis(20)).await;
        agent_heard |= heard(agent, true);
        carrier_heard |= heard(carrier, false);
        if agent_heard && carrier_heard {
            return;
        }
    }
    panic!("relayed to the agent: {agent_heard}, to the carrier: {carrier_heard}");
}

/// SIGKILLs this process's `media-worker` children; how many.
fn kill_media_workers() -> usize {
    let me = std::process::id().to_string();
    let mut killed = 0;
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        let Some(pid) = entry.file_name().to_str().and_then(|p| p.parse::<i32>().ok()) else {
            continue;
        };
        let stat = std::fs::read_to_string(entry.path().join("stat")).unwrap_or_default();
        // pid (comm) state ppid ...
        let parent = stat
            .rsplit_once(')')
            .and_then(|(_, rest)| rest.split_whitespace().nth(1));
        let cmdline = std::fs::read(entry.path().join("cmdline")).unwrap_or_default();
        if parent == Some(me.as_str()) && cmdline.split(|&b| b == 0).any(|arg| arg == b"media-worker") {
            let pid = rustix::process::Pid::from_raw(pid).unwrap();
            rustix::process::kill_process(pid, rustix::process::Signal::KILL).unwrap();
            killed += 1;
        }
    }
    killed
}

/// Reads /metrics until `needle` shows, for at most [`S`]: the recorder is shared by every edge of this
/// test binary, and a gauge holds whichever edge wrote it last.
async fn gauge_eventually(t: &common::TestEdge, needle: &str) {
    let deadline = tokio::time::Instant::now() + S;
    loop {
        let (_, text) = t.http("GET", "/metrics", None).await;
        if text.contains(needle) {
            return;
        }
        assert!(tokio::time::Instant::now() < deadline, "missing {needle} in\n{text}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// `media.workers` = 1 with `media.max_sockets` = 4: the first call's relay fills the edge's own
/// ceiling and the second call, instead of a 503, is anchored in a media worker process: RTP flows
/// both ways through ports of the same range, `/metrics` counts the worker's sockets, and when the call
/// ends the worker closes them (the port can be bound again). If the worker dies, its calls are hung up
/// (BYE to both legs) and a new worker takes the next call.
#[tokio::test]
async fn media_past_the_ceiling_runs_in_a_worker_process() {
    let _gauges = MEDIA_GAUGES.lock().await;
    let mut range = (0, 0);
    let t = start_edge(|c| {
        range = c.media.rtp_ports;
        c.media.max_sockets = 4;
        c.media.workers = 1;
        c.media.worker_program = Some(env!("CARGO_BIN_EXE_oneinbox-edge").into());
        c.agent_ring_timeout = Duration::from_secs(10);
    })
    .await;
    let slow = Agent::spawn(Mode::RingForever).await;
    let answers = Agent::spawn(Mode::Answer).await;
    let ps = t.add_agent("slow", &slow, 5, AgentStatus::Active).await;
    let pa = t.add_agent("answers", &answers, 5, AgentStatus::Active).await;
    t.add_number(DID, &ps, None).await;
    const DID2: &str = "+14155550101";
    t.add_number(DID2, &pa, None).await;

    let mut first = Carrier::new(t.sip(), DID).await;
    first.invite().await;
    slow.expect(Method::Invite, S).await;

    let mut second = Carrier::new(t.sip(), DID2).await;
    second.invite().await;
    let (_, ok) = second.final_response(S).await;
    assert_eq!(ok.status(), Some(200), "anchored in the worker, not refused");
    second.ack(&ok).await;
    let to_agent = answers.expect(Method::Invite, S).await;
    let (_, carrier_port) = common::media_of(ok.body());
    let (_, agent_port) = common::media_of(to_agent.body());
    for port in [carrier_port, agent_port] {
        assert!(
            (range.0..=range.1).contains(&port),
            "port {port} from the edge's range {range:?}"
        );
    }
    for needle in ["edge_media_sockets_open 8", "edge_media_workers_up 1"] {
        gauge_eventually(&t, needle).await;
    }

    let carrier_rtp = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let agent_rtp = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let edge_ip = std::net::IpAddr::from([127, 0, 0, 1]);
    rtp_flows_both_ways(
        &carrier_rtp,
        (edge_ip, carrier_port).into(),
        &agent_rtp,
        (edge_ip, agent_port).into(),
    )
    .await;

    second.in_dialog("BYE", false).await;
    assert_eq!(second.recv(S).await.and_then(|m| m.status()), Some(200));
    answers.expect(Method::Bye, S).await;
    let deadline = tokio::time::Instant::now() + S;
    while std::net::UdpSocket::bind((edge_ip, carrier_port)).is_err() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the worker never closed port {carrier_port}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // /metrics is process-wide: another test's edge may have written the gauge last, so read until this
    // edge's own value shows (it writes it on every allocation and release).
    gauge_eventually(&t, "edge_media_sockets_open 4").await;

    // The worker dies under a call: both legs are hung up, as on a media timeout.
    let mut third = Carrier::new(t.sip(), DID2).await;
    third.invite().await;
    let (_, ok) = third.final_response(S).await;
    assert_eq!(ok.status(), Some(200));
    third.ack(&ok).await;
    answers.expect(Method::Invite, S).await;
    assert_eq!(kill_media_workers(), 1, "one media worker runs");
    let bye = third.expect_request(Method::Bye, S).await;
    third.ok(&bye, None).await;
    answers.expect(Method::Bye, S).await;
    let (_, text) = t.http("GET", "/metrics", None).await;
    assert!(text.contains("edge_media_workers_up 0"), "{text}");

    // A second later the next call past the ceiling starts a new worker.
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let mut fourth = Carrier::new(t.sip(), DID2).await;
    fourth.invite().await;
    let (_, ok) = fourth.final_response(S).await;
    assert_eq!(ok.status(), Some(200), "a new worker took the call");
    fourth.ack(&ok).await;
    let (_, text) = t.http("GET", "/metrics", None).await;
    assert!(text.contains("edge_media_workers_up 1"), "{text}");
    fourth.in_dialog("BYE", false).await;
    assert_eq!(fourth.recv(S).await.and_then(|m| m.status()), Some(200));

    first.cancel().await;
    assert_eq!(first.final_response(S).await.1.status(), Some(487));
}

/// `[security] internal_targets` empty: agents whose `sip_uri` is on loopback (written straight into the
/// store, as if a name had been re-pointed after the API accepted it) are never sent an INVITE.
#[tokio::test]
async fn agents_on_internal_addresses_are_not_called_unless_listed() {
    let t = start_edge(|cfg| cfg.security.internal_targets.clear()).await;
    let primary = Agent::spawn(Mode::Answer).await;
    let fallback = Agent::spawn(Mode::Answer).await;
    let p = t.add_agent("inside", &primary, 5, AgentStatus::Active).await;
    let f = t.add_agent("inside-too", &fallback, 5, AgentStatus::Active).await;
    t.add_number(DID, &p, Some(&f)).await;
    let mut c = Carrier::new(t.sip(), DID).await;
    c.invite().await;
    let _ = c.final_response(S).await;
    assert!(!primary.got(Method::Invite, Duration::from_millis(300)).await);
    assert!(!fallback.got(Method::Invite, Duration::from_millis(300)).await);
}

/// Polls `GET /v1/calls?status=failed` until a record shows; returns the newest.
async fn refused_record(t: &common::TestEdge) -> serde_json::Value {
    let mut last = String::new();
    for _ in 0..100 {
        let (code, body) = t.http("GET", "/v1/calls?status=failed", None).await;
        assert_eq!(code, 200, "{body}");
        let v: serde_json::Value = serde_json::from_str(&body).unwrap();
        if let Some(c) = v["data"].as_array().and_then(|d| d.first()) {
            return c.clone();
        }
        last = body;
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("no failed record: {last}");
}

/// Issue 21: a carrier's INVITE the edge refuses leaves a record. An offer with no audio stream gets 488
/// and a `failed` call with that status, why, the dialled number, the caller, the carrier and the node; a
/// retransmission of it adds no row, and an INVITE for a number not served here none at all.
#[tokio::test]
async fn a_refused_carrier_invite_is_recorded() {
    let t = start_edge(|c| c.node_id = "edge-r".into()).await;
    let agent = Agent::spawn(Mode::Answer).await;
    let p = t.add_agent("a", &agent, 5, AgentStatus::Active).await;
    let number_id = t.add_number(DID, &p, None).await;

    let stranger = Carrier::new(t.sip(), "+14155550199").await;
    stranger.invite().await;
    let c = Carrier::new(t.sip(), DID).await;
    // Same length, so Content-Length still holds: video only, nothing the edge relays.
    let video = c
        .invite_bytes()
        .replace("m=audio 40000 RTP/AVP 0 101", "m=video 40000 RTP/AVP 0 101");
    c.send(&video).await;
    let fin = loop {
        let m = c.recv(S).await.expect("an answer to the INVITE");
        if m.status().is_some_and(|s| s >= 200) {
            break m;
        }
    };
    assert_eq!(fin.status(), Some(488));
    c.send(&video).await;

    let rec = refused_record(&t).await;
    assert!(rec["id"].as_str().unwrap().starts_with("call_"), "{rec}");
    assert_eq!(rec["status"], "failed");
    assert_eq!(rec["sip_status"], 488);
    let why = rec["end_reason"].as_str().unwrap();
    assert!(why.starts_with("SDP not acceptable: "), "{rec}");
    assert_eq!(rec["direction"], "inbound");
    assert_eq!(rec["to"], DID);
    assert_eq!(rec["phone_number_id"], number_id.as_str());
    assert_eq!(rec["from"], "+12125550000");
    assert_eq!(rec["carrier"], "loopback");
    assert_eq!(rec["node"], "edge-r");
    assert!(rec["hops"].as_array().unwrap().is_empty());
    assert_eq!(rec["created_at"], rec["ended_at"]);
    assert!(!agent.got(Method::Invite, Duration::from_millis(200)).await);
    let (code, body) = t.http("GET", "/v1/calls", None).await;
    assert_eq!(code, 200);
    let all: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(
        all["data"].as_array().unwrap().len(),
        1,
        "one row: the retransmission rewrote it and the stranger's number made none: {all}"
    );
}

/// Issue 21: records a killed edge left live are closed at its next start, before it takes calls: the
/// ringing call `failed`, the answered one `completed` (hung up by the edge), both "edge restarted" and
/// ended when the node was last seen alive; each names the node.
#[tokio::test]
async fn a_killed_edge_closes_its_live_records_when_it_starts_again() {
    let tweak = |c: &mut oneinbox_edge::config::Config| {
        c.node_id = "edge-k".into();
        c.agent_ring_timeout = Duration::from_secs(30);
    };
    let t = common::start_edge_at(tempfile::tempdir().unwrap(), tweak).await;
    let slow = Agent::spawn(Mode::RingForever).await;
    let answers = Agent::spawn(Mode::Answer).await;
    let ps = t.add_agent("slow", &slow, 5, AgentStatus::Active).await;
    let pa = t.add_agent("answers", &answers, 5, AgentStatus::Active).await;
    let ringing_number = t.add_number(DID, &ps, None).await;
    const DID2: &str = "+14155550101";
    let answered_number = t.add_number(DID2, &pa, None).await;

    let ringing_call = Carrier::new(t.sip(), DID).await;
    ringing_call.invite().await;
    slow.expect(Method::Invite, S).await;
    let ringing = record_with_status(&t, &ringing_number, "ringing").await;
    let mut answered_call = Carrier::new(t.sip(), DID2).await;
    answered_call.invite().await;
    let (_, ok) = answered_call.final_response(S).await;
    assert_eq!(ok.status(), Some(200));
    answered_call.ack(&ok).await;
    let answered = record_with_status(&t, &answered_number, "in-progress").await;
    assert_eq!(ringing["node"], "edge-k");
    assert_eq!(answered["node"], "edge-k");

    let (account, key) = (t.account.clone(), t.api_key.clone());
    let dir = t.kill().await;
    let still = t_store_call(&dir, &account, ringing["id"].as_str().unwrap()).await;
    assert_eq!(
        still.status,
        edge_store::CallStatus::Ringing,
        "killed: nothing was ended"
    );

    let before_restart = edge_store::now_ms();
    let mut t = common::start_edge_at(dir, tweak).await;
    t.account = account;
    t.api_key = key;
    let r = t.final_call(ringing["id"].as_str().unwrap(), S).await;
    assert_eq!(r["status"], "failed", "{r}");
    assert_eq!(r["end_reason"], "edge restarted", "{r}");
    assert!(r["hangup_by"].is_null(), "{r}");
    assert_eq!(r["node"], "edge-k");
    let a = t.final_call(answered["id"].as_str().unwrap(), S).await;
    assert_eq!(a["status"], "completed", "{a}");
    assert_eq!(a["end_reason"], "edge restarted", "{a}");
    assert_eq!(a["hangup_by"], "edge", "{a}");
    assert_eq!(a["answered_at"], answered["answered_at"]);
    // Ended when last seen alive: after the call began, before the restart.
    for (id, rec) in [(&r["id"], &ringing), (&a["id"], &answered)] {
        let stored = t
            .edge
            .store
            .get_call(&t.account, id.as_str().unwrap())
            .await
            .unwrap()
            .unwrap();
        let ended = stored.ended_at_ms.unwrap();
        assert!(
            ended >= stored.created_at_ms && ended <= before_restart,
            "{rec}: ended {ended}, restart {before_restart}"
        );
    }
    let node = t.edge.store.node("edge-k").await.unwrap().unwrap();
    assert!(node.started_at_ms >= before_restart, "{node:?}");
}

/// A call record read straight from the store under `dir` (no edge running).
async fn t_store_call(dir: &tempfile::TempDir, account: &str, id: &str) -> edge_store::CallRecord {
    let cfg = oneinbox_edge::config::Config::for_tests(dir.path());
    let store = oneinbox_edge::server::open_store(&cfg).await.unwrap();
    let rec = store.get_call(account, id).await.unwrap().unwrap();
    store.close().await;
    rec
}

/// Issue 21 with a real `kill -9`: the built binary, killed with SIGKILL while a call rings, leaves the
/// record `ringing` (nothing ran to end it); started again on the same data directory it closes it as
/// "edge restarted", ended no later than the kill.
#[tokio::test]
async fn a_sigkilled_binary_closes_its_live_record_when_it_starts_again() {
    let dir = tempfile::tempdir().unwrap();
    let port = {
        let s = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        s.local_addr().unwrap().port()
    };
    let path = dir.path().join("edge.toml");
    // RTP between start_edge's ranges (20000-32199) and the kernel's ephemeral ports (32768-).
    std::fs::write(
        &path,
        format!(
            "[node]\nid = \"edge-bin\"\n[sip]\nudp = \"127.0.0.1:{port}\"\ntcp = \"off\"\n[api]\nlisten = \"off\"\n\
             [media]\nbind_ip = \"127.0.0.1\"\npublic_ip = \"127.0.0.1\"\nrtp_ports = \"32300-32399\"\n\
             [routing]\nagent_ring_timeout_s = 60\n[storage]\ndata_dir = {:?}\n[log]\nlevel = \"warn\"\n\
             [[carriers]]\nname = \"loopback\"\nallow = [\"127.0.0.0/8\"]\n\
             [security]\ninternal_targets = [\"127.0.0.0/8\"]\n",
            dir.path().join("data").display().to_string()
        ),
    )
    .unwrap();
    let cfg = oneinbox_edge::config::Config::load(&path).unwrap();
    let slow = Agent::spawn(Mode::RingForever).await;
    let (account, number_id) = {
        let store = oneinbox_edge::server::open_store(&cfg).await.unwrap();
        let (account, _) = store.create_api_key(None, "tests").await.unwrap();
        let agent = store
            .create_agent(
                &account,
                edge_store::NewAgent {
                    name: "slow".into(),
                    sip_uri: format!("sip:slow@{}", slow.addr),
                    max_concurrent_calls: 5,
                    voicemail_message: None,
                    status: AgentStatus::Active,
                    sip_username: None,
                    sip_password: None,
                    media_encryption: Default::default(),
                },
            )
            .await
            .unwrap();
        let number = store
            .create_number(
                &account,
                edge_store::NewNumber {
                    phone_number: DID.into(),
                    friendly_name: None,
                    agent_id: agent.id.clone(),
                    provider: edge_store::Provider::Local,
                    source: edge_store::NumberSource::Purchased,
                    provider_ref: None,
                    inbound_routing: Some(edge_store::InboundRouting {
                        agent_id: Some(agent.id),
                        ..Default::default()
                    }),
                    provider_config: None,
                },
            )
            .await
            .unwrap();
        store.close().await;
        (account, number.id)
    };
    let serve = || {
        std::process::Command::new(env!("CARGO_BIN_EXE_oneinbox-edge"))
            .args(["serve", "--config"])
            .arg(&path)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap()
    };
    let store = oneinbox_edge::server::open_store(&cfg).await.unwrap();
    let of_number = edge_store::CallFilter {
        phone_number_id: Some(number_id.clone()),
        ..Default::default()
    };
    let mut first = serve();
    let edge: std::net::SocketAddr = ([127, 0, 0, 1], port).into();
    let c = Carrier::new(edge, DID).await;
    // The binary is up once it answers (the same INVITE again until then: retransmissions).
    let mut up = false;
    for _ in 0..100 {
        c.invite().await;
        if c.recv(Duration::from_millis(100)).await.is_some() {
            up = true;
            break;
        }
    }
    assert!(up, "the edge never answered");
    slow.expect(Method::Invite, S).await;
    let mut ringing = None;
    for _ in 0..100 {
        let got = store
            .list_calls(&account, of_number.clone(), 1, None)
            .await
            .unwrap()
            .items
            .pop();
        if got
            .as_ref()
            .is_some_and(|r| r.status == edge_store::CallStatus::Ringing)
        {
            ringing = got;
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let ringing = ringing.expect("a ringing record");
    assert_eq!(ringing.node.as_deref(), Some("edge-bin"));

    first.kill().unwrap(); // SIGKILL
    first.wait().unwrap();
    let killed_at = edge_store::now_ms();
    let still = store.get_call(&account, &ringing.id).await.unwrap().unwrap();
    assert_eq!(
        still.status,
        edge_store::CallStatus::Ringing,
        "SIGKILL: nothing ended the call"
    );

    let mut second = serve();
    let mut closed = None;
    for _ in 0..250 {
        let r = store.get_call(&account, &ringing.id).await.unwrap().unwrap();
        if r.ended_at_ms.is_some() {
            closed = Some(r);
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    second.kill().unwrap();
    second.wait().unwrap();
    store.close().await;
    let closed = closed.expect("the restarted edge closed the record");
    assert_eq!(closed.status, edge_store::CallStatus::Failed);
    assert_eq!(closed.end_reason.as_deref(), Some("edge restarted"));
    let ended = closed.ended_at_ms.unwrap();
    assert!(
        ended >= closed.created_at_ms && ended <= killed_at,
        "ended {ended}, created {}, killed {killed_at}",
        closed.created_at_ms
    );
}
