//! Interoperability with an independent implementation (webrtc-srtp): packets protected by one
//! side are accepted by the other, for every suite, over RTP (across a ROC wrap) and RTCP. This
//! also covers the GCM key derivation, for which RFC 7714 has no vector.

use edge_srtp::{MasterKey, SrtpContext, SrtpSuite};
use webrtc_srtp::context::Context;
use webrtc_srtp::protection_profile::ProtectionProfile;

fn profile(suite: SrtpSuite) -> ProtectionProfile {
    match suite {
        SrtpSuite::AesCm128HmacSha1_80 => ProtectionProfile::Aes128CmHmacSha1_80,
        SrtpSuite::AesCm128HmacSha1_32 => ProtectionProfile::Aes128CmHmacSha1_32,
        SrtpSuite::AeadAes128Gcm => ProtectionProfile::AeadAes128Gcm,
    }
}

fn rtp(seq: u16) -> Vec<u8> {
    let mut p = vec![0x80, 0x00];
    p.extend(seq.to_be_bytes());
    p.extend((u32::from(seq) * 160).to_be_bytes());
    p.extend(0xdead_beefu32.to_be_bytes());
    p.extend((0..160u32).map(|i| (i as u8).wrapping_mul(3) ^ (seq as u8)));
    p
}

fn rtcp(n: u8) -> Vec<u8> {
    let mut p = vec![0x80, 200, 0x00, 0x06];
    p.extend(0xdead_beefu32.to_be_bytes());
    p.extend((0..20u8).map(|i| i ^ n));
    p
}

fn keys(suite: SrtpSuite) -> (MasterKey, Vec<u8>, Vec<u8>) {
    let bytes: Vec<u8> = (0..suite.key_len() + suite.salt_len())
        .map(|i| (i as u8).wrapping_mul(29) ^ 0xa5)
        .collect();
    let (key, salt) = bytes.split_at(suite.key_len());
    (
        MasterKey::from_bytes(suite, &bytes).unwrap(),
        key.to_vec(),
        salt.to_vec(),
    )
}

#[test]
fn ours_to_webrtc_srtp() {
    for suite in SrtpSuite::ALL {
        let (master, key, salt) = keys(suite);
        let mut ours = SrtpContext::new(&master);
        let mut theirs = Context::new(&key, &salt, profile(suite), None, None).unwrap();
        for seq in (65530..=65535).chain(0..10) {
            let mut p = rtp(seq);
            ours.protect_rtp(&mut p).unwrap();
            assert_eq!(
                theirs.decrypt_rtp(&p).unwrap().as_ref(),
                &rtp(seq)[..],
                "{suite} seq {seq}"
            );
        }
        for n in 0..3 {
            let mut p = rtcp(n);
            ours.protect_rtcp(&mut p).unwrap();
            assert_eq!(
                theirs.decrypt_rtcp(&p).unwrap().as_ref(),
                &rtcp(n)[..],
                "{suite} rtcp {n}"
            );
        }
    }
}

#[test]
fn webrtc_srtp_to_ours() {
    for suite in SrtpSuite::ALL {
        let (master, key, salt) = keys(suite);
        let mut ours = SrtpContext::new(&master);
        let mut theirs = Context::new(&key, &salt, profile(suite), None, None).unwrap();
        for seq in (65530..=65535).chain(0..10) {
            let mut p = theirs.encrypt_rtp(&rtp(seq)).unwrap().to_vec();
            ours.unprotect_rtp(&mut p).unwrap();
            assert_eq!(p, rtp(seq), "{suite} seq {seq}");
        }
        for n in 0..3 {
            let mut p = theirs.encrypt_rtcp(&rtcp(n)).unwrap().to_vec();
            ours.unprotect_rtcp(&mut p).unwrap();
            assert_eq!(p, rtcp(n), "{suite} rtcp {n}");
        }
    }
}
