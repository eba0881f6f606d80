//! Differentiable building blocks written from primitive candle ops or as CPU ops of their own.
//!
//! candle's fused kernels (`candle_nn::ops::rms_norm`, `softmax_last_dim`, `rotary_emb::rope*`)
//! have no backward pass and silently cut the gradient, so training must not use them. Each
//! op's file holds its public function, the composed fallback other devices run, and its
//! finite-difference gradient tests; `kernel.rs`, `blas.rs` and `openblas.rs` are what the CPU
//! ops share. This file holds [`Weight`] and names the ops.

mod attention;
mod blas;
#[cfg(test)]
mod devices;
mod glu;
mod heads;
mod kernel;
mod linear;
mod logprobs;
mod lora_linear;
mod norm;
#[cfg(feature = "openblas")]
mod openblas;
mod rope;

pub use attention::{causal_attention, causal_mask, repeat_kv, sliding_mask};
pub use glu::{gelu_as_ggml, silu_mul};
pub use heads::{from_heads, to_heads};
pub use linear::{frozen_linear, linear};
pub use logprobs::{log_sigmoid, log_softmax_last, softmax_last, target_logprobs};
pub use lora_linear::lora_linear;
pub use norm::rms_norm;
pub use rope::{rope, rope_tables};

use candle_core::quantized::QTensor;
use candle_core::{DType, Device, Result, Tensor};

/// A frozen linear layer's weight `[out, in]`: dense, or kept quantized and dequantized on the
/// fly by the ops that multiply by it ([`frozen_linear`], [`lora_linear`]).
#[derive(Clone)]
pub enum Weight {
    Dense(Tensor),
    Quantized(std::sync::Arc<QTensor>),
}

impl Weight {
    /// The weight as a dense tensor in `dtype`: itself, or a dequantized copy.
    pub fn dense(&self, dtype: DType, device: &Device) -> Result<Tensor> {
        match self {
            Weight::Dense(t) => Ok(t.clone()),
            Weight::Quantized(q) => q.dequantize(device)?.to_dtype(dtype),
        }
    }

    /// `(out, in)`.
    pub fn dims2(&self) -> Result<(usize, usize)> {
        match self {
            Weight::Dense(t) => t.dims2(),
            Weight::Quantized(q) => q.shape().dims2(),
        }
    }
}
