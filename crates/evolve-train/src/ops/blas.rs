//! Dense matrix products on the CPU: the frozen base weights' `x·Wᵀ` and `g·W` (most of a
//! LoRA-DPO step's arithmetic), the LoRA matrices' products and attention's per-head ones. With
//! the `openblas` feature (on by default) they run in the system's OpenBLAS, whose kernels ran the
//! models' shapes at 167–188 GFLOP/s on two AVX-512 cores where the `gemm` crate (candle's CPU
//! matmul) ran them at 74–104. Without the feature, or past BLAS's 32-bit dimensions, they run in
//! `gemm`.

use super::kernel::Float;

/// A row-major operand: `(data, row stride, column stride)`; a transposed matrix is the same
/// data with the strides swapped.
type Operand<'a, T> = (&'a [T], isize, isize);

/// `dst[m, n] = β·lhs·rhs` (`+ dst` with `accumulate`) with `lhs: [m, k]` and `rhs: [k, n]`, on
/// the calling thread (or on the rayon pool with `parallel`), through the `gemm` crate for any
/// strides.
fn strided<T: Float>(
    dst: &mut [T],
    (m, n, k): (usize, usize, usize),
    (lhs, lhs_rs, lhs_cs): Operand<T>,
    (rhs, rhs_rs, rhs_cs): Operand<T>,
    (beta, accumulate): (T, bool),
    parallel: bool,
) {
    // The last element each operand is read at must lie inside its slice (gemm takes pointers).
    let last = |rows: usize, cols: usize, rs: isize, cs: isize| {
        (rows as isize - 1) * rs + (cols as isize - 1) * cs
    };
    assert_eq!(dst.len(), m * n, "gemm: destination size");
    if m == 0 || n == 0 {
        return;
    }
    if k == 0 {
        if !accumulate {
            dst.fill(T::ZERO);
        }
        return;
    }
    assert!(last(m, k, lhs_rs, lhs_cs) < lhs.len() as isize);
    assert!(last(k, n, rhs_rs, rhs_cs) < rhs.len() as isize);
    let threads = candle_core::utils::get_num_threads();
    let parallelism = if parallel && threads > 1 {
        gemm::Parallelism::Rayon(threads)
    } else {
        gemm::Parallelism::None
    };
    // SAFETY: every element read or written is in bounds (checked above), `dst` is borrowed
    // exclusively and fully initialised; T is f32 or f64.
    unsafe {
        gemm::gemm(
            m,
            n,
            k,
            dst.as_mut_ptr(),
            1,
            n as isize,
            accumulate,
            lhs.as_ptr(),
            lhs_cs,
            lhs_rs,
            rhs.as_ptr(),
            rhs_cs,
            rhs_rs,
            T::from_f64(1.0),
            beta,
            false,
            false,
            false,
            parallelism,
        );
    }
}

/// `op(a)·op(b)` for contiguous row-major operands, `op` transposing where the flag says so:
/// `a` is `[m, k]` (or `[k, m]`), `b` is `[k, n]` (or `[n, k]`); all threads.
pub(super) fn matmul<T: Float>(
    dims: (usize, usize, usize),
    a: (&[T], bool),
    b: (&[T], bool),
) -> Vec<T> {
    let mut out = vec![T::ZERO; dims.0 * dims.1];
    product(&mut out, dims, a, b, T::from_f64(1.0), true);
    out
}

/// `dst[m, n] = scale·op(a)·op(b)` as in [`matmul`], on all threads or (`parallel` false) on the
/// calling one — for callers that already run one task per thread.
pub(super) fn product<T: Float>(
    dst: &mut [T],
    dims: (usize, usize, usize),
    a: (&[T], bool),
    b: (&[T], bool),
    scale: T,
    parallel: bool,
) {
    gemm_into(dst, dims, a, b, (scale, false), parallel);
}

/// `dst[m, n] += scale·op(a)·op(b)`, otherwise as [`product`]: a sum of products without a
/// buffer for each.
pub(super) fn product_add<T: Float>(
    dst: &mut [T],
    dims: (usize, usize, usize),
    a: (&[T], bool),
    b: (&[T], bool),
    scale: T,
    parallel: bool,
) {
    gemm_into(dst, dims, a, b, (scale, true), parallel);
}

fn gemm_into<T: Float>(
    dst: &mut [T],
    (m, n, k): (usize, usize, usize),
    (a, a_transposed): (&[T], bool),
    (b, b_transposed): (&[T], bool),
    scale: (T, bool),
    parallel: bool,
) {
    assert_eq!(a.len(), m * k, "matmul: left operand size");
    assert_eq!(b.len(), k * n, "matmul: right operand size");
    assert_eq!(dst.len(), m * n, "matmul: destination size");
    #[cfg(feature = "openblas")]
    if openblas::product(
        dst,
        (m, n, k),
        (a, a_transposed),
        (b, b_transposed),
        scale,
        parallel,
    ) {
        return;
    }
    let (mi, ni, ki) = (m as isize, n as isize, k as isize);
    let a = if a_transposed { (a, 1, mi) } else { (a, ki, 1) };
    let b = if b_transposed { (b, 1, ki) } else { (b, ni, 1) };
    strided(dst, (m, n, k), a, b, scale, parallel);
}

#[cfg(feature = "openblas")]
mod openblas {
    use cblas_sys::{CBLAS_TRANSPOSE, CblasNoTrans, CblasRowMajor, CblasTrans};
    use std::ffi::c_int;

    #[link(name = "openblas")]
    unsafe extern "C" {
        fn openblas_set_num_threads(n: c_int);
    }

    /// Rows per task below which splitting costs more than it gains.
    const MIN_ROWS: usize = 64;

    /// Splits the rows of `a` and `out` over the rayon pool (with `parallel`), one
    /// single-threaded `?gemm` per task (one task for a transposed `a`, whose rows are not
    /// contiguous). OpenBLAS's own threads busy-wait (`sched_yield`) for a while after every
    /// call, taking the cores from the rayon work between products (~15 % of a SmolLM2 step
    /// when measured). `false` where BLAS does not apply (dimensions past its `int`s).
    pub(in crate::ops) fn product<T: Blas + Copy + Send + Sync>(
        out: &mut [T],
        (m, n, k): (usize, usize, usize),
        (a, a_transposed): (&[T], bool),
        b: (&[T], bool),
        scale: (T, bool),
        parallel: bool,
    ) -> bool {
        use rayon::prelude::*;
        if ints([m, n, k]).is_none() || m == 0 || n == 0 || k == 0 {
            return false;
        }
        static ONE_THREAD: std::sync::Once = std::sync::Once::new();
        // SAFETY: a plain setter; with 1, every call runs on its caller's thread.
        ONE_THREAD.call_once(|| unsafe { openblas_set_num_threads(1) });
        let tasks = if parallel && !a_transposed {
            rayon::current_num_threads().min(m / MIN_ROWS).max(1)
        } else {
            1
        };
        if tasks == 1 {
            T::blas(out, (m, n, k), (a, a_transposed), b, scale);
            return true;
        }
        let rows = m.div_ceil(tasks);
        out.par_chunks_mut(rows * n)
            .zip(a.par_chunks(rows * k))
            .for_each(|(out, a)| T::blas(out, (a.len() / k, n, k), (a, false), b, scale));
        true
    }

    /// The dimensions as BLAS's `int`s, `None` past them.
    fn ints(dims: [usize; 3]) -> Option<[c_int; 3]> {
        Some([
            c_int::try_from(dims[0]).ok()?,
            c_int::try_from(dims[1]).ok()?,
            c_int::try_from(dims[2]).ok()?,
        ])
    }

    /// `out[m, n] = scale·op(a)·op(b)` (`+ out` with `accumulate`) through `?gemm`, for
    /// dimensions that fit BLAS's `int`s.
    pub(in crate::ops) trait Blas: Sized {
        fn blas(
            out: &mut [Self],
            dims: (usize, usize, usize),
            a: (&[Self], bool),
            b: (&[Self], bool),
            scale: (Self, bool),
        );
    }

    /// BLAS's transpose flag and leading dimension for a row-major `rows × cols` operand.
    fn op(transposed: bool, rows: c_int, cols: c_int) -> (CBLAS_TRANSPOSE, c_int) {
        if transposed {
            (CblasTrans, rows)
        } else {
            (CblasNoTrans, cols)
        }
    }

    macro_rules! blas {
        ($t:ty, $f:path) => {
            impl Blas for $t {
                fn blas(
                    out: &mut [$t],
                    (m, n, k): (usize, usize, usize),
                    (a, a_t): (&[$t], bool),
                    (b, b_t): (&[$t], bool),
                    (scale, accumulate): ($t, bool),
                ) {
                    assert!(out.len() == m * n && a.len() == m * k && b.len() == k * n);
                    let [mi, ni, ki] = ints([m, n, k]).expect("checked by the caller");
                    let ((ta, lda), (tb, ldb)) = (op(a_t, mi, ki), op(b_t, ki, ni));
                    // SAFETY: the three buffers hold exactly the elements ?gemm reads and
                    // writes (asserted above).
                    unsafe {
                        $f(
                            CblasRowMajor,
                            ta,
                            tb,
                            mi,
                            ni,
                            ki,
                            scale,
                            a.as_ptr(),
                            lda,
                            b.as_ptr(),
                            ldb,
                            if accumulate { 1.0 } else { 0.0 },
                            out.as_mut_ptr(),
                            ni,
                        );
                    }
                }
            }
        };
    }
    blas!(f32, cblas_sys::cblas_sgemm);
    blas!(f64, cblas_sys::cblas_dgemm);
}

#[cfg(feature = "openblas")]
pub(super) use openblas::Blas;

/// Without BLAS every float type takes `gemm`.
#[cfg(not(feature = "openblas"))]
pub(super) trait Blas {}
#[cfg(not(feature = "openblas"))]
impl<T> Blas for T {}

#[cfg(test)]
mod tests {
    use super::*;

    /// Integer-valued operands, so every product is exact and the paths must agree to the bit.
    fn check<T: Float + std::fmt::Debug>() {
        // More rows than two tasks' minimum, so the BLAS path splits them.
        let (m, n, k) = (130, 7, 33);
        let int = |i: usize, p: usize, r: usize| T::from_f64(((i * p) % r) as f64 - (r / 2) as f64);
        let a: Vec<T> = (0..m * k).map(|i| int(i, 7919, 23)).collect();
        let b: Vec<T> = (0..k * n).map(|i| int(i, 104_729, 19)).collect();
        for a_t in [false, true] {
            for b_t in [false, true] {
                let at = |i: usize, l: usize| if a_t { a[l * m + i] } else { a[i * k + l] };
                let bt = |l: usize, j: usize| if b_t { b[j * k + l] } else { b[l * n + j] };
                let want: Vec<T> = (0..m * n)
                    .map(|ij| (0..k).fold(T::ZERO, |s, l| s + at(ij / n, l) * bt(l, ij % n)))
                    .collect();
                let mut got = matmul((m, n, k), (&a, a_t), (&b, b_t));
                assert_eq!(got, want, "matmul, a transposed {a_t}, b transposed {b_t}");
                let three = T::from_f64(3.0);
                product_add(&mut got, (m, n, k), (&a, a_t), (&b, b_t), three, true);
                let four_times: Vec<T> = want.iter().map(|&w| w * T::from_f64(4.0)).collect();
                assert_eq!(got, four_times, "product_add, a transposed {a_t}");
                let (mi, ni, ki) = (m as isize, n as isize, k as isize);
                let lhs = if a_t {
                    (&a[..], 1, mi)
                } else {
                    (&a[..], ki, 1)
                };
                let rhs = if b_t {
                    (&b[..], 1, ki)
                } else {
                    (&b[..], ni, 1)
                };
                let mut strided_out = vec![T::ZERO; m * n];
                strided(
                    &mut strided_out,
                    (m, n, k),
                    lhs,
                    rhs,
                    (T::from_f64(1.0), false),
                    true,
                );
                assert_eq!(
                    strided_out, want,
                    "gemm, a transposed {a_t}, b transposed {b_t}"
                );
                strided(&mut strided_out, (m, n, k), lhs, rhs, (three, true), true);
                assert_eq!(
                    strided_out, four_times,
                    "gemm accumulating, a transposed {a_t}"
                );
            }
        }
    }

    #[test]
    fn products_equal_their_definition_for_every_transpose_in_both_paths() {
        check::<f32>();
        check::<f64>();
    }
}
