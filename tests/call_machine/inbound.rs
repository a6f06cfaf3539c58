//! `tests/inbound_calls.rs` on the fake clock: a carrier's INVITE -> the agents in turn, with every
//! assertion of the socket test kept (the carrier name is `carrier` here, `loopback` there), plus what a
//! clock the test owns can show exactly: when each timer fires and each retransmission leaves.

use std::time::{Duration, Instant};

use edge_store::{AgentStatus, CallStatus, HangupBy, Route};
use sip_core::build::ResponseBuilder;
use sip_core::message::{HeaderName, Method};

use super::harness::{addr, Harness, Mode, Routing, AGENT1, AGENT2, CARRIER, CARRIER2, S};
use super::peers::{agent_in_dialog, CarrierCall};

const DID: &str = "+14155550100";

/// Primary `p` at AGENT1 and, when `fallback`, `f` at AGENT2, both taking 5 calls; the number DID.
fn two_agents(fallback: bool, p_status: AgentStatus, p_max: u32) -> Routing {
    let r = Routing::new()
        .agent("p", AGENT1, p_max, p_status)
        .agent("f", AGENT2, 5, AgentStatus::Active);
    r.number(DID, "p", fallback.then_some("f"))
}

#[test]
fn primary_answers_then_caller_hangs_up() {
    let routing = two_agents(false, AgentStatus::Active, 5);
    let number_id = routing.number_id(DID);
    let mut h = Harness::new(routing, |_| {});
    h.agent(AGENT1, Mode::Answer);

    let mut c = CarrierCall::new(CARRIER, DID);
    h.send(CARRIER, c.invite());
    let (prov, ok) = h.final_response(CARRIER, S);
    let ok = ok.msg;
    assert_eq!(ok.status(), Some(200));
    assert!(prov.contains(&100) && prov.contains(&180), "provisionals {prov:?}");
    assert!(ok.to().unwrap().tag().is_some());
    assert!(ok.header(&HeaderName::Contact).is_some());
    assert!(!ok.body().is_empty(), "the agent's SDP answer is relayed");
    c.answered(&ok);

    // What the agent saw: a new dialog with the caller's identity and our headers.
    let inv = h.expect(AGENT1, Method::Invite).msg;
    assert_ne!(inv.call_id().unwrap(), c.call_id);
    let from = inv.from().unwrap();
    assert_eq!(from.uri.user().unwrap(), "+12125550000");
    assert_eq!(from.display_name.as_deref(), Some("Alice Caller"));
    assert_eq!(inv.to().unwrap().uri.user().unwrap(), DID);
    let hd = |n: &str| inv.header(&HeaderName::Other(n.into())).map(str::to_owned);
    assert!(hd("X-OneInbox-Call-Id").unwrap().starts_with("call_"));
    assert_eq!(hd("X-OneInbox-Phone-Number").as_deref(), Some(DID));
    assert_eq!(hd("X-OneInbox-Phone-Number-Id"), Some(number_id));
    assert_eq!(hd("X-OneInbox-Agent-Id").as_deref(), Some("p"));
    assert_eq!(hd("X-OneInbox-Route").as_deref(), Some("primary"));
    assert_eq!(hd("X-OneInbox-Carrier").as_deref(), Some("carrier"));
    assert_eq!(hd("X-Twilio-CallSid").as_deref(), Some("CA0123456789abcdef"));
    h.expect(AGENT1, Method::Ack);
    assert_eq!(h.ep.calls.agent_load("p"), 1);

    h.send(CARRIER, c.ack(&ok));
    let bye = c.in_dialog("BYE", false);
    h.send(CARRIER, bye);
    let bye_ok = h.recv(CARRIER, S).expect("200 to BYE").msg;
    assert_eq!(bye_ok.status(), Some(200));
    h.expect(AGENT1, Method::Bye);
    assert_eq!(h.ep.calls.agent_load("p"), 0);
    assert_eq!(h.ep.calls.active(), 0);
    // Nothing waited: the whole call took no fake time at all.
    assert_eq!(h.elapsed(), Duration::ZERO);
}

#[test]
fn busy_primary_fails_over_to_fallback() {
    let mut h = Harness::new(two_agents(true, AgentStatus::Active, 5), |_| {});
    h.agent(AGENT1, Mode::Reject(486));
    h.agent(AGENT2, Mode::Answer);
    let c = CarrierCall::new(CARRIER, DID);
    h.send(CARRIER, c.invite());
    let (_, ok) = h.final_response(CARRIER, S);
    assert_eq!(ok.msg.status(), Some(200));
    // The edge's INVITE client transaction ACKed the 486.
    assert!(h.got(AGENT1, Method::Ack, S));
    let inv = h.expect(AGENT2, Method::Invite).msg;
    assert_eq!(
        inv.header(&HeaderName::Other("X-OneInbox-Route".into())),
        Some("fallback")
    );
    assert_eq!(h.ep.calls.agent_load("p"), 0);
    assert_eq!(h.ep.calls.agent_load("f"), 1);
}

/// The failed leg's Call-ID must not reach the call that moved on (found by the endpoint fuzz target).
#[test]
fn a_failed_agent_legs_call_id_no_longer_reaches_the_call() {
    let mut h = Harness::new(two_agents(true, AgentStatus::Active, 5), |_| {});
    h.agent(AGENT1, Mode::Reject(486));
    h.agent(AGENT2, Mode::Answer);
    let mut c = CarrierCall::new(CARRIER, DID);
    h.send(CARRIER, c.invite());
    let (_, ok) = h.final_response(CARRIER, S);
    assert_eq!(ok.msg.status(), Some(200));
    c.answered(&ok.msg);
    h.send(CARRIER, c.ack(&ok.msg));
    h.expect(AGENT2, Method::Ack);

    // A BYE on the busy agent's dead leg: its Call-ID, the edge's From tag as To.
    let dead = h.expect(AGENT1, Method::Invite).msg;
    let me = CARRIER2;
    let bye = format!(
        "BYE sip:edge@{edge} SIP/2.0\r\nVia: SIP/2.0/UDP {me};branch=z9hG4bKdeadleg;rport\r\nMax-Forwards: 70\r\n\
         From: {to};tag=late\r\nTo: {from}\r\nCall-ID: {cid}\r\nCSeq: 100 BYE\r\nContent-Length: 0\r\n\r\n",
        edge = super::harness::EDGE,
        to = dead.header(&HeaderName::To).unwrap().trim(),
        from = dead.header(&HeaderName::From).unwrap().trim(),
        cid = dead.call_id().unwrap(),
    );
    h.send(me, bye);
    let answer = h.recv(me, S).expect("an answer to the BYE").msg;
    assert_eq!(answer.status(), Some(481), "no dialog on a dead leg");
    assert!(
        !h.got(AGENT2, Method::Bye, Duration::from_millis(500)),
        "the live call was not hung up"
    );
    assert_eq!(h.ep.calls.agent_load("f"), 1);

    // The call itself still ends normally.
    let bye = c.in_dialog("BYE", false);
    h.send(CARRIER, bye);
    assert_eq!(h.recv(CARRIER, S).expect("200 to BYE").msg.status(), Some(200));
    h.expect(AGENT2, Method::Bye);
    assert_eq!(h.ep.calls.agent_load("f"), 0);
}

#[test]
fn unavailable_503_primary_fails_over() {
    let mut h = Harness::new(two_agents(true, AgentStatus::Active, 5), |_| {});
    h.agent(AGENT1, Mode::Reject(503));
    h.agent(AGENT2, Mode::Answer);
    let c = CarrierCall::new(CARRIER, DID);
    h.send(CARRIER, c.invite());
    assert_eq!(h.final_response(CARRIER, S).1.msg.status(), Some(200));
    assert!(h.got(AGENT2, Method::Invite, S));
}

#[test]
fn silent_primary_times_out_at_setup_and_fails_over() {
    let mut h = Harness::new(two_agents(true, AgentStatus::Active, 5), |_| {});
    h.agent(AGENT1, Mode::Silent);
    h.agent(AGENT2, Mode::Answer);
    let c = CarrierCall::new(CARRIER, DID);
    h.send(CARRIER, c.invite());
    let (_, ok) = h.final_response(CARRIER, S);
    assert_eq!(ok.msg.status(), Some(200));
    let took = ok.at;
    assert!(
        took >= Duration::from_millis(300),
        "failover waited for the setup timeout, took {took:?}"
    );
    assert!(
        took < Duration::from_millis(1500),
        "failover at the setup timeout, not later: {took:?}"
    );
    // On a clock the test owns: exactly at agent_setup_timeout.
    assert_eq!(took, Duration::from_millis(300));
    // The silent agent's INVITE was retransmitted on Timer A (T1 = 500 ms) only if still pending: it was
    // given up at 300 ms, without a CANCEL (no provisional came, RFC 3261 9.1).
    let to_silent: Vec<_> = h.take(AGENT1).into_iter().map(|s| s.msg.method().cloned()).collect();
    assert!(!to_silent.contains(&Some(Method::Cancel)), "{to_silent:?}");
    assert_eq!(h.ep.calls.agent_load("p"), 0);
}

/// The production ring time-out (20 s): the slow agent rings, is cancelled at exactly 20 s and the fallback
/// rung, in microseconds of real time.
#[test]
fn slow_primary_rings_past_ring_timeout_is_cancelled() {
    let wall = Instant::now();
    let mut h = Harness::new(two_agents(true, AgentStatus::Active, 5), |c| {
        c.agent_ring_timeout = Duration::from_secs(20);
    });
    h.agent(AGENT1, Mode::RingForever);
    h.agent(AGENT2, Mode::Answer);
    let c = CarrierCall::new(CARRIER, DID);
    h.send(CARRIER, c.invite());
    let (prov, ok) = h.final_response(CARRIER, Duration::from_secs(25));
    assert_eq!(ok.msg.status(), Some(200));
    assert!(prov.contains(&180), "the primary's ringing was relayed");
    assert_eq!(
        ok.at,
        Duration::from_secs(20),
        "answered by the fallback at the ring time-out"
    );
    let cancel = h
        .try_expect(AGENT1, Method::Cancel, S)
        .expect("the edge cancels the slow agent");
    assert_eq!(cancel.at, Duration::from_secs(20));
    let inv = h.expect(AGENT2, Method::Invite);
    assert_eq!(inv.at, Duration::from_secs(20));
    assert_eq!(h.ep.calls.agent_load("p"), 0);
    let took = wall.elapsed();
    println!("20 s of ring time-out ran in {took:?} of real time");
    assert!(took < Duration::from_millis(500), "{took:?}");
}

#[test]
fn disabled_primary_is_skipped() {
    let mut h = Harness::new(two_agents(true, AgentStatus::Disabled, 5), |_| {});
    h.agent(AGENT1, Mode::Answer);
    h.agent(AGENT2, Mode::Answer);
    let c = CarrierCall::new(CARRIER, DID);
    h.send(CARRIER, c.invite());
    assert_eq!(h.final_response(CARRIER, S).1.msg.status(), Some(200));
    assert!(
        !h.got(AGENT1, Method::Invite, Duration::from_millis(200)),
        "a disabled agent gets nothing"
    );
    assert!(h.got(AGENT2, Method::Invite, S));
    let rec = h.newest_record();
    assert_eq!(rec.hops[0].outcome, "unavailable: agent disabled");
}

#[test]
fn agent_at_capacity_goes_to_fallback() {
    let mut h = Harness::new(two_agents(true, AgentStatus::Active, 1), |_| {});
    h.agent(AGENT1, Mode::Answer);
    h.agent(AGENT2, Mode::Answer);
    let c1 = CarrierCall::new(CARRIER, DID);
    h.send(CARRIER, c1.invite());
    assert_eq!(h.final_response(CARRIER, S).1.msg.status(), Some(200));
    assert_eq!(h.ep.calls.agent_load("p"), 1);
    let c2 = CarrierCall::new(CARRIER2, DID);
    h.send(CARRIER2, c2.invite());
    let (_, ok2) = h.final_response(CARRIER2, S);
    assert_eq!(ok2.msg.status(), Some(200));
    assert!(h.got(AGENT2, Method::Invite, S), "second call goes to the fallback");
    assert_eq!(h.ep.calls.agent_load("f"), 1);
    assert_eq!(h.ep.calls.agent_load("p"), 1);
}

#[test]
fn caller_cancels_while_ringing() {
    let mut h = Harness::new(two_agents(false, AgentStatus::Active, 5), |c| {
        c.agent_ring_timeout = Duration::from_secs(10)
    });
    h.agent(AGENT1, Mode::RingForever);
    let c = CarrierCall::new(CARRIER, DID);
    h.send(CARRIER, c.invite());
    h.expect(AGENT1, Method::Invite);
    assert_eq!(h.ep.calls.agent_load("p"), 1);
    // Let the 180 arrive, then cancel.
    h.advance(Duration::from_millis(100));
    h.send(CARRIER, c.cancel());
    let (_, fin) = h.final_response(CARRIER, S);
    assert_eq!(fin.msg.status(), Some(487));
    // The CANCEL itself got its 200 first, with the INVITE's To tag on the 487 (one dialog).
    assert!(h.got(AGENT1, Method::Cancel, S));
    assert_eq!(h.ep.calls.agent_load("p"), 0);
    // The carrier ACKs the 487; the edge's server transaction then ends.
    h.send(CARRIER, c.ack(&fin.msg));
    h.advance(Duration::from_secs(40));
    assert_eq!(h.ep.transactions(), 0);
    let rec = h.record_by_sip_call_id(&c.call_id).expect("a record");
    assert_eq!(rec.status, CallStatus::Canceled);
    assert_eq!(rec.hangup_by, Some(HangupBy::Caller));
}

#[test]
fn agent_hangs_up() {
    let mut h = Harness::new(two_agents(false, AgentStatus::Active, 5), |_| {});
    h.agent(AGENT1, Mode::Answer);
    let mut c = CarrierCall::new(CARRIER, DID);
    h.send(CARRIER, c.invite());
    let (_, ok) = h.final_response(CARRIER, S);
    c.answered(&ok.msg);
    h.send(CARRIER, c.ack(&ok.msg));
    let inv = h.expect(AGENT1, Method::Invite).msg;
    h.expect(AGENT1, Method::Ack);
    let tag = h.agent_tag(AGENT1);
    h.send(AGENT1, agent_in_dialog(AGENT1, &inv, &tag, "BYE", false));
    let bye = h.expect(CARRIER, Method::Bye).msg;
    assert_eq!(bye.call_id().unwrap(), c.call_id, "BYE on the carrier's dialog");
    assert_eq!(bye.to().unwrap().tag(), Some(c.from_tag.as_str()));
    h.send(CARRIER, c.ok(&bye, None));
    assert_eq!(h.ep.calls.agent_load("p"), 0);
    let rec = h.record_by_sip_call_id(&c.call_id).expect("a record");
    assert_eq!(rec.status, CallStatus::Completed);
    assert_eq!(rec.hangup_by, Some(HangupBy::Agent));
}

#[test]
fn reinvite_both_ways() {
    let mut h = Harness::new(two_agents(false, AgentStatus::Active, 5), |_| {});
    h.agent(AGENT1, Mode::Answer);
    let mut c = CarrierCall::new(CARRIER, DID);
    h.send(CARRIER, c.invite());
    let (_, ok) = h.final_response(CARRIER, S);
    c.answered(&ok.msg);
    h.send(CARRIER, c.ack(&ok.msg));
    let inv = h.expect(AGENT1, Method::Invite).msg;
    h.expect(AGENT1, Method::Ack);

    // Caller -> agent (e.g. a session refresh).
    let reinvite = c.in_dialog("INVITE", true);
    h.send(CARRIER, reinvite);
    let reinv = h.expect(AGENT1, Method::Invite).msg;
    assert!(reinv.to().unwrap().tag().is_some(), "relayed inside the agent's dialog");
    let resp = loop {
        let r = h.recv(CARRIER, S).expect("answer to the re-INVITE").msg;
        if r.status().is_some_and(|s| s >= 200) {
            break r;
        }
    };
    assert_eq!(resp.status(), Some(200));
    assert_eq!(resp.cseq().unwrap().method, Method::Invite);
    assert!(h.got(AGENT1, Method::Ack, S), "the edge ACKs the agent's 2xx");

    // Agent -> caller (e.g. hold).
    let tag = h.agent_tag(AGENT1);
    h.send(AGENT1, agent_in_dialog(AGENT1, &inv, &tag, "INVITE", true));
    let to_caller = h.expect(CARRIER, Method::Invite).msg;
    assert_eq!(to_caller.call_id().unwrap(), c.call_id);
    h.send(CARRIER, c.ok(&to_caller, Some(super::harness::SDP)));
    assert!(h.expect(CARRIER, Method::Ack).msg.is_request());
    // And the agent got the caller's answer to its re-INVITE.
    let agent_got = h.take(AGENT1);
    assert!(
        agent_got
            .iter()
            .any(|s| s.msg.status() == Some(200) && s.msg.cseq().unwrap().method == Method::Invite),
        "the caller's 200 relayed to the agent"
    );
}

#[test]
fn voicemail_impossible_is_503_with_retry_after() {
    let mut h = Harness::new(two_agents(false, AgentStatus::Active, 5), |_| {});
    h.agent(AGENT1, Mode::Reject(486));
    let c = CarrierCall::new(CARRIER, DID);
    h.send(CARRIER, c.invite());
    let (_, fin) = h.final_response(CARRIER, S);
    assert_eq!(fin.msg.status(), Some(503));
    assert!(fin.msg.header(&HeaderName::RetryAfter).is_some());
    assert_eq!(h.ep.calls.agent_load("p"), 0);
}

#[test]
fn unknown_and_outbound_only_numbers_are_404() {
    let routing = Routing::new().agent("a", AGENT1, 5, AgentStatus::Active).byo_number(
        "+14155550111",
        "a",
        edge_store::Provider::Twilio,
        "198.51.100.130",
        None,
    );
    let mut h = Harness::new(routing, |_| {});
    h.agent(AGENT1, Mode::Answer);

    let c = CarrierCall::new(CARRIER, "+14155550199");
    h.send(CARRIER, c.invite());
    assert_eq!(h.final_response(CARRIER, S).1.msg.status(), Some(404));

    let c = CarrierCall::new(CARRIER, "+14155550111");
    h.send(CARRIER, c.invite());
    let (_, fin) = h.final_response(CARRIER, S);
    assert_eq!(fin.msg.status(), Some(404));
    let w = fin.msg.header(&HeaderName::Warning).unwrap_or("");
    assert!(w.contains("outbound-only"), "Warning says why: {w}");
    assert!(!h.got(AGENT1, Method::Invite, Duration::from_millis(200)));
}

#[test]
fn cancelled_and_failed_calls_are_recorded() {
    let routing = Routing::new()
        .agent("slow", AGENT1, 5, AgentStatus::Active)
        .agent("busy", AGENT2, 5, AgentStatus::Active)
        .number(DID, "slow", None)
        .number("+14155550102", "busy", None);
    let mut h = Harness::new(routing, |c| c.agent_ring_timeout = Duration::from_secs(10));
    h.agent(AGENT1, Mode::RingForever);
    h.agent(AGENT2, Mode::Reject(486));

    let c = CarrierCall::new(CARRIER, DID);
    h.send(CARRIER, c.invite());
    h.expect(AGENT1, Method::Invite);
    h.advance(Duration::from_millis(100));
    h.send(CARRIER, c.cancel());
    assert_eq!(h.final_response(CARRIER, S).1.msg.status(), Some(487));
    let rec = h.record_by_sip_call_id(&c.call_id).expect("a record");
    assert_eq!(rec.status, CallStatus::Canceled);
    assert_eq!(rec.hangup_by, Some(HangupBy::Caller));
    assert!(rec.ended_at_ms.is_some());

    let c = CarrierCall::new(CARRIER, "+14155550102");
    h.send(CARRIER, c.invite());
    assert_eq!(h.final_response(CARRIER, S).1.msg.status(), Some(503));
    let rec = h.record_by_sip_call_id(&c.call_id).expect("a record");
    assert_eq!(rec.status, CallStatus::Busy, "the only agent said busy");
    assert_eq!(rec.sip_status, Some(503));
    assert_eq!(rec.hops[0].sip_status, Some(486));
}

#[test]
fn call_records_tell_what_happened() {
    let routing = two_agents(true, AgentStatus::Active, 5);
    let number_id = routing.number_id(DID);
    let mut h = Harness::new(routing, |_| {});
    h.agent(AGENT1, Mode::Reject(486));
    h.agent(AGENT2, Mode::Answer);
    let mut c = CarrierCall::new(CARRIER, DID);
    h.send(CARRIER, c.invite());
    let (_, ok) = h.final_response(CARRIER, S);
    c.answered(&ok.msg);
    h.send(CARRIER, c.ack(&ok.msg));
    let bye = c.in_dialog("BYE", false);
    h.send(CARRIER, bye);
    let rec = h.record_by_sip_call_id(&c.call_id).expect("a record");
    assert!(rec.ended_at_ms.is_some());
    assert!(rec.id.starts_with("call_"));
    assert_eq!(rec.direction, "inbound");
    assert_eq!(rec.status, CallStatus::Completed);
    assert_eq!(rec.carrier, "carrier");
    assert_eq!(rec.from, "+12125550000");
    assert_eq!(rec.caller_name.as_deref(), Some("Alice Caller"));
    assert_eq!(rec.to, DID);
    assert_eq!(rec.phone_number_id.as_deref(), Some(number_id.as_str()));
    assert_eq!(rec.answered_by, Some(Route::Fallback));
    assert_eq!(rec.agent_id.as_deref(), Some("f"));
    assert_eq!(rec.hangup_by, Some(HangupBy::Caller));
    assert_eq!(rec.hops.len(), 2, "{rec:?}");
    assert_eq!(rec.hops[0].route, Route::Primary);
    assert_eq!(rec.hops[0].sip_status, Some(486));
    assert_eq!(rec.hops[1].route, Route::Fallback);
    assert_eq!(rec.hops[1].sip_status, Some(200));
    assert!(rec.answered_at_ms.is_some());
}

/// A live call's record is queued a moment (20 ms) after it changes: the ringing call shows as ringing,
/// and the same row then as ended.
#[test]
fn live_calls_show_their_progress_in_records() {
    let mut h = Harness::new(two_agents(false, AgentStatus::Active, 5), |c| {
        c.agent_ring_timeout = Duration::from_secs(10)
    });
    h.agent(AGENT1, Mode::RingForever);
    let c = CarrierCall::new(CARRIER, DID);
    h.send(CARRIER, c.invite());
    h.expect(AGENT1, Method::Invite);
    assert!(h.record_by_sip_call_id(&c.call_id).is_none(), "not queued at once");
    h.advance(Duration::from_millis(20));
    let ringing = h.record_by_sip_call_id(&c.call_id).expect("queued 20 ms later");
    assert_eq!(ringing.status, CallStatus::Ringing);
    assert!(ringing.ended_at_ms.is_none());
    assert!(ringing.answered_at_ms.is_none());
    h.send(CARRIER, c.cancel());
    assert_eq!(h.final_response(CARRIER, S).1.msg.status(), Some(487));
    let ended = h.record_by_sip_call_id(&c.call_id).expect("a record");
    assert_eq!(ended.id, ringing.id, "one row per call");
    assert_eq!(ended.status, CallStatus::Canceled);
}

#[test]
fn edge_shutdown_hangs_up_and_releases_agents() {
    let routing = Routing::new()
        .agent("a", AGENT1, 5, AgentStatus::Active)
        .agent("r", AGENT2, 5, AgentStatus::Active)
        .number(DID, "a", None)
        .number("+14155550101", "r", None);
    let mut h = Harness::new(routing, |_| {});
    h.agent(AGENT1, Mode::Answer);
    h.agent(AGENT2, Mode::RingForever);
    let c = CarrierCall::new(CARRIER, DID);
    h.send(CARRIER, c.invite());
    let (_, ok) = h.final_response(CARRIER, S);
    h.send(CARRIER, c.ack(&ok.msg));
    let c2 = CarrierCall::new(CARRIER2, "+14155550101");
    h.send(CARRIER2, c2.invite());
    h.expect(AGENT2, Method::Invite);
    assert_eq!(h.ep.calls.agent_load("a"), 1);
    assert_eq!(h.ep.calls.agent_load("r"), 1);

    let now = h.now;
    h.ep.shutdown(now);
    h.pump();
    let mut ended: Vec<_> = [&c.call_id, &c2.call_id]
        .iter()
        .map(|id| {
            let r = h.record_by_sip_call_id(id).expect("a record");
            (r.status.as_str(), r.hangup_by, r.ended_at_ms.is_some())
        })
        .collect();
    ended.sort_by_key(|e| e.0);
    assert_eq!(
        ended,
        [
            ("completed", Some(HangupBy::Edge), true),
            ("failed", Some(HangupBy::Edge), true)
        ]
    );
    assert!(h.got(AGENT1, Method::Bye, S), "the answered agent is hung up");
    h.expect(CARRIER, Method::Bye);
    let (_, fin) = h.final_response(CARRIER2, S);
    assert_eq!(
        fin.msg.status(),
        Some(503),
        "a ringing call is refused so the carrier retries elsewhere"
    );
    assert!(fin.msg.header(&HeaderName::RetryAfter).is_some());
    assert_eq!(h.ep.calls.agent_load("a"), 0);
    assert_eq!(h.ep.calls.agent_load("r"), 0);
}

#[test]
fn agent_host_names_are_resolved_and_a_dead_name_fails_over() {
    let routing = Routing::new()
        .agent_uri("gone", "sip:bot@nowhere.test:5060", 5, AgentStatus::Active)
        .agent_uri("named", "sip:bot@agent.test:5060", 5, AgentStatus::Active)
        .number(DID, "gone", Some("named"));
    let mut h = Harness::new(routing, |_| {});
    h.host("agent.test", vec![(addr(AGENT1), sip_core::message::Transport::Udp)]);
    h.agent(AGENT1, Mode::Answer);
    let mut c = CarrierCall::new(CARRIER, DID);
    h.send(CARRIER, c.invite());
    let (_, ok) = h.final_response(CARRIER, S);
    assert_eq!(ok.msg.status(), Some(200));
    c.answered(&ok.msg);
    let inv = h.expect(AGENT1, Method::Invite).msg;
    assert_eq!(inv.request_uri_raw().unwrap(), "sip:bot@agent.test:5060");
    h.send(CARRIER, c.ack(&ok.msg));
    let bye = c.in_dialog("BYE", false);
    h.send(CARRIER, bye);
    h.expect(AGENT1, Method::Bye);
    let rec = h.record_by_sip_call_id(&c.call_id).expect("a record");
    assert_eq!(rec.status, CallStatus::Completed);
    assert!(
        rec.hops[0]
            .outcome
            .contains("unavailable: sip_uri host does not resolve"),
        "{rec:?}"
    );
    assert_eq!(rec.answered_by, Some(Route::Fallback));
}

/// RFC 3261 13.3.1.4: the edge's 2xx to the carrier is re-sent at T1, 2*T1, ... capped at T2, until the ACK,
/// and then never again.
#[test]
fn answer_is_retransmitted_to_the_carrier_until_its_ack() {
    let mut h = Harness::new(two_agents(false, AgentStatus::Active, 5), |_| {});
    h.agent(AGENT1, Mode::Answer);
    let c = CarrierCall::new(CARRIER, DID);
    h.send(CARRIER, c.invite());
    let (_, ok) = h.final_response(CARRIER, S);
    assert_eq!(ok.msg.status(), Some(200));
    h.advance(Duration::from_millis(3600));
    let resent: Vec<Duration> = h
        .take(CARRIER)
        .into_iter()
        .filter(|s| s.msg.status() == Some(200))
        .map(|s| {
            assert_eq!(s.msg.bytes(), ok.msg.bytes(), "the same 2xx, byte for byte");
            s.at
        })
        .collect();
    let ms = Duration::from_millis;
    assert_eq!(resent, [ms(500), ms(1500), ms(3500)]);
    h.send(CARRIER, c.ack(&ok.msg));
    h.advance(Duration::from_secs(60));
    let after: Vec<_> = h.take(CARRIER).into_iter().map(|s| s.msg).collect();
    assert!(after.is_empty(), "nothing after the ACK: {after:?}");
    assert_eq!(h.ep.calls.active(), 1, "the call goes on");
}

/// No ACK at all: the 2xx is re-sent (intervals capped at T2 = 4 s) for 64*T1, then the call is ended
/// with BYE on both legs and recorded as failed by the edge.
#[test]
fn answer_never_acknowledged_ends_the_call() {
    let mut h = Harness::new(two_agents(false, AgentStatus::Active, 5), |_| {});
    h.agent(AGENT1, Mode::Answer);
    let c = CarrierCall::new(CARRIER, DID);
    h.send(CARRIER, c.invite());
    let (_, ok) = h.final_response(CARRIER, S);
    assert_eq!(ok.msg.status(), Some(200));
    let bye = h
        .try_expect(CARRIER, Method::Bye, Duration::from_secs(40))
        .expect("a BYE");
    let resent: Vec<u64> = h
        .log
        .iter()
        .filter(|s| s.to == addr(CARRIER) && s.msg.status() == Some(200) && s.at > Duration::ZERO)
        .map(|s| s.at.as_millis() as u64)
        .collect();
    assert_eq!(
        resent,
        [500, 1500, 3500, 7500, 11500, 15500, 19500, 23500, 27500, 31500]
    );
    // 64*T1 = 32 s after the 2xx (sent at 0), not at the next retransmission after it.
    assert_eq!(bye.at, Duration::from_secs(32), "RFC 3261 13.3.1.4: BYE at 64*T1");
    assert!(h.got(AGENT1, Method::Bye, S), "the agent is hung up too");
    let rec = h.record_by_sip_call_id(&c.call_id).expect("a record");
    assert_eq!(rec.status, CallStatus::Failed);
    assert_eq!(rec.hangup_by, Some(HangupBy::Edge));
    assert_eq!(rec.end_reason.as_deref(), Some("carrier never acknowledged the answer"));
    assert_eq!(h.ep.calls.agent_load("p"), 0);
}

/// Timer A / Timer B (RFC 3261 17.1.1.2) on the agent leg: a silent agent's INVITE is re-sent at 0.5, 1.5,
/// 3.5, 7.5, 15.5 and 31.5 s, and at 64*T1 = 32 s the transaction times out and the fallback is rung.
#[test]
fn silent_agent_times_out_on_timer_b() {
    let mut h = Harness::new(two_agents(true, AgentStatus::Active, 5), |c| {
        c.agent_setup_timeout = Duration::from_secs(60);
        c.agent_ring_timeout = Duration::from_secs(120);
    });
    h.agent(AGENT1, Mode::Silent);
    h.agent(AGENT2, Mode::Answer);
    let c = CarrierCall::new(CARRIER, DID);
    h.send(CARRIER, c.invite());
    let (_, ok) = h.final_response(CARRIER, Duration::from_secs(40));
    assert_eq!(ok.msg.status(), Some(200));
    assert_eq!(ok.at, Duration::from_secs(32), "Timer B");
    let sent: Vec<u64> = h
        .take(AGENT1)
        .into_iter()
        .filter(|s| s.msg.method() == Some(&Method::Invite))
        .map(|s| s.at.as_millis() as u64)
        .collect();
    assert_eq!(sent, [0, 500, 1500, 3500, 7500, 15500, 31500]);
    // The answered call's record is queued 20 ms after the answer.
    h.advance(Duration::from_millis(20));
    let rec = h.newest_record();
    assert_eq!(rec.hops[0].sip_status, Some(408));
    assert_eq!(rec.hops[0].outcome, "timeout: no final answer");
    assert_eq!(h.ep.calls.agent_load("p"), 0);
    assert_eq!(h.ep.calls.agent_load("f"), 1);
}

/// RFC 3261 13.2.2.4: the primary answers at 33 s, after its INVITE transaction timed out on Timer B (32 s)
/// and the fallback took the call. That 2xx matches no transaction, yet it opened a dialog: the edge ACKs
/// it and hangs it up with BYE, and the call with the fallback goes on.
#[test]
fn answer_after_timer_b_is_acked_and_hung_up() {
    let mut h = Harness::new(two_agents(true, AgentStatus::Active, 5), |c| {
        c.agent_setup_timeout = Duration::from_secs(60);
        c.agent_ring_timeout = Duration::from_secs(120);
    });
    h.agent(AGENT1, Mode::Silent);
    h.agent(AGENT2, Mode::Answer);
    let c = CarrierCall::new(CARRIER, DID);
    h.send(CARRIER, c.invite());
    let (_, ok) = h.final_response(CARRIER, Duration::from_secs(40));
    assert_eq!(ok.at, Duration::from_secs(32), "Timer B");
    h.send(CARRIER, c.ack(&ok.msg));
    let invite = h
        .take(AGENT1)
        .into_iter()
        .find(|s| s.msg.method() == Some(&Method::Invite))
        .expect("the primary's INVITE")
        .msg;
    h.advance(Duration::from_secs(1));
    let late = ResponseBuilder::for_request(&invite, 200, "OK")
        .to_tag("late-answer")
        .header("Contact", &format!("<sip:p@{AGENT1}>"))
        .build();
    h.send(AGENT1, late);
    let ack = h.expect(AGENT1, Method::Ack);
    let bye = h.expect(AGENT1, Method::Bye);
    for m in [&ack.msg, &bye.msg] {
        assert_eq!(m.call_id().ok(), invite.call_id().ok(), "in the primary leg's dialog");
        assert!(
            m.header(&HeaderName::To).unwrap_or("").contains("tag=late-answer"),
            "{m:?}"
        );
    }
    assert_eq!(ack.at, Duration::from_secs(33));
    assert_eq!(bye.at, Duration::from_secs(33));
    assert_eq!(h.ep.calls.active(), 1, "the call with the fallback goes on");
    assert_eq!(h.ep.calls.agent_load("p"), 0);
    assert_eq!(h.ep.calls.agent_load("f"), 1);
}

/// RFC 3261 17.1.4 / 8.1.3.1: the primary's INVITE cannot be sent (its TCP connect is refused), so the
/// fallback is rung at once, and the hop says the agent was unreachable (a dead agent), not that it timed
/// out (a silent one).
#[test]
fn refused_connect_is_recorded_as_unreachable() {
    let mut h = Harness::new(two_agents(true, AgentStatus::Active, 5), |_| {});
    h.refuse(AGENT1);
    h.agent(AGENT2, Mode::Answer);
    let c = CarrierCall::new(CARRIER, DID);
    h.send(CARRIER, c.invite());
    let (_, ok) = h.final_response(CARRIER, S);
    assert_eq!(ok.msg.status(), Some(200));
    assert_eq!(
        ok.at,
        Duration::ZERO,
        "failover on the refused connect, not at an agent timer"
    );
    h.advance(Duration::from_millis(20));
    let rec = h.newest_record();
    assert_eq!(rec.hops[0].sip_status, Some(503));
    assert_eq!(rec.hops[0].outcome, "unreachable: transport error (connection refused)");
    assert_eq!(rec.answered_by, Some(Route::Fallback));
    assert_eq!(h.ep.calls.agent_load("p"), 0);
    assert_eq!(h.ep.calls.agent_load("f"), 1);
}

/// Call control draws its tags, Call-IDs and branches from the entropy it is handed: the same seed mints
/// the same ids, call after call, and another seed others (the real source is the OS-seeded CSPRNG).
#[test]
fn ids_come_from_the_entropy_handed_in() {
    fn run(seed: u64) -> Vec<String> {
        let mut h = Harness::new(two_agents(false, AgentStatus::Active, 5), |_| {});
        h.ep.set_entropy(Box::new(oneinbox_edge::call::SeededEntropy::new(seed)));
        h.agent(AGENT1, Mode::Answer);
        let c = CarrierCall::new(CARRIER, DID);
        h.send(CARRIER, c.invite());
        let (_, ok) = h.final_response(CARRIER, S);
        let inv = h.expect(AGENT1, Method::Invite).msg;
        vec![
            ok.msg.to().unwrap().tag().unwrap().to_owned(),
            inv.call_id().unwrap().to_owned(),
            inv.from().unwrap().tag().unwrap().to_owned(),
            inv.top_via_raw().unwrap().to_owned(),
            // The record id: the wall time (not faked here), then 16 hex digits of entropy.
            {
                let id = inv.header(&HeaderName::Other("X-OneInbox-Call-Id".into())).unwrap();
                id[id.len() - 16..].to_owned()
            },
        ]
    }
    let a = run(7);
    assert_eq!(a, run(7), "same seed, same ids");
    let b = run(8);
    for (x, y) in a.iter().zip(&b) {
        assert_ne!(x, y, "another seed, other ids");
    }
}

/// Call control writes to no metrics recorder: what happened is drained like transmits and records.
#[test]
fn metric_updates_are_drained_not_written() {
    use oneinbox_edge::call::MetricUpdate;
    let mut h = Harness::new(two_agents(false, AgentStatus::Active, 5), |_| {});
    h.agent(AGENT1, Mode::Answer);
    h.advance(Duration::from_millis(250));
    let c = CarrierCall::new(CARRIER, DID);
    h.send(CARRIER, c.invite());
    let (_, ok) = h.final_response(CARRIER, S);
    assert_eq!(ok.msg.status(), Some(200));
    let answered = MetricUpdate::InviteAnswered {
        carrier: "carrier".into(),
        code: 200,
    };
    assert_eq!(
        h.metrics.iter().filter(|m| **m == answered).count(),
        1,
        "{:?}",
        h.metrics
    );
    assert_eq!(
        h.metrics
            .iter()
            .filter(|m| matches!(m, MetricUpdate::SetupSeconds(_)))
            .count(),
        1,
        "{:?}",
        h.metrics
    );
}

/// RFC 3261 13.2.1: the carrier keeps the first SDP answer it gets, here the primary's 183. When the
/// primary then fails and the fallback answers with its own SDP (another law), the carrier's 200 repeats
/// the 183's answer byte for byte (one session, one `o=` line) and the fallback's SDP goes to the relay
/// alone, which converts the law (`edge-media`'s `transcode`).
#[test]
fn a_fallback_after_early_media_repeats_the_carriers_answer() {
    const ALAW_SDP: &str = "v=0\r\no=fallback 9 9 IN IP4 192.0.2.30\r\ns=-\r\nc=IN IP4 192.0.2.30\r\nt=0 0\r\n\
                            m=audio 42000 RTP/AVP 8\r\na=rtpmap:8 PCMA/8000\r\n";
    let (mut h, media) = Harness::with_media(two_agents(true, AgentStatus::Active, 5), |_| {});
    h.agent(AGENT1, Mode::Silent);
    h.agent(AGENT2, Mode::Silent);
    let c = CarrierCall::new(CARRIER, DID);
    h.send(CARRIER, c.invite());
    let inv = h.expect(AGENT1, Method::Invite).msg;
    let early = ResponseBuilder::for_request(&inv, 183, "Session Progress")
        .to_tag("primary")
        .header("Contact", &format!("<sip:p@{AGENT1}>"))
        .body(
            "application/sdp",
            bytes::Bytes::from_static(super::harness::SDP.as_bytes()),
        )
        .build();
    h.send(AGENT1, early);
    let progress = loop {
        let m = h.recv(CARRIER, S).expect("the 183 relayed to the carrier").msg;
        if m.status() == Some(183) {
            break m;
        }
    };
    assert!(!progress.body().is_empty(), "the 183 carries the anchored answer");
    h.send(
        AGENT1,
        ResponseBuilder::for_request(&inv, 486, "Busy Here")
            .to_tag("primary")
            .build(),
    );
    let inv2 = h.expect(AGENT2, Method::Invite).msg;
    h.send(AGENT2, super::peers::ok_from(AGENT2, "f", &inv2, Some(ALAW_SDP)));
    let (_, ok) = h.final_response(CARRIER, S);
    assert_eq!(ok.msg.status(), Some(200));
    assert_eq!(
        String::from_utf8_lossy(ok.msg.body()),
        String::from_utf8_lossy(progress.body()),
        "the 200 repeats the answer the carrier already has"
    );
    assert_eq!(
        media.kept_answers(),
        [(
            oneinbox_edge::call::media::Side::B,
            bytes::Bytes::from_static(ALAW_SDP.as_bytes())
        )],
        "the fallback's SDP went to the relay, not to the carrier"
    );
}

/// Early media the relay cannot use (a plain 183 from a `srtp_required` agent, here the fake relay's
/// refusal) fails the primary's hop: the edge CANCELs it, the carrier never sees that SDP, and the
/// fallback's answer is the carrier's session.
#[test]
fn early_media_the_relay_refuses_fails_the_hop() {
    let (mut h, media) = Harness::with_media(two_agents(true, AgentStatus::Active, 5), |_| {});
    h.agent(AGENT1, Mode::Silent);
    h.agent(AGENT2, Mode::Answer);
    let c = CarrierCall::new(CARRIER, DID);
    h.send(CARRIER, c.invite());
    let inv = h.expect(AGENT1, Method::Invite).msg;
    let refused = format!("{}{}", super::harness::SDP, super::fake_media::REFUSE);
    let early = ResponseBuilder::for_request(&inv, 183, "Session Progress")
        .to_tag("primary")
        .header("Contact", &format!("<sip:p@{AGENT1}>"))
        .body("application/sdp", bytes::Bytes::from(refused))
        .build();
    h.send(AGENT1, early);
    let cancel = h.expect(AGENT1, Method::Cancel).msg;
    assert_eq!(cancel.call_id().unwrap(), inv.call_id().unwrap());
    let inv2 = h.expect(AGENT2, Method::Invite).msg;
    assert_eq!(
        inv2.header(&HeaderName::Other("X-OneInbox-Route".into())),
        Some("fallback")
    );
    let (prov, ok) = h.final_response(CARRIER, S);
    assert!(
        !prov.contains(&183),
        "the refused early media never reached the carrier: {prov:?}"
    );
    assert_eq!(ok.msg.status(), Some(200));
    let body = String::from_utf8_lossy(ok.msg.body()).into_owned();
    assert!(body.contains("a=x-anchored:B") && !body.contains("x-refuse"), "{body}");
    assert!(
        media.kept_answers().is_empty(),
        "the fallback's answer is the carrier's session"
    );
    h.advance(Duration::from_secs(1));
    let rec = h.record_by_sip_call_id(&c.call_id).expect("a record");
    assert_eq!(rec.hops[0].outcome, "media refused: refused by the fake relay");
    assert_eq!(rec.hops[1].outcome, "answered");
}
