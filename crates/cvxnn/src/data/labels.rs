//! Learning tasks and the encoding of their targets: regression values, binary labels to ±1,
//! class labels to class indices and one-hot matrices.
//!
//! Class labels are ordered once and for all when they are fitted ([`ClassLabels::fit`]):
//! numeric order when every label is a finite number (so `2 < 10`, and `1` and `1.0` are one
//! class), else lexicographic order of the strings. Class `k` is the `k`-th label in that order;
//! for a binary task class 0 is encoded -1 and class 1 is encoded +1.

use std::collections::HashSet;
use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use super::table::{parse_finite, TargetColumn};
use crate::error::{CvxnnError, Result};

/// What the network predicts.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq)]
#[serde(rename_all = "kebab-case")]
pub enum Task {
    /// A real-valued target, fitted with the squared loss.
    Regression,
    /// A target with two distinct labels, encoded as -1 / +1.
    Binary,
    /// A target with two or more distinct labels (classes), encoded one-hot (`n x c`).
    Multiclass,
}

impl Task {
    /// The task a target column calls for: a numeric target (every cell a finite number) is
    /// [`Task::Binary`] when it holds exactly two distinct values, else [`Task::Regression`]; a
    /// non-numeric target is classification: [`Task::Binary`] for at most two distinct labels,
    /// [`Task::Multiclass`] for more.
    pub fn infer(target: &TargetColumn) -> Task {
        match target.numbers() {
            Some(v) => {
                if distinct_values(&v).len() == 2 {
                    Task::Binary
                } else {
                    Task::Regression
                }
            }
            None => {
                let distinct: HashSet<&str> = target.cells.iter().map(String::as_str).collect();
                if distinct.len() <= 2 {
                    Task::Binary
                } else {
                    Task::Multiclass
                }
            }
        }
    }

    /// Whether the task predicts class labels (binary or multiclass).
    pub fn is_classification(self) -> bool {
        self != Task::Regression
    }

    /// The task's name as written in files and on the command line (`regression`, `binary`,
    /// `multiclass`).
    pub fn as_str(self) -> &'static str {
        match self {
            Task::Regression => "regression",
            Task::Binary => "binary",
            Task::Multiclass => "multiclass",
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

    /// Parses `regression`, `binary` or `multiclass` (case-insensitive).
    fn from_str(s: &str) -> Result<Task> {
        match s.trim().to_ascii_lowercase().as_str() {
            "regression" => Ok(Task::Regression),
            "binary" => Ok(Task::Binary),
            "multiclass" => Ok(Task::Multiclass),
            _ => Err(CvxnnError::arg(
                "task",
                format!("unknown task `{s}`; expected `regression`, `binary` or `multiclass`"),
            )),
        }
    }
}

/// The classes of a classification task: the original label strings, in class-index order.
///
/// Serialized (in `model.json`) as the list of label strings. Model files written before string
/// labels existed stored a binary task's labels as `{"negative": 0.0, "positive": 1.0}`; that form
/// is still read (as the labels `["0", "1"]`).
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(try_from = "LabelsRepr", into = "Vec<String>")]
pub struct ClassLabels {
    /// The labels, class `k` at index `k`.
    labels: Vec<String>,
    /// Every label as a number when all of them are finite numbers (labels then match by value).
    values: Option<Vec<f64>>,
}

/// The forms of [`ClassLabels`] in files.
#[derive(Deserialize)]
#[serde(untagged)]
enum LabelsRepr {
    /// The label strings in class order.
    List(Vec<String>),
    /// The binary labels of model files written before string labels.
    Legacy { negative: f64, positive: f64 },
}

impl TryFrom<LabelsRepr> for ClassLabels {
    type Error = String;

    fn try_from(r: LabelsRepr) -> std::result::Result<ClassLabels, String> {
        let labels = match r {
            LabelsRepr::List(l) => l,
            LabelsRepr::Legacy { negative, positive } => {
                vec![negative.to_string(), positive.to_string()]
            }
        };
        ClassLabels::new(labels).map_err(|e| e.to_string())
    }
}

impl From<ClassLabels> for Vec<String> {
    fn from(l: ClassLabels) -> Vec<String> {
        l.labels
    }
}

impl ClassLabels {
    /// Labels in the given class order. Errors ([`CvxnnError::InvalidArgument`] `labels`) for no
    /// label, an empty label, or two labels that are the same class (equal strings, or equal
    /// numbers when every label is a number).
    pub fn new(labels: Vec<String>) -> Result<ClassLabels> {
        if labels.is_empty() {
            return Err(CvxnnError::arg("labels", "no class label"));
        }
        if labels.iter().any(|l| l.is_empty()) {
            return Err(CvxnnError::arg("labels", "empty class label"));
        }
        let values: Option<Vec<f64>> = labels.iter().map(|l| parse_finite(l)).collect();
        for (j, l) in labels.iter().enumerate() {
            let same = |k: usize| match &values {
                Some(v) => v[k] == v[j],
                None => labels[k] == *l,
            };
            if let Some(k) = (0..j).find(|&k| same(k)) {
                return Err(CvxnnError::arg(
                    "labels",
                    format!("labels `{}` and `{l}` are the same class", labels[k]),
                ));
            }
        }
        Ok(ClassLabels { labels, values })
    }

    /// The distinct labels of `target`, sorted: by value when every cell is a finite number
    /// (cells of equal value are one class, spelled as the first of them in the file), else
    /// lexicographically.
    pub fn fit(target: &TargetColumn) -> ClassLabels {
        let mut seen = HashSet::new();
        let mut labels: Vec<String> = target
            .cells
            .iter()
            .filter(|c| seen.insert(c.as_str()))
            .cloned()
            .collect();
        match target.numbers() {
            Some(_) => {
                let mut pairs: Vec<(f64, String)> = labels
                    .into_iter()
                    .filter_map(|l| parse_finite(&l).map(|v| (v, l)))
                    .collect();
                // Stable: among equal values the first spelling in the file comes first.
                pairs.sort_by(|a, b| a.0.total_cmp(&b.0));
                pairs.dedup_by(|a, b| a.0 == b.0);
                let values = pairs.iter().map(|p| p.0).collect();
                ClassLabels {
                    labels: pairs.into_iter().map(|p| p.1).collect(),
                    values: Some(values),
                }
            }
            None => {
                labels.sort();
                ClassLabels {
                    labels,
                    values: None,
                }
            }
        }
    }

    /// Number of classes.
    pub fn len(&self) -> usize {
        self.labels.len()
    }

    /// Whether there is no class (never true for labels built by [`ClassLabels::new`] or
    /// [`ClassLabels::fit`] on a non-empty column).
    pub fn is_empty(&self) -> bool {
        self.labels.is_empty()
    }

    /// The labels, class `k` at index `k`.
    pub fn labels(&self) -> &[String] {
        &self.labels
    }

    /// Whether every label is a number (labels then match by value: `1.0` is the label `1`).
    pub fn is_numeric(&self) -> bool {
        self.values.is_some()
    }

    /// The class index of one label, or `None` for a label that is not a class.
    pub fn index(&self, label: &str) -> Option<usize> {
        let label = label.trim();
        if let (Some(values), Some(v)) = (&self.values, parse_finite(label)) {
            return values.iter().position(|&w| w == v);
        }
        self.labels.iter().position(|l| l == label)
    }

    /// The original label of class `k` (`None` when `k` is out of range).
    pub fn decode(&self, k: usize) -> Option<&str> {
        self.labels.get(k).map(String::as_str)
    }

    /// The class index of every cell of `target`; a cell that is not one of the labels is a
    /// [`CvxnnError::Data`] naming the file, the line, the column and the unknown label.
    pub fn encode(&self, target: &TargetColumn) -> Result<Vec<usize>> {
        target
            .cells
            .iter()
            .enumerate()
            .map(|(i, cell)| {
                self.index(cell).ok_or_else(|| CvxnnError::Data {
                    path: target.path.clone(),
                    line: target.line(i),
                    column: Some(target.name.clone()),
                    message: format!(
                        "unknown label \"{cell}\" (row {}); the model's classes are {}",
                        i + 1,
                        shown_labels(&self.labels)
                    ),
                })
            })
            .collect()
    }
}

/// A target column encoded for its task (before any split).
#[derive(Clone, Debug, PartialEq)]
pub enum EncodedTarget {
    /// Regression: the values.
    Values(Vec<f64>),
    /// Binary classification: every row's class (0 or 1) and the two labels.
    Binary {
        /// The two labels (class 0 is encoded -1, class 1 is +1).
        labels: ClassLabels,
        /// Class index of every row.
        classes: Vec<usize>,
    },
    /// Multiclass classification: every row's class and the labels.
    Multiclass {
        /// The labels (at least 2).
        labels: ClassLabels,
        /// Class index of every row.
        classes: Vec<usize>,
    },
}

impl EncodedTarget {
    /// The task.
    pub fn task(&self) -> Task {
        match self {
            EncodedTarget::Values(_) => Task::Regression,
            EncodedTarget::Binary { .. } => Task::Binary,
            EncodedTarget::Multiclass { .. } => Task::Multiclass,
        }
    }

    /// The class labels (classification).
    pub fn labels(&self) -> Option<&ClassLabels> {
        match self {
            EncodedTarget::Values(_) => None,
            EncodedTarget::Binary { labels, .. } | EncodedTarget::Multiclass { labels, .. } => {
                Some(labels)
            }
        }
    }

    /// Number of program outputs: 1 for regression and binary, `c` (classes) for multiclass.
    pub fn outputs(&self) -> usize {
        match self {
            EncodedTarget::Multiclass { labels, .. } => labels.len(),
            _ => 1,
        }
    }

    /// The targets of rows `idx` (in that order) as the convex program takes them: the values
    /// (regression), ±1 (binary: [`binary_targets`]) or the one-hot `|idx| x c` matrix stored
    /// column-major (multiclass: [`one_hot`]).
    pub fn program_targets(&self, idx: &[usize]) -> Vec<f64> {
        match self {
            EncodedTarget::Values(v) => idx.iter().map(|&i| v[i]).collect(),
            EncodedTarget::Binary { classes, .. } => {
                binary_targets(&idx.iter().map(|&i| classes[i]).collect::<Vec<_>>())
            }
            EncodedTarget::Multiclass { labels, classes } => one_hot(
                &idx.iter().map(|&i| classes[i]).collect::<Vec<_>>(),
                labels.len(),
            ),
        }
    }
}

/// Encodes a target column for `task`.
///
/// Regression needs every cell to be a finite number (else a [`CvxnnError::Data`] names the file,
/// line and column of the first one that is not). Binary needs exactly two distinct labels,
/// multiclass at least two ([`ClassLabels::fit`] orders them); otherwise a [`CvxnnError::Data`]
/// names the file and column, says how many distinct labels were found and shows up to 5.
pub fn encode_target(task: Task, target: &TargetColumn) -> Result<EncodedTarget> {
    match task {
        Task::Regression => target
            .values()
            .map(EncodedTarget::Values)
            .map_err(|e| match e {
                CvxnnError::Data {
                    path,
                    line,
                    column,
                    message,
                } => CvxnnError::Data {
                    path,
                    line,
                    column,
                    message: format!(
                        "{message}; a regression target must be numeric (for class labels use \
                     --task binary or --task multiclass)"
                    ),
                },
                other => other,
            }),
        Task::Binary | Task::Multiclass => {
            let labels = ClassLabels::fit(target);
            let c = labels.len();
            let bad = if task == Task::Binary { c != 2 } else { c < 2 };
            if bad {
                let shown: Vec<&str> = labels.labels.iter().take(5).map(String::as_str).collect();
                let more = if c > 5 { ", ..." } else { "" };
                return Err(CvxnnError::Data {
                    path: target.path.clone(),
                    line: None,
                    column: Some(target.name.clone()),
                    message: format!(
                        "a {task} task needs {} distinct target values, found {c}{}",
                        if task == Task::Binary {
                            "exactly 2"
                        } else {
                            "at least 2"
                        },
                        if c == 0 {
                            String::new()
                        } else {
                            format!(": {}{more}", shown.join(", "))
                        }
                    ),
                });
            }
            let classes = labels.encode(target)?;
            Ok(if task == Task::Binary {
                EncodedTarget::Binary { labels, classes }
            } else {
                EncodedTarget::Multiclass { labels, classes }
            })
        }
    }
}

/// Binary targets: class 0 -> -1, any other class -> +1.
pub fn binary_targets(classes: &[usize]) -> Vec<f64> {
    classes
        .iter()
        .map(|&k| if k == 0 { -1.0 } else { 1.0 })
        .collect()
}

/// The one-hot `n x c` matrix of `n = classes.len()` class indices, stored column-major: entry
/// `k * n + j` is 1 when sample `j` has class `k`, else 0 (a class index `>= c` gives a zero row).
pub fn one_hot(classes: &[usize], c: usize) -> Vec<f64> {
    let n = classes.len();
    let mut y = vec![0.0; n * c];
    for (j, &k) in classes.iter().enumerate() {
        if k < c {
            y[k * n + j] = 1.0;
        }
    }
    y
}

/// The binary decision of a ±1-scale score: class 1 when `score >= 0`, else class 0 (NaN gives
/// class 0).
pub fn binary_class(score: f64) -> usize {
    usize::from(score >= 0.0)
}

/// The multiclass decision: for each of the `n` rows of the `n x c` score matrix (column-major,
/// entry `k * n + j`), the class with the largest score; ties go to the lowest class index, and
/// NaN scores never win. A [`CvxnnError::Shape`] when `scores.len() != n * c` or `c == 0`.
pub fn argmax_classes(scores: &[f64], n: usize, c: usize) -> Result<Vec<usize>> {
    if c == 0 || scores.len() != n * c {
        return Err(CvxnnError::Shape(format!(
            "{} scores are not a {n} x {c} matrix",
            scores.len()
        )));
    }
    Ok((0..n)
        .map(|j| {
            let mut best = 0;
            for k in 1..c {
                let (s, b) = (scores[k * n + j], scores[best * n + j]);
                if s > b || (b.is_nan() && !s.is_nan()) {
                    best = k;
                }
            }
            best
        })
        .collect())
}

/// `` `a`, `b`, `c` `` (at most 10, then `...`).
fn shown_labels(labels: &[String]) -> String {
    let mut s: Vec<String> = labels.iter().take(10).map(|l| format!("`{l}`")).collect();
    if labels.len() > 10 {
        s.push("...".into());
    }
    s.join(", ")
}

/// The distinct values of `v`, ascending (`-0.0` and `0.0` count as one value).
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

    fn cells(v: &[&str]) -> TargetColumn {
        TargetColumn {
            path: "data/t.csv".into(),
            name: "y".into(),
            cells: v.iter().map(|c| c.to_string()).collect(),
            lines: (2..v.len() + 2).collect(),
        }
    }

    fn labels_of(e: &EncodedTarget) -> Vec<&str> {
        e.labels()
            .map(|l| l.labels().iter().map(String::as_str).collect())
            .unwrap_or_default()
    }

    fn numbers(v: &[f64]) -> TargetColumn {
        TargetColumn::from_values("data/t.csv", "y", v)
    }

    #[test]
    fn infer_task() {
        assert_eq!(Task::infer(&numbers(&[0.0, 1.0, 1.0, 0.0])), Task::Binary);
        assert_eq!(Task::infer(&numbers(&[3.0, 7.0])), Task::Binary);
        assert_eq!(Task::infer(&numbers(&[1.0, 2.0, 3.0])), Task::Regression);
        assert_eq!(Task::infer(&numbers(&[5.0, 5.0])), Task::Regression);
        assert_eq!(Task::infer(&numbers(&[])), Task::Regression);
        assert_eq!(Task::infer(&cells(&["-0", "0", "1"])), Task::Binary);
        assert_eq!(Task::infer(&cells(&["1", "1.0", "2"])), Task::Binary);
        assert_eq!(Task::infer(&cells(&["a", "b", "a"])), Task::Binary);
        assert_eq!(Task::infer(&cells(&["a", "b", "c"])), Task::Multiclass);
        assert_eq!(Task::infer(&cells(&["1", "2", "x"])), Task::Multiclass);
        assert_eq!(Task::infer(&cells(&["a", "a"])), Task::Binary);
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
        assert_eq!(
            serde_json::from_str::<Task>("\"multiclass\"").ok(),
            Some(Task::Multiclass)
        );
        assert_eq!("Binary".parse::<Task>().ok(), Some(Task::Binary));
        assert_eq!("multiclass".parse::<Task>().ok(), Some(Task::Multiclass));
        assert_eq!(Task::Regression.to_string(), "regression");
        assert_eq!(Task::Multiclass.to_string(), "multiclass");
        assert!(matches!(
            "ordinal".parse::<Task>(),
            Err(CvxnnError::InvalidArgument { .. })
        ));
    }

    #[test]
    fn labels_sort_numerically_or_lexicographically() {
        let l = ClassLabels::fit(&cells(&["10", "2", "1.0", "2", "1"]));
        assert_eq!(l.labels(), ["1.0", "2", "10"]);
        assert!(l.is_numeric());
        assert_eq!(l.index("1"), Some(0));
        assert_eq!(l.index(" 10.0 "), Some(2));
        assert_eq!(l.index("3"), None);
        assert_eq!(l.index("x"), None);
        let l = ClassLabels::fit(&cells(&["b", "10", "a", "2", "b"]));
        assert_eq!(l.labels(), ["10", "2", "a", "b"]);
        assert!(!l.is_numeric());
        assert_eq!(l.index("2"), Some(1));
        assert_eq!(l.index("2.0"), None);
        assert_eq!(l.decode(3), Some("b"));
        assert_eq!(l.decode(4), None);
        assert_eq!(l.len(), 4);
    }

    #[test]
    fn encode_binary_first_label_is_negative() {
        let e = encode_target(Task::Binary, &numbers(&[2.0, 1.0, 2.0, 1.0])).expect("two values");
        assert_eq!(e.task(), Task::Binary);
        assert_eq!(e.outputs(), 1);
        assert_eq!(labels_of(&e), ["1", "2"]);
        assert_eq!(e.program_targets(&[0, 1, 2, 3]), vec![1.0, -1.0, 1.0, -1.0]);
        assert_eq!(e.program_targets(&[3, 0]), vec![-1.0, 1.0]);
        let e = encode_target(Task::Binary, &cells(&["malignant", "benign", "benign"]))
            .expect("two labels");
        assert_eq!(labels_of(&e), ["benign", "malignant"]);
        assert_eq!(e.program_targets(&[0, 1, 2]), vec![1.0, -1.0, -1.0]);
        assert_eq!(binary_class(0.3), 1);
        assert_eq!(binary_class(0.0), 1);
        assert_eq!(binary_class(-1e-9), 0);
        assert_eq!(binary_class(f64::NAN), 0);
    }

    #[test]
    fn encode_multiclass_one_hot_column_major() {
        let e = encode_target(Task::Multiclass, &cells(&["c", "a", "b", "a"])).expect("3 classes");
        assert_eq!(e.task(), Task::Multiclass);
        assert_eq!(e.outputs(), 3);
        match &e {
            EncodedTarget::Multiclass { classes, .. } => assert_eq!(classes, &[2, 0, 1, 0]),
            other => panic!("{other:?}"),
        }
        // n = 4, c = 3: entry k*n + j.
        assert_eq!(
            e.program_targets(&[0, 1, 2, 3]),
            vec![
                0.0, 1.0, 0.0, 1.0, // class a
                0.0, 0.0, 1.0, 0.0, // class b
                1.0, 0.0, 0.0, 0.0, // class c
            ]
        );
        assert_eq!(one_hot(&[1, 0], 2), vec![0.0, 1.0, 1.0, 0.0]);
        assert_eq!(one_hot(&[], 3), Vec::<f64>::new());
        // Two classes are allowed for multiclass (one-hot with 2 columns).
        let e = encode_target(Task::Multiclass, &numbers(&[0.0, 1.0])).expect("2 classes");
        assert_eq!(e.program_targets(&[0, 1]), vec![1.0, 0.0, 0.0, 1.0]);
        // Numeric labels sort numerically: 2 < 10.
        let e = encode_target(Task::Multiclass, &cells(&["10", "2", "3"])).expect("3 classes");
        assert_eq!(labels_of(&e), ["2", "3", "10"]);
    }

    #[test]
    fn argmax_ties_and_nan() {
        // n = 3 rows, c = 3 classes, column-major.
        let scores = [
            0.1,
            5.0,
            1.0, // class 0
            0.7,
            5.0,
            f64::NAN, // class 1
            0.2,
            1.0,
            1.0, // class 2
        ];
        assert_eq!(argmax_classes(&scores, 3, 3).ok(), Some(vec![1, 0, 0]));
        let scores = [f64::NAN, 0.5];
        assert_eq!(argmax_classes(&scores, 1, 2).ok(), Some(vec![1]));
        assert!(matches!(
            argmax_classes(&[1.0, 2.0, 3.0], 2, 2),
            Err(CvxnnError::Shape(_))
        ));
        assert!(argmax_classes(&[], 0, 0).is_err());
    }

    #[test]
    fn labels_serde_and_legacy_form() {
        let l = ClassLabels::fit(&cells(&["yes", "no"]));
        let s = serde_json::to_string(&l).unwrap_or_default();
        assert_eq!(s, r#"["no","yes"]"#);
        assert_eq!(serde_json::from_str::<ClassLabels>(&s).ok(), Some(l));
        // Model files written before string labels.
        let old: ClassLabels =
            serde_json::from_str(r#"{"negative": 0.0, "positive": 1.0}"#).expect("legacy form");
        assert_eq!(old.labels(), ["0", "1"]);
        assert!(old.is_numeric());
        assert_eq!(old.index("1.0"), Some(1));
        let old: ClassLabels =
            serde_json::from_str(r#"{"negative": -1.5, "positive": 2}"#).expect("legacy form");
        assert_eq!(old.labels(), ["-1.5", "2"]);
        // Duplicates and empty lists are refused.
        assert!(serde_json::from_str::<ClassLabels>(r#"["a","a"]"#).is_err());
        assert!(serde_json::from_str::<ClassLabels>(r#"["1","1.0"]"#).is_err());
        assert!(serde_json::from_str::<ClassLabels>("[]").is_err());
        assert!(serde_json::from_str::<ClassLabels>(r#"["a",""]"#).is_err());
    }

    #[test]
    fn encode_regression_passes_through() {
        let v = [1.5, -2.0, 3.25];
        let e = encode_target(Task::Regression, &numbers(&v)).expect("regression");
        assert_eq!(e, EncodedTarget::Values(v.to_vec()));
        assert_eq!(e.labels(), None);
        assert_eq!(e.program_targets(&[2, 0]), vec![3.25, 1.5]);
    }

    #[test]
    fn regression_on_labels_names_the_first_bad_row() {
        let (path, line, column, message) = expect_data_error(encode_target(
            Task::Regression,
            &cells(&["1", "2", "cat", "x"]),
        ));
        assert_eq!(path, std::path::Path::new("data/t.csv"));
        assert_eq!((line, column.as_deref()), (Some(4), Some("y")));
        assert!(message.contains("\"cat\""), "{message}");
        assert!(message.contains("regression"), "{message}");
    }

    #[test]
    fn encode_classification_errors() {
        let (path, _, column, message) =
            expect_data_error(encode_target(Task::Binary, &numbers(&[1.0, 2.0, 3.0])));
        assert_eq!(path, std::path::Path::new("data/t.csv"));
        assert_eq!(column.as_deref(), Some("y"));
        assert!(message.contains("found 3: 1, 2, 3"), "{message}");
        let many: Vec<f64> = (0..9).map(f64::from).collect();
        let (_, _, _, message) = expect_data_error(encode_target(Task::Binary, &numbers(&many)));
        assert!(message.contains("found 9: 0, 1, 2, 3, 4, ..."), "{message}");
        let (_, _, _, message) =
            expect_data_error(encode_target(Task::Binary, &cells(&["a", "a"])));
        assert!(
            message.contains("exactly 2") && message.contains("found 1: a"),
            "{message}"
        );
        let (_, _, column, message) =
            expect_data_error(encode_target(Task::Multiclass, &cells(&["a", "a"])));
        assert_eq!(column.as_deref(), Some("y"));
        assert!(
            message.contains("multiclass") && message.contains("at least 2"),
            "{message}"
        );
        let shown = encode_target(Task::Binary, &numbers(&[4.0]))
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(
            shown.contains("data/t.csv") && shown.contains("`y`"),
            "{shown}"
        );
    }

    #[test]
    fn unknown_label_names_row_line_and_label() {
        let labels = ClassLabels::fit(&cells(&["a", "b"]));
        let mut target = cells(&["b", "a", "zebra"]);
        target.lines = vec![2, 4, 7];
        let (_, line, column, message) = expect_data_error(labels.encode(&target));
        assert_eq!((line, column.as_deref()), (Some(7), Some("y")));
        assert!(message.contains("\"zebra\""), "{message}");
        assert!(message.contains("row 3"), "{message}");
        assert!(message.contains("`a`, `b`"), "{message}");
        assert_eq!(labels.encode(&cells(&["b", "a"])).ok(), Some(vec![1, 0]));
    }
}
