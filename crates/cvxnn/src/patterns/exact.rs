//! Exact enumeration of every activation pattern of a data matrix (DESIGN section 1).
//!
//! The patterns of `X` are the sign vectors `1[X g >= 0]` of the open cells of the central
//! hyperplane arrangement `{u : x_j^T u = 0}`. They are found by the vertex method:
//!
//! 1. **Reduction.** A thin SVD `X = U S V^T` gives the numerical rank `r` (see
//!    [`numerical_rank`]) and the coordinates `Z = X V_r` (n x r) of the rows in the row space.
//!    Rows with `||z_j||` at or below the rank tolerance are *zero rows*: `x_j^T g = 0` for every
//!    `g`, so they are active in every pattern. The other rows are normalized to unit length and
//!    collapsed by direction: rows that are positive multiples of each other always share a sign
//!    and rows that are negative multiples always have opposite signs, so each line through the
//!    origin keeps one representative and the patterns are expanded back to all rows at the end.
//!    Two unit directions `a`, `b` are the same line when `min(||a - b||, ||a + b||) <=`
//!    [`DIRECTION_TOL`].
//! 2. **Vertices.** The `m` representatives span `R^r`, so every open cell is a pointed cone whose
//!    extreme rays each lie on `r - 1` linearly independent hyperplanes. For every `(r-1)`-subset
//!    `S` of representatives, a small Householder QR of the `r x (r-1)` matrix `W_S^T` gives the
//!    unit ray `u_S` spanning their common null space and `||R_S^{-1}||`, which bounds how badly
//!    the ray is determined. Rows with `|w_j^T u_S| > tol_S` take the sign of `w_j^T u_S`; the rows
//!    *on the ray* (`S`, and any other row with `|w_j^T u_S| <= tol_S`: a degenerate vertex) take
//!    every sign vector realized by the open cells of their own arrangement inside `u_S`'s
//!    orthogonal complement, found by the same procedure one dimension lower. When only `S` is on
//!    the ray (general position) that is all `2^(r-1)` sign vectors, with no recursion.
//! 3. **Symmetry.** The arrangement is central, so the cells adjacent to `-u_S` are the
//!    complements of those adjacent to `u_S`: only `+u_S` is visited and every new pattern is
//!    stored together with its complement. [`PatternSet`] drops duplicates.
//!
//! **Tolerances.** `X` is first multiplied by a power of two (exact) so that its largest entry
//! is in `[0.5, 1)`. All sign decisions are made on unit rows `w_j` and unit rays `u`, so
//! `w_j^T u` is a cosine and every tolerance is relative to the norm of the row of `Z` concerned:
//! a row is on the ray `u_S` when `|w_j^T u_S| <= tol_S` with
//! `tol_S = RAY_TOL + 8 r eps ||R_S^{-1}||_F` (see [`RAY_TOL`]); the second term bounds the
//! rounding error of `w_j^T u_S` for a row that lies exactly in the span of `S`. Subsets whose
//! rounding term exceeds [`MAX_RAY_ERROR`] are numerically dependent and skipped (their cells are
//! reached through better-conditioned rays).
//!
//! Cost: `C(m, r-1)` subsets, each an `O(r^3)` QR plus an `O(m r)` product, plus `2^(r-1)` hash
//! look-ups: `O(m^(r-1) (m r + 2^(r-1)))` in general position.

use std::collections::HashSet;

use faer::diag::Diag;
use faer::dyn_stack::{MemBuffer, MemStack};
use faer::linalg::matmul::matmul;
use faer::linalg::svd::{svd, svd_scratch, ComputeSvdVectors};
use faer::{Accum, Mat, MatRef, Par};

use crate::error::{CvxnnError, Result};
use crate::linalg::Matrix;
use crate::patterns::{Masks, PatternSet};

/// Two unit row directions `a`, `b` define the same hyperplane when
/// `min(||a - b||, ||a + b||) <= DIRECTION_TOL` (about the sine of the angle between them).
pub const DIRECTION_TOL: f64 = 1e-9;

/// Base tolerance on the cosine `|w_j^T u|` below which a unit row `w_j` counts as lying on the
/// unit ray `u` (a degenerate vertex). The rounding error of the ray is added to it.
pub const RAY_TOL: f64 = 1e-10;

/// A subset of rows whose ray has an estimated rounding error `8 r eps ||R_S^{-1}||_F` above this
/// is treated as linearly dependent and skipped.
pub const MAX_RAY_ERROR: f64 = 1e-7;

/// Above this many `(non-zero rows)^2 * r` operations, direction deduplication stops as soon as
/// the pattern limit is known to be exceeded instead of counting every distinct direction.
const CHEAP_DEDUP_WORK: f64 = 1e8;

/// Upper bound `2 * sum_{k=0}^{r-1} C(n-1, k)` on the number of activation patterns of `n` rows
/// of rank `r`, exact when the rows are in general position (Cover, 1965).
///
/// Computed in `f64`; saturates to `f64::INFINITY` when it does not fit. For `n = 0` or `r = 0`
/// the whole space is one cell and the result is `1`.
pub fn predicted_count(n: usize, r: usize) -> f64 {
    if n == 0 || r == 0 {
        return 1.0;
    }
    let top = n - 1;
    let kmax = (r - 1).min(top);
    let mut term = 1.0f64;
    let mut sum = 1.0f64;
    for k in 1..=kmax {
        term = term * ((top - k + 1) as f64) / (k as f64);
        sum += term;
        if !sum.is_finite() {
            return f64::INFINITY;
        }
    }
    2.0 * sum
}

/// Numerical rank of `x`: the number of singular values `s_i > s_max * max(n, d) * f64::EPSILON`
/// (the tolerance of LAPACK and `numpy.linalg.matrix_rank`).
///
/// An empty or all-zero matrix has rank 0. A matrix with non-finite entries has no meaningful
/// rank; `min(n, d)` is returned for it (and [`enumerate`] rejects it).
pub fn numerical_rank(x: &Matrix) -> usize {
    let (n, d) = (x.nrows(), x.ncols());
    if n == 0 || d == 0 {
        return 0;
    }
    if x.as_slice().iter().any(|v| !v.is_finite()) {
        return n.min(d);
    }
    match svd_seq(scaled(x.as_ref()).as_ref(), false) {
        Ok((s, _)) => rank_from_singular_values(&s, n, d).0,
        Err(_) => n.min(d),
    }
}

/// Every distinct activation pattern `1[X g >= 0]` of the open cells of `x`'s arrangement, one
/// per pattern of the returned [`Masks`] (over `x.nrows()` samples).
///
/// Zero rows are active in every pattern. Before any enumeration work, the predicted count
/// [`predicted_count`]`(m, r)` (`m` distinct non-zero row directions, `r` the numerical rank) is
/// compared with `max_patterns`; when it is larger the call fails with
/// [`CvxnnError::InvalidArgument`] naming `max-patterns`.
///
/// Errors: an empty `x`, non-finite entries, the pattern limit, or an SVD that does not converge.
pub fn enumerate(x: &Matrix, max_patterns: usize) -> Result<Masks> {
    Ok(enumerate_impl(x, max_patterns, false)?.0)
}

/// Enumeration with, when `witness` is set, one direction `g` in `R^d` per pattern realizing it.
fn enumerate_impl(
    x: &Matrix,
    max_patterns: usize,
    witness: bool,
) -> Result<(Masks, Vec<Vec<f64>>)> {
    let (n, d) = (x.nrows(), x.ncols());
    if n == 0 || d == 0 {
        return Err(CvxnnError::arg(
            "x",
            format!("cannot enumerate activation patterns of an empty {n} x {d} data matrix"),
        ));
    }
    if let Some(pos) = x.as_slice().iter().position(|v| !v.is_finite()) {
        return Err(CvxnnError::arg(
            "x",
            format!(
                "entry ({}, {}) is not finite; activation patterns need finite data",
                pos % n,
                pos / n
            ),
        ));
    }
    let red = reduce(x.as_ref(), Some(max_patterns))?;
    if red.r == 0 || red.m == 0 {
        // Every row is zero: one pattern, all active.
        if max_patterns < 1 {
            return Err(refusal(1.0, 0, 0, max_patterns, None));
        }
        let mut masks = Masks::new(n);
        masks.push_bools(&vec![true; n]);
        let wit = if witness {
            vec![vec![0.0; d]]
        } else {
            Vec::new()
        };
        return Ok((masks, wit));
    }
    let cells = cells(&red.dirs, red.m, red.r, witness)?;
    let reps = cells.set.into_masks();
    let mut out = Masks::new(n);
    let mut row = vec![false; n];
    for i in 0..reps.len() {
        for (b, rep) in row.iter_mut().zip(&red.rep_of) {
            *b = match *rep {
                Rep::Zero => true,
                Rep::Dir { k, flip } => reps.get(k, i) ^ flip,
            };
        }
        out.push_bools(&row);
    }
    let mut wits = Vec::new();
    if witness {
        for w in cells.wit.chunks_exact(red.r) {
            let mut g = vec![0.0; d];
            for (t, &wt) in w.iter().enumerate() {
                for (gi, gv) in g.iter_mut().enumerate() {
                    *gv += red.basis[(gi, t)] * wt;
                }
            }
            wits.push(g);
        }
    }
    Ok((out, wits))
}

/// The `max-patterns` refusal.
fn refusal(
    count: f64,
    r: usize,
    m: usize,
    max: usize,
    partial: Option<(usize, f64)>,
) -> CvxnnError {
    let fmt = |c: f64| {
        if c < 1e15 {
            format!("{c:.0}")
        } else {
            format!("{c:.3e}")
        }
    };
    let what = match partial {
        None => format!(
            "exact enumeration predicts {} activation patterns (rank {r}, {m} distinct row directions)",
            fmt(count)
        ),
        Some((nonzero, upper)) => format!(
            "exact enumeration predicts at least {} activation patterns (rank {r}, at least {m} \
             distinct row directions among {nonzero} non-zero rows; at most {})",
            fmt(count),
            fmt(upper)
        ),
    };
    CvxnnError::arg(
        "max-patterns",
        format!(
            "{what}, more than the limit of {max}; sample patterns instead with `--patterns N`, \
             or raise `--max-patterns`"
        ),
    )
}

/// How an input row maps to the representatives.
#[derive(Clone, Copy, Debug)]
enum Rep {
    /// Numerically zero: active in every pattern.
    Zero,
    /// Same line as representative `k`; `flip` when it points the opposite way.
    Dir { k: usize, flip: bool },
}

/// A matrix reduced to its row space, with rows collapsed to distinct unit directions.
struct Reduced {
    /// Numerical rank.
    r: usize,
    /// `V_r` (d x r), orthonormal columns: the coordinates of the row space.
    basis: Mat<f64>,
    /// Number of distinct directions.
    m: usize,
    /// The directions, `m x r` row-major, unit norm.
    dirs: Vec<f64>,
    /// For each input row, its representative.
    rep_of: Vec<Rep>,
}

/// A copy of `x` multiplied by the power of two that brings its largest entry into `[0.5, 1)`
/// (a zero matrix is copied unchanged). Activation patterns and ranks do not change.
fn scaled(x: MatRef<'_, f64>) -> Mat<f64> {
    let (n, d) = x.shape();
    let mut big = 0.0f64;
    for j in 0..d {
        for i in 0..n {
            big = big.max(x[(i, j)].abs());
        }
    }
    if big == 0.0 || !big.is_finite() {
        return x.to_owned();
    }
    let e = big.log2().floor() as i32 + 1;
    // Two factors so that neither overflows for subnormal or huge entries.
    let h = -e / 2;
    let (s1, s2) = (2f64.powi(h), 2f64.powi(-e - h));
    Mat::from_fn(n, d, |i, j| x[(i, j)] * s1 * s2)
}

/// Singular values (non-increasing) and, when asked, the thin `V`, computed sequentially so that
/// results do not depend on the thread count.
fn svd_seq(x: MatRef<'_, f64>, want_v: bool) -> Result<(Vec<f64>, Mat<f64>)> {
    let (n, d) = x.shape();
    let size = n.min(d);
    let mut s = Diag::<f64>::zeros(size);
    let mut v = Mat::<f64>::zeros(d, if want_v { size } else { 0 });
    let cv = if want_v {
        ComputeSvdVectors::Thin
    } else {
        ComputeSvdVectors::No
    };
    let mut mem = MemBuffer::new(svd_scratch::<f64>(
        n,
        d,
        ComputeSvdVectors::No,
        cv,
        Par::Seq,
        Default::default(),
    ));
    svd(
        x,
        s.as_mut(),
        None,
        if want_v { Some(v.as_mut()) } else { None },
        Par::Seq,
        MemStack::new(&mut mem),
        Default::default(),
    )
    .map_err(|_| CvxnnError::arg("x", "the singular value decomposition did not converge"))?;
    Ok((s.column_vector().iter().copied().collect(), v))
}

/// `(rank, tolerance)` from non-increasing singular values of an `n x d` matrix.
fn rank_from_singular_values(s: &[f64], n: usize, d: usize) -> (usize, f64) {
    let smax = s.first().copied().unwrap_or(0.0);
    let tol = smax * (n.max(d) as f64) * f64::EPSILON;
    (
        s.iter().take_while(|&&si| si > tol && si > 0.0).count(),
        tol,
    )
}

/// Projects `x` on its row space and collapses its rows to distinct directions. With `limit`,
/// refuses as soon as the predicted pattern count exceeds it.
fn reduce(x: MatRef<'_, f64>, limit: Option<usize>) -> Result<Reduced> {
    let (n, d) = x.shape();
    // Power-of-two scaling: exact, and keeps the SVD clear of overflow and underflow.
    let x = scaled(x);
    let x = x.as_ref();
    let (s, v) = svd_seq(x, true)?;
    let (r, tol) = rank_from_singular_values(&s, n, d);
    if r == 0 {
        return Ok(Reduced {
            r: 0,
            basis: Mat::zeros(d, 0),
            m: 0,
            dirs: Vec::new(),
            rep_of: vec![Rep::Zero; n],
        });
    }
    let basis = v.as_ref().subcols(0, r).to_owned();
    let mut z = Mat::<f64>::zeros(n, r);
    matmul(z.as_mut(), Accum::Replace, x, basis.as_ref(), 1.0, Par::Seq);

    let norms: Vec<f64> = (0..n)
        .map(|j| robust_norm((0..r).map(|k| z[(j, k)])))
        .collect();
    let nonzero = norms.iter().filter(|&&nj| nj > tol).count();
    let early_exit = (nonzero as f64) * (nonzero as f64) * (r as f64) > CHEAP_DEDUP_WORK;

    let mut dirs: Vec<f64> = Vec::new();
    let mut m = 0usize;
    let mut rep_of = Vec::with_capacity(n);
    let mut w = vec![0.0; r];
    let tol2 = DIRECTION_TOL * DIRECTION_TOL;
    for (j, &nj) in norms.iter().enumerate() {
        if nj <= tol {
            rep_of.push(Rep::Zero);
            continue;
        }
        for (k, wk) in w.iter_mut().enumerate() {
            *wk = z[(j, k)] / nj;
        }
        let mut found = None;
        for (q, rep) in dirs.chunks_exact(r).enumerate() {
            let dot: f64 = w.iter().zip(rep).map(|(a, b)| a * b).sum();
            if dot.abs() < 0.5 {
                continue;
            }
            let sg = if dot >= 0.0 { 1.0 } else { -1.0 };
            let dist2: f64 = w
                .iter()
                .zip(rep)
                .map(|(a, b)| (a - sg * b) * (a - sg * b))
                .sum();
            if dist2 <= tol2 {
                found = Some(Rep::Dir {
                    k: q,
                    flip: dot < 0.0,
                });
                break;
            }
        }
        match found {
            Some(rep) => rep_of.push(rep),
            None => {
                dirs.extend_from_slice(&w);
                rep_of.push(Rep::Dir { k: m, flip: false });
                m += 1;
                if let Some(max) = limit {
                    let count = predicted_count(m, r);
                    if early_exit && count > max as f64 {
                        return Err(refusal(
                            count,
                            r,
                            m,
                            max,
                            Some((nonzero, predicted_count(nonzero, r))),
                        ));
                    }
                }
            }
        }
    }
    if let Some(max) = limit {
        let count = predicted_count(m, r);
        if count > max as f64 {
            return Err(refusal(count, r, m, max, None));
        }
    }
    Ok(Reduced {
        r,
        basis,
        m,
        dirs,
        rep_of,
    })
}

/// Householder QR of a small `rows x cols` matrix (`cols <= rows`), reused across subsets.
struct SmallQr {
    rows: usize,
    cols: usize,
    /// Column-major `rows x cols`: `R` above the diagonal, Householder vectors on and below it.
    a: Vec<f64>,
    beta: Vec<f64>,
    rdiag: Vec<f64>,
    tmp: Vec<f64>,
}

impl SmallQr {
    fn new(rows: usize, cols: usize) -> Self {
        SmallQr {
            rows,
            cols,
            a: vec![0.0; rows * cols],
            beta: vec![0.0; cols],
            rdiag: vec![0.0; cols],
            tmp: vec![0.0; cols],
        }
    }

    /// Column `k` of the matrix to factor.
    fn col_mut(&mut self, k: usize) -> &mut [f64] {
        &mut self.a[k * self.rows..(k + 1) * self.rows]
    }

    /// Factors in place; returns `||R^{-1}||_F`, or `None` when `R` is singular.
    fn factor(&mut self) -> Option<f64> {
        let (nr, nc) = (self.rows, self.cols);
        for k in 0..nc {
            let (head, tail) = self.a.split_at_mut((k + 1) * nr);
            let x = &mut head[k * nr + k..];
            let norm = x.iter().map(|v| v * v).sum::<f64>().sqrt();
            if norm == 0.0 {
                return None;
            }
            let alpha = if x[0] >= 0.0 { -norm } else { norm };
            x[0] -= alpha;
            let vtv: f64 = x.iter().map(|v| v * v).sum();
            let beta = 2.0 / vtv;
            for j in 0..nc - k - 1 {
                let col = &mut tail[j * nr + k..(j + 1) * nr];
                let t = beta * x.iter().zip(col.iter()).map(|(a, b)| a * b).sum::<f64>();
                for (c, v) in col.iter_mut().zip(x.iter()) {
                    *c -= t * v;
                }
            }
            self.beta[k] = beta;
            self.rdiag[k] = alpha;
        }
        // ||R^{-1}||_F: solve R^T t = e_i column by column (forward substitution).
        let mut fro2 = 0.0;
        for i in 0..nc {
            for k in 0..nc {
                let mut acc = if k == i { 1.0 } else { 0.0 };
                for j in 0..k {
                    acc -= self.a[k * nr + j] * self.tmp[j];
                }
                self.tmp[k] = acc / self.rdiag[k];
                fro2 += self.tmp[k] * self.tmp[k];
            }
        }
        (fro2.is_finite()).then_some(fro2.sqrt())
    }

    /// `y <- Q y`.
    fn apply_q(&self, y: &mut [f64]) {
        let nr = self.rows;
        for k in (0..self.cols).rev() {
            let v = &self.a[k * nr + k..(k + 1) * nr];
            let yk = &mut y[k..];
            let t = self.beta[k] * v.iter().zip(yk.iter()).map(|(a, b)| a * b).sum::<f64>();
            for (yi, vi) in yk.iter_mut().zip(v) {
                *yi -= t * vi;
            }
        }
    }

    /// `y <- Q^T y`.
    fn apply_qt(&self, y: &mut [f64]) {
        let nr = self.rows;
        for k in 0..self.cols {
            let v = &self.a[k * nr + k..(k + 1) * nr];
            let yk = &mut y[k..];
            let t = self.beta[k] * v.iter().zip(yk.iter()).map(|(a, b)| a * b).sum::<f64>();
            for (yi, vi) in yk.iter_mut().zip(v) {
                *yi -= t * vi;
            }
        }
    }

    /// The unit vector `Q e_last`, orthogonal to the factored columns when `cols < rows`.
    fn null_vector(&self, u: &mut [f64]) {
        u.fill(0.0);
        u[self.rows - 1] = 1.0;
        self.apply_q(u);
    }

    /// A unit `v` in the span of the columns with `A^T v` proportional to the sign vector
    /// `sigma` (bit `i` of `mask`: `+1`, else `-1`): `v = Q [R^{-T} sigma; 0]`, normalized.
    fn sign_direction(&mut self, mask: usize, v: &mut [f64]) {
        let (nr, nc) = (self.rows, self.cols);
        for k in 0..nc {
            let mut acc = if (mask >> k) & 1 == 1 { 1.0 } else { -1.0 };
            for j in 0..k {
                acc -= self.a[k * nr + j] * self.tmp[j];
            }
            self.tmp[k] = acc / self.rdiag[k];
        }
        v.fill(0.0);
        v[..nc].copy_from_slice(&self.tmp[..nc]);
        self.apply_q(v);
        normalize(v);
    }
}

/// Euclidean norm without overflow or underflow of the squares.
fn robust_norm(it: impl Iterator<Item = f64> + Clone) -> f64 {
    let scale = it.clone().fold(0.0f64, |a, v| a.max(v.abs()));
    if scale == 0.0 || !scale.is_finite() {
        return scale;
    }
    scale * it.map(|v| (v / scale) * (v / scale)).sum::<f64>().sqrt()
}

fn normalize(v: &mut [f64]) {
    let nv = v.iter().map(|x| x * x).sum::<f64>().sqrt();
    if nv > 0.0 {
        for x in v.iter_mut() {
            *x /= nv;
        }
    }
}

/// The patterns of an arrangement, over its representatives.
struct Cells {
    /// Every pattern with its complement, over `m` bits.
    set: PatternSet,
    /// When asked: `r` coordinates per pattern of a direction realizing it.
    wit: Vec<f64>,
}

impl Cells {
    /// Adds `pat` and its complement unless already present (with witnesses `g` and `-g`).
    fn add(&mut self, pat: &[u64], m: usize, witness: Option<&[f64]>) {
        if self.set.contains_words(pat) {
            return;
        }
        let mut comp: Vec<u64> = pat.iter().map(|w| !w).collect();
        if m % 64 != 0 {
            if let Some(last) = comp.last_mut() {
                *last &= (1u64 << (m % 64)) - 1;
            }
        }
        self.set.insert_words(pat.to_vec());
        if let Some(g) = witness {
            self.wit.extend_from_slice(g);
        }
        if self.set.insert_words(comp) {
            if let Some(g) = witness {
                self.wit.extend(g.iter().map(|x| -x));
            }
        }
    }
}

#[inline]
fn set_bit(words: &mut [u64], j: usize) {
    words[j / 64] |= 1u64 << (j % 64);
}

/// Every open-cell pattern of the arrangement of `m` distinct unit directions spanning `R^r`
/// (`dirs`, row-major `m x r`), as bits over the directions.
fn cells(dirs: &[f64], m: usize, r: usize, witness: bool) -> Result<Cells> {
    let words = m.div_ceil(64);
    let mut out = Cells {
        set: PatternSet::new(m),
        wit: Vec::new(),
    };
    let too_many = || CvxnnError::arg("max-patterns", "too many sign combinations to enumerate");
    let mut pat = vec![0u64; words];
    let mut g = vec![0.0; r];

    if m <= r {
        // Linearly independent directions: every sign vector is realized.
        let mut qr = SmallQr::new(r, m);
        for k in 0..m {
            qr.col_mut(k).copy_from_slice(&dirs[k * r..(k + 1) * r]);
        }
        if qr.factor().is_none() {
            if m < r {
                // Cannot happen: `m` directions of rank `r` have `m >= r`.
                return Err(CvxnnError::arg(
                    "x",
                    "rank larger than the number of directions",
                ));
            }
            return vertex_cells(dirs, m, r, witness, out);
        }
        let combos = 1usize.checked_shl(m as u32).ok_or_else(too_many)?;
        for mask in 0..combos {
            pat.fill(0);
            for j in 0..m {
                if (mask >> j) & 1 == 1 {
                    set_bit(&mut pat, j);
                }
            }
            if witness {
                qr.sign_direction(mask, &mut g);
            }
            out.add(&pat, m, witness.then_some(&g[..]));
        }
        return Ok(out);
    }
    vertex_cells(dirs, m, r, witness, out)
}

/// The vertex method proper (`m >= r >= 1`), adding to `out`.
fn vertex_cells(dirs: &[f64], m: usize, r: usize, witness: bool, mut out: Cells) -> Result<Cells> {
    let words = m.div_ceil(64);
    let too_many = || CvxnnError::arg("max-patterns", "too many sign combinations to enumerate");
    let mut pat = vec![0u64; words];
    let mut g = vec![0.0; r];
    let c = r - 1;
    let combos = 1usize.checked_shl(c as u32).ok_or_else(too_many)?;
    let mut idx: Vec<usize> = (0..c).collect();
    let mut qr = SmallQr::new(r, c);
    let mut u = vec![0.0; r];
    let mut v = vec![0.0; r];
    let mut base = vec![0u64; words];
    let mut onray: Vec<usize> = Vec::with_capacity(r);
    let mut seen_rays: HashSet<Vec<u64>> = HashSet::new();
    let eps_factor = 8.0 * r as f64 * f64::EPSILON;

    loop {
        for (col, &j) in idx.iter().enumerate() {
            qr.col_mut(col).copy_from_slice(&dirs[j * r..(j + 1) * r]);
        }
        if let Some(inv_norm) = qr.factor() {
            let err = eps_factor * inv_norm;
            if err <= MAX_RAY_ERROR {
                let tol = RAY_TOL + err;
                qr.null_vector(&mut u);
                base.fill(0);
                onray.clear();
                let mut gap = f64::INFINITY;
                let mut p = 0;
                for (j, w) in dirs.chunks_exact(r).enumerate() {
                    let in_s = p < c && idx[p] == j;
                    if in_s {
                        p += 1;
                    }
                    let sj: f64 = w.iter().zip(&u).map(|(a, b)| a * b).sum();
                    if in_s || sj.abs() <= tol {
                        onray.push(j);
                    } else {
                        if sj > 0.0 {
                            set_bit(&mut base, j);
                        }
                        gap = gap.min(sj.abs());
                    }
                }
                let step = if gap.is_finite() {
                    (0.5 * gap).min(0.5)
                } else {
                    0.5
                };
                if onray.len() == c {
                    // General position: the on-ray rows are S, independent: all sign vectors.
                    for mask in 0..combos {
                        pat.copy_from_slice(&base);
                        for (i, &j) in idx.iter().enumerate() {
                            if (mask >> i) & 1 == 1 {
                                set_bit(&mut pat, j);
                            }
                        }
                        if out.set.contains_words(&pat) {
                            continue;
                        }
                        if witness {
                            qr.sign_direction(mask, &mut v);
                            for ((gi, ui), vi) in g.iter_mut().zip(&u).zip(&v) {
                                *gi = ui + step * vi;
                            }
                        }
                        out.add(&pat, m, witness.then_some(&g[..]));
                    }
                } else {
                    let mut key = vec![0u64; words];
                    for &j in &onray {
                        set_bit(&mut key, j);
                    }
                    if seen_rays.insert(key) {
                        degenerate_ray(
                            dirs, m, r, &qr, &u, &onray, &base, step, witness, &mut out,
                        )?;
                    }
                }
            }
        }
        // Next (r-1)-subset in lexicographic order.
        let mut i = c;
        let mut advanced = false;
        while i > 0 {
            i -= 1;
            if idx[i] < m - c + i {
                idx[i] += 1;
                for k in i + 1..c {
                    idx[k] = idx[k - 1] + 1;
                }
                advanced = true;
                break;
            }
        }
        if !advanced {
            break;
        }
    }
    Ok(out)
}

/// A ray with more than `r - 1` rows on it: enumerates the arrangement of the on-ray rows in
/// the ray's orthogonal complement and adds each of its cells combined with the off-ray signs.
#[allow(clippy::too_many_arguments)]
fn degenerate_ray(
    dirs: &[f64],
    m: usize,
    r: usize,
    qr: &SmallQr,
    u: &[f64],
    onray: &[usize],
    base: &[u64],
    step: f64,
    witness: bool,
    out: &mut Cells,
) -> Result<()> {
    let c = r - 1;
    // Coordinates in the basis Q: the first c span u's orthogonal complement.
    let mut sub = Mat::<f64>::zeros(onray.len(), c);
    let mut y = vec![0.0; r];
    for (t, &j) in onray.iter().enumerate() {
        y.copy_from_slice(&dirs[j * r..(j + 1) * r]);
        qr.apply_qt(&mut y);
        for k in 0..c {
            sub[(t, k)] = y[k];
        }
    }
    let red = reduce(sub.as_ref(), None)?;
    let mut pat = base.to_vec();
    let mut g = vec![0.0; r];
    if red.r == 0 || red.m == 0 {
        // Cannot happen for unit rows orthogonal to u; keep a sane answer anyway.
        for &j in onray {
            set_bit(&mut pat, j);
        }
        g.copy_from_slice(u);
        out.add(&pat, m, witness.then_some(&g[..]));
        return Ok(());
    }
    let subcells = cells(&red.dirs, red.m, red.r, witness)?;
    let wit = subcells.wit;
    let subs = subcells.set.into_masks();
    for q in 0..subs.len() {
        pat.copy_from_slice(base);
        for (t, &j) in onray.iter().enumerate() {
            let active = match red.rep_of[t] {
                Rep::Zero => true,
                Rep::Dir { k, flip } => subs.get(k, q) ^ flip,
            };
            if active {
                set_bit(&mut pat, j);
            }
        }
        if out.set.contains_words(&pat) {
            continue;
        }
        if witness {
            let w = &wit[q * red.r..(q + 1) * red.r];
            y.fill(0.0);
            for (k, yk) in y.iter_mut().take(c).enumerate() {
                *yk = (0..red.r).map(|t| red.basis[(k, t)] * w[t]).sum();
            }
            qr.apply_q(&mut y);
            normalize(&mut y);
            for ((gi, ui), yi) in g.iter_mut().zip(u).zip(&y) {
                *gi = ui + step * yi;
            }
        }
        out.add(&pat, m, witness.then_some(&g[..]));
    }
    Ok(())
}

/// Test-only: the patterns of [`enumerate`] with one direction in `R^d` realizing each of them.
#[cfg(test)]
fn enumerate_with_witnesses(x: &Matrix, max_patterns: usize) -> Result<(Masks, Vec<Vec<f64>>)> {
    enumerate_impl(x, max_patterns, true)
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::{RngExt, SeedableRng};
    use rand_chacha::ChaCha8Rng;
    use rand_distr::StandardNormal;
    use std::time::Instant;

    const BIG: usize = 10_000_000;

    fn gaussian(n: usize, d: usize, seed: u64) -> Matrix {
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let data = (0..n * d).map(|_| rng.sample(StandardNormal)).collect();
        Matrix::from_col_major(n, d, data).unwrap()
    }

    fn rows(r: &[&[f64]]) -> Matrix {
        let v: Vec<Vec<f64>> = r.iter().map(|x| x.to_vec()).collect();
        Matrix::from_rows(&v, r[0].len()).unwrap()
    }

    fn as_set(m: &Masks) -> HashSet<Vec<bool>> {
        (0..m.len()).map(|i| m.to_bools(i)).collect()
    }

    fn pattern_of(x: &Matrix, g: &[f64]) -> Vec<bool> {
        x.matvec(g).iter().map(|&s| s >= 0.0).collect()
    }

    /// Brute force: dense random directions, plus random points of every flat
    /// `{u : x_j^T u = 0, j in S}` (|S| < d) perturbed slightly in random directions.
    fn brute(x: &Matrix, samples: usize, seed: u64) -> HashSet<Vec<bool>> {
        let (n, d) = (x.nrows(), x.ncols());
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let mut out = HashSet::new();
        let mut g = vec![0.0; d];
        for _ in 0..samples {
            for gi in g.iter_mut() {
                *gi = rng.sample(StandardNormal);
            }
            out.insert(pattern_of(x, &g));
        }
        // Subsets of size 1..d-1 by bitmask (n is tiny).
        assert!(n <= 16);
        for mask in 1u32..(1u32 << n) {
            let k = mask.count_ones() as usize;
            if k >= d {
                continue;
            }
            let sel: Vec<usize> = (0..n).filter(|j| (mask >> j) & 1 == 1).collect();
            let xs = x.select_rows(&sel);
            let svd = xs.as_ref().svd().unwrap();
            let s: Vec<f64> = svd.S().column_vector().iter().copied().collect();
            let rank = s.iter().filter(|&&v| v > 1e-10 * s[0].max(1e-300)).count();
            let vmat = svd.V();
            for scale in [1e-1, 1e-3, 1e-5] {
                for _ in 0..60 {
                    let mut base = vec![0.0; d];
                    for c in rank..d {
                        let a: f64 = rng.sample(StandardNormal);
                        for (i, b) in base.iter_mut().enumerate() {
                            *b += a * vmat[(i, c)];
                        }
                    }
                    let nb = base.iter().map(|v| v * v).sum::<f64>().sqrt();
                    for (i, gi) in g.iter_mut().enumerate() {
                        let e: f64 = rng.sample(StandardNormal);
                        *gi = base[i] / nb + scale * e;
                    }
                    out.insert(pattern_of(x, &g));
                }
            }
        }
        out
    }

    fn check_against_brute(x: &Matrix, name: &str) {
        let masks = enumerate(x, BIG).unwrap();
        let got = as_set(&masks);
        assert_eq!(got.len(), masks.len(), "{name}: duplicate patterns");
        let bf = brute(x, 200_000, 7);
        let missed: Vec<_> = bf.difference(&got).collect();
        let extra: Vec<_> = got.difference(&bf).collect();
        assert!(missed.is_empty(), "{name}: enumeration missed {missed:?}");
        assert!(extra.is_empty(), "{name}: brute force never saw {extra:?}");
        check_witnesses(x, name);
    }

    /// Every pattern comes with a direction that realizes it with a strict margin.
    fn check_witnesses(x: &Matrix, name: &str) {
        let (masks, wits) = enumerate_with_witnesses(x, BIG).unwrap();
        let plain = enumerate(x, BIG).unwrap();
        assert_eq!(masks, plain, "{name}: witnesses change the patterns");
        assert_eq!(wits.len(), masks.len());
        let nrm: Vec<f64> = (0..x.nrows())
            .map(|j| x.row(j).iter().map(|v| v * v).sum::<f64>().sqrt())
            .collect();
        for (i, g) in wits.iter().enumerate() {
            let gn = g.iter().map(|v| v * v).sum::<f64>().sqrt();
            let s = x.matvec(g);
            for j in 0..x.nrows() {
                if nrm[j] == 0.0 {
                    assert!(masks.get(j, i), "{name}: zero row {j} inactive");
                    continue;
                }
                assert!(
                    s[j].abs() > 1e-9 * nrm[j] * gn,
                    "{name}: pattern {i} row {j}: margin {} too small",
                    s[j] / (nrm[j] * gn)
                );
                assert_eq!(
                    s[j] > 0.0,
                    masks.get(j, i),
                    "{name}: pattern {i} row {j} wrong sign"
                );
            }
        }
    }

    #[test]
    fn predicted_count_values() {
        assert_eq!(predicted_count(4, 2), 8.0);
        assert_eq!(predicted_count(10, 1), 2.0);
        assert_eq!(predicted_count(3, 3), 8.0);
        assert_eq!(predicted_count(3, 7), 8.0);
        assert_eq!(predicted_count(12, 3), 2.0 * (1.0 + 11.0 + 55.0));
        assert_eq!(predicted_count(5, 0), 1.0);
        assert_eq!(predicted_count(0, 3), 1.0);
        assert!(predicted_count(100_000, 1000).is_infinite());
        let big = predicted_count(usize::MAX, 3);
        assert!(big.is_finite() && big > 1e37);
    }

    #[test]
    fn numerical_rank_cases() {
        assert_eq!(numerical_rank(&gaussian(10, 4, 1)), 4);
        assert_eq!(numerical_rank(&gaussian(3, 6, 2)), 3);
        let ab = gaussian(20, 3, 3).matmul(&gaussian(3, 7, 4));
        assert_eq!(numerical_rank(&ab), 3);
        assert_eq!(numerical_rank(&Matrix::zeros(5, 3)), 0);
        assert_eq!(numerical_rank(&Matrix::zeros(0, 3)), 0);
    }

    #[test]
    fn counts_match_formula_in_general_position() {
        let cases = [
            (10, 2),
            (12, 3),
            (15, 3),
            (30, 3),
            (10, 4),
            (20, 4),
            (8, 5),
            (12, 5),
            (9, 6),
        ];
        for (seed, &(n, r)) in cases.iter().enumerate() {
            let x = gaussian(n, r, 100 + seed as u64);
            let got = enumerate(&x, BIG).unwrap().len();
            assert_eq!(got as f64, predicted_count(n, r), "full rank n={n} r={r}");
            // Rank-deficient with d > r: the count follows r, not d.
            let d = r + 3;
            let x = gaussian(n, r, 200 + seed as u64).matmul(&gaussian(r, d, 300 + seed as u64));
            assert_eq!(numerical_rank(&x), r);
            let got = enumerate(&x, BIG).unwrap().len();
            assert_eq!(
                got as f64,
                predicted_count(n, r),
                "rank-deficient n={n} r={r} d={d}"
            );
        }
    }

    #[test]
    fn general_position_witnesses() {
        check_witnesses(&gaussian(12, 3, 11), "gauss 12x3");
        check_witnesses(&gaussian(10, 4, 12), "gauss 10x4");
        let x = gaussian(9, 5, 13).matmul(&gaussian(5, 8, 14));
        check_witnesses(&x, "rank 5 in R^8");
    }

    #[test]
    fn degenerate_duplicates_collinear_zero_row() {
        // 2-D points with a bias column: three collinear points, a duplicate, a zero row.
        let x = rows(&[
            &[0.0, 0.0, 1.0],
            &[1.0, 0.0, 1.0],
            &[2.0, 0.0, 1.0],
            &[0.0, 1.0, 1.0],
            &[1.0, 1.0, 1.0],
            &[1.0, 1.0, 1.0],
            &[2.0, 3.0, 1.0],
            &[-1.0, 2.0, 1.0],
            &[0.0, 0.0, 0.0],
        ]);
        check_against_brute(&x, "bias 2-D");
    }

    #[test]
    fn degenerate_line_through_origin() {
        // Rank 1: points on a line through the origin, and a zero row.
        let x = rows(&[
            &[1.0, -2.0],
            &[2.0, -4.0],
            &[-0.5, 1.0],
            &[0.0, 0.0],
            &[3.0, -6.0],
        ]);
        let masks = enumerate(&x, BIG).unwrap();
        assert_eq!(masks.len(), 2);
        check_against_brute(&x, "line through origin");
        // Points on a line through the origin among generic ones in 3-D.
        let x = rows(&[
            &[1.0, 2.0, -1.0],
            &[2.0, 4.0, -2.0],
            &[-1.0, -2.0, 1.0],
            &[-3.0, -6.0, 3.0],
            &[1.0, 0.0, 0.0],
            &[0.0, 1.0, 0.0],
            &[0.0, 0.0, 1.0],
            &[1.0, 1.0, 1.0],
        ]);
        check_against_brute(&x, "3-D with a line");
    }

    #[test]
    fn degenerate_parallel_antiparallel_2d() {
        let x = rows(&[
            &[1.0, 2.0],
            &[-1.0, -2.0],
            &[2.0, 4.0],
            &[1.0, 0.0],
            &[0.0, 1.0],
            &[-3.0, -6.0],
            &[1.0, 1.0],
        ]);
        let masks = enumerate(&x, BIG).unwrap();
        // 4 distinct lines in the plane: 8 cells.
        assert_eq!(masks.len(), 8);
        for i in 0..masks.len() {
            assert_eq!(masks.get(0, i), !masks.get(1, i));
            assert_eq!(masks.get(0, i), masks.get(2, i));
            assert_eq!(masks.get(0, i), !masks.get(5, i));
        }
        check_against_brute(&x, "parallel 2-D");
    }

    #[test]
    fn degenerate_rank_deficient_with_bias() {
        // Columns a, b, a + b, 1: rank 3 in R^4; collinear points and a duplicate.
        let pts = [
            (0.0, 0.0),
            (1.0, 1.0),
            (2.0, 2.0),
            (1.0, 0.0),
            (0.0, 2.0),
            (1.0, 1.0),
            (-1.0, 3.0),
            (3.0, -1.0),
        ];
        let r: Vec<Vec<f64>> = pts.iter().map(|&(a, b)| vec![a, b, a + b, 1.0]).collect();
        let x = Matrix::from_rows(&r, 4).unwrap();
        assert_eq!(numerical_rank(&x), 3);
        check_against_brute(&x, "bias rank 3 in R^4");
    }

    #[test]
    fn degenerate_four_dimensional() {
        // Several coplanar triples and dependent subsets in R^4.
        let x = rows(&[
            &[1.0, 0.0, 0.0, 0.0],
            &[0.0, 1.0, 0.0, 0.0],
            &[1.0, 1.0, 0.0, 0.0],
            &[1.0, -1.0, 0.0, 0.0],
            &[0.0, 0.0, 1.0, 0.0],
            &[0.0, 0.0, 0.0, 1.0],
            &[1.0, 0.0, 1.0, 1.0],
            &[0.0, 1.0, 1.0, 0.0],
            &[0.0, 0.0, 2.0, 0.0],
            &[1.0, 1.0, 1.0, 1.0],
        ]);
        check_against_brute(&x, "4-D degenerate");
    }

    #[test]
    fn degenerate_random_with_repeats() {
        let g = gaussian(5, 3, 21);
        let mut r: Vec<Vec<f64>> = (0..5).map(|j| g.row(j)).collect();
        r.push(g.row(0).iter().map(|v| 2.5 * v).collect());
        r.push(g.row(1).iter().map(|v| -0.5 * v).collect());
        r.push(g.row(2).iter().zip(g.row(3)).map(|(a, b)| a + b).collect());
        r.push(vec![0.0; 3]);
        let x = Matrix::from_rows(&r, 3).unwrap();
        check_against_brute(&x, "random with repeats");
    }

    /// Rows `e_i - e_j` (i < j) of `R^k`: the braid arrangement, rank `k - 1`, whose `k!` cells
    /// (orderings of the coordinates) all have only degenerate extreme rays.
    fn braid(k: usize) -> Matrix {
        let mut r = Vec::new();
        for i in 0..k {
            for j in i + 1..k {
                let mut v = vec![0.0; k];
                v[i] = 1.0;
                v[j] = -1.0;
                r.push(v);
            }
        }
        Matrix::from_rows(&r, k).unwrap()
    }

    #[test]
    fn braid_arrangements_only_degenerate_vertices() {
        for (k, fact) in [(3usize, 6usize), (4, 24), (5, 120)] {
            let x = braid(k);
            assert_eq!(numerical_rank(&x), k - 1);
            assert_eq!(enumerate(&x, BIG).unwrap().len(), fact, "braid k={k}");
            check_against_brute(&x, &format!("braid {k}"));
        }
    }

    #[test]
    fn duplicated_rows_share_bits() {
        let g = gaussian(10, 3, 31);
        let mut r: Vec<Vec<f64>> = (0..10).map(|j| g.row(j)).collect();
        r.push(g.row(4).iter().map(|v| 3.0 * v).collect());
        r.push(g.row(7).iter().map(|v| -v).collect());
        let x = Matrix::from_rows(&r, 3).unwrap();
        let masks = enumerate(&x, BIG).unwrap();
        assert_eq!(masks.len() as f64, predicted_count(10, 3));
        for i in 0..masks.len() {
            assert_eq!(masks.get(10, i), masks.get(4, i));
            assert_eq!(masks.get(11, i), !masks.get(7, i));
        }
    }

    #[test]
    fn scale_invariant() {
        let x = rows(&[
            &[0.0, 0.0, 1.0],
            &[1.0, 0.0, 1.0],
            &[2.0, 0.0, 1.0],
            &[1.0, 1.0, 1.0],
            &[2.0, 3.0, 1.0],
            &[0.0, 0.0, 0.0],
        ]);
        let want = enumerate(&x, BIG).unwrap();
        for f in [1e-300, 1e-200, 1e-30, 1e30, 1e200, 1e300] {
            let data: Vec<f64> = x.as_slice().iter().map(|v| v * f).collect();
            let xs = Matrix::from_col_major(x.nrows(), x.ncols(), data).unwrap();
            assert_eq!(
                as_set(&enumerate(&xs, BIG).unwrap()),
                as_set(&want),
                "scale {f}"
            );
        }
    }

    #[test]
    fn edge_cases() {
        let err = enumerate(&Matrix::zeros(0, 3), BIG).unwrap_err();
        assert!(matches!(err, CvxnnError::InvalidArgument { ref name, .. } if name == "x"));
        assert!(enumerate(&Matrix::zeros(3, 0), BIG).is_err());
        let mut x = gaussian(4, 2, 1);
        x.set(2, 1, f64::NAN);
        assert!(enumerate(&x, BIG).is_err());
        // All rows zero: the single all-active pattern.
        let m = enumerate(&Matrix::zeros(4, 3), BIG).unwrap();
        assert_eq!(m.len(), 1);
        assert_eq!(m.count_active(0), 4);
        // One row: two patterns.
        assert_eq!(enumerate(&gaussian(1, 5, 3), BIG).unwrap().len(), 2);
        // n <= d: independent rows, every sign vector.
        assert_eq!(enumerate(&gaussian(3, 5, 4), BIG).unwrap().len(), 8);
        check_witnesses(&gaussian(3, 5, 4), "n < d");
        // More than 64 rows (several words per pattern).
        let x = gaussian(70, 2, 5);
        assert_eq!(enumerate(&x, BIG).unwrap().len(), 140);
    }

    #[test]
    fn refuses_above_max_patterns_quickly() {
        let x = gaussian(3000, 30, 9);
        let t = Instant::now();
        let err = enumerate(&x, 1000).unwrap_err();
        assert!(
            t.elapsed().as_secs_f64() < 2.0,
            "refusal took {:?}",
            t.elapsed()
        );
        match err {
            CvxnnError::InvalidArgument { name, message } => {
                assert_eq!(name, "max-patterns");
                assert!(message.contains("--patterns N"), "{message}");
                assert!(message.contains("--max-patterns"), "{message}");
            }
            e => panic!("unexpected error {e}"),
        }
        // Small case: the message gives the exact predicted count.
        let x = gaussian(12, 3, 10);
        let err = enumerate(&x, 100).unwrap_err();
        assert!(err.to_string().contains("134"), "{err}");
        assert_eq!(enumerate(&x, 134).unwrap().len(), 134);
        assert!(enumerate(&Matrix::zeros(2, 2), 0).is_err());
    }

    /// Timings: `cargo test -p cvxnn patterns::exact::tests::timings -- --ignored --nocapture`.
    #[test]
    #[ignore]
    fn timings() {
        for &(n, r) in &[(100, 3), (200, 3), (60, 4), (40, 5), (25, 6), (1000, 2)] {
            let x = gaussian(n, r, 42);
            let t = Instant::now();
            let m = enumerate(&x, usize::MAX).unwrap();
            let s = t.elapsed().as_secs_f64();
            assert_eq!(m.len() as f64, predicted_count(n, r));
            println!("n={n:5} r={r} patterns={:8} time={s:.4}s", m.len());
        }
    }
}
