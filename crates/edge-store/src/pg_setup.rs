//! PostgreSQL start-up that several nodes may run at the same moment: schema creation, migrations and the
//! routing-index triggers, all under one advisory lock, so the nodes take turns.
//!
//! Why a lock of our own when sqlx's migrator already takes one: `CREATE SCHEMA IF NOT EXISTS` and
//! `CREATE OR REPLACE FUNCTION` are not safe against a concurrent twin (both see "absent", one fails on the
//! catalog's unique index or with "tuple concurrently updated"), and both run outside sqlx's lock.

use crate::error::Result;
use sqlx::{AnyConnection, AssertSqlSafe, Connection};

/// `pg_advisory_lock` key for the set-up ("oneinbx" in ASCII); distinct from sqlx's own migration key.
const SETUP_LOCK_KEY: i64 = 0x006f_6e65_696e_6278;

/// The set-up lock, held on a connection of its own from before the schema is created until the triggers
/// are in place. Session-level: on any error the connection is dropped, which releases it.
pub(crate) struct SetupLock {
    conn: AnyConnection,
}

impl SetupLock {
    /// Waits for the lock, then creates `schema` if given (and makes it this connection's search path).
    pub(crate) async fn acquire(url: &str, schema: Option<&str>) -> Result<SetupLock> {
        let mut conn = AnyConnection::connect(url).await?;
        sqlx::query("SELECT pg_advisory_lock($1)")
            .bind(SETUP_LOCK_KEY)
            .execute(&mut conn)
            .await?;
        if let Some(s) = schema {
            // `s` matched [a-z_][a-z0-9_]* (`valid_schema_name`), so quoting is safe.
            sqlx::query(AssertSqlSafe(format!("CREATE SCHEMA IF NOT EXISTS \"{s}\"")))
                .execute(&mut conn)
                .await?;
            sqlx::query(AssertSqlSafe(format!("SET search_path TO \"{s}\"")))
                .execute(&mut conn)
                .await?;
        }
        Ok(SetupLock { conn })
    }

    /// After the migrations (run meanwhile on the store's pool): installs the index triggers and releases
    /// the lock.
    pub(crate) async fn finish(mut self, channel: &str) -> Result<()> {
        crate::index_sync::install_triggers(&mut self.conn, channel).await?;
        sqlx::query("SELECT pg_advisory_unlock($1)")
            .bind(SETUP_LOCK_KEY)
            .execute(&mut self.conn)
            .await?;
        self.conn.close().await?;
        Ok(())
    }
}
