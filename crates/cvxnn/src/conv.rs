//! The CNN arm of [`crate::estimator::train`] (DESIGN section 2): each row's features are one
//! sample of shape `(C, H, W)` (or `(C, L)`), row-major; train the two-layer CNN with global sum
//! pooling ([`ConvProgram`]) and return the same [`TrainOutput`] (model, report) as the dense
//! models, so saving, loading, predicting and reporting are shared.
//!
//! **Preprocessing.** Features are divided by ONE global scale (the largest absolute training
//! feature value), not z-scored per feature: standardizing each pixel on its own would give every
//! position its own affine map and break the weight sharing of a convolution (a filter must see
//! the same transformation at every position), and centering would make the zero padding a
//! non-zero value. A scalar scale keeps both and is folded into the exported filters.
//! **Bias:** every patch gets a constant-1 last entry, so each filter has a bias (the PyTorch
//! convolution's bias, added at every position, padded ones included).
//!
//! A new CNN architecture adds a variant to [`Architecture`] and an arm to [`solve_conv`] (its
//! program and rebuilt [`ConvNetwork`]); everything after the rebuild is shared.

use crate::architecture::{Architecture, ConvConfig, ConvReportPart, ConvSpec, ModelNetwork};
use crate::data::{patches, PoolKind, Pooling, Standardizer, Table, Task};
use crate::error::{CvxnnError, Result};
use crate::estimator::{
    certificate_name, check_model_certify, exact_patterns, merge_patterns, model_targets,
    prepare_training_data, CertifyConfig, CertifyParts, CertifyReport, ModelMeta, PatternSource,
    Report, SolverChoice, TrainConfig, TrainOutput, TrainedModel, TrainingData, WarmStart,
};
use crate::linalg::Matrix;
use crate::network::{
    embed_conv_network, train_conv_gradient, ConvNetwork, GradientSettings, Network,
    PooledConvNetwork,
};
use crate::patterns::{sample_patterns, Masks};
use crate::program::{
    AvgPoolProgram, ConvProgram, JointPatterns, MaxPoolProgram, ModelKind, OutputMode,
};
use crate::solver::{relative_gap, Precision, Progress, Solution, Status};

/// Sampled gates of [`PatternSource::Auto`] for the CNN models (column generation prices dense
/// patterns only).
pub const AUTO_CNN_SAMPLES: usize = 100;

/// What the CNN training arm checks before any work: the options that have no CNN meaning are
/// refused by name.
fn check_config(cfg: &TrainConfig, decompose: bool) -> Result<()> {
    if !(cfg.lambda.is_finite() && cfg.lambda > 0.0) {
        return Err(CvxnnError::arg(
            "lambda",
            format!("must be a finite number > 0, got {}", cfg.lambda),
        ));
    }
    cfg.solver.validate()?;
    if cfg.solver.precision != Precision::F64 {
        return Err(CvxnnError::arg("precision", "the CNN models run in f64"));
    }
    if cfg.solver_choice == SolverChoice::Conic {
        return Err(CvxnnError::arg(
            "solver",
            "the CNN models take the first-order solver (the conic formulation is the dense one)",
        ));
    }
    if decompose {
        return Err(CvxnnError::arg(
            "decompose",
            "--decompose applies to --model gated-relu only",
        ));
    }
    match &cfg.init {
        None => {}
        Some(WarmStart::Gradient(_)) if cfg.model == ModelKind::Relu => {}
        Some(WarmStart::Gradient(_)) => {
            return Err(CvxnnError::arg(
                "init",
                "--init sgd warm-starts --model cnn-relu only (the gated CNN's gates are fixed, not trained)",
            ))
        }
        Some(WarmStart::Network(_)) => {
            return Err(CvxnnError::arg(
                "init-network",
                "the CNN models take --init sgd (a CNN trained by Adam), not a dense network",
            ))
        }
    }
    if cfg.model == ModelKind::GatedRelu && matches!(cfg.patterns, PatternSource::Exact { .. }) {
        return Err(CvxnnError::arg(
            "patterns",
            "exact patterns need --model cnn-relu (the gated model needs a gate per pattern; use --patterns N)",
        ));
    }
    match cfg.patterns {
        PatternSource::Sample(_) | PatternSource::Exact { .. } | PatternSource::Auto { .. } => {}
        PatternSource::Gates(_) => {
            return Err(CvxnnError::arg(
                "gates",
                "the CNN models sample their gates (--patterns N)",
            ))
        }
        PatternSource::Adaptive { .. } => {
            return Err(CvxnnError::arg(
                "patterns",
                "the CNN models take --patterns N or exact (not adaptive)",
            ))
        }
    }
    Ok(())
}

/// A solved CNN program: the solver's solution and the rebuilt network on the scaled features.
struct ConvSolve {
    solution: Solution,
    /// [`ModelNetwork::Conv`] or [`ModelNetwork::Pooled`], on the scaled features.
    network: ModelNetwork,
    patterns: usize,
    patches: usize,
    filter_len: usize,
    network_objective: f64,
    /// Pooled architectures: whether the program is exact for the full architecture, and what
    /// it is exact for in words.
    exact: Option<(bool, String)>,
    /// The `--init sgd` warm start, when there was one.
    init: Option<InitReport>,
}

/// What the `--init sgd` warm start did (reported in [`ConvReportPart`]).
struct InitReport {
    /// Objective of the Adam CNN.
    objective: f64,
    /// Seconds Adam ran.
    seconds: f64,
    /// Whether the Adam CNN is the returned network (its objective is below the rebuilt one's).
    kept: bool,
    /// Objective of the network rebuilt from the convex solution.
    rebuilt_objective: f64,
    /// Patterns the Adam filters added to the program.
    patterns_added: usize,
}

/// Builds and solves `conv`'s program on the scaled training features `x` (`n x C*H*W`) with
/// targets `y` (`n x outputs`), and rebuilds the network. One arm per architecture.
#[allow(clippy::too_many_arguments)]
fn solve_conv(
    conv: &ConvConfig,
    cfg: &TrainConfig,
    x: &Matrix,
    y: &[f64],
    outputs: usize,
    loss: crate::loss::LossKind,
    progress: &mut dyn FnMut(&Progress),
) -> Result<ConvSolve> {
    match conv.architecture {
        Architecture::CnnSumPool => {
            let xs = patches(x, &conv.shape, cfg.bias)?;
            let k = conv.shape.n_patches();
            let (masks, gates) = conv_patterns(&cfg.patterns, &xs, cfg.seed)?;
            if let Some(WarmStart::Gradient(g)) = &cfg.init {
                return solve_warm_started(conv, cfg, &xs, y, loss, &masks, g, progress);
            }
            let program =
                ConvProgram::new(&xs, k, y, outputs, &masks, loss, cfg.model, cfg.lambda)?;
            let solution = program.solve(&cfg.solver, None, progress)?;
            let gates_ref = (cfg.model == ModelKind::GatedRelu)
                .then_some(gates.as_ref())
                .flatten();
            let network = ConvNetwork::from_convex(
                cfg.model,
                conv.shape.clone(),
                cfg.bias,
                outputs,
                &solution.x,
                gates_ref,
            )?;
            let network_objective = network.objective_patches(&xs, y, loss, cfg.lambda)?;
            Ok(ConvSolve {
                solution,
                network: ModelNetwork::Conv(network),
                patterns: masks.len(),
                patches: k,
                filter_len: xs.ncols(),
                network_objective,
                exact: None,
                init: None,
            })
        }
        Architecture::CnnAvgPool | Architecture::CnnMaxPool => {
            if cfg.init.is_some() {
                return Err(CvxnnError::arg(
                    "init",
                    format!(
                        "--init sgd warm-starts the sum-pooling CNN only, not {}",
                        conv.architecture
                    ),
                ));
            }
            solve_pooled(conv, cfg, x, y, outputs, loss, progress)
        }
        other => Err(CvxnnError::arg(
            "model",
            format!("{other} is not a convolutional architecture"),
        )),
    }
}

/// The sum-pooling ReLU CNN warm-started from Adam (`--init sgd`): train the non-convex CNN by
/// full-batch Adam on the same patch matrix and objective, add its filters' activation patterns
/// `1[Xs u_j >= 0]` to `masks`, map it to a feasible point of the program that is no worse
/// ([`embed_conv_network`]), and solve from there (the augmented Lagrangian polishes a feasible
/// start first). The returned network is the rebuilt convex one unless Adam's objective is
/// strictly lower; the dual bound is the program's either way (valid for every network whose
/// filters use the program's patterns, the Adam network included).
#[allow(clippy::too_many_arguments)]
fn solve_warm_started(
    conv: &ConvConfig,
    cfg: &TrainConfig,
    xs: &Matrix,
    y: &[f64],
    loss: crate::loss::LossKind,
    masks: &Masks,
    settings: &GradientSettings,
    progress: &mut dyn FnMut(&Progress),
) -> Result<ConvSolve> {
    let outputs = y.len() / (xs.nrows() / conv.shape.n_patches()).max(1);
    let adam = train_conv_gradient(&conv.shape, cfg.bias, xs, y, loss, cfg.lambda, settings)?;
    let embedded = embed_conv_network(&adam.network, xs, masks)?;
    let k = conv.shape.n_patches();
    let program = ConvProgram::new(
        xs,
        k,
        y,
        outputs,
        &embedded.masks,
        loss,
        cfg.model,
        cfg.lambda,
    )?;
    let solution = program.solve(&cfg.solver, Some(&embedded.vars), progress)?;
    let rebuilt = ConvNetwork::from_convex(
        cfg.model,
        conv.shape.clone(),
        cfg.bias,
        outputs,
        &solution.x,
        None,
    )?;
    let rebuilt_objective = rebuilt.objective_patches(xs, y, loss, cfg.lambda)?;
    let kept = adam.objective < rebuilt_objective;
    let (network, network_objective) = if kept {
        (adam.network, adam.objective)
    } else {
        (rebuilt, rebuilt_objective)
    };
    Ok(ConvSolve {
        solution,
        network: ModelNetwork::Conv(network),
        patterns: embedded.masks.len(),
        patches: k,
        filter_len: xs.ncols(),
        network_objective,
        exact: None,
        init: Some(InitReport {
            objective: adam.objective,
            seconds: adam.seconds,
            kept,
            rebuilt_objective,
            patterns_added: embedded.added,
        }),
    })
}

/// The pooled arms of [`solve_conv`]: [`AvgPoolProgram`] (ReLU or gated ReLU) or
/// [`MaxPoolProgram`] (ReLU) over the windows of `conv.pool`, one output.
#[allow(clippy::too_many_arguments)]
fn solve_pooled(
    conv: &ConvConfig,
    cfg: &TrainConfig,
    x: &Matrix,
    y: &[f64],
    outputs: usize,
    loss: crate::loss::LossKind,
    progress: &mut dyn FnMut(&Progress),
) -> Result<ConvSolve> {
    let Some(pool) = conv.pool else {
        return Err(CvxnnError::arg(
            "pool",
            format!("a {} model needs a pooling window", conv.architecture),
        ));
    };
    if Architecture::pooled(pool.kind) != conv.architecture {
        return Err(CvxnnError::arg(
            "pool",
            format!("{} does not match {}", pool.describe(), conv.architecture),
        ));
    }
    if outputs != 1 {
        return Err(CvxnnError::arg(
            "pool",
            "the locally pooled CNNs take one output (regression or binary classification)",
        ));
    }
    if pool.kind == PoolKind::Max && cfg.model == ModelKind::GatedRelu {
        return Err(CvxnnError::arg(
            "pool",
            "max:S takes --model cnn-relu (a gated unit's maximum is not linear in its filter)",
        ));
    }
    if matches!(cfg.patterns, PatternSource::Auto { .. }) && pool.kind == PoolKind::Max {
        return Err(CvxnnError::arg(
            "patterns",
            "max:S takes --patterns N or exact",
        ));
    }
    let windows = pool.windows(&conv.shape)?;
    let xs = patches(x, &conv.shape, cfg.bias)?;
    let k = conv.shape.n_patches();
    let (solution, network, patterns) = match pool.kind {
        PoolKind::Avg => {
            let (masks, gates) = conv_patterns(&cfg.patterns, &xs, cfg.seed)?;
            let program =
                AvgPoolProgram::new(&xs, k, &windows, y, &masks, loss, cfg.model, cfg.lambda)?;
            let solution = program.solve(&cfg.solver, None, progress)?;
            let gates_ref = (cfg.model == ModelKind::GatedRelu)
                .then_some(gates.as_ref())
                .flatten();
            let network = PooledConvNetwork::from_convex(
                cfg.model,
                conv.shape.clone(),
                cfg.bias,
                pool,
                &solution.x,
                gates_ref,
            )?;
            (solution, network, masks.len())
        }
        PoolKind::Max => {
            let gates;
            let joint = match &cfg.patterns {
                PatternSource::Sample(p) => {
                    gates = sample_patterns(&xs, *p, cfg.seed)?.gates;
                    JointPatterns::Gates(&gates)
                }
                PatternSource::Exact { max_patterns } => JointPatterns::Exact(*max_patterns),
                _ => {
                    return Err(CvxnnError::arg(
                        "patterns",
                        "the CNN models take --patterns N or exact",
                    ))
                }
            };
            let program = MaxPoolProgram::new(&xs, k, &windows, y, joint, loss, cfg.lambda)?;
            let solution = program.solve(&cfg.solver, None, progress)?;
            let network = PooledConvNetwork::from_window_blocks(
                conv.shape.clone(),
                cfg.bias,
                pool,
                &program.blocks(&solution.x),
            )?;
            let total = program.patterns_per_window().iter().sum();
            (solution, network, total)
        }
    };
    let network_objective = network.objective_patches(&xs, y, loss, cfg.lambda)?;
    let exhaustive = matches!(cfg.patterns, PatternSource::Exact { .. });
    Ok(ConvSolve {
        solution,
        network: ModelNetwork::Pooled(network),
        patterns,
        patches: k,
        filter_len: xs.ncols(),
        network_objective,
        exact: Some(exactness(cfg.model, pool, windows.len(), exhaustive)),
        init: None,
    })
}

/// What a pooled program is exact for (docs/theory.md): (exact for the full architecture with
/// these patterns, the networks it is exact for in words). Sampled patterns make every case
/// exact only for the networks whose activation patterns are among the sampled ones.
fn exactness(
    model: ModelKind,
    pool: Pooling,
    windows: usize,
    exact_patterns: bool,
) -> (bool, String) {
    let (full, words) = match (pool.kind, model) {
        (PoolKind::Avg, ModelKind::GatedRelu) => (
            true,
            "gated ReLU networks whose gates are the sampled ones (nuclear-norm program)",
        ),
        (PoolKind::Avg, ModelKind::Relu) if windows == 1 => {
            (true, "every ReLU network (one window: global average pooling)")
        }
        (PoolKind::Max, _) if windows == 1 => (
            true,
            "every ReLU network (one window: global max pooling, joint activation/argmax patterns)",
        ),
        (PoolKind::Avg, ModelKind::Relu) => (
            false,
            "ReLU networks whose filters each feed one window (per-window group L2); an upper bound for filters feeding every window",
        ),
        (PoolKind::Max, _) => (
            false,
            "ReLU networks whose filters each feed one window (joint activation/argmax patterns); an upper bound for filters feeding every window",
        ),
    };
    // The gated program is exact for its gates whatever the patterns; ReLU needs all of them.
    let full = full && (exact_patterns || model == ModelKind::GatedRelu);
    let words = if exact_patterns || model == ModelKind::GatedRelu {
        words.to_string()
    } else {
        format!("{words}, restricted to the sampled activation patterns")
    };
    (full, words)
}

/// The masks (and sampled gates) of a pattern source on the patch matrix `xs`.
pub(crate) fn conv_patterns(
    patterns: &PatternSource,
    xs: &Matrix,
    seed: u64,
) -> Result<(Masks, Option<Matrix>)> {
    match patterns {
        PatternSource::Sample(p) => {
            let g = sample_patterns(xs, *p, seed)?;
            Ok((g.masks, Some(g.gates)))
        }
        PatternSource::Auto { .. } => {
            let g = sample_patterns(xs, AUTO_CNN_SAMPLES, seed)?;
            Ok((g.masks, Some(g.gates)))
        }
        PatternSource::Exact { max_patterns } => Ok((exact_patterns(xs, *max_patterns)?, None)),
        _ => Err(CvxnnError::arg(
            "patterns",
            "the CNN models take --patterns N or exact",
        )),
    }
}

/// Whose input shape a feature-column check compares the data with.
#[derive(Clone, Copy)]
pub(crate) enum ShapeOwner {
    /// The `--input-shape` given for training (an error names `input-shape`).
    Argument,
    /// A saved model's input shape (an error names `data`).
    Model,
}

/// Checks that `table` has the `needed` feature columns of the input shape `shape` (written
/// `C,H,W`-style), with an error that names the file, both counts and whose shape it is.
pub(crate) fn check_input_columns(
    table: &Table,
    shape: &str,
    needed: usize,
    owner: ShapeOwner,
) -> Result<()> {
    if table.features.ncols() == needed {
        return Ok(());
    }
    let (argument, whose) = match owner {
        ShapeOwner::Argument => ("input-shape", "the input shape"),
        ShapeOwner::Model => ("data", "the model's input shape"),
    };
    Err(CvxnnError::arg(
        argument,
        format!(
            "{} has {} feature columns, {whose} {shape} needs {needed}",
            table.path.display(),
            table.features.ncols()
        ),
    ))
}

/// The largest absolute value of `x` (1 when all are zero): the CNN's one feature scale.
pub fn feature_scale(x: &Matrix) -> f64 {
    let max_abs = x.as_slice().iter().fold(0.0f64, |a, v| a.max(v.abs()));
    if max_abs > 0.0 {
        max_abs
    } else {
        1.0
    }
}

/// `x / scale`.
pub(crate) fn scaled(x: &Matrix, scale: f64) -> Matrix {
    let mut x = x.clone();
    x.as_mut_slice().iter_mut().for_each(|v| *v /= scale);
    x
}

/// The network on raw features: the feature scale folded into the filters (not the bias entry)
/// and gates, the target scale into the output weights.
fn fold_scales(net: &ConvNetwork, feature_scale: f64, target_scale: f64) -> ConvNetwork {
    ConvNetwork {
        shape: net.shape.clone(),
        bias: net.bias,
        net: fold_network(&net.net, net.shape.patch_len(), feature_scale, target_scale),
    }
}

/// [`fold_scales`] for any CNN of [`ModelNetwork`].
fn fold_model(net: &ModelNetwork, feature_scale: f64, target_scale: f64) -> ModelNetwork {
    match net {
        ModelNetwork::Pooled(p) => ModelNetwork::Pooled(PooledConvNetwork {
            shape: p.shape.clone(),
            bias: p.bias,
            pool: p.pool,
            net: fold_network(&p.net, p.shape.patch_len(), feature_scale, target_scale),
        }),
        ModelNetwork::Conv(c) => ModelNetwork::Conv(fold_scales(c, feature_scale, target_scale)),
        ModelNetwork::Dense(d) => ModelNetwork::Dense(d.clone()),
    }
}

/// The filter part (first `h` entries) of the hidden weights and gates divided by
/// `feature_scale`, the output weights times `target_scale`.
fn fold_network(net: &Network, h: usize, feature_scale: f64, target_scale: f64) -> Network {
    let fold = |m: &Matrix| {
        let mut m = m.clone();
        for j in 0..m.ncols() {
            m.col_mut(j)[..h]
                .iter_mut()
                .for_each(|v| *v /= feature_scale);
        }
        m
    };
    Network {
        hidden: fold(&net.hidden),
        alpha: net.alpha.iter().map(|a| a * target_scale).collect(),
        outputs: net.outputs,
        gates: net.gates.as_ref().map(fold),
    }
}

/// Trains the CNN `conv` on `table` as `cfg` says (called by [`crate::estimator::train`]).
pub fn train(
    table: &Table,
    cfg: &TrainConfig,
    conv: &ConvConfig,
    decompose: bool,
    progress: &mut dyn FnMut(&Progress),
) -> Result<TrainOutput> {
    let start = std::time::Instant::now();
    check_config(cfg, decompose)?;
    check_input_columns(
        table,
        &conv.shape.describe(),
        conv.shape.input_len(),
        ShapeOwner::Argument,
    )?;
    let data = prepare_training_data(
        table,
        cfg.task,
        cfg.loss,
        false,
        false,
        cfg.scale_target,
        cfg.test_fraction,
        cfg.seed,
    )?;
    if data.outputs > 1 && cfg.outputs == OutputMode::Shared {
        return Err(CvxnnError::arg(
            "outputs",
            "the CNN models take --outputs separate (each filter feeds one class)",
        ));
    }
    let scale = feature_scale(&data.x);
    let x = scaled(&data.x, scale);
    let solved = solve_conv(
        conv,
        cfg,
        &x,
        &data.y_train,
        data.outputs,
        data.loss,
        progress,
    )?;
    finish(table, cfg, conv, &data, scale, solved, start)
}

/// Everything after the solve, shared by [`train`] and the path: the network on raw features,
/// metadata, metrics on `data`'s train and test rows of `table`, the report.
fn finish(
    table: &Table,
    cfg: &TrainConfig,
    conv: &ConvConfig,
    data: &TrainingData,
    scale: f64,
    solved: ConvSolve,
    start: std::time::Instant,
) -> Result<TrainOutput> {
    let sol = &solved.solution;
    let raw = fold_model(&solved.network, scale, data.target_scale);
    let status = if relative_gap(sol.objective, sol.dual_bound) <= cfg.solver.tol
        && sol.violation <= cfg.solver.tol
    {
        Status::Converged
    } else {
        sol.status
    };
    let p = table.feature_names.len();
    let meta = ModelMeta {
        version: env!("CARGO_PKG_VERSION").to_string(),
        architecture: conv.architecture,
        model: cfg.model,
        output_mode: OutputMode::Separate,
        task: data.task,
        loss: data.loss,
        lambda: cfg.lambda,
        seed: cfg.seed,
        patterns: solved.patterns,
        neurons: raw.neurons(),
        feature_names: table.feature_names.clone(),
        target: table.target_name.clone(),
        standardizer: Standardizer {
            mean: vec![0.0; p],
            scale: vec![scale; p],
        },
        standardize: false,
        bias: cfg.bias,
        target_scale: data.target_scale,
        labels: data.labels.clone(),
        conv: Some(ConvSpec {
            shape: conv.shape.clone(),
            feature_scale: scale,
            filters: raw.neurons(),
            torch_modules: raw.torch_modules().unwrap_or_default(),
            pool: conv.pool,
        }),
    };
    let model = TrainedModel { meta, network: raw };
    let train = model.metrics(&data.x_train_raw, &table.target.select(&data.train_idx))?;
    let test = if data.test_idx.is_empty() {
        None
    } else {
        let xt = table.features.select_rows(&data.test_idx);
        Some(model.metrics(&xt, &table.target.select(&data.test_idx))?)
    };
    let report = Report {
        objective: sol.objective,
        network_objective: solved.network_objective,
        dual_bound: sol.dual_bound,
        gap: sol.objective - sol.dual_bound,
        relative_gap: relative_gap(sol.objective, sol.dual_bound),
        certificate: certificate_name(&cfg.patterns).into(),
        status,
        iterations: sol.iterations,
        seconds: start.elapsed().as_secs_f64(),
        neurons: solved.network.neurons(),
        patterns: solved.patterns,
        lambda: cfg.lambda,
        model: cfg.model,
        loss: data.loss,
        outputs: data.outputs,
        output_mode: OutputMode::Separate,
        task: data.task,
        violation: sol.violation,
        tol: cfg.solver.tol,
        precision: Precision::F64,
        seed: cfg.seed,
        target_scale: data.target_scale,
        n_train: data.train_idx.len(),
        n_test: data.test_idx.len(),
        d: solved.filter_len,
        train,
        test,
        decomposed_objective: None,
        trace: sol.trace.clone(),
        solver: SolverChoice::FirstOrder.name().into(),
        conic_status: None,
        conic_iterations: None,
        column_generation: None,
        lambda_path: None,
        conv: Some(ConvReportPart {
            architecture: conv.architecture,
            shape: conv.shape.describe(),
            patches: solved.patches,
            filter_len: solved.filter_len,
            feature_scale: scale,
            pool: conv.pool.map(|p| p.describe()),
            exact: solved.exact.as_ref().map(|e| e.0),
            exact_for: solved.exact.as_ref().map(|e| e.1.clone()),
            init: solved.init.as_ref().map(|_| "sgd".to_string()),
            init_objective: solved.init.as_ref().map(|i| i.objective),
            init_seconds: solved.init.as_ref().map(|i| i.seconds),
            init_kept: solved.init.as_ref().map(|i| i.kept),
            rebuilt_objective: solved.init.as_ref().map(|i| i.rebuilt_objective),
            init_patterns: solved.init.as_ref().map(|i| i.patterns_added),
        }),
    };
    Ok(TrainOutput {
        model,
        report,
        network: match solved.network {
            ModelNetwork::Conv(n) => n.net,
            ModelNetwork::Pooled(n) => n.net,
            ModelNetwork::Dense(_) => {
                return Err(CvxnnError::arg(
                    "model",
                    "a dense network in the CNN pipeline",
                ))
            }
        },
        decomposed: None,
    })
}

/// What [`path_solves`] reports besides the per-lambda outputs.
pub(crate) struct ConvPathInfo {
    /// Top of the grid (see [`path_solves`]).
    pub lambda_max: f64,
    /// Loss.
    pub loss: crate::loss::LossKind,
    /// Patterns.
    pub patterns: usize,
    /// Fitted samples.
    pub n_fit: usize,
    /// Validation samples.
    pub n_validation: usize,
    /// Filter length.
    pub d: usize,
    /// Target scale.
    pub target_scale: f64,
}

/// The regularization path of a CNN (called by [`crate::path`] with the training split as
/// `table`; its seeded `validation_fraction` split gives the validation metrics): one pattern
/// set on the fitted samples' patch matrix, each lambda warm-started from the previous solution
/// when `warm`. The grid's top is the gated value `max_{i,o} ||Xs^T D_i P^T theta0_o||`
/// (`theta0 = grad h(0)`, `P` the patch sum), the exact `lambda_max` for gated ReLU and an
/// upper bound on it for ReLU (the cone projection only shrinks a group's norm). `each` is told
/// when a lambda starts, `done` gets its output.
#[allow(clippy::too_many_arguments)]
pub(crate) fn path_solves(
    table: &Table,
    task: Task,
    cfg: &TrainConfig,
    conv: &ConvConfig,
    validation_fraction: f64,
    lambdas: &dyn Fn(f64) -> Result<Vec<f64>>,
    warm: bool,
    events: &mut dyn FnMut(ConvPathEvent<'_>) -> Result<()>,
) -> Result<ConvPathInfo> {
    check_config(cfg, false)?;
    if cfg.init.is_some() {
        return Err(CvxnnError::arg(
            "init",
            "the regularization path warm-starts each lambda from the previous one; --init applies to a single lambda",
        ));
    }
    if conv.architecture != Architecture::CnnSumPool {
        return Err(CvxnnError::arg(
            "pool",
            format!(
                "the path runs the sum-pool CNN only, not {}",
                conv.architecture
            ),
        ));
    }
    check_input_columns(
        table,
        &conv.shape.describe(),
        conv.shape.input_len(),
        ShapeOwner::Argument,
    )?;
    let data = prepare_training_data(
        table,
        Some(task),
        cfg.loss,
        false,
        false,
        cfg.scale_target,
        validation_fraction,
        cfg.seed,
    )?;
    if data.outputs > 1 && cfg.outputs == OutputMode::Shared {
        return Err(CvxnnError::arg(
            "outputs",
            "the CNN models take --outputs separate (each filter feeds one class)",
        ));
    }
    let scale = feature_scale(&data.x);
    let x = scaled(&data.x, scale);
    let xs = patches(&x, &conv.shape, cfg.bias)?;
    let k = conv.shape.n_patches();
    let (masks, gates) = conv_patterns(&cfg.patterns, &xs, cfg.seed)?;
    let (n, c) = (x.nrows(), data.outputs);
    let mut theta0 = vec![0.0; data.y_train.len()];
    data.loss
        .grad(&vec![0.0; theta0.len()], &data.y_train, c, &mut theta0);
    let mut lambda_max = 0.0f64;
    for i in 0..masks.len() {
        for o in 0..c {
            let mut g = vec![0.0; xs.ncols()];
            for r in 0..xs.nrows() {
                if masks.get(r, i) {
                    let w = theta0[o * n + r % n];
                    g.iter_mut().zip(xs.row(r)).for_each(|(a, b)| *a += w * b);
                }
            }
            lambda_max = lambda_max.max(crate::linalg::norm2(&g));
        }
    }
    let grid = lambdas(lambda_max)?;
    let mut previous: Option<Vec<f64>> = None;
    for (index, &lambda) in grid.iter().enumerate() {
        events(ConvPathEvent::Start {
            index,
            count: grid.len(),
            lambda,
        })?;
        let start = std::time::Instant::now();
        let program = ConvProgram::new(
            &xs,
            k,
            &data.y_train,
            c,
            &masks,
            data.loss,
            cfg.model,
            lambda,
        )?;
        let start_point = previous.as_deref().filter(|_| warm);
        let solution = program.solve(&cfg.solver, start_point, &mut |p| {
            let _ = events(ConvPathEvent::Solver(p));
        })?;
        let gates_ref = (cfg.model == ModelKind::GatedRelu)
            .then_some(gates.as_ref())
            .flatten();
        let network = ConvNetwork::from_convex(
            cfg.model,
            conv.shape.clone(),
            cfg.bias,
            c,
            &solution.x,
            gates_ref,
        )?;
        let network_objective = network.objective_patches(&xs, &data.y_train, data.loss, lambda)?;
        previous = Some(solution.x.clone());
        let at = TrainConfig {
            lambda,
            ..cfg.clone()
        };
        let solved = ConvSolve {
            solution,
            network: ModelNetwork::Conv(network),
            patterns: masks.len(),
            patches: k,
            filter_len: xs.ncols(),
            network_objective,
            exact: None,
            init: None,
        };
        let out = finish(table, &at, conv, &data, scale, solved, start)?;
        events(ConvPathEvent::Done {
            lambda,
            output: Box::new(out),
            start,
        })?;
    }
    Ok(ConvPathInfo {
        lambda_max,
        loss: data.loss,
        patterns: masks.len(),
        n_fit: data.train_idx.len(),
        n_validation: data.test_idx.len(),
        d: xs.ncols(),
        target_scale: data.target_scale,
    })
}

/// What [`path_solves`] tells its caller.
pub(crate) enum ConvPathEvent<'a> {
    /// Lambda `index` of `count` starts.
    Start {
        /// Position in the grid.
        index: usize,
        /// Grid length.
        count: usize,
        /// The lambda.
        lambda: f64,
    },
    /// Solver progress.
    Solver(&'a Progress),
    /// A lambda is solved: its training output (report, model) and when it started.
    Done {
        /// The lambda.
        lambda: f64,
        /// Its output (boxed: much larger than the other events).
        output: Box<TrainOutput>,
        /// Start of its solve.
        start: std::time::Instant,
    },
}

/// Certifies a saved CNN `model` on `table` (DESIGN section 2, as [`crate::estimator::certify`]
/// for dense networks): its own objective in the program's units (the model's feature and
/// target scales, task, labels and loss) and the dual bound of the model's program over the
/// chosen patterns of the patch matrix plus the network's own (ReLU: `1[Xs u_j >= 0]`; gated:
/// `1[Xs g_j >= 0]`), so the bound is below every network of the architecture whose filters
/// use those patterns, the given one included (every pattern of the patch matrix with
/// `--patterns exact`: a global bound). Several outputs: each filter must feed one output
/// (the separate-output architecture the program describes).
pub fn certify(
    table: &Table,
    model: &TrainedModel,
    cfg: &CertifyConfig,
    progress: &mut dyn FnMut(&Progress),
) -> Result<CertifyReport> {
    let start = std::time::Instant::now();
    check_model_certify(cfg)?;
    let meta = &model.meta;
    if meta.architecture.is_pooled() {
        return certify_pooled(table, model, cfg, progress, start);
    }
    let (Some(spec), Some(net)) = (&meta.conv, model.network.conv()) else {
        return Err(CvxnnError::arg("model", "not a CNN model"));
    };
    check_input_columns(
        table,
        &spec.shape.describe(),
        spec.shape.input_len(),
        ShapeOwner::Model,
    )?;
    let c = net.net.outputs;
    if c > 1
        && (0..net.filters()).any(|j| {
            net.net
                .output_weights(j)
                .iter()
                .filter(|a| **a != 0.0)
                .count()
                > 1
        })
    {
        return Err(CvxnnError::arg(
            "model",
            "a filter feeds several outputs; the CNN program has each filter feed one output",
        ));
    }
    let task = meta.task;
    let loss = cfg.loss.unwrap_or(meta.loss);
    let target_scale = meta.target_scale;
    if !(spec.feature_scale.is_finite() && spec.feature_scale > 0.0) {
        return Err(CvxnnError::arg("model", "the feature scale must be > 0"));
    }
    let (idx, y) = model_targets(table, task, meta.labels.as_ref(), target_scale, cfg)?;
    let x = scaled(&table.features.select_rows(&idx), spec.feature_scale);
    let xs = patches(&x, &spec.shape, net.bias)?;
    // The network in the program's units: the inverse of the folding done at training.
    let design = fold_scales(net, 1.0 / spec.feature_scale, 1.0 / target_scale);
    let network_objective = design.objective_patches(&xs, &y, loss, cfg.lambda)?;
    let z = design.forward_patches(&xs)?;
    let balanced = balanced_penalty(&design.net);
    let balanced_objective = loss.value(&z, &y, c) + cfg.lambda * balanced;
    let (masks, added) = certify_masks(cfg, &xs, &design.net)?;
    let k = spec.shape.n_patches();
    let program = ConvProgram::new(&xs, k, &y, c, &masks, loss, meta.model, cfg.lambda)?;
    let sol = program.solve(&cfg.solver, None, progress)?;
    // Filters of the convex solution: its non-zero groups.
    let convex = sol
        .x
        .chunks(xs.ncols())
        .filter(|g| g.iter().any(|v| *v != 0.0))
        .count();
    Ok(CertifyParts {
        network_objective,
        balanced_objective,
        solution: sol,
        certificate: certificate_name(&cfg.patterns).into(),
        exact_for: None,
        convex_neurons: convex,
        patterns: masks.len(),
        network_patterns_added: added,
        neurons: design.filters(),
        loss,
        task,
        n: idx.len(),
        d: xs.ncols(),
        target_scale,
    }
    .report(cfg, start))
}

/// [`certify`] for a locally pooled CNN. Average pooling: the gated nuclear-norm
/// [`AvgPoolProgram`] over the chosen patterns of the patch matrix plus the network's own
/// (gated: `1[Xs g_j >= 0]`, ReLU: `1[Xs u_j >= 0]`). Filters sharing a pattern combine into
/// `Z_i = sum_j u_j alpha_j^T`, whose nuclear norm is at most their weight decay, so the
/// network maps to a point of that program with objective at most its own: the dual bound
/// bounds every gated network whose gates' patterns are in the set (the program is exact for
/// them) and every ReLU network whose filters' patterns are (a ReLU filter is the gated filter
/// gated by itself: a relaxation, valid but maybe not tight; the per-window ReLU program the
/// training solves is exact only for filters feeding one window, so it bounds nothing here).
/// Max pooling is refused: its program is exact only for filters feeding one window.
fn certify_pooled(
    table: &Table,
    model: &TrainedModel,
    cfg: &CertifyConfig,
    progress: &mut dyn FnMut(&Progress),
    start: std::time::Instant,
) -> Result<CertifyReport> {
    let meta = &model.meta;
    let (Some(spec), Some(net), Some(pool)) = (
        &meta.conv,
        model.network.pooled(),
        meta.conv.as_ref().and_then(|c| c.pool),
    ) else {
        return Err(CvxnnError::arg("model", "not a pooled CNN model"));
    };
    if pool.kind == PoolKind::Max {
        return Err(CvxnnError::arg(
            "model",
            format!(
                "certify does not take {} models: the max-pool program is exact only for filters that each feed one window (an upper bound otherwise), so its dual bound is no lower bound for the saved architecture",
                meta.architecture
            ),
        ));
    }
    check_input_columns(
        table,
        &spec.shape.describe(),
        spec.shape.input_len(),
        ShapeOwner::Model,
    )?;
    if !(spec.feature_scale.is_finite() && spec.feature_scale > 0.0) {
        return Err(CvxnnError::arg("model", "the feature scale must be > 0"));
    }
    let task = meta.task;
    let loss = cfg.loss.unwrap_or(meta.loss);
    let target_scale = meta.target_scale;
    let (idx, y) = model_targets(table, task, meta.labels.as_ref(), target_scale, cfg)?;
    let x = scaled(&table.features.select_rows(&idx), spec.feature_scale);
    let xs = patches(&x, &spec.shape, net.bias)?;
    let folded = fold_model(
        &ModelNetwork::Pooled(net.clone()),
        1.0 / spec.feature_scale,
        1.0 / target_scale,
    );
    let ModelNetwork::Pooled(design) = folded else {
        return Err(CvxnnError::arg("model", "not a pooled CNN model"));
    };
    let network_objective = design.objective_patches(&xs, &y, loss, cfg.lambda)?;
    let z = design.forward_patches(&xs)?;
    let balanced = balanced_penalty(&design.net);
    let balanced_objective = loss.value(&z, &y, 1) + cfg.lambda * balanced;
    let (masks, added) = certify_masks(cfg, &xs, &design.net)?;
    let windows = pool.windows(&spec.shape)?;
    let k = spec.shape.n_patches();
    let program = AvgPoolProgram::new(
        &xs,
        k,
        &windows,
        &y,
        &masks,
        loss,
        ModelKind::GatedRelu,
        cfg.lambda,
    )?;
    let sol = program.solve(&cfg.solver, None, progress)?;
    // Non-zero Z_i of the convex solution (variables: one h x P block per window).
    let (h, p) = (xs.ncols(), masks.len());
    let convex = (0..p)
        .filter(|&i| {
            (0..windows.len()).any(|w| {
                let at = (w * p + i) * h;
                sol.x[at..at + h].iter().any(|v| *v != 0.0)
            })
        })
        .count();
    let exhaustive = matches!(cfg.patterns, PatternSource::Exact { .. });
    let exact_for = match (meta.model, exhaustive) {
        (ModelKind::GatedRelu, true) => "every gated ReLU CNN with this average pooling (the nuclear-norm program over all patterns is exact)".to_string(),
        (ModelKind::GatedRelu, false) => "gated ReLU CNNs with this average pooling whose gates' patterns are the sampled ones or the network's own (the nuclear-norm program is exact for them)".to_string(),
        (ModelKind::Relu, true) => "every ReLU CNN with this average pooling, filters feeding any windows (the gated nuclear-norm relaxation over all patterns: a valid bound, possibly not tight)".to_string(),
        (ModelKind::Relu, false) => "ReLU CNNs with this average pooling whose filters' patterns are the sampled ones or the network's own (the gated nuclear-norm relaxation: a valid bound, possibly not tight)".to_string(),
    };
    Ok(CertifyParts {
        network_objective,
        balanced_objective,
        solution: sol,
        certificate: certificate_name(&cfg.patterns).into(),
        exact_for: Some(exact_for),
        convex_neurons: convex,
        patterns: masks.len(),
        network_patterns_added: added,
        neurons: design.filters(),
        loss,
        task,
        n: idx.len(),
        d: xs.ncols(),
        target_scale,
    }
    .report(cfg, start))
}

/// `sum_j ||u_j|| ||alpha_j||`: the weight decay of `net` with every filter rescaled to balance
/// its input and output norms (the convex program's penalty of the same network).
fn balanced_penalty(net: &Network) -> f64 {
    (0..net.neurons())
        .map(|j| {
            crate::linalg::norm2(net.hidden.col(j)) * crate::linalg::norm2(net.output_weights(j))
        })
        .sum()
}

/// The patterns a CNN certificate is over: `cfg.patterns` of the patch matrix `xs` plus the
/// network's own (`1[Xs u_j >= 0]`, gated: `1[Xs g_j >= 0]`, filters with a non-zero output
/// only), so the bound is below the given network; returns them with the count of own ones added.
fn certify_masks(cfg: &CertifyConfig, xs: &Matrix, net: &Network) -> Result<(Masks, usize)> {
    let chosen = match &cfg.patterns {
        PatternSource::Sample(_) | PatternSource::Exact { .. } => {
            conv_patterns(&cfg.patterns, xs, cfg.seed)?.0
        }
        _ => {
            return Err(CvxnnError::arg(
                "patterns",
                "certify takes exact or sampled patterns",
            ))
        }
    };
    let gates = net.gates.as_ref().unwrap_or(&net.hidden);
    let own = (0..net.neurons())
        .filter(|&j| net.output_weights(j).iter().any(|a| *a != 0.0))
        .map(|j| xs.matvec(gates.col(j)).iter().map(|&v| v >= 0.0).collect());
    let (masks, added) = merge_patterns(&chosen, own);
    if masks.is_empty() {
        return Err(CvxnnError::arg(
            "patterns",
            "no activation pattern with an active patch",
        ));
    }
    Ok((masks, added))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::data::{ConvShape, Task};
    use crate::loss::LossKind;
    use safetensors::SafeTensors;

    /// The saved tensors, applied with PyTorch's semantics (cross-correlation with zero padding,
    /// bias, ReLU, mean over positions, Linear without bias), give `decision_function`.
    #[test]
    fn saved_tensors_reproduce_predictions_as_pytorch_modules() {
        let shape = ConvShape::new(2, vec![4, 5], vec![3, 2], 2, 1).unwrap();
        let (h, m, n) = (shape.patch_len(), 3, 4);
        let hidden = Matrix::from_fn(h + 1, m, |i, j| ((i * 7 + j * 5) % 11) as f64 / 5.0 - 1.0);
        let network = ConvNetwork {
            shape: shape.clone(),
            bias: true,
            net: Network {
                hidden,
                alpha: vec![0.7, -1.3, 0.4],
                outputs: 1,
                gates: None,
            },
        };
        let meta = ModelMeta {
            version: "test".into(),
            architecture: Architecture::CnnSumPool,
            model: ModelKind::Relu,
            output_mode: OutputMode::Separate,
            task: Task::Regression,
            loss: LossKind::Squared,
            lambda: 1.0,
            seed: 0,
            patterns: 1,
            neurons: m,
            feature_names: (0..shape.input_len()).map(|i| format!("f{i}")).collect(),
            target: "y".into(),
            standardizer: Standardizer::identity(shape.input_len()),
            standardize: false,
            bias: true,
            target_scale: 1.0,
            labels: None,
            conv: Some(ConvSpec {
                shape: shape.clone(),
                feature_scale: 1.0,
                filters: m,
                torch_modules: network.torch_modules(),
                pool: None,
            }),
        };
        let model = TrainedModel {
            meta,
            network: ModelNetwork::Conv(network),
        };
        let dir = std::env::temp_dir().join(format!("cvxnn-conv-test-{}", std::process::id()));
        model.save(&dir, None, true).unwrap();
        let bytes = std::fs::read(dir.join("model.safetensors")).unwrap();
        let st = SafeTensors::deserialize(&bytes).unwrap();
        let read = |name: &str| -> Vec<f64> {
            st.tensor(name)
                .unwrap()
                .data()
                .chunks_exact(8)
                .map(|c| f64::from_le_bytes(c.try_into().unwrap()))
                .collect()
        };
        let (w, b, lin) = (read("0.weight"), read("0.bias"), read("4.weight"));
        let x = Matrix::from_fn(n, shape.input_len(), |i, j| {
            ((i * 13 + j * 3) % 7) as f64 - 3.0
        });
        let (oh, ow) = (shape.output_size()[0], shape.output_size()[1]);
        let scores = model.decision_function(&x).unwrap();
        for (s, score) in scores.iter().enumerate() {
            let mut out = 0.0;
            for f in 0..m {
                let mut pooled = 0.0;
                for oi in 0..oh {
                    for oj in 0..ow {
                        let mut acc = b[f];
                        for c in 0..2 {
                            for a in 0..3 {
                                for e in 0..2 {
                                    let i = (oi * 2 + a) as isize - 1;
                                    let j = (oj * 2 + e) as isize - 1;
                                    if i < 0 || j < 0 || i >= 4 || j >= 5 {
                                        continue;
                                    }
                                    let v = x.get(s, (c * 4 + i as usize) * 5 + j as usize);
                                    acc += w[((f * 2 + c) * 3 + a) * 2 + e] * v;
                                }
                            }
                        }
                        pooled += acc.max(0.0) / (oh * ow) as f64;
                    }
                }
                out += lin[f] * pooled;
            }
            assert!((out - score).abs() <= 1e-12 * out.abs().max(1.0));
        }
        let back = TrainedModel::load(&dir).unwrap();
        // Loading divides the Linear weights by K again: equal up to rounding.
        for (a, b) in back.decision_function(&x).unwrap().iter().zip(&scores) {
            assert!((a - b).abs() <= 1e-12 * b.abs().max(1.0));
        }
        // A model.json as the first CNN slice wrote it (no standardizer, `filters` only, the
        // architecture as text) still loads and predicts the same.
        let mut v: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(dir.join("model.json")).unwrap())
                .unwrap();
        let obj = v.as_object_mut().unwrap();
        for k in ["standardizer", "standardize", "neurons", "output_mode"] {
            obj.remove(k);
        }
        std::fs::write(dir.join("model.json"), v.to_string()).unwrap();
        let old = TrainedModel::load(&dir).unwrap();
        assert_eq!(old.meta.neurons, m);
        assert_eq!(old.meta.architecture, Architecture::CnnSumPool);
        assert_eq!(old.meta.standardizer.scale, vec![1.0; shape.input_len()]);
        assert_eq!(
            old.decision_function(&x).unwrap(),
            back.decision_function(&x).unwrap()
        );
        let _ = std::fs::remove_dir_all(&dir);
    }
}
