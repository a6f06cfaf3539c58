//! Answering a request our parser refused. RFC 4475 asks for a 400 wherever the message still gives a way
//! to route a response (a usable Via), so this scans the raw bytes leniently for the headers a response
//! copies (Via, From, To, Call-ID, CSeq) without trusting anything else in them.

use std::net::SocketAddr;

use bytes::{BufMut, Bytes, BytesMut};

/// Largest header section we are willing to scan here.
const MAX_SCAN: usize = 64 * 1024;

#[derive(Clone, Copy, PartialEq, Eq)]
enum Kind {
    Via,
    From,
    To,
    CallId,
    CSeq,
}

fn kind(name: &[u8]) -> Option<Kind> {
    let n = name.trim_ascii();
    let eq = |s: &str| n.eq_ignore_ascii_case(s.as_bytes());
    if eq("via") || eq("v") {
        Some(Kind::Via)
    } else if eq("from") || eq("f") {
        Some(Kind::From)
    } else if eq("to") || eq("t") {
        Some(Kind::To)
    } else if eq("call-id") || eq("i") {
        Some(Kind::CallId)
    } else if eq("cseq") {
        Some(Kind::CSeq)
    } else {
        None
    }
}

/// A Via we could send a response along: `SIP/<version>/<transport> <host>` (any version, so that a
/// request of an unknown SIP version can still get its 505).
fn usable_via(v: &[u8]) -> bool {
    let v = v.trim_ascii();
    let Some(rest) = v.get(..4) else { return false };
    if !rest.eq_ignore_ascii_case(b"SIP/") {
        return false;
    }
    let Some(slash) = v[4..].iter().position(|b| *b == b'/') else {
        return false;
    };
    if slash == 0 || !v[4..4 + slash].iter().all(|b| b.is_ascii_digit() || *b == b'.') {
        return false;
    }
    let after = &v[4 + slash + 1..];
    let Some(sp) = after.iter().position(|b| b.is_ascii_whitespace()) else {
        return false;
    };
    let transport = &after[..sp];
    let host = after[sp..].trim_ascii();
    !transport.is_empty()
        && transport.iter().all(|b| b.is_ascii_alphanumeric())
        && host.first().is_some_and(|b| b.is_ascii_alphanumeric() || *b == b'[')
}

/// Builds a rejection (`400 Bad Request`, or `505 Version Not Supported`) for `raw`, or `None` when it is a
/// response, has no request line or no usable Via.
pub fn reject(raw: &[u8], source: SocketAddr, status: &str, warning: &str, server: &str) -> Option<Bytes> {
    let raw = &raw[..raw.len().min(MAX_SCAN)];
    let head_end = find(raw, b"\r\n\r\n")
        .or_else(|| find(raw, b"\n\n"))
        .unwrap_or(raw.len());
    let head = &raw[..head_end];
    let mut lines = split_lines(head);
    let first = lines.next()?;
    // Never answer a response. The request line itself may be what is broken (a control byte in the
    // method, say): the answer copies nothing from it, so only its presence matters.
    if first.len() < 4 || first[..4].eq_ignore_ascii_case(b"SIP/") {
        return None;
    }

    // Unfold continuation lines into (kind, value) pairs.
    let mut fields: Vec<(Kind, Vec<u8>)> = Vec::new();
    let mut current: Option<usize> = None;
    for line in lines {
        if line.first().is_some_and(|b| *b == b' ' || *b == b'\t') {
            if let Some(i) = current {
                fields[i].1.push(b' ');
                fields[i].1.extend_from_slice(line.trim_ascii());
            }
            continue;
        }
        current = None;
        let Some(colon) = line.iter().position(|b| *b == b':') else {
            continue;
        };
        if let Some(k) = kind(&line[..colon]) {
            if fields.len() >= 64 {
                break;
            }
            fields.push((k, line[colon + 1..].trim_ascii().to_vec()));
            current = Some(fields.len() - 1);
        }
    }
    let top = fields.iter().position(|(k, _)| *k == Kind::Via)?;
    if !usable_via(&fields[top].1) {
        return None;
    }

    let mut out = BytesMut::with_capacity(512);
    out.put_slice(b"SIP/2.0 ");
    out.put_slice(status.as_bytes());
    out.put_slice(b"\r\n");
    let mut first_via = true;
    for kind in [Kind::Via, Kind::From, Kind::To, Kind::CallId, Kind::CSeq] {
        for (k, v) in fields.iter().filter(|(k, _)| *k == kind) {
            let name: &[u8] = match k {
                Kind::Via => b"Via",
                Kind::From => b"From",
                Kind::To => b"To",
                Kind::CallId => b"Call-ID",
                Kind::CSeq => b"CSeq",
            };
            out.put_slice(name);
            out.put_slice(b": ");
            if *k == Kind::Via && first_via {
                first_via = false;
                // RFC 3581: the top Via records where the request really came from.
                let cut = v.iter().position(|b| *b == b',').unwrap_or(v.len());
                put_clean(&mut out, v[..cut].trim_ascii_end());
                out.put_slice(format!(";received={};rport={}", source.ip(), source.port()).as_bytes());
                put_clean(&mut out, &v[cut..]);
            } else {
                put_clean(&mut out, v);
            }
            if *k == Kind::To && !contains_ci(v, b";tag=") {
                out.put_slice(b";tag=");
                out.put_slice(sip_core::build::new_token().as_bytes());
            }
            out.put_slice(b"\r\n");
        }
    }
    out.put_slice(b"Warning: ");
    out.put_slice(warning.as_bytes());
    if !server.is_empty() {
        out.put_slice(b"\r\nServer: ");
        out.put_slice(server.as_bytes());
    }
    out.put_slice(b"\r\nContent-Length: 0\r\n\r\n");
    Some(out.freeze())
}

/// Copies a header value as text: invalid UTF-8 becomes U+FFFD and control characters (HTAB kept) are left
/// out. The request is being refused because something in it is broken, perhaps this very value; our answer
/// must still be readable SIP and must not carry a NUL or a bare CR (a line break to some parsers) on.
fn put_clean(out: &mut BytesMut, v: &[u8]) {
    if v.iter().all(|b| *b == b'\t' || (b' '..0x7f).contains(b)) {
        out.put_slice(v);
        return;
    }
    let mut utf8 = [0u8; 4];
    for c in String::from_utf8_lossy(v)
        .chars()
        .filter(|c| *c == '\t' || !c.is_control())
    {
        out.put_slice(c.encode_utf8(&mut utf8).as_bytes());
    }
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

fn contains_ci(hay: &[u8], needle: &[u8]) -> bool {
    hay.windows(needle.len()).any(|w| w.eq_ignore_ascii_case(needle))
}

/// Lines split on LF with an optional CR stripped.
fn split_lines(head: &[u8]) -> impl Iterator<Item = &[u8]> {
    head.split(|b| *b == b'\n').map(|l| l.strip_suffix(b"\r").unwrap_or(l))
}

#[cfg(test)]
mod tests {
    use super::*;

    const SRC: &str = "192.0.2.7:5099";

    #[test]
    fn answers_along_the_via_with_received_and_rport() {
        let raw =
            b"INVITE sip:+14155550100@edge SIP/7.0\r\nVia: SIP/2.0/UDP client.example.com:5060;branch=z9hG4bKx\r\n\
f: <sip:a@b>;tag=1\r\nt: <sip:c@d>\r\ni: abc\r\nCSeq: 1 INVITE\r\n\r\n";
        let b = reject(
            raw,
            SRC.parse().unwrap(),
            "400 Bad Request",
            "399 edge \"bad version\"",
            "edge",
        )
        .unwrap();
        let s = std::str::from_utf8(&b).unwrap();
        assert!(s.starts_with("SIP/2.0 400 Bad Request\r\n"), "{s}");
        assert!(
            s.contains("Via: SIP/2.0/UDP client.example.com:5060;branch=z9hG4bKx;received=192.0.2.7;rport=5099\r\n"),
            "{s}"
        );
        let tag = s
            .split("To: <sip:c@d>;tag=")
            .nth(1)
            .and_then(|t| t.split("\r\n").next())
            .unwrap();
        assert_eq!(tag.len(), 16, "a 64-bit random tag: {s}");
        assert!(
            s.contains("Call-ID: abc\r\n") && s.contains("CSeq: 1 INVITE\r\n"),
            "{s}"
        );
        assert!(s.contains("Warning: 399 edge \"bad version\"\r\n"), "{s}");
    }

    /// Found by the endpoint fuzz target: a From holding bytes that are not UTF-8 was copied into the 400,
    /// which then was not SIP (our own parser refused it); a NUL or a bare CR went along the same way.
    #[test]
    fn copied_values_are_clean_text() {
        let raw = b"INVITE sip:x SIP/2.0\r\nVia: SIP/2.0/UDP h;branch=z9hG4bK1\r\nFrom: \"Al\xff\xfeice\" <sip:a@b>;tag=1\0\r\n\
To: <sip:c@d>\rX-Injected: 1\r\nCall-ID: abc\r\nCSeq: 1 INVITE\r\n\r\n";
        let b = reject(raw, SRC.parse().unwrap(), "400 Bad Request", "399 edge \"w\"", "edge").unwrap();
        let s = std::str::from_utf8(&b).expect("the answer is UTF-8");
        assert!(s.contains("From: \"Al\u{fffd}\u{fffd}ice\" <sip:a@b>;tag=1\r\n"), "{s}");
        assert!(s.contains("To: <sip:c@d>X-Injected: 1;tag="), "{s}");
        assert!(!s.contains('\0') && !s.replace("\r\n", "").contains('\r'), "{s:?}");
        let m = sip_core::Message::parse(b).expect("the answer parses");
        assert_eq!(m.status(), Some(400));
    }

    #[test]
    fn control_bytes_are_not_echoed_and_a_broken_request_line_still_gets_its_answer() {
        let raw = b"INV\x01ITE sip:x SIP/2.0\r\nVia: SIP/2.0/UDP h;branch=z9hG4bK1\r\nFrom: <sip:a\x00b@c>;tag=1\r\n\
To: <sip:c@d>\r\nCall-ID: a\r\nCSeq: 1 INVITE\r\n\r\n";
        let b = reject(raw, SRC.parse().unwrap(), "400 Bad Request", "w", "").unwrap();
        let s = std::str::from_utf8(&b).unwrap();
        assert!(s.contains("From: <sip:ab@c>;tag=1\r\n"), "{s}");
        assert!(
            !s.contains("Server:"),
            "no Server header when server_name is empty: {s}"
        );
    }

    #[test]
    fn no_via_no_answer() {
        let raw = b"OPTIONS sip:x SIP/2.0\r\nCall-ID: a\r\n\r\n";
        assert!(reject(raw, SRC.parse().unwrap(), "400 Bad Request", "w", "s").is_none());
    }

    #[test]
    fn responses_are_never_answered() {
        let raw = b"SIP/2.0 200 OK\r\nVia: SIP/2.0/UDP h;branch=z9hG4bK1\r\n\r\n";
        assert!(reject(raw, SRC.parse().unwrap(), "400 Bad Request", "w", "s").is_none());
    }

    #[test]
    fn garbage_never_panics() {
        let mut x: u32 = 7;
        let alphabet = b"INVITE Via:SIP/2.0/UDP h\r\n \t:,;";
        for len in 0..400 {
            let v: Vec<u8> = (0..len)
                .map(|_| {
                    x ^= x << 13;
                    x ^= x >> 17;
                    x ^= x << 5;
                    alphabet[x as usize % alphabet.len()]
                })
                .collect();
            let _ = reject(&v, SRC.parse().unwrap(), "400 Bad Request", "w", "s");
        }
    }
}
