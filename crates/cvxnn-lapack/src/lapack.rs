//! LAPACK drivers. Factorizations with a single well-defined result (Cholesky, LU with partial
//! pivoting) are written out so that `info` and `ipiv` match reference LAPACK exactly; the
//! symmetric eigenproblem and the SVD go to faer and are sorted the way LAPACK returns them
//! (eigenvalues ascending, singular values descending). None of them needs a workspace, so a
//! workspace query (`lwork = -1`) answers 1 and any `lwork` is accepted.

use std::os::raw::{c_char, c_int};

use faer::Mat;

use crate::{at, ch, set, Real};

/// Reads the `uplo` triangle of a symmetric `n x n` matrix into a full faer matrix.
unsafe fn load_sym<T: Real>(a: *const T, lda: usize, n: usize, upper: bool) -> Mat<f64> {
    Mat::from_fn(n, n, |i, j| {
        let (r, c) = if (i <= j) == upper { (i, j) } else { (j, i) };
        at(a, lda, r, c)
    })
}

/// Cholesky: `A = L L^T` (`uplo = L`, `L` written to the lower triangle) or `A = U^T U`
/// (`uplo = U`). `info = j > 0`: the leading minor of order `j` is not positive definite.
unsafe fn potrf<T: Real>(
    uplo: *const c_char,
    n: *const c_int,
    a: *mut T,
    lda: *const c_int,
    info: *mut c_int,
) {
    let (n, lda) = (*n as usize, *lda as usize);
    let upper = match ch(uplo) {
        b'U' => true,
        b'L' => false,
        _ => {
            *info = -1;
            return;
        }
    };
    *info = 0;
    // L(i, j) for i >= j lives at (i, j) (lower) or (j, i) (upper).
    let l = |i: usize, j: usize| {
        if upper {
            at(a, lda, j, i)
        } else {
            at(a, lda, i, j)
        }
    };
    let put = |i: usize, j: usize, v: f64| {
        if upper {
            set(a, lda, j, i, v)
        } else {
            set(a, lda, i, j, v)
        }
    };
    for j in 0..n {
        let d = l(j, j) - (0..j).map(|k| l(j, k) * l(j, k)).sum::<f64>();
        if d.is_nan() || d <= 0.0 {
            put(j, j, d);
            *info = (j + 1) as c_int;
            return;
        }
        let djj = d.sqrt();
        put(j, j, djj);
        for i in j + 1..n {
            let s = l(i, j) - (0..j).map(|k| l(i, k) * l(j, k)).sum::<f64>();
            put(i, j, s / djj);
        }
    }
}

/// Solves `A X = B` with the factor from `potrf`.
unsafe fn potrs<T: Real>(
    uplo: *const c_char,
    n: *const c_int,
    nrhs: *const c_int,
    a: *const T,
    lda: *const c_int,
    b: *mut T,
    ldb: *const c_int,
    info: *mut c_int,
) {
    let (n, nrhs, lda, ldb) = (*n as usize, *nrhs as usize, *lda as usize, *ldb as usize);
    let upper = match ch(uplo) {
        b'U' => true,
        b'L' => false,
        _ => {
            *info = -1;
            return;
        }
    };
    *info = 0;
    let l = |i: usize, j: usize| {
        if upper {
            at(a, lda, j, i)
        } else {
            at(a, lda, i, j)
        }
    };
    for r in 0..nrhs {
        let mut y: Vec<f64> = (0..n).map(|i| at(b, ldb, i, r)).collect();
        for i in 0..n {
            let s = y[i] - (0..i).map(|k| l(i, k) * y[k]).sum::<f64>();
            y[i] = s / l(i, i);
        }
        for i in (0..n).rev() {
            let s = y[i] - (i + 1..n).map(|k| l(k, i) * y[k]).sum::<f64>();
            y[i] = s / l(i, i);
        }
        for (i, v) in y.into_iter().enumerate() {
            set(b, ldb, i, r, v);
        }
    }
}

/// All eigenvalues (ascending, in `w`) and, for `jobz = V`, orthonormal eigenvectors (columns
/// of `z`) of a symmetric matrix given by its `uplo` triangle. Only `range = A` is supported
/// (the one Clarabel uses); others give `info = -2`.
unsafe fn syevr<T: Real>(
    jobz: *const c_char,
    range: *const c_char,
    uplo: *const c_char,
    n: *const c_int,
    a: *mut T,
    lda: *const c_int,
    m: *mut c_int,
    w: *mut T,
    z: *mut T,
    ldz: *const c_int,
    lwork: *const c_int,
    work: *mut T,
    iwork: *mut c_int,
    liwork: *const c_int,
    info: *mut c_int,
) {
    *info = 0;
    let vectors = match ch(jobz) {
        b'V' => true,
        b'N' => false,
        _ => {
            *info = -1;
            return;
        }
    };
    if ch(range) != b'A' {
        *info = -2;
        return;
    }
    if *lwork == -1 || *liwork == -1 {
        *work = T::put(1.0);
        *iwork = 1;
        return;
    }
    let n = *n as usize;
    *m = n as c_int;
    if n == 0 {
        return;
    }
    let full = load_sym(a, *lda as usize, n, ch(uplo) == b'U');
    let Ok(eig) = full.as_ref().self_adjoint_eigen(faer::Side::Lower) else {
        *info = 1;
        return;
    };
    let (s, u) = (eig.S().column_vector(), eig.U());
    let mut order: Vec<usize> = (0..n).collect();
    order.sort_by(|&p, &q| s[p].total_cmp(&s[q]));
    for (k, &p) in order.iter().enumerate() {
        *w.add(k) = T::put(s[p]);
        if vectors {
            for i in 0..n {
                set(z, *ldz as usize, i, k, u[(i, p)]);
            }
        }
    }
}

/// Thin SVD shared by `gesdd` and `gesvd`: `s` descending, `U` (`m x min`, if `want_u`) and
/// `V^T` (`min x n`, if `want_vt`). Returns `false` when faer does not converge.
unsafe fn svd<T: Real>(
    m: usize,
    n: usize,
    a: *const T,
    lda: usize,
    s: *mut T,
    u: Option<(*mut T, usize)>,
    vt: Option<(*mut T, usize)>,
) -> bool {
    let k = m.min(n);
    if k == 0 {
        return true;
    }
    let mat = Mat::from_fn(m, n, |i, j| at(a, lda, i, j));
    let Ok(dec) = mat.as_ref().thin_svd() else {
        return false;
    };
    let (sv, uu, vv) = (dec.S().column_vector(), dec.U(), dec.V());
    let mut order: Vec<usize> = (0..k).collect();
    order.sort_by(|&p, &q| sv[q].total_cmp(&sv[p]));
    for (r, &p) in order.iter().enumerate() {
        *s.add(r) = T::put(sv[p]);
        if let Some((u, ldu)) = u {
            for i in 0..m {
                set(u, ldu, i, r, uu[(i, p)]);
            }
        }
        if let Some((vt, ldvt)) = vt {
            for j in 0..n {
                set(vt, ldvt, r, j, vv[(j, p)]);
            }
        }
    }
    true
}

/// `jobz`: `N` (values only) or `S` (thin factors); `A` is accepted when `m = n` (then the
/// same). `O` is not supported (`info = -1`).
unsafe fn gesdd<T: Real>(
    jobz: *const c_char,
    m: *const c_int,
    n: *const c_int,
    a: *mut T,
    lda: *const c_int,
    s: *mut T,
    u: *mut T,
    ldu: *const c_int,
    vt: *mut T,
    ldvt: *const c_int,
    work: *mut T,
    lwork: *const c_int,
    info: *mut c_int,
) {
    *info = 0;
    let (mu, nu) = (*m as usize, *n as usize);
    let vectors = match ch(jobz) {
        b'N' => false,
        b'S' => true,
        b'A' if mu == nu => true,
        _ => {
            *info = -1;
            return;
        }
    };
    if *lwork == -1 {
        *work = T::put(1.0);
        return;
    }
    let (u, vt) = if vectors {
        (Some((u, *ldu as usize)), Some((vt, *ldvt as usize)))
    } else {
        (None, None)
    };
    if !svd(mu, nu, a, *lda as usize, s, u, vt) {
        *info = 1;
    }
}

/// `jobu`, `jobvt`: `N` or `S` (`A` when `m = n`).
unsafe fn gesvd<T: Real>(
    jobu: *const c_char,
    jobvt: *const c_char,
    m: *const c_int,
    n: *const c_int,
    a: *mut T,
    lda: *const c_int,
    s: *mut T,
    u: *mut T,
    ldu: *const c_int,
    vt: *mut T,
    ldvt: *const c_int,
    work: *mut T,
    lwork: *const c_int,
    info: *mut c_int,
) {
    *info = 0;
    let (mu, nu) = (*m as usize, *n as usize);
    let want = |c: u8, pos: c_int| match c {
        b'N' => Ok(false),
        b'S' => Ok(true),
        b'A' if mu == nu => Ok(true),
        _ => Err(pos),
    };
    let (wu, wv) = match (want(ch(jobu), -1), want(ch(jobvt), -2)) {
        (Ok(x), Ok(y)) => (x, y),
        (Err(p), _) | (_, Err(p)) => {
            *info = p;
            return;
        }
    };
    if *lwork == -1 {
        *work = T::put(1.0);
        return;
    }
    let u = wu.then(|| (u, *ldu as usize));
    let vt = wv.then(|| (vt, *ldvt as usize));
    if !svd(mu, nu, a, *lda as usize, s, u, vt) {
        *info = 1;
    }
}

/// `A X = B` by LU with partial pivoting (row interchanges in `ipiv`, 1-based, as LAPACK);
/// `info = i > 0`: `U(i, i)` is exactly zero and nothing is solved.
unsafe fn gesv<T: Real>(
    n: *const c_int,
    nrhs: *const c_int,
    a: *mut T,
    lda: *const c_int,
    ipiv: *mut c_int,
    b: *mut T,
    ldb: *const c_int,
    info: *mut c_int,
) {
    let (n, nrhs, lda, ldb) = (*n as usize, *nrhs as usize, *lda as usize, *ldb as usize);
    *info = 0;
    for j in 0..n {
        let mut p = j;
        for i in j + 1..n {
            if at(a, lda, i, j).abs() > at(a, lda, p, j).abs() {
                p = i;
            }
        }
        *ipiv.add(j) = (p + 1) as c_int;
        if p != j {
            for c in 0..n {
                let (x, y) = (at(a, lda, j, c), at(a, lda, p, c));
                set(a, lda, j, c, y);
                set(a, lda, p, c, x);
            }
        }
        let piv = at(a, lda, j, j);
        if piv == 0.0 {
            if *info == 0 {
                *info = (j + 1) as c_int;
            }
            continue;
        }
        for i in j + 1..n {
            let f = at(a, lda, i, j) / piv;
            set(a, lda, i, j, f);
            for c in j + 1..n {
                set(a, lda, i, c, at(a, lda, i, c) - f * at(a, lda, j, c));
            }
        }
    }
    if *info != 0 {
        return;
    }
    for r in 0..nrhs {
        let mut y: Vec<f64> = (0..n).map(|i| at(b, ldb, i, r)).collect();
        for j in 0..n {
            y.swap(j, *ipiv.add(j) as usize - 1);
        }
        for i in 0..n {
            y[i] -= (0..i).map(|k| at(a, lda, i, k) * y[k]).sum::<f64>();
        }
        for i in (0..n).rev() {
            let s = y[i] - (i + 1..n).map(|k| at(a, lda, i, k) * y[k]).sum::<f64>();
            y[i] = s / at(a, lda, i, i);
        }
        for (i, v) in y.into_iter().enumerate() {
            set(b, ldb, i, r, v);
        }
    }
}

macro_rules! export_lapack {
    ($t:ty, $potrf:ident, $potrs:ident, $syevr:ident, $gesdd:ident, $gesvd:ident, $gesv:ident) => {
        /// LAPACK `?potrf` (Fortran ABI).
        #[no_mangle]
        pub unsafe extern "C" fn $potrf(
            uplo: *const c_char,
            n: *const c_int,
            a: *mut $t,
            lda: *const c_int,
            info: *mut c_int,
        ) {
            potrf(uplo, n, a, lda, info)
        }
        /// LAPACK `?potrs` (Fortran ABI).
        #[no_mangle]
        pub unsafe extern "C" fn $potrs(
            uplo: *const c_char,
            n: *const c_int,
            nrhs: *const c_int,
            a: *const $t,
            lda: *const c_int,
            b: *mut $t,
            ldb: *const c_int,
            info: *mut c_int,
        ) {
            potrs(uplo, n, nrhs, a, lda, b, ldb, info)
        }
        /// LAPACK `?syevr` (Fortran ABI; `range = A` only).
        #[no_mangle]
        pub unsafe extern "C" fn $syevr(
            jobz: *const c_char,
            range: *const c_char,
            uplo: *const c_char,
            n: *const c_int,
            a: *mut $t,
            lda: *const c_int,
            _vl: *const $t,
            _vu: *const $t,
            _il: *const c_int,
            _iu: *const c_int,
            _abstol: *const $t,
            m: *mut c_int,
            w: *mut $t,
            z: *mut $t,
            ldz: *const c_int,
            _isuppz: *mut c_int,
            work: *mut $t,
            lwork: *const c_int,
            iwork: *mut c_int,
            liwork: *const c_int,
            info: *mut c_int,
        ) {
            syevr(
                jobz, range, uplo, n, a, lda, m, w, z, ldz, lwork, work, iwork, liwork, info,
            )
        }
        /// LAPACK `?gesdd` (Fortran ABI).
        #[no_mangle]
        pub unsafe extern "C" fn $gesdd(
            jobz: *const c_char,
            m: *const c_int,
            n: *const c_int,
            a: *mut $t,
            lda: *const c_int,
            s: *mut $t,
            u: *mut $t,
            ldu: *const c_int,
            vt: *mut $t,
            ldvt: *const c_int,
            work: *mut $t,
            lwork: *const c_int,
            _iwork: *mut c_int,
            info: *mut c_int,
        ) {
            gesdd(jobz, m, n, a, lda, s, u, ldu, vt, ldvt, work, lwork, info)
        }
        /// LAPACK `?gesvd` (Fortran ABI).
        #[no_mangle]
        pub unsafe extern "C" fn $gesvd(
            jobu: *const c_char,
            jobvt: *const c_char,
            m: *const c_int,
            n: *const c_int,
            a: *mut $t,
            lda: *const c_int,
            s: *mut $t,
            u: *mut $t,
            ldu: *const c_int,
            vt: *mut $t,
            ldvt: *const c_int,
            work: *mut $t,
            lwork: *const c_int,
            info: *mut c_int,
        ) {
            gesvd(
                jobu, jobvt, m, n, a, lda, s, u, ldu, vt, ldvt, work, lwork, info,
            )
        }
        /// LAPACK `?gesv` (Fortran ABI).
        #[no_mangle]
        pub unsafe extern "C" fn $gesv(
            n: *const c_int,
            nrhs: *const c_int,
            a: *mut $t,
            lda: *const c_int,
            ipiv: *mut c_int,
            b: *mut $t,
            ldb: *const c_int,
            info: *mut c_int,
        ) {
            gesv(n, nrhs, a, lda, ipiv, b, ldb, info)
        }
    };
}

export_lapack!(f64, dpotrf_, dpotrs_, dsyevr_, dgesdd_, dgesvd_, dgesv_);
export_lapack!(f32, spotrf_, spotrs_, ssyevr_, sgesdd_, sgesvd_, sgesv_);
