//! Every routine against a naive reference on seeded random data, through the exported
//! symbols (as Clarabel calls them).

use std::os::raw::{c_char, c_int};

use crate::blas::*;
use crate::lapack::*;

/// Seeded pseudo-random values in [-1, 1) (splitmix64).
fn rnd(seed: u64, len: usize) -> Vec<f64> {
    let mut s = seed;
    (0..len)
        .map(|_| {
            s = s.wrapping_add(0x9E37_79B9_7F4A_7C15);
            let mut z = s;
            z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
            z ^= z >> 31;
            (z >> 11) as f64 / (1u64 << 52) as f64 - 1.0
        })
        .collect()
}

fn c(x: u8) -> c_char {
    x as c_char
}

/// Column-major `m x n` with leading dimension `ld` -> rows.
fn get(a: &[f64], ld: usize, i: usize, j: usize) -> f64 {
    a[i + j * ld]
}

fn naive_mul(a: &[Vec<f64>], b: &[Vec<f64>]) -> Vec<Vec<f64>> {
    let (m, k, n) = (a.len(), b.len(), b[0].len());
    (0..m)
        .map(|i| {
            (0..n)
                .map(|j| (0..k).map(|l| a[i][l] * b[l][j]).sum())
                .collect()
        })
        .collect()
}

fn dense(a: &[f64], ld: usize, m: usize, n: usize) -> Vec<Vec<f64>> {
    (0..m)
        .map(|i| (0..n).map(|j| get(a, ld, i, j)).collect())
        .collect()
}

fn transpose(a: &[Vec<f64>]) -> Vec<Vec<f64>> {
    (0..a[0].len())
        .map(|j| a.iter().map(|r| r[j]).collect())
        .collect()
}

#[test]
fn gemm_all_transposes_and_beta_zero_ignores_nan() {
    let (m, n, k) = (4usize, 3usize, 5usize);
    for (ta, tb) in [(b'N', b'N'), (b'T', b'N'), (b'N', b'T'), (b'T', b'T')] {
        let (ar, ac) = if ta == b'N' { (m, k) } else { (k, m) };
        let (br, bc) = if tb == b'N' { (k, n) } else { (n, k) };
        let (lda, ldb, ldc) = (ar + 1, br + 2, m + 1);
        let a = rnd(1, lda * ac);
        let b = rnd(2, ldb * bc);
        let c0 = rnd(3, ldc * n);
        let mut opa = dense(&a, lda, ar, ac);
        let mut opb = dense(&b, ldb, br, bc);
        if ta == b'T' {
            opa = transpose(&opa);
        }
        if tb == b'T' {
            opb = transpose(&opb);
        }
        let want = naive_mul(&opa, &opb);
        for beta in [0.5, 0.0] {
            let mut cm = c0.clone();
            if beta == 0.0 {
                cm.iter_mut().for_each(|v| *v = f64::NAN);
            }
            let (alpha, mi, ni, ki) = (1.5, m as c_int, n as c_int, k as c_int);
            let (la, lb, lc) = (lda as c_int, ldb as c_int, ldc as c_int);
            unsafe {
                dgemm_(
                    &c(ta),
                    &c(tb),
                    &mi,
                    &ni,
                    &ki,
                    &alpha,
                    a.as_ptr(),
                    &la,
                    b.as_ptr(),
                    &lb,
                    &beta,
                    cm.as_mut_ptr(),
                    &lc,
                );
            }
            for i in 0..m {
                for j in 0..n {
                    let old = if beta == 0.0 {
                        0.0
                    } else {
                        beta * get(&c0, ldc, i, j)
                    };
                    let w = 1.5 * want[i][j] + old;
                    assert!((get(&cm, ldc, i, j) - w).abs() < 1e-13, "{ta} {tb} {beta}");
                }
            }
        }
    }
}

/// Whether `(i, j)` lies in the stored triangle (diagonal included).
fn in_triangle(uplo: u8, i: usize, j: usize) -> bool {
    if uplo == b'U' {
        i <= j
    } else {
        i >= j
    }
}

#[test]
fn gemv_and_symv_with_strides() {
    let (m, n, lda) = (4usize, 3usize, 5usize);
    let a = rnd(4, lda * n);
    let ad = dense(&a, lda, m, n);
    for t in [b'N', b'T'] {
        let (lx, ly) = if t == b'N' { (n, m) } else { (m, n) };
        let x = rnd(5, 2 * lx);
        let y0 = rnd(6, ly);
        let mut y = y0.clone();
        let (mi, ni, la, two, neg) = (m as c_int, n as c_int, lda as c_int, 2, -1);
        unsafe {
            dgemv_(
                &c(t),
                &mi,
                &ni,
                &2.0,
                a.as_ptr(),
                &la,
                x.as_ptr(),
                &two,
                &0.5,
                y.as_mut_ptr(),
                &neg,
            );
        }
        let op = if t == b'N' {
            ad.clone()
        } else {
            transpose(&ad)
        };
        for i in 0..ly {
            let s: f64 = (0..lx).map(|l| op[i][l] * x[2 * l]).sum();
            let slot = ly - 1 - i; // incy = -1 walks backwards
            assert!((y[slot] - (2.0 * s + 0.5 * y0[slot])).abs() < 1e-13);
        }
    }
    // symv reads only its triangle: garbage in the other one must not matter.
    let n = 4usize;
    let full = rnd(7, n * n);
    let sym = |i: usize, j: usize| full[i.min(j) + i.max(j) * n];
    for uplo in [b'U', b'L'] {
        let a: Vec<f64> = (0..n * n)
            .map(|p| {
                let (i, j) = (p % n, p / n);
                if in_triangle(uplo, i, j) {
                    sym(i, j)
                } else {
                    99.0
                }
            })
            .collect();
        let x = rnd(8, n);
        let mut y = vec![f64::NAN; n];
        let (ni, one) = (n as c_int, 1);
        unsafe {
            dsymv_(
                &c(uplo),
                &ni,
                &1.0,
                a.as_ptr(),
                &ni,
                x.as_ptr(),
                &one,
                &0.0,
                y.as_mut_ptr(),
                &one,
            );
        }
        for i in 0..n {
            let s: f64 = (0..n).map(|l| sym(i, l) * x[l]).sum();
            assert!((y[i] - s).abs() < 1e-13);
        }
    }
}

#[test]
fn syrk_and_syr2k_touch_only_their_triangle() {
    let (n, k) = (4usize, 3usize);
    for uplo in [b'U', b'L'] {
        for t in [b'N', b'T'] {
            let (r, cc) = if t == b'N' { (n, k) } else { (k, n) };
            let a = rnd(9, r * cc);
            let b = rnd(10, r * cc);
            let mut opa = dense(&a, r, r, cc);
            let mut opb = dense(&b, r, r, cc);
            if t == b'T' {
                opa = transpose(&opa);
                opb = transpose(&opb);
            }
            let aat = naive_mul(&opa, &transpose(&opa));
            let abt = naive_mul(&opa, &transpose(&opb));
            let c0 = rnd(11, n * n);
            let (mut c1, mut c2) = (c0.clone(), c0.clone());
            let (ni, ki, lda) = (n as c_int, k as c_int, r as c_int);
            unsafe {
                dsyrk_(
                    &c(uplo),
                    &c(t),
                    &ni,
                    &ki,
                    &2.0,
                    a.as_ptr(),
                    &lda,
                    &0.5,
                    c1.as_mut_ptr(),
                    &ni,
                );
                dsyr2k_(
                    &c(uplo),
                    &c(t),
                    &ni,
                    &ki,
                    &2.0,
                    a.as_ptr(),
                    &lda,
                    b.as_ptr(),
                    &lda,
                    &0.5,
                    c2.as_mut_ptr(),
                    &ni,
                );
            }
            for i in 0..n {
                for j in 0..n {
                    let p = i + j * n;
                    if in_triangle(uplo, i, j) {
                        assert!((c1[p] - (2.0 * aat[i][j] + 0.5 * c0[p])).abs() < 1e-13);
                        let w = 2.0 * (abt[i][j] + abt[j][i]) + 0.5 * c0[p];
                        assert!((c2[p] - w).abs() < 1e-13);
                    } else {
                        assert_eq!((c1[p], c2[p]), (c0[p], c0[p]));
                    }
                }
            }
        }
    }
}

/// A seeded symmetric positive definite `n x n` matrix (column-major, full).
fn spd(n: usize, seed: u64) -> Vec<f64> {
    let g = rnd(seed, n * n);
    let gd = dense(&g, n, n, n);
    let p = naive_mul(&gd, &transpose(&gd));
    (0..n * n)
        .map(|q| p[q % n][q / n] + if q % n == q / n { 0.5 } else { 0.0 })
        .collect()
}

#[test]
fn cholesky_factor_and_solve_both_triangles() {
    let n = 5usize;
    let a = spd(n, 12);
    let b = rnd(13, n * 2);
    for uplo in [b'U', b'L'] {
        let mut f = a.clone();
        let mut x = b.clone();
        let (ni, two) = (n as c_int, 2);
        let mut info = -7;
        unsafe { dpotrf_(&c(uplo), &ni, f.as_mut_ptr(), &ni, &mut info) };
        assert_eq!(info, 0);
        unsafe {
            dpotrs_(
                &c(uplo),
                &ni,
                &two,
                f.as_ptr(),
                &ni,
                x.as_mut_ptr(),
                &ni,
                &mut info,
            )
        };
        assert_eq!(info, 0);
        for r in 0..2 {
            for i in 0..n {
                let s: f64 = (0..n).map(|l| a[i + l * n] * x[l + r * n]).sum();
                assert!((s - b[i + r * n]).abs() < 1e-10, "{uplo}");
            }
        }
    }
    // Indefinite: minor of order 2 fails, info = 2.
    let mut bad = vec![1.0, 2.0, 2.0, 1.0];
    let (two, mut info) = (2, 0);
    unsafe { dpotrf_(&c(b'L'), &two, bad.as_mut_ptr(), &two, &mut info) };
    assert_eq!(info, 2);
}

#[test]
fn syevr_query_then_ascending_orthonormal_eigenpairs() {
    let n = 6usize;
    let g = rnd(14, n * n);
    let a0: Vec<f64> = (0..n * n).map(|p| g[p] + g[(p % n) * n + p / n]).collect();
    let ni = n as c_int;
    let (mut m, mut info) = (0, 0);
    let mut w = vec![0.0; n];
    let mut z = vec![0.0; n * n];
    let mut isuppz = vec![0; 2 * n];
    let (mut work, mut iwork) = (vec![0.0; 1], vec![0; 1]);
    let mut a = a0.clone();
    let q = -1;
    let call = |a: &mut [f64],
                w: &mut [f64],
                z: &mut [f64],
                work: &mut [f64],
                iwork: &mut [c_int],
                lw: c_int,
                m: &mut c_int,
                info: &mut c_int,
                isuppz: &mut [c_int]| unsafe {
        dsyevr_(
            &c(b'V'),
            &c(b'A'),
            &c(b'U'),
            &ni,
            a.as_mut_ptr(),
            &ni,
            &0.0,
            &0.0,
            &0,
            &0,
            &-1.0,
            m,
            w.as_mut_ptr(),
            z.as_mut_ptr(),
            &ni,
            isuppz.as_mut_ptr(),
            work.as_mut_ptr(),
            &lw,
            iwork.as_mut_ptr(),
            &lw,
            info,
        )
    };
    call(
        &mut a,
        &mut w,
        &mut z,
        &mut work,
        &mut iwork,
        q,
        &mut m,
        &mut info,
        &mut isuppz,
    );
    assert_eq!((info, work[0], iwork[0]), (0, 1.0, 1));
    call(
        &mut a,
        &mut w,
        &mut z,
        &mut work,
        &mut iwork,
        1,
        &mut m,
        &mut info,
        &mut isuppz,
    );
    assert_eq!((info, m), (0, ni));
    assert!(w.windows(2).all(|p| p[0] <= p[1]));
    for k in 0..n {
        for i in 0..n {
            let az: f64 = (0..n).map(|l| a0[i + l * n] * z[l + k * n]).sum();
            assert!((az - w[k] * z[i + k * n]).abs() < 1e-12);
        }
        for l in 0..n {
            let dot: f64 = (0..n).map(|i| z[i + k * n] * z[i + l * n]).sum();
            assert!((dot - if k == l { 1.0 } else { 0.0 }).abs() < 1e-12);
        }
    }
}

#[test]
fn svd_drivers_reconstruct_with_descending_values() {
    for (m, n) in [(5usize, 3usize), (3, 5), (4, 4)] {
        let k = m.min(n);
        let a0 = rnd(15 + m as u64, m * n);
        for dd in [true, false] {
            let mut a = a0.clone();
            let (mut s, mut u, mut vt) = (vec![0.0; k], vec![0.0; m * k], vec![0.0; k * n]);
            let (mi, ni, ki) = (m as c_int, n as c_int, k as c_int);
            let mut work = vec![0.0; 1];
            let mut iwork = vec![0; 8 * k];
            let mut info = 0;
            for lw in [-1, 1] {
                unsafe {
                    if dd {
                        dgesdd_(
                            &c(b'S'),
                            &mi,
                            &ni,
                            a.as_mut_ptr(),
                            &mi,
                            s.as_mut_ptr(),
                            u.as_mut_ptr(),
                            &mi,
                            vt.as_mut_ptr(),
                            &ki,
                            work.as_mut_ptr(),
                            &lw,
                            iwork.as_mut_ptr(),
                            &mut info,
                        );
                    } else {
                        dgesvd_(
                            &c(b'S'),
                            &c(b'S'),
                            &mi,
                            &ni,
                            a.as_mut_ptr(),
                            &mi,
                            s.as_mut_ptr(),
                            u.as_mut_ptr(),
                            &mi,
                            vt.as_mut_ptr(),
                            &ki,
                            work.as_mut_ptr(),
                            &lw,
                            &mut info,
                        );
                    }
                }
                assert_eq!(info, 0);
            }
            assert!(s.windows(2).all(|p| p[0] >= p[1]));
            for i in 0..m {
                for j in 0..n {
                    let r: f64 = (0..k).map(|l| u[i + l * m] * s[l] * vt[l + j * k]).sum();
                    assert!((r - a0[i + j * m]).abs() < 1e-12);
                }
            }
        }
    }
}

#[test]
fn gesv_solves_and_flags_singular() {
    let n = 5usize;
    let a0 = rnd(20, n * n);
    let b0 = rnd(21, n);
    let (mut a, mut b) = (a0.clone(), b0.clone());
    let mut ipiv = vec![0; n];
    let (ni, one, mut info) = (n as c_int, 1, 0);
    unsafe {
        dgesv_(
            &ni,
            &one,
            a.as_mut_ptr(),
            &ni,
            ipiv.as_mut_ptr(),
            b.as_mut_ptr(),
            &ni,
            &mut info,
        )
    };
    assert_eq!(info, 0);
    assert!(ipiv
        .iter()
        .enumerate()
        .all(|(j, &p)| p as usize > j && p as usize <= n));
    for i in 0..n {
        let s: f64 = (0..n).map(|l| a0[i + l * n] * b[l]).sum();
        assert!((s - b0[i]).abs() < 1e-12);
    }
    let mut z = vec![1.0, 2.0, 2.0, 4.0];
    let (two, mut rhs) = (2, vec![1.0, 1.0]);
    unsafe {
        dgesv_(
            &two,
            &one,
            z.as_mut_ptr(),
            &two,
            ipiv.as_mut_ptr(),
            rhs.as_mut_ptr(),
            &two,
            &mut info,
        )
    };
    assert_eq!(info, 2);
}

#[test]
fn single_precision_matches_double() {
    let n = 4usize;
    let a = spd(n, 22);
    let mut f32a: Vec<f32> = a.iter().map(|&v| v as f32).collect();
    let (ni, mut info) = (n as c_int, 0);
    unsafe { spotrf_(&c(b'L'), &ni, f32a.as_mut_ptr(), &ni, &mut info) };
    let mut f64a = a.clone();
    unsafe { dpotrf_(&c(b'L'), &ni, f64a.as_mut_ptr(), &ni, &mut info) };
    for (p, q) in f32a.iter().zip(&f64a) {
        assert!((f64::from(*p) - q).abs() < 1e-5);
    }
}
