//! Checks of a ringback stream received on loopback (shared by edge-media's relay tests and the root
//! package's media-worker test).

#![allow(dead_code)]

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use edge_media::resample::{rms, tone_ratio};
use edge_media::G711Law;
use tokio::net::UdpSocket;

/// One RTP packet as received.
#[derive(Debug, Clone)]
pub struct Rx {
    pub marker: bool,
    pub pt: u8,
    pub seq: u16,
    pub ts: u32,
    pub ssrc: u32,
    pub payload: Vec<u8>,
    pub at: Instant,
}

pub fn parse(p: &[u8], at: Instant) -> Rx {
    assert!(p.len() >= 12 && p[0] == 0x80, "RTP v2 without CSRC/extension: {p:?}");
    Rx {
        marker: p[1] & 0x80 != 0,
        pt: p[1] & 0x7F,
        seq: u16::from_be_bytes([p[2], p[3]]),
        ts: u32::from_be_bytes([p[4], p[5], p[6], p[7]]),
        ssrc: u32::from_be_bytes([p[8], p[9], p[10], p[11]]),
        payload: p[12..].to_vec(),
        at,
    }
}

/// An RTP packet of 160 bytes of `fill`.
pub fn rtp(seq: u16, ts: u32, ssrc: u32, fill: u8) -> Vec<u8> {
    let mut p = vec![0x80, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0];
    p[2..4].copy_from_slice(&seq.to_be_bytes());
    p[4..8].copy_from_slice(&ts.to_be_bytes());
    p[8..12].copy_from_slice(&ssrc.to_be_bytes());
    p.extend(std::iter::repeat_n(fill, 160));
    p
}

/// The next packet within `within`.
pub async fn next(sock: &UdpSocket, within: Duration) -> Option<Rx> {
    let mut buf = [0u8; 2048];
    match tokio::time::timeout(within, sock.recv_from(&mut buf)).await {
        Ok(Ok((n, _))) => Some(parse(&buf[..n], Instant::now())),
        _ => None,
    }
}

/// Every packet received for `during`.
pub async fn collect(sock: &UdpSocket, during: Duration) -> Vec<Rx> {
    let end = Instant::now() + during;
    let mut got = Vec::new();
    while let Some(left) = end.checked_duration_since(Instant::now()) {
        match next(sock, left).await {
            Some(p) => got.push(p),
            None => break,
        }
    }
    got
}

/// Sends RTP of SSRC `ssrc` to `to` every 20 ms until the task is aborted.
pub fn sender(sock: std::sync::Arc<UdpSocket>, to: SocketAddr, ssrc: u32) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(Duration::from_millis(20));
        for i in 0u16.. {
            tick.tick().await;
            let _ = sock.send_to(&rtp(i, u32::from(i) * 160, ssrc, 0x55), to).await;
        }
    })
}

/// One stream: a single SSRC, sequence +1 and timestamp +160 per packet, 160-byte payloads of `pt`;
/// the marker bit on the first packet only.
pub fn assert_one_stream(got: &[Rx], pt: u8) {
    let first = &got[0];
    assert!(first.marker, "the first ringback packet carries the marker bit");
    for (i, w) in got.windows(2).enumerate() {
        let (a, b) = (&w[0], &w[1]);
        assert_eq!(b.ssrc, first.ssrc, "packet {}: one SSRC", i + 1);
        assert_eq!(b.seq, a.seq.wrapping_add(1), "packet {}: sequence +1", i + 1);
        assert_eq!(b.ts, a.ts.wrapping_add(160), "packet {}: timestamp +160", i + 1);
        assert!(!b.marker, "packet {}: marker only on the first", i + 1);
    }
    for p in got {
        assert_eq!((p.pt, p.payload.len()), (pt, 160));
    }
}

/// 440 + 480 Hz in every 200 ms of `pcm` (whole periods of both tones), nothing at 1 kHz.
pub fn assert_ringing(pcm: &[i16], what: &str) {
    for (k, w) in pcm.chunks_exact(1600).enumerate() {
        let (a, b) = (tone_ratio(w, 440.0, 8000), tone_ratio(w, 480.0, 8000));
        assert!(
            a > 0.4 && b > 0.4 && a + b > 0.95 && tone_ratio(w, 1000.0, 8000) < 0.01,
            "{what}, window {k}: 440 Hz {a:.3}, 480 Hz {b:.3}"
        );
        assert!(rms(w) > 2000.0, "{what}, window {k}: rms {}", rms(w));
    }
}

pub fn assert_silent(pcm: &[i16], what: &str) {
    assert!(rms(pcm) < 20.0, "{what}: rms {}", rms(pcm));
}

pub fn decode(law: G711Law, got: &[Rx]) -> Vec<i16> {
    got.iter()
        .flat_map(|p| p.payload.iter().map(move |&b| law.decode(b)))
        .collect()
}

/// A full cadence and the start of the next: packets 0-99 (2 s) ring, 100-299 (4 s) are silent, 300+
/// ring again; and they came at ~50 a second.
pub fn assert_cadence(got: &[Rx], law: G711Law) {
    assert!(got.len() >= 310, "{} packets", got.len());
    let pcm = decode(law, got);
    assert_ringing(&pcm[..100 * 160], "first 2 s");
    assert_silent(&pcm[100 * 160..300 * 160], "next 4 s");
    assert_ringing(&pcm[300 * 160..310 * 160], "from 6 s");
    // Wall clock: 300 packets are 6 s of media.
    let took = got[300].at.duration_since(got[0].at);
    assert!(
        (Duration::from_millis(5_700)..Duration::from_millis(6_300)).contains(&took),
        "300 packets in {took:?}"
    );
}
