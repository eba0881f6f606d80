//! The training engine on candle. It reads the very GGUF file the user chats with, so the model
//! that is trained and the model that is served can never drift apart.
//!
//! - [`LlamaModel`]: differentiable Llama/Qwen2/Qwen3/Gemma 3/Phi-3 forward pass over the GGUF
//!   weights, matching
//!   llama.cpp's logits: dequantized (f32/f64, or bf16 with f32 adapters and losses), or kept
//!   quantized ([`LlamaModel::load_quantized`]); frozen, or trainable for full-parameter
//!   training ([`LlamaModel::trainable`], [`LlamaModel::new_random`]).
//! - [`Lora`]: trainable adapters; the base stays frozen, and the reference policy is the same
//!   model with the adapter off.
//! - [`loss`]: sequence log-probs, DPO (sigmoid/IPO) with TRL's metrics, the EVOLVE objective.
//! - [`Trainer`]: the optimisation loop with schedules, clipping, cancellation and checkpoints.
//! - [`train_sft`]: full-parameter next-token training (pretraining a model from scratch).
//! - [`LoraDpoTrainer`]: the loop's `PreferenceTrainer`: text pairs in, GGUF LoRA out.
//! - [`tokenizer_from_gguf`]: the GGUF's own vocabulary as a `tokenizers::Tokenizer`.
//! - [`export`]: GGUF LoRA for llama.cpp, PEFT safetensors for transformers, whole or merged
//!   models as GGUF.

mod alloc;
mod batch;
pub mod bench;
mod encode;
mod error;
pub mod export;
pub mod lora;
pub mod loss;
mod model;
pub mod ops;
pub mod optim;
mod preference;
mod preflight;
mod recompute;
mod sft;
pub mod tiny;
mod tokenizer;
mod trainer;

#[cfg(test)]
mod gradcheck;

pub use encode::ChatEncoder;
pub use error::{Result, TrainError};
pub use lora::{Lora, LoraConfig, LoraPair, LoraTarget};
/// Which model the DPO log-ratios are measured against.
pub use loss::Reference;
pub use model::config::{Activation, Architecture, LlamaConfig, RopeLayout, SlidingWindow};
pub use model::{LlamaModel, WeightSource};
pub use optim::OptimConfig;
pub use preference::{ADAPTER_GGUF, CHECKPOINT_DIR, LoraDpoTrainer};
pub use preflight::{MemoryEstimate, check_trainable, kept_activation_bytes, training_memory};
pub use sft::{SftExample, SftMetrics, SftOutcome, train_sft};
pub use tokenizer::{pre::PRE_TOKENIZERS, tokenizer_from_gguf};
/// The tokenizer crate, so callers name the same `Tokenizer` type this crate returns.
pub use tokenizers;
pub use trainer::{
    CHECKPOINT_OPTIMIZER, CHECKPOINT_STATE, CHECKPOINT_WEIGHTS, Recompute, StepMetrics,
    TrainConfig, TrainOutcome, Trainer, data_fingerprint,
};

use candle_core::quantized::gguf_file;
use candle_core::{Device, Tensor};
use std::collections::BTreeMap;
use std::path::Path;

/// Every tensor of a GGUF file dequantized to f32, in PyTorch order (`[out, in]` for matrices).
pub fn load_gguf_f32(path: &Path, device: &Device) -> Result<BTreeMap<String, Tensor>> {
    let mut file = std::fs::File::open(path).map_err(|source| TrainError::Open {
        path: path.into(),
        source,
    })?;
    let read_err = |e: candle_core::Error| TrainError::Read {
        path: path.into(),
        reason: e.to_string(),
    };
    let content = gguf_file::Content::read(&mut file).map_err(read_err)?;
    let mut out = BTreeMap::new();
    for name in content.tensor_infos.keys() {
        let q = content.tensor(&mut file, name, device).map_err(read_err)?;
        out.insert(name.clone(), q.dequantize(device).map_err(read_err)?);
    }
    Ok(out)
}
