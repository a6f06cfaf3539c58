//! The SDP reader/rewriter of the media anchor (`rewrite_sdp`) and the voicemail answer built from an offer.
//!
//! Input: `[options, sdp...]`. `options` picks the edge's address (IPv4 / IPv6), the relay port and the codec
//! allow-list (`media.codecs`). Must hold for an SDP the edge accepts:
//! - what `rewrite_sdp` sends on is accepted by `rewrite_sdp` again (it is the other leg's offer, and that
//!   leg may be another edge), declares exactly our address and port, keeps the same payload types, and
//!   rewriting it once more changes nothing;
//! - the voicemail answer is readable SDP pointing at our address and port, with one G.711 codec.
#![no_main]

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use edge_media::{build_voicemail_answer_sdp, rewrite_sdp};
use libfuzzer_sys::fuzz_target;

const V4: IpAddr = IpAddr::V4(Ipv4Addr::new(203, 0, 113, 7));
const V6: IpAddr = IpAddr::V6(Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 7));

fuzz_target!(|data: &[u8]| {
    let [opts, sdp @ ..] = data else {
        return;
    };
    let addr = if opts & 1 == 0 { V4 } else { V6 };
    let port = if opts & 2 == 0 { 30_000 } else { 65_534 };
    let allowed: Option<Vec<String>> = match (opts >> 2) % 4 {
        0 => None,
        1 => Some(vec!["PCMU".into()]),
        2 => Some(vec!["pcma".into(), "G729".into()]),
        _ => Some(vec!["opus".into()]),
    };
    if let Ok((out, remote)) = rewrite_sdp(sdp, addr, port, allowed.as_deref()) {
        let (again, ours) = match rewrite_sdp(&out, addr, port, None) {
            Ok(r) => r,
            Err(e) => panic!("our rewritten SDP is refused: {e}\n{}", String::from_utf8_lossy(&out)),
        };
        assert_eq!(ours.addr, addr, "rewritten SDP declares another address");
        assert_eq!(ours.rtp_port, port, "rewritten SDP declares another port");
        assert_eq!(ours.payload_types, remote.payload_types, "payload types changed");
        assert_eq!(again, out, "rewriting our own SDP again changed it");
    }
    if let Ok((answer, media)) = build_voicemail_answer_sdp(addr, port, sdp) {
        let (_, ours) = match rewrite_sdp(&answer, addr, port, None) {
            Ok(r) => r,
            Err(e) => panic!(
                "our voicemail answer is refused: {e}\n{}",
                String::from_utf8_lossy(&answer)
            ),
        };
        assert_eq!((ours.addr, ours.rtp_port), (addr, port));
        assert!(ours.payload_types.contains(&media.payload_type));
    }
});
