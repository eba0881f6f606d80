//! Sampler settings shared by the generators and stored with every generation.

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct SamplerConfig {
    pub temperature: f32,
    pub top_p: f32,
    pub top_k: i32,
    pub min_p: f32,
    pub repeat_penalty: f32,
    pub seed: u32,
    pub max_tokens: u32,
    pub stop: Vec<String>,
    /// Never draw an end-of-generation token: every answer runs to `max_tokens` (benchmarks;
    /// llama-server's and vLLM's `ignore_eos`). Stop strings still end an answer.
    pub ignore_eos: bool,
}

impl Default for SamplerConfig {
    fn default() -> Self {
        Self {
            temperature: 0.8,
            top_p: 0.95,
            top_k: 40,
            min_p: 0.05,
            repeat_penalty: 1.0,
            seed: 42,
            max_tokens: 256,
            stop: Vec::new(),
            ignore_eos: false,
        }
    }
}

impl SamplerConfig {
    /// Deterministic argmax decoding, for checks and evaluation.
    pub fn greedy(max_tokens: u32) -> Self {
        Self {
            temperature: 0.0,
            top_p: 1.0,
            top_k: 0,
            min_p: 0.0,
            max_tokens,
            ..Self::default()
        }
    }

    pub fn is_greedy(&self) -> bool {
        self.temperature <= 0.0
    }

    /// Refuses values no sampler takes, naming the field (`prefix` says which sampler, e.g.
    /// `sampler.`), before any work starts.
    pub fn validate(&self, prefix: &str) -> Result<(), String> {
        let bad = |field: &str, rule: &str, got: String| {
            Err(format!("{prefix}{field} must be {rule} (got {got})"))
        };
        let t = self.temperature;
        if !t.is_finite() || !(0.0..=10.0).contains(&t) {
            return bad("temperature", "between 0 and 10", t.to_string());
        }
        for (field, v) in [("top_p", self.top_p), ("min_p", self.min_p)] {
            if !v.is_finite() || !(0.0..=1.0).contains(&v) {
                return bad(field, "between 0 and 1", v.to_string());
            }
        }
        if self.top_k < 0 {
            return bad("top_k", "0 (off) or more", self.top_k.to_string());
        }
        let r = self.repeat_penalty;
        if !r.is_finite() || !(0.5..=5.0).contains(&r) {
            return bad("repeat_penalty", "between 0.5 and 5", r.to_string());
        }
        if !(1..=MAX_TOKENS_LIMIT).contains(&self.max_tokens) {
            return bad(
                "max_tokens",
                &format!("between 1 and {MAX_TOKENS_LIMIT}"),
                self.max_tokens.to_string(),
            );
        }
        if self.stop.iter().any(String::is_empty) {
            return bad("stop", "non-empty strings", format!("{:?}", self.stop));
        }
        Ok(())
    }
}

/// The most tokens one answer may ask for (far beyond any context a local model has).
pub const MAX_TOKENS_LIMIT: u32 = 131_072;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn out_of_range_values_are_refused_by_name() {
        assert!(SamplerConfig::default().validate("sampler.").is_ok());
        assert!(SamplerConfig::greedy(64).validate("eval_sampler.").is_ok());
        let cases: [(&str, SamplerConfig); 6] = [
            (
                "sampler.temperature",
                SamplerConfig {
                    temperature: -1.0,
                    ..Default::default()
                },
            ),
            (
                "sampler.temperature",
                SamplerConfig {
                    temperature: f32::NAN,
                    ..Default::default()
                },
            ),
            (
                "sampler.top_p",
                SamplerConfig {
                    top_p: 1.5,
                    ..Default::default()
                },
            ),
            (
                "sampler.top_k",
                SamplerConfig {
                    top_k: -3,
                    ..Default::default()
                },
            ),
            (
                "sampler.repeat_penalty",
                SamplerConfig {
                    repeat_penalty: 0.0,
                    ..Default::default()
                },
            ),
            (
                "sampler.max_tokens",
                SamplerConfig {
                    max_tokens: 0,
                    ..Default::default()
                },
            ),
        ];
        for (field, c) in cases {
            let e = c.validate("sampler.").unwrap_err();
            assert!(e.starts_with(field), "{e}");
        }
    }
}
