//! Outbound calls through the API (`POST`/`DELETE /v1/calls`) against a fake call engine on
//! the other end of the command channel, agent SIP credentials, and integration trunks. Every
//! test runs on SQLite and on PostgreSQL.

mod common;

use common::Server;
use edge_api::{CallCommand, OriginateRefusal};
use edge_contract::AgentRefusal;
use edge_contract::TransferRefusal;
use edge_store::{now_ms, CallRecord, CallStatus, HangupBy, Hop, Provider, Route, Store};
use serde_json::{json, Value};
use sqlx::Row;
use std::collections::HashMap;
use std::sync::Arc;
use tokio::sync::mpsc;

/// The fake engine refuses calls to this number: the agent is at capacity (409).
const BUSY_TO: &str = "+15005550009";
/// The fake engine never answers calls to this number.
const SILENT_TO: &str = "+15005550010";
const TO: &str = "+15005550006";

/// What call control does at the API's boundary: creates a queued record (stored, as the
/// real engine does), keeps it live until hung up, and checks the account on hang-up.
fn fake_engine(store: Arc<Store>) -> mpsc::Sender<CallCommand> {
    let (tx, mut rx) = mpsc::channel(8);
    tokio::spawn(async move {
        let mut live: HashMap<String, CallRecord> = HashMap::new();
        let mut held = Vec::new();
        let mut n = 0u32;
        while let Some(cmd) = rx.recv().await {
            match cmd {
                CallCommand::Originate { req, reply } => {
                    if req.to == BUSY_TO {
                        let _ = reply.send(Err(OriginateRefusal::Agent(AgentRefusal::AtCapacity {
                            agent_id: req.agent_id,
                            max_concurrent_calls: 2,
                        })));
                        continue;
                    }
                    if req.to == SILENT_TO {
                        held.push(reply);
                        continue;
                    }
                    n += 1;
                    let number = store.index().lookup_number(&req.from);
                    let rec = CallRecord {
                        id: format!("call_out{n}"),
                        account_id: req.account_id,
                        direction: "outbound".into(),
                        carrier: "local".into(),
                        from: req.from,
                        caller_name: None,
                        to: req.to,
                        phone_number_id: number.map(|r| r.number_id.clone()),
                        status: CallStatus::Queued,
                        answered_by: None,
                        agent_id: Some(req.agent_id),
                        hops: Vec::new(),
                        end_reason: None,
                        hangup_by: None,
                        sip_status: None,
                        sip_call_id: format!("out{n}@edge"),
                        error: None,
                        created_at_ms: now_ms(),
                        answered_at_ms: None,
                        ended_at_ms: None,
                        node: None,
                    };
                    store.upsert_call(&rec).await.unwrap();
                    live.insert(rec.id.clone(), rec.clone());
                    let _ = reply.send(Ok(rec));
                }
                CallCommand::HangUp {
                    account_id,
                    call_id,
                    reply,
                } => {
                    let ours = live.get(&call_id).is_some_and(|r| r.account_id == account_id);
                    let ended = if ours { live.remove(&call_id) } else { None }.map(|mut r| {
                        r.status = CallStatus::Canceled;
                        r.end_reason = Some("hung up through the API".into());
                        r.hangup_by = Some(HangupBy::Edge);
                        r.ended_at_ms = Some(now_ms());
                        r
                    });
                    if let Some(r) = &ended {
                        store.upsert_call(r).await.unwrap();
                    }
                    let _ = reply.send(ended);
                }
                // As the engine: only a live call of the account, and only once an agent answered it
                // (the fake's calls never are, so it answers 202 for the one it marks answered).
                CallCommand::Transfer {
                    account_id,
                    call_id,
                    to,
                    reply,
                } => {
                    let answer = match live.get_mut(&call_id).filter(|r| r.account_id == account_id) {
                        None => Err(TransferRefusal::CallNotFound { call_id }),
                        Some(r) if r.status != CallStatus::InProgress => Err(TransferRefusal::NotConnected),
                        Some(r) => {
                            r.hops.push(Hop {
                                route: Route::Transfer,
                                agent_id: to.starts_with("agt_").then(|| to.clone()),
                                target: Some(to),
                                sip_status: None,
                                outcome: "trying".into(),
                                started_at_ms: now_ms(),
                                ended_at_ms: None,
                            });
                            Ok(r.clone())
                        }
                    };
                    let _ = reply.send(answer);
                }
            }
        }
    });
    tx
}

async fn make_agent(s: &Server, key: &str, name: &str) -> String {
    let r = s
        .call(
            "POST",
            "/v1/agents",
            Some(key),
            Some(json!({"name": name, "sip_uri": "sip:bot@10.0.0.5:5060"})),
        )
        .await;
    assert_eq!(r.status, 201, "{}", r.text);
    r.json["id"].as_str().unwrap().to_owned()
}

async fn buy(s: &Server, key: &str, number: &str, agent: &str) {
    let r = s
        .call(
            "POST",
            "/v1/phone-numbers/purchase",
            Some(key),
            Some(json!({"phone_number": number, "agent_id": agent})),
        )
        .await;
    assert_eq!(r.status, 201, "{}", r.text);
}

/// An account with an agent that owns `number`: (account, key, agent).
async fn tenant(s: &Server, number: &str) -> (String, String, String) {
    let (acc, key) = s.key().await;
    let agent = make_agent(s, &key, "dialer").await;
    buy(s, &key, number, &agent).await;
    (acc, key, agent)
}

fn stored(id: &str, account: &str, status: CallStatus) -> CallRecord {
    let t = now_ms();
    CallRecord {
        id: id.into(),
        account_id: account.into(),
        direction: "inbound".into(),
        carrier: "telnyx".into(),
        from: TO.into(),
        caller_name: None,
        to: "+14155551234".into(),
        phone_number_id: None,
        status,
        answered_by: None,
        agent_id: None,
        hops: Vec::new(),
        end_reason: status.is_final().then(|| "caller hung up".to_owned()),
        hangup_by: None,
        sip_status: None,
        sip_call_id: "in@carrier".into(),
        error: None,
        created_at_ms: t,
        answered_at_ms: None,
        ended_at_ms: status.is_final().then_some(t),
        node: None,
    }
}

async fn originate_and_hang_up(s: &Server) {
    let (acc, key, agent) = tenant(s, "+14155551234").await;
    let k = Some(key.as_str());
    let r = s
        .call(
            "POST",
            "/v1/calls",
            k,
            Some(json!({"from": "+14155551234", "to": TO, "agent_id": agent})),
        )
        .await;
    assert_eq!(r.status, 201, "{}", r.text);
    assert_eq!(r.json["status"], "queued");
    assert_eq!(r.json["direction"], "outbound");
    assert_eq!(r.json["from"], "+14155551234");
    assert_eq!(r.json["to"], TO);
    assert_eq!(r.json["agent_id"], agent.as_str());
    assert!(r.json["phone_number_id"].as_str().unwrap().starts_with("phn_"));
    let id = r.json["id"].as_str().unwrap().to_owned();
    // Same object as GET.
    let got = s.call("GET", &format!("/v1/calls/{id}"), k, None).await;
    assert_eq!(got.json, r.json);

    // Live: the engine hangs up and answers with the ended record.
    let r = s.call("DELETE", &format!("/v1/calls/{id}"), k, None).await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(r.json["status"], "canceled");
    assert_eq!(r.json["hangup_by"], "edge");
    assert!(r.json["ended_at"].is_string());
    let got = s.call("GET", &format!("/v1/calls/{id}"), k, None).await;
    assert_eq!(got.json, r.json);
    // Ended: idempotent, the stored record unchanged.
    let again = s.call("DELETE", &format!("/v1/calls/{id}"), k, None).await;
    assert_eq!(again.status, 200, "{}", again.text);
    assert_eq!(again.json, r.json);
    // A call the engine never had (e.g. an old inbound call) is served from the store.
    s.store
        .upsert_call(&stored("call_old1", &acc, CallStatus::Completed))
        .await
        .unwrap();
    let before = s.call("GET", "/v1/calls/call_old1", k, None).await;
    let r = s.call("DELETE", "/v1/calls/call_old1", k, None).await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(r.json, before.json);
    // Unknown or malformed ids.
    for path in ["/v1/calls/call_nope", "/v1/calls/nope", "/v1/calls/call_-x"] {
        let r = s.call("DELETE", path, k, None).await;
        assert_eq!(r.status, 404, "{path}: {}", r.text);
        assert_eq!(r.error().0, "not_found");
    }

    // The engine's typed refusal becomes the status, code and field the real engine's answer has
    // always had (409 agent_unavailable on agent_id), with the engine's words.
    let r = s
        .call(
            "POST",
            "/v1/calls",
            k,
            Some(json!({"from": "+14155551234", "to": BUSY_TO, "agent_id": agent})),
        )
        .await;
    assert_eq!(r.status, 409, "{}", r.text);
    assert_eq!(r.error(), ("agent_unavailable".to_owned(), Some("agent_id".to_owned())));
    assert_eq!(
        r.json["error"]["message"],
        format!("agent {agent} is at max_concurrent_calls (2)")
    );
    // An engine that does not answer: 503 after the bound, not a hung request.
    let t = std::time::Instant::now();
    let r = s
        .call(
            "POST",
            "/v1/calls",
            k,
            Some(json!({"from": "+14155551234", "to": SILENT_TO, "agent_id": agent})),
        )
        .await;
    assert_eq!(r.status, 503, "{}", r.text);
    assert_eq!(r.error().0, "call_control_unavailable");
    assert!(t.elapsed() < std::time::Duration::from_secs(3));
}
on_both_backends!(originate_and_hang_up, engine = super::fake_engine);

/// `POST /v1/calls/{id}/transfer`: validated here (`to` a number or an agent id), the engine's refusals in
/// the usual error shape.
async fn transfer_through_the_api(s: &Server) {
    let (_acc, key, agent) = tenant(s, "+14155551234").await;
    let k = Some(key.as_str());
    let r = s
        .call(
            "POST",
            "/v1/calls",
            k,
            Some(json!({"from": "+14155551234", "to": TO, "agent_id": agent})),
        )
        .await;
    assert_eq!(r.status, 201, "{}", r.text);
    let id = r.json["id"].as_str().unwrap().to_owned();
    let path = format!("/v1/calls/{id}/transfer");
    // Not answered yet: 409, the engine's words.
    let r = s.call("POST", &path, k, Some(json!({"to": "+14155550199"}))).await;
    assert_eq!(r.status, 409, "{}", r.text);
    assert_eq!(r.error().0, "call_not_transferable");
    // Bad targets never reach the engine: 400 naming `to`.
    for to in ["14155550199", "sip:x@y", "", "agt_"] {
        let r = s.call("POST", &path, k, Some(json!({ "to": to }))).await;
        assert_eq!(r.status, 400, "{to:?}: {}", r.text);
        assert_eq!(r.json["error"]["field"], "to", "{to:?}");
    }
    let r = s
        .call("POST", &path, k, Some(json!({"to": "+14155550199", "x": 1})))
        .await;
    assert_eq!(r.status, 400, "{}", r.text);
    // Unknown call, malformed id: 404.
    for p in ["/v1/calls/call_nope/transfer", "/v1/calls/nope/transfer"] {
        let r = s.call("POST", p, k, Some(json!({"to": "+14155550199"}))).await;
        assert_eq!(r.status, 404, "{p}: {}", r.text);
        assert_eq!(r.error().0, "not_found");
    }
    // Without the API key: 401.
    let r = s.call("POST", &path, None, Some(json!({"to": "+14155550199"}))).await;
    assert_eq!(r.status, 401, "{}", r.text);
}

on_both_backends!(transfer_through_the_api, engine = super::fake_engine);

async fn originate_validation(s: &Server) {
    let (_, key, agent) = tenant(s, "+14155551234").await;
    let other_agent = make_agent(s, &key, "other").await;
    let k = Some(key.as_str());
    let ok = json!({"from": "+14155551234", "to": TO, "agent_id": agent});
    let with = |f: &str, v: Value| {
        let mut b = ok.clone();
        b[f] = v;
        b
    };
    let cases: Vec<(Value, &str, Option<&str>)> = vec![
        (with("to", json!("15005550006")), "invalid_field", Some("to")),
        (with("to", json!("+0123456789")), "invalid_field", Some("to")),
        (with("to", json!(15005550006u64)), "invalid_field", Some("to")),
        (with("from", json!("+1415")), "invalid_field", Some("from")),
        (with("agent_id", json!("bob")), "invalid_field", Some("agent_id")),
        (
            with("agent_id", json!("agt_doesnotexist")),
            "invalid_reference",
            Some("agent_id"),
        ),
        // A valid number nobody registered.
        (with("from", json!("+14155551299")), "invalid_reference", Some("from")),
        (with("agent_id", json!(other_agent)), "invalid_field", Some("from")),
        (
            json!({"from": "+14155551234", "agent_id": agent}),
            "invalid_field",
            Some("to"),
        ),
        (json!({"to": TO, "agent_id": agent}), "invalid_field", Some("from")),
        (
            json!({"from": "+14155551234", "to": TO}),
            "invalid_field",
            Some("agent_id"),
        ),
        (with("record", json!(true)), "invalid_field", Some("record")),
    ];
    for (body, code, field) in cases {
        let r = s.call("POST", "/v1/calls", k, Some(body.clone())).await;
        assert_eq!(r.status, 400, "{body}: {}", r.text);
        assert_eq!(r.error(), (code.to_owned(), field.map(str::to_owned)), "{body}");
    }
    // The assignment error says which agent the number belongs to.
    let r = s
        .call("POST", "/v1/calls", k, Some(with("agent_id", json!(other_agent))))
        .await;
    assert!(
        r.json["error"]["message"].as_str().unwrap().contains(&agent),
        "{}",
        r.text
    );
    // Nothing was placed.
    let r = s.call("GET", "/v1/calls", k, None).await;
    assert_eq!(r.json["data"], json!([]));
}
on_both_backends!(originate_validation, engine = super::fake_engine);

async fn originate_tenancy(s: &Server) {
    let (_, key_a, agent_a) = tenant(s, "+14155551234").await;
    let (_, key_b, agent_b) = tenant(s, "+14155551250").await;
    let b = Some(key_b.as_str());
    for (body, field) in [
        (json!({"from": "+14155551234", "to": TO, "agent_id": agent_b}), "from"),
        (
            json!({"from": "+14155551234", "to": TO, "agent_id": agent_a}),
            "agent_id",
        ),
        (
            json!({"from": "+14155551250", "to": TO, "agent_id": agent_a}),
            "agent_id",
        ),
    ] {
        let r = s.call("POST", "/v1/calls", b, Some(body.clone())).await;
        assert_eq!(r.status, 400, "{body}: {}", r.text);
        assert_eq!(r.error().1.as_deref(), Some(field), "{body}");
    }
    let r = s
        .call(
            "POST",
            "/v1/calls",
            Some(&key_a),
            Some(json!({"from": "+14155551234", "to": TO, "agent_id": agent_a})),
        )
        .await;
    assert_eq!(r.status, 201, "{}", r.text);
    let path = format!("/v1/calls/{}", r.json["id"].as_str().unwrap());
    // B can neither see nor end A's call, and A's call stays live.
    assert_eq!(s.call("DELETE", &path, b, None).await.status, 404);
    assert_eq!(s.call("GET", &path, b, None).await.status, 404);
    let r = s.call("GET", &path, Some(&key_a), None).await;
    assert_eq!(r.json["status"], "queued");
    let r = s.call("DELETE", &path, Some(&key_a), None).await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(r.json["status"], "canceled");
}
on_both_backends!(originate_tenancy, engine = super::fake_engine);

async fn without_call_control(s: &Server) {
    let (acc, key, agent) = tenant(s, "+14155551234").await;
    let k = Some(key.as_str());
    let r = s
        .call(
            "POST",
            "/v1/calls",
            k,
            Some(json!({"from": "+14155551234", "to": TO, "agent_id": agent})),
        )
        .await;
    assert_eq!(r.status, 503, "{}", r.text);
    assert_eq!(r.error(), ("outbound_disabled".to_owned(), None));
    assert_eq!(
        r.json["error"]["message"],
        "outbound calls are not enabled on this edge"
    );
    // Input errors are still reported as such.
    let r = s
        .call(
            "POST",
            "/v1/calls",
            k,
            Some(json!({"from": "+14155551234", "to": "x", "agent_id": agent})),
        )
        .await;
    assert_eq!(r.status, 400, "{}", r.text);
    // Hang-up: unknown 404, ended 200 unchanged, live 503 (nobody can end it here).
    assert_eq!(s.call("DELETE", "/v1/calls/call_nope", k, None).await.status, 404);
    s.store
        .upsert_call(&stored("call_done", &acc, CallStatus::Completed))
        .await
        .unwrap();
    let before = s.call("GET", "/v1/calls/call_done", k, None).await;
    let r = s.call("DELETE", "/v1/calls/call_done", k, None).await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(r.json, before.json);
    s.store
        .upsert_call(&stored("call_live", &acc, CallStatus::InProgress))
        .await
        .unwrap();
    let r = s.call("DELETE", "/v1/calls/call_live", k, None).await;
    assert_eq!(r.status, 503, "{}", r.text);
    assert_eq!(r.error().0, "outbound_disabled");
}
on_both_backends!(without_call_control);

async fn agent_sip_credentials(s: &Server) {
    let (_, key) = s.key().await;
    let (_, key_b) = s.key().await;
    let k = Some(key.as_str());
    let password = "pw-Secret-123";
    let r = s
        .call(
            "POST",
            "/v1/agents",
            k,
            Some(json!({"name": "dialer", "sip_uri": "sip:bot@10.0.0.5",
                "sip_username": "sales-bot.1", "sip_password": password})),
        )
        .await;
    assert_eq!(r.status, 201, "{}", r.text);
    assert_eq!(r.json["sip_username"], "sales-bot.1");
    assert_eq!(r.json["sip_password_set"], true);
    assert!(r.json.get("sip_password").is_none());
    assert!(!r.text.contains(password));
    let id = r.json["id"].as_str().unwrap().to_owned();

    // Sealed at rest; decrypted only for the SIP side's index.
    let raw: String = sqlx::query("SELECT sip_password_sealed FROM agents WHERE id = $1")
        .bind(&id)
        .fetch_one(s.store.pool())
        .await
        .unwrap()
        .try_get("sip_password_sealed")
        .unwrap();
    assert_ne!(raw, password);
    assert!(!raw.contains(password));
    let idx = s.store.index().agent_by_sip_username("sales-bot.1").unwrap();
    assert_eq!(idx.id, id);
    assert_eq!(idx.sip_password.as_ref().unwrap().expose(), password);

    // Never returned by reads.
    for path in [format!("/v1/agents/{id}"), "/v1/agents".to_owned()] {
        let r = s.call("GET", &path, k, None).await;
        assert_eq!(r.status, 200);
        assert!(!r.text.contains(password), "{path}");
        assert!(!r.text.contains("\"sip_password\""), "{path}");
    }
    let plain = make_agent(s, &key, "plain").await;
    let r = s.call("GET", &format!("/v1/agents/{plain}"), k, None).await;
    assert_eq!(r.json["sip_username"], Value::Null);
    assert_eq!(r.json["sip_password_set"], false);

    // Validation: both or neither, formats.
    let base = json!({"name": "x", "sip_uri": "sip:bot@10.0.0.5"});
    let with = |extra: Value| {
        let mut b = base.clone();
        for (f, v) in extra.as_object().unwrap() {
            b[f] = v.clone();
        }
        b
    };
    for (body, field) in [
        (with(json!({"sip_username": "alone"})), "sip_password"),
        (with(json!({"sip_password": "alone-pw-1"})), "sip_username"),
        (
            with(json!({"sip_username": "a b", "sip_password": "long-enough"})),
            "sip_username",
        ),
        (
            with(json!({"sip_username": "x".repeat(65), "sip_password": "long-enough"})),
            "sip_username",
        ),
        (
            with(json!({"sip_username": "ok", "sip_password": "short"})),
            "sip_password",
        ),
        (
            with(json!({"sip_username": "ok", "sip_password": "x".repeat(129)})),
            "sip_password",
        ),
    ] {
        let r = s.call("POST", "/v1/agents", k, Some(body.clone())).await;
        assert_eq!(r.status, 400, "{body}: {}", r.text);
        assert_eq!(r.error().1.as_deref(), Some(field), "{body}");
    }
    // Unique across accounts, on create and on PATCH.
    let taken = with(json!({"sip_username": "sales-bot.1", "sip_password": "other-pw-1"}));
    let r = s.call("POST", "/v1/agents", Some(&key_b), Some(taken)).await;
    assert_eq!(r.status, 409, "{}", r.text);
    assert_eq!(r.error(), ("conflict".to_owned(), Some("sip_username".to_owned())));
    let r = s
        .call(
            "PATCH",
            &format!("/v1/agents/{plain}"),
            k,
            Some(json!({"sip_username": "sales-bot.1", "sip_password": "other-pw-1"})),
        )
        .await;
    assert_eq!(r.status, 409, "{}", r.text);
    assert_eq!(r.error().1.as_deref(), Some("sip_username"));

    // PATCH: add, rotate, and clear.
    let path = format!("/v1/agents/{plain}");
    let r = s
        .call(
            "PATCH",
            &path,
            k,
            Some(json!({"sip_username": "plain-bot", "sip_password": "first-pw-1"})),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(r.json["sip_password_set"], true);
    let r = s
        .call("PATCH", &path, k, Some(json!({"sip_password": "second-pw-2"})))
        .await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert!(!r.text.contains("second-pw-2"));
    let idx = s.store.index().agent_by_sip_username("plain-bot").unwrap();
    assert_eq!(idx.sip_password.as_ref().unwrap().expose(), "second-pw-2");
    let r = s.call("PATCH", &path, k, Some(json!({"sip_password": null}))).await;
    assert_eq!(r.status, 400, "{}", r.text);
    assert_eq!(r.error().1.as_deref(), Some("sip_password"));
    let r = s.call("PATCH", &path, k, Some(json!({"sip_username": null}))).await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(r.json["sip_username"], Value::Null);
    assert_eq!(r.json["sip_password_set"], false);
    assert!(s.store.index().agent_by_sip_username("plain-bot").is_none());
}
on_both_backends!(agent_sip_credentials);

async fn integration_sip_trunk(s: &Server) {
    let (acc, key) = s.key().await;
    let k = Some(key.as_str());
    let body = |trunk: Value| {
        json!({"name": "t", "provider": "twilio", "api_key": "tok",
            "metadata": {"account_sid": "AC1", "sip_trunk": trunk}})
    };
    for bad in [json!(5), json!("https://x.example.com"), json!("")] {
        let r = s.call("POST", "/v1/integrations", k, Some(body(bad.clone()))).await;
        assert_eq!(r.status, 400, "{bad}: {}", r.text);
        assert_eq!(r.error().1.as_deref(), Some("metadata.sip_trunk"), "{bad}");
    }
    let r = s
        .call(
            "POST",
            "/v1/integrations",
            k,
            Some(body(json!("sip:MyTrunk.pstn.twilio.com:5061"))),
        )
        .await;
    assert_eq!(r.status, 201, "{}", r.text);
    assert_eq!(r.json["metadata"]["sip_trunk"], "mytrunk.pstn.twilio.com:5061");
    assert_eq!(r.json["metadata"]["account_sid"], "AC1");
    assert_eq!(
        s.store.index().integration_trunk(&acc, Provider::Twilio).as_deref(),
        Some("mytrunk.pstn.twilio.com:5061")
    );
    let id = r.json["id"].as_str().unwrap();
    let r = s.call("DELETE", &format!("/v1/integrations/{id}"), k, None).await;
    assert_eq!(r.status, 204);
    assert!(s.store.index().integration_trunk(&acc, Provider::Twilio).is_none());
}
on_both_backends!(integration_sip_trunk);

async fn openapi_documents_outbound(s: &Server) {
    let r = s.call("GET", "/v1/openapi.json", None, None).await;
    let paths = &r.json["paths"];
    assert_eq!(paths["/v1/calls"]["post"]["operationId"], "create_call");
    assert_eq!(paths["/v1/calls/{id}"]["delete"]["operationId"], "hang_up_call");
    for status in ["201", "400", "409", "503"] {
        assert!(
            paths["/v1/calls"]["post"]["responses"].get(status).is_some(),
            "POST /v1/calls lacks {status}"
        );
    }
    let schemas = &r.json["components"]["schemas"];
    let agent = &schemas["Agent"]["properties"];
    assert!(agent.get("sip_username").is_some() && agent.get("sip_password_set").is_some());
    assert!(agent.get("sip_password").is_none());
    let create = &schemas["CreateAgentRequest"]["properties"]["sip_password"];
    assert_eq!(create["writeOnly"], true, "{create}");
    let req = &schemas["CreateCallRequest"];
    let mut required: Vec<&str> = req["required"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap())
        .collect();
    required.sort();
    assert_eq!(required, ["agent_id", "from", "to"]);
}
on_both_backends!(openapi_documents_outbound);
