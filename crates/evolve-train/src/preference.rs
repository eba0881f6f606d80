//! The candle LoRA-DPO trainer behind the loop's [`PreferenceTrainer`] trait: text pairs in, a
//! GGUF LoRA that llama.cpp loads out.
//!
//! Rounds continue one adapter: a round starts from the previous round's adapter weights, and
//! the DPO reference is the base model (adapter off), as with TRL on a PEFT model. The paper's
//! reference is the previous round's model; keeping the base avoids a second full model in
//! memory and is what LoRA users already run.

use crate::encode::ChatEncoder;
use crate::export::export_gguf_lora;
use crate::loss::PreferencePair;
use crate::{
    CHECKPOINT_WEIGHTS, LlamaModel, Lora, LoraConfig, Result, TrainConfig, TrainError, Trainer,
};
use candle_core::{DType, Device};
use evolve_core::{PreferenceTrainer, StepReport, TrainExample, TrainedAdapter};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// File name of the GGUF LoRA inside a round's output directory.
pub const ADAPTER_GGUF: &str = "adapter.gguf";

/// The mid-training checkpoint inside a round's output directory.
pub const CHECKPOINT_DIR: &str = "checkpoint";

pub struct LoraDpoTrainer {
    model_path: PathBuf,
    device: Device,
    dtype: DType,
    pub lora: LoraConfig,
    pub train: TrainConfig,
    /// Pairs longer than this (prompt + longer answer, in tokens) are left out of training.
    pub max_tokens: usize,
    /// Steps between checkpoints in `<out_dir>/checkpoint` (0 = none). A training killed and
    /// started again with the same pairs and settings continues from the last one.
    pub checkpoint_every: usize,
    /// Loaded on first use and kept across rounds: loading dequantizes the whole model.
    loaded: Option<(LlamaModel, ChatEncoder)>,
}

impl LoraDpoTrainer {
    pub fn new(model_path: &Path, lora: LoraConfig, train: TrainConfig) -> Self {
        LoraDpoTrainer {
            model_path: model_path.to_path_buf(),
            device: Device::Cpu,
            dtype: DType::F32,
            lora,
            train,
            max_tokens: 1024,
            checkpoint_every: 10,
            loaded: None,
        }
    }

    /// Trains on `device` in `dtype` (bf16 keeps adapters and losses in f32).
    pub fn with_device(mut self, device: Device, dtype: DType) -> Self {
        self.device = device;
        self.dtype = dtype;
        self.loaded = None;
        self
    }

    fn load(&mut self) -> Result<&(LlamaModel, ChatEncoder)> {
        if self.loaded.is_none() {
            let model = LlamaModel::load(&self.model_path, &self.device, self.dtype)?;
            let encoder = ChatEncoder::from_gguf(&evolve_gguf::read_path(&self.model_path)?)?;
            self.loaded = Some((model, encoder));
        }
        Ok(self.loaded.as_ref().expect("just loaded"))
    }

    /// Tokenized pairs, in order, without those over `max_tokens`; also how many were dropped.
    pub fn encode(&mut self, examples: &[TrainExample]) -> Result<(Vec<PreferencePair>, usize)> {
        let max = self.max_tokens;
        let (_, enc) = self.load()?;
        let mut pairs = Vec::with_capacity(examples.len());
        for e in examples {
            let pair = PreferencePair {
                kind: e.kind,
                prompt: enc.prompt(&e.prompt)?,
                chosen: enc.answer(&e.chosen)?,
                rejected: enc.answer(&e.rejected)?,
            };
            if pair.prompt.len() + pair.chosen.len().max(pair.rejected.len()) <= max {
                pairs.push(pair);
            }
        }
        let dropped = examples.len() - pairs.len();
        Ok((pairs, dropped))
    }

    fn run(
        &mut self,
        examples: &[TrainExample],
        init: Option<&Path>,
        out_dir: &Path,
        on_step: &mut dyn FnMut(&StepReport) -> bool,
    ) -> Result<TrainedAdapter> {
        let (pairs, dropped) = self.encode(examples)?;
        if pairs.is_empty() {
            return Err(TrainError::Data(format!(
                "all {dropped} pairs are longer than {} tokens",
                self.max_tokens
            )));
        }
        let (lora_cfg, train_cfg) = (self.lora.clone(), self.train.clone());
        let every = self.checkpoint_every;
        let (model, _) = self.load()?;
        let checkpoint = out_dir.join(CHECKPOINT_DIR);
        let mut trainer =
            match Trainer::resume_matching(model, &checkpoint, &train_cfg, &lora_cfg, &pairs)? {
                Some(resumed) => resumed,
                None => {
                    let mut lora = Lora::new(
                        model.config(),
                        lora_cfg,
                        model.master_dtype(),
                        model.device(),
                    )?;
                    if let Some(init) = init {
                        lora.load_weights(&checkpoint_of(init))?;
                    }
                    Trainer::new(model, lora, train_cfg)?
                }
            };
        trainer.checkpoint_every(&checkpoint, every);
        let outcome = trainer.train(&pairs, |m| {
            let mut metrics: BTreeMap<String, f64> = m
                .named()
                .into_iter()
                .map(|(k, v)| (k.to_string(), v))
                .collect();
            // EVOLVE's two terms apart, so a user sees whether refinement pairs are learned.
            for (prefix, part) in [("direct", &m.direct), ("refine", &m.refine)] {
                if part.n_pairs > 0 {
                    for (k, v) in part.named() {
                        metrics.insert(format!("{prefix}/{k}"), v);
                    }
                }
            }
            metrics.insert("pairs_dropped".into(), dropped as f64);
            on_step(&StepReport {
                step: m.step,
                total_steps: m.total_steps,
                metrics,
            })
        })?;
        let lora_config = trainer.lora().config().clone();
        let gguf_path = out_dir.join(ADAPTER_GGUF);
        if !outcome.cancelled {
            trainer.save_checkpoint(out_dir)?;
            // Written beside and renamed, so a crash never leaves a half-written adapter.
            let partial = out_dir.join(format!("{ADAPTER_GGUF}.partial"));
            export_gguf_lora(trainer.lora(), model.config(), &partial)?;
            std::fs::rename(&partial, &gguf_path).map_err(|source| TrainError::Io {
                path: gguf_path.clone(),
                source,
            })?;
            // Done: the mid-run checkpoint has served its purpose.
            let _ = std::fs::remove_dir_all(&checkpoint);
        }
        Ok(TrainedAdapter {
            gguf_path,
            rank: lora_config.rank,
            alpha: lora_config.alpha,
            steps: outcome.steps,
            completed: !outcome.cancelled,
        })
    }
}

/// The adapter weights saved next to a round's GGUF LoRA (the next round starts from them).
fn checkpoint_of(gguf: &Path) -> PathBuf {
    gguf.parent()
        .unwrap_or(Path::new("."))
        .join(CHECKPOINT_WEIGHTS)
}

impl PreferenceTrainer for LoraDpoTrainer {
    fn train(
        &mut self,
        examples: &[TrainExample],
        init_adapter: Option<&Path>,
        out_dir: &Path,
        on_step: &mut dyn FnMut(&StepReport) -> bool,
    ) -> std::result::Result<TrainedAdapter, evolve_core::TrainError> {
        std::fs::create_dir_all(out_dir).map_err(|e| {
            evolve_core::TrainError(format!("cannot create {}: {e}", out_dir.display()))
        })?;
        self.run(examples, init_adapter, out_dir, on_step)
            .map_err(|e| evolve_core::TrainError(e.to_string()))
    }
}
