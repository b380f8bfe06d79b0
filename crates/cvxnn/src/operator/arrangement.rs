//! The two-layer operator `(v_i) -> sum_i D_i X v_i` over a hyperplane arrangement, computed in
//! row panels so that no full `n x P` product is ever held, with the mask fused into each panel.

use faer::{Accum, MatRef};
use rayon::prelude::*;

use super::LinearMap;
use crate::linalg::{gemm, Matrix, Matrix32};
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

/// The data matrix in the precision its products run in.
#[derive(Clone, Copy, Debug)]
enum Data<'a> {
    F64(&'a Matrix),
    /// Products in `f32` (panels, variables and residuals rounded on the way in); the operator's
    /// inputs, outputs and every sum across panels stay `f64`.
    F32(&'a Matrix32),
}

impl Data<'_> {
    fn nrows(&self) -> usize {
        match self {
            Data::F64(x) => x.nrows(),
            Data::F32(x) => x.nrows(),
        }
    }

    fn ncols(&self) -> usize {
        match self {
            Data::F64(x) => x.ncols(),
            Data::F32(x) => x.ncols(),
        }
    }
}

/// `sum_i D_i X v_i` (and constraint values) for a data matrix `X` (`n x d`) and patterns `D_i`.
#[derive(Clone, Copy, Debug)]
pub struct ArrangementOperator<'a> {
    x: Data<'a>,
    masks: &'a Masks,
    layout: Layout,
}

/// Per-thread work space of one panel.
#[derive(Default)]
struct Scratch {
    /// The panel's `b x k` products (`f64`).
    t: Vec<f64>,
    /// The same in `f32`, for [`Data::F32`].
    t32: Vec<f32>,
    /// `d x k` partial adjoint in `f32`, for [`Data::F32`].
    g32: Vec<f32>,
}

impl<'a> ArrangementOperator<'a> {
    /// Panics never; the caller guarantees `masks.n() == x.nrows()` (checked by program builders).
    pub fn new(x: &'a Matrix, masks: &'a Masks, layout: Layout) -> Self {
        debug_assert_eq!(masks.n(), x.nrows());
        ArrangementOperator {
            x: Data::F64(x),
            masks,
            layout,
        }
    }

    /// The same operator with its dense products in single precision (`x` is an `f32` copy of
    /// the data): about twice the GEMM rate, with relative errors near `1e-7` in every output.
    pub fn new_f32(x: &'a Matrix32, masks: &'a Masks, layout: Layout) -> Self {
        debug_assert_eq!(masks.n(), x.nrows());
        ArrangementOperator {
            x: Data::F32(x),
            masks,
            layout,
        }
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

    /// `T = X[r0..r0+b] * vars` for one panel, into `s.t` (`b x k`, column-major).
    fn panel_product(&self, vars: Vars<'_>, r0: usize, b: usize, s: &mut Scratch) {
        let k = self.n_cols();
        s.t.resize(b * k, 0.0);
        match (self.x, vars) {
            (Data::F64(x), Vars::F64(v)) => gemm(
                faer::MatMut::from_column_major_slice_mut(&mut s.t, b, k),
                Accum::Replace,
                x.as_ref().subrows(r0, b),
                v,
                1.0,
            ),
            (Data::F32(x), Vars::F32(v)) => {
                s.t32.resize(b * k, 0.0);
                gemm(
                    faer::MatMut::from_column_major_slice_mut(&mut s.t32, b, k),
                    Accum::Replace,
                    x.as_ref().subrows(r0, b),
                    v,
                    1.0,
                );
                for (a, &v) in s.t.iter_mut().zip(&s.t32) {
                    *a = f64::from(v);
                }
            }
            // `apply` converts the variables to the data's precision.
            _ => unreachable!("variables and data in different precisions"),
        }
    }

    /// `g += X[r0..r0+b]^T R` for one panel's `b x k` residual block `rp`.
    fn panel_adjoint(&self, rp: &[f64], r0: usize, g: &mut [f64], s: &mut Scratch) {
        let (d, k) = (self.x.ncols(), self.n_cols());
        let b = rp.len() / k.max(1);
        match self.x {
            Data::F64(x) => gemm(
                faer::MatMut::from_column_major_slice_mut(g, d, k),
                Accum::Add,
                x.as_ref().subrows(r0, b).transpose(),
                MatRef::from_column_major_slice(rp, b, k),
                1.0,
            ),
            Data::F32(x) => {
                s.t32.clear();
                s.t32.extend(rp.iter().map(|&v| v as f32));
                s.g32.resize(d * k, 0.0);
                gemm(
                    faer::MatMut::from_column_major_slice_mut(&mut s.g32, d, k),
                    Accum::Replace,
                    x.as_ref().subrows(r0, b).transpose(),
                    MatRef::from_column_major_slice(&s.t32, b, k),
                    1.0,
                );
                // Sums across panels in f64: only one panel's rows are added in f32.
                for (a, &v) in g.iter_mut().zip(&s.g32) {
                    *a += f64::from(v);
                }
            }
        }
    }
}

/// The variables in the data's precision.
#[derive(Clone, Copy)]
enum Vars<'a> {
    F64(MatRef<'a, f64>),
    F32(MatRef<'a, f32>),
}

/// The eight 0/1 values of each byte's bits, lowest bit first.
static BYTE_BITS: [[f64; 8]; 256] = byte_bits();

const fn byte_bits() -> [[f64; 8]; 256] {
    let mut t = [[0.0; 8]; 256];
    let mut i = 0;
    while i < 256 {
        let mut k = 0;
        while k < 8 {
            if (i >> k) & 1 == 1 {
                t[i][k] = 1.0;
            }
            k += 1;
        }
        i += 1;
    }
    t
}

/// Expands a panel's mask bits (starting at `words[0]`) into 0/1 values, a byte at a time from
/// a table: extracting bit by bit needs a per-element variable shift, which baseline x86-64
/// (SSE2) cannot vectorize, and that made the mask pass cost 2-4x the panel's GEMM. The loops
/// over the expanded values are plain multiply-adds that vectorize on any target.
#[inline]
fn expand_bits(words: &[u64], out: &mut [f64; PANEL]) {
    for (w, &word) in words.iter().enumerate() {
        for (k, chunk) in out[w * 64..(w + 1) * 64].chunks_exact_mut(8).enumerate() {
            chunk.copy_from_slice(&BYTE_BITS[((word >> (8 * k)) & 0xff) as usize]);
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
        vars: Vars<'_>,
        r0: usize,
        zp: &mut [f64],
        cp: &mut [f64],
        s: &mut Scratch,
    ) {
        let p = self.n_patterns();
        let b = zp.len();
        self.panel_product(vars, r0, b, s);
        let t = &s.t;
        let mut mk = [0.0; PANEL];
        zp.iter_mut().for_each(|a| *a = 0.0);
        for i in 0..p {
            let words = self.panel_words(i, r0, b);
            expand_bits(words, &mut mk);
            let m = &mk[..b];
            let tv = &t[i * b..(i + 1) * b];
            if self.layout == Layout::Gated {
                for ((z, &mj), &v) in zp.iter_mut().zip(m).zip(tv) {
                    *z += mj * v;
                }
                continue;
            }
            let tw = &t[(p + i) * b..(p + i + 1) * b];
            for (((z, &mj), &v), &w) in zp.iter_mut().zip(m).zip(tv).zip(tw) {
                *z += mj * (v - w);
            }
            if self.layout == Layout::ReluConstrained {
                // c = (2 D_i - I) X v_i, and the same signs for w_i.
                let (front, back) = cp.split_at_mut((p + i) * b);
                let (cv, cw) = (&mut front[i * b..(i + 1) * b], &mut back[..b]);
                for ((((a, c), &mj), &v), &w) in cv.iter_mut().zip(cw).zip(m).zip(tv).zip(tw) {
                    let s = 2.0 * mj - 1.0;
                    *a = s * v;
                    *c = s * w;
                }
            }
        }
    }

    fn adjoint_panel(&self, rz: &[f64], rc: &[f64], r0: usize, g: &mut [f64], s: &mut Scratch) {
        let (k, p) = (self.n_cols(), self.n_patterns());
        let b = rz.len();
        let mut rp = std::mem::take(&mut s.t);
        rp.resize(b * k, 0.0);
        let mut mk = [0.0; PANEL];
        for i in 0..p {
            let words = self.panel_words(i, r0, b);
            let (lo, hi) = rp.split_at_mut(p * b);
            expand_bits(words, &mut mk);
            let m = &mk[..b];
            let dv = &mut lo[i * b..(i + 1) * b];
            if self.layout == Layout::Gated {
                for ((a, &mj), &r) in dv.iter_mut().zip(m).zip(rz) {
                    *a = mj * r;
                }
                continue;
            }
            let dw = &mut hi[i * b..(i + 1) * b];
            if self.layout == Layout::Relu {
                for (((a, c), &mj), &r) in dv.iter_mut().zip(dw.iter_mut()).zip(m).zip(rz) {
                    *a = mj * r;
                    *c = -mj * r;
                }
            } else {
                let (mv, mw) = (&rc[i * b..(i + 1) * b], &rc[(p + i) * b..(p + i + 1) * b]);
                let rows = dv.iter_mut().zip(dw.iter_mut()).zip(m).zip(rz);
                for ((((a, c), &mj), &r), (&u, &w)) in rows.zip(mv.iter().zip(mw)) {
                    let s = 2.0 * mj - 1.0;
                    *a = mj * r + s * u;
                    *c = -mj * r + s * w;
                }
            }
        }
        self.panel_adjoint(&rp, r0, g, s);
        s.t = rp;
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
        let v32: Vec<f32>;
        let vars = match self.x {
            Data::F64(_) => Vars::F64(MatRef::from_column_major_slice(v, d, k)),
            Data::F32(_) => {
                v32 = v.iter().map(|&a| a as f32).collect();
                Vars::F32(MatRef::from_column_major_slice(&v32, d, k))
            }
        };
        let (z, c) = out.split_at_mut(n);
        if self.layout == Layout::ReluConstrained {
            z.par_chunks_mut(PANEL)
                .zip(c.par_chunks_mut(PANEL * k))
                .enumerate()
                .for_each_init(Scratch::default, |s, (pi, (zp, cp))| {
                    self.apply_panel(vars, pi * PANEL, zp, cp, s)
                });
        } else {
            z.par_chunks_mut(PANEL)
                .enumerate()
                .for_each_init(Scratch::default, |s, (pi, zp)| {
                    self.apply_panel(vars, pi * PANEL, zp, &mut [], s)
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
        let run_block = |s: &mut Scratch, blk: usize, g: &mut [f64]| {
            for pi in blk * per_block..((blk + 1) * per_block).min(panels) {
                let r0 = pi * PANEL;
                let b = PANEL.min(n - r0);
                let rcp = if constrained {
                    &rc[r0 * k..(r0 + b) * k]
                } else {
                    &[][..]
                };
                self.adjoint_panel(&rz[r0..r0 + b], rcp, r0, g, s);
            }
        };
        out.iter_mut().for_each(|a| *a = 0.0);
        if blocks == 1 {
            run_block(&mut Scratch::default(), 0, out);
            return;
        }
        let partials: Vec<Vec<f64>> = (0..blocks)
            .into_par_iter()
            .map_init(Scratch::default, |s, blk| {
                let mut g = vec![0.0; d * k];
                run_block(s, blk, &mut g);
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
    fn single_precision_products_match_double_to_f32_rounding() {
        let x = data(700, 5);
        let x32 = Matrix32::from_f64(&x);
        let m = sample_patterns(&x, 7, 2).unwrap().masks;
        // Entrywise within 1e-5 of the largest entry.
        let assert_close = |a: &[f64], b: &[f64], what: String| {
            let scale = a.iter().fold(0.0f64, |m, v| m.max(v.abs()));
            for (u, v) in a.iter().zip(b) {
                assert!((u - v).abs() <= 1e-5 * scale, "{what}: {u} vs {v}");
            }
        };
        for layout in [Layout::Gated, Layout::Relu, Layout::ReluConstrained] {
            let (op, op32) = (
                ArrangementOperator::new(&x, &m, layout),
                ArrangementOperator::new_f32(&x32, &m, layout),
            );
            let v: Vec<f64> = (0..op.n_vars())
                .map(|i| ((i * 13) % 7) as f64 / 3.0 - 1.0)
                .collect();
            let (mut z, mut z32) = (vec![0.0; op.image_len()], vec![0.0; op.image_len()]);
            op.apply(&v, &mut z);
            op32.apply(&v, &mut z32);
            assert_close(&z, &z32, format!("{layout:?} apply"));
            let (mut g, mut g32) = (vec![0.0; op.n_vars()], vec![0.0; op.n_vars()]);
            op.adjoint(&z, &mut g);
            op32.adjoint(&z, &mut g32);
            assert_close(&g, &g32, format!("{layout:?} adjoint"));
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
