//! `cvxnn baseline`: the same two-layer ReLU network trained directly by Adam or SGD (the
//! non-convex problem), with `train`'s preprocessing and model directory, to compare against.
//! With `--task multiclass` the network has one output per class (every neuron feeding all of
//! them) and softmax cross-entropy by default.

use std::path::PathBuf;

use anyhow::{bail, Context, Result};
use clap::{Args, ValueEnum};
use cvxnn::baseline::{train_baseline, BaselineConfig, BaselineReport};
use cvxnn::data::read_table;
use cvxnn::network::{GradientSettings, Optimizer};

use crate::args::{LossArg, TaskArg};
use crate::commands::{loss_arg, metrics_line, task_arg};

/// The first-order method.
#[derive(ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum OptimizerArg {
    /// Adam with PyTorch's defaults (betas 0.9, 0.999, eps 1e-8), L2 weight decay in the gradient.
    Adam,
    /// SGD with heavy-ball momentum (--momentum), L2 weight decay in the gradient.
    Sgd,
}

/// `cvxnn baseline`.
#[derive(Args, Debug)]
pub struct BaselineArgs {
    /// CSV file with a header row; numeric features and a target column.
    #[arg(long)]
    pub data: PathBuf,
    /// Name of the target column.
    #[arg(long, default_value = "y")]
    pub target: String,
    /// Prediction task (multiclass: one output per class, each neuron feeding all of them).
    #[arg(long, value_enum, default_value_t = TaskArg::Auto)]
    pub task: TaskArg,
    /// Loss (default: squared for regression, logistic for binary, cross-entropy for
    /// multiclass).
    #[arg(long, value_enum)]
    pub loss: Option<LossArg>,
    /// Weight-decay strength lambda (>= 0), objective scaled as (1/n) sum loss +
    /// (lambda/2) sum (||u_j||^2 + ||alpha_j||^2), as in `train` and `certify`.
    #[arg(long, default_value_t = 1e-3, allow_hyphen_values = true)]
    pub lambda: f64,
    /// Optimizer.
    #[arg(long, value_enum, default_value_t = OptimizerArg::Adam)]
    pub optimizer: OptimizerArg,
    /// With --optimizer sgd: momentum in [0, 1) (0 is plain SGD).
    #[arg(long, allow_hyphen_values = true)]
    pub momentum: Option<f64>,
    /// Number of hidden neurons.
    #[arg(long, default_value_t = 50)]
    pub width: usize,
    /// Learning rate (> 0).
    #[arg(long, default_value_t = 1e-2, allow_hyphen_values = true)]
    pub lr: f64,
    /// Passes over the training data.
    #[arg(long, default_value_t = 1000)]
    pub epochs: usize,
    /// Samples per step, reshuffled every epoch (default: full batch, one step per epoch).
    #[arg(long)]
    pub batch_size: Option<usize>,
    /// Record the training objective every this many epochs (default: about 100 points).
    #[arg(long)]
    pub record_every: Option<usize>,
    /// Do not z-score the features.
    #[arg(long)]
    pub no_standardize: bool,
    /// Do not append a bias column (no hidden biases).
    #[arg(long)]
    pub no_bias: bool,
    /// Regression: train on the raw targets instead of targets divided by their standard
    /// deviation (the default makes lambda comparable across data sets).
    #[arg(long)]
    pub no_scale_target: bool,
    /// Fraction of samples held out for testing, in [0, 1).
    #[arg(long, default_value_t = 0.2, allow_hyphen_values = true)]
    pub test_fraction: f64,
    /// Seed of every random choice (split, initialization, minibatches).
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Directory for model.json, model.safetensors and report.json.
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// Replace model files that already exist in --out.
    #[arg(long)]
    pub force: bool,
    /// Also print the report as JSON on stdout (the summary then goes to stderr).
    #[arg(long)]
    pub json: bool,
}

fn config(a: &BaselineArgs) -> Result<BaselineConfig> {
    let optimizer = match (a.optimizer, a.momentum) {
        (OptimizerArg::Adam, Some(_)) => bail!("--momentum applies to --optimizer sgd only"),
        (OptimizerArg::Adam, None) => Optimizer::adam(),
        (OptimizerArg::Sgd, Some(momentum)) => Optimizer::Sgd { momentum },
        (OptimizerArg::Sgd, None) => Optimizer::sgd(),
    };
    Ok(BaselineConfig {
        task: task_arg(a.task),
        loss: loss_arg(a.loss),
        lambda: a.lambda,
        gradient: GradientSettings {
            optimizer,
            width: a.width,
            learning_rate: a.lr,
            epochs: a.epochs,
            batch_size: a.batch_size,
            seed: a.seed,
            record_every: a.record_every.unwrap_or(a.epochs.div_ceil(100).max(1)),
        },
        standardize: !a.no_standardize,
        bias: !a.no_bias,
        scale_target: !a.no_scale_target,
        test_fraction: a.test_fraction,
    })
}

/// Runs `cvxnn baseline`.
pub fn run_baseline(a: BaselineArgs) -> Result<()> {
    let cfg = config(&a)?;
    crate::commands::refuse_occupied_out(a.out.as_deref(), a.force)?;
    let table = read_table(&a.data, &a.target)?;
    let (model, report) = train_baseline(&table, &cfg)?;
    if let Some(dir) = &a.out {
        model
            .save(dir, None, a.force)
            .with_context(|| format!("saving the model to {}", dir.display()))?;
        let json = serde_json::to_string_pretty(&report)?;
        let path = dir.join("report.json");
        std::fs::write(&path, json).with_context(|| format!("writing {}", path.display()))?;
    }
    let summary = summary(&a, &report);
    if a.json {
        eprint!("{summary}");
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        print!("{summary}");
    }
    Ok(())
}

fn summary(a: &BaselineArgs, r: &BaselineReport) -> String {
    let mut s = String::new();
    let batch = match r.batch_size {
        Some(b) => format!("batches of {b}"),
        None => "full batch".into(),
    };
    let hyper = match r.optimizer {
        Optimizer::Adam { beta1, beta2, eps } => {
            format!("adam (betas {beta1}, {beta2}, eps {eps:e})")
        }
        Optimizer::Sgd { momentum } => format!("sgd (momentum {momentum})"),
    };
    s += &format!(
        "cvxnn baseline: {} (relu, trained by gradient), {} loss, lambda {:e}, {} train / {} test samples, d = {}\n",
        a.data.display(),
        r.loss,
        r.lambda,
        r.n_train,
        r.n_test,
        r.d
    );
    s += &format!(
        "  optimizer    {hyper}, lr {:e}, {batch}, width {}\n",
        r.learning_rate, r.neurons
    );
    if r.outputs > 1 {
        s += &format!(
            "  outputs      {} classes (every neuron feeds all class outputs)\n",
            r.outputs
        );
    }
    if r.target_scale != 1.0 {
        s += &format!(
            "  targets      divided by {:.6} (their train std); objectives in those units\n",
            r.target_scale
        );
    }
    s += &format!(
        "  trained      {} epochs, {} steps, {:.2} s\n",
        r.epochs, r.steps, r.seconds
    );
    s += &format!(
        "  objective    {:.8e}   (initial {:.8e}; no optimality certificate, see below)\n",
        r.objective, r.initial_objective
    );
    s += &format!("  train        {}\n", metrics_line(&r.train));
    if let Some(t) = &r.test {
        s += &format!("  test         {}\n", metrics_line(t));
    }
    if r.outputs > 1 {
        if let Some(dir) = &a.out {
            s += &format!("  saved        {}\n", dir.display());
        }
        s += "  certify      takes one-output networks only: no certificate for this multiclass \
              network\n";
        return s;
    }
    if let Some(dir) = &a.out {
        s += &format!("  saved        {}\n", dir.display());
        s += &format!(
            "  certify it   cvxnn certify --model {} --data {} --lambda {:e} --test-fraction {} --seed {}\n",
            dir.display(),
            a.data.display(),
            r.lambda,
            a.test_fraction,
            r.seed
        );
    } else {
        s += "  certify it   save it with --out DIR, then `cvxnn certify --model DIR` (same data, lambda, split)\n";
    }
    s
}

/// The `cvxnn info` line of a baseline model's `report.json` (`None` when it is not one).
pub fn info_line(report_json: &str) -> Option<String> {
    let r: BaselineReport = serde_json::from_str(report_json).ok()?;
    Some(format!(
        "trained      by {} (lr {:e}, {} epochs): objective {:.8e}, no certificate (`cvxnn certify` gives one)",
        r.optimizer.name(),
        r.learning_rate,
        r.epochs,
        r.objective
    ))
}
