//! One error type for the training engine. Its `Display` is one line that names what failed,
//! because the CLI and the UI show it as is.

use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
pub enum TrainError {
    #[error("cannot open {}: {source}", path.display())]
    Open {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("candle cannot read {}: {reason}", path.display())]
    Read { path: PathBuf, reason: String },
    #[error(transparent)]
    Gguf(#[from] evolve_gguf::GgufError),
    #[error("unsupported architecture '{0}' (supported: llama, qwen2, qwen3, gemma3, phi3)")]
    UnsupportedArchitecture(String),
    #[error("model metadata: missing or invalid '{0}'")]
    Metadata(String),
    #[error("model tensor '{name}': {reason}")]
    Tensor { name: String, reason: String },
    #[error("invalid configuration: {0}")]
    Config(String),
    #[error("invalid training data: {0}")]
    Data(String),
    #[error("tensor computation failed: {0}")]
    Candle(#[from] candle_core::Error),
    #[error("cannot write or read {}: {source}", path.display())]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("cannot parse {}: {reason}", path.display())]
    Json { path: PathBuf, reason: String },
    #[error("training diverged at step {step}: the loss is {loss}")]
    NonFinite { step: usize, loss: f64 },
}

pub type Result<T, E = TrainError> = std::result::Result<T, E>;
