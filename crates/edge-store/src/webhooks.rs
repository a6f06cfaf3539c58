//! Webhooks: an account's endpoints (`/v1/webhooks`) and the deliveries queued for them.
//!
//! Deliveries are rows of an outbox ([`crate::webhook_outbox`] puts them there in the transaction of the
//! record that caused them). Any node's delivery worker claims due rows with a lease (`claimed_until`),
//! sends them and writes the outcome back, so each is sent by one node at a time and survives restarts.

use crate::cursor::Cursor;
use crate::error::{Result, StoreError};
use crate::ids::{new_id, IdKind};
use crate::model::Page;
use crate::secret::Secret;
use crate::store::{fetch_limit, into_page, Backend, Store};
use crate::time::now_millis;
use sqlx::any::AnyRow;
use sqlx::{AssertSqlSafe, Row};

/// What a webhook can subscribe to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum WebhookEvent {
    CallRinging,
    CallAnswered,
    CallCompleted,
    CallFailed,
    CallTransferred,
    VoicemailRecorded,
}

impl WebhookEvent {
    pub const ALL: [WebhookEvent; 6] = [
        WebhookEvent::CallRinging,
        WebhookEvent::CallAnswered,
        WebhookEvent::CallCompleted,
        WebhookEvent::CallFailed,
        WebhookEvent::CallTransferred,
        WebhookEvent::VoicemailRecorded,
    ];

    /// The wire and stored spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            WebhookEvent::CallRinging => "call.ringing",
            WebhookEvent::CallAnswered => "call.answered",
            WebhookEvent::CallCompleted => "call.completed",
            WebhookEvent::CallFailed => "call.failed",
            WebhookEvent::CallTransferred => "call.transferred",
            WebhookEvent::VoicemailRecorded => "voicemail.recorded",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|e| e.as_str() == s)
    }
}

/// Where a delivery stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeliveryStatus {
    /// Not yet accepted by the receiver; will be (re)tried at `next_attempt_at`.
    Pending,
    /// The receiver answered 2xx.
    Delivered,
    /// Given up: the retry window passed without a 2xx.
    Failed,
}

impl DeliveryStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            DeliveryStatus::Pending => "pending",
            DeliveryStatus::Delivered => "delivered",
            DeliveryStatus::Failed => "failed",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        [
            DeliveryStatus::Pending,
            DeliveryStatus::Delivered,
            DeliveryStatus::Failed,
        ]
        .into_iter()
        .find(|v| v.as_str() == s)
    }
}

/// A webhook as stored (never its secret).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WebhookRecord {
    /// `whk_…`
    pub id: String,
    pub account_id: String,
    pub url: String,
    pub events: Vec<WebhookEvent>,
    pub created_at: i64,
}

/// One delivery as listed at `/v1/webhooks/{id}/deliveries`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeliveryRecord {
    /// `whd_…`, also sent as the `OneInbox-Delivery` header so receivers can de-duplicate.
    pub id: String,
    pub webhook_id: String,
    pub event_type: String,
    pub status: DeliveryStatus,
    pub attempts: i64,
    /// The HTTP status of the last attempt, when the receiver answered at all.
    pub response_code: Option<u16>,
    /// Why the last attempt failed, in words (connection refused, time-out, HTTP 500 ...).
    pub last_error: Option<String>,
    pub next_attempt_at: i64,
    pub created_at: i64,
    pub updated_at: i64,
}

/// A delivery a worker has claimed: what to send, where, and the key to sign it with.
#[derive(Debug)]
pub struct ClaimedDelivery {
    pub id: String,
    pub webhook_id: String,
    pub url: String,
    pub secret: Secret,
    pub body: String,
    /// Attempts made before this one.
    pub attempts: i64,
    pub created_at: i64,
}

/// What a delivery attempt came to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AttemptOutcome {
    Delivered {
        response_code: u16,
    },
    /// Try again at `next_attempt_at`.
    Retry {
        response_code: Option<u16>,
        error: String,
        next_attempt_at: i64,
    },
    /// Give up (retry window over).
    GaveUp {
        response_code: Option<u16>,
        error: String,
    },
}

/// Longest stored error text.
const MAX_ERROR_LEN: usize = 500;

const WEBHOOK_COLS: &str = "id, account_id, url, events, created_at";
const DELIVERY_COLS: &str = "id, webhook_id, event_type, status, attempts, response_code, last_error, \
     next_attempt_at, created_at, updated_at";

fn secret_context(id: &str) -> String {
    format!("webhooks.secret:{id}")
}

pub(crate) fn parse_events(s: &str) -> Result<Vec<WebhookEvent>> {
    s.split(',')
        .filter(|e| !e.is_empty())
        .map(|e| WebhookEvent::parse(e).ok_or_else(|| StoreError::Corrupt("bad webhook events".into())))
        .collect()
}

fn webhook_from_row(row: &AnyRow) -> Result<WebhookRecord> {
    Ok(WebhookRecord {
        id: row.try_get("id")?,
        account_id: row.try_get("account_id")?,
        url: row.try_get("url")?,
        events: parse_events(&row.try_get::<String, _>("events")?)?,
        created_at: row.try_get("created_at")?,
    })
}

fn delivery_from_row(row: &AnyRow) -> Result<DeliveryRecord> {
    let status: String = row.try_get("status")?;
    let code: Option<i64> = row.try_get("response_code")?;
    Ok(DeliveryRecord {
        id: row.try_get("id")?,
        webhook_id: row.try_get("webhook_id")?,
        event_type: row.try_get("event_type")?,
        status: DeliveryStatus::parse(&status).ok_or_else(|| StoreError::Corrupt("bad delivery status".into()))?,
        attempts: row.try_get("attempts")?,
        response_code: code.and_then(|c| u16::try_from(c).ok()),
        last_error: row.try_get("last_error")?,
        next_attempt_at: row.try_get("next_attempt_at")?,
        created_at: row.try_get("created_at")?,
        updated_at: row.try_get("updated_at")?,
    })
}

/// A signing secret: `whsec_` and 64 hex digits (256 random bits).
fn new_signing_secret() -> Result<String> {
    let mut raw = [0u8; 32];
    getrandom::fill(&mut raw)?;
    let mut s = String::with_capacity(6 + 64);
    s.push_str("whsec_");
    for b in raw {
        s.push_str(&format!("{b:02x}"));
    }
    Ok(s)
}

fn bounded(s: &str) -> String {
    let mut end = s.len().min(MAX_ERROR_LEN);
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    s[..end].to_owned()
}

impl Store {
    /// Creates a webhook of `account_id` sending `events` to `url` (both validated by the caller). The
    /// plaintext signing secret is returned this once; it is stored sealed (the worker needs it to sign).
    pub async fn create_webhook(
        &self,
        account_id: &str,
        url: &str,
        events: &[WebhookEvent],
    ) -> Result<(WebhookRecord, Secret)> {
        let id = new_id(IdKind::Webhook)?;
        let secret = Secret::new(new_signing_secret()?);
        let sealed = self.secrets.seal(&secret_context(&id), &secret)?;
        let mut events = events.to_vec();
        events.dedup();
        let names: Vec<&str> = events.iter().map(|e| e.as_str()).collect();
        let now = now_millis();
        sqlx::query(
            "INSERT INTO webhooks (id, account_id, url, events, secret_sealed, created_at) \
             VALUES ($1, $2, $3, $4, $5, $6)",
        )
        .bind(&id)
        .bind(account_id)
        .bind(url)
        .bind(names.join(","))
        .bind(sealed)
        .bind(now)
        .execute(&self.pool)
        .await?;
        Ok((
            WebhookRecord {
                id,
                account_id: account_id.to_owned(),
                url: url.to_owned(),
                events,
                created_at: now,
            },
            secret,
        ))
    }

    pub async fn get_webhook(&self, account_id: &str, id: &str) -> Result<Option<WebhookRecord>> {
        let sql = format!("SELECT {WEBHOOK_COLS} FROM webhooks WHERE account_id = $1 AND id = $2");
        // Built from the constant column list only; values are bound.
        let row = sqlx::query(AssertSqlSafe(sql))
            .bind(account_id)
            .bind(id)
            .fetch_optional(&self.pool)
            .await?;
        row.as_ref().map(webhook_from_row).transpose()
    }

    /// The account's webhooks, newest first.
    pub async fn list_webhooks(
        &self,
        account_id: &str,
        limit: u32,
        cursor: Option<&Cursor>,
    ) -> Result<Page<WebhookRecord>> {
        let (limit, fetch) = fetch_limit(limit);
        let (ts, after) = crate::store::page_bounds_desc(cursor);
        let sql = format!(
            "SELECT {WEBHOOK_COLS} FROM webhooks WHERE account_id = $1 \
             AND (created_at < $2 OR (created_at = $2 AND id < $3)) ORDER BY created_at DESC, id DESC LIMIT $4"
        );
        let rows = sqlx::query(AssertSqlSafe(sql))
            .bind(account_id)
            .bind(ts)
            .bind(after)
            .bind(fetch)
            .fetch_all(&self.pool)
            .await?;
        let items = rows.iter().map(webhook_from_row).collect::<Result<Vec<_>>>()?;
        Ok(into_page(items, limit, |w| (w.created_at, w.id.as_str())))
    }

    /// Deletes the webhook and its deliveries (pending ones are not sent). `NotFound` when the account
    /// has no such webhook.
    pub async fn delete_webhook(&self, account_id: &str, id: &str) -> Result<()> {
        let mut tx = self.begin_write().await?;
        let done = sqlx::query("DELETE FROM webhooks WHERE account_id = $1 AND id = $2")
            .bind(account_id)
            .bind(id)
            .execute(&mut *tx)
            .await?;
        if done.rows_affected() == 0 {
            return Err(StoreError::NotFound);
        }
        sqlx::query("DELETE FROM webhook_deliveries WHERE webhook_id = $1")
            .bind(id)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(())
    }

    pub async fn get_webhook_delivery(&self, webhook_id: &str, id: &str) -> Result<Option<DeliveryRecord>> {
        let sql = format!("SELECT {DELIVERY_COLS} FROM webhook_deliveries WHERE webhook_id = $1 AND id = $2");
        let row = sqlx::query(AssertSqlSafe(sql))
            .bind(webhook_id)
            .bind(id)
            .fetch_optional(&self.pool)
            .await?;
        row.as_ref().map(delivery_from_row).transpose()
    }

    /// The deliveries of a webhook (already checked to be the caller's), newest first.
    pub async fn list_webhook_deliveries(
        &self,
        webhook_id: &str,
        limit: u32,
        cursor: Option<&Cursor>,
    ) -> Result<Page<DeliveryRecord>> {
        let (limit, fetch) = fetch_limit(limit);
        let (ts, after) = crate::store::page_bounds_desc(cursor);
        let sql = format!(
            "SELECT {DELIVERY_COLS} FROM webhook_deliveries WHERE webhook_id = $1 \
             AND (created_at < $2 OR (created_at = $2 AND id < $3)) ORDER BY created_at DESC, id DESC LIMIT $4"
        );
        let rows = sqlx::query(AssertSqlSafe(sql))
            .bind(webhook_id)
            .bind(ts)
            .bind(after)
            .bind(fetch)
            .fetch_all(&self.pool)
            .await?;
        let items = rows.iter().map(delivery_from_row).collect::<Result<Vec<_>>>()?;
        Ok(into_page(items, limit, |d| (d.created_at, d.id.as_str())))
    }

    /// Claims up to `max` deliveries due at `now_ms` for `lease_ms`: no other worker (of this node or
    /// another) takes them until the lease ends, so one that crashes mid-send has them re-sent by someone
    /// else after it. One statement: on PostgreSQL rows another node is claiming are skipped
    /// (`FOR UPDATE SKIP LOCKED`), on SQLite the write lock serialises claims.
    pub async fn claim_webhook_deliveries(&self, now_ms: i64, lease_ms: i64, max: u32) -> Result<Vec<ClaimedDelivery>> {
        let sql = match self.backend() {
            Backend::Sqlite => {
                "UPDATE webhook_deliveries SET claimed_until = $1 WHERE id IN (SELECT id FROM webhook_deliveries \
                 WHERE status = 'pending' AND next_attempt_at <= $2 AND claimed_until <= $2 \
                 ORDER BY next_attempt_at, created_at, id LIMIT $3) \
                 RETURNING id, webhook_id, body, attempts, created_at"
            }
            Backend::Postgres => {
                "UPDATE webhook_deliveries SET claimed_until = $1 WHERE id IN (SELECT id FROM webhook_deliveries \
                 WHERE status = 'pending' AND next_attempt_at <= $2 AND claimed_until <= $2 \
                 ORDER BY next_attempt_at, created_at, id LIMIT $3 FOR UPDATE SKIP LOCKED) \
                 RETURNING id, webhook_id, body, attempts, created_at"
            }
        };
        let rows = sqlx::query(sql)
            .bind(now_ms.saturating_add(lease_ms))
            .bind(now_ms)
            .bind(i64::from(max.max(1)))
            .fetch_all(&self.pool)
            .await?;
        let mut hooks: std::collections::HashMap<String, Option<(String, Secret)>> = std::collections::HashMap::new();
        let mut out = Vec::with_capacity(rows.len());
        for r in &rows {
            let webhook_id: String = r.try_get("webhook_id")?;
            if !hooks.contains_key(&webhook_id) {
                let row = sqlx::query("SELECT url, secret_sealed FROM webhooks WHERE id = $1")
                    .bind(&webhook_id)
                    .fetch_optional(&self.pool)
                    .await?;
                let hook = match row {
                    Some(row) => {
                        let url: String = row.try_get("url")?;
                        let sealed: String = row.try_get("secret_sealed")?;
                        Some((url, self.secrets.open(&secret_context(&webhook_id), &sealed)?))
                    }
                    None => None,
                };
                hooks.insert(webhook_id.clone(), hook);
            }
            // A webhook deleted meanwhile: its deliveries went with it (or go now).
            let Some(Some((url, secret))) = hooks.get(&webhook_id) else {
                continue;
            };
            out.push(ClaimedDelivery {
                id: r.try_get("id")?,
                webhook_id,
                url: url.clone(),
                secret: Secret::new(secret.expose()),
                body: r.try_get("body")?,
                attempts: r.try_get("attempts")?,
                created_at: r.try_get("created_at")?,
            });
        }
        Ok(out)
    }

    /// Writes what an attempt at delivery `id` came to and releases its claim.
    pub async fn finish_webhook_delivery(&self, id: &str, outcome: &AttemptOutcome) -> Result<()> {
        let now = now_millis();
        let (status, code, error, next) = match outcome {
            AttemptOutcome::Delivered { response_code } => (DeliveryStatus::Delivered, Some(*response_code), None, now),
            AttemptOutcome::Retry {
                response_code,
                error,
                next_attempt_at,
            } => (
                DeliveryStatus::Pending,
                *response_code,
                Some(bounded(error)),
                *next_attempt_at,
            ),
            AttemptOutcome::GaveUp { response_code, error } => {
                (DeliveryStatus::Failed, *response_code, Some(bounded(error)), now)
            }
        };
        sqlx::query(
            "UPDATE webhook_deliveries SET status = $2, attempts = attempts + 1, response_code = $3, \
             last_error = $4, next_attempt_at = $5, claimed_until = 0, updated_at = $6 WHERE id = $1",
        )
        .bind(id)
        .bind(status.as_str())
        .bind(code.map(i64::from))
        .bind(error)
        .bind(next)
        .bind(now)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// Deliveries not yet delivered nor given up (the backlog on /metrics).
    pub async fn webhook_backlog(&self) -> Result<i64> {
        let row = sqlx::query("SELECT COUNT(*) AS n FROM webhook_deliveries WHERE status = 'pending'")
            .fetch_one(&self.pool)
            .await?;
        Ok(row.try_get("n")?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn event_names_round_trip() {
        for e in WebhookEvent::ALL {
            assert_eq!(WebhookEvent::parse(e.as_str()), Some(e));
        }
        assert_eq!(WebhookEvent::parse("call.rung"), None);
        assert_eq!(parse_events("call.ringing,voicemail.recorded").unwrap().len(), 2);
        assert!(parse_events("call.ringing,nope").is_err());
    }

    #[test]
    fn secrets_are_random_and_well_formed() {
        let a = new_signing_secret().unwrap();
        assert!(a.starts_with("whsec_") && a.len() == 70);
        assert_ne!(a, new_signing_secret().unwrap());
    }

    #[test]
    fn errors_are_bounded_on_char_boundaries() {
        let long = "é".repeat(400);
        let b = bounded(&long);
        assert!(b.len() <= MAX_ERROR_LEN);
        assert!(b.chars().all(|c| c == 'é'));
    }
}
