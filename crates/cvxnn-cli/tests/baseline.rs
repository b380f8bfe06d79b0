//! `cvxnn baseline` end to end: the network trained by Adam / SGD is saved in `train`'s model
//! format, `predict`, `info` and `certify` take it, and `certify` computes the objective the
//! report states; bad input fails with a message naming the flag; nothing is overwritten without
//! --force.

mod common;

use std::path::{Path, PathBuf};

use common::{num, ok_json, run, tiny_csv, TempDir};
use serde_json::Value;

fn rel(a: f64, b: f64) -> f64 {
    (a - b).abs() / b.abs()
}

fn example(file: &str) -> PathBuf {
    PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/../../examples/data/")).join(file)
}

fn report_file(dir: &Path) -> Value {
    let text = std::fs::read_to_string(dir.join("report.json")).expect("report.json");
    serde_json::from_str(&text).expect("report.json is JSON")
}

#[test]
fn baseline_model_is_taken_by_predict_info_and_certify() {
    let dir = TempDir::new("bl-certify");
    let data = tiny_csv(&dir);
    let model = dir.join("model");
    let r = ok_json(&run(
        "baseline --lambda 0.1 --optimizer adam --width 8 --lr 1e-2 --epochs 500 --test-fraction 0 --json",
        &[("--data", &data), ("--out", &model)],
    ));
    for f in ["model.json", "model.safetensors", "report.json"] {
        assert!(model.join(f).is_file(), "{f}");
    }
    assert_eq!(report_file(&model), r);
    assert_eq!(r["method"], "gradient");
    assert_eq!(r["optimizer"]["name"], "adam");
    assert_eq!(num(&r, "epochs"), 500.0);
    assert_eq!(num(&r, "neurons"), 8.0);
    assert_eq!((num(&r, "n_train"), num(&r, "n_test")), (12.0, 0.0));
    assert!(
        num(&r, "objective") < 0.5 * num(&r, "initial_objective"),
        "{r}"
    );
    let trace = r["trace"].as_array().expect("trace");
    assert_eq!(num(&trace[0], "epoch"), 0.0);
    assert_eq!(
        num(trace.last().expect("points"), "objective"),
        num(&r, "objective")
    );

    // certify recomputes the same objective from the saved weights and bounds it from below.
    let c = ok_json(&run(
        "certify --lambda 0.1 --json -q",
        &[("--model", &model), ("--data", &data)],
    ));
    assert_eq!(c["certificate"], "global");
    let objective = num(&r, "objective");
    assert!(
        rel(num(&c, "network_objective"), objective) < 1e-9,
        "{c}\n{r}"
    );
    assert!(num(&c, "lower_bound") <= objective * (1.0 + 1e-12), "{c}");
    assert_eq!(num(&c, "neurons"), 8.0);

    // predict: one prediction per row, metrics against the target.
    let p = run("predict", &[("--model", &model), ("--data", &data)]);
    assert!(p.status.success(), "{}", String::from_utf8_lossy(&p.stderr));
    let text = String::from_utf8_lossy(&p.stdout);
    assert_eq!(text.lines().count(), 13, "{text}");
    assert!(
        text.lines().skip(1).all(|l| l.parse::<f64>().is_ok()),
        "{text}"
    );
    assert!(String::from_utf8_lossy(&p.stderr).contains("r2"));

    let i = run("info", &[("--model", &model)]);
    assert!(i.status.success());
    let text = String::from_utf8_lossy(&i.stdout);
    assert!(text.contains("trained      by adam"), "{text}");
}

#[test]
fn certify_on_the_same_split_agrees_and_sgd_minibatches_run() {
    let dir = TempDir::new("bl-split");
    let data = tiny_csv(&dir);
    let model = dir.join("model");
    let r = ok_json(&run(
        "baseline --lambda 0.05 --optimizer sgd --momentum 0.5 --batch-size 4 --width 6 --lr 1e-2 \
         --epochs 200 --record-every 50 --test-fraction 0.25 --seed 3 --json",
        &[("--data", &data), ("--out", &model)],
    ));
    assert_eq!(r["optimizer"]["name"], "sgd");
    assert_eq!(num(&r["optimizer"], "momentum"), 0.5);
    assert_eq!(num(&r, "batch_size"), 4.0);
    assert_eq!((num(&r, "n_train"), num(&r, "n_test")), (9.0, 3.0));
    assert_eq!(num(&r, "steps"), 200.0 * 3.0);
    let epochs: Vec<f64> = r["trace"]
        .as_array()
        .expect("trace")
        .iter()
        .map(|p| num(p, "epoch"))
        .collect();
    assert_eq!(epochs, [0.0, 50.0, 100.0, 150.0, 200.0]);
    assert!(r["test"]["mse"].is_number(), "{r}");
    let c = ok_json(&run(
        "certify --lambda 0.05 --test-fraction 0.25 --seed 3 --json -q",
        &[("--model", &model), ("--data", &data)],
    ));
    assert_eq!(num(&c, "n"), 9.0);
    assert!(
        rel(num(&c, "network_objective"), num(&r, "objective")) < 1e-9,
        "{c}\n{r}"
    );
}

#[test]
fn summary_by_default_and_binary_data() {
    let out = run(
        "baseline --optimizer sgd --width 10 --lr 1e-2 --epochs 30 --batch-size 64",
        &[("--data", &example("breast_cancer.csv"))],
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.starts_with("cvxnn baseline:"), "{text}");
    assert!(text.contains("logistic loss"), "{text}");
    assert!(text.contains("objective"), "{text}");
    assert!(text.contains("accuracy"), "{text}");
    // No JSON on stdout without --json.
    assert!(serde_json::from_slice::<Value>(&out.stdout).is_err());
}

#[test]
fn same_seed_same_model_and_no_overwrite_without_force() {
    let dir = TempDir::new("bl-force");
    let data = tiny_csv(&dir);
    let model = dir.join("model");
    let args = "baseline --width 4 --epochs 50 --batch-size 5 --seed 7 --json";
    let first = ok_json(&run(args, &[("--data", &data), ("--out", &model)]));
    let weights = std::fs::read(model.join("model.safetensors")).expect("weights");
    // The same run again is refused before any work and leaves the files alone.
    let out = run(
        "baseline --width 4 --epochs 50 --seed 8",
        &[("--data", &data), ("--out", &model)],
    );
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("--force"), "{err}");
    assert_eq!(
        std::fs::read(model.join("model.safetensors")).expect("weights"),
        weights
    );
    // With --force and the same seed: the same bits.
    let again = ok_json(&run(
        &format!("{args} --force"),
        &[("--data", &data), ("--out", &model)],
    ));
    assert_eq!(again["objective"], first["objective"]);
    assert_eq!(
        std::fs::read(model.join("model.safetensors")).expect("weights"),
        weights
    );
    // An --out that is a file is refused.
    let out = run(
        "baseline --epochs 5",
        &[("--data", &data), ("--out", &data)],
    );
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("not a directory"));
}

#[test]
fn bad_input_fails_naming_the_problem() {
    let dir = TempDir::new("bl-bad");
    let data = tiny_csv(&dir);
    let cases = [
        ("baseline --lr 0", "lr"),
        ("baseline --lr -1", "lr"),
        ("baseline --lr nan", "lr"),
        ("baseline --width 0", "width"),
        ("baseline --epochs 0", "epochs"),
        ("baseline --batch-size 0", "batch-size"),
        ("baseline --lambda -1", "lambda"),
        ("baseline --test-fraction 1", "test-fraction"),
        ("baseline --momentum 0.5", "--momentum"),
        ("baseline --optimizer sgd --momentum 1", "momentum"),
        ("baseline --optimizer lbfgs", "lbfgs"),
        ("baseline --loss logistic", "logistic"),
        ("baseline --record-every 0", "record-every"),
        ("baseline --target nope", "nope"),
        (
            "baseline --optimizer sgd --lr 1e9 --epochs 50",
            "learning rate",
        ),
    ];
    for (words, needle) in cases {
        let out = run(words, &[("--data", &data)]);
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{words} succeeded");
        assert!(err.contains(needle), "{words}: {err}");
    }
    let missing = dir.join("missing.csv");
    let out = run("baseline", &[("--data", &missing)]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("missing.csv"));
}

#[test]
fn multiclass_baseline_saves_a_c_output_model_that_predicts_labels() {
    let dir = TempDir::new("bl-multiclass");
    let model = dir.join("model");
    let iris = example("iris.csv");
    let r = ok_json(&run(
        "baseline --task multiclass --lambda 1e-3 --width 16 --lr 1e-2 --epochs 300 --json",
        &[("--data", &iris), ("--out", &model)],
    ));
    assert_eq!(r["task"], "multiclass");
    assert_eq!(r["loss"], "cross-entropy");
    assert_eq!(num(&r, "outputs"), 3.0);
    assert_eq!(num(&r, "neurons"), 16.0);
    assert!(
        num(&r, "objective") < 0.3 * num(&r, "initial_objective"),
        "{r}"
    );
    assert!(num(&r["test"], "accuracy") >= 0.85, "{r}");
    assert!(r["test"]["confusion"].is_object(), "{r}");
    // A (3, m) output layer; model.json says every neuron feeds every class.
    let net = cvxnn::network::RawNetwork::load(&model.join("model.safetensors")).expect("load");
    assert_eq!((net.outputs, net.w2.len()), (3, 3 * 16));
    let meta: Value = serde_json::from_str(
        &std::fs::read_to_string(model.join("model.json")).expect("model.json"),
    )
    .expect("json");
    assert_eq!(meta["task"], "multiclass");
    assert_eq!(meta["output_mode"], "shared");
    // predict returns class names from the data.
    let p = run("predict", &[("--model", &model), ("--data", &iris)]);
    assert!(p.status.success(), "{}", String::from_utf8_lossy(&p.stderr));
    let text = String::from_utf8_lossy(&p.stdout);
    let file = std::fs::read_to_string(&iris).expect("iris");
    let classes: Vec<&str> = file
        .lines()
        .skip(1)
        .filter_map(|l| l.rsplit(',').next())
        .map(str::trim)
        .collect();
    assert_eq!(text.lines().count(), 151, "{text}");
    assert!(
        text.lines().skip(1).all(|l| classes.contains(&l.trim())),
        "{text}"
    );
    let right = text
        .lines()
        .skip(1)
        .zip(&classes)
        .filter(|(p, t)| p.trim() == **t)
        .count();
    assert!(right >= 135, "{right} of 150");
    // The summary names the classes and says certify does not apply; certify refuses it.
    let s = run(
        "baseline --task multiclass --width 8 --epochs 20",
        &[("--data", &iris)],
    );
    assert!(s.status.success(), "{}", String::from_utf8_lossy(&s.stderr));
    let text = String::from_utf8_lossy(&s.stdout);
    assert!(text.contains("cross-entropy loss"), "{text}");
    assert!(text.contains("3 classes"), "{text}");
    assert!(text.contains("no certificate"), "{text}");
    let c = run(
        "certify --lambda 1e-3 -q",
        &[("--model", &model), ("--data", &iris)],
    );
    assert!(!c.status.success());
    assert!(
        String::from_utf8_lossy(&c.stderr).contains("one-output"),
        "{}",
        String::from_utf8_lossy(&c.stderr)
    );
}
