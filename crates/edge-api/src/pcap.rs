//! A trace as a libpcap file: each SIP message in a synthetic Ethernet + IPv4/IPv6 + UDP/TCP frame
//! between the peer and the edge's address, stamped with the time it was captured. TCP (and TLS, shown
//! as the plain SIP it carried) gets one stream per address pair with running sequence numbers, so
//! tshark reassembles nothing and dissects every segment as one SIP message.

use crate::traces::{TraceDirection, TraceMessage};
use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

/// libpcap global header: magic (microsecond stamps), version 2.4, snaplen, LINKTYPE_ETHERNET.
fn global_header(out: &mut Vec<u8>) {
    out.extend_from_slice(&0xa1b2_c3d4u32.to_le_bytes());
    out.extend_from_slice(&2u16.to_le_bytes());
    out.extend_from_slice(&4u16.to_le_bytes());
    out.extend_from_slice(&0i32.to_le_bytes());
    out.extend_from_slice(&0u32.to_le_bytes());
    out.extend_from_slice(&262_144u32.to_le_bytes());
    out.extend_from_slice(&1u32.to_le_bytes());
}

/// Frames larger than this are not written (an IP packet's length field is 16 bits).
const MAX_PAYLOAD: usize = 65_000;

/// The capture file of `messages`.
pub fn write(messages: &[TraceMessage]) -> Vec<u8> {
    let mut out = Vec::with_capacity(24 + messages.iter().map(|m| m.body.len() + 600).sum::<usize>());
    global_header(&mut out);
    let mut seq: HashMap<(SocketAddr, SocketAddr), u32> = HashMap::new();
    for m in messages {
        let payload = m.to_wire();
        if payload.len() > MAX_PAYLOAD {
            continue;
        }
        let peer = m.peer.parse().unwrap_or(SocketAddr::from(([0, 0, 0, 0], 0)));
        let local = local_of(&m.local, peer);
        let (src, dst) = match m.direction {
            TraceDirection::In => (peer, local),
            TraceDirection::Out => (local, peer),
        };
        let tcp = m.transport != "udp";
        let transport = if tcp {
            let s = seq.entry((src, dst)).or_insert(1);
            let h = tcp_header(src.port(), dst.port(), *s);
            *s = s.wrapping_add(payload.len() as u32);
            h
        } else {
            udp_header(src.port(), dst.port(), payload.len())
        };
        let proto = if tcp { 6 } else { 17 };
        let ip = ip_header(src.ip(), dst.ip(), proto, transport.len() + payload.len());
        let ether_type: u16 = if ip.len() == 20 { 0x0800 } else { 0x86dd };
        let frame_len = 14 + ip.len() + transport.len() + payload.len();
        let secs = m.t_us.div_euclid(1_000_000);
        let usecs = m.t_us.rem_euclid(1_000_000);
        out.extend_from_slice(&(secs as u32).to_le_bytes());
        out.extend_from_slice(&(usecs as u32).to_le_bytes());
        out.extend_from_slice(&(frame_len as u32).to_le_bytes());
        out.extend_from_slice(&(frame_len as u32).to_le_bytes());
        // Ethernet: locally administered MACs, one for the edge and one for everyone else.
        let (edge_mac, peer_mac) = ([2u8, 0, 0, 0, 0, 1], [2u8, 0, 0, 0, 0, 2]);
        let (smac, dmac) = match m.direction {
            TraceDirection::In => (peer_mac, edge_mac),
            TraceDirection::Out => (edge_mac, peer_mac),
        };
        out.extend_from_slice(&dmac);
        out.extend_from_slice(&smac);
        out.extend_from_slice(&ether_type.to_be_bytes());
        out.extend_from_slice(&ip);
        out.extend_from_slice(&transport);
        out.extend_from_slice(&payload);
    }
    out
}

/// The edge's address as recorded, in the peer's address family (a frame cannot mix them).
fn local_of(local: &str, peer: SocketAddr) -> SocketAddr {
    let l: SocketAddr = local.parse().unwrap_or(SocketAddr::from(([0, 0, 0, 0], 5060)));
    match (l.ip(), peer.ip()) {
        (IpAddr::V4(_), IpAddr::V4(_)) | (IpAddr::V6(_), IpAddr::V6(_)) => l,
        (IpAddr::V4(v4), IpAddr::V6(_)) => SocketAddr::new(IpAddr::V6(v4.to_ipv6_mapped()), l.port()),
        (IpAddr::V6(v6), IpAddr::V4(_)) => SocketAddr::new(
            IpAddr::V4(v6.to_ipv4_mapped().unwrap_or(Ipv4Addr::UNSPECIFIED)),
            l.port(),
        ),
    }
}

fn udp_header(sport: u16, dport: u16, payload: usize) -> Vec<u8> {
    let mut h = Vec::with_capacity(8);
    h.extend_from_slice(&sport.to_be_bytes());
    h.extend_from_slice(&dport.to_be_bytes());
    h.extend_from_slice(&((8 + payload) as u16).to_be_bytes());
    h.extend_from_slice(&0u16.to_be_bytes()); // no checksum (allowed for IPv4; tshark does not check)
    h
}

fn tcp_header(sport: u16, dport: u16, seq: u32) -> Vec<u8> {
    let mut h = Vec::with_capacity(20);
    h.extend_from_slice(&sport.to_be_bytes());
    h.extend_from_slice(&dport.to_be_bytes());
    h.extend_from_slice(&seq.to_be_bytes());
    h.extend_from_slice(&0u32.to_be_bytes()); // ack number (ACK flag off)
    h.push(5 << 4); // data offset: 5 words
    h.push(0x08); // PSH
    h.extend_from_slice(&65_535u16.to_be_bytes());
    h.extend_from_slice(&0u16.to_be_bytes()); // checksum (not computed)
    h.extend_from_slice(&0u16.to_be_bytes()); // urgent pointer
    h
}

fn ip_header(src: IpAddr, dst: IpAddr, proto: u8, len: usize) -> Vec<u8> {
    match (src, dst) {
        (IpAddr::V4(s), IpAddr::V4(d)) => {
            let mut h = Vec::with_capacity(20);
            h.extend_from_slice(&[0x45, 0]);
            h.extend_from_slice(&((20 + len) as u16).to_be_bytes());
            h.extend_from_slice(&[0, 0, 0x40, 0, 64, proto, 0, 0]);
            h.extend_from_slice(&s.octets());
            h.extend_from_slice(&d.octets());
            let sum = checksum(&h);
            h[10..12].copy_from_slice(&sum.to_be_bytes());
            h
        }
        (s, d) => {
            let v6 = |a: IpAddr| match a {
                IpAddr::V6(v) => v,
                IpAddr::V4(v) => v.to_ipv6_mapped(),
            };
            let (s, d): (Ipv6Addr, Ipv6Addr) = (v6(s), v6(d));
            let mut h = Vec::with_capacity(40);
            h.extend_from_slice(&[0x60, 0, 0, 0]);
            h.extend_from_slice(&(len as u16).to_be_bytes());
            h.push(proto);
            h.push(64);
            h.extend_from_slice(&s.octets());
            h.extend_from_slice(&d.octets());
            h
        }
    }
}

/// The IPv4 header checksum (RFC 791).
fn checksum(h: &[u8]) -> u16 {
    let mut sum: u32 = h
        .chunks(2)
        .map(|c| u32::from(u16::from_be_bytes([c[0], *c.get(1).unwrap_or(&0)])))
        .sum();
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    !(sum as u16)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::traces::TraceHeader;

    #[test]
    fn one_frame_per_message_with_its_payload() {
        let m = TraceMessage {
            t_us: 1_700_000_000_123_456,
            leg: "carrier".into(),
            direction: TraceDirection::In,
            peer: "127.0.0.1:5080".into(),
            local: "127.0.0.1:5060".into(),
            transport: "udp".into(),
            start_line: "OPTIONS sip:a@b SIP/2.0".into(),
            headers: vec![TraceHeader {
                name: "Call-ID".into(),
                value: "x".into(),
            }],
            body: String::new(),
        };
        let f = write(&[m.clone(), m]);
        let payload = b"OPTIONS sip:a@b SIP/2.0\r\nCall-ID: x\r\n\r\n".len();
        assert_eq!(f.len(), 24 + 2 * (16 + 14 + 20 + 8 + payload));
        // The IPv4 header checks out (its checksum over itself is zero).
        let ip = &f[24 + 16 + 14..24 + 16 + 14 + 20];
        assert_eq!(checksum(ip), 0);
    }
}
