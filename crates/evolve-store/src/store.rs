//! The database connection: opening (creating, migrating, or read-only), the busy handler,
//! transactions and the table counts. The typed queries are `impl Store` blocks in `repo/`.

use crate::{LATEST_VERSION, StoreError, migrate};
use rusqlite::{Connection, OpenFlags, TransactionBehavior};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// How long a statement waits for another connection's write lock before failing with
/// SQLITE_BUSY. No transaction holds the lock anywhere near this long: the largest writes (a
/// dataset import) commit in slices of milliseconds.
const BUSY_TIMEOUT: Duration = Duration::from_secs(30);

/// SQLite's busy handler: retry every millisecond until [`BUSY_TIMEOUT`]. SQLite's own backs off
/// to 100 ms between tries, which keeps missing the short gaps a sliced import leaves between its
/// commits (measured: one small write waited 730 ms behind a 1.4 s import).
fn wait_for_lock(attempt: i32) -> bool {
    std::thread::sleep(Duration::from_millis(1));
    (attempt as u128) < BUSY_TIMEOUT.as_millis()
}

/// An open EVOLVE Studio database.
#[derive(Debug)]
pub struct Store {
    pub(crate) conn: Connection,
    path: PathBuf,
}

impl Store {
    /// Opens (creating the file, not its parent directory, if needed) and migrates to [`LATEST_VERSION`].
    pub fn open(path: &Path) -> Result<Store, StoreError> {
        Self::open_at_version(path, LATEST_VERSION)
    }

    /// For tests and tooling: migrates only up to `target`, e.g. to build a v1 database and
    /// check that a later build upgrades it. A database already past `target` is left as is.
    pub fn open_at_version(path: &Path, target: i64) -> Result<Store, StoreError> {
        if !(0..=LATEST_VERSION).contains(&target) {
            return Err(StoreError::Invalid(format!(
                "schema version {target} is not in 0..={LATEST_VERSION}"
            )));
        }
        let flags = OpenFlags::SQLITE_OPEN_READ_WRITE
            | OpenFlags::SQLITE_OPEN_CREATE
            | OpenFlags::SQLITE_OPEN_NO_MUTEX;
        let conn = Connection::open_with_flags(path, flags).map_err(|source| StoreError::Open {
            path: path.to_path_buf(),
            source,
        })?;
        let mut store = Store {
            conn,
            path: path.to_path_buf(),
        };
        store.conn.busy_handler(Some(wait_for_lock))?;
        // Checked before anything writes (even the journal-mode switch touches the header),
        // so a file we refuse is left byte-for-byte untouched.
        store.check_is_ours()?;
        store
            .conn
            .pragma_update_and_check(None, "journal_mode", "WAL", |_| Ok(()))?;
        store.configure()?;
        migrate::migrate_to(&store.conn, target)?;
        Ok(store)
    }

    /// Opens an existing database read-only and never migrates: for monitors that watch a run
    /// while the engine writes. Refuses files of another schema version than this build's.
    pub fn open_readonly(path: &Path) -> Result<Store, StoreError> {
        if !path.is_file() {
            return Err(StoreError::Missing {
                path: path.to_path_buf(),
            });
        }
        let flags = OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX;
        let conn = Connection::open_with_flags(path, flags).map_err(|source| StoreError::Open {
            path: path.to_path_buf(),
            source,
        })?;
        let mut store = Store {
            conn,
            path: path.to_path_buf(),
        };
        store.conn.busy_handler(Some(wait_for_lock))?;
        let found = store.check_is_ours()?;
        if found < LATEST_VERSION {
            return Err(StoreError::TooOld {
                found,
                supported: LATEST_VERSION,
                path: path.to_path_buf(),
            });
        }
        Ok(store)
    }

    /// A private, migrated in-memory database for quick tests.
    pub fn open_in_memory() -> Result<Store, StoreError> {
        let store = Store {
            conn: Connection::open_in_memory()?,
            path: PathBuf::from(":memory:"),
        };
        store.configure()?;
        migrate::migrate_to(&store.conn, LATEST_VERSION)?;
        Ok(store)
    }

    fn configure(&self) -> Result<(), StoreError> {
        self.conn.pragma_update(None, "foreign_keys", true)?;
        self.conn.pragma_update(None, "synchronous", "NORMAL")?;
        Ok(())
    }

    /// Reads the schema version, turning "not SQLite", "someone else's SQLite" and "too new"
    /// into errors that name the file, and returns the version.
    fn check_is_ours(&self) -> Result<i64, StoreError> {
        let not_ours = |reason: String| StoreError::NotADatabase {
            path: self.path.clone(),
            reason,
        };
        let found = match migrate::user_version(&self.conn) {
            Ok(v) => v,
            Err(StoreError::Sqlite(e))
                if e.sqlite_error_code() == Some(rusqlite::ErrorCode::NotADatabase) =>
            {
                return Err(not_ours(e.to_string()));
            }
            Err(e) => return Err(e),
        };
        if found > LATEST_VERSION {
            return Err(StoreError::TooNew {
                found,
                supported: LATEST_VERSION,
                path: self.path.clone(),
            });
        }
        if found == 0 {
            // Version 0 with tables means another application's database, not a fresh file.
            let tables: i64 = self.conn.query_row(
                "SELECT count(*) FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%'",
                [],
                |row| row.get(0),
            )?;
            if tables > 0 {
                return Err(not_ours(format!(
                    "it has {tables} tables but no EVOLVE schema version"
                )));
            }
        }
        Ok(found)
    }

    /// The schema version of the open database.
    pub fn schema_version(&self) -> Result<i64, StoreError> {
        migrate::user_version(&self.conn)
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The raw connection, for tests and queries the typed API does not cover.
    pub fn conn(&self) -> &Connection {
        &self.conn
    }

    /// Runs a query and maps every row; the statement is cached, since list queries repeat
    /// (monitors poll them).
    pub(crate) fn query_list<T>(
        &self,
        sql: &str,
        params: impl rusqlite::Params,
        map: impl FnMut(&rusqlite::Row<'_>) -> rusqlite::Result<T>,
    ) -> Result<Vec<T>, StoreError> {
        let mut stmt = self.conn.prepare_cached(sql)?;
        let rows = stmt.query_map(params, map)?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// Runs `f` in one `BEGIN IMMEDIATE` transaction: committed if `f` returns `Ok`, rolled back
    /// otherwise. Immediate, because a deferred read-then-write can fail with SQLITE_BUSY
    /// without waiting when another connection commits in between.
    pub fn transaction<T>(
        &mut self,
        f: impl FnOnce(&rusqlite::Transaction) -> Result<T, StoreError>,
    ) -> Result<T, StoreError> {
        let tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)?;
        let value = f(&tx)?;
        tx.commit()?;
        Ok(value)
    }

    /// Rows per table (every table in the schema), e.g. for `evolve db status` and resume checks.
    pub fn counts(&self) -> Result<BTreeMap<String, i64>, StoreError> {
        let mut stmt = self.conn.prepare(
            "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%' ORDER BY name",
        )?;
        let tables = stmt
            .query_map([], |row| row.get::<_, String>(0))?
            .collect::<Result<Vec<_>, _>>()?;
        let mut counts = BTreeMap::new();
        for table in tables {
            let quoted = format!("\"{}\"", table.replace('"', "\"\""));
            let n: i64 =
                self.conn
                    .query_row(&format!("SELECT count(*) FROM {quoted}"), [], |row| {
                        row.get(0)
                    })?;
            counts.insert(table, n);
        }
        Ok(counts)
    }

    /// A transaction usable from `&self` methods that write several rows atomically.
    pub(crate) fn write_tx(&self) -> Result<rusqlite::Transaction<'_>, StoreError> {
        Ok(rusqlite::Transaction::new_unchecked(
            &self.conn,
            TransactionBehavior::Immediate,
        )?)
    }
}
