//! The regularization path: the program solved over a decreasing, log-spaced grid of lambdas
//! (DESIGN section 6), each solve warm-started from the previous solution, with a validation
//! split carved from the training split to recommend a lambda.
//!
//! The grid starts by default at [`crate::certificate::lambda_max`], the smallest lambda at
//! which the zero network is optimal (for ReLU it accounts for the cone constraints), so the
//! path runs from the empty network to richer ones. Preprocessing, patterns, rebuilding and
//! metrics are the estimator's ([`crate::estimator`]); every solve goes through
//! [`PathProblem::fit`].

use serde::{Deserialize, Serialize};

use crate::data::{train_test_split, Table, TargetColumn, Task};
use crate::error::{CvxnnError, Result};
use crate::estimator::{
    certificate_name, finish_training, fixed_patterns, prepare_training_data, solve_program_warm,
    Metrics, PatternSource, ProgramSolution, SolverChoice, TrainConfig, WarmPoint,
};
use crate::linalg::Matrix;
use crate::loss::LossKind;
use crate::patterns::Masks;
use crate::program::{ModelKind, OutputMode, TwoLayerProgram};
use crate::solver::{Multipliers, Progress, SolverSettings, Status};

/// Sampled patterns of the path where `--patterns auto` would run column generation (ReLU on
/// data with many patterns): the path needs one fixed program for all its lambdas.
pub const PATH_AUTO_SAMPLES: usize = 100;

/// Which lambdas the path visits, largest first, log-spaced.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum LambdaGrid {
    /// `count` values from `lambda_max` down to `lambda_max * ratio`.
    FromMax {
        /// Smallest lambda as a fraction of `lambda_max`, in (0, 1).
        ratio: f64,
        /// Number of lambdas (at least 2).
        count: usize,
    },
    /// `count` values from `hi` down to `lo` (`hi:lo:count` on the command line).
    Range {
        /// Largest lambda.
        hi: f64,
        /// Smallest lambda, `0 < lo < hi`.
        lo: f64,
        /// Number of lambdas (at least 2).
        count: usize,
    },
}

impl Default for LambdaGrid {
    /// 20 values from `lambda_max` down to `lambda_max * 1e-4`.
    fn default() -> Self {
        LambdaGrid::FromMax {
            ratio: 1e-4,
            count: 20,
        }
    }
}

impl std::str::FromStr for LambdaGrid {
    type Err = CvxnnError;

    /// Parses `hi:lo:count` (e.g. `1e-1:1e-5:20`); errors name `lambdas`.
    fn from_str(s: &str) -> Result<LambdaGrid> {
        let bad = |why: String| CvxnnError::arg("lambdas", why);
        let parts: Vec<&str> = s.split(':').map(str::trim).collect();
        let [hi, lo, count] = parts[..] else {
            return Err(bad(format!(
                "expected hi:lo:count (e.g. 1e-1:1e-5:20), got `{s}`"
            )));
        };
        let number = |v: &str, what: &str| -> Result<f64> {
            v.parse::<f64>()
                .map_err(|_| bad(format!("{what} `{v}` is not a number (in `{s}`)")))
        };
        let hi = number(hi, "hi")?;
        let lo = number(lo, "lo")?;
        let count = count
            .parse::<usize>()
            .map_err(|_| bad(format!("count `{count}` is not a whole number (in `{s}`)")))?;
        let grid = LambdaGrid::Range { hi, lo, count };
        grid.validate()?;
        Ok(grid)
    }
}

impl LambdaGrid {
    /// Checks the domain: finite positive ends with `lo < hi`, a ratio in (0, 1), `count >= 2`.
    pub fn validate(&self) -> Result<()> {
        let bad = |why: String| Err(CvxnnError::arg("lambdas", why));
        let count = match *self {
            LambdaGrid::FromMax { ratio, count } => {
                if !(ratio.is_finite() && ratio > 0.0 && ratio < 1.0) {
                    return bad(format!("the ratio must be in (0, 1), got {ratio}"));
                }
                count
            }
            LambdaGrid::Range { hi, lo, count } => {
                if !(hi.is_finite() && lo.is_finite() && lo > 0.0) {
                    return bad(format!("hi and lo must be finite and > 0, got {hi}:{lo}"));
                }
                if hi <= lo {
                    return bad(format!("hi must be larger than lo, got {hi}:{lo}"));
                }
                count
            }
        };
        if count < 2 {
            return bad(format!("count must be at least 2, got {count}"));
        }
        Ok(())
    }

    /// The lambdas, largest first (`lambda_max` is used by [`LambdaGrid::FromMax`] only).
    pub fn lambdas(&self, lambda_max: f64) -> Result<Vec<f64>> {
        self.validate()?;
        let (hi, lo, count) = match *self {
            LambdaGrid::FromMax { ratio, count } => {
                if !(lambda_max.is_finite() && lambda_max > 0.0) {
                    return Err(CvxnnError::arg(
                        "lambdas",
                        format!(
                            "lambda_max is {lambda_max} (the zero network fits the data): give the grid as hi:lo:count"
                        ),
                    ));
                }
                (lambda_max, lambda_max * ratio, count)
            }
            LambdaGrid::Range { hi, lo, count } => (hi, lo, count),
        };
        let (a, b) = (hi.ln(), lo.ln());
        let last = (count - 1) as f64;
        Ok((0..count)
            .map(|k| match k {
                0 => hi,
                k if k == count - 1 => lo,
                k => (a + (b - a) * k as f64 / last).exp(),
            })
            .collect())
    }
}

/// Settings of the path besides the [`TrainConfig`] (whose `lambda` and `init` it ignores).
#[derive(Clone, Debug, PartialEq)]
pub struct PathConfig {
    /// The lambdas.
    pub grid: LambdaGrid,
    /// Fraction of the training split held out (seeded) to choose lambda, in (0, 1).
    pub validation_fraction: f64,
    /// Start each solve from the previous lambda's solution (and multipliers); `false` solves
    /// each from zero, to measure what warm starts save.
    pub warm_start: bool,
}

impl Default for PathConfig {
    fn default() -> Self {
        PathConfig {
            grid: LambdaGrid::default(),
            validation_fraction: 0.2,
            warm_start: true,
        }
    }
}

/// One lambda of the path.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct PathRow {
    /// Regularization strength.
    pub lambda: f64,
    /// Convex objective at the solution.
    pub objective: f64,
    /// Lower bound on the program's optimum.
    pub dual_bound: f64,
    /// `objective - dual_bound`.
    pub gap: f64,
    /// `gap / |objective|`.
    pub relative_gap: f64,
    /// Solver outcome.
    pub status: Status,
    /// First-order iterations of this solve.
    pub iterations: usize,
    /// Hidden neurons of the rebuilt network.
    pub neurons: usize,
    /// Relative cone-constraint violation (0 for gated ReLU).
    pub violation: f64,
    /// Metrics on the samples the program was fitted on.
    pub train: Metrics,
    /// Metrics on the validation split (carved from the training split).
    pub validation: Metrics,
    /// Metrics on the test split (absent when there is none).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub test: Option<Metrics>,
    /// Wall-clock seconds of this solve (rebuild and metrics included).
    pub seconds: f64,
}

/// What a path run measured; written to `path.json`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct PathReport {
    /// Smallest lambda with the zero network optimal (over the path's patterns, on the fitted
    /// samples): [`crate::certificate::lambda_max`].
    pub lambda_max: f64,
    /// The lambda with the best validation score (the largest of equal ones).
    pub recommended_lambda: f64,
    /// Its row in `rows`.
    pub recommended_index: usize,
    /// The score that chose it: `"validation r2"`, `"validation -mse"` or `"validation accuracy"`.
    pub selection: String,
    /// The grid as given.
    pub grid: LambdaGrid,
    /// One row per lambda, largest lambda first.
    pub rows: Vec<PathRow>,
    /// Model solved.
    pub model: ModelKind,
    /// Loss.
    pub loss: LossKind,
    /// Task.
    pub task: Task,
    /// Patterns in the program (the same for every lambda).
    pub patterns: usize,
    /// `"global"` (exact patterns) or `"sampled-patterns"`: what the dual bounds are relative to.
    pub certificate: String,
    /// Solver setting (`auto`, `first-order`, `conic`).
    pub solver: String,
    /// Whether each solve started from the previous one.
    pub warm_start: bool,
    /// Samples the program was fitted on.
    pub n_fit: usize,
    /// Validation samples.
    pub n_validation: usize,
    /// Test samples.
    pub n_test: usize,
    /// Columns of the design matrix.
    pub d: usize,
    /// Fraction of the training split used for validation.
    pub validation_fraction: f64,
    /// Seed of the splits and patterns.
    pub seed: u64,
    /// Factor the regression targets were divided by (lambdas are in those units).
    pub target_scale: f64,
    /// Relative tolerance of each solve.
    pub tol: f64,
    /// Iteration limit of each solve.
    pub max_iter: usize,
    /// First-order iterations over the whole path.
    pub total_iterations: usize,
    /// Wall-clock seconds of the whole path (preprocessing and patterns included).
    pub total_seconds: f64,
}

/// The part of a [`PathReport`] that `train --lambda auto` records in `report.json`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct PathSummary {
    /// Smallest lambda with the zero network optimal (see [`PathReport::lambda_max`]).
    pub lambda_max: f64,
    /// The lambda chosen.
    pub recommended_lambda: f64,
    /// The score that chose it.
    pub selection: String,
    /// The lambdas tried, largest first.
    pub lambdas: Vec<f64>,
    /// The selection score at each lambda.
    pub validation: Vec<f64>,
    /// Neurons at each lambda.
    pub neurons: Vec<usize>,
    /// Patterns of the path's program.
    pub patterns: usize,
    /// Samples fitted and validated on (both from the training split).
    pub n_fit: usize,
    /// Validation samples.
    pub n_validation: usize,
    /// Seconds the path took.
    pub seconds: f64,
}

impl PathReport {
    /// The summary for `report.json`.
    pub fn summary(&self) -> PathSummary {
        PathSummary {
            lambda_max: self.lambda_max,
            recommended_lambda: self.recommended_lambda,
            selection: self.selection.clone(),
            lambdas: self.rows.iter().map(|r| r.lambda).collect(),
            validation: self
                .rows
                .iter()
                .map(|r| selection_score(&r.validation).0)
                .collect(),
            neurons: self.rows.iter().map(|r| r.neurons).collect(),
            patterns: self.patterns,
            n_fit: self.n_fit,
            n_validation: self.n_validation,
            seconds: self.total_seconds,
        }
    }
}

/// What a path run reports while it goes.
#[derive(Clone, Copy, Debug)]
pub enum PathEvent<'a> {
    /// A solve starts: `index` of `count` (0-based), at `lambda`.
    Start {
        /// Position in the grid.
        index: usize,
        /// Grid size.
        count: usize,
        /// The lambda.
        lambda: f64,
    },
    /// The solver's progress within the current solve.
    Solver(&'a Progress),
    /// A solve finished.
    Row(&'a PathRow),
}

/// Score a validation split is ranked by (higher is better) and its name: accuracy for
/// classification, `R^2` for regression (`-MSE` when the target is constant there).
pub fn selection_score(m: &Metrics) -> (f64, &'static str) {
    match (m.accuracy, m.r2, m.mse) {
        (Some(a), _, _) => (a, "validation accuracy"),
        (None, Some(r2), _) => (r2, "validation r2"),
        (None, None, Some(mse)) => (-mse, "validation -mse"),
        (None, None, None) => (f64::NEG_INFINITY, "validation"),
    }
}

/// The program of one path: data, patterns, loss and model, solved at any lambda. The one place
/// the path builds and solves programs.
#[derive(Clone, Copy, Debug)]
pub struct PathProblem<'a> {
    x: &'a Matrix,
    y: &'a [f64],
    outputs: (usize, OutputMode),
    masks: &'a Masks,
    loss: LossKind,
    model: ModelKind,
    lambda_max: f64,
}

impl<'a> PathProblem<'a> {
    /// The program over `masks` (`y` is `n x outputs.0`, column-major), with its
    /// [`crate::certificate::lambda_max`].
    pub fn new(
        x: &'a Matrix,
        y: &'a [f64],
        outputs: (usize, OutputMode),
        masks: &'a Masks,
        loss: LossKind,
        model: ModelKind,
    ) -> Result<Self> {
        // lambda_max does not depend on the program's lambda; 1 only passes its check.
        let prog = Self::program(x, y, outputs, masks, loss, model, 1.0)?;
        let lambda_max = crate::certificate::lambda_max(&prog)?;
        Ok(PathProblem {
            x,
            y,
            outputs,
            masks,
            loss,
            model,
            lambda_max,
        })
    }

    fn program(
        x: &'a Matrix,
        y: &'a [f64],
        (c, mode): (usize, OutputMode),
        masks: &'a Masks,
        loss: LossKind,
        model: ModelKind,
        lambda: f64,
    ) -> Result<TwoLayerProgram<'a>> {
        TwoLayerProgram::with_outputs(x, y, c, mode, masks, loss, model, lambda)
    }

    /// Smallest lambda at which the zero network is optimal.
    pub fn lambda_max(&self) -> f64 {
        self.lambda_max
    }

    /// Solves at `lambda` from `warm` (or from zero). At `lambda >= lambda_max` the zero point
    /// is returned without iterating: `theta0 = grad h(0)` is then dual feasible (with the cone
    /// projections' multipliers for ReLU), so `-h*(theta0) = h(0)` certifies it; a solver run
    /// there can leave groups of rounding size (~1e-15) that would count as neurons.
    pub fn fit(
        &self,
        lambda: f64,
        choice: SolverChoice,
        settings: &SolverSettings,
        warm: Option<WarmPoint<'_>>,
        progress: &mut dyn FnMut(&Progress),
    ) -> Result<ProgramSolution> {
        if lambda < self.lambda_max {
            return solve_program_warm(
                self.x,
                self.y,
                self.outputs,
                self.masks,
                self.loss,
                self.model,
                lambda,
                choice,
                settings,
                warm,
                progress,
            );
        }
        let prog = Self::program(
            self.x,
            self.y,
            self.outputs,
            self.masks,
            self.loss,
            self.model,
            lambda,
        )?;
        let zero = vec![0.0; prog.n_vars()];
        let mut theta0 = vec![0.0; self.y.len()];
        self.loss.grad(
            &vec![0.0; self.y.len()],
            self.y,
            self.outputs.0,
            &mut theta0,
        );
        let objective = prog.objective(&zero)?;
        let dual_bound =
            crate::certificate::dual_bound(prog.data(), &theta0, self.lambda_max, lambda)
                .min(objective);
        Ok(ProgramSolution {
            x: zero,
            objective,
            dual_bound,
            status: Status::Converged,
            iterations: 0,
            violation: 0.0,
            trace: Vec::new(),
            solver: choice.resolve(self.model, self.x.nrows(), self.masks.len(), self.x.ncols()),
            conic_status: None,
            conic_iterations: None,
            multipliers: None,
            network: None,
        })
    }
}

/// Solves the path on `table`: the rows of `cfg`'s training split (same seeded split as
/// [`crate::estimator::train`]) are split again into fitted and validation samples
/// (`path.validation_fraction`); preprocessing and patterns are fitted on the fitted samples;
/// the test split gives the test metrics. `cfg.lambda` and `cfg.init` are ignored; adaptive
/// patterns are refused (`auto` samples [`PATH_AUTO_SAMPLES`] where train would use them).
pub fn regularization_path(
    table: &Table,
    cfg: &TrainConfig,
    path: &PathConfig,
    events: &mut dyn FnMut(PathEvent<'_>),
) -> Result<PathReport> {
    let (task, train, test) = split_table(table, cfg)?;
    let test = (!test.1.is_empty()).then_some(test);
    run_path(&train, test.as_ref(), task, cfg, path, events)
}

/// The path on `cfg`'s training split only (no test metrics): what `train --lambda auto` runs
/// before training at the recommended lambda ([`PathReport::recommended_lambda`]). Adaptive
/// patterns become [`PATH_AUTO_SAMPLES`] sampled ones for the path (the training run itself
/// keeps them).
pub fn choose_lambda(
    table: &Table,
    cfg: &TrainConfig,
    path: &PathConfig,
    events: &mut dyn FnMut(PathEvent<'_>),
) -> Result<PathReport> {
    let (task, train, _) = split_table(table, cfg)?;
    let cfg = match cfg.patterns {
        PatternSource::Adaptive { .. } => &TrainConfig {
            patterns: PatternSource::Sample(PATH_AUTO_SAMPLES),
            ..cfg.clone()
        },
        _ => cfg,
    };
    run_path(&train, None, task, cfg, path, events)
}

/// The task (inferred on the whole table, so that a split cannot change it), the training rows
/// as a table, and the test rows' raw features and targets.
fn split_table(table: &Table, cfg: &TrainConfig) -> Result<(Task, Table, (Matrix, TargetColumn))> {
    let task = cfg.task.unwrap_or_else(|| Task::infer(&table.target));
    let (train_idx, test_idx) =
        train_test_split(table.features.nrows(), cfg.test_fraction, cfg.seed)?;
    let rows = |idx: &[usize]| (table.features.select_rows(idx), table.target.select(idx));
    let (features, target) = rows(&train_idx);
    let train = Table {
        path: table.path.clone(),
        feature_names: table.feature_names.clone(),
        features,
        target_name: table.target_name.clone(),
        target,
    };
    Ok((task, train, rows(&test_idx)))
}

fn run_path(
    table: &Table,
    test: Option<&(Matrix, TargetColumn)>,
    task: Task,
    cfg: &TrainConfig,
    path: &PathConfig,
    events: &mut dyn FnMut(PathEvent<'_>),
) -> Result<PathReport> {
    let start = std::time::Instant::now();
    cfg.solver.validate()?;
    cfg.model.check_precision(cfg.solver.precision)?;
    path.grid.validate()?;
    let n = table.features.nrows();
    let vf = path.validation_fraction;
    let n_val = (n as f64 * vf).round();
    if !(vf.is_finite() && vf > 0.0 && vf < 1.0) || n_val < 1.0 || (n as f64 - n_val) < 2.0 {
        return Err(CvxnnError::arg(
            "validation-fraction",
            format!(
                "must be in (0, 1) and leave at least 1 validation and 2 fitted samples of the {n} training samples, got {vf}"
            ),
        ));
    }
    if cfg.model == ModelKind::GatedRelu && matches!(cfg.patterns, PatternSource::Exact { .. }) {
        return Err(CvxnnError::arg(
            "patterns",
            "exact patterns need --model relu (the gated model needs a gate per pattern; use --patterns N or --gates FILE)",
        ));
    }
    if matches!(cfg.patterns, PatternSource::Adaptive { .. }) {
        return Err(CvxnnError::arg(
            "patterns",
            "the path solves one program over fixed patterns: give a number, `exact`, `auto` or --gates (adaptive is for train)",
        ));
    }
    if let Some(conv) = &cfg.conv {
        return run_conv_path(table, test, task, cfg, conv, path, events, start);
    }
    let data = prepare_training_data(
        table,
        Some(task),
        cfg.loss,
        cfg.standardize,
        cfg.bias,
        cfg.scale_target,
        vf,
        cfg.seed,
    )?;
    let patterns = match cfg.patterns.resolve(cfg.model, &data.x, false) {
        PatternSource::Adaptive { .. } => PatternSource::Sample(PATH_AUTO_SAMPLES),
        other => other,
    };
    let (gates, masks) = fixed_patterns(&patterns, &data.x, cfg.seed)?;
    let problem = PathProblem::new(
        &data.x,
        &data.y_train,
        (data.outputs, cfg.outputs),
        &masks,
        data.loss,
        cfg.model,
    )?;
    let lambda_max = problem.lambda_max();
    let lambdas = path.grid.lambdas(lambda_max)?;
    let mut rows = Vec::with_capacity(lambdas.len());
    let mut previous: Option<ProgramSolution> = None;
    for (index, &lambda) in lambdas.iter().enumerate() {
        events(PathEvent::Start {
            index,
            count: lambdas.len(),
            lambda,
        });
        let solve_start = std::time::Instant::now();
        // The previous multipliers, with the penalty back at the solver's initial value
        // (`rho_init / n`): the penalty a solve ends with is tuned to its own lambda, and
        // starting the next solve from it stalled the augmented Lagrangian (measured on
        // diabetes, 20 patterns: relative gaps 1e-2 to 0.65 at the iteration limit, where
        // resetting it or starting cold converged; bench/RESULTS.md).
        let multipliers = previous
            .as_ref()
            .and_then(|s| s.multipliers.as_ref())
            .map(|m| Multipliers {
                gamma: m.gamma.clone(),
                rho: cfg.solver.rho_init / data.x.nrows() as f64,
            });
        let warm = previous
            .as_ref()
            .filter(|_| path.warm_start)
            .map(|s| WarmPoint {
                x: &s.x,
                multipliers: multipliers.as_ref(),
            });
        let solution = problem.fit(lambda, cfg.solver_choice, &cfg.solver, warm, &mut |p| {
            events(PathEvent::Solver(p))
        })?;
        let at = TrainConfig {
            lambda,
            init: None,
            ..cfg.clone()
        };
        let keep = solution.clone();
        let out = finish_training(
            table,
            &at,
            false,
            solve_start,
            data.clone(),
            &patterns,
            (gates.as_ref(), &masks),
            solution,
            None,
        )?;
        let r = out.report;
        let test_metrics = match test {
            Some((x, y)) => Some(out.model.metrics(x, y)?),
            None => None,
        };
        let row = PathRow {
            lambda,
            objective: r.objective,
            dual_bound: r.dual_bound,
            gap: r.gap,
            relative_gap: r.relative_gap,
            status: r.status,
            iterations: r.iterations,
            neurons: r.neurons,
            violation: r.violation,
            train: r.train,
            validation: r.test.unwrap_or_default(),
            test: test_metrics,
            seconds: solve_start.elapsed().as_secs_f64(),
        };
        events(PathEvent::Row(&row));
        rows.push(row);
        previous = Some(keep);
    }
    // The first best in grid order: the largest lambda (simplest network) among equal scores.
    let mut best = 0;
    for (k, r) in rows.iter().enumerate() {
        if selection_score(&r.validation).0 > selection_score(&rows[best].validation).0 {
            best = k;
        }
    }
    Ok(PathReport {
        lambda_max,
        recommended_lambda: rows[best].lambda,
        recommended_index: best,
        selection: selection_score(&rows[best].validation).1.to_string(),
        grid: path.grid,
        model: cfg.model,
        loss: data.loss,
        task,
        patterns: masks.len(),
        certificate: certificate_name(&patterns).into(),
        solver: cfg.solver_choice.name().into(),
        warm_start: path.warm_start,
        n_fit: data.train_idx.len(),
        n_validation: data.test_idx.len(),
        n_test: test.map_or(0, |t| t.1.len()),
        d: data.x.ncols(),
        validation_fraction: vf,
        seed: cfg.seed,
        target_scale: data.target_scale,
        tol: cfg.solver.tol,
        max_iter: cfg.solver.max_iter,
        total_iterations: rows.iter().map(|r| r.iterations).sum(),
        total_seconds: start.elapsed().as_secs_f64(),
        rows,
    })
}

/// [`run_path`] for a CNN: [`crate::conv::path_solves`] solves, the rows and the report are the
/// dense path's.
#[allow(clippy::too_many_arguments)]
fn run_conv_path(
    table: &Table,
    test: Option<&(Matrix, TargetColumn)>,
    task: Task,
    cfg: &TrainConfig,
    conv: &crate::architecture::ConvConfig,
    path: &PathConfig,
    events: &mut dyn FnMut(PathEvent<'_>),
    start: std::time::Instant,
) -> Result<PathReport> {
    use crate::conv::ConvPathEvent;
    let mut rows: Vec<PathRow> = Vec::new();
    let info = crate::conv::path_solves(
        table,
        task,
        cfg,
        conv,
        path.validation_fraction,
        &|lambda_max| path.grid.lambdas(lambda_max),
        path.warm_start,
        &mut |e| {
            match e {
                ConvPathEvent::Start {
                    index,
                    count,
                    lambda,
                } => events(PathEvent::Start {
                    index,
                    count,
                    lambda,
                }),
                ConvPathEvent::Solver(p) => events(PathEvent::Solver(p)),
                ConvPathEvent::Done {
                    lambda,
                    output,
                    start,
                } => {
                    let output = *output;
                    let r = output.report;
                    let test_metrics = match test {
                        Some((x, y)) => Some(output.model.metrics(x, y)?),
                        None => None,
                    };
                    let row = PathRow {
                        lambda,
                        objective: r.objective,
                        dual_bound: r.dual_bound,
                        gap: r.gap,
                        relative_gap: r.relative_gap,
                        status: r.status,
                        iterations: r.iterations,
                        neurons: r.neurons,
                        violation: r.violation,
                        train: r.train,
                        validation: r.test.unwrap_or_default(),
                        test: test_metrics,
                        seconds: start.elapsed().as_secs_f64(),
                    };
                    events(PathEvent::Row(&row));
                    rows.push(row);
                }
            }
            Ok(())
        },
    )?;
    let mut best = 0;
    for (k, r) in rows.iter().enumerate() {
        if selection_score(&r.validation).0 > selection_score(&rows[best].validation).0 {
            best = k;
        }
    }
    let Some(chosen) = rows.get(best) else {
        return Err(CvxnnError::arg("lambdas", "the grid is empty"));
    };
    Ok(PathReport {
        lambda_max: info.lambda_max,
        recommended_lambda: chosen.lambda,
        recommended_index: best,
        selection: selection_score(&chosen.validation).1.to_string(),
        grid: path.grid,
        model: cfg.model,
        loss: info.loss,
        task,
        patterns: info.patterns,
        certificate: certificate_name(&cfg.patterns).into(),
        solver: SolverChoice::FirstOrder.name().into(),
        warm_start: path.warm_start,
        n_fit: info.n_fit,
        n_validation: info.n_validation,
        n_test: test.map_or(0, |t| t.1.len()),
        d: info.d,
        validation_fraction: path.validation_fraction,
        seed: cfg.seed,
        target_scale: info.target_scale,
        tol: cfg.solver.tol,
        max_iter: cfg.solver.max_iter,
        total_iterations: rows.iter().map(|r| r.iterations).sum(),
        total_seconds: start.elapsed().as_secs_f64(),
        rows,
    })
}
