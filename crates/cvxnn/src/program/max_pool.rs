//! The two-layer CNN with max pooling (DESIGN section 2, "Max pooling"; `docs/theory.md`, "CNN
//! max pooling"): `f(x) = sum_j sum_w alpha_jw max_{k in w} (x_k^T u_j)_+`, for filters that
//! each feed one window (with one window, `S` = the whole map, that is every network of the
//! architecture: global max pooling). Per window the program is section 1's cone-constrained
//! group lasso with the hyperplane arrangement replaced by joint (activation, argmax) patterns:
//!
//! ```text
//! min (1/n) L(sum_w sum_i M_wi (v_wi - w_wi), y) + lambda sum_wi (||v_wi|| + ||w_wi||)
//! s.t. C_wi v_wi >= 0, C_wi w_wi >= 0
//! ```
//!
//! ([`MaxPoolWindow`] has `M` and `C`). With all joint patterns of every window it equals the
//! non-convex training problem of that architecture; with sampled ones it is a restriction
//! whose every feasible point is a real network.

use std::collections::HashSet;

use super::working_set::{max_abs, pick_rows, regrow, RowChoice};
use super::ModelKind;
use crate::data::window_patches;
use crate::error::{CvxnnError, Result};
use crate::linalg::Matrix;
use crate::loss::LossKind;
use crate::operator::{LinearMap, MaxPoolWindow, WindowSum, WorkingSetMap};
use crate::penalty::GroupL2;
use crate::solver::augmented_lagrangian::{
    relative_violation, solve_cone_constrained, GrowHook, Grown,
};
use crate::solver::fista::{ImageFunction, LossImage};
use crate::solver::{Progress, Solution, SolverSettings};

/// Joint pattern of gate `g` on a window's patch matrix (`s n x h`, row `t * n + j`): per
/// sample 0 (every patch below 0) or `t* + 1` (first argmax, `x_jt*^T g >= 0`).
fn joint_state(xw: &Matrix, n: usize, s: usize, g: &[f64]) -> Vec<u16> {
    let pre = xw.matvec(g);
    (0..n)
        .map(|j| {
            let mut best = 0;
            for t in 1..s {
                if pre[t * n + j] > pre[best * n + j] {
                    best = t;
                }
            }
            if pre[best * n + j] >= 0.0 {
                best as u16 + 1
            } else {
                0
            }
        })
        .collect()
}

/// Distinct joint patterns of the gates' columns on one window (patterns with every sample
/// off are dropped: they predict nothing), flattened pattern-major.
pub fn sampled_joint_patterns(xw: &Matrix, n: usize, s: usize, gates: &Matrix) -> Vec<u16> {
    let mut seen = HashSet::new();
    let mut out = Vec::new();
    for c in 0..gates.ncols() {
        let st = joint_state(xw, n, s, gates.col(c));
        if st.iter().any(|&v| v != 0) && seen.insert(st.clone()) {
            out.extend(st);
        }
    }
    out
}

/// Every joint pattern of one window: the cells of the arrangement of the patch rows `x_jt`
/// and the differences `x_jt - x_jt'` (`t < t'`), enumerated exactly
/// ([`crate::estimator::exact_patterns`]); each cell's signs fix the argmax and the activation.
pub fn exact_joint_patterns(
    xw: &Matrix,
    n: usize,
    s: usize,
    max_patterns: usize,
) -> Result<Vec<u16>> {
    let h = xw.ncols();
    let pairs: Vec<(usize, usize)> = (0..s)
        .flat_map(|t| (t + 1..s).map(move |u| (t, u)))
        .collect();
    let rows = s * n + pairs.len() * n;
    let rows_of = |r: usize, c: usize| -> f64 {
        if r < s * n {
            xw.get(r, c)
        } else {
            let (q, j) = ((r - s * n) / n, (r - s * n) % n);
            let (t, u) = pairs[q];
            xw.get(t * n + j, c) - xw.get(u * n + j, c)
        }
    };
    let a = Matrix::from_fn(rows, h, rows_of);
    let masks = crate::estimator::exact_patterns(&a, max_patterns)?;
    let mut seen = HashSet::new();
    let mut out = Vec::new();
    for i in 0..masks.len() {
        // Bit of row x_jt - x_jt' (t < t'): x_jt^T u >= x_jt'^T u.
        let wins = |j: usize, t: usize, u: usize| -> bool {
            let (lo, hi, flip) = if t < u { (t, u, false) } else { (u, t, true) };
            let q = pairs.iter().position(|&p| p == (lo, hi)).unwrap_or(0);
            masks.get(s * n + q * n + j, i) != flip
        };
        let mut st = Vec::with_capacity(n);
        let mut realizable = true;
        for j in 0..n {
            match (0..s).find(|&t| (0..s).all(|u| u == t || wins(j, t, u))) {
                Some(t) => st.push(if masks.get(t * n + j, i) {
                    t as u16 + 1
                } else {
                    0
                }),
                None => realizable = false,
            }
        }
        if realizable && st.iter().any(|&v| v != 0) && seen.insert(st.clone()) {
            out.extend(st);
        }
    }
    Ok(out)
}

/// The max-pooled CNN program (ReLU, each filter feeding one window) over fixed joint patterns.
/// Variables: window after window, each `h x 2P_w` (`[V W]`, column-major).
#[derive(Clone, Debug)]
pub struct MaxPoolProgram<'a> {
    xw: Vec<Matrix>,
    states: Vec<Vec<u16>>,
    n: usize,
    s: usize,
    y: &'a [f64],
    loss: LossKind,
    lambda: f64,
}

/// How to pick each window's joint patterns.
#[derive(Clone, Debug)]
pub enum JointPatterns<'g> {
    /// Those of the given gates (`h x G`), deduplicated per window.
    Gates(&'g Matrix),
    /// All of them (exact enumeration, at most this many arrangement cells per window).
    Exact(usize),
}

impl<'a> MaxPoolProgram<'a> {
    /// `xs`: stacked patch matrix (`nK x h`, row `k * n + j`); `windows`: patch indices per
    /// window (all one size); `y`: `n` targets.
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        xs: &Matrix,
        patches: usize,
        windows: &[Vec<usize>],
        y: &'a [f64],
        patterns: JointPatterns<'_>,
        loss: LossKind,
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
        let s = windows.first().map_or(0, Vec::len);
        if s == 0
            || s > u16::MAX as usize - 1
            || windows
                .iter()
                .any(|w| w.len() != s || w.iter().any(|&k| k >= patches))
        {
            return Err(CvxnnError::arg(
                "pool",
                format!("windows must be non-empty, of one size, over patches 0..{patches}"),
            ));
        }
        let xw = window_patches(xs, windows, n);
        let states = xw
            .iter()
            .map(|x| match &patterns {
                JointPatterns::Gates(g) if g.nrows() == xs.ncols() => {
                    Ok(sampled_joint_patterns(x, n, s, g))
                }
                JointPatterns::Gates(g) => Err(CvxnnError::Shape(format!(
                    "gates have {} rows, the patches {}",
                    g.nrows(),
                    xs.ncols()
                ))),
                JointPatterns::Exact(max) => exact_joint_patterns(x, n, s, *max),
            })
            .collect::<Result<Vec<_>>>()?;
        if states.iter().any(Vec::is_empty) {
            return Err(CvxnnError::arg(
                "patterns",
                "a pooling window has no joint pattern with an active sample",
            ));
        }
        // The shared checks, with one stand-in pattern (joint patterns were checked above).
        let mut stand_in = crate::patterns::Masks::new(1);
        stand_in.push_bools(&[true]);
        super::check_inputs(xs, y, 1, &stand_in, loss, lambda)?;
        Ok(MaxPoolProgram {
            xw,
            states,
            n,
            s,
            y,
            loss,
            lambda,
        })
    }

    /// Joint patterns per window.
    pub fn patterns_per_window(&self) -> Vec<usize> {
        self.states.iter().map(|s| s.len() / self.n).collect()
    }

    /// Filter length `h`.
    pub fn filter_len(&self) -> usize {
        self.xw[0].ncols()
    }

    /// The model (always ReLU).
    pub fn model(&self) -> ModelKind {
        ModelKind::Relu
    }

    /// The operator: predictions, then every window's constraint values.
    pub fn operator(&self) -> WindowSum<MaxPoolWindow<'_>> {
        let maps = self
            .xw
            .iter()
            .zip(&self.states)
            .map(|(x, st)| MaxPoolWindow::new(x, st, self.n, self.s))
            .collect();
        WindowSum::new(maps, self.n, 1.0)
    }

    /// Number of variables.
    pub fn n_vars(&self) -> usize {
        self.operator().n_vars()
    }

    /// The loss bound to the targets.
    pub fn data(&self) -> LossImage<'a> {
        LossImage {
            loss: self.loss,
            y: self.y,
            outputs: 1,
        }
    }

    /// Group L2, one group per filter column.
    pub fn penalty(&self) -> GroupL2 {
        GroupL2::new(self.lambda, self.filter_len())
    }

    fn image(&self, vars: &[f64]) -> Result<Vec<f64>> {
        let op = self.operator();
        if vars.len() != op.n_vars() {
            return Err(CvxnnError::Shape(format!(
                "{} variables given, the program has {}",
                vars.len(),
                op.n_vars()
            )));
        }
        let mut img = vec![0.0; op.image_len()];
        op.apply(vars, &mut img);
        Ok(img)
    }

    /// Convex objective at `vars`.
    pub fn objective(&self, vars: &[f64]) -> Result<f64> {
        let img = self.image(vars)?;
        Ok(self.data().value(&img[..self.n]) + self.penalty().value(vars))
    }

    /// Largest relative cone-constraint violation.
    pub fn violation(&self, vars: &[f64]) -> Result<f64> {
        Ok(relative_violation(&self.image(vars)?[self.n..]))
    }

    /// Per-window variable blocks of `vars` (each `h x 2P_w`), for the rebuild.
    pub fn blocks<'v>(&self, vars: &'v [f64]) -> Vec<&'v [f64]> {
        let mut rest = vars;
        self.operator()
            .windows()
            .iter()
            .map(|m| {
                let (b, r) = rest.split_at(m.n_vars().min(rest.len()));
                rest = r;
                b
            })
            .collect()
    }

    /// Solves from `warm` or zero by the augmented Lagrangian (its own dual bound certifies).
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
            Some(w) if w.len() == self.n_vars() => w.to_vec(),
            Some(w) => {
                return Err(CvxnnError::Shape(format!(
                    "{} warm-start values, the program has {}",
                    w.len(),
                    self.n_vars()
                )))
            }
            None => vec![0.0; self.n_vars()],
        };
        Ok(self.solve_working_set(settings, &x0, progress))
    }

    /// The augmented Lagrangian on a working set of each window's constraint rows (as
    /// [`super::ConvProgram`]'s: every search adds each column's most violated rows of the full
    /// program, the solve ends only when none is violated beyond `tol`, and every dual bound
    /// on the way is valid for the full program).
    fn solve_working_set(
        &self,
        settings: &SolverSettings,
        x0: &[f64],
        progress: &mut dyn FnMut(&Progress),
    ) -> Solution {
        let full = self.operator();
        let windows = full.windows();
        let op = WindowSum::new(
            windows
                .iter()
                .map(|w| WorkingSetMap::from_pooled(w.pooled(), w.n_patterns()))
                .collect(),
            self.n,
            1.0,
        );
        // Each window's full constraint values at `x`, and the largest in size over all.
        let values = |x: &[f64]| -> (Vec<Vec<f64>>, f64) {
            let mut start = 0;
            let cons: Vec<Vec<f64>> = windows
                .iter()
                .map(|w| {
                    let mut img = vec![0.0; w.image_len()];
                    w.apply(&x[start..start + w.n_vars()], &mut img);
                    start += w.n_vars();
                    img.split_off(self.n)
                })
                .collect();
            let scale = cons.iter().fold(0.0f64, |a, c| a.max(max_abs(c)));
            (cons, scale)
        };
        let h = self.filter_len();
        let add = |x: &[f64], choice: RowChoice| -> (usize, f64) {
            let (cons, scale) = values(x);
            let mut added = 0;
            for ((w, map), c) in windows.iter().zip(op.windows()).zip(&cons) {
                let p = w.n_patterns();
                for (g, col) in c.chunks_exact(self.n * self.s).enumerate() {
                    // Slot `j s + t` of column `g` (pattern `g % p`); rows are named by slot.
                    for r in pick_rows(col, |r| r, scale, choice, h) {
                        let row = w.constraint_row(g % p, r / self.s, r % self.s);
                        if map.add(g, r, 1.0, &row) {
                            added += 1;
                        }
                    }
                }
            }
            (added, scale)
        };
        add(x0, RowChoice::Tight);
        let grow = |x: &[f64], gamma: &mut Vec<f64>| {
            let old: Vec<usize> = op.windows().iter().map(WorkingSetMap::len).collect();
            let (added, scale) = add(x, RowChoice::Violated(settings.tol));
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
            &self.penalty(),
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
