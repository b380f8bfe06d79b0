//! The sum-pooling ReLU CNN program with a working set of constraint rows (DESIGN section 2).
//!
//! With global sum pooling the predictions of pattern `i` only need the pooled data
//! `A_i = sum_k D_ik X_k` (`n x h`, computed once), so they cost an `n x 2Ph` product instead of
//! a pass over all `nK` patch rows. The constraints `(2 D_i - I) X u_i >= 0` still have `nK`
//! rows per group, but at a solution only a few bind; the map keeps the rows of a working set.
//! A program over it is a relaxation of the full one: its dual bounds hold for the full program,
//! and a point that satisfies every row of the full program is feasible for it.

use std::collections::{HashMap, HashSet};
use std::sync::{PoisonError, RwLock, RwLockReadGuard};

use faer::Accum;

use super::LinearMap;
use crate::linalg::{gemm, Matrix};
use crate::patterns::Masks;

/// `[v; w] -> [A (v - w); c_W]`: pooled predictions (`A = [A_1 .. A_P]`) and the values
/// `s_j x_j^T u_g` of the working rows `(g, j)` (`u_g` is `v_i` for `g = i < P`, `w_i` for
/// `g = P + i`; `s_j = 2 D_ij - 1`).
///
/// The set grows while a solver holds the map (between its passes), hence the lock.
#[derive(Debug)]
pub struct WorkingSetMap {
    pooled: Matrix,
    d: usize,
    p: usize,
    rows: RwLock<WorkingRows>,
}

/// The working rows of a [`WorkingSetMap`].
#[derive(Debug, Default)]
struct WorkingRows {
    /// Group column of each working row.
    cols: Vec<usize>,
    /// Signed working rows `s_j x_j`, `d` values each.
    values: Vec<f64>,
    /// `(group, class of the row, sign)` of every working row: identical patch rows (the many
    /// all-zero background patches) are one constraint.
    members: HashSet<(usize, usize, bool)>,
}

impl WorkingSetMap {
    /// The map of `xs` (`nK x h`, row `k * n + j` is patch `k` of sample `j`) over `masks`, with
    /// an empty working set.
    pub fn new(xs: &Matrix, n: usize, masks: &Masks) -> Self {
        Self::from_pooled(pooled_patterns(xs, n, masks), masks.len())
    }

    /// The map whose predictions are `pooled` (`n x Ph`, pattern `i`'s `n x h` block at
    /// columns `i h ..`) applied to `v - w`, with an empty working set (rows of any kind: the
    /// max-pooling program's are differences of patches).
    pub fn from_pooled(pooled: Matrix, p: usize) -> Self {
        WorkingSetMap {
            d: pooled.ncols().checked_div(p).unwrap_or(0),
            pooled,
            p,
            rows: RwLock::new(WorkingRows::default()),
        }
    }

    fn read(&self) -> RwLockReadGuard<'_, WorkingRows> {
        // A panic elsewhere cannot leave the rows half-written (pushes are whole): use them.
        self.rows.read().unwrap_or_else(PoisonError::into_inner)
    }

    /// Number of working rows.
    pub fn len(&self) -> usize {
        self.read().cols.len()
    }

    /// Whether the working set is empty.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Adds row `s x` for group `g` at the end; false when one of the same `class` (see
    /// [`row_classes`]; any key that names the row) and sign is already there.
    pub fn add(&self, g: usize, class: usize, sign: f64, x: &[f64]) -> bool {
        let mut rows = self.rows.write().unwrap_or_else(PoisonError::into_inner);
        if !rows.members.insert((g, class, sign > 0.0)) {
            return false;
        }
        rows.cols.push(g);
        rows.values.extend(x.iter().map(|v| sign * v));
        true
    }
}

/// `A = [A_1 .. A_P]` (`n x Ph`) with `A_i = sum_k D_ik X_k`: the predictions of pattern `i`'s
/// filter `u` are `A_i u` (the gated CNN's whole program is the group lasso on `A`).
pub fn pooled_patterns(xs: &Matrix, n: usize, masks: &Masks) -> Matrix {
    let (d, p) = (xs.ncols(), masks.len());
    let mut pooled = Matrix::zeros(n, p * d);
    for i in 0..p {
        for c in 0..d {
            let src = xs.col(c);
            let dst = pooled.col_mut(i * d + c);
            for (r, &v) in src.iter().enumerate() {
                if masks.get(r, i) {
                    dst[r % n] += v;
                }
            }
        }
    }
    pooled
}

/// For every row of `x`, the index of the first row with the same values (its class).
pub fn row_classes(x: &Matrix) -> Vec<usize> {
    let (rows, d) = (x.nrows(), x.ncols());
    let mut first: HashMap<Vec<u64>, usize> = HashMap::new();
    (0..rows)
        .map(|r| {
            // -0.0 and 0.0 are the same patch value.
            let key: Vec<u64> = (0..d).map(|c| (x.get(r, c) + 0.0).to_bits()).collect();
            *first.entry(key).or_insert(r)
        })
        .collect()
}

impl LinearMap for WorkingSetMap {
    fn n_vars(&self) -> usize {
        2 * self.p * self.d
    }

    fn image_len(&self) -> usize {
        self.pooled.nrows() + self.len()
    }

    fn apply(&self, x: &[f64], out: &mut [f64]) {
        let (n, pd, d) = (self.pooled.nrows(), self.p * self.d, self.d);
        let diff: Vec<f64> = x[..pd].iter().zip(&x[pd..]).map(|(v, w)| v - w).collect();
        let (z, c) = out.split_at_mut(n);
        let dm = faer::MatRef::from_column_major_slice(&diff, pd, 1);
        let zm = faer::MatMut::from_column_major_slice_mut(z, n, 1);
        gemm(zm, Accum::Replace, self.pooled.as_ref(), dm, 1.0);
        let rows = self.read();
        for ((ct, &g), row) in c
            .iter_mut()
            .zip(&rows.cols)
            .zip(rows.values.chunks_exact(d))
        {
            *ct = crate::linalg::dot(row, &x[g * d..(g + 1) * d]);
        }
    }

    fn adjoint(&self, r: &[f64], out: &mut [f64]) {
        let (n, pd, d) = (self.pooled.nrows(), self.p * self.d, self.d);
        let (rz, rc) = r.split_at(n);
        let (ov, ow) = out.split_at_mut(pd);
        let rm = faer::MatRef::from_column_major_slice(rz, n, 1);
        let om = faer::MatMut::from_column_major_slice_mut(ov, pd, 1);
        gemm(
            om,
            Accum::Replace,
            self.pooled.as_ref().transpose(),
            rm,
            1.0,
        );
        for (w, v) in ow.iter_mut().zip(ov.iter()) {
            *w = -v;
        }
        let rows = self.read();
        for ((&rt, &g), row) in rc.iter().zip(&rows.cols).zip(rows.values.chunks_exact(d)) {
            if rt != 0.0 {
                for (o, &xv) in out[g * d..(g + 1) * d].iter_mut().zip(row) {
                    *o += rt * xv;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::operator::{ArrangementOperator, Layout, PatchSum};

    fn lcg(seed: &mut u64) -> f64 {
        *seed = seed
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        ((*seed >> 11) as f64 / (1u64 << 53) as f64) - 0.5
    }

    #[test]
    fn predictions_match_the_full_operator_and_adjoint_is_the_transpose() {
        let (n, k, d, p) = (5, 3, 4, 3);
        let mut seed = 7u64;
        let mut xs = Matrix::zeros(n * k, d);
        for v in xs.as_mut_slice() {
            *v = lcg(&mut seed);
        }
        let mut masks = Masks::new(n * k);
        for i in 0..p {
            let bits: Vec<bool> = (0..n * k).map(|r| (r * (i + 2)) % 3 != 0).collect();
            masks.push_bools(&bits);
        }
        let map = WorkingSetMap::new(&xs, n, &masks);
        let classes = row_classes(&xs);
        for (g, r) in [(0, 1), (4, 7), (2, 14), (0, 1)] {
            let s = if masks.get(r, g % p) { 1.0 } else { -1.0 };
            map.add(g, classes[r], s, &xs.row(r));
        }
        assert_eq!(map.len(), 3, "the repeated row is one constraint");
        let x: Vec<f64> = (0..map.n_vars()).map(|_| lcg(&mut seed)).collect();
        let mut img = vec![0.0; map.image_len()];
        map.apply(&x, &mut img);
        let full = PatchSum::new(ArrangementOperator::new(&xs, &masks, Layout::Relu), n, k);
        let mut z = vec![0.0; full.image_len()];
        full.apply(&x, &mut z);
        for (a, b) in img[..n].iter().zip(&z) {
            assert!((a - b).abs() <= 1e-12, "{a} vs {b}");
        }
        // Row (4, 7): group 4 is w_1, sign of pattern 1 at row 7.
        let s = if masks.get(7, 1) { 1.0 } else { -1.0 };
        let want = s * crate::linalg::dot(&xs.row(7), &x[4 * d..5 * d]);
        assert!((img[n + 1] - want).abs() <= 1e-12);
        // <K x, r> == <x, K^T r>.
        let r: Vec<f64> = (0..map.image_len()).map(|_| lcg(&mut seed)).collect();
        let mut kt = vec![0.0; map.n_vars()];
        map.adjoint(&r, &mut kt);
        let lhs = crate::linalg::dot(&img, &r);
        let rhs = crate::linalg::dot(&x, &kt);
        assert!(
            (lhs - rhs).abs() <= 1e-12 * lhs.abs().max(1.0),
            "{lhs} vs {rhs}"
        );
    }

    #[test]
    fn identical_rows_share_a_class() {
        let x = Matrix::from_fn(4, 2, |r, c| if r % 2 == 0 { 0.0 } else { (r + c) as f64 });
        assert_eq!(row_classes(&x), vec![0, 1, 0, 3]);
    }
}
