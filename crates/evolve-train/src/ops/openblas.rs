//! The system OpenBLAS's `?gemm` (the `openblas` feature), which [`super::blas`] tries first:
//! single-threaded calls split over the rayon pool, and the [`Blas`] bound of the float types
//! the CPU kernels run in.

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
pub(super) fn product<T: Blas + Copy + Send + Sync>(
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
pub(super) trait Blas: Sized {
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
