//! Deeper linear networks (DESIGN section 3; derivations in `docs/theory.md`, "Linear
//! networks").
//!
//! * **Parallel** `L`-layer linear networks `f(X) = sum_j X W_{1j} W_{2j} .. W_{Lj}` trained with
//!   the depth-matched weight decay `(lambda/L) sum_j sum_l ||W_{lj}||_F^L` are *exactly* the
//!   nuclear-norm program `min h(X Z) + lambda ||Z||_*` for every depth (AM-GM per branch, then
//!   `||W_1 .. W_L||_* <= prod_l ||W_l||_F`, equality for rank-one branches from the SVD):
//!   [`ParallelLinearNetwork::from_convex`] rebuilds one.
//! * **Standard** deep linear networks `f(X) = X W_1 .. W_L` with weight decay
//!   `(lambda/2) sum_l ||W_l||_F^2` minimize `h(XW) + (lambda L/2) sum_i sigma_i(W)^{2/L}`, which is
//!   not convex for `L >= 3`; no exact convex program is claimed. [`deep_certificate`] gives an
//!   honest lower bound instead (a nuclear-norm program with a reduced lambda, valid because the
//!   optimum's singular values are bounded) and the gap of a given network to it.

use serde::{Deserialize, Serialize};

use super::LinearProgram;
use crate::linalg::Matrix;
use crate::loss::LossKind;
use crate::solver::{Solution, SolverSettings};
use crate::{CvxnnError, Result};

fn sq_norm(m: &Matrix) -> f64 {
    m.as_slice().iter().map(|v| v * v).sum()
}

/// `X W_1 .. W_L` (`n x c`, returned column-major).
fn chain(x: &Matrix, layers: &[Matrix]) -> Result<Matrix> {
    let mut cur = x.clone();
    for (l, w) in layers.iter().enumerate() {
        if w.nrows() != cur.ncols() {
            return Err(CvxnnError::Shape(format!(
                "layer {l} has {} inputs but receives {}",
                w.nrows(),
                cur.ncols()
            )));
        }
        cur = cur.matmul(w);
    }
    Ok(cur)
}

/// The singular value decomposition `Z = U diag(s) V^T` with singular values below
/// `1e-12 s_max` dropped (rounding), as `(U, s, V)`.
fn thin_svd(z: &Matrix) -> Result<(Matrix, Vec<f64>, Matrix)> {
    let svd = z
        .as_ref()
        .thin_svd()
        .map_err(|_| CvxnnError::arg("z", "the SVD of Z did not converge"))?;
    let (u, s, v) = (svd.U(), svd.S().column_vector(), svd.V());
    let smax = (0..s.nrows()).map(|i| s[i]).fold(0.0, f64::max);
    let keep: Vec<usize> = (0..s.nrows())
        .filter(|&i| s[i] > 1e-12 * smax && s[i] > 0.0)
        .collect();
    Ok((
        Matrix::from_fn(z.nrows(), keep.len(), |r, i| u[(r, keep[i])]),
        keep.iter().map(|&i| s[i]).collect(),
        Matrix::from_fn(z.ncols(), keep.len(), |r, i| v[(r, keep[i])]),
    ))
}

/// A parallel deep linear network: branches `j`, each a chain of layers `W_{1j} .. W_{Lj}`
/// (`W_{lj}` is `in x out`, applied as `X W`).
#[derive(Clone, Debug, PartialEq)]
pub struct ParallelLinearNetwork {
    /// `branches[j][l]` = `W_{lj}`.
    pub branches: Vec<Vec<Matrix>>,
}

impl ParallelLinearNetwork {
    /// The depth-`depth` parallel network realizing a dense program's `z` with penalty
    /// `lambda ||Z||_*`: branch `i` is rank one, `W_1 = s^{1/L} a_i` (`d x 1`), middle layers
    /// `[s^{1/L}]` (`1 x 1`), `W_L = s^{1/L} b_i^T` (`1 x c`). `Err` for a patch program
    /// (positions > 1) or `depth < 2`.
    pub fn from_convex(prog: &LinearProgram<'_>, z: &[f64], depth: usize) -> Result<Self> {
        if prog.positions() != 1 {
            return Err(CvxnnError::arg(
                "model",
                "deep linear networks are dense (K = 1)",
            ));
        }
        if depth < 2 {
            return Err(CvxnnError::arg(
                "depth",
                format!("must be at least 2, got {depth}"),
            ));
        }
        let (u, s, v) = thin_svd(&prog.z_matrix(z)?)?;
        let branches = s
            .iter()
            .enumerate()
            .map(|(i, &si)| {
                let t = si.powf(1.0 / depth as f64);
                let mut layers = vec![Matrix::from_fn(u.nrows(), 1, |r, _| t * u.get(r, i))];
                layers.extend((2..depth).map(|_| Matrix::from_fn(1, 1, |_, _| t)));
                layers.push(Matrix::from_fn(1, v.nrows(), |_, o| t * v.get(o, i)));
                layers
            })
            .collect();
        Ok(ParallelLinearNetwork { branches })
    }

    /// Predictions (`n x c`, column-major): the sum of the branches.
    pub fn predict(&self, x: &Matrix, outputs: usize) -> Result<Vec<f64>> {
        let mut out = vec![0.0; x.nrows() * outputs];
        for b in &self.branches {
            let p = chain(x, b)?;
            if p.ncols() != outputs {
                return Err(CvxnnError::Shape(format!(
                    "a branch has {} outputs, expected {outputs}",
                    p.ncols()
                )));
            }
            out.iter_mut().zip(p.as_slice()).for_each(|(o, v)| *o += v);
        }
        Ok(out)
    }

    /// `(lambda/L) sum_j sum_l ||W_{lj}||_F^L` (`L` = each branch's depth).
    pub fn penalty(&self, lambda: f64) -> f64 {
        self.branches
            .iter()
            .map(|b| {
                let l = b.len() as f64;
                b.iter().map(|w| sq_norm(w).sqrt().powf(l)).sum::<f64>() * lambda / l
            })
            .sum()
    }

    /// The (non-convex) training objective `h(f(X)) + penalty`.
    pub fn objective(
        &self,
        x: &Matrix,
        y: &[f64],
        outputs: usize,
        loss: LossKind,
        lambda: f64,
    ) -> Result<f64> {
        let p = self.predict(x, outputs)?;
        Ok(loss.value(&p, y, outputs) + self.penalty(lambda))
    }
}

/// A standard deep linear network `f(X) = X W_1 .. W_L` with weight decay
/// `(lambda/2) sum_l ||W_l||_F^2`.
#[derive(Clone, Debug, PartialEq)]
pub struct DeepLinearNetwork {
    /// `W_1 .. W_L` (`in x out` each).
    pub layers: Vec<Matrix>,
}

impl DeepLinearNetwork {
    /// The balanced factorization of `Z = U S V^T` into `depth` layers: `W_1 = U S^{1/L}`,
    /// `W_l = S^{1/L}`, `W_L = S^{1/L} V^T`, whose weight decay `(lambda L/2) sum s_i^{2/L}` is the
    /// least of all factorizations of `Z`.
    pub fn balanced(z: &Matrix, depth: usize) -> Result<Self> {
        if depth < 1 {
            return Err(CvxnnError::arg("depth", "must be at least 1"));
        }
        let (u, s, v) = thin_svd(z)?;
        let r = s.len();
        let t: Vec<f64> = s.iter().map(|x| x.powf(1.0 / depth as f64)).collect();
        if depth == 1 {
            return Ok(DeepLinearNetwork {
                layers: vec![z.clone()],
            });
        }
        let mut layers = vec![Matrix::from_fn(u.nrows(), r, |a, i| u.get(a, i) * t[i])];
        layers.extend(
            (2..depth).map(|_| Matrix::from_fn(r, r, |a, b| if a == b { t[a] } else { 0.0 })),
        );
        layers.push(Matrix::from_fn(r, v.nrows(), |i, o| t[i] * v.get(o, i)));
        Ok(DeepLinearNetwork { layers })
    }

    /// Predictions (`n x c`, column-major).
    pub fn predict(&self, x: &Matrix) -> Result<Vec<f64>> {
        Ok(chain(x, &self.layers)?.into_vec())
    }

    /// The training objective `h(f(X)) + (lambda/2) sum_l ||W_l||_F^2`.
    pub fn objective(&self, x: &Matrix, y: &[f64], loss: LossKind, lambda: f64) -> Result<f64> {
        let p = chain(x, &self.layers)?;
        let decay = 0.5 * lambda * self.layers.iter().map(sq_norm).sum::<f64>();
        Ok(loss.value(p.as_slice(), y, p.ncols()) + decay)
    }
}

/// What [`deep_certificate`] proves about a standard deep linear network.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct DeepCertificate {
    /// Depth `L`.
    pub depth: usize,
    /// The network's training objective (an upper bound on the optimum).
    pub objective: f64,
    /// A lower bound on the optimum of *every* depth-`L` standard linear network on this data.
    pub lower_bound: f64,
    /// `objective - lower_bound`.
    pub gap: f64,
    /// The radius `R = (2 h(0) / (lambda L))^{L/2}` bounding the optimum's singular values.
    pub radius: f64,
    /// The nuclear-norm weight of the relaxation, `lambda (L/2) R^{2/L - 1}` (`= lambda` for
    /// `L = 2`, where the bound is exact).
    pub relaxed_lambda: f64,
    /// Whether the bound is exact (`L <= 2`): then a zero gap means a global optimum.
    pub exact: bool,
}

/// Lower bound for standard deep linear networks (module docs): with `p*` the optimum,
/// `lambda (L/2) sigma_max^{2/L} <= p* <= h(0)` bounds every singular value of an optimal `W` by
/// `R`, and on `[0, R]` the concave `(L/2) s^{2/L}` lies above its chord `(L/2) R^{2/L-1} s`; so
/// `p* >= min_W h(XW) + lambda' ||W||_*`, whose certified dual bound (the R-FISTA solve's) is
/// returned. Exact for `L = 2`; for `L >= 3` the gap is reported as it is.
pub fn deep_certificate(
    x: &Matrix,
    y: &[f64],
    outputs: usize,
    loss: LossKind,
    lambda: f64,
    net: &DeepLinearNetwork,
    settings: &SolverSettings,
) -> Result<(DeepCertificate, Solution)> {
    let depth = net.layers.len();
    if depth < 2 {
        return Err(CvxnnError::arg(
            "depth",
            "a deep linear network has at least 2 layers",
        ));
    }
    let objective = net.objective(x, y, loss, lambda)?;
    let h0 = loss.value(&vec![0.0; y.len()], y, outputs);
    let l = depth as f64;
    let radius = (2.0 * h0 / (lambda * l)).powf(l / 2.0);
    let relaxed_lambda = if depth == 2 {
        lambda
    } else {
        lambda * (l / 2.0) * radius.powf(2.0 / l - 1.0)
    };
    let prog = LinearProgram::dense(x, y, outputs, loss, relaxed_lambda)?;
    let sol = prog.solve(settings, None, &mut |_| {})?;
    let lower_bound = sol.dual_bound;
    Ok((
        DeepCertificate {
            depth,
            objective,
            lower_bound,
            gap: objective - lower_bound,
            radius,
            relaxed_lambda,
            exact: depth == 2,
        },
        sol,
    ))
}
