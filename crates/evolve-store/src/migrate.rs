//! Forward-only schema migrations embedded from `migrations/NNNN_name.sql`.
//!
//! The schema version lives in `PRAGMA user_version`, and each migration sets it inside its own
//! `BEGIN IMMEDIATE` transaction: a process killed mid-migration leaves the previous version
//! intact, and two processes opening the same file cannot both apply the same step.

use crate::StoreError;
use rusqlite::Connection;

/// One embedded migration file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Migration {
    /// The `NNNN` prefix of the file name; the schema version after applying it.
    pub version: i64,
    /// The file name between the prefix and `.sql`.
    pub name: &'static str,
    pub sql: &'static str,
}

include!(concat!(env!("OUT_DIR"), "/migrations.rs"));

/// The database's schema version (`PRAGMA user_version`); 0 for a new, empty file.
pub fn user_version(conn: &Connection) -> Result<i64, StoreError> {
    Ok(conn.pragma_query_value(None, "user_version", |row| row.get(0))?)
}

/// Migrations not yet applied to `conn`, oldest first.
pub fn pending(conn: &Connection) -> Result<Vec<&'static Migration>, StoreError> {
    let current = user_version(conn)?;
    Ok(MIGRATIONS.iter().filter(|m| m.version > current).collect())
}

/// Applies pending migrations up to and including `target`; returns the versions applied.
pub(crate) fn migrate_to(conn: &Connection, target: i64) -> Result<Vec<i64>, StoreError> {
    // Looking before locking keeps opening an up-to-date database free of write locks, so it
    // never waits on another process's long transaction.
    let current = user_version(conn)?;
    let mut applied = Vec::new();
    for migration in MIGRATIONS
        .iter()
        .filter(|m| m.version > current && m.version <= target)
    {
        if apply(conn, migration)? {
            applied.push(migration.version);
        }
    }
    Ok(applied)
}

/// Applies one migration unless another connection already did; `true` if this call applied it.
fn apply(conn: &Connection, migration: &Migration) -> Result<bool, StoreError> {
    let fail = |source| StoreError::Migration {
        version: migration.version,
        name: migration.name,
        source,
    };
    conn.execute_batch("BEGIN IMMEDIATE").map_err(fail)?;
    let result = (|| {
        // Re-read under the write lock: another process may have migrated since we looked.
        let current = user_version(conn)?;
        if current >= migration.version {
            return Ok(false);
        }
        if current != migration.version - 1 {
            return Err(StoreError::Invalid(format!(
                "cannot apply migration {:04}_{} to a database at version {current}",
                migration.version, migration.name
            )));
        }
        conn.execute_batch(migration.sql).map_err(fail)?;
        conn.pragma_update(None, "user_version", migration.version)
            .map_err(fail)?;
        Ok(true)
    })();
    match result {
        Ok(applied) => {
            conn.execute_batch("COMMIT").map_err(fail)?;
            Ok(applied)
        }
        Err(err) => {
            // The original error matters more than a failed rollback (which SQLite may already have done).
            let _ = conn.execute_batch("ROLLBACK");
            Err(err)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_are_contiguous_from_one_and_latest_is_the_last() {
        for (i, m) in MIGRATIONS.iter().enumerate() {
            assert_eq!(m.version, i as i64 + 1, "{}", m.name);
            assert!(!m.sql.trim().is_empty(), "{} is empty", m.name);
        }
        assert_eq!(MIGRATIONS.last().unwrap().version, LATEST_VERSION);
    }

    #[test]
    fn pending_shrinks_as_migrations_apply() {
        let conn = Connection::open_in_memory().unwrap();
        assert_eq!(pending(&conn).unwrap().len(), MIGRATIONS.len());
        assert_eq!(migrate_to(&conn, 1).unwrap(), vec![1]);
        assert_eq!(user_version(&conn).unwrap(), 1);
        assert_eq!(pending(&conn).unwrap().first().map(|m| m.version), Some(2));
        assert_eq!(
            migrate_to(&conn, LATEST_VERSION).unwrap().len(),
            MIGRATIONS.len() - 1
        );
        assert!(pending(&conn).unwrap().is_empty());
        assert!(
            migrate_to(&conn, LATEST_VERSION).unwrap().is_empty(),
            "re-running is a no-op"
        );
    }

    #[test]
    fn a_failing_migration_rolls_back_entirely() {
        let conn = Connection::open_in_memory().unwrap();
        let broken = Migration {
            version: 1,
            name: "broken",
            sql: "CREATE TABLE t (x); INSERT INTO nope VALUES (1);",
        };
        let err = apply(&conn, &broken).unwrap_err();
        assert!(
            err.to_string().starts_with("migration 0001_broken failed"),
            "{err}"
        );
        assert_eq!(user_version(&conn).unwrap(), 0);
        let tables: i64 = conn
            .query_row(
                "SELECT count(*) FROM sqlite_master WHERE name = 't'",
                [],
                |r| r.get(0),
            )
            .unwrap();
        assert_eq!(
            tables, 0,
            "the table created before the failure must be rolled back"
        );
    }
}
