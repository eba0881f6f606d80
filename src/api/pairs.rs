//! Preference pairs: list with filters, review (approve, veto, edit, reset).

use super::{ApiError, ApiResult, Inner};
use crate::data::pairs::{PairQuery, ReviewAction, parse_review};
use evolve_store::{PairId, RunId};
use serde::Deserialize;

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

fn non_empty(s: &Option<String>) -> Option<&str> {
    s.as_deref().filter(|s| !s.is_empty())
}

pub fn list(inner: &Inner, args: ListArgs) -> ApiResult {
    let query = PairQuery {
        run: args.run_id.map(RunId),
        round: args.round,
        kind: non_empty(&args.kind)
            .map(str::parse)
            .transpose()
            .map_err(|e: evolve_core::ParseKindError| ApiError::bad(e.to_string()))?,
        review: non_empty(&args.review).map(parse_review).transpose()?,
        min_margin: args.min_margin,
    };
    let pairs = inner.service()?.list_pairs(&query)?;
    Ok(serde_json::to_value(pairs).expect("pairs serialise"))
}

#[derive(Deserialize)]
pub struct ReviewArgs {
    pair_id: i64,
    action: String,
    #[serde(default)]
    text: Option<String>,
}

pub fn review(inner: &Inner, args: ReviewArgs) -> ApiResult {
    let action = ReviewAction::new(&args.action, args.text.as_deref())?;
    let pair = inner
        .service()?
        .review_pair(PairId(args.pair_id), &action)?;
    Ok(serde_json::to_value(pair).expect("a pair serialises"))
}
