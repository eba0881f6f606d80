//! Training behind one trait, so the loop does not care whether candle, a remote box or a test
//! double does the work.

use crate::PairKind;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// One preference pair as text: `prompt` is already formatted with the chat template (for a
/// refinement pair it is the chat that shows the weak answer and asks for a better one).
#[derive(Debug, Clone, PartialEq)]
pub struct TrainExample {
    pub kind: PairKind,
    pub prompt: String,
    pub chosen: String,
    pub rejected: String,
}

/// Metrics of one optimizer step, named as TRL names them (`loss`, `rewards/margins`, …).
#[derive(Debug, Clone, PartialEq)]
pub struct StepReport {
    pub step: usize,
    pub total_steps: usize,
    pub metrics: BTreeMap<String, f64>,
}

/// What a finished training run left on disk.
#[derive(Debug, Clone, PartialEq)]
pub struct TrainedAdapter {
    /// GGUF LoRA that llama.cpp loads.
    pub gguf_path: PathBuf,
    pub rank: usize,
    pub alpha: f64,
    pub steps: usize,
    /// False when `on_step` cancelled the run before the end.
    pub completed: bool,
}

#[derive(Debug, thiserror::Error)]
#[error("training failed: {0}")]
pub struct TrainError(pub String);

pub trait PreferenceTrainer {
    /// Trains an adapter on `examples`, starting from `init_adapter` (the previous round's) when
    /// given, writing into `out_dir`. `on_step` returns `false` to cancel.
    fn train(
        &mut self,
        examples: &[TrainExample],
        init_adapter: Option<&Path>,
        out_dir: &Path,
        on_step: &mut dyn FnMut(&StepReport) -> bool,
    ) -> Result<TrainedAdapter, TrainError>;
}
