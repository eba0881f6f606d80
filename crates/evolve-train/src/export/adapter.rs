//! An adapter trained here, loaded back with its base model for the exports that need the
//! weights themselves (PEFT, merged GGUF) rather than its GGUF LoRA file.

use super::{TokenizerMetadata, WeightType, export_gguf_model, export_peft};
use crate::{LlamaModel, Lora, LoraConfig, Result};
use candle_core::{DType, Device};
use std::path::Path;

/// A base model (in f32 on the CPU) and a LoRA adapter's trained weights on it.
pub struct TrainedAdapter {
    model: LlamaModel,
    lora: Lora,
}

impl TrainedAdapter {
    /// The base model `base` and the adapter checkpoint `weights` (`adapter.safetensors`) of
    /// rank `rank` and scale `alpha`.
    pub fn load(base: &Path, weights: &Path, rank: usize, alpha: f64) -> Result<Self> {
        let model = LlamaModel::load(base, &Device::Cpu, DType::F32)?;
        let config = LoraConfig {
            rank,
            alpha,
            ..LoraConfig::default()
        };
        let mut lora = Lora::new(model.config(), config, model.master_dtype(), model.device())?;
        lora.load_weights(weights)?;
        Ok(TrainedAdapter { model, lora })
    }

    /// PEFT `adapter_config.json` + `adapter_model.safetensors` in the folder `out`.
    pub fn export_peft(&self, out: &Path, base_name: Option<&str>) -> Result<()> {
        export_peft(&self.lora, self.model.config(), out, base_name)
    }

    /// The base with the adapter merged in, as a Q8_0 GGUF with the base's tokenizer.
    pub fn export_merged_gguf(&self, out: &Path, base: &Path) -> Result<()> {
        let merged = self.model.merged(&self.lora)?;
        export_gguf_model(
            &merged,
            out,
            WeightType::Q8_0,
            TokenizerMetadata::CopyFrom(base),
        )
    }
}
