//! Log-probability of a given completion, for scoring answers and checking adapters.
//!
//! llama.cpp has no log-prob API, so we ask for logits at every completion position in one
//! decode and take the log-softmax ourselves, in f64 (summing hundreds of tokens in f32 loses
//! the differences between answers that DPO cares about).

use crate::LlamaError;
use crate::engine::LlamaEngine;
use llama_cpp_2::llama_batch::LlamaBatch;
use llama_cpp_2::token::LlamaToken;

/// `log p(completion | prompt)` and its per-token terms.
#[derive(Debug, Clone, PartialEq)]
pub struct SequenceLogprob {
    pub sum: f64,
    pub per_token: Vec<f64>,
}

impl LlamaEngine {
    /// Scores `completion_tokens` after `prompt_tokens` (both already tokenized; the prompt
    /// should include BOS as [`LlamaEngine::tokenize`] adds it) with the active adapter.
    pub fn sequence_logprob(
        &self,
        prompt_tokens: &[i32],
        completion_tokens: &[i32],
    ) -> Result<SequenceLogprob, LlamaError> {
        if prompt_tokens.is_empty() {
            return Err(LlamaError::EmptyPrompt);
        }
        if completion_tokens.is_empty() {
            return Ok(SequenceLogprob {
                sum: 0.0,
                per_token: Vec::new(),
            });
        }
        self.check_fits(prompt_tokens.len(), completion_tokens.len() as u32)?;
        let n_vocab = self.n_vocab();
        if let Some(&bad) = completion_tokens
            .iter()
            .find(|&&t| t < 0 || t as usize >= n_vocab)
        {
            return Err(LlamaError::Decode(format!(
                "token {bad} is outside the vocabulary of {n_vocab}"
            )));
        }
        // The last completion token predicts nothing we score, so it is not fed.
        let fed: Vec<i32> = prompt_tokens
            .iter()
            .chain(&completion_tokens[..completion_tokens.len() - 1])
            .copied()
            .collect();
        let first_scored = prompt_tokens.len() - 1;
        let mut ctx = self.new_context(self.n_ctx_per_sequence(), fed.len() as u32, 1)?;
        let mut batch = LlamaBatch::new(fed.len(), 1);
        for (i, &t) in fed.iter().enumerate() {
            batch
                .add(LlamaToken(t), i as i32, &[0], i >= first_scored)
                .map_err(|e| LlamaError::Decode(e.to_string()))?;
        }
        self.count(|s| {
            s.prompt_evals += 1;
            s.prompt_tokens_evaluated += fed.len() as u64;
        });
        self.decode(&mut ctx, &mut batch)?;
        let per_token: Vec<f64> = completion_tokens
            .iter()
            .enumerate()
            .map(|(j, &t)| {
                log_softmax_at(ctx.get_logits_ith((first_scored + j) as i32), t as usize)
            })
            .collect();
        Ok(SequenceLogprob {
            sum: per_token.iter().sum(),
            per_token,
        })
    }
}

/// `log_softmax(logits)[index]` in f64, shifted by the maximum for stability.
pub fn log_softmax_at(logits: &[f32], index: usize) -> f64 {
    let max = logits
        .iter()
        .fold(f64::NEG_INFINITY, |m, &x| m.max(x as f64));
    let log_sum = logits
        .iter()
        .map(|&x| (x as f64 - max).exp())
        .sum::<f64>()
        .ln();
    logits[index] as f64 - max - log_sum
}
