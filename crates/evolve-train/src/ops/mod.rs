//! Differentiable building blocks written from primitive candle ops.
//!
//! candle's fused kernels (`candle_nn::ops::rms_norm`, `softmax_last_dim`, `rotary_emb::rope*`)
//! have no backward pass and silently cut the gradient, so training must not use them. Each
//! function here has a finite-difference gradient test.

mod attention;
mod blas;
mod glu;
mod heads;
mod kernel;
mod lora_linear;
mod norm;
#[cfg(feature = "openblas")]
mod openblas;

pub use heads::{from_heads, to_heads};
pub use lora_linear::lora_linear;

use kernel::Float;
use rayon::prelude::*;

use crate::model::config::RopeLayout;
use candle_core::backend::BackendStorage;
use candle_core::quantized::QTensor;
use candle_core::{
    CpuStorage, CustomOp1, CustomOp2, D, DType, Device, Layout, Result, Shape, Storage, Tensor,
};

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

/// `x / sqrt(mean(x²) + eps) * weight` over the last dimension (llama.cpp `rms_norm` + mul).
/// One fused op on the CPU in f32/f64.
pub fn rms_norm(x: &Tensor, weight: &Tensor, eps: f64) -> Result<Tensor> {
    match norm::fused(x, weight, eps)? {
        Some(y) => Ok(y),
        None => composed_rms_norm(x, weight, eps),
    }
}

/// [`rms_norm`] from candle primitives: what devices other than the CPU run.
fn composed_rms_norm(x: &Tensor, weight: &Tensor, eps: f64) -> Result<Tensor> {
    let rms = (x.sqr()?.mean_keepdim(D::Minus1)? + eps)?.sqrt()?;
    x.broadcast_div(&rms)?.broadcast_mul(weight)
}

/// SwiGLU's `silu(gate) · up`. One fused op on the CPU in f32/f64.
pub fn silu_mul(gate: &Tensor, up: &Tensor) -> Result<Tensor> {
    match glu::fused(gate, up)? {
        Some(y) => Ok(y),
        None => composed_silu_mul(gate, up),
    }
}

/// [`silu_mul`] from candle primitives: what devices other than the CPU run.
fn composed_silu_mul(gate: &Tensor, up: &Tensor) -> Result<Tensor> {
    gate.silu()? * up
}

/// Softmax over the last dimension, shifted by the (constant) row maximum for stability.
pub fn softmax_last(x: &Tensor) -> Result<Tensor> {
    let shifted = x.broadcast_sub(&x.max_keepdim(D::Minus1)?.detach())?;
    let e = shifted.exp()?;
    e.broadcast_div(&e.sum_keepdim(D::Minus1)?)
}

/// Log-softmax over the last dimension: `x - max - log Σ exp(x - max)`.
pub fn log_softmax_last(x: &Tensor) -> Result<Tensor> {
    let shifted = x.broadcast_sub(&x.max_keepdim(D::Minus1)?.detach())?;
    let lse = shifted.exp()?.sum_keepdim(D::Minus1)?.log()?;
    shifted.broadcast_sub(&lse)
}

/// GELU (tanh approximation) with the values ggml's CPU backend computes: it rounds the input
/// to f16 and reads the result from an f16 table (exact beyond ±10), up to ~5e-4 relative off
/// the function — enough to move a Gemma's logits by 2e-4. In f32 and narrower the forward
/// pass takes ggml's values, so candle trains the model llama.cpp serves; the gradient is the
/// exact function's (the rounding's own derivative is zero almost everywhere). In f64, the
/// analytic reference the gradient checks use, it is the smooth function.
pub fn gelu_as_ggml(x: &Tensor) -> Result<Tensor> {
    let exact = x.gelu()?;
    if x.dtype() == DType::F64 {
        return Ok(exact);
    }
    let dtype = x.dtype();
    let x = x.detach();
    let through_f16 = |t: &Tensor| t.to_dtype(DType::F16)?.to_dtype(DType::F32);
    let table = through_f16(&through_f16(&x)?.gelu()?)?.to_dtype(dtype)?;
    let outside = x.abs()?.ge(10.0)?;
    let ggml = outside.where_cond(&exact.detach(), &table)?;
    exact.clone() + (ggml - exact.detach())?
}

/// `log softmax(logits)[i, targets[i]]` as `[n, 1]`, for logits `[n, vocab]` and `targets` `[n]`
/// (u32): the token log-probs every loss reads. The composed version (`log_softmax_last` then
/// `gather`) keeps several vocabulary-sized intermediates and as many gradients until the
/// backward pass ends — on a 150k vocabulary 0.6 GB each per 1,000 positions. On the CPU this op
/// keeps none: the forward pass writes `n` numbers, the backward pass one gradient,
/// `g·(onehot − softmax)`, both in one sweep per row (sums in f64), a row per thread. Other
/// devices and dtypes take the composed version.
pub fn target_logprobs(logits: &Tensor, targets: &Tensor) -> Result<Tensor> {
    let fused = logits.device().is_cpu()
        && logits.is_contiguous()
        && matches!(logits.dtype(), DType::F32 | DType::F64);
    if !fused {
        return log_softmax_last(logits)?.gather(&targets.unsqueeze(1)?, 1);
    }
    let (n, vocab) = logits.dims2()?;
    let targets = targets.to_dtype(DType::U32)?.to_vec1::<u32>()?;
    if targets.len() != n || targets.iter().any(|&t| t as usize >= vocab) {
        candle_core::bail!(
            "target-logprobs: {} targets for {n} rows of {vocab}",
            targets.len()
        );
    }
    logits.apply_op1_arc(std::sync::Arc::new(Box::new(TargetLogprobs { targets })))
}

struct TargetLogprobs {
    targets: Vec<u32>,
}

/// `log Σ_j exp(row_j)`, shifted by the row's maximum: the exponentials in `T` (vectorized),
/// their sum in f64 a block at a time.
#[inline(always)]
fn log_sum_exp<T: Float>(row: &[T]) -> f64 {
    let max = kernel::max(row);
    let mut block = [T::ZERO; 256];
    let total: f64 = row
        .chunks(block.len())
        .map(|c| {
            let block = &mut block[..c.len()];
            for (e, &v) in block.iter_mut().zip(c) {
                *e = (v - max).exp();
            }
            kernel::sum(block).to_f64()
        })
        .sum();
    max.to_f64() + total.ln()
}

impl TargetLogprobs {
    /// One row per task: a 150k vocabulary makes each row ~0.5 ms of exponentials.
    fn forward<T: Float>(&self, x: &[T], vocab: usize) -> Vec<T> {
        x.par_chunks(vocab)
            .zip(self.targets.par_iter())
            .map(|(row, &t)| {
                kernel::with_simd(|| T::from_f64(row[t as usize].to_f64() - log_sum_exp(row)))
            })
            .collect()
    }

    fn backward<T: Float>(&self, x: &[T], vocab: usize, grad: &[f64]) -> Vec<T> {
        let mut out = vec![T::ZERO; x.len()];
        out.par_chunks_mut(vocab)
            .zip(x.par_chunks(vocab).zip(self.targets.par_iter().zip(grad)))
            .for_each(|(out, (row, (&t, &g)))| {
                kernel::with_simd(|| {
                    let lse = T::from_f64(log_sum_exp(row));
                    let g = T::from_f64(g);
                    for (o, &v) in out.iter_mut().zip(row) {
                        *o = T::ZERO - g * (v - lse).exp();
                    }
                    out[t as usize] = out[t as usize] + g;
                })
            });
        out
    }
}

impl CustomOp1 for TargetLogprobs {
    fn name(&self) -> &'static str {
        "target-logprobs"
    }

    fn cpu_fwd(&self, x: &CpuStorage, layout: &Layout) -> Result<(CpuStorage, Shape)> {
        let (n, vocab) = layout.shape().dims2()?;
        let range = layout.start_offset()..layout.start_offset() + n * vocab;
        let out = match x {
            CpuStorage::F32(v) => CpuStorage::F32(self.forward(&v[range], vocab)),
            CpuStorage::F64(v) => CpuStorage::F64(self.forward(&v[range], vocab)),
            _ => candle_core::bail!("target-logprobs: f32 or f64 logits"),
        };
        Ok((out, Shape::from((n, 1))))
    }

    fn bwd(&self, x: &Tensor, _out: &Tensor, grad: &Tensor) -> Result<Option<Tensor>> {
        let (n, vocab) = x.dims2()?;
        let g = grad.to_dtype(DType::F64)?.flatten_all()?.to_vec1::<f64>()?;
        let (storage, layout) = x.storage_and_layout();
        let range = layout.start_offset()..layout.start_offset() + n * vocab;
        let dx = match &*storage {
            Storage::Cpu(CpuStorage::F32(v)) => {
                Tensor::from_vec(self.backward(&v[range], vocab, &g), (n, vocab), x.device())?
            }
            Storage::Cpu(CpuStorage::F64(v)) => {
                Tensor::from_vec(self.backward(&v[range], vocab, &g), (n, vocab), x.device())?
            }
            _ => candle_core::bail!("target-logprobs: f32 or f64 logits on the CPU"),
        };
        Ok(Some(dx))
    }
}

/// `log σ(x)` without overflow: `min(x, 0) - log(1 + e^{-|x|})`.
pub fn log_sigmoid(x: &Tensor) -> Result<Tensor> {
    let neg_part = (x - x.relu()?)?; // min(x, 0)
    let abs = x.abs()?;
    let log1p = ((abs.neg()?.exp()? + 1.0)?).log()?;
    neg_part - log1p
}

/// `x · Wᵀ` for `x` of shape `[.., in]` and `W` of shape `[out, in]`, differentiable in both (the
/// LoRA matrices). On the CPU in f32/f64 one op whose products run in [`blas::matmul`].
pub fn linear(x: &Tensor, w: &Tensor) -> Result<Tensor> {
    if kernel::fusable(&[x, w]) && x.is_contiguous() && w.is_contiguous() {
        let op = std::sync::Arc::new(Box::new(Linear) as Box<dyn CustomOp2 + Send + Sync>);
        return on_rows(x, w.dim(0)?, |rows| rows.apply_op2_arc(w, op));
    }
    composed_linear(x, w)
}

/// [`linear`] as candle's matmul: what other devices and dtypes run.
fn composed_linear(x: &Tensor, w: &Tensor) -> Result<Tensor> {
    on_rows(x, w.dim(0)?, |rows| rows.matmul(&w.t()?))
}

/// `x·Wᵀ` with both gradients: `∂x = g·W`, `∂W = gᵀ·x`.
struct Linear;

impl CustomOp2 for Linear {
    fn name(&self) -> &'static str {
        "linear"
    }

    fn cpu_fwd(
        &self,
        x: &CpuStorage,
        x_layout: &Layout,
        w: &CpuStorage,
        w_layout: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        rows_times_weight(x, x_layout, w, w_layout)
    }

    fn bwd(
        &self,
        x: &Tensor,
        w: &Tensor,
        _out: &Tensor,
        grad: &Tensor,
    ) -> Result<(Option<Tensor>, Option<Tensor>)> {
        let (grad, x) = (grad.contiguous()?, x.contiguous()?);
        let ((m, n), (_, k)) = (grad.dims2()?, x.dims2()?);
        let dw = kernel::with_cpu_slices!("linear", [(grad, g), (x, xs)], {
            Tensor::from_vec(
                blas::matmul((n, k, m), (g, true), (xs, false)),
                (n, k),
                x.device(),
            )
        })?;
        Ok((Some(grad_times_weight(&grad, w)?), Some(dw)))
    }
}

/// `x · Wᵀ` for a frozen weight `W: [out, in]`, differentiable in `x` only.
///
/// candle's matmul backward always computes the gradient of both operands, so on a frozen base
/// model it would spend a third of the backward pass on weight gradients nobody uses and keep
/// them — one model-sized buffer — until the backward pass ends. On the CPU this op computes
/// only `∂/∂x = g·W`; other devices fall back to the plain matmul.
///
/// A quantized weight is dequantized on the fly in both passes and dropped afterwards, so the
/// model's resident weights stay at the quantized size (Q8_0 is 34 bytes per 32 weights, ~3.8x
/// less than f32) at the cost of one dequantization per use. Unlike llama.cpp (and candle's
/// `QMatMul`), the activations are not quantized: the result is exactly the dequantized-weight
/// matmul, a smooth function of `x` with an exact gradient. (The fallback's graph holds the
/// dequantized weight until the backward pass ends.)
pub fn frozen_linear(x: &Tensor, w: &Weight) -> Result<Tensor> {
    let w = match w {
        Weight::Dense(t) => Weight::Dense(t.detach()),
        quantized => quantized.clone(),
    };
    if !x.device().is_cpu() || !x.is_contiguous() {
        return linear(x, &w.dense(x.dtype(), x.device())?);
    }
    let n_out = w.dims2()?.0;
    apply_to_rows(x, FrozenMatmul { w }, n_out)
}

/// Applies a `[rows, n_in] → [rows, n_out]` op to the last dimension of `x` (any rank).
fn apply_to_rows(
    x: &Tensor,
    op: impl CustomOp1 + Send + Sync + 'static,
    n_out: usize,
) -> Result<Tensor> {
    on_rows(x, n_out, |rows| {
        rows.apply_op1_arc(std::sync::Arc::new(Box::new(op)))
    })
}

/// `f` on `x` as a `[rows, n_in]` matrix, its `[rows, n_out]` result back in `x`'s leading
/// dimensions.
fn on_rows(x: &Tensor, n_out: usize, f: impl FnOnce(&Tensor) -> Result<Tensor>) -> Result<Tensor> {
    let dims = x.dims();
    let n_in = dims[dims.len() - 1];
    let rows = x.elem_count() / n_in;
    let out = f(&x.reshape((rows, n_in))?)?;
    let mut out_dims = dims.to_vec();
    *out_dims.last_mut().expect("rank ≥ 1") = n_out;
    out.reshape(out_dims)
}

struct FrozenMatmul {
    w: Weight,
}

impl CustomOp1 for FrozenMatmul {
    fn name(&self) -> &'static str {
        "frozen-linear"
    }

    fn cpu_fwd(&self, x: &CpuStorage, x_layout: &Layout) -> Result<(CpuStorage, Shape)> {
        let w = self.w.dense(x.dtype(), &Device::Cpu)?;
        let (w_storage, w_layout) = w.storage_and_layout();
        let Storage::Cpu(w) = &*w_storage else {
            candle_core::bail!("frozen-linear: the weight is not on the CPU")
        };
        rows_times_weight(x, x_layout, w, w_layout)
    }

    fn bwd(&self, _x: &Tensor, _out: &Tensor, grad: &Tensor) -> Result<Option<Tensor>> {
        let w = self.w.dense(grad.dtype(), grad.device())?;
        Ok(Some(grad_times_weight(grad, &w)?))
    }
}

/// `x·Wᵀ` for CPU rows `x: [m, k]` and a weight `W: [n, k]`: through [`blas::matmul`] for
/// contiguous f32/f64, candle's matmul otherwise.
fn rows_times_weight(
    x: &CpuStorage,
    x_layout: &Layout,
    w: &CpuStorage,
    w_layout: &Layout,
) -> Result<(CpuStorage, Shape)> {
    let (m, k) = x_layout.shape().dims2()?;
    let (n, w_cols) = w_layout.shape().dims2()?;
    if w_cols != k {
        candle_core::bail!("linear: rows of {k} against a {n}×{w_cols} weight");
    }
    let contiguous = x_layout.is_contiguous() && w_layout.is_contiguous();
    let out = match (x, w) {
        (CpuStorage::F32(x), CpuStorage::F32(w)) if contiguous => CpuStorage::F32(blas::matmul(
            (m, n, k),
            (kernel::slice(x, x_layout), false),
            (kernel::slice(w, w_layout), true),
        )),
        (CpuStorage::F64(x), CpuStorage::F64(w)) if contiguous => CpuStorage::F64(blas::matmul(
            (m, n, k),
            (kernel::slice(x, x_layout), false),
            (kernel::slice(w, w_layout), true),
        )),
        _ => x.matmul(w, (1, m, n, k), x_layout, &w_layout.transpose(0, 1)?)?,
    };
    Ok((out, Shape::from((m, n))))
}

/// `∂/∂x` of `x·Wᵀ`: `g·W` for `g: [m, n]`, `W: [n, k]`.
fn grad_times_weight(grad: &Tensor, w: &Tensor) -> Result<Tensor> {
    if !kernel::fusable(&[grad, w]) {
        return grad.matmul(w);
    }
    let (grad, w) = (grad.contiguous()?, w.contiguous()?);
    let ((m, n), (_, k)) = (grad.dims2()?, w.dims2()?);
    kernel::with_cpu_slices!("linear", [(grad, g), (w, ws)], {
        Tensor::from_vec(
            blas::matmul((m, k, n), (g, false), (ws, false)),
            (m, k),
            grad.device(),
        )
    })
}

/// Rotation angles for positions `0..n_pos`: `(cos, sin)`, each `[n_pos, rope_dims/2]`.
///
/// `θ_i = scale · pos · base^(-2i/rope_dims) / freq_factor_i`, computed in f64 then cast, as llama.cpp
/// (f32) differs from it by less than one f32 ulp at the positions we train on.
pub fn rope_tables(
    n_pos: usize,
    rope_dims: usize,
    freq_base: f64,
    freq_scale: f64,
    freq_factors: Option<&[f32]>,
    dtype: DType,
    device: &Device,
) -> Result<(Tensor, Tensor)> {
    let half = rope_dims / 2;
    let mut cos = Vec::with_capacity(n_pos * half);
    let mut sin = Vec::with_capacity(n_pos * half);
    for pos in 0..n_pos {
        for i in 0..half {
            let factor = freq_factors.map_or(1.0, |f| f64::from(f[i]));
            let theta =
                pos as f64 * freq_scale * freq_base.powf(-2.0 * i as f64 / rope_dims as f64)
                    / factor;
            cos.push(theta.cos());
            sin.push(theta.sin());
        }
    }
    let cos = Tensor::from_vec(cos, (n_pos, half), device)?.to_dtype(dtype)?;
    let sin = Tensor::from_vec(sin, (n_pos, half), device)?.to_dtype(dtype)?;
    Ok((cos, sin))
}

/// Rotary position embedding of `x: [b, heads, t, head_dim]` with tables from [`rope_tables`]
/// (`[t, rope_dims/2]`). Dimensions past `rope_dims` pass through unchanged.
pub fn rope(x: &Tensor, cos: &Tensor, sin: &Tensor, layout: RopeLayout) -> Result<Tensor> {
    let (b, h, t, d) = x.dims4()?;
    let half = cos.dim(1)?;
    let rope_dims = 2 * half;
    let rot = x.narrow(3, 0, rope_dims)?;
    let rotated = match layout {
        RopeLayout::AdjacentPairs => {
            let pairs = rot.reshape((b, h, t, half, 2))?;
            let x0 = pairs.narrow(4, 0, 1)?.squeeze(4)?;
            let x1 = pairs.narrow(4, 1, 1)?.squeeze(4)?;
            let (y0, y1) = rotate(&x0, &x1, cos, sin)?;
            Tensor::stack(&[y0, y1], 4)?.reshape((b, h, t, rope_dims))?
        }
        RopeLayout::Halves => {
            let x0 = rot.narrow(3, 0, half)?;
            let x1 = rot.narrow(3, half, half)?;
            let (y0, y1) = rotate(&x0, &x1, cos, sin)?;
            Tensor::cat(&[y0, y1], 3)?
        }
    };
    if rope_dims == d {
        Ok(rotated)
    } else {
        Tensor::cat(&[rotated, x.narrow(3, rope_dims, d - rope_dims)?], 3)
    }
}

fn rotate(x0: &Tensor, x1: &Tensor, cos: &Tensor, sin: &Tensor) -> Result<(Tensor, Tensor)> {
    let y0 = (x0.broadcast_mul(cos)? - x1.broadcast_mul(sin)?)?;
    let y1 = (x0.broadcast_mul(sin)? + x1.broadcast_mul(cos)?)?;
    Ok((y0, y1))
}

/// Additive causal mask `[t, t]`: 0 on and below the diagonal, a large negative above.
/// (Finite, so no `inf - inf` can appear in the backward pass.)
pub fn causal_mask(t: usize, dtype: DType, device: &Device) -> Result<Tensor> {
    sliding_mask(t, None, dtype, device)
}

/// [`causal_mask`] that, with a `window`, also hides keys `window` or more positions back: a
/// query at `i` sees `(i - window, i]` (llama.cpp's standard sliding window).
pub fn sliding_mask(
    t: usize,
    window: Option<usize>,
    dtype: DType,
    device: &Device,
) -> Result<Tensor> {
    let window = window.unwrap_or(usize::MAX);
    let mask: Vec<f32> = (0..t)
        .flat_map(|i| (0..t).map(move |j| if j > i || i - j >= window { -1e9 } else { 0.0 }))
        .collect();
    Tensor::from_vec(mask, (t, t), device)?.to_dtype(dtype)
}

/// Repeats each key/value head `n_rep` times so that query head `h` meets kv head `h / n_rep`
/// (grouped-query attention, same grouping as ggml's broadcast).
pub fn repeat_kv(x: &Tensor, n_rep: usize) -> Result<Tensor> {
    if n_rep == 1 {
        return Ok(x.clone());
    }
    let (b, h_kv, t, d) = x.dims4()?;
    x.unsqueeze(2)?
        .broadcast_as((b, h_kv, n_rep, t, d))?
        .contiguous()?
        .reshape((b, h_kv * n_rep, t, d))
}

/// Causal scaled dot-product attention. `q: [b, h, t, d]`, `k, v: [b, h_kv, t, d]`, scores
/// multiplied by `scale` (usually `1/√d`) plus `mask` (`[t, t]`, causal: from [`sliding_mask`]);
/// returns `[b, t, h·d]`. One fused op on the CPU in f32/f64.
pub fn causal_attention(
    q: &Tensor,
    k: &Tensor,
    v: &Tensor,
    mask: &Tensor,
    scale: f64,
) -> Result<Tensor> {
    match attention::fused(q, k, v, mask, scale)? {
        Some(out) => from_heads(&out),
        None => composed_attention(q, k, v, mask, scale),
    }
}

/// [`causal_attention`] from candle primitives: what devices other than the CPU run.
fn composed_attention(
    q: &Tensor,
    k: &Tensor,
    v: &Tensor,
    mask: &Tensor,
    scale: f64,
) -> Result<Tensor> {
    let (b, h, t, d) = q.dims4()?;
    let n_rep = h / k.dim(1)?;
    let k = repeat_kv(k, n_rep)?;
    let v = repeat_kv(v, n_rep)?;
    let scores = (q.contiguous()?.matmul(&k.t()?.contiguous()?)? * scale)?;
    let probs = softmax_last(&scores.broadcast_add(mask)?)?;
    probs
        .matmul(&v.contiguous()?)?
        .transpose(1, 2)?
        .contiguous()?
        .reshape((b, t, h * d))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::gradcheck::{assert_grad_matches, max_abs_diff, randn, randn_var};
    use candle_core::Var;

    /// A random projection turns any tensor into a scalar whose gradient exercises every entry.
    fn project(y: &Tensor, seed: u64) -> Result<Tensor> {
        (y * randn(seed, y.dims(), 1.0))?.sum_all()
    }

    #[test]
    fn frozen_linear_equals_linear_and_only_differentiates_the_input() {
        let x = randn_var(20, &[2, 3, 8], 1.0);
        let w = randn_var(21, &[5, 8], 1.0);
        let frozen = Weight::Dense(w.as_tensor().clone());
        let a = frozen_linear(x.as_tensor(), &frozen).unwrap();
        let b = linear(x.as_tensor(), w.as_tensor()).unwrap();
        assert_eq!(a.dims(), &[2, 3, 5]);
        let diff = max_abs_diff(&a, &b);
        assert!(diff < 1e-12, "{diff}");
        let f = || project(&frozen_linear(x.as_tensor(), &frozen)?, 22);
        assert_grad_matches("frozen_linear/x", &x, f, 48);
        // Even a variable weight gets no gradient through it: the base never trains.
        let grads = f().unwrap().backward().unwrap();
        assert!(grads.get(w.as_tensor()).is_none());
        assert!(grads.get(x.as_tensor()).is_some());
        // The plain linear, by contrast, would have produced one.
        let grads = project(&b, 22).unwrap().backward().unwrap();
        assert!(grads.get(w.as_tensor()).is_some());
    }

    #[test]
    fn frozen_linear_of_a_quantized_weight_is_the_dequantized_matmul_with_an_exact_gradient() {
        use candle_core::quantized::GgmlDType;
        let w = randn(23, &[6, 64], 0.5).to_dtype(DType::F32).unwrap();
        let q = std::sync::Arc::new(QTensor::quantize(&w, GgmlDType::Q8_0).unwrap());
        let w_deq = q
            .dequantize(&Device::Cpu)
            .unwrap()
            .to_dtype(DType::F64)
            .unwrap();
        let rounding = (&w_deq - w.to_dtype(DType::F64).unwrap())
            .unwrap()
            .abs()
            .unwrap()
            .max_all()
            .unwrap()
            .to_scalar::<f64>()
            .unwrap();
        assert!(
            rounding > 0.0,
            "q8_0 must round: the test would not see a mix-up"
        );
        let x = randn_var(24, &[2, 3, 64], 1.0);
        let q = Weight::Quantized(q);
        let got = frozen_linear(x.as_tensor(), &q).unwrap();
        assert_eq!(got.dims(), &[2, 3, 6]);
        let want = linear(x.as_tensor(), &w_deq).unwrap();
        let diff = max_abs_diff(&got, &want);
        assert!(diff < 1e-12, "{diff}");
        assert_grad_matches(
            "frozen_linear/quantized/x",
            &x,
            || project(&frozen_linear(x.as_tensor(), &q)?, 25),
            64,
        );
    }

    #[test]
    fn gelu_as_ggml_takes_ggml_values_forward_and_the_exact_gradient_back() {
        let x = Var::from_tensor(
            &Tensor::cat(
                &[
                    randn(30, &[64], 2.0),
                    Tensor::new(&[-12.5f64, 11.0, 10.0, -10.0], &Device::Cpu).unwrap(),
                ],
                0,
            )
            .unwrap()
            .to_dtype(DType::F32)
            .unwrap(),
        )
        .unwrap();
        let got = gelu_as_ggml(x.as_tensor()).unwrap();
        let exact = x.as_tensor().gelu().unwrap();
        let (got_v, exact_v): (Vec<f32>, Vec<f32>) =
            (got.to_vec1().unwrap(), exact.to_vec1().unwrap());
        let xs: Vec<f32> = x.as_tensor().to_vec1().unwrap();
        let mut rounded = 0;
        for ((&g, &e), &xi) in got_v.iter().zip(&exact_v).zip(&xs) {
            if xi.abs() >= 10.0 {
                assert_eq!(g, e, "beyond ±10 ggml is exact: {xi}");
            } else {
                // At most one f16 rounding of the input (through the slope ≤ 1.13) and one of
                // the output: ~2^-11 relative each.
                assert!((g - e).abs() <= 2e-3 * xi.abs() + 1e-6, "{xi}: {g} vs {e}");
                rounded += usize::from(g != e);
            }
        }
        assert!(
            rounded > 32,
            "only {rounded} of 64 values differ: not ggml's table"
        );
        // The gradient is the exact GELU's, to the bit.
        let r = randn(31, &[68], 1.0).to_dtype(DType::F32).unwrap();
        let ours = (got * &r).unwrap().sum_all().unwrap().backward().unwrap();
        let reference = (exact * &r).unwrap().sum_all().unwrap().backward().unwrap();
        let diff = max_abs_diff(
            ours.get(x.as_tensor()).unwrap(),
            reference.get(x.as_tensor()).unwrap(),
        );
        assert_eq!(diff, 0.0);
        // f64 is the smooth function.
        let x64 = randn(32, &[16], 2.0);
        assert_eq!(
            gelu_as_ggml(&x64).unwrap().to_vec1::<f64>().unwrap(),
            x64.gelu().unwrap().to_vec1::<f64>().unwrap()
        );
    }

    /// Every device this build can run on: the CPU, and a CUDA or Metal GPU when the build has
    /// the feature and the machine the device.
    fn devices() -> Vec<Device> {
        let mut out = vec![Device::Cpu];
        if candle_core::utils::cuda_is_available()
            && let Ok(d) = Device::new_cuda(0)
        {
            out.push(d);
        }
        if candle_core::utils::metal_is_available()
            && let Ok(d) = Device::new_metal(0)
        {
            out.push(d);
        }
        out
    }

    /// The training ops on every device give the CPU's values and input gradients (the CPU's
    /// are checked against finite differences above). On the CPU itself, the custom matmuls'
    /// fallback — the path other devices take — is compared with the custom op.
    #[test]
    fn training_ops_give_the_cpus_values_and_gradients_on_every_device() {
        use candle_core::quantized::GgmlDType;
        let f32 = |t: Tensor| t.to_dtype(DType::F32).unwrap();
        let w = f32(randn(40, &[6, 32], 0.5));
        let q = Weight::Quantized(std::sync::Arc::new(
            QTensor::quantize(&w, GgmlDType::Q8_0).unwrap(),
        ));
        let norm = f32(randn(41, &[32], 1.0));
        let (cos, sin) = rope_tables(5, 8, 100.0, 0.5, None, DType::F32, &Device::Cpu).unwrap();
        let mask = sliding_mask(5, Some(3), DType::F32, &Device::Cpu).unwrap();
        // (name, op on an input of shape [2, 5, 32]); weights move to the input's device.
        type Op<'a> = Box<dyn Fn(&Tensor) -> Result<Tensor> + 'a>;
        let on = |t: &Tensor, x: &Tensor| t.to_device(x.device());
        let ops: Vec<(&str, Op)> = vec![
            ("linear", Box::new(|x: &Tensor| linear(x, &on(&w, x)?))),
            (
                "linear fallback",
                Box::new(|x: &Tensor| composed_linear(x, &on(&w, x)?)),
            ),
            (
                "frozen_linear",
                Box::new(|x: &Tensor| frozen_linear(x, &Weight::Dense(on(&w, x)?))),
            ),
            (
                "frozen_linear fallback",
                Box::new(|x: &Tensor| {
                    frozen_linear(&x.transpose(0, 1)?, &Weight::Dense(on(&w, x)?))?.transpose(0, 1)
                }),
            ),
            (
                "frozen_linear quantized",
                Box::new(|x: &Tensor| frozen_linear(x, &q)),
            ),
            (
                "frozen_linear quantized fallback",
                Box::new(|x: &Tensor| frozen_linear(&x.transpose(0, 1)?, &q)?.transpose(0, 1)),
            ),
            (
                "rms_norm",
                Box::new(|x: &Tensor| rms_norm(x, &on(&norm, x)?, 1e-6)),
            ),
            (
                "rms_norm fallback",
                Box::new(|x: &Tensor| composed_rms_norm(x, &on(&norm, x)?, 1e-6)),
            ),
            (
                "silu_mul",
                Box::new(|x: &Tensor| silu_mul(&x.narrow(2, 0, 16)?, &x.narrow(2, 16, 16)?)),
            ),
            (
                "silu_mul fallback",
                Box::new(|x: &Tensor| {
                    composed_silu_mul(&x.narrow(2, 0, 16)?, &x.narrow(2, 16, 16)?)
                }),
            ),
            ("gelu_as_ggml", Box::new(gelu_as_ggml)),
            ("log_softmax_last", Box::new(log_softmax_last)),
            (
                "target_logprobs",
                Box::new(|x: &Tensor| {
                    let targets = Tensor::new(&[3u32, 31, 0, 7, 12, 5, 30, 1, 2, 9], x.device())?;
                    target_logprobs(&x.reshape((10, 32))?, &targets)
                }),
            ),
            (
                "target_logprobs fallback",
                Box::new(|x: &Tensor| {
                    let targets = Tensor::new(&[3u32, 31, 0, 7, 12, 5, 30, 1, 2, 9], x.device())?;
                    let x = x.reshape((10, 32))?;
                    log_softmax_last(&x)?.gather(&targets.unsqueeze(1)?, 1)
                }),
            ),
            (
                "to_heads + attention",
                Box::new(|x: &Tensor| {
                    let (cos, sin) = (on(&cos, x)?, on(&sin, x)?);
                    let q = to_heads(x, 4, Some((&cos, &sin, RopeLayout::AdjacentPairs)))?;
                    let v = to_heads(x, 4, None)?;
                    causal_attention(&q, &q, &v, &on(&mask, x)?, 0.35)
                }),
            ),
            (
                "rope + attention",
                Box::new(|x: &Tensor| {
                    let heads = x.reshape((2, 5, 4, 8))?.transpose(1, 2)?.contiguous()?;
                    let r = rope(&heads, &on(&cos, x)?, &on(&sin, x)?, RopeLayout::Halves)?;
                    causal_attention(&r, &heads, &heads, &on(&mask, x)?, 0.35)
                }),
            ),
            (
                "rope + attention fallback",
                Box::new(|x: &Tensor| {
                    let heads = x.reshape((2, 5, 4, 8))?.transpose(1, 2)?.contiguous()?;
                    let r = rope(&heads, &on(&cos, x)?, &on(&sin, x)?, RopeLayout::Halves)?;
                    composed_attention(&r, &heads, &heads, &on(&mask, x)?, 0.35)
                }),
            ),
        ];
        let x_cpu = f32(randn(42, &[2, 5, 32], 1.0));
        let value_and_grad = |op: &Op, device: &Device| -> (Vec<f32>, Vec<f32>) {
            let x = Var::from_tensor(&x_cpu.to_device(device).unwrap()).unwrap();
            let y = op(x.as_tensor()).unwrap();
            let r = f32(randn(43, y.dims(), 1.0)).to_device(device).unwrap();
            let grads = (&y * r).unwrap().sum_all().unwrap().backward().unwrap();
            let flat = |t: &Tensor| t.flatten_all().unwrap().to_device(&Device::Cpu).unwrap();
            let g = grads.get(x.as_tensor()).expect("no input gradient");
            (flat(&y).to_vec1().unwrap(), flat(g).to_vec1().unwrap())
        };
        let rel = |a: &[f32], b: &[f32]| {
            let num: f32 = a.iter().zip(b).map(|(x, y)| (x - y).powi(2)).sum();
            let den: f32 = b.iter().map(|y| y * y).sum();
            (num / den).sqrt()
        };
        for device in devices() {
            for (i, (name, op)) in ops.iter().enumerate() {
                // Fallbacks are compared with the op they stand in for, on the CPU.
                let (reference, want) = if name.ends_with("fallback") {
                    (&ops[i - 1].1, Device::Cpu)
                } else {
                    (op, Device::Cpu)
                };
                let (y, g) = value_and_grad(op, &device);
                let (y_ref, g_ref) = value_and_grad(reference, &want);
                let (ey, eg) = (rel(&y, &y_ref), rel(&g, &g_ref));
                eprintln!("{device:?} {name}: value {ey:.1e}, gradient {eg:.1e}");
                assert!(ey < 1e-5 && eg < 1e-5, "{device:?} {name}: {ey} {eg}");
            }
        }
    }

    #[test]
    fn target_logprobs_equal_log_softmax_then_gather_with_an_exact_gradient() {
        let logits = randn_var(50, &[5, 11], 3.0);
        let targets = Tensor::new(&[0u32, 10, 3, 3, 7], &Device::Cpu).unwrap();
        let got = target_logprobs(logits.as_tensor(), &targets).unwrap();
        let want = log_softmax_last(logits.as_tensor())
            .unwrap()
            .gather(&targets.unsqueeze(1).unwrap(), 1)
            .unwrap();
        assert_eq!(got.dims(), &[5, 1]);
        let diff = max_abs_diff(&got, &want);
        assert!(diff < 1e-12, "{diff}");
        assert_grad_matches(
            "target_logprobs",
            &logits,
            || project(&target_logprobs(logits.as_tensor(), &targets)?, 51),
            55,
        );
        // A target outside the vocabulary is an error, not a read past the row.
        let bad = Tensor::new(&[0u32, 11, 0, 0, 0], &Device::Cpu).unwrap();
        assert!(target_logprobs(logits.as_tensor(), &bad).is_err());
    }

    /// The fused norm and SwiGLU against their compositions (f64), on more rows and elements
    /// than one task of the kernels takes, so the tasks' partial weight gradients are summed.
    #[test]
    fn fused_norm_and_swiglu_equal_their_compositions_with_every_gradient() {
        let x = randn_var(60, &[3, 50, 16], 1.0);
        let w = randn_var(61, &[16], 1.0);
        let up = randn_var(62, &[3, 50, 16], 1.0);
        let grads_of = |y: Tensor| {
            let g = project(&y, 63).unwrap().backward().unwrap();
            let get = |v: &Var| g.get(v.as_tensor()).cloned();
            [Some(y.clone()), get(&x), get(&w), get(&up)]
        };
        let (xs, ws, us) = (x.as_tensor(), w.as_tensor(), up.as_tensor());
        let cases = [
            (
                "rms_norm",
                rms_norm(xs, ws, 1e-5).unwrap(),
                composed_rms_norm(xs, ws, 1e-5).unwrap(),
            ),
            (
                "silu_mul",
                silu_mul(&xs.broadcast_mul(ws).unwrap(), us).unwrap(),
                composed_silu_mul(&xs.broadcast_mul(ws).unwrap(), us).unwrap(),
            ),
        ];
        for (name, fused, composed) in cases {
            let (a, b) = (grads_of(fused), grads_of(composed));
            for (part, (p, q)) in ["value", "x", "w", "up"].iter().zip(a.iter().zip(&b)) {
                match (p, q) {
                    (Some(p), Some(q)) => {
                        let diff = max_abs_diff(p, q);
                        assert!(diff < 1e-12, "{name} {part}: {diff:e}");
                    }
                    (None, None) => {}
                    _ => panic!("{name} {part}: a gradient on one side only"),
                }
            }
        }
        assert_grad_matches(
            "silu_mul/gate",
            &x,
            || project(&silu_mul(x.as_tensor(), up.as_tensor())?, 64),
            40,
        );
        assert_grad_matches(
            "silu_mul/up",
            &up,
            || project(&silu_mul(x.as_tensor(), up.as_tensor())?, 64),
            40,
        );
    }

    #[test]
    fn rms_norm_matches_the_definition_and_its_gradient() {
        let x = randn_var(1, &[2, 3, 8], 1.0);
        let w = randn_var(2, &[8], 1.0);
        let y = rms_norm(x.as_tensor(), w.as_tensor(), 1e-5).unwrap();
        let xv = x.as_tensor().to_vec3::<f64>().unwrap();
        let wv = w.as_tensor().to_vec1::<f64>().unwrap();
        let row = &xv[1][2];
        let rms = (row.iter().map(|v| v * v).sum::<f64>() / 8.0 + 1e-5).sqrt();
        let got = y.to_vec3::<f64>().unwrap()[1][2].clone();
        for j in 0..8 {
            assert!((got[j] - row[j] / rms * wv[j]).abs() < 1e-12);
        }
        assert_grad_matches(
            "rms_norm/x",
            &x,
            || project(&rms_norm(x.as_tensor(), w.as_tensor(), 1e-5)?, 3),
            48,
        );
        assert_grad_matches(
            "rms_norm/w",
            &w,
            || project(&rms_norm(x.as_tensor(), w.as_tensor(), 1e-5)?, 3),
            8,
        );
    }

    #[test]
    fn softmax_and_log_softmax_are_normalised_and_differentiable() {
        let x = randn_var(4, &[3, 7], 2.0);
        let p = softmax_last(x.as_tensor()).unwrap();
        for s in p.sum(1).unwrap().to_vec1::<f64>().unwrap() {
            assert!((s - 1.0).abs() < 1e-12);
        }
        let lp = log_softmax_last(x.as_tensor()).unwrap();
        let diff = (lp.exp().unwrap() - &p)
            .unwrap()
            .abs()
            .unwrap()
            .max_all()
            .unwrap();
        assert!(diff.to_scalar::<f64>().unwrap() < 1e-12);
        assert_grad_matches(
            "softmax",
            &x,
            || project(&softmax_last(x.as_tensor())?, 5),
            21,
        );
        assert_grad_matches(
            "log_softmax",
            &x,
            || project(&log_softmax_last(x.as_tensor())?, 5),
            21,
        );
    }

    #[test]
    fn log_sigmoid_is_stable_and_differentiable() {
        let x = Tensor::new(&[-800.0f64, -3.0, 0.0, 2.5, 800.0], &Device::Cpu).unwrap();
        let got = log_sigmoid(&x).unwrap().to_vec1::<f64>().unwrap();
        let want = [
            -800.0,
            -3.048_587_351_573_742,
            -std::f64::consts::LN_2,
            -0.078_889_734_292_549_63,
            0.0,
        ];
        for (g, w) in got.iter().zip(want) {
            assert!((g - w).abs() < 1e-12, "{g} vs {w}");
        }
        let v = randn_var(6, &[9], 3.0);
        assert_grad_matches(
            "log_sigmoid",
            &v,
            || project(&log_sigmoid(v.as_tensor())?, 7),
            9,
        );
    }

    fn rope_reference(x: &[f64], pos: usize, base: f64, layout: RopeLayout) -> Vec<f64> {
        // Straight from ggml's rope_f32 loops: NORM rotates (2i, 2i+1), NEOX (i, i+d/2).
        let d = x.len();
        let mut y = x.to_vec();
        for i in 0..d / 2 {
            let theta = pos as f64 * base.powf(-2.0 * i as f64 / d as f64);
            let (a, b) = match layout {
                RopeLayout::AdjacentPairs => (2 * i, 2 * i + 1),
                RopeLayout::Halves => (i, i + d / 2),
            };
            y[a] = x[a] * theta.cos() - x[b] * theta.sin();
            y[b] = x[a] * theta.sin() + x[b] * theta.cos();
        }
        y
    }

    #[test]
    fn rope_rotates_the_right_pairs_in_both_layouts_and_is_differentiable() {
        let (t, d) = (5, 8);
        let (cos, sin) = rope_tables(t, d, 100.0, 1.0, None, DType::F64, &Device::Cpu).unwrap();
        for layout in [RopeLayout::AdjacentPairs, RopeLayout::Halves] {
            let x = randn_var(8, &[2, 3, t, d], 1.0);
            let y = rope(x.as_tensor(), &cos, &sin, layout).unwrap();
            let xs = x
                .as_tensor()
                .get(1)
                .unwrap()
                .get(2)
                .unwrap()
                .to_vec2::<f64>()
                .unwrap();
            let ys = y.get(1).unwrap().get(2).unwrap().to_vec2::<f64>().unwrap();
            for pos in 0..t {
                let want = rope_reference(&xs[pos], pos, 100.0, layout);
                for j in 0..d {
                    assert!(
                        (ys[pos][j] - want[j]).abs() < 1e-12,
                        "{layout:?} pos {pos} dim {j}"
                    );
                }
            }
            assert_grad_matches(
                &format!("rope {layout:?}"),
                &x,
                || project(&rope(x.as_tensor(), &cos, &sin, layout)?, 9),
                60,
            );
        }
        // The two layouts really differ (a test that mixes them up must fail).
        let x = randn(10, &[1, 1, t, d], 1.0);
        let a = rope(&x, &cos, &sin, RopeLayout::AdjacentPairs).unwrap();
        let b = rope(&x, &cos, &sin, RopeLayout::Halves).unwrap();
        let diff = max_abs_diff(&a, &b);
        assert!(diff > 1e-3);
    }

    #[test]
    fn partial_rope_leaves_the_tail_untouched() {
        let (cos, sin) = rope_tables(4, 4, 10_000.0, 1.0, None, DType::F64, &Device::Cpu).unwrap();
        let x = randn(11, &[1, 2, 4, 8], 1.0);
        let y = rope(&x, &cos, &sin, RopeLayout::Halves).unwrap();
        let tail = (y.narrow(3, 4, 4).unwrap() - x.narrow(3, 4, 4).unwrap()).unwrap();
        assert_eq!(
            tail.abs()
                .unwrap()
                .max_all()
                .unwrap()
                .to_scalar::<f64>()
                .unwrap(),
            0.0
        );
        let head = (y.narrow(3, 0, 4).unwrap() - x.narrow(3, 0, 4).unwrap()).unwrap();
        assert!(
            head.abs()
                .unwrap()
                .max_all()
                .unwrap()
                .to_scalar::<f64>()
                .unwrap()
                > 1e-3
        );
    }

    /// `1/√d` for the attention tests' head size of 3.
    const SCALE: f64 = 0.577_350_269_189_625_8;

    #[test]
    fn a_sliding_window_hides_keys_that_far_back_and_nothing_else() {
        let (b, h, t, d, w) = (1, 2, 6, 3, 2);
        let mask = sliding_mask(t, Some(w), DType::F64, &Device::Cpu).unwrap();
        let rows: Vec<Vec<f64>> = mask.to_vec2().unwrap();
        for (i, row) in rows.iter().enumerate() {
            for (j, &m) in row.iter().enumerate() {
                let visible = j <= i && i - j < w;
                assert_eq!(m == 0.0, visible, "query {i}, key {j}");
            }
        }
        assert_eq!(
            sliding_mask(t, None, DType::F64, &Device::Cpu)
                .unwrap()
                .to_vec2::<f64>()
                .unwrap(),
            causal_mask(t, DType::F64, &Device::Cpu)
                .unwrap()
                .to_vec2::<f64>()
                .unwrap()
        );
        // Changing the value at position 0 changes only queries 0 and 1 (window 2).
        let q = randn_var(16, &[b, h, t, d], 1.0);
        let k = randn_var(17, &[b, h, t, d], 1.0);
        let v = randn_var(18, &[b, h, t, d], 1.0);
        let out =
            causal_attention(q.as_tensor(), k.as_tensor(), v.as_tensor(), &mask, SCALE).unwrap();
        let first = (v.as_tensor().narrow(2, 0, 1).unwrap() + 3.0).unwrap();
        let v2 = Tensor::cat(&[first, v.as_tensor().narrow(2, 1, t - 1).unwrap()], 2).unwrap();
        let out2 = causal_attention(q.as_tensor(), k.as_tensor(), &v2, &mask, SCALE).unwrap();
        let moved: Vec<f64> = (out - out2)
            .unwrap()
            .abs()
            .unwrap()
            .max_keepdim(2)
            .unwrap()
            .flatten_all()
            .unwrap()
            .to_vec1()
            .unwrap();
        assert!(moved[0] > 0.0 && moved[1] > 0.0, "{moved:?}");
        assert!(moved[2..].iter().all(|&m| m == 0.0), "{moved:?}");
    }

    #[test]
    fn causal_attention_ignores_the_future_and_has_exact_gradients() {
        let (b, h, h_kv, t, d) = (2, 4, 2, 5, 3);
        let mask = causal_mask(t, DType::F64, &Device::Cpu).unwrap();
        let q = randn_var(12, &[b, h, t, d], 1.0);
        let k = randn_var(13, &[b, h_kv, t, d], 1.0);
        let v = randn_var(14, &[b, h_kv, t, d], 1.0);
        let out =
            causal_attention(q.as_tensor(), k.as_tensor(), v.as_tensor(), &mask, SCALE).unwrap();
        assert_eq!(out.dims(), &[b, t, h * d]);
        // Position 0 only sees itself: its output is v at position 0 of the matching kv head.
        let first = out
            .get(0)
            .unwrap()
            .get(0)
            .unwrap()
            .to_vec1::<f64>()
            .unwrap();
        let v0 = v.as_tensor().get(0).unwrap();
        for head in 0..h {
            let want = v0
                .get(head / 2)
                .unwrap()
                .get(0)
                .unwrap()
                .to_vec1::<f64>()
                .unwrap();
            assert_eq!(&first[head * d..(head + 1) * d], &want[..], "head {head}");
        }
        // Changing the last key must not change any earlier position.
        let kept = k.as_tensor().narrow(2, 0, t - 1).unwrap();
        let last = (k.as_tensor().narrow(2, t - 1, 1).unwrap() + 5.0).unwrap();
        let k_changed = Tensor::cat(&[kept, last], 2).unwrap();
        let out2 =
            causal_attention(q.as_tensor(), &k_changed, v.as_tensor(), &mask, SCALE).unwrap();
        let early = (out.narrow(1, 0, t - 1).unwrap() - out2.narrow(1, 0, t - 1).unwrap()).unwrap();
        assert_eq!(
            early
                .abs()
                .unwrap()
                .max_all()
                .unwrap()
                .to_scalar::<f64>()
                .unwrap(),
            0.0
        );
        let f = || {
            project(
                &causal_attention(q.as_tensor(), k.as_tensor(), v.as_tensor(), &mask, SCALE)?,
                15,
            )
        };
        assert_grad_matches("attention/q", &q, f, 40);
        assert_grad_matches("attention/k", &k, f, 30);
        assert_grad_matches("attention/v", &v, f, 30);
        // The fused op (f64 on the CPU) against the composed one, with a sliding window too.
        let window = sliding_mask(t, Some(2), DType::F64, &Device::Cpu).unwrap();
        for mask in [&mask, &window] {
            let fused =
                causal_attention(q.as_tensor(), k.as_tensor(), v.as_tensor(), mask, SCALE).unwrap();
            let composed =
                composed_attention(q.as_tensor(), k.as_tensor(), v.as_tensor(), mask, SCALE)
                    .unwrap();
            let diff = max_abs_diff(&fused, &composed);
            assert!(diff < 1e-12, "{diff}");
        }
        let f = || {
            project(
                &causal_attention(q.as_tensor(), k.as_tensor(), v.as_tensor(), &window, SCALE)?,
                16,
            )
        };
        assert_grad_matches("windowed attention/k", &k, f, 30);
    }
}
