//! Numbers and money against local fake Twilio and Telnyx servers (tests/common/fakes.rs) over
//! real loopback HTTP: proof of ownership for bring-your-own numbers, the set-up doctor,
//! Idempotency-Key, slow purchases, asynchronous Telnyx orders, real releases, provider errors.

mod common;

use common::fakes::{FakeTelnyx, FakeTwilio, TxConnection};
use edge_api::{ApiConfig, ProviderSet};
use edge_providers::{TelnyxConfig, TelnyxProvider, TwilioConfig, TwilioProvider};
use serde_json::{json, Value};
use sqlx::Row;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

/// The operator's own provider accounts (numbers bought through the edge).
const OPERATOR_TELNYX_KEY: &str = "KEYoperator";

struct Env {
    s: common::Server,
    tw: FakeTwilio,
    tx: FakeTelnyx,
    key: String,
    agent: String,
    operator_sid: String,
    /// The account of `key`.
    account: String,
    /// What the server was started with (a restarted edge gets the same).
    providers: ProviderSet,
}

async fn env_with(tweak: impl FnOnce(ApiConfig) -> ApiConfig, postgres: bool) -> Option<Env> {
    let tw = FakeTwilio::start().await;
    let tx = FakeTelnyx::start().await;
    let (operator_sid, operator_token) = tw.account(1);
    tx.account(OPERATOR_TELNYX_KEY);
    let twilio = TwilioProvider::new(TwilioConfig {
        account_sid: operator_sid.clone(),
        auth_token: operator_token.into(),
        trunk_sid: None,
        base_url: Some(tw.base_url.clone()),
    })
    .unwrap();
    let telnyx = TelnyxProvider::new(TelnyxConfig {
        api_key: OPERATOR_TELNYX_KEY.into(),
        connection_id: None,
        base_url: Some(tx.base_url.clone()),
    })
    .unwrap();
    let providers: ProviderSet = common::providers().with(Arc::new(twilio)).with(Arc::new(telnyx));
    let config = tweak(ApiConfig {
        twilio_base_url: Some(tw.base_url.clone()),
        telnyx_base_url: Some(tx.base_url.clone()),
        ..ApiConfig::default()
    });
    let s = if postgres {
        common::postgres_full_with(providers.clone(), config, None).await?
    } else {
        common::sqlite_with_config(providers.clone(), config).await
    };
    let (account, key) = s.key().await;
    let r = s
        .call(
            "POST",
            "/v1/agents",
            Some(&key),
            Some(json!({"name": "a", "sip_uri": "sip:a@b.example"})),
        )
        .await;
    assert_eq!(r.status, 201, "{}", r.text);
    let agent = r.json["id"].as_str().unwrap().to_owned();
    Some(Env {
        s,
        tw,
        tx,
        key,
        agent,
        operator_sid,
        account,
        providers,
    })
}

async fn env() -> Env {
    env_with(|c| c, false).await.unwrap()
}

impl Env {
    async fn call(&self, method: &str, path: &str, body: Option<Value>) -> common::Resp {
        self.s.call(method, path, Some(&self.key), body).await
    }

    /// POST with an `Idempotency-Key`.
    async fn post_idem(&self, path: &str, idem: &str, body: &Value) -> (common::Resp, Option<String>) {
        let resp = self
            .s
            .client
            .post(format!("{}{}", self.s.base, path))
            .header("Authorization", format!("Bearer {}", self.key))
            .header("Content-Type", "application/json")
            .header("Idempotency-Key", idem)
            .body(body.to_string())
            .send()
            .await
            .unwrap();
        let status = resp.status().as_u16();
        let replayed = resp
            .headers()
            .get("idempotent-replayed")
            .map(|v| v.to_str().unwrap().to_owned());
        let text = resp.text().await.unwrap();
        let json = serde_json::from_str(&text).unwrap_or(Value::Null);
        (common::Resp { status, text, json }, replayed)
    }

    async fn twilio_integration(&self, sid: &str, token: &str) -> String {
        let r = self
            .call(
                "POST",
                "/v1/integrations",
                Some(
                    json!({"name": "My Twilio Account", "provider": "twilio", "api_key": token,
                    "metadata": {"account_sid": sid, "sip_trunk": "yourtrunk.pstn.twilio.com"}}),
                ),
            )
            .await;
        assert_eq!(r.status, 201, "{}", r.text);
        r.json["id"].as_str().unwrap().to_owned()
    }

    fn register_body(&self, number: &str, provider: &str, trunk: &str) -> Value {
        json!({
            "phone_number": number,
            "friendly_name": "Sales Line",
            "provider": provider,
            "agent_id": self.agent,
            "provider_config": {"trunk_address": trunk, "auth_username": "oneinbox", "auth_password": "pw-secret"}
        })
    }
}

fn check<'a>(resp: &'a Value, name: &str) -> &'a Value {
    resp["data"]
        .as_array()
        .or_else(|| resp["checks"].as_array())
        .and_then(|a| a.iter().find(|c| c["name"] == name))
        .unwrap_or_else(|| panic!("no check {name} in {resp}"))
}

// ---------------------------------------------------------------- 1. ownership

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn byo_twilio_number_of_another_account_is_refused() {
    let e = env().await;
    let (owner_sid, owner_token) = e.tw.account(2);
    let (other_sid, other_token) = e.tw.account(3);
    e.tw.give_number(&owner_sid, "+15739693824", None);
    let body = e.register_body("+15739693824", "twilio", "yourtrunk.pstn.twilio.com");

    // No integration at all: told to add one.
    let r = e.call("POST", "/v1/phone-numbers", Some(body.clone())).await;
    assert_eq!(r.status, 400, "{}", r.text);
    assert_eq!(r.error(), ("integration_required".into(), Some("provider".into())));

    // Someone else's Twilio account: refused, number not registered, calls not routed.
    e.twilio_integration(&other_sid, &other_token).await;
    let r = e.call("POST", "/v1/phone-numbers", Some(body.clone())).await;
    assert_eq!(r.status, 403, "{}", r.text);
    assert_eq!(r.error(), ("number_not_owned".into(), Some("phone_number".into())));
    assert!(e.s.store.index().lookup_number("+15739693824").is_none());

    // Wrong token for the owner's account: the integration is named as the problem.
    let (_, other_key) = e.s.key().await;
    let r =
        e.s.call(
            "POST",
            "/v1/integrations",
            Some(&other_key),
            Some(
                json!({"name": "t", "provider": "twilio", "api_key": "wrong", "metadata": {"account_sid": owner_sid}}),
            ),
        )
        .await;
    assert_eq!(r.status, 201);
    let r =
        e.s.call(
            "POST",
            "/v1/agents",
            Some(&other_key),
            Some(json!({"name": "x", "sip_uri": "sip:x@b.example"})),
        )
        .await;
    let other_agent = r.json["id"].as_str().unwrap().to_owned();
    let mut stolen = body.clone();
    stolen["agent_id"] = json!(other_agent);
    let r =
        e.s.call("POST", "/v1/phone-numbers", Some(&other_key), Some(stolen.clone()))
            .await;
    assert_eq!(r.status, 400, "{}", r.text);
    assert_eq!(r.error().0, "integration_rejected");

    // The owner's integration: accepted, with the set-up checks in the answer.
    e.twilio_integration(&owner_sid, &owner_token).await;
    let r = e.call("POST", "/v1/phone-numbers", Some(body.clone())).await;
    assert_eq!(r.status, 201, "{}", r.text);
    assert_eq!(r.json["status"], "active");
    assert_eq!(check(&r.json, "number_in_account")["status"], "ok");
    assert_eq!(check(&r.json, "number_on_trunk")["status"], "problem");
    assert!(!r.text.contains("pw-secret") && !r.text.contains(&owner_token));

    // After the owner registered it, a stranger still gets "not yours", not "already registered".
    let (_, k3) = e.s.key().await;
    let r = e
        .s
        .call(
            "POST",
            "/v1/integrations",
            Some(&k3),
            Some(json!({"name": "t", "provider": "twilio", "api_key": other_token, "metadata": {"account_sid": other_sid}})),
        )
        .await;
    assert_eq!(r.status, 201);
    let r =
        e.s.call(
            "POST",
            "/v1/agents",
            Some(&k3),
            Some(json!({"name": "x", "sip_uri": "sip:x@b.example"})),
        )
        .await;
    stolen["agent_id"] = r.json["id"].clone();
    let r = e.s.call("POST", "/v1/phone-numbers", Some(&k3), Some(stolen)).await;
    assert_eq!(r.status, 403, "{}", r.text);
    assert_eq!(r.error().0, "number_not_owned");
    e.s.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn byo_telnyx_ownership_is_checked_with_the_integration_key() {
    let e = env().await;
    e.tx.account("KEYcustomer");
    e.tx.give_number("KEYcustomer", "+15551234567", None);
    let body = e.register_body("+15551234567", "telnyx", "sip.telnyx.com");
    let r = e.call("POST", "/v1/phone-numbers", Some(body.clone())).await;
    assert_eq!(r.error().0, "integration_required");
    let r = e
        .call(
            "POST",
            "/v1/integrations",
            Some(json!({"name": "t", "provider": "telnyx", "api_key": "KEYcustomer"})),
        )
        .await;
    assert_eq!(r.status, 201);
    // A number the Telnyx account does not have.
    let r = e
        .call(
            "POST",
            "/v1/phone-numbers",
            Some(e.register_body("+15551230000", "telnyx", "sip.telnyx.com")),
        )
        .await;
    assert_eq!(r.status, 403, "{}", r.text);
    let r = e.call("POST", "/v1/phone-numbers", Some(body)).await;
    assert_eq!(r.status, 201, "{}", r.text);
    assert_eq!(check(&r.json, "connection")["status"], "problem");
    e.s.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn operator_can_turn_ownership_checks_off() {
    let e = env_with(
        |c| ApiConfig {
            verify_number_ownership: false,
            ..c
        },
        false,
    )
    .await
    .unwrap();
    let r = e
        .call(
            "POST",
            "/v1/phone-numbers",
            Some(e.register_body("+15739693824", "twilio", "t.pstn.twilio.com")),
        )
        .await;
    assert_eq!(r.status, 201, "{}", r.text);
    assert!(r.json.get("checks").is_none());
    e.s.shutdown().await;
}

// ---------------------------------------------------------------- 2. set-up doctor

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn doctor_reports_each_missing_piece_and_fix_mends_it() {
    let e = env().await;
    let (sid, token) = e.tw.account(2);
    // A trunk whose termination domain is the trunk_address, with no origination URI and a
    // credential list for another user; the number is not on it.
    e.tw.add_trunk(&sid, "acme.pstn.twilio.com", &[], &["someone-else"]);
    e.tw.give_number(&sid, "+15739693824", None);
    e.twilio_integration(&sid, &token).await;
    let r = e
        .call(
            "POST",
            "/v1/phone-numbers",
            Some(e.register_body("+15739693824", "twilio", "acme.pstn.twilio.com")),
        )
        .await;
    assert_eq!(r.status, 201, "{}", r.text);
    let id = r.json["id"].as_str().unwrap().to_owned();

    let r = e.call("GET", &format!("/v1/phone-numbers/{id}/checks"), None).await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(r.json["ready"], false);
    let c = check(&r.json, "number_on_trunk");
    assert_eq!(c["status"], "problem");
    assert!(c["fix"].as_str().unwrap().contains("Numbers"), "{c}");

    let r = e
        .call("POST", &format!("/v1/phone-numbers/{id}/checks/fix"), None)
        .await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(check(&r.json, "number_on_trunk")["status"], "ok", "{}", r.text);
    assert_eq!(check(&r.json, "origination_uri")["status"], "ok", "{}", r.text);
    assert_eq!(check(&r.json, "termination_domain")["status"], "ok", "{}", r.text);
    // Credentials cannot be created for the customer: still a problem, with the fix named.
    let c = check(&r.json, "credential_list");
    assert_eq!(c["status"], "problem");
    assert!(c["fix"].as_str().unwrap().contains("oneinbox"));
    // The fake really changed: origination URI and number on the trunk.
    {
        let st = e.tw.state.lock().unwrap();
        let acct = &st.accounts[&sid];
        assert_eq!(
            acct.trunks[0].origination_urls,
            vec!["sip:voice.oneinbox.ai:5060".to_owned()]
        );
        assert_eq!(acct.numbers[0].trunk_sid.as_deref(), Some(acct.trunks[0].sid.as_str()));
    }

    // A wrong trunk_address is named.
    let r = e
        .call(
            "PATCH",
            &format!("/v1/phone-numbers/{id}"),
            Some(json!({"provider_config": {"trunk_address": "other.pstn.twilio.com"}})),
        )
        .await;
    assert_eq!(r.status, 200);
    let r = e.call("GET", &format!("/v1/phone-numbers/{id}/checks"), None).await;
    let c = check(&r.json, "termination_domain");
    assert_eq!(c["status"], "problem");
    assert!(c["fix"].as_str().unwrap().contains("acme.pstn.twilio.com"), "{c}");
    e.s.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn doctor_reads_telnyx_connection() {
    let e = env().await;
    e.tx.account("KEYc");
    e.tx.state.lock().unwrap().connections.insert(
        "777".into(),
        TxConnection {
            id: "777".into(),
            record_type: "fqdn_connection".into(),
            user_name: Some("oneinbox".into()),
            fqdns: vec![("old.example.com".into(), 5060)],
        },
    );
    e.tx.give_number("KEYc", "+15551234567", Some("777"));
    e.call(
        "POST",
        "/v1/integrations",
        Some(json!({"name": "t", "provider": "telnyx", "api_key": "KEYc"})),
    )
    .await;
    let r = e
        .call(
            "POST",
            "/v1/phone-numbers",
            Some(e.register_body("+15551234567", "telnyx", "sip.telnyx.com")),
        )
        .await;
    assert_eq!(r.status, 201, "{}", r.text);
    assert_eq!(check(&r.json, "connection")["status"], "ok");
    assert_eq!(check(&r.json, "inbound_target")["status"], "problem");
    assert_eq!(check(&r.json, "outbound_credentials")["status"], "ok");
    e.tx.state.lock().unwrap().connections.get_mut("777").unwrap().fqdns = vec![("voice.oneinbox.ai".into(), 5060)];
    let id = r.json["id"].as_str().unwrap();
    let r = e.call("GET", &format!("/v1/phone-numbers/{id}/checks"), None).await;
    assert_eq!(r.json["ready"], true, "{}", r.text);
    e.s.shutdown().await;
}

// ---------------------------------------------------------------- 3. money

async fn idempotent_purchase_buys_once(e: Env) {
    e.tw.state.lock().unwrap().available = (100..110).map(|n| format!("+1415555{n:04}")).collect();
    let body = json!({"phone_number": "+14155550101", "agent_id": e.agent, "provider": "twilio"});
    let (a, replayed_a) = e.post_idem("/v1/phone-numbers/purchase", "key-1", &body).await;
    assert_eq!(a.status, 201, "{}", a.text);
    assert_eq!(replayed_a, None);
    let (b, replayed_b) = e.post_idem("/v1/phone-numbers/purchase", "key-1", &body).await;
    assert_eq!(b.status, 201, "{}", b.text);
    assert_eq!(replayed_b.as_deref(), Some("true"));
    assert_eq!(a.json, b.json);
    assert_eq!(e.tw.purchases.load(Ordering::SeqCst), 1);
    // Same key, other body: refused, nothing bought.
    let other = json!({"phone_number": "+14155550102", "agent_id": e.agent, "provider": "twilio"});
    let (c, _) = e.post_idem("/v1/phone-numbers/purchase", "key-1", &other).await;
    assert_eq!(c.status, 409, "{}", c.text);
    assert_eq!(
        c.error(),
        ("idempotency_key_reused".into(), Some("Idempotency-Key".into()))
    );
    // Path B with a key: the same auto-picked number, once.
    let auto = json!({"area_code": "415", "agent_id": e.agent, "provider": "twilio"});
    let (d, _) = e.post_idem("/v1/phone-numbers/purchase", "key-2", &auto).await;
    let (f, _) = e.post_idem("/v1/phone-numbers/purchase", "key-2", &auto).await;
    assert_eq!((d.status, f.status), (201, 201), "{} / {}", d.text, f.text);
    assert_eq!(d.json["phone_number"], f.json["phone_number"]);
    assert_eq!(e.tw.purchases.load(Ordering::SeqCst), 2);
    // Keys are per account: another account's same key is a new request.
    let r = e.call("GET", "/v1/phone-numbers", None).await;
    assert_eq!(r.json["data"].as_array().unwrap().len(), 2);
    e.s.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idempotency_key_buys_nothing_twice_sqlite() {
    idempotent_purchase_buys_once(env().await).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idempotency_key_buys_nothing_twice_postgres() {
    if let Some(e) = env_with(|c| c, true).await {
        idempotent_purchase_buys_once(e).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn purchase_outliving_the_clients_wait_yields_one_number_once() {
    let e = env_with(
        |c| ApiConfig {
            request_timeout: Duration::from_secs(2),
            ..c
        },
        false,
    )
    .await
    .unwrap();
    e.tw.state.lock().unwrap().available = vec!["+14155550150".into()];
    e.tw.purchase_delay_ms.store(2500, Ordering::SeqCst);
    let body = json!({"phone_number": "+14155550150", "agent_id": e.agent, "provider": "twilio"});
    let (a, _) = e.post_idem("/v1/phone-numbers/purchase", "slow-1", &body).await;
    assert_eq!(a.status, 503, "{}", a.text);
    assert_eq!(a.error().0, "purchase_in_progress");
    // Retrying while it runs: told so, nothing bought again.
    let (b, _) = e.post_idem("/v1/phone-numbers/purchase", "slow-1", &body).await;
    assert_eq!(b.status, 409, "{}", b.text);
    assert_eq!(b.error().0, "idempotency_in_progress");
    // It is listed as pending at once, finishes on its own and turns active; the retry then
    // gets the purchase's answer.
    let id = a.json["error"]["phone_number_id"]
        .as_str()
        .expect("503 names the pending number");
    let r = e.call("GET", "/v1/phone-numbers", None).await;
    assert_eq!(r.json["data"].as_array().unwrap().len(), 1, "{}", r.text);
    assert_eq!(r.json["data"][0]["id"], id);
    assert_eq!(e.settled(id).await["status"], "active");
    tokio::time::sleep(Duration::from_millis(200)).await;
    let (c, replayed) = e.post_idem("/v1/phone-numbers/purchase", "slow-1", &body).await;
    assert_eq!(c.status, 201, "{}", c.text);
    assert_eq!(replayed.as_deref(), Some("true"));
    assert_eq!(c.json["phone_number"], "+14155550150");
    assert_eq!(e.tw.purchases.load(Ordering::SeqCst), 1);
    assert_eq!(e.tw.numbers_of(&e.operator_sid).len(), 1);
    e.s.shutdown().await;
}

/// A server whose clients give up waiting after 1.8 s (request time-out 2 s).
async fn impatient_env(postgres: bool) -> Option<Env> {
    env_with(
        |c| ApiConfig {
            request_timeout: Duration::from_secs(2),
            ..c
        },
        postgres,
    )
    .await
}

impl Env {
    /// Polls `GET /v1/phone-numbers/{id}` until its status is no longer `pending`.
    async fn settled(&self, id: &str) -> Value {
        for _ in 0..100 {
            let r = self.call("GET", &format!("/v1/phone-numbers/{id}"), None).await;
            assert_eq!(r.status, 200, "{}", r.text);
            if r.json["status"] != "pending" {
                return r.json;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        panic!("{id} still pending after 10 s");
    }
}

async fn slow_purchase_is_pending_then_active(e: Env) {
    let number = "+14155550160";
    e.tw.state.lock().unwrap().available = vec![number.into()];
    e.tw.purchase_delay_ms.store(4000, Ordering::SeqCst);
    let body = json!({"phone_number": number, "agent_id": e.agent, "provider": "twilio"});
    let a = e.call("POST", "/v1/phone-numbers/purchase", Some(body.clone())).await;
    assert_eq!(a.status, 503, "{}", a.text);
    assert_eq!(a.error().0, "purchase_in_progress");
    let id = a.json["error"]["phone_number_id"]
        .as_str()
        .expect("503 names the pending number")
        .to_owned();

    // Visible while the provider works, in the list and by id, but not routed.
    let r = e.call("GET", &format!("/v1/phone-numbers/{id}"), None).await;
    assert_eq!(
        (r.status, r.json["status"].as_str()),
        (200, Some("pending")),
        "{}",
        r.text
    );
    assert_eq!(r.json["phone_number"], number);
    let list = e.call("GET", "/v1/phone-numbers", None).await;
    assert_eq!(list.json["data"][0]["id"], id.as_str(), "{}", list.text);
    assert_eq!(list.json["data"][0]["status"], "pending");
    assert!(
        e.s.store.index().lookup_number(number).is_none(),
        "a pending number takes calls"
    );
    e.s.store.reload_index().await.unwrap();
    assert!(
        e.s.store.index().lookup_number(number).is_none(),
        "reload routes a pending number"
    );

    // A second purchase of the same number without a key: a clear 409, no second buy.
    let b = e.call("POST", "/v1/phone-numbers/purchase", Some(body)).await;
    assert_eq!(b.status, 409, "{}", b.text);
    assert_eq!(b.error(), ("conflict".into(), Some("phone_number".into())));
    assert!(b.text.contains("in progress"), "{}", b.text);

    let done = e.settled(&id).await;
    assert_eq!(done["status"], "active", "{done}");
    assert!(done.get("failure_reason").is_none(), "{done}");
    assert_eq!(e.s.store.index().lookup_number(number).unwrap().number_id, id);
    assert_eq!(e.tw.purchases.load(Ordering::SeqCst), 1);
    let list = e.call("GET", "/v1/phone-numbers", None).await;
    assert_eq!(list.json["data"].as_array().unwrap().len(), 1, "{}", list.text);
    e.s.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_purchase_is_pending_then_active_sqlite() {
    slow_purchase_is_pending_then_active(impatient_env(false).await.unwrap()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_purchase_is_pending_then_active_postgres() {
    if let Some(e) = impatient_env(true).await {
        slow_purchase_is_pending_then_active(e).await;
    }
}

async fn slow_refusal_ends_failed_and_takes_no_calls(e: Env) {
    let number = "+14155550165";
    e.tw.state.lock().unwrap().needs_address = vec![number.into()];
    e.tw.purchase_delay_ms.store(3000, Ordering::SeqCst);
    let body = json!({"phone_number": number, "agent_id": e.agent, "provider": "twilio"});
    let a = e.call("POST", "/v1/phone-numbers/purchase", Some(body.clone())).await;
    assert_eq!(a.status, 503, "{}", a.text);
    let id = a.json["error"]["phone_number_id"].as_str().unwrap().to_owned();
    let r = e.call("GET", &format!("/v1/phone-numbers/{id}"), None).await;
    assert_eq!(r.json["status"], "pending", "{}", r.text);

    let done = e.settled(&id).await;
    assert_eq!(done["status"], "failed", "{done}");
    assert!(done["failure_reason"].as_str().unwrap().contains("Address"), "{done}");
    assert!(
        e.s.store.index().lookup_number(number).is_none(),
        "a failed number takes calls"
    );
    e.s.store.reload_index().await.unwrap();
    assert!(
        e.s.store.index().lookup_number(number).is_none(),
        "reload routes a failed number"
    );
    assert_eq!(e.tw.purchases.load(Ordering::SeqCst), 0);

    // Once the address is sorted out, buying it again works and replaces the failed record.
    {
        let mut st = e.tw.state.lock().unwrap();
        st.needs_address.clear();
        st.available = vec![number.into()];
    }
    e.tw.purchase_delay_ms.store(0, Ordering::SeqCst);
    let b = e.call("POST", "/v1/phone-numbers/purchase", Some(body)).await;
    assert_eq!(b.status, 201, "{}", b.text);
    assert_eq!(b.json["status"], "active");
    let list = e.call("GET", "/v1/phone-numbers", None).await;
    assert_eq!(list.json["data"].as_array().unwrap().len(), 1, "{}", list.text);
    assert_eq!(
        e.call("GET", &format!("/v1/phone-numbers/{id}"), None).await.status,
        404
    );
    assert!(e.s.store.index().lookup_number(number).is_some());
    e.s.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_refusal_ends_failed_and_takes_no_calls_sqlite() {
    slow_refusal_ends_failed_and_takes_no_calls(impatient_env(false).await.unwrap()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_refusal_ends_failed_and_takes_no_calls_postgres() {
    if let Some(e) = impatient_env(true).await {
        slow_refusal_ends_failed_and_takes_no_calls(e).await;
    }
}

/// An Idempotency-Key left "in progress" by a process that died mid-request blocks retries for
/// ten minutes, not 24 hours.
async fn stuck_idempotency_key_expires(e: Env) {
    let number = "+14155550170";
    e.tw.state.lock().unwrap().available = vec![number.into()];
    let body = json!({"phone_number": number, "agent_id": e.agent, "provider": "twilio"});
    let path = "/v1/phone-numbers/purchase";
    let hash = edge_store::idempotency_request_hash("POST", path, body.to_string().as_bytes());
    let pool = e.s.store.pool();
    let account: String = sqlx::query("SELECT account_id FROM agents WHERE id = $1")
        .bind(&e.agent)
        .fetch_one(pool)
        .await
        .unwrap()
        .try_get("account_id")
        .unwrap();
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64;
    sqlx::query(
        "INSERT INTO idempotency_keys (account_id, idem_key, request_hash, created_at) VALUES ($1, $2, $3, $4)",
    )
    .bind(&account)
    .bind("crashed-1")
    .bind(&hash)
    .bind(now - 9 * 60 * 1000)
    .execute(pool)
    .await
    .unwrap();
    // Nine minutes old: still taken as running.
    let (a, _) = e.post_idem(path, "crashed-1", &body).await;
    assert_eq!(a.status, 409, "{}", a.text);
    assert_eq!(a.error().0, "idempotency_in_progress");
    assert_eq!(e.tw.purchases.load(Ordering::SeqCst), 0);
    // Eleven minutes old with no answer: the crash is over, the retry runs.
    sqlx::query("UPDATE idempotency_keys SET created_at = $1 WHERE idem_key = $2")
        .bind(now - 11 * 60 * 1000)
        .bind("crashed-1")
        .execute(pool)
        .await
        .unwrap();
    let (b, replayed) = e.post_idem(path, "crashed-1", &body).await;
    assert_eq!(b.status, 201, "{}", b.text);
    assert_eq!(replayed, None);
    assert_eq!(e.tw.purchases.load(Ordering::SeqCst), 1);
    // An answered key still replays for 24 h, however old past ten minutes.
    sqlx::query("UPDATE idempotency_keys SET created_at = $1 WHERE idem_key = $2")
        .bind(now - 60 * 60 * 1000)
        .bind("crashed-1")
        .execute(pool)
        .await
        .unwrap();
    let (c, replayed) = e.post_idem(path, "crashed-1", &body).await;
    assert_eq!(c.status, 201, "{}", c.text);
    assert_eq!(replayed.as_deref(), Some("true"));
    assert_eq!(e.tw.purchases.load(Ordering::SeqCst), 1);
    e.s.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stuck_idempotency_key_expires_sqlite() {
    stuck_idempotency_key_expires(env().await).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stuck_idempotency_key_expires_postgres() {
    if let Some(e) = env_with(|c| c, true).await {
        stuck_idempotency_key_expires(e).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn telnyx_orders_are_followed_and_delete_releases_at_the_provider() {
    let e = env().await;
    {
        let mut st = e.tx.state.lock().unwrap();
        st.available = vec![
            ("+14155550160".into(), "local", vec!["voice"]),
            ("+14155550161".into(), "local", vec!["voice"]),
        ];
        st.order_polls = 2;
        st.failing = vec!["+14155550161".into()];
    }
    // Pending, pending, success: bought and registered.
    let r = e
        .call(
            "POST",
            "/v1/phone-numbers/purchase",
            Some(json!({"phone_number": "+14155550160", "agent_id": e.agent, "provider": "telnyx"})),
        )
        .await;
    assert_eq!(r.status, 201, "{}", r.text);
    assert_eq!(e.tx.numbers_of(OPERATOR_TELNYX_KEY).len(), 1);
    let id = r.json["id"].as_str().unwrap().to_owned();
    // Pending, pending, failure: not registered, and said so.
    let r = e
        .call(
            "POST",
            "/v1/phone-numbers/purchase",
            Some(json!({"phone_number": "+14155550161", "agent_id": e.agent, "provider": "telnyx"})),
        )
        .await;
    assert_eq!(r.status, 409, "{}", r.text);
    assert_eq!(r.error().0, "number_unavailable");
    assert!(e.s.store.index().lookup_number("+14155550161").is_none());

    // DELETE releases it at Telnyx for real (the fake matches digits only, as documented).
    let r = e.call("DELETE", &format!("/v1/phone-numbers/{id}"), None).await;
    assert_eq!(r.status, 204, "{}", r.text);
    assert!(e.tx.numbers_of(OPERATOR_TELNYX_KEY).is_empty());
    assert_eq!(e.tx.state.lock().unwrap().deletes, 1);
    e.s.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failed_release_is_reported_not_204() {
    let e = env().await;
    e.tw.state.lock().unwrap().available = vec!["+14155550170".into()];
    let r = e
        .call(
            "POST",
            "/v1/phone-numbers/purchase",
            Some(json!({"phone_number": "+14155550170", "agent_id": e.agent, "provider": "twilio"})),
        )
        .await;
    assert_eq!(r.status, 201, "{}", r.text);
    let id = r.json["id"].as_str().unwrap().to_owned();
    // Twilio keeps answering 429: DELETE must not say 204.
    e.tw.rate_limit.store(100, Ordering::SeqCst);
    let r = e.call("DELETE", &format!("/v1/phone-numbers/{id}"), None).await;
    assert_eq!(r.status, 502, "{}", r.text);
    assert_eq!(r.error().0, "release_failed");
    assert!(e.s.store.index().lookup_number("+14155550170").is_some());
    e.tw.rate_limit.store(0, Ordering::SeqCst);
    let r = e.call("DELETE", &format!("/v1/phone-numbers/{id}"), None).await;
    assert_eq!(r.status, 204, "{}", r.text);
    assert!(e.tw.numbers_of(&e.operator_sid).is_empty());
    e.s.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn purchase_limit_per_account_answers_429() {
    let e = env_with(
        |c| ApiConfig {
            max_purchased_numbers: Some(1),
            ..c
        },
        false,
    )
    .await
    .unwrap();
    let r = e
        .call(
            "POST",
            "/v1/phone-numbers/purchase",
            Some(json!({"phone_number": "+14155551234", "agent_id": e.agent})),
        )
        .await;
    assert_eq!(r.status, 201, "{}", r.text);
    let r = e
        .call(
            "POST",
            "/v1/phone-numbers/purchase",
            Some(json!({"phone_number": "+14155551235", "agent_id": e.agent})),
        )
        .await;
    assert_eq!(r.status, 429, "{}", r.text);
    assert_eq!(r.error().0, "purchase_limit_reached");
    e.s.shutdown().await;
}

// ---------------------------------------------------------------- 4. errors users can act on

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn twilio_not_available_is_409_and_path_b_moves_on() {
    let e = env().await;
    {
        let mut st = e.tw.state.lock().unwrap();
        st.sold_elsewhere = vec!["+14155550180".into(), "+14155550181".into()];
        st.available = vec!["+14155550182".into()];
    }
    let r = e
        .call(
            "POST",
            "/v1/phone-numbers/purchase",
            Some(json!({"phone_number": "+14155550180", "agent_id": e.agent, "provider": "twilio"})),
        )
        .await;
    assert_eq!(r.status, 409, "{}", r.text);
    assert_eq!(r.error(), ("number_unavailable".into(), Some("phone_number".into())));
    assert!(r.text.contains("21422"), "{}", r.text);
    // Path B, country omitted ("just pass your agent ID"): the taken ones are skipped.
    let r = e
        .call(
            "POST",
            "/v1/phone-numbers/purchase",
            Some(json!({"agent_id": e.agent, "provider": "twilio"})),
        )
        .await;
    assert_eq!(r.status, 201, "{}", r.text);
    assert_eq!(r.json["phone_number"], "+14155550182");
    e.s.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn provider_429_is_retried_then_503_with_retry_after() {
    let e = env().await;
    e.tw.state.lock().unwrap().available = vec!["+14155550190".into()];
    e.tw.rate_limit.store(2, Ordering::SeqCst);
    let r = e
        .call(
            "GET",
            "/v1/phone-numbers/search?country=US&area_code=415&provider=twilio",
            None,
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(r.json["data"][0]["phone_number"], "+14155550190");
    e.tw.rate_limit.store(100, Ordering::SeqCst);
    let resp =
        e.s.client
            .get(format!(
                "{}/v1/phone-numbers/search?country=US&provider=twilio",
                e.s.base
            ))
            .header("Authorization", format!("Bearer {}", e.key))
            .send()
            .await
            .unwrap();
    assert_eq!(resp.status().as_u16(), 503);
    assert_eq!(resp.headers().get("retry-after").unwrap(), "1");
    let v: Value = resp.json().await.unwrap();
    assert_eq!(v["error"]["code"], "provider_rate_limited");
    e.s.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn regulatory_refusal_is_named() {
    let e = env().await;
    e.tw.state.lock().unwrap().needs_address = vec!["+14155550195".into()];
    let r = e
        .call(
            "POST",
            "/v1/phone-numbers/purchase",
            Some(json!({"phone_number": "+14155550195", "agent_id": e.agent, "provider": "twilio"})),
        )
        .await;
    assert_eq!(r.status, 400, "{}", r.text);
    assert_eq!(
        r.error(),
        ("regulatory_requirements_unmet".into(), Some("phone_number".into()))
    );
    assert!(r.text.contains("Address"), "{}", r.text);
    e.s.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn telnyx_search_offers_local_voice_numbers_only() {
    let e = env().await;
    e.tx.state.lock().unwrap().available = vec![
        ("+14155550001".into(), "local", vec!["sms"]),
        ("+18335550002".into(), "toll_free", vec!["voice"]),
        ("+14155550003".into(), "local", vec!["voice", "sms"]),
    ];
    let r = e
        .call("GET", "/v1/phone-numbers/search?country=US&provider=telnyx", None)
        .await;
    assert_eq!(r.status, 200, "{}", r.text);
    let got: Vec<&str> = r.json["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|n| n["phone_number"].as_str().unwrap())
        .collect();
    assert_eq!(got, vec!["+14155550003"]);
    e.s.shutdown().await;
}

// ---------------------------------------------------------------- the product document, checked

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn product_document_path_c_with_ownership_checks() {
    let e = env().await;
    let (sid, token) = e.tw.account(7);
    let trunk = e.tw.add_trunk(
        &sid,
        "yourtrunk.pstn.twilio.com",
        &["sip:voice.oneinbox.ai:5060"],
        &["oneinbox"],
    );
    e.tw.give_number(&sid, "+15739693824", Some(&trunk));
    // Step 3 exactly as the document shows it.
    let r = e
        .call(
            "POST",
            "/v1/integrations",
            Some(json!({"name": "My Twilio Account", "provider": "twilio", "api_key": token,
                "metadata": {"account_sid": sid, "phone_number": "+15739693824", "sip_trunk": "yourtrunk.pstn.twilio.com"}})),
        )
        .await;
    assert_eq!(r.status, 201, "{}", r.text);
    assert!(r.json["id"].as_str().unwrap().starts_with("crd_"));
    // Step 4.
    let r = e
        .call(
            "POST",
            "/v1/phone-numbers",
            Some(json!({
                "phone_number": "+15739693824",
                "friendly_name": "Sales Line",
                "provider": "twilio",
                "agent_id": e.agent,
                "provider_config": {"trunk_address": "yourtrunk.pstn.twilio.com", "auth_username": "oneinbox", "auth_password": "<your_sip_password>"},
                "inbound_routing": {"agent_id": e.agent, "voicemail_message": "Sorry, we missed you. Please leave a message."}
            })),
        )
        .await;
    assert_eq!(r.status, 201, "{}", r.text);
    for k in ["id", "phone_number", "agent_id", "status"] {
        assert!(r.json.get(k).is_some(), "{k} missing in {}", r.text);
    }
    assert_eq!(r.json["status"], "active");
    let ready: Vec<_> = r.json["checks"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|c| c["status"] != "ok")
        .collect();
    assert!(
        ready.is_empty(),
        "a set-up made as the document says passes every check: {ready:?}"
    );
    e.s.shutdown().await;
}

impl Env {
    /// Stores `number` as a purchase a crash interrupted leaves it: `pending`, never settled.
    async fn orphan(&self, number: &str, provider: edge_store::Provider) -> String {
        let new = edge_store::NewNumber {
            phone_number: number.into(),
            friendly_name: None,
            agent_id: self.agent.clone(),
            provider,
            source: edge_store::NumberSource::Purchased,
            provider_ref: None,
            inbound_routing: Some(edge_store::InboundRouting::default()),
            provider_config: None,
        };
        self.s.store.create_pending_number(&self.account, new).await.unwrap().id
    }

    /// The edge started again over the same database and providers, `providers` aside. Purchases are
    /// allowed 2 ms, so the rows the tests leave (after a 5 ms pause) are orphans on PostgreSQL too, where
    /// only age, not the start-up time, proves one (another edge may share the database).
    fn restarted(&self, providers: ProviderSet) -> edge_api::ApiState {
        let cfg = ApiConfig {
            purchase_max_duration: Duration::from_millis(2),
            ..ApiConfig::default()
        };
        edge_api::ApiState::new(Arc::clone(&self.s.store), providers, cfg)
    }
}

async fn interrupted_purchases_are_settled_at_startup(e: Env) {
    let bought_tw = "+14155550171";
    let bought_tx = "+14155550172";
    let never = "+14155550173";
    let pn = e.tw.give_number(&e.operator_sid, bought_tw, None);
    e.tx.give_number(OPERATOR_TELNYX_KEY, bought_tx, None);
    let id_tw = e.orphan(bought_tw, edge_store::Provider::Twilio).await;
    let id_tx = e.orphan(bought_tx, edge_store::Provider::Telnyx).await;
    let id_never = e.orphan(never, edge_store::Provider::Twilio).await;

    // Crashed: the numbers are blocked and take no calls.
    let body = json!({"phone_number": never, "agent_id": e.agent, "provider": "twilio"});
    assert_eq!(
        e.call("POST", "/v1/phone-numbers/purchase", Some(body.clone()))
            .await
            .status,
        409
    );
    assert!(e.s.store.index().lookup_number(bought_tw).is_none());

    tokio::time::sleep(Duration::from_millis(5)).await;
    let out = edge_api::reconcile_pending(&e.restarted(e.providers.clone())).await;
    assert_eq!((out.activated, out.failed, out.deferred), (2, 1, 0), "{out:?}");

    for (id, number) in [(&id_tw, bought_tw), (&id_tx, bought_tx)] {
        let r = e.call("GET", &format!("/v1/phone-numbers/{id}"), None).await;
        assert_eq!(r.json["status"], "active", "{}", r.text);
        assert!(r.json.get("failure_reason").is_none(), "{}", r.text);
        let route =
            e.s.store
                .index()
                .lookup_number(number)
                .expect("settled number takes calls");
        assert_eq!(route.number_id, *id);
    }
    // The provider handle is the one a DELETE releases with.
    let r = e.call("DELETE", &format!("/v1/phone-numbers/{id_tw}"), None).await;
    assert_eq!(r.status, 204, "{}", r.text);
    assert!(!e.tw.numbers_of(&e.operator_sid).iter().any(|n| n.sid == pn));

    let r = e.call("GET", &format!("/v1/phone-numbers/{id_never}"), None).await;
    assert_eq!(r.json["status"], "failed", "{}", r.text);
    assert_eq!(r.json["failure_reason"], edge_api::INTERRUPTED_PURCHASE, "{}", r.text);
    assert!(e.s.store.index().lookup_number(never).is_none());
    e.s.store.reload_index().await.unwrap();
    assert!(
        e.s.store.index().lookup_number(never).is_none(),
        "reload routes a failed number"
    );

    // No longer blocked: it can be bought again.
    e.tw.state.lock().unwrap().available = vec![never.into()];
    let b = e.call("POST", "/v1/phone-numbers/purchase", Some(body)).await;
    assert_eq!(b.status, 201, "{}", b.text);
    // Nothing left to settle.
    let out = edge_api::reconcile_pending(&e.restarted(e.providers.clone())).await;
    assert_eq!(out, edge_api::ReconcileOutcome::default());
    e.s.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn interrupted_purchases_are_settled_at_startup_sqlite() {
    interrupted_purchases_are_settled_at_startup(env().await).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn interrupted_purchases_are_settled_at_startup_postgres() {
    if let Some(e) = env_with(|c| c, true).await {
        interrupted_purchases_are_settled_at_startup(e).await;
    }
}

async fn unreachable_provider_leaves_it_pending_until_it_answers(e: Env) {
    let number = "+14155550174";
    e.tw.give_number(&e.operator_sid, number, None);
    let id = e.orphan(number, edge_store::Provider::Twilio).await;
    tokio::time::sleep(Duration::from_millis(5)).await;

    // Twilio down (nothing listens on the port any more).
    let closed = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap()
    };
    let down = TwilioProvider::new(TwilioConfig {
        account_sid: e.operator_sid.clone(),
        auth_token: "x".into(),
        trunk_sid: None,
        base_url: Some(format!("http://{closed}")),
    })
    .unwrap();
    let mut r = edge_api::Reconciler::new(e.restarted(common::providers().with(Arc::new(down))));
    let out = r.run_once().await;
    assert_eq!((out.activated, out.failed, out.deferred), (0, 0, 1), "{out:?}");
    let g = e.call("GET", &format!("/v1/phone-numbers/{id}"), None).await;
    assert_eq!(g.json["status"], "pending", "{}", g.text);
    // Not configured at all: the same.
    let out = edge_api::reconcile_pending(&e.restarted(common::providers())).await;
    assert_eq!(out.deferred, 1, "{out:?}");
    assert_eq!(
        e.call("GET", &format!("/v1/phone-numbers/{id}"), None).await.json["status"],
        "pending"
    );

    // Back: the next pass settles it.
    let out = edge_api::reconcile_pending(&e.restarted(e.providers.clone())).await;
    assert_eq!(out.activated, 1, "{out:?}");
    assert!(e.s.store.index().lookup_number(number).is_some());
    e.s.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unreachable_provider_leaves_it_pending_until_it_answers_sqlite() {
    unreachable_provider_leaves_it_pending_until_it_answers(env().await).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unreachable_provider_leaves_it_pending_until_it_answers_postgres() {
    if let Some(e) = env_with(|c| c, true).await {
        unreachable_provider_leaves_it_pending_until_it_answers(e).await;
    }
}

/// A purchase still running (here: just begun in the restarted edge, or held by its
/// in-flight lock) is never settled from under it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn running_purchases_are_left_alone() {
    let e = env().await;
    let number = "+14155550175";
    let state = edge_api::ApiState::new(Arc::clone(&e.s.store), e.providers.clone(), ApiConfig::default());
    let mut r = edge_api::Reconciler::new(state);
    // Stored after this edge started and younger than purchase_max_duration: in flight.
    tokio::time::sleep(Duration::from_millis(5)).await;
    let id = e.orphan(number, edge_store::Provider::Twilio).await;
    let out = r.run_once().await;
    assert_eq!(out, edge_api::ReconcileOutcome::default());
    assert_eq!(
        e.call("GET", &format!("/v1/phone-numbers/{id}"), None).await.json["status"],
        "pending"
    );
    e.s.shutdown().await;
}

/// Several edges on one PostgreSQL: a pending row from before this edge started may be another live
/// edge's purchase, so start-up alone does not make it an orphan; only its age does.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn another_edges_purchase_on_a_shared_database_is_left_alone() {
    let Some(e) = env_with(|c| c, true).await else {
        return;
    };
    let number = "+14155550176";
    e.tw.give_number(&e.operator_sid, number, None);
    let id = e.orphan(number, edge_store::Provider::Twilio).await;
    tokio::time::sleep(Duration::from_millis(5)).await;
    // This edge starts after the row was written, with the default 10 min purchase bound.
    let state = edge_api::ApiState::new(Arc::clone(&e.s.store), e.providers.clone(), ApiConfig::default());
    let out = edge_api::Reconciler::new(state).run_once().await;
    assert_eq!(out, edge_api::ReconcileOutcome::default());
    let g = e.call("GET", &format!("/v1/phone-numbers/{id}"), None).await;
    assert_eq!(g.json["status"], "pending", "{}", g.text);
    // Past the bound it is an orphan (as in `restarted`): settled.
    let out = edge_api::reconcile_pending(&e.restarted(e.providers.clone())).await;
    assert_eq!((out.activated, out.failed, out.deferred), (1, 0, 0), "{out:?}");
    e.s.shutdown().await;
}
