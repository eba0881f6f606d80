//! SwiGLU's `silu(gate)·up` as one CPU op: one pass forward, one pass backward writing both
//! gradients, where candle's SiLU and product keep four FFN-sized tensors (the widest of a
//! block) and its SiLU backward makes seven more passes over them.

use super::kernel::{Float, fusable, slice, with_cpu_slices};
use candle_core::{CpuStorage, CustomOp2, Layout, Result, Shape, Tensor};
use rayon::prelude::*;

/// `None` where the op does not apply (the caller composes instead).
pub(super) fn fused(gate: &Tensor, up: &Tensor) -> Result<Option<Tensor>> {
    if !fusable(&[gate, up]) || gate.dims() != up.dims() {
        return Ok(None);
    }
    let (gate, up) = (gate.contiguous()?, up.contiguous()?);
    let op = std::sync::Arc::new(Box::new(SiluMul) as Box<dyn CustomOp2 + Send + Sync>);
    Ok(Some(gate.apply_op2_arc(&up, op)?))
}

/// Elements per task.
const CHUNK: usize = 1 << 14;

struct SiluMul;

/// `x / (1 + e^-x)`, as candle and ggml compute SiLU, and the logistic `σ(x)`.
fn silu_and_sigmoid<T: Float>(x: T) -> (T, T) {
    let s = (T::from_f64(1.0) + (T::ZERO - x).exp()).recip();
    (x / (T::from_f64(1.0) + (T::ZERO - x).exp()), s)
}

impl SiluMul {
    fn forward<T: Float>(g: &[T], u: &[T]) -> Vec<T> {
        let mut out = vec![T::ZERO; g.len()];
        out.par_chunks_mut(CHUNK)
            .zip(g.par_chunks(CHUNK).zip(u.par_chunks(CHUNK)))
            .for_each(|(y, (g, u))| {
                for ((y, &g), &u) in y.iter_mut().zip(g).zip(u) {
                    *y = silu_and_sigmoid(g).0 * u;
                }
            });
        out
    }

    /// `dgate = dy·up·σ(g)·(1 + g·(1 − σ(g)))`, `dup = dy·silu(g)`.
    fn backward<T: Float>(g: &[T], u: &[T], dy: &[T]) -> (Vec<T>, Vec<T>) {
        let one = T::from_f64(1.0);
        let mut dg = vec![T::ZERO; g.len()];
        let mut du = vec![T::ZERO; g.len()];
        dg.par_chunks_mut(CHUNK)
            .zip(du.par_chunks_mut(CHUNK))
            .zip(
                g.par_chunks(CHUNK)
                    .zip(u.par_chunks(CHUNK).zip(dy.par_chunks(CHUNK))),
            )
            .for_each(|((dg, du), (g, (u, dy)))| {
                for i in 0..g.len() {
                    let (silu, s) = silu_and_sigmoid(g[i]);
                    dg[i] = dy[i] * u[i] * s * (one + g[i] * (one - s));
                    du[i] = dy[i] * silu;
                }
            });
        (dg, du)
    }
}

impl CustomOp2 for SiluMul {
    fn name(&self) -> &'static str {
        "silu-mul"
    }

    fn cpu_fwd(
        &self,
        g: &CpuStorage,
        lg: &Layout,
        u: &CpuStorage,
        lu: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        let out = match (g, u) {
            (CpuStorage::F32(g), CpuStorage::F32(u)) => {
                CpuStorage::F32(Self::forward(slice(g, lg), slice(u, lu)))
            }
            (CpuStorage::F64(g), CpuStorage::F64(u)) => {
                CpuStorage::F64(Self::forward(slice(g, lg), slice(u, lu)))
            }
            _ => candle_core::bail!("silu-mul: gate and up in one dtype, f32 or f64"),
        };
        Ok((out, lg.shape().clone()))
    }

    fn bwd(
        &self,
        g: &Tensor,
        u: &Tensor,
        _out: &Tensor,
        grad: &Tensor,
    ) -> Result<(Option<Tensor>, Option<Tensor>)> {
        let grad = grad.contiguous()?;
        let dev = g.device();
        let (dg, du) = with_cpu_slices!("silu-mul", [(g, gs), (u, us), (grad, ds)], {
            let (dg, du) = Self::backward(gs, us, ds);
            (
                Tensor::from_vec(dg, g.shape(), dev)?,
                Tensor::from_vec(du, u.shape(), dev)?,
            )
        });
        Ok((Some(dg), Some(du)))
    }
}
