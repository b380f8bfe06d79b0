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
        ("linear-cnn", "--input-shape 1,6 --circular", vec![]),
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
            if names.is_empty() {
                assert!(!out_dir.join("model.safetensors").exists());
                continue;
            }
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
