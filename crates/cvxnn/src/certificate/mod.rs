//! Dual bounds and gaps (DESIGN section 1, "Dual and certificate").
//!
//! Any `theta` with `max_i ||K_i^T theta - C_i^T mu_i|| <= lambda` for some `mu_i >= 0` is dual
//! feasible, and `-h*(theta)` is then a lower bound on the program's optimum. Solvers hand us
//! `theta = grad h(z)` and the group norms of the corresponding gradient; we rescale.

pub mod oracle;

pub use oracle::{search_patterns, OracleCandidate, OracleResult, OracleSettings};

use crate::linalg::Matrix;
use crate::operator::LinearMap;
use crate::program::polish::FaceProgram;
use crate::program::TwoLayerProgram;
use crate::solver::fista::LossImage;

/// The dual bound `-h*(s theta)` with `s = min(1, lambda / max_group_norm)`: the largest
/// rescaling of `theta` (and of the multipliers that produced `max_group_norm`) that is feasible.
pub fn dual_bound(data: LossImage<'_>, theta: &[f64], max_group_norm: f64, lambda: f64) -> f64 {
    let s = if max_group_norm > lambda {
        lambda / max_group_norm
    } else {
        1.0
    };
    let scaled: Vec<f64> = theta.iter().map(|t| s * t).collect();
    -data.loss.conjugate(&scaled, data.y, data.outputs)
}

/// Dual bound of the ReLU program at `vars` from its KKT conditions (DESIGN section 1):
/// `theta = grad h(z)`; per group the multipliers `mu >= 0` of the constraints that are tight at
/// `vars` (least squares on `C_T^T mu = A_i^T theta + lambda v_i / ||v_i||`, clamped at 0), and
/// for zero groups whose `||A_i^T theta||` exceeds `lambda`, multipliers on all rows by projected
/// gradient (a cone projection). Any `mu >= 0` gives a valid bound; exact ones make it tight.
/// With several outputs every output's columns are groups of their own (`theta` is `n x c`).
/// Any [`FaceProgram`] (the dense program, the sum-pooling CNN): rows are those of its `X`.
pub fn relu_kkt_dual_bound<P: FaceProgram + ?Sized>(prog: &P, vars: &[f64]) -> crate::Result<f64> {
    let (x, y, masks, lambda) = (prog.x(), prog.y(), prog.masks(), prog.lambda());
    let (rows, d, p) = (x.nrows(), x.ncols(), masks.len());
    let z = prog.predict(vars)?;
    let mut theta = vec![0.0; z.len()];
    prog.loss().grad(&z, y, prog.outputs(), &mut theta);
    let mut g = vec![0.0; vars.len()];
    prog.prediction_adjoint(&theta, &mut g);
    let vm = Matrix::from_col_major(d, vars.len() / d.max(1), vars.to_vec())
        .ok_or_else(|| crate::CvxnnError::Shape("variables".into()))?;
    let xv = x.matmul(&vm);
    let mut sigma_sq: Option<f64> = None;
    let mut worst: f64 = 0.0;
    for col in 0..vm.ncols() {
        let i = col % p;
        let s = |j: usize| if masks.get(j, i) { 1.0 } else { -1.0 };
        let gi = &g[col * d..(col + 1) * d];
        let v = vm.col(col);
        let nv = crate::linalg::norm2(v);
        let plain = crate::linalg::norm2(gi);
        let norm = if plain <= lambda {
            plain
        } else {
            // Start the multipliers from the KKT least squares on the tight rows (active
            // groups), then minimize over all rows: the dual constraint does not depend on v.
            let mut mu0 = vec![0.0; rows];
            if nv > 0.0 {
                let xvc = xv.col(col);
                let scale = xvc.iter().fold(0.0f64, |a, b| a.max(b.abs()));
                let tight: Vec<usize> = (0..rows)
                    .filter(|&j| xvc[j].abs() <= 1e-9 * scale)
                    .collect();
                let target: Vec<f64> = gi.iter().zip(v).map(|(a, b)| a + lambda * b / nv).collect();
                for (&j, m) in tight.iter().zip(tight_multipliers(x, &tight, &s, &target)) {
                    mu0[j] = m;
                }
            }
            let sq = *sigma_sq.get_or_insert_with(|| x_norm_sq(x));
            // Stop once below the largest norm so far: the bound depends only on the maximum.
            cone_projection_norm(x, &s, gi, mu0, sq, lambda.max(worst))
        };
        worst = worst.max(norm);
    }
    Ok(dual_bound(prog.data(), &theta, worst, lambda))
}

/// The smallest `lambda` at which the zero network is optimal for `prog`'s data, loss, model and
/// patterns (`prog`'s own lambda is ignored). At zero the dual point is `theta0 = grad h(0)`.
/// Gated ReLU (unconstrained group lasso): `max_i ||X^T D_i theta0||`. ReLU: zero is optimal iff
/// for every group `min_{mu >= 0} ||g_i - C_i^T mu|| <= lambda` (`g_i = ±X^T D_i theta0`, rows
/// of `C_i` the constraint rows `(2 D_i - I) X`), i.e. the norm of `g_i`'s projection on the
/// pattern's cone: never above the gated value, and below it whenever a constraint binds. The
/// projections are computed by the same projected-gradient NNLS as [`relu_kkt_dual_bound`], so
/// the value is exact up to that solve and never below the true threshold (every iterate is a
/// feasible `mu`): at any `lambda >= lambda_max` the zero point is certified by
/// [`relu_kkt_dual_bound`]. With several outputs every output's columns are groups of their own
/// (`Separate`), or each pattern's `d x c` block is one, measured by its spectral norm (`Shared`).
pub fn lambda_max(prog: &TwoLayerProgram<'_>) -> crate::Result<f64> {
    let (x, y, masks) = (prog.x(), prog.y(), prog.masks());
    let (n, d, p) = (x.nrows(), x.ncols(), masks.len());
    let outputs = prog.outputs();
    let mut theta = vec![0.0; y.len()];
    prog.loss()
        .grad(&vec![0.0; y.len()], y, outputs, &mut theta);
    let op = prog.prediction_operator();
    let mut g = vec![0.0; op.n_vars()];
    op.adjoint(&theta, &mut g);
    if prog.output_mode() == crate::program::OutputMode::Shared && outputs > 1 {
        // Gated only (the shared ReLU program is not built): the largest spectral norm.
        return Ok(crate::penalty::Regularizer::dual_norm(
            &prog.nuclear_penalty(),
            &g,
        ));
    }
    let plain: Vec<f64> = g.chunks(d).map(crate::linalg::norm2).collect();
    if prog.model() == crate::program::ModelKind::GatedRelu {
        return Ok(plain.iter().fold(0.0, |a, &b| a.max(b)));
    }
    // Largest plain norms first: a projection norm never exceeds its plain norm, so once the
    // plain norm is below the running maximum the group cannot raise it (and the projection
    // may stop as soon as it is below that maximum).
    let mut order: Vec<usize> = (0..plain.len()).collect();
    order.sort_by(|&a, &b| plain[b].total_cmp(&plain[a]));
    let sq = x_norm_sq(x);
    let mut worst: f64 = 0.0;
    for col in order {
        if plain[col] <= worst {
            break;
        }
        let i = col % p;
        let s = |j: usize| if masks.get(j, i) { 1.0 } else { -1.0 };
        let gi = &g[col * d..(col + 1) * d];
        worst = worst.max(cone_projection_norm(x, &s, gi, vec![0.0; n], sq, worst));
    }
    Ok(worst)
}

/// Least-squares `mu >= 0` (clamped) with `sum_j mu_j s_j x_j ~ target` over the rows `tight`.
fn tight_multipliers(
    x: &Matrix,
    tight: &[usize],
    s: &dyn Fn(usize) -> f64,
    target: &[f64],
) -> Vec<f64> {
    let m = tight.len();
    if m == 0 {
        return Vec::new();
    }
    let d = x.ncols();
    let row = |a: usize| -> Vec<f64> { (0..d).map(|k| s(tight[a]) * x.get(tight[a], k)).collect() };
    let rows: Vec<Vec<f64>> = (0..m).map(row).collect();
    if m > d {
        // More tight rows than dimensions (pooled patch rows repeat, e.g. blank patches): the
        // minimum-norm solution `mu = C (C^T C)^+ target` needs only a `d x d` system.
        let mut a = vec![vec![0.0; d + 1]; d];
        for r in &rows {
            for (p, &rp) in r.iter().enumerate() {
                for (q, &rq) in r.iter().enumerate() {
                    a[p][q] += rp * rq;
                }
            }
        }
        for (p, ap) in a.iter_mut().enumerate() {
            ap[p] += 1e-14 * (1.0 + ap[p]);
            ap[d] = target[p];
        }
        let coef = solve_dense(&mut a);
        return rows
            .iter()
            .map(|r| crate::linalg::dot(r, &coef).max(0.0))
            .collect();
    }
    // Normal equations (m x m, m < d), Tikhonov-guarded for rank deficiency.
    let mut a = vec![vec![0.0; m + 1]; m];
    for r in 0..m {
        for c in 0..m {
            a[r][c] = crate::linalg::dot(&rows[r], &rows[c]);
        }
        a[r][r] += 1e-14 * (1.0 + a[r][r]);
        a[r][m] = crate::linalg::dot(&rows[r], target);
    }
    solve_dense(&mut a)
        .into_iter()
        .map(|v| v.max(0.0))
        .collect()
}

/// Gaussian elimination with partial pivoting on an augmented `m x (m+1)` system.
fn solve_dense(a: &mut [Vec<f64>]) -> Vec<f64> {
    let m = a.len();
    for c in 0..m {
        let piv = (c..m).fold(c, |b, r| if a[r][c].abs() > a[b][c].abs() { r } else { b });
        a.swap(c, piv);
        let pv = a[c][c];
        if pv.abs() < 1e-300 {
            continue;
        }
        for r in c + 1..m {
            let f = a[r][c] / pv;
            if f != 0.0 {
                let (top, bottom) = a.split_at_mut(r);
                for (dst, &src) in bottom[0][c..].iter_mut().zip(&top[c][c..]) {
                    *dst -= f * src;
                }
            }
        }
    }
    let mut sol = vec![0.0; m];
    for c in (0..m).rev() {
        let mut v = a[c][m];
        for k in c + 1..m {
            v -= a[c][k] * sol[k];
        }
        sol[c] = if a[c][c].abs() < 1e-300 {
            0.0
        } else {
            v / a[c][c]
        };
    }
    sol
}

/// `||X||_2^2` by power iteration (slightly over-estimated).
pub(crate) fn x_norm_sq(x: &Matrix) -> f64 {
    let d = x.ncols();
    let mut v = vec![1.0; d];
    let mut est = 0.0;
    for _ in 0..50 {
        let nv = crate::linalg::norm2(&v);
        if nv == 0.0 {
            return 0.0;
        }
        v.iter_mut().for_each(|a| *a /= nv);
        let xv = x.matvec(&v);
        v = (0..d).map(|k| crate::linalg::dot(x.col(k), &xv)).collect();
        est = crate::linalg::norm2(&v);
    }
    est * 1.05
}

/// `min_{mu >= 0} ||g - C^T mu||` with `C` the rows `s_j x_j`, by accelerated projected gradient
/// from `mu0` (`c_sq` bounds `||C||^2`), stopping once the norm is below `target`. Every iterate
/// is feasible, so the smallest norm seen is a valid value.
pub(crate) fn cone_projection_norm(
    x: &Matrix,
    s: &dyn Fn(usize) -> f64,
    g: &[f64],
    mu0: Vec<f64>,
    c_sq: f64,
    target: f64,
) -> f64 {
    let d = x.ncols();
    let step = 1.0 / c_sq.max(1e-300);
    let mut mu = mu0;
    let mut prev = mu.clone();
    let mut pt = mu.clone();
    let mut best = f64::INFINITY;
    let mut t = 1.0f64;
    let mut r = vec![0.0; d];
    let mut spt = vec![0.0; x.nrows()];
    for _ in 0..CONE_PROJECTION_ITERS {
        // r = g - C^T pt = g - X^T (s .* pt), by columns of the column-major X.
        for (j, (w, &m)) in spt.iter_mut().zip(&pt).enumerate() {
            *w = if m != 0.0 { m * s(j) } else { 0.0 };
        }
        for (k, (rk, &gk)) in r.iter_mut().zip(g).enumerate() {
            *rk = gk - crate::linalg::dot(x.col(k), &spt);
        }
        best = best.min(crate::linalg::norm2(&r));
        if best <= target {
            break;
        }
        std::mem::swap(&mut prev, &mut mu);
        let xr = x.matvec(&r);
        for (j, (m, &p)) in mu.iter_mut().zip(&pt).enumerate() {
            *m = (p + step * s(j) * xr[j]).max(0.0);
        }
        let tn = 0.5 * (1.0 + (1.0 + 4.0 * t * t).sqrt());
        let beta = (t - 1.0) / tn;
        t = tn;
        for ((q, &m), &p) in pt.iter_mut().zip(&mu).zip(&prev) {
            *q = (m + beta * (m - p)).max(0.0);
        }
    }
    best
}

/// Iterations of [`cone_projection_norm`].
const CONE_PROJECTION_ITERS: usize = 3000;

#[cfg(test)]
mod tests {
    use super::*;
    use crate::loss::LossKind;

    #[test]
    fn zero_theta_gives_loss_at_zero_for_squared_lower_bound() {
        // theta = 0 is always feasible: the bound is -h*(0) = 0 for squared, 0 for logistic.
        let y = [1.0, -1.0];
        for loss in [LossKind::Squared, LossKind::Logistic] {
            let data = LossImage {
                loss,
                y: &y,
                outputs: 1,
            };
            assert_eq!(dual_bound(data, &[0.0, 0.0], 5.0, 1.0), 0.0);
        }
    }
}
