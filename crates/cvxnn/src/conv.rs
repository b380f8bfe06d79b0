//! The convolutional pipeline on a table (DESIGN section 2): each row's features are one sample
//! of shape `(C, H, W)` (or `(C, L)`), row-major; train the two-layer CNN with global sum pooling
//! ([`ConvProgram`]), save it in PyTorch naming, predict.
//!
//! **Preprocessing.** Features are divided by ONE global scale (the largest absolute training
//! feature value), not z-scored per feature: standardizing each pixel on its own would give every
//! position its own affine map and break the weight sharing of a convolution (a filter must see
//! the same transformation at every position), and centering would make the zero padding a
//! non-zero value. A scalar scale keeps both and is folded into the exported filters.
//! **Bias:** every patch gets a constant-1 last entry, so each filter has a bias (the PyTorch
//! convolution's bias, added at every position, padded ones included).

use std::collections::HashMap;
use std::path::Path;

use safetensors::tensor::TensorView;
use safetensors::{Dtype, SafeTensors};
use serde::{Deserialize, Serialize};

use crate::data::{binary_class, patches, ClassLabels, ConvShape, Table, TargetColumn, Task};
use crate::error::{CvxnnError, Result};
use crate::estimator::{certificate_name, exact_patterns, prepare_training_data, PatternSource};
use crate::linalg::Matrix;
use crate::loss::LossKind;
use crate::metrics::{classification_metrics, regression_metrics, Metrics};
use crate::network::{ConvNetwork, Network};
use crate::patterns::sample_patterns;
use crate::program::{ConvProgram, ModelKind};
use crate::solver::{relative_gap, Progress, SolverSettings, Status};

/// Everything [`train`] needs besides the data.
#[derive(Clone, Debug, PartialEq)]
pub struct ConvTrainConfig {
    /// Regression or binary; `None` infers it from the target. Multiclass is refused.
    pub task: Option<Task>,
    /// Gated ReLU (R-FISTA) or ReLU (augmented Lagrangian).
    pub model: ModelKind,
    /// Data-fit term; `None`: squared for regression, logistic for binary.
    pub loss: Option<LossKind>,
    /// Regularization strength (> 0).
    pub lambda: f64,
    /// `Sample(P)` (seeded gates in `R^h`) or `Exact` (ReLU only).
    pub patterns: PatternSource,
    /// Convolution shape.
    pub shape: ConvShape,
    /// Per-filter bias (a constant-1 entry in every patch).
    pub bias: bool,
    /// Regression: divide the targets by their training standard deviation.
    pub scale_target: bool,
    /// Fraction of samples held out for testing, in [0, 1).
    pub test_fraction: f64,
    /// Seed of the split and the gates.
    pub seed: u64,
    /// First-order solver settings.
    pub solver: SolverSettings,
}

/// `model.json` of a CNN model.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ConvMeta {
    /// cvxnn version that wrote the model.
    pub version: String,
    /// Always `"cnn-sum-pool"`: two-layer CNN with global sum pooling.
    pub architecture: String,
    /// Gated ReLU or ReLU.
    pub model: ModelKind,
    /// Convolution shape.
    pub shape: ConvShape,
    /// Per-filter bias.
    pub bias: bool,
    /// Global feature scale the solve saw features divided by (folded into the weights).
    pub feature_scale: f64,
    /// Task.
    pub task: Task,
    /// Loss.
    pub loss: LossKind,
    /// Regularization strength.
    pub lambda: f64,
    /// Seed.
    pub seed: u64,
    /// Patterns in the program.
    pub patterns: usize,
    /// Filters `m`.
    pub filters: usize,
    /// Raw feature names, in the order of the `(C, H, W)` flattening.
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

/// `report.json` of a CNN training run.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ConvReport {
    /// Convex objective.
    pub objective: f64,
    /// Objective of the rebuilt CNN (equal up to the violation).
    pub network_objective: f64,
    /// Lower bound on the program's optimum.
    pub dual_bound: f64,
    /// `objective - dual_bound`.
    pub gap: f64,
    /// Relative gap.
    pub relative_gap: f64,
    /// `global` (exact patterns of the patch matrix) or `sampled-patterns`.
    pub certificate: String,
    /// Solver status.
    pub status: Status,
    /// First-order iterations.
    pub iterations: usize,
    /// Solve time.
    pub seconds: f64,
    /// Filters of the rebuilt network.
    pub filters: usize,
    /// Patterns.
    pub patterns: usize,
    /// Regularization strength.
    pub lambda: f64,
    /// Relative cone-constraint violation.
    pub violation: f64,
    /// Model.
    pub model: String,
    /// Convolution shape, as text (`input 1,8,8, kernel 3x3, stride 1, padding 0`).
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

/// A trained CNN on raw features (scales folded in).
#[derive(Clone, Debug, PartialEq)]
pub struct ConvModel {
    /// Metadata.
    pub meta: ConvMeta,
    /// The network on raw features.
    pub network: ConvNetwork,
}

/// Whether `dir/model.json` holds a CNN model (its `architecture` is `cnn-sum-pool`).
pub fn is_conv_model(dir: &Path) -> bool {
    std::fs::read_to_string(dir.join("model.json"))
        .ok()
        .and_then(|t| serde_json::from_str::<serde_json::Value>(&t).ok())
        .is_some_and(|v| v["architecture"] == "cnn-sum-pool")
}

/// The PyTorch module list of a shape (1-D or 2-D).
fn torch_modules(shape: &ConvShape, bias: bool, filters: usize, model: ModelKind) -> String {
    let d = if shape.spatial.len() == 1 { "1d" } else { "2d" };
    let kernel: Vec<String> = shape.kernel.iter().map(|k| k.to_string()).collect();
    let kernel = if kernel.len() == 1 {
        format!("({},)", kernel[0])
    } else {
        format!("({})", kernel.join(", "))
    };
    format!(
        "Sequential(Conv{d}({}, {filters}, {kernel}, stride={}, padding={}, bias={}), ReLU(), AdaptiveAvgPool{d}(1), Flatten(), Linear({filters}, 1, bias=False)) — the Linear weight holds alpha * K (K = {} patches), so the average pooling times K is cvxnn's sum pooling",
        shape.channels,
        shape.stride,
        shape.padding,
        if bias { "True" } else { "False" },
        shape.n_patches()
    ) + match model {
        ModelKind::Relu => "",
        ModelKind::GatedRelu => "; gated ReLU: each filter's on/off comes from a second convolution of the same shape (gate.weight, gate.bias) — multiply the conv output by 1[gate conv >= 0] instead of ReLU()",
    }
}

/// Trains the CNN on `table` as configured.
pub fn train(
    table: &Table,
    cfg: &ConvTrainConfig,
    progress: &mut dyn FnMut(&Progress),
) -> Result<(ConvModel, ConvReport)> {
    if !(cfg.lambda.is_finite() && cfg.lambda > 0.0) {
        return Err(CvxnnError::arg(
            "lambda",
            format!("must be a finite number > 0, got {}", cfg.lambda),
        ));
    }
    cfg.solver.validate()?;
    if table.features.ncols() != cfg.shape.input_len() {
        return Err(CvxnnError::arg(
            "input-shape",
            format!(
                "{} has {} feature columns, the input shape {} needs {}",
                table.path.display(),
                table.features.ncols(),
                cfg.shape.describe(),
                cfg.shape.input_len()
            ),
        ));
    }
    if cfg.model == ModelKind::GatedRelu && matches!(cfg.patterns, PatternSource::Exact { .. }) {
        return Err(CvxnnError::arg(
            "patterns",
            "exact patterns need --model cnn-relu (the gated model needs a gate per pattern; use --patterns N)",
        ));
    }
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
            "the CNN models take one output (regression or binary) for now",
        ));
    }
    let max_abs = data.x.as_slice().iter().fold(0.0f64, |a, v| a.max(v.abs()));
    let feature_scale = if max_abs > 0.0 { max_abs } else { 1.0 };
    let mut x = data.x.clone();
    x.as_mut_slice()
        .iter_mut()
        .for_each(|v| *v /= feature_scale);
    let xs = patches(&x, &cfg.shape, cfg.bias)?;
    let k = cfg.shape.n_patches();
    let (masks, gates) = match &cfg.patterns {
        PatternSource::Sample(p) => {
            let g = sample_patterns(&xs, *p, cfg.seed)?;
            (g.masks, Some(g.gates))
        }
        PatternSource::Exact { max_patterns } => (exact_patterns(&xs, *max_patterns)?, None),
        _ => {
            return Err(CvxnnError::arg(
                "patterns",
                "the CNN models take --patterns N or exact",
            ))
        }
    };
    let program = ConvProgram::new(
        &xs,
        k,
        &data.y_train,
        1,
        &masks,
        data.loss,
        cfg.model,
        cfg.lambda,
    )?;
    let sol = program.solve(&cfg.solver, None, progress)?;
    let gates_ref = (cfg.model == ModelKind::GatedRelu)
        .then_some(gates.as_ref())
        .flatten();
    let net =
        ConvNetwork::from_convex(cfg.model, cfg.shape.clone(), cfg.bias, 1, &sol.x, gates_ref)?;
    let network_objective = net.objective_patches(&xs, &data.y_train, data.loss, cfg.lambda)?;
    // Fold the feature scale into the filters (not the bias entry) and the target scale into
    // the output weights: the saved network acts on raw features, in target units.
    let h = cfg.shape.patch_len();
    let fold = |m: &Matrix| {
        let mut m = m.clone();
        for j in 0..m.ncols() {
            m.col_mut(j)[..h]
                .iter_mut()
                .for_each(|v| *v /= feature_scale);
        }
        m
    };
    let raw = ConvNetwork {
        shape: cfg.shape.clone(),
        bias: cfg.bias,
        net: Network {
            hidden: fold(&net.net.hidden),
            alpha: net
                .net
                .alpha
                .iter()
                .map(|a| a * data.target_scale)
                .collect(),
            outputs: 1,
            gates: net.net.gates.as_ref().map(fold),
        },
    };
    let status = if relative_gap(sol.objective, sol.dual_bound) <= cfg.solver.tol
        && sol.violation <= cfg.solver.tol
    {
        Status::Converged
    } else {
        sol.status
    };
    let meta = ConvMeta {
        version: env!("CARGO_PKG_VERSION").to_string(),
        architecture: "cnn-sum-pool".into(),
        model: cfg.model,
        shape: cfg.shape.clone(),
        bias: cfg.bias,
        feature_scale,
        task: data.task,
        loss: data.loss,
        lambda: cfg.lambda,
        seed: cfg.seed,
        patterns: masks.len(),
        filters: raw.filters(),
        feature_names: table.feature_names.clone(),
        target: table.target_name.clone(),
        target_scale: data.target_scale,
        labels: data.labels.clone(),
        torch_modules: torch_modules(&cfg.shape, cfg.bias, raw.filters(), cfg.model),
    };
    let model = ConvModel { meta, network: raw };
    let train_x = table.features.select_rows(&data.train_idx);
    let train = model.metrics(&train_x, &table.target.select(&data.train_idx))?;
    let test = if data.test_idx.is_empty() {
        None
    } else {
        let xt = table.features.select_rows(&data.test_idx);
        Some(model.metrics(&xt, &table.target.select(&data.test_idx))?)
    };
    let report = ConvReport {
        objective: sol.objective,
        network_objective,
        dual_bound: sol.dual_bound,
        gap: sol.objective - sol.dual_bound,
        relative_gap: relative_gap(sol.objective, sol.dual_bound),
        certificate: certificate_name(&cfg.patterns).into(),
        status,
        iterations: sol.iterations,
        seconds: sol.seconds,
        filters: model.network.filters(),
        patterns: masks.len(),
        lambda: cfg.lambda,
        violation: sol.violation,
        model: format!("cnn-{}", cfg.model),
        shape: cfg.shape.describe(),
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

impl ConvModel {
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
    pub fn save(&self, dir: &Path, report: Option<&ConvReport>, overwrite: bool) -> Result<()> {
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

    /// The weights in PyTorch naming (see [`ConvMeta::torch_modules`]): `0.weight`
    /// `(m, C, kh, kw)` (or `(m, C, k)`), `0.bias` `(m)` with a bias, `4.weight` `(1, m)` =
    /// `alpha * K`; gated models add `gate.weight`, `gate.bias` (same shapes as the filters).
    fn save_weights(&self, path: &Path) -> Result<()> {
        let shape = &self.meta.shape;
        let (h, m, k) = (
            shape.patch_len(),
            self.network.filters(),
            shape.n_patches() as f64,
        );
        let mut conv_shape = vec![m, shape.channels];
        conv_shape.extend(&shape.kernel);
        let filters = |w: &Matrix| -> (Vec<u8>, Vec<u8>) {
            let mut wb = Vec::with_capacity(m * h * 8);
            let mut bb = Vec::with_capacity(m * 8);
            for j in 0..m {
                let col = w.col(j);
                col[..h].iter().for_each(|v| wb.extend(v.to_le_bytes()));
                bb.extend(if self.meta.bias { col[h] } else { 0.0 }.to_le_bytes());
            }
            (wb, bb)
        };
        let (w, b) = filters(&self.network.net.hidden);
        let out: Vec<u8> = self
            .network
            .net
            .alpha
            .iter()
            .flat_map(|a| (a * k).to_le_bytes())
            .collect();
        let mut tensors = vec![("0.weight", conv_shape.clone(), w)];
        if self.meta.bias {
            tensors.push(("0.bias", vec![m], b));
        }
        tensors.push(("4.weight", vec![1, m], out));
        if let Some(g) = &self.network.net.gates {
            let (gw, gb) = filters(g);
            tensors.push(("gate.weight", conv_shape, gw));
            tensors.push(("gate.bias", vec![m], gb));
        }
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

    /// Reads a CNN model directory written by [`ConvModel::save`].
    pub fn load(dir: &Path) -> Result<ConvModel> {
        let meta_path = dir.join("model.json");
        let text =
            std::fs::read_to_string(&meta_path).map_err(|e| CvxnnError::io(&meta_path, e))?;
        let meta: ConvMeta = serde_json::from_str(&text).map_err(|e| CvxnnError::Model {
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
        let (h, m) = (meta.shape.patch_len(), meta.filters);
        let k = meta.shape.n_patches() as f64;
        let rows = h + usize::from(meta.bias);
        let filters = |w: &str, b: &str| -> Result<Matrix> {
            let wv = get(w, m * h)?;
            let bv = if meta.bias { get(b, m)? } else { vec![0.0; m] };
            Ok(Matrix::from_fn(rows, m, |i, j| {
                if i < h {
                    wv[j * h + i]
                } else {
                    bv[j]
                }
            }))
        };
        let hidden = filters("0.weight", "0.bias")?;
        let gates = match meta.model {
            ModelKind::GatedRelu => Some(filters("gate.weight", "gate.bias")?),
            ModelKind::Relu => None,
        };
        let alpha = get("4.weight", m)?.iter().map(|a| a / k).collect();
        let network = ConvNetwork {
            shape: meta.shape.clone(),
            bias: meta.bias,
            net: Network {
                hidden,
                alpha,
                outputs: 1,
                gates,
            },
        };
        Ok(ConvModel { meta, network })
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
        let meta = ConvMeta {
            version: "test".into(),
            architecture: "cnn-sum-pool".into(),
            model: ModelKind::Relu,
            shape: shape.clone(),
            bias: true,
            feature_scale: 1.0,
            task: Task::Regression,
            loss: LossKind::Squared,
            lambda: 1.0,
            seed: 0,
            patterns: 1,
            filters: m,
            feature_names: (0..shape.input_len()).map(|i| format!("f{i}")).collect(),
            target: "y".into(),
            target_scale: 1.0,
            labels: None,
            torch_modules: String::new(),
        };
        let model = ConvModel { meta, network };
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
        let back = ConvModel::load(&dir).unwrap();
        // Loading divides the Linear weights by K again: equal up to rounding.
        for (a, b) in back.decision_function(&x).unwrap().iter().zip(&scores) {
            assert!((a - b).abs() <= 1e-12 * b.abs().max(1.0));
        }
        let _ = std::fs::remove_dir_all(&dir);
    }
}
