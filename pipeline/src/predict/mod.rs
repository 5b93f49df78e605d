//! The risk model: success probability from a student-week's features
//! (docs/PREDICTIONS.md).
//!
//! The features are computed in SQL (`queries/student_week.sql`, the
//! `feature_*` columns of student_week), so analysis and training read the
//! same numbers. A [`Model`] is a logistic regression over them: the default
//! model (`default-v1`, hand-set weights) until `learnlake train` fits and
//! saves one. Analysis binds the model's weights as query parameters
//! ([`Model::params`]), never as text spliced into the SQL.
//!
//! Models live in the lake under `_meta/models/`: one JSON file per model
//! (the source of truth) and `models.parquet`, the `models` table listing
//! them all, rewritten whenever one is saved. The current model is the
//! newest saved one.

pub mod metrics;
pub mod train;

use std::collections::BTreeMap;

use bytes::Bytes;
use chrono::{DateTime, Utc};
use datafusion::common::ScalarValue;
use serde::{Deserialize, Serialize};

use crate::lake::Store;
use crate::{Error, Result};

pub use self::metrics::Metrics;
pub use self::train::{TrainOptions, TrainReport, train};

/// One feature: its name (student_week column `feature_<name>`) and the
/// name of its weight parameter in the SQL (`$w_<name>`).
#[derive(Clone, Copy, Debug)]
pub struct Feature {
    pub name: &'static str,
    pub param: &'static str,
    /// What it measures, for docs, `learnlake models` and reasons.
    pub meaning: &'static str,
}

macro_rules! features {
    ($($name:literal => $meaning:literal),* $(,)?) => {
        /// Every feature, in the order of the SQL and of a model's weights.
        pub const FEATURES: &[Feature] = &[
            $(Feature { name: $name, param: concat!("w_", $name), meaning: $meaning },)*
        ];
    };
}

features! {
    "score" => "score_to_date / 100 (0 without a score)",
    "has_score" => "1 if the student has a score, else 0",
    "submitted_ratio" => "submitted_to_date / assessments_due_to_date (0 when nothing is due)",
    "has_due" => "1 if an assessment is due, else 0",
    "missed_assessments" => "assessments due but not submitted, capped at 5",
    "days_inactive" => "days_since_last_activity, capped at 28",
    "engagement_rank" => "engagement_percentile / 100",
    "late_submissions" => "late_to_date, capped at 6",
    "never_started" => "1 if no activity and no attempt yet, else 0",
    "interactions_vs_course" => "ln((1 + interactions_to_date) / (1 + the course-week median))",
    "week_vs_course" => "ln((1 + this week's interactions) / (1 + the course-week median))",
    "recent_vs_course" => "ln((1 + interactions of this and the 3 previous weeks) / (1 + the course-week median))",
    "trend" => "ln((1 + this week's interactions) / (1 + the mean of the previous 3 weeks)); 0 without previous weeks",
    "active_days_ratio" => "active days / days since the start (consistency)",
    "course_elapsed" => "fraction of the course elapsed by the week's last day",
    "weeks_enrolled" => "weeks since enrolling, capped at 52",
    "score_vs_course" => "vs_class_average / 100 (0 without a score)",
}

/// The version name of the built-in model.
pub const DEFAULT_VERSION: &str = "default-v1";

/// A feature's part of a model: standardised as (x − mean) / scale, then
/// weighted by `coefficient`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct FeatureWeight {
    pub name: String,
    pub mean: f64,
    pub scale: f64,
    pub coefficient: f64,
}

/// What a model was trained on.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct TrainingSet {
    /// Finished course presentations the model was fitted on.
    pub training_courses: Vec<String>,
    /// The newest finished presentations, held out for validation.
    pub holdout_courses: Vec<String>,
    pub training_rows: usize,
    pub holdout_rows: usize,
    /// Share of successful enrollments' rows in the training rows.
    pub success_rate: f64,
    /// L2 penalty per training row.
    pub l2: f64,
    /// The weight of a failing row relative to a successful one (or the
    /// reverse, for the smaller class), so both classes count alike.
    pub class_weight: String,
}

/// A logistic regression over [`FEATURES`]:
/// p = 1 / (1 + e^−z), z = intercept + Σ coefficient × (x − mean) / scale.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Model {
    pub version: String,
    pub trained_at: Option<DateTime<Utc>>,
    pub intercept: f64,
    pub features: Vec<FeatureWeight>,
    /// Held-out metrics (none for the default model until compared).
    pub metrics: Option<Metrics>,
    pub training: Option<TrainingSet>,
}

impl Model {
    /// `default-v1` (docs/PREDICTIONS.md): hand-set, monotone weights —
    /// better scores, submitting what is due, recent activity and engagement
    /// raise the probability; inactivity, lateness and never starting lower it.
    pub fn default_model() -> Self {
        let weights: BTreeMap<&str, f64> = [
            ("score", 4.0),
            ("has_score", -2.6),
            ("submitted_ratio", 2.0),
            ("has_due", -1.6),
            ("days_inactive", -0.12),
            ("engagement_rank", 1.5),
            ("late_submissions", -0.25),
            ("never_started", -1.0),
        ]
        .into_iter()
        .collect();
        Self {
            version: DEFAULT_VERSION.to_string(),
            trained_at: None,
            intercept: 0.05,
            features: FEATURES
                .iter()
                .map(|f| FeatureWeight {
                    name: f.name.to_string(),
                    mean: 0.0,
                    scale: 1.0,
                    coefficient: weights.get(f.name).copied().unwrap_or(0.0),
                })
                .collect(),
            metrics: None,
            training: None,
        }
    }

    /// The weight per raw feature value and the constant, with the
    /// standardisation folded in, in [`FEATURES`] order.
    pub fn raw_weights(&self) -> Result<(f64, Vec<f64>)> {
        let mut constant = self.intercept;
        let mut weights = Vec::with_capacity(FEATURES.len());
        for feature in FEATURES {
            let w = self
                .features
                .iter()
                .find(|w| w.name == feature.name)
                .ok_or_else(|| {
                    Error::Model(format!(
                        "model {} has no weight for the feature {:?}; retrain it with `learnlake train --force`",
                        self.version, feature.name
                    ))
                })?;
            if !(w.scale.is_finite() && w.scale > 0.0) {
                return Err(Error::Model(format!(
                    "model {}: feature {:?} has the scale {}, which must be positive",
                    self.version, w.name, w.scale
                )));
            }
            let raw = w.coefficient / w.scale;
            constant -= raw * w.mean;
            weights.push(raw);
        }
        Ok((constant, weights))
    }

    /// The query parameters that carry the model into the SQL:
    /// `$model_version`, `$model_intercept` and `$w_<feature>`.
    pub fn params(&self) -> Result<Vec<(&'static str, ScalarValue)>> {
        let (constant, weights) = self.raw_weights()?;
        let mut params = vec![
            (
                "model_version",
                ScalarValue::Utf8(Some(self.version.clone())),
            ),
            ("model_intercept", ScalarValue::Float64(Some(constant))),
        ];
        for (feature, w) in FEATURES.iter().zip(weights) {
            params.push((feature.param, ScalarValue::Float64(Some(w))));
        }
        Ok(params)
    }

    /// The log-odds of success of one row of features ([`FEATURES`] order),
    /// computed in Rust (training and validation; the SQL computes the same).
    pub fn log_odds(&self, x: &[f64]) -> f64 {
        let mut z = self.intercept;
        for (w, v) in self.features.iter().zip(x) {
            z += w.coefficient * (v - w.mean) / w.scale;
        }
        z
    }

    /// The success probability of one row of features.
    pub fn probability(&self, x: &[f64]) -> f64 {
        sigmoid(self.log_odds(x))
    }

    /// Whether the model's features are [`FEATURES`], in order (a model
    /// saved by an older version may not be).
    pub fn matches_features(&self) -> bool {
        self.features.len() == FEATURES.len()
            && self
                .features
                .iter()
                .zip(FEATURES)
                .all(|(w, f)| w.name == f.name)
    }
}

pub fn sigmoid(z: f64) -> f64 {
    1.0 / (1.0 + (-z).exp())
}

/// Where models live in the lake.
pub const MODELS_FOLDER: &str = "_meta/models";

fn model_file(version: &str) -> String {
    format!("{MODELS_FOLDER}/{version}.json")
}

/// Every saved model, oldest first.
pub async fn saved_models(lake: &Store) -> Result<Vec<Model>> {
    let mut models = Vec::new();
    for meta in lake.list(MODELS_FOLDER).await? {
        let rel = lake.relative(&meta.location);
        if !rel.ends_with(".json") {
            continue;
        }
        let bytes = lake.get(&rel).await?;
        let model: Model = serde_json::from_slice(&bytes).map_err(|e| {
            Error::Model(format!(
                "{} is not a readable model ({e}); remove it or retrain",
                lake.display(&rel)
            ))
        })?;
        models.push(model);
    }
    models.sort_by(|a, b| (a.trained_at, &a.version).cmp(&(b.trained_at, &b.version)));
    Ok(models)
}

/// The model analysis scores with: the newest saved one whose features
/// are today's, else the default model.
pub async fn current_model(lake: &Store) -> Result<Model> {
    let saved = saved_models(lake).await?;
    Ok(saved
        .into_iter()
        .rev()
        .find(Model::matches_features)
        .unwrap_or_else(Model::default_model))
}

/// The next version name: `lr-<n>`, one more than any saved.
pub fn next_version(saved: &[Model]) -> String {
    let n = saved
        .iter()
        .filter_map(|m| m.version.strip_prefix("lr-")?.parse::<u64>().ok())
        .max()
        .unwrap_or(0);
    format!("lr-{}", n + 1)
}

/// Saves a model (its JSON file, then the `models` table anew).
pub async fn save_model(lake: &Store, model: &Model) -> Result<()> {
    let json = serde_json::to_vec_pretty(model)
        .map_err(|e| Error::Model(format!("cannot encode model {}: {e}", model.version)))?;
    lake.put(&model_file(&model.version), Bytes::from(json))
        .await?;
    let models = saved_models(lake).await?;
    let table = metrics::models_table(&models)?;
    lake.put(&format!("{MODELS_FOLDER}/models.parquet"), table)
        .await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_feature_is_in_the_sql() {
        let sql = include_str!("../../../queries/student_week.sql");
        for f in FEATURES {
            assert!(
                sql.contains(&format!("${} * feature_{}", f.param, f.name)),
                "{} is not scored in student_week.sql",
                f.name
            );
            assert!(
                sql.contains(&format!("AS feature_{}", f.name)),
                "{} is not computed in student_week.sql",
                f.name
            );
            assert!(
                sql.contains(&format!("'{0}', d_{0},", f.name))
                    || sql.contains(&format!("'{0}', d_{0}\n", f.name)),
                "{} is not explained in student_week.sql",
                f.name
            );
        }
        let scored = sql.matches(" * feature_").count();
        assert_eq!(scored, FEATURES.len(), "the SQL scores other features");
        let training = include_str!("../../../queries/training_rows.sql");
        for f in FEATURES {
            assert!(
                training.contains(&format!("sw.feature_{},", f.name))
                    || training.contains(&format!("sw.feature_{}\n", f.name)),
                "{} is not read by training_rows.sql",
                f.name
            );
        }
        assert_eq!(training.matches("sw.feature_").count(), FEATURES.len());
    }

    /// default-v1 is the hand-written formula of docs/PREDICTIONS.md.
    #[test]
    fn the_default_model_is_the_documented_formula() {
        let m = Model::default_model();
        let row = |score: Option<f64>,
                   due: f64,
                   sub: f64,
                   days: f64,
                   rank: f64,
                   late: f64,
                   never: bool| {
            let mut x = vec![0.0; FEATURES.len()];
            let set = |x: &mut Vec<f64>, name: &str, v: f64| {
                let i = FEATURES.iter().position(|f| f.name == name).unwrap();
                x[i] = v;
            };
            set(&mut x, "score", score.unwrap_or(0.0) / 100.0);
            set(&mut x, "has_score", f64::from(u8::from(score.is_some())));
            set(
                &mut x,
                "submitted_ratio",
                if due > 0.0 { sub / due } else { 0.0 },
            );
            set(&mut x, "has_due", f64::from(u8::from(due > 0.0)));
            set(&mut x, "days_inactive", days.min(28.0));
            set(&mut x, "engagement_rank", rank / 100.0);
            set(&mut x, "late_submissions", late.min(6.0));
            set(&mut x, "never_started", f64::from(u8::from(never)));
            x
        };
        let formula = |score: Option<f64>,
                       due: f64,
                       sub: f64,
                       days: f64,
                       rank: f64,
                       late: f64,
                       never: bool| {
            0.8 + score.map_or(0.0, |s| 4.0 * (s / 100.0 - 0.65))
                + if due > 0.0 {
                    2.0 * (sub / due - 0.8)
                } else {
                    0.0
                }
                - 0.12 * days.min(28.0)
                + 1.5 * (rank / 100.0 - 0.5)
                - 0.25 * late.min(6.0)
                - if never { 1.0 } else { 0.0 }
        };
        for case in [
            (Some(72.5), 4.0, 3.0, 2.0, 55.0, 1.0, false),
            (None, 0.0, 0.0, 30.0, 0.0, 0.0, true),
            (Some(100.0), 2.0, 2.0, 0.0, 100.0, 9.0, false),
        ] {
            let (s, d, u, a, r, l, n) = case;
            let z = m.log_odds(&row(s, d, u, a, r, l, n));
            assert!(
                (z - formula(s, d, u, a, r, l, n)).abs() < 1e-12,
                "{case:?}: {z}"
            );
        }
    }

    #[test]
    fn folded_weights_give_the_same_log_odds() {
        let mut m = Model::default_model();
        for (i, w) in m.features.iter_mut().enumerate() {
            w.mean = i as f64 * 0.1;
            w.scale = 0.5 + i as f64;
            w.coefficient = (i as f64 - 7.0) * 0.3;
        }
        let x: Vec<f64> = (0..FEATURES.len()).map(|i| (i as f64).sin()).collect();
        let (c, w) = m.raw_weights().unwrap();
        let folded = c + w.iter().zip(&x).map(|(w, x)| w * x).sum::<f64>();
        assert!((folded - m.log_odds(&x)).abs() < 1e-9);
        assert_eq!(m.params().unwrap().len(), FEATURES.len() + 2);
    }

    #[test]
    fn versions_count_up() {
        let mut a = Model::default_model();
        a.version = "lr-2".into();
        let mut b = Model::default_model();
        b.version = "lr-10".into();
        assert_eq!(next_version(&[]), "lr-1");
        assert_eq!(next_version(&[a, b]), "lr-11");
    }
}
