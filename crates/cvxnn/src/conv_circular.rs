//! The circular-CNN pipeline on a table (DESIGN section 2, "Circular CNNs"; `docs/theory.md`):
//! each row's features are one signal of length `L` (input shape `1,L`); train the circular CNN
//! with one ReLU layer ([`CircularReluProgram`]) or the linear one ([`CircularProgram`]), save it
//! in PyTorch naming, predict.
//!
//! **Preprocessing** as [`crate::conv`]: the features are divided by one global scale (the
//! largest absolute training value), which keeps a circular shift of the input a circular shift
//! of every feature (per-feature z-scoring would not); no bias. The scale is folded into the
//! saved readouts, the regression target scale into the output weights.
//!
//! **PyTorch.** `0.weight` `(m, 1, L)`: `Conv1d(1, m, L, padding='same', padding_mode='circular',
//! bias=False)` — PyTorch cross-correlates and pads `left = (L-1)/2` in front, so its weight is
//! the filter re-indexed, `W_k = h_{(left - k) mod L}`. ReLU model: `1.weight` `(m, 1, L)` for
//! `Conv1d(m, m, L, groups=m, bias=False)` (each channel's readout), then `ReLU()`, `Flatten()`,
//! `4.weight` `(1, m)` for `Linear(m, 1, bias=False)`. Linear model: `1.weight` `(1, m, L)` for
//! `Conv1d(m, 1, L, bias=False)`, then `Flatten()`.

use std::collections::HashMap;
use std::path::Path;

use safetensors::tensor::TensorView;
use safetensors::{Dtype, SafeTensors};
use serde::{Deserialize, Serialize};

use crate::conv::{check_input_columns, feature_scale, scaled, ShapeOwner};
use crate::data::{binary_class, ClassLabels, Table, TargetColumn, Task};
use crate::error::{CvxnnError, Result};
use crate::estimator::{
    certificate_name, check_model_certify, exact_patterns, merge_patterns, model_targets,
    prepare_training_data, task_loss, CertifyConfig, CertifyParts, CertifyReport, PatternSource,
};
use crate::linalg::Matrix;
use crate::loss::LossKind;
use crate::metrics::{classification_metrics, regression_metrics, Metrics};
use crate::patterns::sample_patterns;
use crate::program::{CircularCnn, CircularProgram, CircularReluCnn, CircularReluProgram};
use crate::solver::{relative_gap, Progress, SolverSettings, Status};

/// `architecture` of a circular-CNN `model.json`.
pub const ARCHITECTURE: &str = "circular-cnn";

/// Which circular CNN.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum CircularKind {
    /// One ReLU layer: `f(x) = sum_j w_j (<a_j, h_j ⊛ x>)_+`, `||h_j|| <= 1`, weight decay on
    /// `a`, `w` (cone-constrained Fourier-L1 program over activation patterns).
    Relu,
    /// Linear: `f(x) = sum_j <a_j, u_j ⊛ x>`, weight decay on `u`, `a` (Fourier-L1 program, no
    /// patterns).
    Linear,
}

impl std::fmt::Display for CircularKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            CircularKind::Relu => "circular-cnn",
            CircularKind::Linear => "circular-linear-cnn",
        })
    }
}

/// Everything [`train`] needs besides the data.
#[derive(Clone, Debug, PartialEq)]
pub struct CircularTrainConfig {
    /// Regression or binary; `None` infers it from the target. Multiclass is refused.
    pub task: Option<Task>,
    /// ReLU or linear.
    pub model: CircularKind,
    /// Data-fit term; `None`: squared for regression, logistic for binary.
    pub loss: Option<LossKind>,
    /// Regularization strength (> 0).
    pub lambda: f64,
    /// ReLU: `Sample(P)` (seeded gates in R^L) or `Exact`. Ignored by the linear model.
    pub patterns: PatternSource,
    /// Signal length `L` (the number of feature columns).
    pub len: usize,
    /// Regression: divide the targets by their training standard deviation.
    pub scale_target: bool,
    /// Fraction of samples held out for testing, in [0, 1).
    pub test_fraction: f64,
    /// Seed of the split and the gates.
    pub seed: u64,
    /// First-order solver settings.
    pub solver: SolverSettings,
}

/// `model.json` of a circular-CNN model.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct CircularMeta {
    /// cvxnn version that wrote the model.
    pub version: String,
    /// Always [`ARCHITECTURE`].
    pub architecture: String,
    /// ReLU or linear.
    pub model: CircularKind,
    /// Signal length `L` (input shape `1,L`).
    pub len: usize,
    /// Global feature scale the solve saw features divided by (folded into the readouts).
    pub feature_scale: f64,
    /// Task.
    pub task: Task,
    /// Loss.
    pub loss: LossKind,
    /// Regularization strength.
    pub lambda: f64,
    /// Seed.
    pub seed: u64,
    /// Patterns in the program (0 for the linear model).
    pub patterns: usize,
    /// Channels `m`.
    pub channels: usize,
    /// Raw feature names, in signal order.
    pub feature_names: Vec<String>,
    /// Target column name.
    pub target: String,
    /// Factor the regression targets were divided by (1 otherwise).
    pub target_scale: f64,
    /// Class labels of a binary task.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub labels: Option<ClassLabels>,
    /// The PyTorch modules that reproduce the predictions from `model.safetensors`.
    pub torch_modules: String,
}

/// `report.json` of a circular-CNN training run.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct CircularReport {
    /// Convex objective.
    pub objective: f64,
    /// Objective of the rebuilt network (equal up to the violation).
    pub network_objective: f64,
    /// Lower bound on the program's optimum.
    pub dual_bound: f64,
    /// `objective - dual_bound`.
    pub gap: f64,
    /// Relative gap.
    pub relative_gap: f64,
    /// `global` (linear model, or exact patterns) or `sampled-patterns`.
    pub certificate: String,
    /// Whether the program is exact for the architecture in `model.json` (true for both
    /// models; with sampled patterns the optimum is an upper bound, see `certificate`).
    pub exact: bool,
    /// Solver status.
    pub status: Status,
    /// First-order iterations.
    pub iterations: usize,
    /// Solve time.
    pub seconds: f64,
    /// Channels of the rebuilt network.
    pub channels: usize,
    /// Patterns (0 for the linear model).
    pub patterns: usize,
    /// Regularization strength.
    pub lambda: f64,
    /// Relative cone-constraint violation (0 for the linear model).
    pub violation: f64,
    /// Model (`circular-cnn` or `circular-linear-cnn`).
    pub model: String,
    /// Signal length `L`.
    pub len: usize,
    /// Training samples.
    pub n_train: usize,
    /// Test samples.
    pub n_test: usize,
    /// Target scale.
    pub target_scale: f64,
    /// Training metrics.
    pub train: Metrics,
    /// Test metrics (none without a test split).
    pub test: Option<Metrics>,
}

/// The network of a circular model, on raw features (scales folded in).
#[derive(Clone, Debug, PartialEq)]
pub enum CircularNetwork {
    /// One ReLU layer.
    Relu(CircularReluCnn),
    /// Linear.
    Linear(CircularCnn),
}

impl CircularNetwork {
    /// Outputs on signals (`n x L`).
    pub fn predict(&self, x: &Matrix) -> Result<Vec<f64>> {
        match self {
            CircularNetwork::Relu(n) => n.predict(x),
            CircularNetwork::Linear(n) => n.predict(x),
        }
    }

    /// Channels `m`.
    pub fn width(&self) -> usize {
        match self {
            CircularNetwork::Relu(n) => n.width(),
            CircularNetwork::Linear(n) => n.width(),
        }
    }
}

/// A trained circular CNN.
#[derive(Clone, Debug, PartialEq)]
pub struct CircularModel {
    /// Metadata.
    pub meta: CircularMeta,
    /// The network on raw features.
    pub network: CircularNetwork,
}

/// Whether `dir/model.json` holds a circular-CNN model.
pub fn is_circular_model(dir: &Path) -> bool {
    std::fs::read_to_string(dir.join("model.json"))
        .ok()
        .and_then(|t| serde_json::from_str::<serde_json::Value>(&t).ok())
        .is_some_and(|v| v["architecture"] == ARCHITECTURE)
}

fn torch_modules(model: CircularKind, len: usize, m: usize) -> String {
    let conv =
        format!("Conv1d(1, {m}, {len}, padding='same', padding_mode='circular', bias=False)");
    match model {
        CircularKind::Relu => format!(
            "Sequential({conv}, Conv1d({m}, {m}, {len}, groups={m}, bias=False), ReLU(), Flatten(), Linear({m}, 1, bias=False))"
        ),
        CircularKind::Linear => {
            format!("Sequential({conv}, Conv1d({m}, 1, {len}, bias=False), Flatten())")
        }
    }
}

/// Trains the circular CNN on `table` as configured.
pub fn train(
    table: &Table,
    cfg: &CircularTrainConfig,
    progress: &mut dyn FnMut(&Progress),
) -> Result<(CircularModel, CircularReport)> {
    if !(cfg.lambda.is_finite() && cfg.lambda > 0.0) {
        return Err(CvxnnError::arg(
            "lambda",
            format!("must be a finite number > 0, got {}", cfg.lambda),
        ));
    }
    cfg.solver.validate()?;
    if cfg.len == 0 {
        return Err(CvxnnError::arg(
            "input-shape",
            "the signal length must be at least 1",
        ));
    }
    check_input_columns(
        table,
        &format!("1,{}", cfg.len),
        cfg.len,
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
    if data.outputs != 1 {
        return Err(CvxnnError::arg(
            "task",
            "the circular CNN models take one output (regression or binary)",
        ));
    }
    let feature_scale = feature_scale(&data.x);
    let x = scaled(&data.x, feature_scale);
    let (sol, network, network_objective, patterns, certificate) = match cfg.model {
        CircularKind::Relu => {
            let masks = match &cfg.patterns {
                PatternSource::Sample(p) => sample_patterns(&x, *p, cfg.seed)?.masks,
                PatternSource::Exact { max_patterns } => exact_patterns(&x, *max_patterns)?,
                _ => {
                    return Err(CvxnnError::arg(
                        "patterns",
                        "the circular CNN takes --patterns N or exact",
                    ))
                }
            };
            let prog = CircularReluProgram::new(&x, &data.y_train, &masks, data.loss, cfg.lambda)?;
            let sol = prog.solve(&cfg.solver, None, progress)?;
            let net = prog.rebuild(&sol.x)?;
            let obj = net.objective(&x, &data.y_train, data.loss, cfg.lambda)?;
            // Raw features and target units: readouts / feature scale, outputs * target scale.
            let raw = CircularReluCnn::new(
                cfg.len,
                net.filters.clone(),
                net.readouts
                    .iter()
                    .map(|a| a.iter().map(|v| v / feature_scale).collect())
                    .collect(),
                net.output.iter().map(|w| w * data.target_scale).collect(),
            )?;
            (
                sol,
                CircularNetwork::Relu(raw),
                obj,
                masks.len(),
                certificate_name(&cfg.patterns),
            )
        }
        CircularKind::Linear => {
            let prog = CircularProgram::new(&x, &data.y_train, data.loss, cfg.lambda)?;
            let sol = prog.solve(&cfg.solver, None, progress)?;
            let net = prog.rebuild(&sol.x)?;
            let obj = net.objective(&x, &data.y_train, data.loss, cfg.lambda)?;
            let k = data.target_scale / feature_scale;
            let raw = CircularCnn::new(
                cfg.len,
                net.filters.clone(),
                net.readouts
                    .iter()
                    .map(|a| a.iter().map(|v| v * k).collect())
                    .collect(),
            )?;
            (sol, CircularNetwork::Linear(raw), obj, 0, "global")
        }
    };
    let status = if relative_gap(sol.objective, sol.dual_bound) <= cfg.solver.tol
        && sol.violation <= cfg.solver.tol
    {
        Status::Converged
    } else {
        sol.status
    };
    let meta = CircularMeta {
        version: env!("CARGO_PKG_VERSION").to_string(),
        architecture: ARCHITECTURE.into(),
        model: cfg.model,
        len: cfg.len,
        feature_scale,
        task: data.task,
        loss: data.loss,
        lambda: cfg.lambda,
        seed: cfg.seed,
        patterns,
        channels: network.width(),
        feature_names: table.feature_names.clone(),
        target: table.target_name.clone(),
        target_scale: data.target_scale,
        labels: data.labels.clone(),
        torch_modules: torch_modules(cfg.model, cfg.len, network.width()),
    };
    let model = CircularModel { meta, network };
    let train_x = table.features.select_rows(&data.train_idx);
    let train = model.metrics(&train_x, &table.target.select(&data.train_idx))?;
    let test = if data.test_idx.is_empty() {
        None
    } else {
        let xt = table.features.select_rows(&data.test_idx);
        Some(model.metrics(&xt, &table.target.select(&data.test_idx))?)
    };
    let report = CircularReport {
        objective: sol.objective,
        network_objective,
        dual_bound: sol.dual_bound,
        gap: sol.objective - sol.dual_bound,
        relative_gap: relative_gap(sol.objective, sol.dual_bound),
        certificate: certificate.into(),
        exact: true,
        status,
        iterations: sol.iterations,
        seconds: sol.seconds,
        channels: model.network.width(),
        patterns,
        lambda: cfg.lambda,
        violation: sol.violation,
        model: cfg.model.to_string(),
        len: cfg.len,
        n_train: data.train_idx.len(),
        n_test: data.test_idx.len(),
        target_scale: data.target_scale,
        train,
        test,
    };
    Ok((model, report))
}

/// Certifies a saved circular CNN `model` on `table` (as [`crate::conv::certify`] for the
/// two-layer CNN): its objective in the program's units (the model's feature and target
/// scales, task and labels) and the dual bound of its program. Linear model: the Fourier
/// group-lasso program, exact for every width (a global bound, no patterns). ReLU model: the
/// cone-constrained program over the chosen patterns of the signals plus the network's own
/// (`1[<a_j, h_j ⊛ x> >= 0]`), a lower bound for every network of the architecture whose units
/// use those patterns (every network with `--patterns exact`). The ReLU architecture keeps each
/// filter in the unit ball: a filter of norm `r > 1` is divided by `r` and its readout
/// multiplied by `r` (the same function, inside the architecture) before the objective.
pub fn certify(
    table: &Table,
    model: &CircularModel,
    cfg: &CertifyConfig,
    progress: &mut dyn FnMut(&Progress),
) -> Result<CertifyReport> {
    let start = std::time::Instant::now();
    check_model_certify(cfg)?;
    let meta = &model.meta;
    check_input_columns(
        table,
        &format!("1,{}", meta.len),
        meta.len,
        ShapeOwner::Model,
    )?;
    if !(meta.feature_scale.is_finite() && meta.feature_scale > 0.0) {
        return Err(CvxnnError::arg("model", "the feature scale must be > 0"));
    }
    let loss = task_loss(meta.task, Some(cfg.loss.unwrap_or(meta.loss)))?;
    let (idx, y) = model_targets(
        table,
        meta.task,
        meta.labels.as_ref(),
        meta.target_scale,
        cfg,
    )?;
    let x = scaled(&table.features.select_rows(&idx), meta.feature_scale);
    let parts = match &model.network {
        CircularNetwork::Linear(net) => certify_linear(net, meta, &x, &y, loss, cfg, progress)?,
        CircularNetwork::Relu(net) => certify_relu(net, meta, &x, &y, loss, cfg, progress)?,
    };
    Ok(CertifyParts {
        loss,
        task: meta.task,
        n: idx.len(),
        d: meta.len,
        target_scale: meta.target_scale,
        ..parts
    }
    .report(cfg, start))
}

/// The linear arm of [`certify`] on the scaled signals `x` and targets `y`: the network in the
/// program's units (readouts times `feature_scale / target_scale`) and the group-lasso solve.
/// The caller fills loss, task and sizes.
fn certify_linear(
    net: &CircularCnn,
    meta: &CircularMeta,
    x: &Matrix,
    y: &[f64],
    loss: LossKind,
    cfg: &CertifyConfig,
    progress: &mut dyn FnMut(&Progress),
) -> Result<CertifyParts> {
    let k = meta.feature_scale / meta.target_scale;
    let readouts = net
        .readouts
        .iter()
        .map(|a| a.iter().map(|v| v * k).collect())
        .collect();
    let design = CircularCnn::new(meta.len, net.filters.clone(), readouts)?;
    let network_objective = design.objective(x, y, loss, cfg.lambda)?;
    let balanced: f64 = design
        .filters
        .iter()
        .zip(&design.readouts)
        .map(|(u, a)| crate::linalg::norm2(u) * crate::linalg::norm2(a))
        .sum();
    let balanced_objective = loss.value(&design.predict(x)?, y, 1) + cfg.lambda * balanced;
    let program = CircularProgram::new(x, y, loss, cfg.lambda)?;
    let solution = program.solve(&cfg.solver, None, progress)?;
    let convex_neurons = program.rebuild(&solution.x)?.width();
    Ok(CertifyParts {
        network_objective,
        balanced_objective,
        solution,
        certificate: "global".into(),
        exact_for: Some(
            "linear circular CNNs of any width under weight decay on filters and readouts (the Fourier group-lasso program is exact; no patterns)"
                .into(),
        ),
        convex_neurons,
        patterns: 0,
        network_patterns_added: 0,
        neurons: design.width(),
        loss,
        task: meta.task,
        n: 0,
        d: 0,
        target_scale: meta.target_scale,
    })
}

/// The ReLU arm of [`certify`] on the scaled signals `x` and targets `y`: the network in the
/// program's units (readouts times `feature_scale`, output weights over `target_scale`,
/// filters of norm `> 1` moved into the unit ball) and the cone-constrained solve over the
/// chosen patterns plus the network's own. The caller fills loss, task and sizes.
fn certify_relu(
    net: &CircularReluCnn,
    meta: &CircularMeta,
    x: &Matrix,
    y: &[f64],
    loss: LossKind,
    cfg: &CertifyConfig,
    progress: &mut dyn FnMut(&Progress),
) -> Result<CertifyParts> {
    let (mut filters, mut readouts) = (Vec::new(), Vec::new());
    let mut rescaled = 0;
    for (h, a) in net.filters.iter().zip(&net.readouts) {
        let r = crate::linalg::norm2(h).max(1.0);
        if r > 1.0 {
            rescaled += 1;
        }
        filters.push(h.iter().map(|v| v / r).collect());
        readouts.push(a.iter().map(|v| v * meta.feature_scale * r).collect());
    }
    let output = net.output.iter().map(|w| w / meta.target_scale).collect();
    let design = CircularReluCnn::new(meta.len, filters, readouts, output)?;
    let network_objective = design.objective(x, y, loss, cfg.lambda)?;
    let balanced: f64 = (0..design.width())
        .map(|j| {
            design.output[j].abs()
                * crate::linalg::norm2(&design.readouts[j])
                * crate::linalg::norm2(&design.filters[j])
        })
        .sum();
    let balanced_objective = loss.value(&design.predict(x)?, y, 1) + cfg.lambda * balanced;
    let chosen = match &cfg.patterns {
        PatternSource::Sample(p) => sample_patterns(x, *p, cfg.seed)?.masks,
        PatternSource::Exact { max_patterns } => exact_patterns(x, *max_patterns)?,
        _ => {
            return Err(CvxnnError::arg(
                "patterns",
                "certify takes exact or sampled patterns",
            ))
        }
    };
    let pre = design.pre_activations(x)?;
    let own = (0..design.width())
        .filter(|&j| design.output[j] != 0.0)
        .map(|j| pre.col(j).iter().map(|&v| v >= 0.0).collect());
    let (masks, added) = merge_patterns(&chosen, own);
    if masks.is_empty() {
        return Err(CvxnnError::arg(
            "patterns",
            "no activation pattern with an active sample",
        ));
    }
    let program = CircularReluProgram::new(x, y, &masks, loss, cfg.lambda)?;
    let solution = program.solve(&cfg.solver, None, progress)?;
    let convex_neurons = program.rebuild(&solution.x)?.width();
    let mut exact_for = String::from(
        "circular CNNs with one ReLU layer, filters in the unit ball, weight decay on readouts and output weights",
    );
    if !matches!(cfg.patterns, PatternSource::Exact { .. }) {
        exact_for += ", whose units use the sampled patterns or the network's own";
    }
    if rescaled > 0 {
        exact_for += &format!(
            " ({rescaled} filters of norm > 1 scaled into the unit ball, their readouts up: the same function)"
        );
    }
    Ok(CertifyParts {
        network_objective,
        balanced_objective,
        solution,
        certificate: certificate_name(&cfg.patterns).into(),
        exact_for: Some(exact_for),
        convex_neurons,
        patterns: masks.len(),
        network_patterns_added: added,
        neurons: design.width(),
        loss,
        task: meta.task,
        n: 0,
        d: 0,
        target_scale: meta.target_scale,
    })
}

/// PyTorch's weight index `k` of our filter index `s` (and back: the map is an involution up to
/// the shift), for `Conv1d(.., L, padding='same', padding_mode='circular')`: `left = (L-1)/2`,
/// `W_k = h_{(left - k) mod L}`.
fn torch_index(k: usize, len: usize) -> usize {
    let left = (len - 1) / 2;
    (left + len - k % len) % len
}

impl CircularModel {
    /// Raw outputs on raw features.
    pub fn decision_function(&self, raw: &Matrix) -> Result<Vec<f64>> {
        self.network.predict(raw)
    }

    /// Predictions as text: values (regression) or the original labels (binary).
    pub fn predict_strings(&self, raw: &Matrix) -> Result<Vec<String>> {
        let scores = self.decision_function(raw)?;
        match &self.meta.labels {
            Some(l) if self.meta.task == Task::Binary => Ok(scores
                .into_iter()
                .map(|s| l.decode(binary_class(s)).unwrap_or_default().to_string())
                .collect()),
            _ => Ok(scores.iter().map(f64::to_string).collect()),
        }
    }

    /// Metrics against a target column (MSE and R^2, or accuracy and confusion).
    pub fn metrics(&self, raw: &Matrix, target: &TargetColumn) -> Result<Metrics> {
        let scores = self.decision_function(raw)?;
        match &self.meta.labels {
            Some(l) if self.meta.task == Task::Binary => {
                let truth = l.encode(target)?;
                let pred: Vec<usize> = scores.into_iter().map(binary_class).collect();
                Ok(classification_metrics(l.labels(), &truth, &pred))
            }
            _ => Ok(regression_metrics(&scores, &target.values()?)),
        }
    }

    /// Writes `model.json`, `model.safetensors` (and `report.json`) into `dir`; existing files
    /// are kept unless `overwrite`.
    pub fn save(&self, dir: &Path, report: Option<&CircularReport>, overwrite: bool) -> Result<()> {
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
        std::fs::create_dir_all(dir).map_err(|e| CvxnnError::io(dir, e))?;
        write(
            &dir.join("model.json"),
            to_json(&self.meta, dir)?.as_bytes(),
        )?;
        self.save_weights(&dir.join("model.safetensors"))?;
        if let Some(r) = report {
            write(&dir.join("report.json"), to_json(r, dir)?.as_bytes())?;
        }
        Ok(())
    }

    fn save_weights(&self, path: &Path) -> Result<()> {
        let len = self.meta.len;
        let bytes = |v: &mut dyn Iterator<Item = f64>| -> Vec<u8> {
            v.flat_map(|x| x.to_le_bytes()).collect()
        };
        let filters = |hs: &[Vec<f64>]| -> Vec<u8> {
            bytes(
                &mut hs
                    .iter()
                    .flat_map(|h| (0..len).map(move |k| h[torch_index(k, len)])),
            )
        };
        let tensors: Vec<(&str, Vec<usize>, Vec<u8>)> = match &self.network {
            CircularNetwork::Relu(n) => {
                let m = n.width();
                vec![
                    ("0.weight", vec![m, 1, len], filters(&n.filters)),
                    (
                        "1.weight",
                        vec![m, 1, len],
                        bytes(&mut n.readouts.iter().flatten().copied()),
                    ),
                    ("4.weight", vec![1, m], bytes(&mut n.output.iter().copied())),
                ]
            }
            CircularNetwork::Linear(n) => {
                let m = n.width();
                vec![
                    ("0.weight", vec![m, 1, len], filters(&n.filters)),
                    (
                        "1.weight",
                        vec![1, m, len],
                        bytes(&mut n.readouts.iter().flatten().copied()),
                    ),
                ]
            }
        };
        let bad = |e: String| CvxnnError::Model {
            path: path.into(),
            message: e,
        };
        let views = tensors
            .iter()
            .map(|(name, s, b)| {
                TensorView::new(Dtype::F64, s.clone(), b)
                    .map(|v| (name.to_string(), v))
                    .map_err(|e| bad(e.to_string()))
            })
            .collect::<Result<Vec<_>>>()?;
        let mut info = HashMap::new();
        info.insert("format".to_string(), "pt".to_string());
        let out = safetensors::serialize(views, Some(info)).map_err(|e| bad(e.to_string()))?;
        write(path, &out)
    }

    /// Reads a model directory written by [`CircularModel::save`].
    pub fn load(dir: &Path) -> Result<CircularModel> {
        let meta_path = dir.join("model.json");
        let text =
            std::fs::read_to_string(&meta_path).map_err(|e| CvxnnError::io(&meta_path, e))?;
        let meta: CircularMeta = serde_json::from_str(&text).map_err(|e| CvxnnError::Model {
            path: meta_path.clone(),
            message: e.to_string(),
        })?;
        let path = dir.join("model.safetensors");
        let raw = std::fs::read(&path).map_err(|e| CvxnnError::io(&path, e))?;
        let bad = |message: String| CvxnnError::Model {
            path: path.clone(),
            message,
        };
        if meta.len == 0 {
            return Err(bad("model.json has signal length 0".into()));
        }
        let st = SafeTensors::deserialize(&raw)
            .map_err(|e| bad(format!("not a safetensors file: {e}")))?;
        let get = |name: &str, count: usize| -> Result<Vec<f64>> {
            let t = st
                .tensor(name)
                .map_err(|_| bad(format!("no tensor `{name}`")))?;
            let vals: Vec<f64> = match t.dtype() {
                Dtype::F64 => t
                    .data()
                    .chunks_exact(8)
                    .map(|c| f64::from_le_bytes(c.try_into().unwrap_or([0; 8])))
                    .collect(),
                Dtype::F32 => t
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
        let (len, m) = (meta.len, meta.channels);
        let rows = |v: Vec<f64>| -> Vec<Vec<f64>> { v.chunks(len).map(<[f64]>::to_vec).collect() };
        // Undo the PyTorch re-indexing: W_k = h_{torch_index(k)}.
        let filters: Vec<Vec<f64>> = rows(get("0.weight", m * len)?)
            .into_iter()
            .map(|w| {
                let mut h = vec![0.0; len];
                for (k, v) in w.iter().enumerate() {
                    h[torch_index(k, len)] = *v;
                }
                h
            })
            .collect();
        let readouts = rows(get("1.weight", m * len)?);
        let network = match meta.model {
            CircularKind::Relu => CircularNetwork::Relu(CircularReluCnn::new(
                len,
                filters,
                readouts,
                get("4.weight", m)?,
            )?),
            CircularKind::Linear => {
                CircularNetwork::Linear(CircularCnn::new(len, filters, readouts)?)
            }
        };
        Ok(CircularModel { meta, network })
    }
}

/// Pretty JSON, with errors naming the model directory.
fn to_json<T: Serialize>(v: &T, dir: &Path) -> Result<String> {
    serde_json::to_string_pretty(v).map_err(|e| CvxnnError::Model {
        path: dir.into(),
        message: e.to_string(),
    })
}

fn write(path: &Path, bytes: &[u8]) -> Result<()> {
    std::fs::write(path, bytes).map_err(|e| CvxnnError::io(path, e))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn meta(model: CircularKind, len: usize, m: usize) -> CircularMeta {
        CircularMeta {
            version: "test".into(),
            architecture: ARCHITECTURE.into(),
            model,
            len,
            feature_scale: 1.0,
            task: Task::Regression,
            loss: LossKind::Squared,
            lambda: 1.0,
            seed: 0,
            patterns: 0,
            channels: m,
            feature_names: (0..len).map(|i| format!("f{i}")).collect(),
            target: "y".into(),
            target_scale: 1.0,
            labels: None,
            torch_modules: String::new(),
        }
    }

    /// PyTorch semantics, written out: `F.pad(x, (left, right), mode='circular')` with
    /// `left = (L-1)//2`, `right = L-1-left`, then cross-correlation `out_t = sum_k W_k xp_{t+k}`.
    fn torch_circular_conv(w: &[f64], x: &[f64]) -> Vec<f64> {
        let l = x.len();
        let left = (l - 1) / 2;
        let right = l - 1 - left;
        let mut xp: Vec<f64> = x[l - left..].to_vec();
        xp.extend_from_slice(x);
        xp.extend_from_slice(&x[..right]);
        (0..l)
            .map(|t| (0..l).map(|k| w[k] * xp[t + k]).sum())
            .collect()
    }

    /// The saved tensors, applied as the PyTorch modules in `torch_modules`, give
    /// `decision_function` (both models, even and odd `L`), and loading gives the same network.
    #[test]
    fn saved_tensors_reproduce_predictions_as_pytorch_modules() {
        for (model, len) in [
            (CircularKind::Relu, 6usize),
            (CircularKind::Relu, 7),
            (CircularKind::Linear, 6),
            (CircularKind::Linear, 5),
        ] {
            let m = 3;
            let vec_of = |j: usize, salt: usize| -> Vec<f64> {
                (0..len)
                    .map(|t| ((t * 7 + j * 5 + salt) % 11) as f64 / 5.0 - 1.0)
                    .collect()
            };
            let filters: Vec<Vec<f64>> = (0..m).map(|j| vec_of(j, 1)).collect();
            let readouts: Vec<Vec<f64>> = (0..m).map(|j| vec_of(j, 4)).collect();
            let network = match model {
                CircularKind::Relu => CircularNetwork::Relu(
                    CircularReluCnn::new(len, filters, readouts, vec![0.7, -1.3, 0.4]).unwrap(),
                ),
                CircularKind::Linear => {
                    CircularNetwork::Linear(CircularCnn::new(len, filters, readouts).unwrap())
                }
            };
            let model_v = CircularModel {
                meta: meta(model, len, m),
                network,
            };
            let dir = std::env::temp_dir().join(format!(
                "cvxnn-circ-test-{}-{model}-{len}",
                std::process::id()
            ));
            model_v.save(&dir, None, true).unwrap();
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
            let (w0, w1) = (read("0.weight"), read("1.weight"));
            let x = Matrix::from_fn(4, len, |i, j| ((i * 13 + j * 3) % 7) as f64 - 3.0);
            let scores = model_v.decision_function(&x).unwrap();
            for (i, score) in scores.iter().enumerate() {
                let xi = x.row(i);
                let mut out = 0.0;
                for j in 0..m {
                    let c = torch_circular_conv(&w0[j * len..(j + 1) * len], &xi);
                    // Conv1d(m, m, L, groups=m) or Conv1d(m, 1, L): channel j's weights.
                    let r: f64 = c
                        .iter()
                        .zip(&w1[j * len..(j + 1) * len])
                        .map(|(a, b)| a * b)
                        .sum();
                    out += match model {
                        CircularKind::Relu => read("4.weight")[j] * r.max(0.0),
                        CircularKind::Linear => r,
                    };
                }
                assert!(
                    (out - score).abs() <= 1e-12 * out.abs().max(1.0),
                    "{model} L={len}: {out} vs {score}"
                );
            }
            let back = CircularModel::load(&dir).unwrap();
            assert_eq!(back, model_v);
            assert!(is_circular_model(&dir));
            let _ = std::fs::remove_dir_all(&dir);
        }
    }
}
