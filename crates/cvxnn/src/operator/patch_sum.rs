//! Global sum pooling over patches (DESIGN section 2): an operator whose image starts with `nK`
//! per-patch predictions (patch `k` of sample `j` at `k * n + j`, the row order of
//! [`crate::data::patches`]) becomes one whose image starts with the `n` per-sample sums
//! `sum_k`, its constraint rows passed through unchanged. On the arrangement operator of the
//! stacked patch matrix `Xs` this is `(v, w) -> sum_i sum_k D_ik X_k (v_i - w_i)` with every
//! per-patch cone constraint `(2 D_ik - I) X_k v_i >= 0`.

use super::LinearMap;

/// `inner`'s image with its first `n * patches` entries summed over the patches.
pub struct PatchSum<M> {
    inner: M,
    n: usize,
    patches: usize,
}

impl<M: LinearMap> PatchSum<M> {
    /// Pools `inner`, whose image starts with `n * patches` predictions (patch-major).
    pub fn new(inner: M, n: usize, patches: usize) -> Self {
        PatchSum {
            inner,
            n,
            patches: patches.max(1),
        }
    }

    /// The per-patch operator.
    pub fn inner(&self) -> &M {
        &self.inner
    }
}

impl<M: LinearMap> LinearMap for PatchSum<M> {
    fn n_vars(&self) -> usize {
        self.inner.n_vars()
    }

    fn image_len(&self) -> usize {
        self.inner.image_len() - self.n * (self.patches - 1)
    }

    fn apply(&self, x: &[f64], out: &mut [f64]) {
        let (n, nk) = (self.n, self.n * self.patches);
        let mut buf = vec![0.0; self.inner.image_len()];
        self.inner.apply(x, &mut buf);
        let (pred, cons) = out.split_at_mut(n);
        pred.copy_from_slice(&buf[..n]);
        for block in buf[n..nk].chunks_exact(n) {
            pred.iter_mut().zip(block).for_each(|(p, b)| *p += b);
        }
        cons.copy_from_slice(&buf[nk..]);
    }

    fn adjoint(&self, r: &[f64], out: &mut [f64]) {
        // The adjoint of a sum is a broadcast: every patch of sample j gets r_j.
        let (n, nk) = (self.n, self.n * self.patches);
        let mut buf = vec![0.0; self.inner.image_len()];
        for block in buf[..nk].chunks_exact_mut(n) {
            block.copy_from_slice(&r[..n]);
        }
        buf[nk..].copy_from_slice(&r[n..]);
        self.inner.adjoint(&buf, out);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::linalg::Matrix;
    use crate::operator::{ArrangementOperator, Layout};
    use crate::patterns::sample_patterns;

    #[test]
    fn pooled_apply_sums_patches_and_adjoint_matches() {
        let (n, k, h) = (7, 5, 3);
        let xs = Matrix::from_fn(n * k, h, |i, j| ((i * 31 + j * 17) % 23) as f64 / 7.0 - 1.5);
        let pats = sample_patterns(&xs, 6, 2).unwrap();
        for layout in [Layout::Gated, Layout::Relu, Layout::ReluConstrained] {
            let inner = ArrangementOperator::new(&xs, &pats.masks, layout);
            let op = PatchSum::new(inner, n, k);
            let v: Vec<f64> = (0..op.n_vars())
                .map(|i| ((i * 13) % 7) as f64 - 3.0)
                .collect();
            let mut full = vec![0.0; inner.image_len()];
            inner.apply(&v, &mut full);
            let mut img = vec![0.0; op.image_len()];
            op.apply(&v, &mut img);
            for j in 0..n {
                let s: f64 = (0..k).map(|kk| full[kk * n + j]).sum();
                assert!((img[j] - s).abs() <= 1e-12 * s.abs().max(1.0));
            }
            assert_eq!(&img[n..], &full[n * k..]);
            // <K v, r> = <v, K^T r>.
            let r: Vec<f64> = (0..op.image_len())
                .map(|i| ((i * 7) % 5) as f64 - 2.0)
                .collect();
            let mut g = vec![0.0; op.n_vars()];
            op.adjoint(&r, &mut g);
            let lhs: f64 = img.iter().zip(&r).map(|(a, b)| a * b).sum();
            let rhs: f64 = v.iter().zip(&g).map(|(a, b)| a * b).sum();
            assert!(
                (lhs - rhs).abs() <= 1e-9 * lhs.abs().max(1.0),
                "{lhs} vs {rhs}"
            );
        }
    }
}
