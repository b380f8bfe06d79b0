//! The circular CNN with a single ReLU layer as a cone-constrained L1 program in the Fourier
//! domain (DESIGN section 2, "Circular CNNs"; Ergen & Pilanci, ICLR 2021, section 3; the
//! derivation is in `docs/theory.md`, "Circular CNNs").
//!
//! Network on signals `x` in R^L (scalar output), `m` parallel channels:
//!
//! ```text
//! f(x) = sum_{j=1..m} w_j ( <a_j, h_j ⊛ x> )_+ ,   (h ⊛ x)_t = sum_s h_s x_{(t-s) mod L},
//! min (1/n) sum_i loss(f(x_i), y_i) + (lambda/2) sum_j (||a_j||^2 + w_j^2)  s.t. ||h_j|| <= 1.
//! ```
//!
//! Each channel is a circular convolution (a full-length filter `h_j`, kept in the unit ball), a
//! fully connected readout `a_j` to one ReLU unit, and an output weight `w_j`; weight decay acts
//! on the two layers around the ReLU. The unit `j` computes `(x^T v_j)_+` for the time-domain
//! vector `v_j` with `conj(v̂_jf) = conj(â_jf) ĥ_jf`, and the least `||a_j||` over filters in the
//! unit ball is `(1/L) sum_f |v̂_jf|` (Cauchy-Schwarz), so after balancing `a_j` against `w_j`
//! the regularizer is `lambda sum_j |w_j| (1/L) ||v̂_j||_1`: section 1's program with the
//! Fourier L1 norm in place of the Euclidean one. In the real coordinates of
//! [`crate::operator::FourierFeatures`] (`Xf z = X v`, one `(Re, Im)` pair per independent
//! frequency) that norm is `sum_f ||z_f||_2` with unit weights, so the program is
//!
//! ```text
//! min (1/n) sum_j loss((sum_i D_i Xf (z_i - z'_i))_j, y_j) + lambda sum_i sum_f (||z_if|| + ||z'_if||)
//! s.t. (2 D_i - I) Xf z_i >= 0,  (2 D_i - I) Xf z'_i >= 0,
//! ```
//!
//! `D_i` the activation patterns of the signals `X` (the same arrangement as `Xf`'s, whose column
//! space is `X`'s). With every pattern it is exact for the network above at any width
//! `m >= m*`; with sampled patterns it is a restriction (an upper bound, each point a network).
//! The augmented Lagrangian solves it with the penalty `GroupL2` of group size 2 over every
//! variable column; its own dual bound certifies (the dense Newton polish and its KKT bound are
//! written for the Euclidean group norm and are not used).

use crate::error::{CvxnnError, Result};
use crate::linalg::Matrix;
use crate::loss::LossKind;
use crate::operator::{
    coefficients_to_spectrum, inverse_real_spectrum, ArrangementOperator, FourierFeatures, Layout,
    LinearMap,
};
use crate::patterns::Masks;
use crate::penalty::GroupL2;
use crate::solver::augmented_lagrangian::{relative_violation, solve_cone_constrained};
use crate::solver::fista::{ImageFunction, LossImage};
use crate::solver::{Progress, Solution, SolverSettings};
use realfft::num_complex::Complex;

/// The cone-constrained Fourier-L1 program of the ReLU circular CNN over fixed patterns (module
/// docs). Variables: `[Z Z']`, a `2G x 2P` matrix, column-major (`G = floor(L/2) + 1`), column
/// `i < P` the coefficients `z_i` of pattern `i`'s positive units, column `P + i` the negative
/// ones'.
#[derive(Clone, Debug)]
pub struct CircularReluProgram<'a> {
    features: FourierFeatures,
    y: &'a [f64],
    masks: &'a Masks,
    loss: LossKind,
    lambda: f64,
}

impl<'a> CircularReluProgram<'a> {
    /// The program for signals `x` (`n x L`, one per row), targets `y` (length `n`) and
    /// patterns over the `n` signals. `Err` on shape mismatches, non-finite data, no pattern,
    /// targets the loss cannot take, a loss with several outputs (cross-entropy), or `lambda`
    /// not finite and `> 0`.
    pub fn new(
        x: &Matrix,
        y: &'a [f64],
        masks: &'a Masks,
        loss: LossKind,
        lambda: f64,
    ) -> Result<Self> {
        if x.nrows() == 0 || x.ncols() == 0 {
            return Err(CvxnnError::Shape(format!(
                "signal matrix is {} x {}; it needs at least one signal of length >= 1",
                x.nrows(),
                x.ncols()
            )));
        }
        if x.nrows() != y.len() {
            return Err(CvxnnError::Shape(format!(
                "{} signals but {} targets",
                x.nrows(),
                y.len()
            )));
        }
        if masks.n() != x.nrows() {
            return Err(CvxnnError::Shape(format!(
                "patterns cover {} samples, there are {} signals",
                masks.n(),
                x.nrows()
            )));
        }
        if loss == LossKind::CrossEntropy {
            return Err(CvxnnError::arg(
                "loss",
                "the circular CNN has one output; use squared or logistic",
            ));
        }
        super::check_inputs(x, y, 1, masks, loss, lambda)?;
        Ok(CircularReluProgram {
            features: FourierFeatures::new(x)?,
            y,
            masks,
            loss,
            lambda,
        })
    }

    /// The Fourier features `Xf` (`n x 2G`).
    pub fn features(&self) -> &FourierFeatures {
        &self.features
    }

    /// Signal length `L`.
    pub fn signal_len(&self) -> usize {
        self.features.signal_len()
    }

    /// Regularization strength.
    pub fn lambda(&self) -> f64 {
        self.lambda
    }

    /// The loss.
    pub fn loss(&self) -> LossKind {
        self.loss
    }

    /// The patterns.
    pub fn masks(&self) -> &Masks {
        self.masks
    }

    /// Number of variables `2G * 2P`.
    pub fn n_vars(&self) -> usize {
        self.features.n_vars() * 2 * self.masks.len()
    }

    /// The penalty `lambda sum_i sum_f ||z_if||`: group size 2 over the whole variable vector,
    /// which is one `(Re, Im)` pair per frequency inside every column (`2G` is even).
    pub fn penalty(&self) -> GroupL2 {
        GroupL2::new(self.lambda, 2)
    }

    /// The loss bound to the targets.
    pub fn data(&self) -> LossImage<'a> {
        LossImage {
            loss: self.loss,
            y: self.y,
            outputs: 1,
        }
    }

    /// The arrangement operator of `Xf` with the given layout.
    pub fn operator(&self, layout: Layout) -> ArrangementOperator<'_> {
        ArrangementOperator::new(self.features.matrix(), self.masks, layout)
    }

    fn check_len(&self, vars: &[f64]) -> Result<()> {
        if vars.len() != self.n_vars() {
            return Err(CvxnnError::Shape(format!(
                "{} variables given, the circular program has {}",
                vars.len(),
                self.n_vars()
            )));
        }
        Ok(())
    }

    /// Predictions `sum_i D_i Xf (z_i - z'_i)` on the training signals.
    pub fn predict(&self, vars: &[f64]) -> Result<Vec<f64>> {
        self.check_len(vars)?;
        let op = self.operator(Layout::Relu);
        let mut z = vec![0.0; op.image_len()];
        op.apply(vars, &mut z);
        Ok(z)
    }

    /// Convex objective at `vars` (DESIGN section 0 scaling).
    pub fn objective(&self, vars: &[f64]) -> Result<f64> {
        let z = self.predict(vars)?;
        Ok(self.data().value(&z) + self.penalty().value(vars))
    }

    /// Largest relative cone-constraint violation at `vars`.
    pub fn violation(&self, vars: &[f64]) -> Result<f64> {
        self.check_len(vars)?;
        let op = self.operator(Layout::ReluConstrained);
        let mut img = vec![0.0; op.image_len()];
        op.apply(vars, &mut img);
        Ok(relative_violation(&img[self.y.len()..]))
    }

    /// Solves the program by the augmented Lagrangian from `warm` or zero; the solution's
    /// `dual_bound` bounds the program's optimum from below (with every pattern of `X`, the
    /// optimum of the network in the module docs).
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
                "the circular programs run in f64",
            ));
        }
        let x0 = match warm {
            Some(w) => {
                self.check_len(w)?;
                if w.iter().any(|v| !v.is_finite()) {
                    return Err(CvxnnError::arg("warm start", "must be finite"));
                }
                w.to_vec()
            }
            None => vec![0.0; self.n_vars()],
        };
        Ok(solve_cone_constrained(
            &self.operator(Layout::ReluConstrained),
            self.data(),
            &self.penalty(),
            &x0,
            None,
            settings,
            None,
            None,
            progress,
        ))
    }

    /// The network realizing `vars` with the least weight decay: one channel per non-zero
    /// column (see [`relu_channel`]), output weight `+` for `z_i`, `-` for `z'_i`. Its training
    /// objective equals [`CircularReluProgram::objective`] when the cone constraints hold (each
    /// unit then computes `D_i Xf z_i`) and the always-zero feature columns carry no
    /// coefficient (true of every solve started from zero).
    pub fn rebuild(&self, vars: &[f64]) -> Result<CircularReluCnn> {
        self.check_len(vars)?;
        let len = self.signal_len();
        let cols = self.features.n_vars();
        let p = self.masks.len();
        let mut net = CircularReluCnn {
            len,
            filters: Vec::new(),
            readouts: Vec::new(),
            output: Vec::new(),
        };
        for (c, z) in vars.chunks(cols).enumerate() {
            if let Some((h, a, w)) = relu_channel(z, len)? {
                let sign = if c < p { 1.0 } else { -1.0 };
                net.filters.push(h);
                net.readouts.push(a);
                net.output.push(sign * w);
            }
        }
        Ok(net)
    }
}

/// One channel of [`CircularReluCnn`]: filter `h`, readout `a`, output weight `w`.
pub type Channel = (Vec<f64>, Vec<f64>, f64);

/// One channel `(h, a, w)` (unit-norm filter, readout, output weight `w >= 0`) whose unit
/// computes `w (<a, h ⊛ x>)_+ = (x^T v)_+` for the time-domain weight `v` with Fourier-feature
/// coefficients `z` (`Xf z = X v`), at the least weight decay `(1/2)(||a||^2 + w^2)`, which then
/// equals `rho = (1/L) sum_{f=0}^{L-1} |c_f| = sum_f ||z_f||` (`c` = [`coefficients_to_spectrum`]).
/// `None` for `z = 0`.
///
/// With `S = sum_f |c_f|`: `ĥ_f = sqrt(L |c_f| / S)` (real, so `||h|| = 1`: the Cauchy-Schwarz
/// equality case), `â_f = conj(c_f) / ĥ_f` (so `conj(â_f) ĥ_f = c_f`, `||a|| = S / L`), then `a`
/// scaled by `1/sqrt(rho)` and `w = sqrt(rho)` (the AM-GM balance). Both spectra are Hermitian,
/// so `h` and `a` are real.
pub fn relu_channel(z: &[f64], len: usize) -> Result<Option<Channel>> {
    let c = coefficients_to_spectrum(z, len)?;
    let mult = |f: usize| if f == 0 || 2 * f == len { 1.0 } else { 2.0 };
    let s: f64 = c
        .iter()
        .enumerate()
        .map(|(f, cf)| mult(f) * cf.norm())
        .sum();
    if s == 0.0 {
        return Ok(None);
    }
    let l = len as f64;
    let rho = s / l;
    let mut h_hat = Vec::with_capacity(c.len());
    let mut a_hat = Vec::with_capacity(c.len());
    for cf in &c {
        let h = (l * cf.norm() / s).sqrt();
        h_hat.push(Complex::new(h, 0.0));
        a_hat.push(if h > 0.0 {
            cf.conj() / (h * rho.sqrt())
        } else {
            Complex::new(0.0, 0.0)
        });
    }
    Ok(Some((
        inverse_real_spectrum(&h_hat, len)?,
        inverse_real_spectrum(&a_hat, len)?,
        rho.sqrt(),
    )))
}

/// A circular CNN with one ReLU layer, `f(x) = sum_j w_j (<a_j, h_j ⊛ x>)_+`, on signals of
/// length `L` (see the module docs; filters are meant to lie in the unit ball).
#[derive(Clone, Debug, PartialEq)]
pub struct CircularReluCnn {
    len: usize,
    /// Circular filters `h_j` (each of length `L`).
    pub filters: Vec<Vec<f64>>,
    /// Readouts `a_j` (each of length `L`).
    pub readouts: Vec<Vec<f64>>,
    /// Output weights `w_j`.
    pub output: Vec<f64>,
}

impl CircularReluCnn {
    /// A network from its channels. `Err` unless there are as many filters, readouts and output
    /// weights, filters and readouts all of length `len >= 1`.
    pub fn new(
        len: usize,
        filters: Vec<Vec<f64>>,
        readouts: Vec<Vec<f64>>,
        output: Vec<f64>,
    ) -> Result<Self> {
        if len == 0 {
            return Err(CvxnnError::arg("signal length", "must be at least 1"));
        }
        if filters.len() != readouts.len()
            || filters.len() != output.len()
            || filters.iter().chain(&readouts).any(|w| w.len() != len)
        {
            return Err(CvxnnError::Shape(format!(
                "{} filters, {} readouts and {} output weights; filters and readouts of length {len}",
                filters.len(),
                readouts.len(),
                output.len()
            )));
        }
        Ok(CircularReluCnn {
            len,
            filters,
            readouts,
            output,
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

    /// Pre-activations `<a_j, h_j ⊛ x_i>` (`n x m`, column-major), by direct circular
    /// convolution (`O(n m L^2)`).
    pub fn pre_activations(&self, x: &Matrix) -> Result<Matrix> {
        if x.ncols() != self.len {
            return Err(CvxnnError::Shape(format!(
                "signals of length {} for a network on length {}",
                x.ncols(),
                self.len
            )));
        }
        let l = self.len;
        let rows: Vec<Vec<f64>> = (0..x.nrows()).map(|i| x.row(i)).collect();
        Ok(Matrix::from_fn(x.nrows(), self.width(), |i, j| {
            let (h, a, xi) = (&self.filters[j], &self.readouts[j], &rows[i]);
            a.iter()
                .enumerate()
                .map(|(t, at)| {
                    // (h ⊛ x)_t = sum_s h_s x_{(t - s) mod L}.
                    let conv: f64 = h
                        .iter()
                        .enumerate()
                        .map(|(s, hs)| hs * xi[(t + l - s) % l])
                        .sum();
                    at * conv
                })
                .sum()
        }))
    }

    /// Outputs on the rows of `x` (`n x L`).
    pub fn predict(&self, x: &Matrix) -> Result<Vec<f64>> {
        let pre = self.pre_activations(x)?;
        Ok((0..x.nrows())
            .map(|i| {
                self.output
                    .iter()
                    .enumerate()
                    .map(|(j, w)| w * pre.get(i, j).max(0.0))
                    .sum()
            })
            .collect())
    }

    /// Weight decay `(lambda/2) sum_j (||a_j||^2 + w_j^2)` (the filters are constrained, not
    /// penalized).
    pub fn weight_decay(&self, lambda: f64) -> f64 {
        let sq: f64 = self.readouts.iter().flatten().map(|v| v * v).sum::<f64>()
            + self.output.iter().map(|v| v * v).sum::<f64>();
        0.5 * lambda * sq
    }

    /// Largest filter norm (at most 1 for a network of the constrained architecture).
    pub fn max_filter_norm(&self) -> f64 {
        self.filters
            .iter()
            .map(|h| crate::linalg::norm2(h))
            .fold(0.0, f64::max)
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
