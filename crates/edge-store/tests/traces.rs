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

/// On SQLite a trace's text lives in the hour's segment file under `<data_dir>/traces`, its row keeps only
/// where (an empty body); the retention removes rows first, then the segments no row can point at; a
/// segment that went missing reads as no trace, never as an error or a panic.
#[tokio::test]
async fn sqlite_keeps_the_text_in_segment_files() {
    let fx = common::sqlite().await;
    let edge_store::Database::Sqlite { data_dir } = &fx.config.database else {
        panic!("a SQLite fixture");
    };
    let dir = data_dir.join("traces");
    let body = "INVITE sip:+14155550100@edge SIP/2.0\r\n".repeat(200);
    let now = edge_store::now_ms();
    let t = StoredTrace {
        call_id: "call_file".into(),
        created_at_ms: now,
        messages: 1,
        body: body.clone(),
    };
    fx.store.put_traces(&[t.clone(), trace(1, "short")]).await.unwrap();
    assert_eq!(fx.store.get_trace("call_file").await.unwrap(), Some(t.clone()));
    let stored: String = sqlx::query_scalar("SELECT body FROM call_traces WHERE call_id = 'call_file'")
        .fetch_one(fx.store.pool())
        .await
        .unwrap();
    assert_eq!(stored, "", "the text is not in the row");
    let segments: Vec<_> = std::fs::read_dir(&dir).unwrap().map(|e| e.unwrap().path()).collect();
    assert_eq!(segments.len(), 1, "{segments:?}");
    let size = std::fs::metadata(&segments[0]).unwrap().len();
    assert_eq!(size, (body.len() + "short".len()) as u64);

    // Retention a day on: the rows go, then the segment.
    assert_eq!(fx.store.purge_traces(now + 86_400_000).await.unwrap(), 2);
    assert_eq!(fx.store.get_trace("call_file").await.unwrap(), None);
    assert_eq!(std::fs::read_dir(&dir).unwrap().count(), 0, "the segment is removed");

    // Stored again, then its segment removed behind the store's back: not found, not an error.
    fx.store.put_traces(&[t]).await.unwrap();
    for e in std::fs::read_dir(&dir).unwrap() {
        std::fs::remove_file(e.unwrap().path()).unwrap();
    }
    assert_eq!(fx.store.get_trace("call_file").await.unwrap(), None);
}

/// A crash in the middle of an append (kill -9) leaves bytes no row points at. The store opened again
/// after it appends past them, and every trace whose row was committed reads back whole.
#[tokio::test]
async fn a_torn_append_is_stepped_over_after_a_restart() {
    let fx = common::sqlite().await;
    let edge_store::Database::Sqlite { data_dir } = &fx.config.database else {
        panic!("a SQLite fixture");
    };
    let now = edge_store::now_ms();
    let before = StoredTrace {
        call_id: "call_before".into(),
        created_at_ms: now,
        messages: 1,
        body: "SIPTRACE1\nbefore the crash\n".into(),
    };
    fx.store.put_traces(std::slice::from_ref(&before)).await.unwrap();
    // What a write cut short leaves: a tail of bytes with no row.
    let segment = std::fs::read_dir(data_dir.join("traces"))
        .unwrap()
        .next()
        .unwrap()
        .unwrap()
        .path();
    let mut f = std::fs::OpenOptions::new().append(true).open(&segment).unwrap();
    std::io::Write::write_all(&mut f, b"SIPTRACE1\nhalf a tra").unwrap();
    drop(f);

    let again = edge_store::Store::connect(fx.config.clone()).await.unwrap();
    let after = StoredTrace {
        call_id: "call_after".into(),
        created_at_ms: now,
        messages: 2,
        body: "SIPTRACE1\nafter the restart\n".into(),
    };
    again.put_traces(std::slice::from_ref(&after)).await.unwrap();
    assert_eq!(again.get_trace("call_before").await.unwrap(), Some(before));
    assert_eq!(again.get_trace("call_after").await.unwrap(), Some(after));
}
