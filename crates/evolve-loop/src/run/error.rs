//! Why a run stopped: the errors of its steps, a pause, and prompts the generator refused named
//! by their place in the dataset.

use evolve_store::Prompt;
use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error(transparent)]
    Store(#[from] evolve_store::StoreError),
    #[error("generation failed: {0}")]
    Generate(#[from] evolve_core::GenerateError),
    #[error("scoring failed on generation {generation}: {source}")]
    Score {
        generation: i64,
        source: evolve_core::ScoreError,
    },
    #[error(transparent)]
    Train(#[from] evolve_core::TrainFailed),
    /// A prompt the generator refused (e.g. longer than the context), named so it can be fixed.
    #[error(
        "prompt #{idx} of the dataset (\"{preview}\") cannot be sampled: {reason}; shorten or remove it, lower max_tokens or raise the context, then resume"
    )]
    Prompt {
        idx: i64,
        preview: String,
        reason: String,
    },
    #[error("run {0} not found")]
    UnknownRun(i64),
    #[error("invalid run configuration: {0}")]
    Config(String),
    #[error("paused: the run stopped at the user's request and resumes where it left off")]
    Paused,
    /// A bug (ours or a library's) panicked mid-round; the round is marked failed with this and a
    /// resume retries from the step it was in.
    #[error("internal error (please report it): {0}; resuming retries this step")]
    Panicked(String),
    #[error("cannot compute the checksum of {path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
}

/// Turns a generator's "request r is invalid" into an error naming the dataset prompt.
pub(super) fn name_prompt<'p>(e: RunError, prompt_of: impl Fn(usize) -> &'p Prompt) -> RunError {
    match e {
        RunError::Generate(evolve_core::GenerateError::InvalidRequest { request, reason }) => {
            let p = prompt_of(request);
            let mut preview: String = p.prompt.chars().take(40).collect();
            if p.prompt.chars().count() > 40 {
                preview.push('…');
            }
            RunError::Prompt {
                idx: p.idx,
                preview,
                reason,
            }
        }
        other => other,
    }
}
