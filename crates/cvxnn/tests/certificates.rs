//! The dual bound a solve returns is a real lower bound: no feasible point of the program has a
//! smaller objective. And above `lambda_max` the solution is exactly zero.

mod common;

use common::{loss_name, norm, problem, rel_diff, Rng};
use cvxnn::linalg::Matrix;
use cvxnn::loss::LossKind;
use cvxnn::patterns::{sample_patterns, GatedPatterns};
use cvxnn::program::{ModelKind, TwoLayerProgram};
use cvxnn::solver::conic::{solve_conic, ConicProblem, ConicSettings};
use cvxnn::solver::{SolverSettings, Status};

const N: usize = 30;
const D: usize = 3;
const P: usize = 10;

fn settings() -> SolverSettings {
    SolverSettings {
        tol: 1e-6,
        max_iter: 200_000,
        ..SolverSettings::default()
    }
}

/// Random points that satisfy the program's constraints exactly: any point for gated ReLU; for
/// ReLU, `v_i = a_i g_i`, `w_i = b_i g_i` with `a_i, b_i >= 0` (the gate `g_i` realizes pattern
/// `i`, so it lies in the cone `K_i`), some groups left at zero.
fn random_feasible(model: ModelKind, pats: &GatedPatterns, rng: &mut Rng, scale: f64) -> Vec<f64> {
    let (d, p) = (pats.gates.nrows(), pats.gates.ncols());
    match model {
        ModelKind::GatedRelu => (0..d * p).map(|_| scale * rng.normal()).collect(),
        ModelKind::Relu => {
            let mut v = vec![0.0; 2 * d * p];
            for c in 0..2 * p {
                if rng.uniform() < 0.3 {
                    continue;
                }
                let g = pats.gates.col(c % p);
                let a = scale * rng.normal().abs() / norm(g);
                for k in 0..d {
                    v[c * d + k] = a * g[k];
                }
            }
            v
        }
    }
}

fn lower_bound_case(model: ModelKind, loss: LossKind, lambda: f64, seed: u64) {
    let (x, y) = problem(N, D, loss, seed);
    let pats = sample_patterns(&x, P, seed).unwrap();
    let program = TwoLayerProgram::new(&x, &y, &pats.masks, loss, model, lambda).unwrap();
    let sol = program.solve(&settings(), None, &mut |_| {}).unwrap();
    let bound = sol.dual_bound;
    let conic = solve_conic(
        &ConicProblem {
            x: &x,
            y: &y,
            masks: &pats.masks,
            loss,
            model,
            lambda,
        },
        &ConicSettings::default(),
    )
    .unwrap();
    assert!(conic.status.is_solved());

    let mut points: Vec<(String, Vec<f64>)> = vec![
        ("solution".into(), sol.x.clone()),
        (
            "0.5 * solution".into(),
            sol.x.iter().map(|v| 0.5 * v).collect(),
        ),
        (
            "1.5 * solution".into(),
            sol.x.iter().map(|v| 1.5 * v).collect(),
        ),
        ("zero".into(), vec![0.0; program.n_vars()]),
        ("conic solution".into(), conic.weights.as_slice().to_vec()),
    ];
    let mut rng = Rng::new(seed);
    for k in 0..20 {
        let scale = [0.01, 0.1, 1.0, 10.0][k % 4];
        points.push((
            format!("random #{k} (scale {scale})"),
            random_feasible(model, &pats, &mut rng, scale),
        ));
    }
    // Feasible points near the optimum: the conic solution plus a small feasible step (the
    // cones are convex, so the sum stays feasible).
    for k in 0..5 {
        let step = random_feasible(model, &pats, &mut rng, 1e-3);
        let pt = conic
            .weights
            .as_slice()
            .iter()
            .zip(&step)
            .map(|(a, b)| a + b)
            .collect();
        points.push((format!("conic solution + small step #{k}"), pt));
    }
    let mut closest = f64::INFINITY;
    for (name, pt) in &points {
        let obj = program.objective(pt).unwrap();
        let viol = program.violation(pt).unwrap();
        closest = closest.min(obj - bound);
        // The scaled solutions keep the solution's (tiny) relative violation; the others are
        // feasible to rounding.
        assert!(viol <= 1e-6, "{name}: violation {viol}");
        assert!(
            obj >= bound,
            "{model}/{}: objective {obj} at {name} is below the dual bound {bound}",
            loss_name(loss)
        );
    }
    eprintln!(
        "{model}/{} lambda={lambda:e}: status={} objective={:.10e} dual_bound={bound:.10e} \
         conic={:.10e}; {} feasible points, smallest objective - bound = {closest:.2e}",
        loss_name(loss),
        sol.status,
        sol.objective,
        conic.objective,
        points.len()
    );
    assert!(bound <= conic.objective + 1e-12);
}

#[test]
fn dual_bound_is_below_every_feasible_point() {
    for model in [ModelKind::GatedRelu, ModelKind::Relu] {
        for (loss, seed) in [(LossKind::Squared, 21), (LossKind::Logistic, 22)] {
            lower_bound_case(model, loss, 1e-2, seed);
        }
    }
}

/// `lambda_max = max_i ||X^T D_i grad h(0)||`: the largest group norm of the gradient at zero.
fn lambda_max(x: &Matrix, y: &[f64], loss: LossKind, pats: &GatedPatterns) -> f64 {
    let n = x.nrows();
    let scale = match loss {
        LossKind::Squared => 1.0 / n as f64,
        LossKind::Logistic => 0.5 / n as f64, // sigmoid(0) = 1/2
        LossKind::CrossEntropy => unreachable!("one-output tests"),
    };
    (0..pats.masks.len())
        .map(|i| {
            let g: Vec<f64> = (0..x.ncols())
                .map(|k| {
                    (0..n)
                        .filter(|&j| pats.masks.get(j, i))
                        .map(|j| x.get(j, k) * y[j])
                        .sum::<f64>()
                })
                .collect();
            scale * norm(&g)
        })
        .fold(0.0, f64::max)
}

fn zero_above_lambda_max(loss: LossKind, seed: u64) {
    let (x, y) = problem(N, D, loss, seed);
    let pats = sample_patterns(&x, P, seed).unwrap();
    let lmax = lambda_max(&x, &y, loss, &pats);
    let zero_obj = loss.value(&vec![0.0; N], &y, 1);
    for model in [ModelKind::GatedRelu, ModelKind::Relu] {
        for factor in [1.0 + 1e-6, 2.0, 100.0] {
            let lambda = lmax * factor;
            let program = TwoLayerProgram::new(&x, &y, &pats.masks, loss, model, lambda).unwrap();
            let sol = program.solve(&settings(), None, &mut |_| {}).unwrap();
            eprintln!(
                "{model}/{} lambda_max={lmax:.6e} lambda={lambda:.6e}: status={} iters={} \
                 objective={:.12e} dual_bound={:.12e} non-zeros={}",
                loss_name(loss),
                sol.status,
                sol.iterations,
                sol.objective,
                sol.dual_bound,
                sol.x.iter().filter(|&&v| v != 0.0).count()
            );
            assert_eq!(sol.status, Status::Converged);
            assert!(
                sol.x.iter().all(|&v| v == 0.0),
                "solution is not exactly zero"
            );
            assert_eq!(sol.objective, zero_obj);
            assert!(rel_diff(sol.dual_bound, zero_obj) <= 1e-12);
        }
        // Just below lambda_max the gated solution is not zero.
        if model == ModelKind::GatedRelu {
            let program =
                TwoLayerProgram::new(&x, &y, &pats.masks, loss, model, 0.99 * lmax).unwrap();
            let sol = program.solve(&settings(), None, &mut |_| {}).unwrap();
            assert_eq!(sol.status, Status::Converged);
            assert!(sol.x.iter().any(|&v| v != 0.0), "zero below lambda_max");
            assert!(sol.objective < zero_obj);
        }
    }
}

#[test]
fn squared_solution_is_zero_above_lambda_max() {
    zero_above_lambda_max(LossKind::Squared, 23);
}

#[test]
fn logistic_solution_is_zero_above_lambda_max() {
    zero_above_lambda_max(LossKind::Logistic, 24);
}
