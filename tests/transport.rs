//! Transport behaviour a carrier's engineer checks: TCP keep-alive, framing limits, connection caps, idle
//! close, symmetric responses with received/rport, the carrier allow list, and overload answers. TCP
//! budgets: strangers (127.0.1.x here) and agent networks cannot take the carriers' reserved slots,
//! strangers have caps of their own, and a connection that says nothing in SIP is closed in time.

mod common;

use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::Ordering;
use std::time::Duration;

use common::{parse, start_edge};
use oneinbox_edge::config::UnknownSource;
use sip_core::message::HeaderName;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream, UdpSocket};

fn options(me: std::net::SocketAddr, n: u32, transport: &str) -> String {
    format!(
        "OPTIONS sip:edge SIP/2.0\r\nVia: SIP/2.0/{transport} {me};branch=z9hG4bKopt{n};rport\r\nMax-Forwards: 70\r\n\
         From: <sip:probe@{me}>;tag=p{n}\r\nTo: <sip:edge>\r\nCall-ID: opt-{n}@test\r\nCSeq: 1 OPTIONS\r\n\
         Content-Length: 0\r\n\r\n"
    )
}

async fn read_some(s: &mut TcpStream, wait: Duration) -> Option<Vec<u8>> {
    let mut buf = vec![0u8; 8192];
    match tokio::time::timeout(wait, s.read(&mut buf)).await {
        Ok(Ok(0)) | Ok(Err(_)) => None,
        Ok(Ok(n)) => Some(buf[..n].to_vec()),
        Err(_) => Some(Vec::new()),
    }
}

#[tokio::test]
async fn udp_answers_go_to_the_source_with_received_and_rport() {
    let t = start_edge(|_| {}).await;
    let sock = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let me = sock.local_addr().unwrap();
    sock.send_to(options(me, 1, "UDP").as_bytes(), t.sip()).await.unwrap();
    let mut buf = vec![0u8; 4096];
    let n = tokio::time::timeout(Duration::from_secs(2), sock.recv(&mut buf))
        .await
        .unwrap()
        .unwrap();
    let r = parse(&buf[..n]);
    assert_eq!(r.status(), Some(200));
    let via = r.top_via().unwrap();
    assert_eq!(via.received(), Some("127.0.0.1"));
    assert_eq!(via.rport(), Some(Some(me.port())));
    for h in [HeaderName::Allow, HeaderName::Accept, HeaderName::Supported] {
        assert!(r.header(&h).is_some(), "OPTIONS answer carries {h:?}");
    }
}

#[tokio::test]
async fn tcp_keepalive_and_same_connection_answers() {
    let t = start_edge(|_| {}).await;
    let mut s = TcpStream::connect(t.edge.sip_tcp.unwrap()).await.unwrap();
    let me = s.local_addr().unwrap();
    // RFC 5626: a double-CRLF ping gets a single-CRLF pong.
    s.write_all(b"\r\n\r\n").await.unwrap();
    assert_eq!(read_some(&mut s, Duration::from_secs(2)).await.unwrap(), b"\r\n");
    // A request split across writes is framed and answered on this connection.
    let req = options(me, 2, "TCP");
    let (a, b) = req.split_at(40);
    s.write_all(a.as_bytes()).await.unwrap();
    tokio::time::sleep(Duration::from_millis(50)).await;
    s.write_all(b.as_bytes()).await.unwrap();
    let got = read_some(&mut s, Duration::from_secs(2)).await.unwrap();
    assert_eq!(parse(&got).status(), Some(200));
}

/// Several messages in one read that together exceed `sip.max_message_size` (each one far below it) are all
/// answered: the reader takes no more than the framer can hold. It used to read up to 16 KiB at once, so the
/// framer dropped the bytes past its limit and the carrier's connection was closed as "message too large".
#[tokio::test]
async fn tcp_pipelined_messages_beyond_the_size_limit_are_all_answered() {
    let t = start_edge(|c| c.sip.max_message_size = 1_500).await;
    let mut s = TcpStream::connect(t.edge.sip_tcp.unwrap()).await.unwrap();
    let me = s.local_addr().unwrap();
    let burst: String = (0..24).map(|n| options(me, 100 + n, "TCP")).collect();
    assert!(
        burst.len() > 3 * 1_500,
        "the burst is well past the limit: {}",
        burst.len()
    );
    s.write_all(burst.as_bytes()).await.unwrap();
    let mut got = Vec::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(3);
    while count(&got, b"SIP/2.0 200 ") < 24 && tokio::time::Instant::now() < deadline {
        match read_some(&mut s, Duration::from_millis(500)).await {
            Some(b) => got.extend_from_slice(&b),
            None => break,
        }
    }
    assert_eq!(count(&got, b"SIP/2.0 200 "), 24, "{}", String::from_utf8_lossy(&got));
    // The connection is still open and served.
    s.write_all(options(me, 200, "TCP").as_bytes()).await.unwrap();
    let next = read_some(&mut s, Duration::from_secs(2))
        .await
        .expect("connection still open");
    assert_eq!(parse(&next).status(), Some(200));
}

fn count(hay: &[u8], needle: &[u8]) -> usize {
    hay.windows(needle.len()).filter(|w| *w == needle).count()
}

#[tokio::test]
async fn tcp_flood_without_blank_line_is_cut_off() {
    let t = start_edge(|_| {}).await;
    let mut s = TcpStream::connect(t.edge.sip_tcp.unwrap()).await.unwrap();
    let junk = vec![b'a'; 16 * 1024];
    let mut closed = false;
    // Far more than the 64 KiB message cap; the edge must close rather than buffer it all.
    for _ in 0..64 {
        if s.write_all(&junk).await.is_err() {
            closed = true;
            break;
        }
    }
    if !closed {
        closed = read_some(&mut s, Duration::from_secs(2)).await.is_none();
    }
    assert!(closed, "the edge closed the flooding connection");
    // And it still serves others.
    let sock = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let me = sock.local_addr().unwrap();
    sock.send_to(options(me, 3, "UDP").as_bytes(), t.sip()).await.unwrap();
    let mut buf = vec![0u8; 4096];
    let n = tokio::time::timeout(Duration::from_secs(2), sock.recv(&mut buf))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(parse(&buf[..n]).status(), Some(200));
}

#[tokio::test]
async fn tcp_connections_per_source_are_capped() {
    let t = start_edge(|c| c.sip.tcp_max_connections_per_ip = 3).await;
    let addr = t.edge.sip_tcp.unwrap();
    let mut kept = Vec::new();
    for _ in 0..3 {
        kept.push(TcpStream::connect(addr).await.unwrap());
    }
    tokio::time::sleep(Duration::from_millis(100)).await;
    let mut fourth = TcpStream::connect(addr).await.unwrap();
    assert!(
        read_some(&mut fourth, Duration::from_secs(2)).await.is_none(),
        "the fourth is closed at once"
    );
    // The admitted ones still work.
    let me = kept[0].local_addr().unwrap();
    kept[0].write_all(options(me, 4, "TCP").as_bytes()).await.unwrap();
    let got = read_some(&mut kept[0], Duration::from_secs(2)).await.unwrap();
    assert_eq!(parse(&got).status(), Some(200));
}

#[tokio::test]
async fn idle_tcp_connections_are_closed() {
    let t = start_edge(|c| c.sip.tcp_idle_timeout = Duration::from_millis(300)).await;
    let mut s = TcpStream::connect(t.edge.sip_tcp.unwrap()).await.unwrap();
    let started = std::time::Instant::now();
    assert!(read_some(&mut s, Duration::from_secs(3)).await.is_none());
    assert!(started.elapsed() >= Duration::from_millis(250));
}

#[tokio::test]
async fn unknown_sources_get_403_or_silence() {
    for (mode, want) in [(UnknownSource::Reject, Some(403)), (UnknownSource::Drop, None)] {
        let t = start_edge(|c| {
            c.carriers = vec![oneinbox_edge::config::Carrier {
                name: "twilio".into(),
                allow: vec!["54.172.60.0/30".parse().unwrap()],
                media_encryption: Default::default(),
            }];
            c.unknown_source = mode;
        })
        .await;
        let sock = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let me = sock.local_addr().unwrap();
        sock.send_to(options(me, 5, "UDP").as_bytes(), t.sip()).await.unwrap();
        let mut buf = vec![0u8; 4096];
        let got = match tokio::time::timeout(Duration::from_millis(500), sock.recv(&mut buf)).await {
            Ok(Ok(n)) => parse(&buf[..n]).status(),
            _ => None,
        };
        assert_eq!(got, want, "{mode:?}");
    }
}

#[tokio::test]
async fn full_transaction_table_answers_503_with_retry_after() {
    let t = start_edge(|c| c.sip.max_transactions = 100).await;
    let sock = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let me = sock.local_addr().unwrap();
    // Each answered OPTIONS keeps its transaction (Timer J) so that retransmissions are absorbed.
    let mut codes = Vec::new();
    let mut buf = vec![0u8; 4096];
    for n in 0..120 {
        sock.send_to(options(me, 100 + n, "UDP").as_bytes(), t.sip())
            .await
            .unwrap();
        let k = tokio::time::timeout(Duration::from_secs(2), sock.recv(&mut buf))
            .await
            .unwrap()
            .unwrap();
        let r = parse(&buf[..k]);
        if r.status() == Some(503) {
            assert!(r.header(&HeaderName::RetryAfter).is_some());
        }
        codes.push(r.status().unwrap());
    }
    assert_eq!(codes.iter().filter(|c| **c == 200).count(), 100);
    assert_eq!(codes.iter().filter(|c| **c == 503).count(), 20);

    // A carrier's INVITE for a number served here, refused for the full table, is on record (issue 21).
    let agent = common::Agent::spawn(common::Mode::Answer).await;
    let p = t.add_agent("a", &agent, 5, edge_store::AgentStatus::Active).await;
    let number_id = t.add_number("+14155550100", &p, None).await;
    let c = common::Carrier::new(t.sip(), "+14155550100").await;
    c.invite().await;
    let refused = c.recv(Duration::from_secs(2)).await.expect("an answer to the INVITE");
    assert_eq!(refused.status(), Some(503));
    let path = format!("/v1/calls?phone_number_id={number_id}");
    let mut body = String::new();
    for _ in 0..100 {
        let (code, b) = t.http("GET", &path, None).await;
        assert_eq!(code, 200, "{b}");
        body = b;
        if body.contains("transaction table full") {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    let rec = &v["data"][0];
    assert_eq!(rec["status"], "failed", "{v}");
    assert_eq!(rec["sip_status"], 503, "{v}");
    assert_eq!(rec["end_reason"], "transaction table full", "{v}");
    assert_eq!(rec["to"], "+14155550100", "{v}");
    assert!(
        !agent
            .got(sip_core::message::Method::Invite, Duration::from_millis(100))
            .await
    );
}

/// Carriers only at 127.0.0.1, agent networks at 127.0.2.0/24: 127.0.1.x are strangers.
fn carrier_at_127_0_0_1(c: &mut oneinbox_edge::config::Config) {
    c.carriers = vec![oneinbox_edge::config::Carrier {
        name: "carrier".into(),
        allow: vec!["127.0.0.1/32".parse().unwrap()],
        media_encryption: Default::default(),
    }];
    c.agent_networks = vec![oneinbox_edge::config::AgentNetwork {
        name: "agents".into(),
        allow: vec!["127.0.2.0/24".parse().unwrap()],
    }];
}

/// A TCP connection to `to` from the loopback address `from`.
async fn connect_from(from: &str, to: SocketAddr) -> TcpStream {
    let sock = TcpSocket::new_v4().unwrap();
    sock.bind(SocketAddr::new(from.parse::<IpAddr>().unwrap(), 0)).unwrap();
    sock.connect(to).await.unwrap()
}

/// Waits until the edge has decided on `n` connections in all (accepted or refused).
async fn decided(t: &common::TestEdge, n: u64) {
    let s = &t.edge.transport_stats;
    for _ in 0..200 {
        let seen =
            s.tcp_connections_accepted.load(Ordering::Relaxed) + s.tcp_connections_refused.load(Ordering::Relaxed);
        if seen >= n {
            assert_eq!(seen, n, "more connections decided than opened");
            return;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("the edge did not decide on {n} connections");
}

/// The edge closed `s` (EOF or reset) rather than keeping it open.
async fn closed_by_edge(s: &mut TcpStream) -> bool {
    read_some(s, Duration::from_secs(5)).await.is_none()
}

/// Sends an OPTIONS on `s` and returns the answer's status.
async fn options_over(s: &mut TcpStream, n: u32) -> Option<u16> {
    let me = s.local_addr().unwrap();
    s.write_all(options(me, n, "TCP").as_bytes()).await.ok()?;
    let got = read_some(s, Duration::from_secs(3)).await?;
    parse(&got).status()
}

/// The value of one line of /metrics (`name{labels}` exactly as written), if present.
async fn metric(t: &common::TestEdge, series: &str) -> Option<u64> {
    let (status, text) = t.http("GET", "/metrics", None).await;
    assert_eq!(status, 200);
    text.lines()
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' ')?.trim().parse::<f64>().ok())
        .map(|v| v as u64)
}

/// The lock-out, small: strangers and agents fill every slot they may take, and the carrier still
/// gets all of its reserved slots, with answers on them; past the total even a carrier is refused.
#[tokio::test]
async fn strangers_and_agents_cannot_take_the_carriers_reserved_slots() {
    let t = start_edge(|c| {
        carrier_at_127_0_0_1(c);
        c.sip.tcp_max_connections = 20;
        c.sip.tcp_carrier_reserved_connections = 5;
        c.sip.tcp_stranger_max_connections = 6;
        c.sip.tcp_stranger_max_connections_per_ip = 2;
        c.sip.tcp_first_message_timeout = Duration::from_secs(60);
    })
    .await;
    let addr = t.edge.sip_tcp.unwrap();
    let stats = t.edge.transport_stats.clone();
    let mut opened = 0;
    let (mut kept, mut refused) = (Vec::new(), Vec::new());
    // Ten strangers' connections from five addresses: six fit the strangers' cap.
    for i in 0..10 {
        let s = connect_from(&format!("127.0.1.{}", 1 + i / 2), addr).await;
        opened += 1;
        decided(&t, opened).await;
        if i < 6 {
            kept.push(s)
        } else {
            refused.push(s)
        }
    }
    // Agents take the rest outside the reserve: 20 - 5 - 6 = 9.
    for i in 0..10 {
        let s = connect_from(&format!("127.0.2.{}", 1 + i), addr).await;
        opened += 1;
        decided(&t, opened).await;
        if i < 9 {
            kept.push(s)
        } else {
            refused.push(s)
        }
    }
    assert_eq!(stats.tcp_refused_stranger_cap.load(Ordering::Relaxed), 4);
    assert_eq!(stats.tcp_refused_total_cap.load(Ordering::Relaxed), 1);
    for s in &mut refused {
        assert!(closed_by_edge(s).await, "a connection past its cap is closed at once");
    }
    // Every reserved slot is the carrier's, and it is answered on each.
    let mut carrier = Vec::new();
    for n in 0..5 {
        let mut s = connect_from("127.0.0.1", addr).await;
        assert_eq!(options_over(&mut s, 600 + n).await, Some(200), "carrier connection {n}");
        carrier.push(s);
    }
    assert_eq!(stats.tcp_accepted_carrier.load(Ordering::Relaxed), 5);
    let mut sixth = connect_from("127.0.0.1", addr).await;
    assert!(
        closed_by_edge(&mut sixth).await,
        "past tcp_max_connections even a carrier waits"
    );
    assert_eq!(stats.tcp_refused_total_cap.load(Ordering::Relaxed), 2);
    // The strangers and agents that were let in are still served.
    assert!(!closed_by_edge_within(&mut kept[0], Duration::from_millis(200)).await);
    let open = |v: &std::sync::atomic::AtomicU64| v.load(Ordering::Relaxed);
    assert_eq!(
        (
            open(&stats.tcp_open_carrier),
            open(&stats.tcp_open_agent),
            open(&stats.tcp_open_stranger)
        ),
        (5, 9, 6)
    );
    // On /metrics (gauges of the process-wide recorder: other tests' edges write them too).
    for class in ["carrier", "agent", "stranger", "outbound"] {
        let series = format!("edge_tcp_connections_open{{class=\"{class}\"}}");
        assert!(metric(&t, &series).await.is_some(), "{series}");
    }
    assert!(
        metric(
            &t,
            "edge_tcp_connections_refused_by_reason_total{reason=\"stranger_cap\"}"
        )
        .await
            >= Some(4)
    );
    assert!(metric(&t, "edge_tcp_connections_refused_by_reason_total{reason=\"total_cap\"}").await >= Some(2));
    assert!(metric(&t, "edge_tcp_connections_refused_total").await >= Some(6));

    // A carrier connection that ends frees its slot for the next carrier connection.
    drop(carrier.pop());
    for _ in 0..200 {
        if stats.tcp_open_carrier.load(Ordering::Relaxed) == 4 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let mut again = connect_from("127.0.0.1", addr).await;
    assert_eq!(options_over(&mut again, 700).await, Some(200));
}

/// Whether the edge closes `s` within `wait` (`false`: still open when the wait ends).
async fn closed_by_edge_within(s: &mut TcpStream, wait: Duration) -> bool {
    read_some(s, wait).await.is_none()
}

#[tokio::test]
async fn a_strangers_connections_per_address_are_capped() {
    let t = start_edge(|c| {
        carrier_at_127_0_0_1(c);
        c.sip.tcp_stranger_max_connections_per_ip = 2;
        c.sip.tcp_first_message_timeout = Duration::from_secs(60);
    })
    .await;
    let addr = t.edge.sip_tcp.unwrap();
    let mut kept = vec![
        connect_from("127.0.1.7", addr).await,
        connect_from("127.0.1.7", addr).await,
    ];
    decided(&t, 2).await;
    let mut third = connect_from("127.0.1.7", addr).await;
    decided(&t, 3).await;
    assert!(
        closed_by_edge(&mut third).await,
        "the third from one stranger address is closed at once"
    );
    // Another address, and a carrier from its own, are not affected.
    kept.push(connect_from("127.0.1.8", addr).await);
    let mut carrier = connect_from("127.0.0.1", addr).await;
    assert_eq!(options_over(&mut carrier, 800).await, Some(200));
    decided(&t, 5).await;
    let stats = &t.edge.transport_stats;
    assert_eq!(stats.tcp_refused_stranger_per_ip_cap.load(Ordering::Relaxed), 1);
    assert_eq!(stats.tcp_accepted_stranger.load(Ordering::Relaxed), 3);
    for s in &mut kept {
        assert!(!closed_by_edge_within(s, Duration::from_millis(100)).await);
    }
    assert!(
        metric(
            &t,
            "edge_tcp_connections_refused_by_reason_total{reason=\"stranger_per_ip_cap\"}"
        )
        .await
            >= Some(1)
    );
}

/// A connection that never sends a byte holds its slot for `tcp_first_message_timeout_s`, not for the
/// ten-minute idle timeout.
#[tokio::test]
async fn a_silent_connection_is_closed_after_the_first_message_timeout() {
    let t = start_edge(|c| {
        carrier_at_127_0_0_1(c);
        c.sip.tcp_first_message_timeout = Duration::from_secs(1);
    })
    .await;
    let mut s = connect_from("127.0.1.9", t.edge.sip_tcp.unwrap()).await;
    assert!(closed_by_edge(&mut s).await, "closed after the first-message timeout");
    let stats = &t.edge.transport_stats;
    assert_eq!(stats.tcp_first_message_timeouts.load(Ordering::Relaxed), 1);
    assert_eq!(stats.tcp_idle_closed.load(Ordering::Relaxed), 0);
    assert!(metric(&t, "edge_tcp_first_message_timeouts_total").await >= Some(1));
    // Its slot is free again.
    for _ in 0..200 {
        if stats.tcp_open_stranger.load(Ordering::Relaxed) == 0 {
            return;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("the stranger's slot was not freed");
}

/// Keep-alives are answered but are not SIP: a connection that only pings, or only sends framed garbage,
/// is closed at the first-message timeout like a silent one.
#[tokio::test]
async fn keepalives_or_garbage_alone_do_not_keep_a_connection() {
    let t = start_edge(|c| {
        carrier_at_127_0_0_1(c);
        c.sip.tcp_first_message_timeout = Duration::from_secs(1);
    })
    .await;
    let addr = t.edge.sip_tcp.unwrap();
    for (n, what) in [(1, &b"\r\n\r\n"[..]), (2, b"HELLO edge\r\nContent-Length: 0\r\n\r\n")] {
        let mut s = connect_from("127.0.1.10", addr).await;
        let started = std::time::Instant::now();
        let mut closed = false;
        // Keep sending well past the deadline; the edge must end it anyway.
        while started.elapsed() < Duration::from_secs(8) {
            if s.write_all(what).await.is_err() {
                closed = true;
                break;
            }
            match read_some(&mut s, Duration::from_millis(200)).await {
                None => {
                    closed = true;
                    break;
                }
                Some(got) if what.starts_with(b"\r\n") && !got.is_empty() => {
                    assert!(got.iter().all(|b| *b == b'\r' || *b == b'\n'), "pongs only: {got:?}")
                }
                Some(_) => {}
            }
        }
        assert!(
            closed,
            "{}: the edge kept the connection",
            String::from_utf8_lossy(what)
        );
        let stats = &t.edge.transport_stats;
        for _ in 0..200 {
            if stats.tcp_first_message_timeouts.load(Ordering::Relaxed) == n {
                break;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        assert_eq!(stats.tcp_first_message_timeouts.load(Ordering::Relaxed), n);
    }
}

/// Once a connection has delivered a SIP message, the first-message deadline is gone: it is kept (up to
/// the idle timeout) and keeps being answered.
#[tokio::test]
async fn a_connection_that_spoke_sip_stays_open_past_the_first_message_timeout() {
    let t = start_edge(|c| {
        carrier_at_127_0_0_1(c);
        c.sip.tcp_first_message_timeout = Duration::from_secs(1);
    })
    .await;
    let mut s = connect_from("127.0.0.1", t.edge.sip_tcp.unwrap()).await;
    assert_eq!(options_over(&mut s, 900).await, Some(200));
    assert!(
        !closed_by_edge_within(&mut s, Duration::from_secs(2)).await,
        "still open past the first-message timeout"
    );
    assert_eq!(options_over(&mut s, 901).await, Some(200));
    assert_eq!(
        t.edge
            .transport_stats
            .tcp_first_message_timeouts
            .load(Ordering::Relaxed),
        0
    );
}
