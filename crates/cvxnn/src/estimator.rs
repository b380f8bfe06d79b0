//! End-to-end training on a table: preprocessing, patterns, solve, rebuild, certificate, metrics,
//! and the model directory (`model.json`, `model.safetensors`, `report.json`).

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

pub use crate::architecture::{Architecture, ConvConfig, ConvReportPart, ConvSpec, ModelNetwork};
use crate::certificate::OracleSettings;
use crate::data::{
    add_bias, argmax_classes, binary_class, encode_target, train_test_split, ClassLabels,
    EncodedTarget, Standardizer, Table, TargetColumn, Task,
};
use crate::error::{CvxnnError, Result};
use crate::linalg::Matrix;
use crate::loss::LossKind;
pub use crate::metrics::{classification_metrics, regression_metrics, ConfusionMatrix, Metrics};
use crate::network::{Network, RawNetwork};
use crate::patterns::PatternSet;
use crate::patterns::{exact, patterns_from_gates, sample_patterns, GatedPatterns, Masks};
use crate::program::{
    solve_column_generation, ColumnGenerationEnd, ColumnGenerationRound, ColumnGenerationSettings,
    ModelKind, OutputMode, TwoLayerProgram,
};
use crate::solver::conic::{solve_conic, ConicProblem, ConicSettings, ConicStatus};
use crate::solver::{relative_gap, Multipliers, Progress, SolverSettings, Status};

/// Where the activation patterns come from.
#[derive(Clone, Debug, PartialEq)]
pub enum PatternSource {
    /// `N` seeded Gaussian gates (distinct patterns kept).
    Sample(usize),
    /// Exact gate vectors (`d x P`, in the design space: standardized features then bias).
    Gates(Matrix),
    /// Every activation pattern of the data's hyperplane arrangement (DESIGN section 1), refused
    /// before any work when the predicted count exceeds `max_patterns`. ReLU model only (the
    /// gated model would need a realizing gate per pattern). The certificate is then global.
    Exact {
        /// Upper limit on the predicted number of patterns.
        max_patterns: usize,
    },
    /// Column generation (ReLU only): start from `initial` seeded Gaussian gates (plus the
    /// warm-start network's patterns), then add the patterns the dual oracle finds violated
    /// ([`crate::program::solve_column_generation`], settings in
    /// [`TrainConfig::column_generation`]).
    Adaptive {
        /// Sampled patterns to start from.
        initial: usize,
    },
    /// ReLU: exact patterns when the predicted count is at most `max_exact` (a small program),
    /// else adaptive ones starting from `initial` (adaptive also whenever a warm start is
    /// given). Gated ReLU: 500 sampled gates (the oracle prices ReLU patterns only).
    Auto {
        /// Largest predicted pattern count solved exactly.
        max_exact: usize,
        /// Sampled patterns adaptive ones start from.
        initial: usize,
    },
}

/// [`PatternSource::Auto`]'s exact limit used by the CLI: up to 2000 patterns the exact program
/// is small (it occurs for a few dozen samples of low rank).
pub const AUTO_EXACT_PATTERNS: usize = 2000;

/// Sampled gates of [`PatternSource::Auto`] for gated ReLU.
const AUTO_GATED_SAMPLES: usize = 500;

impl PatternSource {
    /// The concrete source for `model` on design matrix `x` (resolves [`PatternSource::Auto`]).
    pub fn resolve(&self, model: ModelKind, x: &Matrix, warm_start: bool) -> PatternSource {
        match *self {
            PatternSource::Auto { max_exact, initial } => {
                if model == ModelKind::GatedRelu {
                    PatternSource::Sample(AUTO_GATED_SAMPLES)
                } else if !warm_start
                    && exact::predicted_count(x.nrows(), exact::numerical_rank(x))
                        <= max_exact as f64
                {
                    PatternSource::Exact {
                        max_patterns: max_exact,
                    }
                } else {
                    PatternSource::Adaptive { initial }
                }
            }
            ref other => other.clone(),
        }
    }
}

/// Where a warm start comes from (column generation).
#[derive(Clone, Debug, PartialEq)]
pub enum WarmStart {
    /// A trained network on raw features, output in target units (a `model.safetensors` in
    /// PyTorch naming); its neurons' patterns join the program and its weights start it.
    Network(RawNetwork),
    /// Train the non-convex network by gradient first (Adam by default) and start from it.
    Gradient(crate::network::GradientSettings),
}

/// Which solver runs the convex program.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum SolverChoice {
    /// The conic solver for ReLU when `n * P * d <= CONIC_AUTO_WORK`, else the first-order solver.
    Auto,
    /// R-FISTA (gated ReLU) or the augmented Lagrangian (ReLU).
    #[default]
    FirstOrder,
    /// Clarabel's interior-point method; its objective is an upper bound, and the dual bound comes
    /// from the first-order solver warm-started at the conic solution.
    Conic,
}

/// `--solver auto` picks the conic solver for the ReLU program when `n * P * d` (samples x
/// patterns x columns) is at most this, else the first-order solver. Measured (diabetes, d = 11,
/// n = 354): gated ReLU is faster first-order already at `n P d ~ 2e5` (0.19 s vs 0.30 s at P = 50,
/// 0.6 s vs 3.5 s at P = 200), so gated ReLU always goes first-order; for ReLU the augmented
/// Lagrangian needs many iterations where the interior point takes 15-35, and on tiny programs
/// (n = 12, exact patterns) the conic solution is the sparse exact optimum. Since the ReLU solver
/// polishes and certifies on its own, diabetes ReLU with P = 50 (`n P d = 1.9e5`) is faster
/// first-order (11.6 s) than conic plus a warm first-order certificate (28.7 s): hence 2e4.
pub const CONIC_AUTO_WORK: f64 = 2e4;

impl SolverChoice {
    /// The concrete solver for a `model` program with `n` samples, `p` patterns and `d` columns.
    pub fn resolve(self, model: ModelKind, n: usize, p: usize, d: usize) -> SolverChoice {
        match self {
            SolverChoice::Auto => {
                if model == ModelKind::Relu
                    && (n as f64) * (p as f64) * (d as f64) <= CONIC_AUTO_WORK
                {
                    SolverChoice::Conic
                } else {
                    SolverChoice::FirstOrder
                }
            }
            other => other,
        }
    }

    /// Name as written in reports (`auto`, `first-order`, `conic`).
    pub fn name(self) -> &'static str {
        match self {
            SolverChoice::Auto => "auto",
            SolverChoice::FirstOrder => "first-order",
            SolverChoice::Conic => "conic",
        }
    }
}

/// Everything `train` needs besides the data. Defaults match the CLI's.
#[derive(Clone, Debug, PartialEq)]
pub struct TrainConfig {
    /// Regression, binary or multiclass classification; `None` infers it from the target
    /// ([`Task::infer`]).
    pub task: Option<Task>,
    /// Which convex program.
    pub model: ModelKind,
    /// Data-fit term; `None` picks squared for regression, logistic for binary.
    pub loss: Option<LossKind>,
    /// Regularization strength (> 0).
    pub lambda: f64,
    /// Patterns.
    pub patterns: PatternSource,
    /// z-score the features (fitted on the training split).
    pub standardize: bool,
    /// Append a bias column (a hidden bias per neuron).
    pub bias: bool,
    /// Regression: divide the targets by their standard deviation on the training split, so
    /// that `lambda` means the same on every data set (the output layer takes the factor back,
    /// so predictions and exported weights are in the target's units).
    pub scale_target: bool,
    /// Fraction of samples held out for testing, in [0, 1).
    pub test_fraction: f64,
    /// Seed of every random choice (split, gates).
    pub seed: u64,
    /// First-order solver settings (their `tol` also sets the conic solver's tolerance).
    pub solver: SolverSettings,
    /// Which solver; the library default is the first-order solver (the CLI defaults to `auto`).
    pub solver_choice: SolverChoice,
    /// Column-generation budgets ([`PatternSource::Adaptive`]).
    pub column_generation: ColumnGenerationSettings,
    /// Warm start for column generation.
    pub init: Option<WarmStart>,
    /// How a multiclass network's neurons feed its outputs (ignored with one output).
    pub outputs: OutputMode,
    /// A convolutional architecture and its shape (`None`: the fully connected network). CNNs
    /// are trained by [`crate::conv::train`] through [`train`].
    pub conv: Option<ConvConfig>,
}

impl TrainConfig {
    /// Whether a task with `outputs` outputs is the shared-neuron ReLU model, which is solved
    /// in factored (Burer-Monteiro) form with a relaxed bound rather than as a convex program.
    pub fn shared_relu(&self, outputs: usize) -> bool {
        self.model == ModelKind::Relu && self.outputs == OutputMode::Shared && outputs > 1
    }
}

impl Default for TrainConfig {
    fn default() -> Self {
        TrainConfig {
            task: None,
            model: ModelKind::Relu,
            loss: None,
            lambda: 1e-3,
            patterns: PatternSource::Sample(500),
            standardize: true,
            bias: true,
            scale_target: true,
            test_fraction: 0.2,
            seed: 0,
            solver: SolverSettings::default(),
            solver_choice: SolverChoice::FirstOrder,
            column_generation: ColumnGenerationSettings::default(),
            init: None,
            outputs: OutputMode::Separate,
            conv: None,
        }
    }
}

/// What column generation did (`report.json: column_generation`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ColumnGenerationReport {
    /// How it ended.
    pub end: ColumnGenerationEnd,
    /// Largest `|theta^T (X u)_+| / lambda` the oracle found at the final point (at most
    /// `1 + tol`: no violated pattern found).
    pub oracle_ratio: f64,
    /// `(oracle_ratio - 1)_+`: the relative violation of the dual constraint found.
    pub relative_violation: f64,
    /// Lower bound on the global optimum if the oracle's maximum is the true one (heuristic).
    pub searched_bound: f64,
    /// How hard the oracle searched (starts per round, ascent steps).
    pub oracle: OracleSettings,
    /// Objective of the warm-start network in the program (when one was given).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub init_objective: Option<f64>,
    /// Where the warm start came from: `"network"`, `"adam"`/`"sgd"`, or absent.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub init: Option<String>,
    /// Seconds spent training the warm-start network (gradient warm start).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub init_seconds: Option<f64>,
    /// Trajectory: patterns, objective, oracle ratio per round.
    pub rounds: Vec<ColumnGenerationRound>,
}

/// What a training run measured; written to `report.json`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Report {
    /// Convex objective at the solution (DESIGN section 0).
    pub objective: f64,
    /// Objective of the rebuilt network (weight decay form); equals `objective` for ReLU.
    pub network_objective: f64,
    /// Lower bound on the optimum of the program over the patterns used.
    pub dual_bound: f64,
    /// `objective - dual_bound`.
    pub gap: f64,
    /// `gap / |objective|`.
    pub relative_gap: f64,
    /// What the dual bound certifies: `"sampled-patterns"` (relative to the patterns used) or
    /// `"global"` (exact patterns: a lower bound for every network of this architecture).
    pub certificate: String,
    /// Solver outcome.
    pub status: Status,
    /// First-order iterations.
    pub iterations: usize,
    /// Wall-clock seconds of the solve (patterns included).
    pub seconds: f64,
    /// Hidden neurons of the rebuilt network (non-zero groups).
    pub neurons: usize,
    /// Number of distinct activation patterns in the program.
    pub patterns: usize,
    /// Regularization strength.
    pub lambda: f64,
    /// Model solved.
    pub model: ModelKind,
    /// Loss used.
    pub loss: LossKind,
    /// Outputs of the network (the number of classes for multiclass, else 1).
    #[serde(default = "one")]
    pub outputs: usize,
    /// How the neurons feed the outputs (meaningful with several outputs).
    #[serde(default)]
    pub output_mode: OutputMode,
    /// Task.
    pub task: Task,
    /// Relative cone-constraint violation at the solution (0 for gated ReLU).
    pub violation: f64,
    /// Requested relative tolerance.
    pub tol: f64,
    /// Precision of the first-order iterations' products (the gap is always computed in f64).
    #[serde(default)]
    pub precision: crate::solver::Precision,
    /// Seed.
    pub seed: u64,
    /// Factor the regression targets were divided by (objectives are in those units).
    pub target_scale: f64,
    /// Training samples.
    pub n_train: usize,
    /// Test samples.
    pub n_test: usize,
    /// Columns of the design matrix (features plus bias).
    pub d: usize,
    /// Metrics on the training split.
    pub train: Metrics,
    /// Metrics on the test split (absent when there is none).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub test: Option<Metrics>,
    /// Objective of the ReLU network from the cone decomposition (gated ReLU, when asked).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub decomposed_objective: Option<f64>,
    /// Outer trajectory of the solver.
    pub trace: Vec<Progress>,
    /// Solver that produced the solution: `"first-order"` or `"conic"`.
    #[serde(default = "default_solver_name")]
    pub solver: String,
    /// How the conic solve ended (conic solver only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub conic_status: Option<ConicStatus>,
    /// Interior-point iterations (conic solver only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub conic_iterations: Option<u32>,
    /// Column generation (adaptive patterns only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub column_generation: Option<ColumnGenerationReport>,
    /// The regularization path that chose `lambda` (`--lambda auto` only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lambda_path: Option<crate::path::PathSummary>,
    /// The convolution (CNN models only; flattened: `architecture`, `shape`, `patches`,
    /// `filter_len`, `feature_scale`). `neurons` counts filters and `d` is the filter length.
    #[serde(flatten)]
    pub conv: Option<ConvReportPart>,
}

fn one() -> usize {
    1
}

fn default_solver_name() -> String {
    SolverChoice::FirstOrder.name().to_string()
}

/// Everything needed to apply a trained model to raw data; written to `model.json`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ModelMeta {
    /// cvxnn version that wrote the model.
    pub version: String,
    /// Architecture: `"two-layer"` or a CNN (then [`ModelMeta::conv`] holds its shape).
    pub architecture: Architecture,
    /// Model kind.
    pub model: ModelKind,
    /// How the neurons feed the outputs (meaningful with several outputs).
    #[serde(default)]
    pub output_mode: OutputMode,
    /// Task.
    pub task: Task,
    /// Loss the model was trained with.
    pub loss: LossKind,
    /// Regularization strength.
    pub lambda: f64,
    /// Seed.
    pub seed: u64,
    /// Patterns in the program.
    pub patterns: usize,
    /// Hidden neurons (filters of a CNN; the first CNN files wrote only `filters`).
    #[serde(default)]
    pub neurons: usize,
    /// Raw feature names, in the order the network expects them.
    pub feature_names: Vec<String>,
    /// Target column name.
    pub target: String,
    /// Standardization fitted on the training split (identity when off; a CNN's one global
    /// scale on every feature).
    #[serde(default)]
    pub standardizer: Standardizer,
    /// Whether z-scoring was on (never for a CNN).
    #[serde(default)]
    pub standardize: bool,
    /// Whether a bias column was appended.
    pub bias: bool,
    /// Factor the (regression) targets were divided by before solving; 1 when not scaled.
    pub target_scale: f64,
    /// The class labels of a classification task, in class order (binary: the first is encoded
    /// -1, the second +1). Older files' `{"negative": .., "positive": ..}` is read too.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub labels: Option<ClassLabels>,
    /// The convolution of a CNN model (flattened: `shape`, `feature_scale`, `filters`,
    /// `torch_modules`).
    #[serde(flatten)]
    pub conv: Option<ConvSpec>,
}

/// What [`TrainedModel::predict`] returns.
#[derive(Clone, Debug, PartialEq)]
pub enum Predictions {
    /// Regression: values in the target's units.
    Values(Vec<f64>),
    /// Classification: the original class labels.
    Labels(Vec<String>),
}

impl Predictions {
    /// Number of predictions.
    pub fn len(&self) -> usize {
        match self {
            Predictions::Values(v) => v.len(),
            Predictions::Labels(l) => l.len(),
        }
    }

    /// Whether there is none.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Every prediction as text: values as Rust prints an `f64` (shortest round-trip form),
    /// labels as they are.
    pub fn to_strings(&self) -> Vec<String> {
        match self {
            Predictions::Values(v) => v.iter().map(f64::to_string).collect(),
            Predictions::Labels(l) => l.clone(),
        }
    }
}

/// The error of the commands that take one-output networks only (`certify`) on a multiclass
/// task, naming `what` runs.
pub(crate) fn one_output_only(what: &str) -> CvxnnError {
    CvxnnError::arg(
        "task",
        format!(
            "{what} takes one-output networks (regression or binary); multiclass networks are trained and certified by `cvxnn train` (its report's dual bound)"
        ),
    )
}

/// A trained model: metadata plus the network on raw features.
#[derive(Clone, Debug, PartialEq)]
pub struct TrainedModel {
    /// Metadata and preprocessing.
    pub meta: ModelMeta,
    /// Network on raw features (preprocessing folded in).
    pub network: ModelNetwork,
}

/// The outcome of [`train`].
#[derive(Clone, Debug)]
pub struct TrainOutput {
    /// The model.
    pub model: TrainedModel,
    /// The report.
    pub report: Report,
    /// The design-space network (before folding the preprocessing; a CNN's per-patch network).
    pub network: Network,
    /// The ReLU network from the cone decomposition (gated ReLU only, when asked).
    pub decomposed: Option<Network>,
}

/// Design matrix of raw features: standardize, then append the bias column.
pub fn design_matrix(raw: &Matrix, std: &Standardizer, bias: bool) -> Result<Matrix> {
    let z = std.transform(raw)?;
    Ok(if bias { add_bias(&z) } else { z })
}

/// Trains on `table` as configured: everything is validated before any work is done.
pub fn train(
    table: &Table,
    cfg: &TrainConfig,
    decompose: bool,
    progress: &mut dyn FnMut(&Progress),
) -> Result<TrainOutput> {
    if let Some(conv) = &cfg.conv {
        return crate::conv::train(table, cfg, conv, decompose, progress);
    }
    let start = std::time::Instant::now();
    if !(cfg.lambda.is_finite() && cfg.lambda > 0.0) {
        return Err(CvxnnError::arg(
            "lambda",
            format!("must be a finite number > 0, got {}", cfg.lambda),
        ));
    }
    cfg.solver.validate()?;
    cfg.model.check_precision(cfg.solver.precision)?;
    if cfg.model == ModelKind::GatedRelu && matches!(cfg.patterns, PatternSource::Exact { .. }) {
        return Err(CvxnnError::arg(
            "patterns",
            "exact patterns need --model relu (the gated model needs a gate per pattern; use --patterns N or --gates FILE)",
        ));
    }
    let data = prepare_training_data(
        table,
        cfg.task,
        cfg.loss,
        cfg.standardize,
        cfg.bias,
        cfg.scale_target,
        cfg.test_fraction,
        cfg.seed,
    )?;
    let patterns = cfg.patterns.resolve(cfg.model, &data.x, cfg.init.is_some());
    if cfg.init.is_some() && !matches!(patterns, PatternSource::Adaptive { .. }) {
        return Err(CvxnnError::arg(
            "init",
            "a warm start needs --patterns adaptive (column generation)",
        ));
    }
    let patterns = match patterns {
        // Column generation prices one output; several take sampled patterns.
        PatternSource::Adaptive { .. } if data.outputs > 1 => {
            if matches!(cfg.patterns, PatternSource::Auto { .. }) {
                PatternSource::Sample(AUTO_GATED_SAMPLES)
            } else {
                return Err(CvxnnError::arg(
                    "patterns",
                    "adaptive patterns (column generation) take one output; for multiclass use --patterns N, exact or --gates",
                ));
            }
        }
        other => other,
    };
    if let PatternSource::Adaptive { initial } = patterns {
        if cfg.model != ModelKind::Relu {
            return Err(CvxnnError::arg(
                "patterns",
                "adaptive patterns need --model relu (the oracle prices ReLU patterns)",
            ));
        }
        let (warm, init_seconds) = match &cfg.init {
            None => (None, None),
            Some(WarmStart::Network(raw)) => {
                if raw.w1.ncols() != data.x_train_raw.ncols() {
                    return Err(CvxnnError::arg(
                        "init-network",
                        format!(
                            "the network takes {} features, the data has {}",
                            raw.w1.ncols(),
                            data.x_train_raw.ncols()
                        ),
                    ));
                }
                let std = &data.standardizer;
                let mut net = raw.to_network(&std.mean, &std.scale, cfg.bias)?;
                net.alpha.iter_mut().for_each(|a| *a /= data.target_scale);
                (Some(net), None)
            }
            Some(WarmStart::Gradient(g)) => {
                let out = crate::network::train_gradient(
                    &data.x,
                    &data.y_train,
                    data.loss,
                    cfg.lambda,
                    g,
                )?;
                (Some(out.network), Some(out.seconds))
            }
        };
        let initial = sample_patterns(&data.x, initial.max(1), cfg.seed)?;
        let out = solve_column_generation(
            &data.x,
            &data.y_train,
            data.loss,
            cfg.lambda,
            &initial,
            warm.as_ref(),
            &cfg.solver,
            &cfg.column_generation,
            progress,
        )?;
        let cg_report = ColumnGenerationReport {
            end: out.end,
            oracle_ratio: out.oracle_ratio,
            relative_violation: (out.oracle_ratio - 1.0).max(0.0),
            searched_bound: out.searched_bound,
            oracle: cfg.column_generation.oracle.clone(),
            init_objective: out.warm_objective,
            init: cfg.init.as_ref().map(|w| match w {
                WarmStart::Network(_) => "network".to_string(),
                WarmStart::Gradient(g) => g.optimizer.name().to_string(),
            }),
            init_seconds,
            rounds: out.rounds,
        };
        let solution = ProgramSolution::first_order(out.solution, SolverChoice::FirstOrder);
        let masks = out.masks;
        return finish_training(
            table,
            cfg,
            decompose,
            start,
            data,
            &patterns,
            (None, &masks),
            solution,
            Some(cg_report),
        );
    }
    let (gates, masks) = fixed_patterns(&patterns, &data.x, cfg.seed)?;
    let solution = if cfg.shared_relu(data.outputs) {
        solve_shared_relu(&data, &masks, cfg, progress)?
    } else {
        solve_program(
            &data.x,
            &data.y_train,
            (data.outputs, cfg.outputs),
            &masks,
            data.loss,
            cfg.model,
            cfg.lambda,
            cfg.solver_choice,
            &cfg.solver,
            progress,
        )?
    };
    finish_training(
        table,
        cfg,
        decompose,
        start,
        data,
        &patterns,
        (gates.as_ref(), &masks),
        solution,
        None,
    )
}

/// The shared-neuron ReLU model (several outputs): its Burer-Monteiro factors over the patterns
/// are the network; the lower bound is the relaxed dual bound of
/// [`crate::program::SharedReluProgram`] (a bound, not an exact certificate).
fn solve_shared_relu(
    data: &TrainingData,
    masks: &Masks,
    cfg: &TrainConfig,
    progress: &mut dyn FnMut(&Progress),
) -> Result<ProgramSolution> {
    if cfg.solver_choice == SolverChoice::Conic {
        return Err(CvxnnError::arg(
            "solver",
            "the shared-neuron ReLU model is solved in factored form (Burer-Monteiro); use --solver first-order or auto",
        ));
    }
    let bm = crate::program::solve_shared_relu_bm(
        &data.x,
        &data.y_train,
        data.outputs,
        masks,
        data.loss,
        cfg.lambda,
        &cfg.solver,
        None,
        cfg.seed,
        progress,
    )?;
    let network = bm.network(None)?;
    Ok(ProgramSolution {
        x: Vec::new(),
        objective: bm.objective,
        dual_bound: bm.bound.lower_bound,
        status: bm.status,
        iterations: bm.iterations,
        violation: bm.violation,
        trace: bm.trace,
        solver: SolverChoice::FirstOrder,
        conic_status: None,
        conic_iterations: None,
        multipliers: None,
        network: Some(network),
    })
}

/// The gates (sampled or given; `None` for exact patterns) and masks of a fixed pattern source
/// on design matrix `x`. Adaptive and auto sources are resolved by the caller.
pub(crate) fn fixed_patterns(
    patterns: &PatternSource,
    x: &Matrix,
    seed: u64,
) -> Result<(Option<Matrix>, Masks)> {
    Ok(match patterns {
        PatternSource::Adaptive { .. } | PatternSource::Auto { .. } => {
            return Err(CvxnnError::arg(
                "patterns",
                "adaptive patterns: internal dispatch",
            ))
        }
        PatternSource::Sample(count) => {
            let GatedPatterns { gates, masks } = sample_patterns(x, *count, seed)?;
            (Some(gates), masks)
        }
        PatternSource::Gates(g) => {
            let GatedPatterns { gates, masks } = patterns_from_gates(x, g)?;
            (Some(gates), masks)
        }
        PatternSource::Exact { max_patterns } => (None, exact_patterns(x, *max_patterns)?),
    })
}

/// Rebuilds, exports, measures and reports a solved program.
#[allow(clippy::too_many_arguments)]
pub(crate) fn finish_training(
    table: &Table,
    cfg: &TrainConfig,
    decompose: bool,
    start: std::time::Instant,
    data: TrainingData,
    patterns: &PatternSource,
    (gates, masks): (Option<&Matrix>, &Masks),
    solution: ProgramSolution,
    column_generation: Option<ColumnGenerationReport>,
) -> Result<TrainOutput> {
    let TrainingData {
        task,
        loss,
        labels,
        train_idx,
        test_idx,
        x_train_raw,
        y_train,
        target_scale,
        standardizer,
        x,
        outputs: data_outputs,
        ..
    } = data;
    let network = match solution.network {
        Some(net) => net,
        None => Network::from_convex_outputs(
            cfg.model,
            cfg.outputs,
            x.ncols(),
            data_outputs,
            &solution.x,
            gates,
        )?,
    };
    let network_objective = network.objective(&x, &y_train, loss, cfg.lambda)?;
    let decomposed = if decompose && cfg.model == ModelKind::GatedRelu {
        Some(crate::network::decompose_gated(&network, &x)?)
    } else {
        None
    };
    let decomposed_objective = match &decomposed {
        Some(net) => Some(net.objective(&x, &y_train, loss, cfg.lambda)?),
        None => None,
    };
    let mut raw =
        RawNetwork::from_network(&network, &standardizer.mean, &standardizer.scale, cfg.bias)?;
    // Predictions in the target's units: the output layer takes the target scale back.
    raw.w2.iter_mut().for_each(|a| *a *= target_scale);
    let meta = ModelMeta {
        version: env!("CARGO_PKG_VERSION").to_string(),
        architecture: Architecture::TwoLayer,
        model: cfg.model,
        output_mode: cfg.outputs,
        task,
        loss,
        lambda: cfg.lambda,
        seed: cfg.seed,
        patterns: masks.len(),
        neurons: network.neurons(),
        feature_names: table.feature_names.clone(),
        target: table.target_name.clone(),
        standardizer,
        standardize: cfg.standardize,
        bias: cfg.bias,
        target_scale,
        labels,
        conv: None,
    };
    let model = TrainedModel {
        meta,
        network: ModelNetwork::Dense(raw),
    };
    let train_metrics = model.metrics(&x_train_raw, &table.target.select(&train_idx))?;
    let test = if test_idx.is_empty() {
        None
    } else {
        let xt = table.features.select_rows(&test_idx);
        Some(model.metrics(&xt, &table.target.select(&test_idx))?)
    };
    let report = Report {
        objective: solution.objective,
        network_objective,
        dual_bound: solution.dual_bound,
        gap: solution.objective - solution.dual_bound,
        relative_gap: relative_gap(solution.objective, solution.dual_bound),
        certificate: match &column_generation {
            Some(cg) if cg.end == ColumnGenerationEnd::NoViolationFound => {
                "no-violation-found".into()
            }
            // The shared-neuron ReLU bound relaxes the dual norm: valid, never exact.
            _ if cfg.shared_relu(network.outputs) => "relaxed-bound".into(),
            _ => certificate_name(patterns).into(),
        },
        status: solution.status,
        iterations: solution.iterations,
        seconds: start.elapsed().as_secs_f64(),
        neurons: network.neurons(),
        patterns: masks.len(),
        lambda: cfg.lambda,
        model: cfg.model,
        loss,
        outputs: network.outputs,
        output_mode: cfg.outputs,
        task,
        violation: solution.violation,
        tol: cfg.solver.tol,
        precision: cfg.solver.precision,
        seed: cfg.seed,
        target_scale,
        n_train: train_idx.len(),
        n_test: test_idx.len(),
        d: x.ncols(),
        train: train_metrics,
        test,
        decomposed_objective,
        trace: solution.trace,
        solver: solution.solver.name().into(),
        conic_status: solution.conic_status,
        conic_iterations: solution.conic_iterations,
        column_generation,
        lambda_path: None,
        conv: None,
    };
    Ok(TrainOutput {
        model,
        report,
        network,
        decomposed,
    })
}

/// Training data prepared as [`train`] prepares it (see [`prepare_training_data`]).
#[derive(Clone)]
pub(crate) struct TrainingData {
    /// The task (given or inferred).
    pub task: Task,
    /// The loss (given, or squared for regression and multiclass, logistic for binary).
    pub loss: LossKind,
    /// The class labels of a classification task.
    pub labels: Option<ClassLabels>,
    /// Outputs of the network: 1 (regression, binary) or the number of classes (multiclass).
    pub outputs: usize,
    /// Rows of the table in the training split.
    pub train_idx: Vec<usize>,
    /// Rows of the table in the test split.
    pub test_idx: Vec<usize>,
    /// Raw features of the training rows.
    pub x_train_raw: Matrix,
    /// Encoded training targets, divided by `target_scale`: values (regression), ±1 (binary) or
    /// the one-hot `n_train x outputs` matrix stored column-major (multiclass, see
    /// [`crate::data::one_hot`]).
    pub y_train: Vec<f64>,
    /// Factor the regression targets were divided by (1 when not scaled).
    pub target_scale: f64,
    /// Standardization fitted on the training rows (identity when off).
    pub standardizer: Standardizer,
    /// Design matrix of the training rows (standardized, bias column appended when asked).
    pub x: Matrix,
}

/// Factor regression targets are divided by: their population standard deviation when `scale`
/// is on (1 for a constant target), else 1; always 1 for classification.
pub fn target_scale(task: Task, scale: bool, y: &[f64]) -> f64 {
    if task != Task::Regression || !scale {
        return 1.0;
    }
    let n = y.len().max(1) as f64;
    let mean = y.iter().sum::<f64>() / n;
    let var = y.iter().map(|v| (v - mean) * (v - mean)).sum::<f64>() / n;
    if var > 0.0 {
        var.sqrt()
    } else {
        1.0
    }
}

/// The preprocessing of [`train`]: task and loss (inferred when `None`), target encoding, the
/// seeded split, target scaling and standardization fitted on the training rows, design matrix.
#[allow(clippy::too_many_arguments)]
pub(crate) fn prepare_training_data(
    table: &Table,
    task: Option<Task>,
    loss: Option<LossKind>,
    standardize: bool,
    bias: bool,
    scale_target: bool,
    test_fraction: f64,
    seed: u64,
) -> Result<TrainingData> {
    let task = task.unwrap_or_else(|| Task::infer(&table.target));
    let encoded = encode_target(task, &table.target)?;
    let loss = task_loss(task, loss)?;
    let (train_idx, test_idx) = train_test_split(table.features.nrows(), test_fraction, seed)?;
    let x_train_raw = table.features.select_rows(&train_idx);
    let mut y_train = encoded.program_targets(&train_idx);
    let target_scale = target_scale(task, scale_target, &y_train);
    y_train.iter_mut().for_each(|v| *v /= target_scale);
    let standardizer = if standardize {
        Standardizer::fit(&x_train_raw)
    } else {
        Standardizer::identity(x_train_raw.ncols())
    };
    let x = design_matrix(&x_train_raw, &standardizer, bias)?;
    Ok(TrainingData {
        task,
        loss,
        outputs: encoded.outputs(),
        labels: encoded.labels().cloned(),
        train_idx,
        test_idx,
        x_train_raw,
        y_train,
        target_scale,
        standardizer,
        x,
    })
}

/// The loss of `task`: the given one, else squared for regression, logistic for binary and
/// softmax cross-entropy for multiclass (squared on one-hot targets is the other choice there).
/// Logistic loss on a non-binary task and cross-entropy on a non-multiclass one are an invalid
/// `loss`.
pub(crate) fn task_loss(task: Task, loss: Option<LossKind>) -> Result<LossKind> {
    let loss = loss.unwrap_or(match task {
        Task::Binary => LossKind::Logistic,
        Task::Multiclass => LossKind::CrossEntropy,
        Task::Regression => LossKind::Squared,
    });
    if loss == LossKind::Logistic && task != Task::Binary {
        return Err(CvxnnError::arg(
            "loss",
            "logistic loss needs a binary task (two label values)",
        ));
    }
    if loss == LossKind::CrossEntropy && task != Task::Multiclass {
        return Err(CvxnnError::arg(
            "loss",
            "cross-entropy needs --task multiclass (use logistic for two classes)",
        ));
    }
    Ok(loss)
}

/// `"global"` for exact patterns, `"sampled-patterns"` otherwise (column generation reports
/// `"no-violation-found"` when its oracle found nothing, see [`train`]).
pub(crate) fn certificate_name(p: &PatternSource) -> &'static str {
    match p {
        PatternSource::Exact { .. } => "global",
        _ => "sampled-patterns",
    }
}

/// Every activation pattern of `x` (see [`exact::enumerate`]) except the all-inactive one, which
/// contributes nothing to the program.
pub fn exact_patterns(x: &Matrix, max_patterns: usize) -> Result<Masks> {
    let all = exact::enumerate(x, max_patterns)?;
    let keep: Vec<usize> = (0..all.len())
        .filter(|&i| all.count_active(i) > 0)
        .collect();
    Ok(all.select(&keep))
}

/// The outcome of [`solve_program`].
#[derive(Clone, Debug)]
pub struct ProgramSolution {
    /// Convex variables (`TwoLayerProgram` layout).
    pub x: Vec<f64>,
    /// Objective at `x` (an upper bound on the program's optimum when feasible).
    pub objective: f64,
    /// Lower bound on the program's optimum (from the first-order solver's dual point).
    pub dual_bound: f64,
    /// Converged when the relative gap and violation are below the tolerance.
    pub status: Status,
    /// First-order iterations.
    pub iterations: usize,
    /// Relative cone-constraint violation at `x`.
    pub violation: f64,
    /// First-order trajectory.
    pub trace: Vec<Progress>,
    /// Solver used (`FirstOrder` or `Conic`).
    pub solver: SolverChoice,
    /// Conic status (conic solver only).
    pub conic_status: Option<ConicStatus>,
    /// Interior-point iterations (conic solver only).
    pub conic_iterations: Option<u32>,
    /// The augmented Lagrangian's final multipliers (first-order ReLU solves), to warm-start a
    /// solve of the same constraints at another lambda.
    pub multipliers: Option<Multipliers>,
    /// The network, when the solver works on it directly (the shared-neuron ReLU model's
    /// Burer-Monteiro factors; `x` is then empty); else it is rebuilt from `x`.
    pub network: Option<Network>,
}

impl ProgramSolution {
    /// A first-order solver's solution, as produced by `solver`.
    fn first_order(s: crate::solver::Solution, solver: SolverChoice) -> ProgramSolution {
        ProgramSolution {
            x: s.x,
            objective: s.objective,
            dual_bound: s.dual_bound,
            status: s.status,
            iterations: s.iterations,
            violation: s.violation,
            trace: s.trace,
            solver,
            conic_status: None,
            conic_iterations: None,
            multipliers: s.multipliers,
            network: None,
        }
    }
}

/// Solves the convex program over `masks` with the chosen solver; `y` is `n x outputs`
/// (column-major), and several outputs take the first-order solver.
///
/// With the conic solver the interior-point solution gives the primal point; the first-order
/// solver, warm-started there, supplies an honest dual bound (and replaces the primal point when
/// it finds a better feasible one).
#[allow(clippy::too_many_arguments)]
pub fn solve_program(
    x: &Matrix,
    y: &[f64],
    (outputs, mode): (usize, OutputMode),
    masks: &Masks,
    loss: LossKind,
    model: ModelKind,
    lambda: f64,
    choice: SolverChoice,
    settings: &SolverSettings,
    progress: &mut dyn FnMut(&Progress),
) -> Result<ProgramSolution> {
    solve_program_warm(
        x,
        y,
        (outputs, mode),
        masks,
        loss,
        model,
        lambda,
        choice,
        settings,
        None,
        progress,
    )
}

/// A previous solution of the same data and patterns (another lambda) to start from.
#[derive(Clone, Copy, Debug)]
pub struct WarmPoint<'a> {
    /// Its variables.
    pub x: &'a [f64],
    /// Its augmented-Lagrangian multipliers (ReLU).
    pub multipliers: Option<&'a Multipliers>,
}

/// [`solve_program`] from a warm point (first-order solver; the conic solver always starts from
/// scratch, then warm-starts its first-order certificate at its own solution).
#[allow(clippy::too_many_arguments)]
pub fn solve_program_warm(
    x: &Matrix,
    y: &[f64],
    (outputs, mode): (usize, OutputMode),
    masks: &Masks,
    loss: LossKind,
    model: ModelKind,
    lambda: f64,
    choice: SolverChoice,
    settings: &SolverSettings,
    warm: Option<WarmPoint<'_>>,
    progress: &mut dyn FnMut(&Progress),
) -> Result<ProgramSolution> {
    let program = TwoLayerProgram::with_outputs(x, y, outputs, mode, masks, loss, model, lambda)?;
    let solver = if outputs > 1 {
        if choice == SolverChoice::Conic {
            return Err(CvxnnError::arg(
                "solver",
                "the conic solver takes one output; use --solver first-order (or auto) for multiclass",
            ));
        }
        SolverChoice::FirstOrder
    } else {
        choice.resolve(model, x.nrows(), masks.len(), x.ncols())
    };
    if solver != SolverChoice::Conic {
        let s = match warm {
            Some(w) => program.solve_warm(settings, Some(w.x), w.multipliers, progress)?,
            None => program.solve(settings, None, progress)?,
        };
        return Ok(ProgramSolution::first_order(s, solver));
    }
    settings.validate()?;
    let conic = solve_conic(
        &ConicProblem {
            x,
            y,
            masks,
            loss,
            model,
            lambda,
        },
        &ConicSettings {
            tol: settings.tol.min(1e-8),
            ..ConicSettings::default()
        },
    )?;
    let usable = conic.status.is_solved()
        || matches!(
            conic.status,
            ConicStatus::MaxIterations | ConicStatus::MaxTime
        );
    let warm = usable.then(|| conic.weights.as_slice());
    let fo = program.solve(settings, warm, progress)?;
    let conic_violation = program.violation(conic.weights.as_slice())?;
    let (vars, objective, violation) = if usable
        && conic_violation <= settings.tol
        && (conic.objective <= fo.objective || fo.violation > settings.tol)
    {
        (conic.weights.into_vec(), conic.objective, conic_violation)
    } else {
        (fo.x, fo.objective, fo.violation)
    };
    let status =
        if relative_gap(objective, fo.dual_bound) <= settings.tol && violation <= settings.tol {
            Status::Converged
        } else if fo.status == Status::Converged {
            Status::MaxIterations
        } else {
            fo.status
        };
    Ok(ProgramSolution {
        x: vars,
        objective,
        dual_bound: fo.dual_bound,
        status,
        iterations: fo.iterations,
        violation,
        trace: fo.trace,
        solver,
        conic_status: Some(conic.status),
        conic_iterations: Some(conic.iterations),
        multipliers: fo.multipliers,
        network: None,
    })
}

/// File names inside a model directory.
pub const MODEL_FILES: [&str; 3] = ["model.json", "model.safetensors", "report.json"];

impl TrainedModel {
    /// Raw network outputs on raw features (columns in the model's feature order).
    pub fn decision_function(&self, raw: &Matrix) -> Result<Vec<f64>> {
        self.network.forward(raw)
    }

    /// The class labels of a classification model (a [`CvxnnError::Model`] for a regression
    /// model or one without labels).
    pub fn class_labels(&self) -> Result<&ClassLabels> {
        match (&self.meta.labels, self.meta.task.is_classification()) {
            (Some(l), true) => Ok(l),
            _ => Err(CvxnnError::arg(
                "model",
                format!("a {} model has no class labels", self.meta.task),
            )),
        }
    }

    /// Predicted class indices (classification): binary `score >= 0` -> class 1
    /// ([`crate::data::binary_class`]); multiclass the argmax of each row of the `n x c` scores
    /// ([`crate::data::argmax_classes`], ties to the lowest index).
    pub fn predict_classes(&self, raw: &Matrix) -> Result<Vec<usize>> {
        let labels = self.class_labels()?;
        let scores = self.decision_function(raw)?;
        match self.meta.task {
            Task::Multiclass => argmax_classes(&scores, raw.nrows(), labels.len()),
            _ => Ok(scores.into_iter().map(binary_class).collect()),
        }
    }

    /// Predictions: values in the target's units (regression), or the original labels
    /// (classification).
    pub fn predict(&self, raw: &Matrix) -> Result<Predictions> {
        if !self.meta.task.is_classification() {
            return Ok(Predictions::Values(self.decision_function(raw)?));
        }
        let labels = self.class_labels()?;
        let classes = self.predict_classes(raw)?;
        Ok(Predictions::Labels(
            classes
                .iter()
                .map(|&k| labels.decode(k).unwrap_or_default().to_string())
                .collect(),
        ))
    }

    /// Metrics of the predictions against a target column: MSE and R^2 (regression; every cell
    /// must be a number), accuracy, balanced accuracy and confusion matrix (classification; a
    /// label that is not one of the model's classes is an error naming its line).
    pub fn metrics(&self, raw: &Matrix, target: &TargetColumn) -> Result<Metrics> {
        if target.len() != raw.nrows() {
            return Err(CvxnnError::Shape(format!(
                "{} targets for {} rows",
                target.len(),
                raw.nrows()
            )));
        }
        if !self.meta.task.is_classification() {
            let values = target.values()?;
            return Ok(regression_metrics(&self.decision_function(raw)?, &values));
        }
        let labels = self.class_labels()?;
        let truth = labels.encode(target)?;
        let pred = self.predict_classes(raw)?;
        Ok(classification_metrics(labels.labels(), &truth, &pred))
    }

    /// Writes `model.json` and `model.safetensors` (and `report.json` when given) into `dir`,
    /// creating it. Refuses to replace existing files unless `overwrite`.
    pub fn save(&self, dir: &Path, report: Option<&Report>, overwrite: bool) -> Result<()> {
        if !overwrite {
            for f in MODEL_FILES {
                let p = dir.join(f);
                if p.exists() {
                    return Err(CvxnnError::arg(
                        "out",
                        format!(
                            "{} exists; choose another directory or pass --force to replace it",
                            p.display()
                        ),
                    ));
                }
            }
        }
        std::fs::create_dir_all(dir).map_err(|e| CvxnnError::io(dir, e))?;
        let json = serde_json::to_string_pretty(&self.meta).map_err(|e| CvxnnError::Model {
            path: dir.into(),
            message: e.to_string(),
        })?;
        write(&dir.join("model.json"), json.as_bytes())?;
        self.network.save(&dir.join("model.safetensors"))?;
        if let Some(r) = report {
            let json = serde_json::to_string_pretty(r).map_err(|e| CvxnnError::Model {
                path: dir.into(),
                message: e.to_string(),
            })?;
            write(&dir.join("report.json"), json.as_bytes())?;
        }
        Ok(())
    }

    /// Reads a model directory written by [`TrainedModel::save`].
    pub fn load(dir: &Path) -> Result<TrainedModel> {
        let meta_path: PathBuf = dir.join("model.json");
        let text =
            std::fs::read_to_string(&meta_path).map_err(|e| CvxnnError::io(&meta_path, e))?;
        let mut meta: ModelMeta = serde_json::from_str(&text).map_err(|e| CvxnnError::Model {
            path: meta_path.clone(),
            message: e.to_string(),
        })?;
        if let Some(spec) = &meta.conv {
            // The first CNN files wrote `filters` and no standardizer.
            meta.neurons = spec.filters;
            if meta.standardizer.mean.is_empty() {
                let p = meta.feature_names.len();
                meta.standardizer = Standardizer {
                    mean: vec![0.0; p],
                    scale: vec![spec.feature_scale; p],
                };
            }
        }
        let labels_ok = match (meta.task, &meta.labels) {
            (Task::Regression, _) => true,
            (Task::Binary, Some(l)) => l.len() == 2,
            (Task::Multiclass, Some(l)) => l.len() >= 2,
            (_, None) => false,
        };
        if !labels_ok {
            return Err(CvxnnError::Model {
                path: meta_path,
                message: format!(
                    "a {} task needs {} class labels, found {}",
                    meta.task,
                    if meta.task == Task::Binary {
                        "2"
                    } else {
                        "at least 2"
                    },
                    meta.labels.as_ref().map_or(0, ClassLabels::len)
                ),
            });
        }
        let network = ModelNetwork::load(
            &dir.join("model.safetensors"),
            meta.architecture,
            meta.conv.as_ref(),
            meta.bias,
            meta.model == ModelKind::GatedRelu,
        )?;
        if network.input_len() != meta.feature_names.len() {
            return Err(CvxnnError::Model {
                path: dir.into(),
                message: format!(
                    "weights take {} features, model.json lists {}",
                    network.input_len(),
                    meta.feature_names.len()
                ),
            });
        }
        let outputs = match (meta.task, &meta.labels) {
            (Task::Multiclass, Some(l)) => l.len(),
            _ => 1,
        };
        if network.outputs() != outputs {
            return Err(CvxnnError::Model {
                path: dir.into(),
                message: format!(
                    "weights have {} outputs, a {} model needs {outputs}",
                    network.outputs(),
                    meta.task
                ),
            });
        }
        Ok(TrainedModel { meta, network })
    }
}

fn write(path: &Path, bytes: &[u8]) -> Result<()> {
    std::fs::write(path, bytes).map_err(|e| CvxnnError::io(path, e))
}

/// Settings of [`certify`]. Defaults: exact patterns (limit 100000), first-order solver,
/// standardize, bias, scaled targets, no test split.
#[derive(Clone, Debug, PartialEq)]
pub struct CertifyConfig {
    /// Regression or binary (multiclass is not wired yet); `None` infers it (ignored with a
    /// model directory's metadata).
    pub task: Option<Task>,
    /// Loss; `None` picks the metadata's, else squared for regression and logistic for binary.
    pub loss: Option<LossKind>,
    /// Regularization strength (> 0).
    pub lambda: f64,
    /// Patterns of the bound (the network's own patterns are always added).
    pub patterns: PatternSource,
    /// z-score the features (without metadata).
    pub standardize: bool,
    /// Bias column (without metadata).
    pub bias: bool,
    /// Divide regression targets by their standard deviation (without metadata).
    pub scale_target: bool,
    /// Fraction of samples left out (the bound is over the rest), in [0, 1).
    pub test_fraction: f64,
    /// Seed (split, sampled patterns).
    pub seed: u64,
    /// First-order settings; `tol` is also the optimality tolerance of the verdict.
    pub solver: SolverSettings,
    /// Which solver.
    pub solver_choice: SolverChoice,
}

impl Default for CertifyConfig {
    fn default() -> Self {
        CertifyConfig {
            task: None,
            loss: None,
            lambda: 1e-3,
            patterns: PatternSource::Exact {
                max_patterns: 100_000,
            },
            standardize: true,
            bias: true,
            scale_target: true,
            test_fraction: 0.0,
            seed: 0,
            solver: SolverSettings::default(),
            solver_choice: SolverChoice::FirstOrder,
        }
    }
}

/// How far a given network is from the optimum of its training problem.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct CertifyReport {
    /// The network's weight-decay objective `(1/n) sum loss + (lambda/2) sum (||u||^2 + alpha^2)`
    /// in the design space (DESIGN section 0), targets scaled by `target_scale`.
    pub network_objective: f64,
    /// The same with every neuron optimally rescaled: `(1/n) sum loss + lambda sum ||u|| |alpha|`.
    pub balanced_objective: f64,
    /// Lower bound on the optimum (dual bound of the ReLU program over `patterns`).
    pub lower_bound: f64,
    /// `"global"` (exact patterns: bounds every network of this architecture) or
    /// `"sampled-patterns"` (bounds networks whose neurons use the sampled patterns or the given
    /// network's own).
    pub certificate: String,
    /// `network_objective - lower_bound`.
    pub gap: f64,
    /// `gap / |network_objective|`.
    pub relative_gap: f64,
    /// Whether `relative_gap <= tol`.
    pub optimal: bool,
    /// Tolerance of the verdict.
    pub tol: f64,
    /// Best convex objective found (an upper bound on the optimum over the patterns).
    pub convex_objective: f64,
    /// Status of the convex solve.
    pub convex_status: Status,
    /// Neurons of the convex solution.
    pub convex_neurons: usize,
    /// Relative cone-constraint violation of the convex solution.
    pub convex_violation: f64,
    /// Solver used.
    pub solver: String,
    /// Conic status (conic solver only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub conic_status: Option<ConicStatus>,
    /// First-order iterations.
    pub iterations: usize,
    /// Patterns in the program (the network's own included).
    pub patterns: usize,
    /// Patterns of the network's neurons that were not already among the chosen ones.
    pub network_patterns_added: usize,
    /// Hidden neurons of the given network.
    pub neurons: usize,
    /// Regularization strength.
    pub lambda: f64,
    /// Loss.
    pub loss: LossKind,
    /// Task.
    pub task: Task,
    /// Samples in the bound.
    pub n: usize,
    /// Columns of the design matrix.
    pub d: usize,
    /// Factor the regression targets were divided by.
    pub target_scale: f64,
    /// Wall-clock seconds.
    pub seconds: f64,
    /// The networks (architecture and regularizer) the lower bound holds for, in words, where
    /// that is not the dense two-layer ReLU network under weight decay (circular and
    /// three-layer CNNs: their programs are exact for their own architecture only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exact_for: Option<String>,
}

/// What a saved CNN model's `certify` computed (the network in the program's units and the
/// first-order solve), before the shared verdict of [`CertifyParts::report`].
pub(crate) struct CertifyParts {
    /// The network's own objective in the program's units.
    pub network_objective: f64,
    /// The same with every neuron optimally rescaled.
    pub balanced_objective: f64,
    /// The convex solve.
    pub solution: crate::solver::Solution,
    /// `global` or `sampled-patterns`.
    pub certificate: String,
    /// See [`CertifyReport::exact_for`].
    pub exact_for: Option<String>,
    /// Neurons (filters, channels) of the convex solution.
    pub convex_neurons: usize,
    /// Patterns in the program.
    pub patterns: usize,
    /// Of those, the network's own that were not among the chosen ones.
    pub network_patterns_added: usize,
    /// Neurons (filters, channels) of the given network.
    pub neurons: usize,
    /// Loss.
    pub loss: LossKind,
    /// Task.
    pub task: Task,
    /// Samples in the bound.
    pub n: usize,
    /// Columns of the program's data (patch length, signal length).
    pub d: usize,
    /// Factor the regression targets were divided by.
    pub target_scale: f64,
}

impl CertifyParts {
    /// The report: gap, relative gap and the verdict at `cfg.solver.tol` (first-order solver).
    pub(crate) fn report(self, cfg: &CertifyConfig, start: std::time::Instant) -> CertifyReport {
        let sol = self.solution;
        let rel = relative_gap(self.network_objective, sol.dual_bound);
        CertifyReport {
            network_objective: self.network_objective,
            balanced_objective: self.balanced_objective,
            lower_bound: sol.dual_bound,
            certificate: self.certificate,
            gap: self.network_objective - sol.dual_bound,
            relative_gap: rel,
            optimal: rel <= cfg.solver.tol,
            tol: cfg.solver.tol,
            convex_objective: sol.objective,
            convex_status: sol.status,
            convex_neurons: self.convex_neurons,
            convex_violation: sol.violation,
            solver: SolverChoice::FirstOrder.name().into(),
            conic_status: None,
            iterations: sol.iterations,
            patterns: self.patterns,
            network_patterns_added: self.network_patterns_added,
            neurons: self.neurons,
            lambda: cfg.lambda,
            loss: self.loss,
            task: self.task,
            n: self.n,
            d: self.d,
            target_scale: self.target_scale,
            seconds: start.elapsed().as_secs_f64(),
            exact_for: self.exact_for,
        }
    }
}

/// What every saved-CNN `certify` checks first: `lambda` finite and `> 0`, valid solver
/// settings, the first-order solver (the conic formulation is the dense one).
pub(crate) fn check_model_certify(cfg: &CertifyConfig) -> Result<()> {
    if !(cfg.lambda.is_finite() && cfg.lambda > 0.0) {
        return Err(CvxnnError::arg(
            "lambda",
            format!("must be a finite number > 0, got {}", cfg.lambda),
        ));
    }
    cfg.solver.validate()?;
    if cfg.solver_choice == SolverChoice::Conic {
        return Err(CvxnnError::arg(
            "solver",
            "the CNN models take the first-order solver",
        ));
    }
    Ok(())
}

/// The targets of a saved model's `certify` in the program's units: encoded with the model's
/// own `labels` (class order), the rows of the seeded split (`cfg.test_fraction`, `cfg.seed`:
/// the training run's values give its training rows) divided by the model's `target_scale`.
/// Returns the row indices and the targets.
pub(crate) fn model_targets(
    table: &Table,
    task: Task,
    labels: Option<&ClassLabels>,
    target_scale: f64,
    cfg: &CertifyConfig,
) -> Result<(Vec<usize>, Vec<f64>)> {
    if !(target_scale.is_finite() && target_scale > 0.0) {
        return Err(CvxnnError::arg(
            "model",
            format!("target scale must be > 0, got {target_scale}"),
        ));
    }
    let encoded = match (labels, task) {
        (Some(labels), Task::Binary | Task::Multiclass) => {
            let classes = labels.encode(&table.target)?;
            let labels = labels.clone();
            if task == Task::Binary {
                EncodedTarget::Binary { labels, classes }
            } else {
                EncodedTarget::Multiclass { labels, classes }
            }
        }
        _ => encode_target(task, &table.target)?,
    };
    let (idx, _) = train_test_split(table.features.nrows(), cfg.test_fraction, cfg.seed)?;
    let mut y = encoded.program_targets(&idx);
    y.iter_mut().for_each(|v| *v /= target_scale);
    Ok((idx, y))
}

/// The `chosen` patterns plus the network's `own` (one per unit; all-inactive ones skipped,
/// they contribute nothing), without duplicates. Returns them and how many of the network's
/// were not already chosen.
pub(crate) fn merge_patterns(
    chosen: &Masks,
    own: impl IntoIterator<Item = Vec<bool>>,
) -> (Masks, usize) {
    let mut set = PatternSet::new(chosen.n());
    for i in 0..chosen.len() {
        set.insert_words(chosen.pattern_words(i).to_vec());
    }
    let before = set.len();
    for active in own {
        if active.iter().any(|&a| a) {
            set.insert_bools(&active);
        }
    }
    let added = set.len() - before;
    (set.into_masks(), added)
}

/// Certifies `net` (on raw features, output in target units) on `table`: its objective, and a
/// lower bound on the optimum from the ReLU program over the chosen patterns plus the network's
/// own activation patterns. With `meta` (a cvxnn model directory) its preprocessing, task and
/// target scale are used; otherwise they are fitted on the (training part of the) data as `cfg`
/// says. The table's feature columns must be in the network's input order.
pub fn certify(
    table: &Table,
    net: &RawNetwork,
    meta: Option<&ModelMeta>,
    cfg: &CertifyConfig,
    progress: &mut dyn FnMut(&Progress),
) -> Result<CertifyReport> {
    let start = std::time::Instant::now();
    if !(cfg.lambda.is_finite() && cfg.lambda > 0.0) {
        return Err(CvxnnError::arg(
            "lambda",
            format!("must be a finite number > 0, got {}", cfg.lambda),
        ));
    }
    cfg.solver.validate()?;
    if net.gates.is_some() {
        return Err(CvxnnError::arg(
            "model",
            "certify handles ReLU networks; this one is a gated ReLU network",
        ));
    }
    if net.w1.ncols() != table.features.ncols() {
        return Err(CvxnnError::arg(
            "model",
            format!(
                "the network takes {} features, the data has {}",
                net.w1.ncols(),
                table.features.ncols()
            ),
        ));
    }
    let task = match meta {
        Some(m) => m.task,
        None => cfg.task.unwrap_or_else(|| Task::infer(&table.target)),
    };
    let encoded = match (meta.and_then(|m| m.labels.as_ref()), task) {
        // A model's own labels (class order) decide the encoding.
        (Some(labels), Task::Binary | Task::Multiclass) => {
            let classes = labels.encode(&table.target)?;
            let labels = labels.clone();
            if task == Task::Binary {
                EncodedTarget::Binary { labels, classes }
            } else {
                EncodedTarget::Multiclass { labels, classes }
            }
        }
        _ => encode_target(task, &table.target)?,
    };
    if task == Task::Multiclass {
        return Err(one_output_only("certify"));
    }
    let loss = task_loss(task, cfg.loss.or(meta.map(|m| m.loss)))?;
    let (idx, _) = train_test_split(table.features.nrows(), cfg.test_fraction, cfg.seed)?;
    let x_raw = table.features.select_rows(&idx);
    let mut y = encoded.program_targets(&idx);
    let (standardizer, bias, target_scale) = match meta {
        Some(m) => (m.standardizer.clone(), m.bias, m.target_scale),
        None => {
            let scale = target_scale(task, cfg.scale_target, &y);
            let std = if cfg.standardize {
                Standardizer::fit(&x_raw)
            } else {
                Standardizer::identity(x_raw.ncols())
            };
            (std, cfg.bias, scale)
        }
    };
    if !(target_scale.is_finite() && target_scale > 0.0) {
        return Err(CvxnnError::arg(
            "model",
            format!("target scale must be > 0, got {target_scale}"),
        ));
    }
    y.iter_mut().for_each(|v| *v /= target_scale);
    let x = design_matrix(&x_raw, &standardizer, bias)?;
    let mut network = net.to_network(&standardizer.mean, &standardizer.scale, bias)?;
    // The network predicts in target units; the programs work on targets / target_scale.
    network.alpha.iter_mut().for_each(|a| *a /= target_scale);
    let network_objective = network.objective(&x, &y, loss, cfg.lambda)?;
    let z = network.forward(&x)?;
    let balanced_penalty: f64 = (0..network.neurons())
        .map(|j| crate::linalg::norm2(network.hidden.col(j)) * network.alpha[j].abs())
        .sum();
    let balanced_objective = loss.value(&z, &y, 1) + cfg.lambda * balanced_penalty;

    let chosen = match &cfg.patterns {
        PatternSource::Adaptive { .. } | PatternSource::Auto { .. } => {
            return Err(CvxnnError::arg(
                "patterns",
                "certify takes exact or sampled patterns (adaptive and auto are for train)",
            ))
        }
        PatternSource::Sample(count) => sample_patterns(&x, *count, cfg.seed)?.masks,
        PatternSource::Gates(g) => patterns_from_gates(&x, g)?.masks,
        PatternSource::Exact { max_patterns } => exact_patterns(&x, *max_patterns)?,
    };
    let own = (0..network.neurons())
        .filter(|&j| network.alpha[j] != 0.0)
        .map(|j| {
            let xu = x.matvec(network.hidden.col(j));
            xu.iter().map(|&v| v >= 0.0).collect()
        });
    let (masks, added) = merge_patterns(&chosen, own);
    if masks.is_empty() {
        return Err(CvxnnError::arg(
            "patterns",
            "no activation pattern with an active sample",
        ));
    }
    let sol = solve_program(
        &x,
        &y,
        (1, OutputMode::Separate),
        &masks,
        loss,
        ModelKind::Relu,
        cfg.lambda,
        cfg.solver_choice,
        &cfg.solver,
        progress,
    )?;
    let convex_net = Network::from_convex(ModelKind::Relu, x.ncols(), &sol.x, None)?;
    let gap = network_objective - sol.dual_bound;
    let rel = relative_gap(network_objective, sol.dual_bound);
    Ok(CertifyReport {
        network_objective,
        balanced_objective,
        lower_bound: sol.dual_bound,
        certificate: certificate_name(&cfg.patterns).into(),
        gap,
        relative_gap: rel,
        optimal: rel <= cfg.solver.tol,
        tol: cfg.solver.tol,
        convex_objective: sol.objective,
        convex_status: sol.status,
        convex_neurons: convex_net.neurons(),
        convex_violation: sol.violation,
        solver: sol.solver.name().into(),
        conic_status: sol.conic_status,
        iterations: sol.iterations,
        patterns: masks.len(),
        network_patterns_added: added,
        neurons: network.neurons(),
        lambda: cfg.lambda,
        loss,
        task,
        n: x.nrows(),
        d: x.ncols(),
        target_scale,
        seconds: start.elapsed().as_secs_f64(),
        exact_for: None,
    })
}
