//! PEFT adapter directory (`adapter_config.json` + `adapter_model.safetensors`) for
//! Hugging Face transformers (PEFT's `LoraConfig` fields, `base_model.model.`-prefixed
//! `lora_A`/`lora_B` weights).
//!
//! The HF→GGUF converter permutes the rows of q/k for `llama` so that llama.cpp can rotate
//! adjacent pairs; our adapter was trained in that GGUF layout, so the q/k `lora_B` rows are
//! un-permuted back to HF's layout here. `qwen2` is converted unpermuted and needs nothing.

use super::phi3::{LayerAdapter, layer_adapters};
use crate::lora::{Lora, LoraTarget};
use crate::model::config::{Architecture, LlamaConfig};
use crate::{Result, TrainError};
use candle_core::{DType, Tensor};
use std::collections::HashMap;
use std::path::Path;

pub const PEFT_CONFIG_FILE: &str = "adapter_config.json";
pub const PEFT_WEIGHTS_FILE: &str = "adapter_model.safetensors";

/// `convert_hf_to_gguf.py`'s `LlamaModel.permute`: rows of each head go from the half layout
/// `(i, i + d/2)` to adjacent pairs `(2i, 2i + 1)`. `w: [rows, cols]`.
pub fn permute_hf_to_gguf(w: &Tensor, n_head: usize) -> Result<Tensor> {
    let (rows, cols) = w.dims2()?;
    Ok(w.reshape((n_head, 2, rows / n_head / 2, cols))?
        .transpose(1, 2)?
        .contiguous()?
        .reshape((rows, cols))?)
}

/// Inverse of [`permute_hf_to_gguf`].
pub fn unpermute_gguf_to_hf(w: &Tensor, n_head: usize) -> Result<Tensor> {
    let (rows, cols) = w.dims2()?;
    Ok(w.reshape((n_head, rows / n_head / 2, 2, cols))?
        .transpose(1, 2)?
        .contiguous()?
        .reshape((rows, cols))?)
}

/// Writes `dir/adapter_config.json` and `dir/adapter_model.safetensors`.
pub fn export_peft(
    lora: &Lora,
    model: &LlamaConfig,
    dir: &Path,
    base_model_name_or_path: Option<&str>,
) -> Result<()> {
    let cfg = lora.config();
    let mut tensors = HashMap::new();
    // Phi-3's fused modules carry one adapter each (see `phi3::fuse`), of rank k·r; the
    // patterns give each its rank and an alpha that keeps our scale.
    let mut rank_pattern = serde_json::Map::new();
    let mut alpha_pattern = serde_json::Map::new();
    let mut modules: Vec<&str> = Vec::new();
    for layer in 0..lora.n_layers() {
        for adapter in layer_adapters(lora, layer, model)? {
            match adapter {
                LayerAdapter::Fused(fused, a, b) => {
                    let module = fused.hf_module;
                    let prefix = format!("base_model.model.model.layers.{layer}.{}", fused.hf_path);
                    let rank = a.dim(0)? as f64;
                    let alpha = if cfg.use_rslora {
                        lora.scale() * rank.sqrt()
                    } else {
                        lora.scale() * rank
                    };
                    rank_pattern.insert(module.into(), serde_json::json!(rank as usize));
                    alpha_pattern.insert(module.into(), serde_json::json!(alpha));
                    tensors.insert(format!("{prefix}.lora_A.weight"), a);
                    tensors.insert(format!("{prefix}.lora_B.weight"), b);
                    if !modules.contains(&module) {
                        modules.push(module);
                    }
                }
                LayerAdapter::Own(target, pair) => {
                    let prefix =
                        format!("base_model.model.model.layers.{layer}.{}", target.hf_path());
                    let b = pair.b.as_tensor().to_dtype(DType::F32)?;
                    let b = match (model.architecture, target) {
                        (Architecture::Llama, LoraTarget::Q) => {
                            unpermute_gguf_to_hf(&b, model.n_head)?
                        }
                        (Architecture::Llama, LoraTarget::K) => {
                            unpermute_gguf_to_hf(&b, model.n_head_kv)?
                        }
                        _ => b,
                    };
                    tensors.insert(
                        format!("{prefix}.lora_A.weight"),
                        pair.a.as_tensor().to_dtype(DType::F32)?,
                    );
                    tensors.insert(format!("{prefix}.lora_B.weight"), b);
                    if !modules.contains(&target.hf_module()) {
                        modules.push(target.hf_module());
                    }
                }
            }
        }
    }
    let io = |path: &Path| {
        let path = path.to_path_buf();
        move |source| TrainError::Io { path, source }
    };
    std::fs::create_dir_all(dir).map_err(io(dir))?;
    let weights = dir.join(PEFT_WEIGHTS_FILE);
    candle_core::safetensors::save(&tensors, &weights)?;

    let targets = modules;
    let config = serde_json::json!({
        "base_model_name_or_path": base_model_name_or_path,
        "bias": "none",
        "fan_in_fan_out": false,
        "inference_mode": true,
        "init_lora_weights": true,
        "lora_alpha": cfg.alpha,
        "lora_dropout": cfg.dropout,
        "modules_to_save": null,
        "peft_type": "LORA",
        "r": cfg.rank,
        "rank_pattern": rank_pattern,
        "alpha_pattern": alpha_pattern,
        "revision": null,
        "target_modules": targets,
        "task_type": "CAUSAL_LM",
        "use_dora": false,
        "use_rslora": cfg.use_rslora,
    });
    let path = dir.join(PEFT_CONFIG_FILE);
    let text = serde_json::to_string_pretty(&config).expect("json serializes");
    std::fs::write(&path, text).map_err(io(&path))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::gradcheck::{max_abs_diff, randn};
    use crate::model::config::RopeLayout;
    use crate::ops::{rope, rope_tables};
    use candle_core::Device;

    #[test]
    fn unpermute_inverts_permute_and_permute_is_not_the_identity() {
        let w = randn(1, &[4 * 16, 8], 1.0);
        let p = permute_hf_to_gguf(&w, 4).unwrap();
        let diff = max_abs_diff(&p, &w);
        assert!(diff > 0.1, "the permutation must move rows");
        let back = unpermute_gguf_to_hf(&p, 4).unwrap();
        assert_eq!(back.to_vec2::<f64>().unwrap(), w.to_vec2::<f64>().unwrap());
        let again = permute_hf_to_gguf(&unpermute_gguf_to_hf(&w, 4).unwrap(), 4).unwrap();
        assert_eq!(again.to_vec2::<f64>().unwrap(), w.to_vec2::<f64>().unwrap());
    }

    /// The permutation is exactly what makes adjacent-pair RoPE on GGUF rows equal half-layout
    /// RoPE on HF rows — the reason B must be un-permuted for PEFT.
    #[test]
    fn permuted_rows_with_adjacent_rope_equal_hf_rows_with_half_rope() {
        let (n_head, d, t) = (2, 8, 3);
        let (cos, sin) = rope_tables(t, d, 10_000.0, 1.0, None, DType::F64, &Device::Cpu).unwrap();
        // q in HF layout: [t, n_head·d], i.e. rows of W become columns of q = x·Wᵀ.
        let q_hf = randn(2, &[t, n_head * d], 1.0);
        let q_gguf = permute_hf_to_gguf(&q_hf.t().unwrap(), n_head)
            .unwrap()
            .t()
            .unwrap();
        let heads = |q: &Tensor| {
            q.reshape((1, t, n_head, d))
                .unwrap()
                .transpose(1, 2)
                .unwrap()
                .contiguous()
                .unwrap()
        };
        let flat = |q: Tensor| q.transpose(1, 2).unwrap().reshape((t, n_head * d)).unwrap();
        let hf_rot = flat(rope(&heads(&q_hf), &cos, &sin, RopeLayout::Halves).unwrap());
        let gguf_rot = flat(rope(&heads(&q_gguf), &cos, &sin, RopeLayout::AdjacentPairs).unwrap());
        let back = unpermute_gguf_to_hf(&gguf_rot.t().unwrap(), n_head)
            .unwrap()
            .t()
            .unwrap();
        let diff = max_abs_diff(&back, &hf_rot);
        assert!(diff < 1e-12, "{diff}");
    }
}
