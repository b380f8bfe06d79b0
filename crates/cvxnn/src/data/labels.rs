//! Learning tasks and the encoding of their targets (binary labels to ±1).

use std::fmt;
use std::path::Path;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::error::{CvxnnError, Result};

/// What the network predicts.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq)]
#[serde(rename_all = "kebab-case")]
pub enum Task {
    /// A real-valued target, fitted with the squared loss.
    Regression,
    /// A target with two distinct values, encoded as -1 / +1.
    Binary,
}

impl Task {
    /// [`Task::Binary`] when `target` holds exactly two distinct values, else
    /// [`Task::Regression`].
    pub fn infer(target: &[f64]) -> Task {
        if distinct_values(target).len() == 2 {
            Task::Binary
        } else {
            Task::Regression
        }
    }

    /// The task's name as written in files and on the command line (`regression`, `binary`).
    pub fn as_str(self) -> &'static str {
        match self {
            Task::Regression => "regression",
            Task::Binary => "binary",
        }
    }
}

impl fmt::Display for Task {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Task {
    type Err = CvxnnError;

    /// Parses `regression` or `binary` (case-insensitive).
    fn from_str(s: &str) -> Result<Task> {
        match s.trim().to_ascii_lowercase().as_str() {
            "regression" => Ok(Task::Regression),
            "binary" => Ok(Task::Binary),
            _ => Err(CvxnnError::arg(
                "task",
                format!("unknown task `{s}`; expected `regression` or `binary`"),
            )),
        }
    }
}

/// The two original values of a binary target: the smaller maps to -1, the larger to +1.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq)]
pub struct BinaryLabels {
    /// The original value encoded as -1 (the smaller one).
    pub negative: f64,
    /// The original value encoded as +1 (the larger one).
    pub positive: f64,
}

impl BinaryLabels {
    /// Labels for the two values `a` and `b`, in either order: the smaller becomes `negative`.
    pub fn new(a: f64, b: f64) -> BinaryLabels {
        if a <= b {
            BinaryLabels {
                negative: a,
                positive: b,
            }
        } else {
            BinaryLabels {
                negative: b,
                positive: a,
            }
        }
    }

    /// `-1.0` for `negative`, `+1.0` for `positive`, `None` for any other value.
    pub fn encode(&self, v: f64) -> Option<f64> {
        if v == self.negative {
            Some(-1.0)
        } else if v == self.positive {
            Some(1.0)
        } else {
            None
        }
    }

    /// The original label of a ±1-scale prediction: `positive` when `pm >= 0`, else `negative`
    /// (NaN decodes to `negative`).
    pub fn decode(&self, pm: f64) -> f64 {
        if pm >= 0.0 {
            self.positive
        } else {
            self.negative
        }
    }
}

/// Encodes a target column for `task`. Regression returns the values unchanged and no labels.
/// Binary requires exactly two distinct values and returns them mapped to ±1 (the smaller value to
/// -1) with the [`BinaryLabels`] to decode predictions; otherwise a [`CvxnnError::Data`] names the
/// file (`path`) and column (`column`), says how many distinct values were found and shows up to 5
/// of them.
pub fn encode_target(
    task: Task,
    target: &[f64],
    path: &Path,
    column: &str,
) -> Result<(Vec<f64>, Option<BinaryLabels>)> {
    match task {
        Task::Regression => Ok((target.to_vec(), None)),
        Task::Binary => {
            let distinct = distinct_values(target);
            if distinct.len() != 2 {
                let shown: Vec<String> = distinct.iter().take(5).map(|v| v.to_string()).collect();
                let more = if distinct.len() > 5 { ", ..." } else { "" };
                return Err(CvxnnError::Data {
                    path: path.to_path_buf(),
                    line: None,
                    column: Some(column.to_string()),
                    message: format!(
                        "a binary task needs exactly 2 distinct target values, found {}{}",
                        distinct.len(),
                        if distinct.is_empty() {
                            String::new()
                        } else {
                            format!(": {}{more}", shown.join(", "))
                        }
                    ),
                });
            }
            let labels = BinaryLabels::new(distinct[0], distinct[1]);
            let encoded = target
                .iter()
                .map(|&v| if v == labels.positive { 1.0 } else { -1.0 })
                .collect();
            Ok((encoded, Some(labels)))
        }
    }
}

/// The distinct values of `v`, ascending (`-0.0` and `0.0` count as one value; each NaN counts as
/// its own value).
fn distinct_values(v: &[f64]) -> Vec<f64> {
    let mut d = v.to_vec();
    d.sort_by(f64::total_cmp);
    d.dedup_by(|a, b| a == b);
    d
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::data::test_util::expect_data_error;

    #[test]
    fn infer_task() {
        assert_eq!(Task::infer(&[0.0, 1.0, 1.0, 0.0]), Task::Binary);
        assert_eq!(Task::infer(&[3.0, 7.0]), Task::Binary);
        assert_eq!(Task::infer(&[1.0, 2.0, 3.0]), Task::Regression);
        assert_eq!(Task::infer(&[5.0, 5.0]), Task::Regression);
        assert_eq!(Task::infer(&[]), Task::Regression);
        assert_eq!(Task::infer(&[-0.0, 0.0, 1.0]), Task::Binary);
    }

    #[test]
    fn task_serde_and_parse() {
        assert_eq!(
            serde_json::to_string(&Task::Regression).ok().as_deref(),
            Some("\"regression\"")
        );
        assert_eq!(
            serde_json::from_str::<Task>("\"binary\"").ok(),
            Some(Task::Binary)
        );
        assert_eq!("Binary".parse::<Task>().ok(), Some(Task::Binary));
        assert_eq!(Task::Regression.to_string(), "regression");
        assert!(matches!(
            "multiclass".parse::<Task>(),
            Err(CvxnnError::InvalidArgument { .. })
        ));
    }

    #[test]
    fn encode_binary_smaller_is_negative() {
        let p = Path::new("t.csv");
        let (y, labels) =
            encode_target(Task::Binary, &[2.0, 1.0, 2.0, 1.0], p, "y").expect("two values");
        assert_eq!(y, vec![1.0, -1.0, 1.0, -1.0]);
        let labels = labels.expect("binary labels");
        assert_eq!(
            labels,
            BinaryLabels {
                negative: 1.0,
                positive: 2.0
            }
        );
        assert_eq!(labels.encode(1.0), Some(-1.0));
        assert_eq!(labels.encode(2.0), Some(1.0));
        assert_eq!(labels.encode(3.0), None);
        assert_eq!(labels.decode(0.3), 2.0);
        assert_eq!(labels.decode(0.0), 2.0);
        assert_eq!(labels.decode(-1e-9), 1.0);
        // Already ±1: unchanged.
        let (y, _) = encode_target(Task::Binary, &[-1.0, 1.0], p, "y").expect("two values");
        assert_eq!(y, vec![-1.0, 1.0]);
        assert_eq!(
            BinaryLabels::new(5.0, -3.0),
            BinaryLabels {
                negative: -3.0,
                positive: 5.0
            }
        );
    }

    #[test]
    fn labels_serde_roundtrip() {
        let l = BinaryLabels::new(0.0, 1.0);
        let s = serde_json::to_string(&l).unwrap_or_default();
        assert_eq!(serde_json::from_str::<BinaryLabels>(&s).ok(), Some(l));
    }

    #[test]
    fn encode_regression_passes_through() {
        let v = [1.5, -2.0, 3.25];
        let (y, labels) =
            encode_target(Task::Regression, &v, Path::new("t.csv"), "y").expect("regression");
        assert_eq!(y, v.to_vec());
        assert_eq!(labels, None);
    }

    #[test]
    fn encode_binary_errors() {
        let p = Path::new("data/t.csv");
        let (path, _, column, message) =
            expect_data_error(encode_target(Task::Binary, &[1.0, 2.0, 3.0], p, "label"));
        assert_eq!(path, p);
        assert_eq!(column.as_deref(), Some("label"));
        assert!(message.contains("found 3: 1, 2, 3"), "{message}");
        let many: Vec<f64> = (0..9).map(f64::from).collect();
        let (_, _, _, message) = expect_data_error(encode_target(Task::Binary, &many, p, "y"));
        assert!(message.contains("found 9: 0, 1, 2, 3, 4, ..."), "{message}");
        let (_, _, _, message) =
            expect_data_error(encode_target(Task::Binary, &[4.0, 4.0], p, "y"));
        assert!(message.contains("found 1: 4"), "{message}");
        let err = encode_target(Task::Binary, &[4.0], p, "y")
            .err()
            .map(|e| e.to_string());
        let shown = err.unwrap_or_default();
        assert!(
            shown.contains("data/t.csv") && shown.contains("`y`"),
            "{shown}"
        );
    }
}
