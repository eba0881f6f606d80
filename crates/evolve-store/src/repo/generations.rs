//! Generated answers (samples, refinement steps, chat and evaluation outputs) and their scores.

use crate::error::Context;
use crate::sql::{json, kind, now_ms, to_json};
use crate::{AdapterId, GenerationId, PromptId, RoundId, ScoreId, Store, StoreError};
use evolve_core::{GenerationKind, SamplerConfig};
use rusqlite::{OptionalExtension, Row, params};
use serde::Serialize;

#[derive(Debug, Clone, Serialize)]
pub struct NewGeneration {
    pub round_id: Option<RoundId>,
    pub prompt_id: Option<PromptId>,
    pub kind: GenerationKind,
    /// The generation this one refines (`None` for an initial answer).
    pub parent_id: Option<GenerationId>,
    /// 0 = initial answer, k = k-th refinement.
    pub step_index: i64,
    pub sample_index: i64,
    pub text: String,
    pub token_count: i64,
    /// The sampled token ids, when the engine reported them.
    pub token_ids: Option<Vec<i32>>,
    /// False when `max_tokens` cut the answer: it is not trained as a finished one.
    pub finished: bool,
    pub seed: i64,
    pub sampler: SamplerConfig,
    /// The exact formatted model input.
    pub prompt_text: String,
    pub adapter_id: Option<AdapterId>,
    pub duration_ms: i64,
}

impl NewGeneration {
    /// A row for `completion`, sampled from `prompt_text` with `sampler`, outside any round;
    /// callers set the round, prompt, parent, step, sample and adapter where they apply.
    pub fn from_completion(
        kind: GenerationKind,
        completion: &evolve_core::Completion,
        prompt_text: String,
        sampler: SamplerConfig,
    ) -> Self {
        NewGeneration {
            round_id: None,
            prompt_id: None,
            kind,
            parent_id: None,
            step_index: 0,
            sample_index: 0,
            text: completion.text.clone(),
            token_count: completion.tokens.len() as i64,
            token_ids: (!completion.tokens.is_empty()).then(|| completion.tokens.clone()),
            finished: completion.stopped,
            seed: i64::from(completion.seed),
            sampler,
            prompt_text,
            adapter_id: None,
            duration_ms: completion.duration_ms as i64,
        }
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct Generation {
    pub id: GenerationId,
    pub round_id: Option<RoundId>,
    pub prompt_id: Option<PromptId>,
    pub kind: GenerationKind,
    pub parent_id: Option<GenerationId>,
    pub step_index: i64,
    pub sample_index: i64,
    pub text: String,
    pub token_count: i64,
    /// The sampled token ids (`None` for rows from before they were stored).
    pub token_ids: Option<Vec<i32>>,
    pub finished: bool,
    pub seed: i64,
    pub sampler: SamplerConfig,
    pub prompt_text: String,
    pub adapter_id: Option<AdapterId>,
    pub duration_ms: i64,
    pub created_at: i64,
}

#[derive(Debug, Clone, Serialize)]
pub struct Score {
    pub id: ScoreId,
    pub generation_id: GenerationId,
    /// Which scorer produced it, e.g. "exact_match" or "judge:qwen".
    pub scorer: String,
    pub value: f64,
    pub details: serde_json::Value,
    pub created_at: i64,
}

fn generation_from_row(row: &Row) -> rusqlite::Result<Generation> {
    Ok(Generation {
        id: row.get("id")?,
        round_id: row.get("round_id")?,
        prompt_id: row.get("prompt_id")?,
        kind: kind(row, "kind")?,
        parent_id: row.get("parent_id")?,
        step_index: row.get("step_index")?,
        sample_index: row.get("sample_index")?,
        text: row.get("text")?,
        token_count: row.get("token_count")?,
        token_ids: row
            .get::<_, Option<Vec<u8>>>("token_ids")?
            .map(|b| ids_from_blob(&b)),
        finished: row.get("finished")?,
        seed: row.get("seed")?,
        sampler: json(row, "sampler_json")?,
        prompt_text: row.get("prompt_text")?,
        adapter_id: row.get("adapter_id")?,
        duration_ms: row.get("duration_ms")?,
        created_at: row.get("created_at")?,
    })
}

/// Token ids as stored: consecutive little-endian i32s.
fn ids_to_blob(ids: &[i32]) -> Vec<u8> {
    ids.iter().flat_map(|t| t.to_le_bytes()).collect()
}

fn ids_from_blob(bytes: &[u8]) -> Vec<i32> {
    bytes
        .chunks_exact(4)
        .map(|c| i32::from_le_bytes([c[0], c[1], c[2], c[3]]))
        .collect()
}

fn score_from_row(row: &Row) -> rusqlite::Result<Score> {
    Ok(Score {
        id: row.get("id")?,
        generation_id: row.get("generation_id")?,
        scorer: row.get("scorer")?,
        value: row.get("value")?,
        details: json(row, "details_json")?,
        created_at: row.get("created_at")?,
    })
}

impl Store {
    /// Inserts a generation, or returns the id of the one already stored under the same
    /// (round, prompt, sample_index, step_index): re-running an interrupted step keeps the
    /// first result instead of duplicating it. Generations without a round are always new.
    pub fn insert_generation(&self, g: &NewGeneration) -> Result<GenerationId, StoreError> {
        let sampler = to_json(&g.sampler)?;
        let inserted = self
            .conn
            .query_row(
                "INSERT INTO generations (round_id, prompt_id, kind, parent_id, step_index, sample_index, text,
                                          token_count, seed, sampler_json, prompt_text, adapter_id, duration_ms,
                                          created_at, finished, token_ids)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16)
                 ON CONFLICT (round_id, prompt_id, sample_index, step_index) DO NOTHING
                 RETURNING id",
                params![
                    g.round_id,
                    g.prompt_id,
                    g.kind.as_str(),
                    g.parent_id,
                    g.step_index,
                    g.sample_index,
                    g.text,
                    g.token_count,
                    g.seed,
                    sampler,
                    g.prompt_text,
                    g.adapter_id,
                    g.duration_ms,
                    now_ms(),
                    g.finished,
                    g.token_ids.as_deref().map(ids_to_blob)
                ],
                |row| row.get(0),
            )
            .optional()
            .context(|| format!("inserting {} generation (step {})", g.kind, g.step_index))?;
        if let Some(id) = inserted {
            return Ok(id);
        }
        Ok(self.conn.query_row(
            "SELECT id FROM generations
             WHERE round_id IS ?1 AND prompt_id IS ?2 AND sample_index = ?3 AND step_index = ?4",
            params![g.round_id, g.prompt_id, g.sample_index, g.step_index],
            |row| row.get(0),
        )?)
    }

    pub fn get_generation(&self, id: GenerationId) -> Result<Option<Generation>, StoreError> {
        Ok(self
            .conn
            .query_row(
                "SELECT * FROM generations WHERE id = ?1",
                [id],
                generation_from_row,
            )
            .optional()?)
    }

    /// All generations of a round, grouped by prompt, sample and step.
    pub fn generations_of_round(&self, round: RoundId) -> Result<Vec<Generation>, StoreError> {
        self.query_list("SELECT * FROM generations WHERE round_id = ?1 ORDER BY prompt_id, sample_index, step_index, id", [round], generation_from_row)
    }

    /// The chain ending at `id`, root (initial answer) first, following parent links.
    pub fn refinement_chain(&self, id: GenerationId) -> Result<Vec<Generation>, StoreError> {
        // A recursive CTE does the walk in one query; `depth` orders it and the bound stops a
        // (CHECK-prevented, but hand-editable) cycle from looping forever.
        let mut stmt = self.conn.prepare(
            "WITH RECURSIVE chain (id, depth) AS (
                 SELECT id, 0 FROM generations WHERE id = ?1
                 UNION ALL
                 SELECT g.parent_id, chain.depth + 1 FROM generations g JOIN chain ON g.id = chain.id
                 WHERE g.parent_id IS NOT NULL AND chain.depth < 10000
             )
             SELECT g.* FROM chain JOIN generations g ON g.id = chain.id ORDER BY chain.depth DESC",
        )?;
        let chain: Vec<Generation> = stmt
            .query_map([id], generation_from_row)?
            .collect::<Result<_, _>>()?;
        if chain.is_empty() {
            return Err(StoreError::NotFound {
                what: "generation",
                id: id.0,
            });
        }
        Ok(chain)
    }

    /// Sets `scorer`'s score of a generation, replacing an earlier one (rescoring is idempotent).
    pub fn add_score(
        &self,
        generation: GenerationId,
        scorer: &str,
        value: f64,
        details: &serde_json::Value,
    ) -> Result<ScoreId, StoreError> {
        self.conn
            .query_row(
                "INSERT INTO scores (generation_id, scorer, value, details_json, created_at)
                 VALUES (?1, ?2, ?3, ?4, ?5)
                 ON CONFLICT (generation_id, scorer)
                 DO UPDATE SET value = excluded.value, details_json = excluded.details_json,
                               created_at = excluded.created_at
                 RETURNING id",
                params![generation, scorer, value, to_json(details)?, now_ms()],
                |row| row.get(0),
            )
            .context(|| format!("scoring generation {generation} with {scorer}"))
    }

    pub fn scores_of(&self, generation: GenerationId) -> Result<Vec<Score>, StoreError> {
        self.query_list(
            "SELECT * FROM scores WHERE generation_id = ?1 ORDER BY scorer",
            [generation],
            score_from_row,
        )
    }
}
