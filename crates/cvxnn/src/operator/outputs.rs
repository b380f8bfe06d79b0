//! `c` outputs of one scalar-output map: each output has its own block of variables, and the
//! predictions of output `k` are the map applied to block `k` (DESIGN section 1, "Multiple
//! outputs"). The per-output and the shared-neuron models have this same operator; only their
//! penalties differ.

use super::LinearMap;

/// Block-diagonal `diag(K, ..., K)` over `outputs` blocks, with the image reordered so that all
/// predictions come first (`n x c`, column-major: output `k`'s `n` predictions at `k * n`),
/// followed by every output's constraint values (output by output).
pub struct OutputBlocks<M> {
    inner: M,
    outputs: usize,
    predictions: usize,
}

impl<M: LinearMap> OutputBlocks<M> {
    /// `outputs` copies of `inner`, whose image starts with `predictions` predictions.
    pub fn new(inner: M, outputs: usize, predictions: usize) -> Self {
        OutputBlocks {
            inner,
            outputs: outputs.max(1),
            predictions,
        }
    }

    /// The scalar-output map.
    pub fn inner(&self) -> &M {
        &self.inner
    }

    /// Number of outputs.
    pub fn outputs(&self) -> usize {
        self.outputs
    }
}

impl<M: LinearMap> LinearMap for OutputBlocks<M> {
    fn n_vars(&self) -> usize {
        self.outputs * self.inner.n_vars()
    }

    fn image_len(&self) -> usize {
        self.outputs * self.inner.image_len()
    }

    fn apply(&self, x: &[f64], out: &mut [f64]) {
        if self.outputs == 1 {
            return self.inner.apply(x, out);
        }
        let (nv, ni, n) = (
            self.inner.n_vars(),
            self.inner.image_len(),
            self.predictions,
        );
        let (pred, cons) = out.split_at_mut(self.outputs * n);
        let mut buf = vec![0.0; if ni == n { 0 } else { ni }];
        for k in 0..self.outputs {
            let xk = &x[k * nv..(k + 1) * nv];
            if ni == n {
                self.inner.apply(xk, &mut pred[k * n..(k + 1) * n]);
            } else {
                self.inner.apply(xk, &mut buf);
                pred[k * n..(k + 1) * n].copy_from_slice(&buf[..n]);
                cons[k * (ni - n)..(k + 1) * (ni - n)].copy_from_slice(&buf[n..]);
            }
        }
    }

    fn adjoint(&self, r: &[f64], out: &mut [f64]) {
        if self.outputs == 1 {
            return self.inner.adjoint(r, out);
        }
        let (nv, ni, n) = (
            self.inner.n_vars(),
            self.inner.image_len(),
            self.predictions,
        );
        let (pred, cons) = r.split_at(self.outputs * n);
        let mut buf = vec![0.0; if ni == n { 0 } else { ni }];
        for k in 0..self.outputs {
            let ok = &mut out[k * nv..(k + 1) * nv];
            if ni == n {
                self.inner.adjoint(&pred[k * n..(k + 1) * n], ok);
            } else {
                buf[..n].copy_from_slice(&pred[k * n..(k + 1) * n]);
                buf[n..].copy_from_slice(&cons[k * (ni - n)..(k + 1) * (ni - n)]);
                self.inner.adjoint(&buf, ok);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::linalg::Matrix;
    use crate::operator::{ArrangementOperator, Layout};
    use crate::patterns::sample_patterns;

    #[test]
    fn blocks_apply_per_output_and_adjoint_matches() {
        let (n, d, c) = (37, 3, 3);
        let x = Matrix::from_fn(n, d, |i, j| ((i * 31 + j * 17) % 23) as f64 / 7.0 - 1.5);
        let pats = sample_patterns(&x, 5, 1).unwrap();
        for layout in [Layout::Gated, Layout::ReluConstrained] {
            let inner = ArrangementOperator::new(&x, &pats.masks, layout);
            let (nv, ni) = (inner.n_vars(), inner.image_len());
            let op = OutputBlocks::new(ArrangementOperator::new(&x, &pats.masks, layout), c, n);
            let v: Vec<f64> = (0..c * nv).map(|i| ((i * 13) % 7) as f64 - 3.0).collect();
            let mut img = vec![0.0; op.image_len()];
            op.apply(&v, &mut img);
            // Output k's predictions and constraints are the scalar map on block k.
            for k in 0..c {
                let mut one = vec![0.0; ni];
                inner.apply(&v[k * nv..(k + 1) * nv], &mut one);
                assert_eq!(&img[k * n..(k + 1) * n], &one[..n]);
                let m = ni - n;
                assert_eq!(&img[c * n + k * m..c * n + (k + 1) * m], &one[n..]);
            }
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
