//! The two-layer CNN with local pooling (DESIGN section 2): convolution (`m` filters), ReLU (or
//! gated ReLU), average or max pooling over `a` windows, and a linear layer on the pooled map:
//! `f(x) = sum_j sum_w alpha_jw pool_{k in w} act_j(x_k)`. PyTorch:
//! `Sequential(Conv, ReLU, AvgPool(S) | MaxPool(S), Flatten, Linear(m a, 1, bias=False))`.

use super::Network;
use crate::data::{patches, ConvShape, PoolKind, Pooling};
use crate::error::{CvxnnError, Result};
use crate::linalg::Matrix;
use crate::loss::LossKind;
use crate::program::{ModelKind, OutputMode};

/// A pooled two-layer CNN. `net` holds the filters (`h x m`, a last bias entry when `bias`),
/// the output weights `m x a` (row `j` = filter `j`'s weights to the `a` windows: the Linear
/// weight `[0, j * a + w]`) and, for gated ReLU, the gates.
#[derive(Clone, Debug, PartialEq)]
pub struct PooledConvNetwork {
    /// Convolution shape.
    pub shape: ConvShape,
    /// Per-filter bias (constant-1 patch entry).
    pub bias: bool,
    /// Pooling kind and window size.
    pub pool: Pooling,
    /// Filters, output weights (`outputs` = windows), gates.
    pub net: Network,
}

impl PooledConvNetwork {
    /// Rebuilds the network from an [`crate::program::AvgPoolProgram`] (or max-pool) solution
    /// whose variables hold one block per window: gated ReLU by the SVD of each pattern's
    /// `h x a` block (weight decay = nuclear norm), ReLU per window (each non-zero column one
    /// filter feeding its window only).
    pub fn from_convex(
        model: ModelKind,
        shape: ConvShape,
        bias: bool,
        pool: Pooling,
        vars: &[f64],
        gates: Option<&Matrix>,
    ) -> Result<PooledConvNetwork> {
        let windows = pool.windows(&shape)?.len();
        let h = shape.patch_len() + usize::from(bias);
        let mode = match model {
            ModelKind::GatedRelu => OutputMode::Shared,
            ModelKind::Relu => OutputMode::Separate,
        };
        let net = Network::from_convex_outputs(model, mode, h, windows, vars, gates)?;
        Ok(PooledConvNetwork {
            shape,
            bias,
            pool,
            net,
        })
    }

    /// Rebuilds a ReLU network from per-window blocks `[V W]` (`h x 2P_w` each, column-major;
    /// e.g. [`crate::program::MaxPoolProgram::blocks`]): every non-zero column `c` becomes a
    /// filter `v / sqrt(||v||)` feeding its window only, with weight `+sqrt(||v||)` for the `V`
    /// half and `-sqrt(||v||)` for the `W` half, so its weight decay is `||v||`.
    pub fn from_window_blocks(
        shape: ConvShape,
        bias: bool,
        pool: Pooling,
        blocks: &[&[f64]],
    ) -> Result<PooledConvNetwork> {
        let a = pool.windows(&shape)?.len();
        let h = shape.patch_len() + usize::from(bias);
        if blocks.len() != a || blocks.iter().any(|b| b.len() % (2 * h) != 0) {
            return Err(CvxnnError::Shape(format!(
                "{} variable blocks for {a} windows, each needs a multiple of {} values",
                blocks.len(),
                2 * h
            )));
        }
        let (mut hidden, mut alpha) = (Vec::new(), Vec::new());
        for (w, block) in blocks.iter().enumerate() {
            let p = block.len() / (2 * h);
            for (c, v) in block.chunks_exact(h).enumerate() {
                let nrm = crate::linalg::norm2(v);
                if nrm == 0.0 {
                    continue;
                }
                let s = nrm.sqrt();
                hidden.extend(v.iter().map(|x| x / s));
                let mut row = vec![0.0; a];
                row[w] = if c < p { s } else { -s };
                alpha.extend(row);
            }
        }
        let m = alpha.len() / a.max(1);
        let hidden = Matrix::from_col_major(h, m, hidden)
            .ok_or_else(|| CvxnnError::Shape("rebuild".into()))?;
        Ok(PooledConvNetwork {
            shape,
            bias,
            pool,
            net: Network {
                hidden,
                alpha,
                outputs: a,
                gates: None,
            },
        })
    }

    /// Number of filters `m`.
    pub fn filters(&self) -> usize {
        self.net.neurons()
    }

    /// Predictions (`n`) from the stacked patch matrix (`nK x h`, [`patches`] order).
    pub fn forward_patches(&self, xs: &Matrix) -> Result<Vec<f64>> {
        let k = self.shape.n_patches();
        let windows = self.pool.windows(&self.shape)?;
        let a = windows.len();
        if xs.nrows() % k != 0 || xs.ncols() != self.net.input_dim() || self.net.outputs != a {
            return Err(CvxnnError::Shape(format!(
                "{} x {} patch rows for {k} patches of length {} and {a} windows ({} output weights per filter)",
                xs.nrows(),
                xs.ncols(),
                self.net.input_dim(),
                self.net.outputs
            )));
        }
        let n = xs.nrows() / k;
        let pre = xs.matmul(&self.net.hidden);
        let gate = self.net.gates.as_ref().map(|g| xs.matmul(g));
        let act = |r: usize, f: usize| -> f64 {
            let p = pre.get(r, f);
            match &gate {
                Some(g) if g.get(r, f) >= 0.0 => p,
                Some(_) => 0.0,
                None => p.max(0.0),
            }
        };
        let mut out = vec![0.0; n];
        for f in 0..self.filters() {
            let alpha = self.net.output_weights(f);
            for (w, win) in windows.iter().enumerate() {
                if alpha[w] == 0.0 {
                    continue;
                }
                for (j, o) in out.iter_mut().enumerate() {
                    let vals = win.iter().map(|&kk| act(kk * n + j, f));
                    let pooled = match self.pool.kind {
                        PoolKind::Avg => vals.sum::<f64>() / win.len() as f64,
                        PoolKind::Max => vals.fold(f64::NEG_INFINITY, f64::max),
                    };
                    *o += alpha[w] * pooled;
                }
            }
        }
        Ok(out)
    }

    /// Predictions on samples (`n x C*H*W`, row-major `(C, H, W)` per row).
    pub fn forward(&self, x: &Matrix) -> Result<Vec<f64>> {
        self.forward_patches(&patches(x, &self.shape, self.bias)?)
    }

    /// `(1/n) sum loss + (lambda/2) sum_j (||u_j||^2 + ||alpha_j||^2)` on samples `x`.
    pub fn objective(&self, x: &Matrix, y: &[f64], loss: LossKind, lambda: f64) -> Result<f64> {
        self.objective_patches(&patches(x, &self.shape, self.bias)?, y, loss, lambda)
    }

    /// [`PooledConvNetwork::objective`] from the stacked patch matrix.
    pub fn objective_patches(
        &self,
        xs: &Matrix,
        y: &[f64],
        loss: LossKind,
        lambda: f64,
    ) -> Result<f64> {
        let z = self.forward_patches(xs)?;
        if y.len() != z.len() {
            return Err(CvxnnError::Shape(format!(
                "{} target values for {} predictions",
                y.len(),
                z.len()
            )));
        }
        let decay: f64 = (0..self.filters())
            .map(|j| {
                let u = self.net.hidden.col(j);
                let a = self.net.output_weights(j);
                crate::linalg::dot(u, u) + crate::linalg::dot(a, a)
            })
            .sum();
        Ok(loss.value(&z, y, 1) + 0.5 * lambda * decay)
    }
}
