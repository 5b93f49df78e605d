//! `learnlake train`: fits the risk model on finished courses, validates it
//! on the newest finished presentations, and saves it unless it is worse
//! than the current one (docs/PREDICTIONS.md).

use std::collections::{BTreeMap, BTreeSet};

use chrono::{DateTime, Duration, NaiveDate, Utc};
use datafusion::arrow::array::{
    Array, AsArray, BooleanArray, Date32Array, Float64Array, Int64Array, RecordBatch,
};
use datafusion::arrow::datatypes::{DataType, Float64Type, Int64Type};
use datafusion::prelude::SessionContext;
use linfa::prelude::*;
use linfa_logistic::LogisticRegression;
use ndarray::{Array1, Array2};
use serde::Serialize;
use tracing::info;

use super::metrics::{HEADLINE_WEEKS, Metrics};
use super::{FEATURES, FeatureWeight, Model, TrainingSet};
use crate::analytics::{self, AnalyzeOptions, Queries, WeekSelection, run_query};
use crate::engine;
use crate::lake::{LakeTable, Store};
use crate::{Error, Result};

/// How to train.
#[derive(Clone, Debug)]
pub struct TrainOptions {
    /// How missing student_week weeks are computed (zone, thresholds,
    /// queries, progress); its `weeks` is ignored.
    pub analyze: AnalyzeOptions,
    /// Save the new model even if it is worse than the current one.
    pub force: bool,
    /// Share of the finished presentations held out (the newest; at least
    /// one, and at least one left to train on).
    pub holdout_share: f64,
    /// L2 penalty per training row on the standardised coefficients.
    pub l2: f64,
    /// Also fit once without each feature and report its held-out gain.
    pub feature_gains: bool,
    /// The time written to `trained_at` (injectable for tests).
    pub now: DateTime<Utc>,
}

impl Default for TrainOptions {
    fn default() -> Self {
        Self {
            analyze: AnalyzeOptions::default(),
            force: false,
            holdout_share: 0.25,
            l2: 1e-3,
            feature_gains: false,
            now: Utc::now(),
        }
    }
}

/// A feature's held-out gain: the metric of the full model minus that of
/// the model fitted without it.
#[derive(Clone, Debug, Serialize)]
pub struct FeatureGain {
    pub feature: String,
    pub auc_gain: Option<f64>,
    pub auc_week_5_gain: Option<f64>,
}

/// What training did.
#[derive(Clone, Debug, Serialize)]
pub struct TrainReport {
    /// The fitted model (saved when `saved`).
    pub model: Model,
    /// The model it was compared with, with its metrics on the same rows.
    pub current: Model,
    pub saved: bool,
    /// Why it was not saved.
    pub refused: Option<String>,
    /// Weeks of student_week computed because training needed them.
    pub weeks_analyzed: usize,
    /// Finished courses without a start date (no course weeks), skipped.
    pub skipped_courses: Vec<String>,
    pub feature_gains: Vec<FeatureGain>,
    pub seconds: f64,
}

struct FinishedCourse {
    course_id: String,
    start: Option<NaiveDate>,
    end: Option<NaiveDate>,
}

/// Rows of features with their outcome, course and course week.
#[derive(Default)]
struct Rows {
    x: Vec<f64>,
    y: Vec<bool>,
    week: Vec<u32>,
    course: Vec<String>,
}

impl Rows {
    fn len(&self) -> usize {
        self.y.len()
    }

    fn row(&self, i: usize) -> &[f64] {
        &self.x[i * FEATURES.len()..(i + 1) * FEATURES.len()]
    }
}

/// Fits, validates and (unless worse, or forced) saves a model.
pub async fn train(
    lake: &Store,
    ctx: &SessionContext,
    options: &TrainOptions,
) -> Result<TrainReport> {
    let started = std::time::Instant::now();
    let queries = Queries::new(options.analyze.queries.as_deref())?;
    if !ctx.table_exist(LakeTable::Enrollments.name())? {
        return Err(Error::CannotTrain(
            "the lake has no enrollments; ingest enrollments with a final_result for finished courses first".into(),
        ));
    }
    engine::register_empty_if_missing(ctx, LakeTable::Courses)?;
    let (courses, skipped_courses) = finished_courses(ctx, &queries).await?;
    if courses.len() < 2 {
        return Err(Error::CannotTrain(format!(
            "{} finished course presentation(s) with a start_date; training needs at least two \
             (one to fit on, the newest to validate on): give enrollments of finished courses a \
             final_result (pass, distinction, fail, withdrawn)",
            courses.len()
        )));
    }
    let weeks_analyzed = ensure_student_weeks(lake, ctx, &queries, &courses, options).await?;
    let rows = training_rows(ctx, &queries).await?;

    // Validation by presentation: the newest finished courses are held out.
    let holdout_n = ((courses.len() as f64 * options.holdout_share).ceil() as usize)
        .clamp(1, courses.len() - 1);
    let holdout: BTreeSet<&str> = courses[courses.len() - holdout_n..]
        .iter()
        .map(|c| c.course_id.as_str())
        .collect();
    let (fit_idx, test_idx): (Vec<usize>, Vec<usize>) =
        (0..rows.len()).partition(|&i| !holdout.contains(rows.course[i].as_str()));
    if fit_idx.is_empty() || test_idx.is_empty() {
        return Err(Error::CannotTrain(format!(
            "student_week has {} rows of the training courses and {} of the held-out ones ({}); both need rows",
            fit_idx.len(),
            test_idx.len(),
            holdout.iter().copied().collect::<Vec<_>>().join(", ")
        )));
    }
    let all: Vec<usize> = (0..FEATURES.len()).collect();
    let (mut model, class_weight) = fit(&rows, &fit_idx, &all, options.l2)?;
    let metrics = evaluate(&model, &rows, &test_idx);
    let mut current = super::current_model(lake).await?;
    current.metrics = Some(evaluate(&current, &rows, &test_idx));

    let successes = fit_idx.iter().filter(|&&i| rows.y[i]).count();
    model.training = Some(TrainingSet {
        training_courses: courses
            .iter()
            .filter(|c| !holdout.contains(c.course_id.as_str()))
            .map(|c| c.course_id.clone())
            .collect(),
        holdout_courses: holdout.iter().map(|c| c.to_string()).collect(),
        training_rows: fit_idx.len(),
        holdout_rows: test_idx.len(),
        success_rate: successes as f64 / fit_idx.len() as f64,
        l2: options.l2,
        class_weight,
    });
    model.trained_at = Some(options.now);
    model.version = super::next_version(&super::saved_models(lake).await?);
    model.metrics = Some(metrics);

    let mut feature_gains = Vec::new();
    if options.feature_gains {
        let full = model.metrics.as_ref().expect("set above");
        for (k, feature) in FEATURES.iter().enumerate() {
            let without: Vec<usize> = all.iter().copied().filter(|&j| j != k).collect();
            let (reduced, _) = fit(&rows, &fit_idx, &without, options.l2)?;
            let m = evaluate(&reduced, &rows, &test_idx);
            let gain = |a: Option<f64>, b: Option<f64>| Some(a? - b?);
            feature_gains.push(FeatureGain {
                feature: feature.name.to_string(),
                auc_gain: gain(full.auc, m.auc),
                auc_week_5_gain: gain(full.auc_at(5), m.auc_at(5)),
            });
        }
    }

    let refused = worse_than(&model, &current);
    let saved = refused.is_none() || options.force;
    if saved {
        super::save_model(lake, &model).await?;
        info!(version = %model.version, "model saved");
    }
    Ok(TrainReport {
        model,
        current,
        saved,
        refused,
        weeks_analyzed,
        skipped_courses,
        feature_gains,
        seconds: started.elapsed().as_secs_f64(),
    })
}

/// Why `new` must not replace `current`: worse AUC on the same held-out
/// rows overall or at a headline week both were measured at.
fn worse_than(new: &Model, current: &Model) -> Option<String> {
    let (n, c) = (new.metrics.as_ref()?, current.metrics.as_ref()?);
    let mut worse = Vec::new();
    if let (Some(a), Some(b)) = (n.auc, c.auc)
        && a < b
    {
        worse.push(format!("overall AUC {a:.3} < {b:.3}"));
    }
    for week in HEADLINE_WEEKS {
        if let (Some(a), Some(b)) = (n.auc_at(week), c.auc_at(week))
            && a < b
        {
            worse.push(format!("week {week} AUC {a:.3} < {b:.3}"));
        }
    }
    (!worse.is_empty()).then(|| {
        format!(
            "the new model is worse than {} on the held-out courses ({})",
            current.version,
            worse.join(", ")
        )
    })
}

/// Metrics of `model` on the rows `idx`.
fn evaluate(model: &Model, rows: &Rows, idx: &[usize]) -> Metrics {
    let p: Vec<f64> = idx
        .iter()
        .map(|&i| model.probability(rows.row(i)))
        .collect();
    let y: Vec<bool> = idx.iter().map(|&i| rows.y[i]).collect();
    let w: Vec<u32> = idx.iter().map(|&i| rows.week[i]).collect();
    Metrics::compute(&p, &y, &w)
}

/// Fits a standardised, class-weighted, L2-regularised logistic regression
/// on the rows `idx` over the features `used` (the others get weight 0).
///
/// linfa-logistic takes no sample weights, so the smaller class's rows are
/// repeated k = round(larger / smaller) times, which weighs them k-fold
/// exactly; the intercept is then shifted by ln k so the probabilities are
/// those of the real class balance again (the prior correction for a
/// re-weighted sample).
fn fit(rows: &Rows, idx: &[usize], used: &[usize], l2: f64) -> Result<(Model, String)> {
    let d = FEATURES.len();
    let n = idx.len() as f64;
    let mut mean = vec![0.0; d];
    let mut scale = vec![1.0; d];
    for j in 0..d {
        let m = idx.iter().map(|&i| rows.row(i)[j]).sum::<f64>() / n;
        let var = idx
            .iter()
            .map(|&i| (rows.row(i)[j] - m).powi(2))
            .sum::<f64>()
            / n;
        mean[j] = m;
        if var.sqrt() > 1e-9 {
            scale[j] = var.sqrt();
        }
    }
    let positives = idx.iter().filter(|&&i| rows.y[i]).count();
    let negatives = idx.len() - positives;
    if positives == 0 || negatives == 0 {
        return Err(Error::CannotTrain(format!(
            "the training courses have {positives} successful and {negatives} unsuccessful rows; \
             both outcomes are needed"
        )));
    }
    let minority_is_success = positives < negatives;
    let (small, large) = if minority_is_success {
        (positives, negatives)
    } else {
        (negatives, positives)
    };
    let k = ((large as f64 / small as f64).round() as usize).max(1);
    let repeat = |i: usize| {
        if rows.y[i] == minority_is_success {
            k
        } else {
            1
        }
    };
    let total: usize = idx.iter().map(|&i| repeat(i)).sum();
    let mut x = Array2::<f64>::zeros((total, used.len()));
    let mut y = Array1::<bool>::from_elem(total, false);
    let mut r = 0;
    for &i in idx {
        for _ in 0..repeat(i) {
            for (c, &j) in used.iter().enumerate() {
                x[[r, c]] = (rows.row(i)[j] - mean[j]) / scale[j];
            }
            y[r] = rows.y[i];
            r += 1;
        }
    }
    let dataset = Dataset::new(x, y);
    let fitted = LogisticRegression::default()
        .alpha(l2 * total as f64)
        .max_iterations(300)
        .gradient_tolerance(1e-6)
        .fit(&dataset)
        .map_err(|e| Error::CannotTrain(format!("the logistic regression did not fit: {e}")))?;
    // linfa's positive class is the larger one; orient to success.
    let sign = if fitted.labels().pos.class { 1.0 } else { -1.0 };
    let mut coefficients = vec![0.0; d];
    for (c, &j) in used.iter().enumerate() {
        coefficients[j] = sign * fitted.params()[c];
    }
    let shift = (k as f64).ln();
    let intercept = sign * fitted.intercept() + if minority_is_success { -shift } else { shift };
    let class_weight = if k == 1 {
        "none (classes balanced)".to_string()
    } else {
        format!(
            "{} rows × {k}",
            if minority_is_success {
                "successful"
            } else {
                "unsuccessful"
            }
        )
    };
    let model = Model {
        version: String::new(),
        trained_at: None,
        intercept,
        features: FEATURES
            .iter()
            .enumerate()
            .map(|(j, f)| FeatureWeight {
                name: f.name.to_string(),
                mean: mean[j],
                scale: scale[j],
                coefficient: coefficients[j],
            })
            .collect(),
        metrics: None,
        training: None,
    };
    Ok((model, class_weight))
}

/// The finished courses with a start date, oldest first, and those without.
async fn finished_courses(
    ctx: &SessionContext,
    queries: &Queries,
) -> Result<(Vec<FinishedCourse>, Vec<String>)> {
    let (_, batches) = run_query(ctx, queries, "finished_courses", &[]).await?;
    let (mut courses, mut skipped) = (Vec::new(), Vec::new());
    for b in &batches {
        let ids = utf8(b, "course_id")?;
        let ids = ids.as_string::<i32>();
        let starts = date_column(b, 1)?;
        let ends = date_column(b, 2)?;
        for i in 0..b.num_rows() {
            let course_id = ids.value(i).to_string();
            let start = starts.is_valid(i).then(|| date(starts.value(i)));
            let end = ends.is_valid(i).then(|| date(ends.value(i)));
            if start.is_none() {
                skipped.push(course_id);
            } else {
                courses.push(FinishedCourse {
                    course_id,
                    start,
                    end,
                });
            }
        }
    }
    Ok((courses, skipped))
}

fn date_column(b: &RecordBatch, i: usize) -> Result<&Date32Array> {
    b.column(i)
        .as_any()
        .downcast_ref::<Date32Array>()
        .ok_or_else(|| Error::Model(format!("column {i} of finished_courses is not a DATE")))
}

use crate::lake::from_date32 as date;

/// Computes the student_week weeks the finished courses need that are
/// missing, or were written before the features existed; returns how many.
async fn ensure_student_weeks(
    lake: &Store,
    ctx: &SessionContext,
    queries: &Queries,
    courses: &[FinishedCourse],
    options: &TrainOptions,
) -> Result<usize> {
    let tz = options.analyze.tz;
    let first = courses
        .iter()
        .filter_map(|c| c.start)
        .min()
        .expect("courses have starts");
    let last_data = analytics::last_data_day(ctx, queries, tz).await?;
    let last = courses
        .iter()
        .map(|c| c.end.or(last_data).unwrap_or(first))
        .max()
        .expect("not empty");
    let needed = analytics::weeks_between(first, last.max(first), tz);
    let existing = analytics::partitions(lake, LakeTable::StudentWeek).await?;
    let mut stale: BTreeSet<NaiveDate> = needed
        .iter()
        .map(|w| w.period_start)
        .filter(|d| !existing.contains(d))
        .collect();
    let has_features = ctx.table_exist(LakeTable::StudentWeek.name())?
        && ctx
            .table(LakeTable::StudentWeek.name())
            .await?
            .schema()
            .has_column_with_unqualified_name("feature_score");
    if has_features {
        // partitions written before the features existed read as nulls
        let (_, batches) = run_query(ctx, queries, "stale_student_weeks", &[]).await?;
        for b in &batches {
            let days = date_column(b, 0)?;
            stale.extend((0..b.num_rows()).map(|i| date(days.value(i))));
        }
    } else {
        stale.extend(needed.iter().map(|w| w.period_start));
    }
    let stale: Vec<NaiveDate> = stale
        .into_iter()
        .filter(|d| needed.iter().any(|w| w.period_start == *d))
        .collect();
    if stale.is_empty() {
        return Ok(0);
    }
    info!(
        weeks = stale.len(),
        "computing the student_week weeks training needs"
    );
    // contiguous runs of weeks, each one analyze call
    let mut runs: Vec<(NaiveDate, NaiveDate)> = Vec::new();
    for d in &stale {
        match runs.last_mut() {
            Some((_, to)) if *to + Duration::days(7) == *d => *to = *d,
            _ => runs.push((*d, *d)),
        }
    }
    for (from, to) in runs {
        let mut analyze = options.analyze.clone();
        analyze.weeks = WeekSelection::Range(from, to);
        analytics::analyze(lake, ctx, &analyze).await?;
    }
    engine::register_lake(ctx, lake).await?;
    Ok(stale.len())
}

/// Reads `queries/training_rows.sql` into memory.
async fn training_rows(ctx: &SessionContext, queries: &Queries) -> Result<Rows> {
    let (_, batches) = run_query(ctx, queries, "training_rows", &[]).await?;
    let mut rows = Rows::default();
    for b in &batches {
        let course = utf8(b, "course_id")?;
        let course = course.as_string::<i32>();
        let week = cast_i64(b, "course_week")?;
        let success = b
            .column_by_name("success")
            .and_then(|c| c.as_any().downcast_ref::<BooleanArray>())
            .ok_or_else(|| missing("success"))?;
        let mut columns = Vec::with_capacity(FEATURES.len());
        for f in FEATURES {
            let name = format!("feature_{}", f.name);
            let c = b.column_by_name(&name).ok_or_else(|| missing(&name))?;
            if c.data_type() != &DataType::Float64 {
                return Err(Error::Model(format!(
                    "{name} is {} , not DOUBLE",
                    c.data_type()
                )));
            }
            columns.push(c.as_primitive::<Float64Type>().clone());
        }
        for i in 0..b.num_rows() {
            // a row whose features are null comes from an old partition
            // that could not be recomputed (its week is outside the lake's data)
            if columns.iter().any(|c: &Float64Array| c.is_null(i)) || week.is_null(i) {
                continue;
            }
            rows.course.push(course.value(i).to_string());
            rows.week
                .push(week.value(i).clamp(1, i64::from(u32::MAX)) as u32);
            rows.y.push(success.value(i));
            rows.x.extend(columns.iter().map(|c| c.value(i)));
        }
    }
    Ok(rows)
}

/// A text column as plain Utf8 (the engine may hand out Utf8View).
fn utf8(b: &RecordBatch, name: &str) -> Result<datafusion::arrow::array::ArrayRef> {
    let c = b.column_by_name(name).ok_or_else(|| missing(name))?;
    Ok(datafusion::arrow::compute::cast(c, &DataType::Utf8)?)
}

fn cast_i64(b: &RecordBatch, name: &str) -> Result<Int64Array> {
    let c = b.column_by_name(name).ok_or_else(|| missing(name))?;
    let c = datafusion::arrow::compute::cast(c, &DataType::Int64)?;
    Ok(c.as_primitive::<Int64Type>().clone())
}

fn missing(column: &str) -> Error {
    Error::Model(format!("training_rows.sql returned no column {column}"))
}

/// Per-feature weights by size, for printing what drives a model.
pub fn largest_coefficients(model: &Model) -> Vec<(String, f64)> {
    let mut w: Vec<(String, f64)> = model
        .features
        .iter()
        .map(|f| (f.name.clone(), f.coefficient))
        .collect();
    w.sort_by(|a, b| b.1.abs().total_cmp(&a.1.abs()));
    w
}

/// Course-week AUCs of two models side by side: (week, rows, new, current).
pub fn auc_table(new: &Metrics, current: &Metrics) -> Vec<(u32, usize, Option<f64>, Option<f64>)> {
    let weeks: BTreeMap<u32, usize> = new.rows_by_week.clone();
    weeks
        .into_iter()
        .map(|(w, n)| (w, n, new.auc_at(w), current.auc_at(w)))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Rows where success depends on two features through a known
    /// logistic model (deterministic pseudo-random numbers).
    fn synthetic(n: usize, seed: u64) -> Rows {
        let mut state = seed;
        let mut uniform = move || {
            state = state
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            ((state >> 11) as f64) / ((1u64 << 53) as f64)
        };
        let score = FEATURES.iter().position(|f| f.name == "score").unwrap();
        let inactive = FEATURES
            .iter()
            .position(|f| f.name == "days_inactive")
            .unwrap();
        let mut rows = Rows::default();
        for i in 0..n {
            let mut x = vec![0.0; FEATURES.len()];
            for v in x.iter_mut() {
                *v = uniform();
            }
            x[score] = uniform();
            x[inactive] = 28.0 * uniform();
            // few successes: the class weight has work to do
            let z = -2.0 + 5.0 * (x[score] - 0.5) - 0.15 * (x[inactive] - 14.0);
            rows.y.push(uniform() < 1.0 / (1.0 + (-z).exp()));
            rows.x.extend(x);
            rows.week.push(1 + (i % 10) as u32);
            rows.course.push(format!("c{}", i % 4));
        }
        rows
    }

    #[test]
    fn the_fit_finds_the_signs_and_stays_calibrated() {
        let rows = synthetic(6000, 7);
        let idx: Vec<usize> = (0..rows.len()).collect();
        let all: Vec<usize> = (0..FEATURES.len()).collect();
        let (model, weight) = fit(&rows, &idx, &all, 1e-3).unwrap();
        assert!(weight.contains("successful rows ×"), "{weight}");
        let coefficient = |name: &str| {
            model
                .features
                .iter()
                .find(|f| f.name == name)
                .unwrap()
                .coefficient
        };
        assert!(coefficient("score") > 0.8, "{model:?}");
        assert!(coefficient("days_inactive") < -0.8, "{model:?}");
        for noise in ["trend", "has_due", "weeks_enrolled"] {
            assert!(coefficient(noise).abs() < 0.2, "{noise}: {model:?}");
        }
        // the prior correction brings the mean prediction back to the base rate
        let mean_p = idx
            .iter()
            .map(|&i| model.probability(rows.row(i)))
            .sum::<f64>()
            / idx.len() as f64;
        let rate = rows.y.iter().filter(|&&y| y).count() as f64 / rows.len() as f64;
        assert!(
            (mean_p - rate).abs() < 0.03,
            "mean prediction {mean_p} vs base rate {rate}"
        );
        let m = evaluate(&model, &rows, &idx);
        assert!(m.auc.unwrap() > 0.8, "{m:?}");
        // a feature left out gets weight 0
        let without: Vec<usize> = all.iter().copied().filter(|&j| j != 0).collect();
        let (reduced, _) = fit(&rows, &idx, &without, 1e-3).unwrap();
        assert_eq!(reduced.features[0].coefficient, 0.0);
    }

    #[test]
    fn a_model_worse_at_any_headline_week_is_refused() {
        let with = |auc: f64, week5: f64| {
            let mut m = Model::default_model();
            let mut metrics = Metrics {
                auc: Some(auc),
                ..Metrics::default()
            };
            metrics.auc_by_week.insert(5, Some(week5));
            metrics.auc_by_week.insert(7, Some(0.1));
            m.metrics = Some(metrics);
            m
        };
        assert_eq!(worse_than(&with(0.9, 0.8), &with(0.9, 0.8)), None);
        assert_eq!(worse_than(&with(0.95, 0.85), &with(0.9, 0.8)), None);
        let why = worse_than(&with(0.95, 0.79), &with(0.9, 0.8)).unwrap();
        assert!(why.contains("week 5 AUC 0.790 < 0.800"), "{why}");
        assert!(why.contains("default-v1"), "{why}");
        let why = worse_than(&with(0.89, 0.9), &with(0.9, 0.8)).unwrap();
        assert!(why.contains("overall AUC"), "{why}");
    }
}
