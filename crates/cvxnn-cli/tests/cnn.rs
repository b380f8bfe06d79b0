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

/// The first `rows` digits (all ten classes), the bundled file only read.
fn digits_subset(dir: &TempDir, rows: usize) -> PathBuf {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples/data/digits.csv");
    let text = std::fs::read_to_string(src).expect("read digits");
    let out: Vec<&str> = text.lines().take(rows + 1).collect();
    let p = dir.join("digits-subset.csv");
    std::fs::write(&p, out.join("\n") + "\n").expect("write csv");
    p
}

/// A C-order little-endian `.npy` file (format 1.0) of `descr` (`<f8`, `<f4`, `<i8`, `|u1`, ...)
/// written by hand, so that the test needs no npy crate.
fn write_npy(path: &Path, descr: &str, shape: &[usize], bytes: &[u8]) {
    let dims: Vec<String> = shape.iter().map(|d| d.to_string()).collect();
    let shape_text = if dims.len() == 1 {
        format!("({},)", dims[0])
    } else {
        format!("({})", dims.join(", "))
    };
    let mut header =
        format!("{{'descr': '{descr}', 'fortran_order': False, 'shape': {shape_text}, }}");
    while (10 + header.len() + 1) % 64 != 0 {
        header.push(' ');
    }
    header.push('\n');
    let mut out = b"\x93NUMPY\x01\x00".to_vec();
    out.extend((header.len() as u16).to_le_bytes());
    out.extend(header.as_bytes());
    out.extend(bytes);
    std::fs::write(path, out).expect("write npy");
}

/// Multiclass CNN (gated, separate outputs, cross-entropy) on 300 digits of all ten classes:
/// certified, the rebuilt network attains the convex objective, the Linear layer has ten
/// outputs, and predict writes the labels with the training accuracy.
#[test]
fn cnn_multiclass_on_digits_subset() {
    let dir = TempDir::new("cnn-multiclass");
    let data = digits_subset(&dir, 300);
    let out_dir = dir.join("model");
    let out = run(
        "train --task multiclass --model cnn-gated-relu --input-shape 1,8,8 --kernel 3x3 --stride 2 --patterns 8 --lambda 1e-2 --tol 1e-5 --test-fraction 0 --json --quiet",
        &[("--data", &data), ("--out", &out_dir)],
    );
    let r = ok_json(&out);
    assert_eq!(r["status"], "converged", "{r}");
    assert_eq!(r["loss"], "cross-entropy");
    assert_eq!(num(&r, "outputs"), 10.0);
    assert!(num(&r, "relative_gap") <= 1e-5, "{r}");
    assert!(num(&r, "dual_bound") <= num(&r, "objective"));
    let rel = (num(&r, "objective") - num(&r, "network_objective")).abs() / num(&r, "objective");
    assert!(rel <= 1e-9, "rebuilt network objective off by {rel}");
    let m = num(&r, "neurons") as usize;
    let shapes = tensor_shapes(&out_dir.join("model.safetensors"));
    assert_eq!(shapes["4.weight"]["shape"], serde_json::json!([10, m]));
    assert_eq!(
        shapes["gate.weight"]["shape"],
        serde_json::json!([m, 1, 3, 3])
    );
    let pred = run("predict", &[("--model", &out_dir), ("--data", &data)]);
    assert!(pred.status.success(), "{}", stderr(&pred));
    let text = String::from_utf8_lossy(&pred.stdout);
    let labels: Vec<&str> = text.lines().skip(1).collect();
    assert_eq!(labels.len(), 300);
    assert!(labels
        .iter()
        .all(|l| l.len() == 1 && l.as_bytes()[0].is_ascii_digit()));
    let acc = r["train"]["accuracy"].as_f64().expect("accuracy");
    assert!(acc >= 0.9, "train accuracy {acc}");
    assert!(
        stderr(&pred).contains(&format!("accuracy {acc:.4}")),
        "{}",
        stderr(&pred)
    );
    let info = run("info", &[("--model", &out_dir)]);
    let info_text = String::from_utf8_lossy(&info.stdout);
    assert!(info_text.contains("cnn-sum-pool"), "{info_text}");
    assert!(info_text.contains("10 classes"), "{info_text}");
}

/// certify on a saved CNN: its objective is the training report's; with the training run's
/// sampled patterns (same seed, same patch matrix) plus the network's own the bound is below
/// it, and for the gated model (whose own patterns are among the training ones) meets it. (A
/// ReLU filter's recomputed pattern `1[Xs u >= 0]` can differ from its training mask on rows
/// where `Xs u` is zero up to rounding, which adds a pattern and may lower the optimum.) At a
/// 100x smaller lambda the same network is far from optimal.
#[test]
fn cnn_certify_own_optimum() {
    let dir = TempDir::new("cnn-certify");
    let data = signals_csv(&dir);
    for (model, patterns, tol) in [("cnn-gated-relu", 20, 1e-8), ("cnn-relu", 10, 1e-6)] {
        let out_dir = dir.join(model);
        let r = ok_json(&run(
            &format!(
                "train --model {model} --input-shape 1,6 --kernel 3 --padding 1 --lambda 1e-2 --test-fraction 0 --json --quiet --patterns {patterns} --tol {tol}"
            ),
            &[("--data", &data), ("--out", &out_dir)],
        ));
        let c = ok_json(&run(
            &format!("certify --lambda 1e-2 --patterns {patterns} --tol 1e-5 --json --quiet"),
            &[("--model", &out_dir), ("--data", &data)],
        ));
        let rel = (num(&c, "network_objective") - num(&r, "network_objective")).abs()
            / num(&r, "network_objective");
        assert!(rel <= 1e-9, "{model}: certify's objective off by {rel}");
        assert!(
            num(&c, "lower_bound") <= num(&c, "network_objective") * (1.0 + 1e-9),
            "{model}: {c}"
        );
        if model == "cnn-gated-relu" {
            assert_eq!(c["optimal"], true, "{model}: {c}");
            assert_eq!(num(&c, "network_patterns_added"), 0.0);
        }
        assert_eq!(c["certificate"], "sampled-patterns");
        assert_eq!(num(&c, "d"), 4.0);
        // At a much smaller lambda the same network is far from optimal.
        let c = ok_json(&run(
            "certify --lambda 1e-4 --patterns 20 --tol 1e-5 --max-iter 2000 --json --quiet",
            &[("--model", &out_dir), ("--data", &data)],
        ));
        assert_eq!(c["optimal"], false, "{model}: {c}");
        assert!(num(&c, "relative_gap") > 1e-2, "{model}: {c}");
    }
}

/// `.npy` input: a (n, 1, 6) f32 array with (n) integer targets trains the same CNN as the CSV
/// (input shape inferred), predict takes the array; wrong shapes and counts are named errors.
#[test]
fn cnn_npy_input_matches_csv() {
    let dir = TempDir::new("cnn-npy");
    let data = signals_csv(&dir);
    let text = std::fs::read_to_string(&data).expect("csv");
    let rows: Vec<Vec<f64>> = text
        .lines()
        .skip(1)
        .map(|l| l.split(',').map(|c| c.parse().expect("number")).collect())
        .collect();
    // Integer targets (binary) so that the npy and CSV runs see the same labels.
    let labels: Vec<i64> = rows.iter().map(|r| i64::from(r[6] > 1.0)).collect();
    let mut csv = String::from("s0,s1,s2,s3,s4,s5,y\n");
    let mut xb = Vec::new();
    for (r, l) in rows.iter().zip(&labels) {
        // f32-exact values: the CSV gets the f32 value's f64 form.
        let v: Vec<f32> = r[..6].iter().map(|&x| x as f32).collect();
        v.iter().for_each(|x| xb.extend(x.to_le_bytes()));
        let cells: Vec<String> = v.iter().map(|&x| (x as f64).to_string()).collect();
        csv += &format!("{},{l}\n", cells.join(","));
    }
    let csv_path = dir.join("signals01.csv");
    std::fs::write(&csv_path, csv).expect("csv");
    let x_npy = dir.join("x.npy");
    write_npy(&x_npy, "<f4", &[10, 1, 6], &xb);
    let y_npy = dir.join("y.npy");
    let yb: Vec<u8> = labels.iter().flat_map(|l| l.to_le_bytes()).collect();
    write_npy(&y_npy, "<i8", &[10], &yb);
    let common = "train --model cnn-gated-relu --kernel 3 --padding 1 --patterns 10 --lambda 1e-2 --test-fraction 0 --json --quiet";
    let from_npy = ok_json(&run(
        common,
        &[
            ("--data", &x_npy),
            ("--target", &y_npy),
            ("--out", &dir.join("m")),
        ],
    ));
    let from_csv = ok_json(&run(
        &format!("{common} --input-shape 1,6"),
        &[("--data", &csv_path)],
    ));
    assert_eq!(from_npy["task"], "binary");
    assert_eq!(
        num(&from_npy, "objective").to_bits(),
        num(&from_csv, "objective").to_bits()
    );
    let pred = run(
        "predict",
        &[("--model", &dir.join("m")), ("--data", &x_npy)],
    );
    assert!(pred.status.success(), "{}", stderr(&pred));
    assert_eq!(String::from_utf8_lossy(&pred.stdout).lines().count(), 11);
    // 9 targets for 10 samples; a 1-D feature array; a given shape that disagrees.
    let y9 = dir.join("y9.npy");
    write_npy(&y9, "<i8", &[9], &yb[..72]);
    let x1 = dir.join("x1.npy");
    write_npy(&x1, "<f4", &[60], &xb);
    for (x, y, extra, needle) in [
        (&x_npy, &y9, "", "9 targets for the 10 samples"),
        (&x1, &y_npy, "", "(n, C, H, W)"),
        (&x_npy, &y_npy, "--input-shape 1,2,3", "`input-shape`"),
    ] {
        let out = run(
            &format!("train --model cnn-gated-relu --kernel 3 --quiet {extra}"),
            &[("--data", x), ("--target", y)],
        );
        assert!(!out.status.success());
        assert!(stderr(&out).contains(needle), "{needle}: {}", stderr(&out));
    }
    let out = run(
        "train --model cnn-gated-relu --kernel 3 --quiet",
        &[("--data", &x_npy)],
    );
    assert!(stderr(&out).contains("`target`"), "{}", stderr(&out));
}

/// `path` and `train --lambda auto` on a CNN: the grid starts at the gated lambda_max (the zero
/// network there, filters just below it), every gated solve is certified, and `--lambda auto`
/// trains at the recommended lambda.
#[test]
fn cnn_path_and_lambda_auto() {
    let dir = TempDir::new("cnn-path");
    let data = signals_csv(&dir);
    let p = ok_json(&run(
        "path --model cnn-gated-relu --input-shape 1,6 --kernel 3 --padding 1 --patterns 10 --json --quiet",
        &[("--data", &data)],
    ));
    let rows = p["rows"].as_array().expect("rows");
    assert_eq!(rows.len(), 20);
    let lambda_max = num(&p, "lambda_max");
    assert!((num(&rows[0], "lambda") - lambda_max).abs() <= 1e-12 * lambda_max);
    assert_eq!(num(&rows[0], "neurons"), 0.0, "{}", rows[0]);
    assert!(num(&rows[1], "neurons") >= 1.0, "{}", rows[1]);
    for r in rows {
        assert_eq!(r["status"], "converged", "{r}");
    }
    let t = ok_json(&run(
        "train --model cnn-gated-relu --input-shape 1,6 --kernel 3 --padding 1 --patterns 10 --lambda auto --json --quiet",
        &[("--data", &data)],
    ));
    let chosen = num(&t["lambda_path"], "recommended_lambda");
    assert_eq!(num(&t, "lambda"), chosen);
}

/// The first `rows` digits as 0 vs rest (1 / 0), the bundled file only read.
fn digits_binary_subset(dir: &TempDir, rows: usize) -> PathBuf {
    let full = digits_binary(dir);
    let text = std::fs::read_to_string(&full).expect("read digits");
    let out: Vec<&str> = text.lines().take(rows + 1).collect();
    let p = dir.join("digits01-subset.csv");
    std::fs::write(&p, out.join("\n") + "\n").expect("write csv");
    p
}

/// `--pool avg:2` (gated) and `--pool max:2` (ReLU) on 100 digits, 0 vs rest: the rebuilt
/// network attains the convex objective, the report says what the program is exact for,
/// `model.safetensors` holds `Linear(m * 9, 1)` (6x6 map, 3x3 windows), predict reproduces the
/// training accuracy, info shows the pooling.
#[test]
fn cnn_local_pooling_train_predict_info() {
    let dir = TempDir::new("cnn-pool");
    let data = digits_binary_subset(&dir, 100);
    for (model, pool, extra, exact) in [
        ("cnn-gated-relu", "avg:2", "--patterns 8 --tol 1e-4", true),
        // On its working set of rows the augmented Lagrangian needs ~19k iterations (1.8 s,
        // release) at 1e-5; at 1e-3 its violation (1e-3) moves the rebuilt objective by 2e-5.
        ("cnn-relu", "max:2", "--patterns 4 --tol 1e-5", false),
    ] {
        let out_dir = dir.join(&format!("{model}-{}", &pool[..3]));
        let out = run(
            &format!(
                "train --model {model} --pool {pool} --input-shape 1,8,8 --kernel 3x3 --lambda 1e-2 --test-fraction 0 --json --quiet {extra}"
            ),
            &[("--data", &data), ("--out", &out_dir)],
        );
        let r = ok_json(&out);
        assert_eq!(r["status"], "converged", "{model} {pool}: {r}");
        assert_eq!(r["architecture"], format!("cnn-{}-pool", &pool[..3]), "{r}");
        assert_eq!(r["pool"], pool);
        assert_eq!(r["exact"], exact, "{model} {pool}: {r}");
        assert!(r["exact_for"].as_str().is_some_and(|s| !s.is_empty()));
        assert!(num(&r, "dual_bound") <= num(&r, "objective"));
        let rel =
            (num(&r, "objective") - num(&r, "network_objective")).abs() / num(&r, "objective");
        assert!(
            rel <= 1e-8,
            "{model} {pool}: rebuilt objective off by {rel}"
        );
        let meta: Value = serde_json::from_str(
            &std::fs::read_to_string(out_dir.join("model.json")).expect("model.json"),
        )
        .expect("json");
        assert_eq!(meta["architecture"], format!("cnn-{}-pool", &pool[..3]));
        assert_eq!(meta["pool"]["size"], 2);
        let m = meta["filters"].as_u64().expect("filters") as usize;
        assert!(m >= 1, "{meta}");
        let shapes = tensor_shapes(&out_dir.join("model.safetensors"));
        assert_eq!(shapes["0.weight"]["shape"], serde_json::json!([m, 1, 3, 3]));
        assert_eq!(shapes["0.bias"]["shape"], serde_json::json!([m]));
        assert_eq!(shapes["4.weight"]["shape"], serde_json::json!([1, m * 9]));
        assert_eq!(
            shapes.get("gate.weight").is_some(),
            model == "cnn-gated-relu"
        );
        let pred = run("predict", &[("--model", &out_dir), ("--data", &data)]);
        assert!(pred.status.success(), "{}", stderr(&pred));
        assert_eq!(String::from_utf8_lossy(&pred.stdout).lines().count(), 101);
        let acc = r["train"]["accuracy"].as_f64().expect("accuracy");
        assert!(acc >= 0.9, "{model} {pool}: train accuracy {acc}");
        assert!(
            stderr(&pred).contains(&format!("accuracy {acc:.4}")),
            "{}",
            stderr(&pred)
        );
        let info = run("info", &[("--model", &out_dir)]);
        let info_text = String::from_utf8_lossy(&info.stdout);
        assert!(
            info_text.contains(&format!("pooling      {pool}")),
            "{info_text}"
        );
        if pool.starts_with("max") {
            // The max-pool program is exact only for filters feeding one window: refused.
            let c = run(
                "certify --lambda 1e-2 --quiet",
                &[("--model", &out_dir), ("--data", &data)],
            );
            assert!(!c.status.success());
            assert!(stderr(&c).contains("`model`"), "{}", stderr(&c));
            continue;
        }
        // Average pooling: the gated nuclear-norm program over the training's patterns plus
        // the network's own recomputes the training objective and bounds it closely.
        let cert = |lambda: &str| {
            ok_json(&run(
                &format!("certify --lambda {lambda} {extra} --json --quiet"),
                &[("--model", &out_dir), ("--data", &data)],
            ))
        };
        let c = cert("1e-2");
        let net = num(&c, "network_objective");
        let trained = num(&r, "network_objective");
        assert!(
            (net - trained).abs() <= 1e-9 * net,
            "certify's objective {net} vs training's {trained}"
        );
        assert!(num(&c, "lower_bound") <= net * (1.0 + 1e-9), "{c}");
        assert!(num(&c, "relative_gap") <= 1e-3, "{c}");
        assert!(c["exact_for"]
            .as_str()
            .is_some_and(|s| s.contains("average pooling")));
        let other = cert("1e-1");
        assert!(num(&other, "relative_gap") > 1e-3, "{other}");
        assert_eq!(other["optimal"], false);
    }
}

/// Bad `--pool` values and combinations fail naming `pool`.
#[test]
fn cnn_bad_pool_arguments_name_pool() {
    let dir = TempDir::new("cnn-pool-bad");
    let data = signals_csv(&dir);
    for (model, words) in [
        ("cnn-relu", "--input-shape 1,6 --kernel 3 --pool avg:0"),
        ("cnn-relu", "--input-shape 1,6 --kernel 3 --pool mean:2"),
        ("cnn-relu", "--input-shape 1,6 --kernel 3 --pool avg"),
        ("cnn-relu", "--input-shape 1,6 --kernel 3 --pool avg:9"),
        (
            "cnn-gated-relu",
            "--input-shape 1,6 --kernel 3 --pool max:2",
        ),
        ("linear-cnn", "--input-shape 1,6 --kernel 3 --pool avg:2"),
        ("linear-cnn", "--input-shape 1,6 --kernel 3 --pool max:2"),
        ("relu", "--pool avg:2"),
    ] {
        let out = run(
            &format!("train --model {model} --quiet {words}"),
            &[("--data", &data)],
        );
        assert!(!out.status.success(), "{model} {words} should fail");
        assert!(
            stderr(&out).contains("pool"),
            "{model} {words}: {}",
            stderr(&out)
        );
    }
}

/// `--init sgd` on 200 digits, 0 vs rest: the ReLU CNN program starts from a CNN trained by
/// Adam. The report carries the warm start; the returned network is the better of the Adam CNN
/// and the rebuilt convex one, its objective is what `network_objective` says (predict
/// reproduces the training accuracy of the saved model), the dual bound is below both, and the
/// warm-started solve ends no worse than a cold one with the same iteration budget.
#[test]
fn cnn_relu_warm_start_from_adam() {
    let dir = TempDir::new("cnn-init");
    let data = digits_binary_subset(&dir, 200);
    let common = "train --model cnn-relu --input-shape 1,8,8 --kernel 3x3 --stride 2 --patterns 8 --lambda 1e-3 --max-iter 200 --test-fraction 0 --json --quiet";
    let out_dir = dir.join("warm");
    let r = ok_json(&run(
        &format!("{common} --init sgd --init-width 12 --init-epochs 300"),
        &[("--data", &data), ("--out", &out_dir)],
    ));
    assert_eq!(r["init"], "sgd", "{r}");
    let (init, rebuilt) = (num(&r, "init_objective"), num(&r, "rebuilt_objective"));
    let network = num(&r, "network_objective");
    assert!(num(&r, "init_seconds") >= 0.0);
    assert!(num(&r, "init_patterns") >= 1.0, "{r}");
    let kept = r["init_kept"].as_bool().expect("init_kept");
    assert_eq!(kept, init < rebuilt, "{r}");
    assert_eq!(network, init.min(rebuilt), "{r}");
    // The warm start is feasible and no worse than Adam, and the solver keeps its best point.
    assert!(
        rebuilt <= init * (1.0 + 1e-9),
        "rebuilt {rebuilt} vs Adam {init}"
    );
    let bound = num(&r, "dual_bound");
    assert!(bound <= network && bound <= num(&r, "objective"), "{r}");
    let cold = ok_json(&run(common, &[("--data", &data)]));
    assert!(cold.get("init").is_none(), "{cold}");
    assert!(
        network <= num(&cold, "network_objective"),
        "warm {network} vs cold {}",
        num(&cold, "network_objective")
    );
    let pred = run("predict", &[("--model", &out_dir), ("--data", &data)]);
    assert!(pred.status.success(), "{}", stderr(&pred));
    let acc = r["train"]["accuracy"].as_f64().expect("accuracy");
    assert!(acc >= 0.95, "train accuracy {acc}");
    assert!(
        stderr(&pred).contains(&format!("accuracy {acc:.4}")),
        "{}",
        stderr(&pred)
    );
}

/// `--init` is refused, naming `init`, where there is no Adam warm start: the gated and the
/// locally pooled CNNs, the circular and three-layer CNNs, the regularization path.
#[test]
fn cnn_init_refused_by_name_elsewhere() {
    let dir = TempDir::new("cnn-init-bad");
    let data = signals_csv(&dir);
    for words in [
        "--model cnn-gated-relu --input-shape 1,6 --kernel 3 --patterns 4",
        "--model cnn-relu --input-shape 1,6 --kernel 3 --pool avg:2 --patterns 4",
        "--model cnn-relu --input-shape 1,6 --kernel 3 --pool max:2 --patterns 4",
        "--model cnn-relu --input-shape 1,6 --kernel 3 --patterns 4 --lambda auto",
        "--model circular-cnn --input-shape 1,6 --kernel 3",
        "--model cnn3-relu --input-shape 1,6 --kernel 3",
    ] {
        let out = run(
            &format!("train --quiet --init sgd --init-epochs 5 {words}"),
            &[("--data", &data)],
        );
        assert!(!out.status.success(), "{words} should fail");
        assert!(stderr(&out).contains("`init`"), "{words}: {}", stderr(&out));
    }
}
