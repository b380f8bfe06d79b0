//! Data-fit terms. A loss works on the operator's output `z` (predictions), never on the weights.

use serde::{Deserialize, Serialize};

/// Which data-fit term a program uses.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum LossKind {
    /// `(p - y)^2 / 2` per sample (regression; also usable on ±1 labels).
    Squared,
    /// `log(1 + exp(-y p))` per sample, labels ±1 (binary classification).
    Logistic,
}

impl std::fmt::Display for LossKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            LossKind::Squared => "squared",
            LossKind::Logistic => "logistic",
        })
    }
}

impl LossKind {
    /// The data-fit term `h(z) = (1/n) sum_j loss(z_j, y_j)` (DESIGN section 0 scaling).
    pub fn value(self, z: &[f64], y: &[f64]) -> f64 {
        let n = y.len().max(1) as f64;
        let s: f64 = match self {
            LossKind::Squared => z.iter().zip(y).map(|(p, t)| 0.5 * (p - t) * (p - t)).sum(),
            LossKind::Logistic => z.iter().zip(y).map(|(p, t)| softplus(-t * p)).sum(),
        };
        s / n
    }

    /// Gradient of `h` in `z`, written to `out`.
    pub fn grad(self, z: &[f64], y: &[f64], out: &mut [f64]) {
        let n = y.len().max(1) as f64;
        match self {
            LossKind::Squared => {
                for ((o, p), t) in out.iter_mut().zip(z).zip(y) {
                    *o = (p - t) / n;
                }
            }
            LossKind::Logistic => {
                for ((o, p), t) in out.iter_mut().zip(z).zip(y) {
                    *o = -t * sigmoid(-t * p) / n;
                }
            }
        }
    }

    /// Value and gradient in one pass.
    pub fn value_grad(self, z: &[f64], y: &[f64], out: &mut [f64]) -> f64 {
        self.grad(z, y, out);
        self.value(z, y)
    }

    /// `h*(theta)`, the convex conjugate of `h`, for the dual bound; `+inf` outside its domain.
    pub fn conjugate(self, theta: &[f64], y: &[f64]) -> f64 {
        let n = y.len().max(1) as f64;
        match self {
            // h(z) = ||z - y||^2 / (2n)  =>  h*(t) = t.y + (n/2) ||t||^2.
            LossKind::Squared => theta
                .iter()
                .zip(y)
                .map(|(t, yy)| t * yy + 0.5 * n * t * t)
                .sum(),
            // loss*(s) = q log q + (1-q) log(1-q) with q = -s y in [0, 1]; h*(t) = (1/n) sum loss*(n t).
            LossKind::Logistic => {
                let mut s = 0.0;
                for (t, yy) in theta.iter().zip(y) {
                    let q = -n * t * yy;
                    if !(-1e-12..=1.0 + 1e-12).contains(&q) {
                        return f64::INFINITY;
                    }
                    let q = q.clamp(0.0, 1.0);
                    s += xlogx(q) + xlogx(1.0 - q);
                }
                s / n
            }
        }
    }

    /// Curvature bound of `h` in `z` (Lipschitz constant of its gradient).
    pub fn curvature(self, n: usize) -> f64 {
        let n = n.max(1) as f64;
        match self {
            LossKind::Squared => 1.0 / n,
            LossKind::Logistic => 0.25 / n,
        }
    }

    /// Checks that the targets fit the loss (finite; ±1 for logistic).
    pub fn check_targets(self, y: &[f64]) -> crate::Result<()> {
        if let Some((j, v)) = y.iter().enumerate().find(|(_, v)| !v.is_finite()) {
            return Err(crate::CvxnnError::arg(
                "y",
                format!("target {j} is {v}; targets must be finite"),
            ));
        }
        if self == LossKind::Logistic {
            if let Some((j, v)) = y.iter().enumerate().find(|(_, &v)| v != 1.0 && v != -1.0) {
                return Err(crate::CvxnnError::arg(
                    "loss",
                    format!("logistic loss needs labels -1/+1, target {j} is {v}"),
                ));
            }
        }
        Ok(())
    }
}

fn xlogx(q: f64) -> f64 {
    if q <= 0.0 {
        0.0
    } else {
        q * q.ln()
    }
}

/// `log(1 + exp(a))`, stable for large |a|.
pub fn softplus(a: f64) -> f64 {
    if a > 0.0 {
        a + (-a).exp().ln_1p()
    } else {
        a.exp().ln_1p()
    }
}

/// `1 / (1 + exp(-a))`, stable.
pub fn sigmoid(a: f64) -> f64 {
    if a >= 0.0 {
        1.0 / (1.0 + (-a).exp())
    } else {
        let e = a.exp();
        e / (1.0 + e)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fd_check(loss: LossKind, y: &[f64]) {
        let z = [0.3, -1.2, 2.0, 0.0];
        let mut g = [0.0; 4];
        loss.grad(&z, y, &mut g);
        for k in 0..4 {
            let mut zp = z;
            zp[k] += 1e-6;
            let mut zm = z;
            zm[k] -= 1e-6;
            let fd = (loss.value(&zp, y) - loss.value(&zm, y)) / 2e-6;
            assert!((fd - g[k]).abs() < 1e-7, "{loss:?} {k}: {fd} vs {}", g[k]);
        }
    }

    #[test]
    fn gradients_match_finite_differences() {
        fd_check(LossKind::Squared, &[1.0, 0.5, -2.0, 3.0]);
        fd_check(LossKind::Logistic, &[1.0, -1.0, -1.0, 1.0]);
    }

    #[test]
    fn fenchel_young_is_tight_at_the_gradient() {
        // h(z) + h*(grad h(z)) = z . grad h(z), and >= for any other theta.
        for (loss, y) in [
            (LossKind::Squared, [1.0, 0.5, -2.0, 3.0]),
            (LossKind::Logistic, [1.0, -1.0, -1.0, 1.0]),
        ] {
            let z = [0.3, -1.2, 2.0, 0.0];
            let mut g = [0.0; 4];
            loss.grad(&z, &y, &mut g);
            let lhs = loss.value(&z, &y) + loss.conjugate(&g, &y);
            let rhs: f64 = z.iter().zip(&g).map(|(a, b)| a * b).sum();
            assert!((lhs - rhs).abs() < 1e-12, "{loss:?}: {lhs} vs {rhs}");
            let other: Vec<f64> = g.iter().map(|v| v * 0.7).collect();
            let lhs2 = loss.value(&z, &y) + loss.conjugate(&other, &y);
            let rhs2: f64 = z.iter().zip(&other).map(|(a, b)| a * b).sum();
            assert!(lhs2 >= rhs2 - 1e-12);
        }
    }

    #[test]
    fn logistic_rejects_non_pm1_labels() {
        assert!(LossKind::Logistic.check_targets(&[1.0, 0.0]).is_err());
        assert!(LossKind::Squared.check_targets(&[1.0, f64::NAN]).is_err());
    }
}
