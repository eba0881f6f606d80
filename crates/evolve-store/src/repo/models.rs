//! Base models (GGUF files) known to the app, identified by content hash and location.

use crate::error::Context;
use crate::sql::{json, now_ms, to_json};
use crate::{ModelId, Store, StoreError};
use evolve_core::PromptFormat;
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
    /// How conversations are formatted for it: the user's choice, else the default for the
    /// file ([`PromptFormat::default_for`]).
    #[ts(type = "string")]
    pub prompt_format: PromptFormat,
    /// Whether the user chose `prompt_format` (schema v9).
    pub prompt_format_chosen: bool,
}

const COLUMNS: &str = "id, path, sha256, file_size, architecture, name, parameter_count, context_length, \
                       quantization, metadata_json, display_name, added_at, prompt_format";

fn model_from_row(row: &Row) -> rusqlite::Result<Model> {
    let chosen: Option<String> = row.get("prompt_format")?;
    let chosen = chosen
        .map(|f| {
            f.parse::<PromptFormat>().map_err(|e| {
                rusqlite::Error::FromSqlConversionFailure(0, rusqlite::types::Type::Text, e.into())
            })
        })
        .transpose()?;
    let mut model = Model {
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
        prompt_format_chosen: chosen.is_some(),
        prompt_format: PromptFormat::Plain,
    };
    model.prompt_format = chosen.unwrap_or_else(|| default_format(&model));
    Ok(model)
}

/// The format a registered model gets unless one is chosen, from what was read at
/// registration: whether the file has a template (`chat_template` of the stored summary), its
/// architecture, `general.name` and file name (as the engine decides from the file).
fn default_format(m: &Model) -> PromptFormat {
    let file_name = std::path::Path::new(&m.path)
        .file_name()
        .map(|n| n.to_string_lossy().into_owned());
    let names: Vec<&str> = [m.name.as_deref(), file_name.as_deref()]
        .into_iter()
        .flatten()
        .collect();
    PromptFormat::default_for(
        m.metadata["chat_template"].is_string(),
        m.architecture.as_deref().unwrap_or_default(),
        &names,
    )
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

    /// Chooses the model's prompt format (`None`: back to the default for its file).
    pub fn set_model_prompt_format(
        &self,
        id: ModelId,
        format: Option<&PromptFormat>,
    ) -> Result<(), StoreError> {
        let changed = self.conn.execute(
            "UPDATE models SET prompt_format = ?2 WHERE id = ?1",
            params![id, format.map(PromptFormat::to_string)],
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
