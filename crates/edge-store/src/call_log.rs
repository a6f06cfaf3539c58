//! Storage of [`CallRecord`]s: idempotent upserts from the SIP side's record writer and
//! account-scoped, newest-first listings for the API.

use crate::calls::{CallError, CallFilter, CallRecord, CallStatus, HangupBy, Hop, Route};
use crate::cursor::Cursor;
use crate::error::{Result, StoreError};
use crate::ids::IdKind;
use crate::model::Page;
use crate::store::{fetch_limit, into_page, on_write, parse_col, Store};
use crate::time::now_millis;
use crate::webhook_outbox::{accounts_of, call_events, enqueue, subscriptions, PendingEvent};
use sqlx::any::AnyRow;
use sqlx::{AssertSqlSafe, Row};

const CALL_COLS: &str = call_cols!();

/// Longest hop list stored per call; the SIP side's plan is a handful of hops, so anything
/// beyond this is a bug upstream and is refused rather than written unbounded.
const MAX_HOPS: usize = 64;

fn sip_status_col(v: Option<i64>, col: &str) -> Result<Option<u16>> {
    v.map(|n| u16::try_from(n).map_err(|_| StoreError::Corrupt(format!("bad {col}"))))
        .transpose()
}

fn opt_enum<T>(row: &AnyRow, col: &str, parse: fn(&str) -> Option<T>) -> Result<Option<T>> {
    let v: Option<String> = row.try_get(col)?;
    v.map(|s| parse(&s).ok_or_else(|| StoreError::Corrupt(format!("bad {col}"))))
        .transpose()
}

pub(crate) fn call_from_row(row: &AnyRow) -> Result<CallRecord> {
    let hops_json: String = row.try_get("hops_json")?;
    let hops: Vec<Hop> = serde_json::from_str(&hops_json).map_err(|_| StoreError::Corrupt("bad hops_json".into()))?;
    let error_code: Option<String> = row.try_get("error_code")?;
    let error_message: Option<String> = row.try_get("error_message")?;
    Ok(CallRecord {
        id: row.try_get("id")?,
        account_id: row.try_get("account_id")?,
        direction: row.try_get("direction")?,
        carrier: row.try_get("carrier")?,
        from: row.try_get("from_number")?,
        caller_name: row.try_get("caller_name")?,
        to: row.try_get("to_number")?,
        phone_number_id: row.try_get("phone_number_id")?,
        status: parse_col(row, "status", CallStatus::parse)?,
        answered_by: opt_enum(row, "answered_by", Route::parse)?,
        agent_id: row.try_get("agent_id")?,
        hops,
        end_reason: row.try_get("end_reason")?,
        hangup_by: opt_enum(row, "hangup_by", HangupBy::parse)?,
        sip_status: sip_status_col(row.try_get("sip_status")?, "sip_status")?,
        sip_call_id: row.try_get("sip_call_id")?,
        error: error_code.map(|code| CallError {
            code,
            message: error_message.unwrap_or_default(),
        }),
        created_at_ms: row.try_get("created_at")?,
        answered_at_ms: row.try_get("answered_at")?,
        ended_at_ms: row.try_get("ended_at")?,
        node: row.try_get("node")?,
    })
}

const UPSERT_HEAD: &str = "INSERT INTO calls (id, account_id, direction, carrier, from_number, caller_name, \
     to_number, phone_number_id, status, answered_by, agent_id, hops_json, end_reason, hangup_by, sip_status, \
     sip_call_id, error_code, error_message, created_at, answered_at, ended_at, updated_at, node) VALUES ";
const UPSERT_TAIL: &str =
    " ON CONFLICT (id) DO UPDATE SET direction = excluded.direction, carrier = excluded.carrier, \
     from_number = excluded.from_number, caller_name = excluded.caller_name, \
     to_number = excluded.to_number, phone_number_id = excluded.phone_number_id, \
     status = excluded.status, answered_by = excluded.answered_by, agent_id = excluded.agent_id, \
     hops_json = excluded.hops_json, end_reason = excluded.end_reason, \
     hangup_by = excluded.hangup_by, sip_status = excluded.sip_status, \
     sip_call_id = excluded.sip_call_id, error_code = excluded.error_code, \
     error_message = excluded.error_message, created_at = excluded.created_at, \
     answered_at = excluded.answered_at, ended_at = excluded.ended_at, \
     updated_at = excluded.updated_at, node = excluded.node \
     WHERE calls.account_id = excluded.account_id \
     AND (calls.ended_at IS NULL OR excluded.ended_at IS NOT NULL)";
/// Values bound per row of the upsert.
const UPSERT_COLS: usize = 23;
/// Rows per upsert statement: a batch is cut into statements of these sizes, largest first, so a
/// connection prepares and caches four statements at most (64 rows = 1,472 parameters, far below the
/// SQLite and PostgreSQL limits).
const ROWS_PER_STATEMENT: [usize; 4] = [64, 16, 4, 1];

/// The upsert of `rows` records in one statement (`$1..$23` the first row, `$24..` the next, ...).
///
/// On SQLite the placeholders are anonymous `?`: sqlx asks SQLite for every parameter's name, and SQLite
/// finds a name by a linear scan of the statement's name list, so numbered placeholders cost O(n^2) per
/// statement (1,408 parameters: a million steps, 17% of the SQLite thread's time under load in `perf`).
/// PostgreSQL needs the numbers.
fn upsert_sql(rows: usize, numbered: bool) -> &'static str {
    static SQL: std::sync::OnceLock<[Vec<String>; 2]> = std::sync::OnceLock::new();
    let all = SQL.get_or_init(|| {
        [false, true].map(|numbered| {
            ROWS_PER_STATEMENT
                .iter()
                .map(|&n| {
                    let mut sql = String::from(UPSERT_HEAD);
                    for r in 0..n {
                        sql.push_str(if r == 0 { "(" } else { ", (" });
                        for c in 0..UPSERT_COLS {
                            if c > 0 {
                                sql.push_str(", ");
                            }
                            if numbered {
                                sql.push('$');
                                sql.push_str(&(r * UPSERT_COLS + c + 1).to_string());
                            } else {
                                sql.push('?');
                            }
                        }
                        sql.push(')');
                    }
                    sql.push_str(UPSERT_TAIL);
                    sql
                })
                .collect()
        })
    });
    // `rows` is one of ROWS_PER_STATEMENT (upsert_rows picks it), so the position is always found.
    let i = ROWS_PER_STATEMENT
        .iter()
        .position(|&n| n == rows)
        .unwrap_or(ROWS_PER_STATEMENT.len() - 1);
    all[usize::from(numbered)].get(i).map_or("", String::as_str)
}

/// The checks `upsert_call` makes before writing; the hop list as stored.
fn checked_hops(rec: &CallRecord) -> Result<String> {
    if !IdKind::Call.is_valid(&rec.id) {
        return Err(StoreError::InvalidField {
            field: "id",
            message: "must look like call_<alphanumerics>".into(),
        });
    }
    if rec.hops.len() > MAX_HOPS {
        return Err(StoreError::InvalidField {
            field: "hops",
            message: format!("at most {MAX_HOPS} hops"),
        });
    }
    serde_json::to_string(&rec.hops).map_err(|e| StoreError::Corrupt(format!("hops: {e}")))
}

type AnyQuery<'q> = sqlx::query::Query<'q, sqlx::Any, sqlx::any::AnyArguments>;

/// Binds one row of the upsert.
fn bind_call<'q>(q: AnyQuery<'q>, rec: &'q CallRecord, hops_json: String, now: i64) -> AnyQuery<'q> {
    q.bind(&rec.id)
        .bind(&rec.account_id)
        .bind(&rec.direction)
        .bind(&rec.carrier)
        .bind(&rec.from)
        .bind(&rec.caller_name)
        .bind(&rec.to)
        .bind(&rec.phone_number_id)
        .bind(rec.status.as_str())
        .bind(rec.answered_by.map(|r| r.as_str().to_owned()))
        .bind(&rec.agent_id)
        .bind(hops_json)
        .bind(&rec.end_reason)
        .bind(rec.hangup_by.map(|h| h.as_str().to_owned()))
        .bind(rec.sip_status.map(i64::from))
        .bind(&rec.sip_call_id)
        .bind(rec.error.as_ref().map(|e| e.code.clone()))
        .bind(rec.error.as_ref().map(|e| e.message.clone()))
        .bind(rec.created_at_ms)
        .bind(rec.answered_at_ms)
        .bind(rec.ended_at_ms)
        .bind(now)
        .bind(&rec.node)
}

/// `Conflict` for the records of `rows` whose id is stored under another account (an upsert that
/// changed nothing was either that or the stale-write guard; only the former is an error).
async fn foreign_ids(conn: &mut sqlx::AnyConnection, rows: &[(usize, &CallRecord, String)]) -> Result<Vec<usize>> {
    let mut foreign = Vec::new();
    for (i, rec, _) in rows {
        let owner: Option<String> = sqlx::query("SELECT account_id FROM calls WHERE id = $1")
            .bind(&rec.id)
            .fetch_optional(&mut *conn)
            .await?
            .map(|r| r.try_get("account_id"))
            .transpose()?;
        if owner.is_some_and(|o| o != rec.account_id) {
            foreign.push(*i);
        }
    }
    Ok(foreign)
}

fn foreign_conflict() -> StoreError {
    StoreError::Conflict {
        field: Some("id"),
        message: "call id belongs to another account".into(),
    }
}

/// Upserts `rows` (distinct ids) in statements of [`ROWS_PER_STATEMENT`] rows; the indexes of the
/// records refused because their id belongs to another account.
async fn upsert_rows(conn: &mut sqlx::AnyConnection, rows: &mut [(usize, &CallRecord, String)]) -> Result<Vec<usize>> {
    let now = now_millis();
    let numbered = conn.backend_name() != "SQLite";
    let mut refused = Vec::new();
    let mut rest = rows;
    while !rest.is_empty() {
        let n = ROWS_PER_STATEMENT
            .iter()
            .copied()
            .find(|&n| n <= rest.len())
            .unwrap_or(1);
        let (chunk, tail) = rest.split_at_mut(n);
        let mut q = sqlx::query(upsert_sql(n, numbered));
        for (_, rec, hops) in chunk.iter_mut() {
            q = bind_call(q, rec, std::mem::take(hops), now);
        }
        let res = q.execute(&mut *conn).await.map_err(on_write(Some("id")))?;
        if res.rows_affected() < n as u64 {
            refused.extend(foreign_ids(conn, chunk).await?);
        }
        rest = tail;
    }
    Ok(refused)
}

/// Folds successive versions of one call into the last one that `upsert_call` in turn would have left
/// stored: a later version replaces an earlier one of the same account unless it would turn an ended
/// call back into a live one (the stale-write guard drops it). A version of another account's id starts
/// a new group, written after the first (so the conflict is still reported).
fn coalesce(recs: Vec<(usize, &CallRecord, String)>) -> Vec<Vec<(usize, &CallRecord, String)>> {
    let mut groups: Vec<Vec<(usize, &CallRecord, String)>> = Vec::new();
    // id -> (group, position in it)
    let mut pos: std::collections::HashMap<String, (usize, usize)> =
        std::collections::HashMap::with_capacity(recs.len());
    for item in recs {
        let id = item.1.id.as_str();
        match pos.get(id).copied() {
            Some((g, k)) if groups[g][k].1.account_id == item.1.account_id => {
                let held = groups[g][k].1;
                if held.ended_at_ms.is_none() || item.1.ended_at_ms.is_some() {
                    groups[g][k] = item;
                }
            }
            found => {
                // A later group for an id already written with another account, else the first one.
                let g = found.map_or(0, |(g, _)| g + 1);
                if groups.len() <= g {
                    groups.resize_with(g + 1, Vec::new);
                }
                pos.insert(id.to_owned(), (g, groups[g].len()));
                groups[g].push(item);
            }
        }
    }
    groups
}

impl Store {
    /// Inserts the call or replaces the stored version with `rec`. Writing the same record
    /// again changes nothing visible. A write that would turn an ended call back into a
    /// live one is ignored (a stale copy arriving late must not resurrect it); an id that
    /// belongs to another account is a `Conflict`.
    pub async fn upsert_call(&self, rec: &CallRecord) -> Result<()> {
        checked_hops(rec)?;
        match self.upsert_calls(std::slice::from_ref(rec)).await?.pop() {
            None => Ok(()),
            Some((_, e)) => Err(e),
        }
    }

    /// Stores `recs` (a few hundred at a time keeps transactions short) with the stored outcome of
    /// [`upsert_call`](Self::upsert_call) on each in turn, in one transaction and few statements:
    /// successive versions of a call are folded into the last one first and the rest is written as
    /// multi-row upserts, so a call's start, answer and end queued together cost one row and a batch a
    /// handful of statements and one commit. Records `upsert_call` would refuse (invalid, another
    /// account's id) are left out and returned with their index in `recs`; the others are stored. A
    /// database error rolls the whole batch back and is returned: then nothing of it was stored.
    pub async fn upsert_calls(&self, recs: &[CallRecord]) -> Result<Vec<(usize, StoreError)>> {
        let mut refused = Vec::new();
        let mut valid = Vec::with_capacity(recs.len());
        for (i, rec) in recs.iter().enumerate() {
            match checked_hops(rec) {
                Ok(hops) => valid.push((i, rec, hops)),
                Err(e) => refused.push((i, e)),
            }
        }
        // Webhooks of these accounts: their events go in the records' transaction (the outbox).
        let subs = if valid.is_empty() {
            Vec::new()
        } else {
            let accounts = accounts_of(valid.iter().map(|(_, r, _)| r.account_id.as_str()));
            let mut conn = self.pool.acquire().await?;
            subscriptions(&mut conn, &accounts).await?
        };
        let events: Vec<(usize, PendingEvent)> = if subs.is_empty() {
            Vec::new()
        } else {
            valid
                .iter()
                .flat_map(|(i, r, _)| call_events(r).into_iter().map(move |e| (*i, e)))
                .collect()
        };
        let groups = coalesce(valid);
        // One statement is atomic on its own: then no BEGIN/COMMIT round trips.
        let single = events.is_empty() && matches!(groups.as_slice(), [one] if ROWS_PER_STATEMENT.contains(&one.len()));
        if single {
            let mut conn = self.pool.acquire().await?;
            for mut rows in groups {
                let foreign = upsert_rows(&mut conn, &mut rows).await?;
                refused.extend(foreign.into_iter().map(|i| (i, foreign_conflict())));
            }
        } else if !groups.is_empty() {
            let mut tx = self.begin_write().await?;
            for mut rows in groups {
                let foreign = upsert_rows(&mut tx, &mut rows).await?;
                refused.extend(foreign.into_iter().map(|i| (i, foreign_conflict())));
            }
            if !events.is_empty() {
                let stored: Vec<PendingEvent> = events
                    .into_iter()
                    .filter(|(i, _)| !refused.iter().any(|(r, _)| r == i))
                    .map(|(_, e)| e)
                    .collect();
                enqueue(&mut tx, &subs, &stored).await?;
            }
            tx.commit().await?;
        }
        refused.sort_by_key(|(i, _)| *i);
        Ok(refused)
    }

    pub async fn get_call(&self, account_id: &str, id: &str) -> Result<Option<CallRecord>> {
        let sql = format!("SELECT {CALL_COLS} FROM calls WHERE account_id = $1 AND id = $2");
        // Built only from the constant column list; values are bound.
        let row = sqlx::query(AssertSqlSafe(sql))
            .bind(account_id)
            .bind(id)
            .fetch_optional(&self.pool)
            .await?;
        row.as_ref().map(call_from_row).transpose()
    }

    /// The account's calls matching `filter`, newest first (`created_at`, then id, both
    /// descending); `cursor` continues after the last call of the previous page.
    pub async fn list_calls(
        &self,
        account_id: &str,
        filter: CallFilter,
        limit: u32,
        cursor: Option<&Cursor>,
    ) -> Result<Page<CallRecord>> {
        let (limit, fetch) = fetch_limit(limit);
        // The WHERE clause is assembled from fixed fragments only; every value is bound, so
        // the SQL text never contains input.
        let mut sql = format!("SELECT {CALL_COLS} FROM calls WHERE account_id = $1");
        let mut n = 1;
        let mut next = || {
            n += 1;
            n
        };
        if filter.phone_number_id.is_some() {
            sql.push_str(&format!(" AND phone_number_id = ${}", next()));
        }
        if filter.agent_id.is_some() {
            sql.push_str(&format!(" AND agent_id = ${}", next()));
        }
        if filter.direction.is_some() {
            sql.push_str(&format!(" AND direction = ${}", next()));
        }
        if filter.phone_number.is_some() {
            let p = next();
            sql.push_str(&format!(" AND (to_number = ${p} OR from_number = ${p})"));
        }
        if filter.status.is_some() {
            sql.push_str(&format!(" AND status = ${}", next()));
        }
        if filter.created_after_ms.is_some() {
            sql.push_str(&format!(" AND created_at >= ${}", next()));
        }
        if filter.created_before_ms.is_some() {
            sql.push_str(&format!(" AND created_at < ${}", next()));
        }
        if cursor.is_some() {
            let (t, i) = (next(), next());
            sql.push_str(&format!(
                " AND (created_at < ${t} OR (created_at = ${t} AND id < ${i}))"
            ));
        }
        sql.push_str(&format!(" ORDER BY created_at DESC, id DESC LIMIT ${}", next()));

        let mut q = sqlx::query(AssertSqlSafe(sql)).bind(account_id.to_owned());
        if let Some(v) = filter.phone_number_id {
            q = q.bind(v);
        }
        if let Some(v) = filter.agent_id {
            q = q.bind(v);
        }
        if let Some(v) = filter.direction {
            q = q.bind(v);
        }
        if let Some(v) = filter.phone_number {
            q = q.bind(v);
        }
        if let Some(v) = filter.status {
            q = q.bind(v.as_str());
        }
        if let Some(v) = filter.created_after_ms {
            q = q.bind(v);
        }
        if let Some(v) = filter.created_before_ms {
            q = q.bind(v);
        }
        if let Some(c) = cursor {
            q = q.bind(c.created_at).bind(c.id.clone());
        }
        let rows = q.bind(fetch).fetch_all(&self.pool).await?;
        let items = rows.iter().map(call_from_row).collect::<Result<Vec<_>>>()?;
        Ok(into_page(items, limit, |c| (c.created_at_ms, c.id.as_str())))
    }
}
