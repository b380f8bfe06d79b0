//! `--patterns exact` and `--solver` end to end on a tiny data set (n = 12, two features):
//! the global certificate, the pattern limit, and conic vs first-order agreement.

mod common;

use common::{num, ok_json, run, tiny_csv, TempDir};

#[test]
fn exact_patterns_give_a_global_certificate_and_converge() {
    let dir = TempDir::new("global");
    let data = tiny_csv(&dir);
    let out = dir.join("model");
    let r = ok_json(&run(
        "train --patterns exact --test-fraction 0 --lambda 0.1 --tol 1e-6 --json -q",
        &[("--data", &data), ("--out", &out)],
    ));
    assert_eq!(r["certificate"], "global");
    assert_eq!(r["status"], "converged", "{r}");
    assert!(num(&r, "relative_gap") <= 1e-6, "{r}");
    // m* <= n + 1.
    assert!(num(&r, "neurons") <= 13.0, "{r}");
    // n = 12 rows of rank 3 in general position: at most 2 (1 + 11 + 55) = 134 patterns, less the
    // all-inactive one.
    assert!(
        num(&r, "patterns") <= 133.0 && num(&r, "patterns") > 20.0,
        "{r}"
    );
    assert!(out.join("report.json").is_file());
}

#[test]
fn exact_patterns_refuse_above_max_patterns() {
    let dir = TempDir::new("limit");
    let data = tiny_csv(&dir);
    let out = run(
        "train --patterns exact --max-patterns 10 --test-fraction 0 -q",
        &[("--data", &data)],
    );
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("max-patterns"), "{err}");
    let out = run(
        "certify --patterns exact --max-patterns 10 --lambda 0.1 -q",
        &[("--data", &data), ("--model", &data)],
    );
    assert!(!out.status.success());
}

#[test]
fn gated_relu_with_exact_patterns_is_refused() {
    let dir = TempDir::new("gated");
    let data = tiny_csv(&dir);
    let out = run(
        "train --model gated-relu --patterns exact --test-fraction 0 -q",
        &[("--data", &data)],
    );
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("patterns") && err.contains("relu"), "{err}");
}

#[test]
fn bad_patterns_value_is_refused() {
    let dir = TempDir::new("badpat");
    let data = tiny_csv(&dir);
    for bad in ["0", "many", "-3"] {
        let out = run(
            &format!("train --patterns {bad} --test-fraction 0 -q"),
            &[("--data", &data)],
        );
        assert!(!out.status.success(), "--patterns {bad} accepted");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains("patterns"), "{err}");
    }
}

/// Tolerance 1e-5 relative, both runs at --tol 1e-6.
#[test]
fn conic_and_first_order_agree() {
    let dir = TempDir::new("agree");
    let data = tiny_csv(&dir);
    for patterns in ["exact", "20"] {
        let mut obj = Vec::new();
        for solver in ["conic", "first-order"] {
            let r = ok_json(&run(
                &format!(
                    "train --patterns {patterns} --solver {solver} --test-fraction 0 --lambda 0.1 --tol 1e-6 --json -q"
                ),
                &[("--data", &data)],
            ));
            assert_eq!(r["solver"], solver);
            if solver == "conic" {
                assert_eq!(r["conic_status"], "solved", "{r}");
            }
            // The dual bound is a lower bound on the objective (up to rounding).
            assert!(
                num(&r, "dual_bound") <= num(&r, "objective") * (1.0 + 1e-12),
                "{r}"
            );
            obj.push(num(&r, "objective"));
        }
        let rel = (obj[0] - obj[1]).abs() / obj[1].abs();
        assert!(
            rel <= 1e-5,
            "patterns {patterns}: conic {} vs first-order {}",
            obj[0],
            obj[1]
        );
    }
}

#[test]
fn auto_picks_conic_for_a_tiny_program() {
    let dir = TempDir::new("auto");
    let data = tiny_csv(&dir);
    let r = ok_json(&run(
        "train --patterns 10 --test-fraction 0 --lambda 0.1 --json -q",
        &[("--data", &data)],
    ));
    assert_eq!(r["solver"], "conic");
}
