//! Linear layers `x·Wᵀ`: trainable in both operands ([`linear`], the LoRA matrices and
//! full-parameter training) or over a frozen, possibly quantized weight ([`frozen_linear`]),
//! each one CPU op whose products run in [`super::blas`], with candle's matmul as fallback.

use super::blas;
use super::kernel;
use super::weight::Weight;
use candle_core::backend::BackendStorage;
use candle_core::{
    CpuStorage, CustomOp1, CustomOp2, Device, Layout, Result, Shape, Storage, Tensor,
};

/// `x · Wᵀ` for `x` of shape `[.., in]` and `W` of shape `[out, in]`, differentiable in both (the
/// LoRA matrices). On the CPU in f32/f64 one op whose products run in [`blas::matmul`].
pub fn linear(x: &Tensor, w: &Tensor) -> Result<Tensor> {
    if kernel::fusable(&[x, w]) && x.is_contiguous() && w.is_contiguous() {
        let op = std::sync::Arc::new(Box::new(Linear) as Box<dyn CustomOp2 + Send + Sync>);
        return on_rows(x, w.dim(0)?, |rows| rows.apply_op2_arc(w, op));
    }
    composed_linear(x, w)
}

/// [`linear`] as candle's matmul: what other devices and dtypes run.
pub(super) fn composed_linear(x: &Tensor, w: &Tensor) -> Result<Tensor> {
    on_rows(x, w.dim(0)?, |rows| rows.matmul(&w.t()?))
}

/// `x·Wᵀ` with both gradients: `∂x = g·W`, `∂W = gᵀ·x`.
struct Linear;

impl CustomOp2 for Linear {
    fn name(&self) -> &'static str {
        "linear"
    }

    fn cpu_fwd(
        &self,
        x: &CpuStorage,
        x_layout: &Layout,
        w: &CpuStorage,
        w_layout: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        rows_times_weight(x, x_layout, w, w_layout)
    }

    fn bwd(
        &self,
        x: &Tensor,
        w: &Tensor,
        _out: &Tensor,
        grad: &Tensor,
    ) -> Result<(Option<Tensor>, Option<Tensor>)> {
        let (grad, x) = (grad.contiguous()?, x.contiguous()?);
        let ((m, n), (_, k)) = (grad.dims2()?, x.dims2()?);
        let dw = kernel::with_cpu_slices!("linear", [(grad, g), (x, xs)], {
            Tensor::from_vec(
                blas::matmul((n, k, m), (g, true), (xs, false)),
                (n, k),
                x.device(),
            )
        })?;
        Ok((Some(grad_times_weight(&grad, w)?), Some(dw)))
    }
}

/// `x · Wᵀ` for a frozen weight `W: [out, in]`, differentiable in `x` only.
///
/// candle's matmul backward always computes the gradient of both operands, so on a frozen base
/// model it would spend a third of the backward pass on weight gradients nobody uses and keep
/// them — one model-sized buffer — until the backward pass ends. On the CPU this op computes
/// only `∂/∂x = g·W`; other devices fall back to the plain matmul.
///
/// A quantized weight is dequantized on the fly in both passes and dropped afterwards, so the
/// model's resident weights stay at the quantized size (Q8_0 is 34 bytes per 32 weights, ~3.8x
/// less than f32) at the cost of one dequantization per use. Unlike llama.cpp (and candle's
/// `QMatMul`), the activations are not quantized: the result is exactly the dequantized-weight
/// matmul, a smooth function of `x` with an exact gradient. (The fallback's graph holds the
/// dequantized weight until the backward pass ends.)
pub fn frozen_linear(x: &Tensor, w: &Weight) -> Result<Tensor> {
    let w = match w {
        Weight::Dense(t) => Weight::Dense(t.detach()),
        quantized => quantized.clone(),
    };
    if !x.device().is_cpu() || !x.is_contiguous() {
        return linear(x, &w.dense(x.dtype(), x.device())?);
    }
    let n_out = w.dims2()?.0;
    apply_to_rows(x, FrozenMatmul { w }, n_out)
}

/// Applies a `[rows, n_in] → [rows, n_out]` op to the last dimension of `x` (any rank).
fn apply_to_rows(
    x: &Tensor,
    op: impl CustomOp1 + Send + Sync + 'static,
    n_out: usize,
) -> Result<Tensor> {
    on_rows(x, n_out, |rows| {
        rows.apply_op1_arc(std::sync::Arc::new(Box::new(op)))
    })
}

/// `f` on `x` as a `[rows, n_in]` matrix, its `[rows, n_out]` result back in `x`'s leading
/// dimensions.
fn on_rows(x: &Tensor, n_out: usize, f: impl FnOnce(&Tensor) -> Result<Tensor>) -> Result<Tensor> {
    let dims = x.dims();
    let n_in = dims[dims.len() - 1];
    let rows = x.elem_count() / n_in;
    let out = f(&x.reshape((rows, n_in))?)?;
    let mut out_dims = dims.to_vec();
    *out_dims.last_mut().expect("rank ≥ 1") = n_out;
    out.reshape(out_dims)
}

struct FrozenMatmul {
    w: Weight,
}

impl CustomOp1 for FrozenMatmul {
    fn name(&self) -> &'static str {
        "frozen-linear"
    }

    fn cpu_fwd(&self, x: &CpuStorage, x_layout: &Layout) -> Result<(CpuStorage, Shape)> {
        let w = self.w.dense(x.dtype(), &Device::Cpu)?;
        let (w_storage, w_layout) = w.storage_and_layout();
        let Storage::Cpu(w) = &*w_storage else {
            candle_core::bail!("frozen-linear: the weight is not on the CPU")
        };
        rows_times_weight(x, x_layout, w, w_layout)
    }

    fn bwd(&self, _x: &Tensor, _out: &Tensor, grad: &Tensor) -> Result<Option<Tensor>> {
        let w = self.w.dense(grad.dtype(), grad.device())?;
        Ok(Some(grad_times_weight(grad, &w)?))
    }
}

/// `x·Wᵀ` for CPU rows `x: [m, k]` and a weight `W: [n, k]`: through [`blas::matmul`] for
/// contiguous f32/f64, candle's matmul otherwise.
fn rows_times_weight(
    x: &CpuStorage,
    x_layout: &Layout,
    w: &CpuStorage,
    w_layout: &Layout,
) -> Result<(CpuStorage, Shape)> {
    let (m, k) = x_layout.shape().dims2()?;
    let (n, w_cols) = w_layout.shape().dims2()?;
    if w_cols != k {
        candle_core::bail!("linear: rows of {k} against a {n}×{w_cols} weight");
    }
    let contiguous = x_layout.is_contiguous() && w_layout.is_contiguous();
    let out = match (x, w) {
        (CpuStorage::F32(x), CpuStorage::F32(w)) if contiguous => CpuStorage::F32(blas::matmul(
            (m, n, k),
            (kernel::slice(x, x_layout), false),
            (kernel::slice(w, w_layout), true),
        )),
        (CpuStorage::F64(x), CpuStorage::F64(w)) if contiguous => CpuStorage::F64(blas::matmul(
            (m, n, k),
            (kernel::slice(x, x_layout), false),
            (kernel::slice(w, w_layout), true),
        )),
        _ => x.matmul(w, (1, m, n, k), x_layout, &w_layout.transpose(0, 1)?)?,
    };
    Ok((out, Shape::from((m, n))))
}

/// `∂/∂x` of `x·Wᵀ`: `g·W` for `g: [m, n]`, `W: [n, k]`.
fn grad_times_weight(grad: &Tensor, w: &Tensor) -> Result<Tensor> {
    if !kernel::fusable(&[grad, w]) {
        return grad.matmul(w);
    }
    let (grad, w) = (grad.contiguous()?, w.contiguous()?);
    let ((m, n), (_, k)) = (grad.dims2()?, w.dims2()?);
    kernel::with_cpu_slices!("linear", [(grad, g), (w, ws)], {
        Tensor::from_vec(
            blas::matmul((m, k, n), (g, false), (ws, false)),
            (m, k),
            grad.device(),
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::gradcheck::{assert_grad_matches, max_abs_diff, project, randn, randn_var};
    use candle_core::DType;
    use candle_core::quantized::QTensor;

    #[test]
    fn frozen_linear_equals_linear_and_only_differentiates_the_input() {
        let x = randn_var(20, &[2, 3, 8], 1.0);
        let w = randn_var(21, &[5, 8], 1.0);
        let frozen = Weight::Dense(w.as_tensor().clone());
        let a = frozen_linear(x.as_tensor(), &frozen).unwrap();
        let b = linear(x.as_tensor(), w.as_tensor()).unwrap();
        assert_eq!(a.dims(), &[2, 3, 5]);
        let diff = max_abs_diff(&a, &b);
        assert!(diff < 1e-12, "{diff}");
        let f = || project(&frozen_linear(x.as_tensor(), &frozen)?, 22);
        assert_grad_matches("frozen_linear/x", &x, f, 48);
        // Even a variable weight gets no gradient through it: the base never trains.
        let grads = f().unwrap().backward().unwrap();
        assert!(grads.get(w.as_tensor()).is_none());
        assert!(grads.get(x.as_tensor()).is_some());
        // The plain linear, by contrast, would have produced one.
        let grads = project(&b, 22).unwrap().backward().unwrap();
        assert!(grads.get(w.as_tensor()).is_some());
    }

    #[test]
    fn frozen_linear_of_a_quantized_weight_is_the_dequantized_matmul_with_an_exact_gradient() {
        use candle_core::quantized::GgmlDType;
        let w = randn(23, &[6, 64], 0.5).to_dtype(DType::F32).unwrap();
        let q = std::sync::Arc::new(QTensor::quantize(&w, GgmlDType::Q8_0).unwrap());
        let w_deq = q
            .dequantize(&Device::Cpu)
            .unwrap()
            .to_dtype(DType::F64)
            .unwrap();
        let rounding = (&w_deq - w.to_dtype(DType::F64).unwrap())
            .unwrap()
            .abs()
            .unwrap()
            .max_all()
            .unwrap()
            .to_scalar::<f64>()
            .unwrap();
        assert!(
            rounding > 0.0,
            "q8_0 must round: the test would not see a mix-up"
        );
        let x = randn_var(24, &[2, 3, 64], 1.0);
        let q = Weight::Quantized(q);
        let got = frozen_linear(x.as_tensor(), &q).unwrap();
        assert_eq!(got.dims(), &[2, 3, 6]);
        let want = linear(x.as_tensor(), &w_deq).unwrap();
        let diff = max_abs_diff(&got, &want);
        assert!(diff < 1e-12, "{diff}");
        assert_grad_matches(
            "frozen_linear/quantized/x",
            &x,
            || project(&frozen_linear(x.as_tensor(), &q)?, 25),
            64,
        );
    }
}
