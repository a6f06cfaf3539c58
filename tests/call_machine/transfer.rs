//! Blind transfer on the fake clock: an agent's REFER (RFC 3515) or `POST /v1/calls/{id}/transfer` hands
//! the caller to a number (through the trunk of the call's number, digest included) or to another agent;
//! the agent is told how it goes by NOTIFY, and the caller stays with the agent when the target fails.

use edge_contract::TransferRefusal;
use edge_store::{AgentStatus, CallRecord, CallStatus, HangupBy, Provider, Route};
use oneinbox_edge::call::media::Side;
use sip_core::digest::{Algorithm, AuthHeader};
use sip_core::message::{Message, Method};

use super::harness::{
    Harness, Mode, Routing, Sent, TrunkAuth, TrunkMode, ACCOUNT, AGENT1, AGENT2, CARRIER, OUTSIDER, S, TRUNK, TRUNK_SDP,
};
use super::peers::{agent_in_dialog, header, CarrierCall};

const DID: &str = "+14155550100";
const TARGET: &str = "+14155550199";

/// Agents `agt_p` (AGENT1, the number's) and `agt_q` (AGENT2); the number has a Telnyx trunk with digest.
fn routing() -> Routing {
    Routing::new()
        .agent("agt_p", AGENT1, 5, AgentStatus::Active)
        .agent("agt_q", AGENT2, 5, AgentStatus::Active)
        .number_with_trunk(DID, "agt_p", Provider::Telnyx, TRUNK, Some(("oneinbox", "s3cret-pass")))
}

fn trunk_auth() -> Option<TrunkAuth> {
    Some(TrunkAuth {
        username: "oneinbox".into(),
        password: "s3cret-pass".into(),
        header: AuthHeader::ProxyAuthorization,
        algorithm: Algorithm::Sha256,
    })
}

/// A carrier call answered by `agt_p` and ACKed: the caller, and the INVITE `agt_p` got.
struct Connected {
    caller: CarrierCall,
    agent_invite: Message,
    agent_tag: String,
}

fn connect(h: &mut Harness) -> Connected {
    h.agent(AGENT1, Mode::Answer);
    let mut caller = CarrierCall::new(CARRIER, DID);
    h.send(CARRIER, caller.invite());
    let (_, ok) = h.final_response(CARRIER, S);
    assert_eq!(ok.msg.status(), Some(200));
    caller.answered(&ok.msg);
    h.send(CARRIER, caller.ack(&ok.msg));
    let agent_invite = h.expect(AGENT1, Method::Invite).msg;
    h.take(AGENT1);
    h.take(CARRIER);
    Connected {
        caller,
        agent_invite,
        agent_tag: h.agent_tag(AGENT1),
    }
}

/// The agent's REFER in its dialog with the edge.
fn refer(c: &Connected, refer_to: &str) -> String {
    agent_in_dialog(AGENT1, &c.agent_invite, &c.agent_tag, "REFER", false).replacen(
        "Content-Length",
        &format!("Refer-To: {refer_to}\r\nReferred-By: <sip:agt_p@198.51.100.21>\r\nContent-Length"),
        1,
    )
}

/// What `to` got: responses to `method`, and requests of `method`.
fn responses_to(sent: &[Sent], method: Method) -> Vec<&Message> {
    sent.iter()
        .map(|s| &s.msg)
        .filter(|m| !m.is_request() && m.cseq().is_ok_and(|c| c.method == method))
        .collect()
}

fn requests(sent: &[Sent], method: Method) -> Vec<&Message> {
    sent.iter()
        .map(|s| &s.msg)
        .filter(|m| m.method() == Some(&method))
        .collect()
}

/// The status lines the agent was NOTIFYed of, and whether the last one ended the subscription.
fn notified(sent: &[Sent]) -> (Vec<String>, bool) {
    let notifies = requests(sent, Method::Notify);
    for n in &notifies {
        assert_eq!(header(n, "Event").as_deref(), Some("refer"));
        assert_eq!(n.content_type(), Some("message/sipfrag;version=2.0"));
    }
    let lines = notifies
        .iter()
        .map(|n| String::from_utf8_lossy(n.body()).trim_end().to_owned())
        .collect();
    let ended = notifies
        .last()
        .and_then(|n| header(n, "Subscription-State"))
        .is_some_and(|s| s.starts_with("terminated"));
    (lines, ended)
}

/// The call's record as the store has it now (live records are queued 20 ms after they change).
fn record(h: &mut Harness) -> CallRecord {
    h.advance(std::time::Duration::from_millis(50));
    h.newest_record()
}

#[test]
fn refer_to_a_number_bridges_the_caller_through_the_trunk() {
    let (mut h, media) = Harness::with_media(routing(), |_| {});
    h.trunk(TRUNK, TrunkMode::Answer, trunk_auth());
    let mut c = connect(&mut h);
    assert_eq!(h.ep.calls.agent_load("agt_p"), 1);

    h.send(AGENT1, refer(&c, &format!("<tel:{TARGET}>")));
    let to_agent = h.take(AGENT1);
    let accepted = responses_to(&to_agent, Method::Refer);
    assert_eq!(accepted.len(), 1);
    assert_eq!(accepted[0].status(), Some(202));
    // Progress, then the end: RFC 3515 sipfrag status lines.
    let (lines, ended) = notified(&to_agent);
    assert_eq!(lines, ["SIP/2.0 100 Trying", "SIP/2.0 180 Ringing", "SIP/2.0 200 OK"]);
    assert!(ended, "the final NOTIFY ends the subscription");
    // The agent is hung up once the target answered, saying why.
    let byes = requests(&to_agent, Method::Bye);
    assert_eq!(byes.len(), 1);
    assert!(header(byes[0], "Reason").is_some_and(|r| r.contains("transferred")));

    // The trunk: challenged once, then the INVITE with credentials, to the number, from the call's own
    // number, with the caller's anchored offer and the Referred-By.
    let to_trunk = h.take(TRUNK);
    let invites = requests(&to_trunk, Method::Invite);
    assert_eq!(invites.len(), 2, "407, then the INVITE with credentials");
    let inv = invites[1];
    assert!(header(inv, "Proxy-Authorization").is_some());
    assert_eq!(inv.request_uri().unwrap().user().unwrap(), TARGET);
    assert_eq!(inv.from().unwrap().uri.user().unwrap(), DID);
    assert!(header(inv, "Referred-By").is_some_and(|r| r.contains("agt_p")));
    assert!(String::from_utf8_lossy(inv.body()).contains("a=x-anchored:A"));
    assert_eq!(
        h.ep.calls.agent_load("agt_p"),
        0,
        "the agent's count is released with its leg"
    );

    // The carrier saw nothing of it; the record shows the transfer hop.
    assert!(requests(&h.take(CARRIER), Method::Bye).is_empty());
    let r = record(&mut h);
    assert_eq!(r.status, CallStatus::InProgress);
    let hop = r.hops.last().unwrap();
    assert_eq!(hop.route, Route::Transfer);
    assert_eq!(hop.target.as_deref(), Some(TARGET));
    assert_eq!(hop.sip_status, Some(200));
    assert_eq!(hop.outcome, "answered");
    // The caller heard ringback while the number rang (the trunk sent no early media), then the target.
    assert_eq!(media.ringbacks(), [(Side::A, true), (Side::A, false)]);
    // The target's SDP went to the relay only: the caller keeps its session (no re-INVITE, no new
    // answer), and the relay converts the law if the target chose the other one.
    assert_eq!(
        media.kept_answers(),
        [(Side::B, bytes::Bytes::from_static(TRUNK_SDP.as_bytes()))]
    );
    assert!(requests(&h.take(CARRIER), Method::Invite).is_empty());

    // The caller now talks to the dialled party: its BYE goes to the trunk.
    h.send(CARRIER, c.caller.in_dialog("BYE", false));
    assert!(!requests(&h.take(TRUNK), Method::Bye).is_empty());
    assert!(requests(&h.take(AGENT1), Method::Bye).is_empty());
    let r = record(&mut h);
    assert_eq!(r.status, CallStatus::Completed);
    assert_eq!(r.hangup_by, Some(HangupBy::Caller));
    assert_eq!(media.live_relays(), 0);
}

#[test]
fn refer_to_another_agent_rings_it_and_moves_the_count() {
    let (mut h, media) = Harness::with_media(routing(), |_| {});
    h.agent(AGENT2, Mode::Answer);
    let mut c = connect(&mut h);

    h.send(AGENT1, refer(&c, "<sip:agt_q@198.18.0.1>"));
    let inv = h.expect(AGENT2, Method::Invite).msg;
    assert_eq!(
        inv.from().unwrap().uri.user().unwrap(),
        "+12125550000",
        "the caller's identity"
    );
    assert_eq!(header(&inv, "X-OneInbox-Route").as_deref(), Some("transfer"));
    assert_eq!(header(&inv, "X-OneInbox-Agent-Id").as_deref(), Some("agt_q"));
    assert!(header(&inv, "Referred-By").is_some());
    let to_agent = h.take(AGENT1);
    assert_eq!(responses_to(&to_agent, Method::Refer)[0].status(), Some(202));
    let (lines, ended) = notified(&to_agent);
    assert_eq!(lines.last().map(String::as_str), Some("SIP/2.0 200 OK"));
    assert!(ended);
    assert_eq!(requests(&to_agent, Method::Bye).len(), 1);
    assert_eq!(h.ep.calls.agent_load("agt_p"), 0);
    assert_eq!(h.ep.calls.agent_load("agt_q"), 1);
    let r = record(&mut h);
    assert_eq!(r.agent_id.as_deref(), Some("agt_q"));
    assert_eq!(r.hops.last().unwrap().target.as_deref(), Some("agt_q"));

    h.send(CARRIER, c.caller.in_dialog("BYE", false));
    assert!(h.got(AGENT2, Method::Bye, S));
    assert_eq!(h.ep.calls.agent_load("agt_q"), 0);
    assert_eq!(media.live_relays(), 0);
}

#[test]
fn a_failed_transfer_leaves_the_caller_with_the_agent() {
    let (mut h, media) = Harness::with_media(routing(), |_| {});
    h.trunk(TRUNK, TrunkMode::Reject(486, "Busy Here", None), trunk_auth());
    let mut c = connect(&mut h);

    h.send(AGENT1, refer(&c, &format!("<sip:{TARGET}@198.18.0.1;user=phone>")));
    let to_agent = h.take(AGENT1);
    assert_eq!(responses_to(&to_agent, Method::Refer)[0].status(), Some(202));
    let (lines, ended) = notified(&to_agent);
    assert_eq!(lines.first().map(String::as_str), Some("SIP/2.0 100 Trying"));
    assert_eq!(lines.last().map(String::as_str), Some("SIP/2.0 486 Busy Here"));
    assert!(ended);
    assert!(
        requests(&to_agent, Method::Bye).is_empty(),
        "the agent keeps the caller"
    );
    assert_eq!(h.ep.calls.agent_load("agt_p"), 1);
    assert_eq!(
        media.ringbacks(),
        [(Side::A, true), (Side::A, false)],
        "ringback ends with the transfer"
    );
    let r = record(&mut h);
    assert_eq!(r.status, CallStatus::InProgress);
    let hop = r.hops.last().unwrap();
    assert_eq!(
        (hop.route, hop.target.as_deref(), hop.sip_status),
        (Route::Transfer, Some(TARGET), Some(486))
    );

    // Still the agent's call: the caller's BYE reaches it.
    h.send(CARRIER, c.caller.in_dialog("BYE", false));
    assert!(h.got(AGENT1, Method::Bye, S));
    assert_eq!(h.ep.calls.agent_load("agt_p"), 0);
}

#[test]
fn a_blind_transferor_may_hang_up_at_once() {
    let (mut h, media) = Harness::with_media(routing(), |cfg| {
        cfg.outbound.trunk_ring_timeout = std::time::Duration::from_secs(30);
    });
    h.trunk(TRUNK, TrunkMode::Ring, trunk_auth());
    let c = connect(&mut h);
    h.send(AGENT1, refer(&c, &format!("<tel:{TARGET}>")));
    h.take(AGENT1);
    // The agent leaves after its 202: the caller waits for the target, the agent's slot is free.
    h.send(
        AGENT1,
        agent_in_dialog(AGENT1, &c.agent_invite, &c.agent_tag, "BYE", false).replace("CSeq: 100", "CSeq: 101"),
    );
    let to_agent = h.take(AGENT1);
    assert_eq!(responses_to(&to_agent, Method::Bye)[0].status(), Some(200));
    assert_eq!(h.ep.calls.agent_load("agt_p"), 0);
    assert!(requests(&h.take(CARRIER), Method::Bye).is_empty(), "the caller stays");

    // The target never answers: the trunk's ring time-out ends the transfer and, with nobody left, the call.
    let start = h.elapsed();
    assert!(h.got(CARRIER, Method::Bye, std::time::Duration::from_secs(31)));
    let waited = h.elapsed() - start;
    assert!(
        waited >= std::time::Duration::from_secs(29),
        "at the ring time-out, not before: {waited:?}"
    );
    assert!(h.got(TRUNK, Method::Cancel, S));
    let r = record(&mut h);
    assert_eq!(r.status, CallStatus::Completed);
    assert_eq!(r.hangup_by, Some(HangupBy::Edge));
    assert!(
        r.end_reason.as_deref().unwrap_or("").starts_with("transfer failed: "),
        "{:?}",
        r.end_reason
    );
    assert_eq!(media.live_relays(), 0);
}

#[test]
fn refers_the_edge_cannot_take_are_refused_with_a_reason() {
    let (mut h, _media) = Harness::with_media(routing(), |_| {});
    h.trunk(TRUNK, TrunkMode::Ring, trunk_auth());
    let c = connect(&mut h);
    let answer = |h: &mut Harness, text: String| -> (u16, String) {
        h.send(AGENT1, text);
        let sent = h.take(AGENT1);
        let r = responses_to(&sent, Method::Refer);
        let r = r.last().expect("an answer to the REFER");
        (r.status().unwrap(), header(r, "Warning").unwrap_or_default())
    };
    // Attended transfer, an unknown user, nothing usable.
    let replaces = refer(
        &c,
        "<sip:agt_q@198.18.0.1?Replaces=abc%40host%3Bto-tag%3D1%3Bfrom-tag%3D2>",
    );
    assert_eq!(answer(&mut h, replaces).0, 501);
    let (code, warning) = answer(&mut h, refer(&c, "<sip:bob@198.18.0.1>"));
    assert_eq!(code, 404);
    assert!(warning.contains("bob"), "{warning}");
    let missing = agent_in_dialog(AGENT1, &c.agent_invite, &c.agent_tag, "REFER", false);
    assert_eq!(answer(&mut h, missing).0, 400);
    // One transfer at a time.
    assert_eq!(answer(&mut h, refer(&c, &format!("<tel:{TARGET}>"))).0, 202);
    assert_eq!(answer(&mut h, refer(&c, "<sip:agt_q@198.18.0.1>")).0, 491);

    // Without anchored media the caller's audio could not follow: refused, the call goes on.
    let mut h = Harness::new(routing(), |_| {});
    let c = connect(&mut h);
    let (code, warning) = answer(&mut h, refer(&c, &format!("<tel:{TARGET}>")));
    assert_eq!(code, 403);
    assert!(warning.contains("media"), "{warning}");
}

#[test]
fn the_api_transfers_a_live_call() {
    let (mut h, _media) = Harness::with_media(routing(), |_| {});
    h.agent(AGENT2, Mode::Answer);
    let _c = connect(&mut h);
    let id = record(&mut h).id;
    let now = h.now;
    // Someone else's call, or one that does not exist: not found.
    let other = h.ep.transfer(now, "acct_other", &id, "agt_q");
    assert_eq!(
        other.unwrap_err(),
        TransferRefusal::CallNotFound { call_id: id.clone() }
    );
    let bad = h.ep.transfer(now, ACCOUNT, &id, "agt_nobody");
    assert!(matches!(bad, Err(TransferRefusal::UnknownTarget(_))), "{bad:?}");

    let rec = h.ep.transfer(now, ACCOUNT, &id, "agt_q").expect("transfer accepted");
    assert_eq!(rec.hops.last().unwrap().route, Route::Transfer);
    h.pump();
    assert!(h.got(AGENT2, Method::Invite, S));
    // No REFER, so no NOTIFY: the agent is simply hung up once the target answered.
    let to_agent = h.take(AGENT1);
    assert!(requests(&to_agent, Method::Notify).is_empty());
    assert_eq!(requests(&to_agent, Method::Bye).len(), 1);
    assert_eq!(h.ep.calls.agent_load("agt_q"), 1);
    assert_eq!(h.ep.calls.agent_load("agt_p"), 0);
}

#[test]
fn a_carrier_transfer_passes_the_refer_on_and_relays_the_notifies() {
    let (mut h, media) = Harness::with_media(routing().carrier_transfers(), |_| {});
    let mut c = connect(&mut h);
    h.send(AGENT1, refer(&c, &format!("<tel:{TARGET}>")));
    // The carrier gets the REFER in its dialog, to the number; nothing is dialled by the edge.
    let refer_out = h.expect(CARRIER, Method::Refer).msg;
    assert_eq!(
        header(&refer_out, "Refer-To").as_deref(),
        Some(format!("<tel:{TARGET}>").as_str())
    );
    assert_eq!(refer_out.call_id().unwrap(), c.caller.call_id);
    assert!(h.take(TRUNK).is_empty());
    // Its 202 goes back to the agent.
    let accepted = sip_core::build::ResponseBuilder::for_request(&refer_out, 202, "Accepted").build();
    h.send(CARRIER, accepted);
    let to_agent = h.take(AGENT1);
    assert_eq!(responses_to(&to_agent, Method::Refer)[0].status(), Some(202));
    // The carrier's NOTIFY reaches the agent, sipfrag and subscription state kept; the agent's 200 comes back.
    let notify = c.caller.in_dialog("NOTIFY", false).replacen(
        "Content-Length: 0\r\n\r\n",
        "Event: refer\r\nSubscription-State: terminated;reason=noresource\r\n\
         Content-Type: message/sipfrag;version=2.0\r\nContent-Length: 16\r\n\r\nSIP/2.0 200 OK\r\n",
        1,
    );
    h.send(CARRIER, notify);
    let to_agent = h.take(AGENT1);
    let n = requests(&to_agent, Method::Notify);
    assert_eq!(n.len(), 1);
    assert_eq!(n[0].body(), b"SIP/2.0 200 OK\r\n");
    assert_eq!(
        header(n[0], "Subscription-State").as_deref(),
        Some("terminated;reason=noresource")
    );
    assert_eq!(responses_to(&h.take(CARRIER), Method::Notify)[0].status(), Some(200));
    // The carrier has moved the caller: it hangs up, the agent is hung up, the record says why.
    h.send(CARRIER, c.caller.in_dialog("BYE", false));
    assert!(h.got(AGENT1, Method::Bye, S));
    let r = record(&mut h);
    assert_eq!(r.status, CallStatus::Completed);
    assert_eq!(r.end_reason.as_deref(), Some("transferred by the carrier"));
    let hop = r.hops.last().unwrap();
    assert_eq!((hop.route, hop.target.as_deref()), (Route::Transfer, Some(TARGET)));
    assert_eq!(hop.outcome, "referred to the carrier");
    assert_eq!(h.ep.calls.agent_load("agt_p"), 0);
    assert_eq!(media.live_relays(), 0);
}

/// A stranger who knows the agent's dialog (Call-ID and both tags) cannot transfer the call: the REFER is
/// judged by its source like any in-dialog request (481), nothing is dialled, the call goes on.
#[test]
fn a_strangers_refer_transfers_nothing() {
    let (mut h, media) = Harness::with_media(routing(), |_| {});
    h.trunk(TRUNK, TrunkMode::Answer, trunk_auth());
    let c = connect(&mut h);
    let forged = refer(&c, &format!("<tel:{TARGET}>")).replace(AGENT1, OUTSIDER);
    h.send(OUTSIDER, forged);
    let answers = h.take(OUTSIDER);
    assert_eq!(
        responses_to(&answers, Method::Refer).first().and_then(|r| r.status()),
        Some(481)
    );
    assert!(h.take(TRUNK).is_empty(), "nothing dialled");
    assert!(h.take(AGENT1).is_empty(), "the agent is told nothing");
    assert!(media.ringbacks().is_empty());
    assert_eq!(h.ep.calls.agent_load("agt_p"), 1);
    assert_eq!(record(&mut h).status, CallStatus::InProgress);
}

/// Only the agent's side transfers: the caller's REFER is refused (403 with a Warning), also while the
/// edge answers with voicemail (where any other request is accepted), and the call goes on.
#[test]
fn the_callers_refer_is_refused_in_every_phase() {
    let routing = Routing::new()
        .agent("agt_p", AGENT1, 5, AgentStatus::Disabled)
        .number_with_trunk(DID, "agt_p", Provider::Telnyx, TRUNK, None);
    let (mut h, media) = Harness::with_media(routing, |_| {});
    let mut caller = CarrierCall::new(CARRIER, DID);
    h.send(CARRIER, caller.invite());
    let (_, ok) = h.final_response(CARRIER, S);
    assert_eq!(ok.msg.status(), Some(200), "voicemail answers");
    caller.answered(&ok.msg);
    h.send(CARRIER, caller.ack(&ok.msg));
    h.take(CARRIER);
    let refer = caller.in_dialog("REFER", false).replacen(
        "Content-Length",
        &format!("Refer-To: <tel:{TARGET}>\r\nContent-Length"),
        1,
    );
    h.send(CARRIER, refer);
    let sent = h.take(CARRIER);
    let answer = responses_to(&sent, Method::Refer);
    assert_eq!(answer.first().and_then(|r| r.status()), Some(403));
    assert!(header(answer[0], "Warning").is_some_and(|w| w.contains("agent")));
    assert!(h.take(TRUNK).is_empty(), "nothing dialled");
    assert_eq!(media.voicemails().len(), 1);
    assert_eq!(record(&mut h).status, CallStatus::InProgress);
}
