//! The three-layer CNN with two ReLU layers (DESIGN section 2; derivation and the exactness
//! statement in docs/theory.md, "Three-layer CNN"):
//!
//! ```text
//! f(x) = sum_j w2_j ( sum_a w1_ja sum_k (x_k^T u_a)_+ )_+ ,   R = sum_{j,a} |w2_j| |w1_ja| ||u_a||
//! ```
//!
//! (convolution, ReLU, global sum pooling, linear, ReLU, linear), trained with the path penalty
//! `lambda R`. Its convex program has one block per (second-layer pattern `D2_l`, output sign
//! `s`); each block is the two-layer CNN ReLU program's variables `[V W]` (first-layer patterns
//! `D_i` of the patch matrix, the split `v - w` being the middle weights' sign):
//!
//! ```text
//! min (1/n) L( sum_{l,s} s D2_l g_ls ) + lambda sum (||v|| + ||w||)
//! s.t. g_ls = sum_i sum_k D_ik X_k (v_lsi - w_lsi),  (2 D2_l - I) g_ls >= 0,
//!      (2 D_ik - I) X_k v_lsi >= 0,  (2 D_ik - I) X_k w_lsi >= 0.
//! ```
//!
//! The operator is [`SecondLayer`] over [`OutputBlocks`] copies of the two-layer CNN operator;
//! the augmented Lagrangian and its dual bound run unchanged.

use super::ModelKind;
use crate::error::{CvxnnError, Result};
use crate::linalg::Matrix;
use crate::loss::LossKind;
use crate::operator::{
    ArrangementOperator, Layout, LinearMap, OutputBlocks, PatchSum, SecondLayer,
};
use crate::patterns::Masks;
use crate::penalty::GroupL2;
use crate::solver::augmented_lagrangian::{relative_violation, solve_cone_constrained};
use crate::solver::fista::{ImageFunction, LossImage};
use crate::solver::{Progress, Solution, SolverSettings};

/// The three-layer CNN program over fixed first-layer patterns (of the patch matrix) and
/// second-layer patterns (of the samples). Variables: `2 L` blocks (second-layer pattern `l`
/// with sign `+1` is block `2 l`, with sign `-1` block `2 l + 1`), each `h x 2P` column-major
/// (`[V W]`, as the two-layer CNN ReLU program).
#[derive(Clone, Copy, Debug)]
pub struct Cnn3Program<'a> {
    xs: &'a Matrix,
    n: usize,
    patches: usize,
    y: &'a [f64],
    first: &'a Masks,
    second: &'a Masks,
    loss: LossKind,
    lambda: f64,
}

impl<'a> Cnn3Program<'a> {
    /// Checks every shape and domain. `xs`: stacked patch matrix of `n` samples with `patches`
    /// patches each (row `k * n + j`); `y`: `n` targets (one output); `first`: patterns over
    /// the `nK` rows of `xs`; `second`: patterns over the `n` samples.
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        xs: &'a Matrix,
        patches: usize,
        y: &'a [f64],
        first: &'a Masks,
        second: &'a Masks,
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
                "{} target values for {n} samples (the three-layer CNN has one output)",
                y.len()
            )));
        }
        if first.n() != xs.nrows() {
            return Err(CvxnnError::Shape(format!(
                "first-layer patterns cover {} patch rows, the patch matrix has {}",
                first.n(),
                xs.nrows()
            )));
        }
        if second.n() != n {
            return Err(CvxnnError::Shape(format!(
                "second-layer patterns cover {} samples, the data has {n}",
                second.n()
            )));
        }
        if second.is_empty() {
            return Err(CvxnnError::arg(
                "second-layer-patterns",
                "no second-layer pattern to solve over",
            ));
        }
        if matches!(loss, LossKind::CrossEntropy) {
            return Err(CvxnnError::arg(
                "loss",
                "the three-layer CNN has one output (squared or logistic loss)",
            ));
        }
        super::check_inputs(xs, y, 1, first, loss, lambda)?;
        Ok(Cnn3Program {
            xs,
            n,
            patches,
            y,
            first,
            second,
            loss,
            lambda,
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

    /// First-layer patterns `P`.
    pub fn first_patterns(&self) -> usize {
        self.first.len()
    }

    /// Second-layer patterns `L`.
    pub fn second_patterns(&self) -> usize {
        self.second.len()
    }

    /// Blocks `2 L` (one per second-layer pattern and output sign).
    pub fn blocks(&self) -> usize {
        2 * self.second.len()
    }

    /// Variables per block (`h * 2P`).
    pub fn block_len(&self) -> usize {
        self.xs.ncols() * 2 * self.first.len()
    }

    /// Sign `s_b` of block `b`.
    pub fn block_sign(b: usize) -> f64 {
        if b % 2 == 0 {
            1.0
        } else {
            -1.0
        }
    }

    /// Number of variables.
    pub fn n_vars(&self) -> usize {
        self.blocks() * self.block_len()
    }

    /// The loss.
    pub fn loss(&self) -> LossKind {
        self.loss
    }

    /// Regularization strength.
    pub fn lambda(&self) -> f64 {
        self.lambda
    }

    /// The loss bound to the targets.
    pub fn data(&self) -> LossImage<'a> {
        LossImage {
            loss: self.loss,
            y: self.y,
            outputs: 1,
        }
    }

    /// The group-L2 penalty, one group per filter column.
    pub fn penalty(&self) -> GroupL2 {
        GroupL2::new(self.lambda, self.xs.ncols())
    }

    /// The operator: image `[predictions (n); second-layer rows (n x 2L); first-layer rows]`.
    pub fn operator(&self) -> SecondLayer<OutputBlocks<PatchSum<ArrangementOperator<'a>>>> {
        let (n, l) = (self.n, self.second.len());
        let mut active = Vec::with_capacity(2 * l * n);
        let mut signs = Vec::with_capacity(2 * l);
        for b in 0..2 * l {
            active.extend((0..n).map(|j| f64::from(u8::from(self.second.get(j, b / 2)))));
            signs.push(Self::block_sign(b));
        }
        let block = PatchSum::new(
            ArrangementOperator::new(self.xs, self.first, Layout::ReluConstrained),
            n,
            self.patches,
        );
        SecondLayer::new(OutputBlocks::new(block, 2 * l, n), n, active, signs)
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

    fn image(&self, vars: &[f64]) -> Result<Vec<f64>> {
        self.check_len(vars)?;
        let op = self.operator();
        let mut img = vec![0.0; op.image_len()];
        op.apply(vars, &mut img);
        Ok(img)
    }

    /// Predictions `sum_b s_b D2_b g_b` (`n`).
    pub fn predict(&self, vars: &[f64]) -> Result<Vec<f64>> {
        let mut img = self.image(vars)?;
        img.truncate(self.n);
        Ok(img)
    }

    /// Convex objective at `vars` (DESIGN section 0 scaling).
    pub fn objective(&self, vars: &[f64]) -> Result<f64> {
        let z = self.predict(vars)?;
        Ok(self.data().value(&z) + self.penalty().value(vars))
    }

    /// Largest relative violation of the first- and second-layer cone rows.
    pub fn violation(&self, vars: &[f64]) -> Result<f64> {
        let img = self.image(vars)?;
        Ok(relative_violation(&img[self.n..]))
    }

    /// Solves the program from `warm` or zero by the augmented Lagrangian (certified by its own
    /// dual bound).
    pub fn solve(
        &self,
        settings: &SolverSettings,
        warm: Option<&[f64]>,
        progress: &mut dyn FnMut(&Progress),
    ) -> Result<Solution> {
        settings.validate()?;
        ModelKind::Relu.check_precision(settings.precision)?;
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
        Ok(solve_cone_constrained(
            &self.operator(),
            self.data(),
            &self.penalty(),
            x0,
            None,
            settings,
            None,
            None,
            progress,
        ))
    }
}
