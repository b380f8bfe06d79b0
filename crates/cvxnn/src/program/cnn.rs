//! The two-layer convolutional network with global sum pooling (DESIGN section 2):
//! `f(x) = sum_j alpha_j sum_k (x_k^T u_j)_+`. Its convex program is section 1's over the
//! stacked patch matrix `Xs` (`nK x h`), with the patch predictions of each sample summed:
//!
//! ```text
//! min (1/n) sum_j loss((sum_i sum_k D_ik X_k (v_i - w_i))_j, y_j) + lambda sum_i (||v_i|| + ||w_i||)
//! s.t. (2 D_ik - I) X_k v_i >= 0,  (2 D_ik - I) X_k w_i >= 0   for every k,
//! ```
//!
//! and the gated variant drops the constraints. The predictions only need the pooled data
//! `A_i = sum_k D_ik X_k` (`n x h` per pattern, [`pooled_patterns`]): the gated program is the
//! group lasso on `A` (R-FISTA), and the ReLU program runs the augmented Lagrangian on `A` with
//! a working set of the `nK` cone rows per group ([`crate::operator::WorkingSetMap`]), grown by the rows the
//! iterates violate, so an iteration costs `O(n P h)` plus the working rows instead of a pass
//! over all `nK x 2P` patch rows. The full operator (the arrangement operator of `Xs` pooled by
//! [`PatchSum`]) evaluates objectives and violations. The constraint rows are the rows of `Xs`
//! and the predictions sum a sample's patch rows, which is exactly what the dense program's
//! Newton polish and KKT bound are written for ([`super::polish::FaceProgram`]): the augmented
//! Lagrangian tries them on the faces it finds (one output).

use super::polish::{polish_and_certify, FaceProgram};
use super::working_set::{max_abs, regrow, RowChoice, RowSearch};
use super::ModelKind;
use crate::error::{CvxnnError, Result};
use crate::linalg::Matrix;
use crate::loss::LossKind;
use crate::operator::{
    pooled_patterns, ArrangementOperator, DenseMap, Layout, LinearMap, OutputBlocks, PatchSum,
};
use crate::patterns::Masks;
use crate::penalty::GroupL2;
use crate::solver::augmented_lagrangian::{
    relative_violation, solve_cone_constrained, GrowHook, Grown, PolishHook,
};
use crate::solver::fista::{solve_group_lasso, ImageFunction, LossImage};
use crate::solver::{Progress, Solution, SolverSettings};

/// The pooled CNN program over fixed patterns of the patch matrix. Variables: `h x P` (gated) or
/// `h x 2P` (ReLU, `[V W]`) column-major, one such matrix per output (each neuron feeds one
/// output, as [`super::OutputMode::Separate`]); targets and predictions `n x c` column-major.
#[derive(Clone, Copy, Debug)]
pub struct ConvProgram<'a> {
    xs: &'a Matrix,
    n: usize,
    patches: usize,
    y: &'a [f64],
    masks: &'a Masks,
    loss: LossKind,
    model: ModelKind,
    lambda: f64,
    outputs: usize,
}

impl<'a> ConvProgram<'a> {
    /// Checks every shape and domain. `xs` is the stacked patch matrix of `n` samples with
    /// `patches` patches each (row `k * n + j`, [`crate::data::patches`]), `y` the `n x outputs`
    /// targets, `masks` patterns over the `nK` rows of `xs`.
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        xs: &'a Matrix,
        patches: usize,
        y: &'a [f64],
        outputs: usize,
        masks: &'a Masks,
        loss: LossKind,
        model: ModelKind,
        lambda: f64,
    ) -> Result<Self> {
        if outputs == 0 {
            return Err(CvxnnError::arg("outputs", "must be at least 1"));
        }
        if patches == 0 || xs.nrows() == 0 || xs.ncols() == 0 || xs.nrows() % patches != 0 {
            return Err(CvxnnError::Shape(format!(
                "patch matrix is {} x {}; it needs a non-zero multiple of {patches} rows and at least one column",
                xs.nrows(),
                xs.ncols()
            )));
        }
        let n = xs.nrows() / patches;
        if y.len() != n * outputs {
            return Err(CvxnnError::Shape(format!(
                "{} target values for {n} samples and {outputs} output(s)",
                y.len()
            )));
        }
        if masks.n() != xs.nrows() {
            return Err(CvxnnError::Shape(format!(
                "patterns cover {} patch rows, the patch matrix has {}",
                masks.n(),
                xs.nrows()
            )));
        }
        super::check_inputs(xs, y, outputs, masks, loss, lambda)?;
        Ok(ConvProgram {
            xs,
            n,
            patches,
            y,
            masks,
            loss,
            model,
            lambda,
            outputs,
        })
    }

    /// Number of samples `n`.
    pub fn n(&self) -> usize {
        self.n
    }

    /// Patches per sample `K`.
    pub fn patches(&self) -> usize {
        self.patches
    }

    /// Filter length `h` (bias entry included).
    pub fn filter_len(&self) -> usize {
        self.xs.ncols()
    }

    /// Number of outputs.
    pub fn outputs(&self) -> usize {
        self.outputs
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

    /// The patterns.
    pub fn masks(&self) -> &Masks {
        self.masks
    }

    /// Number of variables (`h * P` or `h * 2P`, times the outputs).
    pub fn n_vars(&self) -> usize {
        self.outputs * self.xs.ncols() * self.masks.len() * self.model.columns_per_pattern()
    }

    /// The loss bound to the targets.
    pub fn data(&self) -> LossImage<'a> {
        LossImage {
            loss: self.loss,
            y: self.y,
            outputs: self.outputs,
        }
    }

    /// The group-L2 penalty, one group per filter column.
    pub fn penalty(&self) -> GroupL2 {
        GroupL2::new(self.lambda, self.xs.ncols())
    }

    /// The pooled operator with the given layout (its image: `n x c` predictions, then each
    /// output's per-patch constraint values for [`Layout::ReluConstrained`]).
    pub fn operator(&self, layout: Layout) -> OutputBlocks<PatchSum<ArrangementOperator<'a>>> {
        OutputBlocks::new(
            PatchSum::new(
                ArrangementOperator::new(self.xs, self.masks, layout),
                self.n,
                self.patches,
            ),
            self.outputs,
            self.n,
        )
    }

    fn prediction_layout(&self) -> Layout {
        match self.model {
            ModelKind::GatedRelu => Layout::Gated,
            ModelKind::Relu => Layout::Relu,
        }
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

    /// Pooled predictions `sum_i sum_k D_ik X_k u_i` (`n x c`, column-major).
    pub fn predict(&self, vars: &[f64]) -> Result<Vec<f64>> {
        self.check_len(vars)?;
        let op = self.operator(self.prediction_layout());
        let mut z = vec![0.0; op.image_len()];
        op.apply(vars, &mut z);
        Ok(z)
    }

    /// Convex objective at `vars` (DESIGN section 0 scaling).
    pub fn objective(&self, vars: &[f64]) -> Result<f64> {
        let z = self.predict(vars)?;
        Ok(self.data().value(&z) + self.penalty().value(vars))
    }

    /// Largest relative per-patch cone-constraint violation (0 for gated ReLU).
    pub fn violation(&self, vars: &[f64]) -> Result<f64> {
        self.check_len(vars)?;
        if self.model == ModelKind::GatedRelu {
            return Ok(0.0);
        }
        let op = self.operator(Layout::ReluConstrained);
        let mut img = vec![0.0; op.image_len()];
        op.apply(vars, &mut img);
        Ok(relative_violation(&img[self.y.len()..]))
    }

    /// Solves the program from `warm` or zero: R-FISTA (gated ReLU) or the augmented
    /// Lagrangian (ReLU; with one output its outer steps try the Newton polish and its KKT
    /// bound, and the solve ends as soon as a polished point certifies `tol`).
    pub fn solve(
        &self,
        settings: &SolverSettings,
        warm: Option<&[f64]>,
        progress: &mut dyn FnMut(&Progress),
    ) -> Result<Solution> {
        settings.validate()?;
        if settings.precision != crate::solver::Precision::F64 {
            return Err(CvxnnError::arg(
                "precision",
                "the convolutional programs run in f64",
            ));
        }
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
        Ok(match self.model {
            ModelKind::GatedRelu => solve_group_lasso(
                &OutputBlocks::new(
                    DenseMap::new(pooled_patterns(self.xs, self.n, self.masks)),
                    self.outputs,
                    self.n,
                ),
                self.data(),
                &self.penalty(),
                x0,
                settings,
                None,
                progress,
            ),
            ModelKind::Relu => self.solve_working_set(settings, x0, progress),
        })
    }
}

impl ConvProgram<'_> {
    /// The ReLU program by the augmented Lagrangian on a working set of constraint rows
    /// ([`crate::operator::WorkingSetMap`]): every search ([`GrowHook`]) adds each group's most violated rows of
    /// the full program (multipliers 0), so the solve ends only when no row of the full program
    /// is violated beyond `tol`. Starts from the rows tight at a warm start. Every dual bound
    /// met on the way is valid (the working-set program is a relaxation); the polish hook (one
    /// output) and the returned violation use the full program. Several outputs share the
    /// working rows.
    fn solve_working_set(
        &self,
        settings: &SolverSettings,
        x0: &[f64],
        progress: &mut dyn FnMut(&Progress),
    ) -> Solution {
        let search = RowSearch::new(self.xs, self.masks);
        let map = search.map(self.n);
        if let Some(xu) = search.values(x0) {
            search.add(&map, &xu, 0.0, RowChoice::Tight);
        }
        let hook = |x: &[f64]| polish_and_certify(self, x);
        let grow = |x: &[f64], gamma: &mut Vec<f64>| {
            let Some(xu) = search.values(x) else {
                return Grown {
                    added: false,
                    scale: 0.0,
                };
            };
            let old = map.len();
            let scale = max_abs(xu.as_slice());
            let added = search.add(&map, &xu, scale, RowChoice::Violated(settings.tol));
            if added > 0 {
                let c = self.outputs;
                *gamma = regrow(gamma, 0, &vec![old; c], &vec![map.len(); c]);
            }
            Grown {
                added: added > 0,
                scale,
            }
        };
        let mut sol = solve_cone_constrained(
            &OutputBlocks::new(&map, self.outputs, self.n),
            self.data(),
            &self.penalty(),
            x0,
            None,
            settings,
            (self.outputs == 1).then_some(&hook as &PolishHook<'_>),
            Some(&grow as &GrowHook<'_>),
            progress,
        );
        sol.violation = self.violation(&sol.x).unwrap_or(f64::INFINITY);
        // A feasible warm start that the budget did not improve on is the better answer (the
        // solver itself only knows the polished points' full feasibility, not the start's).
        if x0.iter().any(|v| *v != 0.0) {
            if let (Ok(v0), Ok(f0)) = (self.violation(x0), self.objective(x0)) {
                let worse = sol.violation > settings.tol || sol.objective > f0;
                if v0 <= settings.tol && worse {
                    sol.x = x0.to_vec();
                    sol.objective = f0;
                    sol.violation = v0;
                }
            }
        }
        sol
    }
}

impl FaceProgram for ConvProgram<'_> {
    fn x(&self) -> &Matrix {
        self.xs
    }
    fn pooled_rows(&self) -> usize {
        self.patches
    }
    fn y(&self) -> &[f64] {
        self.y
    }
    fn masks(&self) -> &Masks {
        self.masks
    }
    fn loss(&self) -> LossKind {
        self.loss
    }
    fn lambda(&self) -> f64 {
        self.lambda
    }
    fn outputs(&self) -> usize {
        self.outputs
    }
    fn model(&self) -> ModelKind {
        self.model
    }
    fn data(&self) -> LossImage<'_> {
        ConvProgram::data(self)
    }
    fn predict(&self, vars: &[f64]) -> Result<Vec<f64>> {
        ConvProgram::predict(self, vars)
    }
    fn prediction_adjoint(&self, theta: &[f64], out: &mut [f64]) {
        self.operator(self.prediction_layout()).adjoint(theta, out);
    }
    fn objective(&self, vars: &[f64]) -> Result<f64> {
        ConvProgram::objective(self, vars)
    }
    fn violation(&self, vars: &[f64]) -> Result<f64> {
        ConvProgram::violation(self, vars)
    }
    fn stop_blocked_steps(&self) -> bool {
        true
    }
}
