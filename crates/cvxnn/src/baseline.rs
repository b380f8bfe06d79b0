//! The baseline users compare the convex programs against: the same two-layer ReLU network,
//! trained on a table directly by Adam or SGD ([`crate::network::train_gradient`]), with exactly
//! the preprocessing of [`crate::estimator::train`] (split, standardization, bias column, target
//! scaling, task and loss inference, one-hot targets for multiclass), saved as the same model
//! directory (`model.json`, `model.safetensors` in PyTorch naming, `report.json`), so that
//! `predict` takes it, and `certify` too for one-output (regression, binary) networks.
//!
//! For multiclass the network has a full `m x c` output layer (every neuron feeds every class,
//! PyTorch's `Linear(m, c, bias=False)`), trained on softmax cross-entropy by default.

use serde::{Deserialize, Serialize};

use crate::data::{Table, Task};
use crate::error::{CvxnnError, Result};
use crate::estimator::{prepare_training_data, Metrics, ModelMeta, TrainedModel, TrainingData};
use crate::loss::LossKind;
use crate::network::{train_gradient, GradientSettings, Optimizer, RawNetwork};
use crate::program::ModelKind;

/// Everything [`train_baseline`] needs besides the data. Defaults match the CLI's
/// (`cvxnn baseline`), except `gradient.record_every`.
#[derive(Clone, Debug, PartialEq)]
pub struct BaselineConfig {
    /// Regression, binary or multiclass classification; `None` infers it from the target.
    pub task: Option<Task>,
    /// Data-fit term; `None` picks squared for regression, logistic for binary, softmax
    /// cross-entropy for multiclass.
    pub loss: Option<LossKind>,
    /// Weight-decay strength (>= 0).
    pub lambda: f64,
    /// Optimizer, width, learning rate, epochs, batch size; its `seed` also seeds the train/test
    /// split (one seed for every random choice, as in `train`).
    pub gradient: GradientSettings,
    /// z-score the features (fitted on the training split).
    pub standardize: bool,
    /// Append a bias column (a hidden bias per neuron, regularized like every weight).
    pub bias: bool,
    /// Regression: divide the targets by their standard deviation on the training split.
    pub scale_target: bool,
    /// Fraction of samples held out for testing, in [0, 1).
    pub test_fraction: f64,
}

impl Default for BaselineConfig {
    fn default() -> Self {
        BaselineConfig {
            task: None,
            loss: None,
            lambda: 1e-3,
            gradient: GradientSettings::default(),
            standardize: true,
            bias: true,
            scale_target: true,
            test_fraction: 0.2,
        }
    }
}

/// One point of the training trace.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct TracePoint {
    /// Epochs completed (0: the initialization).
    pub epoch: usize,
    /// Full training-data objective there.
    pub objective: f64,
}

/// What a baseline run measured; written to `report.json`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct BaselineReport {
    /// How the network was trained: always `"gradient"`.
    pub method: String,
    /// Weight-decay objective of the returned (last) network on the training split, in the design
    /// space with scaled targets (DESIGN section 0): the `network_objective` that `train` and
    /// `certify` report.
    pub objective: f64,
    /// The objective at the initialization.
    pub initial_objective: f64,
    /// Wall-clock seconds of the training (preprocessing and metrics excluded).
    pub seconds: f64,
    /// Epochs run.
    pub epochs: usize,
    /// Parameter updates made.
    pub steps: usize,
    /// Objective every `record_every` epochs (and at the first and the last).
    pub trace: Vec<TracePoint>,
    /// Optimizer and its hyperparameters.
    pub optimizer: Optimizer,
    /// Learning rate.
    pub learning_rate: f64,
    /// Samples per step; absent for full batch.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub batch_size: Option<usize>,
    /// Epochs between trace points.
    pub record_every: usize,
    /// Hidden neurons.
    pub neurons: usize,
    /// Outputs of the network (the number of classes for multiclass, else 1).
    #[serde(default = "one")]
    pub outputs: usize,
    /// Regularization strength.
    pub lambda: f64,
    /// Loss used.
    pub loss: LossKind,
    /// Task.
    pub task: Task,
    /// Seed (split, initialization, minibatches).
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
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub test: Option<Metrics>,
}

fn one() -> usize {
    1
}

/// Trains the non-convex network on `table` by gradient as configured; every setting is
/// validated before any work. The model holds the network on raw features (preprocessing folded
/// in, output in the target's units), its metadata says `model: relu` with 0 patterns (and
/// `output_mode: shared` for multiclass: every neuron feeds every class).
pub fn train_baseline(
    table: &Table,
    cfg: &BaselineConfig,
) -> Result<(TrainedModel, BaselineReport)> {
    if !(cfg.lambda.is_finite() && cfg.lambda >= 0.0) {
        return Err(CvxnnError::arg(
            "lambda",
            format!("must be a finite number >= 0, got {}", cfg.lambda),
        ));
    }
    cfg.gradient.validate()?;
    let seed = cfg.gradient.seed;
    let TrainingData {
        task,
        loss,
        outputs,
        labels,
        train_idx,
        test_idx,
        x_train_raw,
        y_train,
        target_scale,
        standardizer,
        x,
        ..
    } = prepare_training_data(
        table,
        cfg.task,
        cfg.loss,
        cfg.standardize,
        cfg.bias,
        cfg.scale_target,
        cfg.test_fraction,
        seed,
    )?;
    let out = train_gradient(&x, &y_train, loss, cfg.lambda, &cfg.gradient)?;
    let mut raw = RawNetwork::from_network(
        &out.network,
        &standardizer.mean,
        &standardizer.scale,
        cfg.bias,
    )?;
    // Predictions in the target's units: the output layer takes the target scale back.
    raw.w2.iter_mut().for_each(|a| *a *= target_scale);
    let meta = ModelMeta {
        version: env!("CARGO_PKG_VERSION").to_string(),
        architecture: crate::architecture::Architecture::TwoLayer,
        model: ModelKind::Relu,
        output_mode: if outputs > 1 {
            crate::program::OutputMode::Shared
        } else {
            crate::program::OutputMode::Separate
        },
        task,
        loss,
        lambda: cfg.lambda,
        seed,
        patterns: 0,
        neurons: out.network.neurons(),
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
        network: crate::architecture::ModelNetwork::Dense(raw),
    };
    let train = model.metrics(&x_train_raw, &table.target.select(&train_idx))?;
    let test = if test_idx.is_empty() {
        None
    } else {
        let xt = table.features.select_rows(&test_idx);
        Some(model.metrics(&xt, &table.target.select(&test_idx))?)
    };
    let report = BaselineReport {
        method: "gradient".into(),
        objective: out.objective,
        initial_objective: out.trace.first().map_or(f64::NAN, |t| t.1),
        seconds: out.seconds,
        epochs: out.epochs,
        steps: out.steps,
        trace: out
            .trace
            .iter()
            .map(|&(epoch, objective)| TracePoint { epoch, objective })
            .collect(),
        optimizer: cfg.gradient.optimizer,
        learning_rate: cfg.gradient.learning_rate,
        batch_size: cfg.gradient.batch_size.filter(|&b| b < x.nrows()),
        record_every: cfg.gradient.record_every,
        neurons: out.network.neurons(),
        outputs: out.network.outputs,
        lambda: cfg.lambda,
        loss,
        task,
        seed,
        target_scale,
        n_train: train_idx.len(),
        n_test: test_idx.len(),
        d: x.ncols(),
        train,
        test,
    };
    Ok((model, report))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::data::read_table;
    use crate::data::test_util::TempDir;
    use crate::estimator::{design_matrix, train, TrainConfig};

    fn table(dir: &TempDir, binary: bool) -> Table {
        let mut text = String::from("a,b,y\n");
        for i in 0..30 {
            let t = i as f64;
            let a = (0.9 * t).sin() * 3.0 + 10.0;
            let b = (0.4 * t + 1.0).cos() * 0.5;
            let y = (a - 10.0 + 2.0 * b).max(0.0) + 0.2 * (1.7 * t).cos();
            let y = if binary {
                f64::from(y > 0.8)
            } else {
                50.0 + 20.0 * y
            };
            text += &format!("{a},{b},{y}\n");
        }
        read_table(&dir.write("t.csv", text), "y").unwrap()
    }

    fn config() -> BaselineConfig {
        BaselineConfig {
            gradient: GradientSettings {
                width: 10,
                epochs: 200,
                ..GradientSettings::default()
            },
            test_fraction: 0.2,
            ..BaselineConfig::default()
        }
    }

    #[test]
    fn preprocessing_is_trains_and_the_model_reproduces_the_objective() {
        let dir = TempDir::new();
        let t = table(&dir, false);
        let cfg = config();
        let (model, report) = train_baseline(&t, &cfg).unwrap();
        // Same split, scaling and standardization as `train` with the same seed.
        let conv = train(
            &t,
            &TrainConfig {
                patterns: crate::estimator::PatternSource::Sample(5),
                test_fraction: cfg.test_fraction,
                seed: cfg.gradient.seed,
                ..TrainConfig::default()
            },
            false,
            &mut |_| {},
        )
        .unwrap();
        assert_eq!(model.meta.standardizer, conv.model.meta.standardizer);
        assert_eq!(model.meta.target_scale, conv.model.meta.target_scale);
        assert_eq!((report.n_train, report.n_test), (24, 6));
        assert_eq!(report.d, conv.report.d);
        assert!(report.test.is_some());
        // The saved raw network, mapped back to the design space, has the reported objective.
        let (idx, _) = crate::data::train_test_split(30, 0.2, cfg.gradient.seed).unwrap();
        let xr = t.features.select_rows(&idx);
        let x = design_matrix(&xr, &model.meta.standardizer, true).unwrap();
        let y: Vec<f64> = idx
            .iter()
            .map(|&i| t.target.values().unwrap()[i] / model.meta.target_scale)
            .collect();
        let mut net = model
            .network
            .dense()
            .unwrap()
            .to_network(
                &model.meta.standardizer.mean,
                &model.meta.standardizer.scale,
                true,
            )
            .unwrap();
        net.alpha
            .iter_mut()
            .for_each(|a| *a /= model.meta.target_scale);
        let obj = net
            .objective(&x, &y, LossKind::Squared, cfg.lambda)
            .unwrap();
        assert!((obj - report.objective).abs() <= 1e-12 * report.objective);
        assert!(
            report.objective < 0.5 * report.initial_objective,
            "{report:?}"
        );
        assert_eq!(report.trace.last().unwrap().epoch, 200);
    }

    #[test]
    fn binary_targets_get_the_logistic_loss() {
        let dir = TempDir::new();
        let t = table(&dir, true);
        let (model, report) = train_baseline(&t, &config()).unwrap();
        assert_eq!(report.task, Task::Binary);
        assert_eq!(report.loss, LossKind::Logistic);
        assert_eq!(report.target_scale, 1.0);
        assert!(report.train.accuracy.unwrap() >= 0.8, "{report:?}");
        assert!(model.meta.labels.is_some());
    }

    #[test]
    fn multiclass_trains_a_c_output_network_on_one_hot_targets() {
        let dir = TempDir::new();
        let mut text = String::from("a,b,y\n");
        for i in 0..45 {
            let t = i as f64;
            let (a, b) = ((0.9 * t).sin() * 3.0 + 10.0, (0.4 * t + 1.0).cos());
            let class = ["setosa", "versicolor", "virginica"][i % 3];
            let shift = (i % 3) as f64;
            text += &format!("{},{},{class}\n", a + 8.0 * shift, b - 3.0 * shift);
        }
        let t = read_table(&dir.write("m.csv", text), "y").unwrap();
        let mut cfg = BaselineConfig {
            task: Some(Task::Multiclass),
            ..config()
        };
        cfg.gradient.epochs = 500;
        let (model, report) = train_baseline(&t, &cfg).unwrap();
        assert_eq!(report.task, Task::Multiclass);
        assert_eq!(report.loss, LossKind::CrossEntropy);
        assert_eq!((report.outputs, model.network.outputs()), (3, 3));
        assert_eq!(model.network.dense().unwrap().w2.len(), 3 * report.neurons);
        assert_eq!(model.meta.output_mode, crate::program::OutputMode::Shared);
        assert!(report.train.accuracy.unwrap() >= 0.9, "{report:?}");
        assert!(report.objective < 0.5 * report.initial_objective);
        // The saved network, in the design space, has the reported objective on one-hot targets.
        let (idx, _) = crate::data::train_test_split(45, 0.2, cfg.gradient.seed).unwrap();
        let x = design_matrix(
            &t.features.select_rows(&idx),
            &model.meta.standardizer,
            true,
        )
        .unwrap();
        let net = model
            .network
            .dense()
            .unwrap()
            .to_network(
                &model.meta.standardizer.mean,
                &model.meta.standardizer.scale,
                true,
            )
            .unwrap();
        let labels = model.meta.labels.as_ref().unwrap();
        let classes = labels.encode(&t.target.select(&idx)).unwrap();
        let n = idx.len();
        let mut y = vec![0.0; 3 * n];
        for (i, &k) in classes.iter().enumerate() {
            y[k * n + i] = 1.0;
        }
        let obj = net
            .objective(&x, &y, LossKind::CrossEntropy, cfg.lambda)
            .unwrap();
        assert!((obj - report.objective).abs() <= 1e-12 * report.objective);
        // Predictions are the class labels.
        match model.predict(&t.features).unwrap() {
            crate::estimator::Predictions::Labels(l) => {
                assert_eq!(l.len(), 45);
                assert!(l
                    .iter()
                    .all(|s| ["setosa", "versicolor", "virginica"].contains(&s.as_str())));
            }
            other => panic!("expected labels, got {other:?}"),
        }
    }

    #[test]
    fn bad_settings_are_refused_before_any_work() {
        let dir = TempDir::new();
        let t = table(&dir, false);
        let bad = |cfg: BaselineConfig| match train_baseline(&t, &cfg) {
            Err(CvxnnError::InvalidArgument { name, .. }) => name,
            other => panic!("expected an invalid argument, got {other:?}"),
        };
        assert_eq!(
            bad(BaselineConfig {
                lambda: -1.0,
                ..config()
            }),
            "lambda"
        );
        let mut cfg = config();
        cfg.gradient.learning_rate = 0.0;
        assert_eq!(bad(cfg), "lr");
        assert_eq!(
            bad(BaselineConfig {
                test_fraction: 1.0,
                ..config()
            }),
            "test-fraction"
        );
        assert_eq!(
            bad(BaselineConfig {
                loss: Some(LossKind::Logistic),
                ..config()
            }),
            "loss"
        );
    }
}
