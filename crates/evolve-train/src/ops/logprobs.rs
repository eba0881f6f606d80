//! Probabilities and log-probabilities: softmax, log-softmax, the target tokens' log-probs every
//! loss reads (one CPU op that keeps no vocabulary-sized intermediate) and `log σ`.

use super::kernel::{self, Float};
use candle_core::{CpuStorage, CustomOp1, D, DType, Layout, Result, Shape, Storage, Tensor};
use rayon::prelude::*;

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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::gradcheck::{assert_grad_matches, max_abs_diff, project, randn_var};
    use candle_core::Device;

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
}
