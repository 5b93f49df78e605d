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
    let mut reader = csv::ReaderBuilder::new().trim(csv::Trim::All).from_reader(text);
    let headers = reader
        .headers()
        .map_err(|e| format!("unreadable CSV header: {e}"))?
        .clone();
    let column = |name: &str| {
        headers.iter().position(|h| h == name).ok_or_else(|| {
            format!("no {name:?} column; the header must be actor,student_id")
        })
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
        if self.kind() == Kind::Attempts && !may_hold_attempt(dialect, line) {
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

/// Whether a line can hold an attempt or a voiding statement: the attempts
/// pass parses only those (most records are neither).
fn may_hold_attempt(dialect: Dialect, line: &str) -> bool {
    let has = |needle: &str| memchr::memmem::find(line.as_bytes(), needle.as_bytes()).is_some();
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
        return Err(format!(
            "{what}: {given} is outside its range {min}–{max}"
        ));
    }
    Ok(p)
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
    value.get(key).and_then(Value::as_str).filter(|s| !s.is_empty())
}

/// A number, also when written as a string (Open edX and Moodle write both).
fn number(value: Option<&Value>) -> Option<f64> {
    match value? {
        Value::Number(n) => n.as_f64(),
        Value::String(s) => s.trim().parse().ok(),
        _ => None,
    }
}

mod xapi {
    //! xAPI statements (IEEE 9274.1.1): `actor` → student_id, `verb.id` →
    //! activity_type, the course's context activity → course_id,
    //! `result.score` → score (and an attempt), `result.duration` →
    //! duration_seconds, `id` → event_id; `verb` voided removes a statement.

    use super::*;

    #[derive(Deserialize)]
    pub(super) struct Statement<'a> {
        #[serde(borrow, default)]
        id: Option<Cow<'a, str>>,
        #[serde(borrow, default)]
        actor: Option<Agent<'a>>,
        #[serde(borrow, default)]
        verb: Option<Verb<'a>>,
        #[serde(borrow, default)]
        object: Option<Object<'a>>,
        #[serde(borrow, default)]
        result: Option<Outcome<'a>>,
        #[serde(borrow, default)]
        context: Option<Context<'a>>,
        #[serde(borrow, default)]
        timestamp: Option<Cow<'a, str>>,
        #[serde(borrow, default)]
        stored: Option<Cow<'a, str>>,
        /// A StatementResult (`{"statements": […], "more": …}`) holds statements.
        #[serde(borrow, default)]
        statements: Option<Vec<&'a RawValue>>,
    }

    #[derive(Deserialize, Default)]
    struct Agent<'a> {
        #[serde(borrow, default, rename = "objectType")]
        object_type: Option<Cow<'a, str>>,
        #[serde(borrow, default)]
        mbox: Option<Cow<'a, str>>,
        #[serde(borrow, default)]
        mbox_sha1sum: Option<Cow<'a, str>>,
        #[serde(borrow, default)]
        openid: Option<Cow<'a, str>>,
        #[serde(borrow, default)]
        account: Option<Account<'a>>,
        /// A Group's members.
        #[serde(borrow, default)]
        member: Option<Vec<Agent<'a>>>,
    }

    #[derive(Deserialize, Default)]
    struct Account<'a> {
        #[serde(borrow, default, rename = "homePage")]
        home_page: Option<Cow<'a, str>>,
        #[serde(borrow, default)]
        name: Option<Cow<'a, str>>,
    }

    #[derive(Deserialize)]
    struct Verb<'a> {
        #[serde(borrow, default)]
        id: Option<Cow<'a, str>>,
    }

    #[derive(Deserialize)]
    struct Object<'a> {
        #[serde(borrow, default, rename = "objectType")]
        object_type: Option<Cow<'a, str>>,
        #[serde(borrow, default)]
        id: Option<Cow<'a, str>>,
        #[serde(borrow, default)]
        definition: Option<Definition<'a>>,
    }

    #[derive(Deserialize, Clone)]
    struct Definition<'a> {
        #[serde(borrow, default, rename = "type")]
        kind: Option<Cow<'a, str>>,
    }

    #[derive(Deserialize)]
    struct Outcome<'a> {
        #[serde(default)]
        score: Option<Score>,
        #[serde(default)]
        success: Option<bool>,
        #[serde(borrow, default)]
        duration: Option<Cow<'a, str>>,
    }

    #[derive(Deserialize)]
    struct Score {
        #[serde(default)]
        scaled: Option<f64>,
        #[serde(default)]
        raw: Option<f64>,
        #[serde(default)]
        min: Option<f64>,
        #[serde(default)]
        max: Option<f64>,
    }

    #[derive(Deserialize)]
    struct Context<'a> {
        #[serde(borrow, default)]
        registration: Option<Cow<'a, str>>,
        #[serde(borrow, default, rename = "contextActivities")]
        activities: Option<ContextActivities<'a>>,
        #[serde(borrow, default)]
        extensions: Option<&'a RawValue>,
    }

    #[derive(Deserialize)]
    struct ContextActivities<'a> {
        #[serde(borrow, default)]
        parent: Option<OneOrMany<'a>>,
        #[serde(borrow, default)]
        grouping: Option<OneOrMany<'a>>,
    }

    /// xAPI 1.0 allowed one object where 1.0.3 asks for an array.
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum OneOrMany<'a> {
        #[serde(borrow)]
        Many(Vec<ActivityRef<'a>>),
        #[serde(borrow)]
        One(ActivityRef<'a>),
    }

    impl<'a> OneOrMany<'a> {
        fn items(&self) -> &[ActivityRef<'a>] {
            match self {
                OneOrMany::Many(v) => v,
                OneOrMany::One(one) => std::slice::from_ref(one),
            }
        }
    }

    #[derive(Deserialize)]
    struct ActivityRef<'a> {
        #[serde(borrow, default)]
        id: Option<Cow<'a, str>>,
        #[serde(borrow, default)]
        definition: Option<Definition<'a>>,
    }

    impl ActivityRef<'_> {
        fn type_segment(&self) -> Option<&str> {
            self.definition
                .as_ref()
                .and_then(|d| d.kind.as_deref())
                .map(last_segment)
        }
    }

    const CMI5_SESSION: &str = "https://w3id.org/xapi/cmi5/context/extensions/sessionid";

    /// The statements of one line: a statement, an array of them or a
    /// StatementResult.
    pub(super) fn records(line: &str, rows: &mut Rows) -> Vec<Result<Mapped, String>> {
        let text = line.trim_start();
        if text.starts_with('[') {
            return match serde_json::from_str::<Vec<&RawValue>>(text) {
                Ok(items) => items.iter().flat_map(|s| statement(s.get(), rows)).collect(),
                Err(e) => vec![Err(format!("malformed JSON: {e}"))],
            };
        }
        match serde_json::from_str::<Statement>(text) {
            Ok(s) if s.statements.is_some() && s.actor.is_none() => s
                .statements
                .unwrap_or_default()
                .iter()
                .flat_map(|s| statement(s.get(), rows))
                .collect(),
            Ok(s) => by_member(s, rows),
            Err(e) => vec![Err(reason(text, e))],
        }
    }

    fn statement(text: &str, rows: &mut Rows) -> Vec<Result<Mapped, String>> {
        if !text.trim_start().starts_with('{') {
            return vec![Err(format!(
                "not an xAPI statement: expected a JSON object, found {}",
                clip(text.trim_start())
            ))];
        }
        match serde_json::from_str::<Statement>(text) {
            Ok(s) => by_member(s, rows),
            Err(e) => vec![Err(reason(text, e))],
        }
    }

    /// A statement whose actor is a Group with members is each member's
    /// (event and attempt ids get `#<member>`): learnlake's rows are one
    /// person's. A Group without members is refused.
    fn by_member(mut s: Statement, rows: &mut Rows) -> Vec<Result<Mapped, String>> {
        let members = match s.actor.as_mut() {
            Some(actor) if actor.object_type.as_deref() == Some("Group") => {
                match actor.member.take().filter(|m| !m.is_empty()) {
                    Some(members) => members,
                    None => {
                        return vec![Err(
                            "actor is a Group without members; learnlake needs the people a statement is about"
                                .into(),
                        )];
                    }
                }
            }
            _ => return vec![map(&s, rows)],
        };
        members
            .into_iter()
            .enumerate()
            .map(|(i, member)| {
                s.actor = Some(member);
                let mut mapped = map(&s, rows)?;
                if let Some(event) = &mut mapped.event {
                    event.event_id = format!("{}#{i}", event.event_id);
                }
                if let Some(Ok(attempt)) = &mut mapped.attempt {
                    attempt.attempt_id = format!("{}#{i}", attempt.attempt_id);
                }
                Ok(mapped)
            })
            .collect()
    }

    /// Why a statement could not be read, naming the field when serde can.
    fn reason(text: &str, e: serde_json::Error) -> String {
        if e.is_syntax() || e.is_eof() {
            return format!("malformed JSON: {e}");
        }
        let mut de = serde_json::Deserializer::from_str(text);
        match serde_path_to_error::deserialize::<_, Statement>(&mut de) {
            Err(e) => format!("statement field {}: {}", e.path(), e.inner()),
            Ok(_) => format!("not an xAPI statement: {e}"),
        }
    }

    fn map(s: &Statement, rows: &mut Rows) -> Result<Mapped, String> {
        let mapping = rows.mapping.clone();
        let verb = s
            .verb
            .as_ref()
            .and_then(|v| v.id.as_deref())
            .filter(|v| !v.is_empty())
            .ok_or("statement has no verb.id")?;
        let object = s.object.as_ref().ok_or("statement has no object")?;
        let object_type = object.object_type.as_deref().unwrap_or("Activity");
        if last_segment(verb) == "voided" {
            if object_type != "StatementRef" {
                return Err(
                    "voiding statement's object is not a StatementRef naming the statement it voids"
                        .into(),
                );
            }
            let target = object
                .id
                .as_deref()
                .filter(|t| !t.is_empty())
                .ok_or("voiding statement's StatementRef has no id")?;
            return Ok(Mapped {
                void: Some(target.to_string()),
                ..Mapped::default()
            });
        }
        let student_id = student(s.actor.as_ref(), rows)?;
        let timestamp = s
            .timestamp
            .as_deref()
            .or(s.stored.as_deref())
            .filter(|t| !t.is_empty())
            .ok_or("statement has neither timestamp nor stored")?;
        let timestamp = rfc3339(timestamp).into_owned();
        let event_id = match s.id.as_deref().filter(|i| !i.is_empty()) {
            Some(id) => id.to_string(),
            None => return Err("statement has no id (an LRS gives every statement one)".into()),
        };
        let role = Role::of(
            object
                .definition
                .as_ref()
                .and_then(|d| d.kind.as_deref())
                .map(last_segment),
        );
        let object_id = object.id.as_deref().filter(|i| !i.is_empty());
        let course_id = course(s.context.as_ref(), &mapping)?.or_else(|| {
            (role == Role::Course)
                .then_some(object_id)
                .flatten()
                .map(|id| mapping.id(id))
        });
        let (activity_type, category) = activity_type(verb, role);
        let result = s.result.as_ref();
        let duration_seconds = match result.and_then(|r| r.duration.as_deref()) {
            None => None,
            Some(d) => Some(iso_duration(d).ok_or_else(|| {
                format!("result.duration {:?} is not an ISO 8601 duration like PT4M30S", clip(d))
            })?),
        };
        let score = match result.and_then(|r| r.score.as_ref()) {
            None => None,
            Some(score) => Some(percentage(score)?),
        };
        let session_id = s.context.as_ref().and_then(|c| {
            c.extensions
                .filter(|e| e.get().contains(CMI5_SESSION))
                .and_then(|e| serde_json::from_str::<HashMap<&str, Value>>(e.get()).ok())
                .and_then(|e| e.get(CMI5_SESSION).and_then(Value::as_str).map(str::to_string))
                .or_else(|| c.registration.as_deref().map(str::to_string))
        });
        let object_short = object_id.map(|id| mapping.id(id));
        let mut event = Event {
            event_id,
            student_id,
            timestamp,
            activity_type: activity_type.into_owned(),
            activity_category: category,
            course_id,
            session_id,
            duration_seconds,
            score,
            success: result.and_then(|r| r.success),
            details: serde_json::json!({
                "source": "xapi",
                "verb": verb,
                "object": object_id,
            })
            .to_string(),
            ..Event::default()
        };
        match role {
            Role::Assessment | Role::Exam => event.quiz_id = object_short.clone(),
            Role::Assignment => event.assignment_id = object_short.clone(),
            Role::Lesson => event.lesson_id = object_short.clone(),
            Role::Course | Role::Question => {}
            Role::Media | Role::Resource | Role::Other => event.resource_id = object_short.clone(),
        }
        let scored_attempt = score.is_some()
            && last_segment(verb) != "answered"
            && role != Role::Question
            && object_type == "Activity";
        let attempt = scored_attempt.then(|| {
            let raw = result.and_then(|r| r.score.as_ref());
            Ok(Attempt {
                attempt_id: event.event_id.clone(),
                student_id: event.student_id.clone(),
                course_id: event.course_id.clone(),
                assessment_id: object_short.clone().ok_or("a scored statement's object has no id")?,
                assessment_type: match role {
                    Role::Assignment => "assignment",
                    Role::Exam => "exam",
                    _ => "quiz",
                },
                started_at: started_at(&event.timestamp, duration_seconds),
                submitted_at: event.timestamp.clone(),
                score: score.unwrap_or_default(),
                points_earned: raw.and_then(|s| s.raw),
                points_possible: raw.and_then(|s| s.raw.and(s.max)),
                passed: event.success,
                attempt_number: None,
            })
        });
        Ok(Mapped {
            event: Some(event),
            attempt,
            void: None,
        })
    }

    /// The submission time less the time it took, when both are known.
    fn started_at(submitted: &str, seconds: Option<f64>) -> Option<String> {
        let end = chrono::DateTime::parse_from_rfc3339(submitted).ok()?;
        let took = chrono::Duration::milliseconds((seconds? * 1000.0) as i64);
        Some((end - took).to_rfc3339_opts(chrono::SecondsFormat::Millis, true))
    }

    /// `result.score` as 0–100: `scaled` × 100, else `raw` within
    /// `min`–`max`, else `raw` when it is already 0–100.
    fn percentage(score: &Score) -> Result<f64, String> {
        if let Some(scaled) = score.scaled {
            if !(0.0..=1.0).contains(&scaled) {
                return Err(format!(
                    "result.score.scaled {scaled} is outside 0–1 (learnlake keeps scores as 0–100)"
                ));
            }
            return Ok(scaled * 100.0);
        }
        match (score.raw, score.max) {
            (Some(raw), Some(max)) => percent(raw, score.min.unwrap_or(0.0), max, "result.score.raw"),
            (Some(raw), None) if (0.0..=100.0).contains(&raw) => Ok(raw),
            (Some(raw), None) => Err(format!(
                "result.score.raw {raw} has no max, so it cannot be read as a percentage"
            )),
            (None, _) => Err("result.score has neither scaled nor raw".into()),
        }
    }

    /// The student an actor is: the configured lookup, else an account's
    /// name, else a keyed hash of the mailbox (mbox and mbox_sha1sum give
    /// the same id) or openid. Raw addresses are never kept.
    fn student(actor: Option<&Agent>, rows: &mut Rows) -> Result<String, String> {
        let actor = actor.ok_or("statement has no actor")?;
        let lookup = &rows.mapping.actors;
        if !lookup.is_empty() {
            let account = actor.account.as_ref().map(|a| {
                format!(
                    "{}|{}",
                    a.home_page.as_deref().unwrap_or_default(),
                    a.name.as_deref().unwrap_or_default()
                )
            });
            let keys = [
                actor.mbox.as_deref(),
                actor.mbox_sha1sum.as_deref(),
                actor.openid.as_deref(),
                account.as_deref(),
                actor.account.as_ref().and_then(|a| a.name.as_deref()),
            ];
            if let Some(id) = keys.into_iter().flatten().find_map(|k| lookup.get(k)) {
                return Ok(id.clone());
            }
        }
        if let Some(name) = actor
            .account
            .as_ref()
            .and_then(|a| a.name.as_deref())
            .filter(|n| !n.is_empty())
        {
            return Ok(name.to_string());
        }
        let hashed = if let Some(mbox) = actor.mbox.as_deref().filter(|m| !m.is_empty()) {
            Some(hex::encode(sha1::Sha1::digest(mbox.as_bytes())))
        } else {
            actor
                .mbox_sha1sum
                .as_deref()
                .filter(|m| !m.is_empty())
                .map(str::to_ascii_lowercase)
        };
        let (prefix, secret) = match (hashed, actor.openid.as_deref().filter(|o| !o.is_empty())) {
            (Some(sha1), _) => ("mbox", format!("xapi-mbox:{sha1}")),
            (None, Some(openid)) => ("openid", format!("xapi-openid:{openid}")),
            (None, None) => {
                return Err(
                    "statement has no actor identifier (account, mbox, mbox_sha1sum or openid)"
                        .into(),
                );
            }
        };
        let hasher = rows.hasher.as_mut().ok_or(
            "actor is known only by an e-mail address or openid, which learnlake stores only as a keyed hash: set LEARNLAKE_HASH_KEY (or map actors to student ids in [inputs] actors)",
        )?;
        Ok(format!("{prefix}-{}", &hasher.hash(&secret)[..32]))
    }

    fn course(context: Option<&Context>, mapping: &Mapping) -> Result<Option<String>, String> {
        let Some(context) = context else {
            return Ok(None);
        };
        let empty: &[ActivityRef] = &[];
        let activities = context.activities.as_ref();
        let parent = activities
            .and_then(|a| a.parent.as_ref())
            .map_or(empty, OneOrMany::items);
        let grouping = activities
            .and_then(|a| a.grouping.as_ref())
            .map_or(empty, OneOrMany::items);
        let id = |a: &ActivityRef| a.id.as_deref().filter(|i| !i.is_empty()).map(|i| mapping.id(i));
        Ok(match &mapping.xapi_course {
            XapiCourse::Auto => parent
                .iter()
                .chain(grouping)
                .find(|a| a.type_segment() == Some("course"))
                .or(grouping.first())
                .or(parent.first())
                .and_then(id),
            XapiCourse::Parent => parent.first().and_then(id),
            XapiCourse::Grouping => grouping.first().and_then(id),
            XapiCourse::Extension(key) => match context.extensions {
                None => None,
                Some(e) => {
                    let extensions: HashMap<&str, Value> = serde_json::from_str(e.get())
                        .map_err(|e| format!("context.extensions is not an object: {e}"))?;
                    extensions.get(key.as_str()).and_then(id_of).map(|i| mapping.id(i))
                }
            },
        })
    }

    /// What the statement's object is, from its activity type's last segment.
    #[derive(Clone, Copy, Debug, PartialEq, Eq)]
    pub(super) enum Role {
        Assessment,
        Exam,
        Assignment,
        Question,
        Lesson,
        Course,
        Media,
        Resource,
        Other,
    }

    impl Role {
        pub(super) fn of(segment: Option<&str>) -> Role {
            match segment.map(str::to_ascii_lowercase).as_deref() {
                Some("assessment" | "quiz" | "test") => Role::Assessment,
                Some("exam") => Role::Exam,
                Some("assignment") => Role::Assignment,
                Some("cmi.interaction" | "question" | "interaction") => Role::Question,
                Some("lesson" | "module" | "unit" | "chapter" | "section" | "simulation") => {
                    Role::Lesson
                }
                Some("course") => Role::Course,
                Some("video" | "audio" | "media") => Role::Media,
                Some("file" | "link" | "document" | "resource" | "book" | "page" | "webpage") => {
                    Role::Resource
                }
                _ => Role::Other,
            }
        }
    }

    /// The contract's activity_type for a verb (by its IRI's last segment)
    /// on an object of `role`; unknown verbs keep their last segment.
    pub(super) fn activity_type(verb: &str, role: Role) -> (Cow<'_, str>, Option<&'static str>) {
        let segment = last_segment(verb);
        let known = match (segment, role) {
            ("launched" | "initialized" | "attempted", Role::Assessment | Role::Exam) => {
                "quiz_start"
            }
            ("launched" | "initialized" | "attempted", _) => "lesson_start",
            ("completed", Role::Assessment | Role::Exam) => "quiz_submit",
            ("completed", Role::Assignment) => "assignment_submit",
            ("completed", Role::Media) => "video_complete",
            ("completed", _) => "lesson_complete",
            ("passed" | "failed" | "scored" | "submitted", Role::Assignment) => {
                "assignment_submit"
            }
            ("passed" | "failed" | "scored" | "submitted", _) => "quiz_submit",
            ("experienced" | "viewed" | "accessed" | "read" | "visited", Role::Resource) => {
                "resource_view"
            }
            ("experienced" | "viewed" | "accessed" | "read" | "visited", _) => "content_view",
            ("downloaded", _) => "resource_download",
            ("played", _) => "video_play",
            ("logged-in" | "loggedin" | "logged_in" | "login", _) => "login",
            ("logged-out" | "loggedout" | "logged_out" | "logout", _) => "logout",
            ("commented" | "posted" | "replied" | "responded", _) => "forum_post",
            ("asked", _) => "help_requested",
            ("earned" | "achieved" | "awarded", _) => "achievement_earned",
            ("answered", _) => return (Cow::Borrowed("answered"), Some("assessment")),
            ("paused" | "seeked" | "resumed", Role::Media) => {
                return (Cow::Borrowed(segment), Some("learning"));
            }
            _ => return (Cow::Borrowed(segment), None),
        };
        (Cow::Borrowed(known), None)
    }
}

mod caliper {
    //! IMS Caliper 1.1/1.2 events, alone, in arrays or in envelopes
    //! (`{"sensor", "sendTime", "dataVersion", "data": […]}`): `actor` →
    //! student_id, `action` (and the object's type) → activity_type,
    //! `eventTime` → timestamp, `group` / `membership.organization` →
    //! course_id, `session` → session_id, `id` → event_id. A GradeEvent's
    //! `generated` Score (`scoreGiven` / `maxScore`) is an attempt of the
    //! Attempt it grades (its assignee and assignable).

    use super::*;

    pub(super) fn records(line: &str, rows: &mut Rows) -> Vec<Result<Mapped, String>> {
        let value: Value = match serde_json::from_str(line) {
            Ok(v) => v,
            Err(e) => return vec![Err(format!("malformed JSON: {e}"))],
        };
        let items: Vec<&Value> = match &value {
            Value::Array(items) => items.iter().collect(),
            Value::Object(o) if o.get("data").is_some_and(Value::is_array) => o["data"]
                .as_array()
                .map(|d| d.iter().collect())
                .unwrap_or_default(),
            other => vec![other],
        };
        items.into_iter().map(|e| event(e, rows)).collect()
    }

    fn is_event(value: &Value) -> bool {
        value.get("action").is_some()
            || str_of(value, "type").is_some_and(|t| last_segment(t).ends_with("Event"))
    }

    fn event(e: &Value, rows: &mut Rows) -> Result<Mapped, String> {
        if !e.is_object() {
            return Err("not a Caliper event: expected a JSON object".into());
        }
        if !is_event(e) {
            // An envelope's described entity (a Person, a CourseSection).
            return Ok(Mapped::default());
        }
        let mapping = rows.mapping.clone();
        let kind = str_of(e, "type").map(last_segment).unwrap_or("Event");
        let action = str_of(e, "action")
            .map(last_segment)
            .ok_or("event has no action")?;
        let timestamp = str_of(e, "eventTime").ok_or("event has no eventTime")?;
        let timestamp = rfc3339(timestamp).into_owned();
        let event_id = match str_of(e, "id") {
            Some(id) => id.to_string(),
            None => text_id("caliper", &e.to_string()),
        };
        let object = e.get("object").unwrap_or(&Value::Null);
        let object_type = str_of(object, "type").map(last_segment).unwrap_or("");
        let course_id = e
            .get("group")
            .and_then(id_of)
            .or_else(|| e.get("membership").and_then(|m| m.get("organization")).and_then(id_of))
            .map(|c| mapping.id(c));
        let session_id = e.get("session").and_then(id_of).map(|s| mapping.id(s));
        let generated = e.get("generated").unwrap_or(&Value::Null);

        if kind == "GradeEvent" || action == "Graded" {
            let student = object
                .get("assignee")
                .and_then(id_of)
                .ok_or("grade event's object (the Attempt) has no assignee")?;
            let student_id = actor_student(student, &mapping);
            let attempt = (|| {
                let assessment = object
                    .get("assignable")
                    .and_then(id_of)
                    .ok_or("grade event's Attempt has no assignable (the assessment)")?;
                let given = number(generated.get("scoreGiven"))
                    .ok_or("grade event has no generated.scoreGiven")?;
                let max = number(generated.get("maxScore"))
                    .ok_or("grade event has no generated.maxScore")?;
                let assignable_type = object
                    .get("assignable")
                    .and_then(|a| str_of(a, "type"))
                    .unwrap_or("");
                Ok(Attempt {
                    attempt_id: id_of(object).map_or_else(|| event_id.clone(), str::to_string),
                    student_id: student_id.clone(),
                    course_id: course_id.clone(),
                    assessment_id: mapping.id(assessment),
                    assessment_type: if assignable_type == "AssignableDigitalResource" {
                        "assignment"
                    } else {
                        "quiz"
                    },
                    started_at: str_of(object, "startedAtTime").map(|t| rfc3339(t).into_owned()),
                    submitted_at: str_of(object, "endedAtTime")
                        .map_or_else(|| timestamp.clone(), |t| rfc3339(t).into_owned()),
                    score: percent(given, 0.0, max, "generated.scoreGiven")?,
                    points_earned: Some(given),
                    points_possible: Some(max),
                    passed: None,
                    attempt_number: number(object.get("count")).map(|n| n as i64),
                })
            })();
            return Ok(Mapped {
                event: None,
                attempt: Some(attempt),
                void: None,
            });
        }

        let actor = e.get("actor").and_then(id_of).ok_or("event has no actor")?;
        let student_id = actor_student(actor, &mapping);
        let (activity_type, category) = activity_type(action, object_type);
        let object_id = id_of(object).map(|o| mapping.id(o));
        let mut event = Event {
            event_id,
            student_id,
            timestamp,
            activity_type: activity_type.into_owned(),
            activity_category: category,
            course_id,
            session_id,
            // The Attempt's time taken (an object's own `duration` is a
            // video's length, not time spent).
            duration_seconds: str_of(generated, "duration").and_then(iso_duration),
            details: serde_json::json!({
                "source": "caliper",
                "type": kind,
                "action": action,
                "object": id_of(object),
            })
            .to_string(),
            ..Event::default()
        };
        match object_type {
            "Assessment" => event.quiz_id = object_id,
            "AssessmentItem" => {
                event.quiz_id = object
                    .get("isPartOf")
                    .and_then(id_of)
                    .map(|p| mapping.id(p))
                    .or(object_id)
            }
            "AssignableDigitalResource" => event.assignment_id = object_id,
            "Attempt" => {
                event.quiz_id = object
                    .get("assignable")
                    .and_then(id_of)
                    .map(|p| mapping.id(p))
            }
            "CourseSection" | "CourseOffering" | "Group" | "Organization" | "SoftwareApplication"
            | "Person" => {}
            _ if event.activity_type.starts_with("lesson_") => event.lesson_id = object_id,
            _ => event.resource_id = object_id,
        }
        Ok(Mapped {
            event: Some(event),
            attempt: None,
            void: None,
        })
    }

    /// A Caliper actor (an IRI) as a student id: the configured lookup,
    /// else the IRI in the configured id style.
    fn actor_student(actor: &str, mapping: &Mapping) -> String {
        match mapping.actors.get(actor) {
            Some(id) => id.clone(),
            None => mapping.id(actor),
        }
    }

    /// The contract's activity_type for an action on an object type;
    /// unknown actions keep their name.
    pub(super) fn activity_type<'a>(
        action: &'a str,
        object_type: &str,
    ) -> (Cow<'a, str>, Option<&'static str>) {
        let media = matches!(
            object_type,
            "MediaObject" | "VideoObject" | "AudioObject" | "MediaLocation"
        );
        let known = match action {
            "LoggedIn" => "login",
            "LoggedOut" => "logout",
            "NavigatedTo" | "Viewed" => "content_view",
            "Started" | "Restarted" if object_type == "Assessment" => "quiz_start",
            "Started" | "Resumed" if media => "video_play",
            "Started" => "lesson_start",
            "Submitted" if object_type == "AssignableDigitalResource" => "assignment_submit",
            "Submitted" => "quiz_submit",
            "Completed" if object_type == "AssessmentItem" => {
                return (Cow::Borrowed("answered"), Some("assessment"));
            }
            "Completed" if object_type == "Assessment" => "quiz_submit",
            "Ended" | "Completed" if media => "video_complete",
            "Completed" => "lesson_complete",
            "Posted" | "Commented" | "Replied" => "forum_post",
            "Downloaded" => "resource_download",
            "Paused" | "Resumed" | "JumpedTo" | "ForwardedTo" if media => {
                return (Cow::Borrowed(action), Some("learning"));
            }
            _ => return (Cow::Borrowed(action), None),
        };
        (Cow::Borrowed(known), None)
    }
}

mod openedx {
    //! Open edX tracking-log events (one JSON object per line): the user →
    //! student_id, `event_type` → activity_type, `context.course_id` →
    //! course_id, `time` → timestamp, `session` → session_id; a server
    //! `problem_check` with a grade is an attempt. Tracking logs carry no
    //! event id: a hash of the line is it.

    use super::*;

    pub(super) fn record(line: &str, rows: &mut Rows) -> Result<Mapped, String> {
        let e: Value = serde_json::from_str(line).map_err(|e| format!("malformed JSON: {e}"))?;
        if !e.is_object() {
            return Err("not an Open edX event: expected a JSON object".into());
        }
        let mapping = rows.mapping.clone();
        let context = e.get("context").unwrap_or(&Value::Null);
        // Classic tracking logs put these at the top; the newer shape (the
        // event bus's, with `name`, `timestamp` and `data`) in `context`.
        let top_or_context = |key: &str| str_of(&e, key).or_else(|| str_of(context, key));
        let username = e
            .get("username")
            .and_then(Value::as_str)
            .or_else(|| context.get("username").and_then(Value::as_str));
        let user_id = match context.get("user_id") {
            Some(Value::Number(n)) => Some(n.to_string()),
            Some(Value::String(s)) if !s.is_empty() => Some(s.clone()),
            _ => None,
        };
        if username.is_none() && user_id.is_none() {
            return Err("event has no user (username or context.user_id)".into());
        }
        let looked_up = username.and_then(|u| mapping.actors.get(u)).cloned();
        let student_id = match (looked_up, mapping.openedx_student) {
            (Some(id), _) => id,
            (None, OpenEdxStudent::UserId) => match user_id {
                Some(id) => id,
                None => username.unwrap_or_default().to_string(),
            },
            (None, OpenEdxStudent::Username) => username.unwrap_or_default().to_string(),
        };
        if student_id.is_empty() {
            // A visitor who is not logged in: not a student's activity.
            return Ok(Mapped::default());
        }
        let event_type = str_of(&e, "event_type")
            .or_else(|| str_of(&e, "name"))
            .ok_or("event has no event_type")?;
        let time = str_of(&e, "time")
            .or_else(|| str_of(&e, "timestamp"))
            .ok_or("event has no time")?;
        let timestamp = rfc3339(time).into_owned();
        // Browser events carry their data as a JSON string.
        let data: Value = match e.get("event").or_else(|| e.get("data")) {
            Some(Value::String(s)) => serde_json::from_str(s).unwrap_or(Value::Null),
            Some(other) => other.clone(),
            None => Value::Null,
        };
        let server = top_or_context("event_source") == Some("server");
        let course_id = str_of(context, "course_id").map(str::to_string);
        let (activity_type, category) = activity_type(event_type, server);
        let mut event = Event {
            event_id: text_id("openedx", line.trim()),
            student_id,
            timestamp,
            activity_type: activity_type.to_string(),
            activity_category: category,
            course_id,
            session_id: top_or_context("session").map(str::to_string),
            ip_address: top_or_context("ip").map(str::to_string),
            details: serde_json::json!({
                "source": "openedx",
                "event_type": event_type,
                "event_source": top_or_context("event_source"),
            })
            .to_string(),
            ..Event::default()
        };
        let problem = str_of(&data, "problem_id").map(str::to_string);
        match activity_type {
            "quiz_submit" | "help_requested" if problem.is_some() => event.quiz_id = problem.clone(),
            "video_play" | "video_complete" | "pause_video" | "seek_video" => {
                event.resource_id = str_of(&data, "id").map(str::to_string)
            }
            "content_view" => {
                event.resource_id = str_of(&data, "id")
                    .or(str_of(&data, "target_name"))
                    .map(str::to_string)
                    .or_else(|| event_type.starts_with('/').then(|| event_type.to_string()))
            }
            _ => {}
        }
        let graded = event_type == "problem_check" && server && data.get("max_grade").is_some();
        let attempt = graded.then(|| -> Result<Attempt, String> {
            let max = number(data.get("max_grade")).ok_or("event.max_grade is not a number")?;
            let given = number(data.get("grade")).ok_or("graded problem has no grade")?;
            let score = percent(given, 0.0, max, "event.grade")?;
            event.score = Some(score);
            Ok(Attempt {
                attempt_id: event.event_id.clone(),
                student_id: event.student_id.clone(),
                course_id: event.course_id.clone(),
                assessment_id: problem.clone().ok_or("graded problem has no problem_id")?,
                assessment_type: "quiz",
                started_at: None,
                submitted_at: event.timestamp.clone(),
                score,
                points_earned: Some(given),
                points_possible: Some(max),
                passed: match str_of(&data, "success") {
                    Some("correct") => Some(true),
                    Some("incorrect") => Some(false),
                    _ => None,
                },
                attempt_number: number(data.get("attempts")).map(|n| n as i64),
            })
        });
        if let Some(Err(reason)) = &attempt {
            return Err(reason.clone());
        }
        Ok(Mapped {
            event: Some(event),
            attempt,
            void: None,
        })
    }

    /// The contract's activity_type for an event type; unknown types are
    /// kept as they are (Open edX's names are not IRIs).
    pub(super) fn activity_type(event_type: &str, server: bool) -> (&str, Option<&'static str>) {
        let known = match event_type {
            "problem_check" if server => "quiz_submit",
            // The browser's copy of a check, and the grades service's
            // record of the same submission: the server's check is the one.
            "problem_check" | "edx.grades.problem.submitted" => {
                return (event_type, Some("assessment"));
            }
            "play_video" | "edx.video.played" => "video_play",
            "complete_video" | "edx.video.completed" | "stop_video" | "edx.video.stopped" => {
                "video_complete"
            }
            "pause_video" | "edx.video.paused" | "seek_video" | "edx.video.position.changed" => {
                return (event_type, Some("learning"));
            }
            "seq_goto" | "seq_next" | "seq_prev" | "page_close" => "content_view",
            t if t.starts_with("edx.ui.lms.sequence.") || t.starts_with("edx.ui.lms.link_clicked") => {
                "content_view"
            }
            t if t.starts_with("textbook.pdf.") => "resource_view",
            t if t.starts_with("edx.forum.") && t.ends_with(".created") => "forum_post",
            "showanswer" | "edx.problem.hint.demandhint_displayed" | "edx.problem.hint.displayed" => {
                "help_requested"
            }
            "edx.badge.assertion.created" | "edx.certificate.created" => "achievement_earned",
            "edx.user.login" | "login" => "login",
            "edx.user.logout" | "logout" => "logout",
            t if t.starts_with('/') => "content_view",
            _ => return (event_type, None),
        };
        (known, None)
    }
}

mod moodle {
    //! Moodle's standard log (`logstore_standard_log`, as CSV with its
    //! column names or as JSON objects): `userid` → student_id, `courseid`
    //! → course_id, `timecreated` → timestamp, `eventname` →
    //! activity_type, `<site>-<id>` → event_id, `ip` → the keyed hash. The
    //! log holds no scores: Moodle grades come in as native attempts.

    use super::*;

    pub(super) fn json_record(line: &str, rows: &mut Rows) -> Result<Mapped, String> {
        let value: Value =
            serde_json::from_str(line).map_err(|e| format!("malformed JSON: {e}"))?;
        let Value::Object(object) = value else {
            return Err("not a Moodle log row: expected a JSON object".into());
        };
        let texts: Vec<(String, String)> = object
            .into_iter()
            .map(|(k, v)| {
                let text = match v {
                    Value::String(s) => s,
                    Value::Null => String::new(),
                    other => other.to_string(),
                };
                (k, text)
            })
            .collect();
        let fields: HashMap<&str, &str> =
            texts.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
        record(&fields, rows)
    }

    pub(super) fn record(fields: &HashMap<&str, &str>, rows: &mut Rows) -> Result<Mapped, String> {
        let get = |k: &str| fields.get(k).copied().map(str::trim).filter(|v| !v.is_empty());
        if get("eventname").is_none() && (fields.contains_key("Event name") || fields.contains_key("User full name")) {
            return Err("this is Moodle's Logs report download (names, not ids, and local times); export the standard log table (logstore_standard_log: id, eventname, userid, courseid, timecreated, …) instead".into());
        }
        let mapping = rows.mapping.clone();
        let id = get("id").ok_or("missing required field \"id\" (the log row's id)")?;
        let eventname = get("eventname").ok_or("missing required field \"eventname\"")?;
        let userid = get("userid").ok_or("missing required field \"userid\"")?;
        if userid == "0" || userid.starts_with('-') {
            // A guest or the system, not a student.
            return Ok(Mapped::default());
        }
        let student_id = mapping
            .actors
            .get(userid)
            .cloned()
            .unwrap_or_else(|| userid.to_string());
        let created = get("timecreated").ok_or("missing required field \"timecreated\"")?;
        let seconds: i64 = created
            .parse()
            .map_err(|_| format!("timecreated {:?} is not Unix seconds", clip(created)))?;
        let timestamp = chrono::DateTime::from_timestamp(seconds, 0)
            .ok_or_else(|| format!("timecreated {seconds} is out of range"))?
            .to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
        let component = get("component").unwrap_or_default();
        let (activity_type, category) = activity_type(eventname, component);
        let course_id = get("courseid")
            .filter(|c| !matches!(*c, "0" | "1"))
            .map(str::to_string);
        let module = get("contextinstanceid")
            .filter(|_| get("contextlevel") == Some("70"))
            .map(str::to_string);
        let mut event = Event {
            event_id: format!("{}-{id}", mapping.moodle_site),
            student_id,
            timestamp,
            activity_type: activity_type.to_string(),
            activity_category: category,
            course_id,
            ip_address: get("ip").map(str::to_string),
            details: serde_json::json!({
                "source": "moodle",
                "eventname": eventname,
                "component": component,
                "crud": get("crud"),
                "edulevel": get("edulevel"),
            })
            .to_string(),
            ..Event::default()
        };
        match component {
            "mod_quiz" => event.quiz_id = module,
            "mod_assign" => event.assignment_id = module,
            "mod_lesson" => event.lesson_id = module,
            _ => event.resource_id = module,
        }
        Ok(Mapped {
            event: Some(event),
            attempt: None,
            void: None,
        })
    }

    /// The contract's activity_type for an event name
    /// (`\mod_quiz\event\attempt_submitted`); unknown ones keep the name's
    /// last part.
    pub(super) fn activity_type<'a>(
        eventname: &'a str,
        component: &str,
    ) -> (&'a str, Option<&'static str>) {
        let name = eventname.rsplit('\\').next().unwrap_or(eventname);
        let component = if component.is_empty() {
            eventname.trim_start_matches('\\').split('\\').next().unwrap_or("")
        } else {
            component
        };
        let known = match (name, component) {
            ("user_loggedin", _) => "login",
            ("user_loggedout", _) => "logout",
            ("course_viewed", _) => "content_view",
            ("course_module_viewed", "mod_resource" | "mod_url" | "mod_folder") => "resource_view",
            ("course_module_viewed", _) => "content_view",
            ("attempt_started", "mod_quiz") => "quiz_start",
            ("attempt_submitted", "mod_quiz") => "quiz_submit",
            ("assessable_submitted", _) => "assignment_submit",
            ("post_created" | "discussion_created", _) => "forum_post",
            ("badge_awarded", _) => "achievement_earned",
            ("lesson_started", _) => "lesson_start",
            ("lesson_ended" | "course_module_completion_updated", _) => "lesson_complete",
            _ => return (name, None),
        };
        (known, None)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use datafusion::arrow::array::{Array, AsArray, RecordBatch};
    use datafusion::arrow::datatypes::TimestampMicrosecondType;

    fn rows(kind: Kind) -> Rows {
        Rows::new(kind, Some(b"key")).with_mapping(Arc::new(Mapping::default()))
    }

    /// The activity row one record becomes, as (column, value) text.
    fn activity(dialect: Dialect, line: &str) -> Vec<(String, String)> {
        let mut rows = rows(Kind::Activity);
        let pushed = rows.push_lms(dialect, line);
        assert!(pushed.rejected.is_empty(), "{:?}", pushed.rejected);
        one_row(&rows.finish())
    }

    fn one_row(batch: &RecordBatch) -> Vec<(String, String)> {
        assert_eq!(batch.num_rows(), 1);
        batch
            .schema()
            .fields()
            .iter()
            .zip(batch.columns())
            .filter(|(_, c)| c.is_valid(0))
            .map(|(f, c)| {
                let text = match c.data_type() {
                    datafusion::arrow::datatypes::DataType::Timestamp(..) => {
                        let micros = c.as_primitive::<TimestampMicrosecondType>().value(0);
                        chrono::DateTime::from_timestamp_micros(micros)
                            .unwrap()
                            .to_rfc3339()
                    }
                    _ => datafusion::arrow::util::display::array_value_to_string(c, 0).unwrap(),
                };
                (f.name().clone(), text)
            })
            .collect()
    }

    fn get<'a>(row: &'a [(String, String)], column: &str) -> Option<&'a str> {
        row.iter()
            .find(|(c, _)| c == column)
            .map(|(_, v)| v.as_str())
    }

    const XAPI: &str = r#"{"id":"6690e6c9-3ef0-4ed3-8b37-7f3964730bee","actor":{"objectType":"Agent","account":{"homePage":"https://lms.example.edu","name":"s001"}},"verb":{"id":"http://adlnet.gov/expapi/verbs/completed","display":{"en-US":"completed"}},"object":{"id":"https://lms.example.edu/quizzes/Q7","definition":{"type":"http://adlnet.gov/expapi/activities/assessment"}},"result":{"score":{"raw":8,"min":0,"max":10},"success":true,"duration":"PT4M30S"},"context":{"registration":"ec531277-b57b-4c15-8d91-d292c5b2b8f7","contextActivities":{"parent":[{"id":"https://lms.example.edu/courses/CS101/week/3"}],"grouping":[{"id":"https://lms.example.edu/courses/CS101","definition":{"type":"http://adlnet.gov/expapi/activities/course"}}]}},"timestamp":"2026-03-03T10:15:00.000+0000"}"#;

    #[test]
    fn an_xapi_statement_maps_to_an_event_and_an_attempt() {
        let row = activity(Dialect::Xapi, XAPI);
        assert_eq!(get(&row, "event_id"), Some("6690e6c9-3ef0-4ed3-8b37-7f3964730bee"));
        assert_eq!(get(&row, "student_id"), Some("s001"));
        assert_eq!(get(&row, "activity_type"), Some("quiz_submit"));
        assert_eq!(get(&row, "activity_category"), Some("assessment"));
        assert_eq!(get(&row, "course_id"), Some("CS101"), "the course-typed grouping wins");
        assert_eq!(get(&row, "quiz_id"), Some("Q7"));
        assert_eq!(get(&row, "score"), Some("80.0"));
        assert_eq!(get(&row, "duration_seconds"), Some("270.0"));
        assert_eq!(get(&row, "session_id"), Some("ec531277-b57b-4c15-8d91-d292c5b2b8f7"));
        assert_eq!(get(&row, "timestamp"), Some("2026-03-03T10:15:00+00:00"));
        assert_eq!(get(&row, "success"), Some("true"));

        let mut attempts = rows(Kind::Attempts);
        let pushed = attempts.push_lms(Dialect::Xapi, XAPI);
        assert!(pushed.rejected.is_empty(), "{:?}", pushed.rejected);
        let row = one_row(&attempts.finish());
        assert_eq!(get(&row, "attempt_id"), Some("6690e6c9-3ef0-4ed3-8b37-7f3964730bee"));
        assert_eq!(get(&row, "assessment_id"), Some("Q7"));
        assert_eq!(get(&row, "course_id"), Some("CS101"));
        assert_eq!(get(&row, "score"), Some("80.0"));
        assert_eq!(get(&row, "points_earned"), Some("8.0"));
        assert_eq!(get(&row, "points_possible"), Some("10.0"));
        assert_eq!(get(&row, "passed"), Some("true"));
        assert_eq!(get(&row, "started_at"), Some("2026-03-03T10:10:30+00:00"));
    }

    #[test]
    fn xapi_mailboxes_become_one_keyed_hash_and_never_the_address() {
        let with = |actor: &str| {
            XAPI.replace(
                r#"{"objectType":"Agent","account":{"homePage":"https://lms.example.edu","name":"s001"}}"#,
                actor,
            )
        };
        let mbox = activity(Dialect::Xapi, &with(r#"{"mbox":"mailto:ann@example.edu"}"#));
        let sha1 = hex::encode(sha1::Sha1::digest(b"mailto:ann@example.edu"));
        let summed = activity(
            Dialect::Xapi,
            &with(&format!(r#"{{"mbox_sha1sum":"{sha1}"}}"#)),
        );
        let id = get(&mbox, "student_id").unwrap();
        assert!(id.starts_with("mbox-") && !id.contains("ann"), "{id}");
        assert_eq!(Some(id), get(&summed, "student_id"));

        let mut keyless = Rows::new(Kind::Activity, None);
        let pushed = keyless.push_lms(Dialect::Xapi, &with(r#"{"mbox":"mailto:ann@example.edu"}"#));
        assert!(pushed.rejected[0].contains("LEARNLAKE_HASH_KEY"), "{:?}", pushed.rejected);

        let mut mapped = Rows::new(Kind::Activity, None).with_mapping(Arc::new(Mapping {
            actors: Arc::new(HashMap::from([(
                "mailto:ann@example.edu".to_string(),
                "s042".to_string(),
            )])),
            ..Mapping::default()
        }));
        let pushed = mapped.push_lms(Dialect::Xapi, &with(r#"{"mbox":"mailto:ann@example.edu"}"#));
        assert!(pushed.rejected.is_empty());
        assert_eq!(get(&one_row(&mapped.finish()), "student_id"), Some("s042"));
    }

    #[test]
    fn a_group_statement_is_each_members() {
        let group = XAPI.replace(
            r#"{"objectType":"Agent","account":{"homePage":"https://lms.example.edu","name":"s001"}}"#,
            r#"{"objectType":"Group","name":"team","member":[{"account":{"homePage":"h","name":"s002"}},{"account":{"homePage":"h","name":"s003"}}]}"#,
        );
        let mut rows = rows(Kind::Activity);
        assert!(rows.push_lms(Dialect::Xapi, &group).rejected.is_empty());
        let batch = rows.finish();
        let ids = batch.column_by_name("event_id").unwrap().as_string::<i32>();
        let students = batch.column_by_name("student_id").unwrap().as_string::<i32>();
        assert_eq!(ids.value(1), "6690e6c9-3ef0-4ed3-8b37-7f3964730bee#1");
        assert_eq!((students.value(0), students.value(1)), ("s002", "s003"));
        let empty = group.replace(r#","member":[{"account":{"homePage":"h","name":"s002"}},{"account":{"homePage":"h","name":"s003"}}]"#, "");
        let mut rows = super::tests::rows(Kind::Activity);
        assert!(rows.push_lms(Dialect::Xapi, &empty).rejected[0].contains("without members"));
    }

    #[test]
    fn xapi_course_comes_from_the_configured_place() {
        let course = |setting: XapiCourse| {
            let mut rows = Rows::new(Kind::Activity, None).with_mapping(Arc::new(Mapping {
                xapi_course: setting,
                ids: IdStyle::Iri,
                ..Mapping::default()
            }));
            let line = XAPI.replace(
                r#""registration""#,
                r#""extensions":{"https://example.edu/x/course":{"id":"urn:course:ENG2"}},"registration""#,
            );
            assert!(rows.push_lms(Dialect::Xapi, &line).rejected.is_empty());
            get(&one_row(&rows.finish()), "course_id").map(str::to_string)
        };
        assert_eq!(course(XapiCourse::Auto).as_deref(), Some("https://lms.example.edu/courses/CS101"));
        assert_eq!(
            course(XapiCourse::Parent).as_deref(),
            Some("https://lms.example.edu/courses/CS101/week/3")
        );
        assert_eq!(
            course(XapiCourse::Extension("https://example.edu/x/course".into())).as_deref(),
            Some("urn:course:ENG2")
        );
        assert_eq!(XapiCourse::parse("extension:https://x/y"), Ok(XapiCourse::Extension("https://x/y".into())));
        assert!(XapiCourse::parse("nowhere").is_err());
    }

    #[test]
    fn voiding_statements_name_their_target_and_bad_ones_say_why() {
        let void = r#"{"id":"v1","actor":{"account":{"homePage":"h","name":"admin"}},"verb":{"id":"http://adlnet.gov/expapi/verbs/voided"},"object":{"objectType":"StatementRef","id":"6690e6c9-3ef0-4ed3-8b37-7f3964730bee"},"timestamp":"2026-03-04T00:00:00Z"}"#;
        for kind in [Kind::Activity, Kind::Attempts] {
            let mut rows = rows(kind);
            let pushed = rows.push_lms(Dialect::Xapi, void);
            assert_eq!(pushed.voids, ["6690e6c9-3ef0-4ed3-8b37-7f3964730bee"]);
            assert_eq!(rows.len(), 0);
        }
        let reason = |line: &str| {
            let mut rows = rows(Kind::Activity);
            let mut pushed = rows.push_lms(Dialect::Xapi, line);
            assert_eq!(rows.len(), 0, "{line}");
            pushed.rejected.pop().unwrap_or_default()
        };
        assert!(reason(&XAPI.replace(r#""raw":8"#, r#""raw":12"#)).contains("outside its range 0–10"));
        assert!(reason(&XAPI.replace(r#""result":{"#, r#""result":{"x":1,"#).replace(r#""raw":8,"min":0,"max":10"#, r#""scaled":-0.5"#)).contains("outside 0–1"));
        assert!(reason(&XAPI.replace("\"timestamp\"", "\"time\"")).contains("neither timestamp nor stored"));
        assert!(reason(&XAPI.replace("PT4M30S", "four minutes")).contains("ISO 8601"));
        assert!(reason(&XAPI[..200]).contains("malformed JSON"));
        assert!(reason(r#"{"id":"x","verb":{"id":"v"},"object":{"id":"o"},"timestamp":"2026-03-04T00:00:00Z"}"#).contains("no actor"));
        assert!(reason(&void.replace("StatementRef", "Activity")).contains("StatementRef"));
        let deep = format!("{}{}", "[".repeat(5000), "]".repeat(5000));
        assert!(reason(&deep).contains("expected a JSON object"), "{}", reason(&deep));
        let big = XAPI.replace("CS101/week/3", &"x".repeat(MAX_RECORD_BYTES));
        assert!(reason(&big).contains("MiB are refused"));
    }

    #[test]
    fn arrays_and_statement_results_hold_several_statements() {
        let second = XAPI.replace("6690e6c9", "7790e6c9");
        let mut rows = rows(Kind::Activity);
        let pushed = rows.push_lms(Dialect::Xapi, &format!("[{XAPI},{second},{{\"id\":1}}]"));
        assert_eq!(rows.len(), 2);
        assert_eq!(pushed.rejected.len(), 1);
        assert!(pushed.rejected[0].starts_with("record 2 of the line"), "{:?}", pushed.rejected);
        let mut rows = super::tests::rows(Kind::Activity);
        let pushed = rows.push_lms(
            Dialect::Xapi,
            &format!(r#"{{"statements":[{XAPI},{second}],"more":""}}"#),
        );
        assert!(pushed.rejected.is_empty(), "{:?}", pushed.rejected);
        assert_eq!(rows.len(), 2);
    }

    #[test]
    fn unknown_verbs_keep_their_last_segment() {
        use xapi::{Role, activity_type};
        assert_eq!(activity_type("http://example.com/verbs/shared", Role::Other).0, "shared");
        assert_eq!(activity_type("https://w3id.org/xapi/video/verbs/played", Role::Media).0, "video_play");
        assert_eq!(activity_type("http://adlnet.gov/expapi/verbs/completed", Role::Media).0, "video_complete");
        assert_eq!(activity_type("http://adlnet.gov/expapi/verbs/experienced", Role::Other).0, "content_view");
        assert_eq!(activity_type("https://w3id.org/xapi/adl/verbs/logged-in", Role::Other).0, "login");
        assert_eq!(last_segment("https://lms.example.edu/courses/CS101/"), "CS101");
        assert_eq!(last_segment("urn:uuid:ff9ec22a-fc59-4ae1-ae8d-2c9463ee2f8f"), "ff9ec22a-fc59-4ae1-ae8d-2c9463ee2f8f");
        assert_eq!(last_segment("http://purl.imsglobal.org/vocab/caliper/v1/action#Viewed"), "Viewed");
    }

    #[test]
    fn durations_and_timestamps_in_the_forms_systems_write() {
        assert_eq!(iso_duration("PT4M30S"), Some(270.0));
        assert_eq!(iso_duration("P1DT2H"), Some(93_600.0));
        assert_eq!(iso_duration("PT0.5S"), Some(0.5));
        assert_eq!(iso_duration("P2W"), Some(1_209_600.0));
        assert_eq!(iso_duration("PT"), None);
        assert_eq!(iso_duration("4M"), None);
        assert_eq!(iso_duration("PT4X"), None);
        assert_eq!(rfc3339("2026-03-03T10:15:00+0000"), "2026-03-03T10:15:00+00:00");
        assert_eq!(rfc3339("2026-03-03T10:15:00.584523"), "2026-03-03T10:15:00.584523Z");
        assert_eq!(rfc3339("2026-03-03T10:15:00-05:00"), "2026-03-03T10:15:00-05:00");
    }

    const CALIPER_SUBMITTED: &str = r#"{"@context":"http://purl.imsglobal.org/ctx/caliper/v1p2","id":"urn:uuid:dad88464-0c20-4a19-a1ba-ddf2f9c3ff33","type":"AssessmentEvent","actor":{"id":"https://example.edu/users/554433","type":"Person"},"action":"Submitted","object":{"id":"https://example.edu/terms/201801/courses/7/sections/1/assess/1","type":"Assessment"},"generated":{"id":"https://example.edu/terms/201801/courses/7/sections/1/assess/1/users/554433/attempts/1","type":"Attempt","duration":"PT23M"},"eventTime":"2018-11-15T10:25:30.000Z","group":{"id":"https://example.edu/terms/201801/courses/7/sections/1","type":"CourseSection"},"session":{"id":"https://example.edu/sessions/1f6442a482de72ea6ad134943812bff564a76259","type":"Session"}}"#;
    const CALIPER_GRADED: &str = r#"{"@context":"http://purl.imsglobal.org/ctx/caliper/v1p2","id":"urn:uuid:a50ca17f-5971-47bb-8fca-4e6e6879001d","type":"GradeEvent","actor":{"id":"https://example.edu/autograder","type":"SoftwareApplication"},"action":"Graded","object":{"id":"https://example.edu/terms/201801/courses/7/sections/1/assess/1/users/554433/attempts/1","type":"Attempt","assignee":{"id":"https://example.edu/users/554433","type":"Person"},"assignable":{"id":"https://example.edu/terms/201801/courses/7/sections/1/assess/1","type":"Assessment"},"count":1,"startedAtTime":"2018-11-15T10:05:00.000Z","endedAtTime":"2018-11-15T10:55:12.000Z"},"eventTime":"2018-11-15T10:57:06.000Z","generated":{"id":"https://example.edu/.../scores/1","type":"Score","scoreGiven":15,"maxScore":15},"group":{"id":"https://example.edu/terms/201801/courses/7/sections/1","type":"CourseSection"}}"#;

    #[test]
    fn caliper_events_map_and_grades_are_attempts_only() {
        let row = activity(Dialect::Caliper, CALIPER_SUBMITTED);
        assert_eq!(get(&row, "event_id"), Some("urn:uuid:dad88464-0c20-4a19-a1ba-ddf2f9c3ff33"));
        assert_eq!(get(&row, "student_id"), Some("554433"));
        assert_eq!(get(&row, "activity_type"), Some("quiz_submit"));
        assert_eq!(get(&row, "course_id"), Some("1"), "the section's last segment");
        assert_eq!(get(&row, "quiz_id"), Some("1"));
        assert_eq!(get(&row, "duration_seconds"), Some("1380.0"));

        let mut activity_rows = rows(Kind::Activity);
        let pushed = activity_rows.push_lms(Dialect::Caliper, CALIPER_GRADED);
        assert_eq!((activity_rows.len(), pushed.skipped), (0, 1), "the grader's act is no student activity");
        let mut attempts = rows(Kind::Attempts);
        let envelope = format!(
            r#"{{"sensor":"https://example.edu/sensors/1","sendTime":"2018-11-15T11:05:01.000Z","dataVersion":"http://purl.imsglobal.org/ctx/caliper/v1p2","data":[{CALIPER_SUBMITTED},{CALIPER_GRADED}]}}"#
        );
        let pushed = attempts.push_lms(Dialect::Caliper, &envelope);
        assert!(pushed.rejected.is_empty(), "{:?}", pushed.rejected);
        let row = one_row(&attempts.finish());
        assert_eq!(get(&row, "student_id"), Some("554433"));
        assert_eq!(get(&row, "assessment_id"), Some("1"));
        assert_eq!(get(&row, "score"), Some("100.0"));
        assert_eq!(get(&row, "attempt_number"), Some("1"));
        assert_eq!(get(&row, "submitted_at"), Some("2018-11-15T10:55:12+00:00"));
    }

    #[test]
    fn open_edx_problem_checks_are_attempts_and_ids_come_from_the_line() {
        let line = r#"{"username":"ann","event_type":"problem_check","event_source":"server","time":"2026-03-03T10:15:00.123456+00:00","context":{"user_id":42,"course_id":"course-v1:edX+DemoX+Demo_Course","org_id":"edX"},"event":{"problem_id":"block-v1:edX+DemoX+Demo_Course+type@problem+block@p1","grade":2,"max_grade":4,"attempts":1,"success":"incorrect"},"session":"abc","ip":"10.0.0.1"}"#;
        let row = activity(Dialect::OpenEdx, line);
        assert_eq!(get(&row, "student_id"), Some("42"));
        assert_eq!(get(&row, "activity_type"), Some("quiz_submit"));
        assert_eq!(get(&row, "course_id"), Some("course-v1:edX+DemoX+Demo_Course"));
        assert_eq!(get(&row, "score"), Some("50.0"));
        assert!(get(&row, "event_id").unwrap().starts_with("openedx-"));
        assert_ne!(get(&row, "ip_address"), Some("10.0.0.1"), "hashed");
        let mut attempts = rows(Kind::Attempts);
        assert!(attempts.push_lms(Dialect::OpenEdx, line).rejected.is_empty());
        let attempt = one_row(&attempts.finish());
        assert_eq!(get(&attempt, "passed"), Some("false"));
        assert_eq!(get(&attempt, "attempt_id"), get(&row, "event_id"));

        let anonymous = r#"{"username":"","event_type":"/courses/x/about","time":"2026-03-03T10:15:00Z","context":{"user_id":""}}"#;
        let mut rows = rows(Kind::Activity);
        assert_eq!(rows.push_lms(Dialect::OpenEdx, anonymous).skipped, 1);
        assert!(rows.push_lms(Dialect::OpenEdx, r#"{"event_type":"play_video","time":"2026-03-03T10:15:00Z"}"#).rejected[0].contains("no user"));
    }

    #[test]
    fn moodle_log_rows_map_and_the_report_download_is_explained() {
        let headers = csv::StringRecord::from(vec!["id", "eventname", "component", "action", "target", "crud", "edulevel", "contextlevel", "contextinstanceid", "userid", "courseid", "timecreated", "ip"]);
        let record = csv::StringRecord::from(vec!["9001", "\\mod_quiz\\event\\attempt_submitted", "mod_quiz", "submitted", "attempt", "u", "2", "70", "55", "17", "4", "1772532900", "10.1.1.1"]);
        let mut rows = rows(Kind::Activity);
        assert!(rows.push_lms_csv(&record, &headers).rejected.is_empty());
        let row = one_row(&rows.finish());
        assert_eq!(get(&row, "event_id"), Some("moodle-9001"));
        assert_eq!(get(&row, "student_id"), Some("17"));
        assert_eq!(get(&row, "course_id"), Some("4"));
        assert_eq!(get(&row, "quiz_id"), Some("55"));
        assert_eq!(get(&row, "activity_type"), Some("quiz_submit"));
        assert_eq!(get(&row, "timestamp"), Some("2026-03-03T10:15:00+00:00"));

        let report = csv::StringRecord::from(vec!["Time", "User full name", "Affected user", "Event context", "Component", "Event name", "Description", "Origin", "IP address"]);
        let line = csv::StringRecord::from(vec!["3/03/26, 10:15", "Ann Lee", "-", "Quiz: Q1", "Quiz", "Quiz attempt submitted", "…", "web", "10.1.1.1"]);
        let mut rows = super::tests::rows(Kind::Activity);
        assert!(rows.push_lms_csv(&line, &report).rejected[0].contains("logstore_standard_log"));
        assert_eq!(moodle::activity_type("\\mod_wiki\\event\\page_viewed", "").0, "page_viewed");
    }
}
