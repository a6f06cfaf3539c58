//! Per-call SIP traces (issue 22): one row per call, the compact text the trace writer built when the
//! call ended (secrets already removed). Read through the API only after the call's own record was found
//! for the caller's account, so the table needs no account column.

use crate::error::Result;
use crate::store::Store;
use sqlx::Row;

/// A stored trace: when it was stored, how many messages it holds, and its text (`edge_api::traces::stored`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredTrace {
    pub call_id: String,
    pub created_at_ms: i64,
    pub messages: i64,
    pub body: String,
}

impl Store {
    /// Stores (or replaces) traces in one transaction.
    pub async fn put_traces(&self, traces: &[StoredTrace]) -> Result<()> {
        if traces.is_empty() {
            return Ok(());
        }
        let mut tx = self.begin_write().await?;
        for t in traces {
            sqlx::query(
                "INSERT INTO call_traces (call_id, created_at, messages, body) VALUES ($1, $2, $3, $4) \
                 ON CONFLICT (call_id) DO UPDATE SET created_at = excluded.created_at, \
                 messages = excluded.messages, body = excluded.body",
            )
            .bind(&t.call_id)
            .bind(t.created_at_ms)
            .bind(t.messages)
            .bind(&t.body)
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await?;
        Ok(())
    }

    /// The trace of `call_id`, if one was stored (and not purged).
    pub async fn get_trace(&self, call_id: &str) -> Result<Option<StoredTrace>> {
        let row = sqlx::query("SELECT call_id, created_at, messages, body FROM call_traces WHERE call_id = $1")
            .bind(call_id)
            .fetch_optional(&self.pool)
            .await?;
        row.map(|r| {
            Ok(StoredTrace {
                call_id: r.try_get("call_id")?,
                created_at_ms: r.try_get("created_at")?,
                messages: r.try_get("messages")?,
                body: r.try_get("body")?,
            })
        })
        .transpose()
    }

    /// Deletes the traces stored before `before_ms` (retention); how many went.
    pub async fn purge_traces(&self, before_ms: i64) -> Result<u64> {
        let _w = self.write_lock.lock().await;
        let r = sqlx::query("DELETE FROM call_traces WHERE created_at < $1")
            .bind(before_ms)
            .execute(&self.pool)
            .await?;
        Ok(r.rows_affected())
    }
}
