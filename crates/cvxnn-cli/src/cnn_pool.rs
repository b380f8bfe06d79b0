//! `cvxnn train --model cnn-relu|cnn-gated-relu --pool avg:S|max:S` and `predict` on a pooled
//! CNN model directory.

use std::io::Write;

use anyhow::{Context, Result};
use cvxnn::conv::ConvTrainConfig;
use cvxnn::conv_pool::{train, PooledModel, PooledReport};
use cvxnn::data::{read_features, Pooling, Table};
use cvxnn::program::ModelKind;

use crate::args::{PredictArgs, TrainArgs};
use crate::commands::{confusion_lines, csv_cell, metrics_line, write_file};
use crate::progress::SolveProgress;

/// Trains, saves and summarizes a pooled CNN (`pool`: the `--pool` text).
pub(crate) fn run_train_pooled(
    a: &TrainArgs,
    table: &Table,
    cfg: &ConvTrainConfig,
    pool: &str,
) -> Result<()> {
    let pool = Pooling::parse(pool)?;
    let mut progress = SolveProgress::new(a.quiet);
    let out = train(table, cfg, pool, &mut |pr| progress.update(pr));
    progress.finish();
    let (model, report) = out?;
    if let Some(dir) = &a.out {
        model
            .save(dir, Some(&report), a.force)
            .with_context(|| format!("saving the model to {}", dir.display()))?;
    }
    let summary = summary(a, &model, &report);
    if a.json {
        eprint!("{summary}");
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        print!("{summary}");
    }
    Ok(())
}

fn summary(a: &TrainArgs, m: &PooledModel, p: &PooledReport) -> String {
    let r = &p.base;
    let mut s = format!(
        "cvxnn train: {} ({}, {} pooling), {} loss, lambda {:e}, {} {} patterns, {} train / {} test samples\n",
        a.input.data.display(),
        r.model,
        p.pool,
        m.meta.base.loss,
        r.lambda,
        r.patterns,
        if r.certificate == "global" { "exact" } else { "sampled" },
        r.n_train,
        r.n_test
    );
    s += &format!(
        "  cnn          {}, {} patches of length {}, {} pooling windows, features divided by {:.6}\n",
        r.shape, r.patches, r.filter_len, p.windows, m.meta.base.feature_scale
    );
    s += &format!(
        "  exact for    {}{}\n",
        p.exact_for,
        if p.exact {
            ""
        } else {
            " (relaxed: not the full architecture)"
        }
    );
    s += &format!(
        "  status       {} ({} iterations, {:.2} s)\n",
        r.status, r.iterations, r.seconds
    );
    s += &format!(
        "  objective    {:.8e}   (rebuilt network: {:.8e})\n",
        r.objective, r.network_objective
    );
    s += &format!(
        "  dual bound   {:.8e}   gap {:.2e}, relative {:.2e} ({})\n",
        r.dual_bound, r.gap, r.relative_gap, r.certificate
    );
    if m.meta.base.model == ModelKind::Relu {
        s += &format!(
            "  violation    {:.2e} (relative, cone constraints)\n",
            r.violation
        );
    }
    s += &format!("  filters      {}\n", r.filters);
    s += &format!("  train        {}\n", metrics_line(&r.train));
    if let Some(t) = &r.test {
        s += &format!("  test         {}\n", metrics_line(t));
    }
    if let Some(dir) = &a.out {
        s += &format!("  saved        {}\n", dir.display());
    }
    s
}

/// `cvxnn predict` on a pooled CNN model directory.
pub(crate) fn run_predict_pooled(a: PredictArgs) -> Result<()> {
    let model = PooledModel::load(&a.model)?;
    let meta = &model.meta.base;
    let (x, target) = read_features(&a.data, &meta.feature_names, &meta.target)?;
    let pred = model.predict_strings(&x)?;
    let metrics = match &target {
        Some(t) => Some(model.metrics(&x, t)?),
        None => None,
    };
    let mut text = String::from("prediction\n");
    for p in &pred {
        text += &csv_cell(p);
        text.push('\n');
    }
    match &a.out {
        Some(path) => write_file(path, &text)?,
        None => std::io::stdout().write_all(text.as_bytes())?,
    }
    if let Some(m) = metrics {
        eprintln!(
            "{} rows; against `{}`: {}",
            pred.len(),
            meta.target,
            metrics_line(&m)
        );
        eprint!("{}", confusion_lines("data", &m));
    }
    Ok(())
}
