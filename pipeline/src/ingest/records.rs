//! One row of each raw kind: how it is read (NDJSON line or CSV record),
//! checked against the input contract (PRODUCT.md §3) and appended to Arrow
//! builders. A row that breaks the contract yields a reason a person can act
//! on, and nothing is appended.

use std::borrow::Cow;
use std::collections::HashMap;
use std::sync::Arc;

use chrono::{DateTime, NaiveDate};
use datafusion::arrow::array::{
    ArrayRef, BooleanBuilder, Date32Builder, Float64Builder, Int64Builder, ListBuilder,
    RecordBatch, StringBuilder, StructBuilder, TimestampMicrosecondBuilder,
};
use datafusion::arrow::datatypes::SchemaRef;
use hmac::{Hmac, Mac};
use serde::{Deserialize, Deserializer};
use serde_json::value::RawValue;
use sha2::Sha256;

use crate::lake::tables::{LakeTable, answer_fields, integrity_flag_fields};

/// The raw kinds of the landing area.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Kind {
    Activity,
    Attempts,
    Students,
    Courses,
    Enrollments,
    Assessments,
}

impl Kind {
    /// Every kind, in ingest order (reference kinds first, so a run's events
    /// land next to the reference rows they name).
    pub const ALL: [Kind; 6] = [
        Kind::Students,
        Kind::Courses,
        Kind::Enrollments,
        Kind::Assessments,
        Kind::Activity,
        Kind::Attempts,
    ];

    /// The kind's name (its landing folder or file stem, its quarantine folder).
    pub fn name(self) -> &'static str {
        self.table().name()
    }

    /// The lake table the kind lands in.
    pub fn table(self) -> LakeTable {
        match self {
            Kind::Activity => LakeTable::Activity,
            Kind::Attempts => LakeTable::Attempts,
            Kind::Students => LakeTable::Students,
            Kind::Courses => LakeTable::Courses,
            Kind::Enrollments => LakeTable::Enrollments,
            Kind::Assessments => LakeTable::Assessments,
        }
    }

    /// Events are partitioned by date and deduplicated by id; the others are
    /// keyed snapshots.
    pub fn is_event(self) -> bool {
        matches!(self, Kind::Activity | Kind::Attempts)
    }

    /// Whether CSV is part of this kind's contract.
    pub fn accepts_csv(self) -> bool {
        self != Kind::Attempts
    }
}

/// Rows of one kind being built, plus per-row facts ingest needs later.
pub struct Rows {
    kind: Kind,
    builders: Builders,
    /// Per accepted row: the key (event_id, attempt_id, or the reference key).
    pub keys: Vec<String>,
    /// Per accepted row: the UTC date partition (days since epoch), events only.
    pub dates: Vec<i32>,
    hasher: Option<IpHasher>,
    /// The institution zone: the day a date-only reference date names.
    zone: chrono_tz::Tz,
}

enum Builders {
    Activity(Box<ActivityBuilders>),
    Attempts(Box<AttemptBuilders>),
    Students(StudentBuilders),
    Courses(CourseBuilders),
    Enrollments(EnrollmentBuilders),
    Assessments(AssessmentBuilders),
}

impl Rows {
    /// Empty rows of `kind`; `hash_key` keys the ip_address hash (no key: the
    /// address is dropped, never stored raw).
    pub fn new(kind: Kind, hash_key: Option<&[u8]>) -> Self {
        let builders = match kind {
            Kind::Activity => Builders::Activity(Box::default()),
            Kind::Attempts => Builders::Attempts(Box::default()),
            Kind::Students => Builders::Students(StudentBuilders::default()),
            Kind::Courses => Builders::Courses(CourseBuilders::default()),
            Kind::Enrollments => Builders::Enrollments(EnrollmentBuilders::default()),
            Kind::Assessments => Builders::Assessments(AssessmentBuilders::default()),
        };
        Self {
            kind,
            builders,
            keys: Vec::new(),
            dates: Vec::new(),
            hasher: hash_key.map(IpHasher::new),
            zone: chrono_tz::Tz::UTC,
        }
    }

    /// Reads date-only reference dates as days in `zone` (PRODUCT §3).
    pub fn in_zone(mut self, zone: chrono_tz::Tz) -> Self {
        self.zone = zone;
        self
    }

    /// Accepted rows so far.
    pub fn len(&self) -> usize {
        self.keys.len()
    }

    /// Whether no row was accepted.
    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }

    /// Parses and appends one NDJSON line; on error returns the reason.
    pub fn push_json(&mut self, line: &[u8]) -> Result<(), String> {
        match self.kind {
            Kind::Activity => {
                let raw: RawActivity = from_json(line)?;
                self.push_activity(raw)
            }
            Kind::Attempts => {
                let raw: RawAttempt = from_json(line)?;
                self.push_attempt(raw)
            }
            Kind::Students => self.push_student(from_json(line)?),
            Kind::Courses => self.push_course(from_json(line)?),
            Kind::Enrollments => self.push_enrollment(from_json(line)?),
            Kind::Assessments => self.push_assessment(from_json(line)?),
        }
    }

    /// Parses and appends one CSV record; on error returns the reason.
    pub fn push_csv(
        &mut self,
        record: &csv::StringRecord,
        headers: &csv::StringRecord,
    ) -> Result<(), String> {
        match self.kind {
            Kind::Activity => self.push_activity(from_csv(record, headers)?),
            Kind::Attempts => Err("attempts must be NDJSON, not CSV".into()),
            Kind::Students => self.push_student(from_csv(record, headers)?),
            Kind::Courses => self.push_course(from_csv(record, headers)?),
            Kind::Enrollments => self.push_enrollment(from_csv(record, headers)?),
            Kind::Assessments => self.push_assessment(from_csv(record, headers)?),
        }
    }

    /// The accepted rows as one batch of the kind's file schema.
    pub fn finish(&mut self) -> RecordBatch {
        let schema: SchemaRef = self
            .kind
            .table()
            .file_schema()
            .expect("ingest tables have a schema");
        let columns: Vec<ArrayRef> = match &mut self.builders {
            Builders::Activity(b) => b.finish(),
            Builders::Attempts(b) => b.finish(),
            Builders::Students(b) => b.finish(),
            Builders::Courses(b) => b.finish(),
            Builders::Enrollments(b) => b.finish(),
            Builders::Assessments(b) => b.finish(),
        };
        RecordBatch::try_new(schema, columns).expect("builders match the table schema")
    }

    fn push_activity(&mut self, raw: RawActivity) -> Result<(), String> {
        let event_id = required_id("event_id", raw.event_id.as_deref())?;
        let student_id = required_id("student_id", raw.student_id.as_deref())?;
        let timestamp = required_timestamp("timestamp", raw.timestamp.as_deref())?;
        let activity_type = required_text("activity_type", raw.activity_type.as_deref())?;
        let course_id = optional_id("course_id", raw.course_id.as_deref())?;
        check_non_negative("duration_seconds", raw.duration_seconds)?;
        if let Some(n) = raw.interaction_count
            && n < 0
        {
            return Err(format!("interaction_count {n} is negative"));
        }
        check_percent("progress", raw.progress)?;
        check_percent("score", raw.score)?;
        let details = match raw.details {
            Some(d) if !d.get().trim_start().starts_with('{') && d.get() != "null" => {
                return Err(format!(
                    "details must be a JSON object, got {}",
                    clip(d.get())
                ));
            }
            Some(d) if d.get() == "null" => None,
            other => other,
        };
        let category = match raw.activity_category.as_deref().filter(|c| !c.is_empty()) {
            Some(c) => c.to_string(),
            None => category_of(activity_type).to_string(),
        };
        let device = raw.device.unwrap_or_default();
        let ip = raw
            .ip_address
            .as_deref()
            .filter(|ip| !ip.is_empty())
            .and_then(|ip| self.hasher.as_mut().map(|h| h.hash(ip)));

        let Builders::Activity(b) = &mut self.builders else {
            unreachable!()
        };
        b.event_id.append_value(event_id);
        b.student_id.append_value(student_id);
        b.timestamp.append_value(timestamp);
        b.activity_type.append_value(activity_type);
        b.activity_category.append_value(&category);
        b.course_id.append_option(course_id);
        b.lesson_id.append_option(nonempty(&raw.lesson_id));
        b.quiz_id.append_option(nonempty(&raw.quiz_id));
        b.assignment_id.append_option(nonempty(&raw.assignment_id));
        b.resource_id.append_option(nonempty(&raw.resource_id));
        b.session_id.append_option(nonempty(&raw.session_id));
        b.duration_seconds.append_option(raw.duration_seconds);
        b.interaction_count
            .append_value(raw.interaction_count.unwrap_or(1));
        b.progress.append_option(raw.progress);
        b.score.append_option(raw.score);
        b.device_type
            .append_option(nonempty(&raw.device_type).or(nonempty(&device.device_type)));
        b.browser
            .append_option(nonempty(&raw.browser).or(nonempty(&device.browser)));
        b.os.append_option(nonempty(&raw.os).or(nonempty(&device.os)));
        b.ip_address.append_option(ip.as_deref());
        b.success.append_option(raw.success);
        b.details.append_option(details.map(RawValue::get));
        self.keys.push(event_id.to_string());
        self.dates.push(utc_days(timestamp));
        Ok(())
    }

    fn push_attempt(&mut self, raw: RawAttempt) -> Result<(), String> {
        let attempt_id = required_id("attempt_id", raw.attempt_id.as_deref())?;
        let student_id = required_id("student_id", raw.student_id.as_deref())?;
        let course_id = required_id("course_id", raw.course_id.as_deref())?;
        let assessment_id = match (raw.assessment_id.as_deref(), raw.quiz_id.as_deref()) {
            (Some(a), _) if !a.is_empty() => a,
            (_, Some(q)) if !q.is_empty() => q,
            _ => {
                return Err(
                    "missing required field \"assessment_id\" (or its alias \"quiz_id\")".into(),
                );
            }
        };
        check_id("assessment_id", assessment_id)?;
        let submitted = match (raw.submitted_at.as_deref(), raw.completed_at.as_deref()) {
            (Some(s), _) if !s.is_empty() => parse_timestamp("submitted_at", s)?,
            (_, Some(c)) if !c.is_empty() => parse_timestamp("completed_at", c)?,
            _ => {
                return Err(
                    "missing required field \"submitted_at\" (or its alias \"completed_at\")"
                        .into(),
                );
            }
        };
        let started = optional_timestamp("started_at", raw.started_at.as_deref())?;
        if let Some(s) = started
            && s > submitted
        {
            return Err("started_at is after submitted_at".into());
        }
        let score = raw.score.ok_or("missing required field \"score\"")?;
        check_percent("score", Some(score))?;
        check_non_negative("points_earned", raw.points_earned)?;
        check_non_negative("points_possible", raw.points_possible)?;
        check_percent("passing_score", raw.passing_score)?;
        if let Some(n) = raw.attempt_number
            && n < 1
        {
            return Err(format!("attempt_number {n} is below 1"));
        }
        let assessment_type = nonempty(&raw.assessment_type);
        let is_practice = raw
            .is_practice
            .unwrap_or(assessment_type == Some("practice"));
        let passed = raw.passed.or(raw.passing_score.map(|p| score >= p));
        let mut flags = Vec::new();
        for (i, flag) in raw.integrity_flags.iter().flatten().enumerate() {
            let at = optional_timestamp(
                &format!("integrity_flags[{i}].timestamp"),
                flag.timestamp.as_deref(),
            )?;
            let details = match &flag.details {
                None | Some(serde_json::Value::Null) => None,
                Some(serde_json::Value::String(s)) => Some(s.clone()),
                Some(other) => Some(other.to_string()),
            };
            flags.push((flag.kind.clone(), at, details));
        }

        let Builders::Attempts(b) = &mut self.builders else {
            unreachable!()
        };
        b.attempt_id.append_value(attempt_id);
        b.student_id.append_value(student_id);
        b.course_id.append_value(course_id);
        b.assessment_id.append_value(assessment_id);
        b.assessment_type.append_option(assessment_type);
        b.started_at.append_option(started);
        b.submitted_at.append_value(submitted);
        b.score.append_value(score);
        b.points_earned.append_option(raw.points_earned);
        b.points_possible.append_option(raw.points_possible);
        b.passing_score.append_option(raw.passing_score);
        b.passed.append_option(passed);
        b.attempt_number.append_option(raw.attempt_number);
        b.is_practice.append_value(is_practice);
        b.skill.append_option(nonempty(&raw.skill));
        match &raw.answers {
            None => b.answers.append_null(),
            Some(answers) => {
                let s = b.answers.values();
                for a in answers {
                    append_str(s, 0, a.question_id.as_deref());
                    append_str(s, 1, a.question_type.as_deref());
                    s.field_builder::<BooleanBuilder>(2)
                        .expect("is_correct")
                        .append_option(a.is_correct);
                    append_f64(s, 3, a.points_earned);
                    append_f64(s, 4, a.points_possible);
                    append_f64(s, 5, a.time_spent_seconds);
                    append_str(s, 6, a.skill.as_deref());
                    s.append(true);
                }
                b.answers.append(true);
            }
        }
        match &raw.integrity_flags {
            None => b.integrity_flags.append_null(),
            Some(_) => {
                let s = b.integrity_flags.values();
                for (kind, at, details) in &flags {
                    append_str(s, 0, kind.as_deref());
                    s.field_builder::<TimestampMicrosecondBuilder>(1)
                        .expect("ts")
                        .append_option(*at);
                    append_str(s, 2, details.as_deref());
                    s.append(true);
                }
                b.integrity_flags.append(true);
            }
        }
        self.keys.push(attempt_id.to_string());
        self.dates.push(utc_days(submitted));
        Ok(())
    }

    fn push_student(&mut self, raw: RawStudent) -> Result<(), String> {
        let student_id = required_id("student_id", raw.student_id.as_deref())?;
        let timezone = nonempty(&raw.timezone);
        if let Some(tz) = timezone
            && tz.parse::<chrono_tz::Tz>().is_err()
        {
            return Err(format!(
                "timezone {tz:?} is not an IANA time zone (e.g. \"Europe/London\")"
            ));
        }
        for (field, value) in [
            ("email", &raw.email),
            ("guardian_email", &raw.guardian_email),
            ("advisor_email", &raw.advisor_email),
        ] {
            check_email(field, nonempty(value))?;
        }
        let Builders::Students(b) = &mut self.builders else {
            unreachable!()
        };
        b.student_id.append_value(student_id);
        b.name.append_option(nonempty(&raw.name));
        b.email.append_option(nonempty(&raw.email));
        b.guardian_email
            .append_option(nonempty(&raw.guardian_email));
        b.timezone.append_option(timezone);
        b.locale.append_option(nonempty(&raw.locale));
        b.notify_reminders
            .append_value(raw.notify_reminders.unwrap_or(true));
        b.notify_achievements
            .append_value(raw.notify_achievements.unwrap_or(true));
        b.notify_deadlines
            .append_value(raw.notify_deadlines.unwrap_or(true));
        b.advisor_email.append_option(nonempty(&raw.advisor_email));
        self.keys.push(student_id.to_string());
        Ok(())
    }

    fn push_course(&mut self, raw: RawCourse) -> Result<(), String> {
        let course_id = required_id("course_id", raw.course_id.as_deref())?;
        let start = optional_date("start_date", raw.start_date.as_deref())?;
        let end = optional_date("end_date", raw.end_date.as_deref())?;
        if let (Some(s), Some(e)) = (start, end)
            && e < s
        {
            return Err("end_date is before start_date".into());
        }
        if let Some(n) = raw.total_lessons
            && n < 0
        {
            return Err(format!("total_lessons {n} is negative"));
        }
        check_percent("passing_score", raw.passing_score)?;
        check_email("instructor_email", nonempty(&raw.instructor_email))?;
        let Builders::Courses(b) = &mut self.builders else {
            unreachable!()
        };
        b.course_id.append_value(course_id);
        b.title.append_option(nonempty(&raw.title));
        b.start_date.append_option(start);
        b.end_date.append_option(end);
        b.total_lessons.append_option(raw.total_lessons);
        b.passing_score.append_option(raw.passing_score);
        b.instructor_email
            .append_option(nonempty(&raw.instructor_email));
        self.keys.push(course_id.to_string());
        Ok(())
    }

    fn push_enrollment(&mut self, raw: RawEnrollment) -> Result<(), String> {
        let student_id = required_id("student_id", raw.student_id.as_deref())?;
        let course_id = required_id("course_id", raw.course_id.as_deref())?;
        let zone = self.zone;
        let enrolled_at = optional_instant(
            "enrolled_at",
            raw.enrolled_at.as_deref(),
            zone,
            DayPart::Start,
        )?;
        let withdrawn_at = optional_instant(
            "withdrawn_at",
            raw.withdrawn_at.as_deref(),
            zone,
            DayPart::Start,
        )?;
        let status = nonempty(&raw.status).map(str::to_ascii_lowercase);
        if let Some(s) = &status
            && !["active", "withdrawn", "completed", "paused"].contains(&s.as_str())
        {
            return Err(format!(
                "status {s:?} is not one of active, withdrawn, completed, paused"
            ));
        }
        let result = nonempty(&raw.final_result).map(str::to_ascii_lowercase);
        if let Some(r) = &result
            && !["pass", "distinction", "fail", "withdrawn"].contains(&r.as_str())
        {
            return Err(format!(
                "final_result {r:?} is not one of pass, distinction, fail, withdrawn"
            ));
        }
        if let (Some(e), Some(w)) = (enrolled_at, withdrawn_at)
            && w < e
        {
            return Err("withdrawn_at is before enrolled_at".into());
        }
        let Builders::Enrollments(b) = &mut self.builders else {
            unreachable!()
        };
        b.student_id.append_value(student_id);
        b.course_id.append_value(course_id);
        b.enrolled_at.append_option(enrolled_at);
        b.status.append_option(status);
        b.withdrawn_at.append_option(withdrawn_at);
        b.final_result.append_option(result);
        self.keys.push(format!("{student_id}\u{1f}{course_id}"));
        Ok(())
    }

    fn push_assessment(&mut self, raw: RawAssessment) -> Result<(), String> {
        let assessment_id = required_id("assessment_id", raw.assessment_id.as_deref())?;
        let course_id = required_id("course_id", raw.course_id.as_deref())?;
        // "Due 2026-03-06" means by the end of that local day.
        let due_at = optional_instant("due_at", raw.due_at.as_deref(), self.zone, DayPart::End)?;
        check_non_negative("weight", raw.weight)?;
        let Builders::Assessments(b) = &mut self.builders else {
            unreachable!()
        };
        b.assessment_id.append_value(assessment_id);
        b.course_id.append_value(course_id);
        b.assessment_type
            .append_option(nonempty(&raw.assessment_type));
        b.title.append_option(nonempty(&raw.title));
        b.due_at.append_option(due_at);
        b.weight.append_option(raw.weight);
        self.keys.push(assessment_id.to_string());
        Ok(())
    }
}

// ---------------------------------------------------------------------------
// Raw shapes. Strings borrow from the input where they can.

#[derive(Deserialize)]
struct RawActivity<'a> {
    #[serde(borrow, default)]
    event_id: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    student_id: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    timestamp: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    activity_type: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    activity_category: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    course_id: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    lesson_id: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    quiz_id: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    assignment_id: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    resource_id: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    session_id: Option<Cow<'a, str>>,
    #[serde(default)]
    duration_seconds: Option<f64>,
    #[serde(default)]
    interaction_count: Option<i64>,
    #[serde(default)]
    progress: Option<f64>,
    #[serde(default)]
    score: Option<f64>,
    #[serde(borrow, default)]
    device_type: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    browser: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    os: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    device: Option<RawDevice<'a>>,
    #[serde(borrow, default)]
    ip_address: Option<Cow<'a, str>>,
    #[serde(default, deserialize_with = "lenient_bool")]
    success: Option<bool>,
    #[serde(borrow, default)]
    details: Option<&'a RawValue>,
}

#[derive(Deserialize, Default)]
struct RawDevice<'a> {
    #[serde(borrow, default, alias = "type")]
    device_type: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    browser: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    os: Option<Cow<'a, str>>,
}

#[derive(Deserialize)]
struct RawAttempt<'a> {
    #[serde(borrow, default)]
    attempt_id: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    student_id: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    course_id: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    assessment_id: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    quiz_id: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    assessment_type: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    started_at: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    submitted_at: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    completed_at: Option<Cow<'a, str>>,
    #[serde(default)]
    score: Option<f64>,
    #[serde(default)]
    points_earned: Option<f64>,
    #[serde(default)]
    points_possible: Option<f64>,
    #[serde(default)]
    passing_score: Option<f64>,
    #[serde(default, deserialize_with = "lenient_bool")]
    passed: Option<bool>,
    #[serde(default)]
    attempt_number: Option<i64>,
    #[serde(default, deserialize_with = "lenient_bool")]
    is_practice: Option<bool>,
    #[serde(borrow, default)]
    skill: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    answers: Option<Vec<RawAnswer<'a>>>,
    #[serde(borrow, default)]
    integrity_flags: Option<Vec<RawIntegrityFlag<'a>>>,
}

#[derive(Deserialize)]
struct RawAnswer<'a> {
    #[serde(borrow, default)]
    question_id: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    question_type: Option<Cow<'a, str>>,
    #[serde(default, deserialize_with = "lenient_bool")]
    is_correct: Option<bool>,
    #[serde(default)]
    points_earned: Option<f64>,
    #[serde(default)]
    points_possible: Option<f64>,
    #[serde(default)]
    time_spent_seconds: Option<f64>,
    #[serde(borrow, default)]
    skill: Option<Cow<'a, str>>,
}

#[derive(Deserialize)]
struct RawIntegrityFlag<'a> {
    #[serde(rename = "type", default)]
    kind: Option<String>,
    #[serde(borrow, default)]
    timestamp: Option<Cow<'a, str>>,
    #[serde(default)]
    details: Option<serde_json::Value>,
}

#[derive(Deserialize)]
struct RawStudent<'a> {
    #[serde(borrow, default)]
    student_id: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    name: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    email: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    guardian_email: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    timezone: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    locale: Option<Cow<'a, str>>,
    #[serde(default, deserialize_with = "lenient_bool")]
    notify_reminders: Option<bool>,
    #[serde(default, deserialize_with = "lenient_bool")]
    notify_achievements: Option<bool>,
    #[serde(default, deserialize_with = "lenient_bool")]
    notify_deadlines: Option<bool>,
    #[serde(borrow, default)]
    advisor_email: Option<Cow<'a, str>>,
}

#[derive(Deserialize)]
struct RawCourse<'a> {
    #[serde(borrow, default)]
    course_id: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    title: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    start_date: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    end_date: Option<Cow<'a, str>>,
    #[serde(default)]
    total_lessons: Option<i64>,
    #[serde(default)]
    passing_score: Option<f64>,
    #[serde(borrow, default)]
    instructor_email: Option<Cow<'a, str>>,
}

#[derive(Deserialize)]
struct RawEnrollment<'a> {
    #[serde(borrow, default)]
    student_id: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    course_id: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    enrolled_at: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    status: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    withdrawn_at: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    final_result: Option<Cow<'a, str>>,
}

#[derive(Deserialize)]
struct RawAssessment<'a> {
    #[serde(borrow, default)]
    assessment_id: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    course_id: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    assessment_type: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    title: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    due_at: Option<Cow<'a, str>>,
    #[serde(default)]
    weight: Option<f64>,
}

// ---------------------------------------------------------------------------
// Builders, one per column.

#[derive(Default)]
struct ActivityBuilders {
    event_id: StringBuilder,
    student_id: StringBuilder,
    timestamp: TimestampMicrosecondBuilder,
    activity_type: StringBuilder,
    activity_category: StringBuilder,
    course_id: StringBuilder,
    lesson_id: StringBuilder,
    quiz_id: StringBuilder,
    assignment_id: StringBuilder,
    resource_id: StringBuilder,
    session_id: StringBuilder,
    duration_seconds: Float64Builder,
    interaction_count: Int64Builder,
    progress: Float64Builder,
    score: Float64Builder,
    device_type: StringBuilder,
    browser: StringBuilder,
    os: StringBuilder,
    ip_address: StringBuilder,
    success: BooleanBuilder,
    details: StringBuilder,
}

impl ActivityBuilders {
    fn finish(&mut self) -> Vec<ArrayRef> {
        vec![
            Arc::new(self.event_id.finish()),
            Arc::new(self.student_id.finish()),
            Arc::new(self.timestamp.finish().with_timezone("UTC")),
            Arc::new(self.activity_type.finish()),
            Arc::new(self.activity_category.finish()),
            Arc::new(self.course_id.finish()),
            Arc::new(self.lesson_id.finish()),
            Arc::new(self.quiz_id.finish()),
            Arc::new(self.assignment_id.finish()),
            Arc::new(self.resource_id.finish()),
            Arc::new(self.session_id.finish()),
            Arc::new(self.duration_seconds.finish()),
            Arc::new(self.interaction_count.finish()),
            Arc::new(self.progress.finish()),
            Arc::new(self.score.finish()),
            Arc::new(self.device_type.finish()),
            Arc::new(self.browser.finish()),
            Arc::new(self.os.finish()),
            Arc::new(self.ip_address.finish()),
            Arc::new(self.success.finish()),
            Arc::new(self.details.finish()),
        ]
    }
}

struct AttemptBuilders {
    attempt_id: StringBuilder,
    student_id: StringBuilder,
    course_id: StringBuilder,
    assessment_id: StringBuilder,
    assessment_type: StringBuilder,
    started_at: TimestampMicrosecondBuilder,
    submitted_at: TimestampMicrosecondBuilder,
    score: Float64Builder,
    points_earned: Float64Builder,
    points_possible: Float64Builder,
    passing_score: Float64Builder,
    passed: BooleanBuilder,
    attempt_number: Int64Builder,
    is_practice: BooleanBuilder,
    skill: StringBuilder,
    answers: ListBuilder<StructBuilder>,
    integrity_flags: ListBuilder<StructBuilder>,
}

impl Default for AttemptBuilders {
    fn default() -> Self {
        let list = |fields| ListBuilder::new(StructBuilder::from_fields(fields, 0));
        let flags = integrity_flag_fields();
        let mut flag_builder = StructBuilder::from_fields(flags.clone(), 0);
        // The nested timestamp must carry the lake's UTC zone.
        *flag_builder
            .field_builder::<TimestampMicrosecondBuilder>(1)
            .expect("timestamp field") = TimestampMicrosecondBuilder::new().with_timezone("UTC");
        Self {
            attempt_id: StringBuilder::new(),
            student_id: StringBuilder::new(),
            course_id: StringBuilder::new(),
            assessment_id: StringBuilder::new(),
            assessment_type: StringBuilder::new(),
            started_at: TimestampMicrosecondBuilder::new(),
            submitted_at: TimestampMicrosecondBuilder::new(),
            score: Float64Builder::new(),
            points_earned: Float64Builder::new(),
            points_possible: Float64Builder::new(),
            passing_score: Float64Builder::new(),
            passed: BooleanBuilder::new(),
            attempt_number: Int64Builder::new(),
            is_practice: BooleanBuilder::new(),
            skill: StringBuilder::new(),
            answers: list(answer_fields()),
            integrity_flags: ListBuilder::new(flag_builder),
        }
    }
}

impl AttemptBuilders {
    fn finish(&mut self) -> Vec<ArrayRef> {
        vec![
            Arc::new(self.attempt_id.finish()),
            Arc::new(self.student_id.finish()),
            Arc::new(self.course_id.finish()),
            Arc::new(self.assessment_id.finish()),
            Arc::new(self.assessment_type.finish()),
            Arc::new(self.started_at.finish().with_timezone("UTC")),
            Arc::new(self.submitted_at.finish().with_timezone("UTC")),
            Arc::new(self.score.finish()),
            Arc::new(self.points_earned.finish()),
            Arc::new(self.points_possible.finish()),
            Arc::new(self.passing_score.finish()),
            Arc::new(self.passed.finish()),
            Arc::new(self.attempt_number.finish()),
            Arc::new(self.is_practice.finish()),
            Arc::new(self.skill.finish()),
            Arc::new(self.answers.finish()),
            Arc::new(self.integrity_flags.finish()),
        ]
    }
}

#[derive(Default)]
struct StudentBuilders {
    student_id: StringBuilder,
    name: StringBuilder,
    email: StringBuilder,
    guardian_email: StringBuilder,
    timezone: StringBuilder,
    locale: StringBuilder,
    notify_reminders: BooleanBuilder,
    notify_achievements: BooleanBuilder,
    notify_deadlines: BooleanBuilder,
    advisor_email: StringBuilder,
}

impl StudentBuilders {
    fn finish(&mut self) -> Vec<ArrayRef> {
        vec![
            Arc::new(self.student_id.finish()),
            Arc::new(self.name.finish()),
            Arc::new(self.email.finish()),
            Arc::new(self.guardian_email.finish()),
            Arc::new(self.timezone.finish()),
            Arc::new(self.locale.finish()),
            Arc::new(self.notify_reminders.finish()),
            Arc::new(self.notify_achievements.finish()),
            Arc::new(self.notify_deadlines.finish()),
            Arc::new(self.advisor_email.finish()),
        ]
    }
}

#[derive(Default)]
struct CourseBuilders {
    course_id: StringBuilder,
    title: StringBuilder,
    start_date: Date32Builder,
    end_date: Date32Builder,
    total_lessons: Int64Builder,
    passing_score: Float64Builder,
    instructor_email: StringBuilder,
}

impl CourseBuilders {
    fn finish(&mut self) -> Vec<ArrayRef> {
        vec![
            Arc::new(self.course_id.finish()),
            Arc::new(self.title.finish()),
            Arc::new(self.start_date.finish()),
            Arc::new(self.end_date.finish()),
            Arc::new(self.total_lessons.finish()),
            Arc::new(self.passing_score.finish()),
            Arc::new(self.instructor_email.finish()),
        ]
    }
}

#[derive(Default)]
struct EnrollmentBuilders {
    student_id: StringBuilder,
    course_id: StringBuilder,
    enrolled_at: TimestampMicrosecondBuilder,
    status: StringBuilder,
    withdrawn_at: TimestampMicrosecondBuilder,
    final_result: StringBuilder,
}

impl EnrollmentBuilders {
    fn finish(&mut self) -> Vec<ArrayRef> {
        vec![
            Arc::new(self.student_id.finish()),
            Arc::new(self.course_id.finish()),
            Arc::new(self.enrolled_at.finish().with_timezone("UTC")),
            Arc::new(self.status.finish()),
            Arc::new(self.withdrawn_at.finish().with_timezone("UTC")),
            Arc::new(self.final_result.finish()),
        ]
    }
}

#[derive(Default)]
struct AssessmentBuilders {
    assessment_id: StringBuilder,
    course_id: StringBuilder,
    assessment_type: StringBuilder,
    title: StringBuilder,
    due_at: TimestampMicrosecondBuilder,
    weight: Float64Builder,
}

impl AssessmentBuilders {
    fn finish(&mut self) -> Vec<ArrayRef> {
        vec![
            Arc::new(self.assessment_id.finish()),
            Arc::new(self.course_id.finish()),
            Arc::new(self.assessment_type.finish()),
            Arc::new(self.title.finish()),
            Arc::new(self.due_at.finish().with_timezone("UTC")),
            Arc::new(self.weight.finish()),
        ]
    }
}

// ---------------------------------------------------------------------------
// Checks and conversions.

/// Parses one JSON object. Valid lines take the plain serde_json path; only
/// a line that fails is parsed again with path tracking, for a reason that
/// names the field.
fn from_json<'de, T: Deserialize<'de>>(line: &'de [u8]) -> Result<T, String> {
    if let Ok(value) = serde_json::from_slice(line) {
        return Ok(value);
    }
    let mut de = serde_json::Deserializer::from_slice(line);
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

fn from_csv<'de, T: Deserialize<'de>>(
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

fn nonempty<'a>(value: &'a Option<Cow<'_, str>>) -> Option<&'a str> {
    value.as_deref().filter(|v| !v.is_empty())
}

fn clip(text: &str) -> String {
    let mut end = text.len().min(40);
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    if end < text.len() {
        format!("{}…", &text[..end])
    } else {
        text.to_string()
    }
}

fn check_id(field: &str, value: &str) -> Result<(), String> {
    if value.len() > 256 {
        return Err(format!("{field} is longer than 256 bytes"));
    }
    if value.chars().any(char::is_control) {
        return Err(format!(
            "{field} {:?} contains control characters",
            clip(value)
        ));
    }
    if value.trim() != value {
        return Err(format!("{field} {value:?} has leading or trailing spaces"));
    }
    Ok(())
}

fn required_id<'a>(field: &str, value: Option<&'a str>) -> Result<&'a str, String> {
    let value = required_text(field, value)?;
    check_id(field, value)?;
    Ok(value)
}

fn optional_id<'a>(field: &str, value: Option<&'a str>) -> Result<Option<&'a str>, String> {
    match value.filter(|v| !v.is_empty()) {
        None => Ok(None),
        Some(v) => check_id(field, v).map(|()| Some(v)),
    }
}

fn required_text<'a>(field: &str, value: Option<&'a str>) -> Result<&'a str, String> {
    match value {
        Some(v) if !v.trim().is_empty() => Ok(v),
        Some(_) => Err(format!("required field {field:?} is empty")),
        None => Err(format!("missing required field {field:?}")),
    }
}

fn check_percent(field: &str, value: Option<f64>) -> Result<(), String> {
    match value {
        Some(v) if !(0.0..=100.0).contains(&v) => Err(format!("{field} {v} is outside 0–100")),
        _ => Ok(()),
    }
}

fn check_non_negative(field: &str, value: Option<f64>) -> Result<(), String> {
    match value {
        Some(v) if !v.is_finite() || v < 0.0 => Err(format!("{field} {v} is negative")),
        _ => Ok(()),
    }
}

fn check_email(field: &str, value: Option<&str>) -> Result<(), String> {
    match value {
        Some(v) if !v.contains('@') || v.chars().any(char::is_whitespace) => {
            Err(format!("{field} {:?} is not an e-mail address", clip(v)))
        }
        _ => Ok(()),
    }
}

/// Earliest and latest accepted instants: 1970-01-01 and 2100-01-01 UTC.
const MIN_MICROS: i64 = 0;
const MAX_MICROS: i64 = 4_102_444_800_000_000;

/// Parses an RFC 3339 timestamp with an offset into UTC microseconds.
pub fn parse_timestamp(field: &str, text: &str) -> Result<i64, String> {
    let parsed = DateTime::parse_from_rfc3339(text).map_err(|e| {
        format!(
            "{field} {:?} is not an RFC 3339 timestamp with an offset, like 2026-03-02T09:30:00Z ({e})",
            clip(text)
        )
    })?;
    let micros = parsed.timestamp_micros();
    if !(MIN_MICROS..MAX_MICROS).contains(&micros) {
        return Err(format!("{field} {text:?} is outside 1970–2099"));
    }
    Ok(micros)
}

fn required_timestamp(field: &str, text: Option<&str>) -> Result<i64, String> {
    parse_timestamp(field, required_text(field, text)?)
}

fn optional_timestamp(field: &str, text: Option<&str>) -> Result<Option<i64>, String> {
    match text.filter(|t| !t.is_empty()) {
        None => Ok(None),
        Some(t) => parse_timestamp(field, t).map(Some),
    }
}

/// Which instant of a local day a date-only value stands for.
#[derive(Clone, Copy)]
enum DayPart {
    /// The day's first instant (local midnight).
    Start,
    /// The day's end: the next day's first instant.
    End,
}

/// A timestamp, or a plain date meaning a day in the institution `zone`.
fn optional_instant(
    field: &str,
    text: Option<&str>,
    zone: chrono_tz::Tz,
    part: DayPart,
) -> Result<Option<i64>, String> {
    match text.filter(|t| !t.is_empty()) {
        None => Ok(None),
        Some(t) if t.len() == 10 => {
            let days = parse_date(field, t)?;
            let date = NaiveDate::default() + chrono::Duration::days(i64::from(days));
            let day = match part {
                DayPart::Start => date,
                DayPart::End => date.succ_opt().unwrap_or(date),
            };
            Ok(Some(local_day_start(zone, day)))
        }
        Some(t) => parse_timestamp(field, t).map(Some),
    }
}

/// The first instant of a local day in `zone`, in UTC microseconds: local
/// midnight, or the first valid local time after it when a DST change skips
/// midnight (e.g. America/Santiago), the earlier one when it repeats.
pub fn local_day_start(zone: chrono_tz::Tz, day: NaiveDate) -> i64 {
    use chrono::TimeZone;
    let midnight = day.and_hms_opt(0, 0, 0).expect("midnight exists");
    (0..=180)
        .step_by(15)
        .find_map(|m| {
            zone.from_local_datetime(&(midnight + chrono::Duration::minutes(m)))
                .earliest()
        })
        .map_or_else(
            || midnight.and_utc().timestamp_micros(),
            |t| t.timestamp_micros(),
        )
}

fn parse_date(field: &str, text: &str) -> Result<i32, String> {
    let date = NaiveDate::parse_from_str(text, "%Y-%m-%d").map_err(|e| {
        format!(
            "{field} {:?} is not a date like 2026-03-02 ({e})",
            clip(text)
        )
    })?;
    let days = date.signed_duration_since(NaiveDate::default()).num_days();
    if !(0..47_482).contains(&days) {
        return Err(format!("{field} {text:?} is outside 1970–2099"));
    }
    Ok(days as i32)
}

fn optional_date(field: &str, text: Option<&str>) -> Result<Option<i32>, String> {
    match text.filter(|t| !t.is_empty()) {
        None => Ok(None),
        Some(t) => parse_date(field, t).map(Some),
    }
}

fn utc_days(micros: i64) -> i32 {
    micros.div_euclid(86_400_000_000) as i32
}

fn append_str(builder: &mut StructBuilder, index: usize, value: Option<&str>) {
    builder
        .field_builder::<StringBuilder>(index)
        .expect("string field")
        .append_option(value);
}

fn append_f64(builder: &mut StructBuilder, index: usize, value: Option<f64>) {
    builder
        .field_builder::<Float64Builder>(index)
        .expect("float field")
        .append_option(value);
}

/// activity_category for a known activity_type (`other` for unknown ones).
pub fn category_of(activity_type: &str) -> &'static str {
    match activity_type {
        "lesson_start" | "lesson_complete" | "content_view" | "resource_view"
        | "resource_download" | "video_play" | "video_complete" => "learning",
        "quiz_start" | "quiz_submit" | "assignment_submit" => "assessment",
        "forum_post" | "help_requested" => "social",
        "login" | "logout" | "achievement_earned" => "system",
        _ => "other",
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

/// Keyed hash of IP addresses. Keeps a small cache: the same student sends
/// many events from the same address.
struct IpHasher {
    mac: Hmac<Sha256>,
    cache: HashMap<String, String>,
}

impl IpHasher {
    fn new(key: &[u8]) -> Self {
        Self {
            mac: Hmac::<Sha256>::new_from_slice(key).expect("HMAC takes any key length"),
            cache: HashMap::new(),
        }
    }

    fn hash(&mut self, ip: &str) -> String {
        if let Some(hit) = self.cache.get(ip) {
            return hit.clone();
        }
        let mut mac = self.mac.clone();
        mac.update(ip.as_bytes());
        let digest = hex::encode(mac.finalize().into_bytes());
        if self.cache.len() > 65_536 {
            self.cache.clear();
        }
        self.cache.insert(ip.to_string(), digest.clone());
        digest
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn activity(line: &str) -> Result<(), String> {
        Rows::new(Kind::Activity, Some(b"k")).push_json(line.as_bytes())
    }

    #[test]
    fn a_valid_event_is_accepted_with_defaults_filled_in() {
        let mut rows = Rows::new(Kind::Activity, Some(b"key"));
        rows.push_json(br#"{"event_id":"e1","student_id":"s1","timestamp":"2026-03-02T23:30:00-02:00","activity_type":"video_play","ip_address":"10.0.0.1","device":{"os":"linux"}}"#)
            .unwrap();
        let batch = rows.finish();
        assert_eq!(batch.num_rows(), 1);
        assert_eq!(rows.keys, ["e1"]);
        // 23:30 at -02:00 is 01:30 UTC on the next day.
        assert_eq!(
            rows.dates,
            [utc_days(
                parse_timestamp("t", "2026-03-03T01:30:00Z").unwrap()
            )]
        );
        let col = |name: &str| batch.column_by_name(name).unwrap().clone();
        let category = col("activity_category");
        let category = category
            .as_any()
            .downcast_ref::<datafusion::arrow::array::StringArray>()
            .unwrap();
        assert_eq!(category.value(0), "learning");
        let ip = col("ip_address");
        let ip = ip
            .as_any()
            .downcast_ref::<datafusion::arrow::array::StringArray>()
            .unwrap();
        assert_eq!(ip.value(0).len(), 64);
        assert_ne!(ip.value(0), "10.0.0.1");
    }

    #[test]
    fn date_only_reference_dates_are_days_in_the_institution_zone() {
        let ny: chrono_tz::Tz = "America/New_York".parse().unwrap();
        let micros = |batch: &RecordBatch, name: &str| {
            batch
                .column_by_name(name)
                .unwrap()
                .as_any()
                .downcast_ref::<datafusion::arrow::array::TimestampMicrosecondArray>()
                .unwrap()
                .value(0)
        };
        let mut rows = Rows::new(Kind::Assessments, None).in_zone(ny);
        rows.push_json(br#"{"assessment_id":"a1","course_id":"c1","due_at":"2026-03-06"}"#)
            .unwrap();
        // Due by the end of 6 March in New York: 05:00 UTC on the 7th (EST).
        assert_eq!(
            micros(&rows.finish(), "due_at"),
            parse_timestamp("t", "2026-03-07T05:00:00Z").unwrap()
        );
        let mut rows = Rows::new(Kind::Enrollments, None).in_zone(ny);
        rows.push_json(
            br#"{"student_id":"s1","course_id":"c1","enrolled_at":"2026-03-09","withdrawn_at":"2026-03-10T12:00:00Z"}"#,
        )
        .unwrap();
        // The start of 9 March in New York, after the DST change (EDT, -04:00).
        assert_eq!(
            micros(&rows.finish(), "enrolled_at"),
            parse_timestamp("t", "2026-03-09T04:00:00Z").unwrap()
        );
        // A zone whose DST change skips midnight starts the day at 01:00.
        let santiago: chrono_tz::Tz = "America/Santiago".parse().unwrap();
        let day = NaiveDate::from_ymd_opt(2026, 9, 6).unwrap();
        assert_eq!(
            local_day_start(santiago, day),
            parse_timestamp("t", "2026-09-06T04:00:00Z").unwrap()
        );
    }

    #[test]
    fn contract_breaches_say_what_is_wrong() {
        let base = r#""event_id":"e1","student_id":"s1","timestamp":"2026-03-02T10:00:00Z","activity_type":"login""#;
        let cases = [
            (r#"{"student_id":"s1","timestamp":"2026-03-02T10:00:00Z","activity_type":"login"}"#.to_string(), "missing required field \"event_id\""),
            (format!("{{{base},\"score\":140}}"), "score 140 is outside 0–100"),
            (format!("{{{base},\"duration_seconds\":\"long\"}}"), "field \"duration_seconds\": invalid type: string \"long\", expected f64"),
            (r#"{"event_id":"e1","student_id":"s1","timestamp":"2026-02-30T10:00:00Z","activity_type":"login"}"#.to_string(), "timestamp \"2026-02-30T10:00:00Z\" is not an RFC 3339 timestamp"),
            (r#"{"event_id":"e1","student_id":"s1","timestamp":"2026-03-02 10:00","activity_type":"login"}"#.to_string(), "is not an RFC 3339 timestamp"),
            ("{\"event_id\": \"e1\", ".to_string(), "malformed JSON"),
            ("[1,2]".to_string(), "not a JSON object"),
            (format!("{{{base},\"interaction_count\":-3}}"), "interaction_count -3 is negative"),
        ];
        for (line, expected) in cases {
            let err = activity(&line).unwrap_err();
            assert!(
                err.contains(expected),
                "{line}\n  got: {err}\n  want: {expected}"
            );
        }
    }

    #[test]
    fn attempts_accept_aliases_and_derive_passed() {
        let mut rows = Rows::new(Kind::Attempts, None);
        rows.push_json(br#"{"attempt_id":"a1","student_id":"s1","course_id":"c1","quiz_id":"q1","completed_at":"2026-03-02T10:00:00Z","score":72.5,"passing_score":70,"answers":[{"question_id":"x","is_correct":true}],"integrity_flags":[{"type":"tab_switch","timestamp":"2026-03-02T09:59:00Z","details":{"n":2}}]}"#)
            .unwrap();
        let err = rows
            .push_json(br#"{"attempt_id":"a2","student_id":"s1","course_id":"c1","assessment_id":"q1","submitted_at":"2026-03-02T10:00:00Z"}"#)
            .unwrap_err();
        assert_eq!(err, "missing required field \"score\"");
        let batch = rows.finish();
        assert_eq!(batch.num_rows(), 1);
        let passed = batch.column_by_name("passed").unwrap();
        let passed = passed
            .as_any()
            .downcast_ref::<datafusion::arrow::array::BooleanArray>()
            .unwrap();
        assert!(passed.value(0));
    }

    #[test]
    fn csv_reference_rows_parse_with_lenient_booleans() {
        let headers =
            csv::StringRecord::from(vec!["student_id", "name", "timezone", "notify_reminders"]);
        let mut rows = Rows::new(Kind::Students, None);
        rows.push_csv(
            &csv::StringRecord::from(vec!["s1", "Zoë", "Asia/Tokyo", "no"]),
            &headers,
        )
        .unwrap();
        let err = rows
            .push_csv(
                &csv::StringRecord::from(vec!["s2", "Al", "Mars/Base", ""]),
                &headers,
            )
            .unwrap_err();
        assert!(
            err.contains("timezone \"Mars/Base\" is not an IANA time zone"),
            "{err}"
        );
        let err = rows
            .push_csv(
                &csv::StringRecord::from(vec!["s3", "Al", "UTC", "maybe"]),
                &headers,
            )
            .unwrap_err();
        assert!(err.contains("\"maybe\", expected a boolean"), "{err}");
        assert_eq!(rows.finish().num_rows(), 1);
    }
}
