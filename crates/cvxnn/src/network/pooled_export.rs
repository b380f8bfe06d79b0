//! A [`PooledConvNetwork`] in PyTorch naming: `Sequential(Conv, ReLU, AvgPool(S) | MaxPool(S),
//! Flatten, Linear(m a, 1, bias=False))`, so `model.safetensors` holds `0.weight`, `0.bias`,
//! `4.weight` (and the gated model's `gate.weight`, `gate.bias`).

use std::collections::HashMap;
use std::path::Path;

use safetensors::tensor::TensorView;
use safetensors::{Dtype, SafeTensors};

use super::{Network, PooledConvNetwork};
use crate::data::{ConvShape, PoolKind, Pooling};
use crate::error::{CvxnnError, Result};
use crate::linalg::Matrix;

impl PooledConvNetwork {
    /// The PyTorch modules that reproduce the predictions from the tensors of
    /// [`PooledConvNetwork::save`] (1-D or 2-D by the shape).
    pub fn torch_modules(&self) -> String {
        let shape = &self.shape;
        let d = if shape.spatial.len() == 1 { "1d" } else { "2d" };
        let kernel: Vec<String> = shape.kernel.iter().map(|k| k.to_string()).collect();
        let kernel = if kernel.len() == 1 {
            format!("({},)", kernel[0])
        } else {
            format!("({})", kernel.join(", "))
        };
        let (m, a) = (self.filters(), self.net.outputs);
        let p = match self.pool.kind {
            PoolKind::Avg => "AvgPool",
            PoolKind::Max => "MaxPool",
        };
        let mut s = format!(
            "Sequential(Conv{d}({}, {m}, {kernel}, stride={}, padding={}, bias={}), ReLU(), {p}{d}({}), Flatten(), Linear({}, 1, bias=False)) — Flatten is channel-major: Linear weight [0, j * {a} + w] is filter j's weight on window w",
            shape.channels,
            shape.stride,
            shape.padding,
            if self.bias { "True" } else { "False" },
            self.pool.size,
            m * a,
        );
        if self.net.gates.is_some() {
            s += "; gated ReLU: each filter's on/off comes from a second convolution of the same shape (gate.weight, gate.bias) — multiply the conv output by 1[gate conv >= 0] instead of ReLU()";
        }
        s
    }

    /// Writes the weights in PyTorch naming: `0.weight` `(m, C, kh, kw)` (or `(m, C, k)`),
    /// `0.bias` `(m)` with a bias, `4.weight` `(1, m a)` (filter-major = the channel-major
    /// Flatten order); gated networks add `gate.weight`, `gate.bias`.
    pub fn save(&self, path: &Path) -> Result<()> {
        let shape = &self.shape;
        let (h, m, a) = (shape.patch_len(), self.filters(), self.net.outputs);
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
        // `alpha` is neuron-major (`alpha[j * a + w]`), exactly the Flatten order.
        let out: Vec<u8> = self
            .net
            .alpha
            .iter()
            .flat_map(|v| v.to_le_bytes())
            .collect();
        let mut tensors = vec![("0.weight", conv_shape.clone(), w)];
        if self.bias {
            tensors.push(("0.bias", vec![m], b));
        }
        tensors.push(("4.weight", vec![1, m * a], out));
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

    /// Reads the tensors written by [`PooledConvNetwork::save`] for a network of `shape` and
    /// `pool` (with a per-filter bias when `bias`, gates when `gated`); `m` comes from
    /// `0.weight`.
    pub fn load(
        path: &Path,
        shape: &ConvShape,
        bias: bool,
        gated: bool,
        pool: Pooling,
    ) -> Result<PooledConvNetwork> {
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
        let a = pool.windows(shape)?.len();
        let h = shape.patch_len();
        let (sw, _) = get("0.weight")?;
        let m = sw.first().copied().unwrap_or(0);
        let mut conv_shape = vec![m, shape.channels];
        conv_shape.extend(&shape.kernel);
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
        let (s2, alpha) = get("4.weight")?;
        if s2 != [1, m * a] {
            return Err(bad(format!(
                "`4.weight` has shape {s2:?}, expected [1, {}] ({m} filters x {a} windows)",
                m * a
            )));
        }
        Ok(PooledConvNetwork {
            shape: shape.clone(),
            bias,
            pool,
            net: Network {
                hidden,
                alpha,
                outputs: a,
                gates,
            },
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The saved tensors, applied with PyTorch's semantics (cross-correlation with zero padding
    /// and bias, ReLU, `AvgPool2d(S)` / `MaxPool2d(S)` in floor mode, channel-major `Flatten`,
    /// `Linear` without bias), give `forward`; loading gives the same network.
    #[test]
    fn saved_tensors_reproduce_predictions_as_pytorch_modules() {
        let shape = ConvShape::new(2, vec![5, 6], vec![2, 2], 1, 1).unwrap();
        let (h, m, n) = (shape.patch_len(), 3, 4);
        for kind in [PoolKind::Avg, PoolKind::Max] {
            let pool = Pooling { kind, size: 2 };
            let a = pool.windows(&shape).unwrap().len();
            let (oh, ow) = (shape.output_size()[0], shape.output_size()[1]);
            let (ph, pw) = (oh / 2, ow / 2);
            assert_eq!(a, ph * pw);
            let hidden =
                Matrix::from_fn(h + 1, m, |i, j| ((i * 7 + j * 5) % 11) as f64 / 5.0 - 1.0);
            let alpha: Vec<f64> = (0..m * a)
                .map(|i| ((i * 3) % 7) as f64 / 3.0 - 1.0)
                .collect();
            let network = PooledConvNetwork {
                shape: shape.clone(),
                bias: true,
                pool,
                net: Network {
                    hidden,
                    alpha,
                    outputs: a,
                    gates: None,
                },
            };
            let path = std::env::temp_dir().join(format!(
                "cvxnn-pooled-export-{}-{kind}.safetensors",
                std::process::id()
            ));
            network.save(&path).unwrap();
            let bytes = std::fs::read(&path).unwrap();
            let st = SafeTensors::deserialize(&bytes).unwrap();
            let read = |name: &str| -> (Vec<usize>, Vec<f64>) {
                let t = st.tensor(name).unwrap();
                let v = t
                    .data()
                    .chunks_exact(8)
                    .map(|c| f64::from_le_bytes(c.try_into().unwrap()))
                    .collect();
                (t.shape().to_vec(), v)
            };
            let ((ws, w), (_, b), (ls, lin)) = (read("0.weight"), read("0.bias"), read("4.weight"));
            assert_eq!(ws, vec![m, 2, 2, 2]);
            assert_eq!(ls, vec![1, m * a]);
            let x = Matrix::from_fn(n, shape.input_len(), |i, j| {
                ((i * 13 + j * 3) % 7) as f64 - 3.0
            });
            let scores = network.forward(&x).unwrap();
            for (s, score) in scores.iter().enumerate() {
                let conv = |f: usize, oi: usize, oj: usize| -> f64 {
                    let mut acc = b[f];
                    for c in 0..2 {
                        for p in 0..2 {
                            for q in 0..2 {
                                let i = (oi + p) as isize - 1;
                                let j = (oj + q) as isize - 1;
                                if i < 0 || j < 0 || i >= 5 || j >= 6 {
                                    continue;
                                }
                                let v = x.get(s, (c * 5 + i as usize) * 6 + j as usize);
                                acc += w[((f * 2 + c) * 2 + p) * 2 + q] * v;
                            }
                        }
                    }
                    acc.max(0.0)
                };
                let mut flat = Vec::new();
                for f in 0..m {
                    for pi in 0..ph {
                        for pj in 0..pw {
                            let vals = [(0, 0), (0, 1), (1, 0), (1, 1)]
                                .map(|(p, q)| conv(f, pi * 2 + p, pj * 2 + q));
                            flat.push(match kind {
                                PoolKind::Avg => vals.iter().sum::<f64>() / 4.0,
                                PoolKind::Max => vals.iter().copied().fold(f64::MIN, f64::max),
                            });
                        }
                    }
                }
                let out: f64 = flat.iter().zip(&lin).map(|(p, q)| p * q).sum();
                assert!(
                    (out - score).abs() <= 1e-12 * out.abs().max(1.0),
                    "{kind}: {out} vs {score}"
                );
            }
            let back = PooledConvNetwork::load(&path, &shape, true, false, pool).unwrap();
            assert_eq!(back, network);
            let _ = std::fs::remove_file(&path);
        }
    }
}
