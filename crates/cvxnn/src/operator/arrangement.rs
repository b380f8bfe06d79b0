//! The two-layer operator `(v_i) -> sum_i D_i X v_i` over a hyperplane arrangement, computed in
//! row panels so that no full `n x P` product is ever held, with the mask fused into each panel.

use faer::{Accum, MatRef};
use rayon::prelude::*;

use super::LinearMap;
use crate::linalg::{gemm, Matrix};
use crate::patterns::Masks;

/// Rows per panel: a multiple of 64 so that a panel's mask bits are whole words.
const PANEL: usize = 256;
/// Upper bound on the number of partial sums in the adjoint; fixed so results are the same for
/// any thread count (the partials are always added in the same order).
const MAX_BLOCKS: usize = 64;

/// How the variables and the image are laid out.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Layout {
    /// Gated ReLU: variables `U` (`d x P`, column `i` = `u_i`); image `z = sum_i D_i X u_i`.
    Gated,
    /// ReLU: variables `[V W]` (`d x 2P`); image `z = sum_i D_i X (v_i - w_i)`.
    Relu,
    /// ReLU with constraints: as [`Layout::Relu`], the image followed by the constraint values
    /// `(2 D_i - I) X v_i` and `(2 D_i - I) X w_i` (`n x 2P`, stored panel by panel: panel `p`
    /// holds its rows of all `2P` columns, column-major) — only elementwise operations touch them.
    ReluConstrained,
}

/// `sum_i D_i X v_i` (and constraint values) for a data matrix `X` (`n x d`) and patterns `D_i`.
#[derive(Clone, Copy, Debug)]
pub struct ArrangementOperator<'a> {
    x: &'a Matrix,
    masks: &'a Masks,
    layout: Layout,
}

impl<'a> ArrangementOperator<'a> {
    /// Panics never; the caller guarantees `masks.n() == x.nrows()` (checked by program builders).
    pub fn new(x: &'a Matrix, masks: &'a Masks, layout: Layout) -> Self {
        debug_assert_eq!(masks.n(), x.nrows());
        ArrangementOperator { x, masks, layout }
    }

    /// Number of patterns `P`.
    pub fn n_patterns(&self) -> usize {
        self.masks.len()
    }

    /// Number of variable columns (`P` or `2P`).
    pub fn n_cols(&self) -> usize {
        match self.layout {
            Layout::Gated => self.masks.len(),
            Layout::Relu | Layout::ReluConstrained => 2 * self.masks.len(),
        }
    }

    /// The layout.
    pub fn layout(&self) -> Layout {
        self.layout
    }

    /// Index, within the constraint values of [`Layout::ReluConstrained`] for `n` samples and
    /// `cols` variable columns, of the value of sample `row` in column `col` (panel-major).
    pub fn constraint_position(n: usize, cols: usize, row: usize, col: usize) -> usize {
        let r0 = (row / PANEL) * PANEL;
        let b = PANEL.min(n - r0);
        r0 * cols + col * b + (row - r0)
    }

    /// Offset in the image where the constraint values start (`n`).
    pub fn constraint_offset(&self) -> usize {
        self.x.nrows()
    }

    fn panels(&self) -> usize {
        self.x.nrows().div_ceil(PANEL)
    }

    /// `T = X[r0..r0+b] * vars` for one panel.
    fn panel_product(&self, vars: MatRef<'_, f64>, r0: usize, b: usize, t: &mut [f64]) {
        let k = vars.ncols();
        let xp = self.x.as_ref().subrows(r0, b);
        gemm(
            faer::MatMut::from_column_major_slice_mut(t, b, k),
            Accum::Replace,
            xp,
            vars,
            1.0,
        );
    }
}

/// Calls `f(j, bit)` for rows `0..b` of a panel whose mask bits start at `words[0]`.
#[inline(always)]
fn for_each_bit(words: &[u64], b: usize, mut f: impl FnMut(usize, f64)) {
    for (w, &word) in words.iter().enumerate() {
        let lo = w * 64;
        let hi = (lo + 64).min(b);
        for j in lo..hi {
            f(j, ((word >> (j - lo)) & 1) as f64);
        }
    }
}

impl ArrangementOperator<'_> {
    /// The mask words of pattern `i` covering the panel starting at row `r0`.
    #[inline]
    fn panel_words(&self, i: usize, r0: usize, b: usize) -> &[u64] {
        let w0 = r0 / 64;
        &self.masks.pattern_words(i)[w0..w0 + b.div_ceil(64)]
    }

    fn apply_panel(
        &self,
        vars: MatRef<'_, f64>,
        r0: usize,
        zp: &mut [f64],
        cp: &mut [f64],
        t: &mut Vec<f64>,
    ) {
        let (k, p) = (self.n_cols(), self.n_patterns());
        let b = zp.len();
        t.resize(b * k, 0.0);
        self.panel_product(vars, r0, b, t);
        zp.iter_mut().for_each(|a| *a = 0.0);
        for i in 0..p {
            let words = self.panel_words(i, r0, b);
            let tv = &t[i * b..(i + 1) * b];
            match self.layout {
                Layout::Gated => for_each_bit(words, b, |j, m| zp[j] += m * tv[j]),
                Layout::Relu | Layout::ReluConstrained => {
                    let tw = &t[(p + i) * b..(p + i + 1) * b];
                    for_each_bit(words, b, |j, m| zp[j] += m * (tv[j] - tw[j]));
                }
            }
            if self.layout == Layout::ReluConstrained {
                // c = (2 D_i - I) X v_i, and the same signs for w_i.
                let (cv, cw) = (i * b, (p + i) * b);
                let tw = &t[(p + i) * b..(p + i + 1) * b];
                for_each_bit(words, b, |j, m| {
                    let s = 2.0 * m - 1.0;
                    cp[cv + j] = s * tv[j];
                    cp[cw + j] = s * tw[j];
                });
            }
        }
    }

    fn adjoint_panel(&self, rz: &[f64], rc: &[f64], r0: usize, g: &mut [f64], rp: &mut Vec<f64>) {
        let (d, k, p) = (self.x.ncols(), self.n_cols(), self.n_patterns());
        let b = rz.len();
        rp.resize(b * k, 0.0);
        for i in 0..p {
            let words = self.panel_words(i, r0, b);
            let (lo, hi) = rp.split_at_mut(p * b);
            let dv = &mut lo[i * b..(i + 1) * b];
            if self.layout == Layout::Gated {
                for_each_bit(words, b, |j, m| dv[j] = m * rz[j]);
                continue;
            }
            let dw = &mut hi[i * b..(i + 1) * b];
            if self.layout == Layout::Relu {
                for_each_bit(words, b, |j, m| {
                    dv[j] = m * rz[j];
                    dw[j] = -m * rz[j];
                });
            } else {
                let (mv, mw) = (&rc[i * b..(i + 1) * b], &rc[(p + i) * b..(p + i + 1) * b]);
                for_each_bit(words, b, |j, m| {
                    let s = 2.0 * m - 1.0;
                    dv[j] = m * rz[j] + s * mv[j];
                    dw[j] = -m * rz[j] + s * mw[j];
                });
            }
        }
        gemm(
            faer::MatMut::from_column_major_slice_mut(g, d, k),
            Accum::Add,
            self.x.as_ref().subrows(r0, b).transpose(),
            MatRef::from_column_major_slice(rp, b, k),
            1.0,
        );
    }
}

impl LinearMap for ArrangementOperator<'_> {
    fn n_vars(&self) -> usize {
        self.x.ncols() * self.n_cols()
    }

    fn image_len(&self) -> usize {
        let n = self.x.nrows();
        match self.layout {
            Layout::Gated | Layout::Relu => n,
            Layout::ReluConstrained => n + n * self.n_cols(),
        }
    }

    fn apply(&self, v: &[f64], out: &mut [f64]) {
        let (n, d, k) = (self.x.nrows(), self.x.ncols(), self.n_cols());
        let vars = MatRef::from_column_major_slice(v, d, k);
        let (z, c) = out.split_at_mut(n);
        if self.layout == Layout::ReluConstrained {
            z.par_chunks_mut(PANEL)
                .zip(c.par_chunks_mut(PANEL * k))
                .enumerate()
                .for_each_init(Vec::new, |t, (pi, (zp, cp))| {
                    self.apply_panel(vars, pi * PANEL, zp, cp, t)
                });
        } else {
            z.par_chunks_mut(PANEL)
                .enumerate()
                .for_each_init(Vec::new, |t, (pi, zp)| {
                    self.apply_panel(vars, pi * PANEL, zp, &mut [], t)
                });
        }
    }

    fn adjoint(&self, r: &[f64], out: &mut [f64]) {
        let (n, d, k) = (self.x.nrows(), self.x.ncols(), self.n_cols());
        let panels = self.panels();
        let per_block = panels.div_ceil(MAX_BLOCKS).max(1);
        let blocks = panels.div_ceil(per_block);
        let (rz, rc) = r.split_at(n);
        let constrained = self.layout == Layout::ReluConstrained;
        let run_block = |rp: &mut Vec<f64>, blk: usize, g: &mut [f64]| {
            for pi in blk * per_block..((blk + 1) * per_block).min(panels) {
                let r0 = pi * PANEL;
                let b = PANEL.min(n - r0);
                let rcp = if constrained {
                    &rc[r0 * k..(r0 + b) * k]
                } else {
                    &[][..]
                };
                self.adjoint_panel(&rz[r0..r0 + b], rcp, r0, g, rp);
            }
        };
        out.iter_mut().for_each(|a| *a = 0.0);
        if blocks == 1 {
            run_block(&mut Vec::new(), 0, out);
            return;
        }
        let partials: Vec<Vec<f64>> = (0..blocks)
            .into_par_iter()
            .map_init(Vec::new, |rp, blk| {
                let mut g = vec![0.0; d * k];
                run_block(rp, blk, &mut g);
                g
            })
            .collect();
        // Fixed summation order: the result does not depend on the thread count.
        for g in &partials {
            for (o, &v) in out.iter_mut().zip(g) {
                *o += v;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::patterns::sample_patterns;

    fn data(n: usize, d: usize) -> Matrix {
        let mut x = Matrix::zeros(n, d);
        for j in 0..d {
            for i in 0..n {
                x.set(i, j, ((i * 31 + j * 17) % 23) as f64 / 7.0 - 1.5);
            }
        }
        x
    }

    fn naive(x: &Matrix, m: &Masks, layout: Layout, v: &[f64]) -> Vec<f64> {
        let (n, d, p) = (x.nrows(), x.ncols(), m.len());
        let k = if layout == Layout::Gated { p } else { 2 * p };
        let mut z = vec![0.0; n];
        let mut c = vec![0.0; n * k];
        for j in 0..n {
            for col in 0..k {
                let i = col % p;
                let xv: f64 = (0..d).map(|a| x.get(j, a) * v[col * d + a]).sum();
                let on = m.get(j, i);
                let sign = if col < p { 1.0 } else { -1.0 };
                if on {
                    z[j] += sign * xv;
                }
                // Panel-major storage of c.
                let r0 = (j / PANEL) * PANEL;
                let b = PANEL.min(n - r0);
                c[r0 * k + col * b + (j - r0)] = if on { xv } else { -xv };
            }
        }
        if layout == Layout::ReluConstrained {
            z.extend(c);
        }
        z
    }

    #[test]
    fn apply_and_adjoint_match_naive_and_are_adjoint() {
        // n spans several panels and a ragged last one.
        let x = data(600, 4);
        let m = sample_patterns(&x, 9, 3).unwrap().masks;
        for layout in [Layout::Gated, Layout::Relu, Layout::ReluConstrained] {
            let op = ArrangementOperator::new(&x, &m, layout);
            let v: Vec<f64> = (0..op.n_vars())
                .map(|i| ((i * 13) % 7) as f64 - 3.0)
                .collect();
            let mut z = vec![0.0; op.image_len()];
            op.apply(&v, &mut z);
            let zn = naive(&x, &m, layout, &v);
            for (a, b) in z.iter().zip(&zn) {
                assert!(
                    (a - b).abs() < 1e-9 * (1.0 + b.abs()),
                    "{layout:?}: {a} vs {b}"
                );
            }
            let r: Vec<f64> = (0..op.image_len())
                .map(|i| ((i * 5) % 11) as f64 / 3.0 - 1.0)
                .collect();
            let mut g = vec![0.0; op.n_vars()];
            op.adjoint(&r, &mut g);
            let lhs = crate::linalg::dot(&z, &r);
            let rhs = crate::linalg::dot(&v, &g);
            assert!(
                (lhs - rhs).abs() < 1e-9 * lhs.abs().max(1.0),
                "{layout:?}: {lhs} vs {rhs}"
            );
        }
    }

    #[test]
    fn results_do_not_depend_on_thread_count() {
        let x = data(5000, 3);
        let m = sample_patterns(&x, 20, 1).unwrap().masks;
        let op = ArrangementOperator::new(&x, &m, Layout::Relu);
        let r: Vec<f64> = (0..x.nrows()).map(|i| (i % 17) as f64 - 8.0).collect();
        let run = |threads: usize| {
            let pool = rayon::ThreadPoolBuilder::new()
                .num_threads(threads)
                .build()
                .unwrap();
            pool.install(|| {
                let mut g = vec![0.0; op.n_vars()];
                op.adjoint(&r, &mut g);
                g
            })
        };
        assert_eq!(run(1), run(3));
    }
}
