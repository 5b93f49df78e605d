//! How good a model is on held-out rows: AUC by course week, Brier score
//! and a calibration table; and the `models` table that lists them.

use std::collections::BTreeMap;
use std::sync::Arc;

use bytes::Bytes;
use datafusion::arrow::array::{
    ArrayRef, Float64Builder, Int64Builder, RecordBatch, StringBuilder, TimestampMicrosecondBuilder,
};
use datafusion::arrow::datatypes::{DataType, Field, Schema};
use serde::{Deserialize, Serialize};

use super::Model;
use crate::Result;
use crate::lake::parquet_io;
use crate::lake::tables::timestamp_type;

/// The course weeks whose AUC is reported on its own line (and compared
/// when a new model would replace the current one).
pub const HEADLINE_WEEKS: [u32; 4] = [2, 5, 10, 20];

/// One bin of predicted probability: how many rows, the mean prediction and
/// the observed success rate.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct CalibrationBin {
    pub from: f64,
    pub to: f64,
    pub rows: usize,
    pub mean_predicted: f64,
    pub observed: f64,
}

/// A model's quality on held-out rows.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Metrics {
    /// AUC over all held-out rows.
    pub auc: Option<f64>,
    /// AUC of the rows of each course week (week 1 holds the course's
    /// start); none where one class is missing.
    pub auc_by_week: BTreeMap<u32, Option<f64>>,
    /// Rows per course week.
    pub rows_by_week: BTreeMap<u32, usize>,
    /// Mean squared error of the probability.
    pub brier: f64,
    pub calibration: Vec<CalibrationBin>,
    pub rows: usize,
}

impl Metrics {
    /// Metrics of predictions `p` for outcomes `y` in course weeks `week`.
    pub fn compute(p: &[f64], y: &[bool], week: &[u32]) -> Self {
        let mut by_week: BTreeMap<u32, (Vec<f64>, Vec<bool>)> = BTreeMap::new();
        for ((&p, &y), &w) in p.iter().zip(y).zip(week) {
            let entry = by_week.entry(w).or_default();
            entry.0.push(p);
            entry.1.push(y);
        }
        let brier = if p.is_empty() {
            0.0
        } else {
            p.iter()
                .zip(y)
                .map(|(p, &y)| (p - f64::from(u8::from(y))).powi(2))
                .sum::<f64>()
                / p.len() as f64
        };
        Self {
            auc: auc(p, y),
            auc_by_week: by_week.iter().map(|(w, (p, y))| (*w, auc(p, y))).collect(),
            rows_by_week: by_week.iter().map(|(w, (p, _))| (*w, p.len())).collect(),
            brier,
            calibration: calibration(p, y, 10),
            rows: p.len(),
        }
    }

    /// The AUC at a course week, if it was measured.
    pub fn auc_at(&self, week: u32) -> Option<f64> {
        self.auc_by_week.get(&week).copied().flatten()
    }
}

/// Area under the ROC curve: the probability that a random success is
/// scored above a random failure (ties count half), by ranks; none when
/// either class is missing.
pub fn auc(p: &[f64], y: &[bool]) -> Option<f64> {
    let positives = y.iter().filter(|&&y| y).count();
    let negatives = y.len() - positives;
    if positives == 0 || negatives == 0 {
        return None;
    }
    let mut order: Vec<usize> = (0..p.len()).collect();
    order.sort_by(|&a, &b| p[a].total_cmp(&p[b]));
    let mut rank_sum = 0.0;
    let mut i = 0;
    while i < order.len() {
        let mut j = i;
        while j + 1 < order.len() && p[order[j + 1]] == p[order[i]] {
            j += 1;
        }
        // ranks i+1 ..= j+1 share their mean
        let mean_rank = (i + j) as f64 / 2.0 + 1.0;
        rank_sum += mean_rank * order[i..=j].iter().filter(|&&k| y[k]).count() as f64;
        i = j + 1;
    }
    let (np, nn) = (positives as f64, negatives as f64);
    Some((rank_sum - np * (np + 1.0) / 2.0) / (np * nn))
}

/// `bins` equal-width bins of predicted probability; empty bins left out.
pub fn calibration(p: &[f64], y: &[bool], bins: usize) -> Vec<CalibrationBin> {
    let mut sums = vec![(0usize, 0.0, 0usize); bins];
    for (&p, &y) in p.iter().zip(y) {
        let b = ((p * bins as f64) as usize).min(bins - 1);
        sums[b].0 += 1;
        sums[b].1 += p;
        sums[b].2 += usize::from(y);
    }
    sums.iter()
        .enumerate()
        .filter(|(_, s)| s.0 > 0)
        .map(|(b, &(n, sum_p, successes))| CalibrationBin {
            from: b as f64 / bins as f64,
            to: (b + 1) as f64 / bins as f64,
            rows: n,
            mean_predicted: sum_p / n as f64,
            observed: successes as f64 / n as f64,
        })
        .collect()
}

/// The `models` table: one row per saved model.
pub fn models_table(models: &[Model]) -> Result<Bytes> {
    let schema = Arc::new(Schema::new(vec![
        Field::new("version", DataType::Utf8, false),
        Field::new("trained_at", timestamp_type(), true),
        Field::new("features", DataType::Utf8, false),
        Field::new("intercept", DataType::Float64, false),
        Field::new("training_courses", DataType::Utf8, true),
        Field::new("holdout_courses", DataType::Utf8, true),
        Field::new("training_rows", DataType::Int64, true),
        Field::new("holdout_rows", DataType::Int64, true),
        Field::new("auc", DataType::Float64, true),
        Field::new("auc_week_2", DataType::Float64, true),
        Field::new("auc_week_5", DataType::Float64, true),
        Field::new("auc_week_10", DataType::Float64, true),
        Field::new("auc_week_20", DataType::Float64, true),
        Field::new("brier", DataType::Float64, true),
        Field::new("metrics", DataType::Utf8, true),
    ]));
    let mut version = StringBuilder::new();
    let mut trained_at = TimestampMicrosecondBuilder::new().with_timezone("UTC");
    let mut features = StringBuilder::new();
    let mut intercept = Float64Builder::new();
    let mut training_courses = StringBuilder::new();
    let mut holdout_courses = StringBuilder::new();
    let mut training_rows = Int64Builder::new();
    let mut holdout_rows = Int64Builder::new();
    let mut auc = Float64Builder::new();
    let mut weeks: [Float64Builder; 4] = std::array::from_fn(|_| Float64Builder::new());
    let mut brier = Float64Builder::new();
    let mut metrics = StringBuilder::new();
    for m in models {
        version.append_value(&m.version);
        trained_at.append_option(m.trained_at.map(|t| t.timestamp_micros()));
        features.append_value(serde_json::to_string(&m.features).unwrap_or_default());
        intercept.append_value(m.intercept);
        let t = m.training.as_ref();
        training_courses.append_option(t.map(|t| t.training_courses.join(",")));
        holdout_courses.append_option(t.map(|t| t.holdout_courses.join(",")));
        training_rows.append_option(t.map(|t| t.training_rows as i64));
        holdout_rows.append_option(t.map(|t| t.holdout_rows as i64));
        let q = m.metrics.as_ref();
        auc.append_option(q.and_then(|q| q.auc));
        for (b, w) in weeks.iter_mut().zip(HEADLINE_WEEKS) {
            b.append_option(q.and_then(|q| q.auc_at(w)));
        }
        brier.append_option(q.map(|q| q.brier));
        metrics.append_option(q.map(|q| serde_json::to_string(q).unwrap_or_default()));
    }
    let [w2, w5, w10, w20] = weeks;
    let mut columns: Vec<ArrayRef> = vec![
        Arc::new(version.finish()),
        Arc::new(trained_at.finish()),
        Arc::new(features.finish()),
        Arc::new(intercept.finish()),
        Arc::new(training_courses.finish()),
        Arc::new(holdout_courses.finish()),
        Arc::new(training_rows.finish()),
        Arc::new(holdout_rows.finish()),
        Arc::new(auc.finish()),
    ];
    for mut b in [w2, w5, w10, w20] {
        columns.push(Arc::new(b.finish()));
    }
    columns.push(Arc::new(brier.finish()));
    columns.push(Arc::new(metrics.finish()));
    let batch = RecordBatch::try_new(schema.clone(), columns)?;
    parquet_io::encode(&schema, &[batch])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn auc_by_hand() {
        // perfect, inverted, all tied
        assert_eq!(
            auc(&[0.1, 0.2, 0.8, 0.9], &[false, false, true, true]),
            Some(1.0)
        );
        assert_eq!(
            auc(&[0.9, 0.8, 0.2, 0.1], &[false, false, true, true]),
            Some(0.0)
        );
        assert_eq!(auc(&[0.5; 4], &[false, true, false, true]), Some(0.5));
        // 3 of the 4 (success, failure) pairs ordered right
        assert_eq!(
            auc(&[0.1, 0.4, 0.35, 0.8], &[false, false, true, true]),
            Some(0.75)
        );
        assert_eq!(auc(&[0.1, 0.2], &[true, true]), None);
    }

    #[test]
    fn brier_and_calibration() {
        let m = Metrics::compute(
            &[0.05, 0.95, 0.95, 0.55],
            &[false, true, false, true],
            &[1, 1, 2, 2],
        );
        assert!((m.brier - (0.0025 + 0.0025 + 0.9025 + 0.2025) / 4.0).abs() < 1e-12);
        assert_eq!(m.calibration.len(), 3);
        let top = m.calibration.last().unwrap();
        assert_eq!((top.rows, top.observed), (2, 0.5));
        assert_eq!(m.auc_at(1), Some(1.0));
        assert_eq!(m.rows_by_week[&2], 2);
    }
}
