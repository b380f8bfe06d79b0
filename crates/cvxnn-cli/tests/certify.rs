//! `cvxnn certify` end to end on a tiny data set (n = 12, two features): cvxnn's own optimum is
//! certified (relative gap below 1e-4 at --tol 1e-6), a deliberately poor network written by
//! hand in PyTorch naming shows a large gap.

mod common;

use std::path::{Path, PathBuf};

use common::{num, ok_json, run, tiny_csv, TempDir};
use serde_json::Value;

/// Writes f64 tensors in the safetensors format: 8-byte LE header length, JSON header, raw LE
/// data.
fn write_safetensors(path: &Path, tensors: &[(&str, Vec<usize>, Vec<f64>)]) {
    let mut header = serde_json::Map::new();
    let mut data = Vec::new();
    for (name, shape, values) in tensors {
        let start = data.len();
        for v in values {
            data.extend_from_slice(&v.to_le_bytes());
        }
        header.insert(
            (*name).to_string(),
            serde_json::json!({"dtype": "F64", "shape": shape, "data_offsets": [start, data.len()]}),
        );
    }
    let head = serde_json::to_vec(&Value::Object(header)).expect("header");
    let mut bytes = (head.len() as u64).to_le_bytes().to_vec();
    bytes.extend_from_slice(&head);
    bytes.extend_from_slice(&data);
    std::fs::write(path, bytes).expect("write safetensors");
}

fn train_exact(dir: &TempDir, data: &Path) -> (PathBuf, Value) {
    let out = dir.join("model");
    let r = ok_json(&run(
        "train --patterns exact --test-fraction 0 --lambda 0.1 --tol 1e-6 --json -q",
        &[("--data", data), ("--out", &out)],
    ));
    (out, r)
}

#[test]
fn certify_of_cvxnns_own_optimum_has_a_small_gap() {
    let dir = TempDir::new("own");
    let data = tiny_csv(&dir);
    let (model, report) = train_exact(&dir, &data);
    let weights = model.join("model.safetensors");
    for m in [&model, &weights] {
        let c = ok_json(&run(
            "certify --lambda 0.1 --tol 1e-6 --json -q",
            &[("--model", m), ("--data", &data)],
        ));
        assert_eq!(c["certificate"], "global");
        // Same objective as the training report (same data, same preprocessing).
        let rel = (num(&c, "network_objective") - num(&report, "network_objective")).abs()
            / num(&report, "network_objective");
        assert!(rel < 1e-9, "{c}\n{report}");
        assert!(num(&c, "relative_gap") < 1e-4, "{c}");
        assert!(num(&c, "lower_bound") <= num(&c, "network_objective") * (1.0 + 1e-12));
        assert!(num(&c, "convex_objective") <= num(&c, "network_objective") * (1.0 + 1e-6));
    }
    // The bare weights with preprocessing fitted on the same data (the training defaults) give the
    // same objective.
    let bare = dir.join("bare.safetensors");
    std::fs::copy(&weights, &bare).expect("copy weights");
    let c = ok_json(&run(
        "certify --lambda 0.1 --tol 1e-6 --json -q",
        &[("--model", &bare), ("--data", &data)],
    ));
    let rel = (num(&c, "network_objective") - num(&report, "network_objective")).abs()
        / num(&report, "network_objective");
    assert!(rel < 1e-9, "{c}\n{report}");
    assert!(num(&c, "relative_gap") < 1e-4, "{c}");
}

#[test]
fn certify_of_a_poor_network_reports_a_large_gap() {
    let dir = TempDir::new("poor");
    let data = tiny_csv(&dir);
    let net = dir.join("poor.safetensors");
    // Sequential(Linear(2, 3), ReLU(), Linear(3, 1, bias=False)) with arbitrary weights.
    write_safetensors(
        &net,
        &[
            ("0.weight", vec![3, 2], vec![1.0, -2.0, 0.5, 0.5, -1.0, 3.0]),
            ("0.bias", vec![3], vec![0.1, -0.2, 0.3]),
            ("2.weight", vec![1, 3], vec![2.0, -1.0, 0.7]),
        ],
    );
    let c = ok_json(&run(
        "certify --lambda 0.1 --json -q",
        &[("--model", &net), ("--data", &data)],
    ));
    assert_eq!(c["certificate"], "global");
    assert_eq!(c["optimal"], false);
    assert_eq!(num(&c, "neurons"), 3.0);
    assert!(num(&c, "relative_gap") > 0.5, "{c}");
    assert!(num(&c, "gap") > 0.0);
    // The human-readable summary says so too.
    let out = run(
        "certify --lambda 0.1 -q",
        &[("--model", &net), ("--data", &data)],
    );
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success());
    assert!(text.contains("not provably optimal"), "{text}");
    assert!(text.contains("global"), "{text}");
}

#[test]
fn certify_with_sampled_patterns_says_so() {
    let dir = TempDir::new("sampled");
    let data = tiny_csv(&dir);
    let (model, _) = train_exact(&dir, &data);
    let c = ok_json(&run(
        "certify --patterns 5 --lambda 0.1 --json -q",
        &[("--model", &model), ("--data", &data)],
    ));
    assert_eq!(c["certificate"], "sampled-patterns");
    // The network's own patterns are in the program, so the bound still applies to it.
    assert!(num(&c, "lower_bound") <= num(&c, "network_objective") * (1.0 + 1e-12));
    assert!(num(&c, "relative_gap") < 1e-4, "{c}");
}

#[test]
fn certify_rejects_bad_input() {
    let dir = TempDir::new("bad");
    let data = tiny_csv(&dir);
    // Not a safetensors file.
    let out = run(
        "certify --lambda 0.1 -q",
        &[("--model", &data), ("--data", &data)],
    );
    assert!(!out.status.success());
    // Wrong number of features.
    let net = dir.join("wide.safetensors");
    write_safetensors(
        &net,
        &[
            ("0.weight", vec![1, 3], vec![1.0, 1.0, 1.0]),
            ("0.bias", vec![1], vec![0.0]),
            ("2.weight", vec![1, 1], vec![1.0]),
        ],
    );
    let out = run(
        "certify --lambda 0.1 -q",
        &[("--model", &net), ("--data", &data)],
    );
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("features"), "{err}");
    // Bad lambda.
    let out = run(
        "certify --lambda -1 -q",
        &[("--model", &net), ("--data", &data)],
    );
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("lambda"));
}

/// A two-layer ReLU network trained here by plain full-batch gradient descent on raw features
/// (bias as a ones column, weight decay on every weight), saved in PyTorch naming and certified:
/// cvxnn computes the same objective and a global lower bound below it.
#[test]
fn certify_of_a_gradient_descent_network() {
    let dir = TempDir::new("gd");
    let data = tiny_csv(&dir);
    let text = std::fs::read_to_string(&data).expect("read csv");
    let rows: Vec<Vec<f64>> = text
        .lines()
        .skip(1)
        .map(|l| l.split(',').map(|v| v.parse().expect("number")).collect())
        .collect();
    let (n, m, lambda) = (rows.len(), 8usize, 0.1f64);
    let x: Vec<[f64; 3]> = rows.iter().map(|r| [r[0], r[1], 1.0]).collect();
    let y: Vec<f64> = rows.iter().map(|r| r[2]).collect();
    // Deterministic initialization (LCG), small weights.
    let mut state = 12345u64;
    let mut rnd = || {
        state = state
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        ((state >> 11) as f64 / (1u64 << 53) as f64 - 0.5) * 0.5
    };
    let mut u: Vec<[f64; 3]> = (0..m).map(|_| [rnd(), rnd(), rnd()]).collect();
    let mut a: Vec<f64> = (0..m).map(|_| rnd()).collect();
    let objective = |u: &[[f64; 3]], a: &[f64]| -> f64 {
        let mut loss = 0.0;
        for (xi, yi) in x.iter().zip(&y) {
            let f: f64 = (0..m)
                .map(|j| a[j] * (0..3).map(|k| xi[k] * u[j][k]).sum::<f64>().max(0.0))
                .sum();
            loss += 0.5 * (f - yi) * (f - yi);
        }
        let decay: f64 = (0..m)
            .map(|j| u[j].iter().map(|v| v * v).sum::<f64>() + a[j] * a[j])
            .sum();
        loss / n as f64 + 0.5 * lambda * decay
    };
    for _ in 0..20_000 {
        let mut gu = vec![[0.0; 3]; m];
        let mut ga = vec![0.0; m];
        for (xi, yi) in x.iter().zip(&y) {
            let pre: Vec<f64> = (0..m)
                .map(|j| (0..3).map(|k| xi[k] * u[j][k]).sum())
                .collect();
            let f: f64 = (0..m).map(|j| a[j] * pre[j].max(0.0)).sum();
            let r = (f - yi) / n as f64;
            for j in 0..m {
                ga[j] += r * pre[j].max(0.0);
                if pre[j] > 0.0 {
                    for k in 0..3 {
                        gu[j][k] += r * a[j] * xi[k];
                    }
                }
            }
        }
        for j in 0..m {
            a[j] -= 0.05 * (ga[j] + lambda * a[j]);
            for k in 0..3 {
                u[j][k] -= 0.05 * (gu[j][k] + lambda * u[j][k]);
            }
        }
    }
    let gd_objective = objective(&u, &a);
    let net = dir.join("gd.safetensors");
    write_safetensors(
        &net,
        &[
            (
                "0.weight",
                vec![m, 2],
                u.iter().flat_map(|r| [r[0], r[1]]).collect(),
            ),
            ("0.bias", vec![m], u.iter().map(|r| r[2]).collect()),
            ("2.weight", vec![1, m], a.clone()),
        ],
    );
    let c = ok_json(&run(
        "certify --lambda 0.1 --no-standardize --no-scale-target --json -q",
        &[("--model", &net), ("--data", &data)],
    ));
    eprintln!("gradient descent objective {gd_objective:.10e}; certify: {c}");
    assert_eq!(c["certificate"], "global");
    let rel = (num(&c, "network_objective") - gd_objective).abs() / gd_objective;
    assert!(rel < 1e-9, "objective {gd_objective} vs {c}");
    assert!(
        num(&c, "lower_bound") <= gd_objective * (1.0 + 1e-12),
        "{c}"
    );
    assert!(num(&c, "relative_gap") >= -1e-9, "{c}");
}
