//! What the CPU kernels of this module share: the float types they run in (f32, and f64 for
//! the gradient checks) and the loops LLVM vectorizes.

#[cfg(feature = "openblas")]
use super::openblas::Blas;
use candle_core::Layout;
use std::ops::{Add, Div, Mul, Sub};

/// Without BLAS every float type takes `gemm`.
#[cfg(not(feature = "openblas"))]
pub(super) trait Blas {}
#[cfg(not(feature = "openblas"))]
impl<T> Blas for T {}

/// The float types the kernel runs in.
pub(super) trait Float:
    Blas
    + Copy
    + Send
    + Sync
    + Add<Output = Self>
    + Sub<Output = Self>
    + Mul<Output = Self>
    + Div<Output = Self>
    + PartialOrd
    + 'static
{
    const ZERO: Self;
    fn exp(self) -> Self;
    fn recip(self) -> Self;
    fn from_f64(v: f64) -> Self;
    fn from_f32(v: f32) -> Self;
    fn to_f64(self) -> f64;
}

impl Float for f32 {
    const ZERO: Self = 0.0;
    fn exp(self) -> Self {
        exp_f32(self)
    }
    fn recip(self) -> Self {
        1.0 / self
    }
    fn from_f64(v: f64) -> Self {
        v as f32
    }
    fn from_f32(v: f32) -> Self {
        v
    }
    fn to_f64(self) -> f64 {
        f64::from(self)
    }
}

impl Float for f64 {
    const ZERO: Self = 0.0;
    fn exp(self) -> Self {
        f64::exp(self)
    }
    fn recip(self) -> Self {
        1.0 / self
    }
    fn from_f64(v: f64) -> Self {
        v
    }
    fn from_f32(v: f32) -> Self {
        f64::from(v)
    }
    fn to_f64(self) -> f64 {
        self
    }
}

/// `eˣ` in f32 from arithmetic alone (Cephes' `expf`: `x = n·ln2 + r`, a degree-6 polynomial in
/// `r`, `2ⁿ` from the exponent bits), within 2 ulp of the correctly rounded value: unlike a
/// call into libm it vectorizes, and softmax and SiLU call it once per element. Inputs are
/// clamped to [−87.3, 88]: 1.2e-38 for a masked score (nothing next to the row maximum's 1),
/// 1.7e38 for the largest (SiLU divides by it).
#[inline(always)]
pub(super) fn exp_f32(x: f32) -> f32 {
    const LOG2E: f32 = std::f32::consts::LOG2_E;
    const LN2_HI: f32 = 0.693_359_4;
    const LN2_LO: f32 = -2.121_944_4e-4;
    // Adding and subtracting 1.5·2²³ rounds to the nearest integer without a call.
    const ROUND: f32 = 12_582_912.0;
    let x = x.clamp(-87.336_55, 88.0);
    let shifted = x * LOG2E + ROUND;
    let n = shifted - ROUND;
    let r = x - n * LN2_HI - n * LN2_LO;
    let mut p = 1.987_569_1e-4_f32;
    p = p * r + 1.398_199_9e-3;
    p = p * r + 8.333_452e-3;
    p = p * r + 4.166_579_6e-2;
    p = p * r + 1.666_666_5e-1;
    p = p * r + 0.5;
    let er = p * r * r + r + 1.0;
    // n's bits sit at the bottom of `shifted`'s mantissa: integer ops, which vectorize (a
    // float-to-int cast saturates and does not).
    let biased = shifted
        .to_bits()
        .wrapping_sub(ROUND.to_bits())
        .wrapping_add(127);
    er * f32::from_bits(biased << 23)
}

/// `Σ x` over eight lanes, so the loop vectorizes.
#[inline(always)]
pub(super) fn sum<T: Float>(x: &[T]) -> T {
    let mut lanes = [T::ZERO; 8];
    let chunks = x.chunks_exact(8);
    let rest = chunks.remainder();
    for c in chunks {
        for l in 0..8 {
            lanes[l] = lanes[l] + c[l];
        }
    }
    rest.iter()
        .fold(lanes.iter().fold(T::ZERO, |s, &v| s + v), |s, &v| s + v)
}

/// `Σ aᵢ·bᵢ` over eight lanes, so the loop vectorizes (`a` and `b` of one length).
#[inline(always)]
pub(super) fn dot<T: Float>(a: &[T], b: &[T]) -> T {
    let mut lanes = [T::ZERO; 8];
    let (ca, cb) = (a.chunks_exact(8), b.chunks_exact(8));
    let rest = ca.remainder().iter().zip(cb.remainder());
    for (x, y) in ca.zip(cb) {
        for l in 0..8 {
            lanes[l] = lanes[l] + x[l] * y[l];
        }
    }
    rest.fold(lanes.iter().fold(T::ZERO, |s, &v| s + v), |s, (&x, &y)| {
        s + x * y
    })
}

/// `max x` over eight lanes (`x` not empty).
#[inline(always)]
pub(super) fn max<T: Float>(x: &[T]) -> T {
    let mut lanes = [x[0]; 8];
    let chunks = x.chunks_exact(8);
    let rest = chunks.remainder();
    for c in chunks {
        for l in 0..8 {
            lanes[l] = if c[l] > lanes[l] { c[l] } else { lanes[l] };
        }
    }
    let m = lanes.iter().fold(x[0], |m, &v| if v > m { v } else { m });
    rest.iter().fold(m, |m, &v| if v > m { v } else { m })
}

/// Runs `f` compiled for AVX2 and FMA where the CPU has them: builds target baseline x86-64
/// (SSE2), which would leave the kernels' loops a quarter as wide. `f` and what it inlines are
/// compiled for both; the check is a cached CPUID read.
#[inline(always)]
pub(super) fn with_simd<R>(f: impl FnOnce() -> R) -> R {
    #[cfg(target_arch = "x86_64")]
    {
        #[target_feature(enable = "avx2,fma")]
        fn avx2<R>(f: impl FnOnce() -> R) -> R {
            f()
        }
        if std::is_x86_feature_detected!("avx2") && std::is_x86_feature_detected!("fma") {
            // SAFETY: the CPU supports the features `avx2` was compiled with.
            return unsafe { avx2(f) };
        }
    }
    f()
}

/// The elements a contiguous layout covers.
pub(super) fn slice<'a, T>(v: &'a [T], l: &Layout) -> &'a [T] {
    &v[l.start_offset()..l.start_offset() + l.shape().elem_count()]
}

/// Runs `$body` with `$a`, `$b` (and `$c`) bound to the f32 or f64 slices of CPU tensors'
/// storages, in one dtype; anything else is an error naming `$op`.
macro_rules! with_cpu_slices {
    ($op:literal, [$(($t:expr, $name:ident)),+], $body:expr) => {{
        use candle_core::{CpuStorage, DType, Storage};
        let dtype = [$($t.dtype()),+][0];
        $(let $name = $t.storage_and_layout();)+
        match dtype {
            DType::F32 => {
                $(let $name = match &*$name.0 {
                    Storage::Cpu(CpuStorage::F32(v)) => $crate::ops::kernel::slice(v, $name.1),
                    _ => candle_core::bail!(concat!($op, ": CPU tensors in one dtype")),
                };)+
                $body
            }
            DType::F64 => {
                $(let $name = match &*$name.0 {
                    Storage::Cpu(CpuStorage::F64(v)) => $crate::ops::kernel::slice(v, $name.1),
                    _ => candle_core::bail!(concat!($op, ": CPU tensors in one dtype")),
                };)+
                $body
            }
            other => candle_core::bail!("{}: {other:?}", $op),
        }
    }};
}
pub(super) use with_cpu_slices;

/// Whether the fused CPU kernels apply: every tensor on the CPU, f32 or f64, one dtype.
pub(super) fn fusable(tensors: &[&candle_core::Tensor]) -> bool {
    let dtype = tensors[0].dtype();
    tensors.iter().all(|t| {
        t.device().is_cpu()
            && t.dtype() == dtype
            && matches!(dtype, candle_core::DType::F32 | candle_core::DType::F64)
    })
}

#[cfg(test)]
mod tests {
    #[test]
    fn exp_f32_is_within_two_ulp_of_the_exact_value_and_saturates() {
        let mut worst = 0f64;
        let mut x = -87.0f32;
        while x < 88.0 {
            let exact = f64::from(x).exp();
            let ulp = f64::from(f32::from_bits((exact as f32).to_bits() + 1)) - exact as f32 as f64;
            let err = (f64::from(super::exp_f32(x)) - exact).abs() / ulp.abs();
            worst = worst.max(err);
            x += 0.0137;
        }
        assert!(worst <= 2.0, "{worst} ulp");
        assert!(super::exp_f32(-1e9) < 1.2e-38);
        assert_eq!(super::exp_f32(0.0), 1.0);
        assert!(super::exp_f32(1e9) > 1e38);
    }
}
