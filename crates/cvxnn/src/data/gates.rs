//! User-supplied gate vectors (the `g_i` that define activation patterns `1[X g_i >= 0]`).

use std::path::Path;

use crate::data::table::{parse_cell, CsvFile};
use crate::error::{CvxnnError, Result};
use crate::linalg::Matrix;

/// Reads gates from `path` into a `d x P` matrix, one gate per column.
///
/// Two formats:
/// - CSV without a header row (any extension except `.npy`): one gate per row, exactly `d`
///   comma-separated numbers; blank lines are skipped.
/// - `.npy` (by extension, case-insensitive): a 2-D array of shape `(P, d)`, dtype float64 or
///   float32, C or Fortran order.
///
/// `d` is the number of columns the gates multiply: the feature columns after standardization,
/// plus 1 when a bias column is appended. Errors: a missing or unreadable file
/// ([`CvxnnError::Io`]); no gates, a row of the wrong width (naming its 1-based row), a
/// non-numeric or non-finite value, or an `.npy` array of the wrong shape or dtype
/// ([`CvxnnError::Data`]); `d == 0` ([`CvxnnError::InvalidArgument`]).
pub fn read_gates(path: &Path, d: usize) -> Result<Matrix> {
    if d == 0 {
        return Err(CvxnnError::arg(
            "gates",
            "gates need at least one input dimension (d = 0)",
        ));
    }
    let is_npy = path
        .extension()
        .and_then(|e| e.to_str())
        .is_some_and(|e| e.eq_ignore_ascii_case("npy"));
    if is_npy {
        read_npy(path, d)
    } else {
        read_csv(path, d)
    }
}

fn width_hint(d: usize) -> String {
    format!(
        "expected d = {d} values per gate (the number of feature columns after standardization, \
         plus 1 for the bias column when one is used)"
    )
}

fn read_csv(path: &Path, d: usize) -> Result<Matrix> {
    let mut file = CsvFile::open(path)?;
    let mut data: Vec<f64> = Vec::new();
    let mut row = 0usize;
    while let Some((line, record)) = file.next_record(path)? {
        row += 1;
        if record.len() != d {
            return Err(CvxnnError::Data {
                path: path.to_path_buf(),
                line: Some(line),
                column: None,
                message: format!(
                    "gate row {row} has {} value{}; {}",
                    record.len(),
                    if record.len() == 1 { "" } else { "s" },
                    width_hint(d)
                ),
            });
        }
        for (j, cell) in record.iter().enumerate() {
            let v = parse_cell(path, line, &(j + 1).to_string(), cell).map_err(|e| {
                let hint = if row == 1 && cell.parse::<f64>().is_err() {
                    " (a gate file has no header row)"
                } else {
                    ""
                };
                append_message(e, &format!(" in gate row {row}{hint}"))
            })?;
            data.push(v);
        }
    }
    if row == 0 {
        return Err(CvxnnError::data(
            path,
            format!(
                "the gate file is empty; expected one gate per row, {}",
                width_hint(d)
            ),
        ));
    }
    // Row-major (P, d) data is column-major (d, P): one gate per column.
    Matrix::from_col_major(d, row, data).ok_or_else(|| {
        CvxnnError::Shape(format!(
            "{}: gates do not form a {d} x {row} matrix",
            path.display()
        ))
    })
}

/// Appends `extra` to the message of a [`CvxnnError::Data`] error.
fn append_message(e: CvxnnError, extra: &str) -> CvxnnError {
    match e {
        CvxnnError::Data {
            path,
            line,
            column,
            mut message,
        } => {
            message.push_str(extra);
            CvxnnError::Data {
                path,
                line,
                column,
                message,
            }
        }
        other => other,
    }
}

fn read_npy(path: &Path, d: usize) -> Result<Matrix> {
    let bytes = std::fs::read(path).map_err(|e| CvxnnError::io(path, e))?;
    if bytes.is_empty() {
        return Err(CvxnnError::data(path, "the .npy file is empty"));
    }
    let npy = npyz::NpyFile::new(&bytes[..])
        .map_err(|e| CvxnnError::data(path, format!("not a valid .npy file: {e}")))?;
    let shape = npy.shape().to_vec();
    let order = npy.order();
    let dtype = npy.dtype();
    let (p, width) = match shape.as_slice() {
        [p, w] => (usize::try_from(*p).ok(), usize::try_from(*w).ok()),
        _ => (None, None),
    };
    let shape_text = format!(
        "({})",
        shape
            .iter()
            .map(u64::to_string)
            .collect::<Vec<_>>()
            .join(", ")
    );
    let (Some(p), Some(width)) = (p, width) else {
        return Err(CvxnnError::data(
            path,
            format!("expected a 2-D array of shape (P, {d}), found shape {shape_text}"),
        ));
    };
    if width != d {
        return Err(CvxnnError::data(
            path,
            format!(
                "array of shape {shape_text} has {width} values per gate; {}",
                width_hint(d)
            ),
        ));
    }
    if p == 0 {
        return Err(CvxnnError::data(
            path,
            format!("array of shape {shape_text} holds no gates"),
        ));
    }
    let bad_read =
        |e: std::io::Error| CvxnnError::data(path, format!("could not read the .npy data: {e}"));
    let values: Vec<f64> = match npy.try_data::<f64>() {
        Ok(reader) => reader
            .collect::<std::io::Result<Vec<f64>>>()
            .map_err(bad_read)?,
        Err(npy) => match npy.try_data::<f32>() {
            Ok(reader) => reader
                .map(|r| r.map(f64::from))
                .collect::<std::io::Result<Vec<f64>>>()
                .map_err(bad_read)?,
            Err(_) => {
                return Err(CvxnnError::data(
                    path,
                    format!(
                        "unsupported dtype {}; expected float64 or float32",
                        dtype.descr()
                    ),
                ))
            }
        },
    };
    if values.len() != p * d {
        return Err(CvxnnError::data(
            path,
            format!(
                "array of shape {shape_text} should hold {} values, found {}",
                p * d,
                values.len()
            ),
        ));
    }
    // C order of (P, d) is column-major (d, P); Fortran order of (P, d) needs a transpose.
    let data = match order {
        npyz::Order::C => values,
        npyz::Order::Fortran => {
            let mut t = vec![0.0; p * d];
            for g in 0..p {
                for j in 0..d {
                    t[g * d + j] = values[j * p + g];
                }
            }
            t
        }
    };
    if let Some(k) = data.iter().position(|v| !v.is_finite()) {
        return Err(CvxnnError::Data {
            path: path.to_path_buf(),
            line: None,
            column: Some((k % d + 1).to_string()),
            message: format!(
                "gate row {} holds a non-finite value ({}); NaN and infinite values are not allowed",
                k / d + 1,
                data[k]
            ),
        });
    }
    Matrix::from_col_major(d, p, data).ok_or_else(|| {
        CvxnnError::Shape(format!(
            "{}: gates do not form a {d} x {p} matrix",
            path.display()
        ))
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::data::test_util::{expect_data_error, TempDir};
    use npyz::WriterBuilder;

    fn write_npy<T: npyz::Serialize + npyz::AutoSerialize + Copy>(
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
                .expect("npy writer");
            w.extend(data.iter().copied()).expect("write npy data");
            w.finish().expect("finish npy");
        }
        std::fs::write(path, buf).expect("write npy file");
    }

    /// The expected 3 x 2 result for gates (1, 2, 3) and (4, 5, 6).
    fn check_two_gates(g: &Matrix) {
        assert_eq!((g.nrows(), g.ncols()), (3, 2));
        assert_eq!(g.col(0), &[1.0, 2.0, 3.0]);
        assert_eq!(g.col(1), &[4.0, 5.0, 6.0]);
    }

    #[test]
    fn csv_gates() {
        let dir = TempDir::new();
        let p = dir.write("g.csv", " 1, 2 ,3\n\n4,5,6\n\n");
        check_two_gates(&read_gates(&p, 3).expect("valid gates"));
        let p = dir.write("g.txt", "1,2,3\r\n4,5,6");
        check_two_gates(&read_gates(&p, 3).expect("valid gates"));
    }

    #[test]
    fn csv_wrong_width_names_row_and_d() {
        let dir = TempDir::new();
        let p = dir.write("g.csv", "1,2,3\n4,5\n");
        let r = read_gates(&p, 3);
        let shown = r
            .as_ref()
            .map_err(|e| e.to_string())
            .err()
            .unwrap_or_default();
        let (path, line, _, message) = expect_data_error(r);
        assert_eq!(path, p);
        assert_eq!(line, Some(2));
        assert!(message.contains("gate row 2 has 2 values"), "{message}");
        assert!(message.contains("d = 3"), "{message}");
        assert!(
            message.contains("standardization") && message.contains("bias"),
            "{message}"
        );
        assert!(shown.contains("line 2"), "{shown}");
    }

    #[test]
    fn csv_bad_values() {
        let dir = TempDir::new();
        let p = dir.write("g.csv", "1,2,3\n4,x,6\n");
        let (_, line, column, message) = expect_data_error(read_gates(&p, 3));
        assert_eq!((line, column.as_deref()), (Some(2), Some("2")));
        assert!(
            message.contains("\"x\"") && message.contains("gate row 2"),
            "{message}"
        );
        let p = dir.write("h.csv", "a,b,c\n1,2,3\n");
        let (_, line, _, message) = expect_data_error(read_gates(&p, 3));
        assert_eq!(line, Some(1));
        assert!(message.contains("no header"), "{message}");
        let p = dir.write("n.csv", "1,2,3\n4,5,NaN\n");
        let (_, line, column, message) = expect_data_error(read_gates(&p, 3));
        assert_eq!((line, column.as_deref()), (Some(2), Some("3")));
        assert!(message.contains("not finite"), "{message}");
    }

    #[test]
    fn missing_and_empty_files() {
        let dir = TempDir::new();
        let p = dir.path().join("none.csv");
        assert!(matches!(read_gates(&p, 3), Err(CvxnnError::Io { .. })));
        let p = dir.path().join("none.npy");
        assert!(matches!(read_gates(&p, 3), Err(CvxnnError::Io { .. })));
        let p = dir.write("e.csv", "\n\n");
        let (path, _, _, message) = expect_data_error(read_gates(&p, 3));
        assert_eq!(path, p);
        assert!(message.contains("empty"), "{message}");
        let p = dir.write("e.npy", "");
        let (_, _, _, message) = expect_data_error(read_gates(&p, 3));
        assert!(message.contains("empty"), "{message}");
        let p = dir.write("junk.npy", "1,2,3\n");
        let (_, _, _, message) = expect_data_error(read_gates(&p, 3));
        assert!(message.contains("not a valid .npy"), "{message}");
        assert!(matches!(
            read_gates(&p, 0),
            Err(CvxnnError::InvalidArgument { .. })
        ));
    }

    #[test]
    fn npy_f64_and_f32_c_and_fortran() {
        let dir = TempDir::new();
        let c = [1.0, 2.0, 3.0, 4.0, 5.0, 6.0];
        // Fortran order of the same (2, 3) array: column by column.
        let f = [1.0, 4.0, 2.0, 5.0, 3.0, 6.0];
        let p64c = dir.path().join("c64.npy");
        write_npy::<f64>(&p64c, &[2, 3], npyz::Order::C, &c);
        check_two_gates(&read_gates(&p64c, 3).expect("f64 C"));
        let p64f = dir.path().join("f64.NPY");
        write_npy::<f64>(&p64f, &[2, 3], npyz::Order::Fortran, &f);
        check_two_gates(&read_gates(&p64f, 3).expect("f64 Fortran"));
        let c32: Vec<f32> = c.iter().map(|&v| v as f32).collect();
        let f32v: Vec<f32> = f.iter().map(|&v| v as f32).collect();
        let p32c = dir.path().join("c32.npy");
        write_npy::<f32>(&p32c, &[2, 3], npyz::Order::C, &c32);
        check_two_gates(&read_gates(&p32c, 3).expect("f32 C"));
        let p32f = dir.path().join("f32.npy");
        write_npy::<f32>(&p32f, &[2, 3], npyz::Order::Fortran, &f32v);
        check_two_gates(&read_gates(&p32f, 3).expect("f32 Fortran"));
    }

    #[test]
    fn npy_errors() {
        let dir = TempDir::new();
        // Wrong width.
        let p = dir.path().join("w.npy");
        write_npy::<f64>(&p, &[3, 2], npyz::Order::C, &[1.0; 6]);
        let (_, _, _, message) = expect_data_error(read_gates(&p, 3));
        assert!(
            message.contains("(3, 2)") && message.contains("d = 3"),
            "{message}"
        );
        // 1-D and 3-D arrays.
        let p = dir.path().join("v.npy");
        write_npy::<f64>(&p, &[3], npyz::Order::C, &[1.0; 3]);
        let (_, _, _, message) = expect_data_error(read_gates(&p, 3));
        assert!(
            message.contains("2-D") && message.contains("(3)"),
            "{message}"
        );
        let p = dir.path().join("t.npy");
        write_npy::<f64>(&p, &[1, 2, 3], npyz::Order::C, &[1.0; 6]);
        let (_, _, _, message) = expect_data_error(read_gates(&p, 3));
        assert!(message.contains("(1, 2, 3)"), "{message}");
        // No gates.
        let p = dir.path().join("z.npy");
        write_npy::<f64>(&p, &[0, 3], npyz::Order::C, &[]);
        let (_, _, _, message) = expect_data_error(read_gates(&p, 3));
        assert!(message.contains("no gates"), "{message}");
        // Integer dtype.
        let p = dir.path().join("i.npy");
        write_npy::<i64>(&p, &[2, 3], npyz::Order::C, &[1; 6]);
        let (_, _, _, message) = expect_data_error(read_gates(&p, 3));
        assert!(
            message.contains("dtype") && message.contains("i8"),
            "{message}"
        );
        // Non-finite value: second gate, third entry.
        let p = dir.path().join("nan.npy");
        write_npy::<f32>(
            &p,
            &[2, 3],
            npyz::Order::C,
            &[1.0, 2.0, 3.0, 4.0, 5.0, f32::NAN],
        );
        let (_, _, column, message) = expect_data_error(read_gates(&p, 3));
        assert_eq!(column.as_deref(), Some("3"));
        assert!(
            message.contains("gate row 2") && message.contains("non-finite"),
            "{message}"
        );
        // Truncated data.
        let p = dir.path().join("trunc.npy");
        write_npy::<f64>(&p, &[2, 3], npyz::Order::C, &[1.0; 6]);
        let bytes = std::fs::read(&p).expect("read back");
        std::fs::write(&p, &bytes[..bytes.len() - 8]).expect("truncate");
        assert!(matches!(read_gates(&p, 3), Err(CvxnnError::Data { .. })));
    }
}
