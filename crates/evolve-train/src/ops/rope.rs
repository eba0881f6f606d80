//! The rotary position embedding: its angle tables and the rotation of either pair layout,
//! composed from candle primitives (on the CPU, [`super::to_heads`] fuses it with the split
//! into heads).

use crate::model::config::RopeLayout;
use candle_core::{DType, Device, Result, Tensor};

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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::gradcheck::{assert_grad_matches, max_abs_diff, project, randn, randn_var};

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
}
