//! `cvxnn train --model cnn3-relu` and `predict` on a three-layer CNN model directory.

use anyhow::{bail, Context, Result};
use cvxnn::conv3::{train, Cnn3Model, Cnn3Report, Cnn3TrainConfig, SecondLayerPatterns};
use cvxnn::data::{read_features, read_table, ConvShape};
use cvxnn::estimator::PatternSource;
use cvxnn::solver::{Precision, SolverSettings};

use crate::args::{
    CertifyArgs, InfoArgs, LambdaArg, PatternsArg, PrecisionArg, PredictArgs, TrainArgs,
};
use crate::cnn::{parse_input_shape, parse_kernel};
use crate::commands::{
    certify_config, certify_table, loss_arg, metrics_line, print_certificate, print_certify,
    print_labels, refuse_occupied_out, task_arg, write_predictions,
};
use crate::progress::SolveProgress;

/// Parses `--second-layer-patterns N|exact`.
fn parse_second(s: &str) -> Result<SecondLayerPatterns> {
    if s.eq_ignore_ascii_case("exact") {
        return Ok(SecondLayerPatterns::Exact);
    }
    match s.trim().parse::<usize>() {
        Ok(n) if n > 0 => Ok(SecondLayerPatterns::Sample(n)),
        _ => bail!(
            "invalid argument `second-layer-patterns`: expected a count >= 1 or `exact`, got `{s}`"
        ),
    }
}

/// Trains a three-layer CNN model.
pub(crate) fn run_train_cnn3(a: TrainArgs) -> Result<()> {
    let (d, p) = (&a.input, &a.program);
    if a.pool != crate::args::PoolArg::None {
        bail!(
            "invalid argument `pool`: --model cnn3-relu takes no --pool (it sums over positions)"
        );
    }
    let LambdaArg::Value(lambda) = a.lambda else {
        bail!("invalid argument `lambda`: the CNN models take a number, not auto");
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
        bail!("invalid argument `gates`: cnn3-relu samples its patterns (--patterns N)");
    }
    if p.precision != PrecisionArg::F64 {
        bail!("invalid argument `precision`: the CNN models run in f64");
    }
    if a.decompose {
        bail!("--decompose applies to --model gated-relu only");
    }
    let patterns = match p.patterns {
        PatternsArg::Sample(n) => PatternSource::Sample(n),
        PatternsArg::Exact => PatternSource::Exact {
            max_patterns: p.max_patterns,
        },
        PatternsArg::Auto => PatternSource::Sample(50),
        PatternsArg::Adaptive => {
            bail!("invalid argument `patterns`: the CNN models take N or exact (not adaptive)")
        }
    };
    let second = parse_second(&a.second_layer_patterns)?;
    refuse_occupied_out(a.out.as_deref(), a.force)?;
    let table = read_table(&d.data, &d.target)?;
    let cfg = Cnn3TrainConfig {
        task: task_arg(d.task),
        loss: loss_arg(d.loss),
        lambda,
        patterns,
        second,
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

fn summary(a: &TrainArgs, m: &Cnn3Model, r: &Cnn3Report) -> String {
    let mut s = format!(
        "cvxnn train: {} (cnn3-relu, path penalty), {} loss, lambda {:e}, {} x {} {} patterns, {} train / {} test samples\n",
        a.input.data.display(),
        m.meta.loss,
        r.lambda,
        r.patterns,
        r.second_layer_patterns,
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
    s += &format!(
        "  violation    {:.2e} (relative, cone constraints of both layers)\n",
        r.violation
    );
    s += &format!(
        "  network      {} filters, {} middle units\n",
        r.filters, r.units
    );
    s += &format!("  train        {}\n", metrics_line(&r.train));
    if let Some(t) = &r.test {
        s += &format!("  test         {}\n", metrics_line(t));
    }
    if let Some(dir) = &a.out {
        s += &format!("  saved        {}\n", dir.display());
    }
    s
}

/// `cvxnn predict` on a three-layer CNN model directory.
pub(crate) fn run_predict_cnn3(a: PredictArgs) -> Result<()> {
    let model = Cnn3Model::load(&a.model)?;
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

/// `cvxnn info` on a three-layer CNN model directory.
pub(crate) fn run_info_cnn3(a: &InfoArgs) -> Result<()> {
    let model = Cnn3Model::load(&a.model)?;
    let m = &model.meta;
    println!(
        "model        cnn3-relu ({}), cvxnn {}",
        m.architecture, m.version
    );
    println!(
        "task         {}  loss {}  lambda {:e} (path penalty)",
        m.task, m.loss, m.lambda
    );
    println!(
        "network      {} filters, {} middle units (from {} x {} first- x second-layer patterns, seed {})",
        m.filters, m.units, m.patterns, m.second_layer_patterns, m.seed
    );
    println!(
        "features     {} raw: {}",
        m.feature_names.len(),
        m.feature_names.join(", ")
    );
    println!("target       {} (scale {})", m.target, m.target_scale);
    println!(
        "cnn          {}, {} patches (sum pooling), features divided by {:.6}, bias {}",
        m.shape.describe(),
        m.shape.n_patches(),
        m.feature_scale,
        m.bias
    );
    print_labels(m.task, m.labels.as_ref(), "one");
    println!("pytorch      {}", m.torch_modules);
    print_certificate(&a.model);
    Ok(())
}

/// `cvxnn certify` on a three-layer CNN model directory `dir`: the saved network's
/// path-penalty objective on `--data` and the dual bound of its program over the chosen
/// patterns of both layers plus the network's own (see [`cvxnn::conv3::certify`]).
pub(crate) fn run_certify_cnn3(a: &CertifyArgs, dir: &std::path::Path) -> Result<()> {
    let second = a
        .second_layer_patterns
        .as_deref()
        .map(parse_second)
        .transpose()?;
    let model = Cnn3Model::load(dir)
        .with_context(|| format!("reading the model directory {}", dir.display()))?;
    let table = certify_table(a, &model.meta.feature_names, &model.meta.target)?;
    let cfg = certify_config(a);
    let mut progress = SolveProgress::new(a.quiet);
    let r = cvxnn::conv3::certify(&table, &model, &cfg, second, &mut |p| progress.update(p));
    progress.finish();
    print_certify(a, &r?, true)
}
