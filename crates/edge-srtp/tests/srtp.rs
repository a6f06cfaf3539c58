//! SRTP/SRTCP behaviour through the public API: round trips, replay, ROC wrap, tampering,
//! hostile input, SSRC cap, MKI and lifetime.

use edge_srtp::{CryptoAttribute, MasterKey, SrtpContext, SrtpError, SrtpSuite};

const SSRC: u32 = 0x1234_5678;

fn rtp(seq: u16, ssrc: u32) -> Vec<u8> {
    let mut p = vec![0x80, 0x00];
    p.extend(seq.to_be_bytes());
    p.extend((u32::from(seq) * 160).to_be_bytes());
    p.extend(ssrc.to_be_bytes());
    p.extend((0..160u32).map(|i| (i as u8) ^ (seq as u8)));
    p
}

fn rtcp(ssrc: u32) -> Vec<u8> {
    // Sender report: header, SSRC, 20 bytes of sender info.
    let mut p = vec![0x80, 200, 0x00, 0x06];
    p.extend(ssrc.to_be_bytes());
    p.extend((0..20u8).map(|i| i * 3));
    p
}

fn key(suite: SrtpSuite, fill: u8) -> MasterKey {
    let bytes: Vec<u8> = (0..suite.key_len() + suite.salt_len())
        .map(|i| fill.wrapping_add(i as u8))
        .collect();
    MasterKey::from_bytes(suite, &bytes).unwrap()
}

fn pair(suite: SrtpSuite) -> (SrtpContext, SrtpContext) {
    (SrtpContext::new(&key(suite, 7)), SrtpContext::new(&key(suite, 7)))
}

fn protect(tx: &mut SrtpContext, seq: u16) -> Vec<u8> {
    let mut p = rtp(seq, SSRC);
    tx.protect_rtp(&mut p).unwrap();
    p
}

#[test]
fn rtp_round_trip_each_suite_with_its_tag_length() {
    for (suite, tag) in [
        (SrtpSuite::AesCm128HmacSha1_80, 10),
        (SrtpSuite::AesCm128HmacSha1_32, 4),
        (SrtpSuite::AeadAes128Gcm, 16),
    ] {
        let (mut tx, mut rx) = pair(suite);
        for seq in 100..200 {
            let plain = rtp(seq, SSRC);
            let mut p = plain.clone();
            tx.protect_rtp(&mut p).unwrap();
            assert_eq!(p.len(), plain.len() + tag, "{suite}");
            assert_eq!(p[..12], plain[..12], "{suite}: the header stays in the clear");
            assert_ne!(p[12..172], plain[12..], "{suite}: the payload is encrypted");
            rx.unprotect_rtp(&mut p).unwrap();
            assert_eq!(p, plain, "{suite}");
        }
    }
}

#[test]
fn rtcp_round_trip_each_suite_with_e_flag_and_index() {
    for (suite, trailer) in [
        (SrtpSuite::AesCm128HmacSha1_80, 14),
        // The 32-bit suite keeps the 80-bit tag on SRTCP (RFC 4568 §6.2.2).
        (SrtpSuite::AesCm128HmacSha1_32, 14),
        (SrtpSuite::AeadAes128Gcm, 20),
    ] {
        let (mut tx, mut rx) = pair(suite);
        for n in 0u32..5 {
            let plain = rtcp(SSRC);
            let mut p = plain.clone();
            tx.protect_rtcp(&mut p).unwrap();
            assert_eq!(p.len(), plain.len() + trailer, "{suite}");
            assert_ne!(
                p[8..plain.len()],
                plain[8..],
                "{suite}: all but the first 8 bytes encrypted"
            );
            let word_at = if suite == SrtpSuite::AeadAes128Gcm {
                p.len() - 4
            } else {
                plain.len()
            };
            let word = u32::from_be_bytes(p[word_at..word_at + 4].try_into().unwrap());
            assert_eq!(word, 0x8000_0000 | n, "{suite}: E flag and SRTCP index from 0");
            rx.unprotect_rtcp(&mut p).unwrap();
            assert_eq!(p, plain, "{suite}");
        }
    }
}

#[test]
fn replayed_packet_is_refused_and_late_packets_within_the_window_pass() {
    for suite in SrtpSuite::ALL {
        let (mut tx, mut rx) = pair(suite);
        let packets: Vec<Vec<u8>> = (1000..1100).map(|seq| protect(&mut tx, seq)).collect();
        for (i, p) in packets.iter().enumerate().skip(10) {
            if i != 50 {
                rx.unprotect_rtp(&mut p.clone()).unwrap();
            }
        }
        // A copy of the newest: replay.
        assert_eq!(
            rx.unprotect_rtp(&mut packets[99].clone()),
            Err(SrtpError::Replayed {
                ssrc: SSRC,
                index: 1099
            }),
            "{suite}"
        );
        // Late but within the 64-packet window: accepted once, then a replay.
        rx.unprotect_rtp(&mut packets[50].clone()).unwrap();
        assert!(matches!(
            rx.unprotect_rtp(&mut packets[50].clone()),
            Err(SrtpError::Replayed { .. })
        ));
        // Older than the window.
        assert_eq!(
            rx.unprotect_rtp(&mut packets[5].clone()),
            Err(SrtpError::TooOld {
                ssrc: SSRC,
                index: 1005
            }),
            "{suite}"
        );
    }
}

#[test]
fn rtcp_replay_is_refused() {
    for suite in SrtpSuite::ALL {
        let (mut tx, mut rx) = pair(suite);
        let mut p = rtcp(SSRC);
        tx.protect_rtcp(&mut p).unwrap();
        rx.unprotect_rtcp(&mut p.clone()).unwrap();
        assert_eq!(
            rx.unprotect_rtcp(&mut p),
            Err(SrtpError::Replayed { ssrc: SSRC, index: 0 }),
            "{suite}"
        );
    }
}

#[test]
fn protecting_the_same_index_twice_is_refused() {
    // Two different packets under one index would reuse keystream.
    let (mut tx, _) = pair(SrtpSuite::AesCm128HmacSha1_80);
    protect(&mut tx, 7);
    assert_eq!(
        tx.protect_rtp(&mut rtp(7, SSRC)),
        Err(SrtpError::Replayed { ssrc: SSRC, index: 7 })
    );
}

#[test]
fn roc_wraps_from_65535_to_0_across_protect_and_unprotect() {
    for suite in SrtpSuite::ALL {
        let (mut tx, mut rx) = pair(suite);
        let seqs: Vec<u16> = (65530..=65535).chain(0..6).collect();
        let packets: Vec<Vec<u8>> = seqs.iter().map(|&s| protect(&mut tx, s)).collect();
        for (seq, p) in seqs.iter().zip(&packets) {
            let mut p = p.clone();
            // With ROC 0 after the wrap the tag (CM: over ROC; GCM: IV) would not verify.
            rx.unprotect_rtp(&mut p).unwrap();
            assert_eq!(p, rtp(*seq, SSRC), "{suite}");
        }
        // The wrapped packets are not the ROC-0 packets of the same SEQ.
        let (mut fresh, _) = pair(suite);
        assert_ne!(protect(&mut fresh, 3), packets[9], "{suite}");
        // A straggler from before the wrap (ROC - 1) still decrypts once, then is a replay.
        let (mut tx, mut rx) = pair(suite);
        let first = protect(&mut tx, 65533);
        let straggler = protect(&mut tx, 65534);
        let wrapped = protect(&mut tx, 1);
        rx.unprotect_rtp(&mut first.clone()).unwrap();
        rx.unprotect_rtp(&mut wrapped.clone()).unwrap();
        let mut late = straggler.clone();
        rx.unprotect_rtp(&mut late).unwrap();
        assert_eq!(late, rtp(65534, SSRC), "{suite}");
        assert_eq!(
            rx.unprotect_rtp(&mut straggler.clone()),
            Err(SrtpError::Replayed {
                ssrc: SSRC,
                index: 65534
            }),
            "{suite}"
        );
    }
}

#[test]
fn every_single_bit_flip_is_refused() {
    for suite in SrtpSuite::ALL {
        let (mut tx, _) = pair(suite);
        let good = protect(&mut tx, 42);
        let mut good_rtcp = rtcp(SSRC);
        tx.protect_rtcp(&mut good_rtcp).unwrap();
        for (good, rtcp) in [(&good, false), (&good_rtcp, true)] {
            for bit in 0..good.len() * 8 {
                let mut p = good.clone();
                p[bit / 8] ^= 1 << (bit % 8);
                let mut rx = SrtpContext::new(&key(suite, 7));
                let result = if rtcp {
                    rx.unprotect_rtcp(&mut p)
                } else {
                    rx.unprotect_rtp(&mut p)
                };
                assert!(result.is_err(), "{suite} rtcp={rtcp}: bit {bit} flipped was accepted");
            }
        }
        // A payload flip in particular is an authentication failure.
        let mut p = good.clone();
        p[20] ^= 0x80;
        assert_eq!(
            SrtpContext::new(&key(suite, 7)).unprotect_rtp(&mut p),
            Err(SrtpError::AuthFailed)
        );
    }
}

#[test]
fn wrong_key_is_an_authentication_failure() {
    for suite in SrtpSuite::ALL {
        let mut p = protect(&mut SrtpContext::new(&key(suite, 7)), 1);
        assert_eq!(
            SrtpContext::new(&key(suite, 8)).unprotect_rtp(&mut p),
            Err(SrtpError::AuthFailed)
        );
    }
}

#[test]
fn truncated_and_malformed_packets_are_errors() {
    for suite in SrtpSuite::ALL {
        let (mut tx, _) = pair(suite);
        let good = protect(&mut tx, 9);
        let mut good_rtcp = rtcp(SSRC);
        tx.protect_rtcp(&mut good_rtcp).unwrap();
        for len in 0..good.len() {
            let mut rx = SrtpContext::new(&key(suite, 7));
            assert!(
                rx.unprotect_rtp(&mut good[..len].to_vec()).is_err(),
                "{suite} rtp len {len}"
            );
        }
        for len in 0..good_rtcp.len() {
            let mut rx = SrtpContext::new(&key(suite, 7));
            assert!(
                rx.unprotect_rtcp(&mut good_rtcp[..len].to_vec()).is_err(),
                "{suite} rtcp len {len}"
            );
        }
        // Not version 2, and a CSRC count or extension longer than the packet.
        let mut rx = SrtpContext::new(&key(suite, 7));
        for bad in [
            vec![0x40; 40],
            {
                let mut p = rtp(1, SSRC);
                p[0] = 0x8f;
                p.truncate(40);
                p
            },
            {
                let mut p = rtp(1, SSRC);
                p[0] = 0x90;
                p[14] = 0xff;
                p[15] = 0xff;
                p
            },
        ] {
            assert!(
                matches!(rx.protect_rtp(&mut bad.clone()), Err(SrtpError::Malformed(_))),
                "{suite}"
            );
            assert!(rx.unprotect_rtp(&mut bad.clone()).is_err(), "{suite}");
        }
        assert!(matches!(
            rx.protect_rtcp(&mut vec![0x80, 200, 0]),
            Err(SrtpError::Malformed(_))
        ));
    }
}

#[test]
fn rtp_with_csrcs_and_extension_keeps_them_in_the_clear() {
    for suite in SrtpSuite::ALL {
        let (mut tx, mut rx) = pair(suite);
        // CC = 2, X = 1 with a one-word extension.
        let mut plain = vec![0x92, 0x00, 0x00, 0x05, 0, 0, 0, 0];
        plain.extend(SSRC.to_be_bytes());
        plain.extend([1, 1, 1, 1, 2, 2, 2, 2]);
        plain.extend([0xbe, 0xde, 0x00, 0x01, 0x10, 0xaa, 0, 0]);
        plain.extend([0x55; 20]);
        let mut p = plain.clone();
        tx.protect_rtp(&mut p).unwrap();
        assert_eq!(p[..28], plain[..28], "{suite}");
        assert_ne!(p[28..48], plain[28..], "{suite}");
        rx.unprotect_rtp(&mut p).unwrap();
        assert_eq!(p, plain);
    }
}

#[test]
fn ssrc_state_is_capped_and_forged_packets_take_no_slot() {
    let suite = SrtpSuite::AesCm128HmacSha1_80;
    let mut tx = SrtpContext::new(&key(suite, 7)).with_max_ssrcs(2);
    tx.protect_rtp(&mut rtp(1, 1)).unwrap();
    tx.protect_rtp(&mut rtp(1, 2)).unwrap();
    assert_eq!(tx.protect_rtp(&mut rtp(1, 3)), Err(SrtpError::TooManySsrcs(2)));

    let mut rx = SrtpContext::new(&key(suite, 7)).with_max_ssrcs(2);
    // Forged packets from 100 SSRCs fail authentication and leave no state behind...
    for ssrc in 100..200 {
        let mut p = rtp(1, ssrc);
        p.extend([0; 10]);
        assert_eq!(rx.unprotect_rtp(&mut p), Err(SrtpError::AuthFailed));
    }
    // ...so two genuine streams still fit, and a third does not.
    let mut sender = SrtpContext::new(&key(suite, 7));
    for ssrc in [1, 2] {
        let mut p = rtp(1, ssrc);
        sender.protect_rtp(&mut p).unwrap();
        rx.unprotect_rtp(&mut p).unwrap();
    }
    let mut p = rtp(1, 3);
    sender.protect_rtp(&mut p).unwrap();
    assert_eq!(rx.unprotect_rtp(&mut p), Err(SrtpError::TooManySsrcs(2)));
}

#[test]
fn mki_is_carried_and_checked() {
    for suite in SrtpSuite::ALL {
        let attr = CryptoAttribute::parse(
            &CryptoAttribute {
                mki: edge_srtp::Mki::new(5, 2),
                ..CryptoAttribute::generate(1, suite).unwrap()
            }
            .to_sdp_value(),
        )
        .unwrap();
        let mut tx = SrtpContext::from_crypto(&attr);
        let mut rx = SrtpContext::from_crypto(&attr);
        let plain = rtp(3, SSRC);
        let mut p = plain.clone();
        tx.protect_rtp(&mut p).unwrap();
        assert_eq!(p.len(), plain.len() + suite.rtp_tag_len() + 2, "{suite}");
        let mki_at = if suite == SrtpSuite::AeadAes128Gcm {
            p.len() - 2
        } else {
            plain.len()
        };
        assert_eq!(p[mki_at..mki_at + 2], [0, 5], "{suite}");
        let mut wrong = p.clone();
        wrong[mki_at + 1] = 6;
        assert_eq!(rx.unprotect_rtp(&mut wrong), Err(SrtpError::UnknownMki), "{suite}");
        rx.unprotect_rtp(&mut p).unwrap();
        assert_eq!(p, plain);

        let plain = rtcp(SSRC);
        let mut p = plain.clone();
        tx.protect_rtcp(&mut p).unwrap();
        rx.unprotect_rtcp(&mut p).unwrap();
        assert_eq!(p, plain, "{suite}");
    }
}

#[test]
fn lifetime_is_enforced() {
    let mut attr = CryptoAttribute::generate(1, SrtpSuite::AesCm128HmacSha1_80).unwrap();
    attr.lifetime = Some(2);
    let attr = CryptoAttribute::parse(&attr.to_sdp_value()).unwrap();
    assert_eq!(attr.lifetime, Some(2));
    let mut tx = SrtpContext::from_crypto(&attr);
    protect(&mut tx, 1);
    tx.protect_rtcp(&mut rtcp(SSRC)).unwrap();
    assert_eq!(tx.protect_rtp(&mut rtp(2, SSRC)), Err(SrtpError::KeyExhausted));
}

#[test]
fn protect_does_not_reallocate_when_capacity_is_reserved() {
    for suite in SrtpSuite::ALL {
        let (mut tx, mut rx) = pair(suite);
        let mut p = Vec::with_capacity(172 + tx.max_overhead());
        p.extend_from_slice(&rtp(1, SSRC));
        let before = p.as_ptr();
        tx.protect_rtp(&mut p).unwrap();
        rx.unprotect_rtp(&mut p).unwrap();
        p.clear();
        p.extend_from_slice(&rtcp(SSRC));
        tx.protect_rtcp(&mut p).unwrap();
        assert_eq!(p.as_ptr(), before, "{suite}");
    }
}

#[test]
fn debug_output_carries_no_key_material() {
    let attr = CryptoAttribute::generate(1, SrtpSuite::AesCm128HmacSha1_80).unwrap();
    let sdp = attr.to_sdp_value();
    let inline = sdp.split("inline:").nth(1).unwrap();
    let key_hex: String = attr.key.key().iter().map(|b| format!("{b:02x}")).collect();
    let key_dec = format!("{:?}", attr.key.key());
    let ctx = SrtpContext::from_crypto(&attr);
    for shown in [
        format!("{attr:?}"),
        format!("{:?}", attr.key),
        format!("{ctx:?}"),
        format!("{attr:#?}"),
    ] {
        assert!(!shown.contains(inline), "{shown}");
        assert!(!shown.to_lowercase().contains(&key_hex), "{shown}");
        assert!(!shown.contains(&key_dec[1..key_dec.len() - 1]), "{shown}");
    }
}

/// xorshift64*: a fixed-seed source so a failure reproduces.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    fn bytes(&mut self, max_len: usize) -> Vec<u8> {
        let len = (self.next() % (max_len as u64 + 1)) as usize;
        (0..len).map(|_| self.next() as u8).collect()
    }
}

/// Fuzz-style: arbitrary bytes, and valid packets with random damage, never panic and are never
/// accepted. (The crate has a cargo-fuzz-free equivalent of a fuzz target here, so CI runs it.)
#[test]
fn unprotect_never_panics_on_arbitrary_bytes() {
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    for suite in SrtpSuite::ALL {
        let mut rx = SrtpContext::new(&key(suite, 7)).with_max_ssrcs(4);
        let mut tx = SrtpContext::new(&key(suite, 7));
        for round in 0..20_000u32 {
            let mut junk = rng.bytes(300);
            if round % 2 == 0 && !junk.is_empty() {
                junk[0] = 0x80 | (junk[0] & 0x3f); // mostly version 2, to get past the first check
            }
            assert!(rx.unprotect_rtp(&mut junk.clone()).is_err());
            assert!(rx.unprotect_rtcp(&mut junk).is_err());

            let mut p = protect(&mut tx, round as u16);
            match rng.next() % 3 {
                0 => p.truncate((rng.next() % p.len() as u64) as usize),
                1 => p.extend(rng.bytes(8).into_iter().chain([0])),
                _ => {
                    let at = (rng.next() % p.len() as u64) as usize;
                    p[at] ^= (rng.next() as u8) | 1;
                }
            }
            assert!(rx.unprotect_rtp(&mut p).is_err(), "{suite} round {round}");
        }
    }
}
