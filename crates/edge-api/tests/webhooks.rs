//! `/v1/webhooks` against a real server on SQLite and PostgreSQL: create (secret shown once), list, get,
//! delete, deliveries with their state, tenancy, and validation errors naming their field.

mod common;

use common::Server;
use edge_store::{AttemptOutcome, CallRecord, CallStatus, HangupBy, Route};
use serde_json::json;

fn completed_call(id: &str, account: &str) -> CallRecord {
    CallRecord {
        id: id.into(),
        account_id: account.into(),
        direction: "inbound".into(),
        carrier: "twilio".into(),
        from: "+15005550006".into(),
        caller_name: None,
        to: "+14155551234".into(),
        phone_number_id: None,
        status: CallStatus::Completed,
        answered_by: Some(Route::Primary),
        agent_id: Some("agt_a".into()),
        hops: Vec::new(),
        end_reason: Some("caller hung up".into()),
        hangup_by: Some(HangupBy::Caller),
        sip_status: None,
        sip_call_id: "x@carrier".into(),
        error: None,
        created_at_ms: 1_000,
        answered_at_ms: Some(2_000),
        ended_at_ms: Some(62_000),
        node: None,
    }
}

async fn create_list_get_delete(s: &Server) {
    let (account, key) = s.key().await;
    let k = Some(key.as_str());
    let (_, other) = s.key().await;

    let r = s
        .call(
            "POST",
            "/v1/webhooks",
            k,
            Some(json!({"url": "https://hooks.example.com/oneinbox", "events": ["call.completed", "call.answered"]})),
        )
        .await;
    assert_eq!(r.status, 201, "{}", r.text);
    let id = r.json["id"].as_str().unwrap().to_owned();
    let secret = r.json["secret"].as_str().unwrap().to_owned();
    assert!(id.starts_with("whk_"), "{id}");
    assert!(secret.starts_with("whsec_") && secret.len() == 70, "{secret}");
    assert_eq!(r.json["events"], json!(["call.completed", "call.answered"]));
    assert_eq!(r.json["url"], "https://hooks.example.com/oneinbox");

    let r = s.call("GET", "/v1/webhooks", k, None).await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(r.json["data"].as_array().unwrap().len(), 1);
    assert_eq!(r.json["data"][0]["id"], id.as_str());
    assert_eq!(r.json["has_more"], false);
    assert!(!r.text.contains(&secret), "the secret is shown once only");
    let r = s.call("GET", &format!("/v1/webhooks/{id}"), k, None).await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert!(r.json.get("secret").is_none());

    // Another account sees nothing of it.
    for (m, p) in [
        ("GET", format!("/v1/webhooks/{id}")),
        ("GET", format!("/v1/webhooks/{id}/deliveries")),
        ("DELETE", format!("/v1/webhooks/{id}")),
    ] {
        let r = s.call(m, &p, Some(&other), None).await;
        assert_eq!(r.status, 404, "{m} {p}: {}", r.text);
        assert_eq!(r.error().0, "not_found");
    }
    let r = s.call("GET", "/v1/webhooks", Some(&other), None).await;
    assert!(r.json["data"].as_array().unwrap().is_empty());

    // A call of the account queues a delivery, listed with its state.
    s.store.upsert_call(&completed_call("call_w1", &account)).await.unwrap();
    let r = s.call("GET", &format!("/v1/webhooks/{id}/deliveries"), k, None).await;
    assert_eq!(r.status, 200, "{}", r.text);
    let data = r.json["data"].as_array().unwrap();
    assert_eq!(data.len(), 2, "{}", r.text);
    let completed = data.iter().find(|d| d["event"] == "call.completed").unwrap();
    assert_eq!(completed["status"], "pending");
    assert_eq!(completed["attempts"], 0);
    assert!(completed["next_attempt_at"].is_string());
    assert!(completed["last_attempt_at"].is_null());
    assert!(completed["response_code"].is_null());
    let did = completed["id"].as_str().unwrap().to_owned();
    assert!(did.starts_with("whd_"));
    s.store
        .finish_webhook_delivery(&did, &AttemptOutcome::Delivered { response_code: 204 })
        .await
        .unwrap();
    let r = s
        .call("GET", &format!("/v1/webhooks/{id}/deliveries?limit=1"), k, None)
        .await;
    assert_eq!(r.json["data"].as_array().unwrap().len(), 1);
    assert_eq!(r.json["has_more"], true);
    let r = s.call("GET", &format!("/v1/webhooks/{id}/deliveries"), k, None).await;
    let done = r.json["data"]
        .as_array()
        .unwrap()
        .iter()
        .find(|d| d["id"] == did.as_str())
        .unwrap()
        .clone();
    assert_eq!(done["status"], "delivered");
    assert_eq!(done["attempts"], 1);
    assert_eq!(done["response_code"], 204);
    assert!(done["next_attempt_at"].is_null());
    assert!(done["last_attempt_at"].is_string());

    let r = s.call("DELETE", &format!("/v1/webhooks/{id}"), k, None).await;
    assert_eq!(r.status, 204, "{}", r.text);
    let r = s.call("GET", &format!("/v1/webhooks/{id}"), k, None).await;
    assert_eq!(r.status, 404);
    let r = s.call("DELETE", &format!("/v1/webhooks/{id}"), k, None).await;
    assert_eq!(r.status, 404);
    let r = s.call("GET", "/v1/webhooks/not_an_id", k, None).await;
    assert_eq!(r.status, 404);
}
on_both_backends!(create_list_get_delete);

async fn validation_names_the_field(s: &Server) {
    let (_, key) = s.key().await;
    let k = Some(key.as_str());
    let cases = [
        (
            json!({"url": "https://x.example/h", "events": ["call.exploded"]}),
            "invalid_field",
            "events",
        ),
        (
            json!({"url": "https://x.example/h", "events": []}),
            "invalid_field",
            "events",
        ),
        (
            json!({"url": "ftp://x.example/h", "events": ["call.failed"]}),
            "invalid_field",
            "url",
        ),
        (
            json!({"url": "not a url", "events": ["call.failed"]}),
            "invalid_field",
            "url",
        ),
        (
            json!({"url": "https://u:p@x.example/h", "events": ["call.failed"]}),
            "invalid_field",
            "url",
        ),
        // Private space outside the operator's internal_targets (these tests allow 10/8 and loopback).
        (
            json!({"url": "http://192.168.1.10/h", "events": ["call.failed"]}),
            "internal_target",
            "url",
        ),
        (
            json!({"url": "http://169.254.169.254/latest", "events": ["call.failed"]}),
            "internal_target",
            "url",
        ),
    ];
    for (body, code, field) in cases {
        let r = s.call("POST", "/v1/webhooks", k, Some(body.clone())).await;
        assert_eq!(r.status, 400, "{body}: {}", r.text);
        let (c, f) = r.error();
        assert_eq!(f.as_deref(), Some(field), "{body}: {}", r.text);
        if code == "internal_target" {
            assert_eq!(c, code, "{body}: {}", r.text);
        }
    }
    let r = s
        .call(
            "POST",
            "/v1/webhooks",
            k,
            Some(json!({"url": "https://x.example/h", "events": ["call.exploded"]})),
        )
        .await;
    assert!(
        r.json["error"]["message"].as_str().unwrap().contains("call.exploded"),
        "{}",
        r.text
    );
    // Missing and unknown fields, wrong types.
    for body in [
        json!({"events": ["call.failed"]}),
        json!({"url": "https://x.example/h"}),
        json!({"url": "https://x.example/h", "events": ["call.failed"], "secret": "mine"}),
        json!({"url": 5, "events": ["call.failed"]}),
    ] {
        let r = s.call("POST", "/v1/webhooks", k, Some(body.clone())).await;
        assert_eq!(r.status, 400, "{body}: {}", r.text);
        r.error();
    }
    // Loopback is in this operator's internal_targets: allowed.
    let r = s
        .call(
            "POST",
            "/v1/webhooks",
            k,
            Some(json!({"url": "http://127.0.0.1:9/h", "events": ["call.failed"]})),
        )
        .await;
    assert_eq!(r.status, 201, "{}", r.text);
    // No key: 401.
    let r = s.call("GET", "/v1/webhooks", None, None).await;
    assert_eq!(r.status, 401);
}
on_both_backends!(validation_names_the_field);
