//! `cvxnn train --patterns adaptive`: column generation from sampled patterns, from a built-in
//! Adam warm start, and from a given network (never worse than it), through the binary.

mod common;

use common::{num, ok_json, run, tiny_csv, TempDir};

#[test]
fn adaptive_with_adam_warm_start_reports_its_rounds_and_beats_the_warm_start() {
    let dir = TempDir::new("adaptive-sgd");
    let data = tiny_csv(&dir);
    let r = ok_json(&run(
        "train --model relu --patterns adaptive --init sgd --init-width 6 --init-epochs 300 \
         --lambda 1e-2 --test-fraction 0 --json -q",
        &[("--data", &data)],
    ));
    let cg = &r["column_generation"];
    let init = num(cg, "init_objective");
    assert!(num(&r, "objective") <= init, "{r}");
    assert_eq!(cg["init"], "adam");
    let rounds = cg["rounds"].as_array().expect("rounds");
    assert!(!rounds.is_empty() && rounds.len() <= 31);
    let objs: Vec<f64> = rounds.iter().map(|x| num(x, "objective")).collect();
    assert!(objs.windows(2).all(|w| w[1] <= w[0]), "{objs:?}");
    let cert = r["certificate"].as_str().expect("certificate");
    assert!(
        cert == "no-violation-found" || cert == "sampled-patterns",
        "{cert}"
    );
    assert!(num(cg, "oracle_ratio") > 0.0);
    // The rebuilt network is the convex point.
    let rel = (num(&r, "objective") - num(&r, "network_objective")).abs() / num(&r, "objective");
    assert!(rel <= 1e-9, "{r}");
}

#[test]
fn init_network_result_is_no_worse_than_the_network() {
    let dir = TempDir::new("adaptive-net");
    let data = tiny_csv(&dir);
    let model = dir.join("adam");
    let b = ok_json(&run(
        "baseline --optimizer adam --width 5 --lr 1e-2 --epochs 200 --lambda 1e-2 \
         --test-fraction 0 --json",
        &[("--data", &data), ("--out", &model)],
    ));
    let weights = model.join("model.safetensors");
    let r = ok_json(&run(
        "train --model relu --patterns adaptive --lambda 1e-2 --test-fraction 0 --json -q",
        &[("--data", &data), ("--init-network", &weights)],
    ));
    let cg = &r["column_generation"];
    let given = num(&b, "objective");
    assert!(num(cg, "init_objective") <= given * (1.0 + 1e-12), "{r}");
    assert!(
        num(&r, "objective") <= given,
        "{} > {given}",
        num(&r, "objective")
    );
    assert_eq!(cg["init"], "network");
}

#[test]
fn warm_starts_need_adaptive_patterns_and_readable_files() {
    let dir = TempDir::new("adaptive-bad");
    let data = tiny_csv(&dir);
    let out = run(
        "train --patterns 10 --init sgd --lambda 1e-2",
        &[("--data", &data)],
    );
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("adaptive"));
    let missing = dir.join("nope.safetensors");
    let out = run(
        "train --patterns adaptive --lambda 1e-2",
        &[("--data", &data), ("--init-network", &missing)],
    );
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("nope.safetensors"));
    let out = run(
        "train --patterns adaptive --model gated-relu --lambda 1e-2",
        &[("--data", &data)],
    );
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("relu"));
    let out = run(
        "train --patterns adaptive --rounds 0 --lambda 1e-2",
        &[("--data", &data)],
    );
    assert!(!out.status.success());
}

#[test]
fn auto_patterns_are_exact_on_tiny_data_and_adaptive_otherwise() {
    let dir = TempDir::new("auto");
    let data = tiny_csv(&dir);
    // n = 12 rows of rank 3: at most 2 (1 + 11 + 55) = 134 patterns, solved exactly.
    let r = ok_json(&run(
        "train --lambda 1e-2 --test-fraction 0 --json -q",
        &[("--data", &data)],
    ));
    assert_eq!(r["certificate"], "global", "{r}");
    assert!(r.get("column_generation").is_none());
    // 80 rows of rank 5: far more than 2000 patterns, so column generation.
    let mut text = String::from("a,b,c,d,y\n");
    for i in 0..80 {
        let t = i as f64;
        let v: Vec<f64> = (0..4)
            .map(|k| (t * (0.37 + 0.21 * k as f64) + k as f64).sin())
            .collect();
        let y = (v[0] + v[1]).max(0.0) - (v[2] - v[3]).max(0.0);
        text += &format!("{},{},{},{},{y}\n", v[0], v[1], v[2], v[3]);
    }
    let wide = dir.join("wide.csv");
    std::fs::write(&wide, text).expect("write csv");
    let r = ok_json(&run(
        "train --lambda 1e-2 --test-fraction 0 --json -q",
        &[("--data", &wide)],
    ));
    assert!(r["column_generation"]["rounds"].is_array(), "{r}");
    let cert = r["certificate"].as_str().expect("certificate");
    assert!(
        cert == "no-violation-found" || cert == "sampled-patterns",
        "{cert}"
    );
    // Gated ReLU keeps sampled gates.
    let r = ok_json(&run(
        "train --model gated-relu --lambda 1e-2 --test-fraction 0 --json -q",
        &[("--data", &wide)],
    ));
    assert_eq!(r["certificate"], "sampled-patterns");
    assert!(r.get("column_generation").is_none());
}
