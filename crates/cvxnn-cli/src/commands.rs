//! The subcommands: read inputs, call the library, print and save results.

use std::io::Write;
use std::path::Path;

use anyhow::{bail, Context, Result};
use cvxnn::data::{read_features, read_gates, read_table, Task};
use cvxnn::estimator::{train, PatternSource, Report, TrainConfig, TrainedModel};
use cvxnn::loss::LossKind;
use cvxnn::program::ModelKind;
use cvxnn::solver::SolverSettings;

use crate::args::{Cli, Command, InfoArgs, LossArg, ModelArg, PredictArgs, TaskArg, TrainArgs};
use crate::progress::SolveProgress;

/// Runs the parsed command line.
pub fn run(cli: Cli) -> Result<()> {
    match cli.command {
        Command::Train(a) => run_train(a),
        Command::Predict(a) => run_predict(a),
        Command::Info(a) => run_info(a),
    }
}

fn train_config(a: &TrainArgs, n_features: usize) -> Result<TrainConfig> {
    let patterns = match &a.gates {
        Some(path) => {
            let d = n_features + usize::from(!a.no_bias);
            PatternSource::Gates(read_gates(path, d).with_context(|| "reading --gates")?)
        }
        None => PatternSource::Sample(a.patterns),
    };
    if a.patterns == 0 {
        bail!("invalid argument `patterns`: must be at least 1");
    }
    Ok(TrainConfig {
        task: match a.task {
            TaskArg::Auto => None,
            TaskArg::Regression => Some(Task::Regression),
            TaskArg::Binary => Some(Task::Binary),
        },
        model: match a.model {
            ModelArg::Relu => ModelKind::Relu,
            ModelArg::GatedRelu => ModelKind::GatedRelu,
        },
        loss: a.loss.map(|l| match l {
            LossArg::Squared => LossKind::Squared,
            LossArg::Logistic => LossKind::Logistic,
        }),
        lambda: a.lambda,
        patterns,
        standardize: !a.no_standardize,
        bias: !a.no_bias,
        scale_target: !a.no_scale_target,
        test_fraction: a.test_fraction,
        seed: a.seed,
        solver: SolverSettings {
            tol: a.tol,
            max_iter: a.max_iter,
            ..SolverSettings::default()
        },
    })
}

fn run_train(a: TrainArgs) -> Result<()> {
    if a.decompose && a.model != ModelArg::GatedRelu {
        bail!("--decompose applies to --model gated-relu only");
    }
    // Refuse an occupied output directory before any work, so that nothing is overwritten.
    if let Some(dir) = &a.out {
        if dir.exists() && !dir.is_dir() {
            bail!("--out {} exists and is not a directory", dir.display());
        }
        if !a.force {
            for f in cvxnn::estimator::MODEL_FILES {
                if dir.join(f).exists() {
                    bail!(
                        "{} exists; choose another --out directory or pass --force to replace it",
                        dir.join(f).display()
                    );
                }
            }
        }
    }
    let table = read_table(&a.data, &a.target)?;
    let cfg = train_config(&a, table.feature_names.len())?;
    let mut progress = SolveProgress::new(a.quiet);
    let out = train(&table, &cfg, a.decompose, &mut |p| progress.update(p));
    progress.finish();
    let out = out?;
    if let Some(dir) = &a.out {
        out.model
            .save(dir, Some(&out.report), a.force)
            .with_context(|| format!("saving the model to {}", dir.display()))?;
    }
    let summary = summary(&a, &out.report);
    if a.json {
        eprint!("{summary}");
        println!("{}", serde_json::to_string_pretty(&out.report)?);
    } else {
        print!("{summary}");
    }
    Ok(())
}

fn summary(a: &TrainArgs, r: &Report) -> String {
    let mut s = String::new();
    let loss = r.loss;
    s += &format!(
        "cvxnn train: {} ({}), {} loss, lambda {:e}, {} sampled patterns, {} train / {} test samples, d = {}\n",
        a.data.display(),
        r.model,
        loss,
        r.lambda,
        r.patterns,
        r.n_train,
        r.n_test,
        r.d
    );
    if r.target_scale != 1.0 {
        s += &format!(
            "  targets      divided by {:.6} (their train std); objectives in those units\n",
            r.target_scale
        );
    }
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
    if r.model == ModelKind::Relu {
        s += &format!(
            "  violation    {:.2e} (relative, cone constraints)\n",
            r.violation
        );
    }
    if let Some(o) = r.decomposed_objective {
        s += &format!("  decomposed   {o:.8e} (ReLU network from the cone decomposition)\n");
    }
    s += &format!("  neurons      {}\n", r.neurons);
    s += &format!("  train        {}\n", metrics_line(&r.train));
    if let Some(t) = &r.test {
        s += &format!("  test         {}\n", metrics_line(t));
    }
    if let Some(dir) = &a.out {
        s += &format!("  saved        {}\n", dir.display());
    }
    s
}

fn metrics_line(m: &cvxnn::estimator::Metrics) -> String {
    let mut parts = Vec::new();
    if let Some(v) = m.mse {
        parts.push(format!("mse {v:.6}"));
    }
    if let Some(v) = m.r2 {
        parts.push(format!("r2 {v:.4}"));
    }
    if let Some(v) = m.accuracy {
        parts.push(format!("accuracy {v:.4}"));
    }
    parts.join("  ")
}

fn run_predict(a: PredictArgs) -> Result<()> {
    if let Some(out) = &a.out {
        if out.exists() && !a.force {
            bail!("{} exists; pass --force to replace it", out.display());
        }
    }
    let model = TrainedModel::load(&a.model)?;
    let (x, target) = read_features(&a.data, &model.meta.feature_names, &model.meta.target)?;
    let pred = model.predict(&x)?;
    let mut text = String::from("prediction\n");
    for p in &pred {
        text += &format!("{p}\n");
    }
    match &a.out {
        Some(path) => write_file(path, &text)?,
        None => std::io::stdout().write_all(text.as_bytes())?,
    }
    if let Some(t) = target {
        let m = cvxnn::estimator::metrics(model.meta.task, &pred, &t);
        eprintln!(
            "{} rows; against `{}`: {}",
            pred.len(),
            model.meta.target,
            metrics_line(&m)
        );
    }
    Ok(())
}

fn write_file(path: &Path, text: &str) -> Result<()> {
    std::fs::write(path, text).with_context(|| format!("writing {}", path.display()))
}

fn run_info(a: InfoArgs) -> Result<()> {
    let model = TrainedModel::load(&a.model)?;
    let m = &model.meta;
    println!(
        "model        {} ({}), cvxnn {}",
        m.model, m.architecture, m.version
    );
    println!(
        "task         {}  loss {}  lambda {:e}",
        m.task, m.loss, m.lambda
    );
    println!(
        "neurons      {} (from {} patterns, seed {})",
        m.neurons, m.patterns, m.seed
    );
    println!(
        "features     {} raw: {}",
        m.feature_names.len(),
        m.feature_names.join(", ")
    );
    println!("target       {}", m.target);
    println!(
        "preprocess   standardize {}  bias {}",
        m.standardize, m.bias
    );
    if let Some(l) = &m.labels {
        println!("labels       {} -> -1, {} -> +1", l.negative, l.positive);
    }
    let report = a.model.join("report.json");
    if let Ok(text) = std::fs::read_to_string(&report) {
        if let Ok(r) = serde_json::from_str::<Report>(&text) {
            println!(
                "certificate  objective {:.8e}  dual bound {:.8e}  relative gap {:.2e} ({}, {})",
                r.objective, r.dual_bound, r.relative_gap, r.certificate, r.status
            );
        }
    }
    Ok(())
}
