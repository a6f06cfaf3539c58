//! Storage of [`CallRecord`]s: idempotent upserts from the SIP side's record writer and
//! account-scoped, newest-first listings for the API.

use crate::calls::{CallError, CallFilter, CallRecord, CallStatus, HangupBy, Hop, Route};
use crate::cursor::Cursor;
use crate::error::{Result, StoreError};
use crate::ids::IdKind;
use crate::model::Page;
use crate::store::{fetch_limit, into_page, on_write, parse_col, Store};
use crate::time::now_millis;
use sqlx::any::AnyRow;
use sqlx::{AssertSqlSafe, Row};

const CALL_COLS: &str = "id, account_id, direction, carrier, from_number, caller_name, to_number, \
     phone_number_id, status, answered_by, agent_id, hops_json, end_reason, hangup_by, sip_status, \
     sip_call_id, error_code, error_message, created_at, answered_at, ended_at";

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

fn call_from_row(row: &AnyRow) -> Result<CallRecord> {
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
    })
}

impl Store {
    /// Inserts the call or replaces the stored version with `rec`. Writing the same record
    /// again changes nothing visible. A write that would turn an ended call back into a
    /// live one is ignored (a stale copy arriving late must not resurrect it); an id that
    /// belongs to another account is a `Conflict`.
    pub async fn upsert_call(&self, rec: &CallRecord) -> Result<()> {
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
        let hops_json = serde_json::to_string(&rec.hops).map_err(|e| StoreError::Corrupt(format!("hops: {e}")))?;
        let res = sqlx::query(
            "INSERT INTO calls (id, account_id, direction, carrier, from_number, caller_name, to_number, \
             phone_number_id, status, answered_by, agent_id, hops_json, end_reason, hangup_by, sip_status, \
             sip_call_id, error_code, error_message, created_at, answered_at, ended_at, updated_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, $18, \
             $19, $20, $21, $22) \
             ON CONFLICT (id) DO UPDATE SET direction = excluded.direction, carrier = excluded.carrier, \
             from_number = excluded.from_number, caller_name = excluded.caller_name, \
             to_number = excluded.to_number, phone_number_id = excluded.phone_number_id, \
             status = excluded.status, answered_by = excluded.answered_by, agent_id = excluded.agent_id, \
             hops_json = excluded.hops_json, end_reason = excluded.end_reason, \
             hangup_by = excluded.hangup_by, sip_status = excluded.sip_status, \
             sip_call_id = excluded.sip_call_id, error_code = excluded.error_code, \
             error_message = excluded.error_message, created_at = excluded.created_at, \
             answered_at = excluded.answered_at, ended_at = excluded.ended_at, \
             updated_at = excluded.updated_at \
             WHERE calls.account_id = excluded.account_id \
             AND (calls.ended_at IS NULL OR excluded.ended_at IS NOT NULL)",
        )
        .bind(&rec.id)
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
        .bind(now_millis())
        .execute(&self.pool)
        .await
        .map_err(on_write(Some("id")))?;
        if res.rows_affected() == 0 {
            // Either the stale-write guard or another account's id; only the latter is an error.
            let owner: Option<String> = sqlx::query("SELECT account_id FROM calls WHERE id = $1")
                .bind(&rec.id)
                .fetch_optional(&self.pool)
                .await?
                .map(|r| r.try_get("account_id"))
                .transpose()?;
            if owner.is_some_and(|o| o != rec.account_id) {
                return Err(StoreError::Conflict {
                    field: Some("id"),
                    message: "call id belongs to another account".into(),
                });
            }
        }
        Ok(())
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
