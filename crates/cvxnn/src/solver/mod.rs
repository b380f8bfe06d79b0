//! Solvers: R-FISTA (group lasso), augmented Lagrangian (cone constraints), and the settings,
//! status and trace they share. Solvers see only a [`crate::operator::LinearMap`], a smooth
//! function of its image, and a [`crate::penalty::GroupL2`] penalty.

pub mod augmented_lagrangian;
pub mod conic;
pub mod fista;

use serde::{Deserialize, Serialize};

use crate::error::{CvxnnError, Result};

/// How a solve ended. Bad input is an `Err` before solving; this is the solver's own outcome.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Status {
    /// Not solved yet.
    #[default]
    Unsolved,
    /// Relative duality gap (and constraint violation) below the tolerance.
    Converged,
    /// The iteration limit was reached first; the point returned is the best so far.
    MaxIterations,
    /// The line search could not find a step (non-finite values): the data is badly scaled.
    NumericalError,
}

impl std::fmt::Display for Status {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let s = match self {
            Status::Unsolved => "unsolved",
            Status::Converged => "converged",
            Status::MaxIterations => "stopped at max iterations",
            Status::NumericalError => "numerical error",
        };
        f.write_str(s)
    }
}

/// Settings shared by the first-order solvers. Build with [`SolverSettings::default`] and
/// adjust fields; [`SolverSettings::validate`] runs before every solve.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SolverSettings {
    /// Target relative duality gap `(primal - dual) / |primal|` (and, for cone-constrained
    /// programs, relative constraint violation). Default `1e-6`.
    pub tol: f64,
    /// Maximum number of first-order iterations in total (inner iterations of the augmented
    /// Lagrangian included). Default `100000`.
    pub max_iter: usize,
    /// Initial augmented-Lagrangian penalty, as a multiple of `1/n`. Default `100` (measured best of 10, 100, 1000 on the bundled data).
    pub rho_init: f64,
    /// Precision of the dense products. [`Precision::F32`] runs the iterations on an `f32` copy
    /// of the data and finishes in `f64`, so the reported objective, gap and certificate are
    /// always computed in `f64`. Gated ReLU only (the ReLU program refuses it). Default
    /// [`Precision::F64`].
    #[serde(default)]
    pub precision: Precision,
}

/// Floating-point precision of the first-order iterations' dense products.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Precision {
    /// Everything in `f64`.
    #[default]
    F64,
    /// Products in `f32` (a faster GEMM on an extra half-size copy of the data) until the gap
    /// reaches `max(tol, 1e-6)` or rounding stops the line search, then `f64` to the tolerance.
    F32,
}

impl Default for SolverSettings {
    fn default() -> Self {
        SolverSettings {
            tol: 1e-6,
            max_iter: 100_000,
            rho_init: 100.0,
            precision: Precision::F64,
        }
    }
}

impl SolverSettings {
    /// Checks every field's domain.
    pub fn validate(&self) -> Result<()> {
        if !(self.tol.is_finite() && self.tol > 0.0) {
            return Err(CvxnnError::arg(
                "tol",
                format!("must be > 0, got {}", self.tol),
            ));
        }
        if self.max_iter == 0 {
            return Err(CvxnnError::arg("max-iter", "must be at least 1"));
        }
        if !(self.rho_init.is_finite() && self.rho_init > 0.0) {
            return Err(CvxnnError::arg(
                "rho-init",
                format!("must be > 0, got {}", self.rho_init),
            ));
        }
        Ok(())
    }
}

/// One point of a solve's trajectory, also handed to progress callbacks.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct Progress {
    /// First-order iterations so far.
    pub iteration: usize,
    /// Convex objective at the current point.
    pub objective: f64,
    /// Best dual (lower) bound so far.
    pub dual_bound: f64,
    /// Relative gap `(objective - dual_bound) / |objective|`.
    pub relative_gap: f64,
    /// Relative constraint violation (0 for unconstrained programs).
    pub violation: f64,
}

/// The result of a first-order solve.
#[derive(Clone, Debug)]
pub struct Solution {
    /// The variables.
    pub x: Vec<f64>,
    /// How the solve ended.
    pub status: Status,
    /// Convex objective at `x`.
    pub objective: f64,
    /// Best dual bound found (a lower bound on the program's optimum).
    pub dual_bound: f64,
    /// Relative constraint violation at `x` (0 when unconstrained).
    pub violation: f64,
    /// First-order iterations used.
    pub iterations: usize,
    /// Wall-clock seconds.
    pub seconds: f64,
    /// Outer trajectory (every outer step for the augmented Lagrangian; sparse for FISTA).
    pub trace: Vec<Progress>,
    /// The augmented Lagrangian's final multipliers (cone-constrained solves only), to
    /// warm-start a later solve of the same constraints.
    pub multipliers: Option<Multipliers>,
    /// The step size in use at the end (first-order solves), to warm-start a later solve of the
    /// same program without estimating `||K||` again.
    pub step: Option<f64>,
}

/// Augmented-Lagrangian state: multipliers `gamma >= 0` of the constraint rows (in the
/// operator's constraint layout) and the penalty `rho`.
#[derive(Clone, Debug, PartialEq)]
pub struct Multipliers {
    /// One multiplier per constraint value.
    pub gamma: Vec<f64>,
    /// Penalty parameter.
    pub rho: f64,
}

impl Solution {
    /// `objective - dual_bound`.
    pub fn gap(&self) -> f64 {
        self.objective - self.dual_bound
    }

    /// `gap / max(|objective|, tiny)`.
    pub fn relative_gap(&self) -> f64 {
        relative_gap(self.objective, self.dual_bound)
    }
}

/// `(primal - dual) / max(|primal|, 1e-300)`.
pub fn relative_gap(primal: f64, dual: f64) -> f64 {
    (primal - dual) / primal.abs().max(1e-300)
}
