//! Linear networks as nuclear-norm programs (DESIGN section 3; derivations in `docs/theory.md`,
//! "Linear networks").
//!
//! Every model here is a two-layer linear network on per-sample *patch matrices*
//! `P_j` in `R^{h x K}` (column `k` = patch `k` of sample `j`): `m` filters `u_i` in `R^h`, a
//! readout `a_{i,k,o}` per filter, position and output, and
//! `f_o(x_j) = sum_i sum_k a_{i,k,o} <u_i, P_j[:, k]>`. Weight decay
//! `(lambda/2) sum_i (||u_i||^2 + ||a_i||^2)` makes training equal to
//!
//! ```text
//! min_Z (1/n) sum_j loss(f(x_j), y_j) + lambda ||Z||_*,   Z = [Z_1 .. Z_c] in R^{h x Kc},
//! f_o(x_j) = <Z_o, P_j>,
//! ```
//!
//! exact for every width `m >= rank(Z*)` (at most `min(h, Kc)` neurons). Special cases:
//! the dense two-layer linear network (`h = d`, `K = 1`, `P_j = x_j`), the linear CNN with a
//! fully connected output over positions (`K` patches), the linear CNN with global average
//! pooling (`K = 1`, `P_j` = the mean patch: for `c = 1` the penalty is `lambda ||z||_2`), and
//! the circular linear CNN (`h = K = L`, `P_j[s, t] = x_{(t-s) mod L}`), whose program equals
//! the Fourier-L1 program of [`crate::program::CircularProgram`].
//!
//! Variables are `vec(Z)` column-major (entry `(o K + k) h + r` is `Z_o[r, k]`), which is the
//! layout of [`OutputBlocks`] over the flattened patches and of one [`NuclearNorm`] block.

use serde::{Deserialize, Serialize};

use crate::certificate::dual_bound;
use crate::linalg::Matrix;
use crate::loss::LossKind;
use crate::operator::{DenseMap, LinearMap, OutputBlocks};
use crate::penalty::{NuclearNorm, Regularizer};
use crate::solver::fista::{solve_group_lasso, LossImage};
use crate::solver::{Progress, Solution, SolverSettings};
use crate::{CvxnnError, Result};

/// Pooling between the linear convolution and the output layer.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum LinearPool {
    /// A fully connected output over every position (nuclear norm on `h x Kc`).
    #[default]
    None,
    /// Global average pooling, then a linear output (nuclear norm on `h x c`).
    Avg,
}

/// The nuclear-norm program of a two-layer linear network (module docs).
pub struct LinearProgram<'a> {
    op: OutputBlocks<DenseMap>,
    rows: usize,
    positions: usize,
    y: &'a [f64],
    outputs: usize,
    loss: LossKind,
    lambda: f64,
}

impl<'a> LinearProgram<'a> {
    /// The dense two-layer linear network on inputs `x` (`n x d`), targets `y` (`n x outputs`,
    /// column-major).
    pub fn dense(
        x: &Matrix,
        y: &'a [f64],
        outputs: usize,
        loss: LossKind,
        lambda: f64,
    ) -> Result<Self> {
        Self::from_features(x.clone(), x.ncols(), 1, y, outputs, loss, lambda)
    }

    /// The linear CNN on the stacked patch matrix `xs` of [`crate::data::patches`] (`nK x h`,
    /// row `k n + j` = patch `k` of sample `j`) for `n` samples.
    pub fn conv(
        xs: &Matrix,
        n: usize,
        pool: LinearPool,
        y: &'a [f64],
        outputs: usize,
        loss: LossKind,
        lambda: f64,
    ) -> Result<Self> {
        if n == 0 || xs.nrows() % n != 0 {
            return Err(CvxnnError::Shape(format!(
                "{} patch rows are not a multiple of {n} samples",
                xs.nrows()
            )));
        }
        let (h, k) = (xs.ncols(), xs.nrows() / n);
        let phi = match pool {
            LinearPool::None => Matrix::from_fn(n, h * k, |j, c| xs.get((c / h) * n + j, c % h)),
            LinearPool::Avg => Matrix::from_fn(n, h, |j, r| {
                (0..k).map(|p| xs.get(p * n + j, r)).sum::<f64>() / k as f64
            }),
        };
        let k = if pool == LinearPool::Avg { 1 } else { k };
        Self::from_features(phi, h, k, y, outputs, loss, lambda)
    }

    /// The circular linear CNN on signals `x` (`n x L`): filters and readouts of length `L`,
    /// `P_j[s, t] = x_{j, (t - s) mod L}` (the convention of [`crate::program::CircularProgram`]).
    pub fn circular(
        x: &Matrix,
        y: &'a [f64],
        outputs: usize,
        loss: LossKind,
        lambda: f64,
    ) -> Result<Self> {
        let l = x.ncols();
        let phi = circular_patches(x);
        Self::from_features(phi, l, l, y, outputs, loss, lambda)
    }

    /// The program over explicit features: row `j` of `phi` is `vec(P_j)` (`h x K`,
    /// column-major).
    pub fn from_features(
        phi: Matrix,
        rows: usize,
        positions: usize,
        y: &'a [f64],
        outputs: usize,
        loss: LossKind,
        lambda: f64,
    ) -> Result<Self> {
        let n = phi.nrows();
        if rows == 0 || positions == 0 || phi.ncols() != rows * positions {
            return Err(CvxnnError::Shape(format!(
                "{} feature columns for patches of {rows} x {positions}",
                phi.ncols()
            )));
        }
        if n == 0 {
            return Err(CvxnnError::arg("x", "needs at least one sample"));
        }
        if outputs == 0 || y.len() != n * outputs {
            return Err(CvxnnError::Shape(format!(
                "{} targets for {n} samples x {outputs} outputs",
                y.len()
            )));
        }
        if !(lambda.is_finite() && lambda > 0.0) {
            return Err(CvxnnError::arg(
                "lambda",
                format!("must be a finite number > 0, got {lambda}"),
            ));
        }
        if let Some(v) = phi.as_slice().iter().find(|v| !v.is_finite()) {
            return Err(CvxnnError::arg("x", format!("data contains {v}")));
        }
        loss.check_targets(y, outputs)?;
        Ok(LinearProgram {
            op: OutputBlocks::new(DenseMap::new(phi), outputs, n),
            rows,
            positions,
            y,
            outputs,
            loss,
            lambda,
        })
    }

    /// Samples `n`.
    pub fn samples(&self) -> usize {
        self.y.len() / self.outputs
    }
    /// Outputs `c`.
    pub fn outputs(&self) -> usize {
        self.outputs
    }
    /// Filter length `h` (rows of `Z`).
    pub fn rows(&self) -> usize {
        self.rows
    }
    /// Positions `K` (columns of `Z` per output).
    pub fn positions(&self) -> usize {
        self.positions
    }
    /// Regularization strength.
    pub fn lambda(&self) -> f64 {
        self.lambda
    }
    /// The loss.
    pub fn loss(&self) -> LossKind {
        self.loss
    }
    /// Targets (`n x c`, column-major).
    pub fn y(&self) -> &[f64] {
        self.y
    }
    /// The features `Phi` (`n x hK`, row `j` = `vec(P_j)`).
    pub fn features(&self) -> &Matrix {
        self.op.inner().matrix()
    }
    /// The map `vec(Z) -> predictions` (`n x c`, column-major).
    pub fn operator(&self) -> &OutputBlocks<DenseMap> {
        &self.op
    }
    /// Number of variables `h K c`.
    pub fn n_vars(&self) -> usize {
        self.op.n_vars()
    }
    /// `lambda ||Z||_*` as a [`NuclearNorm`] with one `h x Kc` block.
    pub fn penalty(&self) -> NuclearNorm {
        NuclearNorm::new(self.lambda, self.rows, 1, self.positions * self.outputs)
    }
    /// `Z` as an `h x Kc` matrix.
    pub fn z_matrix(&self, z: &[f64]) -> Result<Matrix> {
        self.check_vars(z)?;
        Ok(self.penalty().block(z, 0))
    }

    fn data(&self) -> LossImage<'_> {
        LossImage {
            loss: self.loss,
            y: self.y,
            outputs: self.outputs,
        }
    }

    fn check_vars(&self, z: &[f64]) -> Result<()> {
        if z.len() != self.n_vars() {
            return Err(CvxnnError::Shape(format!(
                "{} variables for a linear program with {}",
                z.len(),
                self.n_vars()
            )));
        }
        Ok(())
    }

    /// Predictions (`n x c`, column-major) at `vec(Z) = z`.
    pub fn predict(&self, z: &[f64]) -> Result<Vec<f64>> {
        self.check_vars(z)?;
        let mut out = vec![0.0; self.op.image_len()];
        self.op.apply(z, &mut out);
        Ok(out)
    }

    /// Convex objective `h(Phi Z) + lambda ||Z||_*`.
    pub fn objective(&self, z: &[f64]) -> Result<f64> {
        let p = self.predict(z)?;
        Ok(self.loss.value(&p, self.y, self.outputs) + self.penalty().value(z))
    }

    /// `theta = grad h(Phi Z)` and `||Phi^T theta||_2` (spectral norm of the `h x Kc` matrix):
    /// the dual condition is `||Phi^T theta||_2 <= lambda` at the optimum.
    pub fn dual_point(&self, z: &[f64]) -> Result<(Vec<f64>, f64)> {
        let p = self.predict(z)?;
        let mut theta = vec![0.0; p.len()];
        self.loss.grad(&p, self.y, self.outputs, &mut theta);
        let mut g = vec![0.0; self.n_vars()];
        self.op.adjoint(&theta, &mut g);
        Ok((theta, self.penalty().dual_norm(&g)))
    }

    /// The dual certificate at `z`: `(spectral norm ||Phi^T grad h||_2, lower bound)`, the bound
    /// `-h*(s theta)` with `s = min(1, lambda / spectral)` (valid for any `z`; tight at the
    /// optimum, where the spectral norm is at most `lambda`).
    pub fn certificate(&self, z: &[f64]) -> Result<(f64, f64)> {
        let (theta, spec) = self.dual_point(z)?;
        Ok((spec, dual_bound(self.data(), &theta, spec, self.lambda)))
    }

    /// [`LinearProgram::certificate`] at given predictions `p` (`n x c`, column-major), e.g. a
    /// saved network's outputs: the dual point `grad h(p)` needs nothing else.
    pub fn certificate_at(&self, p: &[f64]) -> Result<(f64, f64)> {
        if p.len() != self.op.image_len() {
            return Err(CvxnnError::Shape(format!(
                "{} predictions for a linear program with {} outputs",
                p.len(),
                self.op.image_len()
            )));
        }
        let mut theta = vec![0.0; p.len()];
        self.loss.grad(p, self.y, self.outputs, &mut theta);
        let mut g = vec![0.0; self.n_vars()];
        self.op.adjoint(&theta, &mut g);
        let spec = self.penalty().dual_norm(&g);
        Ok((spec, dual_bound(self.data(), &theta, spec, self.lambda)))
    }

    /// Smallest lambda at which `Z = 0` is optimal: `||Phi^T grad h(0)||_2`.
    pub fn lambda_max(&self) -> f64 {
        let zero = vec![0.0; self.n_vars()];
        self.dual_point(&zero).map(|(_, s)| s).unwrap_or(f64::NAN)
    }

    /// Proximal gradient with singular-value thresholding (R-FISTA) to `settings.tol` relative
    /// duality gap; `warm` is a starting point (default zero).
    pub fn solve(
        &self,
        settings: &SolverSettings,
        warm: Option<&[f64]>,
        progress: &mut dyn FnMut(&Progress),
    ) -> Result<Solution> {
        settings.validate()?;
        let x0 = match warm {
            Some(w) => {
                self.check_vars(w)?;
                if w.iter().any(|v| !v.is_finite()) {
                    return Err(CvxnnError::arg("warm start", "must be finite"));
                }
                w.to_vec()
            }
            None => vec![0.0; self.n_vars()],
        };
        Ok(solve_group_lasso(
            &self.op,
            self.data(),
            &self.penalty(),
            &x0,
            settings,
            None,
            progress,
        ))
    }

    /// The network realizing `z` with the least weight decay: from the SVD
    /// `Z = sum_i s_i a_i b_i^T`, neuron `i` has filter `sqrt(s_i) a_i` and readout
    /// `sqrt(s_i) b_i` (`rank(Z) <= min(h, Kc)` neurons; singular values below `1e-12 s_max`
    /// are dropped as rounding). Its weight decay is `lambda ||Z||_*`.
    pub fn rebuild(&self, z: &[f64]) -> Result<LinearNetwork> {
        let zm = self.z_matrix(z)?;
        let (h, kc) = (self.rows, self.positions * self.outputs);
        let svd = zm
            .as_ref()
            .thin_svd()
            .map_err(|_| CvxnnError::arg("z", "the SVD of Z did not converge"))?;
        let (u, s, v) = (svd.U(), svd.S().column_vector(), svd.V());
        let smax = (0..s.nrows()).map(|i| s[i]).fold(0.0, f64::max);
        let keep: Vec<usize> = (0..s.nrows())
            .filter(|&i| s[i] > 1e-12 * smax && s[i] > 0.0)
            .collect();
        let m = keep.len();
        let filters = Matrix::from_fn(m, h, |i, r| s[keep[i]].sqrt() * u[(r, keep[i])]);
        // PyTorch flattens a conv output (m, K) channel-major: column i K + k.
        let k = self.positions;
        let readout = Matrix::from_fn(self.outputs, m * k, |o, col| {
            let (i, p) = (col / k, col % k);
            s[keep[i]].sqrt() * v[(o * k + p, keep[i])]
        });
        debug_assert_eq!(kc, v.nrows());
        Ok(LinearNetwork {
            filters,
            readout,
            positions: k,
        })
    }
}

/// Circular patch features (`n x L^2`): column `t L + s` is `x_{(t - s) mod L}`.
pub fn circular_patches(x: &Matrix) -> Matrix {
    let l = x.ncols();
    Matrix::from_fn(x.nrows(), l * l, |j, c| {
        let (t, s) = (c / l, c % l);
        x.get(j, (t + l - s) % l)
    })
}

/// A two-layer linear network on patch matrices: filters `U` (`m x h`, a PyTorch conv or
/// `Linear(h, m)` weight) and readout `A` (`c x mK`, a PyTorch `Linear(mK, c)` weight over the
/// channel-major flattened conv output).
#[derive(Clone, Debug, PartialEq)]
pub struct LinearNetwork {
    /// First-layer weight `m x h`.
    pub filters: Matrix,
    /// Output weight `c x mK`.
    pub readout: Matrix,
    /// Positions `K`.
    pub positions: usize,
}

impl LinearNetwork {
    /// Neurons (filters) `m`.
    pub fn width(&self) -> usize {
        self.filters.nrows()
    }

    /// Predictions (`n x c`, column-major) on features `phi` (`n x hK`, row `j` = `vec(P_j)`),
    /// computed layer by layer: conv responses `<u_i, P_j[:, k]>`, then the readout.
    pub fn predict(&self, phi: &Matrix) -> Result<Vec<f64>> {
        let (m, h, k, c) = (
            self.width(),
            self.filters.ncols(),
            self.positions,
            self.readout.nrows(),
        );
        if phi.ncols() != h * k || self.readout.ncols() != m * k {
            return Err(CvxnnError::Shape(format!(
                "features of width {} for a network with {m} filters of {h} over {k} positions",
                phi.ncols()
            )));
        }
        let n = phi.nrows();
        let mut out = vec![0.0; n * c];
        for j in 0..n {
            let hidden: Vec<f64> = (0..m * k)
                .map(|col| {
                    let (i, p) = (col / k, col % k);
                    (0..h)
                        .map(|r| self.filters.get(i, r) * phi.get(j, p * h + r))
                        .sum()
                })
                .collect();
            for o in 0..c {
                out[o * n + j] = (0..m * k).map(|q| self.readout.get(o, q) * hidden[q]).sum();
            }
        }
        Ok(out)
    }

    /// `(lambda/2) (||U||_F^2 + ||A||_F^2)`.
    pub fn weight_decay(&self, lambda: f64) -> f64 {
        let sq = |m: &Matrix| m.as_slice().iter().map(|v| v * v).sum::<f64>();
        0.5 * lambda * (sq(&self.filters) + sq(&self.readout))
    }

    /// The non-convex training objective of DESIGN section 0 on features `phi`.
    pub fn objective(&self, phi: &Matrix, y: &[f64], loss: LossKind, lambda: f64) -> Result<f64> {
        let p = self.predict(phi)?;
        let c = self.readout.nrows();
        if y.len() != p.len() {
            return Err(CvxnnError::Shape(format!(
                "{} targets for {} predictions",
                y.len(),
                p.len()
            )));
        }
        Ok(loss.value(&p, y, c) + self.weight_decay(lambda))
    }
}
