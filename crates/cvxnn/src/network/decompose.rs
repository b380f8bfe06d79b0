//! Cone decomposition of a gated ReLU network into a ReLU network (Mishkin et al. 2022).
//!
//! A gated neuron contributes `D(g) X q` with `q = alpha u`. Writing `q = v - w` with both
//! `v, w` in the cone `K = {u : (2 D(g) - I) X u >= 0}` gives two ReLU neurons with the same
//! predictions, since `D(g) X v = (X v)_+` on `K`. We take `w = t g` (the gate lies in `K`) and
//! `v = q + t g` with the smallest `t >= 0` that puts `v` in `K`: closed form, no solve; the
//! penalty can be larger than the gated one, and the report says by how much.

use super::Network;
use crate::error::Result;
use crate::linalg::Matrix;

/// The ReLU network from the cone decomposition of a gated network on the design matrix `x`.
pub fn decompose_gated(net: &Network, x: &Matrix) -> Result<Network> {
    let Some(gates) = &net.gates else {
        return Ok(net.clone());
    };
    let d = net.input_dim();
    let xq = x.matmul(&net.hidden);
    let xg = x.matmul(gates);
    let c = net.outputs.max(1);
    let mut vars = Vec::new();
    let mut signs = Vec::new();
    let mut directions = Vec::new();
    for j in 0..net.neurons() {
        // With several outputs the neuron feeds `a * dir` (a unit direction): decompose the
        // scalar neuron `a u` and give both halves that direction.
        let weights = net.output_weights(j);
        let (a, dir) = if c == 1 {
            (weights[0], vec![1.0])
        } else {
            let s = crate::linalg::norm2(weights);
            if s == 0.0 {
                continue;
            }
            (s, weights.iter().map(|w| w / s).collect())
        };
        let mut t: f64 = 0.0;
        for (&q, &g) in xq.col(j).iter().zip(xg.col(j)) {
            // s = +1 where the gate is on. Need s * (a q + t g) >= 0, and s * g = |g|.
            let s = if g >= 0.0 { 1.0 } else { -1.0 };
            let sg = s * g;
            if sg > 0.0 {
                t = t.max(-(s * a * q) / sg);
            }
        }
        let u = net.hidden.col(j);
        let g = gates.col(j);
        let v: Vec<f64> = u.iter().zip(g).map(|(&uk, &gk)| a * uk + t * gk).collect();
        let w: Vec<f64> = g.iter().map(|&gk| t * gk).collect();
        for (vec, sign) in [(v, 1.0), (w, -1.0)] {
            if vec.iter().any(|&e| e != 0.0) {
                vars.push(vec);
                signs.push(sign);
                directions.push(dir.clone());
            }
        }
    }
    let mut hidden = Matrix::zeros(d, vars.len());
    let mut alpha = Vec::with_capacity(vars.len() * c);
    for (col, ((v, s), dir)) in vars.iter().zip(&signs).zip(&directions).enumerate() {
        let nrm = crate::linalg::norm2(v).sqrt();
        for (k, &e) in v.iter().enumerate() {
            hidden.set(k, col, e / nrm);
        }
        alpha.extend(dir.iter().map(|b| s * nrm * b));
    }
    Ok(Network {
        outputs: net.outputs,
        hidden,
        alpha,
        gates: None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decomposition_keeps_predictions() {
        let rows: Vec<Vec<f64>> = (0..12)
            .map(|i| vec![(i as f64 * 0.37).sin() * 2.0, (i as f64 * 1.3).cos(), 1.0])
            .collect();
        let x = Matrix::from_rows(&rows, 3).unwrap();
        let hidden = Matrix::from_col_major(3, 2, vec![0.5, -1.0, 0.2, 1.5, 0.3, -0.4]).unwrap();
        let gates = Matrix::from_col_major(3, 2, vec![1.0, 0.2, -0.1, -0.3, 1.0, 0.05]).unwrap();
        let net = Network {
            hidden,
            alpha: vec![1.2, -0.8],
            outputs: 1,
            gates: Some(gates),
        };
        let relu = decompose_gated(&net, &x).unwrap();
        assert!(relu.gates.is_none());
        let a = net.forward(&x).unwrap();
        let b = relu.forward(&x).unwrap();
        for (p, q) in a.iter().zip(&b) {
            assert!((p - q).abs() < 1e-10, "{p} vs {q}");
        }
    }
}
