//! The two-layer programs of DESIGN section 1: gated ReLU (group lasso) and ReLU
//! (cone-constrained group lasso) over a fixed set of activation patterns.

use super::polish::polish_and_certify;
use super::{ModelKind, OutputMode};
use crate::error::{CvxnnError, Result};
use crate::linalg::{Matrix, Matrix32};
use crate::loss::LossKind;
use crate::operator::{ArrangementOperator, Layout, LinearMap, OutputBlocks};
use crate::patterns::Masks;
use crate::penalty::{GroupL2, NuclearNorm, Regularizer};
use crate::solver::augmented_lagrangian::{relative_violation, solve_cone_constrained, PolishHook};
use crate::solver::fista::{solve_group_lasso, ImageFunction, LossImage};

use crate::solver::{Multipliers, Precision, Progress, Solution, SolverSettings, Status};

/// Tightest gap the single-precision phase aims for. It also ends when its line search fails
/// (function values closer than `f32` rounding) or at half the iteration budget; double
/// precision then goes on to `tol` and computes the certificate.
const F32_TOL: f64 = 1e-6;

/// `min (1/n) sum_j loss((sum_i D_i X u_i)_j, y_j) + lambda sum_i ||u_i||`, plus, for
/// [`ModelKind::Relu`], `u_i = v_i - w_i` with `(2 D_i - I) X v_i >= 0`, `(2 D_i - I) X w_i >= 0`.
///
/// Variables are a `d x P` matrix (gated) or `d x 2P` (ReLU: `[V W]`), column-major. With `c`
/// outputs there is one such matrix per output, stored one after the other, and the targets
/// and predictions are `n x c` column-major: output `k`'s predictions are
/// `sum_i D_i X u_{ik}`. [`OutputMode::Separate`] penalizes every column on its own (each
/// neuron feeds one output); [`OutputMode::Shared`] (gated ReLU) penalizes each pattern's
/// `d x c` block `[u_{i1} .. u_{ic}]` by its nuclear norm (every neuron feeds all outputs).
#[derive(Clone, Copy, Debug)]
pub struct TwoLayerProgram<'a> {
    x: &'a Matrix,
    y: &'a [f64],
    masks: &'a Masks,
    loss: LossKind,
    model: ModelKind,
    lambda: f64,
    outputs: usize,
    mode: OutputMode,
}

impl<'a> TwoLayerProgram<'a> {
    /// Checks every shape and domain, then builds the scalar-output program.
    pub fn new(
        x: &'a Matrix,
        y: &'a [f64],
        masks: &'a Masks,
        loss: LossKind,
        model: ModelKind,
        lambda: f64,
    ) -> Result<Self> {
        Self::with_outputs(x, y, 1, OutputMode::Separate, masks, loss, model, lambda)
    }

    /// Checks every shape and domain, then builds the program with `outputs` outputs (`y` is
    /// `n x outputs`, column-major). The shared-neuron ReLU program (a cone-constrained nuclear
    /// norm, NP-hard in general) is not one of these; see [`crate::program::SharedReluProgram`].
    #[allow(clippy::too_many_arguments)]
    pub fn with_outputs(
        x: &'a Matrix,
        y: &'a [f64],
        outputs: usize,
        mode: OutputMode,
        masks: &'a Masks,
        loss: LossKind,
        model: ModelKind,
        lambda: f64,
    ) -> Result<Self> {
        if outputs == 0 {
            return Err(CvxnnError::arg("outputs", "must be at least 1"));
        }
        if mode == OutputMode::Shared && model == ModelKind::Relu && outputs > 1 {
            return Err(CvxnnError::arg(
                "outputs",
                "the shared-neuron ReLU model is not a convex program of this form (its penalty is a cone-constrained nuclear norm); solve it in factored form with program::SharedReluProgram / solve_shared_relu_bm (Burer-Monteiro, with a lower bound), or use --model gated-relu or --outputs separate",
            ));
        }
        if x.nrows() == 0 || x.ncols() == 0 {
            return Err(CvxnnError::Shape(format!(
                "data matrix is {} x {}; it needs at least one sample and one column",
                x.nrows(),
                x.ncols()
            )));
        }
        if y.len() != x.nrows() * outputs {
            return Err(CvxnnError::Shape(format!(
                "{} target values for {} samples and {outputs} output{}",
                y.len(),
                x.nrows(),
                if outputs == 1 { "" } else { "s" }
            )));
        }
        if masks.n() != x.nrows() {
            return Err(CvxnnError::Shape(format!(
                "patterns cover {} samples, data has {}",
                masks.n(),
                x.nrows()
            )));
        }
        super::check_inputs(x, y, outputs, masks, loss, lambda)?;
        Ok(TwoLayerProgram {
            x,
            y,
            masks,
            loss,
            model,
            lambda,
            outputs,
            mode,
        })
    }

    /// Number of variables (`d * P` or `d * 2P`, times the outputs).
    pub fn n_vars(&self) -> usize {
        self.outputs * self.x.ncols() * self.columns()
    }

    /// Variable columns per output (`P` or `2P`).
    fn columns(&self) -> usize {
        self.masks.len() * self.model.columns_per_pattern()
    }

    /// Number of outputs.
    pub fn outputs(&self) -> usize {
        self.outputs
    }

    /// How the outputs share neurons.
    pub fn output_mode(&self) -> OutputMode {
        self.mode
    }

    /// The loss bound to this program's targets.
    pub fn data(&self) -> LossImage<'a> {
        LossImage {
            loss: self.loss,
            y: self.y,
            outputs: self.outputs,
        }
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

    /// The group-L2 penalty (one group per variable column): the penalty of every program but
    /// the shared-neuron one (see [`TwoLayerProgram::nuclear_penalty`]).
    pub fn penalty(&self) -> GroupL2 {
        GroupL2::new(self.lambda, self.x.ncols())
    }

    /// The nuclear norm over each pattern's `d x c` block ([`OutputMode::Shared`]).
    pub fn nuclear_penalty(&self) -> NuclearNorm {
        NuclearNorm::new(self.lambda, self.x.ncols(), self.columns(), self.outputs)
    }

    /// Penalty value at `vars`, whichever penalty the program has.
    pub fn penalty_value(&self, vars: &[f64]) -> f64 {
        match self.mode {
            OutputMode::Shared if self.outputs > 1 => self.nuclear_penalty().value(vars),
            _ => self.penalty().value(vars),
        }
    }

    /// The prediction operator (no constraint rows).
    pub fn prediction_operator(&self) -> OutputBlocks<ArrangementOperator<'a>> {
        let layout = match self.model {
            ModelKind::GatedRelu => Layout::Gated,
            ModelKind::Relu => Layout::Relu,
        };
        self.blocks(ArrangementOperator::new(self.x, self.masks, layout))
    }

    fn blocks<'b>(&self, op: ArrangementOperator<'b>) -> OutputBlocks<ArrangementOperator<'b>> {
        OutputBlocks::new(op, self.outputs, self.x.nrows())
    }

    /// Predictions `z = sum_i D_i X u_i` of a variable vector (`n x c`, column-major).
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
        Ok(self.data().value(&z) + self.penalty_value(vars))
    }

    /// Largest relative cone-constraint violation at `vars` (0 for gated ReLU).
    pub fn violation(&self, vars: &[f64]) -> Result<f64> {
        self.check_len(vars)?;
        if self.model == ModelKind::GatedRelu {
            return Ok(0.0);
        }
        let op = self.blocks(ArrangementOperator::new(
            self.x,
            self.masks,
            Layout::ReluConstrained,
        ));
        let mut img = vec![0.0; op.image_len()];
        op.apply(vars, &mut img);
        Ok(relative_violation(&img[self.y.len()..]))
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
        self.solve_warm(settings, warm, None, progress)
    }

    /// [`TwoLayerProgram::solve`] that also starts the augmented Lagrangian (ReLU) from a
    /// previous solve's multipliers (ignored when their length does not match).
    pub fn solve_warm(
        &self,
        settings: &SolverSettings,
        warm: Option<&[f64]>,
        multipliers: Option<&Multipliers>,
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
        self.model.check_precision(settings.precision)?;
        if self.separable() {
            return self.solve_per_output(settings, x0, multipliers, progress);
        }
        Ok(match settings.precision {
            Precision::F64 => self.solve_in(None, settings, x0, multipliers, None, progress),
            Precision::F32 => self.solve_mixed(settings, x0, multipliers, progress),
        })
    }

    /// Whether the program splits into one program per output that is solved better on its own:
    /// ReLU with the squared loss and several outputs (the per-output solves get the Newton
    /// polish and its KKT certificate, which are written for one output).
    fn separable(&self) -> bool {
        self.outputs > 1
            && self.model == ModelKind::Relu
            && self.loss == LossKind::Squared
            && self.mode == OutputMode::Separate
    }

    /// Solves each output's program on its own. The objective, the variables and the
    /// constraints all separate, so the sums of the objectives and of the dual bounds are the
    /// joint program's objective and a valid bound on its optimum.
    fn solve_per_output(
        &self,
        settings: &SolverSettings,
        x0: &[f64],
        multipliers: Option<&Multipliers>,
        progress: &mut dyn FnMut(&Progress),
    ) -> Result<Solution> {
        let start = std::time::Instant::now();
        let (n, c) = (self.x.nrows(), self.outputs);
        let nv = self.n_vars() / c;
        let gammas = multipliers.filter(|m| m.gamma.len() % c == 0);
        let mut joint = Solution {
            x: Vec::with_capacity(self.n_vars()),
            status: Status::Converged,
            objective: 0.0,
            dual_bound: 0.0,
            violation: 0.0,
            iterations: 0,
            seconds: 0.0,
            trace: Vec::new(),
            multipliers: None,
            step: None,
        };
        let (mut gamma, mut rho, mut with_multipliers) = (Vec::new(), 0.0f64, 0);
        for k in 0..c {
            let one = TwoLayerProgram::new(
                self.x,
                &self.y[k * n..(k + 1) * n],
                self.masks,
                self.loss,
                self.model,
                self.lambda,
            )?;
            let warm_k = gammas.map(|m| {
                let len = m.gamma.len() / c;
                Multipliers {
                    gamma: m.gamma[k * len..(k + 1) * len].to_vec(),
                    rho: m.rho,
                }
            });
            let (done_obj, done_dual, offset) =
                (joint.objective, joint.dual_bound, joint.iterations);
            let sol = one.solve_warm(
                settings,
                Some(&x0[k * nv..(k + 1) * nv]),
                warm_k.as_ref(),
                &mut |p: &Progress| {
                    let (objective, dual_bound) =
                        (done_obj + p.objective, done_dual + p.dual_bound);
                    progress(&Progress {
                        iteration: offset + p.iteration,
                        objective,
                        dual_bound,
                        relative_gap: crate::solver::relative_gap(objective, dual_bound),
                        violation: p.violation.max(joint.violation),
                    })
                },
            )?;
            joint.x.extend_from_slice(&sol.x);
            joint.objective += sol.objective;
            joint.dual_bound += sol.dual_bound;
            joint.violation = joint.violation.max(sol.violation);
            joint.iterations += sol.iterations;
            if joint.status == Status::Converged {
                joint.status = sol.status;
            }
            joint.trace.extend(sol.trace.iter().map(|p| Progress {
                iteration: offset + p.iteration,
                ..*p
            }));
            if let Some(m) = sol.multipliers {
                gamma.extend(m.gamma);
                rho = rho.max(m.rho);
                with_multipliers += 1;
            }
        }
        // One rho for all outputs (the largest): a warm start only needs a reasonable one.
        if with_multipliers == c {
            joint.multipliers = Some(Multipliers { gamma, rho });
        }
        joint.seconds = start.elapsed().as_secs_f64();
        Ok(joint)
    }

    /// Single-precision iterations until they stop paying, then double precision from there:
    /// the returned objective, gap and certificate come from the `f64` phase only.
    fn solve_mixed(
        &self,
        settings: &SolverSettings,
        x0: &[f64],
        multipliers: Option<&Multipliers>,
        progress: &mut dyn FnMut(&Progress),
    ) -> Solution {
        let start = std::time::Instant::now();
        let x32 = Matrix32::from_f64(self.x);
        // Half of the iteration budget at most, in case rounding keeps it from the tolerance.
        let first = self.solve_in(
            Some(&x32),
            &SolverSettings {
                tol: settings.tol.max(F32_TOL),
                max_iter: (settings.max_iter / 2).max(1),
                ..settings.clone()
            },
            x0,
            multipliers,
            None,
            progress,
        );
        drop(x32);
        let offset = first.iterations;
        let mut second = self.solve_in(
            None,
            &SolverSettings {
                max_iter: settings.max_iter.saturating_sub(offset).max(1),
                ..settings.clone()
            },
            &first.x,
            first.multipliers.as_ref(),
            first.step,
            &mut |p: &Progress| {
                progress(&Progress {
                    iteration: p.iteration + offset,
                    ..*p
                })
            },
        );
        second.iterations += offset;
        second.seconds = start.elapsed().as_secs_f64();
        let mut trace = first.trace;
        trace.extend(second.trace.iter().map(|p| Progress {
            iteration: p.iteration + offset,
            ..*p
        }));
        second.trace = trace;
        second
    }

    /// One solve with the products in `f64`, or in `f32` on `x32` (a copy of this program's
    /// data).
    fn solve_in(
        &self,
        x32: Option<&Matrix32>,
        settings: &SolverSettings,
        x0: &[f64],
        multipliers: Option<&Multipliers>,
        step0: Option<f64>,
        progress: &mut dyn FnMut(&Progress),
    ) -> Solution {
        let operator = |layout| {
            self.blocks(match x32 {
                Some(x32) => ArrangementOperator::new_f32(x32, self.masks, layout),
                None => ArrangementOperator::new(self.x, self.masks, layout),
            })
        };
        match self.model {
            ModelKind::GatedRelu => {
                let map = operator(Layout::Gated);
                match self.mode {
                    OutputMode::Shared if self.outputs > 1 => solve_group_lasso(
                        &map,
                        self.data(),
                        &self.nuclear_penalty(),
                        x0,
                        settings,
                        step0,
                        progress,
                    ),
                    _ => solve_group_lasso(
                        &map,
                        self.data(),
                        &self.penalty(),
                        x0,
                        settings,
                        step0,
                        progress,
                    ),
                }
            }
            ModelKind::Relu => self.solve_relu(
                &operator(Layout::ReluConstrained),
                settings,
                x0,
                multipliers,
                progress,
            ),
        }
    }

    /// Augmented Lagrangian whose outer steps try a Newton polish on the face they found, with
    /// the KKT dual bound there: the solve ends as soon as a polished point certifies `tol`.
    fn solve_relu(
        &self,
        map: &OutputBlocks<ArrangementOperator<'_>>,
        settings: &SolverSettings,
        x0: &[f64],
        multipliers: Option<&Multipliers>,
        progress: &mut dyn FnMut(&Progress),
    ) -> Solution {
        let hook = |x: &[f64]| polish_and_certify(self, x);
        // The Newton polish and its KKT bound are written for one output; with several, the
        // augmented Lagrangian's own gap certifies.
        let hook = (self.outputs == 1).then_some(&hook as &PolishHook<'_>);
        solve_cone_constrained(
            map,
            self.data(),
            &self.penalty(),
            x0,
            multipliers,
            settings,
            hook,
            None,
            progress,
        )
    }
}
