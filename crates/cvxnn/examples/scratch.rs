use cvxnn::linalg::Matrix;
use cvxnn::loss::LossKind;
use cvxnn::network::Network;
use cvxnn::patterns::sample_patterns;
use cvxnn::program::{ModelKind, TwoLayerProgram};
use cvxnn::solver::SolverSettings;

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let path = &args[1];
    let lambda: f64 = args[2].parse().unwrap();
    let p: usize = args[3].parse().unwrap();
    let tol: f64 = args[4].parse().unwrap();
    let rho: f64 = args.get(5).map(|s| s.parse().unwrap()).unwrap_or(1.0);
    let text = std::fs::read_to_string(path).unwrap();
    let mut rows = Vec::new();
    for l in text.lines().skip(1) {
        rows.push(l.split(',').map(|v| v.parse::<f64>().unwrap()).collect::<Vec<_>>());
    }
    let d0 = rows[0].len() - 1;
    let n = rows.len();
    let mut y: Vec<f64> = rows.iter().map(|r| r[d0]).collect();
    let binary = y.iter().all(|&v| v == 0.0 || v == 1.0);
    if binary { y.iter_mut().for_each(|v| *v = if *v > 0.5 { 1.0 } else { -1.0 }); } else {
        let m = y.iter().sum::<f64>() / n as f64; let s = (y.iter().map(|v| (v-m)*(v-m)).sum::<f64>()/n as f64).sqrt();
        y.iter_mut().for_each(|v| *v = (*v - m)/s);
    }
    let mut x = Matrix::zeros(n, d0 + 1);
    for k in 0..d0 {
        let m = rows.iter().map(|r| r[k]).sum::<f64>() / n as f64;
        let s = (rows.iter().map(|r| (r[k]-m)*(r[k]-m)).sum::<f64>()/n as f64).sqrt().max(1e-12);
        for i in 0..n { x.set(i, k, (rows[i][k]-m)/s); }
    }
    for i in 0..n { x.set(i, d0, 1.0); }
    let pats = sample_patterns(&x, p, 0).unwrap();
    let loss = if binary { LossKind::Logistic } else { LossKind::Squared };
    for model in [ModelKind::Relu] {
        let prog = TwoLayerProgram::new(&x, &y, &pats.masks, loss, model, lambda).unwrap();
        let s = SolverSettings { tol, max_iter: 30000, rho_init: rho };
        let sol = prog.solve(&s, None, &mut |_| {}).unwrap();
        let net = Network::from_convex(model, d0 + 1, &sol.x, Some(&pats.gates)).unwrap();
        let nobj = net.objective(&x, &y, loss, lambda).unwrap();
        println!("{model} P={} status={} obj={:.10} dual={:.10} relgap={:.2e} viol={:.2e} it={} t={:.3}s neurons={} netobj={:.10} relerr={:.2e}",
            pats.masks.len(), sol.status, sol.objective, sol.dual_bound, sol.relative_gap(), sol.violation, sol.iterations, sol.seconds, net.neurons(), nobj, (nobj-sol.objective).abs()/sol.objective);
        if model == ModelKind::Relu { for t in sol.trace.iter().take(40) { println!("   it={} obj={:.8} dual={:.8} gap={:.2e} viol={:.2e}", t.iteration, t.objective, t.dual_bound, t.relative_gap, t.violation); } }
    }
}
