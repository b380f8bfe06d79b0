//! The search side of a working set of cone rows ([`WorkingSetMap`], DESIGN section 2): which
//! rows of a patch matrix's full program join the set. Shared by the CNN ReLU programs whose
//! constraints are `(2 D_ik - I) X_k u >= 0` over a patch matrix (sum pooling, each window of
//! average pooling). Not the three-layer program: measured on digits (bench/RESULTS.md), its
//! working-set solve ran 18x faster per iteration but stalled (objective 0.24 after 5,000
//! iterations, 0.20 after 20,000, where the full operator reaches 0.19 after 1,000).

use std::collections::HashSet;

use crate::linalg::Matrix;
use crate::operator::{row_classes, WorkingSetMap};
use crate::patterns::Masks;

/// Most violated rows per group one growth of the working set adds (`ROWS_PER_FEATURE * h`).
const ROWS_PER_FEATURE: usize = 4;

/// Which rows [`RowSearch::add`] adds.
#[derive(Clone, Copy, Debug)]
pub(super) enum RowChoice {
    /// Rows tight at a warm start.
    Tight,
    /// The worst rows violated beyond the relative tolerance.
    Violated(f64),
}

/// The full constraint rows of one patch matrix under its patterns (group `g` of a block of
/// `h x 2P` variables has pattern `g % P`), with the classes of identical rows.
pub(super) struct RowSearch<'a> {
    xs: &'a Matrix,
    masks: &'a Masks,
    classes: Vec<usize>,
}

impl<'a> RowSearch<'a> {
    /// The rows of `xs` (`nK x h`) under `masks`.
    pub(super) fn new(xs: &'a Matrix, masks: &'a Masks) -> Self {
        RowSearch {
            xs,
            masks,
            classes: row_classes(xs),
        }
    }

    /// A working-set map of these rows with predictions summed over the `xs.nrows() / n`
    /// patches of each of `n` samples, and an empty set.
    pub(super) fn map(&self, n: usize) -> WorkingSetMap {
        WorkingSetMap::new(self.xs, n, self.masks)
    }

    /// `X U` for `vars` holding any number of `h x 2P` blocks side by side (column-major);
    /// `None` when `vars` is not a whole number of columns.
    pub(super) fn values(&self, vars: &[f64]) -> Option<Matrix> {
        let d = self.xs.ncols();
        if vars.len() % d != 0 {
            return None;
        }
        let u = Matrix::from_col_major(d, vars.len() / d, vars.to_vec())?;
        Some(self.xs.matmul(&u))
    }

    /// Adds to `map` the rows of each non-zero column of `xu` ([`Self::values`]) that `choice`
    /// picks: those tight at it (`s_j x_j^T u <= 1e-6 max |x_j^T u|`), or those violated
    /// beyond `tol * scale` (at most [`ROWS_PER_FEATURE`] `h` per column, the worst first, one
    /// per class of identical rows). Every block's group `g` shares the working rows of `g`.
    /// Returns how many rows were new.
    pub(super) fn add(
        &self,
        map: &WorkingSetMap,
        xu: &Matrix,
        scale: f64,
        choice: RowChoice,
    ) -> usize {
        let (d, p) = (self.xs.ncols(), self.masks.len());
        let mut added = 0;
        for column in 0..xu.ncols() {
            let g = column % (2 * p);
            let i = g % p;
            let col = xu.col(column);
            let sign = |j: usize| if self.masks.get(j, i) { 1.0 } else { -1.0 };
            let signed: Vec<f64> = col.iter().enumerate().map(|(j, v)| sign(j) * v).collect();
            let picked = pick_rows(&signed, |j| self.classes[j], scale, choice, d);
            for j in picked {
                if map.add(g, self.classes[j], sign(j), &self.xs.row(j)) {
                    added += 1;
                }
            }
        }
        added
    }
}

/// The rows of one group to add, given its constraint values `values` (row `j` must be `>= 0`):
/// those tight at the point (`values[j] <= 1e-6 max |values|`), or those violated beyond
/// `tol * scale`, at most [`ROWS_PER_FEATURE`] `h` of them, the worst first and one per
/// `class` of identical rows.
pub(super) fn pick_rows(
    values: &[f64],
    class: impl Fn(usize) -> usize,
    scale: f64,
    choice: RowChoice,
    h: usize,
) -> Vec<usize> {
    let col_scale = max_abs(values);
    if col_scale == 0.0 {
        return Vec::new();
    }
    match choice {
        RowChoice::Tight => (0..values.len())
            .filter(|&j| values[j] <= 1e-6 * col_scale)
            .collect(),
        RowChoice::Violated(tol) => {
            let mut v: Vec<(f64, usize)> = values
                .iter()
                .enumerate()
                .map(|(j, &c)| (c, j))
                .filter(|&(c, _)| c < -tol * scale)
                .collect();
            v.sort_by(|a, b| a.0.total_cmp(&b.0).then(a.1.cmp(&b.1)));
            let mut seen = HashSet::new();
            v.into_iter()
                .map(|(_, j)| j)
                .filter(|&j| seen.insert(class(j)))
                .take(ROWS_PER_FEATURE * h)
                .collect()
        }
    }
}

/// Largest absolute value (0 for none).
pub(super) fn max_abs(values: &[f64]) -> f64 {
    values.iter().fold(0.0f64, |a, v| a.max(v.abs()))
}

/// Multipliers laid out for grown working sets: `gamma` is `prefix` multipliers of rows that do
/// not change, then one block per entry of `old` (that many rows each); the result has block
/// `b` with `new[b]` rows, its old multipliers first and its new rows' 0.
pub(super) fn regrow(gamma: &[f64], prefix: usize, old: &[usize], new: &[usize]) -> Vec<f64> {
    let mut out = vec![0.0; prefix + new.iter().sum::<usize>()];
    out[..prefix].copy_from_slice(&gamma[..prefix]);
    let (mut from, mut to) = (prefix, prefix);
    for (&o, &m) in old.iter().zip(new) {
        if let (Some(src), Some(dst)) = (gamma.get(from..from + o), out.get_mut(to..to + o)) {
            dst.copy_from_slice(src);
        }
        from += o;
        to += m;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn regrow_keeps_each_blocks_multipliers_first() {
        let gamma = [9.0, 1.0, 2.0, 3.0, 4.0, 5.0];
        // prefix 1; blocks of 2 and 3 rows grow to 3 and 4.
        let out = regrow(&gamma, 1, &[2, 3], &[3, 4]);
        assert_eq!(out, vec![9.0, 1.0, 2.0, 0.0, 3.0, 4.0, 5.0, 0.0]);
        // From an empty set.
        assert_eq!(regrow(&[], 0, &[0, 0], &[1, 2]), vec![0.0; 3]);
    }

    #[test]
    fn violated_rows_join_once_per_class_and_sign() {
        // Rows 0 and 2 identical; pattern 0 all off, so every row's sign is -1.
        let xs = Matrix::from_fn(3, 2, |r, c| if r == 1 { 1.0 } else { (c + 1) as f64 });
        let mut masks = Masks::new(3);
        masks.push_bools(&[false, false, false]);
        let search = RowSearch::new(&xs, &masks);
        let map = search.map(3);
        // v = (1, 1), w = 0: every row has x^T v > 0, violated with sign -1.
        let Some(xu) = search.values(&[1.0, 1.0, 0.0, 0.0]) else {
            panic!("two columns of length 2");
        };
        let scale = max_abs(xu.as_slice());
        assert_eq!(search.add(&map, &xu, scale, RowChoice::Violated(1e-6)), 2);
        assert_eq!(map.len(), 2, "identical rows 0 and 2 are one constraint");
        assert_eq!(search.add(&map, &xu, scale, RowChoice::Violated(1e-6)), 0);
    }
}
