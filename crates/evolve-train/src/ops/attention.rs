//! Causal scaled dot-product attention with grouped KV heads, its masks, its composed fallback
//! and its tests.
//!
//! On the CPU it is one op: the forward pass keeps one buffer (the probabilities) and the
//! backward pass writes the three input gradients directly. The composed version (matmul,
//! scale, mask, softmax, matmul) keeps five score-sized intermediates and as many gradients —
//! most of a block's memory and time at 256 tokens. Other devices and dtypes take it still.

use super::blas::product;
use super::heads::from_heads;
use super::kernel::{Float, dot, fusable, max, slice, sum, with_cpu_slices, with_simd};
use super::logprobs::softmax_last;
use candle_core::{CpuStorage, CustomOp3, DType, Device, Layout, Result, Shape, Tensor};
use rayon::prelude::*;
use std::sync::Mutex;

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
    match fused(q, k, v, mask, scale)? {
        Some(out) => from_heads(&out),
        None => composed_attention(q, k, v, mask, scale),
    }
}

/// [`causal_attention`] from candle primitives: what devices other than the CPU run.
pub(super) fn composed_attention(
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
fn fused(q: &Tensor, k: &Tensor, v: &Tensor, mask: &Tensor, scale: f64) -> Result<Option<Tensor>> {
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::gradcheck::{assert_grad_matches, max_abs_diff, project, randn_var};

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
