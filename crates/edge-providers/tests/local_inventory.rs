//! LocalInventory: fictional NANP block, declared ranges, exclude/contains/limit, validation.

use std::collections::HashSet;

use edge_providers::{
    InventoryRange, LocalInventory, NumberProvider, ProviderError, ProviderKind, PurchasedNumber, SearchQuery,
    MAX_SEARCH_LIMIT,
};

fn query(country: &str, area_code: Option<&str>, limit: usize) -> SearchQuery {
    SearchQuery {
        country: country.to_owned(),
        area_code: area_code.map(str::to_owned),
        contains: None,
        limit,
        exclude: HashSet::new(),
    }
}

fn range(country: &str, area_code: &str, first: &str, last: &str) -> InventoryRange {
    InventoryRange {
        country: country.to_owned(),
        area_code: area_code.to_owned(),
        first: first.to_owned(),
        last: last.to_owned(),
    }
}

fn numbers(found: &[edge_providers::AvailableNumber]) -> Vec<String> {
    found.iter().map(|n| n.phone_number.clone()).collect()
}

fn field_of(err: ProviderError) -> String {
    match err {
        ProviderError::InvalidRequest { field, .. } => field,
        other => panic!("expected InvalidRequest, got {other:?}"),
    }
}

#[tokio::test]
async fn fictional_block_for_any_nanp_area_code() {
    let inv = LocalInventory::new(vec![]);
    for (country, ac) in [("US", "415"), ("US", "212"), ("CA", "604")] {
        let found = inv.search(&query(country, Some(ac), 100)).await.unwrap();
        assert_eq!(found.len(), 100, "{country} {ac}");
        assert_eq!(found[0].phone_number, format!("+1{ac}5550100"));
        assert_eq!(found[99].phone_number, format!("+1{ac}5550199"));
        assert_eq!(found[0].country, country);
        assert_eq!(found[0].area_code.as_deref(), Some(ac));
        assert_eq!(
            found[0].friendly_name.as_deref(),
            Some(format!("({ac}) 555-0100").as_str())
        );
        assert!(found[0].capabilities.contains(&"voice".to_owned()));
    }
}

#[tokio::test]
async fn other_countries_without_ranges_are_empty() {
    let inv = LocalInventory::new(vec![]);
    assert!(inv.search(&query("GB", Some("20"), 10)).await.unwrap().is_empty());
    assert!(inv.search(&query("FR", None, 10)).await.unwrap().is_empty());
    // No area code and nothing declared: nothing to offer, even in the US.
    assert!(inv.search(&query("US", None, 10)).await.unwrap().is_empty());
}

#[tokio::test]
async fn declared_range_replaces_fictional_block() {
    let inv = LocalInventory::try_new(vec![
        range("US", "415", "+14155559000", "+14155559002"),
        range("GB", "20", "+442079460000", "+442079460001"),
    ])
    .unwrap();
    let found = inv.search(&query("US", Some("415"), 10)).await.unwrap();
    assert_eq!(numbers(&found), ["+14155559000", "+14155559001", "+14155559002"]);
    let gb = inv.search(&query("GB", Some("20"), 10)).await.unwrap();
    assert_eq!(numbers(&gb), ["+442079460000", "+442079460001"]);
    assert_eq!(gb[0].friendly_name, None);
    // Another area code still gets its fictional block.
    let other = inv.search(&query("US", Some("212"), 1)).await.unwrap();
    assert_eq!(numbers(&other), ["+12125550100"]);
    // No area code: every declared range of the country.
    let all_gb = inv.search(&query("GB", None, 10)).await.unwrap();
    assert_eq!(all_gb.len(), 2);
}

#[tokio::test]
async fn exclude_never_offers_owned_numbers() {
    let inv = LocalInventory::new(vec![]);
    let mut q = query("US", Some("415"), 3);
    q.exclude = ["+14155550100", "+14155550102"]
        .into_iter()
        .map(str::to_owned)
        .collect();
    let found = inv.search(&q).await.unwrap();
    assert_eq!(numbers(&found), ["+14155550101", "+14155550103", "+14155550104"]);

    // Whole block owned: nothing left.
    q.exclude = (100..200).map(|n| format!("+1415555{n:04}")).collect();
    q.limit = 100;
    assert!(inv.search(&q).await.unwrap().is_empty());
}

#[tokio::test]
async fn contains_filters_digits() {
    let inv = LocalInventory::new(vec![]);
    let mut q = query("US", Some("415"), 100);
    q.contains = Some("0177".to_owned());
    assert_eq!(numbers(&inv.search(&q).await.unwrap()), ["+14155550177"]);
    q.contains = Some("99".to_owned());
    assert_eq!(numbers(&inv.search(&q).await.unwrap()), ["+14155550199"]);
    q.contains = Some("4242".to_owned());
    assert!(inv.search(&q).await.unwrap().is_empty());
}

#[tokio::test]
async fn limit_is_honoured_and_bounded() {
    let inv = LocalInventory::new(vec![]);
    assert_eq!(inv.search(&query("US", Some("415"), 7)).await.unwrap().len(), 7);
    for bad in [0, MAX_SEARCH_LIMIT + 1, usize::MAX] {
        let err = inv.search(&query("US", Some("415"), bad)).await.unwrap_err();
        assert_eq!(field_of(err), "limit");
    }
}

#[tokio::test]
async fn huge_declared_range_is_iterated_lazily() {
    // 10^9 numbers: must answer quickly and only materialise what is returned.
    let inv = LocalInventory::try_new(vec![range("US", "415", "+14150000000", "+14159999999")]).unwrap();
    let started = std::time::Instant::now();
    let found = inv.search(&query("US", Some("415"), 5)).await.unwrap();
    assert_eq!(found.len(), 5);
    assert_eq!(found[4].phone_number, "+14150000004");
    // A pattern that matches nothing costs a bounded scan, not 10^9 iterations.
    let mut q = query("US", Some("415"), 5);
    q.contains = Some("123456789012".to_owned());
    assert!(inv.search(&q).await.unwrap().is_empty());
    assert!(started.elapsed() < std::time::Duration::from_secs(10));
    // The far end of the range is still purchasable.
    assert!(inv.purchase("+14159999999").await.is_ok());
}

#[tokio::test]
async fn validation_names_the_field() {
    let inv = LocalInventory::new(vec![]);
    let cases: [(&str, Option<&str>, &str); 9] = [
        ("us", Some("415"), "country"),
        ("USA", Some("415"), "country"),
        ("", None, "country"),
        ("US", Some("41"), "area_code"),
        ("US", Some("4155"), "area_code"),
        ("US", Some("115"), "area_code"),
        ("US", Some("911"), "area_code"),
        ("CA", Some("29a"), "area_code"),
        ("US", Some("495"), "area_code"),
    ];
    for (country, ac, field) in cases {
        let err = inv.search(&query(country, ac, 5)).await.unwrap_err();
        assert_eq!(field_of(err), field, "{country} {ac:?}");
    }
    let mut q = query("US", Some("415"), 5);
    q.contains = Some("55a".to_owned());
    assert_eq!(field_of(inv.search(&q).await.unwrap_err()), "contains");
    q.contains = Some(String::new());
    assert_eq!(field_of(inv.search(&q).await.unwrap_err()), "contains");
}

#[tokio::test]
async fn purchase_only_inventory_numbers() {
    let inv = LocalInventory::try_new(vec![range("US", "212", "+12125551000", "+12125551009")]).unwrap();
    let bought = inv.purchase("+14155550100").await.unwrap();
    assert_eq!(
        bought,
        PurchasedNumber {
            phone_number: "+14155550100".to_owned(),
            provider: ProviderKind::Local,
            provider_ref: "local:+14155550100".to_owned(),
        }
    );
    assert!(inv.purchase("+12125551009").await.is_ok());
    for outside in ["+14155550200", "+14155550099", "+12125551010", "+442079460000"] {
        assert_eq!(
            inv.purchase(outside).await.unwrap_err(),
            ProviderError::NotAvailable(outside.to_owned())
        );
    }
    // 212 has a declared range in the US but not in CA, where its fictional block is offered.
    assert!(inv.purchase("+12125550100").await.is_ok());
    for bad in ["14155550100", "+", "+0123", "+1415555010012345", "+1415 5550100"] {
        assert_eq!(field_of(inv.purchase(bad).await.unwrap_err()), "phone_number");
    }
}

#[tokio::test]
async fn release_accepts_local_numbers_only() {
    let inv = LocalInventory::new(vec![]);
    let bought = inv.purchase("+14155550123").await.unwrap();
    assert!(inv.release(&bought).await.is_ok());
    let foreign = PurchasedNumber {
        provider: ProviderKind::Twilio,
        ..bought
    };
    assert_eq!(field_of(inv.release(&foreign).await.unwrap_err()), "provider");
    assert_eq!(inv.kind(), ProviderKind::Local);
}

#[test]
fn invalid_config_ranges_are_rejected_or_dropped() {
    let cases = [
        (range("US", "415", "+14155550100", "+14155550099"), "ranges[0].last"),
        (range("US", "415", "+12125550100", "+12125550199"), "ranges[0].first"),
        (range("US", "415", "+14155550100", "+141555501999"), "ranges[0].last"),
        (range("US", "415", "4155550100", "+14155550199"), "ranges[0].first"),
        (range("usa", "415", "+14155550100", "+14155550199"), "ranges[0].country"),
        (
            range("US", "011", "+10115550100", "+10115550199"),
            "ranges[0].area_code",
        ),
    ];
    for (r, field) in cases {
        let err = LocalInventory::try_new(vec![r.clone()]).unwrap_err();
        assert_eq!(field_of(err), field, "{r:?}");
    }
}

#[tokio::test]
async fn lenient_constructor_drops_bad_ranges() {
    let inv = LocalInventory::new(vec![
        range("US", "415", "+14155550100", "+14155550099"),
        range("US", "415", "+14155559000", "+14155559000"),
    ]);
    let found = inv.search(&query("US", Some("415"), 10)).await.unwrap();
    assert_eq!(numbers(&found), ["+14155559000"]);
}

#[test]
fn serde_shapes() {
    assert_eq!(serde_json::to_string(&ProviderKind::Telnyx).unwrap(), "\"telnyx\"");
    let k: ProviderKind = serde_json::from_str("\"local\"").unwrap();
    assert_eq!(k, ProviderKind::Local);
    let r: InventoryRange =
        serde_json::from_str(r#"{"country":"US","area_code":"415","first":"+14155550100","last":"+14155550101"}"#)
            .unwrap();
    assert_eq!(r.area_code, "415");
}

#[tokio::test]
async fn usable_as_shared_trait_object() {
    let provider: std::sync::Arc<dyn NumberProvider> = std::sync::Arc::new(LocalInventory::new(vec![]));
    let task = tokio::spawn({
        let provider = provider.clone();
        async move { provider.search(&query("US", Some("303"), 2)).await }
    });
    let found = task.await.unwrap().unwrap();
    assert_eq!(numbers(&found), ["+13035550100", "+13035550101"]);
}
