//! Provider misbehaviour: concurrent purchases, upstream failures and failed releases must
//! leave the store and the routing index exactly as they were.

mod common;

use edge_api::ProviderSet;
use edge_providers::{
    AvailableNumber, BoxFuture, NumberProvider, ProviderError, ProviderKind, PurchasedNumber, SearchQuery,
};
use serde_json::json;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

#[derive(Default)]
struct Fake {
    purchase_delay: Duration,
    fail_purchase: Mutex<Option<ProviderError>>,
    fail_release: Mutex<Option<ProviderError>>,
    purchases: AtomicUsize,
    released: Mutex<Vec<PurchasedNumber>>,
}

impl NumberProvider for Fake {
    fn kind(&self) -> ProviderKind {
        ProviderKind::Telnyx
    }

    fn search<'a>(&'a self, q: &'a SearchQuery) -> BoxFuture<'a, Result<Vec<AvailableNumber>, ProviderError>> {
        Box::pin(async move {
            Ok((100..200)
                .map(|n| format!("+1415555{n:04}"))
                .filter(|n| !q.exclude.contains(n))
                .take(q.limit)
                .map(|n| AvailableNumber {
                    phone_number: n,
                    friendly_name: None,
                    country: q.country.clone(),
                    region: None,
                    locality: None,
                    area_code: Some("415".into()),
                    capabilities: vec!["voice".into()],
                    monthly_cost: Some("1.00".into()),
                })
                .collect())
        })
    }

    fn purchase<'a>(&'a self, phone_number: &'a str) -> BoxFuture<'a, Result<PurchasedNumber, ProviderError>> {
        Box::pin(async move {
            tokio::time::sleep(self.purchase_delay).await;
            if let Some(e) = self.fail_purchase.lock().unwrap().clone() {
                return Err(e);
            }
            let n = self.purchases.fetch_add(1, Ordering::SeqCst);
            Ok(PurchasedNumber {
                phone_number: phone_number.to_owned(),
                provider: ProviderKind::Telnyx,
                provider_ref: format!("order-{n}"),
            })
        })
    }

    fn release<'a>(&'a self, p: &'a PurchasedNumber) -> BoxFuture<'a, Result<(), ProviderError>> {
        Box::pin(async move {
            if let Some(e) = self.fail_release.lock().unwrap().clone() {
                return Err(e);
            }
            self.released.lock().unwrap().push(p.clone());
            Ok(())
        })
    }
}

async fn setup(fake: Arc<Fake>) -> (common::Server, String, String) {
    let s = common::sqlite_with(ProviderSet::new(fake)).await;
    let (_, key) = s.key().await;
    let r = s
        .call(
            "POST",
            "/v1/agents",
            Some(&key),
            Some(json!({"name": "a", "sip_uri": "sip:a@b.example"})),
        )
        .await;
    assert_eq!(r.status, 201);
    let agent = r.json["id"].as_str().unwrap().to_owned();
    (s, key, agent)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_purchases_of_one_number_buy_it_once() {
    let fake = Arc::new(Fake {
        purchase_delay: Duration::from_millis(300),
        ..Default::default()
    });
    let (s, key, agent) = setup(Arc::clone(&fake)).await;
    let body = json!({"phone_number": "+14155550150", "agent_id": agent});
    let (a, b) = tokio::join!(
        s.call("POST", "/v1/phone-numbers/purchase", Some(&key), Some(body.clone())),
        s.call("POST", "/v1/phone-numbers/purchase", Some(&key), Some(body.clone())),
    );
    let mut statuses = [a.status, b.status];
    statuses.sort();
    assert_eq!(statuses, [201, 409], "{} / {}", a.text, b.text);
    assert_eq!(fake.purchases.load(Ordering::SeqCst), 1);
    assert!(fake.released.lock().unwrap().is_empty());
    let created = if a.status == 201 { &a } else { &b };
    assert_eq!(created.json["provider"], "telnyx");
    // Path B concurrently: two different numbers.
    let auto = json!({"country": "US", "area_code": "415", "agent_id": agent});
    let (a, b) = tokio::join!(
        s.call("POST", "/v1/phone-numbers/purchase", Some(&key), Some(auto.clone())),
        s.call("POST", "/v1/phone-numbers/purchase", Some(&key), Some(auto.clone())),
    );
    assert_eq!((a.status, b.status), (201, 201), "{} / {}", a.text, b.text);
    assert_ne!(a.json["phone_number"], b.json["phone_number"]);
    assert_eq!(s.store.index().number_count(), 3);
    s.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upstream_failure_stores_nothing() {
    let fake = Arc::new(Fake::default());
    *fake.fail_purchase.lock().unwrap() = Some(ProviderError::Upstream {
        status: 503,
        message: "try later".into(),
    });
    let (s, key, agent) = setup(Arc::clone(&fake)).await;
    let r = s
        .call(
            "POST",
            "/v1/phone-numbers/purchase",
            Some(&key),
            Some(json!({"phone_number": "+14155550150", "agent_id": agent})),
        )
        .await;
    assert_eq!(r.status, 502, "{}", r.text);
    assert_eq!(r.error().0, "provider_error");
    *fake.fail_purchase.lock().unwrap() = Some(ProviderError::NotAvailable("+14155550150".into()));
    let r = s
        .call(
            "POST",
            "/v1/phone-numbers/purchase",
            Some(&key),
            Some(json!({"phone_number": "+14155550150", "agent_id": agent})),
        )
        .await;
    assert_eq!(r.status, 409, "{}", r.text);
    assert_eq!(r.error(), ("number_unavailable".into(), Some("phone_number".into())));
    let r = s.call("GET", "/v1/phone-numbers", Some(&key), None).await;
    assert_eq!(r.json["data"].as_array().unwrap().len(), 0);
    assert_eq!(s.store.index().number_count(), 0);
    s.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failed_release_keeps_the_number() {
    let fake = Arc::new(Fake::default());
    let (s, key, agent) = setup(Arc::clone(&fake)).await;
    let r = s
        .call(
            "POST",
            "/v1/phone-numbers/purchase",
            Some(&key),
            Some(json!({"phone_number": "+14155550160", "agent_id": agent})),
        )
        .await;
    assert_eq!(r.status, 201, "{}", r.text);
    let id = r.json["id"].as_str().unwrap().to_owned();
    *fake.fail_release.lock().unwrap() = Some(ProviderError::Transport("down".into()));
    let r = s
        .call("DELETE", &format!("/v1/phone-numbers/{id}"), Some(&key), None)
        .await;
    assert_eq!(r.status, 502, "{}", r.text);
    assert_eq!(
        s.call("GET", &format!("/v1/phone-numbers/{id}"), Some(&key), None)
            .await
            .status,
        200
    );
    assert!(s.store.index().lookup_number("+14155550160").is_some());
    *fake.fail_release.lock().unwrap() = None;
    let r = s
        .call("DELETE", &format!("/v1/phone-numbers/{id}"), Some(&key), None)
        .await;
    assert_eq!(r.status, 204, "{}", r.text);
    let released = fake.released.lock().unwrap().clone();
    assert_eq!(released.len(), 1);
    assert_eq!(released[0].phone_number, "+14155550160");
    assert_eq!(released[0].provider_ref, "order-0");
    assert!(s.store.index().lookup_number("+14155550160").is_none());
    s.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn timed_out_purchase_still_completes() {
    let fake = Arc::new(Fake {
        purchase_delay: Duration::from_millis(400),
        ..Default::default()
    });
    let config = edge_api::ApiConfig {
        request_timeout: Duration::from_millis(100),
        ..Default::default()
    };
    let s = common::sqlite_with_config(ProviderSet::new(Arc::clone(&fake) as Arc<dyn NumberProvider>), config).await;
    let (_, key) = s.key().await;
    let r = s
        .call(
            "POST",
            "/v1/agents",
            Some(&key),
            Some(json!({"name": "a", "sip_uri": "sip:a@b.example"})),
        )
        .await;
    let agent = r.json["id"].as_str().unwrap().to_owned();
    let r = s
        .call(
            "POST",
            "/v1/phone-numbers/purchase",
            Some(&key),
            Some(json!({"phone_number": "+14155550170", "agent_id": agent})),
        )
        .await;
    assert_eq!(r.status, 503, "{}", r.text);
    // Said in words: the purchase goes on and will show up in the list.
    assert_eq!(r.error().0, "purchase_in_progress");
    // The purchase was made, so it must end up registered rather than leaked.
    let mut registered = false;
    for _ in 0..40 {
        tokio::time::sleep(Duration::from_millis(50)).await;
        if s.store.index().lookup_number("+14155550170").is_some() {
            registered = true;
            break;
        }
    }
    assert!(registered, "bought number was neither registered nor released");
    assert_eq!(fake.purchases.load(Ordering::SeqCst), 1);
    s.shutdown().await;
}
