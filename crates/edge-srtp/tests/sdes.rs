//! SDES `a=crypto` parsing and formatting (RFC 4568), including hostile lines.

use edge_srtp::{CryptoAttribute, KeyError, Mki, SdesError, SrtpSuite};

/// The RFC 4568 §4 example line.
const RFC4568_EXAMPLE: &str = "1 AES_CM_128_HMAC_SHA1_80 inline:PS1uQCVeeCFCanVmcjkpPywjNWhcYD0mXXtxaVBR|2^20|1:32";

#[test]
fn rfc4568_example_parses_and_formats_back_unchanged() {
    let attr = CryptoAttribute::parse(&format!("a=crypto:{RFC4568_EXAMPLE}\r\n")).unwrap();
    assert_eq!(attr.tag, 1);
    assert_eq!(attr.suite(), SrtpSuite::AesCm128HmacSha1_80);
    assert_eq!(attr.key.key(), b"=-n@%^x!Bjufr9)?");
    assert_eq!(attr.key.salt(), b",#5h\\`=&]{qiPQ");
    assert_eq!(attr.lifetime, Some(1 << 20));
    assert_eq!(attr.mki, Mki::new(1, 32));
    assert_eq!(attr.to_sdp_value(), RFC4568_EXAMPLE);
}

#[test]
fn each_suite_round_trips_through_sdp() {
    for suite in SrtpSuite::ALL {
        let ours = CryptoAttribute::generate(7, suite).unwrap();
        let line = ours.to_sdp_value();
        assert!(line.starts_with(&format!("7 {} inline:", suite.sdes_name())), "{line}");
        let back = CryptoAttribute::parse(&line).unwrap();
        assert_eq!(back, ours);
        assert_eq!(back.key.key().len(), 16);
        assert_eq!(back.key.salt().len(), suite.salt_len());
    }
}

#[test]
fn gcm_key_is_accepted_with_or_without_base64_padding() {
    let line = CryptoAttribute::generate(2, SrtpSuite::AeadAes128Gcm)
        .unwrap()
        .to_sdp_value();
    // 28 bytes of key and salt: 38 base64 characters and "==".
    assert!(line.ends_with("=="), "{line}");
    let unpadded = line.trim_end_matches('=');
    assert_eq!(
        CryptoAttribute::parse(unpadded).unwrap(),
        CryptoAttribute::parse(&line).unwrap()
    );
}

#[test]
fn generated_keys_differ() {
    let a = CryptoAttribute::generate(1, SrtpSuite::AesCm128HmacSha1_80).unwrap();
    let b = CryptoAttribute::generate(1, SrtpSuite::AesCm128HmacSha1_80).unwrap();
    assert_ne!(a.key, b.key);
}

#[test]
fn decimal_lifetime_and_window_size_hint_are_accepted() {
    let key = "inline:PS1uQCVeeCFCanVmcjkpPywjNWhcYD0mXXtxaVBR";
    let attr = CryptoAttribute::parse(&format!("3 AES_CM_128_HMAC_SHA1_32 {key}|1000000 WSH=128")).unwrap();
    assert_eq!(attr.suite(), SrtpSuite::AesCm128HmacSha1_32);
    assert_eq!(attr.lifetime, Some(1_000_000));
    assert_eq!(attr.mki, None);
    assert!(attr.to_sdp_value().ends_with("|1000000"));
}

#[test]
fn unusable_lines_are_typed_errors() {
    let key = "inline:PS1uQCVeeCFCanVmcjkpPywjNWhcYD0mXXtxaVBR";
    let cases: Vec<(String, SdesError)> = vec![
        (String::new(), SdesError::Syntax("empty")),
        ("a=crypto:".into(), SdesError::Syntax("empty")),
        ("1".into(), SdesError::Syntax("no crypto suite")),
        (
            "1 AES_CM_128_HMAC_SHA1_80".into(),
            SdesError::Syntax("no key parameters"),
        ),
        (format!("x AES_CM_128_HMAC_SHA1_80 {key}"), SdesError::Tag),
        (format!("1234567890 AES_CM_128_HMAC_SHA1_80 {key}"), SdesError::Tag),
        (
            format!("1 AES_256_CM_HMAC_SHA1_80 {key}"),
            SdesError::UnknownSuite("AES_256_CM_HMAC_SHA1_80".into()),
        ),
        ("1 AES_CM_128_HMAC_SHA1_80 uri:http://k".into(), SdesError::KeyMethod),
        (
            format!("1 AES_CM_128_HMAC_SHA1_80 {key}|1:4;{key}|2:4"),
            SdesError::MultipleKeys,
        ),
        ("1 AES_CM_128_HMAC_SHA1_80 inline:!!!!".into(), SdesError::Base64),
        (
            "1 AES_CM_128_HMAC_SHA1_80 inline:QUJD".into(),
            SdesError::Key(KeyError::Length {
                suite: SrtpSuite::AesCm128HmacSha1_80,
                expected: 30,
                got: 3,
            }),
        ),
        (
            // The 30-byte AES-CM key offered as GCM (which takes 28).
            format!("1 AEAD_AES_128_GCM {key}"),
            SdesError::Key(KeyError::Length {
                suite: SrtpSuite::AeadAes128Gcm,
                expected: 28,
                got: 30,
            }),
        ),
        (format!("1 AES_CM_128_HMAC_SHA1_80 {key}|2^49"), SdesError::Lifetime),
        (format!("1 AES_CM_128_HMAC_SHA1_80 {key}|0"), SdesError::Lifetime),
        (format!("1 AES_CM_128_HMAC_SHA1_80 {key}|2^x"), SdesError::Lifetime),
        (
            format!("1 AES_CM_128_HMAC_SHA1_80 {key}|2^20|2^20"),
            SdesError::Lifetime,
        ),
        (format!("1 AES_CM_128_HMAC_SHA1_80 {key}|1:0"), SdesError::Mki),
        (format!("1 AES_CM_128_HMAC_SHA1_80 {key}|1:129"), SdesError::Mki),
        (format!("1 AES_CM_128_HMAC_SHA1_80 {key}|256:1"), SdesError::Mki),
        (format!("1 AES_CM_128_HMAC_SHA1_80 {key}|1:4|2:4"), SdesError::Mki),
        (format!("1 AES_CM_128_HMAC_SHA1_80 {key}|1:4|2^20"), SdesError::Lifetime),
        (
            format!("1 AES_CM_128_HMAC_SHA1_80 {key} KDR=1"),
            SdesError::SessionParam("KDR".into()),
        ),
        (
            format!("1 AES_CM_128_HMAC_SHA1_80 {key} UNENCRYPTED_SRTP"),
            SdesError::SessionParam("UNENCRYPTED_SRTP".into()),
        ),
        (
            format!("1 AES_CM_128_HMAC_SHA1_80 {key} WSH=x"),
            SdesError::SessionParam("WSH".into()),
        ),
        (
            "1 AES_CM_128_HMAC_SHA1_80 inline:".into(),
            SdesError::Key(KeyError::Length {
                suite: SrtpSuite::AesCm128HmacSha1_80,
                expected: 30,
                got: 0,
            }),
        ),
        (
            format!("1 AES_CM_128_HMAC_SHA1_80 {}", "A".repeat(2000)),
            SdesError::Syntax("attribute too long"),
        ),
    ];
    for (line, expected) in cases {
        assert_eq!(CryptoAttribute::parse(&line), Err(expected), "{line:?}");
    }
}

#[test]
fn errors_do_not_echo_long_or_secret_input() {
    let suite = "X".repeat(500);
    let err =
        CryptoAttribute::parse(&format!("1 {suite} inline:PS1uQCVeeCFCanVmcjkpPywjNWhcYD0mXXtxaVBR")).unwrap_err();
    assert!(err.to_string().len() < 120, "{err}");
    // A key of the wrong length is reported by length, not content.
    let err = CryptoAttribute::parse("1 AEAD_AES_128_GCM inline:PS1uQCVeeCFCanVmcjkpPywjNWhcYD0mXXtxaVBR").unwrap_err();
    assert!(!err.to_string().contains("PS1u"), "{err}");
}

#[test]
fn mki_bytes_are_big_endian_and_padded() {
    assert_eq!(Mki::new(1, 4).unwrap().to_bytes(), [0, 0, 0, 1]);
    assert_eq!(Mki::new(0x0102, 2).unwrap().to_bytes(), [1, 2]);
    assert_eq!(
        Mki::new(u64::MAX, 10).unwrap().to_bytes(),
        [0, 0, 255, 255, 255, 255, 255, 255, 255, 255]
    );
    assert_eq!(Mki::new(256, 1), None);
    assert_eq!(Mki::new(0, 0), None);
}

/// Fuzz-style: lines assembled from the grammar's own pieces, and raw junk including multi-byte
/// UTF-8, never panic.
#[test]
fn parse_never_panics() {
    let pieces = [
        "a=crypto:",
        "1",
        " ",
        "\t",
        "AES_CM_128_HMAC_SHA1_80",
        "AEAD_AES_128_GCM",
        "inline:",
        "|",
        ":",
        "2^",
        "^",
        "99999999999999999999",
        "0",
        "PS1uQCVeeCFCanVmcjkpPywjNWhcYD0mXXtxaVBR",
        "==",
        "=",
        ";",
        "WSH=",
        "é",
        "€",
        "\u{1F600}",
        "\0",
        "\r\n",
    ];
    let mut state = 0x2545_f491_4f6c_dd1du64;
    let mut next = || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state
    };
    for _ in 0..50_000 {
        let n = next() % 12;
        let line: String = (0..n)
            .map(|_| pieces[(next() % pieces.len() as u64) as usize])
            .collect();
        let _ = CryptoAttribute::parse(&line);
        let raw: Vec<u8> = (0..next() % 80).map(|_| next() as u8).collect();
        let _ = CryptoAttribute::parse(&String::from_utf8_lossy(&raw));
    }
}

#[test]
fn offer_lists_every_suite_strongest_first_and_answer_keeps_tag_and_suite_with_a_new_key() {
    let offer = CryptoAttribute::offer().unwrap();
    let listed: Vec<(u32, SrtpSuite)> = offer.iter().map(|a| (a.tag, a.suite())).collect();
    assert_eq!(
        listed,
        [
            (1, SrtpSuite::AeadAes128Gcm),
            (2, SrtpSuite::AesCm128HmacSha1_80),
            (3, SrtpSuite::AesCm128HmacSha1_32)
        ]
    );
    let peer = CryptoAttribute::parse(RFC4568_EXAMPLE).unwrap();
    let answer = peer.answer().unwrap();
    assert_eq!((answer.tag, answer.suite()), (1, SrtpSuite::AesCm128HmacSha1_80));
    assert_ne!(answer.key, peer.key, "the edge never reuses the peer's key");
    assert_eq!((answer.lifetime, answer.mki), (None, None));
}
