//! Builder output must re-parse and carry the RFC 3261 copied fields.

use bytes::Bytes;
use sip_core::build::{ack_for_non2xx, cancel_for, new_branch, RequestBuilder, ResponseBuilder};
use sip_core::message::{validate, validate_request, HeaderName, Message, Method};

const INVITE: &[u8] = include_bytes!("data/bench_invite.sip");

fn invite() -> Message {
    Message::parse(Bytes::from_static(INVITE)).unwrap()
}

#[test]
fn response_copies_dialog_fields_and_adds_received_rport() {
    let req = invite();
    let src = "198.51.100.99:40000".parse().unwrap();
    let out = ResponseBuilder::for_request(&req, 180, "Ringing")
        .received_from(src)
        .to_tag("as8d7f")
        .copy_record_route()
        .header("Contact", "<sip:edge@203.0.113.1>")
        .build();
    let resp = Message::parse(out).unwrap();
    validate(&resp).unwrap();
    assert_eq!((resp.status(), resp.reason()), (Some(180), Some("Ringing")));
    let vias = resp.vias().unwrap();
    assert_eq!(vias.len(), 2);
    assert_eq!(vias[0].received(), Some("198.51.100.99"));
    assert_eq!(vias[0].rport(), Some(Some(40000)));
    assert_eq!(vias[0].branch(), Some("z9hG4bK776asdhds"));
    assert_eq!(vias[1].received(), Some("203.0.113.9"));
    assert_eq!(resp.to().unwrap().tag(), Some("as8d7f"));
    assert_eq!(resp.from().unwrap().tag(), Some("1928301774"));
    assert_eq!(resp.call_id().unwrap(), req.call_id().unwrap());
    assert_eq!(resp.cseq().unwrap(), req.cseq().unwrap());
    assert_eq!(resp.record_routes().unwrap().len(), 1);
    assert_eq!(resp.content_length().unwrap(), Some(0));

    // 100 Trying never gets a To tag; same-IP sent-by without rport gets no received.
    let plain = Message::parse(Bytes::from_static(
        b"OPTIONS sip:x@y SIP/2.0\r\nVia: SIP/2.0/UDP [2001:db8::1]:5060;branch=z9hG4bKq\r\nTo: <sip:x@y>\r\n\
          From: <sip:a@b>;tag=1\r\nCall-ID: c\r\nCSeq: 1 OPTIONS\r\n\r\n",
    ))
    .unwrap();
    let out = ResponseBuilder::for_request(&plain, 100, "Trying")
        .received_from("[2001:db8::1]:5060".parse().unwrap())
        .to_tag("t")
        .build();
    let r = Message::parse(out).unwrap();
    assert_eq!(r.to().unwrap().tag(), None);
    assert_eq!(r.top_via().unwrap().received(), None);
    let out = ResponseBuilder::for_request(&plain, 200, "OK")
        .received_from("[2001:db8::2]:5060".parse().unwrap())
        .body("application/sdp", Bytes::from_static(b"v=0\r\n"))
        .build();
    let r = Message::parse(out).unwrap();
    assert_eq!(r.top_via().unwrap().received(), Some("2001:db8::2"));
    assert_eq!(r.body(), b"v=0\r\n");
    assert_eq!(r.content_type(), Some("application/sdp"));
}

#[test]
fn builder_neutralises_header_injection() {
    let req = invite();
    let out = ResponseBuilder::for_request(&req, 486, "Busy\r\nX-Evil: 1")
        .header("X-Note", "a\r\nVia: SIP/2.0/UDP evil")
        .build();
    let r = Message::parse(out).unwrap();
    assert_eq!(r.header(&HeaderName::from("X-Evil")), None);
    assert_eq!(r.vias().unwrap().len(), 2);
}

/// Found by the endpoint fuzz target: a dialed number with `%12` in it was echoed into a Warning, and the
/// edge sent a 484 its own parser (and any strict peer) refuses.
#[test]
fn builder_never_sends_control_bytes() {
    let req = invite();
    let w = sip_core::build::warning("edge", "bad number `1\u{12}2\u{0}\"x\\`");
    assert_eq!(w, "399 edge \"bad number `1 2 'x'`\"");
    let out = ResponseBuilder::for_request(&req, 484, "Address\u{7f} Incomplete")
        .header("Warning", &w)
        .header("X-Echo", "a\u{1}b\tc")
        .build();
    let r = Message::parse(out).expect("re-parses");
    assert_eq!(r.reason(), Some("Address  Incomplete"));
    assert_eq!(r.header(&HeaderName::from("X-Echo")), Some("a b\tc"));
}

#[test]
fn request_builder_round_trip() {
    let branch = new_branch();
    let via = format!("SIP/2.0/UDP 203.0.113.1:5060;branch={branch}");
    let out = RequestBuilder::new(Method::Options, "sip:carrier.example")
        .header("Via", &via)
        .header("From", "<sip:edge@oneinbox.example>;tag=9")
        .header("To", "<sip:carrier.example>")
        .header("Call-ID", "opt-1")
        .header("CSeq", "1 OPTIONS")
        .body("text/plain", Bytes::from_static(b"hi"))
        .build();
    let m = Message::parse(out).unwrap();
    validate_request(&m).unwrap();
    assert_eq!(m.max_forwards().unwrap(), Some(70));
    assert_eq!(m.top_via().unwrap().branch(), Some(branch.as_str()));
    assert_eq!(m.body(), b"hi");
    let custom = RequestBuilder::new(Method::Extension("FOO".into()), "sip:x@y")
        .header("max-forwards", "5")
        .build();
    let m = Message::parse(custom).unwrap();
    assert_eq!(m.max_forwards().unwrap(), Some(5));
    assert_eq!(m.headers(&HeaderName::MaxForwards).count(), 1);
}

#[test]
fn ack_and_cancel() {
    let inv = invite();
    let resp = Message::parse(
        ResponseBuilder::for_request(&inv, 486, "Busy Here")
            .to_tag("callee1")
            .build(),
    )
    .unwrap();
    let ack = Message::parse(ack_for_non2xx(&inv, &resp)).unwrap();
    validate_request(&ack).unwrap();
    assert_eq!(ack.method(), Some(&Method::Ack));
    assert_eq!(ack.request_uri_raw(), inv.request_uri_raw());
    assert_eq!(ack.vias().unwrap().len(), 1);
    assert_eq!(ack.top_via().unwrap().branch(), inv.top_via().unwrap().branch());
    assert_eq!(ack.to().unwrap().tag(), Some("callee1"));
    assert_eq!(ack.cseq().unwrap().seq, 314159);
    assert_eq!(ack.from().unwrap().tag(), Some("1928301774"));

    let cancel = Message::parse(cancel_for(&inv)).unwrap();
    validate_request(&cancel).unwrap();
    assert_eq!(cancel.method(), Some(&Method::Cancel));
    assert_eq!(cancel.cseq().unwrap().method, Method::Cancel);
    assert_eq!(cancel.to().unwrap().tag(), None);
    assert_eq!(cancel.top_via().unwrap().branch(), Some("z9hG4bK776asdhds"));
    assert_eq!(cancel.call_id().unwrap(), inv.call_id().unwrap());
}

#[test]
fn branches_are_unique_and_cookied() {
    let mut seen = std::collections::HashSet::new();
    for _ in 0..10_000 {
        let b = new_branch();
        assert!(b.starts_with("z9hG4bK") && b.len() == 23);
        assert!(seen.insert(b));
    }
}

/// `build_message` indexes what it writes instead of parsing it back: the result must be exactly what the
/// parser makes of the same bytes (every header, in order, the start line, the body).
#[test]
fn build_message_equals_parsing_the_built_bytes() {
    fn same(built: Message) {
        let parsed = Message::parse(built.bytes().clone()).unwrap();
        assert_eq!(built.bytes(), parsed.bytes());
        assert_eq!(built.is_request(), parsed.is_request());
        assert_eq!(built.method(), parsed.method());
        assert_eq!(built.request_uri_raw(), parsed.request_uri_raw());
        assert_eq!((built.status(), built.reason()), (parsed.status(), parsed.reason()));
        let b: Vec<_> = built.fields().collect();
        let p: Vec<_> = parsed.fields().collect();
        assert_eq!(b, p);
        assert_eq!(built.body(), parsed.body());
        assert_eq!(built.content_length().unwrap(), parsed.content_length().unwrap());
        assert_eq!(built.to().unwrap().tag(), parsed.to().unwrap().tag());
        assert_eq!(built.call_id().unwrap(), parsed.call_id().unwrap());
        assert_eq!(built.cseq().unwrap(), parsed.cseq().unwrap());
        assert_eq!(built.top_via().unwrap(), parsed.top_via().unwrap());
        assert_eq!(built.header_count(), parsed.header_count());
        validate(&built).unwrap();
    }
    let req = invite();
    let src = "198.51.100.99:40000".parse().unwrap();
    for code in [100, 180, 200, 486] {
        let b = || {
            ResponseBuilder::for_request(&req, code, "Some Reason")
                .received_from(src)
                .to_tag("as8d7f")
                .copy_record_route()
                .header("Contact", "<sip:edge@203.0.113.1>")
                .header("Warning", "  399 edge \"padded\"  ")
                .header("k", "timer")
        };
        assert_eq!(b().build(), b().build_message().unwrap().bytes());
        same(b().build_message().unwrap());
        same(
            b().body("application/sdp", Bytes::from_static(b"v=0\r\n"))
                .build_message()
                .unwrap(),
        );
    }
    let r = || {
        RequestBuilder::new(Method::Invite, "sip:+15551230000@198.51.100.7:5060;transport=udp")
            .header("Via", "SIP/2.0/UDP 203.0.113.1:5060;branch=z9hG4bKx;rport")
            .header("From", "<sip:edge@203.0.113.1>;tag=1")
            .header("To", "<sip:+15551230000@198.51.100.7>")
            .header("Call-ID", "abc@edge")
            .header("CSeq", "1 INVITE")
            .header("Contact", "<sip:edge@203.0.113.1>")
            .body(
                "application/sdp",
                Bytes::from_static(b"v=0\r\no=- 1 1 IN IP4 1.2.3.4\r\n"),
            )
    };
    assert_eq!(r().build(), r().build_message().unwrap().bytes());
    same(r().build_message().unwrap());
    let cancel = sip_core::build::cancel_message_for(&req).unwrap();
    assert_eq!(cancel.bytes(), &cancel_for(&req));
    same(cancel);
    // Whatever the parser refuses, build_message refuses too (with the parser's error).
    assert!(ResponseBuilder::for_request(&req, 99, "Low").build_message().is_err());
    assert!(RequestBuilder::new(Method::Options, "sip:a b@c")
        .header("Via", "SIP/2.0/UDP h;branch=z9hG4bKy")
        .build_message()
        .is_err());
    assert!(ResponseBuilder::for_request(&req, 200, "OK")
        .header("Bad Name", "x")
        .build_message()
        .is_err());
}
