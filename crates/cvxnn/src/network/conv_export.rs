//! A [`ConvNetwork`] in PyTorch naming: `model.safetensors` tensors and the module list that
//! reproduces its predictions from them.

use std::collections::HashMap;
use std::path::Path;

use safetensors::tensor::TensorView;
use safetensors::{Dtype, SafeTensors};

use super::ConvNetwork;
use crate::data::ConvShape;
use crate::error::{CvxnnError, Result};
use crate::linalg::Matrix;

impl ConvNetwork {
    /// The PyTorch modules that reproduce the predictions from the tensors of
    /// [`ConvNetwork::save`] (1-D or 2-D by the shape).
    pub fn torch_modules(&self) -> String {
        let shape = &self.shape;
        let (m, c) = (self.filters(), self.net.outputs);
        let d = if shape.spatial.len() == 1 { "1d" } else { "2d" };
        let kernel: Vec<String> = shape.kernel.iter().map(|k| k.to_string()).collect();
        let kernel = if kernel.len() == 1 {
            format!("({},)", kernel[0])
        } else {
            format!("({})", kernel.join(", "))
        };
        let mut s = format!(
            "Sequential(Conv{d}({}, {m}, {kernel}, stride={}, padding={}, bias={}), ReLU(), AdaptiveAvgPool{d}(1), Flatten(), Linear({m}, {c}, bias=False)) — the Linear weight holds alpha * K (K = {} patches), so the average pooling times K is cvxnn's sum pooling",
            shape.channels,
            shape.stride,
            shape.padding,
            if self.bias { "True" } else { "False" },
            shape.n_patches()
        );
        if self.net.gates.is_some() {
            s += "; gated ReLU: each filter's on/off comes from a second convolution of the same shape (gate.weight, gate.bias) — multiply the conv output by 1[gate conv >= 0] instead of ReLU()";
        }
        s
    }

    /// Writes the weights in PyTorch naming (see [`ConvNetwork::torch_modules`]): `0.weight`
    /// `(m, C, kh, kw)` (or `(m, C, k)`), `0.bias` `(m)` with a bias, `4.weight` `(c, m)` =
    /// `alpha * K`; gated networks add `gate.weight`, `gate.bias` (the filters' shapes).
    pub fn save(&self, path: &Path) -> Result<()> {
        let shape = &self.shape;
        let (h, m, c) = (shape.patch_len(), self.filters(), self.net.outputs);
        let k = shape.n_patches() as f64;
        let mut conv_shape = vec![m, shape.channels];
        conv_shape.extend(&shape.kernel);
        let filters = |w: &Matrix| -> (Vec<u8>, Vec<u8>) {
            let mut wb = Vec::with_capacity(m * h * 8);
            let mut bb = Vec::with_capacity(m * 8);
            for j in 0..m {
                let col = w.col(j);
                col[..h].iter().for_each(|v| wb.extend(v.to_le_bytes()));
                bb.extend(if self.bias { col[h] } else { 0.0 }.to_le_bytes());
            }
            (wb, bb)
        };
        let (w, b) = filters(&self.net.hidden);
        // PyTorch's Linear weight is (c, m); the network keeps neuron-major rows.
        let mut out = Vec::with_capacity(c * m * 8);
        for o in 0..c {
            for j in 0..m {
                out.extend((self.net.alpha[j * c + o] * k).to_le_bytes());
            }
        }
        let mut tensors = vec![("0.weight", conv_shape.clone(), w)];
        if self.bias {
            tensors.push(("0.bias", vec![m], b));
        }
        tensors.push(("4.weight", vec![c, m], out));
        if let Some(g) = &self.net.gates {
            let (gw, gb) = filters(g);
            tensors.push(("gate.weight", conv_shape, gw));
            tensors.push(("gate.bias", vec![m], gb));
        }
        let bad = |e: String| CvxnnError::Model {
            path: path.into(),
            message: e,
        };
        let views = tensors
            .iter()
            .map(|(name, s, bytes)| {
                TensorView::new(Dtype::F64, s.clone(), bytes)
                    .map(|v| (name.to_string(), v))
                    .map_err(|e| bad(e.to_string()))
            })
            .collect::<Result<Vec<_>>>()?;
        let mut info = HashMap::new();
        info.insert("format".to_string(), "pt".to_string());
        let bytes = safetensors::serialize(views, Some(info)).map_err(|e| bad(e.to_string()))?;
        std::fs::write(path, bytes).map_err(|e| CvxnnError::io(path, e))
    }

    /// Reads the tensors written by [`ConvNetwork::save`] for a network of `shape` (with a
    /// per-filter bias when `bias`; with gates when `gated`). The filter count `m` and the
    /// outputs `c` come from `4.weight` (`(c, m)`, or `(m)` for one output).
    pub fn load(path: &Path, shape: &ConvShape, bias: bool, gated: bool) -> Result<ConvNetwork> {
        let bytes = std::fs::read(path).map_err(|e| CvxnnError::io(path, e))?;
        let bad = |message: String| CvxnnError::Model {
            path: path.into(),
            message,
        };
        let st = SafeTensors::deserialize(&bytes)
            .map_err(|e| bad(format!("not a safetensors file: {e}")))?;
        let get = |name: &str| -> Result<(Vec<usize>, Vec<f64>)> {
            let t = st
                .tensor(name)
                .map_err(|_| bad(format!("no tensor `{name}`")))?;
            let vals: Vec<f64> = match t.dtype() {
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
                other => return Err(bad(format!("tensor `{name}` has dtype {other:?}"))),
            };
            if vals.iter().any(|v| !v.is_finite()) {
                return Err(bad(format!("tensor `{name}` holds NaN or infinity")));
            }
            Ok((t.shape().to_vec(), vals))
        };
        let (s2, w2) = get("4.weight")?;
        let (c, m) = match s2.as_slice() {
            [c, m] if *c >= 1 => (*c, *m),
            [m] => (1, *m),
            _ => {
                return Err(bad(format!(
                    "`4.weight` has shape {s2:?}, expected [c, m] (c outputs, m filters)"
                )))
            }
        };
        let h = shape.patch_len();
        let mut conv_shape = vec![m, shape.channels];
        conv_shape.extend(&shape.kernel);
        let k = shape.n_patches() as f64;
        let rows = h + usize::from(bias);
        let filters = |w: &str, b: &str| -> Result<Matrix> {
            let (sw, wv) = get(w)?;
            if sw != conv_shape {
                return Err(bad(format!(
                    "`{w}` has shape {sw:?}, expected {conv_shape:?}"
                )));
            }
            let bv = if bias {
                let (sb, bv) = get(b)?;
                if sb != [m] {
                    return Err(bad(format!("`{b}` has shape {sb:?}, expected [{m}]")));
                }
                bv
            } else {
                vec![0.0; m]
            };
            Ok(Matrix::from_fn(rows, m, |i, j| {
                if i < h {
                    wv[j * h + i]
                } else {
                    bv[j]
                }
            }))
        };
        let hidden = filters("0.weight", "0.bias")?;
        let gates = if gated {
            Some(filters("gate.weight", "gate.bias")?)
        } else {
            None
        };
        let mut alpha = vec![0.0; m * c];
        for o in 0..c {
            for j in 0..m {
                alpha[j * c + o] = w2[o * m + j] / k;
            }
        }
        Ok(ConvNetwork {
            shape: shape.clone(),
            bias,
            net: super::Network {
                hidden,
                alpha,
                outputs: c,
                gates,
            },
        })
    }
}
