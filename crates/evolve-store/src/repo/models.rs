//! Base models (GGUF files) known to the app, identified by content hash and location.

use crate::error::Context;
use crate::sql::{json, now_ms, to_json};
use crate::{ModelId, Store, StoreError};
use rusqlite::{OptionalExtension, Row, params};
use serde::Serialize;

#[derive(Debug, Clone, Serialize)]
pub struct NewModel {
    pub path: String,
    pub sha256: String,
    pub file_size: i64,
    pub architecture: Option<String>,
    pub name: Option<String>,
    pub parameter_count: Option<i64>,
    pub context_length: Option<i64>,
    pub quantization: Option<String>,
    /// Selected GGUF metadata, kept for display and debugging.
    pub metadata: serde_json::Value,
}

#[derive(Debug, Clone, Serialize, ts_rs::TS)]
#[ts(export)]
pub struct Model {
    pub id: ModelId,
    pub path: String,
    pub sha256: String,
    pub file_size: i64,
    pub architecture: Option<String>,
    pub name: Option<String>,
    pub parameter_count: Option<i64>,
    pub context_length: Option<i64>,
    pub quantization: Option<String>,
    #[ts(type = "Record<string, unknown>")]
    pub metadata: serde_json::Value,
    /// User-chosen label (schema v3); `None` means show `name` or the file name.
    pub display_name: Option<String>,
    pub added_at: i64,
}

const COLUMNS: &str = "id, path, sha256, file_size, architecture, name, parameter_count, context_length, \
                       quantization, metadata_json, display_name, added_at";

fn model_from_row(row: &Row) -> rusqlite::Result<Model> {
    Ok(Model {
        id: row.get("id")?,
        path: row.get("path")?,
        sha256: row.get("sha256")?,
        file_size: row.get("file_size")?,
        architecture: row.get("architecture")?,
        name: row.get("name")?,
        parameter_count: row.get("parameter_count")?,
        context_length: row.get("context_length")?,
        quantization: row.get("quantization")?,
        metadata: json(row, "metadata_json")?,
        display_name: row.get("display_name")?,
        added_at: row.get("added_at")?,
    })
}

impl Store {
    /// Registers a model file; adding the same (sha256, path) again returns the existing id,
    /// so re-importing is harmless.
    pub fn add_model(&self, model: &NewModel) -> Result<ModelId, StoreError> {
        let metadata = to_json(&model.metadata)?;
        self.conn
            .execute(
                "INSERT INTO models (path, sha256, file_size, architecture, name, parameter_count, context_length,
                                     quantization, metadata_json, added_at)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)
                 ON CONFLICT (sha256, path) DO NOTHING",
                params![
                    model.path,
                    model.sha256,
                    model.file_size,
                    model.architecture,
                    model.name,
                    model.parameter_count,
                    model.context_length,
                    model.quantization,
                    metadata,
                    now_ms()
                ],
            )
            .context(|| format!("adding model {}", model.path))?;
        Ok(self.conn.query_row(
            "SELECT id FROM models WHERE sha256 = ?1 AND path = ?2",
            params![model.sha256, model.path],
            |row| row.get(0),
        )?)
    }

    pub fn get_model(&self, id: ModelId) -> Result<Option<Model>, StoreError> {
        let sql = format!("SELECT {COLUMNS} FROM models WHERE id = ?1");
        Ok(self.conn.query_row(&sql, [id], model_from_row).optional()?)
    }

    /// The most recently added model at `path` (a file replaced in place gets a new row).
    pub fn find_model_by_path(&self, path: &str) -> Result<Option<Model>, StoreError> {
        let sql = format!(
            "SELECT {COLUMNS} FROM models WHERE path = ?1 ORDER BY added_at DESC, id DESC LIMIT 1"
        );
        Ok(self
            .conn
            .query_row(&sql, [path], model_from_row)
            .optional()?)
    }

    pub fn list_models(&self) -> Result<Vec<Model>, StoreError> {
        self.query_list(
            &format!("SELECT {COLUMNS} FROM models ORDER BY id"),
            [],
            model_from_row,
        )
    }

    pub fn set_model_display_name(
        &self,
        id: ModelId,
        display_name: Option<&str>,
    ) -> Result<(), StoreError> {
        let changed = self.conn.execute(
            "UPDATE models SET display_name = ?2 WHERE id = ?1",
            params![id, display_name],
        )?;
        super::one_row_changed(changed, "model", id.0)
    }

    /// Forgets a model. Fails with a foreign-key error while runs, adapters or evaluations use it:
    /// their history must not silently lose its base model.
    pub fn remove_model(&self, id: ModelId) -> Result<(), StoreError> {
        let changed = self
            .conn
            .execute("DELETE FROM models WHERE id = ?1", [id])
            .context(|| {
                format!("removing model {id} (still used by a run, adapter or evaluation?)")
            })?;
        super::one_row_changed(changed, "model", id.0)
    }
}
