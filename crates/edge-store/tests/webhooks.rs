//! Webhooks on SQLite and PostgreSQL: the outbox (events queued with the records that cause them, once
//! each), claims with a lease (one worker per delivery), outcomes and listings.

mod common;

use common::Fixture;
use edge_store::{
    AttemptOutcome, CallRecord, CallStatus, DeliveryStatus, HangupBy, Route, VoicemailRecord, WebhookEvent,
};

async fn account(fx: &Fixture) -> String {
    fx.store.create_api_key(None, "test").await.unwrap().0
}

fn call(id: &str, account: &str, status: CallStatus) -> CallRecord {
    let answered = matches!(status, CallStatus::InProgress | CallStatus::Completed);
    CallRecord {
        id: id.into(),
        account_id: account.into(),
        direction: "inbound".into(),
        carrier: "twilio".into(),
        from: "+15005550006".into(),
        caller_name: None,
        to: "+14155551234".into(),
        phone_number_id: Some("phn_a".into()),
        status,
        answered_by: answered.then_some(Route::Primary),
        agent_id: Some("agt_a".into()),
        hops: Vec::new(),
        end_reason: status.is_final().then(|| "caller hung up".into()),
        hangup_by: status.is_final().then_some(HangupBy::Caller),
        sip_status: None,
        sip_call_id: format!("{id}@carrier"),
        error: None,
        created_at_ms: 1_000,
        answered_at_ms: answered.then_some(2_000),
        ended_at_ms: status.is_final().then_some(9_000),
        node: Some("edge-a".into()),
    }
}

/// The event types queued for `webhook`, sorted by name (events queued within one millisecond have no
/// order between them).
async fn types(fx: &Fixture, webhook: &str) -> Vec<String> {
    let page = fx.store.list_webhook_deliveries(webhook, 100, None).await.unwrap();
    let mut t: Vec<String> = page.items.into_iter().map(|d| d.event_type).collect();
    t.sort();
    t
}

async fn events_are_queued_once_with_their_records(fx: &Fixture) {
    let a = account(fx).await;
    let b = account(fx).await;
    let all = WebhookEvent::ALL;
    let (hook, secret) = fx
        .store
        .create_webhook(&a, "https://hooks.example.com/a", &all)
        .await
        .unwrap();
    assert!(secret.expose().starts_with("whsec_"));
    let (only_done, _) = fx
        .store
        .create_webhook(&a, "https://hooks.example.com/done", &[WebhookEvent::CallCompleted])
        .await
        .unwrap();
    // Another account's calls reach none of them.
    fx.store
        .upsert_calls(&[call("call_b1", &b, CallStatus::Completed)])
        .await
        .unwrap();
    // The writer's versions of one call, each written twice (a retry, a restart closing it again).
    for status in [CallStatus::Ringing, CallStatus::InProgress, CallStatus::Completed] {
        for _ in 0..2 {
            let refused = fx.store.upsert_calls(&[call("call_a1", &a, status)]).await.unwrap();
            assert!(refused.is_empty());
        }
    }
    assert_eq!(
        types(fx, &hook.id).await,
        ["call.answered", "call.completed", "call.ringing"]
    );
    assert_eq!(types(fx, &only_done.id).await, ["call.completed"]);
    // A call that never rang and was refused: call.failed only.
    fx.store
        .upsert_call(&call("call_a2", &a, CallStatus::Busy))
        .await
        .unwrap();
    assert_eq!(
        types(fx, &hook.id).await,
        ["call.answered", "call.completed", "call.failed", "call.ringing"]
    );

    // Voicemail: queued with the row.
    let vm = VoicemailRecord {
        id: "vm_abc".into(),
        account_id: a.clone(),
        call_id: "call_a2".into(),
        phone_number_id: None,
        caller: "+15005550006".into(),
        to: "+14155551234".into(),
        duration_ms: 4_000,
        ended_by: "hangup".into(),
        recording_path: "voicemail/vm_abc.wav".into(),
        created_at_ms: 5_000,
    };
    fx.store.insert_voicemail(&vm).await.unwrap();
    fx.store.insert_voicemail(&vm).await.unwrap();
    let t = types(fx, &hook.id).await;
    assert_eq!(t.iter().filter(|e| *e == "voicemail.recorded").count(), 1);
    assert_eq!(t.len(), 5);

    // Bodies carry what receivers need.
    let now = edge_store::time::now_millis() + 1;
    let claimed = fx.store.claim_webhook_deliveries(now, 60_000, 100).await.unwrap();
    assert_eq!(claimed.len(), 6, "5 to the first hook, 1 to the second");
    let completed = claimed
        .iter()
        .map(|d| serde_json::from_str::<serde_json::Value>(&d.body).unwrap())
        .find(|v| v["type"] == "call.completed" && v["webhook_id"] == hook.id.as_str())
        .unwrap();
    assert_eq!(completed["data"]["call_id"], "call_a1");
    assert_eq!(completed["data"]["duration_s"], 7);
    assert_eq!(completed["data"]["ended_by"], "caller");
    let vm_body = claimed
        .iter()
        .map(|d| serde_json::from_str::<serde_json::Value>(&d.body).unwrap())
        .find(|v| v["type"] == "voicemail.recorded")
        .unwrap();
    assert_eq!(vm_body["data"]["recording_url"], "/v1/voicemails/vm_abc/recording");
    assert!(claimed.iter().all(|d| d.secret.expose().starts_with("whsec_")));
    assert!(claimed.iter().any(|d| d.secret.expose() == secret.expose()));
}
on_both_backends!(events_are_queued_once_with_their_records);

async fn delivery(fx: &Fixture, hook: &str, id: &str) -> edge_store::DeliveryRecord {
    fx.store.get_webhook_delivery(hook, id).await.unwrap().unwrap()
}

async fn claims_lease_retry_and_finish(fx: &Fixture) {
    let a = account(fx).await;
    let (hook, _) = fx
        .store
        .create_webhook(&a, "https://hooks.example.com/a", &[WebhookEvent::CallFailed])
        .await
        .unwrap();
    for i in 0..3 {
        fx.store
            .upsert_call(&call(&format!("call_f{i}"), &a, CallStatus::Failed))
            .await
            .unwrap();
    }
    let t0 = edge_store::time::now_millis() + 1;
    assert_eq!(fx.store.webhook_backlog().await.unwrap(), 3);
    let first = fx.store.claim_webhook_deliveries(t0, 60_000, 2).await.unwrap();
    assert_eq!(first.len(), 2);
    // A second worker (another node) gets only what the first did not claim.
    let second = fx.store.claim_webhook_deliveries(t0, 60_000, 10).await.unwrap();
    assert_eq!(second.len(), 1);
    assert!(first.iter().all(|d| d.id != second[0].id));
    assert!(fx
        .store
        .claim_webhook_deliveries(t0, 60_000, 10)
        .await
        .unwrap()
        .is_empty());
    // The workers died: after their leases the deliveries are claimable again.
    let again = fx
        .store
        .claim_webhook_deliveries(t0 + 60_001, 60_000, 10)
        .await
        .unwrap();
    assert_eq!(again.len(), 3);

    fx.store
        .finish_webhook_delivery(&first[0].id, &AttemptOutcome::Delivered { response_code: 204 })
        .await
        .unwrap();
    fx.store
        .finish_webhook_delivery(
            &first[1].id,
            &AttemptOutcome::Retry {
                response_code: Some(503),
                error: "HTTP 503".into(),
                next_attempt_at: t0 + 500_000,
            },
        )
        .await
        .unwrap();
    fx.store
        .finish_webhook_delivery(
            &second[0].id,
            &AttemptOutcome::GaveUp {
                response_code: None,
                error: "connection failed".into(),
            },
        )
        .await
        .unwrap();
    let done = delivery(fx, &hook.id, &first[0].id).await;
    assert_eq!(
        (done.status, done.attempts, done.response_code),
        (DeliveryStatus::Delivered, 1, Some(204))
    );
    let retry = delivery(fx, &hook.id, &first[1].id).await;
    assert_eq!(retry.status, DeliveryStatus::Pending);
    assert_eq!(retry.response_code, Some(503));
    assert_eq!(retry.next_attempt_at, t0 + 500_000);
    assert_eq!(
        delivery(fx, &hook.id, &second[0].id).await.status,
        DeliveryStatus::Failed
    );
    assert_eq!(fx.store.webhook_backlog().await.unwrap(), 1);
    // Not due before its time; due after, lease released by the outcome.
    assert!(fx
        .store
        .claim_webhook_deliveries(t0 + 400_000, 1_000, 10)
        .await
        .unwrap()
        .is_empty());
    assert_eq!(
        fx.store
            .claim_webhook_deliveries(t0 + 500_000, 1_000, 10)
            .await
            .unwrap()
            .len(),
        1
    );
}
on_both_backends!(claims_lease_retry_and_finish);

async fn webhooks_list_get_delete_by_account(fx: &Fixture) {
    let a = account(fx).await;
    let b = account(fx).await;
    let (h1, _) = fx
        .store
        .create_webhook(&a, "https://x.example/1", &[WebhookEvent::CallRinging])
        .await
        .unwrap();
    let (h2, _) = fx
        .store
        .create_webhook(&a, "https://x.example/2", &WebhookEvent::ALL)
        .await
        .unwrap();
    assert!(fx.store.get_webhook(&b, &h1.id).await.unwrap().is_none());
    assert_eq!(
        fx.store.get_webhook(&a, &h2.id).await.unwrap().unwrap().events,
        WebhookEvent::ALL.to_vec()
    );
    let page = fx.store.list_webhooks(&a, 1, None).await.unwrap();
    assert_eq!(page.items.len(), 1);
    let rest = fx
        .store
        .list_webhooks(
            &a,
            10,
            edge_store::Cursor::decode(page.next_cursor.as_deref().unwrap()).as_ref(),
        )
        .await
        .unwrap();
    assert_eq!(rest.items.len(), 1);
    assert_ne!(rest.items[0].id, page.items[0].id);
    fx.store
        .upsert_call(&call("call_r", &a, CallStatus::Ringing))
        .await
        .unwrap();
    assert_eq!(fx.store.webhook_backlog().await.unwrap(), 2);
    assert!(matches!(
        fx.store.delete_webhook(&b, &h1.id).await,
        Err(edge_store::StoreError::NotFound)
    ));
    fx.store.delete_webhook(&a, &h1.id).await.unwrap();
    assert_eq!(
        fx.store.webhook_backlog().await.unwrap(),
        1,
        "its deliveries went with it"
    );
    assert!(fx.store.get_webhook(&a, &h1.id).await.unwrap().is_none());
}
on_both_backends!(webhooks_list_get_delete_by_account);
