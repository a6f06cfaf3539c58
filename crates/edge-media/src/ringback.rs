//! Ringback a relay plays toward one side ([`crate::RelayHandle::ringback`]): the North American
//! ringback tone (440 Hz + 480 Hz, 2 s on, 4 s off; ANSI T1.401, each tone at -19 dBm0) as 20 ms G.711
//! RTP packets of a stream of the relay's own.
//!
//! The tone is periodic in 200 samples (440 and 480 Hz are both multiples of 40 Hz = 8000 / 200), so one
//! period per law, encoded once per process, is the whole generator: a packet is a header and 160 bytes
//! copied from that table (or the law's silence byte in the off part of the cadence), built in a buffer
//! of the relay's, with no allocation.
//!
//! RFC 3550 and the stream toward the side:
//! * the ringback stream has an SSRC of its own (random, one per side of the relay) kept for the
//!   relay's life; its sequence numbers go up by one per packet across every on/off; its timestamp
//!   follows the 8 kHz media clock (a later ringback continues where the wall clock says, like a
//!   talkspurt after silence) and the first packet of each ringback carries the marker bit;
//! * relayed packets are never rewritten (their SSRC, sequence and timestamp stay the sender's, so the
//!   RTCP that describes them stays true and DTMF events keep their timing). When ringback stops, the
//!   first relayed audio packet toward the side gets the marker bit (RFC 3551 section 4.1: the start of
//!   a talkspurt), so a receiver that sees the same SSRC come back after a gap takes it as a new
//!   talkspurt and re-syncs its playout instead of concealing "lost" packets; a new SSRC (a transfer
//!   target) is a new source to the receiver anyway.

use std::hash::{BuildHasher, Hasher};
use std::sync::OnceLock;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use crate::g711::G711Law;

/// Samples per packet (20 ms at 8 kHz).
pub(crate) const FRAME: usize = 160;
/// Packet interval.
pub(crate) const PTIME: Duration = Duration::from_millis(20);
/// RTP header (no CSRC, no extension) + one frame.
pub(crate) const PACKET: usize = 12 + FRAME;
/// One period of 440 Hz + 480 Hz at 8 kHz.
const PERIOD: usize = 200;
/// Tone on, then silence, in samples: 2 s on, 4 s off.
const ON: u32 = 2 * 8000;
const CADENCE: u32 = 6 * 8000;
/// Peak of each tone: -19 dBm0 (0 dBm0 is a sine of peak ~22,400 in 16-bit linear G.711).
const AMPLITUDE: f64 = 2_520.0;

/// What to send toward a side: G.711 law and payload type from that side's SDP, and its RFC 4733
/// payload type (relayed DTMF does not get the talkspurt marker).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct RingbackCodec {
    pub(crate) law: G711Law,
    pub(crate) payload_type: u8,
    pub(crate) event_pt: Option<u8>,
}

impl Default for RingbackCodec {
    /// Nothing known about the side: PCMU, payload type 0.
    fn default() -> Self {
        RingbackCodec {
            law: G711Law::Ulaw,
            payload_type: 0,
            event_pt: None,
        }
    }
}

/// One period of the tone, encoded: µ-law then A-law.
fn tables() -> &'static [[u8; PERIOD]; 2] {
    static TABLES: OnceLock<[[u8; PERIOD]; 2]> = OnceLock::new();
    TABLES.get_or_init(|| {
        let (mut ulaw, mut alaw) = ([0u8; PERIOD], [0u8; PERIOD]);
        for (n, (u, a)) in ulaw.iter_mut().zip(alaw.iter_mut()).enumerate() {
            let x = 2.0 * std::f64::consts::PI * n as f64 / 8000.0;
            let v = AMPLITUDE * ((440.0 * x).sin() + (480.0 * x).sin());
            // |v| <= 2 * AMPLITUDE, far inside i16.
            let s = v.round() as i16;
            *u = G711Law::Ulaw.encode(s);
            *a = G711Law::Alaw.encode(s);
        }
        [ulaw, alaw]
    })
}

fn table(law: G711Law) -> &'static [u8; PERIOD] {
    &tables()[match law {
        G711Law::Ulaw => 0,
        G711Law::Alaw => 1,
    }]
}

/// Writes the 160 samples that start `pos` samples into the cadence.
pub(crate) fn fill(law: G711Law, pos: u32, out: &mut [u8; FRAME]) {
    let silence = law.encode(0);
    let tone = table(law);
    for (i, b) in out.iter_mut().enumerate() {
        let n = (pos + i as u32) % CADENCE;
        *b = if n < ON { tone[n as usize % PERIOD] } else { silence };
    }
}

/// Random bits from std's OS-seeded `RandomState` (as voicemail does).
fn random() -> u64 {
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u128(SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_nanos()));
    h.finish()
}

/// The ringback stream toward one side, and whether it is playing.
#[derive(Debug)]
pub(crate) struct Ringback {
    /// `Some` while playing.
    pub(crate) playing: Option<RingbackCodec>,
    ssrc: u32,
    seq: u16,
    timestamp: u32,
    /// Samples into the cadence of the next packet.
    pos: u32,
    /// When the last packet was built (its timestamp is `timestamp - FRAME`).
    last: Option<Instant>,
    marker: bool,
    /// Set when ringback stops: the next relayed audio packet toward this side gets the marker bit.
    pub(crate) mark_resume: bool,
    /// The side's RFC 4733 payload type, as last told (relayed DTMF is never marked).
    pub(crate) event_pt: Option<u8>,
}

impl Default for Ringback {
    fn default() -> Self {
        let r = random();
        Ringback {
            playing: None,
            ssrc: r as u32,
            seq: (r >> 32) as u16,
            timestamp: (r >> 48) as u32 * 65_521,
            pos: 0,
            last: None,
            marker: true,
            mark_resume: false,
            event_pt: None,
        }
    }
}

impl Ringback {
    /// Starts (from the ringing part of the cadence), changes codec, or stops.
    pub(crate) fn set(&mut self, codec: Option<RingbackCodec>, now: Instant) {
        match (self.playing, codec) {
            (None, Some(_)) => {
                self.pos = 0;
                self.marker = true;
                self.mark_resume = false;
                // The media clock ran on while nothing was sent: skip the timestamp ahead by the time
                // since the last packet (whole frames), less the frame already counted.
                if let Some(last) = self.last {
                    let frames = now.saturating_duration_since(last).as_micros() / PTIME.as_micros();
                    let skip = (frames.saturating_sub(1) as u32).wrapping_mul(FRAME as u32);
                    self.timestamp = self.timestamp.wrapping_add(skip);
                }
            }
            (Some(_), None) => self.mark_resume = true,
            _ => {}
        }
        if let Some(c) = codec {
            self.event_pt = c.event_pt;
        }
        self.playing = codec;
    }

    /// The next packet into `out`; its length, or `None` when not playing.
    pub(crate) fn next(&mut self, now: Instant, out: &mut [u8; PACKET]) -> Option<usize> {
        let codec = self.playing?;
        out[0] = 0x80;
        out[1] = (u8::from(self.marker) << 7) | (codec.payload_type & 0x7F);
        out[2..4].copy_from_slice(&self.seq.to_be_bytes());
        out[4..8].copy_from_slice(&self.timestamp.to_be_bytes());
        out[8..12].copy_from_slice(&self.ssrc.to_be_bytes());
        let payload: &mut [u8; FRAME] = (&mut out[12..]).try_into().ok()?;
        fill(codec.law, self.pos, payload);
        self.marker = false;
        self.seq = self.seq.wrapping_add(1);
        self.timestamp = self.timestamp.wrapping_add(FRAME as u32);
        self.pos = (self.pos + FRAME as u32) % CADENCE;
        self.last = Some(now);
        Some(PACKET)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::resample::tone_ratio;

    fn decode(law: G711Law, bytes: &[u8]) -> Vec<i16> {
        bytes.iter().map(|&b| law.decode(b)).collect()
    }

    #[test]
    fn tone_is_440_plus_480_then_silence_on_a_6_s_cadence() {
        for law in [G711Law::Ulaw, G711Law::Alaw] {
            let mut pcm = Vec::new();
            let mut frame = [0u8; FRAME];
            for k in 0..(CADENCE as usize / FRAME) {
                fill(law, (k * FRAME) as u32, &mut frame);
                pcm.extend(decode(law, &frame));
            }
            let on = &pcm[..ON as usize];
            let (a, b) = (tone_ratio(on, 440.0, 8000), tone_ratio(on, 480.0, 8000));
            assert!(a > 0.4 && b > 0.4 && a + b > 0.95, "{law:?}: 440 {a:.3} 480 {b:.3}");
            assert!(tone_ratio(on, 1000.0, 8000) < 0.01);
            assert!(
                pcm[ON as usize..].iter().all(|&s| s.abs() <= 8),
                "{law:?}: silence after 2 s"
            );
            let rms = crate::resample::rms(on);
            // Two tones of peak 2,520: rms 2,520.
            assert!((2_300.0..2_700.0).contains(&rms), "{law:?}: rms {rms}");
        }
    }

    #[test]
    fn stream_is_continuous_across_stops_and_marks_each_start() {
        let mut r = Ringback::default();
        let codec = RingbackCodec {
            law: G711Law::Alaw,
            payload_type: 8,
            event_pt: None,
        };
        let mut out = [0u8; PACKET];
        let t0 = Instant::now();
        assert_eq!(r.next(t0, &mut out), None, "silent until started");
        r.set(Some(codec), t0);
        let header = |out: &[u8; PACKET]| {
            (
                out[1] >> 7,
                out[1] & 0x7F,
                u16::from_be_bytes([out[2], out[3]]),
                u32::from_be_bytes([out[4], out[5], out[6], out[7]]),
                u32::from_be_bytes([out[8], out[9], out[10], out[11]]),
            )
        };
        r.next(t0, &mut out).unwrap();
        let (m, pt, seq0, ts0, ssrc) = header(&out);
        assert_eq!((m, pt), (1, 8));
        r.next(t0 + PTIME, &mut out).unwrap();
        assert_eq!(header(&out), (0, 8, seq0.wrapping_add(1), ts0.wrapping_add(160), ssrc));
        r.set(None, t0 + PTIME);
        assert!(r.mark_resume);
        assert_eq!(r.next(t0 + 2 * PTIME, &mut out), None);
        // One second later: same SSRC, next sequence number, timestamp one second on, marker.
        let later = t0 + PTIME + Duration::from_secs(1);
        r.set(Some(codec), later);
        assert!(!r.mark_resume);
        r.next(later, &mut out).unwrap();
        assert_eq!(
            header(&out),
            (1, 8, seq0.wrapping_add(2), ts0.wrapping_add(160 + 8000), ssrc)
        );
    }
}
