//! Why a scorer could not be built: its spec, its model file, or the engine behind it. Every
//! message is one line, and one naming the spec where a spec was given.

use evolve_core::ScorerSpec;

#[derive(Debug, thiserror::Error)]
pub enum JudgeError {
    /// The spec does not parse.
    #[error(transparent)]
    Spec(#[from] evolve_core::ParseScorerError),
    #[error("scorer '{0}' is not a rule-based verifier")]
    NotAVerifier(ScorerSpec),
    /// The model file is not a readable GGUF.
    #[error("{file}: {source}")]
    Gguf {
        file: String,
        source: evolve_gguf::GgufError,
    },
    /// The file has no head llama.cpp can run as a reward model, or one that cannot rank.
    #[error("{0}")]
    NotARewardModel(String),
    #[error(transparent)]
    Llama(#[from] evolve_llama::LlamaError),
    #[error("llama.cpp could not load {file}: {source}")]
    Load {
        file: String,
        source: llama_cpp_2::LlamaModelLoadError,
    },
    /// The engine behind the scorer `spec` could not start.
    #[error("scorer '{spec}': {source}")]
    Scorer {
        spec: String,
        source: Box<dyn std::error::Error + Send + Sync>,
    },
}
