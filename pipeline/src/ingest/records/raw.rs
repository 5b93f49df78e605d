//! The serde shapes of raw rows, as the contract spells them (aliases and
//! lenient CSV booleans included), and how one NDJSON line or CSV record is
//! read into them with a reason that names the field when it cannot be.
//! Strings borrow from the input where they can. No checks beyond types.

use std::borrow::Cow;

use serde::{Deserialize, Deserializer};
use serde_json::value::RawValue;

#[derive(Deserialize)]
pub(super) struct RawActivity<'a> {
    #[serde(borrow, default)]
    pub(super) event_id: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    pub(super) student_id: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    pub(super) timestamp: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    pub(super) activity_type: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    pub(super) activity_category: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    pub(super) course_id: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    pub(super) lesson_id: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    pub(super) quiz_id: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    pub(super) assignment_id: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    pub(super) resource_id: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    pub(super) session_id: Option<Cow<'a, str>>,
    #[serde(default)]
    pub(super) duration_seconds: Option<f64>,
    #[serde(default)]
    pub(super) interaction_count: Option<i64>,
    #[serde(default)]
    pub(super) progress: Option<f64>,
    #[serde(default)]
    pub(super) score: Option<f64>,
    #[serde(borrow, default)]
    pub(super) device_type: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    pub(super) browser: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    pub(super) os: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    pub(super) device: Option<RawDevice<'a>>,
    #[serde(borrow, default)]
    pub(super) ip_address: Option<Cow<'a, str>>,
    #[serde(default, deserialize_with = "lenient_bool")]
    pub(super) success: Option<bool>,
    #[serde(borrow, default)]
    pub(super) details: Option<&'a RawValue>,
}

#[derive(Deserialize, Default)]
pub(super) struct RawDevice<'a> {
    #[serde(borrow, default, alias = "type")]
    pub(super) device_type: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    pub(super) browser: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    pub(super) os: Option<Cow<'a, str>>,
}

#[derive(Deserialize)]
pub(super) struct RawAttempt<'a> {
    #[serde(borrow, default)]
    pub(super) attempt_id: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    pub(super) student_id: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    pub(super) course_id: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    pub(super) assessment_id: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    pub(super) quiz_id: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    pub(super) assessment_type: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    pub(super) started_at: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    pub(super) submitted_at: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    pub(super) completed_at: Option<Cow<'a, str>>,
    #[serde(default)]
    pub(super) score: Option<f64>,
    #[serde(default)]
    pub(super) points_earned: Option<f64>,
    #[serde(default)]
    pub(super) points_possible: Option<f64>,
    #[serde(default)]
    pub(super) passing_score: Option<f64>,
    #[serde(default, deserialize_with = "lenient_bool")]
    pub(super) passed: Option<bool>,
    #[serde(default)]
    pub(super) attempt_number: Option<i64>,
    #[serde(default, deserialize_with = "lenient_bool")]
    pub(super) is_practice: Option<bool>,
    #[serde(borrow, default)]
    pub(super) skill: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    pub(super) answers: Option<Vec<RawAnswer<'a>>>,
    #[serde(borrow, default)]
    pub(super) integrity_flags: Option<Vec<RawIntegrityFlag<'a>>>,
}

#[derive(Deserialize)]
pub(super) struct RawAnswer<'a> {
    #[serde(borrow, default)]
    pub(super) question_id: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    pub(super) question_type: Option<Cow<'a, str>>,
    #[serde(default, deserialize_with = "lenient_bool")]
    pub(super) is_correct: Option<bool>,
    #[serde(default)]
    pub(super) points_earned: Option<f64>,
    #[serde(default)]
    pub(super) points_possible: Option<f64>,
    #[serde(default)]
    pub(super) time_spent_seconds: Option<f64>,
    #[serde(borrow, default)]
    pub(super) skill: Option<Cow<'a, str>>,
}

#[derive(Deserialize)]
pub(super) struct RawIntegrityFlag<'a> {
    #[serde(rename = "type", default)]
    pub(super) kind: Option<String>,
    #[serde(borrow, default)]
    pub(super) timestamp: Option<Cow<'a, str>>,
    #[serde(default)]
    pub(super) details: Option<serde_json::Value>,
}

#[derive(Deserialize)]
pub(super) struct RawStudent<'a> {
    #[serde(borrow, default)]
    pub(super) student_id: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    pub(super) name: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    pub(super) email: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    pub(super) guardian_email: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    pub(super) timezone: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    pub(super) locale: Option<Cow<'a, str>>,
    #[serde(default, deserialize_with = "lenient_bool")]
    pub(super) notify_reminders: Option<bool>,
    #[serde(default, deserialize_with = "lenient_bool")]
    pub(super) notify_achievements: Option<bool>,
    #[serde(default, deserialize_with = "lenient_bool")]
    pub(super) notify_deadlines: Option<bool>,
    #[serde(borrow, default)]
    pub(super) advisor_email: Option<Cow<'a, str>>,
}

#[derive(Deserialize)]
pub(super) struct RawCourse<'a> {
    #[serde(borrow, default)]
    pub(super) course_id: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    pub(super) title: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    pub(super) start_date: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    pub(super) end_date: Option<Cow<'a, str>>,
    #[serde(default)]
    pub(super) total_lessons: Option<i64>,
    #[serde(default)]
    pub(super) passing_score: Option<f64>,
    #[serde(borrow, default)]
    pub(super) instructor_email: Option<Cow<'a, str>>,
}

#[derive(Deserialize)]
pub(super) struct RawEnrollment<'a> {
    #[serde(borrow, default)]
    pub(super) student_id: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    pub(super) course_id: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    pub(super) enrolled_at: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    pub(super) status: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    pub(super) withdrawn_at: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    pub(super) final_result: Option<Cow<'a, str>>,
}

#[derive(Deserialize)]
pub(super) struct RawAssessment<'a> {
    #[serde(borrow, default)]
    pub(super) assessment_id: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    pub(super) course_id: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    pub(super) assessment_type: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    pub(super) title: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    pub(super) due_at: Option<Cow<'a, str>>,
    #[serde(default)]
    pub(super) weight: Option<f64>,
}

/// Parses one JSON object. Valid lines take the plain serde_json path; only
/// a line that fails is parsed again with path tracking, for a reason that
/// names the field.
pub(super) fn from_json<'de, T: Deserialize<'de>>(line: &'de str) -> Result<T, String> {
    if let Ok(value) = serde_json::from_str(line) {
        return Ok(value);
    }
    let mut de = serde_json::Deserializer::from_str(line);
    let value = serde_path_to_error::deserialize(&mut de).map_err(|e| {
        let path = e.path().to_string();
        let inner = e.into_inner();
        if inner.is_syntax() || inner.is_eof() {
            format!("malformed JSON: {inner}")
        } else if path == "." || path.is_empty() || path.starts_with('[') {
            format!("not a JSON object: {inner}")
        } else {
            format!("field {path:?}: {}", strip_position(&inner.to_string()))
        }
    })?;
    de.end()
        .map_err(|e| format!("malformed JSON: trailing data after the object ({e})"))?;
    Ok(value)
}

pub(super) fn from_csv<'de, T: Deserialize<'de>>(
    record: &'de csv::StringRecord,
    headers: &'de csv::StringRecord,
) -> Result<T, String> {
    record
        .deserialize(Some(headers))
        .map_err(|e| match e.kind() {
            csv::ErrorKind::Deserialize { err, .. } => match err.field() {
                Some(i) => format!(
                    "field {:?}: {}",
                    headers.get(i as usize).unwrap_or("?"),
                    err.kind()
                ),
                None => err.kind().to_string(),
            },
            other => format!("{other:?}"),
        })
}

/// serde_json appends "at line 1 column 57", which means nothing to a
/// reader who is told the file's own line number.
fn strip_position(message: &str) -> String {
    match message.rfind(" at line ") {
        Some(i) => message[..i].to_string(),
        None => message.to_string(),
    }
}

/// Accepts JSON booleans and the strings true/false/1/0/yes/no (CSV).
fn lenient_bool<'de, D: Deserializer<'de>>(de: D) -> Result<Option<bool>, D::Error> {
    struct Visitor;
    impl<'de> serde::de::Visitor<'de> for Visitor {
        type Value = Option<bool>;
        fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
            f.write_str("a boolean (true/false)")
        }
        fn visit_bool<E>(self, v: bool) -> Result<Self::Value, E> {
            Ok(Some(v))
        }
        fn visit_none<E>(self) -> Result<Self::Value, E> {
            Ok(None)
        }
        fn visit_unit<E>(self) -> Result<Self::Value, E> {
            Ok(None)
        }
        fn visit_some<D: Deserializer<'de>>(self, de: D) -> Result<Self::Value, D::Error> {
            de.deserialize_any(self)
        }
        fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<Self::Value, E> {
            match v.trim().to_ascii_lowercase().as_str() {
                "" => Ok(None),
                "true" | "1" | "yes" | "y" | "t" => Ok(Some(true)),
                "false" | "0" | "no" | "n" | "f" => Ok(Some(false)),
                _ => Err(E::invalid_value(serde::de::Unexpected::Str(v), &self)),
            }
        }
    }
    de.deserialize_option(Visitor)
}
