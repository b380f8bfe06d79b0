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

/// How a program with several outputs connects its neurons to them (DESIGN section 1,
/// "Multiple outputs").
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum OutputMode {
    /// Each hidden neuron feeds one output: a group-L2 penalty per (pattern, output) column.
    /// Exact for that architecture (ReLU and gated ReLU).
    #[default]
    Separate,
    /// Every hidden neuron feeds all outputs. For gated ReLU the exact program penalizes each
    /// pattern's `d x c` block by its nuclear norm (Sahiner et al., ICLR 2021); for ReLU that
    /// penalty is cone-constrained and NP-hard in general, and the model is solved in factored
    /// (Burer-Monteiro) form by [`SharedReluProgram`] with a certified lower bound.
    Shared,
}

impl std::fmt::Display for OutputMode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            OutputMode::Separate => "separate",
            OutputMode::Shared => "shared",
        })
    }
}

mod avg_pool;
pub mod burer_monteiro;
pub mod circular;
pub mod circular_relu;
mod cnn;
mod cnn3;
pub mod column_generation;
pub mod deep_linear;
pub mod linear;
mod linear_sdp;
mod max_pool;
pub mod polish;
mod two_layer;
mod working_set;

pub use avg_pool::AvgPoolProgram;
pub use burer_monteiro::{
    solve_shared_relu_bm, BmBound, BmFactors, BmSolution, GapKind, SharedReluProgram,
};
pub use circular::{CircularCnn, CircularProgram};
pub use circular_relu::{CircularReluCnn, CircularReluProgram};
pub use cnn::ConvProgram;
pub use cnn3::Cnn3Program;
pub use column_generation::{
    solve_column_generation, ColumnGenerationEnd, ColumnGenerationOutcome, ColumnGenerationRound,
    ColumnGenerationSettings, RoundSolver,
};
pub use linear::{LinearNetwork, LinearPool, LinearProgram};
pub use linear_sdp::LinearSdpSolution;
pub use max_pool::{exact_joint_patterns, sampled_joint_patterns, JointPatterns, MaxPoolProgram};
pub use two_layer::TwoLayerProgram;

/// The checks every program's constructor shares (after its own shape checks): patterns to
/// solve over, `lambda > 0` and finite, finite data, and targets that fit the loss.
pub(crate) fn check_inputs(
    x: &crate::linalg::Matrix,
    y: &[f64],
    outputs: usize,
    masks: &crate::patterns::Masks,
    loss: crate::loss::LossKind,
    lambda: f64,
) -> crate::Result<()> {
    if masks.is_empty() {
        return Err(crate::CvxnnError::arg(
            "patterns",
            "no activation pattern to solve over",
        ));
    }
    if !(lambda.is_finite() && lambda > 0.0) {
        return Err(crate::CvxnnError::arg(
            "lambda",
            format!("must be a finite number > 0, got {lambda}"),
        ));
    }
    if let Some(v) = x.as_slice().iter().find(|v| !v.is_finite()) {
        return Err(crate::CvxnnError::arg("x", format!("data contains {v}")));
    }
    loss.check_targets(y, outputs)
}

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
