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

/// Relative difference `|a - b| / max(|a|, |b|, tiny)`.
fn rel_diff(a: f64, b: f64) -> f64 {
    (a - b).abs() / a.abs().max(b.abs()).max(1e-300)
}

/// `info` on both circular models prints the architecture and the report's certificate, and
/// `certify` at the training lambda reproduces the training run's rebuilt-network objective
/// (an independent recomputation from the saved files), bounds it from below with a small gap,
/// while at a tenth of the lambda the same network is provably not optimal.
#[test]
fn circular_info_and_certify_the_trained_models() {
    let dir = TempDir::new("circ-certify");
    let data = signals_csv(&dir);
    for (model, extra) in [
        ("circular-cnn", "--patterns 10 --tol 1e-6"),
        ("circular-linear-cnn", "--tol 1e-9"),
    ] {
        let out_dir = dir.join(model);
        let out = run(
            &format!(
                "train --model {model} --input-shape 1,6 --lambda 1e-2 --test-fraction 0 --max-iter 100000 --json --quiet {extra}"
            ),
            &[("--data", &data), ("--out", &out_dir)],
        );
        let trained = ok_json(&out);
        assert_eq!(trained["status"], "converged", "{model}: {trained}");

        let info = run("info", &[("--model", &out_dir)]);
        assert!(info.status.success(), "{}", stderr(&info));
        let text = String::from_utf8_lossy(&info.stdout);
        assert!(text.contains(&format!("model        {model}")), "{text}");
        assert!(text.contains("input 1,6"), "{text}");
        assert!(text.contains("lambda 1e-2"), "{text}");
        assert!(
            text.contains(&format!("dual bound {:.8e}", num(&trained, "dual_bound"))),
            "{text}"
        );

        let patterns = if model == "circular-cnn" {
            "--patterns 10"
        } else {
            ""
        };
        let cert = |lambda: &str| {
            let out = run(
                &format!("certify --lambda {lambda} --tol 1e-6 --json --quiet {patterns}"),
                &[("--model", &out_dir), ("--data", &data)],
            );
            (ok_json(&out), stderr(&out))
        };
        let (r, summary) = cert("1e-2");
        // The summary (stderr with --json) says what the bound holds for.
        assert!(
            summary.contains("bound for    ") && summary.contains("circular"),
            "{summary}"
        );
        let net = num(&r, "network_objective");
        assert!(
            rel_diff(net, num(&trained, "network_objective")) <= 1e-10,
            "{model}: certify's objective {net} vs training's {}",
            num(&trained, "network_objective")
        );
        let lb = num(&r, "lower_bound");
        assert!(lb <= net * (1.0 + 1e-9), "{model}: bound {lb} > {net}");
        assert!(num(&r, "relative_gap") <= 1e-4, "{model}: {r}");
        assert!(num(&r, "balanced_objective") <= net * (1.0 + 1e-12));
        assert!(r["exact_for"]
            .as_str()
            .is_some_and(|s| s.contains("circular")));
        if model == "circular-linear-cnn" {
            assert_eq!(r["certificate"], "global");
            assert_eq!(num(&r, "patterns"), 0.0);
        } else {
            assert_eq!(r["certificate"], "sampled-patterns");
            assert!(num(&r, "patterns") >= 1.0);
        }
        // A tenth of the lambda: the same network is far from that problem's optimum.
        let (other, _) = cert("1e-3");
        assert!(num(&other, "lower_bound") < num(&other, "network_objective"));
        assert!(num(&other, "relative_gap") > 1e-3, "{model}: {other}");
        assert_eq!(other["optimal"], false);
    }
}

/// Bad certify inputs for a circular model stop with an error naming the problem.
#[test]
fn circular_certify_bad_inputs_are_named() {
    let dir = TempDir::new("circ-certify-bad");
    let data = signals_csv(&dir);
    let out_dir = dir.join("model");
    let out = run(
        "train --model circular-linear-cnn --input-shape 1,6 --lambda 1e-2 --test-fraction 0 --quiet",
        &[("--data", &data), ("--out", &out_dir)],
    );
    assert!(out.status.success(), "{}", stderr(&out));
    let text = std::fs::read_to_string(&data).expect("read csv");
    // A column short, and a NaN cell.
    let short: String = text
        .lines()
        .map(|l| l.split(',').skip(1).collect::<Vec<_>>().join(","))
        .collect::<Vec<_>>()
        .join("\n");
    let short_path = dir.join("short.csv");
    std::fs::write(&short_path, short).expect("write");
    let nan_lines: Vec<String> = text
        .lines()
        .enumerate()
        .map(|(i, l)| {
            if i == 3 {
                let mut cells: Vec<&str> = l.split(',').collect();
                cells[2] = "nan";
                cells.join(",")
            } else {
                l.to_string()
            }
        })
        .collect();
    let nan_path = dir.join("nan.csv");
    std::fs::write(&nan_path, nan_lines.join("\n")).expect("write");
    for (path, words, needle) in [
        (&short_path, "", "s0"),
        (&nan_path, "", "line 4"),
        (&data, "--lambda 0", "`lambda`"),
        (&data, "--no-bias", "`no-bias`"),
        (
            &data,
            "--second-layer-patterns 3",
            "`second-layer-patterns`",
        ),
        (&data, "--solver conic", "`solver`"),
    ] {
        let lambda = if words.contains("--lambda") {
            ""
        } else {
            "--lambda 1e-2"
        };
        let out = run(
            &format!("certify --quiet {lambda} {words}"),
            &[("--model", &out_dir), ("--data", path)],
        );
        assert!(!out.status.success(), "{words} should fail");
        assert!(stderr(&out).contains(needle), "{words}: {}", stderr(&out));
    }
    let file = out_dir.join("model.safetensors");
    let out = run(
        "certify --quiet --lambda 1e-2",
        &[("--model", &file), ("--data", &data)],
    );
    assert!(!out.status.success());
    assert!(stderr(&out).contains("`model`"), "{}", stderr(&out));
}
