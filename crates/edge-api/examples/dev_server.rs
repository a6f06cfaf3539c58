//! Serves the API on a throwaway SQLite store for manual testing and schemathesis:
//! `cargo run -p edge-api --example dev_server -- 127.0.0.1:8089` prints an API key.

use edge_api::{router, ApiConfig, ApiState, ProviderSet};
use edge_providers::LocalInventory;
use edge_store::{SecretBox, Store, StoreConfig};
use std::sync::Arc;

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let addr = std::env::args().nth(1).unwrap_or_else(|| "127.0.0.1:8089".into());
    let dir = tempfile::tempdir()?;
    let mut key = [0u8; 32];
    key[0] = 1;
    let store = Store::connect(StoreConfig::new(None, dir.path(), SecretBox::new(key))?).await?;
    let (_, api_key) = store.create_api_key(None, "dev").await?;
    let store = Arc::new(store);
    let providers = ProviderSet::new(Arc::new(LocalInventory::new(Vec::new())));
    let app = router(ApiState::new(store, providers, ApiConfig::default()));
    let listener = tokio::net::TcpListener::bind(&addr).await?;
    println!("BASE_URL=http://{}", listener.local_addr()?);
    println!("API_KEY={api_key}");
    edge_api::serve(listener, app, edge_api::ServeConfig::default(), std::future::pending()).await?;
    Ok(())
}
