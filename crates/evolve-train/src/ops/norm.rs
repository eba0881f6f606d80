//! RMS norm, `x / sqrt(mean(x²) + eps) · weight`: the op, its composed fallback and its tests.
//!
//! On the CPU it is one op: one pass forward, one pass backward writing both gradients. The
//! composed version (square, mean, add, sqrt, divide, multiply) keeps six hidden-sized tensors
//! and as many gradients per norm, two to six norms per block (Qwen3 and Gemma 3 add head and
//! output norms).

use super::kernel::{Float, fusable, slice, with_cpu_slices};
use candle_core::{CpuStorage, CustomOp2, D, Layout, Result, Shape, Tensor};
use rayon::prelude::*;

/// `x / sqrt(mean(x²) + eps) * weight` over the last dimension (llama.cpp `rms_norm` + mul).
/// One fused op on the CPU in f32/f64.
pub fn rms_norm(x: &Tensor, weight: &Tensor, eps: f64) -> Result<Tensor> {
    match fused(x, weight, eps)? {
        Some(y) => Ok(y),
        None => composed_rms_norm(x, weight, eps),
    }
}

/// [`rms_norm`] from candle primitives: what devices other than the CPU run.
pub(super) fn composed_rms_norm(x: &Tensor, weight: &Tensor, eps: f64) -> Result<Tensor> {
    let rms = (x.sqr()?.mean_keepdim(D::Minus1)? + eps)?.sqrt()?;
    x.broadcast_div(&rms)?.broadcast_mul(weight)
}

/// `None` where the op does not apply (the caller composes instead).
fn fused(x: &Tensor, weight: &Tensor, eps: f64) -> Result<Option<Tensor>> {
    let n = x.dim(candle_core::D::Minus1)?;
    if !fusable(&[x, weight]) || weight.dims() != [n] {
        return Ok(None);
    }
    let (x, weight) = (x.contiguous()?, weight.contiguous()?);
    let op = std::sync::Arc::new(Box::new(RmsNorm { eps }) as Box<dyn CustomOp2 + Send + Sync>);
    Ok(Some(x.apply_op2_arc(&weight, op)?))
}

/// Rows per task: enough work per task to outweigh the pool's overhead.
const ROWS: usize = 32;

struct RmsNorm {
    eps: f64,
}

impl RmsNorm {
    /// `1/√(mean(x²) + eps)`, the sum in f64 as ggml's.
    fn rstd<T: Float>(&self, row: &[T]) -> T {
        let ss: f64 = row.iter().map(|v| v.to_f64() * v.to_f64()).sum();
        T::from_f64(1.0 / (ss / row.len() as f64 + self.eps).sqrt())
    }

    fn forward<T: Float>(&self, x: &[T], w: &[T]) -> Vec<T> {
        let n = w.len();
        let mut out = vec![T::ZERO; x.len()];
        out.par_chunks_mut(n)
            .zip(x.par_chunks(n))
            .with_min_len(ROWS)
            .for_each(|(y, x)| {
                let r = self.rstd(x);
                for ((y, &x), &w) in y.iter_mut().zip(x).zip(w) {
                    *y = x * r * w;
                }
            });
        out
    }

    /// `dx = r·(g − x̂·mean(g·x̂))` with `g = dy·w`, `x̂ = x·r`; `dw = Σ_rows dy·x̂`.
    fn backward<T: Float>(&self, x: &[T], w: &[T], dy: &[T]) -> (Vec<T>, Vec<T>) {
        let n = w.len();
        let mut dx = vec![T::ZERO; x.len()];
        let dw = dx
            .par_chunks_mut(n * ROWS)
            .zip(x.par_chunks(n * ROWS).zip(dy.par_chunks(n * ROWS)))
            .map(|(dx, (x, dy))| {
                let mut dw = vec![0f64; n];
                for ((dx, x), dy) in dx.chunks_mut(n).zip(x.chunks(n)).zip(dy.chunks(n)) {
                    let r = self.rstd(x);
                    let mut c = 0f64;
                    for ((&x, &dy), &w) in x.iter().zip(dy).zip(w) {
                        c += (dy * w * x * r).to_f64();
                    }
                    let c = T::from_f64(c / n as f64);
                    for (i, ((dx, &x), &dy)) in dx.iter_mut().zip(x).zip(dy).enumerate() {
                        let xhat = x * r;
                        *dx = r * (dy * w[i] - xhat * c);
                        dw[i] += (dy * xhat).to_f64();
                    }
                }
                dw
            })
            .reduce(
                || vec![0f64; n],
                |mut a, b| {
                    a.iter_mut().zip(b).for_each(|(a, b)| *a += b);
                    a
                },
            );
        (dx, dw.into_iter().map(T::from_f64).collect())
    }
}

impl CustomOp2 for RmsNorm {
    fn name(&self) -> &'static str {
        "rms-norm"
    }

    fn cpu_fwd(
        &self,
        x: &CpuStorage,
        lx: &Layout,
        w: &CpuStorage,
        lw: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        let out = match (x, w) {
            (CpuStorage::F32(x), CpuStorage::F32(w)) => {
                CpuStorage::F32(self.forward(slice(x, lx), slice(w, lw)))
            }
            (CpuStorage::F64(x), CpuStorage::F64(w)) => {
                CpuStorage::F64(self.forward(slice(x, lx), slice(w, lw)))
            }
            _ => candle_core::bail!("rms-norm: x and weight in one dtype, f32 or f64"),
        };
        Ok((out, lx.shape().clone()))
    }

    fn bwd(
        &self,
        x: &Tensor,
        w: &Tensor,
        _out: &Tensor,
        grad: &Tensor,
    ) -> Result<(Option<Tensor>, Option<Tensor>)> {
        let grad = grad.contiguous()?;
        let dev = x.device();
        let (dx, dw) = with_cpu_slices!("rms-norm", [(x, xs), (w, ws), (grad, gs)], {
            let (dx, dw) = self.backward(xs, ws, gs);
            (
                Tensor::from_vec(dx, x.shape(), dev)?,
                Tensor::from_vec(dw, w.shape(), dev)?,
            )
        });
        Ok((Some(dx), Some(dw)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::gradcheck::{assert_grad_matches, assert_same_values_and_grads, project, randn_var};

    /// The fused norm against its composition (f64), on more rows and elements than one task
    /// of the kernel takes, so the tasks' partial weight gradients are summed.
    #[test]
    fn fused_norm_equals_its_composition_with_every_gradient() {
        let x = randn_var(60, &[3, 50, 16], 1.0);
        let w = randn_var(61, &[16], 1.0);
        let (xs, ws) = (x.as_tensor(), w.as_tensor());
        assert_same_values_and_grads(
            "rms_norm",
            &[("x", &x), ("w", &w)],
            rms_norm(xs, ws, 1e-5).unwrap(),
            composed_rms_norm(xs, ws, 1e-5).unwrap(),
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
}
