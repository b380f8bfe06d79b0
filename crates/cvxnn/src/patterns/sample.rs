//! Seeded Gaussian gate sampling: `g ~ N(0, I_d)`, pattern `1[X g >= 0]`, duplicates dropped.

use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use rand_distr::{Distribution, StandardNormal};

use super::{pack, Masks, PatternSet};
use crate::error::{CvxnnError, Result};
use crate::linalg::Matrix;

/// Distinct activation patterns together with one gate vector that realizes each.
#[derive(Clone, Debug)]
pub struct GatedPatterns {
    /// `d x P` gates, column `i` realizing pattern `i`.
    pub gates: Matrix,
    /// The `P` distinct patterns.
    pub masks: Masks,
}

/// The patterns of the given gates (`d x G`, one gate per column), keeping the first gate of each
/// distinct pattern and dropping the all-inactive pattern (it contributes nothing).
pub fn patterns_from_gates(x: &Matrix, gates: &Matrix) -> Result<GatedPatterns> {
    if gates.nrows() != x.ncols() {
        return Err(CvxnnError::Shape(format!(
            "gates have {} values each but the preprocessed data has {} columns",
            gates.nrows(),
            x.ncols()
        )));
    }
    let mut set = PatternSet::new(x.nrows());
    let mut kept = Vec::new();
    add_patterns(x, gates, &mut set, &mut kept, usize::MAX);
    Ok(GatedPatterns {
        gates: gates_subset(gates, &kept),
        masks: set.into_masks(),
    })
}

/// Samples Gaussian gates (seeded) until `count` distinct non-empty patterns are found, or until
/// `20 * count` gates produced no more (small arrangements have fewer patterns than asked for).
pub fn sample_patterns(x: &Matrix, count: usize, seed: u64) -> Result<GatedPatterns> {
    if count == 0 {
        return Err(CvxnnError::arg("patterns", "must be at least 1"));
    }
    let d = x.ncols();
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let mut set = PatternSet::new(x.nrows());
    let mut all_gates: Vec<f64> = Vec::new();
    let mut kept = Vec::new();
    let mut drawn = 0usize;
    let budget = count.saturating_mul(20).max(1000);
    while set.len() < count && drawn < budget {
        let batch = (count - set.len()).max(16).min(budget - drawn);
        let mut g = Matrix::zeros(d, batch);
        for v in g.as_mut_slice() {
            *v = StandardNormal.sample(&mut rng);
        }
        let offset = all_gates.len() / d.max(1);
        let mut new_kept = Vec::new();
        add_patterns(x, &g, &mut set, &mut new_kept, count);
        kept.extend(new_kept.into_iter().map(|k| k + offset));
        all_gates.extend_from_slice(g.as_slice());
        drawn += batch;
    }
    let gates = Matrix::from_col_major(d, all_gates.len() / d.max(1), all_gates)
        .ok_or_else(|| CvxnnError::Shape("internal gate buffer".into()))?;
    Ok(GatedPatterns {
        gates: gates_subset(&gates, &kept),
        masks: set.into_masks(),
    })
}

fn add_patterns(
    x: &Matrix,
    gates: &Matrix,
    set: &mut PatternSet,
    kept: &mut Vec<usize>,
    limit: usize,
) {
    let xg = x.matmul(gates);
    let mut active = vec![false; x.nrows()];
    for k in 0..gates.ncols() {
        if set.len() >= limit {
            break;
        }
        for (a, &v) in active.iter_mut().zip(xg.col(k)) {
            *a = v >= 0.0;
        }
        if !active.iter().any(|&a| a) {
            continue;
        }
        if set.insert_words(pack(&active)) {
            kept.push(k);
        }
    }
}

fn gates_subset(gates: &Matrix, keep: &[usize]) -> Matrix {
    let mut out = Matrix::zeros(gates.nrows(), keep.len());
    for (c, &k) in keep.iter().enumerate() {
        out.col_mut(c).copy_from_slice(gates.col(k));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn toy() -> Matrix {
        let rows: Vec<Vec<f64>> = (0..6)
            .map(|i| vec![(i as f64 - 2.5), ((i * 7 % 5) as f64) - 2.0, 1.0])
            .collect();
        Matrix::from_rows(&rows, 3).unwrap()
    }

    #[test]
    fn sampled_patterns_are_distinct_seeded_and_realized_by_their_gates() {
        let x = toy();
        let a = sample_patterns(&x, 10, 7).unwrap();
        let b = sample_patterns(&x, 10, 7).unwrap();
        assert_eq!(a.masks, b.masks);
        assert_eq!(a.gates, b.gates);
        assert_eq!(a.masks.len(), a.gates.ncols());
        let xg = x.matmul(&a.gates);
        for i in 0..a.masks.len() {
            for j in 0..x.nrows() {
                assert_eq!(a.masks.get(j, i), xg.get(j, i) >= 0.0);
            }
            for k in 0..i {
                assert_ne!(a.masks.pattern_words(i), a.masks.pattern_words(k));
            }
        }
    }

    #[test]
    fn small_arrangement_stops_when_exhausted() {
        // n = 6 points in R^3 in general position: at most 2 * (1 + 5 + 10) = 32 patterns.
        let x = toy();
        let s = sample_patterns(&x, 1000, 1).unwrap();
        assert!(s.masks.len() <= 32, "{}", s.masks.len());
        assert!(s.masks.len() >= 20);
    }

    #[test]
    fn gates_with_wrong_width_are_rejected() {
        let x = toy();
        let g = Matrix::zeros(2, 4);
        assert!(matches!(
            patterns_from_gates(&x, &g),
            Err(CvxnnError::Shape(_))
        ));
    }
}
