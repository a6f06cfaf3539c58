//! The store: one `sqlx::AnyPool` over SQLite or PostgreSQL, plus the routing index it keeps
//! current.
//!
//! Why `sqlx::Any` rather than an enum over `SqlitePool`/`PgPool`: the schema is restricted
//! to portable SQL (TEXT, BIGINT, `$N` placeholders) and we only bind/decode `String`/`i64`,
//! which is exactly what `Any` supports, so one code path serves both backends and every
//! query is exercised by both test suites.

use crate::config::{sqlite_url, valid_schema_name, Database, StoreConfig};
use crate::error::{classify, Result, StoreError};
use crate::ids::{hash_api_key, new_api_key, new_id, IdKind};
use crate::index::RoutingIndex;
use crate::secret::SecretBox;
use sqlx::any::{AnyPoolOptions, AnyRow};
use sqlx::migrate::{Migration, MigrationType, Migrator};
use sqlx::{AnyPool, AssertSqlSafe, Row, SqlSafeStr};
use std::sync::Arc;
use std::time::Duration;

const MIGRATION_0001: &str = include_str!("../migrations/0001_init.sql");
const MIGRATION_0002: &str = include_str!("../migrations/0002_calls.sql");
const MIGRATION_0003: &str = include_str!("../migrations/0003_voicemails.sql");
const MIGRATION_0004: &str = include_str!("../migrations/0004_agent_sip_credentials.sql");
const MIGRATION_0005: &str = include_str!("../migrations/0005_api_key_prefix.sql");
const MIGRATION_0006: &str = include_str!("../migrations/0006_idempotency.sql");
const MIGRATION_0007: &str = include_str!("../migrations/0007_number_status.sql");
const MIGRATION_0008: &str = include_str!("../migrations/0008_inbound_transfer.sql");
const MIGRATION_0009: &str = include_str!("../migrations/0009_trunk_auth.sql");
const MIGRATION_0010: &str = include_str!("../migrations/0010_nodes.sql");
const MIGRATION_0011: &str = include_str!("../migrations/0011_call_traces.sql");
const MIGRATION_0012: &str = include_str!("../migrations/0012_webhooks.sql");
const MIGRATION_0013: &str = include_str!("../migrations/0013_trunk_client_certificate.sql");
const MIGRATION_0014: &str = include_str!("../migrations/0014_media_encryption.sql");
const MIGRATION_0015: &str = include_str!("../migrations/0015_trace_files.sql");

/// Which backend the pool talks to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

pub struct Store {
    pub(crate) pool: AnyPool,
    pub(crate) secrets: SecretBox,
    pub(crate) index: Arc<RoutingIndex>,
    /// Serialises "commit, then update the index" so the index never applies two writes in
    /// an order different from the database's.
    pub(crate) write_lock: tokio::sync::Mutex<()>,
    backend: Backend,
    /// Where the pool connects, for [`Store::with_own_pool`] and the index listener.
    pub(crate) url: String,
    schema: Option<String>,
    /// PostgreSQL channel the index triggers notify (`index_sync`).
    pub(crate) channel: String,
    /// What the index is known to hold, for the consistency check (`index_sync`).
    pub(crate) sync: Arc<crate::index_sync::SyncState>,
    /// `StoreConfig::public_api_url`, for the URLs in webhook events.
    pub(crate) public_api_url: Option<Arc<str>>,
    /// SQLite: traces' text in segment files under `<data_dir>/traces` (`trace_files`); PostgreSQL: none,
    /// the text is in the row, where every node reads it.
    pub(crate) trace_files: Option<Arc<crate::trace_files::TraceFiles>>,
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store")
            .field("backend", &self.backend)
            .finish_non_exhaustive()
    }
}

/// Pool settings of both backends: the per-connection pragmas or search path every connection gets.
fn pool_options(backend: Backend, schema: Option<String>, max_connections: u32) -> AnyPoolOptions {
    AnyPoolOptions::new()
        .max_connections(max_connections.max(1))
        .acquire_timeout(Duration::from_secs(10))
        .after_connect(move |conn, _meta| {
            let schema = schema.clone();
            Box::pin(async move {
                match backend {
                    Backend::Sqlite => {
                        // WAL: readers (API GETs) never block on the writer.
                        sqlx::query("PRAGMA journal_mode = WAL").execute(&mut *conn).await?;
                        sqlx::query("PRAGMA synchronous = NORMAL").execute(&mut *conn).await?;
                        // Statement journals (every multi-row upsert inside a transaction needs one)
                        // in memory: as temp files they cost an open, write and unlink per statement,
                        // 4% of the edge's CPU under SIPp load in `perf`.
                        sqlx::query("PRAGMA temp_store = MEMORY").execute(&mut *conn).await?;
                        // 16 MiB of page cache (default 2 MiB): call ids are random, so the upserts of
                        // a busy minute touch index pages all over the table; misses are preads.
                        sqlx::query("PRAGMA cache_size = -16384").execute(&mut *conn).await?;
                        // A writer waits this long for another's write lock (`begin_write`) before BUSY.
                        sqlx::query("PRAGMA busy_timeout = 5000").execute(&mut *conn).await?;
                    }
                    Backend::Postgres => {
                        if let Some(s) = schema {
                            // `s` matched [a-z_][a-z0-9_]* by `Store::connect`, so quoting is safe.
                            sqlx::query(AssertSqlSafe(format!("SET search_path TO \"{s}\"")))
                                .execute(&mut *conn)
                                .await?;
                        }
                    }
                }
                Ok(())
            })
        })
}

fn migrator() -> Migrator {
    Migrator::with_migrations(vec![
        Migration::new(
            1,
            "init".into(),
            MigrationType::Simple,
            MIGRATION_0001.into_sql_str(),
            false,
        ),
        Migration::new(
            2,
            "calls".into(),
            MigrationType::Simple,
            MIGRATION_0002.into_sql_str(),
            false,
        ),
        Migration::new(
            3,
            "voicemails".into(),
            MigrationType::Simple,
            MIGRATION_0003.into_sql_str(),
            false,
        ),
        Migration::new(
            4,
            "agent_sip_credentials".into(),
            MigrationType::Simple,
            MIGRATION_0004.into_sql_str(),
            false,
        ),
        Migration::new(
            5,
            "api_key_prefix".into(),
            MigrationType::Simple,
            MIGRATION_0005.into_sql_str(),
            false,
        ),
        Migration::new(
            6,
            "idempotency".into(),
            MigrationType::Simple,
            MIGRATION_0006.into_sql_str(),
            false,
        ),
        Migration::new(
            7,
            "number_status".into(),
            MigrationType::Simple,
            MIGRATION_0007.into_sql_str(),
            false,
        ),
        Migration::new(
            8,
            "inbound_transfer".into(),
            MigrationType::Simple,
            MIGRATION_0008.into_sql_str(),
            false,
        ),
        Migration::new(
            9,
            "trunk_auth".into(),
            MigrationType::Simple,
            MIGRATION_0009.into_sql_str(),
            false,
        ),
        Migration::new(
            10,
            "nodes".into(),
            MigrationType::Simple,
            MIGRATION_0010.into_sql_str(),
            false,
        ),
        Migration::new(
            11,
            "call_traces".into(),
            MigrationType::Simple,
            MIGRATION_0011.into_sql_str(),
            false,
        ),
        Migration::new(
            12,
            "webhooks".into(),
            MigrationType::Simple,
            MIGRATION_0012.into_sql_str(),
            false,
        ),
        Migration::new(
            13,
            "trunk_client_certificate".into(),
            MigrationType::Simple,
            MIGRATION_0013.into_sql_str(),
            false,
        ),
        Migration::new(
            14,
            "media_encryption".into(),
            MigrationType::Simple,
            MIGRATION_0014.into_sql_str(),
            false,
        ),
        Migration::new(
            15,
            "trace_files".into(),
            MigrationType::Simple,
            MIGRATION_0015.into_sql_str(),
            false,
        ),
    ])
}

impl Store {
    /// Connects (creating the SQLite directory/file or the PostgreSQL schema as needed),
    /// applies the embedded migrations and loads the routing index.
    pub async fn connect(cfg: StoreConfig) -> Result<Store> {
        sqlx::any::install_default_drivers();
        let (url, backend, trace_files) = match &cfg.database {
            Database::Sqlite { data_dir } => {
                tokio::fs::create_dir_all(data_dir)
                    .await
                    .map_err(|e| StoreError::Config(format!("cannot create data_dir {}: {e}", data_dir.display())))?;
                let path = data_dir.join(crate::config::SQLITE_FILE_NAME);
                let files = crate::trace_files::TraceFiles::new(data_dir.join("traces"));
                (sqlite_url(&path)?, Backend::Sqlite, Some(Arc::new(files)))
            }
            Database::Postgres { url } => (url.clone(), Backend::Postgres, None),
        };
        let schema = match (&cfg.pg_schema, backend) {
            (Some(s), Backend::Postgres) if valid_schema_name(s) => Some(s.clone()),
            (Some(_), Backend::Postgres) => return Err(StoreError::Config("invalid pg_schema name".into())),
            (Some(_), Backend::Sqlite) => return Err(StoreError::Config("pg_schema requires PostgreSQL".into())),
            (None, _) => None,
        };
        let channel = crate::index_sync::channel_name(schema.as_deref());
        let setup = match backend {
            Backend::Postgres => Some(crate::pg_setup::SetupLock::acquire(&url, schema.as_deref()).await?),
            Backend::Sqlite => None,
        };
        let pool = pool_options(backend, schema.clone(), cfg.max_connections)
            .connect(&url)
            .await?;
        migrator().run(&pool).await?;
        if let Some(setup) = setup {
            setup.finish(&channel).await?;
        }
        let store = Store {
            pool,
            secrets: cfg.secrets,
            index: Arc::new(RoutingIndex::new()),
            write_lock: tokio::sync::Mutex::new(()),
            backend,
            url,
            schema,
            channel,
            sync: Arc::default(),
            public_api_url: cfg.public_api_url.as_deref().map(Arc::from),
            trace_files,
        };
        store.load_index().await?;
        Ok(store)
    }

    /// The same database and routing index over a pool of its own with at most `max_connections`,
    /// opened on the calling runtime: for a task that runs on another runtime than the one that opened
    /// this store (the call-record writer's thread), whose PostgreSQL sockets must then be served by its
    /// own runtime's driver. Migrations have run already; nothing is reloaded.
    pub async fn with_own_pool(&self, max_connections: u32) -> Result<Store> {
        let pool = pool_options(self.backend, self.schema.clone(), max_connections)
            .connect(&self.url)
            .await?;
        Ok(Store {
            pool,
            secrets: self.secrets.clone(),
            index: Arc::clone(&self.index),
            write_lock: tokio::sync::Mutex::new(()),
            backend: self.backend,
            url: self.url.clone(),
            schema: self.schema.clone(),
            channel: self.channel.clone(),
            sync: Arc::default(),
            public_api_url: self.public_api_url.clone(),
            trace_files: self.trace_files.clone(),
        })
    }

    /// The routing index this store keeps current; hand it to the SIP side.
    pub fn index(&self) -> Arc<RoutingIndex> {
        Arc::clone(&self.index)
    }

    pub fn backend(&self) -> Backend {
        self.backend
    }

    /// A transaction that will write. On SQLite it starts with `BEGIN IMMEDIATE`, taking the database's
    /// write lock at once: a deferred transaction that reads first and then writes fails with
    /// SQLITE_BUSY_SNAPSHOT (517) when another connection committed in between (the call-record writer,
    /// the heartbeat, a CLI), and no busy time-out helps it; an immediate one makes the other writers wait
    /// their `busy_timeout` instead. PostgreSQL needs nothing of the kind.
    pub async fn begin_write(&self) -> Result<sqlx::Transaction<'static, sqlx::Any>> {
        Ok(match self.backend {
            Backend::Sqlite => self.pool.begin_with("BEGIN IMMEDIATE").await?,
            Backend::Postgres => self.pool.begin().await?,
        })
    }

    /// Raw pool, for diagnostics and tests that inspect stored rows.
    pub fn pool(&self) -> &AnyPool {
        &self.pool
    }

    pub async fn close(&self) {
        self.pool.close().await;
    }

    /// Creates an API key for `account_id` (creating that account when absent) or for a new
    /// account. Returns `(account_id, plaintext_key)`; only the key's SHA-256 is stored.
    pub async fn create_api_key(&self, account_id: Option<&str>, name: &str) -> Result<(String, String)> {
        let (rec, key) = self.create_api_key_record(account_id, name).await?;
        Ok((rec.account_id, key))
    }

    /// [`Store::create_api_key`], returning the key's record (id, prefix) with the plaintext key.
    pub async fn create_api_key_record(&self, account_id: Option<&str>, name: &str) -> Result<(ApiKeyRecord, String)> {
        let account_id = match account_id {
            Some(a) if IdKind::Account.is_valid(a) => a.to_owned(),
            Some(_) => {
                return Err(StoreError::InvalidReference {
                    field: "account_id",
                    message: "must look like acc_<alphanumerics>".into(),
                })
            }
            None => new_id(IdKind::Account)?,
        };
        let key = new_api_key()?;
        let id = new_id(IdKind::ApiKey)?;
        let now = crate::time::now_millis();
        let mut tx = self.begin_write().await?;
        sqlx::query("INSERT INTO accounts (id, created_at) VALUES ($1, $2) ON CONFLICT (id) DO NOTHING")
            .bind(&account_id)
            .bind(now)
            .execute(&mut *tx)
            .await?;
        sqlx::query(
            "INSERT INTO api_keys (id, account_id, name, key_hash, created_at, key_prefix) \
             VALUES ($1, $2, $3, $4, $5, $6)",
        )
        .bind(&id)
        .bind(&account_id)
        .bind(name)
        .bind(hash_api_key(&key))
        .bind(now)
        .bind(key_prefix(&key))
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        let rec = ApiKeyRecord {
            id,
            account_id,
            name: name.to_owned(),
            prefix: Some(key_prefix(&key)),
            created_at: now,
        };
        Ok((rec, key))
    }

    /// The keys of `account_id` (every account's when `None`), newest first. Never the key
    /// itself: only its prefix.
    pub async fn list_api_keys(
        &self,
        account_id: Option<&str>,
        limit: u32,
        cursor: Option<&crate::cursor::Cursor>,
    ) -> Result<crate::model::Page<ApiKeyRecord>> {
        let (limit, fetch) = fetch_limit(limit);
        let (ts, after_id) = page_bounds_desc(cursor);
        let rows = sqlx::query(
            "SELECT id, account_id, name, key_prefix, created_at FROM api_keys \
             WHERE ($1 = '' OR account_id = $1) AND (created_at < $2 OR (created_at = $2 AND id < $3)) \
             ORDER BY created_at DESC, id DESC LIMIT $4",
        )
        .bind(account_id.unwrap_or(""))
        .bind(ts)
        .bind(after_id)
        .bind(fetch)
        .fetch_all(&self.pool)
        .await?;
        let items = rows
            .iter()
            .map(|r| {
                Ok(ApiKeyRecord {
                    id: r.try_get("id")?,
                    account_id: r.try_get("account_id")?,
                    name: r.try_get("name")?,
                    prefix: r.try_get("key_prefix")?,
                    created_at: r.try_get("created_at")?,
                })
            })
            .collect::<Result<Vec<_>>>()?;
        Ok(into_page(items, limit, |k| (k.created_at, k.id.as_str())))
    }

    /// One key of `account_id` (any account's when `None`).
    pub async fn get_api_key(&self, account_id: Option<&str>, id: &str) -> Result<Option<ApiKeyRecord>> {
        let row = sqlx::query(
            "SELECT id, account_id, name, key_prefix, created_at FROM api_keys \
             WHERE ($1 = '' OR account_id = $1) AND id = $2",
        )
        .bind(account_id.unwrap_or(""))
        .bind(id)
        .fetch_optional(&self.pool)
        .await?;
        row.map(|r| {
            Ok(ApiKeyRecord {
                id: r.try_get("id")?,
                account_id: r.try_get("account_id")?,
                name: r.try_get("name")?,
                prefix: r.try_get("key_prefix")?,
                created_at: r.try_get("created_at")?,
            })
        })
        .transpose()
    }

    /// Revokes (deletes) a key of `account_id` (any account's when `None`); it stops
    /// authenticating at once. `NotFound` when there is no such key.
    pub async fn revoke_api_key(&self, account_id: Option<&str>, id: &str) -> Result<()> {
        let done = sqlx::query("DELETE FROM api_keys WHERE ($1 = '' OR account_id = $1) AND id = $2")
            .bind(account_id.unwrap_or(""))
            .bind(id)
            .execute(&self.pool)
            .await?;
        if done.rows_affected() == 0 {
            return Err(StoreError::NotFound);
        }
        Ok(())
    }

    /// The account owning `key`, or `None` for an unknown or malformed key.
    /// The id (`key_…`) of the key `key` is, if it is one: lets the API refuse to revoke the key a request
    /// is made with (a client that revokes its own key locks itself out mid-task).
    pub async fn api_key_id_of(&self, key: &str) -> Result<Option<String>> {
        let row = sqlx::query("SELECT id FROM api_keys WHERE key_hash = $1")
            .bind(hash_api_key(key))
            .fetch_optional(&self.pool)
            .await?;
        Ok(row.map(|r| r.try_get::<String, _>("id")).transpose()?)
    }

    pub async fn authenticate(&self, key: &str) -> Result<Option<String>> {
        let well_formed = key
            .strip_prefix("oik_")
            .is_some_and(|hex| hex.len() == 64 && hex.bytes().all(|b| b.is_ascii_hexdigit()));
        if !well_formed {
            return Ok(None);
        }
        let row = sqlx::query("SELECT account_id FROM api_keys WHERE key_hash = $1")
            .bind(hash_api_key(key))
            .fetch_optional(&self.pool)
            .await?;
        Ok(row.map(|r| r.try_get::<String, _>("account_id")).transpose()?)
    }

    async fn load_index(&self) -> Result<()> {
        self.reload_index().await?;
        tracing::info!(
            agents = self.index.agent_count(),
            numbers = self.index.number_count(),
            "routing index loaded"
        );
        Ok(())
    }

    /// Re-reads every agent, number and integration trunk and brings the index in line with the database
    /// (entries replaced in place, vanished ones removed; lookups never see a gap). On PostgreSQL the
    /// index sync (`index_sync`) does this after its listener reconnects or when its consistency check
    /// finds a difference. If a row cannot be decoded the index is left untouched.
    pub async fn reload_index(&self) -> Result<()> {
        let _w = self.write_lock.lock().await;
        // Read before the rows: a change committed in between is then in the rows and above these marks,
        // which the change's own notification raises (no false alarm), never the reverse.
        let marks = match self.backend {
            Backend::Postgres => Some(crate::index_sync::Watermarks::read(&self.pool).await?),
            Backend::Sqlite => None,
        };
        let agents = sqlx::query(concat!("SELECT ", agent_cols!(), " FROM agents"))
            .fetch_all(&self.pool)
            .await?
            .iter()
            .map(|r| crate::agents::agent_from_row(r, &self.secrets))
            .collect::<Result<Vec<_>>>()?;
        // Only active numbers take calls: pending and failed purchases are never routed. In pages: all rows
        // at once held every decoded row next to the index being built (3 GB peak at a million numbers,
        // most of it kept by the allocator afterwards; benches/README.md).
        let mut routes = Vec::new();
        let mut after = String::new();
        loop {
            let rows = sqlx::query(concat!(
                "SELECT ",
                number_cols!(),
                " FROM phone_numbers WHERE status = 'active' AND id > $1 ORDER BY id LIMIT $2"
            ))
            .bind(&after)
            .bind(RELOAD_PAGE)
            .fetch_all(&self.pool)
            .await?;
            for row in &rows {
                let (rec, sealed) = crate::numbers::number_from_row(row)?;
                routes.push(self.route_for(&rec, &sealed)?);
            }
            match rows.last() {
                Some(last) if rows.len() as i64 == RELOAD_PAGE => after = last.try_get("id")?,
                _ => break,
            }
        }
        let integrations = sqlx::query(concat!(
            "SELECT ",
            integration_cols!(),
            " FROM integrations ORDER BY created_at, id"
        ))
        .fetch_all(&self.pool)
        .await?;
        let trunks = crate::integrations::trunks_from_rows(&integrations)?;
        self.index.replace_all(agents, routes, trunks);
        if let Some(m) = marks {
            self.sync.reset(m);
        }
        Ok(())
    }

    /// Spawns a task calling [`Store::reload_index`] every `every`, on either backend: the way nodes
    /// followed each other before [`Store::spawn_index_sync`] (which the edge uses on PostgreSQL), kept for
    /// stores sharing one SQLite file. Failures are logged and retried at the next tick.
    pub fn spawn_index_refresh(self: &Arc<Self>, every: Duration) -> tokio::task::JoinHandle<()> {
        let store = Arc::clone(self);
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(every.max(Duration::from_millis(100)));
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            tick.tick().await;
            loop {
                tick.tick().await;
                if let Err(e) = store.reload_index().await {
                    tracing::warn!(error = %e, "routing index refresh failed");
                }
            }
        })
    }
}

/// Numbers read per query by [`Store::reload_index`].
const RELOAD_PAGE: i64 = 10_000;

/// Decodes a stored enum column.
pub(crate) fn parse_col<T>(row: &AnyRow, col: &str, parse: fn(&str) -> Option<T>) -> Result<T> {
    let s: String = row.try_get(col)?;
    parse(&s).ok_or_else(|| StoreError::Corrupt(format!("bad {col}")))
}

/// Maps a uniqueness/FK race to a conflict on `field`.
pub(crate) fn on_write(field: Option<&'static str>) -> impl Fn(sqlx::Error) -> StoreError {
    move |e| classify(e, field)
}

/// Keyset pagination bounds: `(created_at, id)` strictly after the cursor.
/// Bounds for newest-first listings: everything strictly before the cursor (`created_at`
/// descending, then id descending). Without a cursor the bound is above every row.
/// What identifies a key once created: `oik_` and its first 8 hex digits.
fn key_prefix(key: &str) -> String {
    key.chars().take(12).collect()
}

/// An API key as listed: never the key, only its prefix.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiKeyRecord {
    /// `key_…`
    pub id: String,
    pub account_id: String,
    pub name: String,
    /// `oik_` and 8 hex digits; `None` for keys made before prefixes were kept.
    pub prefix: Option<String>,
    pub created_at: i64,
}

pub(crate) fn page_bounds_desc(cursor: Option<&crate::cursor::Cursor>) -> (i64, String) {
    // No row has created_at = i64::MAX, so the id half of the bound never matters then.
    cursor.map_or((i64::MAX, String::new()), |c| (c.created_at, c.id.clone()))
}

/// Clamps a page size to 1..=100 and returns the number of rows to fetch (one extra to
/// learn whether another page exists).
pub(crate) fn fetch_limit(limit: u32) -> (usize, i64) {
    let l = limit.clamp(1, 100) as usize;
    (l, l as i64 + 1)
}

pub(crate) fn into_page<T>(mut items: Vec<T>, limit: usize, key: impl Fn(&T) -> (i64, &str)) -> crate::model::Page<T> {
    let next_cursor = if items.len() > limit {
        items.truncate(limit);
        items.last().map(|t| {
            let (ts, id) = key(t);
            crate::cursor::Cursor::encode(ts, id)
        })
    } else {
        None
    };
    crate::model::Page { items, next_cursor }
}
