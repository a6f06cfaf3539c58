//! Call records on SQLite and PostgreSQL: idempotent upserts in the SIP writer's order,
//! tenancy, filters and newest-first pagination.

mod common;

use common::Fixture;
use edge_store::{CallError, CallFilter, CallRecord, CallStatus, Cursor, HangupBy, Hop, NodeSeen, Route, StoreError};

async fn account(fx: &Fixture) -> String {
    fx.store.create_api_key(None, "test").await.unwrap().0
}

fn started(id: &str, account: &str, to: &str, number_id: &str, created: i64) -> CallRecord {
    CallRecord {
        id: id.into(),
        account_id: account.into(),
        direction: "inbound".into(),
        carrier: "twilio".into(),
        from: "+15005550006".into(),
        caller_name: Some("Alice".into()),
        to: to.into(),
        phone_number_id: Some(number_id.into()),
        status: CallStatus::Queued,
        answered_by: None,
        agent_id: None,
        hops: Vec::new(),
        end_reason: None,
        hangup_by: None,
        sip_status: None,
        sip_call_id: format!("{id}@carrier"),
        error: None,
        created_at_ms: created,
        answered_at_ms: None,
        ended_at_ms: None,
        node: Some("edge-a".into()),
    }
}

fn answered(mut r: CallRecord) -> CallRecord {
    r.status = CallStatus::InProgress;
    r.answered_by = Some(Route::Fallback);
    r.agent_id = Some("agt_fallback".into());
    r.hops = vec![
        Hop {
            route: Route::Primary,
            agent_id: Some("agt_primary".into()),
            target: None,
            sip_status: Some(503),
            outcome: "rejected".into(),
            started_at_ms: r.created_at_ms + 10,
            ended_at_ms: Some(r.created_at_ms + 20),
        },
        Hop {
            route: Route::Fallback,
            agent_id: Some("agt_fallback".into()),
            target: None,
            sip_status: Some(200),
            outcome: "answered".into(),
            started_at_ms: r.created_at_ms + 20,
            ended_at_ms: None,
        },
    ];
    r.answered_at_ms = Some(r.created_at_ms + 30);
    r
}

fn ended(mut r: CallRecord) -> CallRecord {
    r.status = CallStatus::Completed;
    r.end_reason = Some("caller hung up".into());
    r.hangup_by = Some(HangupBy::Caller);
    r.ended_at_ms = Some(r.created_at_ms + 5_000);
    if let Some(h) = r.hops.last_mut() {
        h.ended_at_ms = r.ended_at_ms;
    }
    r
}

async fn upsert_is_idempotent_and_updates(fx: &Fixture) {
    let acc = account(fx).await;
    let start = started("call_1a2b", &acc, "+14155551234", "phn_a", 1_000);
    fx.store.upsert_call(&start).await.unwrap();
    fx.store.upsert_call(&start).await.unwrap();
    assert_eq!(fx.store.get_call(&acc, "call_1a2b").await.unwrap(), Some(start.clone()));

    let ans = answered(start.clone());
    fx.store.upsert_call(&ans).await.unwrap();
    assert_eq!(fx.store.get_call(&acc, "call_1a2b").await.unwrap(), Some(ans.clone()));

    let mut end = ended(ans.clone());
    end.sip_status = Some(487);
    end.error = Some(CallError {
        code: "x".into(),
        message: "y".into(),
    });
    fx.store.upsert_call(&end).await.unwrap();
    fx.store.upsert_call(&end).await.unwrap();
    let got = fx.store.get_call(&acc, "call_1a2b").await.unwrap().unwrap();
    assert_eq!(got, end);
    assert_eq!(got.hops.len(), 2);
    assert_eq!(got.hops[0].sip_status, Some(503));

    // A stale "answered" copy arriving after the end does not resurrect the call.
    fx.store.upsert_call(&ans).await.unwrap();
    assert_eq!(fx.store.get_call(&acc, "call_1a2b").await.unwrap(), Some(end.clone()));

    let n: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM calls")
        .fetch_one(fx.store.pool())
        .await
        .unwrap();
    assert_eq!(n, 1);

    // Junk ids never reach the table.
    let bad = started("call_a-b", &acc, "+14155551234", "phn_a", 1);
    assert!(matches!(
        fx.store.upsert_call(&bad).await,
        Err(StoreError::InvalidField { field: "id", .. })
    ));
}
on_both_backends!(upsert_is_idempotent_and_updates);

async fn tenancy(fx: &Fixture) {
    let a = account(fx).await;
    let b = account(fx).await;
    let rec = started("call_aaa", &a, "+14155551234", "phn_a", 1_000);
    fx.store.upsert_call(&rec).await.unwrap();
    assert!(fx.store.get_call(&b, "call_aaa").await.unwrap().is_none());
    let page = fx.store.list_calls(&b, CallFilter::default(), 100, None).await.unwrap();
    assert!(page.items.is_empty());
    // Account B cannot take over A's call id.
    let hijack = started("call_aaa", &b, "+14155550000", "phn_b", 2_000);
    assert!(matches!(
        fx.store.upsert_call(&hijack).await,
        Err(StoreError::Conflict { field: Some("id"), .. })
    ));
    assert_eq!(fx.store.get_call(&a, "call_aaa").await.unwrap(), Some(rec));
}
on_both_backends!(tenancy);

/// The record writer's batches: the same stored outcome as `upsert_call` on each record in turn, with
/// successive versions of a call folded, multi-row statements of every size, refusals reported by index.
async fn batch_matches_one_by_one(fx: &Fixture) {
    let a = account(fx).await;
    let b = account(fx).await;
    // A's call already stored: B's copy of the id must be refused, not written.
    let owned = started("call_own", &a, "+14155551234", "phn_a", 500);
    fx.store.upsert_call(&owned).await.unwrap();

    let mut batch = Vec::new();
    let mut want = Vec::new();
    // 89 calls = statements of 64, 16, 4, 4 and 1 rows; each call's start, answer and end in order.
    for i in 0..89 {
        let s = started(&format!("call_b{i}"), &a, "+14155551234", "phn_a", 1_000 + i);
        let ans = answered(s.clone());
        let end = ended(ans.clone());
        batch.extend([s, ans.clone(), end.clone()]);
        want.push(end);
    }
    // A stale copy after the end is ignored, as one by one.
    let stale = answered(started("call_b0", &a, "+14155551234", "phn_a", 1_000));
    batch.push(stale);
    // Refused: a junk id (index 268) and another account's id (269); the rest is still stored.
    batch.push(started("call_a-b", &a, "+14155551234", "phn_a", 1));
    batch.push(started("call_own", &b, "+14155550000", "phn_b", 2_000));
    let refused = fx.store.upsert_calls(&batch).await.unwrap();
    let idx: Vec<usize> = refused.iter().map(|(i, _)| *i).collect();
    assert_eq!(idx, vec![268, 269], "{refused:?}");
    assert!(matches!(refused[0].1, StoreError::InvalidField { field: "id", .. }));
    assert!(matches!(refused[1].1, StoreError::Conflict { field: Some("id"), .. }));
    for w in &want {
        assert_eq!(fx.store.get_call(&a, &w.id).await.unwrap().as_ref(), Some(w));
    }
    assert_eq!(fx.store.get_call(&a, "call_own").await.unwrap(), Some(owned));
    let n: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM calls")
        .fetch_one(fx.store.pool())
        .await
        .unwrap();
    assert_eq!(n, 90);

    // A small batch (one statement, no transaction) and an empty one.
    let one = started("call_solo", &a, "+14155551234", "phn_a", 9_000);
    assert!(fx
        .store
        .upsert_calls(std::slice::from_ref(&one))
        .await
        .unwrap()
        .is_empty());
    assert_eq!(fx.store.get_call(&a, "call_solo").await.unwrap(), Some(one));
    assert!(fx.store.upsert_calls(&[]).await.unwrap().is_empty());
}
on_both_backends!(batch_matches_one_by_one);

async fn filters_and_pagination(fx: &Fixture) {
    let acc = account(fx).await;
    let other = account(fx).await;
    // 7 calls: alternate numbers, two share a created_at (tie broken by id).
    let specs: [(&str, &str, &str, i64, bool); 7] = [
        ("call_a1", "+14155551234", "phn_one", 1_000, true),
        ("call_a2", "+14155559999", "phn_two", 2_000, false),
        ("call_a3", "+14155551234", "phn_one", 3_000, true),
        ("call_a4", "+14155551234", "phn_one", 3_000, false),
        ("call_a5", "+14155559999", "phn_two", 4_000, true),
        ("call_a6", "+14155551234", "phn_one", 5_000, false),
        ("call_a7", "+14155559999", "phn_two", 6_000, true),
    ];
    for (id, to, num, at, done) in specs {
        let r = started(id, &acc, to, num, at);
        fx.store
            .upsert_call(&if done { ended(answered(r)) } else { r })
            .await
            .unwrap();
    }
    fx.store
        .upsert_call(&started("call_zz", &other, "+14155551234", "phn_one", 3_500))
        .await
        .unwrap();

    let ids = |items: &[CallRecord]| items.iter().map(|c| c.id.clone()).collect::<Vec<_>>();

    // Newest first, ties by id descending, pages of 3 without gaps or repeats.
    let mut seen = Vec::new();
    let mut cursor: Option<Cursor> = None;
    loop {
        let page = fx
            .store
            .list_calls(&acc, CallFilter::default(), 3, cursor.as_ref())
            .await
            .unwrap();
        assert!(page.items.len() <= 3);
        seen.extend(ids(&page.items));
        match page.next_cursor {
            Some(c) => cursor = Some(Cursor::decode(&c).unwrap()),
            None => break,
        }
    }
    assert_eq!(
        seen,
        ["call_a7", "call_a6", "call_a5", "call_a4", "call_a3", "call_a2", "call_a1"]
    );

    let list = |f: CallFilter| {
        let store = &fx.store;
        let acc = acc.clone();
        async move { ids(&store.list_calls(&acc, f, 100, None).await.unwrap().items) }
    };
    assert_eq!(
        list(CallFilter {
            phone_number_id: Some("phn_two".into()),
            ..Default::default()
        })
        .await,
        ["call_a7", "call_a5", "call_a2"]
    );
    assert_eq!(
        list(CallFilter {
            phone_number: Some("+14155551234".into()),
            ..Default::default()
        })
        .await,
        ["call_a6", "call_a4", "call_a3", "call_a1"]
    );
    // `phone_number` also matches the caller side.
    assert_eq!(
        list(CallFilter {
            phone_number: Some("+15005550006".into()),
            ..Default::default()
        })
        .await
        .len(),
        7
    );
    assert_eq!(
        list(CallFilter {
            status: Some(CallStatus::Completed),
            ..Default::default()
        })
        .await,
        ["call_a7", "call_a5", "call_a3", "call_a1"]
    );
    assert_eq!(
        list(CallFilter {
            status: Some(CallStatus::Queued),
            phone_number_id: Some("phn_one".into()),
            ..Default::default()
        })
        .await,
        ["call_a6", "call_a4"]
    );
    // created_after inclusive, created_before exclusive.
    assert_eq!(
        list(CallFilter {
            created_after_ms: Some(3_000),
            created_before_ms: Some(5_000),
            ..Default::default()
        })
        .await,
        ["call_a5", "call_a4", "call_a3"]
    );
    // Filters combine with pagination.
    let f = CallFilter {
        phone_number_id: Some("phn_one".into()),
        ..Default::default()
    };
    let p1 = fx.store.list_calls(&acc, f.clone(), 2, None).await.unwrap();
    assert_eq!(ids(&p1.items), ["call_a6", "call_a4"]);
    let c = Cursor::decode(p1.next_cursor.as_deref().unwrap()).unwrap();
    let p2 = fx.store.list_calls(&acc, f, 2, Some(&c)).await.unwrap();
    assert_eq!(ids(&p2.items), ["call_a3", "call_a1"]);
    assert_eq!(p2.next_cursor, None);
}
on_both_backends!(filters_and_pagination);

/// Issue 21: the records a node left live (it was killed) are closed at its next start, as of the last time
/// it was seen alive: answered calls `completed` (hung up by the edge), the others `failed`, both "edge
/// restarted". Its ended records and another node's live ones are untouched.
async fn restart_closes_what_the_node_left_live(fx: &Fixture) {
    let acc = account(fx).await;
    assert_eq!(fx.store.node("edge-a").await.unwrap(), None);
    // Seen alive after the records' last writes (stamped with the wall clock when stored).
    let last_seen = edge_store::now_ms() + 3_600_000;
    fx.store.node_started("edge-a", 1_000).await.unwrap();
    fx.store.node_seen("edge-a", last_seen).await.unwrap();
    let seen = fx.store.node("edge-a").await.unwrap().unwrap();
    assert_eq!(
        seen,
        NodeSeen {
            started_at_ms: 1_000,
            last_seen_at_ms: last_seen
        }
    );

    let ringing = started("call_ring", &acc, "+14155551234", "phn_a", 2_000);
    let talking = answered(started("call_talk", &acc, "+14155551234", "phn_a", 3_000));
    let done = ended(answered(started("call_done", &acc, "+14155551234", "phn_a", 1_500)));
    let mut other = started("call_other", &acc, "+14155551234", "phn_a", 2_500);
    other.node = Some("edge-b".into());
    let mut old = started("call_old", &acc, "+14155551234", "phn_a", 2_600);
    old.node = None;
    fx.store
        .upsert_calls(&[
            ringing.clone(),
            talking.clone(),
            done.clone(),
            other.clone(),
            old.clone(),
        ])
        .await
        .unwrap();

    let n = fx
        .store
        .close_left_live("edge-a", Some(seen.last_seen_at_ms))
        .await
        .unwrap();
    assert_eq!(n, 2);
    let get = |id: &'static str| {
        let acc = acc.clone();
        async move { fx.store.get_call(&acc, id).await.unwrap().unwrap() }
    };
    let r = get("call_ring").await;
    assert_eq!(r.status, CallStatus::Failed);
    assert_eq!(r.end_reason.as_deref(), Some("edge restarted"));
    assert_eq!(r.hangup_by, None);
    assert_eq!(r.ended_at_ms, Some(last_seen), "ended when last seen alive");
    assert_eq!(r.node.as_deref(), Some("edge-a"));
    let t = get("call_talk").await;
    assert_eq!(t.status, CallStatus::Completed);
    assert_eq!(t.hangup_by, Some(HangupBy::Edge));
    assert_eq!(t.end_reason.as_deref(), Some("edge restarted"));
    assert_eq!(t.answered_at_ms, talking.answered_at_ms);
    assert_eq!(t.ended_at_ms, Some(last_seen));
    assert!(t.hops.iter().all(|h| h.ended_at_ms.is_some()), "{t:?}");
    assert_eq!(get("call_done").await, done, "an ended record is untouched");
    assert_eq!(
        get("call_other").await,
        other,
        "another node's live record is untouched"
    );
    assert_eq!(get("call_old").await, old, "a record of no node is untouched");

    // Closing again finds nothing; the next start is recorded.
    assert_eq!(fx.store.close_left_live("edge-a", Some(last_seen)).await.unwrap(), 0);
    fx.store.node_started("edge-a", 10_000).await.unwrap();
    assert_eq!(fx.store.node("edge-a").await.unwrap().unwrap().started_at_ms, 10_000);
    assert_eq!(fx.store.node("edge-b").await.unwrap(), None);
}
on_both_backends!(restart_closes_what_the_node_left_live);

/// A store one edge uses alone (SQLite): at start every live record is a leftover, whatever node made it
/// (none, before nodes were named; another id, after the host name changed), each ended as of its own
/// node's last heartbeat, else its last write. Ended records stay as they are.
async fn a_lone_edge_closes_every_live_record(fx: &Fixture) {
    let acc = account(fx).await;
    let b_seen = edge_store::now_ms() + 3_600_000;
    fx.store.node_started("edge-b", 1_000).await.unwrap();
    fx.store.node_seen("edge-b", b_seen).await.unwrap();
    let mut of_b = answered(started("call_b", &acc, "+14155551234", "phn_a", 2_000));
    of_b.node = Some("edge-b".into());
    let mut unnamed = started("call_unnamed", &acc, "+14155551234", "phn_a", 2_100);
    unnamed.node = None;
    let mut of_gone = started("call_gone", &acc, "+14155551234", "phn_a", 2_200);
    of_gone.node = Some("host-that-was".into());
    let done = ended(answered(started("call_done", &acc, "+14155551234", "phn_a", 1_500)));
    fx.store
        .upsert_calls(&[of_b.clone(), unnamed.clone(), of_gone.clone(), done.clone()])
        .await
        .unwrap();
    let before_close = edge_store::now_ms();

    assert_eq!(fx.store.close_every_left_live().await.unwrap(), 3);
    let get = |id: &'static str| {
        let acc = acc.clone();
        async move { fx.store.get_call(&acc, id).await.unwrap().unwrap() }
    };
    let b = get("call_b").await;
    assert_eq!((b.status, b.ended_at_ms), (CallStatus::Completed, Some(b_seen)));
    for id in ["call_unnamed", "call_gone"] {
        let r = get(id).await;
        assert_eq!(r.status, CallStatus::Failed, "{r:?}");
        assert_eq!(r.end_reason.as_deref(), Some("edge restarted"));
        // No heartbeat of its node: ended at its own last write.
        let ended = r.ended_at_ms.unwrap();
        assert!(ended >= r.created_at_ms && ended <= before_close, "{r:?}");
    }
    assert_eq!(get("call_done").await, done);
    assert_eq!(fx.store.close_every_left_live().await.unwrap(), 0);
}
on_both_backends!(a_lone_edge_closes_every_live_record);

/// A write transaction that reads first (as the API's do) while the call-record writer commits on its own
/// pool: on SQLite the writer waits for it (`begin_write` takes the write lock at BEGIN) and both land.
/// With a deferred BEGIN the writer committed at once and the transaction's write then failed with
/// SQLITE_BUSY_SNAPSHOT ("database is locked", 517), which is what an API PATCH met under call load.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_write_transaction_and_the_record_writer_both_land_on_sqlite() {
    let fx = common::sqlite().await;
    let acc = account(&fx).await;
    let writer = fx.store.with_own_pool(1).await.unwrap();
    let mut tx = fx.store.begin_write().await.unwrap();
    let n: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM calls")
        .fetch_one(&mut *tx)
        .await
        .unwrap();
    assert_eq!(n, 0);
    let rec = started("call_duringtx", &acc, "+14155551234", "phn_a", 1_000);
    let record_writer = tokio::spawn({
        let rec = rec.clone();
        async move { writer.upsert_calls(&[rec]).await }
    });
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    assert!(
        !record_writer.is_finished(),
        "the record writer waits for the open write transaction"
    );
    sqlx::query("INSERT INTO accounts (id, created_at) VALUES ('acct_tx_test', 1)")
        .execute(&mut *tx)
        .await
        .expect("the transaction's write after its read succeeds");
    tx.commit().await.unwrap();
    let refused = record_writer.await.unwrap().expect("the record lands after the commit");
    assert!(refused.is_empty());
    assert_eq!(fx.store.get_call(&acc, "call_duringtx").await.unwrap(), Some(rec));
    fx.cleanup().await;
}
