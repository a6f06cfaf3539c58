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
    /// Stores (or replaces) traces in one transaction, many rows per statement: a statement per trace
    /// (a round trip to the connection's thread each, a thousand a second under load) cost more than
    /// the rows.
    pub async fn put_traces(&self, traces: &[StoredTrace]) -> Result<()> {
        if traces.is_empty() {
            return Ok(());
        }
        // One statement may not touch a row twice (PostgreSQL refuses): the last of a call id wins, as
        // one statement per trace had it.
        let mut last = std::collections::HashMap::with_capacity(traces.len());
        for (i, t) in traces.iter().enumerate() {
            last.insert(t.call_id.as_str(), i);
        }
        let rows: Vec<&StoredTrace> = traces
            .iter()
            .enumerate()
            .filter(|(i, t)| last.get(t.call_id.as_str()) == Some(i))
            .map(|(_, t)| t)
            .collect();
        let mut tx = self.begin_write().await?;
        let numbered = tx.backend_name() != "SQLite";
        let mut rest = rows.as_slice();
        while !rest.is_empty() {
            let n = ROWS_PER_STATEMENT
                .iter()
                .copied()
                .find(|&n| n <= rest.len())
                .unwrap_or(1);
            let (chunk, tail) = rest.split_at(n);
            let mut q = sqlx::query(put_sql(n, numbered));
            for t in chunk {
                q = q.bind(&t.call_id).bind(t.created_at_ms).bind(t.messages).bind(&t.body);
            }
            q.execute(&mut *tx).await?;
            rest = tail;
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

/// Rows per insert statement: a batch is cut into statements of these sizes, largest first, so a
/// connection prepares and caches four statements at most (64 rows = 256 parameters).
const ROWS_PER_STATEMENT: [usize; 4] = [64, 16, 4, 1];

/// The upsert of `rows` traces in one statement. SQLite gets anonymous `?` placeholders (it looks up
/// numbered ones by a linear scan, see `call_log`); PostgreSQL needs the numbers.
fn put_sql(rows: usize, numbered: bool) -> &'static str {
    static SQL: std::sync::OnceLock<[Vec<String>; 2]> = std::sync::OnceLock::new();
    let all = SQL.get_or_init(|| {
        [false, true].map(|numbered| {
            ROWS_PER_STATEMENT
                .iter()
                .map(|&n| {
                    let mut sql = String::from("INSERT INTO call_traces (call_id, created_at, messages, body) VALUES ");
                    for r in 0..n {
                        sql.push_str(if r == 0 { "(" } else { ", (" });
                        for c in 0..4 {
                            if c > 0 {
                                sql.push_str(", ");
                            }
                            if numbered {
                                sql.push('$');
                                sql.push_str(&(r * 4 + c + 1).to_string());
                            } else {
                                sql.push('?');
                            }
                        }
                        sql.push(')');
                    }
                    sql.push_str(
                        " ON CONFLICT (call_id) DO UPDATE SET created_at = excluded.created_at, \
                         messages = excluded.messages, body = excluded.body",
                    );
                    sql
                })
                .collect()
        })
    });
    let i = ROWS_PER_STATEMENT
        .iter()
        .position(|&n| n == rows)
        .unwrap_or(ROWS_PER_STATEMENT.len() - 1);
    all[usize::from(numbered)].get(i).map_or("", String::as_str)
}
