//! The two-layer programs of DESIGN section 1: gated ReLU (group lasso) and ReLU
//! (cone-constrained group lasso) over a fixed set of activation patterns.

use super::polish::polish;
use super::ModelKind;
use crate::error::{CvxnnError, Result};
use crate::linalg::Matrix;
use crate::loss::LossKind;
use crate::operator::{ArrangementOperator, Layout, LinearMap};
use crate::patterns::Masks;
use crate::penalty::GroupL2;
use crate::solver::augmented_lagrangian::solve_cone_constrained;
use crate::solver::fista::solve_group_lasso;

/// Largest relative constraint violation a polished point may keep (rounding on its face).
const POLISH_FEASIBILITY: f64 = 1e-12;
use crate::certificate::relu_kkt_dual_bound;
use crate::solver::{Progress, Solution, SolverSettings, Status};

/// `min (1/n) sum_j loss((sum_i D_i X u_i)_j, y_j) + lambda sum_i ||u_i||`, plus, for
/// [`ModelKind::Relu`], `u_i = v_i - w_i` with `(2 D_i - I) X v_i >= 0`, `(2 D_i - I) X w_i >= 0`.
///
/// Variables are a `d x P` matrix (gated) or `d x 2P` (ReLU: `[V W]`), column-major.
#[derive(Clone, Copy, Debug)]
pub struct TwoLayerProgram<'a> {
    x: &'a Matrix,
    y: &'a [f64],
    masks: &'a Masks,
    loss: LossKind,
    model: ModelKind,
    lambda: f64,
}

impl<'a> TwoLayerProgram<'a> {
    /// Checks every shape and domain, then builds the program.
    pub fn new(
        x: &'a Matrix,
        y: &'a [f64],
        masks: &'a Masks,
        loss: LossKind,
        model: ModelKind,
        lambda: f64,
    ) -> Result<Self> {
        if x.nrows() == 0 || x.ncols() == 0 {
            return Err(CvxnnError::Shape(format!(
                "data matrix is {} x {}; it needs at least one sample and one column",
                x.nrows(),
                x.ncols()
            )));
        }
        if y.len() != x.nrows() {
            return Err(CvxnnError::Shape(format!(
                "{} targets for {} samples",
                y.len(),
                x.nrows()
            )));
        }
        if masks.n() != x.nrows() {
            return Err(CvxnnError::Shape(format!(
                "patterns cover {} samples, data has {}",
                masks.n(),
                x.nrows()
            )));
        }
        if masks.is_empty() {
            return Err(CvxnnError::arg(
                "patterns",
                "no activation pattern to solve over",
            ));
        }
        if !(lambda.is_finite() && lambda > 0.0) {
            return Err(CvxnnError::arg(
                "lambda",
                format!("must be a finite number > 0, got {lambda}"),
            ));
        }
        if let Some(v) = x.as_slice().iter().find(|v| !v.is_finite()) {
            return Err(CvxnnError::arg("x", format!("data contains {v}")));
        }
        loss.check_targets(y)?;
        Ok(TwoLayerProgram {
            x,
            y,
            masks,
            loss,
            model,
            lambda,
        })
    }

    /// Number of variables (`d * P` or `d * 2P`).
    pub fn n_vars(&self) -> usize {
        self.x.ncols() * self.masks.len() * self.model.columns_per_pattern()
    }

    /// The model.
    pub fn model(&self) -> ModelKind {
        self.model
    }

    /// The loss.
    pub fn loss(&self) -> LossKind {
        self.loss
    }

    /// Regularization strength.
    pub fn lambda(&self) -> f64 {
        self.lambda
    }

    /// The data matrix.
    pub fn x(&self) -> &Matrix {
        self.x
    }

    /// The targets.
    pub fn y(&self) -> &[f64] {
        self.y
    }

    /// The patterns.
    pub fn masks(&self) -> &Masks {
        self.masks
    }

    /// The group-L2 penalty (one group per variable column).
    pub fn penalty(&self) -> GroupL2 {
        GroupL2::new(self.lambda, self.x.ncols())
    }

    /// The prediction operator (no constraint rows).
    pub fn prediction_operator(&self) -> ArrangementOperator<'a> {
        let layout = match self.model {
            ModelKind::GatedRelu => Layout::Gated,
            ModelKind::Relu => Layout::Relu,
        };
        ArrangementOperator::new(self.x, self.masks, layout)
    }

    /// Predictions `z = sum_i D_i X u_i` of a variable vector.
    pub fn predict(&self, vars: &[f64]) -> Result<Vec<f64>> {
        self.check_len(vars)?;
        let op = self.prediction_operator();
        let mut z = vec![0.0; op.image_len()];
        op.apply(vars, &mut z);
        Ok(z)
    }

    /// Convex objective at `vars` (DESIGN section 0 scaling).
    pub fn objective(&self, vars: &[f64]) -> Result<f64> {
        let z = self.predict(vars)?;
        Ok(self.loss.value(&z, self.y) + self.penalty().value(vars))
    }

    /// Largest relative cone-constraint violation at `vars` (0 for gated ReLU).
    pub fn violation(&self, vars: &[f64]) -> Result<f64> {
        self.check_len(vars)?;
        if self.model == ModelKind::GatedRelu {
            return Ok(0.0);
        }
        let op = ArrangementOperator::new(self.x, self.masks, Layout::ReluConstrained);
        let mut img = vec![0.0; op.image_len()];
        op.apply(vars, &mut img);
        let c = &img[self.x.nrows()..];
        let scale = c.iter().fold(0.0f64, |m, v| m.max(v.abs()));
        let worst = c.iter().fold(0.0f64, |m, v| m.max(-v));
        Ok(if scale > 0.0 { worst / scale } else { 0.0 })
    }

    fn check_len(&self, vars: &[f64]) -> Result<()> {
        if vars.len() != self.n_vars() {
            return Err(CvxnnError::Shape(format!(
                "{} variables given, the program has {}",
                vars.len(),
                self.n_vars()
            )));
        }
        Ok(())
    }

    /// Solves the program with the first-order method that fits it (R-FISTA for gated ReLU,
    /// augmented Lagrangian for ReLU), from `warm` or from zero.
    pub fn solve(
        &self,
        settings: &SolverSettings,
        warm: Option<&[f64]>,
        progress: &mut dyn FnMut(&Progress),
    ) -> Result<Solution> {
        settings.validate()?;
        let zero;
        let x0 = match warm {
            Some(w) => {
                self.check_len(w)?;
                w
            }
            None => {
                zero = vec![0.0; self.n_vars()];
                &zero
            }
        };
        let penalty = self.penalty();
        Ok(match self.model {
            ModelKind::GatedRelu => solve_group_lasso(
                &self.prediction_operator(),
                self.loss,
                self.y,
                &penalty,
                x0,
                settings,
                progress,
            ),
            ModelKind::Relu => self.solve_relu(settings, x0, progress),
        })
    }

    /// Augmented Lagrangian to a moderate accuracy, then a Newton polish on the face it found
    /// and the KKT dual bound there; when that certificate misses `tol`, the augmented
    /// Lagrangian goes on (warm) to `tol` and the polish is tried again.
    fn solve_relu(
        &self,
        settings: &SolverSettings,
        x0: &[f64],
        progress: &mut dyn FnMut(&Progress),
    ) -> Solution {
        let start = std::time::Instant::now();
        let map = ArrangementOperator::new(self.x, self.masks, Layout::ReluConstrained);
        let penalty = self.penalty();
        let stage1 = SolverSettings {
            tol: (settings.tol * 100.0).clamp(settings.tol, 1e-4),
            ..settings.clone()
        };
        let mut sol =
            solve_cone_constrained(&map, self.loss, self.y, &penalty, x0, &stage1, progress);
        let mut polished = self.polish_and_certify(&sol);
        let certified = |s: &Solution| s.relative_gap() <= settings.tol;
        if !polished.as_ref().is_some_and(certified) && sol.iterations < settings.max_iter {
            let rest = SolverSettings {
                max_iter: settings.max_iter - sol.iterations,
                ..settings.clone()
            };
            let used = sol.iterations;
            let mut more =
                solve_cone_constrained(&map, self.loss, self.y, &penalty, &sol.x, &rest, progress);
            more.iterations += used;
            more.dual_bound = more.dual_bound.max(sol.dual_bound);
            more.trace.splice(0..0, sol.trace.drain(..));
            sol = more;
            polished = self.polish_and_certify(&sol).or(polished);
        }
        if let Some(mut p) = polished {
            // Keep the polished point when it is exactly feasible and certifies at least as well.
            let better = p.relative_gap() <= sol.relative_gap().max(settings.tol)
                || sol.violation > settings.tol;
            if better {
                p.dual_bound = p.dual_bound.max(sol.dual_bound);
                p.status = if p.relative_gap() <= settings.tol {
                    Status::Converged
                } else {
                    sol.status
                };
                p.iterations = sol.iterations;
                p.trace = std::mem::take(&mut sol.trace);
                p.trace.push(Progress {
                    iteration: p.iterations,
                    objective: p.objective,
                    dual_bound: p.dual_bound,
                    relative_gap: p.relative_gap(),
                    violation: p.violation,
                });
                sol = p;
            }
        }
        sol.seconds = start.elapsed().as_secs_f64();
        sol
    }

    /// Newton polish of an augmented-Lagrangian point on its face (active groups; rows whose
    /// constraint value is within `1e-6` of the largest one in size counted tight), kept only
    /// when exactly feasible, with its KKT dual bound.
    fn polish_and_certify(&self, sol: &Solution) -> Option<Solution> {
        let (d, p) = (self.x.ncols(), self.masks.len());
        let w = Matrix::from_col_major(d, 2 * p, sol.x.clone())?;
        let masks = self.masks;
        let tight = |_g: usize, i: usize, xu: &[f64]| -> Vec<usize> {
            let scale = xu.iter().fold(0.0f64, |a, b| a.max(b.abs()));
            (0..xu.len())
                .filter(|&j| {
                    let s = if masks.get(j, i) { 1.0 } else { -1.0 };
                    s * xu[j] <= 1e-6 * scale
                })
                .collect()
        };
        let x = polish(self, &w, &tight)?.weights.into_vec();
        // Rows on the face are zero up to rounding; anything larger is a failed polish.
        let violation = self.violation(&x).ok()?;
        if violation > POLISH_FEASIBILITY {
            return None;
        }
        let objective = self.objective(&x).ok()?;
        let dual = relu_kkt_dual_bound(self, &x).ok()?;
        Some(Solution {
            x,
            status: Status::Converged,
            objective,
            dual_bound: dual,
            violation,
            iterations: sol.iterations,
            seconds: 0.0,
            trace: Vec::new(),
        })
    }
}
