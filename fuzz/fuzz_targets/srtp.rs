//! SRTP/SRTCP and SDES (`edge-srtp`): what a peer's packets and `a=crypto` lines can do to a context.
//!
//! Input: `[mode, bytes...]`. Mode 0: `bytes` as an `a=crypto` value; one that parses formats back to a
//! value that parses to the same suite. Modes 1-6: a suite (three) and RTP or SRTCP (two); `bytes` are
//! unprotected by a receiving context (never a panic, and state stays bounded), and when the same bytes
//! protect as a plain packet, the receiver must get exactly them back.
#![no_main]

use edge_srtp::{CryptoAttribute, MasterKey, SrtpContext, SrtpSuite};
use libfuzzer_sys::fuzz_target;

const SUITES: [SrtpSuite; 3] = [
    SrtpSuite::AesCm128HmacSha1_80,
    SrtpSuite::AesCm128HmacSha1_32,
    SrtpSuite::AeadAes128Gcm,
];

fn key(suite: SrtpSuite) -> MasterKey {
    let bytes: Vec<u8> = (0u8..30).map(|i| i.wrapping_mul(37).wrapping_add(11)).collect();
    MasterKey::from_bytes(suite, &bytes[..suite.key_len() + suite.salt_len()]).expect("fixed key")
}

fuzz_target!(|data: &[u8]| {
    let [mode, rest @ ..] = data else {
        return;
    };
    if *mode % 7 == 0 {
        let text = String::from_utf8_lossy(rest);
        if let Ok(attr) = CryptoAttribute::parse(&text) {
            let again = CryptoAttribute::parse(&attr.to_sdp_value()).expect("our own a=crypto value parses");
            assert_eq!(again.suite(), attr.suite());
        }
        return;
    }
    let m = usize::from(*mode % 7 - 1);
    let (suite, rtcp) = (SUITES[m % 3], m >= 3);
    let mut rx = SrtpContext::new(&key(suite));
    let mut hostile = rest.to_vec();
    let _ = if rtcp { rx.unprotect_rtcp(&mut hostile) } else { rx.unprotect_rtp(&mut hostile) };

    let mut tx = SrtpContext::new(&key(suite));
    let mut packet = rest.to_vec();
    let protected = if rtcp { tx.protect_rtcp(&mut packet) } else { tx.protect_rtp(&mut packet) };
    if protected.is_ok() {
        let mut fresh = SrtpContext::new(&key(suite));
        let back = if rtcp { fresh.unprotect_rtcp(&mut packet) } else { fresh.unprotect_rtp(&mut packet) };
        assert!(back.is_ok(), "our own packet refused: {back:?}");
        assert_eq!(packet, rest, "round trip changed the packet");
    }
});
