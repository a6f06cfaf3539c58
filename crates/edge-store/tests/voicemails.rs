//! Voicemail records on SQLite and PostgreSQL: idempotent inserts, validation, tenancy,
//! newest-first pagination with the number filter, and delete returning the row.

mod common;

use common::Fixture;
use edge_store::{new_voicemail_id, Cursor, StoreError, VoicemailFilter, VoicemailRecord};

async fn account(fx: &Fixture) -> String {
    fx.store.create_api_key(None, "test").await.unwrap().0
}

fn vm(id: &str, account: &str, number_id: Option<&str>, created: i64) -> VoicemailRecord {
    VoicemailRecord {
        id: id.into(),
        account_id: account.into(),
        call_id: "call_abc".into(),
        phone_number_id: number_id.map(Into::into),
        caller: "+15005550006".into(),
        to: "+14155551234".into(),
        duration_ms: 12_345,
        ended_by: "dtmf-hash".into(),
        recording_path: format!("voicemail/{id}.wav"),
        created_at_ms: created,
    }
}

async fn count(fx: &Fixture) -> i64 {
    sqlx::query_scalar("SELECT COUNT(*) FROM voicemails")
        .fetch_one(fx.store.pool())
        .await
        .unwrap()
}

async fn insert_get_delete(fx: &Fixture) {
    let acc = account(fx).await;
    let id = new_voicemail_id().unwrap();
    let rec = vm(&id, &acc, Some("phn_one"), 1_000);
    fx.store.insert_voicemail(&rec).await.unwrap();
    // Idempotent by id: a retry changes nothing, even with other content.
    fx.store.insert_voicemail(&rec).await.unwrap();
    let mut retry = rec.clone();
    retry.duration_ms = 1;
    fx.store.insert_voicemail(&retry).await.unwrap();
    assert_eq!(count(fx).await, 1);
    assert_eq!(fx.store.get_voicemail(&acc, &id).await.unwrap(), Some(rec.clone()));

    // A SIP user as caller and no number id are fine.
    let mut sip = vm("vm_sipuser", &acc, None, 2_000);
    sip.caller = "alice".into();
    sip.ended_by = "hangup".into();
    fx.store.insert_voicemail(&sip).await.unwrap();
    assert_eq!(fx.store.get_voicemail(&acc, "vm_sipuser").await.unwrap(), Some(sip));
    // So is an anonymous caller with no user part.
    let mut anon = vm("vm_anon", &acc, None, 2_500);
    anon.caller = String::new();
    fx.store.insert_voicemail(&anon).await.unwrap();
    assert_eq!(fx.store.get_voicemail(&acc, "vm_anon").await.unwrap(), Some(anon));

    assert_eq!(fx.store.delete_voicemail(&acc, &id).await.unwrap(), Some(rec));
    assert_eq!(fx.store.get_voicemail(&acc, &id).await.unwrap(), None);
    assert_eq!(fx.store.delete_voicemail(&acc, &id).await.unwrap(), None);
    assert_eq!(count(fx).await, 2);
}
on_both_backends!(insert_get_delete);

/// An edit that makes a record invalid.
type Change = fn(&mut VoicemailRecord);

async fn invalid_records_are_refused(fx: &Fixture) {
    let acc = account(fx).await;
    let base = vm("vm_ok", &acc, Some("phn_one"), 1);
    let cases: [(&str, Change); 11] = [
        ("id", |r| r.id = "call_x".into()),
        ("id", |r| r.id = "vm_a-b".into()),
        ("ended_by", |r| r.ended_by = "timeout".into()),
        ("ended_by", |r| r.ended_by = "max_length".into()),
        ("recording_path", |r| r.recording_path = "/tmp/x.wav".into()),
        ("recording_path", |r| r.recording_path = "voicemail/../../x.wav".into()),
        ("recording_path", |r| r.recording_path = String::new()),
        ("duration_ms", |r| r.duration_ms = -1),
        ("caller", |r| r.caller = "x".repeat(257)),
        ("to", |r| r.to = String::new()),
        ("phone_number_id", |r| r.phone_number_id = Some("agt_x".into())),
    ];
    for (field, change) in cases {
        let mut r = base.clone();
        change(&mut r);
        match fx.store.insert_voicemail(&r).await {
            Err(StoreError::InvalidField { field: f, .. }) => assert_eq!(f, field),
            other => panic!("{field}: expected InvalidField, got {other:?}"),
        }
    }
    assert_eq!(count(fx).await, 0);
    // Every documented ending is accepted.
    for (i, e) in edge_store::VOICEMAIL_ENDED_BY.iter().enumerate() {
        let mut r = vm(&format!("vm_e{i}"), &acc, None, 1);
        r.ended_by = (*e).into();
        fx.store.insert_voicemail(&r).await.unwrap();
    }
    assert_eq!(count(fx).await, 5);
}
on_both_backends!(invalid_records_are_refused);

async fn tenancy(fx: &Fixture) {
    let a = account(fx).await;
    let b = account(fx).await;
    let rec = vm("vm_aaa", &a, Some("phn_one"), 1_000);
    fx.store.insert_voicemail(&rec).await.unwrap();
    assert_eq!(fx.store.get_voicemail(&b, "vm_aaa").await.unwrap(), None);
    assert!(fx
        .store
        .list_voicemails(&b, VoicemailFilter::default(), 100, None)
        .await
        .unwrap()
        .items
        .is_empty());
    // B can neither delete nor take over A's id.
    assert_eq!(fx.store.delete_voicemail(&b, "vm_aaa").await.unwrap(), None);
    assert!(matches!(
        fx.store.insert_voicemail(&vm("vm_aaa", &b, None, 5)).await,
        Err(StoreError::Conflict { field: Some("id"), .. })
    ));
    assert_eq!(fx.store.get_voicemail(&a, "vm_aaa").await.unwrap(), Some(rec));
    // An unknown account is refused by the foreign key.
    assert!(fx
        .store
        .insert_voicemail(&vm("vm_orphan", "acc_nobody", None, 5))
        .await
        .is_err());
    assert_eq!(count(fx).await, 1);
}
on_both_backends!(tenancy);

async fn pagination_and_filter(fx: &Fixture) {
    let acc = account(fx).await;
    let other = account(fx).await;
    // vm_a4 and vm_a3 share a created_at (tie broken by id, descending).
    let specs = [
        ("vm_a1", "phn_one", 1_000),
        ("vm_a2", "phn_two", 2_000),
        ("vm_a3", "phn_one", 3_000),
        ("vm_a4", "phn_one", 3_000),
        ("vm_a5", "phn_two", 4_000),
        ("vm_a6", "phn_one", 5_000),
    ];
    for (id, num, at) in specs {
        fx.store.insert_voicemail(&vm(id, &acc, Some(num), at)).await.unwrap();
    }
    fx.store
        .insert_voicemail(&vm("vm_zz", &other, Some("phn_one"), 3_500))
        .await
        .unwrap();
    let ids = |items: &[VoicemailRecord]| items.iter().map(|v| v.id.clone()).collect::<Vec<_>>();

    let mut seen = Vec::new();
    let mut cursor: Option<Cursor> = None;
    loop {
        let page = fx
            .store
            .list_voicemails(&acc, VoicemailFilter::default(), 4, cursor.as_ref())
            .await
            .unwrap();
        assert!(page.items.len() <= 4);
        seen.extend(ids(&page.items));
        match page.next_cursor {
            Some(c) => cursor = Some(Cursor::decode(&c).unwrap()),
            None => break,
        }
    }
    assert_eq!(seen, ["vm_a6", "vm_a5", "vm_a4", "vm_a3", "vm_a2", "vm_a1"]);

    let f = VoicemailFilter {
        phone_number_id: Some("phn_one".into()),
    };
    let p1 = fx.store.list_voicemails(&acc, f.clone(), 2, None).await.unwrap();
    assert_eq!(ids(&p1.items), ["vm_a6", "vm_a4"]);
    let c = Cursor::decode(p1.next_cursor.as_deref().unwrap()).unwrap();
    let p2 = fx.store.list_voicemails(&acc, f, 2, Some(&c)).await.unwrap();
    assert_eq!(ids(&p2.items), ["vm_a3", "vm_a1"]);
    assert_eq!(p2.next_cursor, None);
    let two = fx
        .store
        .list_voicemails(
            &acc,
            VoicemailFilter {
                phone_number_id: Some("phn_two".into()),
            },
            100,
            None,
        )
        .await
        .unwrap();
    assert_eq!(ids(&two.items), ["vm_a5", "vm_a2"]);
}
on_both_backends!(pagination_and_filter);
