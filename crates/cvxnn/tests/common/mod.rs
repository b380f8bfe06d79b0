//! Helpers shared by the integration tests: a tiny seeded generator (no extra dependency),
//! small synthetic problems, and comparisons.
#![allow(dead_code)]

use cvxnn::linalg::Matrix;
use cvxnn::loss::LossKind;

/// SplitMix64: small, seeded, deterministic on every platform.
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Self {
        Rng(seed ^ 0x9E37_79B9_7F4A_7C15)
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in `[0, 1)`.
    pub fn uniform(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }

    /// Standard normal (Box-Muller).
    pub fn normal(&mut self) -> f64 {
        let u1 = 1.0 - self.uniform(); // (0, 1]
        let u2 = self.uniform();
        (-2.0 * u1.ln()).sqrt() * (2.0 * std::f64::consts::PI * u2).cos()
    }
}

/// A small synthetic problem: `n x d` design matrix (`d - 1` Gaussian features, then a ones
/// column) and targets for `loss` (a smooth non-linear target plus noise; its sign for logistic).
pub fn problem(n: usize, d: usize, loss: LossKind, seed: u64) -> (Matrix, Vec<f64>) {
    assert!(d >= 2);
    let mut rng = Rng::new(seed);
    let mut rows = Vec::with_capacity(n);
    let mut y = Vec::with_capacity(n);
    for _ in 0..n {
        let mut r: Vec<f64> = (0..d - 1).map(|_| rng.normal()).collect();
        let s: f64 = r
            .iter()
            .enumerate()
            .map(|(k, v)| v * (1.0 + 0.5 * k as f64))
            .sum();
        let target = (1.3 * s).sin() + 0.5 * r[0].abs() - 0.3 + 0.1 * rng.normal();
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
    (Matrix::from_rows(&rows, d).expect("rectangular rows"), y)
}

/// Iris (3 classes) as the multi-output programs take it: the z-scored design matrix with a bias
/// column, and one-hot targets (`n x 3`, column-major).
pub fn iris_one_hot() -> (Matrix, Vec<f64>) {
    let path = std::path::PathBuf::from(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../examples/data/iris.csv"
    ));
    let t = cvxnn::data::read_table(&path, "y").expect("bundled iris");
    let std = cvxnn::data::Standardizer::fit(&t.features);
    let x = cvxnn::estimator::design_matrix(&t.features, &std, true).expect("design matrix");
    let classes: Vec<usize> = t
        .target
        .values()
        .expect("numeric classes")
        .iter()
        .map(|&v| v as usize)
        .collect();
    (x, cvxnn::data::one_hot(&classes, 3))
}

/// `|a - b| / max(|a|, |b|, tiny)`.
pub fn rel_diff(a: f64, b: f64) -> f64 {
    (a - b).abs() / a.abs().max(b.abs()).max(1e-300)
}

/// Largest entrywise difference relative to the largest magnitude of either vector.
pub fn max_rel_diff(a: &[f64], b: &[f64]) -> f64 {
    assert_eq!(a.len(), b.len());
    let scale = a
        .iter()
        .chain(b)
        .fold(0.0f64, |m, v| m.max(v.abs()))
        .max(1e-300);
    a.iter()
        .zip(b)
        .fold(0.0f64, |m, (p, q)| m.max((p - q).abs()))
        / scale
}

pub fn loss_name(loss: LossKind) -> &'static str {
    match loss {
        LossKind::Squared => "squared",
        LossKind::Logistic => "logistic",
        LossKind::CrossEntropy => "cross-entropy",
    }
}

/// Neurons of a network after merging those with the same direction `u / ||u||` (cosine above
/// `1 - 1e-6`) and the same output sign, and dropping those whose `|alpha| ||u||` is below
/// `1e-6` of the largest: the width of the function the network computes. Several convex groups
/// (adjacent patterns) can hold the same neuron when it lies on a cell boundary.
pub fn distinct_neurons(net: &cvxnn::network::Network) -> usize {
    let m = net.neurons();
    let weight = |j: usize| net.alpha[j].abs() * norm(net.hidden.col(j));
    let top = (0..m).map(weight).fold(0.0f64, f64::max);
    let mut kept: Vec<(Vec<f64>, bool)> = Vec::new();
    for j in 0..m {
        if weight(j) <= 1e-6 * top {
            continue;
        }
        let u = net.hidden.col(j);
        let nu = norm(u);
        let dir: Vec<f64> = u.iter().map(|v| v / nu).collect();
        let pos = net.alpha[j] > 0.0;
        let dup = kept.iter().any(|(k, s)| {
            *s == pos && k.iter().zip(&dir).map(|(a, b)| a * b).sum::<f64>() > 1.0 - 1e-6
        });
        if !dup {
            kept.push((dir, pos));
        }
    }
    kept.len()
}

pub fn norm(v: &[f64]) -> f64 {
    v.iter().map(|a| a * a).sum::<f64>().sqrt()
}
