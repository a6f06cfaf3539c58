//! TwilioProvider against a local server speaking Twilio's documented REST wire format.

mod common;

use std::collections::HashSet;

use common::{base64, serve, Canned};
use edge_providers::{
    NumberProvider, ProviderError, ProviderKind, PurchasedNumber, SearchQuery, SecretString, TwilioConfig,
    TwilioProvider,
};

const SID: &str = "ACaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa";
const TOKEN: &str = "s3cr3t-auth-token-value";
const TRUNK: &str = "TKbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb";
const PN: &str = "PNcccccccccccccccccccccccccccccccc";

/// Shape of the AvailablePhoneNumbers Local list from Twilio's docs; the API spells the
/// capabilities `voice`/`SMS`/`MMS` (second entry), doc samples lower case (first entry).
const SEARCH_BODY: &str = r#"{
  "available_phone_numbers": [
    {
      "address_requirements": "none",
      "beta": false,
      "capabilities": {"mms": true, "sms": false, "voice": true},
      "friendly_name": "(415) 555-5501",
      "iso_country": "US",
      "lata": "722",
      "latitude": "37.780000",
      "locality": "San Francisco",
      "longitude": "-122.410000",
      "phone_number": "+14155555501",
      "postal_code": "94103",
      "rate_center": "SNFC CNTRL",
      "region": "CA"
    },
    {
      "address_requirements": "none",
      "beta": false,
      "capabilities": {"voice": true, "SMS": true, "MMS": false},
      "friendly_name": "(415) 555-5502",
      "iso_country": "US",
      "lata": "722",
      "locality": null,
      "phone_number": "+14155555502",
      "postal_code": null,
      "rate_center": "SNFC CNTRL",
      "region": "CA"
    },
    {
      "capabilities": {"voice": true, "SMS": true, "MMS": true},
      "friendly_name": "(415) 555-5503",
      "iso_country": "US",
      "locality": "San Francisco",
      "phone_number": "+14155555503",
      "region": "CA"
    },
    {
      "capabilities": {"voice": true},
      "friendly_name": "bogus",
      "iso_country": "US",
      "phone_number": "not-a-number",
      "region": "CA"
    }
  ],
  "end": 3,
  "first_page_uri": "/2010-04-01/Accounts/ACaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa/AvailablePhoneNumbers/US/Local.json?AreaCode=415&PageSize=4&Page=0",
  "next_page_uri": null,
  "page": 0,
  "page_size": 4,
  "previous_page_uri": null,
  "start": 0,
  "uri": "/2010-04-01/Accounts/ACaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa/AvailablePhoneNumbers/US/Local.json?AreaCode=415&PageSize=4"
}"#;

/// IncomingPhoneNumber create response (201), trimmed to documented fields.
const PURCHASE_BODY: &str = r#"{
  "account_sid": "ACaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa",
  "address_requirements": "none",
  "api_version": "2010-04-01",
  "beta": false,
  "capabilities": {"voice": true, "sms": false, "mms": true, "fax": false},
  "date_created": "Thu, 30 Jul 2015 23:19:04 +0000",
  "date_updated": "Thu, 30 Jul 2015 23:19:04 +0000",
  "emergency_status": "Active",
  "friendly_name": "(415) 555-5502",
  "origin": "twilio",
  "phone_number": "+14155555502",
  "sid": "PNcccccccccccccccccccccccccccccccc",
  "status": "in-use",
  "trunk_sid": "TKbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb",
  "uri": "/2010-04-01/Accounts/ACaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa/IncomingPhoneNumbers/PNcccccccccccccccccccccccccccccccc.json",
  "voice_receive_mode": "voice"
}"#;

fn provider(base_url: &str, trunk: Option<&str>) -> TwilioProvider {
    TwilioProvider::new(TwilioConfig {
        account_sid: SID.to_owned(),
        auth_token: SecretString::new(TOKEN),
        trunk_sid: trunk.map(str::to_owned),
        base_url: Some(base_url.to_owned()),
    })
    .unwrap()
}

fn expected_auth() -> String {
    format!("Basic {}", base64(format!("{SID}:{TOKEN}").as_bytes()))
}

fn query(limit: usize) -> SearchQuery {
    SearchQuery {
        country: "US".to_owned(),
        area_code: Some("415".to_owned()),
        contains: None,
        limit,
        exclude: HashSet::new(),
    }
}

fn pairs(items: &[(&str, &str)]) -> Vec<(String, String)> {
    items.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect()
}

#[tokio::test]
async fn search_sends_documented_request_and_maps_numbers() {
    let server = serve(vec![Canned::json(200, SEARCH_BODY)]).await;
    let twilio = provider(&server.base_url, None);
    let mut q = query(2);
    q.contains = Some("555".to_owned());
    q.exclude.insert("+14155555501".to_owned());

    let found = twilio.search(&q).await.unwrap();

    let reqs = server.requests();
    assert_eq!(reqs.len(), 1);
    let req = &reqs[0];
    assert_eq!(req.method, "GET");
    assert_eq!(
        req.path(),
        format!("/2010-04-01/Accounts/{SID}/AvailablePhoneNumbers/US/Local.json")
    );
    assert_eq!(
        req.query(),
        pairs(&[
            ("AreaCode", "415"),
            ("Contains", "555"),
            ("PageSize", "3"),
            ("VoiceEnabled", "true")
        ])
    );
    assert_eq!(req.header("authorization"), Some(expected_auth()));

    // Owned number dropped, invalid entry dropped, truncated to the limit.
    assert_eq!(found.len(), 2);
    assert_eq!(found[0].phone_number, "+14155555502");
    assert_eq!(found[0].friendly_name.as_deref(), Some("(415) 555-5502"));
    assert_eq!(found[0].country, "US");
    assert_eq!(found[0].region.as_deref(), Some("CA"));
    assert_eq!(found[0].locality, None);
    assert_eq!(found[0].area_code.as_deref(), Some("415"));
    assert_eq!(found[0].capabilities, ["voice", "sms"]);
    assert_eq!(found[1].phone_number, "+14155555503");
    assert_eq!(found[1].locality.as_deref(), Some("San Francisco"));
    assert_eq!(found[1].capabilities, ["voice", "sms", "mms"]);
}

#[tokio::test]
async fn lower_case_capabilities_are_understood() {
    let server = serve(vec![Canned::json(200, SEARCH_BODY)]).await;
    let found = provider(&server.base_url, None).search(&query(1)).await.unwrap();
    assert_eq!(found[0].phone_number, "+14155555501");
    assert_eq!(found[0].capabilities, ["voice", "mms"]);
}

#[tokio::test]
async fn purchase_posts_form_and_returns_sid() {
    let server = serve(vec![Canned::json(201, PURCHASE_BODY)]).await;
    let twilio = provider(&server.base_url, Some(TRUNK));

    let bought = twilio.purchase("+14155555502").await.unwrap();

    assert_eq!(
        bought,
        PurchasedNumber {
            phone_number: "+14155555502".to_owned(),
            provider: ProviderKind::Twilio,
            provider_ref: PN.to_owned(),
        }
    );
    let req = &server.requests()[0];
    assert_eq!(req.method, "POST");
    assert_eq!(
        req.path(),
        format!("/2010-04-01/Accounts/{SID}/IncomingPhoneNumbers.json")
    );
    assert_eq!(
        req.header("content-type").as_deref(),
        Some("application/x-www-form-urlencoded")
    );
    assert_eq!(
        req.form(),
        pairs(&[("PhoneNumber", "+14155555502"), ("TrunkSid", TRUNK)])
    );
    assert_eq!(req.header("authorization"), Some(expected_auth()));
}

#[tokio::test]
async fn release_deletes_incoming_number() {
    let server = serve(vec![Canned::json(204, "")]).await;
    let twilio = provider(&server.base_url, None);
    let bought = PurchasedNumber {
        phone_number: "+14155555502".to_owned(),
        provider: ProviderKind::Twilio,
        provider_ref: PN.to_owned(),
    };
    twilio.release(&bought).await.unwrap();
    let req = &server.requests()[0];
    assert_eq!(req.method, "DELETE");
    assert_eq!(
        req.path(),
        format!("/2010-04-01/Accounts/{SID}/IncomingPhoneNumbers/{PN}.json")
    );
    assert_eq!(req.header("authorization"), Some(expected_auth()));
}

#[tokio::test]
async fn release_of_missing_number_is_ok_but_other_errors_are_not() {
    let not_found = r#"{"code": 20404, "message": "The requested resource /2010-04-01/Accounts/ACaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa/IncomingPhoneNumbers/PNcccccccccccccccccccccccccccccccc.json was not found", "more_info": "https://www.twilio.com/docs/errors/20404", "status": 404}"#;
    let server = serve(vec![Canned::json(404, not_found), Canned::json(500, "oops")]).await;
    let twilio = provider(&server.base_url, None);
    let bought = PurchasedNumber {
        phone_number: "+14155555502".to_owned(),
        provider: ProviderKind::Twilio,
        provider_ref: PN.to_owned(),
    };
    assert!(twilio.release(&bought).await.is_ok());
    match twilio.release(&bought).await.unwrap_err() {
        ProviderError::Upstream { status, .. } => assert_eq!(status, 500),
        other => panic!("unexpected {other:?}"),
    }
}

#[tokio::test]
async fn error_bodies_map_to_errors_with_message() {
    let search_err = r#"{"code": 21452, "message": "No phone numbers found in area code 415", "more_info": "https://www.twilio.com/docs/errors/21452", "status": 400}"#;
    let auth_err = r#"{"code": 20003, "detail": "Your AccountSid or AuthToken was incorrect.", "message": "Authenticate", "more_info": "https://www.twilio.com/docs/errors/20003", "status": 401}"#;
    let server = serve(vec![
        Canned::json(400, search_err),
        Canned::json(401, auth_err),
        Canned::json(502, "<html>bad gateway</html>"),
        Canned::json(400, r#"{"code": 20001, "message": "Invalid parameter", "status": 400}"#),
    ])
    .await;
    let twilio = provider(&server.base_url, None);

    // 21452 "no phone numbers found" on a search is an empty result, not a failure.
    assert_eq!(twilio.search(&query(5)).await.unwrap(), Vec::new());
    let err = twilio.purchase("+14155555502").await.unwrap_err();
    assert!(
        matches!(&err, ProviderError::Unauthorized(message) if message.contains("Authenticate")),
        "{err:?}"
    );
    assert!(!err.to_string().contains(TOKEN));
    let err = twilio.search(&query(5)).await.unwrap_err();
    assert!(matches!(&err, ProviderError::Upstream { status: 502, .. }), "{err:?}");
    let err = twilio.search(&query(5)).await.unwrap_err();
    assert!(
        matches!(&err, ProviderError::Upstream { status: 400, message } if message.contains("Invalid parameter") && message.contains("20001")),
        "{err:?}"
    );
}

#[tokio::test]
async fn invalid_input_never_reaches_upstream() {
    let server = serve(vec![]).await;
    let twilio = provider(&server.base_url, None);
    let mut q = query(5);
    q.area_code = Some("011".to_owned());
    assert!(matches!(
        twilio.search(&q).await,
        Err(ProviderError::InvalidRequest { ref field, .. }) if field == "area_code"
    ));
    assert!(matches!(
        twilio.purchase("4155555502").await,
        Err(ProviderError::InvalidRequest { ref field, .. }) if field == "phone_number"
    ));
    let path_trick = PurchasedNumber {
        phone_number: "+14155555502".to_owned(),
        provider: ProviderKind::Twilio,
        provider_ref: "../../Calls".to_owned(),
    };
    assert!(matches!(
        twilio.release(&path_trick).await,
        Err(ProviderError::InvalidRequest { ref field, .. }) if field == "provider_ref"
    ));
    let foreign = PurchasedNumber {
        provider: ProviderKind::Local,
        provider_ref: PN.to_owned(),
        ..path_trick
    };
    assert!(matches!(
        twilio.release(&foreign).await,
        Err(ProviderError::InvalidRequest { ref field, .. }) if field == "provider"
    ));
    assert!(server.requests().is_empty());
}

#[tokio::test]
async fn oversized_body_is_rejected() {
    let huge = format!(
        r#"{{"available_phone_numbers": [], "pad": "{}"}}"#,
        "x".repeat(1024 * 1024 + 1)
    );
    let server = serve(vec![Canned::json(200, &huge)]).await;
    let err = provider(&server.base_url, None).search(&query(5)).await.unwrap_err();
    assert!(
        matches!(err, ProviderError::Transport(ref m) if m.contains("larger")),
        "{err:?}"
    );
}

#[tokio::test]
async fn oversized_chunked_body_is_rejected_while_streaming() {
    let huge = format!(
        r#"{{"available_phone_numbers": [], "pad": "{}"}}"#,
        "x".repeat(2 * 1024 * 1024)
    );
    let server = serve(vec![Canned::chunked(200, &huge)]).await;
    let err = provider(&server.base_url, None).search(&query(5)).await.unwrap_err();
    assert!(
        matches!(err, ProviderError::Transport(ref m) if m.contains("larger")),
        "{err:?}"
    );
}

#[tokio::test]
async fn small_chunked_body_is_read() {
    let server = serve(vec![Canned::chunked(200, SEARCH_BODY)]).await;
    let found = provider(&server.base_url, None).search(&query(3)).await.unwrap();
    assert_eq!(found.len(), 3);
}

/// The https path goes through rustls with the ring provider: a peer that does not speak
/// TLS must give a transport error, not a panic (e.g. a missing crypto provider).
#[tokio::test]
async fn https_uses_rustls_and_fails_cleanly_against_plain_http() {
    let server = serve(vec![Canned::json(200, SEARCH_BODY)]).await;
    let https = server.base_url.replacen("http://", "https://", 1);
    let err = provider(&https, None).search(&query(5)).await.unwrap_err();
    assert!(matches!(err, ProviderError::Transport(_)), "{err:?}");
    assert!(server.requests().is_empty(), "no plaintext request was sent");
}

#[tokio::test]
async fn unreachable_upstream_is_transport_error() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    drop(listener);
    let err = provider(&format!("http://{addr}"), None)
        .search(&query(5))
        .await
        .unwrap_err();
    assert!(matches!(err, ProviderError::Transport(_)), "{err:?}");
    assert!(!err.to_string().contains(TOKEN));
}

#[test]
fn config_is_validated_and_secret_redacted() {
    let cfg = TwilioConfig {
        account_sid: SID.to_owned(),
        auth_token: SecretString::new(TOKEN),
        trunk_sid: None,
        base_url: None,
    };
    let p = TwilioProvider::new(cfg.clone()).unwrap();
    assert_eq!(p.kind(), ProviderKind::Twilio);
    assert!(!format!("{p:?}").contains(TOKEN));
    assert!(!format!("{cfg:?}").contains(TOKEN));

    let bad = |f: &dyn Fn(&mut TwilioConfig), field: &str| {
        let mut c = cfg.clone();
        f(&mut c);
        match TwilioProvider::new(c) {
            Err(ProviderError::InvalidRequest { field: got, .. }) => assert_eq!(got, field),
            other => panic!("expected invalid {field}, got {other:?}"),
        }
    };
    bad(&|c| c.account_sid = "AC123".to_owned(), "account_sid");
    bad(&|c| c.account_sid = format!("{SID}/x"), "account_sid");
    bad(&|c| c.auth_token = SecretString::new(""), "auth_token");
    bad(&|c| c.trunk_sid = Some("nope".to_owned()), "trunk_sid");
    bad(&|c| c.base_url = Some("ftp://api.twilio.com".to_owned()), "base_url");
    bad(
        &|c| c.base_url = Some("https://u:p@api.twilio.com".to_owned()),
        "base_url",
    );
    bad(&|c| c.base_url = Some("not a url".to_owned()), "base_url");
}

#[tokio::test]
async fn area_code_is_sent_for_us_and_canada_only() {
    let server = serve(vec![
        Canned::json(200, SEARCH_BODY),
        Canned::json(200, r#"{"available_phone_numbers": []}"#),
    ])
    .await;
    let twilio = provider(&server.base_url, None);
    twilio.search(&query(2)).await.unwrap();
    let mut gb = query(2);
    gb.country = "GB".to_owned();
    gb.area_code = Some("20".to_owned());
    twilio.search(&gb).await.unwrap();
    let reqs = server.requests();
    assert!(reqs[0].query().iter().any(|(k, _)| k == "AreaCode"));
    assert!(
        !reqs[1].query().iter().any(|(k, _)| k == "AreaCode"),
        "Twilio's AreaCode filter is US/CA only: {:?}",
        reqs[1].query()
    );
}

#[tokio::test]
async fn not_available_and_regulatory_errors_are_named() {
    let server = serve(vec![
        Canned::json(
            400,
            r#"{"code": 21422, "message": "PhoneNumber requested is not available", "more_info": "https://www.twilio.com/docs/errors/21422", "status": 400}"#,
        ),
        Canned::json(
            400,
            r#"{"code": 21631, "message": "Phone Number Requires an Address", "more_info": "https://www.twilio.com/docs/errors/21631", "status": 400}"#,
        ),
    ])
    .await;
    let twilio = provider(&server.base_url, None);
    let err = twilio.purchase("+14155555502").await.unwrap_err();
    assert!(
        matches!(&err, ProviderError::NotAvailable(m) if m.contains("21422")),
        "{err:?}"
    );
    let err = twilio.purchase("+14155555502").await.unwrap_err();
    assert!(
        matches!(&err, ProviderError::Regulatory(m) if m.contains("Address")),
        "{err:?}"
    );
}

#[tokio::test]
async fn rate_limited_requests_are_retried() {
    let server = serve(vec![
        Canned::json(429, r#"{"code": 20429, "message": "Too Many Requests", "status": 429}"#),
        Canned::json(200, SEARCH_BODY),
    ])
    .await;
    let found = provider(&server.base_url, None).search(&query(2)).await.unwrap();
    assert_eq!(found.len(), 2);
    assert_eq!(server.requests().len(), 2);
}
