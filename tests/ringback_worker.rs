//! Ringback from a relay that runs in a media worker process (the edge's own binary, `media-worker`):
//! the switch travels over the control socket and the worker plays the same stream as in-process.

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

#[tokio::test]
async fn ringback_from_a_relay_in_a_media_worker() {
    let (engine, _events) = MediaEngine::new(MediaConfig {
        public_ip: LO,
        bind_ip: LO,
        port_range: (31500, 31507),
        quarantine: Duration::ZERO,
        // No socket of the edge's own: every relay goes to the worker.
        max_sockets: 0,
        workers: 1,
        worker_command: vec![env!("CARGO_BIN_EXE_oneinbox-edge").into(), "media-worker".into()],
        ..MediaConfig::default()
    })
    .unwrap();
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
    let (engine, _events) = MediaEngine::new(MediaConfig {
        public_ip: LO,
        bind_ip: LO,
        port_range: (31510, 31517),
        quarantine: Duration::ZERO,
        max_sockets: 0,
        workers: 1,
        worker_command: vec![env!("CARGO_BIN_EXE_oneinbox-edge").into(), "media-worker".into()],
        ..MediaConfig::default()
    })
    .unwrap();
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
