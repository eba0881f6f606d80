//! Scoring answers: the one trait behind verifiers, LLM judges, reward models and remote judges.

use crate::ScoreError;
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

/// How [`extract_final_number`] found an answer's number.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Extraction {
    /// After a GSM8K-style `####`.
    Marker,
    /// In the last `\boxed{…}` (MATH-style answers).
    Boxed,
    /// After the last "the answer is" / "answer:" (any case).
    AnswerIs,
    /// The last number in the text, the evaluation harnesses' final fallback.
    LastNumber,
}

impl Extraction {
    pub fn as_str(self) -> &'static str {
        match self {
            Extraction::Marker => "marker",
            Extraction::Boxed => "boxed",
            Extraction::AnswerIs => "answer_is",
            Extraction::LastNumber => "last_number",
        }
    }
}

/// The numbers in `text`, in order: digits with `,` separators and one decimal point, an
/// optional sign; normalised like [`normalise_number`].
fn numbers(text: &str) -> Vec<String> {
    let chars: Vec<char> = text.chars().collect();
    let mut out = Vec::new();
    let mut i = 0;
    while i < chars.len() {
        if !chars[i].is_ascii_digit() {
            i += 1;
            continue;
        }
        let negative =
            i > 0 && chars[i - 1] == '-' && (i < 2 || !chars[i - 2].is_ascii_alphanumeric());
        let start = i;
        let mut seen_point = false;
        while i < chars.len() {
            let c = chars[i];
            let next_digit = chars.get(i + 1).is_some_and(|d| d.is_ascii_digit());
            if c.is_ascii_digit() || (c == ',' && next_digit) {
                i += 1;
            } else if c == '.' && next_digit && !seen_point {
                seen_point = true;
                i += 1;
            } else {
                break;
            }
        }
        let digits: String = chars[start..i].iter().collect();
        out.push(normalise_number(&if negative {
            format!("-{digits}")
        } else {
            digits
        }));
    }
    out
}

/// An answer's final number the way evaluation harnesses read it: after `####`, else in the
/// last `\boxed{}`, else after the last "the answer is", else the last number in the text.
pub fn extract_final_number(text: &str) -> Option<(String, Extraction)> {
    if let Some(n) = final_answer_after_marker(text) {
        return Some((n, Extraction::Marker));
    }
    if let Some(at) = text.rfind("\\boxed{") {
        let inner = &text[at + 7..];
        let inner = &inner[..inner.find('}').unwrap_or(inner.len())];
        if let Some(n) = numbers(inner).pop() {
            return Some((n, Extraction::Boxed));
        }
    }
    let lower = text.to_lowercase();
    let after = ["the answer is", "answer:"]
        .iter()
        .filter_map(|p| lower.rfind(p).map(|at| at + p.len()))
        .max();
    if let Some(at) = after
        && let Some(n) = lower
            .get(at..)
            .and_then(|rest| numbers(rest).into_iter().next())
    {
        return Some((n, Extraction::AnswerIs));
    }
    numbers(text).pop().map(|n| (n, Extraction::LastNumber))
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

#[cfg(test)]
mod extraction_tests {
    use super::*;

    #[test]
    fn final_numbers_are_read_from_real_model_phrasings() {
        for (answer, want, via) in [
            ("47 + 38 = 85\n#### 85", "85", Extraction::Marker),
            ("#### 1,234", "1234", Extraction::Marker),
            ("So the total is \\boxed{42}.", "42", Extraction::Boxed),
            ("\\boxed{x = 3.50}", "3.5", Extraction::Boxed),
            (
                "The answer is 7, since 3 + 4 = 7 and 10 - 3 = 7.",
                "7",
                Extraction::AnswerIs,
            ),
            (
                "The answer is $1,250. We checked 3 times.",
                "1250",
                Extraction::AnswerIs,
            ),
            ("Answer: -12", "-12", Extraction::AnswerIs),
            // SmolLM2-135M-Instruct's own words for "which number is larger, 847 or 784?"
            ("The larger number is 847.", "847", Extraction::LastNumber),
            ("17 + 25 = 42", "42", Extraction::LastNumber),
            (
                "It costs 3.5 dollars, or maybe 4.",
                "4",
                Extraction::LastNumber,
            ),
            ("from 2020-2024", "2024", Extraction::LastNumber),
            ("x-3 is 5", "5", Extraction::LastNumber),
        ] {
            assert_eq!(
                extract_final_number(answer),
                Some((want.to_string(), via)),
                "{answer:?}"
            );
        }
        assert_eq!(extract_final_number("no digits here"), None);
        assert_eq!(extract_final_number("The answer is unclear."), None);
    }
}
