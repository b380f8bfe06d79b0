//! The dual oracle and column generation (DESIGN section 1): the oracle finds a violated pattern
//! when the patterns in the program miss one that matters, finds none at the optimum over every
//! pattern (exact enumeration), and column generation never gets worse than its warm start and
//! terminates with a non-increasing trajectory.

mod common;

use common::problem;
use cvxnn::certificate::{search_patterns, OracleSettings};
use cvxnn::estimator::exact_patterns;
use cvxnn::loss::LossKind;
use cvxnn::network::{train_gradient, GradientSettings, Network};
use cvxnn::patterns::{sample_patterns, Masks};
use cvxnn::program::{
    solve_column_generation, ColumnGenerationEnd, ColumnGenerationSettings, ModelKind, RoundSolver,
    TwoLayerProgram,
};
use cvxnn::solver::conic::{solve_conic, ConicProblem, ConicSettings};
use cvxnn::solver::SolverSettings;

const LAMBDA: f64 = 1e-2;

/// `theta = grad h(z)` at a solution of `masks`, and that solution's objective (conic solver:
/// exact to its tolerance, independent of the first-order code).
fn restricted_optimum(
    x: &cvxnn::Matrix,
    y: &[f64],
    masks: &Masks,
    loss: LossKind,
) -> (Vec<f64>, f64) {
    let sol = solve_conic(
        &ConicProblem {
            x,
            y,
            masks,
            loss,
            model: ModelKind::Relu,
            lambda: LAMBDA,
        },
        &ConicSettings {
            tol: 1e-10,
            ..ConicSettings::default()
        },
    )
    .unwrap();
    assert!(sol.status.is_solved(), "{:?}", sol.status);
    let program = TwoLayerProgram::new(x, y, masks, loss, ModelKind::Relu, LAMBDA).unwrap();
    let z = program.predict(sol.weights.as_slice()).unwrap();
    let mut theta = vec![0.0; y.len()];
    loss.grad(&z, y, 1, &mut theta);
    (theta, sol.objective)
}

#[test]
fn oracle_finds_a_violated_pattern_that_lowers_the_objective() {
    let (x, y) = problem(14, 3, LossKind::Squared, 3);
    let all = exact_patterns(&x, 10_000).unwrap();
    // Only two patterns in the program: the global optimum needs others.
    let few = sample_patterns(&x, 2, 1).unwrap().masks;
    let (theta, restricted) = restricted_optimum(&x, &y, &few, LossKind::Squared);
    let found = search_patterns(&x, &theta, None, &OracleSettings::default()).unwrap();
    assert!(
        found.max_value > LAMBDA * 1.01,
        "oracle max {} vs lambda {LAMBDA}",
        found.max_value
    );
    let best = &found.candidates[0];
    let known: Vec<&[u64]> = (0..few.len()).map(|i| few.pattern_words(i)).collect();
    assert!(!known.contains(&best.pattern.as_slice()));
    // The pattern is a real cell of the arrangement (exact enumeration lists it).
    assert!((0..all.len()).any(|i| all.pattern_words(i) == best.pattern.as_slice()));
    // Adding it lowers the optimum.
    let mut more = few.clone();
    more.push_words(&best.pattern);
    let (_, improved) = restricted_optimum(&x, &y, &more, LossKind::Squared);
    assert!(
        improved < restricted * (1.0 - 1e-6),
        "{improved} vs {restricted}"
    );
    // The global optimum is lower still or equal, and the oracle finds nothing there.
    let (theta_all, global) = restricted_optimum(&x, &y, &all, LossKind::Squared);
    assert!(global <= improved * (1.0 + 1e-8));
    let none = search_patterns(&x, &theta_all, None, &OracleSettings::default()).unwrap();
    assert!(
        none.max_value <= LAMBDA * (1.0 + 1e-5),
        "violation at the global optimum: {} vs {LAMBDA}",
        none.max_value
    );
}

#[test]
fn oracle_finds_no_violation_at_the_exact_optimum_logistic() {
    let (x, y) = problem(12, 3, LossKind::Logistic, 5);
    let all = exact_patterns(&x, 10_000).unwrap();
    let (theta, _) = restricted_optimum(&x, &y, &all, LossKind::Logistic);
    let r = search_patterns(&x, &theta, None, &OracleSettings::default()).unwrap();
    assert!(r.max_value <= LAMBDA * (1.0 + 1e-5), "{}", r.max_value);
    assert!(r.max_value > 0.0);
}

fn warm_network(x: &cvxnn::Matrix, y: &[f64], loss: LossKind) -> (Network, f64) {
    let g = train_gradient(
        x,
        y,
        loss,
        LAMBDA,
        &GradientSettings {
            width: 8,
            epochs: 300,
            learning_rate: 1e-2,
            seed: 4,
            ..GradientSettings::default()
        },
    )
    .unwrap();
    (g.network, g.objective)
}

#[test]
fn column_generation_is_never_worse_than_its_warm_start_and_is_monotone() {
    let solvers = [RoundSolver::default(), RoundSolver::Convex];
    for (loss, round_solver) in [LossKind::Squared, LossKind::Logistic]
        .into_iter()
        .flat_map(|l| solvers.map(|r| (l, r)))
    {
        let (x, y) = problem(60, 4, loss, 11);
        let (net, net_objective) = warm_network(&x, &y, loss);
        let initial = sample_patterns(&x, 4, 0).unwrap();
        let settings = SolverSettings {
            tol: 1e-6,
            max_iter: 20_000,
            ..SolverSettings::default()
        };
        let cg = ColumnGenerationSettings {
            max_rounds: 6,
            batch: 8,
            round_solver,
            ..ColumnGenerationSettings::default()
        };
        let out = solve_column_generation(
            &x,
            &y,
            loss,
            LAMBDA,
            &initial,
            Some(&net),
            &settings,
            &cg,
            &mut |_| {},
        )
        .unwrap();
        let warm = out.warm_objective.unwrap();
        assert!(
            warm <= net_objective * (1.0 + 1e-12),
            "{warm} {net_objective}"
        );
        let obj = out.solution.objective;
        assert!(obj <= warm, "{loss}: {obj} > warm start {warm}");
        assert!(out.rounds.len() <= cg.max_rounds + 1);
        for w in out.rounds.windows(2) {
            assert!(w[1].objective <= w[0].objective, "{:?}", out.rounds);
        }
        // The final point is an exactly feasible program point: a real network with that
        // objective.
        let program =
            TwoLayerProgram::new(&x, &y, &out.masks, loss, ModelKind::Relu, LAMBDA).unwrap();
        assert!(program.violation(&out.solution.x).unwrap() <= 1e-9);
        let rebuilt = Network::from_convex(ModelKind::Relu, x.ncols(), &out.solution.x, None)
            .unwrap()
            .objective(&x, &y, loss, LAMBDA)
            .unwrap();
        assert!(
            (rebuilt - obj).abs() <= 1e-8 * obj.abs(),
            "{rebuilt} vs {obj}"
        );
        assert_eq!(out.masks.len(), out.gates.ncols());
        // The searched bound is below the objective (it is a dual value).
        assert!(out.searched_bound <= obj * (1.0 + 1e-9));
    }
}

#[test]
fn column_generation_reaches_the_exact_optimum_on_tiny_data() {
    let (x, y) = problem(14, 3, LossKind::Squared, 3);
    let all = exact_patterns(&x, 10_000).unwrap();
    let (_, global) = restricted_optimum(&x, &y, &all, LossKind::Squared);
    let initial = sample_patterns(&x, 2, 1).unwrap();
    let out = solve_column_generation(
        &x,
        &y,
        LossKind::Squared,
        LAMBDA,
        &initial,
        None,
        &SolverSettings {
            tol: 1e-7,
            max_iter: 400_000,
            ..SolverSettings::default()
        },
        &ColumnGenerationSettings {
            max_rounds: 30,
            round_max_iter: 20_000,
            round_tol: 1e-7,
            final_max_iter: 100_000,
            ..ColumnGenerationSettings::default()
        },
        &mut |_| {},
    )
    .unwrap();
    let obj = out.solution.objective;
    assert!(
        (obj - global).abs() <= 1e-4 * global,
        "column generation {obj} vs exact {global} ({:?}, {:#?})",
        out.end,
        out.rounds
    );
    // At a first-order point theta is exact only to the solve's tolerance, so the oracle's
    // ratio is 1 up to that (the end is `NoViolationFound` when it is within 1 + tol).
    assert!(
        out.end == ColumnGenerationEnd::NoViolationFound || out.oracle_ratio <= 1.0 + 1e-3,
        "{:?}, ratio {}",
        out.end,
        out.oracle_ratio
    );
    assert!(
        out.masks.len() < all.len(),
        "{} of {}",
        out.masks.len(),
        all.len()
    );
}
