//! `tests/outbound_calls.rs` on the fake clock: an agent's INVITE (trusted network or digest) -> a scripted
//! trunk that challenges (401/407), answers, refuses, rings or stays silent. Signalling only: the SDP
//! passes through untouched, so the socket test's media-anchoring assertions stay there; every other
//! assertion is kept. Calls through the API need the media engine (the edge's own offer), so here only
//! their refusals are checked.

use std::time::Duration;

use edge_store::{AgentStatus, CallStatus, HangupBy, OutboundTrunk, Provider, Route, Secret};
use sip_core::digest::{Algorithm, AuthHeader, AuthSession, AuthStep, DigestCredentials};
use sip_core::message::Method;

use super::harness::{
    Harness, Routing, TrunkAuth, TrunkGate, TrunkMode, AGENT1, AGENT_NET, EDGE, OUTSIDER, S, SDP, TRUNK, TRUNK_SDP,
};
use super::peers::{header, AgentUac};

const DID: &str = "+14155550100";
const DEST: &str = "+447700900123";

#[test]
fn agent_network_call_through_a_407_trunk() {
    let routing = Routing::new()
        .agent("sales", AGENT1, 5, AgentStatus::Active)
        .byo_number(DID, "sales", Provider::Telnyx, TRUNK, Some(("oneinbox", "s3cret-pass")));
    let mut h = Harness::new(routing, |_| {});
    h.trunk(
        TRUNK,
        TrunkMode::Answer,
        Some(TrunkAuth {
            username: "oneinbox".into(),
            password: "s3cret-pass".into(),
            header: AuthHeader::ProxyAuthorization,
            algorithm: Algorithm::Sha256,
        }),
    );

    let uac = AgentUac::new(AGENT_NET);
    h.send(AGENT_NET, uac.invite(DID, DEST, ""));
    let (prov, ok) = h.final_response(AGENT_NET, S);
    let ok = ok.msg;
    assert_eq!(ok.status(), Some(200), "{ok:?}");
    assert!(prov.contains(&100) && prov.contains(&180), "{prov:?}");
    // Signalling only: the trunk's SDP reaches the agent as the trunk wrote it.
    assert_eq!(ok.body(), TRUNK_SDP.as_bytes());
    h.send(AGENT_NET, uac.ack(&ok, DID));

    // What the trunk saw: a challenge answered with Proxy-Authorization on the same Call-ID, CSeq + 1.
    let first = h.expect(TRUNK, Method::Invite).msg;
    let second = h.expect(TRUNK, Method::Invite).msg;
    assert_eq!(first.call_id().unwrap(), second.call_id().unwrap());
    assert_eq!(second.cseq().unwrap().seq, first.cseq().unwrap().seq + 1);
    assert!(header(&first, "Proxy-Authorization").is_none());
    let auth = header(&second, "Proxy-Authorization").unwrap();
    assert!(
        auth.contains("algorithm=SHA-256") && auth.contains("qop=auth") && auth.contains("nc=00000001"),
        "{auth}"
    );
    assert_eq!(second.request_uri_raw().unwrap(), format!("sip:{DEST}@{TRUNK}"));
    assert_eq!(second.from().unwrap().uri.user().unwrap(), DID, "caller ID is the DID");
    assert_eq!(second.body(), SDP.as_bytes(), "the agent's offer, untouched");
    h.expect(TRUNK, Method::Ack);
    assert_eq!(h.ep.calls.agent_load("sales"), 1, "the calling agent counts the call");

    // The agent hangs up: the trunk gets BYE; the record says who.
    h.send(AGENT_NET, uac.bye(&ok, DID));
    h.expect(TRUNK, Method::Bye);
    let call = h.record_by_sip_call_id(&uac.call_id).expect("a record");
    assert!(call.ended_at_ms.is_some());
    assert_eq!(call.direction, "outbound");
    assert_eq!(call.status, CallStatus::Completed);
    assert_eq!(call.from, DID);
    assert_eq!(call.to, DEST);
    assert_eq!(call.agent_id.as_deref(), Some("sales"));
    assert_eq!(call.answered_by, Some(Route::Trunk));
    assert_eq!(call.hangup_by, Some(HangupBy::Caller));
    assert_eq!(call.hops.len(), 2, "{:?}", call.hops);
    assert_eq!(call.hops[0].sip_status, Some(407));
    assert_eq!(call.hops[1].outcome, "answered");
    assert_eq!(h.ep.calls.agent_load("sales"), 0);
}

/// The same with a 401 (Authorization, MD5), as Twilio challenges.
#[test]
fn agent_call_through_a_401_trunk() {
    let routing = Routing::new().agent("bot", AGENT1, 5, AgentStatus::Active).byo_number(
        DID,
        "bot",
        Provider::Twilio,
        TRUNK,
        Some(("AC-user", "twilio-pass")),
    );
    let mut h = Harness::new(routing, |_| {});
    h.trunk(
        TRUNK,
        TrunkMode::Answer,
        Some(TrunkAuth {
            username: "AC-user".into(),
            password: "twilio-pass".into(),
            header: AuthHeader::Authorization,
            algorithm: Algorithm::Md5,
        }),
    );
    let uac = AgentUac::new(AGENT_NET);
    h.send(AGENT_NET, uac.invite(DID, DEST, ""));
    let (_, ok) = h.final_response(AGENT_NET, S);
    assert_eq!(ok.msg.status(), Some(200));
    let first = h.expect(TRUNK, Method::Invite).msg;
    let second = h.expect(TRUNK, Method::Invite).msg;
    assert!(header(&first, "Authorization").is_none());
    assert!(header(&second, "Authorization")
        .unwrap()
        .contains("username=\"AC-user\""));
    let rec = h.record_by_sip_call_id(&uac.call_id);
    assert!(rec.is_none() || rec.is_some_and(|r| r.ended_at_ms.is_none()));
    h.advance(Duration::from_millis(20));
    let live = h.record_by_sip_call_id(&uac.call_id).expect("a live record");
    assert_eq!(live.status, CallStatus::InProgress);
    assert_eq!(live.answered_by, Some(Route::Trunk));
    assert_eq!(live.hops[0].sip_status, Some(401));
}

#[test]
fn agents_elsewhere_answer_a_digest_challenge() {
    let routing = Routing::new()
        .agent("remote", AGENT1, 5, AgentStatus::Active)
        .credentials("remote-agent", "correct horse")
        .byo_number(DID, "remote", Provider::Twilio, TRUNK, None);
    let mut h = Harness::new(routing, |_| {});
    h.trunk(TRUNK, TrunkMode::Answer, None);

    // OUTSIDER is neither a carrier nor an agent network: the edge challenges.
    let mut uac = AgentUac::new(OUTSIDER);
    h.send(OUTSIDER, uac.invite(DID, DEST, ""));
    let (_, challenge) = h.final_response(OUTSIDER, S);
    let challenge = challenge.msg;
    assert_eq!(challenge.status(), Some(407));
    h.send(OUTSIDER, uac.ack(&challenge, DID));

    // A wrong password is refused outright, not challenged forever.
    let uri = format!("sip:{DEST}@{EDGE}");
    let mut wrong = AuthSession::new(DigestCredentials::new("remote-agent", "battery staple"));
    let AuthStep::Retry {
        header_name,
        header_value,
        ..
    } = wrong.on_challenge(&challenge, "INVITE", &uri, SDP.as_bytes())
    else {
        panic!("challenge not answerable");
    };
    uac.cseq += 1;
    h.send(
        OUTSIDER,
        uac.invite(DID, DEST, &format!("{header_name}: {header_value}\r\n")),
    );
    let (_, refused) = h.final_response(OUTSIDER, S);
    assert_eq!(refused.msg.status(), Some(403));
    h.send(OUTSIDER, uac.ack(&refused.msg, DID));

    let mut right = AuthSession::new(DigestCredentials::new("remote-agent", "correct horse"));
    let AuthStep::Retry {
        header_name,
        header_value,
        ..
    } = right.on_challenge(&challenge, "INVITE", &uri, SDP.as_bytes())
    else {
        panic!("challenge not answerable");
    };
    uac.cseq += 1;
    h.send(
        OUTSIDER,
        uac.invite(DID, DEST, &format!("{header_name}: {header_value}\r\n")),
    );
    let (_, ok) = h.final_response(OUTSIDER, S);
    assert_eq!(ok.msg.status(), Some(200), "{:?}", ok.msg);
    h.send(OUTSIDER, uac.ack(&ok.msg, DID));
    let inv = h.expect(TRUNK, Method::Invite).msg;
    assert_eq!(inv.from().unwrap().uri.user().unwrap(), DID);
    h.send(OUTSIDER, uac.bye(&ok.msg, DID));
    h.expect(TRUNK, Method::Bye);
}

#[test]
fn caller_id_must_be_a_number_of_that_agent() {
    let routing = Routing::new()
        .agent("one", AGENT1, 5, AgentStatus::Active)
        .agent("two", AGENT1, 5, AgentStatus::Active)
        .credentials("two", "password-two")
        .byo_number(DID, "one", Provider::Twilio, TRUNK, None);
    let mut h = Harness::new(routing, |_| {});
    h.trunk(TRUNK, TrunkMode::Answer, None);

    // Agent two (authenticated) may not use agent one's number.
    let mut uac = AgentUac::new(OUTSIDER);
    h.send(OUTSIDER, uac.invite(DID, DEST, ""));
    let (_, challenge) = h.final_response(OUTSIDER, S);
    h.send(OUTSIDER, uac.ack(&challenge.msg, DID));
    let uri = format!("sip:{DEST}@{EDGE}");
    let mut s = AuthSession::new(DigestCredentials::new("two", "password-two"));
    let AuthStep::Retry {
        header_name,
        header_value,
        ..
    } = s.on_challenge(&challenge.msg, "INVITE", &uri, SDP.as_bytes())
    else {
        panic!()
    };
    uac.cseq += 1;
    h.send(
        OUTSIDER,
        uac.invite(DID, DEST, &format!("{header_name}: {header_value}\r\n")),
    );
    let (_, r) = h.final_response(OUTSIDER, S);
    assert_eq!(r.msg.status(), Some(403));
    let w = header(&r.msg, "Warning").unwrap();
    assert!(w.contains("assigned to agent one, not to two"), "{w}");

    // From a trusted network, a From that is not ours at all.
    let uac = AgentUac::new(AGENT_NET);
    h.send(AGENT_NET, uac.invite("+13125550199", DEST, ""));
    let (_, r) = h.final_response(AGENT_NET, S);
    assert_eq!(r.msg.status(), Some(403));
    assert!(header(&r.msg, "Warning").unwrap().contains("not a number served here"));
    assert!(!h.got(TRUNK, Method::Invite, Duration::from_millis(300)));
}

/// Each trunk failure as the record and the agent see it. The socket test places these calls through the
/// API; here the agent places them (same classification, `fail_outbound`), and the time-outs (2 s ring,
/// 400 ms setup) are checked to the millisecond.
#[test]
fn each_trunk_failure_reads_as_its_class() {
    /// Trunk behaviour, its digest, then the record's status, error code and words, and the agent's SIP code.
    type Case = (
        TrunkMode,
        Option<TrunkAuth>,
        CallStatus,
        &'static str,
        &'static str,
        u16,
    );
    let cases: Vec<Case> = vec![
        (
            TrunkMode::Answer,
            Some(TrunkAuth {
                username: "right".into(),
                password: "other-password".into(),
                header: AuthHeader::Authorization,
                algorithm: Algorithm::Md5,
            }),
            CallStatus::Failed,
            "trunk_auth_rejected",
            "trunk rejected the SIP credentials in provider_config",
            403,
        ),
        (
            TrunkMode::Reject(
                403,
                "Forbidden",
                Some("32205 Geo permission configuration is not permitting call"),
            ),
            None,
            CallStatus::Failed,
            "forbidden",
            "Voice > Settings > Geo Permissions",
            403,
        ),
        (
            TrunkMode::Reject(404, "Not Found", None),
            None,
            CallStatus::Failed,
            "invalid_destination",
            "not a valid destination",
            404,
        ),
        (
            TrunkMode::Reject(484, "Address Incomplete", None),
            None,
            CallStatus::Failed,
            "invalid_destination",
            "484 Address Incomplete",
            404,
        ),
        (
            TrunkMode::Reject(486, "Busy Here", None),
            None,
            CallStatus::Busy,
            "busy",
            "486 Busy Here",
            486,
        ),
        (
            TrunkMode::Reject(600, "Busy Everywhere", None),
            None,
            CallStatus::Busy,
            "busy",
            "600",
            600,
        ),
        (
            TrunkMode::Reject(480, "Temporarily Unavailable", None),
            None,
            CallStatus::NoAnswer,
            "no_answer",
            "did not answer",
            480,
        ),
        (
            TrunkMode::Ring,
            None,
            CallStatus::NoAnswer,
            "no_answer",
            "did not answer within 2 s",
            480,
        ),
        (
            TrunkMode::Reject(503, "Service Unavailable", None),
            None,
            CallStatus::Failed,
            "trunk_unavailable",
            "unavailable",
            503,
        ),
        (
            TrunkMode::Silent,
            None,
            CallStatus::Failed,
            "trunk_unavailable",
            "did not respond",
            503,
        ),
        (
            TrunkMode::Reject(403, "D35 Caller Origination Number is Invalid", None),
            None,
            CallStatus::Failed,
            "forbidden",
            "D35 Caller Origination Number is Invalid",
            403,
        ),
    ];
    for (i, (mode, auth, status, code, words, agent_code)) in cases.into_iter().enumerate() {
        let did = format!("+1415555{:04}", 2000 + i);
        // The Telnyx case (last) keeps Telnyx's own reason phrase.
        let provider = if words.starts_with("D35") {
            Provider::Telnyx
        } else {
            Provider::Twilio
        };
        let routing = Routing::new().agent("bot", AGENT1, 50, AgentStatus::Active).byo_number(
            &did,
            "bot",
            provider,
            TRUNK,
            Some(("right", "wrong-password")),
        );
        let mut h = Harness::new(routing, |_| {});
        h.trunk(TRUNK, mode, auth);
        let uac = AgentUac::new(AGENT_NET);
        h.send(AGENT_NET, uac.invite(&did, DEST, ""));
        let (_, fin) = h.final_response(AGENT_NET, Duration::from_secs(6));
        assert_eq!(fin.msg.status(), Some(agent_code), "case {i}: {:?}", fin.msg);
        match mode {
            TrunkMode::Ring => assert_eq!(fin.at, Duration::from_secs(2), "case {i}: ring time-out"),
            TrunkMode::Silent => assert_eq!(fin.at, Duration::from_millis(400), "case {i}: setup time-out"),
            _ => assert_eq!(fin.at, Duration::ZERO, "case {i}"),
        }
        let done = h.record_by_sip_call_id(&uac.call_id).expect("a record");
        assert!(done.ended_at_ms.is_some(), "case {i}: {done:?}");
        assert_eq!(done.status, status, "case {i}: {done:?}");
        let err = done.error.clone().expect("an error");
        assert_eq!(err.code, code, "case {i}: {done:?}");
        assert!(err.message.contains(words), "case {i}: {}", err.message);
        if words.starts_with("Voice") {
            assert!(err.message.contains("Twilio error 32205"), "{}", err.message);
        }
        // The agent is told why (the Warning's text is cut at a bounded length).
        let prefix = &err.message[..err.message.len().min(40)];
        assert!(
            header(&fin.msg, "Warning").is_some_and(|w| w.contains(prefix)),
            "case {i}: {:?}",
            header(&fin.msg, "Warning")
        );
        assert_eq!(h.ep.calls.agent_load("bot"), 0, "case {i}");
        h.advance(Duration::from_secs(300));
        assert_eq!(h.ep.calls.active(), 0, "case {i}");
        assert_eq!(h.ep.transactions(), 0, "case {i}: every transaction ends");
    }
}

/// `POST /v1/calls` refusals, answered by the engine before any SIP is sent (as `api_refusals_name_the_field`),
/// and, signalling only, the call itself refused for want of the media engine.
#[test]
fn api_refusals_name_the_field() {
    let routing = Routing::new()
        .agent("bot", AGENT1, 5, AgentStatus::Active)
        .agent("other", AGENT1, 5, AgentStatus::Active)
        .number(DID, "bot", None) // purchased, and no operator trunk configured
        .byo_number("+14155550199", "bot", Provider::Twilio, TRUNK, None);
    let mut h = Harness::new(routing, |_| {});
    let e = h.originate(DID, "12", "bot").unwrap_err();
    assert_eq!(e.http_status, 400, "{e}");
    assert_eq!(e.field.as_deref(), Some("to"));
    let e = h.originate(DID, DEST, "other").unwrap_err();
    assert_eq!(e.http_status, 400, "{e}");
    assert!(e.to_string().contains("assigned to agent bot"), "{e}");
    let e = h.originate(DID, DEST, "bot").unwrap_err();
    assert_eq!(e.http_status, 400, "{e}");
    assert!(e.to_string().contains("[[outbound.trunks]]"), "{e}");
    let e = h.originate("+14155550199", DEST, "bot").unwrap_err();
    assert_eq!(e.http_status, 503, "{e}");
    assert!(e.message.contains("media engine"), "{e}");
    assert!(h.take(TRUNK).is_empty(), "nothing sent");
    assert_eq!(h.ep.calls.active(), 0);
    assert_eq!(h.ep.calls.agent_load("bot"), 0);
}

/// Two calls per second on a trunk whose pacing line may be 700 ms long: the second call waits its slot
/// (500 ms, to the millisecond), the third is refused at once with the reason.
#[test]
fn pacing_spaces_calls_and_refuses_past_the_wait() {
    let routing = Routing::new().agent("bot", AGENT1, 50, AgentStatus::Active).byo_number(
        DID,
        "bot",
        Provider::Twilio,
        TRUNK,
        None,
    );
    let mut h = Harness::new(routing, |c| {
        c.outbound.twilio_cps = 2.0;
        c.outbound.max_pacing_wait = Duration::from_millis(700);
    });
    h.trunk(TRUNK, TrunkMode::Reject(486, "Busy Here", None), None);
    let uacs: Vec<AgentUac> = (0..3).map(|_| AgentUac::new(AGENT_NET)).collect();
    for u in &uacs {
        h.send(AGENT_NET, u.invite(DID, DEST, ""));
    }
    // The third would wait past the limit: refused at once, in words.
    let refused = h.record_by_sip_call_id(&uacs[2].call_id).expect("a record");
    let err = refused.error.expect("an error");
    assert_eq!(err.code, "trunk_pacing");
    assert!(err.message.contains("calls per second"), "{}", err.message);
    let first = h.expect(TRUNK, Method::Invite);
    let second = h.expect(TRUNK, Method::Invite);
    assert_eq!(first.at, Duration::ZERO);
    assert_eq!(second.at, Duration::from_millis(500), "paced");
    assert_ne!(first.msg.call_id().unwrap(), second.msg.call_id().unwrap());
    assert!(!h.got(TRUNK, Method::Invite, Duration::from_millis(700)));
}

// ---------- carriers' own rules for outbound calls (issue 19 item 6) ----------
//
// Each scripted trunk enforces one documented method the way its carrier does, and refuses an INVITE
// without it: Telnyx's `X-Telnyx-Username` on credential/FQDN connections (with digest), and on IP
// connections a tech prefix on the dialled number (else 407), an `X-Telnyx-Token` (else rejected) or
// `P-Charge-Info` with the number; Twilio's termination by IP access control list (no credentials).

/// An agent on the agent network calls DEST from DID through a BYO trunk `trunk` of `provider`, the trunk
/// scripted by `auth` and `gate`: the agent's final answer, the call's record and every INVITE the trunk saw.
fn carrier_call(
    provider: Provider,
    trunk: OutboundTrunk,
    auth: Option<TrunkAuth>,
    gate: Option<TrunkGate>,
) -> (
    sip_core::message::Message,
    edge_store::CallRecord,
    Vec<sip_core::message::Message>,
) {
    let routing = Routing::new()
        .agent("bot", AGENT1, 5, AgentStatus::Active)
        .byo_trunk(DID, "bot", provider, trunk);
    let mut h = Harness::new(routing, |_| {});
    h.trunk(TRUNK, TrunkMode::Answer, auth);
    if let Some(g) = gate {
        h.gate(TRUNK, g);
    }
    let uac = AgentUac::new(AGENT_NET);
    h.send(AGENT_NET, uac.invite(DID, DEST, ""));
    let (_, fin) = h.final_response(AGENT_NET, S);
    if fin.msg.status() == Some(200) {
        h.send(AGENT_NET, uac.ack(&fin.msg, DID));
    }
    h.advance(Duration::from_millis(20));
    let invites: Vec<_> = h
        .take(TRUNK)
        .into_iter()
        .map(|s| s.msg)
        .filter(|m| m.method() == Some(&Method::Invite))
        .collect();
    let rec = h.record_by_sip_call_id(&uac.call_id).expect("a record");
    (fin.msg, rec, invites)
}

fn trunk_with(f: impl FnOnce(&mut OutboundTrunk)) -> OutboundTrunk {
    let mut t = OutboundTrunk {
        trunk_address: TRUNK.into(),
        ..Default::default()
    };
    f(&mut t);
    t
}

const TOKEN: &str = "Chicagoqwhowg6ze2d7o";

/// Telnyx credential (or FQDN) connection: digest, and `X-Telnyx-Username: <auth_username>` on every INVITE
/// (the first one, before the challenge, too).
#[test]
fn telnyx_credential_connection_sends_x_telnyx_username() {
    let trunk = trunk_with(|t| {
        t.auth_username = Some("oneinbox".into());
        t.auth_password = Some(Secret::new("s3cret-pass"));
    });
    let auth = TrunkAuth {
        username: "oneinbox".into(),
        password: "s3cret-pass".into(),
        header: AuthHeader::ProxyAuthorization,
        algorithm: Algorithm::Md5,
    };
    let gate = TrunkGate {
        header: Some(("X-Telnyx-Username", "oneinbox".into())),
        user_prefix: None,
        refuse: (403, "Forbidden"),
    };
    let (fin, rec, invites) = carrier_call(Provider::Telnyx, trunk, Some(auth), Some(gate));
    assert_eq!(fin.status(), Some(200), "{fin:?}");
    assert_eq!(rec.status, CallStatus::InProgress, "{rec:?}");
    assert_eq!(invites.len(), 2, "challenged, then authorised");
    for inv in &invites {
        assert_eq!(header(inv, "X-Telnyx-Username").as_deref(), Some("oneinbox"));
        assert!(header(inv, "X-Telnyx-Token").is_none());
        assert!(header(inv, "P-Charge-Info").is_none());
    }
    assert!(header(&invites[1], "Proxy-Authorization").is_some());
}

/// Telnyx IP connection with token authentication: `X-Telnyx-Token` on the INVITE, no digest.
#[test]
fn telnyx_ip_connection_token() {
    let trunk = trunk_with(|t| t.ip_auth_token = Some(Secret::new(TOKEN)));
    let gate = TrunkGate {
        header: Some(("X-Telnyx-Token", TOKEN.into())),
        user_prefix: None,
        refuse: (403, "Forbidden"),
    };
    let (fin, rec, invites) = carrier_call(Provider::Telnyx, trunk, None, Some(gate));
    assert_eq!(fin.status(), Some(200), "{fin:?}");
    assert_eq!(rec.answered_by, Some(Route::Trunk));
    assert_eq!(invites.len(), 1);
    assert_eq!(header(&invites[0], "X-Telnyx-Token").as_deref(), Some(TOKEN));
    assert!(
        header(&invites[0], "X-Telnyx-Username").is_none(),
        "no username to send"
    );
    assert_eq!(invites[0].request_uri_raw().unwrap(), format!("sip:{DEST}@{TRUNK}"));
}

/// The same trunk when the number has no token: refused, and the error says what to set.
#[test]
fn telnyx_ip_connection_without_its_token_is_a_clear_error() {
    let gate = TrunkGate {
        header: Some(("X-Telnyx-Token", TOKEN.into())),
        user_prefix: None,
        refuse: (403, "Forbidden"),
    };
    let (fin, rec, invites) = carrier_call(Provider::Telnyx, trunk_with(|_| {}), None, Some(gate.clone()));
    assert_eq!(fin.status(), Some(403), "{fin:?}");
    assert_eq!(invites.len(), 1);
    let err = rec.error.expect("an error");
    assert_eq!((rec.status, err.code.as_str()), (CallStatus::Failed, "forbidden"));
    assert!(
        err.message
            .contains("needs provider_config.ip_auth_token (sent as X-Telnyx-Token)"),
        "{}",
        err.message
    );
    assert!(header(&fin, "Warning").is_some_and(|w| w.contains("403 Forbidden")));
    // A wrong token: the error points at the token that was sent.
    let wrong = trunk_with(|t| t.ip_auth_token = Some(Secret::new("another-token-123")));
    let (fin, rec, _) = carrier_call(Provider::Telnyx, wrong, None, Some(gate));
    assert_eq!(fin.status(), Some(403));
    let err = rec.error.expect("an error");
    assert!(
        err.message.contains("with provider_config.ip_auth_token: check it"),
        "{}",
        err.message
    );
}

/// Telnyx IP connection with tech-prefix authentication: `[tech_prefix][destination]`, the `+` dropped, in
/// the Request-URI and To.
#[test]
fn telnyx_ip_connection_tech_prefix() {
    let trunk = trunk_with(|t| t.tech_prefix = Some("1234".into()));
    let gate = TrunkGate {
        header: None,
        user_prefix: Some("1234".into()),
        refuse: (407, "Proxy Authentication Required"),
    };
    let (fin, rec, invites) = carrier_call(Provider::Telnyx, trunk, None, Some(gate));
    assert_eq!(fin.status(), Some(200), "{fin:?}");
    assert_eq!(rec.to, DEST, "the record keeps the number dialled");
    assert_eq!(invites.len(), 1);
    let digits = DEST.trim_start_matches('+');
    assert_eq!(
        invites[0].request_uri_raw().unwrap(),
        format!("sip:1234{digits}@{TRUNK}")
    );
    assert!(header(&invites[0], "To")
        .unwrap()
        .contains(&format!("sip:1234{digits}@")));
}

/// Without the prefix Telnyx answers 407 with nothing to authenticate with: the error says what to set.
#[test]
fn telnyx_ip_connection_without_its_tech_prefix_is_a_clear_error() {
    let gate = TrunkGate {
        header: None,
        user_prefix: Some("1234".into()),
        refuse: (407, "Proxy Authentication Required"),
    };
    let (fin, rec, invites) = carrier_call(Provider::Telnyx, trunk_with(|_| {}), None, Some(gate.clone()));
    assert_eq!(
        fin.status(),
        Some(403),
        "the agent cannot answer the trunk's challenge: {fin:?}"
    );
    assert_eq!(invites.len(), 1, "nothing to resend with");
    let err = rec.error.expect("an error");
    assert_eq!(err.code, "trunk_auth_rejected");
    assert!(
        err.message.contains("407 Proxy Authentication Required")
            && err.message.contains("tech_prefix or ip_auth_token it requires"),
        "{}",
        err.message
    );
    // A wrong prefix: the error names the prefix that was sent.
    let wrong = trunk_with(|t| t.tech_prefix = Some("9999".into()));
    let (_, rec, _) = carrier_call(Provider::Telnyx, wrong, None, Some(gate));
    let err = rec.error.expect("an error");
    assert!(
        err.message.contains("with provider_config.tech_prefix"),
        "{}",
        err.message
    );
}

/// Telnyx IP connection with P-Charge-Info authentication: the number, E.164, as a SIP URI.
#[test]
fn telnyx_ip_connection_p_charge_info() {
    let trunk = trunk_with(|t| t.p_charge_info = true);
    let gate = TrunkGate {
        header: Some(("P-Charge-Info", format!("<sip:{DID}@{TRUNK}>"))),
        user_prefix: None,
        refuse: (403, "Forbidden"),
    };
    let (fin, _, invites) = carrier_call(Provider::Telnyx, trunk, None, Some(gate));
    assert_eq!(fin.status(), Some(200), "{fin:?}");
    assert_eq!(invites.len(), 1);
}

/// Twilio termination by IP access control list: no credentials, no challenge, nothing of Telnyx's; a
/// refusal without credentials names the IP access control list. Twilio with a credential list (digest)
/// never gets Telnyx headers either.
#[test]
fn twilio_termination_by_ip_acl_or_credential_list() {
    let (fin, rec, invites) = carrier_call(Provider::Twilio, trunk_with(|_| {}), None, None);
    assert_eq!(fin.status(), Some(200), "{fin:?}");
    assert_eq!(rec.answered_by, Some(Route::Trunk));
    assert_eq!(invites.len(), 1);
    let text = String::from_utf8_lossy(invites[0].bytes()).to_ascii_lowercase();
    assert!(!text.contains("x-telnyx") && !text.contains("p-charge-info"), "{text}");

    let gate = TrunkGate {
        header: Some(("X-Never", "sent".into())),
        user_prefix: None,
        refuse: (403, "Forbidden"),
    };
    let (fin, rec, _) = carrier_call(Provider::Twilio, trunk_with(|_| {}), None, Some(gate));
    assert_eq!(fin.status(), Some(403));
    let err = rec.error.expect("an error");
    assert!(err.message.contains("IP Access Control List"), "{}", err.message);

    let creds = trunk_with(|t| {
        t.auth_username = Some("AC-user".into());
        t.auth_password = Some(Secret::new("twilio-pass"));
    });
    let auth = TrunkAuth {
        username: "AC-user".into(),
        password: "twilio-pass".into(),
        header: AuthHeader::Authorization,
        algorithm: Algorithm::Md5,
    };
    let (fin, _, invites) = carrier_call(Provider::Twilio, creds, Some(auth), None);
    assert_eq!(fin.status(), Some(200));
    assert_eq!(invites.len(), 2);
    assert!(invites.iter().all(|i| header(i, "X-Telnyx-Username").is_none()));
}
