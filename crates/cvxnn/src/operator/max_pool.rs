//! One max-pooling window's operator over joint (activation, argmax) patterns (DESIGN section 2,
//! "Max pooling"; derivation in `docs/theory.md`, "CNN max pooling"). A pattern fixes, for
//! every sample `j`, either "off" (every patch of the window has `x_jk^T u <= 0`) or "on with
//! argmax `t*`" (`x_jt*^T u >= 0` and `x_jt*^T u >= x_jt^T u` for the other patches). Inside
//! that cone the pooled activation `max_t (x_jt^T u)_+` is linear: `x_jt*^T u` or `0`.
//!
//! Variables `[V W]` (`h x 2P`, column-major). Image: the `n` predictions
//! `sum_i M_i (v_i - w_i)` (row `j` of `M_i` = `x_jt*` when on, else 0), then per column `c`
//! and sample `j` the `s` constraint values (must be `>= 0`) at `n + (c n + j) s + t`:
//! on: slot `t*` = `x_jt*^T v`, slot `t != t*` = `(x_jt* - x_jt)^T v`; off: slot `t` =
//! `-x_jt^T v`. Both products are one GEMM with the window's patch matrix.

use super::LinearMap;
use crate::linalg::Matrix;

/// A window's patch matrix `X_w` (`s n x h`, row `t * n + j` = patch `t` of the window of
/// sample `j`) and its joint patterns (`states[i * n + j]`: 0 = off, `t + 1` = on with argmax
/// `t`).
pub struct MaxPoolWindow<'a> {
    x: &'a Matrix,
    states: &'a [u16],
    n: usize,
    s: usize,
}

impl<'a> MaxPoolWindow<'a> {
    /// The caller guarantees `x.nrows() == s * n` and `states.len() % n == 0` with every state
    /// at most `s` (checked by [`crate::program::MaxPoolProgram::new`]).
    pub fn new(x: &'a Matrix, states: &'a [u16], n: usize, s: usize) -> Self {
        MaxPoolWindow { x, states, n, s }
    }

    /// Number of joint patterns `P`.
    pub fn n_patterns(&self) -> usize {
        self.states.len().checked_div(self.n).unwrap_or(0)
    }

    /// `[M_1 .. M_P]` (`n x P h`): row `j` of `M_i` is the argmax patch `x_jt*` of pattern `i`
    /// when sample `j` is on, else 0 (the predictions are `sum_i M_i (v_i - w_i)`).
    pub fn pooled(&self) -> Matrix {
        let (n, h, p) = (self.n, self.x.ncols(), self.n_patterns());
        let mut m = Matrix::zeros(n, p * h);
        for i in 0..p {
            for j in 0..n {
                if let Some(t) = (self.states[i * n + j] as usize).checked_sub(1) {
                    for c in 0..h {
                        m.set(j, i * h + c, self.x.get(t * n + j, c));
                    }
                }
            }
        }
        m
    }

    /// Constraint row of pattern `i`, sample `j`, slot `t` (the row whose product with a
    /// column of pattern `i` is that slot's value in the image).
    pub fn constraint_row(&self, i: usize, j: usize, t: usize) -> Vec<f64> {
        let (n, h) = (self.n, self.x.ncols());
        let patch = |k: usize| (0..h).map(move |c| self.x.get(k * n + j, c));
        match (self.states[i * n + j] as usize).checked_sub(1) {
            None => patch(t).map(|v| -v).collect(),
            Some(top) if top == t => patch(t).collect(),
            Some(top) => patch(top).zip(patch(t)).map(|(a, b)| a - b).collect(),
        }
    }
}

impl LinearMap for MaxPoolWindow<'_> {
    fn n_vars(&self) -> usize {
        2 * self.n_patterns() * self.x.ncols()
    }

    fn image_len(&self) -> usize {
        self.n + 2 * self.n_patterns() * self.n * self.s
    }

    fn apply(&self, vars: &[f64], out: &mut [f64]) {
        let (n, s, h, p) = (self.n, self.s, self.x.ncols(), self.n_patterns());
        let Some(v) = Matrix::from_col_major(h, 2 * p, vars.to_vec()) else {
            return;
        };
        let d = self.x.matmul(&v);
        let (pred, cons) = out.split_at_mut(n);
        pred.iter_mut().for_each(|z| *z = 0.0);
        for c in 0..2 * p {
            let (i, sign) = if c < p { (c, 1.0) } else { (c - p, -1.0) };
            let dc = d.col(c);
            for j in 0..n {
                let slots = &mut cons[(c * n + j) * s..(c * n + j + 1) * s];
                match self.states[i * n + j] {
                    0 => (0..s).for_each(|t| slots[t] = -dc[t * n + j]),
                    st => {
                        let top = dc[(st as usize - 1) * n + j];
                        pred[j] += sign * top;
                        for (t, slot) in slots.iter_mut().enumerate() {
                            *slot = if t + 1 == st as usize {
                                top
                            } else {
                                top - dc[t * n + j]
                            };
                        }
                    }
                }
            }
        }
    }

    fn adjoint(&self, r: &[f64], out: &mut [f64]) {
        let (n, s, h, p) = (self.n, self.s, self.x.ncols(), self.n_patterns());
        let (pred, cons) = r.split_at(n);
        let mut coef = Matrix::zeros(s * n, 2 * p);
        for c in 0..2 * p {
            let (i, sign) = if c < p { (c, 1.0) } else { (c - p, -1.0) };
            let col = coef.col_mut(c);
            for j in 0..n {
                let slots = &cons[(c * n + j) * s..(c * n + j + 1) * s];
                match self.states[i * n + j] {
                    0 => (0..s).for_each(|t| col[t * n + j] = -slots[t]),
                    st => {
                        let top = st as usize - 1;
                        col[top * n + j] = sign * pred[j] + slots.iter().sum::<f64>();
                        for (t, &sl) in slots.iter().enumerate() {
                            if t != top {
                                col[t * n + j] = -sl;
                            }
                        }
                    }
                }
            }
        }
        let g = self.x.t_matmul(&coef);
        out[..h * 2 * p].copy_from_slice(g.as_slice());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn apply_matches_pooled_activations_and_adjoint_matches() {
        let (n, s, h) = (4, 3, 2);
        let x = Matrix::from_fn(s * n, h, |i, j| ((i * 31 + j * 17) % 23) as f64 / 7.0 - 1.5);
        // Pattern 0: the true states of u0; pattern 1 arbitrary.
        let u0 = [0.7, -0.4];
        let mut states = Vec::new();
        for j in 0..n {
            let vals: Vec<f64> = (0..s)
                .map(|t| x.get(t * n + j, 0) * u0[0] + x.get(t * n + j, 1) * u0[1])
                .collect();
            let (best, top) = vals
                .iter()
                .enumerate()
                .fold(
                    (0, f64::NEG_INFINITY),
                    |b, (t, &v)| if v > b.1 { (t, v) } else { b },
                );
            states.push(if top >= 0.0 { best as u16 + 1 } else { 0 });
        }
        states.extend([0u16, 1, 3, 2]);
        let op = MaxPoolWindow::new(&x, &states, n, s);
        let mut vars = vec![0.0; op.n_vars()];
        vars[..2].copy_from_slice(&u0);
        let mut img = vec![0.0; op.image_len()];
        op.apply(&vars, &mut img);
        for j in 0..n {
            let want = (0..s)
                .map(|t| (x.get(t * n + j, 0) * u0[0] + x.get(t * n + j, 1) * u0[1]).max(0.0))
                .fold(0.0, f64::max);
            assert!((img[j] - want).abs() < 1e-12, "{} vs {want}", img[j]);
            // u0 lies in its own pattern's cone.
            assert!(img[n + j * s..n + (j + 1) * s].iter().all(|&c| c >= -1e-12));
        }
        let v: Vec<f64> = (0..op.n_vars())
            .map(|i| ((i * 13) % 7) as f64 - 3.0)
            .collect();
        op.apply(&v, &mut img);
        let r: Vec<f64> = (0..op.image_len())
            .map(|i| ((i * 7) % 5) as f64 - 2.0)
            .collect();
        let mut g = vec![0.0; op.n_vars()];
        op.adjoint(&r, &mut g);
        let lhs: f64 = img.iter().zip(&r).map(|(a, b)| a * b).sum();
        let rhs: f64 = v.iter().zip(&g).map(|(a, b)| a * b).sum();
        assert!(
            (lhs - rhs).abs() <= 1e-9 * lhs.abs().max(1.0),
            "{lhs} vs {rhs}"
        );
    }

    #[test]
    fn pooled_rows_and_constraint_rows_reproduce_the_image() {
        let (n, s, h) = (3, 3, 2);
        let x = Matrix::from_fn(s * n, h, |i, j| ((i * 13 + j * 7) % 11) as f64 / 3.0 - 1.5);
        // Two patterns: every state kind (off, on at each slot).
        let states = [1u16, 0, 3, 2, 3, 0];
        let op = MaxPoolWindow::new(&x, &states, n, s);
        let p = op.n_patterns();
        let v: Vec<f64> = (0..op.n_vars())
            .map(|i| ((i * 5) % 7) as f64 - 3.0)
            .collect();
        let mut img = vec![0.0; op.image_len()];
        op.apply(&v, &mut img);
        let pooled = op.pooled();
        let dot = |a: &[f64], b: &[f64]| a.iter().zip(b).map(|(x, y)| x * y).sum::<f64>();
        for (j, &want) in img.iter().enumerate().take(n) {
            let got: f64 = (0..p)
                .map(|i| {
                    let row: Vec<f64> = (0..h).map(|c| pooled.get(j, i * h + c)).collect();
                    let u = &v[i * h..(i + 1) * h];
                    let w = &v[(p + i) * h..(p + i + 1) * h];
                    dot(&row, u) - dot(&row, w)
                })
                .sum();
            assert!((got - want).abs() <= 1e-12, "{got} vs {want}");
        }
        for g in 0..2 * p {
            for j in 0..n {
                for t in 0..s {
                    let row = op.constraint_row(g % p, j, t);
                    let got = dot(&row, &v[g * h..(g + 1) * h]);
                    let want = img[n + (g * n + j) * s + t];
                    assert!((got - want).abs() <= 1e-12, "{got} vs {want}");
                }
            }
        }
    }
}
