//! Secrets out of stored traces and HEP: credentials in `Authorization`/`Proxy-Authorization` and SDES
//! keys in SDP `a=crypto` lines (RFC 4568 `inline:` key material).

/// A header value as the trace keeps it: credentials headers keep their scheme only.
pub fn header_value<'a>(name: &str, value: &'a str) -> std::borrow::Cow<'a, str> {
    if name.eq_ignore_ascii_case("authorization") || name.eq_ignore_ascii_case("proxy-authorization") {
        let scheme = value.trim_start().split([' ', '\t']).next().unwrap_or("");
        return format!("{scheme} [redacted]").into();
    }
    value.into()
}

/// The body with every `inline:` key of an `a=crypto` line replaced by `X`s of the same length (so the
/// message's Content-Length still holds).
pub fn body(text: &str) -> std::borrow::Cow<'_, str> {
    if !text.contains("a=crypto") {
        return text.into();
    }
    let mut out = String::with_capacity(text.len());
    for line in text.split_inclusive('\n') {
        if !line.starts_with("a=crypto") {
            out.push_str(line);
            continue;
        }
        let mut rest = line;
        while let Some(i) = rest.find("inline:") {
            let (head, tail) = rest.split_at(i + "inline:".len());
            out.push_str(head);
            let key_len = tail
                .find(|c: char| c == '|' || c == ';' || c.is_ascii_whitespace())
                .unwrap_or(tail.len());
            out.extend(std::iter::repeat_n('X', key_len));
            rest = &tail[key_len..];
        }
        out.push_str(rest);
    }
    out.into()
}

/// A whole message's text with [`header_value`] applied to its header fields (a folded credentials
/// value goes whole) and [`body`] to its body. Lines may end in CRLF or a bare LF (parsers accept both, so a
/// peer's LF-only message must not keep its credentials).
pub fn message(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut dropping = false;
    let mut consumed = 0;
    for (i, line) in text.split_inclusive('\n').enumerate() {
        consumed += line.len();
        let bare = line.trim_end_matches(['\r', '\n']);
        if i > 0 && bare.is_empty() {
            // The blank line: the body follows.
            out.push_str(line);
            out.push_str(&body(&text[consumed..]));
            return out;
        }
        if i > 0 && bare.starts_with([' ', '\t']) {
            if !dropping {
                out.push_str(line);
            }
            continue;
        }
        dropping = false;
        match bare.split_once(':') {
            Some((name, value)) if i > 0 => match header_value(name.trim(), value.trim()) {
                std::borrow::Cow::Owned(v) => {
                    dropping = true;
                    out.push_str(name);
                    out.push_str(": ");
                    out.push_str(&v);
                    out.push_str(&line[bare.len()..]);
                }
                std::borrow::Cow::Borrowed(_) => out.push_str(line),
            },
            _ => out.push_str(line),
        }
    }
    out
}

/// Whether a message may hold what [`message`] removes: any `authorization` (any case, so
/// `Proxy-Authorization` too) or `a=crypto` in its bytes. Run on every traced message, so it is a
/// vectorised search, not a comparison at every byte (that one cost more than the rest of tracing); a
/// false alarm only costs a parse.
pub fn may_hold_secrets(data: &[u8]) -> bool {
    const AUTH: &[u8] = b"authorization";
    // `z` is rare in SIP (a Via branch's `z9hG4bK`), so finding each (vectorised) and looking around it
    // is much cheaper than comparing at every byte.
    const Z_AT: usize = 7;
    // Built once: `memmem::find` builds its searcher on every call, which cost more than the search.
    static CRYPTO: std::sync::LazyLock<memchr::memmem::Finder<'static>> =
        std::sync::LazyLock::new(|| memchr::memmem::Finder::new(b"a=crypto"));
    CRYPTO.find(data).is_some()
        || memchr::memchr2_iter(b'z', b'Z', data).any(|z| {
            z >= Z_AT
                && data
                    .get(z - Z_AT..z - Z_AT + AUTH.len())
                    .is_some_and(|w| w.eq_ignore_ascii_case(AUTH))
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_message_loses_its_credentials_and_keys_only() {
        let m = "INVITE sip:a@b SIP/2.0\r\nProxy-Authorization: Digest username=\"u\",\r\n response=\"abc\"\r\n\
                 Via: SIP/2.0/UDP h\r\nContent-Length: 52\r\n\r\na=crypto:1 AES_CM_128_HMAC_SHA1_80 inline:KEYKEYKEY|2^20\r\n";
        let r = message(m);
        assert_eq!(
            r,
            "INVITE sip:a@b SIP/2.0\r\nProxy-Authorization: Digest [redacted]\r\nVia: SIP/2.0/UDP h\r\n\
             Content-Length: 52\r\n\r\na=crypto:1 AES_CM_128_HMAC_SHA1_80 inline:XXXXXXXXX|2^20\r\n"
        );
    }

    #[test]
    fn credentials_keep_the_scheme_only() {
        let v = header_value("Proxy-Authorization", "Digest username=\"u\", response=\"abc\"");
        assert_eq!(v, "Digest [redacted]");
        assert_eq!(header_value("authorization", "Bearer x"), "Bearer [redacted]");
        assert_eq!(header_value("Via", "SIP/2.0/UDP a"), "SIP/2.0/UDP a");
    }

    #[test]
    fn crypto_keys_are_masked_to_the_same_length() {
        let sdp = "v=0\r\na=crypto:1 AES_CM_128_HMAC_SHA1_80 inline:WVNfX19zZW1jdGwgKCkgewkyMjA7fQp9CnVubGVz|2^20|1:4\r\n\
                   a=crypto:2 AES_CM_128_HMAC_SHA1_32 inline:NzB4d1BINUAvLEw6UzF3WSJ+PSdFcGdUJShpX1Zj;inline:abc\r\nm=audio\r\n";
        let r = body(sdp);
        assert_eq!(r.len(), sdp.len());
        assert!(!r.contains("WVNfX19"), "{r}");
        assert!(!r.contains("NzB4d1"), "{r}");
        assert!(!r.contains("inline:abc"), "{r}");
        assert!(r.contains("|2^20|1:4\r\n"), "{r}");
        assert!(r.ends_with("m=audio\r\n"));
    }

    #[test]
    fn bare_lf_messages_lose_their_credentials_too() {
        let m = "REGISTER sip:a SIP/2.0\nAuthorization: Digest username=\"u\", response=\"abc\"\nVia: x\n\n";
        let r = message(m);
        assert_eq!(
            r,
            "REGISTER sip:a SIP/2.0\nAuthorization: Digest [redacted]\nVia: x\n\n"
        );
        assert!(may_hold_secrets(m.as_bytes()));
        assert!(!may_hold_secrets(b"OPTIONS sip:a SIP/2.0\r\n\r\n"));
    }

    #[test]
    fn secrets_are_suspected_in_any_case_and_nothing_else_is() {
        assert!(may_hold_secrets(
            b"INVITE sip:a SIP/2.0\r\nAuthorization: Digest x\r\n\r\n"
        ));
        assert!(may_hold_secrets(
            b"INVITE sip:a SIP/2.0\r\nPROXY-AUTHORIZATION: Digest x\r\n\r\n"
        ));
        assert!(may_hold_secrets(b"authorization"));
        assert!(may_hold_secrets(
            b"INVITE sip:a SIP/2.0\r\n\r\nv=0\r\na=crypto:1 AES_CM_128_HMAC_SHA1_80 inline:k\r\n"
        ));
        assert!(!may_hold_secrets(
            b"INVITE sip:a SIP/2.0\r\nVia: SIP/2.0/UDP h;branch=z9hG4bKz\r\nCall-ID: a@b\r\n\r\nv=0\r\na=rtpmap:0 PCMU/8000\r\n"
        ));
        assert!(!may_hold_secrets(b"authorizatio"));
        assert!(!may_hold_secrets(b""));
    }
}
