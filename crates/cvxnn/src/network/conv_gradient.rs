//! The non-convex two-layer ReLU CNN with global sum pooling ([`ConvNetwork`], DESIGN section 2)
//! trained directly by full-batch Adam (or SGD), in the convex program's units: on the stacked
//! patch matrix `Xs` (`nK x h`, [`crate::data::patches`] order, bias entry included) and
//! exactly the objective of [`ConvNetwork::objective_patches`],
//!
//! ```text
//! (1/n) sum_i loss(sum_j alpha_j sum_k (x_ik^T u_j)_+, y_i) + (lambda/2) sum_j (||u_j||^2 + ||alpha_j||^2).
//! ```
//!
//! With `c > 1` outputs filter `j` feeds output `j % c` only (the separate-output architecture
//! of [`crate::program::ConvProgram`]); the other output weights stay zero. A step computes by
//! GEMMs `P = Xs U` (`nK x m`), the pooled `H_i = sum_k (P_{k n + i})_+` (`n x m`), `Z = H A`,
//! `R = grad loss(Z)`, `grad_A = H^T R + lambda A`, and
//! `grad_U = Xs^T (1[P > 0] o (R A^T) repeated over the K patches) + lambda U`.
//!
//! [`embed_conv_network`] maps such a network into the convex program (a feasible point that
//! is no worse), which is how `--init sgd` warm-starts the CNN program.
//!
//! Everything is seeded and single-threaded, so the same settings give the same bits.

use std::collections::HashMap;
use std::time::Instant;

use faer::{Accum, MatMut, MatRef};
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;

use super::gradient::{check_step, finite_objective, init_network, OptimizerState};
use super::{ConvNetwork, GradientSettings, NetworkGradient};
use crate::data::ConvShape;
use crate::error::{CvxnnError, Result};
use crate::linalg::{gemm, Matrix};
use crate::loss::LossKind;
use crate::patterns::{pack, Masks};

/// The result of [`train_conv_gradient`].
#[derive(Clone, Debug, PartialEq)]
pub struct ConvGradientOutcome {
    /// The network after the last step (ReLU, no gates).
    pub network: ConvNetwork,
    /// Its objective, `network.objective_patches(xs, y, loss, lambda)`.
    pub objective: f64,
    /// `(epoch, objective)` at epoch 0 (the initialization), every `record_every` epochs and at
    /// the last epoch.
    pub trace: Vec<(usize, f64)>,
    /// Wall-clock seconds (initialization, steps and trace).
    pub seconds: f64,
    /// Epochs (= full-batch steps) run.
    pub epochs: usize,
}

/// Buffers of one gradient evaluation.
struct Workspace {
    /// `P = Xs U` (`nK x m`), then `G = 1[P > 0] o (R A^T)` per patch.
    pre: Vec<f64>,
    /// Pooled activations `H` (`n x m`).
    pooled: Vec<f64>,
    /// `R A^T` (`n x m`).
    back: Vec<f64>,
    /// Predictions `Z` (`n x c`).
    z: Vec<f64>,
    /// Loss gradient `R` (`n x c`).
    r: Vec<f64>,
}

impl Workspace {
    fn new(n: usize, k: usize, m: usize, c: usize) -> Workspace {
        Workspace {
            pre: vec![0.0; n * k * m],
            pooled: vec![0.0; n * m],
            back: vec![0.0; n * m],
            z: vec![0.0; n * c],
            r: vec![0.0; n * c],
        }
    }
}

/// Checks `xs` against `shape`/`bias` and `y` against the samples; returns `(n, K, c)`.
fn check_shapes(
    shape: &ConvShape,
    bias: bool,
    xs: &Matrix,
    y: &[f64],
) -> Result<(usize, usize, usize)> {
    let k = shape.n_patches();
    let h = shape.patch_len() + usize::from(bias);
    if xs.ncols() != h || xs.nrows() == 0 || k == 0 || xs.nrows() % k != 0 {
        return Err(CvxnnError::Shape(format!(
            "patch matrix is {} x {}; the convolution needs a non-zero multiple of {k} rows and {h} columns",
            xs.nrows(),
            xs.ncols()
        )));
    }
    let n = xs.nrows() / k;
    if y.is_empty() || y.len() % n != 0 {
        return Err(CvxnnError::Shape(format!(
            "{} target values for {n} samples: targets must be n x c (column-major), c >= 1",
            y.len()
        )));
    }
    Ok((n, k, y.len() / n))
}

/// Data-fit value of the CNN (`u`: `h x m` filters, `alpha`: `m x c` row-major) on `xs`, with
/// its gradient written to `grad_u` and `grad_a` (weight decay `lambda` included).
#[allow(clippy::too_many_arguments)]
fn fit_gradient(
    xs: &Matrix,
    (n, k, c): (usize, usize, usize),
    y: &[f64],
    u: &Matrix,
    alpha: &[f64],
    loss: LossKind,
    lambda: f64,
    ws: &mut Workspace,
    grad_u: &mut Matrix,
    grad_a: &mut [f64],
) -> f64 {
    let (nk, m) = (n * k, u.ncols());
    gemm(
        MatMut::from_column_major_slice_mut(&mut ws.pre, nk, m),
        Accum::Replace,
        xs.as_ref(),
        u.as_ref(),
        1.0,
    );
    // Sum pooling: H_i = sum_k (P_{k n + i})_+.
    for (h, p) in ws.pooled.chunks_exact_mut(n).zip(ws.pre.chunks_exact(nk)) {
        h.fill(0.0);
        for block in p.chunks_exact(n) {
            h.iter_mut().zip(block).for_each(|(a, &b)| *a += b.max(0.0));
        }
    }
    let pooled = MatRef::from_column_major_slice(&ws.pooled, n, m);
    // `alpha` is A (m x c) row-major, i.e. A^T (c x m) column-major.
    let a_t = MatRef::from_column_major_slice(alpha, c, m);
    gemm(
        MatMut::from_column_major_slice_mut(&mut ws.z, n, c),
        Accum::Replace,
        pooled,
        a_t.transpose(),
        1.0,
    );
    let fit = loss.value(&ws.z, y, c);
    loss.grad(&ws.z, y, c, &mut ws.r);
    let r = MatRef::from_column_major_slice(&ws.r, n, c);
    gemm(
        MatMut::from_column_major_slice_mut(grad_a, c, m),
        Accum::Replace,
        r.transpose(),
        pooled,
        1.0,
    );
    grad_a
        .iter_mut()
        .zip(alpha)
        .for_each(|(g, &a)| *g += lambda * a);
    gemm(
        MatMut::from_column_major_slice_mut(&mut ws.back, n, m),
        Accum::Replace,
        r,
        a_t,
        1.0,
    );
    // Back through the ReLU of every patch: each patch row gets its sample's R A^T.
    for (p, b) in ws.pre.chunks_exact_mut(nk).zip(ws.back.chunks_exact(n)) {
        for block in p.chunks_exact_mut(n) {
            for (v, &g) in block.iter_mut().zip(b) {
                *v = if *v > 0.0 { g } else { 0.0 };
            }
        }
    }
    gemm(
        grad_u.as_mut(),
        Accum::Replace,
        xs.as_ref().transpose(),
        MatRef::from_column_major_slice(&ws.pre, nk, m),
        1.0,
    );
    grad_u
        .as_mut_slice()
        .iter_mut()
        .zip(u.as_slice())
        .for_each(|(g, &w)| *g += lambda * w);
    fit
}

/// The objective of [`ConvNetwork::objective_patches`] of a ReLU CNN and its gradient in the
/// filters and output weights (convention `d/dt (t)_+ = 1[t > 0]` at the kink).
pub fn conv_network_gradient(
    net: &ConvNetwork,
    xs: &Matrix,
    y: &[f64],
    loss: LossKind,
    lambda: f64,
) -> Result<NetworkGradient> {
    if net.net.gates.is_some() {
        return Err(CvxnnError::arg(
            "network",
            "gradients are implemented for ReLU CNNs, this one is gated",
        ));
    }
    let dims = check_shapes(&net.shape, net.bias, xs, y)?;
    let (n, k, c) = dims;
    let m = net.filters();
    if net.net.outputs != c || net.net.alpha.len() != m * c {
        return Err(CvxnnError::Shape(format!(
            "the CNN has {} output(s) and {} output weights for {m} filters; the targets have {c} column(s)",
            net.net.outputs,
            net.net.alpha.len()
        )));
    }
    let mut ws = Workspace::new(n, k, m, c);
    let mut grad_u = Matrix::zeros(xs.ncols(), m);
    let mut grad_a = vec![0.0; m * c];
    let fit = fit_gradient(
        xs,
        dims,
        y,
        &net.net.hidden,
        &net.net.alpha,
        loss,
        lambda,
        &mut ws,
        &mut grad_u,
        &mut grad_a,
    );
    let decay = crate::linalg::dot(net.net.hidden.as_slice(), net.net.hidden.as_slice())
        + crate::linalg::dot(&net.net.alpha, &net.net.alpha);
    Ok(NetworkGradient {
        objective: fit + 0.5 * lambda * decay,
        hidden: grad_u,
        alpha: grad_a,
    })
}

/// Trains the ReLU CNN of `shape` (a bias entry per filter when `bias`) on the patch matrix
/// `xs` (`nK x h`) and targets `y` (`n x c`, column-major) by full-batch steps of the optimizer
/// in `s` (`s.width` filters; `s.batch_size` must be `None` or at least `n`), minimizing the
/// objective of [`ConvNetwork::objective_patches`].
///
/// Initialization as [`super::train_gradient`]'s (PyTorch's `nn.Linear` bounds, `fan_in = h`
/// for the filters, `m` for the output layer) from `ChaCha8Rng::seed_from_u64(s.seed)`; with
/// `c > 1` outputs the weights of filter `j` to outputs other than `j % c` are zero and stay so.
/// Returns the last iterate. Errors: bad settings or shapes; a non-finite objective (named
/// `lr`: the learning rate is too large).
pub fn train_conv_gradient(
    shape: &ConvShape,
    bias: bool,
    xs: &Matrix,
    y: &[f64],
    loss: LossKind,
    lambda: f64,
    s: &GradientSettings,
) -> Result<ConvGradientOutcome> {
    let start = Instant::now();
    if !(lambda.is_finite() && lambda >= 0.0) {
        return Err(CvxnnError::arg(
            "lambda",
            format!("must be a finite number >= 0, got {lambda}"),
        ));
    }
    s.validate()?;
    let dims = check_shapes(shape, bias, xs, y)?;
    let (n, k, c) = dims;
    if s.batch_size.is_some_and(|b| b < n) {
        return Err(CvxnnError::arg(
            "batch-size",
            "the CNN is trained full batch (one step per epoch)",
        ));
    }
    if xs.as_slice().iter().any(|v| !v.is_finite()) {
        return Err(CvxnnError::arg("x", "data must be finite"));
    }
    loss.check_targets(y, c)?;
    let mut rng = ChaCha8Rng::seed_from_u64(s.seed);
    let h = xs.ncols();
    let mut net = ConvNetwork {
        shape: shape.clone(),
        bias,
        net: init_network(h, s.width, c, &mut rng),
    };
    let m = s.width;
    // Separate outputs: filter j feeds output j % c only.
    let feeds = |idx: usize| c == 1 || (idx / c) % c == idx % c;
    for (idx, a) in net.net.alpha.iter_mut().enumerate() {
        if !feeds(idx) {
            *a = 0.0;
        }
    }
    let mut ws = Workspace::new(n, k, m, c);
    let mut grad_u = Matrix::zeros(h, m);
    let mut grad_a = vec![0.0; m * c];
    let mut state = OptimizerState::new(s.optimizer, h * m, m * c);
    let record = |net: &ConvNetwork, epoch: usize| -> Result<f64> {
        finite_objective(
            net.objective_patches(xs, y, loss, lambda)?,
            s.learning_rate,
            epoch,
        )
    };
    let mut trace = vec![(0, record(&net, 0)?)];
    for epoch in 1..=s.epochs {
        let fit = fit_gradient(
            xs,
            dims,
            y,
            &net.net.hidden,
            &net.net.alpha,
            loss,
            lambda,
            &mut ws,
            &mut grad_u,
            &mut grad_a,
        );
        check_step(fit, &grad_u, &grad_a, s.learning_rate, epoch)?;
        for (idx, g) in grad_a.iter_mut().enumerate() {
            if !feeds(idx) {
                *g = 0.0;
            }
        }
        state.step(
            s.learning_rate,
            net.net.hidden.as_mut_slice(),
            grad_u.as_slice(),
            &mut net.net.alpha,
            &grad_a,
        );
        if epoch % s.record_every == 0 || epoch == s.epochs {
            trace.push((epoch, record(&net, epoch)?));
        }
    }
    let objective = trace.last().map_or(f64::NAN, |t| t.1);
    Ok(ConvGradientOutcome {
        network: net,
        objective,
        trace,
        seconds: start.elapsed().as_secs_f64(),
        epochs: s.epochs,
    })
}

/// A trained CNN mapped into the convex program ([`crate::program::ConvProgram`], ReLU).
#[derive(Clone, Debug, PartialEq)]
pub struct ConvEmbedding {
    /// The given patterns, then the filters' own patterns not among them.
    pub masks: Masks,
    /// The program's variables (`h x 2P` per output, `[V W]`).
    pub vars: Vec<f64>,
    /// Patterns the filters added.
    pub added: usize,
}

/// Maps the ReLU CNN `net` (on the patch matrix `xs`) into the ReLU convex program over the
/// patterns `base` plus each filter's own pattern `1[Xs u_j >= 0]`: filter `j` with its one
/// non-zero output weight `alpha_j` (output `o`) becomes `v = u_j |alpha_j|` in output `o`'s
/// `V` half (`alpha_j > 0`) or `W` half of its pattern. The point is exactly feasible, predicts
/// what `net` predicts, and its convex objective is at most `net`'s weight-decay objective
/// (`|alpha| ||u|| <= (alpha^2 + ||u||^2) / 2`; filters sharing a pattern merge, and the
/// triangle inequality only lowers the penalty). Filters that are never active or have zero
/// output weights are dropped (they predict nothing).
pub fn embed_conv_network(net: &ConvNetwork, xs: &Matrix, base: &Masks) -> Result<ConvEmbedding> {
    if net.net.gates.is_some() {
        return Err(CvxnnError::arg("init", "the warm start must be a ReLU CNN"));
    }
    let (h, c, m) = (xs.ncols(), net.net.outputs, net.filters());
    if net.net.input_dim() != h || base.n() != xs.nrows() {
        return Err(CvxnnError::Shape(format!(
            "the CNN's filters have {} entries and the patterns cover {} rows; the patch matrix is {} x {h}",
            net.net.input_dim(),
            base.n(),
            xs.nrows()
        )));
    }
    let mut masks = Masks::new(xs.nrows());
    let mut index: HashMap<Vec<u64>, usize> = HashMap::new();
    for i in 0..base.len() {
        let w = base.pattern_words(i).to_vec();
        if !index.contains_key(&w) {
            index.insert(w.clone(), masks.len());
            masks.push_words(&w);
        }
    }
    let before = masks.len();
    let pre = xs.matmul(&net.net.hidden);
    // (pattern index, output, signed output weight, filter).
    let mut placed = Vec::new();
    for j in 0..m {
        let weights = net.net.output_weights(j);
        let mut nonzero = weights.iter().enumerate().filter(|(_, a)| **a != 0.0);
        let Some((o, &a)) = nonzero.next() else {
            continue;
        };
        if nonzero.next().is_some() {
            return Err(CvxnnError::arg(
                "init",
                "a filter feeds several outputs; the CNN program has each filter feed one output",
            ));
        }
        let active: Vec<bool> = pre.col(j).iter().map(|&v| v >= 0.0).collect();
        if !active.iter().any(|&b| b) {
            continue;
        }
        let words = pack(&active);
        let i = match index.get(&words) {
            Some(&i) => i,
            None => {
                let i = masks.len();
                masks.push_words(&words);
                index.insert(words, i);
                i
            }
        };
        placed.push((i, o, a, j));
    }
    let p = masks.len();
    let mut vars = vec![0.0; c * 2 * p * h];
    for (i, o, a, j) in placed {
        let col = o * 2 * p + if a > 0.0 { i } else { p + i };
        vars[col * h..(col + 1) * h]
            .iter_mut()
            .zip(net.net.hidden.col(j))
            .for_each(|(v, &u)| *v += u * a.abs());
    }
    Ok(ConvEmbedding {
        masks,
        vars,
        added: p - before,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::data::patches;
    use crate::program::{ConvProgram, ModelKind};
    use rand::RngExt;

    /// `n` random 1 x 5 x 5 images, their patches (3x3 kernel, stride 2, padding 1, bias) and
    /// `c`-output targets for `loss` (values, +-1 labels or one-hot classes).
    fn data(n: usize, c: usize, loss: LossKind, seed: u64) -> (ConvShape, Matrix, Vec<f64>) {
        let shape = ConvShape::new(1, vec![5, 5], vec![3, 3], 2, 1).unwrap();
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let values: Vec<f64> = (0..n * 25).map(|_| rng.random_range(-1.0..1.0)).collect();
        let x = Matrix::from_col_major(n, 25, values).unwrap();
        let xs = patches(&x, &shape, true).unwrap();
        let score = |i: usize| x.get(i, 6).max(0.0) - x.get(i, 12) + 0.5 * x.get(i, 18).abs();
        let mut y = vec![0.0; n * c];
        for i in 0..n {
            match loss {
                LossKind::Squared => {
                    for o in 0..c {
                        y[o * n + i] = score(i) + o as f64 * x.get(i, o);
                    }
                }
                LossKind::Logistic => y[i] = if score(i) > 0.0 { 1.0 } else { -1.0 },
                LossKind::CrossEntropy => {
                    let o = ((score(i) + 1.5).max(0.0) * c as f64 / 3.0) as usize;
                    y[o.min(c - 1) * n + i] = 1.0;
                }
            }
        }
        (shape, xs, y)
    }

    fn random_net(shape: &ConvShape, m: usize, c: usize, seed: u64) -> ConvNetwork {
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        ConvNetwork {
            shape: shape.clone(),
            bias: true,
            net: init_network(shape.patch_len() + 1, m, c, &mut rng),
        }
    }

    #[test]
    fn gradient_matches_finite_differences() {
        for (loss, c) in [
            (LossKind::Squared, 1),
            (LossKind::Logistic, 1),
            (LossKind::Squared, 2),
            (LossKind::CrossEntropy, 3),
        ] {
            let (shape, xs, y) = data(12, c, loss, 3);
            let net = random_net(&shape, 5, c, 9);
            let lambda = 0.05;
            let g = conv_network_gradient(&net, &xs, &y, loss, lambda).unwrap();
            let obj = |n: &ConvNetwork| n.objective_patches(&xs, &y, loss, lambda).unwrap();
            let f0 = obj(&net);
            assert!(
                (g.objective - f0).abs() <= 1e-13 * f0.abs().max(1.0),
                "{loss}"
            );
            let h = 1e-6;
            for idx in 0..net.net.hidden.as_slice().len() {
                let (mut p, mut q) = (net.clone(), net.clone());
                p.net.hidden.as_mut_slice()[idx] += h;
                q.net.hidden.as_mut_slice()[idx] -= h;
                let fd = (obj(&p) - obj(&q)) / (2.0 * h);
                let an = g.hidden.as_slice()[idx];
                assert!(
                    (fd - an).abs() <= 1e-7,
                    "{loss} c {c}: filter entry {idx}: fd {fd} vs {an}"
                );
            }
            for idx in 0..net.net.alpha.len() {
                let (mut p, mut q) = (net.clone(), net.clone());
                p.net.alpha[idx] += h;
                q.net.alpha[idx] -= h;
                let fd = (obj(&p) - obj(&q)) / (2.0 * h);
                let an = g.alpha[idx];
                assert!(
                    (fd - an).abs() <= 1e-7,
                    "{loss} c {c}: output weight {idx}: fd {fd} vs {an}"
                );
            }
        }
    }

    #[test]
    fn adam_decreases_the_objective_reproducibly() {
        for (loss, c) in [(LossKind::Logistic, 1), (LossKind::CrossEntropy, 3)] {
            let (shape, xs, y) = data(40, c, loss, 5);
            let s = GradientSettings {
                width: 6,
                epochs: 200,
                record_every: 50,
                seed: 4,
                ..GradientSettings::default()
            };
            let out = train_conv_gradient(&shape, true, &xs, &y, loss, 1e-3, &s).unwrap();
            assert_eq!(
                out.objective,
                out.network.objective_patches(&xs, &y, loss, 1e-3).unwrap()
            );
            let epochs: Vec<usize> = out.trace.iter().map(|t| t.0).collect();
            assert_eq!(epochs, [0, 50, 100, 150, 200]);
            assert!(
                out.objective < 0.7 * out.trace[0].1,
                "{loss}: {:?}",
                out.trace
            );
            // Separate outputs: filter j feeds output j % c only.
            for j in 0..6 {
                let w = out.network.net.output_weights(j);
                assert!(w.iter().enumerate().all(|(o, a)| o == j % c || *a == 0.0));
            }
            let again = train_conv_gradient(&shape, true, &xs, &y, loss, 1e-3, &s).unwrap();
            assert_eq!(again.network, out.network);
        }
    }

    #[test]
    fn embedding_is_feasible_and_no_worse() {
        for (loss, c) in [(LossKind::Logistic, 1), (LossKind::Squared, 2)] {
            let (shape, xs, y) = data(30, c, loss, 7);
            let s = GradientSettings {
                width: 8,
                epochs: 100,
                ..GradientSettings::default()
            };
            let lambda = 1e-2;
            let out = train_conv_gradient(&shape, true, &xs, &y, loss, lambda, &s).unwrap();
            let base = crate::patterns::sample_patterns(&xs, 3, 0).unwrap().masks;
            let emb = embed_conv_network(&out.network, &xs, &base).unwrap();
            assert_eq!(emb.masks.len(), base.len() + emb.added);
            assert!(emb.added >= 1);
            let program = ConvProgram::new(
                &xs,
                shape.n_patches(),
                &y,
                c,
                &emb.masks,
                loss,
                ModelKind::Relu,
                lambda,
            )
            .unwrap();
            assert_eq!(program.violation(&emb.vars).unwrap(), 0.0);
            let z = program.predict(&emb.vars).unwrap();
            let want = out.network.forward_patches(&xs).unwrap();
            for (a, b) in z.iter().zip(&want) {
                assert!((a - b).abs() <= 1e-12 * b.abs().max(1.0));
            }
            assert!(program.objective(&emb.vars).unwrap() <= out.objective + 1e-15);
        }
    }

    #[test]
    fn bad_settings_are_named() {
        let (shape, xs, y) = data(10, 1, LossKind::Squared, 1);
        let name = |s: GradientSettings| match train_conv_gradient(
            &shape,
            true,
            &xs,
            &y,
            LossKind::Squared,
            1e-3,
            &s,
        ) {
            Err(CvxnnError::InvalidArgument { name, .. }) => name,
            other => panic!("expected an invalid argument, got {other:?}"),
        };
        let base = GradientSettings {
            width: 3,
            epochs: 5,
            ..GradientSettings::default()
        };
        assert_eq!(
            name(GradientSettings {
                batch_size: Some(4),
                ..base.clone()
            }),
            "batch-size"
        );
        assert_eq!(
            name(GradientSettings {
                width: 0,
                ..base.clone()
            }),
            "width"
        );
        assert_eq!(
            name(GradientSettings {
                learning_rate: 1e8,
                optimizer: super::super::Optimizer::sgd(),
                epochs: 50,
                ..base
            }),
            "lr"
        );
        assert!(matches!(
            train_conv_gradient(
                &shape,
                false,
                &xs,
                &y,
                LossKind::Squared,
                1e-3,
                &GradientSettings::default()
            ),
            Err(CvxnnError::Shape(_))
        ));
    }
}
