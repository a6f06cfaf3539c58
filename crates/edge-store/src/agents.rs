//! Agents: CRUD, account-scoped; deletion refused while any number references the agent.

use crate::cursor::Cursor;
use crate::error::{Result, StoreError};
use crate::ids::{new_id, IdKind};
use crate::model::{AgentPatch, AgentRecord, AgentStatus, NewAgent, Page};
use crate::secret::{Secret, SecretBox};
use crate::store::{fetch_limit, into_page, on_write, page_bounds_desc, parse_col, Store};
use crate::time::now_millis;
use sqlx::any::AnyRow;
use sqlx::Row;

/// AEAD context binding a sealed agent SIP password to its agent row.
fn password_context(agent_id: &str) -> String {
    format!("agents.sip_password:{agent_id}")
}

/// Decodes an agent row, decrypting its SIP password.
pub(crate) fn agent_from_row(row: &AnyRow, secrets: &SecretBox) -> Result<AgentRecord> {
    let id: String = row.try_get("id")?;
    let max: i64 = row.try_get("max_concurrent_calls")?;
    let sealed: Option<String> = row.try_get("sip_password_sealed")?;
    let sip_password = sealed.map(|s| secrets.open(&password_context(&id), &s)).transpose()?;
    Ok(AgentRecord {
        account_id: row.try_get("account_id")?,
        name: row.try_get("name")?,
        sip_uri: row.try_get("sip_uri")?,
        max_concurrent_calls: u32::try_from(max).map_err(|_| StoreError::Corrupt("bad max_concurrent_calls".into()))?,
        voicemail_message: row.try_get("voicemail_message")?,
        status: parse_col(row, "status", AgentStatus::parse)?,
        sip_username: row.try_get("sip_username")?,
        sip_password,
        media_encryption: crate::model::media_encryption_col(row.try_get("media_encryption")?)?,
        created_at: row.try_get("created_at")?,
        updated_at: row.try_get("updated_at")?,
        id,
    })
}

/// Digest needs both halves: a username without a password (or the reverse) is refused,
/// naming the missing one.
fn check_credentials(username: Option<&str>, password: Option<&Secret>) -> Result<()> {
    match (username, password) {
        (Some(_), None) => Err(StoreError::InvalidField {
            field: "sip_password",
            message: "required while sip_username is set".into(),
        }),
        (None, Some(_)) => Err(StoreError::InvalidField {
            field: "sip_username",
            message: "required while sip_password is set".into(),
        }),
        _ => Ok(()),
    }
}

impl Store {
    /// Creates an agent; `Conflict` on `sip_username` when any account already uses it.
    pub async fn create_agent(&self, account_id: &str, new: NewAgent) -> Result<AgentRecord> {
        check_credentials(new.sip_username.as_deref(), new.sip_password.as_ref())?;
        let now = now_millis();
        let id = new_id(IdKind::Agent)?;
        let sealed = new
            .sip_password
            .as_ref()
            .map(|pw| self.secrets.seal(&password_context(&id), pw))
            .transpose()?;
        let rec = AgentRecord {
            id,
            account_id: account_id.to_owned(),
            name: new.name,
            sip_uri: new.sip_uri,
            max_concurrent_calls: new.max_concurrent_calls,
            voicemail_message: new.voicemail_message,
            status: new.status,
            sip_username: new.sip_username,
            sip_password: new.sip_password,
            media_encryption: new.media_encryption,
            created_at: now,
            updated_at: now,
        };
        let _w = self.write_lock.lock().await;
        if let Some(u) = &rec.sip_username {
            self.check_sip_username_free(u, &rec.id).await?;
        }
        sqlx::query(
            "INSERT INTO agents (id, account_id, name, sip_uri, max_concurrent_calls, \
             voicemail_message, status, sip_username, sip_password_sealed, created_at, updated_at, \
             media_encryption) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)",
        )
        .bind(&rec.id)
        .bind(&rec.account_id)
        .bind(&rec.name)
        .bind(&rec.sip_uri)
        .bind(i64::from(rec.max_concurrent_calls))
        .bind(&rec.voicemail_message)
        .bind(rec.status.as_str())
        .bind(&rec.sip_username)
        .bind(&sealed)
        .bind(rec.created_at)
        .bind(rec.updated_at)
        .bind(rec.media_encryption.as_str())
        .execute(&self.pool)
        .await
        // The id is fresh, so the only unique constraint a race can hit is the username.
        .map_err(on_write(Some("sip_username")))?;
        self.index.put_agent(rec.clone());
        Ok(rec)
    }

    /// `Conflict` unless `username` is unused by every agent other than `agent_id`. The unique
    /// index is the real guard (other nodes); this gives the clear message.
    async fn check_sip_username_free(&self, username: &str, agent_id: &str) -> Result<()> {
        let taken = sqlx::query("SELECT id FROM agents WHERE sip_username = $1 AND id <> $2")
            .bind(username)
            .bind(agent_id)
            .fetch_optional(&self.pool)
            .await?
            .is_some();
        if taken {
            return Err(StoreError::Conflict {
                field: Some("sip_username"),
                message: "this SIP username is already taken".into(),
            });
        }
        Ok(())
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
        row.as_ref().map(|r| agent_from_row(r, &self.secrets)).transpose()
    }

    pub async fn list_agents(
        &self,
        account_id: &str,
        limit: u32,
        cursor: Option<&Cursor>,
    ) -> Result<Page<AgentRecord>> {
        let (limit, fetch) = fetch_limit(limit);
        let (ts, after_id) = page_bounds_desc(cursor);
        let rows = sqlx::query(concat!(
            "SELECT ",
            agent_cols!(),
            " FROM agents WHERE account_id = $1 AND (created_at < $2 OR (created_at = $2 AND id < $3)) \
             ORDER BY created_at DESC, id DESC LIMIT $4"
        ))
        .bind(account_id)
        .bind(ts)
        .bind(after_id)
        .bind(fetch)
        .fetch_all(&self.pool)
        .await?;
        let items = rows
            .iter()
            .map(|r| agent_from_row(r, &self.secrets))
            .collect::<Result<Vec<_>>>()?;
        Ok(into_page(items, limit, |a| (a.created_at, a.id.as_str())))
    }

    /// Applies a partial update; `Conflict` on `sip_username` when another agent uses it.
    pub async fn update_agent(&self, account_id: &str, id: &str, patch: AgentPatch) -> Result<AgentRecord> {
        let _w = self.write_lock.lock().await;
        let row = sqlx::query(concat!(
            "SELECT ",
            agent_cols!(),
            " FROM agents WHERE account_id = $1 AND id = $2"
        ))
        .bind(account_id)
        .bind(id)
        .fetch_optional(&self.pool)
        .await?
        .ok_or(StoreError::NotFound)?;
        let mut sealed: Option<String> = row.try_get("sip_password_sealed")?;
        let mut rec = agent_from_row(&row, &self.secrets)?;
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
        if let Some(v) = patch.media_encryption {
            rec.media_encryption = v;
        }
        let password = match (&patch.sip_username, patch.sip_password) {
            (Some(None), None) => Some(None),
            (_, p) => p,
        };
        let username_changed = patch.sip_username.as_ref().is_some_and(|u| *u != rec.sip_username);
        if let Some(v) = patch.sip_username {
            rec.sip_username = v;
        }
        match password {
            None => {}
            Some(None) => {
                sealed = None;
                rec.sip_password = None;
            }
            Some(Some(pw)) => {
                sealed = Some(self.secrets.seal(&password_context(&rec.id), &pw)?);
                rec.sip_password = Some(pw);
            }
        }
        check_credentials(rec.sip_username.as_deref(), rec.sip_password.as_ref())?;
        if let (true, Some(u)) = (username_changed, &rec.sip_username) {
            self.check_sip_username_free(u, &rec.id).await?;
        }
        rec.updated_at = now_millis().max(rec.updated_at);
        let res = sqlx::query(
            "UPDATE agents SET name = $1, sip_uri = $2, max_concurrent_calls = $3, \
             voicemail_message = $4, status = $5, sip_username = $6, sip_password_sealed = $7, \
             updated_at = $8, media_encryption = $9 WHERE account_id = $10 AND id = $11",
        )
        .bind(&rec.name)
        .bind(&rec.sip_uri)
        .bind(i64::from(rec.max_concurrent_calls))
        .bind(&rec.voicemail_message)
        .bind(rec.status.as_str())
        .bind(&rec.sip_username)
        .bind(&sealed)
        .bind(rec.updated_at)
        .bind(rec.media_encryption.as_str())
        .bind(account_id)
        .bind(id)
        .execute(&self.pool)
        .await
        .map_err(on_write(Some("sip_username")))?;
        if res.rows_affected() == 0 {
            return Err(StoreError::NotFound);
        }
        self.index.put_agent(rec.clone());
        Ok(rec)
    }

    /// Deletes an agent; `Conflict` while a number uses it as primary, routing or fallback.
    pub async fn delete_agent(&self, account_id: &str, id: &str) -> Result<()> {
        let _w = self.write_lock.lock().await;
        let mut tx = self.begin_write().await?;
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
