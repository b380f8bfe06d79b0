//! End-to-end tests of `cvxnn train --model cnn-relu|cnn-gated-relu` and `predict` on CNN
//! models: a tiny 1-D data set, the bundled digits as a binary task (0 vs rest, a temp copy),
//! the exported tensor names and shapes (safetensors header read by hand), and bad arguments.

mod common;

use std::path::{Path, PathBuf};

use common::{num, ok_json, run, TempDir};
use serde_json::Value;

/// 10 signals of length 6 with a target that depends on a local pattern anywhere in them.
fn signals_csv(dir: &TempDir) -> PathBuf {
    let mut text = String::from("s0,s1,s2,s3,s4,s5,y\n");
    for i in 0..10 {
        let v: Vec<f64> = (0..6)
            .map(|j| ((1.7 * i as f64 + 0.9 * j as f64).sin() * 2.0 * 1000.0).round() / 1000.0)
            .collect();
        let y: f64 = v.windows(3).map(|w| (w[0] - w[2]).max(0.0)).sum();
        let cells: Vec<String> = v.iter().map(|a| a.to_string()).collect();
        text += &format!("{},{y:.4}\n", cells.join(","));
    }
    let p = dir.join("signals.csv");
    std::fs::write(&p, text).expect("write csv");
    p
}

/// The digits with the target mapped to 1 (digit 0) / 0 (the rest); the bundled file is only
/// read.
fn digits_binary(dir: &TempDir) -> PathBuf {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples/data/digits.csv");
    let text = std::fs::read_to_string(src).expect("read digits");
    let mut out = String::new();
    for (i, line) in text.lines().enumerate() {
        if i == 0 {
            out += line;
        } else {
            let (features, label) = line.rsplit_once(',').expect("a target column");
            out += &format!("{features},{}", u8::from(label.trim() == "0"));
        }
        out.push('\n');
    }
    let p = dir.join("digits01.csv");
    std::fs::write(&p, out).expect("write csv");
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
fn cnn_train_and_predict_on_tiny_signals() {
    let dir = TempDir::new("cnn-tiny");
    let data = signals_csv(&dir);
    for (model, extra) in [
        ("cnn-gated-relu", "--patterns 20"),
        ("cnn-relu", "--patterns 10 --tol 1e-5"),
    ] {
        let out_dir = dir.join(model);
        let out = run(
            &format!(
                "train --model {model} --input-shape 1,6 --kernel 3 --padding 1 --lambda 1e-2 --test-fraction 0 --json --quiet {extra}"
            ),
            &[("--data", &data), ("--out", &out_dir)],
        );
        let r = ok_json(&out);
        assert_eq!(r["status"], "converged", "{model}: {r}");
        let rel =
            (num(&r, "objective") - num(&r, "network_objective")).abs() / num(&r, "objective");
        assert!(
            rel <= 1e-5,
            "{model}: rebuilt network objective off by {rel}"
        );
        assert_eq!(num(&r, "patches"), 6.0);
        assert_eq!(num(&r, "filter_len"), 4.0);
        let meta: Value = serde_json::from_str(
            &std::fs::read_to_string(out_dir.join("model.json")).expect("model.json"),
        )
        .expect("json");
        assert_eq!(meta["architecture"], "cnn-sum-pool");
        assert_eq!(meta["shape"]["kernel"], serde_json::json!([3]));
        let m = meta["filters"].as_u64().expect("filters") as usize;
        let shapes = tensor_shapes(&out_dir.join("model.safetensors"));
        assert_eq!(shapes["0.weight"]["shape"], serde_json::json!([m, 1, 3]));
        assert_eq!(shapes["0.bias"]["shape"], serde_json::json!([m]));
        assert_eq!(shapes["4.weight"]["shape"], serde_json::json!([1, m]));
        // predict reproduces the training metrics (same rows, no test split).
        let pred = run("predict", &[("--model", &out_dir), ("--data", &data)]);
        assert!(pred.status.success(), "{}", stderr(&pred));
        let text = String::from_utf8_lossy(&pred.stdout);
        assert_eq!(text.lines().count(), 11);
        let r2 = r["train"]["r2"].as_f64().expect("r2");
        assert!(
            stderr(&pred).contains(&format!("r2 {r2:.4}")),
            "{}",
            stderr(&pred)
        );
    }
}

#[test]
fn cnn_gated_on_digits_zero_vs_rest() {
    let dir = TempDir::new("cnn-digits");
    let data = digits_binary(&dir);
    let out = run(
        "train --model cnn-gated-relu --input-shape 1,8,8 --kernel 3x3 --patterns 10 --lambda 1e-2 --tol 1e-5 --json --quiet",
        &[("--data", &data)],
    );
    let r = ok_json(&out);
    assert_eq!(r["status"], "converged", "{r}");
    assert!(num(&r, "relative_gap") <= 1e-5);
    let acc = r["test"]["accuracy"].as_f64().expect("accuracy");
    assert!(acc >= 0.95, "test accuracy {acc}");
}

#[test]
fn cnn_bad_arguments_name_the_argument() {
    let dir = TempDir::new("cnn-bad");
    let data = signals_csv(&dir);
    for (words, name) in [
        ("--input-shape 1,7 --kernel 3", "input-shape"),
        ("--input-shape 1,6 --kernel 9", "kernel"),
        ("--input-shape 1,6 --kernel 3 --stride 0", "stride"),
        ("--input-shape 1,6", "kernel"),
        ("--kernel 3", "input-shape"),
        ("--input-shape 1,x --kernel 3", "input-shape"),
        (
            "--input-shape 1,6 --kernel 3 --patterns adaptive",
            "patterns",
        ),
    ] {
        let out = run(
            &format!("train --model cnn-relu --quiet {words}"),
            &[("--data", &data)],
        );
        assert!(!out.status.success(), "{words} should fail");
        assert!(
            stderr(&out).contains(&format!("`{name}`")),
            "{words}: {}",
            stderr(&out)
        );
    }
    let out = run(
        "train --model relu --input-shape 1,6 --kernel 3 --quiet",
        &[("--data", &data)],
    );
    assert!(!out.status.success());
    assert!(stderr(&out).contains("`input-shape`"), "{}", stderr(&out));
}
