//! Item 8: numbers that cannot exist in the North American plan, `null`s that would be silently
//! ignored, and names that display as something else are all 400s naming the field.

mod common;

use common::Server;
use serde_json::json;

async fn nanp_nulls_and_names(s: &Server) {
    let (_, key) = s.key().await;
    let k = Some(key.as_str());
    let r = s
        .call(
            "POST",
            "/v1/agents",
            k,
            Some(json!({"name": "A", "sip_uri": "sip:a@10.0.0.5"})),
        )
        .await;
    assert_eq!(r.status, 201, "{}", r.text);
    let agent = r.json["id"].as_str().unwrap().to_owned();

    for n in ["+10115550100", "+14150550100", "+1415555010"] {
        let r = s
            .call(
                "POST",
                "/v1/phone-numbers",
                k,
                Some(json!({"phone_number": n, "provider": "twilio", "agent_id": agent,
                    "provider_config": {"trunk_address": "t.pstn.twilio.com"}})),
            )
            .await;
        assert_eq!(r.status, 400, "{n}: {}", r.text);
        assert_eq!(r.error().1.as_deref(), Some("phone_number"), "{n}");
    }
    let r = s
        .call(
            "POST",
            "/v1/phone-numbers",
            k,
            Some(
                json!({"phone_number": "+14155550177", "provider": "twilio", "agent_id": agent,
                "provider_config": {"trunk_address": "t.pstn.twilio.com", "auth_username": "u", "auth_password": "p"}}),
            ),
        )
        .await;
    assert_eq!(r.status, 201, "{}", r.text);
    let number = r.json["id"].as_str().unwrap().to_owned();

    // null is refused where clearing makes no sense, and changes nothing.
    for (body, field) in [
        (json!({"provider_config": null}), "provider_config"),
        (
            json!({"provider_config": {"trunk_address": null}}),
            "provider_config.trunk_address",
        ),
    ] {
        let r = s
            .call("PATCH", &format!("/v1/phone-numbers/{number}"), k, Some(body.clone()))
            .await;
        assert_eq!(r.status, 400, "{body}: {}", r.text);
        assert_eq!(r.error().1.as_deref(), Some(field), "{body}");
    }
    let r = s.call("GET", &format!("/v1/phone-numbers/{number}"), k, None).await;
    assert_eq!(r.json["provider_config"]["trunk_address"], "t.pstn.twilio.com");
    assert_eq!(r.json["provider_config"]["auth_password_set"], true);
    // ...and clears where it does.
    let r = s
        .call(
            "PATCH",
            &format!("/v1/phone-numbers/{number}"),
            k,
            Some(json!({"friendly_name": null})),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text);

    for (body, field) in [
        (json!({"name": null}), "name"),
        (json!({"sip_uri": null}), "sip_uri"),
        (json!({"max_concurrent_calls": null}), "max_concurrent_calls"),
        (json!({"status": null}), "status"),
        (json!({"name": "evil\u{202E}gpj.exe"}), "name"),
        (json!({"name": "two\nlines"}), "name"),
    ] {
        let r = s
            .call("PATCH", &format!("/v1/agents/{agent}"), k, Some(body.clone()))
            .await;
        assert_eq!(r.status, 400, "{body}: {}", r.text);
        assert_eq!(r.error().1.as_deref(), Some(field), "{body}");
    }
    let r = s
        .call(
            "POST",
            "/v1/agents",
            k,
            Some(json!({"name": "a\u{2067}b", "sip_uri": "sip:a@10.0.0.5"})),
        )
        .await;
    assert_eq!(r.status, 400, "{}", r.text);
    assert_eq!(r.error().1.as_deref(), Some("name"));
}
on_both_backends!(nanp_nulls_and_names);
