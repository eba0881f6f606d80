//! Differentiable building blocks written from primitive candle ops or as CPU ops of their own.
//!
//! candle's fused kernels (`candle_nn::ops::rms_norm`, `softmax_last_dim`, `rotary_emb::rope*`)
//! have no backward pass and silently cut the gradient, so training must not use them. Each
//! op's file holds its public function, the composed fallback other devices run, and its
//! finite-difference gradient tests; `kernel.rs`, `blas.rs` and `openblas.rs` are what the CPU
//! ops share, `weight.rs` the [`Weight`] they multiply by. This file names the ops.

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
mod weight;

pub use attention::{causal_attention, causal_mask, repeat_kv, sliding_mask};
pub use glu::{gelu_as_ggml, silu_mul};
pub use heads::{from_heads, to_heads};
pub use linear::{frozen_linear, linear};
pub use logprobs::{log_sigmoid, log_softmax_last, softmax_last, target_logprobs};
pub use lora_linear::lora_linear;
pub use norm::rms_norm;
pub use rope::{rope, rope_tables};
pub use weight::Weight;
