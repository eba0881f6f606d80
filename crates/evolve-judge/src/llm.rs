//! [`LlmJudge`]: any [`Generator`] (a local GGUF on llama.cpp, a remote server) as a scorer.
//!
//! Judging is greedy so that the same answer always gets the same score, and the judge's whole
//! reply is kept in the score's details so that a surprising score can be read.

use crate::pairwise::{PairVerdict, PairwiseJudge, combine};
use crate::prompt::{
    normalise_rating, pairwise_prompt, parse_rating, parse_winner, pointwise_prompt,
};
use evolve_core::{
    ChatMessage, GenerationRequest, Generator, SamplerConfig, ScoreError, ScoreInput, ScoreValue,
    Scorer,
};
use serde_json::json;

/// Most tokens a judge may write; its reasoning must end with the verdict line within it.
pub const DEFAULT_JUDGE_MAX_TOKENS: u32 = 512;

/// How much of an unreadable reply an error message quotes.
const QUOTE_CHARS: usize = 80;

pub struct LlmJudge {
    generator: Box<dyn Generator + Send>,
    name: String,
    max_tokens: u32,
}

impl LlmJudge {
    /// `name` is stored with every score (e.g. `judge:qwen2.5-7b-instruct-q4_k_m.gguf`).
    pub fn new(generator: Box<dyn Generator + Send>, name: impl Into<String>) -> Self {
        Self {
            generator,
            name: name.into(),
            max_tokens: DEFAULT_JUDGE_MAX_TOKENS,
        }
    }

    pub fn with_max_tokens(mut self, max_tokens: u32) -> Self {
        self.max_tokens = max_tokens;
        self
    }

    fn failed(&self, reason: impl Into<String>) -> ScoreError {
        ScoreError::Failed {
            scorer: self.name.clone(),
            reason: reason.into(),
        }
    }

    /// Greedy replies to `user_prompts`, all in one batch (one prompt evaluation each).
    fn replies(&mut self, user_prompts: &[String]) -> Result<Vec<String>, ScoreError> {
        let sampler = SamplerConfig::greedy(self.max_tokens);
        let requests = user_prompts
            .iter()
            .map(|p| {
                let formatted = self
                    .generator
                    .format_chat(&[ChatMessage::user(p.as_str())])
                    .map_err(|e| self.failed(format!("cannot format the judge prompt: {e}")))?;
                Ok(GenerationRequest::new(formatted, sampler.clone(), 1))
            })
            .collect::<Result<Vec<_>, ScoreError>>()?;
        let out = self
            .generator
            .generate_batch(&requests, &mut |_| true)
            .map_err(|e| self.failed(format!("the judge model failed: {e}")))?;
        out.into_iter()
            .map(|samples| {
                samples
                    .into_iter()
                    .next()
                    .map(|c| c.text)
                    .ok_or_else(|| self.failed("the judge model returned no reply"))
            })
            .collect()
    }

    fn read_rating(&self, reply: String) -> Result<ScoreValue, ScoreError> {
        match parse_rating(&reply) {
            Some(rating) => Ok(ScoreValue {
                value: normalise_rating(rating),
                details: json!({ "rating": rating, "reply": reply }),
            }),
            None => Err(self.failed(format!(
                "no \"Rating: N\" line in the judge's reply: {:?}",
                quote(&reply)
            ))),
        }
    }

    /// Scores many answers with one batched generation; result `i` belongs to `inputs[i]`.
    /// An unreadable reply fails only its own answer.
    pub fn score_many(
        &mut self,
        inputs: &[ScoreInput<'_>],
    ) -> Result<Vec<Result<ScoreValue, ScoreError>>, ScoreError> {
        let prompts: Vec<String> = inputs
            .iter()
            .map(|i| pointwise_prompt(i.prompt, i.reference, i.answer))
            .collect();
        let replies = self.replies(&prompts)?;
        Ok(replies.into_iter().map(|r| self.read_rating(r)).collect())
    }
}

/// The first [`QUOTE_CHARS`] characters of a reply.
fn quote(reply: &str) -> String {
    reply.chars().take(QUOTE_CHARS).collect()
}

impl Scorer for LlmJudge {
    fn name(&self) -> &str {
        &self.name
    }

    /// Value: the 1–10 rating mapped onto 0..=1; details: `{rating, reply}`.
    fn score(&mut self, input: &ScoreInput<'_>) -> Result<ScoreValue, ScoreError> {
        let prompt = pointwise_prompt(input.prompt, input.reference, input.answer);
        let reply = self.replies(&[prompt])?.remove(0);
        self.read_rating(reply)
    }

    fn pairwise(&mut self) -> Option<&mut dyn PairwiseJudge> {
        Some(self)
    }
}

impl PairwiseJudge for LlmJudge {
    /// Both orders go to the judge in one batch; either reply unreadable fails the pair.
    fn prefer(
        &mut self,
        prompt: &str,
        reference: Option<&str>,
        a: &str,
        b: &str,
    ) -> Result<PairVerdict, ScoreError> {
        let prompts = [
            pairwise_prompt(prompt, reference, a, b),
            pairwise_prompt(prompt, reference, b, a),
        ];
        let replies = self.replies(&prompts)?;
        let read = |reply: &str, order: &str| {
            parse_winner(reply).ok_or_else(|| {
                self.failed(format!(
                    "no \"Winner: A|B|tie\" line in the judge's reply ({order} order): {:?}",
                    quote(reply)
                ))
            })
        };
        let ab = read(&replies[0], "a,b")?;
        let ba = read(&replies[1], "b,a")?;
        let (winner, p_a) = combine(ab, ba);
        Ok(PairVerdict {
            winner,
            p_a,
            details: json!({
                "a_first": { "reply": replies[0], "winner_shown": format!("{ab:?}") },
                "b_first": { "reply": replies[1], "winner_shown": format!("{ba:?}") },
            }),
        })
    }
}
