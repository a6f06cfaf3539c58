//! The call-record writer: call records and voicemail rows leave the engine over a bounded queue and one
//! writer, on a thread of its own, stores them in order and in batches.

use std::sync::Arc;

use anyhow::Context;
use tokio::sync::mpsc;

use crate::call::Persist;
use edge_store::Store;

/// Call records waiting for the store; past this the engine counts them as dropped rather than block.
pub(super) const RECORD_QUEUE: usize = 65_536;

/// Call records stored per transaction by the writer, at most.
const RECORD_BATCH: usize = 256;
/// How long the writer gathers records after the first one before it writes them: a call's start, answer
/// and end (and the calls around it) then share one transaction; a record is stored this much later.
const RECORD_LINGER: std::time::Duration = std::time::Duration::from_millis(10);

/// Starts [`write_records`] on a thread of its own with a single-threaded runtime and a one-connection
/// pool of its own (opened there, so its PostgreSQL socket is served by that runtime). On the engine's
/// worker the writer competed with the engine: building a batch of records held the SIP messages behind
/// it, and near the edge's top rate the writer fell behind and the record queue overflowed.
pub(super) fn spawn_record_writer(
    store: Arc<Store>,
    rx: mpsc::Receiver<Persist>,
) -> anyhow::Result<tokio::sync::oneshot::Receiver<()>> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .thread_name("record-writer")
        .build()
        .context("starting the call-record writer's runtime")?;
    let (done_tx, done_rx) = tokio::sync::oneshot::channel();
    std::thread::Builder::new()
        .name("record-writer".into())
        .spawn(move || {
            runtime.block_on(async move {
                match store.with_own_pool(1).await {
                    Ok(own) => {
                        let own = Arc::new(own);
                        write_records(own.clone(), rx).await;
                        own.close().await;
                    }
                    Err(e) => {
                        tracing::warn!(error = %e, "call-record writer: no pool of its own, sharing the API's");
                        write_records(store, rx).await;
                    }
                }
            });
            let _ = done_tx.send(());
        })
        .context("starting the call-record writer's thread")?;
    Ok(done_rx)
}

/// Persists call records (start, answer, end) and voicemail rows in the order the engine produced them.
/// After the first record the writer sleeps [`RECORD_LINGER`] and then takes what has queued (up to
/// [`RECORD_BATCH`] per transaction, [`Store::upsert_calls`]: successive versions of a call folded into one
/// row, multi-row statements, one commit): one wake-up per batch, not one per record. A writer that is
/// behind keeps writing without lingering again. When the engine goes (the queue closes), what is queued
/// is written before returning.
async fn write_records(store: Arc<Store>, mut rx: mpsc::Receiver<Persist>) {
    let mut calls: Vec<edge_store::CallRecord> = Vec::with_capacity(RECORD_BATCH);
    while let Some(first) = rx.recv().await {
        tokio::time::sleep(RECORD_LINGER).await;
        let mut next = Some(first);
        loop {
            while let Some(p) = next.take() {
                match p {
                    Persist::Call(rec) => calls.push(rec),
                    Persist::Voicemail(vm) => {
                        // Keep the order: the calls gathered before this row go first.
                        store_calls(&store, &mut calls).await;
                        if let Err(e) = store.insert_voicemail(&vm).await {
                            tracing::error!(voicemail = %vm.id, error = %e, "voicemail row not stored");
                        }
                    }
                }
                if calls.len() < RECORD_BATCH {
                    next = rx.try_recv().ok();
                }
            }
            store_calls(&store, &mut calls).await;
            match rx.try_recv() {
                Ok(p) => next = Some(p),
                Err(_) => break,
            }
        }
    }
}

/// Stores and empties `calls`: one transaction; if that fails as a whole, record by record so one bad
/// record cannot cost the others.
async fn store_calls(store: &Store, calls: &mut Vec<edge_store::CallRecord>) {
    if calls.is_empty() {
        return;
    }
    match store.upsert_calls(calls).await {
        Ok(refused) => {
            for (i, e) in refused {
                let id = calls.get(i).map_or("?", |c| c.id.as_str());
                tracing::error!(call = %id, error = %e, "call record not stored");
            }
        }
        Err(e) => {
            tracing::warn!(records = calls.len(), error = %e, "batch of call records failed; storing one by one");
            for rec in calls.iter() {
                if let Err(e) = store.upsert_call(rec).await {
                    tracing::error!(call = %rec.id, error = %e, "call record not stored");
                }
            }
        }
    }
    calls.clear();
}
