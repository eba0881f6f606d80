//! What the CPU kernels of this module share: the float types they run in (f32, and f64 for
//! the gradient checks) and the loops LLVM vectorizes.

use candle_core::Layout;
use std::ops::{Add, Div, Mul, Sub};

/// The float types the kernel runs in.
pub(super) trait Float:
    Copy
    + Send
    + Sync
    + Add<Output = Self>
    + Sub<Output = Self>
    + Mul<Output = Self>
    + Div<Output = Self>
    + PartialOrd
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
        f32::exp(self)
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

/// `Σ a_i b_i` over eight lanes, so the loop vectorizes without reassociating one sum.
pub(super) fn dot<T: Float>(a: &[T], b: &[T]) -> T {
    let mut lanes = [T::ZERO; 8];
    let (ac, bc) = (a.chunks_exact(8), b.chunks_exact(8));
    let (ar, br) = (ac.remainder(), bc.remainder());
    for (x, y) in ac.zip(bc) {
        for l in 0..8 {
            lanes[l] = lanes[l] + x[l] * y[l];
        }
    }
    let mut sum = lanes.iter().fold(T::ZERO, |s, &v| s + v);
    for (&x, &y) in ar.iter().zip(br) {
        sum = sum + x * y;
    }
    sum
}

/// `y += a·x`.
pub(super) fn axpy<T: Float>(y: &mut [T], a: T, x: &[T]) {
    for (y, &x) in y.iter_mut().zip(x) {
        *y = *y + a * x;
    }
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
