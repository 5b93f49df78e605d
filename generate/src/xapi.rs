//! The generated history as other systems would send it: as an LRS exports
//! it (`learnlake generate --format xapi`: every activity event and every
//! attempt one xAPI statement in `xapi/statements-NNNNN.jsonl[.gz]`,
//! replacing the native `activity/` and `attempts/` files) or as a Caliper
//! sensor sends it (envelopes in `caliper/`; the mixed demo landing). The
//! reference files stay native.
//!
//! The statements are shaped like real ones (an account actor, verbs and
//! activity types from ADL's vocabularies, the course as a grouping context
//! activity, the session as the cmi5 session extension, ISO 8601 durations,
//! `stored`, `version`), so a benchmark over them pays what real xAPI costs.
//! Events carry no score (their attempt statement does): ingesting the xAPI
//! landing gives the native history plus one `quiz_submit` / assignment
//! event per attempt.

use std::fs;
use std::io::{BufRead, BufReader, BufWriter, Write};
use std::path::{Path, PathBuf};

use serde_json::{Value, json};

use crate::{Error, Result, write_error};

const LMS: &str = "https://lms.example.edu";
const COURSE: &str = "http://adlnet.gov/expapi/activities/course";
const SESSION: &str = "https://w3id.org/xapi/cmi5/context/extensions/sessionid";

/// Another system's format the generated history can be told in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// xAPI statements, one per line, in `xapi/statements-NNNNN.jsonl`.
    Xapi,
    /// Caliper envelopes of up to 50 events, one per line, in
    /// `caliper/events-NNNNN.jsonl`.
    Caliper,
}

/// What [`to_format`] wrote.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct XapiSummary {
    pub files: usize,
    /// Statements or events written.
    pub statements: u64,
    pub bytes: u64,
}

/// Rewrites the native `activity/` and `attempts/` files under `out` as
/// xAPI statements in `out/xapi/`, then removes them.
pub fn to_xapi(out: &Path, gzip: bool) -> Result<XapiSummary> {
    to_format(out, Format::Xapi, gzip, &|_| true)
}

/// Moves the events and attempts of the students `select` picks out of the
/// native `activity/` and `attempts/` files (rewritten with the rest, or
/// removed when nothing is left) into `format`'s folder.
pub fn to_format(
    out: &Path,
    format: Format,
    gzip: bool,
    select: &dyn Fn(&str) -> bool,
) -> Result<XapiSummary> {
    let (folder, stem) = match format {
        Format::Xapi => ("xapi", "statements"),
        Format::Caliper => ("caliper", "events"),
    };
    let dir = out.join(folder);
    fs::create_dir_all(&dir).map_err(|source| write_error(&dir, source))?;
    crate::remove_stale(&dir, stem)?;
    let mut inputs = Vec::new();
    for kind in ["activity", "attempts"] {
        let mut files: Vec<PathBuf> = fs::read_dir(out.join(kind))
            .map_err(|source| Error::ReadFile {
                path: out.join(kind),
                source,
            })?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| {
                p.file_name()
                    .and_then(|n| n.to_str())
                    .is_some_and(|n| n.starts_with(kind) && n.contains(".jsonl"))
            })
            .collect();
        files.sort();
        inputs.extend(files.into_iter().map(|p| (kind, p)));
    }
    let mut summary = XapiSummary::default();
    for (i, (kind, input)) in inputs.iter().enumerate() {
        let read = |source| Error::ReadFile {
            path: input.clone(),
            source,
        };
        let compressed = input.extension().is_some_and(|e| e == "gz");
        let file = fs::File::open(input).map_err(read)?;
        let reader: Box<dyn BufRead> = if compressed {
            Box::new(BufReader::new(flate2::read::MultiGzDecoder::new(file)))
        } else {
            Box::new(BufReader::with_capacity(1 << 20, file))
        };
        let path = dir.join(format!(
            "{stem}-{:05}.jsonl{}",
            i + 1,
            if gzip { ".gz" } else { "" }
        ));
        let mut writer = Lines::create(&path, gzip)?;
        let rest_path = input.with_extension("rest");
        let mut rest = Lines::create(&rest_path, compressed)?;
        let mut envelope = Vec::new();
        for line in reader.lines() {
            let line = line.map_err(read)?;
            let Ok(native) = serde_json::from_str::<Value>(&line) else {
                continue;
            };
            if !select(text(&native, "student_id").unwrap_or_default()) {
                rest.line(line.as_bytes())?;
                continue;
            }
            let record = match (format, *kind) {
                (Format::Xapi, "activity") => event_statement(&native),
                (Format::Xapi, _) => attempt_statement(&native),
                (Format::Caliper, "activity") => caliper_event(&native),
                (Format::Caliper, _) => caliper_grade(&native),
            };
            summary.statements += 1;
            match format {
                Format::Xapi => writer.value(&record)?,
                Format::Caliper => {
                    envelope.push(record);
                    if envelope.len() == 50 {
                        writer.value(&caliper_envelope(std::mem::take(&mut envelope)))?;
                    }
                }
            }
        }
        if !envelope.is_empty() {
            writer.value(&caliper_envelope(envelope))?;
        }
        summary.bytes += writer.finish()?;
        summary.files += 1;
        let kept = rest.lines;
        rest.finish()?;
        if kept > 0 {
            fs::rename(&rest_path, input).map_err(|source| write_error(input, source))?;
        } else {
            fs::remove_file(&rest_path).map_err(|source| write_error(&rest_path, source))?;
            fs::remove_file(input).map_err(|source| write_error(input, source))?;
        }
    }
    Ok(summary)
}

/// A file of lines being written, optionally gzipped.
struct Lines {
    path: PathBuf,
    writer: Box<dyn Write>,
    lines: u64,
}

impl Lines {
    fn create(path: &Path, gzip: bool) -> Result<Self> {
        let created = fs::File::create(path).map_err(|source| write_error(path, source))?;
        let buffered = BufWriter::with_capacity(1 << 20, created);
        let writer: Box<dyn Write> = if gzip {
            Box::new(flate2::write::GzEncoder::new(
                buffered,
                flate2::Compression::fast(),
            ))
        } else {
            Box::new(buffered)
        };
        Ok(Self {
            path: path.to_path_buf(),
            writer,
            lines: 0,
        })
    }

    fn line(&mut self, bytes: &[u8]) -> Result<()> {
        self.lines += 1;
        self.writer
            .write_all(bytes)
            .and_then(|()| self.writer.write_all(b"\n"))
            .map_err(|source| write_error(&self.path, source))
    }

    fn value(&mut self, value: &Value) -> Result<()> {
        let bytes = serde_json::to_vec(value).map_err(|e| write_error(&self.path, e.into()))?;
        self.line(&bytes)
    }

    /// Closes the file; its size.
    fn finish(mut self) -> Result<u64> {
        self.writer
            .flush()
            .map_err(|source| write_error(&self.path, source))?;
        drop(self.writer);
        Ok(fs::metadata(&self.path).map(|m| m.len()).unwrap_or(0))
    }
}

fn text<'v>(v: &'v Value, key: &str) -> Option<&'v str> {
    v.get(key).and_then(Value::as_str).filter(|s| !s.is_empty())
}

fn actor(student: &str) -> Value {
    json!({"objectType": "Agent", "account": {"homePage": LMS, "name": student}})
}

fn context(course: Option<&str>, session: Option<&str>, platform: Option<&str>) -> Value {
    let mut context = json!({});
    if let Some(course) = course {
        context["contextActivities"] = json!({"grouping": [{
            "id": format!("{LMS}/courses/{course}"),
            "objectType": "Activity",
            "definition": {"type": COURSE, "name": {"en-US": course}},
        }]});
    }
    if let Some(session) = session {
        context["extensions"] = json!({ SESSION: session });
    }
    if let Some(platform) = platform {
        context["platform"] = json!(platform);
    }
    context
}

fn verb(id: &str) -> Value {
    json!({"id": id, "display": {"en-US": id.rsplit('/').next().unwrap_or(id)}})
}

fn duration(seconds: f64) -> String {
    format!("PT{}S", (seconds * 1000.0).round() / 1000.0)
}

fn event_statement(e: &Value) -> Value {
    let kind = text(e, "activity_type").unwrap_or("content_view");
    let adl = |v: &str| format!("http://adlnet.gov/expapi/verbs/{v}");
    let (verb_id, folder, object_id, object_type) = match kind {
        "login" => (
            "https://w3id.org/xapi/adl/verbs/logged-in".to_string(),
            "",
            None,
            "http://id.tincanapi.com/activitytype/lms",
        ),
        "logout" => (
            "https://w3id.org/xapi/adl/verbs/logged-out".to_string(),
            "",
            None,
            "http://id.tincanapi.com/activitytype/lms",
        ),
        "lesson_start" => (
            adl("launched"),
            "lessons",
            text(e, "lesson_id"),
            "http://adlnet.gov/expapi/activities/lesson",
        ),
        "lesson_complete" => (
            adl("completed"),
            "lessons",
            text(e, "lesson_id"),
            "http://adlnet.gov/expapi/activities/lesson",
        ),
        "resource_view" => (
            adl("experienced"),
            "files",
            text(e, "resource_id"),
            "http://adlnet.gov/expapi/activities/file",
        ),
        "resource_download" => (
            "http://id.tincanapi.com/verb/downloaded".into(),
            "files",
            text(e, "resource_id"),
            "http://adlnet.gov/expapi/activities/file",
        ),
        "video_play" => (
            "https://w3id.org/xapi/video/verbs/played".into(),
            "videos",
            text(e, "resource_id"),
            "https://w3id.org/xapi/video/activity-type/video",
        ),
        "video_complete" => (
            adl("completed"),
            "videos",
            text(e, "resource_id"),
            "https://w3id.org/xapi/video/activity-type/video",
        ),
        "quiz_start" => (
            adl("attempted"),
            "quizzes",
            text(e, "quiz_id"),
            "http://adlnet.gov/expapi/activities/assessment",
        ),
        "quiz_submit" => (
            adl("completed"),
            "quizzes",
            text(e, "quiz_id"),
            "http://adlnet.gov/expapi/activities/assessment",
        ),
        "assignment_submit" => (
            adl("completed"),
            "assignments",
            text(e, "assignment_id"),
            "http://id.tincanapi.com/activitytype/assignment",
        ),
        "forum_post" => (
            adl("commented"),
            "forums",
            text(e, "resource_id"),
            "http://id.tincanapi.com/activitytype/discussion",
        ),
        "help_requested" => (
            adl("asked"),
            "help",
            text(e, "resource_id"),
            "http://id.tincanapi.com/activitytype/question",
        ),
        "achievement_earned" => (
            "http://id.tincanapi.com/verb/earned".into(),
            "badges",
            text(e, "resource_id"),
            "http://id.tincanapi.com/activitytype/badge",
        ),
        "content_view" => (
            adl("experienced"),
            "pages",
            text(e, "resource_id").or(text(e, "lesson_id")),
            "http://activitystrea.ms/schema/1.0/article",
        ),
        other => (
            format!("{LMS}/verbs/{other}"),
            "things",
            text(e, "resource_id"),
            "http://activitystrea.ms/schema/1.0/article",
        ),
    };
    let object = match object_id {
        Some(id) => format!("{LMS}/{folder}/{id}"),
        None if folder.is_empty() => LMS.to_string(),
        None => format!("{LMS}/{folder}"),
    };
    let timestamp = text(e, "timestamp").unwrap_or_default();
    let mut statement = json!({
        "id": text(e, "event_id").unwrap_or_default(),
        "actor": actor(text(e, "student_id").unwrap_or_default()),
        "verb": verb(&verb_id),
        "object": {"objectType": "Activity", "id": object, "definition": {"type": object_type}},
        "context": context(text(e, "course_id"), text(e, "session_id"), text(e, "device_type")),
        "timestamp": timestamp,
        "stored": timestamp,
        "version": "1.0.3",
    });
    let mut result = json!({});
    if let Some(seconds) = e.get("duration_seconds").and_then(Value::as_f64) {
        result["duration"] = json!(duration(seconds));
    }
    if let Some(success) = e.get("success").and_then(Value::as_bool) {
        result["success"] = json!(success);
    }
    if result.as_object().is_some_and(|r| !r.is_empty()) {
        statement["result"] = result;
    }
    statement
}

fn attempt_statement(a: &Value) -> Value {
    let assessment = text(a, "assessment_id")
        .or(text(a, "quiz_id"))
        .unwrap_or_default();
    let practice = format!("{LMS}/activitytypes/practice");
    let kind = match text(a, "assessment_type") {
        Some("assignment") => "http://id.tincanapi.com/activitytype/assignment",
        Some("exam") => "http://id.tincanapi.com/activitytype/exam",
        _ if a.get("is_practice").and_then(Value::as_bool) == Some(true) => practice.as_str(),
        Some("practice") => practice.as_str(),
        _ => "http://adlnet.gov/expapi/activities/assessment",
    };
    let submitted = text(a, "submitted_at")
        .or(text(a, "completed_at"))
        .unwrap_or_default();
    let score = a.get("score").and_then(Value::as_f64).unwrap_or_default();
    let mut result = json!({"score": {"raw": score, "min": 0, "max": 100}, "completion": true});
    if let Some(passed) = a.get("passed").and_then(Value::as_bool) {
        result["success"] = json!(passed);
    }
    if let (Some(start), Ok(end)) = (
        text(a, "started_at").and_then(|s| chrono::DateTime::parse_from_rfc3339(s).ok()),
        chrono::DateTime::parse_from_rfc3339(submitted),
    ) {
        let seconds = (end - start).num_milliseconds() as f64 / 1000.0;
        if seconds >= 0.0 {
            result["duration"] = json!(duration(seconds));
        }
    }
    json!({
        "id": text(a, "attempt_id").unwrap_or_default(),
        "actor": actor(text(a, "student_id").unwrap_or_default()),
        "verb": verb("http://adlnet.gov/expapi/verbs/scored"),
        "object": {"objectType": "Activity", "id": format!("{LMS}/assessments/{assessment}"), "definition": {"type": kind}},
        "result": result,
        "context": context(text(a, "course_id"), None, None),
        "timestamp": submitted,
        "stored": submitted,
        "version": "1.0.3",
    })
}

fn caliper_envelope(data: Vec<Value>) -> Value {
    json!({
        "sensor": format!("{LMS}/sensors/lms"),
        "sendTime": data.last().and_then(|e| e.get("eventTime")).cloned().unwrap_or_default(),
        "dataVersion": "http://purl.imsglobal.org/ctx/caliper/v1p2",
        "data": data,
    })
}

fn caliper_common(id: &str, kind: &str, action: &str, object: Value, at: &str, e: &Value) -> Value {
    let mut event = json!({
        "@context": "http://purl.imsglobal.org/ctx/caliper/v1p2",
        "id": format!("urn:uuid:{id}"),
        "type": kind,
        "actor": {"id": format!("{LMS}/users/{}", text(e, "student_id").unwrap_or_default()), "type": "Person"},
        "action": action,
        "object": object,
        "eventTime": at,
        "edApp": {"id": LMS, "type": "SoftwareApplication"},
    });
    if let Some(course) = text(e, "course_id") {
        event["group"] = json!({"id": format!("{LMS}/courses/{course}"), "type": "CourseSection"});
    }
    if let Some(session) = text(e, "session_id") {
        event["session"] = json!({"id": format!("{LMS}/sessions/{session}"), "type": "Session"});
    }
    event
}

fn caliper_event(e: &Value) -> Value {
    let kind = text(e, "activity_type").unwrap_or("content_view");
    let object = |folder: &str, id: Option<&str>, kind: &str| json!({"id": format!("{LMS}/{folder}/{}", id.unwrap_or("none")), "type": kind});
    let resource = text(e, "resource_id");
    let (event_type, action, object) = match kind {
        "login" => (
            "SessionEvent",
            "LoggedIn",
            json!({"id": LMS, "type": "SoftwareApplication"}),
        ),
        "logout" => (
            "SessionEvent",
            "LoggedOut",
            json!({"id": LMS, "type": "SoftwareApplication"}),
        ),
        "lesson_start" => (
            "Event",
            "Started",
            object("lessons", text(e, "lesson_id"), "Chapter"),
        ),
        "lesson_complete" => (
            "Event",
            "Completed",
            object("lessons", text(e, "lesson_id"), "Chapter"),
        ),
        "resource_view" => ("ViewEvent", "Viewed", object("files", resource, "Document")),
        "resource_download" => (
            "ResourceManagementEvent",
            "Downloaded",
            object("files", resource, "Document"),
        ),
        "video_play" => (
            "MediaEvent",
            "Started",
            object("videos", resource, "VideoObject"),
        ),
        "video_complete" => (
            "MediaEvent",
            "Ended",
            object("videos", resource, "VideoObject"),
        ),
        "quiz_start" => (
            "AssessmentEvent",
            "Started",
            object("quizzes", text(e, "quiz_id"), "Assessment"),
        ),
        "quiz_submit" => (
            "AssessmentEvent",
            "Submitted",
            object("quizzes", text(e, "quiz_id"), "Assessment"),
        ),
        "assignment_submit" => (
            "AssignableEvent",
            "Submitted",
            object(
                "assignments",
                text(e, "assignment_id"),
                "AssignableDigitalResource",
            ),
        ),
        "forum_post" => (
            "MessageEvent",
            "Posted",
            object("messages", text(e, "event_id"), "Message"),
        ),
        "help_requested" => (
            "Event",
            "Asked",
            object("help", resource, "DigitalResource"),
        ),
        "achievement_earned" => (
            "Event",
            "Earned",
            object("badges", resource, "DigitalResource"),
        ),
        _ => (
            "NavigationEvent",
            "NavigatedTo",
            object("pages", resource.or(text(e, "lesson_id")), "WebPage"),
        ),
    };
    let at = text(e, "timestamp").unwrap_or_default();
    let mut event = caliper_common(
        text(e, "event_id").unwrap_or_default(),
        event_type,
        action,
        object,
        at,
        e,
    );
    if action == "Submitted"
        && let Some(seconds) = e.get("duration_seconds").and_then(Value::as_f64)
    {
        event["generated"] = json!({"id": format!("{LMS}/attempts/{}", text(e, "event_id").unwrap_or_default()), "type": "Attempt", "duration": duration(seconds)});
    }
    event
}

fn caliper_grade(a: &Value) -> Value {
    let assessment = text(a, "assessment_id")
        .or(text(a, "quiz_id"))
        .unwrap_or_default();
    let kind = if text(a, "assessment_type") == Some("assignment") {
        "AssignableDigitalResource"
    } else {
        "Assessment"
    };
    let id = text(a, "attempt_id").unwrap_or_default();
    let submitted = text(a, "submitted_at")
        .or(text(a, "completed_at"))
        .unwrap_or_default();
    let mut attempt = json!({
        "id": format!("{LMS}/attempts/{id}"),
        "type": "Attempt",
        "assignee": {"id": format!("{LMS}/users/{}", text(a, "student_id").unwrap_or_default()), "type": "Person"},
        "assignable": {"id": format!("{LMS}/assessments/{assessment}"), "type": kind},
        "endedAtTime": submitted,
    });
    if let Some(n) = a.get("attempt_number").and_then(Value::as_i64) {
        attempt["count"] = json!(n);
    }
    if let Some(started) = text(a, "started_at") {
        attempt["startedAtTime"] = json!(started);
    }
    let mut event = caliper_common(
        &format!("grade-{id}"),
        "GradeEvent",
        "Graded",
        attempt,
        submitted,
        a,
    );
    event["actor"] = json!({"id": format!("{LMS}/autograder"), "type": "SoftwareApplication"});
    event["generated"] = json!({
        "id": format!("{LMS}/attempts/{id}/score"),
        "type": "Score",
        "scoreGiven": a.get("score").and_then(Value::as_f64).unwrap_or_default(),
        "maxScore": 100,
    });
    event.as_object_mut().map(|o| o.remove("session"));
    event
}
