//! Evaluation results: one metric of one model (+ adapter) on one split, per round.

use crate::error::Context;
use crate::sql::{json, now_ms, to_json};
use crate::{AdapterId, EvaluationId, ModelId, RoundId, RunId, Store, StoreError};
use rusqlite::{Row, params};
use serde::Serialize;

#[derive(Debug, Clone, Serialize)]
pub struct NewEvaluation {
    pub round_id: Option<RoundId>,
    /// `None`: the base model without an adapter.
    pub adapter_id: Option<AdapterId>,
    pub model_id: ModelId,
    pub split: String,
    /// e.g. "direct_accuracy", "refined_accuracy@1".
    pub metric: String,
    pub value: f64,
    /// Number of prompts the value is computed over.
    pub n: i64,
    pub details: serde_json::Value,
}

#[derive(Debug, Clone, Serialize)]
pub struct Evaluation {
    pub id: EvaluationId,
    pub round_id: Option<RoundId>,
    pub adapter_id: Option<AdapterId>,
    pub model_id: ModelId,
    pub split: String,
    pub metric: String,
    pub value: f64,
    pub n: i64,
    pub details: serde_json::Value,
    pub created_at: i64,
}

fn evaluation_from_row(row: &Row) -> rusqlite::Result<Evaluation> {
    Ok(Evaluation {
        id: row.get("id")?,
        round_id: row.get("round_id")?,
        adapter_id: row.get("adapter_id")?,
        model_id: row.get("model_id")?,
        split: row.get("split")?,
        metric: row.get("metric")?,
        value: row.get("value")?,
        n: row.get("n")?,
        details: json(row, "details_json")?,
        created_at: row.get("created_at")?,
    })
}

impl Store {
    /// Records an evaluation result, replacing an earlier one for the same (round, adapter,
    /// model, split, metric). Done as update-then-insert with null-safe `IS` matching because
    /// the UNIQUE constraint treats NULL round/adapter ids as distinct, and re-evaluating the
    /// base model (adapter NULL) must not pile up duplicates.
    pub fn add_evaluation(&self, e: &NewEvaluation) -> Result<EvaluationId, StoreError> {
        let details = to_json(&e.details)?;
        let context = || format!("recording evaluation {} of model {}", e.metric, e.model_id);
        let tx = self.write_tx()?;
        let existing: Option<EvaluationId> = {
            let mut stmt = tx.prepare(
                "UPDATE evaluations SET value = ?6, n = ?7, details_json = ?8, created_at = ?9
                 WHERE round_id IS ?1 AND adapter_id IS ?2 AND model_id = ?3 AND split = ?4 AND metric = ?5
                 RETURNING id",
            )?;
            let mut rows = stmt
                .query_map(
                    params![
                        e.round_id,
                        e.adapter_id,
                        e.model_id,
                        e.split,
                        e.metric,
                        e.value,
                        e.n,
                        details,
                        now_ms()
                    ],
                    |row| row.get(0),
                )
                .context(context)?;
            rows.next().transpose().context(context)?
        };
        let id = match existing {
            Some(id) => id,
            None => {
                tx.execute(
                    "INSERT INTO evaluations (round_id, adapter_id, model_id, split, metric, value, n, details_json,
                                              created_at)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
                    params![e.round_id, e.adapter_id, e.model_id, e.split, e.metric, e.value, e.n, details, now_ms()],
                )
                .context(context)?;
                EvaluationId(tx.last_insert_rowid())
            }
        };
        tx.commit()?;
        Ok(id)
    }

    /// Evaluations attached to any round of `run`, by round then metric.
    pub fn evaluations_of_run(&self, run: RunId) -> Result<Vec<Evaluation>, StoreError> {
        self.query_list(
            "SELECT e.* FROM evaluations e JOIN rounds r ON r.id = e.round_id
             WHERE r.run_id = ?1 ORDER BY r.round_index, e.metric, e.id",
            [run],
            evaluation_from_row,
        )
    }
}
