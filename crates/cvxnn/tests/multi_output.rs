//! Programs with several outputs (DESIGN section 1, "Multiple outputs") on iris (3 classes):
//! the per-output program with squared loss is the sum of its one-output programs (solved
//! separately: an independent check of the joint solve); every solve certifies its gap; the
//! rebuilt network (PyTorch's `Linear(m, c)` output layer) predicts what the convex variables
//! predict and attains the convex objective; the shared-neuron (nuclear-norm) program is never
//! above the per-output one over the same gates.

mod common;

use common::iris_one_hot;
use cvxnn::linalg::Matrix;
use cvxnn::loss::LossKind;
use cvxnn::network::{Network, RawNetwork};
use cvxnn::patterns::sample_patterns;
use cvxnn::program::{ModelKind, OutputMode, TwoLayerProgram};
use cvxnn::solver::{Solution, SolverSettings, Status};

const CLASSES: usize = 3;

fn settings(tol: f64) -> SolverSettings {
    SolverSettings {
        tol,
        max_iter: 200_000,
        ..SolverSettings::default()
    }
}

/// Solves to `tol` and checks that the gap is certified.
fn solve(prog: &TwoLayerProgram<'_>, tol: f64) -> Solution {
    let sol = prog.solve(&settings(tol), None, &mut |_| {}).unwrap();
    let what = format!("{} {} {}", prog.model(), prog.output_mode(), prog.loss());
    assert_eq!(sol.status, Status::Converged, "{what}");
    assert!(sol.relative_gap() <= tol, "{what}: {}", sol.relative_gap());
    sol
}

/// The rebuilt network predicts the convex predictions and attains the convex objective
/// (up to the constraint violation for ReLU), also after folding into raw features.
fn check_rebuild(prog: &TwoLayerProgram<'_>, sol: &Solution, gates: Option<&Matrix>) -> Network {
    let (x, c) = (prog.x(), prog.outputs());
    let net = Network::from_convex_outputs(
        prog.model(),
        prog.output_mode(),
        x.ncols(),
        c,
        &sol.x,
        gates,
    )
    .unwrap();
    assert_eq!(net.outputs, c);
    let z = prog.predict(&sol.x).unwrap();
    let f = net.forward(x).unwrap();
    let scale = z.iter().fold(0.0f64, |a, v| a.max(v.abs()));
    let tol = 1e-9 + 10.0 * sol.violation;
    for (a, b) in z.iter().zip(&f) {
        assert!((a - b).abs() <= tol * scale, "{a} vs {b}");
    }
    let obj = net
        .objective(x, prog.y(), prog.loss(), prog.lambda())
        .unwrap();
    let convex = prog.objective(&sol.x).unwrap();
    assert!(
        (obj - convex).abs() <= 1e-9 * convex + 10.0 * sol.violation,
        "network {obj} vs convex {convex}"
    );
    // Identity preprocessing: the raw network is the same function; its file round-trips with
    // a (c, m) output weight.
    let d = x.ncols() - 1;
    let raw = RawNetwork::from_network(&net, &vec![0.0; d], &vec![1.0; d], true).unwrap();
    let dir = std::env::temp_dir().join(format!(
        "cvxnn-multi-{}-{}",
        std::process::id(),
        prog.model()
    ));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join(format!(
        "{}-{}.safetensors",
        prog.output_mode(),
        prog.loss()
    ));
    raw.save(&file).unwrap();
    let back = RawNetwork::load(&file).unwrap();
    assert_eq!(back, raw);
    std::fs::remove_file(&file).ok();
    net
}

#[test]
fn separate_squared_is_the_sum_of_one_output_programs() {
    let (x, y) = iris_one_hot();
    let n = x.nrows();
    let pats = sample_patterns(&x, 16, 0).unwrap();
    for model in [ModelKind::GatedRelu, ModelKind::Relu] {
        let lambda = 1e-2;
        let tol = 1e-6;
        let prog = TwoLayerProgram::with_outputs(
            &x,
            &y,
            CLASSES,
            OutputMode::Separate,
            &pats.masks,
            LossKind::Squared,
            model,
            lambda,
        )
        .unwrap();
        let joint = solve(&prog, tol);
        let mut sum = 0.0;
        for k in 0..CLASSES {
            let yk = &y[k * n..(k + 1) * n];
            let one = TwoLayerProgram::new(&x, yk, &pats.masks, LossKind::Squared, model, lambda)
                .unwrap();
            sum += solve(&one, tol).objective;
        }
        let rel = (joint.objective - sum).abs() / sum;
        assert!(
            rel <= 3.0 * tol,
            "{model}: joint {} vs sum {sum}",
            joint.objective
        );
        check_rebuild(&prog, &joint, Some(&pats.gates));
    }
}

#[test]
fn cross_entropy_certifies_and_rebuilds() {
    let (x, y) = iris_one_hot();
    let pats = sample_patterns(&x, 16, 1).unwrap();
    for model in [ModelKind::GatedRelu, ModelKind::Relu] {
        let prog = TwoLayerProgram::with_outputs(
            &x,
            &y,
            CLASSES,
            OutputMode::Separate,
            &pats.masks,
            LossKind::CrossEntropy,
            model,
            1e-2,
        )
        .unwrap();
        // The augmented Lagrangian alone (no Newton polish across coupled outputs) certifies
        // more slowly than the polished one-output solves.
        let tol = if model == ModelKind::Relu { 1e-4 } else { 1e-6 };
        let sol = solve(&prog, tol);
        // The dual bound is a bound: below the objective, and the zero network's value log 3
        // is above the optimum.
        assert!(sol.dual_bound <= sol.objective);
        assert!(sol.objective < 3f64.ln());
        let net = check_rebuild(&prog, &sol, Some(&pats.gates));
        // Every neuron feeds exactly one output in the per-output model.
        for j in 0..net.neurons() {
            let nz = net.output_weights(j).iter().filter(|&&a| a != 0.0).count();
            assert_eq!(nz, 1);
        }
        // A fitted classifier: the argmax of the scores recovers most training labels.
        let z = prog.predict(&sol.x).unwrap();
        let n = x.nrows();
        let correct = (0..n)
            .filter(|&j| {
                let best = (0..CLASSES)
                    .max_by(|&a, &b| z[a * n + j].total_cmp(&z[b * n + j]))
                    .unwrap();
                y[best * n + j] == 1.0
            })
            .count();
        assert!(correct as f64 >= 0.95 * n as f64, "{correct} of {n}");
    }
}

#[test]
fn shared_gated_nuclear_norm_certifies_and_rebuilds_by_svd() {
    let (x, y) = iris_one_hot();
    let pats = sample_patterns(&x, 16, 2).unwrap();
    for loss in [LossKind::Squared, LossKind::CrossEntropy] {
        let lambda = 1e-3;
        let program = |mode| {
            TwoLayerProgram::with_outputs(
                &x,
                &y,
                CLASSES,
                mode,
                &pats.masks,
                loss,
                ModelKind::GatedRelu,
                lambda,
            )
            .unwrap()
        };
        let prog = program(OutputMode::Shared);
        let shared = solve(&prog, 1e-6);
        let net = check_rebuild(&prog, &shared, Some(&pats.gates));
        // The nuclear norm of each block is the sum of its neurons' ||u|| ||alpha||.
        let mut weight = 0.0;
        for j in 0..net.neurons() {
            let u = net.hidden.col(j);
            let a = net.output_weights(j);
            let nu = u.iter().map(|v| v * v).sum::<f64>().sqrt();
            let na = a.iter().map(|v| v * v).sum::<f64>().sqrt();
            weight += nu * na;
        }
        let penalty = prog.penalty_value(&shared.x) / lambda;
        assert!(
            (weight - penalty).abs() <= 1e-9 * penalty,
            "{weight} vs {penalty}"
        );
        // ||Z||_* <= sum_k ||z_k||: sharing neurons can only lower the optimum.
        let separate = solve(&program(OutputMode::Separate), 1e-6);
        assert!(
            shared.objective <= separate.objective + 2e-6 * separate.objective,
            "{loss}: shared {} vs separate {}",
            shared.objective,
            separate.objective
        );
        assert!(shared.dual_bound <= separate.objective);
    }
}

#[test]
fn shapes_and_modes_are_checked() {
    let (x, y) = iris_one_hot();
    let pats = sample_patterns(&x, 5, 0).unwrap();
    let m = &pats.masks;
    // Targets that do not fill n x c.
    assert!(TwoLayerProgram::with_outputs(
        &x,
        &y[..y.len() - 1],
        CLASSES,
        OutputMode::Separate,
        m,
        LossKind::Squared,
        ModelKind::GatedRelu,
        1e-3
    )
    .is_err());
    // Shared ReLU is not this convex program.
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
    assert!(err.to_string().contains("outputs"), "{err}");
    // Cross-entropy needs one-hot rows and at least two outputs.
    let n = x.nrows();
    assert!(TwoLayerProgram::with_outputs(
        &x,
        &y[..n],
        1,
        OutputMode::Separate,
        m,
        LossKind::CrossEntropy,
        ModelKind::GatedRelu,
        1e-3
    )
    .is_err());
}
