//! Known-answer tests: RFC 3711 Appendix B, RFC 7714 §16/§17, and libsrtp's reference packets.
//! The hex is copied from the RFCs (and libsrtp's `srtp_validate`) unchanged.

use aes::cipher::KeyInit;
use aes::Aes128;

use crate::context::SrtpContext;
use crate::kdf::{aes_cm_xor, derive, Label};
use crate::key::MasterKey;
use crate::suite::SrtpSuite;
use crate::SrtpError;

fn hex(s: &str) -> Vec<u8> {
    let s: Vec<u8> = s.bytes().filter(|b| !b.is_ascii_whitespace()).collect();
    s.chunks(2)
        .map(|pair| u8::from_str_radix(std::str::from_utf8(pair).unwrap(), 16).unwrap())
        .collect()
}

fn key16(s: &str) -> [u8; 16] {
    hex(s).try_into().unwrap()
}

/// RFC 3711 Appendix B.2: the AES-CM keystream for session key 2B7E..., salt F0F1...FCFD, SSRC 0,
/// index 0, including the blocks around the 16-bit block counter's 0xFEFF -> 0xFF01 stretch.
#[test]
fn rfc3711_b2_aes_cm_keystream() {
    let aes = Aes128::new(&key16("2B7E151628AED2A6ABF7158809CF4F3C").into());
    let iv: [u8; 16] = hex("F0F1F2F3F4F5F6F7F8F9FAFBFCFD0000").try_into().unwrap();
    let mut keystream = vec![0u8; 0xff02 * 16];
    aes_cm_xor(&aes, &iv, &mut keystream);
    let block = |n: usize| &keystream[n * 16..(n + 1) * 16];
    assert_eq!(block(0x0000), hex("E03EAD0935C95E80E166B16DD92B4EB4"));
    assert_eq!(block(0x0001), hex("D23513162B02D0F72A43A2FE4A5F97AB"));
    assert_eq!(block(0x0002), hex("41E95B3BB0A2E8DD477901E4FCA894C0"));
    assert_eq!(block(0xfeff), hex("EC8CDF7398607CB0F2D21675EA9EA1E4"));
    assert_eq!(block(0xff00), hex("362B7C3C6773516318A077D7FC5073AE"));
    assert_eq!(block(0xff01), hex("6A2CC3787889374FBEB4C81B17BA6C44"));
}

/// The same B.2 keystream through the packet path: SSRC 0, SEQ 0, ROC 0 and an all-zero payload
/// encrypt to the keystream, which pins the IV layout of `protect_rtp`.
#[test]
fn rfc3711_b2_through_protect_rtp() {
    let mut ctx = SrtpContext::with_session_keys(
        SrtpSuite::AesCm128HmacSha1_80,
        &key16("2B7E151628AED2A6ABF7158809CF4F3C"),
        &hex("F0F1F2F3F4F5F6F7F8F9FAFBFCFD"),
        &[0; 20],
    );
    let mut packet = vec![0x80, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0];
    packet.extend([0u8; 48]);
    ctx.protect_rtp(&mut packet).unwrap();
    assert_eq!(packet.len(), 12 + 48 + 10);
    assert_eq!(
        packet[12..60],
        hex("E03EAD0935C95E80E166B16DD92B4EB4 D23513162B02D0F72A43A2FE4A5F97AB 41E95B3BB0A2E8DD477901E4FCA894C0")
    );
}

/// RFC 3711 Appendix B.3: session keys derived from master key E1F9... and salt 0EC6....
#[test]
fn rfc3711_b3_key_derivation() {
    let master = Aes128::new(&key16("E1F97A0D3E018BE0D64FA32C06DE4139").into());
    let salt: [u8; 14] = hex("0EC675AD498AFEEBB6960B3AABE6").try_into().unwrap();

    let mut cipher_key = [0u8; 16];
    derive(&master, &salt, Label::RtpEncryption, &mut cipher_key);
    assert_eq!(cipher_key[..], hex("C61E7A93744F39EE10734AFE3FF7A087"));

    let mut cipher_salt = [0u8; 14];
    derive(&master, &salt, Label::RtpSalt, &mut cipher_salt);
    assert_eq!(cipher_salt[..], hex("30CBBC08863D8C85D49DB34A9AE1"));

    let mut auth_key = [0u8; 94];
    derive(&master, &salt, Label::RtpAuth, &mut auth_key);
    assert_eq!(
        auth_key[..],
        hex("CEBE321F6FF7716B6FD4AB49AF256A15 6D38BAA48F0A0ACF3C34E2359E6CDBCE
             E049646C43D9327AD175578EF7227098 6371C10C9A369AC2F94A8C5FBCDDDC25
             6D6E919A48B610EF17C2041E47403576 6B68642C59BBFC2F34DB60DBDFB2")
    );
}

/// libsrtp's `srtp_validate` reference packets (AES_CM_128_HMAC_SHA1_80 with the B.3 master
/// key): key derivation, AES-CM and the HMAC tag together, SRTP and SRTCP. libsrtp numbers its
/// first SRTCP packet 1.
#[test]
fn libsrtp_reference_packets_aes_cm_80() {
    let mut key_salt = hex("E1F97A0D3E018BE0D64FA32C06DE4139");
    key_salt.extend(hex("0EC675AD498AFEEBB6960B3AABE6"));
    let key = MasterKey::from_bytes(SrtpSuite::AesCm128HmacSha1_80, &key_salt).unwrap();
    let plain_rtp = hex("800f1234decafbadcafebabe abababababababababababababababab");
    let srtp = hex("800f1234decafbadcafebabe 4e55dc4ce79978d88ca4d215949d2402 b78d6acc99ea179b8dbb");
    let plain_rtcp = hex("81c8000bcafebabe abababababababababababababababab");
    let srtcp = hex("81c8000bcafebabe 7128035be487b9bdbef89041f977a5a8 80000001 993e08cd54d6c1230798");

    let mut tx = SrtpContext::new(&key);
    let mut packet = plain_rtp.clone();
    tx.protect_rtp(&mut packet).unwrap();
    assert_eq!(packet, srtp);
    tx.set_rtcp_index(0xcafebabe, 1);
    let mut packet = plain_rtcp.clone();
    tx.protect_rtcp(&mut packet).unwrap();
    assert_eq!(packet, srtcp);

    let mut rx = SrtpContext::new(&key);
    let mut packet = srtp.clone();
    rx.unprotect_rtp(&mut packet).unwrap();
    assert_eq!(packet, plain_rtp);
    let mut packet = srtcp.clone();
    rx.unprotect_rtcp(&mut packet).unwrap();
    assert_eq!(packet, plain_rtcp);
}

/// RFC 7714 §16 / §17 session key and salt ("Quid pro quo"); the vectors give session keys
/// directly, the same for SRTP and SRTCP.
fn rfc7714_context() -> SrtpContext {
    SrtpContext::with_session_keys(
        SrtpSuite::AeadAes128Gcm,
        &key16("000102030405060708090a0b0c0d0e0f"),
        &hex("517569642070726f2071756f"),
        &[0; 20],
    )
}

const RFC7714_RTP: &str = "8040f17b 8041f8d3 5501a0b2 47616c6c 69612065 7374206f 6d6e6973 20646976
                           69736120 696e2070 61727465 73207472 6573";
const RFC7714_SRTP: &str = "8040f17b 8041f8d3 5501a0b2 f24de3a3 fb34de6c acba861c 9d7e4bca be633bd5
                            0d294e6f 42a5f47a 51c7d19b 36de3adf 8833899d 7f27beb1 6a9152cf 765ee439
                            0cce";

/// RFC 7714 §16.1.1 (encryption) and §16.1.2 (decryption): AEAD_AES_128_GCM SRTP, SSRC
/// 0x5501a0b2, SEQ 0xf17b, ROC 0.
#[test]
fn rfc7714_16_aead_aes_128_gcm_rtp() {
    let mut packet = hex(RFC7714_RTP);
    rfc7714_context().protect_rtp(&mut packet).unwrap();
    assert_eq!(packet, hex(RFC7714_SRTP));

    let mut packet = hex(RFC7714_SRTP);
    rfc7714_context().unprotect_rtp(&mut packet).unwrap();
    assert_eq!(packet, hex(RFC7714_RTP));
}

const RFC7714_RTCP: &str = "81c8000d 4d617273 4e545031 4e545032 52545020 0000042a 0000e930 4c756e61
                            deadbeef deadbeef deadbeef deadbeef deadbeef";
const RFC7714_SRTCP: &str = "81c8000d 4d617273 63e94885 dcdab67c a727d766 2f6b7e99 7ff5c0f7 6c06f32d
                             c676a5f1 730d6fda 4ce09b46 86303ded 0bb9275b c84aa458 96cf4d2f c5abf872
                             45d9eade 800005d4";

/// RFC 7714 §17.1: AEAD_AES_128_GCM SRTCP, SSRC "Mars", SRTCP index 0x5d4, E flag set.
#[test]
fn rfc7714_17_aead_aes_128_gcm_rtcp() {
    let mut ctx = rfc7714_context();
    ctx.set_rtcp_index(0x4d617273, 0x5d4);
    let mut packet = hex(RFC7714_RTCP);
    ctx.protect_rtcp(&mut packet).unwrap();
    assert_eq!(packet, hex(RFC7714_SRTCP));

    let mut packet = hex(RFC7714_SRTCP);
    rfc7714_context().unprotect_rtcp(&mut packet).unwrap();
    assert_eq!(packet, hex(RFC7714_RTCP));
}

/// RFC 7714 §17.3: SRTCP authenticated but not encrypted (E flag clear) is accepted as sent.
#[test]
fn rfc7714_17_3_unencrypted_rtcp_verifies() {
    let tagged = format!("{RFC7714_RTCP} 841dd968 3dd78ec9 2ae58790 125f62b3 000005d4");
    let mut packet = hex(&tagged);
    rfc7714_context().unprotect_rtcp(&mut packet).unwrap();
    assert_eq!(packet, hex(RFC7714_RTCP));

    // The same packet with its tag altered does not.
    let mut packet = hex(&tagged);
    let at = packet.len() - 5;
    packet[at] ^= 1;
    assert_eq!(
        rfc7714_context().unprotect_rtcp(&mut packet),
        Err(SrtpError::AuthFailed)
    );
}
