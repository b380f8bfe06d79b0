//! The linear-network pipeline on a table (DESIGN section 3, issue 8): split, preprocess, solve
//! the nuclear-norm program (proximal SVT or the exact SDP), rebuild the network from the SVD,
//! certify with the spectral-norm dual condition, report.
//!
//! Preprocessing: the dense model uses the estimator's (z-scored features unless turned off,
//! optional bias column, regression targets divided by their standard deviation); the linear
//! CNNs divide features by one global scale (largest absolute training value) as [`crate::conv`]
//! does, so that a filter sees the same map at every position, and add no bias.

use serde::{Deserialize, Serialize};

use crate::data::{
    argmax_classes, binary_class, binary_targets, encode_target, one_hot, patches, ClassLabels,
    ConvShape, Standardizer, Table, TargetColumn, Task,
};
use crate::error::{CvxnnError, Result};
use crate::estimator::{design_matrix, prepare_training_data};
use crate::linalg::Matrix;
use crate::loss::LossKind;
use crate::metrics::{classification_metrics, regression_metrics, Metrics};
use crate::program::{LinearNetwork, LinearPool, LinearProgram};
use crate::solver::conic::ConicSettings;
use crate::solver::{relative_gap, Progress, SolverSettings};

/// Which linear network.
#[derive(Clone, Debug, PartialEq)]
pub enum LinearArch {
    /// `Linear(d, m) -> Linear(m, c)`.
    Dense,
    /// Linear convolution (no activation), then a fully connected output (`pool = None`) or
    /// global average pooling and a linear output.
    Conv {
        /// Input and kernel shape.
        shape: ConvShape,
        /// Pooling.
        pool: LinearPool,
    },
    /// Circular convolution with filters of the signal's length, fully connected output.
    Circular,
}

/// How the program is solved.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum LinearSolver {
    /// R-FISTA with singular-value thresholding.
    Proximal,
    /// The SDP by Clarabel's PSD cone (squared loss).
    Sdp,
}

/// Everything [`train`] needs besides the data.
#[derive(Clone, Debug)]
pub struct LinearTrainConfig {
    /// Task; `None` infers it.
    pub task: Option<Task>,
    /// Loss; `None`: squared (regression, multiclass one-hot) or logistic (binary).
    pub loss: Option<LossKind>,
    /// Regularization strength (> 0).
    pub lambda: f64,
    /// Architecture.
    pub arch: LinearArch,
    /// Solver.
    pub solver: LinearSolver,
    /// Dense model: z-score features.
    pub standardize: bool,
    /// Dense model: append a ones column (a first-layer bias).
    pub bias: bool,
    /// Divide regression targets by their standard deviation.
    pub scale_target: bool,
    /// Test fraction in `[0, 1)`.
    pub test_fraction: f64,
    /// Seed of the split.
    pub seed: u64,
    /// First-order settings (also the certificate's solve when the SDP runs).
    pub settings: SolverSettings,
    /// Interior-point settings.
    pub conic: ConicSettings,
}

/// What [`train`] reports.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct LinearReport {
    /// `linear`, `linear-cnn`, `linear-cnn-avg` or `linear-circular`.
    pub model: String,
    /// Solver used.
    pub solver: LinearSolver,
    /// Loss.
    pub loss: LossKind,
    /// Lambda.
    pub lambda: f64,
    /// Training / test samples.
    pub n_train: usize,
    /// Test samples.
    pub n_test: usize,
    /// Outputs `c`.
    pub outputs: usize,
    /// Filter length `h` and positions `K` (`Z` is `h x Kc`).
    pub rows: usize,
    /// Positions `K`.
    pub positions: usize,
    /// How the solve ended.
    pub status: String,
    /// Iterations (first-order or interior-point).
    pub iterations: usize,
    /// Seconds of the solve.
    pub seconds: f64,
    /// Convex objective.
    pub objective: f64,
    /// The rebuilt network's non-convex objective.
    pub network_objective: f64,
    /// `||Phi^T grad h||_2` at the solution (the dual condition is `<= lambda`).
    pub spectral_norm: f64,
    /// Certified lower bound.
    pub dual_bound: f64,
    /// `objective - dual_bound`.
    pub gap: f64,
    /// Relative gap.
    pub relative_gap: f64,
    /// Neurons (filters) of the rebuilt network (`rank Z`).
    pub width: usize,
    /// Train metrics (regression: in target units).
    pub train: Metrics,
    /// Test metrics.
    pub test: Option<Metrics>,
}

/// Features of the program for `arch` from preprocessed rows `x`.
fn program<'a>(
    arch: &LinearArch,
    x: &Matrix,
    y: &'a [f64],
    outputs: usize,
    loss: LossKind,
    lambda: f64,
) -> Result<LinearProgram<'a>> {
    match arch {
        LinearArch::Dense => LinearProgram::dense(x, y, outputs, loss, lambda),
        LinearArch::Conv { shape, pool } => {
            let xs = patches(x, shape, false)?;
            LinearProgram::conv(&xs, x.nrows(), *pool, y, outputs, loss, lambda)
        }
        LinearArch::Circular => LinearProgram::circular(x, y, outputs, loss, lambda),
    }
}

/// Predictions of `net` (program units) on preprocessed rows `x`.
fn predict(arch: &LinearArch, net: &LinearNetwork, x: &Matrix, outputs: usize) -> Result<Vec<f64>> {
    let y = vec![0.0; x.nrows() * outputs];
    // Any lambda: only the features are used.
    let loss = LossKind::Squared;
    let prog = program(arch, x, &y, outputs, loss, 1.0)?;
    net.predict(prog.features())
}

fn metrics(task: Task, pred: &[f64], truth: &[f64], outputs: usize, scale: f64) -> Metrics {
    match task {
        Task::Regression => {
            let p: Vec<f64> = pred.iter().map(|v| v * scale).collect();
            let t: Vec<f64> = truth.iter().map(|v| v * scale).collect();
            regression_metrics(&p, &t)
        }
        _ => {
            // Binary: sign; multiclass: argmax over the one-hot outputs.
            let n = truth.len() / outputs.max(1);
            let class = |v: &[f64], j: usize| -> usize {
                if outputs == 1 {
                    usize::from(v[j] > 0.0)
                } else {
                    (0..outputs)
                        .max_by(|&a, &b| v[a * n + j].total_cmp(&v[b * n + j]))
                        .unwrap_or(0)
                }
            };
            let hits = (0..n)
                .filter(|&j| class(pred, j) == class(truth, j))
                .count();
            Metrics {
                accuracy: Some(hits as f64 / n.max(1) as f64),
                ..Metrics::default()
            }
        }
    }
}

/// Trains a linear network on `table` (module docs).
pub fn train(
    table: &Table,
    cfg: &LinearTrainConfig,
    progress: &mut dyn FnMut(&Progress),
) -> Result<(LinearNetwork, LinearReport)> {
    let (net, report, _) = train_inner(table, cfg, progress)?;
    Ok((net, report))
}

/// The preprocessing a training run fitted (for `model.json`).
struct Fitted {
    task: Task,
    labels: Option<ClassLabels>,
    standardizer: Standardizer,
    feature_scale: f64,
    target_scale: f64,
}

fn train_inner(
    table: &Table,
    cfg: &LinearTrainConfig,
    progress: &mut dyn FnMut(&Progress),
) -> Result<(LinearNetwork, LinearReport, Fitted)> {
    let dense = cfg.arch == LinearArch::Dense;
    let data = prepare_training_data(
        table,
        cfg.task,
        cfg.loss,
        dense && cfg.standardize,
        dense && cfg.bias,
        cfg.scale_target,
        cfg.test_fraction,
        cfg.seed,
    )?;
    // The CNNs: one global scale (module docs).
    let scale = if dense {
        1.0
    } else {
        let m = data.x.as_slice().iter().fold(0.0f64, |a, v| a.max(v.abs()));
        if m > 0.0 {
            m
        } else {
            1.0
        }
    };
    let prep = |raw: &Matrix| -> Result<Matrix> {
        let x = design_matrix(raw, &data.standardizer, dense && cfg.bias)?;
        Ok(Matrix::from_fn(x.nrows(), x.ncols(), |i, j| {
            x.get(i, j) / scale
        }))
    };
    let x = prep(&data.x_train_raw)?;
    let (outputs, loss) = (data.outputs, data.loss);
    let prog = program(&cfg.arch, &x, &data.y_train, outputs, loss, cfg.lambda)?;
    let (z, status, iterations, seconds) = match cfg.solver {
        LinearSolver::Proximal => {
            let s = prog.solve(&cfg.settings, None, progress)?;
            (s.x, s.status.to_string(), s.iterations, s.seconds)
        }
        LinearSolver::Sdp => {
            let s = prog.solve_sdp(&cfg.conic)?;
            if !s.status.is_solved() {
                return Err(CvxnnError::arg(
                    "solver",
                    format!("the SDP did not solve: {:?}", s.status),
                ));
            }
            (
                s.z,
                format!("{:?}", s.status).to_lowercase(),
                s.iterations as usize,
                s.seconds,
            )
        }
    };
    let objective = prog.objective(&z)?;
    let (spectral_norm, dual_bound) = prog.certificate(&z)?;
    let net = prog.rebuild(&z)?;
    let network_objective = net.objective(prog.features(), &data.y_train, loss, cfg.lambda)?;
    let train_pred = net.predict(prog.features())?;
    let train = metrics(
        data.task,
        &train_pred,
        &data.y_train,
        outputs,
        data.target_scale,
    );
    let test = if data.test_idx.is_empty() {
        None
    } else {
        let xt = prep(&table.features.select_rows(&data.test_idx))?;
        let yt: Vec<f64> = encode_target(data.task, &table.target)?
            .program_targets(&data.test_idx)
            .iter()
            .map(|v| v / data.target_scale)
            .collect();
        let pt = predict(&cfg.arch, &net, &xt, outputs)?;
        Some(metrics(data.task, &pt, &yt, outputs, data.target_scale))
    };
    let model = match &cfg.arch {
        LinearArch::Dense => "linear",
        LinearArch::Conv {
            pool: LinearPool::None,
            ..
        } => "linear-cnn",
        LinearArch::Conv { .. } => "linear-cnn-avg",
        LinearArch::Circular => "linear-circular",
    };
    let report = LinearReport {
        model: model.into(),
        solver: cfg.solver,
        loss,
        lambda: cfg.lambda,
        n_train: x.nrows(),
        n_test: data.test_idx.len(),
        outputs,
        rows: prog.rows(),
        positions: prog.positions(),
        status,
        iterations,
        seconds,
        objective,
        network_objective,
        spectral_norm,
        dual_bound,
        gap: objective - dual_bound,
        relative_gap: relative_gap(objective, dual_bound),
        width: net.width(),
        train,
        test,
    };
    let fitted = Fitted {
        task: data.task,
        labels: data.labels.clone(),
        standardizer: data.standardizer.clone(),
        feature_scale: scale,
        target_scale: data.target_scale,
    };
    Ok((net, report, fitted))
}

/// Row-major little-endian `f64` bytes of `m` (PyTorch's layout).
fn tensor_bytes(m: &Matrix) -> Vec<u8> {
    (0..m.nrows())
        .flat_map(|i| (0..m.ncols()).map(move |j| (i, j)))
        .flat_map(|(i, j)| m.get(i, j).to_le_bytes())
        .collect()
}

/// The PyTorch module and tensors (`name`, shape, row-major bytes) of a rebuilt network.
#[allow(clippy::type_complexity)]
fn torch_tensors(
    arch: &LinearArch,
    net: &LinearNetwork,
    bias: bool,
) -> Option<(String, Vec<(String, Vec<usize>, Vec<u8>)>)> {
    let (m, c) = (net.width(), net.readout.nrows());
    let readout = (
        "{}.weight",
        vec![c, net.readout.ncols()],
        tensor_bytes(&net.readout),
    );
    match arch {
        LinearArch::Dense => {
            let h = net.filters.ncols();
            let d = if bias { h - 1 } else { h };
            let w = Matrix::from_fn(m, d, |i, j| net.filters.get(i, j));
            let mut t = vec![("0.weight".to_string(), vec![m, d], tensor_bytes(&w))];
            if bias {
                let b = Matrix::from_fn(m, 1, |i, _| net.filters.get(i, h - 1));
                t.push(("0.bias".to_string(), vec![m], tensor_bytes(&b)));
            }
            t.push(("1.weight".to_string(), readout.1, readout.2));
            Some((
                format!(
                    "Sequential(Linear({d}, {m}, bias={}), Linear({m}, {c}, bias=False))",
                    if bias { "True" } else { "False" }
                ),
                t,
            ))
        }
        LinearArch::Conv { shape, pool } => {
            let mut dims = vec![m, shape.channels];
            dims.extend(&shape.kernel);
            let conv = if shape.kernel.len() == 2 {
                "Conv2d"
            } else {
                "Conv1d"
            };
            let pool_mod = if shape.kernel.len() == 2 {
                "AdaptiveAvgPool2d(1)"
            } else {
                "AdaptiveAvgPool1d(1)"
            };
            let k = net.positions;
            let (module, idx) = match pool {
                LinearPool::None => (
                    format!("Sequential({conv}({}, {m}, {:?}, stride={}, padding={}, bias=False), Flatten(), Linear({}, {c}, bias=False))", shape.channels, shape.kernel, shape.stride, shape.padding, m * k),
                    2,
                ),
                LinearPool::Avg => (
                    format!("Sequential({conv}({}, {m}, {:?}, stride={}, padding={}, bias=False), {pool_mod}, Flatten(), Linear({m}, {c}, bias=False))", shape.channels, shape.kernel, shape.stride, shape.padding),
                    3,
                ),
            };
            Some((
                module,
                vec![
                    ("0.weight".to_string(), dims, tensor_bytes(&net.filters)),
                    (
                        readout.0.replace("{}", &idx.to_string()),
                        readout.1,
                        readout.2,
                    ),
                ],
            ))
        }
        LinearArch::Circular => {
            // Our patches are a flipped circular convolution; PyTorch's Conv1d correlates
            // (module docs of `torch_circular_index`), so the filter taps are re-indexed.
            let l = net.filters.ncols();
            let w = Matrix::from_fn(m, l, |i, k| net.filters.get(i, torch_circular_index(k, l)));
            Some((
                format!("Sequential(Conv1d(1, {m}, {l}, padding='same', padding_mode='circular', bias=False), Flatten(), Linear({}, {c}, bias=False))", m * l),
                vec![
                    ("0.weight".to_string(), vec![m, 1, l], tensor_bytes(&w)),
                    ("2.weight".to_string(), readout.1, readout.2),
                ],
            ))
        }
    }
}

/// Our filter tap `s` for PyTorch's weight index `k` of
/// `Conv1d(.., L, padding='same', padding_mode='circular')`, which computes
/// `out_t = sum_k W_k x_{(t + k - left) mod L}` with `left = (L-1)/2`, while our patches give
/// `out_t = sum_s u_s x_{(t - s) mod L}`: `W_k = u_{(left - k) mod L}`.
fn torch_circular_index(k: usize, len: usize) -> usize {
    let left = (len - 1) / 2;
    (left + len - k % len) % len
}

/// `architecture` in a linear model's `model.json`.
pub const ARCHITECTURE: &str = "linear-network";

/// `model.json` of a linear model: everything that maps raw feature rows to the inputs the
/// weights act on, and the outputs back to target units or labels.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct LinearMeta {
    /// cvxnn version that wrote the model.
    pub version: String,
    /// Always [`ARCHITECTURE`].
    pub architecture: String,
    /// `linear`, `linear-cnn`, `linear-cnn-avg` or `linear-circular`.
    pub model: String,
    /// Input and kernel shape of the non-circular CNNs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub shape: Option<ConvShape>,
    /// Task.
    pub task: Task,
    /// Loss.
    pub loss: LossKind,
    /// Regularization strength.
    pub lambda: f64,
    /// Solver used.
    pub solver: LinearSolver,
    /// Seed of the split.
    pub seed: u64,
    /// Dense model: features z-scored by `standardizer`.
    pub standardize: bool,
    /// Dense model: a ones column was appended (PyTorch's first-layer bias).
    pub bias: bool,
    /// Per-feature mean and scale (identity when `standardize` is off).
    pub standardizer: Standardizer,
    /// CNNs: features are divided by this (largest absolute training value); 1 for dense.
    pub feature_scale: f64,
    /// Factor the regression targets were divided by (1 otherwise).
    pub target_scale: f64,
    /// Raw feature names, in input order.
    pub feature_names: Vec<String>,
    /// Target column name.
    pub target: String,
    /// Class labels (binary: class 0 -> -1, class 1 -> +1; multiclass: one output each).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub labels: Option<ClassLabels>,
    /// Outputs `c`.
    pub outputs: usize,
    /// Neurons (filters) `m`.
    pub width: usize,
    /// Filter length `h` (input dimension for the dense model, with the bias column).
    pub rows: usize,
    /// Positions `K`.
    pub positions: usize,
    /// The PyTorch modules `model.safetensors` belongs to (on preprocessed inputs).
    pub torch_modules: String,
}

/// A saved linear model: metadata and the rebuilt network (program units).
#[derive(Clone, Debug, PartialEq)]
pub struct LinearModel {
    /// Metadata.
    pub meta: LinearMeta,
    /// The network on preprocessed inputs.
    pub network: LinearNetwork,
}

/// Whether `dir/model.json` holds a linear model.
pub fn is_linear_model(dir: &std::path::Path) -> bool {
    std::fs::read_to_string(dir.join("model.json"))
        .ok()
        .and_then(|t| serde_json::from_str::<serde_json::Value>(&t).ok())
        .is_some_and(|v| v["architecture"] == ARCHITECTURE)
}

/// Trains like [`train`] and also returns the model (metadata and network) to save or predict
/// with.
pub fn train_model(
    table: &Table,
    cfg: &LinearTrainConfig,
    progress: &mut dyn FnMut(&Progress),
) -> Result<(LinearModel, LinearReport)> {
    let (net, report, prep) = train_inner(table, cfg, progress)?;
    let dense_bias = cfg.arch == LinearArch::Dense && cfg.bias;
    // The saved weights act on the solver's inputs (unlike the ReLU models, no scale is folded
    // in), so the module text says how to prepare inputs and scale outputs.
    let module = torch_tensors(&cfg.arch, &net, dense_bias)
        .map(|(m, _)| {
            let inputs = if cfg.arch == LinearArch::Dense && cfg.standardize {
                "z-score the inputs with model.json `standardizer` (mean, scale)"
            } else {
                "divide the inputs by model.json `feature_scale`"
            };
            format!("{m} — {inputs}; multiply the outputs by `target_scale`")
        })
        .unwrap_or_default();
    let meta = LinearMeta {
        version: env!("CARGO_PKG_VERSION").to_string(),
        architecture: ARCHITECTURE.into(),
        model: report.model.clone(),
        shape: match &cfg.arch {
            LinearArch::Conv { shape, .. } => Some(shape.clone()),
            _ => None,
        },
        task: prep.task,
        loss: report.loss,
        lambda: cfg.lambda,
        solver: cfg.solver,
        seed: cfg.seed,
        standardize: cfg.arch == LinearArch::Dense && cfg.standardize,
        bias: dense_bias,
        standardizer: prep.standardizer,
        feature_scale: prep.feature_scale,
        target_scale: prep.target_scale,
        feature_names: table.feature_names.clone(),
        target: table.target_name.clone(),
        labels: prep.labels,
        outputs: report.outputs,
        width: net.width(),
        rows: report.rows,
        positions: report.positions,
        torch_modules: module,
    };
    Ok((LinearModel { meta, network: net }, report))
}

impl LinearModel {
    /// The architecture of `meta.model`.
    pub fn arch(&self) -> Result<LinearArch> {
        let m = &self.meta;
        let shape = || {
            m.shape.clone().ok_or_else(|| CvxnnError::Model {
                path: "model.json".into(),
                message: format!("model `{}` needs `shape`", m.model),
            })
        };
        match m.model.as_str() {
            "linear" => Ok(LinearArch::Dense),
            "linear-cnn" => Ok(LinearArch::Conv {
                shape: shape()?,
                pool: LinearPool::None,
            }),
            "linear-cnn-avg" => Ok(LinearArch::Conv {
                shape: shape()?,
                pool: LinearPool::Avg,
            }),
            "linear-circular" => Ok(LinearArch::Circular),
            other => Err(CvxnnError::Model {
                path: "model.json".into(),
                message: format!("unknown linear model `{other}`"),
            }),
        }
    }

    /// Raw rows -> the inputs the network acts on (standardize, bias column, feature scale).
    pub fn preprocess(&self, raw: &Matrix) -> Result<Matrix> {
        let m = &self.meta;
        if raw.ncols() != m.feature_names.len() {
            return Err(CvxnnError::arg(
                "data",
                format!(
                    "{} feature columns, the model takes {}",
                    raw.ncols(),
                    m.feature_names.len()
                ),
            ));
        }
        let x = design_matrix(raw, &m.standardizer, m.bias)?;
        let s = m.feature_scale;
        Ok(Matrix::from_fn(x.nrows(), x.ncols(), |i, j| {
            x.get(i, j) / s
        }))
    }

    /// Outputs in program units (`n x c`, column-major) on raw rows.
    pub fn decision_function(&self, raw: &Matrix) -> Result<Vec<f64>> {
        let x = self.preprocess(raw)?;
        predict(&self.arch()?, &self.network, &x, self.meta.outputs)
    }

    fn classes(&self, scores: &[f64], n: usize) -> Result<Vec<usize>> {
        if self.meta.outputs == 1 {
            Ok(scores.iter().map(|&s| binary_class(s)).collect())
        } else {
            argmax_classes(scores, n, self.meta.outputs)
        }
    }

    /// Predictions as text: values in target units (regression) or the original labels.
    pub fn predict_strings(&self, raw: &Matrix) -> Result<Vec<String>> {
        let scores = self.decision_function(raw)?;
        match &self.meta.labels {
            Some(l) if self.meta.task != Task::Regression => Ok(self
                .classes(&scores, raw.nrows())?
                .into_iter()
                .map(|k| l.decode(k).unwrap_or_default().to_string())
                .collect()),
            _ => Ok(scores
                .iter()
                .map(|v| (v * self.meta.target_scale).to_string())
                .collect()),
        }
    }

    /// Metrics against a target column (MSE and R^2 in target units, or accuracy and confusion).
    pub fn metrics(&self, raw: &Matrix, target: &TargetColumn) -> Result<Metrics> {
        let scores = self.decision_function(raw)?;
        match &self.meta.labels {
            Some(l) if self.meta.task != Task::Regression => {
                let truth = l.encode(target)?;
                let pred = self.classes(&scores, raw.nrows())?;
                Ok(classification_metrics(l.labels(), &truth, &pred))
            }
            _ => {
                let p: Vec<f64> = scores.iter().map(|v| v * self.meta.target_scale).collect();
                Ok(regression_metrics(&p, &target.values()?))
            }
        }
    }

    /// Program targets (`n x c`, column-major; regression divided by the target scale).
    fn program_targets(&self, target: &TargetColumn) -> Result<Vec<f64>> {
        match &self.meta.labels {
            Some(l) if self.meta.task != Task::Regression => {
                let k = l.encode(target)?;
                Ok(if self.meta.outputs == 1 {
                    binary_targets(&k)
                } else {
                    one_hot(&k, self.meta.outputs)
                })
            }
            _ => Ok(target
                .values()?
                .iter()
                .map(|v| v / self.meta.target_scale)
                .collect()),
        }
    }

    /// Certifies the saved network on `(raw, target)` at `lambda` (> 0): the network's
    /// non-convex objective (program units: the loss of the preprocessed targets plus
    /// `lambda/2 (||U||_F^2 + ||V||_F^2)`) and the dual bound of the spectral-norm condition at
    /// the dual point `grad h(network outputs)` (scaled to feasibility). The bound lower-bounds
    /// every network of this architecture (any width) on these rows and preprocessing.
    pub fn certify(
        &self,
        raw: &Matrix,
        target: &TargetColumn,
        lambda: f64,
    ) -> Result<LinearCertificate> {
        if !(lambda.is_finite() && lambda > 0.0) {
            return Err(CvxnnError::arg(
                "lambda",
                format!("must be a finite number > 0, got {lambda}"),
            ));
        }
        let x = self.preprocess(raw)?;
        let y = self.program_targets(target)?;
        let prog = program(
            &self.arch()?,
            &x,
            &y,
            self.meta.outputs,
            self.meta.loss,
            lambda,
        )?;
        let network_objective =
            self.network
                .objective(prog.features(), &y, self.meta.loss, lambda)?;
        let p = self.network.predict(prog.features())?;
        let (spectral_norm, dual_bound) = prog.certificate_at(&p)?;
        Ok(LinearCertificate {
            lambda,
            n: x.nrows(),
            network_objective,
            spectral_norm,
            dual_bound,
            gap: network_objective - dual_bound,
            relative_gap: relative_gap(network_objective, dual_bound),
        })
    }

    /// Writes `model.json` and `model.safetensors` (and `report.json`) into `dir`; existing
    /// files are kept unless `overwrite`.
    pub fn save(
        &self,
        dir: &std::path::Path,
        report: Option<&LinearReport>,
        overwrite: bool,
    ) -> Result<()> {
        if !overwrite {
            for f in crate::estimator::MODEL_FILES {
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
        let io = |e: std::io::Error| CvxnnError::io(dir, e);
        let json = |v: serde_json::Result<String>| {
            v.map_err(|e| CvxnnError::Model {
                path: dir.into(),
                message: e.to_string(),
            })
        };
        std::fs::create_dir_all(dir).map_err(io)?;
        let meta = json(serde_json::to_string_pretty(&self.meta))?;
        std::fs::write(dir.join("model.json"), meta).map_err(io)?;
        if let Some(r) = report {
            let r = json(serde_json::to_string_pretty(r))?;
            std::fs::write(dir.join("report.json"), r).map_err(io)?;
        }
        let arch = self.arch()?;
        let Some((_, tensors)) = torch_tensors(&arch, &self.network, self.meta.bias) else {
            return Ok(());
        };
        let path = dir.join("model.safetensors");
        let bad = |e: String| CvxnnError::Model {
            path: path.clone(),
            message: e,
        };
        let views = tensors
            .iter()
            .map(|(name, s, bytes)| {
                safetensors::tensor::TensorView::new(safetensors::Dtype::F64, s.clone(), bytes)
                    .map(|v| (name.clone(), v))
                    .map_err(|e| bad(e.to_string()))
            })
            .collect::<Result<Vec<_>>>()?;
        let mut info = std::collections::HashMap::new();
        info.insert("format".to_string(), "pt".to_string());
        let bytes = safetensors::serialize(views, Some(info)).map_err(|e| bad(e.to_string()))?;
        std::fs::write(&path, bytes).map_err(io)
    }

    /// Reads a model directory written by [`LinearModel::save`].
    pub fn load(dir: &std::path::Path) -> Result<LinearModel> {
        let meta_path = dir.join("model.json");
        let text =
            std::fs::read_to_string(&meta_path).map_err(|e| CvxnnError::io(&meta_path, e))?;
        let meta: LinearMeta = serde_json::from_str(&text).map_err(|e| CvxnnError::Model {
            path: meta_path.clone(),
            message: e.to_string(),
        })?;
        let path = dir.join("model.safetensors");
        let raw = std::fs::read(&path).map_err(|e| CvxnnError::io(&path, e))?;
        let bad = |message: String| CvxnnError::Model {
            path: path.clone(),
            message,
        };
        let st = safetensors::SafeTensors::deserialize(&raw)
            .map_err(|e| bad(format!("not a safetensors file: {e}")))?;
        let get = |name: &str, count: usize| -> Result<Vec<f64>> {
            let t = st
                .tensor(name)
                .map_err(|_| bad(format!("no tensor `{name}`")))?;
            let vals: Vec<f64> = match t.dtype() {
                safetensors::Dtype::F64 => t
                    .data()
                    .chunks_exact(8)
                    .map(|c| f64::from_le_bytes(c.try_into().unwrap_or([0; 8])))
                    .collect(),
                safetensors::Dtype::F32 => t
                    .data()
                    .chunks_exact(4)
                    .map(|c| f32::from_le_bytes(c.try_into().unwrap_or([0; 4])) as f64)
                    .collect(),
                other => return Err(bad(format!("tensor `{name}` has dtype {other:?}"))),
            };
            if vals.len() != count {
                return Err(bad(format!(
                    "tensor `{name}` has {} values, {count} expected",
                    vals.len()
                )));
            }
            Ok(vals)
        };
        let (m, h, k, c) = (meta.width, meta.rows, meta.positions, meta.outputs);
        if h == 0 || k == 0 || c == 0 || (meta.bias && h < 2) {
            return Err(CvxnnError::Model {
                path: meta_path,
                message: format!("bad shapes: rows {h}, positions {k}, outputs {c}"),
            });
        }
        let model = LinearModel {
            meta,
            network: LinearNetwork {
                filters: Matrix::zeros(0, 0),
                readout: Matrix::zeros(0, 0),
                positions: k,
            },
        };
        let arch = model.arch()?;
        let (filters, readout_name, readout_cols) = match &arch {
            LinearArch::Dense => {
                let d = if model.meta.bias { h - 1 } else { h };
                let w = get("0.weight", m * d)?;
                let b = if model.meta.bias {
                    get("0.bias", m)?
                } else {
                    Vec::new()
                };
                let f = Matrix::from_fn(m, h, |i, j| if j < d { w[i * d + j] } else { b[i] });
                (f, "1.weight", m)
            }
            LinearArch::Conv { pool, .. } => {
                let w = get("0.weight", m * h)?;
                let f = Matrix::from_fn(m, h, |i, j| w[i * h + j]);
                match pool {
                    LinearPool::None => (f, "2.weight", m * k),
                    LinearPool::Avg => (f, "3.weight", m),
                }
            }
            LinearArch::Circular => {
                let w = get("0.weight", m * h)?;
                let mut f = Matrix::zeros(m, h);
                for i in 0..m {
                    for t in 0..h {
                        f.set(i, torch_circular_index(t, h), w[i * h + t]);
                    }
                }
                (f, "2.weight", m * k)
            }
        };
        let r = get(readout_name, c * readout_cols)?;
        let readout = Matrix::from_fn(c, readout_cols, |i, j| r[i * readout_cols + j]);
        Ok(LinearModel {
            network: LinearNetwork {
                filters,
                readout,
                positions: k,
            },
            ..model
        })
    }
}

/// What [`LinearModel::certify`] reports.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct LinearCertificate {
    /// Lambda.
    pub lambda: f64,
    /// Rows.
    pub n: usize,
    /// The saved network's objective.
    pub network_objective: f64,
    /// `||Phi^T grad h||_2` at the network's outputs.
    pub spectral_norm: f64,
    /// Certified lower bound on the optimum.
    pub dual_bound: f64,
    /// `network_objective - dual_bound`.
    pub gap: f64,
    /// Relative gap.
    pub relative_gap: f64,
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The exported circular weights, run through PyTorch's `Conv1d(padding='same',
    /// padding_mode='circular')` semantics written out by hand, give the network's outputs.
    #[test]
    fn circular_export_matches_a_hand_written_torch_forward() {
        for len in [4usize, 5] {
            let (n, m, c) = (3, 2, 2);
            let x = Matrix::from_fn(n, len, |i, j| (1.3 * i as f64 + 0.7 * j as f64).sin());
            let net = LinearNetwork {
                filters: Matrix::from_fn(m, len, |i, j| (0.9 * i as f64 - 0.4 * j as f64).cos()),
                readout: Matrix::from_fn(c, m * len, |i, j| {
                    (0.3 * i as f64 + 0.2 * j as f64).sin()
                }),
                positions: len,
            };
            let want = predict(&LinearArch::Circular, &net, &x, c).expect("predict");
            let (_, tensors) = torch_tensors(&LinearArch::Circular, &net, false).expect("exported");
            let vals = |b: &[u8]| -> Vec<f64> {
                b.chunks_exact(8)
                    .map(|w| f64::from_le_bytes(w.try_into().expect("8 bytes")))
                    .collect()
            };
            let w = vals(&tensors[0].2);
            let a = vals(&tensors[1].2);
            assert_eq!(tensors[0].1, vec![m, 1, len]);
            assert_eq!(tensors[1].0, "2.weight");
            let left = (len - 1) / 2;
            for j in 0..n {
                // Conv1d with circular 'same' padding (cross-correlation), Flatten, Linear.
                let mut flat = vec![0.0; m * len];
                for i in 0..m {
                    for t in 0..len {
                        flat[i * len + t] = (0..len)
                            .map(|k| w[i * len + k] * x.get(j, (t + k + len - left) % len))
                            .sum();
                    }
                }
                for o in 0..c {
                    let got: f64 = (0..m * len).map(|q| a[o * m * len + q] * flat[q]).sum();
                    let exp = want[o * n + j];
                    assert!((got - exp).abs() <= 1e-12, "len {len}: {got} vs {exp}");
                }
            }
            // The index map is a bijection (load inverts it).
            let mut seen: Vec<usize> = (0..len).map(|k| torch_circular_index(k, len)).collect();
            seen.sort_unstable();
            assert_eq!(seen, (0..len).collect::<Vec<_>>());
        }
    }
}
