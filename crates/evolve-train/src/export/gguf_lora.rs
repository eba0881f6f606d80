//! GGUF LoRA as llama.cpp's `llama_adapter_lora_init` reads it (`general.type = adapter`,
//! `adapter.type = lora`, `adapter.lora.alpha`, and `<tensor>.lora_a` / `.lora_b` pairs).
//!
//! Tensors are named after the base tensor (`blk.0.attn_q.weight.lora_a`); `lora_a` has ggml
//! dims `[n_in, r]` (row-major `(r, n_in)`, as trained), `lora_b` `[r, n_out]`. llama.cpp
//! applies `alpha / r` itself, where r is read from `lora_b`. Our adapter is trained on the GGUF
//! weight layout, so q/k rows need no permutation here. Phi-3's fused q/k/v and gate/up
//! matrices get one adapter each, assembled from the parts' adapters.

use crate::lora::{Lora, LoraPair, LoraTarget};
use crate::model::config::{Architecture, LlamaConfig};
use crate::{Result, TrainError};
use candle_core::{DType, Tensor};
use evolve_gguf::{GgufWriter, TensorData, Value};
use std::path::Path;

/// A matrix Phi-3 stores fused: its names in GGUF and transformers, and the targets whose rows
/// it stacks, in order.
pub(crate) struct Fused {
    pub gguf_stem: &'static str,
    pub hf_module: &'static str,
    pub hf_path: &'static str,
    pub parts: &'static [LoraTarget],
}

pub(crate) const PHI3_FUSED: [Fused; 2] = [
    Fused {
        gguf_stem: "attn_qkv",
        hf_module: "qkv_proj",
        hf_path: "self_attn.qkv_proj",
        parts: &[LoraTarget::Q, LoraTarget::K, LoraTarget::V],
    },
    Fused {
        gguf_stem: "ffn_up",
        hf_module: "gate_up_proj",
        hf_path: "mlp.gate_up_proj",
        parts: &[LoraTarget::Gate, LoraTarget::Up],
    },
];

pub fn export_gguf_lora(lora: &Lora, model: &LlamaConfig, path: &Path) -> Result<()> {
    let cfg = lora.config();
    let mut w = GgufWriter::new();
    w.add_metadata(
        "general.architecture",
        Value::String(model.architecture.as_str().into()),
    )
    .add_metadata("general.type", Value::String("adapter".into()))
    .add_metadata("general.name", Value::String("evolve-lora".into()))
    .add_metadata("adapter.type", Value::String("lora".into()))
    .add_metadata("adapter.lora.alpha", Value::F32(cfg.alpha as f32));
    let fused = model.architecture == Architecture::Phi3;
    for layer in 0..lora.n_layers() {
        let mut done = Vec::new();
        if fused {
            for fused in &PHI3_FUSED {
                let Some((a, b)) = fuse(lora, layer, fused, model)? else {
                    continue;
                };
                let base = format!("blk.{layer}.{}.weight", fused.gguf_stem);
                add_pair(&mut w, &base, &a, &b, lora)?;
                done.extend(fused.parts.iter().copied());
            }
        }
        for target in LoraTarget::ALL {
            if done.contains(&target) {
                continue;
            }
            if let Some(pair) = lora.pair(layer, target) {
                let base = format!("blk.{layer}.{}.weight", target.gguf_stem());
                add_pair(&mut w, &base, pair.a.as_tensor(), pair.b.as_tensor(), lora)?;
            }
        }
    }
    w.write_to_path(path)?;
    Ok(())
}

/// Layer `layer`'s one adapter on `fused`, standing for the adapters on its parts' row blocks
/// (`None` when no part has one): `A` stacks their `A`s (rank k·r) and `B` places each `B` on
/// its rows, block-diagonally (zero rows for a part without an adapter) — exactly the sum of the
/// parts' updates.
pub(crate) fn fuse(
    lora: &Lora,
    layer: usize,
    fused: &Fused,
    model: &LlamaConfig,
) -> Result<Option<(Tensor, Tensor)>> {
    let parts: Vec<(LoraTarget, &LoraPair)> = fused
        .parts
        .iter()
        .filter_map(|&t| lora.pair(layer, t).map(|p| (t, p)))
        .collect();
    if parts.is_empty() {
        return Ok(None);
    }
    let a = Tensor::cat(
        &parts
            .iter()
            .map(|(_, p)| p.a.as_tensor().to_dtype(DType::F32))
            .collect::<candle_core::Result<Vec<_>>>()?,
        0,
    )?;
    let rank_total = a.dim(0)?;
    let device = a.device().clone();
    let mut rows = Vec::new();
    let mut col = 0;
    for &target in fused.parts {
        let (_, n_out) = target.shape(model);
        match parts.iter().find(|(t, _)| *t == target) {
            Some((_, p)) => {
                let b = p.b.as_tensor().to_dtype(DType::F32)?;
                let r = b.dim(1)?;
                rows.push(b.pad_with_zeros(1, col, rank_total - col - r)?);
                col += r;
            }
            None => rows.push(Tensor::zeros((n_out, rank_total), DType::F32, &device)?),
        }
    }
    Ok(Some((a, Tensor::cat(&rows, 0)?)))
}

/// Writes `base.lora_a` / `base.lora_b`. llama.cpp scales by `alpha / rank`, its rank read from
/// `B`; `B` carries whatever makes that our scale (√r for rsLoRA, k for a k-part fused one).
fn add_pair(w: &mut GgufWriter, base: &str, a: &Tensor, b: &Tensor, lora: &Lora) -> Result<()> {
    let (r, n_in) = a.dims2()?;
    let (n_out, _) = b.dims2()?;
    let alpha = lora.config().alpha;
    let b = (b.to_dtype(DType::F32)? * (lora.scale() * r as f64 / alpha))?;
    let flat = |t: &Tensor| -> Result<Vec<f32>> {
        Ok(t.to_dtype(DType::F32)?.flatten_all()?.to_vec1::<f32>()?)
    };
    let invalid = |e: evolve_gguf::GgufError| TrainError::Tensor {
        name: format!("{base}.lora_a"),
        reason: e.to_string(),
    };
    w.add_tensor(
        format!("{base}.lora_a"),
        vec![n_in as u64, r as u64],
        TensorData::F32(flat(a)?),
    )
    .map_err(invalid)?;
    w.add_tensor(
        format!("{base}.lora_b"),
        vec![r as u64, n_out as u64],
        TensorData::F32(flat(&b)?),
    )
    .map_err(invalid)?;
    Ok(())
}
