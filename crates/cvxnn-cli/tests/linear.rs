//! End-to-end tests of `cvxnn train --model linear|linear-cnn` (issue 8): the proximal and
//! SDP solvers agree through the CLI, the report certifies, the exported tensors have PyTorch
//! names and shapes, and bad combinations are refused by name.

mod common;

use std::path::{Path, PathBuf};

use common::{num, ok_json, run, TempDir};
use serde_json::Value;

/// 12 signals of length 6 with a linear target plus a small non-linearity.
fn signals_csv(dir: &TempDir) -> PathBuf {
    let mut text = String::from("s0,s1,s2,s3,s4,s5,y\n");
    for i in 0..12 {
        let v: Vec<f64> = (0..6)
            .map(|j| ((1.3 * i as f64 + 0.7 * j as f64).sin() * 1000.0).round() / 1000.0)
            .collect();
        let y = v[0] - 0.5 * v[3] + 0.2 * v[5] * v[5];
        let cells: Vec<String> = v.iter().map(|a| a.to_string()).collect();
        text += &format!("{},{y:.4}\n", cells.join(","));
    }
    let p = dir.join("signals.csv");
    std::fs::write(&p, text).expect("write csv");
    p
}

fn tensor_shapes(path: &Path) -> Value {
    let bytes = std::fs::read(path).expect("read safetensors");
    let len = u64::from_le_bytes(bytes[..8].try_into().expect("header length")) as usize;
    serde_json::from_slice(&bytes[8..8 + len]).expect("header JSON")
}

#[test]
fn linear_models_train_certify_and_export() {
    let dir = TempDir::new("linear");
    let data = signals_csv(&dir);
    for (case, (model, extra, names)) in [
        ("linear", "", vec![("0.weight", 6usize), ("1.weight", 1)]),
        (
            "linear-cnn",
            "--input-shape 1,6 --kernel 3",
            vec![("0.weight", 3), ("2.weight", 1)],
        ),
        (
            "linear-cnn",
            "--input-shape 1,6 --kernel 3 --pool avg",
            vec![("0.weight", 3), ("3.weight", 1)],
        ),
        (
            "linear-cnn",
            "--input-shape 1,6 --circular",
            vec![("0.weight", 6), ("2.weight", 1)],
        ),
    ]
    .into_iter()
    .enumerate()
    {
        let mut objs = Vec::new();
        for solver in ["first-order", "conic"] {
            let out_dir = dir.join(&format!("{case}-{solver}"));
            let out = run(
                &format!(
                    "train --model {model} {extra} --solver {solver} --lambda 1e-2 --test-fraction 0 --tol 1e-9 --json --quiet"
                ),
                &[("--data", &data), ("--out", &out_dir)],
            );
            let r = ok_json(&out);
            let obj = num(&r, "objective");
            assert!(
                (obj - num(&r, "network_objective")).abs() <= 1e-10 * obj,
                "{model} {extra}"
            );
            assert!(
                num(&r, "relative_gap") <= 1e-6,
                "{model} {extra} {solver}: {r}"
            );
            assert!(num(&r, "spectral_norm") <= 1e-2 * (1.0 + 1e-3));
            objs.push(obj);
            let shapes = tensor_shapes(&out_dir.join("model.safetensors"));
            let m = num(&r, "width") as usize;
            for (name, _) in &names {
                assert!(
                    shapes[*name].is_object(),
                    "{model} {extra}: no {name} in {shapes}"
                );
            }
            assert_eq!(shapes[names[0].0]["shape"][0], serde_json::json!(m));
        }
        let rel = (objs[0] - objs[1]).abs() / objs[1];
        assert!(
            rel <= 1e-6,
            "{model} {extra}: proximal vs SDP differ by {rel}"
        );
    }
}

#[test]
fn linear_model_bad_arguments_are_named() {
    let dir = TempDir::new("linear-bad");
    let data = signals_csv(&dir);
    for (args, needle) in [
        ("train --model linear --kernel 3 --lambda 1e-2", "model"),
        ("train --model linear-cnn --lambda 1e-2", "input-shape"),
        ("train --model linear --lambda auto", "lambda"),
        ("train --model relu --circular --lambda 1e-2", "circular"),
        (
            "train --model linear --patterns 10 --lambda 1e-2",
            "patterns",
        ),
    ] {
        let out = run(args, &[("--data", &data)]);
        assert!(!out.status.success(), "{args}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains(needle), "{args}: {err}");
    }
}

fn stderr(out: &std::process::Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

fn examples(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../examples/data")
        .join(name)
}

/// The first `rows` lines (header included) of an example as a new CSV (keeps the tests fast).
fn head_csv(dir: &TempDir, name: &str, rows: usize) -> PathBuf {
    let text = std::fs::read_to_string(examples(name)).expect("example data");
    let head: Vec<&str> = text.lines().take(rows + 1).collect();
    let p = dir.join(name);
    std::fs::write(&p, head.join("\n") + "\n").expect("write csv");
    p
}

/// train --out, then predict (same metrics as the report on the same rows), info and certify
/// (the saved network's objective equals the report's to 1e-9) on saved linear models.
#[test]
fn linear_models_predict_info_and_certify() {
    let dir = TempDir::new("linear-use");
    let diabetes = head_csv(&dir, "diabetes.csv", 120);
    let iris = examples("iris.csv");
    let cancer = head_csv(&dir, "breast_cancer.csv", 120);
    let signals = signals_csv(&dir);
    for (case, (data, extra, lambda)) in [
        (&diabetes, "--model linear", "1e-2"),
        (&iris, "--model linear --task multiclass", "1e-2"),
        (&cancer, "--model linear --task binary", "1e-1"),
        (
            &signals,
            "--model linear-cnn --input-shape 1,6 --kernel 3",
            "1e-2",
        ),
        (
            &signals,
            "--model linear-cnn --input-shape 1,6 --kernel 3 --pool avg",
            "1e-2",
        ),
        (
            &signals,
            "--model linear-cnn --input-shape 1,6 --circular",
            "1e-2",
        ),
    ]
    .into_iter()
    .enumerate()
    {
        let out_dir = dir.join(&format!("model-{case}"));
        let out = run(
            &format!("train {extra} --lambda {lambda} --test-fraction 0 --json --quiet"),
            &[("--data", data), ("--out", &out_dir)],
        );
        let r = ok_json(&out);
        let meta: Value = serde_json::from_str(
            &std::fs::read_to_string(out_dir.join("model.json")).expect("model.json"),
        )
        .expect("json");
        assert_eq!(meta["architecture"], "linear-network");
        // predict: the report's train metrics on the same rows.
        let pred = run("predict", &[("--model", &out_dir), ("--data", data)]);
        assert!(pred.status.success(), "{extra}: {}", stderr(&pred));
        let n = num(&r, "n_train") as usize;
        assert_eq!(String::from_utf8_lossy(&pred.stdout).lines().count(), n + 1);
        let want = match r["train"]["r2"].as_f64() {
            Some(r2) => format!("r2 {r2:.4}"),
            None => format!("accuracy {:.4}", num(&r["train"], "accuracy")),
        };
        assert!(
            stderr(&pred).contains(&want),
            "{extra}: want {want}: {}",
            stderr(&pred)
        );
        // info prints the model.
        let info = run("info", &[("--model", &out_dir)]);
        assert!(info.status.success(), "{extra}: {}", stderr(&info));
        let text = String::from_utf8_lossy(&info.stdout);
        assert!(text.contains(r["model"].as_str().expect("model")), "{text}");
        // certify: the saved network's objective is the report's.
        let cert = run(
            &format!("certify --lambda {lambda} --json"),
            &[("--model", &out_dir), ("--data", data)],
        );
        let c = ok_json(&cert);
        let (a, b) = (num(&c, "network_objective"), num(&r, "network_objective"));
        assert!(
            (a - b).abs() <= 1e-9 * b.abs().max(1.0),
            "{extra}: {a} vs {b}"
        );
        assert!((num(&c, "dual_bound") - num(&r, "dual_bound")).abs() <= 1e-9 * b.abs().max(1.0));
        assert!(num(&c, "dual_bound") <= a);
        // No overwrite without --force.
        let again = run(
            &format!("train {extra} --lambda {lambda} --quiet"),
            &[("--data", data), ("--out", &out_dir)],
        );
        assert!(!again.status.success());
        assert!(stderr(&again).contains("--force"), "{}", stderr(&again));
    }
    // Bad inputs name the argument.
    let out_dir = dir.join("model-0");
    for (args, needle) in [
        ("certify --lambda -1", "lambda"),
        ("certify --lambda 1e-2 --task binary", "task"),
        ("certify --lambda 1e-2 --patterns 5", "patterns"),
    ] {
        let out = run(args, &[("--model", &out_dir), ("--data", &diabetes)]);
        assert!(!out.status.success(), "{args}");
        assert!(stderr(&out).contains(needle), "{args}: {}", stderr(&out));
    }
    let pred = run("predict", &[("--model", &out_dir), ("--data", &signals)]);
    assert!(!pred.status.success());
}
