//! RTP relay on loopback with real sockets.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use edge_media::{
    MediaConfig, MediaEngine, MediaError, MediaEvent, MediaEvents, RelatchRule, RelayHandle, RemoteMedia, Side,
};
use tokio::net::UdpSocket;
use tokio::time::timeout;

const LO: IpAddr = IpAddr::V4(Ipv4Addr::LOCALHOST);

/// Each test gets its own port range so parallel tests never share ports. Ranges sit
/// below the kernel's ephemeral range (32768+) so other processes do not take them.
fn engine(first_port: u16, pairs: u16, tweak: impl FnOnce(&mut MediaConfig)) -> (MediaEngine, MediaEvents) {
    let mut config = MediaConfig {
        public_ip: LO,
        bind_ip: LO,
        port_range: (first_port, first_port + pairs * 2 - 1),
        quarantine: Duration::ZERO,
        media_timeout: Duration::from_secs(30),
        relatch: RelatchRule {
            silence: Duration::from_millis(200),
            packets: 5,
        },
        ..MediaConfig::default()
    };
    tweak(&mut config);
    MediaEngine::new(config).unwrap()
}

async fn socket() -> UdpSocket {
    UdpSocket::bind((LO, 0)).await.unwrap()
}

fn remote_of(rtp: &UdpSocket, rtcp: Option<&UdpSocket>) -> RemoteMedia {
    let port = rtp.local_addr().unwrap().port();
    RemoteMedia {
        addr: LO,
        rtp_port: port,
        rtcp_port: rtcp.map_or(port + 1, |s| s.local_addr().unwrap().port()),
        payload_types: vec![0],
        codecs: vec![],
        telephone_event_pt: None,
    }
}

fn relay_addr(relay: &RelayHandle, side: Side) -> SocketAddr {
    SocketAddr::new(LO, relay.local_port(side))
}

fn rtp(seq: u16, ts: u32, ssrc: u32, fill: u8) -> Vec<u8> {
    let mut p = vec![0x80, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0];
    p[2..4].copy_from_slice(&seq.to_be_bytes());
    p[4..8].copy_from_slice(&ts.to_be_bytes());
    p[8..12].copy_from_slice(&ssrc.to_be_bytes());
    p.extend(std::iter::repeat_n(fill, 160));
    p
}

async fn recv(sock: &UdpSocket, within: Duration) -> Option<(Vec<u8>, SocketAddr)> {
    let mut buf = vec![0u8; 2048];
    match timeout(within, sock.recv_from(&mut buf)).await {
        Ok(Ok((n, from))) => {
            buf.truncate(n);
            Some((buf, from))
        }
        _ => None,
    }
}

async fn expect_nothing(sock: &UdpSocket) {
    assert!(
        recv(sock, Duration::from_millis(150)).await.is_none(),
        "unexpected packet"
    );
}

#[tokio::test]
async fn relays_200_packets_each_way_intact() {
    let (engine, _events) = engine(31000, 4, |_| {});
    let relay = engine.allocate_relay("call-intact").unwrap();
    let (a, a_rtcp, b, b_rtcp) = (socket().await, socket().await, socket().await, socket().await);
    relay.set_remote(Side::A, &remote_of(&a, Some(&a_rtcp)));
    relay.set_remote(Side::B, &remote_of(&b, Some(&b_rtcp)));
    let (to_a, to_b) = (relay_addr(&relay, Side::A), relay_addr(&relay, Side::B));

    let (a, b) = (Arc::new(a), Arc::new(b));
    let receive = |sock: Arc<UdpSocket>, expect_ssrc: u32| {
        tokio::spawn(async move {
            let mut got = Vec::new();
            while got.len() < 200 {
                let Some((p, _)) = recv(&sock, Duration::from_secs(2)).await else {
                    break;
                };
                got.push(p);
            }
            for (i, p) in got.iter().enumerate() {
                let want = rtp(1000 + i as u16, 160 * i as u32, expect_ssrc, i as u8);
                assert_eq!(p, &want, "packet {i}: payload, sequence and timestamp intact");
            }
            got.len()
        })
    };
    let at_b = receive(b.clone(), 0xA);
    let at_a = receive(a.clone(), 0xB);
    for i in 0..200u16 {
        a.send_to(&rtp(1000 + i, 160 * u32::from(i), 0xA, i as u8), to_a)
            .await
            .unwrap();
        b.send_to(&rtp(1000 + i, 160 * u32::from(i), 0xB, i as u8), to_b)
            .await
            .unwrap();
        if i % 20 == 19 {
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
    }
    assert_eq!(at_b.await.unwrap(), 200, "A -> B lost packets");
    assert_eq!(at_a.await.unwrap(), 200, "B -> A lost packets");
    let stats = relay.stats();
    assert_eq!((stats.relayed_a_to_b, stats.relayed_b_to_a), (200, 200));
    assert_eq!(stats.dropped_foreign + stats.dropped_malformed, 0);

    // RTCP travels on RTP+1 to the declared RTCP port of the other side.
    let sender = socket().await;
    let rtcp = [0x81, 200, 0, 6, 0, 0, 0, 0xA, 1, 2, 3, 4];
    sender
        .send_to(&rtcp, SocketAddr::new(LO, relay.local_port(Side::A) + 1))
        .await
        .unwrap();
    let (got, from) = recv(&b_rtcp, Duration::from_secs(1)).await.expect("RTCP relayed");
    assert_eq!(got, rtcp);
    assert_eq!(
        from.port(),
        relay.local_port(Side::B) + 1,
        "RTCP leaves from the B-side RTCP port"
    );
}

#[tokio::test]
async fn latching_foreign_sources_and_rebinding_rule() {
    let (engine, _events) = engine(31010, 4, |_| {});
    let relay = engine.allocate_relay("call-latch").unwrap();
    let (declared_a, nat_a, b) = (socket().await, socket().await, socket().await);
    relay.set_remote(Side::A, &remote_of(&declared_a, None));
    relay.set_remote(Side::B, &remote_of(&b, None));
    let (to_a, to_b) = (relay_addr(&relay, Side::A), relay_addr(&relay, Side::B));

    // Before A sent anything, B's media goes to A's SDP address.
    b.send_to(&rtp(1, 0, 2, 1), to_b).await.unwrap();
    assert!(recv(&declared_a, Duration::from_secs(1)).await.is_some());

    // A's first packet (from behind NAT) latches; B's media now follows it.
    nat_a.send_to(&rtp(1, 0, 1, 1), to_a).await.unwrap();
    assert!(recv(&b, Duration::from_secs(1)).await.is_some());
    b.send_to(&rtp(2, 160, 2, 2), to_b).await.unwrap();
    assert_eq!(recv(&nat_a, Duration::from_secs(1)).await.unwrap().0, rtp(2, 160, 2, 2));
    expect_nothing(&declared_a).await;

    // A foreign source on side A is dropped while A is alive, even if persistent.
    let foreign = socket().await;
    for i in 0..10 {
        foreign.send_to(&rtp(i, 0, 9, 9), to_a).await.unwrap();
        nat_a.send_to(&rtp(2 + i, 0, 1, 1), to_a).await.unwrap();
    }
    for _ in 0..10 {
        let (p, _) = recv(&b, Duration::from_secs(1)).await.unwrap();
        assert_eq!(p[11], 1, "only the latched SSRC reaches B");
    }
    expect_nothing(&b).await;
    assert_eq!(relay.stats().dropped_foreign, 10);

    // Garbage is not RTP and cannot latch or pass.
    foreign.send_to(b"hello", to_a).await.unwrap();
    expect_nothing(&b).await;
    assert_eq!(relay.stats().dropped_malformed, 1);
    // Oversized datagrams (would be truncated) are dropped, not forwarded cut.
    let mut jumbo = rtp(50, 0, 1, 1);
    jumbo.resize(3000, 0);
    nat_a.send_to(&jumbo, to_a).await.unwrap();
    expect_nothing(&b).await;
    assert_eq!(relay.stats().dropped_malformed, 2);

    // Rebinding: latched source silent > 200 ms, new source sends 5 in a row:
    // first 4 dropped, 5th relayed, and B's media follows the new source.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let rebound = socket().await;
    for i in 0..5u16 {
        rebound.send_to(&rtp(100 + i, 0, 1, 7), to_a).await.unwrap();
    }
    let (p, _) = recv(&b, Duration::from_secs(1)).await.unwrap();
    assert_eq!(p[2..4], 104u16.to_be_bytes(), "the 5th packet is the first relayed");
    expect_nothing(&b).await;
    b.send_to(&rtp(3, 320, 2, 3), to_b).await.unwrap();
    assert!(recv(&rebound, Duration::from_secs(1)).await.is_some());
    expect_nothing(&nat_a).await;
}

/// A relay with both sides declared and A's first socket (`a1`) latched by a packet B received; `a2`
/// is a second socket of A's host, not yet used.
struct Latched {
    relay: RelayHandle,
    a1: UdpSocket,
    a2: UdpSocket,
    b: UdpSocket,
    to_a: SocketAddr,
    to_b: SocketAddr,
}

async fn latched_on_a1(engine: &MediaEngine, call_id: &str) -> Latched {
    let relay = engine.allocate_relay(call_id).unwrap();
    let (a1, a2, b) = (socket().await, socket().await, socket().await);
    relay.set_remote(Side::A, &remote_of(&a1, None));
    relay.set_remote(Side::B, &remote_of(&b, None));
    let (to_a, to_b) = (relay_addr(&relay, Side::A), relay_addr(&relay, Side::B));
    a1.send_to(&rtp(1, 0, 1, 1), to_a).await.unwrap();
    assert!(recv(&b, Duration::from_secs(1)).await.is_some());
    Latched {
        relay,
        a1,
        a2,
        b,
        to_a,
        to_b,
    }
}

#[tokio::test]
async fn reinvite_with_new_address_relatches() {
    let (engine, _events) = engine(31070, 2, |_| {});
    let Latched {
        relay,
        a1,
        a2,
        b,
        to_a,
        to_b,
    } = latched_on_a1(&engine, "call-reinvite").await;

    // Same address again (e.g. session refresh): latch kept, a2 stays foreign.
    relay.set_remote(Side::A, &remote_of(&a1, None));
    a2.send_to(&rtp(2, 0, 1, 2), to_a).await.unwrap();
    expect_nothing(&b).await;

    // re-INVITE moves A's media to a2: B's media goes there at once, and a2 latches.
    relay.set_remote(Side::A, &remote_of(&a2, None));
    b.send_to(&rtp(1, 0, 2, 1), to_b).await.unwrap();
    assert!(recv(&a2, Duration::from_secs(1)).await.is_some());
    a2.send_to(&rtp(3, 0, 1, 3), to_a).await.unwrap();
    assert_eq!(recv(&b, Duration::from_secs(1)).await.unwrap().0, rtp(3, 0, 1, 3));
    a1.send_to(&rtp(4, 0, 1, 4), to_a).await.unwrap();
    expect_nothing(&b).await;
}

/// A peer's packets can arrive before the answer that declares its media (always so for a relay in a
/// media worker, which hears of the SDP a moment later): that first declaration keeps a source those
/// packets latched from the declared host, so the other leg's media goes to where the peer really is;
/// a source on another host (a spoofer racing the answer) is dropped.
#[tokio::test]
async fn first_sdp_declaration_keeps_an_early_latch_from_the_declared_host() {
    let (engine, _events) = engine(31090, 4, |_| {});
    let relay = engine.allocate_relay("call-early").unwrap();
    let (a, b_real, b_declared) = (socket().await, socket().await, socket().await);
    relay.set_remote(Side::A, &remote_of(&a, None));
    let (to_a, to_b) = (relay_addr(&relay, Side::A), relay_addr(&relay, Side::B));
    // B speaks before its SDP is known: relayed to A, and B's real source latches.
    b_real.send_to(&rtp(1, 0, 2, 1), to_b).await.unwrap();
    assert!(recv(&a, Duration::from_secs(1)).await.is_some());
    // Its answer then declares another port on the same host: A's media still goes to the latched source.
    relay.set_remote(Side::B, &remote_of(&b_declared, None));
    a.send_to(&rtp(1, 0, 1, 1), to_a).await.unwrap();
    assert_eq!(recv(&b_real, Duration::from_secs(1)).await.unwrap().0, rtp(1, 0, 1, 1));
    expect_nothing(&b_declared).await;

    // A spoofer on another host (127.0.0.2) latches B first: the answer drops it.
    let relay = engine.allocate_relay("call-spoofed").unwrap();
    let spoofer = UdpSocket::bind((IpAddr::V4(Ipv4Addr::new(127, 0, 0, 2)), 0))
        .await
        .unwrap();
    relay.set_remote(Side::A, &remote_of(&a, None));
    let (to_a, to_b) = (relay_addr(&relay, Side::A), relay_addr(&relay, Side::B));
    spoofer.send_to(&rtp(1, 0, 9, 1), to_b).await.unwrap();
    assert!(recv(&a, Duration::from_secs(1)).await.is_some());
    relay.set_remote(Side::B, &remote_of(&b_declared, None));
    a.send_to(&rtp(2, 0, 1, 2), to_a).await.unwrap();
    assert_eq!(
        recv(&b_declared, Duration::from_secs(1)).await.unwrap().0,
        rtp(2, 0, 1, 2)
    );
    expect_nothing(&spoofer).await;
}

/// Hold (no address) and then a resume at another address is a move like any other: the old source's
/// latch goes, whatever packets flowed during the hold.
#[tokio::test]
async fn resume_from_hold_at_a_new_address_relatches() {
    let (engine, _events) = engine(31100, 2, |_| {});
    let Latched {
        relay,
        a1,
        a2,
        b,
        to_a,
        to_b,
    } = latched_on_a1(&engine, "call-hold").await;
    let mut held = remote_of(&a1, None);
    held.addr = IpAddr::V4(Ipv4Addr::UNSPECIFIED);
    relay.set_remote(Side::A, &held);
    a1.send_to(&rtp(2, 0, 1, 2), to_a).await.unwrap();
    assert!(
        recv(&b, Duration::from_secs(1)).await.is_some(),
        "the latch still carries A during the hold"
    );
    relay.set_remote(Side::A, &remote_of(&a2, None));
    b.send_to(&rtp(1, 0, 2, 1), to_b).await.unwrap();
    assert_eq!(recv(&a2, Duration::from_secs(1)).await.unwrap().0, rtp(1, 0, 2, 1));
    expect_nothing(&a1).await;
}

#[tokio::test]
async fn anchor_sdp_wires_both_legs() {
    let (engine, _events) = engine(31080, 2, |_| {});
    let relay = engine.allocate_relay("call-sdp").unwrap();
    let (a, b) = (socket().await, socket().await);
    let sdp = |port: u16| {
        format!("v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\nm=audio {port} RTP/AVP 0 101\r\na=rtpmap:101 telephone-event/8000\r\n")
    };
    let (to_b, remote_a) = relay
        .anchor_sdp(Side::A, sdp(a.local_addr().unwrap().port()).as_bytes(), None)
        .unwrap();
    assert_eq!(remote_a.rtp_port, a.local_addr().unwrap().port());
    let offer_for_b = String::from_utf8(to_b.to_vec()).unwrap();
    assert!(offer_for_b.contains(&format!("m=audio {} RTP/AVP 0 101", relay.local_port(Side::B))));
    let (to_a, _) = relay
        .anchor_sdp(Side::B, sdp(b.local_addr().unwrap().port()).as_bytes(), None)
        .unwrap();
    assert!(String::from_utf8(to_a.to_vec())
        .unwrap()
        .contains(&format!("m=audio {} ", relay.local_port(Side::A))));
    // Media now flows both ways to the SDP-declared peers before any latching.
    b.send_to(&rtp(1, 0, 2, 1), relay_addr(&relay, Side::B)).await.unwrap();
    assert_eq!(recv(&a, Duration::from_secs(1)).await.unwrap().0, rtp(1, 0, 2, 1));
    let bad = relay.anchor_sdp(Side::A, b"v=0\r\n", None).unwrap_err();
    assert_eq!(bad.sip_status(), 488);
}

async fn wait_free(engine: &MediaEngine, pairs: usize) {
    for _ in 0..100 {
        if engine.port_pairs().0 == pairs {
            return;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("ports not returned: {:?}", engine.port_pairs());
}

#[tokio::test]
async fn ports_return_on_release_drop_and_timeout() {
    let (engine, mut events) = engine(31020, 2, |c| c.media_timeout = Duration::from_millis(300));
    let relay = engine.allocate_relay("c1").unwrap();
    assert_eq!(engine.port_pairs(), (0, 0));
    assert!(matches!(engine.allocate_relay("c2"), Err(MediaError::PortsExhausted)));

    let stats = relay.release().await;
    assert_eq!(stats.relayed_a_to_b, 0);
    assert_eq!(engine.port_pairs(), (2, 0), "release() returns both pairs at once");

    let relay = engine.allocate_relay("c3").unwrap();
    drop(relay);
    wait_free(&engine, 2).await;

    let relay = engine.allocate_relay("c4").unwrap();
    // The ports really are closed and re-bindable after release.
    let (a, b) = (socket().await, socket().await);
    relay.set_remote(Side::A, &remote_of(&a, None));
    relay.set_remote(Side::B, &remote_of(&b, None));
    let started = tokio::time::Instant::now();
    let event = timeout(Duration::from_secs(3), events.recv()).await.unwrap().unwrap();
    assert!(matches!(event, MediaEvent::Timeout { ref call_id } if &**call_id == "c4"));
    assert!(started.elapsed() >= Duration::from_millis(280));
    wait_free(&engine, 2).await;
    assert!(relay.is_finished());
}

#[tokio::test]
async fn quarantine_delays_reuse() {
    let (engine, _events) = engine(31030, 2, |c| c.quarantine = Duration::from_millis(400));
    let relay = engine.allocate_relay("q1").unwrap();
    let port = relay.local_port(Side::A);
    relay.release().await;
    assert_eq!(engine.port_pairs(), (0, 2));
    assert!(matches!(engine.allocate_relay("q2"), Err(MediaError::PortsExhausted)));
    tokio::time::sleep(Duration::from_millis(450)).await;
    let relay = engine.allocate_relay("q3").unwrap();
    assert!([31030, 31032].contains(&relay.local_port(Side::A)));
    assert!([31030, 31032].contains(&port));
}

#[tokio::test]
async fn media_timeout_only_when_both_sides_idle() {
    let (engine, mut events) = engine(31040, 2, |c| c.media_timeout = Duration::from_millis(300));
    let relay = engine.allocate_relay("idle").unwrap();
    let (a, b) = (socket().await, socket().await);
    relay.set_remote(Side::A, &remote_of(&a, None));
    relay.set_remote(Side::B, &remote_of(&b, None));
    let to_a = relay_addr(&relay, Side::A);
    // One-way media (B on hold, A talking) keeps the call alive.
    for i in 0..40u16 {
        a.send_to(&rtp(i, 0, 1, 0), to_a).await.unwrap();
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(events.try_recv().is_err(), "no timeout while A sends");
    let quiet = tokio::time::Instant::now();
    let event = timeout(Duration::from_secs(3), events.recv()).await.unwrap().unwrap();
    assert!(matches!(event, MediaEvent::Timeout { .. }));
    let waited = quiet.elapsed();
    assert!(
        waited >= Duration::from_millis(250) && waited < Duration::from_millis(1500),
        "{waited:?}"
    );
}

#[tokio::test]
async fn no_timeout_before_both_sides_known() {
    // Ringing (no answer SDP yet) must not count as dead media.
    let (engine, mut events) = engine(31050, 2, |c| c.media_timeout = Duration::from_millis(150));
    let relay = engine.allocate_relay("ringing").unwrap();
    let a = socket().await;
    relay.set_remote(Side::A, &remote_of(&a, None));
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(events.try_recv().is_err());
    assert!(!relay.is_finished());
}

/// Ended calls' sockets stay bound (`socket_cache_pairs`) and serve the next relay after the quarantine;
/// what reached them in between is thrown away, not relayed into the new call.
#[tokio::test]
async fn cached_sockets_are_reused_and_emptied_of_stale_packets() {
    let (engine, _events) = engine(31200, 2, |c| {
        c.quarantine = Duration::from_millis(200);
        c.socket_cache_pairs = 2;
    });
    let first = engine.allocate_relay("old").unwrap();
    let ports = [first.local_port(Side::A), first.local_port(Side::B)];
    first.release().await;
    assert_eq!(engine.port_pairs(), (0, 2), "parked pairs wait out the quarantine");
    assert!(matches!(
        engine.allocate_relay("early"),
        Err(MediaError::PortsExhausted)
    ));
    // The old call's peer keeps sending to the parked port.
    let old_peer = socket().await;
    for i in 0..5 {
        old_peer.send_to(&rtp(i, 0, 9, 9), (LO, ports[0])).await.unwrap();
    }
    tokio::time::sleep(Duration::from_millis(250)).await;
    assert_eq!(engine.port_pairs(), (2, 0));

    let relay = engine.allocate_relay("new").unwrap();
    let mut reused = [relay.local_port(Side::A), relay.local_port(Side::B)];
    reused.sort_unstable();
    let mut before = ports;
    before.sort_unstable();
    assert_eq!(reused, before, "the same (still bound) ports serve the new call");
    let (a, b) = (socket().await, socket().await);
    relay.set_remote(Side::A, &remote_of(&a, None));
    relay.set_remote(Side::B, &remote_of(&b, None));
    expect_nothing(&b).await;
    a.send_to(&rtp(1, 0, 1, 1), relay_addr(&relay, Side::A)).await.unwrap();
    assert_eq!(recv(&b, Duration::from_secs(1)).await.unwrap().0, rtp(1, 0, 1, 1));
    assert_eq!(relay.stats().relayed_a_to_b, 1, "none of the stale packets was relayed");
}

/// `max_sockets` caps the media sockets open at once (four per relay): the call past it gets
/// `SocketLimit` (a 503 upstream) while the live ones go on, and a freed relay's places serve the next.
/// Cached sockets hold places too, and give way to a live call rather than refuse it.
#[tokio::test]
async fn media_sockets_stop_at_their_ceiling_and_cached_ones_give_way() {
    let (capped, _events) = engine(31300, 6, |c| {
        c.max_sockets = 8;
        c.socket_cache_pairs = 0;
    });
    let first = capped.allocate_relay("s1").unwrap();
    let second = capped.allocate_relay("s2").unwrap();
    assert_eq!(capped.sockets(), (8, 8));
    assert!(matches!(capped.allocate_relay("s3"), Err(MediaError::SocketLimit(8))));
    assert_eq!(capped.port_pairs().0, 2, "the refused call took no port");
    first.release().await;
    assert_eq!(capped.sockets().0, 4);
    let third = capped.allocate_relay("s3").unwrap();
    drop((second, third));

    let (cached, _events) = engine(31320, 6, |c| {
        c.max_sockets = 4;
        c.socket_cache_pairs = 2;
        c.quarantine = Duration::from_secs(60);
    });
    let first = cached.allocate_relay("c1").unwrap();
    first.release().await;
    assert_eq!(cached.sockets(), (4, 4), "parked in the cache, still bound");
    let live = cached.allocate_relay("c2").expect("the cache gives way");
    assert_eq!(cached.sockets(), (4, 4));
    assert_ne!(live.local_port(Side::A), 0);
}
