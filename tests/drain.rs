//! Drain (issue 21, item 2) on loopback: what a draining edge answers new calls and OPTIONS, that calls in
//! progress finish normally, and that at the drain's end the calls left get BYE on both legs,
//! retransmitted (RFC 3261 Timer E) to a carrier that does not answer, until Timer F.

mod common;

use std::time::Duration;

use common::{start_edge, Agent, Carrier, Mode};
use edge_store::AgentStatus;
use sip_core::message::{HeaderName, Method};

const S: Duration = Duration::from_secs(3);
const DID: &str = "+14155550100";

/// A carrier call answered by the agent and acknowledged; returns the carrier and the public call id.
async fn answered_call(t: &common::TestEdge, agent: &Agent) -> (Carrier, String) {
    let mut c = Carrier::new(t.sip(), DID).await;
    c.invite().await;
    let (_, ok) = c.final_response(S).await;
    assert_eq!(ok.status(), Some(200));
    c.ack(&ok).await;
    let inv = agent.expect(Method::Invite, S).await;
    agent.expect(Method::Ack, S).await;
    let id = inv
        .header(&HeaderName::Other("X-OneInbox-Call-Id".into()))
        .unwrap()
        .to_owned();
    (c, id)
}

/// `GET /healthz`: status code and body.
async fn healthz(api: std::net::SocketAddr) -> (u16, serde_json::Value) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    // Not listening (yet, or any more): status 0.
    let Ok(mut s) = tokio::net::TcpStream::connect(api).await else {
        return (0, serde_json::Value::Null);
    };
    s.write_all(b"GET /healthz HTTP/1.1\r\nHost: edge\r\nConnection: close\r\n\r\n")
        .await
        .unwrap();
    let mut out = Vec::new();
    s.read_to_end(&mut out).await.unwrap();
    let text = String::from_utf8_lossy(&out).into_owned();
    let code = text.get(9..12).and_then(|c| c.parse().ok()).unwrap_or(0);
    let body = text.split_once("\r\n\r\n").map(|(_, b)| b).unwrap_or("");
    (code, serde_json::from_str(body).unwrap_or_default())
}

/// An out-of-dialog OPTIONS from a fresh socket (a carrier's health check); the answer's status.
async fn options(edge: std::net::SocketAddr) -> (u16, Option<String>) {
    let sock = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let me = sock.local_addr().unwrap();
    let raw = format!(
        "OPTIONS sip:{edge} SIP/2.0\r\nVia: SIP/2.0/UDP {me};branch=z9hG4bKping{p};rport\r\nMax-Forwards: 70\r\n\
         From: <sip:ping@{me}>;tag=p{p}\r\nTo: <sip:{edge}>\r\nCall-ID: ping{p}@{me}\r\nCSeq: 1 OPTIONS\r\n\
         Content-Length: 0\r\n\r\n",
        p = me.port()
    );
    sock.send_to(raw.as_bytes(), edge).await.unwrap();
    let mut buf = vec![0u8; 65536];
    let n = tokio::time::timeout(S, sock.recv(&mut buf)).await.unwrap().unwrap();
    let m = common::parse(&buf[..n]);
    (
        m.status().unwrap(),
        m.header(&HeaderName::Other("Retry-After".into())).map(str::to_owned),
    )
}

#[tokio::test]
async fn draining_refuses_new_calls_and_options_and_lets_calls_finish() {
    let t = start_edge(|_| {}).await;
    let agent = Agent::spawn(Mode::Answer).await;
    let a = t.add_agent("agent", &agent, 5, AgentStatus::Active).await;
    t.add_number(DID, &a, None).await;
    let (mut c, id) = answered_call(&t, &agent).await;
    assert_eq!(
        options(t.sip()).await.0,
        200,
        "before the drain OPTIONS is answered 200"
    );

    let sip = t.sip();
    let (edge, account, _dir) = t.split();
    let (store, api) = (edge.store.clone(), edge.api.unwrap());
    let started = tokio::time::Instant::now();
    let drain = tokio::spawn(edge.drain(Duration::from_secs(60)));

    // /healthz says so at once: a load balancer takes the node out.
    let mut health = healthz(api).await;
    for _ in 0..100 {
        if health.0 == 503 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
        health = healthz(api).await;
    }
    assert_eq!(health.0, 503, "{:?}", health.1);
    assert_eq!(health.1["status"], "draining");
    assert_eq!(health.1["draining"], true);
    assert_eq!(health.1["active_calls"], 1);

    // A new call: 503 with Retry-After, so the carrier tries its next origination URI.
    let mut refused = Carrier::new(sip, DID).await;
    refused.invite().await;
    let (_, answer) = refused.final_response(S).await;
    assert_eq!(answer.status(), Some(503));
    assert!(
        answer.header(&HeaderName::Other("Retry-After".into())).is_some(),
        "503 without Retry-After"
    );
    refused.ack(&answer).await;
    // The carriers' health checks: 503 too.
    let (code, retry_after) = options(sip).await;
    assert_eq!(code, 503);
    assert!(retry_after.is_some());

    // The call in progress goes on and ends normally; then the edge stops by itself, long before 60 s.
    c.in_dialog("BYE", false).await;
    assert_eq!(c.recv(S).await.expect("200 to BYE").status(), Some(200));
    agent.expect(Method::Bye, S).await;
    tokio::time::timeout(Duration::from_secs(10), drain)
        .await
        .expect("the edge stops once no call is left")
        .unwrap();
    assert!(started.elapsed() < Duration::from_secs(10));
    let rec = store.get_call(&account, &id).await.unwrap().expect("record");
    assert_eq!(rec.status.as_str(), "completed");
    assert_eq!(rec.end_reason.as_deref(), Some("caller hung up"));
}

#[tokio::test]
async fn at_the_drain_timeout_calls_get_bye_on_both_legs_retransmitted_until_timer_f() {
    // T1 = 50 ms: Timer E fires at 50, 100, 200, ... ms and Timer F ends the BYE at 3.2 s.
    let t = start_edge(|c| c.sip.t1 = Duration::from_millis(50)).await;
    let agent = Agent::spawn(Mode::Answer).await;
    let a = t.add_agent("agent", &agent, 5, AgentStatus::Active).await;
    t.add_number(DID, &a, None).await;
    let (c, id) = answered_call(&t, &agent).await;

    let (edge, account, _dir) = t.split();
    let store = edge.store.clone();
    let drain = tokio::spawn(edge.drain(Duration::from_millis(300)));

    // The agent answers its BYE; the carrier (this socket) answers nothing and counts what it gets.
    let to_agent = agent.expect(Method::Bye, S).await;
    let reason = to_agent.header(&HeaderName::Other("Reason".into())).unwrap_or("");
    assert!(reason.contains("edge drained"), "Reason: {reason}");
    let first = c.expect_request(Method::Bye, S).await;
    let branch = first.vias().unwrap()[0].branch().unwrap().to_owned();
    let mut byes = 1;
    let until = tokio::time::Instant::now() + Duration::from_secs(5);
    while let Some(m) = c
        .recv(until.saturating_duration_since(tokio::time::Instant::now()))
        .await
    {
        if m.method() == Some(&Method::Bye) {
            assert_eq!(
                m.vias().unwrap()[0].branch(),
                Some(branch.as_str()),
                "a retransmission, not a new BYE"
            );
            byes += 1;
        }
    }
    // Sent at 0, 50, 150, 350, 750, 1550 and 3150 ms: 7 in all before Timer F (3.2 s).
    assert!((5..=8).contains(&byes), "{byes} BYEs to the silent carrier");
    tokio::time::timeout(Duration::from_secs(5), drain)
        .await
        .expect("the edge stops after Timer F")
        .unwrap();
    let rec = store.get_call(&account, &id).await.unwrap().expect("record");
    assert_eq!(rec.status.as_str(), "completed");
    assert_eq!(rec.end_reason.as_deref(), Some("edge drained"));
    assert_eq!(rec.hangup_by.map(|h| h.as_str()), Some("edge"));
}

#[tokio::test]
async fn a_second_signal_ends_the_drain_at_once() {
    let t = start_edge(|_| {}).await;
    let agent = Agent::spawn(Mode::Answer).await;
    let a = t.add_agent("agent", &agent, 5, AgentStatus::Active).await;
    t.add_number(DID, &a, None).await;
    let (c, id) = answered_call(&t, &agent).await;

    let (edge, account, _dir) = t.split();
    let store = edge.store.clone();
    let (hurry, hurried) = tokio::sync::oneshot::channel::<()>();
    let drain = tokio::spawn(edge.drain_until(Duration::from_secs(300), async move {
        let _ = hurried.await;
    }));
    // Draining, the call stays up.
    assert!(!agent.got(Method::Bye, Duration::from_millis(500)).await);
    let started = tokio::time::Instant::now();
    hurry.send(()).unwrap();
    agent.expect(Method::Bye, S).await;
    let bye = c.expect_request(Method::Bye, S).await;
    c.ok(&bye, None).await;
    tokio::time::timeout(S, drain).await.expect("stopped at once").unwrap();
    assert!(started.elapsed() < S);
    let rec = store.get_call(&account, &id).await.unwrap().expect("record");
    assert_eq!(rec.end_reason.as_deref(), Some("edge drained"));
}

/// The binary itself: SIGTERM starts the drain (the call stays up, /healthz says draining), a second
/// SIGTERM ends it at once (BYE on both legs), and the process exits 0 with the record closed.
#[tokio::test]
async fn the_binary_drains_on_sigterm_and_a_second_sigterm_ends_the_calls() {
    use edge_store::{InboundRouting, NewAgent, NewNumber, NumberSource, Provider};
    use oneinbox_edge::config::Config;
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("edge.toml");
    let free = |udp: bool| {
        if udp {
            std::net::UdpSocket::bind("127.0.0.1:0").unwrap().local_addr().unwrap()
        } else {
            std::net::TcpListener::bind("127.0.0.1:0")
                .unwrap()
                .local_addr()
                .unwrap()
        }
    };
    let (sip, api) = (free(true), free(false));
    std::fs::write(
        &file,
        format!(
            "[sip]\nudp = \"{sip}\"\ntcp = \"off\"\n[api]\nlisten = \"{api}\"\n\
             [media]\nbind_ip = \"127.0.0.1\"\npublic_ip = \"127.0.0.1\"\nrtp_ports = \"31600-31699\"\n\
             [storage]\ndata_dir = {:?}\n[security]\ninternal_targets = [\"127.0.0.0/8\"]\n\
             [[carriers]]\nname = \"loopback\"\nallow = [\"127.0.0.0/8\"]\n[shutdown]\ndrain_timeout_s = 300\n",
            dir.path().display().to_string()
        ),
    )
    .unwrap();
    // The agent and its number, written to the store before the edge starts.
    let agent = Agent::spawn(Mode::Answer).await;
    let cfg = Config::load(&file).unwrap();
    let store = oneinbox_edge::server::open_store(&cfg).await.unwrap();
    let (account, _) = store.create_api_key(None, "tests").await.unwrap();
    let a = store
        .create_agent(
            &account,
            NewAgent {
                name: "agent".into(),
                sip_uri: format!("sip:agent@{}", agent.addr),
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
    store
        .create_number(
            &account,
            NewNumber {
                phone_number: DID.into(),
                friendly_name: None,
                agent_id: a.id.clone(),
                provider: Provider::Local,
                source: NumberSource::Purchased,
                provider_ref: None,
                inbound_routing: Some(InboundRouting {
                    agent_id: Some(a.id.clone()),
                    fallback_agent_id: None,
                    voicemail_message: None,
                    transfer: Default::default(),
                }),
                provider_config: None,
            },
        )
        .await
        .unwrap();
    store.close().await;

    let mut edge = tokio::process::Command::new(env!("CARGO_BIN_EXE_oneinbox-edge"))
        .args(["serve", "--config"])
        .arg(&file)
        .env("RUST_LOG", "warn")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let pid = rustix::process::Pid::from_raw(edge.id().unwrap() as i32).unwrap();
    let mut up = false;
    for _ in 0..200 {
        if healthz(api).await.0 == 200 {
            up = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(up, "edge did not start");

    let mut c = Carrier::new(sip, DID).await;
    c.invite().await;
    let (_, ok) = c.final_response(S).await;
    assert_eq!(ok.status(), Some(200));
    c.ack(&ok).await;
    let inv = agent.expect(Method::Invite, S).await;
    let id = inv
        .header(&HeaderName::Other("X-OneInbox-Call-Id".into()))
        .unwrap()
        .to_owned();
    agent.expect(Method::Ack, S).await;

    // First SIGTERM: draining, the call stays up.
    rustix::process::kill_process(pid, rustix::process::Signal::TERM).unwrap();
    let mut draining = false;
    for _ in 0..100 {
        if healthz(api).await.1["status"] == "draining" {
            draining = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(draining, "/healthz does not say draining");
    assert!(!agent.got(Method::Bye, Duration::from_millis(300)).await);
    assert!(edge.try_wait().unwrap().is_none(), "the edge left with a call up");

    // Second SIGTERM: the call is ended now, and the process exits.
    rustix::process::kill_process(pid, rustix::process::Signal::TERM).unwrap();
    agent.expect(Method::Bye, S).await;
    let bye = c.expect_request(Method::Bye, S).await;
    c.ok(&bye, None).await;
    let status = tokio::time::timeout(Duration::from_secs(10), edge.wait())
        .await
        .expect("exited after the second SIGTERM")
        .unwrap();
    assert!(status.success(), "{status}");
    let store = oneinbox_edge::server::open_store(&cfg).await.unwrap();
    let rec = store.get_call(&account, &id).await.unwrap().expect("record");
    assert_eq!(rec.status.as_str(), "completed");
    assert_eq!(rec.end_reason.as_deref(), Some("edge drained"));
}
