//! `cvxnn path`: the regularization path, its table, path.json and path.svg.

use anyhow::{Context, Result};
use cvxnn::data::read_table;
use cvxnn::estimator::Metrics;
use cvxnn::path::{regularization_path, PathConfig, PathEvent, PathReport, PathRow};

use crate::args::PathArgs;
use crate::commands::{base_config, refuse_occupied};
use crate::progress::SolveProgress;

/// Files `cvxnn path --out DIR` writes.
pub const PATH_FILES: [&str; 2] = ["path.json", "path.svg"];

/// Shows which lambda is being solved on the progress line.
pub(crate) fn path_progress(progress: &mut SolveProgress, e: PathEvent<'_>) {
    match e {
        PathEvent::Start {
            index,
            count,
            lambda,
        } => progress.set_stage(format!("lambda {}/{count} ({lambda:.2e})  ", index + 1)),
        PathEvent::Solver(p) => progress.update(p),
        PathEvent::Row(_) => {}
    }
}

pub(crate) fn run_path(a: PathArgs) -> Result<()> {
    if crate::cnn::is_cnn(a.program.model) {
        anyhow::bail!("invalid argument `model`: the regularization path takes the dense models (relu, gated-relu); train CNNs at a given --lambda");
    }
    refuse_occupied(a.out.as_deref(), a.force, &PATH_FILES)?;
    let table = read_table(&a.input.data, &a.input.target)?;
    // Column generation's initial sample size does not apply: the path refuses adaptive.
    let cfg = base_config(&a.input, &a.program, table.feature_names.len(), 0)?;
    let path = PathConfig {
        grid: a.grid.lambdas.unwrap_or_default(),
        validation_fraction: a.grid.validation_fraction,
        warm_start: !a.cold,
    };
    let mut progress = SolveProgress::new(a.quiet);
    let r = regularization_path(&table, &cfg, &path, &mut |e| {
        path_progress(&mut progress, e)
    });
    progress.finish();
    let r = r?;
    let mut json = serde_json::to_value(&r)?;
    if let Some(obj) = json.as_object_mut() {
        obj.insert("data".into(), a.input.data.display().to_string().into());
        obj.insert("target".into(), a.input.target.clone().into());
    }
    let json = serde_json::to_string_pretty(&json)?;
    if let Some(dir) = &a.out {
        let title = format!(
            "{} ({}, {} loss, {} patterns)",
            a.input.data.file_name().map_or_else(
                || a.input.data.display().to_string(),
                |f| f.to_string_lossy().into_owned()
            ),
            r.model,
            r.loss,
            r.patterns
        );
        let svg = crate::plot::path_svg(&r, &title).context("drawing path.svg")?;
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        for (name, text) in PATH_FILES.iter().zip([&json, &svg]) {
            let p = dir.join(name);
            std::fs::write(&p, text).with_context(|| format!("writing {}", p.display()))?;
        }
    }
    let text = table_text(&a, &r);
    if a.json {
        eprint!("{text}");
        println!("{json}");
    } else {
        print!("{text}");
    }
    Ok(())
}

/// The metric shown for a split: the kind that ranks validation (accuracy, else r2, else mse).
pub(crate) fn metric(m: &Metrics) -> (&'static str, Option<f64>) {
    match (m.accuracy, m.r2) {
        (Some(a), _) => ("accuracy", Some(a)),
        (None, Some(r2)) => ("r2", Some(r2)),
        (None, None) => ("mse", m.mse),
    }
}

fn cell(v: Option<f64>) -> String {
    v.map_or_else(|| "-".to_string(), |v| format!("{v:.4}"))
}

fn status_name(r: &PathRow) -> String {
    serde_json::to_value(r.status)
        .ok()
        .and_then(|v| v.as_str().map(str::to_string))
        .unwrap_or_else(|| r.status.to_string())
}

fn table_text(a: &PathArgs, r: &PathReport) -> String {
    let mut s = format!(
        "cvxnn path: {} ({}), {} loss, {} {} patterns, {} solver, {} starts, {} fitted / {} validation / {} test samples, d = {}\n",
        a.input.data.display(),
        r.model,
        r.loss,
        r.patterns,
        if r.certificate == "global" { "exact" } else { "sampled" },
        r.solver,
        if r.warm_start { "warm" } else { "cold" },
        r.n_fit,
        r.n_validation,
        r.n_test,
        r.d
    );
    if r.target_scale != 1.0 {
        s += &format!(
            "  targets divided by {:.6} (their std on the fitted samples); objectives and lambdas in those units\n",
            r.target_scale
        );
    }
    s += &format!(
        "  lambda_max {:.6e} (the zero network is optimal at and above it)\n",
        r.lambda_max
    );
    let name = r.rows.first().map_or("r2", |row| metric(&row.validation).0);
    let short = if name == "accuracy" { "acc" } else { name };
    s += &format!(
        "  {:>10} {:>15} {:>9} {:>14} {:>7} {:>7} {:>9} {:>9} {:>9} {:>7}\n",
        "lambda",
        "objective",
        "rel.gap",
        "status",
        "iter",
        "neurons",
        format!("train {short}"),
        format!("valid {short}"),
        format!("test {short}"),
        "seconds"
    );
    for (k, row) in r.rows.iter().enumerate() {
        s += &format!(
            "{} {:>10.3e} {:>15.8e} {:>9.2e} {:>14} {:>7} {:>7} {:>9} {:>9} {:>9} {:>7.2}\n",
            if k == r.recommended_index { "*" } else { " " },
            row.lambda,
            row.objective,
            row.relative_gap,
            status_name(row),
            row.iterations,
            row.neurons,
            cell(metric(&row.train).1),
            cell(metric(&row.validation).1),
            cell(row.test.as_ref().and_then(|t| metric(t).1)),
            row.seconds
        );
    }
    let rec = &r.rows[r.recommended_index];
    s += &format!(
        "  recommended  lambda {:.3e} (* above: best {} {}{}, {} neurons)\n",
        r.recommended_lambda,
        r.selection,
        cell(metric(&rec.validation).1),
        rec.test
            .as_ref()
            .and_then(|t| metric(t).1)
            .map_or(String::new(), |v| format!("; test {name} {v:.4}")),
        rec.neurons
    );
    s += &format!(
        "  total        {} iterations, {:.2} s\n",
        r.total_iterations, r.total_seconds
    );
    if let Some(dir) = &a.out {
        s += &format!(
            "  saved        {}, {}\n",
            dir.join(PATH_FILES[0]).display(),
            dir.join(PATH_FILES[1]).display()
        );
    }
    s
}
