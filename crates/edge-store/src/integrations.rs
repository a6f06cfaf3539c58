//! Provider integrations (customer Twilio/Telnyx credentials). The API key is sealed at rest
//! and only retrievable through [`Store::integration_api_key`], never in a record.

use crate::cursor::Cursor;
use crate::error::{Result, StoreError};
use crate::ids::{new_id, IdKind};
use crate::model::{IntegrationRecord, NewIntegration, Page, Provider};
use crate::secret::Secret;
use crate::store::{fetch_limit, into_page, on_write, page_bounds_desc, parse_col, Store};
use crate::time::now_millis;
use sqlx::any::AnyRow;
use sqlx::Row;
use std::collections::HashMap;

fn api_key_context(id: &str) -> String {
    format!("integrations.api_key:{id}")
}

/// `metadata.sip_trunk` when it is a non-empty string: where outbound calls from the
/// customer's numbers at that provider go.
fn sip_trunk(metadata: &serde_json::Value) -> Option<String> {
    metadata
        .get("sip_trunk")
        .and_then(serde_json::Value::as_str)
        .filter(|t| !t.is_empty())
        .map(str::to_owned)
}

/// `(account, provider) -> trunk` for the routing index; `rows` oldest first so newer wins.
pub(crate) fn trunks_from_rows(rows: &[AnyRow]) -> Result<HashMap<(String, Provider), String>> {
    let mut out = HashMap::new();
    for row in rows {
        let rec = integration_from_row(row)?;
        if let Some(t) = sip_trunk(&rec.metadata) {
            out.insert((rec.account_id, rec.provider), t);
        }
    }
    Ok(out)
}

pub(crate) fn integration_from_row(row: &AnyRow) -> Result<IntegrationRecord> {
    let metadata: String = row.try_get("metadata")?;
    Ok(IntegrationRecord {
        id: row.try_get("id")?,
        account_id: row.try_get("account_id")?,
        name: row.try_get("name")?,
        provider: parse_col(row, "provider", Provider::parse)?,
        metadata: serde_json::from_str(&metadata).map_err(|_| StoreError::Corrupt("bad metadata".into()))?,
        created_at: row.try_get("created_at")?,
        updated_at: row.try_get("updated_at")?,
    })
}

impl Store {
    pub async fn create_integration(&self, account_id: &str, new: NewIntegration) -> Result<IntegrationRecord> {
        let now = now_millis();
        let id = new_id(IdKind::Integration)?;
        let sealed = self.secrets.seal(&api_key_context(&id), &new.api_key)?;
        let metadata = serde_json::to_string(&new.metadata)
            .map_err(|_| StoreError::Corrupt("metadata not serialisable".into()))?;
        let _w = self.write_lock.lock().await;
        sqlx::query(
            "INSERT INTO integrations (id, account_id, name, provider, api_key_sealed, metadata, \
             created_at, updated_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
        )
        .bind(&id)
        .bind(account_id)
        .bind(&new.name)
        .bind(new.provider.as_str())
        .bind(&sealed)
        .bind(&metadata)
        .bind(now)
        .bind(now)
        .execute(&self.pool)
        .await
        .map_err(on_write(None))?;
        self.refresh_integration_trunk(account_id, new.provider).await?;
        Ok(IntegrationRecord {
            id,
            account_id: account_id.to_owned(),
            name: new.name,
            provider: new.provider,
            metadata: new.metadata,
            created_at: now,
            updated_at: now,
        })
    }

    pub async fn get_integration(&self, account_id: &str, id: &str) -> Result<Option<IntegrationRecord>> {
        let row = sqlx::query(concat!(
            "SELECT ",
            integration_cols!(),
            " FROM integrations WHERE account_id = $1 AND id = $2"
        ))
        .bind(account_id)
        .bind(id)
        .fetch_optional(&self.pool)
        .await?;
        row.as_ref().map(integration_from_row).transpose()
    }

    pub async fn list_integrations(
        &self,
        account_id: &str,
        limit: u32,
        cursor: Option<&Cursor>,
    ) -> Result<Page<IntegrationRecord>> {
        let (limit, fetch) = fetch_limit(limit);
        let (ts, after_id) = page_bounds_desc(cursor);
        let rows = sqlx::query(concat!(
            "SELECT ",
            integration_cols!(),
            " FROM integrations WHERE account_id = $1 \
             AND (created_at < $2 OR (created_at = $2 AND id < $3)) \
             ORDER BY created_at DESC, id DESC LIMIT $4"
        ))
        .bind(account_id)
        .bind(ts)
        .bind(after_id)
        .bind(fetch)
        .fetch_all(&self.pool)
        .await?;
        let items = rows.iter().map(integration_from_row).collect::<Result<Vec<_>>>()?;
        Ok(into_page(items, limit, |i| (i.created_at, i.id.as_str())))
    }

    pub async fn delete_integration(&self, account_id: &str, id: &str) -> Result<()> {
        let _w = self.write_lock.lock().await;
        let row = sqlx::query("DELETE FROM integrations WHERE account_id = $1 AND id = $2 RETURNING provider")
            .bind(account_id)
            .bind(id)
            .fetch_optional(&self.pool)
            .await?
            .ok_or(StoreError::NotFound)?;
        let provider = parse_col(&row, "provider", Provider::parse)?;
        self.refresh_integration_trunk(account_id, provider).await
    }

    /// Recomputes the index's trunk for `(account_id, provider)` from the database, so that
    /// deleting the newest integration falls back to the next one. Caller holds the write lock.
    pub(crate) async fn refresh_integration_trunk(&self, account_id: &str, provider: Provider) -> Result<()> {
        let rows = sqlx::query(concat!(
            "SELECT ",
            integration_cols!(),
            " FROM integrations WHERE account_id = $1 AND provider = $2 ORDER BY created_at, id"
        ))
        .bind(account_id)
        .bind(provider.as_str())
        .fetch_all(&self.pool)
        .await?;
        let trunk = trunks_from_rows(&rows)?.remove(&(account_id.to_owned(), provider));
        self.index.set_integration_trunk(account_id, provider, trunk);
        Ok(())
    }

    /// Decrypted provider API key, for code that calls the provider on the customer's behalf.
    pub async fn integration_api_key(&self, account_id: &str, id: &str) -> Result<Option<Secret>> {
        let row = sqlx::query("SELECT api_key_sealed FROM integrations WHERE account_id = $1 AND id = $2")
            .bind(account_id)
            .bind(id)
            .fetch_optional(&self.pool)
            .await?;
        match row {
            None => Ok(None),
            Some(r) => {
                let sealed: String = r.try_get("api_key_sealed")?;
                Ok(Some(self.secrets.open(&api_key_context(id), &sealed)?))
            }
        }
    }
}
