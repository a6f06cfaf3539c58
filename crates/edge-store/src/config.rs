//! Where the store lives and how it protects secrets.

use crate::error::{Result, StoreError};
use crate::secret::SecretBox;
use std::path::{Path, PathBuf};

/// File name of the SQLite database inside `[storage] data_dir`.
pub const SQLITE_FILE_NAME: &str = "oneinbox-edge.db";

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Database {
    /// SQLite file `<data_dir>/oneinbox-edge.db`; the directory is created if missing.
    Sqlite { data_dir: PathBuf },
    /// `postgres://` or `postgresql://` URL.
    Postgres { url: String },
}

#[derive(Debug, Clone)]
pub struct StoreConfig {
    pub database: Database,
    pub secrets: SecretBox,
    /// Pool size; SQLite serialises writers anyway, PostgreSQL benefits from a few more.
    pub max_connections: u32,
    /// PostgreSQL only: schema to create (if missing) and use via `search_path`, so several
    /// deployments or test runs can share one database. `[a-z_][a-z0-9_]{0,62}`.
    pub pg_schema: Option<String>,
    /// Where API users reach the REST API (`[api] public_url`, e.g. `https://api.example.com`, no trailing
    /// slash): webhook events carry absolute URLs under it (`voicemail.recorded`'s `recording_url`), since
    /// a receiver has nothing to resolve an API path against. `None`: the API path alone.
    pub public_api_url: Option<String>,
}

impl StoreConfig {
    /// PostgreSQL when `database_url` is a `postgres://`/`postgresql://` URL, otherwise
    /// SQLite under `data_dir`.
    pub fn new(database_url: Option<&str>, data_dir: &Path, secrets: SecretBox) -> Result<Self> {
        let database = match database_url.map(str::trim).filter(|u| !u.is_empty()) {
            Some(url) if url.starts_with("postgres://") || url.starts_with("postgresql://") => {
                Database::Postgres { url: url.to_owned() }
            }
            Some(_) => {
                return Err(StoreError::Config(
                    "database_url must start with postgres:// or postgresql://".into(),
                ))
            }
            None => Database::Sqlite {
                data_dir: data_dir.to_path_buf(),
            },
        };
        Ok(Self {
            database,
            secrets,
            max_connections: 8,
            pg_schema: None,
            public_api_url: None,
        })
    }
}

pub(crate) fn valid_schema_name(s: &str) -> bool {
    let mut bytes = s.bytes();
    matches!(bytes.next(), Some(b'a'..=b'z' | b'_'))
        && s.len() <= 63
        && bytes.all(|b| matches!(b, b'a'..=b'z' | b'0'..=b'9' | b'_'))
}

/// `sqlite://` URL for a file path. Characters that would change the URL's meaning are
/// refused rather than escaped, since sqlx's own escaping does not cover `%`.
pub(crate) fn sqlite_url(path: &Path) -> Result<String> {
    let s = path
        .to_str()
        .ok_or_else(|| StoreError::Config("data_dir must be valid UTF-8".into()))?;
    if s.chars().any(|c| c.is_control() || matches!(c, '%' | '?' | '#')) {
        return Err(StoreError::Config(
            "data_dir must not contain '%', '?', '#' or control characters".into(),
        ));
    }
    Ok(format!("sqlite://{}?mode=rwc", s.replace(' ', "%20")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn picks_backend_from_url() {
        let sb = SecretBox::new([0; 32]);
        let c = StoreConfig::new(None, Path::new("/tmp/x"), sb.clone()).unwrap();
        assert!(matches!(c.database, Database::Sqlite { .. }));
        let c = StoreConfig::new(Some("postgres://h/db"), Path::new("/x"), sb.clone()).unwrap();
        assert!(matches!(c.database, Database::Postgres { .. }));
        assert!(StoreConfig::new(Some("mysql://h/db"), Path::new("/x"), sb).is_err());
    }

    #[test]
    fn schema_names_and_paths() {
        assert!(valid_schema_name("edge_test_1"));
        assert!(!valid_schema_name("1abc"));
        assert!(!valid_schema_name("a\"; drop"));
        assert_eq!(
            sqlite_url(Path::new("/var/lib/x y/db")).unwrap(),
            "sqlite:///var/lib/x%20y/db?mode=rwc"
        );
        assert!(sqlite_url(Path::new("/a?b")).is_err());
    }
}
