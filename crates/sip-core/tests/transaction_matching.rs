//! Matching rules (RFC 3261 17.1.3/17.2.3, 9.2, RFC 2543 fallback), ACK construction, limits.

mod transaction_support;

use std::time::Instant;

use bytes::Bytes;
use sip_core::message::{HeaderName, Message, Method};
use sip_core::transaction::{
    AutoTrying, Incoming, InviteServerState, TimerConfig, TransactionLayer, TxConfig, TxError, TxEvent, TxKeyKind,
    TxState,
};
use transaction_support::*;

fn layer() -> TransactionLayer {
    TransactionLayer::new(TxConfig {
        auto_trying: AutoTrying::Off,
        ..TxConfig::default()
    })
}

fn new_key(r: Incoming) -> sip_core::transaction::TxKey {
    match r {
        Incoming::NewRequest { key, .. } => key,
        other => panic!("expected NewRequest, got {other:?}"),
    }
}

#[test]
fn ack_for_non_2xx_is_built_by_the_client_transaction() {
    let t0 = Instant::now();
    let mut l = layer();
    let invite = request("INVITE", "z9hG4bKack1", 314);
    l.send_request(t0, udp(), invite).unwrap();
    drain(&mut l);
    l.handle_incoming(
        t0,
        udp(),
        response(486, "z9hG4bKack1", 314, "INVITE", Some("callee-tag")),
    );
    let sent = drain(&mut l);
    assert_eq!(sent.len(), 1);
    assert_eq!(sent[0].to, udp());
    let ack = Message::parse(sent[0].bytes.clone()).expect("ACK parses");
    assert_eq!(ack.method(), Some(&Method::Ack));
    assert_eq!(ack.request_uri_raw(), Some("sip:bob@biloxi.example.com"));
    assert_eq!(ack.top_via().unwrap().branch(), Some("z9hG4bKack1"));
    assert_eq!(ack.vias().unwrap().len(), 1);
    assert_eq!(ack.call_id().unwrap(), CALL_ID);
    let cseq = ack.cseq().unwrap();
    assert_eq!((cseq.seq, cseq.method), (314, Method::Ack));
    assert_eq!(ack.to().unwrap().tag(), Some("callee-tag"));
    assert_eq!(ack.from().unwrap().tag(), Some("1928301774"));
}

#[test]
fn responses_match_client_transactions_by_branch_and_cseq_method() {
    let t0 = Instant::now();
    let mut l = layer();
    let key = l.send_request(t0, udp(), request("INVITE", "z9hG4bKr1", 1)).unwrap();
    drain(&mut l);
    let r = l.handle_incoming(t0, udp(), response(180, "z9hG4bKother", 1, "INVITE", None));
    assert!(matches!(r, Incoming::StrayResponse { .. }), "other branch");
    let r = l.handle_incoming(t0, udp(), response(200, "z9hG4bKr1", 1, "CANCEL", None));
    assert!(matches!(r, Incoming::StrayResponse { .. }), "CANCEL is distinct");
    match l.handle_incoming(t0, udp(), response(180, "z9hG4bKr1", 1, "INVITE", None)) {
        Incoming::Response { key: k, msg } => {
            assert_eq!(k, key);
            assert_eq!(msg.status(), Some(180));
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(l.len(), 1, "stray responses create no state");
}

#[test]
fn cancel_matches_its_invite_server_transaction() {
    let t0 = Instant::now();
    let mut l = layer();
    let invite_key = new_key(l.handle_incoming(t0, udp(), request("INVITE", "z9hG4bKc9", 5)));
    let r = l.handle_incoming(t0, udp(), request("CANCEL", "z9hG4bKc9", 5));
    let cancel_key = match r {
        Incoming::Cancel {
            cancel_key,
            invite_key: Some(k),
            msg,
        } => {
            assert_eq!(k, invite_key);
            assert_eq!(msg.method(), Some(&Method::Cancel));
            assert_ne!(cancel_key, invite_key, "CANCEL has its own transaction");
            cancel_key
        }
        other => panic!("{other:?}"),
    };
    assert_eq!(l.len(), 2);
    // Retransmitted CANCEL is absorbed by the CANCEL transaction.
    assert!(matches!(
        l.handle_incoming(t0, udp(), request("CANCEL", "z9hG4bKc9", 5)),
        Incoming::Absorbed { key } if key == cancel_key
    ));
    l.respond(t0, &cancel_key, response_msg(200, "z9hG4bKc9", "CANCEL", Some("s")))
        .unwrap();
    l.respond(t0, &invite_key, response_msg(487, "z9hG4bKc9", "INVITE", Some("s")))
        .unwrap();
    let sent: Vec<String> = drain(&mut l).iter().map(status_line).collect();
    assert_eq!(sent, vec!["SIP/2.0 200 Reason", "SIP/2.0 487 Reason"]);
    // CANCEL for an unknown INVITE: TU answers 481.
    let r = l.handle_incoming(t0, udp(), request("CANCEL", "z9hG4bKnone", 5));
    assert!(matches!(r, Incoming::Cancel { invite_key: None, .. }), "{r:?}");
}

#[test]
fn sent_by_distinguishes_server_transactions_with_equal_branch() {
    let t0 = Instant::now();
    let mut l = layer();
    let a = parse(request_text("OPTIONS", "z9hG4bKsame", 1, None, "host-a.example.com"));
    let b = parse(request_text("OPTIONS", "z9hG4bKsame", 1, None, "HOST-B.example.com"));
    let b2 = parse(request_text("OPTIONS", "z9hG4bKsame", 1, None, "host-b.example.com"));
    new_key(l.handle_incoming(t0, udp(), a));
    let kb = new_key(l.handle_incoming(t0, udp(), b));
    assert!(
        matches!(l.handle_incoming(t0, udp(), b2), Incoming::Absorbed { key } if key == kb),
        "host compared case-insensitively"
    );
    assert_eq!(l.len(), 2);
    match kb.kind() {
        TxKeyKind::Server { host, port, .. } => {
            assert_eq!(&**host, "host-b.example.com");
            assert_eq!(*port, 5060);
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn rfc2543_requests_match_without_magic_cookie() {
    let t0 = Instant::now();
    let mut l = layer();
    let key = new_key(l.handle_incoming(t0, udp(), request("INVITE", "oldbranch1", 1)));
    assert!(matches!(key.kind(), TxKeyKind::Server2543(_)));
    // Retransmission (identical) absorbed and answered with the last response.
    l.respond(t0, &key, response_msg(180, "oldbranch1", "INVITE", Some("srv")))
        .unwrap();
    drain(&mut l);
    assert!(matches!(
        l.handle_incoming(t0, udp(), request("INVITE", "oldbranch1", 1)),
        Incoming::Absorbed { .. }
    ));
    assert_eq!(drain(&mut l).len(), 1);
    // Same fields but another CSeq: a different transaction.
    new_key(l.handle_incoming(t0, udp(), request("INVITE", "oldbranch1", 2)));
    assert_eq!(l.len(), 2);
    l.respond(t0, &key, response_msg(486, "oldbranch1", "INVITE", Some("srv")))
        .unwrap();
    drain(&mut l);
    // ACK with a To tag other than our response's does not match the transaction.
    let r = l.handle_incoming(t0, udp(), request_with("ACK", "oldbranch1", 1, Some("nope")));
    assert!(matches!(r, Incoming::Ack { key: None, .. }), "{r:?}");
    // ACK carrying the response's To tag matches (2543: by To tag, not branch).
    let r = l.handle_incoming(t0, udp(), request_with("ACK", "oldbranch1", 1, Some("srv")));
    assert!(matches!(&r, Incoming::Absorbed { key: k } if *k == key), "{r:?}");
    assert_eq!(l.state(&key), Some(TxState::InviteServer(InviteServerState::Confirmed)));
}

#[test]
fn rfc2543_ack_for_2xx_reaches_tu_with_its_transaction() {
    let t0 = Instant::now();
    let mut l = layer();
    let key = new_key(l.handle_incoming(t0, udp(), request("INVITE", "", 7)));
    l.respond(t0, &key, response_msg(200, "", "INVITE", Some("srv")))
        .unwrap();
    let r = l.handle_incoming(t0, udp(), request_with("ACK", "", 7, Some("srv")));
    assert!(matches!(&r, Incoming::Ack { key: Some(k), .. } if *k == key), "{r:?}");
}

#[test]
fn ack_without_transaction_goes_to_tu_and_creates_nothing() {
    let t0 = Instant::now();
    let mut l = layer();
    for i in 0..100 {
        let r = l.handle_incoming(
            t0,
            udp(),
            request_with("ACK", &format!("z9hG4bKstray{i}"), 1, Some("x")),
        );
        assert!(matches!(r, Incoming::Ack { key: None, .. }));
        let r = l.handle_incoming(
            t0,
            udp(),
            response(200, &format!("z9hG4bKstray{i}"), 1, "INVITE", Some("x")),
        );
        assert!(matches!(r, Incoming::StrayResponse { .. }));
    }
    assert!(l.is_empty());
    assert!(drain(&mut l).is_empty());
    assert_eq!(l.poll_timeout(), None);
}

#[test]
fn cap_rejects_new_transactions_with_overloaded() {
    let t0 = Instant::now();
    let mut l = TransactionLayer::new(TxConfig {
        max_transactions: 2,
        ..TxConfig::default()
    });
    new_key(l.handle_incoming(t0, udp(), request("OPTIONS", "z9hG4bKcap1", 1)));
    l.send_request(t0, udp(), request("OPTIONS", "z9hG4bKcap2", 1)).unwrap();
    match l.handle_incoming(t0, udp(), request("INVITE", "z9hG4bKcap3", 1)) {
        Incoming::Rejected {
            error: TxError::Overloaded,
            msg,
        } => assert_eq!(msg.method(), Some(&Method::Invite), "TU gets it to answer 503"),
        other => panic!("{other:?}"),
    }
    assert!(matches!(
        l.send_request(t0, udp(), request("OPTIONS", "z9hG4bKcap4", 1)),
        Err(TxError::Overloaded)
    ));
    // Retransmissions of existing transactions still work at the cap.
    assert!(matches!(
        l.handle_incoming(t0, udp(), request("OPTIONS", "z9hG4bKcap1", 1)),
        Incoming::Absorbed { .. }
    ));
    assert_eq!(l.len(), 2);
}

#[test]
fn respond_errors_are_typed() {
    let t0 = Instant::now();
    let mut l = layer();
    let key = new_key(l.handle_incoming(t0, udp(), request("OPTIONS", "z9hG4bKe9", 1)));
    assert!(matches!(
        l.respond_bytes(t0, &key, Bytes::from_static(b"garbage")),
        Err(TxError::NotAResponse)
    ));
    assert!(matches!(
        l.respond(t0, &key, request("OPTIONS", "z9hG4bKe9", 1)),
        Err(TxError::NotAResponse)
    ));
    l.respond(t0, &key, response_msg(200, "z9hG4bKe9", "OPTIONS", Some("s")))
        .unwrap();
    assert!(matches!(
        l.respond_bytes(t0, &key, response_bytes(500, "z9hG4bKe9", "OPTIONS", Some("s"))),
        Err(TxError::InvalidState { status: 500, .. })
    ));
    let client = l.send_request(t0, udp(), request("OPTIONS", "z9hG4bKe10", 1)).unwrap();
    assert!(matches!(
        l.respond(t0, &client, response_msg(200, "z9hG4bKe10", "OPTIONS", None)),
        Err(TxError::InvalidState { .. })
    ));
    assert!(matches!(
        l.send_request(t0, udp(), request("OPTIONS", "z9hG4bKe10", 1)),
        Err(TxError::Duplicate)
    ));
    assert!(matches!(
        l.send_request(t0, udp(), request("OPTIONS", "nocookie", 1)),
        Err(TxError::NoMagicCookie)
    ));
    assert!(matches!(
        l.send_request(t0, udp(), request("ACK", "z9hG4bKack", 1)),
        Err(TxError::NotATransactionRequest(_))
    ));
}

#[test]
fn request_without_via_is_rejected_without_state() {
    let t0 = Instant::now();
    let mut l = layer();
    let text = "OPTIONS sip:bob@biloxi.example.com SIP/2.0\r\n\
                From: <sip:a@b>;tag=1\r\nTo: <sip:bob@biloxi.example.com>\r\n\
                Call-ID: x\r\nCSeq: 1 OPTIONS\r\nContent-Length: 0\r\n\r\n";
    if let Ok(msg) = Message::parse(Bytes::from_static(text.as_bytes())) {
        let r = l.handle_incoming(t0, udp(), msg);
        assert!(
            matches!(
                r,
                Incoming::Rejected {
                    error: TxError::Malformed(_),
                    ..
                }
            ),
            "{r:?}"
        );
    }
    assert!(l.is_empty());
    assert!(l.poll_event().is_none());
}

#[test]
fn transport_error_terminates_and_reports() {
    let t0 = Instant::now();
    let mut l = layer();
    let key = l.send_request(t0, tcp(), request("INVITE", "z9hG4bKte", 1)).unwrap();
    let sent = drain(&mut l);
    assert_eq!(sent[0].key.as_ref(), Some(&key));
    assert_eq!(sent[0].to.conn, Some(7));
    l.transport_error(sent[0].key.as_ref().unwrap());
    assert_eq!(
        events(&mut l),
        vec![
            TxEvent::TransportError { key: key.clone() },
            TxEvent::Terminated { key }
        ]
    );
    assert!(l.is_empty());
}

#[test]
fn responses_go_back_to_the_source_peer() {
    let t0 = Instant::now();
    let mut l = layer();
    let from = tcp();
    let key = new_key(l.handle_incoming(t0, from, request("OPTIONS", "z9hG4bKsrc", 1)));
    l.respond(t0, &key, response_msg(200, "z9hG4bKsrc", "OPTIONS", Some("s")))
        .unwrap();
    let sent = drain(&mut l);
    assert_eq!(sent[0].to, from);
    let via = Message::parse(sent[0].bytes.clone())
        .unwrap()
        .header(&HeaderName::Via)
        .map(str::to_owned);
    assert!(via.unwrap().contains("z9hG4bKsrc"));
}

#[test]
fn many_short_transactions_leave_no_state_behind() {
    let t0 = Instant::now();
    let mut l = TransactionLayer::new(TimerConfig::default());
    for i in 0..20_000u32 {
        let b = format!("z9hG4bKmany{i}");
        let key = l.send_request(t0, tcp(), request("OPTIONS", &b, 1)).unwrap();
        l.handle_incoming(t0, tcp(), response(200, &b, 1, "OPTIONS", Some("t")));
        assert_eq!(l.state(&key), None);
    }
    drain(&mut l);
    events(&mut l);
    assert!(l.is_empty());
    // Stale Timer F entries are swept lazily; after their deadline nothing is left.
    l.handle_timeout(t0 + std::time::Duration::from_secs(33));
    assert_eq!(l.poll_timeout(), None);
}

#[test]
fn rfc2543_cancel_matches_invite_by_fields() {
    let t0 = Instant::now();
    let mut l = layer();
    let invite_key = new_key(l.handle_incoming(t0, udp(), request("INVITE", "", 9)));
    match l.handle_incoming(t0, udp(), request("CANCEL", "", 9)) {
        Incoming::Cancel {
            invite_key: Some(k),
            cancel_key,
            ..
        } => {
            assert_eq!(k, invite_key);
            assert_ne!(cancel_key, invite_key);
        }
        other => panic!("{other:?}"),
    }
    // Different CSeq number: not the same INVITE.
    let r = l.handle_incoming(t0, udp(), request("CANCEL", "", 10));
    assert!(matches!(r, Incoming::Cancel { invite_key: None, .. }), "{r:?}");
}
