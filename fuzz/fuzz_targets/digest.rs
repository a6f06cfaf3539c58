//! Digest authentication (`sip_core::digest`): challenge and credentials parsing, answering, verifying.
//!
//! Input: `[mode, text...]`, the text cut at newlines into `value`, `username`, `password`. Exercised:
//! - `value` as a trunk's challenge (`DigestChallenge::parse`, and inside a 401/407 for `from_message` and
//!   `AuthSession`); when we can answer it, our `Authorization` value must parse as credentials and
//!   `verify` with the same password (unless the trunk asked for `userhash`, which we never verify);
//! - `value` as an agent's `Proxy-Authorization` (and as a nonce) checked by the edge's verifier;
//! - the edge's own challenge answered with `username`/`password`: the verifier must authorize exactly
//!   that user, and refuse any other password.
#![no_main]

use bytes::Bytes;
use libfuzzer_sys::fuzz_target;
use sip_core::digest::{
    authorize, verify, Algorithm, AuthHeader, AuthSession, AuthStep, DigestChallenge, DigestCredentials,
    DigestVerifier, NonceMinter, Qop, Secret, Verdict,
};
use sip_core::message::Message;

const NOW: u64 = 1_700_000_000;
const URI: &str = "sip:+14155550100@trunk.example.com";

fuzz_target!(|data: &[u8]| {
    let [mode, rest @ ..] = data else {
        return;
    };
    let mode = *mode;
    let text = String::from_utf8_lossy(rest);
    let mut fields = text.splitn(3, '\n');
    let value = fields.next().unwrap_or("");
    let username = fields.next().unwrap_or("alice");
    let password = fields.next().unwrap_or("secret");
    let body: &[u8] = if mode & 1 == 0 { b"" } else { b"v=0\r\n" };
    let nc = u32::from(mode >> 4);

    client_side(value, username, password, nc, body, mode & 2 != 0);
    server_side(value, mode);
    round_trip(username, password, mode);
});

/// A trunk's challenge answered by us, then checked as the trunk would.
fn client_side(value: &str, username: &str, password: &str, nc: u32, body: &[u8], proxy: bool) {
    let creds = DigestCredentials::new(username, password);
    if let Ok(ch) = DigestChallenge::parse(value) {
        let _ = ch.chosen_qop();
        if let Ok(header) = authorize(&ch, &creds, "INVITE", URI, nc, "0a4f113b", body) {
            let req = request("Authorization", &header, body);
            let m = match Message::parse(req.clone()) {
                Ok(m) => m,
                Err(e) => panic!("our Authorization does not parse: {e}\n{header}"),
            };
            let cred = match m.authorization() {
                Ok(Some(c)) => c,
                other => panic!("our Authorization is not credentials: {other:?}\n{header}"),
            };
            let ok = verify(&cred, "INVITE", &ch.realm, Secret::Password(password), body);
            assert_eq!(ok, !ch.userhash, "our own answer does not verify\n{value}\n{header}");
        }
    }
    let (status, name) = if proxy {
        (407, "Proxy-Authenticate")
    } else {
        (401, "WWW-Authenticate")
    };
    let resp = format!(
        "SIP/2.0 {status} Auth\r\nVia: SIP/2.0/UDP 192.0.2.1;branch=z9hG4bK1\r\nFrom: <sip:a@b>;tag=1\r\n\
         To: <sip:c@d>;tag=2\r\nCall-ID: x\r\nCSeq: 1 INVITE\r\n{name}: {value}\r\nContent-Length: 0\r\n\r\n"
    );
    if let Ok(m) = Message::parse(Bytes::from(resp)) {
        let _ = DigestChallenge::from_message(&m);
        let mut session = AuthSession::new(creds);
        let first = session.on_challenge(&m, "INVITE", URI, body);
        if matches!(first, AuthStep::Retry { .. }) {
            let _ = session.authorize_next("BYE", URI, b"");
            // The same challenge again (not stale with a new nonce) means the password was refused.
            let second = session.on_challenge(&m, "INVITE", URI, body);
            assert_eq!(second, AuthStep::Rejected, "the same challenge answered twice");
        }
    }
}

/// The client address nonces are bound to.
const BIND: &[u8] = &[192, 0, 2, 1];

fn verifier(mode: u8) -> DigestVerifier {
    let (algorithm, qop) = match (mode >> 2) % 3 {
        0 => (Algorithm::Md5, Some(Qop::Auth)),
        1 => (Algorithm::Sha256, Some(Qop::Auth)),
        _ => (Algorithm::Md5, None),
    };
    DigestVerifier::new(
        "edge.example.com",
        b"fuzz secret",
        300,
        &[algorithm],
        qop,
        AuthHeader::ProxyAuthorization,
    )
}

/// An agent's credentials (anything) checked by the edge.
fn server_side(value: &str, mode: u8) {
    let v = verifier(mode);
    if let Ok(m) = Message::parse(request("Proxy-Authorization", value, b"")) {
        let _ = m.proxy_authorization();
        let _ = v.check(&m, NOW, BIND, |u| (u == "alice").then_some(Secret::Password("secret")));
        let _ = v.check(&m, NOW, BIND, |_| Some(Secret::Ha1("5f4dcc3b5aa765d61d8327deb882cf99")));
    }
    let minter = NonceMinter::new(b"fuzz secret", 300);
    let _ = minter.check(value, "edge.example.com", NOW, BIND);
}

/// The edge's challenge answered with the right password authorizes that user; a wrong one does not.
fn round_trip(username: &str, password: &str, mode: u8) {
    let v = verifier(mode);
    let header_value = v.challenge(NOW, BIND, false).header_values.remove(0);
    let ch = match DigestChallenge::parse(&header_value) {
        Ok(c) => c,
        Err(e) => panic!("our challenge does not parse: {e}\n{header_value}"),
    };
    let Ok(answer) = authorize(
        &ch,
        &DigestCredentials::new(username, password),
        "INVITE",
        URI,
        1,
        "c0ffee",
        b"",
    ) else {
        // Control characters in the name or password: nothing to send.
        return;
    };
    let Ok(m) = Message::parse(request("Proxy-Authorization", &answer, b"")) else {
        panic!("our Proxy-Authorization does not parse\n{answer}");
    };
    let lookup = |u: &str| (u == username).then_some(Secret::Password(password));
    match v.check(&m, NOW + 1, BIND, lookup) {
        Verdict::Authorized { username: u, .. } => assert_eq!(u, username),
        other => panic!("right password not authorized: {other:?}\n{answer}"),
    }
    let wrong = format!("{password}x");
    let lookup = |u: &str| (u == username).then_some(Secret::Password(wrong.as_str()));
    assert!(
        !matches!(v.check(&m, NOW + 1, BIND, lookup), Verdict::Authorized { .. }),
        "wrong password authorized\n{answer}"
    );
}

fn request(header: &str, value: &str, body: &[u8]) -> Bytes {
    let mut r = format!(
        "INVITE {URI} SIP/2.0\r\nVia: SIP/2.0/UDP 192.0.2.1;branch=z9hG4bK1\r\nFrom: <sip:a@b>;tag=1\r\n\
         To: <sip:c@d>\r\nCall-ID: x\r\nCSeq: 1 INVITE\r\nMax-Forwards: 70\r\n{header}: {value}\r\n\
         Content-Length: {}\r\n\r\n",
        body.len()
    )
    .into_bytes();
    r.extend_from_slice(body);
    Bytes::from(r)
}
