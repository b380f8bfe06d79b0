//! The subcommands: read inputs, call the library, print and save results.

use std::io::Write;
use std::path::Path;

use anyhow::{bail, Context, Result};
use cvxnn::certificate::OracleSettings;
use cvxnn::data::{
    is_npy, read_features, read_gates, read_npy_features, read_npy_table, read_table, Table, Task,
};
use cvxnn::estimator::{
    certify, train, Architecture, CertifyConfig, CertifyReport, ConvConfig, PatternSource, Report,
    SolverChoice, TrainConfig, TrainedModel, WarmStart, AUTO_EXACT_PATTERNS,
};
use cvxnn::loss::LossKind;
use cvxnn::network::{GradientSettings, RawNetwork};
use cvxnn::path::{choose_lambda, PathConfig, PathReport};
use cvxnn::program::{ColumnGenerationSettings, ModelKind, OutputMode, RoundSolver};
use cvxnn::solver::{Precision, SolverSettings};

use crate::args::{
    CertifyArgs, Cli, Command, DataArgs, InfoArgs, InitArg, LambdaArg, LossArg, ModelArg,
    OutputsArg, PatternsArg, PrecisionArg, PredictArgs, RoundSolverArg, SolveArgs, SolverArg,
    TaskArg, TrainArgs,
};
use crate::path::path_progress;
use crate::progress::SolveProgress;

/// Runs the parsed command line.
pub fn run(cli: Cli) -> Result<()> {
    match cli.command {
        Command::Train(a) => run_train(*a),
        Command::Predict(a) => run_predict(a),
        Command::Info(a) => run_info(a),
        Command::Certify(a) => run_certify(a),
        Command::Baseline(a) => crate::baseline::run_baseline(a),
        Command::Path(a) => crate::path::run_path(a),
    }
}

/// `initial`: sampled patterns column generation starts from (adaptive and auto).
fn pattern_source(p: PatternsArg, max_patterns: usize, initial: usize) -> PatternSource {
    match p {
        PatternsArg::Sample(n) => PatternSource::Sample(n),
        PatternsArg::Exact => PatternSource::Exact { max_patterns },
        PatternsArg::Adaptive => PatternSource::Adaptive { initial },
        PatternsArg::Auto => PatternSource::Auto {
            max_exact: AUTO_EXACT_PATTERNS,
            initial,
        },
    }
}

fn solver_choice(s: SolverArg) -> SolverChoice {
    match s {
        SolverArg::Auto => SolverChoice::Auto,
        SolverArg::FirstOrder => SolverChoice::FirstOrder,
        SolverArg::Conic => SolverChoice::Conic,
    }
}

pub(crate) fn task_arg(t: TaskArg) -> Option<Task> {
    match t {
        TaskArg::Auto => None,
        TaskArg::Regression => Some(Task::Regression),
        TaskArg::Binary => Some(Task::Binary),
        TaskArg::Multiclass => Some(Task::Multiclass),
    }
}

pub(crate) fn loss_arg(l: Option<LossArg>) -> Option<LossKind> {
    l.map(|l| match l {
        LossArg::Squared => LossKind::Squared,
        LossArg::Logistic => LossKind::Logistic,
        LossArg::CrossEntropy => LossKind::CrossEntropy,
    })
}

/// The configuration `train` and `path` share: data, preprocessing, program, patterns and
/// solver (`initial`: sampled patterns column generation starts from). `lambda` is set by the
/// caller.
pub(crate) fn base_config(
    d: &DataArgs,
    p: &SolveArgs,
    n_features: usize,
    initial: usize,
) -> Result<TrainConfig> {
    let patterns = match &p.gates {
        Some(_) if crate::cnn::is_cnn(p.model) => {
            bail!("invalid argument `gates`: the CNN models sample their gates (--patterns N)")
        }
        Some(path) => {
            let cols = n_features + usize::from(!d.no_bias);
            PatternSource::Gates(read_gates(path, cols).with_context(|| "reading --gates")?)
        }
        None => pattern_source(p.patterns, p.max_patterns, initial),
    };
    if p.patterns == PatternsArg::Exact && p.model == ModelArg::GatedRelu {
        bail!(
            "invalid argument `patterns`: `exact` needs --model relu (gated ReLU needs a gate per pattern; use --patterns N or --gates FILE)"
        );
    }
    if p.patterns == PatternsArg::Exact && p.model == ModelArg::CnnGatedRelu {
        bail!(
            "invalid argument `patterns`: exact patterns need --model cnn-relu (the gated model needs a gate per pattern; use --patterns N)"
        );
    }
    Ok(TrainConfig {
        task: task_arg(d.task),
        model: match p.model {
            ModelArg::Relu | ModelArg::CnnRelu => ModelKind::Relu,
            ModelArg::GatedRelu | ModelArg::CnnGatedRelu => ModelKind::GatedRelu,
            ModelArg::Linear | ModelArg::LinearCnn => {
                bail!(
                    "invalid argument `model`: the linear models are trained by `cvxnn train` only"
                )
            }
            ModelArg::CircularCnn | ModelArg::CircularLinearCnn => {
                bail!("invalid argument `model`: the circular CNN models are trained by `cvxnn train` only")
            }
            ModelArg::Cnn3Relu => {
                bail!("invalid argument `model`: cnn3-relu is trained by `cvxnn train` only")
            }
        },
        loss: loss_arg(d.loss),
        patterns,
        standardize: !d.no_standardize,
        bias: !d.no_bias,
        scale_target: !d.no_scale_target,
        test_fraction: d.test_fraction,
        seed: d.seed,
        solver: SolverSettings {
            tol: p.tol,
            max_iter: p.max_iter,
            precision: match p.precision {
                PrecisionArg::F64 => Precision::F64,
                PrecisionArg::F32 => Precision::F32,
            },
            ..SolverSettings::default()
        },
        solver_choice: solver_choice(p.solver),
        outputs: match p.outputs {
            OutputsArg::Separate => OutputMode::Separate,
            OutputsArg::Shared => OutputMode::Shared,
        },
        ..TrainConfig::default()
    })
}

fn train_config(
    a: &TrainArgs,
    n_features: usize,
    lambda: f64,
    conv: Option<ConvConfig>,
) -> Result<TrainConfig> {
    let (d, p) = (&a.input, &a.program);
    let adaptive =
        matches!(p.patterns, PatternsArg::Adaptive | PatternsArg::Auto) && p.gates.is_none();
    if conv.is_some() {
        // The CNN warm start is an Adam CNN (`--init sgd`) over the fixed pattern set.
        if a.init_network.is_some() {
            bail!("invalid argument `init-network`: the CNN models take --init sgd (a CNN trained by Adam), not a dense network");
        }
    } else if (a.init.is_some() || a.init_network.is_some()) && !adaptive {
        bail!(
            "invalid argument `init`: --init and --init-network need --patterns adaptive (or auto)"
        );
    }
    let init = match (&a.init_network, a.init) {
        (Some(path), _) => Some(WarmStart::Network(
            RawNetwork::load(path)
                .with_context(|| format!("reading --init-network {}", path.display()))?,
        )),
        (None, Some(InitArg::Sgd)) => Some(WarmStart::Gradient(GradientSettings {
            width: a.init_width,
            epochs: a.init_epochs,
            learning_rate: a.init_lr,
            seed: d.seed,
            ..GradientSettings::default()
        })),
        (None, None) => None,
    };
    Ok(TrainConfig {
        lambda,
        column_generation: ColumnGenerationSettings {
            batch: a.batch,
            max_rounds: a.rounds,
            round_max_iter: a.round_iter,
            round_solver: match a.round_solver {
                RoundSolverArg::Gradient => RoundSolver::Gradient {
                    epochs: a.round_epochs,
                    learning_rate: a.round_lr,
                    scale: 0.05,
                },
                RoundSolverArg::Convex => RoundSolver::Convex,
            },
            final_max_iter: a.final_iter,
            oracle: OracleSettings {
                random_starts: a.oracle_starts / 2,
                data_starts: a.oracle_starts - a.oracle_starts / 2,
                seed: d.seed,
                ..OracleSettings::default()
            },
            ..ColumnGenerationSettings::default()
        },
        init,
        conv,
        ..base_config(d, p, n_features, a.initial_patterns)?
    })
}

/// Refuses an `--out` directory that is a file or (without `--force`) holds model files, before
/// any work, so that nothing the user has is overwritten.
pub(crate) fn refuse_occupied_out(out: Option<&Path>, force: bool) -> Result<()> {
    refuse_occupied(out, force, &cvxnn::estimator::MODEL_FILES)
}

/// [`refuse_occupied_out`] for any set of output `files`.
pub(crate) fn refuse_occupied(out: Option<&Path>, force: bool, files: &[&str]) -> Result<()> {
    let Some(dir) = out else { return Ok(()) };
    if dir.exists() && !dir.is_dir() {
        bail!("--out {} exists and is not a directory", dir.display());
    }
    if !force {
        for f in files {
            if dir.join(f).exists() {
                bail!(
                    "{} exists; choose another --out directory or pass --force to replace it",
                    dir.join(f).display()
                );
            }
        }
    }
    Ok(())
}

/// The sample shape `(C, [H, W] | [L])` of a `.npy` feature array with channels.
type SampleShape = Option<(usize, Vec<usize>)>;

/// Reads the training data: a CSV whose column `target` is the target, or a `.npy` feature
/// array of shape (n, C, H, W), (n, C, L) or (n, features), whose targets are in the file
/// `target` names (a `.npy` array of shape (n) or (n, 1), or a CSV with a `y` column or a single
/// column). Returns the table and, for a `.npy` array with channels, its sample shape.
pub(crate) fn load_table(data: &Path, target: &str) -> Result<(Table, SampleShape)> {
    if !is_npy(data) {
        return Ok((read_table(data, target)?, None));
    }
    let file = Path::new(target);
    if !file.is_file() {
        bail!(
            "invalid argument `target`: with a .npy --data, --target names the targets file (a .npy array of shape (n) or a CSV column), and `{target}` is not a file"
        );
    }
    let (table, sample) = read_npy_table(data, file, "y")?;
    let shape = match sample.split_first() {
        Some((&c, rest)) if !rest.is_empty() => Some((c, rest.to_vec())),
        _ => None,
    };
    Ok((table, shape))
}

/// Feature rows for a model: a CSV with the model's columns (and maybe its target), or a `.npy`
/// array whose samples flatten to the model's feature count (no target).
fn load_features(
    data: &Path,
    feature_names: &[String],
    target: &str,
) -> Result<(cvxnn::linalg::Matrix, Option<cvxnn::data::TargetColumn>)> {
    if !is_npy(data) {
        return Ok(read_features(data, feature_names, target)?);
    }
    let (x, sample) = read_npy_features(data)?;
    if x.ncols() != feature_names.len() {
        bail!(
            "invalid argument `data`: {} holds samples of shape {sample:?} ({} values), the model takes {}",
            data.display(),
            x.ncols(),
            feature_names.len()
        );
    }
    Ok((x, None))
}

fn run_train(a: TrainArgs) -> Result<()> {
    if (a.init.is_some() || a.init_network.is_some())
        && matches!(
            a.program.model,
            ModelArg::Cnn3Relu
                | ModelArg::CircularCnn
                | ModelArg::CircularLinearCnn
                | ModelArg::Linear
                | ModelArg::LinearCnn
        )
    {
        bail!("invalid argument `init`: --init warm-starts --model relu (column generation) and cnn-relu only");
    }
    if a.program.model == ModelArg::Cnn3Relu {
        return crate::cnn3::run_train_cnn3(a);
    }
    if matches!(
        a.program.model,
        ModelArg::CircularCnn | ModelArg::CircularLinearCnn
    ) {
        return crate::circular::run_train_circular(a);
    }
    if matches!(a.program.model, ModelArg::Linear | ModelArg::LinearCnn) {
        return crate::linear::run_train_linear(a);
    }
    if a.circular {
        bail!("invalid argument `circular`: --circular needs --model linear-cnn");
    }
    // A .npy array may give the input shape; a CSV's CNN options are checked before any work.
    let early = if is_npy(&a.input.data) {
        None
    } else {
        Some(crate::cnn::conv_config(&a, None)?)
    };
    if a.decompose && a.program.model != ModelArg::GatedRelu {
        bail!("--decompose applies to --model gated-relu only");
    }
    if a.lambda != LambdaArg::Auto && a.grid.lambdas.is_some() {
        bail!("invalid argument `lambdas`: --lambdas applies to --lambda auto");
    }
    refuse_occupied_out(a.out.as_deref(), a.force)?;
    let (table, sample) = load_table(&a.input.data, &a.input.target)?;
    let conv = match early {
        Some(c) => c,
        None => crate::cnn::conv_config(&a, sample)?,
    };
    let (lambda, chosen) = match a.lambda {
        LambdaArg::Value(v) => (v, None),
        LambdaArg::Auto => {
            // The path ignores lambda; the configuration is otherwise the training run's.
            let cfg = train_config(&a, table.feature_names.len(), 1.0, conv.clone())?;
            let path = PathConfig {
                grid: a.grid.lambdas.unwrap_or_default(),
                validation_fraction: a.grid.validation_fraction,
                warm_start: true,
            };
            let mut progress = SolveProgress::new(a.quiet);
            let r = choose_lambda(&table, &cfg, &path, &mut |e| {
                path_progress(&mut progress, e)
            });
            progress.finish();
            let r = r.context("choosing lambda (--lambda auto)")?;
            (r.recommended_lambda, Some(r))
        }
    };
    let cfg = train_config(&a, table.feature_names.len(), lambda, conv)?;
    let mut progress = SolveProgress::new(a.quiet);
    let out = train(&table, &cfg, a.decompose, &mut |p| progress.update(p));
    progress.finish();
    let mut out = out?;
    out.report.lambda_path = chosen.as_ref().map(PathReport::summary);
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
    let model = match &r.conv {
        Some(_) => format!("cnn-{}", r.model),
        None => r.model.to_string(),
    };
    s += &format!(
        "cvxnn train: {} ({}), {} loss, lambda {:e}, {} {} patterns, {} solver, {} train / {} test samples, d = {}\n",
        a.input.data.display(),
        model,
        loss,
        r.lambda,
        r.patterns,
        match (r.certificate.as_str(), &r.column_generation) {
            ("global", _) => "exact",
            (_, Some(_)) => "adaptive",
            _ => "sampled",
        },
        r.solver,
        r.n_train,
        r.n_test,
        r.d
    );
    if let Some(p) = &r.lambda_path {
        s += &format!(
            "  lambda auto  {:.4e}: best {} of {} lambdas from lambda_max {:.4e} ({} fitted / {} validation samples, {} patterns, {:.2} s)\n",
            p.recommended_lambda,
            p.selection,
            p.lambdas.len(),
            p.lambda_max,
            p.n_fit,
            p.n_validation,
            p.patterns,
            p.seconds
        );
    }
    if let Some(c) = &r.conv {
        s += &format!(
            "  cnn          {}, {} patches of length {} ({}), features divided by {:.6}\n",
            c.shape,
            c.patches,
            c.filter_len,
            match c.architecture {
                Architecture::CnnSumPool => "sum pooling",
                Architecture::CnnAvgPool => "local average pooling",
                Architecture::CnnMaxPool => "local max pooling",
                Architecture::TwoLayer => "dense",
            },
            c.feature_scale
        );
        if let (Some(init), Some(obj)) = (&c.init, c.init_objective) {
            s += &format!(
                "  warm start   {init}: Adam CNN, objective {obj:.8e} ({:.2} s, {} patterns added); rebuilt convex network {:.8e}; returned: {}\n",
                c.init_seconds.unwrap_or(0.0),
                c.init_patterns.unwrap_or(0),
                c.rebuilt_objective.unwrap_or(f64::NAN),
                if c.init_kept == Some(true) {
                    "the Adam CNN (lower objective)"
                } else {
                    "the convex network"
                }
            );
        }
        if let (Some(pool), Some(exact), Some(exact_for)) = (&c.pool, c.exact, &c.exact_for) {
            s += &format!(
                "  pooling      {pool}; program exact for the full architecture: {}; exact for {exact_for}\n",
                if exact { "yes" } else { "no" }
            );
        }
    }
    if r.outputs > 1 {
        s += &format!(
            "  outputs      {} classes, {} ({})\n",
            r.outputs,
            r.output_mode,
            match r.output_mode {
                OutputMode::Separate => "each neuron feeds one class output",
                OutputMode::Shared => "every neuron feeds all class outputs",
            }
        );
    }
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
    if let Some(cs) = r.conic_status {
        s += &format!(
            "  conic        {} ({} interior-point iterations; dual bound from a warm-started first-order solve)\n",
            conic_status_name(cs),
            r.conic_iterations.unwrap_or(0)
        );
    }
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
    if let Some(cg) = &r.column_generation {
        if let (Some(init), Some(obj)) = (&cg.init, cg.init_objective) {
            s += &format!(
                "  warm start   {init} network, objective {obj:.8e}{}\n",
                cg.init_seconds
                    .map(|t| format!(" ({t:.2} s)"))
                    .unwrap_or_default()
            );
        }
        s += &format!(
            "  oracle       {} rounds, {:?}: max |theta^T (Xu)_+| / lambda = {:.6} ({} starts x 2 signs per round)\n",
            cg.rounds.len(),
            cg.end,
            cg.oracle_ratio,
            cg.oracle.random_starts + cg.oracle.data_starts
        );
        s += &format!(
            "  searched     lower bound {:.8e} if no pattern was missed (heuristic)\n",
            cg.searched_bound
        );
    }
    s += &format!(
        "  {}      {}\n",
        if r.conv.is_some() {
            "filters"
        } else {
            "neurons"
        },
        r.neurons
    );
    s += &format!("  train        {}\n", metrics_line(&r.train));
    if let Some(t) = &r.test {
        s += &format!("  test         {}\n", metrics_line(t));
    }
    let (split, m) = r.test.as_ref().map_or(("train", &r.train), |t| ("test", t));
    s += &confusion_lines(split, m);
    if let Some(dir) = &a.out {
        s += &format!("  saved        {}\n", dir.display());
    }
    s
}

pub(crate) fn metrics_line(m: &cvxnn::estimator::Metrics) -> String {
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
    if let Some(v) = m.balanced_accuracy {
        parts.push(format!("balanced accuracy {v:.4}"));
    }
    parts.join("  ")
}

/// The confusion matrix of `m` as summary lines (rows true, columns predicted), for at most 10
/// classes; empty otherwise (report.json always has it).
pub(crate) fn confusion_lines(split: &str, m: &cvxnn::estimator::Metrics) -> String {
    let Some(cm) = &m.confusion else {
        return String::new();
    };
    if cm.labels.len() > 10 {
        return String::new();
    }
    let width = |s: &str| s.chars().count();
    let label_w = cm.labels.iter().map(|l| width(l)).max().unwrap_or(0);
    let count_w = cm
        .counts
        .iter()
        .flatten()
        .map(|c| c.to_string().len())
        .max()
        .unwrap_or(1);
    let mut s = format!(
        "  confusion    {split} (rows true, columns predicted: {})\n",
        cm.labels.join(", ")
    );
    for (label, row) in cm.labels.iter().zip(&cm.counts) {
        let cells: Vec<String> = row.iter().map(|c| format!("{c:>count_w$}")).collect();
        let pad = label_w - width(label);
        s += &format!(
            "               {label}{}  {}\n",
            " ".repeat(pad),
            cells.join(" ")
        );
    }
    s
}

/// `field` as one CSV cell: quoted (inner quotes doubled) when it holds a comma, a quote, a line
/// break or surrounding whitespace.
pub(crate) fn csv_cell(field: &str) -> String {
    let special = field.contains([',', '"', '\n', '\r']) || field.trim() != field;
    if special {
        format!("\"{}\"", field.replace('"', "\"\""))
    } else {
        field.to_string()
    }
}

fn run_predict(a: PredictArgs) -> Result<()> {
    if let Some(out) = &a.out {
        if out.exists() && !a.force {
            bail!("{} exists; pass --force to replace it", out.display());
        }
    }
    if cvxnn::conv_circular::is_circular_model(&a.model) {
        return crate::circular::run_predict_circular(a);
    }
    if cvxnn::linear_model::is_linear_model(&a.model) {
        return crate::linear::run_predict_linear(a);
    }
    if cvxnn::conv3::is_cnn3_model(&a.model) {
        return crate::cnn3::run_predict_cnn3(a);
    }
    let model = TrainedModel::load(&a.model)?;
    let (x, target) = load_features(&a.data, &model.meta.feature_names, &model.meta.target)?;
    let pred = model.predict(&x)?;
    // Metrics first: a target the model cannot read (an unknown label) stops before any output.
    let metrics = match &target {
        Some(t) => Some(model.metrics(&x, t)?),
        None => None,
    };
    write_predictions(
        a.out.as_deref(),
        &pred.to_strings(),
        &model.meta.target,
        metrics.as_ref(),
    )
}

/// Writes a `prediction` column (to `out`, or stdout) and, when the data had the target, the
/// metrics on stderr: the last step of `predict` for every model kind.
pub(crate) fn write_predictions(
    out: Option<&Path>,
    pred: &[String],
    target: &str,
    metrics: Option<&cvxnn::estimator::Metrics>,
) -> Result<()> {
    let mut text = String::from("prediction\n");
    for p in pred {
        text += &csv_cell(p);
        text.push('\n');
    }
    match out {
        Some(path) => write_file(path, &text)?,
        None => std::io::stdout().write_all(text.as_bytes())?,
    }
    if let Some(m) = metrics {
        eprintln!(
            "{} rows; against `{target}`: {}",
            pred.len(),
            metrics_line(m)
        );
        eprint!("{}", confusion_lines("data", m));
    }
    Ok(())
}

pub(crate) fn write_file(path: &Path, text: &str) -> Result<()> {
    std::fs::write(path, text).with_context(|| format!("writing {}", path.display()))
}

fn run_info(a: InfoArgs) -> Result<()> {
    if cvxnn::linear_model::is_linear_model(&a.model) {
        return crate::linear::run_info_linear(&a);
    }
    if cvxnn::conv_circular::is_circular_model(&a.model) {
        return crate::circular::run_info_circular(&a);
    }
    if cvxnn::conv3::is_cnn3_model(&a.model) {
        return crate::cnn3::run_info_cnn3(&a);
    }
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
    match &m.conv {
        Some(c) => {
            println!(
                "cnn          {}, {} filters, features divided by {:.6}, bias {}",
                c.shape.describe(),
                c.filters,
                c.feature_scale,
                m.bias
            );
            if let Some(p) = &c.pool {
                println!("pooling      {} (window size and stride)", p.describe());
            }
        }
        None => println!(
            "preprocess   standardize {}  bias {}",
            m.standardize, m.bias
        ),
    }
    print_labels(m.task, m.labels.as_ref(), m.output_mode);
    print_certificate(&a.model);
    Ok(())
}

/// The `labels` line of `cvxnn info` (nothing without labels): binary `neg -> -1, pos -> +1`,
/// multiclass the classes and how the outputs are shared.
pub(crate) fn print_labels(
    task: Task,
    labels: Option<&cvxnn::data::ClassLabels>,
    outputs: impl std::fmt::Display,
) {
    let Some(l) = labels else { return };
    match (task, l.labels()) {
        (Task::Binary, [neg, pos]) => println!("labels       {neg} -> -1, {pos} -> +1"),
        (_, all) => println!(
            "labels       {} classes: {} (outputs {outputs})",
            all.len(),
            all.join(", ")
        ),
    }
}

/// The `certificate` line of `cvxnn info` from `dir/report.json` (objective, dual bound,
/// relative gap, certificate and status), or a baseline model's training line; nothing
/// without a report. Every model kind's report is read field by field, so one helper serves all.
pub(crate) fn print_certificate(dir: &Path) {
    let Ok(text) = std::fs::read_to_string(dir.join("report.json")) else {
        return;
    };
    let v: serde_json::Value = serde_json::from_str(&text).unwrap_or_default();
    let num = |k: &str| v[k].as_f64();
    if let (Some(o), Some(b), Some(g)) = (num("objective"), num("dual_bound"), num("relative_gap"))
    {
        let status = v["status"].as_str().unwrap_or("?");
        let how = match v["certificate"].as_str() {
            Some(c) => format!("{c}, {status}"),
            None => status.to_string(),
        };
        println!(
            "certificate  objective {o:.8e}  dual bound {b:.8e}  relative gap {g:.2e} ({how})"
        );
    } else if let Some(line) = crate::baseline::info_line(&text) {
        println!("{line}");
    }
}

fn conic_status_name(s: cvxnn::solver::conic::ConicStatus) -> String {
    serde_json::to_value(s)
        .ok()
        .and_then(|v| v.as_str().map(str::to_string))
        .unwrap_or_else(|| format!("{s:?}"))
}

fn run_certify(a: CertifyArgs) -> Result<()> {
    let model_path = a.model.as_path();
    if cvxnn::linear_model::is_linear_model(model_path)
        || model_path
            .parent()
            .is_some_and(cvxnn::linear_model::is_linear_model)
    {
        return crate::linear::run_certify_linear(&a);
    }
    // A model directory, or the model.safetensors inside one, brings its preprocessing.
    let dir = if model_path.is_dir() {
        Some(model_path.to_path_buf())
    } else {
        model_path
            .parent()
            .filter(|p| p.join("model.json").is_file())
            .map(Path::to_path_buf)
    };
    // A dense network (with or without a model directory), or a whole CNN model.
    if let Some(d) = dir.as_deref() {
        let whole = |kind: &str| -> Result<()> {
            if model_path.is_file() {
                bail!("invalid argument `model`: certify a {kind} model by its model directory");
            }
            refuse_preprocessing_flags(&a, kind)
        };
        if cvxnn::conv_circular::is_circular_model(d) {
            whole("circular-CNN")?;
            return crate::circular::run_certify_circular(&a, d);
        }
        if cvxnn::conv3::is_cnn3_model(d) {
            whole("cnn3-relu")?;
            return crate::cnn3::run_certify_cnn3(&a, d);
        }
    }
    if a.second_layer_patterns.is_some() {
        bail!("invalid argument `second-layer-patterns`: applies to cnn3-relu models only");
    }
    let (net, meta, cnn) = match &dir {
        Some(d) => {
            let m = TrainedModel::load(d)
                .with_context(|| format!("reading the model directory {}", d.display()))?;
            if m.meta.conv.is_some() {
                if model_path.is_file() {
                    bail!("invalid argument `model`: certify a CNN by its model directory");
                }
                (None, Some(m.meta.clone()), Some(m))
            } else if model_path.is_file() {
                // The weights given, with the directory's metadata.
                let net = cvxnn::network::RawNetwork::load(model_path)?;
                (Some(net), Some(m.meta), None)
            } else {
                (m.network.dense().cloned(), Some(m.meta), None)
            }
        }
        None => (
            Some(cvxnn::network::RawNetwork::load(model_path)?),
            None,
            None,
        ),
    };
    let table = match &meta {
        Some(m) => certify_table(&a, &m.feature_names, &m.target)?,
        None => load_table(&a.data, a.target.as_deref().unwrap_or("y"))?.0,
    };
    let cfg = certify_config(&a);
    let mut progress = SolveProgress::new(a.quiet);
    let r = match (&cnn, &net) {
        (Some(m), _) => cvxnn::conv::certify(&table, m, &cfg, &mut |p| progress.update(p)),
        (None, Some(net)) => certify(&table, net, meta.as_ref(), &cfg, &mut |p| {
            progress.update(p)
        }),
        (None, None) => {
            progress.finish();
            bail!("internal: no network to certify")
        }
    };
    progress.finish();
    print_certify(&a, &r?, meta.is_some())
}

/// The table `certify` reads for a model with these raw `feature_names`: a CSV with those
/// columns and the target (`--target`, else the model's `target`), or a `.npy` array of
/// samples with its targets file.
pub(crate) fn certify_table(
    a: &CertifyArgs,
    feature_names: &[String],
    target: &str,
) -> Result<cvxnn::data::Table> {
    let target = a.target.clone().unwrap_or_else(|| target.to_string());
    let (x, t) = if is_npy(&a.data) {
        let (t, _) = load_table(&a.data, &target)?;
        load_features(&a.data, feature_names, &target)?;
        (t.features, Some(t.target))
    } else {
        read_features(&a.data, feature_names, &target)?
    };
    let Some(t) = t else {
        bail!(
            "{}: target column `{target}` not found (certify needs the targets)",
            a.data.display()
        );
    };
    Ok(cvxnn::data::Table {
        path: a.data.clone(),
        feature_names: feature_names.to_vec(),
        features: x,
        target_name: target,
        target: t,
    })
}

/// The library's [`CertifyConfig`] from the command line.
pub(crate) fn certify_config(a: &CertifyArgs) -> CertifyConfig {
    CertifyConfig {
        task: task_arg(a.task),
        loss: loss_arg(a.loss),
        lambda: a.lambda,
        // Certify refuses adaptive and auto patterns (they are for train).
        patterns: pattern_source(a.patterns, a.max_patterns, 0),
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
        solver_choice: solver_choice(a.solver),
    }
}

/// Refuses the `certify` flags a saved model of `kind` has no use for (its preprocessing and
/// task come from its model directory), by name.
pub(crate) fn refuse_preprocessing_flags(a: &CertifyArgs, kind: &str) -> Result<()> {
    for (set, name) in [
        (a.no_standardize, "no-standardize"),
        (a.no_bias, "no-bias"),
        (a.no_scale_target, "no-scale-target"),
    ] {
        if set {
            bail!("invalid argument `{name}`: a {kind} model brings its own preprocessing");
        }
    }
    if a.second_layer_patterns.is_some() && kind != "cnn3-relu" {
        bail!("invalid argument `second-layer-patterns`: applies to cnn3-relu models only");
    }
    Ok(())
}

/// Prints a certify report: the summary (stdout, or stderr with `--json` and the JSON on
/// stdout). `from_dir`: the preprocessing came from a model directory.
pub(crate) fn print_certify(a: &CertifyArgs, r: &CertifyReport, from_dir: bool) -> Result<()> {
    let summary = certify_summary(a, r, from_dir);
    if a.json {
        eprint!("{summary}");
        println!("{}", serde_json::to_string_pretty(r)?);
    } else {
        print!("{summary}");
    }
    Ok(())
}

fn certify_summary(a: &CertifyArgs, r: &CertifyReport, from_dir: bool) -> String {
    let mut s = String::new();
    s += &format!(
        "cvxnn certify: {} on {} ({} neurons{}), {} loss, lambda {:e}, {} samples, d = {}\n",
        a.model.display(),
        a.data.display(),
        r.neurons,
        if from_dir {
            ", model.json preprocessing"
        } else {
            ""
        },
        r.loss,
        r.lambda,
        r.n,
        r.d
    );
    s += &format!(
        "  network      {:.8e}   (weight decay; balanced neurons: {:.8e})\n",
        r.network_objective, r.balanced_objective
    );
    s += &format!(
        "  lower bound  {:.8e}   ({}, {} patterns incl. {} from the network)\n",
        r.lower_bound, r.certificate, r.patterns, r.network_patterns_added
    );
    if let Some(w) = &r.exact_for {
        s += &format!("  bound for    {w}\n");
    }
    s += &format!(
        "  gap          {:.2e}, relative {:.2e}\n",
        r.gap, r.relative_gap
    );
    s += &format!(
        "  verdict      {}\n",
        if r.optimal {
            format!("optimal within tol {:e} ({})", r.tol, r.certificate)
        } else {
            format!("not provably optimal within tol {:e}", r.tol)
        }
    );
    s += &format!(
        "  convex opt.  {:.8e}   (upper bound; {} solver, {}, {} neurons, {:.2} s)\n",
        r.convex_objective, r.solver, r.convex_status, r.convex_neurons, r.seconds
    );
    s
}
