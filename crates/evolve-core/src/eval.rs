//! Held-out evaluation: which number an evaluation row holds, and the per-problem outcomes
//! behind it (kept so that rounds can be compared problem by problem).

use serde::{Deserialize, Serialize};
use std::fmt;
use std::str::FromStr;

/// Which model state an evaluation measured.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EvalSubject {
    /// The untrained model (evaluated once, in round 0).
    Base,
    /// The adapter a round trained.
    Trained,
}

/// What an evaluation measured.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "measure", content = "step")]
pub enum EvalMeasure {
    /// Mean score of the greedy direct answers.
    Direct,
    /// Mean score after `k` greedy refinement steps.
    Refined(usize),
    /// Mean score of one direct answer sampled at the run's collection temperature.
    Sampled,
    /// Judged win rate of the direct answers over the previous model's.
    WinRateVsPrevious,
}

/// The name of an evaluation row: `base/direct_score`, `trained/refined_score@2`, … (the
/// stored form, unchanged since the first schema).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct EvalMetric {
    pub subject: EvalSubject,
    pub measure: EvalMeasure,
}

impl EvalMetric {
    pub fn new(subject: EvalSubject, measure: EvalMeasure) -> Self {
        EvalMetric { subject, measure }
    }

    /// Step `k` of a refinement chain: 0 is the direct answer.
    pub fn step(subject: EvalSubject, k: usize) -> Self {
        let measure = if k == 0 {
            EvalMeasure::Direct
        } else {
            EvalMeasure::Refined(k)
        };
        EvalMetric { subject, measure }
    }
}

impl fmt::Display for EvalMetric {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let subject = match self.subject {
            EvalSubject::Base => "base",
            EvalSubject::Trained => "trained",
        };
        match self.measure {
            EvalMeasure::Direct => write!(f, "{subject}/direct_score"),
            EvalMeasure::Refined(k) => write!(f, "{subject}/refined_score@{k}"),
            EvalMeasure::Sampled => write!(f, "{subject}/sampled_score"),
            EvalMeasure::WinRateVsPrevious => write!(f, "{subject}/win_rate_vs_previous"),
        }
    }
}

#[derive(Debug, thiserror::Error)]
#[error("unknown evaluation metric '{0}'")]
pub struct ParseMetricError(pub String);

impl FromStr for EvalMetric {
    type Err = ParseMetricError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let bad = || ParseMetricError(s.to_string());
        let (subject, measure) = s.split_once('/').ok_or_else(bad)?;
        let subject = match subject {
            "base" => EvalSubject::Base,
            "trained" => EvalSubject::Trained,
            _ => return Err(bad()),
        };
        let measure = match measure {
            "direct_score" => EvalMeasure::Direct,
            "sampled_score" => EvalMeasure::Sampled,
            "win_rate_vs_previous" => EvalMeasure::WinRateVsPrevious,
            m => match m.strip_prefix("refined_score@").map(str::parse) {
                Some(Ok(k)) if k > 0 => EvalMeasure::Refined(k),
                _ => return Err(bad()),
            },
        };
        Ok(EvalMetric { subject, measure })
    }
}

impl Serialize for EvalMetric {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for EvalMetric {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        String::deserialize(d)?
            .parse()
            .map_err(serde::de::Error::custom)
    }
}

/// One held-out answer and its score, kept in its evaluation's details (`"answers"`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EvalAnswer {
    pub prompt_id: i64,
    pub text: String,
    pub score: f64,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn metric_names_round_trip_and_keep_the_stored_form() {
        use EvalMeasure::*;
        use EvalSubject::*;
        for (m, text) in [
            (EvalMetric::new(Base, Direct), "base/direct_score"),
            (
                EvalMetric::new(Trained, Refined(2)),
                "trained/refined_score@2",
            ),
            (EvalMetric::new(Trained, Sampled), "trained/sampled_score"),
            (
                EvalMetric::new(Trained, WinRateVsPrevious),
                "trained/win_rate_vs_previous",
            ),
        ] {
            assert_eq!(m.to_string(), text);
            assert_eq!(text.parse::<EvalMetric>().unwrap(), m);
            assert_eq!(serde_json::to_value(m).unwrap(), text);
        }
        assert_eq!(EvalMetric::step(Base, 0), EvalMetric::new(Base, Direct));
        assert_eq!(EvalMetric::step(Base, 3), EvalMetric::new(Base, Refined(3)));
        for bad in [
            "loss",
            "base/x",
            "other/direct_score",
            "base/refined_score@0",
        ] {
            assert!(bad.parse::<EvalMetric>().is_err(), "{bad}");
        }
    }
}
