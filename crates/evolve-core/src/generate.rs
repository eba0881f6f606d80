//! The engine-independent generation interface.
//!
//! Collection, refinement and the UI talk to a [`Generator`] so that they never see llama.cpp
//! types, and so that they can be tested with a scripted fake.

use crate::SamplerConfig;
use serde::{Deserialize, Serialize};

/// Who speaks a chat turn.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    System,
    User,
    Assistant,
}

impl Role {
    /// The role name chat templates expect.
    pub fn as_str(self) -> &'static str {
        match self {
            Role::System => "system",
            Role::User => "user",
            Role::Assistant => "assistant",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChatMessage {
    pub role: Role,
    pub content: String,
}

impl ChatMessage {
    pub fn system(content: impl Into<String>) -> Self {
        Self {
            role: Role::System,
            content: content.into(),
        }
    }
    pub fn user(content: impl Into<String>) -> Self {
        Self {
            role: Role::User,
            content: content.into(),
        }
    }
    pub fn assistant(content: impl Into<String>) -> Self {
        Self {
            role: Role::Assistant,
            content: content.into(),
        }
    }
}

/// `n` samples of one already formatted prompt. Sample `i` is drawn with seed
/// `sampler.seed + i` (wrapping), so each sample is reproducible on its own.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct GenerationRequest {
    pub prompt: String,
    pub sampler: SamplerConfig,
    pub n: usize,
}

impl GenerationRequest {
    pub fn new(prompt: impl Into<String>, sampler: SamplerConfig, n: usize) -> Self {
        Self {
            prompt: prompt.into(),
            sampler,
            n,
        }
    }

    /// The seed sample `sample` of this request is drawn with.
    pub fn sample_seed(&self, sample: usize) -> u32 {
        self.sampler.seed.wrapping_add(sample as u32)
    }
}

/// One sampled answer.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Completion {
    pub text: String,
    pub tokens: Vec<i32>,
    pub prompt_tokens: usize,
    /// True when the model ended the answer itself (end-of-generation token or a stop string);
    /// false when `max_tokens` or a cancellation cut it.
    pub stopped: bool,
    /// From the request's start to this sample's end (samples of one batch overlap).
    pub duration_ms: u64,
    pub seed: u32,
}

/// Progress reported while a batch runs. The callback returns `false` to cancel the whole call.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum GenerationEvent {
    /// Text of sample `sample` of request `request` that became safe to show (may be empty: an
    /// incomplete UTF-8 character or a possible stop string is held back).
    Token {
        request: usize,
        sample: usize,
        text: String,
    },
    /// That sample is complete; its [`Completion`] is in the result. (Not sent for samples cut
    /// short by a cancellation.)
    Finished {
        request: usize,
        sample: usize,
        stopped: bool,
    },
}

#[derive(Debug, thiserror::Error)]
pub enum GenerateError {
    #[error("request {request}: {reason}")]
    InvalidRequest { request: usize, reason: String },
    /// The engine's own error (e.g. `evolve_llama::LlamaError`); downcast for details.
    #[error(transparent)]
    Engine(Box<dyn std::error::Error + Send + Sync>),
}

/// A chain step is one answer: refuses requests of `n != 1` before any work.
fn check_chain_requests(requests: &[GenerationRequest]) -> Result<(), GenerateError> {
    match requests.iter().position(|r| r.n != 1) {
        Some(request) => Err(GenerateError::InvalidRequest {
            request,
            reason: format!(
                "a chain step is one answer, not n = {}",
                requests[request].n
            ),
        }),
        None => Ok(()),
    }
}

impl GenerateError {
    /// This error with a refused request's index mapped through `owners` (request `i` of a
    /// sub-batch is `owners[i]` of the caller's).
    pub fn for_owners(self, owners: &[usize]) -> Self {
        match self {
            GenerateError::InvalidRequest { request, reason } => GenerateError::InvalidRequest {
                request: owners[request],
                reason,
            },
            other => other,
        }
    }
}

impl GenerationEvent {
    /// The `(request, sample)` the event is about.
    pub fn ids(&self) -> (usize, usize) {
        match self {
            GenerationEvent::Token {
                request, sample, ..
            }
            | GenerationEvent::Finished {
                request, sample, ..
            } => (*request, *sample),
        }
    }

    /// The same event about `(request, sample)`.
    pub fn retagged(self, request: usize, sample: usize) -> Self {
        match self {
            GenerationEvent::Token { text, .. } => GenerationEvent::Token {
                request,
                sample,
                text,
            },
            GenerationEvent::Finished { stopped, .. } => GenerationEvent::Finished {
                request,
                sample,
                stopped,
            },
        }
    }
}

/// The next turn of a chain: the whole conversation so far (formatted by the generator) and
/// how to sample its answer.
#[derive(Debug, Clone, PartialEq)]
pub struct FollowUp {
    pub messages: Vec<ChatMessage>,
    pub sampler: SamplerConfig,
}

/// Something that turns prompts into sampled answers.
pub trait Generator {
    /// Formats a conversation with the model's chat template, ending with the assistant's turn.
    fn format_chat(&self, messages: &[ChatMessage]) -> Result<String, GenerateError>;

    /// Runs every request; result `[r][i]` is sample `i` of request `r`.
    ///
    /// When `events` returns `false` the call stops at once and returns what exists: samples
    /// that had started keep their partial text, samples that had not started are missing
    /// (so an inner `Vec` may be shorter than `n`).
    fn generate_batch(
        &mut self,
        requests: &[GenerationRequest],
        events: &mut dyn FnMut(GenerationEvent) -> bool,
    ) -> Result<Vec<Vec<Completion>>, GenerateError>;

    /// Runs chains of answers: request `r` (its `n` must be 1) is sampled, then
    /// `follow(r, chain)` is asked for the turn that continues the chain (a refinement
    /// conversation that restates the one so far), formatted with [`Generator::format_chat`],
    /// and so on until it answers `None`. Result `[r]` is chain `r`'s completions in order;
    /// events carry `request = r` and `sample` = the step.
    ///
    /// This default runs every chain's next step together, one [`Generator::generate_batch`]
    /// call per step. An engine with a prompt cache overrides it to continue each chain where
    /// its previous answer left the cache, evaluating only what the follow-up adds. Cancellation
    /// as in `generate_batch`: every chain ends with the step that was running.
    fn generate_chains(
        &mut self,
        requests: &[GenerationRequest],
        follow: &mut dyn FnMut(usize, &[Completion]) -> Option<FollowUp>,
        events: &mut dyn FnMut(GenerationEvent) -> bool,
    ) -> Result<Vec<Vec<Completion>>, GenerateError> {
        check_chain_requests(requests)?;
        let mut chains: Vec<Vec<Completion>> = vec![Vec::new(); requests.len()];
        let mut pending: Vec<(usize, GenerationRequest)> =
            requests.iter().cloned().enumerate().collect();
        while !pending.is_empty() {
            let (owners, batch): (Vec<usize>, Vec<GenerationRequest>) = pending.drain(..).unzip();
            let steps: Vec<usize> = owners.iter().map(|&c| chains[c].len()).collect();
            let mut cancelled = false;
            let mut forward = |event: GenerationEvent| {
                let (request, _) = event.ids();
                cancelled = !events(event.retagged(owners[request], steps[request]));
                !cancelled
            };
            let results = self
                .generate_batch(&batch, &mut forward)
                .map_err(|e| e.for_owners(&owners))?;
            for (&c, samples) in owners.iter().zip(results) {
                chains[c].extend(samples.into_iter().take(1));
            }
            if cancelled {
                break;
            }
            for &c in &owners {
                if let Some(next) = follow(c, &chains[c]) {
                    let prompt = self.format_chat(&next.messages)?;
                    pending.push((c, GenerationRequest::new(prompt, next.sampler, 1)));
                }
            }
        }
        Ok(chains)
    }

    /// Applies a LoRA adapter file to the following generations (`None`: the base model).
    /// Generators that cannot apply adapters refuse rather than silently ignore one.
    fn use_adapter(
        &mut self,
        path: Option<&std::path::Path>,
        scale: f32,
    ) -> Result<(), GenerateError> {
        let _ = scale;
        match path {
            None => Ok(()),
            Some(p) => Err(GenerateError::Engine(
                format!(
                    "this generator cannot apply adapters (asked for {})",
                    p.display()
                )
                .into(),
            )),
        }
    }
}
