//! Causal attention as one CPU op: the forward pass keeps one buffer (the probabilities) and
//! the backward pass writes the three input gradients directly. The composed version (matmul,
//! scale, mask, softmax, matmul) keeps five score-sized intermediates and as many gradients —
//! most of a block's memory and time at 256 tokens. Other devices and dtypes take it still.

use super::blas::product;
use super::kernel::{Float, dot, fusable, max, slice, sum, with_cpu_slices, with_simd};
use candle_core::{CpuStorage, CustomOp3, DType, Layout, Result, Shape, Tensor};
use rayon::prelude::*;
use std::sync::Mutex;

/// Sizes of one call: `q: [b, h, t, d]`, `k, v: [b, h_kv, t, d]`.
#[derive(Clone, Copy)]
struct Dims {
    b: usize,
    h: usize,
    h_kv: usize,
    t: usize,
    d: usize,
}

impl Dims {
    fn rep(&self) -> usize {
        self.h / self.h_kv
    }
}

/// Returns `[b, h, t, d]`; `None` where the op does not apply (the caller composes instead).
pub(super) fn fused(
    q: &Tensor,
    k: &Tensor,
    v: &Tensor,
    mask: &Tensor,
    scale: f64,
) -> Result<Option<Tensor>> {
    if !fusable(&[q, k, v]) {
        return Ok(None);
    }
    let mask = mask.to_dtype(DType::F32)?.flatten_all()?.to_vec1::<f32>()?;
    let (q, k, v) = (q.contiguous()?, k.contiguous()?, v.contiguous()?);
    let op = Attention {
        mask,
        scale,
        probs: Mutex::new(None),
    };
    Ok(Some(q.apply_op3_arc(
        &k,
        &v,
        std::sync::Arc::new(Box::new(op)),
    )?))
}

struct Attention {
    /// Additive `[t, t]` mask; causal, so only keys `j ≤ i` are ever visited.
    mask: Vec<f32>,
    scale: f64,
    /// The forward pass's probabilities `[b, h, t, t]` (zero above the diagonal), for backward.
    probs: Mutex<Option<Tensor>>,
}

impl Attention {
    fn dims(q: &Layout, k: &Layout) -> Result<Dims> {
        let (b, h, t, d) = q.shape().dims4()?;
        let (_, h_kv, _, _) = k.shape().dims4()?;
        if h_kv == 0 || h % h_kv != 0 {
            candle_core::bail!("attention: {h} query heads over {h_kv} key/value heads");
        }
        Ok(Dims { b, h, h_kv, t, d })
    }

    /// One `(batch, kv head)` group per task: its `rep` query heads are contiguous in the
    /// output and the probabilities, and its key/value gradients belong to it alone.
    fn forward<T: Float>(&self, q: &[T], k: &[T], v: &[T], n: Dims) -> (Vec<T>, Vec<T>) {
        let Dims { t, d, .. } = n;
        let rep = n.rep();
        let mut out = vec![T::ZERO; n.b * n.h * t * d];
        let mut probs = vec![T::ZERO; n.b * n.h * t * t];
        out.par_chunks_mut(rep * t * d)
            .zip(probs.par_chunks_mut(rep * t * t))
            .enumerate()
            .for_each(|(group, (out, probs))| {
                let kv = group * t * d;
                let q = &q[group * rep * t * d..][..rep * t * d];
                let task = (q, &k[kv..kv + t * d], &v[kv..kv + t * d]);
                with_simd(|| self.forward_group(task, out, probs, n));
            });
        (out, probs)
    }

    /// The group's `rep` query heads are one `[rep·t, d]` matrix, so each product below is one
    /// GEMM: `S = scale·Q·Kᵀ`, then the masked softmax row by row, then `O = P·V`. The GEMMs
    /// also compute the scores above the diagonal (half their work) and overwrite them: at
    /// small head sizes a GEMM is still several times faster than the causal loops.
    #[inline(always)]
    fn forward_group<T: Float>(
        &self,
        (q, k, v): (&[T], &[T], &[T]),
        out: &mut [T],
        probs: &mut [T],
        n: Dims,
    ) {
        let Dims { t, d, .. } = n;
        let rows = n.rep() * t;
        product(
            probs,
            (rows, t, d),
            (q, false),
            (k, true),
            T::from_f64(self.scale),
            false,
        );
        for (row, p) in probs.chunks_exact_mut(t).enumerate() {
            let i = row % t;
            let (seen, future) = p.split_at_mut(i + 1);
            future.fill(T::ZERO);
            for (p, &m) in seen.iter_mut().zip(&self.mask[i * t..]) {
                *p = *p + T::from_f32(m);
            }
            let top = max(seen);
            for p in seen.iter_mut() {
                *p = (*p - top).exp();
            }
            let inv = sum(seen).recip();
            for p in seen.iter_mut() {
                *p = *p * inv;
            }
        }
        product(
            out,
            (rows, d, t),
            (probs, false),
            (v, false),
            T::from_f64(1.0),
            false,
        );
    }

    /// `dV = Pᵀ·dO`, `dS = P ⊙ (dO·Vᵀ − rowsum(P ⊙ dO·Vᵀ))·scale`, `dQ = dS·K`, `dK = dSᵀ·Q`.
    fn backward<T: Float>(
        &self,
        (q, k, v): (&[T], &[T], &[T]),
        probs: &[T],
        grad: &[T],
        n: Dims,
    ) -> (Vec<T>, Vec<T>, Vec<T>) {
        let Dims { t, d, .. } = n;
        let rep = n.rep();
        let mut dq = vec![T::ZERO; q.len()];
        let mut dk = vec![T::ZERO; k.len()];
        let mut dv = vec![T::ZERO; v.len()];
        dq.par_chunks_mut(rep * t * d)
            .zip(dk.par_chunks_mut(t * d).zip(dv.par_chunks_mut(t * d)))
            .enumerate()
            .for_each(|(group, (dq, (dk, dv)))| {
                let kv = group * t * d;
                let heads = group * rep * t;
                let task = (
                    &q[heads * d..][..rep * t * d],
                    &k[kv..kv + t * d],
                    &v[kv..kv + t * d],
                );
                let probs = &probs[heads * t..][..rep * t * t];
                let grad = &grad[heads * d..][..rep * t * d];
                with_simd(|| self.backward_group(task, probs, grad, (dq, dk, dv), n));
            });
        (dq, dk, dv)
    }

    /// The same products as GEMMs over the group's `[rep·t, ·]` rows: `dV = Pᵀ·dO` and
    /// `dK = dSᵀ·Q` sum over the `rep` heads that share the key/value head by themselves.
    #[inline(always)]
    fn backward_group<T: Float>(
        &self,
        (q, k, v): (&[T], &[T], &[T]),
        probs: &[T],
        grad: &[T],
        (dq, dk, dv): (&mut [T], &mut [T], &mut [T]),
        n: Dims,
    ) {
        let Dims { t, d, .. } = n;
        let rows = n.rep() * t;
        let (one, scale) = (T::from_f64(1.0), T::from_f64(self.scale));
        product(dv, (t, d, rows), (probs, true), (grad, false), one, false);
        // dP = dO·Vᵀ, turned into dS in place.
        let mut ds = vec![T::ZERO; rows * t];
        product(&mut ds, (rows, t, d), (grad, false), (v, true), one, false);
        for (row, (s, p)) in ds
            .chunks_exact_mut(t)
            .zip(probs.chunks_exact(t))
            .enumerate()
        {
            let i = row % t;
            let (seen, future) = s.split_at_mut(i + 1);
            future.fill(T::ZERO);
            let weighted = dot(&p[..=i], seen);
            for (s, &p) in seen.iter_mut().zip(p) {
                *s = p * (*s - weighted) * scale;
            }
        }
        product(dq, (rows, d, t), (&ds, false), (k, false), one, false);
        product(dk, (t, d, rows), (&ds, true), (q, false), one, false);
    }
}

impl CustomOp3 for Attention {
    fn name(&self) -> &'static str {
        "causal-attention"
    }

    fn cpu_fwd(
        &self,
        q: &CpuStorage,
        lq: &Layout,
        k: &CpuStorage,
        lk: &Layout,
        v: &CpuStorage,
        lv: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        let n = Self::dims(lq, lk)?;
        if self.mask.len() != n.t * n.t {
            candle_core::bail!(
                "attention: a mask of {} for {} positions",
                self.mask.len(),
                n.t
            );
        }
        let probs_shape = (n.b, n.h, n.t, n.t);
        let cpu = &candle_core::Device::Cpu;
        let (out, probs) = match (q, k, v) {
            (CpuStorage::F32(q), CpuStorage::F32(k), CpuStorage::F32(v)) => {
                let (o, p) = self.forward(slice(q, lq), slice(k, lk), slice(v, lv), n);
                (CpuStorage::F32(o), Tensor::from_vec(p, probs_shape, cpu)?)
            }
            (CpuStorage::F64(q), CpuStorage::F64(k), CpuStorage::F64(v)) => {
                let (o, p) = self.forward(slice(q, lq), slice(k, lk), slice(v, lv), n);
                (CpuStorage::F64(o), Tensor::from_vec(p, probs_shape, cpu)?)
            }
            _ => candle_core::bail!("attention: q, k and v in one dtype, f32 or f64"),
        };
        *self.probs.lock().expect("attention lock") = Some(probs);
        Ok((out, lq.shape().clone()))
    }

    fn bwd(
        &self,
        q: &Tensor,
        k: &Tensor,
        v: &Tensor,
        _out: &Tensor,
        grad: &Tensor,
    ) -> Result<(Option<Tensor>, Option<Tensor>, Option<Tensor>)> {
        let n = Self::dims(q.layout(), k.layout())?;
        let grad = grad.contiguous()?;
        let Some(probs) = self.probs.lock().expect("attention lock").clone() else {
            candle_core::bail!("attention: backward before forward")
        };
        let dev = q.device();
        let (dq, dk, dv) = with_cpu_slices!(
            "causal-attention",
            [(q, qs), (k, ks), (v, vs), (probs, ps), (grad, gs)],
            {
                let (dq, dk, dv) = self.backward((qs, ks, vs), ps, gs, n);
                (
                    Tensor::from_vec(dq, q.shape(), dev)?,
                    Tensor::from_vec(dk, k.shape(), dev)?,
                    Tensor::from_vec(dv, v.shape(), dev)?,
                )
            }
        );
        Ok((Some(dq), Some(dk), Some(dv)))
    }
}
