//! Other systems' learning records — xAPI statements, IMS Caliper events,
//! Open edX tracking-log events, Moodle standard-log rows — mapped to the
//! raw contract's activity events and assessment attempts (PRODUCT §3
//! "Other input formats"; the mapping tables are in docs/INPUTS.md, and the
//! tests below hold one example of each row of them).
//!
//! A record maps to at most one event and at most one attempt: every
//! student action is an event; one that carries a scored result (an xAPI
//! statement with `result.score`, a Caliper grade, an Open edX graded
//! problem check) is an attempt as well. A Caliper grade is the grader's
//! act, so it is an attempt only. An xAPI statement with the verb `voided`
//! is neither: it names a statement to remove. The event and the attempt
//! then go through the same checks as native rows (`Rows::push_activity`,
//! `Rows::push_attempt`).
//!
//! Each file is read twice, once per table: the activity pass quarantines
//! what is wrong with a record; the attempts pass keeps the attempts of
//! records whose event passed, and quarantines only what is wrong with an
//! attempt itself, so nothing is reported twice.

use std::borrow::Cow;
use std::collections::HashMap;
use std::sync::Arc;

use serde::Deserialize;
use serde_json::Value;
use serde_json::value::RawValue;
use sha2::Digest;

use super::Kind;
use super::checks::clip;
use super::columns::Rows;
use super::raw::{RawActivity, RawAttempt};
use crate::ingest::source::Dialect;

/// The largest record taken (an xAPI statement is a few KB; an envelope or
/// a line of statements a few hundred): a bigger one is quarantined.
pub const MAX_RECORD_BYTES: usize = 4 << 20;

/// How institutions' records differ, with defaults that fit most (the
/// `[inputs]` section of the config).
#[derive(Clone, Debug)]
pub struct Mapping {
    /// Where an xAPI statement names its course.
    pub xapi_course: XapiCourse,
    /// How ids are taken from IRIs (courses, activities, Caliper actors).
    pub ids: IdStyle,
    /// Actor identifiers mapped to student ids, looked up before any other
    /// rule: `mailto:` addresses, mbox_sha1sums, openids, `homePage|name`
    /// accounts (xAPI), actor IRIs (Caliper), usernames (Open edX).
    pub actors: Arc<HashMap<String, String>>,
    /// Which Open edX field is the student id.
    pub openedx_student: OpenEdxStudent,
    /// Prefix of Moodle event ids (`<site>-<log id>`): log ids are unique
    /// only within one Moodle site.
    pub moodle_site: String,
}

impl Default for Mapping {
    fn default() -> Self {
        Self {
            xapi_course: XapiCourse::Auto,
            ids: IdStyle::LastSegment,
            actors: Arc::default(),
            openedx_student: OpenEdxStudent::UserId,
            moodle_site: "moodle".into(),
        }
    }
}

/// Where an xAPI statement names its course.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum XapiCourse {
    /// The context activity (parent or grouping) whose type is a course;
    /// else the first grouping, else the first parent; else the object,
    /// when it is a course.
    Auto,
    /// The first `context.contextActivities.parent`.
    Parent,
    /// The first `context.contextActivities.grouping`.
    Grouping,
    /// The value of this `context.extensions` key (a string, or an object
    /// with an `id`).
    Extension(String),
}

impl XapiCourse {
    /// Reads `auto`, `parent`, `grouping` or `extension:<IRI>`.
    pub fn parse(text: &str) -> Result<Self, String> {
        match text {
            "auto" => Ok(Self::Auto),
            "parent" => Ok(Self::Parent),
            "grouping" => Ok(Self::Grouping),
            _ => match text.strip_prefix("extension:") {
                Some(iri) if !iri.is_empty() => Ok(Self::Extension(iri.to_string())),
                _ => Err(format!(
                    "{text:?} is not auto, parent, grouping or extension:<IRI>"
                )),
            },
        }
    }
}

/// How ids are taken from IRIs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum IdStyle {
    /// `https://lms.example.edu/courses/CS101/` → `CS101`: the codes the
    /// reference files (courses, assessments) use.
    LastSegment,
    /// The IRI as it is.
    Iri,
}

/// Which Open edX field is the student id.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OpenEdxStudent {
    /// `context.user_id` (the username when an event has none).
    UserId,
    /// `username`.
    Username,
}

/// Reads the actor lookup (`[inputs] actors`): a CSV file with the columns
/// `actor` and `student_id`.
pub fn read_actors(text: &[u8]) -> Result<HashMap<String, String>, String> {
    let mut reader = csv::ReaderBuilder::new()
        .trim(csv::Trim::All)
        .from_reader(text);
    let headers = reader
        .headers()
        .map_err(|e| format!("unreadable CSV header: {e}"))?
        .clone();
    let column = |name: &str| {
        headers
            .iter()
            .position(|h| h == name)
            .ok_or_else(|| format!("no {name:?} column; the header must be actor,student_id"))
    };
    let (actor, student) = (column("actor")?, column("student_id")?);
    let mut actors = HashMap::new();
    for (i, record) in reader.records().enumerate() {
        let record = record.map_err(|e| format!("line {}: {e}", i + 2))?;
        match (record.get(actor), record.get(student)) {
            (Some(a), Some(s)) if !a.is_empty() && !s.is_empty() => {
                if let Some(other) = actors.insert(a.to_string(), s.to_string())
                    && other != s
                {
                    return Err(format!(
                        "line {}: actor {a:?} is mapped twice ({other} and {s})",
                        i + 2
                    ));
                }
            }
            _ => return Err(format!("line {}: needs an actor and a student_id", i + 2)),
        }
    }
    Ok(actors)
}

/// What pushing one line of another system's records did.
#[derive(Debug, Default)]
pub struct Pushed {
    /// Reasons for the records refused (the whole line's when it is one
    /// record; prefixed with the record's position when it holds several).
    pub rejected: Vec<String>,
    /// Statement ids named by xAPI voiding statements.
    pub voids: Vec<String>,
    /// Records that make no row of this table (a Caliper grade or an
    /// envelope's entity in the activity pass, an anonymous Open edX page
    /// view, a Moodle guest action).
    pub skipped: u64,
}

/// One record, mapped.
#[derive(Debug, Default, Clone, PartialEq)]
struct Mapped {
    event: Option<Event>,
    attempt: Option<Result<Attempt, String>>,
    /// Set by an xAPI voiding statement: the id of the statement it voids.
    void: Option<String>,
}

/// An activity event in the raw contract's terms.
#[derive(Debug, Default, Clone, PartialEq)]
struct Event {
    event_id: String,
    student_id: String,
    timestamp: String,
    activity_type: String,
    activity_category: Option<&'static str>,
    course_id: Option<String>,
    lesson_id: Option<String>,
    quiz_id: Option<String>,
    assignment_id: Option<String>,
    resource_id: Option<String>,
    session_id: Option<String>,
    duration_seconds: Option<f64>,
    score: Option<f64>,
    success: Option<bool>,
    ip_address: Option<String>,
    /// A JSON object: where the event came from (format, verb, object).
    details: String,
}

/// An assessment attempt in the raw contract's terms.
#[derive(Debug, Default, Clone, PartialEq)]
struct Attempt {
    attempt_id: String,
    student_id: String,
    course_id: Option<String>,
    assessment_id: String,
    assessment_type: &'static str,
    started_at: Option<String>,
    submitted_at: String,
    score: f64,
    points_earned: Option<f64>,
    points_possible: Option<f64>,
    passed: Option<bool>,
    attempt_number: Option<i64>,
}

impl Rows {
    /// Maps one line of `dialect` records (one record, an array of them, an
    /// xAPI StatementResult or a Caliper envelope) and appends the rows this
    /// table takes from them.
    pub fn push_lms(&mut self, dialect: Dialect, line: &str) -> Pushed {
        let mut pushed = Pushed::default();
        if line.len() > MAX_RECORD_BYTES {
            if self.kind() != Kind::Activity {
                return pushed; // reported once, by the activity pass
            }
            pushed.rejected.push(format!(
                "record is {:.1} MB; records over {} MiB are refused (one statement or event is a few KB)",
                line.len() as f64 / 1e6,
                MAX_RECORD_BYTES >> 20
            ));
            return pushed;
        }
        if self.kind() == Kind::Attempts && !may_hold_attempt(dialect, line.as_bytes()) {
            return pushed;
        }
        let records = match dialect {
            Dialect::Xapi => xapi::records(line, self),
            Dialect::Caliper => caliper::records(line, self),
            Dialect::OpenEdx => vec![openedx::record(line, self)],
            Dialect::Moodle => vec![moodle::json_record(line, self)],
            Dialect::Native => vec![Err("native rows are not another system's records".into())],
        };
        let several = records.len() > 1;
        for (i, record) in records.into_iter().enumerate() {
            let at = |reason: String| {
                if several {
                    format!("record {i} of the line: {reason}")
                } else {
                    reason
                }
            };
            match record {
                Ok(mapped) => {
                    if let Err(reason) = self.take(mapped, &mut pushed) {
                        pushed.rejected.push(at(reason));
                    }
                }
                // What is wrong with the record itself is reported once,
                // by the activity pass.
                Err(reason) if self.kind() == Kind::Activity => pushed.rejected.push(at(reason)),
                Err(_) => {}
            }
        }
        pushed
    }

    /// Maps one Moodle CSV record (a `logstore_standard_log` row).
    pub fn push_lms_csv(
        &mut self,
        record: &csv::StringRecord,
        headers: &csv::StringRecord,
    ) -> Pushed {
        let mut pushed = Pushed::default();
        let fields: HashMap<&str, &str> = headers.iter().zip(record.iter()).collect();
        match moodle::record(&fields, self) {
            Ok(mapped) => {
                if let Err(reason) = self.take(mapped, &mut pushed) {
                    pushed.rejected.push(reason);
                }
            }
            Err(reason) => pushed.rejected.push(reason),
        }
        pushed
    }

    /// Appends what this table takes of one mapped record.
    fn take(&mut self, mapped: Mapped, pushed: &mut Pushed) -> Result<(), String> {
        if let Some(target) = mapped.void {
            pushed.voids.push(target);
            return Ok(());
        }
        match self.kind() {
            Kind::Activity => match &mapped.event {
                Some(event) => self.push_activity(event.raw()),
                None => {
                    pushed.skipped += 1;
                    Ok(())
                }
            },
            _ => {
                let Some(attempt) = mapped.attempt else {
                    return Ok(());
                };
                // An attempt is kept only with its event: a record whose
                // event the activity pass refused is reported there.
                if let Some(event) = &mapped.event
                    && self.push_activity(event.raw()).is_err()
                {
                    return Ok(());
                }
                let attempt = attempt?;
                let Some(course_id) = attempt.course_id.as_deref() else {
                    if mapped.event.is_some() {
                        // Its score stays with its event (activity.score);
                        // counted, and named in the run's warnings.
                        pushed.skipped += 1;
                        return Ok(());
                    }
                    return Err(format!(
                        "grade for {:?} names no course (group or membership), so it cannot be an attempt",
                        clip(&attempt.assessment_id)
                    ));
                };
                self.push_attempt(attempt.raw(course_id))
            }
        }
    }
}

impl Event {
    fn raw(&self) -> RawActivity<'_> {
        fn text(v: &Option<String>) -> Option<Cow<'_, str>> {
            v.as_deref().map(Cow::Borrowed)
        }
        RawActivity {
            event_id: Some(Cow::Borrowed(&self.event_id)),
            student_id: Some(Cow::Borrowed(&self.student_id)),
            timestamp: Some(Cow::Borrowed(&self.timestamp)),
            activity_type: Some(Cow::Borrowed(&self.activity_type)),
            activity_category: self.activity_category.map(Cow::Borrowed),
            course_id: text(&self.course_id),
            lesson_id: text(&self.lesson_id),
            quiz_id: text(&self.quiz_id),
            assignment_id: text(&self.assignment_id),
            resource_id: text(&self.resource_id),
            session_id: text(&self.session_id),
            duration_seconds: self.duration_seconds,
            interaction_count: None,
            progress: None,
            score: self.score,
            device_type: None,
            browser: None,
            os: None,
            device: None,
            ip_address: text(&self.ip_address),
            success: self.success,
            details: details(&self.details),
        }
    }
}

/// The details object as the raw row's borrowed JSON (built by this module,
/// so always an object).
fn details(json: &str) -> Option<&RawValue> {
    serde_json::from_str::<&RawValue>(json).ok()
}

impl Attempt {
    fn raw<'s>(&'s self, course_id: &'s str) -> RawAttempt<'s> {
        RawAttempt {
            attempt_id: Some(Cow::Borrowed(&self.attempt_id)),
            student_id: Some(Cow::Borrowed(&self.student_id)),
            course_id: Some(Cow::Borrowed(course_id)),
            assessment_id: Some(Cow::Borrowed(&self.assessment_id)),
            quiz_id: None,
            assessment_type: Some(Cow::Borrowed(self.assessment_type)),
            started_at: self.started_at.as_deref().map(Cow::Borrowed),
            submitted_at: Some(Cow::Borrowed(&self.submitted_at)),
            completed_at: None,
            score: Some(self.score),
            points_earned: self.points_earned,
            points_possible: self.points_possible,
            passing_score: None,
            passed: self.passed,
            attempt_number: self.attempt_number,
            is_practice: None,
            skill: None,
            answers: None,
            integrity_flags: None,
        }
    }
}

/// Whether text (a line, or a slice of lines) can hold an attempt or a
/// voiding statement: the attempts pass parses only those (most records
/// are neither).
pub fn may_hold_attempt(dialect: Dialect, text: &[u8]) -> bool {
    let has = |needle: &str| memchr::memmem::find(text, needle.as_bytes()).is_some();
    match dialect {
        Dialect::Xapi => has("\"score\"") || has("voided"),
        Dialect::Caliper => has("scoreGiven"),
        Dialect::OpenEdx => has("max_grade"),
        Dialect::Moodle | Dialect::Native => false,
    }
}

/// The last path segment of an IRI (`…/courses/CS101/` → `CS101`; also
/// after `#` and `:` for URNs and fragments); the text itself when it has
/// none.
pub fn last_segment(iri: &str) -> &str {
    let iri = iri.split(['?']).next().unwrap_or(iri);
    let iri = iri.trim_end_matches(['/', '#']);
    match iri.rfind(['/', '#']) {
        Some(i) if i + 1 < iri.len() => &iri[i + 1..],
        _ => match iri.rfind(':') {
            Some(i) if i + 1 < iri.len() && !iri.contains("//") => &iri[i + 1..],
            _ => iri,
        },
    }
}

impl Mapping {
    /// An id taken from an IRI, in the configured style.
    fn id(&self, iri: &str) -> String {
        match self.ids {
            IdStyle::LastSegment => last_segment(iri).to_string(),
            IdStyle::Iri => iri.to_string(),
        }
    }

    /// The id of `value[key]` (a string or an object's `id`), in the
    /// configured style.
    fn id_in(&self, value: &Value, key: &str) -> Option<String> {
        value.get(key).and_then(id_of).map(|iri| self.id(iri))
    }
}

/// A timestamp as RFC 3339: an offset written `+0000` gets its colon, and
/// one without an offset is UTC (xAPI's LRSs and Open edX write UTC).
fn rfc3339(text: &str) -> Cow<'_, str> {
    let b = text.as_bytes();
    let n = b.len();
    if n < 10 || b.last() == Some(&b'Z') || b.last() == Some(&b'z') {
        return Cow::Borrowed(text);
    }
    if n > 6 && matches!(b[n - 6], b'+' | b'-') && b[n - 3] == b':' {
        return Cow::Borrowed(text);
    }
    if n > 5 && matches!(b[n - 5], b'+' | b'-') && b[n - 4..].iter().all(u8::is_ascii_digit) {
        return Cow::Owned(format!("{}:{}", &text[..n - 2], &text[n - 2..]));
    }
    if text.contains('T') && n >= 19 {
        return Cow::Owned(format!("{text}Z"));
    }
    Cow::Borrowed(text)
}

/// Seconds of an ISO 8601 duration (`PT1H2M3.5S`, `P1DT2H`, `P2W`).
pub fn iso_duration(text: &str) -> Option<f64> {
    let rest = text.strip_prefix('P')?;
    if rest.is_empty() {
        return None;
    }
    let (mut seconds, mut number, mut in_time, mut any) = (0.0f64, String::new(), false, false);
    for c in rest.chars() {
        match c {
            '0'..='9' | '.' | ',' => number.push(if c == ',' { '.' } else { c }),
            'T' if !in_time && number.is_empty() => in_time = true,
            _ => {
                let value: f64 = number.parse().ok()?;
                number.clear();
                any = true;
                seconds += value
                    * match (c, in_time) {
                        ('Y', false) => 365.0 * 86_400.0,
                        ('M', false) => 30.0 * 86_400.0,
                        ('W', false) => 7.0 * 86_400.0,
                        ('D', false) => 86_400.0,
                        ('H', true) => 3_600.0,
                        ('M', true) => 60.0,
                        ('S', true) => 1.0,
                        _ => return None,
                    };
            }
        }
    }
    (number.is_empty() && any).then_some(seconds)
}

/// `numerator / denominator` as a percentage, for scores given as points.
fn percent(given: f64, min: f64, max: f64, what: &str) -> Result<f64, String> {
    if !(max > min) {
        return Err(format!(
            "{what}: maximum {max} is not above the minimum {min}, so the score cannot be a percentage"
        ));
    }
    // × 100 first: 9 of 10 is exactly 90, as a native score would be.
    let p = (given - min) * 100.0 / (max - min);
    if !(0.0..=100.0).contains(&p) {
        return Err(format!("{what}: {given} is outside its range {min}–{max}"));
    }
    Ok(p)
}

/// `text` as a JSON string (`null` for none), escaped.
fn json_text(text: Option<&str>) -> String {
    match text {
        Some(t) => serde_json::to_string(t).unwrap_or_else(|_| "null".into()),
        None => "null".into(),
    }
}

/// A short stable id for a record that carries none (Open edX): a hash of
/// its text, so the same line sent twice is one event.
fn text_id(prefix: &str, text: &str) -> String {
    let digest = sha2::Sha256::digest(text.as_bytes());
    format!("{prefix}-{}", hex::encode(&digest[..16]))
}

/// A string of a JSON value, or the `id` of an object.
fn id_of(value: &Value) -> Option<&str> {
    match value {
        Value::String(s) => Some(s.as_str()),
        Value::Object(o) => o.get("id").and_then(Value::as_str),
        _ => None,
    }
    .filter(|s| !s.is_empty())
}

fn str_of<'v>(value: &'v Value, key: &str) -> Option<&'v str> {
    value
        .get(key)
        .and_then(Value::as_str)
        .filter(|s| !s.is_empty())
}

/// A number, also when written as a string (Open edX and Moodle write both).
fn number(value: Option<&Value>) -> Option<f64> {
    match value? {
        Value::Number(n) => n.as_f64(),
        Value::String(s) => s.trim().parse().ok(),
        _ => None,
    }
}

mod xapi;

mod caliper;

mod openedx;

mod moodle;

#[cfg(test)]
mod tests;
