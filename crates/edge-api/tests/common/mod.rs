//! A real server on 127.0.0.1:0 over a SQLite or PostgreSQL store, and a tiny JSON client.
#![allow(dead_code)]

use edge_api::{router, ApiConfig, ApiState, CallCommand, ProviderSet};
use edge_providers::{InventoryRange, LocalInventory};
use edge_store::{SecretBox, Store, StoreConfig};
use serde_json::Value;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;

pub const DEFAULT_PG_URL: &str = "postgres://postgres@127.0.0.1:5432/test";

/// Starts a (fake) call engine over the server's store and returns its command channel.
pub type Engine = fn(Arc<Store>) -> tokio::sync::mpsc::Sender<CallCommand>;

pub struct Server {
    pub base: String,
    pub store: Arc<Store>,
    pub client: reqwest::Client,
    pg_schema: Option<String>,
    _dir: Option<tempfile::TempDir>,
    task: tokio::task::JoinHandle<()>,
}

pub struct Resp {
    pub status: u16,
    pub text: String,
    pub json: Value,
}

/// The internal ranges these tests' agents and trunks use (`10.0.0.5`, loopback fakes), as an
/// operator would list them in `[security] internal_targets`.
pub fn test_targets() -> edge_api::TargetPolicy {
    edge_api::TargetPolicy::new(
        ["10.0.0.0/8", "127.0.0.0/8", "::1/128"]
            .iter()
            .map(|c| c.parse().unwrap())
            .collect(),
    )
}

pub fn providers() -> ProviderSet {
    // The seed's example number +14155551234 is in this range; 415 searches use it.
    let local = LocalInventory::new(vec![InventoryRange {
        country: "US".into(),
        area_code: "415".into(),
        first: "+14155551200".into(),
        last: "+14155551299".into(),
    }]);
    ProviderSet::new(Arc::new(local))
}

async fn serve_with(
    store: Store,
    dir: Option<tempfile::TempDir>,
    pg_schema: Option<String>,
    providers: ProviderSet,
    config: ApiConfig,
    engine: Option<Engine>,
) -> Server {
    let mut config = config;
    if config.targets.internal_targets.is_empty() {
        config.targets = test_targets();
    }
    let store = Arc::new(store);
    let mut state = ApiState::new(Arc::clone(&store), providers, config);
    if let Some(start) = engine {
        state = state.with_call_control(start(Arc::clone(&store)));
    }
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let app = router(state);
    let task = tokio::spawn(async move {
        let _ = edge_api::serve(listener, app, edge_api::ServeConfig::default(), std::future::pending()).await;
    });
    Server {
        base: format!("http://{addr}"),
        store,
        client: {
            // reqwest is compiled with `rustls-no-provider`; a client needs one installed.
            let _ = rustls::crypto::ring::default_provider().install_default();
            reqwest::Client::new()
        },
        pg_schema,
        _dir: dir,
        task,
    }
}

/// The API config of the shared test servers: an operator that provisions BYO numbers itself
/// (`[security] verify_number_ownership = false`), so tests about other things need no
/// provider fakes. Ownership is tested with fakes in `byo_providers.rs`.
pub fn test_config() -> ApiConfig {
    ApiConfig {
        verify_number_ownership: false,
        ..ApiConfig::default()
    }
}

pub async fn sqlite() -> Server {
    sqlite_with(providers()).await
}

/// SQLite-backed server with the given providers (e.g. a scripted fake).
pub async fn sqlite_with(providers: ProviderSet) -> Server {
    sqlite_with_config(providers, test_config()).await
}

pub async fn sqlite_with_config(providers: ProviderSet, config: ApiConfig) -> Server {
    sqlite_full(providers, config, None).await
}

pub async fn sqlite_full(providers: ProviderSet, config: ApiConfig, engine: Option<Engine>) -> Server {
    let dir = tempfile::tempdir().unwrap();
    let cfg = StoreConfig::new(None, &dir.path().join("data"), SecretBox::new([9u8; 32])).unwrap();
    let store = Store::connect(cfg).await.unwrap();
    serve_with(store, Some(dir), None, providers, config, engine).await
}

pub async fn postgres() -> Option<Server> {
    postgres_with_config(test_config()).await
}

/// PostgreSQL-backed server with the given API config (e.g. a temp `data_dir`).
pub async fn postgres_with_config(config: ApiConfig) -> Option<Server> {
    postgres_full(config, None).await
}

pub async fn postgres_full(config: ApiConfig, engine: Option<Engine>) -> Option<Server> {
    postgres_full_with(providers(), config, engine).await
}

/// PostgreSQL-backed server with the given providers and config.
pub async fn postgres_full_with(providers: ProviderSet, config: ApiConfig, engine: Option<Engine>) -> Option<Server> {
    static N: AtomicU32 = AtomicU32::new(0);
    let url = std::env::var("EDGE_TEST_POSTGRES_URL").unwrap_or_else(|_| DEFAULT_PG_URL.into());
    let mut cfg = StoreConfig::new(
        Some(&url),
        std::path::Path::new("/nonexistent"),
        SecretBox::new([9u8; 32]),
    )
    .unwrap();
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    let schema = format!(
        "edge_api_test_{}_{}_{}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed),
        nanos
    );
    cfg.pg_schema = Some(schema.clone());
    cfg.max_connections = 3;
    match Store::connect(cfg).await {
        Ok(store) => Some(serve_with(store, None, Some(schema), providers, config, engine).await),
        Err(e) if std::env::var_os("CI").is_some() => {
            panic!("PostgreSQL at {url} unreachable under CI: {e}")
        }
        Err(e) => {
            eprintln!("\n!!!!!!!! SKIPPING PostgreSQL API test: {url} unreachable ({e}) !!!!!!!!\n");
            None
        }
    }
}

impl Server {
    pub async fn key(&self) -> (String, String) {
        self.store.create_api_key(None, "test").await.unwrap()
    }

    pub async fn call(&self, method: &str, path: &str, key: Option<&str>, body: Option<Value>) -> Resp {
        let method = reqwest::Method::from_bytes(method.as_bytes()).unwrap();
        let mut req = self.client.request(method, format!("{}{}", self.base, path));
        if let Some(k) = key {
            req = req.header("Authorization", format!("Bearer {k}"));
        }
        if let Some(b) = body {
            req = req.header("Content-Type", "application/json").body(b.to_string());
        }
        let resp = req.send().await.unwrap();
        let status = resp.status().as_u16();
        let text = resp.text().await.unwrap();
        let json = serde_json::from_str(&text).unwrap_or(Value::Null);
        Resp { status, text, json }
    }

    pub async fn raw(&self, method: &str, path: &str, key: &str, body: &str) -> Resp {
        let method = reqwest::Method::from_bytes(method.as_bytes()).unwrap();
        let resp = self
            .client
            .request(method, format!("{}{}", self.base, path))
            .header("Authorization", format!("Bearer {key}"))
            .header("Content-Type", "application/json")
            .body(body.to_owned())
            .send()
            .await
            .unwrap();
        let status = resp.status().as_u16();
        let text = resp.text().await.unwrap();
        let json = serde_json::from_str(&text).unwrap_or(Value::Null);
        Resp { status, text, json }
    }

    pub async fn shutdown(&self) {
        self.task.abort();
        if let Some(schema) = &self.pg_schema {
            let sql = format!("DROP SCHEMA IF EXISTS \"{schema}\" CASCADE");
            let _ = sqlx::query(sqlx::AssertSqlSafe(sql)).execute(self.store.pool()).await;
        }
        self.store.close().await;
    }
}

impl Resp {
    /// Asserts the error shape and returns (code, field).
    pub fn error(&self) -> (String, Option<String>) {
        let e = &self.json["error"];
        assert!(e["code"].is_string(), "no error.code in {}", self.text);
        assert!(e["message"].is_string(), "no error.message in {}", self.text);
        assert!(e.get("field").is_some(), "no error.field in {}", self.text);
        (
            e["code"].as_str().unwrap_or_default().to_owned(),
            e["field"].as_str().map(str::to_owned),
        )
    }
}

/// Runs `$body(&Server)` on SQLite and on PostgreSQL; the body runs in its own task so the
/// PostgreSQL schema is dropped even when an assertion fails. With `engine = f`, the server
/// has call control from `f` (a [`Engine`]) and a short call-control timeout.
#[macro_export]
macro_rules! on_both_backends {
    ($name:ident, engine = $engine:path) => {
        mod $name {
            fn config() -> edge_api::ApiConfig {
                edge_api::ApiConfig {
                    call_control_timeout: std::time::Duration::from_millis(300),
                    ..$crate::common::test_config()
                }
            }

            async fn run(s: $crate::common::Server) {
                let s = std::sync::Arc::new(s);
                let inner = std::sync::Arc::clone(&s);
                let res = tokio::spawn(async move { super::$name(&inner).await }).await;
                s.shutdown().await;
                if let Err(e) = res {
                    std::panic::resume_unwind(e.into_panic());
                }
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn sqlite() {
                run($crate::common::sqlite_full($crate::common::providers(), config(), Some($engine)).await).await;
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn postgres() {
                if let Some(s) = $crate::common::postgres_full(config(), Some($engine)).await {
                    run(s).await;
                }
            }
        }
    };
    ($name:ident) => {
        mod $name {
            async fn run(s: $crate::common::Server) {
                let s = std::sync::Arc::new(s);
                let inner = std::sync::Arc::clone(&s);
                let res = tokio::spawn(async move { super::$name(&inner).await }).await;
                s.shutdown().await;
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
                if let Some(s) = $crate::common::postgres().await {
                    run(s).await;
                }
            }
        }
    };
}
pub mod fakes;
