//! The three-layer CNN pipeline on a table (docs/theory.md, "Three-layer CNN"): the same data
//! handling as [`crate::conv`] (one global feature scale, per-filter bias, regression or
//! binary), the program [`Cnn3Program`] over first-layer patterns of the patch matrix and
//! second-layer patterns of the samples, and model files in PyTorch naming for
//! `Sequential(Conv, ReLU, AdaptiveAvgPool(1), Flatten, Linear(M, m), ReLU, Linear(m, 1))`.

use std::collections::HashMap;
use std::path::Path;

use safetensors::tensor::TensorView;
use safetensors::{Dtype, SafeTensors};
use serde::{Deserialize, Serialize};

use crate::conv::{check_input_columns, feature_scale, scaled, ShapeOwner};
use crate::data::{binary_class, patches, ClassLabels, ConvShape, Table, TargetColumn, Task};
use crate::error::{CvxnnError, Result};
use crate::estimator::{
    check_model_certify, exact_patterns, merge_patterns, model_targets, prepare_training_data,
    task_loss, CertifyConfig, CertifyParts, CertifyReport, PatternSource,
};
use crate::linalg::Matrix;
use crate::loss::LossKind;
use crate::metrics::{classification_metrics, regression_metrics, Metrics};
use crate::network::Cnn3Network;
use crate::patterns::{
    all_sample_patterns, sample_patterns, sample_second_layer_patterns, Masks, MAX_EXACT_SAMPLES,
};
use crate::program::Cnn3Program;
use crate::solver::{relative_gap, Progress, SolverSettings, Status};

/// The `architecture` written into `model.json`.
pub const ARCHITECTURE: &str = "cnn3-sum-pool-path";

/// Second-layer (sample) patterns of the program.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SecondLayerPatterns {
    /// The all-ones pattern, the sign pattern of binary targets, then seeded samples, up to
    /// this many in all.
    Sample(usize),
    /// All `2^n - 1` non-zero patterns (tiny data only; exact together with exact first-layer
    /// patterns).
    Exact,
}

/// Everything [`train`] needs besides the data (the two-layer CNN's options plus the second
/// layer's patterns). Kept apart from [`crate::estimator::TrainConfig`] until the three-layer
/// network joins `architecture::ModelNetwork` (DESIGN section 11).
#[derive(Clone, Debug, PartialEq)]
pub struct Cnn3TrainConfig {
    /// Regression or binary; `None` infers it from the target. Multiclass is refused.
    pub task: Option<Task>,
    /// Data-fit term; `None`: squared for regression, logistic for binary.
    pub loss: Option<LossKind>,
    /// Regularization strength of the path penalty (> 0).
    pub lambda: f64,
    /// First-layer patterns: `Sample(P)` (seeded gates in `R^h`) or `Exact`.
    pub patterns: PatternSource,
    /// Second-layer patterns.
    pub second: SecondLayerPatterns,
    /// Convolution shape.
    pub shape: ConvShape,
    /// Per-filter bias (a constant-1 entry in every patch).
    pub bias: bool,
    /// Regression: divide the targets by their training standard deviation.
    pub scale_target: bool,
    /// Fraction of samples held out for testing, in [0, 1).
    pub test_fraction: f64,
    /// Seed of the split and of both layers' pattern sampling.
    pub seed: u64,
    /// First-order solver settings.
    pub solver: SolverSettings,
}

/// `model.json` of a three-layer CNN model.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Cnn3Meta {
    /// cvxnn version that wrote the model.
    pub version: String,
    /// Always [`ARCHITECTURE`].
    pub architecture: String,
    /// Convolution shape.
    pub shape: ConvShape,
    /// Per-filter bias.
    pub bias: bool,
    /// Global feature scale (folded into the filters).
    pub feature_scale: f64,
    /// Task.
    pub task: Task,
    /// Loss.
    pub loss: LossKind,
    /// Regularization strength of the path penalty.
    pub lambda: f64,
    /// Seed.
    pub seed: u64,
    /// First-layer patterns.
    pub patterns: usize,
    /// Second-layer patterns.
    pub second_layer_patterns: usize,
    /// Filters `M`.
    pub filters: usize,
    /// Middle units `m`.
    pub units: usize,
    /// Raw feature names.
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

/// `report.json` of a three-layer CNN run.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Cnn3Report {
    /// Convex objective.
    pub objective: f64,
    /// Objective of the rebuilt network (path penalty; equal up to the violation).
    pub network_objective: f64,
    /// Lower bound on the program's optimum.
    pub dual_bound: f64,
    /// `objective - dual_bound`.
    pub gap: f64,
    /// Relative gap.
    pub relative_gap: f64,
    /// `global` (exact patterns of both layers) or `sampled-patterns`.
    pub certificate: String,
    /// Solver status.
    pub status: Status,
    /// First-order iterations.
    pub iterations: usize,
    /// Solve time.
    pub seconds: f64,
    /// Filters `M` of the rebuilt network.
    pub filters: usize,
    /// Middle units `m` of the rebuilt network.
    pub units: usize,
    /// First-layer patterns.
    pub patterns: usize,
    /// Second-layer patterns.
    pub second_layer_patterns: usize,
    /// Regularization strength.
    pub lambda: f64,
    /// Relative cone-constraint violation (both layers).
    pub violation: f64,
    /// Always `cnn3-relu`.
    pub model: String,
    /// Convolution shape, as text.
    pub shape: String,
    /// Patches per sample `K`.
    pub patches: usize,
    /// Filter length `h` (bias entry included).
    pub filter_len: usize,
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

/// A trained three-layer CNN on raw features.
#[derive(Clone, Debug, PartialEq)]
pub struct Cnn3Model {
    /// Metadata.
    pub meta: Cnn3Meta,
    /// The network on raw features.
    pub network: Cnn3Network,
}

/// Whether `dir/model.json` holds a three-layer CNN model.
pub fn is_cnn3_model(dir: &Path) -> bool {
    std::fs::read_to_string(dir.join("model.json"))
        .ok()
        .and_then(|t| serde_json::from_str::<serde_json::Value>(&t).ok())
        .is_some_and(|v| v["architecture"] == ARCHITECTURE)
}

fn torch_modules(shape: &ConvShape, bias: bool, filters: usize, units: usize) -> String {
    let d = if shape.spatial.len() == 1 { "1d" } else { "2d" };
    let kernel: Vec<String> = shape.kernel.iter().map(|k| k.to_string()).collect();
    let kernel = if kernel.len() == 1 {
        format!("({},)", kernel[0])
    } else {
        format!("({})", kernel.join(", "))
    };
    format!(
        "Sequential(Conv{d}({}, {filters}, {kernel}, stride={}, padding={}, bias={}), ReLU(), AdaptiveAvgPool{d}(1), Flatten(), Linear({filters}, {units}, bias=False), ReLU(), Linear({units}, 1, bias=False)) — the first Linear weight holds w1 * K (K = {} patches), so the average pooling times K is the sum pooling",
        shape.channels,
        shape.stride,
        shape.padding,
        if bias { "True" } else { "False" },
        shape.n_patches()
    )
}

/// First-layer patterns of the patch matrix `xs`: `Sample(P)` (seeded gates) or `Exact`.
fn first_layer_masks(patterns: &PatternSource, xs: &Matrix, seed: u64) -> Result<Masks> {
    match patterns {
        PatternSource::Sample(p) => Ok(sample_patterns(xs, *p, seed)?.masks),
        PatternSource::Exact { max_patterns } => exact_patterns(xs, *max_patterns),
        _ => Err(CvxnnError::arg(
            "patterns",
            "the CNN models take --patterns N or exact",
        )),
    }
}

/// Second-layer (sample) patterns over the `n` samples of the patch matrix `xs` (`K` patches
/// each); `y` the program's targets (the signs of binary targets are a pattern worth having).
fn second_layer_masks(
    second: SecondLayerPatterns,
    xs: &Matrix,
    k: usize,
    task: Task,
    y: &[f64],
    seed: u64,
) -> Result<Masks> {
    match second {
        SecondLayerPatterns::Exact => all_sample_patterns(xs.nrows() / k),
        SecondLayerPatterns::Sample(count) => {
            let extra: Vec<Vec<bool>> = if task == Task::Binary {
                vec![y.iter().map(|&t| t > 0.0).collect()]
            } else {
                Vec::new()
            };
            sample_second_layer_patterns(xs, k, count, seed.wrapping_add(1), &extra)
        }
    }
}

/// Trains the three-layer CNN on `table` as configured.
pub fn train(
    table: &Table,
    cfg: &Cnn3TrainConfig,
    progress: &mut dyn FnMut(&Progress),
) -> Result<(Cnn3Model, Cnn3Report)> {
    let c = cfg;
    c.solver.validate()?;
    check_input_columns(
        table,
        &c.shape.describe(),
        c.shape.input_len(),
        ShapeOwner::Argument,
    )?;
    let data = prepare_training_data(
        table,
        c.task,
        c.loss,
        false,
        false,
        c.scale_target,
        c.test_fraction,
        c.seed,
    )?;
    if data.outputs != 1 {
        return Err(CvxnnError::arg(
            "task",
            "the three-layer CNN takes one output (regression or binary)",
        ));
    }
    let feature_scale = feature_scale(&data.x);
    let x = scaled(&data.x, feature_scale);
    let xs = patches(&x, &c.shape, c.bias)?;
    let k = c.shape.n_patches();
    let first = first_layer_masks(&c.patterns, &xs, c.seed)?;
    let second = second_layer_masks(cfg.second, &xs, k, data.task, &data.y_train, c.seed)?;
    let program = Cnn3Program::new(&xs, k, &data.y_train, &first, &second, data.loss, c.lambda)?;
    let sol = program.solve(&c.solver, None, progress)?;
    let net = Cnn3Network::from_convex(c.shape.clone(), c.bias, first.len(), &sol.x)?;
    let network_objective = net.objective_patches(&xs, &data.y_train, data.loss, c.lambda)?;
    // Fold the feature scale into the filters (not their bias entry) and the target scale into
    // the output weights: positive factors pass through both ReLUs.
    let h = c.shape.patch_len();
    let mut filters = net.filters.clone();
    for j in 0..filters.ncols() {
        filters.col_mut(j)[..h]
            .iter_mut()
            .for_each(|v| *v /= feature_scale);
    }
    let raw = Cnn3Network {
        filters,
        output: net.output.iter().map(|w| w * data.target_scale).collect(),
        ..net
    };
    let status = if relative_gap(sol.objective, sol.dual_bound) <= c.solver.tol
        && sol.violation <= c.solver.tol
    {
        Status::Converged
    } else {
        sol.status
    };
    let meta = Cnn3Meta {
        version: env!("CARGO_PKG_VERSION").to_string(),
        architecture: ARCHITECTURE.into(),
        shape: c.shape.clone(),
        bias: c.bias,
        feature_scale,
        task: data.task,
        loss: data.loss,
        lambda: c.lambda,
        seed: c.seed,
        patterns: first.len(),
        second_layer_patterns: second.len(),
        filters: raw.n_filters(),
        units: raw.units(),
        feature_names: table.feature_names.clone(),
        target: table.target_name.clone(),
        target_scale: data.target_scale,
        labels: data.labels.clone(),
        torch_modules: torch_modules(&c.shape, c.bias, raw.n_filters(), raw.units()),
    };
    let model = Cnn3Model { meta, network: raw };
    let train_x = table.features.select_rows(&data.train_idx);
    let train = model.metrics(&train_x, &table.target.select(&data.train_idx))?;
    let test = if data.test_idx.is_empty() {
        None
    } else {
        let xt = table.features.select_rows(&data.test_idx);
        Some(model.metrics(&xt, &table.target.select(&data.test_idx))?)
    };
    let exact = matches!(c.patterns, PatternSource::Exact { .. })
        && cfg.second == SecondLayerPatterns::Exact;
    let report = Cnn3Report {
        objective: sol.objective,
        network_objective,
        dual_bound: sol.dual_bound,
        gap: sol.objective - sol.dual_bound,
        relative_gap: relative_gap(sol.objective, sol.dual_bound),
        certificate: if exact { "global" } else { "sampled-patterns" }.into(),
        status,
        iterations: sol.iterations,
        seconds: sol.seconds,
        filters: model.network.n_filters(),
        units: model.network.units(),
        patterns: first.len(),
        second_layer_patterns: second.len(),
        lambda: c.lambda,
        violation: sol.violation,
        model: "cnn3-relu".into(),
        shape: c.shape.describe(),
        patches: k,
        filter_len: xs.ncols(),
        n_train: data.train_idx.len(),
        n_test: data.test_idx.len(),
        target_scale: data.target_scale,
        train,
        test,
    };
    Ok((model, report))
}

/// Second-layer patterns of [`certify`] when none are given: all of them on data small enough
/// to list them ([`MAX_EXACT_SAMPLES`]), else as many sampled ones as `train` takes by default.
pub fn default_second_layer(n: usize) -> SecondLayerPatterns {
    if n <= MAX_EXACT_SAMPLES {
        SecondLayerPatterns::Exact
    } else {
        SecondLayerPatterns::Sample(20)
    }
}

/// Certifies a saved three-layer CNN `model` on `table` (as [`crate::conv::certify`] for the
/// two-layer CNN): its path-penalty objective in the program's units (the model's feature and
/// target scales, task and labels) and the dual bound of [`Cnn3Program`] over the chosen
/// first-layer patterns of the patch matrix plus the network's filters' own
/// (`1[Xs u_a >= 0]`), and the chosen second-layer patterns (`second`, default
/// [`default_second_layer`]) plus the network's middle units' own (`1[g_j >= 0]`). The bound
/// is sound for the network itself: the proof in docs/theory.md ("non-convex >= convex") maps
/// any network onto the program over exactly those patterns. It bounds every three-layer CNN
/// of this shape under the path penalty whose patterns lie in those sets — all of them with
/// exact patterns of both layers (certificate `global`); it says nothing about weight decay on
/// the three layers, for which the program is not exact.
pub fn certify(
    table: &Table,
    model: &Cnn3Model,
    cfg: &CertifyConfig,
    second: Option<SecondLayerPatterns>,
    progress: &mut dyn FnMut(&Progress),
) -> Result<CertifyReport> {
    let start = std::time::Instant::now();
    check_model_certify(cfg)?;
    let meta = &model.meta;
    check_input_columns(
        table,
        &meta.shape.describe(),
        meta.shape.input_len(),
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
    let xs = patches(&x, &meta.shape, meta.bias)?;
    let k = meta.shape.n_patches();
    // The network in the program's units: the inverse of the folding done at training.
    let net = &model.network;
    let h = meta.shape.patch_len();
    let mut filters = net.filters.clone();
    for a in 0..filters.ncols() {
        filters.col_mut(a)[..h]
            .iter_mut()
            .for_each(|v| *v *= meta.feature_scale);
    }
    let design = Cnn3Network {
        filters,
        output: net.output.iter().map(|w| w / meta.target_scale).collect(),
        ..net.clone()
    };
    // The path penalty is invariant under rescaling: the balanced objective is the same.
    let network_objective = design.objective_patches(&xs, &y, loss, cfg.lambda)?;
    // A filter counts when some path through it carries weight; a unit when its output does.
    let used = |a: usize| {
        (0..design.units()).any(|j| design.output[j] != 0.0 && design.middle.get(j, a) != 0.0)
    };
    let own_first = (0..design.n_filters()).filter(|&a| used(a)).map(|a| {
        xs.matvec(design.filters.col(a))
            .iter()
            .map(|&v| v >= 0.0)
            .collect()
    });
    let chosen_first = first_layer_masks(&cfg.patterns, &xs, cfg.seed)?;
    let (first, added_first) = merge_patterns(&chosen_first, own_first);
    let g = design.unit_inputs_patches(&xs)?;
    let own_second = (0..design.units())
        .filter(|&j| design.output[j] != 0.0)
        .map(|j| g.col(j).iter().map(|&v| v >= 0.0).collect());
    let second = second.unwrap_or_else(|| default_second_layer(idx.len()));
    let chosen_second = second_layer_masks(second, &xs, k, meta.task, &y, cfg.seed)?;
    let (second_masks, added_second) = merge_patterns(&chosen_second, own_second);
    if first.is_empty() {
        return Err(CvxnnError::arg(
            "patterns",
            "no first-layer pattern with an active patch",
        ));
    }
    let program = Cnn3Program::new(&xs, k, &y, &first, &second_masks, loss, cfg.lambda)?;
    let solution = program.solve(&cfg.solver, None, progress)?;
    let convex = Cnn3Network::from_convex(meta.shape.clone(), meta.bias, first.len(), &solution.x)?;
    let exact_first = matches!(cfg.patterns, PatternSource::Exact { .. });
    let exact_second = second == SecondLayerPatterns::Exact;
    let in_words = |exact: bool, total: usize, added: usize| {
        if exact {
            format!("all {total}")
        } else {
            format!("{total} (sampled, {added} of them the network's own)")
        }
    };
    let exact_for = format!(
        "three-layer CNNs (conv, ReLU, sum pooling, linear, ReLU, linear) under the path penalty lambda sum |w2_j| |w1_ja| ||u_a|| (not weight decay on the three layers: the program is exact for the path penalty only), whose patterns lie in the program's: first layer {}, second layer {}",
        in_words(exact_first, first.len(), added_first),
        in_words(exact_second, second_masks.len(), added_second)
    );
    Ok(CertifyParts {
        network_objective,
        balanced_objective: network_objective,
        solution,
        certificate: if exact_first && exact_second {
            "global"
        } else {
            "sampled-patterns"
        }
        .into(),
        exact_for: Some(exact_for),
        convex_neurons: convex.n_filters(),
        patterns: first.len(),
        network_patterns_added: added_first,
        neurons: design.n_filters(),
        loss,
        task: meta.task,
        n: idx.len(),
        d: xs.ncols(),
        target_scale: meta.target_scale,
    }
    .report(cfg, start))
}

impl Cnn3Model {
    /// Raw outputs on raw features.
    pub fn decision_function(&self, raw: &Matrix) -> Result<Vec<f64>> {
        self.network.forward(raw)
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

    /// Metrics against a target column.
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
    pub fn save(&self, dir: &Path, report: Option<&Cnn3Report>, overwrite: bool) -> Result<()> {
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

    /// `0.weight` `(M, C, kh, kw)`, `0.bias` `(M)` with a bias, `4.weight` `(m, M)` = `K * w1`,
    /// `6.weight` `(1, m)` = `w2`.
    fn save_weights(&self, path: &Path) -> Result<()> {
        let shape = &self.meta.shape;
        let net = &self.network;
        let (h, mf, m, k) = (
            shape.patch_len(),
            net.n_filters(),
            net.units(),
            shape.n_patches() as f64,
        );
        let mut conv_shape = vec![mf, shape.channels];
        conv_shape.extend(&shape.kernel);
        let mut w = Vec::with_capacity(mf * h * 8);
        let mut b = Vec::with_capacity(mf * 8);
        for a in 0..mf {
            let col = net.filters.col(a);
            col[..h].iter().for_each(|v| w.extend(v.to_le_bytes()));
            b.extend(if self.meta.bias { col[h] } else { 0.0 }.to_le_bytes());
        }
        let mid: Vec<u8> = (0..m)
            .flat_map(|j| (0..mf).map(move |a| (j, a)))
            .flat_map(|(j, a)| (net.middle.get(j, a) * k).to_le_bytes())
            .collect();
        let out: Vec<u8> = net.output.iter().flat_map(|v| v.to_le_bytes()).collect();
        let mut tensors = vec![("0.weight", conv_shape, w)];
        if self.meta.bias {
            tensors.push(("0.bias", vec![mf], b));
        }
        tensors.push(("4.weight", vec![m, mf], mid));
        tensors.push(("6.weight", vec![1, m], out));
        let bad = |e: String| CvxnnError::Model {
            path: path.into(),
            message: e,
        };
        let views = tensors
            .iter()
            .map(|(name, s, bytes)| {
                TensorView::new(Dtype::F64, s.clone(), bytes)
                    .map(|v| (name.to_string(), v))
                    .map_err(|e| bad(e.to_string()))
            })
            .collect::<Result<Vec<_>>>()?;
        let mut info = HashMap::new();
        info.insert("format".to_string(), "pt".to_string());
        let bytes = safetensors::serialize(views, Some(info)).map_err(|e| bad(e.to_string()))?;
        write(path, &bytes)
    }

    /// Reads a model directory written by [`Cnn3Model::save`].
    pub fn load(dir: &Path) -> Result<Cnn3Model> {
        let meta_path = dir.join("model.json");
        let text =
            std::fs::read_to_string(&meta_path).map_err(|e| CvxnnError::io(&meta_path, e))?;
        let meta: Cnn3Meta = serde_json::from_str(&text).map_err(|e| CvxnnError::Model {
            path: meta_path.clone(),
            message: e.to_string(),
        })?;
        let path = dir.join("model.safetensors");
        let bytes = std::fs::read(&path).map_err(|e| CvxnnError::io(&path, e))?;
        let bad = |message: String| CvxnnError::Model {
            path: path.clone(),
            message,
        };
        let st = SafeTensors::deserialize(&bytes)
            .map_err(|e| bad(format!("not a safetensors file: {e}")))?;
        let get = |name: &str, len: usize| -> Result<Vec<f64>> {
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
            if vals.len() != len {
                return Err(bad(format!(
                    "tensor `{name}` has {} values, {len} expected",
                    vals.len()
                )));
            }
            Ok(vals)
        };
        let (h, mf, m) = (meta.shape.patch_len(), meta.filters, meta.units);
        let k = meta.shape.n_patches() as f64;
        let wv = get("0.weight", mf * h)?;
        let bv = if meta.bias {
            get("0.bias", mf)?
        } else {
            vec![0.0; mf]
        };
        let rows = h + usize::from(meta.bias);
        let filters = Matrix::from_fn(rows, mf, |i, a| if i < h { wv[a * h + i] } else { bv[a] });
        let mid = get("4.weight", m * mf)?;
        let middle = Matrix::from_fn(m, mf, |j, a| mid[j * mf + a] / k);
        let output = get("6.weight", m)?;
        let network = Cnn3Network {
            shape: meta.shape.clone(),
            bias: meta.bias,
            filters,
            middle,
            output,
        };
        Ok(Cnn3Model { meta, network })
    }
}

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

    /// The saved tensors applied with PyTorch's semantics (cross-correlation with zero padding,
    /// bias, ReLU, mean over positions, Linear, ReLU, Linear) give `decision_function`, and
    /// loading gives the same predictions.
    #[test]
    fn saved_tensors_reproduce_predictions_as_pytorch_modules() {
        let shape = ConvShape::new(1, vec![4, 5], vec![2, 3], 1, 1).unwrap();
        let (h, mf, m, n) = (shape.patch_len(), 3, 2, 4);
        let network = Cnn3Network {
            shape: shape.clone(),
            bias: true,
            filters: Matrix::from_fn(h + 1, mf, |i, j| ((i * 7 + j * 5) % 11) as f64 / 5.0 - 1.0),
            middle: Matrix::from_fn(m, mf, |j, a| ((j * 3 + a * 2) % 5) as f64 / 2.0 - 0.8),
            output: vec![0.9, -1.1],
        };
        let meta = Cnn3Meta {
            version: "test".into(),
            architecture: ARCHITECTURE.into(),
            shape: shape.clone(),
            bias: true,
            feature_scale: 1.0,
            task: Task::Regression,
            loss: LossKind::Squared,
            lambda: 1.0,
            seed: 0,
            patterns: 1,
            second_layer_patterns: 1,
            filters: mf,
            units: m,
            feature_names: (0..shape.input_len()).map(|i| format!("f{i}")).collect(),
            target: "y".into(),
            target_scale: 1.0,
            labels: None,
            torch_modules: String::new(),
        };
        let model = Cnn3Model { meta, network };
        let dir = std::env::temp_dir().join(format!("cvxnn-cnn3-test-{}", std::process::id()));
        model.save(&dir, None, true).unwrap();
        assert!(is_cnn3_model(&dir));
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
        let (w, b, l1, l2) = (
            read("0.weight"),
            read("0.bias"),
            read("4.weight"),
            read("6.weight"),
        );
        let x = Matrix::from_fn(n, shape.input_len(), |i, j| {
            ((i * 13 + j * 3) % 7) as f64 - 3.0
        });
        let (oh, ow) = (shape.output_size()[0], shape.output_size()[1]);
        let scores = model.decision_function(&x).unwrap();
        for (s, score) in scores.iter().enumerate() {
            let mut pooled = vec![0.0; mf];
            for (f, p) in pooled.iter_mut().enumerate() {
                for oi in 0..oh {
                    for oj in 0..ow {
                        let mut acc = b[f];
                        for a in 0..2 {
                            for e in 0..3 {
                                let i = (oi + a) as isize - 1;
                                let j = (oj + e) as isize - 1;
                                if i < 0 || j < 0 || i >= 4 || j >= 5 {
                                    continue;
                                }
                                acc +=
                                    w[(f * 2 + a) * 3 + e] * x.get(s, i as usize * 5 + j as usize);
                            }
                        }
                        *p += acc.max(0.0) / (oh * ow) as f64;
                    }
                }
            }
            let out: f64 = (0..m)
                .map(|j| {
                    let pre: f64 = (0..mf).map(|a| l1[j * mf + a] * pooled[a]).sum();
                    l2[j] * pre.max(0.0)
                })
                .sum();
            assert!(
                (out - score).abs() <= 1e-12 * out.abs().max(1.0),
                "{out} vs {score}"
            );
        }
        let back = Cnn3Model::load(&dir).unwrap();
        for (a, b) in back.decision_function(&x).unwrap().iter().zip(&scores) {
            assert!((a - b).abs() <= 1e-12 * b.abs().max(1.0));
        }
        let _ = std::fs::remove_dir_all(&dir);
    }
}
