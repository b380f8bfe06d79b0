//! Patch extraction for convolutional networks (DESIGN section 2): every sample `x`
//! (channels x height x width, or channels x length, stored row-major in its feature row) yields
//! `K` patches `x_k` in `R^h`, `h = channels * kernel area`, and `Xs = [X_1; ...; X_K]` stacks
//! patch `k` of every sample.

use serde::{Deserialize, Serialize};

use crate::error::{CvxnnError, Result};
use crate::linalg::Matrix;

/// The shape of a convolution over samples of shape `(C, H, W)` (images) or `(C, L)` (signals):
/// input shape, kernel, stride and zero padding (the same in every spatial dimension).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConvShape {
    /// Channels `C`.
    pub channels: usize,
    /// Spatial size: `[H, W]` or `[L]`.
    pub spatial: Vec<usize>,
    /// Kernel size, one entry per spatial dimension.
    pub kernel: Vec<usize>,
    /// Stride (at least 1).
    pub stride: usize,
    /// Zero padding on every side.
    pub padding: usize,
}

impl ConvShape {
    /// Checks the shape: one or two spatial dimensions, a kernel of the same rank that fits the
    /// padded input, non-zero sizes and stride. Errors name the argument (`input-shape`,
    /// `kernel`, `stride`).
    pub fn new(
        channels: usize,
        spatial: Vec<usize>,
        kernel: Vec<usize>,
        stride: usize,
        padding: usize,
    ) -> Result<ConvShape> {
        if channels == 0 || spatial.is_empty() || spatial.len() > 2 || spatial.contains(&0) {
            return Err(CvxnnError::arg(
                "input-shape",
                format!(
                    "must be C,H,W or C,L with every size at least 1, got channels {channels}, spatial {spatial:?}"
                ),
            ));
        }
        if kernel.len() != spatial.len() || kernel.contains(&0) {
            return Err(CvxnnError::arg(
                "kernel",
                format!(
                    "needs {} non-zero size(s) for a {}-D input, got {kernel:?}",
                    spatial.len(),
                    spatial.len()
                ),
            ));
        }
        if stride == 0 {
            return Err(CvxnnError::arg("stride", "must be at least 1"));
        }
        for (&s, &k) in spatial.iter().zip(&kernel) {
            if k > s + 2 * padding {
                return Err(CvxnnError::arg(
                    "kernel",
                    format!("size {k} is larger than the padded input ({s} + 2 * {padding})"),
                ));
            }
        }
        Ok(ConvShape {
            channels,
            spatial,
            kernel,
            stride,
            padding,
        })
    }

    /// Features per sample: `C * H * W` (or `C * L`).
    pub fn input_len(&self) -> usize {
        self.channels * self.spatial.iter().product::<usize>()
    }

    /// Output size per spatial dimension: `(s + 2 padding - k) / stride + 1`.
    pub fn output_size(&self) -> Vec<usize> {
        self.spatial
            .iter()
            .zip(&self.kernel)
            .map(|(&s, &k)| (s + 2 * self.padding - k) / self.stride + 1)
            .collect()
    }

    /// Number of patches `K` per sample.
    pub fn n_patches(&self) -> usize {
        self.output_size().iter().product()
    }

    /// Patch length `h = C * kernel area` (without a bias entry).
    pub fn patch_len(&self) -> usize {
        self.channels * self.kernel.iter().product::<usize>()
    }

    /// The shape written as `C,H,W` (or `C,L`), kernel `3x3`, stride and padding.
    pub fn describe(&self) -> String {
        let dims: Vec<String> = std::iter::once(self.channels)
            .chain(self.spatial.iter().copied())
            .map(|v| v.to_string())
            .collect();
        let kernel: Vec<String> = self.kernel.iter().map(|v| v.to_string()).collect();
        format!(
            "input {}, kernel {}, stride {}, padding {}",
            dims.join(","),
            kernel.join("x"),
            self.stride,
            self.padding
        )
    }
}

/// The stacked patch matrix `Xs` (`nK x h`, plus a last column of ones when `bias`): row
/// `k * n + j` is patch `k` of sample `j`, patches in row-major order of the output positions.
/// Within a patch the entries are ordered (channel, kernel row, kernel column) — the flattening
/// of a PyTorch `Conv2d`/`Conv1d` weight `(m, C, kh, kw)` — so a filter `u` in `R^h` is one
/// output channel's weight. Positions in the zero padding give zeros; the bias entry is 1 for
/// every patch (padded ones too), which makes `u`'s last entry the filter's bias, as a PyTorch
/// convolution's bias is added at every position.
///
/// `x` holds one sample per row, features row-major in `(C, H, W)` (or `(C, L)`).
pub fn patches(x: &Matrix, shape: &ConvShape, bias: bool) -> Result<Matrix> {
    if x.ncols() != shape.input_len() {
        return Err(CvxnnError::arg(
            "input-shape",
            format!(
                "{} features per sample, but the input shape {} needs {}",
                x.ncols(),
                shape.describe(),
                shape.input_len()
            ),
        ));
    }
    let n = x.nrows();
    // Treat a 1-D shape as height 1 so one loop handles both.
    let (sh, sw, kh, kw, ph) = match (shape.spatial.as_slice(), shape.kernel.as_slice()) {
        ([l], [k]) => (1, *l, 1, *k, 0),
        ([h, w], [a, b]) => (*h, *w, *a, *b, shape.padding),
        _ => {
            return Err(CvxnnError::arg(
                "input-shape",
                "needs one or two spatial dimensions",
            ))
        }
    };
    let pw = shape.padding;
    let out = shape.output_size();
    let (oh, ow) = if out.len() == 1 {
        (1, out[0])
    } else {
        (out[0], out[1])
    };
    let big_k = oh * ow;
    let h = shape.patch_len();
    let cols = h + usize::from(bias);
    let mut xs = Matrix::zeros(n * big_k, cols);
    let s = shape.stride;
    for oi in 0..oh {
        for oj in 0..ow {
            let k = oi * ow + oj;
            for c in 0..shape.channels {
                for a in 0..kh {
                    for b in 0..kw {
                        let col = (c * kh + a) * kw + b;
                        // Position in the unpadded input (signed: padding lies outside).
                        let i = (oi * s + a) as isize - ph as isize;
                        let j = (oj * s + b) as isize - pw as isize;
                        if i < 0 || j < 0 || i >= sh as isize || j >= sw as isize {
                            continue;
                        }
                        let feature = (c * sh + i as usize) * sw + j as usize;
                        let src = x.col(feature);
                        xs.col_mut(col)[k * n..(k + 1) * n].copy_from_slice(src);
                    }
                }
            }
        }
    }
    if bias {
        xs.col_mut(h).fill(1.0);
    }
    Ok(xs)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn image_patches_by_hand() {
        // One 1x3x3 sample with entries 1..9 and a second one with their negatives.
        let rows = vec![
            (1..=9).map(f64::from).collect::<Vec<_>>(),
            (1..=9).map(|v| -f64::from(v)).collect(),
        ];
        let x = Matrix::from_rows(&rows, 9).unwrap();
        let shape = ConvShape::new(1, vec![3, 3], vec![2, 2], 1, 0).unwrap();
        assert_eq!(shape.n_patches(), 4);
        let xs = patches(&x, &shape, false).unwrap();
        assert_eq!((xs.nrows(), xs.ncols()), (8, 4));
        let expect = [
            [1.0, 2.0, 4.0, 5.0],
            [2.0, 3.0, 5.0, 6.0],
            [4.0, 5.0, 7.0, 8.0],
            [5.0, 6.0, 8.0, 9.0],
        ];
        for (k, e) in expect.iter().enumerate() {
            assert_eq!(xs.row(2 * k), e.to_vec(), "patch {k} of sample 0");
            let neg: Vec<f64> = e.iter().map(|v| -v).collect();
            assert_eq!(xs.row(2 * k + 1), neg, "patch {k} of sample 1");
        }
        // Padding 1, stride 2, kernel 3: 2 x 2 positions, zeros outside, bias column of ones.
        let shape = ConvShape::new(1, vec![3, 3], vec![3, 3], 2, 1).unwrap();
        let xs = patches(&x, &shape, true).unwrap();
        assert_eq!((xs.nrows(), xs.ncols()), (8, 10));
        assert_eq!(
            xs.row(0),
            vec![0.0, 0.0, 0.0, 0.0, 1.0, 2.0, 0.0, 4.0, 5.0, 1.0]
        );
        assert_eq!(
            xs.row(6),
            vec![5.0, 6.0, 0.0, 8.0, 9.0, 0.0, 0.0, 0.0, 0.0, 1.0]
        );
    }

    #[test]
    fn signal_patches_by_hand() {
        // One 2-channel signal of length 6 would need 12 features; here 1 channel, length 6.
        let x = Matrix::from_rows(&[(0..6).map(f64::from).collect()], 6).unwrap();
        let shape = ConvShape::new(1, vec![6], vec![3], 2, 1).unwrap();
        // Padded length 8: positions 0, 2, 4 (the last ends at padded index 6).
        assert_eq!(shape.n_patches(), 3);
        let xs = patches(&x, &shape, false).unwrap();
        assert_eq!(xs.row(0), vec![0.0, 0.0, 1.0]);
        assert_eq!(xs.row(1), vec![1.0, 2.0, 3.0]);
        assert_eq!(xs.row(2), vec![3.0, 4.0, 5.0]);
        let x2 = Matrix::from_rows(&[(0..12).map(f64::from).collect()], 12).unwrap();
        let shape = ConvShape::new(2, vec![6], vec![2], 3, 0).unwrap();
        let xs = patches(&x2, &shape, false).unwrap();
        // Entries (channel, tap): channel 1 starts at feature 6.
        assert_eq!(xs.row(0), vec![0.0, 1.0, 6.0, 7.0]);
        assert_eq!(xs.row(1), vec![3.0, 4.0, 9.0, 10.0]);
    }

    #[test]
    fn bad_shapes_name_the_argument() {
        let err = |r: Result<ConvShape>| match r {
            Err(CvxnnError::InvalidArgument { name, .. }) => name,
            other => panic!("expected an argument error, got {other:?}"),
        };
        assert_eq!(
            err(ConvShape::new(1, vec![3, 3], vec![4, 4], 1, 0)),
            "kernel"
        );
        assert_eq!(err(ConvShape::new(1, vec![3, 3], vec![3], 1, 0)), "kernel");
        assert_eq!(
            err(ConvShape::new(1, vec![3, 3], vec![2, 2], 0, 0)),
            "stride"
        );
        assert_eq!(
            err(ConvShape::new(0, vec![3], vec![2], 1, 0)),
            "input-shape"
        );
        assert_eq!(err(ConvShape::new(1, vec![], vec![], 1, 0)), "input-shape");
        // A kernel that fits only with the padding is fine.
        assert!(ConvShape::new(1, vec![3, 3], vec![4, 4], 1, 1).is_ok());
        let shape = ConvShape::new(1, vec![3, 3], vec![2, 2], 1, 0).unwrap();
        let x = Matrix::zeros(2, 8);
        match patches(&x, &shape, false) {
            Err(CvxnnError::InvalidArgument { name, .. }) => assert_eq!(name, "input-shape"),
            other => panic!("expected an input-shape error, got {other:?}"),
        }
    }
}
