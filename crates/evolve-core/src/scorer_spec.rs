//! Which scorer a run or a chat uses, written as one string (`numeric`, `judge:<model.gguf>`,
//! …) in run configurations, on the command line and in the UI. Parsed once, here; building
//! the scorer it names is the judge crate's business.

use serde::{Deserialize, Serialize};
use std::fmt;
use std::path::PathBuf;
use std::str::FromStr;

/// A rule-based verifier.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Verifier {
    /// The number after `####` equals the reference's.
    Numeric,
    /// The answer's final number, read as evaluation harnesses read it (`####`, `\boxed{}`,
    /// "the answer is", else the last number), equals the reference's.
    NumericAny,
    /// The answer equals the reference (trimmed), with or without case.
    Exact { ignore_case: bool },
    /// The answer parses as JSON.
    Json,
    /// The answer contains the text.
    Pattern(String),
}

/// Every scorer a spec can name.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum ScorerSpec {
    Verifier(Verifier),
    /// An LLM judge on a local GGUF model.
    Judge(PathBuf),
    /// An LLM judge on an OpenAI-compatible server: `remote-judge:<base url>[#model]`.
    RemoteJudge {
        url: String,
        model: Option<String>,
    },
    /// A reward model (a GGUF with a classification head).
    Reward(PathBuf),
}

/// Every form [`ScorerSpec`] parses, for error messages.
pub const SCORER_FORMS: &str = "numeric, numeric_any, exact, exact_nocase, json, pattern:<text>, \
     judge:<model.gguf>, remote-judge:<http://host:port>[#model] or reward:<model.gguf>";

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct ParseScorerError(pub String);

impl ScorerSpec {
    /// The verifier the numeric final-answer checks use (the default).
    pub const NUMERIC: ScorerSpec = ScorerSpec::Verifier(Verifier::Numeric);

    /// The model file a judge or reward model needs, if any.
    pub fn model_file(&self) -> Option<&std::path::Path> {
        match self {
            ScorerSpec::Judge(p) | ScorerSpec::Reward(p) => Some(p),
            _ => None,
        }
    }

    /// Refuses a spec that cannot work before any work is done: a judge or reward model file
    /// that does not exist. (Loading the model waits for the run.)
    pub fn check_files(&self) -> Result<(), ParseScorerError> {
        match self.model_file() {
            Some(p) if !p.is_file() => Err(ParseScorerError(format!(
                "scorer '{self}': model file not found: {}",
                p.display()
            ))),
            _ => Ok(()),
        }
    }
}

impl Default for ScorerSpec {
    fn default() -> Self {
        ScorerSpec::NUMERIC
    }
}

impl fmt::Display for ScorerSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ScorerSpec::Verifier(Verifier::Numeric) => f.write_str("numeric"),
            ScorerSpec::Verifier(Verifier::NumericAny) => f.write_str("numeric_any"),
            ScorerSpec::Verifier(Verifier::Exact { ignore_case: false }) => f.write_str("exact"),
            ScorerSpec::Verifier(Verifier::Exact { ignore_case: true }) => {
                f.write_str("exact_nocase")
            }
            ScorerSpec::Verifier(Verifier::Json) => f.write_str("json"),
            ScorerSpec::Verifier(Verifier::Pattern(p)) => write!(f, "pattern:{p}"),
            ScorerSpec::Judge(p) => write!(f, "judge:{}", p.display()),
            ScorerSpec::RemoteJudge { url, model: None } => write!(f, "remote-judge:{url}"),
            ScorerSpec::RemoteJudge {
                url,
                model: Some(m),
            } => write!(f, "remote-judge:{url}#{m}"),
            ScorerSpec::Reward(p) => write!(f, "reward:{}", p.display()),
        }
    }
}

impl FromStr for ScorerSpec {
    type Err = ParseScorerError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let spec = s.trim();
        let after = |prefix: &str, what: &str| -> Option<Result<String, ParseScorerError>> {
            let rest = spec.strip_prefix(prefix)?.trim();
            Some(if rest.is_empty() {
                Err(ParseScorerError(format!(
                    "scorer '{spec}' needs {what} after the colon (expected {SCORER_FORMS})"
                )))
            } else {
                Ok(rest.to_string())
            })
        };
        if let Some(path) = after("judge:", "a model path") {
            return Ok(ScorerSpec::Judge(path?.into()));
        }
        if let Some(path) = after("reward:", "a model path") {
            return Ok(ScorerSpec::Reward(path?.into()));
        }
        if let Some(target) = after("remote-judge:", "a server address") {
            let target = target?;
            let (url, model) = match target.split_once('#') {
                Some((u, m)) if !m.is_empty() => (u.to_string(), Some(m.to_string())),
                Some((u, _)) => (u.to_string(), None),
                None => (target, None),
            };
            return Ok(ScorerSpec::RemoteJudge { url, model });
        }
        if let Some(text) = spec.strip_prefix("pattern:") {
            return Ok(ScorerSpec::Verifier(Verifier::Pattern(text.to_string())));
        }
        Ok(ScorerSpec::Verifier(match spec {
            "numeric" | "numeric_final_answer" | "gsm8k" => Verifier::Numeric,
            "numeric_any" => Verifier::NumericAny,
            "exact" | "exact_match" => Verifier::Exact { ignore_case: false },
            "exact_nocase" => Verifier::Exact { ignore_case: true },
            "json" | "json_valid" => Verifier::Json,
            other => {
                return Err(ParseScorerError(format!(
                    "unknown scorer '{other}' (expected {SCORER_FORMS})"
                )));
            }
        }))
    }
}

impl Serialize for ScorerSpec {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for ScorerSpec {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        String::deserialize(d)?
            .parse()
            .map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn specs_round_trip_through_their_string_form() {
        for text in [
            "numeric",
            "numeric_any",
            "exact",
            "exact_nocase",
            "json",
            "pattern:the answer",
            "judge:/models/j.gguf",
            "reward:/models/rm.gguf",
            "remote-judge:http://127.0.0.1:8080",
            "remote-judge:http://127.0.0.1:8080#qwen",
        ] {
            let spec: ScorerSpec = text.parse().unwrap();
            assert_eq!(spec.to_string(), text);
            let json = serde_json::to_value(&spec).unwrap();
            assert_eq!(json, text);
            assert_eq!(serde_json::from_value::<ScorerSpec>(json).unwrap(), spec);
        }
        // Older names of the verifiers still parse, to their canonical form.
        assert_eq!("gsm8k".parse::<ScorerSpec>().unwrap(), ScorerSpec::NUMERIC);
        assert_eq!(
            "exact_match".parse::<ScorerSpec>().unwrap().to_string(),
            "exact"
        );
    }

    #[test]
    fn bad_specs_are_refused_in_one_line_naming_the_accepted_forms() {
        for (text, says) in [
            ("bleu", "unknown scorer 'bleu'"),
            ("judge:", "needs a model path"),
            ("remote-judge: ", "needs a server address"),
        ] {
            let e = text.parse::<ScorerSpec>().unwrap_err().to_string();
            assert!(e.contains(says) && e.contains("judge:<model.gguf>"), "{e}");
            assert!(!e.contains('\n'));
        }
        let missing: ScorerSpec = "judge:/no/such/file.gguf".parse().unwrap();
        let e = missing.check_files().unwrap_err().to_string();
        assert!(e.contains("model file not found"), "{e}");
        assert!(ScorerSpec::NUMERIC.check_files().is_ok());
    }
}
