//! GGUF LoRA as llama.cpp's `llama_adapter_lora_init` reads it (`general.type = adapter`,
//! `adapter.type = lora`, `adapter.lora.alpha`, and `<tensor>.lora_a` / `.lora_b` pairs).
//!
//! Tensors are named after the base tensor (`blk.0.attn_q.weight.lora_a`); `lora_a` has ggml
//! dims `[n_in, r]` (row-major `(r, n_in)`, as trained), `lora_b` `[r, n_out]`. llama.cpp
//! applies `alpha / r` itself, where r is read from `lora_b`. Our adapter is trained on the GGUF
//! weight layout, so q/k rows need no permutation here.

use crate::config::LlamaConfig;
use crate::lora::{Lora, lora_tensor_name};
use crate::{Result, TrainError};
use candle_core::DType;
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
    // llama.cpp scales by alpha/r; rsLoRA trained with alpha/√r, so B carries the factor √r.
    let b_factor = if cfg.use_rslora {
        (cfg.rank as f64).sqrt()
    } else {
        1.0
    };
    let flat = |t: &candle_core::Tensor| -> Result<Vec<f32>> {
        Ok(t.to_dtype(DType::F32)?.flatten_all()?.to_vec1::<f32>()?)
    };
    for (layer, target, pair) in lora.pairs() {
        let (r, n_in) = pair.a.as_tensor().dims2()?;
        let (n_out, _) = pair.b.as_tensor().dims2()?;
        let b = (pair.b.as_tensor() * b_factor)?;
        let invalid = |e: evolve_gguf::GgufError| TrainError::Tensor {
            name: lora_tensor_name(layer, target, "lora_a"),
            reason: e.to_string(),
        };
        w.add_tensor(
            lora_tensor_name(layer, target, "lora_a"),
            vec![n_in as u64, r as u64],
            TensorData::F32(flat(pair.a.as_tensor())?),
        )
        .map_err(invalid)?;
        w.add_tensor(
            lora_tensor_name(layer, target, "lora_b"),
            vec![r as u64, n_out as u64],
            TensorData::F32(flat(&b)?),
        )
        .map_err(invalid)?;
    }
    w.write_to_path(path)?;
    Ok(())
}
