//! Networks on raw input features, in the naming of a PyTorch
//! `Sequential(Linear(p, m), ReLU(), Linear(m, c, bias=False))` state dict, stored as safetensors.
//!
//! The preprocessing (z-scoring, bias column) is folded into the first layer so that PyTorch, fed
//! raw features, reproduces cvxnn's predictions.

use std::collections::HashMap;
use std::path::Path;

use safetensors::tensor::TensorView;
use safetensors::{Dtype, SafeTensors};

use faer::Accum;

use super::{add_neurons, forward_blocks, Network};
use crate::error::{CvxnnError, Result};
use crate::linalg::{gemm, Matrix};

/// Tensor names used in model files.
pub struct TorchNames;

impl TorchNames {
    /// First layer weight, shape `(m, p)`.
    pub const W1: &'static str = "0.weight";
    /// First layer bias, shape `(m,)`.
    pub const B1: &'static str = "0.bias";
    /// Output layer weight, shape `(c, m)`.
    pub const W2: &'static str = "2.weight";
    /// Gate weights of a gated ReLU network, shape `(m, p)`.
    pub const GATE_W: &'static str = "gate.weight";
    /// Gate biases of a gated ReLU network, shape `(m,)`.
    pub const GATE_B: &'static str = "gate.bias";
}

/// A two-layer network acting on raw features: `f(x) = sum_j w2_j act_j(W1_j x + b1_j)`, with
/// `w2_j` in `R^c`.
#[derive(Clone, Debug, PartialEq)]
pub struct RawNetwork {
    /// First layer, `m x p` (PyTorch's `(out, in)` layout).
    pub w1: Matrix,
    /// First layer bias (`m`).
    pub b1: Vec<f64>,
    /// Output weights, `m x c` row-major (neuron `j`'s at `j * c`), as in [`Network::alpha`].
    pub w2: Vec<f64>,
    /// Number of outputs `c`.
    pub outputs: usize,
    /// Gates (`m x p`) and gate biases, for gated ReLU networks.
    pub gates: Option<(Matrix, Vec<f64>)>,
}

/// Folds z-scoring and the bias column into an affine map on raw features: for each column `u`
/// of `weights` (`d x m`, design space) returns `(w, b)` with `w . x + b = u . design(x)`.
fn fold(weights: &Matrix, mean: &[f64], scale: &[f64], bias: bool) -> (Matrix, Vec<f64>) {
    let p = mean.len();
    let m = weights.ncols();
    let mut w = Matrix::zeros(m, p);
    let mut b = vec![0.0; m];
    for (j, bj_out) in b.iter_mut().enumerate() {
        let u = weights.col(j);
        let mut bj = if bias { u[p] } else { 0.0 };
        for k in 0..p {
            let wk = u[k] / scale[k];
            w.set(j, k, wk);
            bj -= mean[k] * wk;
        }
        *bj_out = bj;
    }
    (w, b)
}

/// Inverse of [`fold`]: design-space weights (`d x m`) from raw `(w, b)`.
fn unfold(w: &Matrix, b: &[f64], mean: &[f64], scale: &[f64], bias: bool) -> Result<Matrix> {
    let p = mean.len();
    let d = p + usize::from(bias);
    let m = w.nrows();
    let mut u = Matrix::zeros(d, m);
    for (j, &bj) in b.iter().enumerate().take(m) {
        let mut ub = bj;
        for k in 0..p {
            u.set(k, j, w.get(j, k) * scale[k]);
            ub += mean[k] * w.get(j, k);
        }
        if bias {
            u.set(p, j, ub);
        } else if ub.abs() > 1e-9 * (1.0 + bj.abs()) {
            return Err(CvxnnError::arg(
                "no-bias",
                format!("neuron {j} has a hidden bias, which a model without bias column cannot express"),
            ));
        }
    }
    Ok(u)
}

impl RawNetwork {
    /// Folds the preprocessing (`mean`, `scale` per raw feature; a trailing bias column when
    /// `bias`) into a design-space network.
    pub fn from_network(
        net: &Network,
        mean: &[f64],
        scale: &[f64],
        bias: bool,
    ) -> Result<RawNetwork> {
        let p = mean.len();
        if scale.len() != p || net.input_dim() != p + usize::from(bias) {
            return Err(CvxnnError::Shape(format!(
                "network takes {} inputs; preprocessing has {p} features{}",
                net.input_dim(),
                if bias { " plus bias" } else { "" }
            )));
        }
        let (w1, b1) = fold(&net.hidden, mean, scale, bias);
        let gates = net.gates.as_ref().map(|g| fold(g, mean, scale, bias));
        Ok(RawNetwork {
            w1,
            b1,
            w2: net.alpha.clone(),
            outputs: net.outputs,
            gates,
        })
    }

    /// The design-space network equivalent to this one under the given preprocessing.
    pub fn to_network(&self, mean: &[f64], scale: &[f64], bias: bool) -> Result<Network> {
        if self.w1.ncols() != mean.len() || scale.len() != mean.len() {
            return Err(CvxnnError::Shape(format!(
                "network takes {} raw features, data has {}",
                self.w1.ncols(),
                mean.len()
            )));
        }
        let hidden = unfold(&self.w1, &self.b1, mean, scale, bias)?;
        let gates = match &self.gates {
            Some((gw, gb)) => Some(unfold(gw, gb, mean, scale, bias)?),
            None => None,
        };
        Ok(Network {
            hidden,
            alpha: self.w2.clone(),
            outputs: self.outputs,
            gates,
        })
    }

    /// Number of hidden neurons.
    pub fn neurons(&self) -> usize {
        self.w1.nrows()
    }

    /// Predictions on raw features (`n x p`).
    pub fn forward(&self, raw: &Matrix) -> Result<Vec<f64>> {
        if raw.ncols() != self.w1.ncols() {
            return Err(CvxnnError::Shape(format!(
                "network takes {} features, data has {}",
                self.w1.ncols(),
                raw.ncols()
            )));
        }
        // `x w^T + b` for a block of rows (weights stored neuron by row, as PyTorch does).
        let layer = |xb: faer::MatRef<'_, f64>, w: &Matrix, bias: &[f64]| {
            let mut pre = Matrix::zeros(xb.nrows(), w.nrows());
            gemm(
                pre.as_mut(),
                Accum::Replace,
                xb,
                w.as_ref().transpose(),
                1.0,
            );
            for (j, &bj) in bias.iter().enumerate() {
                pre.col_mut(j).iter_mut().for_each(|v| *v += bj);
            }
            pre
        };
        Ok(forward_blocks(raw, self.outputs, |xb, ob| {
            let pre = layer(xb, &self.w1, &self.b1);
            let gate = self.gates.as_ref().map(|(gw, gb)| layer(xb, gw, gb));
            add_neurons(ob, &pre, gate.as_ref(), &self.w2);
        }))
    }

    /// Writes the weights as f64 safetensors with PyTorch names ([`TorchNames`]).
    pub fn save(&self, path: &Path) -> Result<()> {
        let (m, p) = (self.w1.nrows(), self.w1.ncols());
        let mut tensors: Vec<(String, Vec<usize>, Vec<u8>)> = vec![
            (TorchNames::W1.into(), vec![m, p], row_major_bytes(&self.w1)),
            (TorchNames::B1.into(), vec![m], le_bytes(&self.b1)),
            (
                TorchNames::W2.into(),
                vec![self.outputs, m],
                le_bytes(&transpose(&self.w2, m, self.outputs)),
            ),
        ];
        if let Some((gw, gb)) = &self.gates {
            tensors.push((TorchNames::GATE_W.into(), vec![m, p], row_major_bytes(gw)));
            tensors.push((TorchNames::GATE_B.into(), vec![m], le_bytes(gb)));
        }
        let views = tensors
            .iter()
            .map(|(name, shape, bytes)| {
                TensorView::new(Dtype::F64, shape.clone(), bytes)
                    .map(|v| (name.clone(), v))
                    .map_err(|e| CvxnnError::Model {
                        path: path.into(),
                        message: e.to_string(),
                    })
            })
            .collect::<Result<Vec<_>>>()?;
        // One metadata entry only: safetensors writes a HashMap, whose order (and so the file's
        // bytes) would change from run to run with more. `model.json` records the version.
        let mut info = HashMap::new();
        info.insert("format".to_string(), "pt".to_string());
        let bytes = safetensors::serialize(views, Some(info)).map_err(|e| CvxnnError::Model {
            path: path.into(),
            message: e.to_string(),
        })?;
        std::fs::write(path, bytes).map_err(|e| CvxnnError::io(path, e))
    }

    /// Reads weights named like a PyTorch `Sequential(Linear, ReLU, Linear(bias=False))` state
    /// dict (f32 or f64); gates are read when present.
    pub fn load(path: &Path) -> Result<RawNetwork> {
        let bytes = std::fs::read(path).map_err(|e| CvxnnError::io(path, e))?;
        let bad = |message: String| CvxnnError::Model {
            path: path.into(),
            message,
        };
        let st = SafeTensors::deserialize(&bytes)
            .map_err(|e| bad(format!("not a safetensors file: {e}")))?;
        let get = |name: &str| -> Result<(Vec<usize>, Vec<f64>)> {
            let t = st.tensor(name).map_err(|_| {
                bad(format!(
                    "no tensor `{name}` (expected {}, {}, {} as saved by a PyTorch Sequential(Linear, ReLU, Linear(bias=False)); found {:?})",
                    TorchNames::W1,
                    TorchNames::B1,
                    TorchNames::W2,
                    st.names()
                ))
            })?;
            let vals = match t.dtype() {
                Dtype::F64 => t
                    .data()
                    .chunks_exact(8)
                    .map(|c| f64::from_le_bytes(c.try_into().unwrap_or([0; 8])))
                    .collect(),
                Dtype::F32 => t
                    .data()
                    .chunks_exact(4)
                    .map(|c| f32::from_le_bytes(c.try_into().unwrap_or([0; 4])) as f64)
                    .collect(),
                other => {
                    return Err(bad(format!(
                        "tensor `{name}` has dtype {other:?}; f32 or f64 expected"
                    )))
                }
            };
            Ok((t.shape().to_vec(), vals))
        };
        let (s1, w1) = get(TorchNames::W1)?;
        if s1.len() != 2 {
            return Err(bad(format!(
                "`{}` must be 2-D, has shape {s1:?}",
                TorchNames::W1
            )));
        }
        let (m, p) = (s1[0], s1[1]);
        let (sb, b1) = get(TorchNames::B1)?;
        if sb != [m] {
            return Err(bad(format!(
                "`{}` has shape {sb:?}, expected [{m}]",
                TorchNames::B1
            )));
        }
        let (s2, w2) = get(TorchNames::W2)?;
        let outputs = match s2.as_slice() {
            [c, mm] if *mm == m && *c >= 1 => *c,
            [mm] if *mm == m => 1,
            _ => {
                return Err(bad(format!(
                    "`{}` has shape {s2:?}, expected [c, {m}] (c outputs)",
                    TorchNames::W2
                )))
            }
        };
        // PyTorch stores (c, m); the network keeps neuron-major rows.
        let w2 = transpose(&w2, outputs, m);
        let gates = if st.names().contains(&TorchNames::GATE_W) {
            let (sg, gw) = get(TorchNames::GATE_W)?;
            let (sgb, gb) = get(TorchNames::GATE_B)?;
            if sg != [m, p] || sgb != [m] {
                return Err(bad(
                    "gate tensors do not match the first layer's shape".into()
                ));
            }
            Some((from_row_major(m, p, &gw), gb))
        } else {
            None
        };
        if w1.iter().chain(&b1).chain(&w2).any(|v| !v.is_finite()) {
            return Err(bad("weights contain NaN or infinity".into()));
        }
        Ok(RawNetwork {
            w1: from_row_major(m, p, &w1),
            b1,
            w2,
            outputs,
            gates,
        })
    }
}

/// The `cols x rows` transpose of a row-major `rows x cols` array.
fn transpose(v: &[f64], rows: usize, cols: usize) -> Vec<f64> {
    (0..cols)
        .flat_map(|k| (0..rows).map(move |j| v[j * cols + k]))
        .collect()
}

fn le_bytes(v: &[f64]) -> Vec<u8> {
    v.iter().flat_map(|x| x.to_le_bytes()).collect()
}

fn row_major_bytes(m: &Matrix) -> Vec<u8> {
    let mut out = Vec::with_capacity(m.nrows() * m.ncols() * 8);
    for i in 0..m.nrows() {
        for j in 0..m.ncols() {
            out.extend_from_slice(&m.get(i, j).to_le_bytes());
        }
    }
    out
}

fn from_row_major(m: usize, p: usize, v: &[f64]) -> Matrix {
    let mut out = Matrix::zeros(m, p);
    for i in 0..m {
        for j in 0..p {
            out.set(i, j, v[i * p + j]);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fold_unfold_round_trip_and_forward_agree() {
        // d = 2 features + bias; two neurons.
        let hidden = Matrix::from_col_major(3, 2, vec![1.0, -2.0, 0.5, -0.3, 0.8, 0.1]).unwrap();
        let net = Network {
            hidden,
            alpha: vec![1.5, -0.7],
            outputs: 1,
            gates: None,
        };
        let (mean, scale) = (vec![3.0, -1.0], vec![2.0, 0.5]);
        let raw = RawNetwork::from_network(&net, &mean, &scale, true).unwrap();
        let back = raw.to_network(&mean, &scale, true).unwrap();
        for (a, b) in back.hidden.as_slice().iter().zip(net.hidden.as_slice()) {
            assert!((a - b).abs() < 1e-12);
        }
        let xr = Matrix::from_rows(&[vec![1.0, 2.0], vec![4.0, -1.5], vec![3.0, -1.0]], 2).unwrap();
        let mut design = Matrix::zeros(3, 3);
        for i in 0..3 {
            for k in 0..2 {
                design.set(i, k, (xr.get(i, k) - mean[k]) / scale[k]);
            }
            design.set(i, 2, 1.0);
        }
        let a = raw.forward(&xr).unwrap();
        let b = net.forward(&design).unwrap();
        for (u, v) in a.iter().zip(&b) {
            assert!((u - v).abs() < 1e-12);
        }
        let dir = std::env::temp_dir().join(format!("cvxnn-export-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let f = dir.join("m.safetensors");
        raw.save(&f).unwrap();
        assert_eq!(RawNetwork::load(&f).unwrap(), raw);
        std::fs::remove_dir_all(&dir).ok();
    }
}
