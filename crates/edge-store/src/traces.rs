//! Per-call SIP traces (issue 22): one row per call, the compact text the trace writer built when the
//! call ended (secrets already removed). Read through the API only after the call's own record was found
//! for the caller's account, so the table needs no account column.

use crate::error::{Result, StoreError};
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
        // SQLite: the text goes to the hour's segment file first (before the rows that point at it),
        // the rows keep where it is.
        let places = match &self.trace_files {
            Some(files) => {
                let bodies: Vec<&str> = rows.iter().map(|t| t.body.as_str()).collect();
                Some(
                    files
                        .append(crate::calls::now_ms(), &bodies)
                        .map_err(|e| StoreError::Io(format!("trace segment: {e}")))?,
                )
            }
            None => None,
        };
        let mut tx = self.begin_write().await?;
        let numbered = tx.backend_name() != "SQLite";
        let mut at = 0;
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
                q = q.bind(&t.call_id).bind(t.created_at_ms).bind(t.messages);
                q = match places.as_ref().and_then(|p| p.get(at)) {
                    Some(p) => q.bind("").bind(p.segment).bind(p.offset).bind(p.length),
                    None => q.bind(&t.body).bind(None::<i64>).bind(None::<i64>).bind(None::<i64>),
                };
                at += 1;
            }
            q.execute(&mut *tx).await?;
            rest = tail;
        }
        tx.commit().await?;
        Ok(())
    }

    /// The trace of `call_id`, if one was stored (and not purged).
    pub async fn get_trace(&self, call_id: &str) -> Result<Option<StoredTrace>> {
        let row = sqlx::query(
            "SELECT call_id, created_at, messages, body, segment, body_offset, body_length \
             FROM call_traces WHERE call_id = $1",
        )
        .bind(call_id)
        .fetch_optional(&self.pool)
        .await?;
        let Some(r) = row else { return Ok(None) };
        let mut trace = StoredTrace {
            call_id: r.try_get("call_id")?,
            created_at_ms: r.try_get("created_at")?,
            messages: r.try_get("messages")?,
            body: r.try_get("body")?,
        };
        let segment: Option<i64> = r.try_get("segment")?;
        if let Some(segment) = segment {
            let at = crate::trace_files::Location {
                segment,
                offset: r.try_get::<Option<i64>, _>("body_offset")?.unwrap_or(-1),
                length: r.try_get::<Option<i64>, _>("body_length")?.unwrap_or(-1),
            };
            let Some(files) = self.trace_files.clone() else {
                return Err(StoreError::Corrupt(format!(
                    "trace of {call_id} is in a segment file, and this store has none"
                )));
            };
            let text = tokio::task::spawn_blocking(move || files.read(at))
                .await
                .map_err(|e| StoreError::Io(format!("trace segment: {e}")))?
                .map_err(|e| StoreError::Io(format!("trace segment: {e}")))?;
            match text {
                Some(text) => trace.body = text,
                // The segment is gone (retention ran between the row and the file, or the page cache was
                // lost in a crash): as if the trace had not been stored.
                None => return Ok(None),
            }
        }
        Ok(Some(trace))
    }

    /// Deletes the traces stored before `before_ms` (retention); how many went.
    pub async fn purge_traces(&self, before_ms: i64) -> Result<u64> {
        let _w = self.write_lock.lock().await;
        let r = sqlx::query("DELETE FROM call_traces WHERE created_at < $1")
            .bind(before_ms)
            .execute(&self.pool)
            .await?;
        if let Some(files) = self.trace_files.clone() {
            // After the rows: a segment goes only once no row can point at it.
            let removed = tokio::task::spawn_blocking(move || files.purge(before_ms))
                .await
                .map_err(|e| StoreError::Io(format!("trace segments: {e}")))?
                .map_err(|e| StoreError::Io(format!("trace segments: {e}")))?;
            if removed > 0 {
                tracing::debug!(removed, "trace segment files past the retention removed");
            }
        }
        Ok(r.rows_affected())
    }
}

/// Rows per insert statement: a batch is cut into statements of these sizes, largest first, so a
/// connection prepares and caches four statements at most (64 rows = 448 parameters).
const ROWS_PER_STATEMENT: [usize; 4] = [64, 16, 4, 1];
/// Values per row.
const COLUMNS: usize = 7;

/// The upsert of `rows` traces in one statement. SQLite gets anonymous `?` placeholders (it looks up
/// numbered ones by a linear scan, see `call_log`); PostgreSQL needs the numbers.
fn put_sql(rows: usize, numbered: bool) -> &'static str {
    static SQL: std::sync::OnceLock<[Vec<String>; 2]> = std::sync::OnceLock::new();
    let all = SQL.get_or_init(|| {
        [false, true].map(|numbered| {
            ROWS_PER_STATEMENT
                .iter()
                .map(|&n| {
                    let mut sql = String::from(
                        "INSERT INTO call_traces (call_id, created_at, messages, body, segment, body_offset, \
                         body_length) VALUES ",
                    );
                    for r in 0..n {
                        sql.push_str(if r == 0 { "(" } else { ", (" });
                        for c in 0..COLUMNS {
                            if c > 0 {
                                sql.push_str(", ");
                            }
                            if numbered {
                                sql.push('$');
                                sql.push_str(&(r * COLUMNS + c + 1).to_string());
                            } else {
                                sql.push('?');
                            }
                        }
                        sql.push(')');
                    }
                    sql.push_str(
                        " ON CONFLICT (call_id) DO UPDATE SET created_at = excluded.created_at, \
                         messages = excluded.messages, body = excluded.body, segment = excluded.segment, \
                         body_offset = excluded.body_offset, body_length = excluded.body_length",
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
