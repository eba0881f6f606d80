//! Comparing two answers to one prompt, and the win rate of new answers over old ones.
//!
//! The trait lives here, beside [`crate::Scorer`], so the loop can ask any scorer for a pairwise
//! verdict ([`crate::Scorer::pairwise`]) without depending on the judge crate.

use crate::ScoreError;
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
    Ok(WinRate::tally((0..n).map(|i| {
        judge
            .prefer(prompts[i], references[i], answers_new[i], answers_old[i])
            .map(|v| v.winner)
            .map_err(|e| e.to_string())
    })))
}

impl WinRate {
    /// Counts verdicts (`Err` = the pair could not be judged) into a win rate.
    pub fn tally(verdicts: impl IntoIterator<Item = Result<Winner, String>>) -> Self {
        let mut out = WinRate {
            wins: 0,
            ties: 0,
            losses: 0,
            failed: 0,
            rate: None,
            first_failure: None,
        };
        for v in verdicts {
            match v {
                Ok(Winner::A) => out.wins += 1,
                Ok(Winner::B) => out.losses += 1,
                Ok(Winner::Tie) => out.ties += 1,
                Err(e) => {
                    out.failed += 1;
                    out.first_failure.get_or_insert(e);
                }
            }
        }
        let judged = out.wins + out.ties + out.losses;
        if judged > 0 {
            out.rate = Some((out.wins as f64 + out.ties as f64 / 2.0) / judged as f64);
        }
        out
    }
}
