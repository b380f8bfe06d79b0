//! `cvxnn path` and `cvxnn train --lambda auto` end to end: path.json, path.svg, the table, bad
//! grids, occupied output directories.

mod common;

use std::path::{Path, PathBuf};

use common::{num, ok_json, run, tiny_csv, TempDir};
use serde_json::Value;

fn diabetes() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples/data/diabetes.csv")
}

/// Small and fast: gated ReLU over 16 sampled patterns.
const GATED: &str = "--model gated-relu --patterns 16 --max-iter 20000 --quiet";

/// Every opening tag is closed in order (self-closing tags and `<?...?>` aside).
fn tags_balanced(svg: &str) -> bool {
    let mut stack: Vec<String> = Vec::new();
    let mut rest = svg;
    while let Some(i) = rest.find('<') {
        let Some(j) = rest[i..].find('>') else {
            return false;
        };
        let tag = &rest[i + 1..i + j];
        rest = &rest[i + j + 1..];
        if tag.starts_with('?') || tag.starts_with('!') || tag.ends_with('/') {
            continue;
        }
        let name: String = tag
            .trim_start_matches('/')
            .chars()
            .take_while(|c| c.is_alphanumeric())
            .collect();
        if tag.starts_with('/') {
            if stack.pop().as_deref() != Some(name.as_str()) {
                return false;
            }
        } else {
            stack.push(name);
        }
    }
    stack.is_empty()
}

fn rows(json: &Value) -> &Vec<Value> {
    json["rows"].as_array().expect("rows")
}

#[test]
fn path_writes_json_svg_and_table() {
    let dir = TempDir::new("path");
    let out = dir.join("out");
    let res = run(
        &format!("path {GATED}"),
        &[("--data", &diabetes()), ("--out", &out)],
    );
    assert!(
        res.status.success(),
        "{}",
        String::from_utf8_lossy(&res.stderr)
    );
    let json: Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("path.json")).unwrap()).unwrap();
    let rows = rows(&json);
    assert_eq!(rows.len(), 20, "default grid: 20 lambdas");
    let lambda_max = num(&json, "lambda_max");
    assert_eq!(num(&rows[0], "lambda"), lambda_max);
    assert!((num(&rows[19], "lambda") / lambda_max - 1e-4).abs() < 1e-12);
    assert_eq!(num(&rows[0], "neurons"), 0.0);
    for w in rows.windows(2) {
        let slack = num(&w[1], "gap").max(0.0) + 1e-12 * num(&w[0], "objective").abs();
        assert!(num(&w[1], "objective") <= num(&w[0], "objective") + slack);
        assert!(w[1]["validation"]["r2"].is_number() && w[1]["test"]["r2"].is_number());
    }
    let k = num(&json, "recommended_index") as usize;
    assert_eq!(num(&rows[k], "lambda"), num(&json, "recommended_lambda"));
    assert_eq!(json["selection"], "validation r2");
    assert_eq!(json["warm_start"], true);

    let svg = std::fs::read_to_string(out.join("path.svg")).unwrap();
    assert!(svg.starts_with("<svg") && svg.trim_end().ends_with("</svg>"));
    assert!(tags_balanced(&svg));
    for label in [
        "lambda (log scale)",
        "neurons",
        "validation",
        "test",
        "recommended",
    ] {
        assert!(
            svg.contains(label),
            "axis label or legend `{label}` in path.svg"
        );
    }

    let stdout = String::from_utf8_lossy(&res.stdout);
    let table: Vec<&str> = stdout
        .lines()
        .filter(|l| {
            l.len() > 2
                && l[2..]
                    .trim_start()
                    .starts_with(|c: char| c.is_ascii_digit())
        })
        .collect();
    assert_eq!(table.len(), 20, "one table row per lambda:\n{stdout}");
    assert!(stdout.contains("recommended  lambda"));
}

#[test]
fn cold_path_reaches_the_same_objectives() {
    // (The ReLU warm start is compared with cold solves in the library's tests/path.rs.)
    let args = format!("path {GATED} --lambdas 1e0:1e-3:6 --json");
    let warm = ok_json(&run(&args, &[("--data", &diabetes())]));
    let cold = ok_json(&run(&format!("{args} --cold"), &[("--data", &diabetes())]));
    assert_eq!(cold["warm_start"], false);
    assert_eq!(rows(&warm).len(), 6);
    for (a, b) in rows(&warm).iter().zip(rows(&cold)) {
        let slack = num(a, "gap").max(0.0) + num(b, "gap").max(0.0) + 1e-12;
        assert!((num(a, "objective") - num(b, "objective")).abs() <= slack);
    }
}

#[test]
fn bad_lambdas_fail_naming_lambdas_and_write_nothing() {
    let dir = TempDir::new("badgrid");
    let data = tiny_csv(&dir);
    for bad in [
        "1e-1:1e-5",
        "a:b:3",
        "-1e-1:1e-5:5",
        "1e-1:-1e-5:5",
        "1e-1:1e-5:0",
        "1e-5:1e-1:5",
        "1e-3:1e-3:5",
    ] {
        let out = dir.join("out");
        let res = run(
            &format!("path --lambdas {bad} {GATED}"),
            &[("--data", &data), ("--out", &out)],
        );
        let err = String::from_utf8_lossy(&res.stderr);
        assert!(!res.status.success(), "{bad} accepted");
        assert!(err.contains("lambdas"), "{bad}: {err}");
        assert!(!out.exists(), "{bad}: nothing written");
        // The same grid is refused by train --lambda auto.
        let res = run(
            &format!("train --lambda auto --lambdas {bad} {GATED}"),
            &[("--data", &data)],
        );
        assert!(!res.status.success());
        assert!(String::from_utf8_lossy(&res.stderr).contains("lambdas"));
    }
}

#[test]
fn path_refuses_occupied_out_and_adaptive_patterns() {
    let dir = TempDir::new("occupied");
    let data = tiny_csv(&dir);
    let out = dir.join("out");
    std::fs::create_dir_all(&out).unwrap();
    std::fs::write(out.join("path.svg"), "mine").unwrap();
    let res = run(
        &format!("path --lambdas 1e-1:1e-2:3 {GATED}"),
        &[("--data", &data), ("--out", &out)],
    );
    assert!(!res.status.success());
    assert!(String::from_utf8_lossy(&res.stderr).contains("--force"));
    assert_eq!(
        std::fs::read_to_string(out.join("path.svg")).unwrap(),
        "mine"
    );
    assert!(!out.join("path.json").exists());
    let res = run(
        &format!("path --lambdas 1e-1:1e-2:3 {GATED} --force"),
        &[("--data", &data), ("--out", &out)],
    );
    assert!(
        res.status.success(),
        "{}",
        String::from_utf8_lossy(&res.stderr)
    );
    assert!(std::fs::read_to_string(out.join("path.svg"))
        .unwrap()
        .starts_with("<svg"));

    let res = run("path --patterns adaptive --quiet", &[("--data", &data)]);
    assert!(!res.status.success());
    assert!(String::from_utf8_lossy(&res.stderr).contains("patterns"));
    let res = run(
        "train --lambdas 1e-1:1e-2:3 --lambda 1e-2 --quiet",
        &[("--data", &data)],
    );
    assert!(!res.status.success());
    assert!(String::from_utf8_lossy(&res.stderr).contains("lambdas"));
}

#[test]
fn train_lambda_auto_end_to_end() {
    let dir = TempDir::new("auto");
    let out = dir.join("model");
    let res = run(
        &format!("train --lambda auto {GATED} --json"),
        &[("--data", &diabetes()), ("--out", &out)],
    );
    let report = ok_json(&res);
    let path = &report["lambda_path"];
    let lambdas = path["lambdas"].as_array().expect("lambdas");
    assert_eq!(lambdas.len(), 20);
    assert_eq!(path["validation"].as_array().unwrap().len(), 20);
    let chosen = num(&report, "lambda");
    assert_eq!(chosen, num(path, "recommended_lambda"));
    assert!(lambdas.iter().any(|l| l.as_f64() == Some(chosen)));
    assert!(num(path, "lambda_max") >= chosen);
    // The validation split is carved from the training split (354 rows of 442).
    assert_eq!(
        num(path, "n_fit") + num(path, "n_validation"),
        num(&report, "n_train")
    );
    let meta: Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("model.json")).unwrap()).unwrap();
    assert_eq!(num(&meta, "lambda"), chosen);
    let saved: Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("report.json")).unwrap()).unwrap();
    assert_eq!(saved["lambda_path"], *path);
    assert!(String::from_utf8_lossy(&res.stderr).contains("lambda auto"));
}
