//! TelnyxProvider against a local server speaking Telnyx API v2's documented wire format.

mod common;

use std::collections::HashSet;

use common::{serve, Canned};
use edge_providers::{
    NumberProvider, ProviderError, ProviderKind, PurchasedNumber, SearchQuery, SecretString, TelnyxConfig,
    TelnyxProvider,
};

const KEY: &str = "KEY0123456789ABCDEF_secret";
const CONNECTION: &str = "1293384261075731499";
const ORDER_ID: &str = "12ade33a-21c0-473b-b055-b3c836e1c292";
const NUMBER_ID: &str = "1293384261075731461";

/// `GET /v2/available_phone_numbers` sample from Telnyx's API reference, plus entries with
/// state/rate-center region information as returned for NANP searches.
const SEARCH_BODY: &str = r#"{
  "data": [
    {
      "record_type": "available_phone_number",
      "phone_number": "+19705555098",
      "vanity_format": "",
      "best_effort": false,
      "quickship": true,
      "reservable": true,
      "region_information": [
        {"region_type": "country_code", "region_name": "US"}
      ],
      "cost_information": {"upfront_cost": "3.21", "monthly_cost": "6.54", "currency": "USD"},
      "features": [{"name": "sms"}, {"name": "voice"}]
    },
    {
      "record_type": "available_phone_number",
      "phone_number": "+19705555099",
      "vanity_format": "",
      "best_effort": false,
      "quickship": true,
      "reservable": false,
      "region_information": [
        {"region_type": "rate_center", "region_name": "FORT COLLINS"},
        {"region_type": "state", "region_name": "CO"},
        {"region_type": "country_code", "region_name": "US"}
      ],
      "cost_information": {"upfront_cost": "1.00", "monthly_cost": "1.00", "currency": "USD"},
      "features": [{"name": "voice"}, {"name": "emergency"}]
    },
    {
      "record_type": "available_phone_number",
      "phone_number": "+19705555100",
      "region_information": [],
      "features": [{"name": "voice"}]
    }
  ],
  "meta": {"total_results": 3, "best_effort_results": 0},
  "metadata": {"total_results": 3, "best_effort_results": 0}
}"#;

/// `POST /v2/number_orders` response sample.
const ORDER_BODY: &str = r#"{
  "data": {
    "id": "12ade33a-21c0-473b-b055-b3c836e1c292",
    "record_type": "number_order",
    "phone_numbers_count": 1,
    "connection_id": "1293384261075731499",
    "messaging_profile_id": null,
    "billing_group_id": null,
    "phone_numbers": [
      {
        "id": "dc8e4d67-33a0-4cbb-af74-7b58f05bd494",
        "record_type": "number_order_phone_number",
        "phone_number": "+19705555098",
        "regulatory_requirements": [],
        "requirements_met": true,
        "status": "success"
      }
    ],
    "sub_number_orders_ids": ["3e5b5a5d-5d8f-4d4f-9b5d-2f1f6f4f4b1a"],
    "status": "pending",
    "customer_reference": null,
    "created_at": "2018-01-01T00:00:00.000000Z",
    "updated_at": "2018-01-01T00:00:00.000000Z",
    "requirements_met": true
  }
}"#;

/// `GET /v2/phone_numbers?filter[phone_number]=...` response sample.
const NUMBERS_BODY: &str = r#"{
  "data": [
    {
      "id": "1293384261075731461",
      "record_type": "phone_number",
      "phone_number": "+19705555098",
      "status": "active",
      "tags": [],
      "connection_id": "1293384261075731499",
      "connection_name": "oneinbox",
      "customer_reference": null,
      "messaging_profile_id": null,
      "billing_group_id": null,
      "emergency_enabled": false,
      "call_forwarding_enabled": true,
      "cnam_listing_enabled": false,
      "caller_id_name_enabled": false,
      "call_recording_enabled": false,
      "t38_fax_gateway_enabled": false,
      "purchased_at": "2019-10-23T18:10:00.000Z",
      "created_at": "2019-10-23T18:10:00.000Z",
      "number_level_routing": "disabled",
      "phone_number_type": "local"
    }
  ],
  "meta": {"total_pages": 1, "total_results": 1, "page_number": 1, "page_size": 20}
}"#;

const DELETE_BODY: &str = r#"{
  "data": {
    "id": "1293384261075731461",
    "record_type": "phone_number",
    "phone_number": "+19705555098",
    "status": "deleted",
    "connection_id": "1293384261075731499",
    "updated_at": "2019-10-23T18:10:00.000Z"
  }
}"#;

fn provider(base_url: &str, connection: Option<&str>) -> TelnyxProvider {
    TelnyxProvider::new(TelnyxConfig {
        api_key: SecretString::new(KEY),
        connection_id: connection.map(str::to_owned),
        base_url: Some(base_url.to_owned()),
    })
    .unwrap()
}

fn query(limit: usize) -> SearchQuery {
    SearchQuery {
        country: "US".to_owned(),
        area_code: Some("970".to_owned()),
        contains: None,
        limit,
        exclude: HashSet::new(),
    }
}

fn pairs(items: &[(&str, &str)]) -> Vec<(String, String)> {
    items.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect()
}

fn purchased() -> PurchasedNumber {
    PurchasedNumber {
        phone_number: "+19705555098".to_owned(),
        provider: ProviderKind::Telnyx,
        provider_ref: ORDER_ID.to_owned(),
    }
}

#[tokio::test]
async fn search_sends_documented_filters_and_maps_numbers() {
    let server = serve(vec![Canned::json(200, SEARCH_BODY)]).await;
    let telnyx = provider(&server.base_url, None);

    let found = telnyx.search(&query(10)).await.unwrap();

    let req = &server.requests()[0];
    assert_eq!(req.method, "GET");
    assert_eq!(req.path(), "/v2/available_phone_numbers");
    assert_eq!(
        req.query(),
        pairs(&[
            ("filter[country_code]", "US"),
            ("filter[national_destination_code]", "970"),
            ("filter[limit]", "10"),
            // The documented spelling (the SDKs send it), and geographic numbers only.
            ("filter[features]", "voice"),
            ("filter[phone_number_type]", "local"),
        ])
    );
    assert_eq!(req.header("authorization"), Some(format!("Bearer {KEY}")));

    assert_eq!(found.len(), 3);
    let first = &found[0];
    assert_eq!(first.phone_number, "+19705555098");
    assert_eq!(first.friendly_name.as_deref(), Some("(970) 555-5098"));
    assert_eq!(first.country, "US");
    assert_eq!(first.area_code.as_deref(), Some("970"));
    assert_eq!(first.monthly_cost.as_deref(), Some("6.54"));
    assert_eq!(first.capabilities, ["sms", "voice"]);
    assert_eq!(first.region, None);
    let second = &found[1];
    assert_eq!(second.region.as_deref(), Some("CO"));
    assert_eq!(second.locality.as_deref(), Some("FORT COLLINS"));
    assert_eq!(second.capabilities, ["voice", "emergency"]);
    assert_eq!(found[2].monthly_cost, None);
}

#[tokio::test]
async fn search_applies_exclude_contains_and_limit() {
    let server = serve(vec![Canned::json(200, SEARCH_BODY)]).await;
    let telnyx = provider(&server.base_url, None);
    let mut q = query(1);
    q.contains = Some("50".to_owned());
    q.exclude.insert("+19705555098".to_owned());

    let found = telnyx.search(&q).await.unwrap();

    // +19705555098 is owned; the next match fills the limit of 1.
    assert_eq!(found.len(), 1);
    assert_eq!(found[0].phone_number, "+19705555099");
    let req = &server.requests()[0];
    assert!(req
        .query()
        .contains(&("filter[phone_number][contains]".to_owned(), "50".to_owned())));
    // One extra row requested per owned number, to fill the page after dropping them.
    assert!(req.query().contains(&("filter[limit]".to_owned(), "2".to_owned())));
}

#[tokio::test]
async fn purchase_creates_number_order() {
    let server = serve(vec![Canned::json(200, ORDER_BODY)]).await;
    let telnyx = provider(&server.base_url, Some(CONNECTION));

    let bought = telnyx.purchase("+19705555098").await.unwrap();

    assert_eq!(bought, purchased());
    let req = &server.requests()[0];
    assert_eq!(req.method, "POST");
    assert_eq!(req.path(), "/v2/number_orders");
    assert_eq!(req.header("content-type").as_deref(), Some("application/json"));
    assert_eq!(
        req.json(),
        serde_json::json!({
            "phone_numbers": [{"phone_number": "+19705555098"}],
            "connection_id": CONNECTION,
        })
    );
    assert_eq!(req.header("authorization"), Some(format!("Bearer {KEY}")));
}

#[tokio::test]
async fn purchase_without_connection_omits_it() {
    let server = serve(vec![Canned::json(200, ORDER_BODY)]).await;
    provider(&server.base_url, None).purchase("+19705555098").await.unwrap();
    assert_eq!(
        server.requests()[0].json(),
        serde_json::json!({"phone_numbers": [{"phone_number": "+19705555098"}]})
    );
}

#[tokio::test]
async fn failed_order_is_not_available() {
    let failed = ORDER_BODY.replace("\"status\": \"success\"", "\"status\": \"failure\"");
    let server = serve(vec![Canned::json(200, &failed)]).await;
    let err = provider(&server.base_url, None)
        .purchase("+19705555098")
        .await
        .unwrap_err();
    assert_eq!(err, ProviderError::NotAvailable("+19705555098".to_owned()));
}

#[tokio::test]
async fn release_looks_up_number_id_then_deletes() {
    let server = serve(vec![Canned::json(200, NUMBERS_BODY), Canned::json(200, DELETE_BODY)]).await;
    let telnyx = provider(&server.base_url, None);

    telnyx.release(&purchased()).await.unwrap();

    let reqs = server.requests();
    assert_eq!(reqs.len(), 2);
    assert_eq!(reqs[0].method, "GET");
    assert_eq!(reqs[0].path(), "/v2/phone_numbers");
    // Telnyx matches digits only: with a `+` the filter finds nothing and the number would
    // look released while it is still billed.
    assert_eq!(reqs[0].query(), pairs(&[("filter[phone_number]", "19705555098")]));
    assert!(!reqs[0].target.contains("%2B"), "{}", reqs[0].target);
    assert_eq!(reqs[1].method, "DELETE");
    assert_eq!(reqs[1].path(), format!("/v2/phone_numbers/{NUMBER_ID}"));
    for r in &reqs {
        assert_eq!(r.header("authorization"), Some(format!("Bearer {KEY}")));
    }
}

#[tokio::test]
async fn release_of_number_no_longer_on_account_is_ok() {
    let server = serve(vec![Canned::json(
        200,
        r#"{"data": [], "meta": {"total_pages": 0, "total_results": 0, "page_number": 1, "page_size": 20}}"#,
    )])
    .await;
    provider(&server.base_url, None).release(&purchased()).await.unwrap();
    assert_eq!(server.requests().len(), 1);
}

#[tokio::test]
async fn error_bodies_map_to_upstream_with_detail() {
    let unexpected = r#"{"errors": [{"code": "10007", "title": "Unexpected error", "detail": "An unexpected error occured.", "source": {"pointer": "/base"}, "meta": {"url": "https://developers.telnyx.com/docs/overview/errors/10007"}}]}"#;
    let auth = r#"{"errors": [{"code": "10009", "title": "Authentication failed", "detail": "The API key looks malformed. Check that you copied it correctly.", "meta": {"url": "https://developers.telnyx.com/docs/overview/errors/10009"}}]}"#;
    let server = serve(vec![
        Canned::json(500, unexpected),
        Canned::json(401, auth),
        Canned::json(503, ""),
    ])
    .await;
    let telnyx = provider(&server.base_url, None);

    let err = telnyx.search(&query(5)).await.unwrap_err();
    assert!(
        matches!(&err, ProviderError::Upstream { status: 500, message }
            if message.contains("An unexpected error occured.") && message.contains("10007")),
        "{err:?}"
    );
    let err = telnyx.purchase("+19705555098").await.unwrap_err();
    assert!(
        matches!(&err, ProviderError::Unauthorized(message)
            if message.contains("The API key looks malformed")),
        "{err:?}"
    );
    assert!(!err.to_string().contains(KEY));
    let err = telnyx.release(&purchased()).await.unwrap_err();
    assert!(matches!(&err, ProviderError::Upstream { status: 503, .. }), "{err:?}");
}

#[tokio::test]
async fn pending_order_is_followed_until_it_settles() {
    let pending = ORDER_BODY.replace("\"status\": \"success\"", "\"status\": \"pending\"");
    let failed = ORDER_BODY.replace("\"status\": \"success\"", "\"status\": \"failure\"");
    let server = serve(vec![
        Canned::json(200, &pending),
        Canned::json(200, &pending),
        Canned::json(200, ORDER_BODY),
        Canned::json(200, &pending),
        Canned::json(200, &failed),
    ])
    .await;
    let telnyx = provider(&server.base_url, None);
    assert_eq!(telnyx.purchase("+19705555098").await.unwrap(), purchased());
    let reqs = server.requests();
    assert_eq!(reqs.len(), 3);
    assert_eq!(reqs[1].method, "GET");
    assert_eq!(reqs[1].path(), format!("/v2/number_orders/{ORDER_ID}"));
    // A pending order that then fails was never bought.
    let err = telnyx.purchase("+19705555098").await.unwrap_err();
    assert_eq!(err, ProviderError::NotAvailable("+19705555098".to_owned()));
}

#[tokio::test]
async fn hostile_ids_never_reach_a_url() {
    let evil = NUMBERS_BODY.replace(NUMBER_ID, "../number_orders");
    let server = serve(vec![Canned::json(200, &evil)]).await;
    let err = provider(&server.base_url, None)
        .release(&purchased())
        .await
        .unwrap_err();
    assert!(matches!(err, ProviderError::Transport(_)), "{err:?}");
    assert_eq!(server.requests().len(), 1);
}

#[tokio::test]
async fn invalid_input_never_reaches_upstream() {
    let server = serve(vec![]).await;
    let telnyx = provider(&server.base_url, None);
    let mut q = query(5);
    q.country = "usa".to_owned();
    assert!(matches!(
        telnyx.search(&q).await,
        Err(ProviderError::InvalidRequest { ref field, .. }) if field == "country"
    ));
    assert!(matches!(
        telnyx.search(&query(0)).await,
        Err(ProviderError::InvalidRequest { ref field, .. }) if field == "limit"
    ));
    assert!(matches!(
        telnyx.purchase("+1 970 555").await,
        Err(ProviderError::InvalidRequest { ref field, .. }) if field == "phone_number"
    ));
    let foreign = PurchasedNumber {
        provider: ProviderKind::Twilio,
        ..purchased()
    };
    assert!(matches!(
        telnyx.release(&foreign).await,
        Err(ProviderError::InvalidRequest { ref field, .. }) if field == "provider"
    ));
    assert!(server.requests().is_empty());
}

#[test]
fn config_is_validated_and_secret_redacted() {
    let cfg = TelnyxConfig {
        api_key: SecretString::new(KEY),
        connection_id: Some(CONNECTION.to_owned()),
        base_url: None,
    };
    let p = TelnyxProvider::new(cfg.clone()).unwrap();
    assert_eq!(p.kind(), ProviderKind::Telnyx);
    assert!(!format!("{p:?}").contains(KEY));
    assert!(!format!("{cfg:?}").contains(KEY));

    let mut c = cfg.clone();
    c.api_key = SecretString::new("has space");
    assert!(matches!(TelnyxProvider::new(c),
        Err(ProviderError::InvalidRequest { ref field, .. }) if field == "api_key"));
    let mut c = cfg.clone();
    c.connection_id = Some("a/b".to_owned());
    assert!(matches!(TelnyxProvider::new(c),
        Err(ProviderError::InvalidRequest { ref field, .. }) if field == "connection_id"));
    let mut c = cfg;
    c.base_url = Some("https://api.telnyx.com/?x=1".to_owned());
    assert!(matches!(TelnyxProvider::new(c),
        Err(ProviderError::InvalidRequest { ref field, .. }) if field == "base_url"));
}

#[test]
fn config_deserializes_from_operator_file() {
    let cfg: TelnyxConfig = serde_json::from_str(r#"{"api_key": "KEYabc"}"#).unwrap();
    assert_eq!(cfg.api_key.expose(), "KEYabc");
    assert_eq!(cfg.base_url, None);
}
