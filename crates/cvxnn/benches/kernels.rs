//! Microbenchmarks of the hot kernels of one first-order iteration (issue 5, DESIGN section 9),
//! each meant to be read as a multiple of the plain GEMMs it contains, measured in the same run
//! (`bench/kernels.py` runs this target and prints that table).
//!
//! Two shapes, deterministic synthetic data (ChaCha8 seeded Gaussian `X` with a bias column,
//! patterns from `sample_patterns` with a fixed seed): group `n10000_d50_p200` and group
//! `n5000_d20_p500`. In each group, with `k = P` (gated) or `k = 2P` (ReLU):
//!
//! - `gemm_xv_k{k}`: `X V`, `n x d` by `d x k`, one whole-matrix `cvxnn::linalg::gemm` call
//!   (faer with `Par::Seq`, as every operator calls it). The reference rate for `apply`.
//! - `gemm_xtr_k{k}`: `X^T R`, `d x n` by `n x k`, likewise. The reference rate for `adjoint`.
//! - `gemm_xv_panels_k{k}`, `gemm_xtr_panels_k{k}`: the same products computed the way the
//!   operator computes them, in row panels of 256 rows (one `gemm` call per panel; `X^T R`
//!   accumulated with `Accum::Add`), without the masks. Their ratio to the whole-matrix GEMM is the
//!   cost of the panel split; the operator's ratio to them is the cost of the mask pass.
//! - `apply_{gated,relu,relu_constrained}` and `adjoint_{...}`: `ArrangementOperator` as the
//!   solvers call it. Each contains one `gemm_xv`/`gemm_xtr` of its `k` plus the fused mask
//!   pass (and, for `relu_constrained`, the `n x 2P` constraint values), so the ratio to that GEMM
//!   is the overhead of everything but the GEMM. `_2t` variants run in a 2-thread pool (the
//!   operator splits row panels over rayon); all others run in a 1-thread pool.
//! - `apply_{gated,relu}_f32`, `adjoint_{gated,relu}_f32`: the same with single-precision
//!   products (`--precision f32`), against the f64 GEMM.
//! - `prox_k{2P}` (`GroupL2::prox`) and `dual_norm_k{2P}` (`GroupL2::dual_norm`) on a `d x 2P`
//!   variable: O(dP) work, expected to be negligible next to the O(ndP) GEMMs.
//! - `violation_via_program`: `TwoLayerProgram::violation` (ReLU), the public entry that
//!   evaluates all `n x 2P` constraint values. It is one `ReluConstrained` apply plus two
//!   elementwise passes over the constraint values and a fresh allocation of the image, so it
//!   measures apply + constraint check together.
//! - `al_penalty_grad_replica`: the O(nP) elementwise pass the augmented Lagrangian does on the
//!   constraint part of the image every iteration (`AugmentedImage::value_grad` in
//!   `solver/augmented_lagrangian.rs`, private, so copied here line for line): value
//!   `sum ((gamma - rho c)_+)^2` and gradient `-(gamma - rho c)_+` over `n x 2P` entries. The
//!   multiplier update (`gamma <- -grad`) is a pass of the same length.
//! - `al_relative_violation`: `cvxnn::solver::augmented_lagrangian::relative_violation`,
//!   which the AL monitor runs on the `n x 2P` constraint values at every iteration: two running
//!   maxima over one pass.
//! - `fista_iter_gated`: `cvxnn::solver::fista::fista` on the gated program, squared loss, given
//!   step `1 / (curvature * ||K||^2)` (the power-iteration estimate is done once, outside the
//!   timing), monitor always `Continue`, `max_iter = 10`; the reported time is the whole call
//!   divided by 10. The call also does one extra apply (at the start) and one extra
//!   `value_grad` + adjoint (at the end), so 10 iterations hold 11 applies and 11 adjoints when
//!   no backtracking happens (the count is printed as `fista_counts`). Its reference is
//!   `gemm_xv_k{P}` + `gemm_xtr_k{P}`; DESIGN's target is within 1.5x of those two.
//!
//! Group `patterns`: `exact_enumerate_n200_r3` (`patterns::exact::enumerate` on 200 rows of
//! rank 3: two Gaussian features and a bias) and `sample_patterns_n10000_d50_p200`.
//!
//! Every benchmark runs in a rayon pool of 1 thread (2 for `_2t`). With `KERNELS_CLOCK=cpu` the
//! 1-thread benchmarks measure the bench thread's on-CPU time instead of wall time: on a shared
//! machine that removes the time other processes hold the core (not their effect on caches).
//!
//! Sampling is flat with 10 samples and short warm-up/measurement times, so the whole target runs
//! in about three minutes on two cores.

use std::hint::black_box;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, BenchmarkGroup, Criterion, SamplingMode};
use cvxnn::linalg::{gemm, Matrix, Matrix32};
use cvxnn::loss::LossKind;
use cvxnn::operator::{ArrangementOperator, Layout, LinearMap};
use cvxnn::patterns::{exact::enumerate, sample_patterns};
use cvxnn::penalty::GroupL2;
use cvxnn::program::{ModelKind, TwoLayerProgram};
use cvxnn::solver::augmented_lagrangian::relative_violation;
use cvxnn::solver::fista::{fista, Control, LossImage};
use faer::{Accum, MatMut, MatRef};
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use rand_distr::{Distribution, StandardNormal};

type Group<'a> = BenchmarkGroup<'a, criterion::measurement::WallTime>;

/// `len` seeded standard normal values.
fn gaussian(len: usize, seed: u64) -> Vec<f64> {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    (0..len).map(|_| StandardNormal.sample(&mut rng)).collect()
}

/// `n x d` data: `d - 1` Gaussian features and a bias column of ones.
fn data(n: usize, d: usize, seed: u64) -> Matrix {
    let mut x = Matrix::from_col_major(n, d, gaussian(n * d, seed)).expect("shape");
    x.col_mut(d - 1).fill(1.0);
    x
}

/// Targets: a fixed two-neuron ReLU network of the first two features, plus noise.
fn targets(x: &Matrix, seed: u64) -> Vec<f64> {
    let noise = gaussian(x.nrows(), seed);
    (0..x.nrows())
        .map(|i| {
            let (a, b) = (x.get(i, 0), x.get(i, 1));
            (a + 0.5 * b).max(0.0) - (0.3 - a).max(0.0) + 0.1 * noise[i]
        })
        .collect()
}

/// A thread pool of `threads` threads; every benchmark runs inside one.
fn pool(threads: usize) -> rayon::ThreadPool {
    rayon::ThreadPoolBuilder::new()
        .num_threads(threads)
        .build()
        .expect("rayon thread pool")
}

/// The bench thread's time on the CPU, in ns (`/proc/thread-self/schedstat`, Linux): unlike wall
/// time it does not count the time other processes hold the core. Updated at least every
/// scheduler tick (4 ms here), against samples of about 200 ms.
fn thread_cpu_ns() -> u64 {
    std::fs::read_to_string("/proc/thread-self/schedstat")
        .ok()
        .and_then(|s| s.split_whitespace().next()?.parse().ok())
        .expect("KERNELS_CLOCK=cpu needs /proc/thread-self/schedstat (Linux)")
}

/// Whether single-threaded benchmarks measure the thread's CPU time (`KERNELS_CLOCK=cpu`)
/// instead of wall time; multi-threaded ones always measure wall time.
fn cpu_clock() -> bool {
    std::env::var("KERNELS_CLOCK").is_ok_and(|v| v == "cpu")
}

/// Times `iters` calls of `f` on a thread of `pool` (so rayon inside `f` sees that pool), and
/// reports the time divided by `per_call` (the number of iterations one call does).
fn bench_in(
    group: &mut Group<'_>,
    name: impl Into<String>,
    pool: &rayon::ThreadPool,
    per_call: u32,
    mut f: impl FnMut() + Send,
) {
    let cpu = cpu_clock() && pool.current_num_threads() == 1;
    group.bench_function(name.into(), |b| {
        b.iter_custom(|iters| {
            pool.install(|| {
                let (start, cpu0) = (Instant::now(), if cpu { thread_cpu_ns() } else { 0 });
                for _ in 0..iters {
                    f();
                }
                let elapsed = if cpu {
                    Duration::from_nanos(thread_cpu_ns() - cpu0)
                } else {
                    start.elapsed()
                };
                elapsed / per_call
            })
        })
    });
}

/// Counts the operator calls of a FISTA run.
struct Counting<'a, M: LinearMap> {
    inner: &'a M,
    applies: AtomicUsize,
    adjoints: AtomicUsize,
}

impl<M: LinearMap> LinearMap for Counting<'_, M> {
    fn n_vars(&self) -> usize {
        self.inner.n_vars()
    }
    fn image_len(&self) -> usize {
        self.inner.image_len()
    }
    fn apply(&self, x: &[f64], out: &mut [f64]) {
        self.applies.fetch_add(1, Ordering::Relaxed);
        self.inner.apply(x, out);
    }
    fn adjoint(&self, r: &[f64], out: &mut [f64]) {
        self.adjoints.fetch_add(1, Ordering::Relaxed);
        self.inner.adjoint(r, out);
    }
}

/// `AugmentedImage::value_grad`'s constraint part (solver/augmented_lagrangian.rs), copied.
fn al_penalty_grad(c: &[f64], gamma: &[f64], rho: f64, grad: &mut [f64]) -> f64 {
    let mut pen = 0.0;
    for ((g, &ck), &gk) in grad.iter_mut().zip(c).zip(gamma) {
        let v = (gk - rho * ck).max(0.0);
        pen += v * v;
        *g = -v;
    }
    pen / (2.0 * rho)
}

const FISTA_ITERS: usize = 10;

/// Rows per panel of `ArrangementOperator` (its private `PANEL`), for the panel GEMMs.
const PANEL: usize = 256;

fn shape_group(c: &mut Criterion, n: usize, d: usize, p: usize) {
    let one = pool(1);
    let two = pool(2);
    let seed = (n * 1000 + d) as u64;
    let x = data(n, d, seed);
    let y = targets(&x, seed + 1);
    let masks = sample_patterns(&x, p, seed + 2)
        .expect("sample patterns")
        .masks;
    assert_eq!(masks.len(), p, "sampled fewer patterns than asked");

    let mut group = c.benchmark_group(format!("n{n}_d{d}_p{p}"));
    group
        .sampling_mode(SamplingMode::Flat)
        .sample_size(10)
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(2));

    // Plain GEMMs: the reference rate.
    for k in [p, 2 * p] {
        let v = Matrix::from_col_major(d, k, gaussian(d * k, seed + 3)).expect("shape");
        let r = Matrix::from_col_major(n, k, gaussian(n * k, seed + 4)).expect("shape");
        let mut xv = Matrix::zeros(n, k);
        let mut xtr = Matrix::zeros(d, k);
        bench_in(&mut group, format!("gemm_xv_k{k}"), &one, 1, || {
            gemm(
                xv.as_mut(),
                Accum::Replace,
                x.as_ref(),
                black_box(&v).as_ref(),
                1.0,
            );
            black_box(xv.as_slice()[0]);
        });
        bench_in(&mut group, format!("gemm_xtr_k{k}"), &one, 1, || {
            let xt = x.as_ref().transpose();
            gemm(
                xtr.as_mut(),
                Accum::Replace,
                xt,
                black_box(&r).as_ref(),
                1.0,
            );
            black_box(xtr.as_slice()[0]);
        });
    }

    // The same GEMMs in row panels of 256 rows, as the operator computes them (its private
    // PANEL): `T = X[panel] V` into a reused panel buffer, and `G += X[panel]^T R[panel]`.
    for k in [p, 2 * p] {
        let v = Matrix::from_col_major(d, k, gaussian(d * k, seed + 3)).expect("shape");
        let r = gaussian(n * k, seed + 4);
        let mut t = vec![0.0; PANEL * k];
        let mut g = Matrix::zeros(d, k);
        bench_in(&mut group, format!("gemm_xv_panels_k{k}"), &one, 1, || {
            for r0 in (0..n).step_by(PANEL) {
                let b = PANEL.min(n - r0);
                let tp = MatMut::from_column_major_slice_mut(&mut t[..b * k], b, k);
                gemm(
                    tp,
                    Accum::Replace,
                    x.as_ref().subrows(r0, b),
                    v.as_ref(),
                    1.0,
                );
                black_box(t[0]);
            }
        });
        bench_in(&mut group, format!("gemm_xtr_panels_k{k}"), &one, 1, || {
            g.as_mut_slice().fill(0.0);
            for r0 in (0..n).step_by(PANEL) {
                let b = PANEL.min(n - r0);
                let rp = MatRef::from_column_major_slice(&r[r0 * k..(r0 + b) * k], b, k);
                let xt = x.as_ref().subrows(r0, b).transpose();
                gemm(g.as_mut(), Accum::Add, xt, rp, 1.0);
            }
            black_box(g.as_slice()[0]);
        });
    }

    // The operator, three layouts, 1 and 2 threads.
    let layouts = [
        (Layout::Gated, "gated"),
        (Layout::Relu, "relu"),
        (Layout::ReluConstrained, "relu_constrained"),
    ];
    for (tp, suffix) in [(&one, ""), (&two, "_2t")] {
        for (layout, name) in layouts {
            let op = ArrangementOperator::new(&x, &masks, layout);
            let v = gaussian(op.n_vars(), seed + 5);
            let r = gaussian(op.image_len(), seed + 6);
            let mut img = vec![0.0; op.image_len()];
            let mut g = vec![0.0; op.n_vars()];
            bench_in(&mut group, format!("apply_{name}{suffix}"), tp, 1, || {
                op.apply(black_box(&v), &mut img);
                black_box(img[0]);
            });
            bench_in(&mut group, format!("adjoint_{name}{suffix}"), tp, 1, || {
                op.adjoint(black_box(&r), &mut g);
                black_box(g[0]);
            });
        }
    }

    // The single-precision operator (`--precision f32`), gated and relu, 1 thread.
    let x32 = Matrix32::from_f64(&x);
    for (layout, name) in [(Layout::Gated, "gated"), (Layout::Relu, "relu")] {
        let op = ArrangementOperator::new_f32(&x32, &masks, layout);
        let v = gaussian(op.n_vars(), seed + 5);
        let r = gaussian(op.image_len(), seed + 6);
        let mut img = vec![0.0; op.image_len()];
        let mut g = vec![0.0; op.n_vars()];
        bench_in(&mut group, format!("apply_{name}_f32"), &one, 1, || {
            op.apply(black_box(&v), &mut img);
            black_box(img[0]);
        });
        bench_in(&mut group, format!("adjoint_{name}_f32"), &one, 1, || {
            op.adjoint(black_box(&r), &mut g);
            black_box(g[0]);
        });
    }

    // Penalty: prox and dual norm on d x 2P. lambda * step = sqrt(d) puts about half the groups
    // at zero (a group of d standard normals has norm about sqrt(d)).
    let k = 2 * p;
    let z = gaussian(d * k, seed + 7);
    let penalty = GroupL2::new((d as f64).sqrt(), d);
    let mut out = vec![0.0; d * k];
    bench_in(&mut group, format!("prox_k{k}"), &one, 1, || {
        penalty.prox(black_box(&z), 1.0, &mut out);
        black_box(out[0]);
    });
    bench_in(&mut group, format!("dual_norm_k{k}"), &one, 1, || {
        black_box(penalty.dual_norm(black_box(&z)));
    });

    // Constraint evaluation.
    let program = TwoLayerProgram::new(&x, &y, &masks, LossKind::Squared, ModelKind::Relu, 1e-3)
        .expect("program");
    let vars = gaussian(program.n_vars(), seed + 8);
    let c = gaussian(n * k, seed + 9);
    let gamma: Vec<f64> = gaussian(n * k, seed + 10)
        .into_iter()
        .map(|g| g.max(0.0))
        .collect();
    let mut grad = vec![0.0; n * k];
    bench_in(&mut group, "violation_via_program", &one, 1, || {
        black_box(program.violation(black_box(&vars)).expect("violation"));
    });
    bench_in(&mut group, "al_penalty_grad_replica", &one, 1, || {
        black_box(al_penalty_grad(black_box(&c), &gamma, 0.1, &mut grad));
    });
    bench_in(&mut group, "al_relative_violation", &one, 1, || {
        black_box(relative_violation(black_box(&c)));
    });

    // FISTA iterations, gated, squared loss, fixed step; the time per call is divided by 10.
    let op = ArrangementOperator::new(&x, &masks, Layout::Gated);
    let phi = LossImage {
        loss: LossKind::Squared,
        y: &y,
        outputs: 1,
    };
    let penalty = GroupL2::new(1e-3, d);
    let x0 = vec![0.0; op.n_vars()];
    let step = one.install(|| 1.0 / (LossKind::Squared.curvature(n) * op.norm_sq_estimate(20)));
    let counting = Counting {
        inner: &op,
        applies: AtomicUsize::new(0),
        adjoints: AtomicUsize::new(0),
    };
    let run = |map: &dyn LinearMap| {
        fista(
            map,
            &phi,
            &penalty,
            black_box(&x0),
            step,
            FISTA_ITERS,
            &mut |_| Control::Continue,
        )
    };
    let done = one.install(|| run(&counting).iterations);
    println!(
        "fista_counts n{n}_d{d}_p{p}: iterations={done} applies={} adjoints={}",
        counting.applies.load(Ordering::Relaxed),
        counting.adjoints.load(Ordering::Relaxed)
    );
    bench_in(
        &mut group,
        "fista_iter_gated",
        &one,
        FISTA_ITERS as u32,
        || {
            black_box(run(&op).x[0]);
        },
    );
    group.finish();
}

fn operator_shapes(c: &mut Criterion) {
    let clock = if cpu_clock() { "cpu" } else { "wall" };
    println!("kernels_clock: {clock} (1-thread benchmarks; 2-thread ones: wall)");
    shape_group(c, 10_000, 50, 200);
    shape_group(c, 5_000, 20, 500);
}

fn pattern_kernels(c: &mut Criterion) {
    let one = pool(1);
    let mut group = c.benchmark_group("patterns");
    group
        .sampling_mode(SamplingMode::Flat)
        .sample_size(10)
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(2));
    // Rank 3: two features and a bias; at most 2 * (1 + 199 + 199 * 198 / 2) patterns.
    let small = data(200, 3, 11);
    let limit = 100_000;
    let count = enumerate(&small, limit).expect("enumerate").len();
    println!("exact_enumerate_n200_r3: {count} patterns");
    let big = data(10_000, 50, 10_000 * 1000 + 50);
    bench_in(&mut group, "exact_enumerate_n200_r3", &one, 1, || {
        black_box(
            enumerate(black_box(&small), limit)
                .expect("enumerate")
                .len(),
        );
    });
    bench_in(
        &mut group,
        "sample_patterns_n10000_d50_p200",
        &one,
        1,
        || {
            let s = sample_patterns(black_box(&big), 200, 3).expect("sample");
            black_box(s.masks.len());
        },
    );
    group.finish();
}

criterion_group!(benches, operator_shapes, pattern_kernels);
criterion_main!(benches);
