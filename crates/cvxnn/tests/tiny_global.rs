//! The convex program over ALL activation patterns is the global optimum of the non-convex
//! training problem (DESIGN section 1): on tiny data, where dense gate sampling provably finds
//! every pattern (checked against exact enumeration), the convex ReLU optimum is no worse than
//! the best of many seeded runs of plain gradient descent on the non-convex network, and the
//! solver's dual bound is below every one of them.

mod common;

use std::collections::HashSet;

use common::{distinct_neurons, loss_name, rel_diff, Rng};
use cvxnn::linalg::Matrix;
use cvxnn::loss::LossKind;
use cvxnn::network::Network;
use cvxnn::patterns::{exact, sample_patterns, Masks};
use cvxnn::program::{ModelKind, TwoLayerProgram};
use cvxnn::solver::conic::{solve_conic, ConicProblem, ConicSettings};
use cvxnn::solver::SolverSettings;

const RESTARTS: u64 = 50;
const GD_STEPS: usize = 20_000;
const GD_LR: f64 = 0.05;

/// Tiny data: `n` points with `raw` (1 or 2) features (deterministic, general position) plus a
/// ones column, and a non-linear target.
fn tiny(n: usize, raw: usize, loss: LossKind) -> (Matrix, Vec<f64>) {
    let mut rows = Vec::new();
    let mut y = Vec::new();
    let mut rng = Rng::new(17 + raw as u64);
    for j in 0..n {
        let jitter = j as f64 + 0.3 * rng.uniform();
        let mut r = if raw == 1 {
            // Points on a segment.
            vec![-1.0 + 2.0 * jitter / n as f64]
        } else {
            // Points on a circle: every cell of the arrangement is wide enough for sampling.
            let th = 2.0 * std::f64::consts::PI * jitter / n as f64;
            vec![th.cos(), th.sin()]
        };
        let t = r[0];
        let target = (2.0 * t).abs() - 0.6 + 0.4 * (3.0 * t).sin() + 0.3 * r[raw - 1];
        r.push(1.0);
        rows.push(r);
        y.push(match loss {
            LossKind::Squared => target,
            LossKind::Logistic => {
                if target >= 0.0 {
                    1.0
                } else {
                    -1.0
                }
            }
            LossKind::CrossEntropy => panic!("one-output generator"),
        });
    }
    (Matrix::from_rows(&rows, raw + 1).unwrap(), y)
}

fn pattern_set(m: &Masks) -> HashSet<Vec<bool>> {
    (0..m.len()).map(|i| m.to_bools(i)).collect()
}

/// The non-convex training problem: data, loss and weight decay.
struct Training<'a> {
    x: &'a Matrix,
    y: &'a [f64],
    loss: LossKind,
    lambda: f64,
}

/// Objective of `f(x) = sum_j alpha_j (x.u_j)_+` with weight decay (`u`: `d x m`, column-major),
/// and its gradient in `u` and `alpha`, written to `gu` and `ga`.
fn nonconvex_value_grad(
    t: &Training,
    u: &[f64],
    alpha: &[f64],
    gu: &mut [f64],
    ga: &mut [f64],
) -> f64 {
    let Training { x, y, loss, lambda } = *t;
    let (n, d) = (x.nrows(), x.ncols());
    let m = alpha.len();
    let mut pre = vec![0.0; n * m];
    let mut z = vec![0.0; n];
    for j in 0..m {
        for i in 0..n {
            let s: f64 = (0..d).map(|k| x.get(i, k) * u[j * d + k]).sum();
            pre[j * n + i] = s;
            z[i] += alpha[j] * s.max(0.0);
        }
    }
    let mut r = vec![0.0; n];
    loss.grad(&z, y, 1, &mut r);
    let mut decay = 0.0;
    for j in 0..m {
        let mut a_grad = 0.0;
        let uj = &u[j * d..(j + 1) * d];
        let guj = &mut gu[j * d..(j + 1) * d];
        for (k, g) in guj.iter_mut().enumerate() {
            *g = lambda * uj[k];
        }
        for i in 0..n {
            let s = pre[j * n + i];
            if s > 0.0 {
                a_grad += r[i] * s;
                for (k, g) in guj.iter_mut().enumerate() {
                    *g += r[i] * alpha[j] * x.get(i, k);
                }
            }
        }
        ga[j] = a_grad + lambda * alpha[j];
        decay += uj.iter().map(|v| v * v).sum::<f64>() + alpha[j] * alpha[j];
    }
    loss.value(&z, y, 1) + 0.5 * lambda * decay
}

/// Plain full-batch gradient descent from a seeded random start; returns the final objective
/// (recomputed through `Network::objective`, so both sides use the library's formula).
fn gradient_descent(t: &Training, m: usize, seed: u64) -> f64 {
    let Training { x, y, loss, lambda } = *t;
    let d = x.ncols();
    let mut rng = Rng::new(1000 + seed);
    let mut u: Vec<f64> = (0..d * m)
        .map(|_| rng.normal() / (d as f64).sqrt())
        .collect();
    let mut alpha: Vec<f64> = (0..m).map(|_| rng.normal() / (m as f64).sqrt()).collect();
    let mut gu = vec![0.0; d * m];
    let mut ga = vec![0.0; m];
    for _ in 0..GD_STEPS {
        let f = nonconvex_value_grad(t, &u, &alpha, &mut gu, &mut ga);
        if !f.is_finite() {
            return f64::INFINITY;
        }
        for (a, g) in u.iter_mut().zip(&gu) {
            *a -= GD_LR * g;
        }
        for (a, g) in alpha.iter_mut().zip(&ga) {
            *a -= GD_LR * g;
        }
    }
    let net = Network {
        hidden: Matrix::from_col_major(d, m, u).unwrap(),
        alpha,
        outputs: 1,
        gates: None,
    };
    let obj = net.objective(x, y, loss, lambda).unwrap();
    // The hand-written objective agrees with the library's.
    let mine = nonconvex_value_grad(t, net.hidden.as_slice(), &net.alpha, &mut gu, &mut ga);
    assert!(rel_diff(obj, mine) <= 1e-12, "{obj} vs {mine}");
    obj
}

fn case(n: usize, raw: usize, loss: LossKind, lambda: f64) {
    let (x, y) = tiny(n, raw, loss);
    let d = x.ncols();

    // 1. Dense sampling finds every pattern of the arrangement.
    let sampled = sample_patterns(&x, 5000, 0).unwrap();
    let all = exact::enumerate(&x, 100_000).unwrap();
    let empty = vec![false; n];
    let mut enumerated = pattern_set(&all);
    let had_empty = enumerated.remove(&empty);
    let found = pattern_set(&sampled.masks);
    eprintln!(
        "n={n} d={d}: enumerate -> {} patterns ({} with the all-inactive one, which sampling drops), \
         sampling -> {}, Cover bound {}",
        enumerated.len(),
        all.len(),
        sampled.masks.len(),
        exact::predicted_count(n, d)
    );
    assert_eq!(
        found.len(),
        sampled.masks.len(),
        "sampled patterns are distinct"
    );
    assert_eq!(
        sampled.masks.len(),
        enumerated.len(),
        "sampling found every pattern"
    );
    assert_eq!(found, enumerated);
    assert!(had_empty, "a bias column makes the all-inactive cell exist");
    assert_eq!(
        all.len() as f64,
        exact::predicted_count(n, d),
        "general position"
    );

    // 2. The convex ReLU program over all patterns.
    let program =
        TwoLayerProgram::new(&x, &y, &sampled.masks, loss, ModelKind::Relu, lambda).unwrap();
    let settings = SolverSettings {
        tol: 1e-10,
        max_iter: 200_000,
        ..SolverSettings::default()
    };
    let sol = program.solve(&settings, None, &mut |_| {}).unwrap();
    let convex = program.objective(&sol.x).unwrap();
    let net = Network::from_convex(ModelKind::Relu, d, &sol.x, None).unwrap();
    let net_obj = net.objective(&x, &y, loss, lambda).unwrap();
    let conic = solve_conic(
        &ConicProblem {
            x: &x,
            y: &y,
            masks: &sampled.masks,
            loss,
            model: ModelKind::Relu,
            lambda,
        },
        &ConicSettings::default(),
    )
    .unwrap();
    eprintln!(
        "  relu/{} lambda={lambda:e}: first-order status={} iters={} objective={convex:.12e} \
         network={net_obj:.12e} dual_bound={:.12e} rel_gap={:.2e} violation={:.2e} \
         non-zero groups={} distinct neurons={} (n + 1 = {}) | conic {:?} objective={:.12e} \
         (rel diff {:.2e})",
        loss_name(loss),
        sol.status,
        sol.iterations,
        sol.dual_bound,
        sol.relative_gap(),
        sol.violation,
        net.neurons(),
        distinct_neurons(&net),
        n + 1,
        conic.status,
        conic.objective,
        rel_diff(conic.objective, convex),
    );
    assert!(conic.status.is_solved());
    assert!(sol.dual_bound <= conic.objective + 1e-9 * conic.objective.abs());
    assert!(
        rel_diff(conic.objective, convex) <= 1e-6,
        "conic and first-order disagree"
    );

    // 3. Gradient descent on the non-convex network, many seeded restarts.
    let m = (n + 1).max(2 * n);
    let gd: Vec<f64> = (0..RESTARTS)
        .map(|s| {
            let t = Training {
                x: &x,
                y: &y,
                loss,
                lambda,
            };
            gradient_descent(&t, m, s)
        })
        .collect();
    let best = gd.iter().copied().fold(f64::INFINITY, f64::min);
    let worst = gd
        .iter()
        .copied()
        .filter(|v| v.is_finite())
        .fold(0.0, f64::max);
    let near = gd.iter().filter(|&&v| v <= convex * (1.0 + 1e-3)).count();
    eprintln!(
        "  GD (m={m}, {RESTARTS} restarts x {GD_STEPS} steps, lr {GD_LR}): best={best:.12e} \
         worst={worst:.12e}; convex/best = {:.9}; restarts within 0.1% of convex: {near}",
        convex / best
    );
    assert!(best.is_finite(), "every gradient descent run diverged");
    assert!(
        convex <= best + 1e-6 * best.abs(),
        "convex optimum {convex} above the best gradient-descent objective {best}"
    );
    assert!(
        conic.objective <= best + 1e-6 * best.abs(),
        "conic optimum {} above gradient descent {best}",
        conic.objective
    );
    assert!(
        net_obj <= best + 1e-6 * best.abs(),
        "rebuilt network {net_obj} above gradient descent {best}"
    );
    for (s, &v) in gd.iter().enumerate() {
        assert!(
            sol.dual_bound <= v,
            "dual bound {} above the objective {v} of gradient-descent run {s}",
            sol.dual_bound
        );
    }
}

#[test]
fn one_feature_relu_squared_is_global() {
    case(8, 1, LossKind::Squared, 1e-2);
    case(8, 1, LossKind::Squared, 1e-3);
}

#[test]
fn one_feature_relu_logistic_is_global() {
    case(8, 1, LossKind::Logistic, 1e-2);
}

#[test]
fn two_features_relu_squared_is_global() {
    case(8, 2, LossKind::Squared, 1e-2);
}
