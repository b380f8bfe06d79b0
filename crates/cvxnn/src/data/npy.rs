//! `.npy` inputs: a feature array of shape `(n, C, H, W)`, `(n, C, L)` or `(n, p)` and targets
//! in a `.npy` array of shape `(n)` or `(n, 1)` or in a CSV column. Floats (f64, f32) and
//! integers (signed and unsigned, 8 to 64 bits) in C or Fortran order are read as `f64`.

use std::path::Path;

use super::{read_table_columns, Table, TargetColumn};
use crate::error::{CvxnnError, Result};
use crate::linalg::Matrix;

/// An N-D array read from a `.npy` file, values in C (row-major) order.
#[derive(Clone, Debug, PartialEq)]
pub struct NpyArray {
    /// The shape.
    pub shape: Vec<usize>,
    /// The values, last index fastest.
    pub values: Vec<f64>,
}

fn shape_text(shape: &[usize]) -> String {
    format!(
        "({})",
        shape
            .iter()
            .map(usize::to_string)
            .collect::<Vec<_>>()
            .join(", ")
    )
}

/// Reads any numeric `.npy` array (see the module docs); NaN and infinite values are an error
/// naming the flat (C-order) index.
pub fn read_npy(path: &Path) -> Result<NpyArray> {
    let bytes = std::fs::read(path).map_err(|e| CvxnnError::io(path, e))?;
    if bytes.is_empty() {
        return Err(CvxnnError::data(path, "the .npy file is empty"));
    }
    let npy = npyz::NpyFile::new(&bytes[..])
        .map_err(|e| CvxnnError::data(path, format!("not a valid .npy file: {e}")))?;
    let shape: Vec<usize> = npy
        .shape()
        .iter()
        .map(|&s| usize::try_from(s).unwrap_or(usize::MAX))
        .collect();
    let order = npy.order();
    let descr = npy.dtype().descr();
    let bad_read =
        |e: std::io::Error| CvxnnError::data(path, format!("could not read the .npy data: {e}"));
    // Try every supported dtype in turn; `try_data` hands the file back on a mismatch.
    macro_rules! read_as {
        ($npy:expr, $($t:ty),*) => {{
            let npy = $npy;
            $(
                let npy = match npy.try_data::<$t>() {
                    Ok(reader) => {
                        return finish(
                            path,
                            shape,
                            order,
                            reader
                                .map(|r| r.map(|v| v as f64))
                                .collect::<std::io::Result<Vec<f64>>>()
                                .map_err(bad_read)?,
                        )
                    }
                    Err(npy) => npy,
                };
            )*
            drop(npy);
        }};
    }
    read_as!(npy, f64, f32, i64, i32, i16, i8, u64, u32, u16, u8);
    Err(CvxnnError::data(
        path,
        format!("unsupported dtype {descr}; expected a float or integer array"),
    ))
}

/// Checks the count and finiteness and brings Fortran-order data to C order.
fn finish(
    path: &Path,
    shape: Vec<usize>,
    order: npyz::Order,
    values: Vec<f64>,
) -> Result<NpyArray> {
    let count = shape.iter().try_fold(1usize, |a, &s| a.checked_mul(s));
    if count != Some(values.len()) {
        return Err(CvxnnError::data(
            path,
            format!(
                "array of shape {} holds {} values",
                shape_text(&shape),
                values.len()
            ),
        ));
    }
    let values = match order {
        npyz::Order::C => values,
        npyz::Order::Fortran => {
            // Fortran order: first index fastest. Walk the C-order positions.
            let mut out = vec![0.0; values.len()];
            let mut idx = vec![0usize; shape.len()];
            for v in out.iter_mut() {
                let mut f = 0;
                let mut stride = 1;
                for (i, s) in idx.iter().zip(&shape) {
                    f += i * stride;
                    stride *= s;
                }
                *v = values[f];
                for d in (0..shape.len()).rev() {
                    idx[d] += 1;
                    if idx[d] < shape[d] {
                        break;
                    }
                    idx[d] = 0;
                }
            }
            out
        }
    };
    if let Some(k) = values.iter().position(|v| !v.is_finite()) {
        return Err(CvxnnError::data(
            path,
            format!(
                "value {} (flat index {k}, C order) of the array of shape {} is {}; NaN and infinite values are not allowed",
                k + 1,
                shape_text(&shape),
                values[k]
            ),
        ));
    }
    Ok(NpyArray { shape, values })
}

/// A feature array: one sample per first index; returns the `n x p` matrix (each sample
/// flattened in C order, i.e. `(C, H, W)` row-major as the CNN models expect) and the sample
/// shape (`[C, H, W]`, `[C, L]` or `[p]`).
pub fn read_npy_features(path: &Path) -> Result<(Matrix, Vec<usize>)> {
    let a = read_npy(path)?;
    if !(2..=4).contains(&a.shape.len()) {
        return Err(CvxnnError::data(
            path,
            format!(
                "expected an array of shape (n, C, H, W), (n, C, L) or (n, features), found {}",
                shape_text(&a.shape)
            ),
        ));
    }
    let n = a.shape[0];
    let sample: Vec<usize> = a.shape[1..].to_vec();
    let p: usize = sample.iter().product();
    if n == 0 || p == 0 {
        return Err(CvxnnError::data(
            path,
            format!("array of shape {} holds no samples", shape_text(&a.shape)),
        ));
    }
    // C order of (n, p) is row-major: transpose into the column-major matrix.
    let m = Matrix::from_fn(n, p, |i, j| a.values[i * p + j]);
    Ok((m, sample))
}

/// A target array of shape `(n)` or `(n, 1)` as a target column named `name`.
pub fn read_npy_target(path: &Path, name: &str) -> Result<TargetColumn> {
    let a = read_npy(path)?;
    match a.shape.as_slice() {
        [_] | [_, 1] => Ok(TargetColumn::from_values(path, name, &a.values)),
        s => Err(CvxnnError::data(
            path,
            format!(
                "expected targets of shape (n) or (n, 1), found {}",
                shape_text(s)
            ),
        )),
    }
}

/// The table of a `.npy` feature array (`features`) and a target file: a `.npy` array, or a CSV
/// whose column `target_column` (or, when it has one column, that column) holds the targets,
/// one row per sample. Feature columns are named `x0, x1, ...` in C order. Returns the table and
/// the sample shape.
pub fn read_npy_table(
    features: &Path,
    targets: &Path,
    target_column: &str,
) -> Result<(Table, Vec<usize>)> {
    let (x, sample) = read_npy_features(features)?;
    let is_npy = targets
        .extension()
        .is_some_and(|e| e.eq_ignore_ascii_case("npy"));
    let target = if is_npy {
        read_npy_target(targets, target_column)?
    } else {
        read_table_columns(targets, target_column)?
    };
    if target.len() != x.nrows() {
        return Err(CvxnnError::data(
            targets,
            format!(
                "{} targets for the {} samples of {}",
                target.len(),
                x.nrows(),
                features.display()
            ),
        ));
    }
    let table = Table {
        path: features.to_path_buf(),
        feature_names: (0..x.ncols()).map(|j| format!("x{j}")).collect(),
        features: x,
        target_name: target.name.clone(),
        target,
    };
    Ok((table, sample))
}

/// Whether `path` names a `.npy` file (by its extension).
pub fn is_npy(path: &Path) -> bool {
    path.extension()
        .is_some_and(|e| e.eq_ignore_ascii_case("npy"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use npyz::WriterBuilder;

    fn write<T: npyz::Serialize + npyz::AutoSerialize + Copy>(
        path: &Path,
        shape: &[u64],
        order: npyz::Order,
        data: &[T],
    ) {
        let mut buf = Vec::new();
        {
            let mut w = npyz::WriteOptions::<T>::new()
                .default_dtype()
                .shape(shape)
                .order(order)
                .writer(&mut buf)
                .begin_nd()
                .unwrap();
            w.extend(data.iter().copied()).unwrap();
            w.finish().unwrap();
        }
        std::fs::write(path, buf).unwrap();
    }

    fn tmp(name: &str) -> std::path::PathBuf {
        std::env::temp_dir().join(format!("cvxnn-npy-{}-{name}", std::process::id()))
    }

    #[test]
    fn reads_4d_c_and_fortran_f32_and_ints() {
        // (2, 1, 2, 3): sample s, pixel (i, j) = 100 s + 10 i + j.
        let c: Vec<f64> = (0..2)
            .flat_map(|s| {
                (0..2).flat_map(move |i| (0..3).map(move |j| (100 * s + 10 * i + j) as f64))
            })
            .collect();
        let p = tmp("c.npy");
        write::<f64>(&p, &[2, 1, 2, 3], npyz::Order::C, &c);
        let (x, shape) = read_npy_features(&p).unwrap();
        assert_eq!(shape, vec![1, 2, 3]);
        assert_eq!(x.get(1, 4), 111.0);
        // The same array in Fortran order (first index fastest).
        let mut f = vec![0.0f32; 12];
        for s in 0..2 {
            for i in 0..2 {
                for j in 0..3 {
                    f[s + 2 * (i + 2 * j)] = (100 * s + 10 * i + j) as f32;
                }
            }
        }
        let pf = tmp("f.npy");
        write::<f32>(&pf, &[2, 1, 2, 3], npyz::Order::Fortran, &f);
        let (xf, _) = read_npy_features(&pf).unwrap();
        assert_eq!(xf, x);
        let pi = tmp("i.npy");
        write::<i16>(&pi, &[3], npyz::Order::C, &[1, -2, 3]);
        let t = read_npy_target(&pi, "y").unwrap();
        assert_eq!(t.cells, vec!["1", "-2", "3"]);
        let pu = tmp("u.npy");
        write::<u8>(&pu, &[2, 3], npyz::Order::C, &[1, 2, 3, 4, 5, 6]);
        assert_eq!(read_npy_features(&pu).unwrap().0.get(1, 0), 4.0);
        for q in [p, pf, pi, pu] {
            let _ = std::fs::remove_file(q);
        }
    }

    #[test]
    fn rejects_nan_wrong_dims_and_mismatched_n() {
        let p = tmp("nan.npy");
        write::<f64>(&p, &[2, 2], npyz::Order::C, &[1.0, f64::NAN, 0.0, 1.0]);
        let e = read_npy_features(&p).unwrap_err().to_string();
        assert!(e.contains("NaN"), "{e}");
        let p1 = tmp("1d.npy");
        write::<f64>(&p1, &[4], npyz::Order::C, &[1.0, 2.0, 3.0, 4.0]);
        let e = read_npy_features(&p1).unwrap_err().to_string();
        assert!(e.contains("(n, C, H, W)"), "{e}");
        let p2 = tmp("ok.npy");
        write::<f64>(&p2, &[2, 2], npyz::Order::C, &[1.0, 2.0, 3.0, 4.0]);
        let e = read_npy_table(&p2, &p1, "y").unwrap_err().to_string();
        assert!(e.contains("4 targets for the 2 samples"), "{e}");
        let p3 = tmp("y2d.npy");
        write::<f64>(&p3, &[2, 2], npyz::Order::C, &[1.0, 2.0, 3.0, 4.0]);
        let e = read_npy_target(&p3, "y").unwrap_err().to_string();
        assert!(e.contains("shape (n) or (n, 1)"), "{e}");
        for q in [p, p1, p2, p3] {
            let _ = std::fs::remove_file(q);
        }
    }
}
