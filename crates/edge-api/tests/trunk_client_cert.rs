//! A customer trunk's client certificate (mutual TLS, issue 20 item 2): `provider_config.tls_client_certificate`
//! and `tls_client_key` checked with a 400 naming the field (not PEM, key of another certificate, expired),
//! the key never returned and sealed, the pair in the routing index, replaced and removed by PATCH. On
//! SQLite and PostgreSQL.

mod common;

use common::Server;
use serde_json::{json, Value};

/// A self-signed client certificate and its key (PEM); `expired`: valid only in 2020.
fn pair(expired: bool) -> (String, String) {
    let mut p = rcgen::CertificateParams::new(vec!["edge.customer.example".to_owned()]).unwrap();
    p.extended_key_usages = vec![rcgen::ExtendedKeyUsagePurpose::ClientAuth];
    if expired {
        p.not_before = rcgen::date_time_ymd(2020, 1, 1);
        p.not_after = rcgen::date_time_ymd(2021, 1, 1);
    }
    let key = rcgen::KeyPair::generate().unwrap();
    let cert = p.self_signed(&key).unwrap();
    (cert.pem(), key.serialize_pem())
}

async fn agent(s: &Server, key: &str) -> String {
    let r = s
        .call(
            "POST",
            "/v1/agents",
            Some(key),
            Some(json!({"name": "A", "sip_uri": "sip:agent@agents.example.com"})),
        )
        .await;
    assert_eq!(r.status, 201, "{}", r.text);
    r.json["id"].as_str().unwrap().to_owned()
}

fn key_body(key: &str) -> &str {
    // The base64 body of the PEM, which must appear nowhere in a response.
    key.lines().nth(1).unwrap()
}

async fn trunk_client_certificate(s: &Server) {
    let (_, api_key) = s.key().await;
    let k = Some(api_key.as_str());
    let agent = agent(s, &api_key).await;
    let (cert, key) = pair(false);
    let r = s
        .call(
            "POST",
            "/v1/phone-numbers",
            k,
            Some(json!({
            "phone_number": "+15005550141", "provider": "twilio", "agent_id": agent,
            "provider_config": {"trunk_address": "sips:trunk.customer.example",
                                "tls_client_certificate": cert, "tls_client_key": key}})),
        )
        .await;
    assert_eq!(r.status, 201, "{}", r.text);
    assert!(
        !r.text.contains(key_body(&key)),
        "the key is never returned: {}",
        r.text
    );
    let pc = &r.json["provider_config"];
    assert_eq!(pc["tls_client_certificate"], cert.as_str());
    assert_eq!(pc["tls_client_key_set"], true);
    assert!(pc.get("tls_client_key").is_none());
    let id = r.json["id"].as_str().unwrap().to_owned();
    let path = format!("/v1/phone-numbers/{id}");
    for p in [path.as_str(), "/v1/phone-numbers"] {
        let r = s.call("GET", p, k, None).await;
        assert_eq!(r.status, 200, "{}", r.text);
        assert!(!r.text.contains(key_body(&key)), "{p}: {}", r.text);
        assert!(r.text.contains("\"tls_client_key_set\":true"), "{p}: {}", r.text);
    }
    let route = s.store.index().lookup_number("+15005550141").unwrap();
    let t = route.provider_config.as_ref().unwrap().tls_client.clone().unwrap();
    assert_eq!((t.certificate.as_str(), t.key.expose()), (cert.as_str(), key.as_str()));
    assert_eq!(t.fingerprint.len(), 64);

    // Refusals, each naming its field; nothing stored.
    let (other_cert, other_key) = pair(false);
    let (old_cert, old_key) = pair(true);
    let cases = [
        (
            json!({"tls_client_certificate": "not a certificate", "tls_client_key": key}),
            "provider_config.tls_client_certificate",
            "not PEM",
        ),
        (
            json!({"tls_client_certificate": cert, "tls_client_key": "-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n"}),
            "provider_config.tls_client_key",
            "private key",
        ),
        (
            json!({"tls_client_certificate": cert, "tls_client_key": other_key}),
            "provider_config.tls_client_key",
            "does not match the certificate",
        ),
        (
            json!({"tls_client_certificate": other_cert, "tls_client_key": key}),
            "provider_config.tls_client_key",
            "does not match the certificate",
        ),
        (
            json!({"tls_client_certificate": old_cert, "tls_client_key": old_key}),
            "provider_config.tls_client_certificate",
            "certificate expired at 2021-01-01",
        ),
        (
            json!({"tls_client_certificate": cert}),
            "provider_config.tls_client_key",
            "required",
        ),
        (
            json!({"tls_client_key": key}),
            "provider_config.tls_client_certificate",
            "required",
        ),
        (
            json!({"tls_client_certificate": "x".repeat(40_000), "tls_client_key": key}),
            "provider_config.tls_client_certificate",
            "at most",
        ),
    ];
    for (extra, field, words) in &cases {
        let mut pc = json!({"trunk_address": "sips:trunk.customer.example"});
        pc.as_object_mut().unwrap().extend(extra.as_object().unwrap().clone());
        let r = s
            .call(
                "POST",
                "/v1/phone-numbers",
                k,
                Some(json!({
                "phone_number": "+15005550142", "provider": "twilio", "agent_id": agent, "provider_config": pc})),
            )
            .await;
        assert_eq!(r.status, 400, "{field}: {}", r.text);
        assert_eq!(r.error().1.as_deref(), Some(*field), "{}", r.text);
        assert!(r.text.contains(words), "{field}: {}", r.text);
    }
    assert!(s.store.index().lookup_number("+15005550142").is_none());

    // PATCH: the same checks; a new pair replaces the old one (new fingerprint), null removes both.
    for (extra, field, words) in &cases[..5] {
        let r = s.call("PATCH", &path, k, Some(json!({"provider_config": extra}))).await;
        assert_eq!(r.status, 400, "{field}: {}", r.text);
        assert_eq!(r.error().1.as_deref(), Some(*field), "{}", r.text);
        assert!(r.text.contains(words), "{field}: {}", r.text);
    }
    let r = s
        .call(
            "PATCH",
            &path,
            k,
            Some(json!({"provider_config": {"tls_client_key": null}})),
        )
        .await;
    assert_eq!(r.status, 400, "{}", r.text);
    let r = s
        .call(
            "PATCH",
            &path,
            k,
            Some(json!({"provider_config": {"tls_client_certificate": other_cert, "tls_client_key": other_key}})),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert!(!r.text.contains(key_body(&other_key)));
    assert_eq!(r.json["provider_config"]["tls_client_certificate"], other_cert.as_str());
    let route = s.store.index().lookup_number("+15005550141").unwrap();
    let t2 = route.provider_config.as_ref().unwrap().tls_client.clone().unwrap();
    assert_eq!(t2.key.expose(), other_key);
    assert_ne!(t2.fingerprint, t.fingerprint);
    // Other changes keep the pair.
    let r = s
        .call(
            "PATCH",
            &path,
            k,
            Some(json!({"provider_config": {"auth_username": "u", "auth_password": "p"}})),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(r.json["provider_config"]["tls_client_key_set"], true);
    let route = s.store.index().lookup_number("+15005550141").unwrap();
    assert_eq!(
        route
            .provider_config
            .as_ref()
            .unwrap()
            .tls_client
            .as_ref()
            .unwrap()
            .fingerprint,
        t2.fingerprint
    );
    let r = s
        .call(
            "PATCH",
            &path,
            k,
            Some(json!({"provider_config": {"tls_client_certificate": null, "tls_client_key": null}})),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(r.json["provider_config"]["tls_client_certificate"], Value::Null);
    assert_eq!(r.json["provider_config"]["tls_client_key_set"], false);
    let route = s.store.index().lookup_number("+15005550141").unwrap();
    assert!(route.provider_config.as_ref().unwrap().tls_client.is_none());
    // Read back from the database, as a restarted node would.
    let r = s.call("GET", &path, k, None).await;
    assert_eq!(r.json["provider_config"]["tls_client_key_set"], false);
}
on_both_backends!(trunk_client_certificate);
