//! Column standardization: `(x - mean) / scale`, fitted on training data and stored in models.

use serde::{Deserialize, Serialize};

use crate::error::{CvxnnError, Result};
use crate::linalg::Matrix;

/// Per-column affine map `x -> (x - mean) / scale`.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
pub struct Standardizer {
    /// Column means of the fitting data.
    pub mean: Vec<f64>,
    /// Column population standard deviations of the fitting data (1.0 for constant columns).
    pub scale: Vec<f64>,
}

impl Standardizer {
    /// Fits on the columns of `x`: mean and population standard deviation (divided by `n`). A
    /// constant column gets scale 1.0 (and its exact value as mean), so it maps to 0. With no rows,
    /// every column gets mean 0 and scale 1.
    pub fn fit(x: &Matrix) -> Standardizer {
        let n = x.nrows();
        let p = x.ncols();
        let mut mean = Vec::with_capacity(p);
        let mut scale = Vec::with_capacity(p);
        for j in 0..p {
            let c = x.col(j);
            let Some(&first) = c.first() else {
                mean.push(0.0);
                scale.push(1.0);
                continue;
            };
            if c.iter().all(|&v| v == first) {
                mean.push(first);
                scale.push(1.0);
                continue;
            }
            let m = c.iter().sum::<f64>() / n as f64;
            let var = c.iter().map(|&v| (v - m) * (v - m)).sum::<f64>() / n as f64;
            let s = var.sqrt();
            mean.push(m);
            scale.push(if s > 0.0 && s.is_finite() { s } else { 1.0 });
        }
        Standardizer { mean, scale }
    }

    /// The map that leaves `p` columns unchanged (mean 0, scale 1).
    pub fn identity(p: usize) -> Standardizer {
        Standardizer {
            mean: vec![0.0; p],
            scale: vec![1.0; p],
        }
    }

    /// Number of columns it applies to.
    pub fn ncols(&self) -> usize {
        self.mean.len()
    }

    /// `(x - mean) / scale`, column by column. A [`CvxnnError::Shape`] error when `x` does not have
    /// the fitted number of columns (or the standardizer itself is inconsistent).
    pub fn transform(&self, x: &Matrix) -> Result<Matrix> {
        if self.mean.len() != self.scale.len() {
            return Err(CvxnnError::Shape(format!(
                "standardizer has {} means but {} scales",
                self.mean.len(),
                self.scale.len()
            )));
        }
        if x.ncols() != self.mean.len() {
            return Err(CvxnnError::Shape(format!(
                "standardizer was fitted on {} feature columns, the data has {}",
                self.mean.len(),
                x.ncols()
            )));
        }
        let mut out = x.clone();
        for (j, (&m, &s)) in self.mean.iter().zip(&self.scale).enumerate() {
            for v in out.col_mut(j) {
                *v = (*v - m) / s;
            }
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn m(rows: &[Vec<f64>]) -> Matrix {
        let p = rows.first().map_or(0, Vec::len);
        Matrix::from_rows(rows, p).expect("rectangular")
    }

    #[test]
    fn transform_gives_mean_zero_std_one() {
        let x = m(&[
            vec![1.0, 100.0, -3.0],
            vec![2.0, 250.0, 7.5],
            vec![4.0, 175.0, 0.25],
            vec![8.0, 90.0, 1.0],
            vec![9.5, 333.0, 2.0],
        ]);
        let s = Standardizer::fit(&x);
        let z = s.transform(&x).expect("same shape");
        for j in 0..3 {
            let c = z.col(j);
            let n = c.len() as f64;
            let mean = c.iter().sum::<f64>() / n;
            let var = c.iter().map(|v| (v - mean) * (v - mean)).sum::<f64>() / n;
            assert!(mean.abs() < 1e-12, "col {j} mean {mean}");
            assert!(
                (var.sqrt() - 1.0).abs() < 1e-12,
                "col {j} std {}",
                var.sqrt()
            );
        }
        // Population std of [1, 2, 4, 8, 9.5]: mean 4.9.
        let v0 = [1.0f64, 2.0, 4.0, 8.0, 9.5];
        let pop = (v0.iter().map(|v| (v - 4.9) * (v - 4.9)).sum::<f64>() / 5.0).sqrt();
        assert!((s.mean[0] - 4.9).abs() < 1e-12);
        assert!((s.scale[0] - pop).abs() < 1e-12);
    }

    #[test]
    fn constant_column_maps_to_zero() {
        let x = m(&[vec![0.1, 1.0], vec![0.1, 2.0], vec![0.1, 3.0]]);
        let s = Standardizer::fit(&x);
        assert_eq!(s.scale[0], 1.0);
        assert_eq!(s.mean[0], 0.1);
        let z = s.transform(&x).expect("same shape");
        assert_eq!(z.col(0), &[0.0, 0.0, 0.0]);
        // New data in a constant column is only shifted.
        let z = s.transform(&m(&[vec![1.1, 2.0]])).expect("same width");
        assert!((z.get(0, 0) - 1.0).abs() < 1e-12);
        assert_eq!(z.get(0, 1), 0.0);
    }

    #[test]
    fn identity_and_no_rows() {
        let x = m(&[vec![3.0, -4.0]]);
        assert_eq!(
            Standardizer::identity(2).transform(&x).ok(),
            Some(x.clone())
        );
        let s = Standardizer::fit(&Matrix::zeros(0, 3));
        assert_eq!(s, Standardizer::identity(3));
        assert_eq!(s.ncols(), 3);
    }

    #[test]
    fn shape_mismatch_is_error() {
        let s = Standardizer::identity(3);
        assert!(matches!(
            s.transform(&Matrix::zeros(4, 2)),
            Err(CvxnnError::Shape(_))
        ));
        let bad = Standardizer {
            mean: vec![0.0; 2],
            scale: vec![1.0; 3],
        };
        assert!(matches!(
            bad.transform(&Matrix::zeros(4, 2)),
            Err(CvxnnError::Shape(_))
        ));
    }

    #[test]
    fn serde_roundtrip() {
        let s = Standardizer {
            mean: vec![1.5, -2.0],
            scale: vec![0.5, 3.0],
        };
        let j = serde_json::to_string(&s).unwrap_or_default();
        assert_eq!(serde_json::from_str::<Standardizer>(&j).ok(), Some(s));
    }
}
