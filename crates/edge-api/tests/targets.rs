//! Agents' `sip_uri`s and trunk addresses may not point into the operator's network unless the
//! operator lists the range in `[security] internal_targets` (here: an empty list).

mod common;

use edge_api::{router, ApiConfig, ApiState, ServeConfig, TargetPolicy};
use edge_store::{SecretBox, Store, StoreConfig};
use serde_json::json;
use std::sync::Arc;

async fn post(base: &str, key: &str, path: &str, body: serde_json::Value) -> (u16, serde_json::Value) {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let r = reqwest::Client::new()
        .post(format!("{base}{path}"))
        .header("Authorization", format!("Bearer {key}"))
        .json(&body)
        .send()
        .await
        .unwrap();
    let status = r.status().as_u16();
    (status, r.json().await.unwrap_or(serde_json::Value::Null))
}

#[tokio::test]
async fn internal_targets_are_refused_at_write_time() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = StoreConfig::new(None, &dir.path().join("data"), SecretBox::new([9u8; 32])).unwrap();
    let store = Arc::new(Store::connect(cfg).await.unwrap());
    let (_, key) = store.create_api_key(None, "t").await.unwrap();
    let config = ApiConfig {
        targets: TargetPolicy::default(),
        ..ApiConfig::default()
    };
    let state = ApiState::new(Arc::clone(&store), common::providers(), config);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(edge_api::serve(
        listener,
        router(state),
        ServeConfig::default(),
        std::future::pending(),
    ));

    for uri in [
        "sip:a@127.0.0.1:38080",
        "sip:a@169.254.169.254",
        "sip:localhost:22;transport=tcp",
        "sip:a@[::1]",
        "sip:a@192.168.1.10",
    ] {
        let (st, v) = post(&base, &key, "/v1/agents", json!({"name": "x", "sip_uri": uri})).await;
        assert_eq!(st, 400, "{uri}: {v}");
        assert_eq!(v["error"]["code"], "internal_target", "{uri}");
        assert_eq!(v["error"]["field"], "sip_uri", "{uri}");
    }
    let (st, v) = post(
        &base,
        &key,
        "/v1/agents",
        json!({"name": "ok", "sip_uri": "sip:bot@agents.example.com;transport=tcp"}),
    )
    .await;
    assert_eq!(st, 201, "{v}");
    let agent = v["id"].as_str().unwrap().to_owned();

    for trunk in [
        "127.0.0.1:5060",
        "169.254.169.254",
        "[fe80::1]:5060",
        "localhost:22",
        "10.0.0.1",
    ] {
        let (st, v) = post(
            &base,
            &key,
            "/v1/phone-numbers",
            json!({"phone_number": "+14155550111", "provider": "twilio", "agent_id": agent,
                "provider_config": {"trunk_address": trunk}}),
        )
        .await;
        assert_eq!(st, 400, "{trunk}: {v}");
        assert_eq!(v["error"]["field"], "provider_config.trunk_address", "{trunk}");
    }
    let (st, v) = post(
        &base,
        &key,
        "/v1/integrations",
        json!({"name": "t", "provider": "twilio", "api_key": "k", "metadata": {"sip_trunk": "127.0.0.1"}}),
    )
    .await;
    assert_eq!(st, 400, "{v}");
    assert_eq!(v["error"]["field"], "metadata.sip_trunk");
}
