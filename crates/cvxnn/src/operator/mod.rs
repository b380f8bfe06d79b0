//! Linear maps from a program's variables to its "image": the predictions `z`, followed (for
//! cone-constrained programs) by the constraint values that must stay non-negative.
//!
//! Solvers only see [`LinearMap`]; CNN and Fourier operators will be further implementors.

mod arrangement;
mod dense;
pub mod fourier;
mod max_pool;
mod outputs;
mod patch_sum;
mod second_layer;
mod window_sum;
mod working_set;

pub use arrangement::{ArrangementOperator, Layout};
pub use dense::DenseMap;
pub use fourier::{
    coefficients_to_spectrum, filters_from_coefficients, fourier_groups, inverse_real_spectrum,
    real_spectrum, FourierFeatures,
};
pub use max_pool::MaxPoolWindow;
pub use outputs::OutputBlocks;
pub use patch_sum::PatchSum;
pub use second_layer::SecondLayer;
pub use window_sum::WindowSum;
pub use working_set::{pooled_patterns, row_classes, WorkingSetMap};

impl<M: LinearMap + ?Sized> LinearMap for &M {
    fn n_vars(&self) -> usize {
        (**self).n_vars()
    }
    fn image_len(&self) -> usize {
        (**self).image_len()
    }
    fn apply(&self, x: &[f64], out: &mut [f64]) {
        (**self).apply(x, out)
    }
    fn adjoint(&self, r: &[f64], out: &mut [f64]) {
        (**self).adjoint(r, out)
    }
    fn norm_sq_estimate(&self, iters: usize) -> f64 {
        (**self).norm_sq_estimate(iters)
    }
}

/// A linear map `K` from variables (length [`LinearMap::n_vars`]) to an image (length
/// [`LinearMap::image_len`]), with its adjoint. Results must not depend on the thread count.
pub trait LinearMap: Sync {
    /// Number of variables.
    fn n_vars(&self) -> usize;
    /// Length of the image.
    fn image_len(&self) -> usize;
    /// `out = K x`.
    fn apply(&self, x: &[f64], out: &mut [f64]);
    /// `out = K^T r`.
    fn adjoint(&self, r: &[f64], out: &mut [f64]);

    /// Estimate of `||K||_2^2` by power iteration on `K^T K` (seeded, deterministic); a slight
    /// over-estimate, used only to pick the first step size.
    fn norm_sq_estimate(&self, iters: usize) -> f64 {
        let n = self.n_vars();
        if n == 0 {
            return 0.0;
        }
        // Deterministic, non-degenerate start vector.
        let mut v: Vec<f64> = (0..n)
            .map(|i| 1.0 + ((i * 7919) % 13) as f64 / 13.0)
            .collect();
        let mut img = vec![0.0; self.image_len()];
        let mut est = 0.0;
        for _ in 0..iters.max(1) {
            let nv = crate::linalg::norm2(&v);
            if nv == 0.0 {
                return 0.0;
            }
            v.iter_mut().for_each(|a| *a /= nv);
            self.apply(&v, &mut img);
            let mut w = vec![0.0; n];
            self.adjoint(&img, &mut w);
            est = crate::linalg::norm2(&w);
            v = w;
        }
        est * 1.05
    }
}
