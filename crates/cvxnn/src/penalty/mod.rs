//! Regularizers. The two-layer programs use a group-L2 penalty over contiguous groups of equal
//! size (one group per pattern and sign: a column of the `d x G` variable matrix); the
//! shared-neuron vector-output model uses a nuclear norm per pattern block ([`NuclearNorm`]).
//! The first-order solver sees a [`Regularizer`].

mod nuclear;

pub use nuclear::NuclearNorm;

/// What R-FISTA and the dual bound need from a penalty `lambda * sum_g N(x_g)`.
pub trait Regularizer: Sync {
    /// Regularization strength.
    fn lambda(&self) -> f64;
    /// Penalty value.
    fn value(&self, x: &[f64]) -> f64;
    /// `out = prox_{step * penalty}(x)`.
    fn prox(&self, x: &[f64], step: f64, out: &mut [f64]);
    /// Largest dual norm of a gradient's groups: `theta` is dual feasible when this is at most
    /// `lambda` for `grad = K^T theta` (and it gives `lambda_max` at zero).
    fn dual_norm(&self, g: &[f64]) -> f64;
    /// Number of groups with a non-zero entry.
    fn active_groups(&self, x: &[f64]) -> usize;
}

impl Regularizer for GroupL2 {
    fn lambda(&self) -> f64 {
        self.lambda
    }
    fn value(&self, x: &[f64]) -> f64 {
        GroupL2::value(self, x)
    }
    fn prox(&self, x: &[f64], step: f64, out: &mut [f64]) {
        GroupL2::prox(self, x, step, out)
    }
    fn dual_norm(&self, g: &[f64]) -> f64 {
        GroupL2::dual_norm(self, g)
    }
    fn active_groups(&self, x: &[f64]) -> usize {
        GroupL2::active_groups(self, x)
    }
}

/// `lambda * sum_g ||x_g||_2` over contiguous groups of `group_size` entries.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct GroupL2 {
    /// Regularization strength (>= 0).
    pub lambda: f64,
    /// Entries per group (`d`).
    pub group_size: usize,
}

impl GroupL2 {
    /// A group-L2 penalty.
    pub fn new(lambda: f64, group_size: usize) -> Self {
        GroupL2 { lambda, group_size }
    }

    /// Penalty value.
    pub fn value(&self, x: &[f64]) -> f64 {
        self.lambda * self.groups(x).map(crate::linalg::norm2).sum::<f64>()
    }

    fn groups<'a>(&self, x: &'a [f64]) -> std::slice::Chunks<'a, f64> {
        x.chunks(self.group_size.max(1))
    }

    /// `out = prox_{step * penalty}(x)`: group soft-thresholding.
    pub fn prox(&self, x: &[f64], step: f64, out: &mut [f64]) {
        let thr = step * self.lambda;
        let gs = self.group_size.max(1);
        for (xg, og) in x.chunks(gs).zip(out.chunks_mut(gs)) {
            let nrm = crate::linalg::norm2(xg);
            let scale = if nrm > thr { 1.0 - thr / nrm } else { 0.0 };
            for (o, v) in og.iter_mut().zip(xg) {
                *o = scale * v;
            }
        }
    }

    /// Largest group norm of a gradient divided by lambda: the zero solution is optimal iff this
    /// is <= 1 when the gradient is taken at zero (it gives `lambda_max` by scaling).
    pub fn dual_norm(&self, g: &[f64]) -> f64 {
        self.groups(g).map(crate::linalg::norm2).fold(0.0, f64::max)
    }

    /// Largest distance, over groups, from `-grad_g` to `lambda * d||x_g||` (the minimum-norm
    /// subgradient): zero exactly at a minimizer of `f + penalty` when `grad = grad f(x)`.
    pub fn subdiff_distance(&self, x: &[f64], grad: &[f64]) -> f64 {
        let gs = self.group_size.max(1);
        let mut worst: f64 = 0.0;
        for (xg, gg) in x.chunks(gs).zip(grad.chunks(gs)) {
            let nx = crate::linalg::norm2(xg);
            let dist = if nx > 0.0 {
                xg.iter()
                    .zip(gg)
                    .map(|(a, b)| {
                        let r = b + self.lambda * a / nx;
                        r * r
                    })
                    .sum::<f64>()
                    .sqrt()
            } else {
                (crate::linalg::norm2(gg) - self.lambda).max(0.0)
            };
            worst = worst.max(dist);
        }
        worst
    }

    /// Number of groups with a non-zero entry.
    pub fn active_groups(&self, x: &[f64]) -> usize {
        self.groups(x)
            .filter(|g| g.iter().any(|&v| v != 0.0))
            .count()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prox_is_group_soft_thresholding() {
        let p = GroupL2::new(1.0, 2);
        let x = [3.0, 4.0, 0.3, 0.4];
        let mut out = [0.0; 4];
        p.prox(&x, 1.0, &mut out);
        // First group norm 5 -> 4, second norm 0.5 <= 1 -> 0.
        assert!((out[0] - 2.4).abs() < 1e-15 && (out[1] - 3.2).abs() < 1e-15);
        assert_eq!(&out[2..], &[0.0, 0.0]);
        assert!((p.value(&x) - 5.5).abs() < 1e-15);
    }

    #[test]
    fn prox_point_has_zero_subdiff_distance() {
        // x+ = prox(x - t g) satisfies (x - t g - x+)/t in lambda d||x+||, so with the linear
        // function f(u) = <(x+ - x)/t + g, u>... check the optimality of prox directly.
        let p = GroupL2::new(0.7, 3);
        let v = [1.0, -2.0, 0.5, 0.1, 0.1, -0.1];
        let t = 0.9;
        let mut xp = [0.0; 6];
        p.prox(&v, t, &mut xp);
        // grad of (1/2t)||u - v||^2 at xp is (xp - v)/t.
        let g: Vec<f64> = xp.iter().zip(&v).map(|(a, b)| (a - b) / t).collect();
        assert!(p.subdiff_distance(&xp, &g) < 1e-12);
    }
}
