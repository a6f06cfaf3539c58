//! Phone numbers: account-scoped CRUD that keeps the routing index current.

use crate::cursor::Cursor;
use crate::error::{Result, StoreError};
use crate::ids::{new_id, IdKind};
use crate::index::{InboundRoute, NumberRoute, OutboundTrunk, TrunkClientCert};
use crate::model::{
    InboundRouting, NewNumber, NumberPatch, NumberRecord, NumberSource, NumberStatus, Page, Provider,
    ProviderConfigPatch, ProviderConfigView,
};
use crate::store::{fetch_limit, into_page, on_write, parse_col, Store};
use crate::time::now_millis;
use sqlx::any::AnyRow;
use sqlx::{Any, AssertSqlSafe, Row, Transaction};

/// Filters of [`Store::list_numbers`]; `None` = no constraint.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct NumberFilter {
    /// The number's primary agent.
    pub agent_id: Option<String>,
    pub provider: Option<Provider>,
    pub status: Option<NumberStatus>,
    /// E.164, exact.
    pub phone_number: Option<String>,
}

/// AEAD context binding a sealed SIP password to its number row.
fn password_context(number_id: &str) -> String {
    format!("phone_numbers.auth_password:{number_id}")
}

/// AEAD context binding a sealed `X-Telnyx-Token` to its number row.
fn token_context(number_id: &str) -> String {
    format!("phone_numbers.ip_auth_token:{number_id}")
}

/// AEAD context binding a sealed TLS client key to its number row.
fn tls_key_context(number_id: &str) -> String {
    format!("phone_numbers.tls_client_key:{number_id}")
}

/// The sealed secret columns of a number row (needed to rebuild the route).
#[derive(Debug, Clone, Default)]
pub(crate) struct SealedCols {
    pub(crate) password: Option<String>,
    pub(crate) token: Option<String>,
    pub(crate) tls_key: Option<String>,
}

/// A record plus its sealed secret columns.
pub(crate) fn number_from_row(row: &AnyRow) -> Result<(NumberRecord, SealedCols)> {
    let inbound_enabled: i64 = row.try_get("inbound_enabled")?;
    let inbound_routing = (inbound_enabled != 0)
        .then(|| -> Result<InboundRouting> {
            Ok(InboundRouting {
                agent_id: row.try_get("inbound_agent_id")?,
                fallback_agent_id: row.try_get("inbound_fallback_agent_id")?,
                voicemail_message: row.try_get("inbound_voicemail_message")?,
                transfer: row
                    .try_get::<Option<String>, _>("inbound_transfer")?
                    .as_deref()
                    .and_then(crate::TransferMode::parse)
                    .unwrap_or_default(),
            })
        })
        .transpose()?;
    let sealed = SealedCols {
        password: row.try_get("auth_password_sealed")?,
        token: row.try_get("ip_auth_token_sealed")?,
        tls_key: row.try_get("tls_client_key_sealed")?,
    };
    let trunk: Option<String> = row.try_get("trunk_address")?;
    let provider_config = trunk.map(|trunk_address| -> Result<ProviderConfigView> {
        let p_charge_info: i64 = row.try_get("p_charge_info")?;
        Ok(ProviderConfigView {
            trunk_address,
            auth_username: row.try_get("auth_username")?,
            auth_password_set: sealed.password.is_some(),
            tech_prefix: row.try_get("tech_prefix")?,
            ip_auth_token_set: sealed.token.is_some(),
            p_charge_info: p_charge_info != 0,
            tls_client_certificate: row.try_get("tls_client_certificate")?,
            tls_client_key_set: sealed.tls_key.is_some(),
            media_encryption: crate::model::media_encryption_col(row.try_get("media_encryption")?)?,
        })
    });
    let rec = NumberRecord {
        id: row.try_get("id")?,
        account_id: row.try_get("account_id")?,
        phone_number: row.try_get("phone_number")?,
        friendly_name: row.try_get("friendly_name")?,
        agent_id: row.try_get("agent_id")?,
        status: parse_col(row, "status", NumberStatus::parse)?,
        provider: parse_col(row, "provider", Provider::parse)?,
        source: parse_col(row, "source", NumberSource::parse)?,
        provider_ref: row.try_get("provider_ref")?,
        inbound_routing,
        provider_config: provider_config.transpose()?,
        created_at: row.try_get("created_at")?,
        updated_at: row.try_get("updated_at")?,
        failure_reason: row.try_get("failure_reason")?,
    };
    Ok((rec, sealed))
}

/// Telnyx's IP-connection methods (tech prefix, `X-Telnyx-Token`, `P-Charge-Info`) mean nothing to another
/// provider's trunk: refused there rather than sent.
fn check_provider_fields(provider: Provider, pc: &ProviderConfigView) -> Result<()> {
    if provider == Provider::Telnyx {
        return Ok(());
    }
    let set = [
        ("provider_config.tech_prefix", pc.tech_prefix.is_some()),
        ("provider_config.ip_auth_token", pc.ip_auth_token_set),
        ("provider_config.p_charge_info", pc.p_charge_info),
    ];
    match set.into_iter().find(|(_, on)| *on) {
        Some((field, _)) => Err(StoreError::InvalidField {
            field,
            message: format!(
                "only Telnyx IP connections use it; a {} trunk authenticates by credentials \
                 (auth_username, auth_password) or by the edge's address",
                provider.as_str()
            ),
        }),
        None => Ok(()),
    }
}

/// Fails with `InvalidReference { field }` unless `agent_id` is an agent of `account_id`.
async fn check_agent(
    tx: &mut Transaction<'static, Any>,
    account_id: &str,
    agent_id: &str,
    field: &'static str,
) -> Result<()> {
    let found = if IdKind::Agent.is_valid(agent_id) {
        sqlx::query("SELECT id FROM agents WHERE account_id = $1 AND id = $2")
            .bind(account_id)
            .bind(agent_id)
            .fetch_optional(&mut **tx)
            .await?
            .is_some()
    } else {
        false
    };
    if found {
        Ok(())
    } else {
        Err(StoreError::InvalidReference {
            field,
            message: format!("no agent {agent_id:?} in this account"),
        })
    }
}

async fn check_agents(
    tx: &mut Transaction<'static, Any>,
    account_id: &str,
    agent_id: &str,
    inbound: Option<&InboundRouting>,
) -> Result<()> {
    check_agent(tx, account_id, agent_id, "agent_id").await?;
    if let Some(r) = inbound {
        if let Some(a) = &r.agent_id {
            check_agent(tx, account_id, a, "inbound_routing.agent_id").await?;
        }
        if let Some(a) = &r.fallback_agent_id {
            check_agent(tx, account_id, a, "inbound_routing.fallback.agent_id").await?;
        }
    }
    Ok(())
}

/// Writes `inbound_routing.transfer` of `rec` (NULL for the default, `edge`), in the caller's transaction.
async fn set_transfer_mode(tx: &mut Transaction<'static, Any>, rec: &NumberRecord) -> Result<()> {
    let mode = rec
        .inbound_routing
        .as_ref()
        .map(|r| r.transfer)
        .filter(|m| *m != crate::TransferMode::Edge);
    sqlx::query("UPDATE phone_numbers SET inbound_transfer = $1 WHERE id = $2")
        .bind(mode.map(|m| m.as_str()))
        .bind(&rec.id)
        .execute(&mut **tx)
        .await
        .map_err(on_write(None))?;
    Ok(())
}

impl Store {
    /// Builds the index entry for a record, decrypting the trunk password.
    pub(crate) fn route_for(&self, rec: &NumberRecord, sealed: &SealedCols) -> Result<NumberRoute> {
        let auth_password = sealed
            .password
            .as_deref()
            .map(|s| self.secrets.open(&password_context(&rec.id), s))
            .transpose()?;
        let ip_auth_token = sealed
            .token
            .as_deref()
            .map(|s| self.secrets.open(&token_context(&rec.id), s))
            .transpose()?;
        let tls_key = sealed
            .tls_key
            .as_deref()
            .map(|s| self.secrets.open(&tls_key_context(&rec.id), s))
            .transpose()?;
        let tls_client = rec
            .provider_config
            .as_ref()
            .and_then(|p| p.tls_client_certificate.clone())
            .zip(tls_key)
            .map(|(c, k)| std::sync::Arc::new(TrunkClientCert::new(c, k)));
        Ok(NumberRoute {
            number_id: rec.id.clone(),
            account_id: rec.account_id.clone(),
            phone_number: rec.phone_number.clone(),
            agent_id: rec.agent_id.clone(),
            inbound_routing: rec.inbound_routing.as_ref().map(|r| InboundRoute {
                agent_id: r.agent_id.clone().unwrap_or_else(|| rec.agent_id.clone()),
                fallback_agent_id: r.fallback_agent_id.clone(),
                voicemail_message: r.voicemail_message.clone(),
                transfer: r.transfer,
            }),
            provider: rec.provider,
            source: rec.source,
            provider_config: rec.provider_config.as_ref().map(|p| OutboundTrunk {
                trunk_address: p.trunk_address.clone(),
                auth_username: p.auth_username.clone(),
                auth_password,
                tech_prefix: p.tech_prefix.clone(),
                ip_auth_token,
                p_charge_info: p.p_charge_info,
                tls_client,
                media_encryption: p.media_encryption,
            }),
        })
    }

    /// True when any account has registered `phone_number` or is buying it (a `failed` row does not count).
    pub async fn phone_number_taken(&self, phone_number: &str) -> Result<bool> {
        Ok(
            sqlx::query("SELECT id FROM phone_numbers WHERE phone_number = $1 AND status <> 'failed'")
                .bind(phone_number)
                .fetch_optional(&self.pool)
                .await?
                .is_some(),
        )
    }

    /// How many numbers the account bought through the edge (for per-account purchase limits).
    pub async fn count_purchased_numbers(&self, account_id: &str) -> Result<u64> {
        let row = sqlx::query("SELECT COUNT(*) AS n FROM phone_numbers WHERE account_id = $1 AND source = 'purchased' AND status <> 'failed'")
            .bind(account_id)
            .fetch_one(&self.pool)
            .await?;
        let n: i64 = row.try_get("n")?;
        Ok(u64::try_from(n).unwrap_or(0))
    }

    /// Registers a number. Checks that every referenced agent belongs to the account and that
    /// the number is not registered anywhere (`Conflict` on `phone_number`), all in one
    /// transaction; then updates the index.
    pub async fn create_number(&self, account_id: &str, new: NewNumber) -> Result<NumberRecord> {
        self.insert_number(account_id, new, NumberStatus::Active).await
    }

    /// Stores a number about to be bought as `pending`: visible in the account's list, holding
    /// the number against a second purchase, never routed. Then [`Store::activate_number`] or
    /// [`Store::fail_number`].
    pub async fn create_pending_number(&self, account_id: &str, new: NewNumber) -> Result<NumberRecord> {
        self.insert_number(account_id, new, NumberStatus::Pending).await
    }

    /// A `pending` number was bought: it becomes `active` with the provider's handle and is routed.
    /// `NotFound` when it was deleted meanwhile (the caller then releases what it bought).
    pub async fn activate_number(&self, account_id: &str, id: &str, provider_ref: &str) -> Result<NumberRecord> {
        let _w = self.write_lock.lock().await;
        let mut tx = self.begin_write().await?;
        let done = sqlx::query(
            "UPDATE phone_numbers SET status = 'active', provider_ref = $1, failure_reason = NULL, updated_at = $2 \
             WHERE account_id = $3 AND id = $4 AND status = 'pending'",
        )
        .bind(provider_ref)
        .bind(now_millis())
        .bind(account_id)
        .bind(id)
        .execute(&mut *tx)
        .await?;
        if done.rows_affected() != 1 {
            return Err(StoreError::NotFound);
        }
        let row = sqlx::query(concat!(
            "SELECT ",
            number_cols!(),
            " FROM phone_numbers WHERE account_id = $1 AND id = $2"
        ))
        .bind(account_id)
        .bind(id)
        .fetch_one(&mut *tx)
        .await?;
        let (rec, sealed) = number_from_row(&row)?;
        let route = self.route_for(&rec, &sealed)?;
        tx.commit().await?;
        self.index.put_number(route);
        Ok(rec)
    }

    /// A `pending` purchase failed: the row stays, `failed`, with the reason, so a client that
    /// stopped waiting can see what happened. A later purchase of the number replaces it.
    pub async fn fail_number(&self, account_id: &str, id: &str, reason: &str) -> Result<()> {
        let _w = self.write_lock.lock().await;
        sqlx::query(
            "UPDATE phone_numbers SET status = 'failed', failure_reason = $1, updated_at = $2 \
             WHERE account_id = $3 AND id = $4 AND status = 'pending'",
        )
        .bind(reason)
        .bind(now_millis())
        .bind(account_id)
        .bind(id)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// `pending` numbers of every account last touched before `updated_before` (ms since the
    /// epoch), oldest first, at most `limit`: purchases possibly orphaned by a crash.
    pub async fn pending_numbers(&self, updated_before: i64, limit: u32) -> Result<Vec<NumberRecord>> {
        let rows = sqlx::query(concat!(
            "SELECT ",
            number_cols!(),
            " FROM phone_numbers WHERE status = 'pending' AND updated_at < $1 ORDER BY updated_at, id LIMIT $2"
        ))
        .bind(updated_before)
        .bind(i64::from(limit))
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(|r| number_from_row(r).map(|(rec, _)| rec)).collect()
    }

    async fn insert_number(&self, account_id: &str, new: NewNumber, status: NumberStatus) -> Result<NumberRecord> {
        let now = now_millis();
        let id = new_id(IdKind::PhoneNumber)?;
        let pc = new.provider_config.as_ref();
        let sealed = SealedCols {
            password: pc
                .and_then(|p| p.auth_password.as_ref())
                .map(|pw| self.secrets.seal(&password_context(&id), pw))
                .transpose()?,
            token: pc
                .and_then(|p| p.ip_auth_token.as_ref())
                .map(|t| self.secrets.seal(&token_context(&id), t))
                .transpose()?,
            tls_key: pc
                .and_then(|p| p.tls_client_key.as_ref())
                .map(|k| self.secrets.seal(&tls_key_context(&id), k))
                .transpose()?,
        };
        let rec = NumberRecord {
            id,
            account_id: account_id.to_owned(),
            phone_number: new.phone_number,
            friendly_name: new.friendly_name,
            agent_id: new.agent_id,
            status,
            provider: new.provider,
            source: new.source,
            provider_ref: new.provider_ref,
            inbound_routing: new.inbound_routing,
            provider_config: pc.map(|p| ProviderConfigView {
                trunk_address: p.trunk_address.clone(),
                auth_username: p.auth_username.clone(),
                auth_password_set: sealed.password.is_some(),
                tech_prefix: p.tech_prefix.clone(),
                ip_auth_token_set: sealed.token.is_some(),
                p_charge_info: p.p_charge_info,
                tls_client_certificate: p.tls_client_certificate.clone().filter(|_| sealed.tls_key.is_some()),
                tls_client_key_set: sealed.tls_key.is_some(),
                media_encryption: p.media_encryption,
            }),
            created_at: now,
            updated_at: now,
            failure_reason: None,
        };
        if let Some(pc) = &rec.provider_config {
            check_provider_fields(rec.provider, pc)?;
        }
        let route = self.route_for(&rec, &sealed)?;

        let _w = self.write_lock.lock().await;
        let mut tx = self.begin_write().await?;
        check_agents(&mut tx, account_id, &rec.agent_id, rec.inbound_routing.as_ref()).await?;
        let dup = sqlx::query("SELECT id, status FROM phone_numbers WHERE phone_number = $1")
            .bind(&rec.phone_number)
            .fetch_optional(&mut *tx)
            .await?;
        if let Some(dup) = dup {
            let dup_id: String = dup.try_get("id")?;
            match parse_col(&dup, "status", NumberStatus::parse)? {
                // A failed purchase holds nothing: the new attempt replaces its record.
                NumberStatus::Failed => {
                    sqlx::query("DELETE FROM phone_numbers WHERE id = $1")
                        .bind(&dup_id)
                        .execute(&mut *tx)
                        .await?;
                }
                NumberStatus::Pending => {
                    return Err(StoreError::Conflict {
                        field: Some("phone_number"),
                        message: format!(
                            "a purchase of this phone number is in progress ({dup_id}); \
                             GET /v1/phone-numbers/{dup_id} shows when it is done"
                        ),
                    })
                }
                NumberStatus::Active => {
                    return Err(StoreError::Conflict {
                        field: Some("phone_number"),
                        message: "this phone number is already registered".into(),
                    })
                }
            }
        }
        let ib = rec.inbound_routing.as_ref();
        let pcv = rec.provider_config.as_ref();
        sqlx::query(
            "INSERT INTO phone_numbers (id, account_id, phone_number, friendly_name, agent_id, \
             status, provider, source, provider_ref, inbound_enabled, inbound_agent_id, \
             inbound_fallback_agent_id, inbound_voicemail_message, trunk_address, auth_username, \
             auth_password_sealed, created_at, updated_at, tech_prefix, ip_auth_token_sealed, p_charge_info, \
             tls_client_certificate, tls_client_key_sealed, media_encryption) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, $18, $19, $20, $21, \
             $22, $23, $24)",
        )
        .bind(&rec.id)
        .bind(&rec.account_id)
        .bind(&rec.phone_number)
        .bind(&rec.friendly_name)
        .bind(&rec.agent_id)
        .bind(rec.status.as_str())
        .bind(rec.provider.as_str())
        .bind(rec.source.as_str())
        .bind(&rec.provider_ref)
        .bind(i64::from(ib.is_some()))
        .bind(ib.and_then(|r| r.agent_id.clone()))
        .bind(ib.and_then(|r| r.fallback_agent_id.clone()))
        .bind(ib.and_then(|r| r.voicemail_message.clone()))
        .bind(pcv.map(|p| p.trunk_address.clone()))
        .bind(pcv.and_then(|p| p.auth_username.clone()))
        .bind(&sealed.password)
        .bind(rec.created_at)
        .bind(rec.updated_at)
        .bind(pcv.and_then(|p| p.tech_prefix.clone()))
        .bind(&sealed.token)
        .bind(i64::from(pcv.is_some_and(|p| p.p_charge_info)))
        .bind(pcv.and_then(|p| p.tls_client_certificate.clone()))
        .bind(&sealed.tls_key)
        .bind(pcv.map(|p| p.media_encryption.as_str()))
        .execute(&mut *tx)
        .await
        .map_err(on_write(Some("phone_number")))?;
        set_transfer_mode(&mut tx, &rec).await?;
        tx.commit().await?;
        if rec.status == NumberStatus::Active {
            self.index.put_number(route);
        }
        Ok(rec)
    }

    pub async fn get_number(&self, account_id: &str, id: &str) -> Result<Option<NumberRecord>> {
        let row = sqlx::query(concat!(
            "SELECT ",
            number_cols!(),
            " FROM phone_numbers WHERE account_id = $1 AND id = $2"
        ))
        .bind(account_id)
        .bind(id)
        .fetch_optional(&self.pool)
        .await?;
        Ok(row.as_ref().map(number_from_row).transpose()?.map(|(r, _)| r))
    }

    /// The account's numbers matching `filter`, newest first (`created_at`, then id, both
    /// descending); `cursor` continues after the last number of the previous page.
    pub async fn list_numbers(
        &self,
        account_id: &str,
        filter: NumberFilter,
        limit: u32,
        cursor: Option<&Cursor>,
    ) -> Result<Page<NumberRecord>> {
        let (limit, fetch) = fetch_limit(limit);
        // Assembled from fixed fragments only; every value is bound.
        let mut sql = format!("SELECT {} FROM phone_numbers WHERE account_id = $1", number_cols!());
        let mut n = 1;
        let mut next = || {
            n += 1;
            n
        };
        if filter.agent_id.is_some() {
            sql.push_str(&format!(" AND agent_id = ${}", next()));
        }
        if filter.provider.is_some() {
            sql.push_str(&format!(" AND provider = ${}", next()));
        }
        if filter.status.is_some() {
            sql.push_str(&format!(" AND status = ${}", next()));
        }
        if filter.phone_number.is_some() {
            sql.push_str(&format!(" AND phone_number = ${}", next()));
        }
        if cursor.is_some() {
            let (t, i) = (next(), next());
            sql.push_str(&format!(
                " AND (created_at < ${t} OR (created_at = ${t} AND id < ${i}))"
            ));
        }
        sql.push_str(&format!(" ORDER BY created_at DESC, id DESC LIMIT ${}", next()));

        let mut q = sqlx::query(AssertSqlSafe(sql)).bind(account_id.to_owned());
        if let Some(v) = filter.agent_id {
            q = q.bind(v);
        }
        if let Some(v) = filter.provider {
            q = q.bind(v.as_str());
        }
        if let Some(v) = filter.status {
            q = q.bind(v.as_str());
        }
        if let Some(v) = filter.phone_number {
            q = q.bind(v);
        }
        if let Some(c) = cursor {
            q = q.bind(c.created_at).bind(c.id.clone());
        }
        let rows = q.bind(fetch).fetch_all(&self.pool).await?;
        let items = rows
            .iter()
            .map(|r| number_from_row(r).map(|(rec, _)| rec))
            .collect::<Result<Vec<_>>>()?;
        Ok(into_page(items, limit, |n| (n.created_at, n.id.as_str())))
    }

    /// Applies a partial update; the index reflects it before this returns.
    pub async fn update_number(&self, account_id: &str, id: &str, patch: NumberPatch) -> Result<NumberRecord> {
        let _w = self.write_lock.lock().await;
        let mut tx = self.begin_write().await?;
        let row = sqlx::query(concat!(
            "SELECT ",
            number_cols!(),
            " FROM phone_numbers WHERE account_id = $1 AND id = $2"
        ))
        .bind(account_id)
        .bind(id)
        .fetch_optional(&mut *tx)
        .await?
        .ok_or(StoreError::NotFound)?;
        let (mut rec, sealed) = number_from_row(&row)?;
        if let Some(a) = patch.agent_id {
            rec.agent_id = a;
        }
        if let Some(f) = patch.friendly_name {
            rec.friendly_name = f;
        }
        match patch.inbound_routing {
            None => {}
            Some(None) => rec.inbound_routing = None,
            Some(Some(p)) => {
                let mut r = rec.inbound_routing.take().unwrap_or_default();
                if let Some(v) = p.agent_id {
                    r.agent_id = v;
                }
                if let Some(v) = p.fallback_agent_id {
                    r.fallback_agent_id = v;
                }
                if let Some(v) = p.voicemail_message {
                    r.voicemail_message = v;
                }
                if let Some(v) = p.transfer {
                    r.transfer = v.unwrap_or_default();
                }
                rec.inbound_routing = Some(r);
            }
        }
        let sealed = match patch.provider_config {
            None => sealed,
            Some(p) => self.apply_provider_config(&mut rec, sealed, p)?,
        };
        check_agents(&mut tx, account_id, &rec.agent_id, rec.inbound_routing.as_ref()).await?;
        rec.updated_at = now_millis().max(rec.updated_at);
        let ib = rec.inbound_routing.as_ref();
        let pcv = rec.provider_config.as_ref();
        sqlx::query(
            "UPDATE phone_numbers SET friendly_name = $1, agent_id = $2, inbound_enabled = $3, \
             inbound_agent_id = $4, inbound_fallback_agent_id = $5, \
             inbound_voicemail_message = $6, updated_at = $7, trunk_address = $8, \
             auth_username = $9, auth_password_sealed = $10, tech_prefix = $11, ip_auth_token_sealed = $12, \
             p_charge_info = $13, tls_client_certificate = $14, tls_client_key_sealed = $15, \
             media_encryption = $16 WHERE account_id = $17 AND id = $18",
        )
        .bind(&rec.friendly_name)
        .bind(&rec.agent_id)
        .bind(i64::from(ib.is_some()))
        .bind(ib.and_then(|r| r.agent_id.clone()))
        .bind(ib.and_then(|r| r.fallback_agent_id.clone()))
        .bind(ib.and_then(|r| r.voicemail_message.clone()))
        .bind(rec.updated_at)
        .bind(pcv.map(|p| p.trunk_address.clone()))
        .bind(pcv.and_then(|p| p.auth_username.clone()))
        .bind(&sealed.password)
        .bind(pcv.and_then(|p| p.tech_prefix.clone()))
        .bind(&sealed.token)
        .bind(i64::from(pcv.is_some_and(|p| p.p_charge_info)))
        .bind(pcv.and_then(|p| p.tls_client_certificate.clone()))
        .bind(&sealed.tls_key)
        .bind(pcv.map(|p| p.media_encryption.as_str()))
        .bind(account_id)
        .bind(id)
        .execute(&mut *tx)
        .await
        .map_err(on_write(None))?;
        set_transfer_mode(&mut tx, &rec).await?;
        let route = self.route_for(&rec, &sealed)?;
        tx.commit().await?;
        // Editing a pending or failed number must not make it routable.
        if rec.status == NumberStatus::Active {
            self.index.put_number(route);
        }
        Ok(rec)
    }

    /// Merges a trunk-settings patch into `rec`, returning the new sealed secret columns.
    fn apply_provider_config(
        &self,
        rec: &mut NumberRecord,
        sealed: SealedCols,
        patch: ProviderConfigPatch,
    ) -> Result<SealedCols> {
        let pc = rec.provider_config.as_mut().ok_or_else(|| StoreError::InvalidField {
            field: "provider_config",
            message: "only bring-your-own numbers have a provider_config".into(),
        })?;
        if let Some(t) = patch.trunk_address {
            pc.trunk_address = t;
        }
        if let Some(u) = patch.auth_username {
            pc.auth_username = u;
        }
        if let Some(t) = patch.tech_prefix {
            pc.tech_prefix = t;
        }
        if let Some(m) = patch.media_encryption {
            pc.media_encryption = m;
        }
        if let Some(c) = patch.p_charge_info {
            pc.p_charge_info = c;
        }
        let password = match patch.auth_password {
            None => sealed.password,
            Some(None) => None,
            Some(Some(pw)) => Some(self.secrets.seal(&password_context(&rec.id), &pw)?),
        };
        let token = match patch.ip_auth_token {
            None => sealed.token,
            Some(None) => None,
            Some(Some(t)) => Some(self.secrets.seal(&token_context(&rec.id), &t)?),
        };
        let tls_key = match patch.tls_client {
            None => sealed.tls_key,
            Some(None) => {
                pc.tls_client_certificate = None;
                None
            }
            Some(Some((cert, key))) => {
                pc.tls_client_certificate = Some(cert);
                Some(self.secrets.seal(&tls_key_context(&rec.id), &key)?)
            }
        };
        if password.is_some() && pc.auth_username.is_none() {
            return Err(StoreError::InvalidField {
                field: "provider_config.auth_username",
                message: "required while auth_password is set".into(),
            });
        }
        pc.auth_password_set = password.is_some();
        pc.ip_auth_token_set = token.is_some();
        pc.tls_client_key_set = tls_key.is_some();
        check_provider_fields(rec.provider, pc)?;
        Ok(SealedCols {
            password,
            token,
            tls_key,
        })
    }

    /// Removes a number from the account and the index, returning what was removed.
    /// Releasing a purchased number at its provider is the caller's job (done first, so a
    /// provider failure leaves everything as it was).
    pub async fn delete_number(&self, account_id: &str, id: &str) -> Result<NumberRecord> {
        let _w = self.write_lock.lock().await;
        let mut tx = self.begin_write().await?;
        let row = sqlx::query(concat!(
            "SELECT ",
            number_cols!(),
            " FROM phone_numbers WHERE account_id = $1 AND id = $2"
        ))
        .bind(account_id)
        .bind(id)
        .fetch_optional(&mut *tx)
        .await?
        .ok_or(StoreError::NotFound)?;
        let (rec, _) = number_from_row(&row)?;
        sqlx::query("DELETE FROM phone_numbers WHERE account_id = $1 AND id = $2")
            .bind(account_id)
            .bind(id)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        self.index.remove_number(&rec.phone_number);
        Ok(rec)
    }
}
