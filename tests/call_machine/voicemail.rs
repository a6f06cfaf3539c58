//! Voicemail and media events on the fake clock, with a fake media plane (`fake_media.rs`): the edge's
//! own answer when no agent can take the call (its SDP, its retransmission until the carrier's ACK, the
//! 64*T1 give-up), the caller's requests while it records, the media engine's reports (recording ended,
//! media time-out) and the rows they leave; and the same 64*T1 rule for a carrier on TCP.

use std::time::Duration;

use edge_media::{EndedBy, MediaEvent, VoicemailError, VoicemailOutcome};
use edge_store::{AgentStatus, CallRecord, CallStatus, HangupBy, Route};
use sip_core::message::{HeaderName, Message, Method};

use super::fake_media::{FakeMedia, DATA_DIR};
use super::harness::{addr, base_config, Harness, Mode, Routing, Sent, ACCOUNT, AGENT1, AGENT2, CARRIER, EDGE, S, SDP};
use super::peers::{header, CarrierCall};
use oneinbox_edge::transport::Link;

const DID: &str = "+14155550100";
const GREETING: &str = "Acme is closed, leave a message after the beep";

/// What the edge puts in its Contact (the harness's `Local`).
fn edge_contact() -> String {
    format!("<sip:edge@{EDGE}>")
}

/// Primary `p` at AGENT1 and fallback `f` at AGENT2, both disabled: the call goes to voicemail at once.
fn nobody_available() -> Routing {
    Routing::new()
        .agent("p", AGENT1, 5, AgentStatus::Disabled)
        .agent("f", AGENT2, 5, AgentStatus::Disabled)
        .number(DID, "p", Some("f"))
        .voicemail_message(GREETING)
}

/// Primary `p` at AGENT1 (active) with no fallback.
fn one_agent() -> Routing {
    Routing::new()
        .agent("p", AGENT1, 5, AgentStatus::Active)
        .number(DID, "p", None)
}

/// RFC 3261 13.3.1.4 / 17.2.1 on the harness's timers: when a 2xx sent at 0 is re-sent while no ACK comes
/// (T1, then doubling, capped at T2), up to 64*T1.
fn retransmit_schedule() -> Vec<Duration> {
    let cfg = base_config();
    let (t1, t2) = (cfg.sip.t1, cfg.sip.t2);
    let (mut at, mut every, mut out) = (Duration::ZERO, t1, Vec::new());
    loop {
        at += every;
        if at >= t1 * 64 {
            return out;
        }
        out.push(at);
        every = (every * 2).min(t2);
    }
}

fn t1() -> Duration {
    base_config().sip.t1
}

/// A carrier's INVITE for DID answered by voicemail: the call, the 200 as the carrier got it, and the
/// call's public id.
fn voicemail_call(h: &mut Harness) -> (CarrierCall, Sent, String) {
    let mut c = CarrierCall::new(CARRIER, DID);
    h.send(CARRIER, c.invite());
    let (prov, ok) = h.final_response(CARRIER, S);
    assert_eq!(ok.msg.status(), Some(200), "voicemail answers: {:?}", ok.msg);
    assert_eq!(prov, [100], "100 Trying, then the answer");
    c.answered(&ok.msg);
    let id = public_id(h, &c.call_id);
    (c, ok, id)
}

/// The public id (`call_...`) of the call whose carrier leg has `sip_call_id`, letting fake time run for
/// its first record (a live call's record is queued a moment after it changes).
fn public_id(h: &mut Harness, sip_call_id: &str) -> String {
    let until = h.now + Duration::from_secs(1);
    h.run_until(until, |h| h.record_by_sip_call_id(sip_call_id).is_some());
    h.record_by_sip_call_id(sip_call_id)
        .map(|r| r.id)
        .expect("a record of the call")
}

/// The record of call `id` after fake time ran `wait` at most for it to be final.
fn ended(h: &mut Harness, id: &str) -> CallRecord {
    h.final_record(id, Duration::from_secs(1))
}

/// A BYE the edge sent in the carrier's dialog of `c` (answered with `ok`).
fn assert_bye_in_carrier_dialog(bye: &Message, c: &CarrierCall, ok: &Message) {
    assert_eq!(bye.method(), Some(&Method::Bye));
    assert_eq!(bye.call_id().unwrap(), c.call_id, "the carrier's Call-ID");
    assert_eq!(
        bye.request_uri_raw(),
        Some("sip:+12125550000@192.0.2.10:5060"),
        "to the carrier's Contact"
    );
    assert_eq!(
        bye.to().unwrap().tag(),
        Some(c.from_tag.as_str()),
        "To: the carrier's tag"
    );
    assert_eq!(
        bye.from().unwrap().tag(),
        ok.to().unwrap().tag(),
        "From: the tag of the edge's 200"
    );
    let cseq = bye.cseq().unwrap();
    assert_eq!(cseq.method, Method::Bye);
}

/// Nothing of the call is left: no call, no relay, no agent count, no recording held.
fn assert_released(h: &Harness, media: &FakeMedia) {
    assert_eq!(h.ep.calls.active(), 0, "no call left");
    assert_eq!(media.live_relays(), 0, "every relay released");
    for a in ["p", "f"] {
        assert_eq!(h.ep.calls.agent_load(a), 0, "agent {a} released");
    }
    for v in media.voicemails() {
        assert!(v.dropped, "the recording of {} is let go", v.call_id);
    }
}

/// The 2xx retransmissions (after the first 200, at 0) the carrier got, each the same bytes as `ok`.
fn retransmissions(h: &Harness, to: &str, ok: &Sent) -> Vec<Duration> {
    h.log
        .iter()
        .filter(|s| s.to == addr(to) && s.msg.status() == Some(200) && s.at > ok.at)
        .filter(|s| s.msg.cseq().is_ok_and(|c| c.method == Method::Invite && c.seq == 1))
        .map(|s| {
            assert_eq!(s.msg.bytes(), ok.msg.bytes(), "the same 2xx, byte for byte");
            s.at
        })
        .collect()
}

fn ok_outcome(id: &str, ended_by: EndedBy, duration_ms: u64) -> MediaEvent {
    MediaEvent::VoicemailEnded {
        call_id: id.into(),
        outcome: Ok(VoicemailOutcome {
            path: format!("{DATA_DIR}/voicemail/{id}.wav").into(),
            duration_ms,
            ended_by,
        }),
    }
}

/// Both agents unavailable: the edge answers 200 itself with the SDP answer the media plane gave for this
/// call (the number's greeting, the caller's offer as sent), and the record says in-progress, answered by
/// voicemail. The relay allocated for the call is let go (the edge is the media peer now), and the agents
/// never see an INVITE.
#[test]
fn unavailable_agents_get_the_voicemail_answer() {
    let (mut h, media) = Harness::with_media(nobody_available(), |_| {});
    let (_c, ok, id) = voicemail_call(&mut h);
    assert_eq!(ok.at, Duration::ZERO, "answered at once: both agents are skipped");

    let vms = media.voicemails();
    assert_eq!(vms.len(), 1, "one recording started");
    let vm = &vms[0];
    assert_eq!(vm.call_id, id, "started for this call's public id");
    assert_eq!(vm.offer.as_ref(), SDP.as_bytes(), "the caller's own offer");
    assert_eq!(vm.greeting.as_deref(), Some(GREETING), "the number's voicemail_message");
    assert_eq!(vm.stops, 0, "still recording");

    let m = &ok.msg;
    assert_eq!(
        m.body(),
        FakeMedia::voicemail_answer(&id).as_bytes(),
        "the voicemail SDP"
    );
    assert_eq!(m.content_type(), Some("application/sdp"));
    assert!(m.to().unwrap().tag().is_some(), "a To tag: the dialog is set up");
    assert_eq!(m.header(&HeaderName::Contact), Some(edge_contact().as_str()));
    assert_eq!(m.cseq().unwrap().method, Method::Invite);

    assert_eq!(media.allocated(), std::slice::from_ref(&id), "one relay, for this call");
    assert_eq!(media.live_relays(), 0, "voicemail needs no relay");
    assert!(
        h.take(AGENT1).is_empty() && h.take(AGENT2).is_empty(),
        "disabled agents get nothing"
    );

    let rec = h.wait_status(&id, CallStatus::InProgress, Duration::from_secs(1));
    assert_eq!(rec.answered_by, Some(Route::Voicemail));
    assert!(rec.answered_at_ms.is_some());
    assert!(rec.ended_at_ms.is_none(), "still recording");
    let last = rec.hops.last().expect("hops");
    assert_eq!(last.route, Route::Voicemail);
    assert_eq!(last.sip_status, Some(200));
    assert_eq!(last.outcome, "answered");
    assert!(
        rec.hops[..rec.hops.len() - 1]
            .iter()
            .all(|hop| hop.route != Route::Voicemail && hop.sip_status.is_none()),
        "the agents before it were skipped: {:?}",
        rec.hops
    );
    assert_eq!(h.ep.calls.pending_voicemails(), 1);
    assert_eq!(h.ep.calls.active(), 1);
}

/// Agents that refuse (486 then 480) lead to voicemail too; their legs are over and their counts released
/// before the edge answers.
#[test]
fn refusing_agents_end_in_voicemail() {
    let routing = Routing::new()
        .agent("p", AGENT1, 5, AgentStatus::Active)
        .agent("f", AGENT2, 5, AgentStatus::Active)
        .number(DID, "p", Some("f"));
    let (mut h, media) = Harness::with_media(routing, |_| {});
    h.agent(AGENT1, Mode::Reject(486));
    h.agent(AGENT2, Mode::Reject(480));
    let (_c, ok, id) = voicemail_call(&mut h);
    assert_eq!(ok.msg.body(), FakeMedia::voicemail_answer(&id).as_bytes());
    assert!(h.got(AGENT1, Method::Invite, Duration::ZERO), "the primary was tried");
    assert!(h.got(AGENT2, Method::Invite, Duration::ZERO), "the fallback was tried");
    assert_eq!(h.ep.calls.agent_load("p"), 0);
    assert_eq!(h.ep.calls.agent_load("f"), 0);
    assert_eq!(
        media.voicemails()[0].greeting,
        None,
        "no greeting set: the operator's default"
    );
    let rec = h.wait_status(&id, CallStatus::InProgress, Duration::from_secs(1));
    let hops: Vec<_> = rec.hops.iter().map(|x| (x.route, x.sip_status)).collect();
    assert_eq!(
        hops,
        [
            (Route::Primary, Some(486)),
            (Route::Fallback, Some(480)),
            (Route::Voicemail, Some(200))
        ]
    );
    assert_eq!(rec.answered_by, Some(Route::Voicemail));
    assert_eq!(media.live_relays(), 0);
}

/// The voicemail 2xx is re-sent at T1, 3*T1, 7*T1 (intervals T1, 2*T1, 4*T1) until the carrier's ACK,
/// then never again, and the call goes on recording.
#[test]
fn voicemail_answer_is_retransmitted_until_the_ack() {
    let (mut h, media) = Harness::with_media(nobody_available(), |_| {});
    let (c, ok, id) = voicemail_call(&mut h);
    let sched = retransmit_schedule();
    // Up to just past the third retransmission.
    h.advance(sched[2] + Duration::from_millis(100));
    assert_eq!(retransmissions(&h, CARRIER, &ok), sched[..3]);
    assert_eq!(sched[..3], [t1(), t1() * 3, t1() * 7], "T1, 2*T1, 4*T1 apart");
    h.take(CARRIER);
    h.send(CARRIER, c.ack(&ok.msg));
    h.advance(Duration::from_secs(60));
    let after: Vec<_> = h.take(CARRIER).into_iter().map(|s| s.msg).collect();
    assert!(after.is_empty(), "nothing after the ACK: {after:?}");
    assert_eq!(h.ep.calls.active(), 1, "still recording past 64*T1");
    assert_eq!(media.voicemails()[0].stops, 0);
    let rec = h.record(&id).expect("record");
    assert_eq!(rec.status, CallStatus::InProgress);
}

/// No ACK over UDP: the 2xx is re-sent with intervals doubling up to T2 for 64*T1, then at exactly
/// 64*T1 the edge sends BYE in the carrier's dialog, stops the recording, and records the call as failed.
#[test]
fn voicemail_never_acknowledged_is_hung_up_at_64_t1() {
    let (mut h, media) = Harness::with_media(nobody_available(), |_| {});
    let (c, ok, id) = voicemail_call(&mut h);
    let bye = h
        .try_expect(CARRIER, Method::Bye, t1() * 80)
        .expect("a BYE to the carrier");
    assert_eq!(bye.at, t1() * 64, "RFC 3261 13.3.1.4: BYE at 64*T1 after the 2xx");
    assert_eq!(bye.link, Link::Udp);
    assert_bye_in_carrier_dialog(&bye.msg, &c, &ok.msg);
    let sched = retransmit_schedule();
    assert_eq!(
        sched.iter().map(|d| d.as_millis() as u64).collect::<Vec<_>>(),
        [500, 1500, 3500, 7500, 11500, 15500, 19500, 23500, 27500, 31500],
        "the harness's T1 = 500 ms, T2 = 4 s"
    );
    assert_eq!(retransmissions(&h, CARRIER, &ok), sched);

    let rec = ended(&mut h, &id);
    assert_eq!(rec.status, CallStatus::Failed);
    assert_eq!(rec.end_reason.as_deref(), Some("carrier never acknowledged the answer"));
    assert_eq!(rec.hangup_by, Some(HangupBy::Edge));
    assert_eq!(rec.answered_by, Some(Route::Voicemail));
    assert_eq!(media.voicemails()[0].stops, 1, "the recording is told to stop");
    assert_released(&h, &media);

    // Nothing more: no 2xx after the BYE, no second BYE.
    h.send(CARRIER, c.ok(&bye.msg, None));
    h.advance(Duration::from_secs(60));
    let after: Vec<_> = h.take(CARRIER).into_iter().map(|s| s.msg).collect();
    assert!(after.is_empty(), "nothing after the BYE: {after:?}");
}

/// The caller hangs up while recording: 200 to its BYE, no BYE from the edge, the recording is told to
/// stop, and the call is completed, hung up by the caller. The recording's report (ended by hangup) then
/// stores the voicemail row.
#[test]
fn caller_bye_stops_the_recording() {
    let (mut h, media) = Harness::with_media(nobody_available(), |_| {});
    let (mut c, ok, id) = voicemail_call(&mut h);
    h.send(CARRIER, c.ack(&ok.msg));
    h.advance(Duration::from_secs(9));
    h.take(CARRIER);
    let bye = c.in_dialog("BYE", false);
    h.send(CARRIER, bye);
    let got = h.take(CARRIER);
    assert_eq!(got.len(), 1, "one answer, no BYE of the edge's: {got:?}");
    let r = &got[0].msg;
    assert_eq!(r.status(), Some(200));
    assert_eq!(r.cseq().unwrap().method, Method::Bye);
    assert_eq!(r.call_id().unwrap(), c.call_id);
    assert_eq!(media.voicemails()[0].stops, 1, "the recording was stopped");

    let rec = ended(&mut h, &id);
    assert_eq!(rec.status, CallStatus::Completed);
    assert_eq!(rec.hangup_by, Some(HangupBy::Caller));
    assert_eq!(rec.end_reason.as_deref(), Some("caller hung up"));
    assert_eq!(rec.answered_by, Some(Route::Voicemail));
    assert_released(&h, &media);
    assert!(h.voicemails.is_empty(), "no row before the recording reports");
    assert_eq!(
        h.ep.calls.pending_voicemails(),
        1,
        "the recording is still being stored"
    );

    h.media_event(ok_outcome(&id, EndedBy::Hangup, 8_700));
    assert_eq!(h.voicemails.len(), 1);
    let vm = &h.voicemails[0];
    assert_eq!(vm.call_id, id);
    assert_eq!(vm.ended_by, "hangup");
    assert_eq!(vm.duration_ms, 8_700);
    assert_eq!(h.ep.calls.pending_voicemails(), 0);
    assert!(h.take(CARRIER).is_empty(), "the ended call gets no BYE");
}

/// A re-INVITE (session refresh) from the caller during voicemail gets 200 with the same SDP answer and
/// the edge's Contact; an INFO gets a bare 200. Neither reaches an agent or starts a second recording.
#[test]
fn reinvite_during_voicemail_gets_the_same_answer() {
    let (mut h, media) = Harness::with_media(nobody_available(), |_| {});
    let (mut c, ok, id) = voicemail_call(&mut h);
    h.send(CARRIER, c.ack(&ok.msg));
    h.advance(Duration::from_secs(5));
    h.take(CARRIER);

    let reinvite = c.in_dialog("INVITE", true);
    h.send(CARRIER, reinvite);
    let (_, r) = h.final_response(CARRIER, Duration::ZERO);
    let r = r.msg;
    assert_eq!(r.status(), Some(200));
    let cseq = r.cseq().unwrap();
    assert_eq!((cseq.seq, cseq.method), (2, Method::Invite), "the re-INVITE's answer");
    assert_eq!(r.body(), ok.msg.body(), "the same SDP answer");
    assert_eq!(r.body(), FakeMedia::voicemail_answer(&id).as_bytes());
    assert_eq!(r.content_type(), Some("application/sdp"));
    assert_eq!(r.header(&HeaderName::Contact), Some(edge_contact().as_str()));
    assert_eq!(r.to().unwrap().tag(), ok.msg.to().unwrap().tag(), "in the same dialog");

    let info = c.in_dialog("INFO", false);
    h.send(CARRIER, info);
    let r = h.recv(CARRIER, Duration::ZERO).expect("an answer to INFO").msg;
    assert_eq!(r.status(), Some(200));
    assert_eq!(r.cseq().unwrap().method, Method::Info);
    assert!(r.body().is_empty());

    assert_eq!(media.voicemails().len(), 1, "no second recording");
    assert_eq!(media.voicemails()[0].stops, 0, "still recording");
    assert!(h.take(AGENT1).is_empty() && h.take(AGENT2).is_empty());
    assert_eq!(h.ep.calls.active(), 1);
    assert_eq!(h.record(&id).expect("record").status, CallStatus::InProgress);
}

/// The recording ends by itself (`#`, silence, the length limit): the edge sends BYE in the carrier's
/// dialog at that moment, the call is completed and hung up by the edge, and one voicemail row is stored
/// with the caller, the DID, the duration, the word for how it ended and the path under the data dir.
#[test]
fn voicemail_ended_by_the_recording_hangs_up_and_stores_the_message() {
    for (ended_by, word) in [
        (EndedBy::DtmfHash, "dtmf-hash"),
        (EndedBy::Silence, "silence"),
        (EndedBy::MaxLength, "max-length"),
    ] {
        let routing = nobody_available();
        let number_id = routing.number_id(DID);
        let (mut h, media) = Harness::with_media(routing, |_| {});
        let (c, ok, id) = voicemail_call(&mut h);
        h.send(CARRIER, c.ack(&ok.msg));
        h.advance(Duration::from_secs(12));
        h.take(CARRIER);

        let at = h.elapsed();
        h.media_event(ok_outcome(&id, ended_by, 11_480));
        let bye = h.recv(CARRIER, Duration::ZERO).expect("a BYE at once");
        assert_eq!(bye.at, at, "{word}: at once");
        assert_bye_in_carrier_dialog(&bye.msg, &c, &ok.msg);
        h.send(CARRIER, c.ok(&bye.msg, None));

        let rec = ended(&mut h, &id);
        assert_eq!(rec.status, CallStatus::Completed, "{word}");
        assert_eq!(rec.hangup_by, Some(HangupBy::Edge), "{word}");
        assert_eq!(rec.end_reason.as_deref(), Some("voicemail recorded"), "{word}");
        assert_eq!(rec.answered_by, Some(Route::Voicemail));

        assert_eq!(h.voicemails.len(), 1, "{word}: one row");
        let vm = &h.voicemails[0];
        assert!(vm.id.starts_with("vm_"), "{}", vm.id);
        assert_eq!(vm.account_id, ACCOUNT);
        assert_eq!(vm.call_id, id);
        assert_eq!(vm.phone_number_id.as_deref(), Some(number_id.as_str()));
        assert_eq!(vm.caller, "+12125550000");
        assert_eq!(vm.to, DID);
        assert_eq!(vm.duration_ms, 11_480);
        assert_eq!(vm.ended_by, word);
        assert_eq!(
            vm.recording_path,
            format!("voicemail/{id}.wav"),
            "relative to the data dir"
        );
        assert_eq!(h.ep.calls.pending_voicemails(), 0);
        assert_released(&h, &media);

        h.advance(Duration::from_secs(60));
        assert!(h.take(CARRIER).is_empty(), "{word}: one BYE, answered, nothing more");
    }
}

/// A recording that could not be stored: no row, but the call still ends with BYE (the edge hung up).
#[test]
fn failed_recording_stores_no_row_and_still_hangs_up() {
    let (mut h, media) = Harness::with_media(nobody_available(), |_| {});
    let (c, ok, id) = voicemail_call(&mut h);
    h.send(CARRIER, c.ack(&ok.msg));
    h.take(CARRIER);
    h.media_event(MediaEvent::VoicemailEnded {
        call_id: id.as_str().into(),
        outcome: Err(std::sync::Arc::new(VoicemailError::Io(std::io::Error::other(
            "disk full",
        )))),
    });
    let bye = h.recv(CARRIER, Duration::ZERO).expect("a BYE");
    assert_bye_in_carrier_dialog(&bye.msg, &c, &ok.msg);
    let rec = ended(&mut h, &id);
    assert_eq!(rec.status, CallStatus::Completed);
    assert_eq!(rec.hangup_by, Some(HangupBy::Edge));
    assert!(h.voicemails.is_empty(), "no row for a recording that was not stored");
    assert_eq!(h.ep.calls.pending_voicemails(), 0);
    assert_released(&h, &media);
}

/// The recording's report comes after the call already ended (the caller hung up, or 64*T1 without ACK):
/// the row is stored once, the ended call is not hung up again nor its record rewritten, and a repeated
/// report adds nothing.
#[test]
fn voicemail_ended_after_the_call_ended_stores_the_row_once() {
    let (mut h, media) = Harness::with_media(nobody_available(), |_| {});
    let (mut c, ok, id) = voicemail_call(&mut h);
    h.send(CARRIER, c.ack(&ok.msg));
    h.advance(Duration::from_secs(3));
    let bye = c.in_dialog("BYE", false);
    h.send(CARRIER, bye);
    let rec = ended(&mut h, &id);
    assert_eq!(rec.hangup_by, Some(HangupBy::Caller));
    h.take(CARRIER);
    let records = h.records.len();

    h.advance(Duration::from_millis(250));
    h.media_event(ok_outcome(&id, EndedBy::Hangup, 2_900));
    h.media_event(ok_outcome(&id, EndedBy::Hangup, 2_900));
    assert_eq!(h.voicemails.len(), 1, "one row: {:?}", h.voicemails);
    let vm = &h.voicemails[0];
    assert_eq!(vm.call_id, id);
    assert_eq!(vm.caller, "+12125550000");
    assert_eq!(vm.to, DID);
    assert_eq!(vm.ended_by, "hangup");
    assert_eq!(vm.duration_ms, 2_900);
    assert_eq!(vm.recording_path, format!("voicemail/{id}.wav"));
    assert!(h.take(CARRIER).is_empty(), "the ended call gets no BYE");
    h.advance(Duration::from_secs(1));
    assert_eq!(h.records.len(), records, "the ended call's record is not written again");
    assert_eq!(h.record(&id).expect("record").hangup_by, Some(HangupBy::Caller));
    assert_released(&h, &media);

    // The same after the 64*T1 give-up.
    let (mut h, media) = Harness::with_media(nobody_available(), |_| {});
    let (_c, _ok, id) = voicemail_call(&mut h);
    let rec = h.final_record(&id, t1() * 80);
    assert_eq!(rec.status, CallStatus::Failed);
    h.take(CARRIER);
    h.media_event(ok_outcome(&id, EndedBy::Hangup, 31_000));
    h.media_event(ok_outcome(&id, EndedBy::Hangup, 31_000));
    assert_eq!(h.voicemails.len(), 1);
    assert_eq!(h.voicemails[0].call_id, id);
    let requests: Vec<_> = h.take(CARRIER).into_iter().filter(|s| s.msg.is_request()).collect();
    assert!(requests.is_empty(), "no second BYE: {requests:?}");
    assert_released(&h, &media);
}

/// The media plane cannot start voicemail: the caller gets 503 with Retry-After (the carrier tries its
/// next origination URI) and the relay is released.
#[test]
fn voicemail_that_cannot_start_is_503() {
    let (mut h, media) = Harness::with_media(nobody_available(), |_| {});
    media.refuse_voicemail();
    let c = CarrierCall::new(CARRIER, DID);
    h.send(CARRIER, c.invite());
    let (_, fin) = h.final_response(CARRIER, S);
    assert_eq!(fin.msg.status(), Some(503));
    assert!(fin.msg.header(&HeaderName::RetryAfter).is_some());
    assert!(media.voicemails().is_empty());
    assert_eq!(media.allocated().len(), 1);
    let rec = h.record_by_sip_call_id(&c.call_id).expect("record");
    assert!(rec.ended_at_ms.is_some());
    assert_ne!(rec.answered_by, Some(Route::Voicemail));
    assert_released(&h, &media);
}

/// An agent-answered call whose relay the media engine reports dead (`MediaEvent::Timeout`): BYE to the
/// agent with `Reason: SIP;cause=408;text="media timeout"`, BYE to the carrier, the record completed
/// with "media timeout: ..." and hung up by the edge, and the relay released. A repeated report does
/// nothing.
#[test]
fn media_timeout_hangs_up_both_legs() {
    let (mut h, media) = Harness::with_media(one_agent(), |_| {});
    h.agent(AGENT1, Mode::Answer);
    let mut c = CarrierCall::new(CARRIER, DID);
    h.send(CARRIER, c.invite());
    let (_, ok) = h.final_response(CARRIER, S);
    assert_eq!(ok.msg.status(), Some(200));
    assert!(
        ok.msg.body().ends_with(b"a=x-anchored:B\r\n"),
        "the agent's answer anchored on the relay"
    );
    c.answered(&ok.msg);
    h.send(CARRIER, c.ack(&ok.msg));
    let inv = h.expect(AGENT1, Method::Invite).msg;
    h.take(AGENT1);
    h.take(CARRIER);
    let id = public_id(&mut h, &c.call_id);
    assert_eq!(media.allocated(), std::slice::from_ref(&id));
    assert_eq!(media.live_relays(), 1, "the relay lives while the call does");
    assert_eq!(h.ep.calls.agent_load("p"), 1);

    h.advance(Duration::from_secs(30));
    h.media_event(MediaEvent::Timeout {
        call_id: id.as_str().into(),
    });
    let at = h.elapsed();
    let agent_bye = h.recv(AGENT1, Duration::ZERO).expect("a BYE to the agent");
    assert_eq!(agent_bye.msg.method(), Some(&Method::Bye));
    assert_eq!(agent_bye.at, at, "at once");
    assert_eq!(
        agent_bye.msg.call_id().unwrap(),
        inv.call_id().unwrap(),
        "in the agent's dialog"
    );
    assert_eq!(
        header(&agent_bye.msg, "Reason").as_deref(),
        Some("SIP;cause=408;text=\"media timeout\"")
    );
    let carrier_bye = h.recv(CARRIER, Duration::ZERO).expect("a BYE to the carrier");
    assert_eq!(carrier_bye.at, at);
    assert_bye_in_carrier_dialog(&carrier_bye.msg, &c, &ok.msg);

    let rec = ended(&mut h, &id);
    assert_eq!(rec.status, CallStatus::Completed);
    assert_eq!(rec.hangup_by, Some(HangupBy::Edge));
    let reason = rec.end_reason.clone().unwrap_or_default();
    assert!(reason.starts_with("media timeout: "), "{reason}");
    assert_eq!(rec.answered_by, Some(Route::Primary));
    assert_released(&h, &media);

    // A late second report: nothing (the scripted agent answered its BYE already).
    h.send(CARRIER, c.ok(&carrier_bye.msg, None));
    h.media_event(MediaEvent::Timeout {
        call_id: id.as_str().into(),
    });
    h.advance(Duration::from_secs(40));
    assert!(h.take(AGENT1).is_empty() && h.take(CARRIER).is_empty());
}

/// The brief: a media time-out ends the call "with BYE on both legs with Reason cause=408". The agent's
/// BYE carries it; this checks the carrier's too.
#[test]
fn media_timeout_bye_to_the_carrier_has_reason_408() {
    let (mut h, media) = Harness::with_media(one_agent(), |_| {});
    h.agent(AGENT1, Mode::Answer);
    let mut c = CarrierCall::new(CARRIER, DID);
    h.send(CARRIER, c.invite());
    let (_, ok) = h.final_response(CARRIER, S);
    c.answered(&ok.msg);
    h.send(CARRIER, c.ack(&ok.msg));
    h.take(CARRIER);
    let id = public_id(&mut h, &c.call_id);
    h.media_event(MediaEvent::Timeout {
        call_id: id.as_str().into(),
    });
    let bye = h.expect(CARRIER, Method::Bye).msg;
    assert_eq!(
        header(&bye, "Reason").as_deref(),
        Some("SIP;cause=408;text=\"media timeout\"")
    );
    assert_released(&h, &media);
}

/// An anchored call's relay is released when the call ends: by the caller's BYE once answered, by its
/// CANCEL while the agent rings.
#[test]
fn relays_are_released_however_the_call_ends() {
    let (mut h, media) = Harness::with_media(one_agent(), |_| {});
    // Caller BYE on an answered call.
    h.agent(AGENT1, Mode::Answer);
    let mut c = CarrierCall::new(CARRIER, DID);
    h.send(CARRIER, c.invite());
    let (_, ok) = h.final_response(CARRIER, S);
    c.answered(&ok.msg);
    h.send(CARRIER, c.ack(&ok.msg));
    assert_eq!(media.live_relays(), 1);
    let bye = c.in_dialog("BYE", false);
    h.send(CARRIER, bye);
    assert!(h.got(AGENT1, Method::Bye, Duration::ZERO));
    assert_released(&h, &media);

    // CANCEL while the agent rings.
    h.agent(AGENT1, Mode::RingForever);
    let c = CarrierCall::new(CARRIER, DID);
    h.send(CARRIER, c.invite());
    assert_eq!(media.live_relays(), 1);
    h.send(CARRIER, c.cancel());
    let (_, fin) = h.final_response(CARRIER, S);
    assert_eq!(fin.msg.status(), Some(487));
    h.send(CARRIER, c.ack(&fin.msg));
    assert_released(&h, &media);
    assert_eq!(media.allocated().len(), 2);
}

// --- A carrier on TCP ---

const TCP_CONN: u64 = 7;

/// `c`'s INVITE with a TCP Via, as a carrier sends it on a TCP connection.
fn over_tcp(msg: &str) -> String {
    msg.replace("SIP/2.0/UDP", "SIP/2.0/TCP")
}

/// An agent-answered call from a carrier on TCP connection [`TCP_CONN`]: the call and the 200.
fn tcp_answered_call(h: &mut Harness) -> (CarrierCall, Sent) {
    h.agent(AGENT1, Mode::Answer);
    let mut c = CarrierCall::new(CARRIER, DID);
    h.send_tcp(CARRIER, TCP_CONN, over_tcp(&c.invite()));
    let (_, ok) = h.final_response(CARRIER, S);
    assert_eq!(ok.msg.status(), Some(200));
    assert_eq!(
        ok.link,
        Link::Tcp(TCP_CONN),
        "the answer leaves on the carrier's connection"
    );
    c.answered(&ok.msg);
    (c, ok)
}

/// Control for the two tests below: a TCP carrier that ACKs keeps its call (no BYE, nothing re-sent after
/// the ACK) well past 64*T1.
#[test]
fn tcp_carrier_that_acks_keeps_the_call() {
    let (mut h, media) = Harness::with_media(one_agent(), |_| {});
    let (c, ok) = tcp_answered_call(&mut h);
    h.send_tcp(CARRIER, TCP_CONN, over_tcp(&c.ack(&ok.msg)));
    h.take(CARRIER);
    h.advance(t1() * 200);
    let after: Vec<_> = h.take(CARRIER).into_iter().map(|s| s.msg).collect();
    assert!(after.is_empty(), "nothing after the ACK: {after:?}");
    assert!(!h.got(AGENT1, Method::Bye, Duration::ZERO));
    assert_eq!(h.ep.calls.active(), 1);
    assert_eq!(media.live_relays(), 1);
}

/// RFC 3261 13.3.1.4 whatever the transport: a carrier on TCP that never ACKs the 2xx is hung up at
/// exactly 64*T1 after it (BYE on its connection and to the agent), recorded as failed.
#[test]
fn tcp_carrier_never_acknowledging_is_hung_up_at_64_t1() {
    let (mut h, media) = Harness::with_media(one_agent(), |_| {});
    let (c, ok) = tcp_answered_call(&mut h);
    let id = public_id(&mut h, &c.call_id);
    let bye = h
        .try_expect(CARRIER, Method::Bye, t1() * 80)
        .expect("a BYE to the carrier");
    assert_eq!(bye.at, ok.at + t1() * 64, "BYE at 64*T1 after the 2xx");
    assert_eq!(bye.link, Link::Tcp(TCP_CONN), "on the carrier's connection");
    assert_bye_in_carrier_dialog(&bye.msg, &c, &ok.msg);
    let agent_bye = h.expect(AGENT1, Method::Bye);
    assert_eq!(agent_bye.at, bye.at, "the agent is hung up too");
    let rec = ended(&mut h, &id);
    assert_eq!(rec.status, CallStatus::Failed);
    assert_eq!(rec.end_reason.as_deref(), Some("carrier never acknowledged the answer"));
    assert_eq!(rec.hangup_by, Some(HangupBy::Edge));
    assert_released(&h, &media);
}

/// The same for voicemail answered to a TCP carrier: BYE at 64*T1 and the recording stopped.
#[test]
fn tcp_voicemail_never_acknowledged_is_hung_up_at_64_t1() {
    let (mut h, media) = Harness::with_media(nobody_available(), |_| {});
    let mut c = CarrierCall::new(CARRIER, DID);
    h.send_tcp(CARRIER, TCP_CONN, over_tcp(&c.invite()));
    let (_, ok) = h.final_response(CARRIER, S);
    assert_eq!(ok.msg.status(), Some(200));
    assert_eq!(ok.link, Link::Tcp(TCP_CONN));
    c.answered(&ok.msg);
    let id = media.voicemails()[0].call_id.clone();
    let bye = h
        .try_expect(CARRIER, Method::Bye, t1() * 80)
        .expect("a BYE to the carrier");
    assert_eq!(bye.at, ok.at + t1() * 64);
    assert_eq!(bye.link, Link::Tcp(TCP_CONN));
    assert_bye_in_carrier_dialog(&bye.msg, &c, &ok.msg);
    let rec = ended(&mut h, &id);
    assert_eq!(rec.status, CallStatus::Failed);
    assert_eq!(rec.end_reason.as_deref(), Some("carrier never acknowledged the answer"));
    assert_eq!(media.voicemails()[0].stops, 1);
    assert_released(&h, &media);
}
