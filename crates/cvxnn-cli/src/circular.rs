//! `cvxnn train --model circular-cnn|circular-linear-cnn` and `predict` on a circular-CNN model
//! directory.

use anyhow::{bail, Context, Result};
use cvxnn::conv_circular::{
    train, CircularKind, CircularModel, CircularReport, CircularTrainConfig,
};
use cvxnn::data::{read_features, read_table};
use cvxnn::estimator::PatternSource;
use cvxnn::solver::{Precision, SolverSettings};

use crate::args::{
    CertifyArgs, InfoArgs, LambdaArg, ModelArg, PatternsArg, PrecisionArg, PredictArgs, TrainArgs,
};
use crate::commands::{
    certify_config, certify_table, loss_arg, metrics_line, print_certificate, print_certify,
    print_labels, refuse_occupied_out, task_arg, write_predictions,
};
use crate::progress::SolveProgress;

/// Parses `1,L` (one channel of length `L`).
fn parse_signal_shape(s: &str) -> Result<usize> {
    let dims: Vec<usize> = s
        .split(',')
        .map(|v| v.trim().parse::<usize>())
        .collect::<std::result::Result<_, _>>()
        .with_context(|| format!("invalid argument `input-shape`: `{s}` is not 1,L"))?;
    match dims.as_slice() {
        [1, l] if *l >= 1 => Ok(*l),
        [c, _] => bail!(
            "invalid argument `input-shape`: the circular CNNs take one channel (1,L), got {c} channels"
        ),
        _ => bail!(
            "invalid argument `input-shape`: `{s}` is not 1,L (the circular CNNs are 1-D; flatten an image row-major to 1,H*W)"
        ),
    }
}

/// Trains a circular CNN.
pub(crate) fn run_train_circular(a: TrainArgs) -> Result<()> {
    let (d, p) = (&a.input, &a.program);
    let model = match p.model {
        ModelArg::CircularLinearCnn => CircularKind::Linear,
        _ => CircularKind::Relu,
    };
    let lambda = match a.lambda {
        LambdaArg::Value(v) => v,
        LambdaArg::Auto => {
            bail!("invalid argument `lambda`: the circular CNN models take a number, not auto")
        }
    };
    let Some(shape_text) = a.input_shape.as_deref() else {
        bail!("invalid argument `input-shape`: the circular CNN models need --input-shape 1,L");
    };
    let len = parse_signal_shape(shape_text)?;
    if a.kernel.is_some() || a.stride != 1 || a.padding != 0 {
        bail!(
            "invalid argument `kernel`: the circular CNNs convolve with full-length filters and circular padding (no --kernel, --stride or --padding)"
        );
    }
    if p.gates.is_some() {
        bail!("invalid argument `gates`: the circular CNN samples its gates (--patterns N)");
    }
    if p.precision != PrecisionArg::F64 {
        bail!("invalid argument `precision`: the circular CNN models run in f64");
    }
    if a.decompose {
        bail!("--decompose applies to --model gated-relu only");
    }
    let patterns = match (model, p.patterns) {
        (CircularKind::Linear, PatternsArg::Auto) => PatternSource::Sample(0),
        (CircularKind::Linear, _) => {
            bail!("invalid argument `patterns`: the linear circular CNN has no activation patterns")
        }
        (_, PatternsArg::Sample(n)) => PatternSource::Sample(n),
        (_, PatternsArg::Exact) => PatternSource::Exact {
            max_patterns: p.max_patterns,
        },
        (_, PatternsArg::Auto) => PatternSource::Sample(100),
        (_, PatternsArg::Adaptive) => {
            bail!("invalid argument `patterns`: the circular CNN takes N or exact (not adaptive)")
        }
    };
    refuse_occupied_out(a.out.as_deref(), a.force)?;
    let table = read_table(&d.data, &d.target)?;
    let cfg = CircularTrainConfig {
        task: task_arg(d.task),
        model,
        loss: loss_arg(d.loss),
        lambda,
        patterns,
        len,
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

fn summary(a: &TrainArgs, m: &CircularModel, r: &CircularReport) -> String {
    let patterns = match (m.meta.model, r.certificate.as_str()) {
        (CircularKind::Linear, _) => "no patterns".to_string(),
        (_, "global") => format!("{} exact patterns", r.patterns),
        _ => format!("{} sampled patterns", r.patterns),
    };
    let mut s = format!(
        "cvxnn train: {} ({}), {} loss, lambda {:e}, {patterns}, {} train / {} test samples\n",
        a.input.data.display(),
        r.model,
        m.meta.loss,
        r.lambda,
        r.n_train,
        r.n_test
    );
    s += &format!(
        "  circular     signals of length {}, full-length circular filters, features divided by {:.6}\n",
        r.len, m.meta.feature_scale
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
    if m.meta.model == CircularKind::Relu {
        s += &format!(
            "  violation    {:.2e} (relative, cone constraints)\n",
            r.violation
        );
    }
    s += &format!("  channels     {}\n", r.channels);
    s += &format!("  train        {}\n", metrics_line(&r.train));
    if let Some(t) = &r.test {
        s += &format!("  test         {}\n", metrics_line(t));
    }
    if let Some(dir) = &a.out {
        s += &format!("  saved        {}\n", dir.display());
    }
    s
}

/// `cvxnn predict` on a circular-CNN model directory.
pub(crate) fn run_predict_circular(a: PredictArgs) -> Result<()> {
    let model = CircularModel::load(&a.model)?;
    let (x, target) = read_features(&a.data, &model.meta.feature_names, &model.meta.target)?;
    let pred = model.predict_strings(&x)?;
    let metrics = match &target {
        Some(t) => Some(model.metrics(&x, t)?),
        None => None,
    };
    write_predictions(
        a.out.as_deref(),
        &pred,
        &model.meta.target,
        metrics.as_ref(),
    )
}

/// `cvxnn info` on a circular-CNN model directory.
pub(crate) fn run_info_circular(a: &InfoArgs) -> Result<()> {
    let model = CircularModel::load(&a.model)?;
    let m = &model.meta;
    println!(
        "model        {} ({}), cvxnn {}",
        m.model, m.architecture, m.version
    );
    println!(
        "task         {}  loss {}  lambda {:e}",
        m.task, m.loss, m.lambda
    );
    let patterns = match m.model {
        CircularKind::Relu => format!("from {} patterns, seed {}", m.patterns, m.seed),
        CircularKind::Linear => "no activation patterns".to_string(),
    };
    println!("channels     {} ({patterns})", m.channels);
    println!(
        "features     {} raw: {}",
        m.feature_names.len(),
        m.feature_names.join(", ")
    );
    println!("target       {} (scale {})", m.target, m.target_scale);
    println!(
        "circular     input 1,{}, full-length circular filters, features divided by {:.6}, no bias",
        m.len, m.feature_scale
    );
    print_labels(m.task, m.labels.as_ref(), "one");
    println!("pytorch      {}", m.torch_modules);
    print_certificate(&a.model);
    Ok(())
}

/// `cvxnn certify` on a circular-CNN model directory `dir`: the saved network's objective on
/// `--data` and the dual bound of its program (see [`cvxnn::conv_circular::certify`]).
pub(crate) fn run_certify_circular(a: &CertifyArgs, dir: &std::path::Path) -> Result<()> {
    let model = CircularModel::load(dir)
        .with_context(|| format!("reading the model directory {}", dir.display()))?;
    let table = certify_table(a, &model.meta.feature_names, &model.meta.target)?;
    let cfg = certify_config(a);
    let mut progress = SolveProgress::new(a.quiet);
    let r = cvxnn::conv_circular::certify(&table, &model, &cfg, &mut |p| progress.update(p));
    progress.finish();
    print_certify(a, &r?, true)
}
