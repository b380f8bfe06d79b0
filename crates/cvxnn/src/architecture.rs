//! Which network a model is: the architecture tag in `model.json`, the CNN-specific metadata, and
//! [`ModelNetwork`], the network on raw features whatever its architecture. Every model kind goes
//! through the same train / predict / report / model-file path ([`crate::estimator`]); a new
//! architecture adds a variant here, an arm in [`ModelNetwork`]'s methods and its training arm
//! in [`crate::conv`] (CNNs) or [`crate::estimator`] (dense).

use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::data::{ConvShape, PoolKind, Pooling};
use crate::error::{CvxnnError, Result};
use crate::linalg::Matrix;
use crate::network::{ConvNetwork, PooledConvNetwork, RawNetwork};

/// The architecture of a saved model (`model.json: architecture`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Architecture {
    /// Two-layer fully connected network (`Linear, ReLU, Linear`).
    #[default]
    TwoLayer,
    /// Two-layer CNN with global sum pooling (`Conv, ReLU, AdaptiveAvgPool(1), Flatten,
    /// Linear`), DESIGN section 2.
    CnnSumPool,
    /// Two-layer CNN with local average pooling (`Conv, ReLU, AvgPool(S), Flatten, Linear`),
    /// [`crate::program::AvgPoolProgram`]; the window size is in [`ConvSpec::pool`].
    CnnAvgPool,
    /// Two-layer CNN with local max pooling (`Conv, ReLU, MaxPool(S), Flatten, Linear`),
    /// [`crate::program::MaxPoolProgram`]; the window size is in [`ConvSpec::pool`].
    CnnMaxPool,
}

impl Architecture {
    /// Whether the network is convolutional (its metadata carries a [`ConvSpec`]).
    pub fn is_conv(self) -> bool {
        !matches!(self, Architecture::TwoLayer)
    }

    /// Name as written in `model.json`.
    pub fn name(self) -> &'static str {
        match self {
            Architecture::TwoLayer => "two-layer",
            Architecture::CnnSumPool => "cnn-sum-pool",
            Architecture::CnnAvgPool => "cnn-avg-pool",
            Architecture::CnnMaxPool => "cnn-max-pool",
        }
    }

    /// Whether the network pools over local windows (its spec carries a [`Pooling`]).
    pub fn is_pooled(self) -> bool {
        matches!(self, Architecture::CnnAvgPool | Architecture::CnnMaxPool)
    }

    /// The pooled architecture of a pooling kind.
    pub fn pooled(kind: PoolKind) -> Architecture {
        match kind {
            PoolKind::Avg => Architecture::CnnAvgPool,
            PoolKind::Max => Architecture::CnnMaxPool,
        }
    }
}

impl std::fmt::Display for Architecture {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// What a CNN training run needs besides [`crate::estimator::TrainConfig`]: the architecture
/// and the convolution shape.
#[derive(Clone, Debug, PartialEq)]
pub struct ConvConfig {
    /// A convolutional [`Architecture`].
    pub architecture: Architecture,
    /// Input shape, kernel, stride, padding.
    pub shape: ConvShape,
    /// Local pooling window (the pooled architectures; `None` for the others).
    pub pool: Option<Pooling>,
}

/// The CNN part of `model.json` (flattened into it, as the first CNN files wrote it).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ConvSpec {
    /// Convolution shape.
    pub shape: ConvShape,
    /// The one global scale features were divided by before solving (folded into the filters).
    pub feature_scale: f64,
    /// Filters `m` (the model's neurons).
    pub filters: usize,
    /// The PyTorch modules that reproduce the predictions from `model.safetensors`.
    pub torch_modules: String,
    /// Local pooling (the pooled architectures only; absent in sum-pool files).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pool: Option<Pooling>,
}

/// The CNN part of `report.json` (flattened into it).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ConvReportPart {
    /// Architecture.
    pub architecture: Architecture,
    /// Convolution shape, as text (`input 1,8,8, kernel 3x3, stride 1, padding 0`).
    pub shape: String,
    /// Patches per sample `K`.
    pub patches: usize,
    /// Filter length `h` (bias entry included).
    pub filter_len: usize,
    /// The global feature scale.
    pub feature_scale: f64,
    /// Local pooling, `avg:2` (pooled architectures only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pool: Option<String>,
    /// Pooled architectures: whether the solved program is exact for the full architecture
    /// (every filter feeding every window) with the patterns used; see `exact_for`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exact: Option<bool>,
    /// Pooled architectures: the networks the solved program is exact for, in words.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exact_for: Option<String>,
    /// Warm start of the sum-pooling ReLU CNN: `"sgd"` (a CNN trained by full-batch Adam).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub init: Option<String>,
    /// Objective of the warm-start (Adam) CNN, in the program's units.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub init_objective: Option<f64>,
    /// Seconds Adam ran.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub init_seconds: Option<f64>,
    /// Whether the Adam CNN is the returned network (its objective was strictly below the rebuilt
    /// convex network's); `network_objective` is the returned network's either way.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub init_kept: Option<bool>,
    /// With a warm start: objective of the network rebuilt from the convex solution.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rebuilt_objective: Option<f64>,
    /// With a warm start: activation patterns the Adam filters added to the program.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub init_patterns: Option<usize>,
}

/// A trained network on raw features (preprocessing folded in), output in target units.
#[derive(Clone, Debug, PartialEq)]
pub enum ModelNetwork {
    /// Fully connected ([`Architecture::TwoLayer`]).
    Dense(RawNetwork),
    /// Convolutional with global sum pooling ([`Architecture::CnnSumPool`]).
    Conv(ConvNetwork),
    /// Convolutional with local average or max pooling ([`Architecture::CnnAvgPool`],
    /// [`Architecture::CnnMaxPool`]).
    Pooled(PooledConvNetwork),
}

impl ModelNetwork {
    /// Outputs on raw features (`n x c`, column-major).
    pub fn forward(&self, raw: &Matrix) -> Result<Vec<f64>> {
        match self {
            ModelNetwork::Dense(n) => n.forward(raw),
            ModelNetwork::Conv(n) => n.forward(raw),
            ModelNetwork::Pooled(n) => n.forward(raw),
        }
    }

    /// Hidden neurons (filters of a CNN).
    pub fn neurons(&self) -> usize {
        match self {
            ModelNetwork::Dense(n) => n.w1.nrows(),
            ModelNetwork::Conv(n) => n.filters(),
            ModelNetwork::Pooled(n) => n.filters(),
        }
    }

    /// Outputs `c`.
    pub fn outputs(&self) -> usize {
        match self {
            ModelNetwork::Dense(n) => n.outputs,
            ModelNetwork::Conv(n) => n.net.outputs,
            // One output: the Linear layer maps the `m a` pooled values to one score.
            ModelNetwork::Pooled(_) => 1,
        }
    }

    /// Raw features the network takes.
    pub fn input_len(&self) -> usize {
        match self {
            ModelNetwork::Dense(n) => n.w1.ncols(),
            ModelNetwork::Conv(n) => n.shape.input_len(),
            ModelNetwork::Pooled(n) => n.shape.input_len(),
        }
    }

    /// The fully connected network (`None` for a CNN).
    pub fn dense(&self) -> Option<&RawNetwork> {
        match self {
            ModelNetwork::Dense(n) => Some(n),
            _ => None,
        }
    }

    /// The CNN (`None` for a fully connected network).
    pub fn conv(&self) -> Option<&ConvNetwork> {
        match self {
            ModelNetwork::Conv(n) => Some(n),
            _ => None,
        }
    }

    /// The locally pooled CNN (`None` for the others).
    pub fn pooled(&self) -> Option<&PooledConvNetwork> {
        match self {
            ModelNetwork::Pooled(n) => Some(n),
            _ => None,
        }
    }

    /// The PyTorch modules that reproduce the predictions (CNNs; `None` for dense).
    pub fn torch_modules(&self) -> Option<String> {
        match self {
            ModelNetwork::Dense(_) => None,
            ModelNetwork::Conv(n) => Some(n.torch_modules()),
            ModelNetwork::Pooled(n) => Some(n.torch_modules()),
        }
    }

    /// Writes the weights in PyTorch naming.
    pub fn save(&self, path: &Path) -> Result<()> {
        match self {
            ModelNetwork::Dense(n) => n.save(path),
            ModelNetwork::Conv(n) => n.save(path),
            ModelNetwork::Pooled(n) => n.save(path),
        }
    }

    /// Reads the weights of an `architecture` network (`conv`: its spec, `bias`, `gated` for
    /// CNNs).
    pub fn load(
        path: &Path,
        architecture: Architecture,
        conv: Option<&ConvSpec>,
        bias: bool,
        gated: bool,
    ) -> Result<ModelNetwork> {
        match (architecture, conv) {
            (Architecture::TwoLayer, _) => Ok(ModelNetwork::Dense(RawNetwork::load(path)?)),
            (Architecture::CnnSumPool, Some(spec)) => Ok(ModelNetwork::Conv(ConvNetwork::load(
                path,
                &spec.shape,
                bias,
                gated,
            )?)),
            (Architecture::CnnAvgPool | Architecture::CnnMaxPool, Some(spec)) => {
                let pool = spec.pool.ok_or_else(|| CvxnnError::Model {
                    path: path.into(),
                    message: "a pooled CNN model needs its `pool` in model.json".into(),
                })?;
                let net = PooledConvNetwork::load(path, &spec.shape, bias, gated, pool)?;
                if Architecture::pooled(pool.kind) != architecture {
                    return Err(CvxnnError::Model {
                        path: path.into(),
                        message: format!("a {architecture} model with pooling {}", pool.describe()),
                    });
                }
                Ok(ModelNetwork::Pooled(net))
            }
            (a, None) => Err(CvxnnError::Model {
                path: path.into(),
                message: format!("a {a} model needs its `shape` and `feature_scale` in model.json"),
            }),
        }
    }
}
