//! RMS norm as one CPU op: one pass forward, one pass backward writing both gradients. The
//! composed version (square, mean, add, sqrt, divide, multiply) keeps six hidden-sized
//! tensors and as many gradients per norm, two to six norms per block (Qwen3 and Gemma 3 add
//! head and output norms).

use super::kernel::{Float, fusable, slice, with_cpu_slices};
use candle_core::{CpuStorage, CustomOp2, Layout, Result, Shape, Tensor};
use rayon::prelude::*;

/// `None` where the op does not apply (the caller composes instead).
pub(super) fn fused(x: &Tensor, weight: &Tensor, eps: f64) -> Result<Option<Tensor>> {
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
