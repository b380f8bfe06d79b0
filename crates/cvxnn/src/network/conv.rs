//! The two-layer convolutional network with global sum pooling (DESIGN section 2):
//! `f(x) = sum_j alpha_j sum_k act_j(x_k)` over the patches `x_k` of a sample, with
//! `act_j(p) = (p^T u_j)_+` (ReLU) or `1[p^T g_j >= 0] p^T u_j` (gated ReLU). It is the dense
//! [`Network`] applied to every patch, its outputs summed over the patches.

use super::Network;
use crate::data::{patches, ConvShape};
use crate::error::{CvxnnError, Result};
use crate::linalg::Matrix;
use crate::loss::LossKind;
use crate::program::{ModelKind, OutputMode};

/// A convolution (`m` filters in `R^h`, a last bias entry when `bias`), ReLU (or gated ReLU),
/// global sum pooling and a linear output layer without bias.
#[derive(Clone, Debug, PartialEq)]
pub struct ConvNetwork {
    /// Convolution shape (input, kernel, stride, padding).
    pub shape: ConvShape,
    /// Whether every patch has a constant-1 last entry (a per-filter bias).
    pub bias: bool,
    /// The per-patch network: filters `h x m` (`hidden`), output weights, gates.
    pub net: Network,
}

impl ConvNetwork {
    /// Rebuilds the network from a [`crate::program::ConvProgram`] solution by section 1's rule
    /// (filter `u = v_i / sqrt(||v_i||)`, output weight `+-sqrt(||v_i||)`); `gates` (`h x P`)
    /// for gated ReLU.
    pub fn from_convex(
        model: ModelKind,
        shape: ConvShape,
        bias: bool,
        outputs: usize,
        vars: &[f64],
        gates: Option<&Matrix>,
    ) -> Result<ConvNetwork> {
        let h = shape.patch_len() + usize::from(bias);
        let net =
            Network::from_convex_outputs(model, OutputMode::Separate, h, outputs, vars, gates)?;
        Ok(ConvNetwork { shape, bias, net })
    }

    /// Number of filters `m`.
    pub fn filters(&self) -> usize {
        self.net.neurons()
    }

    /// Pooled predictions from the stacked patch matrix (`nK x h`, [`patches`] order): `n x c`,
    /// column-major.
    pub fn forward_patches(&self, xs: &Matrix) -> Result<Vec<f64>> {
        let k = self.shape.n_patches();
        if xs.nrows() % k != 0 {
            return Err(CvxnnError::Shape(format!(
                "{} patch rows are not a multiple of {k} patches",
                xs.nrows()
            )));
        }
        let n = xs.nrows() / k;
        let per_patch = self.net.forward(xs)?;
        let c = self.net.outputs;
        let mut out = vec![0.0; n * c];
        for (o, col) in out.chunks_mut(n.max(1)).zip(per_patch.chunks(n * k)) {
            for block in col.chunks(n.max(1)) {
                o.iter_mut().zip(block).for_each(|(a, b)| *a += b);
            }
        }
        Ok(out)
    }

    /// Predictions on samples (`n x C*H*W`, one per row, row-major `(C, H, W)`): `n x c`.
    pub fn forward(&self, x: &Matrix) -> Result<Vec<f64>> {
        self.forward_patches(&patches(x, &self.shape, self.bias)?)
    }

    /// `(1/n) sum loss + (lambda/2) sum_j (||u_j||^2 + ||alpha_j||^2)` on samples `x`.
    pub fn objective(&self, x: &Matrix, y: &[f64], loss: LossKind, lambda: f64) -> Result<f64> {
        self.objective_patches(&patches(x, &self.shape, self.bias)?, y, loss, lambda)
    }

    /// [`ConvNetwork::objective`] from the stacked patch matrix.
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
        Ok(loss.value(&z, y, self.net.outputs) + 0.5 * lambda * decay)
    }
}
