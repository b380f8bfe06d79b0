//! The non-convex baseline: train the two-layer ReLU network `f(X) = sum_j (X u_j)_+ alpha_j`
//! (`alpha_j` in `R^c` for `c` outputs: an `m x c` output layer, PyTorch's
//! `Linear(m, c, bias=False)`) directly by Adam or SGD with momentum, on exactly the objective of
//! [`Network::objective`] (DESIGN sections 0 and 1):
//!
//! ```text
//! (1/n) sum_i loss(f(x_i), y_i) + (lambda/2) sum_j (||u_j||^2 + ||alpha_j||^2)
//! ```
//!
//! Targets are `n x c`, column-major (one-hot rows for softmax cross-entropy); `c` is
//! `y.len() / n`. A step computes, on the batch `X` (`b x d`): `H = (X U)_+`, `Z = H A`,
//! `R = grad loss(Z)`, `grad_A = H^T R + lambda A`, `grad_U = X^T (1[X U > 0] o (R A^T)) + lambda U`.
//!
//! The weight decay is coupled (added to the gradient, like PyTorch's `weight_decay` in both
//! `SGD` and `Adam`), so both optimizers descend this objective; the bias is a column of the
//! design matrix and is regularized like every weight. Minibatch steps use the minibatch mean loss
//! (an unbiased estimate of the full data-fit gradient) plus the full weight-decay gradient.
//!
//! Everything is seeded and single-threaded, so the same settings give the same bits.
//!
//! ```
//! use cvxnn::linalg::Matrix;
//! use cvxnn::loss::LossKind;
//! use cvxnn::network::{train_gradient, GradientSettings};
//!
//! let rows: Vec<Vec<f64>> = (0..20).map(|i| vec![i as f64 / 10.0 - 1.0, 1.0]).collect();
//! let x = Matrix::from_rows(&rows, 2).unwrap();
//! let y: Vec<f64> = rows.iter().map(|r| r[0].abs()).collect();
//! let settings = GradientSettings { width: 8, epochs: 500, ..GradientSettings::default() };
//! let out = train_gradient(&x, &y, LossKind::Squared, 1e-3, &settings).unwrap();
//! assert_eq!(out.objective, out.network.objective(&x, &y, LossKind::Squared, 1e-3).unwrap());
//! assert!(out.objective < out.trace[0].1);
//! ```

use std::time::Instant;

use faer::{Accum, MatMut, MatRef};
use rand::seq::SliceRandom;
use rand::{RngExt, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};

use super::Network;
use crate::error::{CvxnnError, Result};
use crate::linalg::{gemm, Matrix};
use crate::loss::LossKind;

/// The first-order method and its hyperparameters (defaults: PyTorch's).
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "name", rename_all = "kebab-case")]
pub enum Optimizer {
    /// Adam (Kingma & Ba) with bias correction and coupled L2 weight decay, as PyTorch's
    /// `torch.optim.Adam(weight_decay=lambda)`.
    Adam {
        /// Decay of the first-moment average (PyTorch: 0.9).
        beta1: f64,
        /// Decay of the second-moment average (PyTorch: 0.999).
        beta2: f64,
        /// Added to the root of the second moment (PyTorch: 1e-8).
        eps: f64,
    },
    /// Stochastic gradient descent with heavy-ball momentum, as PyTorch's
    /// `torch.optim.SGD(momentum=..., weight_decay=lambda)` (no dampening, no Nesterov).
    Sgd {
        /// Momentum in [0, 1); 0 is plain SGD (PyTorch's default is 0, ours 0.9).
        momentum: f64,
    },
}

impl Optimizer {
    /// Adam with PyTorch's defaults (`beta1 = 0.9`, `beta2 = 0.999`, `eps = 1e-8`).
    pub fn adam() -> Optimizer {
        Optimizer::Adam {
            beta1: 0.9,
            beta2: 0.999,
            eps: 1e-8,
        }
    }

    /// SGD with momentum 0.9.
    pub fn sgd() -> Optimizer {
        Optimizer::Sgd { momentum: 0.9 }
    }

    /// Name as written in reports (`adam`, `sgd`).
    pub fn name(&self) -> &'static str {
        match self {
            Optimizer::Adam { .. } => "adam",
            Optimizer::Sgd { .. } => "sgd",
        }
    }

    /// Checks the hyperparameters' domains.
    pub fn validate(&self) -> Result<()> {
        let unit = |name: &str, v: f64| {
            if v.is_finite() && (0.0..1.0).contains(&v) {
                Ok(())
            } else {
                Err(CvxnnError::arg(
                    name,
                    format!("must be a number in [0, 1), got {v}"),
                ))
            }
        };
        match *self {
            Optimizer::Adam { beta1, beta2, eps } => {
                unit("beta1", beta1)?;
                unit("beta2", beta2)?;
                if !(eps.is_finite() && eps > 0.0) {
                    return Err(CvxnnError::arg(
                        "eps",
                        format!("must be a finite number > 0, got {eps}"),
                    ));
                }
                Ok(())
            }
            Optimizer::Sgd { momentum } => unit("momentum", momentum),
        }
    }
}

impl Default for Optimizer {
    /// [`Optimizer::adam`].
    fn default() -> Self {
        Optimizer::adam()
    }
}

/// Settings of [`train_gradient`]; every field has a default (see [`GradientSettings::default`]).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct GradientSettings {
    /// Optimizer and its hyperparameters (default: Adam with PyTorch's defaults).
    pub optimizer: Optimizer,
    /// Hidden neurons `m` (default 50).
    pub width: usize,
    /// Step size (default 1e-2).
    pub learning_rate: f64,
    /// Passes over the data (default 1000).
    pub epochs: usize,
    /// Samples per step; `None` (default) is full batch: one step per epoch.
    pub batch_size: Option<usize>,
    /// Seed of the initialization and of the minibatch shuffles (default 0).
    pub seed: u64,
    /// The trace records the full-data objective every this many epochs (default 10), besides
    /// the initial and the final one.
    pub record_every: usize,
}

impl Default for GradientSettings {
    fn default() -> Self {
        GradientSettings {
            optimizer: Optimizer::default(),
            width: 50,
            learning_rate: 1e-2,
            epochs: 1000,
            batch_size: None,
            seed: 0,
            record_every: 10,
        }
    }
}

impl GradientSettings {
    /// Checks every setting; names the offending one (`optimizer` hyperparameters by their own
    /// names, the learning rate as `lr`).
    pub fn validate(&self) -> Result<()> {
        self.optimizer.validate()?;
        if self.width == 0 {
            return Err(CvxnnError::arg("width", "must be at least 1 neuron"));
        }
        if !(self.learning_rate.is_finite() && self.learning_rate > 0.0) {
            return Err(CvxnnError::arg(
                "lr",
                format!("must be a finite number > 0, got {}", self.learning_rate),
            ));
        }
        if self.epochs == 0 {
            return Err(CvxnnError::arg("epochs", "must be at least 1"));
        }
        if self.batch_size == Some(0) {
            return Err(CvxnnError::arg("batch-size", "must be at least 1"));
        }
        if self.record_every == 0 {
            return Err(CvxnnError::arg("record-every", "must be at least 1"));
        }
        Ok(())
    }
}

/// The result of [`train_gradient`].
#[derive(Clone, Debug, PartialEq)]
pub struct GradientOutcome {
    /// The network after the last step (no gates).
    pub network: Network,
    /// Its full-data objective, `network.objective(x, y, loss, lambda)`.
    pub objective: f64,
    /// `(epoch, full-data objective)` at epoch 0 (the initialization), every `record_every`
    /// epochs and at the last epoch.
    pub trace: Vec<(usize, f64)>,
    /// Wall-clock seconds (initialization, steps and trace).
    pub seconds: f64,
    /// Epochs run.
    pub epochs: usize,
    /// Parameter updates made (`epochs * ceil(n / batch_size)`).
    pub steps: usize,
}

/// The objective of [`Network::objective`] and its gradient in the weights.
#[derive(Clone, Debug, PartialEq)]
pub struct NetworkGradient {
    /// The objective.
    pub objective: f64,
    /// Gradient in the hidden weights (`d x m`, like [`Network::hidden`]).
    pub hidden: Matrix,
    /// Gradient in the output weights, `m x c` row-major like [`Network::alpha`].
    pub alpha: Vec<f64>,
}

/// The objective of a ReLU network (no gates) with `c = net.outputs` outputs on targets `y`
/// (`n x c`, column-major) and its gradient, with the convention `d/dt (t)_+ = 1[t > 0]` at the
/// kink.
pub fn network_gradient(
    net: &Network,
    x: &Matrix,
    y: &[f64],
    loss: LossKind,
    lambda: f64,
) -> Result<NetworkGradient> {
    if net.gates.is_some() {
        return Err(CvxnnError::arg(
            "network",
            "gradients are implemented for ReLU networks, this one is gated",
        ));
    }
    let c = check_shapes(x, y)?;
    let m = net.neurons();
    if net.input_dim() != x.ncols() || net.outputs != c || net.alpha.len() != m * c {
        return Err(CvxnnError::Shape(format!(
            "network takes {} inputs to {} output(s) with {} neurons ({} output weights), data \
             has {} columns and {} target column(s)",
            net.input_dim(),
            net.outputs,
            m,
            net.alpha.len(),
            x.ncols(),
            c
        )));
    }
    let n = x.nrows();
    let mut ws = Workspace::new(n, m, c);
    let mut grad_u = Matrix::zeros(x.ncols(), m);
    let mut grad_a = vec![0.0; m * c];
    let fit = batch_gradient(
        x.as_ref(),
        y,
        &net.hidden,
        &net.alpha,
        c,
        loss,
        lambda,
        &mut ws,
        &mut grad_u,
        &mut grad_a,
    );
    Ok(NetworkGradient {
        objective: fit + 0.5 * lambda * decay(&net.hidden, &net.alpha),
        hidden: grad_u,
        alpha: grad_a,
    })
}

/// Trains the non-convex two-layer ReLU network on the design matrix `x` (`n x d`, already
/// preprocessed, bias column included) and targets `y` by the optimizer in `s`, minimizing
/// `(1/n) sum loss + (lambda/2) sum_j (||u_j||^2 + ||alpha_j||^2)`.
///
/// `y` is `n x c`, column-major, and the network gets `c = y.len() / n` outputs: one column of
/// values (squared) or ±1 labels (logistic), or `c >= 2` one-hot columns (cross-entropy).
///
/// Initialization like PyTorch's `nn.Linear`: `u_jk ~ U(-1/sqrt(d), 1/sqrt(d))` (`d` counting the
/// bias column), then the `c x m` output layer `alpha_jk ~ U(-1/sqrt(m), 1/sqrt(m))` (drawn in
/// PyTorch's row-major `(c, m)` order), from `ChaCha8Rng::seed_from_u64(seed)`, which then
/// shuffles the samples at every epoch of minibatch training.
///
/// Returns the final iterate (not the best one seen) and its objective. Errors: bad settings or
/// data ([`CvxnnError::InvalidArgument`], [`CvxnnError::Shape`]); a non-finite objective or
/// gradient during training (named `lr`: the learning rate is too large).
pub fn train_gradient(
    x: &Matrix,
    y: &[f64],
    loss: LossKind,
    lambda: f64,
    s: &GradientSettings,
) -> Result<GradientOutcome> {
    train_gradient_from(x, y, loss, lambda, s, None)
}

/// [`train_gradient`] from a given ReLU network (its width replaces `s.width`; it must have
/// `y.len() / n` outputs) instead of a random one; the seed still drives minibatch shuffles.
pub fn train_gradient_from(
    x: &Matrix,
    y: &[f64],
    loss: LossKind,
    lambda: f64,
    s: &GradientSettings,
    initial: Option<Network>,
) -> Result<GradientOutcome> {
    let start = Instant::now();
    if !(lambda.is_finite() && lambda >= 0.0) {
        return Err(CvxnnError::arg(
            "lambda",
            format!("must be a finite number >= 0, got {lambda}"),
        ));
    }
    s.validate()?;
    let c = check_shapes(x, y)?;
    if let Some((k, v)) = x
        .as_slice()
        .iter()
        .enumerate()
        .find(|(_, v)| !v.is_finite())
    {
        let n = x.nrows().max(1);
        return Err(CvxnnError::arg(
            "x",
            format!("entry ({}, {}) is {v}; data must be finite", k % n, k / n),
        ));
    }
    loss.check_targets(y, c)?;

    let mut rng = ChaCha8Rng::seed_from_u64(s.seed);
    let mut net = match initial {
        Some(net) => {
            if net.gates.is_some()
                || net.input_dim() != x.ncols()
                || net.neurons() == 0
                || net.outputs != c
                || net.alpha.len() != net.neurons() * c
            {
                return Err(CvxnnError::arg(
                    "init-network",
                    format!(
                        "gradient training starts from a non-empty ReLU network on {} columns \
                         with {c} output(s)",
                        x.ncols()
                    ),
                ));
            }
            net
        }
        None => init_network(x.ncols(), s.width, c, &mut rng),
    };
    let (n, d, m) = (x.nrows(), x.ncols(), net.neurons());
    let batch = s.batch_size.unwrap_or(n).min(n);
    let full_batch = batch == n;
    let mut order: Vec<usize> = (0..n).collect();

    let mut ws = Workspace::new(batch, m, c);
    let mut minibatch = Minibatch::new(if full_batch { 0 } else { batch }, d, c);
    let mut grad_u = Matrix::zeros(d, m);
    let mut grad_a = vec![0.0; m * c];
    let mut state = OptimizerState::new(s.optimizer, d * m, m * c);
    let mut trace = vec![(0, checked_objective(&net, x, y, loss, lambda, s, 0)?)];
    let mut steps = 0usize;
    for epoch in 1..=s.epochs {
        if !full_batch {
            order.shuffle(&mut rng);
        }
        for rows in order.chunks(batch) {
            let fit = if full_batch {
                batch_gradient(
                    x.as_ref(),
                    y,
                    &net.hidden,
                    &net.alpha,
                    c,
                    loss,
                    lambda,
                    &mut ws,
                    &mut grad_u,
                    &mut grad_a,
                )
            } else {
                let (xb, yb) = minibatch.gather(x, y, rows);
                batch_gradient(
                    xb,
                    yb,
                    &net.hidden,
                    &net.alpha,
                    c,
                    loss,
                    lambda,
                    &mut ws,
                    &mut grad_u,
                    &mut grad_a,
                )
            };
            check_step(fit, &grad_u, &grad_a, s.learning_rate, epoch)?;
            steps += 1;
            state.step(
                s.learning_rate,
                net.hidden.as_mut_slice(),
                grad_u.as_slice(),
                &mut net.alpha,
                &grad_a,
            );
        }
        if epoch % s.record_every == 0 || epoch == s.epochs {
            trace.push((
                epoch,
                checked_objective(&net, x, y, loss, lambda, s, epoch)?,
            ));
        }
    }
    let objective = trace.last().map_or(f64::NAN, |t| t.1);
    Ok(GradientOutcome {
        network: net,
        objective,
        trace,
        seconds: start.elapsed().as_secs_f64(),
        epochs: s.epochs,
        steps,
    })
}

/// Checks that `x` has samples and columns and that `y` is `n x c` for some `c >= 1`; returns
/// `c`.
fn check_shapes(x: &Matrix, y: &[f64]) -> Result<usize> {
    let n = x.nrows();
    if n == 0 || x.ncols() == 0 {
        return Err(CvxnnError::Shape(format!(
            "the design matrix is {} x {}; it needs at least one sample and one column",
            n,
            x.ncols()
        )));
    }
    if y.is_empty() || y.len() % n != 0 {
        return Err(CvxnnError::Shape(format!(
            "{} target values for {n} samples: targets must be n x c (column-major), c >= 1",
            y.len()
        )));
    }
    Ok(y.len() / n)
}

/// PyTorch's `nn.Linear` default initialization (`kaiming_uniform_(a = sqrt(5))` gives the bound
/// `1/sqrt(fan_in)`), the hidden weights drawn neuron by neuron (the order of PyTorch's `(m, d)`
/// weight), then the `c x m` output layer output by output (the order of PyTorch's `(c, m)`
/// weight), stored `m x c` row-major.
pub(super) fn init_network(d: usize, m: usize, c: usize, rng: &mut ChaCha8Rng) -> Network {
    let bound_u = 1.0 / (d as f64).sqrt();
    let bound_a = 1.0 / (m as f64).sqrt();
    let mut hidden = Matrix::zeros(d, m);
    for v in hidden.as_mut_slice() {
        *v = rng.random_range(-bound_u..bound_u);
    }
    let mut alpha = vec![0.0; m * c];
    for k in 0..c {
        for j in 0..m {
            alpha[j * c + k] = rng.random_range(-bound_a..bound_a);
        }
    }
    Network {
        hidden,
        alpha,
        outputs: c,
        gates: None,
    }
}

fn decay(u: &Matrix, alpha: &[f64]) -> f64 {
    crate::linalg::dot(u.as_slice(), u.as_slice()) + crate::linalg::dot(alpha, alpha)
}

fn checked_objective(
    net: &Network,
    x: &Matrix,
    y: &[f64],
    loss: LossKind,
    lambda: f64,
    s: &GradientSettings,
    epoch: usize,
) -> Result<f64> {
    finite_objective(net.objective(x, y, loss, lambda)?, s.learning_rate, epoch)
}

/// `obj` when finite, else the "learning rate too large" error at `epoch`.
pub(super) fn finite_objective(obj: f64, lr: f64, epoch: usize) -> Result<f64> {
    if obj.is_finite() {
        Ok(obj)
    } else {
        Err(diverged(lr, epoch, obj))
    }
}

/// Checks one step's fit value and gradients: a non-finite one means the learning rate made the
/// iterates blow up, which the user fixes with a smaller `--lr`.
pub(super) fn check_step(
    fit: f64,
    grad_u: &Matrix,
    grad_a: &[f64],
    lr: f64,
    epoch: usize,
) -> Result<()> {
    let finite = fit.is_finite()
        && grad_u.as_slice().iter().all(|v| v.is_finite())
        && grad_a.iter().all(|v| v.is_finite());
    if finite {
        Ok(())
    } else {
        Err(diverged(lr, epoch, fit))
    }
}

fn diverged(lr: f64, epoch: usize, value: f64) -> CvxnnError {
    CvxnnError::arg(
        "lr",
        format!(
            "the learning rate {lr:e} is too large: training diverged (objective {value}) at \
             epoch {epoch}; use a smaller learning rate"
        ),
    )
}

/// The rows of one minibatch, copied out of the data.
struct Minibatch {
    /// Rows of `x`, column-major with the batch's row count.
    x: Vec<f64>,
    /// Targets, `b x c` column-major.
    y: Vec<f64>,
}

impl Minibatch {
    fn new(rows: usize, d: usize, c: usize) -> Minibatch {
        Minibatch {
            x: vec![0.0; rows * d],
            y: vec![0.0; rows * c],
        }
    }

    /// Copies the samples `rows` of `(x, y)` (`y` is `n x c` column-major: every output column
    /// gives up the same rows) and returns views of them.
    fn gather(&mut self, x: &Matrix, y: &[f64], rows: &[usize]) -> (MatRef<'_, f64>, &[f64]) {
        let (b, d, n) = (rows.len(), x.ncols(), x.nrows());
        for (k, dst) in self.x[..b * d].chunks_exact_mut(b).enumerate() {
            let src = x.col(k);
            for (v, &i) in dst.iter_mut().zip(rows) {
                *v = src[i];
            }
        }
        let c = y.len() / n;
        for (dst, src) in self.y[..b * c].chunks_exact_mut(b).zip(y.chunks_exact(n)) {
            for (v, &i) in dst.iter_mut().zip(rows) {
                *v = src[i];
            }
        }
        (
            MatRef::from_column_major_slice(&self.x[..b * d], b, d),
            &self.y[..b * c],
        )
    }
}

/// Buffers of one gradient evaluation on at most `rows` samples.
struct Workspace {
    /// Pre-activations `X U` (`b x m`), then `H = (X U)_+`, then the back-propagated
    /// `G = 1[XU > 0] o (R A^T)`.
    pre: Vec<f64>,
    /// `R A^T` (`b x m`); only with several outputs.
    back: Vec<f64>,
    /// Predictions (`b x c`).
    z: Vec<f64>,
    /// Gradient of the (batch-mean) loss in the predictions (`b x c`).
    r: Vec<f64>,
}

impl Workspace {
    fn new(rows: usize, m: usize, c: usize) -> Workspace {
        Workspace {
            pre: vec![0.0; rows * m],
            back: vec![0.0; if c > 1 { rows * m } else { 0 }],
            z: vec![0.0; rows * c],
            r: vec![0.0; rows * c],
        }
    }
}

/// Gradient of `loss.value(f(xb), yb) + (lambda/2) (||U||^2 + ||A||^2)` (`A` the `m x c` output
/// layer `alpha`, row-major; `yb` is `b x c`) written to `grad_u` / `grad_a` (`m x c` row-major);
/// returns the data-fit value `loss.value(f(xb), yb)` (the mean over the batch's rows).
///
/// With one output the products with `alpha` are matrix-vector loops, in the order this function
/// has always summed them (so one-output training keeps its bits); with several they are GEMMs.
#[allow(clippy::too_many_arguments)]
fn batch_gradient(
    xb: MatRef<'_, f64>,
    yb: &[f64],
    u: &Matrix,
    alpha: &[f64],
    c: usize,
    loss: LossKind,
    lambda: f64,
    ws: &mut Workspace,
    grad_u: &mut Matrix,
    grad_a: &mut [f64],
) -> f64 {
    let (b, m) = (xb.nrows(), u.ncols());
    let pre = &mut ws.pre[..b * m];
    let z = &mut ws.z[..b * c];
    let r = &mut ws.r[..b * c];
    // pre = X U.
    gemm(
        MatMut::from_column_major_slice_mut(pre, b, m),
        Accum::Replace,
        xb,
        u.as_ref(),
        1.0,
    );
    let fit = if c == 1 {
        one_output_backward(pre, b, alpha, loss, lambda, yb, z, r, grad_a)
    } else {
        let back = &mut ws.back[..b * m];
        several_outputs_backward(pre, back, b, alpha, c, loss, lambda, yb, z, r, grad_a)
    };
    // grad_U = X^T G + lambda U, with G = 1[X U > 0] o (R A^T) now in `pre`.
    gemm(
        grad_u.as_mut(),
        Accum::Replace,
        xb.transpose(),
        MatRef::from_column_major_slice(pre, b, m),
        1.0,
    );
    for (g, &w) in grad_u.as_mut_slice().iter_mut().zip(u.as_slice()) {
        *g += lambda * w;
    }
    fit
}

/// One output (`alpha` in `R^m`): from `pre = X U` (`b x m`), the predictions
/// `z = (X U)_+ alpha`, the loss value and gradient `r`, `grad_a = (X U)_+^T r + lambda alpha`,
/// and `pre` becomes `G = 1[X U > 0] o (r alpha^T)`. Returns the loss value.
#[allow(clippy::too_many_arguments)]
fn one_output_backward(
    pre: &mut [f64],
    b: usize,
    alpha: &[f64],
    loss: LossKind,
    lambda: f64,
    yb: &[f64],
    z: &mut [f64],
    r: &mut [f64],
    grad_a: &mut [f64],
) -> f64 {
    z.fill(0.0);
    for (col, &a) in pre.chunks_exact(b).zip(alpha) {
        for (zi, &p) in z.iter_mut().zip(col) {
            *zi += a * p.max(0.0);
        }
    }
    let fit = loss.value(z, yb, 1);
    loss.grad(z, yb, 1, r);
    for ((col, &a), g) in pre.chunks_exact_mut(b).zip(alpha).zip(grad_a.iter_mut()) {
        let mut s = 0.0;
        for (p, &ri) in col.iter_mut().zip(r.iter()) {
            if *p > 0.0 {
                s += *p * ri;
                *p = ri * a;
            } else {
                *p = 0.0;
            }
        }
        *g = s + lambda * a;
    }
    fit
}

/// `c` outputs (`alpha` is `A`, `m x c` row-major, i.e. `A^T` column-major): from `pre = X U`
/// (`b x m`), by GEMMs, `H = (X U)_+` (in `pre`), `Z = H A` (`b x c`), the loss value and
/// gradient `R`, `grad_A = H^T R + lambda A` (written as `grad_A^T = R^T H`, `c x m`
/// column-major), `back = R A^T`, and `pre` becomes `G = 1[X U > 0] o back`. Returns the loss
/// value.
#[allow(clippy::too_many_arguments)]
fn several_outputs_backward(
    pre: &mut [f64],
    back: &mut [f64],
    b: usize,
    alpha: &[f64],
    c: usize,
    loss: LossKind,
    lambda: f64,
    yb: &[f64],
    z: &mut [f64],
    r: &mut [f64],
    grad_a: &mut [f64],
) -> f64 {
    let m = pre.len() / b.max(1);
    pre.iter_mut().for_each(|p| *p = p.max(0.0));
    let a_t = MatRef::from_column_major_slice(alpha, c, m);
    gemm(
        MatMut::from_column_major_slice_mut(z, b, c),
        Accum::Replace,
        MatRef::from_column_major_slice(pre, b, m),
        a_t.transpose(),
        1.0,
    );
    let fit = loss.value(z, yb, c);
    loss.grad(z, yb, c, r);
    let r_mat = MatRef::from_column_major_slice(r, b, c);
    gemm(
        MatMut::from_column_major_slice_mut(grad_a, c, m),
        Accum::Replace,
        r_mat.transpose(),
        MatRef::from_column_major_slice(pre, b, m),
        1.0,
    );
    for (g, &a) in grad_a.iter_mut().zip(alpha) {
        *g += lambda * a;
    }
    gemm(
        MatMut::from_column_major_slice_mut(back, b, m),
        Accum::Replace,
        r_mat,
        a_t,
        1.0,
    );
    // H > 0 exactly where X U > 0.
    for (p, &g) in pre.iter_mut().zip(back.iter()) {
        *p = if *p > 0.0 { g } else { 0.0 };
    }
    fit
}

/// Optimizer state over the two parameter blocks (hidden weights, output weights).
pub(super) enum OptimizerState {
    Adam {
        beta1: f64,
        beta2: f64,
        eps: f64,
        t: i32,
        m: [Vec<f64>; 2],
        v: [Vec<f64>; 2],
    },
    Sgd {
        momentum: f64,
        buf: [Vec<f64>; 2],
    },
}

impl OptimizerState {
    pub(super) fn new(opt: Optimizer, len_u: usize, len_a: usize) -> OptimizerState {
        match opt {
            Optimizer::Adam { beta1, beta2, eps } => OptimizerState::Adam {
                beta1,
                beta2,
                eps,
                t: 0,
                m: [vec![0.0; len_u], vec![0.0; len_a]],
                v: [vec![0.0; len_u], vec![0.0; len_a]],
            },
            Optimizer::Sgd { momentum } => OptimizerState::Sgd {
                momentum,
                buf: [vec![0.0; len_u], vec![0.0; len_a]],
            },
        }
    }

    /// One update of both blocks, in PyTorch's arithmetic.
    pub(super) fn step(&mut self, lr: f64, u: &mut [f64], gu: &[f64], a: &mut [f64], ga: &[f64]) {
        match self {
            OptimizerState::Adam {
                beta1,
                beta2,
                eps,
                t,
                m,
                v,
            } => {
                *t = t.saturating_add(1);
                let bc1 = 1.0 - beta1.powi(*t);
                let bc2_sqrt = (1.0 - beta2.powi(*t)).sqrt();
                let step_size = lr / bc1;
                let [mu, ma] = m;
                let [vu, va] = v;
                for (w, g, m, v) in [(&mut *u, gu, mu, vu), (&mut *a, ga, ma, va)] {
                    for (((w, &g), m), v) in w.iter_mut().zip(g).zip(m.iter_mut()).zip(v.iter_mut())
                    {
                        *m = *beta1 * *m + (1.0 - *beta1) * g;
                        *v = *beta2 * *v + (1.0 - *beta2) * g * g;
                        *w -= step_size * *m / (v.sqrt() / bc2_sqrt + *eps);
                    }
                }
            }
            OptimizerState::Sgd { momentum, buf } => {
                let [bu, ba] = buf;
                for (w, g, b) in [(&mut *u, gu, bu), (&mut *a, ga, ba)] {
                    for ((w, &g), b) in w.iter_mut().zip(g).zip(b.iter_mut()) {
                        *b = *momentum * *b + g;
                        *w -= lr * *b;
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Small random design (last column ones) and targets for `loss`.
    fn data(n: usize, d: usize, loss: LossKind, seed: u64) -> (Matrix, Vec<f64>) {
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let mut x = Matrix::zeros(n, d);
        for i in 0..n {
            for k in 0..d - 1 {
                x.set(i, k, rng.random_range(-2.0..2.0));
            }
            x.set(i, d - 1, 1.0);
        }
        let y = (0..n)
            .map(|i| {
                let t = (x.get(i, 0) - 0.5 * x.get(i, 1)).max(0.0) - 0.3 * x.get(i, 0);
                match loss {
                    LossKind::Squared => t,
                    LossKind::Logistic => {
                        if t > 0.2 {
                            1.0
                        } else {
                            -1.0
                        }
                    }
                    LossKind::CrossEntropy => unreachable!("one-output data"),
                }
            })
            .collect();
        (x, y)
    }

    #[test]
    fn gradient_matches_finite_differences() {
        for loss in [LossKind::Squared, LossKind::Logistic] {
            let (x, y) = data(15, 4, loss, 3);
            let mut rng = ChaCha8Rng::seed_from_u64(9);
            let net = init_network(4, 6, 1, &mut rng);
            let lambda = 0.05;
            let g = network_gradient(&net, &x, &y, loss, lambda).unwrap();
            let obj = |n: &Network| n.objective(&x, &y, loss, lambda).unwrap();
            assert!((g.objective - obj(&net)).abs() <= 1e-14 * obj(&net).abs().max(1.0));
            let h = 1e-6;
            for k in 0..net.hidden.as_slice().len() {
                let (mut p, mut q) = (net.clone(), net.clone());
                p.hidden.as_mut_slice()[k] += h;
                q.hidden.as_mut_slice()[k] -= h;
                let fd = (obj(&p) - obj(&q)) / (2.0 * h);
                let an = g.hidden.as_slice()[k];
                assert!(
                    (fd - an).abs() <= 1e-7,
                    "{loss}: hidden {k}: fd {fd} vs {an}"
                );
            }
            for j in 0..net.neurons() {
                let (mut p, mut q) = (net.clone(), net.clone());
                p.alpha[j] += h;
                q.alpha[j] -= h;
                let fd = (obj(&p) - obj(&q)) / (2.0 * h);
                let an = g.alpha[j];
                assert!(
                    (fd - an).abs() <= 1e-7,
                    "{loss}: alpha {j}: fd {fd} vs {an}"
                );
            }
        }
    }

    /// `c`-output targets on the rows of `x`: Gaussian values (squared) or one-hot classes
    /// (cross-entropy, the class of a sample from a fixed non-linear score).
    fn targets(x: &Matrix, c: usize, loss: LossKind, seed: u64) -> Vec<f64> {
        let n = x.nrows();
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let mut y = vec![0.0; n * c];
        for i in 0..n {
            match loss {
                LossKind::CrossEntropy => {
                    let s = (x.get(i, 0) - 0.5 * x.get(i, 1)).max(0.0) + 0.7 * x.get(i, 1);
                    let k = ((s + 2.0).max(0.0) * c as f64 / 5.0) as usize;
                    y[k.min(c - 1) * n + i] = 1.0;
                }
                _ => {
                    for k in 0..c {
                        y[k * n + i] = rng.random_range(-1.0..1.0);
                    }
                }
            }
        }
        y
    }

    #[test]
    fn gradient_matches_finite_differences_with_three_outputs() {
        for loss in [LossKind::Squared, LossKind::CrossEntropy] {
            let (x, _) = data(15, 4, LossKind::Squared, 3);
            let y = targets(&x, 3, loss, 8);
            loss.check_targets(&y, 3).unwrap();
            let mut rng = ChaCha8Rng::seed_from_u64(9);
            let net = init_network(4, 6, 3, &mut rng);
            assert_eq!((net.outputs, net.alpha.len()), (3, 18));
            let lambda = 0.05;
            let g = network_gradient(&net, &x, &y, loss, lambda).unwrap();
            assert_eq!(g.alpha.len(), 18);
            let obj = |n: &Network| n.objective(&x, &y, loss, lambda).unwrap();
            assert!(
                (g.objective - obj(&net)).abs() <= 1e-14 * obj(&net).abs().max(1.0),
                "{loss}: {} vs {}",
                g.objective,
                obj(&net)
            );
            let h = 1e-6;
            for k in 0..net.hidden.as_slice().len() {
                let (mut p, mut q) = (net.clone(), net.clone());
                p.hidden.as_mut_slice()[k] += h;
                q.hidden.as_mut_slice()[k] -= h;
                let fd = (obj(&p) - obj(&q)) / (2.0 * h);
                let an = g.hidden.as_slice()[k];
                assert!(
                    (fd - an).abs() <= 1e-7,
                    "{loss}: hidden {k}: fd {fd} vs {an}"
                );
            }
            for k in 0..net.alpha.len() {
                let (mut p, mut q) = (net.clone(), net.clone());
                p.alpha[k] += h;
                q.alpha[k] -= h;
                let fd = (obj(&p) - obj(&q)) / (2.0 * h);
                let an = g.alpha[k];
                assert!(
                    (fd - an).abs() <= 1e-7,
                    "{loss}: alpha {k} (neuron {}, output {}): fd {fd} vs {an}",
                    k / 3,
                    k % 3
                );
            }
        }
    }

    #[test]
    fn gemm_path_agrees_with_the_one_output_loops() {
        // The several-output backward pass, run with c = 1, gives the one-output loops' values
        // (to rounding: the GEMMs sum in another order).
        let (x, y) = data(23, 4, LossKind::Squared, 10);
        let mut rng = ChaCha8Rng::seed_from_u64(2);
        let net = init_network(4, 7, 1, &mut rng);
        let (b, m) = (23, 7);
        let mut pre = vec![0.0; b * m];
        gemm(
            MatMut::from_column_major_slice_mut(&mut pre, b, m),
            Accum::Replace,
            x.as_ref(),
            net.hidden.as_ref(),
            1.0,
        );
        let mut pre2 = pre.clone();
        let (mut z, mut r, mut ga) = (vec![0.0; b], vec![0.0; b], vec![0.0; m]);
        let (mut z2, mut r2, mut ga2) = (z.clone(), r.clone(), ga.clone());
        let mut back = vec![0.0; b * m];
        let sq = LossKind::Squared;
        let f1 = one_output_backward(
            &mut pre, b, &net.alpha, sq, 0.1, &y, &mut z, &mut r, &mut ga,
        );
        let f2 = several_outputs_backward(
            &mut pre2, &mut back, b, &net.alpha, 1, sq, 0.1, &y, &mut z2, &mut r2, &mut ga2,
        );
        let close = |a: &[f64], b: &[f64]| {
            a.iter()
                .zip(b)
                .all(|(p, q)| (p - q).abs() <= 1e-13 * p.abs().max(1.0))
        };
        assert!((f1 - f2).abs() <= 1e-14 * f1);
        assert!(close(&z, &z2) && close(&r, &r2) && close(&ga, &ga2));
        assert!(close(&pre, &pre2));
    }

    #[test]
    fn minibatches_gather_every_output_column() {
        let (x, _) = data(6, 3, LossKind::Squared, 1);
        let y: Vec<f64> = (0..18).map(f64::from).collect(); // 6 x 3: y[k * 6 + i] = 6k + i
        let mut mb = Minibatch::new(2, 3, 3);
        let (xb, yb) = mb.gather(&x, &y, &[4, 1]);
        assert_eq!(yb, [4.0, 1.0, 10.0, 7.0, 16.0, 13.0]);
        assert_eq!((xb.nrows(), xb.ncols()), (2, 3));
        assert_eq!(xb[(0, 1)], x.get(4, 1));
        assert_eq!(xb[(1, 0)], x.get(1, 0));
    }

    #[test]
    fn three_class_cross_entropy_training_fits_and_is_reproducible() {
        let (x, _) = data(60, 3, LossKind::Squared, 11);
        let y = targets(&x, 3, LossKind::CrossEntropy, 0);
        for batch in [None, Some(16)] {
            let s = GradientSettings {
                width: 20,
                epochs: 300,
                batch_size: batch,
                record_every: 100,
                ..GradientSettings::default()
            };
            let out = train_gradient(&x, &y, LossKind::CrossEntropy, 1e-4, &s).unwrap();
            assert_eq!(out.network.outputs, 3);
            assert_eq!(out.network.alpha.len(), 60);
            assert_eq!(
                out.objective,
                out.network
                    .objective(&x, &y, LossKind::CrossEntropy, 1e-4)
                    .unwrap()
            );
            assert!(out.objective < 0.3 * out.trace[0].1, "{:?}", out.trace);
            let z = out.network.forward(&x).unwrap();
            let hits = (0..60)
                .filter(|&i| {
                    let best = (0..3)
                        .max_by(|&a, &b| z[a * 60 + i].total_cmp(&z[b * 60 + i]))
                        .unwrap();
                    y[best * 60 + i] == 1.0
                })
                .count();
            assert!(hits >= 54, "{batch:?}: {hits} of 60");
            let again = train_gradient(&x, &y, LossKind::CrossEntropy, 1e-4, &s).unwrap();
            assert_eq!(again.network, out.network);
        }
    }

    #[test]
    fn output_counts_must_agree() {
        let (x, y1) = data(10, 3, LossKind::Squared, 12);
        let y = targets(&x, 3, LossKind::CrossEntropy, 0);
        let s = GradientSettings {
            width: 4,
            epochs: 2,
            ..GradientSettings::default()
        };
        // A one-output start for three-column targets is refused, and the other way round.
        let mut rng = ChaCha8Rng::seed_from_u64(0);
        let one = init_network(3, 4, 1, &mut rng);
        let three = init_network(3, 4, 3, &mut rng);
        let name = |r: Result<GradientOutcome>| match r {
            Err(CvxnnError::InvalidArgument { name, .. }) => name,
            other => panic!("expected an invalid argument, got {other:?}"),
        };
        let ce = LossKind::CrossEntropy;
        assert_eq!(
            name(train_gradient_from(&x, &y, ce, 1e-3, &s, Some(one.clone()))),
            "init-network"
        );
        assert_eq!(
            name(train_gradient_from(
                &x,
                &y1,
                LossKind::Squared,
                1e-3,
                &s,
                Some(three.clone())
            )),
            "init-network"
        );
        assert!(train_gradient_from(&x, &y, ce, 1e-3, &s, Some(three.clone())).is_ok());
        assert!(matches!(
            network_gradient(&one, &x, &y, ce, 1e-3),
            Err(CvxnnError::Shape(_))
        ));
        // Targets that are not n x c; cross-entropy on one column or on non-one-hot rows.
        assert!(matches!(
            train_gradient(&x, &y[..25], ce, 1e-3, &s),
            Err(CvxnnError::Shape(_))
        ));
        assert_eq!(name(train_gradient(&x, &y1, ce, 1e-3, &s)), "loss");
        let mut bad = y.clone();
        bad[0] = 0.5;
        assert_eq!(name(train_gradient(&x, &bad, ce, 1e-3, &s)), "loss");
    }

    #[test]
    fn minibatch_gradients_average_to_the_full_gradient() {
        // With one sample per batch, the mean of the per-sample data-fit gradients is the full
        // data-fit gradient (unbiasedness), weight decay counted once per step.
        let (x, y) = data(10, 3, LossKind::Squared, 4);
        let mut rng = ChaCha8Rng::seed_from_u64(1);
        let net = init_network(3, 5, 1, &mut rng);
        let full = network_gradient(&net, &x, &y, LossKind::Squared, 0.0).unwrap();
        let mut sum_u = [0.0; 15];
        let mut sum_a = [0.0; 5];
        let mut ws = Workspace::new(1, 5, 1);
        let mut gu = Matrix::zeros(3, 5);
        let mut ga = vec![0.0; 5];
        for i in 0..10 {
            let xi = x.select_rows(&[i]);
            batch_gradient(
                xi.as_ref(),
                &y[i..=i],
                &net.hidden,
                &net.alpha,
                1,
                LossKind::Squared,
                0.0,
                &mut ws,
                &mut gu,
                &mut ga,
            );
            sum_u
                .iter_mut()
                .zip(gu.as_slice())
                .for_each(|(s, g)| *s += g / 10.0);
            sum_a.iter_mut().zip(&ga).for_each(|(s, g)| *s += g / 10.0);
        }
        for (a, b) in sum_u.iter().zip(full.hidden.as_slice()) {
            assert!((a - b).abs() <= 1e-14, "{a} vs {b}");
        }
        for (a, b) in sum_a.iter().zip(&full.alpha) {
            assert!((a - b).abs() <= 1e-14, "{a} vs {b}");
        }
    }

    #[test]
    fn initialization_follows_pytorch_bounds() {
        let mut rng = ChaCha8Rng::seed_from_u64(0);
        let net = init_network(16, 100, 1, &mut rng);
        assert!(net.hidden.as_slice().iter().all(|v| v.abs() < 0.25));
        assert!(net.hidden.as_slice().iter().any(|v| v.abs() > 0.2));
        assert!(net.alpha.iter().all(|v| v.abs() < 0.1));
        assert!(net.alpha.iter().any(|v| v.abs() > 0.08));
        assert!(net.gates.is_none());
        // c outputs: the same hidden draws, then PyTorch's (c, m) weight row by row, so output 0
        // gets the one-output draws.
        let three = init_network(16, 100, 3, &mut ChaCha8Rng::seed_from_u64(0));
        assert_eq!(three.hidden, net.hidden);
        assert_eq!((three.outputs, three.alpha.len()), (3, 300));
        let first: Vec<f64> = (0..100).map(|j| three.output_weights(j)[0]).collect();
        assert_eq!(first, net.alpha);
        assert!(three.alpha.iter().all(|v| v.abs() < 0.1));
    }

    #[test]
    fn adam_and_sgd_decrease_the_objective_full_and_minibatch() {
        let (x, y) = data(40, 3, LossKind::Squared, 5);
        for (optimizer, lr, batch) in [
            (Optimizer::adam(), 1e-2, None),
            (Optimizer::adam(), 1e-2, Some(8)),
            (Optimizer::sgd(), 5e-2, None),
            (Optimizer::sgd(), 1e-2, Some(7)),
        ] {
            let s = GradientSettings {
                optimizer,
                width: 10,
                learning_rate: lr,
                epochs: 300,
                batch_size: batch,
                seed: 2,
                record_every: 50,
            };
            let out = train_gradient(&x, &y, LossKind::Squared, 1e-3, &s).unwrap();
            let first = out.trace[0].1;
            assert!(
                out.objective < 0.3 * first,
                "{optimizer:?} {batch:?}: {first} -> {}",
                out.objective
            );
            let epochs: Vec<usize> = out.trace.iter().map(|t| t.0).collect();
            assert_eq!(epochs, [0, 50, 100, 150, 200, 250, 300]);
            assert_eq!(out.steps, 300 * batch.map_or(1, |b| 40usize.div_ceil(b)));
            assert_eq!(
                out.objective,
                out.network
                    .objective(&x, &y, LossKind::Squared, 1e-3)
                    .unwrap()
            );
        }
    }

    #[test]
    fn logistic_training_fits_labels() {
        let (x, y) = data(40, 3, LossKind::Logistic, 6);
        let s = GradientSettings {
            width: 10,
            epochs: 300,
            ..GradientSettings::default()
        };
        let out = train_gradient(&x, &y, LossKind::Logistic, 1e-4, &s).unwrap();
        let z = out.network.forward(&x).unwrap();
        let hits = z.iter().zip(&y).filter(|(z, y)| *z * *y > 0.0).count();
        assert!(hits >= 36, "{hits} of 40");
        assert!(out.objective < 0.5 * out.trace[0].1);
    }

    #[test]
    fn a_huge_learning_rate_is_reported() {
        let (x, y) = data(20, 3, LossKind::Squared, 7);
        let s = GradientSettings {
            optimizer: Optimizer::Sgd { momentum: 0.9 },
            width: 5,
            learning_rate: 1e6,
            epochs: 200,
            ..GradientSettings::default()
        };
        let err = train_gradient(&x, &y, LossKind::Squared, 1e-3, &s).unwrap_err();
        assert!(
            matches!(&err, CvxnnError::InvalidArgument { name, .. } if name == "lr"),
            "{err}"
        );
        assert!(err.to_string().contains("too large"), "{err}");
    }
}
