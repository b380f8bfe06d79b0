//! Warm starts along a decreasing lambda grid for gated ReLU: each lambda solved from zero
//! ("cold"), from the previous solution ("warm"), and from the previous solution and its final
//! step size ("warm+step", no new `||K||` estimate). Prints iterations and seconds per lambda.
//! Used for the table in bench/RESULTS.md.
//!
//! ```sh
//! cargo run --release -p cvxnn --example lambda_path -- examples/data/diabetes.csv 500 1e-2 1e-4 5
//! ```
//! Arguments: CSV file (target `y`), sampled patterns (seed 0), largest and smallest lambda,
//! grid points (log-spaced). Preprocessing as in `conic_vs_first_order` (squared loss on the
//! target divided by its standard deviation; features z-scored, bias column).

use std::error::Error;
use std::path::Path;

use cvxnn::data::{add_bias, read_table, Standardizer, Task};
use cvxnn::estimator::target_scale;
use cvxnn::loss::LossKind;
use cvxnn::patterns::sample_patterns;
use cvxnn::program::{ModelKind, TwoLayerProgram};
use cvxnn::solver::fista::solve_group_lasso;
use cvxnn::solver::SolverSettings;

fn main() -> Result<(), Box<dyn Error>> {
    let args: Vec<String> = std::env::args().collect();
    if args.len() != 6 {
        return Err("usage: lambda_path FILE.csv PATTERNS LAMBDA_MAX LAMBDA_MIN POINTS".into());
    }
    let table = read_table(Path::new(&args[1]), "y")?;
    let patterns: usize = args[2].parse()?;
    let (hi, lo): (f64, f64) = (args[3].parse()?, args[4].parse()?);
    let points: usize = args[5].parse::<usize>()?.max(2);
    let target = table.target.values()?;
    let scale = target_scale(Task::Regression, true, &target);
    let y: Vec<f64> = target.iter().map(|v| v / scale).collect();
    let x = add_bias(&Standardizer::fit(&table.features).transform(&table.features)?);
    let masks = sample_patterns(&x, patterns, 0)?.masks;
    let settings = SolverSettings::default();
    let lambdas: Vec<f64> = (0..points)
        .map(|i| hi * (lo / hi).powf(i as f64 / (points - 1) as f64))
        .collect();
    println!("| lambda | cold it | cold s | warm it | warm s | warm+step it | warm+step s |");
    println!("|---|---|---|---|---|---|---|");
    let mut prev: Option<(Vec<f64>, Option<f64>)> = None;
    let mut totals = [0.0f64; 6];
    for &lambda in &lambdas {
        let program = TwoLayerProgram::new(
            &x,
            &y,
            &masks,
            LossKind::Squared,
            ModelKind::GatedRelu,
            lambda,
        )?;
        let op = program.prediction_operator();
        let zero = vec![0.0; program.n_vars()];
        let run = |x0: &[f64], step0: Option<f64>| {
            let s = solve_group_lasso(
                &op,
                program.data(),
                &program.penalty(),
                x0,
                &settings,
                step0,
                &mut |_| {},
            );
            let gap = s.relative_gap();
            (s.iterations, s.seconds, s.x, s.step, gap)
        };
        let cold = run(&zero, None);
        let (x0, step) = prev.clone().unwrap_or((zero.clone(), None));
        let warm = run(&x0, None);
        let warm_step = run(&x0, step);
        for (g, label) in [
            (cold.4, "cold"),
            (warm.4, "warm"),
            (warm_step.4, "warm+step"),
        ] {
            if g > settings.tol {
                eprintln!("lambda {lambda:e}: {label} stopped at gap {g:.2e}");
            }
        }
        println!(
            "| {lambda:.2e} | {} | {:.2} | {} | {:.2} | {} | {:.2} |",
            cold.0, cold.1, warm.0, warm.1, warm_step.0, warm_step.1
        );
        for (t, v) in totals.iter_mut().zip([
            cold.0 as f64,
            cold.1,
            warm.0 as f64,
            warm.1,
            warm_step.0 as f64,
            warm_step.1,
        ]) {
            *t += v;
        }
        prev = Some((warm_step.2, warm_step.3));
    }
    println!(
        "| total | {} | {:.2} | {} | {:.2} | {} | {:.2} |",
        totals[0], totals[1], totals[2], totals[3], totals[4], totals[5]
    );
    Ok(())
}
