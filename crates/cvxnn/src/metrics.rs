//! Quality of predictions: MSE and R^2 for regression; accuracy, balanced accuracy and the
//! confusion matrix for classification (over class indices, so binary and multiclass share them).

use serde::{Deserialize, Serialize};

/// Train/test quality of a model's predictions; absent fields do not apply to the task.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Metrics {
    /// Mean squared error (regression), in the target's units.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mse: Option<f64>,
    /// Coefficient of determination (regression; absent for a constant target).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub r2: Option<f64>,
    /// Fraction of correct labels (classification).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub accuracy: Option<f64>,
    /// Mean recall over the classes present in the true labels (classification).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub balanced_accuracy: Option<f64>,
    /// Counts of (true class, predicted class) pairs (classification).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub confusion: Option<ConfusionMatrix>,
}

/// A confusion matrix: `counts[t][p]` samples of true class `t` were predicted as class `p`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConfusionMatrix {
    /// The class labels, class `k` at index `k` (rows and columns follow this order).
    pub labels: Vec<String>,
    /// `c x c` counts: rows are true classes, columns predicted classes.
    pub counts: Vec<Vec<usize>>,
}

impl ConfusionMatrix {
    /// Counts the pairs `(truth[j], pred[j])` over `labels.len()` classes; pairs with a class
    /// index out of range are not counted.
    pub fn new(labels: &[String], truth: &[usize], pred: &[usize]) -> ConfusionMatrix {
        let c = labels.len();
        let mut counts = vec![vec![0; c]; c];
        for (&t, &p) in truth.iter().zip(pred) {
            if t < c && p < c {
                counts[t][p] += 1;
            }
        }
        ConfusionMatrix {
            labels: labels.to_vec(),
            counts,
        }
    }

    /// Samples counted.
    pub fn total(&self) -> usize {
        self.counts.iter().flatten().sum()
    }

    /// Fraction on the diagonal (`None` when nothing was counted).
    pub fn accuracy(&self) -> Option<f64> {
        let total = self.total();
        let hits: usize = (0..self.counts.len()).map(|k| self.counts[k][k]).sum();
        (total > 0).then(|| hits as f64 / total as f64)
    }

    /// Mean over the classes with at least one true sample of their recall
    /// (`counts[k][k] / sum_p counts[k][p]`); classes absent from the true labels are left out.
    /// `None` when nothing was counted.
    pub fn balanced_accuracy(&self) -> Option<f64> {
        let recalls: Vec<f64> = self
            .counts
            .iter()
            .enumerate()
            .filter_map(|(k, row)| {
                let n: usize = row.iter().sum();
                (n > 0).then(|| row[k] as f64 / n as f64)
            })
            .collect();
        (!recalls.is_empty()).then(|| recalls.iter().sum::<f64>() / recalls.len() as f64)
    }
}

/// MSE and R^2 of predictions against targets (same units). R^2 is absent for a constant target.
pub fn regression_metrics(pred: &[f64], target: &[f64]) -> Metrics {
    let n = target.len().max(1) as f64;
    let mse = pred
        .iter()
        .zip(target)
        .map(|(p, t)| (p - t) * (p - t))
        .sum::<f64>()
        / n;
    let mean = target.iter().sum::<f64>() / n;
    let var = target.iter().map(|t| (t - mean) * (t - mean)).sum::<f64>() / n;
    Metrics {
        mse: Some(mse),
        r2: (var > 0.0).then(|| 1.0 - mse / var),
        ..Metrics::default()
    }
}

/// Accuracy, balanced accuracy and confusion matrix of predicted class indices against true ones
/// (`labels[k]` names class `k`). With no sample the accuracies are 0.
pub fn classification_metrics(labels: &[String], truth: &[usize], pred: &[usize]) -> Metrics {
    let confusion = ConfusionMatrix::new(labels, truth, pred);
    Metrics {
        accuracy: Some(confusion.accuracy().unwrap_or(0.0)),
        balanced_accuracy: Some(confusion.balanced_accuracy().unwrap_or(0.0)),
        confusion: Some(confusion),
        ..Metrics::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn labels(v: &[&str]) -> Vec<String> {
        v.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn confusion_and_balanced_accuracy_by_hand() {
        // Classes a, b, c, d. True: a a a b b c c c c (d never occurs: absent from this split).
        // Predicted: a b a a a a c c c (b is never predicted correctly, d never predicted).
        let l = labels(&["a", "b", "c", "d"]);
        let truth = [0, 0, 0, 1, 1, 2, 2, 2, 2];
        let pred = [0, 1, 0, 0, 0, 0, 2, 2, 2];
        let m = classification_metrics(&l, &truth, &pred);
        let cm = m.confusion.as_ref().expect("confusion");
        assert_eq!(cm.labels, l);
        assert_eq!(
            cm.counts,
            vec![
                vec![2, 1, 0, 0],
                vec![2, 0, 0, 0],
                vec![1, 0, 3, 0],
                vec![0, 0, 0, 0],
            ]
        );
        assert_eq!(cm.total(), 9);
        // 5 of 9 right.
        assert_eq!(m.accuracy, Some(5.0 / 9.0));
        // Recalls a 2/3, b 0, c 3/4; d is absent from the truth and left out.
        let expect = (2.0 / 3.0 + 0.0 + 0.75) / 3.0;
        assert!((m.balanced_accuracy.unwrap_or(f64::NAN) - expect).abs() < 1e-15);
        assert_eq!((m.mse, m.r2), (None, None));
    }

    #[test]
    fn classification_metrics_edge_cases() {
        let l = labels(&["no", "yes"]);
        let m = classification_metrics(&l, &[1, 1, 0], &[1, 1, 0]);
        assert_eq!(m.accuracy, Some(1.0));
        assert_eq!(m.balanced_accuracy, Some(1.0));
        // A class never predicted: recall 0 counts.
        let m = classification_metrics(&l, &[0, 1, 1, 1], &[1, 1, 1, 1]);
        assert_eq!(m.accuracy, Some(0.75));
        assert_eq!(m.balanced_accuracy, Some(0.5));
        let m = classification_metrics(&l, &[], &[]);
        assert_eq!((m.accuracy, m.balanced_accuracy), (Some(0.0), Some(0.0)));
    }

    #[test]
    fn regression_metrics_by_hand() {
        let m = regression_metrics(&[1.0, 2.0, 4.0], &[1.0, 3.0, 5.0]);
        assert!((m.mse.unwrap_or(f64::NAN) - 2.0 / 3.0).abs() < 1e-15);
        // var of [1, 3, 5] = 8/3.
        assert!((m.r2.unwrap_or(f64::NAN) - (1.0 - 0.25)).abs() < 1e-15);
        assert_eq!(m.accuracy, None);
        assert_eq!(regression_metrics(&[1.0], &[2.0]).r2, None);
    }

    #[test]
    fn metrics_serde_skips_absent_fields() {
        let m = classification_metrics(&labels(&["a", "b"]), &[0, 1], &[0, 0]);
        let v = serde_json::to_value(&m).unwrap_or_default();
        assert!(v.get("mse").is_none());
        assert_eq!(v["confusion"]["labels"], serde_json::json!(["a", "b"]));
        assert_eq!(
            v["confusion"]["counts"],
            serde_json::json!([[1, 0], [1, 0]])
        );
        assert_eq!(v["balanced_accuracy"], serde_json::json!(0.5));
        let back: Metrics = serde_json::from_value(v).unwrap_or_default();
        assert_eq!(back, m);
        // Reports written before these fields existed still read.
        let old: Metrics = serde_json::from_str(r#"{"accuracy": 0.5}"#).unwrap_or_default();
        assert_eq!(old.accuracy, Some(0.5));
        assert_eq!(old.confusion, None);
    }
}
