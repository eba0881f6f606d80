//! Prompt datasets: a named import with numbered prompts split into train and eval.

use crate::error::Context;
use crate::sql::{json, now_ms, to_json};
use crate::{DatasetId, PromptId, Store, StoreError};
use rusqlite::{OptionalExtension, Row, params};
use serde::Serialize;

#[derive(Debug, Clone, Serialize)]
pub struct Dataset {
    pub id: DatasetId,
    pub name: String,
    pub source_path: Option<String>,
    /// e.g. "jsonl", "csv", "builtin".
    pub format: String,
    pub created_at: i64,
}

#[derive(Debug, Clone, Serialize)]
pub struct NewPrompt {
    /// Position in the source file; with the dataset it identifies the prompt across re-imports.
    pub idx: i64,
    /// "train" or "eval" (enforced by a CHECK).
    pub split: String,
    pub prompt: String,
    /// Gold answer or verifier target.
    pub reference: Option<String>,
    pub metadata: serde_json::Value,
}

#[derive(Debug, Clone, Serialize)]
pub struct Prompt {
    pub id: PromptId,
    pub dataset_id: DatasetId,
    pub idx: i64,
    pub split: String,
    pub prompt: String,
    pub reference: Option<String>,
    pub metadata: serde_json::Value,
}

fn dataset_from_row(row: &Row) -> rusqlite::Result<Dataset> {
    Ok(Dataset {
        id: row.get("id")?,
        name: row.get("name")?,
        source_path: row.get("source_path")?,
        format: row.get("format")?,
        created_at: row.get("created_at")?,
    })
}

fn prompt_from_row(row: &Row) -> rusqlite::Result<Prompt> {
    Ok(Prompt {
        id: row.get("id")?,
        dataset_id: row.get("dataset_id")?,
        idx: row.get("idx")?,
        split: row.get("split")?,
        prompt: row.get("prompt")?,
        reference: row.get("reference")?,
        metadata: json(row, "metadata_json")?,
    })
}

/// Prompts written per transaction by [`Store::add_prompts`].
const PROMPTS_PER_COMMIT: usize = 1_000;

impl Store {
    /// Creates a dataset; names are unique, so importing under a taken name fails.
    pub fn create_dataset(
        &self,
        name: &str,
        source_path: Option<&str>,
        format: &str,
    ) -> Result<DatasetId, StoreError> {
        self.conn
            .execute(
                "INSERT INTO datasets (name, source_path, format, created_at) VALUES (?1, ?2, ?3, ?4)",
                params![name, source_path, format, now_ms()],
            )
            .context(|| format!("creating dataset '{name}'"))?;
        Ok(DatasetId(self.conn.last_insert_rowid()))
    }

    /// Creates a dataset and its prompts in one transaction: a crash leaves either all of it
    /// or nothing under `name`.
    pub fn create_dataset_with_prompts(
        &self,
        name: &str,
        source_path: Option<&str>,
        format: &str,
        prompts: &[NewPrompt],
    ) -> Result<DatasetId, StoreError> {
        let tx = self.write_tx()?;
        tx.execute(
            "INSERT INTO datasets (name, source_path, format, created_at) VALUES (?1, ?2, ?3, ?4)",
            params![name, source_path, format, now_ms()],
        )
        .context(|| format!("creating dataset '{name}'"))?;
        let dataset = DatasetId(tx.last_insert_rowid());
        {
            let mut stmt = tx.prepare(
                "INSERT INTO prompts (dataset_id, idx, split, prompt, reference, metadata_json)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
            )?;
            for p in prompts {
                stmt.execute(params![
                    dataset,
                    p.idx,
                    p.split,
                    p.prompt,
                    p.reference,
                    to_json(&p.metadata)?
                ])
                .context(|| format!("adding prompt {} to dataset {dataset}", p.idx))?;
            }
        }
        tx.commit()?;
        Ok(dataset)
    }

    pub fn get_dataset(&self, id: DatasetId) -> Result<Option<Dataset>, StoreError> {
        Ok(self
            .conn
            .query_row(
                "SELECT * FROM datasets WHERE id = ?1",
                [id],
                dataset_from_row,
            )
            .optional()?)
    }

    pub fn dataset_by_name(&self, name: &str) -> Result<Option<Dataset>, StoreError> {
        Ok(self
            .conn
            .query_row(
                "SELECT * FROM datasets WHERE name = ?1",
                [name],
                dataset_from_row,
            )
            .optional()?)
    }

    pub fn list_datasets(&self) -> Result<Vec<Dataset>, StoreError> {
        self.query_list("SELECT * FROM datasets ORDER BY id", [], dataset_from_row)
    }

    /// Adds prompts in one transaction (all or none); prompts whose `idx` is already present
    /// are skipped, so a resumed import does not duplicate. Returns how many were inserted.
    pub fn add_prompts(
        &self,
        dataset: DatasetId,
        prompts: &[NewPrompt],
    ) -> Result<usize, StoreError> {
        let mut inserted = 0;
        // Committed in slices, so a million-line import never holds the write lock longer than
        // one slice (other connections wait milliseconds, not the whole import). Lines already
        // stored are skipped, so importing again after a crash completes the dataset.
        for slice in prompts.chunks(PROMPTS_PER_COMMIT) {
            let tx = self.write_tx()?;
            {
                let mut stmt = tx.prepare_cached(
                    "INSERT INTO prompts (dataset_id, idx, split, prompt, reference, metadata_json)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6)
                     ON CONFLICT (dataset_id, idx) DO NOTHING",
                )?;
                for p in slice {
                    let metadata = to_json(&p.metadata)?;
                    inserted += stmt
                        .execute(params![
                            dataset,
                            p.idx,
                            p.split,
                            p.prompt,
                            p.reference,
                            metadata
                        ])
                        .context(|| format!("adding prompt {} to dataset {dataset}", p.idx))?;
                }
            }
            tx.commit()?;
            // A moment without the lock, for writers waiting on other connections.
            std::thread::sleep(std::time::Duration::from_millis(1));
        }
        Ok(inserted)
    }

    pub fn get_prompt(&self, id: PromptId) -> Result<Option<Prompt>, StoreError> {
        Ok(self
            .conn
            .query_row("SELECT * FROM prompts WHERE id = ?1", [id], prompt_from_row)
            .optional()?)
    }

    /// Prompts of a dataset in source order, optionally only one split ("train" / "eval").
    pub fn list_prompts(
        &self,
        dataset: DatasetId,
        split: Option<&str>,
    ) -> Result<Vec<Prompt>, StoreError> {
        self.query_list("SELECT * FROM prompts WHERE dataset_id = ?1 AND (?2 IS NULL OR split = ?2) ORDER BY idx", params![dataset, split], prompt_from_row)
    }
}
