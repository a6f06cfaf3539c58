//! Relays that run in a media worker process (the edge's own binary, `media-worker`): ringback, G.711 law
//! conversion and SRTP keys travel over the control socket, and the worker does what in-process relays do.

#[path = "../crates/edge-media/tests/support/ringback.rs"]
mod support;

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use edge_media::{Codec, G711Law, MediaConfig, MediaEngine, RemoteMedia, Side};
use support::{assert_one_stream, assert_ringing, collect, decode, next, sender};
use tokio::net::UdpSocket;

const LO: IpAddr = IpAddr::V4(Ipv4Addr::LOCALHOST);

fn remote(sock: &UdpSocket, name: &str, pt: u8) -> RemoteMedia {
    let port = sock.local_addr().unwrap().port();
    RemoteMedia {
        addr: LO,
        rtp_port: port,
        rtcp_port: port + 1,
        payload_types: vec![pt],
        codecs: vec![Codec {
            payload_type: pt,
            name: name.into(),
            clock_rate: 8000,
        }],
        telephone_event_pt: None,
    }
}

/// A media engine whose every relay goes to one worker process (no socket of the edge's own), on
/// `ports` of its own so the tests of this file can run side by side.
fn worker_engine(ports: (u16, u16)) -> (MediaEngine, edge_media::MediaEvents) {
    MediaEngine::new(MediaConfig {
        public_ip: LO,
        bind_ip: LO,
        port_range: ports,
        quarantine: Duration::ZERO,
        // No socket of the edge's own: every relay goes to the worker.
        max_sockets: 0,
        workers: 1,
        worker_command: vec![env!("CARGO_BIN_EXE_oneinbox-edge").into(), "media-worker".into()],
        ..MediaConfig::default()
    })
    .unwrap()
}

#[tokio::test]
async fn ringback_from_a_relay_in_a_media_worker() {
    let (engine, _events) = worker_engine((31500, 31507));
    let relay = engine.allocate_relay("call-worker-ringback").unwrap();
    assert_eq!(engine.workers_alive(), 1);
    let a = Arc::new(UdpSocket::bind((LO, 0)).await.unwrap());
    let b = Arc::new(UdpSocket::bind((LO, 0)).await.unwrap());
    relay.set_remote(Side::A, &remote(&a, "PCMA", 8));
    relay.set_remote(Side::B, &remote(&b, "PCMA", 8));
    let b_talks = sender(b.clone(), SocketAddr::new(LO, relay.local_port(Side::B)), 0xB);
    let first = next(&a, Duration::from_secs(2)).await.expect("relayed by the worker");
    assert_eq!(first.ssrc, 0xB);

    relay.ringback(Side::A, true);
    let mut p = next(&a, Duration::from_secs(1)).await.unwrap();
    while p.ssrc == 0xB {
        p = next(&a, Duration::from_secs(1)).await.unwrap();
    }
    let mut got = vec![p];
    got.extend(collect(&a, Duration::from_millis(1_000)).await);
    assert!(got.iter().all(|p| p.ssrc != 0xB), "nothing of B's during ringback");
    assert!((45..=56).contains(&got.len()), "{} packets in 1 s", got.len());
    assert_one_stream(&got, 8);
    assert_ringing(&decode(G711Law::Alaw, &got[..40]), "worker's PCMA ringback");

    relay.ringback(Side::A, false);
    let mut p = next(&a, Duration::from_secs(1)).await.unwrap();
    while p.ssrc != 0xB {
        p = next(&a, Duration::from_secs(1)).await.unwrap();
    }
    assert!(p.marker, "relaying again, first packet marked");
    b_talks.abort();
    relay.release().await;
}

/// G.711 law conversion in a worker: the rule travels over the control socket like ringback does.
#[tokio::test]
async fn law_conversion_in_a_media_worker() {
    let (engine, _events) = worker_engine((31510, 31517));
    let relay = engine.allocate_relay("call-worker-law").unwrap();
    let a = Arc::new(UdpSocket::bind((LO, 0)).await.unwrap());
    let b = Arc::new(UdpSocket::bind((LO, 0)).await.unwrap());
    // A sends PCMU; B takes PCMA only.
    relay.set_remote(Side::A, &remote(&a, "PCMU", 0));
    relay.set_remote(Side::B, &remote(&b, "PCMA", 8));
    let mut packet = vec![0x80, 0, 0, 1, 0, 0, 0, 160, 0, 0, 0, 0xA];
    packet.extend((0..160).map(|i| G711Law::Ulaw.encode(((i % 20) as i16 - 10) * 800)));
    let to_relay = SocketAddr::new(LO, relay.local_port(Side::A));
    let mut got = None;
    // The worker hears of the SDP a moment after we set it: send until a converted packet arrives.
    for _ in 0..20 {
        a.send_to(&packet, to_relay).await.unwrap();
        if let Some(p) = next(&b, Duration::from_millis(100)).await {
            if p.pt == 8 {
                got = Some(p);
                break;
            }
        }
    }
    let got = got.expect("a converted packet from the worker");
    let expected: Vec<u8> = packet[12..]
        .iter()
        .map(|&u| G711Law::Alaw.encode(G711Law::Ulaw.decode(u)))
        .collect();
    assert_eq!(got.payload, expected, "each µ-law sample as A-law");
    relay.release().await;
}

/// SRTP in a worker: the keys the edge negotiated travel over the control socket (`ToWorker::Keys`) and
/// the worker decrypts, relays, encrypts and drops replays as the edge's own relays do.
#[tokio::test]
async fn srtp_in_a_media_worker() {
    use edge_srtp::{CryptoAttribute, SrtpContext, SrtpSuite};
    let (engine, _events) = worker_engine((31520, 31527));
    let relay = engine.allocate_relay("call-worker-srtp").unwrap();
    assert_eq!(engine.workers_alive(), 1);
    let a = Arc::new(UdpSocket::bind((LO, 0)).await.unwrap());
    let b = Arc::new(UdpSocket::bind((LO, 0)).await.unwrap());
    let sdp = |sock: &UdpSocket, proto: &str, crypto: Option<&CryptoAttribute>| {
        let mut s = format!(
            "v=0\r\no=p 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\nm=audio {} {proto} 0\r\n\
             a=rtpmap:0 PCMU/8000\r\n",
            sock.local_addr().unwrap().port()
        );
        if let Some(c) = crypto {
            s.push_str(&format!("a=crypto:{}\r\n", c.to_sdp_value()));
        }
        s
    };
    // A (a carrier) offers SRTP; B (an agent) answers plain.
    let a_key = CryptoAttribute::generate(1, SrtpSuite::AesCm128HmacSha1_80).unwrap();
    let (to_b, _) = relay
        .anchor(Side::A, sdp(&a, "RTP/SAVP", Some(&a_key)).as_bytes(), None, true)
        .expect("an SRTP offer taken by a relay in a worker");
    assert!(String::from_utf8_lossy(&to_b).contains(" RTP/AVP "), "plain toward B");
    let (to_a, _) = relay
        .anchor(Side::B, sdp(&b, "RTP/AVP", None).as_bytes(), None, false)
        .unwrap();
    let edge_key = String::from_utf8_lossy(&to_a)
        .lines()
        .find_map(|l| l.strip_prefix("a=crypto:").map(|v| CryptoAttribute::parse(v).unwrap()))
        .expect("the edge's key toward A");
    assert_ne!(edge_key.key, a_key.key);

    let rtp = |seq: u16, ssrc: u32| {
        let mut p = vec![0x80, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0];
        p[2..4].copy_from_slice(&seq.to_be_bytes());
        p[4..8].copy_from_slice(&(u32::from(seq) * 160).to_be_bytes());
        p[8..12].copy_from_slice(&ssrc.to_be_bytes());
        p.extend(std::iter::repeat_n(0x55u8, 160));
        p
    };
    let recv = |sock: Arc<UdpSocket>| async move {
        let mut buf = vec![0u8; 2048];
        match tokio::time::timeout(Duration::from_millis(200), sock.recv(&mut buf)).await {
            Ok(Ok(n)) => Some(buf[..n].to_vec()),
            _ => None,
        }
    };
    let (to_relay_a, to_relay_b) = (
        SocketAddr::new(LO, relay.local_port(Side::A)),
        SocketAddr::new(LO, relay.local_port(Side::B)),
    );
    let mut a_tx = SrtpContext::from_crypto(&a_key);
    let mut a_rx = SrtpContext::from_crypto(&edge_key);
    // The worker hears of the keys a moment after the SDP: send until the first packet comes through.
    let mut seq = 0u16;
    let mut first = None;
    let mut last_sent = Vec::new();
    for _ in 0..30 {
        seq += 1;
        let mut p = rtp(seq, 0xA);
        a_tx.protect_rtp(&mut p).unwrap();
        a.send_to(&p, to_relay_a).await.unwrap();
        last_sent = p;
        if let Some(got) = recv(b.clone()).await {
            first = Some(got);
            break;
        }
    }
    assert_eq!(first.expect("A's audio decrypted by the worker"), rtp(seq, 0xA));
    // B's plain audio reaches A encrypted with the edge's key.
    b.send_to(&rtp(1, 0xB), to_relay_b).await.unwrap();
    let mut back = recv(a.clone()).await.expect("B's audio at A");
    a_rx.unprotect_rtp(&mut back)
        .expect("encrypted with the edge's key for A");
    assert_eq!(back, rtp(1, 0xB));
    // A replayed packet is dropped, and counted in the relay's stats.
    a.send_to(&last_sent, to_relay_a).await.unwrap();
    assert!(recv(b.clone()).await.is_none(), "a replayed SRTP packet was relayed");
    let stats = relay.release().await;
    assert!(stats.dropped_srtp >= 1, "{stats:?}");
}
