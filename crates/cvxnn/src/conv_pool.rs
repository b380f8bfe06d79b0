//! The pooled-CNN pipeline (DESIGN section 2; `cvxnn train --model cnn-relu --pool avg:S`):
//! the same preprocessing as [`crate::conv`] (one global feature scale, a per-filter bias),
//! then [`AvgPoolProgram`] or [`MaxPoolProgram`], the rebuilt [`PooledConvNetwork`] saved as
//! `Sequential(Conv, ReLU, AvgPool(S) | MaxPool(S), Flatten, Linear(m a, 1, bias=False))`.
//!
//! Which program is exact (the report's `exact_for` says it in words, `exact` for the full
//! architecture): gated ReLU with average pooling — the nuclear-norm program, exact for
//! networks gated by the sampled gates; ReLU with average pooling — per-window filters (exact
//! for that sub-architecture with exact patterns, an upper bound for filters feeding every
//! window); ReLU with max pooling — per-window filters over joint (activation, argmax)
//! patterns, exact for that sub-architecture with exact patterns, and for the full
//! architecture when one window covers the map (global max pooling).

use std::collections::HashMap;
use std::path::Path;

use safetensors::tensor::TensorView;
use safetensors::{Dtype, SafeTensors};
use serde::{Deserialize, Serialize};

use crate::conv::{ConvMeta, ConvReport, ConvTrainConfig};
use crate::data::{binary_class, patches, PoolKind, Pooling, Table, TargetColumn, Task};
use crate::error::{CvxnnError, Result};
use crate::estimator::{certificate_name, exact_patterns, prepare_training_data, PatternSource};
use crate::linalg::Matrix;
use crate::metrics::{classification_metrics, regression_metrics, Metrics};
use crate::network::{Network, PooledConvNetwork};
use crate::patterns::sample_patterns;
use crate::program::{AvgPoolProgram, JointPatterns, MaxPoolProgram, ModelKind};
use crate::solver::{relative_gap, Progress, Solution, Status};

/// `model.json` of a pooled CNN: the sum-pool model's fields plus the pooling.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct PooledMeta {
    /// Shape, scales, task, labels; `architecture` is `cnn-avg-pool` or `cnn-max-pool`.
    #[serde(flatten)]
    pub base: ConvMeta,
    /// Pooling kind and window size.
    pub pool: Pooling,
    /// Pooling windows `a` (the Linear layer takes `filters * a` inputs).
    pub windows: usize,
}

/// `report.json` of a pooled CNN run.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct PooledReport {
    /// The sum-pool report's fields (`certificate`: `global` or `sampled-patterns`, relative
    /// to the architecture in `exact_for`).
    #[serde(flatten)]
    pub base: ConvReport,
    /// Pooling, `avg:2`.
    pub pool: String,
    /// Pooling windows `a`.
    pub windows: usize,
    /// The architecture the program is exact for, in words.
    pub exact_for: String,
    /// Whether the program is exact for the full architecture (filters feeding every window).
    pub exact: bool,
}

/// A trained pooled CNN on raw features (scales folded in).
#[derive(Clone, Debug, PartialEq)]
pub struct PooledModel {
    /// Metadata.
    pub meta: PooledMeta,
    /// The network on raw features.
    pub network: PooledConvNetwork,
}

/// The architecture name written in `model.json`.
pub fn architecture(kind: PoolKind) -> &'static str {
    match kind {
        PoolKind::Avg => "cnn-avg-pool",
        PoolKind::Max => "cnn-max-pool",
    }
}

/// Whether `dir/model.json` holds a pooled CNN model.
pub fn is_pooled_model(dir: &Path) -> bool {
    std::fs::read_to_string(dir.join("model.json"))
        .ok()
        .and_then(|t| serde_json::from_str::<serde_json::Value>(&t).ok())
        .is_some_and(|v| v["architecture"] == "cnn-avg-pool" || v["architecture"] == "cnn-max-pool")
}

fn torch_modules(meta: &ConvMeta, pool: Pooling, windows: usize) -> String {
    let shape = &meta.shape;
    let d = if shape.spatial.len() == 1 { "1d" } else { "2d" };
    let kernel: Vec<String> = shape.kernel.iter().map(|k| k.to_string()).collect();
    let kernel = if kernel.len() == 1 {
        format!("({},)", kernel[0])
    } else {
        format!("({})", kernel.join(", "))
    };
    let m = meta.filters;
    let p = match pool.kind {
        PoolKind::Avg => "AvgPool",
        PoolKind::Max => "MaxPool",
    };
    format!(
        "Sequential(Conv{d}({}, {m}, {kernel}, stride={}, padding={}, bias={}), ReLU(), {p}{d}({}), Flatten(), Linear({}, 1, bias=False)) — Flatten is channel-major: Linear weight [0, j * {windows} + w] is filter j's weight on window w",
        shape.channels,
        shape.stride,
        shape.padding,
        if meta.bias { "True" } else { "False" },
        pool.size,
        m * windows,
    ) + match meta.model {
        ModelKind::Relu => "",
        ModelKind::GatedRelu => "; gated ReLU: each filter's on/off comes from a second convolution of the same shape (gate.weight, gate.bias) — multiply the conv output by 1[gate conv >= 0] instead of ReLU()",
    }
}

/// What the program solved is exact for: (words, exact for the full architecture).
fn exactness(model: ModelKind, pool: Pooling, windows: usize) -> (String, bool) {
    match (pool.kind, model) {
        (PoolKind::Avg, ModelKind::GatedRelu) => (
            "gated ReLU networks whose gates are the sampled ones (nuclear-norm program)".into(),
            true,
        ),
        (PoolKind::Avg, ModelKind::Relu) if windows == 1 => {
            ("every network (one window: global average pooling)".into(), true)
        }
        (PoolKind::Max, _) if windows == 1 => (
            "every network (one window: global max pooling, joint activation/argmax patterns)"
                .into(),
            true,
        ),
        (PoolKind::Avg, ModelKind::Relu) => (
            "networks whose filters each feed one window (per-window group L2); an upper bound for filters feeding every window".into(),
            false,
        ),
        (PoolKind::Max, _) => (
            "networks whose filters each feed one window (joint activation/argmax patterns); an upper bound for filters feeding every window".into(),
            false,
        ),
    }
}

/// Trains the pooled CNN on `table` as configured.
pub fn train(
    table: &Table,
    cfg: &ConvTrainConfig,
    pool: Pooling,
    progress: &mut dyn FnMut(&Progress),
) -> Result<(PooledModel, PooledReport)> {
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
    let windows = pool.windows(&cfg.shape)?;
    if pool.kind == PoolKind::Max && cfg.model == ModelKind::GatedRelu {
        return Err(CvxnnError::arg(
            "pool",
            "max pooling takes --model cnn-relu (a gated unit's maximum is not linear in its filter)",
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
    let (sol, net, patterns): (Solution, PooledConvNetwork, usize) =
        match (pool.kind, &cfg.patterns) {
            (PoolKind::Avg, src) => {
                let (masks, gates) = match src {
                    PatternSource::Sample(p) => {
                        let g = sample_patterns(&xs, *p, cfg.seed)?;
                        (g.masks, Some(g.gates))
                    }
                    PatternSource::Exact { max_patterns } => {
                        (exact_patterns(&xs, *max_patterns)?, None)
                    }
                    _ => {
                        return Err(CvxnnError::arg(
                            "patterns",
                            "the CNN models take --patterns N or exact",
                        ))
                    }
                };
                let program = AvgPoolProgram::new(
                    &xs,
                    k,
                    &windows,
                    &data.y_train,
                    &masks,
                    data.loss,
                    cfg.model,
                    cfg.lambda,
                )?;
                let sol = program.solve(&cfg.solver, None, progress)?;
                let gates_ref = (cfg.model == ModelKind::GatedRelu)
                    .then_some(gates.as_ref())
                    .flatten();
                let net = PooledConvNetwork::from_convex(
                    cfg.model,
                    cfg.shape.clone(),
                    cfg.bias,
                    pool,
                    &sol.x,
                    gates_ref,
                )?;
                (sol, net, masks.len())
            }
            (PoolKind::Max, src) => {
                let gates;
                let joint = match src {
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
                let program = MaxPoolProgram::new(
                    &xs,
                    k,
                    &windows,
                    &data.y_train,
                    joint,
                    data.loss,
                    cfg.lambda,
                )?;
                let sol = program.solve(&cfg.solver, None, progress)?;
                let net = PooledConvNetwork::from_window_blocks(
                    cfg.shape.clone(),
                    cfg.bias,
                    pool,
                    &program.blocks(&sol.x),
                )?;
                let total = program.patterns_per_window().iter().sum();
                (sol, net, total)
            }
        };
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
    let raw = PooledConvNetwork {
        shape: cfg.shape.clone(),
        bias: cfg.bias,
        pool,
        net: Network {
            hidden: fold(&net.net.hidden),
            alpha: net
                .net
                .alpha
                .iter()
                .map(|a| a * data.target_scale)
                .collect(),
            outputs: windows.len(),
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
    let mut base = ConvMeta {
        version: env!("CARGO_PKG_VERSION").to_string(),
        architecture: architecture(pool.kind).into(),
        model: cfg.model,
        shape: cfg.shape.clone(),
        bias: cfg.bias,
        feature_scale,
        task: data.task,
        loss: data.loss,
        lambda: cfg.lambda,
        seed: cfg.seed,
        patterns,
        filters: raw.filters(),
        feature_names: table.feature_names.clone(),
        target: table.target_name.clone(),
        target_scale: data.target_scale,
        labels: data.labels.clone(),
        torch_modules: String::new(),
    };
    base.torch_modules = torch_modules(&base, pool, windows.len());
    let model = PooledModel {
        meta: PooledMeta {
            base,
            pool,
            windows: windows.len(),
        },
        network: raw,
    };
    let train_x = table.features.select_rows(&data.train_idx);
    let train = model.metrics(&train_x, &table.target.select(&data.train_idx))?;
    let test = if data.test_idx.is_empty() {
        None
    } else {
        let xt = table.features.select_rows(&data.test_idx);
        Some(model.metrics(&xt, &table.target.select(&data.test_idx))?)
    };
    let (exact_for, exact) = exactness(cfg.model, pool, windows.len());
    let report = PooledReport {
        base: ConvReport {
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
            patterns,
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
        },
        pool: pool.describe(),
        windows: windows.len(),
        exact_for,
        exact,
    };
    Ok((model, report))
}

impl PooledModel {
    /// Raw outputs on raw features.
    pub fn decision_function(&self, raw: &Matrix) -> Result<Vec<f64>> {
        self.network.forward(raw)
    }

    /// Predictions as text: values (regression) or the original labels (binary).
    pub fn predict_strings(&self, raw: &Matrix) -> Result<Vec<String>> {
        let scores = self.decision_function(raw)?;
        match &self.meta.base.labels {
            Some(l) if self.meta.base.task == Task::Binary => Ok(scores
                .into_iter()
                .map(|s| l.decode(binary_class(s)).unwrap_or_default().to_string())
                .collect()),
            _ => Ok(scores.iter().map(f64::to_string).collect()),
        }
    }

    /// Metrics against a target column.
    pub fn metrics(&self, raw: &Matrix, target: &TargetColumn) -> Result<Metrics> {
        let scores = self.decision_function(raw)?;
        match &self.meta.base.labels {
            Some(l) if self.meta.base.task == Task::Binary => {
                let truth = l.encode(target)?;
                let pred: Vec<usize> = scores.into_iter().map(binary_class).collect();
                Ok(classification_metrics(l.labels(), &truth, &pred))
            }
            _ => Ok(regression_metrics(&scores, &target.values()?)),
        }
    }

    /// Writes `model.json`, `model.safetensors` (and `report.json`) into `dir`; existing files
    /// are kept unless `overwrite`.
    pub fn save(&self, dir: &Path, report: Option<&PooledReport>, overwrite: bool) -> Result<()> {
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

    /// The weights in PyTorch naming: `0.weight` `(m, C, kh, kw)` (or `(m, C, k)`), `0.bias`
    /// `(m)` with a bias, `4.weight` `(1, m a)` (filter-major, the channel-major Flatten order);
    /// gated models add `gate.weight`, `gate.bias`.
    fn save_weights(&self, path: &Path) -> Result<()> {
        let meta = &self.meta.base;
        let shape = &meta.shape;
        let (h, m, a) = (shape.patch_len(), self.network.filters(), self.meta.windows);
        let mut conv_shape = vec![m, shape.channels];
        conv_shape.extend(&shape.kernel);
        let filters = |w: &Matrix| -> (Vec<u8>, Vec<u8>) {
            let mut wb = Vec::with_capacity(m * h * 8);
            let mut bb = Vec::with_capacity(m * 8);
            for j in 0..m {
                let col = w.col(j);
                col[..h].iter().for_each(|v| wb.extend(v.to_le_bytes()));
                bb.extend(if meta.bias { col[h] } else { 0.0 }.to_le_bytes());
            }
            (wb, bb)
        };
        let (w, b) = filters(&self.network.net.hidden);
        let out: Vec<u8> = self
            .network
            .net
            .alpha
            .iter()
            .flat_map(|v| v.to_le_bytes())
            .collect();
        let mut tensors = vec![("0.weight", conv_shape.clone(), w)];
        if meta.bias {
            tensors.push(("0.bias", vec![m], b));
        }
        tensors.push(("4.weight", vec![1, m * a], out));
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

    /// Reads a pooled CNN model directory written by [`PooledModel::save`].
    pub fn load(dir: &Path) -> Result<PooledModel> {
        let meta_path = dir.join("model.json");
        let text =
            std::fs::read_to_string(&meta_path).map_err(|e| CvxnnError::io(&meta_path, e))?;
        let meta: PooledMeta = serde_json::from_str(&text).map_err(|e| CvxnnError::Model {
            path: meta_path.clone(),
            message: e.to_string(),
        })?;
        let windows = meta.pool.windows(&meta.base.shape)?.len();
        if windows != meta.windows {
            return Err(CvxnnError::Model {
                path: meta_path,
                message: format!(
                    "{} windows recorded, the shape and pooling give {windows}",
                    meta.windows
                ),
            });
        }
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
        let base = &meta.base;
        let (h, m) = (base.shape.patch_len(), base.filters);
        let rows = h + usize::from(base.bias);
        let filters = |w: &str, b: &str| -> Result<Matrix> {
            let wv = get(w, m * h)?;
            let bv = if base.bias { get(b, m)? } else { vec![0.0; m] };
            Ok(Matrix::from_fn(rows, m, |i, j| {
                if i < h {
                    wv[j * h + i]
                } else {
                    bv[j]
                }
            }))
        };
        let hidden = filters("0.weight", "0.bias")?;
        let gates = match base.model {
            ModelKind::GatedRelu => Some(filters("gate.weight", "gate.bias")?),
            ModelKind::Relu => None,
        };
        let alpha = get("4.weight", m * windows)?;
        let network = PooledConvNetwork {
            shape: base.shape.clone(),
            bias: base.bias,
            pool: meta.pool,
            net: Network {
                hidden,
                alpha,
                outputs: windows,
                gates,
            },
        };
        Ok(PooledModel { meta, network })
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
    use crate::data::ConvShape;
    use crate::loss::LossKind;

    /// The saved tensors, applied with PyTorch's semantics (cross-correlation with zero padding
    /// and bias, ReLU, `AvgPool2d(S)` / `MaxPool2d(S)` in floor mode, channel-major `Flatten`,
    /// `Linear` without bias), give `decision_function`; loading gives the same network.
    #[test]
    fn saved_tensors_reproduce_predictions_as_pytorch_modules() {
        let shape = ConvShape::new(2, vec![5, 6], vec![2, 2], 1, 1).unwrap();
        let (h, m, n) = (shape.patch_len(), 3, 4);
        for kind in [PoolKind::Avg, PoolKind::Max] {
            let pool = Pooling { kind, size: 2 };
            let a = pool.windows(&shape).unwrap().len();
            let (oh, ow) = (shape.output_size()[0], shape.output_size()[1]);
            let (ph, pw) = (oh / 2, ow / 2);
            assert_eq!(a, ph * pw);
            let hidden =
                Matrix::from_fn(h + 1, m, |i, j| ((i * 7 + j * 5) % 11) as f64 / 5.0 - 1.0);
            let alpha: Vec<f64> = (0..m * a)
                .map(|i| ((i * 3) % 7) as f64 / 3.0 - 1.0)
                .collect();
            let network = PooledConvNetwork {
                shape: shape.clone(),
                bias: true,
                pool,
                net: Network {
                    hidden,
                    alpha,
                    outputs: a,
                    gates: None,
                },
            };
            let base = ConvMeta {
                version: "test".into(),
                architecture: architecture(kind).into(),
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
            let model = PooledModel {
                meta: PooledMeta {
                    base,
                    pool,
                    windows: a,
                },
                network,
            };
            let dir =
                std::env::temp_dir().join(format!("cvxnn-pool-test-{}-{kind}", std::process::id()));
            model.save(&dir, None, true).unwrap();
            assert!(is_pooled_model(&dir));
            let bytes = std::fs::read(dir.join("model.safetensors")).unwrap();
            let st = SafeTensors::deserialize(&bytes).unwrap();
            let read = |name: &str| -> (Vec<usize>, Vec<f64>) {
                let t = st.tensor(name).unwrap();
                let v = t
                    .data()
                    .chunks_exact(8)
                    .map(|c| f64::from_le_bytes(c.try_into().unwrap()))
                    .collect();
                (t.shape().to_vec(), v)
            };
            let ((ws, w), (_, b), (ls, lin)) = (read("0.weight"), read("0.bias"), read("4.weight"));
            assert_eq!(ws, vec![m, 2, 2, 2]);
            assert_eq!(ls, vec![1, m * a]);
            let x = Matrix::from_fn(n, shape.input_len(), |i, j| {
                ((i * 13 + j * 3) % 7) as f64 - 3.0
            });
            let scores = model.decision_function(&x).unwrap();
            for (s, score) in scores.iter().enumerate() {
                // conv + ReLU: (m, oh, ow)
                let conv = |f: usize, oi: usize, oj: usize| -> f64 {
                    let mut acc = b[f];
                    for c in 0..2 {
                        for p in 0..2 {
                            for q in 0..2 {
                                let i = (oi + p) as isize - 1;
                                let j = (oj + q) as isize - 1;
                                if i < 0 || j < 0 || i >= 5 || j >= 6 {
                                    continue;
                                }
                                let v = x.get(s, (c * 5 + i as usize) * 6 + j as usize);
                                acc += w[((f * 2 + c) * 2 + p) * 2 + q] * v;
                            }
                        }
                    }
                    acc.max(0.0)
                };
                let mut flat = Vec::new();
                for f in 0..m {
                    for pi in 0..ph {
                        for pj in 0..pw {
                            let vals = [(0, 0), (0, 1), (1, 0), (1, 1)]
                                .map(|(p, q)| conv(f, pi * 2 + p, pj * 2 + q));
                            flat.push(match kind {
                                PoolKind::Avg => vals.iter().sum::<f64>() / 4.0,
                                PoolKind::Max => vals.iter().copied().fold(f64::MIN, f64::max),
                            });
                        }
                    }
                }
                let out: f64 = flat.iter().zip(&lin).map(|(p, q)| p * q).sum();
                assert!(
                    (out - score).abs() <= 1e-12 * out.abs().max(1.0),
                    "{kind}: {out} vs {score}"
                );
            }
            let back = PooledModel::load(&dir).unwrap();
            assert_eq!(back.decision_function(&x).unwrap(), scores);
            let _ = std::fs::remove_dir_all(&dir);
        }
    }
}
