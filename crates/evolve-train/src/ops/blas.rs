//! Dense matrix products on the CPU: the frozen base weights' `x·Wᵀ` and `g·W` (most of a
//! LoRA-DPO step's arithmetic), the LoRA matrices' products and attention's per-head ones. With
//! the `openblas` feature (on by default) they run in the system's OpenBLAS, whose kernels ran the
//! models' shapes at 167–188 GFLOP/s on two AVX-512 cores where the `gemm` crate (candle's CPU
//! matmul) ran them at 74–104. Without the feature, or past BLAS's 32-bit dimensions, they run in
//! `gemm`.

use super::kernel::Float;
#[cfg(feature = "openblas")]
use super::openblas;

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
