//! FISTA with backtracking, step growth and O'Donoghue-Candes restarts (R-FISTA, DESIGN
//! sections 4 and 6) for `min_x phi(K x) + penalty(x)`.
//!
//! The extrapolated point's image `K y` is formed from the images of the last two iterates
//! (`K` is linear), so one iteration costs one `apply` and one `adjoint`: two GEMMs.

use super::{relative_gap, Progress, Solution, SolverSettings, Status};
use crate::certificate::dual_bound;
use crate::loss::LossKind;
use crate::operator::LinearMap;
use crate::penalty::Regularizer;

/// A smooth function of the operator's image.
pub trait ImageFunction {
    /// `phi(img)`.
    fn value(&self, img: &[f64]) -> f64;
    /// `phi(img)`, with its gradient written to `grad`.
    fn value_grad(&self, img: &[f64], grad: &mut [f64]) -> f64;
}

/// What a monitor sees at each extrapolated point `y`.
pub struct Iterate<'a> {
    /// Iteration index.
    pub iteration: usize,
    /// The point.
    pub y: &'a [f64],
    /// Its image `K y`.
    pub image: &'a [f64],
    /// `phi(K y)`.
    pub smooth_value: f64,
    /// Gradient of `phi` at the image.
    pub grad_image: &'a [f64],
    /// Gradient in the variables, `K^T grad_image`.
    pub grad: &'a [f64],
}

/// Whether to go on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Control {
    /// Keep iterating.
    Continue,
    /// Stop and return the current point `y`.
    Stop,
}

/// Result of [`fista`].
#[derive(Clone, Debug)]
pub struct FistaOutput {
    /// The last point handed to the monitor (the solution when it said stop).
    pub x: Vec<f64>,
    /// Its image.
    pub image: Vec<f64>,
    /// Gradient of `phi` at the image.
    pub grad_image: Vec<f64>,
    /// Gradient in the variables.
    pub grad: Vec<f64>,
    /// Iterations done.
    pub iterations: usize,
    /// Whether the monitor stopped the run (else the iteration limit or a numerical failure).
    pub stopped: bool,
    /// Whether the line search failed (non-finite values).
    pub numerical_error: bool,
    /// The step size in use at the end (reusable for a warm start).
    pub step: f64,
}

/// Runs R-FISTA from `x0` with initial step `step0` for at most `max_iter` iterations.
pub fn fista<M: LinearMap + ?Sized, F: ImageFunction + ?Sized, R: Regularizer + ?Sized>(
    map: &M,
    phi: &F,
    penalty: &R,
    x0: &[f64],
    step0: f64,
    max_iter: usize,
    monitor: &mut dyn FnMut(&Iterate<'_>) -> Control,
) -> FistaOutput {
    let (nv, ni) = (map.n_vars(), map.image_len());
    let mut x = x0.to_vec();
    let mut kx = vec![0.0; ni];
    map.apply(&x, &mut kx);
    let mut y = x.clone();
    let mut ky = kx.clone();
    let mut gimg = vec![0.0; ni];
    let mut g = vec![0.0; nv];
    let mut xn = vec![0.0; nv];
    let mut kxn = vec![0.0; ni];
    let mut tmp = vec![0.0; nv];
    let mut t = 1.0f64;
    let mut step = step0;
    let mut numerical_error = false;
    let mut it = 0;
    while it < max_iter {
        let fy = phi.value_grad(&ky, &mut gimg);
        map.adjoint(&gimg, &mut g);
        let control = monitor(&Iterate {
            iteration: it,
            y: &y,
            image: &ky,
            smooth_value: fy,
            grad_image: &gimg,
            grad: &g,
        });
        if control == Control::Stop {
            return FistaOutput {
                x: y,
                image: ky,
                grad_image: gimg,
                grad: g,
                iterations: it,
                stopped: true,
                numerical_error: false,
                step,
            };
        }
        if !fy.is_finite() {
            numerical_error = true;
            break;
        }
        // Backtracking on the quadratic upper bound.
        loop {
            for ((tv, yv), gv) in tmp.iter_mut().zip(&y).zip(&g) {
                *tv = yv - step * gv;
            }
            penalty.prox(&tmp, step, &mut xn);
            map.apply(&xn, &mut kxn);
            let fn_ = phi.value(&kxn);
            let mut lin = 0.0;
            let mut dd = 0.0;
            for ((a, b), gv) in xn.iter().zip(&y).zip(&g) {
                let d = a - b;
                lin += gv * d;
                dd += d * d;
            }
            let bound = fy + lin + dd / (2.0 * step);
            let slack = 1e-12 * fy.abs().max(1e-300);
            if fn_.is_finite() && fn_ <= bound + slack {
                // Very loose bound (local curvature below half of 1/step): grow the step.
                if fn_ <= fy + lin + dd / (4.0 * step) {
                    step *= 1.25;
                }
                break;
            }
            step *= 0.5;
            if step < 1e-300 {
                numerical_error = true;
                break;
            }
        }
        if numerical_error {
            break;
        }
        // Gradient-mapping restart: momentum points against the last step.
        let mut restart_dot = 0.0;
        for ((yv, xnv), xv) in y.iter().zip(&xn).zip(&x) {
            restart_dot += (yv - xnv) * (xnv - xv);
        }
        let beta = if restart_dot > 0.0 {
            t = 1.0;
            0.0
        } else {
            let tn = 0.5 * (1.0 + (1.0 + 4.0 * t * t).sqrt());
            let b = (t - 1.0) / tn;
            t = tn;
            b
        };
        for ((yv, &a), &b) in y.iter_mut().zip(&xn).zip(&x) {
            *yv = a + beta * (a - b);
        }
        for ((yv, &a), &b) in ky.iter_mut().zip(&kxn).zip(&kx) {
            *yv = a + beta * (a - b);
        }
        std::mem::swap(&mut x, &mut xn);
        std::mem::swap(&mut kx, &mut kxn);
        it += 1;
    }
    phi.value_grad(&ky, &mut gimg);
    map.adjoint(&gimg, &mut g);
    FistaOutput {
        x: y,
        image: ky,
        grad_image: gimg,
        grad: g,
        iterations: it,
        stopped: false,
        numerical_error,
        step,
    }
}

/// `phi(z) = h(z)`: the data-fit term of an unconstrained program.
#[derive(Clone, Copy, Debug)]
pub struct LossImage<'a> {
    /// The loss.
    pub loss: LossKind,
    /// Targets (`n x outputs`, column-major).
    pub y: &'a [f64],
    /// Outputs per sample.
    pub outputs: usize,
}

impl ImageFunction for LossImage<'_> {
    fn value(&self, img: &[f64]) -> f64 {
        self.loss.value(img, self.y, self.outputs)
    }
    fn value_grad(&self, img: &[f64], grad: &mut [f64]) -> f64 {
        self.loss.value_grad(img, self.y, self.outputs, grad)
    }
}

/// First step: `1 / (curvature * ||K||^2)`, doubled because backtracking shrinks it cheaply.
pub fn initial_step<M: LinearMap + ?Sized>(map: &M, curvature: f64) -> f64 {
    let l = curvature * map.norm_sq_estimate(20);
    if l > 0.0 && l.is_finite() {
        2.0 / l
    } else {
        1.0
    }
}

/// Solves the group lasso `min h(K x) + penalty(x)` to a relative duality gap below
/// `settings.tol`, with the dual point `theta = grad h(K y)` rescaled into feasibility at every
/// iteration (so the bound is valid whenever the run stops). `step0` is the first step size (a
/// previous solve's [`Solution::step`]); when `None` it is estimated from `||K||^2` by power
/// iteration (20 products with `K` and `K^T`).
#[allow(clippy::too_many_arguments)]
pub fn solve_group_lasso<M: LinearMap + ?Sized, R: Regularizer + ?Sized>(
    map: &M,
    data: LossImage<'_>,
    penalty: &R,
    x0: &[f64],
    settings: &SolverSettings,
    step0: Option<f64>,
    progress: &mut dyn FnMut(&Progress),
) -> Solution {
    let start = std::time::Instant::now();
    let phi = data;
    let (loss, y, outputs) = (data.loss, data.y, data.outputs);
    let step0 = step0
        .filter(|s| s.is_finite() && *s > 0.0)
        .unwrap_or_else(|| initial_step(map, loss.curvature(y.len() / outputs.max(1))));
    let mut best_dual = f64::NEG_INFINITY;
    let mut trace = Vec::new();
    let mut last = Progress {
        iteration: 0,
        objective: f64::INFINITY,
        dual_bound: f64::NEG_INFINITY,
        relative_gap: f64::INFINITY,
        violation: 0.0,
    };
    let mut monitor = |it: &Iterate<'_>| {
        let primal = it.smooth_value + penalty.value(it.y);
        let dual = dual_bound(
            data,
            it.grad_image,
            penalty.dual_norm(it.grad),
            penalty.lambda(),
        );
        best_dual = best_dual.max(dual);
        last = Progress {
            iteration: it.iteration,
            objective: primal,
            dual_bound: best_dual,
            relative_gap: relative_gap(primal, best_dual),
            violation: 0.0,
        };
        if it.iteration % 50 == 0 {
            trace.push(last);
        }
        progress(&last);
        if last.relative_gap <= settings.tol {
            Control::Stop
        } else {
            Control::Continue
        }
    };
    let out = fista(
        map,
        &phi,
        penalty,
        x0,
        step0,
        settings.max_iter,
        &mut monitor,
    );
    trace.push(last);
    let status = if out.stopped {
        Status::Converged
    } else if out.numerical_error {
        Status::NumericalError
    } else {
        Status::MaxIterations
    };
    let objective = phi.value(&out.image) + penalty.value(&out.x);
    Solution {
        x: out.x,
        status,
        objective,
        dual_bound: best_dual,
        violation: 0.0,
        iterations: out.iterations,
        seconds: start.elapsed().as_secs_f64(),
        trace,
        multipliers: None,
        step: Some(out.step),
    }
}
