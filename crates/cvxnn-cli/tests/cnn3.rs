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

/// `info` prints the three-layer architecture and the report's certificate; `certify` at the
/// training lambda reproduces the training run's rebuilt-network objective (recomputed from the
/// saved files), bounds it from below within the tolerance over all patterns of both layers
/// (global, path penalty), and at a tenth of the lambda proves the same network not optimal.
#[test]
fn cnn3_info_and_certify_the_trained_model() {
    let dir = TempDir::new("cnn3-certify");
    let data = signals_csv(&dir);
    let out_dir = dir.join("model");
    // lambda 0.5 converges in ~3k iterations (2 s); 5e-2 needs more than 10k.
    let trained = ok_json(&run(
        "train --model cnn3-relu --input-shape 1,5 --kernel 2 --no-bias --patterns exact --second-layer-patterns exact --lambda 5e-1 --test-fraction 0 --max-iter 10000 --tol 1e-6 --json --quiet",
        &[("--data", &data), ("--out", &out_dir)],
    ));
    assert_eq!(trained["status"], "converged", "{trained}");
    let info = run("info", &[("--model", &out_dir)]);
    assert!(info.status.success(), "{}", stderr(&info));
    let text = String::from_utf8_lossy(&info.stdout);
    assert!(text.contains("cnn3-relu (cnn3-sum-pool-path)"), "{text}");
    assert!(text.contains("path penalty"), "{text}");
    assert!(text.contains("kernel 2"), "{text}");
    assert!(
        text.contains(&format!("dual bound {:.8e}", num(&trained, "dual_bound"))),
        "{text}"
    );

    let cert = |words: &str| {
        let out = run(
            &format!("certify --tol 1e-6 --json --quiet {words}"),
            &[("--model", &out_dir), ("--data", &data)],
        );
        let summary = stderr(&out);
        (ok_json(&out), summary)
    };
    let (r, summary) = cert("--lambda 5e-1 --max-iter 10000");
    let net = num(&r, "network_objective");
    let from_training = num(&trained, "network_objective");
    assert!(
        (net - from_training).abs() <= 1e-10 * net,
        "certify's objective {net} vs training's {from_training}"
    );
    assert_eq!(r["certificate"], "global", "{r}");
    let lb = num(&r, "lower_bound");
    assert!(lb <= net * (1.0 + 1e-9), "bound {lb} > {net}");
    assert!(num(&r, "relative_gap") <= 1e-5, "{r}");
    let words = r["exact_for"].as_str().expect("exact_for");
    assert!(words.contains("path penalty"), "{words}");
    // The summary (stderr with --json) names what the bound holds for.
    assert!(
        summary.contains("bound for    three-layer CNNs"),
        "{summary}"
    );
    // A tenth of the lambda: not optimal there (the bound is valid at any iteration).
    let (other, _) = cert("--lambda 5e-2 --max-iter 1000");
    assert!(num(&other, "lower_bound") < num(&other, "network_objective"));
    assert!(num(&other, "relative_gap") > 1e-2, "{other}");
    assert_eq!(other["optimal"], false);
    // Sampled patterns of both layers: the network's own are added, the certificate says so.
    let (s, _) = cert("--lambda 5e-1 --patterns 2 --second-layer-patterns 1 --max-iter 1000");
    assert_eq!(s["certificate"], "sampled-patterns", "{s}");
    assert!(num(&s, "network_patterns_added") >= 1.0, "{s}");
    assert!(num(&s, "lower_bound") <= num(&s, "network_objective") * (1.0 + 1e-9));
    // Bad inputs: a column short, --second-layer-patterns 0.
    let short: String = std::fs::read_to_string(&data)
        .expect("csv")
        .lines()
        .map(|l| l.split(',').skip(1).collect::<Vec<_>>().join(","))
        .collect::<Vec<_>>()
        .join("\n");
    let short_path = dir.join("short.csv");
    std::fs::write(&short_path, short).expect("write");
    let out = run(
        "certify --lambda 5e-2 --quiet",
        &[("--model", &out_dir), ("--data", &short_path)],
    );
    assert!(!out.status.success());
    assert!(stderr(&out).contains("s0"), "{}", stderr(&out));
    let out = run(
        "certify --lambda 5e-2 --quiet --second-layer-patterns 0",
        &[("--model", &out_dir), ("--data", &data)],
    );
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains("`second-layer-patterns`"),
        "{}",
        stderr(&out)
    );
}
