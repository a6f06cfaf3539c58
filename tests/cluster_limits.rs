//! Cluster-wide limits on Redis (`[cluster] redis_url`, issue 21 item 5), with two edges in this process
//! sharing one store (the same SQLite file, so both know the same agents and see each other's heartbeat)
//! and the real Redis on 127.0.0.1:6379, under a key prefix of each test's own.

mod common;

use std::path::PathBuf;
use std::sync::atomic::Ordering;
use std::time::Duration;

use common::trunk::{TestTrunk, TrunkMode};
use common::{start_edge, Agent, Carrier, Mode, TestEdge};
use edge_store::{AgentStatus, Provider};
use oneinbox_edge::config::Config;
use sip_core::message::{HeaderName, Message, Method};

const S: Duration = Duration::from_secs(3);
const DID: &str = "+14155550142";
const REDIS: &str = "redis://127.0.0.1:6379";

fn prefix(test: &str) -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    format!("edge-test:{test}:{}:{nanos}:", std::process::id())
}

fn cluster(c: &mut Config, node: &str, url: &str, prefix: &str) {
    c.node_id = node.into();
    c.cluster.redis_url = Some(url.into());
    c.cluster.key_prefix = prefix.into();
    c.cluster.lease_ttl = Duration::from_millis(900);
}

/// Node A, with `setup` run on its store before node B opens the same store (so B's routing index holds
/// what A wrote), then node B, whose API key is for A's account.
async fn two_nodes(
    url: &str,
    prefix: &str,
    tweak: impl Fn(&mut Config) + Clone,
    setup: impl AsyncFnOnce(&TestEdge),
) -> (TestEdge, TestEdge) {
    let mut dir: Option<PathBuf> = None;
    let ta = tweak.clone();
    let a = start_edge(|c| {
        dir = Some(c.data_dir.clone());
        cluster(c, "node-a", url, prefix);
        ta(c);
    })
    .await;
    setup(&a).await;
    let dir = dir.expect("node A's data dir");
    let mut b = start_edge(|c| {
        c.data_dir = dir;
        cluster(c, "node-b", url, prefix);
        tweak(c);
    })
    .await;
    let (account, key) = b.edge.store.create_api_key(Some(&a.account), "node b").await.unwrap();
    b.account = account;
    b.api_key = key;
    (a, b)
}

async fn agent_id(t: &TestEdge, name: &str, agent: &Agent, max: u32) -> String {
    t.add_agent(name, agent, max, AgentStatus::Active).await
}

/// A carrier call on `t`, answered; the agent INVITE's `X-OneInbox-Route` tells who took it.
async fn call(t: &TestEdge) -> Carrier {
    let mut c = Carrier::new(t.sip(), DID).await;
    c.invite().await;
    let (_, ok) = c.final_response(S).await;
    assert_eq!(ok.status(), Some(200), "the call is taken");
    c.ack(&ok).await;
    c
}

fn route(inv: &Message) -> String {
    inv.header(&HeaderName::Other("X-OneInbox-Route".into()))
        .unwrap_or("")
        .to_owned()
}

async fn wait_load(t: &TestEdge, agent: &str, n: u32) {
    for _ in 0..150 {
        if t.edge.agent_load(agent) == n {
            return;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("agent load is {}, want {n}", t.edge.agent_load(agent));
}

async fn wait_redis_up(t: &TestEdge, up: bool) {
    let stats = t.edge.cluster.clone().expect("[cluster] on");
    for _ in 0..200 {
        if (stats.redis_up.load(Ordering::Relaxed) == 1) == up {
            return;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    panic!("Redis up should be {up}");
}

#[tokio::test]
async fn an_agents_limit_holds_across_two_nodes() {
    let p = prefix("agent");
    let primary = Agent::spawn(Mode::Answer).await;
    let fallback = Agent::spawn(Mode::Answer).await;
    let mut ids = (String::new(), String::new());
    let (a, b) = two_nodes(
        REDIS,
        &p,
        |_| {},
        async |a| {
            ids.0 = agent_id(a, "primary", &primary, 2).await;
            ids.1 = agent_id(a, "fallback", &fallback, 10).await;
            a.add_number(DID, &ids.0, Some(&ids.1)).await;
        },
    )
    .await;
    let (pid, fid) = ids;
    wait_redis_up(&a, true).await;
    wait_redis_up(&b, true).await;

    // One call on each node: the primary's two slots, one per node.
    let mut first = call(&a).await;
    assert_eq!(route(&primary.expect(Method::Invite, S).await), "primary");
    let _second = call(&b).await;
    assert_eq!(route(&primary.expect(Method::Invite, S).await), "primary");
    // Each node alone is below 2, yet the cluster is at 2: both nodes send the next calls to the fallback.
    let _third = call(&a).await;
    let inv = fallback.expect(Method::Invite, S).await;
    assert_eq!(route(&inv), "fallback");
    let _fourth = call(&b).await;
    assert_eq!(route(&fallback.expect(Method::Invite, S).await), "fallback");
    assert!(
        !primary.got(Method::Invite, Duration::from_millis(300)).await,
        "never more than 2 calls on the primary across the nodes"
    );
    assert_eq!((a.edge.agent_load(&pid), b.edge.agent_load(&pid)), (1, 1));
    assert_eq!((a.edge.agent_load(&fid), b.edge.agent_load(&fid)), (1, 1));
    // The record says why the primary was skipped.
    let public = inv
        .header(&HeaderName::Other("X-OneInbox-Call-Id".into()))
        .unwrap()
        .to_owned();
    let rec = a.wait_status(&public, "in-progress", S).await;
    assert_eq!(rec["hops"][0]["agent_id"], pid.as_str(), "{rec}");
    assert!(
        rec["hops"][0]["outcome"]
            .as_str()
            .unwrap()
            .contains("at max_concurrent_calls (2)"),
        "{rec}"
    );

    // A call on node A ends: its slot is free for node B at once.
    first.in_dialog("BYE", false).await;
    wait_load(&a, &pid, 0).await;
    let _fifth = call(&b).await;
    assert_eq!(route(&primary.expect(Method::Invite, S).await), "primary");
    assert_eq!(b.edge.agent_load(&pid), 2);
    assert_eq!(
        a.edge
            .cluster
            .as_ref()
            .unwrap()
            .fallback_answers
            .load(Ordering::Relaxed),
        0
    );
}

#[tokio::test]
async fn a_killed_nodes_slots_free_themselves_within_the_lease() {
    let p = prefix("kill");
    let primary = Agent::spawn(Mode::Answer).await;
    let fallback = Agent::spawn(Mode::Answer).await;
    let mut ids = (String::new(), String::new());
    let (a, b) = two_nodes(
        REDIS,
        &p,
        |_| {},
        async |a| {
            ids.0 = agent_id(a, "primary", &primary, 1).await;
            ids.1 = agent_id(a, "fallback", &fallback, 50).await;
            a.add_number(DID, &ids.0, Some(&ids.1)).await;
        },
    )
    .await;
    wait_redis_up(&a, true).await;
    wait_redis_up(&b, true).await;
    let _on_a = call(&a).await;
    assert_eq!(route(&primary.expect(Method::Invite, S).await), "primary");
    let _on_b = call(&b).await;
    assert_eq!(
        route(&fallback.expect(Method::Invite, S).await),
        "fallback",
        "A holds the slot"
    );

    // Node A dies with its call up (no BYE, no release): its lease (900 ms) lapses and B gets the slot.
    let _dir = a.kill().await;
    let killed = tokio::time::Instant::now();
    let mut calls = Vec::new();
    let freed = loop {
        assert!(
            killed.elapsed() < Duration::from_secs(5),
            "the dead node's slot never freed"
        );
        calls.push(call(&b).await);
        tokio::select! {
            inv = primary.expect(Method::Invite, S) => break (inv, killed.elapsed()),
            _ = fallback.expect(Method::Invite, S) => {}
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!(route(&freed.0), "primary");
    assert!(
        freed.1 >= Duration::from_millis(300),
        "not before the lease ran out: {:?}",
        freed.1
    );
    println!("a killed node's slot was free after {:?} (lease 900 ms)", freed.1);
}

#[tokio::test]
async fn a_trunk_paced_at_one_call_a_second_gets_one_a_second_from_two_nodes() {
    let p = prefix("pace");
    let trunk = TestTrunk::spawn(TrunkMode::Reject(486, "Busy Here", None), None).await;
    let agent = Agent::spawn(Mode::Answer).await;
    let mut id = String::new();
    let tweak = |c: &mut Config| {
        c.outbound.twilio_cps = 1.0;
        c.outbound.max_pacing_wait = Duration::from_secs(10);
    };
    let (a, b) = two_nodes(REDIS, &p, tweak, async |a| {
        id = agent_id(a, "bot", &agent, 50).await;
        a.add_byo_number(DID, &id, Provider::Twilio, &trunk.addr.to_string(), None)
            .await;
    })
    .await;
    wait_redis_up(&a, true).await;
    wait_redis_up(&b, true).await;
    let body = format!(r#"{{"from": "{DID}", "to": "+447700900123", "agent_id": "{id}"}}"#);
    for t in [&a, &b, &a, &b, &a, &b] {
        let (code, resp) = t.http("POST", "/v1/calls", Some(&body)).await;
        assert_eq!(code, 201, "{resp}");
    }
    let mut at = Vec::new();
    for _ in 0..6 {
        trunk.expect(Method::Invite, Duration::from_secs(8)).await;
        at.push(tokio::time::Instant::now());
    }
    let gaps: Vec<Duration> = at.windows(2).map(|w| w[1] - w[0]).collect();
    println!("INVITEs to the trunk from two nodes, gaps: {gaps:?}");
    for g in &gaps {
        assert!(*g >= Duration::from_millis(950), "at most 1 call/s in total: {gaps:?}");
    }
    assert!(trunk
        .try_expect(Method::Invite, Duration::from_millis(500))
        .await
        .is_none());
}

#[tokio::test]
async fn without_redis_each_node_takes_its_share_and_recovers_by_itself() {
    let p = prefix("down");
    // A port nothing listens on (for now).
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let url = format!("redis://127.0.0.1:{port}");
    let primary = Agent::spawn(Mode::Answer).await;
    let fallback = Agent::spawn(Mode::Answer).await;
    let mut ids = (String::new(), String::new());
    let (_a, b) = two_nodes(
        &url,
        &p,
        |_| {},
        async |a| {
            ids.0 = agent_id(a, "primary", &primary, 4).await;
            ids.1 = agent_id(a, "fallback", &fallback, 50).await;
            a.add_number(DID, &ids.0, Some(&ids.1)).await;
        },
    )
    .await;
    let pid = ids.0;
    wait_redis_up(&b, false).await;
    // Two live nodes (B counted A's heartbeat at its start): 4 / 2 = 2 calls on the primary from B.
    let mut calls = Vec::new();
    for want in ["primary", "primary"] {
        calls.push(call(&b).await);
        assert_eq!(route(&primary.expect(Method::Invite, S).await), want);
    }
    calls.push(call(&b).await);
    assert_eq!(
        route(&fallback.expect(Method::Invite, S).await),
        "fallback",
        "B's share is 2"
    );
    let stats = b.edge.cluster.clone().unwrap();
    assert!(stats.fallback_answers.load(Ordering::Relaxed) >= 3);

    // Redis comes up on that port: the node reconnects by itself and publishes its calls.
    let mut server = std::process::Command::new("redis-server")
        .args([
            "--port",
            &port.to_string(),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--appendonly",
            "no",
        ])
        .stdout(std::process::Stdio::null())
        .spawn()
        .expect("redis-server (Debian package redis-server)");
    let published = async {
        wait_redis_up(&b, true).await;
        let client = redis::Client::open(url.as_str()).unwrap();
        let mut conn = client.get_multiplexed_async_connection().await.unwrap();
        let fields: std::collections::HashMap<String, u32> = redis::cmd("HGETALL")
            .arg(format!("{p}agent:{pid}"))
            .query_async(&mut conn)
            .await
            .unwrap();
        fields
    }
    .await;
    let _ = server.kill();
    let _ = server.wait();
    assert_eq!(published.len(), 1, "{published:?}");
    let (field, n) = published.into_iter().next().unwrap();
    assert!(field.starts_with("node-b:"), "{field}");
    assert_eq!(n, 2, "node B's two calls on the primary");
}

/// Sends an agent's INVITE to `dest` from `ip` (an agent network); the socket hears the answers.
async fn agent_invite(t: &TestEdge, ip: &str, from: &str, dest: &str) -> tokio::net::UdpSocket {
    let sock = tokio::net::UdpSocket::bind(format!("{ip}:0")).await.unwrap();
    let me = sock.local_addr().unwrap();
    let edge = t.sip();
    let n = me.port();
    let raw = format!(
        "INVITE sip:{dest}@{edge} SIP/2.0\r\nVia: SIP/2.0/UDP {me};branch=z9hG4bKol{n};rport\r\nMax-Forwards: 70\r\n\
         From: <sip:{from}@{me}>;tag=ol{n}\r\nTo: <sip:{dest}@{edge}>\r\nCall-ID: outlim-{n}@{ip}\r\n\
         CSeq: 1 INVITE\r\nContact: <sip:agent@{me}>\r\nContent-Type: application/sdp\r\nContent-Length: {l}\r\n\r\n{sdp}",
        l = common::SDP.len(),
        sdp = common::SDP,
    );
    sock.send_to(raw.as_bytes(), edge).await.unwrap();
    sock
}

/// The final response the agent's socket gets.
async fn final_response(sock: &tokio::net::UdpSocket) -> Message {
    let mut buf = vec![0u8; 65536];
    loop {
        let len = tokio::time::timeout(S, sock.recv(&mut buf))
            .await
            .expect("a final response in time")
            .unwrap();
        let m = common::parse(&buf[..len]);
        if m.status().is_some_and(|c| c >= 200) {
            return m;
        }
    }
}

#[tokio::test]
async fn an_agents_own_outbound_call_is_refused_at_its_limit_across_nodes() {
    let p = prefix("outbound");
    // The trunk rings and never answers: a call to it holds the agent until it is hung up.
    let trunk = TestTrunk::spawn(TrunkMode::Ring, None).await;
    let agent = Agent::spawn(Mode::Answer).await;
    let mut id = String::new();
    let tweak = |c: &mut Config| {
        // Carriers on 127.0.0.1 only: 127.0.0.2 is the agents' network.
        c.carriers = vec![oneinbox_edge::config::Carrier {
            name: "loopback".into(),
            allow: vec!["127.0.0.1/32".parse().unwrap()],
            media_encryption: Default::default(),
        }];
        c.agent_networks = vec![oneinbox_edge::config::AgentNetwork {
            name: "agents".into(),
            allow: vec!["127.0.0.2/32".parse().unwrap()],
        }];
        c.outbound.twilio_cps = 100.0;
    };
    let (a, b) = two_nodes(REDIS, &p, tweak, async |a| {
        id = agent_id(a, "bot", &agent, 1).await;
        a.add_byo_number(DID, &id, Provider::Twilio, &trunk.addr.to_string(), None)
            .await;
    })
    .await;
    wait_redis_up(&a, true).await;
    wait_redis_up(&b, true).await;

    // The agent's one call: through the API of node A (it asks the cluster too, and is granted).
    let body = format!(r#"{{"from": "{DID}", "to": "+447700900123", "agent_id": "{id}"}}"#);
    let (code, held) = a.http("POST", "/v1/calls", Some(&body)).await;
    assert_eq!(code, 201, "{held}");
    trunk.expect(Method::Invite, S).await;
    wait_load(&a, &id, 1).await;
    assert_eq!(b.edge.agent_load(&id), 0);

    // Node B alone has no call on the agent, yet the agent's own call through B is refused as on one node.
    let sock = agent_invite(&b, "127.0.0.2", DID, "+447700900124").await;
    let refused = final_response(&sock).await;
    assert_eq!(refused.status(), Some(486), "{refused:?}");
    let warning = refused.header(&HeaderName::Other("Warning".into())).unwrap_or("");
    assert!(warning.contains("max_concurrent_calls"), "{warning}");
    assert!(
        trunk
            .try_expect(Method::Invite, Duration::from_millis(300))
            .await
            .is_none(),
        "nothing reaches the trunk"
    );
    wait_load(&b, &id, 0).await;

    // The call on A is hung up: B's outbound call goes to the trunk.
    let held: serde_json::Value = serde_json::from_str(&held).unwrap();
    let path = format!("/v1/calls/{}", held["id"].as_str().unwrap());
    let (code, gone) = a.http("DELETE", &path, None).await;
    assert_eq!(code, 200, "{gone}");
    wait_load(&a, &id, 0).await;
    let _sock = agent_invite(&b, "127.0.0.2", DID, "+447700900125").await;
    let inv = trunk.expect(Method::Invite, S).await;
    assert!(inv.request_uri_raw().unwrap_or("").contains("+447700900125"), "{inv:?}");
    wait_load(&b, &id, 1).await;
}
