//! The seed document's curls replayed against a real server, plus auth, tenancy,
//! validation and secrecy checks. Every test runs on SQLite and on PostgreSQL.

mod common;

use common::Server;
use serde_json::{json, Value};

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

fn assert_number_shape(v: &Value) {
    for f in [
        "id",
        "phone_number",
        "friendly_name",
        "agent_id",
        "status",
        "provider",
        "source",
        "inbound_routing",
        "provider_config",
        "created_at",
        "updated_at",
    ] {
        assert!(v.get(f).is_some(), "missing {f} in {v}");
    }
    assert!(v["id"].as_str().unwrap().starts_with("phn_"));
    assert_eq!(v["status"], "active");
    assert!(v["created_at"].as_str().unwrap().ends_with('Z'));
}

async fn seed_replay(s: &Server) {
    let (_, key) = s.key().await;
    let k = Some(key.as_str());
    let agent = make_agent(s, &key, "Sales bot").await;
    let routing = make_agent(s, &key, "Routing bot").await;
    let fallback = make_agent(s, &key, "Fallback bot").await;

    // Path A.1: search.
    let r = s
        .call(
            "GET",
            "/v1/phone-numbers/search?country=US&area_code=415&limit=10",
            k,
            None,
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text);
    let data = r.json["data"].as_array().unwrap();
    assert_eq!(data.len(), 10);
    for n in data {
        assert!(n["phone_number"].as_str().unwrap().starts_with("+1415"));
        assert_eq!(n["country"], "US");
    }

    // Path A.2: purchase a specific number.
    let inbound = json!({
        "agent_id": routing,
        "fallback": { "agent_id": fallback },
        "voicemail_message": "Sorry we missed you, please leave a message."
    });
    let r = s
        .call(
            "POST",
            "/v1/phone-numbers/purchase",
            k,
            Some(json!({
                "phone_number": "+14155551234",
                "friendly_name": "Sales Line",
                "agent_id": agent,
                "inbound_routing": inbound,
            })),
        )
        .await;
    assert_eq!(r.status, 201, "{}", r.text);
    assert_number_shape(&r.json);
    assert_eq!(r.json["phone_number"], "+14155551234");
    assert_eq!(r.json["source"], "purchased");
    assert_eq!(r.json["provider"], "local");
    assert_eq!(r.json["inbound_routing"]["fallback"]["agent_id"], fallback.as_str());
    let path_a_id = r.json["id"].as_str().unwrap().to_owned();
    let route = s.store.index().lookup_number("+14155551234").unwrap();
    assert_eq!(route.inbound_routing.as_ref().unwrap().agent_id, routing);

    // Buying it again: 409.
    let r = s
        .call(
            "POST",
            "/v1/phone-numbers/purchase",
            k,
            Some(json!({"phone_number": "+14155551234", "agent_id": agent})),
        )
        .await;
    assert_eq!(r.status, 409, "{}", r.text);
    assert_eq!(r.error().1.as_deref(), Some("phone_number"));

    // Path B: auto-assign.
    let r = s
        .call(
            "POST",
            "/v1/phone-numbers/purchase",
            k,
            Some(json!({
                "country": "US",
                "area_code": "415",
                "friendly_name": "Sales Line",
                "agent_id": agent,
                "inbound_routing": inbound,
            })),
        )
        .await;
    assert_eq!(r.status, 201, "{}", r.text);
    assert_number_shape(&r.json);
    let auto = r.json["phone_number"].as_str().unwrap().to_owned();
    assert!(auto.starts_with("+1415"));
    assert_ne!(auto, "+14155551234");

    // Owned numbers are no longer offered.
    let r = s
        .call(
            "GET",
            "/v1/phone-numbers/search?country=US&area_code=415&limit=100",
            k,
            None,
        )
        .await;
    let offered: Vec<&str> = r.json["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|n| n["phone_number"].as_str().unwrap())
        .collect();
    assert!(!offered.contains(&"+14155551234"));
    assert!(!offered.contains(&auto.as_str()));
    assert_eq!(offered.len(), 98);

    // Path C.3: integration.
    let r = s
        .call(
            "POST",
            "/v1/integrations",
            k,
            Some(json!({
                "name": "My Twilio Account",
                "provider": "twilio",
                "api_key": "twilio-auth-token-secret",
                "metadata": {
                    "account_sid": "AC0123",
                    "phone_number": "+15739693824",
                    "sip_trunk": "yourtrunk.pstn.twilio.com"
                }
            })),
        )
        .await;
    assert_eq!(r.status, 201, "{}", r.text);
    assert!(r.json["id"].as_str().unwrap().starts_with("crd_"));
    assert_eq!(r.json["provider"], "twilio");
    assert_eq!(r.json["metadata"]["account_sid"], "AC0123");
    assert!(r.json.get("api_key").is_none());
    assert!(!r.text.contains("twilio-auth-token-secret"));

    // Path C.4: register the number.
    let r = s
        .call(
            "POST",
            "/v1/phone-numbers",
            k,
            Some(json!({
                "phone_number": "+15739693824",
                "friendly_name": "Sales Line",
                "provider": "twilio",
                "agent_id": agent,
                "provider_config": {
                    "trunk_address": "yourtrunk.pstn.twilio.com",
                    "auth_username": "oneinbox",
                    "auth_password": "my-sip-password"
                },
                "inbound_routing": {
                    "agent_id": routing,
                    "fallback": { "agent_id": fallback },
                    "voicemail_message": "Sorry, we missed you. Please leave a message."
                }
            })),
        )
        .await;
    assert_eq!(r.status, 201, "{}", r.text);
    assert_number_shape(&r.json);
    assert_eq!(r.json["phone_number"], "+15739693824");
    assert_eq!(r.json["agent_id"], agent.as_str());
    assert_eq!(r.json["status"], "active");
    assert_eq!(r.json["source"], "byo");
    assert_eq!(r.json["provider_config"]["auth_password_set"], true);
    assert!(!r.text.contains("my-sip-password"));
    let phone_id = r.json["id"].as_str().unwrap().to_owned();

    // Inbound-routing section: register with outbound only (no inbound_routing).
    let r = s
        .call(
            "POST",
            "/v1/phone-numbers",
            k,
            Some(json!({
                "phone_number": "+15551234567",
                "friendly_name": "Sales Line",
                "provider": "telnyx",
                "agent_id": agent,
                "provider_config": {"trunk_address": "sip:sip.telnyx.com:5060"}
            })),
        )
        .await;
    assert_eq!(r.status, 201, "{}", r.text);
    assert_eq!(r.json["inbound_routing"], Value::Null);
    assert_eq!(r.json["provider_config"]["trunk_address"], "sip.telnyx.com:5060");
    assert!(s
        .store
        .index()
        .lookup_number("+15551234567")
        .unwrap()
        .inbound_routing
        .is_none());

    // PATCH { agent_id }: reassign, effective on the very next lookup.
    let new_agent = make_agent(s, &key, "New bot").await;
    let r = s
        .call(
            "PATCH",
            &format!("/v1/phone-numbers/{phone_id}"),
            k,
            Some(json!({"agent_id": new_agent})),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(r.json["agent_id"], new_agent.as_str());
    assert_eq!(r.json["friendly_name"], "Sales Line", "absent fields unchanged");
    assert_eq!(
        s.store.index().lookup_number("+15739693824").unwrap().agent_id,
        new_agent
    );

    // PATCH inbound_routing parts: fallback kept, others replaced.
    let r = s
        .call(
            "PATCH",
            &format!("/v1/phone-numbers/{phone_id}"),
            k,
            Some(json!({
                "inbound_routing": {"agent_id": agent, "voicemail_message": "Updated voicemail message."}
            })),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(r.json["inbound_routing"]["agent_id"], agent.as_str());
    assert_eq!(r.json["inbound_routing"]["fallback"]["agent_id"], fallback.as_str());
    assert_eq!(
        r.json["inbound_routing"]["voicemail_message"],
        "Updated voicemail message."
    );
    let route = s.store.index().lookup_number("+15739693824").unwrap();
    let ib = route.inbound_routing.as_ref().unwrap();
    assert_eq!(ib.agent_id, agent);
    assert_eq!(ib.voicemail_message.as_deref(), Some("Updated voicemail message."));

    // inbound_routing.transfer: `edge` by default, `carrier` stored and routed, null back to `edge`, a
    // word outside the two a 400 that changes nothing.
    assert_eq!(r.json["inbound_routing"]["transfer"], "edge");
    let path = format!("/v1/phone-numbers/{phone_id}");
    let r = s
        .call(
            "PATCH",
            &path,
            k,
            Some(json!({"inbound_routing": {"transfer": "carrier"}})),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(r.json["inbound_routing"]["transfer"], "carrier");
    assert_eq!(
        r.json["inbound_routing"]["fallback"]["agent_id"],
        fallback.as_str(),
        "others kept"
    );
    let routed = |s: &Server| {
        s.store
            .index()
            .lookup_number("+15739693824")
            .unwrap()
            .inbound_routing
            .as_ref()
            .unwrap()
            .transfer
    };
    assert_eq!(routed(s), edge_store::TransferMode::Carrier);
    let r = s
        .call(
            "PATCH",
            &path,
            k,
            Some(json!({"inbound_routing": {"transfer": "pstn"}})),
        )
        .await;
    assert_eq!(r.status, 400, "{}", r.text);
    assert_eq!(
        routed(s),
        edge_store::TransferMode::Carrier,
        "a refused PATCH changes nothing"
    );
    assert_eq!(
        s.call("GET", &path, k, None).await.json["inbound_routing"]["transfer"],
        "carrier"
    );
    let r = s
        .call("PATCH", &path, k, Some(json!({"inbound_routing": {"transfer": null}})))
        .await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(r.json["inbound_routing"]["transfer"], "edge");
    assert_eq!(routed(s), edge_store::TransferMode::Edge);

    // PATCH inbound_routing: null -> outbound-only; friendly_name: null clears.
    let r = s
        .call(
            "PATCH",
            &format!("/v1/phone-numbers/{phone_id}"),
            k,
            Some(json!({"inbound_routing": null, "friendly_name": null})),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(r.json["inbound_routing"], Value::Null);
    assert_eq!(r.json["friendly_name"], Value::Null);
    assert!(s
        .store
        .index()
        .lookup_number("+15739693824")
        .unwrap()
        .inbound_routing
        .is_none());

    // GET one.
    let r = s.call("GET", &format!("/v1/phone-numbers/{phone_id}"), k, None).await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_number_shape(&r.json);
    assert_eq!(r.json["provider_config"]["trunk_address"], "yourtrunk.pstn.twilio.com");
    assert!(r.json["provider_config"].get("auth_password").is_none());

    // List.
    let r = s.call("GET", "/v1/phone-numbers", k, None).await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(r.json["data"].as_array().unwrap().len(), 4);
    assert_eq!(r.json["next_cursor"], Value::Null);
    assert!(!r.text.contains("my-sip-password"));

    // DELETE BYO and purchased.
    let r = s
        .call("DELETE", &format!("/v1/phone-numbers/{phone_id}"), k, None)
        .await;
    assert_eq!(r.status, 204, "{}", r.text);
    assert!(s.store.index().lookup_number("+15739693824").is_none());
    let r = s.call("GET", &format!("/v1/phone-numbers/{phone_id}"), k, None).await;
    assert_eq!(r.status, 404);
    let r = s
        .call("DELETE", &format!("/v1/phone-numbers/{path_a_id}"), k, None)
        .await;
    assert_eq!(r.status, 204, "{}", r.text);
    // Released: offered again.
    let r = s
        .call(
            "GET",
            "/v1/phone-numbers/search?country=US&area_code=415&limit=100",
            k,
            None,
        )
        .await;
    assert!(r.text.contains("+14155551234"));
}
on_both_backends!(seed_replay);

async fn auth_and_openapi(s: &Server) {
    let (_, key) = s.key().await;
    for (path, k) in [
        ("/v1/phone-numbers", None),
        (
            "/v1/phone-numbers",
            Some("oik_0000000000000000000000000000000000000000000000000000000000000000"),
        ),
        ("/v1/agents", Some("garbage")),
        ("/v1/phone-numbers/search?country=US", None),
    ] {
        let r = s.call("GET", path, k, None).await;
        assert_eq!(r.status, 401, "{path}: {}", r.text);
        assert_eq!(r.error().0, "unauthorized");
    }
    let r = s.call("GET", "/v1/agents", Some(&key), None).await;
    assert_eq!(r.status, 200);
    let r = s.call("GET", "/v1/openapi.json", None, None).await;
    assert_eq!(r.status, 200);
    assert!(r.json["openapi"].as_str().unwrap().starts_with("3."));
    for p in [
        "/v1/phone-numbers/search",
        "/v1/phone-numbers/purchase",
        "/v1/phone-numbers/{id}",
        "/v1/integrations",
        "/v1/agents/{id}",
        "/v1/calls",
        "/v1/calls/{id}",
        "/v1/calls/{id}/transfer",
        "/v1/calls/{id}/trace",
        "/v1/voicemails",
        "/v1/voicemails/{id}",
        "/v1/voicemails/{id}/recording",
        "/v1/webhooks",
        "/v1/webhooks/{id}",
        "/v1/webhooks/{id}/deliveries",
    ] {
        assert!(r.json["paths"].get(p).is_some(), "{p} missing from OpenAPI");
    }
    let mut op_ids: Vec<&str> = r.json["paths"]
        .as_object()
        .unwrap()
        .values()
        .flat_map(|item| item.as_object().unwrap().values())
        .filter_map(|op| op["operationId"].as_str())
        .collect();
    // 24 + the set-up doctor's GET .../checks and POST .../checks/fix + /v1/api-keys (list, create, revoke)
    // + POST /v1/calls/{id}/transfer + GET /v1/calls/{id}/trace + /v1/webhooks (create, list, get, delete,
    // deliveries).
    assert_eq!(op_ids.len(), 36);
    op_ids.sort();
    op_ids.dedup();
    assert_eq!(op_ids.len(), 36, "operationIds must be unique");
    let r = s.call("GET", "/v1/nope", Some(&key), None).await;
    assert_eq!(r.status, 404);
    assert_eq!(r.error().0, "not_found");
}
on_both_backends!(auth_and_openapi);

async fn tenancy(s: &Server) {
    let (_, a) = s.key().await;
    let (_, b) = s.key().await;
    let agent_a = make_agent(s, &a, "A").await;
    let agent_b = make_agent(s, &b, "B").await;
    let r = s
        .call(
            "POST",
            "/v1/phone-numbers",
            Some(&a),
            Some(json!({
        "phone_number": "+15005550006", "provider": "twilio", "agent_id": agent_a,
        "provider_config": {"trunk_address": "a.pstn.twilio.com"}})),
        )
        .await;
    assert_eq!(r.status, 201, "{}", r.text);
    let num = r.json["id"].as_str().unwrap().to_owned();
    let r = s
        .call(
            "POST",
            "/v1/integrations",
            Some(&a),
            Some(json!({
        "name": "A", "provider": "telnyx", "api_key": "k"})),
        )
        .await;
    assert_eq!(r.status, 201, "{}", r.text);
    let crd = r.json["id"].as_str().unwrap().to_owned();

    for path in [
        format!("/v1/phone-numbers/{num}"),
        format!("/v1/agents/{agent_a}"),
        format!("/v1/integrations/{crd}"),
    ] {
        let r = s.call("GET", &path, Some(&b), None).await;
        assert_eq!(r.status, 404, "GET {path}");
        let r = s.call("DELETE", &path, Some(&b), None).await;
        assert_eq!(r.status, 404, "DELETE {path}");
    }
    let r = s
        .call(
            "PATCH",
            &format!("/v1/phone-numbers/{num}"),
            Some(&b),
            Some(json!({"agent_id": agent_b})),
        )
        .await;
    assert_eq!(r.status, 404);
    let r = s
        .call(
            "PATCH",
            &format!("/v1/agents/{agent_a}"),
            Some(&b),
            Some(json!({"name": "stolen"})),
        )
        .await;
    assert_eq!(r.status, 404);
    // A cannot point its number at B's agent; B cannot use A's agent.
    let r = s
        .call(
            "PATCH",
            &format!("/v1/phone-numbers/{num}"),
            Some(&a),
            Some(json!({"agent_id": agent_b})),
        )
        .await;
    assert_eq!(r.status, 400);
    assert_eq!(r.error().1.as_deref(), Some("agent_id"));
    let r = s
        .call(
            "POST",
            "/v1/phone-numbers/purchase",
            Some(&b),
            Some(json!({
        "phone_number": "+14155551250", "agent_id": agent_b,
        "inbound_routing": {"fallback": {"agent_id": agent_a}}})),
        )
        .await;
    assert_eq!(r.status, 400, "{}", r.text);
    assert_eq!(r.error().1.as_deref(), Some("inbound_routing.fallback.agent_id"));
    assert!(
        s.store.index().lookup_number("+14155551250").is_none(),
        "nothing bought"
    );
    // Lists are per account; A's resources unchanged.
    for path in ["/v1/phone-numbers", "/v1/integrations"] {
        let r = s.call("GET", path, Some(&b), None).await;
        assert_eq!(r.json["data"].as_array().unwrap().len(), 0, "{path}");
    }
    let r = s.call("GET", "/v1/agents", Some(&b), None).await;
    assert_eq!(r.json["data"].as_array().unwrap().len(), 1);
    let r = s.call("GET", &format!("/v1/phone-numbers/{num}"), Some(&a), None).await;
    assert_eq!(r.json["agent_id"], agent_a.as_str());
    let r = s.call("GET", &format!("/v1/agents/{agent_a}"), Some(&a), None).await;
    assert_eq!(r.json["name"], "A");
    // Agent in use: 409; unused: 204.
    let r = s.call("DELETE", &format!("/v1/agents/{agent_a}"), Some(&a), None).await;
    assert_eq!(r.status, 409, "{}", r.text);
    let r = s.call("DELETE", &format!("/v1/agents/{agent_b}"), Some(&b), None).await;
    assert_eq!(r.status, 204);
}
on_both_backends!(tenancy);

async fn validation_names_fields_and_changes_nothing(s: &Server) {
    let (_, key) = s.key().await;
    let k = Some(key.as_str());
    let agent = make_agent(s, &key, "A").await;
    let good = json!({
        "phone_number": "+15739693824", "provider": "twilio", "agent_id": agent,
        "provider_config": {"trunk_address": "yourtrunk.pstn.twilio.com", "auth_username": "u", "auth_password": "p"},
        "inbound_routing": {"agent_id": agent, "fallback": {"agent_id": agent}}
    });
    let with = |path: &[&str], v: Value| {
        let mut b = good.clone();
        let mut cur = &mut b;
        for p in &path[..path.len() - 1] {
            cur = cur.get_mut(*p).unwrap();
        }
        cur[path[path.len() - 1]] = v;
        b
    };
    let cases: Vec<(Value, &str)> = vec![
        (with(&["phone_number"], json!("5739693824")), "phone_number"),
        (with(&["phone_number"], json!("+0573969382")), "phone_number"),
        (with(&["phone_number"], json!(12)), "phone_number"),
        (with(&["provider"], json!("vonage")), "provider"),
        (with(&["agent_id"], json!("nope")), "agent_id"),
        (with(&["agent_id"], json!("agt_doesnotexist")), "agent_id"),
        (
            with(&["provider_config", "trunk_address"], json!("https://x.com")),
            "provider_config.trunk_address",
        ),
        (
            with(&["provider_config", "trunk_address"], json!("x.com:70000")),
            "provider_config.trunk_address",
        ),
        (
            with(&["inbound_routing", "fallback", "agent_id"], json!("agt_x!")),
            "inbound_routing.fallback.agent_id",
        ),
        (
            with(&["inbound_routing", "agent_id"], json!("agt_missing")),
            "inbound_routing.agent_id",
        ),
        (with(&["friendly_name"], json!("x".repeat(201))), "friendly_name"),
    ];
    for (body, field) in cases {
        let r = s.call("POST", "/v1/phone-numbers", k, Some(body.clone())).await;
        assert_eq!(r.status, 400, "{body}: {}", r.text);
        assert_eq!(r.error().1.as_deref(), Some(field), "{body}: {}", r.text);
    }
    let mut missing = good.clone();
    missing.as_object_mut().unwrap().remove("agent_id");
    let r = s.call("POST", "/v1/phone-numbers", k, Some(missing)).await;
    assert_eq!(
        (r.status, r.error().1.as_deref()),
        (400, Some("agent_id")),
        "{}",
        r.text
    );

    // Malformed JSON, wrong content type, oversized body.
    let r = s.raw("POST", "/v1/phone-numbers", &key, "{\"phone_number\": ").await;
    assert_eq!((r.status, r.error().0.as_str()), (400, "invalid_json"));
    let big = json!({"name": "x".repeat(70 * 1024), "sip_uri": "sip:a@b.c"}).to_string();
    let r = s.raw("POST", "/v1/agents", &key, &big).await;
    assert_eq!(r.status, 413, "{}", r.text);
    assert_eq!(r.error().0, "payload_too_large");

    // Search and list parameters.
    for (q, field) in [
        ("country=XX", "country"),
        ("area_code=415", "country"),
        ("country=US&area_code=12", "area_code"),
        ("country=US&limit=0", "limit"),
        ("country=US&limit=101", "limit"),
        ("country=US&contains=12a", "contains"),
    ] {
        let r = s.call("GET", &format!("/v1/phone-numbers/search?{q}"), k, None).await;
        assert_eq!(r.status, 400, "{q}: {}", r.text);
        assert_eq!(r.error().1.as_deref(), Some(field), "{q}");
    }
    let r = s.call("GET", "/v1/phone-numbers?cursor=garbage", k, None).await;
    assert_eq!((r.status, r.error().1.as_deref()), (400, Some("cursor")));
    let r = s
        .call(
            "POST",
            "/v1/phone-numbers/purchase",
            k,
            // Omitting country is fine (path B defaults to US); a bad one names the field.
            Some(json!({"agent_id": agent, "country": "XX"})),
        )
        .await;
    assert_eq!((r.status, r.error().1.as_deref()), (400, Some("country")));

    // Agents.
    for (body, field) in [
        (json!({"name": "a", "sip_uri": "http://x"}), "sip_uri"),
        (
            json!({"name": "a", "sip_uri": "sip:a@b.c", "max_concurrent_calls": 0}),
            "max_concurrent_calls",
        ),
        (
            json!({"name": "a", "sip_uri": "sip:a@b.c", "max_concurrent_calls": 10001}),
            "max_concurrent_calls",
        ),
        (
            json!({"name": "a", "sip_uri": "sip:a@b.c", "status": "paused"}),
            "status",
        ),
        (json!({"name": " ", "sip_uri": "sip:a@b.c"}), "name"),
    ] {
        let r = s.call("POST", "/v1/agents", k, Some(body.clone())).await;
        assert_eq!(r.status, 400, "{body}: {}", r.text);
        assert_eq!(r.error().1.as_deref(), Some(field), "{body}");
    }
    let r = s
        .call(
            "PATCH",
            &format!("/v1/agents/{agent}"),
            k,
            Some(json!({"sip_uri": "sip:"})),
        )
        .await;
    assert_eq!((r.status, r.error().1.as_deref()), (400, Some("sip_uri")));

    // Integrations.
    for (body, field) in [
        (json!({"name": "T", "provider": "vonage", "api_key": "k"}), "provider"),
        (json!({"name": "T", "provider": "twilio"}), "api_key"),
        (json!({"name": "T", "provider": "twilio", "api_key": ""}), "api_key"),
        (json!({"provider": "twilio", "api_key": "k"}), "name"),
        (
            json!({"name": "T", "provider": "twilio", "api_key": "k", "metadata": [1]}),
            "metadata",
        ),
        (
            json!({"name": "T", "provider": "twilio", "api_key": "k", "metadata": {"x": "y".repeat(9000)}}),
            "metadata",
        ),
    ] {
        let r = s.call("POST", "/v1/integrations", k, Some(body.clone())).await;
        assert_eq!(r.status, 400, "{body}: {}", r.text);
        assert_eq!(r.error().1.as_deref(), Some(field), "{body}");
    }
    let r = s.call("GET", "/v1/integrations", k, None).await;
    assert_eq!(r.json["data"].as_array().unwrap().len(), 0);

    // Nothing was stored by any of the above.
    let r = s.call("GET", "/v1/phone-numbers", k, None).await;
    assert_eq!(r.json["data"].as_array().unwrap().len(), 0);
    let r = s.call("GET", "/v1/agents", k, None).await;
    assert_eq!(r.json["data"].as_array().unwrap().len(), 1);
    assert_eq!(r.json["data"][0]["sip_uri"], "sip:bot@10.0.0.5:5060");
    assert_eq!(s.store.index().number_count(), 0);

    // PATCH validation leaves the number unchanged.
    let r = s.call("POST", "/v1/phone-numbers", k, Some(good.clone())).await;
    assert_eq!(r.status, 201, "{}", r.text);
    let id = r.json["id"].as_str().unwrap().to_owned();
    let before = r.json.clone();
    for (body, field) in [
        (json!({"agent_id": null}), "agent_id"),
        (
            json!({"agent_id": "agt_unknown", "friendly_name": "changed"}),
            "agent_id",
        ),
        (
            json!({"inbound_routing": {"fallback": {"agent_id": "bad"}}}),
            "inbound_routing.fallback.agent_id",
        ),
        (
            json!({"inbound_routing": {"voicemail_message": 5}}),
            "inbound_routing.voicemail_message",
        ),
    ] {
        let r = s
            .call("PATCH", &format!("/v1/phone-numbers/{id}"), k, Some(body.clone()))
            .await;
        assert_eq!(r.status, 400, "{body}: {}", r.text);
        assert_eq!(r.error().1.as_deref(), Some(field), "{body}");
    }
    let r = s.call("GET", &format!("/v1/phone-numbers/{id}"), k, None).await;
    assert_eq!(r.json, before);
    // Duplicate registration: 409 naming phone_number.
    let r = s.call("POST", "/v1/phone-numbers", k, Some(good)).await;
    assert_eq!((r.status, r.error().1.as_deref()), (409, Some("phone_number")));
}
on_both_backends!(validation_names_fields_and_changes_nothing);

async fn secrets_never_leave(s: &Server) {
    use sqlx::Row;
    let (_, key) = s.key().await;
    let k = Some(key.as_str());
    let agent = make_agent(s, &key, "A").await;
    let r = s.call("POST", "/v1/phone-numbers", k, Some(json!({
        "phone_number": "+15005550123", "provider": "telnyx", "agent_id": agent,
        "provider_config": {"trunk_address": "sip.telnyx.com", "auth_username": "u", "auth_password": "PLAINTEXT-PW-123"}}))).await;
    assert_eq!(r.status, 201);
    let id = r.json["id"].as_str().unwrap().to_owned();
    let r2 = s
        .call(
            "POST",
            "/v1/integrations",
            k,
            Some(json!({
        "name": "T", "provider": "telnyx", "api_key": "PLAINTEXT-KEY-456"})),
        )
        .await;
    let crd = r2.json["id"].as_str().unwrap().to_owned();
    let mut bodies = vec![r.text, r2.text];
    for path in [
        format!("/v1/phone-numbers/{id}"),
        "/v1/phone-numbers".into(),
        format!("/v1/integrations/{crd}"),
        "/v1/integrations".into(),
    ] {
        bodies.push(s.call("GET", &path, k, None).await.text);
    }
    bodies.push(
        s.call(
            "PATCH",
            &format!("/v1/phone-numbers/{id}"),
            k,
            Some(json!({"friendly_name": "x"})),
        )
        .await
        .text,
    );
    for b in &bodies {
        assert!(
            !b.contains("PLAINTEXT-PW-123") && !b.contains("PLAINTEXT-KEY-456"),
            "{b}"
        );
    }
    let pw: String = sqlx::query("SELECT auth_password_sealed FROM phone_numbers")
        .fetch_one(s.store.pool())
        .await
        .unwrap()
        .try_get("auth_password_sealed")
        .unwrap();
    let ak: String = sqlx::query("SELECT api_key_sealed FROM integrations")
        .fetch_one(s.store.pool())
        .await
        .unwrap()
        .try_get("api_key_sealed")
        .unwrap();
    assert!(!pw.contains("PLAINTEXT-PW-123") && !ak.contains("PLAINTEXT-KEY-456"));
    // The SIP side does get the password, through the index.
    let route = s.store.index().lookup_number("+15005550123").unwrap();
    assert_eq!(
        route
            .provider_config
            .as_ref()
            .unwrap()
            .auth_password
            .as_ref()
            .unwrap()
            .expose(),
        "PLAINTEXT-PW-123"
    );
}
on_both_backends!(secrets_never_leave);

async fn pagination(s: &Server) {
    let (_, key) = s.key().await;
    let mut made = Vec::new();
    for i in 0..3 {
        made.push(make_agent(s, &key, &format!("a{i}")).await);
    }
    let r = s.call("GET", "/v1/agents?limit=2", Some(&key), None).await;
    assert_eq!(r.json["data"].as_array().unwrap().len(), 2);
    let cursor = r.json["next_cursor"].as_str().unwrap().to_owned();
    let r2 = s
        .call("GET", &format!("/v1/agents?limit=2&cursor={cursor}"), Some(&key), None)
        .await;
    assert_eq!(r2.status, 200, "{}", r2.text);
    assert_eq!(r2.json["data"].as_array().unwrap().len(), 1);
    assert_eq!(r2.json["next_cursor"], Value::Null);
    let mut seen: Vec<String> = r.json["data"]
        .as_array()
        .unwrap()
        .iter()
        .chain(r2.json["data"].as_array().unwrap())
        .map(|a| a["id"].as_str().unwrap().to_owned())
        .collect();
    seen.sort();
    made.sort();
    assert_eq!(seen, made);
}
on_both_backends!(pagination);

async fn provider_config_rotation(s: &Server) {
    let (_, key) = s.key().await;
    let k = Some(key.as_str());
    let agent = make_agent(s, &key, "A").await;
    let r = s
        .call("POST", "/v1/phone-numbers", k, Some(json!({
            "phone_number": "+15005550124", "provider": "twilio", "agent_id": agent,
            "provider_config": {"trunk_address": "old.pstn.twilio.com", "auth_username": "u", "auth_password": "OLD-PW"}})))
        .await;
    assert_eq!(r.status, 201, "{}", r.text);
    let id = r.json["id"].as_str().unwrap().to_owned();
    let path = format!("/v1/phone-numbers/{id}");

    let r = s
        .call(
            "PATCH",
            &path,
            k,
            Some(json!({"provider_config": {
            "trunk_address": "sip:new.pstn.twilio.com:5070", "auth_password": "NEW-PW-789"}})),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert!(!r.text.contains("NEW-PW-789"));
    assert_eq!(r.json["provider_config"]["trunk_address"], "new.pstn.twilio.com:5070");
    assert_eq!(r.json["provider_config"]["auth_username"], "u");
    assert_eq!(r.json["provider_config"]["auth_password_set"], true);
    let route = s.store.index().lookup_number("+15005550124").unwrap();
    let trunk = route.provider_config.as_ref().unwrap();
    assert_eq!(trunk.trunk_address, "new.pstn.twilio.com:5070");
    assert_eq!(trunk.auth_password.as_ref().unwrap().expose(), "NEW-PW-789");

    // Username cannot be removed while a password is set; nothing changes.
    let r = s
        .call(
            "PATCH",
            &path,
            k,
            Some(json!({"provider_config": {"auth_username": null}, "friendly_name": "x"})),
        )
        .await;
    assert_eq!(r.status, 400, "{}", r.text);
    assert_eq!(r.error().1.as_deref(), Some("provider_config.auth_username"));
    let r = s.call("GET", &path, k, None).await;
    assert_eq!(r.json["provider_config"]["auth_username"], "u");
    assert_eq!(r.json["friendly_name"], Value::Null);

    // Clearing both credentials (IP-authenticated trunk).
    let r = s
        .call(
            "PATCH",
            &path,
            k,
            Some(json!({"provider_config": {"auth_username": null, "auth_password": null}})),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(r.json["provider_config"]["auth_password_set"], false);
    let route = s.store.index().lookup_number("+15005550124").unwrap();
    assert!(route.provider_config.as_ref().unwrap().auth_password.is_none());

    // Purchased numbers have no trunk to rotate.
    let r = s
        .call(
            "POST",
            "/v1/phone-numbers/purchase",
            k,
            Some(json!({"phone_number": "+14155551201", "agent_id": agent})),
        )
        .await;
    assert_eq!(r.status, 201, "{}", r.text);
    let bought = r.json["id"].as_str().unwrap().to_owned();
    let r = s
        .call(
            "PATCH",
            &format!("/v1/phone-numbers/{bought}"),
            k,
            Some(json!({"provider_config": {"trunk_address": "x.example.com"}})),
        )
        .await;
    assert_eq!(r.status, 400, "{}", r.text);
    assert_eq!(r.error().1.as_deref(), Some("provider_config"));
    let r = s
        .call(
            "PATCH",
            &path,
            k,
            Some(json!({"provider_config": {"trunk_address": "https://x"}})),
        )
        .await;
    assert_eq!(r.error().1.as_deref(), Some("provider_config.trunk_address"));
}
on_both_backends!(provider_config_rotation);

/// Carriers' own outbound authentication (issue 19 item 6): Telnyx's tech prefix, `X-Telnyx-Token` and
/// `P-Charge-Info` beside the digest credentials; each validated with a 400 naming the field, the token
/// never returned, refused on a Twilio number, and the routing index current after each change.
async fn carrier_auth_fields(s: &Server) {
    let (_, key) = s.key().await;
    let k = Some(key.as_str());
    let agent = make_agent(s, &key, "A").await;
    let token = "Chicagoqwhowg6ze2d7o";
    let r = s
        .call(
            "POST",
            "/v1/phone-numbers",
            k,
            Some(json!({
            "phone_number": "+15005550131", "provider": "telnyx", "agent_id": agent,
            "provider_config": {"trunk_address": "sip.telnyx.com", "tech_prefix": "1234", "ip_auth_token": token,
                                "p_charge_info": true}})),
        )
        .await;
    assert_eq!(r.status, 201, "{}", r.text);
    assert!(!r.text.contains(token), "the token is never returned: {}", r.text);
    let pc = &r.json["provider_config"];
    assert_eq!(pc["tech_prefix"], "1234");
    assert_eq!(pc["ip_auth_token_set"], true);
    assert_eq!(pc["p_charge_info"], true);
    assert_eq!(pc["auth_password_set"], false);
    let route = s.store.index().lookup_number("+15005550131").unwrap();
    let t = route.provider_config.as_ref().unwrap();
    assert_eq!(t.tech_prefix.as_deref(), Some("1234"));
    assert_eq!(t.ip_auth_token.as_ref().unwrap().expose(), token);
    assert!(t.p_charge_info);
    let id = r.json["id"].as_str().unwrap().to_owned();
    let path = format!("/v1/phone-numbers/{id}");
    let r = s.call("GET", &path, k, None).await;
    assert!(!r.text.contains(token));
    assert_eq!(r.json["provider_config"]["ip_auth_token_set"], true);

    // The old shape still works and reads as before, with the new fields off.
    let r = s
        .call(
            "POST",
            "/v1/phone-numbers",
            k,
            Some(json!({
            "phone_number": "+15005550132", "provider": "telnyx", "agent_id": agent,
            "provider_config": {"trunk_address": "sip.telnyx.com", "auth_username": "u", "auth_password": "p"}})),
        )
        .await;
    assert_eq!(r.status, 201, "{}", r.text);
    let pc = &r.json["provider_config"];
    assert_eq!(
        (
            pc["tech_prefix"].clone(),
            pc["ip_auth_token_set"].clone(),
            pc["p_charge_info"].clone()
        ),
        (Value::Null, json!(false), json!(false))
    );

    // Each field checked, the 400 naming it; nothing stored.
    for (pc, field) in [
        (
            json!({"trunk_address": "sip.telnyx.com", "tech_prefix": "12a4"}),
            "provider_config.tech_prefix",
        ),
        (
            json!({"trunk_address": "sip.telnyx.com", "tech_prefix": ""}),
            "provider_config.tech_prefix",
        ),
        (
            json!({"trunk_address": "sip.telnyx.com", "ip_auth_token": "short"}),
            "provider_config.ip_auth_token",
        ),
        (
            json!({"trunk_address": "sip.telnyx.com", "ip_auth_token": "has space in it!"}),
            "provider_config.ip_auth_token",
        ),
        (
            json!({"trunk_address": "sip.telnyx.com", "ip_auth_token": "x".repeat(49)}),
            "provider_config.ip_auth_token",
        ),
    ] {
        let r = s
            .call(
                "POST",
                "/v1/phone-numbers",
                k,
                Some(json!({
                "phone_number": "+15005550133", "provider": "telnyx", "agent_id": agent, "provider_config": pc})),
            )
            .await;
        assert_eq!(r.status, 400, "{pc}: {}", r.text);
        assert_eq!(r.error().1.as_deref(), Some(field), "{pc}");
    }
    assert!(s.store.index().lookup_number("+15005550133").is_none());
    // Telnyx's IP-connection methods mean nothing to a Twilio trunk.
    for (extra, field) in [
        (json!({"tech_prefix": "1234"}), "provider_config.tech_prefix"),
        (json!({"ip_auth_token": token}), "provider_config.ip_auth_token"),
        (json!({"p_charge_info": true}), "provider_config.p_charge_info"),
    ] {
        let mut pc = json!({"trunk_address": "t.pstn.twilio.com"});
        pc.as_object_mut().unwrap().extend(extra.as_object().unwrap().clone());
        let r = s
            .call(
                "POST",
                "/v1/phone-numbers",
                k,
                Some(json!({
                "phone_number": "+15005550134", "provider": "twilio", "agent_id": agent, "provider_config": pc})),
            )
            .await;
        assert_eq!(r.status, 400, "{pc}: {}", r.text);
        assert_eq!(r.error().1.as_deref(), Some(field), "{pc}");
    }

    // PATCH: rotate the token, drop the prefix, turn P-Charge-Info off; null cannot switch it.
    let r = s
        .call(
            "PATCH",
            &path,
            k,
            Some(json!({"provider_config": {
            "ip_auth_token": "new-token-0000001", "tech_prefix": null, "p_charge_info": false}})),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert!(!r.text.contains("new-token-0000001"));
    assert_eq!(r.json["provider_config"]["tech_prefix"], Value::Null);
    assert_eq!(r.json["provider_config"]["p_charge_info"], false);
    let route = s.store.index().lookup_number("+15005550131").unwrap();
    let t = route.provider_config.as_ref().unwrap();
    assert_eq!(t.ip_auth_token.as_ref().unwrap().expose(), "new-token-0000001");
    assert!(t.tech_prefix.is_none() && !t.p_charge_info);
    let r = s
        .call(
            "PATCH",
            &path,
            k,
            Some(json!({"provider_config": {"tech_prefix": "12 34"}})),
        )
        .await;
    assert_eq!(r.error().1.as_deref(), Some("provider_config.tech_prefix"));
    let r = s
        .call(
            "PATCH",
            &path,
            k,
            Some(json!({"provider_config": {"p_charge_info": null}})),
        )
        .await;
    assert_eq!(r.status, 400, "{}", r.text);
    let r = s
        .call(
            "PATCH",
            &path,
            k,
            Some(json!({"provider_config": {"ip_auth_token": null}})),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(r.json["provider_config"]["ip_auth_token_set"], false);
    assert!(s
        .store
        .index()
        .lookup_number("+15005550131")
        .unwrap()
        .provider_config
        .as_ref()
        .unwrap()
        .ip_auth_token
        .is_none());
}
on_both_backends!(carrier_auth_fields);
