//! The semidefinite form of the linear-network programs (DESIGN section 3), solved by Clarabel
//! with the PSD cone: the exact reference for [`LinearProgram::solve`].
//!
//! `||Z||_* = min (tr A + tr B) / 2  s.t.  M = [[A, Z], [Z^T, B]] >= 0` (`Z` in `R^{h x q}`,
//! `q = Kc`), so with the squared loss the program is the SDP
//!
//! ```text
//! min (1/2n) ||Phi Z - Y||^2 + (lambda/2) (tr A + tr B)   s.t.  M PSD.
//! ```
//!
//! Variables: `vec(Z)` (the layout of [`LinearProgram`]), then the upper triangles of `A` and
//! `B`. The loss is Clarabel's quadratic objective `(1/n) blockdiag(Phi^T Phi)` (one block per
//! output) with linear term `-(1/n) Phi^T Y`; the cone rows are `svec(M)` (upper triangle
//! column by column, off-diagonal entries scaled by `sqrt 2`, Clarabel's `PSDTriangleConeT`),
//! each a single variable, so the constraint matrix is a scaled permutation.

use std::time::Instant;

use clarabel::algebra::CscMatrix;
use clarabel::solver::{DefaultSettings, DefaultSolver, IPSolver, SupportedConeT};

use super::LinearProgram;
use crate::loss::LossKind;
use crate::solver::conic::{ConicSettings, ConicStatus};
use crate::{CvxnnError, Result};

/// Result of [`LinearProgram::solve_sdp`].
#[derive(Clone, Debug)]
pub struct LinearSdpSolution {
    /// `vec(Z)` in the program's layout.
    pub z: Vec<f64>,
    /// The program's objective at `z` (recomputed: loss + `lambda ||Z||_*`).
    pub objective: f64,
    /// The SDP's own objective (with `(tr A + tr B)/2` in place of `||Z||_*`); at an exact
    /// optimum both agree.
    pub sdp_objective: f64,
    /// How the interior-point solve ended.
    pub status: ConicStatus,
    /// Interior-point iterations.
    pub iterations: u32,
    /// Wall-clock seconds, building the SDP included.
    pub seconds: f64,
}

/// Compressed columns from `(column, row, value)` triplets (each column's rows ascending).
fn csc(nrows: usize, ncols: usize, mut t: Vec<(usize, usize, f64)>) -> CscMatrix<f64> {
    t.sort_by_key(|&(c, r, _)| (c, r));
    let mut colptr = vec![0usize; ncols + 1];
    for &(c, _, _) in &t {
        colptr[c + 1] += 1;
    }
    for c in 0..ncols {
        colptr[c + 1] += colptr[c];
    }
    let rowval = t.iter().map(|&(_, r, _)| r).collect();
    let nzval = t.iter().map(|&(_, _, v)| v).collect();
    CscMatrix::new(nrows, ncols, colptr, rowval, nzval)
}

impl LinearProgram<'_> {
    /// Solves the program exactly as an SDP (module docs) with Clarabel's interior point.
    /// Squared loss only (other losses give [`CvxnnError::InvalidArgument`] naming `loss`).
    /// A solve that does not converge is not an error: see [`LinearSdpSolution::status`].
    pub fn solve_sdp(&self, s: &ConicSettings) -> Result<LinearSdpSolution> {
        let start = Instant::now();
        if self.loss() != LossKind::Squared {
            return Err(CvxnnError::arg(
                "loss",
                format!(
                    "the SDP reference is written for the squared loss, got {}",
                    self.loss()
                ),
            ));
        }
        if !(s.tol.is_finite() && s.tol > 0.0) {
            return Err(CvxnnError::arg(
                "tol",
                format!("must be > 0, got {}", s.tol),
            ));
        }
        let (h, q, c) = (
            self.rows(),
            self.positions() * self.outputs(),
            self.outputs(),
        );
        let (n, p) = (self.samples(), self.rows() * self.positions());
        let nz = h * q;
        let big = h + q;
        let phi = self.features();
        let y = self.y();
        let inv_n = 1.0 / n as f64;

        // Variable of each upper-triangle entry (i, j) of M, in svec order.
        let mut next = nz;
        let mut rows = Vec::with_capacity(big * (big + 1) / 2);
        for j in 0..big {
            for i in 0..=j {
                let var = if i < h && j >= h {
                    (j - h) * h + i
                } else {
                    next += 1;
                    next - 1
                };
                rows.push((i, j, var));
            }
        }
        let nvars = next;
        let sqrt2 = std::f64::consts::SQRT_2;
        let a_trip: Vec<(usize, usize, f64)> = rows
            .iter()
            .enumerate()
            .map(|(r, &(i, j, var))| (var, r, if i == j { -1.0 } else { -sqrt2 }))
            .collect();
        let amat = csc(rows.len(), nvars, a_trip);

        // Quadratic term: (1/n) Phi^T Phi per output block, upper triangle.
        let gram = phi.t_matmul(phi);
        let mut p_trip = Vec::with_capacity(c * p * (p + 1) / 2);
        for o in 0..c {
            for col in 0..p {
                for r in 0..=col {
                    p_trip.push((o * p + col, o * p + r, inv_n * gram.get(r, col)));
                }
            }
        }
        let pmat = csc(nvars, nvars, p_trip);
        let mut qvec = vec![0.0; nvars];
        for o in 0..c {
            let yo = &y[o * n..(o + 1) * n];
            for col in 0..p {
                let g: f64 = phi.col(col).iter().zip(yo).map(|(a, b)| a * b).sum();
                qvec[o * p + col] = -inv_n * g;
            }
        }
        for &(i, j, var) in &rows {
            if i == j {
                qvec[var] = 0.5 * self.lambda();
            }
        }
        let constant = 0.5 * inv_n * y.iter().map(|v| v * v).sum::<f64>();
        let b = vec![0.0; rows.len()];
        let cones = [SupportedConeT::PSDTriangleConeT(big)];

        let defaults = DefaultSettings::<f64>::default();
        let settings = DefaultSettings::<f64> {
            max_iter: s.max_iter,
            time_limit: s.time_limit_s,
            verbose: s.verbose,
            tol_gap_abs: s.tol,
            tol_gap_rel: s.tol,
            tol_feas: s.tol,
            reduced_tol_gap_abs: defaults.reduced_tol_gap_abs.max(s.tol),
            reduced_tol_gap_rel: defaults.reduced_tol_gap_rel.max(s.tol),
            reduced_tol_feas: defaults.reduced_tol_feas.max(s.tol),
            ..defaults
        };
        let mut solver = DefaultSolver::new(&pmat, &qvec, &amat, &b, &cones, settings)
            .map_err(|e| CvxnnError::arg("conic program", format!("Clarabel rejected it: {e}")))?;
        solver.solve();
        let sol = &solver.solution;
        if sol.x.len() != nvars {
            return Err(CvxnnError::arg(
                "conic program",
                format!(
                    "Clarabel returned {} values for {nvars} variables",
                    sol.x.len()
                ),
            ));
        }
        let z = sol.x[..nz].to_vec();
        Ok(LinearSdpSolution {
            objective: self.objective(&z)?,
            sdp_objective: sol.obj_val + constant,
            z,
            status: ConicStatus::from(sol.status),
            iterations: sol.iterations,
            seconds: start.elapsed().as_secs_f64(),
        })
    }
}
