//! End-to-end training on the bundled data sets through `estimator::train`: convergence with a
//! certified gap, bit-identical reruns with the same seed, and an exported raw-feature network
//! that predicts exactly what the design-space network predicts.

mod common;

use std::path::PathBuf;

use common::max_rel_diff;
use cvxnn::data::{read_table, Table};
use cvxnn::estimator::{design_matrix, train, PatternSource, TrainConfig, TrainOutput};
use cvxnn::program::ModelKind;
use cvxnn::solver::{SolverSettings, Status};

fn table(file: &str) -> Table {
    let path =
        PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/../../examples/data/")).join(file);
    read_table(&path, "y").unwrap()
}

fn config(model: ModelKind, patterns: usize, lambda: f64, max_iter: usize) -> TrainConfig {
    TrainConfig {
        model,
        lambda,
        patterns: PatternSource::Sample(patterns),
        seed: 0,
        solver: SolverSettings {
            tol: 1e-6,
            max_iter,
            ..SolverSettings::default()
        },
        ..TrainConfig::default()
    }
}

fn bits(v: &[f64]) -> Vec<u64> {
    v.iter().map(|a| a.to_bits()).collect()
}

fn train_once(t: &Table, cfg: &TrainConfig) -> TrainOutput {
    train(t, cfg, cfg.model == ModelKind::GatedRelu, &mut |_| {}).unwrap()
}

fn print(file: &str, out: &TrainOutput) {
    let r = &out.report;
    eprintln!(
        "{file} {} P={} lambda={:e}: status={} objective={:.10e} network_objective={:.10e} \
         gap={:.2e} rel_gap={:.2e} violation={:.1e} iters={} seconds={:.2} neurons={} \
         n_train={} n_test={} d={} train={:?} test={:?} decomposed_objective={:?}",
        r.model,
        r.patterns,
        r.lambda,
        r.status,
        r.objective,
        r.network_objective,
        r.gap,
        r.relative_gap,
        r.violation,
        r.iterations,
        r.seconds,
        r.neurons,
        r.n_train,
        r.n_test,
        r.d,
        r.train,
        r.test,
        r.decomposed_objective,
    );
}

/// The exported raw-feature network computes the same function as the design-space network
/// (times the target scale, which the exported output layer carries), and converting it back
/// gives the same function again.
fn check_export(t: &Table, out: &TrainOutput) {
    let meta = &out.model.meta;
    let design = design_matrix(&t.features, &meta.standardizer, meta.bias).unwrap();
    let a: Vec<f64> = out
        .network
        .forward(&design)
        .unwrap()
        .iter()
        .map(|v| v * meta.target_scale)
        .collect();
    let b = out.model.network.forward(&t.features).unwrap();
    let diff = max_rel_diff(&a, &b);
    eprintln!(
        "  raw export vs design network: max relative difference {diff:.2e} over {} rows",
        a.len()
    );
    assert!(diff <= 1e-10, "raw network predictions differ by {diff:e}");
    let back = out
        .model
        .network
        .dense()
        .expect("a dense network")
        .to_network(&meta.standardizer.mean, &meta.standardizer.scale, meta.bias)
        .unwrap();
    assert!(max_rel_diff(&back.forward(&design).unwrap(), &a) <= 1e-10);
}

/// Trains to `tol = 1e-6` and checks the certificate and the export.
fn converges(file: &str, model: ModelKind, patterns: usize, lambda: f64) -> TrainOutput {
    let t = table(file);
    let out = train_once(&t, &config(model, patterns, lambda, 200_000));
    print(file, &out);
    let r = &out.report;
    assert_eq!(
        r.status,
        Status::Converged,
        "{file} {model} lambda={lambda}"
    );
    assert!(r.relative_gap <= 1e-6, "relative gap {}", r.relative_gap);
    assert!(r.dual_bound <= r.objective);
    assert!(r.neurons >= 1 && r.neurons <= r.n_train + 1);
    assert!(r.patterns <= patterns);
    assert!(
        (r.network_objective - r.objective).abs() <= 1e-6 * r.objective,
        "network objective {} vs convex {}",
        r.network_objective,
        r.objective
    );
    check_export(&t, &out);
    out
}

/// Two runs with the same seed give the same bits (whether or not they converge within
/// `max_iter`), and the export of each is exact.
fn deterministic(file: &str, model: ModelKind, patterns: usize, lambda: f64, max_iter: usize) {
    let t = table(file);
    let cfg = config(model, patterns, lambda, max_iter);
    let out = train_once(&t, &cfg);
    let again = train_once(&t, &cfg);
    print(file, &out);
    assert_eq!(
        again.report.objective.to_bits(),
        out.report.objective.to_bits()
    );
    assert_eq!(
        again.report.dual_bound.to_bits(),
        out.report.dual_bound.to_bits()
    );
    assert_eq!(again.report.iterations, out.report.iterations);
    let (m1, m2) = (
        out.model.network.dense().expect("dense"),
        again.model.network.dense().expect("dense"),
    );
    assert_eq!(bits(m2.w1.as_slice()), bits(m1.w1.as_slice()));
    assert_eq!(bits(&m2.b1), bits(&m1.b1));
    assert_eq!(bits(&m2.w2), bits(&m1.w2));
    assert_eq!(m2.gates.is_some(), m1.gates.is_some());
    if let (Some((g1, c1)), Some((g2, c2))) = (&m1.gates, &m2.gates) {
        assert_eq!(bits(g2.as_slice()), bits(g1.as_slice()));
        assert_eq!(bits(c2), bits(c1));
    }
    assert_eq!(
        bits(again.network.hidden.as_slice()),
        bits(out.network.hidden.as_slice())
    );
    assert_eq!(bits(&again.network.alpha), bits(&out.network.alpha));
    check_export(&t, &out);
}

#[test]
fn diabetes_gated_relu_converges() {
    let out = converges("diabetes.csv", ModelKind::GatedRelu, 100, 1e-2);
    // The cone decomposition cannot beat the gated optimum.
    let dec = out
        .report
        .decomposed_objective
        .expect("decomposition was asked for");
    assert!(dec >= out.report.objective * (1.0 - 1e-9));
}

#[test]
fn breast_cancer_gated_relu_converges() {
    let out = converges("breast_cancer.csv", ModelKind::GatedRelu, 100, 1e-2);
    let dec = out
        .report
        .decomposed_objective
        .expect("decomposition was asked for");
    assert!(dec >= out.report.objective * (1.0 - 1e-9));
}

#[test]
fn diabetes_relu_converges() {
    converges("diabetes.csv", ModelKind::Relu, 30, 1e-2);
}

#[test]
#[ignore = "AL + polish: stops at max_iter 200k (105 s) with relative gap 8.0e-6, violation 1.9e-7 (polish not certified)"]
fn diabetes_relu_small_lambda_converges() {
    converges("diabetes.csv", ModelKind::Relu, 30, 1e-3);
}

#[test]
#[ignore = "AL + polish (logistic): stops at max_iter 200k (145 s) with relative gap 2.6e-6, violation 4e-10 (polish not certified)"]
fn breast_cancer_relu_converges() {
    converges("breast_cancer.csv", ModelKind::Relu, 30, 1e-2);
}

#[test]
fn gated_relu_runs_are_bit_identical() {
    deterministic("diabetes.csv", ModelKind::GatedRelu, 100, 1e-2, 3000);
    deterministic(
        "breast_cancer.csv",
        ModelKind::GatedRelu,
        100,
        1e-2,
        200_000,
    );
}

#[test]
fn relu_runs_are_bit_identical() {
    deterministic("diabetes.csv", ModelKind::Relu, 30, 1e-2, 3000);
    deterministic("breast_cancer.csv", ModelKind::Relu, 30, 1e-2, 3000);
}
