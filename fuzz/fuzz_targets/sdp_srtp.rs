//! SRTP in SDP as a relay handles it (`edge_media::fuzzing::srtp_offer_answer`): `a=crypto` lines read from
//! an offer and an answer, the edge's own keys made, the bodies rewritten, the contexts keyed.
//!
//! Input: `[options, split, offer... answer...]`; `split` places the cut between offer and answer. Must hold:
//! - no `a=crypto` line the edge sends carries a key of a peer (each leg has the edge's own keys);
//! - every `a=crypto` line the edge sends is one the edge itself can read again;
//! - and, as always, no panic, no unbounded allocation.
#![no_main]

use std::net::{IpAddr, Ipv4Addr};

use edge_media::fuzzing::srtp_offer_answer;
use edge_media::MediaEncryption;
use edge_srtp::CryptoAttribute;
use libfuzzer_sys::fuzz_target;

const ADDR: IpAddr = IpAddr::V4(Ipv4Addr::new(203, 0, 113, 7));

/// The values of the `a=crypto` lines of `sdp` (the attribute name in any case).
fn key_lines(sdp: &[u8]) -> Vec<String> {
    String::from_utf8_lossy(sdp)
        .lines()
        .map(str::trim)
        .filter(|l| l.len() >= 9 && l.is_char_boundary(9) && l[..9].eq_ignore_ascii_case("a=crypto:"))
        .map(|l| l[9..].to_owned())
        .collect()
}

/// The key-and-salt text of an `a=crypto` value.
fn inline_key(value: &str) -> Option<String> {
    let k = value.split("inline:").nth(1)?.split(['|', ' ', ';']).next()?;
    (k.len() >= 16).then(|| k.to_owned())
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
    // The keys the peers sent, in lines the edge can read as keys.
    let peers: Vec<String> = key_lines(offer)
        .into_iter()
        .chain(key_lines(answer))
        .filter(|v| CryptoAttribute::parse(v).is_ok())
        .filter_map(|v| inline_key(&v))
        .collect();
    for body in sent {
        // Every key line the edge sends is its own: readable, and never with a key a peer sent. (Text a peer
        // put in some other attribute goes through as that attribute: it is not a key line.)
        for value in key_lines(body) {
            assert!(
                CryptoAttribute::parse(&value).is_ok(),
                "the edge sent a key line it cannot read: a=crypto:{value}"
            );
            if let Some(key) = inline_key(&value) {
                assert!(
                    !peers.contains(&key),
                    "a peer's key was sent on:\n{}",
                    String::from_utf8_lossy(body)
                );
            }
        }
    }
});
