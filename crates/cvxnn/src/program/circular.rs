//! The linear two-layer circular CNN as an L1 program in the Fourier domain (DESIGN section 2,
//! "Circular CNNs"; derivation in section 11).
//!
//! Network on signals `x` in R^L (scalar output), `m` channels:
//! `f(x) = sum_{j=1..m} <a_j, u_j ⊛ x>` with `(u ⊛ x)_t = sum_s u_s x_{(t-s) mod L}`, trained by
//! `min (1/n) sum_i loss(f(x_i), y_i) + (lambda/2) sum_j (||u_j||^2 + ||a_j||^2)`.
//!
//! By the convolution theorem and Parseval, `f(x) = (1/L) sum_f c_f x̂_f` with
//! `c_f = sum_j conj(â_jf) û_jf`, and the least weight decay realizing `c` is
//! `(lambda/L) sum_{f=0}^{L-1} |c_f|`. In the real coordinates `z` of
//! [`crate::operator::FourierFeatures`] (one `(Re, Im)` pair per independent frequency) this is
//! exactly `lambda sum_f ||z_f||_2` with unit weights, so the training problem is the group lasso
//!
//! ```text
//! min_z (1/n) sum_i loss((Xf z)_i, y_i) + lambda sum_{f=0}^{floor(L/2)} ||(z_{2f}, z_{2f+1})||
//! ```
//!
//! over the Fourier features `Xf` — convex, solved by R-FISTA with a certified duality gap, and
//! its optimum is the global optimum of the non-convex network for every width `m >= 1`.

use crate::linalg::Matrix;
use crate::loss::LossKind;
use crate::operator::{filters_from_coefficients, FourierFeatures, LinearMap};
use crate::penalty::GroupL2;
use crate::solver::fista::{solve_group_lasso, LossImage};
use crate::solver::{Progress, Solution, SolverSettings};
use crate::{CvxnnError, Result};

/// The convex program of the linear two-layer circular CNN (module docs): Fourier features, a
/// scalar-output loss and the unit-weight group-L2 penalty over `(Re, Im)` pairs.
#[derive(Clone, Debug)]
pub struct CircularProgram<'a> {
    features: FourierFeatures,
    y: &'a [f64],
    loss: LossKind,
    lambda: f64,
}

impl<'a> CircularProgram<'a> {
    /// The program for signals `x` (`n x L`, one per row) and targets `y` (length `n`).
    /// `Err` on shape mismatches, non-finite data, targets the loss cannot take, a loss with
    /// several outputs (cross-entropy), or `lambda` not finite and `> 0`.
    pub fn new(x: &Matrix, y: &'a [f64], loss: LossKind, lambda: f64) -> Result<Self> {
        if x.nrows() != y.len() {
            return Err(CvxnnError::Shape(format!(
                "{} signals but {} targets",
                x.nrows(),
                y.len()
            )));
        }
        if x.nrows() == 0 {
            return Err(CvxnnError::arg("x", "needs at least one signal"));
        }
        if loss == LossKind::CrossEntropy {
            return Err(CvxnnError::arg(
                "loss",
                "the circular CNN has one output; use squared or logistic",
            ));
        }
        loss.check_targets(y, 1)?;
        if !(lambda.is_finite() && lambda > 0.0) {
            return Err(CvxnnError::arg(
                "lambda",
                format!("must be a finite number > 0, got {lambda}"),
            ));
        }
        Ok(CircularProgram {
            features: FourierFeatures::new(x)?,
            y,
            loss,
            lambda,
        })
    }

    /// The Fourier-feature operator `z -> Xf z`.
    pub fn features(&self) -> &FourierFeatures {
        &self.features
    }

    /// Regularization strength.
    pub fn lambda(&self) -> f64 {
        self.lambda
    }

    /// Signal length `L`.
    pub fn signal_len(&self) -> usize {
        self.features.signal_len()
    }

    /// Number of variables `2 (floor(L/2) + 1)`.
    pub fn n_vars(&self) -> usize {
        self.features.n_vars()
    }

    /// The penalty `lambda sum_f ||z_f||` over `(Re, Im)` pairs (unit weights are exact: see
    /// [`crate::operator::coefficients_to_spectrum`]).
    pub fn penalty(&self) -> GroupL2 {
        GroupL2::new(self.lambda, 2)
    }

    fn check_vars(&self, z: &[f64]) -> Result<()> {
        if z.len() != self.n_vars() {
            return Err(CvxnnError::Shape(format!(
                "{} coefficients for a circular program with {} variables",
                z.len(),
                self.n_vars()
            )));
        }
        Ok(())
    }

    /// Predictions `Xf z` on the training signals.
    pub fn predict(&self, z: &[f64]) -> Result<Vec<f64>> {
        self.check_vars(z)?;
        let mut out = vec![0.0; self.features.image_len()];
        self.features.apply(z, &mut out);
        Ok(out)
    }

    /// Convex objective `(1/n) sum loss((Xf z)_i, y_i) + lambda sum_f ||z_f||`.
    pub fn objective(&self, z: &[f64]) -> Result<f64> {
        let p = self.predict(z)?;
        Ok(self.loss.value(&p, self.y, 1) + self.penalty().value(z))
    }

    /// Smallest lambda at which `z = 0` is optimal: the largest `||(Xf^T grad h(0))_f||`.
    pub fn lambda_max(&self) -> f64 {
        let zero = vec![0.0; self.features.image_len()];
        let mut theta = vec![0.0; zero.len()];
        self.loss.grad(&zero, self.y, 1, &mut theta);
        let mut g = vec![0.0; self.n_vars()];
        self.features.adjoint(&theta, &mut g);
        self.penalty().dual_norm(&g)
    }

    /// Solves the program by R-FISTA to `settings.tol` relative duality gap (the solution's
    /// `dual_bound` is a lower bound on the training objective of every linear circular CNN of
    /// any width on this data). `warm` is a starting point (default zero).
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
        let data = LossImage {
            loss: self.loss,
            y: self.y,
            outputs: 1,
        };
        Ok(solve_group_lasso(
            &self.features,
            data,
            &self.penalty(),
            &x0,
            settings,
            None,
            progress,
        ))
    }

    /// The circular CNN realizing `z` with the least weight decay: one channel (see
    /// [`filters_from_coefficients`]), or none for `z = 0`. Its training objective equals
    /// [`CircularProgram::objective`] at `z` (up to rounding) whenever the coefficients of the
    /// always-zero feature columns (`Im` of `f = 0` and, for even `L`, of `f = L/2`) are zero, as
    /// they are in every solution of [`CircularProgram::solve`] started from zero.
    pub fn rebuild(&self, z: &[f64]) -> Result<CircularCnn> {
        self.check_vars(z)?;
        let len = self.signal_len();
        if z.iter().all(|&v| v == 0.0) {
            return Ok(CircularCnn {
                len,
                filters: Vec::new(),
                readouts: Vec::new(),
            });
        }
        let (u, a) = filters_from_coefficients(z, len)?;
        Ok(CircularCnn {
            len,
            filters: vec![u],
            readouts: vec![a],
        })
    }
}

/// A linear two-layer circular CNN `f(x) = sum_j <a_j, u_j ⊛ x>` on signals of length `L`.
#[derive(Clone, Debug, PartialEq)]
pub struct CircularCnn {
    len: usize,
    /// Filters `u_j` (each of length `L`).
    pub filters: Vec<Vec<f64>>,
    /// Readouts `a_j` (each of length `L`).
    pub readouts: Vec<Vec<f64>>,
}

impl CircularCnn {
    /// A network from its channels. `Err` unless there are as many filters as readouts, all of
    /// length `len >= 1`.
    pub fn new(len: usize, filters: Vec<Vec<f64>>, readouts: Vec<Vec<f64>>) -> Result<Self> {
        if len == 0 {
            return Err(CvxnnError::arg("signal length", "must be at least 1"));
        }
        if filters.len() != readouts.len()
            || filters.iter().chain(&readouts).any(|w| w.len() != len)
        {
            return Err(CvxnnError::Shape(format!(
                "{} filters and {} readouts must all have length {len}",
                filters.len(),
                readouts.len()
            )));
        }
        Ok(CircularCnn {
            len,
            filters,
            readouts,
        })
    }

    /// Signal length `L`.
    pub fn signal_len(&self) -> usize {
        self.len
    }

    /// Number of channels `m`.
    pub fn width(&self) -> usize {
        self.filters.len()
    }

    /// Outputs on the rows of `x` (`n x L`), by direct circular convolution (`O(n m L^2)`).
    pub fn predict(&self, x: &Matrix) -> Result<Vec<f64>> {
        if x.ncols() != self.len {
            return Err(CvxnnError::Shape(format!(
                "signals of length {} for a network on length {}",
                x.ncols(),
                self.len
            )));
        }
        let l = self.len;
        Ok((0..x.nrows())
            .map(|i| {
                let xi = x.row(i);
                let mut out = 0.0;
                for (u, a) in self.filters.iter().zip(&self.readouts) {
                    for (t, at) in a.iter().enumerate() {
                        // (u ⊛ x)_t = sum_s u_s x_{(t - s) mod L}.
                        let conv: f64 = u
                            .iter()
                            .enumerate()
                            .map(|(s, us)| us * xi[(t + l - s) % l])
                            .sum();
                        out += at * conv;
                    }
                }
                out
            })
            .collect())
    }

    /// Weight decay `(lambda/2) sum_j (||u_j||^2 + ||a_j||^2)`.
    pub fn weight_decay(&self, lambda: f64) -> f64 {
        let sq: f64 = self
            .filters
            .iter()
            .chain(&self.readouts)
            .flat_map(|w| w.iter())
            .map(|v| v * v)
            .sum();
        0.5 * lambda * sq
    }

    /// Training objective `(1/n) sum_i loss(f(x_i), y_i) + weight decay` (DESIGN section 0).
    pub fn objective(&self, x: &Matrix, y: &[f64], loss: LossKind, lambda: f64) -> Result<f64> {
        if x.nrows() != y.len() {
            return Err(CvxnnError::Shape(format!(
                "{} signals but {} targets",
                x.nrows(),
                y.len()
            )));
        }
        let p = self.predict(x)?;
        Ok(loss.value(&p, y, 1) + self.weight_decay(lambda))
    }
}
