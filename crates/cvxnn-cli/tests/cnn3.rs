//! End-to-end tests of `cvxnn train --model cnn3-relu` and `predict` on its model directory:
//! exact patterns of both layers on 4 tiny signals (global certificate, rebuilt objective,
//! PyTorch tensor names and shapes, predict reproduces the training metrics) and bad arguments.

mod common;

use std::path::{Path, PathBuf};

use common::{num, ok_json, run, TempDir};
use serde_json::Value;

/// 4 signals of length 5 with a target that depends on a local pattern anywhere in them.
fn signals_csv(dir: &TempDir) -> PathBuf {
    let mut text = String::from("s0,s1,s2,s3,s4,y\n");
    for i in 0..4 {
        let v: Vec<f64> = (0..5)
            .map(|j| ((1.7 * i as f64 + 0.9 * j as f64).sin() * 2.0 * 1000.0).round() / 1000.0)
            .collect();
        let y: f64 = v.windows(2).map(|w| (w[0] - w[1]).max(0.0)).sum();
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
fn cnn3_exact_train_and_predict_on_tiny_signals() {
    let dir = TempDir::new("cnn3-tiny");
    let data = signals_csv(&dir);
    let out_dir = dir.join("model");
    let out = run(
        "train --model cnn3-relu --input-shape 1,5 --kernel 2 --no-bias --patterns exact --second-layer-patterns exact --lambda 5e-2 --test-fraction 0 --max-iter 10000 --tol 1e-5 --json --quiet",
        &[("--data", &data), ("--out", &out_dir)],
    );
    let r = ok_json(&out);
    assert_eq!(r["certificate"], "global", "{r}");
    assert!(num(&r, "relative_gap") <= 1e-3, "{r}");
    assert_eq!(num(&r, "second_layer_patterns"), 15.0);
    let rel = (num(&r, "objective") - num(&r, "network_objective")).abs() / num(&r, "objective");
    assert!(rel <= 1e-4, "rebuilt network objective off by {rel}");
    let meta: Value = serde_json::from_str(
        &std::fs::read_to_string(out_dir.join("model.json")).expect("model.json"),
    )
    .expect("json");
    assert_eq!(meta["architecture"], "cnn3-sum-pool-path");
    let mf = meta["filters"].as_u64().expect("filters") as usize;
    let m = meta["units"].as_u64().expect("units") as usize;
    assert!(mf >= 1 && m >= 1);
    let shapes = tensor_shapes(&out_dir.join("model.safetensors"));
    assert_eq!(shapes["0.weight"]["shape"], serde_json::json!([mf, 1, 2]));
    assert_eq!(shapes["4.weight"]["shape"], serde_json::json!([m, mf]));
    assert_eq!(shapes["6.weight"]["shape"], serde_json::json!([1, m]));
    assert!(shapes.get("0.bias").is_none());
    let pred = run("predict", &[("--model", &out_dir), ("--data", &data)]);
    assert!(pred.status.success(), "{}", stderr(&pred));
    assert_eq!(String::from_utf8_lossy(&pred.stdout).lines().count(), 5);
    let r2 = r["train"]["r2"].as_f64().expect("r2");
    assert!(
        stderr(&pred).contains(&format!("r2 {r2:.4}")),
        "{}",
        stderr(&pred)
    );
}

#[test]
fn cnn3_bad_arguments_name_the_argument() {
    let dir = TempDir::new("cnn3-bad");
    let data = signals_csv(&dir);
    for (words, name) in [
        (
            "--input-shape 1,5 --kernel 2 --second-layer-patterns 0",
            "second-layer-patterns",
        ),
        (
            "--input-shape 1,5 --kernel 2 --second-layer-patterns x",
            "second-layer-patterns",
        ),
        (
            "--input-shape 1,5 --kernel 2 --patterns adaptive",
            "patterns",
        ),
        ("--input-shape 1,5 --kernel 2 --lambda auto", "lambda"),
        ("--kernel 2", "input-shape"),
    ] {
        let out = run(
            &format!("train --model cnn3-relu --quiet {words}"),
            &[("--data", &data)],
        );
        assert!(!out.status.success(), "{words} should fail");
        assert!(
            stderr(&out).contains(&format!("`{name}`")),
            "{words}: {}",
            stderr(&out)
        );
    }
}
