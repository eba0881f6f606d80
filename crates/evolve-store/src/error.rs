//! One error type for the store, with messages a user can act on without reading code.

use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// Any SQLite failure without more specific context (constraint violations included).
    #[error("database error: {0}")]
    Sqlite(#[from] rusqlite::Error),

    /// SQLite failure with a note on what the store was doing.
    #[error("{context}: {source}")]
    Context {
        context: String,
        #[source]
        source: rusqlite::Error,
    },

    #[error("cannot open database {path}: {source}")]
    Open {
        path: PathBuf,
        #[source]
        source: rusqlite::Error,
    },

    #[error("database not found: {path}")]
    Missing { path: PathBuf },

    #[error(
        "database {path} has schema version {found}, newer than this build of EVOLVE Studio supports ({supported}); upgrade EVOLVE Studio or use another --data-dir"
    )]
    TooNew {
        found: i64,
        supported: i64,
        path: PathBuf,
    },

    /// Only read-only opens report this: they must not migrate, and the queries expect the latest schema.
    #[error(
        "database {path} has schema version {found}, older than this build expects ({supported}); open it read-write once (any `evolve` command does) to migrate it"
    )]
    TooOld {
        found: i64,
        supported: i64,
        path: PathBuf,
    },

    #[error("{path} is not an EVOLVE Studio database: {reason}")]
    NotADatabase { path: PathBuf, reason: String },

    #[error("migration {version:04}_{name} failed: {source}")]
    Migration {
        version: i64,
        name: &'static str,
        #[source]
        source: rusqlite::Error,
    },

    #[error("{what} {id} not found")]
    NotFound { what: &'static str, id: i64 },

    #[error("invalid request: {0}")]
    Invalid(String),

    #[error("JSON column: {0}")]
    Json(#[from] serde_json::Error),
}

impl StoreError {
    /// The underlying SQLite error, so callers can tell e.g. a CHECK from a FOREIGN KEY violation.
    pub fn sqlite_error(&self) -> Option<&rusqlite::Error> {
        match self {
            StoreError::Sqlite(e)
            | StoreError::Context { source: e, .. }
            | StoreError::Open { source: e, .. }
            | StoreError::Migration { source: e, .. } => Some(e),
            _ => None,
        }
    }

    /// SQLite's extended result code (e.g. `rusqlite::ffi::SQLITE_CONSTRAINT_CHECK`), if any.
    pub fn sqlite_extended_code(&self) -> Option<i32> {
        match self.sqlite_error()? {
            rusqlite::Error::SqliteFailure(e, _) => Some(e.extended_code),
            _ => None,
        }
    }
}

/// Attaches what the store was doing to a raw SQLite error.
pub(crate) trait Context<T> {
    fn context(self, what: impl FnOnce() -> String) -> Result<T, StoreError>;
}

impl<T> Context<T> for Result<T, rusqlite::Error> {
    fn context(self, what: impl FnOnce() -> String) -> Result<T, StoreError> {
        self.map_err(|source| StoreError::Context {
            context: what(),
            source,
        })
    }
}
