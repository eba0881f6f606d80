//! The gated feed-forward's activations: SwiGLU's `silu(gate)·up` (a fused CPU op, its
//! composed fallback) and GeGLU's GELU with ggml's values, with their tests.
//!
//! SwiGLU is one CPU op: one pass forward, one pass backward writing both gradients, where
//! candle's SiLU and product keep four FFN-sized tensors (the widest of a block) and its SiLU
//! backward makes seven more passes over them.

use super::kernel::{Float, fusable, slice, with_cpu_slices};
use candle_core::{CpuStorage, CustomOp2, DType, Layout, Result, Shape, Tensor};
use rayon::prelude::*;

/// SwiGLU's `silu(gate) · up`. One fused op on the CPU in f32/f64.
pub fn silu_mul(gate: &Tensor, up: &Tensor) -> Result<Tensor> {
    match fused(gate, up)? {
        Some(y) => Ok(y),
        None => composed_silu_mul(gate, up),
    }
}

/// [`silu_mul`] from candle primitives: what devices other than the CPU run.
pub(super) fn composed_silu_mul(gate: &Tensor, up: &Tensor) -> Result<Tensor> {
    gate.silu()? * up
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

/// `None` where the op does not apply (the caller composes instead).
fn fused(gate: &Tensor, up: &Tensor) -> Result<Option<Tensor>> {
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::gradcheck::{
        assert_grad_matches, assert_same_values_and_grads, max_abs_diff, project, randn, randn_var,
    };
    use candle_core::{Device, Var};

    /// The fused SwiGLU against its composition (f64), on more elements than one task of the
    /// kernel takes.
    #[test]
    fn fused_swiglu_equals_its_composition_with_every_gradient() {
        let x = randn_var(60, &[3, 50, 16], 1.0);
        let w = randn_var(61, &[16], 1.0);
        let up = randn_var(62, &[3, 50, 16], 1.0);
        let (xs, ws, us) = (x.as_tensor(), w.as_tensor(), up.as_tensor());
        assert_same_values_and_grads(
            "silu_mul",
            &[("x", &x), ("w", &w), ("up", &up)],
            silu_mul(&xs.broadcast_mul(ws).unwrap(), us).unwrap(),
            composed_silu_mul(&xs.broadcast_mul(ws).unwrap(), us).unwrap(),
        );
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
}
