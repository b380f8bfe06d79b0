//! Newton polish on a face of the two-layer programs: once a solver has found which groups are
//! non-zero and (for ReLU) which pattern constraints are tight, the objective restricted to that
//! face is smooth in reduced variables, and damped Newton reaches machine precision in a few
//! steps. Used after the conic solver (interior points are only ~sqrt(tol) accurate in direction)
//! and after the augmented Lagrangian (whose dual certificate needs an accurate `theta`).
//!
//! The polish is written once for every program whose pattern constraints are rows of one matrix
//! `X` (`(2 D_i - I) X u >= 0`) and whose predictions sum those rows per sample
//! ([`FaceProgram`]): the dense program (`X` itself, one row per sample) and the sum-pooling CNN
//! (`X` the stacked patch matrix, `K` rows per sample).

use super::{ModelKind, TwoLayerProgram};
use crate::error::Result;
use crate::linalg::Matrix;
use crate::loss::LossKind;
use crate::operator::LinearMap;
use crate::patterns::Masks;
use crate::solver::fista::LossImage;
use crate::solver::{Solution, Status};

/// A cone-constrained group lasso over patterns of the rows of one matrix `X` (`n K x d`) whose
/// sample `j` pools the rows `k n + j` (`k < K`): `z = sum_i P D_i X u_i` with `P` the
/// `n x nK` row-summing matrix, constraints `(2 D_i - I) X v_i >= 0`. Variables are `d x P`
/// (gated) or `d x 2P` (`[V W]`) per output, column-major.
pub trait FaceProgram {
    /// The constraint rows `X` (`nK x d`).
    fn x(&self) -> &Matrix;
    /// Rows pooled into one sample (`K`; 1 when nothing is pooled).
    fn pooled_rows(&self) -> usize;
    /// The targets (`n x c`, column-major).
    fn y(&self) -> &[f64];
    /// The patterns over the rows of `X`.
    fn masks(&self) -> &Masks;
    /// The data-fit term.
    fn loss(&self) -> LossKind;
    /// Regularization strength.
    fn lambda(&self) -> f64;
    /// Number of outputs `c`.
    fn outputs(&self) -> usize;
    /// Gated ReLU or ReLU.
    fn model(&self) -> ModelKind;
    /// The loss bound to the targets.
    fn data(&self) -> LossImage<'_>;
    /// Predictions at `vars` (`n x c`).
    fn predict(&self, vars: &[f64]) -> Result<Vec<f64>>;
    /// `A^T theta` of the prediction operator (`theta` is `n x c`).
    fn prediction_adjoint(&self, theta: &[f64], out: &mut [f64]);
    /// Convex objective at `vars`.
    fn objective(&self, vars: &[f64]) -> Result<f64>;
    /// Largest relative cone-constraint violation at `vars`.
    fn violation(&self, vars: &[f64]) -> Result<f64>;
    /// Whether a Newton step cut below [`BLOCKED_STEP`] by a row off the face ends the polish
    /// round (the next round holds that row) instead of crawling along the row. Crawling is
    /// cheap for the dense program and tightens its certificate (README: gap 1e-15 instead of
    /// 2e-12); on the CNN's many patch rows nearly every step is blocked and each crawling
    /// step costs an `n x m` Hessian (digits warm start: 10.8 s per polish instead of 2.0 s).
    fn stop_blocked_steps(&self) -> bool {
        false
    }
}

impl FaceProgram for TwoLayerProgram<'_> {
    fn x(&self) -> &Matrix {
        TwoLayerProgram::x(self)
    }
    fn pooled_rows(&self) -> usize {
        1
    }
    fn y(&self) -> &[f64] {
        TwoLayerProgram::y(self)
    }
    fn masks(&self) -> &Masks {
        TwoLayerProgram::masks(self)
    }
    fn loss(&self) -> LossKind {
        TwoLayerProgram::loss(self)
    }
    fn lambda(&self) -> f64 {
        TwoLayerProgram::lambda(self)
    }
    fn outputs(&self) -> usize {
        TwoLayerProgram::outputs(self)
    }
    fn model(&self) -> ModelKind {
        TwoLayerProgram::model(self)
    }
    fn data(&self) -> LossImage<'_> {
        TwoLayerProgram::data(self)
    }
    fn predict(&self, vars: &[f64]) -> Result<Vec<f64>> {
        TwoLayerProgram::predict(self, vars)
    }
    fn prediction_adjoint(&self, theta: &[f64], out: &mut [f64]) {
        self.prediction_operator().adjoint(theta, out);
    }
    fn objective(&self, vars: &[f64]) -> Result<f64> {
        TwoLayerProgram::objective(self, vars)
    }
    fn violation(&self, vars: &[f64]) -> Result<f64> {
        TwoLayerProgram::violation(self, vars)
    }
}

/// For group `g` of pattern `i` with activations `X u_g`, the pattern rows to hold at zero.
pub type TightRows<'a> = dyn Fn(usize, usize, &[f64]) -> Vec<usize> + 'a;

/// A polished point and the face it lives on.
#[derive(Clone, Debug)]
pub struct Face {
    /// Weights, `d x G` (G = P or 2P), exactly zero off the face.
    pub weights: Matrix,
    /// The groups on the face with the dimension of their free subspace.
    pub groups: Vec<(usize, usize)>,
}

/// Newton step fraction below which the step counts as blocked by a row off the face.
const BLOCKED_STEP: f64 = 1e-6;

/// Largest number of reduced variables the polish works with (its Hessian is dense).
const POLISH_MAX_VARS: usize = 2000;

/// One group kept by the polish: `u_g = basis * w` with `basis` an orthonormal basis of the null
/// space of the group's active pattern constraints (the identity for gated ReLU).
struct FaceGroup {
    g: usize,
    pattern: usize,
    sign: f64,
    basis: Matrix,
    /// Offset of the group's reduced variables.
    off: usize,
}

/// Newton polish. The interior-point solution tells which groups are non-zero (`||u_g||` larger
/// than the dual slack `lambda - ||grad_g||`) and, for ReLU, which pattern constraints are tight
/// (dual larger than slack). On that face the objective is smooth in the reduced variables
/// `w_g` (`u_g = basis_g w_g`), so damped Newton converges quadratically. Returns `None` when
/// the face cannot be handled (too many variables, factorization failure); the caller keeps the
/// result only if it is no worse.
pub fn polish<P: FaceProgram + ?Sized>(
    p: &P,
    weights: &Matrix,
    tight_rows: &TightRows<'_>,
) -> Option<Face> {
    let (x, y, masks, loss, lambda) = (p.x(), p.y(), p.masks(), p.loss(), p.lambda());
    if p.outputs() != 1 {
        return None;
    }
    let np = masks.len();
    let groups = weights.ncols();
    let group = |g: usize| if g < np { (g, 1.0) } else { (g - np, -1.0) };
    let (nrows, d) = (x.nrows(), x.ncols());
    let n = y.len();
    if n == 0 || nrows % n != 0 || nrows / n != p.pooled_rows() {
        return None;
    }
    let inv_n = 1.0 / n as f64;
    let relu = p.model() == ModelKind::Relu;
    let z0 = p.predict(weights.as_slice()).ok()?;
    let (dl0, _) = loss_derivatives(loss, &z0, y);
    // Row `r` of `X` belongs to sample `r % n`: the loss derivative repeated over the pooled rows.
    let dl0_rows: Vec<f64> = (0..nrows).map(|r| dl0[r % n]).collect();

    let mut face: Vec<FaceGroup> = Vec::new();
    let mut m = 0;
    for g in 0..groups {
        let u = weights.col(g);
        let nu = crate::linalg::norm2(u);
        let (i, sign) = group(g);
        let grad: Vec<f64> = masked_xt(x, masks, i, &dl0_rows)
            .into_iter()
            .map(|v| sign * v * inv_n)
            .collect();
        let slack = lambda - crate::linalg::norm2(&grad);
        let active = nu > 0.0 && nu > slack;
        if !active {
            continue;
        }
        let basis = if relu {
            // Rows the projection onto the face would push past zero join the tight set.
            let sigma = |j: usize| if masks.get(j, i) { 1.0 } else { -1.0 };
            let mut rows = tight_rows(g, i, &x.matvec(u));
            let mut basis = null_space(x, &rows)?;
            for _ in 0..=d {
                let coef: Vec<f64> = (0..basis.ncols())
                    .map(|c| crate::linalg::dot(basis.col(c), u))
                    .collect();
                let xu = x.matvec(&basis.matvec(&coef));
                let scale = xu.iter().fold(0.0f64, |a, v| a.max(v.abs()));
                let bad: Vec<usize> = (0..nrows)
                    .filter(|&j| sigma(j) * xu[j] < -1e-12 * scale && !rows.contains(&j))
                    .collect();
                if bad.is_empty() {
                    break;
                }
                rows.extend(bad);
                basis = null_space(x, &rows)?;
            }
            basis
        } else {
            identity(d)
        };
        // A group whose weights lie (almost) off its face leaves it: Newton cannot start at
        // a zero group norm.
        let kept = (0..basis.ncols())
            .map(|c| crate::linalg::dot(basis.col(c), u).powi(2))
            .sum::<f64>()
            .sqrt();
        if basis.ncols() == 0 || kept <= 1e-9 * nu {
            continue;
        }
        face.push(FaceGroup {
            g,
            pattern: i,
            sign,
            off: m,
            basis,
        });
        m += face.last().map_or(0, |f| f.basis.ncols());
    }
    if m > POLISH_MAX_VARS {
        return None;
    }
    let to_weights = |w: &[f64]| {
        let mut out = Matrix::zeros(d, groups);
        for f in &face {
            let wf = &w[f.off..f.off + f.basis.ncols()];
            let u = f.basis.matvec(wf);
            out.col_mut(f.g).copy_from_slice(&u);
        }
        out
    };
    if m == 0 {
        return Some(Face {
            weights: Matrix::zeros(d, groups),
            groups: Vec::new(),
        });
    }

    // B = [sign_g P D_i X basis_g]_g (n x m): z = B w (P sums the pooled rows of a sample).
    let mut b = Matrix::zeros(n, m);
    for f in &face {
        let xb = x.matmul(&f.basis);
        for c in 0..f.basis.ncols() {
            let dst = b.col_mut(f.off + c);
            for (r, &v) in xb.col(c).iter().enumerate() {
                if masks.get(r, f.pattern) {
                    dst[r % n] += f.sign * v;
                }
            }
        }
    }
    // Row-feasibility data (ReLU): X basis_g per group, signs from the pattern.
    let xbases: Vec<Matrix> = if relu {
        face.iter().map(|f| x.matmul(&f.basis)).collect()
    } else {
        Vec::new()
    };
    let feasible = |w: &[f64]| -> bool {
        face.iter().zip(&xbases).all(|(f, xb)| {
            let xu = xb.matvec(&w[f.off..f.off + f.basis.ncols()]);
            let scale = xu.iter().fold(0.0f64, |a, v| a.max(v.abs()));
            xu.iter().enumerate().all(|(j, &v)| {
                let sigma = if masks.get(j, f.pattern) { 1.0 } else { -1.0 };
                sigma * v >= -1e-12 * scale
            })
        })
    };
    let group_norms = |w: &[f64]| -> Vec<f64> {
        face.iter()
            .map(|f| crate::linalg::norm2(&w[f.off..f.off + f.basis.ncols()]))
            .collect()
    };
    let value = |w: &[f64]| -> f64 {
        let z = b.matvec(w);
        loss.value(&z, y, 1) + lambda * group_norms(w).iter().sum::<f64>()
    };
    let gradient = |w: &[f64], dl: &[f64], norms: &[f64]| -> Vec<f64> {
        let mut gr: Vec<f64> = (0..m)
            .map(|c| crate::linalg::dot(b.col(c), dl) * inv_n)
            .collect();
        for (f, &nw) in face.iter().zip(norms) {
            for c in f.off..f.off + f.basis.ncols() {
                gr[c] += lambda * w[c] / nw;
            }
        }
        gr
    };

    // Start from the interior-point weights projected onto the face.
    let mut w = vec![0.0; m];
    for f in &face {
        let u = weights.col(f.g);
        for c in 0..f.basis.ncols() {
            w[f.off + c] = crate::linalg::dot(f.basis.col(c), u);
        }
    }
    if !feasible(&w) || !group_norms(&w).iter().all(|&v| v > 0.0) {
        return None;
    }
    let mut fw = value(&w);
    for _ in 0..50 {
        let z = b.matvec(&w);
        let (dl, h) = loss_derivatives(loss, &z, y);
        let norms = group_norms(&w);
        let grad = gradient(&w, &dl, &norms);
        let gmax = grad.iter().fold(0.0f64, |a, v| a.max(v.abs()));
        if gmax <= 1e-15 * (1.0 + lambda) {
            break;
        }
        // Hessian: B^T diag(h) B / n + lambda (I - w w^T / |w|^2) / |w| per group.
        let mut bh = b.clone();
        for c in 0..m {
            for (v, &hj) in bh.col_mut(c).iter_mut().zip(&h) {
                *v *= hj.sqrt();
            }
        }
        let mut hess = bh.t_matmul(&bh);
        for v in hess.as_mut_slice() {
            *v *= inv_n;
        }
        for (f, &nw) in face.iter().zip(&norms) {
            let k = f.basis.ncols();
            for a in 0..k {
                for c in 0..k {
                    let (ia, ic) = (f.off + a, f.off + c);
                    let delta = if a == c { 1.0 } else { 0.0 };
                    let v = hess.get(ia, ic) + lambda * (delta - w[ia] * w[ic] / (nw * nw)) / nw;
                    hess.set(ia, ic, v);
                }
            }
        }
        let step = newton_step(&hess, &grad)?;
        let slope = crate::linalg::dot(&grad, &step);
        // Stop unless the step is a descent direction (also stops on NaN).
        if slope.is_nan() || slope >= 0.0 {
            break;
        }
        let mut alpha = 1.0;
        let mut accepted = false;
        for _ in 0..40 {
            let trial: Vec<f64> = w.iter().zip(&step).map(|(a, s)| a + alpha * s).collect();
            if group_norms(&trial).iter().all(|&v| v > 0.0) && feasible(&trial) {
                let ft = value(&trial);
                if ft <= fw + 1e-4 * alpha * slope {
                    w = trial;
                    fw = ft;
                    accepted = true;
                    break;
                }
            }
            alpha *= 0.5;
        }
        // A step cut below BLOCKED_STEP by a row off the face only crawls along that row (each
        // iteration costs a Hessian): stop, and let the next round of the active-set sweep hold
        // the row.
        if !accepted || (alpha < BLOCKED_STEP && p.stop_blocked_steps()) {
            break;
        }
    }
    Some(Face {
        weights: to_weights(&w),
        groups: face.into_iter().map(|f| (f.g, f.basis.ncols())).collect(),
    })
}

/// Largest relative constraint violation a polished point may keep (rounding on its face).
const POLISH_FEASIBILITY: f64 = 1e-12;
/// Extra active-set rounds of the polish.
const POLISH_ROUNDS: usize = 8;

/// Newton polish of a solver's point on its face (active groups; rows whose constraint value is
/// within `1e-6` of the largest one in size counted tight), kept only when feasible up to
/// rounding, with its KKT dual bound ([`crate::certificate::relu_kkt_dual_bound`]). `None` when
/// the face cannot be polished (several outputs, too many variables, an infeasible result).
pub fn polish_and_certify<P: FaceProgram + ?Sized>(p: &P, vars: &[f64]) -> Option<Solution> {
    let d = p.x().ncols();
    let w = Matrix::from_col_major(d, vars.len() / d.max(1), vars.to_vec())?;
    let masks = p.masks();
    let tight = |_g: usize, i: usize, xu: &[f64]| -> Vec<usize> {
        let scale = xu.iter().fold(0.0f64, |a, b| a.max(b.abs()));
        (0..xu.len())
            .filter(|&j| {
                let s = if masks.get(j, i) { 1.0 } else { -1.0 };
                s * xu[j] <= 1e-6 * scale
            })
            .collect()
    };
    // A Newton step blocked by a row that was not held at zero stops near that row; the next
    // round holds it (an active-set sweep), until the objective stops improving.
    let mut face = polish(p, &w, &tight)?.weights;
    let mut best = p.objective(face.as_slice()).ok()?;
    for _ in 0..POLISH_ROUNDS {
        let Some(next) = polish(p, &face, &tight).map(|f| f.weights) else {
            break;
        };
        let f = p.objective(next.as_slice()).ok()?;
        if f >= best {
            break;
        }
        best = f;
        face = next;
    }
    let x = face.into_vec();
    // Rows on the face are zero up to rounding; anything larger is a failed polish.
    let violation = p.violation(&x).ok()?;
    if violation > POLISH_FEASIBILITY {
        return None;
    }
    let objective = p.objective(&x).ok()?;
    let dual = crate::certificate::relu_kkt_dual_bound(p, &x).ok()?;
    Some(Solution {
        x,
        status: Status::Converged,
        objective,
        dual_bound: dual,
        violation,
        iterations: 0,
        seconds: 0.0,
        trace: Vec::new(),
        multipliers: None,
        step: None,
    })
}

/// Solves `(hess + delta I) x = -grad` by a sequential Cholesky factorization (so the result
/// does not depend on the thread count), raising `delta` when the factorization fails.
fn newton_step(hess: &Matrix, grad: &[f64]) -> Option<Vec<f64>> {
    use faer::dyn_stack::{MemBuffer, MemStack};
    use faer::linalg::cholesky::llt;
    use faer::{Conj, Par};
    let m = grad.len();
    let dmax = (0..m).fold(0.0f64, |a, i| a.max(hess.get(i, i).abs()));
    let mut delta = 1e-14 * (1.0 + dmax);
    let mut buf = MemBuffer::new(llt::factor::cholesky_in_place_scratch::<f64>(
        m,
        Par::Seq,
        Default::default(),
    ));
    for _ in 0..6 {
        let mut a = hess.clone();
        for i in 0..m {
            a.set(i, i, hess.get(i, i) + delta);
        }
        let factored = llt::factor::cholesky_in_place(
            a.as_mut(),
            Default::default(),
            Par::Seq,
            MemStack::new(&mut buf),
            Default::default(),
        );
        if factored.is_ok() {
            let mut rhs = Matrix::from_col_major(m, 1, grad.iter().map(|g| -g).collect())?;
            llt::solve::solve_in_place_with_conj(
                a.as_ref(),
                Conj::No,
                rhs.as_mut(),
                Par::Seq,
                MemStack::new(&mut buf),
            );
            let step = rhs.into_vec();
            if step.iter().all(|v| v.is_finite()) {
                return Some(step);
            }
        }
        delta *= 1e3;
    }
    None
}

/// Orthonormal basis (`d x r`) of the null space of the rows `rows` of `x`; `None` when the
/// eigendecomposition fails.
fn null_space(x: &Matrix, rows: &[usize]) -> Option<Matrix> {
    let d = x.ncols();
    if rows.is_empty() {
        return Some(identity(d));
    }
    let c = x.select_rows(rows);
    let gram = c.t_matmul(&c);
    let eig = gram.as_ref().self_adjoint_eigen(faer::Side::Lower).ok()?;
    let vals = eig.S().column_vector();
    let vecs = eig.U();
    let top = (0..d).fold(0.0f64, |a, k| a.max(vals[k].abs()));
    let keep: Vec<usize> = (0..d).filter(|&k| vals[k] <= 1e-10 * top).collect();
    let mut basis = Matrix::zeros(d, keep.len());
    for (c, &k) in keep.iter().enumerate() {
        for r in 0..d {
            basis.set(r, c, vecs[(r, k)]);
        }
    }
    Some(basis)
}

/// The `d x d` identity.
fn identity(d: usize) -> Matrix {
    let mut m = Matrix::zeros(d, d);
    for k in 0..d {
        m.set(k, k, 1.0);
    }
    m
}

/// `X^T D_i v` (not divided by `n`).
fn masked_xt(x: &Matrix, masks: &Masks, i: usize, v: &[f64]) -> Vec<f64> {
    (0..x.ncols())
        .map(|k| {
            x.col(k)
                .iter()
                .zip(v)
                .enumerate()
                .filter(|(j, _)| masks.get(*j, i))
                .map(|(_, (a, b))| a * b)
                .sum()
        })
        .collect()
}

/// First and second derivatives of `loss(z_j, y_j)` in `z_j`.
fn loss_derivatives(loss: LossKind, z: &[f64], y: &[f64]) -> (Vec<f64>, Vec<f64>) {
    match loss {
        LossKind::Squared => (
            z.iter().zip(y).map(|(a, b)| a - b).collect(),
            vec![1.0; z.len()],
        ),
        // `polish` runs on one output only, which cross-entropy never has; NaN would fail every
        // finiteness check downstream.
        LossKind::CrossEntropy => (vec![f64::NAN; z.len()], vec![f64::NAN; z.len()]),
        LossKind::Logistic => z
            .iter()
            .zip(y)
            .map(|(&zj, &yj)| {
                let s = crate::loss::sigmoid(-yj * zj);
                (-yj * s, s * (1.0 - s))
            })
            .unzip(),
    }
}
