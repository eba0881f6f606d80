//! GGUF LoRA as llama.cpp's `llama_adapter_lora_init` reads it (`general.type = adapter`,
//! `adapter.type = lora`, `adapter.lora.alpha`, and `<tensor>.lora_a` / `.lora_b` pairs).
//!
//! Tensors are named after the base tensor (`blk.0.attn_q.weight.lora_a`); `lora_a` has ggml
//! dims `[n_in, r]` (row-major `(r, n_in)`, as trained), `lora_b` `[r, n_out]`. llama.cpp
//! applies `alpha / r` itself, where r is read from `lora_b`. Our adapter is trained on the GGUF
//! weight layout, so q/k rows need no permutation here. Phi-3's fused q/k/v and gate/up
//! matrices get one adapter each, assembled from the parts' adapters (`phi3.rs`).

use super::phi3::{LayerAdapter, layer_adapters};
use crate::lora::Lora;
use crate::model::config::LlamaConfig;
use crate::{Result, TrainError};
use candle_core::{DType, Tensor};
use evolve_gguf::{GgufWriter, TensorData, Value};
use std::path::Path;

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
    for layer in 0..lora.n_layers() {
        for adapter in layer_adapters(lora, layer, model)? {
            match adapter {
                LayerAdapter::Fused(fused, a, b) => {
                    let base = format!("blk.{layer}.{}.weight", fused.gguf_stem);
                    add_pair(&mut w, &base, &a, &b, lora)?;
                }
                LayerAdapter::Own(target, pair) => {
                    let base = format!("blk.{layer}.{}.weight", target.gguf_stem());
                    add_pair(&mut w, &base, pair.a.as_tensor(), pair.b.as_tensor(), lora)?;
                }
            }
        }
    }
    w.write_to_path(path)?;
    Ok(())
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
