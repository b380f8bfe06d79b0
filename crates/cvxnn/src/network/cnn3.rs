//! The three-layer CNN with two ReLU layers (docs/theory.md, "Three-layer CNN"):
//! `f(x) = sum_j w2_j ( sum_a w1_ja sum_k (x_k^T u_a)_+ )_+` — convolution with `M` filters,
//! ReLU, global sum pooling, a linear layer `M -> m`, ReLU, a linear layer `m -> 1` — with the
//! path penalty `R = sum_{j,a} |w2_j| |w1_ja| ||u_a||` (the regularizer for which the convex
//! program is exact).

use crate::data::{patches, ConvShape};
use crate::error::{CvxnnError, Result};
use crate::linalg::Matrix;
use crate::loss::LossKind;

/// Weights of the three-layer CNN (one output).
#[derive(Clone, Debug, PartialEq)]
pub struct Cnn3Network {
    /// Convolution shape (input, kernel, stride, padding).
    pub shape: ConvShape,
    /// Whether every patch has a constant-1 last entry (a per-filter bias).
    pub bias: bool,
    /// Filters `u_a`, one per column (`h x M`, bias entry last).
    pub filters: Matrix,
    /// Middle weights `w1` (`m x M`): row `j` feeds middle unit `j`.
    pub middle: Matrix,
    /// Output weights `w2` (`m`).
    pub output: Vec<f64>,
}

impl Cnn3Network {
    /// Rebuilds the network from a [`crate::program::Cnn3Program`] solution (`2L` blocks of
    /// `h x 2P`, block `b` with output sign `+1` for even `b`): every block with a non-zero
    /// column becomes one middle unit `j` with `T = sum ||z||` over its non-zero columns `z`,
    /// `w2_j = s_b sqrt(T)`; every such column a filter `u = z / ||z||` with middle weight
    /// `w1_ja = +-||z|| / sqrt(T)` (`+` for `v`, `-` for `w` columns), so that
    /// `|w2_j| |w1_ja| ||u_a|| = ||z||` (penalty = group norm) and, by positive homogeneity,
    /// the unit computes `s_b (sum_i S(v_i) - S(w_i))_+` (prediction = convex prediction).
    pub fn from_convex(
        shape: ConvShape,
        bias: bool,
        first_patterns: usize,
        vars: &[f64],
    ) -> Result<Cnn3Network> {
        let h = shape.patch_len() + usize::from(bias);
        let block = h * 2 * first_patterns;
        if block == 0 || vars.len() % (2 * block) != 0 {
            return Err(CvxnnError::Shape(format!(
                "{} variables do not split into blocks of {} patterns x 2 x {h}",
                vars.len(),
                first_patterns
            )));
        }
        let mut filters: Vec<f64> = Vec::new();
        let mut units: Vec<(f64, Vec<(usize, f64)>)> = Vec::new();
        for (b, blk) in vars.chunks_exact(block).enumerate() {
            let cols: Vec<(f64, &[f64], f64)> = blk
                .chunks_exact(h)
                .enumerate()
                .filter_map(|(c, z)| {
                    let nrm = crate::linalg::norm2(z);
                    let sign = if c < first_patterns { 1.0 } else { -1.0 };
                    (nrm > 0.0).then_some((sign, z, nrm))
                })
                .collect();
            if cols.is_empty() {
                continue;
            }
            let t: f64 = cols.iter().map(|c| c.2).sum();
            let st = t.sqrt();
            let mut weights = Vec::with_capacity(cols.len());
            for (sign, z, nrm) in cols {
                weights.push((filters.len() / h, sign * nrm / st));
                filters.extend(z.iter().map(|v| v / nrm));
            }
            let s = if b % 2 == 0 { 1.0 } else { -1.0 };
            units.push((s * st, weights));
        }
        let m_filters = filters.len() / h;
        let filters = Matrix::from_col_major(h, m_filters, filters)
            .ok_or_else(|| CvxnnError::Shape("rebuild".into()))?;
        let mut middle = Matrix::zeros(units.len(), m_filters);
        for (j, (_, ws)) in units.iter().enumerate() {
            for &(a, w) in ws {
                middle.set(j, a, w);
            }
        }
        Ok(Cnn3Network {
            shape,
            bias,
            filters,
            middle,
            output: units.iter().map(|u| u.0).collect(),
        })
    }

    /// Number of filters `M`.
    pub fn n_filters(&self) -> usize {
        self.filters.ncols()
    }

    /// Number of middle units `m`.
    pub fn units(&self) -> usize {
        self.output.len()
    }

    /// Inputs `g_j = sum_a w1_ja sum_k (x_k^T u_a)_+` of the middle ReLU units (`n x m`) from
    /// the stacked patch matrix (`nK x h`, [`patches`] order).
    pub fn unit_inputs_patches(&self, xs: &Matrix) -> Result<Matrix> {
        let k = self.shape.n_patches();
        if xs.nrows() % k != 0 || xs.ncols() != self.filters.nrows() {
            return Err(CvxnnError::Shape(format!(
                "patch matrix is {} x {}; expected a multiple of {k} rows of length {}",
                xs.nrows(),
                xs.ncols(),
                self.filters.nrows()
            )));
        }
        let n = xs.nrows() / k;
        let mut act = xs.matmul(&self.filters);
        act.as_mut_slice().iter_mut().for_each(|v| *v = v.max(0.0));
        // Sum pooling: pooled[j, a] = sum_k act[k * n + j, a].
        let pooled = Matrix::from_fn(n, self.n_filters(), |j, a| {
            (0..k).map(|kk| act.get(kk * n + j, a)).sum()
        });
        Ok(Matrix::from_fn(n, self.units(), |s, j| {
            (0..self.n_filters())
                .map(|a| self.middle.get(j, a) * pooled.get(s, a))
                .sum()
        }))
    }

    /// Predictions from the stacked patch matrix (`nK x h`, [`patches`] order).
    pub fn forward_patches(&self, xs: &Matrix) -> Result<Vec<f64>> {
        let g = self.unit_inputs_patches(xs)?;
        Ok((0..g.nrows())
            .map(|s| {
                self.output
                    .iter()
                    .enumerate()
                    .map(|(j, w2)| w2 * g.get(s, j).max(0.0))
                    .sum()
            })
            .collect())
    }

    /// Predictions on samples (`n x C*H*W`, one per row).
    pub fn forward(&self, x: &Matrix) -> Result<Vec<f64>> {
        self.forward_patches(&patches(x, &self.shape, self.bias)?)
    }

    /// The path penalty `sum_{j,a} |w2_j| |w1_ja| ||u_a||`.
    pub fn path_norm(&self) -> f64 {
        let norms: Vec<f64> = (0..self.n_filters())
            .map(|a| crate::linalg::norm2(self.filters.col(a)))
            .collect();
        self.output
            .iter()
            .enumerate()
            .map(|(j, w2)| {
                w2.abs()
                    * norms
                        .iter()
                        .enumerate()
                        .map(|(a, u)| self.middle.get(j, a).abs() * u)
                        .sum::<f64>()
            })
            .sum()
    }

    /// `(1/n) sum loss + lambda * path_norm` from the stacked patch matrix.
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
        Ok(loss.value(&z, y, 1) + lambda * self.path_norm())
    }

    /// [`Cnn3Network::objective_patches`] on samples.
    pub fn objective(&self, x: &Matrix, y: &[f64], loss: LossKind, lambda: f64) -> Result<f64> {
        self.objective_patches(&patches(x, &self.shape, self.bias)?, y, loss, lambda)
    }
}
