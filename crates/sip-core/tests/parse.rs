//! Message-level parsing behaviour beyond the RFC 4475 corpus.

use bytes::Bytes;
use sip_core::headers::Transport;
use sip_core::message::{
    validate_request, HeaderName, Message, Method, ParseError, Uri, MAX_HEADERS, MAX_MESSAGE_SIZE,
};

fn req(headers: &str, body: &str) -> String {
    format!("INVITE sip:bob@example.com SIP/2.0\r\n{headers}\r\n{body}")
}

const BASE: &str = "Via: SIP/2.0/UDP 192.0.2.1;branch=z9hG4bK1\r\n\
To: <sip:bob@example.com>\r\n\
From: <sip:alice@example.com>;tag=1\r\n\
Call-ID: abc@192.0.2.1\r\n\
CSeq: 1 INVITE\r\n\
Max-Forwards: 70\r\n";

fn p(s: &str) -> Result<Message, ParseError> {
    Message::parse(Bytes::from(s.to_owned()))
}

#[test]
fn compact_forms_map_to_long_names() {
    let m = p(
        "OPTIONS sip:x@y SIP/2.0\r\nv: SIP/2.0/TCP h;branch=z9hG4bKa\r\nt: <sip:x@y>\r\n\
               f: <sip:a@b>;tag=9\r\ni: cid\r\nCSeq: 2 OPTIONS\r\nm: <sip:a@c>\r\nk: timer\r\n\
               c: text/plain\r\ns: hi\r\no: presence\r\nx: 1800\r\ne: gzip\r\nl: 2\r\n\r\nok",
    )
    .unwrap();
    validate_request(&m).unwrap();
    assert_eq!(m.top_via().unwrap().transport, Transport::Tcp);
    assert_eq!(m.call_id().unwrap(), "cid");
    assert_eq!(m.contacts().unwrap().len(), 1);
    assert_eq!(m.supported(), ["timer"]);
    assert_eq!(m.content_type(), Some("text/plain"));
    assert_eq!(m.header(&HeaderName::Subject), Some("hi"));
    assert_eq!(m.header(&HeaderName::Event), Some("presence"));
    assert_eq!(m.header(&HeaderName::SessionExpires), Some("1800"));
    assert_eq!(m.header(&HeaderName::ContentEncoding), Some("gzip"));
    assert_eq!(m.body(), b"ok");
    let names: Vec<HeaderName> = m.header_entries().map(|(n, _, _)| n).collect();
    assert_eq!(names[0], HeaderName::Via);
    assert_eq!(m.header_entries().next().unwrap().1, "v");
}

#[test]
fn folding_and_space_before_colon() {
    let m = p(&req(
        &format!("{BASE}Subject   :  a\r\n   folded\r\n\tvalue  \r\nX-Empty:\r\n"),
        "",
    ))
    .unwrap();
    assert_eq!(m.header(&HeaderName::Subject), Some("a\r\n   folded\r\n\tvalue"));
    assert_eq!(m.header(&HeaderName::from("x-empty")), Some(""));
    // A continuation before any header is malformed.
    assert!(p("OPTIONS sip:x@y SIP/2.0\r\n folded: x\r\n\r\n").is_err());
}

#[test]
fn multiple_headers_and_lists() {
    let m = p(&req(
        &format!(
            "{BASE}Route: <sip:p1.example.com;lr>, \"a,b\" <sip:p2.example.com;lr>\r\nRoute: <sip:p3.example.com;lr>\r\n\
             Via: SIP/2.0/UDP [2001:db8::9]:5070;branch=z9hG4bK2, SIP/2.0/TLS [::1];branch=z9hG4bK3\r\n\
             Require: 100rel , timer\r\nAllow: INVITE,ACK\r\nAllow: BYE\r\n"
        ),
        "",
    ))
    .unwrap();
    let routes = m.routes().unwrap();
    assert_eq!(routes.len(), 3);
    assert_eq!(routes[1].display_name.as_deref(), Some("a,b"));
    assert_eq!(routes[2].uri.host(), Some("p3.example.com"));
    assert_eq!(m.headers(&HeaderName::Route).count(), 2);
    let vias = m.vias().unwrap();
    assert_eq!(vias.len(), 3);
    assert_eq!((vias[1].host, vias[1].port), ("[2001:db8::9]", Some(5070)));
    assert_eq!(
        (vias[2].host, vias[2].port, vias[2].transport),
        ("[::1]", None, Transport::Tls)
    );
    assert_eq!(m.require(), ["100rel", "timer"]);
    assert_eq!(m.allow(), ["INVITE", "ACK", "BYE"]);
}

#[test]
fn uris_in_request_line() {
    for (uri, check) in [
        ("sip:[::1]:5060;transport=udp", "[::1]"),
        ("sips:alice@[2001:db8::1]", "[2001:db8::1]"),
    ] {
        let m = p(&format!(
            "OPTIONS {uri} SIP/2.0\r\n{}\r\n",
            BASE.replace("INVITE", "OPTIONS")
        ))
        .unwrap();
        assert_eq!(m.request_uri().unwrap().host(), Some(check));
    }
    let m = p(&format!(
        "OPTIONS tel:+1-415-555-0100;phone-context=+1 SIP/2.0\r\n{}\r\n",
        BASE.replace("INVITE", "OPTIONS")
    ))
    .unwrap();
    let Uri::Tel(t) = m.request_uri().unwrap() else {
        panic!()
    };
    assert_eq!(t.number, "+1-415-555-0100");
    assert_eq!(t.phone_context(), Some("+1"));
    validate_request(&m).unwrap();
}

#[test]
fn start_line_rules() {
    let ok = |s: &str| p(&format!("{s}\r\n{BASE}\r\n"));
    assert!(ok("INVITE sip:x@y SIP/2.0").is_ok());
    assert!(ok("INVITE sip:x@y sip/2.0").is_ok());
    assert_eq!(
        ok("INVITE sip:x@y SIP/3.0").unwrap_err(),
        ParseError::UnsupportedVersion
    );
    assert!(matches!(
        ok("INVITE sip:x@y HTTP/1.1"),
        Err(ParseError::InvalidStartLine(_))
    ));
    assert!(matches!(ok("INVITE sip:x@y"), Err(ParseError::InvalidStartLine(_))));
    assert!(matches!(ok("INV<ITE sip:x@y SIP/2.0"), Err(ParseError::InvalidMethod)));
    assert_eq!(
        ok("FOO sip:x@y SIP/2.0").unwrap().method(),
        Some(&Method::Extension("FOO".into()))
    );
    for (line, status) in [("SIP/2.0 180 Ringing", Some(180)), ("SIP/2.0 699 X", Some(699))] {
        assert_eq!(ok(line).unwrap().status(), status);
    }
    for bad in [
        "SIP/2.0 099 Low",
        "SIP/2.0 700 High",
        "SIP/2.0 20 Short",
        "SIP/2.0 2000 Long",
        "SIP/2.0 abc x",
    ] {
        assert_eq!(ok(bad).unwrap_err(), ParseError::InvalidStatus, "{bad}");
    }
}

#[test]
fn content_length_rules_datagram() {
    let m = p(&req(&format!("{BASE}Content-Length: 3\r\n"), "abcdef")).unwrap();
    assert_eq!(m.body(), b"abc");
    assert!(m.bytes().ends_with(b"\r\n\r\nabc"));
    assert_eq!(
        p(&req(&format!("{BASE}Content-Length: 10\r\n"), "abc")).unwrap_err(),
        ParseError::BodyTooShort {
            declared: 10,
            actual: 3
        }
    );
    for bad in ["-1", "abc", "99999999999999999999999", "1 2", ""] {
        assert_eq!(
            p(&req(&format!("{BASE}Content-Length: {bad}\r\n"), "")).unwrap_err(),
            ParseError::InvalidContentLength,
            "{bad:?}"
        );
    }
    let m = p(&req(BASE, "rest of datagram")).unwrap();
    assert_eq!(m.body(), b"rest of datagram");
    // Agreeing duplicates are fine; conflicting ones are tolerated by datagram parse but
    // reported by the typed view and validation.
    assert!(p(&req(&format!("{BASE}l: 3\r\nContent-Length: 3\r\n"), "abc"))
        .unwrap()
        .content_length()
        .is_ok());
    let m = p(&req(&format!("{BASE}l: 3\r\nContent-Length: 4\r\n"), "abcd")).unwrap();
    assert_eq!(m.content_length(), Err(ParseError::ConflictingContentLength));
    assert_eq!(validate_request(&m), Err(ParseError::ConflictingContentLength));
}

#[test]
fn content_length_rules_stream() {
    let s = |x: String| Message::parse_stream(Bytes::from(x));
    assert_eq!(s(req(BASE, "")).unwrap_err(), ParseError::MissingContentLength);
    assert_eq!(s(req(&format!("{BASE}l: 2\r\n"), "ab")).unwrap().body(), b"ab");
    assert_eq!(
        s(req(&format!("{BASE}l: 2\r\nl: 3\r\n"), "abc")).unwrap_err(),
        ParseError::ConflictingContentLength
    );
}

#[test]
fn limits() {
    let big = req(BASE, &"x".repeat(MAX_MESSAGE_SIZE));
    assert!(matches!(p(&big), Err(ParseError::TooLarge { .. })));
    let many: String = (0..=MAX_HEADERS).map(|i| format!("X-H{i}: v\r\n")).collect();
    assert!(matches!(p(&req(&many, "")), Err(ParseError::TooManyHeaders { .. })));
    let long = format!("{BASE}X-Long: {}\r\n", "a".repeat(9000));
    assert!(matches!(p(&req(&long, "")), Err(ParseError::LineTooLong { .. })));
    assert_eq!(p("").unwrap_err(), ParseError::Empty);
    assert_eq!(p("\r\n\r\n").unwrap_err(), ParseError::Empty);
    assert_eq!(
        p(&format!("INVITE sip:x@y SIP/2.0\r\n{BASE}")).unwrap_err(),
        ParseError::MissingHeaderTerminator
    );
    let mut non_utf8 = req(BASE, "").into_bytes();
    non_utf8.splice(0..0, []);
    let pos = non_utf8.len() - 2;
    non_utf8.splice(pos..pos, b"X-Bin: \xff\xfe\r\n".iter().copied());
    assert_eq!(Message::parse(Bytes::from(non_utf8)).unwrap_err(), ParseError::NotUtf8);
    // Binary bodies are fine.
    let mut bin = req(&format!("{BASE}Content-Length: 2\r\n"), "").into_bytes();
    bin.extend_from_slice(b"\xff\x00");
    assert_eq!(Message::parse(Bytes::from(bin)).unwrap().body(), b"\xff\x00");
}

#[test]
fn validation_names_the_fault() {
    let without = |name: &str| {
        let h: String = BASE
            .lines()
            .filter(|l| !l.starts_with(name))
            .map(|l| format!("{l}\r\n"))
            .collect();
        validate_request(&p(&req(&h, "")).unwrap())
    };
    assert_eq!(without("Via"), Err(ParseError::MissingHeader("Via")));
    assert_eq!(without("To"), Err(ParseError::MissingHeader("To")));
    assert_eq!(without("From"), Err(ParseError::MissingHeader("From")));
    assert_eq!(without("Call-ID"), Err(ParseError::MissingHeader("Call-ID")));
    assert_eq!(without("CSeq"), Err(ParseError::MissingHeader("CSeq")));
    // RFC 2543 peers omit Max-Forwards; only an invalid one is refused.
    assert_eq!(without("Max-Forwards"), Ok(()));
    let with = |extra: &str| validate_request(&p(&req(&format!("{BASE}{extra}"), "")).unwrap());
    assert!(matches!(
        with("Max-Forwards: 256\r\n"),
        Err(ParseError::DuplicateHeader("Max-Forwards"))
    ));
    let mf = p(&req(&BASE.replace("Max-Forwards: 70", "Max-Forwards: 256"), "")).unwrap();
    assert!(matches!(
        validate_request(&mf),
        Err(ParseError::InvalidHeader {
            header: "Max-Forwards",
            ..
        })
    ));
    assert!(matches!(
        with("Content-Type: nonsense\r\n"),
        Err(ParseError::InvalidHeader {
            header: "Content-Type",
            ..
        })
    ));
    assert!(matches!(
        with("Expires: -1\r\n"),
        Err(ParseError::InvalidHeader { header: "Expires", .. })
    ));
    assert_eq!(with("Content-Type: application/sdp;charset=utf-8\r\n"), Ok(()));
    let bye = p(&req(&BASE.replace("1 INVITE", "1 BYE"), "")).unwrap();
    let err = validate_request(&bye).unwrap_err();
    assert_eq!(err, ParseError::CSeqMethodMismatch);
    assert_eq!(err.warning_text(), "invalid CSeq: method does not match request method");
    // Unknown Request-URI scheme is a 416 decision, not a validation failure.
    let m = p(&req(BASE, "").replace("sip:bob@example.com SIP", "urn:service:sos SIP")).unwrap();
    assert_eq!(validate_request(&m), Ok(()));
}

/// RFC 3261 25.1 allows no control byte but HTAB in a header line (and CRLF as its end): a NUL, BEL or
/// a bare CR in a value is refused with the byte named, wherever it sits; escaped inside a quoted
/// string (a quoted-pair) it is text.
#[test]
fn control_bytes_are_refused_outside_quoted_pairs() {
    let control = |e: Result<Message, ParseError>| match e {
        Err(ParseError::ControlCharacter { byte, place }) => (byte, place),
        other => panic!("expected a control-character error, got {other:?}"),
    };
    assert_eq!(
        control(p(&req(&format!("{BASE}Subject: abc\0def\r\n"), ""))),
        (0, "header section")
    );
    assert_eq!(
        control(p(&req(&format!("{BASE}Subject: \"a\x07b\"\r\n"), ""))),
        (7, "header section"),
        "raw, not escaped, even inside quotes"
    );
    assert_eq!(
        control(p(&req(&format!("{BASE}X-A: a\rb\r\n"), ""))),
        (b'\r', "header section")
    );
    assert_eq!(
        control(p(&req(&format!("{BASE}X-A: del\x7f\r\n"), ""))),
        (0x7f, "header section")
    );
    let line = format!("INVITE sip:bob\0@example.com SIP/2.0\r\n{BASE}\r\n");
    assert_eq!(control(p(&line)), (0, "start line"));
    let method = format!("INV\x01ITE sip:bob@example.com SIP/2.0\r\n{BASE}\r\n");
    assert_eq!(control(p(&method)), (1, "start line"));
    // HTAB is whitespace, and a quoted-pair may escape a control byte.
    assert!(p(&req(&format!("{BASE}Subject:\tvalue\twith tabs\r\n"), "")).is_ok());
    let m = p(&req(&format!("{BASE}Subject: \"BEL \\\x07 NUL \\\0\"\r\n"), "")).unwrap();
    assert!(m.header(&HeaderName::from("Subject")).is_some());
    // The body is not the header section: binary bodies stay allowed.
    assert!(p(&req(&format!("{BASE}Content-Length: 3\r\n"), "\0\x01\x02")).is_ok());
}
