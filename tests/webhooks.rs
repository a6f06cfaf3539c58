//! Webhooks end to end (issue 22 item 4): a real call through the edge on loopback, a webhook receiver
//! (raw HTTP/1.1 on a loopback TCP socket) that verifies every signature, sees each event once, gets the
//! events queued while it was down once it is back, and those left queued by an edge that was killed from
//! the edge started again on the same data directory; a call transferred through the API sends
//! `call.transferred` naming the target, and a call that ends in voicemail sends `voicemail.recorded`.

mod common;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::{start_edge_at, Agent, Carrier, Mode, TestEdge};
use edge_store::AgentStatus;
use oneinbox_edge::config::Config;
use oneinbox_edge::webhooks::verify;
use sip_core::message::Method;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

const DID: &str = "+14155550100";
const S: Duration = Duration::from_secs(5);

/// One delivery as the receiver saw it.
#[derive(Debug, Clone)]
struct Seen {
    delivery: String,
    event: String,
    body: serde_json::Value,
    signed: bool,
}

/// A webhook receiver: answers 200 to every POST and keeps what it got, checking the signature with the
/// secret set once the webhook exists.
#[derive(Clone, Default)]
struct Receiver {
    secret: Arc<Mutex<String>>,
    seen: Arc<Mutex<Vec<Seen>>>,
}

impl Receiver {
    /// Serves on `addr` until the returned task is aborted (the receiver "goes down").
    async fn serve(&self, addr: SocketAddr) -> tokio::task::JoinHandle<()> {
        let listener = TcpListener::bind(addr).await.unwrap();
        let me = self.clone();
        tokio::spawn(async move {
            let mut conns = tokio::task::JoinSet::new();
            loop {
                let Ok((sock, _)) = listener.accept().await else { return };
                let me = me.clone();
                conns.spawn(async move { me.connection(sock).await });
            }
        })
    }

    async fn connection(&self, mut sock: TcpStream) {
        let mut buf = Vec::new();
        loop {
            let head_end = loop {
                if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                    break i + 4;
                }
                let mut chunk = [0u8; 4096];
                match sock.read(&mut chunk).await {
                    Ok(0) | Err(_) => return,
                    Ok(n) => buf.extend_from_slice(&chunk[..n]),
                }
            };
            let head = String::from_utf8_lossy(&buf[..head_end]).into_owned();
            let header = |name: &str| {
                head.lines().find_map(|l| {
                    l.split_once(':')
                        .filter(|(k, _)| k.eq_ignore_ascii_case(name))
                        .map(|(_, v)| v.trim().to_owned())
                })
            };
            let len: usize = header("content-length").and_then(|v| v.parse().ok()).unwrap_or(0);
            while buf.len() < head_end + len {
                let mut chunk = [0u8; 4096];
                match sock.read(&mut chunk).await {
                    Ok(0) | Err(_) => return,
                    Ok(n) => buf.extend_from_slice(&chunk[..n]),
                }
            }
            let body: Vec<u8> = buf[head_end..head_end + len].to_vec();
            buf.drain(..head_end + len);
            let secret = self.secret.lock().unwrap().clone();
            let now = edge_store::now_ms() / 1000;
            let signed = header("oneinbox-signature").is_some_and(|h| verify(&h, &secret, &body, now, 300));
            self.seen.lock().unwrap().push(Seen {
                delivery: header("oneinbox-delivery").unwrap_or_default(),
                event: header("oneinbox-event").unwrap_or_default(),
                body: serde_json::from_slice(&body).unwrap_or_default(),
                signed,
            });
            if sock
                .write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n")
                .await
                .is_err()
            {
                return;
            }
        }
    }

    fn seen(&self) -> Vec<Seen> {
        self.seen.lock().unwrap().clone()
    }

    /// Waits until `n` deliveries for `call_id` arrived (and a little longer, to catch duplicates).
    async fn wait_for(&self, call_id: &str, n: usize) -> Vec<Seen> {
        let of_call = |s: &Seen| s.body["data"]["call_id"] == call_id;
        for _ in 0..200 {
            if self.seen().iter().filter(|s| of_call(s)).count() >= n {
                tokio::time::sleep(Duration::from_millis(500)).await;
                return self.seen().into_iter().filter(|s| of_call(s)).collect();
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("{call_id}: wanted {n} deliveries, got {:?}", self.seen());
    }
}

/// Quick retries for tests: first retry after 200 ms, at most every 400 ms; attempts time out in 1 s.
fn quick(c: &mut Config) {
    c.webhooks.poll_interval = Duration::from_millis(50);
    c.webhooks.retry_initial = Duration::from_millis(200);
    c.webhooks.retry_max = Duration::from_millis(400);
    c.webhooks.timeout = Duration::from_secs(1);
}

/// Creates a webhook for every event at `addr` through the API; its secret.
async fn create_webhook(t: &TestEdge, addr: SocketAddr) -> (String, String) {
    let body = format!(
        r#"{{"url": "http://{addr}/hooks/oneinbox", "events": ["call.ringing", "call.answered", "call.completed",
            "call.failed", "call.transferred", "voicemail.recorded"]}}"#
    );
    let (status, text) = t.http("POST", "/v1/webhooks", Some(&body)).await;
    assert_eq!(status, 201, "{text}");
    let v: serde_json::Value = serde_json::from_str(&text).unwrap();
    (
        v["id"].as_str().unwrap().to_owned(),
        v["secret"].as_str().unwrap().to_owned(),
    )
}

/// A call answered by the agent and hung up by the caller; its record's id.
async fn answered_call(t: &TestEdge, agent: &Agent) -> String {
    let mut c = Carrier::new(t.sip(), DID).await;
    c.invite().await;
    let (_, ok) = c.final_response(S).await;
    assert_eq!(ok.status(), Some(200));
    let inv = agent.expect(Method::Invite, S).await;
    let call_id = inv
        .header(&sip_core::message::HeaderName::Other("X-OneInbox-Call-Id".into()))
        .unwrap()
        .to_owned();
    c.ack(&ok).await;
    agent.expect(Method::Ack, S).await;
    c.in_dialog("BYE", false).await;
    assert_eq!(c.recv(S).await.unwrap().status(), Some(200));
    agent.expect(Method::Bye, S).await;
    call_id
}

/// Each of the call's events once, every one signed, with its own delivery id.
fn assert_once_each(seen: &[Seen], call_id: &str) {
    let mut types: Vec<&str> = seen.iter().map(|s| s.event.as_str()).collect();
    types.sort_unstable();
    assert_eq!(
        types,
        ["call.answered", "call.completed", "call.ringing"],
        "{call_id}: {seen:?}"
    );
    for s in seen {
        assert!(s.signed, "signature does not verify: {s:?}");
        assert_eq!(s.body["type"], s.event.as_str());
        assert_eq!(
            s.body["id"],
            s.delivery.as_str(),
            "the body's id is the delivery header"
        );
        assert!(s.delivery.starts_with("whd_"));
    }
    let mut ids: Vec<&str> = seen.iter().map(|s| s.delivery.as_str()).collect();
    ids.sort_unstable();
    ids.dedup();
    assert_eq!(ids.len(), seen.len(), "one delivery id each");
    let done = seen.iter().find(|s| s.event == "call.completed").unwrap();
    assert_eq!(done.body["data"]["status"], "completed");
    assert_eq!(done.body["data"]["ended_by"], "caller");
    assert_eq!(done.body["data"]["hops"][0]["outcome"], "answered");
    assert!(done.body["data"]["duration_ms"].is_number());
}

#[tokio::test]
async fn a_real_call_sends_each_event_once_signed() {
    let t = start_edge_at(tempfile::tempdir().unwrap(), quick).await;
    let agent = Agent::spawn(Mode::Answer).await;
    let a = t.add_agent("primary", &agent, 5, AgentStatus::Active).await;
    t.add_number(DID, &a, None).await;
    let rx = Receiver::default();
    let probe = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = probe.local_addr().unwrap();
    drop(probe);
    let server = rx.serve(addr).await;
    let (hook, secret) = create_webhook(&t, addr).await;
    *rx.secret.lock().unwrap() = secret;

    let call_id = answered_call(&t, &agent).await;
    let seen = rx.wait_for(&call_id, 3).await;
    assert_once_each(&seen, &call_id);

    // The API lists them delivered, with the receiver's answer.
    let (status, text) = t.http("GET", &format!("/v1/webhooks/{hook}/deliveries"), None).await;
    assert_eq!(status, 200, "{text}");
    let v: serde_json::Value = serde_json::from_str(&text).unwrap();
    let data = v["data"].as_array().unwrap();
    assert_eq!(data.len(), 3, "{text}");
    for d in data {
        assert_eq!(d["status"], "delivered", "{d}");
        assert_eq!(d["response_code"], 200, "{d}");
        assert_eq!(d["attempts"], 1, "{d}");
    }
    server.abort();
}

#[tokio::test]
async fn events_wait_for_a_receiver_that_is_down_and_survive_an_edge_restart() {
    let t = start_edge_at(tempfile::tempdir().unwrap(), quick).await;
    let agent = Agent::spawn(Mode::Answer).await;
    let a = t.add_agent("primary", &agent, 5, AgentStatus::Active).await;
    t.add_number(DID, &a, None).await;
    let rx = Receiver::default();
    // A port nobody listens on yet: the receiver is down.
    let probe = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = probe.local_addr().unwrap();
    drop(probe);
    let (hook, secret) = create_webhook(&t, addr).await;
    *rx.secret.lock().unwrap() = secret;

    // Down: the first call's events are tried, refused, and kept.
    let first = answered_call(&t, &agent).await;
    let mut tried = false;
    for _ in 0..100 {
        let (_, text) = t.http("GET", &format!("/v1/webhooks/{hook}/deliveries"), None).await;
        let v: serde_json::Value = serde_json::from_str(&text).unwrap();
        let data = v["data"].as_array().unwrap();
        if data.len() == 3 && data.iter().all(|d| d["attempts"].as_i64().unwrap_or(0) >= 2) {
            for d in data {
                assert_eq!(d["status"], "pending", "{d}");
                assert!(d["last_error"].as_str().unwrap().contains("connect"), "{d}");
                assert!(d["response_code"].is_null(), "{d}");
                assert!(d["next_attempt_at"].is_string(), "{d}");
            }
            tried = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(tried, "deliveries were retried while the receiver was down");
    // Back: they arrive, once each.
    let server = rx.serve(addr).await;
    let seen = rx.wait_for(&first, 3).await;
    assert_once_each(&seen, &first);
    server.abort();
    let _ = server.await;

    // Down again; a second call; the edge is killed with its events still queued, then started again on
    // the same data directory, and the receiver comes back.
    let second = answered_call(&t, &agent).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(rx.seen().iter().all(|s| s.body["data"]["call_id"] != second.as_str()));
    let (account, key) = (t.account.clone(), t.api_key.clone());
    let dir = t.kill().await;
    let mut t = start_edge_at(dir, quick).await;
    t.account = account;
    t.api_key = key;
    let server = rx.serve(addr).await;
    let seen = rx.wait_for(&second, 3).await;
    assert_once_each(&seen, &second);
    // Nothing of the first call was sent again.
    let first_again: Vec<Seen> = rx
        .seen()
        .into_iter()
        .filter(|s| s.body["data"]["call_id"] == first.as_str())
        .collect();
    assert_eq!(first_again.len(), 3, "{first_again:?}");
    let by_delivery: HashMap<String, usize> = rx.seen().iter().fold(HashMap::new(), |mut m, s| {
        *m.entry(s.delivery.clone()).or_default() += 1;
        m
    });
    assert!(by_delivery.values().all(|&n| n == 1), "{by_delivery:?}");
    server.abort();
}

/// A receiver serving on a fresh loopback port, with a webhook for every event pointing at it.
async fn receiver_with_webhook(t: &TestEdge) -> (Receiver, tokio::task::JoinHandle<()>) {
    let rx = Receiver::default();
    let probe = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = probe.local_addr().unwrap();
    drop(probe);
    let server = rx.serve(addr).await;
    let (_, secret) = create_webhook(t, addr).await;
    *rx.secret.lock().unwrap() = secret;
    (rx, server)
}

#[tokio::test]
async fn a_transferred_call_sends_call_transferred_once_naming_the_target() {
    let t = start_edge_at(tempfile::tempdir().unwrap(), quick).await;
    let first = Agent::spawn(Mode::Answer).await;
    let target = Agent::spawn(Mode::Answer).await;
    let a = t.add_agent("first", &first, 5, AgentStatus::Active).await;
    let x = t.add_agent("target", &target, 5, AgentStatus::Active).await;
    t.add_number(DID, &a, None).await;
    let (rx, server) = receiver_with_webhook(&t).await;

    // The first agent answers; its controller transfers the caller to the target through the API.
    let mut c = Carrier::new(t.sip(), DID).await;
    c.invite().await;
    let (_, ok) = c.final_response(S).await;
    assert_eq!(ok.status(), Some(200));
    c.ack(&ok).await;
    let inv = first.expect(Method::Invite, S).await;
    let call_id = inv
        .header(&sip_core::message::HeaderName::Other("X-OneInbox-Call-Id".into()))
        .unwrap()
        .to_owned();
    t.wait_status(&call_id, "in-progress", S).await;
    let (code, body) = t
        .http(
            "POST",
            &format!("/v1/calls/{call_id}/transfer"),
            Some(&format!(r#"{{"to":"{x}"}}"#)),
        )
        .await;
    assert_eq!(code, 202, "{body}");
    target.expect(Method::Invite, S).await;
    first.expect(Method::Bye, S).await;
    // The caller hangs up on the target.
    c.in_dialog("BYE", false).await;
    target.expect(Method::Bye, S).await;
    let record = t.final_call(&call_id, S).await;
    assert_eq!(record["status"], "completed", "{record}");

    let seen = rx.wait_for(&call_id, 4).await;
    let mut types: Vec<&str> = seen.iter().map(|s| s.event.as_str()).collect();
    types.sort_unstable();
    assert_eq!(
        types,
        ["call.answered", "call.completed", "call.ringing", "call.transferred"],
        "{seen:?}"
    );
    for s in &seen {
        assert!(s.signed, "signature does not verify: {s:?}");
        assert_eq!(s.body["type"], s.event.as_str());
        assert_eq!(s.body["id"], s.delivery.as_str());
    }
    let moved = seen.iter().find(|s| s.event == "call.transferred").unwrap();
    let hop = &moved.body["data"]["transfer"];
    assert_eq!(hop["route"], "transfer", "{hop}");
    assert_eq!(hop["target"], x.as_str(), "the payload names the target: {hop}");
    assert_eq!(hop["outcome"], "answered", "{hop}");
    let done = seen.iter().find(|s| s.event == "call.completed").unwrap();
    assert_eq!(done.body["data"]["status"], "completed");
    assert_eq!(done.body["data"]["ended_by"], "caller");
    server.abort();
}

/// The API's address as API users reach it, in the voicemail test's `[api] public_url`.
const PUBLIC_API: &str = "https://api.example.test/edge";

#[tokio::test]
async fn a_voicemail_sends_voicemail_recorded_once_with_its_recording() {
    // `[api] public_url`: the event's `recording_url` is absolute under it, so the receiver can fetch it.
    let t = start_edge_at(tempfile::tempdir().unwrap(), |c| {
        quick(c);
        c.public_api_url = Some(PUBLIC_API.into());
    })
    .await;
    let busy = Agent::spawn(Mode::Reject(486)).await;
    let down = Agent::spawn(Mode::Reject(503)).await;
    let p = t.add_agent("busy", &busy, 5, AgentStatus::Active).await;
    let f = t.add_agent("down", &down, 5, AgentStatus::Active).await;
    let number_id = t
        .add_number_routing(
            DID,
            &p,
            Some(edge_store::InboundRouting {
                agent_id: Some(p.clone()),
                fallback_agent_id: Some(f.clone()),
                voicemail_message: Some("Leave a message.".into()),
                transfer: Default::default(),
            }),
        )
        .await;
    let (rx, server) = receiver_with_webhook(&t).await;

    // The caller's media: it hears the greeting, speaks for half a second, and hangs up.
    let rtp = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let sdp = common::SDP.replace("40000", &rtp.local_addr().unwrap().port().to_string());
    let mut c = Carrier::new(t.sip(), DID).await;
    c.send(&c.invite_bytes().replace(common::SDP, &sdp)).await;
    let (_, ok) = c.final_response(S).await;
    assert_eq!(ok.status(), Some(200), "the edge answers for voicemail");
    c.ack(&ok).await;
    let answer = String::from_utf8_lossy(ok.body()).into_owned();
    let port: u16 = answer
        .lines()
        .find_map(|l| l.strip_prefix("m=audio "))
        .and_then(|l| l.split(' ').next())
        .and_then(|p| p.parse().ok())
        .expect("the edge's media port");
    let edge_media: SocketAddr = ([127, 0, 0, 1], port).into();
    // The edge records once its prompt (greeting, then a 1 kHz beep) has played: wait for the beep (a
    // payload repeating every 8 samples), then for the silence after it.
    let mut buf = [0u8; 2048];
    let mut beeped = false;
    loop {
        let n = tokio::time::timeout(S, rtp.recv(&mut buf))
            .await
            .expect("greeting RTP")
            .unwrap();
        let payload = &buf[12..n];
        let silent = payload.iter().all(|&b| b == 0xff);
        if beeped && silent {
            break;
        }
        let periodic = payload.len() > 8
            && (0..payload.len() - 8).filter(|&i| payload[i] == payload[i + 8]).count() * 10 >= (payload.len() - 8) * 9;
        beeped |= !silent && periodic;
    }
    for seq in 0..25u16 {
        let mut p = vec![0x80, 0x00];
        p.extend_from_slice(&seq.to_be_bytes());
        p.extend_from_slice(&(u32::from(seq) * 160).to_be_bytes());
        p.extend_from_slice(&[0xde, 0xad, 0xbe, 0xef]);
        p.extend_from_slice(&[0x55; 160]);
        rtp.send_to(&p, edge_media).await.unwrap();
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    c.in_dialog("BYE", false).await;
    assert_eq!(c.recv(S).await.unwrap().status(), Some(200));

    // The stored voicemail, as the API lists it.
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
    let vm_id = vm["id"].as_str().unwrap();

    // Its event arrives once, signed, with the recording's id and URL; the call's own event is
    // `call.completed`, answered by voicemail (no `call.answered`: no agent answered).
    for _ in 0..200 {
        if rx.seen().len() >= 2 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    let mut types: Vec<String> = rx.seen().into_iter().map(|s| s.event).collect();
    types.sort_unstable();
    assert_eq!(types, ["call.completed", "voicemail.recorded"], "{:?}", rx.seen());
    let done = rx.seen().into_iter().find(|s| s.event == "call.completed").unwrap();
    assert_eq!(done.body["data"]["answered_by"], "voicemail", "{done:?}");
    let got: Vec<Seen> = rx
        .seen()
        .into_iter()
        .filter(|s| s.event == "voicemail.recorded")
        .collect();
    assert_eq!(got[0].body["data"]["call_id"], done.body["data"]["call_id"], "{got:?}");
    let e = &got[0];
    assert!(e.signed, "signature does not verify: {e:?}");
    assert_eq!(e.body["type"], "voicemail.recorded");
    assert_eq!(e.body["id"], e.delivery.as_str());
    let d = &e.body["data"];
    assert_eq!(d["voicemail_id"], vm_id, "{d}");
    assert_eq!(d["phone_number_id"], number_id.as_str(), "{d}");
    assert_eq!(d["caller"], "+12125550000", "{d}");
    let url = d["recording_url"].as_str().unwrap_or_default();
    assert_eq!(url, format!("{PUBLIC_API}/v1/voicemails/{vm_id}/recording"), "{d}");
    let path = url.strip_prefix(PUBLIC_API).unwrap_or_default();
    assert_eq!(
        path, vm["recording_url"],
        "the API lists the same recording, by its path"
    );
    let ms = d["duration_ms"].as_i64().unwrap_or(0);
    assert!((400..=2000).contains(&ms), "the caller's half second was recorded: {d}");
    assert_eq!(d["duration_ms"], vm["duration_ms"], "{d} {vm}");
    let (status, wav) = t.http("GET", path, None).await;
    assert_eq!(status, 200);
    assert!(wav.starts_with("RIFF"), "a WAV file");
    // Every delivery was signed, and no delivery came twice.
    assert!(rx.seen().iter().all(|s| s.signed), "{:?}", rx.seen());
    let mut ids: Vec<String> = rx.seen().into_iter().map(|s| s.delivery).collect();
    let n = ids.len();
    ids.sort_unstable();
    ids.dedup();
    assert_eq!(ids.len(), n, "{:?}", rx.seen());
    server.abort();
}
