//! Preference pairs: list with filters, review (approve, veto, edit, reset).

use super::{ApiError, ApiResult, Inner};
use evolve_core::{PairKind, ReviewState};
use evolve_store::{GenerationId, Pair, PairFilter, PairId, RunId, Store};
use serde::Deserialize;
use serde_json::{Value, json};

#[derive(Deserialize)]
pub struct ListArgs {
    #[serde(default)]
    run_id: Option<i64>,
    #[serde(default)]
    round: Option<i64>,
    #[serde(default)]
    kind: Option<String>,
    #[serde(default)]
    min_margin: Option<f64>,
    #[serde(default)]
    review: Option<String>,
}

/// The UI says "approved" where the store says "accepted".
fn review_name(r: ReviewState) -> &'static str {
    match r {
        ReviewState::Accepted => "approved",
        other => other.as_str(),
    }
}

fn parse_review(s: &str) -> ApiResult<ReviewState> {
    match s {
        "approved" => Ok(ReviewState::Accepted),
        other => other
            .parse()
            .map_err(|e: evolve_core::ParseKindError| ApiError::bad(e.to_string())),
    }
}

fn answer(store: &Store, id: GenerationId) -> ApiResult<Value> {
    let g = store
        .get_generation(id)?
        .ok_or_else(|| ApiError::bad(format!("generation {} of a pair is missing", id.0)))?;
    let score = store.scores_of(id)?.last().map(|s| s.value);
    Ok(json!({"id": id.0, "text": g.text, "score": score}))
}

fn pair_json(store: &Store, p: &Pair, round_index: i64) -> ApiResult<Value> {
    let prompt = store
        .get_prompt(p.prompt_id)?
        .map(|p| p.prompt)
        .unwrap_or_default();
    Ok(json!({
        "id": p.id.0, "round": round_index, "kind": p.kind.as_str(), "prompt": prompt,
        "chosen": answer(store, p.chosen_id)?, "rejected": answer(store, p.rejected_id)?,
        "margin": p.margin, "review": review_name(p.review),
        "edited_chosen_text": p.edited_chosen_text,
    }))
}

pub fn list(inner: &Inner, args: ListArgs) -> ApiResult {
    let service = inner.service()?;
    let store = service.store();
    let kind = match args.kind.as_deref() {
        None | Some("") => None,
        Some(k) => Some(
            k.parse::<PairKind>()
                .map_err(|e| ApiError::bad(e.to_string()))?,
        ),
    };
    let review = match args.review.as_deref() {
        None | Some("") => None,
        Some(r) => Some(parse_review(r)?),
    };
    let runs: Vec<RunId> = match args.run_id {
        Some(id) => vec![RunId(id)],
        None => store.list_runs()?.into_iter().map(|r| r.id).collect(),
    };
    let mut out = Vec::new();
    for run in runs {
        for round in store.rounds_of_run(run)? {
            if args.round.is_some_and(|r| r != round.round_index) {
                continue;
            }
            let filter = PairFilter {
                round_id: Some(round.id),
                kind,
                review,
                min_margin: args.min_margin,
            };
            for p in store.list_pairs(&filter)? {
                out.push(pair_json(store, &p, round.round_index)?);
            }
        }
    }
    Ok(Value::Array(out))
}

#[derive(Deserialize)]
pub struct ReviewArgs {
    pair_id: i64,
    action: String,
    #[serde(default)]
    text: Option<String>,
}

pub fn review(inner: &Inner, args: ReviewArgs) -> ApiResult {
    let service = inner.service()?;
    let store = service.store();
    let id = PairId(args.pair_id);
    let (state, text) = match args.action.as_str() {
        "approve" => (ReviewState::Accepted, None),
        "veto" => (ReviewState::Vetoed, None),
        "reset" => (ReviewState::Pending, None),
        "edit" => match args.text.as_deref().map(str::trim) {
            Some(t) if !t.is_empty() => (ReviewState::Edited, Some(t)),
            _ => return Err(ApiError::bad("an edit needs the new chosen text")),
        },
        other => {
            return Err(ApiError::bad(format!(
                "unknown review action '{other}' (expected approve, veto, edit or reset)"
            )));
        }
    };
    store
        .get_pair(id)?
        .ok_or_else(|| ApiError::not_found(format!("no pair with id {}", args.pair_id)))?;
    store.set_pair_review(id, state, text)?;
    let pair = store.get_pair(id)?.expect("checked above");
    let round = store.get_round(pair.round_id)?.map_or(0, |r| r.round_index);
    pair_json(store, &pair, round)
}
