//! `Precision::F32`: single-precision iterations finished in double precision reach the same
//! optimum as an all-`f64` solve, and their certificate is an `f64` one (a valid lower bound).
//! The ReLU program (augmented Lagrangian) refuses it.

mod common;

use common::{problem, rel_diff};
use cvxnn::loss::LossKind;
use cvxnn::patterns::sample_patterns;
use cvxnn::program::{ModelKind, TwoLayerProgram};
use cvxnn::solver::{Precision, Solution, SolverSettings, Status};

fn solve(model: ModelKind, loss: LossKind, precision: Precision) -> (Solution, f64) {
    let (x, y) = problem(300, 6, loss, 11);
    let patterns = sample_patterns(&x, 40, 3).unwrap();
    let program = TwoLayerProgram::new(&x, &y, &patterns.masks, loss, model, 2e-3).unwrap();
    let settings = SolverSettings {
        tol: 1e-7,
        max_iter: 200_000,
        precision,
        ..SolverSettings::default()
    };
    let s = program.solve(&settings, None, &mut |_| {}).unwrap();
    // Re-evaluated from scratch in f64: the reported objective is the f64 objective.
    let objective = program.objective(&s.x).unwrap();
    (s, objective)
}

#[test]
fn single_precision_is_refused_for_the_relu_program() {
    let (x, y) = problem(50, 3, LossKind::Squared, 1);
    let patterns = sample_patterns(&x, 5, 0).unwrap();
    let program = TwoLayerProgram::new(
        &x,
        &y,
        &patterns.masks,
        LossKind::Squared,
        ModelKind::Relu,
        1e-2,
    )
    .unwrap();
    let settings = SolverSettings {
        precision: Precision::F32,
        ..SolverSettings::default()
    };
    let err = program.solve(&settings, None, &mut |_| {}).unwrap_err();
    assert!(err.to_string().contains("precision"), "{err}");
}

#[test]
fn single_precision_reaches_the_double_precision_optimum() {
    for (model, loss) in [
        (ModelKind::GatedRelu, LossKind::Squared),
        (ModelKind::GatedRelu, LossKind::Logistic),
    ] {
        let (s64, _) = solve(model, loss, Precision::F64);
        let (s32, obj32) = solve(model, loss, Precision::F32);
        assert_eq!(s64.status, Status::Converged, "{model:?} {loss:?} f64");
        assert_eq!(s32.status, Status::Converged, "{model:?} {loss:?} f32");
        // The reported objective is the f64 value of the returned point.
        assert!(rel_diff(s32.objective, obj32) < 1e-12, "{model:?} {loss:?}");
        assert!(s32.relative_gap() <= 1e-7, "{model:?} {loss:?}");
        // Both bounds are valid: each lies below the other solve's objective.
        assert!(s32.dual_bound <= s64.objective * (1.0 + 1e-12));
        assert!(s64.dual_bound <= s32.objective * (1.0 + 1e-12));
        assert!(
            rel_diff(s32.objective, s64.objective) < 2e-7,
            "{model:?} {loss:?}: {} vs {}",
            s32.objective,
            s64.objective
        );
    }
}
