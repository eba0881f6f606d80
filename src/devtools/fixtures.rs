//! Fixtures built on the engines, for tests and for checks against other implementations:
//! tiny models of each trainable architecture, and adapters with our logits beside their
//! exports (`evolve fixture adapter`, what scripts/check-peft.sh compares with PEFT).

use anyhow::{Result, bail};
use evolve_gguf::ModelSummary;
use evolve_gguf::tiny::{TinyLlamaConfig, WeightType, rewrite_as_qwen2, write_tiny_llama};
use evolve_train::export::AdapterFiles;
use std::path::{Path, PathBuf};

/// A tiny random model of `arch` at `out`: `llama`; `qwen2` (the same weights with q/k/v biases,
/// NEOX RoPE); `qwen3` (random weights of the same width, head size 32, q/k head norms, tied
/// embeddings, f32); `gemma3` (as qwen3, plus post-norms, GeGLU and sliding-window layers);
/// `phi3` (fused q/k/v and gate/up, partial rotary, LongRoPE factors).
pub fn write_tiny(
    arch: &str,
    cfg: &TinyLlamaConfig,
    weight_type: WeightType,
    out: &Path,
) -> Result<ModelSummary> {
    if arch == "llama" {
        return Ok(write_tiny_llama(out, cfg, weight_type)?);
    }
    let llama = out.with_extension("llama.partial");
    write_tiny_llama(&llama, cfg, weight_type)?;
    let written = match arch {
        "qwen2" => rewrite_as_qwen2(&llama, out, cfg.seed)
            .map(drop)
            .map_err(Into::into),
        "qwen3" => evolve_train::tiny::write_tiny_qwen3(&llama, out).map_err(Into::into),
        "gemma3" => evolve_train::tiny::write_tiny_gemma3(&llama, out).map_err(Into::into),
        "phi3" => evolve_train::tiny::write_tiny_phi3(&llama, out).map_err(Into::into),
        other => Err(anyhow::anyhow!(
            "--arch must be llama, qwen2, qwen3, gemma3 or phi3, not {other}"
        )),
    };
    let _ = std::fs::remove_file(&llama);
    written?;
    Ok(evolve_gguf::read_path(out)?.summary())
}

/// An adapter on `model` for checking exports: random (`B ≠ 0`) or a trained checkpoint.
pub struct AdapterFixture<'a> {
    pub model: &'a Path,
    pub out: &'a Path,
    pub rank: usize,
    pub alpha: f64,
    pub seed: u64,
    /// Standard deviation of the random `B` matrices.
    pub std: f64,
    /// A trained checkpoint (`adapter.safetensors`) instead of a random adapter.
    pub weights: Option<PathBuf>,
    /// Token ids whose logits (every position) are written.
    pub tokens: &'a [u32],
    /// PEFT's `base_model_name_or_path` (default: from the GGUF's metadata).
    pub base_name: Option<String>,
}

impl AdapterFixture<'_> {
    /// Writes `adapter.safetensors`, `adapter.gguf`, `peft/` and `logits.json` (base and adapted
    /// logits) into `out`; returns the base name PEFT was given.
    pub fn write(&self) -> Result<Option<String>> {
        if self.tokens.is_empty() {
            bail!("give at least one token id");
        }
        std::fs::create_dir_all(self.out)?;
        let t = match &self.weights {
            Some(w) => AdapterFiles::load(self.model, w, self.rank, self.alpha)?,
            None => AdapterFiles::random(self.model, self.rank, self.alpha, self.seed, self.std)?,
        };
        t.save_weights(&self.out.join(evolve_train::CHECKPOINT_WEIGHTS))?;
        t.export_gguf_lora(&self.out.join("adapter.gguf"))?;
        let base_name = match &self.base_name {
            Some(name) => Some(name.clone()),
            None => crate::models::hf_name(&crate::models::inspect(self.model)?),
        };
        let peft = self.out.join("peft");
        let _ = std::fs::remove_dir_all(&peft);
        t.export_peft(&peft, base_name.as_deref())?;
        let logits = serde_json::json!({
            "tokens": self.tokens,
            "base": t.logits(self.tokens, false)?,
            "adapted": t.logits(self.tokens, true)?,
        });
        std::fs::write(self.out.join("logits.json"), logits.to_string())?;
        Ok(base_name)
    }
}
