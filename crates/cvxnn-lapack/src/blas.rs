//! Level-2/3 BLAS: plain loops in `f64`, exact BLAS semantics (`beta = 0` never reads the
//! output; `op(A)` by the `trans` character; only the `uplo` triangle of a symmetric matrix
//! is read or written; negative increments walk the vector backwards).

use std::os::raw::{c_char, c_int};

use crate::{at, ch, set, Real};

#[inline]
fn vidx(k: usize, n: usize, inc: c_int) -> usize {
    if inc >= 0 {
        k * inc as usize
    } else {
        (n - 1 - k) * inc.unsigned_abs() as usize
    }
}

/// `C <- alpha op(A) op(B) + beta C`, `C` in `R^{m x n}`.
unsafe fn gemm<T: Real>(
    ta: *const c_char,
    tb: *const c_char,
    m: *const c_int,
    n: *const c_int,
    k: *const c_int,
    alpha: *const T,
    a: *const T,
    lda: *const c_int,
    b: *const T,
    ldb: *const c_int,
    beta: *const T,
    c: *mut T,
    ldc: *const c_int,
) {
    let (m, n, k) = (*m as usize, *n as usize, *k as usize);
    let (lda, ldb, ldc) = (*lda as usize, *ldb as usize, *ldc as usize);
    let (alpha, beta) = ((*alpha).get(), (*beta).get());
    let (ta, tb) = (ch(ta) != b'N', ch(tb) != b'N');
    let opa = |i, l| {
        if ta {
            at(a, lda, l, i)
        } else {
            at(a, lda, i, l)
        }
    };
    let opb = |l, j| {
        if tb {
            at(b, ldb, j, l)
        } else {
            at(b, ldb, l, j)
        }
    };
    for j in 0..n {
        for i in 0..m {
            let mut s = 0.0;
            if alpha != 0.0 {
                for l in 0..k {
                    s += opa(i, l) * opb(l, j);
                }
            }
            let old = if beta == 0.0 {
                0.0
            } else {
                beta * at(c, ldc, i, j)
            };
            set(c, ldc, i, j, alpha * s + old);
        }
    }
}

/// `y <- alpha op(A) x + beta y`, `A` in `R^{m x n}`.
unsafe fn gemv<T: Real>(
    trans: *const c_char,
    m: *const c_int,
    n: *const c_int,
    alpha: *const T,
    a: *const T,
    lda: *const c_int,
    x: *const T,
    incx: *const c_int,
    beta: *const T,
    y: *mut T,
    incy: *const c_int,
) {
    let (m, n, lda) = (*m as usize, *n as usize, *lda as usize);
    let (alpha, beta) = ((*alpha).get(), (*beta).get());
    let t = ch(trans) != b'N';
    let (lx, ly) = if t { (m, n) } else { (n, m) };
    let xs: Vec<f64> = (0..lx)
        .map(|k| (*x.add(vidx(k, lx, *incx))).get())
        .collect();
    for i in 0..ly {
        let s: f64 = if t {
            (0..m).map(|l| at(a, lda, l, i) * xs[l]).sum()
        } else {
            (0..n).map(|l| at(a, lda, i, l) * xs[l]).sum()
        };
        let p = y.add(vidx(i, ly, *incy));
        let old = if beta == 0.0 { 0.0 } else { beta * (*p).get() };
        *p = T::put(alpha * s + old);
    }
}

/// Entry `(i, j)` of a symmetric matrix stored in its `upper` (or lower) triangle.
#[inline]
unsafe fn sym<T: Real>(a: *const T, lda: usize, upper: bool, i: usize, j: usize) -> f64 {
    let (r, c) = if (i <= j) == upper { (i, j) } else { (j, i) };
    at(a, lda, r, c)
}

/// `y <- alpha A x + beta y`, `A` symmetric `n x n`.
unsafe fn symv<T: Real>(
    uplo: *const c_char,
    n: *const c_int,
    alpha: *const T,
    a: *const T,
    lda: *const c_int,
    x: *const T,
    incx: *const c_int,
    beta: *const T,
    y: *mut T,
    incy: *const c_int,
) {
    let (n, lda) = (*n as usize, *lda as usize);
    let (alpha, beta) = ((*alpha).get(), (*beta).get());
    let upper = ch(uplo) == b'U';
    let xs: Vec<f64> = (0..n).map(|k| (*x.add(vidx(k, n, *incx))).get()).collect();
    for i in 0..n {
        let s: f64 = (0..n).map(|l| sym(a, lda, upper, i, l) * xs[l]).sum();
        let p = y.add(vidx(i, n, *incy));
        let old = if beta == 0.0 { 0.0 } else { beta * (*p).get() };
        *p = T::put(alpha * s + old);
    }
}

/// `C <- alpha (A B^T + B A^T) + beta C` (`trans = N`, `A, B` in `R^{n x k}`; `trans = T`:
/// `A^T B + B^T A`), or `alpha A A^T + beta C` without `B` (`syrk`). Only the `uplo` triangle
/// of `C` is touched.
unsafe fn rank_k<T: Real>(
    uplo: *const c_char,
    trans: *const c_char,
    n: usize,
    k: usize,
    alpha: f64,
    a: *const T,
    lda: usize,
    b: Option<(*const T, usize)>,
    beta: f64,
    c: *mut T,
    ldc: usize,
) {
    let upper = ch(uplo) == b'U';
    let t = ch(trans) != b'N';
    // op(M)(i, l): row i of the n x k factor.
    let op = |m: *const T, ld: usize, i: usize, l: usize| {
        if t {
            at(m, ld, l, i)
        } else {
            at(m, ld, i, l)
        }
    };
    for j in 0..n {
        let rows = if upper { 0..j + 1 } else { j..n };
        for i in rows {
            let s: f64 = match b {
                None => (0..k).map(|l| op(a, lda, i, l) * op(a, lda, j, l)).sum(),
                Some((b, ldb)) => (0..k)
                    .map(|l| {
                        op(a, lda, i, l) * op(b, ldb, j, l) + op(b, ldb, i, l) * op(a, lda, j, l)
                    })
                    .sum(),
            };
            let old = if beta == 0.0 {
                0.0
            } else {
                beta * at(c, ldc, i, j)
            };
            set(c, ldc, i, j, alpha * s + old);
        }
    }
}

unsafe fn syrk<T: Real>(
    uplo: *const c_char,
    trans: *const c_char,
    n: *const c_int,
    k: *const c_int,
    alpha: *const T,
    a: *const T,
    lda: *const c_int,
    beta: *const T,
    c: *mut T,
    ldc: *const c_int,
) {
    rank_k(
        uplo,
        trans,
        *n as usize,
        *k as usize,
        (*alpha).get(),
        a,
        *lda as usize,
        None,
        (*beta).get(),
        c,
        *ldc as usize,
    );
}

unsafe fn syr2k<T: Real>(
    uplo: *const c_char,
    trans: *const c_char,
    n: *const c_int,
    k: *const c_int,
    alpha: *const T,
    a: *const T,
    lda: *const c_int,
    b: *const T,
    ldb: *const c_int,
    beta: *const T,
    c: *mut T,
    ldc: *const c_int,
) {
    rank_k(
        uplo,
        trans,
        *n as usize,
        *k as usize,
        (*alpha).get(),
        a,
        *lda as usize,
        Some((b, *ldb as usize)),
        (*beta).get(),
        c,
        *ldc as usize,
    );
}

macro_rules! export_blas {
    ($t:ty, $gemm:ident, $gemv:ident, $symv:ident, $syrk:ident, $syr2k:ident) => {
        /// BLAS `?gemm` (Fortran ABI).
        #[no_mangle]
        pub unsafe extern "C" fn $gemm(
            ta: *const c_char,
            tb: *const c_char,
            m: *const c_int,
            n: *const c_int,
            k: *const c_int,
            alpha: *const $t,
            a: *const $t,
            lda: *const c_int,
            b: *const $t,
            ldb: *const c_int,
            beta: *const $t,
            c: *mut $t,
            ldc: *const c_int,
        ) {
            gemm(ta, tb, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc)
        }
        /// BLAS `?gemv` (Fortran ABI).
        #[no_mangle]
        pub unsafe extern "C" fn $gemv(
            trans: *const c_char,
            m: *const c_int,
            n: *const c_int,
            alpha: *const $t,
            a: *const $t,
            lda: *const c_int,
            x: *const $t,
            incx: *const c_int,
            beta: *const $t,
            y: *mut $t,
            incy: *const c_int,
        ) {
            gemv(trans, m, n, alpha, a, lda, x, incx, beta, y, incy)
        }
        /// BLAS `?symv` (Fortran ABI).
        #[no_mangle]
        pub unsafe extern "C" fn $symv(
            uplo: *const c_char,
            n: *const c_int,
            alpha: *const $t,
            a: *const $t,
            lda: *const c_int,
            x: *const $t,
            incx: *const c_int,
            beta: *const $t,
            y: *mut $t,
            incy: *const c_int,
        ) {
            symv(uplo, n, alpha, a, lda, x, incx, beta, y, incy)
        }
        /// BLAS `?syrk` (Fortran ABI).
        #[no_mangle]
        pub unsafe extern "C" fn $syrk(
            uplo: *const c_char,
            trans: *const c_char,
            n: *const c_int,
            k: *const c_int,
            alpha: *const $t,
            a: *const $t,
            lda: *const c_int,
            beta: *const $t,
            c: *mut $t,
            ldc: *const c_int,
        ) {
            syrk(uplo, trans, n, k, alpha, a, lda, beta, c, ldc)
        }
        /// BLAS `?syr2k` (Fortran ABI).
        #[no_mangle]
        pub unsafe extern "C" fn $syr2k(
            uplo: *const c_char,
            trans: *const c_char,
            n: *const c_int,
            k: *const c_int,
            alpha: *const $t,
            a: *const $t,
            lda: *const c_int,
            b: *const $t,
            ldb: *const c_int,
            beta: *const $t,
            c: *mut $t,
            ldc: *const c_int,
        ) {
            syr2k(uplo, trans, n, k, alpha, a, lda, b, ldb, beta, c, ldc)
        }
    };
}

export_blas!(f64, dgemm_, dgemv_, dsymv_, dsyrk_, dsyr2k_);
export_blas!(f32, sgemm_, sgemv_, ssymv_, ssyrk_, ssyr2k_);
