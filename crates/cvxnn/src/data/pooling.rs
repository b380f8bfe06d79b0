//! Local pooling windows over a convolution's output map (DESIGN section 2, "Linear pooling in
//! general" and "Max pooling"): PyTorch's `AvgPool2d(S)` / `MaxPool2d(S)` (kernel `S`, stride
//! `S`, no padding, floor mode), or the 1-D versions. Window `w` of a 2-D map with `ph x pw`
//! windows is `(w / pw, w % pw)`, row-major: the order `Flatten` gives the pooled map of one
//! channel, so the Linear weight of channel `j`, window `w` sits at `j * a + w`.

use serde::{Deserialize, Serialize};

use super::ConvShape;
use crate::error::{CvxnnError, Result};
use crate::linalg::Matrix;
use crate::patterns::Masks;

/// Average or max pooling.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum PoolKind {
    /// Mean over the window.
    Avg,
    /// Maximum over the window.
    Max,
}

impl std::fmt::Display for PoolKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            PoolKind::Avg => "avg",
            PoolKind::Max => "max",
        })
    }
}

/// A pooling layer: kind and window size `S` (stride `S`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Pooling {
    /// Average or max.
    pub kind: PoolKind,
    /// Window size (and stride) in every spatial dimension.
    pub size: usize,
}

impl Pooling {
    /// Parses `avg:S` or `max:S` (the CLI's `--pool`); errors name `pool`.
    pub fn parse(s: &str) -> Result<Pooling> {
        let bad = || {
            CvxnnError::arg(
                "pool",
                format!("`{s}` is not avg:S or max:S with a window size S >= 1"),
            )
        };
        let (kind, size) = s.split_once(':').ok_or_else(bad)?;
        let kind = match kind.trim() {
            "avg" => PoolKind::Avg,
            "max" => PoolKind::Max,
            _ => return Err(bad()),
        };
        let size: usize = size.trim().parse().map_err(|_| bad())?;
        if size == 0 {
            return Err(bad());
        }
        Ok(Pooling { kind, size })
    }

    /// Pooled map size per spatial dimension (`floor(o / S)`), `Err` naming `pool` when a window
    /// does not fit the convolution's output.
    pub fn output_size(&self, shape: &ConvShape) -> Result<Vec<usize>> {
        let out = shape.output_size();
        if out.iter().any(|&o| o < self.size) {
            return Err(CvxnnError::arg(
                "pool",
                format!(
                    "window {} does not fit the convolution output {:?} ({})",
                    self.size,
                    out,
                    shape.describe()
                ),
            ));
        }
        Ok(out.iter().map(|&o| o / self.size).collect())
    }

    /// The windows: for each window (row-major over the pooled map), the indices of its patches
    /// (row-major over the convolution output, the order of [`super::patches`]). Positions past
    /// the last full window are in no window (PyTorch's floor mode drops them).
    pub fn windows(&self, shape: &ConvShape) -> Result<Vec<Vec<usize>>> {
        let pooled = self.output_size(shape)?;
        let out = shape.output_size();
        let s = self.size;
        Ok(match (pooled.as_slice(), out.as_slice()) {
            ([pl], _) => (0..*pl).map(|w| (w * s..(w + 1) * s).collect()).collect(),
            ([ph, pw], [_, ow]) => (0..ph * pw)
                .map(|w| {
                    let (wi, wj) = (w / pw, w % pw);
                    (0..s * s)
                        .map(|t| (wi * s + t / s) * ow + wj * s + t % s)
                        .collect()
                })
                .collect(),
            _ => return Err(CvxnnError::arg("pool", "needs a 1-D or 2-D input")),
        })
    }

    /// The pooling as text, `avg:2`.
    pub fn describe(&self) -> String {
        format!("{}:{}", self.kind, self.size)
    }
}

/// Rows of the stacked patch matrix (`nK` rows, row `k * n + j`) that belong to `window`, in the
/// order (patch of the window, sample): row `t * n + j` of the result is patch `window[t]` of
/// sample `j`.
pub fn window_rows(window: &[usize], n: usize) -> Vec<usize> {
    window
        .iter()
        .flat_map(|&k| (0..n).map(move |j| k * n + j))
        .collect()
}

/// The per-window patch matrices `X_w` (`|w| n x h`) of a stacked patch matrix.
pub fn window_patches(xs: &Matrix, windows: &[Vec<usize>], n: usize) -> Vec<Matrix> {
    windows
        .iter()
        .map(|w| xs.select_rows(&window_rows(w, n)))
        .collect()
}

/// Patterns over the `nK` patch rows restricted to each window's rows (same pattern order, so
/// pattern `i` of every window comes from the same gate).
pub fn window_masks(masks: &Masks, windows: &[Vec<usize>], n: usize) -> Vec<Masks> {
    windows
        .iter()
        .map(|w| {
            let rows = window_rows(w, n);
            let mut out = Masks::new(rows.len());
            for i in 0..masks.len() {
                let bits: Vec<bool> = rows.iter().map(|&r| masks.get(r, i)).collect();
                out.push_bools(&bits);
            }
            out
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn windows_follow_pytorch_floor_mode() {
        // 5x5 input, 2x2 kernel -> 4x4 map; pool 3 -> one window (floor), 2 -> four.
        let shape = ConvShape::new(1, vec![5, 5], vec![2, 2], 1, 0).unwrap();
        let p = Pooling::parse("avg:2").unwrap();
        let w = p.windows(&shape).unwrap();
        assert_eq!(w.len(), 4);
        assert_eq!(w[0], vec![0, 1, 4, 5]);
        assert_eq!(w[1], vec![2, 3, 6, 7]);
        assert_eq!(w[3], vec![10, 11, 14, 15]);
        let p3 = Pooling::parse("max:3").unwrap();
        assert_eq!(
            p3.windows(&shape).unwrap(),
            vec![vec![0, 1, 2, 4, 5, 6, 8, 9, 10]]
        );
        // 1-D: length 6, kernel 2 -> 5 positions; pool 2 -> windows {0,1}, {2,3}.
        let s1 = ConvShape::new(1, vec![6], vec![2], 1, 0).unwrap();
        assert_eq!(p.windows(&s1).unwrap(), vec![vec![0, 1], vec![2, 3]]);
        assert!(Pooling::parse("max:9").unwrap().windows(&s1).is_err());
        for bad in ["avg", "avg:0", "sum:2", "max:x"] {
            assert!(Pooling::parse(bad).is_err(), "{bad}");
        }
    }
}
