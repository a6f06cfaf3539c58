//! Ringback from the relay on loopback with real sockets: the tone, its cadence and its RTP stream,
//! nothing of the other side meanwhile, relaying again when it stops.

#[path = "support/ringback.rs"]
mod support;

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use edge_media::{Codec, G711Law, MediaConfig, MediaEngine, MediaEvents, RelayHandle, RemoteMedia, Side};
use support::{assert_cadence, assert_one_stream, assert_ringing, collect, decode, next, rtp, sender, Rx};
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

/// `sock`'s SDP, listing `codecs` (name, payload type); none: just static payload type 0.
fn remote(sock: &UdpSocket, codecs: &[(&str, u8)]) -> RemoteMedia {
    let port = sock.local_addr().unwrap().port();
    RemoteMedia {
        addr: LO,
        rtp_port: port,
        rtcp_port: port + 1,
        payload_types: if codecs.is_empty() {
            vec![0]
        } else {
            codecs.iter().map(|c| c.1).collect()
        },
        codecs: codecs
            .iter()
            .map(|&(name, payload_type)| Codec {
                payload_type,
                name: name.into(),
                clock_rate: 8000,
            })
            .collect(),
        telephone_event_pt: codecs.iter().find(|c| c.0 == "telephone-event").map(|c| c.1),
    }
}

fn at(relay: &RelayHandle, side: Side) -> SocketAddr {
    SocketAddr::new(LO, relay.local_port(side))
}

/// Packets at `sock` until the first one of `ssrc`, which is returned with those before it.
async fn until_ssrc(sock: &UdpSocket, ssrc: u32) -> (Vec<Rx>, Rx) {
    let mut before = Vec::new();
    loop {
        let p = next(sock, S).await.expect("media keeps coming");
        if p.ssrc == ssrc {
            return (before, p);
        }
        before.push(p);
    }
}

/// The whole story toward A (PCMU, nothing known from SDP but payload type 0): B's media relayed;
/// ringback on: 2 s of 440 + 480 Hz, 4 s of silence, ringing again, ~50 packets a second, one RTP
/// stream, none of B's packets; A's media still reaches B; off: B's media again at once, its first
/// packet marked, then untouched.
#[tokio::test]
async fn ringback_toward_a_rings_in_cadence_then_relays_again() {
    let (engine, _events) = engine(31400);
    let relay = engine.allocate_relay("call-ringback").unwrap();
    let (a, b) = (socket().await, socket().await);
    relay.set_remote(Side::A, &remote(&a, &[]));
    relay.set_remote(Side::B, &remote(&b, &[]));
    let b_talks = sender(b.clone(), at(&relay, Side::B), 0xB);
    let relayed = next(&a, S).await.expect("B's media relayed");
    assert_eq!(relayed.ssrc, 0xB);

    relay.ringback(Side::A, true);
    assert!(relay.ringback_on(Side::A) && !relay.ringback_on(Side::B));
    // B's packets already on their way may still land; then only ringback.
    let (_, first) = until_ssrc_not(&a, 0xB).await;
    // A talks meanwhile: that direction is untouched.
    for i in 0..5u16 {
        a.send_to(&rtp(i, u32::from(i) * 160, 0xA, 7), at(&relay, Side::A))
            .await
            .unwrap();
    }
    let mut got = vec![first];
    got.extend(collect(&a, Duration::from_millis(6_300)).await);
    assert!(
        got.iter().all(|p| p.ssrc != 0xB),
        "nothing of B's reaches A during ringback"
    );
    assert_one_stream(&got, 0);
    assert_cadence(&got, G711Law::Ulaw);
    let rate = got.len() as f64 / got[got.len() - 1].at.duration_since(got[0].at).as_secs_f64();
    assert!((47.0..53.0).contains(&rate), "{rate:.1} packets/s");
    let at_b = collect(&b, Duration::from_millis(100)).await;
    assert_eq!(at_b.iter().filter(|p| p.ssrc == 0xA).count(), 5, "A's media reached B");

    // What is queued at A already, then off: at most a packet in flight after.
    while next(&a, Duration::from_millis(2)).await.is_some() {}
    relay.ringback(Side::A, false);
    let (tail, back) = until_ssrc(&a, 0xB).await;
    assert!(tail.len() <= 2, "ringback stops at once ({} more packets)", tail.len());
    assert!(
        back.marker,
        "the first relayed packet after ringback starts a talkspurt"
    );
    let then = collect(&a, Duration::from_millis(200)).await;
    assert!(then.len() >= 5);
    assert!(
        then.iter().all(|p| p.ssrc == 0xB && !p.marker),
        "B's media relayed untouched"
    );
    b_talks.abort();
}

/// PCMA (A's SDP lists PCMA, B's PCMU then PCMA: the law both name); on, off, on again: one stream,
/// the sequence continuing, the timestamp following the clock, each start marked; B's side unaffected.
#[tokio::test]
async fn ringback_in_pcma_continues_one_stream_across_off_and_on() {
    let (engine, _events) = engine(31410);
    let relay = engine.allocate_relay("call-ringback-pcma").unwrap();
    let (a, b) = (socket().await, socket().await);
    relay.set_remote(Side::A, &remote(&a, &[("PCMA", 8), ("telephone-event", 101)]));
    relay.set_remote(Side::B, &remote(&b, &[("PCMU", 0), ("PCMA", 8)]));
    let b_talks = sender(b.clone(), at(&relay, Side::B), 0xB);

    relay.ringback(Side::A, true);
    let (_, first) = until_ssrc_not(&a, 0xB).await;
    let mut one = vec![first];
    one.extend(collect(&a, Duration::from_millis(1_000)).await);
    assert_one_stream(&one, 8);
    assert_ringing(&decode(G711Law::Alaw, &one[..40]), "PCMA ringback");
    assert!((45..=56).contains(&one.len()), "{} packets in 1 s", one.len());

    relay.ringback(Side::A, false);
    let (_, back) = until_ssrc(&a, 0xB).await;
    assert!(back.marker);
    tokio::time::sleep(Duration::from_millis(500)).await;

    relay.ringback(Side::A, true);
    let (_, again) = until_ssrc_not(&a, 0xB).await;
    let last = &one[one.len() - 1];
    assert_eq!(again.ssrc, last.ssrc, "the ringback stream keeps its SSRC");
    assert!(again.marker, "a new ringback starts with the marker bit");
    // Only a few packets may have been sent after `last` before the stop.
    let seq_gap = again.seq.wrapping_sub(last.seq);
    assert!((1..=4).contains(&seq_gap), "sequence continues: +{seq_gap}");
    let ts_gap = again.ts.wrapping_sub(last.ts);
    let wall = again.at.duration_since(last.at).as_secs_f64() * 8000.0;
    assert!(
        ts_gap % 160 == 0 && (ts_gap as f64 - wall).abs() < 800.0,
        "timestamp +{ts_gap} over {wall:.0} samples of wall clock"
    );
    let mut two = vec![again];
    two.extend(collect(&a, Duration::from_millis(400)).await);
    assert_one_stream(&two, 8);
    assert_ringing(
        &decode(G711Law::Alaw, &two[..10]),
        "ringing again from the start of the cadence",
    );
    // B hears nothing of ringback: it is played toward A only.
    assert!(collect(&b, Duration::from_millis(100)).await.is_empty());
    relay.ringback(Side::A, false);
    b_talks.abort();
}

/// Ringback toward B (the agent side) too; a side whose SDP names no G.711 gets PCMU/0.
#[tokio::test]
async fn ringback_toward_b_and_pcmu_when_no_g711_is_known() {
    let (engine, _events) = engine(31420);
    let relay = engine.allocate_relay("call-ringback-b").unwrap();
    let (a, b) = (socket().await, socket().await);
    relay.set_remote(Side::A, &remote(&a, &[("PCMA", 8)]));
    relay.set_remote(Side::B, &remote(&b, &[("G729", 18)]));
    relay.ringback(Side::B, true);
    let got = collect(&b, Duration::from_millis(500)).await;
    assert!(got.len() >= 20, "{} packets", got.len());
    assert_one_stream(&got, 0);
    assert_ringing(&decode(G711Law::Ulaw, &got[..20]), "PCMU toward B");
    assert!(
        collect(&a, Duration::from_millis(50)).await.is_empty(),
        "nothing toward A"
    );
    relay.ringback(Side::B, false);
    tokio::time::sleep(Duration::from_millis(60)).await;
    let _ = collect(&b, Duration::from_millis(50)).await;
    assert!(collect(&b, Duration::from_millis(200)).await.is_empty(), "stopped");
}

async fn until_ssrc_not(sock: &UdpSocket, ssrc: u32) -> (Vec<Rx>, Rx) {
    let mut before = Vec::new();
    loop {
        let p = next(sock, S).await.expect("media keeps coming");
        if p.ssrc != ssrc {
            return (before, p);
        }
        before.push(p);
    }
}
