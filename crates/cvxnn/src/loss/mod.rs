//! Data-fit terms. A loss works on the operator's output `z` (predictions), never on the weights.
//!
//! With `c` outputs, `z` and the targets `y` are `n x c` matrices stored column-major (entry
//! `k * n + j` is output `k` of sample `j`), and `h(z) = (1/n) sum_j loss(z_j, y_j)` sums each
//! sample's loss over its outputs: the scaling of DESIGN section 0 for every `c`.

use serde::{Deserialize, Serialize};

/// Which data-fit term a program uses.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum LossKind {
    /// `(p - y)^2 / 2` per entry (regression; also usable on ±1 labels and one-hot targets).
    Squared,
    /// `log(1 + exp(-y p))` per entry, labels ±1 (binary classification).
    Logistic,
    /// Softmax cross-entropy `logsumexp(p) - p . y` per sample over its `c >= 2` outputs, with
    /// one-hot targets `y` (multi-class classification). It couples a sample's outputs.
    CrossEntropy,
}

impl std::fmt::Display for LossKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            LossKind::Squared => "squared",
            LossKind::Logistic => "logistic",
            LossKind::CrossEntropy => "cross-entropy",
        })
    }
}

/// Samples in an `n x outputs` target (at least 1, so that empty inputs divide safely).
fn samples(len: usize, outputs: usize) -> f64 {
    (len / outputs.max(1)).max(1) as f64
}

impl LossKind {
    /// The data-fit term `h(z) = (1/n) sum_j loss(z_j, y_j)` over `n = y.len() / outputs`
    /// samples (DESIGN section 0 scaling).
    pub fn value(self, z: &[f64], y: &[f64], outputs: usize) -> f64 {
        let n = samples(y.len(), outputs);
        let s: f64 = match self {
            LossKind::Squared => z.iter().zip(y).map(|(p, t)| 0.5 * (p - t) * (p - t)).sum(),
            LossKind::Logistic => z.iter().zip(y).map(|(p, t)| softplus(-t * p)).sum(),
            LossKind::CrossEntropy => {
                let ni = n as usize;
                (0..ni)
                    .map(|j| {
                        let row = |k: usize| z[k * ni + j];
                        let lse = log_sum_exp((0..outputs).map(row));
                        lse - (0..outputs).map(|k| row(k) * y[k * ni + j]).sum::<f64>()
                    })
                    .sum()
            }
        };
        s / n
    }

    /// Gradient of `h` in `z`, written to `out`.
    pub fn grad(self, z: &[f64], y: &[f64], outputs: usize, out: &mut [f64]) {
        let n = samples(y.len(), outputs);
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
            LossKind::CrossEntropy => {
                let ni = n as usize;
                for j in 0..ni {
                    let lse = log_sum_exp((0..outputs).map(|k| z[k * ni + j]));
                    for k in 0..outputs {
                        let i = k * ni + j;
                        out[i] = ((z[i] - lse).exp() - y[i]) / n;
                    }
                }
            }
        }
    }

    /// Value and gradient in one pass.
    pub fn value_grad(self, z: &[f64], y: &[f64], outputs: usize, out: &mut [f64]) -> f64 {
        self.grad(z, y, outputs, out);
        self.value(z, y, outputs)
    }

    /// `h*(theta)`, the convex conjugate of `h`, for the dual bound; `+inf` outside its domain.
    pub fn conjugate(self, theta: &[f64], y: &[f64], outputs: usize) -> f64 {
        let n = samples(y.len(), outputs);
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
            // Per sample, loss*(s) = sum_k q_k log q_k with q = s + y on the simplex (the
            // negative entropy of the predicted distribution at the gradient).
            LossKind::CrossEntropy => {
                let ni = n as usize;
                let mut s = 0.0;
                for j in 0..ni {
                    let mut total = 0.0;
                    for k in 0..outputs {
                        let i = k * ni + j;
                        let q = n * theta[i] + y[i];
                        if q < -1e-12 {
                            return f64::INFINITY;
                        }
                        total += q;
                        s += xlogx(q.max(0.0));
                    }
                    if (total - 1.0).abs() > 1e-9 {
                        return f64::INFINITY;
                    }
                }
                s / n
            }
        }
    }

    /// Curvature bound of `h` in `z` (Lipschitz constant of its gradient) for `samples` samples.
    pub fn curvature(self, samples: usize) -> f64 {
        let n = samples.max(1) as f64;
        match self {
            LossKind::Squared => 1.0 / n,
            LossKind::Logistic => 0.25 / n,
            // The softmax Jacobian diag(p) - p p^T has norm at most 1/2.
            LossKind::CrossEntropy => 0.5 / n,
        }
    }

    /// Checks that the targets fit the loss: an `n x outputs` matrix of finite values; ±1 for
    /// logistic; one-hot rows (one entry 1, the rest 0) and `outputs >= 2` for cross-entropy.
    pub fn check_targets(self, y: &[f64], outputs: usize) -> crate::Result<()> {
        if outputs == 0 || y.len() % outputs != 0 {
            return Err(crate::CvxnnError::Shape(format!(
                "{} target values do not form rows of {outputs} outputs",
                y.len()
            )));
        }
        if let Some((j, v)) = y.iter().enumerate().find(|(_, v)| !v.is_finite()) {
            return Err(crate::CvxnnError::arg(
                "y",
                format!("target {j} is {v}; targets must be finite"),
            ));
        }
        match self {
            LossKind::Squared => {}
            LossKind::Logistic => {
                if let Some((j, v)) = y.iter().enumerate().find(|(_, &v)| v != 1.0 && v != -1.0) {
                    return Err(crate::CvxnnError::arg(
                        "loss",
                        format!("logistic loss needs labels -1/+1, target {j} is {v}"),
                    ));
                }
            }
            LossKind::CrossEntropy => {
                if outputs < 2 {
                    return Err(crate::CvxnnError::arg(
                        "loss",
                        "cross-entropy needs at least 2 outputs (classes); use logistic for one",
                    ));
                }
                let n = y.len() / outputs;
                for j in 0..n {
                    let row: Vec<f64> = (0..outputs).map(|k| y[k * n + j]).collect();
                    let ones = row.iter().filter(|&&v| v == 1.0).count();
                    if ones != 1 || row.iter().any(|&v| v != 0.0 && v != 1.0) {
                        return Err(crate::CvxnnError::arg(
                            "loss",
                            format!("cross-entropy needs one-hot targets; sample {j} has {row:?}"),
                        ));
                    }
                }
            }
        }
        Ok(())
    }
}

/// `log(sum exp(a_k))`, stable (shifted by the largest term).
pub fn log_sum_exp(a: impl Iterator<Item = f64> + Clone) -> f64 {
    let m = a.clone().fold(f64::NEG_INFINITY, f64::max);
    if !m.is_finite() {
        return m;
    }
    m + a.map(|v| (v - m).exp()).sum::<f64>().ln()
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

    fn fd_check(loss: LossKind, y: &[f64], outputs: usize) {
        let z = [0.3, -1.2, 2.0, 0.0];
        let mut g = [0.0; 4];
        loss.grad(&z, y, outputs, &mut g);
        for k in 0..4 {
            let mut zp = z;
            zp[k] += 1e-6;
            let mut zm = z;
            zm[k] -= 1e-6;
            let fd = (loss.value(&zp, y, outputs) - loss.value(&zm, y, outputs)) / 2e-6;
            assert!((fd - g[k]).abs() < 1e-7, "{loss:?} {k}: {fd} vs {}", g[k]);
        }
    }

    /// Two samples, two classes: sample 0 is class 1, sample 1 is class 0 (column-major).
    const ONE_HOT: [f64; 4] = [0.0, 1.0, 1.0, 0.0];

    #[test]
    fn gradients_match_finite_differences() {
        fd_check(LossKind::Squared, &[1.0, 0.5, -2.0, 3.0], 1);
        fd_check(LossKind::Squared, &[1.0, 0.5, -2.0, 3.0], 2);
        fd_check(LossKind::Logistic, &[1.0, -1.0, -1.0, 1.0], 1);
        fd_check(LossKind::CrossEntropy, &ONE_HOT, 2);
    }

    #[test]
    fn fenchel_young_is_tight_at_the_gradient() {
        // h(z) + h*(grad h(z)) = z . grad h(z), and >= for any other theta.
        for (loss, y, c) in [
            (LossKind::Squared, [1.0, 0.5, -2.0, 3.0], 1),
            (LossKind::Squared, [1.0, 0.5, -2.0, 3.0], 2),
            (LossKind::Logistic, [1.0, -1.0, -1.0, 1.0], 1),
            (LossKind::CrossEntropy, ONE_HOT, 2),
        ] {
            let z = [0.3, -1.2, 2.0, 0.0];
            let mut g = [0.0; 4];
            loss.grad(&z, &y, c, &mut g);
            let lhs = loss.value(&z, &y, c) + loss.conjugate(&g, &y, c);
            let rhs: f64 = z.iter().zip(&g).map(|(a, b)| a * b).sum();
            assert!((lhs - rhs).abs() < 1e-12, "{loss:?}: {lhs} vs {rhs}");
            // The dual bound rescales theta: it must stay in the conjugate's domain.
            let other: Vec<f64> = g.iter().map(|v| v * 0.7).collect();
            let h_star = loss.conjugate(&other, &y, c);
            assert!(h_star.is_finite(), "{loss:?}");
            let lhs2 = loss.value(&z, &y, c) + h_star;
            let rhs2: f64 = z.iter().zip(&other).map(|(a, b)| a * b).sum();
            assert!(lhs2 >= rhs2 - 1e-12);
        }
    }

    #[test]
    fn cross_entropy_values() {
        // Equal scores: log 2 per sample.
        let v = LossKind::CrossEntropy.value(&[0.0; 4], &ONE_HOT, 2);
        assert!((v - 2f64.ln()).abs() < 1e-15);
        // Off the simplex (rows of theta must sum to zero): +inf.
        assert_eq!(
            LossKind::CrossEntropy.conjugate(&[0.1, 0.0, 0.0, 0.0], &ONE_HOT, 2),
            f64::INFINITY
        );
        // Huge scores stay finite.
        let big = LossKind::CrossEntropy.value(&[1e3, -1e3, -1e3, 1e3], &ONE_HOT, 2);
        assert!(big.is_finite() && big > 1e3);
    }

    #[test]
    fn targets_are_checked() {
        assert!(LossKind::Logistic.check_targets(&[1.0, 0.0], 1).is_err());
        assert!(LossKind::Squared
            .check_targets(&[1.0, f64::NAN], 1)
            .is_err());
        assert!(LossKind::Squared
            .check_targets(&[1.0, 0.0, 1.0], 2)
            .is_err());
        assert!(LossKind::CrossEntropy.check_targets(&ONE_HOT, 2).is_ok());
        assert!(LossKind::CrossEntropy
            .check_targets(&[1.0, 0.0, 1.0, 0.0], 2)
            .is_err());
        assert!(LossKind::CrossEntropy
            .check_targets(&[1.0, 0.0], 1)
            .is_err());
    }
}
