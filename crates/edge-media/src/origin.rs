//! The session each leg sees is the edge's, not the far end's (RFC 3264 5 and 8): with media anchored,
//! the SDP a leg gets always names the relay, so it carries one `o=` line per call and side, whose
//! session id never changes and whose version goes up only when the description really changes. The
//! carrier then sees one session whichever agent answers: a 183 from the first agent and the 200 of the
//! fallback repeat the same origin (RFC 3261 13.2.1), and a re-INVITE that changes nothing keeps it.

use std::hash::{Hash, Hasher};
use std::net::IpAddr;

use bytes::Bytes;

/// What the edge last presented to one side.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Origin {
    pub(crate) sess_id: u64,
    pub(crate) version: u64,
    /// Hash of the last description sent, its `o=` line left out.
    body: u64,
}

/// The origins toward side A and side B of one relay.
#[derive(Debug, Default)]
pub(crate) struct Origins {
    sides: [Option<Origin>; 2],
}

impl Origins {
    /// Puts the edge's `o=` line for side `index` into `sdp` (one the relay wrote: CRLF lines), bumping
    /// the version when the rest of the description differs from the last one sent there.
    /// `sess_id` is used the first time only.
    pub(crate) fn stamp(&mut self, index: usize, sdp: &[u8], addr: IpAddr, sess_id: u64) -> Bytes {
        let body = hash_without_origin(sdp);
        let origin = match self.sides[index] {
            None => Origin {
                sess_id,
                version: 1,
                body,
            },
            Some(o) if o.body == body => o,
            Some(o) => Origin {
                version: o.version + 1,
                body,
                ..o
            },
        };
        self.sides[index] = Some(origin);
        replace_origin(sdp, &origin_line(origin, addr))
    }
}

fn origin_line(o: Origin, addr: IpAddr) -> String {
    let family = if addr.is_ipv4() { "IP4" } else { "IP6" };
    format!("o=oneinbox-edge {} {} IN {family} {addr}", o.sess_id, o.version)
}

fn lines(sdp: &[u8]) -> impl Iterator<Item = &[u8]> {
    sdp.split(|b| *b == b'\n').map(|l| l.strip_suffix(b"\r").unwrap_or(l))
}

fn hash_without_origin(sdp: &[u8]) -> u64 {
    let mut h = std::collections::hash_map::DefaultHasher::new();
    for l in lines(sdp).filter(|l| !l.starts_with(b"o=")) {
        l.hash(&mut h);
    }
    h.finish()
}

/// `sdp` with its `o=` line replaced by `line` (inserted after `v=` when it had none).
fn replace_origin(sdp: &[u8], line: &str) -> Bytes {
    let mut out = Vec::with_capacity(sdp.len() + 32);
    let mut placed = false;
    for l in lines(sdp) {
        if l.is_empty() {
            continue;
        }
        if l.starts_with(b"o=") {
            if !placed {
                out.extend_from_slice(line.as_bytes());
                out.extend_from_slice(b"\r\n");
                placed = true;
            }
            continue;
        }
        out.extend_from_slice(l);
        out.extend_from_slice(b"\r\n");
        if l.starts_with(b"v=") && !placed && !sdp_has_origin(sdp) {
            out.extend_from_slice(line.as_bytes());
            out.extend_from_slice(b"\r\n");
            placed = true;
        }
    }
    Bytes::from(out)
}

fn sdp_has_origin(sdp: &[u8]) -> bool {
    lines(sdp).any(|l| l.starts_with(b"o="))
}

#[cfg(test)]
mod tests {
    use super::*;

    const IP: IpAddr = IpAddr::V4(std::net::Ipv4Addr::new(203, 0, 113, 5));

    fn sdp(origin: &str, codec: &str) -> Vec<u8> {
        format!("v=0\r\no={origin}\r\ns=-\r\nc=IN IP4 203.0.113.5\r\nt=0 0\r\nm=audio 30000 RTP/AVP {codec}\r\n")
            .into_bytes()
    }

    fn origin_of(b: &[u8]) -> String {
        String::from_utf8_lossy(b)
            .lines()
            .find(|l| l.starts_with("o="))
            .unwrap()
            .to_owned()
    }

    #[test]
    fn one_origin_per_side_whoever_answers() {
        let mut o = Origins::default();
        // The first agent's 183, then the fallback's 200 with another o= but the same description.
        let first = o.stamp(0, &sdp("agent1 111 1 IN IP4 198.51.100.21", "0"), IP, 42);
        let second = o.stamp(0, &sdp("fallback 999 7 IN IP4 198.51.100.22", "0"), IP, 77);
        assert_eq!(origin_of(&first), "o=oneinbox-edge 42 1 IN IP4 203.0.113.5");
        assert_eq!(origin_of(&second), origin_of(&first), "same description, same origin");
        // A real change (another codec) bumps the version, never the session id.
        let third = o.stamp(0, &sdp("fallback 999 8 IN IP4 198.51.100.22", "8"), IP, 5);
        assert_eq!(origin_of(&third), "o=oneinbox-edge 42 2 IN IP4 203.0.113.5");
        // The other side has its own.
        let b = o.stamp(1, &sdp("carrier 1 1 IN IP4 192.0.2.10", "0"), IP, 9);
        assert_eq!(origin_of(&b), "o=oneinbox-edge 9 1 IN IP4 203.0.113.5");
        // Everything but the o= line is kept, in order.
        assert!(String::from_utf8_lossy(&third).ends_with("t=0 0\r\nm=audio 30000 RTP/AVP 8\r\n"));
    }

    #[test]
    fn a_description_without_origin_gets_one() {
        let mut o = Origins::default();
        let out = o.stamp(1, b"v=0\r\ns=-\r\nc=IN IP4 203.0.113.5\r\n", IP, 3);
        assert_eq!(
            String::from_utf8_lossy(&out),
            "v=0\r\no=oneinbox-edge 3 1 IN IP4 203.0.113.5\r\ns=-\r\nc=IN IP4 203.0.113.5\r\n"
        );
    }
}
