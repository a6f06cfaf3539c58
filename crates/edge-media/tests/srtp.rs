//! SRTP per leg through the relay and voicemail, on loopback with real sockets. The SRTP peers use
//! `edge-srtp` with their own keys; the edge must answer with keys of its own per leg.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use edge_media::resample::tone;
use edge_media::{
    g711, srtp_dropped, wav, MediaConfig, MediaEncryption, MediaEngine, MediaEvent, MediaEvents, RelatchRule, SdpError,
    Side, VoicemailConfig,
};
use edge_srtp::{CryptoAttribute, SrtpContext, SrtpSuite};
use tokio::net::UdpSocket;
use tokio::time::timeout;

const LO: IpAddr = IpAddr::V4(Ipv4Addr::LOCALHOST);

fn engine(first_port: u16, tweak: impl FnOnce(&mut MediaConfig)) -> (MediaEngine, MediaEvents) {
    let mut config = MediaConfig {
        public_ip: LO,
        bind_ip: LO,
        port_range: (first_port, first_port + 7),
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

/// SDP of a peer listening on `rtp` (RTCP on `rtcp`), `proto` with these `a=crypto` lines.
fn sdp(rtp: &UdpSocket, rtcp: &UdpSocket, proto: &str, crypto: &[&CryptoAttribute]) -> String {
    let mut s = format!(
        "v=0\r\no=peer 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n\
         m=audio {} {proto} 0 101\r\na=rtpmap:0 PCMU/8000\r\na=rtpmap:101 telephone-event/8000\r\n\
         a=rtcp:{}\r\na=ptime:20\r\n",
        rtp.local_addr().unwrap().port(),
        rtcp.local_addr().unwrap().port()
    );
    for c in crypto {
        s.push_str(&format!("a=crypto:{}\r\n", c.to_sdp_value()));
    }
    s
}

/// The `a=crypto` lines of an SDP body, parsed.
fn crypto_lines(body: &[u8]) -> Vec<CryptoAttribute> {
    String::from_utf8_lossy(body)
        .lines()
        .filter_map(|l| l.strip_prefix("a=crypto:"))
        .map(|v| CryptoAttribute::parse(v).unwrap())
        .collect()
}

fn m_line(body: &[u8]) -> String {
    String::from_utf8_lossy(body)
        .lines()
        .find(|l| l.starts_with("m=audio"))
        .unwrap()
        .to_owned()
}

fn rtp(seq: u16, ssrc: u32, fill: u8) -> Vec<u8> {
    let mut p = vec![0x80, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0];
    p[2..4].copy_from_slice(&seq.to_be_bytes());
    p[4..8].copy_from_slice(&(u32::from(seq) * 160).to_be_bytes());
    p[8..12].copy_from_slice(&ssrc.to_be_bytes());
    p.extend(std::iter::repeat_n(fill, 160));
    p
}

/// An RTCP receiver report with no blocks.
fn rtcp_rr(ssrc: u32) -> Vec<u8> {
    let mut p = vec![0x80, 201, 0, 1];
    p.extend_from_slice(&ssrc.to_be_bytes());
    p
}

async fn recv(sock: &UdpSocket, within: Duration) -> Option<Vec<u8>> {
    let mut buf = vec![0u8; 2048];
    match timeout(within, sock.recv_from(&mut buf)).await {
        Ok(Ok((n, _))) => {
            buf.truncate(n);
            Some(buf)
        }
        _ => None,
    }
}

async fn sockets() -> (UdpSocket, UdpSocket) {
    (
        UdpSocket::bind((LO, 0)).await.unwrap(),
        UdpSocket::bind((LO, 0)).await.unwrap(),
    )
}

fn dropped(reason: &str) -> u64 {
    srtp_dropped().iter().find(|(r, _)| *r == reason).unwrap().1
}

#[tokio::test]
async fn srtp_carrier_to_plain_agent_both_ways_with_replay_and_forgery_dropped() {
    let (engine, _events) = engine(31700, |_| {});
    let relay = engine.allocate_relay("srtp-a").unwrap();
    let ((a, a_rtcp), (b, b_rtcp)) = (sockets().await, sockets().await);
    // The carrier offers AES_CM_128_HMAC_SHA1_80 then _32; the agent's policy is none.
    let carrier_80 = CryptoAttribute::generate(1, SrtpSuite::AesCm128HmacSha1_80).unwrap();
    let carrier_32 = CryptoAttribute::generate(2, SrtpSuite::AesCm128HmacSha1_32).unwrap();
    let offer = sdp(&a, &a_rtcp, "RTP/SAVP", &[&carrier_80, &carrier_32]);
    let (to_agent, _) = relay.anchor(Side::A, offer.as_bytes(), None, true).unwrap();
    assert_eq!(
        m_line(&to_agent),
        format!("m=audio {} RTP/AVP 0 101", relay.local_port(Side::B))
    );
    assert!(crypto_lines(&to_agent).is_empty(), "no key reaches the plain agent");
    let answer = sdp(&b, &b_rtcp, "RTP/AVP", &[]);
    let (to_carrier, _) = relay.anchor(Side::B, answer.as_bytes(), None, false).unwrap();
    assert_eq!(
        m_line(&to_carrier),
        format!("m=audio {} RTP/SAVP 0 101", relay.local_port(Side::A))
    );
    let edge_keys = crypto_lines(&to_carrier);
    assert_eq!(edge_keys.len(), 1, "one line in an answer");
    assert_eq!(
        (edge_keys[0].tag, edge_keys[0].suite()),
        (1, SrtpSuite::AesCm128HmacSha1_80)
    );
    assert_ne!(
        edge_keys[0].key, carrier_80.key,
        "a fresh key of the edge's, not the carrier's"
    );
    // A 183 then the 200 with the same answer: the same key again.
    let (again, _) = relay.anchor(Side::B, answer.as_bytes(), None, false).unwrap();
    assert_eq!(crypto_lines(&again), edge_keys);

    let mut carrier_tx = SrtpContext::from_crypto(&carrier_80);
    let mut carrier_rx = SrtpContext::from_crypto(&edge_keys[0]);
    let (to_a, to_b) = (
        SocketAddr::new(LO, relay.local_port(Side::A)),
        SocketAddr::new(LO, relay.local_port(Side::B)),
    );
    let mut sent = Vec::new();
    for seq in 100..110u16 {
        let mut p = rtp(seq, 0xCA11, seq as u8);
        carrier_tx.protect_rtp(&mut p).unwrap();
        a.send_to(&p, to_a).await.unwrap();
        sent.push(p);
        let got = recv(&b, Duration::from_secs(2))
            .await
            .expect("decrypted toward the agent");
        assert_eq!(
            got,
            rtp(seq, 0xCA11, seq as u8),
            "plain RTP at the agent, payload intact"
        );
        b.send_to(&rtp(seq, 0xA6E7, 0x55), to_b).await.unwrap();
        let mut back = recv(&a, Duration::from_secs(2))
            .await
            .expect("encrypted toward the carrier");
        assert_ne!(
            back[12..172],
            [0x55; 160][..],
            "the payload is encrypted on the carrier leg"
        );
        carrier_rx.unprotect_rtp(&mut back).unwrap();
        assert_eq!(back, rtp(seq, 0xA6E7, 0x55));
    }

    // A replayed packet is not relayed, and counted.
    let replays = dropped("replayed");
    a.send_to(&sent[3], to_a).await.unwrap();
    assert!(recv(&b, Duration::from_millis(200)).await.is_none(), "replay relayed");
    assert!(dropped("replayed") > replays);
    // Neither is a forged one (one bit flipped).
    let auth = dropped("auth_failed");
    let mut forged = rtp(200, 0xCA11, 1);
    carrier_tx.protect_rtp(&mut forged).unwrap();
    forged[20] ^= 1;
    a.send_to(&forged, to_a).await.unwrap();
    assert!(recv(&b, Duration::from_millis(200)).await.is_none(), "forgery relayed");
    assert!(dropped("auth_failed") > auth);
    // Nor plain RTP on the SRTP leg.
    a.send_to(&rtp(201, 0xCA11, 1), to_a).await.unwrap();
    assert!(
        recv(&b, Duration::from_millis(200)).await.is_none(),
        "plain RTP on an SRTP leg relayed"
    );

    // RTCP as SRTCP.
    let mut report = rtcp_rr(0xCA11);
    carrier_tx.protect_rtcp(&mut report).unwrap();
    a_rtcp
        .send_to(&report, SocketAddr::new(LO, relay.local_port(Side::A) + 1))
        .await
        .unwrap();
    let got = recv(&b_rtcp, Duration::from_secs(2)).await;
    assert_eq!(got, Some(rtcp_rr(0xCA11)), "{:?} {:?}", srtp_dropped(), relay.stats());
    b_rtcp
        .send_to(&rtcp_rr(0xA6E7), SocketAddr::new(LO, relay.local_port(Side::B) + 1))
        .await
        .unwrap();
    let back = recv(&a_rtcp, Duration::from_secs(2)).await;
    let mut back = back.unwrap_or_else(|| panic!("{:?}", relay.stats()));
    carrier_rx.unprotect_rtcp(&mut back).unwrap();
    assert_eq!(back, rtcp_rr(0xA6E7));
    assert!(relay.stats().dropped_srtp >= 3);
}

#[tokio::test]
async fn plain_carrier_to_srtp_agent() {
    let (engine, _events) = engine(31710, |_| {});
    let relay = engine.allocate_relay("srtp-b").unwrap();
    relay.set_encryption(Side::B, MediaEncryption::Srtp, true);
    let ((a, a_rtcp), (b, b_rtcp)) = (sockets().await, sockets().await);
    let (to_agent, _) = relay
        .anchor(Side::A, sdp(&a, &a_rtcp, "RTP/AVP", &[]).as_bytes(), None, true)
        .unwrap();
    assert!(m_line(&to_agent).contains(" RTP/SAVP "), "{}", m_line(&to_agent));
    let offered = crypto_lines(&to_agent);
    let suites: Vec<SrtpSuite> = offered.iter().map(|c| c.suite()).collect();
    assert_eq!(suites, SrtpSuite::ALL, "every suite, each with its own key");
    // The agent takes AES_CM_128_HMAC_SHA1_32 and sends with a key of its own.
    let chosen = offered
        .iter()
        .find(|c| c.suite() == SrtpSuite::AesCm128HmacSha1_32)
        .unwrap();
    let agent_key = CryptoAttribute::generate(chosen.tag, chosen.suite()).unwrap();
    let (to_carrier, _) = relay
        .anchor(
            Side::B,
            sdp(&b, &b_rtcp, "RTP/SAVP", &[&agent_key]).as_bytes(),
            None,
            false,
        )
        .unwrap();
    assert!(m_line(&to_carrier).contains(" RTP/AVP "));
    assert!(crypto_lines(&to_carrier).is_empty());

    let mut agent_tx = SrtpContext::from_crypto(&agent_key);
    let mut agent_rx = SrtpContext::from_crypto(chosen);
    let (to_a, to_b) = (
        SocketAddr::new(LO, relay.local_port(Side::A)),
        SocketAddr::new(LO, relay.local_port(Side::B)),
    );
    for seq in 1..6u16 {
        a.send_to(&rtp(seq, 0xC, 0x11), to_a).await.unwrap();
        let mut got = recv(&b, Duration::from_secs(2)).await.unwrap();
        assert_eq!(got.len(), 172 + 4, "32-bit tag");
        agent_rx.unprotect_rtp(&mut got).unwrap();
        assert_eq!(got, rtp(seq, 0xC, 0x11));
        let mut p = rtp(seq, 0xD, 0x22);
        agent_tx.protect_rtp(&mut p).unwrap();
        b.send_to(&p, to_b).await.unwrap();
        assert_eq!(recv(&a, Duration::from_secs(2)).await.unwrap(), rtp(seq, 0xD, 0x22));
    }
}

#[tokio::test]
async fn srtp_required_refuses_plain_offers_and_answers() {
    let (engine, _events) = engine(31720, |_| {});
    let relay = engine.allocate_relay("srtp-c").unwrap();
    relay.set_encryption(Side::A, MediaEncryption::SrtpRequired, false);
    let ((a, a_rtcp), (b, b_rtcp)) = (sockets().await, sockets().await);
    let err = relay
        .anchor(Side::A, sdp(&a, &a_rtcp, "RTP/AVP", &[]).as_bytes(), None, true)
        .unwrap_err();
    assert_eq!(err, SdpError::SrtpRequired);
    assert_eq!(err.sip_status(), 488);
    // Lines the edge cannot use only: 488 too.
    let offer = sdp(&a, &a_rtcp, "RTP/SAVP", &[])
        + "a=crypto:1 AES_256_CM_HMAC_SHA1_80 inline:AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA\r\n";
    assert_eq!(
        relay.anchor(Side::A, offer.as_bytes(), None, true).unwrap_err(),
        SdpError::NoUsableCrypto
    );
    // Toward a srtp_required agent: a plain answer is refused.
    relay.set_encryption(Side::A, MediaEncryption::None, false);
    relay.set_encryption(Side::B, MediaEncryption::SrtpRequired, true);
    relay
        .anchor(Side::A, sdp(&a, &a_rtcp, "RTP/AVP", &[]).as_bytes(), None, true)
        .unwrap();
    assert!(relay
        .anchor(Side::B, sdp(&b, &b_rtcp, "RTP/AVP", &[]).as_bytes(), None, false)
        .is_err());
}

fn read_wav(path: &Path) -> Vec<i16> {
    wav::parse_wav(&std::fs::read(path).unwrap()).unwrap().samples
}

#[tokio::test]
async fn voicemail_on_srtp_encrypts_the_prompt_and_records_decrypted_audio() {
    let dir = tempfile::tempdir().unwrap();
    let tts = dir.path().join("tts");
    let (engine, mut events) = engine(31730, |c| {
        c.espeak_binary = "/nonexistent/espeak".into();
        c.tts_cache_dir = tts;
    });
    let (sock, rtcp) = sockets().await;
    let caller = CryptoAttribute::generate(5, SrtpSuite::AeadAes128Gcm).unwrap();
    let offer = sdp(&sock, &rtcp, "RTP/SAVP", &[&caller]);
    let config = Arc::new(VoicemailConfig {
        greeting_text: String::new(),
        recordings_dir: dir.path().join("vm"),
        ..VoicemailConfig::default()
    });
    let (answer, session) = engine.start_voicemail("vm-srtp", offer.as_bytes(), config).unwrap();
    assert!(m_line(&answer).contains(" RTP/SAVP "), "{}", m_line(&answer));
    let keys = crypto_lines(&answer);
    assert_eq!(keys.len(), 1);
    assert_eq!((keys[0].tag, keys[0].suite()), (5, SrtpSuite::AeadAes128Gcm));
    assert_ne!(keys[0].key, caller.key);
    let mut rx = SrtpContext::from_crypto(&keys[0]);
    let mut tx = SrtpContext::from_crypto(&caller);
    // The beep arrives encrypted (GCM: 16-byte tag).
    let mut first = recv(&sock, Duration::from_secs(5)).await.unwrap();
    assert_eq!(first.len(), 172 + 16);
    rx.unprotect_rtp(&mut first).unwrap();
    // Wait out the beep (400 ms), then talk: 1 s of 1 kHz tone, encrypted.
    let edge = SocketAddr::new(LO, session.local_port());
    let mut beep = 1;
    while let Some(mut p) = recv(&sock, Duration::from_millis(100)).await {
        rx.unprotect_rtp(&mut p).unwrap();
        let pcm: Vec<i16> = p[12..].iter().map(|&b| g711::ulaw_to_linear(b)).collect();
        if edge_media::resample::rms(&pcm) < 100.0 {
            break;
        }
        beep += 1;
    }
    assert!(beep >= 15, "beep of 400 ms heard decrypted ({beep} packets)");
    let mut tick = tokio::time::interval(Duration::from_millis(20));
    for (i, frame) in tone(1000.0, 1000, 8000, 0.5).chunks(160).enumerate() {
        tick.tick().await;
        let payload: Vec<u8> = frame.iter().map(|&s| g711::linear_to_ulaw(s)).collect();
        let mut p = rtp(i as u16 + 1, 0x5EC, 0);
        p.truncate(12);
        p[4..8].copy_from_slice(&(i as u32 * 160).to_be_bytes());
        p.extend_from_slice(&payload);
        tx.protect_rtp(&mut p).unwrap();
        sock.send_to(&p, edge).await.unwrap();
    }
    session.stop();
    let event = timeout(Duration::from_secs(5), events.recv()).await.unwrap().unwrap();
    let MediaEvent::VoicemailEnded { outcome, .. } = event else {
        panic!("{event:?}")
    };
    let samples = read_wav(&outcome.unwrap().path);
    let loud = samples
        .chunks(80)
        .filter(|f| edge_media::resample::rms(f) > 1000.0)
        .count();
    assert!(
        loud * 10 >= 900,
        "about 1 s of the caller's tone recorded, got {} ms",
        loud * 10
    );
}
