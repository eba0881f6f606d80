//! A linear layer's weight, dense or kept quantized.

use candle_core::quantized::QTensor;
use candle_core::{DType, Device, Result, Tensor};

/// A frozen linear layer's weight `[out, in]`: dense, or kept quantized and dequantized on the
/// fly by the ops that multiply by it ([`super::frozen_linear`], [`super::lora_linear`]).
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
