//! End-to-end training on a table: preprocessing, patterns, solve, rebuild, certificate, metrics,
//! and the model directory (`model.json`, `model.safetensors`, `report.json`).

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::data::{
    add_bias, encode_target, train_test_split, BinaryLabels, Standardizer, Table, Task,
};
use crate::error::{CvxnnError, Result};
use crate::linalg::Matrix;
use crate::loss::LossKind;
use crate::network::{Network, RawNetwork};
use crate::patterns::{patterns_from_gates, sample_patterns, GatedPatterns};
use crate::program::{ModelKind, TwoLayerProgram};
use crate::solver::{Progress, SolverSettings, Status};

/// Where the activation patterns come from.
#[derive(Clone, Debug, PartialEq)]
pub enum PatternSource {
    /// `N` seeded Gaussian gates (distinct patterns kept).
    Sample(usize),
    /// Exact gate vectors (`d x P`, in the design space: standardized features then bias).
    Gates(Matrix),
}

/// Everything `train` needs besides the data. Defaults match the CLI's.
#[derive(Clone, Debug, PartialEq)]
pub struct TrainConfig {
    /// Regression or binary classification; `None` infers it from the target.
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
    /// First-order solver settings.
    pub solver: SolverSettings,
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
        }
    }
}

/// Train/test quality of the network's predictions.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Metrics {
    /// Mean squared error (regression), in the target's units.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub mse: Option<f64>,
    /// Coefficient of determination (regression).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub r2: Option<f64>,
    /// Fraction of correct labels (classification).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub accuracy: Option<f64>,
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
    /// What the dual bound certifies: `"sampled-patterns"` (relative to the patterns used).
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
    /// Task.
    pub task: Task,
    /// Relative cone-constraint violation at the solution (0 for gated ReLU).
    pub violation: f64,
    /// Requested relative tolerance.
    pub tol: f64,
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
}

/// Everything needed to apply a trained model to raw data; written to `model.json`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ModelMeta {
    /// cvxnn version that wrote the model.
    pub version: String,
    /// Architecture: always `"two-layer"` for now.
    pub architecture: String,
    /// Model kind.
    pub model: ModelKind,
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
    /// Hidden neurons.
    pub neurons: usize,
    /// Raw feature names, in the order the network expects them.
    pub feature_names: Vec<String>,
    /// Target column name.
    pub target: String,
    /// Standardization fitted on the training split (identity when off).
    pub standardizer: Standardizer,
    /// Whether z-scoring was on.
    pub standardize: bool,
    /// Whether a bias column was appended.
    pub bias: bool,
    /// Factor the (regression) targets were divided by before solving; 1 when not scaled.
    pub target_scale: f64,
    /// The two label values of a binary task.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub labels: Option<BinaryLabels>,
}

/// A trained model: metadata plus the network on raw features.
#[derive(Clone, Debug, PartialEq)]
pub struct TrainedModel {
    /// Metadata and preprocessing.
    pub meta: ModelMeta,
    /// Network on raw features (preprocessing folded in).
    pub network: RawNetwork,
}

/// The outcome of [`train`].
#[derive(Clone, Debug)]
pub struct TrainOutput {
    /// The model.
    pub model: TrainedModel,
    /// The report.
    pub report: Report,
    /// The design-space network (before folding the preprocessing).
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
    let start = std::time::Instant::now();
    if !(cfg.lambda.is_finite() && cfg.lambda > 0.0) {
        return Err(CvxnnError::arg(
            "lambda",
            format!("must be a finite number > 0, got {}", cfg.lambda),
        ));
    }
    cfg.solver.validate()?;
    let task = cfg.task.unwrap_or_else(|| Task::infer(&table.target));
    let (y_all, labels) = encode_target(task, &table.target, &table.path, &table.target_name)?;
    let loss = cfg.loss.unwrap_or(match task {
        Task::Regression => LossKind::Squared,
        Task::Binary => LossKind::Logistic,
    });
    if loss == LossKind::Logistic && task != Task::Binary {
        return Err(CvxnnError::arg(
            "loss",
            "logistic loss needs a binary task (two label values)",
        ));
    }
    let (train_idx, test_idx) =
        train_test_split(table.features.nrows(), cfg.test_fraction, cfg.seed)?;
    let x_train_raw = table.features.select_rows(&train_idx);
    let mut y_train: Vec<f64> = train_idx.iter().map(|&i| y_all[i]).collect();
    let target_scale = if task == Task::Regression && cfg.scale_target {
        let m = y_train.iter().sum::<f64>() / y_train.len().max(1) as f64;
        let var =
            y_train.iter().map(|v| (v - m) * (v - m)).sum::<f64>() / y_train.len().max(1) as f64;
        if var > 0.0 {
            var.sqrt()
        } else {
            1.0
        }
    } else {
        1.0
    };
    y_train.iter_mut().for_each(|v| *v /= target_scale);
    let standardizer = if cfg.standardize {
        Standardizer::fit(&x_train_raw)
    } else {
        Standardizer::identity(x_train_raw.ncols())
    };
    let x = design_matrix(&x_train_raw, &standardizer, cfg.bias)?;
    let GatedPatterns { gates, masks } = match &cfg.patterns {
        PatternSource::Sample(count) => sample_patterns(&x, *count, cfg.seed)?,
        PatternSource::Gates(g) => patterns_from_gates(&x, g)?,
    };
    let program = TwoLayerProgram::new(&x, &y_train, &masks, loss, cfg.model, cfg.lambda)?;
    let solution = program.solve(&cfg.solver, None, progress)?;
    let network = Network::from_convex(cfg.model, x.ncols(), &solution.x, Some(&gates))?;
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
        architecture: "two-layer".into(),
        model: cfg.model,
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
    };
    let model = TrainedModel { meta, network: raw };
    let train_metrics = model.metrics(
        &x_train_raw,
        &train_idx
            .iter()
            .map(|&i| table.target[i])
            .collect::<Vec<_>>(),
    )?;
    let test = if test_idx.is_empty() {
        None
    } else {
        let xt = table.features.select_rows(&test_idx);
        let yt: Vec<f64> = test_idx.iter().map(|&i| table.target[i]).collect();
        Some(model.metrics(&xt, &yt)?)
    };
    let report = Report {
        objective: solution.objective,
        network_objective,
        dual_bound: solution.dual_bound,
        gap: solution.gap(),
        relative_gap: solution.relative_gap(),
        certificate: "sampled-patterns".into(),
        status: solution.status,
        iterations: solution.iterations,
        seconds: start.elapsed().as_secs_f64(),
        neurons: network.neurons(),
        patterns: masks.len(),
        lambda: cfg.lambda,
        model: cfg.model,
        loss,
        task,
        violation: solution.violation,
        tol: cfg.solver.tol,
        seed: cfg.seed,
        target_scale,
        n_train: train_idx.len(),
        n_test: test_idx.len(),
        d: x.ncols(),
        train: train_metrics,
        test,
        decomposed_objective,
        trace: solution.trace,
    };
    Ok(TrainOutput {
        model,
        report,
        network,
        decomposed,
    })
}

/// File names inside a model directory.
pub const MODEL_FILES: [&str; 3] = ["model.json", "model.safetensors", "report.json"];

impl TrainedModel {
    /// Raw network outputs on raw features (columns in the model's feature order).
    pub fn decision_function(&self, raw: &Matrix) -> Result<Vec<f64>> {
        self.network.forward(raw)
    }

    /// Predictions in the target's units: values for regression, the original label values for
    /// binary classification.
    pub fn predict(&self, raw: &Matrix) -> Result<Vec<f64>> {
        let out = self.decision_function(raw)?;
        Ok(match (&self.meta.task, &self.meta.labels) {
            (Task::Binary, Some(l)) => out.iter().map(|&v| l.decode(v)).collect(),
            _ => out,
        })
    }

    /// Metrics of the predictions against raw targets.
    pub fn metrics(&self, raw: &Matrix, target: &[f64]) -> Result<Metrics> {
        let pred = self.predict(raw)?;
        Ok(metrics(self.meta.task, &pred, target))
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
        let meta: ModelMeta = serde_json::from_str(&text).map_err(|e| CvxnnError::Model {
            path: meta_path.clone(),
            message: e.to_string(),
        })?;
        let network = RawNetwork::load(&dir.join("model.safetensors"))?;
        if network.w1.ncols() != meta.feature_names.len() {
            return Err(CvxnnError::Model {
                path: dir.into(),
                message: format!(
                    "weights take {} features, model.json lists {}",
                    network.w1.ncols(),
                    meta.feature_names.len()
                ),
            });
        }
        Ok(TrainedModel { meta, network })
    }
}

fn write(path: &Path, bytes: &[u8]) -> Result<()> {
    std::fs::write(path, bytes).map_err(|e| CvxnnError::io(path, e))
}

/// Metrics of predictions (in target units) against targets.
pub fn metrics(task: Task, pred: &[f64], target: &[f64]) -> Metrics {
    let n = target.len().max(1) as f64;
    match task {
        Task::Regression => {
            let mse = pred
                .iter()
                .zip(target)
                .map(|(p, t)| (p - t) * (p - t))
                .sum::<f64>()
                / n;
            let mean = target.iter().sum::<f64>() / n;
            let var = target.iter().map(|t| (t - mean) * (t - mean)).sum::<f64>() / n;
            Metrics {
                mse: Some(mse),
                r2: (var > 0.0).then(|| 1.0 - mse / var),
                accuracy: None,
            }
        }
        Task::Binary => {
            let hits = pred.iter().zip(target).filter(|(p, t)| p == t).count() as f64;
            Metrics {
                mse: None,
                r2: None,
                accuracy: Some(hits / n),
            }
        }
    }
}
