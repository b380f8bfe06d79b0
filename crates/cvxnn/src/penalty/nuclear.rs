//! Nuclear norm per pattern block: the penalty of the shared-neuron vector-output gated ReLU
//! program (Sahiner et al., ICLR 2021), `lambda * sum_i ||Z_i||_*` with `Z_i` in `R^{d x c}`.

use rayon::prelude::*;

use super::Regularizer;
use crate::linalg::Matrix;

/// `lambda * sum_i ||Z_i||_*` where block `i` gathers column `i` of each output's `d x G`
/// variable matrix: with variables stored output by output (entry `k * G * d + i * d + r` is row
/// `r` of column `k` of `Z_i`), `Z_i`'s column `k` is `x[k*G*d + i*d .. + d]`.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct NuclearNorm {
    /// Regularization strength (>= 0).
    pub lambda: f64,
    /// Rows of a block (`d`).
    pub rows: usize,
    /// Number of blocks (`G`, patterns).
    pub blocks: usize,
    /// Columns of a block (`c`, outputs).
    pub outputs: usize,
}

impl NuclearNorm {
    /// A nuclear-norm penalty over `blocks` blocks of `rows x outputs`.
    pub fn new(lambda: f64, rows: usize, blocks: usize, outputs: usize) -> Self {
        NuclearNorm {
            lambda,
            rows,
            blocks,
            outputs,
        }
    }

    /// Block `i` of `x` as a `d x c` matrix.
    pub fn block(&self, x: &[f64], i: usize) -> Matrix {
        let (d, g) = (self.rows, self.blocks);
        Matrix::from_fn(d, self.outputs, |r, k| x[k * g * d + i * d + r])
    }

    fn scatter(&self, z: &Matrix, i: usize, out: &mut [f64]) {
        let (d, g) = (self.rows, self.blocks);
        for k in 0..self.outputs {
            out[k * g * d + i * d..k * g * d + (i + 1) * d].copy_from_slice(z.col(k));
        }
    }

    /// Singular values of block `i` (descending).
    pub fn singular_values(&self, x: &[f64], i: usize) -> Vec<f64> {
        singular_values(&self.block(x, i))
    }
}

/// Singular values of `m` (descending); empty for an empty matrix. The SVD of a small dense
/// block only fails on non-finite input, which then reads as infinite.
pub fn singular_values(m: &Matrix) -> Vec<f64> {
    if m.nrows() == 0 || m.ncols() == 0 {
        return Vec::new();
    }
    m.as_ref()
        .singular_values()
        .unwrap_or_else(|_| vec![f64::INFINITY])
}

impl Regularizer for NuclearNorm {
    fn lambda(&self) -> f64 {
        self.lambda
    }

    fn value(&self, x: &[f64]) -> f64 {
        let total: f64 = (0..self.blocks)
            .into_par_iter()
            .map(|i| self.singular_values(x, i).iter().sum::<f64>())
            .collect::<Vec<_>>()
            .iter()
            .sum();
        self.lambda * total
    }

    /// Singular-value thresholding of every block.
    fn prox(&self, x: &[f64], step: f64, out: &mut [f64]) {
        let thr = step * self.lambda;
        let shrunk: Vec<Matrix> = (0..self.blocks)
            .into_par_iter()
            .map(|i| shrink(&self.block(x, i), thr))
            .collect();
        for (i, z) in shrunk.iter().enumerate() {
            self.scatter(z, i, out);
        }
    }

    /// Largest spectral norm of a block (the nuclear norm's dual).
    fn dual_norm(&self, g: &[f64]) -> f64 {
        (0..self.blocks)
            .into_par_iter()
            .map(|i| self.singular_values(g, i).first().copied().unwrap_or(0.0))
            .collect::<Vec<_>>()
            .into_iter()
            .fold(0.0, f64::max)
    }

    fn active_groups(&self, x: &[f64]) -> usize {
        (0..self.blocks)
            .filter(|&i| {
                (0..self.outputs).any(|k| {
                    let s = k * self.blocks * self.rows + i * self.rows;
                    x[s..s + self.rows].iter().any(|&v| v != 0.0)
                })
            })
            .count()
    }
}

/// `U max(S - thr, 0) V^T`; exactly zero when every singular value is at most `thr`.
fn shrink(z: &Matrix, thr: f64) -> Matrix {
    let (d, c) = (z.nrows(), z.ncols());
    let zero = Matrix::zeros(d, c);
    let Ok(svd) = z.as_ref().thin_svd() else {
        return zero;
    };
    let (u, s, v) = (svd.U(), svd.S().column_vector(), svd.V());
    let kept: Vec<(usize, f64)> = (0..s.nrows())
        .map(|r| (r, s[r] - thr))
        .filter(|&(_, t)| t > 0.0)
        .collect();
    if kept.is_empty() {
        return zero;
    }
    Matrix::from_fn(d, c, |a, b| {
        kept.iter().map(|&(r, t)| u[(a, r)] * t * v[(b, r)]).sum()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_output_is_the_group_norm() {
        // c = 1: the nuclear norm of a d x 1 block is its Euclidean norm.
        let x = [3.0, 4.0, 0.3, 0.4];
        let nuc = NuclearNorm::new(0.7, 2, 2, 1);
        let grp = super::super::GroupL2::new(0.7, 2);
        assert!((nuc.value(&x) - grp.value(&x)).abs() < 1e-14);
        let (mut a, mut b) = ([0.0; 4], [0.0; 4]);
        Regularizer::prox(&nuc, &x, 1.0, &mut a);
        grp.prox(&x, 1.0, &mut b);
        for (p, q) in a.iter().zip(&b) {
            assert!((p - q).abs() < 1e-14, "{a:?} vs {b:?}");
        }
        assert!((nuc.dual_norm(&x) - grp.dual_norm(&x)).abs() < 1e-14);
    }

    #[test]
    fn prox_is_singular_value_thresholding() {
        // One block, d = 2, c = 2: Z = diag(3, 1) stored column by column.
        let nuc = NuclearNorm::new(1.0, 2, 1, 2);
        let x = [3.0, 0.0, 0.0, 1.0];
        assert!((nuc.value(&x) - 4.0).abs() < 1e-14);
        let mut out = [0.0; 4];
        nuc.prox(&x, 1.5, &mut out);
        // Singular values 3, 1 -> 1.5, 0.
        let want = [1.5, 0.0, 0.0, 0.0];
        for (p, q) in out.iter().zip(&want) {
            assert!((p - q).abs() < 1e-14, "{out:?}");
        }
        assert!((nuc.dual_norm(&x) - 3.0).abs() < 1e-14);
        assert_eq!(nuc.active_groups(&out), 1);
        assert_eq!(nuc.active_groups(&[0.0; 4]), 0);
    }

    #[test]
    fn prox_minimizes_its_objective() {
        // prox(x) minimizes (1/2t)||z - x||^2 + lambda ||z||_*: no random perturbation does better.
        let nuc = NuclearNorm::new(0.4, 3, 2, 2);
        let x: Vec<f64> = (0..12)
            .map(|i| ((i * 37 % 11) as f64 - 5.0) / 3.0)
            .collect();
        let t = 0.8;
        let mut p = vec![0.0; 12];
        nuc.prox(&x, t, &mut p);
        let f = |z: &[f64]| {
            z.iter()
                .zip(&x)
                .map(|(a, b)| (a - b) * (a - b))
                .sum::<f64>()
                / (2.0 * t)
                + nuc.value(z)
        };
        let best = f(&p);
        for s in 0..50 {
            let q: Vec<f64> = p
                .iter()
                .enumerate()
                .map(|(i, v)| v + 1e-3 * (((i * 7 + s * 13) % 17) as f64 - 8.0) / 8.0)
                .collect();
            assert!(f(&q) >= best - 1e-12);
        }
    }
}
