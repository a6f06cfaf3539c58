//! HEPv3 (Homer Encapsulation Protocol) packets: a SIP message with its addresses, time and the call id
//! as correlation id, for a Homer collector (`[observability] hep = "udp:host:port"`).

use std::net::{IpAddr, SocketAddr};

/// HEP chunk types (vendor 0, the generic chunks).
mod chunk {
    pub const IP_FAMILY: u16 = 0x0001;
    pub const IP_PROTO: u16 = 0x0002;
    pub const IPV4_SRC: u16 = 0x0003;
    pub const IPV4_DST: u16 = 0x0004;
    pub const IPV6_SRC: u16 = 0x0005;
    pub const IPV6_DST: u16 = 0x0006;
    pub const SRC_PORT: u16 = 0x0007;
    pub const DST_PORT: u16 = 0x0008;
    pub const TS_SEC: u16 = 0x0009;
    pub const TS_USEC: u16 = 0x000a;
    pub const PROTO_TYPE: u16 = 0x000b;
    pub const CAPTURE_ID: u16 = 0x000c;
    pub const PAYLOAD: u16 = 0x000f;
    pub const CORRELATION_ID: u16 = 0x0011;
}

/// HEP protocol type of SIP.
pub const PROTO_SIP: u8 = 1;

/// One message to encode.
pub struct HepMessage<'a> {
    pub src: SocketAddr,
    pub dst: SocketAddr,
    /// IP protocol: 17 (UDP) or 6 (TCP; TLS too, the payload being the SIP inside).
    pub ip_proto: u8,
    pub t_us: i64,
    pub capture_id: u32,
    pub correlation_id: Option<&'a str>,
    pub payload: &'a [u8],
}

fn put(out: &mut Vec<u8>, kind: u16, data: &[u8]) {
    out.extend_from_slice(&0u16.to_be_bytes());
    out.extend_from_slice(&kind.to_be_bytes());
    // Callers bound data so the chunk fits (see `encode`).
    out.extend_from_slice(&((6 + data.len()) as u16).to_be_bytes());
    out.extend_from_slice(data);
}

/// The HEPv3 packet, or `None` when the message is too large for one (lengths are 16 bits).
pub fn encode(m: &HepMessage<'_>) -> Option<Vec<u8>> {
    let corr = m.correlation_id.unwrap_or("");
    if m.payload.len() + corr.len() > 60_000 {
        return None;
    }
    let mut out = Vec::with_capacity(128 + m.payload.len() + corr.len());
    out.extend_from_slice(b"HEP3");
    out.extend_from_slice(&[0, 0]); // total length, set below
    let (src, dst) = (m.src.ip().to_canonical(), m.dst.ip().to_canonical());
    match (src, dst) {
        (IpAddr::V4(s), IpAddr::V4(d)) => {
            put(&mut out, chunk::IP_FAMILY, &[2]);
            put(&mut out, chunk::IP_PROTO, &[m.ip_proto]);
            put(&mut out, chunk::IPV4_SRC, &s.octets());
            put(&mut out, chunk::IPV4_DST, &d.octets());
        }
        (s, d) => {
            let v6 = |a: IpAddr| match a {
                IpAddr::V6(v) => v,
                IpAddr::V4(v) => v.to_ipv6_mapped(),
            };
            put(&mut out, chunk::IP_FAMILY, &[10]);
            put(&mut out, chunk::IP_PROTO, &[m.ip_proto]);
            put(&mut out, chunk::IPV6_SRC, &v6(s).octets());
            put(&mut out, chunk::IPV6_DST, &v6(d).octets());
        }
    }
    put(&mut out, chunk::SRC_PORT, &m.src.port().to_be_bytes());
    put(&mut out, chunk::DST_PORT, &m.dst.port().to_be_bytes());
    let secs = u32::try_from(m.t_us.div_euclid(1_000_000)).unwrap_or(0);
    let usecs = u32::try_from(m.t_us.rem_euclid(1_000_000)).unwrap_or(0);
    put(&mut out, chunk::TS_SEC, &secs.to_be_bytes());
    put(&mut out, chunk::TS_USEC, &usecs.to_be_bytes());
    put(&mut out, chunk::PROTO_TYPE, &[PROTO_SIP]);
    put(&mut out, chunk::CAPTURE_ID, &m.capture_id.to_be_bytes());
    put(&mut out, chunk::PAYLOAD, m.payload);
    if !corr.is_empty() {
        put(&mut out, chunk::CORRELATION_ID, corr.as_bytes());
    }
    let len = u16::try_from(out.len()).ok()?;
    out[4..6].copy_from_slice(&len.to_be_bytes());
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chunks_walk_to_the_total_length() {
        let p = encode(&HepMessage {
            src: "127.0.0.1:5060".parse().unwrap(),
            dst: "[::1]:5080".parse().unwrap(),
            ip_proto: 17,
            t_us: 1_700_000_000_000_001,
            capture_id: 7,
            correlation_id: Some("call_x"),
            payload: b"OPTIONS sip:a SIP/2.0\r\n\r\n",
        })
        .unwrap();
        assert_eq!(&p[..4], b"HEP3");
        assert_eq!(usize::from(u16::from_be_bytes([p[4], p[5]])), p.len());
        let (mut i, mut kinds) = (6, Vec::new());
        while i < p.len() {
            let kind = u16::from_be_bytes([p[i + 2], p[i + 3]]);
            let len = usize::from(u16::from_be_bytes([p[i + 4], p[i + 5]]));
            kinds.push((kind, p[i + 6..i + len].to_vec()));
            i += len;
        }
        assert_eq!(i, p.len());
        assert!(kinds.contains(&(chunk::IP_FAMILY, vec![10])));
        assert!(kinds.contains(&(chunk::CORRELATION_ID, b"call_x".to_vec())));
        assert!(kinds.contains(&(chunk::TS_USEC, 1u32.to_be_bytes().to_vec())));
    }
}
