//! `cvxnn train --model cnn-relu|cnn-gated-relu` and `predict` on a CNN model directory.

use std::io::Write;

use anyhow::{bail, Context, Result};
use cvxnn::conv::{train, ConvModel, ConvReport, ConvTrainConfig};
use cvxnn::data::{read_features, read_table, ConvShape};
use cvxnn::estimator::PatternSource;
use cvxnn::program::ModelKind;
use cvxnn::solver::{Precision, SolverSettings};

use crate::args::{LambdaArg, ModelArg, PatternsArg, PrecisionArg, PredictArgs, TrainArgs};
use crate::commands::{
    confusion_lines, csv_cell, loss_arg, metrics_line, refuse_occupied_out, task_arg, write_file,
};
use crate::progress::SolveProgress;

/// Parses `1,8,8` (or `1,6`) into (channels, spatial sizes).
fn parse_input_shape(s: &str) -> Result<(usize, Vec<usize>)> {
    let dims: Vec<usize> = s
        .split(',')
        .map(|v| v.trim().parse::<usize>())
        .collect::<std::result::Result<_, _>>()
        .with_context(|| format!("invalid argument `input-shape`: `{s}` is not C,H,W or C,L"))?;
    match dims.split_first() {
        Some((&c, rest)) if !rest.is_empty() && rest.len() <= 2 => Ok((c, rest.to_vec())),
        _ => bail!("invalid argument `input-shape`: `{s}` is not C,H,W or C,L"),
    }
}

/// Parses `3x3` or `3` (square kernel, or a 1-D one) for `rank` spatial dimensions.
fn parse_kernel(s: &str, rank: usize) -> Result<Vec<usize>> {
    let dims: Vec<usize> = s
        .split('x')
        .map(|v| v.trim().parse::<usize>())
        .collect::<std::result::Result<_, _>>()
        .with_context(|| format!("invalid argument `kernel`: `{s}` is not like 3x3 or 3"))?;
    Ok(if dims.len() == 1 {
        vec![dims[0]; rank]
    } else {
        dims
    })
}

/// Trains a CNN model.
pub(crate) fn run_train_cnn(a: TrainArgs) -> Result<()> {
    let (d, p) = (&a.input, &a.program);
    let lambda = match a.lambda {
        LambdaArg::Value(v) => v,
        LambdaArg::Auto => {
            bail!("invalid argument `lambda`: the CNN models take a number, not auto")
        }
    };
    let Some(shape_text) = a.input_shape.as_deref() else {
        bail!("invalid argument `input-shape`: the CNN models need --input-shape C,H,W (or C,L)");
    };
    let Some(kernel_text) = a.kernel.as_deref() else {
        bail!("invalid argument `kernel`: the CNN models need --kernel (e.g. 3x3)");
    };
    let (channels, spatial) = parse_input_shape(shape_text)?;
    let kernel = parse_kernel(kernel_text, spatial.len())?;
    let shape = ConvShape::new(channels, spatial, kernel, a.stride, a.padding)?;
    if p.gates.is_some() {
        bail!("invalid argument `gates`: the CNN models sample their gates (--patterns N)");
    }
    if p.precision != PrecisionArg::F64 {
        bail!("invalid argument `precision`: the CNN models run in f64");
    }
    if a.decompose {
        bail!("--decompose applies to --model gated-relu only");
    }
    let model = match p.model {
        ModelArg::CnnRelu => ModelKind::Relu,
        _ => ModelKind::GatedRelu,
    };
    let patterns = match p.patterns {
        PatternsArg::Sample(n) => PatternSource::Sample(n),
        PatternsArg::Exact => PatternSource::Exact {
            max_patterns: p.max_patterns,
        },
        // Column generation prices dense ReLU patterns; the CNN default is sampled gates.
        PatternsArg::Auto => PatternSource::Sample(100),
        PatternsArg::Adaptive => {
            bail!("invalid argument `patterns`: the CNN models take N or exact (not adaptive)")
        }
    };
    refuse_occupied_out(a.out.as_deref(), a.force)?;
    let table = read_table(&d.data, &d.target)?;
    let cfg = ConvTrainConfig {
        task: task_arg(d.task),
        model,
        loss: loss_arg(d.loss),
        lambda,
        patterns,
        shape,
        bias: !d.no_bias,
        scale_target: !d.no_scale_target,
        test_fraction: d.test_fraction,
        seed: d.seed,
        solver: SolverSettings {
            tol: p.tol,
            max_iter: p.max_iter,
            precision: Precision::F64,
            ..SolverSettings::default()
        },
    };
    if let Some(pool) = a.pool.as_deref() {
        return crate::cnn_pool::run_train_pooled(&a, &table, &cfg, pool);
    }
    let mut progress = SolveProgress::new(a.quiet);
    let out = train(&table, &cfg, &mut |pr| progress.update(pr));
    progress.finish();
    let (model, report) = out?;
    if let Some(dir) = &a.out {
        model
            .save(dir, Some(&report), a.force)
            .with_context(|| format!("saving the model to {}", dir.display()))?;
    }
    let summary = summary(&a, &model, &report);
    if a.json {
        eprint!("{summary}");
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        print!("{summary}");
    }
    Ok(())
}

fn summary(a: &TrainArgs, m: &ConvModel, r: &ConvReport) -> String {
    let mut s =
        format!(
        "cvxnn train: {} ({}), {} loss, lambda {:e}, {} {} patterns, {} train / {} test samples\n",
        a.input.data.display(),
        r.model,
        m.meta.loss,
        r.lambda,
        r.patterns,
        if r.certificate == "global" { "exact" } else { "sampled" },
        r.n_train,
        r.n_test
    );
    s += &format!(
        "  cnn          {}, {} patches of length {} (sum pooling), features divided by {:.6}\n",
        r.shape, r.patches, r.filter_len, m.meta.feature_scale
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
    if m.meta.model == ModelKind::Relu {
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

/// `cvxnn predict` on a CNN model directory.
pub(crate) fn run_predict_cnn(a: PredictArgs) -> Result<()> {
    let model = ConvModel::load(&a.model)?;
    let (x, target) = read_features(&a.data, &model.meta.feature_names, &model.meta.target)?;
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
            model.meta.target,
            metrics_line(&m)
        );
        eprint!("{}", confusion_lines("data", &m));
    }
    Ok(())
}
