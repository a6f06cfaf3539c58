//! Voicemail records: who left a message on which number, how long it is, why recording
//! stopped and where the WAV file lies under the data dir. The SIP side inserts one per
//! stored recording; the API lists, serves and deletes them.

use crate::cursor::Cursor;
use crate::error::{Result, StoreError};
use crate::ids::{new_id, IdKind};
use crate::model::Page;
use crate::store::{fetch_limit, into_page, on_write, Store};
use crate::webhook_outbox::{enqueue, subscriptions, voicemail_event};
use serde::{Deserialize, Serialize};
use sqlx::any::AnyRow;
use sqlx::{AssertSqlSafe, Row};

const VM_COLS: &str = "id, account_id, call_id, phone_number_id, caller, to_number, duration_ms, ended_by, \
     recording_path, created_at";

/// Why a recording stopped, as stored and served (edge-media's `EndedBy`, kebab-case).
pub const VOICEMAIL_ENDED_BY: [&str; 5] = ["hangup", "max-length", "silence", "dtmf-hash", "shutdown"];

/// Longest accepted free-text field (caller, to, call id); these come from SIP headers,
/// which are hostile, so they are bounded before they reach the table.
const MAX_TEXT_LEN: usize = 256;
/// Longest accepted recording path.
const MAX_PATH_LEN: usize = 512;

/// A voicemail as stored.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct VoicemailRecord {
    /// `vm_…`
    pub id: String,
    pub account_id: String,
    /// The call that left the message (`call_…`).
    pub call_id: String,
    pub phone_number_id: Option<String>,
    /// E.164 number or SIP user of the caller, as the carrier sent it; empty when anonymous.
    pub caller: String,
    /// The dialled number, E.164.
    pub to: String,
    pub duration_ms: i64,
    /// One of [`VOICEMAIL_ENDED_BY`].
    pub ended_by: String,
    /// Relative to the data dir, `/`-separated, e.g. `voicemail/vm_abc.wav`; see
    /// [`is_safe_recording_path`].
    pub recording_path: String,
    pub created_at_ms: i64,
}

/// Filters of [`Store::list_voicemails`]; `None` = no constraint.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct VoicemailFilter {
    pub phone_number_id: Option<String>,
}

/// A fresh `vm_…` id for a new recording.
pub fn new_voicemail_id() -> Result<String> {
    Ok(new_id(IdKind::Voicemail)?)
}

/// True when `path` is a plain relative path that cannot leave the directory it is joined
/// to: non-empty `/`-separated segments, none of them `.` or `..`, no leading `/`, no
/// backslash (a Windows separator) and no NUL. Checked on insert and again before the file
/// is opened, so a row edited behind the store's back cannot point outside the data dir.
pub fn is_safe_recording_path(path: &str) -> bool {
    !path.is_empty()
        && path.len() <= MAX_PATH_LEN
        && !path.contains(['\\', '\0'])
        && path.split('/').all(|seg| !seg.is_empty() && seg != "." && seg != "..")
}

fn invalid(field: &'static str, message: impl Into<String>) -> StoreError {
    StoreError::InvalidField {
        field,
        message: message.into(),
    }
}

fn validate(rec: &VoicemailRecord) -> Result<()> {
    if !IdKind::Voicemail.is_valid(&rec.id) {
        return Err(invalid("id", "must look like vm_<alphanumerics>"));
    }
    for (field, v) in [("call_id", &rec.call_id), ("to", &rec.to)] {
        if v.is_empty() || v.len() > MAX_TEXT_LEN {
            return Err(invalid(field, format!("must be 1 to {MAX_TEXT_LEN} bytes")));
        }
    }
    // An anonymous caller may have no user part at all; losing the message over that
    // would be worse than storing an empty caller.
    if rec.caller.len() > MAX_TEXT_LEN {
        return Err(invalid("caller", format!("must be at most {MAX_TEXT_LEN} bytes")));
    }
    if rec
        .phone_number_id
        .as_deref()
        .is_some_and(|p| !IdKind::PhoneNumber.is_valid(p))
    {
        return Err(invalid("phone_number_id", "must look like phn_<alphanumerics>"));
    }
    if rec.duration_ms < 0 {
        return Err(invalid("duration_ms", "must not be negative"));
    }
    if !VOICEMAIL_ENDED_BY.contains(&rec.ended_by.as_str()) {
        return Err(invalid(
            "ended_by",
            format!("must be one of {}", VOICEMAIL_ENDED_BY.join(", ")),
        ));
    }
    if !is_safe_recording_path(&rec.recording_path) {
        return Err(invalid(
            "recording_path",
            "must be a relative path without `.`/`..` segments",
        ));
    }
    Ok(())
}

fn voicemail_from_row(row: &AnyRow) -> Result<VoicemailRecord> {
    Ok(VoicemailRecord {
        id: row.try_get("id")?,
        account_id: row.try_get("account_id")?,
        call_id: row.try_get("call_id")?,
        phone_number_id: row.try_get("phone_number_id")?,
        caller: row.try_get("caller")?,
        to: row.try_get("to_number")?,
        duration_ms: row.try_get("duration_ms")?,
        ended_by: row.try_get("ended_by")?,
        recording_path: row.try_get("recording_path")?,
        created_at_ms: row.try_get("created_at")?,
    })
}

/// Inserts `rec` unless its id is stored already (then `Conflict` if another account's).
async fn insert_row(conn: &mut sqlx::AnyConnection, rec: &VoicemailRecord) -> Result<()> {
    let res = sqlx::query(
        "INSERT INTO voicemails (id, account_id, call_id, phone_number_id, caller, to_number, \
         duration_ms, ended_by, recording_path, created_at) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10) ON CONFLICT (id) DO NOTHING",
    )
    .bind(&rec.id)
    .bind(&rec.account_id)
    .bind(&rec.call_id)
    .bind(&rec.phone_number_id)
    .bind(&rec.caller)
    .bind(&rec.to)
    .bind(rec.duration_ms)
    .bind(&rec.ended_by)
    .bind(&rec.recording_path)
    .bind(rec.created_at_ms)
    .execute(&mut *conn)
    .await
    .map_err(on_write(Some("id")))?;
    if res.rows_affected() == 0 {
        let owner: Option<String> = sqlx::query("SELECT account_id FROM voicemails WHERE id = $1")
            .bind(&rec.id)
            .fetch_optional(&mut *conn)
            .await?
            .map(|r| r.try_get("account_id"))
            .transpose()?;
        if owner.is_some_and(|o| o != rec.account_id) {
            return Err(StoreError::Conflict {
                field: Some("id"),
                message: "voicemail id belongs to another account".into(),
            });
        }
    }
    Ok(())
}

impl Store {
    /// Stores `rec`. Inserting the same id again is a no-op (the SIP side may retry after
    /// a timeout whose write did land); an id that belongs to another account is a
    /// `Conflict`. Invalid fields are `InvalidField` and never reach the table.
    /// With webhooks subscribed to `voicemail.recorded` in the account, the event is queued in the same
    /// transaction as the row.
    pub async fn insert_voicemail(&self, rec: &VoicemailRecord) -> Result<()> {
        validate(rec)?;
        let subs = {
            let mut conn = self.pool.acquire().await?;
            subscriptions(&mut conn, &[rec.account_id.as_str()]).await?
        };
        if subs.is_empty() {
            let mut conn = self.pool.acquire().await?;
            return insert_row(&mut conn, rec).await;
        }
        let mut tx = self.begin_write().await?;
        insert_row(&mut tx, rec).await?;
        enqueue(&mut tx, &subs, &[voicemail_event(rec, self.public_api_url.as_deref())]).await?;
        tx.commit().await?;
        Ok(())
    }

    /// The account's voicemail `id`; `None` for unknown ids and other accounts' ones.
    pub async fn get_voicemail(&self, account_id: &str, id: &str) -> Result<Option<VoicemailRecord>> {
        let sql = format!("SELECT {VM_COLS} FROM voicemails WHERE account_id = $1 AND id = $2");
        // Built only from the constant column list; values are bound.
        let row = sqlx::query(AssertSqlSafe(sql))
            .bind(account_id)
            .bind(id)
            .fetch_optional(&self.pool)
            .await?;
        row.as_ref().map(voicemail_from_row).transpose()
    }

    /// The account's voicemails matching `filter`, newest first (`created_at`, then id, both
    /// descending); `cursor` continues after the last one of the previous page.
    pub async fn list_voicemails(
        &self,
        account_id: &str,
        filter: VoicemailFilter,
        limit: u32,
        cursor: Option<&Cursor>,
    ) -> Result<Page<VoicemailRecord>> {
        let (limit, fetch) = fetch_limit(limit);
        // Assembled from fixed fragments only; every value is bound.
        let mut sql = format!("SELECT {VM_COLS} FROM voicemails WHERE account_id = $1");
        let mut n = 1;
        let mut next = || {
            n += 1;
            n
        };
        if filter.phone_number_id.is_some() {
            sql.push_str(&format!(" AND phone_number_id = ${}", next()));
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
        if let Some(c) = cursor {
            q = q.bind(c.created_at).bind(c.id.clone());
        }
        let rows = q.bind(fetch).fetch_all(&self.pool).await?;
        let items = rows.iter().map(voicemail_from_row).collect::<Result<Vec<_>>>()?;
        Ok(into_page(items, limit, |v| (v.created_at_ms, v.id.as_str())))
    }

    /// Deletes the account's voicemail `id` and returns the row as it was, so the caller can
    /// remove its recording; `None` when there was nothing to delete (unknown id or another
    /// account's). The file is not touched here: the store does not know the data dir.
    pub async fn delete_voicemail(&self, account_id: &str, id: &str) -> Result<Option<VoicemailRecord>> {
        // One statement, so two concurrent deletes cannot both get the row.
        let sql = format!("DELETE FROM voicemails WHERE account_id = $1 AND id = $2 RETURNING {VM_COLS}");
        let row = sqlx::query(AssertSqlSafe(sql))
            .bind(account_id)
            .bind(id)
            .fetch_optional(&self.pool)
            .await?;
        row.as_ref().map(voicemail_from_row).transpose()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn safe_paths() {
        for ok in ["voicemail/vm_abc.wav", "a.wav", "x/y/z.wav", "..wav", "a/..b/c"] {
            assert!(is_safe_recording_path(ok), "{ok}");
        }
        for bad in [
            "",
            "/etc/passwd",
            "../x.wav",
            "voicemail/../../x.wav",
            "a/..",
            "./a.wav",
            "a//b.wav",
            "a/",
            "a\\..\\b.wav",
            "a\0b",
        ] {
            assert!(!is_safe_recording_path(bad), "{bad:?}");
        }
        assert!(!is_safe_recording_path(&"a".repeat(MAX_PATH_LEN + 1)));
    }

    #[test]
    fn ids_are_voicemail_ids() {
        let id = new_voicemail_id().unwrap();
        assert!(id.starts_with("vm_"));
        assert!(IdKind::Voicemail.is_valid(&id));
        assert_ne!(new_voicemail_id().unwrap(), id);
    }
}
