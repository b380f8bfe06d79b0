//! Multiclass training end to end (`estimator::train`) on digits (10 classes, 64 features) and
//! iris (3 classes): the solve certifies its gap, the rebuilt network attains the convex
//! objective, the exported raw-feature network predicts what the design-space network predicts,
//! and the test accuracy is at least that of multinomial logistic regression fitted here, on
//! the same split and the same preprocessing (an independent reference).

use std::path::PathBuf;

use cvxnn::data::{read_table, train_test_split, Table, Task};
use cvxnn::estimator::{design_matrix, train, PatternSource, TrainConfig};
use cvxnn::linalg::Matrix;
use cvxnn::program::{ModelKind, OutputMode};
use cvxnn::solver::{SolverSettings, Status};

fn table(file: &str) -> Table {
    let path =
        PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/../../examples/data/")).join(file);
    read_table(&path, "y").unwrap()
}

/// Multinomial logistic regression `min (1/n) sum_j CE(W^T x_j, y_j) + (mu/2) ||W||^2` by
/// accelerated gradient descent (step `1/L`, `L = ||X||_F^2 / (2n) + mu`); returns `W` (`d x c`,
/// column-major).
fn logistic_regression(x: &Matrix, classes: &[usize], c: usize, mu: f64, iters: usize) -> Vec<f64> {
    let (n, d) = (x.nrows(), x.ncols());
    let lip = x.as_slice().iter().map(|v| v * v).sum::<f64>() / (2.0 * n as f64) + mu;
    let step = 1.0 / lip;
    let mut w = vec![0.0; d * c];
    let mut v = w.clone();
    let mut t = 1.0f64;
    for _ in 0..iters {
        // Gradient at v.
        let mut g = vec![0.0; d * c];
        for (j, &class) in classes.iter().enumerate() {
            let scores: Vec<f64> = (0..c)
                .map(|k| (0..d).map(|a| x.get(j, a) * v[k * d + a]).sum())
                .collect();
            let m = scores.iter().fold(f64::NEG_INFINITY, |a, &b| a.max(b));
            let z: f64 = scores.iter().map(|s| (s - m).exp()).sum();
            for k in 0..c {
                let p = (scores[k] - m).exp() / z - f64::from(u8::from(class == k));
                for a in 0..d {
                    g[k * d + a] += p * x.get(j, a) / n as f64;
                }
            }
        }
        let next: Vec<f64> = v
            .iter()
            .zip(&g)
            .map(|(vi, gi)| vi - step * (gi + mu * vi))
            .collect();
        let tn = 0.5 * (1.0 + (1.0 + 4.0 * t * t).sqrt());
        v = next
            .iter()
            .zip(&w)
            .map(|(a, b)| a + (t - 1.0) / tn * (a - b))
            .collect();
        w = next;
        t = tn;
    }
    w
}

fn accuracy(x: &Matrix, w: &[f64], classes: &[usize], c: usize) -> f64 {
    let d = x.ncols();
    let correct = (0..x.nrows())
        .filter(|&j| {
            let score = |k: usize| (0..d).map(|a| x.get(j, a) * w[k * d + a]).sum::<f64>();
            let best = (0..c)
                .max_by(|&a, &b| score(a).total_cmp(&score(b)))
                .unwrap();
            best == classes[j]
        })
        .count();
    correct as f64 / x.nrows() as f64
}

/// Trains the convex multiclass model and the reference; returns (cvxnn, reference) test
/// accuracy after checking the certificate and the rebuilt networks.
fn compare(file: &str, patterns: usize, lambda: f64, mode: OutputMode, seed: u64) -> (f64, f64) {
    let t = table(file);
    let cfg = TrainConfig {
        seed,
        task: Some(Task::Multiclass),
        model: ModelKind::GatedRelu,
        lambda,
        patterns: PatternSource::Sample(patterns),
        solver: SolverSettings {
            tol: 1e-6,
            ..SolverSettings::default()
        },
        outputs: mode,
        ..TrainConfig::default()
    };
    let out = train(&t, &cfg, false, &mut |_| {}).unwrap();
    let r = &out.report;
    assert_eq!(r.status, Status::Converged, "{file}");
    assert!(r.relative_gap <= 1e-6, "{file}: gap {}", r.relative_gap);
    assert!(
        (r.network_objective - r.objective).abs() <= 1e-9 * r.objective,
        "{file}: network {} vs convex {}",
        r.network_objective,
        r.objective
    );
    // The same split and preprocessing for the reference.
    let n = t.features.nrows();
    let (train_idx, test_idx) = train_test_split(n, cfg.test_fraction, cfg.seed).unwrap();
    let classes: Vec<usize> = t
        .target
        .values()
        .unwrap()
        .iter()
        .map(|&v| v as usize)
        .collect();
    let c = r.outputs;
    let std = &out.model.meta.standardizer;
    let design = |idx: &[usize]| design_matrix(&t.features.select_rows(idx), std, true).unwrap();
    let (xtr, xte) = (design(&train_idx), design(&test_idx));
    // Raw-feature export == design-space network, exactly (up to rounding), on the test rows.
    let raw = out
        .model
        .decision_function(&t.features.select_rows(&test_idx))
        .unwrap();
    let net = out.network.forward(&xte).unwrap();
    let scale = net.iter().fold(0.0f64, |a, v| a.max(v.abs()));
    for (a, b) in raw.iter().zip(&net) {
        assert!((a - b).abs() <= 1e-10 * scale, "{a} vs {b}");
    }
    let pick = |idx: &[usize]| idx.iter().map(|&i| classes[i]).collect::<Vec<_>>();
    let w = logistic_regression(&xtr, &pick(&train_idx), c, 1e-4, 1000);
    let reference = accuracy(&xte, &w, &pick(&test_idx), c);
    let ours = r.test.as_ref().and_then(|m| m.accuracy).unwrap();
    eprintln!("{file} {mode} seed {seed}: cvxnn {ours}, logistic regression {reference}");
    (ours, reference)
}

#[test]
fn digits_beats_multinomial_logistic_regression() {
    let (ours, reference) = compare("digits.csv", 100, 1e-3, OutputMode::Separate, 0);
    assert!(
        ours >= reference,
        "cvxnn {ours} vs logistic regression {reference}"
    );
    assert!(ours >= 0.95, "{ours}");
}

/// Iris's classes are almost linearly separable and a test split is 30 samples: multinomial
/// logistic regression (a linear boundary) is the strongest reference there. Measured over 8
/// splits: the network is ahead on 2, level on 1 and one sample (1/30) behind on 5 (mean 0.967
/// against 0.971); it must never be further behind than one sample.
#[test]
fn iris_is_within_one_sample_of_multinomial_logistic_regression() {
    for (mode, seed) in [
        (OutputMode::Separate, 0),
        (OutputMode::Separate, 1),
        (OutputMode::Separate, 4),
        (OutputMode::Shared, 0),
    ] {
        let (ours, reference) = compare("iris.csv", 50, 1e-3, mode, seed);
        assert!(
            ours >= reference - 1.0 / 30.0 - 1e-12,
            "{mode} seed {seed}: cvxnn {ours} vs logistic regression {reference}"
        );
    }
}
