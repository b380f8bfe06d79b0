//! Augmented Lagrangian for cone-constrained group lasso (DESIGN section 6):
//! `min h(A x) + penalty(x)` s.t. `C x >= 0`, with inner R-FISTA on
//! `h(A x) + (rho/2) ||(gamma/rho - C x)_+||^2 + penalty(x)` and `gamma <- (gamma - rho C x)_+`.
//!
//! The operator's image is `[A x; C x]`; the first `n` entries are the predictions.

use super::fista::{fista, initial_step, Control, ImageFunction, LossImage};
use super::{relative_gap, Multipliers, Progress, Solution, SolverSettings, Status};
use crate::certificate::dual_bound;
use crate::operator::LinearMap;
use crate::penalty::GroupL2;

/// Maps a point of the augmented Lagrangian to a polished, certified solution (or `None`).
pub type PolishHook<'a> = dyn Fn(&[f64]) -> Option<Solution> + 'a;

/// Grows a working set of constraint rows (a map whose constraints are a subset of the
/// program's, [`crate::operator::WorkingSetMap`]): given the point, adds the rows it violates
/// and lays the multipliers out for the grown map (new rows 0).
pub type GrowHook<'a> = dyn Fn(&[f64], &mut Vec<f64>) -> Grown + 'a;

/// What a [`GrowHook`] did.
#[derive(Clone, Copy, Debug)]
pub struct Grown {
    /// Whether rows joined the working set.
    pub added: bool,
    /// The largest constraint value in size over all the program's rows at the point: the
    /// working rows alone (mostly the violated ones) would make every violation look relative 1.
    pub scale: f64,
}

/// Inner iterations between searches for rows of a working set (each an inexact outer step);
/// doubled while a search finds none. Measured on digits 0 vs rest (sum-pool CNN, 20 patterns,
/// 20,000 iterations): 300 reaches a relative gap of 1.0e-3, 100 2.9e-2, 5,000 1.2e-2; 1,000
/// (2.3e-4 there) stalls on the tiny exact-pattern programs of `tests/cnn.rs`.
const GROW_EVERY: usize = 300;
/// Iterations before the first search: a warm start's set holds only its tight rows.
const FIRST_GROW: usize = 50;

/// Relative violation below which outer steps try the polish hook.
const POLISH_BELOW: f64 = 1e-3;

/// Factor on `rho` when the violation shrank less than 4x in an outer step (measured: 10
/// reaches both lower violation and lower gap than 2 or 5 on the bundled data sets).
const RHO_GROWTH: f64 = 10.0;

/// `phi(z, c) = h(z) + (rho/2) ||(gamma/rho - c)_+||^2`.
struct AugmentedImage<'a> {
    data: LossImage<'a>,
    gamma: &'a [f64],
    rho: f64,
}

impl ImageFunction for AugmentedImage<'_> {
    fn value(&self, img: &[f64]) -> f64 {
        let n = self.data.y.len();
        let (z, c) = img.split_at(n);
        let rho = self.rho;
        let pen = ordered_sum_skipping_zeros(c, self.gamma, |ck, gk| {
            let v = (gk - rho * ck).max(0.0);
            v * v
        });
        self.data.value(z) + pen / (2.0 * self.rho)
    }

    fn value_grad(&self, img: &[f64], grad: &mut [f64]) -> f64 {
        let n = self.data.y.len();
        let (z, c) = img.split_at(n);
        let (gz, gc) = grad.split_at_mut(n);
        for ((g, &ck), &gk) in gc.iter_mut().zip(c).zip(self.gamma) {
            *g = -(gk - self.rho * ck).max(0.0);
        }
        let pen = ordered_sum_skipping_zeros(gc, gc, |g, _| g * g);
        self.data.value_grad(z, gz) + pen / (2.0 * self.rho)
    }
}

impl AugmentedImage<'_> {
    /// Dual value of the subproblem `min phi(K x) + penalty(x)` at the gradient `grad_image`
    /// (`[theta; mu]`, `mu <= 0`), rescaled by `s = min(1, lambda / max_group_norm)`:
    /// `-h*(s theta) - q*(s mu)` with `q*(mu) = sum_k (mu_k gamma_k + mu_k^2 / 2) / rho`.
    fn dual_value(&self, grad_image: &[f64], max_group_norm: f64, lambda: f64) -> f64 {
        let n = self.data.y.len();
        let s = if max_group_norm > lambda {
            lambda / max_group_norm
        } else {
            1.0
        };
        let (theta, mu) = grad_image.split_at(n);
        let q = ordered_sum_skipping_zeros(mu, self.gamma, |m, g| {
            let m = s * m;
            m * g + 0.5 * m * m
        }) / self.rho;
        dual_bound(self.data, theta, max_group_norm, lambda) - q
    }
}

/// Largest constraint violation `max (-c)_+`, relative to the largest `|c|` (0 when `c` is 0).
pub fn relative_violation(c: &[f64]) -> f64 {
    relative_violation_above(c, 0.0)
}

/// [`relative_violation`] relative to `max(max |c|, floor)`.
fn relative_violation_above(c: &[f64], floor: f64) -> f64 {
    // Maxima are order-free: eight running maxima let the loop vectorize, same result.
    let (mut worst8, mut scale8) = ([0.0f64; 8], [0.0f64; 8]);
    let chunks = c.chunks_exact(8);
    let rest = chunks.remainder();
    for chunk in chunks {
        for ((w, s), &v) in worst8.iter_mut().zip(&mut scale8).zip(chunk) {
            *w = w.max(-v);
            *s = s.max(v.abs());
        }
    }
    let (mut worst, mut scale) = (0.0f64, 0.0f64);
    for (&w, &s) in worst8.iter().zip(&scale8) {
        worst = worst.max(w);
        scale = scale.max(s);
    }
    for &v in rest {
        worst = worst.max(-v);
        scale = scale.max(v.abs());
    }
    let scale = scale.max(floor);
    if scale > 0.0 {
        worst / scale
    } else {
        0.0
    }
}

/// `sum_k term(a_k, b_k)`, added in index order (the same bits as a plain loop)
/// but skipping blocks of eight whose terms are all `+-0`: most constraints are slack with a
/// zero multiplier, and the sequential additions are what limits these passes, not the loads.
fn ordered_sum_skipping_zeros(a: &[f64], b: &[f64], term: impl Fn(f64, f64) -> f64) -> f64 {
    const BLOCK: usize = 8;
    let mut sum = 0.0;
    let (ca, cb) = (a.chunks_exact(BLOCK), b.chunks_exact(BLOCK));
    let (ra, rb) = (ca.remainder(), cb.remainder());
    for (xa, xb) in ca.zip(cb) {
        let mut terms = [0.0f64; BLOCK];
        for ((t, &p), &q) in terms.iter_mut().zip(xa).zip(xb) {
            *t = term(p, q);
        }
        if terms.iter().any(|&t| t != 0.0) {
            for t in terms {
                sum += t;
            }
        }
    }
    for (&p, &q) in ra.iter().zip(rb) {
        sum += term(p, q);
    }
    sum
}

/// Solves `min h(A x) + penalty(x)` s.t. `C x >= 0`, where `map` gives `[A x; C x]`, `h` is
/// `data` and `data.y.len()` is the length of `A x`.
///
/// Every inner iterate `y` yields a dual point: `theta = grad h(A y)` with multipliers
/// `mu = (gamma - rho C y)_+ >= 0`, whose combination `A^T theta - C^T mu` is exactly the
/// gradient FISTA computes; rescaled to feasibility it gives a valid lower bound. The solve stops
/// as soon as the relative gap against the best bound and the relative violation at `y` are both
/// below `settings.tol`. Inner solves end (and multipliers update) when the minimum-norm
/// subgradient is below a tolerance that tightens from outer step to outer step.
///
/// `warm` multipliers (a previous solve's, same constraint layout) start the outer loop there
/// instead of at `gamma = 0`, `rho = rho_init / n`: a warm point then stays near feasibility.
///
/// With `grow`, `map`'s constraints are a working set of the program's: after every outer step
/// and before the solve would stop, `grow` adds the rows the point violates; the solve stops
/// only when it adds none (the bounds on the way are valid: a relaxation's).
#[allow(clippy::too_many_arguments)]
pub fn solve_cone_constrained<M: LinearMap + ?Sized>(
    map: &M,
    data: LossImage<'_>,
    penalty: &GroupL2,
    x0: &[f64],
    warm: Option<&Multipliers>,
    settings: &SolverSettings,
    polish: Option<&PolishHook<'_>>,
    grow: Option<&GrowHook<'_>>,
    progress: &mut dyn FnMut(&Progress),
) -> Solution {
    let start = std::time::Instant::now();
    let (loss, y) = (data.loss, data.y);
    let n = y.len();
    let samples = n / data.outputs.max(1);

    let mut gamma = vec![0.0; map.image_len() - n];
    let mut rho = settings.rho_init / samples.max(1) as f64;
    if let Some(w) = warm.filter(|w| w.gamma.len() == gamma.len() && w.rho > 0.0) {
        gamma.copy_from_slice(&w.gamma);
        rho = w.rho;
    }
    let mut x = x0.to_vec();
    // Working set: the rows a warm start violates join first; `floor` keeps violations relative
    // to the whole program's constraint values.
    let mut floor = 0.0f64;
    let mut grow_every = FIRST_GROW;
    let mut next_polish = 0usize;
    let mut best_polished: Option<Solution> = None;
    let mut best_dual = f64::NEG_INFINITY;
    if let Some(g) = grow {
        floor = g(&x, &mut gamma).scale;
    }
    let mut step = initial_step(map, loss.curvature(samples).max(rho));
    let mut inner_tol = 1e-2f64.max(settings.tol);
    let mut prev_violation = f64::INFINITY;
    let mut total = 0usize;
    let mut trace: Vec<Progress> = Vec::new();
    // A feasible warm start (a trained network mapped into the program) is polished first: on
    // the optimal face that certifies at once, and otherwise the outer loop starts from the
    // polished point when it is no worse (its KKT bound is valid either way).
    if let Some(hook) = polish.filter(|_| x0.iter().any(|v| *v != 0.0)) {
        let mut img = vec![0.0; map.image_len()];
        map.apply(x0, &mut img);
        if relative_violation_above(&img[n..], floor) <= POLISH_BELOW {
            if let Some(p) = hook(x0) {
                if p.relative_gap() <= settings.tol {
                    let multipliers = Multipliers { gamma, rho };
                    return certified(p, best_dual, 0, start, trace, multipliers, progress);
                }
                best_dual = best_dual.max(p.dual_bound);
                if grow.is_some() && p.violation <= settings.tol {
                    best_polished = Some(p.clone());
                }
                if p.objective <= data.value(&img[..n]) + penalty.value(x0) {
                    x = p.x;
                }
            }
        }
    }
    let mut last = Progress {
        iteration: 0,
        objective: f64::INFINITY,
        dual_bound: f64::NEG_INFINITY,
        relative_gap: f64::INFINITY,
        violation: f64::INFINITY,
    };
    let status = loop {
        let phi = AugmentedImage {
            data,
            gamma: &gamma,
            rho,
        };
        let tol_now = inner_tol;
        let mut done = false;
        let mut monitor = |it: &super::fista::Iterate<'_>| {
            let (z, c) = it.image.split_at(n);
            let dual = dual_bound(
                data,
                &it.grad_image[..n],
                penalty.dual_norm(it.grad),
                penalty.lambda,
            );
            best_dual = best_dual.max(dual);
            let objective = data.value(z) + penalty.value(it.y);
            last = Progress {
                iteration: total + it.iteration,
                objective,
                dual_bound: best_dual,
                relative_gap: relative_gap(objective, best_dual),
                violation: relative_violation_above(c, floor),
            };
            progress(&last);
            if last.relative_gap <= settings.tol && last.violation <= settings.tol {
                done = true;
                return Control::Stop;
            }
            // Inner stop: relative duality gap of the augmented subproblem itself.
            let sub_primal = it.smooth_value + penalty.value(it.y);
            let sub_dual =
                phi.dual_value(it.grad_image, penalty.dual_norm(it.grad), penalty.lambda);
            if relative_gap(sub_primal, sub_dual) <= tol_now {
                Control::Stop
            } else {
                Control::Continue
            }
        };
        let remaining = settings.max_iter.saturating_sub(total);
        // A working set is searched every `grow_every` iterations, not only at outer steps: an
        // inner solve on a set that lacks most binding rows is wasted.
        let budget = if grow.is_some() {
            remaining.min(grow_every)
        } else {
            remaining
        };
        let out = fista(map, &phi, penalty, &x, step, budget, &mut monitor);
        total += out.iterations;
        step = out.step;
        x = out.x;
        if let Some(g) =
            grow.filter(|_| !out.stopped && !out.numerical_error && total < settings.max_iter)
        {
            // An inexact outer step: multipliers of the working rows, then the search.
            for (g, &gc) in gamma.iter_mut().zip(&out.grad_image[n..]) {
                *g = -gc;
            }
            let grown = g(&x, &mut gamma);
            floor = grown.scale;
            grow_every = if grown.added {
                GROW_EVERY
            } else {
                2 * grow_every
            };
            continue;
        }
        if !out.stopped {
            // The last point was never shown to the monitor: describe the point we return.
            let (z, c) = out.image.split_at(n);
            last.objective = data.value(z) + penalty.value(&x);
            last.violation = relative_violation_above(c, floor);
            last.relative_gap = relative_gap(last.objective, best_dual);
            last.iteration = total;
        }
        trace.push(last);
        if done {
            match grow.map(|g| g(&x, &mut gamma)) {
                Some(g) if g.added => floor = g.scale,
                _ => break Status::Converged,
            }
        }
        if let Some(hook) =
            polish.filter(|_| last.violation <= POLISH_BELOW && total >= next_polish)
        {
            // A polished point whose certificate meets the tolerance ends the solve.
            match hook(&x) {
                Some(p) if p.relative_gap() <= settings.tol => {
                    let multipliers = Multipliers { gamma, rho };
                    return certified(p, best_dual, total, start, trace, multipliers, progress);
                }
                // A working-set solve keeps the point and its bound (both valid).
                Some(p) if grow.is_some() && p.violation <= settings.tol => {
                    best_dual = best_dual.max(p.dual_bound);
                    if best_polished
                        .as_ref()
                        .is_none_or(|b| p.objective < b.objective)
                    {
                        best_polished = Some(p);
                    }
                }
                _ => {}
            }
            if grow.is_some() {
                // Its KKT bound projects on every row of the full program (seconds on digits):
                // after a failed try, wait as many iterations as were run before it.
                next_polish = 2 * total;
            }
        }
        if out.numerical_error {
            break Status::NumericalError;
        }
        if !out.stopped || total >= settings.max_iter {
            break Status::MaxIterations;
        }
        if done {
            // Rows joined the working set: iterate on with their multipliers at 0.
            prev_violation = f64::INFINITY;
            continue;
        }
        // Multiplier update: the gradient's constraint part is -(gamma - rho c)_+.
        for (g, &gc) in gamma.iter_mut().zip(&out.grad_image[n..]) {
            *g = -gc;
        }
        let violation = last.violation;
        if violation > 0.25 * prev_violation {
            rho *= RHO_GROWTH;
        }
        prev_violation = violation;
        inner_tol = (inner_tol * 0.3).max(0.3 * settings.tol);
        if let Some(g) = grow {
            floor = g(&x, &mut gamma).scale;
        }
    };
    // A working-set solve that ran out of budget returns its best feasible polished point when
    // the last iterate is infeasible or worse.
    if let Some(b) = best_polished.filter(|b| {
        status != Status::Converged
            && (last.violation > settings.tol || last.objective > b.objective)
    }) {
        x = b.x;
        last.objective = b.objective;
        last.violation = b.violation;
    }
    Solution {
        x,
        status,
        objective: last.objective,
        dual_bound: best_dual,
        violation: last.violation,
        iterations: total,
        seconds: start.elapsed().as_secs_f64(),
        trace,
        multipliers: Some(Multipliers { gamma, rho }),
        step: Some(step),
    }
}

/// The solution of a polished point that met the tolerance, with the solve's best bound,
/// iteration count, time, trace and multipliers.
fn certified(
    mut p: Solution,
    best_dual: f64,
    total: usize,
    start: std::time::Instant,
    mut trace: Vec<Progress>,
    multipliers: Multipliers,
    progress: &mut dyn FnMut(&Progress),
) -> Solution {
    p.dual_bound = p.dual_bound.max(best_dual);
    p.status = Status::Converged;
    p.iterations = total;
    p.seconds = start.elapsed().as_secs_f64();
    let last = Progress {
        iteration: total,
        objective: p.objective,
        dual_bound: p.dual_bound,
        relative_gap: p.relative_gap(),
        violation: p.violation,
    };
    trace.push(last);
    progress(&last);
    p.trace = trace;
    p.multipliers = Some(multipliers);
    p
}
