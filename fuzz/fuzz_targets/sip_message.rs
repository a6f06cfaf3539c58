//! The SIP message parser and every typed view on it.
//!
//! Input: one datagram / stream frame. It is parsed with both rules (`Message::parse`, `parse_stream`);
//! each message that parses has every accessor read (Via list, From/To name-addrs and their URIs and
//! params, Call-ID, CSeq, Contact/Route lists, option tags, auth challenges and credentials) and must hold:
//! - the bytes it kept parse again to the same start line and header count (a proxy re-reads what it sends);
//! - a request that passes `validate_request` gets responses (ours: `ResponseBuilder`, as the endpoint
//!   builds them) and a CANCEL / non-2xx ACK that parse again, so an answer we send is readable SIP.
//! - the shard dispatcher's Call-ID scan (`sip_core::scan::call_id`) never panics and returns a slice of
//!   the input.
#![no_main]

use std::net::SocketAddr;

use bytes::Bytes;
use libfuzzer_sys::fuzz_target;
use sip_core::build::{ack_for_non2xx, cancel_for, ResponseBuilder};
use sip_core::digest::DigestChallenge;
use sip_core::message::{validate, validate_request, HeaderName, Message, NameAddr, Params, Uri};

fuzz_target!(|data: &[u8]| {
    if let Some(id) = sip_core::scan::call_id(data) {
        let range = data.as_ptr_range();
        assert!(range.contains(&id.as_ptr()) && !id.is_empty() && id.len() <= data.len());
    }
    let buf = Bytes::copy_from_slice(data);
    for stream in [false, true] {
        let parsed = if stream {
            Message::parse_stream(buf.clone())
        } else {
            Message::parse(buf.clone())
        };
        if let Ok(m) = parsed {
            exercise(&m);
            reparse(&m, stream);
            if m.is_request() && validate_request(&m).is_ok() {
                answers_parse(&m);
            }
        }
    }
});

fn uri(u: &Uri<'_>) {
    let _ = (u.scheme(), u.user(), u.host(), u.to_string());
    match u {
        Uri::Sip(s) => {
            let _ = (
                s.user_decoded(),
                s.param("transport"),
                s.param("user"),
                s.as_str(),
                s.headers,
            );
            params(&s.params);
        }
        Uri::Tel(t) => {
            let _ = (t.phone_context(), t.as_str());
            params(&t.params);
        }
        Uri::Other { .. } => {}
    }
}

fn params(p: &Params<'_>) {
    let _ = (p.raw(), p.get("tag"), p.has("lr"), p.is_empty());
    std::hint::black_box(p.iter().count());
}

fn name_addr(na: &NameAddr<'_>) {
    let _ = (na.tag(), na.param("expires"), na.display_name.as_deref(), na.uri_raw);
    uri(&na.uri);
    params(&na.params);
}

fn exercise(m: &Message) {
    let _ = validate(m);
    let _ = (m.method(), m.status(), m.reason(), m.request_uri_raw(), m.is_request());
    if let Ok(u) = m.request_uri() {
        uri(&u);
    }
    if let Ok(vias) = m.vias() {
        for v in &vias {
            let _ = (
                v.branch(),
                v.rport(),
                v.received(),
                v.param("maddr"),
                v.has_magic_cookie(),
            );
            let _ = (v.transport.as_str(), v.transport_token, v.host, v.port);
            params(&v.params);
        }
    }
    let _ = (m.top_via(), m.top_via_raw());
    for na in [m.from(), m.to()].into_iter().flatten() {
        name_addr(&na);
    }
    for list in [m.contacts(), m.routes(), m.record_routes()].into_iter().flatten() {
        for na in &list {
            name_addr(na);
        }
    }
    let _ = (
        m.contact_is_star(),
        m.call_id(),
        m.cseq(),
        m.max_forwards(),
        m.expires(),
    );
    let _ = (m.content_length(), m.content_type());
    let _ = (
        m.require(),
        m.proxy_require(),
        m.supported(),
        m.unsupported(),
        m.allow(),
    );
    for c in [m.www_authenticate(), m.proxy_authenticate()]
        .into_iter()
        .flatten()
        .flatten()
    {
        let _ = (
            c.scheme,
            c.param("realm"),
            c.param("nonce"),
            c.param("qop"),
            c.params_raw(),
        );
        let _ = DigestChallenge::from_view(&c);
    }
    for c in [m.authorization(), m.proxy_authorization()]
        .into_iter()
        .flatten()
        .flatten()
    {
        let _ = (c.scheme, c.param("username"), c.param("response"), c.params_raw());
    }
    let _ = DigestChallenge::from_message(m);
    let _ = m.header(&HeaderName::from("X-Whatever"));
    std::hint::black_box(m.headers(&HeaderName::Via).count());
    std::hint::black_box(m.header_entries().count());
    std::hint::black_box(m.fields().count());
    let _ = (m.header_count(), m.body(), m.body_bytes());
}

/// What the parser kept (`bytes()`, cut to Content-Length) is a message with the same shape.
fn reparse(m: &Message, stream: bool) {
    let again = if stream {
        Message::parse_stream(m.bytes().clone())
    } else {
        Message::parse(m.bytes().clone())
    };
    let again = match again {
        Ok(a) => a,
        Err(e) => panic!("kept bytes of a parsed message do not parse again: {e}"),
    };
    assert_eq!(again.header_count(), m.header_count());
    assert_eq!(again.method(), m.method());
    assert_eq!(again.status(), m.status());
    assert_eq!(again.request_uri_raw(), m.request_uri_raw());
    assert_eq!(again.body(), m.body());
}

/// The answers the edge builds from a valid request parse as SIP again.
fn answers_parse(req: &Message) {
    let source: SocketAddr = "192.0.2.1:5060".parse().unwrap_or(SocketAddr::from(([0, 0, 0, 0], 0)));
    for (code, reason) in [(100, "Trying"), (400, "Bad Request"), (200, "OK")] {
        let r = ResponseBuilder::for_request(req, code, reason)
            .received_from(source)
            .to_tag("f1")
            .copy_record_route()
            .header("Warning", "399 edge \"x\"")
            .build();
        match Message::parse(r.clone()) {
            Ok(resp) => {
                assert_eq!(resp.status(), Some(code));
                let _ = ack_for_non2xx(req, &resp);
            }
            Err(e) => panic!(
                "our {code} to a valid request does not parse: {e}\n{:?}",
                String::from_utf8_lossy(&r)
            ),
        }
    }
    let cancel = cancel_for(req);
    if let Err(e) = Message::parse(cancel.clone()) {
        panic!(
            "our CANCEL for a valid request does not parse: {e}\n{:?}",
            String::from_utf8_lossy(&cancel)
        );
    }
}
