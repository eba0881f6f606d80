//! A projection's output split into attention heads and back, with the rotary embedding on
//! the way in: `[b, t, h, d] → [b, h, t, d]` rotated, and `[b, h, t, d] → [b, t, h·d]`.
//!
//! Composed, the way in is a transpose, a copy and the rotation's narrows, products, sums and
//! concatenation: some ten autograd nodes for each of `q` and `k`, each of which candle's
//! backward pass gives a zero-filled gradient buffer and an addition. As one CPU op it is one
//! pass over the tensor each way; the backward pass is the same op in the other direction with
//! the angles negated (a rotation's transpose is its inverse).

use super::kernel::{Float, fusable, slice};
use super::rope::rope;
use crate::model::config::RopeLayout;
use candle_core::backend::BackendStorage;
use candle_core::{CpuStorage, CustomOp1, DType, Layout, Result, Shape, Tensor};
use rayon::prelude::*;
use std::sync::Arc;

/// The rotary embedding's tables (from [`super::rope::rope_tables`]) and pairing.
pub type Rotation<'a> = (&'a Tensor, &'a Tensor, RopeLayout);

/// `y: [b, t, h·d]` (or `[b, t, h, d]`) as `[b, h, t, d]` for `heads` heads, each head's
/// first `rope_dims` rotated by `rotation` (as [`rope`] does) when given.
pub fn to_heads(y: &Tensor, heads: usize, rotation: Option<Rotation>) -> Result<Tensor> {
    let (b, t) = (y.dim(0)?, y.dim(1)?);
    let d = y.elem_count() / (b * t * heads).max(1);
    if b * t * heads * d != y.elem_count() {
        candle_core::bail!("heads: {:?} is not {heads} heads a position", y.dims());
    }
    let tables = match rotation {
        Some((cos, sin, _)) => vec![y, cos, sin],
        None => vec![y],
    };
    if !fusable(&tables) {
        let x = y.reshape((b, t, heads, d))?.transpose(1, 2)?;
        return match rotation {
            Some((cos, sin, layout)) => rope(&x.contiguous()?, cos, sin, layout),
            None => Ok(x),
        };
    }
    let op = Heads {
        rotation: rotation.map(Angles::new).transpose()?,
        inverse: false,
        heads,
    };
    y.contiguous()?.apply_op1_arc(Arc::new(Box::new(op)))
}

/// `x: [b, h, t, d]` (attention's output) as `[b, t, h·d]`.
pub fn from_heads(x: &Tensor) -> Result<Tensor> {
    let (b, h, t, d) = x.dims4()?;
    if !fusable(&[x]) {
        return x.transpose(1, 2)?.contiguous()?.reshape((b, t, h * d));
    }
    let op = Heads {
        rotation: None,
        inverse: true,
        heads: h,
    };
    x.contiguous()?.apply_op1_arc(Arc::new(Box::new(op)))
}

/// The tables as f64 `[positions, rope_dims/2]`, converted once per call (they were computed in
/// f64 and rounded to the model's dtype; converting back is exact).
#[derive(Clone)]
struct Angles {
    cos: Vec<f64>,
    sin: Vec<f64>,
    half: usize,
    layout: RopeLayout,
}

impl Angles {
    fn new((cos, sin, layout): Rotation) -> Result<Self> {
        let half = cos.dim(1)?;
        let flat = |t: &Tensor| t.to_dtype(DType::F64)?.flatten_all()?.to_vec1::<f64>();
        Ok(Angles {
            cos: flat(cos)?,
            sin: flat(sin)?,
            half,
            layout,
        })
    }
}

/// `inverse` false: `[b, t, h·d] → [b, h, t, d]`, rotating by `+θ`; true: the other way,
/// rotating by `−θ`. Each is the other's backward pass.
struct Heads {
    rotation: Option<Angles>,
    inverse: bool,
    heads: usize,
}

impl Heads {
    fn run<T: Float>(&self, src: &[T], (_, t, h, d): (usize, usize, usize, usize)) -> Vec<T> {
        let mut dst = vec![T::ZERO; src.len()];
        let sign = if self.inverse { -1.0 } else { 1.0 };
        dst.par_chunks_mut(d)
            .with_min_len(64)
            .enumerate()
            .for_each(|(row, dst)| {
                // The destination row's batch, position and head, and the source row's index.
                let (bi, ti, hi) = if self.inverse {
                    (row / (t * h), row / h % t, row % h)
                } else {
                    (row / (h * t), row % t, row / t % h)
                };
                let src_row = if self.inverse {
                    (bi * h + hi) * t + ti
                } else {
                    (bi * t + ti) * h + hi
                };
                let src = &src[src_row * d..][..d];
                let Some(r) = &self.rotation else {
                    dst.copy_from_slice(src);
                    return;
                };
                let (cos, sin) = (&r.cos[ti * r.half..], &r.sin[ti * r.half..]);
                for i in 0..r.half {
                    let (i0, i1) = match r.layout {
                        RopeLayout::AdjacentPairs => (2 * i, 2 * i + 1),
                        RopeLayout::Halves => (i, i + r.half),
                    };
                    let (c, s) = (T::from_f64(cos[i]), T::from_f64(sign * sin[i]));
                    let (x0, x1) = (src[i0], src[i1]);
                    dst[i0] = x0 * c - x1 * s;
                    dst[i1] = x0 * s + x1 * c;
                }
                dst[2 * r.half..].copy_from_slice(&src[2 * r.half..]);
            });
        dst
    }
}

impl CustomOp1 for Heads {
    fn name(&self) -> &'static str {
        "heads"
    }

    fn cpu_fwd(&self, x: &CpuStorage, l: &Layout) -> Result<(CpuStorage, Shape)> {
        let dims = l.dims();
        let (b, h) = (dims[0], self.heads);
        let (t, d, out) = if self.inverse {
            let (_, _, t, d) = l.shape().dims4()?;
            (t, d, Shape::from((b, t, h * d)))
        } else {
            let t = dims[1];
            let d = l.shape().elem_count() / (b * t * h).max(1);
            (t, d, Shape::from((b, h, t, d)))
        };
        if let Some(r) = &self.rotation
            && (2 * r.half > d || r.cos.len() < t * r.half)
        {
            candle_core::bail!("heads: rotation tables do not cover {t} positions of {d}");
        }
        let dims = (b, t, h, d);
        let y = match x {
            CpuStorage::F32(v) => CpuStorage::F32(self.run(slice(v, l), dims)),
            CpuStorage::F64(v) => CpuStorage::F64(self.run(slice(v, l), dims)),
            other => candle_core::bail!("heads: {:?}", other.dtype()),
        };
        Ok((y, out))
    }

    fn bwd(&self, x: &Tensor, _out: &Tensor, grad: &Tensor) -> Result<Option<Tensor>> {
        let back = Heads {
            rotation: self.rotation.clone(),
            inverse: !self.inverse,
            heads: self.heads,
        };
        let dx = grad.contiguous()?.apply_op1_arc(Arc::new(Box::new(back)))?;
        // `[b, t, h·d]` where the input was `[b, t, h, d]`.
        Ok(Some(dx.reshape(x.shape())?))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::gradcheck::{assert_grad_matches, max_abs_diff, randn, randn_var};
    use crate::ops::rope::rope_tables;
    use candle_core::{Device, Var};

    #[test]
    fn to_heads_equals_transpose_and_rope_with_finite_difference_gradients() {
        // Head size 10 with 8 rotated dimensions: the unrotated tail is copied.
        let (cos, sin) = rope_tables(5, 8, 100.0, 0.5, None, DType::F64, &Device::Cpu).unwrap();
        let y = randn_var(50, &[2, 5, 3, 10], 1.0);
        let r = randn(51, &[2, 3, 5, 10], 1.0);
        for layout in [RopeLayout::AdjacentPairs, RopeLayout::Halves] {
            let rotation = Some((&cos, &sin, layout));
            let got = to_heads(y.as_tensor(), 3, rotation).unwrap();
            let want = rope(
                &y.as_tensor().transpose(1, 2).unwrap().contiguous().unwrap(),
                &cos,
                &sin,
                layout,
            )
            .unwrap();
            assert_eq!(got.dims(), &[2, 3, 5, 10]);
            let diff = max_abs_diff(&got, &want);
            assert!(diff < 1e-14, "{layout:?}: {diff}");
            let f = || (to_heads(y.as_tensor(), 3, rotation)? * &r)?.sum_all();
            assert_grad_matches(&format!("to_heads/{layout:?}"), &y, f, 64);
        }
        let moved = y.as_tensor().transpose(1, 2).unwrap();
        let plain = to_heads(y.as_tensor(), 3, None).unwrap();
        assert_eq!(max_abs_diff(&plain, &moved), 0.0);
        // A projection's `[b, t, h·d]` output splits the same way.
        let flat = Var::from_tensor(&y.as_tensor().reshape((2, 5, 30)).unwrap()).unwrap();
        let split = to_heads(flat.as_tensor(), 3, None).unwrap();
        assert_eq!(max_abs_diff(&split, &moved), 0.0);
        let f = || (to_heads(flat.as_tensor(), 3, None)? * &r)?.sum_all();
        assert_grad_matches("to_heads/flat", &flat, f, 64);
    }

    #[test]
    fn from_heads_joins_the_heads_of_each_position() {
        let x = randn_var(52, &[2, 3, 5, 4], 1.0);
        let got = from_heads(x.as_tensor()).unwrap();
        let want = x
            .as_tensor()
            .transpose(1, 2)
            .unwrap()
            .contiguous()
            .unwrap()
            .reshape((2, 5, 12))
            .unwrap();
        assert_eq!(max_abs_diff(&got, &want), 0.0);
        let r = randn(53, &[2, 5, 12], 1.0);
        let f = || (from_heads(x.as_tensor())? * &r)?.sum_all();
        assert_grad_matches("from_heads", &x, f, 64);
    }
}
