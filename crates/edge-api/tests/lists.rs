//! Lists: newest first everywhere, `limit` / `cursor` / `starting_after` / `has_more`, the
//! filters users expect, and unknown query parameters refused by name (a filter that is
//! silently ignored turns "delete this agent's numbers" into "delete all numbers").

mod common;

use common::Server;
use edge_store::{CallRecord, CallStatus};
use serde_json::{json, Value};

async fn agent(s: &Server, key: &str, name: &str) -> String {
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

fn ids(r: &common::Resp) -> Vec<String> {
    r.json["data"]
        .as_array()
        .unwrap_or_else(|| panic!("no data in {}", r.text))
        .iter()
        .map(|v| v["id"].as_str().unwrap().to_owned())
        .collect()
}

async fn numbers_filters_and_order(s: &Server) {
    let (_, key) = s.key().await;
    let k = Some(key.as_str());
    let a1 = agent(s, &key, "one").await;
    let a2 = agent(s, &key, "two").await;
    let mut made = Vec::new();
    for (n, a) in [("+14155551201", &a1), ("+14155551202", &a1)] {
        let r = s
            .call(
                "POST",
                "/v1/phone-numbers/purchase",
                k,
                Some(json!({"phone_number": n, "agent_id": a})),
            )
            .await;
        assert_eq!(r.status, 201, "{}", r.text);
        made.push(r.json["id"].as_str().unwrap().to_owned());
        tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    }
    let r = s
        .call(
            "POST",
            "/v1/phone-numbers",
            k,
            Some(
                json!({"phone_number": "+14155550150", "provider": "twilio", "agent_id": a2,
                "provider_config": {"trunk_address": "example.pstn.twilio.com"}}),
            ),
        )
        .await;
    assert_eq!(r.status, 201, "{}", r.text);
    made.push(r.json["id"].as_str().unwrap().to_owned());
    let newest_first: Vec<String> = made.iter().rev().cloned().collect();

    let r = s.call("GET", "/v1/phone-numbers", k, None).await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(ids(&r), newest_first);
    assert_eq!(r.json["has_more"], false);
    assert_eq!(r.json["next_cursor"], Value::Null);

    let cases: [(String, Vec<String>); 6] = [
        (format!("agent_id={a1}"), vec![made[1].clone(), made[0].clone()]),
        (format!("agent_id={a2}"), vec![made[2].clone()]),
        ("provider=twilio".into(), vec![made[2].clone()]),
        (
            "provider=local&status=active".into(),
            vec![made[1].clone(), made[0].clone()],
        ),
        ("phone_number=%2B14155551202".into(), vec![made[1].clone()]),
        ("agent_id=agt_nobody".into(), vec![]),
    ];
    for (q, want) in cases {
        let r = s.call("GET", &format!("/v1/phone-numbers?{q}"), k, None).await;
        assert_eq!(r.status, 200, "{q}: {}", r.text);
        assert_eq!(ids(&r), want, "{q}");
    }

    // Paging by starting_after and by cursor agree, and has_more says when to stop.
    let r = s.call("GET", "/v1/phone-numbers?limit=2", k, None).await;
    assert_eq!(ids(&r), newest_first[..2]);
    assert_eq!(r.json["has_more"], true);
    let last = &newest_first[1];
    let r2 = s
        .call(
            "GET",
            &format!("/v1/phone-numbers?limit=2&starting_after={last}"),
            k,
            None,
        )
        .await;
    assert_eq!(r2.status, 200, "{}", r2.text);
    assert_eq!(ids(&r2), newest_first[2..]);
    assert_eq!(r2.json["has_more"], false);
    let cursor = r.json["next_cursor"].as_str().unwrap();
    let r3 = s
        .call("GET", &format!("/v1/phone-numbers?limit=2&cursor={cursor}"), k, None)
        .await;
    assert_eq!(ids(&r3), ids(&r2));

    // Bad filters and unknown parameters are 400s naming the parameter.
    for (q, field) in [
        ("agnet_id=x", "agnet_id"),
        ("provider=acme", "provider"),
        ("status=gone", "status"),
        ("phone_number=123", "phone_number"),
        ("agent_id=bad", "agent_id"),
        ("starting_after=phn_doesnotexist", "starting_after"),
        ("limit=0", "limit"),
    ] {
        let r = s.call("GET", &format!("/v1/phone-numbers?{q}"), k, None).await;
        assert_eq!(r.status, 400, "{q}: {}", r.text);
        assert_eq!(r.error().1.as_deref(), Some(field), "{q}: {}", r.text);
    }
}
on_both_backends!(numbers_filters_and_order);

async fn unknown_parameters_everywhere(s: &Server) {
    let (_, key) = s.key().await;
    for path in [
        "/v1/phone-numbers?foo=1",
        "/v1/phone-numbers/search?country=US&foo=1",
        "/v1/agents?foo=1",
        "/v1/integrations?foo=1",
        "/v1/calls?foo=1",
        "/v1/voicemails?foo=1",
    ] {
        let r = s.call("GET", path, Some(&key), None).await;
        assert_eq!(r.status, 400, "{path}: {}", r.text);
        let (code, field) = r.error();
        assert_eq!(code, "unknown_parameter", "{path}");
        assert_eq!(field.as_deref(), Some("foo"), "{path}");
        assert!(r.json["error"]["message"].as_str().unwrap().contains("foo"));
    }
}
on_both_backends!(unknown_parameters_everywhere);

async fn agents_newest_first(s: &Server) {
    let (_, key) = s.key().await;
    let mut made = Vec::new();
    for i in 0..3 {
        made.push(agent(s, &key, &format!("a{i}")).await);
        tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    }
    made.reverse();
    let r = s.call("GET", "/v1/agents", Some(&key), None).await;
    assert_eq!(ids(&r), made);
    let r = s
        .call(
            "GET",
            &format!("/v1/agents?starting_after={}", made[0]),
            Some(&key),
            None,
        )
        .await;
    assert_eq!(ids(&r), made[1..]);
    assert_eq!(r.json["has_more"], false);
}
on_both_backends!(agents_newest_first);

fn call(id: &str, account: &str, direction: &str, agent: Option<&str>, created: i64) -> CallRecord {
    CallRecord {
        id: id.into(),
        account_id: account.into(),
        direction: direction.into(),
        carrier: "telnyx".into(),
        from: "+15005550006".into(),
        caller_name: None,
        to: "+14155551234".into(),
        phone_number_id: Some("phn_one".into()),
        status: CallStatus::Completed,
        answered_by: None,
        agent_id: agent.map(str::to_owned),
        hops: Vec::new(),
        end_reason: None,
        hangup_by: None,
        sip_status: None,
        sip_call_id: format!("{id}@carrier"),
        error: None,
        created_at_ms: created,
        answered_at_ms: None,
        ended_at_ms: None,
        node: None,
    }
}

async fn call_filters(s: &Server) {
    let (acc, key) = s.key().await;
    let k = Some(key.as_str());
    let t0 = 1_795_795_200_000i64;
    s.store
        .upsert_call(&call("call_a", &acc, "inbound", Some("agt_x"), t0))
        .await
        .unwrap();
    s.store
        .upsert_call(&call("call_b", &acc, "outbound", Some("agt_x"), t0 + 1000))
        .await
        .unwrap();
    s.store
        .upsert_call(&call("call_c", &acc, "inbound", Some("agt_y"), t0 + 2000))
        .await
        .unwrap();
    for (q, want) in [
        ("agent_id=agt_x", vec!["call_b", "call_a"]),
        ("direction=inbound", vec!["call_c", "call_a"]),
        ("direction=outbound&agent_id=agt_x", vec!["call_b"]),
        ("starting_after=call_c", vec!["call_b", "call_a"]),
        ("limit=1&starting_after=call_b", vec!["call_a"]),
    ] {
        let r = s.call("GET", &format!("/v1/calls?{q}"), k, None).await;
        assert_eq!(r.status, 200, "{q}: {}", r.text);
        assert_eq!(ids(&r), want, "{q}");
    }
    let r = s.call("GET", "/v1/calls?limit=1", k, None).await;
    assert_eq!(r.json["has_more"], true);
    for (q, field) in [("direction=sideways", "direction"), ("agent_id=nope", "agent_id")] {
        let r = s.call("GET", &format!("/v1/calls?{q}"), k, None).await;
        assert_eq!(r.status, 400, "{q}: {}", r.text);
        assert_eq!(r.error().1.as_deref(), Some(field));
    }
}
on_both_backends!(call_filters);
