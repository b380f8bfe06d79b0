//! Command-line arguments.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};
use cvxnn::path::LambdaGrid;

/// Train ReLU networks to their global optimum by solving the convex programs they are
/// equivalent to, and certify how far any network is from optimal.
#[derive(Parser, Debug)]
#[command(name = "cvxnn", version, about, long_about = None)]
pub struct Cli {
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// Subcommands.
#[derive(Subcommand, Debug)]
pub enum Command {
    /// Train a two-layer network through its convex program and report the certificate.
    Train(Box<TrainArgs>),
    /// Apply a trained model to a CSV file of raw features.
    Predict(PredictArgs),
    /// Show what a model directory holds.
    Info(InfoArgs),
    /// How far a two-layer ReLU network (a cvxnn model directory or PyTorch-named safetensors) is
    /// from the global optimum of its training problem.
    Certify(CertifyArgs),
    /// Train the same two-layer ReLU network directly by Adam or SGD (the non-convex problem, no
    /// certificate), with `train`'s preprocessing and model files: the baseline to compare with.
    Baseline(crate::baseline::BaselineArgs),
    /// Solve over a log-spaced lambda grid (warm starts), report each lambda's objective, gap,
    /// neurons and train/validation/test metrics, recommend the lambda with the best validation
    /// score, and plot the path (path.json, path.svg).
    Path(PathArgs),
}

/// `--patterns`: a number of sampled patterns, `exact`, or `adaptive`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PatternsArg {
    /// This many sampled gates (duplicates dropped).
    Sample(usize),
    /// Every pattern of the hyperplane arrangement.
    Exact,
    /// Column generation driven by the dual oracle.
    Adaptive,
    /// Exact when the data has few patterns, else adaptive (ReLU); 500 sampled (gated ReLU).
    Auto,
}

/// Parses `exact`, `adaptive` or a positive integer.
pub fn parse_patterns(s: &str) -> Result<PatternsArg, String> {
    if s.eq_ignore_ascii_case("exact") {
        return Ok(PatternsArg::Exact);
    }
    if s.eq_ignore_ascii_case("adaptive") {
        return Ok(PatternsArg::Adaptive);
    }
    if s.eq_ignore_ascii_case("auto") {
        return Ok(PatternsArg::Auto);
    }
    match s.parse::<usize>() {
        Ok(0) => Err("must be at least 1 (or `exact`, `adaptive`, `auto`)".into()),
        Ok(n) => Ok(PatternsArg::Sample(n)),
        Err(_) => Err(format!(
            "expected a number of patterns, `exact`, `adaptive` or `auto`, got `{s}`"
        )),
    }
}

/// `--outputs`: how a multiclass network's neurons feed its outputs.
#[derive(ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum OutputsArg {
    /// Each neuron feeds one class output (exact convex program, ReLU and gated ReLU).
    Separate,
    /// Every neuron feeds all class outputs (gated ReLU: exact nuclear-norm program).
    Shared,
}

/// `--round-solver`.
#[derive(ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum RoundSolverArg {
    /// New neurons from the oracle, then Adam on the network.
    Gradient,
    /// The convex program over the working set.
    Convex,
}

/// `--init`: a built-in warm start for column generation.
#[derive(ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum InitArg {
    /// Train the non-convex network by full-batch Adam first (see --init-epochs, --init-width).
    Sgd,
}

/// Which solver runs the convex program.
#[derive(ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum SolverArg {
    /// Conic for small ReLU programs (samples x patterns x features <= 2e4), first-order otherwise.
    Auto,
    /// R-FISTA / augmented Lagrangian.
    FirstOrder,
    /// Clarabel interior point (the dual bound from a warm-started first-order solve).
    Conic,
}

/// Precision of the first-order iterations' dense products.
#[derive(ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum PrecisionArg {
    /// Double precision throughout.
    F64,
    /// Gated ReLU only: single-precision products until rounding stops the line search, then
    /// double precision to --tol; the reported gap is always computed in f64.
    F32,
}

/// The prediction task.
#[derive(ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum TaskArg {
    /// Numeric target: binary for exactly two values, else regression; labels: binary for two,
    /// multiclass for more.
    Auto,
    /// Real-valued target.
    Regression,
    /// Two labels (any strings), mapped in sorted order (numeric when both are numbers) to -1
    /// and +1.
    Binary,
    /// Two or more class labels (one output per class).
    Multiclass,
}

/// The convex program.
#[derive(ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum ModelArg {
    /// Exact cone-constrained program of the ReLU network (augmented Lagrangian).
    Relu,
    /// Gated ReLU: group lasso over fixed gates (R-FISTA).
    GatedRelu,
    /// Two-layer CNN (convolution, ReLU, global sum pooling, linear), exact cone-constrained
    /// program over the patterns of the patch matrix (needs --kernel, and --input-shape unless
    /// a .npy --data gives it; not for `path`).
    CnnRelu,
    /// Gated-ReLU CNN: group lasso over gates in R^h applied to every patch.
    CnnGatedRelu,
    /// Two-layer linear network (c >= 1 outputs): nuclear-norm program, exact (train only;
    /// --solver conic: the SDP with the PSD cone, squared loss).
    Linear,
    /// Linear CNN (convolution, no activation, then --pool none|avg and a linear output; or
    /// --circular): nuclear-norm program over the patches (train only).
    LinearCnn,
    /// Circular CNN with one ReLU layer (full-length circular filter, readout, ReLU, linear):
    /// exact cone-constrained Fourier-L1 program (train, predict; needs --input-shape 1,L).
    CircularCnn,
    /// Linear circular CNN (circular filter, readout): exact Fourier-L1 program (train, predict;
    /// needs --input-shape 1,L).
    CircularLinearCnn,
    /// Three-layer CNN with two ReLU layers (convolution, ReLU, sum pooling, linear, ReLU,
    /// linear) and the path penalty: exact cone-constrained program over first-layer patterns of
    /// the patch matrix and second-layer sample patterns (docs/theory.md; train and predict).
    Cnn3Relu,
}

/// `--pool`: `none` and `avg` (global) for `--model linear-cnn`; `none` (the default global sum
/// pooling), `avg:S` and `max:S` (local windows of size and stride `S`) for `--model cnn-relu`
/// and `cnn-gated-relu`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PoolArg {
    /// No local pooling: linear-cnn's fully connected output; the CNNs' global sum pooling.
    None,
    /// Global average pooling, then a linear output (linear-cnn).
    Avg,
    /// Local average or max pooling (`avg:S`, `max:S`).
    Local(cvxnn::data::Pooling),
}

impl PoolArg {
    /// Parses `none`, `avg`, `avg:S` or `max:S`.
    pub fn parse(s: &str) -> std::result::Result<PoolArg, String> {
        match s.trim() {
            "none" => Ok(PoolArg::None),
            "avg" => Ok(PoolArg::Avg),
            t => cvxnn::data::Pooling::parse(t)
                .map(PoolArg::Local)
                .map_err(|_| format!("`{s}` is not none, avg, avg:S or max:S (S >= 1)")),
        }
    }
}

/// The data-fit term.
#[derive(ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum LossArg {
    /// (prediction - y)^2 / 2.
    Squared,
    /// log(1 + exp(-y prediction)), labels ±1.
    Logistic,
    /// Softmax cross-entropy over the classes (multiclass; the default there).
    CrossEntropy,
}

/// `--lambda`: a value, or `auto` (chosen on a validation split by the regularization path).
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum LambdaArg {
    /// This lambda (its domain is checked by the library, naming `lambda`).
    Value(f64),
    /// The path's recommended lambda.
    Auto,
}

/// Parses `auto` or a number.
pub fn parse_lambda(s: &str) -> Result<LambdaArg, String> {
    if s.eq_ignore_ascii_case("auto") {
        return Ok(LambdaArg::Auto);
    }
    s.parse::<f64>()
        .map(LambdaArg::Value)
        .map_err(|_| format!("expected a number > 0 or `auto`, got `{s}`"))
}

/// Parses `--lambdas hi:lo:count`; the message names `lambdas`.
pub fn parse_lambdas(s: &str) -> Result<LambdaGrid, String> {
    s.parse::<LambdaGrid>().map_err(|e| e.to_string())
}

/// Data, task and preprocessing (shared by `train` and `path`).
#[derive(Args, Debug)]
pub struct DataArgs {
    /// CSV file with a header row (numeric features and a target column), or a .npy array of
    /// shape (n, C, H, W), (n, C, L) or (n, features) (float or integer; a CNN's --input-shape
    /// is then inferred from it).
    #[arg(long)]
    pub data: PathBuf,
    /// Name of the target column; with a .npy --data, the targets file: a .npy array of shape
    /// (n) or (n, 1), or a CSV with a `y` column (or a single column).
    #[arg(long, default_value = "y")]
    pub target: String,
    /// Prediction task.
    #[arg(long, value_enum, default_value_t = TaskArg::Auto)]
    pub task: TaskArg,
    /// Loss (default: squared for regression, logistic for binary, cross-entropy for
    /// multiclass).
    #[arg(long, value_enum)]
    pub loss: Option<LossArg>,
    /// Do not z-score the features.
    #[arg(long)]
    pub no_standardize: bool,
    /// Do not append a bias column (no hidden biases).
    #[arg(long)]
    pub no_bias: bool,
    /// Regression: solve on the raw targets instead of targets divided by their standard
    /// deviation (the default makes lambda comparable across data sets).
    #[arg(long)]
    pub no_scale_target: bool,
    /// Fraction of samples held out for testing, in [0, 1).
    #[arg(long, default_value_t = 0.2, allow_hyphen_values = true)]
    pub test_fraction: f64,
    /// Seed of every random choice (split, gates).
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
}

/// The convex program, its patterns and its solver (shared by `train` and `path`).
#[derive(Args, Debug)]
pub struct SolveArgs {
    /// Convex program to solve.
    #[arg(long, value_enum, default_value_t = ModelArg::Relu)]
    pub model: ModelArg,
    /// Multiclass: `separate` (each hidden neuron feeds one class output) or `shared` (every
    /// neuron feeds all outputs; gated ReLU's program is then a nuclear norm per pattern).
    #[arg(long, value_enum, default_value_t = OutputsArg::Separate)]
    pub outputs: OutputsArg,
    /// Number of sampled activation patterns (seeded Gaussian gates, duplicates dropped),
    /// `exact` for every pattern of the data's hyperplane arrangement (global certificate), or
    /// `adaptive` (train only): column generation, adding the patterns the dual oracle finds
    /// violated; `auto` (default): exact when the predicted count is at most 2000, else
    /// adaptive for train (100 sampled for the path) with ReLU, and 500 sampled for gated ReLU.
    #[arg(long, default_value = "auto", value_parser = parse_patterns, allow_hyphen_values = true)]
    pub patterns: PatternsArg,
    /// With --patterns exact: refuse when the predicted pattern count exceeds this.
    #[arg(long, default_value_t = 100_000)]
    pub max_patterns: usize,
    /// Solver of the convex program.
    #[arg(long, value_enum, default_value_t = SolverArg::Auto)]
    pub solver: SolverArg,
    /// Exact gate vectors instead of sampling: CSV without header (one gate per row, one value
    /// per feature column after standardization and bias) or .npy of shape (P, d).
    #[arg(long, conflicts_with = "patterns")]
    pub gates: Option<PathBuf>,
    /// Target relative duality gap (and relative constraint violation).
    #[arg(long, default_value_t = 1e-6, allow_hyphen_values = true)]
    pub tol: f64,
    /// Maximum number of first-order iterations (per lambda for the path).
    #[arg(long, default_value_t = 100_000)]
    pub max_iter: usize,
    /// Precision of the first-order iterations' dense products.
    #[arg(long, value_enum, default_value_t = PrecisionArg::F64)]
    pub precision: PrecisionArg,
}

/// The lambda grid of the regularization path (`path`, and `train --lambda auto`).
#[derive(Args, Debug)]
pub struct GridArgs {
    /// Lambda grid `hi:lo:count` (log-spaced, e.g. 1e-1:1e-5:20); default: 20 values from
    /// lambda_max (the smallest lambda with the zero network optimal) down to lambda_max * 1e-4.
    #[arg(long, value_parser = parse_lambdas, allow_hyphen_values = true, value_name = "HI:LO:COUNT")]
    pub lambdas: Option<LambdaGrid>,
    /// Fraction of the training split held out (seeded) to choose lambda, in (0, 1).
    #[arg(long, default_value_t = 0.2, allow_hyphen_values = true)]
    pub validation_fraction: f64,
}

/// `cvxnn train`.
#[derive(Args, Debug)]
pub struct TrainArgs {
    /// Data and preprocessing.
    #[command(flatten)]
    pub input: DataArgs,
    /// Program and solver.
    #[command(flatten)]
    pub program: SolveArgs,
    /// Weight-decay strength lambda (> 0), objective scaled as (1/n) sum loss + lambda * penalty;
    /// `auto`: the regularization path on the training split (a validation split carved from
    /// it, see --lambdas, --validation-fraction) picks it.
    #[arg(long, default_value = "1e-3", value_parser = parse_lambda, allow_hyphen_values = true)]
    pub lambda: LambdaArg,
    /// With --lambda auto: the grid and the validation split.
    #[command(flatten)]
    pub grid: GridArgs,
    /// With --patterns adaptive: sampled patterns to start from.
    #[arg(long, default_value_t = 16)]
    pub initial_patterns: usize,
    /// With --patterns adaptive: most rounds (ask the oracle, then re-optimize).
    #[arg(long, default_value_t = 30)]
    pub rounds: usize,
    /// With --patterns adaptive: what re-optimizes after each oracle call: `gradient` (the
    /// oracle's directions join the network as new neurons, then full-batch Adam) or `convex`
    /// (the convex program over the working set, augmented Lagrangian).
    #[arg(long, value_enum, default_value_t = RoundSolverArg::Gradient)]
    pub round_solver: RoundSolverArg,
    /// With --round-solver gradient: Adam epochs per round.
    #[arg(long, default_value_t = 500)]
    pub round_epochs: usize,
    /// With --round-solver gradient: Adam learning rate.
    #[arg(long, default_value_t = 1e-3, allow_hyphen_values = true)]
    pub round_lr: f64,
    /// With --patterns adaptive: most violated patterns added per round.
    #[arg(long, default_value_t = 16)]
    pub batch: usize,
    /// With --round-solver convex: first-order iterations per round.
    #[arg(long, default_value_t = 500)]
    pub round_iter: usize,
    /// With --patterns adaptive: first-order iterations of the final solve on the last working
    /// set (tightens the gap over those patterns).
    #[arg(long, default_value_t = 100)]
    pub final_iter: usize,
    /// With --patterns adaptive: oracle starts (random directions and data rows; each used with
    /// both signs).
    #[arg(long, default_value_t = 512)]
    pub oracle_starts: usize,
    /// With --patterns adaptive: start from this network (safetensors in PyTorch naming on raw
    /// features, e.g. a cvxnn or PyTorch model); its activation patterns join the program, so
    /// the result is no worse than it.
    #[arg(long, conflicts_with = "init")]
    pub init_network: Option<PathBuf>,
    /// With --patterns adaptive (dense ReLU) or --model cnn-relu: built-in warm start (`sgd`: a
    /// short full-batch Adam run on the network, whose activation patterns join the program
    /// and whose weights start the solver).
    #[arg(long, value_enum)]
    pub init: Option<InitArg>,
    /// With --init sgd: hidden width of the warm-start network.
    #[arg(long, default_value_t = 50)]
    pub init_width: usize,
    /// With --init sgd: full-batch Adam epochs.
    #[arg(long, default_value_t = 2000)]
    pub init_epochs: usize,
    /// With --init sgd: Adam learning rate.
    #[arg(long, default_value_t = 1e-2, allow_hyphen_values = true)]
    pub init_lr: f64,
    /// Directory for model.json, model.safetensors and report.json.
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// Replace model files that already exist in --out.
    #[arg(long)]
    pub force: bool,
    /// Also print the report as JSON on stdout (the summary then goes to stderr).
    #[arg(long)]
    pub json: bool,
    /// No progress bar.
    #[arg(long, short)]
    pub quiet: bool,
    /// For gated-relu: also rebuild a ReLU network by cone decomposition and report its objective.
    #[arg(long)]
    pub decompose: bool,
    /// CNN models: shape of each sample, `C,H,W` (images) or `C,L` (signals); the feature
    /// columns hold it row-major.
    #[arg(long, value_name = "C,H,W")]
    pub input_shape: Option<String>,
    /// CNN models: kernel size, `3x3` (or `3` for a square kernel / a 1-D input).
    #[arg(long)]
    pub kernel: Option<String>,
    /// CNN models: stride.
    #[arg(long, default_value_t = 1)]
    pub stride: usize,
    /// CNN models: zero padding on every side.
    #[arg(long, default_value_t = 0)]
    pub padding: usize,
    /// Pooling before the output layer: none|avg for --model linear-cnn (none: fully connected,
    /// avg: global average); none (global sum pooling), avg:S or max:S (local windows of size
    /// and stride S; max:S with cnn-relu only) for --model cnn-relu|cnn-gated-relu.
    #[arg(long, value_parser = PoolArg::parse, default_value = "none")]
    pub pool: PoolArg,
    /// --model linear-cnn: circular convolution with filters as long as the signal (C,L inputs
    /// with C = 1; --kernel, --stride, --padding and --pool do not apply).
    #[arg(long)]
    pub circular: bool,
    /// cnn3-relu: second-layer (sample) patterns, a count N (all-ones, the binary target signs,
    /// then seeded samples) or `exact` (all 2^n - 1; tiny data only).
    #[arg(long, default_value = "20", value_name = "N|exact")]
    pub second_layer_patterns: String,
}

/// `cvxnn path`.
#[derive(Args, Debug)]
pub struct PathArgs {
    /// Data and preprocessing.
    #[command(flatten)]
    pub input: DataArgs,
    /// Program and solver.
    #[command(flatten)]
    pub program: SolveArgs,
    /// The grid and the validation split.
    #[command(flatten)]
    pub grid: GridArgs,
    /// Solve every lambda from zero instead of from the previous solution (to measure what warm
    /// starts save).
    #[arg(long)]
    pub cold: bool,
    /// CNN models: shape of each sample, `C,H,W` or `C,L` (inferred from a .npy --data).
    #[arg(long, value_name = "C,H,W")]
    pub input_shape: Option<String>,
    /// CNN models: kernel size, `3x3` (or `3`).
    #[arg(long)]
    pub kernel: Option<String>,
    /// CNN models: stride.
    #[arg(long, default_value_t = 1)]
    pub stride: usize,
    /// CNN models: zero padding on every side.
    #[arg(long, default_value_t = 0)]
    pub padding: usize,
    /// Directory for path.json and path.svg.
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// Replace path.json and path.svg if they exist in --out.
    #[arg(long)]
    pub force: bool,
    /// Also print path.json on stdout (the table then goes to stderr).
    #[arg(long)]
    pub json: bool,
    /// No progress line.
    #[arg(long, short)]
    pub quiet: bool,
}

/// `cvxnn predict`.
#[derive(Args, Debug)]
pub struct PredictArgs {
    /// Model directory written by `cvxnn train --out`.
    #[arg(long)]
    pub model: PathBuf,
    /// CSV file with the model's feature columns (the target column may be present), or a .npy
    /// array of samples (n, C, H, W), (n, C, L) or (n, features).
    #[arg(long)]
    pub data: PathBuf,
    /// Write predictions to this CSV file instead of stdout.
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// Replace --out if it exists.
    #[arg(long)]
    pub force: bool,
}

/// `cvxnn info`.
#[derive(Args, Debug)]
pub struct InfoArgs {
    /// Model directory written by `cvxnn train --out`.
    #[arg(long)]
    pub model: PathBuf,
}

/// `cvxnn certify`.
#[derive(Args, Debug)]
pub struct CertifyArgs {
    /// Model directory written by `cvxnn train --out` (its preprocessing is used; CNN models
    /// are certified by their directory), its model.safetensors, or any safetensors file with `0.weight` (m, p), `0.bias` (m) and
    /// `2.weight` (1, m) acting on raw features (preprocessing from the flags, fitted on --data).
    #[arg(long)]
    pub model: PathBuf,
    /// CSV file with a header row (the network's features and the target column), or a .npy
    /// array of samples with the targets file in --target.
    #[arg(long)]
    pub data: PathBuf,
    /// Weight-decay strength lambda (> 0) of the training problem.
    #[arg(long, allow_hyphen_values = true)]
    pub lambda: f64,
    /// Name of the target column (a model directory's own target by default); with a .npy
    /// --data, the targets file (.npy of shape (n) or a CSV column).
    #[arg(long)]
    pub target: Option<String>,
    /// Prediction task (ignored for a model directory).
    #[arg(long, value_enum, default_value_t = TaskArg::Auto)]
    pub task: TaskArg,
    /// Loss (default: the model directory's, else squared for regression, logistic for binary).
    #[arg(long, value_enum)]
    pub loss: Option<LossArg>,
    /// Patterns of the lower bound: `exact` (global) or a number of sampled patterns; the
    /// network's own activation patterns are always added.
    #[arg(long, default_value = "exact", value_parser = parse_patterns, allow_hyphen_values = true)]
    pub patterns: PatternsArg,
    /// With --patterns exact: refuse when the predicted pattern count exceeds this.
    #[arg(long, default_value_t = 100_000)]
    pub max_patterns: usize,
    /// cnn3-relu models: second-layer (sample) patterns of the bound, a count N or `exact`
    /// (all 2^n - 1; the default for n <= 14 samples, else 20 sampled); the network's own are
    /// always added.
    #[arg(long, value_name = "N|exact")]
    pub second_layer_patterns: Option<String>,
    /// Solver of the convex program.
    #[arg(long, value_enum, default_value_t = SolverArg::Auto)]
    pub solver: SolverArg,
    /// Do not z-score the features (bare safetensors only).
    #[arg(long)]
    pub no_standardize: bool,
    /// No bias column (bare safetensors only; the network must have zero hidden biases).
    #[arg(long)]
    pub no_bias: bool,
    /// Regression: do not divide the targets by their standard deviation (bare safetensors only).
    #[arg(long)]
    pub no_scale_target: bool,
    /// Fraction of samples left out, in [0, 1) (use the training run's value and --seed to
    /// certify on its training split).
    #[arg(long, default_value_t = 0.0, allow_hyphen_values = true)]
    pub test_fraction: f64,
    /// Seed (split, sampled patterns).
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Relative gap under which the network counts as optimal; also the solver's tolerance.
    #[arg(long, default_value_t = 1e-6, allow_hyphen_values = true)]
    pub tol: f64,
    /// Maximum number of first-order iterations.
    #[arg(long, default_value_t = 100_000)]
    pub max_iter: usize,
    /// Print the result as JSON on stdout (the summary then goes to stderr).
    #[arg(long)]
    pub json: bool,
    /// No progress bar.
    #[arg(long, short)]
    pub quiet: bool,
}
