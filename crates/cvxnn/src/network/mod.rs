//! The non-convex two-layer networks that the convex solutions rebuild into, their objective
//! (DESIGN section 0), their export in PyTorch naming, and their direct (non-convex) training by
//! Adam or SGD ([`train_gradient`]), the baseline the convex programs are compared against.

mod cnn3;
mod conv;
mod conv_export;
mod conv_gradient;
mod decompose;
mod export;
mod gradient;
mod pooled;
mod pooled_export;

pub use cnn3::Cnn3Network;
pub use conv::ConvNetwork;
pub use conv_gradient::{
    conv_network_gradient, embed_conv_network, train_conv_gradient, ConvEmbedding,
    ConvGradientOutcome,
};
pub use decompose::decompose_gated;
pub use export::{RawNetwork, TorchNames};
pub use gradient::{
    network_gradient, train_gradient, train_gradient_from, GradientOutcome, GradientSettings,
    NetworkGradient, Optimizer,
};
pub use pooled::PooledConvNetwork;

use faer::Accum;
use rayon::prelude::*;

use crate::error::{CvxnnError, Result};
use crate::linalg::{gemm, Matrix};
use crate::loss::LossKind;
use crate::program::{ModelKind, OutputMode};

/// Rows per block of the forward passes.
const FORWARD_BLOCK: usize = 2048;

/// Runs `block(rows, out)` over blocks of `FORWARD_BLOCK` rows of `x` in parallel and returns
/// the `n x outputs` predictions (column-major): the `n x m` hidden activations are never held
/// whole (at n = 1e6 they would be gigabytes), and each output is computed within one block, so
/// the result does not depend on the thread count. `out` is the block's `b x outputs` output.
fn forward_blocks(
    x: &Matrix,
    outputs: usize,
    block: impl Fn(faer::MatRef<'_, f64>, &mut Matrix) + Sync,
) -> Vec<f64> {
    let n = x.nrows();
    let blocks: Vec<Matrix> = (0..n.div_ceil(FORWARD_BLOCK))
        .into_par_iter()
        .map(|bi| {
            let rows = FORWARD_BLOCK.min(n - bi * FORWARD_BLOCK);
            let mut ob = Matrix::zeros(rows, outputs);
            block(x.as_ref().subrows(bi * FORWARD_BLOCK, rows), &mut ob);
            ob
        })
        .collect();
    let mut out = vec![0.0; n * outputs];
    for (bi, ob) in blocks.iter().enumerate() {
        for k in 0..outputs {
            let start = k * n + bi * FORWARD_BLOCK;
            out[start..start + ob.nrows()].copy_from_slice(ob.col(k));
        }
    }
    out
}

/// `out[:, k] += sum_j alpha_{jk} pre_j 1[gate_j >= 0]` over a block's pre-activations
/// (`b x m`), with `gate = pre` (ReLU) when there are no separate gates; `alpha` is `m x c`
/// row-major (neuron `j`'s output weights at `j * c`).
fn add_neurons(out: &mut Matrix, pre: &Matrix, gate: Option<&Matrix>, alpha: &[f64]) {
    let c = out.ncols();
    for (j, aj) in alpha.chunks(c.max(1)).enumerate() {
        let on = gate.map_or(pre.col(j), |g| g.col(j));
        for (k, &a) in aj.iter().enumerate() {
            if a == 0.0 {
                continue;
            }
            for ((o, &v), &s) in out.col_mut(k).iter_mut().zip(pre.col(j)).zip(on) {
                if s >= 0.0 {
                    *o += a * v;
                }
            }
        }
    }
}

/// `f(x) = sum_j alpha_j act_j(x)` on the design matrix (preprocessed features, bias column
/// included), with `act_j(x) = (x^T u_j)_+` (ReLU) or `1[x^T g_j >= 0] x^T u_j` (gated ReLU);
/// `alpha_j` is in `R^c` for `c` outputs.
#[derive(Clone, Debug, PartialEq)]
pub struct Network {
    /// Hidden weights `u_j`, one neuron per column (`d x m`).
    pub hidden: Matrix,
    /// Output weights, `m x c` row-major: neuron `j`'s weights to the `c` outputs are
    /// `alpha[j * c .. (j + 1) * c]` (just `alpha_j` for one output).
    pub alpha: Vec<f64>,
    /// Number of outputs `c`.
    pub outputs: usize,
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
        Self::from_convex_outputs(model, OutputMode::Separate, d, 1, vars, gates)
    }

    /// [`Network::from_convex`] for a program with `outputs` outputs (variables stored output by
    /// output). [`OutputMode::Separate`]: each non-zero column of output `k` becomes a neuron
    /// feeding output `k` only. [`OutputMode::Shared`] (gated): each pattern's `d x c` block
    /// `Z_i = sum_r s_r a_r b_r^T` (its SVD) becomes neurons `u = sqrt(s_r) a_r` with output
    /// weights `sqrt(s_r) b_r` and the pattern's gate, so `||u|| ||alpha|| = s_r` and the weight
    /// decay equals the nuclear norm.
    pub fn from_convex_outputs(
        model: ModelKind,
        mode: OutputMode,
        d: usize,
        outputs: usize,
        vars: &[f64],
        gates: Option<&Matrix>,
    ) -> Result<Network> {
        let c = outputs.max(1);
        let cols = vars.len().checked_div(d * c).unwrap_or(0);
        if d == 0 || cols * d * c != vars.len() {
            return Err(CvxnnError::Shape(format!(
                "{} variables do not split into {c} output(s) of groups of {d}",
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
        if mode == OutputMode::Shared && c > 1 {
            if model != ModelKind::GatedRelu {
                return Err(CvxnnError::arg(
                    "outputs",
                    "only the gated shared-neuron program rebuilds by SVD",
                ));
            }
            let nuclear = crate::penalty::NuclearNorm::new(0.0, d, cols, c);
            for i in 0..cols {
                for (u, a) in block_neurons(&nuclear.block(vars, i))? {
                    hidden.extend(u);
                    alpha.extend(a);
                    if let Some(g) = gates {
                        kept_gates.extend_from_slice(g.col(i));
                    }
                }
            }
        } else {
            for k in 0..c {
                for col in 0..cols {
                    let start = (k * cols + col) * d;
                    let v = &vars[start..start + d];
                    let nrm = crate::linalg::norm2(v);
                    if nrm == 0.0 {
                        continue;
                    }
                    let s = nrm.sqrt();
                    hidden.extend(v.iter().map(|a| a / s));
                    let mut row = vec![0.0; c];
                    row[k] = if col < p { s } else { -s };
                    alpha.extend(row);
                    if let Some(g) = gates {
                        kept_gates.extend_from_slice(g.col(col % p));
                    }
                }
            }
        }
        let m = alpha.len() / c;
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
            outputs: c,
            gates,
        })
    }

    /// Number of hidden neurons.
    pub fn neurons(&self) -> usize {
        self.hidden.ncols()
    }

    /// Neuron `j`'s output weights (`c` of them).
    pub fn output_weights(&self, j: usize) -> &[f64] {
        &self.alpha[j * self.outputs..(j + 1) * self.outputs]
    }

    /// Input width `d` (bias column included).
    pub fn input_dim(&self) -> usize {
        self.hidden.nrows()
    }

    /// Predictions on a design matrix (`n x d`): `n x c`, column-major.
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
        Ok(forward_blocks(x, self.outputs, |xb, ob| {
            let pre = layer(xb, &self.hidden);
            let gate = self.gates.as_ref().map(|g| layer(xb, g));
            add_neurons(ob, &pre, gate.as_ref(), &self.alpha);
        }))
    }

    /// Weight-decay objective `(1/n) sum loss + (lambda/2) sum_j (||u_j||^2 + ||alpha_j||^2)`
    /// (`y` is `n x c`, column-major).
    pub fn objective(&self, x: &Matrix, y: &[f64], loss: LossKind, lambda: f64) -> Result<f64> {
        if y.len() != x.nrows() * self.outputs {
            return Err(CvxnnError::Shape(format!(
                "{} target values for {} samples and {} output(s)",
                y.len(),
                x.nrows(),
                self.outputs
            )));
        }
        let z = self.forward(x)?;
        let decay: f64 = (0..self.neurons())
            .map(|j| {
                let u = self.hidden.col(j);
                let a = self.output_weights(j);
                crate::linalg::dot(u, u) + crate::linalg::dot(a, a)
            })
            .sum();
        Ok(loss.value(&z, y, self.outputs) + 0.5 * lambda * decay)
    }
}

/// Neurons `(u, alpha)` of one `d x c` block by its SVD: `sqrt(s) a` and `sqrt(s) b` for every
/// singular triple `(s, a, b)` with `s` above rounding (`1e-12` of the largest).
fn block_neurons(z: &Matrix) -> Result<Vec<(Vec<f64>, Vec<f64>)>> {
    if z.as_slice().iter().all(|&v| v == 0.0) {
        return Ok(Vec::new());
    }
    let svd = z
        .as_ref()
        .thin_svd()
        .map_err(|_| CvxnnError::Numerical("SVD of a shared-output block failed".into()))?;
    let (u, s, v) = (svd.U(), svd.S().column_vector(), svd.V());
    let top = (0..s.nrows()).map(|r| s[r]).fold(0.0, f64::max);
    Ok((0..s.nrows())
        .filter(|&r| s[r] > 1e-12 * top)
        .map(|r| {
            let w = s[r].sqrt();
            (
                (0..z.nrows()).map(|a| w * u[(a, r)]).collect(),
                (0..z.ncols()).map(|b| w * v[(b, r)]).collect(),
            )
        })
        .collect())
}
