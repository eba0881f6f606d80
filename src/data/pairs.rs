//! Preference pairs as people review them: listed with filters, approved, vetoed, edited or
//! reset before training. The app's pair screen and `evolve pairs` both call these.

use crate::Service;
use crate::service::NotFound;
use anyhow::{Context, Result, bail};
use evolve_core::{PairKind, ReviewState};
use evolve_store::{GenerationId, Pair, PairFilter, PairId, RunId, Store};
use serde::Serialize;
use std::fmt;
use std::str::FromStr;

/// Which pairs to list; `None` matches everything.
#[derive(Debug, Clone, Default)]
pub struct PairQuery {
    pub run: Option<RunId>,
    pub round: Option<i64>,
    pub kind: Option<PairKind>,
    pub review: Option<ReviewState>,
    pub min_margin: Option<f64>,
}

/// One side of a pair: the answer and its score.
#[derive(Debug, Clone, Serialize, ts_rs::TS)]
pub struct PairAnswer {
    pub id: i64,
    pub text: String,
    pub score: Option<f64>,
}

/// A pair as a reviewer sees it.
#[derive(Debug, Clone, Serialize, ts_rs::TS)]
#[ts(export)]
pub struct PairView {
    pub id: i64,
    pub round: i64,
    pub kind: PairKind,
    pub prompt: String,
    pub chosen: PairAnswer,
    pub rejected: PairAnswer,
    pub margin: f64,
    /// `approved` where the store says `accepted`: the word reviewers use.
    #[ts(type = "\"pending\" | \"approved\" | \"vetoed\" | \"edited\"")]
    pub review: &'static str,
    pub edited_chosen_text: Option<String>,
}

/// The review names people type and the UI sends (`approved` for the store's `accepted`).
pub fn parse_review(s: &str) -> Result<ReviewState> {
    match s {
        "approved" => Ok(ReviewState::Accepted),
        other => Ok(other.parse()?),
    }
}

fn review_name(r: ReviewState) -> &'static str {
    match r {
        ReviewState::Accepted => "approved",
        other => other.as_str(),
    }
}

/// What a reviewer does to a pair.
#[derive(Debug, Clone, PartialEq)]
pub enum ReviewAction {
    Approve,
    Veto,
    /// Back to pending, dropping an edit.
    Reset,
    /// Replace the chosen answer's text (trained instead of the original).
    Edit(String),
}

impl ReviewAction {
    /// The action named `name` (`approve`, `veto`, `reset`, `edit`), `text` for an edit.
    pub fn new(name: &str, text: Option<&str>) -> Result<ReviewAction> {
        Ok(match name {
            "approve" => ReviewAction::Approve,
            "veto" => ReviewAction::Veto,
            "reset" => ReviewAction::Reset,
            "edit" => match text.map(str::trim) {
                Some(t) if !t.is_empty() => ReviewAction::Edit(t.to_string()),
                _ => bail!("an edit needs the new chosen text"),
            },
            other => {
                bail!("unknown review action '{other}' (expected approve, veto, edit or reset)")
            }
        })
    }
}

impl fmt::Display for ReviewAction {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            ReviewAction::Approve => "approve",
            ReviewAction::Veto => "veto",
            ReviewAction::Reset => "reset",
            ReviewAction::Edit(_) => "edit",
        })
    }
}

impl FromStr for ReviewAction {
    type Err = anyhow::Error;
    fn from_str(s: &str) -> Result<Self> {
        ReviewAction::new(s, None)
    }
}

fn answer(store: &Store, id: GenerationId) -> Result<PairAnswer> {
    let g = store
        .get_generation(id)?
        .with_context(|| format!("generation {} of a pair is missing", id.0))?;
    let score = store.scores_of(id)?.last().map(|s| s.value);
    Ok(PairAnswer {
        id: id.0,
        text: g.text,
        score,
    })
}

fn view(store: &Store, p: &Pair, round: i64) -> Result<PairView> {
    let prompt = store
        .get_prompt(p.prompt_id)?
        .map(|p| p.prompt)
        .unwrap_or_default();
    Ok(PairView {
        id: p.id.0,
        round,
        kind: p.kind,
        prompt,
        chosen: answer(store, p.chosen_id)?,
        rejected: answer(store, p.rejected_id)?,
        margin: p.margin,
        review: review_name(p.review),
        edited_chosen_text: p.edited_chosen_text.clone(),
    })
}

impl Service {
    /// The pairs `query` selects, by run, round and id.
    pub fn list_pairs(&self, query: &PairQuery) -> Result<Vec<PairView>> {
        let store = self.store();
        let runs: Vec<RunId> = match query.run {
            Some(id) => vec![id],
            None => store.list_runs()?.into_iter().map(|r| r.id).collect(),
        };
        let mut out = Vec::new();
        for run in runs {
            for round in store.rounds_of_run(run)? {
                if query.round.is_some_and(|r| r != round.round_index) {
                    continue;
                }
                let filter = PairFilter {
                    round_id: Some(round.id),
                    kind: query.kind,
                    review: query.review,
                    min_margin: query.min_margin,
                };
                for p in store.list_pairs(&filter)? {
                    out.push(view(store, &p, round.round_index)?);
                }
            }
        }
        Ok(out)
    }

    /// Applies a reviewer's decision; returns the pair as it now is.
    pub fn review_pair(&self, id: PairId, action: &ReviewAction) -> Result<PairView> {
        let store = self.store();
        if store.get_pair(id)?.is_none() {
            return Err(NotFound(format!("no pair with id {}", id.0)).into());
        }
        let (state, text) = match action {
            ReviewAction::Approve => (ReviewState::Accepted, None),
            ReviewAction::Veto => (ReviewState::Vetoed, None),
            ReviewAction::Reset => (ReviewState::Pending, None),
            ReviewAction::Edit(t) => (ReviewState::Edited, Some(t.as_str())),
        };
        store.set_pair_review(id, state, text)?;
        let pair = store.get_pair(id)?.expect("checked above");
        let round = store.get_round(pair.round_id)?.map_or(0, |r| r.round_index);
        view(store, &pair, round)
    }
}
