//! Central finite-difference gradient checks (f64), used by the tests of every custom op and
//! of the full loss: candle drops gradients silently, so only a numerical check catches it.

use candle_core::{DType, Device, Result, Tensor, Var};
use evolve_core::rng::SplitMix64;

/// Largest absolute element-wise difference of two same-shaped tensors, as f64.
pub fn max_abs_diff(a: &Tensor, b: &Tensor) -> f64 {
    (a - b)
        .and_then(|d| d.abs()?.max_all()?.to_dtype(DType::F64)?.to_scalar::<f64>())
        .expect("tensors of the same shape")
}

/// A deterministic f64 tensor with entries ~ N(0, std²).
pub fn randn(seed: u64, shape: &[usize], std: f64) -> Tensor {
    let mut rng = SplitMix64::new(seed);
    let n = shape.iter().product();
    let v: Vec<f64> = (0..n).map(|_| rng.next_normal() * std).collect();
    Tensor::from_vec(v, shape, &Device::Cpu).unwrap()
}

pub fn randn_var(seed: u64, shape: &[usize], std: f64) -> Var {
    Var::from_tensor(&randn(seed, shape, std)).unwrap()
}

/// A random projection turns any tensor into a scalar whose gradient exercises every entry.
pub fn project(y: &Tensor, seed: u64) -> Result<Tensor> {
    (y * randn(seed, y.dims(), 1.0))?.sum_all()
}

/// Asserts that `∂f/∂x` from backprop matches `(f(x+h) - f(x-h)) / 2h` on up to `max_checks`
/// entries of `x` (spread evenly), and that the gradient is not identically zero.
/// Returns the largest relative error seen.
pub fn assert_grad_matches(
    label: &str,
    x: &Var,
    f: impl Fn() -> Result<Tensor>,
    max_checks: usize,
) -> f64 {
    assert_eq!(x.dtype(), DType::F64, "{label}: gradient checks need f64");
    let h = 1e-6;
    let loss = f().unwrap();
    let grads = loss.backward().unwrap();
    let analytic = grads
        .get(x.as_tensor())
        .unwrap_or_else(|| panic!("{label}: no gradient reached the variable"))
        .flatten_all()
        .unwrap()
        .to_vec1::<f64>()
        .unwrap();
    let shape = x.shape().clone();
    let base = x
        .as_tensor()
        .flatten_all()
        .unwrap()
        .to_vec1::<f64>()
        .unwrap();
    let n = base.len();
    let stride = n.div_ceil(max_checks).max(1);
    let eval_at = |i: usize, delta: f64| {
        let mut v = base.clone();
        v[i] += delta;
        x.set(&Tensor::from_vec(v, &shape, &Device::Cpu).unwrap())
            .unwrap();
        f().unwrap().to_scalar::<f64>().unwrap()
    };
    let scale = analytic.iter().fold(0f64, |m, g| m.max(g.abs()));
    assert!(scale > 1e-10, "{label}: the gradient is identically zero");
    let mut worst = 0f64;
    for i in (0..n).step_by(stride) {
        let numeric = (eval_at(i, h) - eval_at(i, -h)) / (2.0 * h);
        let err = (analytic[i] - numeric).abs() / (numeric.abs() + 1e-3 * scale + 1e-12);
        worst = worst.max(err);
        assert!(
            err < 1e-4,
            "{label}[{i}]: backprop {} vs finite difference {numeric} (rel. error {err:e})",
            analytic[i]
        );
    }
    x.set(&Tensor::from_vec(base, &shape, &Device::Cpu).unwrap())
        .unwrap();
    worst
}

/// Asserts that `fused` and `composed`, one function computed two ways from `vars`, agree to
/// 1e-12 in value and in each variable's gradient (or that neither has one).
pub fn assert_same_values_and_grads(
    name: &str,
    vars: &[(&str, &Var)],
    fused: Tensor,
    composed: Tensor,
) {
    let grads_of = |y: Tensor| {
        let g = project(&y, 63).unwrap().backward().unwrap();
        let mut out = vec![Some(y.clone())];
        out.extend(vars.iter().map(|(_, v)| g.get(v.as_tensor()).cloned()));
        out
    };
    let (a, b) = (grads_of(fused), grads_of(composed));
    let parts = std::iter::once("value").chain(vars.iter().map(|(part, _)| *part));
    for (part, (p, q)) in parts.zip(a.iter().zip(&b)) {
        match (p, q) {
            (Some(p), Some(q)) => {
                let diff = max_abs_diff(p, q);
                assert!(diff < 1e-12, "{name} {part}: {diff:e}");
            }
            (None, None) => {}
            _ => panic!("{name} {part}: a gradient on one side only"),
        }
    }
}
