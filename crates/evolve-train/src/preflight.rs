//! Can this file be trained here? Answered from the header alone, in milliseconds, before a run
//! samples anything: otherwise an unsupported tokenizer or tensor type surfaces only at the
//! first training step, after a whole round of sampling.

use crate::lora::LoraTarget;
use crate::{LlamaConfig, Result, TrainError, tokenizer_from_gguf};
use evolve_gguf::{GgmlType, GgufFile};
use std::collections::BTreeSet;

/// The tensor types candle reads (and dequantizes) from a GGUF file.
const TRAINABLE_TYPES: &[GgmlType] = &[
    GgmlType::F32,
    GgmlType::F16,
    GgmlType::BF16,
    GgmlType::Q4_0,
    GgmlType::Q4_1,
    GgmlType::Q5_0,
    GgmlType::Q5_1,
    GgmlType::Q8_0,
    GgmlType::Q8_1,
    GgmlType::Q2_K,
    GgmlType::Q3_K,
    GgmlType::Q4_K,
    GgmlType::Q5_K,
    GgmlType::Q6_K,
    GgmlType::Q8_K,
];

/// Checks the architecture and hyper-parameters, every tensor's type and the tokenizer; the
/// error names what is unsupported.
pub fn check_trainable(file: &GgufFile) -> Result<()> {
    LlamaConfig::from_gguf(file)?;
    let unsupported: BTreeSet<&str> = file
        .tensors
        .iter()
        .filter(|t| !TRAINABLE_TYPES.contains(&t.ggml_type))
        .map(|t| t.ggml_type.name())
        .collect();
    if !unsupported.is_empty() {
        let names: Vec<&str> = unsupported.into_iter().collect();
        return Err(TrainError::Config(format!(
            "tensor type {} cannot be trained (supported: F32, F16, BF16, Q4_0…Q8_0 and the \
             K-quants Q2_K…Q6_K): use a Q4_K_M, Q5_K_M, Q8_0 or F16 file of this model",
            names.join(", ")
        )));
    }
    tokenizer_from_gguf(file)?;
    Ok(())
}

/// What one LoRA-DPO training step is expected to hold in memory, from the header alone.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct MemoryEstimate {
    /// The base as the trainer keeps it: quantized matrices as stored, the rest in f32.
    pub base_bytes: u64,
    /// Adapter weights, gradients and AdamW's two moments, in f32.
    pub adapter_bytes: u64,
    /// Activations kept for the backward pass, the largest matrix dequantized for use, and
    /// the answer positions' logits.
    pub working_bytes: u64,
}

impl MemoryEstimate {
    pub fn total(&self) -> u64 {
        self.base_bytes + self.adapter_bytes + self.working_bytes
    }
}

/// Block matrices, an untied LM head and then the embedding stay in their stored type when it
/// is quantized (see `LlamaModel::load_quantized`).
fn kept_quantized(name: &str, t: GgmlType, tied: bool) -> bool {
    let matrix = name == "output.weight"
        || (name == "token_embd.weight" && !tied)
        || (name.starts_with("blk.") && name.ends_with(".weight") && !name.contains("norm"));
    matrix && !matches!(t, GgmlType::F32 | GgmlType::F16 | GgmlType::BF16)
}

/// The expected peak of training `file` with a rank-`rank` adapter on every target, batches of
/// `batch` pairs of up to `max_tokens` tokens each (prompt and answer), with blocks recomputed
/// in the backward pass (what `TrainConfig::recompute`'s default does when memory is short):
/// every block's input is kept, and one block's activations at a time. Calibrated against
/// the measured peak of an 8B Q4_K model (docs/real-models.md: 6.74 GiB measured, 7.61
/// estimated); meant to refuse hopeless runs before they start, not to the last megabyte.
pub fn training_memory(
    file: &GgufFile,
    rank: usize,
    max_tokens: usize,
    batch: usize,
) -> Result<MemoryEstimate> {
    let cfg = LlamaConfig::from_gguf(file)?;
    let base_bytes: u64 = file
        .tensors
        .iter()
        .map(|t| {
            if kept_quantized(&t.name, t.ggml_type, cfg.tied_embeddings) {
                t.n_bytes()
            } else {
                t.n_elements() * 4
            }
        })
        .sum();
    let per_layer: usize = LoraTarget::ALL
        .iter()
        .map(|target| {
            let (i, o) = target.shape(&cfg);
            rank * (i + o)
        })
        .sum();
    let adapter_bytes = (per_layer * cfg.n_layer * 4 * 4) as u64;
    // Every block's input, and one block's activations at a time.
    let tokens = 2 * batch * max_tokens;
    let activations =
        cfg.n_layer * tokens * cfg.n_embd * 4 + block_activation_bytes(&cfg, batch, max_tokens);
    let largest_matrix = file
        .tensors
        .iter()
        .filter(|t| t.dims.len() == 2)
        .map(|t| t.n_elements() * 4)
        .max()
        .unwrap_or(0);
    let logits = tokens * cfg.n_vocab * 4 * 3;
    let working_bytes = activations as u64 + largest_matrix + logits as u64;
    Ok(MemoryEstimate {
        base_bytes,
        adapter_bytes,
        working_bytes,
    })
}

/// What one block's forward pass keeps for its backward pass, for `batch` pairs of up to
/// `max_tokens` tokens (chosen and rejected sequences): the residual and its norms, q, k, v,
/// the attention's probabilities and output, the MLP's gate, up and product, and every
/// adapter branch — four times over, for the gradients the backward pass holds (calibrated on
/// the measured peak of an 8B model, docs/real-models.md).
fn block_activation_bytes(cfg: &LlamaConfig, batch: usize, max_tokens: usize) -> usize {
    let (e, ff, q, kv) = (cfg.n_embd, cfg.n_ff, cfg.q_dim(), cfg.kv_dim());
    let per_token = 4 * (4 * e + q + 2 * kv + q + 4 * ff);
    let attention = cfg.n_head * max_tokens * max_tokens * 2 * 2 * batch;
    (2 * batch * max_tokens * per_token + attention) * 4
}

/// The activations a step keeps when no block is recomputed: every block's.
pub fn kept_activation_bytes(cfg: &LlamaConfig, batch: usize, max_tokens: usize) -> u64 {
    (cfg.n_layer * block_activation_bytes(cfg, batch, max_tokens)) as u64
}
