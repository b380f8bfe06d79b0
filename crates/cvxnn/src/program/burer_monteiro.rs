//! The shared-neuron vector-output model by Burer-Monteiro factorization (DESIGN section 1,
//! "Multiple outputs"; Sahiner et al., ICLR 2021, and Sahiner et al., ICLR 2024).
//!
//! Network `f(X) = sum_j (X u_j)_+ alpha_j^T` with `alpha_j` in `R^c`. Over fixed patterns
//! `D_1..D_P` its convex form `min h(sum_i D_i X Z_i) + lambda sum_i ||Z_i||_{K_i,*}` carries a
//! cone-constrained nuclear norm (NP-hard in general). Its Burer-Monteiro form keeps per pattern a
//! factor pair `U_i` (`d x r`, columns in `K_i = {u : (2 D_i - I) X u >= 0}`) and `A_i` (`c x r`):
//!
//! ```text
//! min h(sum_i D_i X U_i A_i^T) + (lambda/2) sum_i (||U_i||_F^2 + ||A_i||_F^2)  s.t. U_i in K_i,
//! ```
//!
//! which is exactly weight-decay training of the network whose neurons are the columns
//! `(u, alpha)` of the factors, each keeping the pattern of its cone. It is solved by an augmented
//! Lagrangian on the cone rows with an inner L-BFGS (no constraint for [`ModelKind::GatedRelu`]:
//! the gated shared program, whose exact convex form is the nuclear-norm program of
//! [`TwoLayerProgram`]). Every point gives a lower bound on the program's optimum by duality,
//! reported as [`GapKind::Bound`] for ReLU (see [`BmBound`]).

use faer::{Accum, MatMut, MatRef};
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use rand_distr::{Distribution, StandardNormal};
use serde::{Deserialize, Serialize};

use super::{ModelKind, OutputMode, TwoLayerProgram};
use crate::certificate::{cone_projection_norm, x_norm_sq};
use crate::error::{CvxnnError, Result};
use crate::linalg::{gemm, norm2, Matrix};
use crate::loss::LossKind;
use crate::network::Network;
use crate::operator::{ArrangementOperator, Layout, LinearMap, OutputBlocks};
use crate::patterns::Masks;
use crate::solver::augmented_lagrangian::relative_violation;
use crate::solver::{relative_gap, Progress, SolverSettings, Status};

/// L-BFGS memory (pairs kept).
const MEMORY: usize = 10;
/// Standard deviation of the initial factors' entries, times `1/sqrt(rows)`.
const INIT_SCALE: f64 = 0.1;
/// Outer augmented-Lagrangian steps at most.
const MAX_OUTER: usize = 60;
/// Factor on `rho` when the violation shrank less than 4x in an outer step.
const RHO_GROWTH: f64 = 10.0;
/// Iterations over which an L-BFGS run must lower its value by `stall` (relative), else it ends.
const STALL_WINDOW: usize = 50;
/// Inner iterations between two certificate checks of the unconstrained (gated) solve.
const CHECK_EVERY: usize = 10;

/// Whether a reported gap certifies the program exactly or is a bound from a relaxation.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum GapKind {
    /// The dual norm was computed exactly (gated: the spectral norm), so the lower bound tends
    /// to the optimum over the patterns as the solve converges.
    Exact,
    /// The dual norm (a cone-constrained spectral norm, NP-hard) was replaced by a provable
    /// upper bound: the lower bound is valid but need not meet the optimum, and the gap is an
    /// upper bound on the distance to the optimum over the patterns, not an estimate of it.
    Bound,
}

impl std::fmt::Display for GapKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            GapKind::Exact => "exact",
            GapKind::Bound => "bound",
        })
    }
}

/// The factors of a Burer-Monteiro point, pattern by pattern: pattern `i`'s `U_i` is columns
/// `i * r .. (i + 1) * r` of `u`, its `A_i` the same columns of `a`. Column `j` of both is one
/// neuron `(u_j, alpha_j)`.
#[derive(Clone, Debug, PartialEq)]
pub struct BmFactors {
    /// Hidden weights, `d x (P r)`.
    pub u: Matrix,
    /// Output weights, `c x (P r)`.
    pub a: Matrix,
}

/// A lower bound on the optimum of the program over the patterns, from one point.
///
/// With `Theta = grad h(z)` at the point (`n x c`), weak duality gives, for every `Z_i = sum_j
/// u_j a_j^T` with `u_j` in `K_i`: `h(z) + lambda sum_j ||u_j|| ||a_j|| >= -h*(s Theta)` as soon as
/// `s * sup_{u in K_i, ||u|| <= 1} ||Theta^T D_i X u|| <= lambda` for every `i`. The sup is
/// replaced by a provable upper bound (`dual_norm`), so `lower_bound` is valid for ReLU too.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct BmBound {
    /// `-h*(s Theta)`, maximized over the feasible scalings `s`.
    pub lower_bound: f64,
    /// Upper estimate of `max_i sup_{u in K_i, ||u|| <= 1} ||Theta^T D_i X u||` (exact for gated:
    /// the largest spectral norm of `X^T D_i Theta`).
    pub dual_norm: f64,
    /// The scaling `s` used.
    pub scale: f64,
    /// What kind of certificate the gap is.
    pub kind: GapKind,
    /// The relative bound `(dual_norm / lambda - 1)_+` on `(objective - optimum) / optimum` of
    /// Sahiner et al. (ICLR 2024); it holds only at exact (KKT) stationary points of the
    /// factored problem, so it is reported for information, never used as the certificate.
    pub stationary_relative_bound: f64,
}

/// The result of a Burer-Monteiro solve.
#[derive(Clone, Debug)]
pub struct BmSolution {
    /// The factors (balanced: `||u_j|| = ||alpha_j||` for every neuron).
    pub factors: BmFactors,
    /// Factors per pattern `r`.
    pub rank: usize,
    /// ReLU (cone-constrained) or gated ReLU (unconstrained).
    pub model: ModelKind,
    /// `h(z) + (lambda/2) (||U||_F^2 + ||A||_F^2)` at the factors: the network's weight-decay
    /// objective (DESIGN section 0) when the factors are feasible.
    pub objective: f64,
    /// Best lower bound over the iterates, with what it certifies.
    pub bound: BmBound,
    /// Relative cone-constraint violation at the factors (0 for gated ReLU).
    pub violation: f64,
    /// How the solve ended.
    pub status: Status,
    /// L-BFGS iterations.
    pub iterations: usize,
    /// Augmented-Lagrangian outer steps (1 for gated ReLU).
    pub outer_iterations: usize,
    /// Wall-clock seconds.
    pub seconds: f64,
    /// One entry per outer step (gated: per certificate check).
    pub trace: Vec<Progress>,
}

impl BmSolution {
    /// `objective - lower bound`.
    pub fn gap(&self) -> f64 {
        self.objective - self.bound.lower_bound
    }

    /// `gap / |objective|`.
    pub fn relative_gap(&self) -> f64 {
        relative_gap(self.objective, self.bound.lower_bound)
    }

    /// The network of the factors (DESIGN section 1): every column `(u, alpha)` with both parts
    /// non-zero is a neuron (the factors are balanced already; each pair is rescaled to equal
    /// norms again, which changes nothing but rounding). A gated network takes pattern `i`'s gate
    /// from column `i` of `gates` (`d x P`); ReLU ignores `gates`.
    pub fn network(&self, gates: Option<&Matrix>) -> Result<Network> {
        let (u, a) = (&self.factors.u, &self.factors.a);
        let (d, c, r) = (u.nrows(), a.nrows(), self.rank.max(1));
        let p = u.ncols() / r;
        let gates = match self.model {
            ModelKind::GatedRelu => match gates {
                Some(g) if g.nrows() == d && g.ncols() == p => Some(g),
                _ => {
                    return Err(CvxnnError::Shape(format!(
                        "a gated network needs {p} gates of {d} entries"
                    )))
                }
            },
            ModelKind::Relu => None,
        };
        let (mut hidden, mut alpha, mut kept) = (Vec::new(), Vec::new(), Vec::new());
        for j in 0..u.ncols() {
            let (nu, na) = (norm2(u.col(j)), norm2(a.col(j)));
            if nu == 0.0 || na == 0.0 {
                continue;
            }
            let f = (na / nu).sqrt();
            hidden.extend(u.col(j).iter().map(|v| v * f));
            alpha.extend(a.col(j).iter().map(|v| v / f));
            if let Some(g) = gates {
                kept.extend_from_slice(g.col(j / r));
            }
        }
        let m = alpha.len() / c;
        let shape = || CvxnnError::Shape("rebuild of the factors".into());
        Ok(Network {
            hidden: Matrix::from_col_major(d, m, hidden).ok_or_else(shape)?,
            alpha,
            outputs: c,
            gates: match gates {
                Some(_) => Some(Matrix::from_col_major(d, m, kept).ok_or_else(shape)?),
                None => None,
            },
        })
    }
}

/// The shared-neuron two-layer model with `c` outputs over fixed patterns, in Burer-Monteiro
/// form (module documentation). For [`ModelKind::Relu`] the factors of `U_i` are constrained to
/// the cone `K_i`; for [`ModelKind::GatedRelu`] they are free (the gated shared program, whose
/// optimum the exact nuclear-norm solve of [`TwoLayerProgram`] also finds).
///
/// Internally the variables are `[U; A]` stored rank slot by rank slot: slot `t` of `U` is a
/// `d x P` matrix whose column `i` is column `t` of `U_i` (slot `t` of `A`: `c x P`). For ReLU
/// the slots of `U` go in pairs through the ReLU constraint operator (slot `2s` as its `v`, slot
/// `2s + 1` as its `w`), so `U` has an even number of slots, the last one held at zero when `r`
/// is odd.
#[derive(Clone, Copy, Debug)]
pub struct SharedReluProgram<'a> {
    gated: TwoLayerProgram<'a>,
    model: ModelKind,
    rank: usize,
}

/// Scratch buffers of one evaluation.
#[derive(Default)]
struct Work {
    zv: Vec<f64>,
    pred: Vec<f64>,
    theta: Vec<f64>,
    g: Vec<f64>,
    img: Vec<f64>,
    res: Vec<f64>,
    gu: Vec<f64>,
}

/// The augmented-Lagrangian term: multipliers and penalty.
struct Augmented<'b> {
    gamma: &'b [f64],
    rho: f64,
}

impl<'a> SharedReluProgram<'a> {
    /// Checks every shape and domain (as [`TwoLayerProgram::with_outputs`] does) and builds the
    /// program with `rank` factors per pattern (default `min(d, c)`, enough for the gated
    /// program to reach its convex optimum).
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        x: &'a Matrix,
        y: &'a [f64],
        outputs: usize,
        masks: &'a Masks,
        loss: LossKind,
        model: ModelKind,
        lambda: f64,
        rank: Option<usize>,
    ) -> Result<Self> {
        let gated = TwoLayerProgram::with_outputs(
            x,
            y,
            outputs,
            OutputMode::Shared,
            masks,
            loss,
            ModelKind::GatedRelu,
            lambda,
        )?;
        let rank = rank.unwrap_or_else(|| x.ncols().min(outputs));
        if rank == 0 {
            return Err(CvxnnError::arg("rank", "must be at least 1"));
        }
        Ok(SharedReluProgram { gated, model, rank })
    }

    /// Factors per pattern.
    pub fn rank(&self) -> usize {
        self.rank
    }

    /// The model.
    pub fn model(&self) -> ModelKind {
        self.model
    }

    /// The gated shared (nuclear-norm) program over the same data and patterns: its objective
    /// at [`SharedReluProgram::convex_variables`] is at most the factored objective.
    pub fn gated_program(&self) -> &TwoLayerProgram<'a> {
        &self.gated
    }

    fn dims(&self) -> (usize, usize, usize, usize) {
        let g = &self.gated;
        (g.x().ncols(), g.masks().len(), g.outputs(), self.rank)
    }

    /// Slots of `U` (`r`, rounded up to even for ReLU).
    fn u_slots(&self) -> usize {
        match self.model {
            ModelKind::Relu => self.rank.div_ceil(2) * 2,
            ModelKind::GatedRelu => self.rank,
        }
    }

    fn u_len(&self) -> usize {
        let (d, p, _, _) = self.dims();
        d * p * self.u_slots()
    }

    fn n_vars(&self) -> usize {
        let (_, p, c, r) = self.dims();
        self.u_len() + c * p * r
    }

    /// `[predictions; constraint values]` of the `U` slots in pairs (ReLU only).
    fn constraint_operator(&self) -> OutputBlocks<ArrangementOperator<'_>> {
        let g = &self.gated;
        OutputBlocks::new(
            ArrangementOperator::new(g.x(), g.masks(), Layout::ReluConstrained),
            self.u_slots() / 2,
            g.x().nrows(),
        )
    }

    /// `Z_i = U_i A_i^T` for every pattern, in the gated shared program's variable layout
    /// (output `k`'s `d x P` matrix has `Z_i`'s column `k` as its column `i`).
    fn z_vars(&self, th: &[f64], zv: &mut Vec<f64>) {
        let (d, p, c, r) = self.dims();
        let (u, a) = th.split_at(self.u_len());
        zv.resize(d * p * c, 0.0);
        for i in 0..p {
            gemm(
                MatMut::from_column_major_slice_with_stride_mut(&mut zv[i * d..], d, c, d * p),
                Accum::Replace,
                MatRef::from_column_major_slice_with_stride(&u[i * d..], d, r, d * p),
                MatRef::from_column_major_slice_with_stride(&a[i * c..], c, r, c * p).transpose(),
                1.0,
            );
        }
    }

    /// Objective, augmented-Lagrangian value (when `al` is given) and its gradient, with `w`
    /// holding `Theta = grad h(z)`, `G = K^T Theta` and the constraint image afterwards.
    fn eval(
        &self,
        th: &[f64],
        al: Option<&Augmented<'_>>,
        grad: &mut [f64],
        w: &mut Work,
    ) -> (f64, f64) {
        let (d, p, c, r) = self.dims();
        let lambda = self.gated.lambda();
        let op = self.gated.prediction_operator();
        self.z_vars(th, &mut w.zv);
        w.pred.resize(op.image_len(), 0.0);
        op.apply(&w.zv, &mut w.pred);
        w.theta.resize(w.pred.len(), 0.0);
        let h = self
            .gated
            .data()
            .loss
            .value_grad(&w.pred, self.gated.y(), c, &mut w.theta);
        w.g.resize(op.n_vars(), 0.0);
        op.adjoint(&w.theta, &mut w.g);
        let objective = h + 0.5 * lambda * th.iter().map(|v| v * v).sum::<f64>();
        for (gk, &v) in grad.iter_mut().zip(th) {
            *gk = lambda * v;
        }
        let nu = self.u_len();
        let (u, a) = th.split_at(nu);
        let (gu, ga) = grad.split_at_mut(nu);
        for i in 0..p {
            let gi = MatRef::from_column_major_slice_with_stride(&w.g[i * d..], d, c, d * p);
            // d/dU_i = G_i A_i, d/dA_i = G_i^T U_i.
            gemm(
                MatMut::from_column_major_slice_with_stride_mut(&mut gu[i * d..], d, r, d * p),
                Accum::Add,
                gi,
                MatRef::from_column_major_slice_with_stride(&a[i * c..], c, r, c * p),
                1.0,
            );
            gemm(
                MatMut::from_column_major_slice_with_stride_mut(&mut ga[i * c..], c, r, c * p),
                Accum::Add,
                gi.transpose(),
                MatRef::from_column_major_slice_with_stride(&u[i * d..], d, r, d * p),
                1.0,
            );
        }
        let mut total = objective;
        if self.model == ModelKind::Relu {
            let cop = self.constraint_operator();
            let pred_len = cop.outputs() * self.gated.x().nrows();
            w.img.resize(cop.image_len(), 0.0);
            cop.apply(u, &mut w.img);
            if let Some(al) = al {
                // (1/(2 rho)) ||(gamma - rho C u)_+||^2, gradient -C^T (gamma - rho C u)_+.
                w.res.clear();
                w.res.resize(cop.image_len(), 0.0);
                let mut pen = 0.0;
                for ((rk, &ck), &gk) in w.res[pred_len..]
                    .iter_mut()
                    .zip(&w.img[pred_len..])
                    .zip(al.gamma)
                {
                    let v = (gk - al.rho * ck).max(0.0);
                    pen += v * v;
                    *rk = -v;
                }
                total += pen / (2.0 * al.rho);
                w.gu.resize(nu, 0.0);
                cop.adjoint(&w.res, &mut w.gu);
                for (g, &v) in gu.iter_mut().zip(&w.gu) {
                    *g += v;
                }
            }
            // The padding slot stays at zero.
            if self.u_slots() > r {
                gu[d * p * r..].iter_mut().for_each(|v| *v = 0.0);
            }
        }
        (objective, total)
    }

    /// Relative violation of the cone constraints in `w.img` (after [`Self::eval`]).
    fn violation_in(&self, w: &Work) -> f64 {
        if self.model != ModelKind::Relu {
            return 0.0;
        }
        let pred_len = self.constraint_operator().outputs() * self.gated.x().nrows();
        relative_violation(&w.img[pred_len..])
    }

    /// The lower bound of [`BmBound`] from `Theta` and `G = K^T Theta` (in `w`).
    fn bound_in(&self, w: &Work) -> Result<BmBound> {
        let (d, p, c, _) = self.dims();
        let g = &self.gated;
        let (x, masks, lambda) = (g.x(), g.masks(), g.lambda());
        let blocks: Vec<Matrix> = (0..p)
            .map(|i| Matrix::from_fn(d, c, |row, k| w.g[k * d * p + i * d + row]))
            .collect();
        let mut spectral = Vec::with_capacity(p);
        for b in &blocks {
            let s = b
                .as_ref()
                .singular_values()
                .map_err(|_| CvxnnError::Numerical("SVD of a dual block failed".into()))?;
            spectral.push(s.first().copied().unwrap_or(0.0));
        }
        let mut dual_norm = 0.0f64;
        match self.model {
            ModelKind::GatedRelu => dual_norm = spectral.iter().copied().fold(0.0, f64::max),
            ModelKind::Relu => {
                // Largest spectral norms first; a block whose spectral norm is below the
                // current maximum cannot raise it.
                let mut order: Vec<usize> = (0..p).collect();
                order.sort_by(|&a, &b| spectral[b].total_cmp(&spectral[a]));
                let x_sq = x_norm_sq(x);
                for i in order {
                    if spectral[i] <= dual_norm {
                        break;
                    }
                    let cone = self.cone_bound(&blocks[i], i, masks, x_sq)?;
                    dual_norm = dual_norm.max(spectral[i].min(cone));
                }
            }
        }
        let loss = g.loss();
        let (theta, y) = (&w.theta, g.y());
        let s_max = match (dual_norm > 0.0, loss) {
            (true, LossKind::Squared) => lambda / dual_norm,
            (true, _) => (lambda / dual_norm).min(1.0),
            (false, LossKind::Squared) => f64::INFINITY,
            (false, _) => 1.0,
        };
        let value = |s: f64| {
            let scaled: Vec<f64> = theta.iter().map(|t| s * t).collect();
            -loss.conjugate(&scaled, y, c)
        };
        let (scale, lower_bound) = best_scaling(loss, theta, y, c, s_max, &value);
        Ok(BmBound {
            lower_bound,
            dual_norm,
            scale,
            kind: match self.model {
                ModelKind::GatedRelu => GapKind::Exact,
                ModelKind::Relu => GapKind::Bound,
            },
            stationary_relative_bound: (dual_norm / lambda - 1.0).max(0.0),
        })
    }

    /// Upper bound on `sup_{u in K_i, ||u|| <= 1} ||G_i^T u||` for the `d x c` block `G_i`: for
    /// any orthonormal basis `q_k` of `R^c`, `||G^T u||^2 = sum_k ((G q_k)^T u)^2 <= sum_k b_k^2`
    /// with `b_k = max(||Proj_K(G q_k)||, ||Proj_K(-G q_k)||)`; the smaller of the standard and
    /// the singular basis. Each projection norm is `min_{mu >= 0} ||q + C^T mu||` (`C` the rows
    /// `(2 D_i - I) X`), evaluated at a feasible `mu`: never below the true value.
    fn cone_bound(&self, gi: &Matrix, i: usize, masks: &Masks, x_sq: f64) -> Result<f64> {
        let x = self.gated.x();
        let (d, c) = (gi.nrows(), gi.ncols());
        let sign = |j: usize| if masks.get(j, i) { -1.0 } else { 1.0 };
        let proj = |q: &[f64]| -> f64 {
            let nq = norm2(q);
            if nq == 0.0 {
                return 0.0;
            }
            cone_projection_norm(x, &sign, q, vec![0.0; x.nrows()], x_sq, 1e-3 * nq)
        };
        let basis_bound = |cols: &[Vec<f64>]| -> f64 {
            cols.iter()
                .map(|q| {
                    let neg: Vec<f64> = q.iter().map(|v| -v).collect();
                    let b = proj(q).max(proj(&neg));
                    b * b
                })
                .sum::<f64>()
                .sqrt()
        };
        let standard: Vec<Vec<f64>> = (0..c).map(|k| gi.col(k).to_vec()).collect();
        let svd = gi
            .as_ref()
            .thin_svd()
            .map_err(|_| CvxnnError::Numerical("SVD of a dual block failed".into()))?;
        let (pu, s) = (svd.U(), svd.S().column_vector());
        // G q_k = s_k p_k for the right singular vectors q_k.
        let singular: Vec<Vec<f64>> = (0..s.nrows())
            .map(|k| (0..d).map(|row| s[k] * pu[(row, k)]).collect())
            .collect();
        Ok(basis_bound(&standard).min(basis_bound(&singular)))
    }

    /// Seeded start: entries `N(0, 1) * 0.1 / sqrt(rows)`; the padding slot is zero.
    fn initial(&self, seed: u64) -> Vec<f64> {
        let (d, p, c, r) = self.dims();
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let mut th = vec![0.0; self.n_vars()];
        let (u, a) = th.split_at_mut(self.u_len());
        for v in u[..d * p * r].iter_mut() {
            let e: f64 = StandardNormal.sample(&mut rng);
            *v = e * INIT_SCALE / (d as f64).sqrt();
        }
        for v in a.iter_mut() {
            let e: f64 = StandardNormal.sample(&mut rng);
            *v = e * INIT_SCALE / (c as f64).sqrt();
        }
        th
    }

    /// Internal (slot-major) variables from pattern-major factors.
    fn vars_of(&self, f: &BmFactors) -> Result<Vec<f64>> {
        let (d, p, c, r) = self.dims();
        if (f.u.nrows(), f.u.ncols(), f.a.nrows(), f.a.ncols()) != (d, p * r, c, p * r) {
            return Err(CvxnnError::Shape(format!(
                "factors are {} x {} and {} x {}; the program needs {d} x {} and {c} x {}",
                f.u.nrows(),
                f.u.ncols(),
                f.a.nrows(),
                f.a.ncols(),
                p * r,
                p * r
            )));
        }
        let mut th = vec![0.0; self.n_vars()];
        let (u, a) = th.split_at_mut(self.u_len());
        for i in 0..p {
            for t in 0..r {
                let j = i * r + t;
                u[t * d * p + i * d..][..d].copy_from_slice(f.u.col(j));
                a[t * c * p + i * c..][..c].copy_from_slice(f.a.col(j));
            }
        }
        if let Some(v) = th.iter().find(|v| !v.is_finite()) {
            return Err(CvxnnError::arg("factors", format!("contain {v}")));
        }
        Ok(th)
    }

    /// Pattern-major factors from internal variables.
    fn factors_of(&self, th: &[f64]) -> BmFactors {
        let (d, p, c, r) = self.dims();
        let (u, a) = th.split_at(self.u_len());
        BmFactors {
            u: Matrix::from_fn(d, p * r, |row, j| u[(j % r) * d * p + (j / r) * d + row]),
            a: Matrix::from_fn(c, p * r, |k, j| a[(j % r) * c * p + (j / r) * c + k]),
        }
    }

    /// Rescales every neuron `(u, alpha)` to equal norms (zero when either part is zero): the
    /// predictions and the cone constraints do not change, the weight decay can only drop.
    fn balance(&self, th: &mut [f64]) {
        let (d, p, c, r) = self.dims();
        let nu = self.u_len();
        let (u, a) = th.split_at_mut(nu);
        for t in 0..r {
            for i in 0..p {
                let ui = &mut u[t * d * p + i * d..][..d];
                let ai = &mut a[t * c * p + i * c..][..c];
                let (n_u, n_a) = (norm2(ui), norm2(ai));
                if n_u == 0.0 || n_a == 0.0 {
                    ui.iter_mut().for_each(|v| *v = 0.0);
                    ai.iter_mut().for_each(|v| *v = 0.0);
                    continue;
                }
                let f = (n_a / n_u).sqrt();
                ui.iter_mut().for_each(|v| *v *= f);
                ai.iter_mut().for_each(|v| *v /= f);
            }
        }
    }

    /// Objective, violation and bound at `factors` (any point: the bound is valid everywhere).
    pub fn evaluate(&self, factors: &BmFactors) -> Result<(f64, f64, BmBound)> {
        let th = self.vars_of(factors)?;
        let mut w = Work::default();
        let mut grad = vec![0.0; th.len()];
        let (objective, _) = self.eval(&th, None, &mut grad, &mut w);
        Ok((objective, self.violation_in(&w), self.bound_in(&w)?))
    }

    /// `Z_i = U_i A_i^T` in the variable layout of [`SharedReluProgram::gated_program`].
    pub fn convex_variables(&self, factors: &BmFactors) -> Result<Vec<f64>> {
        let th = self.vars_of(factors)?;
        let mut zv = Vec::new();
        self.z_vars(&th, &mut zv);
        Ok(zv)
    }

    /// Solves from a seeded random start (or from `warm` factors): augmented Lagrangian on the
    /// cone rows (ReLU; `gamma <- (gamma - rho C u)_+`, `rho` from `settings.rho_init / n`, 10x
    /// when the violation shrank less than 4x) with inner L-BFGS to a gradient tolerance that
    /// tightens each outer step; one L-BFGS run for gated ReLU, stopped when the relative gap is
    /// below `settings.tol`. ReLU stops when the violation is below `settings.tol` and the inner
    /// gradient below `settings.tol * 1e-2`. The same seed and thread count give the same bits.
    pub fn solve(
        &self,
        settings: &SolverSettings,
        seed: u64,
        warm: Option<&BmFactors>,
        progress: &mut dyn FnMut(&Progress),
    ) -> Result<BmSolution> {
        settings.validate()?;
        let start = std::time::Instant::now();
        let mut th = match warm {
            Some(f) => self.vars_of(f)?,
            None => self.initial(seed),
        };
        let n = self.gated.x().nrows();
        let final_gtol = settings.tol * 1e-2;
        let stall = settings.tol * 1e-3;
        let mut w = Work::default();
        let mut best = BmBound {
            lower_bound: f64::NEG_INFINITY,
            dual_norm: f64::INFINITY,
            scale: 0.0,
            kind: match self.model {
                ModelKind::GatedRelu => GapKind::Exact,
                ModelKind::Relu => GapKind::Bound,
            },
            stationary_relative_bound: f64::INFINITY,
        };
        let mut trace = Vec::new();
        let mut total = 0usize;
        let mut outer = 0usize;
        let mut status = Status::MaxIterations;
        let mut note = |th: &[f64],
                        w: &mut Work,
                        total: usize,
                        best: &mut BmBound,
                        trace: &mut Vec<Progress>|
         -> Result<Progress> {
            let mut grad = vec![0.0; th.len()];
            let (objective, _) = self.eval(th, None, &mut grad, w);
            let b = self.bound_in(w)?;
            if b.lower_bound > best.lower_bound {
                *best = b;
            }
            let p = Progress {
                iteration: total,
                objective,
                dual_bound: best.lower_bound,
                relative_gap: relative_gap(objective, best.lower_bound),
                violation: self.violation_in(w),
            };
            progress(&p);
            trace.push(p);
            Ok(p)
        };
        match self.model {
            ModelKind::GatedRelu => {
                outer = 1;
                let mut checked = Work::default();
                let mut failure = None;
                let mut f = |x: &[f64], g: &mut [f64]| self.eval(x, None, g, &mut w).1;
                let out = lbfgs(
                    &mut f,
                    &mut th,
                    final_gtol,
                    // The certificate is exact here: stop on the gap, not on slow progress.
                    0.0,
                    settings.max_iter,
                    &mut |it, x| {
                        if it == 0 || it % CHECK_EVERY != 0 {
                            return false;
                        }
                        match note(x, &mut checked, it, &mut best, &mut trace) {
                            Ok(p) => p.relative_gap <= settings.tol,
                            Err(e) => {
                                failure = Some(e);
                                true
                            }
                        }
                    },
                );
                if let Some(e) = failure {
                    return Err(e);
                }
                total = out.iterations;
                let p = note(&th, &mut w, total, &mut best, &mut trace)?;
                if out.converged || p.relative_gap <= settings.tol {
                    status = Status::Converged;
                }
            }
            ModelKind::Relu => {
                let cop = self.constraint_operator();
                let pred_len = cop.outputs() * n;
                let mut gamma = vec![0.0; cop.image_len() - pred_len];
                let mut rho = settings.rho_init / n.max(1) as f64;
                let mut gtol = 1e-3f64.max(final_gtol);
                let mut prev_violation = f64::INFINITY;
                while outer < MAX_OUTER && total < settings.max_iter {
                    outer += 1;
                    let al = Augmented { gamma: &gamma, rho };
                    let mut f = |x: &[f64], g: &mut [f64]| self.eval(x, Some(&al), g, &mut w).1;
                    let out = lbfgs(
                        &mut f,
                        &mut th,
                        gtol,
                        stall,
                        settings.max_iter - total,
                        &mut |_, _| false,
                    );
                    total += out.iterations;
                    let p = note(&th, &mut w, total, &mut best, &mut trace)?;
                    if out.converged && gtol <= final_gtol && p.violation <= settings.tol {
                        status = Status::Converged;
                        break;
                    }
                    // gamma <- (gamma - rho C u)_+ at the inner solution (w holds its image).
                    for (g, &ck) in gamma.iter_mut().zip(&w.img[pred_len..]) {
                        *g = (*g - rho * ck).max(0.0);
                    }
                    if p.violation > 0.25 * prev_violation {
                        rho *= RHO_GROWTH;
                    }
                    prev_violation = p.violation;
                    gtol = (gtol * 0.1).max(final_gtol);
                }
            }
        }
        self.balance(&mut th);
        let mut grad = vec![0.0; th.len()];
        let (objective, _) = self.eval(&th, None, &mut grad, &mut w);
        let violation = self.violation_in(&w);
        let b = self.bound_in(&w)?;
        if b.lower_bound > best.lower_bound {
            best = b;
        }
        Ok(BmSolution {
            factors: self.factors_of(&th),
            rank: self.rank,
            model: self.model,
            objective,
            bound: best,
            violation,
            status,
            iterations: total,
            outer_iterations: outer,
            seconds: start.elapsed().as_secs_f64(),
            trace,
        })
    }
}

/// Solves the shared-neuron ReLU model (`c = outputs` outputs, every neuron feeding all of them)
/// over `masks` by Burer-Monteiro factorization with `rank` factors per pattern (default
/// `min(d, c)`): [`SharedReluProgram::solve`] for [`ModelKind::Relu`] from a seeded start.
#[allow(clippy::too_many_arguments)]
pub fn solve_shared_relu_bm(
    x: &Matrix,
    y: &[f64],
    outputs: usize,
    masks: &Masks,
    loss: LossKind,
    lambda: f64,
    settings: &SolverSettings,
    rank: Option<usize>,
    seed: u64,
    progress: &mut dyn FnMut(&Progress),
) -> Result<BmSolution> {
    SharedReluProgram::new(x, y, outputs, masks, loss, ModelKind::Relu, lambda, rank)?
        .solve(settings, seed, None, progress)
}

/// The largest `-h*(s Theta)` over `s` in `[0, s_max]` that the search evaluates (every
/// evaluated `s` is feasible, so the value is valid whatever the search finds): closed form for
/// the squared loss, golden section on the concave function otherwise.
fn best_scaling(
    loss: LossKind,
    theta: &[f64],
    y: &[f64],
    outputs: usize,
    s_max: f64,
    value: &dyn Fn(f64) -> f64,
) -> (f64, f64) {
    let n = (y.len() / outputs.max(1)).max(1) as f64;
    if loss == LossKind::Squared {
        // h*(s t) = s t.y + (n/2) s^2 ||t||^2.
        let (ty, tt) = (
            crate::linalg::dot(theta, y),
            crate::linalg::dot(theta, theta),
        );
        let s = if tt > 0.0 {
            (-ty / (n * tt)).clamp(0.0, s_max)
        } else {
            0.0
        };
        return (s, value(s));
    }
    let (mut lo, mut hi) = (0.0, s_max);
    let mut best = (0.0, value(0.0));
    let top = value(s_max);
    if top > best.1 {
        best = (s_max, top);
    }
    let phi = 0.5 * (5f64.sqrt() - 1.0);
    for _ in 0..60 {
        let (a, b) = (hi - phi * (hi - lo), lo + phi * (hi - lo));
        let (fa, fb) = (value(a), value(b));
        for (s, f) in [(a, fa), (b, fb)] {
            if f > best.1 {
                best = (s, f);
            }
        }
        if fa >= fb {
            hi = b;
        } else {
            lo = a;
        }
    }
    best
}

/// What an L-BFGS run did.
struct LbfgsOutcome {
    iterations: usize,
    /// The gradient met the tolerance (or the line search stalled at rounding).
    converged: bool,
}

/// L-BFGS with Armijo backtracking on `f` (value, gradient into its second argument) from `x`,
/// until `||grad||_inf <= gtol`, the value fell by less than `stall * |f|` over the last
/// `STALL_WINDOW` iterations (counted as converged), `max_iter` iterations or
/// `monitor(iteration, x)` says stop.
fn lbfgs(
    f: &mut dyn FnMut(&[f64], &mut [f64]) -> f64,
    x: &mut [f64],
    gtol: f64,
    stall: f64,
    max_iter: usize,
    monitor: &mut dyn FnMut(usize, &[f64]) -> bool,
) -> LbfgsOutcome {
    let nv = x.len();
    let mut g = vec![0.0; nv];
    let mut fx = f(x, &mut g);
    let mut hist: std::collections::VecDeque<(Vec<f64>, Vec<f64>, f64)> = Default::default();
    let (mut xn, mut gn, mut dir) = (vec![0.0; nv], vec![0.0; nv], vec![0.0; nv]);
    let inf_norm = |v: &[f64]| v.iter().fold(0.0f64, |m, a| m.max(a.abs()));
    let mut values = std::collections::VecDeque::with_capacity(STALL_WINDOW + 1);
    for it in 0..max_iter {
        values.push_back(fx);
        if values.len() > STALL_WINDOW {
            let old = values.pop_front().unwrap_or(fx);
            if old - fx <= stall * fx.abs() {
                return LbfgsOutcome {
                    iterations: it,
                    converged: true,
                };
            }
        }
        if inf_norm(&g) <= gtol {
            return LbfgsOutcome {
                iterations: it,
                converged: true,
            };
        }
        if monitor(it, x) {
            return LbfgsOutcome {
                iterations: it,
                converged: false,
            };
        }
        // Two-loop recursion: dir = -H g.
        dir.iter_mut().zip(&g).for_each(|(d, &v)| *d = -v);
        let mut alphas = Vec::with_capacity(hist.len());
        for (s, y, r) in hist.iter().rev() {
            let a = r * crate::linalg::dot(s, &dir);
            dir.iter_mut().zip(y).for_each(|(d, &v)| *d -= a * v);
            alphas.push(a);
        }
        let h0 = match hist.back() {
            Some((s, y, _)) => crate::linalg::dot(s, y) / crate::linalg::dot(y, y),
            None => 1.0 / norm2(&g).max(1e-300),
        };
        dir.iter_mut().for_each(|d| *d *= h0);
        for ((s, y, r), a) in hist.iter().zip(alphas.iter().rev()) {
            let b = r * crate::linalg::dot(y, &dir);
            dir.iter_mut().zip(s).for_each(|(d, &v)| *d += (a - b) * v);
        }
        let mut slope = crate::linalg::dot(&g, &dir);
        if slope >= 0.0 || slope.is_nan() {
            hist.clear();
            dir.iter_mut()
                .zip(&g)
                .for_each(|(d, &v)| *d = -v / norm2(&g).max(1e-300));
            slope = crate::linalg::dot(&g, &dir);
        }
        let mut t = 1.0;
        let mut accepted = None;
        for _ in 0..60 {
            xn.iter_mut()
                .zip(x.iter().zip(&dir))
                .for_each(|(a, (&b, &dd))| *a = b + t * dd);
            let fnew = f(&xn, &mut gn);
            if fnew.is_finite() && fnew <= fx + 1e-4 * t * slope {
                accepted = Some(fnew);
                break;
            }
            t *= 0.5;
        }
        let Some(fnew) = accepted else {
            if hist.is_empty() {
                // Steepest descent finds no decrease: stationary up to rounding.
                return LbfgsOutcome {
                    iterations: it,
                    converged: true,
                };
            }
            hist.clear();
            continue;
        };
        let s: Vec<f64> = xn.iter().zip(x.iter()).map(|(a, b)| a - b).collect();
        let y: Vec<f64> = gn.iter().zip(&g).map(|(a, b)| a - b).collect();
        let sy = crate::linalg::dot(&s, &y);
        if sy > 1e-12 * norm2(&s) * norm2(&y) {
            if hist.len() == MEMORY {
                hist.pop_front();
            }
            hist.push_back((s, y, 1.0 / sy));
        }
        x.copy_from_slice(&xn);
        std::mem::swap(&mut g, &mut gn);
        fx = fnew;
    }
    LbfgsOutcome {
        iterations: max_iter,
        converged: inf_norm(&g) <= gtol,
    }
}
