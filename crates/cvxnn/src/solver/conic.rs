//! Exact conic reference solver: the two-layer programs of DESIGN section 1 handed to Clarabel
//! (pure Rust interior point).
//!
//! This is the reference for tests and the choice for small problems; its cost grows fast with
//! `n * P` (DESIGN section 10).
//!
//! # Formulation
//!
//! Groups `g = 0..G` of `d` weights each: `G = P` for gated ReLU (`u_i`), `G = 2P` for ReLU
//! (`v_i` for `g < P`, `w_i = u_{P+i}` for `g >= P`, entering the prediction with a minus sign).
//! Group `g` uses pattern `i = g mod P`. Variables, in this order:
//!
//! * the weights `u_g` (`G d` columns), then one norm bound `s_g` per group (`G` columns);
//! * squared loss: the residuals `r = z - y` (`n` columns); the loss goes into Clarabel's
//!   quadratic objective `(1/2n) ||r||^2` (a diagonal `P` block), tied to the weights by `n`
//!   equality rows `sum_g sign_g D_i X u_g - r = y` (zero cone);
//! * logistic loss: an epigraph `t_j` and an auxiliary `a_j` per sample (`2n` columns), with
//!   `exp(-t_j) <= a_j` and `exp(-y_j z_j - t_j) <= 1 - a_j` (two exponential cones per sample,
//!   the linear row `a_j + b_j <= 1` folded into the second cone), so that
//!   `t_j >= log(1 + exp(-y_j z_j))`. The prediction `z_j` is substituted directly into the
//!   second cone's first row: no `z` variables and no equality rows.
//!
//! Cone rows, in this order: the loss rows (zero cone or exponential cones), for ReLU the pattern
//! constraints `(2 D_i - I) X u_g >= 0` (`G n` nonnegative rows), and one second-order cone
//! `(s_g, u_g)` of dimension `d + 1` per group (so `s_g >= ||u_g||`). The objective is
//! `(1/n) sum_j loss_j + lambda sum_g s_g`, exactly the scaling of DESIGN section 0.
//!
//! The constraint matrix is built directly in compressed-column form, one weight column at a time
//! from `X`'s column and the pattern bits (about `1.5 n d G` non-zeros for ReLU, `n d G / 2` for
//! gated ReLU with balanced patterns); no dense `n x dP` product is ever formed.
//!
//! Squared loss as a quadratic objective rather than a second-order-cone epigraph: measured at
//! n=200, d=10, P=100 the two are equally fast for ReLU, and the quadratic form needs fewer
//! iterations for gated ReLU (9 vs 12, about 2x faster).
//!
//! # Polish
//!
//! Interior-point solutions are accurate in the objective, but a group's direction is only
//! accurate to about `sqrt(tol) / ||u_g||` (second-order-cone complementarity), and zero groups
//! come back as `1e-9`-sized noise. After a solved run, [`solve_conic`] takes the face the
//! interior point identifies (non-zero groups; for ReLU, tight pattern constraints), runs damped
//! Newton on the objective restricted to it (smooth there), and keeps the result only when it is
//! feasible and not worse: zero groups become exact zeros and the gated-ReLU KKT residual drops
//! to `1e-11` or below in the tests (against `1e-5..1e-3` without it).

use std::time::Instant;

use clarabel::algebra::CscMatrix;
use clarabel::solver::{DefaultSettings, DefaultSolver, IPSolver, SolverStatus, SupportedConeT};
use serde::{Deserialize, Serialize};

use crate::error::{CvxnnError, Result};
use crate::linalg::Matrix;
use crate::loss::LossKind;
use crate::patterns::Masks;
use crate::program::polish::polish;
use crate::program::{ModelKind, TwoLayerProgram};

/// A two-layer convex program as the conic solver sees it.
#[derive(Clone, Copy, Debug)]
pub struct ConicProblem<'a> {
    /// Training inputs `X` (`n x d`, already preprocessed, bias column included).
    pub x: &'a Matrix,
    /// Targets `y` (length `n`; `±1` labels for the logistic loss).
    pub y: &'a [f64],
    /// The `P` activation patterns `D_1..D_P` over the `n` samples.
    pub masks: &'a Masks,
    /// Data-fit term.
    pub loss: LossKind,
    /// Gated ReLU (group lasso) or ReLU (cone-constrained) program.
    pub model: ModelKind,
    /// Group-norm penalty weight `lambda >= 0`.
    pub lambda: f64,
}

/// Settings of the interior-point solve.
#[derive(Clone, Debug, PartialEq)]
pub struct ConicSettings {
    /// Maximum number of interior-point iterations (default 200).
    pub max_iter: u32,
    /// Convergence tolerance, used for Clarabel's absolute and relative duality gap and its
    /// feasibility tolerance (default `1e-8`). Must be finite and positive.
    pub tol: f64,
    /// Wall-clock limit of the interior-point iterations in seconds (default: no limit). Must be
    /// positive; `f64::INFINITY` means no limit.
    pub time_limit_s: f64,
    /// Print Clarabel's iteration log to standard output (default: quiet).
    pub verbose: bool,
    /// Refine a solved interior-point solution by Newton's method on the face it identifies
    /// (default: on). Interior-point accuracy in the weights' directions is only about
    /// `sqrt(tol)` (second-order-cone complementarity); the polish brings the KKT residual to
    /// rounding level, and is kept only when it does not raise the objective or break a
    /// constraint.
    pub polish: bool,
}

impl Default for ConicSettings {
    fn default() -> Self {
        ConicSettings {
            max_iter: 200,
            tol: 1e-8,
            time_limit_s: f64::INFINITY,
            verbose: false,
            polish: true,
        }
    }
}

/// How the interior-point solve ended (Clarabel's status, mapped one to one where possible).
///
/// The two-layer programs are always feasible (all weights zero) and bounded below (losses are
/// non-negative), so the infeasibility statuses can only come from numerical trouble.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ConicStatus {
    /// Converged to the requested tolerance.
    Solved,
    /// Converged only to Clarabel's reduced tolerances.
    AlmostSolved,
    /// Clarabel returned a primal infeasibility certificate (full or reduced accuracy); the
    /// weights are that certificate, not a solution.
    PrimalInfeasible,
    /// Clarabel returned a dual infeasibility certificate (full or reduced accuracy); the
    /// weights are that certificate, not a solution.
    DualInfeasible,
    /// The iteration limit was reached; the weights are the last iterate.
    MaxIterations,
    /// The time limit was reached; the weights are the last iterate.
    MaxTime,
    /// Clarabel stopped on a numerical error (e.g. a failed factorization).
    NumericalError,
    /// Clarabel stopped for lack of progress.
    InsufficientProgress,
    /// Anything else (the solver did not run, or a callback stopped it).
    Other,
}

impl ConicStatus {
    /// True for [`ConicStatus::Solved`] and [`ConicStatus::AlmostSolved`]: the weights are a
    /// (possibly reduced-accuracy) optimal solution.
    pub fn is_solved(self) -> bool {
        matches!(self, ConicStatus::Solved | ConicStatus::AlmostSolved)
    }
}

impl From<SolverStatus> for ConicStatus {
    fn from(s: SolverStatus) -> Self {
        match s {
            SolverStatus::Solved => ConicStatus::Solved,
            SolverStatus::AlmostSolved => ConicStatus::AlmostSolved,
            SolverStatus::PrimalInfeasible | SolverStatus::AlmostPrimalInfeasible => {
                ConicStatus::PrimalInfeasible
            }
            SolverStatus::DualInfeasible | SolverStatus::AlmostDualInfeasible => {
                ConicStatus::DualInfeasible
            }
            SolverStatus::MaxIterations => ConicStatus::MaxIterations,
            SolverStatus::MaxTime => ConicStatus::MaxTime,
            SolverStatus::NumericalError => ConicStatus::NumericalError,
            SolverStatus::InsufficientProgress => ConicStatus::InsufficientProgress,
            SolverStatus::Unsolved | SolverStatus::CallbackTerminated => ConicStatus::Other,
        }
    }
}

/// Result of [`solve_conic`].
#[derive(Clone, Debug)]
pub struct ConicSolution {
    /// The weights: `d x P` for gated ReLU (column `i` = `u_i`); `d x 2P` for ReLU (columns
    /// `0..P` = `v_i`, columns `P..2P` = `w_i`).
    pub weights: Matrix,
    /// The objective `(1/n) sum_j loss(z_j, y_j) + lambda * (sum of group norms)`, recomputed from
    /// `weights` (not Clarabel's internal value).
    pub objective: f64,
    /// How the solve ended.
    pub status: ConicStatus,
    /// Interior-point iterations taken.
    pub iterations: u32,
    /// Whether the Newton polish (see [`ConicSettings::polish`]) was applied and kept; `status`
    /// still describes the interior-point run it started from.
    pub polished: bool,
    /// Wall-clock seconds, building the conic program included.
    pub seconds: f64,
}

/// Solves a two-layer convex program (gated ReLU or ReLU, squared or logistic loss) exactly with
/// Clarabel's interior-point method.
///
/// Returns [`CvxnnError::Shape`] when `x`, `y` and `masks` do not fit together and
/// [`CvxnnError::InvalidArgument`] for an empty pattern set, a bad `lambda`, non-finite data,
/// non-`±1` labels with the logistic loss, or bad settings. A solve that does not converge is
/// not an error: see [`ConicSolution::status`].
pub fn solve_conic(p: &ConicProblem, s: &ConicSettings) -> Result<ConicSolution> {
    let start = Instant::now();
    validate(p, s)?;
    let layout = Layout::new(p);
    let (a, b, cones) = build_constraints(p, &layout);
    let (pmat, q) = build_objective(p, &layout);

    let defaults = DefaultSettings::<f64>::default();
    let settings = DefaultSettings::<f64> {
        max_iter: s.max_iter,
        time_limit: s.time_limit_s,
        verbose: s.verbose,
        tol_gap_abs: s.tol,
        tol_gap_rel: s.tol,
        tol_feas: s.tol,
        // "Almost solved" must never be stricter than "solved".
        reduced_tol_gap_abs: defaults.reduced_tol_gap_abs.max(s.tol),
        reduced_tol_gap_rel: defaults.reduced_tol_gap_rel.max(s.tol),
        reduced_tol_feas: defaults.reduced_tol_feas.max(s.tol),
        ..defaults
    };
    let mut solver = DefaultSolver::new(&pmat, &q, &a, &b, &cones, settings)
        .map_err(|e| CvxnnError::arg("conic program", format!("Clarabel rejected it: {e}")))?;
    solver.solve();
    let sol = &solver.solution;

    let (d, groups) = (layout.d, layout.groups);
    if sol.x.len() != layout.ncols {
        return Err(CvxnnError::arg(
            "conic program",
            format!(
                "Clarabel returned {} values for {} variables",
                sol.x.len(),
                layout.ncols
            ),
        ));
    }
    let mut weights = Matrix::zeros(d, groups);
    for g in 0..groups {
        weights
            .col_mut(g)
            .copy_from_slice(&sol.x[g * d..(g + 1) * d]);
    }
    let status = ConicStatus::from(sol.status);
    let mut objective = objective(p, &weights);
    let mut polished = false;
    if s.polish && status.is_solved() && objective.is_finite() {
        // The polish needs a valid first-order program (lambda > 0); without one, no polish.
        let program = TwoLayerProgram::new(p.x, p.y, p.masks, p.loss, p.model, p.lambda).ok();
        // A pattern row is tight when its dual exceeds its slack.
        let tight = |g: usize, i: usize, xu: &[f64]| -> Vec<usize> {
            (0..layout.n)
                .filter(|&j| {
                    let sigma = if p.masks.get(j, i) { 1.0 } else { -1.0 };
                    sol.z
                        .get(layout.row_nn + g * layout.n + j)
                        .copied()
                        .unwrap_or(0.0)
                        > sigma * xu[j]
                })
                .collect()
        };
        if let Some(pw) = program
            .as_ref()
            .and_then(|pr| polish(pr, &weights, &tight))
            .map(|f| f.weights)
        {
            let f = self::objective(p, &pw);
            if f <= objective + 1e-12 * objective.abs().max(1.0) {
                weights = pw;
                objective = f;
                polished = true;
            }
        }
    }
    Ok(ConicSolution {
        weights,
        objective,
        status,
        iterations: sol.iterations,
        polished,
        seconds: start.elapsed().as_secs_f64(),
    })
}

/// Checks shapes, domains and settings before anything is built.
fn validate(p: &ConicProblem, s: &ConicSettings) -> Result<()> {
    let (n, d) = (p.x.nrows(), p.x.ncols());
    if p.loss == LossKind::CrossEntropy {
        return Err(CvxnnError::arg(
            "solver",
            "the conic solver takes one output (squared or logistic loss); use the first-order solver for cross-entropy",
        ));
    }
    if p.y.len() != n {
        return Err(CvxnnError::Shape(format!(
            "x has {n} rows but y has {} entries",
            p.y.len()
        )));
    }
    if p.masks.n() != n {
        return Err(CvxnnError::Shape(format!(
            "x has {n} rows but the patterns cover {} samples",
            p.masks.n()
        )));
    }
    if n == 0 {
        return Err(CvxnnError::Shape("no samples (x has 0 rows)".into()));
    }
    if d == 0 {
        return Err(CvxnnError::Shape("no features (x has 0 columns)".into()));
    }
    if p.masks.is_empty() {
        return Err(CvxnnError::arg(
            "masks",
            "at least one activation pattern is needed",
        ));
    }
    if !(p.lambda.is_finite() && p.lambda >= 0.0) {
        return Err(CvxnnError::arg(
            "lambda",
            format!("must be finite and >= 0, got {}", p.lambda),
        ));
    }
    if p.x.as_slice().iter().any(|v| !v.is_finite()) {
        return Err(CvxnnError::arg("x", "contains NaN or infinite values"));
    }
    if p.y.iter().any(|v| !v.is_finite()) {
        return Err(CvxnnError::arg("y", "contains NaN or infinite values"));
    }
    if p.loss == LossKind::Logistic {
        if let Some(j) = p.y.iter().position(|&v| v != 1.0 && v != -1.0) {
            return Err(CvxnnError::arg(
                "y",
                format!(
                    "the logistic loss needs labels -1 or +1; sample {j} has {}",
                    p.y[j]
                ),
            ));
        }
    }
    if !(s.tol.is_finite() && s.tol > 0.0) {
        return Err(CvxnnError::arg(
            "tol",
            format!("must be finite and > 0, got {}", s.tol),
        ));
    }
    if s.time_limit_s.is_nan() || s.time_limit_s <= 0.0 {
        return Err(CvxnnError::arg(
            "time_limit_s",
            format!(
                "must be > 0 (infinity for no limit), got {}",
                s.time_limit_s
            ),
        ));
    }
    Ok(())
}

/// Column and row offsets of the conic program.
struct Layout {
    n: usize,
    d: usize,
    /// Number of patterns `P`.
    np: usize,
    /// Number of weight groups `G` (`P` or `2P`).
    groups: usize,
    /// First norm-bound column.
    col_s: usize,
    /// First loss column (`r` for squared, `t` for logistic).
    col_loss: usize,
    /// Total number of columns.
    ncols: usize,
    /// Rows of the loss block (`n` zero rows or `6n` exponential-cone rows).
    rows_loss: usize,
    /// First pattern-constraint row (ReLU only).
    row_nn: usize,
    /// Rows of the pattern constraints (`G n` for ReLU, 0 otherwise).
    rows_nn: usize,
    /// First second-order-cone row.
    row_soc: usize,
    /// Total number of rows.
    nrows: usize,
}

impl Layout {
    fn new(p: &ConicProblem) -> Self {
        let (n, d, np) = (p.x.nrows(), p.x.ncols(), p.masks.len());
        let groups = match p.model {
            ModelKind::GatedRelu => np,
            ModelKind::Relu => 2 * np,
        };
        let col_s = groups * d;
        let col_loss = col_s + groups;
        let ncols = col_loss
            + match p.loss {
                LossKind::Squared => n,
                LossKind::Logistic | LossKind::CrossEntropy => 2 * n,
            };
        let rows_loss = match p.loss {
            LossKind::Squared => n,
            LossKind::Logistic | LossKind::CrossEntropy => 6 * n,
        };
        let rows_nn = match p.model {
            ModelKind::GatedRelu => 0,
            ModelKind::Relu => groups * n,
        };
        let row_nn = rows_loss;
        let row_soc = row_nn + rows_nn;
        let nrows = row_soc + groups * (d + 1);
        Layout {
            n,
            d,
            np,
            groups,
            col_s,
            col_loss,
            ncols,
            rows_loss,
            row_nn,
            rows_nn,
            row_soc,
            nrows,
        }
    }

    /// Pattern index and prediction sign of group `g`.
    fn group(&self, g: usize) -> (usize, f64) {
        if g < self.np {
            (g, 1.0)
        } else {
            (g - self.np, -1.0)
        }
    }
}

/// Builds `A`, `b` and the cone list (Clarabel's `A x + s = b`, `s` in the cones), column by
/// column with row indices sorted inside each column.
fn build_constraints(
    p: &ConicProblem,
    l: &Layout,
) -> (CscMatrix<f64>, Vec<f64>, Vec<SupportedConeT<f64>>) {
    let (n, d) = (l.n, l.d);
    let relu = p.model == ModelKind::Relu;
    let logistic = p.loss == LossKind::Logistic;

    // Non-zeros: count exactly so the vectors never reallocate.
    let mut nnz = l.groups /* s_g */ + l.groups * d /* SOC rows of u_g */;
    nnz += match p.loss {
        LossKind::Squared => n,
        LossKind::Logistic | LossKind::CrossEntropy => 4 * n,
    };
    for g in 0..l.groups {
        let (i, _) = l.group(g);
        for k in 0..d {
            let xk = p.x.col(k);
            for (j, &v) in xk.iter().enumerate() {
                if v != 0.0 {
                    nnz += usize::from(p.masks.get(j, i)) + usize::from(relu);
                }
            }
        }
    }

    let mut colptr = Vec::with_capacity(l.ncols + 1);
    let mut rowval = Vec::with_capacity(nnz);
    let mut nzval = Vec::with_capacity(nnz);
    colptr.push(0);

    // Weight columns.
    for g in 0..l.groups {
        let (i, sign) = l.group(g);
        for k in 0..d {
            let xk = p.x.col(k);
            // Loss rows: the prediction z_j = sum_g sign_g (D_i X u_g)_j.
            for (j, &v) in xk.iter().enumerate() {
                if v != 0.0 && p.masks.get(j, i) {
                    if logistic {
                        rowval.push(6 * j + 3);
                        nzval.push(p.y[j] * sign * v);
                    } else {
                        rowval.push(j);
                        nzval.push(sign * v);
                    }
                }
            }
            // Pattern constraints: s = (2 D_i - I) X u_g >= 0, i.e. A = -(2 D_i - I) X.
            if relu {
                let base = l.row_nn + g * n;
                for (j, &v) in xk.iter().enumerate() {
                    if v != 0.0 {
                        let sigma = if p.masks.get(j, i) { 1.0 } else { -1.0 };
                        rowval.push(base + j);
                        nzval.push(-sigma * v);
                    }
                }
            }
            // Second-order cone (s_g, u_g): s = -A x.
            rowval.push(l.row_soc + g * (d + 1) + 1 + k);
            nzval.push(-1.0);
            colptr.push(rowval.len());
        }
    }
    // Norm-bound columns.
    for g in 0..l.groups {
        rowval.push(l.row_soc + g * (d + 1));
        nzval.push(-1.0);
        colptr.push(rowval.len());
    }
    // Loss columns.
    if logistic {
        // t_j: exp cone 1 first row s = -t_j; exp cone 2 first row s = -y_j z_j - t_j.
        for j in 0..n {
            rowval.extend_from_slice(&[6 * j, 6 * j + 3]);
            nzval.extend_from_slice(&[1.0, 1.0]);
            colptr.push(rowval.len());
        }
        // a_j: exp cone 1 third row s = a_j; exp cone 2 third row s = 1 - a_j.
        for j in 0..n {
            rowval.extend_from_slice(&[6 * j + 2, 6 * j + 5]);
            nzval.extend_from_slice(&[-1.0, 1.0]);
            colptr.push(rowval.len());
        }
    } else {
        // r_j: z_j - r_j = y_j.
        for j in 0..n {
            rowval.push(j);
            nzval.push(-1.0);
            colptr.push(rowval.len());
        }
    }
    debug_assert_eq!(rowval.len(), nnz);
    debug_assert_eq!(colptr.len(), l.ncols + 1);

    let mut b = vec![0.0; l.nrows];
    let mut cones = Vec::with_capacity(2 * n + 2 + l.groups);
    if logistic {
        for j in 0..n {
            b[6 * j + 1] = 1.0;
            b[6 * j + 4] = 1.0;
            b[6 * j + 5] = 1.0;
            cones.push(SupportedConeT::ExponentialConeT());
            cones.push(SupportedConeT::ExponentialConeT());
        }
    } else {
        b[..n].copy_from_slice(p.y);
        cones.push(SupportedConeT::ZeroConeT(n));
    }
    debug_assert_eq!(l.row_nn, l.rows_loss);
    if l.rows_nn > 0 {
        cones.push(SupportedConeT::NonnegativeConeT(l.rows_nn));
    }
    for _ in 0..l.groups {
        cones.push(SupportedConeT::SecondOrderConeT(d + 1));
    }
    let a = CscMatrix::new(l.nrows, l.ncols, colptr, rowval, nzval);
    (a, b, cones)
}

/// Builds the quadratic part `P` (upper triangle) and the linear part `q` of the objective.
fn build_objective(p: &ConicProblem, l: &Layout) -> (CscMatrix<f64>, Vec<f64>) {
    let n = l.n;
    let inv_n = 1.0 / n as f64;
    let mut q = vec![0.0; l.ncols];
    q[l.col_s..l.col_loss].fill(p.lambda);
    let pmat = match p.loss {
        LossKind::Squared => {
            // (1/2) r^T (I/n) r on the residual columns.
            let mut colptr = vec![0; l.col_loss + 1];
            colptr.extend(1..=n);
            let rowval = (l.col_loss..l.col_loss + n).collect();
            CscMatrix::new(l.ncols, l.ncols, colptr, rowval, vec![inv_n; n])
        }
        LossKind::Logistic | LossKind::CrossEntropy => {
            q[l.col_loss..l.col_loss + n].fill(inv_n);
            CscMatrix::zeros((l.ncols, l.ncols))
        }
    };
    (pmat, q)
}

/// Predictions `z = sum_g sign_g D_i X u_g` of a weight matrix (`d x P` or `d x 2P`).
fn predictions(p: &ConicProblem, weights: &Matrix) -> Vec<f64> {
    let (n, np) = (p.x.nrows(), p.masks.len());
    let mut z = vec![0.0; n];
    for g in 0..weights.ncols() {
        let (i, sign) = if g < np { (g, 1.0) } else { (g - np, -1.0) };
        let xu = p.x.matvec(weights.col(g));
        for (j, (zj, v)) in z.iter_mut().zip(xu).enumerate() {
            if p.masks.get(j, i) {
                *zj += sign * v;
            }
        }
    }
    z
}

/// The objective of DESIGN section 0 at `weights`.
fn objective(p: &ConicProblem, weights: &Matrix) -> f64 {
    let z = predictions(p, weights);
    let penalty: f64 = (0..weights.ncols())
        .map(|g| crate::linalg::norm2(weights.col(g)))
        .sum();
    p.loss.value(&z, p.y, 1) + p.lambda * penalty
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::linalg::{dot, norm2};
    use crate::patterns::PatternSet;
    use rand::{RngExt, SeedableRng};
    use rand_chacha::ChaCha8Rng;
    use rand_distr::StandardNormal;

    /// Seeded data: Gaussian `X` with a bias column of ones last, targets from a random ReLU
    /// network plus noise (their signs for the logistic loss), up to `np` distinct patterns from
    /// Gaussian gates.
    fn data(seed: u64, n: usize, d: usize, np: usize, loss: LossKind) -> (Matrix, Vec<f64>, Masks) {
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let mut x = Matrix::zeros(n, d);
        for j in 0..n {
            for k in 0..d {
                let v = if k + 1 == d {
                    1.0
                } else {
                    rng.sample::<f64, _>(StandardNormal)
                };
                x.set(j, k, v);
            }
        }
        let mut y = vec![0.0; n];
        for _ in 0..3 {
            let u: Vec<f64> = (0..d)
                .map(|_| rng.sample::<f64, _>(StandardNormal))
                .collect();
            let a: f64 = rng.sample(StandardNormal);
            for (j, yj) in y.iter_mut().enumerate() {
                *yj += a * dot(&x.row(j), &u).max(0.0);
            }
        }
        for yj in y.iter_mut() {
            *yj += 0.3 * rng.sample::<f64, _>(StandardNormal);
            if loss == LossKind::Logistic {
                *yj = if *yj >= 0.0 { 1.0 } else { -1.0 };
            }
        }
        let mut set = PatternSet::new(n);
        let mut tries = 0;
        while set.len() < np && tries < 100 * np {
            tries += 1;
            let g: Vec<f64> = (0..d)
                .map(|_| rng.sample::<f64, _>(StandardNormal))
                .collect();
            let active: Vec<bool> = (0..n).map(|j| dot(&x.row(j), &g) >= 0.0).collect();
            set.insert_bools(&active);
        }
        (x, y, set.into_masks())
    }

    fn problem<'a>(
        x: &'a Matrix,
        y: &'a [f64],
        masks: &'a Masks,
        loss: LossKind,
        model: ModelKind,
        lambda: f64,
    ) -> ConicProblem<'a> {
        ConicProblem {
            x,
            y,
            masks,
            loss,
            model,
            lambda,
        }
    }

    /// `dL/dz` of the mean loss, times `n` (so `X^T D_i` of it over `n` is the group gradient).
    fn loss_grad(loss: LossKind, z: &[f64], y: &[f64]) -> Vec<f64> {
        z.iter()
            .zip(y)
            .map(|(&zj, &yj)| match loss {
                LossKind::Squared => zj - yj,
                LossKind::Logistic | LossKind::CrossEntropy => -yj / (1.0 + (yj * zj).exp()),
            })
            .collect()
    }

    /// `X^T D_i r / n`.
    fn group_corr(x: &Matrix, masks: &Masks, i: usize, r: &[f64]) -> Vec<f64> {
        let n = x.nrows();
        (0..x.ncols())
            .map(|k| {
                x.col(k)
                    .iter()
                    .zip(r)
                    .enumerate()
                    .filter(|(j, _)| masks.get(*j, i))
                    .map(|(_, (a, b))| a * b)
                    .sum::<f64>()
                    / n as f64
            })
            .collect()
    }

    /// Largest violation of the gated-ReLU KKT conditions at `weights`.
    fn gated_kkt_violation(p: &ConicProblem, weights: &Matrix) -> f64 {
        let z = predictions(p, weights);
        let neg_grad: Vec<f64> = loss_grad(p.loss, &z, p.y).iter().map(|v| -v).collect();
        let mut worst: f64 = 0.0;
        let mut active = 0;
        for i in 0..p.masks.len() {
            let gi = group_corr(p.x, p.masks, i, &neg_grad);
            let u = weights.col(i);
            let nu = norm2(u);
            if nu > 1e-5 {
                active += 1;
                let diff: Vec<f64> = gi
                    .iter()
                    .zip(u)
                    .map(|(g, uk)| g - p.lambda * uk / nu)
                    .collect();
                worst = worst.max(norm2(&diff));
            } else {
                worst = worst.max(norm2(&gi) - p.lambda);
            }
        }
        assert!(active > 0, "expected some non-zero groups");
        worst
    }

    /// `max_i ||X^T D_i g(0)|| / n` with `g(0)` the loss gradient at `z = 0`.
    fn lambda_max(x: &Matrix, y: &[f64], masks: &Masks, loss: LossKind) -> f64 {
        let g0 = loss_grad(loss, &vec![0.0; y.len()], y);
        (0..masks.len())
            .map(|i| norm2(&group_corr(x, masks, i, &g0)))
            .fold(0.0, f64::max)
    }

    #[test]
    fn gated_squared_kkt() {
        for (seed, n) in [(1, 20), (2, 30)] {
            let (x, y, masks) = data(seed, n, 3, 8, LossKind::Squared);
            let lmax = lambda_max(&x, &y, &masks, LossKind::Squared);
            let p = problem(
                &x,
                &y,
                &masks,
                LossKind::Squared,
                ModelKind::GatedRelu,
                0.1 * lmax,
            );
            let sol = solve_conic(&p, &ConicSettings::default()).unwrap();
            assert_eq!(sol.status, ConicStatus::Solved);
            assert_eq!((sol.weights.nrows(), sol.weights.ncols()), (3, masks.len()));
            assert!(sol.polished);
            let v = gated_kkt_violation(&p, &sol.weights);
            assert!(v < 1e-9, "KKT violation {v}");
        }
    }

    #[test]
    fn gated_logistic_kkt() {
        for (seed, n) in [(3, 20), (4, 30)] {
            let (x, y, masks) = data(seed, n, 3, 8, LossKind::Logistic);
            let lmax = lambda_max(&x, &y, &masks, LossKind::Logistic);
            let p = problem(
                &x,
                &y,
                &masks,
                LossKind::Logistic,
                ModelKind::GatedRelu,
                0.1 * lmax,
            );
            let sol = solve_conic(&p, &ConicSettings::default()).unwrap();
            assert_eq!(sol.status, ConicStatus::Solved);
            assert!(sol.polished);
            let v = gated_kkt_violation(&p, &sol.weights);
            assert!(v < 1e-9, "KKT violation {v}");
        }
    }

    #[test]
    fn relu_feasible_and_above_gated() {
        for loss in [LossKind::Squared, LossKind::Logistic] {
            for seed in [5, 6] {
                let (x, y, masks) = data(seed, 25, 3, 10, loss);
                let np = masks.len();
                let lambda = 0.05 * lambda_max(&x, &y, &masks, loss);
                let s = ConicSettings::default();
                let relu = solve_conic(&problem(&x, &y, &masks, loss, ModelKind::Relu, lambda), &s)
                    .unwrap();
                let gated = solve_conic(
                    &problem(&x, &y, &masks, loss, ModelKind::GatedRelu, lambda),
                    &s,
                )
                .unwrap();
                assert_eq!(relu.status, ConicStatus::Solved, "{loss:?}");
                assert_eq!(gated.status, ConicStatus::Solved, "{loss:?}");
                assert_eq!(relu.weights.ncols(), 2 * np);
                // (2 D_i - I) X v_i >= 0 and (2 D_i - I) X w_i >= 0.
                let mut worst: f64 = 0.0;
                for g in 0..2 * np {
                    let i = g % np;
                    let xv = x.matvec(relu.weights.col(g));
                    for (j, v) in xv.iter().enumerate() {
                        let sigma = if masks.get(j, i) { 1.0 } else { -1.0 };
                        worst = worst.max(-sigma * v);
                    }
                }
                assert!(worst < 1e-7, "{loss:?}: constraint violation {worst}");
                assert!(
                    relu.objective >= gated.objective - 1e-7,
                    "{loss:?}: relu {} < gated {}",
                    relu.objective,
                    gated.objective
                );
                assert!(relu.objective.is_finite() && relu.objective > 0.0);
            }
        }
    }

    #[test]
    fn lambda_zero_is_handled() {
        for loss in [LossKind::Squared, LossKind::Logistic] {
            let (x, y, masks) = data(13, 20, 3, 5, loss);
            let s = ConicSettings::default();
            let gated = solve_conic(
                &problem(&x, &y, &masks, loss, ModelKind::GatedRelu, 0.0),
                &s,
            )
            .unwrap();
            let relu =
                solve_conic(&problem(&x, &y, &masks, loss, ModelKind::Relu, 0.0), &s).unwrap();
            for sol in [&gated, &relu] {
                assert!(sol.objective.is_finite() && sol.objective >= 0.0);
                assert!(sol.weights.as_slice().iter().all(|v| v.is_finite()));
            }
            if gated.status.is_solved() && relu.status.is_solved() {
                assert!(relu.objective >= gated.objective - 1e-7);
            }
        }
    }

    #[test]
    fn large_lambda_gives_zero() {
        for loss in [LossKind::Squared, LossKind::Logistic] {
            let (x, y, masks) = data(7, 20, 3, 6, loss);
            let lambda = 1.01 * lambda_max(&x, &y, &masks, loss);
            let loss0 = loss.value(&vec![0.0; y.len()], &y, 1);
            for model in [ModelKind::GatedRelu, ModelKind::Relu] {
                let p = problem(&x, &y, &masks, loss, model, lambda);
                let sol = solve_conic(&p, &ConicSettings::default()).unwrap();
                assert_eq!(sol.status, ConicStatus::Solved);
                let big = sol
                    .weights
                    .as_slice()
                    .iter()
                    .fold(0.0f64, |m, v| m.max(v.abs()));
                assert!(big < 1e-6, "{loss:?} {model:?}: weight {big}");
                assert!(
                    (sol.objective - loss0).abs() < 1e-7,
                    "{loss:?} {model:?}: {} vs {loss0}",
                    sol.objective
                );
            }
        }
    }

    #[test]
    fn scalar_group_lasso_closed_form() {
        let n = 15;
        let mut rng = ChaCha8Rng::seed_from_u64(8);
        // Positive inputs so the all-active pattern also admits positive ReLU weights.
        let xs: Vec<f64> = (0..n).map(|_| 0.5 + rng.random::<f64>()).collect();
        let y: Vec<f64> = xs
            .iter()
            .map(|v| 0.7 * v + 0.2 * rng.sample::<f64, _>(StandardNormal))
            .collect();
        let x = Matrix::from_col_major(n, 1, xs.clone()).unwrap();
        let mut masks = Masks::new(n);
        masks.push_bools(&vec![true; n]);
        let (xy, xx) = (dot(&xs, &y) / n as f64, dot(&xs, &xs) / n as f64);
        for lambda in [0.0, 0.05, 0.3, 0.5 * xy, 2.0 * xy] {
            let u = (xy.abs() - lambda).max(0.0) * xy.signum() / xx;
            let expected = 0.5 * (0..n).map(|j| (xs[j] * u - y[j]).powi(2)).sum::<f64>() / n as f64
                + lambda * u.abs();
            for model in [ModelKind::GatedRelu, ModelKind::Relu] {
                let p = problem(&x, &y, &masks, LossKind::Squared, model, lambda);
                let sol = solve_conic(&p, &ConicSettings::default()).unwrap();
                assert_eq!(sol.status, ConicStatus::Solved);
                let got = match model {
                    ModelKind::GatedRelu => sol.weights.get(0, 0),
                    ModelKind::Relu => sol.weights.get(0, 0) - sol.weights.get(0, 1),
                };
                assert!(
                    (got - u).abs() < 1e-7,
                    "{model:?} lambda {lambda}: {got} vs {u}"
                );
                assert!((sol.objective - expected).abs() < 1e-9);
            }
        }
    }

    #[test]
    fn polish_agrees_with_a_tight_interior_point() {
        let raw = ConicSettings {
            polish: false,
            tol: 1e-10,
            ..ConicSettings::default()
        };
        for loss in [LossKind::Squared, LossKind::Logistic] {
            let (x, y, masks) = data(12, 24, 3, 8, loss);
            let lambda = 0.05 * lambda_max(&x, &y, &masks, loss);
            for model in [ModelKind::GatedRelu, ModelKind::Relu] {
                let p = problem(&x, &y, &masks, loss, model, lambda);
                let pol = solve_conic(&p, &ConicSettings::default()).unwrap();
                let tight = solve_conic(&p, &raw).unwrap();
                assert!(pol.polished, "{loss:?} {model:?}");
                assert!(!tight.polished);
                assert!(
                    tight.status.is_solved(),
                    "{loss:?} {model:?}: {:?}",
                    tight.status
                );
                let gap = tight.objective - pol.objective;
                assert!(
                    (-1e-12..1e-8).contains(&gap),
                    "{loss:?} {model:?}: polished {} vs interior point {}",
                    pol.objective,
                    tight.objective
                );
            }
        }
        // Without the polish, the accuracy of a group's direction is only about
        // sqrt(tol) / ||u_i||: coarse for small groups.
        let (x, y, masks) = data(2, 30, 3, 8, LossKind::Squared);
        let lambda = 0.1 * lambda_max(&x, &y, &masks, LossKind::Squared);
        let p = problem(
            &x,
            &y,
            &masks,
            LossKind::Squared,
            ModelKind::GatedRelu,
            lambda,
        );
        let s = ConicSettings {
            polish: false,
            ..ConicSettings::default()
        };
        let sol = solve_conic(&p, &s).unwrap();
        assert!(!sol.polished);
        let v = gated_kkt_violation(&p, &sol.weights);
        assert!(v < 1e-2, "unpolished KKT violation {v}");
    }

    #[test]
    fn bad_inputs_are_errors() {
        let (x, y, masks) = data(9, 10, 3, 4, LossKind::Squared);
        let s = ConicSettings::default();
        let ok = problem(&x, &y, &masks, LossKind::Squared, ModelKind::Relu, 0.1);
        assert!(solve_conic(&ok, &s).is_ok());

        let short = &y[..9];
        let p = ConicProblem { y: short, ..ok };
        assert!(matches!(solve_conic(&p, &s), Err(CvxnnError::Shape(_))));

        let other_n = Masks::new(11);
        let p = ConicProblem {
            masks: &other_n,
            ..ok
        };
        assert!(matches!(solve_conic(&p, &s), Err(CvxnnError::Shape(_))));

        let empty = Masks::new(10);
        let p = ConicProblem {
            masks: &empty,
            ..ok
        };
        assert!(matches!(
            solve_conic(&p, &s),
            Err(CvxnnError::InvalidArgument { .. })
        ));

        for lambda in [-1.0, f64::NAN, f64::INFINITY] {
            let p = ConicProblem { lambda, ..ok };
            assert!(matches!(
                solve_conic(&p, &s),
                Err(CvxnnError::InvalidArgument { .. })
            ));
        }

        let p = ConicProblem {
            loss: LossKind::Logistic,
            ..ok
        };
        assert!(matches!(
            solve_conic(&p, &s),
            Err(CvxnnError::InvalidArgument { .. })
        ));

        let mut bad_y = y.clone();
        bad_y[3] = f64::NAN;
        let p = ConicProblem { y: &bad_y, ..ok };
        assert!(matches!(
            solve_conic(&p, &s),
            Err(CvxnnError::InvalidArgument { .. })
        ));

        let mut bad_x = x.clone();
        bad_x.set(2, 1, f64::INFINITY);
        let p = ConicProblem { x: &bad_x, ..ok };
        assert!(matches!(
            solve_conic(&p, &s),
            Err(CvxnnError::InvalidArgument { .. })
        ));

        let no_rows = Matrix::zeros(0, 3);
        let no_masks = Masks::new(0);
        let p = ConicProblem {
            x: &no_rows,
            y: &[],
            masks: &no_masks,
            ..ok
        };
        assert!(solve_conic(&p, &s).is_err());

        for bad in [
            ConicSettings {
                tol: 0.0,
                ..s.clone()
            },
            ConicSettings {
                tol: f64::NAN,
                ..s.clone()
            },
            ConicSettings {
                time_limit_s: 0.0,
                ..s.clone()
            },
            ConicSettings {
                time_limit_s: f64::NAN,
                ..s.clone()
            },
        ] {
            assert!(matches!(
                solve_conic(&ok, &bad),
                Err(CvxnnError::InvalidArgument { .. })
            ));
        }
    }

    #[test]
    fn iteration_limit_is_a_status() {
        let (x, y, masks) = data(10, 20, 3, 6, LossKind::Squared);
        let p = problem(&x, &y, &masks, LossKind::Squared, ModelKind::Relu, 0.01);
        let s = ConicSettings {
            max_iter: 2,
            ..ConicSettings::default()
        };
        let sol = solve_conic(&p, &s).unwrap();
        assert_eq!(sol.status, ConicStatus::MaxIterations);
        assert!(!sol.status.is_solved());
        assert!(sol.iterations <= 2);
    }

    #[test]
    fn status_serializes_kebab_case() {
        let js = serde_json::to_string(&ConicStatus::InsufficientProgress).unwrap();
        assert_eq!(js, "\"insufficient-progress\"");
        let js = serde_json::to_string(&ConicStatus::AlmostSolved).unwrap();
        assert_eq!(js, "\"almost-solved\"");
    }

    /// Reference timings (run with `--ignored --nocapture`).
    #[test]
    #[ignore]
    fn timing_reference() {
        let s = ConicSettings {
            verbose: std::env::var_os("CONIC_VERBOSE").is_some(),
            ..ConicSettings::default()
        };
        for (loss, n, d, np) in [
            (LossKind::Squared, 200, 10, 100),
            (LossKind::Logistic, 100, 10, 50),
            (LossKind::Logistic, 200, 10, 100),
        ] {
            let (x, y, masks) = data(11, n, d, np, loss);
            let lambda = 0.01 * lambda_max(&x, &y, &masks, loss);
            for model in [ModelKind::GatedRelu, ModelKind::Relu] {
                let p = problem(&x, &y, &masks, loss, model, lambda);
                let sol = solve_conic(&p, &s).unwrap();
                let nz = (0..sol.weights.ncols())
                    .filter(|&g| norm2(sol.weights.col(g)) > 1e-6)
                    .count();
                println!(
                    "{loss:?} {model:?} n={n} d={d} P={}: {:?} {} iters {:.3} s obj {:.9} groups {nz} polished {}",
                    masks.len(),
                    sol.status,
                    sol.iterations,
                    sol.seconds,
                    sol.objective,
                    sol.polished
                );
            }
        }
    }
}
