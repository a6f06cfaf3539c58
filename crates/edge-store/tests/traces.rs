//! Stored SIP traces on SQLite and PostgreSQL: a writer's batch (many rows per statement, a call id
//! twice in one batch) reads back as written, the last of a call id winning.

mod common;

use common::Fixture;
use edge_store::StoredTrace;

fn trace(i: usize, body: &str) -> StoredTrace {
    StoredTrace {
        call_id: format!("call_t{i}"),
        created_at_ms: 1_000 + i as i64,
        messages: i as i64,
        body: body.to_owned(),
    }
}

async fn a_batch_is_stored_whole(fx: &Fixture) {
    // 64 + 16 + 4 + 1 + 1 rows after the duplicate goes: every statement size is used.
    let mut batch: Vec<StoredTrace> = (0..86).map(|i| trace(i, &format!("body {i}"))).collect();
    batch.push(trace(7, "body 7, again"));
    fx.store.put_traces(&batch).await.unwrap();
    for i in [0, 1, 63, 64, 79, 80, 84, 85] {
        let t = fx.store.get_trace(&format!("call_t{i}")).await.unwrap().unwrap();
        assert_eq!(t, trace(i, &format!("body {i}")));
    }
    let again = fx.store.get_trace("call_t7").await.unwrap().unwrap();
    assert_eq!(again.body, "body 7, again");
    assert_eq!(fx.store.get_trace("call_t86").await.unwrap(), None);

    // Stored again (a later batch): replaced.
    fx.store.put_traces(&[trace(3, "replaced")]).await.unwrap();
    assert_eq!(fx.store.get_trace("call_t3").await.unwrap().unwrap().body, "replaced");
    assert_eq!(fx.store.purge_traces(1_050).await.unwrap(), 50);
    assert_eq!(fx.store.get_trace("call_t49").await.unwrap(), None);
    assert!(fx.store.get_trace("call_t50").await.unwrap().is_some());
}
on_both_backends!(a_batch_is_stored_whole);
