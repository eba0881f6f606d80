//! Column conversions shared by the repository modules.

use rusqlite::Row;
use rusqlite::types::Type;
use serde::Serialize;
use serde::de::DeserializeOwned;
use std::str::FromStr;
use std::time::{SystemTime, UNIX_EPOCH};

/// Unix milliseconds, the unit of every timestamp column.
pub(crate) fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

/// Reads a TEXT column holding one of evolve-core's kind names.
pub(crate) fn kind<T>(row: &Row, column: &str) -> rusqlite::Result<T>
where
    T: FromStr,
    T::Err: std::error::Error + Send + Sync + 'static,
{
    let text: String = row.get(column)?;
    text.parse()
        .map_err(|e| conversion_error(row, column, Type::Text, e))
}

/// Reads a TEXT column holding JSON.
pub(crate) fn json<T: DeserializeOwned>(row: &Row, column: &str) -> rusqlite::Result<T> {
    let text: String = row.get(column)?;
    serde_json::from_str(&text).map_err(|e| conversion_error(row, column, Type::Text, e))
}

pub(crate) fn to_json(value: &impl Serialize) -> Result<String, serde_json::Error> {
    serde_json::to_string(value)
}

fn conversion_error(
    row: &Row,
    column: &str,
    ty: Type,
    err: impl std::error::Error + Send + Sync + 'static,
) -> rusqlite::Error {
    let index = row.as_ref().column_index(column).unwrap_or(0);
    rusqlite::Error::FromSqlConversionFailure(index, ty, Box::new(err))
}
