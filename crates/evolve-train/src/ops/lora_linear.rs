//! A frozen linear layer and its LoRA pair as one CPU op: `y = x·Wᵀ + s·(x·Aᵀ)·Bᵀ`.
//!
//! Composed, the layer is five autograd nodes (the base product, the two LoRA products, the
//! scale and the sum), and candle's backward pass gives every node's input a zero-filled
//! gradient buffer and adds into it: memory passes beside the arithmetic, which at the tiny
//! model's width were a sixth of its step's profile (those additions and zero fills). Here the
//! sum is the second product accumulating into the first's output, and the backward pass
//! writes the three gradients directly: `∂B = gᵀ·L`, `∂A = s·(g·B)ᵀ·x` and
//! `∂x = g·W + s·(g·B)·A`, where `L = s·x·Aᵀ` is kept from the forward pass (`rank` numbers a
//! row).

use super::blas::{matmul, product, product_add};
use super::kernel::{Float, fusable, slice, with_cpu_slices};
use super::weight::Weight;
use candle_core::backend::BackendStorage;
use candle_core::{CpuStorage, CustomOp3, Device, Layout, Result, Shape, Storage, Tensor};
use std::sync::{Arc, Mutex};

/// `x·Wᵀ + scale·(x·Aᵀ)·Bᵀ` for `x: [.., in]`, a frozen `W: [out, in]`, `A: [rank, in]` and
/// `B: [out, rank]`, differentiable in `x`, `A` and `B`; `None` where the fused op does not
/// apply (not on the CPU, not f32/f64, mixed dtypes): the caller composes it instead.
pub fn lora_linear(
    x: &Tensor,
    w: &Weight,
    a: &Tensor,
    b: &Tensor,
    scale: f64,
) -> Result<Option<Tensor>> {
    let dense_matches = match w {
        Weight::Dense(w) => fusable(&[x, w]) && w.is_contiguous(),
        Weight::Quantized(_) => true,
    };
    let contiguous = a.is_contiguous() && b.is_contiguous();
    if !(dense_matches && fusable(&[x, a, b]) && contiguous) || x.rank() == 0 {
        return Ok(None);
    }
    let op = LoraLinear {
        w: w.clone(),
        scale,
        low: Mutex::new(None),
    };
    // Rows of any rank go in as they are: a reshape would be one more autograd node (and
    // gradient buffer) each way.
    let x = x.contiguous()?;
    Ok(Some(x.apply_op3_arc(a, b, Arc::new(Box::new(op)))?))
}

/// `(rows, columns)` of `dims` read as a matrix of its last dimension's rows.
fn rows(dims: &[usize]) -> (usize, usize) {
    let k = dims[dims.len() - 1];
    (dims.iter().product::<usize>() / k.max(1), k)
}

struct LoraLinear {
    w: Weight,
    scale: f64,
    /// `s·x·Aᵀ` (`[rows, rank]`) from the forward pass, for the backward pass.
    low: Mutex<Option<Tensor>>,
}

impl CustomOp3 for LoraLinear {
    fn name(&self) -> &'static str {
        "lora-linear"
    }

    fn cpu_fwd(
        &self,
        x: &CpuStorage,
        lx: &Layout,
        a: &CpuStorage,
        la: &Layout,
        b: &CpuStorage,
        lb: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        let (m, k) = rows(lx.dims());
        let (r, _) = la.shape().dims2()?;
        let (n, _) = lb.shape().dims2()?;
        if la.dims() != [r, k] || lb.dims() != [n, r] || self.w.dims2()? != (n, k) {
            candle_core::bail!("lora-linear: x {lx:?}, A {la:?}, B {lb:?} do not fit");
        }
        let w = self.w.dense(x.dtype(), &Device::Cpu)?;
        let (w_storage, lw) = w.storage_and_layout();
        let Storage::Cpu(w) = &*w_storage else {
            candle_core::bail!("lora-linear: the weight is not on the CPU")
        };
        let dims = (m, k, n, r);
        let (out, low) = match (x, w, a, b) {
            (CpuStorage::F32(x), CpuStorage::F32(w), CpuStorage::F32(a), CpuStorage::F32(b)) => {
                let operands = (slice(x, lx), slice(w, lw), slice(a, la), slice(b, lb));
                let (out, low) = self.forward(operands, dims);
                (
                    CpuStorage::F32(out),
                    Tensor::from_vec(low, (m, r), &Device::Cpu)?,
                )
            }
            (CpuStorage::F64(x), CpuStorage::F64(w), CpuStorage::F64(a), CpuStorage::F64(b)) => {
                let operands = (slice(x, lx), slice(w, lw), slice(a, la), slice(b, lb));
                let (out, low) = self.forward(operands, dims);
                (
                    CpuStorage::F64(out),
                    Tensor::from_vec(low, (m, r), &Device::Cpu)?,
                )
            }
            _ => candle_core::bail!("lora-linear: CPU tensors in one dtype"),
        };
        *self.low.lock().expect("lora-linear lock") = Some(low);
        let mut out_dims = lx.dims().to_vec();
        *out_dims.last_mut().expect("rank ≥ 1") = n;
        Ok((out, Shape::from(out_dims)))
    }

    fn bwd(
        &self,
        x: &Tensor,
        a: &Tensor,
        b: &Tensor,
        _out: &Tensor,
        grad: &Tensor,
    ) -> Result<(Option<Tensor>, Option<Tensor>, Option<Tensor>)> {
        let Some(low) = self.low.lock().expect("lora-linear lock").clone() else {
            candle_core::bail!("lora-linear: backward before forward")
        };
        let grad = grad.contiguous()?;
        let w = self.w.dense(x.dtype(), x.device())?;
        let ((m, k), (r, _), (n, _)) = (rows(x.dims()), a.dims2()?, b.dims2()?);
        let dev = x.device();
        let (dx, da, db) = with_cpu_slices!(
            "lora-linear",
            [(grad, g), (x, xs), (a, as_), (b, bs), (w, ws), (low, ls)],
            {
                let (dx, da, db) = self.backward((g, xs, as_, bs, ws, ls), (m, k, n, r));
                (
                    Tensor::from_vec(dx, x.shape(), dev)?,
                    Tensor::from_vec(da, (r, k), dev)?,
                    Tensor::from_vec(db, (n, r), dev)?,
                )
            }
        );
        Ok((Some(dx), Some(da), Some(db)))
    }
}

impl LoraLinear {
    /// Returns `y: [m, n]` and `L = s·x·Aᵀ: [m, r]`.
    fn forward<T: Float>(
        &self,
        (x, w, a, b): (&[T], &[T], &[T], &[T]),
        (m, k, n, r): (usize, usize, usize, usize),
    ) -> (Vec<T>, Vec<T>) {
        let mut out = matmul((m, n, k), (x, false), (w, true));
        let mut low = vec![T::ZERO; m * r];
        product(&mut low, (m, r, k), (x, false), (a, true), self.s(), true);
        product_add(
            &mut out,
            (m, n, r),
            (&low, false),
            (b, true),
            T::from_f64(1.0),
            true,
        );
        (out, low)
    }

    /// Returns `(∂x, ∂A, ∂B)`.
    #[allow(clippy::type_complexity)]
    fn backward<T: Float>(
        &self,
        (g, x, a, b, w, low): (&[T], &[T], &[T], &[T], &[T], &[T]),
        (m, k, n, r): (usize, usize, usize, usize),
    ) -> (Vec<T>, Vec<T>, Vec<T>) {
        let gb = matmul((m, r, n), (g, false), (b, false));
        // The adapter's gradients sum over every row, one BLAS call each on one thread: they
        // run beside each other and beside the input gradient's row-parallel products.
        let ((db, da), dx) = rayon::join(
            || {
                rayon::join(
                    || matmul((n, r, m), (g, true), (low, false)),
                    || {
                        let mut da = vec![T::ZERO; r * k];
                        product(&mut da, (r, k, m), (&gb, true), (x, false), self.s(), true);
                        da
                    },
                )
            },
            || {
                let mut dx = matmul((m, k, n), (g, false), (w, false));
                product_add(&mut dx, (m, k, r), (&gb, false), (a, false), self.s(), true);
                dx
            },
        );
        (dx, da, db)
    }

    fn s<T: Float>(&self) -> T {
        T::from_f64(self.scale)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::gradcheck::{assert_grad_matches, max_abs_diff, randn, randn_var};
    use crate::ops::linear::linear;
    use candle_core::quantized::{GgmlDType, QTensor};
    use candle_core::{DType, Var};

    fn composed(x: &Tensor, w: &Tensor, a: &Tensor, b: &Tensor, s: f64) -> Result<Tensor> {
        let base = linear(x, w)?;
        let low = (linear(x, a)? * s)?;
        base + linear(&low, b)?
    }

    /// Every operand random, so no term of the sum or its gradients can hide behind a zero
    /// (PEFT starts `B` at zero).
    fn check(weight: Weight, w_dense: &Tensor) {
        let x = randn_var(40, &[2, 3, 64], 1.0);
        let a = randn_var(41, &[4, 64], 0.3);
        let b = randn_var(42, &[6, 4], 0.3);
        let s = 2.5;
        let run = |x: &Var, a: &Var, b: &Var| {
            lora_linear(x.as_tensor(), &weight, a.as_tensor(), b.as_tensor(), s)
                .map(|y| y.expect("fusable"))
        };
        let got = run(&x, &a, &b).unwrap();
        assert_eq!(got.dims(), &[2, 3, 6]);
        let want = composed(x.as_tensor(), w_dense, a.as_tensor(), b.as_tensor(), s).unwrap();
        let diff = max_abs_diff(&got, &want);
        assert!(diff < 1e-12, "values {diff}");
        let project = |y: Tensor| (y * randn(43, &[2, 3, 6], 1.0))?.sum_all();
        for (label, v) in [("x", &x), ("A", &a), ("B", &b)] {
            assert_grad_matches(
                &format!("lora_linear/{label}"),
                v,
                || project(run(&x, &a, &b)?),
                64,
            );
        }
        // The whole gradient, not only the entries sampled above, equals the composed one's.
        let grads = project(got).unwrap().backward().unwrap();
        let composed_grads =
            project(composed(x.as_tensor(), w_dense, a.as_tensor(), b.as_tensor(), s).unwrap())
                .unwrap()
                .backward()
                .unwrap();
        for v in [&x, &a, &b] {
            let d = max_abs_diff(
                grads.get(v.as_tensor()).unwrap(),
                composed_grads.get(v.as_tensor()).unwrap(),
            );
            assert!(d < 1e-12, "gradient {d}");
        }
    }

    #[test]
    fn lora_linear_equals_the_composed_layer_with_finite_difference_gradients() {
        let w = randn(44, &[6, 64], 0.5);
        check(Weight::Dense(w.clone()), &w);
    }

    #[test]
    fn lora_linear_over_a_quantized_weight_equals_the_dequantized_layer() {
        let w = randn(45, &[6, 64], 0.5).to_dtype(DType::F32).unwrap();
        let q = Arc::new(QTensor::quantize(&w, GgmlDType::Q8_0).unwrap());
        let w_deq = q
            .dequantize(&Device::Cpu)
            .unwrap()
            .to_dtype(DType::F64)
            .unwrap();
        check(Weight::Quantized(q), &w_deq);
    }

    #[test]
    fn lora_linear_declines_what_it_cannot_fuse() {
        let x = randn(46, &[3, 8], 1.0);
        let w = Weight::Dense(randn(47, &[5, 8], 1.0).to_dtype(DType::F32).unwrap());
        let (a, b) = (randn(48, &[2, 8], 1.0), randn(49, &[5, 2], 1.0));
        assert!(
            lora_linear(&x, &w, &a, &b, 1.0).unwrap().is_none(),
            "mixed dtypes"
        );
    }
}
