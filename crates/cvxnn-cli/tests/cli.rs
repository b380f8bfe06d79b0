//! End-to-end tests of the `cvxnn` binary: bad input, model directories, reports, the exported
//! safetensors weights (read by hand, without the library) and `predict` / `info`.
//!
//! Every run is small (gated ReLU, few patterns, or a capped iteration count) so that the whole
//! file stays fast.

use std::collections::BTreeMap;
use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::atomic::{AtomicUsize, Ordering};

use serde_json::Value;

// ---------------------------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------------------------

/// A fresh directory under the system temp dir, removed on drop.
struct TempDir(PathBuf);

impl TempDir {
    fn new(tag: &str) -> TempDir {
        static COUNTER: AtomicUsize = AtomicUsize::new(0);
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos());
        let k = COUNTER.fetch_add(1, Ordering::Relaxed);
        let dir = std::env::temp_dir().join(format!(
            "cvxnn-cli-test-{}-{tag}-{k}-{nanos}",
            std::process::id()
        ));
        std::fs::create_dir_all(&dir).expect("create temp dir");
        TempDir(dir)
    }

    fn join(&self, name: &str) -> PathBuf {
        self.0.join(name)
    }

    fn write(&self, name: &str, text: &str) -> PathBuf {
        let p = self.join(name);
        std::fs::write(&p, text).expect("write temp file");
        p
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn example(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../examples/data")
        .join(name)
}

fn diabetes() -> PathBuf {
    example("diabetes.csv")
}

fn breast_cancer() -> PathBuf {
    example("breast_cancer.csv")
}

/// Runs `cvxnn` with the whitespace-separated `words`, then each `(flag, path)` pair.
fn run(words: &str, paths: &[(&str, &Path)]) -> Output {
    let mut args: Vec<OsString> = words.split_whitespace().map(Into::into).collect();
    for (flag, path) in paths {
        args.push(flag.into());
        args.push(path.into());
    }
    Command::new(env!("CARGO_BIN_EXE_cvxnn"))
        .args(&args)
        .output()
        .expect("run the cvxnn binary")
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// Asserts a successful run and returns its stdout.
fn ok(o: &Output) -> String {
    assert!(
        o.status.success(),
        "cvxnn failed ({:?})\nstdout:\n{}\nstderr:\n{}",
        o.status,
        stdout(o),
        stderr(o)
    );
    stdout(o)
}

/// Asserts a failed run (non-zero exit, an error on stderr containing every needle) and returns
/// stderr.
fn fails(o: &Output, needles: &[&str]) -> String {
    let err = stderr(o);
    assert!(
        !o.status.success() && o.status.code() != Some(0),
        "expected failure, got {:?}\nstdout:\n{}\nstderr:\n{err}",
        o.status,
        stdout(o)
    );
    assert!(err.contains("error"), "no error message on stderr:\n{err}");
    for n in needles {
        assert!(err.contains(n), "stderr lacks {n:?}:\n{err}");
    }
    err
}

/// `train --quiet --out <fresh dir>` with `words` and `--data data` (plus `paths`): must fail
/// naming every needle, and the output directory must still not exist afterwards.
fn train_fails(data: &Path, words: &str, paths: &[(&str, &Path)], needles: &[&str]) -> String {
    let tmp = TempDir::new("fail");
    let out = tmp.join("model-out");
    let mut all = vec![("--data", data), ("--out", out.as_path())];
    all.extend_from_slice(paths);
    let o = run(&format!("train --quiet {words}"), &all);
    let err = fails(&o, needles);
    assert!(
        !out.exists(),
        "--out {} was created by a failed run",
        out.display()
    );
    err
}

/// `path` as shown in messages.
fn shown(path: &Path) -> String {
    path.display().to_string()
}

/// Small deterministic pseudo-random numbers in [-1, 1).
struct Lcg(u64);

impl Lcg {
    fn next(&mut self) -> f64 {
        self.0 = self
            .0
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        ((self.0 >> 11) as f64 / (1u64 << 53) as f64) * 2.0 - 1.0
    }
}

/// A small regression CSV: features `a,b,c`, target `y` (last column), `n` rows.
fn regression_csv(n: usize) -> String {
    let mut rng = Lcg(7);
    let mut s = String::from("a,b,c,y\n");
    for _ in 0..n {
        let (a, b, c) = (rng.next() * 3.0, rng.next() * 10.0 + 5.0, rng.next());
        let y = (a - 0.2 * b).max(0.0) + 0.5 * c + 0.05 * rng.next();
        s += &format!("{a},{b},{c},{y}\n");
    }
    s
}

/// A fast training run on a small CSV.
const QUICK: &str = "train --model gated-relu --patterns 10 --lambda 1e-2 --quiet";

fn read_json(path: &Path) -> Value {
    let text =
        std::fs::read_to_string(path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{} is not JSON: {e}", path.display()))
}

fn parse_json(text: &str) -> Value {
    serde_json::from_str(text).unwrap_or_else(|e| panic!("not JSON ({e}):\n{text}"))
}

/// `v[a][b]...` as f64, panicking with the path when absent.
fn num(v: &Value, path: &str) -> f64 {
    let mut cur = v;
    for k in path.split('.') {
        cur = cur
            .get(k)
            .unwrap_or_else(|| panic!("report lacks `{path}`: {v}"));
    }
    cur.as_f64()
        .unwrap_or_else(|| panic!("`{path}` is not a number: {cur}"))
}

fn text<'a>(v: &'a Value, key: &str) -> &'a str {
    v.get(key)
        .and_then(Value::as_str)
        .unwrap_or_else(|| panic!("report lacks string `{key}`"))
}

fn close(a: f64, b: f64, rel: f64) -> bool {
    (a - b).abs() <= rel * a.abs().max(b.abs()).max(1.0)
}

const MODEL_FILES: [&str; 3] = ["model.json", "model.safetensors", "report.json"];

/// The three files of a model directory are present.
fn assert_model_dir(dir: &Path) {
    for f in MODEL_FILES {
        assert!(dir.join(f).is_file(), "{} missing", dir.join(f).display());
    }
}

/// Bytes and modification time of each model file.
fn snapshot(dir: &Path) -> Vec<(Vec<u8>, std::time::SystemTime)> {
    MODEL_FILES
        .iter()
        .map(|f| {
            let p = dir.join(f);
            let bytes = std::fs::read(&p).expect("read model file");
            let mtime = std::fs::metadata(&p)
                .and_then(|m| m.modified())
                .expect("mtime");
            (bytes, mtime)
        })
        .collect()
}

// --- Hand-written safetensors reader (no library code) -----------------------------------------

struct Tensor {
    shape: Vec<usize>,
    data: Vec<f64>,
}

/// Parses a safetensors file of f64 tensors: 8-byte little-endian header length, JSON header
/// (`dtype`, `shape`, `data_offsets` relative to the end of the header), raw little-endian data.
/// Returns the tensors and the `__metadata__` entry.
fn read_safetensors(path: &Path) -> (BTreeMap<String, Tensor>, Value) {
    let bytes = std::fs::read(path).expect("read safetensors");
    assert!(bytes.len() >= 8, "file too short");
    let n = u64::from_le_bytes(bytes[..8].try_into().expect("8 bytes")) as usize;
    assert!(8 + n <= bytes.len(), "header length {n} past the end");
    let header: Value = serde_json::from_slice(&bytes[8..8 + n]).expect("JSON header");
    let data = &bytes[8 + n..];
    let mut out = BTreeMap::new();
    let mut metadata = Value::Null;
    for (name, info) in header.as_object().expect("header is an object") {
        if name == "__metadata__" {
            metadata = info.clone();
            continue;
        }
        assert_eq!(info["dtype"], "F64", "tensor {name} dtype");
        let ints = |key: &str| -> Vec<usize> {
            info[key]
                .as_array()
                .unwrap_or_else(|| panic!("tensor {name} lacks {key}"))
                .iter()
                .map(|s| s.as_u64().expect("integer") as usize)
                .collect()
        };
        let (shape, offs) = (ints("shape"), ints("data_offsets"));
        assert_eq!(offs.len(), 2);
        let (s, e) = (offs[0], offs[1]);
        assert!(
            s <= e && e <= data.len(),
            "tensor {name} offsets out of range"
        );
        assert_eq!(
            e - s,
            8 * shape.iter().product::<usize>(),
            "tensor {name} size"
        );
        let vals = data[s..e]
            .chunks_exact(8)
            .map(|c| f64::from_le_bytes(c.try_into().expect("8 bytes")))
            .collect();
        out.insert(name.clone(), Tensor { shape, data: vals });
    }
    (out, metadata)
}

/// A two-layer network read from `model.safetensors`.
struct Net {
    m: usize,
    p: usize,
    /// `m x p`, row-major.
    w1: Vec<f64>,
    b1: Vec<f64>,
    w2: Vec<f64>,
    /// Gate weights (`m x p`, row-major) and biases of a gated ReLU network.
    gates: Option<(Vec<f64>, Vec<f64>)>,
}

impl Net {
    fn load(dir: &Path) -> Net {
        let (t, meta) = read_safetensors(&dir.join("model.safetensors"));
        assert_eq!(meta["format"], "pt", "metadata: {meta}");
        let w1 = &t["0.weight"];
        assert_eq!(w1.shape.len(), 2);
        let (m, p) = (w1.shape[0], w1.shape[1]);
        assert!(m >= 1, "no neurons");
        assert_eq!(t["0.bias"].shape, vec![m]);
        assert_eq!(t["2.weight"].shape, vec![1, m]);
        let gates = t.get("gate.weight").map(|g| {
            assert_eq!(g.shape, vec![m, p]);
            assert_eq!(t["gate.bias"].shape, vec![m]);
            (g.data.clone(), t["gate.bias"].data.clone())
        });
        Net {
            m,
            p,
            w1: w1.data.clone(),
            b1: t["0.bias"].data.clone(),
            w2: t["2.weight"].data.clone(),
            gates,
        }
    }

    /// `sum_j w2_j act_j(W1_j . x + b1_j)`: ReLU, or the gate's 0/1 when gated.
    fn forward(&self, x: &[f64]) -> f64 {
        assert_eq!(x.len(), self.p);
        let dot = |w: &[f64], j: usize, b: f64| -> f64 {
            b + (0..self.p).map(|k| w[j * self.p + k] * x[k]).sum::<f64>()
        };
        (0..self.m)
            .map(|j| {
                let pre = dot(&self.w1, j, self.b1[j]);
                let act = match &self.gates {
                    Some((gw, gb)) if dot(gw, j, gb[j]) >= 0.0 => pre,
                    Some(_) => 0.0,
                    None => pre.max(0.0),
                };
                self.w2[j] * act
            })
            .sum()
    }
}

/// Rows of raw features of a simple CSV (no quoting), in the order of `features`.
fn raw_rows(csv: &Path, features: &[String]) -> Vec<Vec<f64>> {
    let text = std::fs::read_to_string(csv).expect("read csv");
    let mut lines = text.lines().filter(|l| !l.trim().is_empty());
    let header: Vec<&str> = lines
        .next()
        .expect("header")
        .split(',')
        .map(str::trim)
        .collect();
    let idx: Vec<usize> = features
        .iter()
        .map(|f| {
            header
                .iter()
                .position(|h| h == f)
                .unwrap_or_else(|| panic!("column {f} not in {}", csv.display()))
        })
        .collect();
    lines
        .map(|l| {
            let cells: Vec<&str> = l.split(',').map(str::trim).collect();
            idx.iter()
                .map(|&k| cells[k].parse::<f64>().expect("numeric cell"))
                .collect()
        })
        .collect()
}

/// The `prediction` column written by `cvxnn predict`.
fn read_predictions(text: &str) -> Vec<f64> {
    let mut lines = text.lines();
    assert_eq!(lines.next(), Some("prediction"), "predictions header");
    lines
        .map(|l| {
            l.trim()
                .parse::<f64>()
                .unwrap_or_else(|_| panic!("bad prediction {l:?}"))
        })
        .collect()
}

fn feature_names(dir: &Path) -> Vec<String> {
    read_json(&dir.join("model.json"))["feature_names"]
        .as_array()
        .expect("feature_names")
        .iter()
        .map(|v| v.as_str().expect("name").to_string())
        .collect()
}

/// `predict --model dir --data data` printed to stdout, parsed.
fn predict_stdout(dir: &Path, data: &Path) -> Vec<f64> {
    read_predictions(&ok(&run("predict", &[("--model", dir), ("--data", data)])))
}

/// Compares `predict` on `data` with a forward pass through the weights read by hand.
fn assert_predict_matches_weights(dir: &Path, data: &Path) {
    let net = Net::load(dir);
    let names = feature_names(dir);
    assert_eq!(net.p, names.len());
    let preds = predict_stdout(dir, data);
    let rows = raw_rows(data, &names);
    assert_eq!(preds.len(), rows.len());
    for (i, (x, &p)) in rows.iter().zip(&preds).enumerate() {
        let f = net.forward(x);
        assert!(close(f, p, 1e-9), "row {i}: forward {f}, predicted {p}");
    }
}

// ---------------------------------------------------------------------------------------------
// 1. Bad input: clear error, non-zero exit, nothing written.
// ---------------------------------------------------------------------------------------------

#[test]
fn missing_data_file() {
    let tmp = TempDir::new("missing");
    let p = tmp.join("nope.csv");
    train_fails(&p, "", &[], &[&shown(&p), "No such file"]);
}

#[test]
fn io_error_cause_is_printed_once() {
    let tmp = TempDir::new("missing2");
    let err = train_fails(&tmp.join("nope.csv"), "", &[], &["No such file"]);
    assert_eq!(err.matches("No such file").count(), 1, "{err}");
}

#[test]
fn empty_data_file() {
    let tmp = TempDir::new("empty");
    for (i, body) in ["", "\n\n", "  \n"].iter().enumerate() {
        let p = tmp.write(&format!("empty{i}.csv"), body);
        train_fails(&p, "", &[], &[&shown(&p), "empty"]);
    }
}

#[test]
fn header_only() {
    let tmp = TempDir::new("header");
    let p = tmp.write("h.csv", "a,b,y\n");
    train_fails(&p, "", &[], &[&shown(&p), "no data rows"]);
}

#[test]
fn ragged_row_names_its_line() {
    let tmp = TempDir::new("ragged");
    let p = tmp.write("r.csv", "a,b,y\n1,2,3\n4,5\n6,7,8\n");
    train_fails(
        &p,
        "",
        &[],
        &[&shown(&p), "line 3", "expected 3 fields", "found 2"],
    );
    // Too many fields too.
    let p = tmp.write("r2.csv", "a,b,y\n1,2,3\n4,5,6\n7,8,9,10\n");
    train_fails(&p, "", &[], &["line 4", "found 4"]);
}

#[test]
fn non_numeric_cell_names_line_and_column() {
    let tmp = TempDir::new("nonnum");
    let p = tmp.write("n.csv", "a,b,y\n1,2,3\n4,abc,6\n");
    train_fails(
        &p,
        "",
        &[],
        &[&shown(&p), "line 3", "column `b`", "\"abc\""],
    );
    // An empty cell, and a bad target cell for a regression (a text target is otherwise read
    // as class labels).
    let p = tmp.write("e.csv", "a,b,y\n1,2,3\n4,,6\n");
    train_fails(&p, "", &[], &["line 3", "column `b`", "empty"]);
    let p = tmp.write("t.csv", "a,b,y\n1,2,3\n4,5,x\n");
    train_fails(
        &p,
        "--task regression",
        &[],
        &["line 3", "column `y`", "\"x\""],
    );
}

#[test]
fn nan_and_infinite_cells() {
    let tmp = TempDir::new("nonfinite");
    for (i, bad) in ["NaN", "nan", "inf", "-inf", "+Infinity", "1e400"]
        .iter()
        .enumerate()
    {
        let p = tmp.write(&format!("nf{i}.csv"), &format!("a,b,y\n1,2,3\n4,{bad},6\n"));
        train_fails(
            &p,
            "",
            &[],
            &[&shown(&p), "line 3", "column `b`", bad, "not finite"],
        );
    }
    // In the target column.
    let p = tmp.write("nft.csv", "a,b,y\n1,2,3\n4,5,nan\n");
    train_fails(&p, "", &[], &["line 3", "column `y`", "not finite"]);
}

#[test]
fn missing_target_column() {
    let tmp = TempDir::new("target");
    let p = tmp.write("d.csv", &regression_csv(20));
    train_fails(
        &p,
        "--target nope",
        &[],
        &[&shown(&p), "`nope`", "not found", "`a`, `b`, `c`, `y`"],
    );
}

#[test]
fn binary_task_on_three_valued_target() {
    let tmp = TempDir::new("binary3");
    let p = tmp.write(
        "three.csv",
        "a,b,y\n1,2,0\n3,4,1\n5,6,2\n7,8,0\n9,1,1\n2,3,2\n",
    );
    train_fails(
        &p,
        "--task binary",
        &[],
        &[&shown(&p), "column `y`", "binary", "2 distinct", "found 3"],
    );
}

#[test]
fn logistic_loss_on_regression_target() {
    let tmp = TempDir::new("logistic");
    let p = tmp.write("d.csv", &regression_csv(20));
    train_fails(&p, "--loss logistic", &[], &["loss", "logistic", "binary"]);
    // Also when the task is forced to regression on a two-valued target.
    let p = tmp.write("two.csv", "a,y\n1,0\n2,1\n3,0\n4,1\n5,0\n");
    train_fails(
        &p,
        "--task regression --loss logistic",
        &[],
        &["loss", "logistic"],
    );
}

#[test]
fn lambda_must_be_positive_and_finite() {
    let tmp = TempDir::new("lambda");
    let p = tmp.write("d.csv", &regression_csv(20));
    train_fails(&p, "--lambda -1", &[], &["lambda", "> 0", "-1"]);
    train_fails(&p, "--lambda 0", &[], &["lambda", "> 0"]);
    train_fails(&p, "--lambda nan", &[], &["lambda", "NaN"]);
    train_fails(&p, "--lambda inf", &[], &["lambda", "inf"]);
    train_fails(&p, "--lambda abc", &[], &["lambda"]);
}

#[test]
fn single_precision_is_for_gated_relu_only() {
    let tmp = TempDir::new("precision");
    let p = tmp.write("d.csv", &regression_csv(40));
    train_fails(
        &p,
        "--model relu --precision f32",
        &[],
        &["precision", "gated-relu"],
    );
    train_fails(&p, "--precision f16", &[], &["precision"]);
    let out = tmp.join("gated");
    let o = run(
        "train --quiet --json --model gated-relu --patterns 20 --precision f32 --lambda 1e-2",
        &[("--data", p.as_path()), ("--out", out.as_path())],
    );
    let report = parse_json(&ok(&o));
    assert_eq!(text(&report, "precision"), "f32");
    assert_eq!(text(&report, "status"), "converged");
}

#[test]
fn negative_exponent_values_are_parsed() {
    let tmp = TempDir::new("lambda-exp");
    let p = tmp.write("d.csv", &regression_csv(20));
    train_fails(&p, "--lambda -1e-3", &[], &["lambda", "> 0"]);
}

#[test]
fn test_fraction_out_of_range() {
    let tmp = TempDir::new("fraction");
    let p = tmp.write("d.csv", &regression_csv(20));
    for bad in ["1.5", "1", "-0.1", "nan"] {
        train_fails(
            &p,
            &format!("--test-fraction {bad}"),
            &[],
            &["test-fraction", "[0, 1)"],
        );
    }
    // A fraction that leaves fewer than 2 training rows.
    train_fails(
        &p,
        "--test-fraction 0.99",
        &[],
        &["test-fraction", "training"],
    );
}

#[test]
fn zero_patterns() {
    let tmp = TempDir::new("patterns");
    let p = tmp.write("d.csv", &regression_csv(20));
    train_fails(&p, "--patterns 0", &[], &["patterns", "at least 1"]);
}

#[test]
fn other_solver_settings_are_validated() {
    let tmp = TempDir::new("settings");
    let p = tmp.write("d.csv", &regression_csv(20));
    train_fails(&p, "--tol 0", &[], &["tol", "> 0"]);
    train_fails(&p, "--tol=-1e-6", &[], &["tol", "> 0"]);
    train_fails(&p, "--max-iter 0", &[], &["max-iter"]);
}

#[test]
fn gates_file_of_wrong_width() {
    let tmp = TempDir::new("gates");
    let p = tmp.write("d.csv", &regression_csv(20));
    // 3 features + bias: d = 4.
    let g = tmp.write("g.csv", "1,2\n3,4\n");
    train_fails(
        &p,
        "",
        &[("--gates", &g)],
        &["--gates", &shown(&g), "line 1", "gate row 1", "d = 4"],
    );
    // The width is checked on every row.
    let g = tmp.write("g2.csv", "1,2,3,4\n1,2,3\n");
    train_fails(
        &p,
        "",
        &[("--gates", &g)],
        &["line 2", "gate row 2", "d = 4"],
    );
    // Without the bias column d = 3, so 4 values are too many.
    let g = tmp.write("g3.csv", "1,2,3,4\n");
    train_fails(
        &p,
        "--no-bias",
        &[("--gates", &g)],
        &["gate row 1", "d = 3"],
    );
}

#[test]
fn missing_gates_file() {
    let tmp = TempDir::new("nogates");
    let p = tmp.write("d.csv", &regression_csv(20));
    let g = tmp.join("nope-gates.csv");
    train_fails(
        &p,
        "",
        &[("--gates", &g)],
        &["--gates", &shown(&g), "No such file"],
    );
}

#[test]
fn patterns_and_gates_conflict() {
    let tmp = TempDir::new("conflict");
    let p = tmp.write("d.csv", &regression_csv(20));
    let g = tmp.write("g.csv", "1,0,0,0\n");
    train_fails(
        &p,
        "--patterns 5",
        &[("--gates", &g)],
        &["--patterns", "--gates"],
    );
}

#[test]
fn decompose_needs_gated_relu() {
    let tmp = TempDir::new("decompose");
    let p = tmp.write("d.csv", &regression_csv(20));
    train_fails(
        &p,
        "--decompose --model relu",
        &[],
        &["--decompose", "gated-relu"],
    );
    // relu is the default model.
    train_fails(&p, "--decompose", &[], &["--decompose", "gated-relu"]);
}

// ---------------------------------------------------------------------------------------------
// Options that work.
// ---------------------------------------------------------------------------------------------

#[test]
fn gates_file_of_right_width_trains() {
    let tmp = TempDir::new("gatesok");
    let p = tmp.write("d.csv", &regression_csv(30));
    let g = tmp.write(
        "g.csv",
        "1,0,0,0\n-1,0,0,0\n0,1,0,0.5\n0,0,1,-0.5\n1,1,1,0\n",
    );
    let o = run(
        "train --model gated-relu --lambda 1e-2 --json --quiet",
        &[("--data", &p), ("--gates", &g)],
    );
    let r = parse_json(&ok(&o));
    let patterns = num(&r, "patterns");
    assert!((1.0..=5.0).contains(&patterns), "{patterns}");
    assert_eq!(num(&r, "d"), 4.0);
}

#[test]
fn decompose_with_gated_relu_reports_the_objective() {
    let tmp = TempDir::new("decompose-ok");
    let p = tmp.write("d.csv", &regression_csv(30));
    let o = run(&format!("{QUICK} --decompose --json"), &[("--data", &p)]);
    let r = parse_json(&ok(&o));
    let dec = num(&r, "decomposed_objective");
    assert!(dec.is_finite() && dec > 0.0, "{dec}");
    assert!(stderr(&o).contains("decomposed"), "{}", stderr(&o));
}

#[test]
fn no_bias_and_no_standardize_round_trip() {
    let tmp = TempDir::new("nobias");
    let p = tmp.write("d.csv", &regression_csv(40));
    for (flags, name) in [
        ("--no-bias", "nobias"),
        ("--no-standardize", "nostd"),
        ("--no-bias --no-standardize", "neither"),
    ] {
        let dir = tmp.join(name);
        let o = run(
            &format!("{QUICK} {flags} --json"),
            &[("--data", &p), ("--out", &dir)],
        );
        let r = parse_json(&ok(&o));
        let d = if flags.contains("--no-bias") {
            3.0
        } else {
            4.0
        };
        assert_eq!(num(&r, "d"), d, "{flags}");
        let meta = read_json(&dir.join("model.json"));
        assert_eq!(meta["bias"], !flags.contains("--no-bias"), "{flags}");
        assert_eq!(
            meta["standardize"],
            !flags.contains("--no-standardize"),
            "{flags}"
        );
        if flags == "--no-bias --no-standardize" {
            // Nothing is folded in: hidden and gate biases are zero.
            let net = Net::load(&dir);
            assert!(net.b1.iter().all(|&b| b == 0.0), "{:?}", net.b1);
            let (_, gb) = net.gates.as_ref().expect("gated model");
            assert!(gb.iter().all(|&b| b == 0.0), "{gb:?}");
        }
        assert_predict_matches_weights(&dir, &p);
    }
}

// ---------------------------------------------------------------------------------------------
// 2. --out onto an existing model.
// ---------------------------------------------------------------------------------------------

#[test]
fn out_refuses_existing_model_without_force() {
    let tmp = TempDir::new("force");
    let data = tmp.write("d.csv", &regression_csv(40));
    let out = tmp.join("model");
    ok(&run(QUICK, &[("--data", &data), ("--out", &out)]));
    assert_model_dir(&out);
    let before = snapshot(&out);
    // Make a rewrite visible in the modification times even on coarse file systems.
    std::thread::sleep(std::time::Duration::from_millis(20));

    // Same command, and a different seed: refused, nothing touched.
    for seed in ["0", "3"] {
        let o = run(
            &format!("{QUICK} --seed {seed}"),
            &[("--data", &data), ("--out", &out)],
        );
        fails(&o, &[&shown(&out), "exists", "--force"]);
        assert_eq!(
            snapshot(&out),
            before,
            "model files changed by a refused run"
        );
    }

    // One of the files alone is enough to refuse.
    let partial = tmp.join("partial");
    std::fs::create_dir_all(&partial).expect("mkdir");
    std::fs::write(partial.join("report.json"), "{}").expect("write");
    let o = run(QUICK, &[("--data", &data), ("--out", &partial)]);
    fails(&o, &["report.json", "exists", "--force"]);
    assert_eq!(
        std::fs::read(partial.join("report.json")).expect("read"),
        b"{}"
    );
    assert!(!partial.join("model.json").exists());
    assert!(!partial.join("model.safetensors").exists());

    // With --force: replaced.
    let o = run(
        &format!("{QUICK} --seed 3 --force"),
        &[("--data", &data), ("--out", &out)],
    );
    ok(&o);
    assert_model_dir(&out);
    assert_eq!(num(&read_json(&out.join("report.json")), "seed"), 3.0);
    assert_eq!(read_json(&out.join("model.json"))["seed"], 3);
    assert_ne!(snapshot(&out), before);
}

#[test]
fn out_onto_a_regular_file_fails() {
    let tmp = TempDir::new("outfile");
    let data = tmp.write("d.csv", &regression_csv(20));
    let out = tmp.write("not-a-dir", "keep me");
    let o = run(QUICK, &[("--data", &data), ("--out", &out)]);
    fails(&o, &["not-a-dir"]);
    assert_eq!(std::fs::read_to_string(&out).expect("read"), "keep me");
}

// ---------------------------------------------------------------------------------------------
// 3. Happy path, regression.
// ---------------------------------------------------------------------------------------------

/// Trains gated ReLU on diabetes (`--patterns 50`) into a fresh directory, checks the report
/// (everything except convergence) and returns it.
fn train_diabetes_gated(lambda: &str) -> (TempDir, Value) {
    let tmp = TempDir::new("happy");
    let dir = tmp.join("model");
    let o = run(
        &format!("train --model gated-relu --patterns 50 --lambda {lambda} --json --quiet"),
        &[("--data", &diabetes()), ("--out", &dir)],
    );
    let printed = ok(&o);
    // The human summary goes to stderr with --json.
    assert!(stderr(&o).contains("dual bound"), "{}", stderr(&o));
    assert_model_dir(&dir);
    let report = read_json(&dir.join("report.json"));
    // stdout is exactly the report.
    assert_eq!(
        parse_json(&printed),
        report,
        "stdout differs from report.json"
    );
    let file = std::fs::read_to_string(dir.join("report.json")).expect("read");
    assert_eq!(printed.trim(), file.trim());
    for key in [
        "objective",
        "network_objective",
        "dual_bound",
        "gap",
        "relative_gap",
        "iterations",
        "seconds",
        "neurons",
        "patterns",
        "lambda",
        "n_train",
        "n_test",
        "d",
        "train.mse",
        "test.mse",
    ] {
        assert!(num(&report, key).is_finite(), "{key}");
    }
    assert_eq!(text(&report, "certificate"), "sampled-patterns");
    assert!(!text(&report, "status").is_empty());
    assert_eq!(text(&report, "model"), "gated-relu");
    assert_eq!(text(&report, "task"), "regression");
    assert_eq!(text(&report, "loss"), "squared");
    let (obj, dual) = (num(&report, "objective"), num(&report, "dual_bound"));
    assert!(dual <= obj, "dual bound {dual} above objective {obj}");
    assert!(close(num(&report, "gap"), obj - dual, 1e-9));
    assert!(close(
        num(&report, "relative_gap"),
        (obj - dual) / obj.abs(),
        1e-9
    ));
    assert!(close(num(&report, "network_objective"), obj, 1e-8));
    assert_eq!(
        num(&report, "lambda"),
        lambda.parse::<f64>().expect("lambda")
    );
    assert_eq!(num(&report, "n_train"), 354.0);
    assert_eq!(num(&report, "n_test"), 88.0);
    assert_eq!(num(&report, "d"), 11.0);
    assert!((1.0..=50.0).contains(&num(&report, "patterns")));
    assert!(num(&report, "neurons") <= num(&report, "patterns"));
    assert!(num(&report, "iterations") >= 1.0 && num(&report, "seconds") >= 0.0);
    assert!(num(&report, "train.mse") >= 0.0 && num(&report, "test.mse") >= 0.0);
    assert!(report["train"].get("accuracy").is_none());
    let meta = read_json(&dir.join("model.json"));
    assert_eq!(meta["model"], "gated-relu");
    assert_eq!(meta["target"], "y");
    assert!(meta.get("labels").is_none());
    (tmp, report)
}

/// The run of the issue, at `--lambda 1e-2`.
#[test]
fn happy_path_regression_converges_at_lambda_1e_2() {
    let (_tmp, report) = train_diabetes_gated("1e-2");
    assert_eq!(text(&report, "status"), "converged");
    assert!(num(&report, "relative_gap") <= 1e-6);
}

/// The same run at `--lambda 1e-1`, which converges in a few thousand iterations.
#[test]
fn happy_path_regression() {
    let (_tmp, report) = train_diabetes_gated("1e-1");
    assert_eq!(text(&report, "status"), "converged");
    assert!(num(&report, "relative_gap") <= 1e-6);
    assert!(num(&report, "iterations") < 20_000.0);
}

#[test]
fn summary_without_json_goes_to_stdout() {
    let tmp = TempDir::new("summary");
    let data = tmp.write("d.csv", &regression_csv(30));
    let out = ok(&run(QUICK, &[("--data", &data)]));
    for k in ["status", "objective", "dual bound", "neurons", "train"] {
        assert!(out.contains(k), "summary lacks {k}:\n{out}");
    }
    assert!(serde_json::from_str::<Value>(&out).is_err());
}

// ---------------------------------------------------------------------------------------------
// 4. + 5. Binary classification and the exported weights.
// ---------------------------------------------------------------------------------------------

/// Trains ReLU on breast_cancer (`--patterns 20 --lambda 1e-2`) into `dir`, checks the report
/// (everything except convergence) and returns it.
fn train_breast_cancer_relu(dir: &Path, extra: &str) -> Value {
    let o = run(
        &format!("train --model relu --patterns 20 --lambda 1e-2 --json --quiet {extra}"),
        &[("--data", &breast_cancer()), ("--out", dir)],
    );
    let printed = ok(&o);
    assert_model_dir(dir);
    let report = read_json(&dir.join("report.json"));
    assert_eq!(parse_json(&printed), report);
    assert_eq!(text(&report, "task"), "binary");
    assert_eq!(text(&report, "loss"), "logistic");
    assert_eq!(text(&report, "model"), "relu");
    assert_eq!(text(&report, "certificate"), "sampled-patterns");
    assert_eq!(num(&report, "n_train") + num(&report, "n_test"), 569.0);
    assert_eq!(num(&report, "d"), 31.0);
    let train_acc = num(&report, "train.accuracy");
    let test_acc = num(&report, "test.accuracy");
    assert!((0.0..=1.0).contains(&train_acc));
    assert!(test_acc > 0.9, "test accuracy {test_acc}");
    assert!(report["train"].get("mse").is_none());
    let meta = read_json(&dir.join("model.json"));
    assert_eq!(meta["labels"], serde_json::json!(["0", "1"]));
    assert!(num(&report, "test.balanced_accuracy") > 0.9);
    assert_eq!(
        report["test"]["confusion"]["labels"],
        serde_json::json!(["0", "1"])
    );
    report
}

/// The run of the issue, to convergence.
#[test]
#[ignore = "slow: relu on breast_cancer, --patterns 20 --lambda 1e-2 certifies only after ~1e5 iterations (34 s in release); run with --ignored"]
fn binary_relu_converges() {
    let tmp = TempDir::new("binary-conv");
    let report = train_breast_cancer_relu(&tmp.join("model"), "");
    assert_eq!(text(&report, "status"), "converged");
    assert!(num(&report, "relative_gap") <= 1e-6);
}

/// Binary ReLU model with a capped iteration count; its predictions (the original labels) match
/// a hand-written forward pass through the exported weights: forward >= 0 -> 1, else 0.
#[test]
fn binary_relu_and_export_round_trip() {
    let tmp = TempDir::new("binary");
    let dir = tmp.join("model");
    let report = train_breast_cancer_relu(&dir, "--max-iter 3000");
    let status = text(&report, "status");
    assert!(
        status == "converged" || status == "max-iterations",
        "{status}"
    );
    assert!(num(&report, "violation") >= 0.0);

    let net = Net::load(&dir);
    assert!(net.gates.is_none(), "a relu model has no gate tensors");
    assert_eq!(net.p, 30);
    assert_eq!(net.m as f64, num(&report, "neurons"));
    let names = feature_names(&dir);
    assert_eq!(names.len(), 30);
    let data = breast_cancer();
    let preds_path = tmp.join("preds.csv");
    let o = run(
        "predict",
        &[("--model", &dir), ("--data", &data), ("--out", &preds_path)],
    );
    ok(&o);
    // The target column is present, so the metrics go to stderr.
    assert!(stderr(&o).contains("accuracy"), "{}", stderr(&o));
    let preds = read_predictions(&std::fs::read_to_string(&preds_path).expect("preds"));
    let rows = raw_rows(&data, &names);
    assert_eq!(preds.len(), rows.len());
    let mut checked = 0;
    for (i, (x, &p)) in rows.iter().zip(&preds).enumerate() {
        let f = net.forward(x);
        assert!(
            p == 0.0 || p == 1.0,
            "row {i}: prediction {p} is not a label"
        );
        if f.abs() < 1e-9 {
            continue; // too close to the decision boundary to compare
        }
        let expect = if f >= 0.0 { 1.0 } else { 0.0 };
        assert_eq!(p, expect, "row {i}: forward {f}, predicted {p}");
        checked += 1;
    }
    assert!(checked > 500, "{checked}");
}

/// Regression ReLU model on diabetes: `predict` equals the hand-written forward pass.
#[test]
fn regression_relu_export_round_trip() {
    let tmp = TempDir::new("roundtrip");
    let dir = tmp.join("model");
    let data = diabetes();
    ok(&run(
        "train --model relu --patterns 20 --lambda 1e-2 --max-iter 2000 --quiet",
        &[("--data", &data), ("--out", &dir)],
    ));
    let net = Net::load(&dir);
    assert!(net.gates.is_none(), "a relu model has no gate tensors");
    assert_eq!(net.p, 10);
    assert_eq!(
        net.m as f64,
        num(&read_json(&dir.join("report.json")), "neurons")
    );
    let names = feature_names(&dir);
    assert_eq!(
        names,
        ["age", "sex", "bmi", "bp", "s1", "s2", "s3", "s4", "s5", "s6"]
    );
    let preds_path = tmp.join("preds.csv");
    ok(&run(
        "predict",
        &[("--model", &dir), ("--data", &data), ("--out", &preds_path)],
    ));
    let written = std::fs::read_to_string(&preds_path).expect("preds");
    let preds = read_predictions(&written);
    let rows = raw_rows(&data, &names);
    assert_eq!(preds.len(), 442);
    for (i, (x, &p)) in rows.iter().zip(&preds).enumerate() {
        let f = net.forward(x);
        assert!(close(f, p, 1e-9), "row {i}: forward {f}, predicted {p}");
    }
    // Without --out the same text goes to stdout.
    let o = run("predict", &[("--model", &dir), ("--data", &data)]);
    assert_eq!(ok(&o), written);
}

/// Gated ReLU model: the exported gates reproduce `predict` too.
#[test]
fn gated_relu_export_round_trip() {
    let tmp = TempDir::new("gated-roundtrip");
    let dir = tmp.join("model");
    let data = diabetes();
    ok(&run(
        "train --model gated-relu --patterns 20 --lambda 1e-1 --max-iter 2000 --quiet",
        &[("--data", &data), ("--out", &dir)],
    ));
    assert!(
        Net::load(&dir).gates.is_some(),
        "a gated model stores its gates"
    );
    assert_predict_matches_weights(&dir, &data);
}

// ---------------------------------------------------------------------------------------------
// 6. predict: column checks and --out.
// ---------------------------------------------------------------------------------------------

/// A model trained on `a,b,c -> y` (40 rows of `tmp/train.csv`), in `tmp/model`.
fn small_model(tmp: &TempDir) -> PathBuf {
    let data = tmp.write("train.csv", &regression_csv(40));
    let dir = tmp.join("model");
    ok(&run(QUICK, &[("--data", &data), ("--out", &dir)]));
    dir
}

#[test]
fn predict_rejects_mismatched_columns() {
    let tmp = TempDir::new("predict-cols");
    let dir = small_model(&tmp);
    let out = tmp.join("preds.csv");
    let predict = |data: &Path| {
        run(
            "predict",
            &[("--model", &dir), ("--data", data), ("--out", &out)],
        )
    };

    let missing = tmp.write("missing.csv", "a,c,y\n1,2,3\n");
    fails(
        &predict(&missing),
        &[&shown(&missing), "missing feature column", "`b`"],
    );
    assert!(!out.exists());

    let extra = tmp.write("extra.csv", "a,b,c,zz\n1,2,3,4\n");
    fails(
        &predict(&extra),
        &[&shown(&extra), "unexpected column", "`zz`"],
    );
    assert!(!out.exists());

    // A differently named target is an unknown column too.
    let renamed = tmp.write("renamed.csv", "a,b,c,target\n1,2,3,4\n");
    fails(&predict(&renamed), &["unexpected column", "`target`"]);
    assert!(!out.exists());

    // Bad cells are reported as in training.
    let bad = tmp.write("bad.csv", "b,a,c\n1,2,3\n4,x,6\n");
    fails(&predict(&bad), &["line 3", "column `a`", "\"x\""]);
    assert!(!out.exists());

    // Columns in another order, target absent: fine; one prediction per row.
    let shuffled = tmp.write("shuffled.csv", "c,b,a\n0.1,5,1\n-0.2,7,2\n0.3,9,-1\n");
    ok(&predict(&shuffled));
    let preds = read_predictions(&std::fs::read_to_string(&out).expect("preds"));
    assert_eq!(preds.len(), 3);
}

#[test]
fn predict_reorders_columns_like_the_model() {
    let tmp = TempDir::new("predict-order");
    let dir = small_model(&tmp);
    let a = tmp.write("abc.csv", "a,b,c\n1,5,0.1\n2,7,-0.2\n-1,9,0.3\n");
    let b = tmp.write("cab.csv", "c,a,b,y\n0.1,1,5,0\n-0.2,2,7,0\n0.3,-1,9,0\n");
    assert_eq!(predict_stdout(&dir, &a), predict_stdout(&dir, &b));
}

#[test]
fn predict_out_refuses_existing_file_without_force() {
    let tmp = TempDir::new("predict-out");
    let dir = small_model(&tmp);
    let data = tmp.join("train.csv");
    let out = tmp.write("preds.csv", "keep me\n");
    let paths = [
        ("--model", dir.as_path()),
        ("--data", &data),
        ("--out", &out),
    ];
    fails(
        &run("predict", &paths),
        &[&shown(&out), "exists", "--force"],
    );
    assert_eq!(std::fs::read_to_string(&out).expect("read"), "keep me\n");
    ok(&run("predict --force", &paths));
    let preds = read_predictions(&std::fs::read_to_string(&out).expect("read"));
    assert_eq!(preds.len(), 40);
}

#[test]
fn predict_and_info_need_a_model_directory() {
    let tmp = TempDir::new("nomodel");
    let data = tmp.write("d.csv", &regression_csv(5));
    let dir = tmp.join("no-model-here");
    let o = run("predict", &[("--model", &dir), ("--data", &data)]);
    fails(&o, &["model.json"]);
    fails(&run("info", &[("--model", &dir)]), &["model.json"]);
}

// ---------------------------------------------------------------------------------------------
// 7. Seeds.
// ---------------------------------------------------------------------------------------------

fn seeded_report(seed: u64) -> Value {
    let o = run(
        &format!(
            "train --model gated-relu --patterns 20 --lambda 1e-2 --seed {seed} --json --quiet"
        ),
        &[("--data", &breast_cancer())],
    );
    parse_json(&ok(&o))
}

#[test]
fn same_seed_same_numbers_other_seed_other_objective() {
    let a = seeded_report(0);
    let b = seeded_report(0);
    for key in [
        "objective",
        "network_objective",
        "dual_bound",
        "iterations",
        "neurons",
        "patterns",
        "train.accuracy",
        "test.accuracy",
    ] {
        assert_eq!(
            num(&a, key),
            num(&b, key),
            "{key} differs across identical runs"
        );
    }
    assert_eq!(a["trace"], b["trace"]);
    let c = seeded_report(1);
    assert_eq!(num(&c, "seed"), 1.0);
    assert_ne!(num(&a, "objective"), num(&c, "objective"));
}

// ---------------------------------------------------------------------------------------------
// 8. info.
// ---------------------------------------------------------------------------------------------

#[test]
fn info_shows_model_kind_and_features() {
    let tmp = TempDir::new("info");
    let dir = small_model(&tmp);
    let out = ok(&run("info", &[("--model", &dir)]));
    for k in [
        "gated-relu",
        "two-layer",
        "a, b, c",
        "regression",
        "target       y",
        "certificate",
    ] {
        assert!(out.contains(k), "info lacks {k:?}:\n{out}");
    }

    // A relu model on a binary target with labels -3 / 5, no test split.
    let data = tmp.write(
        "bin.csv",
        "x1,x2,label\n0,1,-3\n1,0,5\n2,1,5\n-1,-2,-3\n0.5,0.5,5\n-0.5,1,-3\n1,-1,5\n-2,0,-3\n",
    );
    let rdir = tmp.join("relu-model");
    let printed = ok(&run(
        "train --target label --model relu --patterns 5 --lambda 1e-2 --max-iter 500 \
         --test-fraction 0 --json --quiet",
        &[("--data", &data), ("--out", &rdir)],
    ));
    let report = parse_json(&printed);
    assert_eq!(num(&report, "n_test"), 0.0);
    assert!(report.get("test").is_none(), "{report}");
    let out = ok(&run("info", &[("--model", &rdir)]));
    for k in ["relu", "binary", "x1, x2", "label", "-3 -> -1", "5 -> +1"] {
        assert!(out.contains(k), "info lacks {k:?}:\n{out}");
    }
    assert!(!out.contains("gated-relu"), "{out}");
    // Its predictions are the original labels.
    let preds = predict_stdout(&rdir, &data);
    assert_eq!(preds.len(), 8);
    assert!(preds.iter().all(|&p| p == -3.0 || p == 5.0), "{preds:?}");
}

#[test]
fn info_prints_loss_as_on_the_command_line() {
    let tmp = TempDir::new("info-loss");
    let dir = small_model(&tmp);
    let out = ok(&run("info", &[("--model", &dir)]));
    assert!(out.contains("loss squared"), "{out}");
}

// ---------------------------------------------------------------------------------------------
// 9. Class labels: string targets, multiclass, metrics.
// ---------------------------------------------------------------------------------------------

/// A copy of breast_cancer in `tmp` with the 0/1 target replaced by `malignant`/`benign`
/// (scikit-learn's meaning of 0 and 1), the label of row `bad_row` (1-based data row) replaced
/// by `bad` when given. The shared file is only read.
fn breast_cancer_labels(tmp: &TempDir, name: &str, bad: Option<(usize, &str)>) -> PathBuf {
    let src = std::fs::read_to_string(breast_cancer()).expect("read breast_cancer.csv");
    let mut out = String::new();
    for (i, line) in src.lines().enumerate() {
        if i == 0 {
            out += line;
        } else {
            let (features, y) = line.rsplit_once(',').expect("a target column");
            let label = match (bad, y.trim()) {
                (Some((row, b)), _) if row == i => b,
                (_, "0") => "malignant",
                (_, "1") => " benign ",
                (_, other) => panic!("unexpected target {other:?}"),
            };
            out += &format!("{features},{label}");
        }
        out.push('\n');
    }
    tmp.write(name, &out)
}

/// Binary classification with string labels, end to end: train (sorted labels: benign -> -1,
/// malignant -> +1), report metrics, model.json labels, info, and predict writing the original
/// strings, which agree with the exported weights.
#[test]
fn binary_string_labels_end_to_end() {
    let tmp = TempDir::new("string-labels");
    let data = breast_cancer_labels(&tmp, "bc.csv", None);
    let dir = tmp.join("model");
    let o = run(
        "train --model gated-relu --patterns 10 --lambda 1e-2 --json --quiet",
        &[("--data", &data), ("--out", &dir)],
    );
    let report = parse_json(&ok(&o));
    assert_eq!(text(&report, "task"), "binary");
    assert_eq!(text(&report, "loss"), "logistic");
    let summary = stderr(&o);
    assert!(
        summary.contains("balanced accuracy") && summary.contains("confusion"),
        "{summary}"
    );
    assert!(
        summary.contains("benign") && summary.contains("malignant"),
        "{summary}"
    );
    for split in ["train", "test"] {
        let acc = num(&report, &format!("{split}.accuracy"));
        let bal = num(&report, &format!("{split}.balanced_accuracy"));
        assert!(acc > 0.85 && bal > 0.85, "{split}: {acc} {bal}");
        let cm = &report[split]["confusion"];
        assert_eq!(cm["labels"], serde_json::json!(["benign", "malignant"]));
        let counts: Vec<Vec<f64>> = cm["counts"]
            .as_array()
            .expect("counts")
            .iter()
            .map(|r| {
                r.as_array()
                    .expect("row")
                    .iter()
                    .filter_map(Value::as_f64)
                    .collect()
            })
            .collect();
        let total: f64 = counts.iter().flatten().sum();
        assert_eq!(total, num(&report, &format!("n_{split}")));
        assert!(close((counts[0][0] + counts[1][1]) / total, acc, 1e-12));
        let recall = |k: usize| counts[k][k] / (counts[k][0] + counts[k][1]);
        assert!(close((recall(0) + recall(1)) / 2.0, bal, 1e-12));
        assert!(report[split].get("mse").is_none());
    }
    let meta = read_json(&dir.join("model.json"));
    assert_eq!(meta["labels"], serde_json::json!(["benign", "malignant"]));
    let out = ok(&run("info", &[("--model", &dir)]));
    assert!(out.contains("benign -> -1, malignant -> +1"), "{out}");

    let preds_path = tmp.join("preds.csv");
    let o = run(
        "predict",
        &[("--model", &dir), ("--data", &data), ("--out", &preds_path)],
    );
    ok(&o);
    assert!(stderr(&o).contains("balanced accuracy"), "{}", stderr(&o));
    let written = std::fs::read_to_string(&preds_path).expect("preds");
    let mut lines = written.lines();
    assert_eq!(lines.next(), Some("prediction"));
    let preds: Vec<&str> = lines.collect();
    let net = Net::load(&dir);
    let names = feature_names(&dir);
    let rows = raw_rows(&breast_cancer(), &names);
    assert_eq!(preds.len(), rows.len());
    let mut checked = 0;
    for (i, (x, p)) in rows.iter().zip(&preds).enumerate() {
        let f = net.forward(x);
        assert!(*p == "benign" || *p == "malignant", "row {i}: {p:?}");
        if f.abs() < 1e-9 {
            continue;
        }
        let expect = if f >= 0.0 { "malignant" } else { "benign" };
        assert_eq!(*p, expect, "row {i}: forward {f}");
        checked += 1;
    }
    assert!(checked > 500, "{checked}");

    // A label the model does not know, with the target column present: an error naming the
    // file, line, column and label; no prediction file written.
    let bad = breast_cancer_labels(&tmp, "bad.csv", Some((7, "zebra")));
    let preds2 = tmp.join("preds2.csv");
    let o = run(
        "predict",
        &[("--model", &dir), ("--data", &bad), ("--out", &preds2)],
    );
    fails(
        &o,
        &[&shown(&bad), "line 8", "column `y`", "\"zebra\"", "benign"],
    );
    assert!(!preds2.exists());
}

/// Labels that need quoting are written as CSV cells; quoted input cells are read unquoted.
#[test]
fn predict_quotes_labels_that_need_it() {
    let tmp = TempDir::new("quoted-labels");
    let data = tmp.write(
        "q.csv",
        "x1,x2,kind\n0,1,\"a, b\"\n1,0,plain\n2,1,plain\n-1,-2,\"a, b\"\n0.5,0.5,plain\n\
         -0.5,1,\"a, b\"\n1,-1,plain\n-2,0,\"a, b\"\n",
    );
    let dir = tmp.join("m");
    ok(&run(
        "train --target kind --model gated-relu --patterns 5 --lambda 1e-3 --test-fraction 0 --quiet",
        &[("--data", &data), ("--out", &dir)],
    ));
    assert_eq!(
        read_json(&dir.join("model.json"))["labels"],
        serde_json::json!(["a, b", "plain"])
    );
    let out = ok(&run("predict", &[("--model", &dir), ("--data", &data)]));
    let cells: Vec<&str> = out.lines().skip(1).collect();
    assert_eq!(cells.len(), 8);
    assert!(
        cells.iter().all(|c| *c == "\"a, b\"" || *c == "plain"),
        "{out}"
    );
}

#[test]
fn regression_on_string_target_names_the_first_bad_row() {
    let tmp = TempDir::new("regression-strings");
    let p = tmp.write("s.csv", "a,y\n1,2.5\n2,3\n3,high\n4,low\n");
    train_fails(
        &p,
        "--task regression",
        &[],
        &[&shown(&p), "line 4", "column `y`", "\"high\"", "regression"],
    );
}

#[test]
fn empty_target_cell_names_its_line() {
    let tmp = TempDir::new("empty-target");
    let p = tmp.write("e.csv", "a,y\n1,yes\n2,no\n3,\n");
    train_fails(&p, "", &[], &[&shown(&p), "line 4", "column `y`", "empty"]);
}

#[test]
fn single_class_is_refused_for_binary_and_multiclass() {
    let tmp = TempDir::new("one-class");
    let p = tmp.write("one.csv", "a,y\n1,cat\n2,cat\n3,cat\n");
    train_fails(
        &p,
        "",
        &[],
        &[&shown(&p), "column `y`", "binary", "found 1: cat"],
    );
    train_fails(
        &p,
        "--task multiclass",
        &[],
        &[
            &shown(&p),
            "column `y`",
            "multiclass",
            "at least 2",
            "found 1",
        ],
    );
}

/// More than two labels infer multiclass; training it is not wired yet: a clear error naming
/// `task`, nothing written.
#[test]
fn multiclass_string_labels_end_to_end() {
    let tmp = TempDir::new("multiclass");
    // Three well-separated clusters labelled by name (not in sorted order in the file).
    let mut csv = String::from("a,b,y\n");
    for i in 0..30 {
        let t = i as f64 * 0.1;
        csv += &format!("{},{},cat\n", t.sin() * 0.3, t.cos() * 0.3);
        csv += &format!("{},{},dog\n", 4.0 + t.cos() * 0.3, t.sin() * 0.3);
        csv += &format!("{},{},bird\n", 2.0 + t.sin() * 0.3, 4.0 + t.cos() * 0.3);
    }
    let data = tmp.write("m.csv", &csv);
    let dir = tmp.join("model");
    let o = run(
        "train --model gated-relu --patterns 20 --lambda 1e-2 --json --quiet",
        &[("--data", &data), ("--out", &dir)],
    );
    let report = parse_json(&ok(&o));
    assert_eq!(text(&report, "task"), "multiclass");
    assert_eq!(text(&report, "loss"), "cross-entropy");
    assert_eq!(text(&report, "output_mode"), "separate");
    assert_eq!(text(&report, "status"), "converged");
    assert_eq!(num(&report, "outputs"), 3.0);
    assert_eq!(num(&report, "test.accuracy"), 1.0);
    assert_eq!(
        report["test"]["confusion"]["labels"],
        serde_json::json!(["bird", "cat", "dog"])
    );
    let summary = stderr(&o);
    assert!(summary.contains("3 classes, separate"), "{summary}");
    // Classes in sorted order in model.json; a (3, m) output layer.
    let meta = parse_json(&std::fs::read_to_string(dir.join("model.json")).expect("model.json"));
    assert_eq!(meta["labels"], serde_json::json!(["bird", "cat", "dog"]));
    let net = cvxnn::network::RawNetwork::load(&dir.join("model.safetensors")).expect("load");
    assert_eq!(net.outputs, 3);
    // `predict` returns the original names.
    let pred = tmp.join("pred.csv");
    ok(&run(
        "predict",
        &[("--model", &dir), ("--data", &data), ("--out", &pred)],
    ));
    let lines: Vec<String> = std::fs::read_to_string(&pred)
        .expect("predictions")
        .lines()
        .map(String::from)
        .collect();
    assert_eq!(&lines[1..4], &["cat", "dog", "bird"]);
    // Shared outputs (gated ReLU) train too.
    let o = run(
        "train --model gated-relu --patterns 20 --lambda 1e-2 --outputs shared --json --quiet",
        &[("--data", &data)],
    );
    let report = parse_json(&ok(&o));
    assert_eq!(text(&report, "output_mode"), "shared");
    assert_eq!(text(&report, "status"), "converged");
    assert_eq!(text(&report, "certificate"), "sampled-patterns");
    // Shared ReLU: factored (Burer-Monteiro), feasible, its lower bound labelled as relaxed.
    let o = run(
        "train --model relu --patterns 10 --lambda 1e-2 --outputs shared --json --quiet",
        &[("--data", &data)],
    );
    let report = parse_json(&ok(&o));
    assert_eq!(text(&report, "certificate"), "relaxed-bound");
    assert!(num(&report, "dual_bound") <= num(&report, "objective"));
    assert!(num(&report, "violation") <= 1e-6);
    assert!(close(
        num(&report, "network_objective"),
        num(&report, "objective"),
        1e-6
    ));
    // Numeric classes when asked (inference keeps regression for 3 numeric values); what takes
    // one output is refused, naming the argument, before anything is written.
    let numeric = tmp.write("n.csv", "a,b,y\n1,2,0\n3,4,1\n5,6,2\n7,8,0\n9,1,1\n2,3,2\n");
    train_fails(
        &numeric,
        "--task multiclass --solver conic",
        &[],
        &["solver", "one output"],
    );
    train_fails(
        &numeric,
        "--task multiclass --patterns adaptive",
        &[],
        &["patterns", "one output"],
    );
    train_fails(
        &numeric,
        "--task multiclass --loss logistic",
        &[],
        &["loss", "binary"],
    );
    train_fails(
        &numeric,
        "--task regression --loss cross-entropy",
        &[],
        &["loss", "multiclass"],
    );
    train_fails(
        &numeric,
        "--task multiclass --model relu --outputs shared --solver conic",
        &[],
        &["solver", "Burer-Monteiro"],
    );
}
