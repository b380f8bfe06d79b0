//! A small column-major dense matrix and the GEMM wrappers every operator uses.
//!
//! Column-major because faer is fastest on it for both `X V` and `X^T R` (DESIGN section 10).

use faer::linalg::matmul::matmul;
use faer::{Accum, MatMut, MatRef, Par};
use serde::{Deserialize, Serialize};

/// Dense column-major `nrows x ncols` matrix of `f64`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Matrix {
    nrows: usize,
    ncols: usize,
    data: Vec<f64>,
}

impl Matrix {
    /// A matrix of zeros.
    pub fn zeros(nrows: usize, ncols: usize) -> Self {
        Matrix {
            nrows,
            ncols,
            data: vec![0.0; nrows * ncols],
        }
    }

    /// Wraps column-major data; `None` when the length does not match.
    pub fn from_col_major(nrows: usize, ncols: usize, data: Vec<f64>) -> Option<Self> {
        (data.len() == nrows * ncols).then_some(Matrix { nrows, ncols, data })
    }

    /// Entry `(i, j)` is `f(i, j)`.
    pub fn from_fn(nrows: usize, ncols: usize, f: impl Fn(usize, usize) -> f64) -> Self {
        let data = (0..ncols)
            .flat_map(|j| (0..nrows).map(move |i| (i, j)))
            .map(|(i, j)| f(i, j))
            .collect();
        Matrix { nrows, ncols, data }
    }

    /// Builds from rows (all of length `ncols`); `None` when rows are ragged.
    pub fn from_rows(rows: &[Vec<f64>], ncols: usize) -> Option<Self> {
        if rows.iter().any(|r| r.len() != ncols) {
            return None;
        }
        let nrows = rows.len();
        let mut m = Matrix::zeros(nrows, ncols);
        for (i, r) in rows.iter().enumerate() {
            for (j, &v) in r.iter().enumerate() {
                m.data[j * nrows + i] = v;
            }
        }
        Some(m)
    }

    /// Number of rows.
    pub fn nrows(&self) -> usize {
        self.nrows
    }

    /// Number of columns.
    pub fn ncols(&self) -> usize {
        self.ncols
    }

    /// Entry `(i, j)`.
    #[inline]
    pub fn get(&self, i: usize, j: usize) -> f64 {
        self.data[j * self.nrows + i]
    }

    /// Sets entry `(i, j)`.
    #[inline]
    pub fn set(&mut self, i: usize, j: usize, v: f64) {
        self.data[j * self.nrows + i] = v;
    }

    /// Column `j` as a slice.
    pub fn col(&self, j: usize) -> &[f64] {
        &self.data[j * self.nrows..(j + 1) * self.nrows]
    }

    /// Column `j` as a mutable slice.
    pub fn col_mut(&mut self, j: usize) -> &mut [f64] {
        &mut self.data[j * self.nrows..(j + 1) * self.nrows]
    }

    /// Row `i`, copied.
    pub fn row(&self, i: usize) -> Vec<f64> {
        (0..self.ncols).map(|j| self.get(i, j)).collect()
    }

    /// The column-major storage.
    pub fn as_slice(&self) -> &[f64] {
        &self.data
    }

    /// The column-major storage, mutable.
    pub fn as_mut_slice(&mut self) -> &mut [f64] {
        &mut self.data
    }

    /// Consumes the matrix into its column-major storage.
    pub fn into_vec(self) -> Vec<f64> {
        self.data
    }

    /// A faer view.
    pub fn as_ref(&self) -> MatRef<'_, f64> {
        MatRef::from_column_major_slice(&self.data, self.nrows, self.ncols)
    }

    /// A mutable faer view.
    pub fn as_mut(&mut self) -> MatMut<'_, f64> {
        MatMut::from_column_major_slice_mut(&mut self.data, self.nrows, self.ncols)
    }

    /// The rows selected by `idx`, in that order.
    pub fn select_rows(&self, idx: &[usize]) -> Matrix {
        let mut m = Matrix::zeros(idx.len(), self.ncols);
        for j in 0..self.ncols {
            let src = self.col(j);
            for (k, &i) in idx.iter().enumerate() {
                m.data[j * idx.len() + k] = src[i];
            }
        }
        m
    }

    /// `self * b`.
    pub fn matmul(&self, b: &Matrix) -> Matrix {
        let mut out = Matrix::zeros(self.nrows, b.ncols);
        gemm(out.as_mut(), Accum::Replace, self.as_ref(), b.as_ref(), 1.0);
        out
    }

    /// `self^T * b`.
    pub fn t_matmul(&self, b: &Matrix) -> Matrix {
        let mut out = Matrix::zeros(self.ncols, b.ncols);
        gemm(
            out.as_mut(),
            Accum::Replace,
            self.as_ref().transpose(),
            b.as_ref(),
            1.0,
        );
        out
    }

    /// `self * v` for a vector `v`.
    pub fn matvec(&self, v: &[f64]) -> Vec<f64> {
        let mut out = vec![0.0; self.nrows];
        for (j, &vj) in v.iter().enumerate() {
            if vj != 0.0 {
                for (o, &x) in out.iter_mut().zip(self.col(j)) {
                    *o += x * vj;
                }
            }
        }
        out
    }
}

/// A column-major `f32` copy of a [`Matrix`]: the data matrix of the single-precision products
/// (`--precision f32`), which run twice as fast and take half the memory; solvers and
/// certificates stay in `f64`.
#[derive(Clone, Debug, PartialEq)]
pub struct Matrix32 {
    nrows: usize,
    ncols: usize,
    data: Vec<f32>,
}

impl Matrix32 {
    /// Rounds every entry of `m` to `f32`.
    pub fn from_f64(m: &Matrix) -> Self {
        Matrix32 {
            nrows: m.nrows,
            ncols: m.ncols,
            data: m.data.iter().map(|&v| v as f32).collect(),
        }
    }

    /// Number of rows.
    pub fn nrows(&self) -> usize {
        self.nrows
    }

    /// Number of columns.
    pub fn ncols(&self) -> usize {
        self.ncols
    }

    /// A faer view.
    pub fn as_ref(&self) -> MatRef<'_, f32> {
        MatRef::from_column_major_slice(&self.data, self.nrows, self.ncols)
    }
}

/// Floating-point type of the dense products: `f64`, or `f32` for the single-precision phase.
pub trait Real: faer::traits::ComplexField + Copy {}
impl Real for f64 {}
impl Real for f32 {}

/// `dst = alpha * lhs * rhs` (or `+=` with [`Accum::Add`]), single-threaded: callers parallelize
/// over row panels themselves so that results do not depend on the thread count.
pub fn gemm<T: Real>(
    dst: MatMut<'_, T>,
    accum: Accum,
    lhs: MatRef<'_, T>,
    rhs: MatRef<'_, T>,
    alpha: T,
) {
    matmul(dst, accum, lhs, rhs, alpha, Par::Seq);
}

/// Euclidean norm.
pub fn norm2(v: &[f64]) -> f64 {
    v.iter().map(|x| x * x).sum::<f64>().sqrt()
}

/// Dot product.
pub fn dot(a: &[f64], b: &[f64]) -> f64 {
    a.iter().zip(b).map(|(x, y)| x * y).sum()
}
