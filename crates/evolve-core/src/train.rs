//! Training behind one trait, so the loop does not care whether candle, a remote box or a test
//! double does the work.

use crate::PairKind;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// The LoRA-DPO defaults, in one place for the run settings, the trainer and the LoRA config:
/// rank 16 and α 32 on every linear layer, β 0.1, lr 5e-6, an effective batch of 8 (2 × 4
/// accumulated), one epoch. These are the common settings for LoRA-DPO on 0.5–8 B instruct
/// models (TRL's DPO trainer defaults to β 0.1; published LoRA-DPO recipes use r 16, α 32 and
/// learning rates around 5e-6). Tiny models want far larger learning rates: the built-in task
/// model's run uses its own (`DemoSettings::run_config`).
pub mod defaults {
    pub const LORA_RANK: usize = 16;
    pub const LORA_ALPHA: f64 = 32.0;
    pub const BETA: f64 = 0.1;
    pub const LR: f64 = 5e-6;
    pub const BATCH_SIZE: usize = 2;
    pub const GRAD_ACCUM: usize = 4;
    pub const EPOCHS: usize = 1;
}

/// One preference pair as text: `prompt` is already formatted with the chat template (for a
/// refinement pair it is the chat that shows the weak answer and asks for a better one).
#[derive(Debug, Clone, PartialEq)]
pub struct TrainExample {
    pub kind: PairKind,
    pub prompt: String,
    pub chosen: String,
    pub rejected: String,
    /// Whether each answer ended by itself. Only a finished answer is trained with the
    /// end-of-turn token after it; one cut at `max_tokens` ends where it was cut.
    pub chosen_finished: bool,
    pub rejected_finished: bool,
    /// The token ids each answer was sampled as, when known: trained on exactly, if they spell
    /// the answer's text, instead of re-tokenising it (which can split it differently).
    pub chosen_ids: Option<Vec<u32>>,
    pub rejected_ids: Option<Vec<u32>>,
}

impl TrainExample {
    /// A pair of two finished answers.
    pub fn new(
        kind: PairKind,
        prompt: impl Into<String>,
        chosen: impl Into<String>,
        rejected: impl Into<String>,
    ) -> Self {
        TrainExample {
            kind,
            prompt: prompt.into(),
            chosen: chosen.into(),
            rejected: rejected.into(),
            chosen_finished: true,
            rejected_finished: true,
            chosen_ids: None,
            rejected_ids: None,
        }
    }
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
pub struct TrainFailed(pub String);

/// What a training run optimises.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Objective {
    /// EVOLVE's preference loss over the direct and refinement pairs.
    #[default]
    Preference,
    /// Supervised warm-up: the NLL of the chosen answers alone, the rejected ones unused (the
    /// paper's round-0 SFT on direct and refinement data).
    Sft,
}

pub trait PreferenceTrainer {
    /// Trains an adapter on `examples` for `objective`, starting from `init_adapter` (the
    /// previous round's) when given, writing into `out_dir`. `on_step` returns `false` to cancel.
    fn train_for(
        &mut self,
        objective: Objective,
        examples: &[TrainExample],
        init_adapter: Option<&Path>,
        out_dir: &Path,
        on_step: &mut dyn FnMut(&StepReport) -> bool,
    ) -> Result<TrainedAdapter, TrainFailed>;

    /// [`Self::train_for`] the preference objective.
    fn train(
        &mut self,
        examples: &[TrainExample],
        init_adapter: Option<&Path>,
        out_dir: &Path,
        on_step: &mut dyn FnMut(&StepReport) -> bool,
    ) -> Result<TrainedAdapter, TrainFailed> {
        self.train_for(
            Objective::Preference,
            examples,
            init_adapter,
            out_dir,
            on_step,
        )
    }
}
