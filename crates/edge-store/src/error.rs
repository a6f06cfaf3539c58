//! Store errors. Messages never carry secrets; database errors keep the driver's message
//! (sqlx does not include bound values in it).

use crate::secret::SecretError;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The resource does not exist in this account (other accounts' resources included).
    #[error("not found")]
    NotFound,
    /// A referenced resource (e.g. an agent) does not exist in this account.
    #[error("{field}: {message}")]
    InvalidReference { field: &'static str, message: String },
    /// The change is not valid for this resource's current state.
    #[error("{field}: {message}")]
    InvalidField { field: &'static str, message: String },
    /// Uniqueness or in-use conflict (duplicate number, agent still referenced, ...).
    #[error("conflict: {message}")]
    Conflict {
        field: Option<&'static str>,
        message: String,
    },
    #[error("invalid configuration: {0}")]
    Config(String),
    #[error("database error: {0}")]
    Database(#[from] sqlx::Error),
    #[error("migration error: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    #[error("secret error: {0}")]
    Secret(#[from] SecretError),
    #[error("stored row is corrupt: {0}")]
    Corrupt(String),
    /// A file of the store's own (trace segments) could not be written or read.
    #[error("store file error: {0}")]
    Io(String),
    #[error("system random source failed")]
    Random,
}

impl From<getrandom::Error> for StoreError {
    fn from(_: getrandom::Error) -> Self {
        StoreError::Random
    }
}

pub type Result<T, E = StoreError> = std::result::Result<T, E>;

/// Maps unique/foreign-key violations that slipped past the explicit checks (races) to
/// `Conflict`, everything else to `Database`.
pub(crate) fn classify(err: sqlx::Error, unique_field: Option<&'static str>) -> StoreError {
    if let sqlx::Error::Database(db) = &err {
        match db.kind() {
            sqlx::error::ErrorKind::UniqueViolation => {
                return StoreError::Conflict {
                    field: unique_field,
                    message: "already exists".into(),
                }
            }
            sqlx::error::ErrorKind::ForeignKeyViolation => {
                return StoreError::Conflict {
                    field: None,
                    message: "a referenced resource changed concurrently".into(),
                }
            }
            _ => {}
        }
    }
    StoreError::Database(err)
}
