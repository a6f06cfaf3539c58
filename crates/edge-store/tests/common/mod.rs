//! Test fixtures: a store on SQLite (temp dir) or PostgreSQL (own schema per test).
#![allow(dead_code)]

use edge_store::{Database, SecretBox, Store, StoreConfig};
use std::sync::atomic::{AtomicU32, Ordering};

pub const DEFAULT_PG_URL: &str = "postgres://postgres@127.0.0.1:5432/test";

pub fn secrets() -> SecretBox {
    SecretBox::new([42u8; 32])
}

pub struct Fixture {
    pub store: Store,
    pub config: StoreConfig,
    _dir: Option<tempfile::TempDir>,
}

impl Fixture {
    /// Drops the PostgreSQL schema (no-op on SQLite, whose temp dir goes with the fixture).
    pub async fn cleanup(&self) {
        if let Some(schema) = &self.config.pg_schema {
            let sql = format!("DROP SCHEMA IF EXISTS \"{schema}\" CASCADE");
            let _ = sqlx::query(sqlx::AssertSqlSafe(sql)).execute(self.store.pool()).await;
        }
        self.store.close().await;
    }
}

pub async fn sqlite() -> Fixture {
    let dir = tempfile::tempdir().expect("tempdir");
    let config = StoreConfig::new(None, &dir.path().join("data"), secrets()).expect("config");
    let store = Store::connect(config.clone()).await.expect("sqlite store");
    Fixture {
        store,
        config,
        _dir: Some(dir),
    }
}

pub fn unique_schema() -> String {
    static N: AtomicU32 = AtomicU32::new(0);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    format!(
        "edge_test_{}_{}_{}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed),
        nanos
    )
}

/// A PostgreSQL-backed store in a fresh schema, or `None` (with a loud message) when the
/// server is unreachable locally. Under `CI` an unreachable server fails the test.
pub async fn postgres() -> Option<Fixture> {
    let url = std::env::var("EDGE_TEST_POSTGRES_URL").unwrap_or_else(|_| DEFAULT_PG_URL.into());
    let mut config = StoreConfig::new(Some(&url), std::path::Path::new("/nonexistent"), secrets()).expect("pg config");
    config.max_connections = 3;
    config.pg_schema = Some(unique_schema());
    assert!(matches!(config.database, Database::Postgres { .. }));
    match Store::connect(config.clone()).await {
        Ok(store) => Some(Fixture {
            store,
            config,
            _dir: None,
        }),
        Err(e) if std::env::var_os("CI").is_some() => {
            panic!("PostgreSQL at {url} unreachable under CI: {e}")
        }
        Err(e) => {
            eprintln!(
                "\n!!!!!!!! SKIPPING PostgreSQL test: {url} unreachable ({e}). \
                 Set EDGE_TEST_POSTGRES_URL or start PostgreSQL. !!!!!!!!\n"
            );
            None
        }
    }
}

/// Runs `$body(&Fixture)` as two tests: `sqlite` and `postgres`. The body runs in its own
/// task so the PostgreSQL schema is dropped even when an assertion fails.
#[macro_export]
macro_rules! on_both_backends {
    ($name:ident) => {
        mod $name {
            async fn run(fx: $crate::common::Fixture) {
                let fx = std::sync::Arc::new(fx);
                let inner = std::sync::Arc::clone(&fx);
                let res = tokio::spawn(async move { super::$name(&inner).await }).await;
                fx.cleanup().await;
                if let Err(e) = res {
                    std::panic::resume_unwind(e.into_panic());
                }
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn sqlite() {
                run($crate::common::sqlite().await).await;
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn postgres() {
                if let Some(fx) = $crate::common::postgres().await {
                    run(fx).await;
                }
            }
        }
    };
}
