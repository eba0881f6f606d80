//! Tiny random models of the architectures this crate rebuilds beyond Llama (Qwen3, Gemma 3, Phi-3), for tests and for
//! checks against other implementations (the tiny Llama itself is `evolve_gguf::tiny`).

use crate::export::{TokenizerMetadata, WeightType, export_gguf_model};
use crate::{Architecture, LlamaConfig, LlamaModel, Result, SlidingWindow};
use evolve_core::rng::SplitMix64;
use evolve_gguf::{GgufWriter, TensorData, read_path};
use std::path::Path;

/// A tiny random model of `architecture` at `out`, with the shape and vocabulary (chat template
/// included) of the Llama GGUF `vocab_from` — a real model's vocabulary-only GGUF, say. Llama and
/// Qwen2 (zero q/k/v biases) get random norms; the others are the writers below.
pub fn write_tiny(architecture: Architecture, vocab_from: &Path, out: &Path) -> Result<()> {
    let base = LlamaConfig::from_gguf(&read_path(vocab_from)?)?;
    match architecture {
        Architecture::Llama | Architecture::Qwen2 => {
            let config = LlamaConfig {
                architecture,
                ..base
            };
            write_random(&config, vocab_from, out, Vec::new(), |name| {
                name.ends_with("norm.weight")
            })
        }
        Architecture::Qwen3 => write_tiny_qwen3(vocab_from, out),
        Architecture::Gemma3 => write_tiny_gemma3(vocab_from, out),
        Architecture::Phi3 => write_tiny_phi3(vocab_from, out),
    }
}

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
    write_random(&config, vocab_from, out, Vec::new(), |name| {
        name.ends_with("_norm.weight") && name.contains(".attn_")
    })
}

/// A tiny `gemma3` at `out` with the shape and vocabulary of the Llama GGUF `vocab_from`: head
/// size 32, tied embeddings, a sliding window of 4 positions on even layers (RoPE base 10000)
/// and global odd layers (base 10⁶, positions scaled by 1/8 as Gemma 3 4B's), and every norm —
/// post-norms and head norms included — random around 1, so a misplaced one shows.
pub fn write_tiny_gemma3(vocab_from: &Path, out: &Path) -> Result<()> {
    let base = LlamaConfig::from_gguf(&read_path(vocab_from)?)?;
    let config = LlamaConfig {
        architecture: Architecture::Gemma3,
        head_dim: 32,
        rope_dims: 32,
        rope_freq_base: 1_000_000.0,
        rope_freq_scale: 0.125,
        rms_eps: 1e-6,
        tied_embeddings: true,
        sliding_window: Some(SlidingWindow {
            size: 4,
            pattern: 2,
            freq_base: 10_000.0,
        }),
        ..base
    };
    write_random(&config, vocab_from, out, Vec::new(), |name| {
        name.ends_with("norm.weight")
    })
}

/// A tiny `phi3` at `out` with the shape and vocabulary of the Llama GGUF `vocab_from`: fused
/// q/k/v and gate/up matrices, NEOX RoPE over 12 of each head's 16 dimensions, and LongRoPE —
/// long and short factor sets (random in [1, 4)), an attention factor of 1.19, and an original
/// context of 64 below the 512 it runs at, so llama.cpp (and the trainer) use the long set.
pub fn write_tiny_phi3(vocab_from: &Path, out: &Path) -> Result<()> {
    let base = LlamaConfig::from_gguf(&read_path(vocab_from)?)?;
    let config = LlamaConfig {
        architecture: Architecture::Phi3,
        rope_dims: 12,
        rope_attn_factor: 1.19,
        rope_original_context: Some(64),
        context_length: 512,
        ..base
    };
    let mut rng = SplitMix64::new(13);
    let mut factors = || -> Vec<f32> {
        (0..config.rope_dims / 2)
            .map(|_| 1.0 + (rng.next_u64() % 3000) as f32 / 1000.0)
            .collect()
    };
    let extra = vec![
        ("rope_factors_long.weight".to_string(), factors()),
        ("rope_factors_short.weight".to_string(), factors()),
    ];
    write_random(&config, vocab_from, out, extra, |name| {
        name.ends_with("norm.weight")
    })
}

/// A random model of `config` with `vocab_from`'s vocabulary; the 1-D tensors `perturb` names
/// are drawn around 1 (σ 0.3) instead of all ones.
fn write_random(
    config: &LlamaConfig,
    vocab_from: &Path,
    out: &Path,
    extra: Vec<(String, Vec<f32>)>,
    perturb: impl Fn(&str) -> bool,
) -> Result<()> {
    let model = LlamaModel::new_random_f32_cpu(config, 11)?;
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
        let data = if info.dims.len() == 1 && perturb(&info.name) {
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
    for (name, values) in extra {
        w.add_tensor(name, vec![values.len() as u64], TensorData::F32(values))?;
    }
    drop(file);
    let _ = std::fs::remove_file(&plain);
    w.write_to_path(out)?;
    Ok(())
}
