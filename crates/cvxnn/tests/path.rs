//! lambda_max (with the cone constraints for ReLU) and the regularization path, on slices of the
//! bundled real data sets (kept small so that every test runs in seconds).

use std::path::Path;

use cvxnn::certificate::{lambda_max, relu_kkt_dual_bound};
use cvxnn::data::{read_table, Standardizer, Table};
use cvxnn::estimator::{design_matrix, PatternSource, SolverChoice, TrainConfig};
use cvxnn::loss::LossKind;
use cvxnn::network::Network;
use cvxnn::path::{regularization_path, LambdaGrid, PathConfig, PathReport};
use cvxnn::patterns::{sample_patterns, Masks};
use cvxnn::program::{ModelKind, TwoLayerProgram};
use cvxnn::solver::{SolverSettings, Status};
use cvxnn::Matrix;

/// The first `rows` rows of a bundled data set.
fn table(file: &str, rows: usize) -> Table {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../examples/data")
        .join(file);
    let mut t = read_table(&path, "y").expect("bundled data set");
    let idx: Vec<usize> = (0..rows.min(t.target.len())).collect();
    t.features = t.features.select_rows(&idx);
    t.target = t.target.select(&idx);
    t
}

/// Standardized design matrix with a bias column, targets for `loss` (squared: scaled to unit
/// standard deviation; logistic: the two labels as -1/+1), and `p` sampled patterns.
fn problem(file: &str, rows: usize, loss: LossKind, p: usize) -> (Matrix, Vec<f64>, Masks, Matrix) {
    let t = table(file, rows);
    let x = design_matrix(&t.features, &Standardizer::fit(&t.features), true).expect("design");
    let target = t.target.values().expect("numeric target");
    let y: Vec<f64> = match loss {
        LossKind::Squared => {
            let n = target.len() as f64;
            let mean = target.iter().sum::<f64>() / n;
            let sd = (target.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / n).sqrt();
            target.iter().map(|v| v / sd).collect()
        }
        LossKind::Logistic => {
            let lo = target.iter().cloned().fold(f64::INFINITY, f64::min);
            target
                .iter()
                .map(|&v| if v == lo { -1.0 } else { 1.0 })
                .collect()
        }
        LossKind::CrossEntropy => unreachable!("one-output tests"),
    };
    let sampled = sample_patterns(&x, p, 0).expect("patterns");
    (x, y, sampled.masks, sampled.gates)
}

fn norm(v: &[f64]) -> f64 {
    v.iter().map(|a| a * a).sum::<f64>().sqrt()
}

fn settings() -> SolverSettings {
    SolverSettings {
        tol: 1e-7,
        max_iter: 20_000,
        ..SolverSettings::default()
    }
}

/// At `lambda_max (1 + 1e-3)` the solution is the zero network, certified; at
/// `lambda_max (1 - 1e-2)` the objective is provably below the zero network's.
fn check_threshold(file: &str, rows: usize, loss: LossKind, model: ModelKind, p: usize) -> f64 {
    let (x, y, masks, gates) = problem(file, rows, loss, p);
    let gates = (model == ModelKind::GatedRelu).then_some(&gates);
    let h0 = loss.value(&vec![0.0; y.len()], &y, 1);
    let lmax =
        lambda_max(&TwoLayerProgram::new(&x, &y, &masks, loss, model, 1.0).unwrap()).unwrap();
    assert!(lmax > 0.0 && lmax.is_finite());

    let above = lmax * (1.0 + 1e-3);
    let prog = TwoLayerProgram::new(&x, &y, &masks, loss, model, above).unwrap();
    if model == ModelKind::Relu {
        // The KKT certificate (its own cone projections) proves the zero point optimal.
        let zero = vec![0.0; prog.n_vars()];
        let bound = relu_kkt_dual_bound(&prog, &zero).unwrap();
        assert!(
            bound >= h0 * (1.0 - 1e-12),
            "zero certified: {bound} vs {h0}"
        );
    }
    let sol = prog.solve(&settings(), None, &mut |_| {}).unwrap();
    assert_eq!(sol.status, Status::Converged, "{model} above lambda_max");
    // The solver stays at zero up to rounding (the augmented Lagrangian may leave groups of
    // norm ~1e-15, which the path avoids by not solving at or above lambda_max).
    let largest = sol.x.chunks(x.ncols()).map(norm).fold(0.0, f64::max);
    assert!(
        largest <= 1e-10,
        "{model}: largest group {largest} above lambda_max"
    );
    assert!((sol.objective - h0).abs() <= 1e-12 * h0);
    assert!(sol.dual_bound >= h0 * (1.0 - 1e-7), "certified zero");

    let below = lmax * (1.0 - 1e-2);
    let prog = TwoLayerProgram::new(&x, &y, &masks, loss, model, below).unwrap();
    let sol = prog.solve(&settings(), None, &mut |_| {}).unwrap();
    assert_eq!(sol.status, Status::Converged, "{model} below lambda_max");
    let net = Network::from_convex(model, x.ncols(), &sol.x, gates).unwrap();
    assert!(
        net.neurons() > 0,
        "{model}: non-zero network below lambda_max"
    );
    // A feasible point strictly below the zero network's objective: zero is not optimal.
    assert!(sol.violation <= 1e-7);
    assert!(
        sol.objective < h0 - (sol.objective - sol.dual_bound).max(1e-12 * h0),
        "{model}: objective {} vs zero network {h0}",
        sol.objective
    );
    lmax
}

#[test]
fn lambda_max_is_the_zero_threshold_relu_diabetes() {
    check_threshold("diabetes.csv", 150, LossKind::Squared, ModelKind::Relu, 16);
}

#[test]
fn lambda_max_is_the_zero_threshold_gated_diabetes() {
    check_threshold(
        "diabetes.csv",
        150,
        LossKind::Squared,
        ModelKind::GatedRelu,
        16,
    );
}

#[test]
fn lambda_max_is_the_zero_threshold_relu_breast_cancer_logistic() {
    check_threshold(
        "breast_cancer.csv",
        150,
        LossKind::Logistic,
        ModelKind::Relu,
        16,
    );
}

#[test]
fn lambda_max_is_the_zero_threshold_gated_breast_cancer_logistic() {
    check_threshold(
        "breast_cancer.csv",
        150,
        LossKind::Logistic,
        ModelKind::GatedRelu,
        16,
    );
}

#[test]
fn relu_lambda_max_is_below_the_unconstrained_formula() {
    // Same data and patterns: the gated value is max_i ||X^T D_i theta0||; the ReLU value
    // projects each of those on its pattern's cone, which cuts it where a constraint binds.
    let (x, y, masks, _) = problem("diabetes.csv", 150, LossKind::Squared, 16);
    let at = |model| {
        let prog = TwoLayerProgram::new(&x, &y, &masks, LossKind::Squared, model, 1.0).unwrap();
        lambda_max(&prog).unwrap()
    };
    let (relu, gated) = (at(ModelKind::Relu), at(ModelKind::GatedRelu));
    assert!(relu > 0.0);
    assert!(relu < gated * (1.0 - 1e-3), "relu {relu} vs gated {gated}");
}

fn path_config(model: ModelKind, patterns: usize) -> TrainConfig {
    TrainConfig {
        model,
        patterns: PatternSource::Sample(patterns),
        solver: SolverSettings {
            tol: 1e-6,
            max_iter: 20_000,
            ..SolverSettings::default()
        },
        solver_choice: SolverChoice::FirstOrder,
        ..TrainConfig::default()
    }
}

/// Optimal values are non-increasing as lambda decreases; each objective is within its own
/// gap of the optimum, so `obj[k+1] <= p*(lambda[k+1]) + gap[k+1] <= obj[k] + gap[k+1]`.
fn check_path(r: &PathReport, count: usize) {
    assert_eq!(r.rows.len(), count);
    assert_eq!(r.rows[0].neurons, 0, "zero network at lambda_max");
    assert_eq!(r.rows[0].lambda, r.lambda_max);
    for w in r.rows.windows(2) {
        assert!(w[1].lambda < w[0].lambda);
        let slack = w[1].gap.max(0.0) + 1e-12 * w[0].objective.abs();
        assert!(
            w[1].objective <= w[0].objective + slack,
            "objective rose from {} (lambda {}) to {} (lambda {})",
            w[0].objective,
            w[0].lambda,
            w[1].objective,
            w[1].lambda
        );
    }
    assert!(r.rows.last().unwrap().neurons > 0);
    assert!(r.rows.iter().all(|row| row.test.is_some()));
    let rec = &r.rows[r.recommended_index];
    assert_eq!(rec.lambda, r.recommended_lambda);
    let score = |row: &cvxnn::path::PathRow| cvxnn::path::selection_score(&row.validation).0;
    assert!(r.rows.iter().all(|row| score(row) <= score(rec)));
}

#[test]
fn gated_path_is_monotone_and_starts_empty() {
    let t = table("diabetes.csv", 200);
    let path = PathConfig {
        grid: LambdaGrid::FromMax {
            ratio: 1e-3,
            count: 8,
        },
        ..PathConfig::default()
    };
    let r = regularization_path(
        &t,
        &path_config(ModelKind::GatedRelu, 32),
        &path,
        &mut |_| {},
    )
    .unwrap();
    check_path(&r, 8);
    assert_eq!(r.selection, "validation r2");
}

#[test]
fn relu_path_warm_and_cold_agree() {
    let t = table("diabetes.csv", 120);
    let cfg = path_config(ModelKind::Relu, 12);
    let grid = LambdaGrid::FromMax {
        ratio: 1e-2,
        count: 5,
    };
    let warm = PathConfig {
        grid,
        ..PathConfig::default()
    };
    let cold = PathConfig {
        warm_start: false,
        ..warm.clone()
    };
    let a = regularization_path(&t, &cfg, &warm, &mut |_| {}).unwrap();
    let b = regularization_path(&t, &cfg, &cold, &mut |_| {}).unwrap();
    check_path(&a, 5);
    check_path(&b, 5);
    assert_eq!(a.lambda_max, b.lambda_max);
    // Both are certified to within their gaps of the same optima.
    for (p, q) in a.rows.iter().zip(&b.rows) {
        let slack = p.gap.max(0.0) + q.gap.max(0.0) + 1e-12 * p.objective.abs();
        assert!((p.objective - q.objective).abs() <= slack);
    }
}

#[test]
fn logistic_path_selects_by_accuracy() {
    let t = table("breast_cancer.csv", 200);
    let path = PathConfig {
        grid: LambdaGrid::FromMax {
            ratio: 1e-2,
            count: 5,
        },
        ..PathConfig::default()
    };
    let r = regularization_path(
        &t,
        &path_config(ModelKind::GatedRelu, 16),
        &path,
        &mut |_| {},
    )
    .unwrap();
    check_path(&r, 5);
    assert_eq!(r.selection, "validation accuracy");
    assert_eq!(r.loss, LossKind::Logistic);
}

#[test]
fn bad_grids_and_fractions_are_named() {
    for bad in [
        "1e-1:1e-5",
        "a:b:3",
        "-1:1e-3:5",
        "1e-1:1e-5:0",
        "1e-3:1e-1:5",
        "1:1:4",
    ] {
        let e = bad.parse::<LambdaGrid>().unwrap_err().to_string();
        assert!(e.contains("lambdas"), "{bad}: {e}");
    }
    let g: LambdaGrid = "1e-1:1e-5:5".parse().unwrap();
    let l = g.lambdas(f64::NAN).unwrap();
    assert_eq!(l.len(), 5);
    assert_eq!((l[0], l[4]), (1e-1, 1e-5));
    assert!((l[2] - 1e-3).abs() < 1e-15);
    let t = table("diabetes.csv", 50);
    let path = PathConfig {
        validation_fraction: 0.0,
        ..PathConfig::default()
    };
    let e = regularization_path(
        &t,
        &path_config(ModelKind::GatedRelu, 8),
        &path,
        &mut |_| {},
    )
    .unwrap_err()
    .to_string();
    assert!(e.contains("validation-fraction"), "{e}");
}
