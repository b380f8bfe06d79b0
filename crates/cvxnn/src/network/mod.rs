//! The non-convex two-layer networks that the convex solutions rebuild into, their objective
//! (DESIGN section 0), their export in PyTorch naming, and their direct (non-convex) training by
//! Adam or SGD ([`train_gradient`]), the baseline the convex programs are compared against.

mod decompose;
mod export;
mod gradient;

pub use decompose::decompose_gated;
pub use export::{RawNetwork, TorchNames};
pub use gradient::{
    network_gradient, train_gradient, train_gradient_from, GradientOutcome, GradientSettings,
    NetworkGradient, Optimizer,
};

use faer::Accum;
use rayon::prelude::*;

use crate::error::{CvxnnError, Result};
use crate::linalg::{gemm, Matrix};
use crate::loss::LossKind;
use crate::program::ModelKind;

/// Rows per block of the forward passes.
const FORWARD_BLOCK: usize = 2048;

/// Runs `block(rows, out)` over blocks of `FORWARD_BLOCK` rows of `x` in parallel and returns
/// the `n` outputs: the `n x m` hidden activations are never held whole (at n = 1e6 they would
/// be gigabytes), and each output is computed within one block, so the result does not depend
/// on the thread count.
fn forward_blocks(
    x: &Matrix,
    block: impl Fn(faer::MatRef<'_, f64>, &mut [f64]) + Sync,
) -> Vec<f64> {
    let mut out = vec![0.0; x.nrows()];
    out.par_chunks_mut(FORWARD_BLOCK)
        .enumerate()
        .for_each(|(bi, ob)| block(x.as_ref().subrows(bi * FORWARD_BLOCK, ob.len()), ob));
    out
}

/// `out += sum_j alpha_j pre_j 1[gate_j >= 0]` over a block's pre-activations (`b x m`), with
/// `gate = pre` (ReLU) when there are no separate gates.
fn add_neurons(out: &mut [f64], pre: &Matrix, gate: Option<&Matrix>, alpha: &[f64]) {
    for (j, &a) in alpha.iter().enumerate() {
        let on = gate.map_or(pre.col(j), |g| g.col(j));
        for ((o, &v), &s) in out.iter_mut().zip(pre.col(j)).zip(on) {
            if s >= 0.0 {
                *o += a * v;
            }
        }
    }
}

/// `f(x) = sum_j alpha_j act_j(x)` on the design matrix (preprocessed features, bias column
/// included), with `act_j(x) = (x^T u_j)_+` (ReLU) or `1[x^T g_j >= 0] x^T u_j` (gated ReLU).
#[derive(Clone, Debug, PartialEq)]
pub struct Network {
    /// Hidden weights `u_j`, one neuron per column (`d x m`).
    pub hidden: Matrix,
    /// Output weights `alpha_j`.
    pub alpha: Vec<f64>,
    /// Gates `g_j` (`d x m`), only for gated ReLU networks.
    pub gates: Option<Matrix>,
}

impl Network {
    /// Rebuilds the network from a convex solution (DESIGN section 1): for every non-zero
    /// `v_i`, a neuron `u = v_i / sqrt(||v_i||)` with `alpha = sqrt(||v_i||)`; for `w_i` the same
    /// with `alpha = -sqrt(||w_i||)`; gated groups keep their gate.
    pub fn from_convex(
        model: ModelKind,
        d: usize,
        vars: &[f64],
        gates: Option<&Matrix>,
    ) -> Result<Network> {
        let cols = vars.len().checked_div(d).unwrap_or(0);
        if d == 0 || cols * d != vars.len() {
            return Err(CvxnnError::Shape(format!(
                "{} variables do not split into groups of {d}",
                vars.len()
            )));
        }
        let p = cols / model.columns_per_pattern();
        if model == ModelKind::GatedRelu {
            match gates {
                Some(g) if g.nrows() == d && g.ncols() == p => {}
                _ => {
                    return Err(CvxnnError::Shape(
                        "gated network needs one d-vector gate per group".into(),
                    ))
                }
            }
        }
        let mut hidden = Vec::new();
        let mut alpha = Vec::new();
        let mut kept_gates = Vec::new();
        for c in 0..cols {
            let v = &vars[c * d..(c + 1) * d];
            let nrm = crate::linalg::norm2(v);
            if nrm == 0.0 {
                continue;
            }
            let s = nrm.sqrt();
            hidden.extend(v.iter().map(|a| a / s));
            alpha.push(if c < p { s } else { -s });
            if let Some(g) = gates {
                kept_gates.extend_from_slice(g.col(c % p));
            }
        }
        let m = alpha.len();
        let hidden = Matrix::from_col_major(d, m, hidden)
            .ok_or_else(|| CvxnnError::Shape("rebuild".into()))?;
        let gates = match model {
            ModelKind::GatedRelu => Some(
                Matrix::from_col_major(d, m, kept_gates)
                    .ok_or_else(|| CvxnnError::Shape("rebuild".into()))?,
            ),
            ModelKind::Relu => None,
        };
        Ok(Network {
            hidden,
            alpha,
            gates,
        })
    }

    /// Number of hidden neurons.
    pub fn neurons(&self) -> usize {
        self.alpha.len()
    }

    /// Input width `d` (bias column included).
    pub fn input_dim(&self) -> usize {
        self.hidden.nrows()
    }

    /// Predictions on a design matrix (`n x d`).
    pub fn forward(&self, x: &Matrix) -> Result<Vec<f64>> {
        if x.ncols() != self.input_dim() {
            return Err(CvxnnError::Shape(format!(
                "network takes {} inputs, data has {} columns",
                self.input_dim(),
                x.ncols()
            )));
        }
        let layer = |xb: faer::MatRef<'_, f64>, w: &Matrix| {
            let mut pre = Matrix::zeros(xb.nrows(), w.ncols());
            gemm(pre.as_mut(), Accum::Replace, xb, w.as_ref(), 1.0);
            pre
        };
        Ok(forward_blocks(x, |xb, ob| {
            let pre = layer(xb, &self.hidden);
            let gate = self.gates.as_ref().map(|g| layer(xb, g));
            add_neurons(ob, &pre, gate.as_ref(), &self.alpha);
        }))
    }

    /// Weight-decay objective `(1/n) sum loss + (lambda/2) sum_j (||u_j||^2 + alpha_j^2)`.
    pub fn objective(&self, x: &Matrix, y: &[f64], loss: LossKind, lambda: f64) -> Result<f64> {
        if y.len() != x.nrows() {
            return Err(CvxnnError::Shape(format!(
                "{} targets for {} samples",
                y.len(),
                x.nrows()
            )));
        }
        let z = self.forward(x)?;
        let decay: f64 = (0..self.neurons())
            .map(|j| {
                let u = self.hidden.col(j);
                crate::linalg::dot(u, u) + self.alpha[j] * self.alpha[j]
            })
            .sum();
        Ok(loss.value(&z, y) + 0.5 * lambda * decay)
    }
}
