use cvxnn::data::{add_bias, encode_target, read_table, Standardizer, Task};
use cvxnn::loss::LossKind;
use cvxnn::patterns::sample_patterns;
use cvxnn::program::{ModelKind, TwoLayerProgram};
use cvxnn::solver::conic::{solve_conic, ConicProblem, ConicSettings};
use cvxnn::solver::SolverSettings;
fn main() {
    let a: Vec<String> = std::env::args().collect();
    let t = read_table(std::path::Path::new(&a[1]), "y").unwrap();
    let lambda: f64 = a[2].parse().unwrap();
    let p: usize = a[3].parse().unwrap();
    let iters: usize = a[4].parse().unwrap();
    let task = Task::infer(&t.target);
    let (mut y, _) = encode_target(task, &t.target, &t.path, "y").unwrap();
    let loss = if task == Task::Binary {
        LossKind::Logistic
    } else {
        LossKind::Squared
    };
    if task == Task::Regression {
        let m = y.iter().sum::<f64>() / y.len() as f64;
        let s = (y.iter().map(|v| (v - m) * (v - m)).sum::<f64>() / y.len() as f64).sqrt();
        y.iter_mut().for_each(|v| *v /= s);
    }
    let x = add_bias(
        &Standardizer::fit(&t.features)
            .transform(&t.features)
            .unwrap(),
    );
    let pats = sample_patterns(&x, p, 0).unwrap();
    let prog = TwoLayerProgram::new(&x, &y, &pats.masks, loss, ModelKind::Relu, lambda).unwrap();
    let t0 = std::time::Instant::now();
    let c = solve_conic(
        &ConicProblem {
            x: &x,
            y: &y,
            masks: &pats.masks,
            loss,
            model: ModelKind::Relu,
            lambda,
        },
        &ConicSettings::default(),
    )
    .unwrap();
    println!(
        "conic: obj {:.10e} status {:?} {:.2}s",
        c.objective,
        c.status,
        t0.elapsed().as_secs_f64()
    );
    let s = prog
        .solve(
            &SolverSettings {
                tol: 1e-7,
                max_iter: iters,
                ..Default::default()
            },
            None,
            &mut |_| {},
        )
        .unwrap();
    println!(
        "fo: obj {:.10e} dual {:.10e} viol {:.2e} status {} it {} {:.2}s",
        s.objective, s.dual_bound, s.violation, s.status, s.iterations, s.seconds
    );
    println!(
        "fo obj - conic = {:.3e} rel; conic - dual = {:.3e} rel",
        (s.objective - c.objective) / c.objective,
        (c.objective - s.dual_bound) / c.objective
    );
}
