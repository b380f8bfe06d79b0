//! Sample patterns of the second ReLU layer of the three-layer CNN (docs/theory.md,
//! "Three-layer CNN"): diagonals `D2 = diag(1[g >= 0])` over the `n` samples, where `g` is the
//! pooled output of a two-layer CNN unit. Any 0/1 pattern is a valid choice (the program's cone
//! rows make it consistent); the program is exact when every achievable pattern is present,
//! which [`all_sample_patterns`] guarantees on tiny data by listing all `2^n - 1` non-zero ones.

use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use rand_distr::{Distribution, StandardNormal};

use super::{Masks, PatternSet};
use crate::error::{CvxnnError, Result};
use crate::linalg::Matrix;

/// Largest `n` for which [`all_sample_patterns`] lists every pattern (`2^n - 1` of them).
pub const MAX_EXACT_SAMPLES: usize = 14;

/// Every non-zero 0/1 pattern over `n` samples (the all-zero one contributes nothing).
pub fn all_sample_patterns(n: usize) -> Result<Masks> {
    if n == 0 || n > MAX_EXACT_SAMPLES {
        return Err(CvxnnError::arg(
            "second-layer-patterns",
            format!(
                "exact second-layer patterns list all 2^n - 1 sign patterns of the samples; n = {n} is outside 1..={MAX_EXACT_SAMPLES} (sample them instead)"
            ),
        ));
    }
    let mut m = Masks::new(n);
    for code in 1u64..(1u64 << n) {
        m.push_words(&[code]);
    }
    Ok(m)
}

/// Up to `count` distinct non-zero patterns `1[S(u1) - S(u2) >= 0]` with
/// `S(u) = sum_k (X_k u)_+` the pooled ReLU map of the stacked patch matrix `xs` (`nK x h`, row
/// `k * n + j`) and `u1, u2 ~ N(0, I_h)` (seeded): patterns a two-filter unit attains. The
/// all-ones pattern (second ReLU inactive as a non-linearity) comes first, then `extra` (for
/// example the sign pattern of binary targets), then the sampled ones.
pub fn sample_second_layer_patterns(
    xs: &Matrix,
    patches: usize,
    count: usize,
    seed: u64,
    extra: &[Vec<bool>],
) -> Result<Masks> {
    if count == 0 {
        return Err(CvxnnError::arg(
            "second-layer-patterns",
            "must be at least 1",
        ));
    }
    if patches == 0 || xs.nrows() % patches != 0 {
        return Err(CvxnnError::Shape(format!(
            "{} patch rows are not a multiple of {patches} patches",
            xs.nrows()
        )));
    }
    let (n, h) = (xs.nrows() / patches, xs.ncols());
    let mut set = PatternSet::new(n);
    set.insert_bools(&vec![true; n]);
    for e in extra
        .iter()
        .filter(|e| e.len() == n && e.iter().any(|&a| a))
    {
        if set.len() < count {
            set.insert_bools(e);
        }
    }
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let pooled = |u: &[f64]| -> Vec<f64> {
        let mut s = vec![0.0; n];
        for r in 0..xs.nrows() {
            let v: f64 = (0..h).map(|c| xs.get(r, c) * u[c]).sum();
            s[r % n] += v.max(0.0);
        }
        s
    };
    let budget = count.saturating_mul(20).max(200);
    let mut drawn = 0;
    while set.len() < count && drawn < budget {
        drawn += 1;
        let mut draw = || -> Vec<f64> { (0..h).map(|_| StandardNormal.sample(&mut rng)).collect() };
        let (u1, u2) = (draw(), draw());
        let (a, b) = (pooled(&u1), pooled(&u2));
        let active: Vec<bool> = a.iter().zip(&b).map(|(p, q)| p - q >= 0.0).collect();
        if active.iter().any(|&v| v) {
            set.insert_bools(&active);
        }
    }
    Ok(set.into_masks())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn all_patterns_are_listed_once() {
        let m = all_sample_patterns(4).unwrap();
        assert_eq!(m.len(), 15);
        let mut seen = std::collections::HashSet::new();
        for i in 0..m.len() {
            assert!(m.count_active(i) > 0);
            assert!(seen.insert(m.to_bools(i)));
        }
        assert!(all_sample_patterns(MAX_EXACT_SAMPLES + 1).is_err());
        assert!(all_sample_patterns(0).is_err());
    }

    #[test]
    fn sampled_patterns_are_seeded_distinct_and_start_with_all_ones() {
        let (n, k, h) = (9, 3, 2);
        let xs = Matrix::from_fn(n * k, h, |i, j| ((i * 31 + j * 17) % 23) as f64 / 7.0 - 1.5);
        let a = sample_second_layer_patterns(&xs, k, 6, 4, &[]).unwrap();
        let b = sample_second_layer_patterns(&xs, k, 6, 4, &[]).unwrap();
        assert_eq!(a, b);
        assert!(a.len() > 1 && a.len() <= 6);
        assert_eq!(a.count_active(0), n);
        assert!(sample_second_layer_patterns(&xs, k, 0, 4, &[]).is_err());
    }
}
