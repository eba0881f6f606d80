//! Preference pairs (chosen ≻ rejected) built from scored generations, and their human review.

use crate::error::Context;
use crate::sql::{kind, now_ms};
use crate::{GenerationId, PairId, PromptId, RoundId, Store, StoreError};
use evolve_core::{PairKind, ReviewState};
use rusqlite::types::ToSql;
use rusqlite::{OptionalExtension, Row, params};
use serde::Serialize;

#[derive(Debug, Clone, Serialize)]
pub struct NewPair {
    pub round_id: RoundId,
    pub prompt_id: PromptId,
    pub kind: PairKind,
    pub chosen_id: GenerationId,
    pub rejected_id: GenerationId,
    /// Score difference chosen − rejected; filters drop weak pairs by it.
    pub margin: f64,
}

#[derive(Debug, Clone, Serialize)]
pub struct Pair {
    pub id: PairId,
    pub round_id: RoundId,
    pub prompt_id: PromptId,
    pub kind: PairKind,
    pub chosen_id: GenerationId,
    pub rejected_id: GenerationId,
    pub margin: f64,
    pub review: ReviewState,
    /// The user's replacement for the chosen text; set exactly when `review` is `Edited`.
    pub edited_chosen_text: Option<String>,
    pub note: Option<String>,
    pub created_at: i64,
}

/// Which pairs [`Store::list_pairs`] returns; `Default` matches every pair.
#[derive(Debug, Clone, Default, Serialize)]
pub struct PairFilter {
    pub round_id: Option<RoundId>,
    pub kind: Option<PairKind>,
    pub review: Option<ReviewState>,
    /// Keep pairs with `margin >= min_margin`.
    pub min_margin: Option<f64>,
}

fn pair_from_row(row: &Row) -> rusqlite::Result<Pair> {
    Ok(Pair {
        id: row.get("id")?,
        round_id: row.get("round_id")?,
        prompt_id: row.get("prompt_id")?,
        kind: kind(row, "kind")?,
        chosen_id: row.get("chosen_id")?,
        rejected_id: row.get("rejected_id")?,
        margin: row.get("margin")?,
        review: kind(row, "review")?,
        edited_chosen_text: row.get("edited_chosen_text")?,
        note: row.get("note")?,
        created_at: row.get("created_at")?,
    })
}

impl Store {
    /// Inserts a pending pair, or returns the existing id for the same (round, kind, chosen,
    /// rejected), keeping its review. The database rejects chosen == rejected and ids of
    /// generations that do not exist.
    pub fn insert_pair(&self, pair: &NewPair) -> Result<PairId, StoreError> {
        let context = || {
            format!(
                "inserting {} pair {} ≻ {}",
                pair.kind, pair.chosen_id, pair.rejected_id
            )
        };
        let inserted = self
            .conn
            .query_row(
                "INSERT INTO pairs (round_id, prompt_id, kind, chosen_id, rejected_id, margin, review, created_at)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)
                 ON CONFLICT (round_id, kind, chosen_id, rejected_id) DO NOTHING
                 RETURNING id",
                params![
                    pair.round_id,
                    pair.prompt_id,
                    pair.kind.as_str(),
                    pair.chosen_id,
                    pair.rejected_id,
                    pair.margin,
                    ReviewState::Pending.as_str(),
                    now_ms()
                ],
                |row| row.get(0),
            )
            .optional()
            .context(context)?;
        if let Some(id) = inserted {
            return Ok(id);
        }
        Ok(self.conn.query_row(
            "SELECT id FROM pairs WHERE round_id = ?1 AND kind = ?2 AND chosen_id = ?3 AND rejected_id = ?4",
            params![pair.round_id, pair.kind.as_str(), pair.chosen_id, pair.rejected_id],
            |row| row.get(0),
        )?)
    }

    pub fn get_pair(&self, id: PairId) -> Result<Option<Pair>, StoreError> {
        Ok(self
            .conn
            .query_row("SELECT * FROM pairs WHERE id = ?1", [id], pair_from_row)
            .optional()?)
    }

    /// Pairs matching every set field of `filter`, in insertion order.
    pub fn list_pairs(&self, filter: &PairFilter) -> Result<Vec<Pair>, StoreError> {
        let kind = filter.kind.map(PairKind::as_str);
        let review = filter.review.map(ReviewState::as_str);
        let mut sql = String::from("SELECT * FROM pairs WHERE 1 = 1");
        let mut args: Vec<&dyn ToSql> = Vec::new();
        let conditions: [(&str, Option<&dyn ToSql>); 4] = [
            (
                "round_id =",
                filter.round_id.as_ref().map(|v| v as &dyn ToSql),
            ),
            ("kind =", kind.as_ref().map(|v| v as &dyn ToSql)),
            ("review =", review.as_ref().map(|v| v as &dyn ToSql)),
            (
                "margin >=",
                filter.min_margin.as_ref().map(|v| v as &dyn ToSql),
            ),
        ];
        for (condition, value) in conditions {
            if let Some(value) = value {
                args.push(value);
                sql.push_str(&format!(" AND {condition} ?{}", args.len()));
            }
        }
        sql.push_str(" ORDER BY id");
        self.query_list(&sql, args.as_slice(), pair_from_row)
    }

    /// Records the user's review. `Edited` needs the replacement chosen text, and only `Edited`
    /// takes one: any other decision clears an earlier edit so the text always matches the state.
    pub fn set_pair_review(
        &self,
        id: PairId,
        review: ReviewState,
        edited_chosen_text: Option<&str>,
    ) -> Result<(), StoreError> {
        match (review, edited_chosen_text) {
            (ReviewState::Edited, None) => {
                return Err(StoreError::Invalid(format!(
                    "pair {id}: an edited review needs the edited chosen text"
                )));
            }
            (ReviewState::Edited, Some(_)) | (_, None) => {}
            (other, Some(_)) => {
                return Err(StoreError::Invalid(format!(
                    "pair {id}: edited text given with review '{other}'; use 'edited'"
                )));
            }
        }
        let changed = self.conn.execute(
            "UPDATE pairs SET review = ?2, edited_chosen_text = ?3 WHERE id = ?1",
            params![id, review.as_str(), edited_chosen_text],
        )?;
        super::one_row_changed(changed, "pair", id.0)
    }

    /// Attaches (or with `None` removes) a free-text note, e.g. why a pair was vetoed.
    pub fn set_pair_note(&self, id: PairId, note: Option<&str>) -> Result<(), StoreError> {
        let changed = self.conn.execute(
            "UPDATE pairs SET note = ?2 WHERE id = ?1",
            params![id, note],
        )?;
        super::one_row_changed(changed, "pair", id.0)
    }
}
