//! Dual bounds and gaps (DESIGN section 1, "Dual and certificate").
//!
//! Any `theta` with `max_i ||K_i^T theta - C_i^T mu_i|| <= lambda` for some `mu_i >= 0` is dual
//! feasible, and `-h*(theta)` is then a lower bound on the program's optimum. Solvers hand us
//! `theta = grad h(z)` and the group norms of the corresponding gradient; we rescale.

use crate::loss::LossKind;

/// The dual bound `-h*(s theta)` with `s = min(1, lambda / max_group_norm)`: the largest
/// rescaling of `theta` (and of the multipliers that produced `max_group_norm`) that is feasible.
pub fn dual_bound(
    loss: LossKind,
    y: &[f64],
    theta: &[f64],
    max_group_norm: f64,
    lambda: f64,
) -> f64 {
    let s = if max_group_norm > lambda {
        lambda / max_group_norm
    } else {
        1.0
    };
    let scaled: Vec<f64> = theta.iter().map(|t| s * t).collect();
    -loss.conjugate(&scaled, y)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn zero_theta_gives_loss_at_zero_for_squared_lower_bound() {
        // theta = 0 is always feasible: the bound is -h*(0) = 0 for squared, 0 for logistic.
        let y = [1.0, -1.0];
        assert_eq!(
            dual_bound(LossKind::Squared, &y, &[0.0, 0.0], 5.0, 1.0),
            0.0
        );
        assert_eq!(
            dual_bound(LossKind::Logistic, &y, &[0.0, 0.0], 5.0, 1.0),
            0.0
        );
    }
}
