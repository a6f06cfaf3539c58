//! Finding one header in raw bytes without parsing the message: what a dispatcher needs to route a
//! message to the engine shard that owns its dialog (by Call-ID) before anyone pays for a full parse.
//!
//! The scan reads header lines only (it stops at the blank line before the body), accepts the full name
//! and the compact form (`Call-ID` / `i`, any case, blanks before the colon), skips leading blanks and
//! folded lines (RFC 3261 7.3.1) before the value, and returns the value without its trailing blanks.
//! It never panics and reads each byte at most a few times, whatever it is given.

/// The Call-ID of the SIP message in `msg` (its first Call-ID header), or `None` when it has none, the
/// value is empty, or the header block ends first.
pub fn call_id(msg: &[u8]) -> Option<&[u8]> {
    header(msg, b"call-id", Some(b'i'))
}

/// The value of the first header named `name` (lower case) or `compact` (lower case), in raw bytes.
fn header<'a>(msg: &'a [u8], name: &[u8], compact: Option<u8>) -> Option<&'a [u8]> {
    // Skip the CRLFs a keep-alive may leave in front, then the start line.
    let mut at = msg.iter().position(|b| !matches!(b, b'\r' | b'\n'))?;
    at = next_line(msg, at)?;
    loop {
        let line_end = line_end(msg, at);
        let line = msg.get(at..line_end)?;
        if line.is_empty() {
            // The blank line: end of the headers.
            return None;
        }
        if let Some(colon) = memchr::memchr(b':', line) {
            let n = trim_end(&line[..colon]);
            let matches = n.eq_ignore_ascii_case(name) || (n.len() == 1 && Some(n[0].to_ascii_lowercase()) == compact);
            // A line starting with a blank continues the previous header: never a name.
            if matches && !matches!(line.first(), Some(b' ' | b'\t')) {
                return value(msg, at + colon + 1);
            }
        }
        at = next_line(msg, at)?;
    }
}

/// The value starting at `from` (just after the colon): blanks and folds skipped, up to the end of the
/// logical line, trailing blanks trimmed.
fn value(msg: &[u8], mut from: usize) -> Option<&[u8]> {
    loop {
        match msg.get(from) {
            Some(b' ' | b'\t') => from += 1,
            Some(b'\r' | b'\n') => {
                // A fold (line end followed by a blank) continues the value; any other line end ends it.
                let next = next_line(msg, from)?;
                if matches!(msg.get(next), Some(b' ' | b'\t')) {
                    from = next;
                } else {
                    return None;
                }
            }
            Some(_) => break,
            None => return None,
        }
    }
    let end = line_end(msg, from);
    let v = trim_end(msg.get(from..end)?);
    (!v.is_empty()).then_some(v)
}

/// Where the line starting at `at` ends (at its CR or LF, or the end of the input).
fn line_end(msg: &[u8], at: usize) -> usize {
    let rest = msg.get(at..).unwrap_or(&[]);
    at + memchr::memchr2(b'\r', b'\n', rest).unwrap_or(rest.len())
}

/// The start of the line after the one starting at `at` (CRLF, or a bare LF), or `None` at the end.
fn next_line(msg: &[u8], at: usize) -> Option<usize> {
    let end = line_end(msg, at);
    match msg.get(end)? {
        b'\r' if msg.get(end + 1) == Some(&b'\n') => Some(end + 2),
        _ => Some(end + 1),
    }
}

fn trim_end(s: &[u8]) -> &[u8] {
    let n = s.iter().rposition(|b| !matches!(b, b' ' | b'\t')).map_or(0, |i| i + 1);
    &s[..n]
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::message::Message;

    const INVITE: &str = "INVITE sip:+14155550100@edge SIP/2.0\r\nVia: SIP/2.0/UDP 192.0.2.1;branch=z9hG4bK1\r\n\
        From: <sip:a@b>;tag=1\r\nTo: <sip:c@d>\r\n{CALLID}\r\nCSeq: 1 INVITE\r\nMax-Forwards: 70\r\n\
        Content-Length: 0\r\n\r\n";

    fn with(header: &str) -> String {
        INVITE.replace("{CALLID}", header)
    }

    #[test]
    fn finds_the_call_id_as_the_parser_does() {
        for (header, want) in [
            ("Call-ID: abc@host", "abc@host"),
            ("call-id:abc@host", "abc@host"),
            ("CALL-ID   :   abc@host  ", "abc@host"),
            ("i: abc@host", "abc@host"),
            ("I:\tabc", "abc"),
            ("Call-ID:\r\n   folded@host", "folded@host"),
            ("Call-ID: \r\n\t folded2", "folded2"),
        ] {
            let msg = with(header);
            assert_eq!(call_id(msg.as_bytes()), Some(want.as_bytes()), "{header:?}");
            let parsed = Message::parse(bytes::Bytes::from(msg.clone())).expect(header);
            assert_eq!(parsed.call_id().ok(), Some(want), "parser disagrees on {header:?}");
        }
    }

    #[test]
    fn responses_bare_lf_and_keepalive_crlfs() {
        let resp = "SIP/2.0 200 OK\nVia: SIP/2.0/UDP x\nCall-ID: r1\nCSeq: 1 INVITE\n\n";
        assert_eq!(call_id(resp.as_bytes()), Some(&b"r1"[..]));
        let keep = format!("\r\n\r\n{}", with("i: k"));
        assert_eq!(call_id(keep.as_bytes()), Some(&b"k"[..]));
    }

    #[test]
    fn no_call_id_is_none() {
        assert_eq!(call_id(INVITE.replace("{CALLID}\r\n", "").as_bytes()), None);
        assert_eq!(call_id(with("Call-ID:   ").as_bytes()), None);
        assert_eq!(call_id(with("Call-ID:\r\nCSeq: 2 INVITE").as_bytes()), None);
        // Not in the body, not in a header whose name merely ends in "i" or contains "call-id".
        let body = "MESSAGE sip:a SIP/2.0\r\nX-Call-ID: no\r\nhi: no\r\nContent-Length: 11\r\n\r\nCall-ID: no";
        assert_eq!(call_id(body.as_bytes()), None);
        // A folded line that looks like a header is a continuation, not a Call-ID.
        let fold = "BYE sip:a SIP/2.0\r\nSubject: x\r\n i: no\r\n\r\n";
        assert_eq!(call_id(fold.as_bytes()), None);
    }

    #[test]
    fn never_panics_on_truncated_or_odd_input() {
        let full = with("Call-ID:\r\n  abc");
        for n in 0..=full.len() {
            let _ = call_id(&full.as_bytes()[..n]);
        }
        for junk in [
            &b""[..],
            b"\r",
            b"\n",
            b"\r\n\r\n",
            b"x",
            b"x\r",
            b"x\ri:",
            b"x\ni:",
            b"x\ni:\r",
            b":\n:",
        ] {
            let _ = call_id(junk);
        }
        assert_eq!(call_id(b"x\ni: v"), Some(&b"v"[..]));
    }
}
