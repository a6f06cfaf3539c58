//! Agents: CRUD, account-scoped; deletion refused while any number references the agent.

use crate::cursor::Cursor;
use crate::error::{Result, StoreError};
use crate::ids::{new_id, IdKind};
use crate::model::{AgentPatch, AgentRecord, AgentStatus, NewAgent, Page};
use crate::store::{fetch_limit, into_page, on_write, page_bounds, parse_col, Store};
use crate::time::now_millis;
use sqlx::any::AnyRow;
use sqlx::Row;

pub(crate) fn agent_from_row(row: &AnyRow) -> Result<AgentRecord> {
    let max: i64 = row.try_get("max_concurrent_calls")?;
    Ok(AgentRecord {
        id: row.try_get("id")?,
        account_id: row.try_get("account_id")?,
        name: row.try_get("name")?,
        sip_uri: row.try_get("sip_uri")?,
        max_concurrent_calls: u32::try_from(max).map_err(|_| StoreError::Corrupt("bad max_concurrent_calls".into()))?,
        voicemail_message: row.try_get("voicemail_message")?,
        status: parse_col(row, "status", AgentStatus::parse)?,
        created_at: row.try_get("created_at")?,
        updated_at: row.try_get("updated_at")?,
    })
}

impl Store {
    pub async fn create_agent(&self, account_id: &str, new: NewAgent) -> Result<AgentRecord> {
        let now = now_millis();
        let rec = AgentRecord {
            id: new_id(IdKind::Agent)?,
            account_id: account_id.to_owned(),
            name: new.name,
            sip_uri: new.sip_uri,
            max_concurrent_calls: new.max_concurrent_calls,
            voicemail_message: new.voicemail_message,
            status: new.status,
            created_at: now,
            updated_at: now,
        };
        let _w = self.write_lock.lock().await;
        sqlx::query(
            "INSERT INTO agents (id, account_id, name, sip_uri, max_concurrent_calls, \
             voicemail_message, status, created_at, updated_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
        )
        .bind(&rec.id)
        .bind(&rec.account_id)
        .bind(&rec.name)
        .bind(&rec.sip_uri)
        .bind(i64::from(rec.max_concurrent_calls))
        .bind(&rec.voicemail_message)
        .bind(rec.status.as_str())
        .bind(rec.created_at)
        .bind(rec.updated_at)
        .execute(&self.pool)
        .await
        .map_err(on_write(None))?;
        self.index.put_agent(rec.clone());
        Ok(rec)
    }

    pub async fn get_agent(&self, account_id: &str, id: &str) -> Result<Option<AgentRecord>> {
        let row = sqlx::query(concat!(
            "SELECT ",
            agent_cols!(),
            " FROM agents WHERE account_id = $1 AND id = $2"
        ))
        .bind(account_id)
        .bind(id)
        .fetch_optional(&self.pool)
        .await?;
        row.as_ref().map(agent_from_row).transpose()
    }

    pub async fn list_agents(
        &self,
        account_id: &str,
        limit: u32,
        cursor: Option<&Cursor>,
    ) -> Result<Page<AgentRecord>> {
        let (limit, fetch) = fetch_limit(limit);
        let (ts, after_id) = page_bounds(cursor);
        let rows = sqlx::query(concat!(
            "SELECT ",
            agent_cols!(),
            " FROM agents WHERE account_id = $1 AND (created_at > $2 OR (created_at = $2 AND id > $3)) \
             ORDER BY created_at, id LIMIT $4"
        ))
        .bind(account_id)
        .bind(ts)
        .bind(after_id)
        .bind(fetch)
        .fetch_all(&self.pool)
        .await?;
        let items = rows.iter().map(agent_from_row).collect::<Result<Vec<_>>>()?;
        Ok(into_page(items, limit, |a| (a.created_at, a.id.as_str())))
    }

    pub async fn update_agent(&self, account_id: &str, id: &str, patch: AgentPatch) -> Result<AgentRecord> {
        let _w = self.write_lock.lock().await;
        let mut rec = self.get_agent(account_id, id).await?.ok_or(StoreError::NotFound)?;
        if let Some(v) = patch.name {
            rec.name = v;
        }
        if let Some(v) = patch.sip_uri {
            rec.sip_uri = v;
        }
        if let Some(v) = patch.max_concurrent_calls {
            rec.max_concurrent_calls = v;
        }
        if let Some(v) = patch.voicemail_message {
            rec.voicemail_message = v;
        }
        if let Some(v) = patch.status {
            rec.status = v;
        }
        rec.updated_at = now_millis().max(rec.updated_at);
        let res = sqlx::query(
            "UPDATE agents SET name = $1, sip_uri = $2, max_concurrent_calls = $3, \
             voicemail_message = $4, status = $5, updated_at = $6 \
             WHERE account_id = $7 AND id = $8",
        )
        .bind(&rec.name)
        .bind(&rec.sip_uri)
        .bind(i64::from(rec.max_concurrent_calls))
        .bind(&rec.voicemail_message)
        .bind(rec.status.as_str())
        .bind(rec.updated_at)
        .bind(account_id)
        .bind(id)
        .execute(&self.pool)
        .await
        .map_err(on_write(None))?;
        if res.rows_affected() == 0 {
            return Err(StoreError::NotFound);
        }
        self.index.put_agent(rec.clone());
        Ok(rec)
    }

    /// Deletes an agent; `Conflict` while a number uses it as primary, routing or fallback.
    pub async fn delete_agent(&self, account_id: &str, id: &str) -> Result<()> {
        let _w = self.write_lock.lock().await;
        let mut tx = self.pool.begin().await?;
        let exists = sqlx::query("SELECT id FROM agents WHERE account_id = $1 AND id = $2")
            .bind(account_id)
            .bind(id)
            .fetch_optional(&mut *tx)
            .await?;
        if exists.is_none() {
            return Err(StoreError::NotFound);
        }
        let in_use: i64 = sqlx::query(
            "SELECT COUNT(*) AS n FROM phone_numbers \
             WHERE agent_id = $1 OR inbound_agent_id = $1 OR inbound_fallback_agent_id = $1",
        )
        .bind(id)
        .fetch_one(&mut *tx)
        .await?
        .try_get("n")?;
        if in_use > 0 {
            return Err(StoreError::Conflict {
                field: None,
                message: format!("agent is used by {in_use} phone number(s)"),
            });
        }
        sqlx::query("DELETE FROM agents WHERE account_id = $1 AND id = $2")
            .bind(account_id)
            .bind(id)
            .execute(&mut *tx)
            .await
            .map_err(on_write(None))?;
        tx.commit().await?;
        self.index.remove_agent(id);
        Ok(())
    }
}
