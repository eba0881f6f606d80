//! Causal attention as one CPU op: the forward pass keeps one buffer (the probabilities) and
//! the backward pass writes the three input gradients directly. The composed version (matmul,
//! scale, mask, softmax, matmul) keeps five score-sized intermediates and as many gradients —
//! most of a block's memory and time at 256 tokens. Other devices and dtypes take it still.

use super::kernel::{Float, axpy, dot, slice};
use candle_core::{CpuStorage, CustomOp3, DType, Layout, Result, Shape, Storage, Tensor};
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
    let applies = q.device().is_cpu() && matches!(q.dtype(), DType::F32 | DType::F64);
    if !applies {
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
    probs: Mutex<Option<CpuStorage>>,
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
        let scale = T::from_f64(self.scale);
        let mut out = vec![T::ZERO; n.b * n.h * t * d];
        let mut probs = vec![T::ZERO; n.b * n.h * t * t];
        out.par_chunks_mut(rep * t * d)
            .zip(probs.par_chunks_mut(rep * t * t))
            .enumerate()
            .for_each(|(group, (out, probs))| {
                let kv = group * t * d;
                let (k, v) = (&k[kv..kv + t * d], &v[kv..kv + t * d]);
                for r in 0..rep {
                    let qh = &q[(group * rep + r) * t * d..][..t * d];
                    for i in 0..t {
                        let row = &mut probs[(r * t + i) * t..][..=i];
                        let qi = &qh[i * d..][..d];
                        let mut max = T::from_f64(f64::NEG_INFINITY);
                        for (j, p) in row.iter_mut().enumerate() {
                            let s = scale * dot(qi, &k[j * d..][..d])
                                + T::from_f32(self.mask[i * t + j]);
                            *p = s;
                            if s > max {
                                max = s;
                            }
                        }
                        let mut sum = T::ZERO;
                        for p in row.iter_mut() {
                            *p = (*p - max).exp();
                            sum = sum + *p;
                        }
                        let inv = sum.recip();
                        let oi = &mut out[(r * t + i) * d..][..d];
                        for (j, p) in row.iter_mut().enumerate() {
                            *p = *p * inv;
                            axpy(oi, *p, &v[j * d..][..d]);
                        }
                    }
                }
            });
        (out, probs)
    }

    /// `dV = Pᵀ·dO`, `dS = P ⊙ (dO·Vᵀ − rowsum(P ⊙ dO·Vᵀ))·scale`, `dQ = dS·K`, `dK = dSᵀ·Q`.
    #[allow(clippy::too_many_arguments)]
    fn backward<T: Float>(
        &self,
        q: &[T],
        k: &[T],
        v: &[T],
        probs: &[T],
        grad: &[T],
        n: Dims,
    ) -> (Vec<T>, Vec<T>, Vec<T>) {
        let Dims { t, d, .. } = n;
        let rep = n.rep();
        let scale = T::from_f64(self.scale);
        let mut dq = vec![T::ZERO; q.len()];
        let mut dk = vec![T::ZERO; k.len()];
        let mut dv = vec![T::ZERO; v.len()];
        dq.par_chunks_mut(rep * t * d)
            .zip(dk.par_chunks_mut(t * d).zip(dv.par_chunks_mut(t * d)))
            .enumerate()
            .for_each(|(group, (dq, (dk, dv)))| {
                let kv = group * t * d;
                let (k, v) = (&k[kv..kv + t * d], &v[kv..kv + t * d]);
                let mut ds = vec![T::ZERO; t];
                for r in 0..rep {
                    let head = group * rep + r;
                    let qh = &q[head * t * d..][..t * d];
                    let gh = &grad[head * t * d..][..t * d];
                    for i in 0..t {
                        let row = &probs[(head * t + i) * t..][..=i];
                        let gi = &gh[i * d..][..d];
                        let mut weighted = T::ZERO;
                        for (j, &p) in row.iter().enumerate() {
                            let dp = dot(gi, &v[j * d..][..d]);
                            ds[j] = dp;
                            weighted = weighted + p * dp;
                            axpy(&mut dv[j * d..][..d], p, gi);
                        }
                        let qi = &qh[i * d..][..d];
                        let dqi = &mut dq[(r * t + i) * d..][..d];
                        for (j, &p) in row.iter().enumerate() {
                            let s = p * (ds[j] - weighted) * scale;
                            axpy(dqi, s, &k[j * d..][..d]);
                            axpy(&mut dk[j * d..][..d], s, qi);
                        }
                    }
                }
            });
        (dq, dk, dv)
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
        let (out, probs) = match (q, k, v) {
            (CpuStorage::F32(q), CpuStorage::F32(k), CpuStorage::F32(v)) => {
                let (o, p) = self.forward(slice(q, lq), slice(k, lk), slice(v, lv), n);
                (CpuStorage::F32(o), CpuStorage::F32(p))
            }
            (CpuStorage::F64(q), CpuStorage::F64(k), CpuStorage::F64(v)) => {
                let (o, p) = self.forward(slice(q, lq), slice(k, lk), slice(v, lv), n);
                (CpuStorage::F64(o), CpuStorage::F64(p))
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
        let probs = self.probs.lock().expect("attention lock");
        let Some(probs) = probs.as_ref() else {
            candle_core::bail!("attention: backward before forward")
        };
        let (sq, lq) = q.storage_and_layout();
        let (sk, lk) = k.storage_and_layout();
        let (sv, lv) = v.storage_and_layout();
        let (sg, lg) = grad.storage_and_layout();
        let dev = q.device();
        macro_rules! run {
            ($variant:ident) => {
                match (&*sq, &*sk, &*sv, &*sg, probs) {
                    (
                        Storage::Cpu(CpuStorage::$variant(q)),
                        Storage::Cpu(CpuStorage::$variant(k)),
                        Storage::Cpu(CpuStorage::$variant(v)),
                        Storage::Cpu(CpuStorage::$variant(g)),
                        CpuStorage::$variant(p),
                    ) => {
                        let (dq, dk, dv) = self.backward(
                            slice(q, lq),
                            slice(k, lk),
                            slice(v, lv),
                            p,
                            slice(g, lg),
                            n,
                        );
                        (
                            Tensor::from_vec(dq, lq.shape(), dev)?,
                            Tensor::from_vec(dk, lk.shape(), dev)?,
                            Tensor::from_vec(dv, lv.shape(), dev)?,
                        )
                    }
                    _ => candle_core::bail!("attention: inputs and gradient in one dtype"),
                }
            };
        }
        let (dq, dk, dv) = match q.dtype() {
            DType::F32 => run!(F32),
            DType::F64 => run!(F64),
            other => candle_core::bail!("attention: {other:?}"),
        };
        Ok((Some(dq), Some(dk), Some(dv)))
    }
}
