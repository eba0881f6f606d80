//! Checkpoints of a preference training: the adapter's weights, AdamW's moments and the
//! trainer's state, written so that a kill never leaves a half-written one behind, and read
//! back to continue exactly where the run stopped.

use super::config::TrainConfig;
use super::train::{Trainer, data_fingerprint};
use crate::lora::{Lora, LoraConfig};
use crate::loss::{PreferencePair, RefLogps};
use crate::model::LlamaModel;
use crate::{Result, TrainError};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// What a checkpoint stores besides the adapter weights.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct TrainerState {
    step: usize,
    train: TrainConfig,
    lora: LoraConfig,
    /// Reference log-probs by pair index, so a resumed run does not recompute them…
    ref_logps: BTreeMap<usize, RefLogps>,
    /// …valid only for the data set with this fingerprint.
    data_fingerprint: Option<u64>,
}

pub const CHECKPOINT_WEIGHTS: &str = "adapter.safetensors";
pub const CHECKPOINT_STATE: &str = "trainer_state.json";
pub const CHECKPOINT_OPTIMIZER: &str = "optimizer.safetensors";

impl<'m> Trainer<'m> {
    /// Writes `adapter.safetensors` (the LoRA variables), `optimizer.safetensors` (AdamW
    /// moments) and `trainer_state.json` (step, configs, cached reference log-probs) into `dir`.
    /// Resuming from it continues the run exactly.
    pub fn save_checkpoint(&self, dir: &Path) -> Result<()> {
        let io = |path: PathBuf| move |source| TrainError::Io { path, source };
        std::fs::create_dir_all(dir).map_err(io(dir.into()))?;
        let weights = dir.join(CHECKPOINT_WEIGHTS);
        self.lora
            .varmap()
            .save(&weights)
            .map_err(|e| TrainError::Read {
                path: weights.clone(),
                reason: e.to_string(),
            })?;
        let optimizer = dir.join(CHECKPOINT_OPTIMIZER);
        candle_core::safetensors::save(&self.optimizer.state_tensors(), &optimizer)?;
        let state = TrainerState {
            step: self.step,
            train: self.config.clone(),
            lora: self.lora.config().clone(),
            ref_logps: self.ref_cache.clone(),
            data_fingerprint: self.ref_cache_data,
        };
        let path = dir.join(CHECKPOINT_STATE);
        let json = serde_json::to_string_pretty(&state).expect("state serializes");
        std::fs::write(&path, json).map_err(io(path))
    }

    /// [`Self::save_checkpoint`] into `<dir>.partial`, then swapped in for `dir`: a kill leaves
    /// either the old checkpoint, or none (only a partial one, which is never read).
    pub(crate) fn save_checkpoint_whole(&self, dir: &Path) -> Result<()> {
        let io = |path: &Path| {
            let path = path.to_path_buf();
            move |source| TrainError::Io { path, source }
        };
        let partial = dir.with_extension("partial");
        if partial.exists() {
            std::fs::remove_dir_all(&partial).map_err(io(&partial))?;
        }
        self.save_checkpoint(&partial)?;
        if dir.exists() {
            std::fs::remove_dir_all(dir).map_err(io(dir))?;
        }
        std::fs::rename(&partial, dir).map_err(io(dir))
    }

    /// [`Self::resume`] when `dir` holds a checkpoint of this very training: the same training
    /// and LoRA settings and the same pairs. `None` when there is none or it is of another.
    pub fn resume_matching(
        model: &'m LlamaModel,
        dir: &Path,
        config: &TrainConfig,
        lora: &LoraConfig,
        data: &[PreferencePair],
    ) -> Result<Option<Self>> {
        let Ok(text) = std::fs::read_to_string(dir.join(CHECKPOINT_STATE)) else {
            return Ok(None);
        };
        let Ok(state) = serde_json::from_str::<TrainerState>(&text) else {
            return Ok(None);
        };
        if state.train != *config
            || state.lora != *lora
            || state.data_fingerprint != Some(data_fingerprint(data))
        {
            return Ok(None);
        }
        Self::resume(model, dir).map(Some)
    }

    /// Rebuilds a trainer from [`Self::save_checkpoint`]'s directory on the same base model.
    pub fn resume(model: &'m LlamaModel, dir: &Path) -> Result<Self> {
        let path = dir.join(CHECKPOINT_STATE);
        let text = std::fs::read_to_string(&path).map_err(|source| TrainError::Io {
            path: path.clone(),
            source,
        })?;
        let state: TrainerState = serde_json::from_str(&text).map_err(|e| TrainError::Json {
            path: path.clone(),
            reason: e.to_string(),
        })?;
        let mut lora = Lora::new(
            model.config(),
            state.lora,
            model.master_dtype(),
            model.device(),
        )?;
        lora.load_weights(&dir.join(CHECKPOINT_WEIGHTS))?;
        let mut trainer = Trainer::new(model, lora, state.train)?;
        let optimizer = dir.join(CHECKPOINT_OPTIMIZER);
        let moments = candle_core::safetensors::load(&optimizer, model.device()).map_err(|e| {
            TrainError::Read {
                path: optimizer,
                reason: e.to_string(),
            }
        })?;
        trainer.optimizer.load_state(&moments, state.step)?;
        trainer.step = state.step;
        trainer.ref_cache = state.ref_logps;
        trainer.ref_cache_data = state.data_fingerprint;
        Ok(trainer)
    }
}
