//! The generated history as an LRS would export it (`learnlake generate
//! --format xapi`): every activity event and every attempt becomes one xAPI
//! statement in `xapi/statements-NNNNN.jsonl[.gz]`, replacing the native
//! `activity/` and `attempts/` files. The reference files stay native.
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

/// What [`to_xapi`] wrote.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct XapiSummary {
    pub files: usize,
    pub statements: u64,
    pub bytes: u64,
}

/// Rewrites the native `activity/` and `attempts/` files under `out` as
/// xAPI statements in `out/xapi/`, then removes them.
pub fn to_xapi(out: &Path, gzip: bool) -> Result<XapiSummary> {
    let dir = out.join("xapi");
    fs::create_dir_all(&dir).map_err(|source| write_error(&dir, source))?;
    crate::remove_stale(&dir, "statements")?;
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
        let file = fs::File::open(input).map_err(read)?;
        let reader: Box<dyn BufRead> = if input.extension().is_some_and(|e| e == "gz") {
            Box::new(BufReader::new(flate2::read::MultiGzDecoder::new(file)))
        } else {
            Box::new(BufReader::with_capacity(1 << 20, file))
        };
        let name = format!(
            "statements-{:05}.jsonl{}",
            i + 1,
            if gzip { ".gz" } else { "" }
        );
        let path = dir.join(&name);
        let created = fs::File::create(&path).map_err(|source| write_error(&path, source))?;
        let mut writer: Box<dyn Write> = if gzip {
            Box::new(flate2::write::GzEncoder::new(
                BufWriter::with_capacity(1 << 20, created),
                flate2::Compression::fast(),
            ))
        } else {
            Box::new(BufWriter::with_capacity(1 << 20, created))
        };
        for line in reader.lines() {
            let line = line.map_err(read)?;
            let Ok(native) = serde_json::from_str::<Value>(&line) else {
                continue;
            };
            let statement = if *kind == "activity" {
                event_statement(&native)
            } else {
                attempt_statement(&native)
            };
            serde_json::to_writer(&mut writer, &statement)
                .map_err(|e| write_error(&path, e.into()))?;
            writer
                .write_all(b"\n")
                .map_err(|source| write_error(&path, source))?;
            summary.statements += 1;
        }
        writer.flush().map_err(|source| write_error(&path, source))?;
        drop(writer);
        summary.files += 1;
        summary.bytes += fs::metadata(&path).map(|m| m.len()).unwrap_or(0);
        fs::remove_file(input).map_err(|source| write_error(input, source))?;
    }
    Ok(summary)
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
        "lesson_start" => (adl("launched"), "lessons", text(e, "lesson_id"), "http://adlnet.gov/expapi/activities/lesson"),
        "lesson_complete" => (adl("completed"), "lessons", text(e, "lesson_id"), "http://adlnet.gov/expapi/activities/lesson"),
        "resource_view" => (adl("experienced"), "files", text(e, "resource_id"), "http://adlnet.gov/expapi/activities/file"),
        "resource_download" => ("http://id.tincanapi.com/verb/downloaded".into(), "files", text(e, "resource_id"), "http://adlnet.gov/expapi/activities/file"),
        "video_play" => ("https://w3id.org/xapi/video/verbs/played".into(), "videos", text(e, "resource_id"), "https://w3id.org/xapi/video/activity-type/video"),
        "video_complete" => (adl("completed"), "videos", text(e, "resource_id"), "https://w3id.org/xapi/video/activity-type/video"),
        "quiz_start" => (adl("attempted"), "quizzes", text(e, "quiz_id"), "http://adlnet.gov/expapi/activities/assessment"),
        "quiz_submit" => (adl("completed"), "quizzes", text(e, "quiz_id"), "http://adlnet.gov/expapi/activities/assessment"),
        "assignment_submit" => (adl("completed"), "assignments", text(e, "assignment_id"), "http://id.tincanapi.com/activitytype/assignment"),
        "forum_post" => (adl("commented"), "forums", text(e, "resource_id"), "http://id.tincanapi.com/activitytype/discussion"),
        "help_requested" => (adl("asked"), "help", text(e, "resource_id"), "http://id.tincanapi.com/activitytype/question"),
        "achievement_earned" => ("http://id.tincanapi.com/verb/earned".into(), "badges", text(e, "resource_id"), "http://id.tincanapi.com/activitytype/badge"),
        "content_view" => (adl("experienced"), "pages", text(e, "resource_id").or(text(e, "lesson_id")), "http://activitystrea.ms/schema/1.0/article"),
        other => (format!("{LMS}/verbs/{other}"), "things", text(e, "resource_id"), "http://activitystrea.ms/schema/1.0/article"),
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
    let kind = match text(a, "assessment_type") {
        Some("assignment") => "http://id.tincanapi.com/activitytype/assignment",
        Some("exam") => "http://id.tincanapi.com/activitytype/exam",
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
