//! The linear two-layer circular CNN and its Fourier-domain L1 program (DESIGN sections 2, 11):
//! features against a naive DFT, rebuilt network == convex objective, convex optimum == best of
//! many gradient-descent restarts on the non-convex network (none below the dual bound), and a
//! certified duality gap. The network side is written here independently, in the time domain.

use cvxnn::linalg::Matrix;
use cvxnn::loss::LossKind;
use cvxnn::operator::{inverse_real_spectrum, real_spectrum, FourierFeatures, LinearMap};
use cvxnn::program::CircularProgram;
use cvxnn::solver::{SolverSettings, Status};
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use rand_distr::{Distribution, StandardNormal};

fn normal(rng: &mut ChaCha8Rng) -> f64 {
    StandardNormal.sample(rng)
}

/// `(u ⊛ x)_t = sum_s u_s x_{(t - s) mod L}`, directly.
fn conv(u: &[f64], x: &[f64]) -> Vec<f64> {
    let l = x.len();
    (0..l)
        .map(|t| (0..l).map(|s| u[s] * x[(t + l - s) % l]).sum())
        .collect()
}

fn loss_value(loss: LossKind, p: f64, y: f64) -> f64 {
    match loss {
        LossKind::Squared => 0.5 * (p - y) * (p - y),
        _ => (1.0 + (-y * p).exp()).ln(),
    }
}

fn loss_deriv(loss: LossKind, p: f64, y: f64) -> f64 {
    match loss {
        LossKind::Squared => p - y,
        _ => -y / (1.0 + (y * p).exp()),
    }
}

/// `sum_j <a_j, u_j ⊛ x>`.
fn net_output(us: &[Vec<f64>], as_: &[Vec<f64>], x: &[f64]) -> f64 {
    us.iter()
        .zip(as_)
        .map(|(u, a)| conv(u, x).iter().zip(a).map(|(c, a)| c * a).sum::<f64>())
        .sum()
}

/// `(1/n) sum loss + (lambda/2) sum (||u_j||^2 + ||a_j||^2)`.
fn net_objective(
    us: &[Vec<f64>],
    as_: &[Vec<f64>],
    xs: &[Vec<f64>],
    y: &[f64],
    loss: LossKind,
    lambda: f64,
) -> f64 {
    let n = xs.len() as f64;
    let fit: f64 = xs
        .iter()
        .zip(y)
        .map(|(x, &yi)| loss_value(loss, net_output(us, as_, x), yi))
        .sum::<f64>()
        / n;
    let sq: f64 = us.iter().chain(as_).flatten().map(|v| v * v).sum();
    fit + 0.5 * lambda * sq
}

/// Gaussian signals and targets from a planted two-channel circular CNN (plus noise; signs for
/// the logistic loss).
fn toy_data(n: usize, l: usize, loss: LossKind, seed: u64) -> (Vec<Vec<f64>>, Matrix, Vec<f64>) {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let xs: Vec<Vec<f64>> = (0..n)
        .map(|_| (0..l).map(|_| normal(&mut rng)).collect())
        .collect();
    let us: Vec<Vec<f64>> = (0..2)
        .map(|_| (0..l).map(|_| normal(&mut rng) * 0.5).collect())
        .collect();
    let as_: Vec<Vec<f64>> = (0..2)
        .map(|_| (0..l).map(|_| normal(&mut rng) * 0.5).collect())
        .collect();
    let y: Vec<f64> = xs
        .iter()
        .map(|x| {
            let p = net_output(&us, &as_, x) + 0.3 * normal(&mut rng);
            match loss {
                LossKind::Squared => p,
                _ => {
                    if p >= 0.0 {
                        1.0
                    } else {
                        -1.0
                    }
                }
            }
        })
        .collect();
    let mat = Matrix::from_rows(&xs, l).expect("rows of length l");
    (xs, mat, y)
}

fn settings(tol: f64) -> SolverSettings {
    SolverSettings {
        tol,
        max_iter: 200_000,
        ..SolverSettings::default()
    }
}

#[test]
fn fourier_features_match_naive_dft() {
    for l in [1usize, 2, 5, 6, 7, 8] {
        let (xs, x, _) = toy_data(4, l, LossKind::Squared, 3 + l as u64);
        let feats = FourierFeatures::new(&x).unwrap();
        let g = l / 2 + 1;
        assert_eq!(feats.matrix().ncols(), 2 * g);
        for (i, xi) in xs.iter().enumerate() {
            for f in 0..g {
                let (mut re, mut im) = (0.0, 0.0);
                for (t, v) in xi.iter().enumerate() {
                    let ang = -2.0 * std::f64::consts::PI * (f * t) as f64 / l as f64;
                    re += v * ang.cos();
                    im += v * ang.sin();
                }
                let m = feats.matrix();
                assert!((m.get(i, 2 * f) - re).abs() < 1e-12, "L={l} f={f}");
                assert!((m.get(i, 2 * f + 1) - im).abs() < 1e-12, "L={l} f={f}");
            }
            // The inverse transform gives the signal back.
            let back = inverse_real_spectrum(&real_spectrum(xi).unwrap(), l).unwrap();
            for (a, b) in back.iter().zip(xi) {
                assert!((a - b).abs() < 1e-12);
            }
        }
    }
    // Zero-length signals are an error, not a panic.
    assert!(FourierFeatures::new(&Matrix::zeros(3, 0)).is_err());
    assert!(real_spectrum(&[]).is_err());
}

/// For random coefficients (and at the optimum) the rebuilt one-channel network's outputs equal
/// `Xf z`, and its weight decay equals the group penalty.
#[test]
fn rebuilt_network_matches_convex_objective() {
    for l in [6usize, 7] {
        for loss in [LossKind::Squared, LossKind::Logistic] {
            let (xs, x, y) = toy_data(20, l, loss, 11 + l as u64);
            let lambda_max = CircularProgram::new(&x, &y, loss, 1.0)
                .unwrap()
                .lambda_max();
            let prog = CircularProgram::new(&x, &y, loss, 0.1 * lambda_max).unwrap();
            let lambda = prog.lambda();
            let mut rng = ChaCha8Rng::seed_from_u64(5);
            let mut z_rand: Vec<f64> = (0..prog.n_vars()).map(|_| normal(&mut rng)).collect();
            // The always-zero feature columns (Im of f = 0 and f = L/2) carry no coefficient.
            z_rand[1] = 0.0;
            if l % 2 == 0 {
                z_rand[l + 1] = 0.0;
            }
            let sol = prog.solve(&settings(1e-9), None, &mut |_| {}).unwrap();
            assert_eq!(sol.status, Status::Converged);
            for z in [&z_rand, &sol.x] {
                let net = prog.rebuild(z).unwrap();
                assert_eq!(net.width(), 1);
                let convex = prog.objective(z).unwrap();
                let direct = net_objective(&net.filters, &net.readouts, &xs, &y, loss, lambda);
                let library = net.objective(&x, &y, loss, lambda).unwrap();
                let rel = (direct - convex).abs() / convex.abs();
                eprintln!("L={l} {loss}: convex {convex:.12e} network {direct:.12e} rel {rel:.1e}");
                assert!(rel < 1e-9, "L={l} {loss}: {direct} vs {convex}");
                assert!((library - direct).abs() <= 1e-12 * direct.abs());
            }
            // Zero coefficients rebuild to the empty network.
            let zero = vec![0.0; prog.n_vars()];
            assert_eq!(prog.rebuild(&zero).unwrap().width(), 0);
        }
    }
}

/// Gradient-descent iterations per restart (converges to ~1e-15 relative on these sizes).
const GD_ITERS: usize = 4000;

/// Full-batch gradient descent (Armijo backtracking, growing step) on the non-convex network
/// with `m` channels from a seeded Gaussian start; returns the final objective.
fn gd_restart(
    xs: &[Vec<f64>],
    y: &[f64],
    loss: LossKind,
    lambda: f64,
    m: usize,
    seed: u64,
    scale: f64,
) -> f64 {
    let l = xs[0].len();
    let n = xs.len() as f64;
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    // Parameters: m filters then m readouts, each of length L.
    let mut w: Vec<f64> = (0..2 * m * l).map(|_| scale * normal(&mut rng)).collect();
    let split = |w: &[f64]| -> (Vec<Vec<f64>>, Vec<Vec<f64>>) {
        let us = (0..m).map(|j| w[j * l..(j + 1) * l].to_vec()).collect();
        let as_ = (0..m)
            .map(|j| w[(m + j) * l..(m + j + 1) * l].to_vec())
            .collect();
        (us, as_)
    };
    let value = |w: &[f64]| {
        let (us, as_) = split(w);
        net_objective(&us, &as_, xs, y, loss, lambda)
    };
    let grad = |w: &[f64]| -> Vec<f64> {
        let (us, as_) = split(w);
        let mut g: Vec<f64> = w.iter().map(|v| lambda * v).collect();
        for (x, &yi) in xs.iter().zip(y) {
            let r = loss_deriv(loss, net_output(&us, &as_, x), yi) / n;
            for j in 0..m {
                // d/da_jt = r (u_j ⊛ x)_t;  d/du_js = r sum_t a_jt x_{(t-s) mod L}.
                let c = conv(&us[j], x);
                for t in 0..l {
                    g[(m + j) * l + t] += r * c[t];
                }
                for s in 0..l {
                    let d: f64 = (0..l).map(|t| as_[j][t] * x[(t + l - s) % l]).sum();
                    g[j * l + s] += r * d;
                }
            }
        }
        g
    };
    let mut f = value(&w);
    let mut step = 0.1;
    for _ in 0..GD_ITERS {
        let g = grad(&w);
        let gg: f64 = g.iter().map(|v| v * v).sum();
        if gg < 1e-26 {
            break;
        }
        loop {
            let trial: Vec<f64> = w.iter().zip(&g).map(|(a, b)| a - step * b).collect();
            let ft = value(&trial);
            if ft <= f - 0.5 * step * gg {
                w = trial;
                f = ft;
                step *= 1.2;
                break;
            }
            step *= 0.5;
            if step < 1e-16 {
                return f;
            }
        }
    }
    f
}

#[test]
fn convex_optimum_equals_best_gradient_descent_restart() {
    // Lambda fractions chosen so that some frequencies are inactive at the optimum.
    for (l, loss, frac) in [
        (6usize, LossKind::Squared, 0.2),
        (7, LossKind::Logistic, 0.5),
        (8, LossKind::Squared, 0.3),
    ] {
        let (xs, x, y) = toy_data(20, l, loss, 40 + l as u64);
        let lambda_max = CircularProgram::new(&x, &y, loss, 1.0)
            .unwrap()
            .lambda_max();
        let prog = CircularProgram::new(&x, &y, loss, frac * lambda_max).unwrap();
        let lambda = prog.lambda();
        let sol = prog.solve(&settings(1e-10), None, &mut |_| {}).unwrap();
        assert_eq!(sol.status, Status::Converged);
        let active = sol
            .x
            .chunks(2)
            .filter(|g| g.iter().any(|&v| v != 0.0))
            .count();
        let m = l; // m >= L channels.
        let restarts: Vec<f64> = (0..8)
            .map(|r| {
                gd_restart(
                    &xs,
                    &y,
                    loss,
                    lambda,
                    m,
                    100 + r,
                    [0.1, 0.5, 1.0][r as usize % 3],
                )
            })
            .collect();
        let best = restarts.iter().cloned().fold(f64::INFINITY, f64::min);
        let rel = (best - sol.objective) / sol.objective.abs();
        eprintln!(
            "L={l} {loss} lambda={lambda:.4e}: convex {:.10e} dual {:.10e} best GD {best:.10e} \
             (rel {rel:.2e}), worst GD {:.10e}, active frequencies {active}/{}",
            sol.objective,
            sol.dual_bound,
            restarts.iter().cloned().fold(f64::NEG_INFINITY, f64::max),
            l / 2 + 1
        );
        assert!(
            rel.abs() < 1e-4,
            "best restart {best} vs convex {}",
            sol.objective
        );
        for (r, v) in restarts.iter().enumerate() {
            assert!(
                *v >= sol.dual_bound - 1e-12 * sol.dual_bound.abs(),
                "restart {r} at {v} is below the dual bound {}",
                sol.dual_bound
            );
        }
    }
}

#[test]
fn duality_gap_is_certified() {
    for l in [6usize, 8] {
        for loss in [LossKind::Squared, LossKind::Logistic] {
            let (_, x, y) = toy_data(20, l, loss, 70 + l as u64);
            let lambda_max = CircularProgram::new(&x, &y, loss, 1.0)
                .unwrap()
                .lambda_max();
            for frac in [0.05, 0.5] {
                let prog = CircularProgram::new(&x, &y, loss, frac * lambda_max).unwrap();
                let tol = 1e-8;
                let sol = prog.solve(&settings(tol), None, &mut |_| {}).unwrap();
                assert_eq!(sol.status, Status::Converged);
                assert!(sol.relative_gap() <= tol);
                assert!(sol.dual_bound <= sol.objective);
                // The reported objective is the program's objective at the solution.
                let obj = prog.objective(&sol.x).unwrap();
                assert!((obj - sol.objective).abs() <= 1e-12 * obj.abs());
            }
            // Above lambda_max the zero network is optimal.
            let prog = CircularProgram::new(&x, &y, loss, 1.01 * lambda_max).unwrap();
            let sol = prog.solve(&settings(1e-8), None, &mut |_| {}).unwrap();
            assert!(sol.x.iter().all(|&v| v == 0.0));
        }
    }
}

#[test]
fn bad_input_is_an_error() {
    let (_, x, y) = toy_data(5, 6, LossKind::Squared, 1);
    assert!(CircularProgram::new(&x, &y[..4], LossKind::Squared, 0.1).is_err());
    assert!(CircularProgram::new(&x, &y, LossKind::Squared, -1.0).is_err());
    assert!(CircularProgram::new(&x, &y, LossKind::Squared, f64::NAN).is_err());
    assert!(CircularProgram::new(&x, &y, LossKind::Logistic, 0.1).is_err());
    assert!(CircularProgram::new(&x, &y, LossKind::CrossEntropy, 0.1).is_err());
    let mut bad = x.clone();
    bad.set(0, 0, f64::INFINITY);
    assert!(CircularProgram::new(&bad, &y, LossKind::Squared, 0.1).is_err());
    let prog = CircularProgram::new(&x, &y, LossKind::Squared, 0.1).unwrap();
    assert!(prog.objective(&[0.0; 3]).is_err());
    assert!(prog.rebuild(&[0.0; 3]).is_err());
    assert!(prog
        .solve(&settings(1e-6), Some(&[0.0; 2]), &mut |_| {})
        .is_err());
    let feats = FourierFeatures::new(&x).unwrap();
    assert_eq!(feats.n_vars(), 8);
}
