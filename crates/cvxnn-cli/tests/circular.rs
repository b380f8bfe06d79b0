//! End-to-end tests of `cvxnn train --model circular-cnn|circular-linear-cnn` and `predict` on
//! circular models: tiny signals, the exported tensor names and shapes (safetensors header read by
//! hand), and bad arguments.

mod common;

use std::path::{Path, PathBuf};

use common::{num, ok_json, run, TempDir};
use serde_json::Value;

/// 10 signals of length 6 with a shift-invariant non-linear target.
fn signals_csv(dir: &TempDir) -> PathBuf {
    let mut text = String::from("s0,s1,s2,s3,s4,s5,y\n");
    for i in 0..10 {
        let v: Vec<f64> = (0..6)
            .map(|j| ((1.7 * i as f64 + 0.9 * j as f64).sin() * 2.0 * 1000.0).round() / 1000.0)
            .collect();
        let y: f64 = (0..6).map(|t| (v[t] - v[(t + 2) % 6]).max(0.0)).sum();
        let cells: Vec<String> = v.iter().map(|a| a.to_string()).collect();
        text += &format!("{},{y:.4}\n", cells.join(","));
    }
    let p = dir.join("signals.csv");
    std::fs::write(&p, text).expect("write csv");
    p
}

/// Tensor names and shapes from a safetensors header (8-byte length, then JSON).
fn tensor_shapes(path: &Path) -> Value {
    let bytes = std::fs::read(path).expect("read safetensors");
    let len = u64::from_le_bytes(bytes[..8].try_into().expect("header length")) as usize;
    serde_json::from_slice(&bytes[8..8 + len]).expect("header JSON")
}

fn stderr(out: &std::process::Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

#[test]
fn circular_train_and_predict_on_tiny_signals() {
    let dir = TempDir::new("circ-tiny");
    let data = signals_csv(&dir);
    for (model, extra) in [
        ("circular-cnn", "--patterns 10 --tol 1e-4"),
        ("circular-linear-cnn", "--tol 1e-8"),
    ] {
        let out_dir = dir.join(model);
        let out = run(
            &format!(
                "train --model {model} --input-shape 1,6 --lambda 1e-2 --test-fraction 0 --json --quiet {extra}"
            ),
            &[("--data", &data), ("--out", &out_dir)],
        );
        let r = ok_json(&out);
        assert_eq!(r["status"], "converged", "{model}: {r}");
        assert_eq!(r["model"], model);
        let rel =
            (num(&r, "objective") - num(&r, "network_objective")).abs() / num(&r, "objective");
        assert!(
            rel <= 1e-4,
            "{model}: rebuilt network objective off by {rel}"
        );
        assert!(num(&r, "dual_bound") <= num(&r, "objective"));
        let meta: Value = serde_json::from_str(
            &std::fs::read_to_string(out_dir.join("model.json")).expect("model.json"),
        )
        .expect("json");
        assert_eq!(meta["architecture"], "circular-cnn");
        let m = meta["channels"].as_u64().expect("channels") as usize;
        assert!(m >= 1);
        let shapes = tensor_shapes(&out_dir.join("model.safetensors"));
        assert_eq!(shapes["0.weight"]["shape"], serde_json::json!([m, 1, 6]));
        if model == "circular-cnn" {
            assert_eq!(shapes["1.weight"]["shape"], serde_json::json!([m, 1, 6]));
            assert_eq!(shapes["4.weight"]["shape"], serde_json::json!([1, m]));
        } else {
            assert_eq!(r["certificate"], "global");
            assert_eq!(shapes["1.weight"]["shape"], serde_json::json!([1, m, 6]));
        }
        // predict reproduces the training metrics (same rows, no test split).
        let pred = run("predict", &[("--model", &out_dir), ("--data", &data)]);
        assert!(pred.status.success(), "{}", stderr(&pred));
        assert_eq!(String::from_utf8_lossy(&pred.stdout).lines().count(), 11);
        let r2 = r["train"]["r2"].as_f64().expect("r2");
        assert!(
            stderr(&pred).contains(&format!("r2 {r2:.4}")),
            "{}",
            stderr(&pred)
        );
    }
}

#[test]
fn circular_bad_arguments_name_the_argument() {
    let dir = TempDir::new("circ-bad");
    let data = signals_csv(&dir);
    for (model, words, name) in [
        ("circular-cnn", "--input-shape 1,7", "input-shape"),
        ("circular-cnn", "--input-shape 2,3", "input-shape"),
        ("circular-cnn", "--input-shape 1,2,3", "input-shape"),
        ("circular-cnn", "", "input-shape"),
        ("circular-cnn", "--input-shape 1,6 --kernel 3", "kernel"),
        (
            "circular-cnn",
            "--input-shape 1,6 --patterns adaptive",
            "patterns",
        ),
        ("circular-cnn", "--input-shape 1,6 --lambda auto", "lambda"),
        (
            "circular-linear-cnn",
            "--input-shape 1,6 --patterns 5",
            "patterns",
        ),
        (
            "circular-linear-cnn",
            "--input-shape 1,6 --lambda -1",
            "lambda",
        ),
    ] {
        let out = run(
            &format!("train --model {model} --quiet {words}"),
            &[("--data", &data)],
        );
        assert!(!out.status.success(), "{model} {words} should fail");
        assert!(
            stderr(&out).contains(&format!("`{name}`")),
            "{model} {words}: {}",
            stderr(&out)
        );
    }
}
