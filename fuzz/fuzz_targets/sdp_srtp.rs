//! SRTP in SDP as a relay handles it (`edge_media::fuzzing::srtp_offer_answer`): `a=crypto` lines read from
//! an offer and an answer, the edge's own keys made, the bodies rewritten, the contexts keyed.
//!
//! Input: `[options, split, offer... answer...]`; `split` places the cut between offer and answer. Must hold:
//! - no key of a peer ever leaves in what the edge sends (each leg has the edge's own keys);
//! - every `a=crypto` line the edge sends is one the edge itself can read again;
//! - and, as always, no panic, no unbounded allocation.
#![no_main]

use std::net::{IpAddr, Ipv4Addr};

use edge_media::fuzzing::srtp_offer_answer;
use edge_media::MediaEncryption;
use edge_srtp::CryptoAttribute;
use libfuzzer_sys::fuzz_target;

const ADDR: IpAddr = IpAddr::V4(Ipv4Addr::new(203, 0, 113, 7));

/// The key-and-salt text of every `a=crypto` line of `sdp` that reads as one.
fn keys_in(sdp: &[u8]) -> Vec<String> {
    String::from_utf8_lossy(sdp)
        .lines()
        .filter_map(|l| l.trim().strip_prefix("a=crypto:"))
        .filter(|v| CryptoAttribute::parse(v).is_ok())
        .filter_map(|v| v.split("inline:").nth(1))
        .map(|k| k.split(['|', ' ', ';']).next().unwrap_or("").to_owned())
        .filter(|k| k.len() >= 16)
        .collect()
}

fuzz_target!(|data: &[u8]| {
    let [opts, split, rest @ ..] = data else {
        return;
    };
    let cut = rest.len() * usize::from(*split) / 255;
    let (offer, answer) = rest.split_at(cut);
    let policy = |b: u8| MediaEncryption::ALL[usize::from(b % 3)];
    let policies = [policy(*opts), policy(*opts / 3)];
    let new_peer = opts & 0x80 != 0;
    let Ok(x) = srtp_offer_answer(policies, offer, answer, new_peer, ADDR, 30_000) else {
        return;
    };
    let sent = [&x.to_b, &x.to_a];
    for key in keys_in(offer).iter().chain(keys_in(answer).iter()) {
        for body in sent {
            assert!(
                !String::from_utf8_lossy(body).contains(key.as_str()),
                "a peer's key was sent on:\n{}",
                String::from_utf8_lossy(body)
            );
        }
    }
    for body in sent {
        for line in String::from_utf8_lossy(body).lines() {
            if let Some(v) = line.strip_prefix("a=crypto:") {
                assert!(CryptoAttribute::parse(v).is_ok(), "the edge sent a line it cannot read: {line}");
            }
        }
    }
});
