//! Transport behaviour a carrier's engineer checks: TCP keep-alive, framing limits, connection caps, idle
//! close, symmetric responses with received/rport, the carrier allow list, and overload answers.

mod common;

use std::time::Duration;

use common::{parse, start_edge};
use oneinbox_edge::config::UnknownSource;
use sip_core::message::HeaderName;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpStream, UdpSocket};

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
}
