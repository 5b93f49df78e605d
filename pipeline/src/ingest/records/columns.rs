//! [`Rows`]: the rows of one kind being built. Each raw row is checked and
//! appended to one Arrow builder per column of the kind's lake schema, with
//! the per-row facts ingest needs later (its key, its date partition).

use std::sync::Arc;

use datafusion::arrow::array::{
    ArrayBuilder, ArrayRef, AsArray, BooleanBuilder, Date32Builder, Float64Builder, Int64Builder,
    ListBuilder, RecordBatch, StringArray, StringBuilder, StructBuilder,
    TimestampMicrosecondBuilder, new_null_array,
};
use datafusion::arrow::buffer::Buffer;
use datafusion::arrow::datatypes::{DataType, SchemaRef};
use serde_json::value::RawValue;

use super::Kind;
use super::checks::{
    DayPart, IpHasher, category_of, check_email, check_id, check_non_negative, check_percent, clip,
    nonempty, optional_date, optional_id, optional_instant, optional_timestamp, parse_timestamp,
    required_id, required_text, required_timestamp, utc_days,
};
use super::raw::{
    RawActivity, RawAssessment, RawAttempt, RawCourse, RawEnrollment, RawStudent, flat_activity,
    from_csv, from_json,
};
use crate::lake::tables::{answer_fields, integrity_flag_fields};

/// Rows of one kind being built, plus per-row facts ingest needs later.
pub struct Rows {
    kind: Kind,
    builders: Builders,
    /// Per accepted row of a reference kind: its key. (An event's key is its
    /// `event_id` / `attempt_id` column: not copied.)
    pub keys: Vec<String>,
    /// Per accepted row: the UTC date partition (days since epoch), events only.
    pub dates: Vec<i32>,
    pub(super) hasher: Option<IpHasher>,
    /// How other systems' records map to rows.
    pub(super) mapping: std::sync::Arc<super::lms::Mapping>,
    /// The institution zone: the day a date-only reference date names.
    zone: chrono_tz::Tz,
}

// One per batch being parsed, never in a collection: the size difference
// between the reference kinds costs nothing (the event kinds are boxed).
#[allow(clippy::large_enum_variant)]
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
            Kind::Activity => Builders::Activity(Box::new(ActivityBuilders::with_capacity(0))),
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
            mapping: Default::default(),
            zone: chrono_tz::Tz::UTC,
        }
    }

    /// Maps other systems' records by `mapping`.
    pub fn with_mapping(mut self, mapping: std::sync::Arc<super::lms::Mapping>) -> Self {
        self.mapping = mapping;
        self
    }

    /// Makes room for about `rows` more rows, before the first is pushed
    /// (a work item's line count).
    pub fn reserve(&mut self, rows: usize) {
        if let Builders::Activity(b) = &mut self.builders
            && b.event_id.is_empty()
        {
            **b = ActivityBuilders::with_capacity(rows);
        }
        if self.kind.is_event() {
            self.dates.reserve(rows);
        }
    }

    /// The kind of rows being built.
    pub fn kind(&self) -> Kind {
        self.kind
    }

    /// Reads date-only reference dates as days in `zone` (PRODUCT §3).
    pub fn in_zone(mut self, zone: chrono_tz::Tz) -> Self {
        self.zone = zone;
        self
    }

    /// Accepted rows so far.
    pub fn len(&self) -> usize {
        if self.kind.is_event() {
            self.dates.len()
        } else {
            self.keys.len()
        }
    }

    /// Whether no row was accepted.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Parses and appends one NDJSON line; on error returns the reason.
    pub fn push_json(&mut self, line: &str) -> Result<(), String> {
        match self.kind {
            Kind::Activity => {
                let raw: RawActivity = match flat_activity(line) {
                    Some(raw) => raw,
                    None => from_json(line)?,
                };
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

    pub(super) fn push_activity(&mut self, raw: RawActivity) -> Result<(), String> {
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

        // The attempts pass over another system's records checks a record's
        // event (an attempt is kept only when its event is) without keeping it.
        let Builders::Activity(b) = &mut self.builders else {
            return Ok(());
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
        self.dates.push(utc_days(timestamp));
        Ok(())
    }

    pub(super) fn push_attempt(&mut self, raw: RawAttempt) -> Result<(), String> {
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

/// The activity columns. Only the contract's required fields are always
/// there; the others are [`Sparse`]: a narrow export leaves most of them
/// empty, and appending a null per row to each was 4 % of its ingest.
#[derive(Default)]
struct ActivityBuilders {
    event_id: StringBuilder,
    student_id: StringBuilder,
    timestamp: TimestampMicrosecondBuilder,
    activity_type: StringBuilder,
    activity_category: StringBuilder,
    course_id: Sparse<StringBuilder>,
    lesson_id: Sparse<StringBuilder>,
    quiz_id: Sparse<StringBuilder>,
    assignment_id: Sparse<StringBuilder>,
    resource_id: Sparse<StringBuilder>,
    session_id: Sparse<StringBuilder>,
    duration_seconds: Sparse<Float64Builder>,
    interaction_count: Int64Builder,
    progress: Sparse<Float64Builder>,
    score: Sparse<Float64Builder>,
    device_type: Sparse<StringBuilder>,
    browser: Sparse<StringBuilder>,
    os: Sparse<StringBuilder>,
    ip_address: Sparse<StringBuilder>,
    success: Sparse<BooleanBuilder>,
    details: Sparse<StringBuilder>,
}

impl ActivityBuilders {
    /// Builders for about `rows` rows: the columns every row has are
    /// allocated once instead of doubling their way up.
    fn with_capacity(rows: usize) -> Self {
        Self {
            event_id: StringBuilder::with_capacity(rows, 0),
            student_id: StringBuilder::with_capacity(rows, 0),
            timestamp: TimestampMicrosecondBuilder::with_capacity(rows),
            activity_type: StringBuilder::with_capacity(rows, 0),
            activity_category: StringBuilder::with_capacity(rows, 0),
            interaction_count: Int64Builder::with_capacity(rows),
            ..Self::default()
        }
    }

    fn finish(&mut self) -> Vec<ArrayRef> {
        let rows = self.event_id.len();
        vec![
            tight(Arc::new(self.event_id.finish())),
            tight(Arc::new(self.student_id.finish())),
            Arc::new(self.timestamp.finish().with_timezone("UTC")),
            tight(Arc::new(self.activity_type.finish())),
            tight(Arc::new(self.activity_category.finish())),
            tight(self.course_id.finish(rows)),
            tight(self.lesson_id.finish(rows)),
            tight(self.quiz_id.finish(rows)),
            tight(self.assignment_id.finish(rows)),
            tight(self.resource_id.finish(rows)),
            tight(self.session_id.finish(rows)),
            self.duration_seconds.finish(rows),
            Arc::new(self.interaction_count.finish()),
            self.progress.finish(rows),
            self.score.finish(rows),
            tight(self.device_type.finish(rows)),
            tight(self.browser.finish(rows)),
            tight(self.os.finish(rows)),
            tight(self.ip_address.finish(rows)),
            self.success.finish(rows),
            tight(self.details.finish(rows)),
        ]
    }
}

/// A column builder that only counts the nulls before its first value: a
/// column no row fills is never built (finished as one null array).
struct Sparse<B> {
    leading_nulls: usize,
    builder: Option<B>,
}

impl<B> Default for Sparse<B> {
    fn default() -> Self {
        Self {
            leading_nulls: 0,
            builder: None,
        }
    }
}

/// What [`Sparse`] needs of a builder.
trait NullsFirst: ArrayBuilder + Default {
    type Value<'v>;
    /// The type of the column it builds.
    const DATA_TYPE: DataType;
    fn append_nulls_first(&mut self, n: usize);
    fn append_some(&mut self, value: Self::Value<'_>);
    fn append_none(&mut self);
}

macro_rules! nulls_first {
    ($builder:ty, $value:ty, $data_type:expr) => {
        impl NullsFirst for $builder {
            type Value<'v> = $value;
            const DATA_TYPE: DataType = $data_type;
            fn append_nulls_first(&mut self, n: usize) {
                self.append_nulls(n);
            }
            fn append_some(&mut self, value: Self::Value<'_>) {
                self.append_value(value);
            }
            fn append_none(&mut self) {
                self.append_null();
            }
        }
    };
}

nulls_first!(StringBuilder, &'v str, DataType::Utf8);
nulls_first!(Float64Builder, f64, DataType::Float64);
nulls_first!(BooleanBuilder, bool, DataType::Boolean);

impl<B: NullsFirst> Sparse<B> {
    fn append_option(&mut self, value: Option<B::Value<'_>>) {
        match (value, &mut self.builder) {
            (None, None) => self.leading_nulls += 1,
            (None, Some(b)) => b.append_none(),
            (Some(v), Some(b)) => b.append_some(v),
            (Some(v), None) => {
                let mut b = B::default();
                b.append_nulls_first(self.leading_nulls);
                b.append_some(v);
                self.builder = Some(b);
            }
        }
    }

    /// The column of `rows` rows.
    fn finish(&mut self, rows: usize) -> ArrayRef {
        let leading = std::mem::take(&mut self.leading_nulls);
        match self.builder.take() {
            Some(mut b) => ArrayBuilder::finish(&mut b),
            None => {
                debug_assert_eq!(leading, rows);
                new_null_array(&B::DATA_TYPE, rows)
            }
        }
    }
}

/// A string column with its text in a buffer of its size (other columns
/// as they are): a builder's buffer doubles as it grows and is on average a
/// third empty, memory the rows held until their commit would carry (and
/// spill). Copied only when a quarter or more is empty.
fn tight(column: ArrayRef) -> ArrayRef {
    let Some(strings) = column.as_string_opt::<i32>() else {
        return column;
    };
    let (offsets, values, nulls) = strings.clone().into_parts();
    let used = offsets.last().map_or(0, |&end| end as usize);
    let values = if values.capacity() > used + used / 4 + 4096 {
        Buffer::from_slice_ref(&values.as_slice()[..used])
    } else {
        values
    };
    Arc::new(StringArray::new(offsets, values, nulls))
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

#[cfg(test)]
mod tests {
    use chrono::NaiveDate;

    use super::super::local_day_start;
    use super::*;
    use datafusion::arrow::array::{Array, Float64Array};

    fn activity(line: &str) -> Result<(), String> {
        Rows::new(Kind::Activity, Some(b"k")).push_json(line)
    }

    proptest::proptest! {
        /// A sparse column holds what a plain builder would, whenever its
        /// first value comes; `tight` keeps every value.
        #[test]
        fn sparse_columns_hold_what_plain_builders_hold(
            values in proptest::collection::vec(
                proptest::option::weighted(0.3, "[a-zé]{0,12}"), 0..300),
            numbers in proptest::collection::vec(proptest::option::of(-1e6f64..1e6), 0..50),
        ) {
            let mut sparse = Sparse::<StringBuilder>::default();
            for v in &values {
                sparse.append_option(v.as_deref());
            }
            let built = tight(sparse.finish(values.len()));
            let expected: datafusion::arrow::array::StringArray =
                values.iter().map(|v| v.as_deref()).collect();
            proptest::prop_assert_eq!(built.as_ref(), &expected as &dyn Array);
            let mut sparse = Sparse::<Float64Builder>::default();
            for &v in &numbers {
                sparse.append_option(v);
            }
            let built = sparse.finish(numbers.len());
            let expected: Float64Array = numbers.iter().copied().collect();
            proptest::prop_assert_eq!(built.as_ref(), &expected as &dyn Array);
        }
    }

    #[test]
    fn tight_strings_drop_the_builders_spare_room() {
        let mut b = StringBuilder::new();
        for i in 0..10_000 {
            b.append_value(format!("id-{i}"));
        }
        let loose = b.finish();
        let tight = tight(Arc::new(loose.clone()));
        assert_eq!(tight.as_ref(), &loose as &dyn Array);
        let used = loose.value_offsets()[10_000] as usize;
        let held = tight.as_string::<i32>().values().capacity();
        assert!(
            held <= used + used / 4 + 4096,
            "{held} bytes held for {used}"
        );
    }

    #[test]
    fn a_valid_event_is_accepted_with_defaults_filled_in() {
        let mut rows = Rows::new(Kind::Activity, Some(b"key"));
        rows.push_json(r#"{"event_id":"e1","student_id":"s1","timestamp":"2026-03-02T23:30:00-02:00","activity_type":"video_play","ip_address":"10.0.0.1","device":{"os":"linux"}}"#)
            .unwrap();
        let batch = rows.finish();
        assert_eq!(batch.num_rows(), 1);
        assert!(
            rows.keys.is_empty(),
            "an event's key is its event_id column"
        );
        assert_eq!(rows.len(), 1);
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
        rows.push_json(r#"{"assessment_id":"a1","course_id":"c1","due_at":"2026-03-06"}"#)
            .unwrap();
        // Due by the end of 6 March in New York: 05:00 UTC on the 7th (EST).
        assert_eq!(
            micros(&rows.finish(), "due_at"),
            parse_timestamp("t", "2026-03-07T05:00:00Z").unwrap()
        );
        let mut rows = Rows::new(Kind::Enrollments, None).in_zone(ny);
        rows.push_json(
            r#"{"student_id":"s1","course_id":"c1","enrolled_at":"2026-03-09","withdrawn_at":"2026-03-10T12:00:00Z"}"#,
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
        rows.push_json(r#"{"attempt_id":"a1","student_id":"s1","course_id":"c1","quiz_id":"q1","completed_at":"2026-03-02T10:00:00Z","score":72.5,"passing_score":70,"answers":[{"question_id":"x","is_correct":true}],"integrity_flags":[{"type":"tab_switch","timestamp":"2026-03-02T09:59:00Z","details":{"n":2}}]}"#)
            .unwrap();
        let err = rows
            .push_json(r#"{"attempt_id":"a2","student_id":"s1","course_id":"c1","assessment_id":"q1","submitted_at":"2026-03-02T10:00:00Z"}"#)
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
