//! Fortran-ABI BLAS/LAPACK symbols for Clarabel's `sdp` feature.
//!
//! Clarabel's PSD cone calls `?gemm`, `?gemv`, `?symv`, `?syrk`, `?syr2k`, `?potrf`, `?potrs`,
//! `?syevr`, `?gesdd`, `?gesvd` and `?gesv` through the `blas`/`lapack` crates, which expect a
//! provider (OpenBLAS, MKL, netlib…) at link time. None of them builds here or in CI (no
//! Fortran compiler, no cmake, no system library), so this crate *is* the provider: each symbol
//! follows the reference LAPACK conventions (column-major storage with leading dimensions,
//! `lwork = -1` workspace queries, `info` codes, only the referenced triangle read) and does
//! the work with faer (eigen/SVD) or plain loops (the matrices of our SDPs are small).
//!
//! Single-precision symbols compute in `f64` and round the results: `clarabel` declares them
//! whether or not they are called. Arguments are trusted like a real BLAS would; the only caller
//! is Clarabel.
#![allow(clippy::too_many_arguments, clippy::missing_safety_doc)]

mod blas;
mod lapack;

/// A BLAS scalar: `f32` or `f64`, read into and written back from `f64`.
pub(crate) trait Real: Copy {
    fn get(self) -> f64;
    fn put(v: f64) -> Self;
}

impl Real for f64 {
    #[inline]
    fn get(self) -> f64 {
        self
    }
    #[inline]
    fn put(v: f64) -> Self {
        v
    }
}

impl Real for f32 {
    #[inline]
    fn get(self) -> f64 {
        f64::from(self)
    }
    #[inline]
    fn put(v: f64) -> Self {
        v as f32
    }
}

/// Upper-case ASCII of a Fortran character argument.
#[inline]
pub(crate) unsafe fn ch(c: *const std::os::raw::c_char) -> u8 {
    (*c as u8).to_ascii_uppercase()
}

/// Column-major element `(i, j)` of a matrix with leading dimension `ld`.
#[inline]
pub(crate) unsafe fn at<T: Real>(a: *const T, ld: usize, i: usize, j: usize) -> f64 {
    (*a.add(i + j * ld)).get()
}

#[inline]
pub(crate) unsafe fn set<T: Real>(a: *mut T, ld: usize, i: usize, j: usize, v: f64) {
    *a.add(i + j * ld) = T::put(v);
}

/// Makes sure the crate is linked: Rust drops a dependency nothing refers to, and with it these
/// symbols. `cvxnn` calls this once (it does nothing).
pub fn link() {}

// Index loops mirror the BLAS definitions the tests check.
#[cfg(test)]
#[allow(clippy::needless_range_loop)]
mod tests;
