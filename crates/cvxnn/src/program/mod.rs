//! Convex programs: operator + loss + penalty + constraints, one constructor per theorem.

use serde::{Deserialize, Serialize};

/// Which two-layer model's convex program to solve.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ModelKind {
    /// Gated ReLU: unconstrained group lasso over fixed gates (Mishkin et al. 2022).
    GatedRelu,
    /// ReLU: the exact cone-constrained program (Pilanci & Ergen 2020).
    Relu,
}

pub mod column_generation;
pub mod polish;
mod two_layer;

pub use column_generation::{
    solve_column_generation, ColumnGenerationEnd, ColumnGenerationOutcome, ColumnGenerationRound,
    ColumnGenerationSettings, RoundSolver,
};
pub use two_layer::TwoLayerProgram;

impl ModelKind {
    /// Variable columns per pattern (`1` for gated, `2` for ReLU: `v_i` and `w_i`).
    pub fn columns_per_pattern(self) -> usize {
        match self {
            ModelKind::GatedRelu => 1,
            ModelKind::Relu => 2,
        }
    }

    /// `Err` naming `precision` when the model's solver cannot run at `precision`: single
    /// precision is for gated ReLU (R-FISTA) only; the ReLU program's augmented Lagrangian
    /// runs in f64.
    pub fn check_precision(self, precision: crate::solver::Precision) -> crate::Result<()> {
        if precision == crate::solver::Precision::F32 && self == ModelKind::Relu {
            return Err(crate::CvxnnError::arg(
                "precision",
                "f32 applies to --model gated-relu (R-FISTA); the ReLU program's augmented Lagrangian runs in f64",
            ));
        }
        Ok(())
    }
}

impl std::fmt::Display for ModelKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            ModelKind::GatedRelu => "gated-relu",
            ModelKind::Relu => "relu",
        })
    }
}
