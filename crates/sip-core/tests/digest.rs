//! Digest authentication against the RFC 2617 / RFC 7616 published examples, plus the
//! behaviour the edge relies on: stale retries, rejection instead of loops, verification.

use bytes::Bytes;
use sip_core::digest::{
    authorize, make_challenge, new_cnonce, verify, Algorithm, AuthHeader, AuthSession, AuthStep, DigestChallenge,
    DigestCredentials, DigestError, DigestVerifier, NonceLedger, NonceMinter, NonceStatus, NonceUse, Qop, RejectReason,
    Secret, Verdict,
};
use sip_core::Message;

const RFC7616_NONCE: &str = "7ypf/xlj9XXwfDPEoM4URrv/xwf94BcCAzFZH4GiTo0v";
const RFC7616_CNONCE: &str = "f2/wE4q74E6zIJEtWaHKaf5wv/H5QzzpXusqGemxURZJ";
const RFC7616_OPAQUE: &str = "FQhe/qaU925kfnzjCev0ciny7QMkPqMAFRtzCUYo5tdS";

fn mufasa() -> DigestCredentials {
    DigestCredentials::new("Mufasa", "Circle of Life")
}

fn rfc7616_challenge(alg: &str) -> String {
    format!(
        "Digest realm=\"http-auth@example.org\", qop=\"auth, auth-int\", algorithm={alg}, \
         nonce=\"{RFC7616_NONCE}\", opaque=\"{RFC7616_OPAQUE}\""
    )
}

/// Value of `name=` inside a credentials header value (quoted or not).
fn param(header: &str, name: &str) -> Option<String> {
    let msg = format!("REGISTER sip:x SIP/2.0\r\nAuthorization: {header}\r\nContent-Length: 0\r\n\r\n");
    let m = Message::parse(Bytes::from(msg)).unwrap();
    let c = m.authorization().unwrap().unwrap();
    c.param(name).map(|v| v.into_owned())
}

fn response(status: u16, headers: &[(&str, &str)]) -> Message {
    let mut s = format!(
        "SIP/2.0 {status} Unauthorized\r\nVia: SIP/2.0/UDP 203.0.113.1;branch=z9hG4bKa\r\n\
         From: <sip:edge@example.com>;tag=1\r\nTo: <sip:+15551234567@trunk.example>;tag=2\r\n\
         Call-ID: c1\r\nCSeq: 1 INVITE\r\n"
    );
    for (n, v) in headers {
        s.push_str(&format!("{n}: {v}\r\n"));
    }
    s.push_str("Content-Length: 0\r\n\r\n");
    Message::parse(Bytes::from(s)).unwrap()
}

#[test]
fn rfc7616_sha256_and_md5_examples() {
    for (alg, want) in [
        (
            "SHA-256",
            "753927fa0e85d155564e2e272a28d1802ca10daf4496794697cf8db5856cb6c1",
        ),
        ("MD5", "8ca523f5e9506fed4657c9700eebdbec"),
    ] {
        let ch = DigestChallenge::parse(&rfc7616_challenge(alg)).unwrap();
        assert_eq!(ch.qop_options, vec![Qop::Auth, Qop::AuthInt]);
        let h = authorize(&ch, &mufasa(), "GET", "/dir/index.html", 1, RFC7616_CNONCE, b"").unwrap();
        assert!(h.starts_with("Digest "), "{h}");
        assert_eq!(param(&h, "response").as_deref(), Some(want), "{alg}: {h}");
        assert_eq!(param(&h, "username").as_deref(), Some("Mufasa"));
        assert_eq!(param(&h, "realm").as_deref(), Some("http-auth@example.org"));
        assert_eq!(param(&h, "uri").as_deref(), Some("/dir/index.html"));
        assert_eq!(param(&h, "nonce").as_deref(), Some(RFC7616_NONCE));
        assert_eq!(param(&h, "cnonce").as_deref(), Some(RFC7616_CNONCE));
        assert_eq!(param(&h, "opaque").as_deref(), Some(RFC7616_OPAQUE));
        assert_eq!(param(&h, "qop").as_deref(), Some("auth"));
        assert_eq!(param(&h, "nc").as_deref(), Some("00000001"));
        assert_eq!(param(&h, "algorithm").as_deref(), Some(alg));
    }
}

#[test]
fn rfc2617_md5_qop_auth_example() {
    let ch = DigestChallenge::parse(
        "Digest realm=\"testrealm@host.com\", qop=\"auth,auth-int\", \
         nonce=\"dcd98b7102dd2f0e8b11d0f600bfb0c093\", opaque=\"5ccc069c403ebaf9f0171e9517f40e41\"",
    )
    .unwrap();
    assert_eq!(ch.algorithm, Algorithm::Md5, "absent algorithm means MD5");
    let creds = DigestCredentials::new("Mufasa", "Circle Of Life");
    let h = authorize(&ch, &creds, "GET", "/dir/index.html", 1, "0a4f113b", b"").unwrap();
    assert_eq!(
        param(&h, "response").as_deref(),
        Some("6629fae49393a05397450978507c4ef1")
    );
    assert_eq!(param(&h, "opaque").as_deref(), Some("5ccc069c403ebaf9f0171e9517f40e41"));
}

/// RFC 7616 3.9.2 (SHA-512-256, userhash). The RFC's printed values are wrong (errata 4897);
/// these are the corrected ones, cross-checked with OpenSSL's SHA-512/256.
#[test]
fn sha512_256_with_userhash() {
    let ch = DigestChallenge::parse(
        "Digest realm=\"api@example.org\", qop=\"auth\", algorithm=SHA-512-256, \
         nonce=\"5TsQWLVdgBdmrQ0XsxbDODV+57QdFR34I9HAbC/RVvkK\", \
         opaque=\"HRPCssKJSGjCrkzDg8OhwpzCiGPChXYjwrI2QmXDnsOS\", charset=UTF-8, userhash=true",
    )
    .unwrap();
    assert!(ch.userhash);
    let creds = DigestCredentials::new("J\u{e4}s\u{f8}n Doe", "Secret, or not?");
    let h = authorize(
        &ch,
        &creds,
        "GET",
        "/doe.json",
        1,
        "NTg6RKcb9boFIAS3KrFK9BGeh+iDa/sm6jUMp2wds69v",
        b"",
    )
    .unwrap();
    assert_eq!(
        param(&h, "username").as_deref(),
        Some("793263caabb707a56211940d90411ea4a575adeccb7e360aeb624ed06ece9b0b")
    );
    assert_eq!(
        param(&h, "response").as_deref(),
        Some("3798d4131c277846293534c3edc11bd8a5e4cdcbff78b05db9d95eeb1cec68a5")
    );
    assert_eq!(param(&h, "userhash").as_deref(), Some("true"));
}

/// MD5-sess: HA1 = MD5(MD5(user:realm:pass):nonce:cnonce) (RFC 2617 3.2.2.2).
#[test]
fn md5_sess_folds_nonces_into_ha1() {
    use md5_oracle::md5_hex;
    let ch = DigestChallenge::parse("Digest realm=\"sip.example\", nonce=\"abc\", algorithm=MD5-sess, qop=\"auth\"")
        .unwrap();
    assert_eq!(ch.algorithm, Algorithm::Md5Sess);
    let creds = DigestCredentials::new("alice", "pw");
    let h = authorize(&ch, &creds, "INVITE", "sip:bob@sip.example", 3, "cn", b"").unwrap();
    let ha1 = md5_hex(&format!("{}:abc:cn", md5_hex("alice:sip.example:pw")));
    let ha2 = md5_hex("INVITE:sip:bob@sip.example");
    let want = md5_hex(&format!("{ha1}:abc:00000003:cn:auth:{ha2}"));
    assert_eq!(param(&h, "response"), Some(want));
    assert_eq!(param(&h, "algorithm").as_deref(), Some("MD5-sess"));
    assert_eq!(param(&h, "nc").as_deref(), Some("00000003"));
    // Plain MD5 gives a different answer for the same inputs.
    let mut plain = ch.clone();
    plain.algorithm = Algorithm::Md5;
    let h2 = authorize(&plain, &creds, "INVITE", "sip:bob@sip.example", 3, "cn", b"").unwrap();
    assert_ne!(param(&h2, "response"), param(&h, "response"));
}

/// Independent MD5 via the `Algorithm::hex` of a *different* algorithm path would be circular,
/// so the oracle is RFC 1321's test suite checked first, then used for composite values.
mod md5_oracle {
    use sip_core::digest::Algorithm;
    pub fn md5_hex(s: &str) -> String {
        Algorithm::Md5.hex(&[s.as_bytes()])
    }
    #[test]
    fn rfc1321_vectors() {
        assert_eq!(md5_hex(""), "d41d8cd98f00b204e9800998ecf8427e");
        assert_eq!(md5_hex("abc"), "900150983cd24fb0d6963f7d28e17f72");
    }
}

#[test]
fn rfc2069_no_qop_and_auth_int() {
    let ch = DigestChallenge::parse("Digest realm=\"r\", nonce=\"n\"").unwrap();
    assert!(ch.qop_options.is_empty());
    let creds = DigestCredentials::new("u", "p");
    let h = authorize(&ch, &creds, "INVITE", "sip:x@y", 1, "cn", b"").unwrap();
    let h1 = Algorithm::Md5.hex(&[b"u:r:p"]);
    let h2 = Algorithm::Md5.hex(&[b"INVITE:sip:x@y"]);
    let want = Algorithm::Md5.hex(&[format!("{h1}:n:{h2}").as_bytes()]);
    assert_eq!(param(&h, "response"), Some(want));
    assert_eq!(param(&h, "qop"), None);
    assert_eq!(param(&h, "nc"), None);
    assert_eq!(param(&h, "cnonce"), None);

    // auth-int only: the body is part of HA2, so a different body changes the response.
    let ch = DigestChallenge::parse("Digest realm=\"r\", nonce=\"n\", qop=\"auth-int\"").unwrap();
    let a = authorize(&ch, &creds, "INVITE", "sip:x@y", 1, "cn", b"v=0").unwrap();
    let b = authorize(&ch, &creds, "INVITE", "sip:x@y", 1, "cn", b"v=1").unwrap();
    assert_eq!(param(&a, "qop").as_deref(), Some("auth-int"));
    assert_ne!(param(&a, "response"), param(&b, "response"));
}

#[test]
fn twilio_and_telnyx_like_challenges() {
    let r = response(
        407,
        &[(
            "Proxy-Authenticate",
            "Digest realm=\"sip.twilio.com\",nonce=\"YjQ3NWFiZDAtMTRmMi00\",qop=\"auth\",algorithm=MD5",
        )],
    );
    let (ch, which) = DigestChallenge::from_message(&r).unwrap().unwrap();
    assert_eq!(which, AuthHeader::ProxyAuthorization);
    assert_eq!(which.name(), "Proxy-Authorization");
    assert_eq!(ch.realm, "sip.twilio.com");
    assert_eq!(ch.nonce, "YjQ3NWFiZDAtMTRmMi00");
    assert_eq!(ch.qop_options, vec![Qop::Auth]);
    assert_eq!(ch.opaque, None);
    assert!(!ch.stale);

    // Telnyx-style: unquoted algorithm, token opaque, lower-case scheme, WWW-Authenticate.
    let r = response(
        401,
        &[(
            "WWW-Authenticate",
            "digest realm=\"sip.telnyx.com\", nonce=\"Y2FmZTIz/O3c=\", opaque=abcdef, algorithm=md5, qop=\"auth\"",
        )],
    );
    let (ch, which) = DigestChallenge::from_message(&r).unwrap().unwrap();
    assert_eq!(which, AuthHeader::Authorization);
    assert_eq!(ch.nonce, "Y2FmZTIz/O3c=");
    assert_eq!(ch.opaque.as_deref(), Some("abcdef"));
    assert_eq!(ch.algorithm, Algorithm::Md5);

    // Empty list elements (trailing/double commas) are tolerated; broken quoting is not.
    let ch = DigestChallenge::parse("Digest realm=\"x\",, nonce=\"y\",").unwrap();
    assert_eq!((ch.realm.as_str(), ch.nonce.as_str()), ("x", "y"));
    assert!(matches!(
        DigestChallenge::parse("Digest realm=\"x, nonce=\"y\""),
        Err(DigestError::Malformed(_))
    ));

    // Not a challenge.
    assert_eq!(DigestChallenge::from_message(&response(486, &[])).unwrap(), None);
    // 401 without a header is an error, not silence.
    assert_eq!(
        DigestChallenge::from_message(&response(401, &[])),
        Err(DigestError::MissingChallenge(401))
    );
}

#[test]
fn strongest_supported_challenge_wins() {
    let r = response(
        401,
        &[
            ("WWW-Authenticate", "Digest realm=\"a\", nonce=\"1\", algorithm=MD5"),
            ("WWW-Authenticate", "Digest realm=\"a\", nonce=\"2\", algorithm=SHA-256"),
            (
                "WWW-Authenticate",
                "Digest realm=\"a\", nonce=\"3\", algorithm=AKAv1-MD5",
            ),
        ],
    );
    let (ch, _) = DigestChallenge::from_message(&r).unwrap().unwrap();
    assert_eq!((ch.algorithm, ch.nonce.as_str()), (Algorithm::Sha256, "2"));

    let only_unknown = response(
        401,
        &[(
            "WWW-Authenticate",
            "Digest realm=\"a\", nonce=\"3\", algorithm=AKAv1-MD5",
        )],
    );
    assert_eq!(
        DigestChallenge::from_message(&only_unknown),
        Err(DigestError::UnsupportedAlgorithm("AKAv1-MD5".into()))
    );
    assert!(matches!(
        DigestChallenge::parse("Basic realm=\"x\""),
        Err(DigestError::UnsupportedScheme(_))
    ));
    assert_eq!(
        DigestChallenge::parse("Digest nonce=\"n\""),
        Err(DigestError::MissingParam("realm"))
    );
    assert!(matches!(
        DigestChallenge::parse("Digest realm=\"r\", nonce=\"n\", qop=\"token-only\""),
        Err(DigestError::UnsupportedQop(_))
    ));
}

#[test]
fn session_retries_once_then_rejects() {
    let ch = "Digest realm=\"sip.twilio.com\", nonce=\"n1\", qop=\"auth\", algorithm=MD5";
    let mut s = AuthSession::new(DigestCredentials::new("trunkuser", "wrong"));
    let step = s.on_challenge(
        &response(407, &[("Proxy-Authenticate", ch)]),
        "INVITE",
        "sip:+15551234567@t.example",
        b"",
    );
    let AuthStep::Retry {
        header_name,
        header_value,
        previous,
    } = step
    else {
        panic!("expected retry, got {step:?}");
    };
    assert_eq!(header_name, "Proxy-Authorization");
    assert!(previous.is_empty());
    assert_eq!(param(&header_value, "nonce").as_deref(), Some("n1"));
    assert_eq!(param(&header_value, "cnonce").map(|c| c.len()), Some(32));

    // The same realm challenges again with a fresh nonce but not stale: credentials refused.
    let again = "Digest realm=\"sip.twilio.com\", nonce=\"n2\", qop=\"auth\", algorithm=MD5";
    let step = s.on_challenge(
        &response(407, &[("Proxy-Authenticate", again)]),
        "INVITE",
        "sip:+15551234567@t.example",
        b"",
    );
    assert_eq!(step, AuthStep::Rejected);
    // And keeps saying so.
    let step = s.on_challenge(
        &response(407, &[("Proxy-Authenticate", again)]),
        "INVITE",
        "sip:+15551234567@t.example",
        b"",
    );
    assert_eq!(step, AuthStep::Rejected);
}

#[test]
fn stale_challenge_retries_with_new_nonce() {
    let mut s = AuthSession::new(DigestCredentials::new("u", "p"));
    let first = response(
        401,
        &[("WWW-Authenticate", "Digest realm=\"r\", nonce=\"old\", qop=\"auth\"")],
    );
    assert!(matches!(
        s.on_challenge(&first, "INVITE", "sip:a@b", b""),
        AuthStep::Retry { .. }
    ));
    let stale = response(
        401,
        &[(
            "WWW-Authenticate",
            "Digest realm=\"r\", nonce=\"new\", qop=\"auth\", stale=TRUE",
        )],
    );
    match s.on_challenge(&stale, "INVITE", "sip:a@b", b"") {
        AuthStep::Retry { header_value, .. } => {
            assert_eq!(param(&header_value, "nonce").as_deref(), Some("new"));
            assert_eq!(param(&header_value, "nc").as_deref(), Some("00000001"));
        }
        other => panic!("stale must retry, got {other:?}"),
    }
    // stale=true but repeating the nonce we just used is a broken peer: stop.
    assert_eq!(s.on_challenge(&stale, "INVITE", "sip:a@b", b""), AuthStep::Rejected);
}

#[test]
fn proxy_then_uas_challenge_both_answered_and_bounded() {
    let mut s = AuthSession::new(DigestCredentials::new("u", "p"));
    let p = response(
        407,
        &[(
            "Proxy-Authenticate",
            "Digest realm=\"proxy\", nonce=\"a\", qop=\"auth\"",
        )],
    );
    let u = response(401, &[("WWW-Authenticate", "Digest realm=\"uas\", nonce=\"b\"")]);
    assert!(matches!(
        s.on_challenge(&p, "INVITE", "sip:a@b", b""),
        AuthStep::Retry {
            header_name: "Proxy-Authorization",
            ..
        }
    ));
    // The resend after the UAS's 401 must still carry the proxy's credentials (next nc).
    match s.on_challenge(&u, "INVITE", "sip:a@b", b"") {
        AuthStep::Retry {
            header_name,
            header_value,
            previous,
        } => {
            assert_eq!(header_name, "Authorization");
            assert_eq!(param(&header_value, "realm").as_deref(), Some("uas"));
            assert_eq!(previous.len(), 1);
            assert_eq!(previous[0].0, "Proxy-Authorization");
            assert_eq!(param(&previous[0].1, "realm").as_deref(), Some("proxy"));
            assert_eq!(param(&previous[0].1, "nc").as_deref(), Some("00000002"));
        }
        other => panic!("expected retry, got {other:?}"),
    }
    // An endless stream of stale challenges with new nonces still ends.
    let mut retries = 0;
    for i in 0..20 {
        let v = format!("Digest realm=\"uas\", nonce=\"s{i}\", stale=true");
        let r = response(401, &[("WWW-Authenticate", v.as_str())]);
        match s.on_challenge(&r, "INVITE", "sip:a@b", b"") {
            AuthStep::Retry { .. } => retries += 1,
            AuthStep::Rejected => break,
            AuthStep::Unsupported(e) => panic!("{e}"),
        }
    }
    assert!(retries <= 2, "{retries} stale retries");
    assert!(matches!(
        s.on_challenge(&response(200, &[]), "INVITE", "sip:a@b", b""),
        AuthStep::Unsupported(_)
    ));
}

#[test]
fn preemptive_reuse_increments_nonce_count() {
    let mut s = AuthSession::new(DigestCredentials::new("u", "p"));
    assert_eq!(s.authorize_next("BYE", "sip:a@b", b""), Ok(vec![]));
    let r = response(
        401,
        &[("WWW-Authenticate", "Digest realm=\"r\", nonce=\"n\", qop=\"auth\"")],
    );
    assert!(matches!(
        s.on_challenge(&r, "INVITE", "sip:a@b", b""),
        AuthStep::Retry { .. }
    ));
    let v = s.authorize_next("BYE", "sip:a@b", b"").unwrap();
    assert_eq!(v.len(), 1);
    assert_eq!(v[0].0, "Authorization");
    assert_eq!(param(&v[0].1, "nc").as_deref(), Some("00000002"));
    let v = s.authorize_next("BYE", "sip:a@b", b"").unwrap();
    assert_eq!(param(&v[0].1, "nc").as_deref(), Some("00000003"));
}

#[test]
fn hostile_inputs_are_refused_not_sent() {
    let ch = DigestChallenge::parse("Digest realm=\"r\", nonce=\"n\"").unwrap();
    let bad = DigestCredentials::new("u\r\nX-Injected: 1", "p");
    assert_eq!(
        authorize(&ch, &bad, "INVITE", "sip:a@b", 1, "c", b""),
        Err(DigestError::InvalidInput("username"))
    );
    let ok = DigestCredentials::new("u", "p");
    assert_eq!(
        authorize(&ch, &ok, "INVITE", "sip:a@b", 0, "c", b""),
        Err(DigestError::ZeroNonceCount)
    );
    assert_eq!(
        authorize(&ch, &ok, "IN VITE", "sip:a@b", 1, "c", b""),
        Err(DigestError::InvalidInput("method"))
    );
    // Quotes in values are escaped and survive a round trip through the parser.
    let q = DigestCredentials::new("a\"b\\c", "p");
    let h = authorize(&ch, &q, "INVITE", "sip:a@b", 1, "c", b"").unwrap();
    assert_eq!(param(&h, "username").as_deref(), Some("a\"b\\c"));
    // The password never shows in Debug output.
    assert!(!format!("{ok:?}").contains("\"p\""));
    assert!(format!("{ok:?}").contains("redacted"));
}

#[test]
fn cnonces_are_unique_hex() {
    let a = new_cnonce();
    let b = new_cnonce();
    assert_ne!(a, b);
    assert_eq!(a.len(), 32);
    assert!(a.bytes().all(|c| c.is_ascii_hexdigit()));
}

fn request_with_auth(value: &str, body: &str) -> Message {
    let s = format!(
        "INVITE sip:+15551234567@edge.example SIP/2.0\r\nVia: SIP/2.0/UDP 10.0.0.2;branch=z9hG4bKb\r\n\
         From: <sip:agent7@edge.example>;tag=9\r\nTo: <sip:+15551234567@edge.example>\r\n\
         Call-ID: c2\r\nCSeq: 2 INVITE\r\nProxy-Authorization: {value}\r\n\
         Content-Length: {}\r\n\r\n{body}",
        body.len()
    );
    Message::parse(Bytes::from(s)).unwrap()
}

#[test]
fn server_challenge_verify_round_trip() {
    let minter = NonceMinter::new(b"cluster secret", 300);
    let now = 1_800_000_000;
    let nonce = minter.mint("edge.example", now, b"10.0.0.2");
    for (alg, qop) in [
        (Algorithm::Md5, Some(Qop::Auth)),
        (Algorithm::Sha256, Some(Qop::Auth)),
        (Algorithm::Sha256Sess, Some(Qop::AuthInt)),
        (Algorithm::Md5, None),
    ] {
        let challenge = make_challenge("edge.example", &nonce, alg, qop, false);
        let ch = DigestChallenge::parse(&challenge).unwrap();
        assert_eq!((ch.algorithm, ch.chosen_qop()), (alg, qop), "{challenge}");
        let creds = DigestCredentials::new("agent7", "s3cret");
        let uri = "sip:+15551234567@edge.example";
        let value = authorize(&ch, &creds, "INVITE", uri, 1, &new_cnonce(), b"v=0").unwrap();
        let req = request_with_auth(&value, "v=0");
        let cred = req.proxy_authorization().unwrap().unwrap();
        assert!(verify(
            &cred,
            "INVITE",
            "edge.example",
            Secret::Password("s3cret"),
            b"v=0"
        ));
        let ha1 = alg.hex(&[b"agent7:edge.example:s3cret"]);
        assert!(verify(&cred, "INVITE", "edge.example", Secret::Ha1(&ha1), b"v=0"));
        assert!(!verify(
            &cred,
            "INVITE",
            "edge.example",
            Secret::Password("guess"),
            b"v=0"
        ));
        assert!(!verify(
            &cred,
            "BYE",
            "edge.example",
            Secret::Password("s3cret"),
            b"v=0"
        ));
        assert!(!verify(
            &cred,
            "INVITE",
            "other.realm",
            Secret::Password("s3cret"),
            b"v=0"
        ));
        if qop == Some(Qop::AuthInt) {
            assert!(!verify(
                &cred,
                "INVITE",
                "edge.example",
                Secret::Password("s3cret"),
                b"v=1"
            ));
        }
        assert_eq!(
            minter.check(&cred.param("nonce").unwrap(), "edge.example", now + 10, b"10.0.0.2"),
            NonceStatus::Valid
        );
    }
    let stale = make_challenge("edge.example", &nonce, Algorithm::Md5, Some(Qop::Auth), true);
    assert!(DigestChallenge::parse(&stale).unwrap().stale);
}

#[test]
fn nonce_expiry_forgery_and_binding() {
    let minter = NonceMinter::new(b"k1", 60);
    let bind = b"192.0.2.1";
    let n = minter.mint("r", 1000, bind);
    assert_eq!(minter.check(&n, "r", 1059, bind), NonceStatus::Valid);
    assert_eq!(minter.check(&n, "r", 1061, bind), NonceStatus::Stale);
    assert_eq!(minter.check(&n, "other", 1000, bind), NonceStatus::Invalid);
    assert_eq!(
        minter.check(&n, "r", 1000, b"192.0.2.2"),
        NonceStatus::Invalid,
        "bound to its client"
    );
    assert_eq!(
        NonceMinter::new(b"k2", 60).check(&n, "r", 1000, bind),
        NonceStatus::Invalid
    );
    // Flipping bits of the (masked) time without the key breaks the MAC.
    let mut forged = n.clone().into_bytes();
    forged[20] = if forged[20] == b'0' { b'1' } else { b'0' };
    let forged = String::from_utf8(forged).unwrap();
    assert_eq!(minter.check(&forged, "r", 1000, bind), NonceStatus::Invalid);
    assert_eq!(minter.check("short", "r", 1000, bind), NonceStatus::Invalid);
    assert_eq!(minter.check(&"é".repeat(32), "r", 1000, bind), NonceStatus::Invalid);
    assert_ne!(minter.mint("r", 1000, bind), minter.mint("r", 1000, bind));
}

const EDGE_URI: &str = "sip:+15551234567@edge.example";

fn invite(auth: Option<&str>) -> Message {
    let hdr = auth
        .map(|v| format!("Proxy-Authorization: {v}\r\n"))
        .unwrap_or_default();
    let s = format!(
        "INVITE {EDGE_URI} SIP/2.0\r\nVia: SIP/2.0/UDP 10.0.0.2;branch=z9hG4bKc\r\n\
         From: <sip:agent7@edge.example>;tag=9\r\nTo: <{EDGE_URI}>\r\n\
         Call-ID: c3\r\nCSeq: 2 INVITE\r\n{hdr}Content-Length: 0\r\n\r\n"
    );
    Message::parse(Bytes::from(s)).unwrap()
}

/// The first (preferred) challenge value of a verdict and its `stale` flag.
fn challenge_value(v: &Verdict) -> (&str, bool) {
    match v {
        Verdict::Challenge(c) => {
            assert_eq!((c.status, c.header_name), (407, "Proxy-Authenticate"));
            (c.header_values[0].as_str(), c.stale)
        }
        other => panic!("expected a challenge, got {other:?}"),
    }
}

const CLIENT: &[u8] = b"10.0.0.2";

fn authorized(v: &Verdict) -> Option<&str> {
    match v {
        Verdict::Authorized { username, .. } => Some(username),
        _ => None,
    }
}

#[test]
fn verifier_challenges_authorizes_and_rejects() {
    let v = DigestVerifier::new(
        "edge.example",
        b"cluster secret",
        300,
        &[Algorithm::Sha256],
        Some(Qop::Auth),
        AuthHeader::ProxyAuthorization,
    );
    let now = 1_800_000_000;
    let users = |u: &str| (u == "agent7").then_some(Secret::Password("s3cret"));

    let first = v.check(&invite(None), now, CLIENT, users);
    let (ch_value, stale) = challenge_value(&first);
    assert!(!stale);
    let ch = DigestChallenge::parse(ch_value).unwrap();
    assert_eq!(ch.algorithm, Algorithm::Sha256);
    let answer = |creds: &DigestCredentials, ch: &DigestChallenge, uri: &str| {
        authorize(ch, creds, "INVITE", uri, 1, &new_cnonce(), b"").unwrap()
    };
    let good = answer(&DigestCredentials::new("agent7", "s3cret"), &ch, EDGE_URI);
    let ok = v.check(&invite(Some(&good)), now + 5, CLIENT, users);
    assert_eq!(authorized(&ok), Some("agent7"), "{ok:?}");
    let Verdict::Authorized { nonce, nc, .. } = &ok else {
        unreachable!()
    };
    assert_eq!((nonce.as_str(), *nc), (ch.nonce.as_str(), 1));
    // The same answer from another address: the nonce is not that client's.
    assert!(!challenge_value(&v.check(&invite(Some(&good)), now, b"10.0.0.3", users)).1);
    let rejected = |u: &str, reason| Verdict::Rejected {
        username: u.into(),
        reason,
    };
    let wrong = answer(&DigestCredentials::new("agent7", "guess"), &ch, EDGE_URI);
    assert_eq!(
        v.check(&invite(Some(&wrong)), now, CLIENT, users),
        rejected("agent7", RejectReason::WrongPassword)
    );
    let unknown = answer(&DigestCredentials::new("mallory", "s3cret"), &ch, EDGE_URI);
    assert_eq!(
        v.check(&invite(Some(&unknown)), now, CLIENT, users),
        rejected("mallory", RejectReason::UnknownUser)
    );
    // Credentials computed for another Request-URI are not replayable here.
    let other_uri = answer(
        &DigestCredentials::new("agent7", "s3cret"),
        &ch,
        "sip:+15550000000@edge.example",
    );
    assert_eq!(
        v.check(&invite(Some(&other_uri)), now, CLIENT, users),
        rejected("agent7", RejectReason::UriMismatch)
    );
    // Downgrade to MD5 (correct MD5 answer) is refused when only SHA-256 was offered.
    let mut md5 = ch.clone();
    md5.algorithm = Algorithm::Md5;
    let downgraded = answer(&DigestCredentials::new("agent7", "s3cret"), &md5, EDGE_URI);
    assert_eq!(
        v.check(&invite(Some(&downgraded)), now, CLIENT, users),
        rejected("agent7", RejectReason::NotOffered)
    );
    // Right password on an expired nonce: challenge again with stale=true.
    let expired = v.check(&invite(Some(&good)), now + 301, CLIENT, users);
    let (value, stale) = challenge_value(&expired);
    assert!(stale && DigestChallenge::parse(value).unwrap().stale);
    // A nonce we never minted: plain challenge, no verdict on the password.
    let mut forged = ch.clone();
    forged.nonce = "0".repeat(64);
    let f = answer(&DigestCredentials::new("agent7", "s3cret"), &forged, EDGE_URI);
    assert!(!challenge_value(&v.check(&invite(Some(&f)), now, CLIENT, users)).1);
}

/// RFC 8760: SHA-256 offered before MD5 with one nonce; a client that knows only MD5 still gets in.
#[test]
fn sha256_is_offered_beside_md5() {
    let v = DigestVerifier::new(
        "edge.example",
        b"k",
        30,
        &[Algorithm::Sha256, Algorithm::Md5],
        Some(Qop::Auth),
        AuthHeader::ProxyAuthorization,
    );
    let now = 1_800_000_000;
    let Verdict::Challenge(c) = v.check(&invite(None), now, CLIENT, |_| None) else {
        panic!("challenge expected");
    };
    assert_eq!(c.header_values.len(), 2);
    let sha = DigestChallenge::parse(&c.header_values[0]).unwrap();
    let md5 = DigestChallenge::parse(&c.header_values[1]).unwrap();
    assert_eq!((sha.algorithm, md5.algorithm), (Algorithm::Sha256, Algorithm::Md5));
    assert_eq!(sha.nonce, md5.nonce);
    let users = |_: &str| Some(Secret::Password("s3cret"));
    for ch in [sha, md5] {
        let value = authorize(
            &ch,
            &DigestCredentials::new("agent7", "s3cret"),
            "INVITE",
            EDGE_URI,
            1,
            "cn",
            b"",
        )
        .unwrap();
        let verdict = v.check(&invite(Some(&value)), now, CLIENT, users);
        assert_eq!(authorized(&verdict), Some("agent7"), "{:?}: {verdict:?}", ch.algorithm);
    }
}

/// A captured Proxy-Authorization: accepted once for its call; on another call, or again with the
/// same nonce count, the ledger calls it a replay.
#[test]
fn ledger_stops_replayed_credentials() {
    let mut ledger = NonceLedger::new(30, 1000);
    assert_eq!(ledger.record(100, "n", "call-1", 1), NonceUse::First);
    assert_eq!(ledger.record(101, "n", "call-2", 2), NonceUse::Replay);
    assert_eq!(ledger.record(101, "n", "call-1", 1), NonceUse::Replay);
    assert_eq!(ledger.record(102, "n", "call-1", 2), NonceUse::Again);
}

/// The client session against the server verifier: one retry, then authorized.
#[test]
fn auth_session_against_verifier_end_to_end() {
    let v = DigestVerifier::new(
        "edge.example",
        b"k",
        60,
        &[Algorithm::Md5],
        Some(Qop::Auth),
        AuthHeader::ProxyAuthorization,
    );
    let now = 1_700_000_000;
    let ha1 = Algorithm::Md5.hex(&[b"agent7:edge.example:s3cret"]);
    let lookup = |_: &str| Some(Secret::Ha1(&ha1));
    let value = match v.check(&invite(None), now, CLIENT, lookup) {
        Verdict::Challenge(c) => c.header_values[0].clone(),
        other => panic!("{other:?}"),
    };
    let resp = response(407, &[("Proxy-Authenticate", value.as_str())]);
    let mut s = AuthSession::new(DigestCredentials::new("agent7", "s3cret"));
    let AuthStep::Retry {
        header_name,
        header_value,
        ..
    } = s.on_challenge(&resp, "INVITE", EDGE_URI, b"")
    else {
        panic!("expected retry");
    };
    assert_eq!(header_name, "Proxy-Authorization");
    let verdict = v.check(&invite(Some(&header_value)), now + 1, CLIENT, lookup);
    assert_eq!(authorized(&verdict), Some("agent7"), "{verdict:?}");
}

/// Hostile header values never panic the parser, the verifier or the nonce check.
#[test]
fn garbage_never_panics() {
    const ALPHABET: &[&str] = &[
        "Digest ",
        "realm",
        "nonce",
        "qop",
        "=",
        "\"",
        "\\",
        ",",
        " ",
        "auth",
        "auth-int",
        "algorithm",
        "MD5-sess",
        "SHA-256",
        "stale",
        "true",
        "é",
        "\t",
        "userhash",
        "opaque",
        "a",
    ];
    let minter = NonceMinter::new(b"k", 10);
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    for _ in 0..5000 {
        let mut s = String::new();
        for _ in 0..(x % 24) {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            s.push_str(ALPHABET[(x % ALPHABET.len() as u64) as usize]);
        }
        if let Ok(ch) = DigestChallenge::parse(&s) {
            let _ = authorize(&ch, &mufasa(), "INVITE", "sip:a@b", 1, "c", b"");
        }
        let _ = minter.check(&s, "r", 0, CLIENT);
        if !s.contains(['\r', '\n']) {
            let req = invite(Some(&s));
            let _ = DigestVerifier::new("r", b"k", 10, &[Algorithm::Md5], None, AuthHeader::ProxyAuthorization).check(
                &req,
                0,
                CLIENT,
                |_| Some(Secret::Password("p")),
            );
        }
    }
}
