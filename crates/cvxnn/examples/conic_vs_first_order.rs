//! Solves the same ReLU program with the conic reference (Clarabel) and the first-order solver
//! (augmented Lagrangian + polish) and prints both objectives, the first-order dual bound and the
//! times. Used for the figures in bench/RESULTS.md.
//!
//! ```sh
//! cargo run --release -p cvxnn --example conic_vs_first_order -- examples/data/diabetes.csv 1e-2 20 100000
//! ```
//! Arguments: CSV file (target `y`), lambda, number of sampled patterns (seed 0), max iterations.
//! Features are z-scored on the whole file, a bias column is added, regression targets are
//! divided by their standard deviation (no train/test split).

use std::error::Error;
use std::path::Path;

use cvxnn::data::{add_bias, encode_target, read_table, Standardizer, Task};
use cvxnn::estimator::target_scale;
use cvxnn::loss::LossKind;
use cvxnn::patterns::sample_patterns;
use cvxnn::program::{ModelKind, TwoLayerProgram};
use cvxnn::solver::conic::{solve_conic, ConicProblem, ConicSettings};
use cvxnn::solver::SolverSettings;

fn main() -> Result<(), Box<dyn Error>> {
    let args: Vec<String> = std::env::args().collect();
    if args.len() != 5 {
        return Err("usage: conic_vs_first_order FILE.csv LAMBDA PATTERNS MAX_ITER".into());
    }
    let table = read_table(Path::new(&args[1]), "y")?;
    let lambda: f64 = args[2].parse()?;
    let patterns: usize = args[3].parse()?;
    let max_iter: usize = args[4].parse()?;
    let task = Task::infer(&table.target);
    let encoded = encode_target(task, &table.target)?;
    let mut y = encoded.program_targets(&(0..table.target.len()).collect::<Vec<_>>());
    let loss = match task {
        Task::Binary => LossKind::Logistic,
        Task::Regression => {
            let scale = target_scale(task, true, &y);
            y.iter_mut().for_each(|v| *v /= scale);
            LossKind::Squared
        }
        Task::Multiclass => return Err("multiclass targets: not supported by this example".into()),
    };
    let x = add_bias(&Standardizer::fit(&table.features).transform(&table.features)?);
    let pats = sample_patterns(&x, patterns, 0)?;
    let start = std::time::Instant::now();
    let conic = solve_conic(
        &ConicProblem {
            x: &x,
            y: &y,
            masks: &pats.masks,
            loss,
            model: ModelKind::Relu,
            lambda,
        },
        &ConicSettings::default(),
    )?;
    println!(
        "conic:       objective {:.10e}  status {:?}  {:.2} s",
        conic.objective,
        conic.status,
        start.elapsed().as_secs_f64()
    );
    let program = TwoLayerProgram::new(&x, &y, &pats.masks, loss, ModelKind::Relu, lambda)?;
    let settings = SolverSettings {
        tol: 1e-7,
        max_iter,
        ..Default::default()
    };
    let s = program.solve(&settings, None, &mut |_| {})?;
    println!(
        "first-order: objective {:.10e}  dual bound {:.10e}  violation {:.2e}  {}  {} iterations  {:.2} s",
        s.objective, s.dual_bound, s.violation, s.status, s.iterations, s.seconds
    );
    println!(
        "first-order - conic = {:.3e} (relative); conic - dual bound = {:.3e} (relative)",
        (s.objective - conic.objective) / conic.objective,
        (conic.objective - s.dual_bound) / conic.objective
    );
    Ok(())
}
