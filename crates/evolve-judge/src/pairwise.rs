//! Pairwise judging with the position swap, and the win rate built on it.
//!
//! LLM judges favour whichever answer they read first (or second) regardless of content. Every
//! pair is therefore judged twice, as (a, b) and as (b, a); a judge that only follows position
//! then contradicts itself and the pair comes out a tie, while a judge that follows content
//! keeps its verdict.

use crate::prompt::Shown;
use evolve_core::ScoreError;
use serde_json::Value;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Winner {
    A,
    B,
    Tie,
}

/// The combined verdict of both orders.
#[derive(Debug, Clone, PartialEq)]
pub struct PairVerdict {
    /// `A` only when a won in both orders, `B` only when b won in both, else `Tie`.
    pub winner: Winner,
    /// Probability that a is better: the mean over the two orders of 1 (a won), 0.5 (tie) or
    /// 0 (b won). 0.75 means a won once and tied once; 0.5 is a tie or a contradiction.
    pub p_a: f64,
    /// Evidence: each order's raw reply and reading.
    pub details: Value,
}

/// A judge that compares two answers to one prompt.
pub trait PairwiseJudge {
    /// Judges a against b in both orders and combines the two readings (see [`PairVerdict`]).
    fn prefer(
        &mut self,
        prompt: &str,
        reference: Option<&str>,
        a: &str,
        b: &str,
    ) -> Result<PairVerdict, ScoreError>;
}

/// a's share of one order's verdict: `a_first` says whether a was shown first.
fn share_of_a(shown: Shown, a_first: bool) -> f64 {
    match (shown, a_first) {
        (Shown::Tie, _) => 0.5,
        (Shown::First, true) | (Shown::Second, false) => 1.0,
        _ => 0.0,
    }
}

/// Combines the reading of the (a, b) order and of the (b, a) order.
pub fn combine(ab: Shown, ba: Shown) -> (Winner, f64) {
    let p_a = (share_of_a(ab, true) + share_of_a(ba, false)) / 2.0;
    let winner = if p_a == 1.0 {
        Winner::A
    } else if p_a == 0.0 {
        Winner::B
    } else {
        Winner::Tie
    };
    (winner, p_a)
}

/// How a set of new answers fared against old ones.
#[derive(Debug, Clone, PartialEq)]
pub struct WinRate {
    pub wins: usize,
    pub ties: usize,
    pub losses: usize,
    /// Pairs the judge could not decide (unreadable reply, engine error); not in `rate`.
    pub failed: usize,
    /// `(wins + ties / 2) / (wins + ties + losses)`, the usual convention that counts a tie as
    /// half a win; `None` when no pair was judged.
    pub rate: Option<f64>,
    /// The first failure's message, so a broken judge is visible rather than silently skipped.
    pub first_failure: Option<String>,
}

/// Judges `answers_new[i]` (as a) against `answers_old[i]` (as b) for every `prompts[i]`.
pub fn win_rate(
    judge: &mut dyn PairwiseJudge,
    prompts: &[&str],
    answers_new: &[&str],
    answers_old: &[&str],
) -> Result<WinRate, ScoreError> {
    let references = vec![None; prompts.len()];
    win_rate_with_references(judge, prompts, &references, answers_new, answers_old)
}

/// [`win_rate`] with each prompt's reference answer shown to the judge.
pub fn win_rate_with_references(
    judge: &mut dyn PairwiseJudge,
    prompts: &[&str],
    references: &[Option<&str>],
    answers_new: &[&str],
    answers_old: &[&str],
) -> Result<WinRate, ScoreError> {
    let n = prompts.len();
    if [references.len(), answers_new.len(), answers_old.len()] != [n; 3] {
        return Err(ScoreError::Failed {
            scorer: "win_rate".into(),
            reason: format!(
                "{n} prompts but {} references, {} new and {} old answers",
                references.len(),
                answers_new.len(),
                answers_old.len()
            ),
        });
    }
    let mut out = WinRate {
        wins: 0,
        ties: 0,
        losses: 0,
        failed: 0,
        rate: None,
        first_failure: None,
    };
    for i in 0..n {
        match judge.prefer(prompts[i], references[i], answers_new[i], answers_old[i]) {
            Ok(v) => match v.winner {
                Winner::A => out.wins += 1,
                Winner::B => out.losses += 1,
                Winner::Tie => out.ties += 1,
            },
            Err(e) => {
                out.failed += 1;
                out.first_failure.get_or_insert_with(|| e.to_string());
            }
        }
    }
    let judged = out.wins + out.ties + out.losses;
    if judged > 0 {
        out.rate = Some((out.wins as f64 + out.ties as f64 / 2.0) / judged as f64);
    }
    Ok(out)
}
