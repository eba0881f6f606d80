//! Rule-based verifiers: cheap, exact, and the paper's alternative to a reward model; next to
//! the judges and reward models, built by [`crate::scorer_from_spec`] from a [`Verifier`].

use evolve_core::{
    ScoreError, ScoreInput, ScoreValue, Scorer, ScorerSpec, Verifier, extract_final_number,
    final_answer_after_marker, normalise_number,
};
use serde_json::json;

/// The prompt's gold answer; a verifier cannot judge a prompt without one.
fn reference<'a>(scorer: &str, input: &ScoreInput<'a>) -> Result<&'a str, ScoreError> {
    input.reference.ok_or_else(|| ScoreError::Unscorable {
        scorer: scorer.into(),
        reason: "the prompt has no reference answer".into(),
    })
}

/// The number a reference asks for: it may be a bare number or a full GSM8K solution.
fn expected_number(reference: &str) -> String {
    final_answer_after_marker(reference).unwrap_or_else(|| normalise_number(reference))
}

/// 1.0 when the answer's `#### N` equals the reference's final number, else 0.0. An answer
/// without the marker scores 0 (format matters: the loop rewards answers a grader can read).
#[derive(Debug, Default, Clone)]
pub struct NumericFinalAnswer;

impl Scorer for NumericFinalAnswer {
    fn name(&self) -> &str {
        "numeric_final_answer"
    }

    fn score(&mut self, input: &ScoreInput<'_>) -> Result<ScoreValue, ScoreError> {
        let reference = reference(self.name(), input)?;
        let expected = expected_number(reference);
        let got = final_answer_after_marker(input.answer);
        let correct = got.as_deref() == Some(expected.as_str());
        Ok(ScoreValue {
            value: if correct { 1.0 } else { 0.0 },
            details: json!({"expected": expected, "extracted": got}),
        })
    }
}

/// 1.0 when the answer's final number — read as evaluation harnesses read it, see
/// [`extract_final_number`] — equals the reference's: for models that answer in their own words
/// ("The larger number is 847.") rather than in the `#### N` format.
#[derive(Debug, Default, Clone)]
pub struct NumericAnyAnswer;

impl Scorer for NumericAnyAnswer {
    fn name(&self) -> &str {
        "numeric_any"
    }

    fn score(&mut self, input: &ScoreInput<'_>) -> Result<ScoreValue, ScoreError> {
        let reference = reference(self.name(), input)?;
        let expected = expected_number(reference);
        let got = extract_final_number(input.answer);
        let correct = got.as_ref().is_some_and(|(n, _)| *n == expected);
        Ok(ScoreValue {
            value: if correct { 1.0 } else { 0.0 },
            details: json!({
                "expected": expected,
                "extracted": got.as_ref().map(|(n, _)| n),
                "via": got.map(|(_, how)| how.as_str()),
            }),
        })
    }
}

/// 1.0 when the trimmed answer equals the reference (optionally ignoring case).
#[derive(Debug, Default, Clone)]
pub struct ExactMatch {
    pub ignore_case: bool,
}

impl Scorer for ExactMatch {
    fn name(&self) -> &str {
        "exact_match"
    }

    fn score(&mut self, input: &ScoreInput<'_>) -> Result<ScoreValue, ScoreError> {
        let reference = reference(self.name(), input)?;
        let (a, b) = (input.answer.trim(), reference.trim());
        let equal = if self.ignore_case {
            a.eq_ignore_ascii_case(b)
        } else {
            a == b
        };
        Ok(ScoreValue {
            value: f64::from(u8::from(equal)),
            details: json!({}),
        })
    }
}

/// 1.0 when the answer contains a match of a pattern. Patterns use a small, dependency-free
/// syntax: a literal string, or `^`/`$` anchors around one (enough for format checks such as
/// `^{` or `#### `); anything richer belongs in a judge.
#[derive(Debug, Clone)]
pub struct ContainsPattern {
    pattern: String,
}

impl ContainsPattern {
    pub fn new(pattern: &str) -> Self {
        Self {
            pattern: pattern.to_string(),
        }
    }
}

impl Scorer for ContainsPattern {
    fn name(&self) -> &str {
        "pattern"
    }

    fn score(&mut self, input: &ScoreInput<'_>) -> Result<ScoreValue, ScoreError> {
        let p = self.pattern.as_str();
        let text = input.answer.trim();
        let hit = match (p.strip_prefix('^'), p.strip_suffix('$')) {
            (Some(rest), _) if rest.ends_with('$') => text == &rest[..rest.len() - 1],
            (Some(rest), _) => text.starts_with(rest),
            (None, Some(rest)) => text.ends_with(rest),
            (None, None) => text.contains(p),
        };
        Ok(ScoreValue {
            value: f64::from(u8::from(hit)),
            details: json!({"pattern": p}),
        })
    }
}

/// 1.0 when the answer (or its first fenced ```json block) parses as JSON.
#[derive(Debug, Default, Clone)]
pub struct JsonValid;

impl Scorer for JsonValid {
    fn name(&self) -> &str {
        "json_valid"
    }

    fn score(&mut self, input: &ScoreInput<'_>) -> Result<ScoreValue, ScoreError> {
        let text = input.answer.trim();
        let body = text
            .split_once("```json")
            .and_then(|(_, rest)| rest.split_once("```"))
            .map_or(text, |(block, _)| block.trim());
        let result = serde_json::from_str::<serde_json::Value>(body);
        Ok(ScoreValue {
            value: f64::from(u8::from(result.is_ok())),
            details: json!({"error": result.err().map(|e| e.to_string())}),
        })
    }
}

/// The scorer for a rule-based verifier.
pub fn verifier(v: &Verifier) -> Box<dyn Scorer + Send> {
    match v {
        Verifier::Numeric => Box::new(NumericFinalAnswer),
        Verifier::NumericAny => Box::new(NumericAnyAnswer),
        Verifier::Exact { ignore_case } => Box::new(ExactMatch {
            ignore_case: *ignore_case,
        }),
        Verifier::Json => Box::new(JsonValid),
        Verifier::Pattern(p) => Box::new(ContainsPattern::new(p)),
    }
}

/// Builds a verifier from its string form; a spec naming a model-based scorer is refused.
pub fn verifier_by_name(name: &str) -> Result<Box<dyn Scorer + Send>, crate::JudgeError> {
    match name.parse::<ScorerSpec>()? {
        ScorerSpec::Verifier(v) => Ok(verifier(&v)),
        other => Err(crate::JudgeError::NotAVerifier(other)),
    }
}
