//! What real peers notice in the edge's messages (issue 19, "Details"): the transport in every Contact of
//! a TCP leg, `rport`/`received` filled in on every response, `Allow` and `Supported` on 18x/2xx and a
//! truthful OPTIONS, the SIP status of answered calls, and no internal header toward a trunk.

use edge_store::{AgentStatus, CallStatus, Provider};
use oneinbox_edge::sip::endpoint::ALLOW;
use sip_core::message::{HeaderName, Message, Method};

use super::harness::{Harness, Mode, Routing, TrunkMode, AGENT1, AGENT_NET, CARRIER, EDGE, S, TRUNK};
use super::peers::{agent_in_dialog, header, AgentUac, CarrierCall};

const DID: &str = "+14155550100";

fn contact(m: &Message) -> String {
    m.header(&HeaderName::Contact).unwrap_or("").to_owned()
}

/// Agent `p` at AGENT1 answering the DID's calls.
fn one_agent() -> Harness {
    let routing = Routing::new()
        .agent("p", AGENT1, 5, AgentStatus::Active)
        .number(DID, "p", None);
    Harness::new(routing, |_| {})
}

fn over_tcp(text: String) -> String {
    text.replace("SIP/2.0/UDP", "SIP/2.0/TCP")
}

/// A carrier and an agent that both speak TCP: every Contact the edge writes on either leg says
/// `;transport=tcp` (the 180 and 200 to the carrier, the INVITE to the agent, the requests the edge relays
/// or sends in each dialog), so that neither peer falls back to UDP for its ACK, re-INVITE or BYE.
#[test]
fn every_contact_on_a_tcp_leg_names_tcp() {
    let routing = Routing::new()
        .agent_uri("p", &format!("sip:p@{AGENT1};transport=tcp"), 5, AgentStatus::Active)
        .number(DID, "p", None);
    let mut h = Harness::new(routing, |_| {});
    h.agent(AGENT1, Mode::Answer);
    let tcp_contact = format!("<sip:edge@{EDGE};transport=tcp>");

    let mut c = CarrierCall::new(CARRIER, DID);
    h.send_tcp(CARRIER, 7, over_tcp(c.invite()));
    let inv = h.expect(AGENT1, Method::Invite);
    assert_eq!(contact(&inv.msg), tcp_contact, "the INVITE to a TCP agent");
    let mut answers = Vec::new();
    let ok = loop {
        let s = h.recv(CARRIER, S).expect("answers to the carrier");
        let code = s.msg.status().unwrap_or(0);
        answers.push(s.clone());
        if code >= 200 {
            break s.msg;
        }
    };
    assert_eq!(ok.status(), Some(200));
    for a in answers.iter().filter(|a| a.msg.status() != Some(100)) {
        assert_eq!(contact(&a.msg), tcp_contact, "{:?} to a TCP carrier", a.msg.status());
    }
    c.answered(&ok);
    h.send_tcp(CARRIER, 7, over_tcp(c.ack(&ok)));

    // The carrier's re-INVITE reaches the agent with our TCP Contact; our 200 back carries it too.
    h.send_tcp(CARRIER, 7, over_tcp(c.in_dialog("INVITE", true)));
    let reinvite = h.expect(AGENT1, Method::Invite);
    assert_eq!(
        contact(&reinvite.msg),
        tcp_contact,
        "a relayed re-INVITE on a TCP dialog"
    );
    let reok = h
        .take(CARRIER)
        .into_iter()
        .find(|s| s.msg.status() == Some(200))
        .expect("the re-INVITE answered");
    assert_eq!(contact(&reok.msg), tcp_contact, "the 200 to a relayed re-INVITE");

    // The agent hangs up: the BYE the edge sends the carrier says TCP as well.
    let tag = h.agent_tag(AGENT1);
    h.send(AGENT1, agent_in_dialog(AGENT1, &inv.msg, &tag, "BYE", false));
    let bye = h.expect(CARRIER, Method::Bye);
    assert_eq!(contact(&bye.msg), tcp_contact, "a request of ours in a TCP dialog");
}

/// Over UDP nothing changes: no `transport` parameter (UDP is a `sip:` URI's default).
#[test]
fn contacts_on_udp_legs_stay_plain() {
    let mut h = one_agent();
    h.agent(AGENT1, Mode::Answer);
    let c = CarrierCall::new(CARRIER, DID);
    h.send(CARRIER, c.invite());
    let (_, ok) = h.final_response(CARRIER, S);
    assert_eq!(contact(&ok.msg), format!("<sip:edge@{EDGE}>"));
    assert_eq!(
        contact(&h.expect(AGENT1, Method::Invite).msg),
        format!("<sip:edge@{EDGE}>")
    );
}

/// RFC 3581: a request that asks for `rport` gets it filled with its source port, and `received` with its
/// source address, on every response: the transaction layer's 100, the relayed 180/200 call control
/// builds, the 200 to a BYE.
#[test]
fn every_response_fills_in_rport_and_received() {
    let mut h = one_agent();
    h.agent(AGENT1, Mode::Answer);
    let mut c = CarrierCall::new(CARRIER, DID);
    h.send(CARRIER, c.invite());
    let (prov, ok) = h.final_response(CARRIER, S);
    assert_eq!(prov, vec![100, 180]);
    c.answered(&ok.msg);
    h.send(CARRIER, c.ack(&ok.msg));
    h.send(CARRIER, c.in_dialog("BYE", false));
    let bye_ok = h.recv(CARRIER, S).expect("200 to BYE");
    assert_eq!(bye_ok.msg.status(), Some(200));
    let responses: Vec<Message> = h
        .log
        .iter()
        .filter(|s| s.to == super::harness::addr(CARRIER) && !s.msg.is_request())
        .map(|s| s.msg.clone())
        .collect();
    assert_eq!(responses.len(), 4, "100, 180, 200, 200 to BYE");
    for r in &responses {
        let via = r.top_via().expect("a Via");
        assert_eq!(
            via.rport(),
            Some(Some(5060)),
            "{:?}: {}",
            r.status(),
            r.top_via_raw().unwrap()
        );
        assert_eq!(via.received(), Some("192.0.2.10"), "{:?}", r.status());
    }
}

/// 18x and 2xx say what the edge allows and which extensions hold across it: `timer` when the agent
/// supports it (session timers are relayed end to end), never what the edge does not do (`100rel`). The
/// agent is offered only those of the caller's. OPTIONS answers for the edge alone: no `timer`.
#[test]
fn answers_carry_allow_and_supported_and_options_is_truthful() {
    let mut h = one_agent();
    h.agent(AGENT1, Mode::Answer);
    let c = CarrierCall::new(CARRIER, DID);
    let invite = c.invite().replace(
        "Content-Type:",
        "Supported: 100rel, timer, replaces\r\nSession-Expires: 1800\r\nContent-Type:",
    );
    h.send(CARRIER, invite);
    let (_, ok) = h.final_response(CARRIER, S);
    let inv = h.expect(AGENT1, Method::Invite).msg;
    assert_eq!(
        header(&inv, "Supported").as_deref(),
        Some("timer"),
        "only what holds across the edge"
    );
    assert_eq!(header(&inv, "Session-Expires").as_deref(), Some("1800"));
    let ringing = h
        .log
        .iter()
        .find(|s| s.msg.status() == Some(180))
        .map(|s| s.msg.clone())
        .expect("180");
    for r in [&ringing, &ok.msg] {
        assert_eq!(header(r, "Allow").as_deref(), Some(ALLOW), "{:?}", r.status());
        // The scripted agent names no extension: neither does the edge for it.
        assert_eq!(header(r, "Supported").as_deref(), Some(""), "{:?}", r.status());
    }

    let options = format!(
        "OPTIONS sip:{EDGE} SIP/2.0\r\nVia: SIP/2.0/UDP {CARRIER};branch=z9hG4bKopt1;rport\r\nMax-Forwards: 70\r\n\
         From: <sip:ping@{CARRIER}>;tag=o1\r\nTo: <sip:{EDGE}>\r\nCall-ID: options-1\r\nCSeq: 1 OPTIONS\r\n\
         Content-Length: 0\r\n\r\n"
    );
    h.send(CARRIER, options);
    let answer = h
        .take(CARRIER)
        .into_iter()
        .find(|s| s.msg.call_id().ok() == Some("options-1"))
        .expect("an OPTIONS answer")
        .msg;
    assert_eq!(answer.status(), Some(200));
    assert_eq!(header(&answer, "Allow").as_deref(), Some(ALLOW));
    let supported = header(&answer, "Supported").expect("Supported");
    assert!(
        !supported.contains("timer"),
        "the edge runs no session timer itself: {supported:?}"
    );
}

/// An answered call's record keeps the 2xx as its SIP status, and its hop too.
#[test]
fn an_answered_calls_record_has_its_sip_status() {
    let mut h = one_agent();
    h.agent(AGENT1, Mode::Answer);
    let mut c = CarrierCall::new(CARRIER, DID);
    h.send(CARRIER, c.invite());
    let (_, ok) = h.final_response(CARRIER, S);
    c.answered(&ok.msg);
    h.send(CARRIER, c.ack(&ok.msg));
    h.advance(std::time::Duration::from_millis(50));
    let live = h.record_by_sip_call_id(&c.call_id).expect("a record");
    assert_eq!(live.status, CallStatus::InProgress);
    assert_eq!(live.sip_status, Some(200));
    assert_eq!(live.hops[0].sip_status, Some(200));
    h.send(CARRIER, c.in_dialog("BYE", false));
    let done = h.record_by_sip_call_id(&c.call_id).expect("a record");
    assert_eq!(done.status, CallStatus::Completed);
    assert_eq!(done.sip_status, Some(200));
}

/// The INVITE toward a customer's trunk carries none of the edge's internal `X-OneInbox-*` headers.
#[test]
fn a_trunk_invite_carries_no_internal_header() {
    let routing = Routing::new()
        .agent("sales", AGENT1, 5, AgentStatus::Active)
        .byo_number(DID, "sales", Provider::Telnyx, TRUNK, None);
    let mut h = Harness::new(routing, |_| {});
    h.trunk(TRUNK, TrunkMode::Answer, None);
    let uac = AgentUac::new(AGENT_NET);
    h.send(AGENT_NET, uac.invite(DID, "+447700900123", ""));
    let (_, ok) = h.final_response(AGENT_NET, S);
    assert_eq!(ok.msg.status(), Some(200));
    let inv = h.expect(TRUNK, Method::Invite).msg;
    let internal: Vec<&str> = inv
        .fields()
        .map(|(_, name, _)| name)
        .filter(|n| n.to_ascii_lowercase().starts_with("x-oneinbox"))
        .collect();
    assert!(internal.is_empty(), "internal headers toward the trunk: {internal:?}");
    h.advance(std::time::Duration::from_millis(50));
    let record = h.record_by_sip_call_id(&uac.call_id).expect("a record");
    assert_eq!(record.sip_status, Some(200), "the trunk's 2xx");
}
