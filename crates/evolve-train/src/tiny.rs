//! Tiny random models of the architectures this crate rebuilds beyond Llama, for tests and for
//! checks against other implementations (the tiny Llama itself is `evolve_gguf::tiny`).

use crate::export::{TokenizerMetadata, WeightType, export_gguf_model};
use crate::{Architecture, LlamaConfig, LlamaModel, Result};
use evolve_core::rng::SplitMix64;
use evolve_gguf::{GgufWriter, TensorData, read_path};
use std::path::Path;

/// A tiny `qwen3` at `out` with the shape and vocabulary of the Llama GGUF `vocab_from`: its own
/// head size (32, not width / heads), tied embeddings, and q/k head norms that are not all ones
/// (normal around 1, σ 0.3), so a missing norm shows in the logits.
pub fn write_tiny_qwen3(vocab_from: &Path, out: &Path) -> Result<()> {
    let base = LlamaConfig::from_gguf(&read_path(vocab_from)?)?;
    let config = LlamaConfig {
        architecture: Architecture::Qwen3,
        head_dim: 32,
        rope_dims: 32,
        rope_freq_base: 1_000_000.0,
        tied_embeddings: true,
        ..base
    };
    let model = LlamaModel::new_random_f32_cpu(&config, 11)?;
    let plain = out.with_extension("plain.partial");
    export_gguf_model(
        &model,
        &plain,
        WeightType::F32,
        TokenizerMetadata::CopyFrom(vocab_from),
    )?;
    let file = read_path(&plain)?;
    let mut w = GgufWriter::new();
    for (key, value) in &file.metadata {
        w.add_metadata(key.clone(), value.clone());
    }
    let mut rng = SplitMix64::new(7);
    for info in &file.tensors {
        let data = if info.name.ends_with("_norm.weight") && info.name.contains(".attn_") {
            let n = info.dims[0] as usize;
            TensorData::F32(
                (0..n)
                    .map(|_| (1.0 + rng.next_normal() * 0.3) as f32)
                    .collect(),
            )
        } else {
            TensorData::Raw {
                ggml_type: info.ggml_type,
                bytes: file.read_tensor_bytes(&info.name)?,
            }
        };
        w.add_tensor(info.name.clone(), info.dims.clone(), data)?;
    }
    drop(file);
    let _ = std::fs::remove_file(&plain);
    w.write_to_path(out)?;
    Ok(())
}
