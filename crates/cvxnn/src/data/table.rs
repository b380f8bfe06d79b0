//! CSV tables with a header row: a named target column (numbers or class labels) and numeric
//! feature columns.

use std::fs::File;
use std::path::{Path, PathBuf};

use crate::error::{CvxnnError, Result};
use crate::linalg::Matrix;

/// A data set read from a CSV file: raw (unstandardized) features and the target column.
#[derive(Clone, Debug, PartialEq)]
pub struct Table {
    /// The file it was read from.
    pub path: PathBuf,
    /// Names of the feature columns, in file order (the target column excluded).
    pub feature_names: Vec<String>,
    /// `n x p` raw feature values, one row per data row of the file.
    pub features: Matrix,
    /// Name of the target column.
    pub target_name: String,
    /// The `n` raw target cells (numbers for regression, any labels for classification).
    pub target: TargetColumn,
}

/// A target column as read from a file: the trimmed text of every cell and the line it came
/// from, so that the target can be read as numbers (regression) or as class labels
/// (classification), and errors can name the file, line and column.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct TargetColumn {
    /// The file it was read from.
    pub path: PathBuf,
    /// The column's name.
    pub name: String,
    /// The trimmed cells, one per data row, never empty.
    pub cells: Vec<String>,
    /// The 1-based line of each cell in the file (the header is line 1).
    pub lines: Vec<usize>,
}

impl TargetColumn {
    /// A column of numbers (as if read from `path`, lines counted from 2), e.g. to build a
    /// [`Table`] in code.
    pub fn from_values(path: impl Into<PathBuf>, name: &str, values: &[f64]) -> TargetColumn {
        TargetColumn {
            path: path.into(),
            name: name.to_string(),
            cells: values.iter().map(|v| v.to_string()).collect(),
            lines: (2..values.len() + 2).collect(),
        }
    }

    /// Number of rows.
    pub fn len(&self) -> usize {
        self.cells.len()
    }

    /// Whether there are no rows.
    pub fn is_empty(&self) -> bool {
        self.cells.is_empty()
    }

    /// The 1-based line of row `i` (`None` when unknown).
    pub fn line(&self, i: usize) -> Option<usize> {
        self.lines.get(i).copied()
    }

    /// Every cell as a finite number; otherwise a [`CvxnnError::Data`] naming the file, the line
    /// and the column of the first cell that is not one.
    pub fn values(&self) -> Result<Vec<f64>> {
        self.cells
            .iter()
            .enumerate()
            .map(|(i, c)| parse_cell(&self.path, self.line(i).unwrap_or(0), &self.name, c))
            .collect()
    }

    /// Every cell as a finite number, or `None` when some cell is not one.
    pub fn numbers(&self) -> Option<Vec<f64>> {
        self.cells.iter().map(|c| parse_finite(c)).collect()
    }

    /// The rows `idx` (in that order).
    pub fn select(&self, idx: &[usize]) -> TargetColumn {
        TargetColumn {
            path: self.path.clone(),
            name: self.name.clone(),
            cells: idx.iter().map(|&i| self.cells[i].clone()).collect(),
            lines: idx.iter().map(|&i| self.lines[i]).collect(),
        }
    }
}

/// `cell` as a finite number, or `None`.
pub(super) fn parse_finite(cell: &str) -> Option<f64> {
    cell.parse::<f64>().ok().filter(|v| v.is_finite())
}

/// Reads a CSV file with a header row. The column named `target` is the target; every other
/// column is a numeric feature, in file order.
///
/// Cells are trimmed of surrounding whitespace (quoted cells are unquoted first); blank lines are
/// skipped. Every feature cell must parse as a finite number (`nan`, `inf` and overflowing
/// numbers are rejected). Target cells are kept as text (any label that is neither empty nor a
/// NaN or infinite number); whether they must be numbers depends on the task (see
/// [`TargetColumn::values`]). Errors name the file, the
/// 1-based line (the header is line 1) and the column:
/// a missing or unreadable file ([`CvxnnError::Io`]); an empty file, a header without data rows,
/// a row with the wrong number of fields, a non-numeric, empty or non-finite feature cell, an
/// empty, NaN or infinite target cell, a missing target column, duplicate or empty column names, or no feature column ([`CvxnnError::Data`]).
pub fn read_table(path: &Path, target: &str) -> Result<Table> {
    let mut file = CsvFile::open(path)?;
    let header = file.header(path)?;
    let target_idx = header.iter().position(|h| h == target).ok_or_else(|| {
        header_error(
            path,
            Some(target),
            format!(
                "target column `{target}` not found; available columns: {}",
                list_names(header.iter())
            ),
        )
    })?;
    let feature_names: Vec<String> = header
        .iter()
        .enumerate()
        .filter(|&(j, _)| j != target_idx)
        .map(|(_, h)| h.clone())
        .collect();
    if feature_names.is_empty() {
        return Err(header_error(
            path,
            None,
            format!(
                "the only column is the target `{target}`; at least one feature column is needed"
            ),
        ));
    }
    let slots: Vec<Slot> = {
        let mut next = 0;
        (0..header.len())
            .map(|j| {
                if j == target_idx {
                    Slot::Target
                } else {
                    next += 1;
                    Slot::Feature(next - 1)
                }
            })
            .collect()
    };
    let (features, target_values) = file.read_body(path, &header, &slots, feature_names.len())?;
    Ok(Table {
        path: path.to_path_buf(),
        feature_names,
        features,
        target_name: target.to_string(),
        target: target_values.unwrap_or_else(|| TargetColumn {
            path: path.to_path_buf(),
            name: target.to_string(),
            ..TargetColumn::default()
        }),
    })
}

/// Reads new data for prediction: the file must hold every column of `feature_names` (in any
/// order; the returned `n x p` matrix follows the order of `feature_names`). The `target` column is
/// optional and returned (as text, see [`TargetColumn`]) when present. Any other column is an
/// error naming it; missing feature columns are an error naming them. Cells are validated as in
/// [`read_table`].
pub fn read_features(
    path: &Path,
    feature_names: &[String],
    target: &str,
) -> Result<(Matrix, Option<TargetColumn>)> {
    let mut file = CsvFile::open(path)?;
    let header = file.header(path)?;
    let mut slots = Vec::with_capacity(header.len());
    let mut unexpected = Vec::new();
    for h in &header {
        if let Some(k) = feature_names.iter().position(|f| f == h) {
            slots.push(Slot::Feature(k));
        } else if h == target {
            slots.push(Slot::Target);
        } else {
            slots.push(Slot::Skip);
            unexpected.push(h);
        }
    }
    let missing: Vec<&String> = feature_names
        .iter()
        .filter(|f| !header.iter().any(|h| h == *f))
        .collect();
    if !missing.is_empty() || !unexpected.is_empty() {
        let mut parts = Vec::new();
        if !missing.is_empty() {
            parts.push(format!(
                "missing feature column{} {}",
                plural(missing.len()),
                list_names(missing.iter())
            ));
        }
        if !unexpected.is_empty() {
            parts.push(format!(
                "unexpected column{} {}",
                plural(unexpected.len()),
                list_names(unexpected.iter())
            ));
        }
        let column = match (missing.as_slice(), unexpected.as_slice()) {
            ([one], []) | ([], [one]) => Some(one.as_str()),
            _ => None,
        };
        return Err(header_error(
            path,
            column,
            format!(
                "{}; the model expects the feature columns {} and optionally the target `{target}`",
                parts.join("; "),
                list_names(feature_names.iter())
            ),
        ));
    }
    file.read_body(path, &header, &slots, feature_names.len())
}

/// Where a CSV column goes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Slot {
    /// Feature column with this index in the output matrix.
    Feature(usize),
    /// The target column.
    Target,
    /// Not read.
    Skip,
}

/// An open CSV reader with trimming, flexible row lengths (checked here) and line positions.
pub(super) struct CsvFile {
    reader: csv::Reader<File>,
    record: csv::StringRecord,
}

impl CsvFile {
    /// Opens `path`; a missing or unreadable file is a [`CvxnnError::Io`].
    pub(super) fn open(path: &Path) -> Result<CsvFile> {
        let file = File::open(path).map_err(|e| CvxnnError::io(path, e))?;
        let reader = csv::ReaderBuilder::new()
            .has_headers(false)
            .flexible(true)
            .trim(csv::Trim::All)
            .from_reader(file);
        Ok(CsvFile {
            reader,
            record: csv::StringRecord::new(),
        })
    }

    /// The next non-blank record and its 1-based line, or `None` at the end of the file.
    pub(super) fn next_record(
        &mut self,
        path: &Path,
    ) -> Result<Option<(usize, &csv::StringRecord)>> {
        loop {
            let more = self
                .reader
                .read_record(&mut self.record)
                .map_err(|e| csv_error(path, e))?;
            if !more {
                return Ok(None);
            }
            let blank = self.record.iter().all(str::is_empty) && self.record.len() <= 1;
            if !blank {
                let line = self.record.position().map_or(0, |p| p.line() as usize);
                return Ok(Some((line, &self.record)));
            }
        }
    }

    /// Reads and validates the header row (non-empty, unique column names).
    fn header(&mut self, path: &Path) -> Result<Vec<String>> {
        let Some((line, record)) = self.next_record(path)? else {
            return Err(CvxnnError::data(
                path,
                "the file is empty; expected a header row with column names, then data rows",
            ));
        };
        let header: Vec<String> = record
            .iter()
            .enumerate()
            .map(|(j, h)| {
                let h = if j == 0 {
                    h.trim_start_matches('\u{feff}').trim()
                } else {
                    h
                };
                h.to_string()
            })
            .collect();
        for (j, h) in header.iter().enumerate() {
            if h.is_empty() {
                return Err(CvxnnError::Data {
                    path: path.to_path_buf(),
                    line: Some(line),
                    column: None,
                    message: format!(
                        "column {} of {} has an empty name in the header",
                        j + 1,
                        header.len()
                    ),
                });
            }
            if let Some(k) = header[..j].iter().position(|g| g == h) {
                return Err(CvxnnError::Data {
                    path: path.to_path_buf(),
                    line: Some(line),
                    column: Some(h.clone()),
                    message: format!("duplicate column name (columns {} and {})", k + 1, j + 1),
                });
            }
        }
        Ok(header)
    }

    /// Reads every data row: cells of `Slot::Feature(k)` columns go to column `k` of an `n x p`
    /// matrix; the `Slot::Target` column (if any) is returned as text (empty cells refused).
    fn read_body(
        &mut self,
        path: &Path,
        header: &[String],
        slots: &[Slot],
        p: usize,
    ) -> Result<(Matrix, Option<TargetColumn>)> {
        let has_target = slots.contains(&Slot::Target);
        let mut columns: Vec<Vec<f64>> = vec![Vec::new(); p];
        let mut target = TargetColumn {
            path: path.to_path_buf(),
            name: slots
                .iter()
                .zip(header)
                .find(|(s, _)| **s == Slot::Target)
                .map(|(_, h)| h.clone())
                .unwrap_or_default(),
            ..TargetColumn::default()
        };
        while let Some((line, record)) = self.next_record(path)? {
            if record.len() != header.len() {
                return Err(CvxnnError::Data {
                    path: path.to_path_buf(),
                    line: Some(line),
                    column: None,
                    message: format!(
                        "expected {} fields (as in the header), found {}",
                        header.len(),
                        record.len()
                    ),
                });
            }
            for ((cell, slot), name) in record.iter().zip(slots).zip(header) {
                match *slot {
                    Slot::Feature(k) => columns[k].push(parse_cell(path, line, name, cell)?),
                    Slot::Target => {
                        if cell.is_empty() {
                            return Err(CvxnnError::Data {
                                path: path.to_path_buf(),
                                line: Some(line),
                                column: Some(name.clone()),
                                message: "missing target value (empty cell)".to_string(),
                            });
                        }
                        if cell.parse::<f64>().is_ok_and(|v| !v.is_finite()) {
                            // NaN or infinite: missing data rather than a class label.
                            parse_cell(path, line, name, cell)?;
                        }
                        target.cells.push(cell.to_string());
                        target.lines.push(line);
                    }
                    Slot::Skip => {}
                }
            }
        }
        let n = if has_target {
            target.cells.len()
        } else {
            columns.first().map_or(0, Vec::len)
        };
        if n == 0 && (p > 0 || has_target) {
            return Err(CvxnnError::Data {
                path: path.to_path_buf(),
                line: None,
                column: None,
                message: "the file has a header row but no data rows".to_string(),
            });
        }
        let mut data = Vec::with_capacity(n * p);
        for c in columns {
            data.extend_from_slice(&c);
        }
        let features = Matrix::from_col_major(n, p, data).ok_or_else(|| {
            CvxnnError::Shape(format!(
                "{}: could not assemble a {n} x {p} matrix",
                path.display()
            ))
        })?;
        Ok((features, has_target.then_some(target)))
    }
}

/// Parses one trimmed cell as a finite `f64`; `column` is the column's name (or 1-based index).
pub(super) fn parse_cell(path: &Path, line: usize, column: &str, cell: &str) -> Result<f64> {
    let err = |message: String| CvxnnError::Data {
        path: path.to_path_buf(),
        line: Some(line),
        column: Some(column.to_string()),
        message,
    };
    if cell.is_empty() {
        return Err(err("missing value (empty cell)".to_string()));
    }
    match cell.parse::<f64>() {
        Ok(v) if v.is_finite() => Ok(v),
        Ok(_) => Err(err(format!(
            "value \"{cell}\" is not finite (NaN and infinite values are not allowed)"
        ))),
        Err(_) => Err(err(format!("non-numeric value \"{cell}\""))),
    }
}

/// Maps a CSV reader error: I/O to [`CvxnnError::Io`], the rest to [`CvxnnError::Data`].
fn csv_error(path: &Path, e: csv::Error) -> CvxnnError {
    let line = e.position().map(|p| p.line() as usize);
    match e.into_kind() {
        csv::ErrorKind::Io(source) => CvxnnError::io(path, source),
        csv::ErrorKind::Utf8 { err, .. } => CvxnnError::Data {
            path: path.to_path_buf(),
            line,
            column: None,
            message: format!("invalid UTF-8 text ({err})"),
        },
        other => CvxnnError::Data {
            path: path.to_path_buf(),
            line,
            column: None,
            message: format!("malformed CSV: {other:?}"),
        },
    }
}

/// A header-level error (line 1).
fn header_error(path: &Path, column: Option<&str>, message: String) -> CvxnnError {
    CvxnnError::Data {
        path: path.to_path_buf(),
        line: Some(1),
        column: column.map(str::to_string),
        message,
    }
}

/// `` `a`, `b`, `c` ``.
fn list_names<S: AsRef<str>>(names: impl Iterator<Item = S>) -> String {
    names
        .map(|n| format!("`{}`", n.as_ref()))
        .collect::<Vec<_>>()
        .join(", ")
}

fn plural(k: usize) -> &'static str {
    if k == 1 {
        ""
    } else {
        "s"
    }
}

/// Reads a target-only CSV (the targets of a `.npy` feature array): its column `target`, or its
/// only column whatever its name. Other columns are an error naming them.
pub fn read_table_columns(path: &Path, target: &str) -> Result<TargetColumn> {
    let header = {
        let mut file = CsvFile::open(path)?;
        file.header(path)?
    };
    let name = if header.iter().any(|h| h == target) || header.len() != 1 {
        target.to_string()
    } else {
        header[0].clone()
    };
    let (_, column) = read_features(path, &[], &name)?;
    column.ok_or_else(|| {
        header_error(
            path,
            Some(&name),
            format!(
                "target column `{name}` not found; available columns: {}",
                list_names(header.iter())
            ),
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::data::test_util::{expect_data_error, TempDir};

    const SMALL: &str = "a,y,b\n1,10,2\n3,20,4\n5,30,6\n";

    fn names(v: &[&str]) -> Vec<String> {
        v.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn reads_small_table_with_target_in_the_middle() {
        let dir = TempDir::new();
        let p = dir.write("small.csv", SMALL);
        let t = read_table(&p, "y").expect("valid table");
        assert_eq!(t.path, p);
        assert_eq!(t.feature_names, names(&["a", "b"]));
        assert_eq!(t.target_name, "y");
        assert_eq!(t.target.values().ok(), Some(vec![10.0, 20.0, 30.0]));
        assert_eq!(t.target.cells, names(&["10", "20", "30"]));
        assert_eq!(t.target.lines, vec![2, 3, 4]);
        assert_eq!(
            (t.target.path.as_path(), t.target.name.as_str()),
            (p.as_path(), "y")
        );
        assert_eq!((t.features.nrows(), t.features.ncols()), (3, 2));
        assert_eq!(t.features.col(0), &[1.0, 3.0, 5.0]);
        assert_eq!(t.features.col(1), &[2.0, 4.0, 6.0]);
    }

    #[test]
    fn trims_whitespace_skips_blank_lines_and_crlf() {
        let dir = TempDir::new();
        let p = dir.write(
            "ws.csv",
            "\u{feff} x1 , y ,x2\r\n 1.5 ,  -2e1,+3\r\n\r\n4,5 , 6\r\n\n  \n\n",
        );
        let t = read_table(&p, "y").expect("valid table");
        assert_eq!(t.feature_names, names(&["x1", "x2"]));
        assert_eq!(t.target.values().ok(), Some(vec![-20.0, 5.0]));
        assert_eq!(t.features.col(0), &[1.5, 4.0]);
        assert_eq!(t.features.col(1), &[3.0, 6.0]);
    }

    #[test]
    fn reads_lines_of_diabetes() {
        let src = std::fs::read_to_string("/work/shared/data/diabetes.csv").ok();
        let text = match src {
            Some(s) => s.lines().take(6).collect::<Vec<_>>().join("\n") + "\n",
            None => "age,sex,bmi,bp,s1,s2,s3,s4,s5,s6,y\n\
                     59.0,2.0,32.1,101.0,157.0,93.2,38.0,4.0,4.8598,87.0,151.0\n\
                     48.0,1.0,21.6,87.0,183.0,103.2,70.0,3.0,3.8918,69.0,75.0\n"
                .to_string(),
        };
        let rows = text.lines().count() - 1;
        let dir = TempDir::new();
        let p = dir.write("diabetes_head.csv", &text);
        let t = read_table(&p, "y").expect("diabetes head parses");
        assert_eq!(
            t.feature_names,
            names(&["age", "sex", "bmi", "bp", "s1", "s2", "s3", "s4", "s5", "s6"])
        );
        assert_eq!((t.features.nrows(), t.features.ncols()), (rows, 10));
        assert_eq!(t.target.len(), rows);
        assert_eq!(t.features.get(0, 0), 59.0);
        assert_eq!(t.features.get(0, 8), 4.8598);
        assert_eq!(t.target.values().ok().map(|v| v[0]), Some(151.0));
        assert_eq!(t.features.get(1, 2), 21.6);
    }

    #[test]
    fn missing_file_is_io_error() {
        let dir = TempDir::new();
        let p = dir.path().join("nope.csv");
        match read_table(&p, "y") {
            Err(CvxnnError::Io { path, .. }) => assert_eq!(path, p),
            other => panic!("expected Io error, got {other:?}"),
        }
        assert!(matches!(
            read_features(&p, &names(&["a"]), "y"),
            Err(CvxnnError::Io { .. })
        ));
    }

    #[test]
    fn empty_file() {
        let dir = TempDir::new();
        for (i, text) in ["", "\n\n", "  \n"].iter().enumerate() {
            let p = dir.write(&format!("empty{i}.csv"), text);
            let r = read_table(&p, "y");
            let msg = r
                .as_ref()
                .map_err(|e| e.to_string())
                .err()
                .unwrap_or_default();
            let (path, _, _, message) = expect_data_error(r);
            assert_eq!(path, p);
            assert!(message.contains("empty"), "{message}");
            assert!(msg.contains(&p.display().to_string()), "{msg}");
        }
    }

    #[test]
    fn header_only() {
        let dir = TempDir::new();
        let p = dir.write("h.csv", "a,y\n\n");
        let (path, _, _, message) = expect_data_error(read_table(&p, "y"));
        assert_eq!(path, p);
        assert!(message.contains("no data rows"), "{message}");
        let (_, _, _, message) = expect_data_error(read_features(&p, &names(&["a"]), "y"));
        assert!(message.contains("no data rows"), "{message}");
    }

    #[test]
    fn ragged_row() {
        let dir = TempDir::new();
        let p = dir.write("r.csv", "a,b,y\n1,2,3\n4,5\n");
        let r = read_table(&p, "y");
        let shown = r
            .as_ref()
            .map_err(|e| e.to_string())
            .err()
            .unwrap_or_default();
        let (_, line, _, message) = expect_data_error(r);
        assert_eq!(line, Some(3));
        assert!(message.contains("expected 3"), "{message}");
        assert!(message.contains("found 2"), "{message}");
        assert!(shown.contains("line 3"), "{shown}");
        let p = dir.write("r2.csv", "a,b,y\n1,2,3,4\n");
        let (_, line, _, message) = expect_data_error(read_table(&p, "y"));
        assert_eq!(line, Some(2));
        assert!(message.contains("found 4"), "{message}");
    }

    #[test]
    fn non_numeric_cell_names_line_and_column() {
        let dir = TempDir::new();
        let p = dir.write("n.csv", "a,b,y\n1,2,3\n4,abc,6\n");
        let r = read_table(&p, "y");
        let shown = r
            .as_ref()
            .map_err(|e| e.to_string())
            .err()
            .unwrap_or_default();
        let (path, line, column, message) = expect_data_error(r);
        assert_eq!(path, p);
        assert_eq!(line, Some(3));
        assert_eq!(column.as_deref(), Some("b"));
        assert!(message.contains("\"abc\""), "{message}");
        assert!(shown.contains("line 3") && shown.contains("`b`"), "{shown}");
        // An empty cell is reported too.
        let p = dir.write("e.csv", "a,b,y\n1,,3\n");
        let (_, line, column, message) = expect_data_error(read_table(&p, "y"));
        assert_eq!((line, column.as_deref()), (Some(2), Some("b")));
        assert!(message.contains("empty"), "{message}");
        // A text target is read; as numbers it names the line and column.
        let p = dir.write("t.csv", "a,y\n1,2\n3,4\n1,x\n");
        let t = read_table(&p, "y").expect("text targets are read");
        let (path, line, column, message) = expect_data_error(t.target.values());
        assert_eq!(path, p);
        assert_eq!((line, column.as_deref()), (Some(4), Some("y")));
        assert!(message.contains("\"x\""), "{message}");
        assert_eq!(t.target.numbers(), None);
        // NaN and infinite targets are refused even as labels.
        let p = dir.write("nan.csv", "a,y\n1,yes\n2,NaN\n");
        let (_, line, column, message) = expect_data_error(read_table(&p, "y"));
        assert_eq!((line, column.as_deref()), (Some(3), Some("y")));
        assert!(message.contains("not finite"), "{message}");
    }

    #[test]
    fn non_finite_values_are_rejected() {
        let dir = TempDir::new();
        for (i, bad) in ["nan", "NaN", "inf", "-inf", "+Infinity", "1e400"]
            .iter()
            .enumerate()
        {
            let p = dir.write(&format!("nf{i}.csv"), format!("a,y\n1,2\n{bad},3\n"));
            let (_, line, column, message) = expect_data_error(read_table(&p, "y"));
            assert_eq!(line, Some(3));
            assert_eq!(column.as_deref(), Some("a"));
            assert!(message.contains("not finite"), "{message}");
            assert!(message.contains(bad), "{message}");
        }
    }

    #[test]
    fn missing_target_lists_columns() {
        let dir = TempDir::new();
        let p = dir.write("m.csv", "a,b,c\n1,2,3\n");
        let (_, line, column, message) = expect_data_error(read_table(&p, "y"));
        assert_eq!(line, Some(1));
        assert_eq!(column.as_deref(), Some("y"));
        assert!(message.contains("`a`, `b`, `c`"), "{message}");
        // A different target name works.
        let t = read_table(&p, "c").expect("c is a column");
        assert_eq!(t.feature_names, names(&["a", "b"]));
        assert_eq!(t.target.values().ok(), Some(vec![3.0]));
    }

    #[test]
    fn duplicate_and_empty_column_names() {
        let dir = TempDir::new();
        let p = dir.write("d.csv", "a,b,a,y\n1,2,3,4\n");
        let (_, line, column, message) = expect_data_error(read_table(&p, "y"));
        assert_eq!(line, Some(1));
        assert_eq!(column.as_deref(), Some("a"));
        assert!(message.contains("duplicate"), "{message}");
        assert!(message.contains("1 and 3"), "{message}");
        let p = dir.write("e.csv", "a, ,y\n1,2,3\n");
        let (_, line, _, message) = expect_data_error(read_table(&p, "y"));
        assert_eq!(line, Some(1));
        assert!(
            message.contains("column 2") && message.contains("empty name"),
            "{message}"
        );
    }

    #[test]
    fn no_feature_column() {
        let dir = TempDir::new();
        let p = dir.write("only_y.csv", "y\n1\n2\n");
        let (_, line, _, message) = expect_data_error(read_table(&p, "y"));
        assert_eq!(line, Some(1));
        assert!(message.contains("feature column"), "{message}");
    }

    #[test]
    fn invalid_utf8_is_data_error() {
        let dir = TempDir::new();
        let p = dir.write("u.csv", b"a,y\n1,2\n\xff\xfe,3\n");
        let (_, line, _, message) = expect_data_error(read_table(&p, "y"));
        assert_eq!(line, Some(3));
        assert!(message.contains("UTF-8"), "{message}");
    }

    #[test]
    fn read_features_reorders_and_returns_target() {
        let dir = TempDir::new();
        let p = dir.write("f.csv", "b,y,a\n2,10,1\n4,20,3\n");
        let (x, y) = read_features(&p, &names(&["a", "b"]), "y").expect("valid");
        assert_eq!((x.nrows(), x.ncols()), (2, 2));
        assert_eq!(x.col(0), &[1.0, 3.0]);
        assert_eq!(x.col(1), &[2.0, 4.0]);
        let y = y.expect("target column present");
        assert_eq!(y.values().ok(), Some(vec![10.0, 20.0]));
        assert_eq!((y.name.as_str(), y.lines.as_slice()), ("y", &[2, 3][..]));
        let p = dir.write("g.csv", "b,a\n2,1\n4,3\n6,5\n");
        let (x, y) = read_features(&p, &names(&["a", "b"]), "y").expect("valid");
        assert_eq!(x.col(0), &[1.0, 3.0, 5.0]);
        assert_eq!(x.col(1), &[2.0, 4.0, 6.0]);
        assert!(y.is_none());
    }

    #[test]
    fn read_features_missing_and_extra_columns() {
        let dir = TempDir::new();
        let p = dir.write("m.csv", "a,y\n1,2\n");
        let (_, line, column, message) =
            expect_data_error(read_features(&p, &names(&["a", "b"]), "y"));
        assert_eq!(line, Some(1));
        assert_eq!(column.as_deref(), Some("b"));
        assert!(message.contains("missing feature column `b`"), "{message}");
        let p = dir.write("x.csv", "a,b,zz,y\n1,2,3,4\n");
        let (_, _, column, message) =
            expect_data_error(read_features(&p, &names(&["a", "b"]), "y"));
        assert_eq!(column.as_deref(), Some("zz"));
        assert!(message.contains("unexpected column `zz`"), "{message}");
        let p = dir.write("mx.csv", "a,q,r\n1,2,3\n");
        let (_, _, column, message) =
            expect_data_error(read_features(&p, &names(&["a", "b", "c"]), "y"));
        assert_eq!(column, None);
        assert!(message.contains("`b`, `c`"), "{message}");
        assert!(message.contains("`q`, `r`"), "{message}");
    }

    #[test]
    fn read_features_validates_cells() {
        let dir = TempDir::new();
        let p = dir.write("c.csv", "b,a\n1,2\n3,inf\n");
        let (_, line, column, message) =
            expect_data_error(read_features(&p, &names(&["a", "b"]), "y"));
        assert_eq!((line, column.as_deref()), (Some(3), Some("a")));
        assert!(message.contains("not finite"), "{message}");
        let p = dir.write("r.csv", "b,a\n1,2\n3\n");
        let (_, line, _, _) = expect_data_error(read_features(&p, &names(&["a", "b"]), "y"));
        assert_eq!(line, Some(3));
    }

    #[test]
    fn string_targets_are_trimmed_and_unquoted() {
        let dir = TempDir::new();
        let p = dir.write(
            "s.csv",
            "a,kind\n1,  benign \n2,\"malignant, grade 2\"\n3,\" spaced \"\n4,\"say \"\"hi\"\"\"\n",
        );
        let t = read_table(&p, "kind").expect("string targets");
        assert_eq!(
            t.target.cells,
            names(&["benign", "malignant, grade 2", "spaced", "say \"hi\""])
        );
        assert_eq!(t.target.lines, vec![2, 3, 4, 5]);
        assert_eq!(t.features.col(0), &[1.0, 2.0, 3.0, 4.0]);
        // Features stay numeric.
        let p = dir.write("f.csv", "a,kind\nx,benign\n");
        let (_, line, column, _) = expect_data_error(read_table(&p, "kind"));
        assert_eq!((line, column.as_deref()), (Some(2), Some("a")));
        // read_features keeps text targets too.
        let p = dir.write("g.csv", "kind,a\nbenign,1\n\"x\",2\n");
        let (_, y) = read_features(&p, &names(&["a"]), "kind").expect("valid");
        assert_eq!(y.map(|y| y.cells), Some(names(&["benign", "x"])));
    }

    #[test]
    fn empty_target_cell_names_file_and_line() {
        let dir = TempDir::new();
        let p = dir.write("e.csv", "a,y\n1,yes\n2,  \n");
        let r = read_table(&p, "y");
        let shown = r
            .as_ref()
            .map_err(|e| e.to_string())
            .err()
            .unwrap_or_default();
        let (path, line, column, message) = expect_data_error(r);
        assert_eq!(path, p);
        assert_eq!((line, column.as_deref()), (Some(3), Some("y")));
        assert!(message.contains("empty"), "{message}");
        assert!(
            shown.contains("line 3") && shown.contains("e.csv"),
            "{shown}"
        );
        let p = dir.write("f.csv", "y,a\n,1\n");
        let (_, line, column, _) = expect_data_error(read_features(&p, &names(&["a"]), "y"));
        assert_eq!((line, column.as_deref()), (Some(2), Some("y")));
    }

    #[test]
    fn target_column_select_and_from_values() {
        let t = TargetColumn::from_values("x.csv", "y", &[1.5, -2.0, 3.0]);
        assert_eq!(t.cells, names(&["1.5", "-2", "3"]));
        assert_eq!(t.lines, vec![2, 3, 4]);
        let s = t.select(&[2, 0]);
        assert_eq!(s.values().ok(), Some(vec![3.0, 1.5]));
        assert_eq!(s.lines, vec![4, 2]);
        assert_eq!((s.len(), s.is_empty(), s.line(5)), (2, false, None));
    }
}
