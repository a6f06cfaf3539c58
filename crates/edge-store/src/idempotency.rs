//! `Idempotency-Key` records: a retried POST that buys or creates gets the first answer back
//! instead of doing the work twice. Keys are per account and live 24 hours.

use crate::error::Result;
use crate::store::Store;
use crate::time::now_millis;
use sha2::{Digest, Sha256};
use sqlx::Row;

/// How long a key is remembered.
pub const IDEMPOTENCY_TTL_MS: i64 = 24 * 60 * 60 * 1000;
/// How long a key whose request never recorded an answer (the process died mid-request) blocks
/// retries: past this a retry runs again instead of 409 `idempotency_in_progress` for 24 h.
/// Longer than any purchase takes (provider time-outs and Telnyx order following are minutes).
pub const IDEMPOTENCY_STUCK_MS: i64 = 10 * 60 * 1000;

/// What to do with a request carrying an `Idempotency-Key`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum IdempotencyBegin {
    /// First use of the key: run the request, then [`Store::idempotency_finish`].
    Started,
    /// The key was used for this same request: answer with the stored response.
    Replay { status: u16, body: String },
    /// The same request is still running (another connection, or a client that gave up).
    InProgress,
    /// The key was used for a different request.
    Mismatch,
}

/// SHA-256 hex of what identifies a request: method, path and body.
pub fn idempotency_request_hash(method: &str, path: &str, body: &[u8]) -> String {
    let mut h = Sha256::new();
    h.update(method.as_bytes());
    h.update([0]);
    h.update(path.as_bytes());
    h.update([0]);
    h.update(body);
    h.finalize().iter().map(|b| format!("{b:02x}")).collect()
}

impl Store {
    /// Claims `key` for `request_hash` or reports how it was used before.
    pub async fn idempotency_begin(&self, account_id: &str, key: &str, request_hash: &str) -> Result<IdempotencyBegin> {
        let now = now_millis();
        sqlx::query("DELETE FROM idempotency_keys WHERE created_at < $1 OR (status_code IS NULL AND created_at < $2)")
            .bind(now - IDEMPOTENCY_TTL_MS)
            .bind(now - IDEMPOTENCY_STUCK_MS)
            .execute(&self.pool)
            .await?;
        let inserted = sqlx::query(
            "INSERT INTO idempotency_keys (account_id, idem_key, request_hash, created_at) \
             VALUES ($1, $2, $3, $4) ON CONFLICT DO NOTHING",
        )
        .bind(account_id)
        .bind(key)
        .bind(request_hash)
        .bind(now)
        .execute(&self.pool)
        .await?;
        if inserted.rows_affected() == 1 {
            return Ok(IdempotencyBegin::Started);
        }
        let row = sqlx::query(
            "SELECT request_hash, status_code, response_body FROM idempotency_keys \
             WHERE account_id = $1 AND idem_key = $2",
        )
        .bind(account_id)
        .bind(key)
        .fetch_optional(&self.pool)
        .await?;
        let Some(row) = row else {
            // Expired and deleted between the two statements: treat as in progress; a retry works.
            return Ok(IdempotencyBegin::InProgress);
        };
        let hash: String = row.try_get("request_hash")?;
        if hash != request_hash {
            return Ok(IdempotencyBegin::Mismatch);
        }
        let status: Option<i64> = row.try_get("status_code")?;
        let body: Option<String> = row.try_get("response_body")?;
        Ok(match (status.and_then(|s| u16::try_from(s).ok()), body) {
            (Some(status), Some(body)) => IdempotencyBegin::Replay { status, body },
            _ => IdempotencyBegin::InProgress,
        })
    }

    /// Stores the answer given for `key`.
    pub async fn idempotency_finish(&self, account_id: &str, key: &str, status: u16, body: &str) -> Result<()> {
        sqlx::query(
            "UPDATE idempotency_keys SET status_code = $1, response_body = $2 \
             WHERE account_id = $3 AND idem_key = $4",
        )
        .bind(i64::from(status))
        .bind(body)
        .bind(account_id)
        .bind(key)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// Forgets `key` (the request failed in a way a retry may fix).
    pub async fn idempotency_abandon(&self, account_id: &str, key: &str) -> Result<()> {
        sqlx::query("DELETE FROM idempotency_keys WHERE account_id = $1 AND idem_key = $2")
            .bind(account_id)
            .bind(key)
            .execute(&self.pool)
            .await?;
        Ok(())
    }
}
