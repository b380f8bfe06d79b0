//! The dual pattern oracle (DESIGN section 1, "Dual and certificate"; column generation).
//!
//! At a solution over some patterns with dual candidate `theta`, a missing pattern can lower the
//! objective exactly when `max_{||u|| <= 1} |theta^T (X u)_+| > lambda`. The maximum is over a
//! non-concave function, so this is a search, not a proof: many starts of a fixed-point ascent,
//! batched through GEMM. For a start `u` with pattern `D = D(u)`, `theta^T (X u)_+ = c^T u` with
//! `c = X^T D theta`, and `u <- c / ||c||` is the best step on the sphere while the pattern holds
//! (a power-iteration-like update). Every value reported is evaluated at a real unit vector `u`,
//! so it is a valid lower estimate of the maximum, and `u` is a gate that realizes its pattern.

use std::collections::HashMap;

use rand::{RngExt, SeedableRng};
use rand_chacha::ChaCha8Rng;
use rand_distr::{Distribution, StandardNormal};
use serde::{Deserialize, Serialize};

use crate::error::{CvxnnError, Result};
use crate::linalg::{norm2, Matrix};
use crate::patterns::pack;

/// How hard the oracle searches. Defaults: 256 random directions, 256 data rows, 40 ascent
/// steps, seed 0 (each start is used with both signs of `theta`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct OracleSettings {
    /// Gaussian random starting directions.
    pub random_starts: usize,
    /// Starts taken from (seeded, sampled) rows of `X` and differences of two rows.
    pub data_starts: usize,
    /// Fixed-point ascent steps per start.
    pub iterations: usize,
    /// Seed of the random starts.
    pub seed: u64,
}

impl Default for OracleSettings {
    fn default() -> Self {
        OracleSettings {
            random_starts: 256,
            data_starts: 256,
            iterations: 40,
            seed: 0,
        }
    }
}

/// One direction the oracle found.
#[derive(Clone, Debug, PartialEq)]
pub struct OracleCandidate {
    /// Unit gate vector `u`; its pattern is `1[X u >= 0]`.
    pub gate: Vec<f64>,
    /// `|theta^T (X u)_+|` at `gate`.
    pub value: f64,
    /// Packed pattern of `gate` (see [`crate::patterns::pack`]).
    pub pattern: Vec<u64>,
}

/// What a search found: distinct patterns by decreasing value.
#[derive(Clone, Debug, PartialEq)]
pub struct OracleResult {
    /// Best direction per distinct pattern, sorted by decreasing `value`.
    pub candidates: Vec<OracleCandidate>,
    /// Largest value found (0 when `theta = 0`).
    pub max_value: f64,
    /// Number of starts (both signs counted).
    pub starts: usize,
    /// Ascent steps run.
    pub iterations: usize,
}

/// Searches for unit `u` maximizing `|theta^T (X u)_+|` from random directions, data rows, row
/// differences and the columns of `extra_starts` (`d x k`, e.g. current neurons), each with both
/// signs. Returns the best direction for each distinct pattern reached.
pub fn search_patterns(
    x: &Matrix,
    theta: &[f64],
    extra_starts: Option<&Matrix>,
    settings: &OracleSettings,
) -> Result<OracleResult> {
    let (n, d) = (x.nrows(), x.ncols());
    if theta.len() != n {
        return Err(CvxnnError::Shape(format!(
            "oracle: {} dual values for {n} samples",
            theta.len()
        )));
    }
    if let Some(e) = extra_starts {
        if e.nrows() != d {
            return Err(CvxnnError::Shape(format!(
                "oracle: starts have {} entries, data has {d} columns",
                e.nrows()
            )));
        }
    }
    let starts = initial_directions(x, extra_starts, settings);
    let k = starts.ncols();
    // Column c < k ascends on +theta, column k + c on -theta, from the same direction.
    let mut u = Matrix::zeros(d, 2 * k);
    u.as_mut_slice()[..d * k].copy_from_slice(starts.as_slice());
    u.as_mut_slice()[d * k..].copy_from_slice(starts.as_slice());
    let sign = |c: usize| if c < k { 1.0 } else { -1.0 };
    let mut best_value = vec![f64::NEG_INFINITY; 2 * k];
    let mut best_u = u.clone();
    let mut r = Matrix::zeros(n, 2 * k);
    let mut steps = 0;
    for _ in 0..=settings.iterations {
        let xu = x.matmul(&u);
        let mut moved = false;
        for (c, best) in best_value.iter_mut().enumerate() {
            let s = sign(c);
            let col = xu.col(c);
            let value: f64 = s * col
                .iter()
                .zip(theta)
                .map(|(&v, &t)| if v >= 0.0 { t * v } else { 0.0 })
                .sum::<f64>();
            if value > *best {
                *best = value;
                best_u.col_mut(c).copy_from_slice(u.col(c));
                moved = true;
            }
            for ((rj, &v), &t) in r.col_mut(c).iter_mut().zip(col).zip(theta) {
                *rj = if v >= 0.0 { s * t } else { 0.0 };
            }
        }
        if !moved || steps == settings.iterations {
            break;
        }
        steps += 1;
        // u <- X^T (D(u) theta) / ||.||: the best unit step while the pattern holds.
        let g = x.t_matmul(&r);
        for c in 0..2 * k {
            let gc = g.col(c);
            let nrm = norm2(gc);
            if nrm > 0.0 {
                for (ui, &gi) in u.col_mut(c).iter_mut().zip(gc) {
                    *ui = gi / nrm;
                }
            }
        }
    }
    let xb = x.matmul(&best_u);
    let mut by_pattern: HashMap<Vec<u64>, usize> = HashMap::new();
    let mut candidates: Vec<OracleCandidate> = Vec::new();
    let mut active = vec![false; n];
    for (c, &value) in best_value.iter().enumerate() {
        // Non-positive (or NaN) values price nothing.
        if value.is_nan() || value <= 0.0 {
            continue;
        }
        for (a, &v) in active.iter_mut().zip(xb.col(c)) {
            *a = v >= 0.0;
        }
        let pattern = pack(&active);
        match by_pattern.get(&pattern) {
            Some(&i) if candidates[i].value >= value => {}
            Some(&i) => {
                candidates[i].value = value;
                candidates[i].gate = best_u.col(c).to_vec();
            }
            None => {
                by_pattern.insert(pattern.clone(), candidates.len());
                candidates.push(OracleCandidate {
                    gate: best_u.col(c).to_vec(),
                    value,
                    pattern,
                });
            }
        }
    }
    // Stable order: by value, ties by pattern bits, so results do not depend on hash order.
    candidates.sort_by(|a, b| {
        b.value
            .total_cmp(&a.value)
            .then_with(|| a.pattern.cmp(&b.pattern))
    });
    let max_value = candidates.first().map_or(0.0, |c| c.value);
    Ok(OracleResult {
        candidates,
        max_value,
        starts: 2 * k,
        iterations: steps,
    })
}

/// Unit starting directions (`d x k`): Gaussian, data rows, differences of rows, extra starts.
fn initial_directions(x: &Matrix, extra: Option<&Matrix>, settings: &OracleSettings) -> Matrix {
    let (n, d) = (x.nrows(), x.ncols());
    let mut rng = ChaCha8Rng::seed_from_u64(settings.seed);
    let mut cols: Vec<f64> = Vec::new();
    let push = |v: &mut Vec<f64>, cols: &mut Vec<f64>| {
        let nrm = norm2(v);
        if nrm > 0.0 && nrm.is_finite() {
            cols.extend(v.iter().map(|a| a / nrm));
        }
    };
    for _ in 0..settings.random_starts {
        let mut v: Vec<f64> = (0..d).map(|_| StandardNormal.sample(&mut rng)).collect();
        push(&mut v, &mut cols);
    }
    if n > 0 {
        for s in 0..settings.data_starts {
            let a = rng.random_range(0..n);
            let mut v = x.row(a);
            if s % 2 == 1 {
                // A row difference: a hyperplane separating two samples.
                let b = rng.random_range(0..n);
                for (vi, bi) in v.iter_mut().zip(x.row(b)) {
                    *vi -= bi;
                }
            }
            push(&mut v, &mut cols);
        }
    }
    if let Some(e) = extra {
        for c in 0..e.ncols() {
            let mut v = e.col(c).to_vec();
            push(&mut v, &mut cols);
        }
    }
    let k = cols.len() / d.max(1);
    Matrix::from_col_major(d, k, cols).unwrap_or_else(|| Matrix::zeros(d, 0))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn value_is_evaluated_at_the_returned_gate() {
        let rows: Vec<Vec<f64>> = (0..20)
            .map(|i| {
                let t = i as f64 / 19.0 * 2.0 - 1.0;
                vec![t, (3.0 * t).sin(), 1.0]
            })
            .collect();
        let x = Matrix::from_rows(&rows, 3).unwrap();
        let theta: Vec<f64> = (0..20).map(|i| ((i * 7 % 5) as f64) - 2.0).collect();
        let r = search_patterns(&x, &theta, None, &OracleSettings::default()).unwrap();
        assert!(!r.candidates.is_empty());
        for c in &r.candidates {
            assert!((norm2(&c.gate) - 1.0).abs() < 1e-12);
            let xu = x.matvec(&c.gate);
            let v: f64 = xu.iter().zip(&theta).map(|(a, t)| a.max(0.0) * t).sum();
            assert!((v.abs() - c.value).abs() <= 1e-12 * (1.0 + c.value));
            let active: Vec<bool> = xu.iter().map(|&a| a >= 0.0).collect();
            assert_eq!(pack(&active), c.pattern);
        }
        assert!(r.candidates.windows(2).all(|w| w[0].value >= w[1].value));
    }

    #[test]
    fn wrong_shapes_are_errors() {
        let x = Matrix::zeros(4, 2);
        assert!(search_patterns(&x, &[0.0; 3], None, &OracleSettings::default()).is_err());
        let e = Matrix::zeros(3, 1);
        assert!(search_patterns(&x, &[0.0; 4], Some(&e), &OracleSettings::default()).is_err());
    }
}
