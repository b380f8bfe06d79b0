//! Local pooling (DESIGN section 2, "Linear pooling in general"): one map per pooling window,
//! each on its own block of variables, whose predictions are added with a common weight. With
//! window `w`'s map `PatchSum(ArrangementOperator(X_w))` and weight `1/|w|` this is
//! `sum_w (1/|w|) sum_i sum_{k in w} D_ik X_k Z_i[:, w]` — the average-pooled CNN with `Z_i`'s
//! column `w` stored in block `w` (the layout [`crate::penalty::NuclearNorm`] reads with the
//! windows as its "outputs"). The windows behave like outputs whose predictions are summed.

use super::LinearMap;

/// `sum_w weight * inner_w(x_w)` over variable blocks `x_w`; the image is the `n` summed
/// predictions followed by every window's constraint values (window by window).
pub struct WindowSum<M> {
    inner: Vec<M>,
    n: usize,
    weight: f64,
}

impl<M: LinearMap> WindowSum<M> {
    /// Windows `inner` (each image starts with `n` predictions), predictions scaled by `weight`.
    pub fn new(inner: Vec<M>, n: usize, weight: f64) -> Self {
        WindowSum { inner, n, weight }
    }

    /// The per-window maps.
    pub fn windows(&self) -> &[M] {
        &self.inner
    }
}

impl<M: LinearMap> LinearMap for WindowSum<M> {
    fn n_vars(&self) -> usize {
        self.inner.iter().map(LinearMap::n_vars).sum()
    }

    fn image_len(&self) -> usize {
        self.n
            + self
                .inner
                .iter()
                .map(|m| m.image_len() - self.n)
                .sum::<usize>()
    }

    fn apply(&self, x: &[f64], out: &mut [f64]) {
        let n = self.n;
        let (pred, mut cons) = out.split_at_mut(n);
        pred.iter_mut().for_each(|p| *p = 0.0);
        let mut start = 0;
        for m in &self.inner {
            let mut buf = vec![0.0; m.image_len()];
            m.apply(&x[start..start + m.n_vars()], &mut buf);
            start += m.n_vars();
            pred.iter_mut()
                .zip(&buf[..n])
                .for_each(|(p, b)| *p += self.weight * b);
            let (c, rest) = cons.split_at_mut(buf.len() - n);
            c.copy_from_slice(&buf[n..]);
            cons = rest;
        }
    }

    fn adjoint(&self, r: &[f64], out: &mut [f64]) {
        let n = self.n;
        let mut start = 0;
        let mut cstart = n;
        for m in &self.inner {
            let mut buf = vec![0.0; m.image_len()];
            buf[..n]
                .iter_mut()
                .zip(&r[..n])
                .for_each(|(b, v)| *b = self.weight * v);
            let nc = buf.len() - n;
            buf[n..].copy_from_slice(&r[cstart..cstart + nc]);
            cstart += nc;
            m.adjoint(&buf, &mut out[start..start + m.n_vars()]);
            start += m.n_vars();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::linalg::Matrix;
    use crate::operator::{ArrangementOperator, Layout, PatchSum};
    use crate::patterns::sample_patterns;

    #[test]
    fn window_sum_adds_weighted_windows_and_adjoint_matches() {
        let (n, per, h) = (5, 3, 2);
        let xa = Matrix::from_fn(n * per, h, |i, j| {
            ((i * 31 + j * 17) % 23) as f64 / 7.0 - 1.5
        });
        let xb = Matrix::from_fn(n * per, h, |i, j| {
            ((i * 11 + j * 5) % 13) as f64 / 4.0 - 1.5
        });
        let pa = sample_patterns(&xa, 4, 2).unwrap();
        let pb = sample_patterns(&xb, 4, 3).unwrap();
        for layout in [Layout::Gated, Layout::ReluConstrained] {
            let a = PatchSum::new(ArrangementOperator::new(&xa, &pa.masks, layout), n, per);
            let b = PatchSum::new(ArrangementOperator::new(&xb, &pb.masks, layout), n, per);
            let (na, nb) = (a.n_vars(), b.n_vars());
            let (ia, ib) = (a.image_len(), b.image_len());
            let op = WindowSum::new(vec![a, b], n, 0.25);
            let v: Vec<f64> = (0..op.n_vars())
                .map(|i| ((i * 13) % 7) as f64 - 3.0)
                .collect();
            let mut img = vec![0.0; op.image_len()];
            op.apply(&v, &mut img);
            let (mut za, mut zb) = (vec![0.0; ia], vec![0.0; ib]);
            op.windows()[0].apply(&v[..na], &mut za);
            op.windows()[1].apply(&v[na..na + nb], &mut zb);
            for j in 0..n {
                let want = 0.25 * (za[j] + zb[j]);
                assert!((img[j] - want).abs() <= 1e-12 * want.abs().max(1.0));
            }
            assert_eq!(&img[n..n + ia - n], &za[n..]);
            assert_eq!(&img[ia..], &zb[n..]);
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
