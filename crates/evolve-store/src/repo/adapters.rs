//! Exported LoRA adapters, tied to the exact base model file they were trained on.

use crate::error::Context;
use crate::sql::{kind, now_ms};
use crate::{AdapterId, ModelId, Store, StoreError, TrainingRunId};
use evolve_core::AdapterFormat;
use rusqlite::{OptionalExtension, Row, params};
use serde::Serialize;

#[derive(Debug, Clone, Serialize)]
pub struct NewAdapter {
    pub training_run_id: Option<TrainingRunId>,
    pub base_model_id: ModelId,
    /// The base file's hash at training time, checked before the adapter is applied.
    pub base_sha256: String,
    pub format: AdapterFormat,
    pub path: String,
    pub sha256: String,
    pub file_size: i64,
    pub rank: i64,
    pub alpha: f64,
}

#[derive(Debug, Clone, Serialize)]
pub struct Adapter {
    pub id: AdapterId,
    pub training_run_id: Option<TrainingRunId>,
    pub base_model_id: ModelId,
    pub base_sha256: String,
    pub format: AdapterFormat,
    pub path: String,
    pub sha256: String,
    pub file_size: i64,
    pub rank: i64,
    pub alpha: f64,
    pub created_at: i64,
}

fn adapter_from_row(row: &Row) -> rusqlite::Result<Adapter> {
    Ok(Adapter {
        id: row.get("id")?,
        training_run_id: row.get("training_run_id")?,
        base_model_id: row.get("base_model_id")?,
        base_sha256: row.get("base_sha256")?,
        format: kind(row, "format")?,
        path: row.get("path")?,
        sha256: row.get("sha256")?,
        file_size: row.get("file_size")?,
        rank: row.get("rank")?,
        alpha: row.get("alpha")?,
        created_at: row.get("created_at")?,
    })
}

impl Store {
    /// Registers an exported adapter; the same (path, sha256) again returns the existing id,
    /// so a re-run export step does not duplicate it.
    pub fn add_adapter(&self, adapter: &NewAdapter) -> Result<AdapterId, StoreError> {
        self.conn
            .execute(
                "INSERT INTO adapters (training_run_id, base_model_id, base_sha256, format, path, sha256, file_size,
                                       rank, alpha, created_at)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)
                 ON CONFLICT (path, sha256) DO NOTHING",
                params![
                    adapter.training_run_id,
                    adapter.base_model_id,
                    adapter.base_sha256,
                    adapter.format.as_str(),
                    adapter.path,
                    adapter.sha256,
                    adapter.file_size,
                    adapter.rank,
                    adapter.alpha,
                    now_ms()
                ],
            )
            .context(|| format!("adding adapter {}", adapter.path))?;
        Ok(self.conn.query_row(
            "SELECT id FROM adapters WHERE path = ?1 AND sha256 = ?2",
            params![adapter.path, adapter.sha256],
            |row| row.get(0),
        )?)
    }

    pub fn get_adapter(&self, id: AdapterId) -> Result<Option<Adapter>, StoreError> {
        Ok(self
            .conn
            .query_row(
                "SELECT * FROM adapters WHERE id = ?1",
                [id],
                adapter_from_row,
            )
            .optional()?)
    }

    /// Adapters trained on `model`, oldest first.
    pub fn adapters_of_model(&self, model: ModelId) -> Result<Vec<Adapter>, StoreError> {
        self.query_list(
            "SELECT * FROM adapters WHERE base_model_id = ?1 ORDER BY id",
            [model],
            adapter_from_row,
        )
    }

    pub fn list_adapters(&self) -> Result<Vec<Adapter>, StoreError> {
        self.query_list("SELECT * FROM adapters ORDER BY id", [], adapter_from_row)
    }
}
