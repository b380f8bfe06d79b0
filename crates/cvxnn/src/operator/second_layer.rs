//! The second ReLU layer of the three-layer CNN program (DESIGN section 2, docs/theory.md
//! "Three-layer CNN"): `B` blocks, each a two-layer output `g_b` (`n` values) with a fixed
//! sample pattern `D2_b` and a sign `s_b`. The image is
//!
//! ```text
//! [ sum_b s_b D2_b g_b  (n) ;  (2 D2_b - I) g_b  (n per block) ;  the blocks' own constraints ]
//! ```
//!
//! so the second-layer cone rows `(2 D2_b - I) g_b >= 0`, which make `D2_b g_b = (g_b)_+`, sit
//! next to the first-layer rows and the augmented Lagrangian treats them all alike.

use super::LinearMap;

/// `inner` (image: `B` predictions of length `n` each, block after block, then constraint rows,
/// as [`super::OutputBlocks`] orders them) followed by a second ReLU layer with fixed patterns.
pub struct SecondLayer<M> {
    inner: M,
    n: usize,
    /// `n x B` 0/1 values of `D2_b`, block after block.
    active: Vec<f64>,
    /// `s_b` in `{-1, +1}`.
    signs: Vec<f64>,
}

impl<M: LinearMap> SecondLayer<M> {
    /// `active` holds the `n` diagonal 0/1 values of every `D2_b` (block after block) and
    /// `signs` one `+-1` per block; `inner`'s image must start with the `n * B` block outputs.
    pub fn new(inner: M, n: usize, active: Vec<f64>, signs: Vec<f64>) -> Self {
        debug_assert_eq!(active.len(), n * signs.len());
        SecondLayer {
            inner,
            n,
            active,
            signs,
        }
    }

    /// Number of blocks `B`.
    pub fn blocks(&self) -> usize {
        self.signs.len()
    }

    /// The two-layer blocks.
    pub fn inner(&self) -> &M {
        &self.inner
    }
}

impl<M: LinearMap> LinearMap for SecondLayer<M> {
    fn n_vars(&self) -> usize {
        self.inner.n_vars()
    }

    fn image_len(&self) -> usize {
        self.n + self.inner.image_len()
    }

    fn apply(&self, x: &[f64], out: &mut [f64]) {
        let (n, nb) = (self.n, self.n * self.blocks());
        let (z, rest) = out.split_at_mut(n);
        self.inner.apply(x, rest);
        z.iter_mut().for_each(|v| *v = 0.0);
        let g = &mut rest[..nb];
        for ((gb, db), &s) in g
            .chunks_exact_mut(n)
            .zip(self.active.chunks_exact(n))
            .zip(&self.signs)
        {
            for ((zj, gj), &dj) in z.iter_mut().zip(gb.iter_mut()).zip(db) {
                *zj += s * dj * *gj;
                // (2 d - 1) g: the block output itself becomes its cone row.
                *gj *= 2.0 * dj - 1.0;
            }
        }
    }

    fn adjoint(&self, r: &[f64], out: &mut [f64]) {
        let (n, nb) = (self.n, self.n * self.blocks());
        let (rz, rest) = r.split_at(n);
        let mut buf = rest.to_vec();
        for ((bb, db), &s) in buf[..nb]
            .chunks_exact_mut(n)
            .zip(self.active.chunks_exact(n))
            .zip(&self.signs)
        {
            for ((bj, &dj), &rj) in bb.iter_mut().zip(db).zip(rz) {
                *bj = s * dj * rj + (2.0 * dj - 1.0) * *bj;
            }
        }
        self.inner.adjoint(&buf, out);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::linalg::Matrix;
    use crate::operator::{ArrangementOperator, Layout, OutputBlocks, PatchSum};
    use crate::patterns::sample_patterns;

    #[test]
    fn second_layer_matches_direct_formula_and_adjoint() {
        let (n, k, h, b) = (6, 4, 3, 4);
        let xs = Matrix::from_fn(n * k, h, |i, j| ((i * 31 + j * 17) % 23) as f64 / 7.0 - 1.5);
        let pats = sample_patterns(&xs, 5, 2).unwrap();
        let block = || {
            PatchSum::new(
                ArrangementOperator::new(&xs, &pats.masks, Layout::ReluConstrained),
                n,
                k,
            )
        };
        let one = block();
        let active: Vec<f64> = (0..n * b)
            .map(|i| ((i * 7) % 3 != 0) as u8 as f64)
            .collect();
        let signs = vec![1.0, -1.0, 1.0, -1.0];
        let op = SecondLayer::new(
            OutputBlocks::new(block(), b, n),
            n,
            active.clone(),
            signs.clone(),
        );
        let v: Vec<f64> = (0..op.n_vars())
            .map(|i| ((i * 13) % 7) as f64 - 3.0)
            .collect();
        let mut img = vec![0.0; op.image_len()];
        op.apply(&v, &mut img);
        let nv = one.n_vars();
        let mut z = vec![0.0; n];
        for bb in 0..b {
            let mut g = vec![0.0; one.image_len()];
            one.apply(&v[bb * nv..(bb + 1) * nv], &mut g);
            for j in 0..n {
                let d = active[bb * n + j];
                z[j] += signs[bb] * d * g[j];
                let c = img[n + bb * n + j];
                assert!((c - (2.0 * d - 1.0) * g[j]).abs() <= 1e-12 * g[j].abs().max(1.0));
            }
        }
        for (a, e) in img[..n].iter().zip(&z) {
            assert!((a - e).abs() <= 1e-12 * e.abs().max(1.0), "{a} vs {e}");
        }
        let r: Vec<f64> = (0..op.image_len())
            .map(|i| ((i * 7) % 5) as f64 - 2.0)
            .collect();
        let mut g = vec![0.0; op.n_vars()];
        op.adjoint(&r, &mut g);
        let lhs = crate::linalg::dot(&img, &r);
        let rhs = crate::linalg::dot(&v, &g);
        assert!(
            (lhs - rhs).abs() <= 1e-9 * lhs.abs().max(1.0),
            "{lhs} vs {rhs}"
        );
    }
}
