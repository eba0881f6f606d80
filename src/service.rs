//! The one service API that every shell (CLI, Tauri commands, HTTP) calls. No shell holds logic.

use anyhow::Result;
use evolve_core::DataDir;
use evolve_store::Store;

pub struct Service {
    data_dir: DataDir,
    store: Store,
}

impl Service {
    /// Opens (creating and migrating as needed) the database in `data_dir`.
    pub fn open(data_dir: DataDir) -> Result<Self> {
        data_dir.ensure()?;
        let store = Store::open(&data_dir.database())?;
        Ok(Self { data_dir, store })
    }

    pub fn data_dir(&self) -> &DataDir {
        &self.data_dir
    }
    pub fn store(&self) -> &Store {
        &self.store
    }

    /// The database's schema version.
    pub fn schema_version(&self) -> Result<i64> {
        Ok(self.store.schema_version()?)
    }
}

/// An id that names nothing. Shells report it as such (the HTTP API as 404).
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct NotFound(pub String);

/// RFC 3339 (UTC) of a Unix time in milliseconds, as the UI expects dates.
pub fn rfc3339(ms: i64) -> String {
    let secs = ms.div_euclid(1000);
    let (days, rem) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
    // Howard Hinnant's civil_from_days: exact for the proleptic Gregorian calendar.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}
