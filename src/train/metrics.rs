//! Classification metrics: accuracy, macro-F1, per-class precision/recall, confusion matrix.

use std::fmt::Write;

use crate::model::artifact::{ClassMetrics, Evaluation};

/// Scores predictions against gold labels (both as label indices).
pub fn evaluate(data: &str, labels: &[String], gold: &[usize], predicted: &[usize]) -> Evaluation {
    assert_eq!(
        gold.len(),
        predicted.len(),
        "gold and predicted differ in length. This is a bug."
    );
    let k = labels.len();
    let mut confusion = vec![vec![0u64; k]; k];
    for (&g, &p) in gold.iter().zip(predicted) {
        confusion[g][p] += 1;
    }
    let correct: u64 = (0..k).map(|i| confusion[i][i]).sum();
    let n = gold.len() as u64;
    let per_class: Vec<ClassMetrics> = (0..k)
        .map(|c| {
            let tp = confusion[c][c] as f64;
            let predicted_c: u64 = (0..k).map(|g| confusion[g][c]).sum();
            let support: u64 = confusion[c].iter().sum();
            let precision = ratio(tp, predicted_c as f64);
            let recall = ratio(tp, support as f64);
            let f1 = ratio(2.0 * precision * recall, precision + recall);
            ClassMetrics {
                label: labels[c].clone(),
                precision,
                recall,
                f1,
                support,
            }
        })
        .collect();
    // Macro-F1 over the classes that occur in the gold data, as scikit-learn does with `labels=`
    // restricted to present classes; a class absent from both gold and predictions says nothing.
    let present: Vec<&ClassMetrics> = per_class
        .iter()
        .enumerate()
        .filter(|(c, m)| m.support > 0 || (0..k).any(|g| confusion[g][*c] > 0))
        .map(|(_, m)| m)
        .collect();
    let macro_f1 = if present.is_empty() {
        0.0
    } else {
        present.iter().map(|m| m.f1).sum::<f64>() / present.len() as f64
    };
    Evaluation {
        data: data.to_string(),
        examples: n,
        accuracy: ratio(correct as f64, n as f64),
        macro_f1,
        per_class,
        confusion,
    }
}

fn ratio(a: f64, b: f64) -> f64 {
    if b == 0.0 { 0.0 } else { a / b }
}

/// A human-readable report: summary, per-class table and confusion matrix.
pub fn report(e: &Evaluation) -> String {
    let mut s = String::new();
    let _ = writeln!(s, "data: {}", e.data);
    let _ = writeln!(
        s,
        "examples: {}  accuracy: {:.4}  macro-F1: {:.4}",
        e.examples, e.accuracy, e.macro_f1
    );
    let width = e
        .per_class
        .iter()
        .map(|c| c.label.chars().count())
        .max()
        .unwrap_or(5)
        .max(5);
    let _ = writeln!(
        s,
        "\n{:<width$}  precision  recall     f1  support",
        "label"
    );
    for c in &e.per_class {
        let _ = writeln!(
            s,
            "{:<width$}  {:>9.4}  {:>6.4}  {:>5.4}  {:>7}",
            c.label, c.precision, c.recall, c.f1, c.support
        );
    }
    let _ = writeln!(
        s,
        "\nconfusion matrix (rows = gold, columns = predicted, in the order above):"
    );
    for (c, row) in e.confusion.iter().enumerate() {
        let cells: Vec<String> = row.iter().map(|v| format!("{v:>6}")).collect();
        let _ = writeln!(s, "{:<width$} {}", e.per_class[c].label, cells.join(""));
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    fn labels(xs: &[&str]) -> Vec<String> {
        xs.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn metrics_match_hand_computed_values() {
        // gold:  a a a b b c ; pred: a a b b c c
        let l = labels(&["a", "b", "c"]);
        let e = evaluate("t", &l, &[0, 0, 0, 1, 1, 2], &[0, 0, 1, 1, 2, 2]);
        assert_eq!(e.examples, 6);
        assert!((e.accuracy - 4.0 / 6.0).abs() < 1e-12);
        assert_eq!(
            e.confusion,
            vec![vec![2, 1, 0], vec![0, 1, 1], vec![0, 0, 1]]
        );
        // a: p=2/2 r=2/3 f1=0.8; b: p=1/2 r=1/2 f1=0.5; c: p=1/2 r=1 f1=2/3
        let f1: Vec<f64> = e.per_class.iter().map(|c| c.f1).collect();
        assert!(
            (f1[0] - 0.8).abs() < 1e-12
                && (f1[1] - 0.5).abs() < 1e-12
                && (f1[2] - 2.0 / 3.0).abs() < 1e-12
        );
        assert!((e.macro_f1 - (0.8 + 0.5 + 2.0 / 3.0) / 3.0).abs() < 1e-12);
        assert_eq!(e.per_class[0].support, 3);
        assert!((e.per_class[2].precision - 0.5).abs() < 1e-12);
    }

    #[test]
    fn absent_class_does_not_dilute_macro_f1() {
        let l = labels(&["a", "b", "c"]);
        let e = evaluate("t", &l, &[0, 1], &[0, 1]);
        assert_eq!(e.accuracy, 1.0);
        assert_eq!(e.macro_f1, 1.0);
        assert!(report(&e).contains("accuracy: 1.0000"));
    }
}
