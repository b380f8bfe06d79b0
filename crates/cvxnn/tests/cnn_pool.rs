//! The two-layer CNN with local average / max pooling (DESIGN section 2): the rebuilt network
//! attains the convex objective, and with exact patterns on tiny inputs seeded restarts of
//! plain gradient descent on the non-convex pooled CNN (written here) never beat the convex
//! optimum, with the dual bound below all of them. Which architecture each program is exact for
//! is part of what is checked: the gated average-pool program for its gate set, the ReLU
//! programs for filters that each feed one window (and for max pooling that program's
//! joint activation/argmax patterns).

mod common;

use common::{rel_diff, Rng};
use cvxnn::data::{patches, ConvShape, PoolKind, Pooling};
use cvxnn::estimator::exact_patterns;
use cvxnn::linalg::Matrix;
use cvxnn::loss::LossKind;
use cvxnn::network::PooledConvNetwork;
use cvxnn::patterns::sample_patterns;
use cvxnn::program::{AvgPoolProgram, JointPatterns, MaxPoolProgram, ModelKind};
use cvxnn::solver::{SolverSettings, Status};

const RESTARTS: u64 = 8;
const GD_STEPS: usize = 6_000;
const GD_LR: f64 = 2e-2;

fn samples(n: usize, features: usize, seed: u64) -> (Matrix, Vec<f64>) {
    let mut rng = Rng::new(seed);
    let rows: Vec<Vec<f64>> = (0..n)
        .map(|_| (0..features).map(|_| rng.normal()).collect())
        .collect();
    let y = (0..n).map(|_| rng.normal()).collect();
    (Matrix::from_rows(&rows, features).unwrap(), y)
}

/// The non-convex pooled CNN for gradient descent: which windows each filter may feed
/// (`feeds[f][w]`) and, for gated ReLU, each filter's fixed gate.
struct Arch<'a> {
    xs: &'a Matrix,
    n: usize,
    windows: &'a [Vec<usize>],
    kind: PoolKind,
    feeds: Vec<Vec<bool>>,
    gates: Option<Vec<Vec<f64>>>,
}

/// Per (filter, sample, window): the pooled activation and its slope in each patch's
/// pre-activation.
type Pooled = Vec<Vec<Vec<(f64, Vec<f64>)>>>;

impl Arch<'_> {
    /// Per (filter, sample, window): pooled activation and the patches' activation slopes
    /// (d pooled / d pre-activation of each patch of the window).
    fn pooled(&self, u: &[Vec<f64>]) -> Pooled {
        let dot = |r: usize, v: &[f64]| -> f64 {
            (0..v.len()).map(|c| self.xs.get(r, c) * v[c]).sum::<f64>()
        };
        u.iter()
            .enumerate()
            .map(|(f, uf)| {
                (0..self.n)
                    .map(|j| {
                        self.windows
                            .iter()
                            .map(|win| {
                                let acts: Vec<(f64, f64)> = win
                                    .iter()
                                    .map(|&k| {
                                        let r = k * self.n + j;
                                        let p = dot(r, uf);
                                        let on = match &self.gates {
                                            Some(g) => dot(r, &g[f]) >= 0.0,
                                            None => p > 0.0,
                                        };
                                        if on {
                                            (p, 1.0)
                                        } else {
                                            (0.0, 0.0)
                                        }
                                    })
                                    .collect();
                                match self.kind {
                                    PoolKind::Avg => {
                                        let s = win.len() as f64;
                                        (
                                            acts.iter().map(|a| a.0).sum::<f64>() / s,
                                            acts.iter().map(|a| a.1 / s).collect(),
                                        )
                                    }
                                    PoolKind::Max => {
                                        let mut best = 0;
                                        for (t, a) in acts.iter().enumerate() {
                                            if a.0 > acts[best].0 {
                                                best = t;
                                            }
                                        }
                                        let mut slope = vec![0.0; win.len()];
                                        slope[best] = acts[best].1;
                                        (acts[best].0, slope)
                                    }
                                }
                            })
                            .collect()
                    })
                    .collect()
            })
            .collect()
    }

    fn objective(&self, u: &[Vec<f64>], a: &[Vec<f64>], y: &[f64], lambda: f64) -> f64 {
        let pooled = self.pooled(u);
        let n = self.n as f64;
        let fit: f64 = (0..self.n)
            .map(|j| {
                let f: f64 = (0..u.len())
                    .map(|l| {
                        (0..self.windows.len())
                            .map(|w| a[l][w] * pooled[l][j][w].0)
                            .sum::<f64>()
                    })
                    .sum();
                0.5 * (f - y[j]) * (f - y[j])
            })
            .sum::<f64>()
            / n;
        let decay: f64 = u.iter().flatten().map(|v| v * v).sum::<f64>()
            + a.iter().flatten().map(|v| v * v).sum::<f64>();
        fit + 0.5 * lambda * decay
    }

    /// Plain full-batch gradient descent from a seeded Gaussian start; final objective.
    fn gradient_descent(&self, y: &[f64], lambda: f64, seed: u64) -> f64 {
        let (m, h, nw) = (self.feeds.len(), self.xs.ncols(), self.windows.len());
        let mut rng = Rng::new(1000 + seed);
        let scale = 1.0 / (h as f64).sqrt();
        let mut u: Vec<Vec<f64>> = (0..m)
            .map(|_| (0..h).map(|_| scale * rng.normal()).collect())
            .collect();
        let mut a: Vec<Vec<f64>> = (0..m)
            .map(|l| {
                (0..nw)
                    .map(|w| {
                        let v = scale * rng.normal();
                        if self.feeds[l][w] {
                            v
                        } else {
                            0.0
                        }
                    })
                    .collect()
            })
            .collect();
        for _ in 0..GD_STEPS {
            let pooled = self.pooled(&u);
            let res: Vec<f64> = (0..self.n)
                .map(|j| {
                    let f: f64 = (0..m)
                        .map(|l| (0..nw).map(|w| a[l][w] * pooled[l][j][w].0).sum::<f64>())
                        .sum();
                    (f - y[j]) / self.n as f64
                })
                .collect();
            for l in 0..m {
                let mut gu: Vec<f64> = u[l].iter().map(|v| lambda * v).collect();
                let mut ga: Vec<f64> = a[l].iter().map(|v| lambda * v).collect();
                for (j, &rj) in res.iter().enumerate() {
                    for (w, win) in self.windows.iter().enumerate() {
                        let (val, slope) = &pooled[l][j][w];
                        ga[w] += rj * val;
                        for (t, &k) in win.iter().enumerate() {
                            if slope[t] != 0.0 {
                                let c = rj * a[l][w] * slope[t];
                                for (g, col) in gu.iter_mut().zip(0..h) {
                                    *g += c * self.xs.get(k * self.n + j, col);
                                }
                            }
                        }
                    }
                }
                for (v, g) in u[l].iter_mut().zip(&gu) {
                    *v -= GD_LR * g;
                }
                for w in 0..nw {
                    if self.feeds[l][w] {
                        a[l][w] -= GD_LR * ga[w];
                    }
                }
            }
        }
        self.objective(&u, &a, y, lambda)
    }

    fn restarts(&self, y: &[f64], lambda: f64) -> Vec<f64> {
        (0..RESTARTS)
            .map(|s| self.gradient_descent(y, lambda, s))
            .collect()
    }
}

fn settings(max_iter: usize) -> SolverSettings {
    SolverSettings {
        tol: 1e-7,
        max_iter,
        ..SolverSettings::default()
    }
}

fn min(v: &[f64]) -> f64 {
    v.iter().copied().fold(f64::INFINITY, f64::min)
}

/// Gated ReLU with average pooling over sampled gates: exact for networks whose filters use
/// those gates. Gradient descent on such networks (every gate carrying `min(h, a)` filters
/// that feed every window) never beats the nuclear-norm optimum.
#[test]
fn gated_avg_pool_beats_gradient_descent_with_the_same_gates() {
    let shape = ConvShape::new(1, vec![7], vec![2], 1, 0).unwrap();
    let pool = Pooling::parse("avg:3").unwrap();
    let (n, lambda) = (6, 2e-2);
    let (x, y) = samples(n, shape.input_len(), 11);
    let xs = patches(&x, &shape, false).unwrap();
    let windows = pool.windows(&shape).unwrap();
    let g = sample_patterns(&xs, 6, 4).unwrap();
    let program = AvgPoolProgram::new(
        &xs,
        shape.n_patches(),
        &windows,
        &y,
        &g.masks,
        LossKind::Squared,
        ModelKind::GatedRelu,
        lambda,
    )
    .unwrap();
    let sol = program.solve(&settings(50_000), None, &mut |_| {}).unwrap();
    assert_eq!(sol.status, Status::Converged);
    let net = PooledConvNetwork::from_convex(
        ModelKind::GatedRelu,
        shape.clone(),
        false,
        pool,
        &sol.x,
        Some(&g.gates),
    )
    .unwrap();
    let rebuilt = net.objective(&x, &y, LossKind::Squared, lambda).unwrap();
    assert!(
        rel_diff(rebuilt, sol.objective) <= 1e-9,
        "{rebuilt} vs {}",
        sol.objective
    );
    let per_gate = shape.patch_len().min(windows.len());
    let gates: Vec<Vec<f64>> = (0..g.masks.len())
        .flat_map(|i| std::iter::repeat_n(g.gates.col(i).to_vec(), per_gate))
        .collect();
    let arch = Arch {
        xs: &xs,
        n,
        windows: &windows,
        kind: PoolKind::Avg,
        feeds: vec![vec![true; windows.len()]; gates.len()],
        gates: Some(gates),
    };
    let runs = arch.restarts(&y, lambda);
    eprintln!(
        "gated avg: {} gates, convex {:.10e} (rebuilt {rebuilt:.10e}, {} filters), bound {:.10e}, GD best {:.10e} worst {:.10e}",
        g.masks.len(),
        sol.objective,
        net.filters(),
        sol.dual_bound,
        min(&runs),
        runs.iter().copied().fold(f64::NEG_INFINITY, f64::max)
    );
    assert!(min(&runs) >= sol.objective * (1.0 - 1e-6));
    assert!(runs.iter().all(|r| sol.dual_bound <= *r));
}

/// ReLU with average pooling, exact patterns: the per-window program is exact for CNNs whose
/// filters each feed one window (gradient descent on those never beats it, the bound is below
/// all runs); for the full architecture (filters feed every window) it is an upper bound, and
/// the gated nuclear-norm program over the same exact patterns is a lower bound (every ReLU
/// filter is a gated filter gated by itself): the full CNN's restarts lie above that bound.
#[test]
fn exact_relu_avg_pool_brackets_gradient_descent() {
    let shape = ConvShape::new(1, vec![6], vec![2], 1, 0).unwrap();
    let pool = Pooling::parse("avg:2").unwrap();
    let (n, lambda) = (6, 3e-2);
    let (x, y) = samples(n, shape.input_len(), 7);
    let xs = patches(&x, &shape, false).unwrap();
    let windows = pool.windows(&shape).unwrap();
    let masks = exact_patterns(&xs, 100_000).unwrap();
    let solve = |model| {
        let program = AvgPoolProgram::new(
            &xs,
            shape.n_patches(),
            &windows,
            &y,
            &masks,
            LossKind::Squared,
            model,
            lambda,
        )
        .unwrap();
        let sol = program.solve(&settings(60_000), None, &mut |_| {}).unwrap();
        (program.violation(&sol.x).unwrap(), sol)
    };
    let (violation, relu) = solve(ModelKind::Relu);
    assert!(
        relu.relative_gap() <= 1e-5,
        "{:?}",
        (relu.status, relu.objective, relu.dual_bound)
    );
    assert!(violation <= 1e-6, "violation {violation}");
    let net =
        PooledConvNetwork::from_convex(ModelKind::Relu, shape.clone(), false, pool, &relu.x, None)
            .unwrap();
    let rebuilt = net.objective(&x, &y, LossKind::Squared, lambda).unwrap();
    assert!(
        rel_diff(rebuilt, relu.objective) <= 1e-6,
        "{rebuilt} vs {}",
        relu.objective
    );
    let (_, gated) = solve(ModelKind::GatedRelu);
    assert!(gated.relative_gap() <= 1e-6);
    let width = 4;
    let per_window = Arch {
        xs: &xs,
        n,
        windows: &windows,
        kind: PoolKind::Avg,
        feeds: (0..width * windows.len())
            .map(|f| (0..windows.len()).map(|w| f % windows.len() == w).collect())
            .collect(),
        gates: None,
    };
    let runs = per_window.restarts(&y, lambda);
    let full = Arch {
        feeds: vec![vec![true; windows.len()]; width * windows.len()],
        ..per_window
    };
    let full_runs = full.restarts(&y, lambda);
    eprintln!(
        "relu avg: {} exact patterns; per-window convex {:.10e} (rebuilt {rebuilt:.10e}, {} filters), bound {:.10e}, GD best {:.10e}; full architecture: gated lower bound {:.10e}, GD best {:.10e} worst {:.10e}",
        masks.len(),
        relu.objective,
        net.filters(),
        relu.dual_bound,
        min(&runs),
        gated.dual_bound,
        min(&full_runs),
        full_runs.iter().copied().fold(f64::NEG_INFINITY, f64::max)
    );
    assert!(min(&runs) >= relu.objective * (1.0 - 1e-5));
    assert!(runs.iter().all(|r| relu.dual_bound <= *r));
    assert!(full_runs.iter().all(|r| gated.dual_bound <= *r));
    assert!(gated.dual_bound <= relu.objective);
}

/// 2-D, bias, padding, four windows: the rebuilt network's objective equals the convex one for
/// both models.
#[test]
fn rebuilt_avg_pool_objective_equals_convex_objective() {
    let shape = ConvShape::new(2, vec![4, 4], vec![2, 2], 1, 1).unwrap();
    let pool = Pooling::parse("avg:2").unwrap();
    let (x, y) = samples(8, shape.input_len(), 9);
    let windows = pool.windows(&shape).unwrap();
    assert_eq!(windows.len(), 4);
    for bias in [false, true] {
        let xs = patches(&x, &shape, bias).unwrap();
        let pats = sample_patterns(&xs, 12, 1).unwrap();
        for model in [ModelKind::GatedRelu, ModelKind::Relu] {
            let program = AvgPoolProgram::new(
                &xs,
                shape.n_patches(),
                &windows,
                &y,
                &pats.masks,
                LossKind::Squared,
                model,
                1e-2,
            )
            .unwrap();
            let sol = program.solve(&settings(12_000), None, &mut |_| {}).unwrap();
            // Gated converges; for ReLU the identity needs feasibility, not optimality.
            if model == ModelKind::GatedRelu {
                assert_eq!(sol.status, Status::Converged, "bias {bias}");
            }
            let violation = program.violation(&sol.x).unwrap();
            assert!(
                violation <= 1e-6,
                "{model} bias {bias}: violation {violation}"
            );
            let gates = (model == ModelKind::GatedRelu).then_some(&pats.gates);
            let net =
                PooledConvNetwork::from_convex(model, shape.clone(), bias, pool, &sol.x, gates)
                    .unwrap();
            let rebuilt = net.objective(&x, &y, LossKind::Squared, 1e-2).unwrap();
            assert!(
                rel_diff(rebuilt, sol.objective) <= 1e-6,
                "{model} bias {bias}: rebuilt {rebuilt} vs convex {}",
                sol.objective
            );
            assert!(sol.dual_bound <= sol.objective);
        }
    }
}

/// Max pooling with exact joint (activation, argmax) patterns: the program's optimum is never
/// beaten by gradient descent on the non-convex max-pooled CNN whose filters each feed one
/// window, and its dual bound is below every run. `pool` = the whole map is global max pooling,
/// where that is every network of the architecture.
fn check_max_pool(shape: ConvShape, pool: &str, n: usize, lambda: f64, seed: u64) {
    let pool = Pooling::parse(pool).unwrap();
    let (x, y) = samples(n, shape.input_len(), seed);
    let xs = patches(&x, &shape, false).unwrap();
    let windows = pool.windows(&shape).unwrap();
    let program = MaxPoolProgram::new(
        &xs,
        shape.n_patches(),
        &windows,
        &y,
        JointPatterns::Exact(100_000),
        LossKind::Squared,
        lambda,
    )
    .unwrap();
    let sol = program.solve(&settings(60_000), None, &mut |_| {}).unwrap();
    let violation = program.violation(&sol.x).unwrap();
    assert!(
        sol.relative_gap() <= 1e-5,
        "{:?}",
        (sol.status, sol.objective, sol.dual_bound)
    );
    assert!(violation <= 1e-6, "violation {violation}");
    let net =
        PooledConvNetwork::from_window_blocks(shape.clone(), false, pool, &program.blocks(&sol.x))
            .unwrap();
    let rebuilt = net.objective(&x, &y, LossKind::Squared, lambda).unwrap();
    assert!(
        rel_diff(rebuilt, sol.objective) <= 1e-6,
        "{rebuilt} vs {}",
        sol.objective
    );
    let a = windows.len();
    let arch = Arch {
        xs: &xs,
        n,
        windows: &windows,
        kind: PoolKind::Max,
        feeds: (0..4 * a)
            .map(|f| (0..a).map(|w| f % a == w).collect())
            .collect(),
        gates: None,
    };
    let runs = arch.restarts(&y, lambda);
    eprintln!(
        "max {}: {} windows, joint patterns {:?}, convex {:.10e} (rebuilt {rebuilt:.10e}, {} filters), bound {:.10e}, GD best {:.10e} worst {:.10e}",
        pool.describe(),
        a,
        program.patterns_per_window(),
        sol.objective,
        net.filters(),
        sol.dual_bound,
        min(&runs),
        runs.iter().copied().fold(f64::NEG_INFINITY, f64::max)
    );
    assert!(min(&runs) >= sol.objective * (1.0 - 1e-5));
    assert!(runs.iter().all(|r| sol.dual_bound <= *r));
}

#[test]
fn exact_global_max_pool_beats_gradient_descent_restarts() {
    check_max_pool(
        ConvShape::new(1, vec![6], vec![2], 1, 0).unwrap(),
        "max:5",
        5,
        3e-2,
        21,
    );
}

#[test]
fn exact_local_max_pool_beats_gradient_descent_restarts() {
    check_max_pool(
        ConvShape::new(1, vec![7], vec![2], 1, 0).unwrap(),
        "max:3",
        5,
        3e-2,
        23,
    );
}

/// 2-D, bias, padding, sampled joint patterns: rebuilt objective == convex objective.
#[test]
fn rebuilt_max_pool_objective_equals_convex_objective() {
    let shape = ConvShape::new(2, vec![4, 4], vec![2, 2], 1, 1).unwrap();
    let pool = Pooling::parse("max:2").unwrap();
    let (x, y) = samples(8, shape.input_len(), 9);
    let windows = pool.windows(&shape).unwrap();
    let xs = patches(&x, &shape, true).unwrap();
    let gates = sample_patterns(&xs, 15, 1).unwrap().gates;
    let program = MaxPoolProgram::new(
        &xs,
        shape.n_patches(),
        &windows,
        &y,
        JointPatterns::Gates(&gates),
        LossKind::Squared,
        1e-2,
    )
    .unwrap();
    let sol = program.solve(&settings(20_000), None, &mut |_| {}).unwrap();
    // The identity needs feasibility, not optimality.
    let violation = program.violation(&sol.x).unwrap();
    eprintln!(
        "max 2-D: {:?}, gap {:.2e}, violation {violation:.1e}",
        sol.status,
        sol.relative_gap()
    );
    assert!(violation <= 1e-7, "violation {violation}");
    assert!(sol.dual_bound <= sol.objective);
    let net =
        PooledConvNetwork::from_window_blocks(shape, true, pool, &program.blocks(&sol.x)).unwrap();
    let rebuilt = net.objective(&x, &y, LossKind::Squared, 1e-2).unwrap();
    assert!(
        rel_diff(rebuilt, sol.objective) <= 1e-6,
        "{rebuilt} vs {}",
        sol.objective
    );
}
