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
