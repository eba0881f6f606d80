//! LoRA-DPO training runs and their per-step metrics (the loss and reward charts read these).

use crate::error::Context;
use crate::sql::{json, kind, now_ms, to_json};
use crate::{RoundId, Store, StoreError, TrainingRunId};
use evolve_core::ParseKindError;
use rusqlite::{OptionalExtension, Row, params};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;

/// Metric names as TRL's DPOTrainer logs them, so charts and exported logs compare directly.
pub const TRL_METRIC_NAMES: &[&str] = &[
    "loss",
    "rewards/chosen",
    "rewards/rejected",
    "rewards/margins",
    "rewards/accuracies",
    "logps/chosen",
    "logps/rejected",
    "grad_norm",
    "learning_rate",
    "tokens_per_second",
];

/// Lifecycle of one training job (evolve-core has no kind for it; it is this table's alone).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TrainingState {
    Pending,
    Running,
    Done,
    Failed,
    Cancelled,
}

impl TrainingState {
    pub const ALL: &'static [TrainingState] = &[
        Self::Pending,
        Self::Running,
        Self::Done,
        Self::Failed,
        Self::Cancelled,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Pending => "pending",
            Self::Running => "running",
            Self::Done => "done",
            Self::Failed => "failed",
            Self::Cancelled => "cancelled",
        }
    }

    pub fn is_finished(self) -> bool {
        matches!(self, Self::Done | Self::Failed | Self::Cancelled)
    }
}

impl fmt::Display for TrainingState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for TrainingState {
    type Err = ParseKindError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::ALL
            .iter()
            .copied()
            .find(|k| k.as_str() == s)
            .ok_or_else(|| ParseKindError {
                what: "training state",
                value: s.to_string(),
                expected: "pending running done failed cancelled",
            })
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct TrainingRun {
    pub id: TrainingRunId,
    pub round_id: Option<RoundId>,
    pub config: serde_json::Value,
    pub state: TrainingState,
    pub started_at: Option<i64>,
    pub finished_at: Option<i64>,
    pub error: Option<String>,
    pub checkpoint_path: Option<String>,
}

/// One logged optimizer step. Non-finite values (a diverged loss) are stored as JSON `null`
/// and read back as NaN, since JSON has no NaN.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct TrainingMetric {
    pub step: i64,
    pub epoch: f64,
    /// Keyed by [`TRL_METRIC_NAMES`] (other names are kept too).
    pub metrics: BTreeMap<String, f64>,
}

fn training_run_from_row(row: &Row) -> rusqlite::Result<TrainingRun> {
    Ok(TrainingRun {
        id: row.get("id")?,
        round_id: row.get("round_id")?,
        config: json(row, "config_json")?,
        state: kind(row, "state")?,
        started_at: row.get("started_at")?,
        finished_at: row.get("finished_at")?,
        error: row.get("error")?,
        checkpoint_path: row.get("checkpoint_path")?,
    })
}

fn metric_from_row(row: &Row) -> rusqlite::Result<TrainingMetric> {
    let stored: BTreeMap<String, Option<f64>> = json(row, "metrics_json")?;
    Ok(TrainingMetric {
        step: row.get("step")?,
        epoch: row.get("epoch")?,
        metrics: stored
            .into_iter()
            .map(|(k, v)| (k, v.unwrap_or(f64::NAN)))
            .collect(),
    })
}

/// A promoted column value: SQLite would store NaN as NULL anyway, so say so explicitly.
fn promoted(metrics: &BTreeMap<String, f64>, name: &str) -> Option<f64> {
    metrics.get(name).copied().filter(|v| v.is_finite())
}

impl Store {
    pub fn create_training_run(
        &self,
        round: Option<RoundId>,
        config: &serde_json::Value,
    ) -> Result<TrainingRunId, StoreError> {
        self.conn
            .execute(
                "INSERT INTO training_runs (round_id, config_json, state) VALUES (?1, ?2, ?3)",
                params![round, to_json(config)?, TrainingState::Pending.as_str()],
            )
            .context(|| "creating training run".to_string())?;
        Ok(TrainingRunId(self.conn.last_insert_rowid()))
    }

    pub fn get_training_run(&self, id: TrainingRunId) -> Result<Option<TrainingRun>, StoreError> {
        Ok(self
            .conn
            .query_row(
                "SELECT * FROM training_runs WHERE id = ?1",
                [id],
                training_run_from_row,
            )
            .optional()?)
    }

    pub fn training_runs_of_round(&self, round: RoundId) -> Result<Vec<TrainingRun>, StoreError> {
        self.query_list(
            "SELECT * FROM training_runs WHERE round_id = ?1 ORDER BY id",
            [round],
            training_run_from_row,
        )
    }

    /// Registers a training's adapter and marks the training done in one transaction: a crash
    /// between the two never leaves a done training without its adapter, or an adapter of a
    /// training that will run again.
    pub fn finish_training(
        &self,
        id: TrainingRunId,
        adapter: &crate::NewAdapter,
    ) -> Result<crate::AdapterId, StoreError> {
        let tx = self.write_tx()?;
        let adapter = self.add_adapter(adapter)?;
        self.set_training_state(id, TrainingState::Done, None)?;
        tx.commit()?;
        Ok(adapter)
    }

    /// Moves a training run to `state`, recording `error` (`None` clears it). `running` stamps
    /// `started_at` once; finished states stamp `finished_at`.
    pub fn set_training_state(
        &self,
        id: TrainingRunId,
        state: TrainingState,
        error: Option<&str>,
    ) -> Result<(), StoreError> {
        let now = now_ms();
        let finished = state.is_finished().then_some(now);
        let changed = self.conn.execute(
            "UPDATE training_runs SET state = ?2, error = ?3,
                    started_at = CASE WHEN started_at IS NULL AND ?2 = 'running' THEN ?4 ELSE started_at END,
                    finished_at = ?5
             WHERE id = ?1",
            params![id, state.as_str(), error, now, finished],
        )?;
        super::one_row_changed(changed, "training run", id.0)
    }

    /// Remembers the latest checkpoint so a killed training run can resume from it.
    pub fn set_checkpoint_path(
        &self,
        id: TrainingRunId,
        path: Option<&str>,
    ) -> Result<(), StoreError> {
        let changed = self.conn.execute(
            "UPDATE training_runs SET checkpoint_path = ?2 WHERE id = ?1",
            params![id, path],
        )?;
        super::one_row_changed(changed, "training run", id.0)
    }

    /// Appends metrics in one transaction, so a reader sees all of a batch or none of it.
    /// A step logged again (after resuming from a checkpoint) replaces the earlier row.
    pub fn append_metrics(
        &self,
        run: TrainingRunId,
        metrics: &[TrainingMetric],
    ) -> Result<(), StoreError> {
        let tx = self.write_tx()?;
        {
            let mut stmt = tx.prepare(
                "INSERT INTO training_metrics (training_run_id, step, epoch, metrics_json, loss, learning_rate, created_at)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)
                 ON CONFLICT (training_run_id, step)
                 DO UPDATE SET epoch = excluded.epoch, metrics_json = excluded.metrics_json, loss = excluded.loss,
                               learning_rate = excluded.learning_rate, created_at = excluded.created_at",
            )?;
            let now = now_ms();
            for m in metrics {
                stmt.execute(params![
                    run,
                    m.step,
                    m.epoch,
                    to_json(&m.metrics)?,
                    promoted(&m.metrics, "loss"),
                    promoted(&m.metrics, "learning_rate"),
                    now
                ])
                .context(|| {
                    format!("appending metrics of step {} to training run {run}", m.step)
                })?;
            }
        }
        tx.commit()?;
        Ok(())
    }

    /// Forgets the logged steps from `from_step` on: a training that resumes from a checkpoint
    /// logs them again, and the steps between that checkpoint and a kill must not linger.
    pub fn truncate_metrics(&self, run: TrainingRunId, from_step: i64) -> Result<(), StoreError> {
        self.conn
            .execute(
                "DELETE FROM training_metrics WHERE training_run_id = ?1 AND step >= ?2",
                params![run, from_step],
            )
            .context(|| format!("truncating metrics of training run {run}"))?;
        Ok(())
    }

    /// Every logged step of a training run, in step order.
    pub fn metrics_of(&self, run: TrainingRunId) -> Result<Vec<TrainingMetric>, StoreError> {
        self.metrics_since(run, i64::MIN)
    }

    /// Steps after `after_step`, for monitors that poll for new points.
    pub fn metrics_since(
        &self,
        run: TrainingRunId,
        after_step: i64,
    ) -> Result<Vec<TrainingMetric>, StoreError> {
        self.query_list(
            "SELECT step, epoch, metrics_json FROM training_metrics
             WHERE training_run_id = ?1 AND step > ?2 ORDER BY step",
            params![run, after_step],
            metric_from_row,
        )
    }
}
