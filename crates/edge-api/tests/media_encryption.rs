//! `media_encryption` (SRTP per leg, issue 20 item 3) on agents and on a BYO number's `provider_config`:
//! default `none`, the three values stored and returned, PATCH changes it and refuses `null`, other words
//! are a 400 naming the field, the value reaches the routing index. On SQLite and PostgreSQL.

mod common;

use common::Server;
use serde_json::json;

async fn media_encryption(s: &Server) {
    let (_, api_key) = s.key().await;
    let k = Some(api_key.as_str());
    let r = s
        .call(
            "POST",
            "/v1/agents",
            k,
            Some(json!({"name": "Plain", "sip_uri": "sip:agent@agents.example.com"})),
        )
        .await;
    assert_eq!(r.status, 201, "{}", r.text);
    assert_eq!(r.json["media_encryption"], "none", "default");
    let plain = r.json["id"].as_str().unwrap().to_owned();

    let r = s
        .call(
            "POST",
            "/v1/agents",
            k,
            Some(json!({"name": "Secure", "sip_uri": "sip:agent@agents.example.com", "media_encryption": "srtp_required"})),
        )
        .await;
    assert_eq!(r.status, 201, "{}", r.text);
    assert_eq!(r.json["media_encryption"], "srtp_required");
    let secure = r.json["id"].as_str().unwrap().to_owned();
    assert_eq!(
        s.store.index().agent(&secure).unwrap().media_encryption,
        edge_store::MediaEncryption::SrtpRequired
    );

    let r = s
        .call(
            "POST",
            "/v1/agents",
            k,
            Some(json!({"name": "Bad", "sip_uri": "sip:agent@agents.example.com", "media_encryption": "dtls"})),
        )
        .await;
    assert_eq!(r.status, 400, "{}", r.text);
    assert!(r.text.contains("media_encryption"), "{}", r.text);

    let path = format!("/v1/agents/{plain}");
    let r = s
        .call("PATCH", &path, k, Some(json!({"media_encryption": "srtp"})))
        .await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(r.json["media_encryption"], "srtp");
    let r = s.call("PATCH", &path, k, Some(json!({"media_encryption": null}))).await;
    assert_eq!(r.status, 400, "{}", r.text);
    let r = s.call("GET", &path, k, None).await;
    assert_eq!(r.json["media_encryption"], "srtp", "read back from the database");
    assert_eq!(
        s.store.index().agent(&plain).unwrap().media_encryption,
        edge_store::MediaEncryption::Srtp
    );

    // A trunk's: provider_config.media_encryption.
    let r = s
        .call(
            "POST",
            "/v1/phone-numbers",
            k,
            Some(json!({
            "phone_number": "+15005550151", "provider": "twilio", "agent_id": plain,
            "provider_config": {"trunk_address": "sips:trunk.customer.example", "media_encryption": "srtp_required"}})),
        )
        .await;
    assert_eq!(r.status, 201, "{}", r.text);
    assert_eq!(r.json["provider_config"]["media_encryption"], "srtp_required");
    let id = r.json["id"].as_str().unwrap().to_owned();
    let route = s.store.index().lookup_number("+15005550151").unwrap();
    assert_eq!(
        route.provider_config.as_ref().unwrap().media_encryption,
        edge_store::MediaEncryption::SrtpRequired
    );
    let path = format!("/v1/phone-numbers/{id}");
    let r = s
        .call(
            "PATCH",
            &path,
            k,
            Some(json!({"provider_config": {"media_encryption": "none"}})),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(r.json["provider_config"]["media_encryption"], "none");
    let r = s.call("GET", &path, k, None).await;
    assert_eq!(r.json["provider_config"]["media_encryption"], "none");
}
on_both_backends!(media_encryption);
