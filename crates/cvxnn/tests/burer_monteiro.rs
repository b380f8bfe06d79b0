//! The shared-neuron vector-output model in Burer-Monteiro form (DESIGN section 1, "Multiple
//! outputs") on iris (3 classes).

mod common;

use common::iris_one_hot;
use cvxnn::linalg::Matrix;
use cvxnn::loss::LossKind;
use cvxnn::network::Network;
use cvxnn::patterns::sample_patterns;
use cvxnn::program::{
    solve_shared_relu_bm, GapKind, ModelKind, OutputMode, SharedReluProgram, TwoLayerProgram,
};
use cvxnn::solver::{SolverSettings, Status};

const CLASSES: usize = 3;

fn settings(tol: f64) -> SolverSettings {
    SolverSettings {
        tol,
        max_iter: 200_000,
        ..SolverSettings::default()
    }
}

/// The rebuilt network attains the factored objective (up to the constraint violation).
fn check_rebuild(
    bm: &cvxnn::program::BmSolution,
    net: &Network,
    x: &Matrix,
    y: &[f64],
    loss: LossKind,
    lambda: f64,
) {
    let obj = net.objective(x, y, loss, lambda).unwrap();
    assert!(
        (obj - bm.objective).abs() <= 1e-9 * bm.objective + 10.0 * bm.violation,
        "network {obj} vs factored {}",
        bm.objective
    );
    assert_eq!(net.outputs, CLASSES);
    assert!(net.neurons() <= bm.factors.u.ncols());
}

#[test]
fn gated_bm_reaches_the_nuclear_norm_optimum() {
    let (x, y) = iris_one_hot();
    let pats = sample_patterns(&x, 16, 2).unwrap();
    let lambda = 1e-3;
    for loss in [LossKind::Squared, LossKind::CrossEntropy] {
        let exact = TwoLayerProgram::with_outputs(
            &x,
            &y,
            CLASSES,
            OutputMode::Shared,
            &pats.masks,
            loss,
            ModelKind::GatedRelu,
            lambda,
        )
        .unwrap();
        let ex = exact.solve(&settings(1e-7), None, &mut |_| {}).unwrap();
        assert_eq!(ex.status, Status::Converged);
        let prog = SharedReluProgram::new(
            &x,
            &y,
            CLASSES,
            &pats.masks,
            loss,
            ModelKind::GatedRelu,
            lambda,
            None,
        )
        .unwrap();
        assert_eq!(prog.rank(), CLASSES);
        let bm = prog.solve(&settings(1e-7), 0, None, &mut |_| {}).unwrap();
        assert_eq!(bm.status, Status::Converged, "{loss}");
        assert_eq!(bm.bound.kind, GapKind::Exact);
        // Two independent solvers agree on the optimum, and each one's lower bound is below
        // the other's objective.
        let rel = (bm.objective - ex.objective).abs() / ex.objective;
        assert!(
            rel <= 1e-5,
            "{loss}: BM {} vs nuclear {}",
            bm.objective,
            ex.objective
        );
        assert!(bm.bound.lower_bound <= ex.objective);
        assert!(ex.dual_bound <= bm.objective);
        assert!(bm.relative_gap() <= 1e-5, "{loss}: {}", bm.relative_gap());
        // ||U A^T||_* <= (||U||^2 + ||A||^2) / 2: the convex objective of the product is never
        // above the factored one.
        let z = prog.convex_variables(&bm.factors).unwrap();
        assert!(exact.objective(&z).unwrap() <= bm.objective * (1.0 + 1e-12));
        assert!(bm.network(None).is_err());
        let net = bm.network(Some(&pats.gates)).unwrap();
        check_rebuild(&bm, &net, &x, &y, loss, lambda);
    }
}

#[test]
fn relu_bm_is_feasible_rebuilds_and_is_bounded() {
    let (x, y) = iris_one_hot();
    let n = x.nrows();
    let pats = sample_patterns(&x, 16, 2).unwrap();
    let (loss, lambda) = (LossKind::Squared, 1e-2);
    let tol = 1e-6;
    let bm = solve_shared_relu_bm(
        &x,
        &y,
        CLASSES,
        &pats.masks,
        loss,
        lambda,
        &settings(tol),
        None,
        0,
        &mut |_| {},
    )
    .unwrap();
    assert_eq!(bm.status, Status::Converged);
    assert_eq!(bm.bound.kind, GapKind::Bound);
    assert!(bm.violation <= tol, "{}", bm.violation);
    assert!(bm.bound.lower_bound < bm.objective);
    let net = bm.network(None).unwrap();
    check_rebuild(&bm, &net, &x, &y, loss, lambda);
    // Any per-output solution over the same patterns is a feasible shared network (each neuron
    // feeds one output): the shared optimum is below it, and so is the lower bound.
    let separate = TwoLayerProgram::with_outputs(
        &x,
        &y,
        CLASSES,
        OutputMode::Separate,
        &pats.masks,
        loss,
        ModelKind::Relu,
        lambda,
    )
    .unwrap()
    .solve(&settings(tol), None, &mut |_| {})
    .unwrap();
    assert!(
        bm.objective <= separate.objective * (1.0 + tol),
        "shared {} vs separate {}",
        bm.objective,
        separate.objective
    );
    assert!(bm.bound.lower_bound <= separate.objective);
    // More feasible networks: none, and the BM network with its hidden layer scaled (each
    // neuron stays in its cone).
    let zero = loss.value(&vec![0.0; n * CLASSES], &y, CLASSES);
    assert!(bm.bound.lower_bound <= zero);
    let prog = SharedReluProgram::new(
        &x,
        &y,
        CLASSES,
        &pats.masks,
        loss,
        ModelKind::Relu,
        lambda,
        None,
    )
    .unwrap();
    for t in [0.5, 1.5] {
        let mut f = bm.factors.clone();
        f.u.as_mut_slice().iter_mut().for_each(|v| *v *= t);
        let (obj, violation, _) = prog.evaluate(&f).unwrap();
        assert!((violation - bm.violation).abs() <= 1e-12);
        assert!(bm.bound.lower_bound <= obj, "{t}");
    }
    // The dual-norm estimate bounds the sup over each cone: it is at least the value at every
    // neuron, ||Theta^T (X u)_+|| / ||u||, with Theta the loss gradient at the point.
    let (obj, _, bound) = prog.evaluate(&bm.factors).unwrap();
    assert!((obj - bm.objective).abs() <= 1e-12 * obj);
    assert!(bound.lower_bound <= bm.bound.lower_bound);
    let z = net.forward(&x).unwrap();
    let mut theta = vec![0.0; n * CLASSES];
    loss.grad(&z, &y, CLASSES, &mut theta);
    for j in 0..net.neurons() {
        let u = net.hidden.col(j);
        let act: Vec<f64> = x.matvec(u).iter().map(|v| v.max(0.0)).collect();
        let v: Vec<f64> = (0..CLASSES)
            .map(|k| {
                theta[k * n..(k + 1) * n]
                    .iter()
                    .zip(&act)
                    .map(|(a, b)| a * b)
                    .sum()
            })
            .collect();
        let ratio = v.iter().map(|a| a * a).sum::<f64>().sqrt()
            / u.iter().map(|a| a * a).sum::<f64>().sqrt();
        assert!(
            ratio <= bound.dual_norm * (1.0 + 1e-6),
            "{ratio} > {}",
            bound.dual_norm
        );
    }
    // The KKT-point relative bound of Sahiner et al. is reported, not used.
    assert!(bm.bound.stationary_relative_bound >= 0.0);
}

#[test]
fn relu_bm_is_reproducible() {
    let (x, y) = iris_one_hot();
    let pats = sample_patterns(&x, 8, 3).unwrap();
    let st = SolverSettings {
        tol: 1e-6,
        max_iter: 2_000,
        ..SolverSettings::default()
    };
    let run = |seed| {
        solve_shared_relu_bm(
            &x,
            &y,
            CLASSES,
            &pats.masks,
            LossKind::CrossEntropy,
            1e-2,
            &st,
            Some(2),
            seed,
            &mut |_| {},
        )
        .unwrap()
    };
    let bits = |m: &Matrix| m.as_slice().iter().map(|v| v.to_bits()).collect::<Vec<_>>();
    let (a, b, c) = (run(7), run(7), run(8));
    assert_eq!(bits(&a.factors.u), bits(&b.factors.u));
    assert_eq!(bits(&a.factors.a), bits(&b.factors.a));
    assert_eq!(a.objective.to_bits(), b.objective.to_bits());
    assert_ne!(bits(&a.factors.u), bits(&c.factors.u));
    for s in [&a, &c] {
        assert!(s.bound.lower_bound <= s.objective);
        assert!(s.objective < 3f64.ln());
    }
}

#[test]
fn arguments_are_checked() {
    let (x, y) = iris_one_hot();
    let pats = sample_patterns(&x, 4, 0).unwrap();
    let m = &pats.masks;
    let new = |rank| {
        SharedReluProgram::new(
            &x,
            &y,
            CLASSES,
            m,
            LossKind::Squared,
            ModelKind::Relu,
            1e-2,
            rank,
        )
    };
    assert!(new(Some(0)).is_err());
    assert!(SharedReluProgram::new(
        &x,
        &y[1..],
        CLASSES,
        m,
        LossKind::Squared,
        ModelKind::Relu,
        1e-2,
        None
    )
    .is_err());
    let prog = new(Some(2)).unwrap();
    // Warm factors of the wrong shape.
    let wrong = cvxnn::program::BmFactors {
        u: Matrix::zeros(x.ncols(), 3),
        a: Matrix::zeros(CLASSES, 3),
    };
    assert!(prog
        .solve(&settings(1e-6), 0, Some(&wrong), &mut |_| {})
        .is_err());
    assert!(prog.evaluate(&wrong).is_err());
    // The convex program builder points to the factored solver.
    let err = TwoLayerProgram::with_outputs(
        &x,
        &y,
        CLASSES,
        OutputMode::Shared,
        m,
        LossKind::Squared,
        ModelKind::Relu,
        1e-3,
    )
    .unwrap_err();
    assert!(err.to_string().contains("SharedReluProgram"), "{err}");
}
