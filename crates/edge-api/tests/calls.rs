//! `/v1/calls` against a real server on SQLite and PostgreSQL: JSON shape, tenancy, filters,
//! pagination and validation errors. Records are written the way the SIP side writes them.

mod common;

use common::Server;
use edge_store::{CallError, CallRecord, CallStatus, HangupBy, Hop, Route};
use serde_json::{json, Value};

/// 2026-11-27T16:00:00.000Z
const T0: i64 = 1_795_795_200_000;

fn record(id: &str, account: &str, to: &str, number_id: &str, created: i64) -> CallRecord {
    CallRecord {
        id: id.into(),
        account_id: account.into(),
        direction: "inbound".into(),
        carrier: "telnyx".into(),
        from: "+15005550006".into(),
        caller_name: None,
        to: to.into(),
        phone_number_id: Some(number_id.into()),
        status: CallStatus::Ringing,
        answered_by: None,
        agent_id: None,
        hops: Vec::new(),
        end_reason: None,
        hangup_by: None,
        sip_status: None,
        sip_call_id: "abc@carrier".into(),
        error: None,
        created_at_ms: created,
        answered_at_ms: None,
        ended_at_ms: None,
        node: Some("edge-a".into()),
    }
}

fn completed(mut r: CallRecord) -> CallRecord {
    r.status = CallStatus::Completed;
    r.caller_name = Some("Alice".into());
    r.answered_by = Some(Route::Primary);
    r.agent_id = Some("agt_p".into());
    r.hops = vec![Hop {
        route: Route::Primary,
        agent_id: Some("agt_p".into()),
        target: None,
        sip_status: Some(200),
        outcome: "answered".into(),
        started_at_ms: r.created_at_ms + 1,
        ended_at_ms: Some(r.created_at_ms + 60_000),
    }];
    r.end_reason = Some("agent hung up".into());
    r.hangup_by = Some(HangupBy::Agent);
    r.answered_at_ms = Some(r.created_at_ms + 2_000);
    r.ended_at_ms = Some(r.created_at_ms + 60_000);
    r
}

fn ids(r: &common::Resp) -> Vec<String> {
    r.json["data"]
        .as_array()
        .unwrap_or_else(|| panic!("no data in {}", r.text))
        .iter()
        .map(|c| c["id"].as_str().unwrap().to_owned())
        .collect()
}

async fn shape_and_tenancy(s: &Server) {
    let (acc, key) = s.key().await;
    let (_, other_key) = s.key().await;
    let rec = completed(record("call_9f8e", &acc, "+14155551234", "phn_abc", T0));
    s.store
        .upsert_call(&record("call_9f8e", &acc, "+14155551234", "phn_abc", T0))
        .await
        .unwrap();
    s.store.upsert_call(&rec).await.unwrap();

    let r = s.call("GET", "/v1/calls/call_9f8e", Some(&key), None).await;
    assert_eq!(r.status, 200, "{}", r.text);
    let expected = json!({
        "id": "call_9f8e",
        "direction": "inbound",
        "status": "completed",
        "from": "+15005550006",
        "caller_name": "Alice",
        "to": "+14155551234",
        "phone_number_id": "phn_abc",
        "carrier": "telnyx",
        "answered_by": "primary",
        "agent_id": "agt_p",
        "hops": [{
            "route": "primary",
            "agent_id": "agt_p",
            "sip_status": 200,
            "outcome": "answered",
            "started_at": "2026-11-27T16:00:00.001Z",
            "ended_at": "2026-11-27T16:01:00.000Z"
        }],
        "end_reason": "agent hung up",
        "hangup_by": "agent",
        "sip_status": null,
        "error": null,
        "created_at": "2026-11-27T16:00:00.000Z",
        "answered_at": "2026-11-27T16:00:02.000Z",
        "ended_at": "2026-11-27T16:01:00.000Z",
        "node": "edge-a"
    });
    assert_eq!(r.json, expected);

    // The list serves the same object.
    let r = s.call("GET", "/v1/calls", Some(&key), None).await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(
        r.json,
        json!({"data": [expected], "next_cursor": null, "has_more": false})
    );

    // A failed call with an error code and the carrier's status; kebab-case statuses.
    let mut failed = record("call_fa11", &acc, "+14155551234", "phn_abc", T0 + 1);
    failed.status = CallStatus::NoAnswer;
    failed.sip_status = Some(480);
    failed.error = Some(CallError {
        code: "agent_unreachable".into(),
        message: "no agent answered".into(),
    });
    s.store.upsert_call(&failed).await.unwrap();
    let r = s.call("GET", "/v1/calls/call_fa11", Some(&key), None).await;
    assert_eq!(r.json["status"], "no-answer");
    assert_eq!(r.json["sip_status"], 480);
    assert_eq!(
        r.json["error"],
        json!({"code": "agent_unreachable", "message": "no agent answered"})
    );
    assert_eq!(r.json["answered_at"], Value::Null);
    assert_eq!(r.json["hops"], json!([]));

    // Another account: 404 on get, nothing in its list; junk and unknown ids: 404.
    for (path, k) in [
        ("/v1/calls/call_9f8e", other_key.as_str()),
        ("/v1/calls/call_nope", key.as_str()),
        ("/v1/calls/agt_9f8e", key.as_str()),
        ("/v1/calls/call_a%27b", key.as_str()),
    ] {
        let r = s.call("GET", path, Some(k), None).await;
        assert_eq!(r.status, 404, "{path}: {}", r.text);
        assert_eq!(r.error().0, "not_found");
    }
    let r = s.call("GET", "/v1/calls", Some(&other_key), None).await;
    assert_eq!(r.status, 200);
    assert!(ids(&r).is_empty());

    // Auth required. Placing and ending calls are covered in outbound.rs; here (no call
    // engine) an ended call's DELETE is a no-op and another account's is 404.
    let r = s.call("GET", "/v1/calls", None, None).await;
    assert_eq!(r.status, 401);
    let r = s.call("DELETE", "/v1/calls/call_9f8e", None, None).await;
    assert_eq!(r.status, 401);
    let r = s.call("POST", "/v1/calls", Some(&key), Some(json!({}))).await;
    assert_eq!(r.status, 400, "{}", r.text);
    let r = s.call("DELETE", "/v1/calls/call_9f8e", Some(&other_key), None).await;
    assert_eq!(r.status, 404, "{}", r.text);
    let r = s.call("DELETE", "/v1/calls/call_9f8e", Some(&key), None).await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(r.json, expected);
}
on_both_backends!(shape_and_tenancy);

async fn filters_and_pagination(s: &Server) {
    let (acc, key) = s.key().await;
    let k = Some(key.as_str());
    // call_c0..call_c5 one minute apart; even ones to +14155551234 (phn_one) and completed.
    for i in 0..6i64 {
        let (to, num) = if i % 2 == 0 {
            ("+14155551234", "phn_one")
        } else {
            ("+14155559999", "phn_two")
        };
        let r = record(&format!("call_c{i}"), &acc, to, num, T0 + i * 60_000);
        let r = if i % 2 == 0 { completed(r) } else { r };
        s.store.upsert_call(&r).await.unwrap();
    }

    let r = s.call("GET", "/v1/calls?limit=4", k, None).await;
    assert_eq!(ids(&r), ["call_c5", "call_c4", "call_c3", "call_c2"]);
    let cursor = r.json["next_cursor"].as_str().unwrap().to_owned();
    let r = s
        .call("GET", &format!("/v1/calls?limit=4&cursor={cursor}"), k, None)
        .await;
    assert_eq!(ids(&r), ["call_c1", "call_c0"]);
    assert_eq!(r.json["next_cursor"], Value::Null);

    let cases: [(&str, &[&str]); 7] = [
        ("phone_number_id=phn_two", &["call_c5", "call_c3", "call_c1"]),
        ("phone_number=%2B14155551234", &["call_c4", "call_c2", "call_c0"]),
        // An unencoded `+` decodes to a space and is still understood.
        ("phone_number=+14155559999", &["call_c5", "call_c3", "call_c1"]),
        ("status=completed", &["call_c4", "call_c2", "call_c0"]),
        ("status=ringing&phone_number_id=phn_one", &[]),
        (
            "created_after=2026-11-27T16:01:00Z&created_before=2026-11-27T16:03:00Z",
            &["call_c2", "call_c1"],
        ),
        ("created_after=2026-11-27T18:04:00%2B02:00", &["call_c5", "call_c4"]),
    ];
    for (q, want) in cases {
        let r = s.call("GET", &format!("/v1/calls?{q}"), k, None).await;
        assert_eq!(r.status, 200, "{q}: {}", r.text);
        assert_eq!(ids(&r), want, "{q}");
    }

    // Filter + pagination.
    let r = s.call("GET", "/v1/calls?status=completed&limit=2", k, None).await;
    assert_eq!(ids(&r), ["call_c4", "call_c2"]);
    let cursor = r.json["next_cursor"].as_str().unwrap().to_owned();
    let r = s
        .call(
            "GET",
            &format!("/v1/calls?status=completed&limit=2&cursor={cursor}"),
            k,
            None,
        )
        .await;
    assert_eq!(ids(&r), ["call_c0"]);
}
on_both_backends!(filters_and_pagination);

async fn validation_names_fields(s: &Server) {
    let (_, key) = s.key().await;
    for (q, field) in [
        ("status=in_progress", "status"),
        ("status=", "status"),
        ("phone_number_id=agt_x", "phone_number_id"),
        ("phone_number=4155551234", "phone_number"),
        ("created_after=yesterday", "created_after"),
        ("created_after=1796400000000", "created_after"),
        ("created_before=2026-11-27", "created_before"),
        (
            "created_after=2026-11-27T16:00:00Z&created_before=2026-11-27T16:00:00Z",
            "created_before",
        ),
        ("limit=0", "limit"),
        ("limit=101", "limit"),
        ("limit=ten", "limit"),
        ("cursor=%21%21", "cursor"),
    ] {
        let r = s.call("GET", &format!("/v1/calls?{q}"), Some(&key), None).await;
        assert_eq!(r.status, 400, "{q}: {}", r.text);
        assert_eq!(r.error(), ("invalid_field".to_owned(), Some(field.to_owned())), "{q}");
    }
    let r = s
        .call("GET", "/v1/calls?status=in-progress&limit=100", Some(&key), None)
        .await;
    assert_eq!(r.status, 200, "{}", r.text);
}
on_both_backends!(validation_names_fields);

async fn openapi_documents_calls(s: &Server) {
    let r = s.call("GET", "/v1/openapi.json", None, None).await;
    assert_eq!(r.status, 200);
    let doc = &r.json;
    let list = &doc["paths"]["/v1/calls"]["get"];
    assert_eq!(list["operationId"], "list_calls", "{}", r.text);
    let params: Vec<&str> = list["parameters"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|p| p["name"].as_str())
        .collect();
    for p in [
        "phone_number_id",
        "phone_number",
        "status",
        "created_after",
        "created_before",
        "limit",
        "cursor",
    ] {
        assert!(params.contains(&p), "{p} missing in {params:?}");
    }
    assert_eq!(doc["paths"]["/v1/calls"]["post"]["operationId"], "create_call");
    assert_eq!(doc["paths"]["/v1/calls/{id}"]["get"]["operationId"], "get_call");
    assert_eq!(doc["paths"]["/v1/calls/{id}"]["delete"]["operationId"], "hang_up_call");
    let schemas = &doc["components"]["schemas"];
    let call = &schemas["Call"]["properties"];
    for f in [
        "id",
        "direction",
        "status",
        "from",
        "caller_name",
        "to",
        "phone_number_id",
        "carrier",
        "answered_by",
        "agent_id",
        "hops",
        "end_reason",
        "hangup_by",
        "sip_status",
        "error",
        "created_at",
        "answered_at",
        "ended_at",
        "node",
    ] {
        assert!(call.get(f).is_some(), "Call.{f} missing from OpenAPI");
    }
    let statuses = schemas["CallStatusName"]["enum"].as_array().unwrap();
    assert!(statuses.contains(&json!("in-progress")) && statuses.contains(&json!("no-answer")));
}
on_both_backends!(openapi_documents_calls);
