//! Helpers shared by the CLI integration tests: temp dirs, a tiny data set, running the binary.
#![allow(dead_code)]

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::atomic::{AtomicUsize, Ordering};

use serde_json::Value;

/// A fresh directory under the system temp dir, removed on drop.
pub struct TempDir(PathBuf);

impl TempDir {
    pub fn new(tag: &str) -> TempDir {
        static COUNTER: AtomicUsize = AtomicUsize::new(0);
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos());
        let k = COUNTER.fetch_add(1, Ordering::Relaxed);
        let dir = std::env::temp_dir().join(format!(
            "cvxnn-cli-{}-{tag}-{k}-{nanos}",
            std::process::id()
        ));
        std::fs::create_dir_all(&dir).expect("create temp dir");
        TempDir(dir)
    }

    pub fn join(&self, name: &str) -> PathBuf {
        self.0.join(name)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A tiny regression data set (n = 12, two features), deterministic.
pub fn tiny_csv(dir: &TempDir) -> PathBuf {
    let mut text = String::from("x1,x2,y\n");
    for i in 0..12 {
        let t = i as f64;
        let a = (1.3 * t + 0.4).sin() * 2.0;
        let b = (0.7 * t - 1.1).cos() * 1.5;
        let y = (a + b).max(0.0) - 0.5 * (a - b).max(0.0) + 0.1 * (3.1 * t).sin();
        text += &format!("{a:.5},{b:.5},{y:.5}\n");
    }
    let p = dir.join("tiny.csv");
    std::fs::write(&p, text).expect("write csv");
    p
}

/// Runs `cvxnn` with the whitespace-separated `words`, then each `(flag, path)` pair.
pub fn run(words: &str, paths: &[(&str, &Path)]) -> Output {
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

/// The JSON a successful run printed.
pub fn ok_json(out: &Output) -> Value {
    assert!(
        out.status.success(),
        "cvxnn failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("JSON on stdout")
}

/// A numeric field of a JSON object.
pub fn num(v: &Value, key: &str) -> f64 {
    v[key]
        .as_f64()
        .unwrap_or_else(|| panic!("`{key}` is not a number in {v}"))
}
