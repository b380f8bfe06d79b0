//! Data sets: CSV loading, label encoding, standardization, splits, gate files.
//!
//! Data flows one way through this module: a CSV file is read into a [`Table`] (raw feature
//! matrix + the target column's cells, [`TargetColumn`]), the target is encoded for its [`Task`]
//! ([`encode_target`]: numbers, or class indices of [`ClassLabels`]), the rows are
//! split ([`train_test_split`]), the features are standardized with statistics of the training
//! part only ([`Standardizer`]) and a bias column is appended ([`add_bias`]). Gates for the
//! activation patterns may be supplied by the user in a file ([`read_gates`]).
//!
//! Every loader reports bad input as a [`crate::CvxnnError`] naming the file and, where it
//! applies, the 1-based line and the column's name.

mod gates;
mod labels;
mod npy;
mod patches;
mod pooling;
mod split;
mod standardize;
mod table;

#[cfg(test)]
pub(crate) mod test_util;

pub use gates::read_gates;
pub use labels::{
    argmax_classes, binary_class, binary_targets, encode_target, one_hot, ClassLabels,
    EncodedTarget, Task,
};
pub use npy::{is_npy, read_npy, read_npy_features, read_npy_table, read_npy_target, NpyArray};
pub use patches::{patches, ConvShape};
pub use pooling::{window_masks, window_patches, window_rows, PoolKind, Pooling};
pub use split::train_test_split;
pub use standardize::Standardizer;
pub use table::{read_features, read_table, read_table_columns, Table, TargetColumn};

use crate::linalg::Matrix;

/// Returns `[x, 1]`: `x` with a column of ones appended as its LAST column (DESIGN section 0: the
/// bias is a column of ones appended to `X`, and `d` then counts it).
pub fn add_bias(x: &Matrix) -> Matrix {
    let (n, p) = (x.nrows(), x.ncols());
    let mut out = Matrix::zeros(n, p + 1);
    for j in 0..p {
        out.col_mut(j).copy_from_slice(x.col(j));
    }
    out.col_mut(p).fill(1.0);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn add_bias_appends_ones_last() {
        let x = Matrix::from_rows(&[vec![1.0, 2.0], vec![3.0, 4.0], vec![5.0, 6.0]], 2)
            .expect("rows are rectangular");
        let xb = add_bias(&x);
        assert_eq!((xb.nrows(), xb.ncols()), (3, 3));
        for i in 0..3 {
            assert_eq!(xb.get(i, 0), x.get(i, 0));
            assert_eq!(xb.get(i, 1), x.get(i, 1));
            assert_eq!(xb.get(i, 2), 1.0);
        }
    }

    #[test]
    fn add_bias_on_empty_matrices() {
        let xb = add_bias(&Matrix::zeros(2, 0));
        assert_eq!((xb.nrows(), xb.ncols()), (2, 1));
        assert_eq!(xb.col(0), &[1.0, 1.0]);
        let xb = add_bias(&Matrix::zeros(0, 3));
        assert_eq!((xb.nrows(), xb.ncols()), (0, 4));
    }
}
