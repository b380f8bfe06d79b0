//! Cone decomposition (Mishkin et al. 2022): a gated ReLU solution becomes a ReLU network with
//! the same predictions on the training data, whose objective is no better than the gated one
//! (and no better than the ReLU program's optimum over the same patterns, since it is a feasible
//! point of that program).

mod common;

use common::{distinct_neurons, loss_name, max_rel_diff, problem};
use cvxnn::loss::LossKind;
use cvxnn::network::{decompose_gated, Network};
use cvxnn::patterns::sample_patterns;
use cvxnn::program::{ModelKind, TwoLayerProgram};
use cvxnn::solver::conic::{solve_conic, ConicProblem, ConicSettings};
use cvxnn::solver::{SolverSettings, Status};

const N: usize = 40;
const D: usize = 3;
const P: usize = 20;

fn case(loss: LossKind, lambda: f64, seed: u64) {
    let (x, y) = problem(N, D, loss, seed);
    let pats = sample_patterns(&x, P, seed).unwrap();
    let program =
        TwoLayerProgram::new(&x, &y, &pats.masks, loss, ModelKind::GatedRelu, lambda).unwrap();
    let settings = SolverSettings {
        tol: 1e-10,
        max_iter: 200_000,
        ..SolverSettings::default()
    };
    let sol = program.solve(&settings, None, &mut |_| {}).unwrap();
    assert_eq!(sol.status, Status::Converged);
    let gated = Network::from_convex(ModelKind::GatedRelu, D, &sol.x, Some(&pats.gates)).unwrap();
    let gated_obj = gated.objective(&x, &y, loss, lambda).unwrap();

    let relu = decompose_gated(&gated, &x).unwrap();
    assert!(
        relu.gates.is_none(),
        "the decomposition is a plain ReLU network"
    );
    let relu_obj = relu.objective(&x, &y, loss, lambda).unwrap();
    let a = gated.forward(&x).unwrap();
    let b = relu.forward(&x).unwrap();
    let diff = max_rel_diff(&a, &b);

    // The ReLU program over the same patterns: its optimum lies between the two.
    let conic = solve_conic(
        &ConicProblem {
            x: &x,
            y: &y,
            masks: &pats.masks,
            loss,
            model: ModelKind::Relu,
            lambda,
        },
        &ConicSettings::default(),
    )
    .unwrap();
    assert!(conic.status.is_solved());
    eprintln!(
        "{}/lambda={lambda:e} seed={seed}: gated objective {gated_obj:.10e} ({} neurons) -> \
         decomposed ReLU {relu_obj:.10e} ({} neurons, {} distinct; ratio {:.3}); ReLU optimum over \
         the same patterns {:.10e} (ratio {:.3}); predictions max rel diff {diff:.2e}",
        loss_name(loss),
        gated.neurons(),
        relu.neurons(),
        distinct_neurons(&relu),
        relu_obj / gated_obj,
        conic.objective,
        conic.objective / gated_obj,
    );
    assert!(diff <= 1e-10, "predictions differ by {diff:e}");
    assert!(relu.neurons() <= 2 * gated.neurons());
    assert!(
        relu_obj >= gated_obj * (1.0 - 1e-9),
        "decomposed {relu_obj} below the gated optimum {gated_obj}"
    );
    assert!(
        conic.objective >= gated_obj * (1.0 - 1e-8),
        "ReLU optimum {} below the gated optimum {gated_obj}",
        conic.objective
    );
    assert!(
        relu_obj >= conic.objective * (1.0 - 1e-8),
        "decomposed {relu_obj} below the ReLU optimum {} over the same patterns",
        conic.objective
    );
}

#[test]
fn decomposition_keeps_predictions_squared() {
    case(LossKind::Squared, 1e-2, 31);
    case(LossKind::Squared, 1e-3, 32);
}

#[test]
fn decomposition_keeps_predictions_logistic() {
    case(LossKind::Logistic, 1e-2, 33);
    case(LossKind::Logistic, 1e-3, 34);
}
