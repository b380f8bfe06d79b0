//! The linear-network pipeline on a table (DESIGN section 3, issue 8): split, preprocess, solve
//! the nuclear-norm program (proximal SVT or the exact SDP), rebuild the network from the SVD,
//! certify with the spectral-norm dual condition, report.
//!
//! Preprocessing: the dense model uses the estimator's (z-scored features unless turned off,
//! optional bias column, regression targets divided by their standard deviation); the linear
//! CNNs divide features by one global scale (largest absolute training value) as [`crate::conv`]
//! does, so that a filter sees the same map at every position, and add no bias.

use serde::{Deserialize, Serialize};

use crate::data::{encode_target, patches, ConvShape, Table, Task};
use crate::error::{CvxnnError, Result};
use crate::estimator::{design_matrix, prepare_training_data};
use crate::linalg::Matrix;
use crate::loss::LossKind;
use crate::metrics::{regression_metrics, Metrics};
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
    Ok((net, report))
}

/// Row-major little-endian `f64` bytes of `m` (PyTorch's layout).
fn tensor_bytes(m: &Matrix) -> Vec<u8> {
    (0..m.nrows())
        .flat_map(|i| (0..m.ncols()).map(move |j| (i, j)))
        .flat_map(|(i, j)| m.get(i, j).to_le_bytes())
        .collect()
}

/// The PyTorch module and tensors (`name`, shape, row-major bytes) of a rebuilt network, or
/// `None` for the circular CNN (its patches are a flipped convolution; not exported yet).
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
        LinearArch::Circular => None,
    }
}

/// Writes `report.json` and (except for the circular CNN) `model.safetensors` with PyTorch
/// names into `dir`, and returns the PyTorch module the weights belong to. The weights act on
/// preprocessed inputs (the report says how: the dense model's standardization is the
/// estimator's, the CNNs' features are divided by the training maximum); regression outputs
/// are in target units divided by the target scale.
pub fn save(
    dir: &std::path::Path,
    cfg: &LinearTrainConfig,
    net: &LinearNetwork,
    report: &LinearReport,
) -> Result<Option<String>> {
    let io = |e: std::io::Error| CvxnnError::Model {
        path: dir.into(),
        message: e.to_string(),
    };
    std::fs::create_dir_all(dir).map_err(io)?;
    let json = serde_json::to_string_pretty(report).map_err(|e| CvxnnError::Model {
        path: dir.into(),
        message: e.to_string(),
    })?;
    std::fs::write(dir.join("report.json"), json).map_err(io)?;
    let dense_bias = cfg.arch == LinearArch::Dense && cfg.bias;
    let Some((module, tensors)) = torch_tensors(&cfg.arch, net, dense_bias) else {
        return Ok(None);
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
    std::fs::write(&path, bytes).map_err(io)?;
    Ok(Some(module))
}
