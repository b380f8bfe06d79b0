//! The two-layer CNN with local average pooling (DESIGN section 2, "Linear pooling in
//! general"): `f(x) = sum_j sum_w alpha_jw (1/|w|) sum_{k in w} act_j(x_k)` over `a` pooling
//! windows `w` (PyTorch `AvgPool(S)` then `Linear(m a, 1)`).
//!
//! **Gated ReLU (exact for its gates).** The filters sharing gate `i` combine into
//! `Z_i = sum_j u_j alpha_j^T` in `R^{h x a}`; the prediction is linear in `Z_i`,
//!
//! ```text
//! z = sum_i sum_w (1/|w|) sum_{k in w} D_ik X_k Z_i[:, w],
//! ```
//!
//! and the least weight decay over factorizations of `Z_i` is its nuclear norm, so the program
//! `min (1/n) L(z, y) + lambda sum_i ||Z_i||_*` (R-FISTA with singular-value thresholding) is
//! the gated network's training problem, and the rebuild by SVD attains it.
//!
//! **ReLU.** With filters free to feed every window the same argument gives a cone-constrained
//! nuclear norm (not tractable exactly). [`AvgPoolProgram`] solves instead the per-window
//! program: each filter feeds one window (its other output weights are zero), a group-L2 penalty
//! per (pattern, window) column and the cone constraints only on that window's patches. That is
//! exact for this sub-architecture (section 1's theorem applied to each window's arrangement,
//! the windows coupled only through the loss), and an upper bound for the full one. A lower
//! bound for the full one is the gated program over ALL patterns of the patch matrix (every ReLU
//! filter is a gated one whose gate is itself), see `docs/theory.md`.

use super::working_set::{max_abs, regrow, RowChoice, RowSearch};
use super::ModelKind;
use crate::data::{window_masks, window_patches};
use crate::error::{CvxnnError, Result};
use crate::linalg::Matrix;
use crate::loss::LossKind;
use crate::operator::{ArrangementOperator, Layout, LinearMap, PatchSum, WindowSum, WorkingSetMap};
use crate::patterns::Masks;
use crate::penalty::{GroupL2, NuclearNorm, Regularizer};
use crate::solver::augmented_lagrangian::{
    relative_violation, solve_cone_constrained, GrowHook, Grown,
};
use crate::solver::fista::{solve_group_lasso, ImageFunction, LossImage};
use crate::solver::{Progress, Solution, SolverSettings};

/// The average-pooled CNN program over fixed patterns of the patch matrix. Variables: one
/// `h x P` (gated) or `h x 2P` (ReLU, `[V W]`) matrix per window, column-major, window after
/// window; column `i` of window `w` is `Z_i[:, w]`.
#[derive(Clone, Debug)]
pub struct AvgPoolProgram<'a> {
    xw: Vec<Matrix>,
    mw: Vec<Masks>,
    n: usize,
    window_len: usize,
    y: &'a [f64],
    loss: LossKind,
    model: ModelKind,
    lambda: f64,
    patterns: usize,
}

impl<'a> AvgPoolProgram<'a> {
    /// `xs`: the stacked patch matrix of `n` samples with `patches` patches each (row
    /// `k * n + j`, [`crate::data::patches`]); `windows`: the patch indices of each pooling
    /// window ([`crate::data::Pooling::windows`], all of one size); `y`: `n` targets; `masks`:
    /// patterns over the `nK` rows of `xs` (restricted to each window).
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        xs: &Matrix,
        patches: usize,
        windows: &[Vec<usize>],
        y: &'a [f64],
        masks: &Masks,
        loss: LossKind,
        model: ModelKind,
        lambda: f64,
    ) -> Result<Self> {
        if patches == 0 || xs.nrows() == 0 || xs.ncols() == 0 || xs.nrows() % patches != 0 {
            return Err(CvxnnError::Shape(format!(
                "patch matrix is {} x {}; it needs a non-zero multiple of {patches} rows and at least one column",
                xs.nrows(),
                xs.ncols()
            )));
        }
        let n = xs.nrows() / patches;
        if y.len() != n {
            return Err(CvxnnError::Shape(format!(
                "{} target values for {n} samples",
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
        let window_len = windows.first().map_or(0, Vec::len);
        if window_len == 0
            || windows
                .iter()
                .any(|w| w.len() != window_len || w.iter().any(|&k| k >= patches))
        {
            return Err(CvxnnError::arg(
                "pool",
                format!("windows must be non-empty, of one size, over patches 0..{patches}"),
            ));
        }
        super::check_inputs(xs, y, 1, masks, loss, lambda)?;
        Ok(AvgPoolProgram {
            xw: window_patches(xs, windows, n),
            mw: window_masks(masks, windows, n),
            n,
            window_len,
            y,
            loss,
            model,
            lambda,
            patterns: masks.len(),
        })
    }

    /// Number of windows `a`.
    pub fn windows(&self) -> usize {
        self.xw.len()
    }

    /// Filter length `h` (bias entry included).
    pub fn filter_len(&self) -> usize {
        self.xw[0].ncols()
    }

    /// The model.
    pub fn model(&self) -> ModelKind {
        self.model
    }

    /// Number of variables.
    pub fn n_vars(&self) -> usize {
        self.windows() * self.filter_len() * self.patterns * self.model.columns_per_pattern()
    }

    /// The loss bound to the targets.
    pub fn data(&self) -> LossImage<'a> {
        LossImage {
            loss: self.loss,
            y: self.y,
            outputs: 1,
        }
    }

    /// The penalty: `lambda sum_i ||Z_i||_*` (gated) or group L2 per column (ReLU per window).
    pub fn penalty(&self) -> Box<dyn Regularizer> {
        match self.model {
            ModelKind::GatedRelu => Box::new(NuclearNorm::new(
                self.lambda,
                self.filter_len(),
                self.patterns,
                self.windows(),
            )),
            ModelKind::Relu => Box::new(GroupL2::new(self.lambda, self.filter_len())),
        }
    }

    /// The pooled operator with the given layout (image: `n` predictions, then each window's
    /// per-patch constraint values for [`Layout::ReluConstrained`]).
    pub fn operator(&self, layout: Layout) -> WindowSum<PatchSum<ArrangementOperator<'_>>> {
        let maps = self
            .xw
            .iter()
            .zip(&self.mw)
            .map(|(x, m)| {
                PatchSum::new(
                    ArrangementOperator::new(x, m, layout),
                    self.n,
                    self.window_len,
                )
            })
            .collect();
        WindowSum::new(maps, self.n, 1.0 / self.window_len as f64)
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

    /// Predictions at `vars`.
    pub fn predict(&self, vars: &[f64]) -> Result<Vec<f64>> {
        self.check_len(vars)?;
        let op = self.operator(match self.model {
            ModelKind::GatedRelu => Layout::Gated,
            ModelKind::Relu => Layout::Relu,
        });
        let mut z = vec![0.0; op.image_len()];
        op.apply(vars, &mut z);
        Ok(z)
    }

    /// Convex objective at `vars` (DESIGN section 0 scaling).
    pub fn objective(&self, vars: &[f64]) -> Result<f64> {
        let z = self.predict(vars)?;
        Ok(self.data().value(&z) + self.penalty().value(vars))
    }

    /// Largest relative cone-constraint violation (0 for gated ReLU).
    pub fn violation(&self, vars: &[f64]) -> Result<f64> {
        self.check_len(vars)?;
        if self.model == ModelKind::GatedRelu {
            return Ok(0.0);
        }
        let op = self.operator(Layout::ReluConstrained);
        let mut img = vec![0.0; op.image_len()];
        op.apply(vars, &mut img);
        Ok(relative_violation(&img[self.n..]))
    }

    /// Solves from `warm` or zero: R-FISTA with singular-value thresholding (gated) or the
    /// augmented Lagrangian (ReLU per window), each certified by its own dual bound.
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
        let x0 = match warm {
            Some(w) => {
                self.check_len(w)?;
                w.to_vec()
            }
            None => vec![0.0; self.n_vars()],
        };
        Ok(match self.model {
            ModelKind::GatedRelu => solve_group_lasso(
                &self.operator(Layout::Gated),
                self.data(),
                self.penalty().as_ref(),
                &x0,
                settings,
                None,
                progress,
            ),
            ModelKind::Relu => self.solve_working_set(settings, &x0, progress),
        })
    }

    /// The per-window ReLU program by the augmented Lagrangian on a working set of each
    /// window's cone rows (as [`super::ConvProgram`]'s: every search adds each group's most
    /// violated rows of the full program, the solve ends only when none is violated beyond
    /// `tol`, and every dual bound on the way is valid for the full program).
    fn solve_working_set(
        &self,
        settings: &SolverSettings,
        x0: &[f64],
        progress: &mut dyn FnMut(&Progress),
    ) -> Solution {
        let searches: Vec<RowSearch<'_>> = self
            .xw
            .iter()
            .zip(&self.mw)
            .map(|(x, m)| RowSearch::new(x, m))
            .collect();
        let op = WindowSum::new(
            searches.iter().map(|s| s.map(self.n)).collect(),
            self.n,
            1.0 / self.window_len as f64,
        );
        let block = x0.len() / self.windows();
        for ((search, map), start) in searches.iter().zip(op.windows()).zip((0..).step_by(block)) {
            if let Some(xu) = search.values(&x0[start..start + block]) {
                search.add(map, &xu, 0.0, RowChoice::Tight);
            }
        }
        let grow = |x: &[f64], gamma: &mut Vec<f64>| {
            let values: Vec<Matrix> = searches
                .iter()
                .zip(x.chunks_exact(block))
                .filter_map(|(s, xb)| s.values(xb))
                .collect();
            let scale = values
                .iter()
                .fold(0.0f64, |a, v| a.max(max_abs(v.as_slice())));
            let old: Vec<usize> = op.windows().iter().map(WorkingSetMap::len).collect();
            let added: usize = searches
                .iter()
                .zip(op.windows())
                .zip(&values)
                .map(|((s, map), xu)| s.add(map, xu, scale, RowChoice::Violated(settings.tol)))
                .sum();
            if added > 0 {
                let new: Vec<usize> = op.windows().iter().map(WorkingSetMap::len).collect();
                *gamma = regrow(gamma, 0, &old, &new);
            }
            Grown {
                added: added > 0,
                scale,
            }
        };
        let mut sol = solve_cone_constrained(
            &op,
            self.data(),
            &GroupL2::new(self.lambda, self.filter_len()),
            x0,
            None,
            settings,
            None,
            Some(&grow as &GrowHook<'_>),
            progress,
        );
        sol.violation = self.violation(&sol.x).unwrap_or(f64::INFINITY);
        sol
    }
}
