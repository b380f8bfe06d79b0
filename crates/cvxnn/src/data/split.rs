//! Seeded train/test splits of row indices.

use rand::seq::SliceRandom;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;

use crate::error::{CvxnnError, Result};

/// Splits the rows `0..n` into `(train, test)` index lists, each sorted ascending.
///
/// The rows are shuffled by a `ChaCha8Rng` seeded with `seed` (same `n`, fraction and seed give
/// the same split); the test part holds `round(n * test_fraction)` rows. Errors
/// ([`CvxnnError::InvalidArgument`] named `test-fraction`): a fraction that is not finite or not
/// in `[0, 1)`, or a split that leaves fewer than 2 training rows.
pub fn train_test_split(
    n: usize,
    test_fraction: f64,
    seed: u64,
) -> Result<(Vec<usize>, Vec<usize>)> {
    if !test_fraction.is_finite() || !(0.0..1.0).contains(&test_fraction) {
        return Err(CvxnnError::arg(
            "test-fraction",
            format!("must be a number in [0, 1), got {test_fraction}"),
        ));
    }
    let n_test = ((n as f64) * test_fraction).round() as usize;
    let n_test = n_test.min(n);
    let n_train = n - n_test;
    if n_train < 2 {
        return Err(CvxnnError::arg(
            "test-fraction",
            format!(
                "a test fraction of {test_fraction} of {n} samples leaves {n_train} training \
                 sample{}; at least 2 are needed",
                if n_train == 1 { "" } else { "s" }
            ),
        ));
    }
    let mut idx: Vec<usize> = (0..n).collect();
    if n_test > 0 {
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        idx.shuffle(&mut rng);
    }
    let mut test = idx.split_off(n_train);
    let mut train = idx;
    train.sort_unstable();
    test.sort_unstable();
    Ok((train, test))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_and_partition() {
        for &(n, f, n_test) in &[
            (10, 0.2, 2),
            (442, 0.2, 88),
            (7, 0.5, 4),
            (100, 0.0, 0),
            (3, 0.3, 1),
        ] {
            let (train, test) = train_test_split(n, f, 42).expect("valid split");
            assert_eq!(test.len(), n_test, "n={n} f={f}");
            assert_eq!(train.len(), n - n_test);
            assert!(train.windows(2).all(|w| w[0] < w[1]));
            assert!(test.windows(2).all(|w| w[0] < w[1]));
            let mut all: Vec<usize> = train.iter().chain(&test).copied().collect();
            all.sort_unstable();
            assert_eq!(all, (0..n).collect::<Vec<_>>());
        }
    }

    #[test]
    fn fraction_zero_keeps_everything_for_training() {
        let (train, test) = train_test_split(5, 0.0, 1).expect("valid");
        assert_eq!(train, vec![0, 1, 2, 3, 4]);
        assert!(test.is_empty());
    }

    #[test]
    fn same_seed_same_split() {
        let a = train_test_split(200, 0.25, 7).expect("valid");
        let b = train_test_split(200, 0.25, 7).expect("valid");
        assert_eq!(a, b);
        let c = train_test_split(200, 0.25, 8).expect("valid");
        assert_ne!(a.1, c.1, "different seeds should give different splits");
        // The test part is not just the last rows.
        assert_ne!(a.1, (150..200).collect::<Vec<_>>());
    }

    #[test]
    fn invalid_fractions() {
        for f in [-0.1, 1.0, 1.5, f64::NAN, f64::INFINITY, f64::NEG_INFINITY] {
            match train_test_split(10, f, 0) {
                Err(CvxnnError::InvalidArgument { name, .. }) => assert_eq!(name, "test-fraction"),
                other => panic!("fraction {f}: expected InvalidArgument, got {other:?}"),
            }
        }
    }

    #[test]
    fn too_few_training_samples() {
        for (n, f) in [(4, 0.75), (1, 0.0), (0, 0.0), (2, 0.5), (10, 0.9)] {
            match train_test_split(n, f, 0) {
                Err(CvxnnError::InvalidArgument { name, message }) => {
                    assert_eq!(name, "test-fraction");
                    assert!(message.contains("at least 2"), "{message}");
                }
                other => panic!("n={n} f={f}: expected InvalidArgument, got {other:?}"),
            }
        }
        assert!(train_test_split(2, 0.0, 0).is_ok());
        assert!(train_test_split(10, 0.8, 0).is_ok());
    }
}
