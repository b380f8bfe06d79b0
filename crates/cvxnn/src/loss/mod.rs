//! Data-fit terms. A loss works on the operator's output `z` (predictions), never on the weights.

use serde::{Deserialize, Serialize};

/// Which data-fit term a program uses.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum LossKind {
    /// `(p - y)^2 / 2` per sample (regression; also usable on ±1 labels).
    Squared,
    /// `log(1 + exp(-y p))` per sample, labels ±1 (binary classification).
    Logistic,
}
