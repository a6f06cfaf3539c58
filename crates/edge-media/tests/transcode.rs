//! G.711 law conversion in the relay, on loopback with real sockets: the carrier was answered PCMU by the
//! first agent (its 183); the fallback agent that answers chose PCMA. The carrier keeps its session and
//! still hears the agent's tone, in µ-law; the agent hears the carrier's tone in A-law. When both sides
//! are on one law nothing is touched.

#[path = "support/ringback.rs"]
mod support;

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use edge_media::resample::tone_ratio;
use edge_media::{G711Law, MediaConfig, MediaEngine, MediaEvents, RelayHandle, Side};
use support::{next, Rx};
use tokio::net::UdpSocket;

const LO: IpAddr = IpAddr::V4(Ipv4Addr::LOCALHOST);
const S: Duration = Duration::from_secs(1);

fn engine(first_port: u16) -> (MediaEngine, MediaEvents) {
    MediaEngine::new(MediaConfig {
        public_ip: LO,
        bind_ip: LO,
        port_range: (first_port, first_port + 7),
        quarantine: Duration::ZERO,
        ..MediaConfig::default()
    })
    .unwrap()
}

async fn socket() -> Arc<UdpSocket> {
    Arc::new(UdpSocket::bind((LO, 0)).await.unwrap())
}

/// An SDP from `sock` listing `codecs` (payload type, name) and telephone-event 101.
fn sdp(sock: &UdpSocket, codecs: &[(u8, &str)]) -> Vec<u8> {
    let port = sock.local_addr().unwrap().port();
    let pts: Vec<String> = codecs.iter().map(|c| c.0.to_string()).collect();
    let mut s = format!(
        "v=0\r\no=peer 7 7 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n\
         m=audio {port} RTP/AVP {} 101\r\n",
        pts.join(" ")
    );
    for (pt, name) in codecs {
        s.push_str(&format!("a=rtpmap:{pt} {name}/8000\r\n"));
    }
    s.push_str("a=rtpmap:101 telephone-event/8000\r\na=fmtp:101 0-16\r\n");
    s.into_bytes()
}

const PCMU: (u8, &str) = (0, "PCMU");
const PCMA: (u8, &str) = (8, "PCMA");

fn at(relay: &RelayHandle, side: Side) -> SocketAddr {
    SocketAddr::new(LO, relay.local_port(side))
}

/// 20 ms of a `hz` tone in `law` with payload type `pt`, packet `n` of the stream `ssrc`.
fn tone_packet(law: G711Law, pt: u8, hz: f64, n: u16, ssrc: u32) -> Vec<u8> {
    let mut p = vec![0x80, pt, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0];
    let ts = u32::from(n) * 160;
    p[2..4].copy_from_slice(&n.to_be_bytes());
    p[4..8].copy_from_slice(&ts.to_be_bytes());
    p[8..12].copy_from_slice(&ssrc.to_be_bytes());
    for i in 0..160u32 {
        let t = f64::from(ts + i) / 8000.0;
        p.push(law.encode((8000.0 * (2.0 * std::f64::consts::PI * hz * t).sin()) as i16));
    }
    p
}

/// Sends 20 packets of a `hz` tone from `from` to `to`; returns what arrived at `at_sock`.
async fn talk(from: &UdpSocket, to: SocketAddr, law: G711Law, pt: u8, hz: f64, at_sock: &UdpSocket) -> Vec<Rx> {
    let mut got = Vec::new();
    for n in 0..20u16 {
        from.send_to(&tone_packet(law, pt, hz, n, 0x5A), to).await.unwrap();
        if let Some(p) = next(at_sock, S).await {
            got.push(p);
        }
    }
    got
}

fn pcm(law: G711Law, got: &[Rx]) -> Vec<i16> {
    got.iter()
        .flat_map(|p| p.payload.iter().map(move |&b| law.decode(b)))
        .collect()
}

#[tokio::test]
async fn a_fallback_on_the_other_law_is_converted_both_ways() {
    let (engine, _events) = engine(31600);
    let relay = engine.allocate_relay("call-transcode").unwrap();
    let (carrier, first, fallback) = (socket().await, socket().await, socket().await);
    // The carrier offers both laws; the first agent answers PCMU in its 183: that is the carrier's answer.
    relay.anchor_sdp(Side::A, &sdp(&carrier, &[PCMU, PCMA]), None).unwrap();
    let (to_carrier, _) = relay.anchor_sdp(Side::B, &sdp(&first, &[PCMU]), None).unwrap();
    assert!(String::from_utf8_lossy(&to_carrier).contains("RTP/AVP 0 101"));
    // The fallback answers PCMA only; the carrier is not told (it would ignore it anyway).
    relay.keep_answer(Side::B, &sdp(&fallback, &[PCMA]), None).unwrap();

    // The carrier's 1 kHz tone in µ-law reaches the fallback as A-law, payload type 8.
    let heard = talk(&carrier, at(&relay, Side::A), G711Law::Ulaw, 0, 1000.0, &fallback).await;
    assert!(heard.len() >= 18, "{} of 20 packets relayed", heard.len());
    assert!(
        heard.iter().all(|p| p.pt == 8),
        "relabelled PCMA: {:?}",
        heard.iter().map(|p| p.pt).collect::<Vec<_>>()
    );
    let ratio = tone_ratio(&pcm(G711Law::Alaw, &heard), 1000.0, 8000);
    assert!(
        ratio > 0.9,
        "the fallback hears the carrier's 1 kHz tone ({ratio:.3} of the energy)"
    );

    // The fallback's 600 Hz tone in A-law reaches the carrier as µ-law, payload type 0.
    let heard = talk(&fallback, at(&relay, Side::B), G711Law::Alaw, 8, 600.0, &carrier).await;
    assert!(heard.len() >= 18, "{} of 20 packets relayed", heard.len());
    assert!(heard.iter().all(|p| p.pt == 0), "relabelled PCMU");
    let ratio = tone_ratio(&pcm(G711Law::Ulaw, &heard), 600.0, 8000);
    assert!(
        ratio > 0.9,
        "the carrier hears the fallback's 600 Hz tone ({ratio:.3} of the energy)"
    );

    // DTMF events pass untouched.
    let event = [0x80, 101, 0, 99, 0, 0, 0, 0, 0, 0, 0, 0x5A, 0x0B, 0x0A, 0x00, 0xA0];
    carrier.send_to(&event, at(&relay, Side::A)).await.unwrap();
    let got = next(&fallback, S).await.expect("the event relayed");
    assert_eq!((got.pt, got.payload.as_slice()), (101, &event[12..]));
}

#[tokio::test]
async fn one_law_on_both_sides_is_relayed_untouched() {
    let (engine, _events) = engine(31620);
    let relay = engine.allocate_relay("call-same-law").unwrap();
    let (carrier, first, fallback) = (socket().await, socket().await, socket().await);
    relay.anchor_sdp(Side::A, &sdp(&carrier, &[PCMU, PCMA]), None).unwrap();
    relay.anchor_sdp(Side::B, &sdp(&first, &[PCMU]), None).unwrap();
    relay
        .keep_answer(Side::B, &sdp(&fallback, &[PCMU, PCMA]), None)
        .unwrap();
    let sent = tone_packet(G711Law::Ulaw, 0, 1000.0, 3, 0x5A);
    carrier.send_to(&sent, at(&relay, Side::A)).await.unwrap();
    let got = next(&fallback, S).await.expect("relayed");
    assert_eq!((got.pt, got.payload.as_slice()), (0, &sent[12..]));
    fallback
        .send_to(&tone_packet(G711Law::Ulaw, 0, 600.0, 4, 0x5B), at(&relay, Side::B))
        .await
        .unwrap();
    let back = next(&carrier, S).await.expect("relayed back");
    assert_eq!(back.pt, 0);
    assert_eq!(back.payload, tone_packet(G711Law::Ulaw, 0, 600.0, 4, 0x5B)[12..]);
}

/// A re-INVITE after the fallback answered gives the carrier a new answer (the agent's law): from then on
/// both sides are on one law and conversion stops.
#[tokio::test]
async fn a_new_offer_answer_ends_the_conversion() {
    let (engine, _events) = engine(31640);
    let relay = engine.allocate_relay("call-reoffer").unwrap();
    let (carrier, first, fallback) = (socket().await, socket().await, socket().await);
    relay.anchor_sdp(Side::A, &sdp(&carrier, &[PCMU, PCMA]), None).unwrap();
    relay.anchor_sdp(Side::B, &sdp(&first, &[PCMU]), None).unwrap();
    relay.keep_answer(Side::B, &sdp(&fallback, &[PCMA]), None).unwrap();
    // The carrier re-offers both; the fallback answers PCMA and the carrier is given that answer.
    relay.anchor_sdp(Side::A, &sdp(&carrier, &[PCMU, PCMA]), None).unwrap();
    let (answer, _) = relay.anchor_sdp(Side::B, &sdp(&fallback, &[PCMA]), None).unwrap();
    assert!(String::from_utf8_lossy(&answer).contains("RTP/AVP 8 101"));
    let sent = tone_packet(G711Law::Alaw, 8, 1000.0, 5, 0x5A);
    carrier.send_to(&sent, at(&relay, Side::A)).await.unwrap();
    let got = next(&fallback, S).await.expect("relayed");
    assert_eq!((got.pt, got.payload.as_slice()), (8, &sent[12..]), "untouched");
}
