//! `/v1/api-keys`: listed by prefix only (a key is never shown after it is created), revoked
//! keys stop working at once, and other accounts' keys are invisible.

mod common;

use common::Server;
use serde_json::json;

async fn list_create_revoke(s: &Server) {
    let (_, key) = s.key().await;
    let k = Some(key.as_str());
    let (_, other) = s.key().await;

    let r = s.call("GET", "/v1/api-keys", k, None).await;
    assert_eq!(r.status, 200, "{}", r.text);
    let data = r.json["data"].as_array().unwrap();
    assert_eq!(data.len(), 1, "{}", r.text);
    assert_eq!(data[0]["prefix"], key[..12]);
    assert!(data[0]["id"].as_str().unwrap().starts_with("key_"));
    assert!(!r.text.contains(&key), "a listing must not show the key");
    assert_eq!(r.json["has_more"], false);

    // A second key: shown once, then only by prefix.
    let r = s
        .call("POST", "/v1/api-keys", k, Some(json!({"name": "rotation"})))
        .await;
    assert_eq!(r.status, 201, "{}", r.text);
    let new_key = r.json["key"].as_str().unwrap().to_owned();
    let new_id = r.json["id"].as_str().unwrap().to_owned();
    assert_eq!(r.json["prefix"], new_key[..12]);
    let r = s.call("GET", "/v1/api-keys", Some(&new_key), None).await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(r.json["data"].as_array().unwrap().len(), 2);
    assert_eq!(r.json["data"][0]["id"], new_id, "newest first");
    assert!(!r.text.contains(&new_key) && !r.text.contains(&key));

    // Another account sees neither and cannot revoke them.
    let r = s.call("GET", "/v1/api-keys", Some(&other), None).await;
    assert_eq!(r.json["data"].as_array().unwrap().len(), 1);
    let r = s
        .call("DELETE", &format!("/v1/api-keys/{new_id}"), Some(&other), None)
        .await;
    assert_eq!(r.status, 404, "{}", r.text);

    // A key cannot revoke itself (a script would lock itself out half-way): 409, and it still works.
    let r = s
        .call("DELETE", &format!("/v1/api-keys/{new_id}"), Some(&new_key), None)
        .await;
    assert_eq!((r.status, r.error().0.as_str()), (409, "key_in_use"), "{}", r.text);
    let r = s.call("GET", "/v1/agents", Some(&new_key), None).await;
    assert_eq!(r.status, 200, "{}", r.text);

    // Revoked with the other key: it stops working at once, the other key goes on.
    let r = s.call("DELETE", &format!("/v1/api-keys/{new_id}"), k, None).await;
    assert_eq!(r.status, 204, "{}", r.text);
    let r = s.call("GET", "/v1/agents", Some(&new_key), None).await;
    assert_eq!(r.status, 401, "{}", r.text);
    let r = s.call("GET", "/v1/agents", k, None).await;
    assert_eq!(r.status, 200, "{}", r.text);
    let r = s.call("DELETE", &format!("/v1/api-keys/{new_id}"), k, None).await;
    assert_eq!(r.status, 404, "{}", r.text);
    let r = s.call("DELETE", "/v1/api-keys/nonsense", k, None).await;
    assert_eq!(r.status, 404, "{}", r.text);
}
on_both_backends!(list_create_revoke);
