//! Scoring answers: the one trait behind verifiers, LLM judges, reward models and remote judges.

use serde::{Deserialize, Serialize};

/// What a scorer sees: the question, the dataset's gold answer when it has one, and the answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ScoreInput<'a> {
    pub prompt: &'a str,
    pub reference: Option<&'a str>,
    pub answer: &'a str,
}

/// A score (higher is better) and the evidence behind it, stored with the score.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ScoreValue {
    pub value: f64,
    pub details: serde_json::Value,
}

#[derive(Debug, thiserror::Error)]
pub enum ScoreError {
    /// The scorer cannot judge this prompt at all (e.g. a verifier without a gold answer).
    #[error("{scorer} cannot score this prompt: {reason}")]
    Unscorable { scorer: String, reason: String },
    #[error("{scorer} failed: {reason}")]
    Failed { scorer: String, reason: String },
}

pub trait Scorer {
    /// Stable name stored with every score (e.g. `numeric_final_answer`).
    fn name(&self) -> &str;
    fn score(&mut self, input: &ScoreInput<'_>) -> Result<ScoreValue, ScoreError>;

    /// The same judge comparing two answers side by side, when it can (an LLM judge). Others
    /// are compared by their scores (see `evolve_loop`'s evaluation).
    fn pairwise(&mut self) -> Option<&mut dyn crate::PairwiseJudge> {
        None
    }
}

/// The final answer written after a GSM8K-style `####` marker, normalised (`1,234` → `1234`).
pub fn final_answer_after_marker(text: &str) -> Option<String> {
    let after = &text[text.rfind("####")? + 4..];
    let answer = after.lines().next().unwrap_or("").trim();
    (!answer.is_empty()).then(|| normalise_number(answer))
}

/// Removes thousands separators, a leading `$`, trailing `.`/`.0`s, so `$1,234.00` = `1234`.
pub fn normalise_number(s: &str) -> String {
    let cleaned: String = s
        .trim()
        .trim_start_matches('$')
        .chars()
        .filter(|c| *c != ',')
        .collect();
    match cleaned.parse::<f64>() {
        Ok(v) if v.is_finite() && v.fract() == 0.0 && v.abs() < 1e15 => format!("{}", v as i64),
        Ok(v) if v.is_finite() => format!("{v}"),
        _ => cleaned.trim_end_matches('.').to_string(),
    }
}
