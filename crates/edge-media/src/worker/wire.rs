//! The control messages between the edge and a media worker, one per `SOCK_SEQPACKET` packet.
//!
//! Fixed little-endian layouts, a tag byte first. The sockets of a relay travel beside a `Start` as
//! `SCM_RIGHTS`. Both ends are the same binary, but a decoder still never panics: a short or unknown
//! packet is an error, and the receiving end drops it.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::time::Duration;

use crate::g711::G711Law;
use crate::latch::RelatchRule;
use crate::relay::{RelayStats, Side};
use crate::ringback::RingbackCodec;
use crate::srtp::{KeyDir, KeyUpdate};
use crate::transcode::LawRule;

/// Longest message: a `Keys` with two key lines at their longest (2 x (2 + 255) + 10 bytes).
pub(crate) const MAX_FRAME: usize = 528;

/// Longest `a=crypto` value a `Keys` carries. Any line `CryptoAttribute::parse` takes is shorter (a
/// 9-digit tag, the longest suite, 60 base64 characters of key, a 20-digit lifetime and MKI: about 130).
const MAX_KEY_LINE: usize = 255;

/// Sockets sent with a `Start`: side A's RTP and RTCP, then side B's.
pub(crate) const START_FDS: usize = 4;

/// From the edge to a worker.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum ToWorker {
    /// Relay between the four sockets that come with this packet.
    Start {
        id: u64,
        relatch: RelatchRule,
        media_timeout: Duration,
    },
    /// Where `side`'s peer wants media (RTP, RTCP), from its SDP; `None` clears it (hold, port 0).
    Remote {
        id: u64,
        side: Side,
        declared: Option<(SocketAddr, SocketAddr)>,
    },
    /// Stop the relay and close its sockets; answered by `Stopped`.
    Stop { id: u64 },
    /// Ringback toward `side` in that codec (`None`: off, relay again).
    Ringback {
        id: u64,
        side: Side,
        codec: Option<RingbackCodec>,
    },
    /// G.711 law conversion of the audio sent toward `side` (`None`: none).
    Law { id: u64, side: Side, rule: Option<LawRule> },
    /// New SRTP keys for `side` (the control socket is a socketpair to the edge's own child: keys cross
    /// no network).
    Keys { id: u64, side: Side, update: KeyUpdate },
}

/// From a worker to the edge.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum FromWorker {
    /// The relay is gone and its sockets closed; its final counters.
    Stopped { id: u64, stats: RelayStats },
    /// No packet from either side for the media timeout (or the relay could not start): end the call.
    Timeout { id: u64 },
}

/// A packet that is not one of ours.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("malformed media worker message (tag {tag}, {len} bytes)")]
pub(crate) struct Malformed {
    tag: u8,
    len: usize,
}

const START: u8 = 1;
const REMOTE: u8 = 2;
const STOP: u8 = 3;
const RINGBACK: u8 = 4;
const LAW: u8 = 5;
const KEYS: u8 = 6;
const STOPPED: u8 = 11;
const TIMEOUT: u8 = 12;

impl ToWorker {
    pub(crate) fn encode(&self) -> Vec<u8> {
        let mut b = Vec::with_capacity(MAX_FRAME);
        match self {
            ToWorker::Start {
                id,
                relatch,
                media_timeout,
            } => {
                b.push(START);
                b.extend_from_slice(&id.to_le_bytes());
                b.extend_from_slice(&millis(relatch.silence).to_le_bytes());
                b.extend_from_slice(&relatch.packets.to_le_bytes());
                b.extend_from_slice(&millis(*media_timeout).to_le_bytes());
            }
            ToWorker::Remote { id, side, declared } => {
                b.push(REMOTE);
                b.extend_from_slice(&id.to_le_bytes());
                b.push(side_byte(*side));
                match declared {
                    None => b.push(0),
                    Some((rtp, rtcp)) => {
                        b.push(1);
                        put_addr(&mut b, *rtp);
                        put_addr(&mut b, *rtcp);
                    }
                }
            }
            ToWorker::Stop { id } => {
                b.push(STOP);
                b.extend_from_slice(&id.to_le_bytes());
            }
            ToWorker::Ringback { id, side, codec } => {
                b.push(RINGBACK);
                b.extend_from_slice(&id.to_le_bytes());
                b.push(side_byte(*side));
                match codec {
                    None => b.push(0),
                    Some(c) => {
                        b.push(1);
                        b.push(law_byte(c.law));
                        b.push(c.payload_type);
                        match c.event_pt {
                            None => b.extend_from_slice(&[0, 0]),
                            Some(pt) => b.extend_from_slice(&[1, pt]),
                        }
                    }
                }
            }
            ToWorker::Law { id, side, rule } => {
                b.push(LAW);
                b.extend_from_slice(&id.to_le_bytes());
                b.push(side_byte(*side));
                match rule {
                    None => b.push(0),
                    Some(r) => b.extend_from_slice(&[1, law_byte(r.to_law), r.to_pt, r.from_pt]),
                }
            }
            ToWorker::Keys { id, side, update } => {
                b.push(KEYS);
                b.extend_from_slice(&id.to_le_bytes());
                b.push(side_byte(*side));
                put_key_dir(&mut b, &update.inbound);
                put_key_dir(&mut b, &update.outbound);
            }
        }
        b
    }

    pub(crate) fn decode(frame: &[u8]) -> Result<ToWorker, Malformed> {
        let mut r = Reader::new(frame);
        let msg = match r.u8()? {
            START => ToWorker::Start {
                id: r.u64()?,
                relatch: RelatchRule {
                    silence: Duration::from_millis(r.u64()?),
                    packets: r.u32()?,
                },
                media_timeout: Duration::from_millis(r.u64()?),
            },
            REMOTE => ToWorker::Remote {
                id: r.u64()?,
                side: r.side()?,
                declared: match r.u8()? {
                    0 => None,
                    1 => Some((r.addr()?, r.addr()?)),
                    _ => return Err(r.malformed()),
                },
            },
            STOP => ToWorker::Stop { id: r.u64()? },
            RINGBACK => ToWorker::Ringback {
                id: r.u64()?,
                side: r.side()?,
                codec: match r.u8()? {
                    0 => None,
                    1 => Some(RingbackCodec {
                        law: r.law()?,
                        payload_type: r.u8()?,
                        event_pt: match r.take::<2>()? {
                            [0, _] => None,
                            [1, pt] => Some(pt),
                            _ => return Err(r.malformed()),
                        },
                    }),
                    _ => return Err(r.malformed()),
                },
            },
            LAW => ToWorker::Law {
                id: r.u64()?,
                side: r.side()?,
                rule: match r.u8()? {
                    0 => None,
                    1 => Some(LawRule {
                        to_law: r.law()?,
                        to_pt: r.u8()?,
                        from_pt: r.u8()?,
                    }),
                    _ => return Err(r.malformed()),
                },
            },
            KEYS => ToWorker::Keys {
                id: r.u64()?,
                side: r.side()?,
                update: KeyUpdate {
                    inbound: r.key_dir()?,
                    outbound: r.key_dir()?,
                },
            },
            _ => return Err(r.malformed()),
        };
        r.end()?;
        Ok(msg)
    }
}

/// 0 keep, 1 plain, 2 blocked, 3 SRTP followed by the `a=crypto` value (length byte, then the text).
fn put_key_dir(b: &mut Vec<u8>, d: &KeyDir) {
    match d {
        KeyDir::Keep => b.push(0),
        KeyDir::Plain => b.push(1),
        KeyDir::Blocked => b.push(2),
        KeyDir::Srtp(k) => {
            let line = k.to_sdp_value();
            // Every line `parse` takes fits; were one longer, it goes as blocked (nothing passes) rather
            // than as a frame the worker drops.
            match u8::try_from(line.len())
                .ok()
                .filter(|&n| usize::from(n) <= MAX_KEY_LINE)
            {
                Some(n) => {
                    b.push(3);
                    b.push(n);
                    b.extend_from_slice(line.as_bytes());
                }
                None => b.push(2),
            }
        }
    }
}

impl FromWorker {
    pub(crate) fn encode(&self) -> Vec<u8> {
        let mut b = Vec::with_capacity(MAX_FRAME);
        match self {
            FromWorker::Stopped { id, stats } => {
                b.push(STOPPED);
                b.extend_from_slice(&id.to_le_bytes());
                for v in [
                    stats.relayed_a_to_b,
                    stats.relayed_b_to_a,
                    stats.dropped_foreign,
                    stats.dropped_malformed,
                    stats.dropped_no_destination,
                    stats.dropped_srtp,
                ] {
                    b.extend_from_slice(&v.to_le_bytes());
                }
            }
            FromWorker::Timeout { id } => {
                b.push(TIMEOUT);
                b.extend_from_slice(&id.to_le_bytes());
            }
        }
        b
    }

    pub(crate) fn decode(frame: &[u8]) -> Result<FromWorker, Malformed> {
        let mut r = Reader::new(frame);
        let msg = match r.u8()? {
            STOPPED => FromWorker::Stopped {
                id: r.u64()?,
                stats: RelayStats {
                    relayed_a_to_b: r.u64()?,
                    relayed_b_to_a: r.u64()?,
                    dropped_foreign: r.u64()?,
                    dropped_malformed: r.u64()?,
                    dropped_no_destination: r.u64()?,
                    dropped_srtp: r.u64()?,
                },
            },
            TIMEOUT => FromWorker::Timeout { id: r.u64()? },
            _ => return Err(r.malformed()),
        };
        r.end()?;
        Ok(msg)
    }
}

/// Durations travel as whole milliseconds (saturating: a timeout of centuries is still "never").
fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

fn law_byte(law: G711Law) -> u8 {
    match law {
        G711Law::Ulaw => 0,
        G711Law::Alaw => 1,
    }
}

fn side_byte(side: Side) -> u8 {
    match side {
        Side::A => 0,
        Side::B => 1,
    }
}

/// Family (4 or 6), 16 address bytes (IPv4 in the first four), port.
fn put_addr(b: &mut Vec<u8>, a: SocketAddr) {
    let mut ip = [0u8; 16];
    match a.ip() {
        IpAddr::V4(v4) => {
            b.push(4);
            ip[..4].copy_from_slice(&v4.octets());
        }
        IpAddr::V6(v6) => {
            b.push(6);
            ip = v6.octets();
        }
    }
    b.extend_from_slice(&ip);
    b.extend_from_slice(&a.port().to_le_bytes());
}

struct Reader<'a> {
    frame: &'a [u8],
    at: usize,
}

impl<'a> Reader<'a> {
    fn new(frame: &'a [u8]) -> Self {
        Reader { frame, at: 0 }
    }

    fn malformed(&self) -> Malformed {
        Malformed {
            tag: self.frame.first().copied().unwrap_or(0),
            len: self.frame.len(),
        }
    }

    fn take<const N: usize>(&mut self) -> Result<[u8; N], Malformed> {
        let bytes = self
            .frame
            .get(self.at..self.at + N)
            .and_then(|s| <[u8; N]>::try_from(s).ok())
            .ok_or_else(|| self.malformed())?;
        self.at += N;
        Ok(bytes)
    }

    fn u8(&mut self) -> Result<u8, Malformed> {
        Ok(self.take::<1>()?[0])
    }

    fn law(&mut self) -> Result<G711Law, Malformed> {
        match self.u8()? {
            0 => Ok(G711Law::Ulaw),
            1 => Ok(G711Law::Alaw),
            _ => Err(self.malformed()),
        }
    }

    fn side(&mut self) -> Result<Side, Malformed> {
        match self.u8()? {
            0 => Ok(Side::A),
            1 => Ok(Side::B),
            _ => Err(self.malformed()),
        }
    }

    fn u32(&mut self) -> Result<u32, Malformed> {
        Ok(u32::from_le_bytes(self.take()?))
    }

    fn u64(&mut self) -> Result<u64, Malformed> {
        Ok(u64::from_le_bytes(self.take()?))
    }

    fn addr(&mut self) -> Result<SocketAddr, Malformed> {
        let family = self.u8()?;
        let ip: [u8; 16] = self.take()?;
        let port = u16::from_le_bytes(self.take()?);
        let ip = match family {
            4 => IpAddr::V4(Ipv4Addr::new(ip[0], ip[1], ip[2], ip[3])),
            6 => IpAddr::V6(Ipv6Addr::from(ip)),
            _ => return Err(self.malformed()),
        };
        Ok(SocketAddr::new(ip, port))
    }

    fn key_dir(&mut self) -> Result<KeyDir, Malformed> {
        Ok(match self.u8()? {
            0 => KeyDir::Keep,
            1 => KeyDir::Plain,
            2 => KeyDir::Blocked,
            3 => {
                let n = usize::from(self.u8()?);
                if n > MAX_KEY_LINE {
                    return Err(self.malformed());
                }
                let line = self
                    .frame
                    .get(self.at..self.at + n)
                    .and_then(|l| std::str::from_utf8(l).ok())
                    .ok_or_else(|| self.malformed())?;
                let key = edge_srtp::CryptoAttribute::parse(line).map_err(|_| self.malformed())?;
                self.at += n;
                KeyDir::Srtp(key)
            }
            _ => return Err(self.malformed()),
        })
    }

    /// Trailing bytes are an error too: both ends are the same build.
    fn end(&self) -> Result<(), Malformed> {
        if self.at == self.frame.len() {
            Ok(())
        } else {
            Err(self.malformed())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_message_survives_the_trip() {
        let v4: SocketAddr = "192.0.2.7:40000".parse().unwrap();
        let v6: SocketAddr = "[2001:db8::1]:40001".parse().unwrap();
        for m in [
            ToWorker::Start {
                id: u64::MAX,
                relatch: RelatchRule {
                    silence: Duration::from_millis(1500),
                    packets: 7,
                },
                media_timeout: Duration::from_secs(30),
            },
            ToWorker::Remote {
                id: 3,
                side: Side::B,
                declared: Some((v6, v4)),
            },
            ToWorker::Remote {
                id: 4,
                side: Side::A,
                declared: None,
            },
            ToWorker::Stop { id: 9 },
            ToWorker::Ringback {
                id: 5,
                side: Side::A,
                codec: Some(RingbackCodec {
                    law: G711Law::Alaw,
                    payload_type: 8,
                    event_pt: Some(101),
                }),
            },
            ToWorker::Ringback {
                id: 6,
                side: Side::B,
                codec: Some(RingbackCodec {
                    law: G711Law::Ulaw,
                    payload_type: 96,
                    event_pt: None,
                }),
            },
            ToWorker::Ringback {
                id: 7,
                side: Side::B,
                codec: None,
            },
            ToWorker::Law {
                id: 8,
                side: Side::A,
                rule: Some(LawRule {
                    to_law: G711Law::Ulaw,
                    to_pt: 0,
                    from_pt: 8,
                }),
            },
            ToWorker::Law {
                id: 9,
                side: Side::B,
                rule: None,
            },
            ToWorker::Keys {
                id: 10,
                side: Side::A,
                update: KeyUpdate {
                    inbound: KeyDir::Srtp(
                        edge_srtp::CryptoAttribute::parse(
                            "1 AES_CM_128_HMAC_SHA1_80 inline:WVNfX19zZW1jdGwgKCkgewkyMjA7fQp9CnVubGVz|2^31|1:4",
                        )
                        .unwrap(),
                    ),
                    outbound: KeyDir::Srtp(
                        edge_srtp::CryptoAttribute::generate(7, edge_srtp::SrtpSuite::AeadAes128Gcm).unwrap(),
                    ),
                },
            },
            // The longest line a peer may send: 9-digit tag, 48-bit lifetime, MKI 2^63-1 of 128 bytes.
            ToWorker::Keys {
                id: 13,
                side: Side::B,
                update: KeyUpdate {
                    inbound: KeyDir::Srtp(
                        edge_srtp::CryptoAttribute::parse(
                            "123456789 AES_CM_128_HMAC_SHA1_80 inline:WVNfX19zZW1jdGwgKCkgewkyMjA7fQp9CnVubGVz\
                             |281474976710655|9223372036854775807:128",
                        )
                        .unwrap(),
                    ),
                    outbound: KeyDir::Srtp(
                        edge_srtp::CryptoAttribute::parse(
                            "123456789 AES_CM_128_HMAC_SHA1_80 inline:WVNfX19zZW1jdGwgKCkgewkyMjA7fQp9CnVubGVz\
                             |281474976710655|9223372036854775807:128",
                        )
                        .unwrap(),
                    ),
                },
            },
            ToWorker::Keys {
                id: 11,
                side: Side::B,
                update: KeyUpdate {
                    inbound: KeyDir::Blocked,
                    outbound: KeyDir::Plain,
                },
            },
            ToWorker::Keys {
                id: 12,
                side: Side::B,
                update: KeyUpdate {
                    inbound: KeyDir::Keep,
                    outbound: KeyDir::Srtp(
                        edge_srtp::CryptoAttribute::generate(2, edge_srtp::SrtpSuite::AesCm128HmacSha1_32).unwrap(),
                    ),
                },
            },
        ] {
            let b = m.encode();
            assert!(b.len() <= MAX_FRAME, "{m:?}: {} bytes", b.len());
            assert_eq!(ToWorker::decode(&b), Ok(m));
        }
        let stats = RelayStats {
            relayed_a_to_b: 1,
            relayed_b_to_a: 2,
            dropped_foreign: 3,
            dropped_malformed: 4,
            dropped_no_destination: 5,
            dropped_srtp: 6,
        };
        for m in [FromWorker::Stopped { id: 1, stats }, FromWorker::Timeout { id: 2 }] {
            assert_eq!(FromWorker::decode(&m.encode()), Ok(m));
        }
    }

    #[test]
    fn short_long_and_unknown_packets_are_errors() {
        let good = ToWorker::Remote {
            id: 3,
            side: Side::B,
            declared: Some(("192.0.2.7:1".parse().unwrap(), "192.0.2.7:2".parse().unwrap())),
        }
        .encode();
        for n in 0..good.len() {
            assert!(ToWorker::decode(&good[..n]).is_err(), "{n} bytes");
        }
        let mut long = good.clone();
        long.push(0);
        assert!(ToWorker::decode(&long).is_err());
        let mut bad_family = good;
        bad_family[11] = 5;
        assert!(ToWorker::decode(&bad_family).is_err());
        assert!(ToWorker::decode(&[99, 0, 0]).is_err());
        // A key line that does not parse is malformed, never a panic nor a plain leg.
        let mut keys = ToWorker::Keys {
            id: 1,
            side: Side::A,
            update: KeyUpdate {
                inbound: KeyDir::Srtp(
                    edge_srtp::CryptoAttribute::generate(1, edge_srtp::SrtpSuite::AesCm128HmacSha1_80).unwrap(),
                ),
                outbound: KeyDir::Keep,
            },
        }
        .encode();
        for n in 0..keys.len() {
            assert!(ToWorker::decode(&keys[..n]).is_err(), "{n} bytes");
        }
        keys[13] = b'x';
        assert!(ToWorker::decode(&keys).is_err());
        assert!(FromWorker::decode(&[START]).is_err());
        assert!(FromWorker::decode(&[]).is_err());
    }
}
