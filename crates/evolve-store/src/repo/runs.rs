//! Runs (one model improving on one dataset) and their numbered rounds with a persisted state machine.

use crate::error::Context;
use crate::sql::{json, kind, now_ms, to_json};
use crate::{AdapterId, DatasetId, ModelId, RoundId, RunId, Store, StoreError};
use evolve_core::{RoundState, RunState};
use rusqlite::{OptionalExtension, Row, params};
use serde::Serialize;

#[derive(Debug, Clone, Serialize)]
pub struct NewRun {
    pub name: String,
    pub model_id: ModelId,
    pub dataset_id: DatasetId,
    /// The full run configuration, stored so a resumed run uses exactly the same settings.
    pub config: serde_json::Value,
}

#[derive(Debug, Clone, Serialize)]
pub struct Run {
    pub id: RunId,
    pub name: String,
    pub model_id: ModelId,
    pub dataset_id: DatasetId,
    pub config: serde_json::Value,
    pub state: RunState,
    pub created_at: i64,
    pub updated_at: i64,
}

#[derive(Debug, Clone, Serialize)]
pub struct Round {
    pub id: RoundId,
    pub run_id: RunId,
    pub round_index: i64,
    pub state: RoundState,
    /// The adapter sampled with in this round (`None`: the base model).
    pub adapter_id: Option<AdapterId>,
    pub started_at: Option<i64>,
    pub finished_at: Option<i64>,
    pub error: Option<String>,
    /// Why a round that finished did less than asked (e.g. made no pairs).
    pub note: Option<String>,
}

fn run_from_row(row: &Row) -> rusqlite::Result<Run> {
    Ok(Run {
        id: row.get("id")?,
        name: row.get("name")?,
        model_id: row.get("model_id")?,
        dataset_id: row.get("dataset_id")?,
        config: json(row, "config_json")?,
        state: kind(row, "state")?,
        created_at: row.get("created_at")?,
        updated_at: row.get("updated_at")?,
    })
}

fn round_from_row(row: &Row) -> rusqlite::Result<Round> {
    Ok(Round {
        id: row.get("id")?,
        run_id: row.get("run_id")?,
        round_index: row.get("round_index")?,
        state: kind(row, "state")?,
        adapter_id: row.get("adapter_id")?,
        started_at: row.get("started_at")?,
        finished_at: row.get("finished_at")?,
        error: row.get("error")?,
        note: row.get("note")?,
    })
}

impl Store {
    pub fn create_run(&self, run: &NewRun) -> Result<RunId, StoreError> {
        let now = now_ms();
        self.conn
            .execute(
                "INSERT INTO runs (name, model_id, dataset_id, config_json, state, created_at, updated_at)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?6)",
                params![run.name, run.model_id, run.dataset_id, to_json(&run.config)?, RunState::Created.as_str(), now],
            )
            .context(|| format!("creating run '{}'", run.name))?;
        Ok(RunId(self.conn.last_insert_rowid()))
    }

    pub fn get_run(&self, id: RunId) -> Result<Option<Run>, StoreError> {
        Ok(self
            .conn
            .query_row("SELECT * FROM runs WHERE id = ?1", [id], run_from_row)
            .optional()?)
    }

    pub fn list_runs(&self) -> Result<Vec<Run>, StoreError> {
        self.query_list("SELECT * FROM runs ORDER BY id", [], run_from_row)
    }

    pub fn set_run_state(&self, id: RunId, state: RunState) -> Result<(), StoreError> {
        let changed = self.conn.execute(
            "UPDATE runs SET state = ?2, updated_at = ?3 WHERE id = ?1",
            params![id, state.as_str(), now_ms()],
        )?;
        super::one_row_changed(changed, "run", id.0)
    }

    /// Creates round `index` of a run, or returns the existing one: a resumed run calls this
    /// again for the round it was in.
    pub fn create_round(&self, run: RunId, index: i64) -> Result<RoundId, StoreError> {
        self.conn
            .execute(
                "INSERT INTO rounds (run_id, round_index, state) VALUES (?1, ?2, ?3)
                 ON CONFLICT (run_id, round_index) DO NOTHING",
                params![run, index, RoundState::Pending.as_str()],
            )
            .context(|| format!("creating round {index} of run {run}"))?;
        Ok(self.conn.query_row(
            "SELECT id FROM rounds WHERE run_id = ?1 AND round_index = ?2",
            params![run, index],
            |row| row.get(0),
        )?)
    }

    pub fn get_round(&self, id: RoundId) -> Result<Option<Round>, StoreError> {
        Ok(self
            .conn
            .query_row("SELECT * FROM rounds WHERE id = ?1", [id], round_from_row)
            .optional()?)
    }

    pub fn rounds_of_run(&self, run: RunId) -> Result<Vec<Round>, StoreError> {
        self.query_list(
            "SELECT * FROM rounds WHERE run_id = ?1 ORDER BY round_index",
            [run],
            round_from_row,
        )
    }

    /// Moves a round to `state` and records `error` (`None` clears it). The first move out of
    /// `pending` stamps `started_at`; `done` and `failed` stamp `finished_at`.
    pub fn set_round_state(
        &self,
        id: RoundId,
        state: RoundState,
        error: Option<&str>,
    ) -> Result<(), StoreError> {
        let now = now_ms();
        let finished = matches!(state, RoundState::Done | RoundState::Failed).then_some(now);
        let changed = self.conn.execute(
            "UPDATE rounds SET state = ?2, error = ?3,
                    started_at = CASE WHEN started_at IS NULL AND ?2 != 'pending' THEN ?4 ELSE started_at END,
                    finished_at = ?5
             WHERE id = ?1",
            params![id, state.as_str(), error, now, finished],
        )?;
        super::one_row_changed(changed, "round", id.0)
    }

    /// Sets (or with `None` clears) the round's note.
    pub fn set_round_note(&self, id: RoundId, note: Option<&str>) -> Result<(), StoreError> {
        let changed = self.conn.execute(
            "UPDATE rounds SET note = ?2 WHERE id = ?1",
            params![id, note],
        )?;
        super::one_row_changed(changed, "round", id.0)
    }

    /// Records which adapter this round samples with.
    pub fn set_round_adapter(
        &self,
        id: RoundId,
        adapter: Option<AdapterId>,
    ) -> Result<(), StoreError> {
        let changed = self.conn.execute(
            "UPDATE rounds SET adapter_id = ?2 WHERE id = ?1",
            params![id, adapter],
        )?;
        super::one_row_changed(changed, "round", id.0)
    }
}
