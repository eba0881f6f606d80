//! An adapter trained here, loaded back with its base model for the exports that need the
//! weights themselves (PEFT, merged GGUF) rather than its GGUF LoRA file.

use super::{
    TokenizerMetadata, WeightType, export_gguf_lora, export_gguf_merged_into, export_peft,
};
use crate::loss::{PreferencePair, evolve_loss, reference_logps};
use crate::{LlamaModel, Lora, LoraConfig, Result, TrainConfig};
use candle_core::{DType, Device, Tensor};
use evolve_core::rng::SplitMix64;
use std::path::Path;

/// A base model and a LoRA adapter's trained weights on it. The base is loaded as training
/// loads it (`LlamaModel::load_quantized`: quantized matrices stay quantized, f32 otherwise), so
/// an adapter export of an 8B Q4_K model holds ~4 GB rather than 32 GB of f32 weights.
pub struct AdapterFiles {
    model: LlamaModel,
    lora: Lora,
}

impl AdapterFiles {
    /// The base model `base` and the adapter checkpoint `weights` (`adapter.safetensors`) of
    /// rank `rank` and scale `alpha`.
    pub fn load(base: &Path, weights: &Path, rank: usize, alpha: f64) -> Result<Self> {
        let model = LlamaModel::load_quantized(base, &Device::Cpu, DType::F32)?;
        let config = LoraConfig {
            rank,
            alpha,
            ..LoraConfig::default()
        };
        let mut lora = Lora::new(model.config(), config, model.master_dtype(), model.device())?;
        lora.load_weights(weights)?;
        Ok(AdapterFiles { model, lora })
    }

    /// The base `base` with a fresh adapter of rank `rank` whose `B` is random (normal, standard
    /// deviation `std`, from `seed`) instead of zero: an adapter that moves the logits, for
    /// checking the exports against other implementations without a training run.
    pub fn random(base: &Path, rank: usize, alpha: f64, seed: u64, std: f64) -> Result<Self> {
        let model = LlamaModel::load_quantized(base, &Device::Cpu, DType::F32)?;
        let config = LoraConfig {
            rank,
            alpha,
            seed,
            ..LoraConfig::default()
        };
        let lora = Lora::new(model.config(), config, model.master_dtype(), model.device())?;
        for (name, var) in lora.named_vars() {
            if name.ends_with("lora_b") {
                let mut rng = SplitMix64::for_tensor(seed, &name);
                let values: Vec<f32> = (0..var.elem_count())
                    .map(|_| (rng.next_normal() * std) as f32)
                    .collect();
                var.set(&Tensor::from_vec(values, var.shape(), var.device())?)?;
            }
        }
        Ok(AdapterFiles { model, lora })
    }

    /// The adapter's weights as a checkpoint (`adapter.safetensors`), as training saves them.
    pub fn save_weights(&self, path: &Path) -> Result<()> {
        Ok(self.lora.varmap().save(path)?)
    }

    /// The adapter as a GGUF LoRA for llama.cpp.
    pub fn export_gguf_lora(&self, out: &Path) -> Result<()> {
        export_gguf_lora(&self.lora, self.model.config(), out)
    }

    /// The next-token logits after every token of `ids` (f32), with or without the adapter.
    pub fn logits(&self, ids: &[u32], adapted: bool) -> Result<Vec<Vec<f32>>> {
        let x = Tensor::new(ids, self.model.device())?.unsqueeze(0)?;
        let lora = adapted.then_some(&self.lora);
        Ok(self.model.forward_with(&x, lora)?.get(0)?.to_vec2()?)
    }

    /// The EVOLVE loss of `pairs` under `config` (the base as reference), and its gradient
    /// for every adapter variable written as a PEFT folder `grads_dir` (gradients where the
    /// weights would be, in PEFT's layout): what one step of PyTorch + PEFT on the same weights
    /// and pairs must reproduce.
    pub fn loss_and_grads(
        &self,
        pairs: &[PreferencePair],
        config: &TrainConfig,
        grads_dir: &Path,
    ) -> Result<f64> {
        let pairs: Vec<&PreferencePair> = pairs.iter().collect();
        let pad = config.optim.pad_id;
        let refs = reference_logps(&self.model, None, &pairs, config.dpo_kind, pad)?;
        let out = evolve_loss(
            &self.model,
            &self.lora,
            &pairs,
            &refs,
            &config.loss_config(),
            pad,
        )?;
        let loss = out.loss.to_dtype(DType::F64)?.to_scalar::<f64>()?;
        let grads = self.lora.backward(&out.loss)?;
        let holder = Lora::new(
            self.model.config(),
            self.lora.config().clone(),
            self.model.master_dtype(),
            self.model.device(),
        )?;
        let by_name: std::collections::HashMap<String, candle_core::Var> =
            holder.named_vars().into_iter().collect();
        for (name, var) in self.lora.named_vars() {
            let g = match grads.get(var.as_tensor()) {
                Some(g) => g.clone(),
                None => var.as_tensor().zeros_like()?,
            };
            by_name[&name].set(&g)?;
        }
        export_peft(&holder, self.model.config(), grads_dir, None)?;
        Ok(loss)
    }

    /// PEFT `adapter_config.json` + `adapter_model.safetensors` in the folder `out`.
    pub fn export_peft(&self, out: &Path, base_name: Option<&str>) -> Result<()> {
        export_peft(&self.lora, self.model.config(), out, base_name)
    }

    /// The base with the adapter merged in, as a Q8_0 GGUF with the base's tokenizer (its chat
    /// template replaced by `chat_template` when given), written a tensor at a time (the base
    /// stays as loaded: quantized matrices quantized). `out` is the file the caller created
    /// (new, empty), written through its handle; `path` names it in errors.
    pub fn export_merged_gguf(
        &self,
        out: std::fs::File,
        path: &Path,
        base: &Path,
        chat_template: Option<&str>,
    ) -> Result<()> {
        let mut tokenizer = TokenizerMetadata::CopyFrom(base).entries()?;
        if let Some(template) = chat_template {
            const KEY: &str = "tokenizer.chat_template";
            tokenizer.retain(|(k, _)| k != KEY);
            tokenizer.push((KEY.into(), evolve_gguf::Value::String(template.into())));
        }
        export_gguf_merged_into(
            &self.model,
            &self.lora,
            out,
            path,
            WeightType::Q8_0,
            TokenizerMetadata::Given(tokenizer),
        )
    }
}
