//! `cvxnn train --model linear|linear-cnn` (issue 8): the nuclear-norm programs of linear
//! networks, by proximal SVT or (`--solver conic`) the exact SDP.

use anyhow::{bail, Context, Result};
use cvxnn::data::{read_table, ConvShape};

use cvxnn::data::read_features;
use cvxnn::linear_model::{train_model, LinearArch, LinearModel, LinearSolver, LinearTrainConfig};
use cvxnn::program::LinearPool;
use cvxnn::solver::conic::ConicSettings;
use cvxnn::solver::SolverSettings;

use crate::args::{
    CertifyArgs, InfoArgs, LambdaArg, ModelArg, PatternsArg, PoolArg, PrecisionArg, PredictArgs,
    SolverArg, TrainArgs,
};
use crate::cnn::{parse_input_shape, parse_kernel};
use crate::commands::{loss_arg, metrics_line, refuse_occupied_out, task_arg, write_predictions};
use crate::progress::SolveProgress;

fn arch(a: &TrainArgs) -> Result<LinearArch> {
    if a.program.model == ModelArg::Linear {
        if a.input_shape.is_some() || a.kernel.is_some() || a.circular {
            bail!("invalid argument `model`: --input-shape, --kernel and --circular need --model linear-cnn");
        }
        return Ok(LinearArch::Dense);
    }
    if a.circular {
        if a.kernel.is_some() || a.pool != PoolArg::None {
            bail!("invalid argument `circular`: the circular CNN takes no --kernel or --pool");
        }
        return Ok(LinearArch::Circular);
    }
    let Some(shape_text) = a.input_shape.as_deref() else {
        bail!(
            "invalid argument `input-shape`: --model linear-cnn needs --input-shape C,H,W (or C,L)"
        );
    };
    let Some(kernel_text) = a.kernel.as_deref() else {
        bail!("invalid argument `kernel`: --model linear-cnn needs --kernel (e.g. 3x3)");
    };
    let (channels, spatial) = parse_input_shape(shape_text)?;
    let kernel = parse_kernel(kernel_text, spatial.len())?;
    let shape = ConvShape::new(channels, spatial, kernel, a.stride, a.padding)?;
    let pool = match a.pool {
        PoolArg::None => LinearPool::None,
        PoolArg::Avg => LinearPool::Avg,
        PoolArg::Local(p) => bail!(
            "invalid argument `pool`: --model linear-cnn takes --pool none|avg, not {} (local pooling needs --model cnn-relu or cnn-gated-relu)",
            p.describe()
        ),
    };
    Ok(LinearArch::Conv { shape, pool })
}

/// Trains a linear model and prints its report.
pub(crate) fn run_train_linear(a: TrainArgs) -> Result<()> {
    let (d, p) = (&a.input, &a.program);
    let lambda = match a.lambda {
        LambdaArg::Value(v) => v,
        LambdaArg::Auto => {
            bail!("invalid argument `lambda`: the linear models take a number, not auto")
        }
    };
    if p.gates.is_some() || !matches!(p.patterns, PatternsArg::Auto) {
        bail!("invalid argument `patterns`: linear models have no activation patterns");
    }
    if p.precision != PrecisionArg::F64 || a.decompose {
        bail!("invalid argument `model`: --precision f32 and --decompose do not apply to linear models");
    }
    let arch = arch(&a)?;
    refuse_occupied_out(a.out.as_deref(), a.force)?;
    let table = read_table(&d.data, &d.target)?;
    let cfg = LinearTrainConfig {
        task: task_arg(d.task),
        loss: loss_arg(d.loss),
        lambda,
        arch,
        solver: match p.solver {
            SolverArg::Conic => LinearSolver::Sdp,
            SolverArg::Auto | SolverArg::FirstOrder => LinearSolver::Proximal,
        },
        standardize: !d.no_standardize,
        bias: !d.no_bias,
        scale_target: !d.no_scale_target,
        test_fraction: d.test_fraction,
        seed: d.seed,
        settings: SolverSettings {
            tol: p.tol,
            max_iter: p.max_iter,
            ..SolverSettings::default()
        },
        conic: ConicSettings::default(),
    };
    let mut progress = SolveProgress::new(a.quiet);
    let out = train_model(&table, &cfg, &mut |pr| progress.update(pr));
    progress.finish();
    let (model, r) = out?;
    if let Some(dir) = &a.out {
        model
            .save(dir, Some(&r), a.force)
            .with_context(|| format!("saving the model to {}", dir.display()))?;
    }
    let mut s = format!(
        "cvxnn train: {} ({}, {} solver), {} loss, lambda {:e}, {} train / {} test samples\n",
        d.data.display(),
        r.model,
        match r.solver {
            LinearSolver::Proximal => "proximal",
            LinearSolver::Sdp => "sdp",
        },
        r.loss,
        r.lambda,
        r.n_train,
        r.n_test
    );
    s += &format!(
        "  program      nuclear norm of Z in R^({} x {}), {} output(s)\n",
        r.rows,
        r.positions * r.outputs,
        r.outputs
    );
    s += &format!(
        "  status       {} ({} iterations, {:.3} s)\n",
        r.status, r.iterations, r.seconds
    );
    s += &format!(
        "  objective    {:.8e}   (rebuilt network: {:.8e})\n",
        r.objective, r.network_objective
    );
    s += &format!(
        "  dual bound   {:.8e}   gap {:.2e}, relative {:.2e}; ||Phi^T grad||_2 = {:.6e} (lambda {:e})\n",
        r.dual_bound, r.gap, r.relative_gap, r.spectral_norm, r.lambda
    );
    s += &format!("  neurons      {} (rank of Z)\n", r.width);
    s += &format!("  train        {}\n", metrics_line(&r.train));
    if let Some(t) = &r.test {
        s += &format!("  test         {}\n", metrics_line(t));
    }
    if let Some(dir) = &a.out {
        s += &format!(
            "  saved        {} ({})\n",
            dir.display(),
            model.meta.torch_modules
        );
    }
    if a.json {
        eprint!("{s}");
        println!("{}", serde_json::to_string_pretty(&r)?);
    } else {
        print!("{s}");
    }
    Ok(())
}

/// `cvxnn predict` on a linear model directory.
pub(crate) fn run_predict_linear(a: PredictArgs) -> Result<()> {
    let model = LinearModel::load(&a.model)?;
    let (x, target) = read_features(&a.data, &model.meta.feature_names, &model.meta.target)?;
    let pred = model.predict_strings(&x)?;
    // Metrics first: a target the model cannot read stops before any output.
    let metrics = match &target {
        Some(t) => Some(model.metrics(&x, t)?),
        None => None,
    };
    write_predictions(
        a.out.as_deref(),
        &pred,
        &model.meta.target,
        metrics.as_ref(),
    )
}

/// `cvxnn info` on a linear model directory.
pub(crate) fn run_info_linear(a: &InfoArgs) -> Result<()> {
    let model = LinearModel::load(&a.model)?;
    let m = &model.meta;
    println!(
        "model        {} ({}), cvxnn {}",
        m.model, m.architecture, m.version
    );
    println!(
        "task         {}  loss {}  lambda {:e}  solver {}",
        m.task,
        m.loss,
        m.lambda,
        match m.solver {
            LinearSolver::Proximal => "proximal",
            LinearSolver::Sdp => "sdp",
        }
    );
    println!(
        "neurons      {} (rank of Z, {} x {})",
        m.width,
        m.rows,
        m.positions * m.outputs
    );
    println!(
        "features     {} raw: {}",
        m.feature_names.len(),
        m.feature_names.join(", ")
    );
    println!("target       {} (scale {})", m.target, m.target_scale);
    match &m.shape {
        Some(s) => println!(
            "cnn          {}, features divided by {:.6}",
            s.describe(),
            m.feature_scale
        ),
        None if m.model == "linear-circular" => println!(
            "circular     signals of length {}, features divided by {:.6}",
            m.rows, m.feature_scale
        ),
        None => println!(
            "preprocess   standardize {}  bias {}",
            m.standardize, m.bias
        ),
    }
    if let Some(l) = &m.labels {
        println!(
            "labels       {} classes: {}",
            l.len(),
            l.labels().join(", ")
        );
    }
    println!("pytorch      {}", m.torch_modules);
    crate::commands::print_certificate(&a.model);
    Ok(())
}

/// `cvxnn certify` on a linear model directory: the saved network's objective on `--data` and
/// the spectral-norm dual bound. The preprocessing is the model's; flags that would change it
/// (or the program) are refused by name.
pub(crate) fn run_certify_linear(a: &CertifyArgs) -> Result<()> {
    if !a.model.is_dir() {
        bail!("invalid argument `model`: certify a linear model by its model directory");
    }
    let model = LinearModel::load(&a.model)?;
    if task_arg(a.task).is_some_and(|t| t != model.meta.task) {
        bail!(
            "invalid argument `task`: the model was trained for {}",
            model.meta.task
        );
    }
    if loss_arg(a.loss).is_some_and(|l| l != model.meta.loss) {
        bail!(
            "invalid argument `loss`: the model was trained with the {} loss",
            model.meta.loss
        );
    }
    if !matches!(a.patterns, PatternsArg::Exact) {
        bail!("invalid argument `patterns`: linear models have no activation patterns");
    }
    let target = a
        .target
        .clone()
        .unwrap_or_else(|| model.meta.target.clone());
    let (x, t) = read_features(&a.data, &model.meta.feature_names, &target)?;
    let Some(t) = t else {
        bail!(
            "{}: target column `{target}` not found (certify needs the targets)",
            a.data.display()
        );
    };
    let c = model.certify(&x, &t, a.lambda)?;
    let s = format!(
        "cvxnn certify: {} on {} ({} rows), lambda {:e}\n  network      objective {:.12e}\n  dual bound   {:.12e}   gap {:.2e}, relative {:.2e}; ||Phi^T grad||_2 = {:.6e}\n",
        a.model.display(),
        a.data.display(),
        c.n,
        c.lambda,
        c.network_objective,
        c.dual_bound,
        c.gap,
        c.relative_gap,
        c.spectral_norm
    );
    if a.json {
        eprint!("{s}");
        println!("{}", serde_json::to_string_pretty(&c)?);
    } else {
        print!("{s}");
    }
    Ok(())
}
