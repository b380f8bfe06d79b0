//! A plain dense matrix as a [`LinearMap`]: `x -> Phi x`. The linear-network programs (DESIGN
//! section 3) use it on their features (inputs, or flattened patches).

use faer::Accum;

use super::LinearMap;
use crate::linalg::{gemm, Matrix};

/// `x -> Phi x` for a dense `n x p` matrix `Phi`.
#[derive(Clone, Debug)]
pub struct DenseMap {
    phi: Matrix,
}

impl DenseMap {
    /// The map of `phi`.
    pub fn new(phi: Matrix) -> Self {
        DenseMap { phi }
    }

    /// The matrix.
    pub fn matrix(&self) -> &Matrix {
        &self.phi
    }
}

impl LinearMap for DenseMap {
    fn n_vars(&self) -> usize {
        self.phi.ncols()
    }

    fn image_len(&self) -> usize {
        self.phi.nrows()
    }

    fn apply(&self, x: &[f64], out: &mut [f64]) {
        let n = self.phi.nrows();
        let xm = faer::MatRef::from_column_major_slice(x, x.len(), 1);
        let om = faer::MatMut::from_column_major_slice_mut(out, n, 1);
        gemm(om, Accum::Replace, self.phi.as_ref(), xm, 1.0);
    }

    fn adjoint(&self, r: &[f64], out: &mut [f64]) {
        let p = self.phi.ncols();
        let rm = faer::MatRef::from_column_major_slice(r, r.len(), 1);
        let om = faer::MatMut::from_column_major_slice_mut(out, p, 1);
        gemm(om, Accum::Replace, self.phi.as_ref().transpose(), rm, 1.0);
    }
}
