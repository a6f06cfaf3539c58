//! RFC 4475 torture messages (vendored from shared/sip/rfc4475 into tests/data).
//! valid/: parse and validate; invalid/: refused by parse or by `validate` (the table names
//! which check); semantic/: parse, with the application-level facts the RFC cares about.

use std::path::PathBuf;

use bytes::Bytes;
use sip_core::headers::Transport;
use sip_core::message::{validate, HeaderName, Message, Method, ParseError, Uri};

fn data(dir: &str, name: &str) -> Bytes {
    let p = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/data/rfc4475")
        .join(dir)
        .join(format!("{name}.dat"));
    Bytes::from(std::fs::read(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display())))
}

fn parse(dir: &str, name: &str) -> Message {
    Message::parse(data(dir, name)).unwrap_or_else(|e| panic!("{dir}/{name}: {e}"))
}

fn files(dir: &str) -> Vec<String> {
    let p = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/data/rfc4475")
        .join(dir);
    let mut v: Vec<String> = std::fs::read_dir(p)
        .unwrap()
        .map(|e| {
            e.unwrap()
                .file_name()
                .to_string_lossy()
                .trim_end_matches(".dat")
                .to_string()
        })
        .collect();
    v.sort();
    v
}

const VALID: [&str; 13] = [
    "dblreq",
    "esc01",
    "esc02",
    "escnull",
    "intmeth",
    "longreq",
    "lwsdisp",
    "mpart01",
    "noreason",
    "semiuri",
    "transports",
    "unreason",
    "wsinv",
];

#[test]
fn every_file_has_an_expectation() {
    let mut valid: Vec<String> = VALID.iter().map(|s| s.to_string()).collect();
    valid.sort();
    assert_eq!(files("valid"), valid);
    let mut invalid: Vec<String> = INVALID.iter().map(|(n, _, _)| n.to_string()).collect();
    invalid.sort();
    assert_eq!(files("invalid"), invalid);
    let mut semantic: Vec<String> = SEMANTIC.iter().map(|(n, _)| n.to_string()).collect();
    semantic.sort();
    assert_eq!(files("semantic"), semantic);
}

/// Touches every typed view; valid messages must have no error in any view they carry.
fn all_views_ok(m: &Message) {
    if m.is_request() {
        m.request_uri().unwrap();
    }
    m.vias().unwrap();
    m.top_via().unwrap();
    m.from().unwrap();
    m.to().unwrap();
    m.call_id().unwrap();
    m.cseq().unwrap();
    m.max_forwards().unwrap();
    m.content_length().unwrap();
    m.contacts().unwrap();
    m.routes().unwrap();
    m.record_routes().unwrap();
    m.www_authenticate().unwrap();
    m.authorization().unwrap();
}

#[test]
fn valid_messages_parse_and_validate() {
    for name in VALID {
        let m = parse("valid", name);
        validate(&m).unwrap_or_else(|e| panic!("valid/{name} refused: {e}"));
        all_views_ok(&m);
    }
}

#[test]
fn wsinv_whitespace_and_folding() {
    let m = parse("valid", "wsinv");
    assert_eq!(m.method(), Some(&Method::Invite));
    assert_eq!(m.to().unwrap().tag(), Some("1918181833n"));
    let from = m.from().unwrap();
    assert_eq!(from.display_name.as_deref(), Some("J Rosenberg \\\""));
    assert_eq!(from.tag(), Some("98asjd8"));
    assert_eq!(m.max_forwards().unwrap(), Some(68));
    let cseq = m.cseq().unwrap();
    assert_eq!((cseq.seq, cseq.method), (9, Method::Invite));
    let vias = m.vias().unwrap();
    assert_eq!(vias.len(), 3);
    assert_eq!(vias[0].host, "192.0.2.2");
    assert_eq!(vias[0].transport, Transport::Udp);
    assert_eq!(vias[1].transport, Transport::Tcp);
    assert_eq!(vias[1].branch(), Some("z9hG4bK9ikj8"));
    assert_eq!(vias[2].host, "192.168.255.111");
    assert_eq!(vias[2].branch(), Some("z9hG4bK30239"));
    let c = &m.contacts().unwrap()[0];
    assert_eq!(c.display_name.as_deref(), Some("Quoted string \"\""));
    assert_eq!(c.param("q"), Some("0.33"));
    assert_eq!(c.param("newparam"), Some("newvalue"));
    assert_eq!(m.header(&HeaderName::Subject), Some(""));
    let nf = m.header(&HeaderName::from("newfangledheader")).unwrap();
    assert!(nf.starts_with("newfangled value") && nf.ends_with("continued newfangled value"));
    assert_eq!(m.routes().unwrap()[0].uri.host(), Some("services.example.com"));
    assert_eq!(m.body().len(), 150);
}

#[test]
fn escapes_and_odd_tokens() {
    let m = parse("valid", "esc01");
    assert_eq!(
        m.request_uri().unwrap().user().as_deref(),
        Some("sips:user@example.com")
    );
    assert_eq!(m.to().unwrap().uri.user().as_deref(), Some("user"));
    assert_eq!(m.from().unwrap().uri.user().as_deref(), Some("I have spaces"));
    let c = &m.contacts().unwrap()[0];
    let Uri::Sip(u) = &c.uri else { panic!() };
    assert_eq!(u.user_decoded().as_deref(), Some("caller"));
    assert_eq!(u.param("n%61me"), Some("v%61lue%25%34%31"));

    let m = parse("valid", "esc02");
    assert_eq!(m.method(), Some(&Method::Extension("RE%47IST%45R".into())));
    assert_eq!(m.to().unwrap().display_name.as_deref(), Some("%Z%45"));
    // "C%6Fntact" is an extension header, not Contact.
    assert_eq!(m.contacts().unwrap().len(), 2);

    let m = parse("valid", "escnull");
    assert_eq!(m.to().unwrap().uri.user().as_deref(), Some("null-\0-null"));

    let m = parse("valid", "intmeth");
    assert_eq!(
        m.method().unwrap().as_str(),
        "!interesting-Method0123456789_*+`.%indeed'~"
    );
    assert_eq!(m.cseq().unwrap().method, *m.method().unwrap());
    assert_eq!(m.call_id().unwrap(), "intmeth.word%ZK-!.*_+'@word`~)(><:\\/\"][?}{");
    assert_eq!(
        m.to().unwrap().display_name.as_deref(),
        Some("BEL:\x07 NUL:\0 DEL:\x7f")
    );
    assert_eq!(
        m.from().unwrap().display_name.as_deref(),
        Some("token1~` token2'+_ token3*%!.-")
    );
    let Uri::Sip(ru) = m.request_uri().unwrap() else {
        panic!()
    };
    assert_eq!(ru.password, Some("&it+has=1,weird!*pas$wo~d_too.(doesn't-it)"));

    let m = parse("valid", "semiuri");
    let Uri::Sip(ru) = m.request_uri().unwrap() else {
        panic!()
    };
    assert_eq!(ru.user_decoded().as_deref(), Some("user;par=u@example.net"));
    assert_eq!(ru.host, "example.com");
    assert!(m.header(&HeaderName::Accept).unwrap().contains("message/sipfrag"));
}

#[test]
fn other_valid_details() {
    let m = parse("valid", "dblreq");
    assert_eq!(m.method(), Some(&Method::Register));
    assert!(m.body().is_empty());
    assert!(m.bytes().ends_with(b"Content-Length: 0\r\n\r\n"));

    let m = parse("valid", "longreq");
    assert_eq!(m.vias().unwrap().len(), 34);
    assert_eq!(m.to().unwrap().uri.host(), Some("example.com"));
    assert_eq!(m.body().len(), 150);

    assert_eq!(
        parse("valid", "lwsdisp").from().unwrap().display_name.as_deref(),
        Some("caller")
    );
    let m = parse("valid", "mpart01");
    assert_eq!(m.body().len(), 553);
    assert!(m.content_type().unwrap().starts_with("multipart/mixed"));

    let m = parse("valid", "noreason");
    assert_eq!((m.status(), m.reason()), (Some(100), Some("")));
    let m = parse("valid", "unreason");
    assert_eq!(m.status(), Some(200));
    assert!(m.reason().unwrap().starts_with("= 2**3 * 5**2 но"));

    let t: Vec<Transport> = parse("valid", "transports")
        .vias()
        .unwrap()
        .iter()
        .map(|v| v.transport)
        .collect();
    assert_eq!(
        t,
        [
            Transport::Udp,
            Transport::Sctp,
            Transport::Tls,
            Transport::Other,
            Transport::Tcp
        ]
    );
}

/// Where an invalid message is caught.
#[derive(Debug, Clone, Copy)]
enum Caught {
    Parse,
    Validate,
}

type Check = fn(&ParseError) -> bool;

const INVALID: [(&str, Caught, Check); 19] = [
    ("badaspec", Caught::Validate, |e| {
        matches!(e, ParseError::InvalidHeader { header: "To", .. })
    }),
    ("baddate", Caught::Validate, |e| {
        matches!(e, ParseError::InvalidHeader { header: "Date", .. })
    }),
    // The file has no blank line after the headers; see baddn_display_name for the name check.
    ("baddn", Caught::Parse, |e| {
        matches!(e, ParseError::MissingHeaderTerminator)
    }),
    ("badinv01", Caught::Validate, |e| {
        matches!(e, ParseError::InvalidHeader { header: "Via", .. })
    }),
    ("badvers", Caught::Parse, |e| {
        matches!(e, ParseError::UnsupportedVersion)
    }),
    ("bigcode", Caught::Parse, |e| matches!(e, ParseError::InvalidStatus)),
    ("clerr", Caught::Parse, |e| {
        matches!(e, ParseError::BodyTooShort { declared: 9999, .. })
    }),
    ("escruri", Caught::Validate, |e| {
        matches!(e, ParseError::InvalidRequestUri(_))
    }),
    ("ltgtruri", Caught::Validate, |e| {
        matches!(e, ParseError::InvalidRequestUri(_))
    }),
    ("lwsruri", Caught::Parse, |e| {
        matches!(e, ParseError::InvalidStartLine(_))
    }),
    ("lwsstart", Caught::Parse, |e| {
        matches!(e, ParseError::InvalidStartLine(_))
    }),
    ("mismatch01", Caught::Validate, |e| {
        matches!(e, ParseError::CSeqMethodMismatch)
    }),
    ("mismatch02", Caught::Validate, |e| {
        matches!(e, ParseError::CSeqMethodMismatch)
    }),
    ("ncl", Caught::Parse, |e| matches!(e, ParseError::InvalidContentLength)),
    ("quotbal", Caught::Validate, |e| {
        matches!(e, ParseError::InvalidHeader { header: "To", .. })
    }),
    ("regbadct", Caught::Validate, |e| {
        matches!(e, ParseError::InvalidHeader { header: "Contact", .. })
    }),
    ("scalar02", Caught::Validate, |e| {
        matches!(e, ParseError::InvalidHeader { header: "CSeq", .. })
    }),
    ("scalarlg", Caught::Validate, |e| {
        matches!(e, ParseError::InvalidHeader { header: "CSeq", .. })
    }),
    ("trws", Caught::Parse, |e| matches!(e, ParseError::InvalidStartLine(_))),
];

#[test]
fn invalid_messages_are_refused_by_the_named_check() {
    for (name, caught, check) in INVALID {
        let err = match (Message::parse(data("invalid", name)), caught) {
            (Err(e), Caught::Parse) => e,
            (Ok(m), Caught::Validate) => match validate(&m) {
                Err(e) => e,
                Ok(()) => panic!("invalid/{name} passed validation"),
            },
            (r, c) => panic!("invalid/{name}: expected {c:?} failure, got {r:?}"),
        };
        assert!(check(&err), "invalid/{name}: unexpected error {err:?}");
        assert!(!err.warning_text().contains('"'));
    }
}

#[test]
fn invalid_scalars_fail_their_own_views_too() {
    let m = parse("invalid", "scalar02");
    assert!(m.max_forwards().is_err());
    assert!(m.expires().is_err());
    let m = parse("invalid", "scalarlg");
    assert!(m.cseq().is_err());
    assert!(validate(&m).is_err());
}

#[test]
fn baddn_display_name() {
    let mut raw = data("invalid", "baddn").to_vec();
    raw.extend_from_slice(b"\r\n");
    let m = Message::parse(Bytes::from(raw)).unwrap();
    assert!(matches!(
        m.from(),
        Err(ParseError::InvalidHeader { header: "From", .. })
    ));
    assert!(validate(&m).is_err());
}

#[test]
fn badvers_with_blank_line_still_refused() {
    // The version check is on the start line itself, not only the Via.
    let m = Message::parse(data("invalid", "badvers"));
    assert_eq!(m.unwrap_err(), ParseError::UnsupportedVersion);
}

/// `None`: validation passes; `Some(check)`: validation must fail that way.
const SEMANTIC: [(&str, Option<Check>); 17] = [
    ("badbranch", None),
    ("bcast", None),
    ("bext01", None),
    ("cparam01", None),
    ("cparam02", None),
    ("insuf", Some(|e| matches!(e, ParseError::MissingHeader("To")))),
    ("inv2543", None),
    ("invut", None),
    ("mcl01", Some(|e| matches!(e, ParseError::ConflictingContentLength))),
    ("multi01", Some(|e| matches!(e, ParseError::DuplicateHeader("To")))),
    ("novelsc", None),
    ("regaut01", None),
    ("regescrt", None),
    ("sdp01", None),
    ("unkscm", None),
    ("unksm2", None),
    ("zeromf", None),
];

#[test]
fn semantic_messages_parse() {
    for (name, expect) in SEMANTIC {
        let m = parse("semantic", name);
        match (validate(&m), expect) {
            (Ok(()), None) => {}
            (Err(e), Some(check)) => assert!(check(&e), "semantic/{name}: {e:?}"),
            (r, _) => panic!("semantic/{name}: unexpected validation result {r:?}"),
        }
    }
}

#[test]
fn semantic_details() {
    let v = parse("semantic", "badbranch")
        .top_via()
        .unwrap()
        .branch()
        .map(str::to_owned);
    assert_eq!(v.as_deref(), Some("z9hG4bK"));
    let m = parse("semantic", "bcast");
    assert_eq!(m.vias().unwrap()[1].host, "255.255.255.255");
    let m = parse("semantic", "bext01");
    assert_eq!(m.require(), ["nothingSupportsThis", "nothingSupportsThisEither"]);
    assert_eq!(m.proxy_require().len(), 2);
    let m = parse("semantic", "cparam01");
    let c = &m.contacts().unwrap()[0];
    assert_eq!(c.param("unknownparam"), Some(""));
    let Uri::Sip(u) = &c.uri else { panic!() };
    assert!(u.params.is_empty());
    let m = parse("semantic", "cparam02");
    let c = &m.contacts().unwrap()[0];
    assert_eq!(c.param("unknownparam"), None);
    let Uri::Sip(u) = &c.uri else { panic!() };
    assert_eq!(u.param("unknownparam"), Some(""));
    let m = parse("semantic", "inv2543");
    assert_eq!(m.top_via().unwrap().branch(), None);
    assert_eq!(m.max_forwards().unwrap(), None);
    assert_eq!(m.from().unwrap().tag(), None);
    assert!(!m.body().is_empty());
    let m = parse("semantic", "mcl01");
    assert!(m.content_length().is_err());
    assert_eq!(
        Message::parse_stream(m.bytes().clone()).unwrap_err(),
        ParseError::ConflictingContentLength
    );
    let m = parse("semantic", "novelsc");
    assert!(matches!(
        m.request_uri().unwrap(),
        Uri::Other {
            scheme: "soap.beep",
            ..
        }
    ));
    let m = parse("semantic", "regaut01");
    assert_eq!(m.authorization().unwrap().unwrap().scheme, "NoOneKnowsThisScheme");
    let m = parse("semantic", "regescrt");
    let Uri::Sip(u) = &m.contacts().unwrap()[0].uri else {
        panic!()
    };
    assert_eq!(u.headers, Some("Route=%3Csip:sip.example.com%3E"));
    let m = parse("semantic", "unkscm");
    assert!(matches!(
        m.request_uri().unwrap(),
        Uri::Other {
            scheme: "nobodyKnowsThisScheme",
            rest: "totallyopaquecontent"
        }
    ));
    let m = parse("semantic", "unksm2");
    assert_eq!(m.to().unwrap().uri.scheme(), "isbn");
    assert_eq!(m.from().unwrap().uri.scheme(), "http");
    assert_eq!(m.contacts().unwrap()[0].uri.scheme(), "name");
    assert_eq!(parse("semantic", "zeromf").max_forwards().unwrap(), Some(0));
    assert_eq!(
        parse("semantic", "invut").content_type(),
        Some("application/unknownformat")
    );
}
